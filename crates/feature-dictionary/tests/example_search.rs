//! Token and pattern search in dictionaries without per-token counts (files of the original
//! library): features are found among the firing tokens of their stored examples, ranked by
//! how many of those examples fire on the token, the same in memory and in a `.fdict`, and
//! the basis is reported. The fixture's planted counts are listed in
//! `tests/fixtures/original/README.md`.

mod common;

use std::path::{Path, PathBuf};

use feature_dictionary::model::{
    ActivationMetadata, DictionaryConfig, Feature, FeatureActivation, FeatureSet, TokenCount,
};
use feature_dictionary::query::{Found, Query, Search, TokenBasis, TokenRank};
use feature_dictionary::store::{self, fdict::FdictReader};
use feature_dictionary::{Error, FeatureDictionary};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/original/no_token_counts.json")
}

/// The fixture loaded, and converted to a `.fdict` as `featdict import` does; the second
/// `.fdict` lacks the `example_tokens` table, as files written before it existed.
fn both() -> (tempfile::TempDir, FeatureDictionary, [FdictReader; 2]) {
    let dict = store::load(&fixture()).unwrap();
    assert!(dict.features().all(|f| f.metadata.top_tokens.is_empty()));
    let dir = tempfile::tempdir().unwrap();
    let readers = common::fdict_with_and_without_example_tokens(&dict, dir.path(), "orig.fdict");
    (dir, dict, readers)
}

fn token(t: &str, by: Option<TokenRank>) -> Query {
    Query::Token {
        token: t.into(),
        by,
    }
}

fn pattern(p: &str, by: Option<TokenRank>) -> Query {
    Query::Pattern {
        pattern: p.into(),
        by,
    }
}

/// `(id, score, matched)` of each hit.
type Rows = Vec<(u64, f64, String)>;

fn rows(found: &Found) -> Rows {
    found
        .hits
        .iter()
        .map(|h| (h.id, h.score, h.matched.clone()))
        .collect()
}

fn want(rows: &[(u64, f64, &str)]) -> Rows {
    rows.iter()
        .map(|&(id, s, m)| (id, s, m.to_string()))
        .collect()
}

/// The planted rankings, by token and by regex, with ties to the smaller id (and between a
/// feature's tokens, to the smaller token), identical in memory and through SQL, with the
/// basis and the ranking applied reported.
#[test]
fn an_original_library_file_is_searched_by_its_examples_tokens() {
    let (_dir, dict, readers) = both();
    let cases: Vec<(Query, Rows)> = vec![
        (
            token(" the", None),
            want(&[
                (3, 2.0, " the"),
                (8, 2.0, " the"),
                (2, 1.0, " the"),
                (5, 1.0, " the"),
            ]),
        ),
        (
            token(" dog", Some(TokenRank::Firings)),
            want(&[(5, 3.0, " dog"), (8, 2.0, " dog")]),
        ),
        // Tokens are exact, as over top tokens: the leading space and the case matter.
        (token("the", None), want(&[])),
        (token("The", None), want(&[(2, 1.0, "The")])),
        (
            pattern("^ ca", None),
            want(&[(12, 2.0, " cathedral"), (3, 1.0, " cat")]),
        ),
        (
            pattern("^ (dog|the)$", Some(TokenRank::Firings)),
            want(&[
                (5, 3.0, " dog"),
                (3, 2.0, " the"),
                (8, 2.0, " dog"),
                (2, 1.0, " the"),
            ]),
        ),
        // Unanchored, as over top tokens.
        (
            pattern("he", None),
            want(&[
                (3, 2.0, " the"),
                (8, 2.0, " the"),
                (12, 2.0, " cathedral"),
                (2, 1.0, " the"),
                (5, 1.0, " the"),
            ]),
        ),
    ];
    let searches: [(&str, &dyn Search); 3] = [
        ("memory", &dict),
        ("sql", &readers[0]),
        ("sql without example_tokens", &readers[1]),
    ];
    for (name, s) in searches {
        assert_eq!(s.token_basis().unwrap(), TokenBasis::Examples, "{name}");
        for (q, expected) in &cases {
            for limit in [1, 2, 3, 100] {
                let found = s.find(q, limit).unwrap();
                let cut: Vec<_> = expected.iter().take(limit).cloned().collect();
                assert_eq!(rows(&found), cut, "{name}: {q:?} limit {limit}");
                assert_eq!(found.basis, Some(TokenBasis::Examples), "{name}: {q:?}");
                assert_eq!(found.by, Some(TokenRank::Firings), "{name}: {q:?}");
            }
        }
    }
    // The converted file holds each feature's example-token counts (two tokens each for
    // features 2, 3, 5, 8 and 12).
    let rows_in = |r: &FdictReader| -> i64 {
        r.connection()
            .query_row("SELECT count(*) FROM example_tokens", [], |row| row.get(0))
            .unwrap()
    };
    assert_eq!(rows_in(&readers[0]), 10);
    // Label and full-text searches have no token basis.
    let found = readers[0].find(&Query::Label("token:".into()), 10).unwrap();
    assert_eq!((found.basis, found.by), (None, None));
    assert_eq!(
        found.hits.iter().map(|h| h.id).collect::<Vec<_>>(),
        [5, 3, 2]
    );
}

/// Precision is firings over the token's occurrences among all tokens, which such a file does
/// not hold: asked for, it is refused (in memory and through SQL), not replaced by counts.
#[test]
fn precision_over_examples_is_refused() {
    let (_dir, dict, [r, old]) = both();
    for q in [
        token(" the", Some(TokenRank::Precision)),
        pattern("^ the$", Some(TokenRank::Precision)),
    ] {
        let errors = [&dict as &dyn Search, &r, &old].map(|s| s.find(&q, 5).unwrap_err());
        for e in errors {
            let Error::Invalid(m) = e else {
                panic!("{q:?}: {e}")
            };
            assert!(m.starts_with("a ranking by precision needs"), "{m}");
            assert!(m.contains("no per-token counts"), "{m}");
        }
    }
    // Checked before anything is read: a bad regex is still named as such.
    let e = r
        .find(&pattern("(", Some(TokenRank::Precision)), 5)
        .unwrap_err();
    assert!(e.to_string().contains("invalid regex"), "{e}");
}

/// One example each: firing token `token` at `position` of sequence `sequence`.
fn example(id: u64, token: &str, sequence: Option<u64>, position: u32) -> FeatureActivation {
    FeatureActivation {
        feature_id: id,
        token: token.into(),
        position,
        activation: 1.0,
        context: String::new(),
        context_tokens: Vec::new(),
        metadata: ActivationMetadata {
            sequence,
            ..Default::default()
        },
    }
}

fn dictionary(features: Vec<Feature>) -> FeatureDictionary {
    let set = FeatureSet {
        layer: 0,
        features: features.into_iter().map(|f| (f.id, f)).collect(),
        total_tokens_processed: 100,
        model_name: "m".into(),
        sae_name: "s".into(),
        metadata: Default::default(),
    };
    FeatureDictionary::new(DictionaryConfig::default(), set)
}

/// Quantile samples count too, each firing once: a sample that repeats a top example (same
/// sequence and position) is not counted again; examples naming no sequence each count.
#[test]
fn samples_count_once_per_firing() {
    use feature_dictionary::model::QuantileGroup;
    let mut a = Feature::new(0, 4);
    a.top_activations = vec![example(0, " x", Some(1), 4), example(0, " y", Some(2), 4)];
    a.metadata.quantile_examples = vec![QuantileGroup {
        min_activation: 0.0,
        max_activation: 1.0,
        count: 10,
        examples: vec![
            example(0, " x", Some(1), 4), // the top example again
            example(0, " y", Some(2), 5),
            example(0, " y", Some(3), 4),
        ],
    }];
    let mut b = Feature::new(1, 4);
    b.top_activations = vec![example(1, " x", None, 4), example(1, " x", None, 4)];
    let dict = dictionary(vec![a, b]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.fdict");
    store::save(&dict, &path).unwrap();
    let r = FdictReader::open(&path).unwrap();
    for q in [token(" x", None), pattern("x", None)] {
        let want = want(&[(1, 2.0, " x"), (0, 1.0, " x")]);
        assert_eq!(rows(&dict.find(&q, 10).unwrap()), want, "{q:?}");
        assert_eq!(rows(&r.find(&q, 10).unwrap()), want, "{q:?}");
    }
    let want = want(&[(0, 3.0, " y")]);
    assert_eq!(rows(&dict.find(&token(" y", None), 10).unwrap()), want);
    assert_eq!(rows(&r.find(&token(" y", None), 10).unwrap()), want);
}

/// A dictionary with per-token counts is searched by them alone, as before: a feature
/// without counts is not found through its examples (the two bases are never mixed), and
/// precision is the default.
#[test]
fn counts_anywhere_mean_no_example_search() {
    let mut a = Feature::new(0, 4);
    a.activation_count = 3;
    a.top_activations = vec![example(0, " a", Some(0), 1)];
    a.metadata.top_tokens = vec![TokenCount {
        token: " a".into(),
        firings: 3,
        occurrences: 12,
    }];
    let mut b = Feature::new(1, 4);
    b.activation_count = 1;
    b.top_activations = vec![example(1, " b", Some(0), 2), example(1, " a", Some(0), 1)];
    let dict = dictionary(vec![a, b]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.fdict");
    store::save(&dict, &path).unwrap();
    let r = FdictReader::open(&path).unwrap();
    for s in [&dict as &dyn Search, &r] {
        assert_eq!(s.token_basis().unwrap(), TokenBasis::TopTokens);
        let found = s.find(&token(" b", None), 10).unwrap();
        assert!(found.hits.is_empty());
        assert_eq!(found.basis, Some(TokenBasis::TopTokens));
        let found = s.find(&token(" a", None), 10).unwrap();
        assert_eq!(rows(&found), want(&[(0, 0.25, " a")]));
        assert_eq!(found.by, Some(TokenRank::Precision));
        let found = s.find(&pattern(".", Some(TokenRank::Firings)), 10).unwrap();
        assert_eq!(rows(&found), want(&[(0, 3.0, " a")]));
    }
}

/// A file written before `example_tokens` existed gets the table added once (as the server
/// does when it opens one), filled as the writer fills it: the same rows as a new file,
/// and the same answers.
#[test]
fn an_older_file_gets_the_example_token_table_added() {
    let (dir, _dict, [new, old]) = both();
    drop(old);
    let old_path = dir.path().join("old.fdict");
    let mut rw = FdictReader::open_rw(&old_path).unwrap();
    assert_eq!(rw.add_example_tokens().unwrap(), Some(5));
    assert_eq!(rw.add_example_tokens().unwrap(), None);
    drop(rw);
    let upgraded = FdictReader::open(&old_path).unwrap();
    let table = |r: &FdictReader| -> Vec<(String, i64, i64)> {
        let mut st = r
            .connection()
            .prepare(
                "SELECT token, feature_id, examples FROM example_tokens ORDER BY feature_id, token",
            )
            .unwrap();
        st.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(table(&upgraded), table(&new));
    let indexed: bool = upgraded
        .connection()
        .query_row(
            "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'example_tokens_by_examples')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(indexed);
    for q in [token(" the", None), pattern("^ (dog|the)$", None)] {
        assert_eq!(
            rows(&upgraded.find(&q, 100).unwrap()),
            rows(&new.find(&q, 100).unwrap())
        );
    }
    // A file whose searches use per-token counts needs no table: nothing is written.
    let counted = dir.path().join("counted.fdict");
    let mut f = Feature::new(0, 4);
    f.activation_count = 1;
    f.metadata.top_tokens = vec![TokenCount {
        token: "a".into(),
        firings: 1,
        occurrences: 1,
    }];
    f.top_activations = vec![example(0, "a", Some(0), 0)];
    store::save(&dictionary(vec![f]), &counted).unwrap();
    let mut rw = FdictReader::open_rw(&counted).unwrap();
    rw.connection()
        .execute_batch("DROP TABLE example_tokens")
        .unwrap();
    assert_eq!(rw.add_example_tokens().unwrap(), None);
}

/// A build of ours whose token tables all ended empty (a tiny `--token-capacity` over many
/// distinct tokens) still counted tokens: its corpus counts are stored, so it is searched
/// by top tokens (finding nothing, honestly) and not taken for a file of the original
/// library, in memory and through SQL.
#[test]
fn corpus_token_counts_mean_a_build_that_counted() {
    let mut a = Feature::new(0, 4);
    a.activation_count = 2;
    a.top_activations = vec![example(0, " a", Some(0), 1)];
    let mut dict = dictionary(vec![a]);
    dict.feature_set.metadata.token_counts = vec![(" a".into(), 3), (" b".into(), 1)];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.fdict");
    store::save(&dict, &path).unwrap();
    let r = FdictReader::open(&path).unwrap();
    for (name, s) in [("memory", &dict as &dyn Search), ("sql", &r)] {
        assert_eq!(s.token_basis().unwrap(), TokenBasis::TopTokens, "{name}");
        let found = s.find(&token(" a", None), 10).unwrap();
        assert_eq!(rows(&found), want(&[]), "{name}");
        assert_eq!(
            (found.basis, found.by),
            (Some(TokenBasis::TopTokens), Some(TokenRank::Precision)),
            "{name}"
        );
    }
    // Without the corpus counts the same dictionary is searched by its examples.
    dict.feature_set.metadata.token_counts.clear();
    assert_eq!(dict.token_basis().unwrap(), TokenBasis::Examples);
}

/// Beside a precision, a hit carries the firings behind it (its support): a token seen once
/// and fired on once has the precision of one fired on at each of its 40 occurrences. The
/// same in memory and through SQL. Ties of precision go to the larger support (40 of 40
/// before 1 of 1), between features and between a feature's tokens.
#[test]
fn hits_carry_the_firings_behind_their_precision() {
    let counted = |id: u64, tokens: &[(&str, u64, u64)]| {
        let mut f = Feature::new(id, 4);
        f.activation_count = tokens.iter().map(|t| t.1).sum();
        f.metadata.top_tokens = tokens
            .iter()
            .map(|&(t, firings, occurrences)| TokenCount {
                token: t.into(),
                firings,
                occurrences,
            })
            .collect();
        f
    };
    let dict = dictionary(vec![
        counted(0, &[(" once", 1, 1)]),
        counted(1, &[(" then", 40, 40)]),
        counted(2, &[(" they", 7, 7), (" the", 3, 3)]),
        counted(3, &[(" thx", 2, 4)]),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.fdict");
    store::save(&dict, &path).unwrap();
    let r = FdictReader::open(&path).unwrap();
    for s in [&dict as &dyn Search, &r] {
        let found = s.find(&pattern("^ (th|on)", None), 10).unwrap();
        assert_eq!(
            rows(&found),
            want(&[
                (1, 1.0, " then"),
                (2, 1.0, " they"),
                (0, 1.0, " once"),
                (3, 0.5, " thx")
            ])
        );
        assert_eq!(
            found.hits.iter().map(|h| h.support).collect::<Vec<_>>(),
            vec![40, 7, 1, 2]
        );
        let found = s.find(&token(" thx", None), 10).unwrap();
        assert_eq!(found.hits[0].support, 2);
        let found = s
            .find(&pattern("^ th", Some(TokenRank::Firings)), 10)
            .unwrap();
        assert_eq!(
            found
                .hits
                .iter()
                .map(|h| (h.id, h.score, h.support))
                .collect::<Vec<_>>(),
            vec![(1, 40.0, 40), (2, 7.0, 7), (3, 2.0, 2)]
        );
    }
}
