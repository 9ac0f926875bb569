//! Analyze: questions about a finished dictionary, answered from statistics measured over
//! **all** tokens (never from the top-k examples, as the original did).
//!
//! * [`ActivationStats`] — the original's per-feature stats record, filled from finalize's
//!   exact moments, position statistics and token entropy;
//! * [`correlation`] — co-activation partners (exact Pearson or a φ sketch);
//! * [`similar`] — cosine of decoder directions (blocked GEMM + per-row top-k), or of
//!   firing-token profiles without an SAE;
//! * [`search`] — features by token, label or regex;
//! * importance ranking, frequency-class lists and feature comparison (here).

pub mod correlation;
pub mod embeddings;
pub mod gguf;
pub mod logit_lens;
pub mod polysemantic;
pub mod search;
pub mod similar;
pub mod weights;

use serde::{Deserialize, Serialize};

use crate::dictionary::FeatureDictionary;
use crate::model::{Feature, FeatureType};

/// The original's `ActivationStats`, computed over all tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivationStats {
    /// Feature id.
    pub feature_id: u64,
    /// Firings.
    pub activation_count: u64,
    /// Mean activation over all firings.
    pub mean_activation: f64,
    /// Population standard deviation over all firings.
    pub std_activation: f64,
    /// Largest activation.
    pub max_activation: f64,
    /// Smallest firing activation.
    pub min_activation: f64,
    /// Firings / tokens processed.
    pub activation_frequency: f64,
    /// Mean position of firings (0 when positions were not collected).
    pub mean_position: f64,
    /// Variance of firing positions.
    pub position_variance: f64,
    /// Distinct tokens fired on.
    pub unique_tokens: u64,
    /// Shannon entropy (bits) of the firing-token distribution.
    pub token_entropy: f64,
    /// Whether `unique_tokens` and `token_entropy` are exact (ours): false when the
    /// feature fired on more distinct tokens than its token table holds, and they are
    /// estimates (see `FeatureMetadata::unique_tokens`).
    #[serde(default = "exact_by_default")]
    pub token_stats_exact: bool,
}

fn exact_by_default() -> bool {
    true
}

impl ActivationStats {
    /// Stats of `f` (all zeros for a dead feature).
    pub fn of(f: &Feature) -> Self {
        let m = &f.metadata;
        let pos = m.positions.clone().unwrap_or_default();
        Self {
            feature_id: f.id,
            activation_count: f.activation_count,
            mean_activation: f.mean_activation,
            std_activation: m.std_activation.unwrap_or(0.0),
            max_activation: f.max_activation,
            min_activation: m.min_activation.map_or(0.0, |v| v as f64),
            activation_frequency: f.activation_frequency,
            mean_position: pos.mean,
            position_variance: pos.variance,
            unique_tokens: m.unique_tokens.unwrap_or(0),
            token_entropy: m.token_entropy.unwrap_or(0.0),
            token_stats_exact: m.token_counts_exact.unwrap_or(true),
        }
    }
}

/// The original's `compute_all_stats()`.
pub fn all_stats(dict: &FeatureDictionary) -> Vec<ActivationStats> {
    dict.features().map(ActivationStats::of).collect()
}

/// The original's `get_position_distribution(id)`: firings at positions < 5, 5..20, 20..50
/// and ≥ 50, over all tokens.
pub fn position_distribution(f: &Feature) -> Option<[(&'static str, u64); 4]> {
    f.metadata.positions.as_ref().map(|p| {
        [
            ("start", p.start),
            ("early", p.early),
            ("middle", p.middle),
            ("late", p.late),
        ]
    })
}

/// Features ranked by the original's importance score
/// `0.7·min(100·frequency, 1) + 0.3·min(max_activation / 5, 1)` (0 for dead features), best
/// first; ties (the score saturates) by firings, then max, then id
/// ([`crate::dictionary::ImportanceRank`]).
pub fn importance_ranking(dict: &FeatureDictionary) -> Vec<(u64, f64)> {
    let mut v: Vec<_> = dict
        .features()
        .map(crate::dictionary::ImportanceRank::of)
        .collect();
    v.sort_by(crate::dictionary::ImportanceRank::order);
    v.into_iter().map(|r| (r.id, r.score)).collect()
}

/// Ids of the features of one frequency class (dead: never fired; ultra-sparse: < 0.01 %;
/// sparse: < 1 %; moderate: < 10 %; dense: ≥ 10 % of tokens).
pub fn features_of_type(dict: &FeatureDictionary, t: FeatureType) -> Vec<u64> {
    dict.features()
        .filter(|f| f.feature_type == t)
        .map(|f| f.id)
        .collect()
}

/// The original's `get_ultra_sparse_features(max_frequency)`: fired, but on at most
/// `max_frequency` of tokens.
pub fn ultra_sparse(dict: &FeatureDictionary, max_frequency: f64) -> Vec<u64> {
    dict.features()
        .filter(|f| f.activation_count > 0 && f.activation_frequency <= max_frequency)
        .map(|f| f.id)
        .collect()
}

/// The original's `get_dense_features(min_frequency)`.
pub fn dense(dict: &FeatureDictionary, min_frequency: f64) -> Vec<u64> {
    dict.features()
        .filter(|f| f.activation_frequency >= min_frequency)
        .map(|f| f.id)
        .collect()
}

/// Two features side by side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Stats of the first.
    pub a: ActivationStats,
    /// Stats of the second.
    pub b: ActivationStats,
    /// Cosine of their firing-token count vectors (1 = same token distribution).
    pub token_profile_cosine: f64,
    /// Tokens both fire on, by the smaller firing count, most shared first.
    pub shared_tokens: Vec<(String, u64)>,
    /// Labels both carry.
    pub shared_labels: Vec<String>,
    /// Stored co-activation correlation, when the dictionary has it and the pair is held.
    pub correlation: Option<f64>,
}

/// Compares two features.
pub fn compare(dict: &FeatureDictionary, a: &Feature, b: &Feature) -> Comparison {
    let mut shared: Vec<(String, u64)> = a
        .metadata
        .top_tokens
        .iter()
        .filter_map(|ta| {
            b.metadata
                .top_tokens
                .iter()
                .find(|tb| tb.token == ta.token)
                .map(|tb| (ta.token.clone(), ta.firings.min(tb.firings)))
        })
        .collect();
    shared.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
    shared.truncate(20);
    // Each feature stores its best partners only: the pair may be in either list (the
    // correlation is symmetric; `correlated` reads a sketched pair both lists hold alike
    // from either side).
    let stored = |x: &Feature, y: &Feature| {
        correlation::correlated(dict, x.id, f64::NEG_INFINITY)
            .ok()
            .and_then(|v| v.into_iter().find(|p| p.0 == y.id).map(|p| p.1))
    };
    let correlation = stored(a, b).or_else(|| stored(b, a));
    Comparison {
        a: ActivationStats::of(a),
        b: ActivationStats::of(b),
        token_profile_cosine: similar::token_profile_cosine(a, b),
        shared_tokens: shared,
        shared_labels: a
            .labels
            .iter()
            .filter(|l| b.labels.contains(l))
            .cloned()
            .collect(),
        correlation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Feature, FeatureSet};

    /// Feature 0 lists 1 among its partners; 1 lists none (its own best partners are others).
    #[test]
    fn a_pair_correlation_is_found_in_either_partner_list() {
        let mut set = FeatureSet {
            layer: 0,
            features: Default::default(),
            total_tokens_processed: 10,
            model_name: String::new(),
            sae_name: String::new(),
            metadata: Default::default(),
        };
        let mut a = Feature::new(0, 0);
        a.metadata.extra.insert(
            correlation::PYTHON_PARTNERS_KEY.into(),
            serde_json::json!([[1, 0.25]]),
        );
        let b = Feature::new(1, 0);
        set.features.insert(0, a.clone());
        set.features.insert(1, b.clone());
        let dict = FeatureDictionary::new(Default::default(), set);
        assert_eq!(compare(&dict, &a, &b).correlation, Some(0.25));
        assert_eq!(compare(&dict, &b, &a).correlation, Some(0.25));
    }

    /// A sketch's two lists can hold the pair with different values (each from its own
    /// feature's table of co-firing counts, lower bounds): the larger is the answer, in
    /// either order (it depended on which feature was named first).
    #[test]
    fn a_sketched_pair_correlation_is_the_same_both_ways() {
        let mut set = FeatureSet {
            layer: 0,
            features: Default::default(),
            total_tokens_processed: 10,
            model_name: String::new(),
            sae_name: String::new(),
            metadata: Default::default(),
        };
        set.metadata.extra.insert(
            correlation::METHOD_KEY.into(),
            serde_json::json!({"mode": "sketch", "measure": "phi", "exact": false}),
        );
        let mut a = Feature::new(0, 0);
        a.metadata.extra.insert(
            correlation::PARTNERS_KEY.into(),
            serde_json::json!([[1, 0.2756]]),
        );
        let mut b = Feature::new(1, 0);
        b.metadata.extra.insert(
            correlation::PARTNERS_KEY.into(),
            serde_json::json!([[0, 0.2854]]),
        );
        set.features.insert(0, a.clone());
        set.features.insert(1, b.clone());
        let dict = FeatureDictionary::new(Default::default(), set);
        assert_eq!(compare(&dict, &a, &b).correlation, Some(0.2854));
        assert_eq!(compare(&dict, &b, &a).correlation, Some(0.2854));
        // And the lists read it alike from both sides.
        let listed = |id| correlation::correlated(&dict, id, f64::NEG_INFINITY).unwrap();
        assert_eq!(listed(0), vec![(1, 0.2854)]);
        assert_eq!(listed(1), vec![(0, 0.2854)]);
    }
}
