//! [`FeatureDictionary`]: a finished dictionary — configuration plus features — and the
//! summary statistics the original library reports.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

use crate::model::{DictionaryConfig, Feature, FeatureSet, FeatureType, FeatureView};

/// A finished dictionary.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureDictionary {
    /// How it was built.
    pub config: DictionaryConfig,
    /// The features.
    pub feature_set: FeatureSet,
}

/// The original's `get_statistics()` / saved `"statistics"` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statistics {
    /// Features in the dictionary.
    pub total_features: usize,
    /// Features that fired at least once.
    pub active_features: usize,
    /// Features that never fired.
    pub dead_features: usize,
    /// Features with at least one label.
    pub labeled_features: usize,
    /// Mean firing frequency over features.
    pub mean_activation_frequency: f64,
    /// Tokens processed.
    pub total_tokens_processed: u64,
    /// Features per type.
    pub type_distribution: BTreeMap<String, usize>,
    /// The ten most important features as `[id, score]` ([`importance`]).
    pub top_features: Vec<(u64, f64)>,
}

impl Statistics {
    /// These statistics, of the features a file stores, over all `num_features` features of
    /// the SAE. A file built with `--drop-dead` (or the original's
    /// `include_dead_features=False`) stores only the features that fired, and its own
    /// statistics (the original's rule) count only those: its mean frequency is then the mean
    /// over active features, and its dead count 0. Here every feature left out counts as dead,
    /// with frequency 0, so the numbers are those of the whole dictionary whatever was stored.
    /// (Python's `min_activation_count` above 1 also leaves out features that fired a few
    /// times; they count as dead here too, their few firings missing from the mean.)
    pub fn over_all_features(&self, num_features: usize) -> Statistics {
        let left_out = num_features.saturating_sub(self.total_features);
        let mut all = self.clone();
        if left_out == 0 {
            return all;
        }
        all.total_features = num_features;
        all.dead_features += left_out;
        *all.type_distribution
            .entry(FeatureType::Dead.as_str().to_string())
            .or_default() += left_out;
        all.mean_activation_frequency =
            self.mean_activation_frequency * self.total_features as f64 / num_features as f64;
        all
    }
}

/// Metric for ranking features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopBy {
    /// Number of firings.
    ActivationCount,
    /// Largest activation.
    MaxActivation,
    /// Firing frequency.
    Frequency,
}

impl std::str::FromStr for TopBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "activation_count" => Ok(TopBy::ActivationCount),
            "max_activation" => Ok(TopBy::MaxActivation),
            "frequency" => Ok(TopBy::Frequency),
            _ => Err(format!(
                "unknown metric {s:?}; expected activation_count, max_activation or frequency"
            )),
        }
    }
}

/// The original's importance score: `0.7 · min(100 · frequency, 1) + 0.3 · min(max / 5, 1)`
/// (0 for dead features). Kept as is so rankings match the original's summaries.
pub fn importance(f: &Feature) -> f64 {
    importance_of(f.activation_count, f.activation_frequency, f.max_activation)
}

/// [`importance`] from the three fields it reads.
pub fn importance_of(activation_count: u64, activation_frequency: f64, max_activation: f64) -> f64 {
    if activation_count == 0 {
        return 0.0;
    }
    0.7 * (activation_frequency * 100.0).min(1.0) + 0.3 * (max_activation / 5.0).min(1.0)
}

/// A feature's place in the importance ranking: its [`importance`], then — the score
/// saturates at 1.0 for every feature firing on ≥ 1 % of tokens with a max ≥ 5, hundreds of
/// them on real SAEs — its firings, its max, and its id.
#[derive(Debug, Clone, Copy)]
pub struct ImportanceRank {
    /// The feature.
    pub id: u64,
    /// Its importance score.
    pub score: f64,
    firings: u64,
    max: f64,
}

impl ImportanceRank {
    /// The rank of a feature from the fields it reads.
    pub fn new(
        id: u64,
        activation_count: u64,
        activation_frequency: f64,
        max_activation: f64,
    ) -> Self {
        Self {
            id,
            score: importance_of(activation_count, activation_frequency, max_activation),
            firings: activation_count,
            max: max_activation,
        }
    }

    /// The rank of `f`.
    pub fn of(f: &Feature) -> Self {
        Self::new(
            f.id,
            f.activation_count,
            f.activation_frequency,
            f.max_activation,
        )
    }

    /// Best first.
    pub fn order(a: &Self, b: &Self) -> std::cmp::Ordering {
        b.score
            .total_cmp(&a.score)
            .then(b.firings.cmp(&a.firings))
            .then(b.max.total_cmp(&a.max))
            .then(a.id.cmp(&b.id))
    }
}

impl FeatureDictionary {
    /// Wraps a config and a feature set.
    pub fn new(config: DictionaryConfig, feature_set: FeatureSet) -> Self {
        Self {
            config,
            feature_set,
        }
    }

    /// Whether the dictionary holds per-token firing counts (a build of ours: the corpus
    /// token counts, or any feature's top tokens); the original library's files hold none.
    /// A feature without top tokens in such a dictionary never fired.
    pub fn has_token_counts(&self) -> bool {
        !self.feature_set.metadata.token_counts.is_empty()
            || self.features().any(|f| !f.metadata.top_tokens.is_empty())
    }

    /// Number of SAE features, dead and omitted ones included.
    pub fn num_features(&self) -> usize {
        width(&self.config, &self.feature_set)
    }

    /// A feature by id.
    pub fn get(&self, id: u64) -> Option<&Feature> {
        self.feature_set.features.get(&id)
    }

    /// Iterates features in id order.
    pub fn features(&self) -> impl Iterator<Item = &Feature> {
        self.feature_set.features.values()
    }

    /// The `n` best features by `by` (ties by id).
    pub fn top_features(&self, by: TopBy, only: Option<FeatureType>, n: usize) -> Vec<&Feature> {
        let key = |f: &Feature| match by {
            TopBy::ActivationCount => f.activation_count as f64,
            TopBy::MaxActivation => f.max_activation,
            TopBy::Frequency => f.activation_frequency,
        };
        let mut v: Vec<&Feature> = self
            .features()
            .filter(|f| only.is_none_or(|t| f.feature_type == t))
            .collect();
        v.sort_by(|a, b| key(b).total_cmp(&key(a)).then(a.id.cmp(&b.id)));
        v.truncate(n);
        v
    }

    /// Summary statistics.
    pub fn statistics(&self) -> Statistics {
        let mut tally = StatisticsTally::default();
        for f in self.features() {
            tally.add(f.into());
        }
        tally.finish(self.feature_set.total_tokens_processed)
    }

    /// A copy without features that fired fewer than `min_count` times; their ids are listed
    /// in the metadata so nothing is silently lost.
    pub fn without_rare(&self, min_count: u64) -> FeatureDictionary {
        let mut out = self.clone();
        out.drop_rare(min_count);
        out
    }

    /// [`without_rare`](Self::without_rare) in place: a large dictionary is not copied just
    /// to leave a few features out.
    pub fn drop_rare(&mut self, min_count: u64) {
        let num_features = self.num_features();
        let dropped: Vec<u64> = self
            .feature_set
            .features
            .iter()
            .filter(|(_, f)| f.activation_count < min_count)
            .map(|(&id, _)| id)
            .collect();
        for id in &dropped {
            self.feature_set.features.remove(id);
        }
        self.feature_set.metadata.omitted_features.extend(dropped);
        self.config.num_features = num_features;
    }
}

/// The number of SAE features `config` and `feature_set` describe: the declared width (the
/// config's, else the feature set's metadata), but never below a stored id, since a feature
/// added by hand (the original API's `add_feature` takes any id) widens the SAE.
pub(crate) fn width(config: &DictionaryConfig, feature_set: &FeatureSet) -> usize {
    let stored = feature_set
        .features
        .keys()
        .next_back()
        .map_or(0, |&k| k as usize + 1);
    let declared = if config.num_features > 0 {
        config.num_features
    } else {
        feature_set.metadata.num_features.unwrap_or(0)
    };
    declared.max(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_left_out_count_as_dead_in_the_whole_dictionary() {
        let stored = Statistics {
            total_features: 2,
            active_features: 2,
            dead_features: 0,
            labeled_features: 1,
            mean_activation_frequency: 0.3,
            total_tokens_processed: 10,
            type_distribution: [("dead".to_string(), 0), ("dense".to_string(), 2)].into(),
            top_features: vec![(0, 1.0)],
        };
        let all = stored.over_all_features(6);
        assert_eq!(all.total_features, 6);
        assert_eq!(all.active_features, 2);
        assert_eq!(all.dead_features, 4);
        assert_eq!(all.type_distribution["dead"], 4);
        assert_eq!(all.type_distribution["dense"], 2);
        assert!((all.mean_activation_frequency - 0.1).abs() < 1e-12);
        // Nothing left out: unchanged.
        assert_eq!(stored.over_all_features(2), stored);
    }
}

/// [`Statistics`] kept up to date while features go by in id order, so a writer streaming
/// a dictionary never needs it whole; [`FeatureDictionary::statistics`] is the tally of its
/// features.
#[derive(Default)]
pub(crate) struct StatisticsTally {
    n: usize,
    active: usize,
    dead: usize,
    labeled: usize,
    freq_sum: f64,
    types: HashMap<FeatureType, usize>,
    top: Vec<ImportanceRank>,
}

impl StatisticsTally {
    /// Counts the next feature.
    pub(crate) fn add(&mut self, f: FeatureView<'_>) {
        self.n += 1;
        self.active += (f.activation_count > 0) as usize;
        self.dead += (f.feature_type == FeatureType::Dead) as usize;
        self.labeled += (!f.labels.is_empty()) as usize;
        self.freq_sum += f.activation_frequency;
        *self.types.entry(f.feature_type).or_default() += 1;
        self.top.push(ImportanceRank::new(
            f.id,
            f.activation_count,
            f.activation_frequency,
            f.max_activation,
        ));
        if self.top.len() >= 4096 {
            self.trim_top();
        }
    }

    fn trim_top(&mut self) {
        self.top.sort_by(ImportanceRank::order);
        self.top.truncate(10);
    }

    /// The statistics of the features counted, of a corpus of `total_tokens`.
    pub(crate) fn finish(mut self, total_tokens: u64) -> Statistics {
        self.trim_top();
        Statistics {
            total_features: self.n,
            active_features: self.active,
            dead_features: self.dead,
            labeled_features: self.labeled,
            mean_activation_frequency: if self.n == 0 {
                0.0
            } else {
                self.freq_sum / self.n as f64
            },
            total_tokens_processed: total_tokens,
            type_distribution: FeatureType::ALL
                .iter()
                .map(|t| {
                    (
                        t.as_str().to_string(),
                        self.types.get(t).copied().unwrap_or(0),
                    )
                })
                .collect(),
            top_features: self.top.iter().map(|r| (r.id, r.score)).collect(),
        }
    }
}
