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
    // The sentence counts stored entries as nonzero latents, not the SAE's latents.
    let lat_text = tmp.path().join("lat_text.safetensors");
    let out = featdict(&[
        "encode",
        s(&resid),
        "--sae",
        s(&sae),
        "--token-ids",
        s(&ids4),
        "--out",
        s(&lat_text),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!(
            "{} nonzero latents over 256 tokens in 4 sequences (mean L0 24.00",
            256 * 24
        )),
        "{text}"
    );
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
    // The same dictionary, feature_dim included (`encode` records the SAE's d_in), but for
    // the similar features only a build holding the SAE's decoder stores.
    assert_eq!(without_similar(&d2), json_of(&d3));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&d2).unwrap()).unwrap();
    let d_in = v["config"]["feature_dim"].as_u64().unwrap();
    assert!(d_in > 0);
    assert!(v["feature_set"]["features"]
        .as_object()
        .unwrap()
        .values()
        .all(|f| f["dimension"] == d_in));

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
    // A delphi shard written without token ids: the error names the shard and what it
    // lacks (it said only "no tokens"), and so for a directory of such shards.
    let bare_dir = tmp.path().join("bare");
    std::fs::create_dir(&bare_dir).unwrap();
    let bare = bare_dir.join("0_3071.safetensors");
    ok(&[
        "encode",
        s(&resid),
        "--sae",
        s(&sae),
        "--seq-len",
        "64",
        "--out",
        s(&bare),
        "--json",
    ]);
    fails(
        &["build", s(&bare), "--tokenizer", s(&tok), "--out", s(&out)],
        &[
            &format!(
                "error: {}: this delphi cache shard has no `tokens` tensor",
                bare.display()
            ),
            "--token-ids",
        ],
    );
    fails(
        &["build", s(&bare_dir), "--out", s(&out)],
        &[
            &format!(
                "error: {}: no shard of this delphi cache has a `tokens` tensor",
                bare_dir.display()
            ),
            "--tokens TOKENS.json",
        ],
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
    let bytes: Vec<u8> = ids.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect();
    feature_dictionary::ingest::npy::write_bytes(path, "<i4", &[n, l], false, &bytes).unwrap();
}

/// The first 32 residual rows of an SAE fixture's `inputs.npy` as 4 sequences of 8
/// (`resid.npy` in `dir`), with token ids 0..32 (`ids.npy`), and the residual width.
fn fixture_residuals(fixture: &Path, dir: &Path) -> (PathBuf, PathBuf, usize) {
    let m = feature_dictionary::ingest::npy::open(&fixture.join("inputs.npy")).unwrap();
    let d_in = m.n_features();
    let mut buf = Vec::new();
    let x = m.rows_f32(0..32, &mut buf);
    let resid = dir.join("resid.npy");
    feature_dictionary::ingest::npy::write_f32(&resid, &[4, 8, d_in], x).unwrap();
    let ids = dir.join("ids.npy");
    write_ids(&ids, &(0..32).collect::<Vec<u32>>(), 4, 8);
    (resid, ids, d_in)
}

/// `similar DICT ID --sae` given the SAE directory and given its weights file `weights`:
/// the same answer (returned), by decoder cosine.
fn similar_by_dir_and_file(dict: &Path, id: &str, sae: &Path, weights: &str) -> serde_json::Value {
    let by_dir = ok(&["similar", s(dict), id, "--sae", s(sae), "--json"]);
    let by_file = ok(&[
        "similar",
        s(dict),
        id,
        "--sae",
        s(&sae.join(weights)),
        "--json",
    ]);
    assert_eq!(by_dir, by_file);
    assert_eq!(by_dir["method"], "decoder cosine");
    by_dir
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
    let by_dir = similar_by_dir_and_file(&d, "5", &sae, "sae_weights.safetensors");
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

/// Latents past the last shard of a cache, or above the largest that fired in a lone file
/// with absolute indices, used to vanish from the dictionary (neither counted nor reported
/// dead): a cache whose `config.json` says more shards than it holds is refused; a lone
/// file warns that its width is a guess, and `--latents` gives the width (checked against
/// what the input says).
#[test]
fn latents_the_input_does_not_cover_are_never_silently_left_out() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layers.2");
    write_shard(&dir, 0, 3, &[[0, 0, 1], [1, 2, 3]], &[1.0, 2.0]);
    std::fs::write(dir.join("config.json"), r#"{"n_splits": 2}"#).unwrap();
    let out = tmp.path().join("x.json");
    fails(
        &["build", s(&dir), "--out", s(&out), "-q"],
        &[
            "saved in 2 shards (n_splits)",
            "0_3.safetensors",
            "left out",
        ],
    );
    write_shard(&dir, 4, 7, &[[0, 1, 0]], &[3.0]);
    let v = ok(&["build", s(&dir), "--out", s(&out), "-q", "--json"]);
    assert_eq!(v["statistics"]["total_features"], 8);
    fails(
        &["build", s(&dir), "--out", s(&out), "-q", "--latents", "16"],
        &[
            "covers 8 latents, but the SAE is said to have 16",
            "latents 8..=15 are in no shard",
        ],
    );
    // A lone file with absolute latent indices, the largest that fired being 3.
    let lone_dir = tmp.path().join("lone");
    write_shard(&lone_dir, 0, 3, &[[0, 0, 1], [1, 2, 3]], &[1.0, 2.0]);
    let lone = lone_dir.join("layers.2.safetensors");
    std::fs::rename(lone_dir.join("0_3.safetensors"), &lone).unwrap();
    let run = featdict(&["build", s(&lone), "--out", s(&out), "-q", "--json"]);
    assert!(run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("does not say how many latents its SAE has: taking 4")
            && err.contains("--latents N"),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(v["statistics"]["total_features"], 4);
    let run = featdict(&[
        "build",
        s(&lone),
        "--out",
        s(&out),
        "-q",
        "--json",
        "--latents",
        "10",
    ]);
    assert!(run.status.success());
    assert!(!String::from_utf8_lossy(&run.stderr).contains("does not say how many latents"));
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(v["statistics"]["total_features"], 10);
    assert_eq!(v["statistics"]["dead_features"], 8);
    fails(
        &["build", s(&lone), "--out", s(&out), "-q", "--latents", "3"],
        &["holds latent 3 but the SAE is said to have 3 latents"],
    );
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

/// `build RESID --sae SAE --token-ids IDS --out OUT --json`: its JSON summary.
fn build_with_sae(resid: &Path, sae: &Path, ids: &Path, out: &Path) -> serde_json::Value {
    ok(&[
        "build",
        s(resid),
        "--sae",
        s(sae),
        "--token-ids",
        s(ids),
        "--out",
        s(out),
        "--json",
        "-q",
    ])
}

/// `encode` of `resid` with `sae` into latents beside `out`, then `build` of those into `out`
/// (no `--sae`: what a build from a latents file knows).
fn build_encoded(resid: &Path, sae: &Path, ids: &Path, out: &Path) {
    let latents = out.with_extension("safetensors");
    ok(&[
        "encode",
        s(resid),
        "--sae",
        s(sae),
        "--token-ids",
        s(ids),
        "--out",
        s(&latents),
        "-q",
    ]);
    ok(&["build", s(&latents), "--out", s(out), "-q"]);
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
    let v = build_with_sae(&resid, &sae, &ids, &direct);
    assert_eq!(v["statistics"]["total_features"], 4);
    assert_eq!(v["statistics"]["dead_features"], 2);
    // This SAE has no decoder: the dictionary is written without similar features, and a
    // warning says why, -q included (which hides progress only; it used to hide this too).
    let loud = tmp.path().join("loud.json");
    let out = featdict(&[
        "build",
        s(&resid),
        "--sae",
        s(&sae),
        "--token-ids",
        s(&ids),
        "--out",
        s(&loud),
        "-q",
    ]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("similar features not stored") && err.contains("W_dec"),
        "{err}"
    );

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
    // A build through the SAE reports the token's latents, and says they come from its
    // residual vector.
    fails(
        &[
            "build",
            s(&nan),
            "--sae",
            s(&sae),
            "--token-ids",
            s(&ids),
            "--out",
            s(&d),
        ],
        &[
            "residual vector in",
            "non-finite activation value",
            "sequence 0, position 1",
        ],
    );
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
    let v = build_with_sae(&resid, &sae, &ids, &direct);
    assert_eq!(v["statistics"]["total_features"], 64);
    assert_eq!(v["statistics"]["total_tokens_processed"], 32);
    let via = tmp.path().join("via.json");
    ok(&["build", s(&lat), "--out", s(&via), "-q"]);
    assert_eq!(without_similar(&direct), json_of(&via));

    // `similar --sae` finds the decoder (W_dec) in sae.safetensors.
    let by_dir = similar_by_dir_and_file(&direct, "5", &sae, "sae.safetensors");
    // What the build stored for feature 5 is that same ranking.
    let stored =
        json_of(&direct)["feature_set"]["features"]["5"]["metadata"]["similar_features"].clone();
    let ranked: Vec<(u64, f64)> = by_dir["similar"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_u64().unwrap(), r["similarity"].as_f64().unwrap()))
        .collect();
    let stored: Vec<(u64, f64)> = serde_json::from_value(stored).unwrap();
    assert_eq!(
        stored.iter().map(|p| p.0).collect::<Vec<_>>(),
        ranked.iter().map(|p| p.0).collect::<Vec<_>>()
    );
    for (a, b) in stored.iter().zip(&ranked) {
        assert!((a.1 - b.1).abs() < 1e-6, "{a:?} vs {b:?}");
    }

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

/// A Gemma Scope SAE (`params.npz` alone, decoder `w_dec`): `build --sae` stores every
/// feature's decoder neighbours and `similar` / `logits` read its decoder, from the
/// directory or the file; the cosines are those of the rows of `w_dec`. (Only safetensors
/// were read for the decoder: the build warned and stored none.)
#[test]
fn gemma_scope_npz_gives_decoder_neighbours() {
    let tmp = tempfile::tempdir().unwrap();
    let sae = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../feature-dictionary/tests/fixtures/sae/gemmascope_npz");
    let (resid, ids, _) = fixture_residuals(&sae, tmp.path());
    let dict = tmp.path().join("d.json");
    let v = build_with_sae(&resid, &sae, &ids, &dict);
    assert_eq!(v["statistics"]["total_features"], 64);

    // Brute force: cosines of feature 5's decoder row with every other row, best first.
    let mut w =
        feature_dictionary::sae::weights::Weights::from_npz(&sae.join("params.npz")).unwrap();
    let w_dec = w.take(&["w_dec"], &[64, 16]).unwrap();
    let row = |i: usize| &w_dec[i * 16..(i + 1) * 16];
    let dot = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| *x as f64 * *y as f64)
            .sum::<f64>()
    };
    let mut want: Vec<(u64, f64)> = (0..64)
        .filter(|&j| j != 5)
        .map(|j| {
            let c = dot(row(5), row(j)) / (dot(row(5), row(5)) * dot(row(j), row(j))).sqrt();
            (j as u64, c)
        })
        .collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    want.truncate(10);

    let stored: Vec<(u64, f64)> = serde_json::from_value(
        json_of(&dict)["feature_set"]["features"]["5"]["metadata"]["similar_features"].clone(),
    )
    .unwrap();
    let by_dir = similar_by_dir_and_file(&dict, "5", &sae, "params.npz");
    let ranked: Vec<(u64, f64)> = by_dir["similar"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_u64().unwrap(), r["similarity"].as_f64().unwrap()))
        .collect();
    for got in [&stored, &ranked] {
        assert_eq!(got.len(), 10);
        for (g, w) in got.iter().zip(&want) {
            assert!(
                g.0 == w.0 && (g.1 - w.1).abs() < 1e-5,
                "{got:?} vs {want:?}"
            );
        }
    }
    // A tensor the file does not have is named with what it does have.
    fails(
        &[
            "similar",
            s(&dict),
            "5",
            "--sae",
            s(&sae),
            "--tensor",
            "W_enc",
        ],
        &["params.npz", "no array \"W_enc\"", "w_dec [64, 16]"],
    );
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

/// A float16's bits for `v`, which must be 0, NaN or a normal float16 exactly.
fn f16_bits(v: f32) -> u16 {
    if v == 0.0 {
        return 0;
    }
    if v.is_nan() {
        return 0x7e00;
    }
    let b = v.to_bits();
    let e = ((b >> 23) & 0xff) as i32 - 127 + 15;
    assert!(e > 0 && e < 31 && b & 0x1fff == 0, "{v} is not a float16");
    (((b >> 16) & 0x8000) | (e as u32) << 10 | ((b >> 13) & 0x3ff)) as u16
}

/// `n_seq` sequences of `seq_len` rows × `f` features, sparse, on a 1/8 grid (exact in
/// float16): feature j fires at every (2 + j mod 4)-th position, and at random elsewhere.
fn sparse_grid(n_seq: usize, seq_len: usize, f: usize) -> Vec<f32> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut v = Vec::with_capacity(n_seq * seq_len * f);
    for _ in 0..n_seq {
        for p in 0..seq_len {
            for j in 0..f {
                let fires = p % (2 + j % 4) == 0 || next() % 5 == 0;
                v.push(if fires {
                    (1 + next() % 40) as f32 / 8.0
                } else {
                    0.0
                });
            }
        }
    }
    v
}

/// The dictionary `featdict build` wrote, as JSON.
fn built(acts: &Path, tokens: (&str, &Path), out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "build",
        s(acts),
        tokens.0,
        s(tokens.1),
        "--out",
        s(out),
        "-q",
    ];
    args.extend_from_slice(extra);
    assert_success(&featdict(&args));
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

/// A Fortran-order `.npy` (`np.save(path, acts.T)`) builds the dictionary its C-order copy
/// builds, whatever the batch size (batches of 2 and 7 rows cut through sequences) and
/// thread count; so do Fortran-order token ids.
#[test]
fn fortran_order_npy_builds_what_c_order_builds() {
    let tmp = tempfile::tempdir().unwrap();
    let (n_seq, seq_len, f) = (6, 10, 12);
    let values = sparse_grid(n_seq, seq_len, f);
    let tokens: Vec<Vec<String>> = (0..n_seq)
        .map(|q| {
            (0..seq_len)
                .map(|p| format!("w{}", (q * 7 + p * 3) % 11))
                .collect()
        })
        .collect();
    let toks = tmp.path().join("tokens.json");
    std::fs::write(&toks, serde_json::to_string(&tokens).unwrap()).unwrap();
    let ids: Vec<u8> = (0..n_seq * seq_len)
        .flat_map(|r| (((r / seq_len) * 7 + (r % seq_len) * 3) % 11).to_le_bytes())
        .collect();
    let (ids_c, ids_f) = (tmp.path().join("ids-c.npy"), tmp.path().join("ids-f.npy"));
    write_npy(&ids_c, "<i8", &[n_seq, seq_len], false, &ids);
    write_npy(&ids_f, "<i8", &[n_seq, seq_len], true, &ids);

    let f16: Vec<u8> = values
        .iter()
        .flat_map(|&v| f16_bits(v).to_le_bytes())
        .collect();
    let f32: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    for (name, descr, shape, bytes) in [
        ("f16-3d", "<f2", vec![n_seq, seq_len, f], &f16),
        ("f32-2d", "<f4", vec![n_seq * seq_len, f], &f32),
    ] {
        let (c, fo) = (
            tmp.path().join(format!("{name}-c.npy")),
            tmp.path().join(format!("{name}-f.npy")),
        );
        write_npy(&c, descr, &shape, false, bytes);
        write_npy(&fo, descr, &shape, true, bytes);
        let out = tmp.path().join(format!("{name}.json"));
        let reference = built(&c, ("--tokens", &toks), &out, &["--threads", "1"]);
        assert_eq!(
            reference["feature_set"]["features"]["0"]["activation_count"].as_u64(),
            Some(values.iter().step_by(f).filter(|&&v| v >= 0.01).count() as u64),
            "{name}"
        );
        for threads in ["1", "2"] {
            for batch in [2 * f, 7 * f, 1 << 20] {
                let batch = batch.to_string();
                let got = built(
                    &fo,
                    ("--tokens", &toks),
                    &out,
                    &["--threads", threads, "--batch-values", &batch],
                );
                assert!(
                    got == reference,
                    "{name}: threads {threads}, --batch-values {batch}"
                );
            }
        }
        // Token ids in either order (shown as [id] without a tokenizer).
        let by_ids = built(&c, ("--token-ids", &ids_c), &out, &[]);
        assert!(
            built(
                &fo,
                ("--token-ids", &ids_f),
                &out,
                &["--batch-values", "36"]
            ) == by_ids
        );
        assert_eq!(
            reference["feature_set"]["features"]["3"]["activation_count"],
            by_ids["feature_set"]["features"]["3"]["activation_count"]
        );
    }

    // A NaN is reported at its sequence, position and feature.
    let mut with_nan = values.clone();
    with_nan[(4 * seq_len + 7) * f + 9] = f32::NAN;
    let bytes: Vec<u8> = with_nan
        .iter()
        .flat_map(|&v| f16_bits(v).to_le_bytes())
        .collect();
    let fo = tmp.path().join("nan-f.npy");
    write_npy(&fo, "<f2", &[n_seq, seq_len, f], true, &bytes);
    let out = tmp.path().join("nan.json");
    for batch in ["24", "1000000"] {
        assert_clean_error(
            &build(&fo, &toks, &out, &["-q", "--batch-values", batch]),
            &[s(&fo), "non-finite", "sequence 4, position 7, feature 9"],
        );
        assert!(!out.exists());
    }
}

/// `build --token-ids --tokenizer` counts the ids that decode to one string (here three
/// partial UTF-8 bytes, all U+FFFD) as one token, as `build --tokens` does with the decoded
/// strings: the same top tokens, corpus counts, label precision/recall and token search.
#[test]
fn token_ids_that_decode_alike_are_one_token() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    // Byte-level BPE: `Ã` (0xC3), `Â` (0xC2) and `â` (0xE2) are lone UTF-8 lead bytes.
    std::fs::write(
        p("tokenizer.json"),
        r#"{"model":{"type":"BPE","vocab":{"\u0120a":0,"\u00c3":1,"\u00c2":2,"\u00e2":3}},
            "decoder":{"type":"ByteLevel"}}"#,
    )
    .unwrap();
    let ids = [0u32, 1, 0, 2, 3, 0, 1, 2];
    write_ids(&p("ids.npy"), &ids, 2, 4);
    let strings: Vec<Vec<&str>> = ids
        .chunks(4)
        .map(|s| {
            s.iter()
                .map(|&t| if t == 0 { " a" } else { "\u{FFFD}" })
                .collect()
        })
        .collect();
    std::fs::write(p("tokens.json"), serde_json::to_string(&strings).unwrap()).unwrap();
    // Feature 0 fires on ids 1 and 2 (not 3); feature 1 on every token.
    let acts: Vec<f32> = ids
        .iter()
        .enumerate()
        .flat_map(|(r, &t)| {
            [
                if t == 1 || t == 2 {
                    1.0 + r as f32
                } else {
                    0.0
                },
                0.5,
            ]
        })
        .collect();
    feature_dictionary::ingest::npy::write_f32(&p("acts.npy"), &[8, 2], &acts).unwrap();

    let (by_ids, by_strings) = (p("ids.fdict"), p("strings.fdict"));
    ok(&[
        "build",
        s(&p("acts.npy")),
        "--token-ids",
        s(&p("ids.npy")),
        "--tokenizer",
        s(&p("tokenizer.json")),
        "--out",
        s(&by_ids),
        "-q",
    ]);
    ok(&[
        "build",
        s(&p("acts.npy")),
        "--tokens",
        s(&p("tokens.json")),
        "--out",
        s(&by_strings),
        "-q",
    ]);
    for d in [&by_ids, &by_strings] {
        ok(&["label", s(d), "--strategies", "token_frequency"]);
    }

    let fffd = |firings, occurrences| feature_dictionary::model::TokenCount {
        token: "\u{FFFD}".into(),
        firings,
        occurrences,
    };
    let a = feature_dictionary::store::load(&by_ids).unwrap();
    let b = feature_dictionary::store::load(&by_strings).unwrap();
    let f0 = a.get(0).unwrap();
    assert_eq!(f0.metadata.top_tokens, vec![fffd(4, 5)]);
    let label = &f0.metadata.label_details[0];
    assert_eq!(label.text, "token:\u{FFFD}");
    assert_eq!((label.precision, label.recall), (Some(0.8), Some(1.0)));
    assert_eq!(
        a.feature_set.metadata.token_counts,
        vec![("\u{FFFD}".to_string(), 5), (" a".to_string(), 3)]
    );
    for id in [0, 1] {
        let (x, y) = (a.get(id).unwrap(), b.get(id).unwrap());
        assert_eq!(x.metadata.top_tokens, y.metadata.top_tokens, "feature {id}");
        assert_eq!(
            x.metadata.label_details, y.metadata.label_details,
            "feature {id}"
        );
    }
    assert_eq!(
        a.feature_set.metadata.token_counts,
        b.feature_set.metadata.token_counts
    );

    // Token search over the .fdict sees the pooled firings (one row per token and feature).
    let v = ok(&[
        "search",
        s(&by_ids),
        "--token",
        "\u{FFFD}",
        "--by",
        "firings",
        "--json",
    ]);
    let hits: Vec<(u64, f64)> = v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["id"].as_u64().unwrap(), h["score"].as_f64().unwrap()))
        .collect();
    assert_eq!(hits, vec![(1, 5.0), (0, 4.0)]);
}

/// The SAE's own files are inputs like any other: `encode` and `build --sae` refuse to write
/// their output over them, and leave them as they were.
#[test]
fn an_output_over_an_sae_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let sae = tmp.path().join("sae");
    std::fs::create_dir(&sae).unwrap();
    for name in ["cfg.json", "sae_weights.safetensors"] {
        std::fs::copy(fx().join("sae").join(name), sae.join(name)).unwrap();
    }
    let before = |name: &str| std::fs::read(sae.join(name)).unwrap();
    let (cfg, weights) = (before("cfg.json"), before("sae_weights.safetensors"));
    let resid = fx().join("residuals_first4.npy");
    let ids = fx().join("token_ids.npy");
    let weights_out = sae.join("sae_weights.safetensors");
    fails(
        &[
            "encode",
            s(&resid),
            "--sae",
            s(&sae),
            "--seq-len",
            "64",
            "--out",
            s(&weights_out),
        ],
        &[
            "is the SAE file",
            "sae_weights.safetensors",
            "another --out",
        ],
    );
    let cfg_out = sae.join("cfg.json");
    fails(
        &[
            "build",
            s(&resid),
            "--sae",
            s(&sae),
            "--token-ids",
            s(&ids),
            "--tokenizer",
            s(&fx().join("tokenizer.json")),
            "--out",
            s(&cfg_out),
        ],
        &["is the SAE file", "cfg.json"],
    );
    assert_eq!(before("cfg.json"), cfg);
    assert_eq!(before("sae_weights.safetensors"), weights);
}

fn json_of(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A dictionary `build --sae` wrote, without each feature's decoder-cosine neighbours
/// (`similar_features`), which only a build holding the decoder stores, and which it must
/// have stored, each equal to what `featdict similar --sae` ranks.
fn without_similar(path: &Path) -> serde_json::Value {
    let mut v = json_of(path);
    let mut with = 0;
    for f in v["feature_set"]["features"]
        .as_object_mut()
        .unwrap()
        .values_mut()
    {
        let meta = f["metadata"].as_object_mut().unwrap();
        with += meta.remove("similar_features").is_some() as usize;
    }
    assert!(with > 0, "{}: no similar features stored", path.display());
    v
}

/// Tokens from a pipe (`--tokens /dev/stdin`): they were reported as an empty file, and
/// once read, read again from the pipe as batches asked. The dictionary equals the one
/// built from the file; a pipe that gives nothing is said to be one.
#[cfg(unix)]
#[test]
fn tokens_can_come_from_a_pipe() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let acts = dir.path().join("a.npy");
    let toks = dir.path().join("t.json");
    let data: Vec<f32> = (0..7 * 4).map(|i| ((i * 5) % 7) as f32 / 2.0).collect();
    feature_dictionary::ingest::npy::write_f32(&acts, &[7, 4], &data).unwrap();
    let text = r#"[["a","b","<c>"],["d","a","e","b"]]"#;
    std::fs::write(&toks, text).unwrap();
    let from_file = dir.path().join("file.json");
    assert_success(&build(&acts, &toks, &from_file, &["-q"]));
    let piped = |input: &str, out: &Path| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_featdict"))
            .args([
                "build",
                s(&acts),
                "--tokens",
                "/dev/stdin",
                "--out",
                s(out),
                "-q",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let from_pipe = dir.path().join("pipe.json");
    assert_success(&piped(text, &from_pipe));
    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(p).unwrap()).unwrap()
            ["feature_set"]
            .clone()
    };
    assert_eq!(read(&from_pipe), read(&from_file));
    let out = piped("", &dir.path().join("none.json"));
    assert_clean_error(&out, &["/dev/stdin", "pipe or stream that gave no bytes"]);

    // Token ids from a pipe: they were opened again to be read by position, which a pipe
    // refuses ("Illegal seek") and a FIFO answers by waiting for a writer.
    let ids_file = dir.path().join("ids.npy");
    let ids: Vec<u8> = [0i32, 1, 2, 3, 4, 0, 1]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    feature_dictionary::ingest::npy::write_bytes(&ids_file, "<i4", &[1, 7], false, &ids).unwrap();
    let by_ids = |tokens_from: &str, stdin: Stdio, out: &Path| {
        Command::new(env!("CARGO_BIN_EXE_featdict"))
            .args([
                "build",
                s(&acts),
                "--token-ids",
                tokens_from,
                "--out",
                s(out),
                "-q",
            ])
            .stdin(stdin)
            .output()
            .unwrap()
    };
    let from_ids_file = dir.path().join("ids_file.json");
    assert_success(&by_ids(s(&ids_file), Stdio::null(), &from_ids_file));
    let from_ids_pipe = dir.path().join("ids_pipe.json");
    let mut cat = Command::new("cat")
        .arg(&ids_file)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = Stdio::from(cat.stdout.take().unwrap());
    assert_success(&by_ids("/dev/stdin", pipe, &from_ids_pipe));
    assert!(cat.wait().unwrap().success());
    assert_eq!(read(&from_ids_pipe), read(&from_ids_file));
}

/// A feature whose token sketch overflowed (`--token-capacity`) has lower-bound token
/// counts: a token search ranked by them said nothing about it, where `show` and the
/// feature page do.
#[test]
fn token_search_says_when_counts_are_lower_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let acts = dir.path().join("a.npy");
    let toks = dir.path().join("t.json");
    // Feature 0 fires on every token (four distinct ones), feature 1 only on "a".
    let tokens = ["a", "b", "c", "d", "a", "b", "a", "a"];
    let data: Vec<f32> = tokens
        .iter()
        .flat_map(|&t| [1.0f32, if t == "a" { 1.0 } else { 0.0 }])
        .collect();
    feature_dictionary::ingest::npy::write_f32(&acts, &[8, 2], &data).unwrap();
    std::fs::write(&toks, serde_json::to_string(&[tokens]).unwrap()).unwrap();
    let dict = dir.path().join("d.json");
    assert_success(&build(
        &acts,
        &toks,
        &dict,
        &["-q", "--token-capacity", "2"],
    ));
    let out = featdict(&["search", s(&dict), "--token", "a"]);
    assert_success(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(
            "note: 1 feature shown fired on more distinct tokens than the build's --token-capacity"
        ),
        "{text}"
    );
    let out = featdict(&["search", s(&dict), "--token", "a", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let exact: Vec<(u64, bool)> = v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["id"].as_u64().unwrap(),
                h["feature"]["token_counts_exact"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(exact.len(), 2);
    assert!(
        exact.contains(&(0, false)) && exact.contains(&(1, true)),
        "{exact:?}"
    );
    // The same from the .fdict.
    let fdict = dir.path().join("d.fdict");
    assert_success(&featdict(&["import", s(&dict), "--out", s(&fdict)]));
    let out = featdict(&["search", s(&fdict), "--token", "a"]);
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("note: 1 feature shown fired on more distinct tokens"));
    // Both features fire on every "a" (precision 1): beside it, the firings behind it; by
    // firings, the score is the count itself.
    let v: serde_json::Value =
        serde_json::from_slice(&featdict(&["search", s(&fdict), "--token", "a", "--json"]).stdout)
            .unwrap();
    assert_eq!(v["hits"][0]["support"], 4, "{v}");
    let text = String::from_utf8(featdict(&["search", s(&fdict), "--token", "a"]).stdout).unwrap();
    assert!(text.contains("score  on the token  all firings"), "{text}");
    let by_firings = String::from_utf8(
        featdict(&["search", s(&fdict), "--token", "a", "--by", "firings"]).stdout,
    )
    .unwrap();
    let row = by_firings.lines().find(|l| l.contains("\"a\"")).unwrap();
    assert_eq!(row.split_whitespace().nth(1), Some("4"), "{by_firings}");
}

/// Past `--token-capacity` the distinct-token count is an estimate; it must not depend on
/// how the rows were batched (a table that dropped tokens and shrank below capacity once
/// stopped telling the estimate about new tokens, so small batches lost most of them), nor
/// on whether the tokens came as ids or as their strings.
#[test]
fn distinct_token_estimates_do_not_depend_on_batches_or_token_input() {
    let tmp = tempfile::tempdir().unwrap();
    let (n_seq, seq_len, f) = (40, 16, 3);
    // Feature 0 fires on every row, feature 1 on every third, feature 2 never: 500 distinct
    // tokens, far past a capacity of 8.
    let id_of = |r: usize| ((r * 7919) % 500) as u32;
    let mut values = vec![0f32; n_seq * seq_len * f];
    for r in 0..n_seq * seq_len {
        values[r * f] = 1.0 + (r % 5) as f32;
        if r % 3 == 0 {
            values[r * f + 1] = 2.0;
        }
    }
    let acts = tmp.path().join("acts.npy");
    feature_dictionary::ingest::npy::write_f32(&acts, &[n_seq * seq_len, f], &values).unwrap();
    let ids: Vec<u32> = (0..n_seq * seq_len).map(id_of).collect();
    let ids_path = tmp.path().join("ids.npy");
    write_ids(&ids_path, &ids, n_seq, seq_len);
    // The strings token ids show as without a tokenizer.
    let strings: Vec<Vec<String>> = ids
        .chunks(seq_len)
        .map(|s| s.iter().map(|id| format!("[{id}]")).collect())
        .collect();
    let toks = tmp.path().join("tokens.json");
    std::fs::write(&toks, serde_json::to_string(&strings).unwrap()).unwrap();
    let out = tmp.path().join("d.json");
    let estimates = |d: &serde_json::Value| -> Vec<(u64, f64)> {
        (0..2)
            .map(|i| {
                let m = &d["feature_set"]["features"][i.to_string()]["metadata"];
                assert_eq!(m["token_counts_exact"], false, "feature {i}: {m}");
                (
                    m["unique_tokens"].as_u64().unwrap(),
                    m["token_entropy"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let capacity = ["--token-capacity", "8"];
    let reference = estimates(&built(&acts, ("--tokens", &toks), &out, &capacity));
    for (i, &(distinct, _)) in reference.iter().enumerate() {
        let exact = (0..n_seq * seq_len)
            .filter(|r| values[r * f + i] > 0.0)
            .map(id_of)
            .collect::<std::collections::HashSet<u32>>()
            .len() as f64;
        assert!(
            (distinct as f64 - exact).abs() <= 0.05 * exact,
            "feature {i}: {distinct} estimated for {exact} distinct tokens"
        );
    }
    // One sequence per batch, and batches cutting through sequences.
    for batch in [(seq_len * f).to_string(), (5 * f).to_string()] {
        let args = [capacity[0], capacity[1], "--batch-values", &batch];
        assert_eq!(
            estimates(&built(&acts, ("--tokens", &toks), &out, &args)),
            reference,
            "--batch-values {batch}"
        );
        assert_eq!(
            estimates(&built(&acts, ("--token-ids", &ids_path), &out, &args)),
            reference,
            "--token-ids, --batch-values {batch}"
        );
    }
}

/// Token ids without a tokenizer build a dictionary whose every token reads as a number:
/// said on stderr (even with -q), not found out from `show`; so is an n-gram capacity too
/// small to be one.
#[test]
fn builds_warn_about_ids_without_a_tokenizer_and_tiny_ngram_capacities() {
    let tmp = tempfile::tempdir().unwrap();
    let acts = tmp.path().join("a.npy");
    feature_dictionary::ingest::npy::write_f32(&acts, &[4, 2], &[1.0; 8]).unwrap();
    let ids = tmp.path().join("ids.npy");
    write_ids(&ids, &[5, 6, 7, 8], 1, 4);
    let toks = tmp.path().join("t.json");
    std::fs::write(&toks, r#"[["a","b","c","d"]]"#).unwrap();
    let out = tmp.path().join("d.json");
    let run = |args: &[&str]| {
        let mut all = vec!["build", s(&acts), "--out", s(&out), "-q"];
        all.extend_from_slice(args);
        let o = featdict(&all);
        assert_success(&o);
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let err = run(&["--token-ids", s(&ids)]);
    assert!(err.contains("warning: no --tokenizer"), "{err}");
    assert!(run(&["--tokens", s(&toks)]).is_empty());
    let err = run(&["--tokens", s(&toks), "--ngrams", "3"]);
    assert!(
        err.contains("warning: --ngrams 3") && err.contains("not an n-gram length"),
        "{err}"
    );
    assert!(run(&["--tokens", s(&toks), "--ngrams", "4096"]).is_empty());
}

/// delphi stores only |a| > 1e-5; `encode` wrote every positive latent of a ReLU SAE, and in
/// float16 the smallest of them as exact zeros counted as firings.
#[test]
fn encode_stores_only_latents_delphi_would() {
    let tmp = tempfile::tempdir().unwrap();
    let sae = tmp.path().join("sae");
    // Latents 0..4 read input 0 scaled by 1e-9, 1e-6, 1e-8 and 1.
    write_standard_sae(
        &sae,
        2,
        4,
        &[1e-9, 1e-6, 1e-8, 1.0, 0.0, 0.0, 0.0, 0.0],
        &[0.0; 4],
    );
    let resid = tmp.path().join("resid.npy");
    feature_dictionary::ingest::npy::write_f32(
        &resid,
        &[1, 3, 2],
        &[1.0, 0.0, 2.0, 0.0, -1.0, 0.0],
    )
    .unwrap();
    let ids = tmp.path().join("ids.npy");
    write_ids(&ids, &[1, 2, 3], 1, 3);
    for f32_out in [false, true] {
        let lat = tmp.path().join(format!("lat{f32_out}.safetensors"));
        let mut args = vec![
            "encode",
            s(&resid),
            "--sae",
            s(&sae),
            "--token-ids",
            s(&ids),
            "--out",
            s(&lat),
        ];
        if f32_out {
            args.push("--f32");
        }
        let out = featdict(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let st = feature_dictionary::ingest::safetensors::SafeTensors::open(&lat).unwrap();
        assert_eq!(
            st.tensor("activations").unwrap().shape,
            vec![2u64],
            "--f32 {f32_out}"
        );
    }
}

/// A tokens JSON spelled as a byte-level BPE vocabulary (`convert_ids_to_tokens` output) is
/// read as the text it stands for, with a note; `--raw-tokens` keeps it as written.
#[test]
fn byte_level_spelled_tokens_are_shown_as_text() {
    let tmp = tempfile::tempdir().unwrap();
    let acts = tmp.path().join("a.npy");
    let mut values = vec![0f32; 8];
    values[2] = 1.0;
    values[6] = 2.0;
    feature_dictionary::ingest::npy::write_f32(&acts, &[8, 1], &values).unwrap();
    let toks = tmp.path().join("t.json");
    std::fs::write(
        &toks,
        r#"[["The","Ġcat","Ġsat","Ċ"],["ĠThe","Ġdog","Ġran","."]]"#,
    )
    .unwrap();
    for (raw, token) in [(false, " ran"), (true, "Ġran")] {
        let out = tmp.path().join(format!("d{raw}.json"));
        let mut args = vec![
            "build",
            s(&acts),
            "--tokens",
            s(&toks),
            "--out",
            s(&out),
            "-q",
        ];
        if raw {
            args.push("--raw-tokens");
        }
        let o = featdict(&args);
        assert!(o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.contains("byte-level BPE"), !raw, "{err}");
        let v = ok(&["show", s(&out), "0", "--json"]);
        assert_eq!(v["top_activations"][0]["token"], token);
    }
}

/// `build --sae` keeps the model and layer the SAE's config names (SAELens `cfg.json`'s
/// `model_name` and `hook_name`; a sparsify directory's name), unless the options say
/// otherwise (they were stored as "" and 0).
#[test]
fn build_with_sae_keeps_the_model_and_layer_of_its_config() {
    let tmp = tempfile::tempdir().unwrap();
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../feature-dictionary/tests/fixtures/sae");
    let sae = tmp.path().join("saelens");
    std::fs::create_dir_all(&sae).unwrap();
    let src = fixtures.join("standard_f32");
    std::fs::copy(
        src.join("sae_weights.safetensors"),
        sae.join("sae_weights.safetensors"),
    )
    .unwrap();
    let cfg = std::fs::read_to_string(src.join("cfg.json"))
        .unwrap()
        .replace("blocks.0.hook_resid_post", "blocks.7.hook_resid_post")
        .replace("\"random\"", "\"tiny-model\"");
    std::fs::write(sae.join("cfg.json"), cfg).unwrap();
    let (resid, ids, _) = fixture_residuals(&src, tmp.path());
    let saved = |out: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
    };
    let model_and_layer = |out: &Path| {
        let v = saved(out);
        let config = &v["config"];
        (
            config["model_name"].as_str().map(str::to_string),
            config["layer"].as_i64(),
        )
    };
    let out = tmp.path().join("d.json");
    build_with_sae(&resid, &sae, &ids, &out);
    assert_eq!(
        model_and_layer(&out),
        (Some("tiny-model".to_string()), Some(7))
    );
    // Latents `encode` wrote carry them too.
    let from_latents = tmp.path().join("from_latents.json");
    build_encoded(&resid, &sae, &ids, &from_latents);
    assert_eq!(
        model_and_layer(&from_latents),
        (Some("tiny-model".to_string()), Some(7))
    );
    let given = tmp.path().join("given.json");
    ok(&[
        "build",
        s(&resid),
        "--sae",
        s(&sae),
        "--token-ids",
        s(&ids),
        "--model-name",
        "mine",
        "--layer",
        "3",
        "--out",
        s(&given),
        "-q",
    ]);
    assert_eq!(model_and_layer(&given), (Some("mine".to_string()), Some(3)));
    // sparsify: one directory per hookpoint.
    let sparsify = tmp.path().join("layers.5");
    std::fs::create_dir_all(&sparsify).unwrap();
    let src = fixtures.join("sparsify_topk_bf16");
    for f in ["cfg.json", "sae.safetensors"] {
        std::fs::copy(src.join(f), sparsify.join(f)).unwrap();
    }
    let (resid, ids, _) = fixture_residuals(&src, tmp.path());
    let out = tmp.path().join("sp.json");
    build_with_sae(&resid, &sparsify, &ids, &out);
    assert_eq!(saved(&out)["config"]["layer"].as_i64(), Some(5));
}

/// `similar` without `--sae` on a dictionary a `build --sae` made answers with the decoder
/// neighbours the build stored (it ranked by firing tokens, disagreeing with the web page);
/// `--by tokens` still ranks by firing tokens, and `--by decoder` on a file without stored
/// neighbours says where they come from.
#[test]
fn similar_without_sae_uses_the_stored_decoder_neighbours() {
    let tmp = tempfile::tempdir().unwrap();
    let sae = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../feature-dictionary/tests/fixtures/sae/gemmascope_npz");
    let (resid, ids, _) = fixture_residuals(&sae, tmp.path());
    let dict = tmp.path().join("d.json");
    build_with_sae(&resid, &sae, &ids, &dict);
    let stored: Vec<(u64, f64)> = serde_json::from_value(
        json_of(&dict)["feature_set"]["features"]["5"]["metadata"]["similar_features"].clone(),
    )
    .unwrap();
    assert_eq!(stored.len(), 10);
    let v = ok(&["similar", s(&dict), "5", "-n", "4", "--json"]);
    assert_eq!(v["method"], "decoder cosine, stored by build --sae");
    let got: Vec<(u64, f64)> = v["similar"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_u64().unwrap(), r["similarity"].as_f64().unwrap()))
        .collect();
    assert_eq!(got, stored[..4]);
    // `show` lists them, as the page does.
    let shown = featdict(&["show", s(&dict), "5"]);
    let text = String::from_utf8_lossy(&shown.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("similar (decoder cosine)"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains(&format!("#{} ", stored[0].0)), "{line}");
    let v = ok(&["similar", s(&dict), "5", "--by", "tokens", "--json"]);
    assert_eq!(v["method"], "firing-token profile cosine");
    fails(
        &["similar", s(&dict), "5", "--by", "tokens", "--sae", s(&sae)],
        &["--by chooses"],
    );
    // A build without --sae stores none.
    let plain = tmp.path().join("plain.json");
    build_encoded(&resid, &sae, &ids, &plain);
    fails(
        &["similar", s(&plain), "5", "--by", "decoder"],
        &["feature 5 has no stored decoder neighbours", "--sae"],
    );
}
