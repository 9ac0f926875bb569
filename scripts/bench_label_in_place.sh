#!/usr/bin/env bash
# `featdict label` on a .fdict in place against writing a new file (--out), on the same
# dictionary in the same run: F = 16,384 features built from the core benchmark's data
# (T = 16,384 tokens, 5 % density; made by `python3 scripts/bench_core.py --features 16384
# --densities 0.05` when missing). Prints the seconds of each and the ratio, for automatic
# labeling of every feature and for one manual label (--set).
#   scripts/bench_label_in_place.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-2}
F=target/release/featdict
ACTS=target/bench-data/acts_T16384_F16384_d0.05.npy
TOKS=target/bench-data/tokens_T16384.json
[ -x "$F" ] || cargo build --release -p featdict
[ -f "$ACTS" ] || python3 scripts/bench_core.py --features 16384 --densities 0.05 >/dev/null
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
"$F" build "$ACTS" --tokens "$TOKS" --out "$W/built.fdict" -q >/dev/null
now() { date +%s.%N; }
for run in $(seq "$RUNS"); do
    cp "$W/built.fdict" "$W/a.fdict"
    cp "$W/built.fdict" "$W/b.fdict"
    t0=$(now); "$F" label "$W/a.fdict" --min-confidence 0.2 --out "$W/a2.fdict" >/dev/null
    t1=$(now); "$F" label "$W/b.fdict" --min-confidence 0.2 >/dev/null
    t2=$(now); "$F" label "$W/a2.fdict" 5 --set "label $run" --out "$W/a3.fdict" >/dev/null
    t3=$(now); "$F" label "$W/b.fdict" 5 --set "label $run" >/dev/null
    t4=$(now)
    python3 - "$t0" "$t1" "$t2" "$t3" "$t4" <<'PY'
import sys
t = [float(x) for x in sys.argv[1:]]
new, inplace, set_new, set_inplace = t[1] - t[0], t[2] - t[1], t[3] - t[2], t[4] - t[3]
print(f"label all: new file {new:.2f} s, in place {inplace:.2f} s ({new / inplace:.1f}x); "
      f"--set: new file {set_new:.2f} s, in place {set_inplace:.3f} s ({set_new / set_inplace:.0f}x)")
PY
done
