//! Analysis against brute force: Pearson correlation over all tokens (exact mode), φ of
//! firings (sketch mode), decoder-cosine neighbours, stats and search.

mod common_label;

use common_label::{Lcg, Rows};
use feature_dictionary::accumulate::coactivation::phi;
use feature_dictionary::accumulate::{Accumulator, Settings};
use feature_dictionary::analyze::{self, correlation, search, similar, weights};
use feature_dictionary::finalize::finalize;
use feature_dictionary::ingest::Vocab;
use feature_dictionary::model::DictionaryConfig;
use feature_dictionary::FeatureDictionary;

const F: usize = 12;
const THR: f32 = 0.05;

/// Dense activations [rows × F] with correlated groups, and the rows split in sequences.
fn data(rows: usize) -> Vec<f32> {
    let mut rng = Lcg(7);
    let mut x = vec![0f32; rows * F];
    for r in 0..rows {
        let z = rng.unit();
        for f in 0..F {
            // Features in groups of 3 share a latent cause; some values fall under THR.
            let shared = if (f / 3) % 2 == 0 { z } else { 1.0 - z };
            let v = if rng.unit() < 0.3 + 0.4 * shared {
                (rng.unit() * 2.0 * shared) as f32
            } else {
                0.0
            };
            x[r * F + f] = v;
        }
    }
    x
}

fn rows_of(x: &[f32], from: usize, to: usize) -> Rows {
    Rows {
        tokens: (from..to).map(|r| (r % 5) as u32).collect(),
        sequences: (from..to).map(|r| (r / 10) as u64).collect(),
        positions: (from..to).map(|r| (r % 10) as u32).collect(),
        firings: (from..to)
            .map(|r| {
                (0..F)
                    .filter(|&f| x[r * F + f] != 0.0)
                    .map(|f| (f as u32, x[r * F + f]))
                    .collect()
            })
            .collect(),
    }
}

fn config(mode: &str) -> DictionaryConfig {
    let mut c = DictionaryConfig::default();
    c.extraction.min_activation = THR as f64;
    c.extraction.correlation = mode.into();
    c.extraction.correlation_capacity = 64;
    c
}

/// Two halves accumulated separately (different thread counts) and merged.
fn build_merged(x: &[f32], rows: usize, mode: &str) -> FeatureDictionary {
    let cfg = config(mode);
    let settings = Settings::from_config(&cfg.extraction).unwrap();
    let mut a = Accumulator::new(F, settings.clone(), 2);
    let mut b = Accumulator::new(F, settings, 3);
    a.update(&rows_of(x, 0, 300).batch(F)).unwrap();
    b.update(&rows_of(x, 300, rows).batch(F)).unwrap();
    a.merge(b).unwrap();
    let vocab = Vocab::from_strings((0..5).map(|i| format!("t{i}")).collect());
    finalize(&a, &vocab, cfg)
}

fn brute_pearson(x: &[f32], rows: usize, i: usize, j: usize) -> f64 {
    let v = |r: usize, f: usize| {
        let a = x[r * F + f];
        if a >= THR {
            a as f64
        } else {
            0.0
        }
    };
    let n = rows as f64;
    let (mut si, mut sj) = (0.0, 0.0);
    for r in 0..rows {
        si += v(r, i);
        sj += v(r, j);
    }
    let (mi, mj) = (si / n, sj / n);
    let (mut c, mut vi, mut vj) = (0.0, 0.0, 0.0);
    for r in 0..rows {
        let (a, b) = (v(r, i) - mi, v(r, j) - mj);
        c += a * b;
        vi += a * a;
        vj += b * b;
    }
    c / (vi * vj).sqrt()
}

#[test]
fn exact_correlation_equals_brute_force_pearson() {
    let rows = 700;
    let x = data(rows);
    let dict = build_merged(&x, rows, "exact");
    let m = correlation::method(&dict).unwrap();
    assert_eq!((m.mode.as_str(), m.measure.as_str()), ("exact", "pearson"));
    let mut seen_positive = 0;
    for i in 0..F {
        let got = correlation::correlated(&dict, i as u64, f64::NEG_INFINITY).unwrap();
        let mut want: Vec<(u64, f64)> = (0..F)
            .filter(|&j| j != i)
            .map(|j| (j as u64, brute_pearson(&x, rows, i, j)))
            .filter(|p| p.1 > 0.0)
            .collect();
        want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        assert_eq!(got.len(), want.len(), "feature {i}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.0, w.0, "feature {i}");
            assert!((g.1 - w.1).abs() < 1e-9, "feature {i}: {} vs {}", g.1, w.1);
        }
        seen_positive += want.len();
        // The filter of the original's API.
        let strong = correlation::correlated(&dict, i as u64, 0.3).unwrap();
        assert!(strong.iter().all(|p| p.1 >= 0.3));
        // Nothing is >= NaN: refused instead of reporting "none" for every feature.
        let e = correlation::correlated(&dict, i as u64, f64::NAN)
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be a number, got NaN"), "{e}");
    }
    assert!(seen_positive > 0);
}

#[test]
fn partners_stored_by_the_python_package_are_read_as_a_builds() {
    let rows = 700;
    let x = data(rows);
    let built = build_merged(&x, rows, "exact");
    // The Python package's layout: partners under `correlated_features`, and (before it
    // recorded one) no method in the feature set's metadata.
    let mut py = built.clone();
    py.feature_set
        .metadata
        .extra
        .remove(correlation::METHOD_KEY);
    for f in py.feature_set.features.values_mut() {
        let partners = f.metadata.extra.remove(correlation::PARTNERS_KEY).unwrap();
        f.metadata
            .extra
            .insert(correlation::PYTHON_PARTNERS_KEY.into(), partners);
    }
    let m = correlation::method(&py).unwrap();
    assert_eq!((m.mode.as_str(), m.measure.as_str()), ("exact", "pearson"));
    for i in 0..F as u64 {
        assert_eq!(
            correlation::correlated(&py, i, f64::NEG_INFINITY).unwrap(),
            correlation::correlated(&built, i, f64::NEG_INFINITY).unwrap()
        );
    }
    // Without partners under either key there is still nothing to answer with.
    for f in py.feature_set.features.values_mut() {
        f.metadata.extra.remove(correlation::PYTHON_PARTNERS_KEY);
    }
    assert!(correlation::method(&py).is_none());
}

#[test]
fn sketch_correlation_is_phi_of_firings() {
    let rows = 700;
    let x = data(rows);
    let dict = build_merged(&x, rows, "sketch");
    let m = correlation::method(&dict).unwrap();
    assert_eq!((m.measure.as_str(), m.exact), ("phi", true));
    let fires = |r: usize, f: usize| x[r * F + f] >= THR;
    for i in 0..F {
        let got = correlation::correlated(&dict, i as u64, f64::NEG_INFINITY).unwrap();
        for (j, r) in got {
            let j = j as usize;
            let (mut nij, mut ni, mut nj) = (0, 0, 0);
            for row in 0..rows {
                nij += (fires(row, i) && fires(row, j)) as u64;
                ni += fires(row, i) as u64;
                nj += fires(row, j) as u64;
            }
            let want = phi(nij, ni, nj, rows as u64).unwrap();
            assert!((r - want).abs() < 1e-12, "{i},{j}: {r} vs {want}");
        }
    }
}

#[test]
fn exact_correlation_refuses_large_sae_with_a_clear_error() {
    let cfg = config("exact");
    let settings = Settings::from_config(&cfg.extraction).unwrap();
    let mut acc = Accumulator::new(5000, settings, 1);
    let err = acc
        .update(&rows_of(&data(10), 0, 10).batch(5000))
        .unwrap_err()
        .to_string();
    assert!(err.contains("4096") && err.contains("5000"), "{err}");
}

#[test]
fn decoder_cosine_neighbours_equal_brute_force() {
    let (n, d) = (600, 24);
    let mut rng = Lcg(3);
    let m = weights::Matrix {
        rows: d,
        cols: n,
        // Stored transposed ([d_in, d_sae]) to exercise orientation detection.
        data: (0..n * d)
            .map(|_| (rng.unit() * 2.0 - 1.0) as f32)
            .collect(),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sae.safetensors");
    weights::write_safetensors(&path, &[("W_dec", &m)]).unwrap();
    let dirs = similar::Directions::load(&path, "W_dec", Some(n)).unwrap();
    let all = dirs.all_neighbours(5, 2);
    let col = |i: usize| -> Vec<f64> { (0..d).map(|k| m.data[k * n + i] as f64).collect() };
    for (i, got) in all.iter().enumerate() {
        let a = col(i);
        let na = a.iter().map(|v| v * v).sum::<f64>().sqrt();
        let mut want: Vec<(u32, f64)> = (0..n)
            .filter(|&j| j != i)
            .map(|j| {
                let b = col(j);
                let nb = b.iter().map(|v| v * v).sum::<f64>().sqrt();
                let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
                (j as u32, dot / (na * nb))
            })
            .collect();
        want.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        want.truncate(5);
        assert_eq!(got.len(), 5);
        for (g, w) in got.iter().zip(&want) {
            assert!((g.1 as f64 - w.1).abs() < 1e-5, "row {i}");
        }
        // Ids agree unless two brute-force scores are within float error of each other.
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            let gap = if k + 1 < want.len() {
                (want[k].1 - want[k + 1].1).abs()
            } else {
                1.0
            };
            if gap > 1e-5 {
                assert_eq!(g.0, w.0, "row {i} rank {k}");
            }
        }
        // The one-row query agrees with the blocked GEMM up to summation order.
        let one = dirs.similar_to(i, 5).unwrap();
        assert_eq!(one.zero_rows_skipped, 0);
        for (a, b) in one.similar.iter().zip(got) {
            assert!((a.1 - b.1).abs() < 1e-5, "row {i}");
        }
    }
    let err = similar::Directions::load(&path, "W_enc", Some(n))
        .unwrap_err()
        .to_string();
    assert!(err.contains("W_enc") && err.contains("W_dec"), "{err}");
    let err = similar::Directions::load(&path, "W_dec", Some(7))
        .unwrap_err()
        .to_string();
    assert!(err.contains("7 features"), "{err}");
}

/// A feature whose decoder row is all zeros has no direction: asking for its neighbours is
/// an error naming the file and tensor, and as a candidate it is skipped and counted rather
/// than listed at cosine 0 (above every negative cosine). All-pairs neighbours leave it out
/// both ways. A non-finite decoder value is an error naming its row and column.
#[test]
fn zero_decoder_rows_have_no_neighbours_and_are_no_neighbours() {
    // 0 and 1 close, 2 opposite to 0, 3 and 5 all zeros, 4 orthogonal to 0.
    let m = weights::Matrix {
        rows: 6,
        cols: 3,
        data: vec![
            1.0, 0.0, 0.0, //
            0.9, 0.1, 0.0, //
            -1.0, 0.0, 0.0, //
            0.0, 0.0, 0.0, //
            0.0, 0.0, 1.0, //
            0.0, 0.0, 0.0,
        ],
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sae.safetensors");
    weights::write_safetensors(&path, &[("W_dec", &m)]).unwrap();
    let dirs = similar::Directions::load(&path, "W_dec", Some(6)).unwrap();
    let nb = dirs.similar_to(0, 10).unwrap();
    let ids: Vec<u32> = nb.similar.iter().map(|p| p.0).collect();
    assert_eq!(ids, [1, 4, 2]);
    assert_eq!(nb.zero_rows_skipped, 2);
    for z in [3, 5] {
        let e = dirs.similar_to(z, 10).unwrap_err().to_string();
        assert!(e.contains(path.to_str().unwrap()), "{e}");
        assert!(
            e.contains(&format!(
                "tensor \"W_dec\": feature {z}'s decoder row is all zeros: it has no direction to compare"
            )),
            "{e}"
        );
    }
    let e = dirs.similar_to(6, 10).unwrap_err().to_string();
    assert!(
        e.contains("feature 6 has no decoder row (there are 6 rows)"),
        "{e}"
    );
    // Built from a matrix, the error has no file to name.
    let e = similar::Directions::new(m.clone())
        .similar_to(3, 1)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "feature 3's decoder row is all zeros: it has no direction to compare"
    );
    let all = dirs.all_neighbours(10, 2);
    let ids = |i: usize| -> Vec<u32> { all[i].iter().map(|p| p.0).collect() };
    assert_eq!(ids(0), [1, 4, 2]);
    assert_eq!(ids(2), [4, 1, 0]);
    assert!(ids(3).is_empty() && ids(5).is_empty());
    let mut nan = m;
    nan.data[4 * 3 + 1] = f32::NAN;
    weights::write_safetensors(&path, &[("W_dec", &nan)]).unwrap();
    let e = similar::Directions::load(&path, "W_dec", Some(6))
        .unwrap_err()
        .to_string();
    assert!(e.contains(path.to_str().unwrap()), "{e}");
    assert!(
        e.contains("tensor \"W_dec\" [6, 3] holds NaN at row 4, column 1"),
        "{e}"
    );
}

#[test]
fn stats_positions_and_search() {
    // Feature 0 fires at position 0 of every sequence on token "a"; feature 1 on "b"
    // everywhere; feature 2 never.
    let rows = Rows {
        tokens: (0..40).map(|r| (r % 2) as u32).collect(),
        sequences: (0..40).map(|r| (r / 10) as u64).collect(),
        positions: (0..40).map(|r| (r % 10) as u32).collect(),
        firings: (0..40)
            .map(|r| {
                let mut v = vec![];
                if r % 10 == 0 {
                    v.push((0, 1.0 + (r / 10) as f32));
                }
                if r % 2 == 1 {
                    v.push((1, 2.0));
                }
                v
            })
            .collect(),
    };
    let vocab = Vocab::from_strings(vec!["a".into(), " b".into()]);
    let mut dict = common_label::build(&[rows], 3, &vocab, DictionaryConfig::default(), 1);
    let s = analyze::ActivationStats::of(dict.get(0).unwrap());
    assert_eq!(s.activation_count, 4);
    assert_eq!(s.mean_position, 0.0);
    assert_eq!(s.position_variance, 0.0);
    assert_eq!(s.mean_activation, 2.5);
    assert_eq!(s.min_activation, 1.0);
    assert!((s.std_activation - (1.25f64).sqrt()).abs() < 1e-12);
    assert_eq!(s.unique_tokens, 1);
    assert_eq!(s.token_entropy, 0.0);
    let pd = analyze::position_distribution(dict.get(0).unwrap()).unwrap();
    assert_eq!(pd[0], ("start", 4));
    let s1 = analyze::ActivationStats::of(dict.get(1).unwrap());
    assert_eq!(s1.mean_position, 5.0);

    assert_eq!(
        analyze::features_of_type(&dict, feature_dictionary::model::FeatureType::Dead),
        vec![2]
    );
    let ranking = analyze::importance_ranking(&dict);
    assert_eq!(ranking.last().unwrap(), &(2, 0.0));

    let hits = search::by_token(&dict, "b");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].id, 1);
    assert_eq!(hits[0].score, 1.0);
    feature_dictionary::label::label_dictionary(&mut dict, &Default::default(), None).unwrap();
    let hits = search::by_label(&dict, "TOKEN: B");
    assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), vec![1]);
    let hits = search::by_pattern(&dict, r"^token:a$").unwrap();
    assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), vec![0]);
    assert!(search::by_pattern(&dict, "(").is_err());

    let c = analyze::compare(&dict, dict.get(0).unwrap(), dict.get(1).unwrap());
    assert_eq!(c.token_profile_cosine, 0.0);
    assert!(c.correlation.is_none());
    assert_eq!(
        similar::similar_by_tokens(&dict, 0, 5).unwrap(),
        Vec::<(u64, f64)>::new()
    );
}

/// Looking an embedding matrix up by its usual names reports the file's own problems (a
/// missing file, a tensor of the wrong shape) instead of "not found", and lists the
/// tensors the file has when no usual name is among them.
#[test]
fn embedding_lookup_reports_the_real_problem() {
    use feature_dictionary::analyze::embeddings::TokenEmbeddings;
    use feature_dictionary::ingest::safetensors::serialize;
    let tmp = tempfile::tempdir().unwrap();
    let vocab = tmp.path().join("vocab.json");
    std::fs::write(&vocab, r#"["a", "b"]"#).unwrap();
    let data: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();

    let missing = tmp.path().join("missing.safetensors");
    let e = TokenEmbeddings::load(&missing, None, Some(&vocab))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("missing.safetensors") && !e.contains("no embedding tensor"),
        "{e}"
    );

    let wrong_shape = tmp.path().join("wrong_shape.safetensors");
    std::fs::write(
        &wrong_shape,
        serialize(&[("W_E", "F32", vec![2, 2, 2], &data)]),
    )
    .unwrap();
    let e = TokenEmbeddings::load(&wrong_shape, None, Some(&vocab))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("\"W_E\" has shape [2, 2, 2]; expected 2 dimensions"),
        "{e}"
    );

    let other = tmp.path().join("other.safetensors");
    std::fs::write(
        &other,
        serialize(&[("lm_head.weight", "F32", vec![2, 4], &data)]),
    )
    .unwrap();
    let e = TokenEmbeddings::load(&other, None, Some(&vocab))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("no embedding tensor found") && e.contains("the file has [\"lm_head.weight\"]"),
        "{e}"
    );
    // Named explicitly, the same tensor loads (rows are kept as unit directions).
    let m = TokenEmbeddings::load(&other, Some("lm_head.weight"), Some(&vocab)).unwrap();
    let norm = 126f32.sqrt();
    for (got, want) in m.get("b").unwrap().iter().zip([4.0, 5.0, 6.0, 7.0]) {
        assert!((got - want / norm).abs() < 1e-6, "{got} vs {}", want / norm);
    }
}

/// The importance score saturates (every feature firing on ≥ 1 % of tokens with a max ≥ 5
/// scores 1.0): ties go to more firings, then the larger max, then the smaller id — in the
/// ranking, in the statistics and in a `.fdict`'s statistics alike.
#[test]
fn importance_ties_go_to_the_feature_that_fired_more() {
    use feature_dictionary::model::{Feature, FeatureSet};
    let mut fs = FeatureSet {
        layer: 0,
        features: Default::default(),
        total_tokens_processed: 1000,
        model_name: String::new(),
        sae_name: String::new(),
        metadata: Default::default(),
    };
    // (id, firings, max): ids 0..4 all score 1.0.
    for (id, count, max) in [
        (0, 20, 6.0),
        (1, 900, 5.0),
        (2, 900, 9.0),
        (3, 50, 7.0),
        (4, 5, 9.0),
    ] {
        let mut f = Feature::new(id, 8);
        f.activation_count = count;
        f.activation_frequency = count as f64 / 1000.0;
        f.max_activation = max;
        fs.features.insert(id, f);
    }
    let dict = FeatureDictionary::new(DictionaryConfig::default(), fs);
    let ranked: Vec<u64> = analyze::importance_ranking(&dict)
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(ranked, vec![2, 1, 3, 0, 4]);
    let top: Vec<u64> = dict.statistics().top_features.iter().map(|t| t.0).collect();
    assert_eq!(top, ranked);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.fdict");
    feature_dictionary::store::save(&dict, &path).unwrap();
    let stored = feature_dictionary::store::fdict::FdictReader::open(&path).unwrap();
    let top: Vec<u64> = stored
        .statistics()
        .top_features
        .iter()
        .map(|t| t.0)
        .collect();
    assert_eq!(top, ranked);
}

/// Token-profile cosine on partially overlapping profiles, against the definition (cosine of
/// the two features' firing counts per token) computed here from the constructed counts:
///   f0: a×3 b×2 c×1        f1: a×1 b×1 d×4     f2: c×2 e×1
///   f3: a×6 b×4 c×2 (f0 doubled)   f4: d×5 (no shared token)   f5: never fires
///   f6: a×2 b×2 d×8 (f1 doubled)   f7: a×1 e×3
/// cos(f0, f1) = (3 + 2) / (√14 √18) = 5/√252, cos(f0, f2) = 2/√70, cos(f0, f7) = 3/√140.
#[test]
fn token_profile_cosine_of_partially_overlapping_profiles() {
    let names = ["a", "b", "c", "d", "e"];
    let profiles: [&[(usize, u32)]; 8] = [
        &[(0, 3), (1, 2), (2, 1)],
        &[(0, 1), (1, 1), (3, 4)],
        &[(2, 2), (4, 1)],
        &[(0, 6), (1, 4), (2, 2)],
        &[(3, 5)],
        &[],
        &[(0, 2), (1, 2), (3, 8)],
        &[(0, 1), (4, 3)],
    ];
    // One row per firing, each feature on its own rows; every token also occurs unfired.
    let mut rows = Rows {
        tokens: vec![],
        sequences: vec![],
        positions: vec![],
        firings: vec![],
    };
    let mut push = |token: usize, firing: Option<(u32, f32)>| {
        let r = rows.tokens.len();
        rows.tokens.push(token as u32);
        rows.sequences.push((r / 16) as u64);
        rows.positions.push((r % 16) as u32);
        rows.firings.push(firing.into_iter().collect());
    };
    for (feat, profile) in profiles.iter().enumerate() {
        for &(token, n) in profile.iter() {
            for i in 0..n {
                push(token, Some((feat as u32, 0.5 + i as f32)));
            }
        }
    }
    for token in 0..names.len() {
        push(token, None);
    }
    let vocab = Vocab::from_strings(names.iter().map(|s| s.to_string()).collect());
    let dict = common_label::build(
        &[rows],
        profiles.len(),
        &vocab,
        DictionaryConfig::default(),
        2,
    );

    let brute = |i: usize, j: usize| -> f64 {
        let dense = |p: &[(usize, u32)]| {
            let mut v = [0f64; 5];
            for &(t, n) in p {
                v[t] += n as f64;
            }
            v
        };
        let (x, y) = (dense(profiles[i]), dense(profiles[j]));
        let dot: f64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        let norm = |v: &[f64; 5]| v.iter().map(|a| a * a).sum::<f64>().sqrt();
        if dot == 0.0 {
            0.0
        } else {
            dot / (norm(&x) * norm(&y))
        }
    };
    // Hand values agree with the brute force.
    assert!((brute(0, 1) - 5.0 / 252f64.sqrt()).abs() < 1e-15);
    assert!((brute(0, 2) - 2.0 / 70f64.sqrt()).abs() < 1e-15);
    assert!((brute(0, 7) - 3.0 / 140f64.sqrt()).abs() < 1e-15);

    let f = |i: usize| dict.get(i as u64).unwrap();
    for i in 0..profiles.len() {
        for j in 0..profiles.len() {
            let got = similar::token_profile_cosine(f(i), f(j));
            assert!(
                (got - brute(i, j)).abs() < 1e-12,
                "cos({i}, {j}) = {got}, brute force {}",
                brute(i, j)
            );
        }
    }
    // Ranking: cosine desc, ties (f1 and its double f6) by id; zero and dead excluded.
    let ids = |v: Vec<(u64, f64)>| v.into_iter().map(|p| p.0).collect::<Vec<_>>();
    let ranked = similar::similar_by_tokens(&dict, 0, 10).unwrap();
    assert_eq!(ids(ranked.clone()), vec![3, 1, 6, 7, 2]);
    for (id, score) in &ranked {
        assert!(
            (score - brute(0, *id as usize)).abs() < 1e-12,
            "{id}: {score}"
        );
    }
    assert_eq!(ranked[0].1, 1.0);
    assert_eq!(ranked[1].1, ranked[2].1);
    assert_eq!(
        ids(similar::similar_by_tokens(&dict, 0, 3).unwrap()),
        vec![3, 1, 6]
    );
    // From f1: f6 (same profile) 1, f4 (d only) 4/√18, f0 and its double f3 5/√252 (tied,
    // by id), f7 1/√180; f2 shares no token.
    let mut want: Vec<(u64, f64)> = (0..profiles.len())
        .filter(|&j| j != 1 && brute(1, j) > 0.0)
        .map(|j| (j as u64, brute(1, j)))
        .collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let got = similar::similar_by_tokens(&dict, 1, 10).unwrap();
    assert_eq!(ids(got.clone()), vec![6, 4, 0, 3, 7]);
    assert_eq!(ids(got.clone()), ids(want.clone()));
    for (g, w) in got.iter().zip(&want) {
        assert!((g.1 - w.1).abs() < 1e-12, "{g:?} {w:?}");
    }
}
