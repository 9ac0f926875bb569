//! Search over an open `.fdict` through its indexes: `top_tokens` by token (in a dictionary
//! without per-token counts, `example_tokens`; in such a file written before that table
//! existed, the examples of every feature's body), the trigram index for label substrings,
//! FTS5 bm25 for full text. Ranks exactly as [`super::memory`].

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use rusqlite::params;

use super::memory::{example_hit, TokenMatch};
use super::{label_needle, rank, text_words, Found, Hit, Query, Search, TokenBasis, TokenRank};
use crate::error::Result;
use crate::store::fdict::FdictReader;

/// Label queries shorter than this (in characters) cannot use the trigram index and scan
/// the labeled features instead, best confidence first.
const TRIGRAM: usize = 3;

/// Labeled features a label search first scans in ranking order before it turns to the
/// trigram index (see [`label_search`]).
const SCAN_CAP: usize = 4000;

/// Label search in two steps, both exact. A feature ranks by the confidence of its best
/// label containing the text (ties: its first such label; then by id):
/// 1. scan the labels in ranking order (`labels_by_confidence`: confidence desc, feature id,
///    rank) and keep the first match of each feature — in ranking order, so once `limit`
///    features are found they are the answer. Common fragments finish here after a few rows;
///    the trigram index would have to rank every match instead.
/// 2. after `cap` rows without enough hits (a rare fragment), ask the trigram index for all
///    the features whose labels hold it and rank them; fragments under 3 characters cannot
///    use it and keep scanning.
fn label_search(r: &FdictReader, text: &str, limit: usize, cap: usize) -> Result<Vec<Hit>> {
    let needle = label_needle(text)?;
    let e = |err| r.err("search failed", err);
    let conn = r.connection();
    let use_index = text.chars().count() >= TRIGRAM;
    let mut hits: Vec<Hit> = Vec::new();
    let mut found = std::collections::HashSet::new();
    {
        let mut st = conn
            .prepare_cached(
                "SELECT feature_id, text, confidence FROM labels
                 ORDER BY confidence DESC, feature_id, rank",
            )
            .map_err(e)?;
        let mut rows = st.query([]).map_err(e)?;
        let mut seen = 0usize;
        while hits.len() < limit {
            if use_index && seen >= cap {
                break;
            }
            let Some(row) = rows.next().map_err(e)? else {
                return Ok(hits); // scanned everything: complete
            };
            seen += 1;
            let label: String = row.get(1).map_err(e)?;
            if !label.to_lowercase().contains(&needle) {
                continue;
            }
            let id = row.get::<_, i64>(0).map_err(e)? as u64;
            // Rows of one feature come in its best-first order: its first match is its hit.
            if !found.insert(id) {
                continue;
            }
            hits.push(Hit {
                id,
                score: row.get(2).map_err(e)?,
                matched: label,
                support: 0,
            });
        }
        if hits.len() >= limit {
            return Ok(hits);
        }
    }
    // Quoted as one FTS5 string: with the trigram tokenizer it matches the substring; the
    // check of each label makes the answer exact under Rust's case folding.
    let arg = format!("\"{}\"", text.replace('"', "\"\""));
    let candidates: Vec<i64> = conn
        .prepare_cached("SELECT rowid FROM labels_tri WHERE labels_tri MATCH ?1")
        .and_then(|mut st| st.query_map(params![arg], |r| r.get(0))?.collect())
        .map_err(e)?;
    let mut st = conn
        .prepare_cached("SELECT text, confidence FROM labels WHERE feature_id = ?1 ORDER BY rank")
        .map_err(e)?;
    let mut hits = Vec::new();
    for id in candidates {
        let labels: Vec<(String, f64)> = st
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(e)?;
        let best =
            super::best_matching_label(labels.iter().map(|(t, c)| (t.as_str(), *c)), &needle);
        if let Some((label, confidence)) = best {
            hits.push(Hit {
                id: id as u64,
                score: confidence,
                matched: label.to_string(),
                support: 0,
            });
        }
    }
    rank(&mut hits);
    hits.truncate(limit);
    Ok(hits)
}

impl Search for FdictReader {
    fn token_basis(&self) -> Result<TokenBasis> {
        Ok(TokenBasis::given_counts(self.has_token_counts()?))
    }

    fn find(&self, query: &Query, limit: usize) -> Result<Found> {
        let (hits, basis, by) = match query {
            Query::Token { token, .. } => {
                super::check_token(token)?;
                let (basis, by) = ranking(self, query)?;
                let hits = match basis {
                    TokenBasis::TopTokens => top_token_search(self, token, by, limit)?,
                    TokenBasis::Examples if has_example_tokens(self)? => {
                        example_token_search(self, token, limit)?
                    }
                    TokenBasis::Examples => {
                        scan_examples(self, &mut TokenMatch::Exact(token), limit)?
                    }
                };
                (hits, Some(basis), Some(by))
            }
            Query::Pattern { pattern, .. } => {
                let re = super::compile_pattern(pattern)?;
                let (basis, by) = ranking(self, query)?;
                let hits = match basis {
                    TokenBasis::TopTokens => top_pattern_search(self, &re, by, limit)?,
                    TokenBasis::Examples if has_example_tokens(self)? => {
                        example_pattern_search(self, &re, limit)?
                    }
                    TokenBasis::Examples => {
                        scan_examples(self, &mut TokenMatch::regex(&re), limit)?
                    }
                };
                (hits, Some(basis), Some(by))
            }
            Query::Label(text) => (label_search(self, text, limit, SCAN_CAP)?, None, None),
            Query::Text(text) => (text_search(self, text, limit)?, None, None),
        };
        Ok(Found { hits, basis, by })
    }
}

/// The basis of `r`'s token searches and the ranking `query` applies on it.
fn ranking(r: &FdictReader, query: &Query) -> Result<(TokenBasis, TokenRank)> {
    let basis = r.token_basis()?;
    let by = query
        .ranking(basis)?
        .expect("token and pattern searches have a ranking");
    Ok((basis, by))
}

/// `LIMIT` of a query returning `limit` rows.
fn sql_limit(limit: usize) -> i64 {
    limit.min(i64::MAX as usize) as i64
}

/// Token search over the `top_tokens` table.
fn top_token_search(r: &FdictReader, token: &str, by: TokenRank, limit: usize) -> Result<Vec<Hit>> {
    let e = |err| r.err("search failed", err);
    let sql = match by {
        TokenRank::Precision => {
            "SELECT t.feature_id, t.precision, t.firings FROM tokens k
             JOIN top_tokens t INDEXED BY top_tokens_by_precision ON t.token_id = k.id
             WHERE k.token = ?1 ORDER BY t.precision DESC, t.firings DESC, t.feature_id LIMIT ?2"
        }
        TokenRank::Firings => {
            "SELECT t.feature_id, t.firings, t.firings FROM tokens k
             JOIN top_tokens t INDEXED BY top_tokens_by_firings ON t.token_id = k.id
             WHERE k.token = ?1 ORDER BY t.firings DESC, t.feature_id LIMIT ?2"
        }
    };
    let mut st = r.connection().prepare_cached(sql).map_err(e)?;
    st.query_map(params![token, sql_limit(limit)], |row| {
        Ok(Hit {
            id: row.get::<_, i64>(0)? as u64,
            score: row.get(1)?,
            matched: token.to_string(),
            support: row.get::<_, i64>(2)? as u64,
        })
    })
    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
    .map_err(e)
}

/// Pattern search over the `top_tokens` table.
fn top_pattern_search(
    r: &FdictReader,
    re: &regex::Regex,
    by: TokenRank,
    limit: usize,
) -> Result<Vec<Hit>> {
    let per_token = match by {
        TokenRank::Precision => {
            "SELECT feature_id, precision, firings FROM top_tokens INDEXED BY top_tokens_by_precision
             WHERE token_id = ?1 ORDER BY precision DESC, firings DESC, feature_id LIMIT ?2"
        }
        TokenRank::Firings => {
            "SELECT feature_id, firings, firings FROM top_tokens INDEXED BY top_tokens_by_firings
             WHERE token_id = ?1 ORDER BY firings DESC, feature_id LIMIT ?2"
        }
    };
    pattern_union(r, re, "SELECT id, token FROM tokens", per_token, limit)
}

/// Pattern search through per-token ranked lists: `tokens` lists `(key, token)` of every
/// token, and `per_token` the best `?2` `(feature_id, score, support)` of the token keyed
/// `?1`. A feature in the overall top `limit` (by its best matching token) is in the top
/// `limit` of that token's list, so the union of the matching tokens' lists holds the answer.
fn pattern_union(
    r: &FdictReader,
    re: &regex::Regex,
    tokens: &str,
    per_token: &str,
    limit: usize,
) -> Result<Vec<Hit>> {
    let e = |err| r.err("search failed", err);
    let conn = r.connection();
    let mut matching: Vec<(rusqlite::types::Value, String)> = Vec::new();
    {
        let mut st = conn.prepare_cached(tokens).map_err(e)?;
        let mut rows = st.query([]).map_err(e)?;
        while let Some(row) = rows.next().map_err(e)? {
            let t: String = row.get(1).map_err(e)?;
            if re.is_match(&t) {
                matching.push((row.get(0).map_err(e)?, t));
            }
        }
    }
    let mut st = conn.prepare_cached(per_token).map_err(e)?;
    let mut best = BestTokens::new();
    for (key, token) in &matching {
        let mut rows = st.query(params![key, sql_limit(limit)]).map_err(e)?;
        while let Some(row) = rows.next().map_err(e)? {
            let id = row.get::<_, i64>(0).map_err(e)? as u64;
            let s: f64 = row.get(1).map_err(e)?;
            let support = row.get::<_, i64>(2).map_err(e)? as u64;
            keep_best(&mut best, id, (s, support), token);
        }
    }
    Ok(ranked_best(best, limit))
}

/// Each feature's best matching token so far: `(score, support, token)`.
type BestTokens = HashMap<u64, (f64, u64, String)>;

/// Notes that feature `id` matches `token` with `(score, support)`; a feature keeps its best
/// token as [`super::better_token`] orders them.
fn keep_best(best: &mut BestTokens, id: u64, (score, support): (f64, u64), token: &str) {
    match best.entry(id) {
        Entry::Vacant(v) => {
            v.insert((score, support, token.to_string()));
        }
        Entry::Occupied(mut o) => {
            let (s, n, t) = o.get();
            if super::better_token((score, support, token), (*s, *n, t)) {
                o.insert((score, support, token.to_string()));
            }
        }
    }
}

/// The first `limit` features by their best token's score (ties as [`super::rank`] breaks them).
fn ranked_best(best: BestTokens, limit: usize) -> Vec<Hit> {
    let mut hits: Vec<Hit> = best
        .into_iter()
        .map(|(id, (score, support, matched))| Hit {
            id,
            score,
            matched,
            support,
        })
        .collect();
    rank(&mut hits);
    hits.truncate(limit);
    hits
}

/// Whether the file holds the `example_tokens` table (files written before it existed do
/// not).
fn has_example_tokens(r: &FdictReader) -> Result<bool> {
    r.connection()
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'example_tokens')",
        )
        .and_then(|mut st| st.query_row([], |row| row.get(0)))
        .map_err(|e| r.err("search failed", e))
}

/// The ranked list of one token in `example_tokens`.
const EXAMPLE_TOKEN_LIST: &str = "SELECT feature_id, examples, 0 FROM example_tokens
     INDEXED BY example_tokens_by_examples
     WHERE token = ?1 ORDER BY examples DESC, feature_id LIMIT ?2";

/// Token search over the `example_tokens` table.
fn example_token_search(r: &FdictReader, token: &str, limit: usize) -> Result<Vec<Hit>> {
    let e = |err| r.err("search failed", err);
    let mut st = r
        .connection()
        .prepare_cached(EXAMPLE_TOKEN_LIST)
        .map_err(e)?;
    st.query_map(params![token, sql_limit(limit)], |row| {
        Ok(Hit {
            id: row.get::<_, i64>(0)? as u64,
            score: row.get::<_, i64>(1)? as f64,
            matched: token.to_string(),
            support: 0,
        })
    })
    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
    .map_err(e)
}

/// Matching example tokens up to which a pattern search asks each one's ranked list; past
/// it, one pass over the table is faster (`featdict search --pattern . -n 1000` over
/// 30,000 features with 240,000 distinct example tokens: 2.1 s one query per token,
/// 0.21–0.25 s in one pass, the same hits).
const EXAMPLE_TOKENS_QUERIED_ONE_BY_ONE: usize = 32;

/// Pattern search over the `example_tokens` table.
fn example_pattern_search(r: &FdictReader, re: &regex::Regex, limit: usize) -> Result<Vec<Hit>> {
    const DISTINCT: &str =
        "SELECT DISTINCT token, token FROM example_tokens INDEXED BY example_tokens_by_examples";
    let e = |err| r.err("search failed", err);
    let mut matching: std::collections::HashSet<String> = std::collections::HashSet::new();
    {
        let mut st = r.connection().prepare_cached(DISTINCT).map_err(e)?;
        let mut rows = st.query([]).map_err(e)?;
        while let Some(row) = rows.next().map_err(e)? {
            let t: String = row.get(0).map_err(e)?;
            if re.is_match(&t) {
                matching.insert(t);
            }
        }
    }
    if matching.len() <= EXAMPLE_TOKENS_QUERIED_ONE_BY_ONE {
        return pattern_union(r, re, DISTINCT, EXAMPLE_TOKEN_LIST, limit);
    }
    // Each feature's best matching token, as `pattern_union` keeps it.
    let mut best = BestTokens::new();
    let mut st = r
        .connection()
        .prepare_cached("SELECT token, feature_id, examples FROM example_tokens")
        .map_err(e)?;
    let mut rows = st.query([]).map_err(e)?;
    while let Some(row) = rows.next().map_err(e)? {
        let token = row.get_ref(0).map_err(e)?.as_str().map_err(|err| {
            r.err(
                "search failed",
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    Box::new(err),
                ),
            )
        })?;
        if !matching.contains(token) {
            continue;
        }
        let id = row.get::<_, i64>(1).map_err(e)? as u64;
        let score = row.get::<_, i64>(2).map_err(e)? as f64;
        keep_best(&mut best, id, (score, 0), token);
    }
    Ok(ranked_best(best, limit))
}

/// Token or pattern search on the [`TokenBasis::Examples`] basis in a file written before
/// `example_tokens` existed, whose examples are in the features' bodies only: every feature
/// is read and scored as the in-memory search scores it.
fn scan_examples(r: &FdictReader, m: &mut TokenMatch<'_>, limit: usize) -> Result<Vec<Hit>> {
    let mut hits = Vec::new();
    r.for_each_feature(|f| {
        hits.extend(example_hit(f, m));
        Ok(())
    })?;
    rank(&mut hits);
    hits.truncate(limit);
    Ok(hits)
}

/// Full-text search through FTS5.
fn text_search(r: &FdictReader, text: &str, limit: usize) -> Result<Vec<Hit>> {
    let words = text_words(text)?;
    fts_hits(r.connection(), &words, limit).map_err(|err| r.err("search failed", err))
}

/// The rows of table `fts` (an FTS5 table of the `.fdict` layout) holding every one of
/// `words`, by bm25, at most `limit`.
pub(super) fn fts_hits(
    conn: &rusqlite::Connection,
    words: &[String],
    limit: usize,
) -> rusqlite::Result<Vec<Hit>> {
    // Each word quoted: FTS5 splits and folds it as it split and folded the rows.
    let arg = words
        .iter()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut st = conn.prepare_cached(
        "SELECT rowid, -bm25(fts) AS s FROM fts WHERE fts MATCH ?1
         ORDER BY bm25(fts), rowid LIMIT ?2",
    )?;
    let rows = st.query_map(params![arg, sql_limit(limit)], |row| {
        Ok(Hit {
            id: row.get::<_, i64>(0)? as u64,
            score: row.get(1)?,
            matched: String::new(),
            support: 0,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::synthetic::{self, Spec};

    /// Both steps of the label search (ranked scan, trigram index) give the in-memory answer.
    #[test]
    fn label_search_steps_agree_with_memory() {
        let dir = tempfile::tempdir().unwrap();
        let spec = Spec {
            n_features: 300,
            vocab_words: 50,
            ..Default::default()
        };
        let dict = synthetic::dictionary(&spec);
        let path = dir.path().join("s.fdict");
        crate::store::save(&dict, &path).unwrap();
        let r = FdictReader::open(&path).unwrap();
        for q in ["TOKEN:", "ka", "ngram:lo", "<script>", "absent", "a", "ilo"] {
            for limit in [1, 3, 20, 500] {
                let want = dict.search(&Query::Label(q.into()), limit).unwrap();
                for cap in [0, 5, 50, usize::MAX] {
                    let got = label_search(&r, q, limit, cap).unwrap();
                    assert_eq!(got, want, "{q:?} limit {limit} cap {cap}");
                }
            }
        }
    }
}
