//! Accumulate: one streaming pass over all tokens updates per-feature state.
//!
//! [`Accumulator`] is the only place statistics are measured. Its state is
//! O(features × examples), never O(tokens), and [`Accumulator::merge`] combines the states of
//! two disjoint parts of a corpus:
//!
//! | statistic                          | merge                                   |
//! |------------------------------------|-----------------------------------------|
//! | counts, Σ(x−min), Σ(x−min)², min, max, positions | exact (sums in f64, re-based on the smaller minimum) |
//! | top-k examples (+ context)          | exact: the union's top k               |
//! | fixed-edge histogram                | exact: bin-wise sum                     |
//! | uniform example samples             | exact: the union's m smallest hashes    |
//! | global token counts                 | exact                                   |
//! | per-feature firing tokens           | exact up to `token_sketch_capacity` distinct tokens, then Misra–Gries (error bound in [`token_sketch`]) |
//! | distinct firing tokens, beyond that | HyperLogLog, ≈ 1.6 % standard error: register-wise max ([`distinct`]) |
//!
//! **Threads.** Within one accumulator, threads own disjoint feature ranges
//! ([`range::FeatureRange`]): each feature is updated by one thread, in token order, so the
//! result is bit-for-bit the same for any thread count (a token-partitioned scheme would sum
//! floats in a thread-dependent order). Shards and machines combine through `merge`.

pub mod coactivation;
pub mod distinct;
pub mod histogram;
pub mod ngrams;
pub mod range;
pub mod samples;
pub mod scan;
mod summary;
pub mod token_sketch;
pub mod topk;

use crate::error::{Error, Result};
use crate::ingest::{ActivationBatch, TokenId};
use crate::model::ExtractionConfig;
use range::FeatureRange;

/// Largest top-k ([`Settings::top_k`]) accepted.
pub const MAX_TOP_K: usize = 100_000;
/// Largest context window ([`Settings::context_window`]) accepted.
pub const MAX_CONTEXT_WINDOW: usize = 1_024;
/// Largest number of samples per quantile group ([`Settings::samples_per_group`]) accepted.
pub const MAX_SAMPLES_PER_GROUP: usize = 1_000;
/// Largest token-table capacity ([`Settings::token_sketch_capacity`]) accepted.
pub const MAX_TOKEN_CAPACITY: usize = 1 << 24;
/// Largest per-feature n-gram capacity ([`Settings::ngram_capacity`]) accepted.
pub const MAX_NGRAM_CAPACITY: usize = 1 << 24;
/// Largest per-feature partner table of the correlation sketch.
pub const MAX_CORRELATION_CAPACITY: usize = 1 << 16;

/// The NaN and ±∞ values of a batch's core rows, which are never folded into statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonFiniteValues {
    /// How many.
    pub count: u64,
    /// Sequence of the first (in sequence, position, feature order).
    pub sequence: u64,
    /// Position of the first.
    pub position: u32,
    /// Feature of the first.
    pub feature: u64,
}

impl NonFiniteValues {
    /// Both counts, and the earlier first value.
    fn combine(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        match (a, b) {
            (Some(a), Some(b)) => {
                let key = |v: &Self| (v.sequence, v.position, v.feature);
                let first = if key(&b) < key(&a) { b } else { a };
                Some(Self {
                    count: a.count + b.count,
                    ..first
                })
            }
            (a, b) => a.or(b),
        }
    }

    /// As the error of a read of `path`.
    pub fn error(&self, path: &std::path::Path) -> Error {
        Error::NonFinite {
            path: path.to_path_buf(),
            count: self.count,
            sequence: self.sequence,
            position: self.position,
            feature: self.feature,
        }
    }
}

/// The accumulation parameters, validated.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde-state", derive(serde::Serialize, serde::Deserialize))]
pub struct Settings {
    /// Firing threshold (`value >= threshold`).
    pub threshold: f32,
    /// Top examples kept per feature.
    pub top_k: usize,
    /// Context tokens on each side of an example.
    pub context_window: usize,
    /// Samples per quantile group.
    pub samples_per_group: usize,
    /// Firings sampled per feature: [`samples::QUANTILE_GROUPS`] × `samples_per_group`.
    pub sample_size: usize,
    /// Distinct tokens counted exactly per feature.
    pub token_sketch_capacity: usize,
    /// Whether position statistics are kept.
    pub collect_positions: bool,
    /// Distinct n-grams counted exactly per feature; 0 = n-grams off ([`ngrams`]).
    pub ngram_capacity: usize,
    /// Distinct corpus n-grams counted exactly ([`ngrams::CorpusNgrams`]).
    pub ngram_corpus_capacity: usize,
    /// Co-activation state kept for correlations ([`coactivation`]).
    pub correlation: coactivation::CorrelationMode,
    /// Partners per feature in sketch mode.
    pub correlation_capacity: usize,
}

impl Settings {
    /// Validates an extraction config.
    pub fn from_config(c: &ExtractionConfig) -> Result<Self> {
        if !(c.min_activation.is_finite() && c.min_activation > 0.0) {
            return Err(Error::Invalid(format!(
                "min_activation must be a positive number (activations >= it count as firings), got {}",
                c.min_activation
            )));
        }
        if c.token_sketch_capacity == 0 {
            return Err(Error::Invalid(
                "token_sketch_capacity must be at least 1".into(),
            ));
        }
        let correlation: coactivation::CorrelationMode =
            c.correlation.parse().map_err(Error::Invalid)?;
        // An empty partner table keeps no partner, yet its Misra–Gries bound would claim
        // every count exact, so `correlated` would report whatever the table misread.
        if correlation == coactivation::CorrelationMode::Sketch && c.correlation_capacity == 0 {
            return Err(Error::Invalid(
                "correlation_capacity must be at least 1 with correlation \"sketch\", got 0".into(),
            ));
        }
        // Per-feature (or per-corpus) sizes: far beyond any use, these would only exhaust
        // memory midway through a pass (or abort it at once), so they are refused up front.
        let limits: [(&str, usize, usize); 7] = [
            (
                "max_examples_per_feature",
                c.max_examples_per_feature,
                MAX_TOP_K,
            ),
            ("context_window", c.context_window, MAX_CONTEXT_WINDOW),
            (
                "samples_per_group",
                c.samples_per_group,
                MAX_SAMPLES_PER_GROUP,
            ),
            (
                "token_sketch_capacity",
                c.token_sketch_capacity,
                MAX_TOKEN_CAPACITY,
            ),
            ("ngram_capacity", c.ngram_capacity, MAX_NGRAM_CAPACITY),
            ("ngram_corpus_capacity", c.ngram_corpus_capacity, 1 << 30),
            (
                "correlation_capacity",
                c.correlation_capacity,
                MAX_CORRELATION_CAPACITY,
            ),
        ];
        for (name, value, max) in limits {
            if value > max {
                return Err(Error::Invalid(format!(
                    "{name} must be at most {max}, got {value}"
                )));
            }
        }
        Ok(Self {
            threshold: c.min_activation as f32,
            top_k: c.max_examples_per_feature,
            context_window: c.context_window,
            samples_per_group: c.samples_per_group,
            sample_size: samples::QUANTILE_GROUPS * c.samples_per_group,
            token_sketch_capacity: c.token_sketch_capacity,
            collect_positions: c.collect_positions,
            ngram_capacity: c.ngram_capacity,
            ngram_corpus_capacity: c.ngram_corpus_capacity,
            correlation,
            correlation_capacity: c.correlation_capacity,
        })
    }

    /// What differs between two settings, in the extraction config's terms
    /// (`"max_examples_per_feature (20 vs 10)"`), or `None` when they are equal: the reason
    /// a merge of states accumulated with each is refused.
    pub fn difference(&self, other: &Settings) -> Option<String> {
        self.difference_spelling_bools(other, |b| if b { "true" } else { "false" })
    }

    /// [`Settings::difference`], with booleans spelled by `spell` (the Python package says
    /// `True`/`False`).
    pub fn difference_spelling_bools(
        &self,
        other: &Settings,
        spell: fn(bool) -> &'static str,
    ) -> Option<String> {
        if self == other {
            return None;
        }
        let mut out = Vec::new();
        if self.threshold != other.threshold {
            out.push(format!(
                "firing threshold ({} vs {}; from min_activation and activation_threshold)",
                self.threshold, other.threshold
            ));
        }
        for (name, x, y) in [
            ("max_examples_per_feature", self.top_k, other.top_k),
            ("context_window", self.context_window, other.context_window),
            (
                "samples_per_group",
                self.samples_per_group,
                other.samples_per_group,
            ),
            (
                "token_sketch_capacity",
                self.token_sketch_capacity,
                other.token_sketch_capacity,
            ),
            ("ngram_capacity", self.ngram_capacity, other.ngram_capacity),
            (
                "ngram_corpus_capacity",
                self.ngram_corpus_capacity,
                other.ngram_corpus_capacity,
            ),
            (
                "correlation_capacity",
                self.correlation_capacity,
                other.correlation_capacity,
            ),
        ] {
            if x != y {
                out.push(format!("{name} ({x} vs {y})"));
            }
        }
        if self.collect_positions != other.collect_positions {
            out.push(format!(
                "collect_positions ({} vs {})",
                spell(self.collect_positions),
                spell(other.collect_positions)
            ));
        }
        if self.correlation != other.correlation {
            out.push(format!(
                "correlation ({:?} vs {:?})",
                self.correlation, other.correlation
            ));
        }
        if out.is_empty() {
            // A field added later and not listed above: show both whole rather than nothing.
            out.push(format!("{self:?} vs {other:?}"));
        }
        Some(out.join(", "))
    }
}

/// Everything measured over a corpus, for all features.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde-state", derive(serde::Serialize, serde::Deserialize))]
pub struct Accumulator {
    settings: Settings,
    n_features: usize,
    /// Tokens accumulated.
    pub total_tokens: u64,
    /// Sequences started (a row at position 0 was accumulated).
    pub total_sequences: u64,
    /// Occurrences of each token id among accumulated rows.
    pub token_counts: Vec<u64>,
    /// Occurrences of every 2-/3-gram among accumulated rows (when n-grams are on).
    pub corpus_ngrams: Option<ngrams::CorpusNgrams>,
    /// Co-activation for correlations (when on).
    pub coactivation: Option<coactivation::Coactivation>,
    parts: Vec<FeatureRange>,
    /// The distinct-token keys the batches gave (`ActivationBatch::token_keys`, the longest
    /// seen: one vocabulary's keys only grow), for [`Accumulator::merge`], which must key
    /// the other side's tokens the same way.
    #[cfg_attr(feature = "serde-state", serde(default))]
    token_keys: Vec<u64>,
}

impl Accumulator {
    /// An empty accumulator for `n_features` features whose updates use `threads` threads.
    ///
    /// Aborts, as any allocation does, when the per-feature state does not fit in memory;
    /// [`Accumulator::try_new`] returns an error instead.
    pub fn new(n_features: usize, settings: Settings, threads: usize) -> Self {
        match Self::try_new(n_features, settings, threads) {
            Ok(acc) => acc,
            Err(e) => panic!("{e}"),
        }
    }

    /// Whether the feature ranges cover `0..n_features()` in order, each with every
    /// per-feature vector of its length, and the co-activation state (if any) is sized for
    /// as many features: what a state read back from bytes (the Python package's pickles)
    /// must show before an update indexes into it.
    pub fn has_consistent_shape(&self) -> bool {
        let mut next = 0;
        for part in &self.parts {
            if part.start != next || !part.has_consistent_shape() {
                return false;
            }
            next += part.len();
        }
        next == self.n_features
            && self
                .coactivation
                .as_ref()
                .is_none_or(|c| c.has_consistent_shape(self.n_features))
    }

    /// [`Accumulator::new`], or an error when the state every feature starts with (about
    /// 0.9 KiB each, most of it a histogram the OS hands out zeroed and maps only where a
    /// feature fires) cannot be allocated: an absurd feature count (a mistyped size, a
    /// damaged file's header) must be an error, not an aborted process.
    pub fn try_new(n_features: usize, settings: Settings, threads: usize) -> Result<Self> {
        let threads = threads.clamp(1, n_features.max(1));
        let mut parts = Vec::with_capacity(threads);
        for t in 0..threads {
            let a = n_features * t / threads;
            let b = n_features * (t + 1) / threads;
            parts.push(FeatureRange::try_new(a, b - a).map_err(|_| {
                Error::Invalid(format!(
                    "cannot allocate the state of {n_features} features (about {} GiB): is the feature count right?",
                    (n_features as f64 * FeatureRange::BYTES_PER_FEATURE as f64 / (1u64 << 30) as f64).ceil()
                ))
            })?);
        }
        let corpus_ngrams = (settings.ngram_capacity > 0)
            .then(|| ngrams::CorpusNgrams::new(settings.ngram_corpus_capacity));
        let coactivation = match settings.correlation {
            coactivation::CorrelationMode::Off => None,
            // Checked (with a clear error) by `update`, before anything this large exists.
            coactivation::CorrelationMode::Exact
                if n_features > coactivation::MAX_EXACT_FEATURES =>
            {
                None
            }
            mode => Some(coactivation::Coactivation::new(
                mode,
                n_features,
                settings.correlation_capacity,
            )),
        };
        Ok(Self {
            token_keys: Vec::new(),
            coactivation,
            corpus_ngrams,
            settings,
            n_features,
            total_tokens: 0,
            total_sequences: 0,
            token_counts: Vec::new(),
            parts,
        })
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The distinct-token keys the batches gave (see [`crate::ingest::ActivationBatch`]'s
    /// `token_keys`); empty when they gave none (tokens are then keyed by id).
    pub fn token_keys(&self) -> &[u64] {
        &self.token_keys
    }

    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Accumulates the core rows of `batch`.
    pub fn update(&mut self, batch: &ActivationBatch<'_>) -> Result<()> {
        self.update_unless_nonfinite(batch, false).map(|_| ())
    }

    /// [`Accumulator::update`], unless the batch holds NaN or ±∞ on its core rows: then
    /// nothing of it is accumulated (so the caller can refuse the batch, and a corrected
    /// one given again is not counted twice) and those values are returned.
    pub fn update_if_finite(
        &mut self,
        batch: &ActivationBatch<'_>,
    ) -> Result<Option<NonFiniteValues>> {
        self.update_unless_nonfinite(batch, true)
    }

    fn update_unless_nonfinite(
        &mut self,
        batch: &ActivationBatch<'_>,
        refuse_nonfinite: bool,
    ) -> Result<Option<NonFiniteValues>> {
        if batch.n_features != self.n_features {
            return Err(Error::Invalid(format!(
                "batch has {} features but the accumulator was made for {}",
                batch.n_features, self.n_features
            )));
        }
        if batch.n_rows() > range::MAX_BATCH_ROWS {
            return Err(Error::Invalid(format!(
                "a batch of {} rows exceeds the limit of {} rows; use smaller batches (--batch-values)",
                batch.n_rows(),
                range::MAX_BATCH_ROWS
            )));
        }
        if self.settings.correlation == coactivation::CorrelationMode::Exact
            && self.n_features > coactivation::MAX_EXACT_FEATURES
        {
            return Err(Error::Invalid(format!(
                "exact correlation keeps an F×F matrix and is limited to {} features; this SAE has {} — use the correlation sketch instead",
                coactivation::MAX_EXACT_FEATURES,
                self.n_features
            )));
        }
        if let Some(keys) = batch.token_keys {
            if keys.len() > self.token_keys.len() {
                let known = self.token_keys.len();
                self.token_keys.extend_from_slice(&keys[known..]);
            }
        }
        // Phase 1 changes nothing: every part transposes its features of the batch (and
        // looks for non-finite values when asked to refuse them). Phase 2, unless they
        // refuse the batch, replays it. Each part runs both phases on one thread, which
        // waits for the others between them, so its transposed batch stays in its caches.
        let settings = &self.settings;
        let found = if self.parts.len() == 1 {
            let part = &mut self.parts[0];
            let found = part.prepare(batch, refuse_nonfinite);
            match found {
                Some(_) => part.discard_prepared(),
                None => part.replay_prepared(batch, settings),
            }
            found
        } else {
            let prepared = std::sync::Barrier::new(self.parts.len());
            let found = std::sync::Mutex::new(None);
            let run = |part: &mut FeatureRange| {
                let mine = part.prepare(batch, refuse_nonfinite);
                {
                    let mut all = found.lock().unwrap_or_else(|e| e.into_inner());
                    *all = NonFiniteValues::combine(*all, mine);
                }
                prepared.wait();
                // Every part's finding is in by now: all parts decide alike.
                let refused = found.lock().unwrap_or_else(|e| e.into_inner()).is_some();
                if refused {
                    part.discard_prepared();
                } else {
                    part.replay_prepared(batch, settings);
                }
            };
            std::thread::scope(|scope| {
                let mut parts = self.parts.iter_mut();
                let first = parts.next().expect("at least one part");
                for part in parts {
                    scope.spawn(|| run(part));
                }
                run(first);
            });
            found.into_inner().unwrap_or_else(|e| e.into_inner())
        };
        if found.is_some() {
            return Ok(found);
        }
        if let Some(c) = &mut self.coactivation {
            c.update(batch, self.settings.threshold);
        }
        for row in batch.core.clone() {
            let t = batch.tokens[row] as usize;
            if t >= self.token_counts.len() {
                self.token_counts.resize(t + 1, 0);
            }
            self.token_counts[t] += 1;
            self.total_sequences += (batch.positions[row] == 0) as u64;
            if let Some(corpus) = &mut self.corpus_ngrams {
                for key in ngrams::keys_at(batch, row).into_iter().flatten() {
                    corpus.add_n(key, 1);
                }
            }
        }
        self.total_tokens += batch.core.len() as u64;
        Ok(None)
    }

    /// Total non-finite values seen and the first one's (sequence, position, feature).
    pub fn nonfinite(&self) -> (u64, Option<(u64, u32, u64)>) {
        let count = self
            .parts
            .iter()
            .flat_map(|p| p.moments.iter())
            .map(|m| m.nonfinite as u64)
            .sum();
        let first = self.parts.iter().filter_map(|p| p.first_nonfinite).min();
        (count, first)
    }

    /// All per-feature state as one range (for finalize and inspection).
    pub fn features(&self) -> impl Iterator<Item = &FeatureRange> {
        self.parts.iter()
    }

    /// The sequence indices that some kept example (top-k or sample, of any feature)
    /// comes from: what per-sequence data kept beside the accumulator may still be needed
    /// for (later examples come from later sequences).
    pub fn example_sequences(&self) -> std::collections::HashSet<u64> {
        let mut seen = std::collections::HashSet::new();
        for range in &self.parts {
            for kept in (0..range.len()).map(|local| range.kept(local)) {
                seen.extend(kept.topk.examples().map(|e| e.sequence));
                seen.extend(kept.samples.items.iter().map(|s| s.example.sequence));
            }
        }
        seen
    }

    /// Folds in the state of another part of the corpus, accumulated with the same settings
    /// and token ids. Sequence indices of the two parts should not collide. Tokens are keyed
    /// for the distinct-token estimate as the batches of either side keyed them (readers key
    /// them by their text); batches that gave no keys key them by id.
    pub fn merge(&mut self, other: Accumulator) -> Result<()> {
        let keys = if other.token_keys.len() > self.token_keys.len() {
            other.token_keys.clone()
        } else {
            std::mem::take(&mut self.token_keys)
        };
        let merged = self.merge_keyed(other, (!keys.is_empty()).then_some(&keys[..]));
        self.token_keys = keys;
        merged
    }

    /// [`Accumulator::merge`] for batches that gave `token_keys` (the same keys here).
    pub fn merge_keyed(&mut self, other: Accumulator, token_keys: Option<&[u64]>) -> Result<()> {
        if other.n_features != self.n_features {
            return Err(Error::Invalid(format!(
                "cannot merge accumulators of different feature counts ({} vs {})",
                self.n_features, other.n_features
            )));
        }
        if let Some(diff) = self.settings.difference(&other.settings) {
            return Err(Error::Invalid(format!(
                "cannot merge accumulators with different settings: {diff}"
            )));
        }
        self.total_tokens += other.total_tokens;
        self.total_sequences += other.total_sequences;
        if other.token_counts.len() > self.token_counts.len() {
            self.token_counts.resize(other.token_counts.len(), 0);
        }
        for (a, b) in self.token_counts.iter_mut().zip(&other.token_counts) {
            *a += b;
        }
        if let (Some(a), Some(b)) = (&mut self.corpus_ngrams, other.corpus_ngrams) {
            a.merge(b);
        }
        if let (Some(a), Some(b)) = (&mut self.coactivation, &other.coactivation) {
            a.merge(b);
        }
        let others = repartition(other.parts, &self.parts);
        let settings = &self.settings;
        std::thread::scope(|scope| {
            for (mine, theirs) in self.parts.iter_mut().zip(others) {
                scope.spawn(move || mine.merge(theirs, settings, distinct::TokenKeys(token_keys)));
            }
        });
        Ok(())
    }

    /// Adds `offset` to every sequence index held (see [`FeatureRange::shift_sequences`]), so
    /// a shard numbered from 0 can be merged after another without colliding.
    pub fn shift_sequences(&mut self, offset: u64) {
        for p in &mut self.parts {
            p.shift_sequences(offset);
        }
    }

    /// Like [`Accumulator::merge`], for an accumulator whose token ids index a different
    /// vocabulary: `map[old_id]` is the id in this accumulator's vocabulary. Several old ids
    /// may map to one (e.g. a tokenizer's ids mapped by string); their counts add up.
    /// `token_keys`: as the batches gave them, indexed by this vocabulary's ids.
    pub fn merge_remapped(
        &mut self,
        mut other: Accumulator,
        map: &[TokenId],
        token_keys: Option<&[u64]>,
    ) -> Result<()> {
        other.remap_tokens(map, self.token_counts.len())?;
        self.merge_keyed(other, token_keys)
    }

    /// Rewrites every token id through `map` (old id → new id, one-to-one), e.g. to put a
    /// vocabulary in another order; the global token counts get at least `min_len` entries.
    pub fn remap_tokens(&mut self, map: &[TokenId], min_len: usize) -> Result<()> {
        let mut counts = vec![0u64; min_len];
        for (old, &c) in self.token_counts.iter().enumerate() {
            let new = map[old] as usize;
            if new >= counts.len() {
                counts.resize(new + 1, 0);
            }
            counts[new] += c;
        }
        self.token_counts = counts;
        if let Some(c) = &mut self.corpus_ngrams {
            c.remap(map).map_err(Error::Invalid)?;
        }
        for p in &mut self.parts {
            p.remap_tokens(map);
        }
        Ok(())
    }
}

/// Reshapes `parts` (covering all features) to the boundaries of `like`.
fn repartition(parts: Vec<FeatureRange>, like: &[FeatureRange]) -> Vec<FeatureRange> {
    let same = parts.len() == like.len()
        && parts
            .iter()
            .zip(like)
            .all(|(a, b)| a.start == b.start && a.len() == b.len());
    if same {
        return parts;
    }
    let mut iter = parts.into_iter();
    let mut all = iter.next().expect("at least one part");
    for p in iter {
        all.append(p);
    }
    let mut out = Vec::with_capacity(like.len());
    for l in like.iter().rev() {
        out.push(all.split_off(l.start));
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes beyond any use are refused up front, each by its name, instead of exhausting
    /// memory midway through a pass (13 × 2³² sample slots aborted the process at once).
    #[test]
    fn absurd_sizes_are_errors() {
        let ok = ExtractionConfig::default();
        Settings::from_config(&ok).unwrap();
        type Edit = fn(&mut ExtractionConfig);
        let cases: [(&str, Edit); 5] = [
            ("samples_per_group", |c| {
                c.samples_per_group = u32::MAX as usize
            }),
            ("max_examples_per_feature", |c| {
                c.max_examples_per_feature = MAX_TOP_K + 1
            }),
            ("context_window", |c| {
                c.context_window = MAX_CONTEXT_WINDOW + 1
            }),
            ("token_sketch_capacity", |c| {
                c.token_sketch_capacity = usize::MAX
            }),
            ("ngram_capacity", |c| {
                c.ngram_capacity = MAX_NGRAM_CAPACITY + 1
            }),
        ];
        for (name, set) in cases {
            let mut c = ok.clone();
            set(&mut c);
            let e = Settings::from_config(&c).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains("at most"), "{e}");
        }
        // A sketch without partner slots is refused; with correlations off it is unused.
        let mut c = ok.clone();
        c.correlation = "sketch".into();
        c.correlation_capacity = 0;
        let e = Settings::from_config(&c).unwrap_err().to_string();
        assert!(
            e.contains("correlation_capacity must be at least 1") && e.contains("sketch"),
            "{e}"
        );
        c.correlation = "off".into();
        Settings::from_config(&c).unwrap();

        let mut edge = ok.clone();
        edge.samples_per_group = MAX_SAMPLES_PER_GROUP;
        edge.context_window = MAX_CONTEXT_WINDOW;
        Settings::from_config(&edge).unwrap();

        // A feature count no memory holds is an error, not an aborted process.
        let settings = Settings::from_config(&ok).unwrap();
        let e = Accumulator::try_new(1 << 50, settings.clone(), 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot allocate") && e.contains("GiB"), "{e}");
        assert_eq!(
            Accumulator::try_new(10, settings, 2).unwrap().n_features(),
            10
        );
    }

    /// `merge` keys the other side's tokens as the batches keyed them: with batches keyed by
    /// text (as every reader keys them), a side whose token table overflowed merged with one
    /// whose table did not counted the latter's tokens a second time, by id.
    #[test]
    fn merge_keys_tokens_as_the_batches_did() {
        let distinct = 300u32;
        let keys: Vec<u64> = (0..distinct)
            .map(|t| distinct::text_key(&format!("token {t}")))
            .collect();
        let config = ExtractionConfig {
            token_sketch_capacity: 50,
            ..Default::default()
        };
        let settings = Settings::from_config(&config).unwrap();
        // One feature firing on every row; the first shard meets 40 tokens (its table never
        // overflows), the second all 300.
        let shard = |tokens: Vec<TokenId>, first_sequence: u64| {
            let rows = tokens.len();
            let values = vec![1.0f32; rows];
            let mut acc = Accumulator::new(1, settings.clone(), 1);
            acc.update(&ActivationBatch {
                n_features: 1,
                sequences: (0..rows as u64).map(|r| first_sequence + r / 10).collect(),
                positions: (0..rows as u32).map(|r| r % 10).collect(),
                tokens,
                core: 0..rows,
                values: crate::ingest::BatchValues::Dense(&values),
                token_keys: Some(&keys),
            })
            .unwrap();
            acc
        };
        let few: Vec<TokenId> = (0..400).map(|r| r % 40).collect();
        let all: Vec<TokenId> = (0..900).map(|r| (r * 7) % distinct).collect();
        let estimate = |acc: &Accumulator| acc.parts[0].tokens(0).distinct_tokens();
        let whole = shard([few.clone(), all.clone()].concat(), 0);
        let (d, exact) = estimate(&whole);
        assert!(!exact && (285..=315).contains(&d), "{d}");
        for (mut a, b) in [
            (shard(few.clone(), 0), shard(all.clone(), 40)),
            (shard(all.clone(), 40), shard(few.clone(), 0)),
        ] {
            a.merge(b).unwrap();
            assert_eq!(estimate(&a), estimate(&whole));
        }
    }

    /// `update_if_finite` refuses a batch with NaN/±∞ on a core row before any of it is
    /// accumulated, on any thread count, and names the earliest; margin rows (context only)
    /// do not count. `update` takes the same batch and leaves the values out.
    #[test]
    fn a_batch_with_nonfinite_values_is_refused_whole() {
        let (rows, features) = (6usize, 10usize);
        let mut values: Vec<f32> = (0..rows * features)
            .map(|i| if i % 3 == 0 { 1.0 + i as f32 } else { 0.0 })
            .collect();
        values[4 * features + 7] = f32::NAN;
        values[2 * features + 9] = f32::INFINITY;
        values[features + 2] = f32::NEG_INFINITY; // row 1: a margin row below
        let make = |core: std::ops::Range<usize>| ActivationBatch {
            n_features: features,
            tokens: (0..rows as TokenId).collect(),
            sequences: vec![0; rows],
            positions: (0..rows as u32).collect(),
            core,
            values: crate::ingest::BatchValues::Dense(&values),
            token_keys: None,
        };
        let settings = Settings::from_config(&ExtractionConfig::default()).unwrap();
        for threads in [1, 2, 3] {
            let fresh = Accumulator::new(features, settings.clone(), threads);
            let mut acc = fresh.clone();
            let found = acc.update_if_finite(&make(2..rows)).unwrap().unwrap();
            let expected = NonFiniteValues {
                count: 2,
                sequence: 0,
                position: 2,
                feature: 9,
            };
            assert_eq!(found, expected, "{threads} threads");
            assert_eq!(acc, fresh, "{threads} threads");
            let all = acc.update_if_finite(&make(0..rows)).unwrap().unwrap();
            assert_eq!((all.count, all.position, all.feature), (3, 1, 2));
            assert_eq!(acc, fresh);
            // Without the non-finite rows the batch is taken.
            assert_eq!(acc.update_if_finite(&make(0..1)).unwrap(), None);
            assert_eq!(acc.total_tokens, 1);
            let mut lenient = fresh.clone();
            lenient.update(&make(0..rows)).unwrap();
            assert_eq!(lenient.nonfinite(), (3, Some((0, 1, 2))));
            assert_eq!(lenient.total_tokens, rows as u64);
        }
    }

    /// A feature's examples and token tables exist from its first firing on: values on
    /// margin rows (context only), below the threshold or non-finite allocate nothing, so a
    /// wide SAE's never-firing features cost their scalars alone; a merge keeps that.
    #[test]
    fn only_features_that_fired_keep_examples() {
        let (rows, features) = (8usize, 12usize);
        let mut values = vec![0f32; rows * features];
        for r in 0..rows {
            values[r * features + 3] = 1.0 + r as f32; // fires on every row
        }
        values[features + 5] = 2.0; // row 1 is a margin row: context only
        values[4 * features + 7] = 0.001; // below min_activation (0.01)
        values[5 * features + 9] = f32::NAN;
        values[6 * features + 11] = 0.5; // fires once
        let batch = ActivationBatch {
            n_features: features,
            tokens: (0..rows as TokenId).collect(),
            sequences: vec![0; rows],
            positions: (0..rows as u32).collect(),
            core: 2..rows,
            values: crate::ingest::BatchValues::Dense(&values),
            token_keys: None,
        };
        let settings = Settings::from_config(&ExtractionConfig::default()).unwrap();
        for threads in [1, 2, 3] {
            let mut acc = Accumulator::new(features, settings.clone(), threads);
            acc.update(&batch).unwrap();
            let with_examples = |acc: &Accumulator| -> Vec<usize> {
                acc.parts
                    .iter()
                    .flat_map(|p| (0..p.len()).map(move |l| (p.start + l, p.kept[l].is_some())))
                    .filter_map(|(id, kept)| kept.then_some(id))
                    .collect()
            };
            assert_eq!(with_examples(&acc), [3, 11], "{threads} threads");
            assert_eq!(acc.parts[0].topk(0).examples().count(), 0);
            let mut merged = Accumulator::new(features, settings.clone(), threads);
            merged.merge(acc.clone()).unwrap();
            assert_eq!(with_examples(&merged), [3, 11]);
        }
    }

    /// State read back from bytes is checked before use: ranges that do not cover the
    /// features, or a per-feature vector of another length, are refused.
    #[test]
    fn the_shape_check_finds_ranges_and_vectors_that_do_not_fit() {
        let settings = Settings::from_config(&ExtractionConfig::default()).unwrap();
        let acc = Accumulator::new(10, settings, 2);
        assert!(acc.has_consistent_shape());
        let mut gap = acc.clone();
        gap.parts[0].split_off(3);
        assert!(!gap.has_consistent_shape());
        let mut short = acc.clone();
        short.parts[1].kept.pop();
        assert!(!short.has_consistent_shape());
        let mut thresholds = acc.clone();
        thresholds.parts[1].sample_thresholds.clear();
        assert!(!thresholds.has_consistent_shape());
        let mut fewer = acc.clone();
        fewer.parts.pop();
        assert!(!fewer.has_consistent_shape());
        for mode in [
            coactivation::CorrelationMode::Exact,
            coactivation::CorrelationMode::Sketch,
        ] {
            let mut with = acc.clone();
            with.coactivation = Some(coactivation::Coactivation::new(mode, 10, 4));
            assert!(with.has_consistent_shape());
            with.coactivation = Some(coactivation::Coactivation::new(mode, 9, 4));
            assert!(!with.has_consistent_shape(), "{mode:?}");
        }
    }
}
