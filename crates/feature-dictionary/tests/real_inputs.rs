//! Real input formats end to end: tokenizer.json decoding, SAE encoders against numpy
//! references, the real SmolLM2 TopK SAE, and delphi caches against the equivalent dense
//! input.

use std::path::{Path, PathBuf};

use feature_dictionary::build::{self, BuildOptions};
use feature_dictionary::ingest::delphi::{DelphiCache, DelphiSource};
use feature_dictionary::ingest::token_ids::TokenIdMatrix;
use feature_dictionary::ingest::tokenizer::Tokenizer;
use feature_dictionary::ingest::{self, ActivationSource, DenseSource, SparseRows, TokenSequences};
use feature_dictionary::model::DictionaryConfig;
use feature_dictionary::sae::{self, Architecture, EncodeBuffers, Sae, SaeFormat};
use feature_dictionary::store::seed_json;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn smollm2() -> PathBuf {
    fixtures().join("smollm2")
}

/// A dense `.npy` as (rows, cols, f32 values).
fn load_npy(path: &Path) -> (usize, usize, Vec<f32>) {
    let m = ingest::npy::open(path).unwrap();
    let mut buf = Vec::new();
    let v = m.rows_f32(0..m.n_rows(), &mut buf).to_vec();
    (m.n_rows() as usize, m.n_features(), v)
}

fn densify(rows: &SparseRows, n_rows: usize, n_features: usize) -> Vec<f32> {
    let mut d = vec![0.0; n_rows * n_features];
    for r in 0..n_rows {
        for e in rows.indptr[r]..rows.indptr[r + 1] {
            d[r * n_features + rows.indices[e] as usize] = rows.values[e];
        }
    }
    d
}

fn smollm2_tokenizer() -> Tokenizer {
    Tokenizer::from_file(&smollm2().join("tokenizer.json")).unwrap()
}

#[test]
fn tokenizer_json_decodes_token_ids_exactly_like_tokens_json() {
    let ids = TokenIdMatrix::from_npy(&smollm2().join("token_ids.npy")).unwrap();
    assert_eq!((ids.n_sequences, ids.seq_len), (200, 64));
    let tok = smollm2_tokenizer();
    let expected: Vec<Vec<String>> =
        serde_json::from_slice(&std::fs::read(smollm2().join("tokens.json")).unwrap()).unwrap();
    let mut checked = 0;
    for (s, seq) in expected.iter().enumerate() {
        for (p, want) in seq.iter().enumerate() {
            let id = ids.ids[s * 64 + p];
            assert_eq!(
                tok.decode(id),
                Some(want.as_str()),
                "sequence {s}, position {p}, id {id}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 12_800);
    // Through TokenSequences, as the CLI uses it.
    let seqs = ids
        .into_sequences(Path::new("token_ids.npy"), Some(tok.into_vocab()))
        .unwrap();
    let first: Vec<String> = seqs
        .ids(0..64)
        .unwrap()
        .iter()
        .map(|&i| seqs.vocab().token(i).into_owned())
        .collect();
    assert_eq!(first, expected[0]);
}

/// Encodes the fixture's `inputs.npy` with `sae` on 1 and 2 threads and checks every latent
/// against its `expected.npy`: the same nonzero set, values within 1e-4.
fn assert_matches_reference(name: &str, d: &Path, sae: &Sae) {
    let (n, d_in, x) = load_npy(&d.join("inputs.npy"));
    let (_, d_sae, want) = load_npy(&d.join("expected.npy"));
    assert_eq!((sae.d_in(), sae.d_sae()), (d_in, d_sae), "{name}");
    for threads in [1, 2] {
        let mut rows = SparseRows::default();
        sae.encode(&x, &mut rows, &mut EncodeBuffers::default(), threads);
        assert_eq!(rows.indptr.len(), n + 1);
        for r in 0..n {
            let idx = &rows.indices[rows.indptr[r]..rows.indptr[r + 1]];
            assert!(
                idx.windows(2).all(|w| w[0] < w[1]),
                "{name}: unsorted row {r}"
            );
        }
        let got = densify(&rows, n, d_sae);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                *g > 0.0,
                *w > 0.0,
                "{name}: token {} latent {}: {g} vs {w}",
                i / d_sae,
                i % d_sae
            );
            assert!(
                (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                "{name}: token {} latent {}: {g} vs {w}",
                i / d_sae,
                i % d_sae
            );
        }
    }
}

#[test]
fn every_architecture_matches_its_numpy_reference() {
    let dir = fixtures().join("sae");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(names.len() >= 9, "{names:?}");
    for name in names {
        let d = dir.join(&name);
        let sae = Sae::load(&d).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_matches_reference(&name, &d, &sae);
    }
}

/// EleutherAI sparsify directories (`cfg.json` + `sae.safetensors`, encoder stored
/// `[d_sae, d_in]`) against latents computed with numpy the way sparsify encodes: an
/// autoencoder in bf16 sized by expansion_factor, a transcoder with a skip connection
/// (input not shifted by b_dec), and groupmax without a decoder.
#[test]
fn sparsify_directories_match_their_numpy_reference() {
    for (name, architecture, d_sae, k, shifted) in [
        ("sparsify_topk_bf16", Architecture::TopK, 64, 8, true),
        ("sparsify_transcoder_f32", Architecture::TopK, 64, 3, false),
        ("sparsify_groupmax_f16", Architecture::GroupMax, 64, 8, true),
    ] {
        let d = fixtures().join("sae").join(name);
        let sae = Sae::load(&d).unwrap_or_else(|e| panic!("{name}: {e}"));
        let c = sae.config();
        assert_eq!(c.format, SaeFormat::Sparsify, "{name}");
        assert_eq!(c.architecture, architecture, "{name}");
        assert_eq!((c.d_in, c.d_sae, c.k), (16, d_sae, Some(k)), "{name}");
        assert_eq!(c.apply_b_dec_to_input, shifted, "{name}");
        assert_eq!(c.hook_name.as_deref(), Some(name), "{name}");
        assert_matches_reference(name, &d, &sae);
    }
}

/// Reads a delphi-layout file with absolute latent indices into (seq, pos, latent) → value.
fn read_entries(path: &Path) -> Vec<((i64, i64, i64), f32)> {
    let st = ingest::safetensors::SafeTensors::open(path).unwrap();
    let loc = st.to_i64(st.tensor("locations").unwrap()).unwrap();
    let act = st.to_f32(st.tensor("activations").unwrap()).unwrap();
    loc.chunks_exact(3)
        .map(|c| (c[0], c[1], c[2]))
        .zip(act)
        .collect()
}

#[test]
fn real_topk_sae_reproduces_the_reference_latents() {
    let sae = Sae::load(&smollm2().join("sae")).unwrap();
    assert_eq!(
        (sae.d_in(), sae.d_sae(), sae.config().k),
        (576, 3072, Some(24))
    );
    let (n, _, x) = load_npy(&smollm2().join("residuals_first4.npy"));
    assert_eq!(n, 256);
    let mut rows = SparseRows::default();
    sae.encode(&x, &mut rows, &mut EncodeBuffers::default(), 2);
    let want = read_entries(&smollm2().join("latents_first4.safetensors"));
    let mut got = Vec::new();
    for r in 0..n {
        for e in rows.indptr[r]..rows.indptr[r + 1] {
            if rows.values[e] > 0.0 {
                got.push((
                    ((r / 64) as i64, (r % 64) as i64, rows.indices[e] as i64),
                    rows.values[e],
                ));
            }
        }
    }
    assert_eq!(got.len(), want.len());
    let mut max_diff = 0f32;
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.0, w.0, "nonzero sets differ");
        max_diff = max_diff.max((g.1 - w.1).abs());
    }
    assert!(max_diff < 1e-3, "max |diff| {max_diff}");
}

fn config() -> DictionaryConfig {
    DictionaryConfig::default()
}

fn options() -> BuildOptions {
    BuildOptions {
        threads: 2,
        allow_nonfinite: false,
    }
}

#[test]
fn two_shard_delphi_cache_gives_the_dictionary_of_the_equivalent_dense_input() {
    let shards = smollm2().join("shards_first8");
    let cache = DelphiCache::open(&shards).unwrap();
    assert_eq!(cache.n_features(), 3072);
    let ids = cache.token_ids().unwrap().unwrap();
    assert_eq!((ids.n_sequences, ids.seq_len), (8, 64));
    let vocab = smollm2_tokenizer().into_vocab();
    // The cache's tokens as a build reads them (from the shard, row range by row range)
    // are those of the matrix read whole, over every range of a few rows.
    let tokens = cache.token_sequences(Some(vocab.clone())).unwrap().unwrap();
    let whole = ids
        .clone()
        .into_sequences(&shards, Some(vocab.clone()))
        .unwrap();
    assert_eq!(tokens.offsets(), whole.offsets());
    for a in (0..512).step_by(37) {
        for b in [a, a + 1, (a + 100).min(512), 512] {
            assert_eq!(
                tokens.ids(a..b).unwrap(),
                whole.ids(a..b).unwrap(),
                "rows {a}..{b}"
            );
        }
    }
    // Small batches so several batches (and sequence ranges) are exercised.
    let mut source = DelphiSource::new(cache, tokens, 150).unwrap();
    let sparse = build::build(&mut source, config(), &options(), &mut |_| {}).unwrap();

    // The equivalent dense matrix: every shard entry scattered, latent + shard start.
    let mut dense = vec![0f32; 512 * 3072];
    for (name, start) in [("0_1535", 0), ("1536_3071", 1536)] {
        for ((s, p, l), v) in read_entries(&shards.join(format!("{name}.safetensors"))) {
            dense[(s * 64 + p) as usize * 3072 + (l + start) as usize] = v;
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let npy = tmp.path().join("dense.npy");
    ingest::npy::write_f32(&npy, &[512, 3072], &dense).unwrap();
    let tokens = ids.into_sequences(&npy, Some(vocab)).unwrap();
    let mut dense_src = DenseSource::new(
        ingest::open_dense(&npy).unwrap(),
        tokens,
        5,
        build::VALUES_PER_BATCH,
    )
    .unwrap();
    let from_dense = build::build(&mut dense_src, config(), &options(), &mut |_| {}).unwrap();
    assert_eq!(sparse.num_features(), 3072);
    // 8 sequences × 64 tokens × k = 24 latents per token were stored.
    let fired: u64 = sparse.features().map(|f| f.activation_count).sum();
    assert_eq!(fired, 512 * 24);
    assert_eq!(
        seed_json::to_string(&sparse).unwrap(),
        seed_json::to_string(&from_dense).unwrap()
    );
}

#[test]
fn sae_build_matches_encode_then_delphi_build() {
    let sae_dir = smollm2().join("sae");
    let residuals = smollm2().join("residuals_first4.npy");
    let ids = TokenIdMatrix::from_npy(&smollm2().join("token_ids.npy")).unwrap();
    let first4 = TokenIdMatrix {
        ids: ids.ids[..256].to_vec(),
        n_sequences: 4,
        seq_len: 64,
    };
    let vocab = smollm2_tokenizer().into_vocab();
    // In-process: residuals → SAE → accumulator.
    let tokens = first4
        .clone()
        .into_sequences(&residuals, Some(vocab.clone()))
        .unwrap();
    let dense = DenseSource::new(
        ingest::open_dense(&residuals).unwrap(),
        tokens,
        5,
        100 * 576,
    )
    .unwrap();
    let mut src = sae::SaeSource::new(dense, Sae::load(&sae_dir).unwrap(), 2).unwrap();
    assert_eq!(src.n_features(), 3072);
    let in_process = build::build(&mut src, config(), &options(), &mut |_| {}).unwrap();
    // Two steps: encode to a delphi file (float32), then build from it.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("latents.safetensors");
    let summary = sae::write::encode_to_delphi(
        &Sae::load(&sae_dir).unwrap(),
        &ingest::open_dense(&residuals).unwrap(),
        Some(&first4),
        &sae::write::EncodeOptions {
            f16: false,
            seq_len: None,
            threads: 2,
        },
        &out,
    )
    .unwrap();
    assert_eq!(summary.tokens, 256);
    assert_eq!(summary.locations_dtype, "U16");
    assert!((summary.mean_l0 - 24.0).abs() < 0.5, "{summary:?}");
    let cache = DelphiCache::open(&out).unwrap();
    let tokens = cache.token_sequences(Some(vocab)).unwrap().unwrap();
    let mut src = DelphiSource::new(cache, tokens, 1000).unwrap();
    let two_step = build::build(&mut src, config(), &options(), &mut |_| {}).unwrap();
    assert_eq!(
        seed_json::to_string(&in_process).unwrap(),
        seed_json::to_string(&two_step).unwrap()
    );
    // And the written latents are the reference latents.
    let got = read_entries(&out);
    let want = read_entries(&smollm2().join("latents_first4.safetensors"));
    let got: Vec<_> = got.into_iter().filter(|e| e.1 > 0.0).collect();
    assert_eq!(got.len(), want.len());
    assert!(got
        .iter()
        .zip(&want)
        .all(|(g, w)| g.0 == w.0 && (g.1 - w.1).abs() < 1e-3));
}

#[test]
fn dense_safetensors_reads_like_npy_and_picks_tensors_by_name() {
    let (n, f, x) = load_npy(&smollm2().join("residuals_first4.npy"));
    let tmp = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = x
        .iter()
        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
        .collect();
    let bf: Vec<u8> = x
        .iter()
        .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
        .collect();
    let other = [1u8, 2, 3, 4];
    let one = tmp.path().join("one.safetensors");
    std::fs::write(
        &one,
        ingest::safetensors::serialize(&[
            ("resid", "F16", vec![4, 64, f as u64], &bytes),
            ("n", "U8", vec![4], &other),
        ]),
    )
    .unwrap();
    let m = ingest::open_dense(&one).unwrap();
    assert_eq!(
        (m.n_rows(), m.n_features(), m.sequence_shape()),
        (n as u64, f, Some((4, 64)))
    );
    let mut buf = Vec::new();
    assert_eq!(m.rows_f32(0..n as u64, &mut buf), &x[..]);
    let two = tmp.path().join("two.safetensors");
    std::fs::write(
        &two,
        ingest::safetensors::serialize(&[
            ("a", "F16", vec![n as u64, f as u64], &bytes),
            ("b", "BF16", vec![n as u64, f as u64], &bf),
        ]),
    )
    .unwrap();
    let e = ingest::open_dense(&two).unwrap_err().to_string();
    assert!(
        e.contains("--tensor") && e.contains("a [256, 576] F16") && e.contains("b [256, 576] BF16"),
        "{e}"
    );
    let b = ingest::safetensors::open_dense(&two, Some("b")).unwrap();
    let got = b.rows_f32(0..n as u64, &mut buf).to_vec();
    assert!(got
        .iter()
        .zip(&x)
        .all(|(g, w)| (g - w).abs() <= w.abs() / 128.0 + 1e-6));
    let e = ingest::safetensors::open_dense(&two, Some("zz"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing tensor \"zz\""), "{e}");
    let _ = TokenSequences::from_strings(&[vec!["a"]]);
}
