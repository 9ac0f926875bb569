"""Labels scored by precision/recall over all tokens, on planted features."""

import re

import numpy as np
import pytest

from conftest import build
from feature_dictionary import (Feature, FeatureActivation, FeatureLabeler, Label, LabelingConfig,
                                LabelingStrategy)

ALL = [LabelingStrategy.TOKEN_FREQUENCY, LabelingStrategy.NGRAM_ANALYSIS, LabelingStrategy.PATTERN_MATCHING]


def planted(seed=0, n_seq=30, seq_len=24):
    """F0 fires on every 'cat'; F1 on every 10th 'the' (common token); F2 on uppercase
    tokens; F3 on lowercase words; F4 on 'york' after 'new'; F5 on numbers."""
    rng = np.random.default_rng(seed)
    vocab = ["the", "the", "the", "cat", "sat", "ABC", "XYZ", "new", "york", "on", "7", "42", "mat"]
    tokens, acts = [], np.zeros((n_seq, seq_len, 6), dtype=np.float32)
    the_seen = 0
    for s in range(n_seq):
        toks = list(rng.choice(vocab, size=seq_len))
        for p, t in enumerate(toks):
            if t == "york" and p > 0:
                toks[p - 1] = "new"
        for p, t in enumerate(toks):
            if t == "cat":
                acts[s, p, 0] = 2.0
            if t == "the":
                the_seen += 1
                if the_seen % 10 == 0:
                    acts[s, p, 1] = 1.0
            if t.isupper():
                acts[s, p, 2] = 1.5
            if t.islower() and t.isalpha():
                acts[s, p, 3] = 0.5
            if t == "york" and p > 0 and toks[p - 1] == "new":
                acts[s, p, 4] = 3.0
            if t.isdigit():
                acts[s, p, 5] = 1.0
        tokens.append(toks)
    return acts, tokens


def labeled(strategies=ALL, **cfg):
    acts, tokens = planted()
    d = build(acts, tokens)
    d.config.labeling.strategies = strategies
    for k, v in cfg.items():
        setattr(d.config.labeling, k, v)
    d.labeler = FeatureLabeler(d.config.labeling)
    d.finalize()
    return d, acts, tokens


def test_token_label_has_precision_and_recall_over_the_corpus():
    d, acts, tokens = labeled()
    f = d[0]
    assert f.labels[0] == "token:cat"
    assert f.confidence == pytest.approx(1.0)
    detail = f.metadata["label_details"][0]
    assert detail["precision"] == pytest.approx(1.0) and detail["recall"] == pytest.approx(1.0)


def test_a_common_token_does_not_label_a_feature_that_rarely_fires_on_it():
    d, acts, tokens = labeled()
    f = d[1]  # fires on 10 % of 'the': precision 0.1, recall 1.0 → F1 ≈ 0.18 < 0.3
    assert "token:the" not in f.labels
    the = sum(t == "the" for seq in tokens for t in seq)
    labeler = FeatureLabeler(LabelingConfig(min_confidence=0.0))
    labels = {l.text: l for l in labeler.label_feature(f)}
    assert labels["token:the"].metadata["precision"] == pytest.approx(f.activation_count / the)
    assert labels["token:the"].metadata["recall"] == pytest.approx(1.0)


def test_patterns_are_case_sensitive():
    d, _, _ = labeled()
    assert "pattern:uppercase" in d[2].labels
    assert "pattern:uppercase" not in d[3].labels
    assert "pattern:number" in d[5].labels
    assert d[5].metadata["label_details"][0]["precision"] == pytest.approx(1.0)


def test_custom_patterns_from_config_and_add_pattern():
    d, _, _ = labeled(patterns={"abc": r"^ABC$"})
    assert "pattern:abc" in d[2].labels
    labeler = FeatureLabeler(LabelingConfig(strategies=[LabelingStrategy.PATTERN_MATCHING]))
    labeler.set_corpus(d.features)
    labeler.add_pattern("cat_like", r"^c.t$")
    assert "pattern:cat_like" in [l.text for l in labeler.label_feature(d[0])]
    with pytest.raises(Exception):
        labeler.add_pattern("bad", "(")


def test_ngram_label_ends_at_the_firing_token():
    d, _, _ = labeled()
    assert "ngram:new york" in d[4].labels
    lab = next(x for x in d[4].metadata["label_details"] if x["text"] == "ngram:new york")
    assert lab["confidence"] == pytest.approx(1.0)


def test_max_labels_min_confidence_and_manual_labels():
    d, _, _ = labeled()
    labeler = FeatureLabeler(LabelingConfig(strategies=ALL, max_labels=1, min_confidence=0.3))
    labeler.add_manual_label(0, "cats", confidence=0.9)
    labels = labeler.label_feature(d[0])
    assert [l.text for l in labels] == ["cats"]
    assert labels[0].strategy == LabelingStrategy.MANUAL
    labeler2 = FeatureLabeler(LabelingConfig(strategies=ALL, max_labels=3))
    assert d[0].labels[0] == "cats" and "token:cat" not in d[0].labels
    relabeled = labeler2.label_feature(d[0])  # manual labels survive automatic labeling
    assert relabeled[0].text == "cats" and "token:cat" in d[0].labels
    assert all(l.confidence >= 0.3 for l in relabeled)


def test_semantic_clustering_groups_case_variants_or_embeddings():
    f = Feature(id=0, dimension=1, activation_count=10,
                metadata={"top_tokens": [{"token": "The", "firings": 4, "occurrences": 4},
                                         {"token": " the", "firings": 4, "occurrences": 40},
                                         {"token": "cat", "firings": 2, "occurrences": 2}]})
    labeler = FeatureLabeler(LabelingConfig(strategies=[LabelingStrategy.SEMANTIC_CLUSTERING]))
    labels = labeler.label_feature(f)
    assert labels[0].text in ("cluster:The|the", "cluster:the|The")
    assert labels[0].confidence == pytest.approx(0.8)
    labeler.set_token_embeddings({"The": [1, 0], "the": [1, 0.1], "cat": [1, 0.2]})
    assert labeler.label_feature(f)[0].confidence == pytest.approx(1.0)


def test_description_and_similarity():
    d, _, _ = labeled()
    desc = d[0].description
    assert desc.startswith("A ") and "token:cat (precision 1.00)" in desc and "'cat'" in desc
    assert d.labeler.generate_description(d[0]) == desc
    sims = dict(d.labeler.find_similar_features(d[2], d.features, min_overlap=0.0))
    assert sims.get(3, 0.0) == pytest.approx(0.0)
    twin = Feature.from_dict(d[0].to_dict())
    twin.id = 99
    d.features.add_feature(twin)
    assert d.labeler.find_similar_features(d[0], d.features, min_overlap=0.5)[0] == (99, pytest.approx(1.0))


def test_label_round_trip():
    l = Label("token:a", 0.5, LabelingStrategy.TOKEN_FREQUENCY, ["a"], {"precision": 0.4, "recall": 0.7})
    d = l.to_dict()
    assert d["strategy"] == "token_frequency" and d["precision"] == 0.4
    assert Label.from_dict(d) == l


def test_ngrams_from_examples_of_the_original_library_without_context_start():
    f = Feature(id=0, dimension=1, activation_count=3)
    for s, pos in enumerate([3, 10, 7]):
        ctx = ["I", "love", "new", "york", "city"] if pos == 3 else ["a", "b", "c", "new", "york", "d", "e"]
        f.top_activations.append(FeatureActivation(0, "york", pos, 1.0, "", ctx, {}))
    labeler = FeatureLabeler(LabelingConfig(strategies=[LabelingStrategy.NGRAM_ANALYSIS]))
    labels = labeler.label_feature(f)
    assert labels[0].text == "ngram:new york" and labels[0].confidence == pytest.approx(1.0)


def test_ngrams_of_an_original_file_loaded_by_feature_dictionary_load(tmp_path):
    # The same examples through FeatureDictionary.load: the engine read the missing
    # context_start as 0, so the n-gram was looked for at index 10 of a 7-token context.
    # The examples keep the metadata the file gave them (none), so they are saved as read.
    import json

    from feature_dictionary import FeatureDictionary

    examples = []
    for pos in (3, 10, 7):
        ctx = ["I", "love", "new", "york", "city"] if pos == 3 else ["a", "b", "c", "new", "york", "d", "e"]
        examples.append({"feature_id": 0, "token": "york", "position": pos, "activation": 1.0, "context": "",
                         "context_tokens": ctx, "metadata": {}})
    original = {"config": {}, "statistics": {}, "feature_set": {
        "layer": 0, "total_tokens_processed": 30, "model_name": "", "sae_name": "", "metadata": {},
        "features": {"0": {"id": 0, "dimension": 1, "bias": 0.0, "activation_count": 3, "mean_activation": 1.0,
                           "max_activation": 1.0, "activation_frequency": 0.1, "top_activations": examples,
                           "labels": [], "description": "", "confidence": 0.0, "feature_type": "moderate",
                           "metadata": {}}}}}
    path = tmp_path / "orig.json"
    path.write_text(json.dumps(original, indent=2))
    d = FeatureDictionary.load(str(path))
    f = d[0]
    assert [a.metadata for a in f.top_activations] == [{}, {}, {}]
    assert [a.to_dict() for a in f.top_activations] == examples
    d.save(str(tmp_path / "again.json"))
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["feature_set"]["features"]["0"]["top_activations"] == examples
    labeler = FeatureLabeler(LabelingConfig(strategies=[LabelingStrategy.NGRAM_ANALYSIS]))
    labels = labeler.label_feature(f)
    assert labels[0].text == "ngram:new york" and labels[0].confidence == pytest.approx(1.0)


def test_numpy_scalars_in_the_labeling_config_save(tmp_path):
    # save() failed with "Object of type int64 is not JSON serializable".
    from feature_dictionary import DictionaryConfig, FeatureDictionary

    cfg = LabelingConfig(min_token_frequency=np.int64(1), max_labels=np.int64(3), min_confidence=np.float32(0.25),
                         ngram_sizes=[np.int64(2)])
    d = FeatureDictionary(2, 4, DictionaryConfig(labeling=cfg))
    d.process(np.array([[1, 0], [0, 2], [3, 0]], np.float32), ["a", "b", "a"])
    d.finalize()
    d.save(str(tmp_path / "d.json"))
    e = FeatureDictionary.load(str(tmp_path / "d.json"))
    assert e.config.labeling.max_labels == 3 and e.config.labeling.min_confidence == 0.25
    assert e.config.labeling.ngram_sizes == [2] and e[0].labels == d[0].labels


def test_invalid_patterns_are_refused_at_once_naming_the_pattern():
    import re

    from conftest import build
    from feature_dictionary import DictionaryConfig, FeatureDictionary

    # A bad pattern in the config used to pass construction and hours of processing, then
    # fail in finalize() with re's bare "missing ), unterminated subpattern at position 0".
    cfg = LabelingConfig(patterns={"email": r"^[\w.]+@[\w.]+$", "broken": "(ab"}, strategies=ALL)
    for make in (lambda: FeatureLabeler(cfg), lambda: FeatureDictionary(4, 2, DictionaryConfig(labeling=cfg))):
        with pytest.raises(re.error) as e:
            make()
        msg = str(e.value)
        assert "patterns['broken']" in msg and "'(ab'" in msg and "missing )" in msg
    labeler = FeatureLabeler()
    with pytest.raises(re.error) as e:
        labeler.add_pattern("bad", "[a-")
    assert "'bad'" in str(e.value) and "'[a-'" in str(e.value) and "unterminated character set" in str(e.value)
    assert "bad" not in labeler.patterns
    acts = np.ones((1, 3, 2), dtype=np.float32)
    d = build(acts, [["a", "(", "b"]])
    d.finalize()
    with pytest.raises(re.error) as e:
        d.search_by_pattern("(")
    assert "search_by_pattern" in str(e.value) and "'('" in str(e.value) and "missing )" in str(e.value)
    assert [f.id for f in d.search_by_pattern(re.escape("("))] == [0, 1]  # special characters, escaped


def test_a_loaded_file_with_patterns_python_cannot_compile_still_loads(tmp_path):
    import json
    import re

    from conftest import build
    from feature_dictionary import FeatureDictionary

    d = build(np.ones((1, 3, 2), dtype=np.float32), [["a", "B", "c"]])
    d.finalize()
    path = tmp_path / "d.json"
    d.save(str(path))
    data = json.loads(path.read_text())
    data["config"]["labeling"]["patterns"] = {"upper": r"\p{Lu}+", "digits": r"^\d+$"}  # featdict's Rust syntax
    path.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match=r"patterns\['upper'\] is not a valid regular expression"):
        loaded = FeatureDictionary.load(str(path))
    assert loaded.config.labeling.patterns == {"upper": r"\p{Lu}+", "digits": r"^\d+$"}  # kept in the config
    assert "upper" not in loaded.labeler.patterns and loaded.labeler.patterns["digits"] == r"^\d+$"
    assert [f.id for f in loaded] == [0, 1]
    loaded.save(str(tmp_path / "again.json"))
    assert json.loads((tmp_path / "again.json").read_text())["config"]["labeling"]["patterns"]["upper"] == r"\p{Lu}+"


def test_a_pattern_assigned_into_the_patterns_dict_is_matched():
    # `patterns` is a public dict; the original matched whatever it held when labeling. A
    # regex compiled before the assignment was used instead.
    def feature(tokens):
        f = Feature(id=0, dimension=8)
        for i, t in enumerate(tokens):
            f.add_activation(FeatureActivation(0, t, i, 1.0, context_tokens=[t]))
        return f

    cfg = LabelingConfig(strategies=[LabelingStrategy.PATTERN_MATCHING], min_confidence=0.2, patterns={"mine": r"^zz$"})
    labeler = FeatureLabeler(cfg)
    words = feature(["abc", "abd", "abe"])
    assert [l.text for l in labeler.label_feature(words)] == []
    labeler.patterns["mine"] = r"^ab"
    assert [l.text for l in labeler.label_feature(words)] == ["pattern:mine"]
    # A built-in, compiled by a first use, then redefined.
    labeler = FeatureLabeler(LabelingConfig(strategies=[LabelingStrategy.PATTERN_MATCHING], min_confidence=0.2))
    assert [l.text for l in labeler.label_feature(feature(["1", "2", "3"]))] == ["pattern:number"]
    labeler.patterns["number"] = r"^[a-z]+$"
    assert "pattern:number" in [l.text for l in labeler.label_feature(words)]
    # A text that is no regex is refused, naming the pattern.
    labeler.patterns["number"] = "("
    with pytest.raises(re.error, match=r"FeatureLabeler.patterns\[.number.\]"):
        labeler.label_feature(words)


def test_the_firing_token_of_an_original_example_is_found_as_the_engine_finds_it():
    # A context clipped at the sequence end: the token repeats at indices 2 and 5. The
    # engine takes 5 (a window clipped at the end puts the token in the second half);
    # Python took 2, nearest the centre, and so read other n-grams than the engine.
    from feature_dictionary.features import _context_start

    ctx = [" x", " y", " on", " a", " b", " on", " c"]
    assert _context_start(20, {}, ctx, " on") == 15
    assert _context_start(20, {"context_start": 18}, ctx, " on") == 18
    assert _context_start(20, {}, ctx, " in") is None
    # Early in a sequence the window is clipped at the start: the token is at its position.
    assert _context_start(1, {}, ["a", "on", "b", "on", "c"], "on") == 0


def test_ngrams_join_wordpiece_continuations_onto_their_word():
    f = Feature(id=0, dimension=1, activation_count=3)
    for pos in (4, 9, 14):
        ctx = ["[CLS]", "they", "were", "play", "##ing"]
        f.top_activations.append(FeatureActivation(0, "##ing", pos, 1.0, "", ctx, {"context_start": pos - 4}))
    labeler = FeatureLabeler(LabelingConfig(strategies=[LabelingStrategy.NGRAM_ANALYSIS]))
    texts = [l.text for l in labeler.label_feature(f)]
    assert "ngram:playing" in texts and "ngram:were playing" in texts, texts
