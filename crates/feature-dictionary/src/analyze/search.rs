//! Search a dictionary: by firing token, by label substring, by regex.

use regex::Regex;

use crate::dictionary::FeatureDictionary;
use crate::error::{Error, Result};

/// A search hit.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Hit {
    /// Feature id.
    pub id: u64,
    /// Score used for ordering (documented per search).
    pub score: f64,
    /// What matched.
    pub matched: String,
}

/// Features that fire on `token` (exact string, or with surrounding whitespace ignored when
/// no feature has the exact string), ordered by precision = firings on the token /
/// occurrences of the token (ties by more firings, then id).
pub fn by_token(dict: &FeatureDictionary, token: &str) -> Vec<Hit> {
    let search = |exact: bool| -> Vec<(Hit, u64)> {
        dict.features()
            .filter_map(|f| {
                f.metadata
                    .top_tokens
                    .iter()
                    .find(|t| {
                        if exact {
                            t.token == token
                        } else {
                            t.token.trim() == token.trim()
                        }
                    })
                    .map(|t| {
                        (
                            Hit {
                                id: f.id,
                                score: t.firings as f64 / t.occurrences.max(1) as f64,
                                matched: format!(
                                    "{:?}: {} of {} occurrences, {} of {} firings",
                                    t.token,
                                    t.firings,
                                    t.occurrences,
                                    t.firings,
                                    f.activation_count
                                ),
                            },
                            t.firings,
                        )
                    })
            })
            .collect()
    };
    let mut v = search(true);
    if v.is_empty() {
        v = search(false);
    }
    v.sort_by(|a, b| {
        b.0.score
            .total_cmp(&a.0.score)
            .then(b.1.cmp(&a.1))
            .then(a.0.id.cmp(&b.0.id))
    });
    v.into_iter().map(|x| x.0).collect()
}

/// The original's `search_by_label(substring)`: case-insensitive substring of any label,
/// ordered by the feature's confidence, then id.
pub fn by_label(dict: &FeatureDictionary, substring: &str) -> Vec<Hit> {
    let needle = substring.to_lowercase();
    let mut v: Vec<Hit> = dict
        .features()
        .filter_map(|f| {
            f.labels
                .iter()
                .find(|l| l.to_lowercase().contains(&needle))
                .map(|l| Hit {
                    id: f.id,
                    score: f.confidence,
                    matched: l.clone(),
                })
        })
        .collect();
    v.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    v
}

/// The original's `search_by_pattern(regex)`: features with a label, description or top
/// token matching `pattern`, ordered by confidence, then id.
pub fn by_pattern(dict: &FeatureDictionary, pattern: &str) -> Result<Vec<Hit>> {
    let re = Regex::new(pattern)
        .map_err(|e| Error::Invalid(format!("{pattern:?} is not a valid regex: {e}")))?;
    let mut v: Vec<Hit> = dict
        .features()
        .filter_map(|f| {
            let found = f
                .labels
                .iter()
                .find(|l| re.is_match(l))
                .cloned()
                .or_else(|| re.is_match(&f.description).then(|| f.description.clone()))
                .or_else(|| {
                    f.metadata
                        .top_tokens
                        .iter()
                        .find(|t| re.is_match(&t.token))
                        .map(|t| format!("token {:?}", t.token))
                });
            found.map(|m| Hit {
                id: f.id,
                score: f.confidence,
                matched: m,
            })
        })
        .collect();
    v.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    Ok(v)
}
