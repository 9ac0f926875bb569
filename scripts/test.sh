#!/usr/bin/env bash
# The whole test suite: every Rust test of the workspace (unit, integration, CLI, doc tests),
# then the Python package's pytest suite (built with maturin into target/python-venv), then
# the browser test of `featdict serve` (headless Chromium: installed with apt when missing
# and root; skipped with a message when missing and not root, except under CI).
# Needs only the Rust toolchain and Python 3.11 (pip fetches maturin, numpy and pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked
scripts/test-python.sh
scripts/browser-test/run.sh
