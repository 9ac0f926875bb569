//! Per-feature state of a contiguous range of features, updated batch by batch.
//!
//! A batch is transposed into per-feature columns (see [`FeatureRange::update`]) and each
//! column is replayed against its feature's state while that state is hot in L1. Hot
//! scalars (count, sums, extrema, positions) sit together in one cache line per feature.

use super::distinct::TokenKeys;
use super::histogram::{self, N_BINS};
use super::ngrams::{self, NgramTable};
use super::samples::{self, Samples};
use super::token_sketch::TokenSketch;
use super::topk::{ContextActivations, ContextTokens, Example, TopK};
use super::{NonFiniteValues, Settings};
use crate::ingest::{ActivationBatch, BatchValues, TokenId};

/// Scalars touched by every firing.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(64))]
#[cfg_attr(feature = "serde-state", derive(serde::Serialize, serde::Deserialize))]
pub struct Moments {
    /// Firings.
    pub count: u64,
    /// Σ (activation − min). The sums are kept about the smallest firing activation, so
    /// that the variance of activations far from 0 and close to each other does not vanish
    /// in the cancellation of Σx²/n − mean² (a feature firing 12,345 times at 98,765.43 had
    /// a std of 0.044); the minimum, unlike the first firing, is the same whatever order
    /// parts are merged in, so a merge computes the variance about the same value as one
    /// pass.
    pub shifted_sum: f64,
    /// Σ (activation − min)².
    pub shifted_sum_sq: f64,
    /// Smallest firing activation (+∞ before the first).
    pub min: f32,
    /// Largest firing activation (−∞ before the first).
    pub max: f32,
    /// Non-finite values seen (never folded into the other fields).
    pub nonfinite: u32,
    /// Σ position.
    pub pos_sum: u64,
    /// Σ position².
    pub pos_sum_sq: u64,
}

impl Moments {
    /// Σ activation.
    pub fn sum(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        self.min as f64 * self.count as f64 + self.shifted_sum
    }

    /// Mean activation (NaN before the first firing).
    pub fn mean(&self) -> f64 {
        self.min as f64 + self.shifted_sum / self.count as f64
    }

    /// Population variance of the activations (NaN before the first firing).
    pub fn variance(&self) -> f64 {
        let n = self.count as f64;
        let mean_offset = self.shifted_sum / n;
        (self.shifted_sum_sq / n - mean_offset * mean_offset).max(0.0)
    }

    /// Makes `min` the smaller `v`, moving the sums to it: Σ(x − v) = Σ(x − m) + n·(m − v),
    /// Σ(x − v)² = Σ(x − m)² + 2(m − v)·Σ(x − m) + n·(m − v)².
    #[cold]
    fn lower_min(&mut self, v: f32) {
        if self.count > 0 {
            let (n, delta) = (self.count as f64, self.min as f64 - v as f64);
            self.shifted_sum_sq += 2.0 * delta * self.shifted_sum + n * delta * delta;
            self.shifted_sum += n * delta;
        }
        self.min = v;
    }

    /// Adds the count, sums and minimum of `other` (over other tokens), both sums moved
    /// to the smaller minimum.
    fn add_sums(&mut self, other: &Moments) {
        if other.count == 0 {
            return;
        }
        if other.min < self.min {
            self.lower_min(other.min);
        }
        let (n, delta) = (other.count as f64, other.min as f64 - self.min as f64);
        self.shifted_sum_sq +=
            other.shifted_sum_sq + 2.0 * delta * other.shifted_sum + n * delta * delta;
        self.shifted_sum += other.shifted_sum + n * delta;
        self.count += other.count;
    }
}

impl Default for Moments {
    fn default() -> Self {
        Self {
            count: 0,
            shifted_sum: 0.0,
            shifted_sum_sq: 0.0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            nonfinite: 0,
            pos_sum: 0,
            pos_sum_sq: 0,
        }
    }
}

/// What a feature keeps besides its scalars and histogram: its examples and token tables.
/// Allocated at the feature's first firing: most features of a wide SAE never fire on a
/// given corpus, and each then costs an 8-byte pointer instead of these ≈ 230 bytes (16M
/// features: 0.1 GiB instead of 3.6).
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde-state", derive(serde::Serialize, serde::Deserialize))]
pub struct Kept {
    /// Top-k examples.
    pub topk: TopK,
    /// Uniform example sample.
    pub samples: Samples,
    /// Firing tokens.
    pub tokens: TokenSketch,
    /// Firing n-grams (empty when n-grams are off).
    pub ngrams: NgramTable,
}

/// The [`Kept`] of a feature that never fired.
fn nothing_kept() -> &'static Kept {
    static EMPTY: std::sync::OnceLock<Kept> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Kept::default)
}

/// State of features `start..start + len`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde-state", derive(serde::Serialize, serde::Deserialize))]
pub struct FeatureRange {
    /// First feature (global index).
    pub start: usize,
    /// Per-feature moments.
    pub moments: Vec<Moments>,
    /// Firings at positions < 5, 5..20, 20..50 (the original's buckets; "late" is the rest).
    pub pos_buckets: Vec<[u64; 3]>,
    /// Histogram counts, `N_BINS` per feature, as u32 to halve the hot footprint; they are
    /// moved into `hist_spill` before they could overflow (see [`FeatureRange::update`]).
    hist: Vec<u32>,
    /// Histogram counts moved out of `hist` (empty until the first spill).
    hist_spill: Vec<u64>,
    /// Rows accumulated since the last spill: no u32 bin can exceed it.
    rows_since_spill: u64,
    /// Examples and token tables per feature, from its first firing on (`None` before:
    /// see [`Kept`]).
    pub(super) kept: Vec<Option<Box<Kept>>>,
    /// Sample admission threshold per feature (a firing hashing below it enters).
    pub sample_thresholds: Vec<u64>,
    /// First non-finite value seen: (sequence, position, feature).
    pub first_nonfinite: Option<(u64, u32, u64)>,
    /// Buffers reused from batch to batch; not state.
    #[cfg_attr(feature = "serde-state", serde(skip))]
    scratch: Scratch,
}

/// The buffers one [`FeatureRange::update`] works in, kept to reuse their memory. Between
/// calls they hold nothing meaningful, so they are not part of the state: not serialized,
/// not merged, and never make two ranges unequal.
#[derive(Debug, Clone, Default)]
struct Scratch {
    /// Per-tile buckets of `(row << TILE_BITS | feature in tile, value)` (always empty
    /// between calls).
    buckets: Vec<TileBucket>,
    /// One tile's nonzeros grouped by feature: `(row, value)` (as long as the largest tile
    /// so far, only the current tile's prefix is meaningful).
    grouped: Vec<(u32, f32)>,
    /// [`sequence_spans`] of the current batch.
    spans: Vec<(u32, u32)>,
    /// [`samples::row_key`] of each row of the current batch.
    row_keys: Vec<u64>,
    /// Indices of one column's firings (as long as the longest column so far, only the
    /// prefix a replay counted is meaningful).
    firings: Vec<u32>,
    /// The tokens of those firings (same length and meaning as `firings`).
    tokens: Vec<TokenId>,
    /// One column's sample candidates: `(index in the column, hash)` of the firings whose
    /// hash was below the running cutoff when seen (reused like `firings`).
    candidates: Vec<(u32, u64)>,
    /// How many entries of `candidates` the current column filled.
    n_candidates: usize,
    /// The smallest candidate hashes of the current column (one slot per sample).
    smallest: Vec<u64>,
    /// How many of the `smallest` slots the current column filled.
    held: u32,
    /// The hashes `admit_samples` chooses its cutoff among.
    union: Vec<u64>,
    /// Top-k slots admitted in the current column.
    topk_slots: Vec<u32>,
    /// Samples (indices in `items`) admitted in the current column.
    sample_items: Vec<u32>,
}

impl PartialEq for Scratch {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Tiles of the transpose are small enough that a tile's counting sort is trivial and few
/// enough that appending to all of them streams well.
use scan::{prefetch, TileBucket, TILE, TILE_BITS};
const TILE_MASK: u32 = TILE as u32 - 1;

/// Rows a batch may have: a bucket key packs the row above the tile's feature bits.
pub const MAX_BATCH_ROWS: usize = 1 << (32 - TILE_BITS);

/// `len` copies of `value`, or an error when they cannot be allocated.
fn try_filled<T: Clone>(len: usize, value: T) -> Result<Vec<T>, std::collections::TryReserveError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)?;
    v.resize(len, value);
    Ok(v)
}

/// `len` zeros, allocated as `vec![0; len]` allocates them (memory the OS hands out zeroed
/// and untouched until used, so the state of features that never fire costs no page), or an
/// error when they cannot be allocated.
fn try_zeroed<T: Clone + Default>(len: usize) -> Result<Vec<T>, std::collections::TryReserveError> {
    // A failed reservation is the failure `vec!` would abort on; a successful one is released
    // at once and `vec!` takes the same amount again.
    Vec::<T>::new().try_reserve_exact(len)?;
    Ok(vec![T::default(); len])
}

impl FeatureRange {
    /// Bytes of the state every feature starts with (before any firing).
    pub const BYTES_PER_FEATURE: usize = std::mem::size_of::<Moments>()
        + std::mem::size_of::<[u64; 3]>()
        + N_BINS * std::mem::size_of::<u32>()
        + std::mem::size_of::<Option<Box<Kept>>>()
        + std::mem::size_of::<u64>();

    /// Empty state for features `start..start + len`.
    pub fn new(start: usize, len: usize) -> Self {
        match Self::try_new(start, len) {
            Ok(range) => range,
            Err(e) => panic!("cannot allocate the state of {len} features: {e}"),
        }
    }

    /// [`FeatureRange::new`], or an error when its state cannot be allocated.
    pub fn try_new(start: usize, len: usize) -> Result<Self, std::collections::TryReserveError> {
        let scaled = |per: usize| len.saturating_mul(per);
        Ok(Self {
            start,
            moments: try_filled(len, Moments::default())?,
            pos_buckets: try_zeroed(len)?,
            hist: try_zeroed(scaled(N_BINS))?,
            hist_spill: Vec::new(),
            rows_since_spill: 0,
            kept: try_zeroed(len)?,
            sample_thresholds: try_filled(len, u64::MAX)?,
            first_nonfinite: None,
            scratch: Scratch::default(),
        })
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.moments.len()
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.moments.is_empty()
    }

    /// Whether every per-feature vector holds `len()` entries (the histograms `N_BINS`
    /// each): what state read back from bytes must show before it is used, since an update
    /// indexes them all by feature.
    pub fn has_consistent_shape(&self) -> bool {
        let n = self.len();
        self.pos_buckets.len() == n
            && self.hist.len() == n * N_BINS
            && (self.hist_spill.is_empty() || self.hist_spill.len() == n * N_BINS)
            && self.kept.len() == n
            && self.sample_thresholds.len() == n
    }

    /// Examples and token tables of feature `local` (empty ones if it never fired).
    pub fn kept(&self, local: usize) -> &Kept {
        self.kept[local]
            .as_deref()
            .unwrap_or_else(|| nothing_kept())
    }

    /// Top-k examples of feature `local`.
    pub fn topk(&self, local: usize) -> &TopK {
        &self.kept(local).topk
    }

    /// Uniform example sample of feature `local`.
    pub fn samples(&self, local: usize) -> &Samples {
        &self.kept(local).samples
    }

    /// Firing tokens of feature `local`.
    pub fn tokens(&self, local: usize) -> &TokenSketch {
        &self.kept(local).tokens
    }

    /// Firing n-grams of feature `local`.
    pub fn ngrams(&self, local: usize) -> &NgramTable {
        &self.kept(local).ngrams
    }

    /// [`FeatureRange::kept`], allocated now if the feature had nothing yet.
    fn kept_mut(&mut self, local: usize) -> &mut Kept {
        self.kept[local].get_or_insert_with(Box::default)
    }

    /// The kept state of every feature that has any.
    fn all_kept_mut(&mut self) -> impl Iterator<Item = &mut Kept> {
        self.kept.iter_mut().flatten().map(|k| &mut **k)
    }

    /// Histogram of feature `local` (exact counts).
    pub fn histogram(&self, local: usize) -> Vec<u64> {
        let bins = local * N_BINS..(local + 1) * N_BINS;
        let mut h: Vec<u64> = self.hist[bins.clone()].iter().map(|&c| c as u64).collect();
        if !self.hist_spill.is_empty() {
            for (a, b) in h.iter_mut().zip(&self.hist_spill[bins]) {
                *a += b;
            }
        }
        h
    }

    fn spill_histograms(&mut self) {
        if self.hist_spill.is_empty() {
            self.hist_spill = vec![0; self.hist.len()];
        }
        for (s, h) in self.hist_spill.iter_mut().zip(self.hist.iter_mut()) {
            *s += *h as u64;
            *h = 0;
        }
        self.rows_since_spill = 0;
    }

    /// Accumulates the core rows of `batch` for this range's features.
    ///
    /// Two phases. Transpose: every nonzero value of every row of the batch (margins
    /// included) is dropped into the bucket of its feature tile, then a tile's bucket is
    /// grouped by feature, so each feature gets its batch "column": its nonzero values in
    /// row order. Replay: each feature's column updates its state while that state is hot in
    /// L1, and the contexts of examples admitted in the batch are read from the same column
    /// (the context activations of a feature are its own nonzeros on neighbouring rows), not
    /// gathered from rows that lie a whole dense row apart in memory.
    pub fn update(&mut self, batch: &ActivationBatch<'_>, settings: &Settings) {
        self.prepare(batch, false);
        self.replay_prepared(batch, settings);
    }

    /// The first phase of [`FeatureRange::update`], which changes no state: transposes the
    /// batch into the scratch buckets. With `find_nonfinite`, also returns the NaN and ±∞
    /// values on the batch's core rows (so an update can be refused before anything of the
    /// batch is accumulated); `None` when there are none or they were not looked for.
    pub(crate) fn prepare(
        &mut self,
        batch: &ActivationBatch<'_>,
        find_nonfinite: bool,
    ) -> Option<NonFiniteValues> {
        let mut buckets = std::mem::take(&mut self.scratch.buckets);
        buckets.resize_with(self.len().div_ceil(TILE), TileBucket::default);
        self.transpose(batch, &mut buckets);
        let found = if find_nonfinite {
            self.nonfinite_in(&buckets, batch)
        } else {
            None
        };
        self.scratch.buckets = buckets;
        found
    }

    /// Drops what [`FeatureRange::prepare`] transposed, for an update that was refused.
    pub(crate) fn discard_prepared(&mut self) {
        for bucket in &mut self.scratch.buckets {
            bucket.clear();
        }
    }

    /// The NaN and ±∞ values on core rows among the transposed `buckets`.
    fn nonfinite_in(
        &self,
        buckets: &[TileBucket],
        batch: &ActivationBatch<'_>,
    ) -> Option<NonFiniteValues> {
        let mut found: Option<NonFiniteValues> = None;
        for (t, bucket) in buckets.iter().enumerate() {
            // Cheap in the common case: a pass over the values that finds nothing.
            if bucket.values.iter().all(|v| v.is_finite()) {
                continue;
            }
            for (&key, v) in bucket.keys.iter().zip(&bucket.values) {
                let row = (key >> TILE_BITS) as usize;
                if v.is_finite() || !batch.core.contains(&row) {
                    continue;
                }
                let here = (
                    batch.sequences[row],
                    batch.positions[row],
                    (self.start + t * TILE + (key & TILE_MASK) as usize) as u64,
                );
                let f = found.get_or_insert(NonFiniteValues {
                    count: 0,
                    sequence: here.0,
                    position: here.1,
                    feature: here.2,
                });
                f.count += 1;
                if here < (f.sequence, f.position, f.feature) {
                    (f.sequence, f.position, f.feature) = here;
                }
            }
        }
        found
    }

    /// The second phase of [`FeatureRange::update`]: accumulates the prepared batch.
    pub(crate) fn replay_prepared(&mut self, batch: &ActivationBatch<'_>, settings: &Settings) {
        let rows = batch.core.len() as u64;
        if self.rows_since_spill + rows > u32::MAX as u64 {
            self.spill_histograms();
        }
        self.rows_since_spill += rows;
        if settings.sample_size == 0 {
            self.sample_thresholds.iter_mut().for_each(|t| *t = 0);
        }
        self.scratch.row_keys.clear();
        self.scratch.row_keys.extend(
            batch
                .sequences
                .iter()
                .zip(&batch.positions)
                .map(|(&s, &p)| samples::row_key(s, p)),
        );
        sequence_spans(&batch.sequences, &mut self.scratch.spans);
        let mut buckets = std::mem::take(&mut self.scratch.buckets);
        let mut column = std::mem::take(&mut self.scratch.grouped);
        for (t, bucket) in buckets.iter_mut().enumerate() {
            let first = t * TILE;
            // A stable counting sort by feature keeps each column in row order.
            let mut starts = [0u32; TILE + 1];
            for &key in &bucket.keys {
                starts[(key & TILE_MASK) as usize + 1] += 1;
            }
            for i in 0..TILE {
                starts[i + 1] += starts[i];
            }
            // Grown, never cleared: the scatter below writes every slot of the tile.
            if column.len() < bucket.keys.len() {
                column.resize(bucket.keys.len(), (0, 0.0));
            }
            let mut next = starts;
            for (&key, &v) in bucket.keys.iter().zip(&bucket.values) {
                let slot = &mut next[(key & TILE_MASK) as usize];
                column[*slot as usize] = (key >> TILE_BITS, v);
                *slot += 1;
            }
            let tile_len = TILE.min(self.len() - first);
            let col = |i: usize| &column[starts[i] as usize..starts[i + 1] as usize];
            for i in 0..tile_len {
                // A feature's state was last touched a whole batch ago and is cold; fetching
                // the next feature's while this one replays hides most of those misses.
                if i + 1 < tile_len {
                    self.prefetch_state(first + i + 1, col(i + 1), batch);
                }
                if !col(i).is_empty() {
                    self.replay(first + i, col(i), batch, settings);
                }
            }
            bucket.clear();
        }
        self.scratch.grouped = column;
        self.scratch.buckets = buckets;
    }

    /// Fills the tile buckets with every nonzero value of this range on every row of the
    /// batch (NaN and ±∞ included: the replay counts those on core rows).
    fn transpose(&self, batch: &ActivationBatch<'_>, buckets: &mut [TileBucket]) {
        let len = self.len();
        match &batch.values {
            BatchValues::Dense(data) => {
                let n_features = batch.n_features;
                for row in 0..batch.n_rows() {
                    let base = row * n_features + self.start;
                    scan::transpose_row(&data[base..base + len], row as u32, buckets);
                }
            }
            BatchValues::Sparse(sp) => {
                let lo = self.start as u32;
                let hi = (self.start + len) as u32;
                for row in 0..batch.n_rows() {
                    let (a, b) = (sp.indptr[row], sp.indptr[row + 1]);
                    let idx = &sp.indices[a..b];
                    let from = a + idx.partition_point(|&f| f < lo);
                    let to = a + idx.partition_point(|&f| f < hi);
                    let key = (row as u32) << TILE_BITS;
                    for j in from..to {
                        let i = (sp.indices[j] - lo) as usize;
                        let v = sp.values[j];
                        // Explicit zeros carry nothing; NaN (≠ 0) is kept for the replay.
                        if v == 0.0 {
                            continue;
                        }
                        buckets[i / TILE].push(key | (i % TILE) as u32, v);
                    }
                }
            }
        }
    }

    /// Hints the CPU to fetch the state `replay` of this column will touch.
    #[inline]
    fn prefetch_state(&self, local: usize, column: &[(u32, f32)], batch: &ActivationBatch<'_>) {
        if column.is_empty() {
            return;
        }
        prefetch(&self.moments[local]);
        prefetch(&self.pos_buckets[local]);
        for line in (0..N_BINS).step_by(16) {
            prefetch(&self.hist[local * N_BINS + line]);
        }
        prefetch(&self.sample_thresholds[local]);
        if let Some(kept) = &self.kept[local] {
            kept.tokens
                .prefetch_for(column.iter().map(|&(row, _)| batch.tokens[row as usize]));
        }
    }

    /// A value at least k firings of this feature reach, read from its histogram (the bins
    /// are counted since the last spill, so this never overestimates): no firing below it can
    /// end in the top-k. While a feature's top-k fills, offering only firings above it saves
    /// most admissions (and their evictions); −∞ when it does not exist yet.
    fn topk_cutoff(&self, local: usize, k: usize) -> f32 {
        if k == 0 {
            return f32::NEG_INFINITY;
        }
        let bins = &self.hist[local * N_BINS..(local + 1) * N_BINS];
        let top = histogram::bin(self.moments[local].max.max(0.0));
        let mut reached = 0u64;
        // Bin 0 also holds values below its edge, so it cannot give a cutoff.
        for b in (1..=top).rev() {
            reached += bins[b] as u64;
            if reached >= k as u64 {
                return histogram::lower_edge(b) as f32;
            }
        }
        f32::NEG_INFINITY
    }

    /// Updates feature `local` with its batch column (its nonzero values, in row order,
    /// margins and non-finite values included), then fills the contexts of the examples it
    /// admitted from the same column. Two passes: statistics first (they make the histogram
    /// that bounds the top-k), then example admission.
    fn replay(
        &mut self,
        local: usize,
        column: &[(u32, f32)],
        batch: &ActivationBatch<'_>,
        settings: &Settings,
    ) {
        let (firings, tokens, n, sample_candidates) =
            self.count_firings(local, column, batch, settings);
        if n == 0 {
            // Only margins, values below the threshold or non-finite ones: nothing to keep
            // (and no examples allocated for a feature that has not fired).
            self.scratch.tokens = tokens;
            self.scratch.firings = firings;
            return;
        }
        self.kept_mut(local).tokens.add_all(
            &tokens[..n],
            settings.token_sketch_capacity,
            TokenKeys(batch.token_keys),
        );
        self.scratch.tokens = tokens;

        let k = settings.top_k;
        let cutoff = self.topk_cutoff(local, k);
        let mut admit_from = self.topk(local).threshold(k).max(cutoff);
        // The slots admitted in this column, whose contexts are filled at the end (a slot
        // may be listed twice when a later firing took it over; it is filled once). Listing
        // them spares reading every example of the feature, cold in memory, to find them.
        let mut topk_slots = std::mem::take(&mut self.scratch.topk_slots);
        topk_slots.clear();
        for &at in &firings[..n] {
            let at = at as usize;
            let (row, v) = column[at];
            if v >= admit_from {
                if let Some(slot) = self.offer_topk(local, v, row as usize, at, batch, settings) {
                    topk_slots.push(slot as u32);
                    admit_from = self.topk(local).threshold(k).max(cutoff);
                }
            }
        }
        self.scratch.firings = firings;
        let mut sample_items = std::mem::take(&mut self.scratch.sample_items);
        sample_items.clear();
        if sample_candidates {
            self.admit_samples(local, column, batch, settings, &mut sample_items);
        }
        let window = settings.context_window;
        let spans = &self.scratch.spans;
        let fill = |ex: &mut Example| {
            if ex.pending != NO_PENDING {
                fill_context(ex, column, batch, spans, window);
            }
        };
        let kept = self.kept[local].as_deref_mut().expect("allocated above");
        for &slot in &topk_slots {
            fill(kept.topk.slot_mut(slot as usize));
        }
        for &item in &sample_items {
            fill(&mut kept.samples.items[item as usize].example);
        }
        self.scratch.topk_slots = topk_slots;
        self.scratch.sample_items = sample_items;
    }

    /// Pass 1 of [`FeatureRange::replay`]: the statistics of every firing in `column`
    /// (everything but examples and token counts); returns the scratch buffers whose first
    /// `n` entries are the firings' indices in the column and their tokens, `n`, and whether
    /// any firing became a sample candidate (see [`FeatureRange::admit_samples`]).
    /// Margin rows only provide context; values below the threshold (and NaN, and ±∞,
    /// counted separately) are not firings.
    ///
    /// The feature's scalars are updated in local copies and written back once: updated
    /// through `self`, every firing's sums were a store-to-load round trip on the previous
    /// firing's. The additions happen in the same order, so the results are the same bits.
    fn count_firings(
        &mut self,
        local: usize,
        column: &[(u32, f32)],
        batch: &ActivationBatch<'_>,
        settings: &Settings,
    ) -> (Vec<u32>, Vec<TokenId>, usize, bool) {
        let (core_start, core_len) = (batch.core.start as u32, batch.core.len() as u32);
        let threshold = settings.threshold;
        let collect_positions = settings.collect_positions;
        let positions = &batch.positions[..];
        let row_tokens = &batch.tokens[..];
        let mut firings = std::mem::take(&mut self.scratch.firings);
        let mut tokens = std::mem::take(&mut self.scratch.tokens);
        // Written by index, not pushed: a push's growth path is a call, after which the
        // compiler would reload the scalars below from memory. Grown, never cleared: zeroing
        // them for every column would cost more than the writes.
        if firings.len() < column.len() {
            firings.resize(column.len(), 0);
            tokens.resize(column.len(), 0);
        }
        // A feature's sample keeps the `m` smallest firing hashes. Admitting every firing
        // that beats the current cutoff would admit m·ln(n) of them, each writing a
        // cold example; instead this pass tracks the `m` smallest hashes among the column's
        // firings (in a small hot array) and lists the firings that beat the running cutoff
        // as candidates; `admit_samples` then admits only the candidates that end up in the
        // sample, at most `m`.
        let m = settings.sample_size;
        let feature_key = samples::feature_key((self.start + local) as u64);
        let row_keys = &self.scratch.row_keys[..];
        let mut running = self.sample_thresholds[local];
        let mut held = 0u32;
        let mut candidates = std::mem::take(&mut self.scratch.candidates);
        if candidates.len() < column.len() {
            candidates.resize(column.len(), (0, 0));
        }
        let mut smallest = std::mem::take(&mut self.scratch.smallest);
        smallest.resize(m, u64::MAX);
        let mut n_candidates = 0;
        let mut n = 0;
        let mut m = self.moments[local];
        let mut buckets = self.pos_buckets[local];
        let mut first_nonfinite_row = None;
        let hist = &mut self.hist[local * N_BINS..(local + 1) * N_BINS];
        for (at, &(row, v)) in column.iter().enumerate() {
            let core = row.wrapping_sub(core_start) < core_len;
            if !(core && v >= threshold && v < f32::INFINITY) {
                if core && !is_finite(v) {
                    m.nonfinite += 1;
                    // Rows are in (sequence, position) order: the column's first is its earliest.
                    first_nonfinite_row.get_or_insert(row as usize);
                }
                continue;
            }
            firings[n] = at as u32;
            tokens[n] = row_tokens[row as usize];
            n += 1;
            if v < m.min {
                m.lower_min(v);
            }
            m.count += 1;
            let d = v as f64 - m.min as f64;
            m.shifted_sum += d;
            m.shifted_sum_sq += d * d;
            m.max = m.max.max(v);
            if collect_positions {
                let position = positions[row as usize];
                let p = position as u64;
                m.pos_sum += p;
                m.pos_sum_sq += p * p;
                // Branch-free: positions ≥ 50 ("late") add 0 to the last bucket.
                let bucket = (position >= 5) as usize + (position >= 20) as usize;
                buckets[bucket] += (position < 50) as u64;
            }
            let bin = histogram::bin(v);
            hist[bin] += 1;
            let h = samples::mix(feature_key ^ row_keys[row as usize]);
            // `running` is 0 when sampling is off (m == 0).
            if h < running {
                candidates[n_candidates] = (at as u32, h);
                n_candidates += 1;
                running = keep_smallest(&mut smallest, &mut held, h).min(running);
            }
        }
        self.scratch.held = held;
        self.scratch.candidates = candidates;
        self.scratch.smallest = smallest;
        self.scratch.n_candidates = n_candidates;
        self.moments[local] = m;
        self.pos_buckets[local] = buckets;
        if let Some(row) = first_nonfinite_row {
            self.note_nonfinite(local, row, batch);
        }
        if settings.ngram_capacity > 0 {
            for &at in &firings[..n] {
                self.fire_ngrams(local, column[at as usize].0 as usize, batch, settings);
            }
        }
        (firings, tokens, n, n_candidates > 0)
    }

    /// Pass 2 of the samples: the cutoff is the `m`-th smallest hash of the feature's
    /// current samples and the column's candidates (the smallest `m` of those are in
    /// `scratch.smallest`, so the union of the two is small), and only candidates at or below
    /// it are admitted: the same sample as offering every firing in turn, with at most `m`
    /// example writes. The admitted samples' indices are appended to `admitted`.
    fn admit_samples(
        &mut self,
        local: usize,
        column: &[(u32, f32)],
        batch: &ActivationBatch<'_>,
        settings: &Settings,
        admitted: &mut Vec<u32>,
    ) {
        let m = settings.sample_size;
        let held = self.scratch.held as usize;
        let mut union = std::mem::take(&mut self.scratch.union);
        union.clear();
        let kept = self.kept[local]
            .as_deref_mut()
            .expect("allocated by the replay");
        kept.samples.hashes_into(&mut union);
        union.extend_from_slice(&self.scratch.smallest[..held]);
        let cut = if union.len() < m {
            u64::MAX
        } else {
            *union.select_nth_unstable(m - 1).1
        };
        self.scratch.union = union;
        self.sample_thresholds[local] = kept.samples.admit(
            m,
            cut,
            &self.scratch.candidates[..self.scratch.n_candidates],
            |at, ex| {
                let (row, v) = column[at];
                record_example(ex, v, row as usize, at, batch)
            },
            admitted,
        );
    }

    /// Keeps the earliest non-finite value's (sequence, position, feature): columns replay
    /// feature by feature, and the minimum does not depend on that order.
    #[cold]
    fn note_nonfinite(&mut self, local: usize, row: usize, batch: &ActivationBatch<'_>) {
        let here = (
            batch.sequences[row],
            batch.positions[row],
            (self.start + local) as u64,
        );
        if self.first_nonfinite.is_none_or(|first| here < first) {
            self.first_nonfinite = Some(here);
        }
    }

    #[inline(never)]
    fn fire_ngrams(
        &mut self,
        local: usize,
        row: usize,
        batch: &ActivationBatch<'_>,
        settings: &Settings,
    ) {
        for key in ngrams::keys_at(batch, row).into_iter().flatten() {
            self.kept_mut(local)
                .ngrams
                .add_n(key, 1, settings.ngram_capacity);
        }
    }

    #[inline(never)]
    fn offer_topk(
        &mut self,
        local: usize,
        v: f32,
        row: usize,
        at: usize,
        batch: &ActivationBatch<'_>,
        settings: &Settings,
    ) -> Option<usize> {
        let k = settings.top_k;
        let (seq, pos) = (batch.sequences[row], batch.positions[row]);
        let topk = &mut self.kept[local]
            .as_deref_mut()
            .expect("allocated by the replay")
            .topk;
        if !topk.accepts(k, v, seq, pos) {
            return None;
        }
        Some(topk.insert_with(k, |ex| record_example(ex, v, row, at, batch)))
    }

    /// Folds `other` (same features, other tokens) into `self`; `keys` as for the batches
    /// (see [`TokenKeys`]).
    pub fn merge(&mut self, other: FeatureRange, settings: &Settings, keys: TokenKeys<'_>) {
        assert_eq!(
            (self.start, self.len()),
            (other.start, other.len()),
            "merging different feature ranges"
        );
        for (a, b) in self.moments.iter_mut().zip(&other.moments) {
            a.add_sums(b);
            a.max = a.max.max(b.max);
            a.nonfinite += b.nonfinite;
            a.pos_sum += b.pos_sum;
            a.pos_sum_sq += b.pos_sum_sq;
        }
        for (a, b) in self.pos_buckets.iter_mut().zip(&other.pos_buckets) {
            for i in 0..3 {
                a[i] += b[i];
            }
        }
        if !other.hist_spill.is_empty()
            || other.rows_since_spill + self.rows_since_spill > u32::MAX as u64
        {
            self.spill_histograms();
            for (local, s) in self.hist_spill.chunks_mut(N_BINS).enumerate() {
                for (a, b) in s.iter_mut().zip(other.histogram(local)) {
                    *a += b;
                }
            }
        } else {
            for (a, b) in self.hist.iter_mut().zip(&other.hist) {
                *a += b;
            }
            self.rows_since_spill += other.rows_since_spill;
        }
        let (k, m) = (settings.top_k, settings.sample_size);
        for (i, theirs) in other.kept.into_iter().enumerate() {
            if let Some(theirs) = theirs {
                let Kept {
                    topk,
                    samples,
                    tokens,
                    ngrams,
                } = *theirs;
                let ours = self.kept_mut(i);
                ours.topk.merge(topk, k);
                ours.samples.merge(samples, m);
                ours.tokens
                    .merge(&tokens, settings.token_sketch_capacity, keys);
                if !ngrams.is_empty() {
                    ours.ngrams.merge(&ngrams, settings.ngram_capacity);
                }
            }
            self.sample_thresholds[i] = self.samples(i).threshold(m);
        }
        if self.first_nonfinite.is_none() {
            self.first_nonfinite = other.first_nonfinite;
        }
    }

    /// Appends the next range (`other.start == self.start + self.len()`).
    pub fn append(&mut self, other: FeatureRange) {
        assert_eq!(
            other.start,
            self.start + self.len(),
            "ranges are not adjacent"
        );
        self.moments.extend(other.moments);
        self.pos_buckets.extend(other.pos_buckets);
        if !self.hist_spill.is_empty() || !other.hist_spill.is_empty() {
            self.spill_histograms();
            let mut theirs = other.hist_spill;
            theirs.resize(other.hist.len(), 0);
            for (a, b) in theirs.iter_mut().zip(&other.hist) {
                *a += *b as u64;
            }
            self.hist_spill.extend(theirs);
            self.hist.extend(std::iter::repeat_n(0, other.hist.len()));
        } else {
            self.hist.extend(other.hist);
        }
        self.rows_since_spill = self.rows_since_spill.max(other.rows_since_spill);
        self.kept.extend(other.kept);
        self.sample_thresholds.extend(other.sample_thresholds);
        self.first_nonfinite = self.first_nonfinite.or(other.first_nonfinite);
    }

    /// Splits off features `at..` (local index) into a new range.
    pub fn split_off(&mut self, at: usize) -> FeatureRange {
        FeatureRange {
            start: self.start + at,
            moments: self.moments.split_off(at),
            pos_buckets: self.pos_buckets.split_off(at),
            hist: self.hist.split_off(at * N_BINS),
            hist_spill: if self.hist_spill.is_empty() {
                Vec::new()
            } else {
                self.hist_spill.split_off(at * N_BINS)
            },
            rows_since_spill: self.rows_since_spill,
            kept: self.kept.split_off(at),
            sample_thresholds: self.sample_thresholds.split_off(at),
            first_nonfinite: None,
            scratch: Scratch::default(),
        }
    }

    /// Adds `offset` to every stored sequence index, for merging a shard that numbered its
    /// sequences from 0. Example ranks do not change (every example moves by the same
    /// amount); samples keep the hashes they were admitted with.
    pub fn shift_sequences(&mut self, offset: u64) {
        for kept in self.all_kept_mut() {
            kept.topk.for_each_mut(|e| e.sequence += offset);
            kept.samples
                .items
                .iter_mut()
                .for_each(|it| it.example.sequence += offset);
        }
        if let Some((seq, _, _)) = &mut self.first_nonfinite {
            *seq += offset;
        }
    }

    /// Rewrites token ids through `map` (old id → new id).
    pub fn remap_tokens(&mut self, map: &[TokenId]) {
        let fix = |e: &mut Example| {
            for t in &mut e.context_tokens {
                *t = map[*t as usize];
            }
        };
        for kept in self.all_kept_mut() {
            let t = &mut kept.topk;
            let mut items = t.sorted();
            items.iter_mut().for_each(fix);
            *t = TopK::default();
            for it in items {
                t.insert(usize::MAX, it);
            }
            kept.samples
                .items
                .iter_mut()
                .for_each(|it| fix(&mut it.example));
            kept.tokens.remap(map);
            if !kept.ngrams.is_empty() {
                kept.ngrams.remap(map);
            }
        }
    }
}

/// `Example::pending` of an example whose context is filled.
const NO_PENDING: u32 = u32::MAX;

/// Records the firing at index `at` of its feature's batch column in `ex`, deferring its
/// context: most examples admitted early in a batch are evicted again before its end, so
/// contexts are filled once per feature and batch, for the survivors only
/// ([`FeatureRange::replay`]).
#[inline]
fn record_example(ex: &mut Example, v: f32, row: usize, at: usize, batch: &ActivationBatch<'_>) {
    ex.activation = v;
    ex.sequence = batch.sequences[row];
    ex.position = batch.positions[row];
    ex.pending = at as u32;
}

/// Writes the context of the firing at `column[ex.pending]` into `ex` (reusing its
/// buffers): tokens from the batch, and the feature's activations from its neighbours in
/// the `column` (nonzeros in row order; rows absent from it, and non-finite values, are 0).
fn fill_context(
    ex: &mut Example,
    column: &[(u32, f32)],
    batch: &ActivationBatch<'_>,
    spans: &[(u32, u32)],
    window: usize,
) {
    let at = ex.pending as usize;
    let row = column[at].0 as usize;
    let (first, end) = spans[row];
    let start = row.saturating_sub(window).max(first as usize);
    let end = (row + window + 1).min(end as usize);
    ex.context_start = batch.positions[start];
    ex.context_tokens = ContextTokens::from_slice(&batch.tokens[start..end]);
    let mut activations = ContextActivations::from_elem(0.0, end - start);
    // The neighbours within the window sit right before and after `at` in the column.
    let mut j = at;
    while j > 0 && column[j - 1].0 as usize >= start {
        j -= 1;
    }
    for &(r, v) in &column[j..] {
        if r as usize >= end {
            break;
        }
        // A NaN or ±∞ skipped by `--allow-nonfinite` did not fire: it reads as 0, as an
        // absent value does (JSON has no NaN; a `null` made the dictionary unreadable).
        activations[r as usize - start] = if v.is_finite() { v } else { 0.0 };
    }
    ex.context_activations = activations;
    ex.pending = NO_PENDING;
}

/// Adds hash `h` to `heap`, a max-heap of the (at most `heap.len()`) smallest hashes seen, of
/// which `held` are filled; returns the largest held once all are filled (the hash a firing
/// must beat to enter), else `u64::MAX`. Once full, `h` must be below that largest. A heap,
/// as a sample of 40 would make a scan for the largest cost as much as the firing's
/// statistics.
#[inline(always)]
fn keep_smallest(heap: &mut [u64], held: &mut u32, h: u64) -> u64 {
    let len = *held as usize;
    if len < heap.len() {
        let mut i = len;
        heap[i] = h;
        while i > 0 {
            let parent = (i - 1) / 2;
            if heap[parent] >= heap[i] {
                break;
            }
            heap.swap(parent, i);
            i = parent;
        }
        *held += 1;
        if len + 1 < heap.len() {
            return u64::MAX;
        }
    } else {
        heap[0] = h;
        let mut i = 0;
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut largest = i;
            if l < len && heap[l] > heap[largest] {
                largest = l;
            }
            if r < len && heap[r] > heap[largest] {
                largest = r;
            }
            if largest == i {
                break;
            }
            heap.swap(i, largest);
            i = largest;
        }
    }
    heap[0]
}

/// For every row, the rows `(first, end)` its sequence spans in the batch (batches hold
/// sequences contiguously), so a context window is clipped without walking rows.
fn sequence_spans(sequences: &[u64], spans: &mut Vec<(u32, u32)>) {
    spans.clear();
    spans.resize(sequences.len(), (0, 0));
    let mut first = 0;
    for r in 1..=sequences.len() {
        if r == sequences.len() || sequences[r] != sequences[first] {
            spans[first..r].fill((first as u32, r as u32));
            first = r;
        }
    }
}

#[inline(always)]
fn is_finite(v: f32) -> bool {
    v.to_bits() & 0x7f80_0000 != 0x7f80_0000
}

use super::scan;
