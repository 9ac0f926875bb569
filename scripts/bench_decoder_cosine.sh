#!/usr/bin/env bash
# All-pairs decoder-cosine neighbours: Rust (blocked GEMM + per-row top-k) vs numpy, same run.
# Usage: scripts/bench_decoder_cosine.sh [F] [D] [K]
set -euo pipefail
F=${1:-24576}; D=${2:-768}; K=${3:-10}
cargo build --release -q -p feature-dictionary --example decoder_cosine
rust=$(target/release/examples/decoder_cosine "$F" "$D" "$K")
py=$(python3 scripts/bench_decoder_cosine.py "$F" "$D" "$K")
echo "$rust"; echo "$py"
python3 -c "import json,sys; r=json.loads(sys.argv[1]); p=json.loads(sys.argv[2]); print(f'speed-up vs numpy: {p[\"seconds\"]/r[\"seconds\"]:.2f}x')" "$rust" "$py"
