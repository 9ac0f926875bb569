//! Real data: the SmolLM2 layer-9 TopK SAE dev set (200 sequences × 64 tokens, 3,072
//! latents, k = 24). The fixture (tests/fixtures/smollm2_dev, made by
//! scripts/make_label_fixture.py) holds each row's 24 firing latents, the token ids, their
//! strings and truth.json's `best_token` of every latent.
//!
//! Token labels must reproduce `best_token` (token, precision, recall) for every latent that
//! has one; n-gram counts must equal a brute-force count over the fixture.

mod common_label;

use std::collections::HashMap;

use common_label::{build, Rows};
use feature_dictionary::ingest::Vocab;
use feature_dictionary::label::{self, ngram, token_frequency, LabelOptions, Rank};
use feature_dictionary::model::{DictionaryConfig, LabelingStrategy};
use feature_dictionary::FeatureDictionary;

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smollm2_dev");
const SEQ_LEN: usize = 64;
const K: usize = 24;
const D_SAE: usize = 3072;

/// truth.json's best token of a latent: (token id, token, firings on it, its occurrences,
/// the latent's firings).
type BestToken = Option<(u32, String, u64, u64, u64)>;

struct Fixture {
    latents: Vec<u16>,
    token_ids: Vec<u32>,
    vocab: Vocab,
    truth: Vec<BestToken>,
}

fn load() -> Fixture {
    let raw = std::fs::read(format!("{FIX}/latents_u16.bin")).unwrap();
    let latents: Vec<u16> = raw
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let raw = std::fs::read(format!("{FIX}/token_ids.bin")).unwrap();
    let token_ids: Vec<u32> = raw
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(latents.len(), token_ids.len() * K);
    let strings: HashMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIX}/vocab.json")).unwrap())
            .unwrap();
    // Ids are the tokenizer's: ids that do not occur get a placeholder string.
    let max_id = *token_ids.iter().max().unwrap() as usize;
    let mut table: Vec<String> = (0..=max_id).map(|i| format!("<unused:{i}>")).collect();
    for (id, s) in strings {
        table[id.parse::<usize>().unwrap()] = s;
    }
    let truth = serde_json::from_str(
        &std::fs::read_to_string(format!("{FIX}/truth_best_token.json")).unwrap(),
    )
    .unwrap();
    Fixture {
        latents,
        token_ids,
        vocab: Vocab::from_strings(table),
        truth,
    }
}

fn dictionary(fx: &Fixture, ngrams: bool) -> FeatureDictionary {
    // Four batches of 50 whole sequences, three feature partitions: exercises merge-free
    // multi-batch and multi-range accumulation.
    let n_rows = fx.token_ids.len();
    let mut batches = Vec::new();
    let rows_per_batch = 50 * SEQ_LEN;
    for start in (0..n_rows).step_by(rows_per_batch) {
        let end = (start + rows_per_batch).min(n_rows);
        let rows = Rows {
            tokens: fx.token_ids[start..end].to_vec(),
            sequences: (start..end).map(|r| (r / SEQ_LEN) as u64).collect(),
            positions: (start..end).map(|r| (r % SEQ_LEN) as u32).collect(),
            firings: (start..end)
                .map(|r| {
                    fx.latents[r * K..(r + 1) * K]
                        .iter()
                        .map(|&l| (l as u32, 1.0))
                        .collect()
                })
                .collect(),
        };
        batches.push(rows);
    }
    let mut config = DictionaryConfig::default();
    if ngrams {
        config.extraction.ngram_capacity = 1 << 15;
    }
    build(&batches, D_SAE, &fx.vocab, config, 3)
}

fn truth_options() -> LabelOptions {
    let mut o = LabelOptions {
        rank: Rank::Precision,
        min_occurrences: 5,
        ..Default::default()
    };
    o.config.min_token_frequency = 1;
    o.config.min_confidence = 0.0;
    o.config.strategies = vec![LabelingStrategy::TokenFrequency];
    o
}

#[test]
fn token_labels_reproduce_truth_best_token() {
    let fx = load();
    let mut dict = dictionary(&fx, false);
    assert_eq!(dict.feature_set.total_tokens_processed, 12_800);
    let options = truth_options();
    label::label_dictionary(&mut dict, &options, None).unwrap();
    let mut checked = 0;
    for (latent, truth) in fx.truth.iter().enumerate() {
        let f = dict.get(latent as u64).unwrap();
        assert_eq!(f.metadata.token_counts_exact, Some(true));
        let best = token_frequency::best_token(f, &options);
        match truth {
            None => {
                assert!(best.is_none(), "latent {latent}: truth has no best token");
                assert!(!f.labels.iter().any(|l| l.starts_with("token:")));
            }
            Some((id, token, firings, occurrences, count)) => {
                assert_eq!(fx.vocab.token(*id), token.as_str());
                assert_eq!(f.activation_count, *count, "latent {latent}");
                let best = best.expect("a best token");
                assert_eq!(&best.token, token, "latent {latent}");
                assert_eq!(best.counts.firings, *firings, "latent {latent}");
                assert_eq!(best.counts.occurrences, *occurrences, "latent {latent}");
                // truth.json's precision and recall are these ratios in float64.
                let p = *firings as f64 / *occurrences as f64;
                let r = *firings as f64 / *count as f64;
                let top = &f.metadata.label_details[0];
                assert_eq!(top.text, format!("token:{token}"), "latent {latent}");
                assert_eq!(top.precision, Some(p), "latent {latent}");
                assert_eq!(top.recall, Some(r), "latent {latent}");
                assert_eq!(f.confidence, p);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 3062);
}

#[test]
fn ngram_counts_equal_brute_force_on_real_data() {
    let fx = load();
    let dict = dictionary(&fx, true);
    // Brute force: corpus counts of every 2-/3-gram, per-latent counts of those ending at a
    // firing.
    let n_rows = fx.token_ids.len();
    let gram = |r: usize, n: usize| -> Option<Vec<u32>> {
        let pos = r % SEQ_LEN;
        (pos + 1 >= n).then(|| fx.token_ids[r + 1 - n..=r].to_vec())
    };
    let mut corpus: HashMap<Vec<u32>, u64> = HashMap::new();
    let mut per: Vec<HashMap<Vec<u32>, u64>> = vec![HashMap::new(); D_SAE];
    for r in 0..n_rows {
        for n in [2, 3] {
            if let Some(g) = gram(r, n) {
                *corpus.entry(g.clone()).or_default() += 1;
                for &l in &fx.latents[r * K..(r + 1) * K] {
                    *per[l as usize].entry(g.clone()).or_default() += 1;
                }
            }
        }
    }
    let strings =
        |g: &[u32]| -> Vec<String> { g.iter().map(|&t| fx.vocab.token(t).into_owned()).collect() };
    for (latent, expected) in per.iter().enumerate() {
        let f = dict.get(latent as u64).unwrap();
        let stored = ngram::stored_ngrams(f);
        assert_eq!(
            f.metadata.extra[ngram::EXACT_KEY],
            serde_json::Value::Bool(true)
        );
        let mut want: Vec<ngram::NgramCount> = expected
            .iter()
            .map(|(g, &c)| ngram::NgramCount(strings(g), c, corpus[g]))
            .collect();
        want.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then_with(|| a.0.cmp(&b.0))
                .then(a.2.cmp(&b.2))
        });
        let mut got = stored.clone();
        got.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then_with(|| a.0.cmp(&b.0))
                .then(a.2.cmp(&b.2))
        });
        assert_eq!(got, want, "latent {latent}");
    }
}

#[test]
fn merged_halves_equal_one_pass_for_ngrams_and_correlation() {
    use feature_dictionary::accumulate::{Accumulator, Settings};
    use feature_dictionary::finalize::finalize;
    let fx = load();
    // The first 40 sequences keep exact
    // correlation (3,072² / 2 co-moments) quick.
    let rows_of = |from: usize, to: usize| Rows {
        tokens: fx.token_ids[from..to].to_vec(),
        sequences: (from..to).map(|r| (r / SEQ_LEN) as u64).collect(),
        positions: (from..to).map(|r| (r % SEQ_LEN) as u32).collect(),
        firings: (from..to)
            .map(|r| {
                fx.latents[r * K..(r + 1) * K]
                    .iter()
                    .map(|&l| (l as u32, 1.0 + (r % 7) as f32))
                    .collect()
            })
            .collect(),
    };
    let mut config = DictionaryConfig::default();
    config.extraction.ngram_capacity = 64;
    config.extraction.correlation = "exact".into();
    let settings = Settings::from_config(&config.extraction).unwrap();
    let cut = 17 * SEQ_LEN;
    let end = 40 * SEQ_LEN;
    let mut one = Accumulator::new(D_SAE, settings.clone(), 2);
    one.update(&rows_of(0, cut).batch(D_SAE)).unwrap();
    one.update(&rows_of(cut, end).batch(D_SAE)).unwrap();
    let mut a = Accumulator::new(D_SAE, settings.clone(), 3);
    let mut b = Accumulator::new(D_SAE, settings, 1);
    a.update(&rows_of(0, cut).batch(D_SAE)).unwrap();
    b.update(&rows_of(cut, end).batch(D_SAE)).unwrap();
    a.merge(b).unwrap();
    let d1 = finalize(&one, &fx.vocab, config.clone());
    let d2 = finalize(&a, &fx.vocab, config);
    for (f1, f2) in d1.features().zip(d2.features()) {
        assert_eq!(f1.activation_count, f2.activation_count);
        if f1.activation_count == 0 {
            continue;
        }
        // Small capacity: sketches may differ in what they evicted, but exact ones agree and
        // every reported count is within the bound of the true count.
        let (e1, e2) = (
            &f1.metadata.extra[ngram::EXACT_KEY],
            &f2.metadata.extra[ngram::EXACT_KEY],
        );
        if e1 == &serde_json::Value::Bool(true) && e2 == e1 {
            assert_eq!(ngram::stored_ngrams(f1), ngram::stored_ngrams(f2));
        }
        let c1 = &f1.metadata.extra["correlated"];
        let c2 = &f2.metadata.extra["correlated"];
        let p1: Vec<(u64, f64)> = serde_json::from_value(c1.clone()).unwrap();
        let p2: Vec<(u64, f64)> = serde_json::from_value(c2.clone()).unwrap();
        assert_eq!(p1.len(), p2.len(), "feature {}", f1.id);
        // Sums in another order: values agree to rounding; only a tie at the cut-off could
        // swap a partner.
        let mut common = 0;
        for x in &p1 {
            if let Some(y) = p2.iter().find(|y| y.0 == x.0) {
                assert!((x.1 - y.1).abs() < 1e-9, "feature {}", f1.id);
                common += 1;
            }
        }
        assert!(common + 1 >= p1.len(), "feature {}", f1.id);
    }
}

/// The correlation sketch on real latents (3,072 features, 24 firing per token, 12,800
/// tokens), against φ of the firings computed by brute force: with the default table size
/// at least 99 % of the five strongest partners of every feature firing 50 times or more are
/// found and the values are close. (With 64
/// partners per feature, as before, 44 % of them were lost: every firing feeds its table 23
/// co-firings, so the Misra–Gries error bound is 23 × firings / (capacity + 1).)
#[test]
fn correlation_sketch_finds_the_strongest_partners_of_real_features() {
    use feature_dictionary::accumulate::coactivation::phi;
    use feature_dictionary::accumulate::{Accumulator, Settings};
    use feature_dictionary::finalize::finalize;
    let fx = load();
    let n_rows = fx.token_ids.len();
    let rows = Rows {
        tokens: fx.token_ids.clone(),
        sequences: (0..n_rows).map(|r| (r / SEQ_LEN) as u64).collect(),
        positions: (0..n_rows).map(|r| (r % SEQ_LEN) as u32).collect(),
        firings: (0..n_rows)
            .map(|r| {
                let mut v: Vec<(u32, f32)> = fx.latents[r * K..(r + 1) * K]
                    .iter()
                    .map(|&l| (l as u32, 1.0))
                    .collect();
                v.sort_by_key(|p| p.0);
                v
            })
            .collect(),
    };
    let mut config = DictionaryConfig::default();
    config.extraction.correlation = "sketch".into();
    let settings = Settings::from_config(&config.extraction).unwrap();
    let mut acc = Accumulator::new(D_SAE, settings, 2);
    acc.update(&rows.batch(D_SAE)).unwrap();
    let dict = finalize(&acc, &fx.vocab, config);
    // Brute force: firings and co-firings per pair.
    let mut fires = vec![0u64; D_SAE];
    let mut co: HashMap<(u32, u32), u64> = HashMap::new();
    for row in &rows.firings {
        for &(i, _) in row {
            fires[i as usize] += 1;
            for &(j, _) in row {
                if i != j {
                    *co.entry((i, j)).or_default() += 1;
                }
            }
        }
    }
    let n = n_rows as u64;
    let (mut wanted, mut found, mut worst) = (0, 0, 0.0f64);
    for f in dict.features().filter(|f| f.activation_count >= 50) {
        let i = f.id as u32;
        let mut exact: Vec<(u32, f64)> = (0..D_SAE as u32)
            .filter(|&j| j != i)
            .filter_map(|j| {
                let nij = co.get(&(i, j)).copied().unwrap_or(0);
                phi(nij, fires[i as usize], fires[j as usize], n).map(|r| (j, r))
            })
            .collect();
        exact.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let stored: Vec<(u64, f64)> =
            serde_json::from_value(f.metadata.extra["correlated"].clone()).unwrap();
        for &(j, r) in exact.iter().take(5).filter(|p| p.1 > 0.0) {
            wanted += 1;
            if let Some(s) = stored.iter().find(|s| s.0 == j as u64) {
                found += 1;
                worst = worst.max((s.1 - r).abs());
            }
        }
    }
    assert!(wanted > 5_000, "{wanted}");
    assert!(
        found as f64 >= 0.99 * wanted as f64,
        "{found} of {wanted} strongest partners found"
    );
    assert!(worst < 0.1, "largest φ error {worst}");
}

/// An n-gram label is left out when a shorter n-gram (or the token) ending it fires at the
/// same positions — same firings, same occurrences — since it would only repeat that
/// label's evidence. The real fixture has many such n-grams; none is labeled, while the
/// n-grams that narrow their suffix down still are.
#[test]
fn ngram_labels_that_repeat_a_shorter_one_are_left_out() {
    let fx = load();
    let mut dict = dictionary(&fx, true);
    let mut options = LabelOptions::default();
    options.config.min_token_frequency = 1;
    options.config.min_confidence = 0.0;
    options.config.max_labels = 10_000;
    options.config.strategies = vec![
        LabelingStrategy::TokenFrequency,
        LabelingStrategy::NgramAnalysis,
    ];
    label::label_dictionary(&mut dict, &options, None).unwrap();
    let (mut repeating, mut labeled) = (0, 0);
    for f in dict.features() {
        // Counts of every token and stored n-gram of the feature, by its tokens.
        let mut counts: HashMap<Vec<String>, (u64, u64)> = f
            .metadata
            .top_tokens
            .iter()
            .map(|t| (vec![t.token.clone()], (t.firings, t.occurrences)))
            .collect();
        let stored = ngram::stored_ngrams(f);
        for ngram::NgramCount(tokens, firings, occurrences) in &stored {
            counts.insert(tokens.clone(), (*firings, *occurrences));
        }
        let repeats = |tokens: &[String], c: (u64, u64)| {
            (1..tokens.len()).any(|k| counts.get(&tokens[k..]) == Some(&c))
        };
        let labels: std::collections::HashSet<&str> = f.labels.iter().map(String::as_str).collect();
        // Different tokens can join to the same text ([".", "\t"] and [".\t"]): such
        // texts do not say which n-gram a label is.
        let mut texts: HashMap<String, usize> = HashMap::new();
        for g in &stored {
            *texts.entry(format!("ngram:{}", g.0.concat())).or_default() += 1;
        }
        for ngram::NgramCount(tokens, firings, occurrences) in &stored {
            let text = format!("ngram:{}", tokens.concat());
            if texts[&text] > 1 {
                continue;
            }
            if repeats(tokens, (*firings, *occurrences)) {
                repeating += 1;
                assert!(
                    !labels.contains(text.as_str()),
                    "feature {}: {text:?}",
                    f.id
                );
            } else if labels.contains(text.as_str()) {
                labeled += 1;
            }
        }
    }
    assert!(repeating > 1000, "{repeating}");
    assert!(labeled > 1000, "{labeled}");
}

/// Where an n-gram is left out for a shorter one with the same firings and occurrences,
/// the shorter one takes its place in the ranking: the labels are the candidates in
/// ranking order (stable among ties, so the stored order breaks them) with each replaced
/// by its shortest such suffix, first occurrences kept — under precision ranking, where
/// ties are many, an unrelated label tied with both must not take the place.
#[test]
fn a_left_out_ngrams_shorter_stand_in_takes_its_place() {
    use feature_dictionary::label::{CorpusFacts, Counts, Labeler};
    let fx = load();
    let dict = dictionary(&fx, true);
    let mut options = LabelOptions {
        rank: Rank::Precision,
        ..Default::default()
    };
    options.config.min_token_frequency = 1;
    options.config.max_labels = 2;
    options.config.ngram_sizes = vec![1, 2, 3];
    let labeler = ngram::NgramAnalysis::new(
        CorpusFacts {
            tokens_carry_spaces: true,
        },
        true,
    );
    let (mut replaced, mut checked) = (0, 0);
    for f in dict.features() {
        let total = f.activation_count;
        let counts = |firings, occurrences| Counts {
            firings,
            occurrences,
            total_firings: total,
        };
        let mut cands: Vec<(Vec<String>, Counts)> = f
            .metadata
            .top_tokens
            .iter()
            .map(|t| (vec![t.token.clone()], counts(t.firings, t.occurrences)))
            .chain(
                ngram::stored_ngrams(f)
                    .into_iter()
                    .map(|ngram::NgramCount(t, fi, oc)| (t, counts(fi, oc))),
            )
            .filter(|(_, c)| options.admits(c))
            .collect();
        cands.sort_by(|a, b| a.1.cmp_best_first(&b.1, options.rank));
        let same: HashMap<&[String], (u64, u64)> = cands
            .iter()
            .map(|(t, c)| (t.as_slice(), (c.firings, c.occurrences)))
            .collect();
        // By tokens, not texts: [".\t"] and [".", "\t"] are two labels of the same text.
        let mut want: Vec<&[String]> = Vec::new();
        for (tokens, c) in &cands {
            let stand_in = (1..tokens.len())
                .rev()
                .map(|k| &tokens[k..])
                .find(|s| same.get(s) == Some(&(c.firings, c.occurrences)))
                .unwrap_or(tokens);
            replaced += (stand_in.len() < tokens.len()) as usize;
            if !want.contains(&stand_in) {
                want.push(stand_in);
            }
        }
        want.truncate(options.config.max_labels * 4);
        let want: Vec<String> = want
            .iter()
            .map(|t| format!("ngram:{}", t.concat()))
            .collect();
        let got: Vec<String> = labeler
            .label(f, &options)
            .into_iter()
            .map(|l| l.text)
            .collect();
        assert_eq!(got, want, "feature {}", f.id);
        checked += !got.is_empty() as usize;
    }
    assert!(replaced > 1000 && checked > 1000, "{replaced} {checked}");
}
