#!/usr/bin/env python3
"""Reference fixtures for the in-process SAE encoders (numpy only, no torch/safetensors).

For every architecture (and a few dtype / config variants) this writes, under
crates/feature-dictionary/tests/fixtures/sae/<name>/:
  cfg.json, sae_weights.safetensors (or params.npz), inputs.npy [32, 16] float32,
  expected.npy [32, 64] float32 = the SAELens encode formulas evaluated in float64 on the
  weights as stored (after rounding to their dtype).

The sparsify_* directories are EleutherAI sparsify SAEs in sparsify's own layout (cfg.json
with d_in and the SparseCoderConfig fields, sae.safetensors with encoder.weight
[num_latents, d_in], encoder.bias, b_dec, W_dec, W_skip), their expected.npy computed the way
sparsify's SparseCoder.encode does: x - b_dec (not for transcoders), relu(x @ W.T + b), then
the top k (activation "topk") or the max of each of k contiguous groups ("groupmax").

Run from the repository root:  python3 scripts/sae-reference/make_fixtures.py
"""
import json
import os
import struct
import zipfile
import io

import numpy as np

D_IN, D_SAE, N_TOK = 16, 64, 32
ROOT = os.path.join("crates", "feature-dictionary", "tests", "fixtures", "sae")


def bf16_round(a):
    """Round float32 to bfloat16 (nearest even); returns (rounded float32, uint16 bits)."""
    bits = np.asarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    back = (rounded.astype(np.uint32) << 16).view(np.float32)
    return back, rounded


def store(a, dtype):
    """(values as stored, as float64) and (safetensors dtype, bytes)."""
    a = np.asarray(a, dtype=np.float32)
    if dtype == "F32":
        return a.astype(np.float64), a.astype("<f4").tobytes()
    if dtype == "F16":
        h = a.astype("<f2")
        return h.astype(np.float64), h.tobytes()
    if dtype == "BF16":
        back, bits = bf16_round(a)
        return back.astype(np.float64), bits.astype("<u2").tobytes()
    raise ValueError(dtype)


def write_safetensors(path, tensors, metadata=None):
    header, offset, blobs = {}, 0, []
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def encode(arch, x, w, cfg):
    """The formulas of formats.md, in float64 (SAELens normalizes inputs before b_dec)."""
    norm = cfg.get("normalize_activations", "none")
    if norm == "constant_norm_rescale":
        x = x * (np.sqrt(x.shape[1]) / np.linalg.norm(x, axis=1, keepdims=True))
    elif norm == "layer_norm":
        x = x - x.mean(axis=1, keepdims=True)
        x = x / (x.std(axis=1, ddof=1, keepdims=True) + 1e-5)
    xin = x - w["b_dec"] if cfg.get("apply_b_dec_to_input", True) else x
    if arch == "gated":
        pre = xin @ w["W_enc"]
        gate = (pre + w["b_gate"]) > 0
        mag = np.maximum(pre * np.exp(w["r_mag"]) + w["b_mag"], 0)
        return gate * mag, None
    pre = xin @ w["W_enc"] + w["b_enc"]
    if arch == "standard":
        return np.maximum(pre, 0), pre
    if arch in ("jumprelu", "batchtopk"):
        return np.maximum(pre, 0) * (pre > w["threshold"]), pre
    if arch == "topk":
        if cfg.get("rescale_acts_by_decoder_norm"):
            pre = pre * np.linalg.norm(w["W_dec"], axis=1)
        k = cfg["k"]
        idx = np.argsort(-pre, axis=1, kind="stable")[:, :k]
        z = np.zeros_like(pre)
        np.put_along_axis(z, idx, np.maximum(np.take_along_axis(pre, idx, axis=1), 0), axis=1)
        return z, pre
    raise ValueError(arch)


def margin_ok(arch, pre, w, cfg):
    """No value within 1e-3 of a decision boundary, so f32 vs f64 cannot flip a latent."""
    if pre is None:
        return True
    if arch in ("jumprelu", "batchtopk"):
        return np.abs(pre - w["threshold"]).min() > 1e-3 and np.abs(pre).min() > 1e-3
    if arch == "topk":
        s = -np.sort(-pre, axis=1)
        k = cfg["k"]
        return (s[:, k - 1] - s[:, k]).min() > 1e-3
    return np.abs(pre).min() > 1e-3


def npy_bytes(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


VARIANTS = [
    # name, architecture, weight dtype, cfg extras, layout
    ("standard_f32", "standard", "F32", {}, "v6"),
    ("standard_bf16_flat", "standard", "BF16", {"apply_b_dec_to_input": False}, "flat"),
    ("jumprelu_f16", "jumprelu", "F16", {}, "v6"),
    ("topk_f32", "topk", "F32", {"k": 8}, "v6"),
    ("topk_rescale_bf16", "topk", "BF16", {"k": 5, "rescale_acts_by_decoder_norm": True}, "v6"),
    ("topk_flat_f16", "topk", "F16", {"k": 6}, "flat"),
    ("batchtopk_f32", "batchtopk", "F32", {"k": 8}, "v6"),
    ("gated_f32", "gated", "F32", {}, "v6"),
    ("gemmascope_npz", "jumprelu", "F32", {"apply_b_dec_to_input": False}, "npz"),
    ("standard_layer_norm", "standard", "F32", {"normalize_activations": "layer_norm"}, "v6"),
    ("topk_constant_norm", "topk", "F16", {"k": 8, "normalize_activations": "constant_norm_rescale"}, "v6"),
    # k <= d_sae / 16 takes the encoder's one-pass heap selection (the others its partition path).
    ("topk_small_k_rescale", "topk", "F32", {"k": 3, "rescale_acts_by_decoder_norm": True}, "v6"),
    ("topk_small_k", "topk", "BF16", {"k": 4}, "v6"),
]


def sparsify_encode(x, w, cfg):
    """sparsify's SparseCoder.encode in float64: relu first, then top-k or group max."""
    xin = x if cfg["transcode"] else x - w["b_dec"]
    pre = xin @ w["encoder.weight"].T + w["encoder.bias"]
    acts = np.maximum(pre, 0)
    k = cfg["k"]
    z = np.zeros_like(acts)
    if cfg["activation"] == "topk":
        idx = np.argsort(-acts, axis=1, kind="stable")[:, :k]
    else:
        groups = acts.reshape(acts.shape[0], k, -1)
        idx = groups.argmax(axis=2) + np.arange(k) * groups.shape[2]
    np.put_along_axis(z, idx, np.take_along_axis(acts, idx, axis=1), axis=1)
    return z, pre


def sparsify_margin_ok(pre, cfg):
    """No pre-activation within 1e-3 of 0 or of the value that decides its selection."""
    if np.abs(pre).min() <= 1e-3:
        return False
    k = cfg["k"]
    if cfg["activation"] == "topk":
        s = -np.sort(-pre, axis=1)
        return (s[:, k - 1] - s[:, k]).min() > 1e-3
    g = -np.sort(-pre.reshape(pre.shape[0], k, -1), axis=2)
    return (g[:, :, 0] - g[:, :, 1]).min() > 1e-3


SPARSIFY_VARIANTS = [
    # name, weight dtype, cfg fields, tensors beyond encoder.* and b_dec
    # bf16 as sparsify trains; the width from expansion_factor (num_latents 0).
    ("sparsify_topk_bf16", "BF16",
     {"activation": "topk", "expansion_factor": 4, "num_latents": 0, "k": 8}, ["W_dec"]),
    # A transcoder (input used as it is) with a skip connection; k small enough for the
    # encoder's one-pass heap selection; num_latents wins over expansion_factor.
    ("sparsify_transcoder_f32", "F32",
     {"activation": "topk", "expansion_factor": 32, "num_latents": 64, "k": 3,
      "transcode": True, "skip_connection": True}, ["W_dec", "W_skip"]),
    # groupmax: 8 groups of 8 latents; saved without a decoder.
    ("sparsify_groupmax_f16", "F16",
     {"activation": "groupmax", "expansion_factor": 4, "num_latents": 0, "k": 8}, []),
]


def make_sparsify():
    for vi, (name, dtype, fields, extra) in enumerate(SPARSIFY_VARIANTS):
        cfg = {
            "activation": "topk",
            "expansion_factor": 32,
            "normalize_decoder": True,
            "num_latents": 0,
            "k": 32,
            "multi_topk": False,
            "skip_connection": False,
            "transcode": False,
        }
        cfg.update(fields)
        for attempt in range(1000):
            rng = np.random.default_rng(50_000 + 1000 * vi + attempt)
            raw = {
                "encoder.weight": rng.normal(0, 0.5, (D_SAE, D_IN)),
                "encoder.bias": rng.normal(0, 0.5, D_SAE),
                "b_dec": rng.normal(0, 0.3, D_IN),
            }
            if "W_dec" in extra:
                raw["W_dec"] = rng.normal(0, 0.5, (D_SAE, D_IN))
            if "W_skip" in extra:
                raw["W_skip"] = rng.normal(0, 0.1, (D_IN, D_IN))
            stored, blobs = {}, {}
            for k in sorted(raw):
                vals, data = store(raw[k], dtype)
                stored[k] = vals
                blobs[k] = (dtype, np.shape(raw[k]), data)
            x = rng.normal(0, 1.5, (N_TOK, D_IN)).astype(np.float32)
            z, pre = sparsify_encode(x.astype(np.float64), stored, cfg)
            fired = (z > 0).sum(axis=1)
            if sparsify_margin_ok(pre, cfg) and fired.min() > 0 and (z == 0).any():
                break
        else:
            raise SystemExit(f"{name}: no well-separated draw")
        out = os.path.join(ROOT, name)
        os.makedirs(out, exist_ok=True)
        for f in os.listdir(out):
            os.remove(os.path.join(out, f))
        # sparsify's save_model: safetensors with {"format": "pt"} metadata; save_to_disk:
        # the config's fields plus d_in.
        write_safetensors(os.path.join(out, "sae.safetensors"), blobs, {"format": "pt"})
        with open(os.path.join(out, "cfg.json"), "w") as f:
            json.dump({**cfg, "d_in": D_IN}, f)
        np.save(os.path.join(out, "inputs.npy"), x)
        np.save(os.path.join(out, "expected.npy"), z.astype(np.float32))
        print(f"{name}: sparsify {cfg['activation']} {dtype}, mean L0 {(z > 0).sum(1).mean():.1f}")


def main():
    make_sparsify()
    for vi, (name, arch, dtype, extra, layout) in enumerate(VARIANTS):
        for attempt in range(1000):
            rng = np.random.default_rng(1000 * vi + attempt)
            raw = {
                "W_enc": rng.normal(0, 0.5, (D_IN, D_SAE)),
                "W_dec": rng.normal(0, 0.5, (D_SAE, D_IN)),
                "b_dec": rng.normal(0, 0.3, D_IN),
            }
            if arch == "gated":
                raw["b_gate"] = rng.normal(0, 0.5, D_SAE)
                raw["b_mag"] = rng.normal(0, 0.5, D_SAE)
                raw["r_mag"] = rng.normal(0, 0.3, D_SAE)
            else:
                raw["b_enc"] = rng.normal(0, 0.5, D_SAE)
            if arch in ("jumprelu", "batchtopk"):
                raw["threshold"] = np.abs(rng.normal(0.5, 0.5, D_SAE))
            stored = {}
            blobs = {}
            for k, v in raw.items():
                vals, data = store(v, dtype)
                stored[k] = vals
                blobs[k] = (dtype, np.shape(v), data)
            x = rng.normal(0, 1.5, (N_TOK, D_IN)).astype(np.float32)
            cfg = dict(extra)
            z, pre = encode(arch, x.astype(np.float64), stored, cfg)
            fired = (z > 0).sum(axis=1)
            if margin_ok(arch, pre, stored, cfg) and fired.min() > 0 and (z == 0).any():
                break
        else:
            raise SystemExit(f"{name}: no well-separated draw")
        out = os.path.join(ROOT, name)
        os.makedirs(out, exist_ok=True)
        for f in os.listdir(out):
            os.remove(os.path.join(out, f))
        if layout == "npz":
            # Gemma Scope: lowercase names, float32 arrays in a zip, no cfg.json.
            with zipfile.ZipFile(os.path.join(out, "params.npz"), "w", zipfile.ZIP_DEFLATED) as zf:
                for k, v in stored.items():
                    key = {"W_enc": "w_enc", "W_dec": "w_dec"}.get(k, k)
                    # Fixed timestamp so reruns write identical bytes.
                    info = zipfile.ZipInfo(key + ".npy", date_time=(2020, 1, 1, 0, 0, 0))
                    zf.writestr(info, npy_bytes(v.astype(np.float32)), compress_type=zipfile.ZIP_DEFLATED)
        else:
            write_safetensors(os.path.join(out, "sae_weights.safetensors"), blobs)
            if layout == "v6":
                c = {
                    "architecture": arch,
                    "d_in": D_IN,
                    "d_sae": D_SAE,
                    "dtype": {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[dtype],
                    "device": "cpu",
                    "apply_b_dec_to_input": cfg.get("apply_b_dec_to_input", True),
                    "normalize_activations": cfg.get("normalize_activations", "none"),
                    "metadata": {"model_name": "random", "hook_name": "blocks.0.hook_resid_post"},
                }
                for key in ("k", "rescale_acts_by_decoder_norm"):
                    if key in cfg:
                        c[key] = cfg[key]
            else:
                # Pre-6.0 flat layout.
                c = {
                    "d_in": D_IN,
                    "d_sae": D_SAE,
                    "dtype": "torch.float32",
                    "hook_point": "blocks.0.hook_resid_post",
                    "model_name": "random",
                    "apply_b_dec_to_input": cfg.get("apply_b_dec_to_input", True),
                    "normalize_activations": False,
                    "activation_fn_str": "topk" if arch == "topk" else "relu",
                }
                if arch == "topk":
                    c["activation_fn_kwargs"] = {"k": cfg["k"]}
            with open(os.path.join(out, "cfg.json"), "w") as f:
                json.dump(c, f, indent=1)
        np.save(os.path.join(out, "inputs.npy"), x)
        np.save(os.path.join(out, "expected.npy"), z.astype(np.float32))
        print(f"{name}: {arch} {dtype} {layout}, mean L0 {(z > 0).sum(1).mean():.1f}")


if __name__ == "__main__":
    main()
