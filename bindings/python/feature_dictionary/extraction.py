"""Feature extraction: stream SAE activations through the Rust engine.

``FeatureExtractor`` keeps a compiled accumulator (``feature_dictionary._engine.Engine``)
alive until it is dropped: ``finalize()`` reads the state without consuming it, so more
activations can be processed and ``finalize()`` called again, and two extractors built on
different shards can be merged (``merge``) into exactly what one extractor over both shards
would have produced.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import warnings
from dataclasses import InitVar, dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from . import _engine
from .features import _engine_source, _join_tokens, no_gc, top_token_entries
from .features import Feature, FeatureActivation, FeatureSet, FeatureType

#: Co-activation (Σ xᵢxⱼ over all tokens, an F×F float64 matrix) is tracked by default up to
#: this many features (32 MiB); above it, set ``ExtractionConfig.track_coactivation=True``.
COACTIVATION_AUTO_LIMIT = 2048

#: Partners stored per feature in ``metadata["correlated_features"]`` at finalize.
CORRELATED_PER_FEATURE = 10


# ExtractionConfig fields that count something (the engine takes them as unsigned integers).
_COUNT_FIELDS = (
    "max_examples_per_feature",
    "context_window",
    "batch_size",
    "min_activation_count",
    "samples_per_group",
    "token_sketch_capacity",
)


@dataclass
class ExtractionConfig:
    """How activations are turned into statistics and examples.

    An activation *fires* when ``value >= min_activation`` and ``value > activation_threshold``.
    ``batch_size`` is the number of sequences handed to the engine per call by
    ``process_batch`` (bounding the float32 copy made of list inputs). The last four fields
    are ours: examples per quantile group (a uniform sample of ten times as many firings,
    split into ten equal-count groups at ``finalize``), distinct tokens
    counted exactly per feature, co-activation tracking (``None`` = automatic, on up to
    ``COACTIVATION_AUTO_LIMIT`` features) and engine threads (``None`` = all cores).
    """

    activation_threshold: float = 0.0
    min_activation: float = 0.01
    max_examples_per_feature: int = 20
    context_window: int = 5
    batch_size: int = 32
    min_activation_count: int = 1
    include_dead_features: bool = False
    collect_context: bool = True
    collect_positions: bool = True
    samples_per_group: int = 2
    token_sketch_capacity: int = 1024
    track_coactivation: Optional[bool] = None
    threads: Optional[int] = None
    # The name of samples_per_group before 2026-11-27; accepted with a DeprecationWarning.
    samples_per_band: InitVar[Optional[int]] = None

    def __post_init__(self, samples_per_band: Optional[int]) -> None:
        if samples_per_band is not None:
            warnings.warn(
                "ExtractionConfig(samples_per_band=...) is now samples_per_group "
                "(examples per quantile group, on average)",
                DeprecationWarning,
                stacklevel=3,
            )
            self.samples_per_group = samples_per_band

    def to_dict(self) -> dict:
        return {k: _plain(v) for k, v in self._fields().items()}

    def _fields(self) -> dict:
        return {
            "activation_threshold": self.activation_threshold,
            "min_activation": self.min_activation,
            "max_examples_per_feature": self.max_examples_per_feature,
            "context_window": self.context_window,
            "batch_size": self.batch_size,
            "min_activation_count": self.min_activation_count,
            "include_dead_features": self.include_dead_features,
            "collect_context": self.collect_context,
            "collect_positions": self.collect_positions,
            "samples_per_group": self.samples_per_group,
            "token_sketch_capacity": self.token_sketch_capacity,
            "track_coactivation": self.track_coactivation,
            "threads": self.threads,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "ExtractionConfig":
        known = {
            k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "samples_per_band"
        }
        # Files written before the example sample became uniform call it samples_per_band.
        if "samples_per_band" in data and "samples_per_group" not in data:
            known["samples_per_group"] = data["samples_per_band"]
        return cls(**known)

    def firing_threshold(self) -> float:
        """The single ``>=`` threshold the engine applies (see the class docstring)."""
        for name in ("min_activation", "activation_threshold"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
            # Activations are compared in float32: a threshold beyond its range would be ±inf.
            if abs(float(v)) > float(np.finfo(np.float32).max):
                raise ValueError(
                    f"{name} = {v!r} is beyond the range of float32 (±{float(np.finfo(np.float32).max):.4g}), "
                    "in which activations are compared"
                )
        thr = np.float32(self.min_activation)
        if self.activation_threshold >= thr:
            thr = np.nextafter(np.float32(self.activation_threshold), np.float32(np.inf))
        if not thr > 0:
            # The engine counts firings as value >= threshold and treats 0 as "did not fire"
            # (sparse inputs store no zeros), so the threshold must be above 0.
            raise ValueError(
                f"the firing threshold must be above 0 (min_activation={self.min_activation!r}, "
                f"activation_threshold={self.activation_threshold!r}): an activation fires when it is "
                ">= min_activation and > activation_threshold"
            )
        return float(thr)

    def engine_dict(self) -> dict:
        # Counts reach the engine as unsigned integers; say which field is wrong here rather
        # than let its JSON decoder report a column number.
        for name in _COUNT_FIELDS:
            _check_count(getattr(self, name), f"ExtractionConfig.{name}")
        d = self.to_dict()
        # Python-side settings: co-activation is tracked here, threads are passed apart.
        del d["track_coactivation"], d["threads"]
        d["min_activation"] = self.firing_threshold()
        return d


def _check_count(value: Any, name: str, none_means: str = "") -> None:
    """Raises a ValueError naming ``name`` unless ``value`` is a non-negative integer (or
    None, when ``none_means`` says what None stands for): the engine takes these unsigned,
    and its own errors name no field."""
    if value is None and none_means:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        allowed = f"None ({none_means}) or a non-negative integer" if none_means else "a non-negative integer"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    if value >= 2**63:
        raise ValueError(f"{name} must be below 2**63, got {value!r}")


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python number it holds: settings computed with numpy must
    still serialize to JSON (for the engine and in saved files)."""
    return value.item() if isinstance(value, np.generic) else value


def _refuse_masked(activations: Any, what: str) -> None:
    """numpy drops a masked array's mask on conversion, so its masked entries (often padding)
    would count as activations."""
    if isinstance(activations, np.ma.MaskedArray):
        raise TypeError(
            f"{what} is a numpy masked array; its masked values would be read as activations. "
            "Pass the values meant, e.g. a.filled(0)"
        )


def _as_float_2d(activations: Any, what: str = "activations") -> np.ndarray:
    """A 2-D float32 or float16 C-contiguous view (copying only when it must)."""
    if hasattr(activations, "detach") and hasattr(activations, "cpu"):  # torch tensors
        activations = activations.detach().cpu().numpy()
    _refuse_masked(activations, what)
    try:
        arr = np.asarray(activations)
    except ValueError as e:  # ragged nested lists: numpy's message names neither input nor shape
        raise ValueError(
            f"{what} must be a rectangular [seq_len, num_features] array (every row the same "
            f"length); numpy could not make one: {e}"
        ) from None
    if arr.size == 0 and arr.ndim < 2:
        arr = arr.reshape(0, 0)  # an empty sequence ([] or np.array([]))
    if arr.dtype not in (np.float32, np.float16):
        _check_numeric(arr, what)
        arr = _to_float32(arr, what)
    if arr.ndim != 2:
        raise ValueError(
            f"{what} must be [seq_len, num_features]; got an array of shape {arr.shape}"
            + (" (use process_batch for [batch, seq_len, num_features])" if arr.ndim == 3 else "")
        )
    # The engine reads rows in place, so a Fortran-ordered array (np.asfortranarray, a
    # transposed array or torch tensor) or a strided view is copied into C order here, the
    # same values; a C-contiguous array is passed through without a copy.
    return np.ascontiguousarray(arr)


def _to_float32(arr: np.ndarray, what: str) -> np.ndarray:
    """``arr`` as float32, the engine's type. A finite value beyond float32's range would
    become ±infinity and then be refused as non-finite, which the input never held: it is
    named instead."""
    with np.errstate(over="ignore"):
        out = arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.floating) and np.isinf(out).any():
        beyond = np.isinf(out) & np.isfinite(arr)
        if beyond.any():
            at = tuple(int(i) for i in np.argwhere(beyond)[0])
            raise ValueError(
                f"{what}{list(at)} = {float(arr[at])!r} is beyond the range of float32 "
                f"(±{float(np.finfo(np.float32).max):.4g}), in which activations are computed"
            )
    return out


def _check_values(seqs: List[np.ndarray]) -> None:
    """Refuses, before any of them is accumulated, sequences whose values the engine would
    refuse (NaN/±inf) or that would become ±inf in float32, with the engine's wording: a
    batch processed in several chunks is then accumulated whole or not at all."""
    nonfinite = 0
    first = None
    for i, a in enumerate(seqs):
        if a.size == 0:
            continue
        if a.dtype not in (np.float32, np.float16):
            _to_float32(a, f"batch_activations[{i}]")
            if not np.issubdtype(a.dtype, np.floating):
                continue
        bad = ~np.isfinite(a)
        if bad.any():
            nonfinite += int(bad.sum())
            if first is None:
                position, feature = (int(x) for x in np.argwhere(bad)[0])
                first = (i, position, feature)
    if first is not None:
        raise ValueError(
            f"activations contain {nonfinite} non-finite value(s) (NaN/Inf), first at sequence {first[0]} "
            f"of this input, position {first[1]}, feature {first[2]}; NaN/Inf are never folded into "
            "statistics, and nothing of this call was accumulated"
        )


def _check_numeric(arr: np.ndarray, what: str) -> None:
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{what} must be numbers (got dtype {arr.dtype})")
    if np.issubdtype(arr.dtype, np.complexfloating):
        # Casting would keep the real part with only a ComplexWarning: a silent wrong answer.
        raise TypeError(f"{what} must be real numbers (got dtype {arr.dtype})")


def _check_context(context: Any, what: str = "context") -> str:
    if context is None:
        return ""
    if not isinstance(context, str):
        raise TypeError(f"{what} must be a string (the sequence's text or an id), got {type(context).__name__} {context!r}")
    try:
        context.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{what} is not valid Unicode text ({e.reason} at character {e.start}); it must be a "
            "string UTF-8 can encode"
        ) from None
    return context


def _token_name(i: int, seq_lens: List[int], part_of: Optional[Tuple[int, int]]) -> str:
    """How the caller wrote the ``i``-th token of a call's flattened tokens: ``tokens[i]`` for
    one sequence, ``batch_tokens[s][p]`` for a batch (``part_of``: its offset in the caller's
    batch)."""
    if part_of is None and len(seq_lens) == 1:
        return f"tokens[{i}]"
    s = int(np.searchsorted(np.cumsum(seq_lens), i, side="right"))
    p = i - sum(seq_lens[:s])
    return f"batch_tokens[{s + (part_of[0] if part_of else 0)}][{p}]"


def _check_tokens(tokens: Sequence[str], rows: int, what: str = "tokens") -> List[str]:
    if isinstance(tokens, (str, bytes)):
        # A string is a sequence too, of characters: taken as tokens it would silently make
        # every character a token.
        raise TypeError(
            f"{what} must be a list of token strings (one per activation row), got a single "
            f"{type(tokens).__name__} {tokens[:40]!r}"
        )
    try:
        toks = list(tokens)
    except TypeError:
        raise TypeError(f"{what} must be a list of token strings, got {type(tokens).__name__}") from None
    if len(toks) != rows:
        raise ValueError(f"{what}: {len(toks)} tokens for {rows} activation rows; pass one token per row")
    for t in toks:
        if not isinstance(t, str):
            raise TypeError(f"{what} must be strings, found {type(t).__name__} {t!r}")
    return toks


class CallInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``process``/``process_batch``: says how many of the call's sequences the
    dictionary holds (``sequences_done`` of ``sequences_total``), every state alike (engine,
    co-activation sums, callbacks). Pass the sequences from ``sequences_done`` on again to
    complete the call; none of the ones before."""

    def __init__(self, sequences_done: int, sequences_total: int):
        self.sequences_done = sequences_done
        self.sequences_total = sequences_total
        if sequences_done >= sequences_total:
            text = ("interrupted after this call was processed in full: the dictionary holds its data, "
                    "so do not pass it again")
        else:
            text = (f"interrupted: the first {sequences_done} of the {sequences_total} sequences of this "
                    f"call were accumulated, the rest were not; pass sequences {sequences_done}.. again "
                    "to complete it")
        super().__init__(text)


@contextlib.contextmanager
def _interrupt_between_batches(n_sequences: int):
    """Holds Ctrl-C back while the engine and the Python-side state (co-activation sums,
    callbacks) take in a call, so that they never disagree about which data the dictionary
    holds. Yields the ``stop`` callable the engine asks between its batches (it runs without
    the GIL and takes a batch in whole): a Ctrl-C stops a long call at the next batch, and a
    short one when it is done, with a ``CallInterrupted`` that says how far it got. Only in
    the main thread, with Python's own SIGINT handler installed (a program's own handler is
    left alone, and the call then runs to its end)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield None
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield caught.__len__
    except CallInterrupted:
        signal.signal(signal.SIGINT, previous)
        raise
    except BaseException as e:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt() from e
        raise
    signal.signal(signal.SIGINT, previous)
    if caught:
        raise CallInterrupted(n_sequences, n_sequences)


class FeatureExtractor:
    """Extracts per-feature statistics from SAE activations over every token.

    One extractor may be used from several threads: its calls take turns (a call waits,
    with the GIL released, while another one runs)."""

    def __init__(
        self,
        num_features: int,
        feature_dim: int,
        layer: int = 0,
        config: Optional[ExtractionConfig] = None,
        sequence_offset: int = 0,
    ):
        _check_count(num_features, "num_features")
        _check_count(feature_dim, "feature_dim")
        if num_features <= 0:
            raise ValueError(f"num_features must be at least 1, got {num_features}")
        _check_count(sequence_offset, "sequence_offset")
        _check_count((config or ExtractionConfig()).threads, "ExtractionConfig.threads", none_means="all cores")
        self.num_features = int(num_features)
        self.feature_dim = int(feature_dim)
        self.layer = layer
        self.config = config or ExtractionConfig()
        self.model_name = ""
        self.sae_name = ""
        self._engine = _engine.Engine(
            self.num_features,
            json.dumps(self.config.engine_dict()),
            None if self.config.threads is None else int(self.config.threads),
            int(sequence_offset),
        )
        self._callbacks: List[Callable[[FeatureActivation], None]] = []
        self._threshold = self.config.firing_threshold()
        track = self.config.track_coactivation
        if track is None:
            track = self.num_features <= COACTIVATION_AUTO_LIMIT
        self._coact: Optional[np.ndarray] = (
            np.zeros((self.num_features, self.num_features), dtype=np.float64) if track else None
        )
        self._sums: Optional[np.ndarray] = np.zeros(self.num_features, dtype=np.float64) if track else None
        # Smallest and largest value of each feature over all tokens (non-firings as 0): a
        # feature is constant exactly when they are equal, which the raw moments cannot tell
        # (E[x²] - E[x]² leaves rounding residue).
        self._lo: Optional[np.ndarray] = np.full(self.num_features, np.inf) if track else None
        self._hi: Optional[np.ndarray] = np.full(self.num_features, -np.inf) if track else None
        self._feature_set: Optional[FeatureSet] = None
        # The set handed out by ``features``/``finalize``: later ones are moved into it, so a
        # reference kept to it (or an analyzer built on it) sees them, as with the original's
        # single live set.
        self._handed: Optional[FeatureSet] = None
        self._finalized = False
        # Set by FeatureDictionary.load: the engine then holds nothing of the file.
        self._loaded_from: Optional[str] = None
        self._lock = threading.RLock()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def _adopt(self, fs: FeatureSet) -> FeatureSet:
        """Moves the new set ``fs`` into the one handed out before (same object, new
        contents); a feature that was there keeps its object too, with the weights a user set
        on it (``decoder_weight``, ``encoder_weight``, ``bias``: not the engine's)."""
        old = self._handed
        if old is None or old is fs:
            self._handed = fs
            return fs
        for fid, new in fs.features.items():
            kept = old.features.get(fid)
            if kept is None or type(kept) is not type(new):
                continue
            user = {k: kept.__dict__[k] for k in ("decoder_weight", "encoder_weight", "bias") if k in kept.__dict__}
            kept.__dict__.clear()
            kept.__dict__.update(new.__dict__)
            for k, v in user.items():
                engine_value = new.__dict__.get(k)
                if engine_value is None or (k == "bias" and engine_value == 0.0):
                    kept.__dict__[k] = v
            fs.features[fid] = kept
        old.__dict__.clear()
        old.__dict__.update(fs.__dict__)
        return old

    # -- state -------------------------------------------------------------------------
    @property
    def total_tokens(self) -> int:
        """Tokens processed so far."""
        with self._lock:
            return self._engine.total_tokens

    @property
    def _total_tokens(self) -> int:
        """The original's name of ``total_tokens`` (kept for code that read it)."""
        return self.total_tokens

    def _get_context_tokens(self, tokens: Sequence[str], position: int, window: int) -> List[str]:
        """The original's helper: the tokens within ``window`` of ``position``. Kept for code
        that called it; the engine builds the examples' contexts itself (``context_window``
        tokens either side), so overriding it changes nothing."""
        return list(tokens[max(0, position - window) : position + window + 1])

    @property
    def sequence_offset(self) -> int:
        """Index of this extractor's first sequence (example ``metadata["sequence"]``)."""
        with self._lock:
            return self._engine.first_sequence

    @property
    def features(self) -> FeatureSet:
        """The current features: the finalized set, or a fresh snapshot of the live state
        (so statistics are right before ``finalize()`` too)."""
        with self._lock:
            if self._feature_set is None:
                fs, _ = self._build(include_all=True)
                self._feature_set = self._adopt(fs)
                self._finalized = False
            return self._feature_set

    @property
    def feature_set(self) -> FeatureSet:
        return self.features

    @feature_set.setter
    def feature_set(self, value: FeatureSet) -> None:
        self._feature_set = value
        self._handed = value
        self._finalized = True

    def add_callback(self, callback: Callable[[FeatureActivation], None]) -> None:
        """Calls ``callback(FeatureActivation)`` for every firing from now on.

        Calling Python per firing is inherently slow (it runs in Python, after the engine);
        it only happens while callbacks are registered.
        """
        self._callbacks.append(callback)

    # -- processing --------------------------------------------------------------------
    def process_activations(self, activations: Any, tokens: Sequence[str], context: str = "") -> int:
        """Processes one sequence ``[seq_len, num_features]``; returns the firings recorded.
        A non-empty ``context`` (e.g. the sequence's text or a document id) becomes the
        ``context`` of its examples, as in the original library (by default an example's
        ``context`` is its context tokens joined)."""
        arr = _as_float_2d(activations)
        toks = _check_tokens(tokens, arr.shape[0])
        return self._run(arr, toks, [arr.shape[0]], [_check_context(context)])

    def process_batch(
        self,
        batch_activations: Any,
        batch_tokens: Sequence[Sequence[str]],
        batch_contexts: Optional[Sequence[str]] = None,
    ) -> int:
        """Processes several sequences: a ``[batch, seq_len, F]`` array or a list of
        ``[seq_len_i, F]`` arrays/lists; returns the total firings recorded."""
        if hasattr(batch_activations, "detach") and hasattr(batch_activations, "cpu"):
            batch_activations = batch_activations.detach().cpu().numpy()
        batch_tokens = list(batch_tokens)
        if batch_contexts is not None:
            batch_contexts = [_check_context(c, f"batch_contexts[{i}]") for i, c in enumerate(batch_contexts)]
            if len(batch_contexts) != len(batch_tokens):
                raise ValueError(
                    f"batch_contexts has {len(batch_contexts)} entries for {len(batch_tokens)} sequences"
                )
        _refuse_masked(batch_activations, "batch_activations")
        if isinstance(batch_activations, np.ndarray) and batch_activations.ndim == 3:
            b, l, f = batch_activations.shape
            if len(batch_tokens) != b:
                raise ValueError(f"{len(batch_tokens)} token lists for a batch of {b} sequences")
            toks: List[str] = []
            for i, t in enumerate(batch_tokens):
                toks.extend(_check_tokens(t, l, f"batch_tokens[{i}]"))
            arr = batch_activations
            if arr.dtype not in (np.float32, np.float16):
                _check_numeric(arr, "batch_activations")
                arr = _to_float32(arr, "batch_activations")
            # A copy only when not C-contiguous (Fortran-ordered, transposed or strided: see
            # _as_float_2d); reshaping that to rows is then a view.
            arr = np.ascontiguousarray(arr).reshape(b * l, f)
            return self._run(arr, toks, [l] * b, batch_contexts)
        seqs = list(batch_activations)
        if len(seqs) != len(batch_tokens):
            raise ValueError(f"{len(batch_tokens)} token lists for {len(seqs)} activation sequences")
        self._check_live("process_batch()")
        # The sequences go to the engine `batch_size` at a time (each chunk copied into one
        # array), so a bad sequence found in a later chunk would leave the chunks before it
        # accumulated: everything is checked first, the values too when there is more than
        # one chunk (`_check_values`). Sequences given as lists are converted here (their
        # Python floats take several times the memory of the arrays made of them); arrays
        # are checked without a copy. Only an interrupt can still stop a later chunk: the
        # error then says how many sequences were kept.
        token_lists: List[List[str]] = []
        for i, (a, t) in enumerate(zip(seqs, batch_tokens)):
            what = f"batch_activations[{i}]"
            if hasattr(a, "detach") and hasattr(a, "cpu"):
                a = seqs[i] = a.detach().cpu().numpy()
            _refuse_masked(a, what)
            if not isinstance(a, np.ndarray):
                a = seqs[i] = _as_float_2d(a, what)
            elif not (a.ndim == 2 or (a.size == 0 and a.ndim < 2)):
                raise ValueError(f"{what} must be [seq_len, num_features]; got an array of shape {a.shape}")
            if a.dtype not in (np.float32, np.float16):
                _check_numeric(a, what)
            if a.ndim == 2 and a.shape[0] and a.shape[1] != self.num_features:
                raise ValueError(
                    f"{what} has {a.shape[1]} features per token but the extractor was made for {self.num_features}"
                )
            token_lists.append(_check_tokens(t, a.shape[0] if a.ndim == 2 else 0, f"batch_tokens[{i}]"))
        step = max(1, int(self.config.batch_size))
        if len(seqs) > step:
            _check_values(seqs)
        total = 0
        # One guard over every chunk: a Ctrl-C between two chunks (while the next one is
        # converted) is held like one during a chunk, so the CallInterrupted raised always
        # says exactly which sequences the dictionary took.
        with _interrupt_between_batches(len(seqs)) as stop:
            for start in range(0, len(seqs), step):
                # (Before the first chunk the engine's own first look does this.)
                if start and stop is not None and stop():
                    raise CallInterrupted(start, len(seqs))
                try:
                    arrs = [_as_float_2d(a, f"batch_activations[{start + i}]") for i, a in enumerate(seqs[start : start + step])]
                    toks = [t for ts in token_lists[start : start + step] for t in ts]
                    if not arrs:
                        continue
                    # Empty sequences ([] reads as 0 × 0) take their numbers whatever their width.
                    if len({a.shape[1] for a in arrs if a.shape[0]}) > 1:
                        raise ValueError("all sequences of a batch must have the same number of features")
                    width = max(a.shape[1] for a in arrs)
                    dtype = np.float16 if all(a.dtype == np.float16 for a in arrs) else np.float32
                    arr = np.concatenate(
                        [a.astype(dtype, copy=False) if a.shape[0] else np.zeros((0, width), dtype) for a in arrs],
                        axis=0,
                    )
                    ctx = None if batch_contexts is None else batch_contexts[start : start + len(arrs)]
                    total += self._run(arr, toks, [a.shape[0] for a in arrs], ctx, part_of=(start, len(seqs)),
                                       held=stop)
                except CallInterrupted as e:
                    # Counted over the whole batch, not the chunk the interrupt stopped.
                    raise CallInterrupted(start + e.sequences_done, len(seqs)) from None
                except Exception as e:
                    # A callback's error comes after the engine took its chunk in.
                    kept = start + len(arrs) if getattr(e, "_after_accumulating", False) else start
                    if (kept == 0 and start == 0) or getattr(e, "counted_over_input", False):
                        raise
                    said = (f"the first {kept} of the {len(seqs)} sequences of this batch were accumulated "
                            f"before it, the rest not: pass sequences {kept}.. again once fixed")
                    if isinstance(e, (ValueError, TypeError)) and type(e) in (ValueError, TypeError):
                        raise type(e)(f"{e} ({said})") from None
                    e.add_note(said)
                    raise
        return total

    def stream_activations(self, activation_stream: Iterable[Tuple[Any, Sequence[str]]]) -> Iterator[int]:
        """Processes ``(activations, tokens[, context])`` items; yields the firings of each."""
        for item in activation_stream:
            yield self.process_activations(*item)

    def _check_live(self, method: str) -> None:
        loaded_from = getattr(self, "_loaded_from", None)
        if loaded_from is not None:
            raise RuntimeError(
                f"this extractor belongs to a dictionary loaded from {loaded_from}, which holds "
                f"finalized statistics only; {method} needs the accumulator state. Build a new "
                "dictionary over the new activations (or process all shards with sequence_offset "
                "and merge them before finalize)."
            )

    def _run(self, arr: np.ndarray, tokens: List[str], seq_lens: List[int], contexts: Optional[List[str]] = None,
             part_of: Optional[Tuple[int, int]] = None, held: Optional[Callable[[], int]] = None) -> int:
        """``part_of`` = (offset, total) when these sequences are one part of a caller's
        input: errors then count that input's sequences. ``held``: the ``stop`` of a guard
        (``_interrupt_between_batches``) the caller already holds over its whole call."""
        self._check_live("processing activations")
        if held is not None:
            # The caller's guard holds Ctrl-C over a call of several parts.
            with self._lock:
                return self._run_locked(arr, tokens, seq_lens, contexts, held, part_of)
        with self._lock, _interrupt_between_batches(len(seq_lens)) as stop:
            return self._run_locked(arr, tokens, seq_lens, contexts, stop, part_of)

    def _run_locked(self, arr: np.ndarray, tokens: List[str], seq_lens: List[int],
                    contexts: Optional[List[str]] = None, stop: Optional[Callable[[], int]] = None,
                    part_of: Optional[Tuple[int, int]] = None) -> int:
        if arr.shape[0] == 0:
            # Empty sequences still take their numbers, as within a larger call.
            self._engine.skip_sequences(len(seq_lens))
            return 0
        if arr.shape[1] != self.num_features:
            raise ValueError(
                f"activations have {arr.shape[1]} features per token but the extractor was made for {self.num_features}"
            )
        first_seq = self._engine.next_sequence
        try:
            if contexts is not None and not any(contexts):
                contexts = None
            try:
                if arr.dtype == np.float16:
                    n, done = self._engine.process_f16(arr, tokens, seq_lens, contexts, stop, part_of)
                else:
                    n, done = self._engine.process_f32(arr, tokens, seq_lens, contexts, stop, part_of)
            except UnicodeEncodeError:
                # A lone surrogate (e.g. from decoding bytes with "surrogateescape") cannot
                # cross into the engine; say which token, not just the codec's complaint.
                for i, t in enumerate(tokens):
                    try:
                        t.encode("utf-8")
                    except UnicodeEncodeError as e:
                        raise ValueError(
                            f"{_token_name(i, seq_lens, part_of)} ({t!r}) is not valid Unicode text "
                            f"({e.reason}); tokens must be strings UTF-8 can encode"
                        ) from None
                raise
            except ValueError as e:
                # The engine's message already counts the caller's whole input (`part_of`).
                e.counted_over_input = True
                raise
        except ValueError:
            # Non-finite values: the engine looks through an input of several batches before
            # the first, so none was accumulated; should it ever have kept some, the
            # Python-side state takes in exactly those sequences.
            done = self._engine.next_sequence - first_seq
            if done:
                rows = sum(seq_lens[:done])
                self._after_run(arr[:rows], tokens[:rows], seq_lens[:done], first_seq,
                                None if contexts is None else contexts[:done])
            raise
        if done < len(seq_lens):
            rows = sum(seq_lens[:done])
            self._after_run(arr[:rows], tokens[:rows], seq_lens[:done], first_seq,
                            None if contexts is None else contexts[:done])
            raise CallInterrupted(done, len(seq_lens))
        self._after_run(arr, tokens, seq_lens, first_seq, contexts)
        return n

    def _after_run(self, arr: np.ndarray, tokens: List[str], seq_lens: List[int], first_seq: int,
                   contexts: Optional[List[str]] = None) -> None:
        self._feature_set = None
        self._finalized = False
        if self._coact is not None:
            self._accumulate_coactivation(arr)
        if self._callbacks:
            self._fire_callbacks(arr, tokens, seq_lens, first_seq, contexts)

    def _accumulate_coactivation(self, arr: np.ndarray) -> None:
        # Firing values only (non-firings count as 0), in row chunks to bound the temporary.
        chunk = max(1, (1 << 24) // max(1, self.num_features))
        for a in range(0, arr.shape[0], chunk):
            x = arr[a : a + chunk].astype(np.float32)
            # Non-finite values were skipped by the engine: non-firings here too.
            x = np.where(np.isfinite(x) & (x >= self._threshold), x, np.float32(0)).astype(np.float64)
            self._coact += x.T @ x
            self._sums += x.sum(axis=0)
            np.minimum(self._lo, x.min(axis=0), out=self._lo)
            np.maximum(self._hi, x.max(axis=0), out=self._hi)

    def _fire_callbacks(self, arr: np.ndarray, tokens: List[str], seq_lens: List[int], first_seq: int,
                        contexts: Optional[List[str]] = None) -> None:
        w = self.config.context_window
        # As the stored examples: no context text with collect_context off, and the context
        # tokens joined the way the corpus so far calls for (see Engine.tokens_carry_spaces).
        collect = self.config.collect_context
        carry = self._engine.tokens_carry_spaces
        row0, seq = 0, first_seq
        for i, length in enumerate(seq_lens):
            if length == 0:
                seq += 1  # numbered all the same, as the engine numbers it
                continue
            block = arr[row0 : row0 + length].astype(np.float32)
            toks = tokens[row0 : row0 + length]
            rows, cols = np.nonzero(np.isfinite(block) & (block >= self._threshold))
            for r, c in zip(rows.tolist(), cols.tolist()):
                a, b = max(0, r - w), min(length, r + w + 1)
                ctx = toks[a:b]
                act = FeatureActivation(
                    feature_id=c,
                    token=toks[r],
                    position=r,
                    activation=float(block[r, c]),
                    context=("" if not collect else contexts[i] if contexts and contexts[i] else _join_tokens(ctx, carry)),
                    context_tokens=ctx,
                    metadata={"sequence": seq, "context_start": a},
                )
                for cb in self._callbacks:
                    try:
                        cb(act)
                    except Exception as e:
                        # Raised after the engine took these sequences in: a caller passing
                        # its input in parts must count this part as kept.
                        e._after_accumulating = True
                        raise
            row0 += length
            seq += 1

    # -- merging -----------------------------------------------------------------------
    def merge(self, other: "FeatureExtractor") -> int:
        """Folds in another extractor's state (same feature count and config), e.g. one that
        processed another shard in another process. Sequence indices of ``other`` that collide
        with ours are shifted past ours; returns that shift (0 when they were disjoint, e.g.
        when the shard was created with ``sequence_offset``)."""
        if not isinstance(other, FeatureExtractor):
            raise TypeError(
                f"merge() takes a FeatureExtractor, got {type(other).__name__}"
                + (
                    " (merge a FeatureDictionary's .extractor, or merge dictionaries)"
                    if hasattr(other, "extractor")
                    else ""
                )
            )
        if other is self:
            raise ValueError("cannot merge an extractor into itself")
        self._check_live("merge()")
        other._check_live("merge()")
        # Both locks, in one order whoever merges which into which.
        first, second = sorted((self, other), key=id)
        with first._lock, second._lock:
            return self._merge_locked(other)

    def _merge_locked(self, other: "FeatureExtractor") -> int:
        if other.num_features != self.num_features:
            raise ValueError(f"cannot merge {other.num_features} features into {self.num_features}")
        if other.feature_dim != self.feature_dim:
            raise ValueError(
                f"cannot merge features of dimension {other.feature_dim} into ones of dimension "
                f"{self.feature_dim}: the two were made for different SAEs"
            )
        if (self._coact is None) != (other._coact is None):
            raise ValueError("cannot merge extractors that differ in track_coactivation")
        shift = self._engine.merge(other._engine)
        if self._coact is not None:
            self._coact += other._coact
            self._sums += other._sums
            np.minimum(self._lo, other._lo, out=self._lo)
            np.maximum(self._hi, other._hi, out=self._hi)
        self._feature_set = None
        self._finalized = False
        return shift

    # -- finalize ----------------------------------------------------------------------
    def _dictionary_config(self) -> dict:
        return {
            "extraction": self.config.engine_dict(),
            "model_name": self.model_name,
            "sae_name": self.sae_name,
            "layer": self.layer,
            "num_features": self.num_features,
            "feature_dim": self.feature_dim,
        }

    def _build(self, include_all: bool, labeler: Any = None) -> Tuple[FeatureSet, bool]:
        """The engine's finalized features as a ``FeatureSet`` (examples and metadata are
        converted on first access). With ``labeler``, the engine labels and describes them as
        that ``FeatureLabeler`` would, when it can; returns whether it did."""
        with self._lock:
            return self._build_locked(include_all, labeler)

    def _build_locked(self, include_all: bool, labeler: Any = None) -> Tuple[FeatureSet, bool]:
        min_count = None
        if not include_all and not self.config.include_dead_features:
            min_count = int(self.config.min_activation_count)
        fin = self._engine.finalize(json.dumps(self._dictionary_config()), min_count)
        pearson = None
        if self._coact is not None:
            pearson = self.coactivation_pearson()
            partners = {}
            for fid in fin.ids():
                row = pearson[fid].copy()
                row[fid] = -np.inf
                best = np.argsort(-row, kind="stable")[:CORRELATED_PER_FEATURE]
                partners[str(fid)] = [[int(j), float(row[j])] for j in best if np.isfinite(row[j]) and row[j] > 0]
            fin.set_metadata("correlated_features", json.dumps(partners))
        fs = FeatureSet._from_engine(fin)
        if pearson is not None:
            # How the partners were computed, as `featdict build --correlation` records it.
            fs.metadata["correlation"] = {"mode": "exact", "measure": "pearson", "exact": True}
        labeled = labeler is not None and labeler._label_engine(fin, fs)
        with no_gc():
            fs._add_engine_features(fin)
        if pearson is not None:
            fs._pearson = pearson  # type: ignore[attr-defined]
        return fs, labeled

    def coactivation_pearson(self) -> np.ndarray:
        """Pearson correlation of every feature pair's activations over all tokens processed
        (non-firing values count as 0); NaN where a feature is constant. Needs co-activation
        tracking (see ``ExtractionConfig.track_coactivation``)."""
        if self._coact is None:
            raise ValueError(
                "co-activation was not tracked; create the extractor with "
                "ExtractionConfig(track_coactivation=True)"
            )
        n = max(1, self.total_tokens)
        mean = self._sums / n
        cov = self._coact / n - np.outer(mean, mean)
        var = np.clip(np.diag(cov), 0, None)
        sd = np.sqrt(var)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = cov / np.outer(sd, sd)
        constant = (sd == 0) | (self._lo == self._hi)
        r[constant, :] = np.nan
        r[:, constant] = np.nan
        return np.clip(r, -1.0, 1.0)

    def finalize(self) -> FeatureSet:
        """Computes every feature's statistics over all tokens processed so far.

        Features with fewer than ``min_activation_count`` firings are left out unless
        ``include_dead_features`` (their ids are in ``metadata["omitted_features"]``, the
        never-firing ones in ``metadata["dead_features"]``). The state is kept: more
        activations can be processed and ``finalize()`` called again.
        """
        return self._finalize()[0]

    def _finalize(self, labeler: Any = None) -> Tuple[FeatureSet, bool]:
        """``finalize()``, labeled by the engine as ``labeler`` would when it can (see
        ``FeatureLabeler._label_engine``); returns the set and whether it was labeled."""
        self._check_live("finalize()")
        with self._lock:
            fs, labeled = self._build(include_all=False, labeler=labeler)
            fs = self._adopt(fs)
            self._feature_set = fs
            self._finalized = True
            return fs, labeled

    # -- queries -----------------------------------------------------------------------
    def get_top_features(self, n: int = 10) -> List[Feature]:
        """The ``n`` features that fired most (ties by id)."""
        _check_count(n, "n")
        return sorted(self.features, key=lambda f: (-f.activation_count, f.id))[:n]

    def get_feature_by_token(self, token: str, min_activation: float = 0.0) -> List[Tuple[int, float]]:
        """Features that fired on ``token`` anywhere in the corpus (whitespace around tokens
        is ignored when matching), with the feature's highest stored activation on it,
        best first."""
        return search_token(self.features, token, min_activation)


def _token_index(fs: FeatureSet) -> Tuple[Dict[str, List[Tuple[int, int]]], set]:
    """search key (see ``_search_key``) → [(feature id, firings)] over the features still as the engine made
    them (unconverted, so nobody can have changed them), and the set of their ids; built
    once per feature set. Converted and hand-made features are read at each search instead:
    their examples and token lists are plain Python objects a user may change."""
    cached = getattr(fs, "_token_index", None)
    if cached is None:
        idx: Dict[str, List[Tuple[int, int]]] = {}
        ids = set()
        for f in fs:
            src = _engine_source(f, "metadata", "top_activations")
            if src is not None:
                ids.add(f.id)
                for key, firings in src[0].index_entries(src[1]):
                    idx.setdefault(key, []).append((f.id, firings))
        cached = fs._token_index = (idx, ids)  # type: ignore[attr-defined]
    return cached


def _search_key(token: str) -> str:
    """What a token is searched by: stripped, unless it is whitespace only ("\n" and " "
    would both become "", and one search would find every such token)."""
    return token.strip() or token


def _live_token_entries(f: Feature) -> Iterator[Tuple[str, int]]:
    """(search key, firings) of a converted or hand-made feature, each token once."""
    seen = set()
    for entry in top_token_entries(f):
        key = _search_key(entry[0])
        if key not in seen:
            seen.add(key)
            yield key, entry[1]
    for a in f.top_activations:  # hand-made features without token statistics
        key = _search_key(a.token)
        if key not in seen:
            seen.add(key)
            yield key, 1


def _features_on_token(fs: FeatureSet, key: str) -> List[int]:
    """Ids of the features of ``fs`` that fired on the (stripped) token ``key``."""
    idx, indexed = _token_index(fs)
    found = []
    for fid, _firings in idx.get(key, []):
        f = fs.features.get(fid)
        if f is not None and _engine_source(f, "metadata", "top_activations") is not None:
            found.append(fid)
    for fid, f in fs.features.items():
        if fid in indexed and _engine_source(f, "metadata", "top_activations") is not None:
            continue
        if any(k == key for k, _ in _live_token_entries(f)):
            found.append(fid)
    return found


def _examples(f: Feature) -> Iterator[FeatureActivation]:
    yield from f.top_activations
    for group in f.metadata.get("quantile_examples", []):
        for ex in group.get("examples", []):
            yield FeatureActivation.from_dict(ex)


def _smallest_firing(f: Feature) -> float:
    """The smallest activation of ``f`` over all tokens (-inf when unknown)."""
    value = f.metadata.get("min_activation") if isinstance(f.metadata, dict) else None
    return float(value) if isinstance(value, (int, float)) else -math.inf


def search_token(fs: FeatureSet, token: str, min_activation: float = 0.0) -> List[Tuple[int, float]]:
    if not isinstance(token, str):
        return []  # as the original, whose comparison of each example's token never matched
    key = _search_key(token)
    out = []
    for fid in _features_on_token(fs, key):
        f = fs.features[fid]
        src = _engine_source(f, "metadata", "top_activations")
        if src is not None:
            best = src[0].best_example_activation(src[1], key)
        else:
            best = max((a.activation for a in _examples(f) if _search_key(a.token) == key), default=None)
        if best is None:
            # The feature fired on the token but no stored example shows how strongly: its
            # typical value stands in, but only when every firing of it reaches
            # `min_activation` (its smallest does); otherwise whether this token's did is
            # unknown, and the feature is not claimed.
            if min_activation > 0 and not min_activation <= _smallest_firing(f):
                continue
            best = f.mean_activation
        if best >= min_activation:
            out.append((fid, float(best)))
    out.sort(key=lambda x: (-x[1], x[0]))
    return out


class MockSAE:
    """Random sparse activations for tests: ``max(1, int(num_features * sparsity))`` features
    per token with values uniform in [0.1, 2.0)."""

    def __init__(self, input_dim: int, num_features: int, sparsity: float = 0.1, seed: Optional[int] = None):
        # Checked here: numpy's "Cannot take a larger sample than population" would come
        # only at the first encode() and name neither argument.
        if not 0.0 < sparsity <= 1.0:
            raise ValueError(f"MockSAE sparsity must be in (0, 1] (the fraction of features active per token), got {sparsity!r}")
        if num_features < 1:
            raise ValueError(f"MockSAE num_features must be at least 1, got {num_features!r}")
        self.input_dim = input_dim
        self.num_features = num_features
        self.sparsity = sparsity
        self._rng = np.random.default_rng(seed)

    def encode(self, x: Any) -> np.ndarray:
        """``[..., input_dim]`` → ``[..., num_features]`` float32: ``[seq_len, input_dim]``
        gives ``[seq_len, num_features]``, a ``[batch, seq_len, input_dim]`` batch keeps its
        two leading axes, one ``[input_dim]`` vector gives one ``[num_features]`` row."""
        if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensors
            x = x.detach().cpu().numpy()
        shape = np.shape(x)
        if len(shape) == 0 or shape[-1] != self.input_dim:
            raise ValueError(
                f"MockSAE.encode expects inputs of shape [..., input_dim={self.input_dim}], got shape {shape}"
            )
        rows = int(np.prod(shape[:-1], dtype=np.int64))
        k = max(1, int(self.num_features * self.sparsity))
        out = np.zeros((rows, self.num_features), dtype=np.float32)
        for r in range(rows):
            idx = self._rng.choice(self.num_features, size=k, replace=False)
            out[r, idx] = self._rng.uniform(0.1, 2.0, size=k)
        return out.reshape(*shape[:-1], self.num_features)
