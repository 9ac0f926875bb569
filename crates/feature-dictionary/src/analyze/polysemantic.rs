//! Token clusters by embedding similarity, and polysemantic features.
//!
//! A feature's firing tokens (its `top_tokens` with an embedding, at most [`MAX_TOKENS`] by
//! firings) are clustered by average-linkage agglomeration on cosine similarity: the two
//! clusters with the highest mean pairwise cosine merge while that mean is ≥ `merge_at`.
//!
//! **Polysemantic** (replacing the original's "first character" rule): at least
//! `min_clusters` clusters that each hold ≥ `min_cluster_size` tokens and ≥ `min_share` of the
//! clustered firings, and whose centroids are well separated — every pair's centroid cosine
//! is < `max_centroid_cosine`. Such a feature fires on unrelated groups of tokens.

use serde::Serialize;

use super::embeddings::TokenEmbeddings;
use crate::dictionary::FeatureDictionary;
use crate::model::Feature;

/// Tokens clustered per feature.
pub const MAX_TOKENS: usize = 64;

/// A cluster of a feature's firing tokens.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenCluster {
    /// Tokens, most firings first.
    pub tokens: Vec<String>,
    /// Firings of the feature on them.
    pub firings: u64,
    /// Their corpus occurrences.
    pub occurrences: u64,
    /// Unit centroid of their embeddings (firing-weighted).
    #[serde(skip)]
    pub centroid: Vec<f32>,
}

/// Clustering and polysemanticity thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterParams {
    /// Merge two clusters while their mean pairwise cosine is at least this.
    pub merge_at: f32,
    /// Clusters needed for polysemanticity.
    pub min_clusters: usize,
    /// Tokens a cluster needs to count.
    pub min_cluster_size: usize,
    /// Share of clustered firings a cluster needs to count.
    pub min_share: f64,
    /// Counted clusters must have centroid cosines below this.
    pub max_centroid_cosine: f32,
}

impl Default for ClusterParams {
    fn default() -> Self {
        Self {
            merge_at: 0.5,
            min_clusters: 2,
            min_cluster_size: 3,
            min_share: 0.1,
            max_centroid_cosine: 0.3,
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Clusters `feature`'s firing tokens; clusters ordered by firings (desc).
pub fn cluster_tokens(
    feature: &Feature,
    emb: &TokenEmbeddings,
    params: &ClusterParams,
) -> Vec<TokenCluster> {
    let items: Vec<(&str, u64, u64, &[f32])> = feature
        .metadata
        .top_tokens
        .iter()
        .filter_map(|t| {
            emb.get(&t.token)
                .map(|v| (t.token.as_str(), t.firings, t.occurrences, v))
        })
        .take(MAX_TOKENS)
        .collect();
    let n = items.len();
    if n == 0 {
        return Vec::new();
    }
    let sim: Vec<f32> = (0..n * n)
        .map(|k| dot(items[k / n].3, items[k % n].3))
        .collect();
    let mut clusters: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
    loop {
        let mut best: Option<(f32, usize, usize)> = None;
        for a in 0..clusters.len() {
            for b in a + 1..clusters.len() {
                let mut s = 0.0;
                for &i in &clusters[a] {
                    for &j in &clusters[b] {
                        s += sim[i * n + j];
                    }
                }
                let mean = s / (clusters[a].len() * clusters[b].len()) as f32;
                if !matches!(best, Some((b, _, _)) if b >= mean) {
                    best = Some((mean, a, b));
                }
            }
        }
        match best {
            Some((m, a, b)) if m >= params.merge_at => {
                let moved = clusters.remove(b);
                clusters[a].extend(moved);
            }
            _ => break,
        }
    }
    let d = items[0].3.len();
    let mut out: Vec<TokenCluster> = clusters
        .into_iter()
        .map(|mut c| {
            c.sort_by(|&i, &j| items[j].1.cmp(&items[i].1).then(i.cmp(&j)));
            let mut centroid = vec![0f32; d];
            for &i in &c {
                for (x, v) in centroid.iter_mut().zip(items[i].3) {
                    *x += v * items[i].1 as f32;
                }
            }
            let norm = dot(&centroid, &centroid).sqrt();
            if norm > 0.0 {
                centroid.iter_mut().for_each(|x| *x /= norm);
            }
            TokenCluster {
                tokens: c.iter().map(|&i| items[i].0.to_string()).collect(),
                firings: c.iter().map(|&i| items[i].1).sum(),
                occurrences: c.iter().map(|&i| items[i].2).sum(),
                centroid,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.firings
            .cmp(&a.firings)
            .then_with(|| a.tokens.cmp(&b.tokens))
    });
    out
}

/// The clusters that count for polysemanticity, or `None` if the feature is not
/// polysemantic under `params`.
pub fn polysemantic_clusters(
    feature: &Feature,
    emb: &TokenEmbeddings,
    params: &ClusterParams,
) -> Option<Vec<TokenCluster>> {
    let clusters = cluster_tokens(feature, emb, params);
    let total: u64 = clusters.iter().map(|c| c.firings).sum();
    let big: Vec<TokenCluster> = clusters
        .into_iter()
        .filter(|c| {
            c.tokens.len() >= params.min_cluster_size
                && c.firings as f64 >= params.min_share * total as f64
        })
        .collect();
    if big.len() < params.min_clusters {
        return None;
    }
    for a in 0..big.len() {
        for b in a + 1..big.len() {
            if dot(&big[a].centroid, &big[b].centroid) >= params.max_centroid_cosine {
                return None;
            }
        }
    }
    Some(big)
}

/// The original's `find_polysemantic_features()`: every polysemantic feature with its
/// clusters, by id.
pub fn find_polysemantic(
    dict: &FeatureDictionary,
    emb: &TokenEmbeddings,
    params: &ClusterParams,
) -> Vec<(u64, Vec<TokenCluster>)> {
    dict.features()
        .filter_map(|f| polysemantic_clusters(f, emb, params).map(|c| (f.id, c)))
        .collect()
}
