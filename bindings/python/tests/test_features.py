"""Data model: construction, ranking, classification, dict round trips, files."""

import json

import pytest

from feature_dictionary import Feature, FeatureActivation, FeatureSet, FeatureType


def act(fid, v, pos=0, token="t", seq=0):
    return FeatureActivation(feature_id=fid, token=token, position=pos, activation=v, metadata={"sequence": seq})


def test_add_activation_keeps_exact_mean_max_and_sorted_top():
    f = Feature(id=1, dimension=4)
    for i in range(1, 101):
        f.add_activation(act(1, float(i), pos=i), max_examples=20)
    assert f.activation_count == 100
    assert f.mean_activation == pytest.approx(50.5)
    assert f.max_activation == 100.0
    assert [a.activation for a in f.top_activations] == [float(i) for i in range(100, 80, -1)]
    assert f.get_top_tokens(2) == [("t", 100.0), ("t", 99.0)]


def test_add_activation_trims_to_a_smaller_max_examples_even_when_not_admitted():
    # The original appends, sorts and keeps [:max_examples] on every call.
    f = Feature(id=0, dimension=4)
    for i in range(5):
        f.add_activation(act(0, 1.0 + i, pos=i))
    f.add_activation(act(0, 0.1, pos=9), max_examples=3)
    assert [a.activation for a in f.top_activations] == [5.0, 4.0, 3.0]
    f.add_activation(act(0, 9.0, pos=10), max_examples=2)
    assert [a.activation for a in f.top_activations] == [9.0, 5.0]
    assert f.activation_count == 7


def test_ties_rank_by_sequence_then_position():
    f = Feature(id=0, dimension=1)
    f.add_activation(act(0, 1.0, pos=5, seq=1))
    f.add_activation(act(0, 1.0, pos=9, seq=0))
    f.add_activation(act(0, 1.0, pos=2, seq=1))
    assert [(a.metadata["sequence"], a.position) for a in f.top_activations] == [(0, 9), (1, 2), (1, 5)]


@pytest.mark.parametrize("count,total,expected", [
    (0, 100, FeatureType.DEAD), (1, 0, FeatureType.DEAD), (1, 20000, FeatureType.ULTRA_SPARSE),
    (2, 20000, FeatureType.SPARSE), (1, 100, FeatureType.MODERATE), (9, 100, FeatureType.MODERATE),
    (10, 100, FeatureType.DENSE)])
def test_classify_type_uses_the_original_thresholds(count, total, expected):
    f = Feature(id=0, dimension=1, activation_count=count)
    assert f.classify_type(total) == expected
    assert f.feature_type == expected
    assert f.activation_frequency == (count / total if total else 0.0)


def test_round_trips_through_dicts_and_json():
    a = FeatureActivation(3, "cat", 7, 1.5, "the cat sat", ["the", "cat", "sat"], {"sequence": 2})
    assert FeatureActivation.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    f = Feature(id=3, dimension=8, bias=0.5, activation_count=4, mean_activation=1.0, max_activation=1.5,
                activation_frequency=0.1, top_activations=[a], labels=["token:cat"], description="d",
                confidence=0.9, feature_type=FeatureType.MODERATE, metadata={"x": 1})
    assert Feature.from_dict(json.loads(json.dumps(f.to_dict()))) == f
    assert set(f.to_dict()) == {"id", "dimension", "bias", "activation_count", "mean_activation", "max_activation",
                                "activation_frequency", "top_activations", "labels", "description", "confidence",
                                "feature_type", "metadata"}


def test_feature_set_container_and_statistics(tmp_path):
    fs = FeatureSet(layer=2, total_tokens_processed=100, model_name="m", sae_name="s")
    fs.add_feature(Feature(id=0, dimension=1, activation_count=0))
    fs.add_feature(Feature(id=1, dimension=1, activation_count=5, activation_frequency=0.05, labels=["token:a"]))
    fs.add_feature(Feature(id=2, dimension=1, activation_count=20, activation_frequency=0.2))
    counts = fs.classify_all_types()
    assert counts[FeatureType.DEAD] == 1 and counts[FeatureType.MODERATE] == 1 and counts[FeatureType.DENSE] == 1
    assert len(fs) == 3 and fs[1].id == 1 and [f.id for f in fs] == [0, 1, 2]
    assert fs.get_feature(9) is None
    assert [f.id for f in fs.get_features_by_type(FeatureType.DENSE)] == [2]
    assert [f.id for f in fs.get_features_by_label("token:a")] == [1]
    stats = fs.get_statistics()
    assert stats == {"total_features": 3, "active_features": 2, "dead_features": 1, "labeled_features": 1,
                     "mean_activation_frequency": pytest.approx(0.25 / 3), "total_tokens_processed": 100}
    path = tmp_path / "fs.json"
    fs.save(str(path))
    assert FeatureSet.load(str(path)) == fs
    assert FeatureSet.from_dict(fs.to_dict()) == fs
    assert list(fs.to_dict()["features"]) == ["0", "1", "2"]


def test_reprs_summarize_instead_of_dumping_every_example():
    f = Feature(id=7, dimension=4, decoder_weight=[0.5] * 4096, labels=[f"token:w{i}" for i in range(8)],
                description="x" * 500)
    for i in range(20):
        f.add_activation(act(7, float(i), pos=i, token="<script>" * 50))
    f.classify_type(1000)
    r = repr(f)
    assert r.startswith("Feature(id=7, feature_type=moderate, activation_count=20, activation_frequency=0.02, ")
    assert "labels=['token:w0', 'token:w1', 'token:w2', 'token:w3', 'token:w4', … 3 more]" in r
    assert "description='" + "x" * 79 + "…'" in r
    assert r.endswith("top_activations=<20 examples>)")
    assert "<script>" not in r and "0.5" not in r and len(r) < 400
    fs = FeatureSet(layer=3, model_name="m")
    fs.add_feature(f)
    assert repr(fs) == "FeatureSet(layer=3, features=<1 features>, total_tokens_processed=0, model_name='m')"


def test_repr_of_an_engine_feature_does_not_convert_its_examples():
    import numpy as np

    from feature_dictionary import FeatureDictionary

    d = FeatureDictionary(4, 2)
    x = np.zeros((1, 3, 4), np.float32)
    x[0, :, 1] = [0.5, 2.0, 0.0]
    d.process_batch(x, [["a", "b", "c"]])
    d.finalize()
    f = d.features[1]
    assert "top_activations" not in f.__dict__
    assert repr(f).startswith("Feature(id=1, feature_type=dense, activation_count=2, ")
    assert "top_activations" not in f.__dict__
    assert repr(d) == "<FeatureDictionary: 4 features of dimension 2, 3 tokens, finalized>"
