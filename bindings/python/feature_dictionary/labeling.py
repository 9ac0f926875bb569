"""Feature labeling: scored labels from statistics over the whole corpus.

Token and pattern labels are scored by how well they *predict* the feature over every token
processed, from the engine's exact counts in ``Feature.metadata["top_tokens"]`` (entries
``[token, firings, occurrences]``) and the corpus counts in
``FeatureSet.metadata["token_counts"]``:

* precision = firings on the label's tokens / occurrences of those tokens in the corpus,
* recall    = firings on the label's tokens / all firings of the feature,
* confidence = F1 = 2·P·R / (P + R).

So a token that is merely common ("the") no longer labels every feature that sees it.

``FeatureDictionary.finalize`` has the compiled engine label and describe the features with
exactly these rules (``_label_engine``; patterns are still matched by Python's ``re``), so
it never builds the examples of every feature as Python objects; a subclass that overrides
a method, or SEMANTIC_CLUSTERING, labels in Python instead.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _engine
from .features import _context_start, _join_tokens, _plain, top_token_entries
from .features import Feature, FeatureSet


class LabelingStrategy(Enum):
    """How a label was produced."""

    TOKEN_FREQUENCY = "token_frequency"
    NGRAM_ANALYSIS = "ngram_analysis"
    PATTERN_MATCHING = "pattern_matching"
    SEMANTIC_CLUSTERING = "semantic_clustering"
    MANUAL = "manual"


@dataclass
class Label:
    """A label with its score. ``metadata`` holds ``precision``/``recall`` (when scored over
    the corpus) and strategy-specific counts."""

    text: str
    confidence: float
    strategy: LabelingStrategy
    evidence: List[str] = field(default_factory=list)
    metadata: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {
            "text": self.text,
            "confidence": self.confidence,
            "strategy": self.strategy.value,
            "evidence": list(self.evidence),
            "metadata": dict(self.metadata),
        }
        # The engine's Label shape keeps precision/recall at the top level.
        if "precision" in self.metadata:
            d["precision"] = self.metadata["precision"]
        if "recall" in self.metadata:
            d["recall"] = self.metadata["recall"]
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "Label":
        meta = dict(data.get("metadata", {}))
        for k in ("precision", "recall"):
            if data.get(k) is not None:
                meta.setdefault(k, data[k])
        return cls(
            text=data["text"],
            confidence=data["confidence"],
            strategy=LabelingStrategy(data["strategy"]),
            evidence=list(data.get("evidence", [])),
            metadata=meta,
        )


@dataclass
class LabelingConfig:
    """Labeling settings. ``min_token_frequency`` is the minimum number of firings on a token
    (or pattern) for it to become a label."""

    min_token_frequency: int = 3
    max_labels: int = 5
    patterns: Dict[str, str] = field(default_factory=dict)
    min_confidence: float = 0.3
    ngram_sizes: List[int] = field(default_factory=lambda: [1, 2, 3])
    strategies: List[LabelingStrategy] = field(
        default_factory=lambda: [LabelingStrategy.TOKEN_FREQUENCY, LabelingStrategy.NGRAM_ANALYSIS]
    )

    def to_dict(self) -> dict:
        # Numpy scalars as Python numbers: the dict goes into saved JSON.
        return {
            "min_token_frequency": _plain(self.min_token_frequency),
            "max_labels": _plain(self.max_labels),
            "patterns": dict(self.patterns),
            "min_confidence": _plain(self.min_confidence),
            "ngram_sizes": [_plain(n) for n in self.ngram_sizes],
            "strategies": [s.value for s in self.strategies],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "LabelingConfig":
        d = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "strategies" in d:
            d["strategies"] = [LabelingStrategy(s) for s in d["strategies"]]
        return cls(**d)


#: Built-in patterns. Matching is case-sensitive (``uppercase`` means upper case); the word
#: lists carry ``(?i)`` because "The" is as much an article as "the".
BUILTIN_PATTERNS: Dict[str, str] = {
    "number": r"^\d+$",
    "punctuation": r"^[^\w\s]+$",
    "uppercase": r"^[A-Z]+$",
    "code_keyword": r"^(if|else|elif|for|while|def|class|import|return|function|const|let|var)$",
    "whitespace": r"^\s+$",
    "article": r"(?i)^(a|an|the)$",
    "pronoun": r"(?i)^(i|you|he|she|it|we|they|me|him|her|us|them)$",
    "preposition": r"(?i)^(in|on|at|to|for|with|by|from|of|about)$",
}


def compile_pattern(pattern: str, what: str) -> "re.Pattern":
    """``re.compile(pattern)``; an invalid regex raises ``re.error`` naming ``what`` (where
    the pattern came from) and the pattern itself, not only re's bare "missing ), …"."""
    try:
        return re.compile(pattern)
    except re.error as e:
        raise re.error(f"{what} is not a valid regular expression {pattern!r}: {e.msg}", e.pattern, e.pos) from None


def _match_form(token: str) -> str:
    """What patterns see: the token without surrounding whitespace (byte-level BPE tokens
    carry a leading space), or the token itself when it is only whitespace."""
    s = token.strip()
    return s if s else token


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r <= 0 else 2 * p * r / (p + r)


class FeatureLabeler:
    """Assigns scored labels to features (see the module docstring for the scores)."""

    def __init__(self, config: Optional[LabelingConfig] = None):
        self.config = config or LabelingConfig()
        self.patterns: Dict[str, str] = dict(BUILTIN_PATTERNS)
        self.patterns.update(self.config.patterns)
        # Checked now: a bad pattern would otherwise surface only in finalize(), after all
        # the processing.
        # name → (the pattern text it was compiled from, the regex): ``patterns`` is a
        # public dict, and a text assigned into it directly must be matched, not the cached
        # regex of the text before.
        self._compiled: Dict[str, Tuple[str, re.Pattern]] = {
            name: (p, compile_pattern(p, f"LabelingConfig.patterns[{name!r}]"))
            for name, p in self.config.patterns.items()
        }
        self._corpus_counts: Optional[Dict[str, int]] = None
        self._manual: Dict[int, List[Label]] = defaultdict(list)
        self._embeddings: Optional[Dict[str, np.ndarray]] = None

    # -- configuration -----------------------------------------------------------------
    def add_pattern(self, name: str, pattern: str) -> None:
        """Adds (or replaces) a pattern; it is matched case-sensitively with ``re.search``
        (anchor it with ``^…$`` to match whole tokens)."""
        rx = compile_pattern(pattern, f"pattern {name!r}")  # fail now, not during labeling
        self.patterns[name] = pattern
        self._compiled[name] = (pattern, rx)

    def set_corpus(self, feature_set: FeatureSet) -> None:
        """Uses the corpus token counts of ``feature_set`` as precision denominators for
        patterns (``label_features`` does this itself)."""
        counts = feature_set.metadata.get("token_counts")
        self._corpus_counts = {t: c for t, c in counts} if counts else None
        self.__dict__.pop("_occ_cache", None)

    def set_token_embeddings(self, embeddings: Dict[str, Sequence[float]]) -> None:
        """Token → vector (e.g. the model's embedding rows) for SEMANTIC_CLUSTERING."""
        self._embeddings = {t: np.asarray(v, dtype=np.float64) for t, v in embeddings.items()}

    def add_manual_label(self, feature_id: int, text: str, confidence: float = 1.0, evidence: Sequence[str] = ()) -> Label:
        """A person's label: always kept (first) and never overwritten by automatic labeling.

        The text is checked as ``featdict label --set`` and the web UI check it (trimmed;
        1–200 characters, no control or bidirectional-control characters), and a feature
        keeps at most ``MAX_MANUAL_LABELS`` (50): a label one face takes, the others can
        show and remove."""
        if not isinstance(text, str):
            raise TypeError(f"a manual label is a string, got {type(text).__name__} {text!r}")
        text = _engine.validate_label(text)
        held = self._manual[feature_id]
        if len(held) >= _engine.MAX_MANUAL_LABELS and all(l.text != text for l in held):
            raise ValueError(
                f"feature {feature_id} already has {len(held)} manual labels; at most "
                f"{_engine.MAX_MANUAL_LABELS} are kept"
            )
        label = Label(text=text, confidence=float(confidence), strategy=LabelingStrategy.MANUAL, evidence=list(evidence))
        held.append(label)
        return label

    def _pattern_occurrences(self, name: str) -> int:
        """Occurrences in the corpus of all tokens the pattern matches (cached)."""
        cache = self.__dict__.setdefault("_occ_cache", {})
        key = (name, self.patterns[name])
        if key not in cache:
            rx = self._regex(name)
            cache[key] = sum(c for t, c in (self._corpus_counts or {}).items() if rx.search(_match_form(t)))
        return cache[key]

    def _regex(self, name: str) -> re.Pattern:
        pattern = self.patterns[name]
        held = self._compiled.get(name)
        if held is None or held[0] != pattern:
            held = self._compiled[name] = (pattern, compile_pattern(pattern, f"FeatureLabeler.patterns[{name!r}]"))
        return held[1]

    # -- labeling ----------------------------------------------------------------------
    def label_feature(self, feature: Feature) -> List[Label]:
        """Scores labels for ``feature`` with the configured strategies, keeps those with
        confidence ≥ ``min_confidence`` (best ``max_labels``), stores their texts in
        ``feature.labels``, the best confidence in ``feature.confidence`` and the scored
        labels in ``feature.metadata["label_details"]``."""
        labels: List[Label] = []
        self._stats_of = (None, None)  # filled by the first strategy that reads the tokens
        try:
            for strategy in self.config.strategies:
                self._label_by(strategy, feature, labels)
        finally:
            self._stats_of = None
        labels = [l for l in labels if l.confidence >= self.config.min_confidence]
        seen, unique = set(), []
        for l in sorted(labels, key=lambda l: (-l.confidence, l.text)):
            if l.text not in seen:
                seen.add(l.text)
                unique.append(l)
        manual = list(self._manual.get(feature.id, []))
        manual += [
            Label.from_dict(d)
            for d in feature.metadata.get("label_details", [])
            if d.get("strategy") == LabelingStrategy.MANUAL.value and d["text"] not in {m.text for m in manual}
        ]
        auto = [l for l in unique if l.text not in {m.text for m in manual}]
        result = manual + auto[: max(0, self.config.max_labels - len(manual))]
        feature.labels = [l.text for l in result]
        feature.confidence = max((l.confidence for l in result), default=0.0)
        if result:
            feature.metadata["label_details"] = [_stored(l) for l in result]
        else:
            feature.metadata.pop("label_details", None)
        return result

    def _label_by(self, strategy: LabelingStrategy, feature: Feature, labels: List[Label]) -> None:
        if strategy == LabelingStrategy.TOKEN_FREQUENCY:
            labels.extend(self._label_by_token_frequency(feature))
        elif strategy == LabelingStrategy.NGRAM_ANALYSIS:
            labels.extend(self._label_by_ngrams(feature))
        elif strategy == LabelingStrategy.PATTERN_MATCHING:
            labels.extend(self._label_by_patterns(feature))
        elif strategy == LabelingStrategy.SEMANTIC_CLUSTERING:
            labels.extend(self._label_by_clusters(feature))

    def label_features(self, feature_set: FeatureSet) -> Dict[int, List[Label]]:
        """Labels every feature, scoring patterns against the set's corpus token counts."""
        self.set_corpus(feature_set)
        return {fid: self.label_feature(f) for fid, f in feature_set.features.items()}

    def _token_stats(self, feature: Feature) -> List[Tuple[str, int, int]]:
        """(token, firings, occurrences) over all tokens, merged by stripped text; falls back
        to the top examples (occurrences unknown) for hand-made features. Within one
        ``label_feature`` call the strategies share one computation."""
        held = self.__dict__.get("_stats_of")
        if held is not None and held[0] is feature:
            return held[1]
        merged: Dict[str, List[int]] = {}
        entries = top_token_entries(feature)
        if entries:
            for tok, firings, occ in entries:
                key = tok.strip() or tok
                m = merged.setdefault(key, [0, 0])
                m[0] += firings
                m[1] += occ
        else:
            for a in feature.top_activations:
                key = a.token.strip() or a.token
                m = merged.setdefault(key, [0, 0])
                m[0] += 1
        stats = [(t, f, o) for t, (f, o) in merged.items()]
        if held is not None:  # inside label_feature: kept for the other strategies
            self._stats_of = (feature, stats)
        return stats

    def _pattern_hits(self, name: str) -> Dict[str, bool]:
        """token → whether pattern ``name`` matches it, filled as tokens are met: features
        share most of their tokens, and a regex search per (feature, token, pattern) was most
        of the labeling time. Keyed by the pattern's text, so a changed pattern starts over."""
        cache = self.__dict__.setdefault("_hits_cache", {})
        key = (name, self.patterns[name])
        hits = cache.get(key)
        if hits is None:
            hits = cache[key] = {}
        return hits

    def _scored(self, text, strategy, firings, occurrences, total, evidence, **meta) -> Label:
        recall = firings / total if total else 0.0
        if occurrences:
            precision = firings / occurrences
            conf = _f1(precision, recall)
            meta.update(precision=precision, recall=recall)
        else:  # no corpus counts: recall alone
            conf = recall
            meta.update(recall=recall)
        meta.update(firings=firings, occurrences=occurrences)
        return Label(text=text, confidence=conf, strategy=strategy, evidence=evidence, metadata=meta)

    def _label_engine(self, fin: Any, feature_set: FeatureSet) -> bool:
        """Labels and describes every feature of the engine dictionary ``fin`` (whose feature
        set is ``feature_set``, not yet holding its features) in compiled code, with the
        results ``label_features`` + ``generate_description`` would give. Returns False,
        doing nothing, when it cannot: a subclass overriding labeling methods, semantic
        clustering, or settings of types the Python code would treat differently."""
        cfg = self.config
        if any(getattr(type(self), m) is not getattr(FeatureLabeler, m) for m in _ENGINE_EQUIVALENT):
            return False
        if not all(isinstance(s, LabelingStrategy) and s in _ENGINE_STRATEGIES for s in cfg.strategies):
            return False
        if not (_exact_number(cfg.min_token_frequency) and _exact_number(cfg.min_confidence)):
            return False
        if not (_int64(cfg.max_labels) and all(_int64(n) for n in cfg.ngram_sizes)):
            return False
        self.set_corpus(feature_set)
        patterns = []
        if LabelingStrategy.PATTERN_MATCHING in cfg.strategies:
            forms = sorted({_match_form(t) for t in fin.firing_tokens()})
            for name in self.patterns:
                rx = self._regex(name)
                patterns.append({
                    "name": name,
                    "matches": [k for k in forms if rx.search(_match_form(k))],
                    "occurrences": self._pattern_occurrences(name) if self._corpus_counts is not None else None,
                })
        plan = {
            "strategies": [s.value for s in cfg.strategies],
            "min_token_frequency": float(cfg.min_token_frequency),
            "max_labels": int(cfg.max_labels),
            "min_confidence": float(cfg.min_confidence),
            "ngram_sizes": [int(n) for n in cfg.ngram_sizes],
            "patterns": patterns,
            "manual": {str(fid): [_stored(l) for l in labels] for fid, labels in self._manual.items() if labels},
        }
        try:
            text = json.dumps(plan, allow_nan=False, default=_plain)
        except (TypeError, ValueError):  # e.g. a manual label with odd evidence: Python path
            return False
        fin.label(text)
        return True

    def _label_by_token_frequency(self, feature: Feature) -> List[Label]:
        total = feature.activation_count or len(feature.top_activations)
        out = []
        for tok, firings, occ in self._token_stats(feature):
            if firings >= self.config.min_token_frequency:
                out.append(
                    self._scored(
                        f"token:{tok}", LabelingStrategy.TOKEN_FREQUENCY, firings, occ, total, [tok],
                        exact=bool(feature.metadata.get("token_counts_exact", True)),
                    )
                )
        return out

    def _label_by_patterns(self, feature: Feature) -> List[Label]:
        total = feature.activation_count or len(feature.top_activations)
        stats = self._token_stats(feature)
        out = []
        for name in self.patterns:
            rx = self._regex(name)
            hits = self._pattern_hits(name)
            matched = []
            for entry in stats:
                hit = hits.get(entry[0])
                if hit is None:
                    hit = hits[entry[0]] = rx.search(_match_form(entry[0])) is not None
                if hit:
                    matched.append(entry)
            firings = sum(f for _, f, _ in matched)
            if firings < self.config.min_token_frequency or firings == 0:
                continue
            if self._corpus_counts is not None:
                occ = self._pattern_occurrences(name)
            else:
                occ = sum(o for _, _, o in matched)
            top = [t for t, _, _ in sorted(matched, key=lambda x: -x[1])[:3]]
            out.append(self._scored(f"pattern:{name}", LabelingStrategy.PATTERN_MATCHING, firings, occ, total, top, pattern=self.patterns[name]))
        return out

    def _label_by_ngrams(self, feature: Feature) -> List[Label]:
        """N-grams (n ≥ 2) *ending at the firing token*, over the stored examples (top and
        quantile samples): confidence = share of those examples showing the n-gram. Single
        tokens are TOKEN_FREQUENCY's job (scored over the whole corpus)."""
        # (position, metadata, context tokens, token) of every stored example; the quantile
        # samples stay raw dicts (building objects for them costs more than the counting).
        examples = [(a.position, a.metadata, a.context_tokens, a.token) for a in feature.top_activations]
        for g in feature.metadata.get("quantile_examples", []):
            examples.extend((e["position"], e.get("metadata", {}), e.get("context_tokens", []), e.get("token"))
                            for e in g.get("examples", []))
        if not examples:
            return []
        sizes = [n for n in self.config.ngram_sizes if n >= 2]
        raw: Counter = Counter()
        for pos, meta, ctx, token in examples:
            start = _context_start(pos, meta, ctx, token)
            if start is None:
                continue
            i = pos - start  # index of the firing token in the context
            if i < 0 or i >= len(ctx):
                continue
            for n in sizes:
                if i + 1 >= n:
                    raw[tuple(ctx[i + 1 - n : i + 1])] += 1
        counts: Counter = Counter()
        for gram, c in raw.items():
            counts[tuple(t.strip() or t for t in gram)] += c
        out = []
        for gram, c in counts.most_common():
            if c < max(2, self.config.min_token_frequency):
                break
            text = _join_tokens(list(gram), False)
            out.append(
                Label(
                    text=f"ngram:{text}",
                    confidence=c / len(examples),
                    strategy=LabelingStrategy.NGRAM_ANALYSIS,
                    evidence=[text],
                    metadata={"n": len(gram), "count": c, "examples": len(examples)},
                )
            )
        return out

    def _label_by_clusters(self, feature: Feature) -> List[Label]:
        """Groups the firing tokens (over all tokens) into clusters — by embedding cosine
        ≥ 0.5 when token embeddings were given, else by case/space-normalized form — and
        labels each large cluster with its share of firings (``cluster:a|b|c``)."""
        stats = [(t, f) for t, f, _ in self._token_stats(feature)]
        total = feature.activation_count or sum(f for _, f in stats)
        if not stats or not total:
            return []
        clusters = _cluster_tokens([t for t, _ in stats], self._embeddings)
        firings = dict(stats)
        out = []
        for members in clusters:
            if len(members) < 2:
                continue
            n = sum(firings[m] for m in members)
            if n < self.config.min_token_frequency:
                continue
            top = sorted(members, key=lambda m: -firings[m])[:3]
            out.append(
                Label(
                    text="cluster:" + "|".join(top),
                    confidence=n / total,
                    strategy=LabelingStrategy.SEMANTIC_CLUSTERING,
                    evidence=top,
                    metadata={"tokens": sorted(members), "firings": n},
                )
            )
        return out

    # -- descriptions and similarity ---------------------------------------------------
    def generate_description(self, feature: Feature) -> str:
        """One readable paragraph: type, counts over all tokens, labels with precision, top
        tokens; also stored in ``feature.description``."""
        parts = [f"A {feature.feature_type.value} feature"]
        if feature.activation_count > 0:
            parts[0] += (
                f" that fired on {feature.activation_count} token{'' if feature.activation_count == 1 else 's'} "
                f"(frequency: {feature.activation_frequency:.4f}, mean activation {feature.mean_activation:.3f}, "
                f"max {feature.max_activation:.3f})"
            )
        details = {d["text"]: d for d in feature.metadata.get("label_details", [])}
        if feature.labels:
            shown = []
            for text in feature.labels[:3]:
                d = details.get(text, {})
                p = d.get("precision", d.get("metadata", {}).get("precision"))
                shown.append(f"{text} (precision {p:.2f})" if p is not None else text)
            parts.append("Characterized by: " + ", ".join(shown))
        top = feature.get_top_tokens(5)
        if top:
            parts.append("Top activating tokens: " + ", ".join(f"'{t}'" for t, _ in top))
        description = ". ".join(parts) + "."
        feature.description = description
        return description

    def find_similar_features(self, feature: Feature, feature_set: FeatureSet, min_overlap: float = 0.3) -> List[Tuple[int, float]]:
        """Features whose firing-token distributions over all tokens are similar: cosine of
        the per-token firing-count vectors (or of the decoder directions when both features
        have ``decoder_weight``), ≥ ``min_overlap``, best first."""
        out = []
        ref_vec = _token_vector(feature)
        for other in feature_set:
            if other.id == feature.id:
                continue
            if feature.decoder_weight is not None and other.decoder_weight is not None:
                sim = _cosine_dense(feature.decoder_weight, other.decoder_weight)
            else:
                sim = _cosine_sparse(ref_vec, _token_vector(other))
            if sim >= min_overlap:
                out.append((other.id, sim))
        out.sort(key=lambda x: (-x[1], x[0]))
        return out


#: Methods whose Python code ``_label_engine`` reproduces; a subclass overriding any of them
#: is labeled in Python.
_ENGINE_EQUIVALENT = (
    "label_feature", "label_features", "set_corpus", "generate_description", "_token_stats",
    "_scored", "_label_by_token_frequency", "_label_by_patterns", "_label_by_ngrams",
    "_pattern_occurrences", "_regex", "_label_by", "_pattern_hits",
)
_ENGINE_STRATEGIES = frozenset((
    LabelingStrategy.TOKEN_FREQUENCY, LabelingStrategy.NGRAM_ANALYSIS,
    LabelingStrategy.PATTERN_MATCHING, LabelingStrategy.MANUAL,
))


def _exact_number(x: Any) -> bool:
    """A real number the engine compares exactly as Python does (as a float)."""
    if isinstance(x, float):
        return True
    return isinstance(x, int) and -(2 ** 53) <= x <= 2 ** 53


def _int64(x: Any) -> bool:
    return isinstance(x, int) and -(2 ** 63) <= x < 2 ** 63


def _stored(label: Label) -> dict:
    """A label as ``Feature.metadata["label_details"]`` keeps it: the engine's ``Label``
    shape (text, strategy, confidence, precision, recall, evidence), which round-trips
    through saved files."""
    d = label.to_dict()
    d.pop("metadata")
    d.setdefault("precision", None)
    d.setdefault("recall", None)
    return d


def _example_from(d: dict):
    from .features import FeatureActivation

    return FeatureActivation.from_dict(d)


def _token_vector(f: Feature) -> Dict[str, float]:
    v: Dict[str, float] = defaultdict(float)
    entries = top_token_entries(f)
    if entries:
        for tok, firings, _ in entries:
            v[tok.strip() or tok] += firings
    else:
        for a in f.top_activations:
            v[a.token.strip() or a.token] += 1
    return v


def _cosine_sparse(a: Dict[str, float], b: Dict[str, float]) -> float:
    if not a or not b:
        return 0.0
    if len(a) > len(b):
        a, b = b, a
    dot = sum(x * b.get(k, 0.0) for k, x in a.items())
    na = sum(x * x for x in a.values()) ** 0.5
    nb = sum(x * x for x in b.values()) ** 0.5
    # Clamped: rounding can take the cosine of equal vectors past 1.
    return max(-1.0, min(1.0, dot / (na * nb))) if na and nb else 0.0


def _cosine_dense(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return max(-1.0, min(1.0, float(a @ b / (na * nb)))) if na and nb else 0.0


def _cluster_tokens(tokens: List[str], embeddings: Optional[Dict[str, np.ndarray]]) -> List[List[str]]:
    """Union-find clusters: embedding cosine ≥ 0.5 when vectors exist, else equal
    lower-cased stripped text."""
    parent = list(range(len(tokens)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if embeddings:
        vecs = [embeddings.get(t) for t in tokens]
        for i in range(len(tokens)):
            for j in range(i + 1, len(tokens)):
                if vecs[i] is not None and vecs[j] is not None and _cosine_dense(vecs[i], vecs[j]) >= 0.5:
                    parent[find(i)] = find(j)
    else:
        first: Dict[str, int] = {}
        for i, t in enumerate(tokens):
            key = t.strip().lower()
            if key in first:
                parent[find(i)] = find(first[key])
            else:
                first[key] = i
    groups: Dict[int, List[str]] = defaultdict(list)
    for i, t in enumerate(tokens):
        groups[find(i)].append(t)
    return list(groups.values())
