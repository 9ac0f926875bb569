"""Shared fixtures: small corpora built precisely, with brute-force references in numpy."""

import numpy as np
import pytest

from feature_dictionary import DictionaryConfig, ExtractionConfig, FeatureDictionary

WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "to", "it"]


def random_corpus(seed=0, n_seq=12, seq_len=40, n_features=48, density=0.05):
    """Random sparse activations [n_seq, seq_len, F] (float32) and token lists."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_seq, seq_len, n_features)) < density
    acts = (rng.random((n_seq, seq_len, n_features)).astype(np.float32) * 3 + 0.005) * mask
    acts = acts.astype(np.float32)
    tokens = [list(rng.choice(WORDS, size=seq_len)) for _ in range(n_seq)]
    return acts, tokens


class Reference:
    """Brute-force statistics over all tokens of a corpus, numpy only."""

    def __init__(self, acts, tokens, threshold=0.01, seq_offset=0):
        self.acts = acts
        self.tokens = tokens
        self.thr = np.float32(threshold)
        self.seq_offset = seq_offset
        n_seq, seq_len, f = acts.shape
        self.flat = acts.reshape(-1, f)
        self.fires = self.flat >= self.thr
        self.flat_tokens = [t for seq in tokens for t in seq]
        self.seq_of = np.repeat(np.arange(n_seq), seq_len) + seq_offset
        self.pos_of = np.tile(np.arange(seq_len), n_seq)

    def count(self, j):
        return int(self.fires[:, j].sum())

    def values(self, j):
        return self.flat[self.fires[:, j], j].astype(np.float64)

    def top(self, j, k):
        rows = np.nonzero(self.fires[:, j])[0]
        order = sorted(rows, key=lambda r: (-self.flat[r, j], self.seq_of[r], self.pos_of[r]))
        return order[:k]

    def token_firings(self, j):
        out = {}
        for r in np.nonzero(self.fires[:, j])[0]:
            t = self.flat_tokens[r]
            out[t] = out.get(t, 0) + 1
        return out

    def occurrences(self):
        out = {}
        for t in self.flat_tokens:
            out[t] = out.get(t, 0) + 1
        return out


def build(acts, tokens, n_features=None, **extraction):
    extraction.setdefault("include_dead_features", True)
    cfg = DictionaryConfig(extraction=ExtractionConfig(**extraction), model_name="m", sae_name="s", layer=3)
    d = FeatureDictionary(n_features or acts.shape[-1], 16, cfg)
    d.process_batch(acts, tokens)
    return d


@pytest.fixture
def corpus():
    return random_corpus()


def assert_same(a, b, path="", rel=1e-9, skip=()):
    """Deep equality of JSON-like data, floats within ``rel`` (sums added in another order
    differ in the last bits); keys in ``skip`` are ignored at any depth."""
    assert type(a) is type(b) or (isinstance(a, (int, float)) and isinstance(b, (int, float))), f"{path}: {a!r} vs {b!r}"
    if isinstance(a, dict):
        ka = set(a) - set(skip)
        kb = set(b) - set(skip)
        assert ka == kb, f"{path}: keys {sorted(ka ^ kb)}"
        for k in ka:
            assert_same(a[k], b[k], f"{path}/{k}", rel, skip)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{path}: length {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]", rel, skip)
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=rel, abs=1e-12), f"{path}: {a!r} vs {b!r}"
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"
