"""Verify the numpy forward pass, then collect residuals after block LAYER for all drawn windows.

Checks (full 30-block model): "The capital of France is Paris. The capital of Germany is" must
give " Berlin" as top next token; next-token cross-entropy / top-1 accuracy on 8 training
windows is printed as a further sanity check.
Collection: blocks 0..LAYER only, batches of BATCH windows, float32; writes
<work>/resid_train.npy [n_train*64, 576] and <work>/resid_heldout.npy (row = seq*64 + pos).
"""
import json
import os
import sys
import time

import numpy as np
from tokenizers import Tokenizer

from smollm2_numpy import SmolLM2

LAYER = int(os.environ.get("DEMO_LAYER", "9"))
BATCH = 32
N_NORM_WIN = 128   # training windows used for the per-block residual-norm table
PROMPT = "The capital of France is Paris. The capital of Germany is"


def verify(model, tok, windows):
    ids = np.array([tok.encode(PROMPT).ids], dtype=np.int64)
    lg = model.logits(ids)[0, -1]
    top = np.argsort(-lg)[:5]
    p = np.exp(lg - lg.max()); p /= p.sum()
    print("Berlin check, top-5 next tokens:",
          [(tok.decode([int(t)]), round(float(p[t]), 4)) for t in top])
    assert tok.decode([int(top[0])]) == " Berlin", "forward pass check failed"
    lg = model.logits(windows.astype(np.int64))
    lp = lg[:, :-1] - lg[:, :-1].max(-1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
    tgt = windows[:, 1:]
    ce = -np.take_along_axis(lp, tgt[..., None], -1).mean()
    acc = (lg[:, :-1].argmax(-1) == tgt).mean()
    print(f"sanity on {len(windows)} training windows: next-token CE {ce:.3f} nats, top-1 acc {acc:.3f}")
    return {"berlin_top5": [tok.decode([int(t)]) for t in top], "berlin_p": float(p[top[0]]),
            "ce_nats_8win": float(ce), "top1_acc_8win": float(acc)}


def norm_table(model, windows):
    """Per block: residual-norm statistics (attention-sink diagnosis) over `windows`."""
    h = model.tok_emb[windows.astype(np.int64)].astype(np.float32)
    rows = []
    for i, p in enumerate(model.blocks):
        h = model.block(h, p)
        n = np.linalg.norm(h, axis=-1)
        med0, med = float(np.median(n[:, 0])), float(np.median(n[:, 1:]))
        rest = n[:, 1:]
        big = rest > 10 * med
        rows.append({"block": i, "median_norm_pos0": med0, "median_norm_pos1_63": med,
                     "ratio": med0 / med, "max_norm_pos1_63": float(rest.max()),
                     "frac_pos1_63_over_10x_median": float(big.mean()),
                     "sumsq_share_pos1_63_over_10x_median": float((rest[big] ** 2).sum() / (rest ** 2).sum())})
        r = rows[-1]
        print(f"  block {i:2d}: median norm pos0 {med0:8.1f}, pos1..63 {med:6.1f} (x{r['ratio']:.1f}); "
              f"pos1..63 tokens > 10x median: {r['frac_pos1_63_over_10x_median']:.4%} "
              f"holding {r['sumsq_share_pos1_63_over_10x_median']:.1%} of sum of squared norms")
    return rows


def main(gguf_path, tokenizer_path, work):
    tok = Tokenizer.from_file(tokenizer_path)
    seqs = np.load(os.path.join(work, "sequences.npz"))
    t0 = time.time()
    model = SmolLM2(gguf_path)
    print(f"model loaded ({model.n_layer} blocks, d={model.d}) in {time.time() - t0:.1f}s")
    t0 = time.time()
    info = verify(model, tok, seqs["train"][:8])
    print(f"verification took {time.time() - t0:.1f}s")
    info["norm_table_windows"] = N_NORM_WIN
    info["norm_table"] = norm_table(model, seqs["train"][:N_NORM_WIN])
    model.blocks = model.blocks[:LAYER + 1]  # only the blocks needed for collection
    info["layer"] = LAYER
    for split in ("train", "heldout"):
        w = seqs[split]
        out = np.lib.format.open_memmap(os.path.join(work, f"resid_{split}.npy"), mode="w+",
                                        dtype=np.float32, shape=(w.shape[0] * w.shape[1], model.d))
        t0 = time.time()
        for b in range(0, len(w), BATCH):
            r = model.residuals(w[b:b + BATCH].astype(np.int64), LAYER)[LAYER]
            out[b * 64:(b + len(r)) * 64] = r.reshape(-1, model.d)
            if (b // BATCH) % 20 == 0:
                el = time.time() - t0
                print(f"  {split}: {b + len(r)}/{len(w)} windows, {el:.0f}s", flush=True)
        out.flush()
        n = np.linalg.norm(out[:64 * 200].reshape(-1, 64, model.d), axis=-1)
        print(f"{split}: {out.shape} in {time.time() - t0:.0f}s; residual norm pos0 median "
              f"{np.median(n[:, 0]):.1f}, pos1..63 median {np.median(n[:, 1:]):.2f}")
        info[f"{split}_seconds"] = time.time() - t0
        del out
    json.dump(info, open(os.path.join(work, "forward_info.json"), "w"), indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:4])
