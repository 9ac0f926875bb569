//! Labels and the strategies that produce them.

use serde::{Deserialize, Serialize};

/// How a label was produced (values as in the original).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelingStrategy {
    /// Tokens the feature fires on, scored over the whole corpus.
    TokenFrequency,
    /// N-grams ending at the firing token.
    NgramAnalysis,
    /// Regex patterns over the firing token.
    PatternMatching,
    /// Clusters of firing tokens by embedding similarity.
    SemanticClustering,
    /// Written by a person; never overwritten by automatic labeling.
    Manual,
}

impl LabelingStrategy {
    /// The original's string value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenFrequency => "token_frequency",
            Self::NgramAnalysis => "ngram_analysis",
            Self::PatternMatching => "pattern_matching",
            Self::SemanticClustering => "semantic_clustering",
            Self::Manual => "manual",
        }
    }
}

/// A label with the evidence that supports it.
///
/// For a token label `t`: precision = firings on `t` / occurrences of `t` in the corpus,
/// recall = firings on `t` / all firings of the feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    /// Label text in the original's style: `token:the`, `ngram:of the`, `pattern:number`.
    pub text: String,
    /// Which strategy produced it.
    pub strategy: LabelingStrategy,
    /// Score in [0, 1] used to rank labels (documented per strategy).
    pub confidence: f64,
    /// Fraction of the label's occurrences on which the feature fires.
    #[serde(default)]
    pub precision: Option<f64>,
    /// Fraction of the feature's firings that the label covers.
    #[serde(default)]
    pub recall: Option<f64>,
    /// Human-readable evidence (example tokens, counts).
    #[serde(default)]
    pub evidence: Vec<String>,
}
