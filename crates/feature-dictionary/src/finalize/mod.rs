//! Finalize: turn accumulated state into [`Feature`]s — frequency, type, std, quantiles,
//! examples with readable tokens, quantile-stratified samples, token statistics.
//!
//! Dead features are kept (type `dead`); dropping them is an output option
//! ([`FeatureDictionary::without_rare`](crate::FeatureDictionary::without_rare),
//! `featdict build --drop-dead`), never data loss.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::accumulate::histogram::{self, N_BINS};
use crate::accumulate::range::FeatureRange;
use crate::accumulate::topk::Example;
use crate::accumulate::Accumulator;
use crate::dictionary::FeatureDictionary;
use crate::ingest::Vocab;
use crate::model::{
    ActivationMetadata, DictionaryConfig, Feature, FeatureActivation, FeatureSet,
    FeatureSetMetadata, FeatureType, HistogramSummary, PositionStats, QuantileGroup, TokenCount,
};

/// Quantiles reported per feature.
pub const QUANTILES: [(&str, f64); 7] = [
    ("p10", 0.10),
    ("p25", 0.25),
    ("p50", 0.50),
    ("p75", 0.75),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p999", 0.999),
];

/// Number of equal-count groups for stratified examples (as delphi's "quantiles" sampler).
pub const N_QUANTILE_GROUPS: usize = crate::accumulate::samples::QUANTILE_GROUPS;

/// Builds the dictionary from an accumulator. `config.num_features` is set from it.
pub fn finalize(acc: &Accumulator, vocab: &Vocab, config: DictionaryConfig) -> FeatureDictionary {
    finalize_unless(acc, vocab, config, &AtomicBool::new(false))
        .expect("a finalize nobody stops runs to its end")
}

/// Features each thread finalizes between looks at the stop flag.
const FEATURES_PER_STOP_CHECK: usize = 256;

/// [`finalize`], given up soon after `stop` is set (each thread looks at it every 256
/// features): `None` then. The accumulator is only read, so a
/// finalize given up leaves nothing behind (the Python package stops one on Ctrl-C).
pub fn finalize_unless(
    acc: &Accumulator,
    vocab: &Vocab,
    config: DictionaryConfig,
    stop: &AtomicBool,
) -> Option<FeatureDictionary> {
    let fin = Finalizer::new(acc, vocab, config);
    // Feature ranges are independent: finalize them on the threads that accumulated them.
    let parts: Vec<Vec<Feature>> = std::thread::scope(|scope| {
        let handles: Vec<_> = fin
            .parts
            .iter()
            .map(|&part| {
                let ctx = &fin.ctx;
                scope.spawn(move || {
                    (0..part.len())
                        .map_while(|local| {
                            let go_on = local % FEATURES_PER_STOP_CHECK != 0
                                || !stop.load(Ordering::Relaxed);
                            go_on.then(|| ctx.feature(part, local))
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("finalize thread panicked"))
            .collect()
    });
    if stop.load(Ordering::Relaxed) {
        // Freeing the features made so far takes as long as a good part of making them
        // (millions of small allocations): the caller, asked to stop, gets control back now.
        std::thread::spawn(move || drop(parts));
        return None;
    }
    let mut dict = fin.shell();
    dict.feature_set.features = parts.into_iter().flatten().map(|f| (f.id, f)).collect();
    Some(dict)
}

/// Finalizes features one at a time, by id, and the dictionary around them: what
/// [`finalize`] does for every feature at once, for a caller that writes each feature out
/// and lets it go instead of holding them all (`featdict build` into a `.fdict`, where a
/// few million features would otherwise take gigabytes twice over).
pub struct Finalizer<'a> {
    ctx: Ctx<'a>,
    parts: Vec<&'a FeatureRange>,
    acc: &'a Accumulator,
    config: DictionaryConfig,
}

impl<'a> Finalizer<'a> {
    /// Reads `acc` (never changes it); `config.num_features` is set from it.
    pub fn new(acc: &'a Accumulator, vocab: &'a Vocab, mut config: DictionaryConfig) -> Self {
        config.num_features = acc.n_features();
        let ctx = Ctx {
            vocab,
            carry_spaces: vocab.tokens_carry_spaces(),
            collect_context: config.extraction.collect_context,
            collect_positions: config.extraction.collect_positions,
            total_tokens: acc.total_tokens,
            token_counts: &acc.token_counts,
            dimension: config.feature_dim,
            corpus_ngrams: acc.corpus_ngrams.as_ref(),
            coactivation: acc.coactivation.as_ref(),
        };
        Self {
            ctx,
            parts: acc.features().collect(),
            acc,
            config,
        }
    }

    /// Features in the accumulator (ids `0..n_features()`).
    pub fn n_features(&self) -> usize {
        self.acc.n_features()
    }

    fn locate(&self, id: usize) -> (&'a FeatureRange, usize) {
        assert!(id < self.n_features(), "feature {id} out of range");
        let part = self.parts[self.parts.partition_point(|p| p.start <= id) - 1];
        (part, id - part.start)
    }

    /// Firings of feature `id` over all tokens (without finalizing it).
    pub fn activation_count(&self, id: usize) -> u64 {
        let (part, local) = self.locate(id);
        part.moments[local].count
    }

    /// Feature `id`, as [`finalize`] makes it. Panics when `id ≥ n_features()`.
    pub fn feature(&self, id: usize) -> Feature {
        let (part, local) = self.locate(id);
        self.ctx.feature(part, local)
    }

    /// The dictionary without its features: config, dictionary-wide metadata (global
    /// token counts, non-finite values, the correlation method) and totals.
    pub fn shell(&self) -> FeatureDictionary {
        let (acc, vocab) = (self.acc, self.ctx.vocab);
        let mut token_counts: Vec<(String, u64)> = acc
            .token_counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(t, &c)| (vocab.token(t as u32).into_owned(), c))
            .collect();
        token_counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let (nonfinite, _) = acc.nonfinite();
        let config = &self.config;
        let mut feature_set = FeatureSet {
            layer: config.layer,
            features: BTreeMap::new(),
            total_tokens_processed: acc.total_tokens,
            model_name: config.model_name.clone(),
            sae_name: config.sae_name.clone(),
            metadata: FeatureSetMetadata {
                format: crate::FORMAT_MARKER.into(),
                num_features: Some(acc.n_features()),
                total_sequences: Some(acc.total_sequences),
                nonfinite_values: nonfinite,
                token_counts,
                omitted_features: Vec::new(),
                extra: Default::default(),
            },
        };
        if let Some(c) = &acc.coactivation {
            crate::analyze::correlation::store_method(&mut feature_set, c);
        }
        FeatureDictionary::new(self.config.clone(), feature_set)
    }
}

struct Ctx<'a> {
    vocab: &'a Vocab,
    carry_spaces: bool,
    collect_context: bool,
    collect_positions: bool,
    total_tokens: u64,
    token_counts: &'a [u64],
    dimension: usize,
    corpus_ngrams: Option<&'a crate::accumulate::ngrams::CorpusNgrams>,
    coactivation: Option<&'a crate::accumulate::coactivation::Coactivation>,
}

impl Ctx<'_> {
    fn activation(&self, feature: u64, ex: &Example) -> FeatureActivation {
        let context_tokens: Vec<String> = ex
            .context_tokens
            .iter()
            .map(|&t| self.vocab.token(t).into_owned())
            .collect();
        let context = if self.collect_context {
            crate::ingest::join_tokens(context_tokens.iter().map(String::as_str), self.carry_spaces)
        } else {
            String::new()
        };
        FeatureActivation {
            feature_id: feature,
            token: self.vocab.token(ex.token()).into_owned(),
            position: ex.position,
            activation: ex.activation,
            context,
            context_tokens,
            metadata: ActivationMetadata {
                sequence: Some(ex.sequence),
                context_start: ex.context_start,
                context_activations: ex.context_activations.to_vec(),
                extra: Default::default(),
            },
        }
    }

    fn feature(&self, part: &FeatureRange, local: usize) -> Feature {
        let id = (part.start + local) as u64;
        let m = &part.moments[local];
        let mut f = Feature::new(id, self.dimension);
        f.activation_count = m.count;
        f.feature_type = FeatureType::classify(m.count, self.total_tokens);
        f.activation_frequency = if self.total_tokens > 0 {
            m.count as f64 / self.total_tokens as f64
        } else {
            0.0
        };
        f.metadata.nonfinite_count = m.nonfinite as u64;
        if m.count == 0 {
            return f;
        }
        f.mean_activation = m.mean();
        f.max_activation = m.max as f64;
        f.metadata.min_activation = Some(m.min);
        f.metadata.sum_activation = Some(m.sum());
        f.metadata.std_activation = Some(m.variance().sqrt());
        f.top_activations = part
            .topk(local)
            .sorted()
            .iter()
            .map(|e| self.activation(id, e))
            .collect();

        let hist_counts = part.histogram(local);
        let hist = &hist_counts[..];
        let (lo, hi) = (m.min as f64, m.max as f64);
        // A feature that fired at most top-k times has every firing among its examples:
        // its quantiles are the values' own, not estimates within a bin.
        let every_firing: Option<Vec<f32>> =
            (f.top_activations.len() as u64 == m.count).then(|| {
                let mut v: Vec<f32> = f.top_activations.iter().map(|a| a.activation).collect();
                v.sort_by(f32::total_cmp);
                v
            });
        f.metadata.quantiles_exact = every_firing.is_some();
        for (name, q) in QUANTILES {
            let value = match &every_firing {
                Some(sorted) => histogram::exact_quantile(sorted, q),
                None => histogram::quantile(hist, q, lo, hi),
            };
            f.metadata.quantiles.insert(name.into(), value);
        }
        f.metadata.histogram = Some(HistogramSummary {
            bins_per_octave: histogram::BINS_PER_OCTAVE,
            min_exponent: histogram::MIN_EXPONENT,
            n_bins: N_BINS as u32,
            counts: hist
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                .map(|(b, &c)| (b as u32, c))
                .collect(),
        });
        f.metadata.quantile_examples = self.quantile_groups(id, part, local, hist, lo, hi);

        if self.collect_positions {
            let n = m.count as f64;
            let mean_pos = m.pos_sum as f64 / n;
            let b = part.pos_buckets[local];
            f.metadata.positions = Some(PositionStats {
                mean: mean_pos,
                variance: (m.pos_sum_sq as f64 / n - mean_pos * mean_pos).max(0.0),
                start: b[0],
                early: b[1],
                middle: b[2],
                late: m.count - b[0] - b[1] - b[2],
            });
        }

        let sketch = part.tokens(local);
        let mut toks: Vec<(u32, u64)> = sketch.entries().collect();
        // Ties by token id: with tokenizer ids that is the tokenizer's order (what truth
        // tables such as "smaller token id" rely on); a string several ids decode to is
        // counted under, and ordered by, the smallest of them.
        toks.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let (distinct, exact) = sketch.distinct_tokens();
        f.metadata.unique_tokens = Some(distinct);
        f.metadata.token_entropy = Some(token_entropy(
            toks.iter().map(|t| t.1),
            m.count,
            distinct,
            exact,
        ));
        f.metadata.token_counts_exact = Some(sketch.is_exact());
        f.metadata.top_tokens = toks
            .into_iter()
            .map(|(t, c)| TokenCount {
                token: self.vocab.token(t).into_owned(),
                firings: c,
                occurrences: self.token_counts.get(t as usize).copied().unwrap_or(0),
            })
            .collect();
        if let Some(c) = self.coactivation {
            crate::analyze::correlation::store_partners(&mut f, c, self.total_tokens);
        }
        if let Some(corpus) = self.corpus_ngrams {
            crate::label::ngram::store_ngrams(&mut f, part.ngrams(local), corpus, self.vocab);
        }
        f
    }

    /// About equal-count groups from the histogram, each with every one of the feature's
    /// samples whose activation lies in it (smallest hashes first): a uniform sample of the
    /// group's firings, `samples_per_group` of them on average. A group ends on the
    /// histogram bin edge nearest its decile, so its bounds are real bin edges (the outer ones
    /// the feature's min and max) and its `count` is exactly the firings between them;
    /// deciles that fall in one bin leave empty groups, dropped.
    fn quantile_groups(
        &self,
        id: u64,
        part: &FeatureRange,
        local: usize,
        hist: &[u64],
        lo: f64,
        hi: f64,
    ) -> Vec<QuantileGroup> {
        let total: u64 = hist.iter().sum();
        let mut pool: Vec<_> = part.samples(local).items.iter().collect();
        pool.sort_by_key(|s| (s.hash, s.example.sequence, s.example.position));
        let mut groups = Vec::new();
        // Firings in bins [0, end): the prefix sums tell how many a boundary at an edge leaves
        // below it.
        let mut below = vec![0u64; hist.len() + 1];
        for (b, &c) in hist.iter().enumerate() {
            below[b + 1] = below[b] + c;
        }
        let (mut start, mut edge_lo) = (0usize, lo);
        for g in 0..N_QUANTILE_GROUPS {
            let last = g + 1 == N_QUANTILE_GROUPS;
            let end = if last {
                hist.len()
            } else {
                // The edge whose count below is nearest the decile (the lower edge on a tie).
                let target = total as f64 * (g + 1) as f64 / N_QUANTILE_GROUPS as f64;
                let above = below.partition_point(|&c| (c as f64) < target).max(start);
                if above > start && target - below[above - 1] as f64 <= below[above] as f64 - target
                {
                    above - 1
                } else {
                    above
                }
            };
            // Bin 0 holds everything below its upper edge and the last bin everything above
            // its lower one, so inner edges only: the outer bounds are the min and max.
            // An edge at or past the maximum closes the last group (which includes the max).
            let last = last || end >= hist.len() || histogram::lower_edge(end) >= hi;
            let end = if last { hist.len() } else { end };
            let edge_hi = if last {
                hi
            } else {
                histogram::lower_edge(end).clamp(lo, hi)
            };
            let count = below[end] - below[start];
            let examples: Vec<FeatureActivation> = pool
                .iter()
                .filter(|s| {
                    let a = s.example.activation as f64;
                    a >= edge_lo && (a < edge_hi || (last && a <= edge_hi))
                })
                .map(|s| self.activation(id, &s.example))
                .collect();
            groups.push(QuantileGroup {
                min_activation: edge_lo,
                max_activation: edge_hi,
                count,
                examples,
            });
            start = end;
            edge_lo = edge_hi;
            if last {
                break;
            }
        }
        groups.retain(|g| !g.examples.is_empty());
        groups
    }
}

/// Shannon entropy (bits) of a feature's firing tokens. Exact from exact counts. From a
/// summary (`exact` false: `counts` undercount, and tokens were dropped), an estimate: the
/// firings the table does not account for are taken as spread evenly over the distinct
/// tokens it no longer holds (at least one).
fn token_entropy(
    counts: impl Iterator<Item = u64> + Clone,
    firings: u64,
    distinct: u64,
    exact: bool,
) -> f64 {
    let held: u64 = counts.clone().sum();
    let total = if exact { held } else { firings.max(held) };
    if total == 0 {
        return 0.0;
    }
    let n = total as f64;
    let mut entropy = 0.0;
    let mut kept = 0u64;
    for c in counts {
        let p = c as f64 / n;
        entropy -= p * p.log2();
        kept += 1;
    }
    let rest = total - held;
    if !exact && rest > 0 {
        let others = distinct.saturating_sub(kept).max(1) as f64;
        let p = rest as f64 / n / others;
        entropy -= others * p * p.log2();
    }
    entropy.max(0.0)
}

#[cfg(test)]
mod tests {
    use super::token_entropy;

    #[test]
    fn a_finalize_asked_to_stop_gives_up_and_one_left_alone_is_whole() {
        use crate::accumulate::{Accumulator, Settings};
        use crate::ingest::{ActivationBatch, BatchValues, Vocab};
        use crate::model::{DictionaryConfig, ExtractionConfig};
        use std::sync::atomic::AtomicBool;
        let settings = Settings::from_config(&ExtractionConfig::default()).unwrap();
        let (rows, features) = (8usize, 1_000usize);
        let values: Vec<f32> = (0..rows * features).map(|i| (i % 7) as f32).collect();
        let mut vocab = Vocab::new();
        let tokens: Vec<u32> = (0..rows).map(|i| vocab.intern(&format!("t{i}"))).collect();
        let mut acc = Accumulator::new(features, settings, 2);
        acc.update(&ActivationBatch {
            n_features: features,
            tokens,
            sequences: vec![0; rows],
            positions: (0..rows as u32).collect(),
            core: 0..rows,
            values: BatchValues::Dense(&values),
            token_keys: None,
        })
        .unwrap();
        let config = DictionaryConfig::default();
        assert!(
            super::finalize_unless(&acc, &vocab, config.clone(), &AtomicBool::new(true)).is_none()
        );
        let whole =
            super::finalize_unless(&acc, &vocab, config.clone(), &AtomicBool::new(false)).unwrap();
        assert_eq!(whole.feature_set.features.len(), features);
        assert_eq!(whole, super::finalize(&acc, &vocab, config));
    }

    #[test]
    fn token_entropy_is_exact_from_exact_counts_and_estimated_from_a_summary() {
        // Exact: four tokens fired on 1, 1, 2 and 4 times.
        let exact = token_entropy([1u64, 1, 2, 4].into_iter(), 8, 4, true);
        assert!((exact - 1.75).abs() < 1e-12);
        // 1,000 tokens fired on 10 times each (log2(1000) bits); the summary kept 100 of
        // them: the other 9,000 firings spread evenly over the other 900 tokens.
        let estimated = token_entropy(std::iter::repeat_n(10u64, 100), 10_000, 1_000, false);
        assert!((estimated - 1000f64.log2()).abs() < 1e-9);
        // A summary holding nothing of a feature that fired still has entropy ≥ 0.
        assert_eq!(token_entropy(std::iter::empty(), 3, 1, false), 0.0);
        assert_eq!(token_entropy(std::iter::empty(), 0, 0, true), 0.0);
    }
}
