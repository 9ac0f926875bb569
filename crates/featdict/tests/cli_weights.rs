//! Weight inputs of the analysis commands and `build --sae`, through the binary: non-finite
//! SAE weights, decoders, unembeddings and embeddings are errors naming the file, the tensor
//! and the element; all-zero decoder rows are refused as queries and skipped as neighbours;
//! shape mismatches name every file involved; result counts of 0 are refused; a dropped dead
//! feature is named as such.

mod common;
use common::*;

use std::path::{Path, PathBuf};

use feature_dictionary::analyze::weights::{write_safetensors, Matrix};
use feature_dictionary::ingest::npy;
use feature_dictionary::ingest::safetensors::{serialize, SafeTensors};

/// `featdict logits DICT ID --sae DEC --unembed UN --unembed-tensor W_U --unembed-vocab VOCAB`.
fn logits_args<'a>(
    dict: &'a Path,
    id: &'a str,
    dec: &'a Path,
    un: &'a Path,
    vocab: &'a Path,
) -> Vec<&'a str> {
    vec![
        "logits",
        s(dict),
        id,
        "--sae",
        s(dec),
        "--unembed",
        s(un),
        "--unembed-tensor",
        "W_U",
        "--unembed-vocab",
        s(vocab),
    ]
}

/// The JSON a successful command printed.
fn ok_json(args: &[&str]) -> serde_json::Value {
    let out = featdict(args);
    assert_success(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What a successful command printed.
fn ok_text(args: &[&str]) -> String {
    let out = featdict(args);
    assert_success(&out);
    String::from_utf8(out.stdout).unwrap()
}

/// A clap usage error (exit code 2) holding `needle`.
fn usage_error(args: &[&str], needle: &str) {
    let out = featdict(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err}");
}

fn matrix(rows: usize, cols: usize, data: &[f32]) -> Matrix {
    assert_eq!(data.len(), rows * cols);
    Matrix {
        rows,
        cols,
        data: data.to_vec(),
    }
}

/// Tokens of the small dictionaries: one per embedding row.
const TOKENS: [&str; 5] = ["a", "b", "c", "d", "e"];

/// A dictionary of 4 features over 2 sequences of 4 tokens; every feature fires unless
/// `dead` names one that never does. Returns the `.json` path.
fn small_dict(dir: &Path, name: &str, dead: Option<usize>, extra: &[&str]) -> PathBuf {
    let acts = dir.join(format!("{name}.npy"));
    let toks = dir.join(format!("{name}.tokens.json"));
    let data: Vec<f32> = (0..8 * 4)
        .map(|i| {
            let (row, f) = (i / 4, i % 4);
            if Some(f) == dead || (row + f) % 2 == 1 {
                0.0
            } else {
                1.0 + row as f32
            }
        })
        .collect();
    npy::write_f32(&acts, &[8, 4], &data).unwrap();
    std::fs::write(&toks, r#"[["a","b","c","d"],["a","c","e","b"]]"#).unwrap();
    let out = dir.join(format!("{name}.json"));
    assert_success(&build(&acts, &toks, &out, &[&["-q"], extra].concat()));
    out
}

/// A decoder `W_dec [4, 3]`: 0 and 1 close, 2 opposite to 0, and row `zero` (if any) all
/// zeros.
fn decoder(path: &Path, zero: &[usize]) {
    let mut d = vec![
        1.0, 0.0, 0.0, //
        0.9, 0.1, 0.0, //
        -1.0, 0.0, 0.0, //
        0.0, 0.5, 0.5,
    ];
    for &z in zero {
        d[z * 3..z * 3 + 3].fill(0.0);
    }
    write_safetensors(path, &[("W_dec", &matrix(4, 3, &d))]).unwrap();
}

/// An unembedding (or embedding) `[5, 3]` under `name`, with its vocabulary list.
fn token_matrix(dir: &Path, file: &str, name: &str, data: &[f32]) -> (PathBuf, PathBuf) {
    let path = dir.join(file);
    write_safetensors(&path, &[(name, &matrix(5, 3, data))]).unwrap();
    let vocab = dir.join("vocab.json");
    std::fs::write(&vocab, serde_json::to_string(&TOKENS).unwrap()).unwrap();
    (path, vocab)
}

const TOKEN_ROWS: [f32; 15] = [
    1.0, 0.0, 0.0, //
    0.0, 1.0, 0.0, //
    0.0, 0.0, 1.0, //
    0.7, 0.7, 0.0, //
    0.0, 0.7, 0.7,
];

/// The `standard_f32` SAE fixture's residuals (4 sequences of 8), a tokens JSON for them in
/// `dir`, and a copy of the SAE in `dir/name` whose weight bytes `edit(tensor, bytes)` may
/// change; returns (residuals, tokens, SAE directory).
fn edited_sae(
    dir: &Path,
    name: &str,
    edit: impl Fn(&str, &mut Vec<u8>),
) -> (PathBuf, PathBuf, PathBuf) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../feature-dictionary/tests/fixtures/sae/standard_f32");
    let toks = dir.join("toks.json");
    let seqs: Vec<Vec<String>> = (0..4)
        .map(|s| (0..8).map(|p| format!("w{}", (s * 8 + p) % 13)).collect())
        .collect();
    std::fs::write(&toks, serde_json::to_string(&seqs).unwrap()).unwrap();
    let weights = std::fs::read(fixture.join("sae_weights.safetensors")).unwrap();
    let st = SafeTensors::from_bytes(Path::new("w"), weights).unwrap();
    let sae = dir.join(name);
    std::fs::create_dir_all(&sae).unwrap();
    std::fs::copy(fixture.join("cfg.json"), sae.join("cfg.json")).unwrap();
    let bytes: Vec<Vec<u8>> = st
        .tensors()
        .iter()
        .map(|t| {
            let mut b = st.bytes(t).to_vec();
            edit(&t.name, &mut b);
            b
        })
        .collect();
    let parts: Vec<(&str, &str, Vec<u64>, &[u8])> = st
        .tensors()
        .iter()
        .zip(&bytes)
        .map(|(t, b)| (t.name.as_str(), t.dtype.as_str(), t.shape.clone(), &b[..]))
        .collect();
    std::fs::write(sae.join("sae_weights.safetensors"), serialize(&parts)).unwrap();
    (fixture.join("inputs.npy"), toks, sae)
}

/// Finite weights so large that encoding overflows float32: the infinite latents were
/// blamed on the residuals ("fix the input"), which are finite.
#[test]
fn sae_weights_that_overflow_are_blamed_on_the_sae() {
    let tmp = tempfile::tempdir().unwrap();
    let (inputs, toks, sae) = edited_sae(tmp.path(), "sae", |tensor, bytes| {
        if tensor == "W_enc" {
            for v in bytes.chunks_mut(4) {
                v.copy_from_slice(&3e38f32.to_le_bytes());
            }
        }
    });
    let out = tmp.path().join("d.json");
    let lat = tmp.path().join("lat.safetensors");
    for args in [
        &[
            "build",
            s(&inputs),
            "--sae",
            s(&sae),
            "--tokens",
            s(&toks),
            "--out",
            s(&out),
            "-q",
        ][..],
        &[
            "encode",
            s(&inputs),
            "--sae",
            s(&sae),
            "--f32",
            "--seq-len",
            "8",
            "--out",
            s(&lat),
        ],
    ] {
        let run = featdict(args);
        assert_clean_error(
            &run,
            &[
                s(&sae),
                "although the residuals there are finite",
                "overflow float32",
            ],
        );
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(
            !err.contains("fix the input") && !err.contains("the residuals hold"),
            "{err}"
        );
    }
    assert!(!out.exists() && !lat.exists());
}

#[test]
fn nonfinite_sae_weights_are_blamed_on_the_sae_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d_sae = 64;
    // (tensor, flat index, value, where the message must say it is)
    for (tensor, flat, value, at) in [
        (
            "W_enc",
            3 * d_sae + 2,
            f32::NAN,
            "holds NaN at row 3, column 2",
        ),
        ("b_enc", 5, f32::INFINITY, "holds inf at index 5"),
        ("b_dec", 7, f32::NAN, "holds NaN at index 7"),
        // Encoding never reads W_dec, but `similar` and `logits` would.
        (
            "W_dec",
            9 * 16 + 4,
            f32::NEG_INFINITY,
            "holds -inf at row 9, column 4",
        ),
    ] {
        let (inputs, toks, sae) =
            edited_sae(tmp.path(), &format!("sae-{tensor}"), |name, bytes| {
                if name == tensor {
                    bytes[flat * 4..flat * 4 + 4].copy_from_slice(&value.to_le_bytes());
                }
            });
        let file = sae.join("sae_weights.safetensors");
        let out = tmp.path().join("d.json");
        let built = featdict(&[
            "build",
            s(&inputs),
            "--sae",
            s(&sae),
            "--tokens",
            s(&toks),
            "--out",
            s(&out),
            "-q",
        ]);
        let quoted = format!("tensor {tensor:?}");
        assert_clean_error(&built, &[s(&file), &quoted, at, "must be finite"]);
        let err = String::from_utf8_lossy(&built.stderr);
        assert!(!err.contains("inputs.npy"), "{err}");
        assert!(!out.exists());
        let lat = tmp.path().join("lat.safetensors");
        let encoded = featdict(&[
            "encode",
            s(&inputs),
            "--sae",
            s(&sae),
            "--f32",
            "--out",
            s(&lat),
        ]);
        assert_clean_error(&encoded, &[s(&file), &quoted, at]);
    }
}

#[test]
fn nonfinite_decoder_rows_are_errors_in_similar_and_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let dict = small_dict(tmp.path(), "d", None, &[]);
    let (un, vocab) = token_matrix(tmp.path(), "U.safetensors", "W_U", &TOKEN_ROWS);
    let dec = tmp.path().join("dec.safetensors");
    let mut d = vec![0.5f32; 12];
    d[3 * 3 + 2] = f32::NAN;
    write_safetensors(&dec, &[("W_dec", &matrix(4, 3, &d))]).unwrap();
    let similar = featdict(&["similar", s(&dict), "1", "--sae", s(&dec)]);
    assert_clean_error(
        &similar,
        &[s(&dec), "tensor \"W_dec\"", "NaN at row 3, column 2"],
    );
    let logits = featdict(&logits_args(&dict, "1", &dec, &un, &vocab));
    assert_clean_error(
        &logits,
        &[s(&dec), "tensor \"W_dec\"", "NaN at row 3, column 2"],
    );
}

#[test]
fn all_zero_decoder_rows_are_refused_as_queries_and_skipped_as_neighbours() {
    let tmp = tempfile::tempdir().unwrap();
    let dict = small_dict(tmp.path(), "d", None, &[]);
    let dec = tmp.path().join("dec.safetensors");
    decoder(&dec, &[3]);
    // Feature 3 has no direction: its "most similar" list was every feature at 0.0000.
    let out = featdict(&["similar", s(&dict), "3", "--sae", s(&dec)]);
    assert_clean_error(
        &out,
        &[
            s(&dec),
            "tensor \"W_dec\"",
            "feature 3's decoder row is all zeros: it has no direction to compare",
        ],
    );
    // As a candidate it is left out and counted, not listed at 0 above feature 2's -1.
    let v = ok_json(&["similar", s(&dict), "0", "--sae", s(&dec), "--json"]);
    let ids: Vec<u64> = v["similar"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2]);
    assert_eq!(v["zero_rows_skipped"], 1);
    let text = ok_text(&["similar", s(&dict), "0", "--sae", s(&dec)]);
    assert!(
        text.contains("(1 feature skipped: its decoder row is all zeros)"),
        "{text}"
    );
    // Nothing skipped: the count is 0 and the text says nothing.
    decoder(&dec, &[]);
    let v = ok_json(&["similar", s(&dict), "0", "--sae", s(&dec), "--json"]);
    assert_eq!(v["similar"].as_array().unwrap().len(), 3);
    assert_eq!(v["zero_rows_skipped"], 0);
    let text = ok_text(&["similar", s(&dict), "0", "--sae", s(&dec)]);
    assert!(!text.contains("skipped"), "{text}");
    // Without --sae there is no decoder, and no such key.
    let v = ok_json(&["similar", s(&dict), "0", "--json"]);
    assert!(v.get("zero_rows_skipped").is_none(), "{v}");
    // The logit lens of a zero row would list every token at 0 as "promoted".
    decoder(&dec, &[3]);
    let (un, vocab) = token_matrix(tmp.path(), "U.safetensors", "W_U", &TOKEN_ROWS);
    let logits = |id: &str| {
        featdict(&[&logits_args(&dict, id, &dec, &un, &vocab)[..], &["--json"]].concat())
    };
    assert_clean_error(
        &logits("3"),
        &[
            s(&dec),
            "tensor \"W_dec\"",
            "feature 3's decoder row is all zeros",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&logits("0").stdout).unwrap();
    assert_eq!(v["promoted"][0][0], "a");
    // -n 10 over 5 tokens listed every token both ways: now 2 each way, none on both sides,
    // and a note says why.
    let out = featdict(
        &[
            &logits_args(&dict, "0", &dec, &un, &vocab)[..],
            &["-n", "10", "--json"],
        ]
        .concat(),
    );
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tokens = |side: &str| -> Vec<String> {
        v[side]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[0].as_str().unwrap().to_string())
            .collect()
    };
    let (promoted, suppressed) = (tokens("promoted"), tokens("suppressed"));
    // Feature 0 scores no token below 0, so nothing is listed as suppressed (the two lowest
    // positive scores were).
    assert_eq!((promoted.len(), suppressed.len()), (2, 0), "{v}");
    assert!(promoted.iter().all(|t| !suppressed.contains(t)), "{v}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("showing 2 each way"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn nonfinite_unembedding_and_embedding_rows_are_errors_naming_file_tensor_and_row() {
    let tmp = tempfile::tempdir().unwrap();
    let dict = small_dict(tmp.path(), "d", None, &[]);
    let dec = tmp.path().join("dec.safetensors");
    decoder(&dec, &[]);
    let mut rows = TOKEN_ROWS;
    rows[4 * 3 + 1] = f32::NAN;
    // The NaN row of the unembedding silently dropped token "e" from the lens.
    let (un, vocab) = token_matrix(tmp.path(), "U_nan.safetensors", "W_U", &rows);
    let out = featdict(&logits_args(&dict, "0", &dec, &un, &vocab));
    assert_clean_error(&out, &[s(&un), "tensor \"W_U\"", "NaN at row 4, column 1"]);
    // The NaN row of an embedding matrix changed polysemantic and semantic labels.
    let (emb, vocab) = token_matrix(tmp.path(), "E_nan.safetensors", "token_embd.weight", &rows);
    let out = featdict(&[
        "polysemantic",
        s(&dict),
        "--embeddings",
        s(&emb),
        "--embedding-vocab",
        s(&vocab),
    ]);
    let needles = [
        s(&emb),
        "tensor \"token_embd.weight\"",
        "NaN at row 4, column 1",
    ];
    assert_clean_error(&out, &needles);
    let labeled = tmp.path().join("labeled.json");
    let out = featdict(&[
        "label",
        s(&dict),
        "--strategies",
        "semantic_clustering",
        "--embeddings",
        s(&emb),
        "--embedding-vocab",
        s(&vocab),
        "--out",
        s(&labeled),
    ]);
    assert_clean_error(&out, &needles);
    assert!(!labeled.exists());
}

#[test]
fn shape_mismatches_name_every_file_involved() {
    let tmp = tempfile::tempdir().unwrap();
    let dict = small_dict(tmp.path(), "d", None, &[]);
    let dec = tmp.path().join("dec.safetensors");
    decoder(&dec, &[]);
    let (un, _) = token_matrix(tmp.path(), "U.safetensors", "W_U", &TOKEN_ROWS);
    let short = tmp.path().join("short.json");
    std::fs::write(&short, r#"["a","b","c","d"]"#).unwrap();
    let logits = |un: &Path, vocab: &Path| featdict(&logits_args(&dict, "0", &dec, un, vocab));
    assert_clean_error(
        &logits(&un, &short),
        &[s(&un), s(&short), "5×3", "4 tokens"],
    );
    // A [5, 2] unembedding of another model: 2-dimensional rows against 3.
    let narrow = tmp.path().join("narrow.safetensors");
    write_safetensors(&narrow, &[("W_U", &matrix(5, 2, &[1.0; 10]))]).unwrap();
    let vocab = tmp.path().join("vocab.json");
    assert_clean_error(
        &logits(&narrow, &vocab),
        &[
            s(&dec),
            "\"W_dec\"",
            "3-dimensional",
            s(&narrow),
            "2-dimensional",
        ],
    );
    let (emb, _) = token_matrix(
        tmp.path(),
        "E.safetensors",
        "token_embd.weight",
        &TOKEN_ROWS,
    );
    let out = featdict(&[
        "polysemantic",
        s(&dict),
        "--embeddings",
        s(&emb),
        "--embedding-vocab",
        s(&short),
    ]);
    assert_clean_error(&out, &[s(&emb), s(&short), "5×3", "4 tokens"]);
}

#[test]
fn correlated_names_the_dictionary_without_co_activation_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dict = small_dict(tmp.path(), "d", None, &[]);
    let out = featdict(&["correlated", s(&dict), "0"]);
    assert_clean_error(&out, &[s(&dict), "no co-activation data", "--correlation"]);
}

/// `-n 0` showed an empty list ("none with correlation >= 0" for `correlated`) whatever the
/// dictionary holds; every result count refuses it, as `search -n 0` does.
#[test]
fn result_counts_of_zero_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dict = small_dict(tmp.path(), "c", None, &["--correlation", "exact"]);
    let dec = tmp.path().join("dec.safetensors");
    decoder(&dec, &[]);
    let (un, vocab) = token_matrix(tmp.path(), "U.safetensors", "W_U", &TOKEN_ROWS);
    let d = s(&dict);
    for args in [
        vec!["correlated", d, "0"],
        vec!["similar", d, "0"],
        vec!["similar", d, "0", "--sae", s(&dec)],
        vec!["top", d],
        logits_args(&dict, "0", &dec, &un, &vocab),
    ] {
        usage_error(&[&args[..], &["-n", "0"]].concat(), "must be at least 1");
        assert_success(&featdict(&[&args[..], &["-n", "1"]].concat()));
    }
}

/// A feature `build --drop-dead` left out was reported as "not in dd.json (it holds 3
/// features, ids 0 to 3)", which reads as a contradiction; every command now says it is
/// dead and was dropped.
#[test]
fn a_dropped_dead_feature_is_named_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    let json = small_dict(tmp.path(), "dd", Some(2), &["--drop-dead"]);
    let fdict = tmp.path().join("dd.fdict");
    assert_success(&featdict(&["import", s(&json), "--out", s(&fdict)]));
    let dec = tmp.path().join("dec.safetensors");
    decoder(&dec, &[]);
    for d in [&json, &fdict] {
        let dead = [
            "feature 2 is dead (it never fired) and was dropped from",
            s(d),
            "at build time (--drop-dead); it holds 3 of the 4 features",
        ];
        let out_of_range = ["feature 9 is not in", s(d), "ids 0 to 3"];
        for cmd in [
            vec!["show", s(d)],
            vec!["similar", s(d)],
            vec!["similar", s(d), "--sae", s(&dec)],
            vec!["correlated", s(d)],
            vec!["label", s(d), "--set", "x"],
        ] {
            // The id goes right after DICT.
            let with = |id: &str| {
                let mut v = cmd.clone();
                v.insert(2, id);
                featdict(&v)
            };
            assert_clean_error(&with("2"), &dead);
            assert_clean_error(&with("9"), &out_of_range);
        }
        assert_clean_error(&featdict(&["compare", s(d), "0", "2"]), &dead);
        assert_success(&featdict(&["show", s(d), "1"]));
    }
    // Absent without a record of why (a file another tool wrote): in range, but not stored.
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    v["feature_set"]["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("omitted_features");
    std::fs::write(&json, serde_json::to_vec(&v).unwrap()).unwrap();
    assert_clean_error(
        &featdict(&["show", s(&json), "2"]),
        &[
            "feature 2 is not stored in",
            s(&json),
            "(it holds 3 of the 4 features, ids 0 to 3)",
        ],
    );
}

/// Without `--unembed-tensor`, `logits` finds the unembedding under the names models give
/// it (`lm_head.weight`, `W_U`), before the embedding names of tied models: the same lens as
/// naming the tensor.
#[test]
fn logits_finds_the_unembedding_by_its_usual_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dict = small_dict(tmp.path(), "d", None, &[]);
    let dec = tmp.path().join("dec.safetensors");
    decoder(&dec, &[]);
    let (named, vocab) = token_matrix(tmp.path(), "U.safetensors", "W_U", &TOKEN_ROWS);
    let want = ok_json(
        &[
            &logits_args(&dict, "0", &dec, &named, &vocab)[..],
            &["--json"],
        ]
        .concat(),
    );
    for name in ["lm_head.weight", "W_U"] {
        let un = tmp.path().join(format!("{name}.safetensors"));
        // The embedding beside it differs: picking it would change the lens.
        let mut other = TOKEN_ROWS;
        other.reverse();
        write_safetensors(
            &un,
            &[
                (name, &matrix(5, 3, &TOKEN_ROWS)),
                ("model.embed_tokens.weight", &matrix(5, 3, &other)),
            ],
        )
        .unwrap();
        let got = ok_json(&[
            "logits",
            s(&dict),
            "0",
            "--sae",
            s(&dec),
            "--unembed",
            s(&un),
            "--unembed-vocab",
            s(&vocab),
            "--json",
        ]);
        assert_eq!(got, want, "{name}");
    }
}

/// `polysemantic` finding nothing because it had nothing to cluster says why (the tokens are
/// not in the embeddings' vocabulary) rather than reporting "0" as a finding.
#[test]
fn polysemantic_says_why_when_no_token_has_an_embedding() {
    let tmp = tempfile::tempdir().unwrap();
    let dict = small_dict(tmp.path(), "d", None, &[]);
    let (emb, _) = token_matrix(
        tmp.path(),
        "E.safetensors",
        "token_embd.weight",
        &TOKEN_ROWS,
    );
    let other_vocab = tmp.path().join("other_vocab.json");
    std::fs::write(&other_vocab, r#"["v","w","x","y","z"]"#).unwrap();
    let args = |vocab: &Path, json: bool| {
        let mut a = vec![
            "polysemantic".to_string(),
            s(&dict).to_string(),
            "--embeddings".into(),
            s(&emb).to_string(),
            "--embedding-vocab".into(),
            s(vocab).to_string(),
        ];
        if json {
            a.push("--json".into());
        }
        a
    };
    let run = |vocab: &Path, json: bool| {
        let a = args(vocab, json);
        let out = featdict(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert_success(&out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = run(&other_vocab, false);
    assert!(
        text.contains("0 polysemantic feature(s)")
            && text.contains("none of the top tokens of the 4 features that have them is in the embeddings' vocabulary"),
        "{text}"
    );
    let v: serde_json::Value = serde_json::from_str(&run(&other_vocab, true)).unwrap();
    assert!(
        v["note"]
            .as_str()
            .unwrap()
            .contains("embeddings' vocabulary"),
        "{v}"
    );
    // With the right vocabulary there is nothing to explain (whatever the count).
    let (_, vocab) = token_matrix(
        tmp.path(),
        "E2.safetensors",
        "token_embd.weight",
        &TOKEN_ROWS,
    );
    let v: serde_json::Value = serde_json::from_str(&run(&vocab, true)).unwrap();
    assert!(v.get("note").is_none(), "{v}");
}

/// A fired feature without stored top tokens, in a dictionary that counted tokens: `similar`
/// refuses (it returned an empty list) and `compare` names that feature rather than saying
/// the file stores no per-token counts.
#[test]
fn a_feature_without_top_tokens_in_a_counting_dictionary_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dict = small_dict(tmp.path(), "d", None, &[]);
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&dict).unwrap()).unwrap();
    v["feature_set"]["features"]["0"]["metadata"]["top_tokens"] = serde_json::json!([]);
    let cut = tmp.path().join("cut.json");
    std::fs::write(&cut, serde_json::to_string(&v).unwrap()).unwrap();
    let out = featdict(&["similar", s(&cut), "0"]);
    assert_clean_error(
        &out,
        &[s(&cut), "feature 0 has no stored top tokens", "--sae"],
    );
    let out = featdict(&["similar", s(&cut), "1", "--json"]);
    assert_success(&out);
    let out = featdict(&["compare", s(&cut), "0", "1", "--json"]);
    assert_success(&out);
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        c["token_profile_missing"], "feature 0 has no stored top tokens",
        "{c}"
    );
}

/// `featdict logits` against brute force `W_dec[i] · W_Uᵀ` for every feature: promoted and
/// suppressed tokens, their order (score, then token order) and scores, with the decoder
/// and the unembedding each stored as `[rows, d]` and as `[d, rows]` (the transposed layout
/// is read back to the same lens).
#[test]
fn logits_match_brute_force_with_either_orientation_of_decoder_and_unembedding() {
    let tmp = tempfile::tempdir().unwrap();
    let dict = small_dict(tmp.path(), "d", None, &[]);
    const DEC: [f32; 12] = [
        1.0, 0.0, 0.0, //
        0.9, 0.1, 0.0, //
        -1.0, 0.0, 0.0, //
        0.0, 0.5, 0.5,
    ];
    let transpose = |data: &[f32], rows: usize, cols: usize| -> Vec<f32> {
        (0..cols * rows)
            .map(|i| data[(i % rows) * cols + i / rows])
            .collect()
    };
    let dec_rows = tmp.path().join("dec_rows.safetensors");
    write_safetensors(&dec_rows, &[("W_dec", &matrix(4, 3, &DEC))]).unwrap();
    let dec_cols = tmp.path().join("dec_cols.safetensors");
    write_safetensors(
        &dec_cols,
        &[("W_dec", &matrix(3, 4, &transpose(&DEC, 4, 3)))],
    )
    .unwrap();
    let (un_rows, vocab) = token_matrix(tmp.path(), "U_rows.safetensors", "W_U", &TOKEN_ROWS);
    let un_cols = tmp.path().join("U_cols.safetensors");
    write_safetensors(
        &un_cols,
        &[("W_U", &matrix(3, 5, &transpose(&TOKEN_ROWS, 5, 3)))],
    )
    .unwrap();

    for feat in 0..4 {
        let scores: Vec<f64> = (0..5)
            .map(|v| {
                (0..3)
                    .map(|j| DEC[feat * 3 + j] as f64 * TOKEN_ROWS[v * 3 + j] as f64)
                    .sum()
            })
            .collect();
        let mut order: Vec<usize> = (0..5).collect();
        order.sort_by(|&x, &y| scores[y].total_cmp(&scores[x]).then(x.cmp(&y)));
        for n in [1usize, 2] {
            let promoted = &order[..n];
            let mut rest: Vec<usize> = (0..5).filter(|v| !promoted.contains(v)).collect();
            rest.sort_by(|&x, &y| scores[x].total_cmp(&scores[y]).then(x.cmp(&y)));
            // Promoted tokens raise the logit, suppressed ones lower it.
            let promoted: Vec<usize> = promoted
                .iter()
                .copied()
                .filter(|&t| scores[t] > 0.0)
                .collect();
            let suppressed: Vec<usize> = rest[..n]
                .iter()
                .copied()
                .filter(|&t| scores[t] < 0.0)
                .collect();
            let (promoted, suppressed) = (&promoted[..], &suppressed[..]);
            for (dec, un) in [
                (&dec_rows, &un_rows),
                (&dec_cols, &un_rows),
                (&dec_rows, &un_cols),
                (&dec_cols, &un_cols),
            ] {
                let id = feat.to_string();
                let n_arg = n.to_string();
                let args = [
                    &logits_args(&dict, &id, dec, un, &vocab)[..],
                    &["-n", &n_arg, "--json"],
                ]
                .concat();
                let v = ok_json(&args);
                let what = format!("feature {feat}, -n {n}, {} with {}", s(dec), s(un));
                assert_eq!(v["feature"], feat as u64, "{what}");
                for (side, want) in [("promoted", promoted), ("suppressed", suppressed)] {
                    let got = v[side].as_array().unwrap();
                    assert_eq!(got.len(), want.len(), "{what}: {side} {v}");
                    for (g, &t) in got.iter().zip(want) {
                        assert_eq!(g[0], TOKENS[t], "{what}: {side} {v}");
                        let score = g[1].as_f64().unwrap();
                        assert!(
                            (score - scores[t]).abs() < 1e-6,
                            "{what}: {side} {t}: {score} against {}",
                            scores[t]
                        );
                    }
                }
            }
        }
    }
}
