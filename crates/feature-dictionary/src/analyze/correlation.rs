//! Correlated features: partners stored by finalize from the accumulator's co-activation
//! state (see [`crate::accumulate::coactivation`] for what `exact` and `sketch` compute).
//!
//! Stored per feature as `metadata.correlated = [[partner, correlation], …]` (best first, at
//! most [`PARTNERS_STORED`]) and per dictionary as
//! `feature_set.metadata.correlation = {"mode", "measure", "exact"}`.

use serde::{Deserialize, Serialize};

use crate::accumulate::coactivation::{Coactivation, CorrelationMode, PARTNERS_STORED};
use crate::dictionary::FeatureDictionary;
use crate::error::{Error, Result};
use crate::model::{Feature, FeatureSet};

/// Key in `Feature.metadata`.
pub const PARTNERS_KEY: &str = "correlated";
/// Key in `FeatureSet.metadata`.
pub const METHOD_KEY: &str = "correlation";

/// How the stored correlations were computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorrelationMethod {
    /// `exact` or `sketch`.
    pub mode: String,
    /// `pearson` (of activations over all tokens) or `phi` (of firing indicators).
    pub measure: String,
    /// Whether every stored value is exact (the sketch never evicted).
    pub exact: bool,
}

/// Writes `f`'s best partners into its metadata.
pub fn store_partners(f: &mut Feature, c: &Coactivation, total_tokens: u64) {
    let partners: Vec<(u32, f64)> = c
        .top_partners(f.id as usize, total_tokens, PARTNERS_STORED)
        .into_iter()
        .map(|p| (p.feature, p.correlation))
        .collect();
    f.metadata.extra.insert(
        PARTNERS_KEY.into(),
        serde_json::to_value(partners).expect("partners serialize"),
    );
}

/// Records the method in the feature set's metadata.
pub fn store_method(fs: &mut FeatureSet, c: &Coactivation) {
    let m = CorrelationMethod {
        mode: c.mode().as_str().into(),
        measure: if c.mode() == CorrelationMode::Exact {
            "pearson"
        } else {
            "phi"
        }
        .into(),
        exact: c.is_exact(),
    };
    fs.metadata.extra.insert(
        METHOD_KEY.into(),
        serde_json::to_value(m).expect("method serializes"),
    );
}

/// The method a dictionary's correlations were computed with, if any. A dictionary the
/// Python package saved before it recorded the method holds Pearson correlations over all
/// tokens under `correlated_features` (its co-activation matrix is exact).
pub fn method(dict: &FeatureDictionary) -> Option<CorrelationMethod> {
    dict.feature_set
        .metadata
        .extra
        .get(METHOD_KEY)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .or_else(|| {
            dict.features()
                .any(|f| f.metadata.extra.contains_key(PYTHON_PARTNERS_KEY))
                .then(|| CorrelationMethod {
                    mode: "exact".into(),
                    measure: "pearson".into(),
                    exact: true,
                })
        })
}

/// Key in `Feature.metadata` under which the Python package stores partners.
pub const PYTHON_PARTNERS_KEY: &str = "correlated_features";

/// The original's `find_correlated_features(id, min_correlation)`: stored partners of `id`
/// with correlation ≥ `min_correlation`, best first.
pub fn correlated(
    dict: &FeatureDictionary,
    id: u64,
    min_correlation: f64,
) -> Result<Vec<(u64, f64)>> {
    if min_correlation.is_nan() {
        // Nothing is >= NaN: "none" would be reported for any feature.
        return Err(Error::Invalid(
            "the smallest correlation shown must be a number, got NaN".into(),
        ));
    }
    if min_correlation > 1.0 {
        // No correlation reaches it: "none" would be reported for any feature.
        return Err(Error::Invalid(format!(
            "the smallest correlation shown must be at most 1 (correlations lie in [-1, 1]), got {min_correlation}"
        )));
    }
    let f = dict
        .get(id)
        .ok_or_else(|| Error::Invalid(format!("feature {id} is not in the dictionary")))?;
    if method(dict).is_none() {
        return Err(Error::Invalid(
            "this dictionary holds no co-activation data; rebuild it with --correlation exact (≤ 4,096 features) or --correlation sketch".into(),
        ));
    }
    // A build stores them under PARTNERS_KEY; the Python package under
    // `correlated_features` (the same [[partner, r], …]).
    let mut partners = crate::store::fdict::correlated_of(f);
    if method(dict).is_some_and(|m| m.mode == "sketch" && !m.exact) {
        // Each feature's values come from its own table of co-firing counts, lower bounds:
        // where the partner (when loaded) lists this feature too, the larger is the better
        // bound, so a pair reads the same from either side.
        for (p, r) in partners.iter_mut() {
            let back = dict.get(*p).and_then(|pf| {
                crate::store::fdict::correlated_of(pf)
                    .into_iter()
                    .find(|q| q.0 == id)
            });
            if let Some((_, rr)) = back {
                *r = r.max(rr);
            }
        }
        partners.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    }
    Ok(partners
        .into_iter()
        .filter(|p| p.1 >= min_correlation)
        .collect())
}
