"""finalize() labels in the engine and builds features lazily: the results must equal the
Python labeler's and the saved-JSON route's exactly."""

import copy
import json
import pickle

import numpy as np
import pytest

from conftest import build, random_corpus
from feature_dictionary import (Feature, FeatureDictionary, FeatureLabeler, FeatureSet, LabelingConfig,
                                LabelingStrategy)
from test_labeling import ALL, planted

TF, NG, PM, SC = (LabelingStrategy.TOKEN_FREQUENCY, LabelingStrategy.NGRAM_ANALYSIS,
                  LabelingStrategy.PATTERN_MATCHING, LabelingStrategy.SEMANTIC_CLUSTERING)


def spaced_corpus(seed=3, n_seq=20, seq_len=30, n_features=12):
    """Byte-level-BPE-like tokens: the same word with and without a leading space, with
    Python-only whitespace (U+001C) and an ideographic space around it, digits, capitals;
    features fire on planted token sets and on random positions."""
    rng = np.random.default_rng(seed)
    vocab = ["the", " the", "The", " cat", "cat", "\x1ccat", "cat\u3000", " ", "\n", "42", " 7", "NEW", " york",
             " new", "of", " of"]
    tokens = [list(rng.choice(vocab, size=seq_len)) for _ in range(n_seq)]
    acts = np.zeros((n_seq, seq_len, n_features), dtype=np.float32)
    for s, toks in enumerate(tokens):
        for p, t in enumerate(toks):
            k = t.strip()
            acts[s, p, 0] = 1.0 + 0.5 * (k == "cat") if k in ("cat", "the") else 0.0
            acts[s, p, 1] = 2.0 if k.isdigit() else 0.0
            acts[s, p, 2] = 0.7 if not k else 0.0
            acts[s, p, 3] = 1.25 if k == "york" and p > 0 and toks[p - 1].strip() == "new" else 0.0
            acts[s, p, 4] = 0.3 if k.isupper() else 0.0
    acts[..., 5:] = (rng.random((n_seq, seq_len, n_features - 5)) < 0.15) * rng.random(
        (n_seq, seq_len, n_features - 5)).astype(np.float32) * 3
    return acts, tokens


def summary(fs):
    return {f.id: (list(f.labels), f.confidence, f.description, f.metadata.get("label_details"))
            for f in fs}


def engine_and_python(d):
    """(labels by the engine through finalize(), labels by the Python labeler on the same
    unlabeled features)."""
    fs, labeled = d.extractor._finalize(labeler=d.labeler)
    assert labeled, "the engine should have labeled this configuration"
    got = summary(fs)
    fresh = d.extractor.finalize()  # the same features, unlabeled
    d.labeler.label_features(fresh)
    for f in fresh:
        d.labeler.generate_description(f)
    return got, summary(fresh)


CONFIGS = [
    {},
    {"strategies": ALL},
    {"strategies": ALL, "min_token_frequency": 1, "min_confidence": 0.0, "max_labels": 10},
    {"strategies": [PM, TF], "min_token_frequency": 2.5, "max_labels": 2, "patterns": {"cat": r"^c.t$", "number": r"\d"}},
    {"strategies": [NG], "ngram_sizes": [2, 2, 3], "min_confidence": 0.05},
    {"strategies": [NG, TF], "ngram_sizes": [3], "min_token_frequency": 0, "min_confidence": 0.0},
    {"strategies": ALL, "max_labels": 0},
    {"strategies": [LabelingStrategy.MANUAL, TF]},
]


@pytest.mark.parametrize("corpus_fn", [planted, spaced_corpus, lambda: random_corpus(seed=4)])
@pytest.mark.parametrize("cfg", CONFIGS)
def test_engine_labels_equal_the_python_labeler(corpus_fn, cfg):
    acts, tokens = corpus_fn()
    d = build(acts, tokens)
    d.labeler = FeatureLabeler(LabelingConfig(**cfg))
    d.labeler.add_pattern("upper_or_space", r"^([A-Z]+|\s+)$")
    d.labeler.add_manual_label(0, "hand-written", confidence=0.5, evidence=["seen"])
    d.labeler.add_manual_label(1, "token:7")  # the text of an automatic label
    got, expected = engine_and_python(d)
    assert got == expected
    assert any(labels for labels, *_ in got.values())


def test_finalize_uses_python_for_what_the_engine_does_not_do():
    acts, tokens = planted()

    class Custom(FeatureLabeler):
        def _label_by_token_frequency(self, feature):
            return [l for l in super()._label_by_token_frequency(feature) if l.text != "token:cat"]

    d = build(acts, tokens)
    d.labeler = Custom(LabelingConfig())
    d.finalize()
    assert "token:cat" not in d[0].labels  # the override was honoured
    assert any(l.startswith("token:") for f in d for l in f.labels)
    d = build(acts, tokens)
    d.labeler = FeatureLabeler(LabelingConfig(strategies=[TF, SC]))
    d.finalize()
    assert d[3].labels and d[3].description.startswith("A ")


def test_lazy_features_equal_the_saved_json_route_exactly(tmp_path):
    acts, tokens = spaced_corpus()
    d = build(acts, tokens, include_dead_features=False, min_activation_count=3)
    d.finalize()
    path = tmp_path / "d.json"
    d.save(str(path))
    # The engine's JSON parsed by json.loads: the same, but for float32 values (example
    # activations), which the file spells as their shortest decimal and Python holds exactly.
    data = json.loads(path.read_text())
    reference = FeatureSet.from_dict(data["feature_set"])
    assert_same_but_float32_spelling(reference.to_dict(), d.features.to_dict())
    assert d.features.metadata == reference.metadata
    assert d.features.metadata["dead_features"] or d.features.metadata["omitted_features"]
    # Loaded back through the engine's model: every field, every float bit, every example.
    loaded = FeatureDictionary.load(str(path))
    assert loaded.features == d.features
    f = next(f for f in d.features if f.activation_count == 1 or f.top_activations)
    assert f.max_activation == f.top_activations[0].activation


def assert_same_but_float32_spelling(from_json, ours, where="$"):
    """Equal, except that a float of ``ours`` holding exactly a float32 value may be spelled
    in the JSON as that float32's shortest decimal (which reads back as the same float32)."""
    if isinstance(ours, float) and isinstance(from_json, float) and from_json != ours:
        assert float(np.float32(ours)) == ours, f"{where}: {from_json!r} != {ours!r}"
        assert np.float32(from_json) == np.float32(ours), f"{where}: {from_json!r} != {ours!r}"
    elif isinstance(ours, dict):
        assert isinstance(from_json, dict) and from_json.keys() == ours.keys(), where
        for k in ours:
            assert_same_but_float32_spelling(from_json[k], ours[k], f"{where}.{k}")
    elif isinstance(ours, (list, tuple)):
        assert isinstance(from_json, (list, tuple)) and len(from_json) == len(ours), where
        for i, (a, b) in enumerate(zip(from_json, ours)):
            assert_same_but_float32_spelling(a, b, f"{where}[{i}]")
    else:
        assert from_json == ours, f"{where}: {from_json!r} != {ours!r}"


def test_lazy_fields_are_converted_once_and_then_plain_attributes():
    acts, tokens = random_corpus(seed=11)
    d = build(acts, tokens)
    d.finalize()
    f = next(f for f in d if f.activation_count)
    assert "_src" in vars(f) and "metadata" not in vars(f)
    assert f.top_activations is f.top_activations
    meta = f.metadata
    assert meta is f.metadata and "_src" not in vars(f)
    f.metadata["mine"] = 1
    assert d[f.id].metadata["mine"] == 1
    g = next(g for g in d if g.activation_count and g.id != f.id)
    g.metadata = {"replaced": True}  # set before it was ever read: never overwritten
    assert g.top_activations and g.metadata == {"replaced": True}


def test_finalized_features_pickle_and_copy_without_the_engine():
    acts, tokens = random_corpus(seed=12)
    d = build(acts, tokens)
    d.finalize()
    f = d[1]
    plain = Feature.from_dict(json.loads(json.dumps(f.to_dict())))
    for g in (pickle.loads(pickle.dumps(f)), copy.deepcopy(f), copy.copy(f)):
        assert g == plain and "_src" not in vars(g)
    e = pickle.loads(pickle.dumps(d))
    assert e.features == d.features
    assert [f.labels for f in e] == [f.labels for f in d]


@pytest.mark.parametrize("suffix", [".json", ".fdict"])
def test_save_takes_unconverted_fields_from_the_engine_and_edits_from_python(tmp_path, suffix):
    acts, tokens = random_corpus(seed=13)
    d = build(acts, tokens)
    d.finalize()
    d.save(str(tmp_path / ("untouched" + suffix)))
    assert all("_src" in vars(f) for f in d)  # saving converted nothing
    d[1].labels = ["mine"]  # a scalar edit, examples never read
    d[2].metadata["note"] = "edited"
    d[3].top_activations = d[3].top_activations[:1]
    d.features.add_feature(Feature(id=99, dimension=16, activation_count=1, labels=["by hand"]))
    d.save(str(tmp_path / ("edited" + suffix)))
    untouched = FeatureDictionary.load(str(tmp_path / ("untouched" + suffix)))
    edited = FeatureDictionary.load(str(tmp_path / ("edited" + suffix)))
    assert edited.features == d.features
    assert edited[1].labels == ["mine"] and edited[2].metadata["note"] == "edited"
    assert len(edited[3].top_activations) == 1 and edited[99].labels == ["by hand"]
    assert untouched[3].top_activations == build(acts, tokens).features[3].top_activations
    assert untouched[1].labels != ["mine"]


def test_queries_read_unconverted_features_from_the_engine_with_the_same_results():
    acts, tokens = spaced_corpus()
    d = build(acts, tokens)
    d.labeler = FeatureLabeler(LabelingConfig(strategies=ALL, min_confidence=0.0))
    d.finalize()

    def answers():
        return ([d.search_by_token(t) for t in ("cat", "the", " york", "42", "", "nope")],
                [[f.id for f in d.search_by_pattern(p)] for p in (r"^c", r"(?i)new", r"\s")],
                [d.find_similar(i, top_k=4) for i in range(0, 12, 3)],
                d.extractor.get_feature_by_token("of"),
                [d.analyzer.compare_features(0, j) for j in (1, 3)])

    lazy = answers()
    # nothing converted (but the empty examples of features that never fired)
    assert all("metadata" not in vars(f) and "top_activations" not in vars(f) for f in d if f.activation_count)
    for f in d:  # convert everything, forget the token index
        f.metadata, f.top_activations
    del d.features._token_index
    assert answers() == lazy
    assert lazy[0][0] and lazy[1][0] and lazy[2][0]
