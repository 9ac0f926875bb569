"""TopK sparse autoencoder in numpy (manual gradients, Adam), SAELens "topk" semantics.

encode: pre = (x - b_dec) @ W_enc + b_enc; keep the k largest entries of pre per token; ReLU.
decode: x_hat = z @ W_dec + b_dec.
Training happens in a scaled space x' = s * x (s from the training data, see train()); the scale is
folded into the weights afterwards (fold_scale) so that the saved SAE applies to RAW residuals.
"""
import time

import numpy as np
import scipy.sparse as sp

F32 = np.float32


def topk_sparse(pre, k):
    """pre [B, n] -> (idx [B, k] int64, val [B, k] float32 after ReLU)."""
    idx = np.argpartition(pre, -k, axis=1)[:, -k:]
    val = np.maximum(np.take_along_axis(pre, idx, axis=1), 0)
    return idx, val


def to_csr(idx, val, n):
    B, k = idx.shape
    return sp.csr_matrix((val.ravel(), idx.ravel(), np.arange(0, B * k + 1, k)), shape=(B, n))


def encode(W, x, k):
    pre = (x - W["b_dec"]) @ W["W_enc"]
    pre += W["b_enc"]
    return topk_sparse(pre, k)


def decode(W, idx, val):
    return to_csr(idx, val, W["W_dec"].shape[0]) @ W["W_dec"] + W["b_dec"]


def evaluate(W, X, k, chunk=4096, pos=None, ctx=64):
    """Metrics over rows of X (raw or scaled, matching W).  Returns dict with
    fvu_all (all rows), fvu_pos1 (rows with position >= 1, i.e. excluding the attention-sink
    position 0; row = seq*ctx + pos), mean L0 (#latents > 0 per token), fired mask [d_sae]."""
    n_lat = W["W_dec"].shape[0]
    fired = np.zeros(n_lat, bool)
    se = np.zeros(len(X), np.float64)
    l0 = 0
    for a in range(0, len(X), chunk):
        x = np.asarray(X[a:a + chunk], dtype=F32)
        idx, val = encode(W, x, k)
        xh = decode(W, idx, val)
        se[a:a + len(x)] = ((xh - x) ** 2).sum(1, dtype=np.float64)
        nz = val > 0
        l0 += int(nz.sum())
        fired[idx[nz]] = True
    p = np.arange(len(X)) % ctx
    out = {"n_tokens": len(X), "mean_l0": l0 / len(X), "fired": fired,
           "dead_frac": float(1 - fired.mean()), "n_dead": int((~fired).sum())}
    for name, m in (("fvu_all", np.ones(len(X), bool)), ("fvu_pos1", p >= 1)):
        Xm = np.asarray(X, dtype=np.float64)[m] if len(X) * X.shape[1] < 5e7 else None
        if Xm is None:  # chunked mean / variance
            mu = np.zeros(X.shape[1]); n = 0
            for a in range(0, len(X), chunk):
                xx = np.asarray(X[a:a + chunk], np.float64)[m[a:a + chunk]]
                mu += xx.sum(0); n += len(xx)
            mu /= n
            var = 0.0
            for a in range(0, len(X), chunk):
                xx = np.asarray(X[a:a + chunk], np.float64)[m[a:a + chunk]]
                var += ((xx - mu) ** 2).sum()
        else:
            var = ((Xm - Xm.mean(0)) ** 2).sum()
        out[name] = float(se[m].sum() / var)
    return out


class Adam:
    def __init__(self, params, lr, b1=0.9, b2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.m = {n: np.zeros_like(p) for n, p in params.items()}
        self.v = {n: np.zeros_like(p) for n, p in params.items()}
        self.t = 0

    def step(self, params, grads, lr):
        self.t += 1
        c1 = 1 - self.b1 ** self.t
        c2 = 1 - self.b2 ** self.t
        for n, g in grads.items():
            m, v, p = self.m[n], self.v[n], params[n]
            m *= self.b1; m += (1 - self.b1) * g
            v *= self.b2; v += (1 - self.b2) * (g * g)
            upd = np.sqrt(v / F32(c2)); upd += F32(self.eps)
            np.divide(m, upd, out=upd); upd *= F32(lr / c1)
            p -= upd


def grads_batch(W, x, k, aux_k=0, dead=None, aux_coef=1 / 32):
    """Loss = mean over tokens of ||x_hat - x||^2 (+ aux_coef * AuxK loss on dead latents).
    Returns (loss, mse, grads dict)."""
    B = len(x)
    n_lat = W["W_dec"].shape[0]
    xc = x - W["b_dec"]
    pre = xc @ W["W_enc"]
    pre += W["b_enc"]
    idx, val = topk_sparse(pre, k)
    Z = to_csr(idx, val, n_lat)
    xh = Z @ W["W_dec"] + W["b_dec"]
    e = xh - x
    mse = float((e * e).sum() / B)
    g = (F32(2.0 / B) * e).astype(F32)                               # dL/dx_hat
    dW_dec = np.asarray(Z.T @ g)                                     # [n_lat, d]
    db_dec = g.sum(0)
    dz = np.einsum("bd,bkd->bk", g, W["W_dec"][idx], optimize=True)  # dL/dz at the top-k entries
    dz *= (val > 0)                                                  # ReLU
    loss = mse
    rows_idx, rows_val = idx, dz
    if aux_k and dead is not None and dead.any():
        # AuxK (Gao et al. 2024): the dead latents' top-aux_k pre-activations reconstruct the residual
        # error e_res = x - x_hat (treated as a constant).
        dead_ids = np.flatnonzero(dead)
        ka = min(aux_k, len(dead_ids))
        pd = pre[:, dead_ids]
        ai, av = topk_sparse(pd, ka)
        ai = dead_ids[ai]
        Za = to_csr(ai, av, n_lat)
        ea = Za @ W["W_dec"] + e                                     # aux_hat - (x - x_hat)
        aux = float((ea * ea).sum() / B)
        loss += aux_coef * aux
        ga = (F32(2.0 * aux_coef / B) * ea).astype(F32)
        dW_dec += np.asarray(Za.T @ ga)
        dza = np.einsum("bd,bkd->bk", ga, W["W_dec"][ai], optimize=True) * (av > 0)
        rows_idx = np.concatenate([idx, ai], 1)
        rows_val = np.concatenate([dz, dza], 1)
    dpre = to_csr(rows_idx, rows_val.astype(F32), n_lat)             # duplicates are summed
    db_enc = np.asarray(dpre.sum(0)).ravel().astype(F32)
    dW_enc = np.asarray(dpre.T @ xc).T                               # [d, n_lat], F-ordered view
    db_dec -= W["W_enc"] @ db_enc                                    # encoder path of b_dec
    # unit-norm decoder rows: remove the radial component of the gradient
    dW_dec -= (dW_dec * W["W_dec"]).sum(1, keepdims=True) * W["W_dec"]
    grads = {"W_enc": dW_enc.astype(F32, copy=False), "b_enc": db_enc,
             "W_dec": dW_dec.astype(F32), "b_dec": db_dec.astype(F32)}
    return loss, mse, grads, idx, val


def init_weights(d_in, d_sae, b_dec, rng):
    W_dec = rng.standard_normal((d_sae, d_in)).astype(F32)
    W_dec /= np.linalg.norm(W_dec, axis=1, keepdims=True)
    # W_enc is kept as an F-ordered [d_in, d_sae] array (a transposed view of a C-ordered
    # [d_sae, d_in] buffer) so that its sparse gradient dpre^T @ x needs no transposing copy.
    return {"W_enc": W_dec.copy().T, "b_enc": np.zeros(d_sae, F32),
            "W_dec": W_dec, "b_dec": b_dec.astype(F32)}


def fold_scale(W, s):
    """Weights trained on s*x -> weights for raw x (SAELens fold_activation_norm_scaling_factor)."""
    return {"W_enc": W["W_enc"] * F32(s), "b_enc": W["b_enc"].copy(),
            "W_dec": W["W_dec"] / F32(s), "b_dec": W["b_dec"] / F32(s)}


def train(Xtr, Xho, d_sae, k, *, epochs, batch, lr, seed, warmup, decay_frac, aux_k, dead_steps,
          include_pos0, eval_every, aux_coef=1 / 32, ctx=64, log=print):
    """Xtr/Xho: raw residuals [n_seq*ctx, d] float32 (row = seq*ctx + pos).
    Scale s: mean ||s x||^2 = d_in over TRAINING tokens at positions 1..ctx-1 (position 0, the
    attention sink, is excluded from the scale and the b_dec init). Training rows: all positions if
    include_pos0 else positions 1..ctx-1."""
    d = Xtr.shape[1]
    pos = np.arange(len(Xtr)) % ctx
    ms = float(np.mean((Xtr[pos >= 1].astype(np.float64) ** 2).sum(1)))
    s = float(np.sqrt(d / ms))
    rows = np.arange(len(Xtr)) if include_pos0 else np.flatnonzero(pos >= 1)
    rng = np.random.default_rng(seed)
    Xs = (Xtr * F32(s)).astype(F32)
    W = init_weights(d, d_sae, Xs[pos >= 1].mean(0), rng)
    opt = Adam(W, lr)
    steps_per_epoch = len(rows) // batch
    total = epochs * steps_per_epoch
    decay_start = int(total * (1 - decay_frac))
    last_fired = np.zeros(d_sae, np.int64)
    hist = []
    t0 = time.time()
    step = 0
    log(f"scale s = {s:.8f}; {len(rows):,} training rows; {steps_per_epoch} steps/epoch x {epochs} "
        f"epochs = {total} steps")
    Xho_s = None
    for ep in range(epochs):
        perm = rows[rng.permutation(len(rows))]
        run_mse = 0.0
        for b in range(steps_per_epoch):
            x = Xs[perm[b * batch:(b + 1) * batch]]
            dead = (step - last_fired) > dead_steps if aux_k else None
            loss, mse, g, idx, val = grads_batch(W, x, k, aux_k, dead, aux_coef)
            last_fired[idx[val > 0]] = step
            cur_lr = lr * min(1.0, (step + 1) / warmup)
            if step >= decay_start:
                cur_lr *= max(0.0, (total - step) / (total - decay_start))
            opt.step(W, g, cur_lr)
            W["W_dec"] /= np.linalg.norm(W["W_dec"], axis=1, keepdims=True)
            run_mse += mse
            step += 1
            if step % eval_every == 0 or step == total:
                if Xho_s is None:
                    Xho_s = (Xho * F32(s)).astype(F32)
                ev = evaluate(W, Xho_s, k, ctx=ctx)
                n_recent_dead = int(((step - last_fired) > dead_steps).sum())
                rec = {"step": step, "epoch": ep + 1, "seconds": round(time.time() - t0, 1),
                       "train_mse_scaled": run_mse / (b + 1),
                       "heldout_fvu_pos1": ev["fvu_pos1"], "heldout_fvu_all": ev["fvu_all"],
                       "heldout_dead_frac": ev["dead_frac"], "heldout_l0": ev["mean_l0"],
                       "train_dead_recent": n_recent_dead}
                hist.append(rec)
                log(f"step {step:5d}/{total} ep {ep + 1} {rec['seconds']:7.1f}s train mse' "
                    f"{rec['train_mse_scaled']:.2f} | held-out FVU pos1..63 {ev['fvu_pos1']:.4f} "
                    f"all {ev['fvu_all']:.5f} L0 {ev['mean_l0']:.2f} dead {ev['n_dead']} "
                    f"| not fired in last {dead_steps} steps: {n_recent_dead}")
    return W, s, hist, time.time() - t0
