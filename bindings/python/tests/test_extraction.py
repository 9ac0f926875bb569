"""Extraction against brute-force numpy references over every token."""

import math

import numpy as np
import pytest

from conftest import Reference, assert_same, build, random_corpus
from feature_dictionary import (DictionaryConfig, ExtractionConfig, FeatureActivation, FeatureDictionary,
                                FeatureExtractor, FeatureType, MockSAE)


def test_statistics_equal_brute_force_over_all_tokens(corpus):
    acts, tokens = corpus
    ref = Reference(acts, tokens)
    d = build(acts, tokens)
    fs = d.features
    assert fs.total_tokens_processed == acts.shape[0] * acts.shape[1]
    occ = ref.occurrences()
    for j in range(acts.shape[2]):
        f = fs[j]
        n = ref.count(j)
        assert f.activation_count == n
        assert f.activation_frequency == pytest.approx(n / fs.total_tokens_processed)
        assert f.feature_type == FeatureType.classify(n, fs.total_tokens_processed)
        if n == 0:
            assert f.feature_type == FeatureType.DEAD
            continue
        v = ref.values(j)
        assert f.mean_activation == pytest.approx(v.mean(), rel=1e-9)
        assert f.max_activation == pytest.approx(v.max())
        assert f.metadata["min_activation"] == pytest.approx(v.min())
        assert f.metadata["std_activation"] == pytest.approx(v.std(), rel=1e-6, abs=1e-9)
        # top-k: activation desc, then sequence, then position
        rows = ref.top(j, 20)
        assert [a.activation for a in f.top_activations] == pytest.approx([float(ref.flat[r, j]) for r in rows])
        assert [(a.metadata["sequence"], a.position) for a in f.top_activations] == \
            [(int(ref.seq_of[r]), int(ref.pos_of[r])) for r in rows]
        for a, r in zip(f.top_activations, rows):
            assert a.token == ref.flat_tokens[r]
            s, p = int(ref.seq_of[r]), int(ref.pos_of[r])
            assert a.context_tokens == tokens[s][max(0, p - 5): p + 6]
            assert a.context == " ".join(a.context_tokens)
        # firing tokens over all tokens, with corpus occurrences
        tf = ref.token_firings(j)
        got = {e["token"]: (e["firings"], e["occurrences"]) for e in f.metadata["top_tokens"]}
        assert got == {t: (c, occ[t]) for t, c in tf.items()}
        # position statistics
        pos = ref.pos_of[ref.fires[:, j]]
        assert f.metadata["positions"]["mean"] == pytest.approx(pos.mean())
        assert f.metadata["positions"]["variance"] == pytest.approx(pos.var())


def test_process_returns_firings_and_inputs_of_every_kind_agree(corpus):
    acts, tokens = corpus
    ref = Reference(acts, tokens)
    total = int(ref.fires.sum())
    one = build(acts[:0], [], n_features=acts.shape[2])
    got = sum(one.process(acts[i], tokens[i]) for i in range(len(tokens)))
    assert got == total
    batch = build(acts[:0], [], n_features=acts.shape[2])
    assert batch.process_batch(acts, tokens) == total
    lists = build(acts[:0], [], n_features=acts.shape[2])
    assert lists.process_batch([a.tolist() for a in acts], tokens) == total
    ragged = build(acts[:0], [], n_features=acts.shape[2])
    assert ragged.process_batch(list(acts), tokens) == total
    ref_dict = one.features.to_dict()
    for other in (batch, lists, ragged):
        assert_same(other.features.to_dict(), ref_dict)


def test_float16_input_is_converted_not_copied_by_the_caller(corpus):
    acts, tokens = corpus
    h = acts.astype(np.float16)
    a = build(h, tokens)
    b = build(h.astype(np.float32), tokens)
    assert_same(a.features.to_dict(), b.features.to_dict())


def test_stream_and_callbacks_see_every_firing(corpus):
    acts, tokens = corpus
    ref = Reference(acts, tokens)
    ex = FeatureExtractor(acts.shape[2], 16, config=ExtractionConfig())
    seen = []
    ex.add_callback(seen.append)
    counts = list(ex.stream_activations((acts[i], tokens[i]) for i in range(len(tokens))))
    assert counts == [int(ref.fires[i * acts.shape[1]:(i + 1) * acts.shape[1]].sum()) for i in range(len(tokens))]
    assert len(seen) == int(ref.fires.sum())
    assert all(isinstance(a, FeatureActivation) for a in seen)
    first = seen[0]
    s, p = first.metadata["sequence"], first.position
    assert acts[s, p, first.feature_id] == pytest.approx(first.activation)
    assert first.token == tokens[s][p]


def test_thresholds_min_activation_and_activation_threshold():
    acts = np.array([[0.5, 0.01, 0.009, 0.2]], dtype=np.float32)
    ex = FeatureExtractor(4, 2, config=ExtractionConfig(include_dead_features=True))
    assert ex.process_activations(acts, ["x"]) == 3  # >= 0.01 counts
    ex2 = FeatureExtractor(4, 2, config=ExtractionConfig(activation_threshold=0.2, include_dead_features=True))
    assert ex2.process_activations(acts, ["x"]) == 1  # must exceed activation_threshold too


def test_finalize_drops_rare_features_but_remembers_them():
    acts = np.zeros((1, 6, 5), dtype=np.float32)
    acts[0, :, 0] = 1.0
    acts[0, 0, 1] = 1.0
    ex = FeatureExtractor(5, 2, config=ExtractionConfig(min_activation_count=2))
    ex.process_batch(acts, [["a"] * 6])
    fs = ex.finalize()
    assert sorted(fs.features) == [0]
    assert fs.metadata["omitted_features"] == [1, 2, 3, 4]
    assert fs.metadata["dead_features"] == [2, 3, 4]
    assert fs.metadata["num_features"] == 5
    keep = FeatureExtractor(5, 2, config=ExtractionConfig(include_dead_features=True))
    keep.process_batch(acts, [["a"] * 6])
    assert sorted(keep.finalize().features) == [0, 1, 2, 3, 4]


def test_statistics_are_right_before_finalize_and_finalize_is_not_destructive(corpus):
    acts, tokens = corpus
    ex = FeatureExtractor(acts.shape[2], 16, config=ExtractionConfig(include_dead_features=True))
    ex.process_batch(acts[:6], tokens[:6])
    ref6 = Reference(acts[:6], tokens[:6])
    assert ex.features[3].activation_count == ref6.count(3)  # before finalize
    first = ex.finalize()
    assert first.total_tokens_processed == 6 * acts.shape[1]
    held_feature = first[3]
    assert held_feature.activation_count == ref6.count(3)
    ex.process_batch(acts[6:], tokens[6:])
    again = ex.finalize()
    whole = build(acts, tokens)
    assert_same(again.to_dict(), whole.features.to_dict(), skip=("model_name", "sae_name", "layer"))
    # As in the original, finalize() returns the extractor's one live set: what was held
    # from the first finalize() now shows all tokens, feature objects included.
    assert first is again and again[3] is held_feature
    assert first.total_tokens_processed == acts.shape[0] * acts.shape[1]
    assert held_feature.activation_count == Reference(acts, tokens).count(3)


def test_top_features_and_feature_by_token(corpus):
    acts, tokens = corpus
    ref = Reference(acts, tokens)
    ex = FeatureExtractor(acts.shape[2], 16, config=ExtractionConfig(include_dead_features=True))
    ex.process_batch(acts, tokens)
    top = ex.get_top_features(5)
    counts = [ref.count(j) for j in range(acts.shape[2])]
    expect = sorted(range(acts.shape[2]), key=lambda j: (-counts[j], j))[:5]
    assert [f.id for f in top] == expect
    hits = ex.get_feature_by_token("cat")
    fired_on_cat = {j for j in range(acts.shape[2]) if ref.token_firings(j).get("cat")}
    assert {fid for fid, _ in hits} == fired_on_cat
    vals = [v for _, v in hits]
    assert vals == sorted(vals, reverse=True)
    for fid, v in hits:
        ex_best = max(a.activation for a in ex.features[fid].top_activations + [
            FeatureActivation.from_dict(e) for g in ex.features[fid].metadata.get("quantile_examples", []) for e in g["examples"]]
            if a.token == "cat") if any(a.token == "cat" for a in ex.features[fid].top_activations) else None
        if ex_best is not None:
            assert v == pytest.approx(ex_best)
    assert all(v >= 1.0 for _, v in ex.get_feature_by_token("cat", min_activation=1.0))


def test_empty_sequences_record_nothing():
    ex = FeatureExtractor(4, 2, config=ExtractionConfig(include_dead_features=True))
    assert ex.process_activations([], []) == 0
    assert ex.process_activations(np.zeros((0, 4), np.float32), []) == 0
    assert ex.process_batch([np.ones((2, 4), np.float32), np.zeros((0, 4), np.float32)], [["a", "b"], []]) == 8
    assert ex.finalize().total_tokens_processed == 2


def test_bad_inputs_give_clear_errors():
    ex = FeatureExtractor(4, 2)
    with pytest.raises(ValueError, match="3 tokens for 2 activation rows"):
        ex.process_activations(np.zeros((2, 4), np.float32), ["a", "b", "c"])
    with pytest.raises(ValueError, match="5 features per token but the extractor was made for 4"):
        ex.process_activations(np.zeros((2, 5), np.float32), ["a", "b"])
    with pytest.raises(ValueError, match="process_batch"):
        ex.process_activations(np.zeros((1, 2, 4), np.float32), ["a", "b"])
    bad = np.zeros((2, 4), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        ex.process_activations(bad, ["a", "b"])
    with pytest.raises(TypeError, match="strings"):
        ex.process_activations(np.zeros((1, 4), np.float32), [3])
    with pytest.raises(TypeError, match="must be real numbers \\(got dtype complex128\\)"):
        ex.process_activations(np.ones((1, 4), np.complex128), ["a"])
    with pytest.raises(TypeError, match="must be real numbers"):
        ex.process_batch(np.ones((1, 1, 4), np.complex64), [["a"]])
    with pytest.raises(ValueError, match="min_activation"):
        FeatureExtractor(4, 2, config=ExtractionConfig(min_activation=float("nan")))
    with pytest.raises(ValueError):
        FeatureExtractor(0, 2)
    for field in ("max_examples_per_feature", "context_window", "samples_per_group"):
        with pytest.raises(ValueError, match=f"ExtractionConfig.{field} must be a non-negative integer, got -1"):
            FeatureExtractor(4, 2, config=ExtractionConfig(**{field: -1}))
    with pytest.raises(ValueError, match="max_examples_per_feature must be a non-negative integer, got 2.5"):
        FeatureExtractor(4, 2, config=ExtractionConfig(max_examples_per_feature=2.5))


def test_zero_examples_keeps_every_statistic(corpus):
    acts, tokens = corpus
    # It used to panic in the engine: the empty top-k's threshold read its first item.
    without = build(acts, tokens, max_examples_per_feature=0)
    with_examples = build(acts, tokens)
    ref = Reference(acts, tokens)
    for j in range(acts.shape[-1]):
        a, b = without.features.get_feature(j), with_examples.features.get_feature(j)
        assert a.activation_count == b.activation_count == ref.count(j)
        assert a.max_activation == b.max_activation
        assert a.mean_activation == b.mean_activation
        assert a.top_activations == []
        assert len(b.top_activations) == min(20, ref.count(j))


def test_mock_sae_is_sparse_with_the_requested_density():
    sae = MockSAE(input_dim=8, num_features=100, sparsity=0.1, seed=1)
    out = sae.encode(np.zeros((7, 8)))
    assert out.shape == (7, 100)
    assert ((out > 0).sum(axis=1) == 10).all()
    assert out[out > 0].min() >= 0.1 and out.max() < 2.0
    for bad in (0.0, 2.0, -0.1):
        with pytest.raises(ValueError, match=f"sparsity must be in \\(0, 1\\].*got {bad}"):
            MockSAE(input_dim=8, num_features=100, sparsity=bad)
    assert (MockSAE(input_dim=8, num_features=5, sparsity=1.0).encode(np.zeros((2, 8))) > 0).all()


def test_non_finite_input_is_refused_whole_and_a_fixed_retry_counts_once():
    # A batch holding NaN/Inf is refused before anything of it is accumulated (the engine's
    # statistics, the co-activation matrix, the callbacks alike), so passing the corrected
    # batch again counts its tokens once. It used to fold the finite values in and then
    # raise, and the natural retry counted the batch twice.
    ex = FeatureExtractor(2, 2, config=ExtractionConfig(track_coactivation=True, include_dead_features=True))
    seen = []
    ex.add_callback(lambda a: seen.append((a.feature_id, a.position, a.activation)))
    ex.process_activations(np.array([[1, 1], [0, 0], [2, 2]], np.float32), ["x", "y", "z"])
    assert ex.features[0].activation_count == 2
    seen.clear()
    bad = np.array([[1, np.nan], [3, 3], [np.inf, 0.5]], np.float32)
    with pytest.raises(ValueError, match=r"2 non-finite value\(s\) \(NaN/Inf\), first at sequence 0 of this input, "
                                         r"position 0, feature 1; .*nothing of this call was accumulated"):
        ex.process_activations(bad, ["p", "q", "r"])
    assert ex.total_tokens == 3
    assert ex.features[0].activation_count == 2 and ex.features[1].activation_count == 2
    assert seen == []
    fixed = np.nan_to_num(bad, nan=0.0, posinf=0.0)
    ex.process_activations(fixed, ["p", "q", "r"])
    assert ex.total_tokens == 6
    assert ex.features[0].activation_count == 4 and ex.features[1].activation_count == 4
    assert sorted(seen) == [(0, 0, 1.0), (0, 1, 3.0), (1, 1, 3.0), (1, 2, 0.5)]
    clean = np.array([[1, 1], [0, 0], [2, 2], [1, 0], [3, 3], [0, 0.5]], np.float64)
    expected = np.corrcoef(clean[:, 0], clean[:, 1])[0, 1]
    assert ex.coactivation_pearson()[0, 1] == pytest.approx(expected, rel=1e-9)


def test_numpy_scalars_in_the_config_work_like_python_numbers(tmp_path):
    # Settings computed with numpy (np.int64 counts, np.float32 thresholds) were refused or
    # broke the JSON handed to the engine ("Object of type int64 is not JSON serializable").
    acts = np.array([[0.4, 1.0], [0.6, 0.0], [0.8, 2.0]], np.float32)
    cfg = ExtractionConfig(min_activation=np.float32(0.5), activation_threshold=np.float64(0.0),
                           max_examples_per_feature=np.int64(1), context_window=np.int32(1),
                           include_dead_features=True)
    ex = FeatureExtractor(2, 2, config=cfg)
    assert ex.process_activations(acts, ["a", "b", "c"]) == 4
    fs = ex.finalize()
    assert fs[0].activation_count == 2 and [a.token for a in fs[0].top_activations] == ["c"]
    assert fs[0].top_activations[0].context_tokens == ["b", "c"]
    d = FeatureDictionary(2, 2, DictionaryConfig(extraction=cfg))
    d.process(acts, ["a", "b", "c"])
    d.finalize()
    d.save(str(tmp_path / "d.json"))
    assert FeatureDictionary.load(str(tmp_path / "d.json")).config.extraction.max_examples_per_feature == 1


def test_malformed_inputs_and_settings_are_named_in_the_error():
    ex = FeatureExtractor(4, 2)
    # numpy's "setting an array element with a sequence ... inhomogeneous shape" named nothing.
    with pytest.raises(ValueError, match=r"activations must be a rectangular \[seq_len, num_features\] array"):
        ex.process_activations([[1, 2, 3, 4], [1, 2]], ["a", "b"])
    with pytest.raises(ValueError, match=r"batch_activations\[1\] must be a rectangular"):
        ex.process_batch([np.zeros((1, 4)), [[1, 2, 3, 4], [1]]], [["a"], ["b", "c"]])
    # "'NoneType' object is not iterable"
    with pytest.raises(TypeError, match="tokens must be a list of token strings, got NoneType"):
        ex.process_activations(np.zeros((1, 4), np.float32), None)
    # "can't convert negative int to unsigned"
    with pytest.raises(ValueError, match="sequence_offset must be a non-negative integer, got -1"):
        FeatureExtractor(4, 2, sequence_offset=-1)
    with pytest.raises(ValueError, match=r"ExtractionConfig.threads must be None \(all cores\) or a non-negative integer, got -2"):
        FeatureExtractor(4, 2, config=ExtractionConfig(threads=-2))


def test_a_3d_batch_of_non_numbers_is_refused_like_a_2d_one():
    # The [batch, seq_len, F] path cast anything to float32: None became NaN ("non-finite
    # values") and strings of digits were parsed as numbers.
    ex = FeatureExtractor(2, 2)
    with pytest.raises(TypeError, match=r"batch_activations must be numbers \(got dtype object\)"):
        ex.process_batch(np.empty((1, 3, 2), dtype=object), [["a", "b", "c"]])
    with pytest.raises(TypeError, match=r"batch_activations must be numbers \(got dtype <U1\)"):
        ex.process_batch(np.full((1, 3, 2), "1"), [["a", "b", "c"]])
    assert ex.total_tokens == 0
    assert ex.process_batch(np.ones((1, 3, 2), np.int32), [["a", "b", "c"]]) == 6


def test_the_context_given_with_a_sequence_is_its_examples_context(tmp_path):
    # The original stored process(..., context=...) as FeatureActivation.context (README:
    # context="Original text"); it used to be dropped silently.
    import pickle

    acts = np.zeros((3, 4, 2), dtype=np.float32)
    acts[:, 1, 0] = [3.0, 2.0, 1.0]
    acts[:, 2, 1] = [1.0, 2.0, 3.0]
    tokens = [["a", "b", "c", "d"], ["e", "f", "g", "h"], ["i", "j", "k", "l"]]
    texts = ["doc one", "", "doc <three> ü"]
    seen = []
    d = FeatureDictionary(2, 4, DictionaryConfig(extraction=ExtractionConfig(include_dead_features=True)))
    d.add_callback(lambda a: seen.append((a.feature_id, a.context)))
    d.process(acts[0], tokens[0], context=texts[0])
    d.process_batch([acts[1], acts[2]], tokens[1:], texts[1:])  # list path
    d.finalize()
    want = {0: ["doc one", "e f g h", "doc <three> ü"], 1: ["doc <three> ü", "e f g h", "doc one"]}
    for fid in (0, 1):
        assert [a.context for a in d[fid].top_activations] == want[fid]
        assert [a.context_tokens for a in d[fid].top_activations][1] == ["e", "f", "g", "h"]
    assert sorted(seen) == sorted((f, c) for f, cs in want.items() for c in cs)
    # 3-D batches, f16, merges (shifted sequence numbers), pickles and saved files keep them
    b = FeatureDictionary(2, 4, DictionaryConfig(extraction=ExtractionConfig(include_dead_features=True)))
    b.process_batch(acts.astype(np.float16), tokens, ["x0", "x1", "x2"])
    a = FeatureDictionary(2, 4, DictionaryConfig(extraction=ExtractionConfig(include_dead_features=True)))
    a.process(acts[0], tokens[0], context="first")
    a.merge(pickle.loads(pickle.dumps(b)))
    a.finalize()
    assert [x.context for x in a[0].top_activations] == ["first", "x0", "x1", "x2"]
    for ext in ("json", "fdict"):
        path = str(tmp_path / f"d.{ext}")
        a.save(path)
        assert [x.context for x in FeatureDictionary.load(path)[0].top_activations] == ["first", "x0", "x1", "x2"]
    with pytest.raises(TypeError, match="context must be a string"):
        d.process(acts[0], tokens[0], context=5)


def test_contexts_of_sequences_without_kept_examples_are_not_held():
    # Only sequences a kept example comes from need their context: a long stream of
    # sequences with long contexts must not keep one text per sequence.
    import pickle

    cfg = DictionaryConfig(extraction=ExtractionConfig(max_examples_per_feature=2, include_dead_features=True))
    d = FeatureDictionary(2, 4, cfg)
    n_seq, text = 6000, "x" * 1000
    acts = np.zeros((n_seq, 2, 2), dtype=np.float32)
    acts[:, 0, 0] = np.linspace(1.0, 2.0, n_seq)  # feature 0: the last sequences are its top
    acts[:, 1, 1] = np.linspace(2.0, 1.0, n_seq)  # feature 1: the first ones
    tokens = [["a", "b"]] * n_seq
    for start in range(0, n_seq, 500):
        d.process_batch(acts[start:start + 500], tokens[start:start + 500],
                        [f"{i}:{text}" for i in range(start, start + 500)])
    # 6,000 contexts of 1 kB were given; at most a couple of thousand may be held between
    # clean-ups (the kept examples reference a few hundred sequences at most).
    assert len(pickle.dumps(d)) < 2_500_000
    d.finalize()
    top0 = [a.context.split(":")[0] for a in d[0].top_activations]
    top1 = [a.context.split(":")[0] for a in d[1].top_activations]
    assert top0 == [str(n_seq - 1), str(n_seq - 2)]
    assert top1 == ["0", "1"]
    for f in (0, 1):
        for group in d[f].metadata.get("quantile_examples", []):
            for ex in group["examples"]:
                assert ex["context"].startswith(f"{ex['metadata']['sequence']}:"), ex


def test_config_from_dict_reads_the_old_name_of_samples_per_group():
    # Files written while the samples were kept per activation band call it samples_per_band.
    from feature_dictionary.extraction import ExtractionConfig

    assert ExtractionConfig.from_dict({"samples_per_band": 7}).samples_per_group == 7
    both = {"samples_per_band": 7, "samples_per_group": 2}
    assert ExtractionConfig.from_dict(both).samples_per_group == 2


def test_the_old_constructor_keyword_of_samples_per_group_still_works():
    import warnings

    from feature_dictionary.extraction import ExtractionConfig

    with pytest.warns(DeprecationWarning, match="samples_per_group"):
        c = ExtractionConfig(samples_per_band=5)
    assert c.samples_per_group == 5 and "samples_per_band" not in c.to_dict()
    # Files are read without a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ExtractionConfig.from_dict({"samples_per_band": 6}).samples_per_group == 6
        assert ExtractionConfig().samples_per_group == 2
