"""The high-level API: ``FeatureDictionary`` ties extraction, labeling and analysis together."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

from . import _engine
from .analysis import ActivationStats, FeatureAnalyzer
from .extraction import ExtractionConfig, FeatureExtractor, _check_count, no_gc, search_token
from .features import json_text, top_token_entries
from .features import Feature, FeatureSet, FeatureType
from .labeling import FeatureLabeler, LabelingConfig, compile_pattern


@dataclass
class DictionaryConfig:
    """Dictionary settings (``to_dict`` is the ``"config"`` object of a saved file)."""

    extraction: ExtractionConfig = field(default_factory=ExtractionConfig)
    labeling: LabelingConfig = field(default_factory=LabelingConfig)
    name: str = "feature_dictionary"
    model_name: str = ""
    sae_name: str = ""
    layer: int = 0
    auto_save: bool = False
    save_path: Optional[str] = None

    def to_dict(self) -> dict:
        return {
            "extraction": self.extraction.to_dict(),
            "labeling": self.labeling.to_dict(),
            "name": self.name,
            "model_name": self.model_name,
            "sae_name": self.sae_name,
            "layer": self.layer,
            "auto_save": self.auto_save,
            "save_path": self.save_path,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "DictionaryConfig":
        return cls(
            extraction=ExtractionConfig.from_dict(data.get("extraction", {})),
            labeling=LabelingConfig.from_dict(data.get("labeling", {})),
            name=data.get("name", "feature_dictionary"),
            model_name=data.get("model_name", ""),
            sae_name=data.get("sae_name", ""),
            layer=data.get("layer", 0),
            auto_save=data.get("auto_save", False),
            save_path=data.get("save_path"),
        )


_TOP_BY = {
    "activation_count": lambda f: f.activation_count,
    "max_activation": lambda f: f.max_activation,
    "frequency": lambda f: f.activation_frequency,
}


class FeatureDictionary:
    """Extract, label, analyze, search and save the features of one SAE.

    ``sequence_offset`` numbers this dictionary's sequences from that index, so shards
    built in parallel (``multiprocessing``, Ray, …) and combined with ``merge`` give
    exactly the dictionary of one build over all shards.
    """

    def __init__(self, num_features: int, feature_dim: int, config: Optional[DictionaryConfig] = None, sequence_offset: int = 0):
        # int() would truncate 8.7 to 8 without a word.
        _check_count(num_features, "num_features")
        _check_count(feature_dim, "feature_dim")
        self.num_features = int(num_features)
        self.feature_dim = int(feature_dim)
        if config is not None and not isinstance(config, DictionaryConfig):
            hint = (" (an ExtractionConfig goes in DictionaryConfig(extraction=...))"
                    if isinstance(config, ExtractionConfig) else "")
            raise TypeError(f"config must be a DictionaryConfig, got {type(config).__name__}{hint}")
        self.config = config or DictionaryConfig()
        self.extractor = FeatureExtractor(
            num_features=self.num_features,
            feature_dim=self.feature_dim,
            layer=self.config.layer,
            config=self.config.extraction,
            sequence_offset=sequence_offset,
        )
        self.extractor.model_name = self.config.model_name
        self.extractor.sae_name = self.config.sae_name
        self.labeler = FeatureLabeler(config=self.config.labeling)
        self._analyzer: Optional[FeatureAnalyzer] = None
        self._finalized = False
        self._loaded_from: Optional[str] = None

    def __repr__(self) -> str:
        state = "finalized" if self._finalized else "accumulating"
        source = f", loaded from {self._loaded_from!r}" if self._loaded_from else ""
        return (
            f"<FeatureDictionary: {self.num_features} features of dimension {self.feature_dim}, "
            f"{self.features.total_tokens_processed} tokens, {state}{source}>"
        )

    # -- state ---------------------------------------------------------------------------
    @property
    def features(self) -> FeatureSet:
        return self.extractor.features

    @property
    def analyzer(self) -> FeatureAnalyzer:
        if self._analyzer is None or self._analyzer.feature_set is not self.features:
            self._analyzer = FeatureAnalyzer(self.features)
        return self._analyzer

    def _check_live(self, method: str) -> None:
        if self._loaded_from is not None:
            raise RuntimeError(
                f"this dictionary was loaded from {self._loaded_from}, which holds finalized "
                f"statistics only (it is already finalized); {method}() needs the accumulator state. Build a new dictionary "
                "over the new activations (or process all shards with sequence_offset and merge "
                "them before finalize)."
            )

    # -- processing ----------------------------------------------------------------------
    def process(self, activations: Any, tokens: List[str], context: str = "") -> int:
        """Processes one sequence ``[seq_len, num_features]`` (numpy float32/float16 without
        copying, any array-like or nested lists); returns the firings recorded."""
        self._check_live("process")
        self._finalized = False
        return self.extractor.process_activations(activations, tokens, context)

    def process_batch(self, batch_activations: Any, batch_tokens: List[List[str]], batch_contexts: Optional[List[str]] = None) -> int:
        """Processes ``[batch, seq_len, F]`` or a list of ``[seq_len_i, F]`` sequences."""
        self._check_live("process_batch")
        self._finalized = False
        return self.extractor.process_batch(batch_activations, batch_tokens, batch_contexts)

    def stream_activations(self, activation_stream):
        """Processes ``(activations, tokens)`` items; yields the firings of each."""
        self._check_live("stream_activations")
        self._finalized = False
        yield from self.extractor.stream_activations(activation_stream)

    def add_callback(self, callback) -> None:
        """See ``FeatureExtractor.add_callback`` (slow: Python per firing)."""
        self.extractor.add_callback(callback)

    def merge(self, other: "FeatureDictionary") -> int:
        """Folds in a dictionary built on another shard (before either is finalized, or
        after: finalize is non-destructive). Returns the shift applied to ``other``'s
        sequence indices (0 when it was built with a disjoint ``sequence_offset``)."""
        if not isinstance(other, FeatureDictionary):
            raise TypeError(
                f"merge() takes a FeatureDictionary, got {type(other).__name__} "
                "(to fold in a FeatureExtractor, merge it into this dictionary's .extractor)"
            )
        self._check_live("merge")
        other._check_live("merge")
        shift = self.extractor.merge(other.extractor)
        self._finalized = False
        return shift

    def finalize(self) -> None:
        """Computes statistics over all tokens, labels every feature and writes its
        description. Can be called again after more processing or merging.

        On a loaded dictionary (whose file holds finalized statistics, not the accumulator)
        it labels and describes the loaded features again with ``self.labeler``, as the
        original's ``finalize`` did after ``load``."""
        if self._loaded_from is not None:
            fs, labeled = self.features, False
        else:
            fs, labeled = self.extractor._finalize(labeler=self.labeler)
        # A loaded file, or a labeler the engine cannot stand in for: label in Python.
        if not labeled:
            with no_gc():
                self.labeler.label_features(fs)
                for f in fs:
                    self.labeler.generate_description(f)
        self._finalized = True
        self._analyzer = FeatureAnalyzer(fs)
        if self.config.auto_save and self.config.save_path:
            self.save(self.config.save_path)

    # -- queries -------------------------------------------------------------------------
    def get_feature(self, feature_id: int) -> Optional[Feature]:
        return self.features.get_feature(feature_id)

    def search_by_token(self, token: str, min_activation: float = 0.0) -> List[Tuple[int, float]]:
        """``(feature_id, activation)`` of features that fired on ``token`` anywhere in the
        corpus (surrounding whitespace ignored, but a token of whitespace only is matched
        as itself), highest stored activation first."""
        return search_token(self.features, token, min_activation)

    def search_by_label(self, label: str) -> List[Feature]:
        """Features with a label containing ``label`` (case-insensitive)."""
        needle = label.lower()
        return [f for f in self.features if any(needle in l.lower() for l in f.labels)]

    def search_by_pattern(self, pattern: str) -> List[Feature]:
        """Features that fired on tokens matching ``pattern`` (``re.search``, case-sensitive;
        use ``(?i)`` to ignore case), most firings on matching tokens first."""
        rx = compile_pattern(pattern, "search_by_pattern: the pattern")
        scored = []
        for f in self.features:
            entries = top_token_entries(f)
            if entries:
                n = sum(firings for tok, firings, _ in entries if rx.search(tok.strip() or tok))
            else:
                n = sum(1 for a in f.top_activations if rx.search(a.token.strip() or a.token))
            if n:
                scored.append((n, f))
        scored.sort(key=lambda x: (-x[0], x[1].id))
        return [f for _, f in scored]

    def get_top_features(self, n: int = 10, by: str = "activation_count") -> List[Feature]:
        """The ``n`` best features by ``activation_count``, ``max_activation`` or
        ``frequency`` (ties by id)."""
        if by not in _TOP_BY:
            raise ValueError(f"unknown metric {by!r}; expected activation_count, max_activation or frequency")
        _check_count(n, "n")
        key = _TOP_BY[by]
        return sorted(self.features, key=lambda f: (-key(f), f.id))[:n]

    def get_features_by_type(self, feature_type: Union[FeatureType, str]) -> List[Feature]:
        """Features of this type (a ``FeatureType`` or its value, e.g. ``"dense"``); none for
        a value that is no type, as in the original."""
        try:
            feature_type = FeatureType(feature_type)
        except ValueError:
            return []
        return self.features.get_features_by_type(feature_type)

    def find_similar(self, feature_id: int, top_k: int = 5) -> List[Tuple[int, float]]:
        """Features with the most similar firing-token distributions (cosine over all tokens)."""
        _check_count(top_k, "top_k")
        f = self.get_feature(feature_id)
        if f is None:
            return []
        return self.labeler.find_similar_features(f, self.features, min_overlap=0.1)[:top_k]

    def get_correlated(self, feature_id: int, min_correlation: float = 0.3) -> List[Tuple[int, float]]:
        """Features whose activations correlate (Pearson over all tokens) with this one."""
        return self.analyzer.find_correlated_features(feature_id, min_correlation)

    def get_statistics(self) -> Dict[str, Any]:
        return self.analyzer.get_summary()

    def get_feature_stats(self, feature_id: int) -> ActivationStats:
        f = self.get_feature(feature_id)
        if f is None:
            return ActivationStats(feature_id=feature_id)
        return self.analyzer.compute_activation_stats(f)

    def export_feature(self, feature_id: int) -> Dict[str, Any]:
        f = self.get_feature(feature_id)
        if f is None:
            return {"error": "Feature not found"}
        return {"feature": f.to_dict(), "stats": self.get_feature_stats(feature_id).to_dict()}

    def _config_dict(self) -> dict:
        d = self.config.to_dict()
        d["num_features"] = self.num_features
        d["feature_dim"] = self.feature_dim
        return d

    def export_all(self) -> Dict[str, Any]:
        return {
            "config": self._config_dict(),
            "feature_set": self.features.to_dict(),
            "statistics": self.get_statistics(),
        }

    # -- files ---------------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Writes the dictionary, validated and written atomically by the engine: a path
        ending in ``.json`` gets the original library's JSON (which its
        ``FeatureDictionary.load`` reads), one ending in ``.fdict`` the native SQLite file of
        ``featdict`` (searchable without loading everything)."""
        fs = self.features
        fs.model_name = self.config.model_name
        fs.sae_name = self.config.sae_name
        fs.layer = self.config.layer
        # As the original's save wrote export_all(), the file's statistics are
        # get_statistics(); first, as it classifies the features' types again (in place).
        statistics = self.get_statistics()
        # export_all() without converting the examples and metadata Python never read: the
        # engine takes those from its own copy (``sources``).
        features, sources = {}, {}
        for k in sorted(fs.features):
            d, src = fs.features[k]._to_dict_parts(keep_lazy=True)
            features[str(k)] = d
            if src is not None:
                sources[str(k)] = src
        data = {
            "config": self._config_dict(),
            "feature_set": {
                "layer": fs.layer,
                "features": features,
                "total_tokens_processed": fs.total_tokens_processed,
                "model_name": fs.model_name,
                "sae_name": fs.sae_name,
                "metadata": fs.metadata,
            },
            "statistics": statistics,
        }
        # Neither format stores NaN or infinity (the .fdict keeps each feature as JSON too).
        text = json_text(
            data, path, "a dictionary holds no NaN or infinity (JSON, the .fdict's feature bodies included, has none)"
        )
        _engine.save(text, os.fspath(path), sources)

    @classmethod
    def load(cls, path: str) -> "FeatureDictionary":
        """Reads a dictionary saved by us (JSON or ``.fdict``), by ``featdict``, or by the
        original library (JSON); the format is told by content. The config (names,
        ``num_features``, settings) comes back; the dictionary is finalized and read-only
        for processing (its accumulator state is not in the file)."""
        fin = _engine.load(os.fspath(path))
        fs = FeatureSet._from_engine(fin)
        with no_gc():
            fs._add_engine_features(fin)
        cfg_data = fin.info()["config"] or {}
        config = DictionaryConfig.from_dict(cfg_data)
        # A file labeled by featdict may hold patterns in Rust regex syntax that Python's re
        # rejects (``\p{Lu}``): they stay in the config (and in files saved from it), but
        # this dictionary's labeler goes without them rather than the load failing.
        labeling = config.labeling
        usable = {}
        for name, p in labeling.patterns.items():
            try:
                compile_pattern(p, f"LabelingConfig.patterns[{name!r}]")
                usable[name] = p
            except re.error as e:
                warnings.warn(f"{os.fspath(path)}: {e}; this dictionary's FeatureLabeler leaves it out", stacklevel=2)
        if len(usable) != len(labeling.patterns):
            config = dataclasses.replace(config, labeling=dataclasses.replace(labeling, patterns=usable))
        num = cfg_data.get("num_features") or fs.metadata.get("num_features") or (max(fs.features) + 1 if fs.features else 0)
        dim = cfg_data.get("feature_dim") or next((f.dimension for f in fs), 0)
        # A loaded dictionary never processes (see _check_live): its accumulator is made for
        # one feature, not num_features (gigabytes for millions of features, and an aborted
        # allocation for a damaged file's absurd count).
        d = cls(num_features=1, feature_dim=dim, config=config)
        d.num_features = num
        d.extractor.num_features = num
        d.extractor.feature_set = fs
        d._finalized = True
        d._loaded_from = os.fspath(path)
        d.extractor._loaded_from = d._loaded_from
        d._analyzer = FeatureAnalyzer(fs)
        if config.labeling is not labeling:
            d.config = dataclasses.replace(config, labeling=labeling)
        return d

    # -- container -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, feature_id: int) -> Feature:
        f = self.get_feature(feature_id)
        if f is None:
            # The original's message; `d["0"]` must not read as if feature 0 were missing.
            raise KeyError(f"Feature {feature_id!r} not found" if isinstance(feature_id, str) else f"Feature {feature_id} not found")
        return f

    def __iter__(self) -> Iterator[Feature]:
        return iter(self.features)


def create_dictionary(num_features: int, feature_dim: int, model_name: str = "", sae_name: str = "", layer: int = 0) -> FeatureDictionary:
    """A dictionary with default settings for the named model/SAE/layer."""
    return FeatureDictionary(num_features, feature_dim, DictionaryConfig(model_name=model_name, sae_name=sae_name, layer=layer))
