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

/// Deterministic 64-bit hash of a firing (SplitMix64 finalizer), computed as
/// `mix(feature_key(feature) ^ row_key(sequence, position))` so the row part can be computed
/// once per row and the feature part once per feature.
#[inline(always)]
pub fn firing_hash(feature: u64, sequence: u64, position: u32) -> u64 {
    mix(feature_key(feature) ^ row_key(sequence, position))
}

/// The feature's part of [`firing_hash`].
#[inline(always)]
pub fn feature_key(feature: u64) -> u64 {
    feature.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The row's part of [`firing_hash`].
#[inline(always)]
pub fn row_key(sequence: u64, position: u32) -> u64 {
    sequence.wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ (position as u64).wrapping_mul(0x1656_67B1_9E37_79F9)
}

/// The SplitMix64 finalizer of [`firing_hash`].
#[inline(always)]
pub fn mix(mut z: u64) -> u64 {
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
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "serde-state", derive(serde::Serialize, serde::Deserialize))]
pub struct BandSamples {
    /// Samples, any order (their band and hash must not be changed from outside).
    pub items: Vec<Sample>,
    /// `s` slots per band: `(hash, index into items)`, `EMPTY_SLOT` when free. Finding the
    /// sample a newcomer replaces then reads one band's slots (one cache line for s = 4)
    /// instead of every sample. Derived from `items`, rebuilt when stale.
    #[cfg_attr(feature = "serde-state", serde(skip))]
    slots: Vec<(u64, u32)>,
}

const EMPTY_SLOT: (u64, u32) = (u64::MAX, u32::MAX);

/// Equal when they hold the same samples (the slot index is derived).
impl PartialEq for BandSamples {
    fn eq(&self, other: &Self) -> bool {
        self.items == other.items
    }
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

    fn rebuild_slots(&mut self, s: usize) {
        self.slots.clear();
        self.slots.resize(N_BANDS * s, EMPTY_SLOT);
        let mut used = [0usize; N_BANDS];
        for (i, it) in self.items.iter().enumerate() {
            let b = it.band as usize;
            assert!(used[b] < s, "band {b} holds more than {s} samples");
            self.slots[b * s + used[b]] = (it.hash, i as u32);
            used[b] += 1;
        }
    }

    /// Appends the hashes of `band`'s samples (with `s` slots per band) to `out`.
    pub fn band_hashes(&mut self, s: usize, band: usize, out: &mut Vec<u64>) {
        if self.slots.len() != N_BANDS * s {
            self.rebuild_slots(s);
        }
        out.extend(
            self.slots[band * s..(band + 1) * s]
                .iter()
                .filter(|slot| slot.1 != u32::MAX)
                .map(|slot| slot.0),
        );
    }

    /// Adds a sample that beat the band's threshold, filling its example in place (an
    /// evicted sample's buffers are reused); returns the band's new threshold and the
    /// sample's index in `items`.
    pub fn insert_with(
        &mut self,
        s: usize,
        band: u8,
        hash: u64,
        fill: impl FnOnce(&mut Example),
    ) -> (u64, usize) {
        if self.slots.len() != N_BANDS * s {
            self.rebuild_slots(s);
        }
        let slots = &mut self.slots[band as usize * s..(band as usize + 1) * s];
        // The slot to take: a free one, else the largest hash (which the caller beat).
        let mut take = 0;
        for (j, slot) in slots.iter().enumerate() {
            if slot.1 == u32::MAX {
                take = j;
                break;
            }
            if slot.0 > slots[take].0 {
                take = j;
            }
        }
        let item = if slots[take].1 == u32::MAX {
            if self.items.is_empty() {
                // Most features sample a handful of bands: room for two of them at once.
                self.items.reserve_exact(2 * s);
            }
            self.items.push(Sample {
                band,
                hash,
                example: Example::default(),
            });
            self.items.len() - 1
        } else {
            slots[take].1 as usize
        };
        slots[take] = (hash, item as u32);
        let it = &mut self.items[item];
        it.band = band;
        it.hash = hash;
        fill(&mut it.example);
        let threshold = if slots.iter().any(|sl| sl.1 == u32::MAX) {
            u64::MAX
        } else {
            slots.iter().map(|sl| sl.0).max().unwrap_or(u64::MAX)
        };
        (threshold, item)
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
        self.slots.clear();
    }
}
