"""feature_dictionary: exact, searchable, labeled dictionaries of SAE features.

The original library's API (``Feature``, ``FeatureDictionary``, ``create_dictionary``, …) on a
compiled Rust engine: statistics over every token in one streaming pass, bounded memory,
mergeable shards.
"""

from .analysis import ActivationStats, FeatureAnalyzer
from .dictionary import DictionaryConfig, FeatureDictionary, create_dictionary
from .extraction import CallInterrupted, ExtractionConfig, FeatureExtractor, MockSAE
from .features import Feature, FeatureActivation, FeatureSet, FeatureType
from .labeling import FeatureLabeler, Label, LabelingConfig, LabelingStrategy

__version__ = "0.1.0"

__all__ = [
    "Feature",
    "FeatureSet",
    "FeatureActivation",
    "FeatureType",
    "FeatureExtractor",
    "ExtractionConfig",
    "MockSAE",
    "FeatureLabeler",
    "LabelingConfig",
    "Label",
    "LabelingStrategy",
    "FeatureAnalyzer",
    "ActivationStats",
    "FeatureDictionary",
    "DictionaryConfig",
    "create_dictionary",
    "CallInterrupted",
]
