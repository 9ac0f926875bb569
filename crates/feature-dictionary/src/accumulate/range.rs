//! Per-feature state of a contiguous range of features, updated row by row.
//!
//! Hot scalars (count, sums, extrema, top-k admission threshold) sit together in one struct
//! per feature so a firing touches few cache lines; dense rows are scanned in feature tiles
//! so a tile's state stays in L2 while many rows stream past.

use super::histogram::{self, N_BINS};
use super::ngrams::{self, NgramTable};
use super::samples::{band_of_bin, firing_hash, BandSamples, N_BANDS};
use super::token_sketch::TokenSketch;
use super::topk::{Example, TopK};
use super::Settings;
use crate::ingest::{ActivationBatch, BatchValues, TokenId};

/// Scalars touched by every firing.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(64))]
#[cfg_attr(feature = "serde-state", derive(serde::Serialize, serde::Deserialize))]
pub struct Moments {
    /// Firings.
    pub count: u64,
    /// Σ activation.
    pub sum: f64,
    /// Σ activation².
    pub sum_sq: f64,
    /// Smallest firing activation (+∞ before the first).
    pub min: f32,
    /// Largest firing activation (−∞ before the first).
    pub max: f32,
    /// Top-k admission threshold (mirror of `TopK::threshold`).
    pub topk_threshold: f32,
    /// Non-finite values seen (never folded into the other fields).
    pub nonfinite: u32,
    /// Σ position.
    pub pos_sum: u64,
    /// Σ position².
    pub pos_sum_sq: u64,
}

impl Default for Moments {
    fn default() -> Self {
        Self {
            count: 0,
            sum: 0.0,
            sum_sq: 0.0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            topk_threshold: f32::NEG_INFINITY,
            nonfinite: 0,
            pos_sum: 0,
            pos_sum_sq: 0,
        }
    }
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
    /// Top-k examples per feature.
    pub topk: Vec<TopK>,
    /// Band samples per feature.
    pub samples: Vec<BandSamples>,
    /// Sample admission thresholds, `N_BANDS` per feature.
    pub sample_thresholds: Vec<u64>,
    /// Firing tokens per feature.
    pub tokens: Vec<TokenSketch>,
    /// Firing n-grams per feature (empty tables when n-grams are off).
    pub ngrams: Vec<NgramTable>,
    /// First non-finite value seen: (sequence, position, feature).
    pub first_nonfinite: Option<(u64, u32, u64)>,
    /// Per-tile firing buckets reused across dense batches (always empty between calls).
    #[cfg_attr(feature = "serde-state", serde(skip))]
    scratch: Vec<Vec<(u32, u32, f32)>>,
    /// One tile's firings grouped by feature (reused; empty between calls).
    scratch_grouped: Vec<(u32, f32)>,
    /// Features whose top-k (`u32::MAX`) or band samples (band) received an example in the
    /// current batch whose context is still to be filled (always empty between calls).
    #[cfg_attr(feature = "serde-state", serde(skip))]
    pending: Vec<(u32, u32)>,
    /// Whether a feature's top-k / (feature, band) samples are already in `pending`.
    topk_pending: Vec<bool>,
    band_pending: Vec<bool>,
}

/// Features per tile when replaying dense firings: a tile's state (moments, histograms,
/// sample thresholds, token tables) should fit in L2.
const TILE: usize = 64;

impl FeatureRange {
    /// Empty state for features `start..start + len`.
    pub fn new(start: usize, len: usize) -> Self {
        Self {
            start,
            moments: vec![Moments::default(); len],
            pos_buckets: vec![[0; 3]; len],
            hist: vec![0; len * N_BINS],
            hist_spill: Vec::new(),
            rows_since_spill: 0,
            topk: vec![TopK::default(); len],
            samples: vec![BandSamples::default(); len],
            sample_thresholds: vec![u64::MAX; len * N_BANDS],
            tokens: vec![TokenSketch::default(); len],
            ngrams: vec![NgramTable::default(); len],
            first_nonfinite: None,
            scratch: Vec::new(),
            scratch_grouped: Vec::new(),
            pending: Vec::new(),
            topk_pending: vec![false; len],
            band_pending: vec![false; len * N_BANDS],
        }
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.moments.len()
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.moments.is_empty()
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
    pub fn update(&mut self, batch: &ActivationBatch<'_>, settings: &Settings) {
        let rows = batch.core.len() as u64;
        if self.rows_since_spill + rows > u32::MAX as u64 {
            self.spill_histograms();
        }
        self.rows_since_spill += rows;
        if settings.samples_per_band == 0 {
            self.sample_thresholds.iter_mut().for_each(|t| *t = 0);
        }
        match &batch.values {
            BatchValues::Dense(data) => self.update_dense(batch, data, settings),
            BatchValues::Sparse(sp) => {
                let lo = self.start as u32;
                let hi = (self.start + self.len()) as u32;
                for row in batch.core.clone() {
                    let (a, b) = (sp.indptr[row], sp.indptr[row + 1]);
                    let idx = &sp.indices[a..b];
                    let from = a + idx.partition_point(|&f| f < lo);
                    let to = a + idx.partition_point(|&f| f < hi);
                    for j in from..to {
                        let local = (sp.indices[j] - lo) as usize;
                        let v = sp.values[j];
                        if is_finite(v) {
                            if v >= settings.threshold {
                                self.fire(local, v, row, batch, settings);
                            }
                        } else {
                            self.nonfinite(local, row, batch);
                        }
                    }
                }
            }
        }
        self.fill_pending(batch, settings);
    }

    /// Fills the contexts of the examples admitted during this batch that survived it.
    fn fill_pending(&mut self, batch: &ActivationBatch<'_>, settings: &Settings) {
        let mut pending = std::mem::take(&mut self.pending);
        let window = settings.context_window;
        for &(local, kind) in &pending {
            let feature = self.start + local as usize;
            let fill = |ex: &mut Example| {
                if ex.pending_row != NO_PENDING {
                    let row = ex.pending_row as usize;
                    fill_context(ex, feature, row, batch, window);
                }
            };
            if kind == u32::MAX {
                self.topk_pending[local as usize] = false;
                self.topk[local as usize].for_each_mut(fill);
            } else {
                self.band_pending[local as usize * N_BANDS + kind as usize] = false;
                self.samples[local as usize]
                    .items
                    .iter_mut()
                    .filter(|s| s.band as u32 == kind)
                    .for_each(|s| fill(&mut s.example));
            }
        }
        pending.clear();
        self.pending = pending;
    }

    /// Dense rows in two phases. Scan: walk each row's slice of this range contiguously
    /// (what the prefetcher likes) and drop every firing into the bucket of its feature tile.
    /// Update: replay each tile's firings, in row order, so the tile's state stays in cache.
    /// Each feature still sees its firings in token order, so results do not change.
    fn update_dense(&mut self, batch: &ActivationBatch<'_>, data: &[f32], settings: &Settings) {
        let n_features = batch.n_features;
        let len = self.len();
        let n_tiles = len.div_ceil(TILE);
        let mut buckets = std::mem::take(&mut self.scratch);
        buckets.resize_with(n_tiles, Vec::new);
        for row in batch.core.clone() {
            let base = row * n_features + self.start;
            let slice = &data[base..base + len];
            let mut bad_at = Vec::new();
            scan::scan_row(
                slice,
                settings.threshold,
                &mut |i, v| buckets[i / TILE].push((row as u32, i as u32, v)),
                &mut |i| bad_at.push(i),
            );
            for i in bad_at {
                self.nonfinite(i, row, batch);
            }
        }
        // Within a tile, a stable counting sort groups firings by feature (rows stay in
        // order), so one feature's state is hot in L1 for all its firings of the batch.
        let mut grouped = std::mem::take(&mut self.scratch_grouped);
        for (t, bucket) in buckets.iter_mut().enumerate() {
            let first = t * TILE;
            let mut starts = [0u32; TILE + 1];
            for &(_, local, _) in bucket.iter() {
                starts[local as usize - first + 1] += 1;
            }
            for i in 0..TILE {
                starts[i + 1] += starts[i];
            }
            grouped.clear();
            grouped.resize(bucket.len(), (0, 0.0));
            let mut next = starts;
            for &(row, local, v) in bucket.iter() {
                let slot = &mut next[local as usize - first];
                grouped[*slot as usize] = (row, v);
                *slot += 1;
            }
            for i in 0..TILE {
                for &(row, v) in &grouped[starts[i] as usize..starts[i + 1] as usize] {
                    self.fire(first + i, v, row as usize, batch, settings);
                }
            }
            bucket.clear();
        }
        self.scratch_grouped = grouped;
        self.scratch = buckets;
    }

    #[cold]
    fn nonfinite(&mut self, local: usize, row: usize, batch: &ActivationBatch<'_>) {
        self.moments[local].nonfinite += 1;
        if self.first_nonfinite.is_none() {
            self.first_nonfinite = Some((
                batch.sequences[row],
                batch.positions[row],
                (self.start + local) as u64,
            ));
        }
    }

    #[inline(always)]
    fn fire(
        &mut self,
        local: usize,
        v: f32,
        row: usize,
        batch: &ActivationBatch<'_>,
        settings: &Settings,
    ) {
        let position = batch.positions[row];
        let m = &mut self.moments[local];
        m.count += 1;
        let vd = v as f64;
        m.sum += vd;
        m.sum_sq += vd * vd;
        m.min = m.min.min(v);
        m.max = m.max.max(v);
        if settings.collect_positions {
            let p = position as u64;
            m.pos_sum += p;
            m.pos_sum_sq += p * p;
            let bucket = (position >= 5) as usize + (position >= 20) as usize;
            if position < 50 {
                self.pos_buckets[local][bucket] += 1;
            }
        }
        let admit_topk = v >= m.topk_threshold;
        let bin = histogram::bin(v);
        self.hist[local * N_BINS + bin] += 1;
        self.tokens[local].add(batch.tokens[row], settings.token_sketch_capacity);
        if settings.ngram_capacity > 0 {
            self.fire_ngrams(local, row, batch, settings);
        }
        if admit_topk {
            self.offer_topk(local, v, row, batch, settings);
        }
        let band = band_of_bin(bin);
        let threshold = self.sample_thresholds[local * N_BANDS + band];
        if threshold != 0 {
            let h = firing_hash((self.start + local) as u64, batch.sequences[row], position);
            if h < threshold {
                let new_threshold = self.samples[local].insert_with(
                    settings.samples_per_band,
                    band as u8,
                    h,
                    |ex| record_example(ex, v, row, batch),
                );
                let flag = &mut self.band_pending[local * N_BANDS + band];
                if !*flag {
                    *flag = true;
                    self.pending.push((local as u32, band as u32));
                }
                self.sample_thresholds[local * N_BANDS + band] = new_threshold;
            }
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
            self.ngrams[local].add_n(key, 1, settings.ngram_capacity);
        }
    }

    #[inline(never)]
    fn offer_topk(
        &mut self,
        local: usize,
        v: f32,
        row: usize,
        batch: &ActivationBatch<'_>,
        settings: &Settings,
    ) {
        let k = settings.top_k;
        let (seq, pos) = (batch.sequences[row], batch.positions[row]);
        if !self.topk[local].accepts(k, v, seq, pos) {
            return;
        }
        self.topk[local].insert_with(k, |ex| record_example(ex, v, row, batch));
        if !self.topk_pending[local] {
            self.topk_pending[local] = true;
            self.pending.push((local as u32, u32::MAX));
        }
        self.moments[local].topk_threshold = self.topk[local].threshold(k);
    }

    /// Folds `other` (same features, other tokens) into `self`.
    pub fn merge(&mut self, other: FeatureRange, settings: &Settings) {
        assert_eq!(
            (self.start, self.len()),
            (other.start, other.len()),
            "merging different feature ranges"
        );
        for (a, b) in self.moments.iter_mut().zip(&other.moments) {
            a.count += b.count;
            a.sum += b.sum;
            a.sum_sq += b.sum_sq;
            a.min = a.min.min(b.min);
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
        let k = settings.top_k;
        for (i, t) in other.topk.into_iter().enumerate() {
            self.topk[i].merge(t, k);
            self.moments[i].topk_threshold = self.topk[i].threshold(k);
        }
        let s = settings.samples_per_band;
        for (i, smp) in other.samples.into_iter().enumerate() {
            self.samples[i].merge(smp, s);
            for band in 0..N_BANDS {
                self.sample_thresholds[i * N_BANDS + band] = if s == 0 {
                    0
                } else {
                    self.samples[i].threshold(band, s)
                };
            }
        }
        for (a, b) in self.tokens.iter_mut().zip(&other.tokens) {
            a.merge(b, settings.token_sketch_capacity);
        }
        for (a, b) in self.ngrams.iter_mut().zip(&other.ngrams) {
            if !b.is_empty() {
                a.merge(b, settings.ngram_capacity);
            }
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
        self.topk.extend(other.topk);
        self.samples.extend(other.samples);
        self.sample_thresholds.extend(other.sample_thresholds);
        self.tokens.extend(other.tokens);
        self.topk_pending.extend(other.topk_pending);
        self.band_pending.extend(other.band_pending);
        self.ngrams.extend(other.ngrams);
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
            topk: self.topk.split_off(at),
            samples: self.samples.split_off(at),
            sample_thresholds: self.sample_thresholds.split_off(at * N_BANDS),
            tokens: self.tokens.split_off(at),
            ngrams: self.ngrams.split_off(at),
            first_nonfinite: None,
            scratch: Vec::new(),
            scratch_grouped: Vec::new(),
            pending: Vec::new(),
            topk_pending: self.topk_pending.split_off(at),
            band_pending: self.band_pending.split_off(at * N_BANDS),
        }
    }

    /// Adds `offset` to every stored sequence index, for merging a shard that numbered its
    /// sequences from 0. Example ranks do not change (every example moves by the same
    /// amount); band samples keep the hashes they were admitted with.
    pub fn shift_sequences(&mut self, offset: u64) {
        for t in &mut self.topk {
            t.for_each_mut(|e| e.sequence += offset);
        }
        for s in &mut self.samples {
            s.items
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
        for t in &mut self.topk {
            let mut items = t.sorted();
            items.iter_mut().for_each(fix);
            *t = TopK::default();
            for it in items {
                t.insert(usize::MAX, it);
            }
        }
        for s in &mut self.samples {
            s.items.iter_mut().for_each(|it| fix(&mut it.example));
        }
        for t in &mut self.tokens {
            t.remap(map);
        }
        for t in &mut self.ngrams {
            if !t.is_empty() {
                t.remap(map);
            }
        }
    }
}

/// Marks that row `row` of the current batch still owes this example its context.
const NO_PENDING: u32 = u32::MAX;

/// Records the firing in `ex`, deferring its context: the context rows of a dense batch are
/// far apart in memory, and most admitted examples are evicted again within the batch, so
/// contexts are filled once per batch for the survivors only ([`FeatureRange::fill_pending`]).
#[inline]
fn record_example(ex: &mut Example, v: f32, row: usize, batch: &ActivationBatch<'_>) {
    ex.activation = v;
    ex.sequence = batch.sequences[row];
    ex.position = batch.positions[row];
    ex.pending_row = row as u32;
}

/// Writes the context of `feature` around `row` into `ex`, reusing its buffers.
fn fill_context(
    ex: &mut Example,
    feature: usize,
    row: usize,
    batch: &ActivationBatch<'_>,
    window: usize,
) {
    let rows = batch.context_rows(row, window);
    ex.context_start = batch.positions[rows.start];
    ex.context_tokens.clear();
    ex.context_tokens
        .extend_from_slice(&batch.tokens[rows.clone()]);
    ex.context_activations.clear();
    match &batch.values {
        BatchValues::Dense(d) => {
            let f = batch.n_features;
            ex.context_activations
                .extend(rows.map(|r| d[r * f + feature]));
        }
        BatchValues::Sparse(_) => ex
            .context_activations
            .extend(rows.map(|r| batch.value(r, feature))),
    }
    ex.pending_row = NO_PENDING;
}

#[inline(always)]
fn is_finite(v: f32) -> bool {
    v.to_bits() & 0x7f80_0000 != 0x7f80_0000
}

use super::scan;
