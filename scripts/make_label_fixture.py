"""Derives the compact real-data fixture used by tests/labels_real.rs.

Reads (once, by hand) the shared SmolLM2 layer-9 TopK SAE dev set and writes
crates/feature-dictionary/tests/fixtures/smollm2_dev/:
  latents_u16.bin  12,800 rows x 24 latent indices (uint16 LE), row = seq*64 + pos, ascending
                   within a row (every dev row has exactly k = 24 nonzero latents; all fire)
  token_ids.bin    12,800 token ids (uint32 LE), row order as above
  vocab.json       {token_id: decoded string} for the ids that occur
  truth_best_token.json  per latent: null or [token_id, token, firings_on_token,
                   token_occurrences, activation_count] copied from truth.json (precision and
                   recall are recomputed from these integers in the test, exactly as truth.json)
Usage: python3 scripts/make_label_fixture.py /path/to/smollm2-l9-topk3072
"""
import json, struct, sys
import numpy as np

src = sys.argv[1]
out = "crates/feature-dictionary/tests/fixtures/smollm2_dev"
raw = open(f"{src}/dev/latents.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
base = 8 + n
def tensor(name, dtype):
    a, b = hdr[name]["data_offsets"]
    return np.frombuffer(raw[base + a:base + b], dtype=dtype).reshape(hdr[name]["shape"])
loc = tensor("locations", "<i4")
act = tensor("activations", "<f4")
tok = tensor("tokens", "<i4")
assert (act > 0).all()
row = loc[:, 0].astype(np.int64) * 64 + loc[:, 1]
assert (np.diff(row) >= 0).all() and len(row) == 12800 * 24
assert (np.bincount(row, minlength=12800) == 24).all()
lat = loc[:, 2].reshape(12800, 24)
assert (np.diff(lat, axis=1) > 0).all()
lat.astype("<u2").tofile(f"{out}/latents_u16.bin")
tok.reshape(-1).astype("<u4").tofile(f"{out}/token_ids.bin")
strings = json.load(open(f"{src}/dev/tokens.json"))
ids = tok.reshape(-1)
flat = [s for seq in strings for s in seq]
vocab = {}
for i, s in zip(ids.tolist(), flat):
    assert vocab.setdefault(i, s) == s
json.dump({str(k): v for k, v in sorted(vocab.items())}, open(f"{out}/vocab.json", "w"), ensure_ascii=False)
truth = json.load(open(f"{src}/truth.json"))
rows = []
for i in range(truth["d_sae"]):
    t = truth["latents"][str(i)]
    b = t["best_token"]
    rows.append(None if b is None else [b["token_id"], b["token"], b["firings_on_token"], b["token_occurrences"], t["activation_count"]])
json.dump(rows, open(f"{out}/truth_best_token.json", "w"), ensure_ascii=False, separators=(",", ":"))
print("ok", len(vocab), "distinct tokens,", sum(r is not None for r in rows), "latents with a best token")
