//! Ingest: readers turn files (or in-memory arrays) into [`ActivationBatch`]es.
//!
//! Every reader implements [`ActivationSource`]. Dense matrices (`.npy` now, `.safetensors`
//! next) are parsed into a [`DenseMatrix`] — a validated, memory-mapped view — and paired with
//! token sequences by [`DenseSource`]; sparse formats produce CSR batches directly.
//!
//! A batch holds whole sequences when they fit, otherwise a slice of one sequence with up to
//! `context_window` extra rows on each side ("margin") so that examples near a cut still get
//! their full context. Only the `core` rows are accumulated.

pub mod delphi;
mod dense;
pub mod npy;
pub mod open;
pub mod safetensors;
pub mod token_ids;
pub mod tokenizer;
pub mod tokens_json;
mod vocab;

pub use dense::{map_file, map_file_expecting, DenseDtype, DenseMatrix, DenseSource};
pub use tokens_json::{TokenSequences, TokenSpelling};
pub use vocab::{join_tokens, token_carries_space, token_pieces, TokenId, Vocab};

use crate::error::Result;
use std::ops::Range;

/// Activations of a batch's rows.
#[derive(Debug, Clone)]
pub enum BatchValues<'a> {
    /// Row-major `[rows × n_features]` values.
    Dense(&'a [f32]),
    /// Compressed sparse rows; `indices` are sorted within each row.
    Sparse(SparseRows),
}

/// Compressed sparse rows (CSR).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseRows {
    /// Row `r` holds entries `indptr[r]..indptr[r + 1]`.
    pub indptr: Vec<usize>,
    /// Feature index of each entry, ascending within a row.
    pub indices: Vec<u32>,
    /// Value of each entry.
    pub values: Vec<f32>,
}

/// The one currency between readers and the accumulator: rows (tokens) with their
/// sequence/position/token and their feature activations.
#[derive(Debug, Clone)]
pub struct ActivationBatch<'a> {
    /// Features per row.
    pub n_features: usize,
    /// Token id of each row, one id per distinct string: token statistics are keyed by id,
    /// so ids of the vocabulary that share a string arrive as one (see [`Vocab`]).
    pub tokens: Vec<TokenId>,
    /// Sequence index of each row.
    pub sequences: Vec<u64>,
    /// Position of each row in its sequence.
    pub positions: Vec<u32>,
    /// Rows to accumulate; the rest only provide context.
    pub core: Range<usize>,
    /// Activation values.
    pub values: BatchValues<'a>,
    /// Per token id, the key the distinct-token estimate counts it by; `None`: the id
    /// itself (see [`crate::accumulate::distinct::TokenKeys`]).
    pub token_keys: Option<&'a [u64]>,
}

impl ActivationBatch<'_> {
    /// Number of rows, margins included.
    pub fn n_rows(&self) -> usize {
        self.tokens.len()
    }

    /// Activation of `feature` on `row` (0 when absent from a sparse row).
    pub fn value(&self, row: usize, feature: usize) -> f32 {
        match &self.values {
            BatchValues::Dense(d) => d[row * self.n_features + feature],
            BatchValues::Sparse(s) => {
                let idx = &s.indices[s.indptr[row]..s.indptr[row + 1]];
                match idx.binary_search(&(feature as u32)) {
                    Ok(i) => s.values[s.indptr[row] + i],
                    Err(_) => 0.0,
                }
            }
        }
    }

    /// Rows of the same sequence within `window` of `row`, clipped at sequence and batch edges.
    pub fn context_rows(&self, row: usize, window: usize) -> Range<usize> {
        let seq = self.sequences[row];
        let mut start = row;
        while start > 0 && row - start < window && self.sequences[start - 1] == seq {
            start -= 1;
        }
        let mut end = row + 1;
        while end < self.n_rows() && end - row <= window && self.sequences[end] == seq {
            end += 1;
        }
        start..end
    }
}

/// Where activations came from, as far as the input says: the model, and the layer of the
/// hookpoint (`blocks.9.hook_resid_post`, `layers.9`, `model.layers.9`: its first number).
/// `None` where it says nothing. Said by a delphi cache (a `config.json` beside the shards,
/// the hookpoint directory they are in), an SAE's config, or the metadata `featdict encode`
/// writes into a latents file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Provenance {
    /// The model the activations are of.
    pub model_name: Option<String>,
    /// The layer of the hookpoint.
    pub layer: Option<i64>,
}

/// Anything that yields batches: a file reader, a directory of shards, an SAE encoding
/// residuals on the fly.
pub trait ActivationSource {
    /// Features per row.
    fn n_features(&self) -> usize;
    /// Whether [`Self::n_features`] is a guess from the data (one past the largest latent
    /// that fired) because the input does not say how many latents its SAE has: latents
    /// above it that never fired are then not counted as dead but left out.
    fn n_features_guessed(&self) -> bool {
        false
    }
    /// Total rows to be accumulated, when known (for progress bars).
    fn n_tokens_hint(&self) -> Option<u64>;
    /// Strings of the token ids the batches carry (batches carry one id per string).
    fn vocab(&self) -> &Vocab;
    /// Whether the tokens were read decoded from byte-level BPE spelling (a tokens JSON of
    /// `Ġ`-spelled strings, see [`TokenSpelling`]).
    fn tokens_decoded(&self) -> bool {
        false
    }
    /// What reading the tokens could not apply as written (an unknown tokenizer model or
    /// decoder type), for the user to be warned.
    fn token_notes(&self) -> &[String] {
        &[]
    }
    /// A name for messages (usually the activation file's path).
    fn describe(&self) -> &std::path::Path;
    /// The next batch, or `None` when exhausted.
    fn next_batch(&mut self) -> Result<Option<ActivationBatch<'_>>>;
    /// The dimension of the model activations the features were encoded from, when known
    /// (an SAE encoding residuals knows its `d_in`; a file of latents does not).
    fn input_dim(&self) -> Option<usize> {
        None
    }
    /// The model and layer the activations are of, when the input says (an SAE's config,
    /// the metadata `featdict encode` writes into a latents file).
    fn provenance(&self) -> Provenance {
        Provenance::default()
    }
    /// The sequence indices this input's batches are numbered in (empty sequences
    /// included), when known: what a shard built alone occupies, so a merge can tell
    /// whether two shards' indices collide.
    fn sequences(&self) -> Option<Range<u64>> {
        None
    }
}

/// The error for a finite float64 activation `value` at `at` (its sequence, position and
/// feature) that float32, which the statistics are computed in, cannot hold: read as ±inf,
/// it would be reported as a NaN/Inf of the input.
pub(crate) fn beyond_f32(path: &std::path::Path, value: f64, at: &str) -> crate::error::Error {
    crate::error::Error::format(
        path,
        format!(
            "float64 activation {value:e} at {at} is outside the float32 range (±3.4e38) the statistics are computed in; expected finite values below that magnitude"
        ),
    )
}

/// Plans batches over rows grouped into sequences: whole sequences up to `max_rows` per
/// batch, long sequences split with `window` margin rows for context.
#[derive(Debug, Clone)]
pub struct BatchPlanner {
    seq_offsets: Vec<u64>,
    first_sequence: u64,
    max_rows: u64,
    window: u64,
    next_row: u64,
}

/// Rows to load and rows to accumulate for one batch (global row indices).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBatch {
    /// Rows to read (core plus margins).
    pub load: Range<u64>,
    /// Rows to accumulate.
    pub core: Range<u64>,
}

impl BatchPlanner {
    /// `seq_offsets[i]` is the first row of sequence `i`; the last entry is the row count.
    pub fn new(seq_offsets: Vec<u64>, max_rows: u64, window: u64) -> Self {
        Self {
            seq_offsets,
            first_sequence: 0,
            max_rows: max_rows.max(1),
            window,
            next_row: 0,
        }
    }

    /// Numbers sequences from `first` instead of 0 (for shards of one corpus).
    pub fn set_first_sequence(&mut self, first: u64) {
        self.first_sequence = first;
    }

    /// Total rows.
    pub fn n_rows(&self) -> u64 {
        *self.seq_offsets.last().unwrap_or(&0)
    }

    /// Number of sequences.
    pub fn n_sequences(&self) -> usize {
        self.seq_offsets.len().saturating_sub(1)
    }

    /// The sequence indices the batches are numbered in.
    pub fn sequence_range(&self) -> Range<u64> {
        self.first_sequence..self.first_sequence + self.n_sequences() as u64
    }

    /// Sequence holding `row`.
    pub fn sequence_of(&self, row: u64) -> usize {
        self.seq_offsets.partition_point(|&o| o <= row) - 1
    }

    /// First row of sequence `s`.
    pub fn sequence_start(&self, s: usize) -> u64 {
        self.seq_offsets[s]
    }

    /// The next batch, or `None` at the end.
    pub fn next_batch(&mut self) -> Option<PlannedBatch> {
        let total = self.n_rows();
        if self.next_row >= total {
            return None;
        }
        let start = self.next_row;
        let s0 = self.sequence_of(start);
        let seq_end = self.seq_offsets[s0 + 1];
        let end = if start == self.seq_offsets[s0] && seq_end - start <= self.max_rows {
            // Whole sequences while they fit.
            let mut s = s0 + 1;
            while s < self.n_sequences() && self.seq_offsets[s + 1] - start <= self.max_rows {
                s += 1;
            }
            self.seq_offsets[s]
        } else {
            (start + self.max_rows).min(seq_end)
        };
        self.next_row = end;
        let first_seq_start = self.seq_offsets[s0];
        let last_seq = self.sequence_of(end - 1);
        let last_seq_end = self.seq_offsets[last_seq + 1];
        let load = start.saturating_sub(self.window).max(first_seq_start)
            ..(end + self.window).min(last_seq_end);
        Some(PlannedBatch {
            load,
            core: start..end,
        })
    }

    /// Sequence index and position of every row in `rows`.
    pub fn row_coordinates(&self, rows: Range<u64>) -> (Vec<u64>, Vec<u32>) {
        let n = (rows.end - rows.start) as usize;
        let mut seqs = Vec::with_capacity(n);
        let mut pos = Vec::with_capacity(n);
        if n == 0 {
            return (seqs, pos);
        }
        let mut s = self.sequence_of(rows.start);
        for r in rows {
            while r >= self.seq_offsets[s + 1] {
                s += 1;
            }
            seqs.push(self.first_sequence + s as u64);
            pos.push((r - self.seq_offsets[s]) as u32);
        }
        (seqs, pos)
    }
}

/// Opens a dense activation file, choosing the reader by extension.
pub fn open_dense(path: &std::path::Path) -> Result<DenseMatrix> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => npy::open(path),
        Some("safetensors") => safetensors::open_dense(path, None),
        other => Err(crate::Error::format(
            path,
            format!(
                "unsupported activation file extension {:?}; expected .npy or .safetensors",
                other.unwrap_or("")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planner_keeps_whole_sequences_and_splits_long_ones_with_margins() {
        // Sequences of 3, 3, 10, 2 rows; batches of at most 6 rows, window 2.
        let mut p = BatchPlanner::new(vec![0, 3, 6, 16, 18], 6, 2);
        let b: Vec<_> = std::iter::from_fn(|| p.next_batch()).collect();
        assert_eq!(
            b,
            vec![
                PlannedBatch {
                    load: 0..6,
                    core: 0..6
                },
                PlannedBatch {
                    load: 6..14,
                    core: 6..12
                },
                PlannedBatch {
                    load: 10..16,
                    core: 12..16
                },
                PlannedBatch {
                    load: 16..18,
                    core: 16..18
                },
            ]
        );
        let (s, pos) = p.row_coordinates(4..8);
        assert_eq!(s, vec![1, 1, 2, 2]);
        assert_eq!(pos, vec![1, 2, 0, 1]);
    }
}
