"""Analysis over all tokens against brute force."""

import math

import numpy as np
import pytest

from conftest import Reference, build, random_corpus
from feature_dictionary import (ActivationStats, ExtractionConfig, FeatureAnalyzer, FeatureExtractor,
                                FeatureType)


def test_activation_stats_are_over_all_tokens_not_the_top_examples():
    # activations 1..100 on one feature: the original reported mean 90.5 (top 20 only)
    acts = np.zeros((1, 100, 1), dtype=np.float32)
    acts[0, :, 0] = np.arange(1, 101)
    d = build(acts, [[f"t{i % 7}" for i in range(100)]])
    s = d.get_feature_stats(0)
    v = np.arange(1, 101, dtype=np.float64)
    assert s.mean_activation == pytest.approx(50.5) == d[0].mean_activation
    assert s.std_activation == pytest.approx(v.std())
    assert s.min_activation == 1.0 and s.max_activation == 100.0
    assert s.mean_position == pytest.approx(49.5)
    assert s.position_variance == pytest.approx(np.arange(100).var())
    assert s.unique_tokens == 7
    p = np.bincount(np.arange(100) % 7) / 100
    assert s.token_entropy == pytest.approx(-(p * np.log2(p)).sum())
    assert set(s.to_dict()) == set(ActivationStats(0).to_dict())


def test_all_stats_match_brute_force(corpus):
    acts, tokens = corpus
    ref = Reference(acts, tokens)
    an = FeatureAnalyzer(build(acts, tokens).features)
    stats = an.compute_all_stats()
    for j, s in stats.items():
        n = ref.count(j)
        assert s.activation_count == n
        if n:
            v = ref.values(j)
            assert s.mean_activation == pytest.approx(v.mean())
            assert s.std_activation == pytest.approx(v.std(), rel=1e-6)
            assert s.min_activation == pytest.approx(v.min())
            tf = np.array(list(ref.token_firings(j).values()), dtype=np.float64)
            assert s.unique_tokens == len(tf)
            q = tf / tf.sum()
            assert s.token_entropy == pytest.approx(-(q * np.log2(q)).sum())


def test_correlation_is_pearson_over_all_tokens(corpus):
    acts, tokens = corpus
    acts = acts.copy()
    acts[..., 1] = acts[..., 0] * 2  # perfectly correlated with feature 0
    d = build(acts, tokens)
    flat = acts.reshape(-1, acts.shape[2]).astype(np.float64)
    flat = np.where(flat >= np.float32(0.01), flat, 0)
    expect = np.corrcoef(flat.T)
    got = dict(d.get_correlated(0, min_correlation=-1.0))
    assert got[1] == pytest.approx(1.0)
    for j, r in got.items():
        assert r == pytest.approx(expect[0, j], abs=1e-9)
    strong = d.analyzer.find_correlated_features(0, min_correlation=0.5)
    assert strong == [(1, pytest.approx(1.0))]


def test_same_position_in_different_sequences_is_not_correlation():
    # The original gave 1.0 here: both fire at position 3, but never on the same token.
    acts = np.zeros((2, 8, 2), dtype=np.float32)
    acts[0, 3, 0] = 1.0
    acts[1, 3, 1] = 1.0
    d = build(acts, [["a"] * 8, ["b"] * 8])
    assert d.get_correlated(0, min_correlation=0.3) == []
    r = dict(d.get_correlated(0, min_correlation=-1.0))[1]
    assert r == pytest.approx(-1 / 15)


def test_correlation_without_coactivation_data_warns_and_estimates():
    acts = np.zeros((2, 8, 3), dtype=np.float32)
    acts[0, 3, 0] = acts[0, 3, 1] = 1.0  # 0 and 1 fire on the same token
    acts[1, 3, 2] = 1.0                   # 2 at the same position of another sequence
    d = build(acts, [["a"] * 8, ["b"] * 8], track_coactivation=False)
    with pytest.warns(UserWarning, match="track_coactivation"):
        assert d.get_correlated(0, min_correlation=0.0) == [(1, 1.0)]


def test_polysemantic_feature_with_two_context_clusters():
    rng = np.random.default_rng(3)
    nums, animals = ["1", "2", "3", "4"], ["cat", "dog", "cow", "pig"]
    tokens, rows = [], []
    for s in range(16):
        if s % 2:
            seq = ["count", "number", "sum", rng.choice(nums), "total", "plus", "digit"]
        else:
            seq = ["farm", "barn", "field", rng.choice(animals), "grass", "hay", "meadow"]
        tokens.append([str(t) for t in seq])
    acts = np.zeros((16, 7, 2), dtype=np.float32)
    acts[:, 3, 0] = 1.0 + np.arange(16) / 100  # feature 0 fires on both senses
    acts[1::2, 3, 1] = 1.0  # feature 1 only on numbers
    d = build(acts, tokens, max_examples_per_feature=16)
    poly = dict(d.analyzer.find_polysemantic_features(min_clusters=2, min_cluster_size=3))
    assert 0 in poly and 1 not in poly
    seen = {t for seq in tokens for t in seq}
    assert sorted(map(sorted, poly[0])) == sorted([sorted(set(animals) & seen), sorted(set(nums) & seen)])


def test_dead_sparse_dense_and_importance():
    acts = np.zeros((1, 200, 4), dtype=np.float32)
    acts[0, :, 0] = 6.0          # dense, max 6
    acts[0, :5, 1] = 1.0         # moderate
    acts[0, 0, 2] = 0.5          # sparse (1/200)
    ex = FeatureExtractor(4, 2, config=ExtractionConfig())
    ex.process_batch(acts, [["x"] * 200])
    fs = ex.finalize()           # dead feature 3 is dropped from the set ...
    an = FeatureAnalyzer(fs)
    assert 3 not in fs.features
    assert an.get_dead_features() == [3]  # ... but still reported
    assert an.get_dense_features() == [0]
    assert an.get_ultra_sparse_features(max_frequency=0.01) == [2]
    imp = dict(an.compute_feature_importance())
    assert imp[0] == pytest.approx(1.0)
    assert imp[1] == pytest.approx(0.7 * 1.0 + 0.3 * 0.2)
    assert imp[2] == pytest.approx(0.7 * 0.5 + 0.3 * 0.1)
    assert [i for i, _ in an.compute_feature_importance()] == [0, 1, 2]


def test_position_distribution_over_all_firings(corpus):
    acts, tokens = corpus
    ref = Reference(acts, tokens)
    an = build(acts, tokens).analyzer
    for j in range(5):
        pos = ref.pos_of[ref.fires[:, j]]
        want = {"start": int((pos < 5).sum()), "early": int(((pos >= 5) & (pos < 20)).sum()),
                "middle": int(((pos >= 20) & (pos < 50)).sum()), "late": int((pos >= 50).sum())}
        assert an.get_position_distribution(j) == want
    assert an.get_position_distribution(10_000) == {}


def test_compare_features_and_summary(corpus):
    acts, tokens = corpus
    ref = Reference(acts, tokens)
    d = build(acts, tokens)
    c = d.analyzer.compare_features(0, 1)
    t0, t1 = set(ref.token_firings(0)), set(ref.token_firings(1))
    assert c["jaccard_similarity"] == pytest.approx(len(t0 & t1) / len(t0 | t1))
    assert set(c["token_overlap"]) <= t0 & t1
    assert c["activation_count_1"] == ref.count(0) and c["activation_count_2"] == ref.count(1)
    check_comparison(c, ref, 0, 1)
    assert "error" in d.analyzer.compare_features(0, 10_000)
    s = d.get_statistics()
    for key in ("total_features", "active_features", "dead_features", "labeled_features",
                "mean_activation_frequency", "total_tokens_processed", "type_distribution", "top_features"):
        assert key in s
    assert s["total_tokens_processed"] == acts.shape[0] * acts.shape[1]
    assert sum(s["type_distribution"].values()) == s["total_features"]
    assert len(s["top_features"]) == 10


def check_comparison(c, ref, i, j):
    """``compare_features(i, j)`` against numpy: Pearson of the thresholded activations over
    all tokens, cosine of the firing-token count vectors, shared tokens by combined firings
    (ties by token), at most 10."""
    flat = np.where(ref.fires, ref.flat, 0).astype(np.float64)
    assert c["pearson"] == pytest.approx(np.corrcoef(flat[:, i], flat[:, j])[0, 1], abs=1e-9)
    t1, t2 = ref.token_firings(i), ref.token_firings(j)
    vocab = sorted(set(t1) | set(t2))
    v1 = np.array([t1.get(t, 0) for t in vocab], dtype=np.float64)
    v2 = np.array([t2.get(t, 0) for t in vocab], dtype=np.float64)
    assert c["token_cosine"] == pytest.approx(v1 @ v2 / np.linalg.norm(v1) / np.linalg.norm(v2), abs=1e-12)
    shared = [t for t in vocab if t in t1 and t in t2]
    shared.sort(key=lambda t: (-(t1[t] + t2[t]), t))
    assert c["token_overlap"] == shared[:10]
    return shared


def test_compare_features_against_numpy_with_many_shared_tokens():
    # 16 tokens, features 0 and 1 firing on most tokens of every sequence (so more than 10
    # tokens are shared and the list is capped), feature 1 partly following feature 0 (a
    # clearly positive Pearson), feature 2 on two tokens only.
    rng = np.random.default_rng(5)
    words = [f"w{i:02d}" for i in range(16)]
    n_seq, seq_len = 10, 60
    tokens = [list(rng.choice(words, size=seq_len, p=np.linspace(1, 3, 16) / 32)) for _ in range(n_seq)]
    acts = np.zeros((n_seq, seq_len, 3), dtype=np.float32)
    a0 = (rng.random((n_seq, seq_len)) < 0.6) * (rng.random((n_seq, seq_len)) * 2 + 0.02)
    noise = (rng.random((n_seq, seq_len)) < 0.3) * rng.random((n_seq, seq_len))
    acts[..., 0] = a0
    acts[..., 1] = 0.5 * a0 + noise
    toks = np.array(tokens)
    acts[..., 2] = np.isin(toks, ["w03", "w11"]) * 1.5
    ref = Reference(acts, tokens)
    d = build(acts, tokens)
    an = d.analyzer
    shared = check_comparison(an.compare_features(0, 1), ref, 0, 1)
    assert len(shared) > 10 and len(an.compare_features(0, 1)["token_overlap"]) == 10
    assert an.compare_features(0, 1)["pearson"] > 0.5
    small = check_comparison(an.compare_features(0, 2), ref, 0, 2)
    # Feature 0 fires on tokens feature 2 never does: both orders.
    assert set(ref.token_firings(0)) > set(ref.token_firings(2))
    assert check_comparison(an.compare_features(2, 0), ref, 2, 0) == small
    assert small == sorted(["w03", "w11"], key=lambda t: (-(ref.token_firings(0)[t] + ref.token_firings(2)[t]), t))
    # Symmetric in its scores.
    c01, c10 = an.compare_features(0, 1), an.compare_features(1, 0)
    assert c10["pearson"] == pytest.approx(c01["pearson"]) and c10["token_cosine"] == pytest.approx(c01["token_cosine"])


def test_polysemantic_by_token_embeddings():
    tokens = [["x", "1", "y"], ["x", "2", "y"], ["x", "3", "y"], ["x", "cat", "y"], ["x", "dog", "y"], ["x", "cow", "y"]]
    acts = np.zeros((6, 3, 1), dtype=np.float32)
    acts[:, 1, 0] = 1.0
    d = build(acts, tokens)
    an = d.analyzer
    assert an.find_polysemantic_features() == []  # identical contexts: one group
    emb = {"1": [1, 0], "2": [1, 0.1], "3": [1, 0.2], "cat": [0, 1], "dog": [0.1, 1], "cow": [0.2, 1]}
    an.set_token_embeddings(emb)
    [(fid, groups)] = an.find_polysemantic_features(min_clusters=2, min_cluster_size=3)
    assert fid == 0 and sorted(map(sorted, groups)) == [["1", "2", "3"], ["cat", "cow", "dog"]]


def test_positions_not_collected_are_not_estimated_from_the_top_examples(tmp_path):
    # One feature firing at positions 0..99 of one sequence, values rising with position: the
    # top-3 examples sit at positions 97..99. With collect_positions=False the engine keeps
    # no position statistics; the analyzer must not fall back to the top examples (the
    # original's defect 2), which would report mean position 98 and a "late"-only histogram.
    acts = np.zeros((1, 100, 1), dtype=np.float32)
    acts[0, :, 0] = np.arange(1, 101)
    tokens = [[f"t{i % 7}" for i in range(100)]]
    for collect in (True, False):
        d = build(acts, tokens, collect_positions=collect, max_examples_per_feature=3)
        d.finalize()
        path = tmp_path / f"p{collect}.json"
        d.save(str(path))
        loaded = type(d).load(str(path))
        for dd in (d, loaded):
            s = dd.get_feature_stats(0)
            dist = dd.analyzer.get_position_distribution(0)
            if collect:
                assert s.mean_position == pytest.approx(49.5)
                assert s.position_variance == pytest.approx(np.arange(100).var())
                assert dist == {"start": 5, "early": 15, "middle": 30, "late": 50}
            else:
                assert (s.mean_position, s.position_variance) == (0.0, 0.0)
                assert dist == {}
            # the other statistics are exact either way
            assert s.mean_activation == pytest.approx(50.5)
            assert s.min_activation == 1.0


def test_constant_features_have_no_correlation_not_rounding_noise():
    # Two features on at one value on every token (variance exactly 0 over all tokens) and a
    # third firing on every third token. Raw moments (E[x^2] - E[x]^2) leave ~1e-17 of
    # rounding in the constant features' variance, and the ratio of two such residues came
    # out as Pearson 1.0 between the constant features: NaN (numpy.corrcoef), so no partner.
    n = 475
    acts = np.zeros((n, 3), dtype=np.float32)
    acts[:, 0] = 0.3
    acts[:, 1] = 0.15
    acts[::3, 2] = 1.0
    ex = FeatureExtractor(3, 2, config=ExtractionConfig(include_dead_features=True))
    ex.process_activations(acts, ["a"] * n)
    r = ex.coactivation_pearson()
    with np.errstate(all="ignore"):
        ref = np.corrcoef(acts.astype(np.float64).T)
    assert np.array_equal(np.isnan(r), np.isnan(ref))
    assert r[2, 2] == pytest.approx(1.0)
    an = FeatureAnalyzer(ex.finalize())
    assert an.find_correlated_features(0, min_correlation=-1.0) == []
    assert an.find_correlated_features(1, min_correlation=-1.0) == []
    # merged shards: still constant
    a = FeatureExtractor(3, 2, config=ExtractionConfig(include_dead_features=True))
    b = FeatureExtractor(3, 2, config=ExtractionConfig(include_dead_features=True))
    a.process_activations(acts[:200], ["a"] * 200)
    b.process_activations(acts[200:], ["a"] * (n - 200))
    a.merge(b)
    assert np.isnan(a.coactivation_pearson()[0, 1])


def test_compare_a_feature_with_itself(tmp_path):
    corpus_acts, tokens = random_corpus(seed=7, n_seq=4, seq_len=20, n_features=5, density=0.3)
    d = build(corpus_acts, tokens)
    d.finalize()
    path = tmp_path / "d.json"
    d.save(str(path))
    for an in (d.analyzer, type(d).load(str(path)).analyzer):
        c = an.compare_features(2, 2)
        assert c["pearson"] == 1.0  # was None: the correlation row leaves the feature itself out
        assert c["jaccard_similarity"] == 1.0 and c["token_cosine"] == pytest.approx(1.0)
        assert c["activation_count_1"] == c["activation_count_2"] == d[2].activation_count


def test_sketch_correlations_of_a_loaded_file_are_flagged_as_not_pearson(tmp_path):
    # `featdict build --correlation sketch` stores φ of firings from a bounded table; read
    # back by the package they passed for Pearson without a word.
    import json
    import warnings

    from feature_dictionary import FeatureDictionary

    acts, tokens = random_corpus(seed=21, n_seq=4, n_features=6, density=0.4)
    d = build(acts, tokens, track_coactivation=True)
    d.finalize()
    d.save(tmp_path / "p.json")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pearson (ours): no warning
        pearson = FeatureDictionary.load(tmp_path / "p.json").get_correlated(0, min_correlation=-1.0)
    assert pearson
    text = json.loads((tmp_path / "p.json").read_text())
    text["feature_set"]["metadata"]["correlation"] = {"mode": "sketch", "measure": "phi", "exact": False}
    (tmp_path / "s.json").write_text(json.dumps(text))
    sketch = FeatureDictionary.load(tmp_path / "s.json")
    with pytest.warns(UserWarning, match="not Pearson"):
        assert sketch.get_correlated(0, min_correlation=-1.0) == pearson
