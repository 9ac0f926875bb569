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
