//! `semantic_clustering`: clusters of the tokens a feature fires on, by token-embedding
//! similarity ([`crate::analyze::polysemantic::cluster_tokens`]), each scored as a token set:
//! precision = firings on the cluster's tokens / their corpus occurrences, recall = those
//! firings / all firings.
//!
//! Label text: `semantic:` + the cluster's representative tokens (its three most fired),
//! joined by `|` — e.g. `semantic: cat| dog| wolf`.

use super::{scored_label, Counts, LabelOptions, Labeler};
use crate::analyze::embeddings::TokenEmbeddings;
use crate::analyze::polysemantic::{cluster_tokens, ClusterParams};
use crate::model::{Feature, Label, LabelingStrategy};

/// The semantic-clustering labeler.
#[derive(Debug, Clone)]
pub struct SemanticClustering {
    embeddings: TokenEmbeddings,
    params: ClusterParams,
}

impl SemanticClustering {
    /// With the given embeddings and default clustering thresholds.
    pub fn new(embeddings: TokenEmbeddings) -> Self {
        Self {
            embeddings,
            params: ClusterParams::default(),
        }
    }
}

impl Labeler for SemanticClustering {
    fn strategy(&self) -> LabelingStrategy {
        LabelingStrategy::SemanticClustering
    }

    fn label(&self, feature: &Feature, options: &LabelOptions) -> Vec<Label> {
        let mut v: Vec<(Vec<String>, Counts)> =
            cluster_tokens(feature, &self.embeddings, &self.params)
                .into_iter()
                // A one-token cluster is a token label, not a semantic one.
                .filter(|c| c.tokens.len() >= 2)
                .map(|c| {
                    (
                        c.tokens,
                        Counts {
                            firings: c.firings,
                            occurrences: c.occurrences,
                            total_firings: feature.activation_count,
                        },
                    )
                })
                .filter(|(_, c)| options.admits(c))
                .collect();
        v.sort_by(|a, b| a.1.cmp_best_first(&b.1, options.rank));
        v.into_iter()
            .map(|(tokens, c)| {
                let rep: Vec<&str> = tokens.iter().take(3).map(|s| s.as_str()).collect();
                scored_label(
                    format!("semantic:{}", rep.join("|")),
                    LabelingStrategy::SemanticClustering,
                    &c,
                    options.rank,
                    vec![format!(
                        "cluster of {} tokens {:?}: {} of {} occurrences, {} of {} firings",
                        tokens.len(),
                        tokens,
                        c.firings,
                        c.occurrences,
                        c.firings,
                        c.total_firings
                    )],
                )
            })
            .collect()
    }
}
