"""Feature analysis over every token processed.

Statistics come from the engine's exact accumulators (``Feature`` fields and
``Feature.metadata``), not from the stored top examples; correlation is Pearson of the
activations over all tokens (from the extractor's co-activation matrix, or the partners it
stored in ``metadata["correlated_features"]``). These methods will delegate to the Rust
``analyze`` module once it lands (see README).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from .features import _context_start, no_gc, top_token_entries
from .features import Feature, FeatureActivation, FeatureSet, FeatureType


@dataclass
class ActivationStats:
    """Statistics of one feature over all tokens processed."""

    feature_id: int
    activation_count: int = 0
    mean_activation: float = 0.0
    std_activation: float = 0.0
    max_activation: float = 0.0
    min_activation: float = float("inf")
    activation_frequency: float = 0.0
    mean_position: float = 0.0
    position_variance: float = 0.0
    unique_tokens: int = 0
    token_entropy: float = 0.0

    def to_dict(self) -> dict:
        return {
            "feature_id": self.feature_id,
            "activation_count": self.activation_count,
            "mean_activation": self.mean_activation,
            "std_activation": self.std_activation,
            "max_activation": self.max_activation,
            "min_activation": self.min_activation if self.min_activation != float("inf") else 0.0,
            "activation_frequency": self.activation_frequency,
            "mean_position": self.mean_position,
            "position_variance": self.position_variance,
            "unique_tokens": self.unique_tokens,
            "token_entropy": self.token_entropy,
        }


def importance(f: Feature) -> float:
    """The original's importance: 0.7·min(100·frequency, 1) + 0.3·min(max/5, 1)."""
    if f.activation_count == 0:
        return 0.0
    return 0.7 * min(f.activation_frequency * 100, 1.0) + 0.3 * min(f.max_activation / 5.0, 1.0)


def _examples(f: Feature) -> List[FeatureActivation]:
    out = list(f.top_activations)
    for g in f.metadata.get("quantile_examples", []):
        out.extend(FeatureActivation.from_dict(e) for e in g.get("examples", []))
    return out


def _has_engine_stats(m: Dict[str, Any]) -> bool:
    """Whether a feature's metadata holds the engine's exact statistics (a firing feature
    from ``finalize`` or a saved dictionary always has ``std_activation``). Such a feature
    without ``positions`` was built with ``collect_positions=False``: its position
    statistics are unknown, never estimated from the stored examples."""
    return "std_activation" in m


def _firing_tokens(f: Feature) -> Dict[str, int]:
    """Firing counts per (stripped) token over all tokens; top examples for hand-made ones."""
    counts: Dict[str, int] = defaultdict(int)
    entries = top_token_entries(f)
    if entries:
        for tok, firings, _ in entries:
            counts[tok.strip() or tok] += firings
    else:
        for a in f.top_activations:
            counts[a.token.strip() or a.token] += 1
    return counts


class FeatureAnalyzer:
    """Analyzes the features of a ``FeatureSet``."""

    def __init__(self, feature_set: FeatureSet):
        self.feature_set = feature_set
        self._embeddings: Optional[Dict[str, np.ndarray]] = None

    def set_token_embeddings(self, embeddings: Dict[str, Sequence[float]]) -> None:
        """Token → vector; polysemantic detection then clusters firing tokens by embedding."""
        self._embeddings = {t: np.asarray(v, dtype=np.float64) for t, v in embeddings.items()}

    # -- per-feature statistics ---------------------------------------------------------
    def compute_activation_stats(self, feature: Feature) -> ActivationStats:
        """Exact statistics over all firings (from the engine's accumulators). For a
        hand-made feature without them, std/min/positions/tokens come from its examples."""
        m = feature.metadata
        s = ActivationStats(feature_id=feature.id)
        if feature.activation_count == 0 and not feature.top_activations:
            return s
        s.activation_count = feature.activation_count
        s.mean_activation = feature.mean_activation
        s.max_activation = feature.max_activation
        s.activation_frequency = feature.activation_frequency
        acts = [a.activation for a in feature.top_activations]
        if "std_activation" in m:
            s.std_activation = float(m["std_activation"])
        elif len(acts) > 1:
            s.std_activation = float(np.std(acts))
        if m.get("min_activation") is not None:
            s.min_activation = float(m["min_activation"])
        elif acts:
            s.min_activation = min(acts)
        pos = m.get("positions")
        if pos:
            s.mean_position = float(pos["mean"])
            s.position_variance = float(pos["variance"])
        elif feature.top_activations and not _has_engine_stats(m):
            p = np.array([a.position for a in feature.top_activations], dtype=np.float64)
            s.mean_position, s.position_variance = float(p.mean()), float(p.var())
        if m.get("unique_tokens") is not None:
            s.unique_tokens = int(m["unique_tokens"])
            s.token_entropy = float(m.get("token_entropy", 0.0))
        else:
            counts = Counter(a.token for a in feature.top_activations)
            total = sum(counts.values())
            s.unique_tokens = len(counts)
            s.token_entropy = 0.0 - sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0
        return s

    def compute_all_stats(self) -> Dict[int, ActivationStats]:
        with no_gc():  # reads (so converts) every feature's metadata
            return {fid: self.compute_activation_stats(f) for fid, f in self.feature_set.features.items()}

    # -- relations ----------------------------------------------------------------------
    def _pearson_row(self, feature_id: int) -> Optional[Dict[int, float]]:
        pearson = getattr(self.feature_set, "_pearson", None)
        if pearson is not None and feature_id < pearson.shape[0]:
            row = pearson[feature_id]
            return {int(j): float(row[j]) for j in np.nonzero(np.isfinite(row))[0] if j != feature_id}
        f = self.feature_set.get_feature(feature_id)
        if f is not None:
            # Ours, or those `featdict build --correlation` stored (Pearson, or φ of firings
            # for a sketch: the file's metadata["correlation"] says which).
            for key in ("correlated_features", "correlated"):
                if key in f.metadata:
                    kind = self.feature_set.metadata.get("correlation") or {}
                    if kind.get("measure", "pearson") != "pearson":
                        warnings.warn(
                            f"the correlations stored in this dictionary are {kind.get('measure')} "
                            f"(mode {kind.get('mode')!r}), not Pearson: `featdict build --correlation "
                            "sketch` stores the φ coefficient of firings from a bounded table, whose "
                            "co-firing counts are lower bounds and whose partners can be missing; build "
                            "with --correlation exact (≤ 4,096 features) for Pearson",
                            stacklevel=3,
                        )
                    return {int(j): float(r) for j, r in f.metadata[key]}
        return None

    def find_correlated_features(self, feature_id: int, min_correlation: float = 0.5) -> List[Tuple[int, float]]:
        """Features whose activations correlate with ``feature_id``'s over all tokens
        (Pearson, non-firings counted as 0), ``r ≥ min_correlation``, best first.

        Needs co-activation tracking during extraction (automatic up to 2,048 features) or,
        for a loaded file, the partners stored at finalize; when both features have
        ``decoder_weight`` and no co-activation is known, decoder-direction cosine is used.
        """
        ref = self.feature_set.get_feature(feature_id)
        if ref is None:
            return []
        row = self._pearson_row(feature_id)
        if row is None:
            if ref.decoder_weight is not None:
                row = {}
                a = np.asarray(ref.decoder_weight, dtype=np.float64)
                for o in self.feature_set:
                    if o.id != feature_id and o.decoder_weight is not None:
                        b = np.asarray(o.decoder_weight, dtype=np.float64)
                        row[o.id] = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) or 1.0))
            else:
                warnings.warn(
                    f"no co-activation data for feature {feature_id} (tracked automatically up to "
                    "2,048 features; set ExtractionConfig(track_coactivation=True) or decoder_weight): "
                    "falling back to the Jaccard overlap of the tokens (sequence, position) of the "
                    "stored examples, an estimate (examples that store no sequence, as in files of "
                    "the original library, cannot be matched)",
                    stacklevel=2,
                )
                row = self._example_overlap(ref)
        out = [(j, r) for j, r in row.items() if r >= min_correlation and j in self.feature_set.features]
        out.sort(key=lambda x: (-x[1], x[0]))
        return out

    def _example_overlap(self, ref: Feature) -> Dict[int, float]:
        """Jaccard index of the (sequence, position) sets of stored examples. Examples that
        do not say their sequence (those of files written by the original library) are left
        out: matched by position alone, unrelated tokens of different sequences would count
        as co-firing (the original's defect)."""

        def tokens_of(f: Feature) -> Set[Tuple[int, int]]:
            return {(ex.metadata["sequence"], ex.position) for ex in _examples(f) if "sequence" in ex.metadata}

        index = getattr(self.feature_set, "_example_index", None)
        if index is None:
            index = defaultdict(set)
            for f in self.feature_set:
                for c in tokens_of(f):
                    index[c].add(f.id)
            self.feature_set._example_index = index  # type: ignore[attr-defined]
        mine = tokens_of(ref)
        inter: Dict[int, int] = defaultdict(int)
        for c in mine:
            for j in index.get(c, ()):
                if j != ref.id:
                    inter[j] += 1
        return {j: n / len(mine | tokens_of(self.feature_set.features[j])) for j, n in inter.items()}

    def find_polysemantic_features(self, min_clusters: int = 2, min_cluster_size: int = 3) -> List[Tuple[int, List[Set[str]]]]:
        """Features whose firing tokens fall into ≥ ``min_clusters`` groups of ≥
        ``min_cluster_size`` distinct tokens that appear in unrelated contexts.

        Two firing tokens join a group when the context words around their stored examples
        overlap (Jaccard ≥ 0.2) — or, when token embeddings were given, when their embedding
        cosine is ≥ 0.5.
        """
        out = []
        with no_gc():  # reads (so converts) every feature's examples
            clusters_of = {fid: self._token_clusters(f) for fid, f in self.feature_set.features.items()
                           if f.activation_count or f.top_activations}
        for fid, clusters in clusters_of.items():
            big = [c for c in clusters if len(c) >= min_cluster_size]
            if len(big) >= min_clusters:
                out.append((fid, big))
        return out

    def _token_clusters(self, f: Feature) -> List[Set[str]]:
        bags: Dict[str, Set[str]] = defaultdict(set)
        for ex in _examples(f):
            tok = ex.token.strip() or ex.token
            start = _context_start(ex.position, ex.metadata, ex.context_tokens, ex.token)
            i = None if start is None else ex.position - start
            for k, t in enumerate(ex.context_tokens):
                if k != i:
                    bags[tok].add(t.strip().lower())
            bags[tok].discard("")
        toks = sorted(bags)
        parent = {t: t for t in toks}

        def find(t):
            while parent[t] != t:
                parent[t] = parent[parent[t]]
                t = parent[t]
            return t

        for a in range(len(toks)):
            for b in range(a + 1, len(toks)):
                ta, tb = toks[a], toks[b]
                if self._embeddings is not None and ta in self._embeddings and tb in self._embeddings:
                    va, vb = self._embeddings[ta], self._embeddings[tb]
                    similar = float(va @ vb / ((np.linalg.norm(va) * np.linalg.norm(vb)) or 1.0)) >= 0.5
                else:
                    x, y = bags[ta], bags[tb]
                    similar = bool(x | y) and len(x & y) / len(x | y) >= 0.2
                if similar:
                    parent[find(ta)] = find(tb)
        groups: Dict[str, Set[str]] = defaultdict(set)
        for t in toks:
            groups[find(t)].add(t)
        return sorted(groups.values(), key=lambda g: (-len(g), sorted(g)))

    # -- classes ------------------------------------------------------------------------
    def get_dead_features(self) -> List[int]:
        """Features that never fired — including those ``finalize`` left out of the set."""
        dead = {fid for fid, f in self.feature_set.features.items() if f.activation_count == 0}
        dead.update(int(i) for i in self.feature_set.metadata.get("dead_features", []))
        return sorted(dead)

    def get_ultra_sparse_features(self, max_frequency: float = 0.0001) -> List[int]:
        return [fid for fid, f in self.feature_set.features.items() if 0 < f.activation_frequency < max_frequency]

    def get_dense_features(self, min_frequency: float = 0.1) -> List[int]:
        return [fid for fid, f in self.feature_set.features.items() if f.activation_frequency >= min_frequency]

    def compute_feature_importance(self) -> List[Tuple[int, float]]:
        """``(id, importance)`` for all features, best first. The score saturates at 1.0
        (hundreds of features on a real SAE), so ties go to more firings, then the larger
        max, then the smaller id (the original left them in id order), as `featdict` ranks."""
        ranked = sorted(
            self.feature_set.features.items(),
            key=lambda kv: (-importance(kv[1]), -kv[1].activation_count, -kv[1].max_activation, kv[0]),
        )
        return [(fid, importance(f)) for fid, f in ranked]

    def get_position_distribution(self, feature_id: int) -> Dict[str, int]:
        """Firings by position over all tokens: start (< 5), early (< 20), middle (< 50), late;
        ``{}`` for a missing feature or one built with ``collect_positions=False``."""
        f = self.feature_set.get_feature(feature_id)
        if f is None:
            return {}
        pos = f.metadata.get("positions")
        if pos:
            return {k: int(pos[k]) for k in ("start", "early", "middle", "late")}
        if not f.top_activations or _has_engine_stats(f.metadata):
            return {}
        p = [a.position for a in f.top_activations]
        return {
            "start": sum(1 for x in p if x < 5),
            "early": sum(1 for x in p if 5 <= x < 20),
            "middle": sum(1 for x in p if 20 <= x < 50),
            "late": sum(1 for x in p if x >= 50),
        }

    def _self_pearson(self, f: Feature) -> Optional[float]:
        """A feature's Pearson correlation with itself: 1.0, or None (undefined) when it is
        constant over all tokens."""
        pearson = getattr(self.feature_set, "_pearson", None)
        if pearson is not None and f.id < pearson.shape[0]:
            return 1.0 if np.isfinite(pearson[f.id, f.id]) else None
        total = self.feature_set.total_tokens_processed
        std = f.metadata.get("std_activation") or 0.0
        constant = f.activation_count == 0 or (f.activation_count == total and std == 0)
        return None if constant else 1.0

    def compare_features(self, feature_id_1: int, feature_id_2: int) -> Dict[str, Any]:
        """Counts, means, shared firing tokens (over all tokens), their Jaccard index, the
        cosine of the firing-token distributions, Pearson correlation when known, shared
        labels."""
        f1 = self.feature_set.get_feature(feature_id_1)
        f2 = self.feature_set.get_feature(feature_id_2)
        if f1 is None or f2 is None:
            # The original's text, which callers may compare against.
            return {"error": "Feature not found"}
        t1, t2 = _firing_tokens(f1), _firing_tokens(f2)
        inter = set(t1) & set(t2)
        union = set(t1) | set(t2)
        dot = sum(t1[k] * t2[k] for k in inter)
        n1 = math.sqrt(sum(v * v for v in t1.values()))
        n2 = math.sqrt(sum(v * v for v in t2.values()))
        row = self._pearson_row(feature_id_1)
        if feature_id_1 == feature_id_2:
            pearson = self._self_pearson(f1) if row is not None else None
        else:
            pearson = row.get(feature_id_2) if row is not None else None
        return {
            "feature_1": feature_id_1,
            "feature_2": feature_id_2,
            "activation_count_1": f1.activation_count,
            "activation_count_2": f2.activation_count,
            "mean_activation_1": f1.mean_activation,
            "mean_activation_2": f2.mean_activation,
            "token_overlap": sorted(inter, key=lambda k: (-(t1[k] + t2[k]), k))[:10],
            "jaccard_similarity": len(inter) / len(union) if union else 0.0,
            "token_cosine": dot / (n1 * n2) if n1 and n2 else 0.0,
            "pearson": pearson,
            "shared_labels": sorted(set(f1.labels) & set(f2.labels)),
        }

    def get_summary(self) -> Dict[str, Any]:
        """``FeatureSet.get_statistics()`` plus ``type_distribution``, ``top_features`` (ten
        most important), ``num_features`` and ``omitted_features``. As the original, features
        are re-classified against the tokens processed first (``classify_all_types``) when
        the set has a token count; ``type_distribution["dead"]`` also counts the never-firing
        features ``finalize`` left out of the set, as ``dead_features`` does."""
        if self.feature_set.total_tokens_processed > 0:
            counts = self.feature_set.classify_all_types()
        else:
            # No token count (a hand-made set): the original's re-classification would call
            # every feature dead, so the types are taken as they are.
            counts = {ft: 0 for ft in FeatureType}
            for f in self.feature_set:
                counts[f.feature_type] += 1
        stats = self.feature_set.get_statistics()
        counts[FeatureType.DEAD] += self.feature_set.dead_left_out()
        stats["type_distribution"] = {ft.value: c for ft, c in counts.items()}
        stats["top_features"] = self.compute_feature_importance()[:10]
        md = self.feature_set.metadata
        stats["num_features"] = md.get("num_features", len(self.feature_set))
        stats["omitted_features"] = len(md.get("omitted_features", []))
        return stats
