#!/usr/bin/env python3
"""Time and peak memory of ``FeatureDictionary.save`` right after ``finalize``.

The dictionary is the Python benchmark's: a [4,096 × 16,384] float32 array at 5 % density
(see bench_vs_original.py). Saving is timed on its own; the peak RSS of the process (which
only grows) is printed with the resident memory just before the save, so run one format per
process:

    python3 bindings/python/bench/bench_save.py /tmp/d.json
    python3 bindings/python/bench/bench_save.py /tmp/d.fdict
"""

import argparse
import resource
import time

from bench_vs_original import make_data
from feature_dictionary import FeatureDictionary


def resident_mib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", help="where to save (.json or .fdict)")
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--features", type=int, default=16384)
    args = ap.parse_args()
    acts, tokens = make_data(args.tokens, args.features, 0.05, 128)
    n_seq = args.tokens // 128
    d = FeatureDictionary(args.features, 768)
    d.process_batch(acts.reshape(n_seq, 128, args.features), [tokens[i * 128:(i + 1) * 128] for i in range(n_seq)])
    d.finalize()
    del acts
    before = resident_mib()
    t0 = time.perf_counter()
    d.save(args.path)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"{args.path}: save {seconds:.2f} s; resident before {before} MiB, peak {peak} MiB")


if __name__ == "__main__":
    main()
