//! Query: search a dictionary by token, label, regex over tokens or full text.
//!
//! One [`Search`] trait with two implementations that rank identically:
//! - [`memory`]: over a loaded [`crate::FeatureDictionary`] (a linear scan per query);
//! - [`sql`]: over an open [`crate::store::fdict::FdictReader`] (indexes and FTS5), for
//!   dictionaries too large to load.
//!
//! Rankings (ties go to the larger support — the firings on the matched token, so a
//! precision of 500/500 ranks above one of 3/3 — then to the smaller feature id):
//! - [`Query::Token`]: features whose `top_tokens` hold the token exactly, by that token's
//!   precision (firings / occurrences, the default) or firings.
//! - [`Query::Pattern`]: features with a top token matching a regex (unanchored; use `^…$`
//!   for whole tokens), by the best matching token's precision or firings (ties between
//!   tokens to the one fired on more, then to the lexicographically smaller token, which is
//!   reported as `matched`).
//! - [`Query::Label`]: features with a label containing the text, case-insensitively, by the
//!   confidence of that label (of the feature's best such label; a bare label text of the
//!   original library's files has the feature's confidence), reported as `matched`.
//! - [`Query::Text`]: full text over labels, description and the top 20 tokens; every word
//!   must occur (words are runs of letters, digits and combining marks, folded by SQLite's
//!   FTS5 `unicode61` tokenizer: case, and the diacritics of Latin letters); ranked by bm25
//!   (k1 = 1.2, b = 0.75, the whole row as one document), reported as `score = -bm25` so that
//!   higher is better. A loaded dictionary is searched through an in-memory FTS5 table of
//!   the same rows, so both give the same hits.
//!
//! # Dictionaries without per-token counts
//! Files of the original library store no `top_tokens` (nor corpus token counts). When no
//! feature of a dictionary has any, token and pattern searches fall back to the
//! [`TokenBasis::Examples`] basis: the firing tokens of each feature's stored examples (top
//! examples and quantile samples, each firing counted once, see [`example_token_counts`]),
//! matched exactly as above. A feature is scored by how many of its stored examples fire on
//! the token (for a pattern, on its best matching token), which is the `firings` ranking and
//! the default there. Precision needs the token's occurrences among all tokens processed,
//! which such a file does not hold, so asking for it is refused ([`Query::ranking`]) rather
//! than answered with counts. A feature may fire on a token none of its stored examples
//! shows: such a search can miss it, and says so — [`Search::find`] reports the basis, which
//! the CLI and the server show ([`TokenBasis::note`]). The basis is the whole dictionary's:
//! one with per-token counts is searched by them alone, exactly as before.

pub mod memory;
pub mod sql;
pub mod synthetic;

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{FeatureActivation, FeatureMetadata};

/// What a token or pattern search ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRank {
    /// Firings on the token / occurrences of the token.
    #[default]
    Precision,
    /// Firings on the token (on the [`TokenBasis::Examples`] basis: the stored examples
    /// firing on it).
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

/// Where a dictionary's token and pattern searches find the tokens a feature fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenBasis {
    /// The per-token firing counts over every token processed (`metadata.top_tokens`).
    TopTokens,
    /// The firing tokens of the stored examples: the dictionary holds no per-token counts
    /// at all (no feature has `top_tokens`, as in files of the original library), so this
    /// is all it can tell about which tokens a feature fires on. A feature is found only
    /// when one of its stored examples fires on the token.
    Examples,
}

impl TokenBasis {
    /// The name it is reported by: `top_tokens` or `examples`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenBasis::TopTokens => "top_tokens",
            TokenBasis::Examples => "examples",
        }
    }

    /// The basis of a dictionary built counting the tokens its features fire on (`true`:
    /// some feature has top tokens, or the corpus token counts are stored) or not (`false`:
    /// a file of the original library). The whole dictionary has one basis: a feature
    /// without top tokens in a dictionary built with counts lost them (it never fired, or
    /// its table held none at the end), and ranking some features by examples and others by
    /// counts would compare scores that mean different things.
    pub fn given_counts(token_counts: bool) -> TokenBasis {
        if token_counts {
            TokenBasis::TopTokens
        } else {
            TokenBasis::Examples
        }
    }

    /// What a reader should be told about hits found on this basis (`None` for
    /// [`TokenBasis::TopTokens`], the ordinary case): the CLI and the server show the same
    /// words.
    pub fn note(self) -> Option<&'static str> {
        match self {
            TokenBasis::TopTokens => None,
            TokenBasis::Examples => Some(EXAMPLES_NOTE),
        }
    }
}

/// The note for token and pattern search hits of which `approximate` have per-token counts
/// that are lower bounds (their token sketch overflowed), `None` when none has.
pub fn lower_bounds_note(basis: Option<TokenBasis>, approximate: usize) -> Option<String> {
    (basis == Some(TokenBasis::TopTokens) && approximate > 0).then(|| {
        format!(
            "{} fired on more distinct tokens than the build's --token-capacity: {} token counts are lower bounds, so {} firings and precision here can be underestimated",
            crate::count_of(approximate as u64, "feature shown", "features shown"),
            if approximate == 1 { "its" } else { "their" },
            if approximate == 1 { "its" } else { "their" },
        )
    })
}

/// See [`TokenBasis::note`].
const EXAMPLES_NOTE: &str = "this dictionary holds no per-token counts (as files of the original library): token and regex searches look only at the firing tokens of its stored examples, not at every token the features fired on, and rank by how many of those examples fire on the token";

/// A search.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// Features firing on this exact token.
    Token {
        /// The token as stored (byte-level BPE tokens carry their leading space).
        token: String,
        /// Ranking; `None` for the dictionary's default (see [`Query::ranking`]).
        by: Option<TokenRank>,
    },
    /// Case-insensitive substring of a label.
    Label(String),
    /// Regex over the tokens features fire on.
    Pattern {
        /// Regex (Rust `regex` syntax).
        pattern: String,
        /// Ranking; `None` for the dictionary's default (see [`Query::ranking`]).
        by: Option<TokenRank>,
    },
    /// Full text over labels, descriptions and top tokens.
    Text(String),
}

impl Query {
    /// The search of `kind` (`token`, `label`, `pattern` or `text`) for `value`, ranked `by`
    /// (token and pattern searches; the dictionary's default when `None`, see
    /// [`Query::ranking`]), as the CLI and the server take it. Refused: an empty value (an empty token is no token, and matches nothing: "no
    /// match" would read as an answer), and a ranking for a label or text search, which rank
    /// by confidence and bm25 whatever it says.
    pub fn new(kind: &str, value: String, by: Option<TokenRank>) -> Result<Query> {
        let query = match kind {
            "token" => {
                check_token(&value)?;
                Query::Token { token: value, by }
            }
            "pattern" => {
                if value.is_empty() {
                    return Err(Error::Invalid("empty pattern".into()));
                }
                Query::Pattern { pattern: value, by }
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
                Query::Label(_) => "by the confidence of the matching label",
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

    /// The ranking a token or pattern search applies on a dictionary of `basis` (`None` for
    /// a label or text search): the one asked for, else precision over top tokens and
    /// firings over examples. Precision asked for over examples is refused: it needs the
    /// token's occurrences among all tokens processed, which such a dictionary does not
    /// hold, and counts given instead would pass for fractions.
    pub fn ranking(&self, basis: TokenBasis) -> Result<Option<TokenRank>> {
        let (Query::Token { by, .. } | Query::Pattern { by, .. }) = self else {
            return Ok(None);
        };
        match (basis, by) {
            (TokenBasis::Examples, Some(TokenRank::Precision)) => Err(Error::Invalid(
                "a ranking by precision needs each token's occurrences among all tokens processed, which this dictionary does not hold: it has no per-token counts (as files of the original library), so token and regex searches look at the firing tokens of its stored examples and rank by how many of them fire on the token; ask for firings, or for no ranking".into(),
            )),
            (_, Some(by)) => Ok(Some(*by)),
            (TokenBasis::TopTokens, None) => Ok(Some(TokenRank::Precision)),
            (TokenBasis::Examples, None) => Ok(Some(TokenRank::Firings)),
        }
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
    /// Firings on the matched token (token and pattern searches over per-token counts; 0
    /// otherwise), shown beside a precision: a token seen once and fired on once has the
    /// precision of one fired on at each of its 3,000 occurrences.
    #[serde(default)]
    pub support: u64,
}

/// The hits of a search, with how a token or pattern search found and ranked them.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The best hits, best first.
    pub hits: Vec<Hit>,
    /// Where a token or pattern search looked (`None` for label and text searches).
    pub basis: Option<TokenBasis>,
    /// The ranking a token or pattern search applied (`None` for label and text searches).
    pub by: Option<TokenRank>,
}

/// Searching a dictionary.
pub trait Search {
    /// Where this dictionary's token and pattern searches look: [`TokenBasis::Examples`]
    /// when no feature has per-token counts, else [`TokenBasis::TopTokens`].
    fn token_basis(&self) -> Result<TokenBasis>;

    /// The best `limit` hits for `query`, best first, with the basis and ranking of a token
    /// or pattern search. Bad queries (empty text, invalid regex, a ranking by precision
    /// over examples) give [`Error::Invalid`].
    fn find(&self, query: &Query, limit: usize) -> Result<Found>;

    /// The hits of [`Search::find`] alone.
    fn search(&self, query: &Query, limit: usize) -> Result<Vec<Hit>> {
        self.find(query, limit).map(|f| f.hits)
    }
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

/// Words of a query: runs of letters, digits and combining marks (a decomposed "e\u{301}" is
/// one letter), lowercased. Each is matched as FTS5's `unicode61` tokenizer splits and folds
/// it, which also removes the diacritics of Latin letters ("café" finds "cafe").
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || is_combining_mark(c)))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The combining diacritical mark blocks (which Rust's `char` classes do not cover).
fn is_combining_mark(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'
            | '\u{1AB0}'..='\u{1AFF}'
            | '\u{1DC0}'..='\u{1DFF}'
            | '\u{20D0}'..='\u{20FF}'
            | '\u{FE20}'..='\u{FE2F}')
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

/// How many of a feature's stored examples (its top examples, then its quantile samples)
/// fire on each token, sorted by token: the counts [`TokenBasis::Examples`] searches rank by.
/// Each firing counts once: examples naming the same sequence and position (a sample that
/// is also a top example) are one; examples naming no sequence (the original library's)
/// cannot be told apart and each count.
pub fn example_token_counts<'a>(
    top: &'a [FeatureActivation],
    metadata: &'a FeatureMetadata,
) -> Vec<(&'a str, u64)> {
    let samples = metadata.quantile_examples.iter().flat_map(|g| &g.examples);
    let mut seen: HashSet<(u64, u32)> = HashSet::new();
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for a in top.iter().chain(samples) {
        if let Some(sequence) = a.metadata.sequence {
            if !seen.insert((sequence, a.position)) {
                continue;
            }
        }
        *counts.entry(a.token.as_str()).or_default() += 1;
    }
    counts.into_iter().collect()
}

fn token_score(by: TokenRank, firings: u64, occurrences: u64) -> f64 {
    match by {
        TokenRank::Precision => crate::store::fdict::precision(firings, occurrences),
        TokenRank::Firings => firings as f64,
    }
}

/// The label a label search ranks a feature by: of its `labels` (text and confidence, in
/// the feature's order) those containing `needle` (lowercase), the one of highest
/// confidence, the first of those on ties.
fn best_matching_label<'a>(
    labels: impl Iterator<Item = (&'a str, f64)>,
    needle: &str,
) -> Option<(&'a str, f64)> {
    labels
        .filter(|(text, _)| text.to_lowercase().contains(needle))
        .fold(None, |best, (text, c)| match best {
            Some((_, b)) if b >= c => best,
            _ => Some((text, c)),
        })
}

/// Sorts hits best first, ties to the larger support, then the smaller id.
fn rank(hits: &mut [Hit]) {
    hits.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.support.cmp(&a.support))
            .then(a.id.cmp(&b.id))
    });
}

/// Whether a feature's matching token scored `(score, support)` beats its best so far
/// `(best_score, best_support)`: the higher score, then the larger support, then the
/// lexicographically smaller token.
fn better_token(
    (score, support, token): (f64, u64, &str),
    (best_score, best_support, best_token): (f64, u64, &str),
) -> bool {
    score
        .total_cmp(&best_score)
        .then(support.cmp(&best_support))
        .then(best_token.cmp(token))
        .is_gt()
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
                by: Some(TokenRank::Firings)
            }
        );
        assert_eq!(
            Query::new("token", "a".into(), None).unwrap(),
            Query::Token {
                token: "a".into(),
                by: None
            }
        );
        assert!(Query::new("regex", "a".into(), None).is_err());
    }
}
