//! `feature_dictionary._engine`: the compiled core of the Python package.
//!
//! [`Engine`] wraps the Rust [`Accumulator`] and the token [`Vocab`]: Python feeds it
//! activation arrays (borrowed from numpy without copying when they are C-contiguous
//! float32), it accumulates them with the GIL released, and `finalize` turns the state into a
//! [`Finalized`] dictionary held in Rust, which labels it (`labels.rs`) and hands Python its
//! features on demand (`finalized.rs`, `topy.rs`). Finalizing does not consume the state, so
//! processing, merging and finalizing can be interleaved. [`finalized::load`] reads saved
//! dictionaries (JSON or `.fdict`) into the same form.

use feature_dictionary::accumulate::distinct::text_key;
use feature_dictionary::accumulate::{Accumulator, NonFiniteValues, Settings};
use feature_dictionary::build::{default_threads, VALUES_PER_BATCH};
use feature_dictionary::finalize::finalize_unless;
use feature_dictionary::ingest::{ActivationBatch, BatchValues, TokenId, Vocab};
use feature_dictionary::model::{DictionaryConfig, ExtractionConfig};
use feature_dictionary::Error;
use finalized::Finalized;
use numpy::{PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

mod finalized;
mod labels;
mod topy;

/// The engine's errors as Python exceptions: I/O problems as `OSError` with the errno of
/// their kind, so Python makes them the subclass the original's `open` raised
/// (`FileNotFoundError`, `PermissionError`, `IsADirectoryError`, ...) and sets `filename`;
/// everything else (malformed files, bad input) as `ValueError`. The message names the file.
fn to_py(e: Error) -> PyErr {
    use std::io::ErrorKind;
    let errno = match &e {
        Error::Io { source, .. } => source.raw_os_error().or(match source.kind() {
            ErrorKind::NotFound => Some(libc_errno::ENOENT),
            ErrorKind::PermissionDenied => Some(libc_errno::EACCES),
            ErrorKind::IsADirectory => Some(libc_errno::EISDIR),
            ErrorKind::NotADirectory => Some(libc_errno::ENOTDIR),
            ErrorKind::AlreadyExists => Some(libc_errno::EEXIST),
            _ => None,
        }),
        // A directory where a dictionary file was expected: what `open` says of one.
        Error::Format { path, .. } if path.is_dir() => Some(libc_errno::EISDIR),
        _ => return PyValueError::new_err(e.to_string()),
    };
    let path = match &e {
        Error::Io { path, .. } | Error::Format { path, .. } => path.display().to_string(),
        _ => String::new(),
    };
    match errno {
        Some(errno) => PyOSError::new_err((errno, e.to_string(), path)),
        None => PyOSError::new_err(e.to_string()),
    }
}

/// The POSIX error numbers `to_py` gives (the same on Linux and macOS).
mod libc_errno {
    pub const ENOENT: i32 = 2;
    pub const EACCES: i32 = 13;
    pub const EEXIST: i32 = 17;
    pub const ENOTDIR: i32 = 20;
    pub const EISDIR: i32 = 21;
}

/// The accumulation state of one dictionary (or one shard of it).
#[pyclass(module = "feature_dictionary._engine")]
struct Engine {
    acc: Accumulator,
    vocab: Vocab,
    /// Index given to the first sequence this engine numbers.
    first_sequence: u64,
    /// Index the next sequence will get.
    next_sequence: u64,
    /// The sequence indices this engine holds, as sorted, disjoint `[start, end)` ranges: a
    /// merge of shards numbered apart leaves gaps that a later shard may fill, so the extent
    /// `first_sequence..next_sequence` alone would see overlaps where there are none.
    covered: Vec<(u64, u64)>,
    /// Per vocabulary id, where the token first occurred: (sequence, position). One build
    /// interns tokens in that order, so ids (which break ties between equally frequent
    /// tokens) follow it; [`Engine::merge`] puts the ids back in this order, so merged shards
    /// equal one build whatever the order they are merged in.
    first_seen: Vec<(u64, u32)>,
    /// Per vocabulary id, the key of its text: what the distinct-token estimate counts a
    /// token by, since ids are renumbered when shards merge and texts are not.
    token_keys: Vec<u64>,
    /// The `context` text given with a sequence (`process(acts, tokens, context)`), by
    /// sequence index; only non-empty ones. Finalize gives it to that sequence's examples, as
    /// the original library did. Contexts of sequences no kept example comes from are
    /// dropped from time to time (see [`Engine::forget_unused_contexts`]), so this holds
    /// O(examples) texts, not one per sequence ever seen.
    contexts: BTreeMap<u64, String>,
    /// How many contexts were left after the last clean-up.
    contexts_kept: usize,
    /// Values per batch handed to the accumulator (a call is stopped, if at all, between
    /// batches). Settable so tests can make a small call span many batches.
    #[pyo3(get, set)]
    values_per_batch: usize,
}

/// Contexts held before the first clean-up is worth a scan of every example.
const MIN_CONTEXTS_BEFORE_CLEANUP: usize = 1024;

/// Values of a 2-D array as one of the element types the engine reads.
enum Values<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
}

impl Engine {
    /// Renumbers the vocabulary in the order its tokens first occurred (and the state with
    /// it), as one build over all the data would have numbered it; nothing to do when the
    /// ids already are in that order (shards merged in sequence order).
    fn order_vocab_by_first_seen(&mut self, py: Python<'_>) -> PyResult<()> {
        if self.first_seen.is_sorted() {
            return Ok(());
        }
        let mut order: Vec<TokenId> = (0..self.first_seen.len() as TokenId).collect();
        order.sort_by_key(|&id| (self.first_seen[id as usize], id));
        let mut map = vec![0 as TokenId; order.len()];
        for (new, &old) in order.iter().enumerate() {
            map[old as usize] = new as TokenId;
        }
        let strings: Vec<String> = order
            .iter()
            .map(|&old| self.vocab.token(old).into_owned())
            .collect();
        let acc = &mut self.acc;
        let len = strings.len();
        py.allow_threads(|| acc.remap_tokens(&map, len))
            .map_err(to_py)?;
        self.vocab = Vocab::from_strings(strings);
        self.first_seen = order
            .iter()
            .map(|&old| self.first_seen[old as usize])
            .collect();
        self.token_keys = order
            .iter()
            .map(|&old| self.token_keys[old as usize])
            .collect();
        Ok(())
    }

    /// Drops the contexts of sequences that no kept example comes from (no later example
    /// can: examples only come from new sequences). The scan of every example runs only once
    /// the map has doubled since the last clean-up, so its cost is amortized over the
    /// sequences added.
    fn forget_unused_contexts(&mut self) {
        if self.contexts.len() <= MIN_CONTEXTS_BEFORE_CLEANUP.max(2 * self.contexts_kept) {
            return;
        }
        let used = self.acc.example_sequences();
        self.contexts.retain(|seq, _| used.contains(seq));
        self.contexts_kept = self.contexts.len();
    }

    fn total_firings(&self) -> u64 {
        self.acc
            .features()
            .flat_map(|p| p.moments.iter())
            .map(|m| m.count)
            .sum()
    }

    /// Accumulates `rows × n_features` values holding sequences of `seq_lens` rows; returns
    /// the firings recorded and the input sequences accumulated (all of them unless `stop`,
    /// asked between batches after Python's signal handlers ran, answered true). `part_of`:
    /// where this call's sequences start in the caller's input, and how many that has, for
    /// the error's numbers.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        py: Python<'_>,
        values: Values<'_>,
        shape: [usize; 2],
        tokens: Vec<String>,
        seq_lens: Vec<usize>,
        contexts: Option<Vec<String>>,
        stop: Option<PyObject>,
        part_of: Option<(usize, usize)>,
    ) -> PyResult<(u64, usize)> {
        let n_features = self.acc.n_features();
        let [rows, cols] = shape;
        if cols != n_features {
            return Err(PyValueError::new_err(format!(
                "activations have {cols} features per token but the dictionary was made for {n_features}"
            )));
        }
        let total: usize = seq_lens.iter().sum();
        if total != rows || tokens.len() != rows {
            return Err(PyValueError::new_err(format!(
                "activations have {rows} rows (tokens) but {} token strings and sequence lengths summing to {total} were given; pass one token per activation row",
                tokens.len()
            )));
        }
        if let Some(c) = &contexts {
            if c.len() != seq_lens.len() {
                return Err(PyValueError::new_err(format!(
                    "{} contexts for {} sequences; pass one context per sequence",
                    c.len(),
                    seq_lens.len()
                )));
            }
        }
        // Every sequence of the input is numbered, an empty one too (as a build numbers the
        // lists of a tokens file): a shard's `sequence_offset` is then the input index of its
        // first sequence, whatever sequences are empty.
        let mut ids: Vec<TokenId> = Vec::with_capacity(tokens.len());
        let mut token_strings = tokens.iter();
        for (k, &len) in seq_lens.iter().enumerate() {
            let sequence = self.next_sequence + k as u64;
            for (position, t) in token_strings.by_ref().take(len).enumerate() {
                let id = self.vocab.intern(t);
                if id as usize == self.first_seen.len() {
                    self.first_seen.push((sequence, position as u32));
                    self.token_keys.push(text_key(t));
                }
                ids.push(id);
            }
        }
        let before = self.total_firings();
        let first_sequence = self.next_sequence;
        let (acc, token_keys) = (&mut self.acc, &self.token_keys[..]);
        let values_per_batch = self.values_per_batch.max(1);
        // (input sequences accumulated, the non-finite values that stopped the rest)
        let (done, refused) = py
            .allow_threads(|| -> Result<_, Error> {
                // Between batches only: a batch is taken in whole or not at all.
                let stop_asked = || {
                    stop.as_ref().is_some_and(|stop| {
                        Python::with_gil(|py| {
                            // Runs the caller's SIGINT handler, which records a Ctrl-C for
                            // `stop` to report (an error from a handler stops the call too).
                            py.check_signals().is_err()
                                || stop.call0(py).and_then(|r| r.is_truthy(py)).unwrap_or(true)
                        })
                    })
                };
                // Each engine batch is refused whole when it holds NaN/Inf, but the batches
                // before it would already be in: an input of several batches is looked
                // through first, so a call is accumulated whole or not at all.
                let n_values = seq_lens.iter().sum::<usize>() * n_features;
                if n_values > values_per_batch {
                    if let Some(found) =
                        first_nonfinite(&values, n_features, &seq_lens, first_sequence)
                    {
                        return Ok((0, Some(found)));
                    }
                }
                // Whole sequences per batch, up to `values_per_batch` values (at least one sequence):
                // bounded buffers for f16, long batches for the accumulator.
                let mut buffer: Vec<f32> = Vec::new();
                let mut seq = first_sequence;
                let mut s = 0;
                let mut row0 = 0usize;
                while s < seq_lens.len() {
                    if s > 0 && stop_asked() {
                        return Ok((s, None));
                    }
                    let mut s_end = s;
                    let mut n = 0usize;
                    while s_end < seq_lens.len()
                        && (n == 0 || (n + seq_lens[s_end]) * n_features <= values_per_batch)
                    {
                        n += seq_lens[s_end];
                        s_end += 1;
                    }
                    let mut sequences = Vec::with_capacity(n);
                    let mut positions = Vec::with_capacity(n);
                    for &len in &seq_lens[s..s_end] {
                        sequences.extend(std::iter::repeat_n(seq, len));
                        positions.extend(0..len as u32);
                        seq += 1;
                    }
                    let range = row0 * n_features..(row0 + n) * n_features;
                    let data: &[f32] = match values {
                        Values::F32(v) => &v[range],
                        Values::F16(v) => {
                            use half::slice::HalfFloatSliceExt;
                            buffer.clear();
                            buffer.resize(range.len(), 0.0);
                            v[range].convert_to_f32_slice(&mut buffer);
                            &buffer
                        }
                    };
                    if n > 0 {
                        let batch = ActivationBatch {
                            n_features,
                            tokens: ids[row0..row0 + n].to_vec(),
                            sequences,
                            positions,
                            core: 0..n,
                            values: BatchValues::Dense(data),
                            token_keys: Some(token_keys),
                        };
                        // A batch holding NaN/Inf is refused whole, before anything of it is
                        // accumulated: the caller fixes the input and passes it again, and nothing
                        // is counted twice.
                        if let Some(found) = acc.update_if_finite(&batch)? {
                            return Ok((s, Some(found)));
                        }
                    }
                    row0 += n;
                    s = s_end;
                }
                Ok((seq_lens.len(), None))
            })
            .map_err(to_py)?;
        for (i, &len) in seq_lens[..done].iter().enumerate() {
            if len == 0 {
                continue;
            }
            if let Some(c) = contexts.as_ref().map(|c| &c[i]).filter(|c| !c.is_empty()) {
                self.contexts
                    .insert(self.next_sequence + i as u64, c.clone());
            }
        }
        let seq = self.next_sequence + done as u64;
        add_range(&mut self.covered, self.next_sequence, seq);
        self.next_sequence = seq;
        self.forget_unused_contexts();
        if let Some(found) = refused {
            // Sequences are numbered from `first_sequence` in input order.
            let index = (found.sequence - first_sequence) as usize;
            // Counted over the caller's whole input when this call is one part of it.
            let (offset, total) = part_of.unwrap_or((0, seq_lens.len()));
            let (index, done) = (index + offset, done + offset);
            let kept = if done == 0 {
                "nothing of this call was accumulated".to_string()
            } else {
                format!(
                    "the first {done} of its {total} sequences were accumulated, the rest not (pass sequences {done}.. again once fixed)"
                )
            };
            return Err(PyValueError::new_err(format!(
                "activations contain {} non-finite value(s) (NaN/Inf), first at sequence {index} of this input, position {}, feature {}; NaN/Inf are never folded into statistics, and {kept}",
                found.count, found.position, found.feature
            )));
        }
        Ok((self.total_firings() - before, done))
    }
}

/// The non-finite values of a whole input (`values`, rows of `n_features`, sequences of
/// `seq_lens` numbered from `first_sequence`): how many, and where the
/// first is; `None` when all are finite.
fn first_nonfinite(
    values: &Values<'_>,
    n_features: usize,
    seq_lens: &[usize],
    first_sequence: u64,
) -> Option<NonFiniteValues> {
    let (flat, count) = match values {
        Values::F32(v) => feature_dictionary::finite::nonfinite(v, |x| x.is_finite())?,
        Values::F16(v) => feature_dictionary::finite::nonfinite(v, |x| x.is_finite())?,
    };
    let (row, feature) = (flat / n_features.max(1), flat % n_features.max(1));
    let mut sequence = first_sequence;
    let mut start = 0;
    for &len in seq_lens {
        if row < start + len {
            break;
        }
        start += len;
        sequence += 1;
    }
    Some(NonFiniteValues {
        count: count as u64,
        sequence,
        position: (row - start) as u32,
        feature: feature as u64,
    })
}

/// What pickling an [`Engine`] stores (bincode, after [`STATE_MAGIC`] and
/// [`STATE_VERSION`]): the whole accumulator, the vocabulary and the sequence numbering.
#[derive(Serialize)]
struct StateRef<'a> {
    acc: &'a Accumulator,
    vocab: Vec<std::borrow::Cow<'a, str>>,
    first_sequence: u64,
    next_sequence: u64,
    covered: &'a [(u64, u64)],
    first_seen: &'a [(u64, u32)],
    contexts: &'a BTreeMap<u64, String>,
}

/// Owned form of [`StateRef`] (same encoding).
#[derive(Deserialize)]
struct State {
    acc: Accumulator,
    vocab: Vec<String>,
    first_sequence: u64,
    next_sequence: u64,
    covered: Vec<(u64, u64)>,
    first_seen: Vec<(u64, u32)>,
    contexts: BTreeMap<u64, String>,
}

/// Starts a pickled engine state, so a state from another version is told apart from
/// damaged bytes.
const STATE_MAGIC: &[u8; 8] = b"FDENGINE";
/// The layout of the pickled state; bumped whenever the engine's state changes shape (2:
/// uniform example samples and covered sequence ranges, 2026-11-27; 3: distinct-token
/// estimates, 2026-11-28; 4: activation sums kept about each feature's first firing,
/// 2026-11-28; 5: a feature's examples and token tables in one record allocated at its
/// first firing, 2026-11-28).
const STATE_VERSION: u32 = 5;

/// Rebuilds an engine pickled by `Engine.__reduce__`.
#[pyfunction]
fn engine_from_state(py: Python<'_>, state: &[u8]) -> PyResult<Engine> {
    let older = || {
        PyValueError::new_err(
            "this dictionary was pickled by an older feature_dictionary whose engine state \
             has another layout; build it again from its activations with this version",
        )
    };
    let Some(rest) = state.strip_prefix(STATE_MAGIC.as_slice()) else {
        return Err(older());
    };
    let (version, body) = rest.split_at_checked(4).ok_or_else(older)?;
    let version = u32::from_le_bytes(version.try_into().expect("4 bytes"));
    if version != STATE_VERSION {
        return Err(PyValueError::new_err(format!(
            "this dictionary was pickled by a feature_dictionary with engine state version \
             {version}; this one reads version {STATE_VERSION}: build it again from its \
             activations, or unpickle it with the version that pickled it"
        )));
    }
    let state: State = py
        .allow_threads(|| bincode::deserialize(body))
        .map_err(|e| {
            PyValueError::new_err(format!("not a pickled feature_dictionary engine: {e}"))
        })?;
    if !state.acc.has_consistent_shape() {
        return Err(PyValueError::new_err(
            "not a pickled feature_dictionary engine: its per-feature state does not cover \
             its features (damaged bytes?)",
        ));
    }
    let token_keys = state.vocab.iter().map(|t| text_key(t)).collect();
    Ok(Engine {
        acc: state.acc,
        token_keys,
        vocab: Vocab::from_strings(state.vocab),
        first_sequence: state.first_sequence,
        next_sequence: state.next_sequence,
        covered: state.covered,
        first_seen: state.first_seen,
        contexts_kept: state.contexts.len(),
        contexts: state.contexts,
        values_per_batch: VALUES_PER_BATCH,
    })
}

/// Adds `[start, end)` to `ranges` (sorted, disjoint), joining the ranges it meets or touches.
fn add_range(ranges: &mut Vec<(u64, u64)>, start: u64, end: u64) {
    if start >= end {
        return;
    }
    ranges.push((start, end));
    ranges.sort_unstable();
    let mut joined: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for &(a, b) in ranges.iter() {
        match joined.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => joined.push((a, b)),
        }
    }
    *ranges = joined;
}

/// Whether a range of `a` and one of `b` share a sequence.
fn ranges_intersect(a: &[(u64, u64)], b: &[(u64, u64)]) -> bool {
    a.iter()
        .any(|&(a0, a1)| b.iter().any(|&(b0, b1)| a0 < b1 && b0 < a1))
}

#[pymethods]
impl Engine {
    /// Pickle support: the accumulator state travels as bytes, so shards built in worker
    /// processes (multiprocessing, Ray) can be sent back and merged.
    fn __reduce__(&self, py: Python<'_>) -> PyResult<(PyObject, (Py<PyBytes>,))> {
        let state = StateRef {
            acc: &self.acc,
            vocab: (0..self.vocab.len() as TokenId)
                .map(|i| self.vocab.token(i))
                .collect(),
            first_sequence: self.first_sequence,
            next_sequence: self.next_sequence,
            covered: &self.covered,
            first_seen: &self.first_seen,
            contexts: &self.contexts,
        };
        let mut bytes = STATE_MAGIC.to_vec();
        bytes.extend_from_slice(&STATE_VERSION.to_le_bytes());
        bincode::serialize_into(&mut bytes, &state)
            .map_err(|e| PyValueError::new_err(format!("cannot pickle the engine: {e}")))?;
        let rebuild = py
            .import("feature_dictionary._engine")?
            .getattr("engine_from_state")?;
        Ok((rebuild.unbind(), (PyBytes::new(py, &bytes).unbind(),)))
    }

    /// `Engine(num_features, extraction_json, threads=None, sequence_offset=0)`.
    #[new]
    #[pyo3(signature = (num_features, extraction_json, threads=None, sequence_offset=0))]
    fn new(
        num_features: usize,
        extraction_json: &str,
        threads: Option<usize>,
        sequence_offset: u64,
    ) -> PyResult<Self> {
        if num_features == 0 {
            return Err(PyValueError::new_err("num_features must be at least 1"));
        }
        let extraction: ExtractionConfig = serde_json::from_str(extraction_json)
            .map_err(|e| PyValueError::new_err(format!("invalid extraction config: {e}")))?;
        let settings = Settings::from_config(&extraction).map_err(to_py)?;
        let threads = threads.unwrap_or_else(default_threads).max(1);
        Ok(Self {
            acc: Accumulator::try_new(num_features, settings, threads).map_err(to_py)?,
            vocab: Vocab::new(),
            first_sequence: sequence_offset,
            next_sequence: sequence_offset,
            covered: Vec::new(),
            first_seen: Vec::new(),
            token_keys: Vec::new(),
            contexts: BTreeMap::new(),
            contexts_kept: 0,
            values_per_batch: VALUES_PER_BATCH,
        })
    }

    /// Features per token.
    #[getter]
    fn num_features(&self) -> usize {
        self.acc.n_features()
    }

    /// Tokens accumulated.
    #[getter]
    fn total_tokens(&self) -> u64 {
        self.acc.total_tokens
    }

    /// Non-empty sequences accumulated.
    #[getter]
    fn total_sequences(&self) -> u64 {
        self.acc.total_sequences
    }

    /// Numbers `n` sequences with no tokens (a call whose sequences are all empty): they
    /// take their numbers as the empty sequences of a larger call do.
    fn skip_sequences(&mut self, n: u64) {
        add_range(
            &mut self.covered,
            self.next_sequence,
            self.next_sequence + n,
        );
        self.next_sequence += n;
    }

    /// Index the next sequence will get.
    #[getter]
    fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Index of the first sequence of this engine.
    #[getter]
    fn first_sequence(&self) -> u64 {
        self.first_sequence
    }

    /// Whether the tokens seen so far carry their own leading spaces (byte-level BPE
    /// style): contexts are then shown concatenated, otherwise joined with spaces.
    #[getter]
    fn tokens_carry_spaces(&self) -> bool {
        self.vocab.tokens_carry_spaces()
    }

    /// Firings (activation ≥ min_activation) accumulated, over all features.
    #[getter]
    fn firings(&self) -> u64 {
        self.total_firings()
    }

    /// Accumulates C-contiguous float32 `[rows, F]` activations of sequences with
    /// `seq_lens` rows each (and, optionally, one `context` text per sequence); returns the
    /// number of firings recorded and of input sequences accumulated. `stop`, a callable, is
    /// asked between batches (after Python's signal handlers ran) whether to stop there; the
    /// sequences count says how far the call got. `part_of` = (offset, total) when the call
    /// is one part of a larger input, so that errors count that input's sequences.
    #[pyo3(signature = (acts, tokens, seq_lens, contexts=None, stop=None, part_of=None))]
    #[allow(clippy::too_many_arguments)]
    fn process_f32(
        &mut self,
        py: Python<'_>,
        acts: PyReadonlyArray2<'_, f32>,
        tokens: Vec<String>,
        seq_lens: Vec<usize>,
        contexts: Option<Vec<String>>,
        stop: Option<PyObject>,
        part_of: Option<(usize, usize)>,
    ) -> PyResult<(u64, usize)> {
        let (slice, shape) = contiguous(&acts)?;
        self.run(
            py,
            Values::F32(slice),
            shape,
            tokens,
            seq_lens,
            contexts,
            stop,
            part_of,
        )
    }

    /// Like `process_f32` for float16 arrays (converted batch by batch, never as a whole).
    #[pyo3(signature = (acts, tokens, seq_lens, contexts=None, stop=None, part_of=None))]
    #[allow(clippy::too_many_arguments)]
    fn process_f16(
        &mut self,
        py: Python<'_>,
        acts: PyReadonlyArray2<'_, half::f16>,
        tokens: Vec<String>,
        seq_lens: Vec<usize>,
        contexts: Option<Vec<String>>,
        stop: Option<PyObject>,
        part_of: Option<(usize, usize)>,
    ) -> PyResult<(u64, usize)> {
        let (slice, shape) = contiguous(&acts)?;
        self.run(
            py,
            Values::F16(slice),
            shape,
            tokens,
            seq_lens,
            contexts,
            stop,
            part_of,
        )
    }

    /// Folds another engine's state in (same feature count and extraction settings). When the
    /// two engines' sequence indices overlap, the other's are shifted past this one's; returns
    /// the shift applied (0 when the ranges were already disjoint).
    fn merge(&mut self, py: Python<'_>, other: PyRef<'_, Engine>) -> PyResult<u64> {
        if let Some(diff) = self
            .acc
            .settings()
            .difference_spelling_bools(other.acc.settings(), |b| if b { "True" } else { "False" })
        {
            return Err(PyValueError::new_err(format!(
                "cannot merge dictionaries built with different extraction settings (this one's vs the other's): {diff}"
            )));
        }
        let mut theirs = other.acc.clone();
        let (a0, a1) = (self.first_sequence, self.next_sequence);
        let (b0, b1) = (other.first_sequence, other.next_sequence);
        let overlap = ranges_intersect(&self.covered, &other.covered);
        // Past everything this engine holds, so the shifted ranges cannot meet any of it.
        let shift = if overlap { a1 - b0 } else { 0 };
        let their_ranges = other.covered.clone();
        let map: Vec<TokenId> = (0..other.vocab.len() as TokenId)
            .map(|id| {
                let ours = self.vocab.intern(&other.vocab.token(id));
                let (seq, pos) = other.first_seen[id as usize];
                let theirs = (seq + shift, pos);
                match self.first_seen.get_mut(ours as usize) {
                    Some(seen) => *seen = (*seen).min(theirs),
                    None => self.first_seen.push(theirs),
                }
                ours
            })
            .collect();
        for id in self.token_keys.len()..self.vocab.len() {
            let key = text_key(&self.vocab.token(id as TokenId));
            self.token_keys.push(key);
        }
        for (&seq, c) in &other.contexts {
            self.contexts.insert(seq + shift, c.clone());
        }
        drop(other);
        let (acc, keys) = (&mut self.acc, &self.token_keys);
        py.allow_threads(|| {
            if shift > 0 {
                theirs.shift_sequences(shift);
            }
            acc.merge_remapped(theirs, &map, Some(keys))
        })
        .map_err(to_py)?;
        if b0 < b1 {
            self.first_sequence = if a0 < a1 {
                a0.min(b0 + shift)
            } else {
                b0 + shift
            };
            self.next_sequence = a1.max(b1 + shift);
        }
        for (start, end) in their_ranges {
            add_range(&mut self.covered, start + shift, end + shift);
        }
        self.order_vocab_by_first_seen(py)?;
        self.forget_unused_contexts();
        Ok(shift)
    }

    /// The finalized dictionary (the engine's `finalize`, the state is kept). With
    /// `min_count`, features that fired fewer times are left out and listed in
    /// `metadata.omitted_features`; never-firing ones in `metadata.dead_features`.
    #[pyo3(signature = (config_json, min_count=None))]
    fn finalize(
        &self,
        py: Python<'_>,
        config_json: &str,
        min_count: Option<u64>,
    ) -> PyResult<Finalized> {
        let config: DictionaryConfig = serde_json::from_str(config_json)
            .map_err(|e| PyValueError::new_err(format!("invalid dictionary config: {e}")))?;
        let (acc, vocab, contexts) = (&self.acc, &self.vocab, &self.contexts);
        // Ctrl-C stops a long finalize (millions of features) within a moment: the state
        // is only read, so nothing is lost and finalize can be called again.
        let dict = interruptible(py, |stop| {
            let collect_context = config.extraction.collect_context;
            let mut dict = finalize_unless(acc, vocab, config, stop)?;
            if collect_context && !contexts.is_empty() {
                set_contexts(&mut dict, contexts);
            }
            if let Some(min) = min_count {
                let dead: Vec<u64> = dict
                    .features()
                    .filter(|f| f.activation_count == 0)
                    .map(|f| f.id)
                    .collect();
                dict.drop_rare(min);
                dict.feature_set
                    .metadata
                    .extra
                    .insert("dead_features".into(), serde_json::json!(dead));
            }
            Some(dict)
        })?
        .ok_or_else(|| PyKeyboardInterrupt::new_err("finalize was interrupted"))?;
        Ok(Finalized::new(dict))
    }
}

/// How often a thread waiting for [`interruptible`] work looks for Ctrl-C.
const SIGNAL_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Runs `work` on another thread, with the GIL released, while this one runs Python's
/// signal handlers every [`SIGNAL_POLL`]: when one raises (Ctrl-C: `KeyboardInterrupt`),
/// `work` is asked to stop through its flag, and that error is returned once it has.
/// (A call that simply ran without the GIL would take Ctrl-C only when it ended.)
pub(crate) fn interruptible<T: Send>(
    py: Python<'_>,
    work: impl FnOnce(&AtomicBool) -> T + Send,
) -> PyResult<T> {
    interruptible_with_result(py, work).map_err(|(interrupt, _)| interrupt)
}

/// [`interruptible`], whose interrupt comes with what `work` returned once it stopped (or
/// `None` when it failed): a caller whose work may have finished before it saw the flag
/// (a file already renamed into place) can say so.
pub(crate) fn interruptible_with_result<T: Send>(
    py: Python<'_>,
    work: impl FnOnce(&AtomicBool) -> T + Send,
) -> Result<T, (PyErr, Option<T>)> {
    use std::sync::mpsc::channel;
    let stop = AtomicBool::new(false);
    let (done, finished) = channel();
    std::thread::scope(|scope| {
        let stop = &stop;
        scope.spawn(move || {
            // The receiver may be gone after an interrupt: the result is then not wanted.
            let _ = done.send(work(stop));
        });
        match wait_running_signal_handlers(py, finished) {
            Ok(result) => Ok(result),
            Err(Waited::Interrupted(interrupt, finished)) => {
                stop.store(true, Ordering::Relaxed);
                // Waits for the worker to give up (the scope joins it).
                let result = py.allow_threads(move || finished.recv()).ok();
                Err((interrupt, result))
            }
            // The worker panicked: the scope's join passes the panic on.
            Err(Waited::WorkerFailed(e)) => Err((e, None)),
        }
    })
}

/// How [`wait_running_signal_handlers`] ended without a result.
enum Waited<T> {
    /// A signal handler raised this (Ctrl-C: `KeyboardInterrupt`); the receiver is given
    /// back so that the caller may still wait for its worker.
    Interrupted(PyErr, std::sync::mpsc::Receiver<T>),
    /// The worker ended without sending (it panicked).
    WorkerFailed(PyErr),
}

/// Waits for the one result of a worker thread on `finished`, with the GIL released,
/// running Python's signal handlers every [`SIGNAL_POLL`].
fn wait_running_signal_handlers<T: Send>(
    py: Python<'_>,
    finished: std::sync::mpsc::Receiver<T>,
) -> Result<T, Waited<T>> {
    use std::sync::mpsc::RecvTimeoutError;
    // The receiver goes into each wait and comes back out (it cannot be shared).
    let mut finished = finished;
    loop {
        let (received, back) = py.allow_threads(move || {
            let received = finished.recv_timeout(SIGNAL_POLL);
            (received, finished)
        });
        finished = back;
        match received {
            Ok(result) => return Ok(result),
            Err(RecvTimeoutError::Timeout) => {
                if let Err(interrupt) = py.check_signals() {
                    return Err(Waited::Interrupted(interrupt, finished));
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Waited::WorkerFailed(PyRuntimeError::new_err(
                    "the engine's worker thread failed",
                )))
            }
        }
    }
}

/// Runs `work` on a thread of its own, with the GIL released, while this one runs Python's
/// signal handlers every [`SIGNAL_POLL`]: when one raises (Ctrl-C), that error is returned
/// at once and the thread is left to finish on its own, its result dropped. For work that
/// changes nothing outside itself (reading a file) and has no flag to look at: waiting for
/// it to end would hold Ctrl-C as long as the work.
pub(crate) fn abandonable<T: Send + 'static>(
    py: Python<'_>,
    work: impl FnOnce() -> T + Send + 'static,
) -> PyResult<T> {
    use std::sync::mpsc::channel;
    let (done, finished) = channel();
    std::thread::Builder::new()
        .name("feature-dictionary-load".into())
        .spawn(move || {
            // The receiver is gone after an interrupt: the result is then not wanted.
            let _ = done.send(work());
        })
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start a thread: {e}")))?;
    wait_running_signal_handlers(py, finished).map_err(|waited| match waited {
        Waited::Interrupted(e, _) | Waited::WorkerFailed(e) => e,
    })
}

/// Gives every example (top and quantile samples) of a sequence processed with a `context`
/// text that text, as the original library's `FeatureActivation.context`; examples of
/// sequences without one keep the context tokens joined.
fn set_contexts(
    dict: &mut feature_dictionary::FeatureDictionary,
    contexts: &BTreeMap<u64, String>,
) {
    for f in dict.feature_set.features.values_mut() {
        let samples = f
            .metadata
            .quantile_examples
            .iter_mut()
            .flat_map(|g| g.examples.iter_mut());
        for a in f.top_activations.iter_mut().chain(samples) {
            if let Some(c) = a.metadata.sequence.and_then(|s| contexts.get(&s)) {
                a.context.clone_from(c);
            }
        }
    }
}

/// A 2-D numpy array's values (it must be C-contiguous: the engine reads rows in place) and
/// its shape. The Python layer (`extraction.py`) copies Fortran-ordered and strided arrays
/// into C order before calling in, so the error is for direct callers of `_engine`.
fn contiguous<'a, T: numpy::Element>(
    acts: &'a PyReadonlyArray2<'_, T>,
) -> PyResult<(&'a [T], [usize; 2])> {
    let shape = [acts.shape()[0], acts.shape()[1]];
    let slice = acts.as_slice().map_err(|_| {
        PyValueError::new_err("activations must be C-contiguous (use numpy.ascontiguousarray)")
    })?;
    Ok((slice, shape))
}

/// The compiled module.
/// Writes `text` to `path` as the engine writes every file: a temporary file synced and
/// renamed over it (through a symbolic link to the linked file), keeping the replaced file's
/// permissions, and refusing a path that is not a regular file (a device, a FIFO).
#[pyfunction]
fn write_text_atomically(py: Python<'_>, path: &str, text: &str) -> PyResult<()> {
    use std::io::Write;
    let path = std::path::Path::new(path);
    py.allow_threads(|| {
        feature_dictionary::store::write_atomically(path, |w| w.write_all(text.as_bytes()))
    })
    .map_err(to_py)
}

/// Waits up to `seconds` inside [`interruptible`] for its stop flag; returns whether the
/// flag came. Lets the tests check that Ctrl-C reaches long engine work (finalize) without
/// building a dictionary big enough to take long.
#[pyfunction]
fn _wait_for_interrupt(py: Python<'_>, seconds: f64) -> PyResult<bool> {
    interruptible(py, |stop| {
        let end = std::time::Instant::now() + std::time::Duration::from_secs_f64(seconds);
        while std::time::Instant::now() < end {
            if stop.load(Ordering::Relaxed) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        false
    })
}

/// A manual label's text as every face keeps it (trimmed), or a `ValueError` saying why it
/// is refused: empty, over 200 characters, control or bidirectional-control characters,
/// nothing visible — the rules of `featdict label --set` and the server.
#[pyfunction]
fn validate_label(text: &str) -> PyResult<String> {
    feature_dictionary::store::fdict::validate_label(text).map_err(to_py)
}

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add_function(wrap_pyfunction!(write_text_atomically, m)?)?;
    m.add_function(wrap_pyfunction!(finalized::save, m)?)?;
    m.add_class::<Finalized>()?;
    m.add_function(wrap_pyfunction!(finalized::load, m)?)?;
    m.add_function(wrap_pyfunction!(engine_from_state, m)?)?;
    m.add_function(wrap_pyfunction!(_wait_for_interrupt, m)?)?;
    m.add_function(wrap_pyfunction!(validate_label, m)?)?;
    m.add(
        "MAX_MANUAL_LABELS",
        feature_dictionary::store::fdict::MAX_MANUAL_LABELS,
    )?;
    m.add("FORMAT_MARKER", feature_dictionary::FORMAT_MARKER)?;
    Ok(())
}
