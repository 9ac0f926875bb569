//! N-grams ending at the firing token: per-feature counts and corpus-wide counts.
//!
//! Off unless `ExtractionConfig::ngram_capacity > 0` (it adds two table updates per firing
//! and two per token).
//!
//! **Keys.** A 2- or 3-gram of token ids is packed losslessly into one `u64`: three 21-bit
//! fields `(first, second, last)`, with `first = NONE` for a bigram. Ids ≥ 2²¹ − 1 (vocabularies
//! beyond two million tokens) are not representable and such n-grams are skipped. An n-gram is
//! only formed from tokens of the same sequence that are in the batch: the batch planner keeps
//! `context_window` margin rows before a cut, so with `context_window ≥ 2` (default 5) every
//! n-gram is seen; with a smaller window, n-grams straddling a batch cut are skipped both in
//! the feature's and the corpus counts.
//!
//! **Per feature** ([`NgramTable`]): exact while the feature has fired after at most
//! `ngram_capacity` distinct n-grams, then a Misra–Gries summary with the same guarantee as
//! [`super::token_sketch`]: reported ≤ true ≤ reported + `error`, `error` ≤ N / (capacity + 1).
//!
//! **Corpus** ([`CorpusNgrams`]): exact counts for the first `corpus_capacity` distinct
//! n-grams; n-grams first seen after that are counted in a count-min sketch (depth
//! [`CM_DEPTH`], width [`CM_WIDTH`]), whose estimate is never below the true count and, with
//! probability ≥ 1 − e^−depth, exceeds it by at most e/width × (occurrences counted in the
//! sketch). Over-counted occurrences can only lower a label's precision. `is_exact()` says
//! whether the sketch was ever used.

use std::collections::HashMap;

use crate::ingest::{ActivationBatch, TokenId};

/// Bits per token id in a packed key.
pub const ID_BITS: u32 = 21;
/// Field value meaning "no token" (the first field of a bigram).
pub const NONE: u64 = (1 << ID_BITS) - 1;
const EMPTY: u64 = u64::MAX;

/// Count-min rows.
pub const CM_DEPTH: usize = 4;
/// Count-min counters per row.
pub const CM_WIDTH: usize = 1 << 18;

/// Packs a bigram (`first == None`) or trigram; `None` if an id does not fit.
#[inline(always)]
pub fn pack(first: Option<TokenId>, second: TokenId, last: TokenId) -> Option<u64> {
    let f = first.map_or(NONE, |t| t as u64);
    let (s, l) = (second as u64, last as u64);
    if s >= NONE || l >= NONE || (first.is_some() && f >= NONE) {
        return None;
    }
    Some((f << (2 * ID_BITS)) | (s << ID_BITS) | l)
}

/// The token ids of a packed key, first to last (2 or 3 of them).
pub fn unpack(key: u64) -> Vec<TokenId> {
    let mask = NONE;
    let f = (key >> (2 * ID_BITS)) & mask;
    let s = (key >> ID_BITS) & mask;
    let l = key & mask;
    let mut v = Vec::with_capacity(3);
    if f != NONE {
        v.push(f as TokenId);
    }
    v.push(s as TokenId);
    v.push(l as TokenId);
    v
}

/// Rewrites the ids of a packed key through `map`.
pub fn remap_key(key: u64, map: &[TokenId]) -> Option<u64> {
    let ids = unpack(key);
    let m = |t: TokenId| map[t as usize];
    if ids.len() == 3 {
        pack(Some(m(ids[0])), m(ids[1]), m(ids[2]))
    } else {
        pack(None, m(ids[0]), m(ids[1]))
    }
}

/// Keys of the bigram and trigram ending at `row` (same sequence, consecutive positions).
#[inline(always)]
pub fn keys_at(batch: &ActivationBatch<'_>, row: usize) -> [Option<u64>; 2] {
    let seq = batch.sequences[row];
    let pos = batch.positions[row];
    let prev = |back: usize| -> Option<TokenId> {
        if row < back || pos < back as u32 {
            return None;
        }
        let r = row - back;
        (batch.sequences[r] == seq && batch.positions[r] + back as u32 == pos)
            .then(|| batch.tokens[r])
    };
    let t = batch.tokens[row];
    match prev(1) {
        None => [None, None],
        Some(p1) => [
            pack(None, p1, t),
            prev(2).and_then(|p2| pack(Some(p2), p1, t)),
        ],
    }
}

#[inline(always)]
fn slot_of(key: u64, mask: usize) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & mask
}

/// Packed n-gram → firing count for one feature (see the module doc for its guarantee).
#[cfg_attr(feature = "serde-state", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NgramTable {
    keys: Vec<u64>,
    counts: Vec<u64>,
    len: usize,
    /// Total amount decremented (0 = exact).
    pub error: u64,
}

impl NgramTable {
    /// Counts `n` firings after the n-gram `key`.
    pub fn add_n(&mut self, key: u64, n: u64, capacity: usize) {
        if !self.keys.is_empty() {
            let mask = self.keys.len() - 1;
            let mut i = slot_of(key, mask);
            loop {
                let k = self.keys[i];
                if k == key {
                    self.counts[i] += n;
                    return;
                }
                if k == EMPTY {
                    break;
                }
                i = (i + 1) & mask;
            }
        }
        if self.len < capacity.max(1) {
            if (self.len + 1) * 2 > self.keys.len() {
                let entries: Vec<(u64, u64)> = self.entries().collect();
                self.rebuild(entries, (self.keys.len() * 2).max(8));
            }
            self.insert_new(key, n);
        } else {
            // Misra–Gries step: cancel units of the newcomer against every held n-gram.
            let smallest = self.entries().map(|e| e.1).min().unwrap_or(0);
            let dec = n.min(smallest);
            self.error += dec;
            let entries: Vec<(u64, u64)> = self
                .entries()
                .filter_map(|(k, c)| (c > dec).then_some((k, c - dec)))
                .collect();
            let size = ((entries.len() + 1) * 2).next_power_of_two().max(8);
            self.rebuild(entries, size);
            if n > dec {
                self.add_n(key, n - dec, capacity);
            }
        }
    }

    fn insert_new(&mut self, key: u64, n: u64) {
        let mask = self.keys.len() - 1;
        let mut i = slot_of(key, mask);
        while self.keys[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.keys[i] = key;
        self.counts[i] = n;
        self.len += 1;
    }

    fn rebuild(&mut self, entries: Vec<(u64, u64)>, size: usize) {
        self.keys = vec![EMPTY; size];
        self.counts = vec![0; size];
        self.len = 0;
        for (k, c) in entries {
            self.insert_new(k, c);
        }
    }

    /// The count held for `key` (0 when not held).
    pub fn get(&self, key: u64) -> u64 {
        if self.keys.is_empty() {
            return 0;
        }
        let mask = self.keys.len() - 1;
        let mut i = slot_of(key, mask);
        loop {
            match self.keys[i] {
                k if k == key => return self.counts[i],
                EMPTY => return 0,
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// `(key, count)` pairs, any order.
    pub fn entries(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.keys
            .iter()
            .zip(&self.counts)
            .filter(|(k, _)| **k != EMPTY)
            .map(|(k, c)| (*k, *c))
    }

    /// Distinct n-grams held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Merges `other` (Agarwal et al. 2012, as the token sketch).
    pub fn merge(&mut self, other: &NgramTable, capacity: usize) {
        let (entries, error) = super::summary::merge(
            self.entries(),
            self.error,
            other.entries(),
            other.error,
            capacity,
        );
        self.error = error;
        let size = ((entries.len() + 1) * 2).next_power_of_two().max(8);
        self.rebuild(entries, size);
    }

    /// Rewrites token ids through `map`.
    pub fn remap(&mut self, map: &[TokenId]) {
        let mut all: HashMap<u64, u64> = HashMap::new();
        for (k, c) in self.entries() {
            if let Some(k) = remap_key(k, map) {
                *all.entry(k).or_default() += c;
            }
        }
        let entries: Vec<(u64, u64)> = all.into_iter().collect();
        let size = ((entries.len() + 1) * 2).next_power_of_two().max(8);
        self.rebuild(entries, size);
    }
}

/// Corpus-wide n-gram occurrences (see the module doc for exactness).
#[cfg_attr(feature = "serde-state", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusNgrams {
    exact: HashMap<u64, u64>,
    capacity: usize,
    /// `CM_DEPTH × CM_WIDTH` counters, allocated on first overflow.
    sketch: Vec<u64>,
}

fn cm_slot(key: u64, row: usize) -> usize {
    const SEEDS: [u64; CM_DEPTH] = [
        0x9E37_79B9_7F4A_7C15,
        0xC2B2_AE3D_27D4_EB4F,
        0x1656_67B1_9E37_79F9,
        0xD6E8_FEB8_6659_FD93,
    ];
    let h = (key ^ (key >> 29)).wrapping_mul(SEEDS[row]);
    row * CM_WIDTH + ((h >> 40) as usize & (CM_WIDTH - 1))
}

impl CorpusNgrams {
    /// Empty counts, exact for the first `capacity` distinct n-grams.
    pub fn new(capacity: usize) -> Self {
        Self {
            exact: HashMap::new(),
            capacity,
            sketch: Vec::new(),
        }
    }

    /// Counts `n` occurrences of `key`.
    pub fn add_n(&mut self, key: u64, n: u64) {
        if let Some(c) = self.exact.get_mut(&key) {
            *c += n;
        } else if self.exact.len() < self.capacity {
            self.exact.insert(key, n);
        } else {
            if self.sketch.is_empty() {
                self.sketch = vec![0; CM_DEPTH * CM_WIDTH];
            }
            for r in 0..CM_DEPTH {
                self.sketch[cm_slot(key, r)] += n;
            }
        }
    }

    /// Occurrences of `key` (an upper bound when the sketch is in use).
    pub fn get(&self, key: u64) -> u64 {
        if let Some(&c) = self.exact.get(&key) {
            return c;
        }
        if self.sketch.is_empty() {
            return 0;
        }
        (0..CM_DEPTH)
            .map(|r| self.sketch[cm_slot(key, r)])
            .min()
            .unwrap_or(0)
    }

    /// Whether every count is exact.
    pub fn is_exact(&self) -> bool {
        self.sketch.is_empty()
    }

    /// Folds in another part of the corpus.
    pub fn merge(&mut self, other: CorpusNgrams) {
        for (k, c) in other.exact {
            self.add_n(k, c);
        }
        if !other.sketch.is_empty() {
            if self.sketch.is_empty() {
                self.sketch = other.sketch;
            } else {
                for (a, b) in self.sketch.iter_mut().zip(&other.sketch) {
                    *a += b;
                }
            }
        }
    }

    /// Rewrites token ids through `map`. Sketched counts cannot be re-keyed: they are
    /// dropped from exactness by keeping the sketch as is (estimates stay upper bounds only
    /// for keys that were exact), so remapping a sketched accumulator is refused.
    pub fn remap(&mut self, map: &[TokenId]) -> Result<(), String> {
        if !self.sketch.is_empty() {
            return Err("corpus n-gram counts overflowed into the count-min sketch and cannot be remapped to another vocabulary".into());
        }
        let mut out = HashMap::with_capacity(self.exact.len());
        for (k, c) in self.exact.drain() {
            if let Some(k) = remap_key(k, map) {
                *out.entry(k).or_default() += c;
            }
        }
        self.exact = out;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_roundtrips_and_tables_are_exact_then_bounded() {
        let k = pack(Some(7), 0, 123_456).unwrap();
        assert_eq!(unpack(k), vec![7, 0, 123_456]);
        let k2 = pack(None, 5, 9).unwrap();
        assert_eq!(unpack(k2), vec![5, 9]);
        assert_ne!(k, k2);
        assert!(pack(None, NONE as u32, 1).is_none());

        let mut t = NgramTable::default();
        for i in 0..40u64 {
            t.add_n(i, i + 1, 64);
        }
        let mut e: Vec<_> = t.entries().collect();
        e.sort();
        assert_eq!(e, (0..40u64).map(|i| (i, i + 1)).collect::<Vec<_>>());
        assert_eq!(t.error, 0);

        let mut t = NgramTable::default();
        let mut n = 0;
        for i in 0..1000u64 {
            t.add_n(i, 1, 16);
            n += 1;
        }
        for _ in 0..300 {
            t.add_n(99_999, 1, 16);
            n += 1;
        }
        assert!(t.error <= n / 17);
        let heavy = t.entries().find(|e| e.0 == 99_999).unwrap().1;
        assert!(heavy <= 300 && heavy + t.error >= 300);
    }

    #[test]
    fn corpus_counts_exact_then_upper_bounds() {
        let mut c = CorpusNgrams::new(10);
        for k in 0..100u64 {
            c.add_n(k, k + 1);
        }
        assert!(!c.is_exact());
        for k in 0..100u64 {
            let got = c.get(k);
            if k < 10 {
                assert_eq!(got, k + 1);
            } else {
                assert!(got > k);
            }
        }
        let mut a = CorpusNgrams::new(1000);
        let mut b = CorpusNgrams::new(1000);
        a.add_n(1, 2);
        b.add_n(1, 3);
        b.add_n(2, 1);
        a.merge(b);
        assert_eq!((a.get(1), a.get(2), a.get(3)), (5, 1, 0));
        assert!(a.is_exact());
    }
}
