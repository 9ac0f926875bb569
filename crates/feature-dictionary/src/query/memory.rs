//! Search over a loaded [`FeatureDictionary`]: one linear scan per query, ranked exactly as
//! the SQL implementation ranks (see the module docs of [`crate::query`]). On the
//! [`TokenBasis::Examples`] basis each feature's example tokens are counted as it is
//! scanned; nothing is kept between queries, since the dictionary may change in between.

use std::collections::HashMap;

use super::{
    example_token_counts, label_needle, rank, text_words, token_score, Found, Hit, Query, Search,
    TokenBasis, TokenRank,
};
use crate::dictionary::FeatureDictionary;
use crate::error::{Error, Result};
use crate::model::Feature;
use crate::store::fdict::fts_row;

impl Search for FeatureDictionary {
    fn token_basis(&self) -> Result<TokenBasis> {
        // As `FdictReader::has_token_counts`.
        Ok(TokenBasis::given_counts(self.has_token_counts()))
    }

    fn find(&self, query: &Query, limit: usize) -> Result<Found> {
        let (mut hits, basis, by): (Vec<Hit>, _, _) = match query {
            Query::Token { token, .. } => {
                super::check_token(token)?;
                let (basis, by) = token_ranking(self, query)?;
                let hits = match basis {
                    TokenBasis::TopTokens => self
                        .features()
                        .filter_map(|f| {
                            let t = f.metadata.top_tokens.iter().find(|t| &t.token == token)?;
                            Some(Hit {
                                id: f.id,
                                score: token_score(by, t.firings, t.occurrences),
                                matched: t.token.clone(),
                                support: t.firings,
                            })
                        })
                        .collect(),
                    TokenBasis::Examples => {
                        let mut m = TokenMatch::Exact(token);
                        self.features()
                            .filter_map(|f| example_hit(f, &mut m))
                            .collect()
                    }
                };
                (hits, Some(basis), Some(by))
            }
            Query::Pattern { pattern, .. } => {
                let re = super::compile_pattern(pattern)?;
                let (basis, by) = token_ranking(self, query)?;
                let hits = match basis {
                    TokenBasis::TopTokens => top_token_pattern(self, &re, by),
                    TokenBasis::Examples => {
                        let mut m = TokenMatch::regex(&re);
                        self.features()
                            .filter_map(|f| example_hit(f, &mut m))
                            .collect()
                    }
                };
                (hits, Some(basis), Some(by))
            }
            Query::Label(text) => {
                let needle = label_needle(text)?;
                let hits = self
                    .features()
                    .filter_map(|f| {
                        if f.labels.is_empty() && f.metadata.label_details.is_empty() {
                            return None;
                        }
                        let details = crate::label::manual::label_details(f.into());
                        let (label, confidence) = super::best_matching_label(
                            details.iter().map(|l| (l.text.as_str(), l.confidence)),
                            &needle,
                        )?;
                        Some(Hit {
                            id: f.id,
                            score: confidence,
                            matched: label.to_string(),
                            support: 0,
                        })
                    })
                    .collect();
                (hits, None, None)
            }
            Query::Text(text) => (text_hits(self, text, limit)?, None, None),
        };
        rank(&mut hits);
        hits.truncate(limit);
        Ok(Found { hits, basis, by })
    }
}

/// The basis of `dict`'s token searches and the ranking `query` applies on it.
fn token_ranking(dict: &FeatureDictionary, query: &Query) -> Result<(TokenBasis, TokenRank)> {
    let basis = dict.token_basis()?;
    let by = query
        .ranking(basis)?
        .expect("token and pattern searches have a ranking");
    Ok((basis, by))
}

/// Pattern search over top tokens: each feature by its best matching token.
fn top_token_pattern(dict: &FeatureDictionary, re: &regex::Regex, by: TokenRank) -> Vec<Hit> {
    let mut verdict: HashMap<&str, bool> = HashMap::new();
    dict.features()
        .filter_map(|f| {
            let mut best: Option<(f64, u64, &str)> = None;
            for t in &f.metadata.top_tokens {
                let ok = *verdict
                    .entry(t.token.as_str())
                    .or_insert_with(|| re.is_match(&t.token));
                if !ok {
                    continue;
                }
                let s = token_score(by, t.firings, t.occurrences);
                let better = match best {
                    None => true,
                    Some(b) => super::better_token((s, t.firings, &t.token), b),
                };
                if better {
                    best = Some((s, t.firings, &t.token));
                }
            }
            best.map(|(score, support, t)| Hit {
                id: f.id,
                score,
                matched: t.to_string(),
                support,
            })
        })
        .collect()
}

/// What a token search (exactly) or a pattern search (by regex) looks for among a feature's
/// example tokens.
pub(super) enum TokenMatch<'q> {
    /// This token exactly.
    Exact(&'q str),
    /// Tokens this regex matches, with the verdicts on tokens seen so far (most tokens
    /// recur across features).
    Regex(&'q regex::Regex, HashMap<String, bool>),
}

impl<'q> TokenMatch<'q> {
    /// Tokens matching `re`.
    pub(super) fn regex(re: &'q regex::Regex) -> Self {
        TokenMatch::Regex(re, HashMap::new())
    }

    fn matches(&mut self, token: &str) -> bool {
        match self {
            TokenMatch::Exact(t) => *t == token,
            TokenMatch::Regex(re, verdict) => match verdict.get(token) {
                Some(&ok) => ok,
                None => *verdict
                    .entry(token.to_string())
                    .or_insert(re.is_match(token)),
            },
        }
    }
}

/// `f` as a hit of a search on the [`TokenBasis::Examples`] basis, if one of its example
/// tokens matches: scored by how many of its stored examples fire on its best matching token
/// (ties to the lexicographically smaller token). The SQL search of a file without the
/// `example_tokens` table calls this too, feature by feature.
pub(super) fn example_hit(f: &Feature, m: &mut TokenMatch<'_>) -> Option<Hit> {
    let mut best: Option<(u64, &str)> = None;
    // Sorted by token, so the first of equal counts is the smaller token.
    for (t, n) in example_token_counts(&f.top_activations, &f.metadata) {
        if best.is_none_or(|(bn, _)| n > bn) && m.matches(t) {
            best = Some((n, t));
        }
    }
    best.map(|(n, t)| Hit {
        id: f.id,
        score: n as f64,
        matched: t.to_string(),
        support: 0,
    })
}

/// Full text as a `.fdict` searches it, through an in-memory FTS5 table of the same rows:
/// the same tokenizer (SQLite's `unicode61`, which folds case and the diacritics of Latin
/// letters) and the same bm25, so a `.json` finds what its `.fdict` finds, in the same order.
fn text_hits(dict: &FeatureDictionary, text: &str, limit: usize) -> Result<Vec<Hit>> {
    let words = text_words(text)?;
    let fail = |e: rusqlite::Error| Error::Invalid(format!("in-memory full-text search: {e}"));
    let conn = rusqlite::Connection::open_in_memory().map_err(fail)?;
    conn.execute_batch("CREATE VIRTUAL TABLE fts USING fts5(labels, description, tokens); BEGIN;")
        .map_err(fail)?;
    {
        let mut insert = conn
            .prepare("INSERT INTO fts(rowid, labels, description, tokens) VALUES (?1, ?2, ?3, ?4)")
            .map_err(fail)?;
        for f in dict.features() {
            let id = i64::try_from(f.id).map_err(|_| {
                Error::Invalid(format!("feature id {} is beyond a full-text row id", f.id))
            })?;
            let Some((labels, description, tokens)) = fts_row(f) else {
                continue;
            };
            insert
                .execute(rusqlite::params![id, labels, description, tokens])
                .map_err(fail)?;
        }
    }
    conn.execute_batch("COMMIT;").map_err(fail)?;
    super::sql::fts_hits(&conn, &words, limit).map_err(fail)
}
