"""Train the TopK SAE on <work>/resid_train.npy, monitor held-out FVU, fold the scale, save.

Writes <work>/sae_f32.npz (raw-space float32 weights, scale already folded in) and
<work>/train_log.json (hyper-parameters, scale, history, seconds).
"""
import json
import os
import sys
import time

import numpy as np

import topk_sae as T

HP = dict(
    d_sae=4608, k=32,
    epochs=10, batch=1024, lr=1e-3, adam_betas=(0.9, 0.999), adam_eps=1e-8,
    warmup=100, decay_frac=0.3,        # linear warm-up steps; linear decay to 0 over the last 30%
    aux_k=256, aux_coef=1 / 32,         # AuxK loss on latents dead for > dead_steps steps
    dead_steps=200,                     # 200 steps = 204,800 tokens = 1 epoch
    include_pos0=True,                  # position-0 tokens are trained on (no attention sink at
                                        # block 9) but excluded from the scale / b_dec init
    seed=1, eval_every=400,
)


def main(work):
    Xtr = np.load(os.path.join(work, "resid_train.npy"))
    Xho = np.load(os.path.join(work, "resid_heldout.npy"), mmap_mode="r")
    Xho = np.asarray(Xho, dtype=np.float32)
    print(f"train {Xtr.shape}, held-out {Xho.shape}")
    t0 = time.time()
    W, s, hist, secs = T.train(
        Xtr, Xho, HP["d_sae"], HP["k"], epochs=HP["epochs"], batch=HP["batch"], lr=HP["lr"],
        seed=HP["seed"], warmup=HP["warmup"], decay_frac=HP["decay_frac"], aux_k=HP["aux_k"],
        dead_steps=HP["dead_steps"], aux_coef=HP["aux_coef"], include_pos0=HP["include_pos0"], eval_every=HP["eval_every"],
        log=lambda m: print(m, flush=True))
    Wr = T.fold_scale(W, s)
    np.savez(os.path.join(work, "sae_f32.npz"), **{n: np.ascontiguousarray(a) for n, a in Wr.items()})
    ev = T.evaluate(Wr, Xho, HP["k"])
    print(f"final (float32, raw space) held-out FVU {ev['fvu_all']:.4f} (pos 1..63: {ev['fvu_pos1']:.4f}), "
          f"L0 {ev['mean_l0']:.2f}, dead {ev['n_dead']}")
    s_all = float(np.sqrt(Xtr.shape[1] / np.mean((Xtr.astype(np.float64) ** 2).sum(1))))
    json.dump({"hp": HP, "scale": s, "scale_with_pos0": s_all, "train_seconds": secs, "total_seconds": time.time() - t0,
               "history": hist, "n_train_tokens": int(len(Xtr)), "n_heldout_tokens": int(len(Xho))},
              open(os.path.join(work, "train_log.json"), "w"), indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
