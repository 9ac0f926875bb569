"""Every name of the original API is importable from the package and its submodules."""

import importlib

import feature_dictionary

NAMES = {
    "features": ["Feature", "FeatureSet", "FeatureActivation", "FeatureType"],
    "extraction": ["FeatureExtractor", "ExtractionConfig", "MockSAE"],
    "labeling": ["FeatureLabeler", "LabelingConfig", "Label", "LabelingStrategy"],
    "analysis": ["FeatureAnalyzer", "ActivationStats"],
    "dictionary": ["FeatureDictionary", "DictionaryConfig", "create_dictionary"],
}


def test_every_name_is_exported_from_the_package_and_its_module():
    for module, names in NAMES.items():
        mod = importlib.import_module(f"feature_dictionary.{module}")
        for name in names:
            assert getattr(feature_dictionary, name) is getattr(mod, name), name
            assert name in feature_dictionary.__all__


def test_enum_values_match_the_original():
    from feature_dictionary import FeatureType, LabelingStrategy

    assert {t.value for t in FeatureType} == {"dead", "ultra_sparse", "sparse", "moderate", "dense"}
    assert {s.value for s in LabelingStrategy} == {
        "token_frequency", "ngram_analysis", "pattern_matching", "semantic_clustering", "manual"}


def test_config_defaults_match_the_original():
    from feature_dictionary import DictionaryConfig, ExtractionConfig, LabelingConfig, LabelingStrategy

    e = ExtractionConfig()
    assert (e.activation_threshold, e.min_activation, e.max_examples_per_feature, e.context_window,
            e.batch_size, e.min_activation_count, e.include_dead_features, e.collect_context,
            e.collect_positions) == (0.0, 0.01, 20, 5, 32, 1, False, True, True)
    assert set(e.to_dict()) >= {"activation_threshold", "min_activation", "max_examples_per_feature",
                                "context_window", "batch_size", "min_activation_count",
                                "include_dead_features", "collect_context", "collect_positions"}
    l = LabelingConfig()
    assert (l.min_token_frequency, l.max_labels, l.patterns, l.min_confidence, l.ngram_sizes) == (3, 5, {}, 0.3, [1, 2, 3])
    assert l.strategies == [LabelingStrategy.TOKEN_FREQUENCY, LabelingStrategy.NGRAM_ANALYSIS]
    assert l.to_dict()["strategies"] == ["token_frequency", "ngram_analysis"]
    d = DictionaryConfig()
    assert (d.name, d.model_name, d.sae_name, d.layer, d.auto_save, d.save_path) == ("feature_dictionary", "", "", 0, False, None)
    assert set(d.to_dict()) == {"extraction", "labeling", "name", "model_name", "sae_name", "layer", "auto_save", "save_path"}
