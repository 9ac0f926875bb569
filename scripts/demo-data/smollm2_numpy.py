"""Plain numpy float32 forward pass of SmolLM2-135M-Instruct read from its GGUF file.

Llama architecture: RMSNorm (eps from GGUF, 1e-5), RoPE (base from GGUF, 1e5) on ADJACENT pairs
(llama.cpp's converter permutes the Q/K rows so that the interleaved "normal" RoPE applies),
grouped-query attention (9 query heads, 3 KV heads, query head h uses KV head h // 3, like HF
`repeat_kv`), SiLU-gated MLP, tied embeddings (logits = final_norm(h) @ token_embd^T).
"""
import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def _field(reader, key):
    return reader.fields[key].contents()


class SmolLM2:
    def __init__(self, gguf_path, n_blocks=None):
        r = GGUFReader(gguf_path)
        self.reader = r
        assert _field(r, "general.architecture") == "llama"
        self.n_layer = int(_field(r, "llama.block_count"))
        self.d = int(_field(r, "llama.embedding_length"))
        self.n_head = int(_field(r, "llama.attention.head_count"))
        self.n_kv = int(_field(r, "llama.attention.head_count_kv"))
        self.rope_base = float(_field(r, "llama.rope.freq_base"))
        self.eps = float(_field(r, "llama.attention.layer_norm_rms_epsilon"))
        self.hd = self.d // self.n_head
        n_load = self.n_layer if n_blocks is None else n_blocks
        t = {x.name: x for x in r.tensors}

        def W(name):
            x = t[name]
            a = dequantize(x.data, x.tensor_type)  # numpy shape = reversed GGUF shape = [out, in]
            return np.ascontiguousarray(a.astype(np.float32))

        self.tok_emb = W("token_embd.weight")  # [vocab, d]
        self.out_norm = W("output_norm.weight")
        assert "output.weight" not in t  # tied embeddings
        self.blocks = []
        for i in range(n_load):
            p = f"blk.{i}."
            # Store transposed ([in, out]) so that y = x @ w.
            self.blocks.append(dict(
                attn_norm=W(p + "attn_norm.weight"),
                wq=np.ascontiguousarray(W(p + "attn_q.weight").T),
                wk=np.ascontiguousarray(W(p + "attn_k.weight").T),
                wv=np.ascontiguousarray(W(p + "attn_v.weight").T),
                wo=np.ascontiguousarray(W(p + "attn_output.weight").T),
                ffn_norm=W(p + "ffn_norm.weight"),
                wg=np.ascontiguousarray(W(p + "ffn_gate.weight").T),
                wu=np.ascontiguousarray(W(p + "ffn_up.weight").T),
                wd=np.ascontiguousarray(W(p + "ffn_down.weight").T),
            ))
        self._rope_cache = {}

    def rms(self, x, w):
        ms = np.mean(x * x, axis=-1, keepdims=True, dtype=np.float32)
        return (x / np.sqrt(ms + np.float32(self.eps))) * w

    def _rope(self, T):
        if T not in self._rope_cache:
            inv = self.rope_base ** (-np.arange(0, self.hd, 2, dtype=np.float64) / self.hd)  # [hd/2]
            ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]                     # [T, hd/2]
            self._rope_cache[T] = (np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32))
        return self._rope_cache[T]

    def apply_rope(self, x):
        """x: [B, T, H, hd]; rotate adjacent pairs (2i, 2i+1) by angle pos * base^(-2i/hd)."""
        cos, sin = self._rope(x.shape[1])
        cos = cos[None, :, None, :]
        sin = sin[None, :, None, :]
        x0 = x[..., 0::2]
        x1 = x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out

    def block(self, h, p):
        """h: [B, T, d] float32 residual stream -> residual after this block."""
        B, T, d = h.shape
        a = self.rms(h, p["attn_norm"]).reshape(B * T, d)
        q = (a @ p["wq"]).reshape(B, T, self.n_head, self.hd)
        k = (a @ p["wk"]).reshape(B, T, self.n_kv, self.hd)
        v = (a @ p["wv"]).reshape(B, T, self.n_kv, self.hd)
        q = self.apply_rope(q)
        k = self.apply_rope(k)
        rep = self.n_head // self.n_kv
        k = np.repeat(k, rep, axis=2)  # query head h -> kv head h // rep
        v = np.repeat(v, rep, axis=2)
        s = np.einsum("bqhd,bkhd->bhqk", q, k, optimize=True) * np.float32(1.0 / np.sqrt(self.hd))
        mask = np.triu(np.ones((T, T), dtype=bool), 1)
        s = np.where(mask[None, None], np.float32(-np.inf), s)
        s = s - s.max(axis=-1, keepdims=True)
        e = np.exp(s)
        att = e / e.sum(axis=-1, keepdims=True)
        o = np.einsum("bhqk,bkhd->bqhd", att, v, optimize=True).reshape(B * T, d)
        h = h + (o @ p["wo"]).reshape(B, T, d)
        m = self.rms(h, p["ffn_norm"]).reshape(B * T, d)
        g = m @ p["wg"]
        g = g / (np.float32(1.0) + np.exp(-g))  # SiLU
        f = (g * (m @ p["wu"])) @ p["wd"]
        return h + f.reshape(B, T, d)

    def residuals(self, tokens, upto_block, keep=None):
        """tokens [B, T] -> dict {block index: residual after that block, [B, T, d] float32}
        for block indices in `keep` (default: only `upto_block`). Runs blocks 0..upto_block."""
        keep = [upto_block] if keep is None else list(keep)
        h = self.tok_emb[tokens].astype(np.float32)
        out = {}
        for i in range(upto_block + 1):
            h = self.block(h, self.blocks[i])
            if i in keep:
                out[i] = h
        return out

    def logits(self, tokens):
        """Full model: tokens [B, T] -> logits [B, T, vocab]."""
        assert len(self.blocks) == self.n_layer
        h = self.residuals(tokens, self.n_layer - 1)[self.n_layer - 1]
        return self.rms(h, self.out_norm) @ self.tok_emb.T
