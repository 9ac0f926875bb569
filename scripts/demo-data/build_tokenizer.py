"""Rebuild a HuggingFace tokenizer.json from the vocabulary/merges stored in the GGUF, then check it.

GGUF: tokenizer.ggml.model = gpt2 (byte-level BPE), pre = smollm, 49,152 tokens, 48,900 merges,
17 CONTROL tokens (ids 0..16), add_bos_token = false.
HF layout: BPE model, pre-tokenizer Sequence[Digits(individual_digits), ByteLevel(add_prefix_space
false, GPT-2 regex)], ByteLevel decoder, the CONTROL tokens registered as special added tokens.

Check: encoding sample sentences gives token strings whose ids in the GGUF vocabulary list equal
the tokenizer's ids, decoding round-trips, digits are split individually, and no BOS is added.
"""
import json
import sys

from gguf import GGUFReader
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

SENTENCES = [
    "The capital of France is Paris. The capital of Germany is",
    "In the beginning God created the heaven and the earth.",
    "It's 1999 -- don't panic! 3.14159 < 42; naïve café, “quotes” and <|im_end|> stay special.",
]


def build(gguf_path, out_path):
    r = GGUFReader(gguf_path)
    f = lambda k: r.fields[k].contents()
    assert f("tokenizer.ggml.model") == "gpt2" and f("tokenizer.ggml.pre") == "smollm"
    tokens = f("tokenizer.ggml.tokens")
    ttype = f("tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ")) for m in f("tokenizer.ggml.merges")]
    assert all(len(m) == 2 for m in merges)
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    special = [tokens[i] for i in range(len(tokens)) if ttype[i] == 3]  # 3 = CONTROL
    tok.add_special_tokens(special)
    tok.save(out_path, pretty=False)
    return tokens, special


def check(tokenizer_path, gguf_tokens):
    tok = Tokenizer.from_file(tokenizer_path)
    lookup = {t: i for i, t in enumerate(gguf_tokens)}
    report = []
    for s in SENTENCES:
        enc = tok.encode(s)
        ids_from_gguf = [lookup[t] for t in enc.tokens]
        assert ids_from_gguf == enc.ids, (s, enc.tokens, enc.ids, ids_from_gguf)
        assert tok.decode(enc.ids, skip_special_tokens=False) == s, (s, tok.decode(enc.ids))
        report.append({"text": s, "ids": enc.ids, "tokens": enc.tokens})
    enc = tok.encode("1999")
    assert enc.tokens == ["1", "9", "9", "9"], enc.tokens
    assert tok.encode("Hello").tokens == ["Hello"]  # no BOS / no post-processor
    return report


if __name__ == "__main__":
    gguf_path, out_path = sys.argv[1], sys.argv[2]
    gguf_tokens, special = build(gguf_path, out_path)
    rep = check(out_path, gguf_tokens)
    for r in rep:
        print("tokenizer check OK:", json.dumps(r["text"]), "->", r["ids"])
    print(f"tokenizer.json written: {len(gguf_tokens)} tokens, {len(special)} special")
