"""Shards built separately and merged equal one build over all shards."""

import copy

import numpy as np
import pytest

from conftest import assert_same, build, random_corpus
from feature_dictionary import DictionaryConfig, ExtractionConfig, FeatureDictionary


def config():
    return DictionaryConfig(extraction=ExtractionConfig(include_dead_features=True), model_name="m")


def test_merge_with_sequence_offsets_equals_one_build():
    acts, tokens = random_corpus(seed=5, n_seq=10)
    whole = FeatureDictionary(acts.shape[2], 8, config())
    whole.process_batch(acts, tokens)
    whole.finalize()
    a = FeatureDictionary(acts.shape[2], 8, config())
    a.process_batch(acts[:4], tokens[:4])
    b = FeatureDictionary(acts.shape[2], 8, config(), sequence_offset=4)
    b.process_batch(acts[4:], tokens[4:])
    assert a.merge(b) == 0
    a.finalize()
    assert_same(a.features.to_dict(), whole.features.to_dict())
    assert [f.labels for f in a] == [f.labels for f in whole]


def test_merge_without_offsets_shifts_the_second_shard():
    acts, tokens = random_corpus(seed=6, n_seq=10)
    # the second shard sees its tokens in another order, so its vocabulary ids differ
    tokens = [t if i < 5 else list(reversed(t)) for i, t in enumerate(tokens)]
    whole = build(acts, tokens)
    a = build(acts[:5], tokens[:5])
    b = build(acts[5:], tokens[5:])
    assert a.merge(b) == 5
    # samples were drawn with the shard's own numbering; everything else is exact
    assert_same(a.features.to_dict(), whole.features.to_dict(), skip=("quantile_examples",))
    assert {ex.metadata["sequence"] for f in a for ex in f.top_activations} <= set(range(10))


def test_merge_then_more_processing_and_finalize_again():
    acts, tokens = random_corpus(seed=7, n_seq=9)
    whole = build(acts, tokens)
    a = build(acts[:3], tokens[:3])
    a.finalize()
    b = FeatureDictionary(acts.shape[2], 16, a.config, sequence_offset=3)
    b.process_batch(acts[3:6], tokens[3:6])
    a.merge(b)
    a.process_batch(acts[6:], tokens[6:])
    a.finalize()
    whole.finalize()
    assert_same(a.features.to_dict(), whole.features.to_dict(), skip=("model_name", "sae_name", "layer"))


def test_incompatible_merges_are_refused():
    acts, tokens = random_corpus(seed=8, n_seq=2)
    a = build(acts, tokens)
    with pytest.raises(ValueError, match="features"):
        a.merge(build(acts[..., :10], tokens))
    with pytest.raises(ValueError, match="settings"):
        a.merge(build(acts, tokens, min_activation=0.5))
    with pytest.raises(ValueError, match="itself"):
        a.merge(a)


def _build_shard(args):
    acts, tokens, offset = args
    d = FeatureDictionary(acts.shape[2], 8, config(), sequence_offset=offset)
    d.process_batch(acts, tokens)
    return d  # pickled back to the parent, accumulator included


def test_shards_built_in_worker_processes_merge_to_one_build():
    import multiprocessing

    acts, tokens = random_corpus(seed=9, n_seq=6)
    whole = FeatureDictionary(acts.shape[2], 8, config())
    whole.process_batch(acts, tokens)
    whole.finalize()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        a, b = pool.map(_build_shard, [(acts[:3], tokens[:3], 0), (acts[3:], tokens[3:], 3)])
    assert a.merge(b) == 0
    a.finalize()
    assert_same(a.features.to_dict(), whole.features.to_dict())


def test_pickle_round_trip_keeps_the_live_state():
    import pickle

    acts, tokens = random_corpus(seed=10, n_seq=4)
    d = build(acts[:2], tokens[:2])
    e = pickle.loads(pickle.dumps(d))
    d.process_batch(acts[2:], tokens[2:])
    e.process_batch(acts[2:], tokens[2:])
    assert_same(e.features.to_dict(), d.features.to_dict())
    from feature_dictionary import _engine

    # A state from another version is told apart from damaged bytes.
    with pytest.raises(ValueError, match="pickled by an older feature_dictionary"):
        _engine.engine_from_state(b"junk")
    with pytest.raises(ValueError, match="engine state version 1; this one reads version 5"):
        _engine.engine_from_state(b"FDENGINE" + (1).to_bytes(4, "little") + b"junk")
    with pytest.raises(ValueError, match="not a pickled"):
        _engine.engine_from_state(b"FDENGINE" + (5).to_bytes(4, "little") + b"junk")


def test_shards_merged_out_of_order_equal_one_build():
    # As workers finish: the last shard first, then the first, then the middle one, which
    # falls in the gap the first two left and must not be shifted.
    import pickle

    acts, tokens = random_corpus(seed=12, n_seq=10)
    whole = FeatureDictionary(acts.shape[2], 8, config())
    whole.process_batch(acts, tokens)
    whole.finalize()
    shards = []
    for lo, hi in [(0, 3), (3, 7), (7, 10)]:
        d = FeatureDictionary(acts.shape[2], 8, config(), sequence_offset=lo)
        d.process_batch(acts[lo:hi], tokens[lo:hi])
        shards.append(d)
    first, middle, last = shards
    assert last.merge(first) == 0
    # The covered ranges travel with a pickled shard.
    last = pickle.loads(pickle.dumps(last))
    assert last.merge(middle) == 0
    last.finalize()
    assert_same(last.features.to_dict(), whole.features.to_dict())
    assert {ex.metadata["sequence"] for f in last for ex in f.top_activations} <= set(range(10))
    # A shard that really overlaps is still moved past everything held.
    again = FeatureDictionary(acts.shape[2], 8, config(), sequence_offset=3)
    again.process_batch(acts[3:4], tokens[3:4])
    assert last.merge(again) == 7


def test_a_settings_mismatch_names_the_settings_that_differ():
    # It said "different shapes or settings (48 vs 48 features)": which setting, and to what?
    acts, tokens = random_corpus(seed=8, n_seq=2)
    a = build(acts, tokens)
    with pytest.raises(ValueError, match=r"max_examples_per_feature \(20 vs 3\), context_window \(5 vs 2\)"):
        a.merge(build(acts, tokens, max_examples_per_feature=3, context_window=2))
    with pytest.raises(ValueError, match=r"firing threshold \(0\.01 vs 0\.5"):
        a.merge(build(acts, tokens, min_activation=0.5))
    with pytest.raises(ValueError, match=r"collect_positions \(True vs False\)"):
        a.merge(build(acts, tokens, collect_positions=False))


def test_distinct_tokens_past_the_token_table_are_estimated_and_merge_like_one_build():
    # 400 distinct words, a table of 16 per feature: the counts become a summary and the
    # distinct tokens an estimate, which shards merged in any order must give as one build.
    rng = np.random.default_rng(11)
    words = [f"w{i}" for i in range(400)]
    acts = (rng.random((8, 100, 3)) < 0.9).astype(np.float32)
    tokens = [list(rng.choice(words, size=100)) for _ in range(8)]
    cfg = dict(token_sketch_capacity=16, include_dead_features=True)
    whole = build(acts, tokens, **cfg)
    shards = []
    for part in range(2):
        d = FeatureDictionary(3, 16, DictionaryConfig(extraction=ExtractionConfig(**cfg)), sequence_offset=4 * part)
        d.process_batch(acts[4 * part : 4 * part + 4], tokens[4 * part : 4 * part + 4])
        shards.append(d)
    shards[1].merge(shards[0])
    whole.finalize()
    shards[1].finalize()
    for fid in range(3):
        truth = len({t for s in range(8) for p in range(100) if acts[s, p, fid] >= 0.01 for t in [tokens[s][p]]})
        one, merged = whole.get_feature_stats(fid), shards[1].get_feature_stats(fid)
        assert whole[fid].metadata["token_counts_exact"] is False
        assert one.unique_tokens == merged.unique_tokens
        assert abs(one.unique_tokens / truth - 1) < 0.07, (one.unique_tokens, truth)
        # The summaries' counts differ after a merge (its guarantee is a bound, not equality),
        # so the entropy estimates agree closely, not exactly.
        assert one.token_entropy == pytest.approx(merged.token_entropy, rel=1e-2)


def test_distinct_token_estimates_are_the_same_one_sequence_at_a_time():
    # The original API's usual loop calls process() per sequence: each call is a small batch,
    # and the estimate used to miss every token new to a table that had dropped some.
    rng = np.random.default_rng(5)
    words = [f"w{i}" for i in range(300)]
    acts = (rng.random((30, 40, 2)) < 0.1).astype(np.float32)
    tokens = [list(rng.choice(words, size=40)) for _ in range(30)]
    cfg = DictionaryConfig(extraction=ExtractionConfig(token_sketch_capacity=8))
    whole = FeatureDictionary(2, 16, cfg)
    whole.process_batch(acts, tokens)
    one_by_one = FeatureDictionary(2, 16, copy.deepcopy(cfg))
    for a, t in zip(acts, tokens):
        one_by_one.process(a, t)
    whole.finalize()
    one_by_one.finalize()
    for fid in range(2):
        truth = len({tokens[s][p] for s in range(30) for p in range(40) if acts[s, p, fid] > 0})
        a, b = whole[fid].metadata, one_by_one[fid].metadata
        assert a["token_counts_exact"] is False
        assert (a["unique_tokens"], a["token_entropy"]) == (b["unique_tokens"], b["token_entropy"])
        assert abs(a["unique_tokens"] / truth - 1) < 0.07, (a["unique_tokens"], truth)


def test_empty_sequences_take_their_numbers_so_shards_with_them_merge_to_one_build():
    # An empty sequence took no number: a shard holding one numbered its later sequences one
    # lower than one build did, so `sequence_offset` = the index of the shard's first
    # sequence made examples and samples disagree. An all-empty call takes its numbers too.
    rng = np.random.default_rng(0)
    f = 16
    seqs = [(rng.random((8, f)) * (rng.random((8, f)) > 0.7)).astype(np.float32) for _ in range(40)]
    toks = [[f"w{(i * 8 + j) % 11}" for j in range(8)] for i in range(40)]
    for empty in (5, 6, 21):
        seqs[empty] = np.zeros((0, f), np.float32)
        toks[empty] = []
    one = FeatureDictionary(f, 4, config())
    one.process_batch(seqs, toks)
    one.finalize()
    a = FeatureDictionary(f, 4, config())
    a.process_batch(seqs[:5], toks[:5])
    a.process_batch(seqs[5:7], toks[5:7])  # nothing but empty sequences
    a.process_batch(seqs[7:20], toks[7:20])
    b = FeatureDictionary(f, 4, config(), sequence_offset=20)
    b.process_batch(seqs[20:], toks[20:])
    assert a.merge(b) == 0
    a.finalize()
    for feature in one:
        got = a[feature.id]
        assert [x.metadata["sequence"] for x in got.top_activations] == [
            x.metadata["sequence"] for x in feature.top_activations
        ]
        assert_same(got.to_dict(), feature.to_dict())
    assert one.extractor.total_tokens == a.extractor.total_tokens == 37 * 8
