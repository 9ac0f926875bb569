"""Bad arguments and inputs are clear errors, never silent wrong answers or a killed process."""

import json
import os
import stat

import numpy as np
import pytest

from feature_dictionary import ExtractionConfig, FeatureDictionary, create_dictionary
from feature_dictionary.features import FeatureSet

F = 8


def _acts(rows=10, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((rows, F)) * (rng.random((rows, F)) < 0.4) + 0.0).astype(np.float32)


def test_tokens_given_as_one_string_are_refused():
    d = create_dictionary(F, 16)
    with pytest.raises(TypeError, match="list of token strings .* got a single str 'abcdefghij'"):
        d.process(_acts(), "abcdefghij")
    assert d.extractor.total_tokens == 0


def test_a_token_that_is_not_unicode_is_named():
    d = create_dictionary(F, 16)
    tokens = [f"t{i}" for i in range(10)]
    tokens[7] = "bad\ud800"
    with pytest.raises(ValueError, match=r"tokens\[7\] \('bad\\ud800'\) is not valid Unicode"):
        d.process(_acts(), tokens)
    assert d.extractor.total_tokens == 0


def test_counts_must_be_non_negative_integers():
    d = create_dictionary(F, 16)
    d.process(_acts(), [f"t{i}" for i in range(10)])
    d.finalize()
    assert len(d.get_top_features(n=3)) == 3
    for call in (lambda: d.get_top_features(n=-1), lambda: d.find_similar(0, top_k=-1),
                 lambda: d.extractor.get_top_features(n=-2), lambda: next(iter(d)).get_top_tokens(-1)):
        with pytest.raises(ValueError, match="non-negative integer"):
            call()
    with pytest.raises(ValueError, match="num_features must be a non-negative integer, got 8.7"):
        create_dictionary(8.7, 16)
    with pytest.raises(ValueError, match="feature_dim must be a non-negative integer, got -1"):
        create_dictionary(8, -1)
    assert create_dictionary(np.int64(8), np.int32(16)).num_features == 8


def test_sizes_no_memory_holds_are_errors_not_a_killed_interpreter(tmp_path):
    with pytest.raises(ValueError, match="cannot allocate the state of 1000000000000 features"):
        create_dictionary(10**12, 16)
    with pytest.raises(ValueError, match="samples_per_group must be at most 1000"):
        FeatureDictionary(F, 16).extractor.__class__(F, 16, config=ExtractionConfig(samples_per_group=2**32 - 1))
    # A file's config may claim any feature count: loading reads the features it holds and
    # allocates nothing per claimed feature.
    d = create_dictionary(F, 16)
    d.process(_acts(), [f"t{i}" for i in range(10)])
    d.finalize()
    path = tmp_path / "d.json"
    d.save(str(path))
    data = json.loads(path.read_text())
    data["config"]["num_features"] = 10**15
    path.write_text(json.dumps(data))
    loaded = FeatureDictionary.load(str(path))
    assert loaded.num_features == 10**15
    assert len(loaded) == len(d)


def test_feature_set_save_refuses_nan_and_devices_and_keeps_the_mode(tmp_path):
    d = create_dictionary(F, 16)
    d.process(_acts(), [f"t{i}" for i in range(10)])
    d.finalize()
    fs = d.features
    out = tmp_path / "fs.json"
    fs.save(str(out))
    assert FeatureSet.load(str(out)).to_dict() == fs.to_dict()
    os.chmod(out, 0o600)
    fs.save(str(out))
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(Exception, match="not a regular file"):
        fs.save(str(fifo))
    with pytest.raises(Exception, match="not a regular file"):
        d.save(str(fifo))
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    fs.get_feature(0).mean_activation = float("nan")
    with pytest.raises(ValueError, match=r'cannot save features\["0"\]\.mean_activation = nan: JSON has no NaN'):
        fs.save(str(out))
    assert "NaN" not in out.read_text()


def test_a_nan_in_a_later_sequence_refuses_the_call_whole():
    # The error names the sequence of the input (not the engine's running numbering), and a
    # call that fits one engine batch (here: all of it) accumulates nothing.
    d = create_dictionary(F, 16)
    d.process(_acts(), [f"t{i}" for i in range(10)])
    seqs, seq_len = 4, 8
    acts = np.abs(np.random.default_rng(1).standard_normal((seqs, seq_len, F))).astype(np.float32)
    acts[3, 2, 5] = np.nan
    tokens = [[f"t{i}" for i in range(seq_len)] for _ in range(seqs)]
    with pytest.raises(ValueError, match=r"first at sequence 3 of this input, position 2, feature 5; "
                                         r".*nothing of this call was accumulated"):
        d.process_batch(acts, tokens)
    assert d.extractor.total_tokens == 10
    acts[3, 2, 5] = 0.5
    d.process_batch(acts, tokens)
    assert d.extractor.total_tokens == 10 + seqs * seq_len


def test_a_feature_saved_under_another_id_is_refused(tmp_path):
    # load refuses a file whose features[key] holds another id; save never writes one.
    d = create_dictionary(F, 16)
    d.process(_acts(), [f"t{i}" for i in range(10)])
    d.finalize()
    next(iter(d)).id = 99
    with pytest.raises(ValueError, match=r'features\["0"\] holds feature id 99'):
        d.save(str(tmp_path / "d.json"))
    assert not (tmp_path / "d.json").exists()


def test_a_float64_beyond_float32_is_named_not_called_non_finite():
    d = create_dictionary(F, 16)
    acts = _acts().astype(np.float64)
    acts[2, 3] = 1e39
    with pytest.raises(ValueError, match=r"activations\[2, 3\] = 1e\+39 is beyond the range of float32"):
        d.process(acts, [f"t{i}" for i in range(10)])
    batch = np.stack([_acts().astype(np.float64)] * 2)
    batch[1, 4, 0] = -5e40
    with pytest.raises(ValueError, match=r"batch_activations\[1, 4, 0\] = -5e\+40 is beyond"):
        d.process_batch(batch, [[f"t{i}" for i in range(10)]] * 2)
    # A real infinity is still the engine's non-finite refusal.
    acts[2, 3] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        d.process(acts, [f"t{i}" for i in range(10)])
    assert d.extractor.total_tokens == 0
