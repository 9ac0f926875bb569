"""numpy baseline for all-pairs decoder-cosine top-k: normalise rows, then per block of 256
rows one GEMM against all rows and argpartition for the top k (self excluded).
Usage: python3 scripts/bench_decoder_cosine.py F D K"""
import json, sys, time
import numpy as np

f, d, k = (int(a) for a in sys.argv[1:4])
rng = np.random.default_rng(0)
w = rng.random((f, d), dtype=np.float32) - 0.5
t = time.perf_counter()
u = w / np.linalg.norm(w, axis=1, keepdims=True)
idx = np.empty((f, k), dtype=np.int64)
for s in range(0, f, 256):
    g = u[s:s + 256] @ u.T
    g[np.arange(g.shape[0]), np.arange(s, s + g.shape[0])] = -np.inf
    part = np.argpartition(-g, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(g, part, axis=1), axis=1)
    idx[s:s + 256] = np.take_along_axis(part, order, axis=1)
secs = time.perf_counter() - t
print(json.dumps({"impl": "numpy", "features": f, "d": d, "k": k, "seconds": round(secs, 3)}))
