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
        // Filter before subtracting: counts below `cut` would underflow.
        entries = entries
            .into_iter()
            .filter(|e| e.1 > cut)
            .map(|(k, c)| (k, c - cut))
            .collect();
    }
    entries.sort_unstable();
    (entries, error)
}

#[cfg(test)]
mod tests {
    use super::merge;

    #[test]
    fn subtracts_the_count_past_capacity_only_on_overflow() {
        let a = [(1u32, 10u64), (2, 5), (3, 1)];
        let b = [(2u32, 3u64), (4, 2), (5, 1)];
        // Sums 10, 8, 2, 1, 1: the third largest (2) is cut and added to the errors (0 + 1).
        let (entries, error) = merge(a.into_iter(), 0, b.into_iter(), 1, 2);
        assert_eq!((entries, error), (vec![(1, 8), (2, 6)], 3));
        let (entries, error) = merge(a.into_iter(), 0, b.into_iter(), 1, 5);
        assert_eq!(
            (entries, error),
            (vec![(1, 10), (2, 8), (3, 1), (4, 2), (5, 1)], 1)
        );
    }
}
