#!/usr/bin/env python3
"""Small fixtures cut from the real SmolLM2 TopK SAE dataset (numpy only).

Usage (from the repository root):
    python3 scripts/sae-reference/make_smollm2_fixtures.py /path/to/smollm2-l9-topk3072

Writes crates/feature-dictionary/tests/fixtures/smollm2/:
  tokenizer.json, token_ids.npy, tokens.json   copied as they are
  sae/cfg.json, sae/sae_weights.safetensors     the real TopK SAE (float16 weights)
  residuals_first4.npy      float16 [256, 576]: the first 4 sequences of dev/residuals.npy
  latents_first4.safetensors  the nonzeros of dev/latents_dense_first4.npy (exact float32,
                             delphi layout: locations int32 (seq, pos, latent), activations)
  shards_first8/<start>_<end>.safetensors  the two real delphi shards restricted to the
                             first 8 sequences (uint16 locations, float16 activations, tokens)
"""
import json
import os
import shutil
import struct
import sys

import numpy as np

OUT = os.path.join("crates", "feature-dictionary", "tests", "fixtures", "smollm2")


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dt = {"F32": "<f4", "F16": "<f2", "I32": "<i4", "U16": "<u2", "U32": "<u4", "I64": "<i8"}
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=dt[e["dtype"]]).reshape(e["shape"])
    return out


def write_safetensors(path, tensors):
    names = {"<f4": "F32", "<f2": "F16", "<i4": "I32", "<u2": "U16"}
    header, offset, blobs = {}, 0, []
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        data = a.tobytes()
        header[name] = {"dtype": names[a.dtype.str], "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def main():
    src = sys.argv[1]
    os.makedirs(os.path.join(OUT, "sae"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "shards_first8"), exist_ok=True)
    shutil.copy(os.path.join(src, "tokenizer.json"), OUT)
    shutil.copy(os.path.join(src, "dev", "token_ids.npy"), OUT)
    shutil.copy(os.path.join(src, "dev", "tokens.json"), OUT)
    for f in ("cfg.json", "sae_weights.safetensors"):
        shutil.copy(os.path.join(src, "sae", f), os.path.join(OUT, "sae"))
    res = np.load(os.path.join(src, "dev", "residuals.npy"))
    np.save(os.path.join(OUT, "residuals_first4.npy"), res[:256].astype(np.float16))
    dense = np.load(os.path.join(src, "dev", "latents_dense_first4.npy"))
    rows, cols = np.nonzero(dense)
    loc = np.stack([rows // 64, rows % 64, cols], axis=1).astype(np.int32)
    write_safetensors(os.path.join(OUT, "latents_first4.safetensors"),
                      {"locations": loc, "activations": dense[rows, cols].astype(np.float32)})
    for name in ("0_1535", "1536_3071"):
        t = read_safetensors(os.path.join(src, "dev", "latents_sharded", name + ".safetensors"))
        m = t["locations"][:, 0] < 8
        write_safetensors(os.path.join(OUT, "shards_first8", name + ".safetensors"),
                          {"locations": t["locations"][m], "activations": t["activations"][m],
                           "tokens": t["tokens"][:8]})
    print("wrote", OUT)


if __name__ == "__main__":
    main()
