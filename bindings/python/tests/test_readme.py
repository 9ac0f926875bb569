"""The original README's snippets, run as written (on small synthetic data where the README
leaves the data to the reader). Corrections to the README are marked "README fix"."""

import re
import warnings

import numpy as np
import pytest

from feature_dictionary import MockSAE


@pytest.fixture(scope="module")
def data():
    """activations [seq_len, 4096] from MockSAE and tokens that include "hello"."""
    sae = MockSAE(input_dim=768, num_features=4096, sparsity=0.01, seed=42)
    words = ["hello", "world", "the", "42", "7", "cat", "user@mail.com", "https://x.org"]
    tokens = [words[i % len(words)] for i in range(64)]
    activations = sae.encode(np.zeros((64, 768)))
    activations[:, 42] = [2.0 if t == "hello" else 0.0 for t in tokens]
    activations[:, 43] = [1.0 if t.isdigit() else 0.0 for t in tokens]
    return activations, tokens


@pytest.fixture(scope="module")
def dictionary(data):
    activations, tokens = data
    # --- Quick Start ---
    from feature_dictionary import FeatureDictionary, create_dictionary

    dictionary = create_dictionary(
        num_features=4096,
        feature_dim=768,
        model_name="gpt2",
        sae_name="sae_layer5",
        layer=5,
    )
    dictionary.process(activations, tokens, context="Original text")
    dictionary.finalize()
    return dictionary


def test_quick_start(dictionary, capsys):
    feature = dictionary.get_feature(42)
    print(f"Labels: {feature.labels}")
    print(f"Description: {feature.description}")
    print(f"Top tokens: {feature.get_top_tokens(5)}")
    results = dictionary.search_by_token("hello")
    for feature_id, activation in results:
        print(f"Feature {feature_id}: {activation}")
    out = capsys.readouterr().out
    assert "Labels: ['token:hello'" in out
    assert "Feature 42: 2.0" in out
    assert results[0] == (42, 2.0)
    assert feature.get_top_tokens(5) == [("hello", 2.0)] * 5


def test_extraction_config_and_streaming(data):
    activations, tokens = data
    from feature_dictionary import FeatureExtractor, ExtractionConfig

    config = ExtractionConfig(
        activation_threshold=0.0,
        min_activation=0.01,
        max_examples_per_feature=20,
        context_window=5,
        min_activation_count=1,
        include_dead_features=False,
    )
    extractor = FeatureExtractor(
        num_features=4096,
        feature_dim=768,
        config=config,
    )
    n1 = extractor.process_activations(activations, tokens)
    batch_activations, batch_tokens = [activations[:32], activations[32:]], [tokens[:32], tokens[32:]]
    n2 = extractor.process_batch(batch_activations, batch_tokens)
    feature_set = extractor.finalize()
    assert n1 == n2 == int((activations >= 0.01).sum())
    assert feature_set.total_tokens_processed == 128
    assert feature_set[42].activation_count == 2 * tokens.count("hello")

    # --- Streaming Processing ---
    sae = MockSAE(input_dim=768, num_features=4096, sparsity=0.01, seed=1)
    data_loader = [type("Batch", (), {"hidden_states": np.zeros((16, 768)), "tokens": tokens[:16]})] * 3

    def activation_stream():
        for batch in data_loader:
            sae_activations = sae.encode(batch.hidden_states)
            yield sae_activations, batch.tokens

    counts = []
    for count in extractor.stream_activations(activation_stream()):
        print(f"Recorded {count} activations")
        counts.append(count)
    assert counts == [16 * 40] * 3  # 40 features per token at sparsity 0.01


def test_labeling(dictionary):
    from feature_dictionary import FeatureLabeler, LabelingConfig, LabelingStrategy

    config = LabelingConfig(
        strategies=[
            LabelingStrategy.TOKEN_FREQUENCY,
            LabelingStrategy.NGRAM_ANALYSIS,
            LabelingStrategy.PATTERN_MATCHING,
        ],
        min_token_frequency=3,
        max_labels=5,
        min_confidence=0.3,
        patterns={
            "email": r"^[\w.]+@[\w.]+$",
            "url": r"^https?://",
        },
    )
    labeler = FeatureLabeler(config)
    labeler.set_corpus(dictionary.features)  # README fix: precision needs the corpus counts
    feature = dictionary.get_feature(43)
    labels = labeler.label_feature(feature)
    for label in labels:
        print(f"{label.text}: {label.confidence:.2f}")
    assert labels[0].text == "pattern:number" and labels[0].confidence == pytest.approx(1.0)
    description = labeler.generate_description(feature)
    print(description)
    assert "pattern:number" in description

    # --- Built-in Patterns ---
    patterns = {
        "number": r"^\d+$",
        "punctuation": r"^[^\w\s]+$",
        "uppercase": r"^[A-Z]+$",
        "code_keyword": r"^(if|else|for|while|def|class)$",
        "whitespace": r"^\s+$",
        "article": r"^(a|an|the)$",
        "pronoun": r"^(i|you|he|she|it|we|they)$",
        "preposition": r"^(in|on|at|to|for|with)$",
    }
    assert set(patterns) <= set(labeler.patterns) and {"email", "url"} <= set(labeler.patterns)
    for name in ("number", "punctuation", "uppercase", "whitespace"):
        assert labeler.patterns[name] == patterns[name]


def test_analysis(dictionary):
    from feature_dictionary import FeatureAnalyzer

    feature_set, feature = dictionary.features, dictionary.get_feature(42)
    analyzer = FeatureAnalyzer(feature_set)
    stats = analyzer.compute_activation_stats(feature)
    print(f"Mean: {stats.mean_activation}")
    print(f"Std: {stats.std_activation}")
    print(f"Entropy: {stats.token_entropy}")
    assert (stats.mean_activation, stats.std_activation, stats.token_entropy) == (2.0, 0.0, 0.0)
    with warnings.catch_warnings():  # 4,096 features: co-activation is not tracked by default
        warnings.simplefilter("ignore")
        correlated = analyzer.find_correlated_features(feature_id=42)
    for fid, correlation in correlated:
        print(f"Feature {fid}: {correlation:.2f}")
    polysemantic = analyzer.find_polysemantic_features(
        min_clusters=2,
        min_cluster_size=3,
    )
    dead = analyzer.get_dead_features()
    sparse = analyzer.get_ultra_sparse_features()
    dense = analyzer.get_dense_features()
    assert 42 in dense and not sparse
    assert all(dictionary.get_feature(i) is None for i in dead)  # dropped by finalize, still listed
    importance = analyzer.compute_feature_importance()
    for fid, score in importance[:10]:
        print(f"Feature {fid}: {score:.3f}")
    assert importance[0][1] >= importance[9][1]


def test_feature_types():
    from feature_dictionary import Feature, FeatureType

    # The seed API's members and string values, and nothing else.
    assert {t.name: t.value for t in FeatureType} == {
        "DEAD": "dead", "ULTRA_SPARSE": "ultra_sparse", "SPARSE": "sparse", "MODERATE": "moderate",
        "DENSE": "dense"}
    assert FeatureType("ultra_sparse") is FeatureType.ULTRA_SPARSE
    # Thresholds on frequency = count / tokens: ultra_sparse < 0.01 %, sparse < 1 %, moderate
    # < 10 %, dense >= 10 %; over 20,000 tokens 2, 200 and 2,000 firings sit exactly on them.
    expect = {0: "dead", 1: "ultra_sparse", 2: "sparse", 199: "sparse", 200: "moderate",
              1999: "moderate", 2000: "dense", 20000: "dense"}
    for count, value in expect.items():
        f = Feature(0, 4)
        f.activation_count = count
        assert f.classify_type(20000) is FeatureType(value), count
        assert (f.feature_type, f.activation_frequency) == (FeatureType(value), count / 20000)
    # The engine classifies the same way: feature j fires on the first `counts[j]` tokens.
    from conftest import build

    counts = list(expect)
    acts = np.zeros((400, 50, len(counts)), dtype=np.float32)
    flat = acts.reshape(-1, len(counts))
    for j, n in enumerate(counts):
        flat[:n, j] = 1.0
    d = build(acts, [["x"] * 50] * 400)
    d.finalize()
    assert d.features.total_tokens_processed == 20000
    for j, n in enumerate(counts):
        f = d.get_feature(j)
        if n == 0:
            assert f is None or f.feature_type is FeatureType.DEAD
        else:
            assert f.activation_count == n and f.feature_type is FeatureType(expect[n]), n


def test_dictionary_api_and_serialization(dictionary, tmp_path, monkeypatch):
    dictionary.search_by_token("hello")
    dictionary.search_by_label("number")
    assert [f.id for f in dictionary.search_by_pattern(r"^\d+$")][:1] == [43]
    top = dictionary.get_top_features(10, by="activation_count")
    top = dictionary.get_top_features(10, by="max_activation")
    assert top[0].max_activation == max(f.max_activation for f in dictionary)
    top = dictionary.get_top_features(10, by="frequency")
    similar = dictionary.find_similar(feature_id=42, top_k=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        correlated = dictionary.get_correlated(feature_id=42)
    stats = dictionary.get_statistics()
    print(f"Total: {stats['total_features']}")
    print(f"Active: {stats['active_features']}")
    print(f"Labeled: {stats['labeled_features']}")
    assert stats["labeled_features"] >= 2

    # --- Serialization ---
    from feature_dictionary import FeatureDictionary

    monkeypatch.chdir(tmp_path)
    dictionary.save("features.json")
    loaded = FeatureDictionary.load("features.json")
    assert loaded.config.model_name == "gpt2" and loaded.num_features == 4096
    export = loaded.export_feature(42)
    assert export["feature"]["labels"][0] == "token:hello"
    export = loaded.export_all()
    assert export["feature_set"]["sae_name"] == "sae_layer5"


def test_integration_with_an_sae(data):
    activations, tokens = data
    from feature_dictionary import FeatureDictionary

    sae = type("SAE", (), {"num_features": 4096, "d_in": 768,
                           "encode": lambda self, h: MockSAE(768, 4096, 0.01, seed=3).encode(h)})()
    dictionary = FeatureDictionary(
        num_features=sae.num_features,
        feature_dim=sae.d_in,
    )
    dataloader = [np.zeros((8, 768))] * 2
    for hidden_states in dataloader:
        sae_activations = sae.encode(hidden_states)
        dictionary.process(
            sae_activations.tolist(),
            tokens[:8],  # README fix: one token string per activation row
        )
    dictionary.finalize()
    assert dictionary.features.total_tokens_processed == 16
