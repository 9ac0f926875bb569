"""FeatureDictionary: processing, search, ranking, export, save/load."""

import json

import numpy as np
import pytest

from conftest import Reference, assert_same, build, random_corpus
from feature_dictionary import (DictionaryConfig, ExtractionConfig, Feature, FeatureDictionary, FeatureSet,
                                FeatureType, create_dictionary)
from test_labeling import labeled


def test_create_dictionary_carries_names_into_the_saved_file(tmp_path, corpus):
    acts, tokens = corpus
    d = create_dictionary(num_features=acts.shape[2], feature_dim=16, model_name="gpt2", sae_name="sae5", layer=5)
    d.process_batch(acts, tokens)
    d.finalize()
    path = tmp_path / "d.json"
    d.save(str(path))
    data = json.loads(path.read_text())
    assert set(data) == {"config", "feature_set", "statistics"}
    assert data["config"]["model_name"] == "gpt2" and data["config"]["sae_name"] == "sae5"
    assert data["feature_set"]["model_name"] == "gpt2" and data["feature_set"]["layer"] == 5
    assert data["config"]["num_features"] == acts.shape[2]


def test_saved_json_has_the_shape_the_original_loader_reads(tmp_path, corpus):
    acts, tokens = corpus
    d = build(acts, tokens)
    d.finalize()
    path = tmp_path / "d.json"
    d.save(str(path))
    data = json.loads(path.read_text())
    fs = data["feature_set"]
    assert isinstance(fs["layer"], int) and isinstance(fs["metadata"], dict)
    for k, f in fs["features"].items():
        assert int(k) == f["id"]
        assert isinstance(f["dimension"], int)
        FeatureType(f["feature_type"])
        for key in ("bias", "activation_count", "mean_activation", "max_activation", "activation_frequency",
                    "labels", "description", "confidence", "metadata"):
            assert key in f
        for a in f["top_activations"]:
            assert {"feature_id", "token", "position", "activation"} <= set(a)


def test_load_restores_config_features_and_num_features(tmp_path):
    d, _, _ = labeled()
    d.config.extraction.min_activation_count = 1
    path = tmp_path / "d.json"
    d.save(str(path))
    e = FeatureDictionary.load(str(path))
    assert e.num_features == d.num_features == 6
    assert e.config.model_name == "m" and e.config.sae_name == "s" and e.config.layer == 3
    assert e.config.labeling.strategies == d.config.labeling.strategies
    assert len(e) == len(d)
    for f in d:
        g = e[f.id]
        assert g.labels == f.labels and g.description == f.description
        assert_same(g.to_dict(), f.to_dict(), rel=1e-6)
    assert e.search_by_label("token:cat")[0].id == 0
    with pytest.raises(RuntimeError, match="finalized statistics only"):
        e.process(np.zeros((1, 6), np.float32), ["x"])


def test_load_reads_a_file_in_the_original_libraries_shape(tmp_path):
    original = {
        "config": {"extraction": {"min_activation": 0.01}, "labeling": {}, "name": "feature_dictionary",
                   "model_name": "", "sae_name": "", "layer": 1, "auto_save": False, "save_path": None},
        "feature_set": {"layer": 1, "features": {"4": {
            "id": 4, "dimension": 8, "bias": 0.0, "activation_count": 2, "mean_activation": 1.5,
            "max_activation": 2.0, "activation_frequency": 0.5, "top_activations": [
                {"feature_id": 4, "token": "hi", "position": 0, "activation": 2.0, "context": "",
                 "context_tokens": ["hi"], "metadata": {}}],
            "labels": ["token:hi"], "description": "", "confidence": 0.5, "feature_type": "dense",
            "metadata": {}}}, "total_tokens_processed": 4, "model_name": "", "sae_name": "", "metadata": {}},
        "statistics": {}}
    path = tmp_path / "orig.json"
    path.write_text(json.dumps(original, indent=2))
    d = FeatureDictionary.load(str(path))
    assert d[4].labels == ["token:hi"] and d[4].get_top_tokens(1) == [("hi", 2.0)]
    assert d.num_features == 5
    assert d.search_by_token("hi") == [(4, 2.0)]
    assert d.get_feature_stats(4).mean_activation == 1.5


def test_bad_files_give_clear_errors(tmp_path, corpus):
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    with pytest.raises(ValueError, match="junk.json"):
        FeatureDictionary.load(str(junk))
    with pytest.raises(OSError, match="missing.json"):
        FeatureDictionary.load(str(tmp_path / "missing.json"))
    acts, tokens = corpus
    d = build(acts, tokens)
    with pytest.raises(OSError, match="directory .* does not exist"):
        d.save(str(tmp_path / "no" / "d.json"))


def test_a_non_finite_value_is_named_when_saving(tmp_path, corpus):
    acts, tokens = corpus
    d = build(acts, tokens)
    d.finalize()
    d.features.get_feature(3).confidence = float("nan")
    with pytest.raises(ValueError, match=r'cannot save feature_set\.features\["3"\]\.confidence = nan: a dictionary holds no NaN'):
        d.save(str(tmp_path / "d.json"))
    assert not (tmp_path / "d.json").exists()
    d.features.get_feature(3).confidence = 0.5
    d.features.get_feature(5).mean_activation = float("-inf")
    with pytest.raises(ValueError, match=r'features\["5"\]\.mean_activation = -inf'):
        d.save(str(tmp_path / "d.fdict"))
    d.features.get_feature(5).mean_activation = 1.0
    d.save(str(tmp_path / "d.json"))
    assert FeatureDictionary.load(str(tmp_path / "d.json")).get_feature(3).confidence == 0.5


def test_save_writes_json_whatever_the_name_as_the_original_did(tmp_path, corpus):
    acts, tokens = corpus
    d = build(acts, tokens)
    d.finalize()
    d.save(str(tmp_path / "d.json"))
    reference = json.loads((tmp_path / "d.json").read_text())
    for name in ("d.txt", "dictionary", "d.JSON"):
        d.save(str(tmp_path / name))
        assert json.loads((tmp_path / name).read_text()) == reference, name
        assert FeatureDictionary.load(str(tmp_path / name)).get_statistics() == d.get_statistics()


def test_search_by_token_label_and_pattern():
    d, acts, tokens = labeled()
    hits = d.search_by_token("cat")
    assert hits[0] == (0, pytest.approx(2.0))
    assert {fid for fid, _ in hits} == {0, 3}  # F3 fires on lowercase words
    assert [f.id for f in d.search_by_label("TOKEN:CAT")] == [0]
    assert [f.id for f in d.search_by_pattern(r"^[A-Z]+$")] == [2]
    assert [f.id for f in d.search_by_pattern(r"^\d+$")] == [5]
    assert {f.id for f in d.search_by_pattern(r"(?i)^abc$")} == {2}
    assert d.search_by_pattern(r"^abc$") == []


def test_top_features_by_each_metric(corpus):
    acts, tokens = corpus
    ref = Reference(acts, tokens)
    d = build(acts, tokens)
    n = acts.shape[2]
    counts = [ref.count(j) for j in range(n)]
    maxes = [ref.values(j).max() if counts[j] else 0.0 for j in range(n)]
    assert [f.id for f in d.get_top_features(5)] == sorted(range(n), key=lambda j: (-counts[j], j))[:5]
    assert [f.id for f in d.get_top_features(5, by="frequency")] == sorted(range(n), key=lambda j: (-counts[j], j))[:5]
    assert [f.id for f in d.get_top_features(5, by="max_activation")] == sorted(range(n), key=lambda j: (-maxes[j], j))[:5]
    with pytest.raises(ValueError, match="unknown metric"):
        d.get_top_features(5, by="nope")


def test_container_types_similar_and_exports(corpus):
    acts, tokens = corpus
    d = build(acts, tokens)
    d.finalize()
    assert len(d) == acts.shape[2]
    assert [f.id for f in d] == list(range(acts.shape[2]))
    with pytest.raises(KeyError):
        d[10_000]
    assert d.get_feature(10_000) is None
    for t in FeatureType:
        assert all(f.feature_type == t for f in d.get_features_by_type(t))
    assert sum(len(d.get_features_by_type(t)) for t in FeatureType) == len(d)
    sim = d.find_similar(0, top_k=3)
    assert len(sim) <= 3 and all(0.1 <= s <= 1.0 + 1e-9 for _, s in sim)
    assert [s for _, s in sim] == sorted([s for _, s in sim], reverse=True)
    exp = d.export_feature(0)
    assert exp["feature"]["id"] == 0 and exp["stats"]["feature_id"] == 0
    assert d.export_feature(10_000) == {"error": "Feature not found"}
    allx = d.export_all()
    assert set(allx) == {"config", "feature_set", "statistics"}
    assert d.get_feature_stats(10_000).activation_count == 0


def test_auto_save_on_finalize(tmp_path, corpus):
    acts, tokens = corpus
    path = tmp_path / "auto.json"
    d = FeatureDictionary(acts.shape[2], 4, DictionaryConfig(auto_save=True, save_path=str(path)))
    d.process_batch(acts, tokens)
    d.finalize()
    assert FeatureDictionary.load(str(path)).features.total_tokens_processed == acts.shape[0] * acts.shape[1]


def test_dictionary_stream_callbacks_and_type_strings(corpus):
    acts, tokens = corpus
    d = FeatureDictionary(acts.shape[2], 4, DictionaryConfig(extraction=ExtractionConfig(include_dead_features=True)))
    seen = []
    d.add_callback(seen.append)
    counts = list(d.stream_activations(zip(acts, tokens)))
    ref = Reference(acts, tokens)
    assert sum(counts) == len(seen) == int(ref.fires.sum())
    assert d.extractor.total_tokens == acts.shape[0] * acts.shape[1]
    d.finalize()
    assert d.get_features_by_type("dead") == d.get_features_by_type(FeatureType.DEAD)


def test_threads_process_shards_concurrently(corpus):
    import threading

    acts, tokens = corpus
    whole = build(acts, tokens)
    cfg = DictionaryConfig(extraction=ExtractionConfig(include_dead_features=True), model_name="m", sae_name="s", layer=3)
    shards = [FeatureDictionary(acts.shape[2], 16, cfg, sequence_offset=o) for o in (0, 6)]
    threads = [threading.Thread(target=s.process_batch, args=(acts[o:o + 6], tokens[o:o + 6]))
               for s, o in zip(shards, (0, 6))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    shards[0].merge(shards[1])
    assert_same(shards[0].features.to_dict(), whole.features.to_dict())


def test_fdict_loads_the_same_dictionary_as_json(tmp_path):
    import sqlite3

    d, acts, tokens = labeled()
    d.config.extraction.min_activation_count = 1
    d.save(str(tmp_path / "d.json"))
    d.save(str(tmp_path / "d.fdict"))
    raw = (tmp_path / "d.fdict").read_bytes()
    assert raw.startswith(b"SQLite format 3\0")
    with sqlite3.connect(str(tmp_path / "d.fdict")) as db:  # the native format featdict reads
        assert db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone() == ("feature-dictionary/fdict",)
        assert db.execute("SELECT COUNT(*) FROM features").fetchone() == (len(d),)
    j = FeatureDictionary.load(str(tmp_path / "d.json"))
    f = FeatureDictionary.load(str(tmp_path / "d.fdict"))
    assert f.features == j.features  # every feature, example, label and statistic
    assert f.features.metadata == j.features.metadata
    assert f.get_statistics() == j.get_statistics() == d.get_statistics()
    assert f.config.to_dict() == j.config.to_dict() and f.num_features == j.num_features == 6
    # against the planted data: F0 fires on every "cat" at 2.0, F4 on "york" after "new"
    cats = sum(t == "cat" for seq in tokens for t in seq)
    assert f[0].activation_count == cats and f[0].labels[0] == "token:cat"
    assert all(a.token == "cat" and a.activation == 2.0 for a in f[0].top_activations)
    assert all(a.context_tokens[a.position - a.metadata["context_start"] - 1] == "new" for a in f[4].top_activations)
    assert f.search_by_token("cat")[0] == (0, 2.0)
    assert [x.id for x in f.search_by_label("ngram:new york")] == [4]
    assert f.get_feature_stats(0).to_dict() == j.get_feature_stats(0).to_dict()
    assert FeatureSet.load(str(tmp_path / "d.fdict")) == FeatureSet.load(str(tmp_path / "d.json")) == j.features
    with pytest.raises(RuntimeError, match="d.fdict"):
        f.process(np.zeros((1, 6), np.float32), ["x"])


def test_a_loaded_fdict_saves_back_to_json_and_fdict(tmp_path):
    d, _, _ = labeled()
    d.save(str(tmp_path / "a.fdict"))
    a = FeatureDictionary.load(str(tmp_path / "a.fdict"))
    a.save(str(tmp_path / "b.json"))
    a.save(str(tmp_path / "c.fdict"))
    assert FeatureDictionary.load(str(tmp_path / "b.json")).features == a.features
    assert FeatureDictionary.load(str(tmp_path / "c.fdict")).features == a.features


def test_corrupt_fdict_files_give_errors_naming_the_file(tmp_path):
    import sqlite3

    header_only = tmp_path / "header_only.fdict"
    header_only.write_bytes(b"SQLite format 3\0" + b"\0" * 100)
    with pytest.raises(ValueError, match="header_only.fdict"):
        FeatureDictionary.load(str(header_only))
    other = tmp_path / "other.fdict"  # a SQLite database, but not a dictionary
    with sqlite3.connect(str(other)) as db:
        db.execute("CREATE TABLE t(x)")
    db.close()
    with pytest.raises(ValueError, match="other.fdict.*not a feature dictionary"):
        FeatureDictionary.load(str(other))
    d, _, _ = labeled()
    good = tmp_path / "good.fdict"
    d.save(str(good))
    truncated = tmp_path / "truncated.fdict"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(ValueError, match="truncated.fdict"):
        FeatureDictionary.load(str(truncated))
    bad_body = tmp_path / "bad_body.fdict"
    bad_body.write_bytes(good.read_bytes())
    with sqlite3.connect(str(bad_body)) as db:
        db.execute("UPDATE features SET body = '{not json' WHERE id = 2")
    db.close()
    with pytest.raises(ValueError, match="bad_body.fdict.*2"):
        FeatureDictionary.load(str(bad_body))


def test_a_loaded_dictionary_relabels_on_finalize_and_names_the_method_that_needs_the_accumulator(tmp_path, corpus):
    acts, tokens = corpus
    d = build(acts, tokens)
    d.finalize()
    d.save(str(tmp_path / "d.json"))
    e = FeatureDictionary.load(str(tmp_path / "d.json"))
    # finalize() labels and describes the loaded features again, as the original's did.
    for f in e.features:
        f.labels, f.description, f.confidence = [], "", 0.0
    e.finalize()
    assert [(f.labels, f.description, f.confidence) for f in e.features] == [
        (f.labels, f.description, f.confidence) for f in d.features
    ]
    # merge() used to say "process() needs the accumulator state"
    with pytest.raises(RuntimeError, match=r"merge\(\) needs the accumulator"):
        d.merge(e)
    with pytest.raises(RuntimeError, match=r"process_batch\(\) needs the accumulator"):
        e.process_batch(acts, tokens)


def test_finalize_of_a_loaded_dictionary_gives_the_labels_of_its_build(tmp_path):
    words = ["the", "cat", "sat", "on", "a", "mat", "cat", "dog"] * 8
    acts = np.zeros((len(words), 3), np.float32)
    for i, w in enumerate(words):
        acts[i, 0] = 2.0 if w == "cat" else 0.0
        acts[i, 1] = 1.0 if w in ("the", "a") else 0.0
        acts[i, 2] = 0.5 if i % 3 == 0 else 0.0
    d = FeatureDictionary(3, 4)
    d.process(acts, words)
    d.finalize()
    assert d[0].labels[0] == "token:cat"
    d.save(str(tmp_path / "d.json"))
    e = FeatureDictionary.load(str(tmp_path / "d.json"))
    for f in e.features:
        f.labels, f.description, f.confidence = [], "", 0.0
    e.finalize()
    for f in d.features:
        g = e[f.id]
        assert (g.labels, g.description, g.confidence) == (f.labels, f.description, f.confidence)


def test_numpy_numbers_are_saved_as_numbers_and_other_objects_are_named(tmp_path):
    d = FeatureDictionary(2, 1)
    d.process(np.array([[1.0, 0.0], [0.5, 2.0]], np.float32), ["a", "b"])
    d.finalize()
    d[0].confidence = np.float32(0.5)
    d[1].metadata["extra_count"] = np.int64(7)
    for name in ("n.json", "n.fdict"):
        d.save(str(tmp_path / name))
        back = FeatureDictionary.load(str(tmp_path / name))
        assert back[0].confidence == 0.5 and back[1].metadata["extra_count"] == 7
    d[0].confidence = np.float32("nan")
    with pytest.raises(ValueError, match=r'n.json: cannot save feature_set.features\["0"\].confidence = nan'):
        d.save(str(tmp_path / "n.json"))
    d[0].confidence = 0.5
    d[1].metadata["when"] = object()
    with pytest.raises(TypeError, match=r'n.json: cannot save feature_set.features\["1"\].metadata.when = <object'):
        d.save(str(tmp_path / "n.json"))
    # A structure holding itself is said as such (the message named "  = None").
    del d[1].metadata["when"]
    loop = []
    loop.append(loop)
    d[1].metadata["loop"] = loop
    with pytest.raises(ValueError, match=r"n.json: cannot save: a list or dict contains itself"):
        d.save(str(tmp_path / "n.json"))
    with pytest.raises(KeyError, match="Feature '0' not found"):
        d["0"]
