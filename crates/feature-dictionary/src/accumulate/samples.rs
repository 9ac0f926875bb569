//! Uniform example samples for quantile-stratified examples.
//!
//! Each feature keeps the `m` firings with the smallest hash of (feature, sequence, position):
//! a bottom-m sample, uniformly random over all its firings, yet deterministic (the same input
//! gives the same sample whatever the thread count or order) and exactly mergeable (the
//! union's `m` smallest hashes). At finalize the sample is split into the equal-count
//! (quantile) groups the histogram defines; the groups having equal counts, each expects
//! `m / QUANTILE_GROUPS` samples. (Samples kept per fixed activation band instead leave most
//! groups of a real feature empty: its dense low range falls in one band, which holds as
//! many samples as its sparse tail.)

use super::topk::Example;

/// Number of equal-count groups the quantile-stratified examples are split into (as delphi's
/// "quantiles" sampler); a feature samples `QUANTILE_GROUPS × samples_per_group` firings.
pub const QUANTILE_GROUPS: usize = 10;

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
    /// Sampling priority (smaller wins).
    pub hash: u64,
    /// The example.
    pub example: Example,
}

/// One feature's sample.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "serde-state", derive(serde::Serialize, serde::Deserialize))]
pub struct Samples {
    /// Samples, any order (their hashes must not be changed from outside).
    pub items: Vec<Sample>,
    /// `hashes[i] == items[i].hash`: finding the sample a newcomer replaces then reads one
    /// compact array instead of every example. Derived, rebuilt when stale.
    #[cfg_attr(feature = "serde-state", serde(skip))]
    hashes: Vec<u64>,
}

/// Equal when they hold the same samples (the hash index is derived).
impl PartialEq for Samples {
    fn eq(&self, other: &Self) -> bool {
        self.items == other.items
    }
}

impl Samples {
    /// Admission threshold with room for `m` samples: a firing enters when its hash is below.
    pub fn threshold(&self, m: usize) -> u64 {
        if m == 0 {
            0
        } else if self.items.len() < m {
            u64::MAX
        } else {
            self.items
                .iter()
                .map(|it| it.hash)
                .max()
                .unwrap_or(u64::MAX)
        }
    }

    fn sync_hashes(&mut self) {
        if self.hashes.len() != self.items.len() {
            self.hashes.clear();
            self.hashes.extend(self.items.iter().map(|it| it.hash));
        }
    }

    /// Appends the hashes of the samples to `out`.
    pub fn hashes_into(&mut self, out: &mut Vec<u64>) {
        self.sync_hashes();
        out.extend_from_slice(&self.hashes);
    }

    /// Admits the offers `(firing, hash)` whose hash is at most `cut`, the `m`-th smallest
    /// hash of the sample and the offers together, filling each admitted example in place
    /// (an evicted sample's buffers are reused) and appending its index in `items` to
    /// `admitted`; returns the new admission threshold. Samples above `cut` are the ones
    /// replaced, each once, so this is one pass over the sample whatever the offers.
    /// (Offers tied at `cut` beyond the sample's room are left out.)
    pub fn admit(
        &mut self,
        m: usize,
        cut: u64,
        offers: &[(u32, u64)],
        mut fill: impl FnMut(usize, &mut Example),
        admitted: &mut Vec<u32>,
    ) -> u64 {
        self.sync_hashes();
        // Room for what this call adds, at once: grown step by step, a first column's
        // samples were copied three times on their way to 40 (a fifth of a cold pass).
        let entering = offers.iter().filter(|o| o.1 <= cut).count();
        let room = (self.items.len() + entering).min(m);
        if room > self.items.capacity() {
            self.items.reserve_exact(room - self.items.len());
            self.hashes.reserve_exact(room - self.hashes.len());
        }
        let mut evict = 0;
        for &(firing, hash) in offers {
            if hash > cut {
                continue;
            }
            let item = if self.items.len() < m {
                self.items.push(Sample {
                    hash,
                    example: Example::default(),
                });
                self.hashes.push(hash);
                self.items.len() - 1
            } else {
                // Samples admitted here hash at most `cut`, so the scan never returns to them.
                while evict < self.hashes.len() && self.hashes[evict] <= cut {
                    evict += 1;
                }
                if evict == self.hashes.len() {
                    continue;
                }
                evict
            };
            self.hashes[item] = hash;
            let it = &mut self.items[item];
            it.hash = hash;
            fill(firing as usize, &mut it.example);
            admitted.push(item as u32);
        }
        self.threshold_of_hashes(m)
    }

    fn threshold_of_hashes(&self, m: usize) -> u64 {
        if m == 0 {
            0
        } else if self.hashes.len() < m {
            u64::MAX
        } else {
            self.hashes.iter().copied().max().unwrap_or(u64::MAX)
        }
    }

    /// Exact merge: the `m` smallest hashes of the union.
    pub fn merge(&mut self, other: Samples, m: usize) {
        self.items.extend(other.items);
        self.items
            .sort_by_key(|it| (it.hash, it.example.sequence, it.example.position));
        self.items.truncate(m);
        self.hashes.clear();
    }
}
