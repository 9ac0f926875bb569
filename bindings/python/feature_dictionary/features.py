"""Core data structures: features, their example activations and feature sets.

These are plain Python objects holding the engine's finalized data in the shape of the
original library's ``to_dict``, so ``to_dict``/``from_dict`` round-trip exactly. Everything
the original did not measure (std, min, quantiles, positions, per-token firing counts, …)
lives in ``Feature.metadata`` under the keys the Rust engine writes.

A feature that comes from the engine (``finalize()``, ``FeatureDictionary.load``) gets its
scalar fields at once; its ``top_activations`` and ``metadata`` — most of the data — are
converted from the engine's copy the first time they are read, then are ordinary attributes.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import numbers
import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, Iterator, List, Optional, Tuple


class FeatureType(Enum):
    """Frequency class of a feature (frequency = activation_count / tokens processed)."""

    SPARSE = "sparse"  # < 1 %
    MODERATE = "moderate"  # < 10 %
    DENSE = "dense"  # >= 10 %
    DEAD = "dead"  # never fired
    ULTRA_SPARSE = "ultra_sparse"  # < 0.01 %

    @staticmethod
    def classify(activation_count: int, total_tokens: int) -> "FeatureType":
        """The class of a feature that fired ``activation_count`` times in ``total_tokens``."""
        if total_tokens <= 0 or activation_count <= 0:
            return FeatureType.DEAD
        freq = activation_count / total_tokens
        if freq < 1e-4:
            return FeatureType.ULTRA_SPARSE
        if freq < 0.01:
            return FeatureType.SPARSE
        if freq < 0.1:
            return FeatureType.MODERATE
        return FeatureType.DENSE


_TYPES_BY_VALUE = {t.value: t for t in FeatureType}


@contextlib.contextmanager
def no_gc():
    """Pauses the cyclic garbage collector: building millions of small objects at once
    (a finalized dictionary) otherwise triggers it over and over for nothing."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass
class FeatureActivation:
    """One example: a token where a feature fired, with its context.

    ``metadata`` holds ``sequence`` (index of the sequence), ``context_start`` (position of
    ``context_tokens[0]``) and ``context_activations`` (this feature's value on each context
    token) when the example comes from the engine.
    """

    feature_id: int
    token: str
    position: int
    activation: float
    context: str = ""
    context_tokens: List[str] = field(default_factory=list)
    metadata: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "feature_id": self.feature_id,
            "token": self.token,
            "position": self.position,
            "activation": self.activation,
            "context": self.context,
            "context_tokens": list(self.context_tokens),
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureActivation":
        return cls(
            feature_id=data["feature_id"],
            token=data["token"],
            position=data["position"],
            activation=data["activation"],
            context=data.get("context", ""),
            context_tokens=list(data.get("context_tokens", [])),
            metadata=dict(data.get("metadata", {})),
        )


def _join_tokens(tokens: List[str], carry_spaces: bool) -> str:
    """Context text as the engine joins it: concatenated when tokens carry their own spaces,
    otherwise words joined by a space, a WordPiece continuation (``##ing``) joining the word
    before it without its marker."""
    if carry_spaces:
        return "".join(tokens)
    out: List[str] = []
    for i, t in enumerate(tokens):
        if i > 0 and t.startswith("##") and len(t) > 2:
            out[-1] += t[2:]
        else:
            out.append(t)
    return " ".join(out)


def _context_start(position: int, metadata: Dict[str, Any], context: List[str], token: str) -> Optional[int]:
    """Position of ``context[0]``: the example's ``context_start`` when stored; for an example
    of the original library, which stores none, the start the engine infers (so that Python
    and the engine read the same token): among the occurrences of the token at indices up to
    ``position``, those the original's window could have put it at (``position`` itself, or
    in the context's second half, where a window clipped at the sequence end puts it) are
    preferred, the one nearest ``min(position, len(context) // 2)`` taken, the first on a
    tie. ``None`` when the context does not hold the token."""
    start = metadata.get("context_start")
    if start is not None:
        return start
    hits = [k for k, t in enumerate(context[: position + 1]) if t == token]
    if not hits:
        return None
    centre = min(position, len(context) // 2)
    windowed = [k for k in hits if k == position or 2 * k + 1 >= len(context)]
    return position - min(windowed or hits, key=lambda k: abs(k - centre))


def _short_text(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short_list(items: List[str], limit: int = 5) -> str:
    """The repr of the first ``limit`` of ``items`` and how many more there are."""
    shown = ", ".join(repr(_short_text(i, 40)) for i in items[:limit])
    more = f", … {len(items) - limit} more" if len(items) > limit else ""
    return f"[{shown}{more}]"


#: Fields of an engine-made ``Feature`` that are converted on first access.
_LAZY_FIELDS = ("top_activations", "metadata")


def _rank_key(a: FeatureActivation):
    """Examples rank by activation (desc), then sequence, then position (as the engine)."""
    return (-a.activation, a.metadata.get("sequence", 0), a.position)


@dataclass(repr=False)
class Feature:
    """One SAE feature with statistics over every token processed.

    ``activation_count``, ``mean_activation``, ``max_activation`` and
    ``activation_frequency`` are exact over all tokens; ``top_activations`` holds the
    ``max_examples`` highest-activating examples, best first.
    """

    id: int
    dimension: int
    decoder_weight: Optional[List[float]] = None
    encoder_weight: Optional[List[float]] = None
    bias: float = 0.0
    activation_count: int = 0
    mean_activation: float = 0.0
    max_activation: float = 0.0
    activation_frequency: float = 0.0
    top_activations: List[FeatureActivation] = field(default_factory=list)
    labels: List[str] = field(default_factory=list)
    description: str = ""
    confidence: float = 0.0
    feature_type: FeatureType = FeatureType.DEAD
    metadata: Dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: the lazy fields of an engine-made feature,
        # whose ``_src`` is (engine dictionary, feature id).
        if name in _LAZY_FIELDS:
            src = self.__dict__.get("_src")
            if src is not None:
                fin, fid = src
                # Thousands of containers at once, all kept: collecting midway finds nothing.
                with no_gc():
                    if name == "metadata":
                        value = fin.metadata(fid)
                    else:
                        value = fin.top_activations(fid, FeatureActivation)
                d = self.__dict__
                value = d.setdefault(name, value)  # another thread may have been first
                if all(k in d for k in _LAZY_FIELDS):
                    d.pop("_src", None)  # fully converted: let the engine's copy go
                return value
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        # The generated repr printed every example, context and metadata entry (tens of KB
        # per feature, more with decoder weights) and converted the lazy fields to do it.
        parts = [
            f"id={self.id}",
            f"feature_type={self.feature_type.value}",
            f"activation_count={self.activation_count}",
            f"activation_frequency={self.activation_frequency:.4g}",
            f"mean_activation={self.mean_activation:.4g}",
            f"max_activation={self.max_activation:.4g}",
            f"labels={_short_list(self.labels)}",
        ]
        if self.description:
            parts.append(f"description={_short_text(self.description)!r}")
        if "top_activations" in self.__dict__:
            parts.append(f"top_activations=<{len(self.top_activations)} examples>")
        return f"Feature({', '.join(parts)})"

    def __getstate__(self) -> dict:
        # Pickle and copy the converted fields, never the engine handle.
        for name in _LAZY_FIELDS:
            getattr(self, name)
        return dict(self.__dict__)

    def add_activation(self, activation: FeatureActivation, max_examples: int = 20) -> None:
        """Records one firing by hand (count, running mean, max, top examples).

        Bulk data goes through ``FeatureExtractor``; this is for hand-made features. The
        example list stays sorted with one insertion (no re-sort per activation). A feature
        still typed DEAD (the default of one that never fired) becomes SPARSE, the original's
        default, until ``classify_type`` gives it its class from the token count.
        """
        self.activation_count += 1
        if self.feature_type == FeatureType.DEAD:
            self.feature_type = FeatureType.SPARSE
        self.mean_activation += (activation.activation - self.mean_activation) / self.activation_count
        if self.activation_count == 1 or activation.activation > self.max_activation:
            self.max_activation = activation.activation
        key = _rank_key(activation)
        lo, hi = 0, len(self.top_activations)
        while lo < hi:
            mid = (lo + hi) // 2
            if _rank_key(self.top_activations[mid]) <= key:
                lo = mid + 1
            else:
                hi = mid
        if lo < max_examples:
            self.top_activations.insert(lo, activation)
        # Always: a smaller max_examples than an earlier call's trims the list, as the
        # original's sort-then-slice did.
        del self.top_activations[max_examples:]

    def classify_type(self, total_tokens: int) -> FeatureType:
        """Sets and returns the frequency class (and ``activation_frequency``)."""
        self.activation_frequency = self.activation_count / total_tokens if total_tokens > 0 else 0.0
        self.feature_type = FeatureType.classify(self.activation_count, total_tokens)
        return self.feature_type

    def get_top_tokens(self, n: int = 10) -> List[Tuple[str, float]]:
        """Tokens of the ``n`` highest-activating examples, with their activations."""
        # numbers.Integral: numpy integers too, as slicing (the original's `[:n]`) accepts.
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        return [(a.token, a.activation) for a in self.top_activations[: int(n)]]

    def to_dict(self) -> dict:
        return self._to_dict_parts(keep_lazy=False)[0]

    def _to_dict_parts(self, keep_lazy: bool) -> Tuple[dict, Any]:
        """``to_dict()`` and the engine source ``(dictionary, id)`` of the lazy fields. With
        ``keep_lazy``, fields never converted are left out (the source still holds them): what
        ``FeatureDictionary.save`` sends to the engine without converting them first."""
        src = self.__dict__.get("_src") if keep_lazy else None
        d = {
            "id": self.id,
            "dimension": self.dimension,
            "bias": self.bias,
            "activation_count": self.activation_count,
            "mean_activation": self.mean_activation,
            "max_activation": self.max_activation,
            "activation_frequency": self.activation_frequency,
        }
        if src is None or "top_activations" in self.__dict__:
            d["top_activations"] = [a.to_dict() for a in self.top_activations]
        d["labels"] = list(self.labels)
        d["description"] = self.description
        d["confidence"] = self.confidence
        d["feature_type"] = self.feature_type.value
        if src is None or "metadata" in self.__dict__:
            d["metadata"] = self.metadata
        return d, src

    @classmethod
    def from_dict(cls, data: dict) -> "Feature":
        return cls(
            id=int(data["id"]),
            dimension=data.get("dimension", 0),
            bias=data.get("bias", 0.0),
            activation_count=data.get("activation_count", 0),
            mean_activation=data.get("mean_activation", 0.0),
            max_activation=data.get("max_activation", 0.0),
            activation_frequency=data.get("activation_frequency", 0.0),
            top_activations=[FeatureActivation.from_dict(a) for a in data.get("top_activations", [])],
            labels=list(data.get("labels", [])),
            description=data.get("description", ""),
            confidence=data.get("confidence", 0.0),
            feature_type=FeatureType(data.get("feature_type", "sparse")),
            metadata=dict(data.get("metadata", {})),
        )


@dataclass(repr=False)
class FeatureSet:
    """All features of one SAE layer, by id."""

    layer: int = 0
    features: Dict[int, Feature] = field(default_factory=dict)
    total_tokens_processed: int = 0
    model_name: str = ""
    sae_name: str = ""
    metadata: Dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.features)

    def __repr__(self) -> str:
        # Not every feature's repr: a set holds thousands to millions of them.
        names = "".join(
            f", {k}={v!r}" for k, v in (("model_name", self.model_name), ("sae_name", self.sae_name)) if v
        )
        return (
            f"FeatureSet(layer={self.layer}, features=<{len(self.features)} features>, "
            f"total_tokens_processed={self.total_tokens_processed}{names})"
        )

    def __getitem__(self, feature_id: int) -> Feature:
        return self.features[feature_id]

    def __iter__(self) -> Iterator[Feature]:
        return iter(self.features.values())

    def add_feature(self, feature: Feature) -> None:
        self.features[feature.id] = feature

    def get_feature(self, feature_id: int) -> Optional[Feature]:
        return self.features.get(feature_id)

    def get_features_by_type(self, feature_type: FeatureType) -> List[Feature]:
        return [f for f in self.features.values() if f.feature_type == feature_type]

    def get_features_by_label(self, label: str) -> List[Feature]:
        """Features carrying exactly this label text."""
        return [f for f in self.features.values() if label in f.labels]

    def classify_all_types(self) -> Dict[FeatureType, int]:
        """Re-classifies every feature against ``total_tokens_processed``; counts per type."""
        counts = {ft: 0 for ft in FeatureType}
        for f in self.features.values():
            f.classify_type(self.total_tokens_processed)
            counts[f.feature_type] += 1
        return counts

    def get_statistics(self) -> Dict[str, Any]:
        """The original's statistics of the features in the set; ``dead_features`` also
        counts the never-firing features ``finalize`` left out of it (listed in
        ``metadata["dead_features"]``), so it agrees with ``FeatureAnalyzer.get_dead_features``."""
        n = len(self.features)
        active = sum(1 for f in self.features.values() if f.activation_count > 0)
        dead = sum(1 for f in self.features.values() if f.feature_type == FeatureType.DEAD)
        dead += self.dead_left_out()
        labeled = sum(1 for f in self.features.values() if f.labels)
        mean_freq = sum(f.activation_frequency for f in self.features.values()) / n if n else 0.0
        return {
            "total_features": n,
            "active_features": active,
            "dead_features": dead,
            "labeled_features": labeled,
            "mean_activation_frequency": mean_freq,
            "total_tokens_processed": self.total_tokens_processed,
        }

    def dead_left_out(self) -> int:
        """Never-firing features ``finalize`` left out of the set (``metadata["dead_features"]``
        names them; a feature added back by hand is not counted twice)."""
        return sum(1 for i in self.metadata.get("dead_features", []) if int(i) not in self.features)

    def to_dict(self) -> dict:
        with no_gc():  # converts every feature's lazy fields: millions of objects, all kept
            features = {str(k): self.features[k].to_dict() for k in sorted(self.features)}
        return {
            "layer": self.layer,
            "features": features,
            "total_tokens_processed": self.total_tokens_processed,
            "model_name": self.model_name,
            "sae_name": self.sae_name,
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureSet":
        fs = cls(
            layer=data.get("layer", 0),
            total_tokens_processed=data.get("total_tokens_processed", 0),
            model_name=data.get("model_name", ""),
            sae_name=data.get("sae_name", ""),
            metadata=dict(data.get("metadata", {})),
        )
        for k, v in data.get("features", {}).items():
            fs.features[int(k)] = Feature.from_dict(v)
        return fs

    @classmethod
    def _from_engine(cls, fin: Any) -> "FeatureSet":
        """The feature set of an engine dictionary (``_engine.Finalized``), without its
        features; ``_add_engine_features`` adds them."""
        data = fin.info()["feature_set"]
        return cls(
            layer=data.get("layer", 0),
            total_tokens_processed=data.get("total_tokens_processed", 0),
            model_name=data.get("model_name", ""),
            sae_name=data.get("sae_name", ""),
            metadata=data.get("metadata", {}),
        )

    def _add_engine_features(self, fin: Any) -> None:
        """Adds the engine dictionary's features (scalars now, the rest on access)."""
        self.features.update(fin.features(Feature, _TYPES_BY_VALUE))

    def save(self, path: str) -> None:
        """Writes ``to_dict()`` as JSON (atomically: temp file + rename)."""
        _write_json_atomically(path, self.to_dict())

    @classmethod
    def load(cls, path: str) -> "FeatureSet":
        """Reads a feature set JSON, a whole saved dictionary (JSON), or a native ``.fdict``."""
        with open(path, "rb") as f:
            is_fdict = f.read(16) == b"SQLite format 3\x00"
        if is_fdict:
            from . import _engine

            fin = _engine.load(os.fspath(path))
            fs = cls._from_engine(fin)
            with no_gc():
                fs._add_engine_features(fin)
            return fs
        with open(path, "r", encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: not a feature set JSON: {e}") from None
        if "feature_set" in data and "features" not in data:
            data = data["feature_set"]  # a whole saved dictionary
        return cls.from_dict(data)


def _write_json_atomically(path: str, data: Any) -> None:
    """Writes ``data`` as JSON through the engine's writer (temp file + rename, the replaced
    file's permissions kept, devices and FIFOs refused); NaN and infinity are refused by
    name, as JSON has none (``json.dump`` would write a bare ``NaN`` no reader takes)."""
    from . import _engine

    _engine.write_text_atomically(os.fspath(path), json_text(data, path, "JSON has no NaN or infinity"))


def _plain(obj: Any) -> Any:
    """A numpy scalar or array as the Python number or list it holds (``json``'s ``default``):
    ``d[0].confidence = np.float32(0.5)`` is a number to save like any other."""
    if hasattr(obj, "dtype") and hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def json_text(data: Any, path: Any, why_no_nan: str) -> str:
    """``data`` as JSON text to save at ``path``; numpy numbers become plain ones. A value
    JSON cannot hold (NaN, infinity, an object) is refused naming where it is in ``data``."""
    try:
        return json.dumps(data, allow_nan=False, default=_plain)
    except ValueError as e:
        if "ircular reference" in str(e):
            raise ValueError(f"{os.fspath(path)}: cannot save: a list or dict contains itself ({e})") from None
        where, value = first_non_finite(data)
        if not where:  # not a NaN or infinity after all: json's own words
            raise ValueError(f"{os.fspath(path)}: cannot save: {e}") from None
        raise ValueError(f"{os.fspath(path)}: cannot save {where} = {value!r}: {why_no_nan}") from None
    except TypeError as e:
        where, value = first_non_json(data)
        if not where:
            raise TypeError(f"{os.fspath(path)}: cannot save: {e}") from e
        raise TypeError(
            f"{os.fspath(path)}: cannot save {where} = {value!r}: a {type(value).__name__} is not a JSON value "
            "(numbers, strings, booleans, None, lists and dicts with string keys are)"
        ) from e


def _walk(obj: Any, where: str = ""):
    """Every value inside JSON-like ``obj`` with its path
    (``feature_set.features["3"].confidence``), parents before their children."""
    yield where, obj
    if hasattr(obj, "dtype") and hasattr(obj, "tolist"):
        obj = obj.tolist()
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for k, v in items:
        sub = f'{where}["{k}"]' if isinstance(obj, dict) and not str(k).isidentifier() else (
            f"{where}.{k}" if isinstance(obj, dict) else f"{where}[{k}]")
        yield from _walk(v, sub.lstrip("."))


def first_non_finite(obj: Any, where: str = "") -> Tuple[str, Any]:
    """The path (``feature_set.features["3"].confidence``) and value of the first NaN or
    infinity in JSON-like ``obj``; ``("", None)`` when there is none."""
    for at, v in _walk(obj, where):
        if hasattr(v, "dtype") and hasattr(v, "tolist"):
            v = v.tolist()  # a numpy scalar (an array's items are walked one by one)
        if isinstance(v, float) and not math.isfinite(v):
            return at, v
    return ("", None)


def first_non_json(obj: Any) -> Tuple[str, Any]:
    """The path and value of the first value in ``obj`` that JSON cannot hold (numpy numbers
    can: they are saved as plain ones); ``("", None)`` when there is none."""
    for at, v in _walk(obj):
        if isinstance(v, dict):
            bad = next((k for k in v if not isinstance(k, (str, int, float, bool)) and k is not None), None)
            if bad is not None:
                return f"{at} key", bad
        elif not (isinstance(v, (str, int, float, bool, list, tuple)) or v is None or hasattr(v, "tolist")):
            return at, v
    return ("", None)


def top_token_entries(feature: Feature) -> List[Tuple[str, int, int]]:
    """``(token, firings, occurrences)`` for every token the feature fired on, counted over
    all tokens processed (``metadata["top_tokens"]``); empty for hand-made features."""
    src = _engine_source(feature, "metadata")
    if src is not None:
        return src[0].token_entries(src[1])
    out = []
    for e in feature.metadata.get("top_tokens", []) or []:
        if isinstance(e, dict):
            out.append((e["token"], int(e["firings"]), int(e.get("occurrences", 0))))
        else:
            out.append((e[0], int(e[1]), int(e[2])))
    return out


def _engine_source(feature: Feature, *fields: str) -> Any:
    """``(engine dictionary, id)`` when none of ``fields`` was converted yet, so a query can
    read them from the engine's copy (which is what they still hold) without converting."""
    d = feature.__dict__
    src = d.get("_src")
    if src is None or any(name in d for name in fields):
        return None
    return src
