//! Misuse of the CLI that must be refused before anything is written: an output that is one
//! of the command's inputs, options that contradict each other or cannot be stored.

mod common;
use common::*;

use std::path::{Path, PathBuf};

use feature_dictionary::ingest::npy;
use feature_dictionary::query::synthetic::{self, Spec};
use feature_dictionary::store;

/// A 30-feature synthetic dictionary saved as `d.json` and `d.fdict` in `dir`.
fn dictionaries(dir: &Path) -> (PathBuf, PathBuf) {
    let dict = synthetic::dictionary(&Spec {
        n_features: 30,
        vocab_words: 40,
        ..Default::default()
    });
    let json = dir.join("d.json");
    let fdict = dir.join("d.fdict");
    store::save(&dict, &json).unwrap();
    store::save(&dict, &fdict).unwrap();
    (json, fdict)
}

#[test]
fn an_output_that_is_an_input_is_refused_and_the_input_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (json, fdict) = dictionaries(dir.path());
    let json_bytes = std::fs::read(&json).unwrap();
    let fdict_bytes = std::fs::read(&fdict).unwrap();

    // export over its own input: a .fdict replaced by Neuronpedia JSON, or a JSON dictionary
    // by a Neuronpedia array, loses the dictionary.
    for (input, format) in [
        (&json, "neuronpedia"),
        (&json, "json"),
        (&fdict, "neuronpedia"),
    ] {
        let out = featdict(&["export", s(input), "--format", format, "--out", s(input)]);
        if input == &fdict {
            // A .fdict name is refused for a JSON format before the same-file check.
            assert_clean_error(&out, &[s(input), ".json"]);
        } else {
            assert_clean_error(&out, &[s(input), "this command reads", "another --out"]);
        }
    }
    // import of a .fdict into itself.
    let out = featdict(&["import", s(&fdict), "--out", s(&fdict)]);
    assert_clean_error(&out, &[s(&fdict), "this command reads"]);
    // The same file through another spelling of its path.
    let dotted = dir.path().join(".").join("d.json");
    let out = featdict(&[
        "export",
        s(&json),
        "--format",
        "neuronpedia",
        "--out",
        s(&dotted),
    ]);
    assert_clean_error(&out, &["this command reads"]);
    // label --out DICT (it was accepted), as the same path or another spelling of it, on
    // either format, with or without --set; without --out, label writes DICT itself.
    for input in [&json, &fdict] {
        let dotted = dir.path().join(".").join(input.file_name().unwrap());
        for out_path in [input, &dotted] {
            for extra in [&[][..], &["3", "--set", "hand label"][..]] {
                let mut args = vec!["label", s(input)];
                args.extend_from_slice(extra);
                args.extend_from_slice(&["--out", s(out_path)]);
                let out = featdict(&args);
                assert_clean_error(
                    &out,
                    &[
                        s(out_path),
                        "the dictionary",
                        "this command reads",
                        "another --out",
                    ],
                );
            }
        }
    }
    assert_eq!(std::fs::read(&json).unwrap(), json_bytes);
    assert_eq!(std::fs::read(&fdict).unwrap(), fdict_bytes);
    store::load(&json).unwrap();
    store::load(&fdict).unwrap();

    // build --out TOKENS.json would replace the tokens with the dictionary.
    let acts = dir.path().join("acts.npy");
    let toks = dir.path().join("tokens.json");
    let data: Vec<f32> = (0..6 * 3).map(|i| (i % 4) as f32).collect();
    npy::write_f32(&acts, &[6, 3], &data).unwrap();
    let tokens = r#"[["a","b","c"],["d","e","f"]]"#;
    std::fs::write(&toks, tokens).unwrap();
    let out = build(&acts, &toks, &toks, &["-q"]);
    assert_clean_error(&out, &[s(&toks), "the tokens", "another --out"]);
    assert_eq!(std::fs::read_to_string(&toks).unwrap(), tokens);
    // A different output still works.
    let good = dir.path().join("built.json");
    let out = build(&acts, &toks, &good, &["-q"]);
    assert_success(&out);
}

#[test]
fn export_neuronpedia_writes_only_json_names() {
    let dir = tempfile::tempdir().unwrap();
    let (_, fdict) = dictionaries(dir.path());
    let out_path = dir.path().join("np.fdict");
    let out = featdict(&[
        "export",
        s(&fdict),
        "--format",
        "neuronpedia",
        "--out",
        s(&out_path),
    ]);
    assert_clean_error(
        &out,
        &["--format neuronpedia writes a .json file", "np.fdict"],
    );
    assert!(!out_path.exists());
    let ok = dir.path().join("np.json");
    let out = featdict(&[
        "export",
        s(&fdict),
        "--format",
        "neuronpedia",
        "--out",
        s(&ok),
    ]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&ok).unwrap()).unwrap();
    assert_eq!(v["features"].as_array().unwrap().len(), 30);
    // Layer 0 is also what a build records when not told: the batch's layer 0 gets a note,
    // which --layer (or a dictionary of another layer) does without.
    let layer = v["layer"].as_i64().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).contains("pass --layer");
    assert_eq!(said, layer == 0, "layer {layer}");
    let out = featdict(&[
        "export",
        s(&fdict),
        "--format",
        "neuronpedia",
        "--out",
        s(&ok),
        "--layer",
        "0",
    ]);
    assert_success(&out);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("pass --layer"));
}

#[test]
fn label_refuses_a_min_confidence_that_would_make_the_file_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let (json, fdict) = dictionaries(dir.path());
    for dict in [&json, &fdict] {
        let before = std::fs::read(dict).unwrap();
        for c in ["nan", "-0.5", "2"] {
            let out = featdict(&["label", s(dict), &format!("--min-confidence={c}")]);
            assert_clean_error(&out, &["min_confidence", "0..=1"]);
            assert_eq!(std::fs::read(dict).unwrap(), before, "{c}");
        }
        // The dictionary still opens, and a valid value labels and reads back.
        let out = featdict(&["label", s(dict), "--min-confidence", "0.5", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let back = store::load(dict).unwrap();
        assert_eq!(back.config.labeling.min_confidence, 0.5);
    }
}

#[test]
fn label_set_refuses_the_options_of_automatic_labeling() {
    let dir = tempfile::tempdir().unwrap();
    let (json, _) = dictionaries(dir.path());
    let before = std::fs::read(&json).unwrap();
    for extra in [
        &["--set", "x", "--strategies", "token_frequency"][..],
        &["--set", "x", "--min-confidence", "0.9"],
        &["--set", "x", "--rank", "precision"],
        &["--clear-manual", "--max-labels", "2"],
        &["--clear-manual", "--min-occurrences", "5"],
    ] {
        let mut args = vec!["label", s(&json), "3"];
        args.extend_from_slice(extra);
        let out = featdict(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains("cannot be used with"), "{extra:?}: {err}");
        assert_eq!(std::fs::read(&json).unwrap(), before, "{extra:?}");
    }
    // Embedding options without --embeddings did nothing; now they are refused too.
    for flag in ["--embedding-vocab", "--embedding-tensor"] {
        let out = featdict(&["label", s(&json), flag, "x"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {err}");
        assert!(err.contains("--embeddings"), "{flag}: {err}");
    }
    assert_eq!(std::fs::read(&json).unwrap(), before);
    // --set alone still works.
    let out = featdict(&["label", s(&json), "3", "--set", "hand label"]);
    assert_success(&out);
    assert!(store::load(&json)
        .unwrap()
        .get(3)
        .unwrap()
        .labels
        .contains(&"hand label".to_string()));
}

/// Tokens are arbitrary strings: a carriage return, an ESC (terminal escape sequences) or a
/// right-to-left override printed raw would overwrite or reorder the line.
#[test]
fn control_and_bidi_characters_in_tokens_print_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let acts = dir.path().join("acts.npy");
    let toks = dir.path().join("tokens.json");
    // One feature firing on every token of one sequence of 6.
    npy::write_f32(&acts, &[6, 1], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let tokens = vec![vec![
        "a\rb",
        "\u{1b}[2J",
        "\u{202e}evil",
        "x\ny",
        "t\tu",
        "\u{2066}iso",
    ]];
    std::fs::write(&toks, serde_json::to_string(&tokens).unwrap()).unwrap();
    let dict = dir.path().join("d.json");
    let out = build(&acts, &toks, &dict, &["-q"]);
    assert_success(&out);
    let out = featdict(&["show", s(&dict), "0"]);
    assert_success(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    for raw in ['\r', '\u{1b}', '\u{202e}', '\u{2066}', '\t'] {
        assert!(!text.contains(raw), "raw {raw:?} in: {text}");
    }
    // The example with the highest activation, in context, every token escaped.
    assert!(
        text.contains(r"a\rb \u{1b}[2J \u{202e}evil x\ny t\tu [[\u{2066}iso]]"),
        "{text}"
    );
    // Names stored in the dictionary are printed escaped too.
    let named = dir.path().join("named.fdict");
    let out = build(
        &acts,
        &toks,
        &named,
        &["-q", "--model-name", "m\u{1b}[31mred", "--sae-name", "s\rX"],
    );
    assert_success(&out);
    let out = featdict(&["stats", s(&named)]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(r"m\u{1b}[31mred") && text.contains(r"s\rX"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text}");
    // search's `matched` column is quoted and escaped once, as show's top tokens are.
    let out = featdict(&["search", s(&dict), "--token", "x\ny"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(r#""x\ny""#), "{text}");
    assert!(!text.contains(r#""x\\ny""#), "{text}");
}

/// `polysemantic --min-clusters 0` listed every feature as polysemantic, some with no
/// cluster at all.
#[test]
fn polysemantic_needs_at_least_two_clusters() {
    let dir = tempfile::tempdir().unwrap();
    let (json, _) = dictionaries(dir.path());
    for n in ["0", "1"] {
        let out = featdict(&[
            "polysemantic",
            s(&json),
            "--embeddings",
            "never-read.safetensors",
            "--min-clusters",
            n,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("--min-clusters") && err.contains("must be at least 2"),
            "{err}"
        );
    }
}

/// `polysemantic -n 0` printed a count and no feature; `--min-cluster-size 0` was taken.
#[test]
fn polysemantic_refuses_zero_counts_and_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let (json, _) = dictionaries(dir.path());
    for (option, flag) in [
        ("-n", "--count"),
        ("--min-cluster-size", "--min-cluster-size"),
    ] {
        let out = featdict(&["polysemantic", s(&json), option, "0"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(flag) && err.contains("must be at least 1"),
            "{err}"
        );
    }
}

/// `search -n 0` printed "no match" for a query that matches; the server refuses limit=0.
#[test]
fn search_refuses_a_limit_of_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (json, fdict) = dictionaries(dir.path());
    let dict = store::load(&json).unwrap();
    let token = dict.get(0).unwrap().metadata.top_tokens[0].token.clone();
    for d in [&json, &fdict] {
        let out = featdict(&["search", s(d), "--token", &token, "-n", "0"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("must be at least 1"), "{err}");
        let out = featdict(&["search", s(d), "--token", &token, "-n", "1", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["hits"].as_array().unwrap().len(), 1);
    }
}

/// Counts of 0 are refused under the flag's name: `--threads 0` ran on one thread, and
/// `--token-capacity 0` failed later naming the config key `token_sketch_capacity`.
#[test]
fn build_counts_of_zero_are_refused_by_their_flag() {
    let dir = tempfile::tempdir().unwrap();
    let acts = dir.path().join("acts.npy");
    let toks = dir.path().join("tokens.json");
    npy::write_f32(&acts, &[4, 2], &[1.0; 8]).unwrap();
    std::fs::write(&toks, r#"[["a","b","c","d"]]"#).unwrap();
    let dict = dir.path().join("d.json");
    for flag in ["--threads", "--token-capacity"] {
        let out = build(&acts, &toks, &dict, &["-q", flag, "0"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(flag) && err.contains("must be at least 1"),
            "{err}"
        );
        assert!(!dict.exists());
        assert_success(&build(&acts, &toks, &dict, &["-q", flag, "1"]));
        std::fs::remove_file(&dict).unwrap();
    }
}

#[test]
fn analysis_options_that_change_nothing_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let acts = dir.path().join("acts.npy");
    let toks = dir.path().join("tokens.json");
    let data: Vec<f32> = (0..8 * 3).map(|i| ((i * 7) % 5) as f32).collect();
    npy::write_f32(&acts, &[8, 3], &data).unwrap();
    std::fs::write(&toks, r#"[["a","b","c","d"],["e","f","g","h"]]"#).unwrap();
    let dict = dir.path().join("d.json");
    let out = build(&acts, &toks, &dict, &["-q", "--correlation", "exact"]);
    assert_success(&out);
    // --min nan: nothing is >= NaN, so "none" was printed for every feature.
    let out = featdict(&["correlated", s(&dict), "0", "--min", "nan"]);
    assert_clean_error(&out, &["must be a number, got NaN"]);
    let out = featdict(&["correlated", s(&dict), "0", "--json"]);
    assert_success(&out);
    // A bound no correlation reaches: "none", blamed on the stored partners, was printed.
    for min in ["1.0001", "inf"] {
        let out = featdict(&["correlated", s(&dict), "0", "--min", min]);
        assert_clean_error(&out, &["must be at most 1"]);
    }
    // similar --tensor names a tensor of --sae; without --sae it was silently ignored.
    let out = featdict(&["similar", s(&dict), "0", "--tensor", "W_dec"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--sae"), "{err}");
    let out = featdict(&["similar", s(&dict), "0", "--json"]);
    assert_success(&out);
}

/// `demo --addr` only matters with --serve; alone it was silently ignored.
#[test]
fn demo_addr_requires_serve() {
    let out = featdict(&["demo", "--addr", "127.0.0.1:9999", "--data", "/nonexistent"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--serve"), "{err}");
}

/// `search` refuses an empty query of every kind, as it did an empty --label (an empty
/// --token printed "no match", rc 0), and --by beside --label or --text, which it ignored.
#[test]
fn empty_searches_and_rankings_that_do_not_apply_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (json, fdict) = dictionaries(dir.path());
    for d in [&json, &fdict] {
        for (kind, says) in [
            ("--token", "empty token query"),
            ("--pattern", "empty pattern"),
            ("--text", "has no words"),
            ("--label", "empty label query"),
        ] {
            let out = featdict(&["search", s(d), kind, ""]);
            assert_clean_error(&out, &[kind, says]);
        }
        for kind in ["--label", "--text"] {
            let out = featdict(&["search", s(d), kind, "the", "--by", "firings"]);
            assert_clean_error(
                &out,
                &[
                    kind,
                    "a ranking by firings applies only to token and pattern searches",
                ],
            );
        }
        for kind in ["--token", "--pattern"] {
            let out = featdict(&["search", s(d), kind, "a", "--by", "firings"]);
            assert_success(&out);
        }
    }
}

/// A feature that never fired, in a dictionary with per-token counts, fired on no token:
/// `compare` said its counts were not stored, and `similar` listed nothing, exit 0. So did
/// `similar` on a file of the original library, which holds no counts at all.
#[test]
fn a_feature_that_never_fired_and_a_file_without_counts_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let acts = dir.path().join("acts.npy");
    let toks = dir.path().join("tokens.json");
    // Feature 2 is 0 everywhere.
    let data: Vec<f32> = (0..8 * 3)
        .map(|i| {
            if i % 3 == 2 {
                0.0
            } else {
                1.0 + (i % 4) as f32
            }
        })
        .collect();
    npy::write_f32(&acts, &[8, 3], &data).unwrap();
    std::fs::write(&toks, r#"[["a","b","c","d"],["e","f","g","h"]]"#).unwrap();
    let dict = dir.path().join("d.json");
    assert_success(&build(&acts, &toks, &dict, &["-q"]));
    let out = featdict(&["compare", s(&dict), "2", "0", "--json"]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["a"]["unique_tokens"], 0);
    assert_eq!(v["token_profile_cosine"], serde_json::Value::Null);
    assert_eq!(v["token_profile_missing"], "feature 2 never fired");
    assert_eq!(v["shared_tokens"], serde_json::json!([]));
    let out = featdict(&["compare", s(&dict), "2", "0"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("token-profile cosine  – (feature 2 never fired)"),
        "{text}"
    );
    let out = featdict(&["similar", s(&dict), "2"]);
    assert_clean_error(&out, &["feature 2 never fired", "--sae"]);
    let out = featdict(&["similar", s(&dict), "0", "--json"]);
    assert_success(&out);

    let original = dir.path().join("original.json");
    let ex = serde_json::json!({"feature_id": 0, "token": "a", "position": 0, "activation": 1.0,
        "context": "", "context_tokens": ["a"], "metadata": {}});
    let feature = |id: u64| {
        let mut ex = ex.clone();
        ex["feature_id"] = id.into();
        serde_json::json!({"id": id, "dimension": 4, "activation_count": 1,
            "mean_activation": 1.0, "max_activation": 1.0, "activation_frequency": 0.5,
            "top_activations": [ex], "labels": [], "description": "", "confidence": 0.0,
            "feature_type": "moderate", "metadata": {}})
    };
    let file = serde_json::json!({"config": {}, "statistics": {}, "feature_set": {"layer": 0,
        "features": {"0": feature(0), "1": feature(1)}, "total_tokens_processed": 2,
        "model_name": "", "sae_name": "", "metadata": {}}});
    std::fs::write(&original, file.to_string()).unwrap();
    let out = featdict(&["similar", s(&original), "0"]);
    assert_clean_error(
        &out,
        &["original.json", "no per-token firing counts", "--sae"],
    );
}

/// `correlated` on a feature that never fired says so (as `similar` and `compare` do), not
/// "none with correlation >= 0" as if partners had been looked for.
#[test]
fn correlated_says_a_dead_feature_never_fired() {
    let dir = tempfile::tempdir().unwrap();
    let acts = dir.path().join("acts.npy");
    let toks = dir.path().join("tokens.json");
    // Feature 1 never fires; 0 and 2 fire together.
    let data: Vec<f32> = (0..8)
        .flat_map(|t| {
            let on = if t % 2 == 0 { 1.0 } else { 0.0 };
            [on, 0.0, on * 2.0]
        })
        .collect();
    npy::write_f32(&acts, &[8, 3], &data).unwrap();
    std::fs::write(&toks, r#"[["a","b","c","d"],["e","f","g","h"]]"#).unwrap();
    let dict = dir.path().join("d.json");
    assert_success(&build(
        &acts,
        &toks,
        &dict,
        &["-q", "--correlation", "exact"],
    ));
    let out = featdict(&["correlated", s(&dict), "1"]);
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("none: feature 1 never fired"), "{text}");
    let out = featdict(&["correlated", s(&dict), "1", "--json"]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["never_fired"], true);
    assert_eq!(v["correlated"], serde_json::json!([]));
    let out = featdict(&["correlated", s(&dict), "0", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["never_fired"], false);
    assert_eq!(v["correlated"][0]["id"], 2, "{v}");
}
