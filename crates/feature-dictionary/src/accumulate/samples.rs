//! Activation-band samples for quantile-stratified examples.
//!
//! Firings are grouped into bands of one octave (8 histogram bins). In each band a feature
//! keeps the `s` firings with the smallest hash of (feature, sequence, position): a bottom-k
//! sample, uniformly random over the band's firings, yet deterministic (the same input gives
//! the same samples whatever the thread count or order) and exactly mergeable (the union's
//! `s` smallest hashes). At finalize the bands' samples are regrouped into equal-count
//! (quantile) groups using the histogram.

use super::histogram::{BINS_PER_OCTAVE, N_BINS};
use super::topk::Example;

/// Number of activation bands.
pub const N_BANDS: usize = N_BINS / BINS_PER_OCTAVE as usize;

/// Band of a histogram bin.
#[inline(always)]
pub fn band_of_bin(bin: usize) -> usize {
    bin / BINS_PER_OCTAVE as usize
}

/// Deterministic 64-bit hash of a firing (SplitMix64 finalizer).
#[inline(always)]
pub fn firing_hash(feature: u64, sequence: u64, position: u32) -> u64 {
    let mut z = feature.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ sequence.wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ (position as u64).wrapping_mul(0x1656_67B1_9E37_79F9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One sampled firing.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Band index.
    pub band: u8,
    /// Sampling priority (smaller wins).
    pub hash: u64,
    /// The example.
    pub example: Example,
}

/// All bands' samples of one feature.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BandSamples {
    /// Samples, any order.
    pub items: Vec<Sample>,
}

impl BandSamples {
    /// Admission threshold of `band` with `s` slots: a firing enters when its hash is below.
    pub fn threshold(&self, band: usize, s: usize) -> u64 {
        if s == 0 {
            return 0;
        }
        let mut n = 0;
        let mut max = 0;
        for it in self.items.iter().filter(|it| it.band as usize == band) {
            n += 1;
            max = max.max(it.hash);
        }
        if n < s {
            u64::MAX
        } else {
            max
        }
    }

    /// Adds a sample that beat the band's threshold; returns the band's new threshold.
    pub fn insert(&mut self, s: usize, sample: Sample) -> u64 {
        let band = sample.band as usize;
        let in_band = self
            .items
            .iter()
            .filter(|it| it.band as usize == band)
            .count();
        if in_band >= s {
            let worst = self
                .items
                .iter()
                .enumerate()
                .filter(|(_, it)| it.band as usize == band)
                .max_by_key(|(_, it)| it.hash)
                .map(|(i, _)| i)
                .expect("band is full");
            self.items[worst] = sample;
        } else {
            self.items.push(sample);
        }
        self.threshold(band, s)
    }

    /// Exact merge: per band, the `s` smallest hashes of the union.
    pub fn merge(&mut self, other: BandSamples, s: usize) {
        self.items.extend(other.items);
        self.items
            .sort_by_key(|it| (it.band, it.hash, it.example.sequence, it.example.position));
        let mut kept = Vec::with_capacity(self.items.len());
        let mut run = (u8::MAX, 0usize);
        for it in self.items.drain(..) {
            if it.band != run.0 {
                run = (it.band, 0);
            }
            if run.1 < s {
                kept.push(it);
                run.1 += 1;
            }
        }
        self.items = kept;
    }
}
