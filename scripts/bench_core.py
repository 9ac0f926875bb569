#!/usr/bin/env python3
"""Core throughput benchmark: `featdict build` against a numpy baseline on identical data.

For each configuration (features F, density) it writes one synthetic activation file
[T tokens, F] float32 in 128-token sequences plus its tokens JSON, then runs, in the same
invocation and on the same (page-cached) file:

  * numpy baseline — memory-mapped, streamed in 128-token chunks, computing per feature the
    firing count, mean and max over activations >= 0.01 and the top-20 activations
    (np.argpartition over the running top-20 plus the chunk);
  * featdict build — every statistic on (moments, top-20 with context, histogram, quantile
    samples, positions, token counts), 2 threads, writing the dictionary.

It prints tokens/s of each (featdict's streaming pass and end to end), their ratio, and the
peak RSS of each process. It also prints the read floor on the same file: how fast as many
threads merely read it and count its firings, with no statistics (`examples/read_floor.rs`; the best
of its three ways of reading, and of mmap by feature columns, the way the pass splits work).
No streaming pass over the file can beat that number. Requires numpy (pip install numpy) and a release build (made here
with cargo when missing).

    python3 scripts/bench_core.py                      # F 4096/16384 x density 1%/5%, T=16384
    python3 scripts/bench_core.py --tokens 32768 --features 16384 --densities 0.05
    python3 scripts/bench_core.py --rss-check          # peak RSS at T and 10T tokens, F=4096
    python3 scripts/bench_core.py --rss-check --tokens 163840 --features 1024 --token-capacity 128
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "featdict"
FLOOR_BIN = ROOT / "target" / "release" / "examples" / "read_floor"
SEQ_LEN = 128

BASELINE = r"""
import sys, time, numpy as np
path, k, thr = sys.argv[1], 20, np.float32(0.01)
t0 = time.perf_counter()
X = np.load(path, mmap_mode="r")
T, F = X.shape
count = np.zeros(F, np.int64); total = np.zeros(F, np.float64)
mx = np.full(F, -np.inf, np.float32)
topv = np.full((k, F), -np.inf, np.float32); topi = np.zeros((k, F), np.int64)
for c in range(0, T, 128):
    ch = np.asarray(X[c:c + 128]); fired = ch >= thr
    count += fired.sum(0); total += np.where(fired, ch, 0).sum(0, dtype=np.float64)
    mx = np.maximum(mx, ch.max(0))
    cv = np.concatenate([topv, np.where(fired, ch, -np.inf)])
    ci = np.concatenate([topi, np.broadcast_to(np.arange(c, c + len(ch))[:, None], ch.shape)])
    p = np.argpartition(-cv, k - 1, axis=0)[:k]
    topv = np.take_along_axis(cv, p, 0); topi = np.take_along_axis(ci, p, 0)
mean = total / np.maximum(count, 1)
print(T / (time.perf_counter() - t0))
"""


def make_data(np, directory, tokens, features, density, seed):
    directory.mkdir(parents=True, exist_ok=True)
    acts = directory / f"acts_T{tokens}_F{features}_d{density}.npy"
    toks = directory / f"tokens_T{tokens}.json"
    if not acts.exists():
        rng = np.random.default_rng(seed)
        X = np.lib.format.open_memmap(acts, mode="w+", dtype=np.float32, shape=(tokens, features))
        for r in range(0, tokens, 1024):
            block = np.zeros((min(1024, tokens - r), features), np.float32)
            mask = rng.random(block.shape, dtype=np.float32) < density
            block[mask] = rng.exponential(1.0, mask.sum()).astype(np.float32) + 0.01
            X[r:r + len(block)] = block
        X.flush()
        del X
    if not toks.exists():
        rng = np.random.default_rng(seed + 1)
        ids = np.minimum(rng.zipf(1.3, tokens), 5000) - 1
        seqs = [[f"tok{t}" for t in ids[s:s + SEQ_LEN]] for s in range(0, tokens, SEQ_LEN)]
        toks.write_text(json.dumps(seqs))
    # Warm the page cache so neither contender pays the first read from disk.
    with open(acts, "rb") as f:
        while f.read(1 << 24):
            pass
    return acts, toks


def run_child(argv, stdout_path):
    """Runs argv with stdout to a file; returns (stdout text, peak RSS bytes of that child)."""
    pid = os.fork()
    if pid == 0:
        fd = os.open(stdout_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    if status != 0:
        sys.exit(f"failed: {' '.join(argv)}")
    return Path(stdout_path).read_text(), usage.ru_maxrss * 1024


def measure(acts, toks, out_dir, threads, batch_values=None, token_capacity=None):
    out, numpy_rss = run_child([sys.executable, "-c", BASELINE, str(acts)], out_dir / "numpy_stdout.txt")
    numpy_tps = float(out.strip())
    out, featdict_rss = run_child(
        [str(BIN), "build", str(acts), "--tokens", str(toks), "--out", str(out_dir / "bench_dict.json"),
         "--threads", str(threads), "--json", "-q"]
        + (["--batch-values", str(batch_values)] if batch_values else [])
        + (["--token-capacity", str(token_capacity)] if token_capacity else []),
        out_dir / "featdict_stdout.json",
    )
    summary = json.loads(out)
    tokens = summary["statistics"]["total_tokens_processed"]
    out, _ = run_child([str(FLOOR_BIN), str(acts), str(threads), "3"], out_dir / "floor_stdout.txt")
    floor = dict(line.split() for line in out.splitlines())
    return {
        "floor_columns_tps": float(floor["mmap-columns"]),
        "floor_best_tps": max(float(floor[w]) for w in ("mmap-columns", "mmap-rows", "pread")),
        "numpy_tps": numpy_tps,
        "numpy_rss": numpy_rss,
        "pass_tps": summary["accumulate_tokens_per_second"],
        "e2e_tps": tokens / summary["seconds"],
        "featdict_rss": featdict_rss,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--features", type=int, nargs="+", default=[4096, 16384])
    ap.add_argument("--densities", type=float, nargs="+", default=[0.01, 0.05])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=ROOT / "target" / "bench-data")
    ap.add_argument("--rss-check", action="store_true",
                    help="peak RSS at T and 10T tokens (the first --features and --densities: F=4096, 1%% by default)")
    ap.add_argument("--batch-values", type=int, default=None,
                    help="featdict --batch-values (default: featdict's own; --rss-check uses 32 Mi so "
                         "that both sizes span several batches)")
    ap.add_argument("--token-capacity", type=int, default=None,
                    help="featdict --token-capacity (distinct tokens counted exactly per feature; a small one "
                         "saturates early, so --rss-check compares two sizes past every warm-up)")
    args = ap.parse_args()
    try:
        import numpy as np
    except ImportError:
        sys.exit("numpy is required for the baseline: pip install numpy")
    if not BIN.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "featdict"], cwd=ROOT, check=True)
    if not FLOOR_BIN.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "feature-dictionary", "--example", "read_floor"],
                       cwd=ROOT, check=True)
    print(f"# numpy {np.__version__}, T={args.tokens} tokens in {SEQ_LEN}-token sequences, "
          f"featdict --threads {args.threads}")
    if args.rss_check:
        f, d = args.features[0], args.densities[0]
        print("| tokens | F | density | featdict peak RSS | numpy peak RSS |")
        print("|---:|---:|---:|---:|---:|")
        for t in (args.tokens, 10 * args.tokens):
            acts, toks = make_data(np, args.dir, t, f, d, seed=11)
            r = measure(acts, toks, args.dir, args.threads, args.batch_values or 32 << 20, args.token_capacity)
            print(f"| {t:,} | {f:,} | {d:.0%} | {r['featdict_rss'] / 2**20:.0f} MiB | {r['numpy_rss'] / 2**20:.0f} MiB |",
                  flush=True)
        return
    print("| F | density | numpy tok/s | featdict pass tok/s | featdict end-to-end tok/s "
          "| ratio (pass) | ratio (end-to-end) | numpy peak RSS | featdict peak RSS "
          "| read floor tok/s: mmap columns / best | floor ratio: columns / best |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for f in args.features:
        for d in args.densities:
            acts, toks = make_data(np, args.dir, args.tokens, f, d, seed=f + int(d * 1000))
            r = measure(acts, toks, args.dir, args.threads, args.batch_values)
            print(f"| {f:,} | {d:.0%} | {r['numpy_tps']:,.0f} | {r['pass_tps']:,.0f} | {r['e2e_tps']:,.0f} "
                  f"| {r['pass_tps'] / r['numpy_tps']:.1f}x | {r['e2e_tps'] / r['numpy_tps']:.1f}x "
                  f"| {r['numpy_rss'] / 2**20:.0f} MiB | {r['featdict_rss'] / 2**20:.0f} MiB "
                  f"| {r['floor_columns_tps']:,.0f} / {r['floor_best_tps']:,.0f} "
                  f"| {r['floor_columns_tps'] / r['numpy_tps']:.1f}x / {r['floor_best_tps'] / r['numpy_tps']:.1f}x |",
                  flush=True)


if __name__ == "__main__":
    main()
