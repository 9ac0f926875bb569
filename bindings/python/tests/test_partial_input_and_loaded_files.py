"""What a call holds when part of its input is bad, what a loaded file allows, and the
smaller contracts around them (each case once found wrong by an audit)."""

import json
import warnings

import numpy as np
import pytest
from conftest import random_corpus

from feature_dictionary.labeling import _cosine_sparse
from feature_dictionary import (
    DictionaryConfig,
    ExtractionConfig,
    FeatureActivation,
    FeatureDictionary,
)


def _dictionary(n_features=4, **extraction):
    return FeatureDictionary(n_features, 4, DictionaryConfig(extraction=ExtractionConfig(**extraction)))


def _three_sequences():
    return [np.ones((5, 4), np.float32) for _ in range(3)], [list("abcde")] * 3


@pytest.mark.parametrize(
    "spoil, error, says",
    [
        (lambda seqs, toks: toks.__setitem__(2, list("abcd")), ValueError, "batch_tokens[2]"),
        (lambda seqs, toks: toks.__setitem__(2, ["a", "b", 3, "d", "e"]), TypeError, "must be strings"),
        (lambda seqs, toks: seqs.__setitem__(2, np.ones((5, 6), np.float32)), ValueError, "batch_activations[2] has 6 features"),
        (lambda seqs, toks: seqs.__setitem__(2, np.ones((5, 4), np.complex64)), TypeError, "real numbers"),
    ],
)
def test_a_bad_sequence_in_a_later_chunk_is_refused_before_any_chunk_is_accumulated(spoil, error, says):
    d = _dictionary(batch_size=2)
    seqs, toks = _three_sequences()
    toks = list(toks)
    spoil(seqs, toks)
    with pytest.raises(error, match=says.replace("[", r"\[").replace("]", r"\]")):
        d.process_batch(seqs, toks)
    assert d.extractor.total_tokens == 0


def test_nan_in_a_later_chunk_is_refused_before_any_chunk_is_accumulated():
    d = _dictionary(batch_size=2)
    seqs, toks = _three_sequences()
    seqs[2][1, 1] = np.nan
    seqs[2][4, 0] = -np.inf
    with pytest.raises(ValueError) as refused:
        d.process_batch(seqs, toks)
    message = str(refused.value)
    assert "contain 2 non-finite value(s)" in message
    assert "first at sequence 2 of this input, position 1, feature 1" in message
    assert "nothing of this call was accumulated" in message
    assert d.extractor.total_tokens == 0
    seqs[2][1, 1] = 0.5
    seqs[2][4, 0] = 0.5
    d.process_batch(seqs, toks)
    d.finalize()
    assert d.features.total_tokens_processed == 15
    assert d[1].activation_count == 15


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_nan_in_a_later_engine_batch_is_refused_before_any_batch_is_accumulated(dtype):
    d = _dictionary()
    d.extractor._engine.values_per_batch = 5 * 4  # one sequence per engine batch
    acts = np.full((4, 5, 4), 0.5, dtype)
    acts[2, 3, 1] = np.inf
    acts[3, 0, 0] = np.nan
    tokens = [list("abcde")] * 4
    with pytest.raises(ValueError) as refused:
        d.process_batch(acts, tokens)
    message = str(refused.value)
    assert "contain 2 non-finite value(s)" in message
    assert "first at sequence 2 of this input, position 3, feature 1" in message
    assert "nothing of this call was accumulated" in message
    assert d.extractor.total_tokens == 0
    # The same through one sequence: its rows span several engine batches.
    d.extractor._engine.values_per_batch = 4
    with pytest.raises(ValueError, match="first at sequence 0 of this input, position 13, feature 1"):
        d.process(acts.reshape(20, 4), list("abcde") * 4)
    assert d.extractor.total_tokens == 0
    acts[2, 3, 1] = acts[3, 0, 0] = 0.5
    d.process_batch(acts, tokens)
    assert d.extractor.total_tokens == 20


def test_a_float64_beyond_float32_in_a_later_chunk_is_refused_before_any_chunk_is_accumulated():
    d = _dictionary(batch_size=2)
    seqs, toks = _three_sequences()
    seqs[2] = np.full((5, 4), 1e39)
    with pytest.raises(ValueError, match=r"batch_activations\[2\]\[0, 0\] = 1e\+39 is beyond the range of float32"):
        d.process_batch(seqs, toks)
    assert d.extractor.total_tokens == 0


def _original_file(path, features):
    """A file as the original library wrote it: examples without sequence indices."""

    def feat(i, tok, position):
        ex = {"feature_id": i, "token": tok, "position": position, "activation": 2.0, "context": "",
              "context_tokens": ["a", "b", "c", tok], "metadata": {}}
        return {"id": i, "dimension": 8, "activation_count": 1, "mean_activation": 2.0, "max_activation": 2.0,
                "activation_frequency": 0.01, "top_activations": [ex], "labels": [], "description": "",
                "confidence": 0.0, "feature_type": "moderate", "metadata": {}}

    data = {"config": {}, "feature_set": {"layer": 0, "features": {str(i): feat(i, t, p) for i, (t, p) in enumerate(features)},
            "total_tokens_processed": 100, "model_name": "", "sae_name": "", "metadata": {}}, "statistics": {}}
    path.write_text(json.dumps(data))
    return path


def test_examples_of_an_original_file_are_not_matched_by_position_alone(tmp_path):
    # Two features firing at position 3 of sequences nobody knows: the original called them
    # perfectly correlated; nothing says they fired on the same token.
    d = FeatureDictionary.load(_original_file(tmp_path / "orig.json", [("cat", 3), ("dog", 3)]))
    assert "sequence" not in d[0].top_activations[0].metadata
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert d.get_correlated(0, 0.0) == []
    # Saved again, the examples still say no sequence (rather than a made-up 0).
    d.save(tmp_path / "again.json")
    again = json.loads((tmp_path / "again.json").read_text())
    assert "sequence" not in again["feature_set"]["features"]["0"]["top_activations"][0]["metadata"]
    d.save(tmp_path / "again.fdict")
    back = FeatureDictionary.load(tmp_path / "again.fdict")
    assert "sequence" not in back[1].top_activations[0].metadata


def test_examples_built_here_are_matched_by_sequence_and_position():
    acts, tokens = random_corpus(seed=3, n_seq=4, n_features=6, density=0.5)
    d = _dictionary(6, track_coactivation=False, include_dead_features=True)
    d.process_batch(acts, tokens)
    d.finalize()
    assert all("sequence" in ex.metadata for f in d for ex in f.top_activations)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        related = d.get_correlated(0, 0.0)
    assert related and all(0 < r <= 1 for _, r in related)


def test_search_by_token_with_min_activation_claims_no_feature_it_cannot_show_reached_it():
    a = np.full((1000, 1), 5.0, np.float32)
    a[:10, 0] = 0.1
    a[500, 0] = 0.2
    toks = ["b"] * 1000
    toks[500] = "a"
    d = FeatureDictionary(1, 1)
    d.process(a, toks)
    d.finalize()
    assert all(ex.token == "b" for ex in d[0].top_activations)
    # It fired on "a" (at 0.2), shown by its mean when nothing is asked of the activation...
    assert d.search_by_token("a") == [(0, pytest.approx(d[0].mean_activation))]
    # ... and by its mean while every firing of it reaches the minimum (its smallest is 0.1)...
    assert [fid for fid, _ in d.search_by_token("a", min_activation=0.1)] == [0]
    # ... but not claimed to reach 1.0 on "a", which it never did.
    assert d.search_by_token("a", min_activation=1.0) == []
    assert [fid for fid, _ in d.search_by_token("b", min_activation=1.0)] == [0]


def test_a_loaded_dictionary_extractor_refuses_to_process_merge_or_finalize(tmp_path):
    d = FeatureDictionary(3, 1)
    d.process(np.ones((5, 3), np.float32), list("abcde"))
    d.finalize()
    d.save(tmp_path / "one.json")
    loaded = FeatureDictionary.load(tmp_path / "one.json")
    for call in (
        lambda: loaded.extractor.process_activations(np.ones((2, 3), np.float32), ["a", "b"]),
        lambda: loaded.extractor.process_batch([np.ones((2, 3), np.float32)], [["a", "b"]]),
        lambda: loaded.extractor.finalize(),
        lambda: loaded.extractor.merge(d.extractor),
        lambda: d.extractor.merge(loaded.extractor),
    ):
        with pytest.raises(RuntimeError, match="loaded from .*one.json"):
            call()
    assert loaded[0].activation_count == 5 and loaded.features.total_tokens_processed == 5


def test_callbacks_see_the_context_a_stored_example_would_have():
    seen = []
    d = _dictionary(1, collect_context=False)
    d.add_callback(seen.append)
    d.process(np.array([[1.0], [0.0]], np.float32), ["hello", "world"], context="DOC")
    d.finalize()
    assert [a.context for a in seen] == [""] == [ex.context for ex in d[0].top_activations]
    assert seen[0].context_tokens == ["hello", "world"]

    seen.clear()
    d = _dictionary(1)
    d.add_callback(seen.append)
    # The corpus's tokens carry their own spaces (" x"), so contexts are concatenated, even
    # where a window holds no such token.
    d.process(np.array([[0.0]], np.float32), [" x"])
    d.process(np.array([[1.0], [0.0]], np.float32), ["hello", "world"])
    d.finalize()
    assert [a.context for a in seen] == ["helloworld"] == [ex.context for ex in d[0].top_activations]


def test_small_argument_contracts():
    d = FeatureDictionary(2, 1)
    d.process(np.array([[1.0, 1.0], [2.0, 2.0], [0.0, 0.0]], np.float32), ["a", "b", "c"])
    d.finalize()
    # numpy integers count, as the original's slicing took them
    assert d[0].get_top_tokens(np.int64(1)) == [("b", 2.0)]
    # rounding never takes a cosine past 1 (unclamped, these equal vectors give 1 + 2**-52)
    assert _cosine_sparse(*[{"a": 0.5692038748222122, "b": 255.0690257394217}] * 2) == 1.0
    with pytest.raises(ValueError, match="num_features must be below 2\\*\\*63"):
        FeatureDictionary(2**64, 4)
    with pytest.raises(ValueError, match="min_activation = 1e\\+39 is beyond the range of float32"):
        ExtractionConfig(min_activation=1e39).engine_dict()
    with pytest.raises(ValueError, match=r"min_activation=-1.0, activation_threshold=-1.0"):
        ExtractionConfig(min_activation=-1.0, activation_threshold=-1.0).engine_dict()
    with pytest.raises(ValueError, match="dimension 5 into ones of dimension 4"):
        FeatureDictionary(8, 4).merge(FeatureDictionary(8, 5))


def test_the_python_side_settings_survive_to_dict_and_from_dict():
    cfg = ExtractionConfig(track_coactivation=True, threads=1)
    assert ExtractionConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_a_feature_activation_made_by_hand_keeps_the_metadata_it_was_given():
    a = FeatureActivation(feature_id=1, token="x", position=2, activation=1.0)
    assert a.metadata == {}


@pytest.mark.parametrize("name", ["x.json", "x.fdict"])
def test_a_value_the_model_cannot_hold_is_named_by_its_field_when_saving(tmp_path, name):
    d = FeatureDictionary(2, 1)
    d.process(np.array([[1.0, 0.0], [2.0, 1.0]], np.float32), ["a", "b"])
    d.finalize()
    d[1].activation_count = -1
    with pytest.raises(
        ValueError,
        match=r"dictionary does not match the model: feature_set\.features\[\"1\"\]\.activation_count is "
        r"invalid value: integer .-1., expected u64$",
    ):
        d.save(tmp_path / name)
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize(
    "bad, error",
    [
        (np.ones(4, np.float32), ValueError),  # 1-D
        (np.ones((1, 5, 4), np.float32), ValueError),  # 3-D
        ([[1.0, 2.0, 3.0, 4.0], [1.0]], ValueError),  # ragged lists
        (None, TypeError),
    ],
)
def test_a_malformed_sequence_in_a_later_chunk_is_refused_before_any_chunk_is_accumulated(bad, error):
    d = _dictionary(batch_size=2)
    seqs, toks = _three_sequences()
    seqs[2] = bad
    with pytest.raises(error):
        d.process_batch(seqs, toks)
    assert d.extractor.total_tokens == 0


def test_search_by_token_tells_whitespace_only_tokens_apart():
    d = FeatureDictionary(3, 1)
    a = np.zeros((4, 3), np.float32)
    a[0, 0] = a[1, 1] = a[2, 2] = 1.0
    d.process(a, ["\n", " ", " x ", "y"])
    d.finalize()
    assert [fid for fid, _ in d.search_by_token("\n")] == [0]
    assert [fid for fid, _ in d.search_by_token(" ")] == [1]
    assert [fid for fid, _ in d.search_by_token("x")] == [2]
    assert d.search_by_token("\t") == []


def test_manual_labels_are_checked_as_the_cli_and_the_server_check_them(tmp_path):
    d = FeatureDictionary(2, 1)
    d.process(np.array([[1.0, 0.0], [2.0, 1.0]], np.float32), ["a", "b"])
    for bad, says in [
        ("", "empty"),
        ("x" * 201, "at most 200"),
        ("two\nlines", "control characters"),
        ("evil\u202etxt", r"U\+202E"),
        ("\u200b", "no visible characters"),
    ]:
        with pytest.raises(ValueError, match=says):
            d.labeler.add_manual_label(0, bad)
    with pytest.raises(TypeError, match="a manual label is a string"):
        d.labeler.add_manual_label(0, 7)
    # Kept trimmed, as the CLI and the server keep it (so the page's remove button finds it).
    assert d.labeler.add_manual_label(0, "  padded  ").text == "padded"
    for i in range(49):
        d.labeler.add_manual_label(1, f"label {i}")
    d.labeler.add_manual_label(1, "the fiftieth")
    with pytest.raises(ValueError, match="at most 50 are kept"):
        d.labeler.add_manual_label(1, "one more")
    d.finalize()
    assert d[0].labels[0] == "padded"
    d.save(tmp_path / "m.fdict")
    assert FeatureDictionary.load(tmp_path / "m.fdict")[0].labels[0] == "padded"


def _one_live_feature_of_three():
    """Feature 0 fires on all four tokens; features 1 and 2 never fire (left out)."""
    d = FeatureDictionary(3, 4)
    acts = np.zeros((1, 4, 3), np.float32)
    acts[0, :, 0] = [1, 2, 3, 4]
    d.process_batch(acts, [list("abcd")])
    d.finalize()
    return d


def test_a_saved_json_holds_the_statistics_get_statistics_gives(tmp_path):
    # The original's save wrote export_all(): its statistics block is get_statistics(),
    # dead features left out of the set included.
    d = _one_live_feature_of_three()
    assert len(d.features) == 1
    d.save(tmp_path / "d.json")
    saved = json.loads((tmp_path / "d.json").read_text())["statistics"]
    expected = json.loads(json.dumps(d.get_statistics()))
    assert saved == expected
    assert saved["dead_features"] == 2 and saved["type_distribution"]["dead"] == 2
    assert FeatureDictionary.load(tmp_path / "d.json").get_statistics() == d.get_statistics()


def test_settings_python_has_no_field_for_survive_load_and_save(tmp_path):
    # A featdict build's settings beyond Python's ExtractionConfig (n-gram counting,
    # correlation) were saved back as their defaults, while the data they made was kept.
    d = _one_live_feature_of_three()
    d.save(tmp_path / "a.json")
    text = json.loads((tmp_path / "a.json").read_text())
    text["config"]["extraction"]["ngram_capacity"] = 4096
    text["config"]["extraction"]["correlation"] = "sketch"
    text["config"]["labeling"]["patterns"] = {"mine": "^a$"}
    (tmp_path / "b.json").write_text(json.dumps(text))
    loaded = FeatureDictionary.load(tmp_path / "b.json")
    loaded.config.labeling.patterns = {}  # the user's edit wins, whole
    loaded.save(tmp_path / "c.json")
    again = json.loads((tmp_path / "c.json").read_text())["config"]
    assert again["extraction"]["ngram_capacity"] == 4096
    assert again["extraction"]["correlation"] == "sketch"
    assert again["labeling"]["patterns"] == {}


def _four_eye_sequences():
    return [np.eye(2, dtype=np.float32) * (i + 1) for i in range(4)], [["a", "b"], ["c", "d"], ["e", "f"], ["g", "h"]]


def test_ctrl_c_between_chunks_says_which_sequences_were_kept():
    import os
    import signal
    import sys

    import feature_dictionary as fd

    seqs, toks = _four_eye_sequences()
    d = FeatureDictionary(2, 4, DictionaryConfig(extraction=ExtractionConfig(batch_size=1)))

    # A real SIGINT while the third chunk is being converted, in Python between two engine
    # calls (where no engine call could hold it back).
    def tracer(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "_as_float_2d" and frame.f_locals.get("what") == "batch_activations[2]":
            sys.setprofile(None)
            os.kill(os.getpid(), signal.SIGINT)

    sys.setprofile(tracer)
    try:
        with pytest.raises(fd.CallInterrupted) as e:
            d.process_batch(seqs, toks)
    finally:
        sys.setprofile(None)
    # The chunk being prepared is either fully taken or not at all, and the error says which.
    done = e.value.sequences_done
    assert e.value.sequences_total == 4 and done in (2, 3)
    assert d.extractor.total_tokens == 2 * done
    # Passing the rest completes it: the same as one uninterrupted call.
    d.process_batch(seqs[done:], toks[done:])
    whole = FeatureDictionary(2, 4, DictionaryConfig(extraction=ExtractionConfig(batch_size=1)))
    whole.process_batch(seqs, toks)
    d.finalize(), whole.finalize()
    for j in range(2):
        assert d.get_feature(j).activation_count == whole.get_feature(j).activation_count == 4
        assert d.get_feature(j).mean_activation == whole.get_feature(j).mean_activation == 2.5


@pytest.mark.parametrize("bad_sequence", [0, 2])
def test_a_callback_error_in_a_chunk_counts_that_chunk_as_kept(bad_sequence):
    seqs, toks = _four_eye_sequences()
    toks[bad_sequence] = ["BAD", "x"]
    d = FeatureDictionary(2, 4, DictionaryConfig(extraction=ExtractionConfig(batch_size=1)))
    failed = []

    def reject_bad_once(act):
        if act.token == "BAD" and not failed:
            failed.append(act)
            raise ValueError("callback rejects BAD")

    d.extractor.add_callback(reject_bad_once)
    kept = bad_sequence + 1
    with pytest.raises(ValueError, match=rf"callback rejects BAD \(the first {kept} of the 4 sequences .* pass sequences {kept}\.\. again"):
        d.process_batch(seqs, toks)
    assert d.extractor.total_tokens == 2 * kept
    # Following the message gives what one call gives: each token counted once.
    d.process_batch(seqs[kept:], toks[kept:])
    d.finalize()
    assert d.features.total_tokens_processed == 8
    assert d.get_feature(0).activation_count == 4


def test_a_callback_error_of_another_type_gets_the_count_as_a_note():
    seqs, toks = _four_eye_sequences()
    d = FeatureDictionary(2, 4, DictionaryConfig(extraction=ExtractionConfig(batch_size=2)))

    def fail(act):
        if act.token == "e":
            raise KeyError("no e")

    d.extractor.add_callback(fail)
    with pytest.raises(KeyError) as e:
        d.process_batch(seqs, toks)
    assert e.value.__notes__ == ["the first 4 of the 4 sequences of this batch were accumulated before it, "
                                 "the rest not: pass sequences 4.. again once fixed"]
    assert d.extractor.total_tokens == 8


@pytest.mark.parametrize("empty", [[], np.zeros(0), np.zeros((0, 0)), np.zeros((0, 2), np.float32)])
@pytest.mark.parametrize("batch_size", [1, 32])
def test_an_empty_sequence_in_a_list_batch_takes_its_number(empty, batch_size):
    seqs, toks = _four_eye_sequences()
    d = FeatureDictionary(2, 4, DictionaryConfig(extraction=ExtractionConfig(batch_size=batch_size)))
    d.process_batch([seqs[0], empty, seqs[1]], [toks[0], [], toks[1]])
    d.finalize()
    f = d.get_feature(1)
    assert f.activation_count == 2 and d.features.total_tokens_processed == 4
    # The third sequence is number 2: the empty one counted.
    assert sorted(a.metadata["sequence"] for a in f.top_activations) == [0, 2]


def test_text_that_is_not_unicode_is_named_where_it_was_given():
    a = np.eye(2, dtype=np.float32)
    d = FeatureDictionary(2, 4)
    with pytest.raises(ValueError, match=r"batch_tokens\[1\]\[1\] \('\\udcff'\) is not valid Unicode"):
        d.process_batch([a, a], [["a", "b"], ["c", "\udcff"]])
    with pytest.raises(ValueError, match=r"batch_tokens\[1\]\[0\] \('\\udcff'\) is not valid Unicode"):
        d.process_batch(np.stack([a, a]), [["a", "b"], ["\udcff", "c"]])
    with pytest.raises(ValueError, match=r"^context is not valid Unicode"):
        d.process(a, ["a", "b"], context="x\ud800")
    with pytest.raises(ValueError, match=r"^batch_contexts\[1\] is not valid Unicode"):
        d.process_batch([a, a], [["a", "b"], ["c", "d"]], ["ok", "\ud800"])
    assert d.extractor.total_tokens == 0


def test_mock_sae_keeps_the_leading_axes_and_checks_the_input_width():
    from feature_dictionary import MockSAE

    m = MockSAE(8, 16, sparsity=0.25, seed=0)
    assert m.encode(np.ones(8)).shape == (16,)
    batch = m.encode(np.ones((3, 5, 8)))
    assert batch.shape == (3, 5, 16)
    assert ((batch > 0).sum(axis=-1) == 4).all()
    assert m.encode(np.ones((5, 8))).shape == (5, 16)
    with pytest.raises(ValueError, match=r"input_dim=8\], got shape \(5, 7\)"):
        m.encode(np.ones((5, 7)))


def test_a_config_of_the_wrong_kind_and_masked_arrays_are_refused():
    with pytest.raises(TypeError, match=r"config must be a DictionaryConfig, got ExtractionConfig \(an ExtractionConfig goes in DictionaryConfig\(extraction=...\)\)"):
        FeatureDictionary(2, 4, config=ExtractionConfig())
    d = FeatureDictionary(2, 4)
    a = np.eye(2, dtype=np.float32)
    masked = np.ma.masked_array(a, mask=[[False, True], [False, False]])
    with pytest.raises(TypeError, match=r"activations is a numpy masked array.*a\.filled\(0\)"):
        d.process(masked, ["a", "b"])
    with pytest.raises(TypeError, match=r"batch_activations\[1\] is a numpy masked array"):
        d.process_batch([a, masked], [["a", "b"], ["c", "d"]])
    with pytest.raises(TypeError, match=r"batch_activations is a numpy masked array"):
        d.process_batch(np.ma.masked_array(np.stack([a, a])), [["a", "b"], ["c", "d"]])
    assert d.extractor.total_tokens == 0
