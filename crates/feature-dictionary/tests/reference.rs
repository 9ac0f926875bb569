//! The accumulator against brute-force reference computations on random data, read through
//! the real `.npy` + tokens JSON readers.

use std::collections::HashMap;
use std::path::Path;

use feature_dictionary::accumulate::{histogram, Accumulator, Settings};
use feature_dictionary::build::{accumulate_source, build, BuildOptions};
use feature_dictionary::finalize::finalize;
use feature_dictionary::ingest::{npy, DenseSource, TokenSequences};
use feature_dictionary::model::{DictionaryConfig, FeatureType};
use feature_dictionary::FeatureDictionary;
use proptest::prelude::*;

mod common;
use common::Rng;

/// A random corpus: sequences of varied length (1 included), activations with deliberate
/// ties (values on a 1/8 grid) and a skewed token distribution.
struct Corpus {
    lengths: Vec<usize>,
    tokens: Vec<Vec<String>>,
    acts: Vec<f32>, // [rows × f]
    f: usize,
}

fn corpus(seed: u64, n_seq: usize, f: usize, density: f64) -> Corpus {
    let mut rng = Rng(seed | 1);
    let words = [
        "the", "cat", " sat", "on", "<mat>", "\n", "dog", "a", "ran", "far",
    ];
    let mut lengths = Vec::new();
    let mut tokens = Vec::new();
    for s in 0..n_seq {
        let len = if s % 7 == 3 {
            1
        } else {
            2 + rng.below(40) as usize
        };
        lengths.push(len);
        tokens.push(
            (0..len)
                .map(|_| {
                    let i = (rng.unit() * rng.unit() * words.len() as f64) as usize;
                    words[i].to_string()
                })
                .collect(),
        );
    }
    let rows: usize = lengths.iter().sum();
    let mut acts = vec![0f32; rows * f];
    for v in acts.iter_mut() {
        if rng.unit() < density {
            // Grid values make exact ties common; some fall below the 0.01 threshold.
            *v = (rng.below(40) as f32) / 8.0 + if rng.below(5) == 0 { 0.005 } else { 0.0 };
        }
    }
    Corpus {
        lengths,
        tokens,
        acts,
        f,
    }
}

/// Appends one sequence of `len` tokens to `c`, each activation firing with probability
/// `density` at a value on the 1/8 grid (as `corpus`'s).
fn push_sequence(c: &mut Corpus, len: usize, density: f64, rng: &mut Rng) {
    let words = [
        "the", "cat", " sat", "on", "<mat>", "\n", "dog", "a", "ran", "far",
    ];
    c.lengths.push(len);
    c.tokens.push(
        (0..len)
            .map(|_| words[rng.below(words.len() as u64) as usize].to_string())
            .collect(),
    );
    for _ in 0..len * c.f {
        c.acts.push(if rng.unit() < density {
            (1 + rng.below(40)) as f32 / 8.0
        } else {
            0.0
        });
    }
}

/// The feature type from the seed API's thresholds (written here independently of
/// `FeatureType::classify`): dead, ultra_sparse < 0.01 % of tokens, sparse < 1 %,
/// moderate < 10 %, dense ≥ 10 %; compared in exact integer arithmetic.
fn type_by_seed_thresholds(count: u64, total: u64) -> &'static str {
    if count == 0 {
        "dead"
    } else if count * 10_000 < total {
        "ultra_sparse"
    } else if count * 100 < total {
        "sparse"
    } else if count * 10 < total {
        "moderate"
    } else {
        "dense"
    }
}

fn write(c: &Corpus, dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let acts = dir.join(format!("{name}.npy"));
    let toks = dir.join(format!("{name}.json"));
    let rows = c.acts.len() / c.f;
    npy::write_f32(&acts, &[rows, c.f], &c.acts).unwrap();
    std::fs::write(&toks, serde_json::to_string(&c.tokens).unwrap()).unwrap();
    (acts, toks)
}

fn config(top_k: usize, window: usize) -> DictionaryConfig {
    let mut c = DictionaryConfig::default();
    c.extraction.max_examples_per_feature = top_k;
    c.extraction.context_window = window;
    c
}

fn source(acts: &Path, toks: &Path, window: usize, values_per_batch: usize) -> DenseSource {
    let m = npy::open(acts).unwrap();
    let t = TokenSequences::from_json_file(toks).unwrap();
    DenseSource::new(m, t, window, values_per_batch).unwrap()
}

fn build_dict(
    acts: &Path,
    toks: &Path,
    cfg: &DictionaryConfig,
    threads: usize,
    vpb: usize,
) -> FeatureDictionary {
    let mut src = source(acts, toks, cfg.extraction.context_window, vpb);
    let opts = BuildOptions {
        threads,
        allow_nonfinite: false,
    };
    build(&mut src, cfg.clone(), &opts, &mut |_| {}).unwrap()
}

#[test]
fn every_statistic_matches_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = corpus(42, 60, 37, 0.15);
    // Sequences longer than 50 tokens, so every position bucket (start < 5, early < 20,
    // middle < 50, late) holds firings; the 130-token one is split over many batches.
    let mut rng = Rng(4242);
    for len in [50, 51, 77, 130] {
        push_sequence(&mut c, len, 0.15, &mut rng);
    }
    // Every feature fires on both sides of each bucket boundary (positions 4/5, 19/20,
    // 49/50) of the 51-token sequence, at values above the threshold.
    let first_row_of_51: usize = c.lengths[..c.lengths.len() - 3].iter().sum();
    assert_eq!(c.lengths[c.lengths.len() - 3], 51);
    for p in [4, 5, 19, 20, 49, 50] {
        for feat in 0..c.f {
            c.acts[(first_row_of_51 + p) * c.f + feat] = 0.5 + feat as f32 / 8.0;
        }
    }
    let (acts, toks) = write(&c, dir.path(), "c");
    let (k, w) = (7, 3);
    // A tiny batch budget forces long sequences to be split with context margins.
    let dict = build_dict(&acts, &toks, &config(k, w), 2, 37 * 16);

    let thr = 0.01f32;
    let rows: usize = c.lengths.iter().sum();
    let mut seq_of = Vec::new();
    let mut pos_of = Vec::new();
    let mut tok_of = Vec::new();
    for (s, len) in c.lengths.iter().enumerate() {
        for p in 0..*len {
            seq_of.push(s as u64);
            pos_of.push(p as u32);
            tok_of.push(c.tokens[s][p].clone());
        }
    }
    let mut occurrences: HashMap<&str, u64> = HashMap::new();
    for t in &tok_of {
        *occurrences.entry(t).or_default() += 1;
    }
    assert_eq!(dict.feature_set.total_tokens_processed, rows as u64);
    assert_eq!(dict.num_features(), c.f);

    for feat in 0..c.f {
        let fired: Vec<(usize, f32)> = (0..rows)
            .map(|r| (r, c.acts[r * c.f + feat]))
            .filter(|&(_, v)| v >= thr)
            .collect();
        let got = dict.get(feat as u64).unwrap();
        assert_eq!(got.activation_count, fired.len() as u64, "count of {feat}");
        assert_eq!(
            got.feature_type,
            FeatureType::classify(fired.len() as u64, rows as u64)
        );
        assert_eq!(
            got.feature_type.as_str(),
            type_by_seed_thresholds(fired.len() as u64, rows as u64),
            "type of {feat}"
        );
        if fired.is_empty() {
            assert_eq!(got.feature_type, FeatureType::Dead);
            continue;
        }
        let n = fired.len() as f64;
        let sum: f64 = fired.iter().map(|x| x.1 as f64).sum();
        let mean = sum / n;
        let var = fired
            .iter()
            .map(|x| (x.1 as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!((got.mean_activation - mean).abs() < 1e-12 * mean.max(1.0));
        assert!((got.metadata.std_activation.unwrap() - var.sqrt()).abs() < 1e-9);
        let max = fired.iter().map(|x| x.1).fold(f32::MIN, f32::max);
        let min = fired.iter().map(|x| x.1).fold(f32::MAX, f32::min);
        assert_eq!(got.max_activation, max as f64);
        assert_eq!(got.metadata.min_activation, Some(min));
        assert_eq!(got.activation_frequency, n / rows as f64);

        // Top-k: activation desc, then sequence, then position; exact ties are common here.
        let mut order = fired.clone();
        order.sort_by(|a, b| {
            b.1.total_cmp(&a.1)
                .then(seq_of[a.0].cmp(&seq_of[b.0]))
                .then(pos_of[a.0].cmp(&pos_of[b.0]))
        });
        order.truncate(k);
        assert_eq!(got.top_activations.len(), order.len());
        for (ex, &(r, v)) in got.top_activations.iter().zip(&order) {
            assert_eq!(
                (ex.metadata.sequence, ex.position, ex.activation),
                (Some(seq_of[r]), pos_of[r], v)
            );
            assert_eq!(ex.token, tok_of[r]);
            // Context: ± w tokens clipped at the sequence edges, with this feature's values.
            let s = seq_of[r] as usize;
            let p = pos_of[r] as usize;
            let lo = p.saturating_sub(w);
            let hi = (p + w + 1).min(c.lengths[s]);
            assert_eq!(ex.context_tokens, c.tokens[s][lo..hi].to_vec());
            assert_eq!(ex.metadata.context_start as usize, lo);
            let first_row = r - p;
            let expect: Vec<f32> = (lo..hi)
                .map(|q| c.acts[(first_row + q) * c.f + feat])
                .collect();
            assert_eq!(ex.metadata.context_activations, expect);
            assert_eq!(ex.token_index_in_context(), Some(p - lo));
        }

        // Histogram: exact counts per fixed bin.
        let mut hist = vec![0u64; histogram::N_BINS];
        for &(_, v) in &fired {
            hist[histogram::bin(v)] += 1;
        }
        let h = got.metadata.histogram.as_ref().unwrap();
        let expect: Vec<(u32, u64)> = hist
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(b, &c)| (b as u32, c))
            .collect();
        assert_eq!(h.counts, expect);

        // Positions.
        let ps: Vec<f64> = fired.iter().map(|&(r, _)| pos_of[r] as f64).collect();
        let pm = ps.iter().sum::<f64>() / n;
        let pv = ps.iter().map(|p| (p - pm).powi(2)).sum::<f64>() / n;
        let pos = got.metadata.positions.as_ref().unwrap();
        assert!((pos.mean - pm).abs() < 1e-9 && (pos.variance - pv).abs() < 1e-6);
        let in_bucket = |lo: f64, hi: f64| ps.iter().filter(|&&p| lo <= p && p < hi).count();
        let buckets = [
            in_bucket(0.0, 5.0),
            in_bucket(5.0, 20.0),
            in_bucket(20.0, 50.0),
            in_bucket(50.0, f64::INFINITY),
        ]
        .map(|c| c as u64);
        assert_eq!(
            [pos.start, pos.early, pos.middle, pos.late],
            buckets,
            "position buckets of {feat}"
        );
        // The forced boundary firings: at least one in each bucket.
        assert!(buckets.iter().all(|&b| b >= 1), "{feat}: {buckets:?}");

        // Token statistics over all tokens: exact here (few distinct tokens).
        let mut firings: HashMap<&str, u64> = HashMap::new();
        for &(r, _) in &fired {
            *firings.entry(&tok_of[r]).or_default() += 1;
        }
        assert_eq!(got.metadata.token_counts_exact, Some(true));
        assert_eq!(got.metadata.top_tokens.len(), firings.len());
        for t in &got.metadata.top_tokens {
            assert_eq!(t.firings, firings[t.token.as_str()], "{feat} {:?}", t.token);
            assert_eq!(t.occurrences, occurrences[t.token.as_str()]);
        }

        // Each group's count is exactly the firings between its bounds (the upper one
        // included for the group that ends at the maximum).
        let groups = &got.metadata.quantile_examples;
        for (i, g) in groups.iter().enumerate() {
            let top = i + 1 == groups.len() && g.max_activation == got.max_activation;
            let inside = fired
                .iter()
                .filter(|&&(_, v)| {
                    let v = v as f64;
                    v >= g.min_activation
                        && (v < g.max_activation || (top && v <= g.max_activation))
                })
                .count() as u64;
            assert_eq!(g.count, inside, "feature {feat}, group {i}: {g:?}");
        }
        // Quantile-stratified samples are real firings of this feature in their group.
        for g in &got.metadata.quantile_examples {
            for ex in &g.examples {
                let r = (0..rows)
                    .find(|&r| Some(seq_of[r]) == ex.metadata.sequence && pos_of[r] == ex.position)
                    .unwrap();
                assert_eq!(c.acts[r * c.f + feat], ex.activation);
                assert!(
                    ex.activation as f64 >= g.min_activation
                        && ex.activation as f64 <= g.max_activation
                );
            }
        }
    }
}

#[test]
fn thread_count_and_batch_size_do_not_change_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let c = corpus(7, 40, 53, 0.2);
    let (acts, toks) = write(&c, dir.path(), "c");
    let cfg = config(5, 2);
    let one = build_dict(&acts, &toks, &cfg, 1, 1 << 20);
    for threads in [2, 3, 8] {
        for vpb in [53 * 7, 1 << 20] {
            assert!(
                one == build_dict(&acts, &toks, &cfg, threads, vpb),
                "threads {threads} vpb {vpb}"
            );
        }
    }
}

/// Accumulates sequences `range` of `c` as its own file, numbering sequences from its start.
fn accumulate_part(
    c: &Corpus,
    range: std::ops::Range<usize>,
    dir: &Path,
    cfg: &DictionaryConfig,
    threads: usize,
) -> (Accumulator, TokenSequences) {
    let first_row: usize = c.lengths[..range.start].iter().sum();
    let rows: usize = c.lengths[range.clone()].iter().sum();
    let part = Corpus {
        lengths: c.lengths[range.clone()].to_vec(),
        tokens: c.tokens[range.clone()].to_vec(),
        acts: c.acts[first_row * c.f..(first_row + rows) * c.f].to_vec(),
        f: c.f,
    };
    let name = format!("part{}_{}", range.start, range.end);
    let (a, t) = write(&part, dir, &name);
    let mut src = source(&a, &t, cfg.extraction.context_window, 1 << 20)
        .with_first_sequence(range.start as u64);
    let mut acc = Accumulator::new(
        c.f,
        Settings::from_config(&cfg.extraction).unwrap(),
        threads,
    );
    accumulate_source(&mut src, &mut acc, &BuildOptions::default(), &mut |_| {}).unwrap();
    (acc, TokenSequences::from_json_file(&t).unwrap())
}

/// Parts are built with the whole corpus's vocabulary order so token ids agree: the first
/// part's tokens file lists every word first in this corpus generator, so we interning-map
/// ids by string instead.
fn merged(
    c: &Corpus,
    cuts: &[usize],
    order: &[usize],
    dir: &Path,
    cfg: &DictionaryConfig,
) -> FeatureDictionary {
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(c.lengths.len());
    let parts: Vec<(Accumulator, TokenSequences)> = (0..bounds.len() - 1)
        .map(|i| accumulate_part(c, bounds[i]..bounds[i + 1], dir, cfg, 1 + i % 2))
        .collect();
    let mut vocab = feature_dictionary::ingest::Vocab::new();
    let mut total: Option<Accumulator> = None;
    let mut parts: Vec<Option<(Accumulator, TokenSequences)>> =
        parts.into_iter().map(Some).collect();
    for &i in order {
        let (acc, toks) = parts[i].take().unwrap();
        let map: Vec<u32> = (0..toks.vocab().len() as u32)
            .map(|id| vocab.intern(&toks.vocab().token(id)))
            .collect();
        match &mut total {
            None => {
                let mut empty = Accumulator::new(c.f, acc.settings().clone(), 2);
                empty.merge_remapped(acc, &map, None).unwrap();
                total = Some(empty);
            }
            Some(t) => t.merge_remapped(acc, &map, None).unwrap(),
        }
    }
    finalize(&total.unwrap(), &vocab, cfg.clone())
}

fn canonical(mut d: FeatureDictionary) -> FeatureDictionary {
    // Ties among a feature's tokens are ordered by token id, and parts merged in another
    // order number their tokens differently; sums of f64 may differ in the last bit.
    for f in d.feature_set.features.values_mut() {
        f.metadata.top_tokens.sort_by(|a, b| {
            b.firings
                .cmp(&a.firings)
                .then_with(|| a.token.cmp(&b.token))
        });
        f.mean_activation = (f.mean_activation * 1e9).round() / 1e9;
        if let Some(s) = f.metadata.std_activation.as_mut() {
            *s = (*s * 1e9).round() / 1e9;
        }
        if let Some(s) = f.metadata.sum_activation.as_mut() {
            *s = (*s * 1e6).round() / 1e6;
        }
        if let Some(p) = f.metadata.positions.as_mut() {
            p.variance = (p.variance * 1e6).round() / 1e6;
        }
    }
    d
}

#[test]
fn merge_of_parts_equals_one_pass_over_their_union() {
    let dir = tempfile::tempdir().unwrap();
    let c = corpus(99, 45, 29, 0.2);
    let cfg = config(6, 2);
    let (acts, toks) = write(&c, dir.path(), "all");
    let one = canonical(build_dict(&acts, &toks, &cfg, 2, 1 << 20));
    let ab = canonical(merged(&c, &[20], &[0, 1], dir.path(), &cfg));
    let ba = canonical(merged(&c, &[20], &[1, 0], dir.path(), &cfg));
    let abc = canonical(merged(&c, &[10, 31], &[2, 0, 1], dir.path(), &cfg));
    for (name, d) in [("a+b", &ab), ("b+a", &ba), ("c+a+b", &abc)] {
        for (id, f) in &one.feature_set.features {
            assert_eq!(f, &d.feature_set.features[id], "{name}: feature {id}");
        }
        assert_eq!(
            one.feature_set.total_tokens_processed,
            d.feature_set.total_tokens_processed
        );
        let mut x = one.feature_set.metadata.token_counts.clone();
        let mut y = d.feature_set.metadata.token_counts.clone();
        x.sort();
        y.sort();
        assert_eq!(x, y);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    /// merge(a, b) equals one pass over a ∪ b, for random corpora and cut points.
    #[test]
    fn merge_law(seed in 1u64..1_000_000, cut in 1usize..11, k in 1usize..6) {
        let dir = tempfile::tempdir().unwrap();
        let c = corpus(seed, 12, 11, 0.3);
        let cfg = config(k, 1);
        let (acts, toks) = write(&c, dir.path(), "all");
        let one = canonical(build_dict(&acts, &toks, &cfg, 1, 1 << 20));
        let two = canonical(merged(&c, &[cut], &[0, 1], dir.path(), &cfg));
        for (id, f) in &one.feature_set.features {
            prop_assert_eq!(f, &two.feature_set.features[id]);
        }
    }
}

#[test]
fn json_round_trip_is_lossless() {
    let dir = tempfile::tempdir().unwrap();
    let c = corpus(5, 20, 13, 0.2);
    let (acts, toks) = write(&c, dir.path(), "c");
    let cfg = DictionaryConfig {
        model_name: "gpt2".into(),
        sae_name: "res-jb".into(),
        layer: 8,
        ..config(4, 2)
    };
    let dict = build_dict(&acts, &toks, &cfg, 2, 1 << 20);
    let path = dir.path().join("d.json");
    feature_dictionary::store::save(&dict, &path).unwrap();
    let back = feature_dictionary::store::load(&path).unwrap();
    assert_eq!(back, dict);
    assert_eq!(back.num_features(), 13);
    assert_eq!(back.config.model_name, "gpt2");
    assert_eq!(back.feature_set.sae_name, "res-jb");
    assert_eq!(back.config.layer, 8);
}

/// The bundled real latents (TopK SAE, k = 24): every row has 24 non-zeros; the dictionary's
/// counts and maxima must agree with a direct read of the file.
#[test]
fn real_example_latents_agree_with_a_direct_read() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/example");
    let (acts, toks) = (root.join("latents.npy"), root.join("tokens.json"));
    let dict = build_dict(&acts, &toks, &config(20, 5), 2, 1 << 20);
    let m = npy::open(&acts).unwrap();
    let mut buf = Vec::new();
    let data = m.rows_f32(0..m.n_rows(), &mut buf).to_vec();
    let f = m.n_features();
    assert_eq!((m.n_rows(), f), (256, 3072));
    for r in 0..256 {
        assert_eq!(
            data[r * f..(r + 1) * f]
                .iter()
                .filter(|&&v| v != 0.0)
                .count(),
            24
        );
    }
    for feat in 0..f {
        let col: Vec<f32> = (0..256)
            .map(|r| data[r * f + feat])
            .filter(|&v| v >= 0.01)
            .collect();
        let got = dict.get(feat as u64).unwrap();
        assert_eq!(got.activation_count, col.len() as u64);
        if let Some(max) = col.iter().copied().reduce(f32::max) {
            assert_eq!(got.max_activation, max as f64);
        } else {
            assert_eq!(got.feature_type, FeatureType::Dead);
        }
    }
    assert_eq!(dict.feature_set.total_tokens_processed, 256);
}

/// The samples are exactly, per feature, the `10 × s` firings with the smallest hash of
/// (feature, sequence, position), whatever the batch size (a column can hold from a few
/// firings to all of them) and for several `s` (1, the default 4, and more than a feature
/// fires).
#[test]
fn samples_are_the_smallest_hashes_of_each_feature() {
    use feature_dictionary::accumulate::samples::{firing_hash, QUANTILE_GROUPS};
    let dir = tempfile::tempdir().unwrap();
    let c = corpus(11, 80, 29, 0.3);
    let (acts, toks) = write(&c, dir.path(), "c");
    let rows: usize = c.lengths.iter().sum();
    let mut seq_pos = Vec::new();
    for (s, len) in c.lengths.iter().enumerate() {
        seq_pos.extend((0..*len as u32).map(|p| (s as u64, p)));
    }
    for s in [1usize, 4, 50] {
        let m = QUANTILE_GROUPS * s;
        let mut cfg = config(5, 2);
        cfg.extraction.samples_per_group = s;
        for (threads, vpb) in [(1, 29 * 8), (2, 29 * 50), (2, 1 << 20)] {
            let mut src = source(&acts, &toks, 2, vpb);
            let mut acc = Accumulator::new(
                c.f,
                Settings::from_config(&cfg.extraction).unwrap(),
                threads,
            );
            let opts = BuildOptions {
                threads,
                allow_nonfinite: false,
            };
            accumulate_source(&mut src, &mut acc, &opts, &mut |_| {}).unwrap();
            let mut checked = 0;
            for range in acc.features() {
                for local in 0..range.len() {
                    let feat = range.start + local;
                    let mut kept: Vec<(u64, u64, u32)> = (0..rows)
                        .filter(|&r| c.acts[r * c.f + feat] >= 0.01)
                        .map(|r| {
                            let (seq, pos) = seq_pos[r];
                            (firing_hash(feat as u64, seq, pos), seq, pos)
                        })
                        .collect();
                    kept.sort();
                    kept.truncate(m);
                    let mut got: Vec<(u64, u64, u32)> = range
                        .samples(local)
                        .items
                        .iter()
                        .map(|it| (it.hash, it.example.sequence, it.example.position))
                        .collect();
                    got.sort();
                    assert_eq!(
                        got, kept,
                        "feature {feat}, s {s}, {threads} threads, {vpb} values per batch"
                    );
                    checked += kept.len();
                }
            }
            assert!(
                checked >= c.f * m.min(30),
                "too few samples to check: {checked}"
            );
        }
    }
}

/// A feature whose firings crowd the low end of its range (as real features' do) still gets
/// examples in (nearly) every equal-count group: the sample is uniform over its firings, so
/// each decile expects `samples_per_group` of them. (Samples kept per two-octave band left
/// this one with at most 4 examples for the 7 deciles below 0.2, and at most 7 groups.)
#[test]
fn quantile_groups_of_a_crowded_feature_all_get_examples() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = corpus(5, 400, 2, 0.0);
    let mut rng = Rng(77);
    for r in 0..c.acts.len() / c.f {
        let u = rng.unit();
        c.acts[r * c.f] = (0.05 * (4.0 * u * u * u).exp()) as f32;
    }
    let rows = c.acts.len() / c.f;
    let (acts, toks) = write(&c, dir.path(), "c");
    let mut cfg = config(5, 2);
    cfg.extraction.samples_per_group = 4;
    let d = build_dict(&acts, &toks, &cfg, 2, 1 << 20);
    let f = &d.feature_set.features[&0];
    assert_eq!(f.activation_count, rows as u64);
    let groups = &f.metadata.quantile_examples;
    let below = |x: f64| {
        c.acts
            .iter()
            .step_by(c.f)
            .filter(|&&v| (v as f64) < x)
            .count()
    };
    assert!(below(0.2) as f64 > 0.65 * rows as f64, "not crowded");
    assert!(groups.len() >= 9, "{} groups", groups.len());
    // Every one of the 40 sampled firings is shown, in its group.
    let examples: usize = groups.iter().map(|g| g.examples.len()).sum();
    assert_eq!(examples, 40);
    for g in groups {
        assert!(!g.examples.is_empty(), "{g:?}");
        // About a tenth of the firings each (deciles snap to bin edges).
        assert!(
            g.count as f64 > 0.04 * rows as f64 && (g.count as f64) < 0.2 * rows as f64,
            "{} of {rows}",
            g.count
        );
    }
}

/// Activations far from 0 and close to each other: Σx²/n − mean² cancelled to a std of 0.044
/// for a feature firing 12,345 times at 98,765.43. The sums are kept about each feature's
/// first firing, in one pass and across merged parts (whose first firings differ).
#[test]
fn std_of_activations_far_from_zero_is_exact() {
    let mut c = corpus(7, 60, 3, 0.0);
    let rows = c.acts.len() / c.f;
    let mut rng = Rng(11);
    for r in 0..rows {
        c.acts[r * 3] = 98_765.43;
        c.acts[r * 3 + 1] = 4096.0 + (rng.unit() as f32 - 0.5) / 16.0;
        c.acts[r * 3 + 2] = 1.0 + rng.unit() as f32;
    }
    let exact = |feat: usize| {
        let v: Vec<f64> = (0..rows).map(|r| c.acts[r * 3 + feat] as f64).collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
        (mean, var.sqrt())
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(4, 2);
    let (acts, toks) = write(&c, dir.path(), "far");
    let one = build_dict(&acts, &toks, &cfg, 2, 1 << 20);
    let parts = merged(&c, &[17, 40], &[2, 0, 1], dir.path(), &cfg);
    for (name, d) in [("one pass", &one), ("merged", &parts)] {
        let constant = d.get(0).unwrap();
        assert_eq!(constant.metadata.std_activation, Some(0.0), "{name}");
        assert_eq!(constant.mean_activation, 98_765.43f32 as f64, "{name}");
        for feat in [1, 2] {
            let (mean, std) = exact(feat);
            let got = d.get(feat as u64).unwrap();
            let got_std = got.metadata.std_activation.unwrap();
            assert!(
                (got_std - std).abs() <= 1e-9 * std,
                "{name}, feature {feat}: std {got_std} against {std}"
            );
            assert!((got.mean_activation - mean).abs() <= 1e-12 * mean, "{name}");
            let sum = got.metadata.sum_activation.unwrap();
            assert!((sum - mean * rows as f64).abs() <= 1e-9 * sum, "{name}");
        }
    }
}

/// Width of the histogram bin holding `v` (for `2^-10 ≤ v < 2^16`), from the documented
/// edges alone: 8 bins per octave, so a value in `[2^e, 2^(e+1))` lies in a bin `2^(e-3)`
/// wide.
fn documented_bin_width(v: f64) -> f64 {
    assert!((2f64.powi(-10)..2f64.powi(16)).contains(&v), "{v}");
    2f64.powf(v.log2().floor() - 3.0)
}

/// Every reported quantile (p10 … p99.9) of every feature against the brute-force quantile
/// of its firings: the `⌈q·n⌉`-th smallest firing (the value the cumulative count reaches
/// `q·n` at) lies in the bin the histogram interpolates in, so the two differ by at most
/// that bin's width (≤ 12.5 % of the value). The features spread over many octaves with
/// different shapes and scales, so that neighbouring levels (or another feature) are
/// several bin widths apart; a constant feature and a single firing have exact quantiles.
#[test]
fn quantiles_of_every_feature_are_within_one_bin_of_brute_force() {
    let (n_seq, len, f) = (100usize, 30usize, 6usize);
    let rows = n_seq * len;
    let mut c = Corpus {
        lengths: vec![len; n_seq],
        tokens: (0..n_seq)
            .map(|s| (0..len).map(|p| format!("w{}", (s + p) % 7)).collect())
            .collect(),
        acts: vec![0f32; rows * f],
        f,
    };
    // Heavy both ways: 2^(4u) spreads the body, (1-u)^-1/2 the top tail.
    let heavy = |u: f64| 0.05 * 2f64.powf(4.0 * u) / (1.0 - u).sqrt();
    let log_uniform = |u: f64| 0.02 * 2f64.powf(12.0 * u);
    type Shape<'a> = &'a dyn Fn(f64) -> f64;
    let features: [(usize, Shape, f64); 6] = [
        (1009, &heavy, 1.0),
        (503, &heavy, 2.7),
        (211, &log_uniform, 1.0),
        (1009, &heavy, 7.3),
        (50, &|_| 2.375, 1.0),
        (1, &|_| 0.7, 1.0),
    ];
    let mut rng = Rng(2024);
    for (feat, &(n, shape, scale)) in features.iter().enumerate() {
        // n distinct random rows (partial Fisher–Yates), the i-th gets the (i+½)/n quantile.
        let mut perm: Vec<usize> = (0..rows).collect();
        for i in 0..n {
            let j = i + rng.below((rows - i) as u64) as usize;
            perm.swap(i, j);
        }
        for (i, &r) in perm[..n].iter().enumerate() {
            c.acts[r * f + feat] = (scale * shape((i as f64 + 0.5) / n as f64)) as f32;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let (acts, toks) = write(&c, dir.path(), "q");
    // Small batches and two threads: histograms of many column slices are added up.
    let dict = build_dict(&acts, &toks, &config(5, 2), 2, f * 64);

    let levels = [
        ("p10", 0.10),
        ("p25", 0.25),
        ("p50", 0.50),
        ("p75", 0.75),
        ("p90", 0.90),
        ("p99", 0.99),
        ("p999", 0.999),
    ];
    for (feat, &(n, _, _)) in features.iter().enumerate() {
        let mut fired: Vec<f64> = (0..rows)
            .map(|r| c.acts[r * f + feat])
            .filter(|&v| v >= 0.01)
            .map(|v| v as f64)
            .collect();
        assert_eq!(fired.len(), n);
        fired.sort_by(f64::total_cmp);
        let got = &dict.get(feat as u64).unwrap().metadata.quantiles;
        let names: Vec<&str> = got.keys().map(String::as_str).collect();
        let mut want_names: Vec<&str> = levels.iter().map(|l| l.0).collect();
        want_names.sort();
        assert_eq!(names, want_names, "feature {feat}");
        for (name, q) in levels {
            let reported = got[name];
            let target = q * n as f64;
            let k = (target.ceil() as usize).max(1);
            let brute = fired[k - 1];
            if fired[0] == fired[n - 1] {
                // All firings equal: the quantile is exact.
                assert_eq!(reported, brute, "feature {feat} {name}");
                continue;
            }
            assert!(
                (target - target.round()).abs() > 1e-6,
                "q·n = {target} is ambiguous at a rank"
            );
            let width = documented_bin_width(brute);
            assert!(
                (reported - brute).abs() <= width,
                "feature {feat} {name}: reported {reported}, brute force {brute} (bin width {width})"
            );
            assert!(fired[0] <= reported && reported <= fired[n - 1]);
        }
        // The levels are far apart here, so the bound above tells them apart.
        if feat < 4 {
            for pair in levels.windows(2) {
                let (lo, hi) = (got[pair[0].0], got[pair[1].0]);
                assert!(lo < hi, "feature {feat}: {pair:?} {lo} {hi}");
            }
        }
    }
}

/// A feature that fired at most top-k times has every firing among its examples, so its
/// quantiles are exact — numpy's default linear `quantile` of those values, written out here
/// for 7 values — and say so; one firing more and they come from the histogram again.
#[test]
fn quantiles_of_a_feature_whose_firings_are_all_top_examples_are_exact() {
    let (n_seq, len) = (4usize, 10usize);
    let rows = n_seq * len;
    let f = 2;
    let mut c = Corpus {
        lengths: vec![len; n_seq],
        tokens: vec![vec!["x".to_string(); len]; n_seq],
        acts: vec![0f32; rows * f],
        f,
    };
    let values = [0.395f32, 1.042, 0.4062, 0.6738, 0.4666, 0.9185, 0.604];
    for (i, v) in values.iter().enumerate() {
        c.acts[(i * 5) * f] = *v;
        c.acts[(i * 5 + 1) * f + 1] = *v;
    }
    c.acts[39 * f + 1] = 2.5;
    let dir = tempfile::tempdir().unwrap();
    let (acts, toks) = write(&c, dir.path(), "e");
    let dict = build_dict(&acts, &toks, &config(7, 1), 2, f * 8);
    let exact = &dict.get(0).unwrap().metadata;
    assert!(exact.quantiles_exact);
    // sorted: 0.395 0.4062 0.4666 0.604 0.6738 0.9185 1.042; h = 6q.
    let v = |x: f32| x as f64;
    let want = [
        ("p10", v(0.395) + (v(0.4062) - v(0.395)) * 0.6),
        ("p25", v(0.4062) + (v(0.4666) - v(0.4062)) * 0.5),
        ("p50", v(0.604)),
        ("p75", v(0.6738) + (v(0.9185) - v(0.6738)) * 0.5),
        ("p90", v(0.9185) + (v(1.042) - v(0.9185)) * 0.4),
        ("p99", v(0.9185) + (v(1.042) - v(0.9185)) * 0.94),
        ("p999", v(0.9185) + (v(1.042) - v(0.9185)) * 0.994),
    ];
    for (name, value) in want {
        assert!(
            (exact.quantiles[name] - value).abs() < 1e-12,
            "{name}: {} against {value}",
            exact.quantiles[name]
        );
    }
    let estimated = &dict.get(1).unwrap().metadata;
    assert_eq!(dict.get(1).unwrap().activation_count, 8);
    assert!(!estimated.quantiles_exact);
    // Written and read back, the flag stays.
    let json = dir.path().join("e.json");
    feature_dictionary::store::save(&dict, &json).unwrap();
    let back = feature_dictionary::store::load(&json).unwrap();
    assert!(back.get(0).unwrap().metadata.quantiles_exact);
    assert!(!back.get(1).unwrap().metadata.quantiles_exact);
}

/// Feature types at the exact frequency boundaries of the seed API (ultra_sparse < 0.01 %,
/// sparse < 1 %, moderate < 10 %, dense ≥ 10 %) over 20,000 tokens: 2 firings are exactly
/// 0.01 % (sparse, not ultra_sparse), 200 exactly 1 % (moderate), 2,000 exactly 10 %
/// (dense). Expected types are written out by hand.
#[test]
fn feature_types_at_the_frequency_boundaries() {
    let (n_seq, len) = (400usize, 50usize);
    let rows = n_seq * len;
    let counts_and_types: [(usize, &str); 10] = [
        (0, "dead"),
        (1, "ultra_sparse"),
        (2, "sparse"),
        (3, "sparse"),
        (199, "sparse"),
        (200, "moderate"),
        (201, "moderate"),
        (1999, "moderate"),
        (2000, "dense"),
        (20000, "dense"),
    ];
    let f = counts_and_types.len();
    let mut c = Corpus {
        lengths: vec![len; n_seq],
        tokens: vec![vec!["x".to_string(); len]; n_seq],
        acts: vec![0f32; rows * f],
        f,
    };
    let mut rng = Rng(31);
    for (feat, &(n, _)) in counts_and_types.iter().enumerate() {
        let mut perm: Vec<usize> = (0..rows).collect();
        for i in 0..n {
            let j = i + rng.below((rows - i) as u64) as usize;
            perm.swap(i, j);
        }
        for &r in &perm[..n] {
            c.acts[r * f + feat] = 1.0;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let (acts, toks) = write(&c, dir.path(), "types");
    let dict = build_dict(&acts, &toks, &config(3, 1), 2, 1 << 20);
    assert_eq!(dict.feature_set.total_tokens_processed, 20_000);
    for (feat, &(n, want)) in counts_and_types.iter().enumerate() {
        let got = dict.get(feat as u64).unwrap();
        assert_eq!(got.activation_count, n as u64);
        assert_eq!(got.feature_type.as_str(), want, "{n} firings in {rows}");
        assert_eq!(type_by_seed_thresholds(n as u64, rows as u64), want);
    }
}
