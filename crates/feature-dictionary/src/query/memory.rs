//! Search over a loaded [`FeatureDictionary`]: one linear scan per query, ranked exactly as
//! the SQL implementation ranks (see the module docs of [`crate::query`]).

use std::collections::HashMap;

use super::{label_needle, rank, text_words, token_score, words, Hit, Query, Search};
use crate::dictionary::FeatureDictionary;
use crate::error::Result;
use crate::model::Feature;
use crate::store::fdict::fts_columns;

impl Search for FeatureDictionary {
    fn search(&self, query: &Query, limit: usize) -> Result<Vec<Hit>> {
        let mut hits: Vec<Hit> = match query {
            Query::Token { token, by } => {
                super::check_token(token)?;
                self.features()
                    .filter_map(|f| {
                        let t = f.metadata.top_tokens.iter().find(|t| &t.token == token)?;
                        Some(Hit {
                            id: f.id,
                            score: token_score(*by, t.firings, t.occurrences),
                            matched: t.token.clone(),
                        })
                    })
                    .collect()
            }
            Query::Pattern { pattern, by } => {
                let re = super::compile_pattern(pattern)?;
                let mut verdict: HashMap<&str, bool> = HashMap::new();
                self.features()
                    .filter_map(|f| {
                        let mut best: Option<(f64, &str)> = None;
                        for t in &f.metadata.top_tokens {
                            let ok = *verdict
                                .entry(t.token.as_str())
                                .or_insert_with(|| re.is_match(&t.token));
                            if !ok {
                                continue;
                            }
                            let s = token_score(*by, t.firings, t.occurrences);
                            let better = match best {
                                None => true,
                                Some((bs, bt)) => s > bs || (s == bs && t.token.as_str() < bt),
                            };
                            if better {
                                best = Some((s, &t.token));
                            }
                        }
                        best.map(|(score, t)| Hit {
                            id: f.id,
                            score,
                            matched: t.to_string(),
                        })
                    })
                    .collect()
            }
            Query::Label(text) => {
                let needle = label_needle(text)?;
                self.features()
                    .filter_map(|f| {
                        let l = f
                            .labels
                            .iter()
                            .find(|l| l.to_lowercase().contains(&needle))?;
                        Some(Hit {
                            id: f.id,
                            score: f.confidence,
                            matched: l.clone(),
                        })
                    })
                    .collect()
            }
            Query::Text(text) => bm25(self, &text_words(text)?),
        };
        rank(&mut hits);
        hits.truncate(limit);
        Ok(hits)
    }
}

/// Words of the row the full-text index holds for `f`.
fn row_words(f: &Feature) -> Vec<String> {
    let (labels, description, tokens) = fts_columns(f);
    let mut w = words(&labels);
    w.extend(words(&description));
    w.extend(words(&tokens));
    w
}

/// FTS5's `bm25()` (k1 = 1.2, b = 0.75, all column weights 1), negated so higher is better.
fn bm25(dict: &FeatureDictionary, query: &[String]) -> Vec<Hit> {
    const K1: f64 = 1.2;
    const B: f64 = 0.75;
    let rows: Vec<(u64, Vec<String>)> = dict.features().map(|f| (f.id, row_words(f))).collect();
    let n_rows = rows.len() as f64;
    let n_tokens: usize = rows.iter().map(|r| r.1.len()).sum();
    if rows.is_empty() {
        return Vec::new();
    }
    let avgdl = n_tokens as f64 / n_rows;
    let idf: Vec<f64> = query
        .iter()
        .map(|q| {
            let n_hit = rows.iter().filter(|r| r.1.contains(q)).count() as f64;
            let idf = ((n_rows - n_hit + 0.5) / (n_hit + 0.5)).ln();
            if idf <= 0.0 {
                1e-6
            } else {
                idf
            }
        })
        .collect();
    rows.iter()
        .filter_map(|(id, w)| {
            let freqs: Vec<f64> = query
                .iter()
                .map(|q| w.iter().filter(|x| *x == q).count() as f64)
                .collect();
            if freqs.contains(&0.0) {
                return None;
            }
            let d = w.len() as f64;
            let score: f64 = freqs
                .iter()
                .zip(&idf)
                .map(|(&f, &idf)| idf * (f * (K1 + 1.0)) / (f + K1 * (1.0 - B + B * d / avgdl)))
                .sum();
            Some(Hit {
                id: *id,
                score,
                matched: String::new(),
            })
        })
        .collect()
}
