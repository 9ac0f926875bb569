#!/usr/bin/env python3
"""Wide-SAE memory benchmark: `featdict build` of a delphi latent cache with millions of
latents, most of which never fire, into a `.fdict` against into a `.json`, in the same run.

The cache is synthetic and written once per width: 800 sequences x 128 tokens, 32 latents
firing per token, all of them drawn from 20,000 live latents spread over the width
(exponential activations + 0.01, token ids 0..4999). A `.fdict` is finalized a wave of
features at a time straight into the file; a `.json` holds the whole finalized dictionary
(about 1 KiB per never-firing feature) while it is written. The script prints, for each
width, the peak RSS and wall time of both builds and their ratio (JSON / .fdict).

    python3 scripts/bench_wide.py                          # 1,048,576 and 4,194,304 latents
    python3 scripts/bench_wide.py --widths 16777216 --no-json

Needs numpy and a release build (made here with cargo when missing). The files go to
target/bench-wide (about 90 MB per cache, 0.6-9 GB per dictionary; dictionaries are removed
after each build).
"""
import argparse
import json
import os
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


def build(cache, out):
    """Runs `featdict build`; returns (wall seconds, peak RSS bytes) of that process."""
    argv = [str(BIN), "build", str(cache), "--out", str(out), "-q", "--json"]
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
    ap.add_argument("--no-json", action="store_true", help="build only the .fdict (the JSON of 16M features takes ~17 GiB)")
    ap.add_argument("--dir", type=Path, default=ROOT / "target" / "bench-wide")
    args = ap.parse_args()
    import numpy as np

    if not BIN.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "featdict"], cwd=ROOT, check=True)
    args.dir.mkdir(parents=True, exist_ok=True)
    gib = 1 << 30
    print(f"{'latents':>12} {'.fdict peak':>12} {'.fdict time':>12} {'.json peak':>11} {'.json time':>11} {'peak ratio':>11}")
    for width in args.widths:
        cache = args.dir / f"0_{width - 1}.safetensors"
        if not cache.exists():
            write_cache(np, cache, width)
        row = {}
        for ext in ["fdict"] + ([] if args.no_json else ["json"]):
            out = args.dir / f"wide.{ext}"
            row[ext] = build(cache, out)
            out.unlink()
        fd_s, fd_rss = row["fdict"]
        if "json" in row:
            js_s, js_rss = row["json"]
            json_cols = f"{js_rss / gib:>9.2f} G {js_s:>9.1f} s {js_rss / fd_rss:>10.1f}x"
        else:
            json_cols = f"{'-':>11} {'-':>11} {'-':>11}"
        print(f"{width:>12,} {fd_rss / gib:>10.2f} G {fd_s:>10.1f} s {json_cols}", flush=True)


if __name__ == "__main__":
    main()
