"""Finite-difference check of topk_sae.grads_batch (main loss and AuxK loss) on a tiny SAE.

The reference loss is recomputed independently in float64 (dense, argsort top-k). For the AuxK
term the residual error is held constant, as in training. Decoder-row gradients are compared after
removing their radial component (the trainer keeps decoder rows at unit norm).
"""
import numpy as np

import topk_sae as T

d, n, k, B, aux_k = 12, 40, 4, 16, 3


def main():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, d)).astype(np.float32)
    W = T.init_weights(d, n, x.mean(0), rng)
    W["b_enc"] = (rng.standard_normal(n) * 0.1).astype(np.float32)
    W["b_dec"] = W["b_dec"] + np.float32(0.1)
    W64 = {a: np.array(b, dtype=np.float64) for a, b in W.items()}
    dead = np.zeros(n, bool)
    dead[::3] = True
    xx = x.astype(np.float64)

    def fwd(Wd):
        pre = (xx - Wd["b_dec"]) @ Wd["W_enc"] + Wd["b_enc"]
        idx = np.argsort(-pre, 1)[:, :k]
        z = np.zeros_like(pre)
        np.put_along_axis(z, idx, np.maximum(np.take_along_axis(pre, idx, 1), 0), 1)
        return pre, z @ Wd["W_dec"] + Wd["b_dec"] - xx

    _, e0 = fwd(W64)

    def loss(Wd, use_aux):
        pre, e = fwd(Wd)
        L = (e * e).sum() / B
        if use_aux:
            di = np.flatnonzero(dead)
            pd = pre[:, di]
            ai = np.argsort(-pd, 1)[:, :aux_k]
            za = np.zeros_like(pre)
            np.put_along_axis(za, di[ai], np.maximum(np.take_along_axis(pd, ai, 1), 0), 1)
            ea = za @ Wd["W_dec"] + e0
            L += (ea * ea).sum() / B / 32
        return L

    worst = 0.0
    for use_aux in (False, True):
        _, _, g, _, _ = T.grads_batch(W, x, k, aux_k if use_aux else 0, dead if use_aux else None)
        for name in ("W_enc", "b_enc", "b_dec", "W_dec"):
            num = np.zeros_like(W64[name])
            it = np.nditer(W64[name], flags=["multi_index"])
            for _ in it:
                i = it.multi_index
                Wp = {a: b.copy() for a, b in W64.items()}
                Wm = {a: b.copy() for a, b in W64.items()}
                Wp[name][i] += 1e-5
                Wm[name][i] -= 1e-5
                num[i] = (loss(Wp, use_aux) - loss(Wm, use_aux)) / 2e-5
            if name == "W_dec":
                num -= (num * W64["W_dec"]).sum(1, keepdims=True) * W64["W_dec"]
            rel = float(np.abs(num - g[name]).max() / np.abs(num).max())
            worst = max(worst, rel)
            print(f"grad check {'aux ' if use_aux else 'main'} {name:6s}: max rel err {rel:.2e}")
    assert worst < 1e-4, worst
    print("gradient check OK")


if __name__ == "__main__":
    main()
