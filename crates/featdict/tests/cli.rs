//! The `featdict` binary end to end: happy paths with `--json`, and bad inputs that must give
//! a clear error naming the file, a non-zero exit and no panic.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use feature_dictionary::ingest::npy;

/// 3 sequences of 4 tokens, 5 features; feature 4 never fires.
fn fixture(dir: &Path) -> (PathBuf, PathBuf) {
    let acts = dir.join("acts.npy");
    let toks = dir.join("tokens.json");
    let mut data = vec![0f32; 12 * 5];
    for r in 0..12 {
        data[r * 5 + r % 4] = 1.0 + r as f32;
    }
    npy::write_f32(&acts, &[12, 5], &data).unwrap();
    std::fs::write(
        &toks,
        r#"[["The"," cat"," sat","."],["<script>alert(1)</script>"," dog"," ran","."],["A"," cat"," ran","!"]]"#,
    )
    .unwrap();
    (acts, toks)
}

/// `featdict build ACTS --tokens TOKENS` into a path that must never be written.
fn build_expecting_failure(acts: &Path, tokens: &Path) -> Output {
    build(acts, tokens, Path::new("/tmp/never.json"), &[])
}

#[test]
fn build_stats_show_top_with_json() {
    let dir = tempfile::tempdir().unwrap();
    let (acts, toks) = fixture(dir.path());
    let out_path = dir.path().join("d.json");
    let out = build(
        &acts,
        &toks,
        &out_path,
        &["--model-name", "toy", "--layer", "3", "--json", "-q"],
    );
    assert_success(&out);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["statistics"]["total_tokens_processed"], 12);
    assert_eq!(summary["statistics"]["dead_features"], 1);

    let out = featdict(&["stats", s(&out_path), "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["num_features"], 5);
    assert_eq!(st["model_name"], "toy");
    assert_eq!(st["layer"], 3);
    assert_eq!(st["statistics"]["active_features"], 4);

    // Feature 0 fires on rows 0, 4, 8 with 1, 5, 9: "The", "<script>…", "A".
    let out = featdict(&["show", s(&out_path), "0", "--json"]);
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(f["activation_count"], 3);
    assert_eq!(f["max_activation"], 9.0);
    assert_eq!(f["top_activations"][0]["token"], "A");
    assert_eq!(
        f["top_activations"][1]["token"],
        "<script>alert(1)</script>"
    );
    assert_eq!(
        f["top_activations"][0]["context_tokens"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    let out = featdict(&["show", s(&out_path), "0"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[[A]] cat ran!"), "{text}");
    assert!(text.contains("quantile-stratified examples"), "{text}");
    // `-n 0`: the statistics without any example.
    let out = featdict(&["show", s(&out_path), "0", "-n", "0"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(!text.contains("[[") && !text.contains("examples"), "{text}");
    assert!(text.contains("firings") || text.contains("count"), "{text}");
    // Its activations 1, 5 and 9 fall in three octaves; three tokens once each: log2(3) bits.
    let bars: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("  histogram (firings per octave"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .map(str::trim)
        .collect();
    assert_eq!(
        bars,
        [
            "[1.0000, 2.0000)             1  ██████████████████████████████",
            "[4.0000, 8.0000)             1  ██████████████████████████████",
            "[8.0000, 16.0000)            1  ██████████████████████████████",
        ],
        "{text}"
    );
    assert!(
        text.contains("firing tokens: 3 distinct, entropy 1.585 bits"),
        "{text}"
    );

    let out = featdict(&[
        "top",
        s(&out_path),
        "--by",
        "max_activation",
        "-n",
        "2",
        "--json",
    ]);
    let top: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<u64> = top
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![3, 2]); // maxima 12 and 11

    // --drop-dead leaves the dead feature out of the file but says so.
    let dropped = dir.path().join("alive.json");
    let out = build(&acts, &toks, &dropped, &["--drop-dead", "-q"]);
    assert_success(&out);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("(4 active, 1 dead, left out)"), "{said}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&dropped).unwrap()).unwrap();
    assert!(v["feature_set"]["features"].get("4").is_none());
    assert_eq!(
        v["feature_set"]["metadata"]["omitted_features"],
        serde_json::json!([4])
    );
    assert_eq!(v["config"]["num_features"], 5);
    // In the original's terms: features under min_activation_count (1) firings not included.
    assert_eq!(v["config"]["extraction"]["include_dead_features"], false);
    assert_eq!(v["config"]["extraction"]["min_activation_count"], 1);
    // `stats` counts every feature of the dictionary, those left out of the file as dead
    // (frequency 0): the mean frequency, dead count and types are those of the full build
    // (the mean was over the 4 stored features, 5/4 of the right one).
    let mut texts = Vec::new();
    for d in [&out_path, &dropped] {
        let fdict = d.with_extension("fdict");
        assert_success(&featdict(&["import", s(d), "--out", s(&fdict)]));
        // `top --type dead` lists the stored dead features; the ones left out are said.
        for f in [d, &fdict] {
            let out = featdict(&["top", s(f), "--type", "dead"]);
            assert_success(&out);
            // Nothing to list is said, not shown as a bare header.
            let listed = String::from_utf8_lossy(&out.stdout);
            if d == &dropped {
                assert_eq!(listed, "no dead features\n");
            } else {
                assert!(
                    listed
                        .lines()
                        .nth(1)
                        .unwrap()
                        .trim_start()
                        .starts_with("4 "),
                    "{listed}"
                );
            }
            let note = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                note.contains(
                    "dead features left out when it was built (--drop-dead), not listed: 1"
                ),
                d == &dropped,
                "{note}"
            );
        }
        for d in [d, &fdict] {
            let out = featdict(&["stats", s(d)]);
            assert_success(&out);
            texts.push(String::from_utf8_lossy(&out.stdout).into_owned());
        }
    }
    let (full, dropped_text) = (&texts[0], &texts[2]);
    assert_eq!(texts[0], texts[1]);
    assert_eq!(texts[2], texts[3]);
    assert!(
        dropped_text.contains("features     5 (4 in file)")
            && dropped_text.contains("dead         1 (1 left out of the file when it was built"),
        "{dropped_text}"
    );
    // The first number on the line of `key`.
    let value = |t: &str, key: &str| {
        let line = t
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in {t}"));
        line.split_whitespace()
            .find(|w| w.parse::<f64>().is_ok())
            .unwrap()
            .to_string()
    };
    for key in [
        "mean freq",
        "active",
        "dead ",
        "ultra_sparse",
        "sparse",
        "moderate",
        "dense",
    ] {
        assert_eq!(
            value(full, key),
            value(dropped_text, key),
            "{key}: {full}\n{dropped_text}"
        );
    }
    let out = featdict(&["stats", s(&dropped), "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["stored_features"], 4);
    assert_eq!(st["statistics"]["dead_features"], 1);
    assert_eq!(st["statistics"]["type_distribution"]["dead"], 1);
}

#[test]
fn truncated_npy() {
    let dir = tempfile::tempdir().unwrap();
    let (acts, toks) = fixture(dir.path());
    let bytes = std::fs::read(&acts).unwrap();
    std::fs::write(&acts, &bytes[..bytes.len() - 7]).unwrap();
    let out = build_expecting_failure(&acts, &toks);
    assert_clean_error(
        &out,
        &[s(&acts), "truncated", "needs 240 data bytes but 233"],
    );
}

#[test]
fn unsupported_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let (acts, toks) = fixture(dir.path());
    let mut bytes = std::fs::read(&acts).unwrap();
    let at = bytes.windows(3).position(|w| w == b"<f4").unwrap();
    bytes[at..at + 3].copy_from_slice(b"<i4");
    std::fs::write(&acts, bytes).unwrap();
    let out = build_expecting_failure(&acts, &toks);
    assert_clean_error(&out, &[s(&acts), "unsupported dtype <i4", "float32"]);
}

#[test]
fn token_activation_length_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let (acts, toks) = fixture(dir.path());
    std::fs::write(&toks, r#"[["a","b","c","d"],["e","f","g"]]"#).unwrap();
    let out = build_expecting_failure(&acts, &toks);
    assert_clean_error(&out, &[s(&toks), "length mismatch", "12 rows", "7 tokens"]);
}

#[test]
fn nonfinite_activations_are_reported_not_folded() {
    let dir = tempfile::tempdir().unwrap();
    let (acts, toks) = fixture(dir.path());
    let mut data = vec![0f32; 60];
    data[5 * 2 + 1] = f32::NAN; // row 2 (seq 0, pos 2), feature 1
    data[5 * 6 + 3] = f32::INFINITY;
    data[0] = 2.0;
    // Feature 1 fires right before and after its NaN, which is in both examples' contexts.
    data[5 + 1] = 1.5;
    data[5 * 3 + 1] = 0.75;
    npy::write_f32(&acts, &[12, 5], &data).unwrap();
    let out_path = dir.path().join("d.json");
    let out = build(&acts, &toks, &out_path, &[]);
    assert_clean_error(
        &out,
        &[
            s(&acts),
            "non-finite",
            "sequence 0, position 2, feature 1",
            "--allow-nonfinite",
        ],
    );
    assert!(!out_path.exists(), "no dictionary may be written");

    let out = build(&acts, &toks, &out_path, &["--allow-nonfinite", "-q"]);
    assert_success(&out);
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("2 non-finite activation values were skipped"));
    let out = featdict(&["show", s(&out_path), "3", "--json"]);
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(f["activation_count"], 0, "+Inf must not count as a firing");
    assert_eq!(f["metadata"]["nonfinite_count"], 1);
    // The skipped NaN reads as 0 in the contexts, as a value that did not fire: JSON has no
    // NaN, and a `null` there made the whole file unreadable.
    let fdict_path = dir.path().join("d.fdict");
    let out = build(&acts, &toks, &fdict_path, &["--allow-nonfinite", "-q"]);
    assert_success(&out);
    for path in [&out_path, &fdict_path] {
        let out = featdict(&["show", s(path), "1", "--json"]);
        assert_success(&out);
        let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(f["activation_count"], 2, "{}", s(path));
        let examples = f["top_activations"].as_array().unwrap();
        assert_eq!(examples.len(), 2);
        for ex in examples {
            let acts = &ex["metadata"]["context_activations"];
            let start = ex["metadata"]["context_start"].as_u64().unwrap();
            let at = |pos: u64| acts[(pos - start) as usize].as_f64().unwrap();
            assert_eq!((at(1), at(2), at(3)), (1.5, 0.0, 0.75), "{}: {ex}", s(path));
        }
    }
}

#[test]
fn empty_files_and_directories() {
    let dir = tempfile::tempdir().unwrap();
    let (acts, toks) = fixture(dir.path());
    let empty = dir.path().join("empty.npy");
    std::fs::write(&empty, b"").unwrap();
    let out = build_expecting_failure(&empty, &toks);
    assert_clean_error(&out, &[s(&empty), "empty"]);

    let empty_tokens = dir.path().join("empty.json");
    std::fs::write(&empty_tokens, b"").unwrap();
    let out = build_expecting_failure(&acts, &empty_tokens);
    assert_clean_error(&out, &[s(&empty_tokens), "empty"]);

    let sub = dir.path().join("adir.npy");
    std::fs::create_dir(&sub).unwrap();
    let out = build_expecting_failure(&sub, &toks);
    // A directory is read as a delphi cache; an empty one says what it lacks.
    assert_clean_error(&out, &[s(&sub), "directory", "shards"]);

    let out = featdict(&["stats", s(dir.path())]);
    assert_clean_error(&out, &[s(dir.path()), "is a directory"]);

    let missing = dir.path().join("missing.npy");
    let out = build_expecting_failure(&missing, &toks);
    assert_clean_error(&out, &[s(&missing), "No such file"]);
}

#[test]
fn malformed_inputs_and_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let (acts, toks) = fixture(dir.path());
    // Counts of 1 in the singular (it said "2 tokens in 1 sequences").
    let short = dir.path().join("short.json");
    std::fs::write(&short, r#"[["a", "b"]]"#).unwrap();
    let out = build_expecting_failure(&acts, &short);
    assert_clean_error(
        &out,
        &["has 12 rows (tokens) but the tokens file has 2 tokens in 1 sequence"],
    );
    // A file that is not a dictionary: its name once (it said "cannot read dictionary
    // p.toml: p.toml: not …").
    let toml = dir.path().join("p.toml");
    std::fs::write(&toml, "a = \"b\"\n").unwrap();
    let out = featdict(&["stats", s(&toml)]);
    assert_clean_error(&out, &[&format!("cannot read dictionary {}: ", s(&toml))]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches(s(&toml)).count(), 1, "{err}");
    let bad_tokens = dir.path().join("bad.json");
    std::fs::write(&bad_tokens, r#"[["a", 3]]"#).unwrap();
    let out = build_expecting_failure(&acts, &bad_tokens);
    assert_clean_error(&out, &[s(&bad_tokens), "list of lists of token strings"]);

    let not_npy = dir.path().join("x.npy");
    std::fs::write(&not_npy, b"hello world, not numpy").unwrap();
    let out = build_expecting_failure(&not_npy, &toks);
    assert_clean_error(&out, &[s(&not_npy), "magic"]);

    let never = Path::new("/tmp/never.json");
    let out = build(&acts, &toks, never, &["--min-activation", "0"]);
    assert_clean_error(&out, &["min_activation must be a positive number"]);

    let dict = dir.path().join("d.json");
    assert_success(&build(&acts, &toks, &dict, &["-q"]));
    let out = featdict(&["show", s(&dict), "77"]);
    assert_clean_error(&out, &["feature 77 is not in", s(&dict)]);

    let garbage = dir.path().join("g.json");
    std::fs::write(&garbage, b"{\"feature_set\": 3}").unwrap();
    let out = featdict(&["stats", s(&garbage)]);
    assert_clean_error(
        &out,
        &[s(&garbage), "feature_set: invalid type: integer `3`"],
    );
    std::fs::write(&garbage, b"[]").unwrap();
    let out = featdict(&["stats", s(&garbage)]);
    assert_clean_error(&out, &[s(&garbage), "not a feature dictionary JSON"]);
}

/// `compare --json` said 0 (and "exact") for what a file does not hold — the original
/// library's files have no std, min, positions or per-token counts — where the text prints
/// "–"; it says null there now, and the measured values where the file has them.
#[test]
fn compare_json_says_null_where_the_text_says_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let feature = |id: u64, metadata: serde_json::Value| {
        serde_json::json!({
            "id": id, "dimension": 8, "bias": 0.0, "activation_count": 3 + id,
            "mean_activation": 1.5, "max_activation": 2.0, "activation_frequency": 0.1,
            "top_activations": [], "labels": ["token:the"], "description": "",
            "confidence": 0.7, "feature_type": "moderate", "metadata": metadata
        })
    };
    let measured = |firings: u64| {
        serde_json::json!({
            "std_activation": 0.5, "min_activation": 0.25,
            "positions": {"mean": 4.5, "variance": 2.0, "start": 1, "early": 2, "middle": 0, "late": 0},
            "top_tokens": [{"token": "the", "firings": firings, "occurrences": 10}],
            "unique_tokens": 1, "token_entropy": 0.0, "token_counts_exact": false
        })
    };
    let doc = serde_json::json!({
        "config": {},
        "feature_set": {
            "layer": 0,
            "features": {"0": feature(0, serde_json::json!({})), "1": feature(1, measured(3)),
                         "2": feature(2, measured(2))},
            "total_tokens_processed": 30, "model_name": "", "sae_name": "", "metadata": {}
        },
        "statistics": {}
    });
    let path = dir.path().join("d.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    let compare = |a: &str, b: &str| {
        let out = featdict(&["compare", s(&path), a, b, "--json"]);
        assert_success(&out);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let v = compare("0", "1");
    assert_eq!(
        v["a"],
        serde_json::json!({
            "feature_id": 0, "activation_count": 3, "mean_activation": 1.5,
            "std_activation": null, "max_activation": 2.0, "min_activation": null,
            "activation_frequency": 0.1, "mean_position": null, "position_variance": null,
            "unique_tokens": null, "token_entropy": null, "token_counts_exact": null
        })
    );
    assert_eq!(
        v["b"],
        serde_json::json!({
            "feature_id": 1, "activation_count": 4, "mean_activation": 1.5,
            "std_activation": 0.5, "max_activation": 2.0, "min_activation": 0.25,
            "activation_frequency": 0.1, "mean_position": 4.5, "position_variance": 2.0,
            "unique_tokens": 1, "token_entropy": 0.0, "token_counts_exact": false
        })
    );
    assert_eq!(v["token_profile_cosine"], serde_json::Value::Null);
    assert_eq!(v["shared_tokens"], serde_json::Value::Null);
    assert_eq!(v["shared_labels"], serde_json::json!(["token:the"]));
    assert_eq!(v["correlation"], serde_json::Value::Null);
    // Both with per-token counts: measured.
    let v = compare("1", "2");
    assert_eq!(v["token_profile_cosine"], 1.0);
    assert_eq!(v["shared_tokens"], serde_json::json!([["the", 2]]));
    // The text prints "–" in the same places.
    let out = featdict(&["compare", s(&path), "0", "1"]);
    assert_success(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    let row = |name: &str| -> Vec<String> {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap();
        line[name.len()..]
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(row("std activation"), ["–", "0.500000"]);
    assert_eq!(row("mean position"), ["–", "4.500000"]);
    assert_eq!(row("distinct tokens"), ["–", "≈1"]);
    assert_eq!(row("token entropy (bits)"), ["–", "≈0.000000"]);
    assert!(
        // Other features of the file hold per-token counts: this one's are what is missing.
        text.contains("token-profile cosine  – (feature 0 has no stored top tokens)"),
        "{text}"
    );
    assert!(
        text.contains("correlation           – (no co-activation data in this dictionary"),
        "{text}"
    );
}

/// Writes `n_seq` sequences of 128 tokens over `f` features at ~2 % density.
fn synthetic(dir: &Path, name: &str, n_seq: usize, f: usize) -> (PathBuf, PathBuf) {
    let rows = n_seq * 128;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut data = vec![0f32; rows * f];
    for v in data.iter_mut() {
        let r = next();
        if r % 50 == 0 {
            *v = (r >> 40) as f32 / (1u64 << 22) as f32 + 0.01;
        }
    }
    let acts = dir.join(format!("{name}.npy"));
    npy::write_f32(&acts, &[rows, f], &data).unwrap();
    let toks: Vec<Vec<String>> = (0..n_seq)
        .map(|_| (0..128).map(|_| format!("w{}", next() % 300)).collect())
        .collect();
    let tp = dir.join(format!("{name}.json"));
    std::fs::write(&tp, serde_json::to_string(&toks).unwrap()).unwrap();
    (acts, tp)
}

#[test]
fn peak_memory_does_not_grow_with_tokens() {
    let dir = tempfile::tempdir().unwrap();
    // Past warm-up (token tables and samples filled), 10× the tokens at equal F.
    let f = 128;
    let mut rss = Vec::new();
    for (name, n_seq) in [("small", 192), ("large", 1920)] {
        let (acts, toks) = synthetic(dir.path(), name, n_seq, f);
        let out_path = dir.path().join(format!("{name}.out.json"));
        let out = build(
            &acts,
            &toks,
            &out_path,
            &["--json", "-q", "--batch-values", "262144"],
        );
        assert_success(&out);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            v["statistics"]["total_tokens_processed"],
            (n_seq * 128) as u64
        );
        rss.push(v["peak_rss_bytes"].as_u64().expect("Linux reports VmHWM"));
    }
    // 10× the tokens (12 MiB → 120 MiB of activations): peak memory stays within a few MiB
    // (token ids are 4 bytes per token; everything else is per feature or per batch).
    let (small, large) = (rss[0] as f64, rss[1] as f64);
    eprintln!(
        "peak RSS: 24,576 tokens {:.1} MiB, 245,760 tokens {:.1} MiB",
        small / 1048576.0,
        large / 1048576.0
    );
    assert!(
        large < small * 1.15 + 3.0 * 1048576.0,
        "small {small} large {large}"
    );
}

/// A Fortran-order `[tokens, F]` file (`np.save(path, acts.T)`, each feature's column
/// contiguous) builds the same dictionary as its C-order copy, and its columns' pages are
/// dropped behind the scan (in steps of 64 KiB per column), so the whole file never stays
/// mapped. What stays mapped ahead of the scan is the kernel's choice: it maps page-cache
/// folios whole, up to 2 MiB on x86-64, two per column when a batch straddles them.
#[test]
fn fortran_order_columns_are_not_all_kept_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    // 4 columns of 16 MiB (4 Mi tokens), so what is dropped dwarfs what the kernel maps ahead.
    let (f, n_seq) = (4, 32 * 1024);
    let (c_order, toks) = synthetic(dir.path(), "long", n_seq, f);
    let run = |acts: &Path, out: &Path| {
        let o = build(
            acts,
            &toks,
            out,
            &["--json", "-q", "--batch-values", "262144"],
        );
        assert_success(&o);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            v["statistics"]["total_tokens_processed"],
            (n_seq * 128) as u64
        );
        v["peak_rss_bytes"].as_u64().expect("Linux reports VmHWM") as f64
    };
    let (out_c, out_f) = (dir.path().join("c.json"), dir.path().join("f.json"));
    let peak_c = run(&c_order, &out_c);
    let bytes = std::fs::read(&c_order).unwrap();
    let header = npy::parse_header(&c_order, &bytes).unwrap();
    std::fs::remove_file(&c_order).unwrap(); // not both on disk at once
    let fortran = dir.path().join("long-fortran.npy");
    let data = &bytes[header.data_offset..];
    write_npy(&fortran, "<f4", &[n_seq * 128, f], true, data);
    let file = data.len() as f64;
    drop(bytes);
    let peak_f = run(&fortran, &out_f);
    eprintln!(
        "peak RSS over a {:.0} MiB file: C order {:.1} MiB, Fortran order {:.1} MiB",
        file / 1048576.0,
        peak_c / 1048576.0,
        peak_f / 1048576.0
    );
    assert!(
        std::fs::read(&out_c).unwrap() == std::fs::read(&out_f).unwrap(),
        "the two orders built different dictionaries"
    );
    // Kept whole, the file would add 64 MiB; at most 4 columns × 2 folios × 2 MiB (plus
    // 64 KiB behind the scan, and a 1 MiB gather buffer) may be mapped.
    assert!(peak_f < peak_c + file / 2.0, "C {peak_c} Fortran {peak_f}");
}

#[test]
fn top_k_zero_keeps_statistics_without_examples() {
    let dir = tempfile::tempdir().unwrap();
    let (acts, toks) = synthetic(dir.path(), "k0", 8, 16);
    // Not k0.json: that is the tokens file, which an output may not replace.
    let (with, without) = (dir.path().join("k20.json"), dir.path().join("k0-dict.json"));
    assert_success(&build(&acts, &toks, &with, &["-q"]));
    // It panicked in the first batch before: the empty top-k's threshold read its item 0.
    let out = build(&acts, &toks, &without, &["--top-k", "0", "-q"]);
    assert_success(&out);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    for id in 0..16 {
        let shown = |path: &Path| -> serde_json::Value {
            let out = featdict(&["show", s(path), &id.to_string(), "--json"]);
            assert_success(&out);
            serde_json::from_slice(&out.stdout).unwrap()
        };
        let (a, b) = (shown(&with), shown(&without));
        assert!(a["activation_count"].as_u64().unwrap() > 0);
        for field in ["activation_count", "mean_activation", "max_activation"] {
            assert_eq!(a[field], b[field], "feature {id} {field}");
        }
        assert_eq!(b["top_activations"], serde_json::json!([]));
        assert!(!a["top_activations"].as_array().unwrap().is_empty());
    }
}

#[cfg(unix)]
#[test]
fn a_closed_output_pipe_ends_quietly() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let (acts, toks) = synthetic(dir.path(), "pipe", 1, 3000);
    let dict = dir.path().join("d.json");
    assert_success(&build(&acts, &toks, &dict, &["-q"]));
    // ~3000 lines, well past a pipe's 64 KiB buffer: the writer is still writing when the
    // reader goes away, as with `featdict top … | head`.
    let mut child = Command::new(env!("CARGO_BIN_EXE_featdict"))
        .args(["top", s(&dict), "-n", "3000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 64];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.signal(), Some(13), "{:?} {err}", out.status);
}

#[test]
fn a_bad_output_path_fails_before_any_input_is_read() {
    let dir = tempfile::tempdir().unwrap();
    // The input does not exist either: the output is checked first, so a long build cannot
    // end in "cannot write" after its whole pass.
    let missing_input = dir.path().join("not-there.npy");
    let toks = dir.path().join("not-there.json");
    let out = build(
        &missing_input,
        &toks,
        &dir.path().join("no/such/dir/d.json"),
        &[],
    );
    assert_clean_error(&out, &["d.json", "directory", "does not exist"]);
    let out = build(&missing_input, &toks, &dir.path().join("d.jsn"), &[]);
    assert_clean_error(&out, &["d.jsn", "unsupported output extension", ".fdict"]);
    let out = build(&missing_input, &toks, dir.path(), &[]);
    assert_clean_error(&out, &["unsupported output extension"]);
    // Each cause is said once (the OS error used to be repeated by the error chain).
    let out = featdict(&["stats", s(&missing_input)]);
    assert_clean_error(&out, &["not-there.npy"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
}

/// The label of a newline token ("token:\n") prints as `\n` in the human-readable output of
/// `show` and `search`, as tokens do, instead of breaking the line in two.
#[test]
fn labels_with_newlines_print_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (acts, _) = fixture(dir.path());
    let toks = dir.path().join("nl.json");
    std::fs::write(
        &toks,
        r#"[["The"," cat"," sat","\n"],["A"," dog"," ran","\n"],["A"," cat"," ran","\n"]]"#,
    )
    .unwrap();
    let dict = dir.path().join("d.json");
    assert_success(&build(&acts, &toks, &dict, &["-q"]));
    assert_success(&featdict(&[
        "label",
        s(&dict),
        "--min-firings",
        "1",
        "--min-confidence",
        "0",
    ]));
    let shown = featdict(&["show", s(&dict), "3"]);
    assert_success(&shown);
    let found = featdict(&["search", s(&dict), "--label", "token:"]);
    assert_success(&found);
    for out in [&shown, &found] {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("token:\\n"), "{text}");
        assert!(!text.contains("token:\n"), "{text}");
    }
}

#[test]
fn top_level_help_is_the_cli_doc_comment() {
    // `-h` gives its first paragraph, `--help` all of it (not the package description).
    let short = featdict(&["-h"]);
    let long = featdict(&["--help"]);
    assert!(short.status.success() && long.status.success());
    let short = String::from_utf8(short.stdout).unwrap();
    let long = String::from_utf8(long.stdout).unwrap();
    let about =
        "Turn sparse-autoencoder activations into a searchable, labeled dictionary of features";
    assert!(short.starts_with(about), "{short}");
    assert!(!short.contains("reads activations once"), "{short}");
    assert!(long.starts_with(about), "{long}");
    assert!(
        long.contains("reads activations once, in bounded memory"),
        "{long}"
    );
    assert!(
        !long.contains("Command-line interface of feature-dictionary"),
        "{long}"
    );
}

/// `show` highlights an example's firing token only where its context holds it: an
/// example of the original library (no `context_start`) whose context lacks its token is
/// shown unmarked, where index `position` used to mark another token; a hand-edited start
/// that points elsewhere is a load error naming the file, the example and its feature.
#[test]
fn show_marks_only_the_token_an_example_fired_on() {
    let dir = tempfile::tempdir().unwrap();
    let example = |pos: u32, ctx: &[&str], metadata: serde_json::Value| {
        serde_json::json!({"feature_id": 1, "token": "York", "position": pos, "activation": 2.0,
                           "context": "", "context_tokens": ctx, "metadata": metadata})
    };
    let doc = |examples: Vec<serde_json::Value>| {
        serde_json::json!({
            "config": {},
            "feature_set": {"layer": 0, "features": {"1": {
                "id": 1, "dimension": 4, "activation_count": 2, "feature_type": "dense",
                "top_activations": examples, "metadata": {}}}, "total_tokens_processed": 9}
        })
    };
    let path = dir.path().join("orig.json");
    std::fs::write(
        &path,
        doc(vec![
            example(1, &["New", "York", "City"], serde_json::json!({})),
            example(1, &["in", "Boston", "."], serde_json::json!({})),
        ])
        .to_string(),
    )
    .unwrap();
    let out = featdict(&["show", s(&path), "1"]);
    assert_success(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("New [[York]] City"), "{text}");
    assert!(text.contains("?:1    in Boston ."), "{text}");
    std::fs::write(
        &path,
        doc(vec![example(
            1,
            &["New", "York", "City"],
            serde_json::json!({"context_start": 1}),
        )])
        .to_string(),
    )
    .unwrap();
    assert_clean_error(
        &featdict(&["show", s(&path), "1"]),
        &[
            s(&path),
            "feature_set.features[\"1\"].top_activations[0]: an example of feature 1 whose context_tokens[0] (position 1 − metadata.context_start 1) is \"New\", not its token; expected context_start 0",
        ],
    );
}

/// A feature count whose state cannot be allocated is an error naming the file it came from
/// (the shape of an empty `.npy` here), not a bare message or an aborted process.
#[test]
fn an_absurd_feature_count_names_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let acts = dir.path().join("wide.npy");
    npy::write_bytes(&acts, "<f4", &[0, 1_000_000_000_000], false, &[]).unwrap();
    let toks = dir.path().join("t.json");
    std::fs::write(&toks, "[]").unwrap();
    let out = build(&acts, &toks, &dir.path().join("d.json"), &["-q"]);
    assert_clean_error(
        &out,
        &[
            s(&acts),
            "1000000000000 features per token",
            "cannot allocate the state",
        ],
    );
}
