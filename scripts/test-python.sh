#!/usr/bin/env bash
# The Python package's test suite: builds bindings/python with maturin (pip fetches it as the
# build backend) into a virtualenv under target/, then runs its pytest suite.
#   scripts/test-python.sh            # build + test
#   scripts/test-python.sh -k merge   # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/target/python-venv
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check numpy pytest
# The Rust build goes to target/python-build so repeated runs are incremental.
CARGO_TARGET_DIR=$ROOT/target/python-build \
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps ./bindings/python
# Run from the repository root: the source folder bindings/python/feature_dictionary has no
# compiled extension and must not shadow the installed package.
"$VENV/bin/python" -m pytest -q bindings/python/tests "$@"
