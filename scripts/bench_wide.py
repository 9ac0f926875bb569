#!/usr/bin/env python3
"""Wide-SAE memory benchmark: `featdict build` of a delphi latent cache with millions of
latents, most of which never fire, into a `.fdict` and into a `.json`, in the same run.

The cache is synthetic and written once per width: 800 sequences x 128 tokens, 32 latents
firing per token, all of them drawn from 20,000 live latents spread over the width
(exponential activations + 0.01, token ids 0..4999). Both formats are finalized a wave of
features at a time straight into the file. The script prints, for each width, the peak RSS
and wall time of both builds.

With `--baseline-bin OLD` (a `featdict` built from an earlier commit, e.g. 7ee18cd, whose
JSON build held the whole finalized dictionary, about 1 KiB per never-firing feature) it
also builds the `.json` with OLD, in the same run, and prints the ratio of OLD's peak to
this build's:

    python3 scripts/bench_wide.py                          # 1,048,576 and 4,194,304 latents
    python3 scripts/bench_wide.py --widths 16777216 --no-json
    git worktree add /tmp/old 7ee18cd && (cd /tmp/old && cargo build --release -p featdict)
    python3 scripts/bench_wide.py --baseline-bin /tmp/old/target/release/featdict
    python3 scripts/bench_wide.py --label --no-json --baseline-bin /tmp/old/target/release/featdict

`--label` also labels each `.fdict` in place (`featdict label`, which streams it 1,024
features at a time) and, with `--baseline-bin`, a copy of it by OLD, and prints the file's
size before and after each labeling.

Needs numpy and a release build (made here with cargo when missing). The files go to
target/bench-wide (about 90 MB per cache, 0.6-9 GB per dictionary; dictionaries are removed
after each build).
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "featdict"
N_SEQ, CTX, PER_TOKEN, LIVE = 800, 128, 32, 20_000


def write_cache(np, path, width, seed=0):
    """A delphi shard `0_{width-1}.safetensors` of locations, activations and tokens."""
    rng = np.random.default_rng(seed)
    live = rng.choice(width, LIVE, replace=False)
    n_tok = N_SEQ * CTX
    # Each token fires PER_TOKEN distinct live latents (a cache stores each once).
    first = rng.integers(0, LIVE, (n_tok, 1))
    latents = live[(first + np.arange(PER_TOKEN) * (LIVE // PER_TOKEN)) % LIVE].reshape(-1)
    seq = np.repeat(np.arange(N_SEQ), CTX * PER_TOKEN)
    pos = np.tile(np.repeat(np.arange(CTX), PER_TOKEN), N_SEQ)
    tensors = {
        "locations": np.stack([seq, pos, latents], 1).astype(np.int64),
        "activations": (rng.exponential(1.0, n_tok * PER_TOKEN) + 0.01).astype(np.float32),
        "tokens": rng.integers(0, 5000, (N_SEQ, CTX)).astype(np.int64),
    }
    header, offset = {}, 0
    for name, array in tensors.items():
        size = array.nbytes
        dtype = {"int64": "I64", "float32": "F32"}[str(array.dtype)]
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for array in tensors.values():
            f.write(array.tobytes())
    tmp.rename(path)


def build(cache, out, binary=BIN):
    """Runs `featdict build`; returns (wall seconds, peak RSS bytes) of that process."""
    return run([str(binary), "build", str(cache), "--out", str(out), "-q", "--json"])


def run(argv):
    """Runs `argv` quietly; returns (wall seconds, peak RSS bytes) of that process."""
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.execv(argv[0], argv)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        sys.exit(f"failed: {' '.join(argv)}")
    return seconds, usage.ru_maxrss * 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=int, nargs="+", default=[1 << 20, 1 << 22])
    ap.add_argument("--no-json", action="store_true", help="build only the .fdict (the JSON of 16M features is ~12 GB on disk)")
    ap.add_argument("--baseline-bin", type=Path, help="an earlier featdict: also build the .json with it and print its peak / ours")
    ap.add_argument("--label", action="store_true", help="also time `featdict label` of each .fdict in place (with --baseline-bin, of a copy by the old binary too)")
    ap.add_argument("--dir", type=Path, default=ROOT / "target" / "bench-wide")
    args = ap.parse_args()
    import numpy as np

    if not BIN.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "featdict"], cwd=ROOT, check=True)
    args.dir.mkdir(parents=True, exist_ok=True)
    gib = 1 << 30
    baseline = args.baseline_bin is not None and not args.no_json
    header = f"{'latents':>12} {'.fdict peak':>12} {'.fdict time':>12} {'.json peak':>11} {'.json time':>11}"
    if baseline:
        header += f" {'old .json peak':>15} {'old .json time':>15} {'old/new':>8}"
    print(header)
    labels = {}
    for width in args.widths:
        cache = args.dir / f"0_{width - 1}.safetensors"
        if not cache.exists():
            write_cache(np, cache, width)
        row = {}
        runs = [("fdict", BIN)] + ([] if args.no_json else [("json", BIN)])
        if baseline:
            runs.append(("old json", args.baseline_bin))
        for name, binary in runs:
            out = args.dir / f"wide.{name.split()[-1]}"
            row[name] = build(cache, out, binary)
            if name == "fdict" and args.label:
                labels[width] = label_runs(out, args.baseline_bin)
            out.unlink()
        fd_s, fd_rss = row["fdict"]
        line = f"{width:>12,} {fd_rss / gib:>10.2f} G {fd_s:>10.1f} s"
        if "json" in row:
            js_s, js_rss = row["json"]
            line += f" {js_rss / gib:>9.2f} G {js_s:>9.1f} s"
        else:
            line += f" {'-':>11} {'-':>11}"
        if baseline:
            old_s, old_rss = row["old json"]
            line += f" {old_rss / gib:>13.2f} G {old_s:>13.1f} s {old_rss / js_rss:>7.1f}x"
        print(line, flush=True)
    if labels:
        print(f"\n{'latents':>12} {'built':>9} {'label peak':>11} {'label time':>11} {'labeled':>9}"
              f" {'old peak':>10} {'old time':>10} {'old labeled':>12}")
        for width, (new, old, built) in labels.items():
            line = (f"{width:>12,} {built / 1e9:>7.2f} GB {new[1] / (1 << 20):>7.0f} MiB {new[0]:>9.1f} s"
                    f" {new[2] / 1e9:>6.2f} GB")
            if old:
                line += f" {old[1] / (1 << 20):>6.0f} MiB {old[0]:>8.1f} s {old[2] / 1e9:>9.2f} GB"
            print(line, flush=True)


def label_runs(fdict, baseline_bin):
    """`featdict label` of `fdict` in place, by this build and (on a copy) by
    `baseline_bin`: (seconds, peak RSS, file bytes after) of each, None for a missing
    baseline, and the file's bytes before."""
    old = None
    built = fdict.stat().st_size
    if baseline_bin is not None:
        copy = fdict.with_name("wide-old.fdict")
        shutil.copyfile(fdict, copy)
        old = run([str(baseline_bin), "label", str(copy)]) + (copy.stat().st_size,)
        copy.unlink()
    new = run([str(BIN), "label", str(fdict)]) + (fdict.stat().st_size,)
    return new, old, built


if __name__ == "__main__":
    main()
