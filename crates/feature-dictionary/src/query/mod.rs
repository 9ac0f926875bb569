//! Query: search a dictionary by token, label, regex over tokens or full text.
//!
//! One [`Search`] trait with two implementations that rank identically:
//! - [`memory`]: over a loaded [`crate::FeatureDictionary`] (a linear scan per query);
//! - [`sql`]: over an open [`crate::store::fdict::FdictReader`] (indexes and FTS5), for
//!   dictionaries too large to load.
//!
//! Rankings (ties always go to the smaller feature id):
//! - [`Query::Token`]: features whose `top_tokens` hold the token exactly, by that token's
//!   precision (firings / occurrences) or firings.
//! - [`Query::Pattern`]: features with a top token matching a regex (unanchored; use `^…$`
//!   for whole tokens), by the best matching token's precision or firings (ties between
//!   tokens to the lexicographically smaller token, which is reported as `matched`).
//! - [`Query::Label`]: features with a label containing the text, case-insensitively, by the
//!   feature's confidence (its best label's).
//! - [`Query::Text`]: full text over labels, description and the top 20 tokens; every word
//!   must occur (words are runs of letters and digits, lowercased); ranked by bm25 (k1 = 1.2,
//!   b = 0.75, the whole row as one document), reported as `score = -bm25` so that higher is
//!   better. The in-memory ranking recomputes FTS5's formula; it does not strip diacritics
//!   as FTS5's tokenizer does, so accented words can rank differently.

pub mod memory;
pub mod sql;
pub mod synthetic;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What a token or pattern search ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRank {
    /// Firings on the token / occurrences of the token.
    #[default]
    Precision,
    /// Firings on the token.
    Firings,
}

impl TokenRank {
    /// The name it is given by: `precision` or `firings`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRank::Precision => "precision",
            TokenRank::Firings => "firings",
        }
    }
}

impl std::str::FromStr for TokenRank {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "precision" => Ok(TokenRank::Precision),
            "firings" => Ok(TokenRank::Firings),
            _ => Err(format!(
                "unknown ranking {s:?}; expected precision or firings"
            )),
        }
    }
}

/// A search.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// Features firing on this exact token.
    Token {
        /// The token as stored (byte-level BPE tokens carry their leading space).
        token: String,
        /// Ranking.
        by: TokenRank,
    },
    /// Case-insensitive substring of a label.
    Label(String),
    /// Regex over top tokens.
    Pattern {
        /// Regex (Rust `regex` syntax).
        pattern: String,
        /// Ranking.
        by: TokenRank,
    },
    /// Full text over labels, descriptions and top tokens.
    Text(String),
}

impl Query {
    /// The search of `kind` (`token`, `label`, `pattern` or `text`) for `value`, ranked `by`
    /// (token and pattern searches; precision when `None`), as the CLI and the server take
    /// it. Refused: an empty value (an empty token is no token, and matches nothing: "no
    /// match" would read as an answer), and a ranking for a label or text search, which rank
    /// by confidence and bm25 whatever it says.
    pub fn new(kind: &str, value: String, by: Option<TokenRank>) -> Result<Query> {
        let query = match kind {
            "token" => {
                check_token(&value)?;
                Query::Token {
                    token: value,
                    by: by.unwrap_or_default(),
                }
            }
            "pattern" => {
                if value.is_empty() {
                    return Err(Error::Invalid("empty pattern".into()));
                }
                Query::Pattern {
                    pattern: value,
                    by: by.unwrap_or_default(),
                }
            }
            "label" => {
                label_needle(&value)?;
                Query::Label(value)
            }
            "text" => {
                text_words(&value)?;
                Query::Text(value)
            }
            other => {
                return Err(Error::Invalid(format!(
                    "unknown search kind {other:?}: expected token, label, pattern or text"
                )))
            }
        };
        if let (Some(by), Query::Label(_) | Query::Text(_)) = (by, &query) {
            let ranks = match query {
                Query::Label(_) => "by the feature's confidence",
                _ => "by bm25",
            };
            return Err(Error::Invalid(format!(
                "a ranking by {} applies only to token and pattern searches; a {} search ranks {ranks}",
                by.as_str(),
                query.kind()
            )));
        }
        Ok(query)
    }

    /// Which kind of search this is: `token`, `label`, `pattern` or `text`.
    pub fn kind(&self) -> &'static str {
        match self {
            Query::Token { .. } => "token",
            Query::Label(_) => "label",
            Query::Pattern { .. } => "pattern",
            Query::Text(_) => "text",
        }
    }
}

/// One result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// Feature id.
    pub id: u64,
    /// Ranking score (higher is better).
    pub score: f64,
    /// What matched: the token, the label, or empty for full text.
    pub matched: String,
}

/// Searching a dictionary.
pub trait Search {
    /// The best `limit` hits for `query`, best first. Bad queries (empty text, invalid
    /// regex) give [`Error::Invalid`].
    fn search(&self, query: &Query, limit: usize) -> Result<Vec<Hit>>;
}

/// Largest compiled regex accepted (bounds memory and time of pattern search).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles a pattern search's regex with a size bound.
pub fn compile_pattern(pattern: &str) -> Result<regex::Regex> {
    if pattern.is_empty() {
        return Err(Error::Invalid("empty pattern".into()));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| Error::Invalid(format!("invalid regex {pattern:?}: {e}")))
}

/// Words of a text the way the full-text index splits it: runs of letters and digits,
/// lowercased.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Refuses an empty token query: no token is empty, so it would only ever find nothing.
fn check_token(token: &str) -> Result<()> {
    if token.is_empty() {
        return Err(Error::Invalid("empty token query".into()));
    }
    Ok(())
}

/// The label query checked and lowercased.
fn label_needle(text: &str) -> Result<String> {
    if text.trim().is_empty() {
        return Err(Error::Invalid("empty label query".into()));
    }
    Ok(text.to_lowercase())
}

/// The words of a full-text query, at least one.
fn text_words(text: &str) -> Result<Vec<String>> {
    let w = words(text);
    if w.is_empty() {
        return Err(Error::Invalid(format!(
            "full-text query {text:?} has no words (letters or digits)"
        )));
    }
    // SQLite's full-text ranking costs grow with the square of the query's words: a few
    // thousand repeated words kept a server busy for minutes.
    if w.len() > MAX_TEXT_WORDS {
        return Err(Error::Invalid(format!(
            "full-text query has {} words; at most {MAX_TEXT_WORDS} are allowed",
            w.len()
        )));
    }
    Ok(w)
}

/// Words a full-text query may have.
pub const MAX_TEXT_WORDS: usize = 32;

fn token_score(by: TokenRank, firings: u64, occurrences: u64) -> f64 {
    match by {
        TokenRank::Precision => crate::store::fdict::precision(firings, occurrences),
        TokenRank::Firings => firings as f64,
    }
}

/// Sorts hits best first, ties by id.
fn rank(hits: &mut [Hit]) {
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_queries_and_rankings_that_do_not_apply_are_refused() {
        for kind in ["token", "pattern", "label", "text"] {
            let e = Query::new(kind, String::new(), None)
                .unwrap_err()
                .to_string();
            assert!(e.contains("empty") || e.contains("no words"), "{kind}: {e}");
        }
        // A space is a token (byte-level BPE has one); only the empty string is refused.
        assert!(Query::new("token", " ".into(), None).is_ok());
        for kind in ["label", "text"] {
            let e = Query::new(kind, "the".into(), Some(TokenRank::Firings))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("a ranking by firings applies only to token and pattern searches"),
                "{kind}: {e}"
            );
        }
        assert_eq!(
            Query::new("pattern", "^a".into(), Some(TokenRank::Firings)).unwrap(),
            Query::Pattern {
                pattern: "^a".into(),
                by: TokenRank::Firings
            }
        );
        assert_eq!(
            Query::new("token", "a".into(), None).unwrap(),
            Query::Token {
                token: "a".into(),
                by: TokenRank::Precision
            }
        );
        assert!(Query::new("regex", "a".into(), None).is_err());
    }
}
