//! `featdict build` on real input formats (delphi shards, token ids + tokenizer.json, an SAE
//! run in-process, dense safetensors) and `featdict encode`, through the binary.

mod common;
use common::*;

use std::path::{Path, PathBuf};

fn ok(args: &[&str]) -> serde_json::Value {
    let out = featdict(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed: {err}");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn fails(args: &[&str], needles: &[&str]) {
    let out = featdict(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(!err.contains("panicked"), "panic: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
}

fn fx() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../feature-dictionary/tests/fixtures/smollm2")
}

#[test]
fn delphi_shards_with_tokenizer_and_sae_build_and_encode() {
    let tmp = tempfile::tempdir().unwrap();
    let (shards, tok, sae) = (
        fx().join("shards_first8"),
        fx().join("tokenizer.json"),
        fx().join("sae"),
    );
    let d1 = tmp.path().join("d1.json");
    let v = ok(&[
        "build",
        s(&shards),
        "--tokenizer",
        s(&tok),
        "--out",
        s(&d1),
        "--json",
        "-q",
    ]);
    assert_eq!(v["statistics"]["total_features"], 3072);
    assert_eq!(v["statistics"]["total_tokens_processed"], 512);
    // Tokens are shown as text, with their own spaces.
    let show = featdict(&["show", s(&d1), "5", "--json"]);
    assert!(show.status.success());
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains("\" "),
        "expected space-led tokens in {text:.400}"
    );

    // Residuals of the first 4 sequences, encoded in-process, with token ids.
    let ids4 = tmp.path().join("ids4.npy");
    let all =
        feature_dictionary::ingest::token_ids::TokenIdMatrix::from_npy(&fx().join("token_ids.npy"))
            .unwrap();
    write_ids(&ids4, &all.ids[..256], 4, 64);
    let resid = fx().join("residuals_first4.npy");
    let d2 = tmp.path().join("d2.json");
    ok(&[
        "build",
        s(&resid),
        "--sae",
        s(&sae),
        "--token-ids",
        s(&ids4),
        "--tokenizer",
        s(&tok),
        "--out",
        s(&d2),
        "--json",
        "-q",
    ]);
    // Encode to a delphi file, then build from it: the same dictionary.
    let lat = tmp.path().join("lat.safetensors");
    let v = ok(&[
        "encode",
        s(&resid),
        "--sae",
        s(&sae),
        "--token-ids",
        s(&ids4),
        "--f32",
        "--out",
        s(&lat),
        "--json",
    ]);
    assert_eq!(v["summary"]["entries"], 256 * 24);
    assert_eq!(v["summary"]["locations_dtype"], "U16");
    let d3 = tmp.path().join("d3.json");
    ok(&[
        "build",
        s(&lat),
        "--tokenizer",
        s(&tok),
        "--out",
        s(&d3),
        "--json",
        "-q",
    ]);
    assert_eq!(std::fs::read(&d2).unwrap(), std::fs::read(&d3).unwrap());

    // Errors: SAE on a latent cache, both token kinds, tokenizer with JSON tokens, bad tensor.
    let out = tmp.path().join("x.json");
    fails(
        &["build", s(&shards), "--sae", s(&sae), "--out", s(&out)],
        &["delphi latent cache", "--sae"],
    );
    fails(
        &["build", s(&resid), "--sae", s(&sae), "--out", s(&out)],
        &["no tokens", "--token-ids"],
    );
    fails(
        &[
            "build",
            s(&resid),
            "--tokens",
            s(&fx().join("tokens.json")),
            "--token-ids",
            s(&ids4),
            "--out",
            s(&out),
        ],
        &["not both"],
    );
    fails(
        &[
            "build",
            s(&resid),
            "--tensor",
            "x",
            "--token-ids",
            s(&ids4),
            "--out",
            s(&out),
        ],
        &["--tensor"],
    );
    fails(
        &[
            "build",
            s(&resid),
            "--sae",
            s(&shards),
            "--token-ids",
            s(&ids4),
            "--out",
            s(&out),
        ],
        &["no sae_weights.safetensors (SAELens), sae.safetensors (sparsify) or params.npz"],
    );
    fails(
        &["encode", s(&resid), "--sae", s(&sae), "--out", s(&lat)],
        &["--seq-len"],
    );
    fails(
        &[
            "build",
            s(&resid),
            "--sae",
            s(&sae),
            "--token-ids",
            s(&fx().join("token_ids.npy")),
            "--out",
            s(&out),
        ],
        &["256 rows", "12800 tokens"],
    );
}

fn write_ids(path: &Path, ids: &[u32], n: usize, l: usize) {
    let dict = format!("{{'descr': '<i4', 'fortran_order': False, 'shape': ({n}, {l}), }}");
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    h.extend((dict.len() as u16).to_le_bytes());
    h.extend(dict.as_bytes());
    for &v in ids {
        h.extend((v as i32).to_le_bytes());
    }
    std::fs::write(path, h).unwrap();
}

/// `similar --sae` takes the SAE directory the README and `build --sae` take, as well as
/// its weights file, with the same answer; a directory without weights is named.
#[test]
fn similar_takes_the_sae_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d.json");
    ok(&[
        "build",
        s(&fx().join("shards_first8")),
        "--out",
        s(&d),
        "-q",
    ]);
    let sae = fx().join("sae");
    let by_dir = ok(&["similar", s(&d), "5", "--sae", s(&sae), "--json"]);
    let by_file = ok(&[
        "similar",
        s(&d),
        "5",
        "--sae",
        s(&sae.join("sae_weights.safetensors")),
        "--json",
    ]);
    assert_eq!(by_dir, by_file);
    assert_eq!(by_dir["method"], "decoder cosine");
    assert_eq!(by_dir["similar"].as_array().unwrap().len(), 10);
    fails(
        &["similar", s(&d), "5", "--sae", s(tmp.path())],
        &[s(tmp.path()), "sae_weights.safetensors"],
    );
}

/// A delphi shard file `<dir>/<start>_<end>.safetensors` with u16 locations and f32 values.
fn write_shard(dir: &Path, start: u64, end: u64, entries: &[[u16; 3]], values: &[f32]) {
    let locs: Vec<u8> = entries
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let acts: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let ids: Vec<u8> = (0..6i64).flat_map(|v| v.to_le_bytes()).collect();
    let bytes = feature_dictionary::ingest::safetensors::serialize(&[
        ("locations", "U16", vec![entries.len() as u64, 3], &locs),
        ("activations", "F32", vec![values.len() as u64], &acts),
        ("tokens", "I64", vec![2, 3], &ids),
    ]);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{start}_{end}.safetensors")), bytes).unwrap();
}

/// A cache directory whose shards leave latents uncovered is missing a shard: building it
/// would report those latents as dead (never fired) when their data is simply absent.
#[test]
fn delphi_directory_with_a_missing_shard_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layer");
    write_shard(&dir, 0, 1, &[[0, 0, 1]], &[1.0]);
    write_shard(&dir, 4, 5, &[[1, 2, 1]], &[2.0]);
    let out = tmp.path().join("x.json");
    fails(
        &["build", s(&dir), "--out", s(&out), "-q"],
        &[s(&dir), "latents 2..=3", "2_3.safetensors"],
    );
    // With the missing shard back, the same cache builds: 6 latents, 3 of them firing.
    write_shard(&dir, 2, 3, &[[0, 1, 0]], &[3.0]);
    let v = ok(&["build", s(&dir), "--out", s(&out), "-q", "--json"]);
    assert_eq!(v["statistics"]["total_features"], 6);
    assert_eq!(v["statistics"]["active_features"], 3);
}

/// A standard (ReLU) SAELens directory `dir` with `W_enc` `[d_in, d_sae]` (row-major),
/// `b_enc` and a zero `b_dec`.
fn write_standard_sae(dir: &Path, d_in: usize, d_sae: usize, w_enc: &[f32], b_enc: &[f32]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("cfg.json"),
        format!(r#"{{"architecture":"standard","d_in":{d_in},"d_sae":{d_sae},"apply_b_dec_to_input":false}}"#),
    )
    .unwrap();
    let f32s = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let (w, b, zeros) = (f32s(w_enc), f32s(b_enc), f32s(&vec![0.0; d_in]));
    let bytes = feature_dictionary::ingest::safetensors::serialize(&[
        ("W_enc", "F32", vec![d_in as u64, d_sae as u64], &w),
        ("b_enc", "F32", vec![d_sae as u64], &b),
        ("b_dec", "F32", vec![d_in as u64], &zeros),
    ]);
    std::fs::write(dir.join("sae_weights.safetensors"), bytes).unwrap();
}

/// `featdict encode RESID --sae SAE --token-ids IDS --f32 --out OUT`, which must succeed.
fn encode_f32(resid: &Path, sae: &Path, ids: &Path, out: &Path) {
    ok(&[
        "encode",
        s(resid),
        "--sae",
        s(sae),
        "--token-ids",
        s(ids),
        "--f32",
        "--out",
        s(out),
    ]);
}

/// `encode` then `build` must describe the SAE's latents like `build --sae` does, including
/// latents above the largest one that fired: a lone latents file has absolute indices and no
/// name range, so without the SAE width the dictionary lost its trailing dead latents.
#[test]
fn encoded_latents_keep_the_sae_width_when_the_last_latents_never_fire() {
    let tmp = tempfile::tempdir().unwrap();
    let d_in = 2usize;
    let sae = tmp.path().join("sae");
    // Latent j reads input j % 2; latents 2 and 3 carry a bias that keeps them off.
    write_standard_sae(
        &sae,
        d_in,
        4,
        &[1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0],
        &[0.0, 0.0, -100.0, -100.0],
    );
    let resid = tmp.path().join("resid.npy");
    feature_dictionary::ingest::npy::write_f32(
        &resid,
        &[1, 3, d_in],
        &[1.0, 0.5, 2.0, 0.0, 0.0, 3.0],
    )
    .unwrap();
    let ids = tmp.path().join("ids.npy");
    write_ids(&ids, &[7, 8, 9], 1, 3);

    let direct = tmp.path().join("direct.json");
    let v = ok(&[
        "build",
        s(&resid),
        "--sae",
        s(&sae),
        "--token-ids",
        s(&ids),
        "--out",
        s(&direct),
        "--json",
        "-q",
    ]);
    assert_eq!(v["statistics"]["total_features"], 4);
    assert_eq!(v["statistics"]["dead_features"], 2);

    let lat = tmp.path().join("lat.safetensors");
    encode_f32(&resid, &sae, &ids, &lat);
    let via = tmp.path().join("via.json");
    let v = ok(&["build", s(&lat), "--out", s(&via), "--json", "-q"]);
    assert_eq!(v["statistics"]["total_features"], 4);
    assert_eq!(v["statistics"]["dead_features"], 2);
    assert_eq!(
        std::fs::read(&direct).unwrap(),
        std::fs::read(&via).unwrap()
    );
}

/// A latent beyond float16's range was written as +inf by the default float16 `encode`,
/// leaving a file every reader then rejects (or, in delphi, reads as inf).
#[test]
fn encode_refuses_latents_that_overflow_float16() {
    let tmp = tempfile::tempdir().unwrap();
    let sae = tmp.path().join("sae");
    write_standard_sae(&sae, 2, 2, &[1e5, 1.0, 0.0, 1.0], &[0.0, 0.0]);
    let resid = tmp.path().join("resid.npy");
    // Latent 0 of (sequence 0, position 2) is 0.8 × 1e5 = 80000 > 65504.
    feature_dictionary::ingest::npy::write_f32(&resid, &[1, 3, 2], &[0.1, 1.0, 0.2, 0.5, 0.8, 0.0])
        .unwrap();
    let lat = tmp.path().join("lat.safetensors");
    fails(
        &["encode", s(&resid), "--sae", s(&sae), "--out", s(&lat)],
        &[s(&resid), "80000", "position 2", "65504", "--f32"],
    );
    assert!(!lat.exists());
    let ids = tmp.path().join("ids.npy");
    write_ids(&ids, &[1, 2, 3], 1, 3);
    encode_f32(&resid, &sae, &ids, &lat);
    let d = tmp.path().join("d.json");
    let v = ok(&["build", s(&lat), "--out", s(&d), "--json", "-q"]);
    assert_eq!(v["statistics"]["total_features"], 2);
    let dict: serde_json::Value = serde_json::from_slice(&std::fs::read(&d).unwrap()).unwrap();
    assert_eq!(
        dict["feature_set"]["features"]["0"]["max_activation"],
        80000.0
    );
    // A NaN residual is refused where it is, not written for a later reader to refuse.
    let nan = tmp.path().join("nan.npy");
    feature_dictionary::ingest::npy::write_f32(
        &nan,
        &[1, 3, 2],
        &[0.1, 1.0, f32::NAN, 0.5, 0.0, 0.0],
    )
    .unwrap();
    let lat_nan = tmp.path().join("nan.safetensors");
    fails(
        &[
            "encode",
            s(&nan),
            "--sae",
            s(&sae),
            "--f32",
            "--out",
            s(&lat_nan),
        ],
        &[s(&nan), "NaN", "position 1"],
    );
    assert!(!lat_nan.exists());
}

/// A dense file with bytes after its data says so in plain words.
#[test]
fn npy_with_trailing_bytes_is_named_plainly() {
    let tmp = tempfile::tempdir().unwrap();
    let acts = tmp.path().join("a.npy");
    feature_dictionary::ingest::npy::write_f32(&acts, &[1, 2], &[1.0, 2.0]).unwrap();
    let mut bytes = std::fs::read(&acts).unwrap();
    bytes.extend([0u8; 4]);
    std::fs::write(&acts, bytes).unwrap();
    let tokens = tmp.path().join("t.json");
    std::fs::write(&tokens, r#"[["a"]]"#).unwrap();
    let out = tmp.path().join("x.json");
    fails(
        &["build", s(&acts), "--tokens", s(&tokens), "--out", s(&out)],
        &[
            s(&acts),
            "file has trailing bytes: shape [1, 2] of float32 needs 8 data bytes but 12 follow",
        ],
    );
}

/// `encode` options that cannot apply were ignored: `--tensor` on a `.npy`, and a
/// `--seq-len` contradicting the residuals' own sequence length.
#[test]
fn encode_rejects_options_that_contradict_the_input() {
    let tmp = tempfile::tempdir().unwrap();
    let sae = fx().join("sae");
    let resid = fx().join("residuals_first4.npy");
    let lat = tmp.path().join("lat.safetensors");
    fails(
        &[
            "encode",
            s(&resid),
            "--sae",
            s(&sae),
            "--seq-len",
            "64",
            "--tensor",
            "x",
            "--out",
            s(&lat),
        ],
        &["--tensor", s(&resid)],
    );
    let ids = tmp.path().join("ids.npy");
    write_ids(&ids, &vec![1; 256], 4, 64);
    fails(
        &[
            "encode",
            s(&resid),
            "--sae",
            s(&sae),
            "--token-ids",
            s(&ids),
            "--seq-len",
            "32",
            "--out",
            s(&lat),
        ],
        &["--seq-len 32", "64 tokens per sequence", s(&resid)],
    );
    assert!(!lat.exists());
}

/// An EleutherAI sparsify checkpoint (one `cfg.json` + `sae.safetensors` directory per
/// hookpoint): `encode` writes the fixture's numpy reference latents, `build --sae` gives
/// the same dictionary as building from those latents, `similar --sae` reads its decoder,
/// the checkpoint root names its hookpoints, and residuals of the wrong width are refused
/// by both commands.
#[test]
fn sparsify_directory_encodes_and_builds() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../feature-dictionary/tests/fixtures/sae/sparsify_topk_bf16");
    let root = tmp.path().join("ckpt");
    for layer in ["layers.3", "layers.11"] {
        std::fs::create_dir_all(root.join(layer)).unwrap();
        for f in ["cfg.json", "sae.safetensors"] {
            std::fs::copy(fixture.join(f), root.join(layer).join(f)).unwrap();
        }
    }
    let sae = root.join("layers.11");
    // The fixture's 32 tokens as 4 sequences of 8.
    let read = |name: &str| {
        let m = feature_dictionary::ingest::npy::open(&fixture.join(name)).unwrap();
        let mut buf = Vec::new();
        (m.n_features(), m.rows_f32(0..m.n_rows(), &mut buf).to_vec())
    };
    let (d_in, x) = read("inputs.npy");
    let (d_sae, want) = read("expected.npy");
    assert_eq!((d_in, d_sae, x.len()), (16, 64, 32 * 16));
    let resid = tmp.path().join("resid.npy");
    feature_dictionary::ingest::npy::write_f32(&resid, &[4, 8, d_in], &x).unwrap();
    let ids = tmp.path().join("ids.npy");
    write_ids(&ids, &(0..32).collect::<Vec<u32>>(), 4, 8);

    let lat = tmp.path().join("lat.safetensors");
    encode_f32(&resid, &sae, &ids, &lat);
    let st = feature_dictionary::ingest::safetensors::SafeTensors::open(&lat).unwrap();
    let loc = st.to_i64(st.tensor("locations").unwrap()).unwrap();
    let act = st.to_f32(st.tensor("activations").unwrap()).unwrap();
    let mut got = vec![0f32; 32 * d_sae];
    for (l, v) in loc.chunks_exact(3).zip(&act) {
        got[(l[0] * 8 + l[1]) as usize * d_sae + l[2] as usize] = *v;
    }
    assert_eq!(act.len(), want.iter().filter(|v| **v > 0.0).count());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (*g > 0.0) == (*w > 0.0) && (g - w).abs() <= 1e-4 * w.abs().max(1.0),
            "token {} latent {}: {g} vs {w}",
            i / d_sae,
            i % d_sae
        );
    }

    let direct = tmp.path().join("direct.json");
    let v = ok(&[
        "build",
        s(&resid),
        "--sae",
        s(&sae),
        "--token-ids",
        s(&ids),
        "--out",
        s(&direct),
        "--json",
        "-q",
    ]);
    assert_eq!(v["statistics"]["total_features"], 64);
    assert_eq!(v["statistics"]["total_tokens_processed"], 32);
    let via = tmp.path().join("via.json");
    ok(&["build", s(&lat), "--out", s(&via), "-q"]);
    assert_eq!(
        std::fs::read(&direct).unwrap(),
        std::fs::read(&via).unwrap()
    );

    // `similar --sae` finds the decoder (W_dec) in sae.safetensors.
    let by_dir = ok(&["similar", s(&direct), "5", "--sae", s(&sae), "--json"]);
    let by_file = ok(&[
        "similar",
        s(&direct),
        "5",
        "--sae",
        s(&sae.join("sae.safetensors")),
        "--json",
    ]);
    assert_eq!(by_dir, by_file);
    assert_eq!(by_dir["method"], "decoder cosine");

    let out = tmp.path().join("x.safetensors");
    fails(
        &[
            "encode",
            s(&resid),
            "--sae",
            s(&root),
            "--seq-len",
            "8",
            "--out",
            s(&out),
        ],
        &[
            s(&root),
            "hookpoint subdirectories (layers.3, layers.11)",
            "pass the one to use",
        ],
    );
    let narrow = tmp.path().join("narrow.npy");
    feature_dictionary::ingest::npy::write_f32(&narrow, &[4, 8, 2], &x[..64]).unwrap();
    fails(
        &[
            "encode",
            s(&narrow),
            "--sae",
            s(&sae),
            "--seq-len",
            "8",
            "--out",
            s(&out),
        ],
        &["2 features per token", "d_in = 16"],
    );
    fails(
        &[
            "build",
            s(&narrow),
            "--sae",
            s(&sae),
            "--token-ids",
            s(&ids),
            "--out",
            s(&tmp.path().join("n.json")),
        ],
        &["2 features per token", "layers.11", "d_in = 16"],
    );
    assert!(!out.exists());
}

/// `encode` wrote its safetensors file under any name, which `build` then refused to read
/// ("unsupported activation file extension"); and over its own residuals file.
#[test]
fn encode_writes_only_a_safetensors_file_that_is_not_its_input() {
    let tmp = tempfile::tempdir().unwrap();
    let sae = fx().join("sae");
    let resid = fx().join("residuals_first4.npy");
    for name in ["lat.txt", "lat", "lat.npy"] {
        let out = tmp.path().join(name);
        fails(
            &[
                "encode",
                s(&resid),
                "--sae",
                s(&sae),
                "--seq-len",
                "64",
                "--out",
                s(&out),
            ],
            &["--out must end in .safetensors", name],
        );
        assert!(!out.exists(), "{name}");
    }
    // Residuals given as safetensors, and --out naming that same file.
    let copy = tmp.path().join("resid.safetensors");
    let lat = tmp.path().join("lat.safetensors");
    ok(&[
        "encode",
        s(&resid),
        "--sae",
        s(&sae),
        "--seq-len",
        "64",
        "--f32",
        "--out",
        s(&lat),
    ]);
    std::fs::copy(&lat, &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    fails(
        &[
            "encode",
            s(&copy),
            "--sae",
            s(&sae),
            "--seq-len",
            "64",
            "--out",
            s(&copy),
        ],
        &["the residuals", "another --out"],
    );
    assert_eq!(std::fs::read(&copy).unwrap(), before);
}
