//! The merge shared by the Misra–Gries summaries ([`super::token_sketch`], [`super::ngrams`]).

use std::collections::HashMap;
use std::hash::Hash;

/// Merges two Misra–Gries summaries (Agarwal et al. 2012): the counts of each key are
/// added; if more than `capacity` keys result, the (capacity+1)-th largest count is
/// subtracted from every count, keys left without a positive count are dropped, and the
/// amount is added to the error. The merged summary keeps the bound of a summary of the
/// concatenated streams. Returns the entries and the merged error; entries are sorted by
/// key so the table rebuilt from them does not depend on hash-map iteration order.
pub(super) fn merge<K: Eq + Hash + Ord>(
    a: impl Iterator<Item = (K, u64)>,
    a_error: u64,
    b: impl Iterator<Item = (K, u64)>,
    b_error: u64,
    capacity: usize,
) -> (Vec<(K, u64)>, u64) {
    let mut all: HashMap<K, u64> = a.collect();
    for (k, c) in b {
        *all.entry(k).or_default() += c;
    }
    let mut error = a_error + b_error;
    let mut entries: Vec<(K, u64)> = all.into_iter().collect();
    if entries.len() > capacity {
        let mut counts: Vec<u64> = entries.iter().map(|e| e.1).collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let cut = counts[capacity];
        error += cut;
        entries = entries
            .into_iter()
            .filter_map(|(k, c)| (c > cut).then_some((k, c - cut)))
            .collect();
    }
    entries.sort_unstable();
    (entries, error)
}
