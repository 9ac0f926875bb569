#!/usr/bin/env bash
# The whole test suite: every Rust test of the workspace (unit, integration, CLI, doc tests).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked
