//! Planted features: a synthetic corpus where each feature fires exactly on a known token
//! set, n-gram or pattern. The labeler must return the planted label first, with precision
//! and recall equal to the planted truth (counted by brute force over the corpus here).

mod common_label;

use common_label::{build, Lcg, Rows};
use feature_dictionary::ingest::Vocab;
use feature_dictionary::label::{self, manual, LabelOptions, Rank};
use feature_dictionary::model::{DictionaryConfig, LabelingStrategy};
use feature_dictionary::FeatureDictionary;

const WORDS: &[&str] = &[
    "the", "the", "the", "the", "cat", "dog", "dog", "wolf", "river", "bank", "money", "new",
    "york", "city", "old", "1", "22", "333", "NASA", "FBI", "Nasa", "a", ".", ",", "ran", "sat",
];

/// The planted rules: which features fire at (tokens, position `i`).
fn planted(seq: &[&str], i: usize, the_counter: &mut u64) -> Vec<u32> {
    let t = seq[i];
    let prev = |k: usize| if i >= k { Some(seq[i - k]) } else { None };
    let mut f = Vec::new();
    if t == "cat" {
        f.push(0);
    }
    if t == "dog" || t == "wolf" {
        f.push(1);
    }
    if t == "bank" && prev(1) == Some("river") {
        f.push(2);
    }
    if t.chars().all(|c| c.is_ascii_digit()) {
        f.push(3);
    }
    if t == "city" && prev(1) == Some("york") && prev(2) == Some("new") {
        f.push(4);
    }
    if t.chars().all(|c| c.is_ascii_uppercase()) {
        f.push(5);
    }
    if t == "the" {
        // Every tenth "the": a feature that a common token must not label with high precision.
        *the_counter += 1;
        if (*the_counter).is_multiple_of(10) {
            f.push(6);
        }
    }
    if i == 0 {
        f.push(7);
    }
    f
}

fn corpus() -> Vec<Vec<&'static str>> {
    let mut rng = Lcg(42);
    let mut seqs = Vec::new();
    for _ in 0..300 {
        let mut s: Vec<&str> = Vec::new();
        while s.len() < 40 {
            match rng.next() % 9 {
                0 => s.extend(["river", "bank"]),
                1 => s.extend(["money", "bank"]),
                2 => s.extend(["new", "york", "city"]),
                3 => s.extend(["old", "york", "city"]),
                _ => s.push(WORDS[(rng.next() % WORDS.len() as u64) as usize]),
            }
        }
        s.truncate(40);
        seqs.push(s);
    }
    seqs
}

fn build_planted(ngrams: bool) -> (FeatureDictionary, Vec<Vec<&'static str>>) {
    let mut config = DictionaryConfig::default();
    if ngrams {
        config.extraction.ngram_capacity = 256;
    }
    (build_planted_with(config), corpus())
}

/// The planted corpus built with `config`.
fn build_planted_with(config: DictionaryConfig) -> FeatureDictionary {
    let seqs = corpus();
    let mut vocab = Vocab::new();
    let mut rows = Rows {
        tokens: vec![],
        sequences: vec![],
        positions: vec![],
        firings: vec![],
    };
    let mut the_counter = 0;
    for (s, seq) in seqs.iter().enumerate() {
        for i in 0..seq.len() {
            rows.tokens.push(vocab.intern(seq[i]));
            rows.sequences.push(s as u64);
            rows.positions.push(i as u32);
            rows.firings.push(
                planted(seq, i, &mut the_counter)
                    .into_iter()
                    .map(|f| (f, 1.0 + (i % 3) as f32))
                    .collect(),
            );
        }
    }
    build(&[rows], 8, &vocab, config, 3)
}

/// Brute force: (occurrences of the token set, firings of `feature` on it, all firings).
fn truth_tokens(seqs: &[Vec<&str>], feature: u32, tokens: &[&str]) -> (u64, u64, u64) {
    let mut the_counter = 0;
    let (mut occ, mut on, mut all) = (0, 0, 0);
    for seq in seqs {
        for i in 0..seq.len() {
            let fires = planted(seq, i, &mut the_counter).contains(&feature);
            let hit = tokens.contains(&seq[i]);
            occ += hit as u64;
            on += (hit && fires) as u64;
            all += fires as u64;
        }
    }
    (occ, on, all)
}

fn options(strategies: &[LabelingStrategy]) -> LabelOptions {
    let mut o = LabelOptions::default();
    o.config.strategies = strategies.to_vec();
    o.config.min_confidence = 0.0;
    o.config.max_labels = 10;
    o.config.min_token_frequency = 1;
    o
}

const ALL_AUTO: [LabelingStrategy; 3] = [
    LabelingStrategy::TokenFrequency,
    LabelingStrategy::NgramAnalysis,
    LabelingStrategy::PatternMatching,
];

#[test]
fn planted_token_labels_have_planted_precision_and_recall() {
    let (mut dict, seqs) = build_planted(true);
    label::label_dictionary(&mut dict, &options(&ALL_AUTO), None).unwrap();

    // Feature 0 fires on every "cat" and nothing else.
    let f = dict.get(0).unwrap();
    let top = &f.metadata.label_details[0];
    assert_eq!(f.labels[0], "token:cat");
    assert_eq!((top.precision, top.recall), (Some(1.0), Some(1.0)));
    assert_eq!(f.confidence, 1.0);
    assert_eq!(top.strategy, LabelingStrategy::TokenFrequency);

    // Feature 1 fires on "dog" and "wolf": "dog" (twice as common) is first, precision 1,
    // recall = dog's share of the firings.
    let f = dict.get(1).unwrap();
    let (occ, on, all) = truth_tokens(&seqs, 1, &["dog"]);
    assert_eq!(occ, on);
    let top = &f.metadata.label_details[0];
    assert_eq!(top.text, "token:dog");
    assert_eq!(top.precision, Some(1.0));
    assert_eq!(top.recall, Some(on as f64 / all as f64));
    assert!(f.labels.contains(&"token:wolf".to_string()));

    // Feature 6 fires on every tenth "the": precision 0.1, so F1 stays low...
    let f = dict.get(6).unwrap();
    let (occ, on, all) = truth_tokens(&seqs, 6, &["the"]);
    let top = &f.metadata.label_details[0];
    assert_eq!(top.text, "token:the");
    assert_eq!(top.precision, Some(on as f64 / occ as f64));
    assert_eq!(top.recall, Some(1.0));
    assert_eq!(on, all);
    assert!((top.precision.unwrap() - 0.1).abs() < 0.01);
    // ... and with the default min_confidence (0.3) "the" labels nothing.
    let (mut d2, _) = build_planted(false);
    let mut o = LabelOptions::default();
    o.config.min_token_frequency = 1;
    label::label_dictionary(&mut d2, &o, None).unwrap();
    assert!(d2.get(6).unwrap().labels.is_empty());
    assert_eq!(d2.get(0).unwrap().labels[0], "token:cat");
    // The description carries the best label with its precision/recall.
    let desc = &d2.get(0).unwrap().description;
    assert!(
        desc.contains("token:cat (precision 1.00, recall 1.00)"),
        "{desc}"
    );
    // Feature 7 fires at position 0 of every sequence: no token explains it, the description
    // names the position.
    let f7 = d2.get(7).unwrap();
    assert_eq!(f7.metadata.positions.as_ref().unwrap().start, 300);
    assert!(
        f7.description
            .contains("at the start of sequences (positions < 5) 100% of the time"),
        "{}",
        f7.description
    );
    assert!(!desc.contains("start of sequences"));
}

#[test]
fn planted_ngram_labels() {
    let (mut dict, seqs) = build_planted(true);
    label::label_dictionary(&mut dict, &options(&ALL_AUTO), None).unwrap();

    // Feature 2 fires on "bank" only after "river": the bigram explains it exactly, the
    // token "bank" only partly (it also follows "money").
    let f = dict.get(2).unwrap();
    let top = &f.metadata.label_details[0];
    assert_eq!(top.text, "ngram:river bank");
    assert_eq!((top.precision, top.recall), (Some(1.0), Some(1.0)));
    let (occ, on, _) = truth_tokens(&seqs, 2, &["bank"]);
    let bank = f
        .metadata
        .label_details
        .iter()
        .find(|l| l.text == "token:bank")
        .unwrap();
    assert_eq!(bank.precision, Some(on as f64 / occ as f64));
    assert!(bank.precision.unwrap() < 1.0);

    // Feature 4 fires on "city" only after "new york": the trigram, not "york city".
    let f = dict.get(4).unwrap();
    let top = &f.metadata.label_details[0];
    assert_eq!(top.text, "ngram:new york city");
    assert_eq!((top.precision, top.recall), (Some(1.0), Some(1.0)));
    let yc = f
        .metadata
        .label_details
        .iter()
        .find(|l| l.text == "ngram:york city")
        .unwrap();
    assert!(yc.precision.unwrap() < 1.0 && yc.recall == Some(1.0));
}

#[test]
fn planted_pattern_labels_are_case_sensitive() {
    let (mut dict, _) = build_planted(false);
    label::label_dictionary(&mut dict, &options(&ALL_AUTO), None).unwrap();

    let f = dict.get(3).unwrap();
    let top = &f.metadata.label_details[0];
    assert_eq!(top.text, "pattern:number");
    assert_eq!((top.precision, top.recall), (Some(1.0), Some(1.0)));

    // "NASA" and "FBI" — not "Nasa", not "the": uppercase is case-sensitive.
    let f = dict.get(5).unwrap();
    let top = &f.metadata.label_details[0];
    assert_eq!(top.text, "pattern:uppercase");
    assert_eq!((top.precision, top.recall), (Some(1.0), Some(1.0)));

    // "the" is an article (case-insensitive word list); the "the" feature gets it with the
    // same precision as the token (the only article-matching tokens are "the" and "a").
    let f = dict.get(6).unwrap();
    let art = f
        .metadata
        .label_details
        .iter()
        .find(|l| l.text == "pattern:article")
        .unwrap();
    assert_eq!(art.recall, Some(1.0));
    assert!(!f.labels.iter().any(|l| l == "pattern:uppercase"));
}

#[test]
fn manual_labels_survive_relabeling_and_round_trip() {
    let (mut dict, _) = build_planted(false);
    let f = dict.feature_set.features.get_mut(&1).unwrap();
    manual::set_manual_label(f, "canines");
    label::label_dictionary(&mut dict, &options(&ALL_AUTO), None).unwrap();
    label::label_dictionary(
        &mut dict,
        &options(&[LabelingStrategy::PatternMatching]),
        None,
    )
    .unwrap();
    let f = dict.get(1).unwrap();
    assert_eq!(f.labels[0], "canines");
    assert_eq!(
        f.metadata.label_details[0].strategy,
        LabelingStrategy::Manual
    );
    assert_eq!(f.confidence, 1.0);
    // Automatic labels of the first run were replaced by the second run's (patterns only).
    assert!(!f.labels.iter().any(|l| l.starts_with("token:")));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.json");
    feature_dictionary::store::save(&dict, &path).unwrap();
    let back = feature_dictionary::store::load(&path).unwrap();
    assert_eq!(back.get(1).unwrap().labels, dict.get(1).unwrap().labels);
    assert_eq!(
        back.get(1).unwrap().metadata.label_details,
        dict.get(1).unwrap().metadata.label_details
    );
}

#[test]
fn precision_ranking_prefers_exact_tokens() {
    let (mut dict, _) = build_planted(false);
    let mut o = options(&[LabelingStrategy::TokenFrequency]);
    o.rank = Rank::Precision;
    label::label_dictionary(&mut dict, &o, None).unwrap();
    let f = dict.get(1).unwrap();
    assert_eq!(f.metadata.label_details[0].confidence, 1.0);
    assert_eq!(f.metadata.label_details[1].confidence, 1.0);
}

#[test]
fn user_patterns_from_toml_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let toml_path = dir.path().join("p.toml");
    std::fs::write(
        &toml_path,
        "animal = { regex = \"^(CAT|DOG|WOLF)$\", case_insensitive = true }\nnum3 = \"^\\\\d{3}$\"\n",
    )
    .unwrap();
    let pats = label::pattern::load_patterns(&toml_path).unwrap();
    assert_eq!(pats["animal"], "(?i)^(CAT|DOG|WOLF)$");
    let json_path = dir.path().join("p.json");
    std::fs::write(&json_path, r#"{"bad": "("}"#).unwrap();
    let err = label::pattern::load_patterns(&json_path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("p.json") && err.contains("bad"), "{err}");

    let (mut dict, _) = build_planted(false);
    let mut o = options(&[LabelingStrategy::PatternMatching]);
    o.config.patterns = pats;
    label::label_dictionary(&mut dict, &o, None).unwrap();
    // Feature 1 fires on all dogs and wolves but no cat: precision = (dog+wolf)/(cat+dog+wolf).
    let f = dict.get(1).unwrap();
    let (occ, on, all) = truth_tokens(&corpus(), 1, &["cat", "dog", "wolf"]);
    let top = &f.metadata.label_details[0];
    assert_eq!(top.text, "pattern:animal");
    assert_eq!(top.precision, Some(on as f64 / occ as f64));
    assert_eq!(top.recall, Some(on as f64 / all as f64));
}

#[test]
fn a_min_confidence_outside_0_to_1_is_refused_and_the_dictionary_left_alone() {
    let (mut dict, _) = build_planted(false);
    let before = dict.clone();
    for c in [f64::NAN, -0.1, 1.5, f64::INFINITY] {
        let mut o = options(&[LabelingStrategy::TokenFrequency]);
        o.config.min_confidence = c;
        let e = label::label_dictionary(&mut dict, &o, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("min_confidence") && e.contains("0..=1"),
            "{c}: {e}"
        );
        assert_eq!(dict, before, "{c}");
    }
    // Both ends are allowed, and what is stored reads back.
    for c in [0.0, 1.0] {
        let mut o = options(&[LabelingStrategy::TokenFrequency]);
        o.config.min_confidence = c;
        label::label_dictionary(&mut dict, &o, None).unwrap();
        assert_eq!(dict.config.labeling.min_confidence, c);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.json");
        feature_dictionary::store::save(&dict, &path).unwrap();
        let back = feature_dictionary::store::load(&path).unwrap();
        assert_eq!(back.config.labeling.min_confidence, c);
    }
}

#[test]
fn a_manual_label_over_an_automatic_one_gives_it_back_when_removed() {
    let (mut dict, _) = build_planted(false);
    label::label_dictionary(&mut dict, &options(&ALL_AUTO), None).unwrap();
    let before = dict.get(0).unwrap().clone();
    let auto = before.metadata.label_details[0].clone();
    assert_eq!(auto.strategy, LabelingStrategy::TokenFrequency);
    let f = dict.feature_set.features.get_mut(&0).unwrap();
    manual::set_manual_label(f, &auto.text);
    assert_eq!(
        f.metadata.label_details[0].strategy,
        LabelingStrategy::Manual
    );
    assert_eq!(f.labels.iter().filter(|t| **t == auto.text).count(), 1);
    // Labeling again keeps the manual label first and the automatic one hidden under it.
    label::label_dictionary(&mut dict, &options(&ALL_AUTO), None).unwrap();
    let f = dict.feature_set.features.get_mut(&0).unwrap();
    assert_eq!(f.labels.iter().filter(|t| **t == auto.text).count(), 1);
    assert!(manual::remove_manual_label(f, &auto.text));
    assert_eq!(f.labels, before.labels);
    assert_eq!(f.metadata.label_details, before.metadata.label_details);
    assert_eq!(f.confidence, before.confidence);
    assert!(!f
        .metadata
        .extra
        .contains_key(manual::AUTOMATIC_UNDER_MANUAL_KEY));
    // The same through clearing every manual label, and a save in between.
    manual::set_manual_label(f, &auto.text);
    manual::set_manual_label(f, "felines");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.fdict");
    feature_dictionary::store::save(&dict, &path).unwrap();
    let mut back = feature_dictionary::store::load(&path).unwrap();
    let f = back.feature_set.features.get_mut(&0).unwrap();
    assert_eq!(manual::clear_manual_labels(f), 2);
    assert_eq!(f.metadata.label_details, before.metadata.label_details);
}

#[test]
fn a_hidden_automatic_label_keeps_its_place_within_max_labels() {
    let (mut dict, _) = build_planted(false);
    let mut one = options(&ALL_AUTO);
    one.config.max_labels = 1;
    label::label_dictionary(&mut dict, &one, None).unwrap();
    let auto = dict.get(0).unwrap().labels[0].clone();
    let f = dict.feature_set.features.get_mut(&0).unwrap();
    manual::set_manual_label(f, &auto);
    label::label_dictionary(&mut dict, &one, None).unwrap();
    let f = dict.feature_set.features.get_mut(&0).unwrap();
    // The manual label alone is shown: the one automatic slot is the hidden label's.
    assert_eq!(f.labels, vec![auto.clone()]);
    manual::clear_manual_labels(f);
    assert_eq!(f.labels, vec![auto]);
    assert_eq!(
        f.metadata.label_details[0].strategy,
        LabelingStrategy::TokenFrequency
    );
}

/// Labels whose counts come from a sketch (a table past its capacity) say so in their
/// evidence, and a description shows such top-token counts as "≥": feature 3 fires on three
/// tokens ("1", "22", "333") and on more n-grams than a table of one holds; feature 0 fires
/// on "cat" alone, which one entry counts exactly.
#[test]
fn labels_from_sketched_counts_say_so() {
    let mut config = DictionaryConfig::default();
    config.extraction.ngram_capacity = 1;
    config.extraction.token_sketch_capacity = 1;
    let mut dict = build_planted_with(config);
    label::label_dictionary(&mut dict, &options(&ALL_AUTO), None).unwrap();
    let sketched = dict.get(3).unwrap();
    assert_eq!(sketched.metadata.token_counts_exact, Some(false));
    let mut strategies = std::collections::BTreeSet::new();
    for l in &sketched.metadata.label_details {
        let note = match l.strategy {
            LabelingStrategy::NgramAnalysis if l.text.contains(' ') => label::NGRAM_SKETCH_BOUNDS,
            _ => label::SKETCH_BOUNDS,
        };
        assert!(l.evidence.iter().any(|e| e == note), "{l:?}");
        strategies.insert(l.strategy.as_str());
    }
    assert!(
        strategies.contains("token_frequency") && strategies.contains("pattern_matching"),
        "{strategies:?}"
    );
    assert!(
        sketched.description.contains(" ×≥"),
        "{}",
        sketched.description
    );

    let exact = dict.get(0).unwrap();
    assert_eq!(exact.metadata.token_counts_exact, Some(true));
    assert!(!exact.metadata.label_details.is_empty());
    for l in &exact.metadata.label_details {
        assert!(!l.evidence.iter().any(|e| e.contains("sketch")), "{l:?}");
    }
    assert!(!exact.description.contains('≥'), "{}", exact.description);
}
