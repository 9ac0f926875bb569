//! `token_frequency`: the tokens a feature fires on, each scored over all tokens processed.
//!
//! Evidence is `metadata.top_tokens` — per token string: firings of the feature, occurrences
//! in the corpus, whichever token ids the string was read as — which the accumulator counts
//! exactly while a feature fires on at most `token_sketch_capacity` distinct tokens
//! (otherwise firings are Misra–Gries lower bounds, error ≤ firings / (capacity + 1), and the
//! label's evidence says so).
//!
//! Label text: `token:` followed by the token exactly as stored (`token: the` for " the").

use super::{scored_label, Counts, LabelOptions, Labeler, SKETCH_BOUNDS};
use crate::model::{Feature, Label, LabelingStrategy};

/// The token-frequency labeler.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenFrequency;

/// A scored token of one feature.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredToken {
    /// The token.
    pub token: String,
    /// Firings, occurrences, total firings.
    pub counts: Counts,
}

/// The feature's tokens that pass the options' filters, best first under `rank`.
///
/// Ties (equal precision and firings under [`super::Rank::Precision`]) keep the order of
/// `top_tokens`, which finalize writes by firings descending, then token id ascending — so
/// the ranking is exactly "highest precision, then more firings, then smaller token id".
/// Token ids are the tokenizer's when the input carried ids (for a string that several ids
/// decode to, e.g. U+FFFD, the smallest of them: its firings and occurrences are those of
/// all its ids); with token-string input (a tokens JSON) they are assigned in order of first
/// appearance, so exact ties then resolve by first appearance instead.
pub fn scored_tokens(feature: &Feature, options: &LabelOptions) -> Vec<ScoredToken> {
    let total = feature.activation_count;
    let mut v: Vec<ScoredToken> = feature
        .metadata
        .top_tokens
        .iter()
        .map(|t| ScoredToken {
            token: t.token.clone(),
            counts: Counts {
                firings: t.firings,
                occurrences: t.occurrences,
                total_firings: total,
            },
        })
        .filter(|s| options.admits(&s.counts))
        .collect();
    v.sort_by(|a, b| a.counts.cmp_best_first(&b.counts, options.rank));
    v
}

/// The single best token under `rank` (e.g. `truth.json`'s `best_token` with
/// [`super::Rank::Precision`], `min_occurrences = 5`, `min_token_frequency = 1`).
pub fn best_token(feature: &Feature, options: &LabelOptions) -> Option<ScoredToken> {
    scored_tokens(feature, options).into_iter().next()
}

impl Labeler for TokenFrequency {
    fn strategy(&self) -> LabelingStrategy {
        LabelingStrategy::TokenFrequency
    }

    fn label(&self, feature: &Feature, options: &LabelOptions) -> Vec<Label> {
        let exact = feature.metadata.token_counts_exact != Some(false);
        scored_tokens(feature, options)
            .into_iter()
            .take(options.config.max_labels.max(1) * 4)
            .map(|s| {
                let mut evidence = vec![format!(
                    "fires on {} of {} occurrences of {:?}; {} of the feature's {} firings",
                    s.counts.firings,
                    s.counts.occurrences,
                    s.token,
                    s.counts.firings,
                    s.counts.total_firings
                )];
                if !exact {
                    evidence.push(SKETCH_BOUNDS.into());
                }
                scored_label(
                    format!("token:{}", s.token),
                    LabelingStrategy::TokenFrequency,
                    &s.counts,
                    options.rank,
                    evidence,
                )
            })
            .collect()
    }
}
