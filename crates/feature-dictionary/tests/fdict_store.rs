//! The native `.fdict` store: lossless round trips, the reader API, manual labels, search
//! equivalence between SQL and memory, bad input, and the Neuronpedia export.

mod common;

use std::path::{Path, PathBuf};

use feature_dictionary::model::{DictionaryConfig, LabelingStrategy};
use feature_dictionary::query::synthetic::{self, Spec};
use feature_dictionary::query::{Query, Search, TokenBasis, TokenRank};
use feature_dictionary::store::{self, fdict::FdictReader, neuronpedia, seed_json};
use feature_dictionary::{build, ingest, FeatureDictionary};

/// A real build over a constructed corpus: 3 sequences, 6 features with distinct patterns.
/// A synthetic `.fdict` of `n_features` features as `s.fdict` in a fresh temporary
/// directory (removed when the returned guard drops), with the spec that made it.
fn synthetic_fdict(n_features: u64) -> (tempfile::TempDir, PathBuf, Spec) {
    let dir = tempfile::tempdir().unwrap();
    let fd = dir.path().join("s.fdict");
    let spec = Spec {
        n_features,
        ..Default::default()
    };
    synthetic::write_fdict(&spec, &fd, &mut |_| {}).unwrap();
    (dir, fd, spec)
}

fn built_dictionary(dir: &Path) -> FeatureDictionary {
    let words = [
        "the",
        "cat",
        "sat",
        "on",
        "<b>mat</b>",
        "and",
        "the",
        "dog",
        "ran",
        "1",
        "2",
    ];
    let seqs: Vec<Vec<String>> = (0..3)
        .map(|s| {
            (0..40)
                .map(|i| words[(i * 7 + s * 3) % words.len()].to_string())
                .collect()
        })
        .collect();
    let n_tok: usize = seqs.iter().map(Vec::len).sum();
    let f = 6;
    let mut data = vec![0f32; n_tok * f];
    let flat: Vec<&String> = seqs.iter().flatten().collect();
    for (r, w) in flat.iter().enumerate() {
        if *w == "the" {
            data[r * f] = 1.0 + (r % 5) as f32;
        }
        if w.parse::<u32>().is_ok() {
            data[r * f + 1] = 0.5 * (r % 7) as f32 + 0.1;
        }
        data[r * f + 2] = ((r * 37) % 11) as f32 / 3.0;
        if r % 13 == 0 {
            data[r * f + 3] = 2.5;
        }
        // feature 4 never fires; feature 5 fires on "<b>mat</b>".
        if w.contains("mat") {
            data[r * f + 5] = 3.0;
        }
    }
    let npy = dir.join("acts.npy");
    ingest::npy::write_f32(&npy, &[n_tok, f], &data).unwrap();
    let tokens = ingest::TokenSequences::from_strings(&seqs);
    let matrix = ingest::npy::open(&npy).unwrap();
    let config = DictionaryConfig {
        model_name: "test-model".into(),
        sae_name: "test-sae".into(),
        ..Default::default()
    };
    let mut source = ingest::DenseSource::new(matrix, tokens, 3, 1 << 20).unwrap();
    let mut dict = build::build(&mut source, config, &Default::default(), &mut |_| {}).unwrap();
    // Fields a later stage adds: scored labels, a description, unknown keys.
    let f0 = dict.feature_set.features.get_mut(&0).unwrap();
    f0.labels = vec!["token:the".into()];
    f0.description = "Fires on \"the\".".into();
    f0.confidence = 0.8;
    f0.metadata.label_details = vec![feature_dictionary::model::Label {
        text: "token:the".into(),
        strategy: LabelingStrategy::TokenFrequency,
        confidence: 0.8,
        precision: Some(1.0),
        recall: Some(0.8),
        evidence: vec!["12 of 12".into()],
    }];
    f0.metadata.extra.insert(
        "correlated_features".into(),
        serde_json::json!([[2, 0.5], {"id": 3, "score": 0.25}]),
    );
    dict
}

#[test]
fn json_to_fdict_to_json_is_lossless() {
    let dir = tempfile::tempdir().unwrap();
    let dict = built_dictionary(dir.path());
    let json1 = dir.path().join("d.json");
    store::save(&dict, &json1).unwrap();
    let from_json = store::load(&json1).unwrap();
    let fd = dir.path().join("d.fdict");
    store::save(&from_json, &fd).unwrap();
    let from_fdict = store::load(&fd).unwrap();
    assert_eq!(from_json, from_fdict);
    let json2 = dir.path().join("d2.json");
    store::save(&from_fdict, &json2).unwrap();
    assert_eq!(
        std::fs::read(&json1).unwrap(),
        std::fs::read(&json2).unwrap()
    );
    // The statistics stored at write time equal the in-memory ones.
    let r = FdictReader::open(&fd).unwrap();
    assert_eq!(r.statistics(), &from_json.statistics());
    assert_eq!(r.summary().num_features, 6);
    assert_eq!(
        r.neighbours(0).unwrap(),
        vec![
            ("correlated".to_string(), 2, 0.5),
            ("correlated".to_string(), 3, 0.25)
        ]
    );
}

#[test]
fn synthetic_round_trip_and_reader_lookups() {
    let (_dir, fd, spec) = synthetic_fdict(300);
    let dict = synthetic::dictionary(&spec);
    let r = FdictReader::open(&fd).unwrap();
    for id in [0u64, 1, 17, 299] {
        assert_eq!(r.feature(id).unwrap().as_ref(), dict.get(id));
    }
    assert_eq!(r.feature(300).unwrap(), None);
    assert_eq!(r.feature(u64::MAX).unwrap(), None);
    assert_eq!(r.statistics(), &dict.statistics());
    assert_eq!(r.load_all().unwrap(), dict);
    let briefs = r.briefs(&[5, 1000, 1]).unwrap();
    assert_eq!(briefs.iter().map(|b| b.id).collect::<Vec<_>>(), vec![5, 1]);
    assert_eq!(briefs[1].labels, dict.get(1).unwrap().labels);
}

fn assert_same_hits(sql: &FdictReader, mem: &FeatureDictionary, q: &Query, limit: usize) {
    let a = sql.search(q, limit).unwrap();
    let b = mem.search(q, limit).unwrap();
    let ids = |h: &[feature_dictionary::query::Hit]| h.iter().map(|h| h.id).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b), "{q:?}");
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x.score - y.score).abs() <= 1e-9 * x.score.abs().max(1.0),
            "{q:?}: {x:?} vs {y:?}"
        );
        assert_eq!(x.matched, y.matched, "{q:?}");
        assert_eq!(x.support, y.support, "{q:?}");
    }
}

#[test]
fn sql_and_memory_search_rank_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        n_features: 400,
        vocab_words: 60,
        ..Default::default()
    };
    let dict = synthetic::dictionary(&spec);
    let fd = dir.path().join("s.fdict");
    store::save(&dict, &fd).unwrap();
    let r = FdictReader::open(&fd).unwrap();
    let common = synthetic::token(&spec, 0);
    for by in [None, Some(TokenRank::Precision), Some(TokenRank::Firings)] {
        let queries = [
            Query::Token {
                token: common.clone(),
                by,
            },
            Query::Pattern {
                pattern: "^ ?ka".into(),
                by,
            },
            Query::Pattern {
                pattern: "(?i)LO$".into(),
                by,
            },
        ];
        for limit in [1, 5, 1000] {
            for q in &queries {
                assert_same_hits(&r, &dict, q, limit);
            }
        }
    }
    for q in [
        "TOKEN:",
        "ka",
        "ngram:lo",
        "<script>",
        "nothing-like-this",
        "\"'><img",
    ] {
        assert_same_hits(&r, &dict, &Query::Label(q.into()), 50);
    }
    for q in ["ka", "fires lo", "token", "alert", "zzz"] {
        assert_same_hits(&r, &dict, &Query::Text(q.into()), 30);
    }
    // Brute-force reference for token search.
    let hits = r
        .search(
            &Query::Token {
                token: common.clone(),
                by: Some(TokenRank::Firings),
            },
            10_000,
        )
        .unwrap();
    let mut want: Vec<(u64, u64)> = dict
        .features()
        .filter_map(|f| {
            f.metadata
                .top_tokens
                .iter()
                .find(|t| t.token == common)
                .map(|t| (f.id, t.firings))
        })
        .collect();
    want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    assert!(!want.is_empty());
    assert_eq!(
        hits.iter()
            .map(|h| (h.id, h.score as u64))
            .collect::<Vec<_>>(),
        want
    );
    // Bad queries are errors, not panics.
    for bad in [
        Query::Pattern {
            pattern: "(".into(),
            by: Some(TokenRank::Precision),
        },
        Query::Text("  ".into()),
        Query::Label("".into()),
    ] {
        assert!(r.search(&bad, 5).is_err(), "{bad:?}");
        assert!(dict.search(&bad, 5).is_err(), "{bad:?}");
    }
}

/// A dictionary without per-token counts (top tokens stripped from a synthetic one, whose
/// small vocabulary gives many ties) is searched by its examples' tokens: identically in
/// memory, through the `example_tokens` table, and in a file written before that table
/// existed (read feature by feature), including samples that repeat a top example (counted
/// once), examples naming no sequence (each counted) and features without examples.
#[test]
fn sql_and_memory_search_rank_the_same_over_examples() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        n_features: 400,
        vocab_words: 30,
        ..Default::default()
    };
    let mut dict = synthetic::dictionary(&spec);
    for f in dict.feature_set.features.values_mut() {
        f.metadata.top_tokens.clear();
        let group = f.metadata.quantile_examples.last_mut();
        if let (true, Some(again), Some(g)) = (f.id % 3 == 0, f.top_activations.first(), group) {
            g.examples.push(again.clone());
        }
        if f.id % 5 == 0 {
            let samples = f.metadata.quantile_examples.iter_mut();
            for a in f
                .top_activations
                .iter_mut()
                .chain(samples.flat_map(|g| &mut g.examples))
            {
                a.metadata.sequence = None;
            }
        }
        if f.id.is_multiple_of(7) {
            f.top_activations.clear();
            f.metadata.quantile_examples.clear();
        }
    }
    let readers = common::fdict_with_and_without_example_tokens(&dict, dir.path(), "s.fdict");
    for by in [None, Some(TokenRank::Firings)] {
        let mut queries: Vec<Query> = (0..6)
            .map(|i| Query::Token {
                token: synthetic::token(&spec, i),
                by,
            })
            .collect();
        for p in ["^ ?ka", "(?i)LO$", ".", "^$", "no such token"] {
            queries.push(Query::Pattern {
                pattern: p.into(),
                by,
            });
        }
        for r in &readers {
            for limit in [1, 5, 1000] {
                for q in &queries {
                    assert_same_hits(r, &dict, q, limit);
                    let found = r.find(q, limit).unwrap();
                    assert_eq!(found.basis, Some(TokenBasis::Examples));
                    assert_eq!(found.by, Some(TokenRank::Firings));
                }
            }
        }
    }
    // Brute-force reference: stored examples firing on the token, each firing once.
    let common = synthetic::token(&spec, 0);
    let mut want: Vec<(u64, u64)> = dict
        .features()
        .filter_map(|f| {
            let samples = f
                .metadata
                .quantile_examples
                .iter()
                .flat_map(|g| &g.examples);
            let mut seen = std::collections::HashSet::new();
            let n = f
                .top_activations
                .iter()
                .chain(samples)
                .filter(|a| a.token == common)
                .filter(|a| match a.metadata.sequence {
                    Some(s) => seen.insert((s, a.position)),
                    None => true,
                })
                .count() as u64;
            (n > 0).then_some((f.id, n))
        })
        .collect();
    want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    assert!(want.len() > 10 && want.iter().any(|w| w.1 == 4) && want.iter().any(|w| w.1 == 3));
    let q = Query::Token {
        token: common,
        by: None,
    };
    for r in &readers {
        let got: Vec<(u64, u64)> = r
            .search(&q, 10_000)
            .unwrap()
            .iter()
            .map(|h| (h.id, h.score as u64))
            .collect();
        assert_eq!(got, want);
    }
}

#[test]
fn manual_labels_persist_and_rank_first() {
    let (_dir, fd, spec) = synthetic_fdict(50);
    let dead = synthetic::dictionary(&spec)
        .features()
        .find(|f| f.labels.is_empty())
        .unwrap()
        .id;
    let mut w = FdictReader::open_rw(&fd).unwrap();
    let before = w.statistics().labeled_features;
    let f = w
        .add_manual_label(dead, "  capital letters  ")
        .unwrap()
        .unwrap();
    assert_eq!(f.labels, vec!["capital letters"]);
    assert_eq!(
        f.metadata.label_details[0].strategy,
        LabelingStrategy::Manual
    );
    // The description names the best labels: it is written anew with the label.
    assert!(
        f.description.contains("capital letters"),
        "{}",
        f.description
    );
    // The same text again changes nothing.
    w.add_manual_label(dead, "capital letters").unwrap();
    assert_eq!(w.statistics().labeled_features, before + 1);
    assert!(w.add_manual_label(10_000, "x").unwrap().is_none());
    assert!(w.add_manual_label(dead, "   ").is_err());
    assert!(w.add_manual_label(dead, &"x".repeat(500)).is_err());
    // A bounded number per feature: one more is refused, the same text again still changes
    // nothing.
    let other = (0..10_000)
        .find(|&i| i != dead && w.feature(i).unwrap().is_some())
        .unwrap();
    let newly_labeled = w.feature(other).unwrap().unwrap().labels.is_empty() as u64;
    for i in 0..store::fdict::MAX_MANUAL_LABELS {
        w.add_manual_label(other, &format!("label {i}")).unwrap();
    }
    let e = w
        .add_manual_label(other, "one too many")
        .unwrap_err()
        .to_string();
    assert!(e.contains("at most 50"), "{e}");
    w.add_manual_label(other, "label 7").unwrap();
    drop(w);
    let r = FdictReader::open(&fd).unwrap();
    assert_eq!(
        r.statistics().labeled_features,
        before + 1 + newly_labeled as usize
    );
    let g = r.feature(dead).unwrap().unwrap();
    assert_eq!(g.labels, vec!["capital letters"]);
    let hits = r.search(&Query::Label("CAPITAL".into()), 5).unwrap();
    assert_eq!(hits[0].id, dead);
    let hits = r.search(&Query::Text("capital".into()), 5).unwrap();
    assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), vec![dead]);
    // The whole dictionary still reads back with the label.
    let all = store::load(&fd).unwrap();
    assert_eq!(all.get(dead).unwrap(), &g);
    drop(r);

    // A manual label with the text of an automatic one replaces it (as `label --set` does):
    // it was listed twice, once per strategy.
    let labeled = all
        .features()
        .find(|f| f.labels.len() >= 2 && f.id != other)
        .unwrap();
    let auto = labeled.labels[1].clone();
    let mut w = FdictReader::open_rw(&fd).unwrap();
    let f = w.add_manual_label(labeled.id, &auto).unwrap().unwrap();
    assert_eq!(
        f.labels.iter().filter(|t| **t == auto).count(),
        1,
        "{:?}",
        f.labels
    );
    assert_eq!(f.labels[0], auto);
    assert_eq!(f.labels.len(), labeled.labels.len());
    let details: Vec<_> = f
        .metadata
        .label_details
        .iter()
        .filter(|l| l.text == auto)
        .collect();
    assert_eq!(details.len(), 1);
    assert_eq!(details[0].strategy, LabelingStrategy::Manual);
    drop(w);
    let c = rusqlite::Connection::open(&fd).unwrap();
    let rows: i64 = c
        .query_row(
            "SELECT count(*) FROM labels WHERE feature_id = ?1 AND text = ?2",
            rusqlite::params![labeled.id as i64, auto],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 1);
}

/// `relabel` stores exactly the label edits of its closure, in place, across chunks of
/// features; an error or a changed id, even chunks after the first edit, leaves the file as
/// it was.
#[test]
fn relabel_in_place_stores_label_edits_or_nothing() {
    use feature_dictionary::store::fdict::RELABEL_CHUNK;
    use feature_dictionary::Error;
    let n = 2 * RELABEL_CHUNK as u64 + 40;
    let (_dir, fd, _) = synthetic_fdict(n);
    let original = store::load(&fd).unwrap();
    let retitle = |f: &mut feature_dictionary::model::Feature| {
        let id = f.id;
        feature_dictionary::label::manual::set_manual_label(f, &format!("edited {id}"));
        f.description = format!("edited feature {id}");
    };
    let last = n - 1;
    let mut w = FdictReader::open_rw(&fd).unwrap();
    let mut done = Vec::new();
    let failed = w.relabel(
        &original.config,
        |f| -> Result<(), Error> {
            retitle(f);
            if f.id == last {
                return Err(Error::Invalid("the labeler failed".into()));
            }
            Ok(())
        },
        |d| done.push(d),
    );
    assert!(failed
        .unwrap_err()
        .to_string()
        .contains("the labeler failed"));
    // The chunks before the failing one were written inside the transaction, then rolled back.
    assert_eq!(done, vec![RELABEL_CHUNK, 2 * RELABEL_CHUNK]);
    let moved = w.relabel(
        &original.config,
        |f| -> Result<(), Error> {
            retitle(f);
            if f.id == last {
                f.id = n + 5;
            }
            Ok(())
        },
        |_| {},
    );
    let e = moved.unwrap_err().to_string();
    assert!(e.contains("s.fdict") && e.contains("id"), "{e}");
    assert_eq!(store::load(&fd).unwrap(), original);
    assert!(!fd.with_extension("fdict-journal").exists());

    let edited = [0, 7, RELABEL_CHUNK as u64, last];
    let mut config = original.config.clone();
    config.labeling.min_confidence = 0.5;
    let mut done = Vec::new();
    let rewritten = w
        .relabel(
            &config,
            |f| -> Result<(), Error> {
                if edited.contains(&f.id) {
                    retitle(f);
                }
                Ok(())
            },
            |d| done.push(d),
        )
        .unwrap();
    assert_eq!(rewritten, edited.len());
    assert_eq!(done.last(), Some(&(n as usize)));
    let mut expected = original.clone();
    for id in edited {
        retitle(expected.feature_set.features.get_mut(&id).unwrap());
    }
    expected.config.labeling.min_confidence = 0.5;
    drop(w);
    let stored = store::load(&fd).unwrap();
    assert_eq!(stored, expected);
    let r = FdictReader::open(&fd).unwrap();
    assert_eq!(r.statistics(), &expected.statistics());
    for id in edited {
        let hits = r.search(&Query::Label(format!("edited {id}")), 5).unwrap();
        assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), vec![id]);
        let hits = r
            .search(&Query::Text(format!("edited feature {id}")), 50)
            .unwrap();
        assert_eq!(hits[0].id, id);
    }
}

/// `relabel_into` labels a copy: the source is not touched, the output is the source as
/// `relabel` in place would leave it, and a failure leaves the previous output (and no
/// temporary file) behind.
#[test]
fn relabel_into_writes_a_labeled_copy_or_nothing() {
    use feature_dictionary::Error;
    let (dir, fd, _) = synthetic_fdict(300);
    let source_bytes = std::fs::read(&fd).unwrap();
    let original = store::load(&fd).unwrap();
    let retitle = |f: &mut feature_dictionary::model::Feature| -> Result<(), Error> {
        if f.id.is_multiple_of(7) {
            let id = f.id;
            feature_dictionary::label::manual::set_manual_label(f, &format!("copy {id}"));
        }
        Ok(())
    };
    let out = dir.path().join("out.fdict");
    std::fs::write(&out, b"the previous output").unwrap();
    let r = FdictReader::open(&fd).unwrap();
    let failed = r.relabel_into(
        &out,
        &original.config,
        |f| -> Result<(), Error> {
            retitle(f)?;
            if f.id == 299 {
                return Err(Error::Invalid("the labeler failed".into()));
            }
            Ok(())
        },
        |_| {},
    );
    assert!(failed.unwrap_err().to_string().contains("labeler failed"));
    assert_eq!(std::fs::read(&out).unwrap(), b"the previous output");
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["out.fdict", "s.fdict"]);

    let rewritten = r
        .relabel_into(&out, &original.config, retitle, |_| {})
        .unwrap();
    assert_eq!(rewritten, 43);
    assert_eq!(std::fs::read(&fd).unwrap(), source_bytes);
    drop(r);
    let mut w = FdictReader::open_rw(&fd).unwrap();
    w.relabel(&original.config, retitle, |_| {}).unwrap();
    drop(w);
    let (copy, in_place) = (store::load(&out).unwrap(), store::load(&fd).unwrap());
    assert_ne!(copy, original);
    assert_eq!(copy, in_place);
    assert_eq!(
        FdictReader::open(&out).unwrap().statistics(),
        FdictReader::open(&fd).unwrap().statistics()
    );
}

/// What labeling knows of the corpus reads the same from a `.fdict`, without loading its
/// features, as from the dictionary in memory: its corpus token counts, and for a file
/// without them the tokens of its features' top tokens.
#[test]
fn corpus_tokens_of_a_fdict_equal_those_in_memory() {
    use feature_dictionary::label::CorpusTokens;
    let dir = tempfile::tempdir().unwrap();
    let mut dict = built_dictionary(dir.path());
    assert!(!dict.feature_set.metadata.token_counts.is_empty());
    let fd = dir.path().join("d.fdict");
    store::save(&dict, &fd).unwrap();
    let corpus = CorpusTokens::of(&dict);
    // Two of the eleven words of every sequence are "the".
    let the = corpus.iter().find(|(t, _)| *t == "the").unwrap().1;
    assert!(the > 10, "{the}");
    assert_eq!(
        FdictReader::open(&fd).unwrap().corpus_tokens().unwrap(),
        corpus
    );

    dict.feature_set.metadata.token_counts.clear();
    // Two ids decoding to one string, each listed with its own count: by two features, and
    // twice by one (the `top_tokens` table keeps one of those two; the body both).
    let listed = |count| feature_dictionary::model::TokenCount {
        token: "\u{fffd}".into(),
        firings: 1,
        occurrences: count,
    };
    for (id, counts) in [(0, &[50][..]), (2, &[30, 400]), (3, &[70])] {
        let f = dict.feature_set.features.get_mut(&id).unwrap();
        f.metadata
            .top_tokens
            .extend(counts.iter().map(|&c| listed(c)));
    }
    let fd = dir.path().join("no_counts.fdict");
    store::save(&dict, &fd).unwrap();
    let from_top_tokens = CorpusTokens::of(&dict);
    assert_eq!(the, {
        let t = from_top_tokens.iter().find(|(t, _)| *t == "the");
        t.unwrap().1
    });
    let replacement = from_top_tokens.iter().find(|(t, _)| *t == "\u{fffd}");
    assert_eq!(replacement, Some(("\u{fffd}", 400)));
    // Feature 4 never fires, and some words are no feature's top token.
    assert!(from_top_tokens.len() <= corpus.len() + 1);
    assert_eq!(
        FdictReader::open(&fd).unwrap().corpus_tokens().unwrap(),
        from_top_tokens
    );
}

#[test]
fn bad_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.fdict");
    let c = rusqlite::Connection::open(&other).unwrap();
    c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(c);
    let e = store::load(&other).unwrap_err().to_string();
    assert!(e.contains("other.fdict") && e.contains("meta"), "{e}");
    let junk = dir.path().join("junk.fdict");
    std::fs::write(&junk, b"SQLite format 3\0 but then garbage").unwrap();
    let e = store::load(&junk).unwrap_err().to_string();
    assert!(e.contains("junk.fdict"), "{e}");
    let txt = dir.path().join("t.fdict");
    std::fs::write(&txt, b"hello").unwrap();
    let e = FdictReader::open(&txt).err().unwrap().to_string();
    assert!(e.contains("t.fdict") && e.contains("SQLite"), "{e}");
    // Loading it (what every read command does) says the same, not that it is bad JSON.
    let e = store::load(&txt).unwrap_err().to_string();
    assert!(e.contains("t.fdict") && e.contains("SQLite"), "{e}");
    assert!(!e.contains("JSON"), "{e}");
    // A JSON dictionary saved under that name is still told by its content.
    let json_named_fdict = dir.path().join("j.fdict");
    let dict = synthetic::dictionary(&Spec::default());
    store::save(&dict, &dir.path().join("j.json")).unwrap();
    std::fs::rename(dir.path().join("j.json"), &json_named_fdict).unwrap();
    assert_eq!(
        store::load(&json_named_fdict).unwrap().feature_set.len(),
        dict.feature_set.len()
    );
    assert!(store::save(
        &synthetic::dictionary(&Spec::default()),
        &dir.path().join("x.bin")
    )
    .is_err());

    // A .fdict cut short (a copy interrupted) says so, with its size.
    let (_keep, full, _) = synthetic_fdict(3000);
    let bytes = std::fs::read(&full).unwrap();
    let half = dir.path().join("half.fdict");
    std::fs::write(&half, &bytes[..bytes.len() / 2]).unwrap();
    let e = store::load(&half).unwrap_err().to_string();
    assert!(
        e.contains("half.fdict") && e.contains("damaged or truncated"),
        "{e}"
    );
    assert!(e.contains(&(bytes.len() / 2).to_string()), "{e}");
    // JSON of another shape names what it found, not serde's internal struct.
    let list = dir.path().join("list.json");
    std::fs::write(&list, b" [] ").unwrap();
    let e = store::load(&list).unwrap_err().to_string();
    assert!(
        e.contains("list.json") && e.contains("found an array"),
        "{e}"
    );
    assert!(!e.contains("struct"), "{e}");
    // A feature stored under another id's key is refused by the file that holds it.
    let mut v: serde_json::Value =
        serde_json::from_str(&seed_json::to_string(&dict).unwrap()).unwrap();
    let first = v["feature_set"]["features"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    v["feature_set"]["features"][&first]["id"] = serde_json::json!(999_999);
    let renumbered = dir.path().join("renumbered.json");
    std::fs::write(&renumbered, v.to_string()).unwrap();
    let e = store::load(&renumbered).unwrap_err().to_string();
    assert!(
        e.contains("renumbered.json")
            && e.contains(&format!("features[\"{first}\"] holds feature id 999999")),
        "{e}"
    );
}

#[test]
fn failed_write_keeps_the_previous_file() {
    let (dir, fd, spec) = synthetic_fdict(20);
    let (config, fs) = {
        let d = synthetic::dictionary(&spec);
        (d.config.clone(), d.feature_set.clone())
    };
    let mut w = store::fdict::FdictWriter::create(&fd, &config, &fs).unwrap();
    w.add(fs.features.get(&3).unwrap()).unwrap();
    // Out of order: an error, and dropping the writer removes its temporary file.
    assert!(w.add(fs.features.get(&2).unwrap()).is_err());
    // An id SQLite cannot hold (above i64::MAX) is refused, not stored wrapped.
    let mut huge = fs.features.get(&4).unwrap().clone();
    huge.id = 1 << 63;
    let e = w.add(&huge).unwrap_err().to_string();
    assert!(
        e.contains("feature id 9223372036854775808 is too large"),
        "{e}"
    );
    drop(w);
    assert_eq!(
        FdictReader::open(&fd).unwrap().statistics().total_features,
        20
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

#[test]
fn neuronpedia_export_shape() {
    let dir = tempfile::tempdir().unwrap();
    let mut dict = built_dictionary(dir.path());
    dict.config.model_name = "tiny-model".into();
    dict.config.sae_name = "res-16k".into();
    dict.config.layer = 7;
    let out = dir.path().join("np.json");
    neuronpedia::write(&dict, &out, None).unwrap();
    // From the dictionary in memory and streamed from its .fdict: the same bytes.
    let fd = dir.path().join("np.fdict");
    store::save(&dict, &fd).unwrap();
    let streamed = dir.path().join("np_streamed.json");
    neuronpedia::write_from_reader(&FdictReader::open(&fd).unwrap(), &streamed, None).unwrap();
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&streamed).unwrap()
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    // A SAEDashboard batch: the dictionary's model, layer and SAE, then the features.
    assert_eq!(v["model_id"], "tiny-model");
    assert_eq!(v["layer"], 7);
    assert_eq!(v["sae_set"], "res-16k");
    let arr = v["features"].as_array().unwrap();
    assert_eq!(arr.len(), dict.feature_set.len());
    // Every key of SAEDashboard's NeuronpediaDashboardFeature.to_dict, and only those.
    let mut keys: Vec<&str> = arr[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut want = vec![
        "feature_index",
        "neuron_alignment_indices",
        "neuron_alignment_values",
        "neuron_alignment_l1",
        "correlated_neurons_indices",
        "correlated_neurons_l1",
        "correlated_neurons_pearson",
        "correlated_features_indices",
        "correlated_features_l1",
        "correlated_features_pearson",
        "neg_str",
        "neg_values",
        "pos_str",
        "pos_values",
        "frac_nonzero",
        "freq_hist_data_bar_values",
        "freq_hist_data_bar_heights",
        "logits_hist_data_bar_heights",
        "logits_hist_data_bar_values",
        "n_prompts_total",
        "n_tokens_in_prompt",
        "dataset",
        "decoder_weights_dist",
        "activations",
    ];
    want.sort_unstable();
    assert_eq!(keys, want);
    let sequences = dict.feature_set.metadata.total_sequences.unwrap();
    assert!(sequences > 0);
    assert_eq!(arr[0]["n_prompts_total"], sequences);
    let total_tokens = dict.feature_set.total_tokens_processed;
    let per_prompt = if total_tokens.is_multiple_of(sequences) {
        total_tokens / sequences
    } else {
        0
    };
    assert_eq!(arr[0]["n_tokens_in_prompt"], per_prompt);
    let total = dict.feature_set.total_tokens_processed as f64;
    for (o, f) in arr.iter().zip(dict.features()) {
        assert_eq!(o["feature_index"], f.id);
        assert!(
            (o["frac_nonzero"].as_f64().unwrap() - f.activation_count as f64 / total).abs() < 1e-12
        );
        let heights: Vec<u64> =
            serde_json::from_value(o["freq_hist_data_bar_heights"].clone()).unwrap();
        let values: Vec<f64> =
            serde_json::from_value(o["freq_hist_data_bar_values"].clone()).unwrap();
        if f.activation_count > 0 {
            let single_value = f.max_activation == f.metadata.min_activation.unwrap() as f64;
            // One bar when every firing had the same value, else 50 increasing bin centres.
            assert_eq!(heights.len(), if single_value { 1 } else { 50 });
            assert_eq!(
                heights.iter().sum::<u64>(),
                f.activation_count,
                "feature {}",
                f.id
            );
            assert!(values.windows(2).all(|w| w[0] < w[1]));
        } else {
            assert!(heights.is_empty());
        }
        let acts = o["activations"].as_array().unwrap();
        let n_top = f.top_activations.len();
        let n_q: usize = f
            .metadata
            .quantile_examples
            .iter()
            .map(|g| g.examples.len())
            .sum();
        assert_eq!(acts.len(), n_top + n_q);
        // A quantile group's examples carry its share of the feature's firings.
        let shares: Vec<f64> = acts[n_top..]
            .iter()
            .map(|a| a["bin_contains"].as_f64().unwrap())
            .collect();
        let want: Vec<f64> = f
            .metadata
            .quantile_examples
            .iter()
            .flat_map(|g| {
                let share = g.count as f64 / f.activation_count as f64;
                g.examples.iter().map(move |_| share)
            })
            .collect();
        assert_eq!(shares, want);
        assert!(shares.iter().all(|&x| (0.0..=1.0).contains(&x)));
        for (a, ex) in acts.iter().zip(&f.top_activations) {
            assert_eq!(a["bin_min"], -1.0);
            assert_eq!(a["bin_max"], -1.0);
            let i = a["qualifying_token_index"].as_u64().unwrap() as usize;
            assert_eq!(a["tokens"][i], ex.token.as_str());
            assert_eq!(a["values"][i].as_f64().unwrap() as f32, ex.activation);
        }
        assert_eq!(o["pos_str"], serde_json::json!([]));
    }
    assert_eq!(
        arr[0]["correlated_features_indices"],
        serde_json::json!([2, 3])
    );
    // The JSON export of a dictionary read from .fdict is the seed JSON.
    let fd = dir.path().join("d.fdict");
    store::save(&dict, &fd).unwrap();
    assert_eq!(
        seed_json::to_string(&store::load(&fd).unwrap()).unwrap(),
        seed_json::to_string(&dict).unwrap()
    );
}

#[test]
fn equal_width_histogram_matches_brute_force_on_uniform_bins() {
    // All mass in one log bin spread over [lo, hi): equal-width bins inside get equal shares.
    use feature_dictionary::model::HistogramSummary;
    let h = HistogramSummary {
        bins_per_octave: 8,
        min_exponent: -10,
        n_bins: 208,
        counts: vec![(80, 1000)],
    };
    let (lo, hi) = (h.lower_edge(80), h.lower_edge(81));
    let (heights, values) = neuronpedia::equal_width_histogram(&h, lo, hi, 50);
    assert_eq!(heights.iter().sum::<u64>(), 1000);
    assert!(heights.iter().all(|&c| c == 20), "{heights:?}");
    assert!((values[0] - (lo + (hi - lo) / 100.0)).abs() < 1e-12);
}

/// Labels of newline or tab tokens hold those characters ("token:\n", "ngram:\n\t\""): the
/// `.fdict` must give back the same labels and the same matched label as the JSON does.
#[test]
fn labels_holding_newlines_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        n_features: 40,
        ..Default::default()
    };
    let mut dict = synthetic::dictionary(&spec);
    let odd = ["token:\n", "ngram:\n\t\"", "Line\nBreak"];
    for (i, id) in [3u64, 8, 21].into_iter().enumerate() {
        let f = dict.feature_set.features.get_mut(&id).unwrap();
        f.labels.insert(0, odd[i].to_string());
        f.confidence = 2.0;
    }
    let fd = dir.path().join("n.fdict");
    store::save(&dict, &fd).unwrap();
    let r = FdictReader::open(&fd).unwrap();
    let briefs = r.briefs(&[3, 8, 21]).unwrap();
    for b in &briefs {
        assert_eq!(b.labels, dict.get(b.id).unwrap().labels, "feature {}", b.id);
    }
    for q in ["token:", "ngram:\n", ":\n", "line\nbreak", "break", "\t\""] {
        for limit in [1, 3, 50] {
            assert_same_hits(&r, &dict, &Query::Label(q.into()), limit);
        }
    }
}

/// Features 0 and 1 fire together with proportional activations (Pearson 1), feature 2
/// fires alone: the correlations a `--correlation exact` build stores must reach the
/// Neuronpedia export and the `.fdict` neighbours table, not only `featdict correlated`.
#[test]
fn correlations_of_a_build_reach_the_neuronpedia_export_and_fdict_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let seqs: Vec<Vec<String>> = (0..2)
        .map(|s| (0..10).map(|i| format!("w{}", (i + s) % 4)).collect())
        .collect();
    let (n_tok, f) = (20, 3);
    let mut data = vec![0f32; n_tok * f];
    for r in 0..n_tok {
        if r % 3 == 0 {
            data[r * f] = 1.0 + r as f32;
            data[r * f + 1] = 2.0 * (1.0 + r as f32);
        }
        if r % 3 == 1 {
            data[r * f + 2] = 1.5;
        }
    }
    let npy = dir.path().join("acts.npy");
    ingest::npy::write_f32(&npy, &[n_tok, f], &data).unwrap();
    let mut config = DictionaryConfig::default();
    config.extraction.correlation = "exact".into();
    let mut source = ingest::DenseSource::new(
        ingest::npy::open(&npy).unwrap(),
        ingest::TokenSequences::from_strings(&seqs),
        3,
        1 << 20,
    )
    .unwrap();
    let dict = build::build(&mut source, config, &Default::default(), &mut |_| {}).unwrap();
    let stored = feature_dictionary::analyze::correlation::correlated(&dict, 0, 0.0).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, 1);
    assert!((stored[0].1 - 1.0).abs() < 1e-9, "{stored:?}");

    let np = dir.path().join("np.json");
    neuronpedia::write(&dict, &np, None).unwrap();
    let batch: serde_json::Value = serde_json::from_slice(&std::fs::read(&np).unwrap()).unwrap();
    let arr = batch["features"].as_array().unwrap();
    assert_eq!(
        arr[0]["correlated_features_indices"],
        serde_json::json!([1])
    );
    let pearson = arr[0]["correlated_features_pearson"][0].as_f64().unwrap();
    assert!((pearson - 1.0).abs() < 1e-9);
    assert_eq!(
        arr[1]["correlated_features_indices"],
        serde_json::json!([0])
    );
    assert_eq!(arr[2]["correlated_features_indices"], serde_json::json!([]));

    let fd = dir.path().join("d.fdict");
    store::save(&dict, &fd).unwrap();
    let r = FdictReader::open(&fd).unwrap();
    let n = r.neighbours(0).unwrap();
    assert_eq!(n.len(), 1, "{n:?}");
    assert_eq!((n[0].0.as_str(), n[0].1), ("correlated", 1));
    assert!(r.neighbours(2).unwrap().is_empty());
    // The streaming export from the .fdict gives the same objects.
    let np2 = dir.path().join("np2.json");
    neuronpedia::write_from_reader(&r, &np2, None).unwrap();
    assert_eq!(std::fs::read(&np).unwrap(), std::fs::read(&np2).unwrap());
}

/// A reader whose file was replaced on disk (every rewrite renames a new file over the old)
/// refuses to write a label into the file it still has open, where it would be lost.
#[test]
fn a_label_is_not_written_into_a_replaced_file() {
    let (_dir, fd, spec) = synthetic_fdict(10);
    let mut w = FdictReader::open_rw(&fd).unwrap();
    assert!(!w.is_replaced());
    w.add_manual_label(1, "kept").unwrap();
    synthetic::write_fdict(&spec, &fd, &mut |_| {}).unwrap();
    assert!(w.is_replaced());
    let e = w.add_manual_label(1, "lost").unwrap_err().to_string();
    assert!(
        e.contains("was replaced or removed after it was opened"),
        "{e}"
    );
    std::fs::remove_file(&fd).unwrap();
    assert!(w.is_replaced());
}

/// A label write that cannot get the file's lock in time (another writer holds it) is
/// `Error::Unavailable` — nothing written, try again — and succeeds once the lock is free.
#[test]
fn a_label_write_behind_another_writer_is_unavailable_then_works() {
    let (_dir, fd, _) = synthetic_fdict(10);
    let mut w = FdictReader::open_rw(&fd).unwrap();
    w.connection()
        .busy_timeout(std::time::Duration::from_millis(50))
        .unwrap();
    let other = FdictReader::open_rw(&fd).unwrap();
    other.connection().execute_batch("BEGIN IMMEDIATE").unwrap();
    let e = w.add_manual_label(3, "patient").unwrap_err();
    assert!(
        matches!(e, feature_dictionary::Error::Unavailable { .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("try again"), "{e}");
    other.connection().execute_batch("ROLLBACK").unwrap();
    let f = w.add_manual_label(3, "patient").unwrap().unwrap();
    assert_eq!(f.labels[0], "patient");
}

/// Manual labels read back from a `.fdict` carry over into a rebuilt dictionary of the same
/// features, in the same order (newest first), with descriptions that mention them.
#[test]
fn manual_labels_carry_over_into_a_rebuilt_dictionary() {
    let (_dir, fd, spec) = synthetic_fdict(10);
    let mut w = FdictReader::open_rw(&fd).unwrap();
    w.add_manual_label(2, "first").unwrap();
    w.add_manual_label(2, "second").unwrap();
    w.add_manual_label(5, "only").unwrap();
    let earlier = w.manual_labels().unwrap();
    assert_eq!(
        earlier,
        vec![
            (2, "second".to_string()),
            (2, "first".to_string()),
            (5, "only".to_string())
        ]
    );
    let mut rebuilt = synthetic::dictionary(&spec);
    rebuilt.feature_set.features.remove(&5);
    let kept = feature_dictionary::label::manual::carry_over(&mut rebuilt, &earlier);
    assert_eq!(kept, 2, "feature 5 is not in the rebuilt dictionary");
    let f = rebuilt.get(2).unwrap();
    assert_eq!(&f.labels[..2], &["second".to_string(), "first".to_string()]);
    assert!(f.description.contains("second"), "{}", f.description);
}

/// A file an earlier version wrote in WAL mode leaves it when opened for writing: labels go
/// into the `.fdict` itself, so a copy of that file alone holds them (in WAL mode they sat
/// in the `-wal` side file until a checkpoint).
#[test]
fn a_wal_file_opened_for_labels_leaves_wal_mode() {
    let (dir, fd, _spec) = synthetic_fdict(20);
    let c = rusqlite::Connection::open(&fd).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(c);
    let mut w = FdictReader::open_rw(&fd).unwrap();
    let journal: String = w
        .connection()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "delete");
    w.add_manual_label(4, "kept in the file itself").unwrap();
    assert!(
        !dir.path().join("s.fdict-wal").exists() || {
            std::fs::metadata(dir.path().join("s.fdict-wal"))
                .unwrap()
                .len()
                == 0
        }
    );
    let copy = dir.path().join("copy.fdict");
    std::fs::copy(&fd, &copy).unwrap();
    drop(w);
    let f = FdictReader::open(&copy)
        .unwrap()
        .feature(4)
        .unwrap()
        .unwrap();
    assert_eq!(f.labels[0], "kept in the file itself");
}

/// A dictionary rewritten (renamed over) while another connection has written labels into
/// the old file reads back as exactly the new file; the old connection writes nothing more;
/// labels written into the new file survive the old connection's close. The old file is
/// also tried in WAL mode (how earlier versions wrote it), where its un-checkpointed pages
/// used to be read as part of the new file.
#[test]
fn a_rewrite_under_an_open_writer_reads_back_as_the_new_file() {
    for old_in_wal in [false, true] {
        let (dir, fd, spec) = synthetic_fdict(200);
        let reference = dir.path().join("ref.fdict");
        synthetic::write_fdict(&spec, &reference, &mut |_| {}).unwrap();
        let expected = store::load(&reference).unwrap();
        if old_in_wal {
            let c = rusqlite::Connection::open(&fd).unwrap();
            let mode: String = c
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
        }
        let mut old = FdictReader::open_rw(&fd).unwrap();
        for id in 0..50 {
            old.add_manual_label(id, &format!("written into the old file {id}"))
                .unwrap();
        }
        synthetic::write_fdict(&spec, &fd, &mut |_| {}).unwrap();
        let journal: String = FdictReader::open(&fd)
            .unwrap()
            .connection()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(journal, "delete");
        let fresh = store::load(&fd).unwrap();
        assert!(
            fresh.feature_set == expected.feature_set,
            "old file in WAL: {old_in_wal}: the new file reads back with other content"
        );
        assert!(old.add_manual_label(3, "lost").is_err());
        let mut new = FdictReader::open_rw(&fd).unwrap();
        new.add_manual_label(3, "written into the new file")
            .unwrap();
        drop(old);
        let other = FdictReader::open(&fd).unwrap();
        assert_eq!(
            other.feature(3).unwrap().unwrap().labels[0],
            "written into the new file"
        );
        drop(new);
        let again = store::load(&fd).unwrap();
        assert_eq!(again.get(3).unwrap().labels[0], "written into the new file");
        assert_eq!(
            again.get(4).unwrap().labels,
            expected.get(4).unwrap().labels
        );
    }
}

#[test]
fn pipelined_write_gives_the_bytes_of_one_add_per_feature() {
    // `fdict::write` serializes the next wave of features while it inserts this one; the
    // file must be the one a single `add` per feature writes. No feature, one, and several
    // waves (256 features each) with a partial last one.
    let dir = tempfile::tempdir().unwrap();
    for n_features in [0, 1, 3 * 256 + 77] {
        let spec = Spec {
            n_features,
            ..Default::default()
        };
        let one_by_one = dir.path().join(format!("add-{n_features}.fdict"));
        synthetic::write_fdict(&spec, &one_by_one, &mut |_| {}).unwrap();
        let pipelined = dir.path().join(format!("write-{n_features}.fdict"));
        let dict = synthetic::dictionary(&spec);
        store::fdict::write(&dict, &pipelined).unwrap();
        let (a, b) = (
            std::fs::read(&one_by_one).unwrap(),
            std::fs::read(&pipelined).unwrap(),
        );
        assert!(a == b, "{n_features} features: the files differ");
        let back = FdictReader::open(&pipelined).unwrap().load_all().unwrap();
        assert_eq!(back.feature_set, dict.feature_set, "{n_features} features");
    }
}

#[test]
fn a_feature_view_writes_the_json_of_its_feature() {
    // Every field set: examples with contexts, labels with details, unknown metadata keys.
    let dir = tempfile::tempdir().unwrap();
    let dict = built_dictionary(dir.path());
    for f in dict.features() {
        let view = feature_dictionary::model::FeatureView::from(f);
        assert_eq!(
            serde_json::to_string(&view).unwrap(),
            serde_json::to_string(f).unwrap(),
            "feature {}",
            f.id
        );
    }
    // Written from a copy that kept only scalars and labels, the examples and metadata lent
    // from the full one: the file `write` makes from the full copy.
    let mut shell = dict.clone();
    for f in shell.feature_set.features.values_mut() {
        f.top_activations.clear();
        f.metadata = Default::default();
    }
    let (full, lent) = (dir.path().join("full.json"), dir.path().join("lent.json"));
    seed_json::write(&dict, &full).unwrap();
    seed_json::write_with(
        &shell,
        &lent,
        |f| {
            let whole = dict.get(f.id).unwrap();
            feature_dictionary::model::FeatureView {
                top_activations: &whole.top_activations,
                metadata: &whole.metadata,
                ..f.into()
            }
        },
        &std::sync::atomic::AtomicBool::new(false),
    )
    .unwrap();
    assert!(std::fs::read(&full).unwrap() == std::fs::read(&lent).unwrap());
}

/// A write whose stop flag is set gives up with an `Interrupted` I/O error naming the file,
/// leaving the file it would have replaced as it was and no temporary file behind (the
/// Python package stops a save so on Ctrl-C).
#[test]
fn a_stopped_write_leaves_the_previous_file_and_no_temporary_file() {
    use std::sync::atomic::AtomicBool;
    let (inputs, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dict = built_dictionary(inputs.path());
    let stop = AtomicBool::new(true);
    for name in ["d.json", "d.fdict"] {
        let path = dir.path().join(name);
        std::fs::write(&path, b"previous").unwrap();
        let err = if name.ends_with(".json") {
            seed_json::write_with(&dict, &path, |f| f.into(), &stop)
        } else {
            store::fdict::write_with(&dict, &path, |f| f.into(), &stop)
        }
        .unwrap_err();
        match &err {
            feature_dictionary::Error::Io { source, .. } => {
                assert_eq!(source.kind(), std::io::ErrorKind::Interrupted, "{err}")
            }
            other => panic!("{name}: expected an I/O error, got {other}"),
        }
        assert!(err.to_string().contains(name), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"previous");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    // Unset, the same calls write.
    let go = AtomicBool::new(false);
    seed_json::write_with(&dict, &dir.path().join("d.json"), |f| f.into(), &go).unwrap();
    store::fdict::write_with(&dict, &dir.path().join("d.fdict"), |f| f.into(), &go).unwrap();
    assert_eq!(store::load(&dir.path().join("d.fdict")).unwrap(), dict);
}

/// Other programs' notes in the `meta` table round-trip, survive label writes in place, and
/// cannot overwrite the dictionary's own keys.
#[test]
fn meta_values_of_other_programs_are_kept_apart_from_the_dictionarys() {
    let (_dir, fd, _) = synthetic_fdict(6);
    let mut w = FdictReader::open_rw(&fd).unwrap();
    assert_eq!(w.meta_value("note").unwrap(), None);
    w.set_meta_value("note", "one").unwrap();
    w.set_meta_value("note", "two").unwrap();
    w.add_manual_label(1, "by hand").unwrap();
    drop(w);
    let r = FdictReader::open(&fd).unwrap();
    assert_eq!(r.meta_value("note").unwrap().as_deref(), Some("two"));
    for own in [
        "format",
        "schema_version",
        "statistics",
        "config",
        "feature_set",
    ] {
        let e = r.set_meta_value(own, "x").unwrap_err().to_string();
        assert!(e.contains(own), "{e}");
    }
    drop(r);
    // Still a valid dictionary, with its label.
    let back = store::load(&fd).unwrap();
    assert_eq!(back.get(1).unwrap().labels[0], "by hand");
}

/// Each log bin's firings stay in its range: a firing at exactly 4.0 between firings at 3
/// and 5 was spread thin over nine bars and rounded away (the bars said 3, 3 and 5), and
/// the extremes, which are known exactly, could lose their bars.
#[test]
fn equal_width_histogram_keeps_each_firing_in_its_log_bin() {
    use feature_dictionary::accumulate::histogram;
    use feature_dictionary::model::HistogramSummary;
    let summary = |values: &[f32]| {
        let mut counts = std::collections::BTreeMap::<u32, u64>::new();
        for &v in values {
            *counts.entry(histogram::bin(v) as u32).or_default() += 1;
        }
        HistogramSummary {
            bins_per_octave: 8,
            min_exponent: -10,
            n_bins: 208,
            counts: counts.into_iter().collect(),
        }
    };
    let h = summary(&[3.0, 4.0, 5.0]);
    let (heights, values) = neuronpedia::equal_width_histogram(&h, 3.0, 5.0, 50);
    let bars: Vec<usize> = (0..50).filter(|&i| heights[i] > 0).collect();
    assert_eq!(bars.len(), 3, "{heights:?}");
    assert_eq!((bars[0], bars[2]), (0, 49));
    // 4.0 is the lower edge of its log bin, [4, 4.5): its bar is the one in the middle.
    assert!(
        (4.24..4.28).contains(&values[bars[1]]),
        "{}",
        values[bars[1]]
    );

    // Random firings: at every bar edge, the firings the bars put below it differ from the
    // true count by at most the firings of the log bin the edge falls in.
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut unit = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for round in 0..40 {
        let n = 1 + (unit() * 300.0) as usize;
        let scale = [0.05, 1.0, 30.0, 5000.0][round % 4];
        let values: Vec<f32> = (0..n)
            .map(|_| (scale * (0.5 + unit() * unit() * 3.0)) as f32)
            .collect();
        let (lo, hi) = values
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let h = summary(&values);
        let (heights, _) = neuronpedia::equal_width_histogram(&h, lo as f64, hi as f64, 50);
        if lo == hi {
            assert_eq!(heights, vec![n as u64]);
            continue;
        }
        assert_eq!(heights.iter().sum::<u64>(), n as u64);
        assert!(heights[0] >= 1 && heights[49] >= 1, "{heights:?}");
        let width = (hi as f64 - lo as f64) / 50.0;
        let mut below = 0u64;
        for i in 1..50 {
            below += heights[i - 1];
            let edge = lo as f64 + width * i as f64;
            let truly = values.iter().filter(|&&v| (v as f64) < edge).count() as u64;
            let slack = values
                .iter()
                .filter(|&&v| histogram::bin(v) == histogram::bin(edge as f32))
                .count() as u64;
            assert!(
                below.abs_diff(truly) <= slack,
                "round {round}, edge {i}: {below} below against {truly} (slack {slack})"
            );
        }
    }
}

/// Accented words: the `.fdict` index folds the diacritics of Latin letters ("naive" finds
/// "naïve"), the in-memory search did not, so a `.json` and its `.fdict` found different
/// features; and a decomposed "e\u{301}" split a query word in two, so a label was not found
/// by its own text.
#[test]
fn full_text_search_folds_accents_alike_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let mut dict = synthetic::dictionary(&Spec {
        n_features: 60,
        vocab_words: 30,
        ..Default::default()
    });
    let texts = [
        (5u64, "naïve café"),
        (6, "e\u{301}clair"),
        (7, "Éclair au chocolat"),
        (8, "Ёлка и йогурт"),
    ];
    for (id, text) in texts {
        let f = dict.feature_set.features.get_mut(&id).unwrap();
        f.description = text.to_string();
    }
    let fd = dir.path().join("a.fdict");
    store::save(&dict, &fd).unwrap();
    let r = FdictReader::open(&fd).unwrap();
    for (q, expect) in [
        ("naive", vec![5]),
        ("NAÏVE cafe", vec![5]),
        ("éclair", vec![6, 7]),
        ("e\u{301}clair", vec![6, 7]),
        ("eclair chocolat", vec![7]),
        ("йогурт", vec![8]),
        ("ёлка", vec![8]),
    ] {
        let hits = dict.search(&Query::Text(q.into()), 50).unwrap();
        let mut ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
        ids.sort();
        assert_eq!(ids, expect, "{q:?}");
        assert_same_hits(&r, &dict, &Query::Text(q.into()), 50);
    }
}

#[test]
fn a_build_finalized_into_a_file_is_the_file_of_finalize_then_save() {
    // `featdict build` finalizes features a wave at a time straight into the file (.fdict
    // or .json) instead of holding the dictionary: the same bytes as finalize + save, with
    // and without dead features left out. 845 features span three waves of 256 and a
    // partial one; every seventh never fires.
    let dir = tempfile::tempdir().unwrap();
    let (n_tok, f) = (300, 3 * 256 + 77);
    let seqs: Vec<Vec<String>> = (0..3)
        .map(|s| (0..100).map(|i| format!("w{}", (i * 7 + s) % 23)).collect())
        .collect();
    let mut data = vec![0f32; n_tok * f];
    for r in 0..n_tok {
        for c in 0..f {
            let h = (r * 131 + c * 71 + r * c) % 97;
            if c % 7 != 3 && h < 9 {
                data[r * f + c] = 0.05 + h as f32 * 0.7 + (c % 5) as f32;
            }
        }
    }
    let npy = dir.path().join("acts.npy");
    ingest::npy::write_f32(&npy, &[n_tok, f], &data).unwrap();
    let config = DictionaryConfig {
        model_name: "m".into(),
        layer: 4,
        ..Default::default()
    };
    let mut source = ingest::DenseSource::new(
        ingest::npy::open(&npy).unwrap(),
        ingest::TokenSequences::from_strings(&seqs),
        3,
        1 << 20,
    )
    .unwrap();
    let acc = build::accumulate(&mut source, &config, &Default::default(), &mut |_| {}).unwrap();
    let vocab = ingest::ActivationSource::vocab(&source);
    for drop_dead in [false, true] {
        let mut dict = feature_dictionary::finalize::finalize(&acc, vocab, config.clone());
        assert!(!dict
            .features()
            .any(|f| f.activation_count > 0 && f.id % 7 == 3));
        if drop_dead {
            dict.drop_rare(1);
            let omitted = &dict.feature_set.metadata.omitted_features;
            assert!(omitted.len() >= 121, "{}", omitted.len());
        }
        for format in ["fdict", "json"] {
            let whole = dir.path().join(format!("whole-{drop_dead}.{format}"));
            store::save(&dict, &whole).unwrap();
            let waves = dir.path().join(format!("waves-{drop_dead}.{format}"));
            let (shell, statistics) =
                build::finalize_into_file(&acc, vocab, config.clone(), &waves, drop_dead).unwrap();
            assert!(
                std::fs::read(&whole).unwrap() == std::fs::read(&waves).unwrap(),
                "{format}, drop_dead {drop_dead}: the files differ"
            );
            assert_eq!(statistics, dict.statistics(), "drop_dead {drop_dead}");
            assert_eq!(shell.config, dict.config);
            assert_eq!(shell.num_features(), f);
            assert!(shell.feature_set.features.is_empty());
            assert_eq!(
                shell.feature_set.metadata, dict.feature_set.metadata,
                "drop_dead {drop_dead}"
            );
        }
    }
    let e = build::finalize_into_file(&acc, vocab, config, &dir.path().join("d.csv"), false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("d.csv") && e.contains(".json or .fdict"), "{e}");
}

#[test]
fn features_holding_nothing_are_stored_bare_and_read_back_alike() {
    use feature_dictionary::model::{Feature, FeatureType};
    let dir = tempfile::tempdir().unwrap();
    let mut dict = built_dictionary(dir.path());
    let fs = &mut dict.feature_set;
    let dead = |id| Feature::new(id, 0);
    fs.features.insert(10, dead(10));
    fs.features.insert(
        11,
        Feature {
            description: "Dead feature: never fired on the 120 tokens processed.".into(),
            ..Feature::new(11, 576)
        },
    );
    // A zero count under another type (a hand-edited file) keeps its type.
    fs.features.insert(
        12,
        Feature {
            feature_type: FeatureType::Sparse,
            ..dead(12)
        },
    );
    // These hold something a bare body would lose: −0.0 reads back as 0.0, a label.
    fs.features.insert(
        13,
        Feature {
            bias: -0.0,
            ..dead(13)
        },
    );
    fs.features.insert(
        14,
        Feature {
            labels: vec!["unused".into()],
            ..dead(14)
        },
    );
    let fd = dir.path().join("d.fdict");
    store::save(&dict, &fd).unwrap();
    let back = store::load(&fd).unwrap();
    for (id, f) in &dict.feature_set.features {
        assert!(back.get(*id) == Some(f), "feature {id} changed");
    }
    assert_eq!(
        back.feature_set.features.len(),
        dict.feature_set.features.len()
    );
    assert_eq!(back.get(13).unwrap().bias.to_bits(), (-0.0f64).to_bits());
    let c = rusqlite::Connection::open(&fd).unwrap();
    let body = |id: i64| -> String {
        c.query_row("SELECT body FROM features WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap()
    };
    assert_eq!(body(10), r#"{"id":10,"dimension":0,"feature_type":"dead"}"#);
    assert_eq!(
        body(11),
        r#"{"id":11,"dimension":576,"description":"Dead feature: never fired on the 120 tokens processed.","feature_type":"dead"}"#
    );
    assert_eq!(
        body(12),
        r#"{"id":12,"dimension":0,"feature_type":"sparse"}"#
    );
    assert!(body(13).contains(r#""bias":-0.0"#), "{}", body(13));
    assert!(body(14).contains(r#""labels":["unused"]"#), "{}", body(14));
    // A feature that fired keeps its whole body.
    assert!(body(0).contains(r#""top_activations":[{"#));
}

/// Labeling leaves the descriptions of dead features out of a file when they are the
/// labeler's sentence (a wide SAE has millions): they read back the same, by every reader
/// path, while a dead feature with any other description, the empty one included, keeps it.
#[test]
fn dead_features_descriptions_are_left_out_once_labeled_and_read_back_alike() {
    use feature_dictionary::label::describe::describe;
    use feature_dictionary::model::Feature;
    use feature_dictionary::Error;
    let dir = tempfile::tempdir().unwrap();
    let mut dict = built_dictionary(dir.path());
    let total = dict.feature_set.total_tokens_processed;
    let dead: Vec<u64> = (10..40).collect();
    for &id in &dead {
        dict.feature_set.features.insert(id, Feature::new(id, 576));
    }
    let fd = dir.path().join("d.fdict");
    store::save(&dict, &fd).unwrap();
    let c = rusqlite::Connection::open(&fd).unwrap();
    let meta = |key: &str| -> Option<String> {
        c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .ok()
    };
    let row = |id: i64| -> (String, String) {
        c.query_row(
            "SELECT body, description FROM features WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    // Unlabeled, nothing is left out: the file is one earlier builds read.
    assert_eq!(meta("schema_version").as_deref(), Some("1"));
    assert_eq!(meta("dead_descriptions"), None);

    // The labeler's sentence for most; 12 keeps its empty description, 13 gets another.
    let edit = |f: &mut Feature| -> Result<(), Error> {
        if f.activation_count == 0 && f.id != 12 {
            f.description = if f.id == 13 {
                "never seen".into()
            } else {
                describe(f, total)
            };
        }
        Ok(())
    };
    let mut expected = dict.clone();
    for f in expected.feature_set.features.values_mut() {
        edit(f).unwrap();
    }
    let features = |path: &Path| store::load(path).unwrap().feature_set.features;
    let mut w = FdictReader::open_rw(&fd).unwrap();
    let rewritten = w.relabel(&dict.config, edit, |_| {}).unwrap();
    // Only 12 (its empty description now needs its key) and 13: the others' rows, bare
    // bodies without a description, are what they were.
    assert_eq!(rewritten, 2);
    assert_eq!(meta("schema_version").as_deref(), Some("2"));
    assert_eq!(meta("dead_descriptions").as_deref(), Some("implied"));
    assert_eq!(
        row(10),
        (
            r#"{"id":10,"dimension":576,"feature_type":"dead"}"#.into(),
            String::new()
        )
    );
    assert_eq!(
        row(12).0,
        r#"{"id":12,"dimension":576,"description":"","feature_type":"dead"}"#
    );
    assert_eq!(row(13).1, "never seen");
    let sentence = format!("Dead feature: never fired on the {total} tokens processed.");
    assert_eq!(w.feature(10).unwrap().unwrap().description, sentence);
    assert!(features(&fd) == expected.feature_set.features);
    let briefs = w.briefs(&[10, 12, 13]).unwrap();
    let described: Vec<&str> = briefs.iter().map(|b| b.description.as_str()).collect();
    assert_eq!(described, [sentence.as_str(), "", "never seen"]);

    // A manual label makes the feature's body whole (its description names the label);
    // removing it leaves the sentence out again.
    let labeled = w.add_manual_label(10, "silent").unwrap().unwrap();
    assert!(
        labeled.description.contains("labeled silent"),
        "{}",
        labeled.description
    );
    assert!(row(10).0.contains("labeled silent"));
    w.remove_manual_label(10, "silent").unwrap();
    assert_eq!(row(10).1, "");
    assert_eq!(w.feature(10).unwrap().unwrap().description, sentence);
    assert!(features(&fd) == expected.feature_set.features);

    // Labeling again changes nothing; a new file of the labeled dictionary leaves the same
    // descriptions out, and one of the unlabeled dictionary none.
    assert_eq!(w.relabel(&dict.config, edit, |_| {}).unwrap(), 0);
    drop(w);
    let copy = dir.path().join("copy.fdict");
    store::save(&expected, &copy).unwrap();
    assert!(features(&copy) == expected.feature_set.features);
    let c2 = rusqlite::Connection::open(&copy).unwrap();
    let left_out: i64 = c2
        .query_row(
            "SELECT count(*) FROM features WHERE activation_count = 0 AND description = ''
             AND instr(body, 'description') = 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let sentences = expected
        .features()
        .filter(|f| f.activation_count == 0 && f.description == sentence)
        .count();
    assert_eq!(left_out as usize, sentences);
    assert!(sentences >= dead.len() - 2);

    // Imported from JSON, whose features stream by before their token count, the same
    // descriptions are left out once all are written; 12 keeps its empty one.
    let json = dir.path().join("labeled.json");
    store::save(&expected, &json).unwrap();
    let imported = dir.path().join("imported.fdict");
    store::fdict::import_json(&json, &imported, &mut |_| {}).unwrap();
    assert!(features(&imported) == expected.feature_set.features);
    let c3 = rusqlite::Connection::open(&imported).unwrap();
    let value = |sql: &str| -> String { c3.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        value("SELECT value FROM meta WHERE key = 'dead_descriptions'"),
        "implied"
    );
    assert_eq!(
        value("SELECT body FROM features WHERE id = 10"),
        r#"{"id":10,"dimension":576,"feature_type":"dead"}"#
    );
    let body12 = value("SELECT body FROM features WHERE id = 12");
    assert!(body12.contains(r#""description":"""#), "{body12}");
    assert_eq!(
        FdictReader::open(&imported)
            .unwrap()
            .feature(12)
            .unwrap()
            .unwrap()
            .description,
        ""
    );

    // A schema version this build does not know is refused, naming the ones it reads.
    c.execute(
        "UPDATE meta SET value = '3' WHERE key = 'schema_version'",
        [],
    )
    .unwrap();
    let e = FdictReader::open(&fd).err().unwrap().to_string();
    assert!(
        e.contains("schema version 3") && e.contains("1 to 2") && e.contains("newer featdict"),
        "{e}"
    );
}

/// A label search ranks a feature by the confidence of its best label containing the text,
/// not by the feature's best label: a feature labeled "token: alpha" at 0.9 and
/// "token: foo bar" at 0.2 is a weak match for "foo". A file of the original library's bare
/// label texts ranks them by the feature's confidence. The same in memory and in a `.fdict`.
#[test]
fn label_search_ranks_by_the_matching_labels_confidence() {
    use feature_dictionary::model::{Feature, Label};
    let dir = tempfile::tempdir().unwrap();
    let mut dict = built_dictionary(dir.path());
    let labeled = |id: u64, labels: &[(&str, f64)]| {
        let mut f = Feature::new(id, 0);
        f.labels = labels.iter().map(|(t, _)| t.to_string()).collect();
        f.confidence = labels[0].1;
        f.metadata.label_details = labels
            .iter()
            .map(|&(text, confidence)| Label {
                text: text.into(),
                strategy: LabelingStrategy::TokenFrequency,
                confidence,
                precision: None,
                recall: None,
                evidence: vec![],
            })
            .collect();
        f
    };
    let mut bare = Feature::new(103, 0);
    bare.labels = vec!["foo x".into()];
    bare.confidence = 0.55;
    for f in [
        labeled(100, &[("token: alpha", 0.9), ("token: foo bar", 0.2)]),
        labeled(101, &[("token: foo", 0.5)]),
        labeled(102, &[("ngram: food", 0.7), ("token: foo", 0.6)]),
        bare,
    ] {
        dict.feature_set.features.insert(f.id, f);
    }
    let fd = dir.path().join("l.fdict");
    store::save(&dict, &fd).unwrap();
    let reader = FdictReader::open(&fd).unwrap();
    let expected = [
        (102, "ngram: food", 0.7),
        (103, "foo x", 0.55),
        (101, "token: foo", 0.5),
        (100, "token: foo bar", 0.2),
    ];
    for query in ["foo", "FOO", "fo"] {
        for limit in [1, 2, 10] {
            let want = &expected[..limit.min(expected.len())];
            for (name, hits) in [
                (
                    "memory",
                    dict.search(&Query::Label(query.into()), limit).unwrap(),
                ),
                (
                    ".fdict",
                    reader.search(&Query::Label(query.into()), limit).unwrap(),
                ),
            ] {
                let got: Vec<(u64, &str, f64)> = hits
                    .iter()
                    .map(|h| (h.id, h.matched.as_str(), h.score))
                    .collect();
                assert_eq!(got, want, "{name} {query:?} limit {limit}");
            }
        }
    }
}

/// Precision ties (3 of 3 against 50 of 50) go to the larger support, between features and
/// between one feature's matching tokens, in memory and through SQL alike.
#[test]
fn precision_ties_go_to_the_larger_support() {
    use feature_dictionary::model::{Feature, TokenCount};
    let dir = tempfile::tempdir().unwrap();
    let mut dict = built_dictionary(dir.path());
    let occurrences = |token: &str| match token {
        "ab" => 3,
        "ac" => 50,
        "ad" => 20,
        _ => 1000,
    };
    let firing = |id: u64, tokens: &[(&str, u64)]| {
        let mut f = Feature::new(id, 0);
        f.metadata.top_tokens = tokens
            .iter()
            .map(|&(token, firings)| TokenCount {
                token: token.into(),
                firings,
                occurrences: occurrences(token),
            })
            .collect();
        f.activation_count = tokens.iter().map(|t| t.1).sum();
        f
    };
    for f in [
        firing(100, &[("ab", 3)]),
        firing(101, &[("ac", 50)]),
        firing(102, &[("ab", 3), ("ad", 20)]),
        firing(103, &[("az", 500), ("ad", 10)]),
    ] {
        dict.feature_set.features.insert(f.id, f);
    }
    let fd = dir.path().join("t.fdict");
    store::save(&dict, &fd).unwrap();
    let reader = FdictReader::open(&fd).unwrap();
    let pattern = Query::Pattern {
        pattern: "^a[bcd]$".into(),
        by: Some(TokenRank::Precision),
    };
    let token = Query::Token {
        token: "ab".into(),
        by: Some(TokenRank::Precision),
    };
    let expected_pattern = [
        (101, "ac", 1.0, 50),
        (102, "ad", 1.0, 20),
        (100, "ab", 1.0, 3),
        (103, "ad", 0.5, 10),
    ];
    for (q, expected) in [
        (&pattern, &expected_pattern[..]),
        (&token, &[(100, "ab", 1.0, 3), (102, "ab", 1.0, 3)][..]),
    ] {
        for limit in [1, 2, 10] {
            let want = &expected[..limit.min(expected.len())];
            for (name, found) in [
                ("memory", dict.search(q, limit).unwrap()),
                (".fdict", reader.search(q, limit).unwrap()),
            ] {
                let got: Vec<(u64, &str, f64, u64)> = found
                    .iter()
                    .map(|h| (h.id, h.matched.as_str(), h.score, h.support))
                    .collect();
                assert_eq!(got, want, "{name} {q:?} limit {limit}");
            }
        }
    }
}

#[test]
fn manual_labels_that_would_look_like_others_are_refused() {
    use feature_dictionary::store::fdict::validate_label;
    for hidden in [
        "ab\u{200b}",
        "ab\u{2060}",
        "a\u{00ad}b",
        "ab\u{034f}",
        "\u{feff}a",
        "a\u{2028}b",
        "ab\u{200d}c",
        "a\u{fe0f}",
        "x\u{e0041}",
        "1\u{fe0f}",
        "\u{1f3f4}\u{e0067}\u{e0062}",
        "a\u{2800}b",
    ] {
        let e = validate_label(hidden).unwrap_err().to_string();
        assert!(e.contains("invisible character U+"), "{hidden:?}: {e}");
    }
    for private in ["a\u{e000}b", "\u{10fffd}"] {
        let e = validate_label(private).unwrap_err().to_string();
        assert!(e.contains("private-use character U+"), "{private:?}: {e}");
    }
    // Joiners and variation selectors that writing needs are kept.
    for written in [
        "❤\u{fe0f}",
        "👨\u{200d}👩\u{200d}👧",
        "می\u{200c}خواهم",
        "café",
        "token: the",
        "1\u{fe0f}\u{20e3}",
        "#\u{fe0f}\u{20e3}",
        "\u{1f3f4}\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f}",
    ] {
        assert_eq!(validate_label(written).unwrap(), written);
    }
}

#[test]
fn importing_json_streams_it_and_gives_the_dictionary_of_a_whole_read() {
    let dir = tempfile::tempdir().unwrap();
    let dict = built_dictionary(dir.path());
    let json = dir.path().join("d.json");
    store::save(&dict, &json).unwrap();
    let whole = store::load(&json).unwrap();
    let mut seen = Vec::new();
    let out = dir.path().join("streamed.fdict");
    let n = store::fdict::import_json(&json, &out, &mut |k| seen.push(k)).unwrap();
    assert_eq!(n, 6);
    assert_eq!(seen, (1..=6).collect::<Vec<_>>(), "one feature at a time");
    assert_eq!(store::load(&out).unwrap(), whole);
    assert_eq!(
        FdictReader::open(&out).unwrap().statistics(),
        &whole.statistics()
    );
    // Files that do not stream in one pass — config after the features, ids not in order
    // (JSON object keys in any order) — are read whole, to the same dictionary.
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let set = value["feature_set"].to_string();
    let config = value["config"].to_string();
    let features = value["feature_set"]["features"].as_object().unwrap();
    let reversed: Vec<String> = features
        .iter()
        .rev()
        .map(|(k, v)| format!("{}:{v}", serde_json::Value::String(k.clone())))
        .collect();
    let mut out_of_order = value["feature_set"].clone();
    out_of_order["features"] = serde_json::json!({});
    let out_of_order = out_of_order.to_string().replacen(
        "\"features\":{}",
        &format!("\"features\":{{{}}}", reversed.join(",")),
        1,
    );
    for (name, text) in [
        (
            "late_config",
            format!("{{\"feature_set\":{set},\"config\":{config}}}"),
        ),
        (
            "reversed",
            format!("{{\"config\":{config},\"feature_set\":{out_of_order}}}"),
        ),
    ] {
        let input = dir.path().join(format!("{name}.json"));
        std::fs::write(&input, text).unwrap();
        let out = dir.path().join(format!("{name}.fdict"));
        assert_eq!(
            store::fdict::import_json(&input, &out, &mut |_| {}).unwrap(),
            6
        );
        assert_eq!(store::load(&out).unwrap(), whole, "{name}");
    }
    // A file that does not parse is named with its field, as a whole read names it.
    let bad = dir.path().join("bad.json");
    let text = std::fs::read_to_string(&json).unwrap();
    std::fs::write(
        &bad,
        text.replacen(
            "\"activation_count\":",
            "\"activation_count\":\"x\",\"y\":",
            1,
        ),
    )
    .unwrap();
    let e = store::fdict::import_json(&bad, &dir.path().join("bad.fdict"), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bad.json") && e.contains("activation_count"),
        "{e}"
    );
    assert!(!dir.path().join("bad.fdict").exists());
}
