//! Per-feature counts of the tokens a feature fires on.
//!
//! Exact while the feature has fired on at most `capacity` distinct tokens (the table simply
//! grows). Beyond that it becomes a Misra–Gries summary: when a new token arrives at a full
//! table, every count (and the newcomer) is decremented by one and zeros are dropped.
//! Guarantees, with N the feature's firings and `error` the total decremented:
//! a reported count ≤ the true count ≤ reported + `error`, and `error` ≤ N / (capacity + 1),
//! so every token with more than N / (capacity + 1) firings is kept. Merging follows
//! Agarwal et al. (2012): add counts, then subtract the (capacity+1)-th largest; the same
//! bound holds for the merged stream. `error == 0` means the counts are exact.
//!
//! Once tokens are dropped the table no longer tells how many distinct tokens there were:
//! from the first drop on, a [`DistinctSketch`] estimates it (see [`super::distinct`]).

use super::distinct::{DistinctSketch, TokenKeys};
use super::scan::prefetch;
use crate::ingest::TokenId;

const EMPTY: TokenId = TokenId::MAX;

/// Smallest table: most features fire on dozens of distinct tokens, and starting small
/// would rehash several times on their first batch.
const MIN_SLOTS: usize = 32;

/// Token → firing count for one feature.
///
/// Slots hold `(token, count)` side by side so a probe touches one cache line. Counts are
/// u32: a count that would pass `u32::MAX` saturates and marks the sketch inexact
/// (`saturated`), never wraps.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde-state", derive(serde::Serialize, serde::Deserialize))]
pub struct TokenSketch {
    slots: Vec<(TokenId, u32)>,
    len: usize,
    /// Total amount decremented (0 = exact).
    pub error: u64,
    /// Whether a count saturated at `u32::MAX`.
    pub saturated: bool,
    /// The distinct-token estimate, kept from the first time a token was dropped (until
    /// then the table holds every distinct token).
    pub distinct: Option<Box<DistinctSketch>>,
}

#[inline(always)]
fn slot_of(token: TokenId, mask: usize) -> usize {
    ((token as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize & mask
}

impl TokenSketch {
    /// Counts one firing on `token` (keys: the ids themselves).
    #[inline]
    pub fn add(&mut self, token: TokenId, capacity: usize) {
        self.add_n(token, 1, capacity, TokenKeys::default());
    }

    /// Counts `n` firings on `token`.
    pub fn add_n(&mut self, token: TokenId, n: u64, capacity: usize, keys: TokenKeys<'_>) {
        if !self.slots.is_empty() {
            let mask = self.slots.len() - 1;
            let mut i = slot_of(token, mask);
            loop {
                let (k, c) = self.slots[i];
                if k == token {
                    let sum = c as u64 + n;
                    if sum > u32::MAX as u64 {
                        self.saturated = true;
                    }
                    self.slots[i].1 = sum.min(u32::MAX as u64) as u32;
                    return;
                }
                if k == EMPTY {
                    break;
                }
                i = (i + 1) & mask;
            }
        }
        let full = self.len >= capacity.max(1);
        if full {
            self.start_distinct(keys);
        }
        if let Some(d) = &mut self.distinct {
            d.insert(keys.key(token));
        }
        if full {
            self.misra_gries_step(token, n, capacity, keys);
        } else {
            if self.overloaded_with(self.len + 1) {
                self.grow();
            }
            self.insert_new(token, n);
        }
    }

    /// Starts the distinct-token estimate before the table first drops a token: the table
    /// holds every distinct token so far, and the sketch takes them all in.
    fn start_distinct(&mut self, keys: TokenKeys<'_>) {
        if self.distinct.is_none() {
            let mut d = DistinctSketch::default();
            for (t, _) in self.entries() {
                d.insert(keys.key(t));
            }
            self.distinct = Some(Box::new(d));
        }
    }

    /// Distinct tokens fired on, and whether that is exact: the table's size until a token
    /// was dropped, then the estimate (never below the tokens the table still holds).
    pub fn distinct_tokens(&self) -> (u64, bool) {
        match &self.distinct {
            Some(d) if self.error > 0 => {
                ((d.estimate().round() as u64).max(self.len as u64), false)
            }
            _ => (self.len as u64, true),
        }
    }

    /// Slots per cache line.
    const SLOTS_PER_LINE: usize = 64 / std::mem::size_of::<(TokenId, u32)>();

    /// Hints the CPU to fetch the slots `tokens` will probe, ahead of counting them: the
    /// whole table when it has fewer cache lines than there are tokens (a column's firings
    /// mostly repeat a few tokens, and one hint per line beats one per firing), else the
    /// slot of each token.
    #[inline]
    pub fn prefetch_for(&self, tokens: impl ExactSizeIterator<Item = TokenId>) {
        if self.slots.is_empty() {
            return;
        }
        if self.slots.len() / Self::SLOTS_PER_LINE <= tokens.len() {
            for line in self.slots.iter().step_by(Self::SLOTS_PER_LINE) {
                prefetch(line);
            }
        } else {
            for t in tokens {
                self.prefetch(t);
            }
        }
    }

    /// Hints the CPU to fetch the slot where `token` would be found, ahead of an update.
    #[inline(always)]
    pub fn prefetch(&self, token: TokenId) {
        if !self.slots.is_empty() {
            prefetch(&self.slots[slot_of(token, self.slots.len() - 1)]);
        }
    }

    /// Counts one firing on each of `tokens`, the same as calling [`TokenSketch::add`] for
    /// each in order. When the table cannot reach capacity (no Misra–Gries step can occur)
    /// and keeps no distinct-token estimate, the probes skip `add`'s capacity checks and the
    /// estimate. The replay fetches the slots ahead, one column early, with
    /// [`TokenSketch::prefetch`].
    pub fn add_all(&mut self, tokens: &[TokenId], capacity: usize, keys: TokenKeys<'_>) {
        let capacity = capacity.max(1);
        // Once the table has dropped tokens it may be below capacity again, but a token
        // new to it may be one it dropped or one never seen: only the estimate can tell,
        // so every new token must reach it.
        if self.distinct.is_some() || self.len + tokens.len() > capacity {
            for &t in tokens {
                self.add_n(t, 1, capacity, keys);
            }
            return;
        }
        if self.slots.is_empty() {
            self.resize(MIN_SLOTS);
        }
        for &t in tokens {
            self.count_one(t);
        }
    }

    /// One firing on `token`, in a table that has room for a new token (no Misra–Gries).
    #[inline(always)]
    fn count_one(&mut self, token: TokenId) {
        let mask = self.slots.len() - 1;
        let mut i = slot_of(token, mask);
        loop {
            let (k, c) = self.slots[i];
            if k == token {
                if c == u32::MAX {
                    self.saturated = true;
                } else {
                    self.slots[i].1 = c + 1;
                }
                return;
            }
            if k == EMPTY {
                break;
            }
            i = (i + 1) & mask;
        }
        if self.overloaded_with(self.len + 1) {
            self.grow();
            self.insert_new(token, 1);
        } else {
            self.slots[i] = (token, 1);
            self.len += 1;
        }
    }

    /// Whether `entries` would load the table past 3/4 (linear probing stays short below
    /// that, and a fuller table touches fewer cache lines per feature).
    #[inline(always)]
    fn overloaded_with(&self, entries: usize) -> bool {
        entries * 4 > self.slots.len() * 3
    }

    #[cold]
    fn misra_gries_step(&mut self, token: TokenId, n: u64, capacity: usize, keys: TokenKeys<'_>) {
        // Cancel units of the newcomer against every held token.
        let dec = n.min(self.entries().map(|e| e.1).min().unwrap_or(0));
        self.error += dec;
        let remaining = n - dec;
        let entries: Vec<(TokenId, u64)> = self
            .entries()
            .filter_map(|(t, c)| (c > dec).then_some((t, c - dec)))
            .collect();
        self.rebuild(entries);
        if remaining > 0 {
            self.add_n(token, remaining, capacity, keys);
        }
    }

    fn insert_new(&mut self, token: TokenId, n: u64) {
        let mask = self.slots.len() - 1;
        let mut i = slot_of(token, mask);
        while self.slots[i].0 != EMPTY {
            i = (i + 1) & mask;
        }
        if n > u32::MAX as u64 {
            self.saturated = true;
        }
        self.slots[i] = (token, n.min(u32::MAX as u64) as u32);
        self.len += 1;
    }

    fn grow(&mut self) {
        self.resize((self.slots.len() * 2).max(MIN_SLOTS));
    }

    /// Rehashes into `new_len` slots (a power of two above twice the entries).
    fn resize(&mut self, new_len: usize) {
        let old = std::mem::replace(&mut self.slots, vec![(EMPTY, 0); new_len]);
        let mask = new_len - 1;
        for (t, c) in old.into_iter().filter(|e| e.0 != EMPTY) {
            let mut i = slot_of(t, mask);
            while self.slots[i].0 != EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = (t, c);
        }
    }

    fn rebuild(&mut self, entries: Vec<(TokenId, u64)>) {
        let size = ((entries.len() + 1) * 4)
            .div_ceil(3)
            .next_power_of_two()
            .max(8);
        self.slots = vec![(EMPTY, 0); size];
        self.len = 0;
        for (t, c) in entries {
            self.insert_new(t, c);
        }
    }

    /// `(token, count)` pairs, any order.
    pub fn entries(&self) -> impl Iterator<Item = (TokenId, u64)> + '_ {
        self.slots
            .iter()
            .filter(|(k, _)| *k != EMPTY)
            .map(|&(k, c)| (k, c as u64))
    }

    /// Distinct tokens held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the counts are exact.
    pub fn is_exact(&self) -> bool {
        self.error == 0 && !self.saturated
    }

    /// Merges `other` (see the module doc for the guarantee). `keys` must give both
    /// tables' ids the same keys (the ids of `other` already mean this table's tokens).
    pub fn merge(&mut self, other: &TokenSketch, capacity: usize, keys: TokenKeys<'_>) {
        // The union may drop tokens: both sides' distinct tokens go into the estimate first
        // (a side without one holds all of its tokens).
        if self.distinct.is_some()
            || other.distinct.is_some()
            || self.len + other.len > capacity.max(1)
        {
            self.start_distinct(keys);
            let d = self.distinct.as_mut().expect("started above");
            match &other.distinct {
                Some(theirs) => d.union(theirs),
                None => other.entries().for_each(|(t, _)| d.insert(keys.key(t))),
            }
        }
        let (entries, error) = super::summary::merge(
            self.entries(),
            self.error,
            other.entries(),
            other.error,
            capacity,
        );
        self.error = error;
        self.saturated |= other.saturated;
        self.rebuild(entries);
        if self.error == 0 {
            // Nothing was dropped after all (the two shared tokens): the table holds every
            // distinct token again, and the estimate restarts from it if it ever overflows.
            self.distinct = None;
        }
    }

    /// Remaps token ids (merging accumulators built with different vocabularies). Ids
    /// mapped to one id add up: exact counts stay exact; a summary count pooled from `m` ids
    /// may undercount by up to `m × error`. The distinct-token estimate is kept as it is:
    /// exact for keys that do not depend on ids (texts), while with ids as keys it counts the
    /// ids before the remap (pooled ids count apart).
    pub fn remap(&mut self, map: &[TokenId]) {
        let mut pooled: std::collections::HashMap<TokenId, u64> =
            std::collections::HashMap::with_capacity(self.len);
        for (t, c) in self.entries() {
            *pooled.entry(map[t as usize]).or_default() += c;
        }
        // `rebuild` inserts without looking for an existing entry: two entries for one id
        // would show the token twice with split counts. Sorted so the table's layout does
        // not depend on hash-map iteration order.
        let mut entries: Vec<(TokenId, u64)> = pooled.into_iter().collect();
        entries.sort_unstable();
        self.rebuild(entries);
    }
}

#[cfg(test)]
mod tests {
    use super::super::distinct::text_key;
    use super::*;

    #[test]
    fn exact_until_capacity_then_bounded() {
        let mut s = TokenSketch::default();
        for t in 0..50u32 {
            for _ in 0..=t {
                s.add(t, 64);
            }
        }
        assert!(s.is_exact());
        let mut got: Vec<_> = s.entries().collect();
        got.sort();
        assert_eq!(
            got,
            (0..50u32).map(|t| (t, t as u64 + 1)).collect::<Vec<_>>()
        );

        // 1000 singletons then one heavy token: the heavy one must survive with a bounded error.
        let mut s = TokenSketch::default();
        let mut n = 0u64;
        for t in 0..1000u32 {
            s.add(t, 16);
            n += 1;
        }
        for _ in 0..500 {
            s.add(5000, 16);
            n += 1;
        }
        assert!(s.error <= n / 17);
        let heavy = s.entries().find(|e| e.0 == 5000).unwrap().1;
        assert!(heavy <= 500 && heavy + s.error >= 500);
    }

    /// A stream of firings on `distinct` tokens (ids from `first`), each token a few times.
    fn stream(first: u32, distinct: u32) -> Vec<TokenId> {
        (0..3).flat_map(|_| first..first + distinct).collect()
    }

    #[test]
    fn distinct_tokens_are_exact_within_capacity_and_estimated_beyond() {
        let mut s = TokenSketch::default();
        s.add_all(&stream(0, 60), 64, TokenKeys::default());
        assert_eq!(s.distinct_tokens(), (60, true));
        assert!(s.distinct.is_none());
        for (distinct, capacity) in [(65u32, 64usize), (5_000, 64), (5_000, 1024), (40_000, 16)] {
            let mut s = TokenSketch::default();
            s.add_all(&stream(0, distinct), capacity, TokenKeys::default());
            let (estimate, exact) = s.distinct_tokens();
            assert!(!exact && s.len() <= capacity);
            let error = (estimate as f64 / distinct as f64 - 1.0).abs();
            assert!(
                error < 0.07,
                "{distinct} distinct, capacity {capacity}: {estimate}"
            );
        }
    }

    #[test]
    fn merged_sketches_estimate_the_union_in_any_order() {
        // Two halves that each fit the table, and a third that overflows on its own; the
        // three overlap.
        let parts = [stream(0, 600), stream(400, 600), stream(900, 3_000)];
        let capacity = 1024;
        let mut one = TokenSketch::default();
        for p in &parts {
            one.add_all(p, capacity, TokenKeys::default());
        }
        let sketch = |p: &[TokenId]| {
            let mut s = TokenSketch::default();
            s.add_all(p, capacity, TokenKeys::default());
            s
        };
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
            let mut merged = sketch(&parts[order[0]]);
            for &i in &order[1..] {
                merged.merge(&sketch(&parts[i]), capacity, TokenKeys::default());
            }
            // The estimate of the union is the one pass's (its registers are the same).
            assert_eq!(merged.distinct, one.distinct);
        }
        let (estimate, exact) = one.distinct_tokens();
        assert!(!exact && (estimate as f64 / 3_900.0 - 1.0).abs() < 0.07);
        // Two parts whose union still fits stay exact, also when the two alone would not.
        let mut small = sketch(&stream(0, 300));
        small.merge(&sketch(&stream(200, 300)), capacity, TokenKeys::default());
        assert_eq!(small.distinct_tokens(), (500, true));
        let mut overlapping = sketch(&stream(0, 700));
        overlapping.merge(&sketch(&stream(200, 700)), capacity, TokenKeys::default());
        assert_eq!(overlapping.distinct_tokens(), (900, true));
        assert!(overlapping.is_exact() && overlapping.distinct.is_none());
    }

    #[test]
    fn text_keys_keep_the_estimate_right_when_ids_are_renumbered() {
        // Two shards interned their own vocabularies: the same word has other ids in each.
        let words: Vec<String> = (0..3_000).map(|i| format!("w{i}")).collect();
        let capacity = 256;
        let shard = |range: std::ops::Range<usize>| {
            let keys: Vec<u64> = words[range.clone()].iter().map(|w| text_key(w)).collect();
            let mut s = TokenSketch::default();
            let ids: Vec<TokenId> = (0..range.len() as TokenId).collect();
            s.add_all(&ids, capacity, TokenKeys(Some(&keys)));
            s
        };
        let all_keys: Vec<u64> = words.iter().map(|w| text_key(w)).collect();
        let mut a = shard(0..2_000);
        let mut b = shard(1_000..3_000);
        // b's id i is word 1000 + i in the merged vocabulary.
        b.remap(&(1_000..3_000).collect::<Vec<TokenId>>());
        a.merge(&b, capacity, TokenKeys(Some(&all_keys)));
        let mut one = TokenSketch::default();
        let ids: Vec<TokenId> = (0..3_000).collect();
        one.add_all(&ids, capacity, TokenKeys(Some(&all_keys)));
        assert_eq!(a.distinct, one.distinct);
    }

    #[test]
    fn remapping_several_ids_to_one_adds_their_counts() {
        let mut s = TokenSketch::default();
        for (t, n) in [(1, 3), (3, 2), (2, 1), (5, 4)] {
            s.add_n(t, n, 64, TokenKeys::default());
        }
        // Ids 1, 3 and 5 share a string whose id in the other vocabulary is 7.
        s.remap(&[0, 7, 8, 7, 9, 7]);
        let mut got: Vec<_> = s.entries().collect();
        got.sort();
        assert_eq!(got, vec![(7, 9), (8, 1)]);
        assert_eq!(s.len(), 2);
        assert!(s.is_exact());
        s.add(7, 64);
        assert_eq!(s.entries().find(|e| e.0 == 7), Some((7, 10)));
    }
}
