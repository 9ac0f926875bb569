//! Per-feature state of a contiguous range of features, updated row by row.
//!
//! Hot scalars (count, sums, extrema, top-k admission threshold) sit together in one struct
//! per feature so a firing touches few cache lines; dense rows are scanned in feature tiles
//! so a tile's state stays in L2 while many rows stream past.

use super::histogram::{self, N_BINS};
use super::ngrams::{self, NgramTable};
use super::samples::{band_of_bin, firing_hash, BandSamples, Sample, N_BANDS};
use super::token_sketch::TokenSketch;
use super::topk::{Example, TopK};
use super::Settings;
use crate::ingest::{ActivationBatch, BatchValues, TokenId};

/// Scalars touched by every firing.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(64))]
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
pub struct FeatureRange {
    /// First feature (global index).
    pub start: usize,
    /// Per-feature moments.
    pub moments: Vec<Moments>,
    /// Firings at positions < 5, 5..20, 20..50 (the original's buckets; "late" is the rest).
    pub pos_buckets: Vec<[u64; 3]>,
    /// Histogram counts, `N_BINS` per feature.
    pub hist: Vec<u64>,
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
}

/// Features per tile when scanning dense rows.
const TILE: usize = 256;
/// Rows per tile pass: small enough that the rows' tile slices stay in cache.
const ROW_BLOCK: usize = 64;

impl FeatureRange {
    /// Empty state for features `start..start + len`.
    pub fn new(start: usize, len: usize) -> Self {
        Self {
            start,
            moments: vec![Moments::default(); len],
            pos_buckets: vec![[0; 3]; len],
            hist: vec![0; len * N_BINS],
            topk: vec![TopK::default(); len],
            samples: vec![BandSamples::default(); len],
            sample_thresholds: vec![u64::MAX; len * N_BANDS],
            tokens: vec![TokenSketch::default(); len],
            ngrams: vec![NgramTable::default(); len],
            first_nonfinite: None,
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

    /// Accumulates the core rows of `batch` for this range's features.
    pub fn update(&mut self, batch: &ActivationBatch<'_>, settings: &Settings) {
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
    }

    fn update_dense(&mut self, batch: &ActivationBatch<'_>, data: &[f32], settings: &Settings) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("bmi1")
            {
                // SAFETY: the features the function is compiled for were just detected.
                unsafe { self.update_dense_avx512(batch, data, settings) };
                return;
            }
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: as above.
                unsafe { self.update_dense_avx2(batch, data, settings) };
                return;
            }
        }
        self.update_dense_generic(batch, data, settings);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,bmi1,bmi2,popcnt,lzcnt")]
    unsafe fn update_dense_avx512(&mut self, b: &ActivationBatch<'_>, d: &[f32], s: &Settings) {
        self.update_dense_generic(b, d, s)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,bmi1,bmi2,popcnt,lzcnt")]
    unsafe fn update_dense_avx2(&mut self, b: &ActivationBatch<'_>, d: &[f32], s: &Settings) {
        self.update_dense_generic(b, d, s)
    }

    #[inline(always)]
    fn update_dense_generic(
        &mut self,
        batch: &ActivationBatch<'_>,
        data: &[f32],
        settings: &Settings,
    ) {
        let n_features = batch.n_features;
        let thr = settings.threshold;
        let len = self.len();
        let core = batch.core.clone();
        let mut row_block = core.start;
        while row_block < core.end {
            let row_end = (row_block + ROW_BLOCK).min(core.end);
            let mut tile = 0;
            while tile < len {
                let tile_end = (tile + TILE).min(len);
                for row in row_block..row_end {
                    let base = row * n_features + self.start;
                    let slice = &data[base + tile..base + tile_end];
                    let mut chunks = slice.chunks_exact(16);
                    let mut offset = tile;
                    for chunk in &mut chunks {
                        let mut fire_mask: u32 = 0;
                        let mut bad_mask: u32 = 0;
                        for (i, &v) in chunk.iter().enumerate() {
                            let finite = is_finite(v);
                            fire_mask |= ((finite & (v >= thr)) as u32) << i;
                            bad_mask |= (!finite as u32) << i;
                        }
                        while fire_mask != 0 {
                            let i = fire_mask.trailing_zeros() as usize;
                            fire_mask &= fire_mask - 1;
                            self.fire(offset + i, chunk[i], row, batch, settings);
                        }
                        while bad_mask != 0 {
                            let i = bad_mask.trailing_zeros() as usize;
                            bad_mask &= bad_mask - 1;
                            self.nonfinite(offset + i, row, batch);
                        }
                        offset += 16;
                    }
                    for (i, &v) in chunks.remainder().iter().enumerate() {
                        if !is_finite(v) {
                            self.nonfinite(offset + i, row, batch);
                        } else if v >= thr {
                            self.fire(offset + i, v, row, batch, settings);
                        }
                    }
                }
                tile = tile_end;
            }
            row_block = row_end;
        }
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
                let example = self.example(local, v, row, batch, settings);
                let new_threshold = self.samples[local].insert(
                    settings.samples_per_band,
                    Sample {
                        band: band as u8,
                        hash: h,
                        example,
                    },
                );
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
        let ex = self.example(local, v, row, batch, settings);
        self.topk[local].insert(k, ex);
        self.moments[local].topk_threshold = self.topk[local].threshold(k);
    }

    fn example(
        &self,
        local: usize,
        v: f32,
        row: usize,
        batch: &ActivationBatch<'_>,
        settings: &Settings,
    ) -> Example {
        let rows = batch.context_rows(row, settings.context_window);
        let feature = self.start + local;
        Example {
            activation: v,
            sequence: batch.sequences[row],
            position: batch.positions[row],
            context_start: batch.positions[rows.start],
            context_tokens: batch.tokens[rows.clone()].to_vec(),
            context_activations: rows.map(|r| batch.value(r, feature)).collect(),
        }
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
        for (a, b) in self.hist.iter_mut().zip(&other.hist) {
            *a += b;
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
        self.hist.extend(other.hist);
        self.topk.extend(other.topk);
        self.samples.extend(other.samples);
        self.sample_thresholds.extend(other.sample_thresholds);
        self.tokens.extend(other.tokens);
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
            topk: self.topk.split_off(at),
            samples: self.samples.split_off(at),
            sample_thresholds: self.sample_thresholds.split_off(at * N_BANDS),
            tokens: self.tokens.split_off(at),
            ngrams: self.ngrams.split_off(at),
            first_nonfinite: None,
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

#[inline(always)]
fn is_finite(v: f32) -> bool {
    v.to_bits() & 0x7f80_0000 != 0x7f80_0000
}
