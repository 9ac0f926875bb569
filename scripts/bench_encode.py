#!/usr/bin/env python3
"""Encode throughput: featdict's in-process SAE encode vs numpy's matmul, same shapes, same run.

Usage (repository root):  python3 scripts/bench_encode.py [--tokens 4096] [--d-in 768] [--d-sae 24576]

Writes a random TopK SAE (SAELens layout, float32) and random residuals to a temp dir, then
  1. numpy: best of N of the bare matmul `X @ W_enc` (into a preallocated output) and of
     `(X - b_dec) @ W_enc + b_enc` (the least an encode must do), GFLOP/s = 2·tokens·d_in·d_sae / s;
  2. featdict: `cargo run --release --example bench_encode` (matmul + bias + top-k +
     sparsification), same GFLOP/s formula;
  3. end to end: `featdict build RESIDUALS --sae DIR` tokens/s (encode + accumulate + write).
Needs numpy (installed with `pip install --user numpy` when missing).
For the BLAS baseline, OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are removed from numpy's
environment so OpenBLAS picks its own kernel for this CPU.
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time


def ensure_numpy():
    try:
        import numpy  # noqa: F401
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--user", "numpy"])


NUMPY_BENCH = r"""
import sys, time, json, numpy as np
X = np.load(sys.argv[1]).astype(np.float32)
W = np.load(sys.argv[2]); b_enc = np.load(sys.argv[3]); b_dec = np.load(sys.argv[4])
reps = int(sys.argv[5])
n, d_in = X.shape; d_sae = W.shape[1]
out = np.empty((n, d_sae), dtype=np.float32)
best = best_mm = 1e9
for _ in range(reps + 1):
    t = time.perf_counter()
    np.matmul(X, W, out=out)
    best_mm = min(best_mm, time.perf_counter() - t)
    t = time.perf_counter()
    pre = (X - b_dec) @ W + b_enc
    best = min(best, time.perf_counter() - t)
    del pre
f = 2 * n * d_in * d_sae
print(json.dumps({"seconds": best, "gflops": f / best / 1e9, "matmul_seconds": best_mm,
                  "matmul_gflops": f / best_mm / 1e9, "numpy": np.__version__}))
"""


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, a in tensors.items():
        data = a.astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--d-in", type=int, default=768)
    ap.add_argument("--d-sae", type=int, default=24576)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--e2e-tokens", type=int, default=16384)
    args = ap.parse_args()
    ensure_numpy()
    import numpy as np

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tmp = tempfile.mkdtemp(prefix="bench-encode-")
    rng = np.random.default_rng(0)
    d_in, d_sae = args.d_in, args.d_sae
    W_enc = rng.normal(0, 1 / np.sqrt(d_in), (d_in, d_sae)).astype(np.float32)
    b_enc = rng.normal(0, 0.1, d_sae).astype(np.float32)
    b_dec = rng.normal(0, 0.1, d_in).astype(np.float32)
    W_dec = np.ascontiguousarray(W_enc.T)
    sae = os.path.join(tmp, "sae")
    os.makedirs(sae)
    write_safetensors(os.path.join(sae, "sae_weights.safetensors"),
                      {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec})
    with open(os.path.join(sae, "cfg.json"), "w") as f:
        json.dump({"architecture": "topk", "d_in": d_in, "d_sae": d_sae, "k": args.k,
                   "apply_b_dec_to_input": True, "normalize_activations": "none", "dtype": "float32"}, f)
    X = rng.normal(0, 1, (args.tokens, d_in)).astype(np.float32)
    for name, a in [("X", X), ("W_enc", W_enc), ("b_enc", b_enc), ("b_dec", b_dec)]:
        np.save(os.path.join(tmp, name + ".npy"), a)

    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "feature-dictionary", "--example", "bench_encode",
                           "-p", "featdict"], cwd=root)
    # Alternate the two a few times and keep each one's best, so a burst of load from other
    # processes on the machine does not favour whichever ran first.
    numpy_runs, our_runs = [], []
    for _ in range(args.rounds):
        numpy_runs.append(json.loads(subprocess.check_output(
            [sys.executable, "-c", NUMPY_BENCH] + [os.path.join(tmp, n + ".npy") for n in ("X", "W_enc", "b_enc", "b_dec")]
            + [str(args.repeats)], env=env)))
        our_runs.append(json.loads(subprocess.check_output(
            [os.path.join(root, "target", "release", "examples", "bench_encode"), sae, os.path.join(tmp, "X.npy"),
             str(args.repeats)], cwd=root)))
    numpy_res = dict(min(numpy_runs, key=lambda r: r["seconds"]))
    numpy_res.update({k: min(numpy_runs, key=lambda r: r["matmul_seconds"])[k] for k in ("matmul_seconds", "matmul_gflops")})
    ours = min(our_runs, key=lambda r: r["seconds"])

    # End to end: residuals → SAE → dictionary, tokens/s.
    n_seq, seq_len = args.e2e_tokens // 64, 64
    R = rng.normal(0, 1, (n_seq * seq_len, d_in)).astype(np.float32)
    np.save(os.path.join(tmp, "R.npy"), R)
    np.save(os.path.join(tmp, "ids.npy"), rng.integers(0, 1000, (n_seq, seq_len)).astype(np.int32))
    t = time.perf_counter()
    out = subprocess.check_output(
        [os.path.join(root, "target", "release", "featdict"), "build", os.path.join(tmp, "R.npy"), "--sae", sae,
         "--token-ids", os.path.join(tmp, "ids.npy"), "--out", os.path.join(tmp, "dict.json"), "--json", "-q"])
    e2e = json.loads(out)
    wall = time.perf_counter() - t
    shutil.rmtree(tmp)

    print(f"load average before: {os.getloadavg()[0]:.1f}; best of {args.rounds} alternating rounds x {args.repeats} repeats")
    print(f"shapes: {args.tokens} tokens x d_in {d_in} -> d_sae {d_sae} (topk k={args.k}), {ours['threads']} threads")
    print(f"numpy {numpy_res['numpy']} matmul X @ W_enc (into a preallocated output): "
          f"{numpy_res['matmul_seconds']*1e3:.1f} ms, {numpy_res['matmul_gflops']:.1f} GFLOP/s")
    print(f"numpy (X - b_dec) @ W_enc + b_enc: {numpy_res['seconds']*1e3:.1f} ms, {numpy_res['gflops']:.1f} GFLOP/s")
    ours_mm = min(our_runs, key=lambda r: r["matmul_seconds"])
    print(f"featdict gemm crate matmul alone (blocks of {ours['block_rows']} rows): "
          f"{ours_mm['matmul_seconds']*1e3:.1f} ms, {ours_mm['matmul_gflops']:.1f} GFLOP/s")
    print(f"featdict encode (matmul + bias + top-k + sparsify): {ours['seconds']*1e3:.1f} ms, {ours['gflops']:.1f} GFLOP/s")
    print(f"ratio featdict encode / numpy matmul alone: {ours['gflops'] / numpy_res['matmul_gflops']:.3f}")
    print(f"ratio featdict encode / numpy pre-activations: {ours['gflops'] / numpy_res['gflops']:.3f}")
    print(f"end to end featdict build --sae ({args.e2e_tokens} tokens): {e2e['tokens_per_second']:.0f} tokens/s "
          f"({e2e['seconds']:.2f} s in-process, {wall:.2f} s wall)")


if __name__ == "__main__":
    main()
