//! Activation-band samples for quantile-stratified examples.
//!
//! Firings are grouped into bands of two octaves (16 histogram bins). In each band a feature
//! keeps the `s` firings with the smallest hash of (feature, sequence, position): a bottom-k
//! sample, uniformly random over the band's firings, yet deterministic (the same input gives
//! the same samples whatever the thread count or order) and exactly mergeable (the union's
//! `s` smallest hashes). At finalize the bands' samples are regrouped into equal-count
//! (quantile) groups using the histogram.

use super::histogram::{BINS_PER_OCTAVE, N_BINS};
use super::topk::Example;

/// Histogram bins per band (two octaves: fine enough to stratify, coarse enough that
/// sampling stays rare in the hot loop).
const BINS_PER_BAND: usize = 2 * BINS_PER_OCTAVE as usize;

/// Number of activation bands.
pub const N_BANDS: usize = N_BINS.div_ceil(BINS_PER_BAND);

/// Band of a histogram bin.
#[inline(always)]
pub fn band_of_bin(bin: usize) -> usize {
    bin / BINS_PER_BAND
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
#[cfg_attr(feature = "serde-state", derive(serde::Serialize, serde::Deserialize))]
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
#[cfg_attr(feature = "serde-state", derive(serde::Serialize, serde::Deserialize))]
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

    /// Adds a sample that beat the band's threshold, filling its example in place (an
    /// evicted sample's buffers are reused); returns the band's new threshold.
    pub fn insert_with(
        &mut self,
        s: usize,
        band: u8,
        hash: u64,
        fill: impl FnOnce(&mut Example),
    ) -> u64 {
        let mut in_band = 0;
        let mut worst: Option<usize> = None;
        let mut second_max = 0u64;
        for (i, it) in self.items.iter().enumerate() {
            if it.band == band {
                in_band += 1;
                match worst {
                    Some(w) if self.items[w].hash >= it.hash => {
                        second_max = second_max.max(it.hash)
                    }
                    Some(w) => {
                        second_max = second_max.max(self.items[w].hash);
                        worst = Some(i);
                    }
                    None => worst = Some(i),
                }
            }
        }
        let slot = match worst {
            Some(w) if in_band >= s => w,
            _ => {
                self.items.push(Sample {
                    band,
                    hash,
                    example: Example::default(),
                });
                in_band += 1;
                self.items.len() - 1
            }
        };
        self.items[slot].band = band;
        self.items[slot].hash = hash;
        fill(&mut self.items[slot].example);
        if in_band < s {
            u64::MAX
        } else {
            // The new threshold is the band's largest hash after the replacement.
            let old_max_replaced = worst == Some(slot);
            if old_max_replaced {
                second_max.max(hash)
            } else {
                self.threshold(band as usize, s)
            }
        }
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
