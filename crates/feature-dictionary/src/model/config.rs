//! Configuration, serialized exactly like the original's `DictionaryConfig.to_dict()` plus a
//! few keys of ours (the original ignores `config` when loading, so extra keys are safe).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::LabelingStrategy;

/// Partners per feature in the correlation sketch by default (see
/// [`ExtractionConfig::correlation_capacity`]).
pub const DEFAULT_CORRELATION_CAPACITY: usize = 1024;

/// How activations are turned into statistics and examples (the original's `ExtractionConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExtractionConfig {
    /// Kept for API compatibility; `min_activation` is the threshold that decides a firing.
    pub activation_threshold: f64,
    /// An activation counts as a firing when `value >= min_activation` (must be > 0).
    pub min_activation: f64,
    /// Top-k examples kept per feature.
    pub max_examples_per_feature: usize,
    /// Tokens kept on each side of an example.
    pub context_window: usize,
    /// Rows per ingest batch in the original; we size batches by memory instead.
    pub batch_size: usize,
    /// `finalize` drops features with fewer firings unless `include_dead_features`.
    pub min_activation_count: u64,
    /// Keep features below `min_activation_count` in the output.
    pub include_dead_features: bool,
    /// Keep the joined context text of each example.
    pub collect_context: bool,
    /// Keep position statistics.
    pub collect_positions: bool,
    /// Examples per quantile group, on average, of the quantile-stratified samples: each
    /// feature keeps a uniform sample of 10 × this many firings (ours; `samples_per_band` in files written
    /// before the sample became uniform, read as this).
    #[serde(alias = "samples_per_band")]
    pub samples_per_group: usize,
    /// Distinct tokens tracked exactly per feature before the token sketch starts to
    /// approximate (ours; see `accumulate::token_sketch`).
    pub token_sketch_capacity: usize,
    /// Distinct 2-/3-grams (ending at the firing token) counted exactly per feature; 0 turns
    /// n-gram counting off (ours; see `accumulate::ngrams`).
    pub ngram_capacity: usize,
    /// Distinct corpus n-grams counted exactly before a count-min sketch takes over (ours).
    pub ngram_corpus_capacity: usize,
    /// Co-activation kept for correlation queries: "off" (default), "exact" (Pearson of
    /// activations, F ≤ 4,096) or "sketch" (φ of firings; see `accumulate::coactivation`).
    pub correlation: String,
    /// Partners per feature counted exactly in sketch mode (ours).
    pub correlation_capacity: usize,
}

impl Default for ExtractionConfig {
    fn default() -> Self {
        Self {
            activation_threshold: 0.0,
            min_activation: 0.01,
            max_examples_per_feature: 20,
            context_window: 5,
            batch_size: 32,
            min_activation_count: 1,
            // Unlike the original, dead features are kept by default: they are data.
            include_dead_features: true,
            collect_context: true,
            collect_positions: true,
            samples_per_group: 2,
            token_sketch_capacity: 1024,
            ngram_capacity: 0,
            ngram_corpus_capacity: 1 << 20,
            correlation: "off".into(),
            correlation_capacity: DEFAULT_CORRELATION_CAPACITY,
        }
    }
}

/// Labeling settings (the original's `LabelingConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelingConfig {
    /// Minimum firings on a token before it can become a label.
    pub min_token_frequency: u64,
    /// Labels kept per feature.
    pub max_labels: usize,
    /// User patterns: name → regex.
    pub patterns: BTreeMap<String, String>,
    /// Labels below this confidence are dropped.
    pub min_confidence: f64,
    /// N-gram lengths considered by n-gram analysis.
    pub ngram_sizes: Vec<usize>,
    /// Strategies run by automatic labeling.
    pub strategies: Vec<LabelingStrategy>,
}

impl Default for LabelingConfig {
    fn default() -> Self {
        Self {
            min_token_frequency: 3,
            max_labels: 5,
            patterns: BTreeMap::new(),
            min_confidence: 0.3,
            ngram_sizes: vec![1, 2, 3],
            strategies: vec![
                LabelingStrategy::TokenFrequency,
                LabelingStrategy::NgramAnalysis,
            ],
        }
    }
}

/// The dictionary's configuration (the original's `DictionaryConfig`), plus the SAE's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DictionaryConfig {
    /// Extraction settings.
    #[serde(deserialize_with = "extraction_with_either_sample_key")]
    pub extraction: ExtractionConfig,
    /// Labeling settings.
    pub labeling: LabelingConfig,
    /// Dictionary name.
    pub name: String,
    /// Model the SAE was trained on.
    pub model_name: String,
    /// SAE identifier.
    pub sae_name: String,
    /// Layer the SAE reads.
    pub layer: i64,
    /// Original's auto-save flag (kept for compatibility).
    pub auto_save: bool,
    /// Original's auto-save path (kept for compatibility).
    pub save_path: Option<String>,
    /// Number of SAE features (latents), dead ones included (ours).
    pub num_features: usize,
    /// Dimension of each feature's decoder direction, 0 when unknown (ours).
    pub feature_dim: usize,
}

impl Default for DictionaryConfig {
    fn default() -> Self {
        Self {
            extraction: ExtractionConfig::default(),
            labeling: LabelingConfig::default(),
            name: "feature_dictionary".into(),
            model_name: String::new(),
            sae_name: String::new(),
            layer: 0,
            auto_save: false,
            save_path: None,
            num_features: 0,
            feature_dim: 0,
        }
    }
}

/// Reads the extraction settings of a saved dictionary, which may name the example sample
/// both `samples_per_group` and `samples_per_band` (its name before 2026-11-27; a file edited
/// by hand, or passed through a tool that kept the old key): the new name wins, as in the
/// Python package, instead of serde refusing a "duplicate field".
fn extraction_with_either_sample_key<'de, D>(d: D) -> Result<ExtractionConfig, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error as _;
    let mut fields = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
    if fields.contains_key("samples_per_group") {
        fields.remove("samples_per_band");
    }
    // Read from the buffered value, the settings are past the reach of the reader's own
    // path tracking: name the setting at fault here.
    serde_path_to_error::deserialize(serde_json::Value::Object(fields)).map_err(|e| {
        let path = e.path().to_string();
        match path.as_str() {
            "." => D::Error::custom(e.into_inner()),
            _ => D::Error::custom(format!("{path}: {}", e.into_inner())),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dictionaries written while the samples were kept per activation band name the
    /// setting `samples_per_band`; they load with it as `samples_per_group`.
    #[test]
    fn the_old_name_of_samples_per_group_is_read() {
        let old: ExtractionConfig =
            serde_json::from_str(r#"{"samples_per_band": 7, "context_window": 3}"#).unwrap();
        assert_eq!((old.samples_per_group, old.context_window), (7, 3));
        let new = serde_json::to_value(&old).unwrap();
        assert_eq!(new["samples_per_group"], 7);
        assert!(new.get("samples_per_band").is_none());
        // Both names in a saved dictionary's config: the new one wins.
        let both: DictionaryConfig = serde_json::from_str(
            r#"{"extraction": {"samples_per_band": 7, "samples_per_group": 3}, "layer": 2}"#,
        )
        .unwrap();
        assert_eq!((both.extraction.samples_per_group, both.layer), (3, 2));
        let old: DictionaryConfig =
            serde_json::from_str(r#"{"extraction": {"samples_per_band": 7}}"#).unwrap();
        assert_eq!(old.extraction.samples_per_group, 7);
        let bad = serde_json::from_str::<DictionaryConfig>(
            r#"{"extraction": {"samples_per_group": "many"}}"#,
        )
        .unwrap_err();
        assert!(
            bad.to_string()
                .contains("samples_per_group: invalid type: string \"many\", expected usize"),
            "{bad}"
        );
    }
}
