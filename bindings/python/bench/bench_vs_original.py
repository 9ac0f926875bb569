#!/usr/bin/env python3
"""Python API throughput against the original library's algorithm, in the same run.

Data: a [T × F] float32 activation array (default 4,096 × 16,384) at 5 % density (values
uniform in [0.02, 4.02) where firing, else 0), in 128-token sequences, tokens drawn from a
Zipf-like vocabulary of 5,000 strings.

* original — the original library's per-(token, feature) Python loop, re-implemented
  minimally here (the part of ``FeatureExtractor.process_activations`` that does the work:
  threshold test, a ``FeatureActivation`` record with ±5 context tokens, ``add_activation``
  = running mean, max, append + re-sort + truncate to 20). It gets Python lists (as the
  original requires; the ``tolist()`` conversion is not timed) and runs on a prefix of
  ``--prefix`` tokens (≥ 256), because it is too slow for the whole array.
* ours — ``FeatureDictionary.process_batch`` on the whole array as one numpy
  ``[sequences, 128, F]`` view (no copy), every statistic over all tokens. "cold" is a
  fresh dictionary (its first pass also pays for zeroing the per-feature state); "warm"
  is a second pass through the same dictionary. ``finalize`` (statistics, labels and
  descriptions, ``Feature`` objects with their scalar fields) is timed separately; so are
  ``save`` to JSON right after it, and converting every feature's examples and metadata
  to Python objects (which finalize defers to their first access).

Prints tokens/s of each and the ratio; ``--json`` prints the numbers as JSON.

    python3 bindings/python/bench/bench_vs_original.py
    python3 bindings/python/bench/bench_vs_original.py --tokens 4096 --features 16384 --prefix 256
"""

import argparse
import json
import os
import resource
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List

import numpy as np


# --- the original algorithm, minimally -----------------------------------------------------
@dataclass
class _Activation:
    feature_id: int
    token: str
    position: int
    activation: float
    context: str = ""
    context_tokens: List[str] = field(default_factory=list)
    metadata: Dict[str, Any] = field(default_factory=dict)


class _Feature:
    __slots__ = ("activation_count", "mean_activation", "max_activation", "top_activations")

    def __init__(self):
        self.activation_count = 0
        self.mean_activation = 0.0
        self.max_activation = 0.0
        self.top_activations = []

    def add_activation(self, act, max_examples=20):
        self.activation_count += 1
        self.mean_activation += (act.activation - self.mean_activation) / self.activation_count
        if act.activation > self.max_activation:
            self.max_activation = act.activation
        self.top_activations.append(act)
        self.top_activations.sort(key=lambda a: a.activation, reverse=True)
        self.top_activations = self.top_activations[:max_examples]


def original_process(features, activations, tokens, min_activation=0.01, window=5):
    recorded = 0
    for pos, (token, acts) in enumerate(zip(tokens, activations)):
        for fid, value in enumerate(acts):
            if value >= min_activation:
                ctx = tokens[max(0, pos - window): pos + window + 1]
                features[fid].add_activation(_Activation(fid, token, pos, value, "", ctx))
                recorded += 1
    return recorded


# --- data ----------------------------------------------------------------------------------
def make_data(t, f, density, seq_len, seed=0):
    rng = np.random.default_rng(seed)
    acts = np.zeros((t, f), dtype=np.float32)
    for a in range(0, t, 256):  # in slices to keep the temporaries small
        b = min(t, a + 256)
        mask = rng.random((b - a, f), dtype=np.float32) < density
        acts[a:b] = (rng.random((b - a, f), dtype=np.float32) * 4 + 0.02) * mask
    ranks = np.minimum(rng.zipf(1.2, size=t), 5000)
    tokens = [f"tok{r}" for r in ranks]
    return acts, tokens


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--features", type=int, default=16384)
    ap.add_argument("--density", type=float, default=0.05)
    ap.add_argument("--prefix", type=int, default=256, help="tokens given to the original (>= 256)")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.tokens % args.seq_len:
        ap.error("--tokens must be a multiple of --seq-len")

    from feature_dictionary import FeatureDictionary

    acts, tokens = make_data(args.tokens, args.features, args.density, args.seq_len)
    n_seq = args.tokens // args.seq_len
    batch = acts.reshape(n_seq, args.seq_len, args.features)
    batch_tokens = [tokens[i * args.seq_len:(i + 1) * args.seq_len] for i in range(n_seq)]

    # original, on a prefix, sequence by sequence as its process_batch would
    prefix = max(256, args.prefix)
    prefix -= prefix % args.seq_len
    lists = [batch[i].tolist() for i in range(prefix // args.seq_len)]
    feats = [_Feature() for _ in range(args.features)]
    t0 = time.perf_counter()
    orig_firings = sum(original_process(feats, lists[i], batch_tokens[i]) for i in range(len(lists)))
    orig_s = time.perf_counter() - t0
    del lists, feats

    # ours: cold (fresh dictionary), then warm (a second pass), then finalize
    d = FeatureDictionary(args.features, 768)
    t0 = time.perf_counter()
    firings = d.process_batch(batch, batch_tokens)
    cold_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    d.process_batch(batch, batch_tokens)
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    d.finalize()
    fin_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        d.save(os.path.join(tmp, "d.json"))
        save_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for f in d:
        f.top_activations, f.metadata
    convert_s = time.perf_counter() - t0
    assert firings == int((acts >= np.float32(0.01)).sum())
    assert d.features.total_tokens_processed == 2 * args.tokens

    res = {
        "tokens": args.tokens,
        "features": args.features,
        "density": args.density,
        "firings": firings,
        "original_tokens": prefix,
        "original_firings": orig_firings,
        "original_seconds": orig_s,
        "original_tokens_per_s": prefix / orig_s,
        "ours_cold_seconds": cold_s,
        "ours_cold_tokens_per_s": args.tokens / cold_s,
        "ours_warm_seconds": warm_s,
        "ours_warm_tokens_per_s": args.tokens / warm_s,
        "finalize_seconds": fin_s,
        "save_json_seconds": save_s,
        "convert_all_seconds": convert_s,
        "speedup_cold": (args.tokens / cold_s) / (prefix / orig_s),
        "speedup_warm": (args.tokens / warm_s) / (prefix / orig_s),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"data: [{args.tokens} x {args.features}] float32, density {args.density:.0%}, {firings:,} firings")
    print(f"original algorithm ({prefix} tokens): {orig_s:8.2f} s  {res['original_tokens_per_s']:12,.1f} tokens/s")
    print(f"feature_dictionary cold ({args.tokens} tokens): {cold_s:8.3f} s  {res['ours_cold_tokens_per_s']:12,.1f} tokens/s  ({res['speedup_cold']:,.0f}x)")
    print(f"feature_dictionary warm ({args.tokens} tokens): {warm_s:8.3f} s  {res['ours_warm_tokens_per_s']:12,.1f} tokens/s  ({res['speedup_warm']:,.0f}x)")
    print(f"finalize ({args.features} features, {2 * args.tokens} tokens): {fin_s:.2f} s; then save (JSON) {save_s:.2f} s; "
          f"then converting every feature's examples and metadata {convert_s:.2f} s; peak RSS {res['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
