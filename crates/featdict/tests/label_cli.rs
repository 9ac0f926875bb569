//! End-to-end: `featdict build --ngrams --correlation exact`, then `label`, `label --set`,
//! `search`, `correlated`, `similar` on a small planted corpus.

use std::path::Path;
use std::process::Command;

use feature_dictionary::ingest::npy;

fn featdict(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_featdict"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A float32 .npy [rows, 3]: feature 0 fires on "cat", 1 on "bank" after "river", 2 on
/// every "cat" and "dog" (correlated with 0).
/// `featdict import JSON --out` the same name with `.fdict`; returns that path.
fn imported(json: &Path) -> std::path::PathBuf {
    let fdict = json.with_extension("fdict");
    let (ok, _, err) = featdict(&[
        "import",
        json.to_str().unwrap(),
        "--out",
        fdict.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    fdict
}

fn write_inputs(dir: &Path) -> (String, String) {
    let words = [
        "the", "cat", "sat", "river", "bank", "money", "bank", "dog", "ran", ".",
    ];
    let seqs: Vec<Vec<&str>> = (0..20)
        .map(|s| (0..10).map(|i| words[(i * 3 + s) % words.len()]).collect())
        .collect();
    let mut vals = Vec::new();
    for seq in &seqs {
        for (i, t) in seq.iter().enumerate() {
            let f0 = if *t == "cat" { 2.0f32 } else { 0.0 };
            let f1 = if *t == "bank" && i > 0 && seq[i - 1] == "river" {
                1.5
            } else {
                0.0
            };
            let f2 = if *t == "cat" || *t == "dog" { 1.0 } else { 0.0 };
            vals.extend([f0, f1, f2]);
        }
    }
    let acts = dir.join("acts.npy");
    npy::write_f32(&acts, &[vals.len() / 3, 3], &vals).unwrap();
    let toks = dir.join("tokens.json");
    std::fs::write(&toks, serde_json::to_string(&seqs).unwrap()).unwrap();
    (
        acts.to_string_lossy().into_owned(),
        toks.to_string_lossy().into_owned(),
    )
}

#[test]
fn label_search_correlated_similar() {
    let dir = tempfile::tempdir().unwrap();
    let (acts, toks) = write_inputs(dir.path());
    let dict = dir.path().join("d.json").to_string_lossy().into_owned();
    let (ok, _, err) = featdict(&[
        "build",
        &acts,
        "--tokens",
        &toks,
        "--out",
        &dict,
        "--ngrams",
        "64",
        "--correlation",
        "exact",
        "-q",
    ]);
    assert!(ok, "{err}");

    let (ok, out, err) = featdict(&[
        "label",
        &dict,
        "--strategies",
        "token_frequency,ngram_analysis,pattern_matching",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["report"]["labeled"], 3);

    let (ok, out, err) = featdict(&["show", &dict, "1", "--json"]);
    assert!(ok, "{err}");
    let f: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(f["labels"][0], "ngram:river bank");
    assert_eq!(f["metadata"]["label_details"][0]["precision"], 1.0);
    assert_eq!(f["metadata"]["label_details"][0]["recall"], 1.0);
    let (_, out, _) = featdict(&["show", &dict, "0", "--json"]);
    let f: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(f["labels"][0], "token:cat");

    let (ok, _, err) = featdict(&["label", &dict, "2", "--set", "animals"]);
    assert!(ok, "{err}");
    let (ok, _, err) = featdict(&["label", &dict]);
    assert!(ok, "{err}");
    let (_, out, _) = featdict(&["search", &dict, "--label", "ANIMALS", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["hits"][0]["id"], 2);
    let (_, out, _) = featdict(&["search", &dict, "--token", "cat", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["hits"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["hits"][0]["score"], 1.0, "{v}");

    let (ok, out, err) = featdict(&["correlated", &dict, "0", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["correlated"][0]["id"], 2);
    assert_eq!(v["method"]["measure"], "pearson");

    let (ok, out, err) = featdict(&["similar", &dict, "0", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["similar"][0]["id"], 2);

    // Clear errors.
    let (ok, _, err) = featdict(&["correlated", &dict, "9"]);
    assert!(!ok && err.contains("feature 9 is not in"), "{err}");
    let (ok, _, err) = featdict(&["label", &dict, "--strategies", "nope"]);
    assert!(!ok && err.contains("unknown strategy"), "{err}");
    let (ok, _, err) = featdict(&["search", &dict, "--pattern", "("]);
    assert!(!ok && err.contains("invalid regex"), "{err}");
}

/// `label --set` takes the texts the server's label form takes: an empty, multi-line or
/// overlong manual label is refused (and the file left alone), surrounding spaces trimmed.
#[test]
fn manual_label_text_is_checked_like_the_server_does() {
    let dir = tempfile::tempdir().unwrap();
    let (acts, toks) = write_inputs(dir.path());
    let dict = dir.path().join("d.json").to_string_lossy().into_owned();
    let (ok, _, err) = featdict(&["build", &acts, "--tokens", &toks, "--out", &dict, "-q"]);
    assert!(ok, "{err}");
    let before = std::fs::read(&dict).unwrap();
    let long = "x".repeat(201);
    for bad in ["", "   ", "two\nlines", "tab\there", long.as_str()] {
        let (ok, _, err) = featdict(&["label", &dict, "1", "--set", bad]);
        assert!(!ok, "{bad:?} was accepted");
        assert!(err.contains("label text"), "{bad:?}: {err}");
        assert_eq!(
            std::fs::read(&dict).unwrap(),
            before,
            "{bad:?} changed the file"
        );
    }
    let (ok, _, err) = featdict(&["label", &dict, "1", "--set", "  river bank  "]);
    assert!(ok, "{err}");
    let (_, out, _) = featdict(&["show", &dict, "1", "--json"]);
    let f: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(f["labels"][0], "river bank");
}

/// `label --set` keeps at most as many manual labels per feature as the server does (it
/// added any number: 55 on one feature), on a `.json` and on a `.fdict` in place.
#[test]
fn manual_labels_per_feature_are_bounded_like_the_server_does() {
    let dir = tempfile::tempdir().unwrap();
    let (acts, toks) = write_inputs(dir.path());
    for ext in ["json", "fdict"] {
        let dict = dir
            .path()
            .join(format!("d.{ext}"))
            .to_string_lossy()
            .into_owned();
        let (ok, _, err) = featdict(&["build", &acts, "--tokens", &toks, "--out", &dict, "-q"]);
        assert!(ok, "{err}");
        let max = feature_dictionary::label::manual::MAX_MANUAL_LABELS;
        for i in 0..max {
            let (ok, _, err) = featdict(&["label", &dict, "1", "--set", &format!("label {i}")]);
            assert!(ok, "{ext} label {i}: {err}");
        }
        let before = std::fs::read(&dict).unwrap();
        let (ok, _, err) = featdict(&["label", &dict, "1", "--set", "one too many"]);
        assert!(!ok, "{ext}: a 51st manual label was accepted");
        assert!(
            err.starts_with("error: ")
                && err.contains("feature 1 already has 50 manual labels; at most 50 are kept"),
            "{ext}: {err}"
        );
        assert_eq!(std::fs::read(&dict).unwrap(), before, "{ext}: file changed");
        // A text the feature already has is no new label.
        let (ok, _, err) = featdict(&["label", &dict, "1", "--set", "label 7"]);
        assert!(ok, "{ext}: {err}");
    }
}

/// A dictionary saved by the original library holds label texts only (no scored
/// `label_details`). Setting a manual label adds it first and keeps those labels, on a
/// `.json` as on a `.fdict`, and clearing it gives them back unchanged.
#[test]
fn manual_label_keeps_the_labels_of_an_original_library_file() {
    let dir = tempfile::tempdir().unwrap();
    let feature = |id: u64, labels: &[&str]| {
        serde_json::json!({
            "id": id, "dimension": 8, "bias": 0.0, "activation_count": 3,
            "mean_activation": 1.0, "max_activation": 2.0, "activation_frequency": 0.1,
            "top_activations": [], "labels": labels, "description": "",
            "confidence": 0.7, "feature_type": "sparse", "metadata": {}
        })
    };
    let original = serde_json::json!({
        "config": {"name": "feature_dictionary"},
        "feature_set": {
            "layer": 2,
            "features": {"0": feature(0, &["token:the", "pattern:article"]), "1": feature(1, &[])},
            "total_tokens_processed": 30, "model_name": "", "sae_name": "", "metadata": {}
        },
        "statistics": {}
    });
    let json = dir.path().join("orig.json");
    std::fs::write(&json, original.to_string()).unwrap();
    let fdict = imported(&json);
    for dict in [&json, &fdict] {
        let dict = dict.to_str().unwrap();
        let (ok, _, err) = featdict(&["label", dict, "0", "--set", "articles"]);
        assert!(ok, "{err}");
        let (_, out, _) = featdict(&["show", dict, "0", "--json"]);
        let f: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            f["labels"],
            serde_json::json!(["articles", "token:the", "pattern:article"]),
            "{dict}"
        );
        let (ok, _, err) = featdict(&["label", dict, "0", "--clear-manual"]);
        assert!(ok, "{err}");
        let (_, out, _) = featdict(&["show", dict, "0", "--json"]);
        let f: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            f["labels"],
            serde_json::json!(["token:the", "pattern:article"]),
            "{dict}"
        );
        // What the file does not hold shows as unknown, not as a measured 0.
        let (ok, out, err) = featdict(&["show", dict, "0"]);
        assert!(ok && out.contains("std –  min –"), "{out}{err}");
        let (ok, out, err) = featdict(&["compare", dict, "0", "1"]);
        assert!(ok, "{err}");
        let std_row = out
            .lines()
            .find(|l| l.starts_with("std activation"))
            .unwrap();
        assert_eq!(
            std_row.split_whitespace().collect::<Vec<_>>(),
            ["std", "activation", "–", "–"]
        );
        assert!(
            out.contains("token-profile cosine  – (no per-token counts stored)"),
            "{out}"
        );
        // Labeling the whole file has nothing to score labels by: refused, labels kept
        // (it used to write the file back with every label gone).
        let before = std::fs::read(dict).unwrap();
        let (ok, _, err) = featdict(&["label", dict]);
        assert!(!ok && err.contains("no per-token firing counts"), "{err}");
        assert!(err.contains("its labels are left as they are"), "{err}");
        assert_eq!(std::fs::read(dict).unwrap(), before, "{dict}");
    }
}

/// `polysemantic` reads a safetensors embedding matrix under any tensor name given with
/// `--embedding-tensor` (as `label` does): feature 0 fires on three animals and three
/// numbers whose embeddings lie along two orthogonal directions, feature 1 on the animals
/// only, so exactly feature 0 is polysemantic, with those two clusters.
#[test]
fn polysemantic_takes_the_embedding_tensor_name() {
    use feature_dictionary::analyze::weights::{write_safetensors, Matrix};
    let dir = tempfile::tempdir().unwrap();
    let vocab = ["cat", "dog", "wolf", "one", "two", "three", "the"];
    let mut data = Vec::new();
    for i in 0..vocab.len() {
        let mut v = [0f32; 4];
        v[if i < 3 {
            0
        } else if i < 6 {
            1
        } else {
            2
        }] = 1.0;
        v[3] = 0.1 * i as f32;
        data.extend(v);
    }
    let m = Matrix {
        rows: vocab.len(),
        cols: 4,
        data,
    };
    let emb = dir.path().join("emb.safetensors");
    write_safetensors(&emb, &[("my_embedding", &m)]).unwrap();
    let vocab_file = dir.path().join("vocab.json");
    std::fs::write(&vocab_file, serde_json::to_string(&vocab).unwrap()).unwrap();
    let seqs: Vec<Vec<&str>> = (0..4)
        .map(|s| (0..7).map(|i| vocab[(i + s) % 7]).collect())
        .collect();
    let mut vals = Vec::new();
    for t in seqs.iter().flatten() {
        let k = vocab.iter().position(|v| v == t).unwrap();
        vals.extend([
            if k < 6 { 1.0f32 } else { 0.0 },
            if k < 3 { 1.0 } else { 0.0 },
        ]);
    }
    let acts = dir.path().join("acts.npy");
    npy::write_f32(&acts, &[vals.len() / 2, 2], &vals).unwrap();
    let toks = dir.path().join("tokens.json");
    std::fs::write(&toks, serde_json::to_string(&seqs).unwrap()).unwrap();
    let dict = dir.path().join("d.json");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (ok, _, err) = featdict(&[
        "build",
        &s(&acts),
        "--tokens",
        &s(&toks),
        "--out",
        &s(&dict),
        "-q",
    ]);
    assert!(ok, "{err}");
    let base = [
        "polysemantic",
        &s(&dict),
        "--embeddings",
        &s(&emb),
        "--embedding-vocab",
        &s(&vocab_file),
    ];
    let (ok, _, err) = featdict(&base);
    assert!(!ok && err.contains("--embedding-tensor"), "{err}");
    let mut args = base.to_vec();
    args.extend(["--embedding-tensor", "my_embedding", "--json"]);
    let (ok, out, err) = featdict(&args);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["total"], 1, "{out}");
    assert_eq!(v["features"][0]["id"], 0);
    let mut clusters: Vec<Vec<String>> = v["features"][0]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let mut t: Vec<String> = serde_json::from_value(c["tokens"].clone()).unwrap();
            t.sort();
            t
        })
        .collect();
    clusters.sort();
    assert_eq!(
        clusters,
        vec![vec!["cat", "dog", "wolf"], vec!["one", "three", "two"]]
    );
    // A .fdict, read a feature at a time, finds the same.
    let fdict = imported(&dict);
    let mut args = args.clone();
    let fdict_arg = s(&fdict);
    args[1] = &fdict_arg;
    let (ok, fdict_out, err) = featdict(&args);
    assert!(ok, "{err}");
    assert_eq!(fdict_out, out);
}

#[test]
fn the_no_ngrams_note_does_not_deny_the_unigram_labels_it_adds() {
    let dir = tempfile::tempdir().unwrap();
    let (acts, toks) = write_inputs(dir.path());
    let dict = dir.path().join("plain.json").to_string_lossy().into_owned();
    let (ok, _, err) = featdict(&["build", &acts, "--tokens", &toks, "--out", &dict]);
    assert!(ok, "{err}");
    let out = dir.path().join("l.json").to_string_lossy().into_owned();
    let (ok, stdout, err) = featdict(&[
        "label",
        &dict,
        "--strategies",
        "ngram_analysis",
        "--out",
        &out,
    ]);
    assert!(ok, "{err}");
    // Unigram labels are written (feature 0 fires exactly on "cat")...
    let d: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let labels = &d["feature_set"]["features"]["0"]["labels"];
    assert_eq!(labels[0], "ngram:cat", "{labels}");
    assert!(stdout.contains("ngram_analysis"), "{stdout}");
    // ...so the note must not say the strategy adds nothing.
    assert!(
        err.contains("no n-gram counts") && !err.contains("adds nothing"),
        "{err}"
    );
    // Beside token_frequency it really adds nothing, and says so.
    let (ok, _, err) = featdict(&[
        "label",
        &dict,
        "--strategies",
        "token_frequency,ngram_analysis",
        "--out",
        &out,
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("adds nothing"), "{err}");
    // So do the defaults (token_frequency and ngram_analysis), which said nothing of it.
    let (ok, _, err) = featdict(&["label", &dict, "--out", &out]);
    assert!(ok, "{err}");
    assert!(
        err.contains("no n-gram counts (build with --ngrams, e.g. --ngrams 4096); the default ngram_analysis adds nothing"),
        "{err}"
    );
}

/// `label` on a `.fdict` without `--out` rewrites, in the file itself, only what labeling
/// changes; the result reads exactly as a new file written with `--out`: the same features,
/// config and statistics, and the same label and full-text search hits. `--set` and
/// `--clear-manual` edit the one feature in place too, description included.
#[test]
fn labeling_a_fdict_in_place_equals_writing_a_new_one() {
    use feature_dictionary::store::{self, fdict::FdictReader};
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let (acts, toks) = write_inputs(dir.path());
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let (in_place, copy, rewritten) = (path("a.fdict"), path("b.fdict"), path("c.fdict"));
    let (ok, _, err) = featdict(&[
        "build", &acts, "--tokens", &toks, "--out", &in_place, "--ngrams", "64", "-q",
    ]);
    assert!(ok, "{err}");
    std::fs::copy(&in_place, &copy).unwrap();
    let inode = |p: &str| std::fs::metadata(p).unwrap().ino();
    let before = inode(&in_place);

    let options = [
        "--strategies",
        "token_frequency,ngram_analysis,pattern_matching",
        "--min-confidence",
        "0.2",
    ];
    let (ok, out, err) = featdict(&[&["label", &in_place][..], &options].concat());
    assert!(ok, "{err}");
    assert!(out.contains("labeled 3 of 3 features"), "{out}");
    assert!(out.contains("rewrote the labels of 3 of them in"), "{out}");
    assert_eq!(inode(&in_place), before, "the file itself was written");
    let (ok, _, err) = featdict(&[&["label", &copy, "--out", &rewritten][..], &options].concat());
    assert!(ok, "{err}");
    // A .json is labeled in memory: the same labels as the streamed .fdict labelings.
    let (ok, _, err) =
        featdict(&[&["label", &copy, "--out", &path("d.json")][..], &options].concat());
    assert!(ok, "{err}");
    let in_memory = store::load(Path::new(&path("d.json"))).unwrap();

    let (a, c) = (
        store::load(Path::new(&in_place)).unwrap(),
        store::load(Path::new(&rewritten)).unwrap(),
    );
    assert_eq!(a.config, c.config);
    assert_eq!(a.feature_set, c.feature_set);
    assert_eq!(a.config, in_memory.config);
    assert_eq!(a.feature_set, in_memory.feature_set);
    assert_eq!(a.get(1).unwrap().labels[0], "ngram:river bank");
    let stats = |p: &str| {
        FdictReader::open(Path::new(p))
            .unwrap()
            .statistics()
            .clone()
    };
    assert_eq!(stats(&in_place), stats(&rewritten));
    assert_eq!(stats(&in_place), a.statistics());
    let search = |p: &str, how: &str, what: &str| {
        let (ok, out, err) = featdict(&["search", p, how, what, "--json"]);
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["hits"].clone()
    };
    for (how, what) in [("--label", "river"), ("--text", "bank"), ("--label", "cat")] {
        let hits = search(&in_place, how, what);
        assert!(!hits.as_array().unwrap().is_empty(), "{how} {what}");
        assert_eq!(hits, search(&rewritten, how, what), "{how} {what}");
    }

    // Labeling again with the same options changes nothing, so rewrites nothing.
    let (ok, out, err) = featdict(&[&["label", &in_place, "--json"][..], &options].concat());
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rewritten_in_place"], 0, "{v}");

    let (ok, out, err) = featdict(&["label", &in_place, "0", "--set", "felines"]);
    assert!(ok, "{err}");
    assert!(out.contains("set manual label \"felines\""), "{out}");
    assert_eq!(inode(&in_place), before);
    let f = store::load(Path::new(&in_place)).unwrap();
    let f0 = f.get(0).unwrap();
    assert_eq!(f0.labels[0], "felines");
    assert!(f0.description.contains("felines"), "{}", f0.description);
    assert_eq!(search(&in_place, "--label", "FELINE")[0]["id"], 0);
    assert_eq!(stats(&in_place), f.statistics());
    let (ok, _, err) = featdict(&["label", &in_place, "0", "--clear-manual"]);
    assert!(ok, "{err}");
    assert_eq!(store::load(Path::new(&in_place)).unwrap(), a);
    assert!(search(&in_place, "--label", "feline")
        .as_array()
        .unwrap()
        .is_empty());
    let (ok, _, err) = featdict(&["label", &in_place, "7", "--set", "x"]);
    assert!(!ok && err.contains("feature 7 is not in"), "{err}");
}

/// `--clear-manual` on a feature without manual labels changes nothing and writes nothing:
/// it used to give an original-library file's bare labels guessed details and replace its
/// description, which could not be had back.
#[test]
fn clearing_no_manual_label_leaves_the_file_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../feature-dictionary/tests/fixtures/original/no_token_counts.json");
    let json = dir.path().join("orig.json");
    std::fs::copy(&fixture, &json).unwrap();
    let before = std::fs::read(&json).unwrap();
    let (ok, out, err) = featdict(&["label", json.to_str().unwrap(), "2", "--clear-manual"]);
    assert!(ok, "{err}");
    assert!(out.contains("feature 2 has no manual label"), "{out}");
    assert!(out.contains("left as it was"), "{out}");
    assert_eq!(std::fs::read(&json).unwrap(), before);
    // The same in place in a .fdict: not a byte changes.
    let fdict = imported(&json);
    let before = std::fs::read(&fdict).unwrap();
    let (ok, out, err) = featdict(&[
        "label",
        fdict.to_str().unwrap(),
        "2",
        "--clear-manual",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["changed"], false);
    assert_eq!(std::fs::read(&fdict).unwrap(), before);
    // A manual label set, then cleared, gives the feature back as the file had it: its bare
    // labels with no made-up strategy or scores, its confidence and its description.
    let original = feature_dictionary::store::load(&json).unwrap();
    for dict in [&json, &fdict] {
        let d = dict.to_str().unwrap();
        let (ok, _, err) = featdict(&["label", d, "2", "--set", "mine"]);
        assert!(ok, "{err}");
        let set = feature_dictionary::store::load(dict).unwrap();
        let f = set.get(2).unwrap();
        assert_eq!(f.labels, ["mine", "token:the"]);
        assert_eq!(
            f.metadata.label_details.len(),
            1,
            "{:?}",
            f.metadata.label_details
        );
        let (ok, _, err) = featdict(&["label", d, "2", "--clear-manual"]);
        assert!(ok, "{err}");
        let back = feature_dictionary::store::load(dict).unwrap();
        assert_eq!(back.get(2), original.get(2), "{d}");
    }
}

/// A dictionary labeled with `--embeddings` stores semantic_clustering among its strategies;
/// every later `label` without embeddings failed on it. It now leaves that strategy out and
/// says so; asking for it outright without embeddings is refused naming the file.
#[test]
fn a_semantic_strategy_stored_by_an_earlier_run_does_not_stop_labeling() {
    let dir = tempfile::tempdir().unwrap();
    let (acts, toks) = write_inputs(dir.path());
    let dict = dir.path().join("d.json").to_string_lossy().into_owned();
    let (ok, _, err) = featdict(&["build", &acts, "--tokens", &toks, "--out", &dict, "-q"]);
    assert!(ok, "{err}");
    let mut d: serde_json::Value = serde_json::from_slice(&std::fs::read(&dict).unwrap()).unwrap();
    d["config"]["labeling"]["strategies"] =
        serde_json::json!(["token_frequency", "semantic_clustering"]);
    std::fs::write(&dict, d.to_string()).unwrap();
    let (ok, out, err) = featdict(&["label", &dict]);
    assert!(ok, "{err}");
    assert!(
        err.contains("labeled with semantic_clustering before"),
        "{err}"
    );
    assert!(out.contains("token_frequency"), "{out}");
    let (ok, _, err) = featdict(&["label", &dict, "--strategies", "semantic_clustering"]);
    assert!(!ok);
    assert!(
        err.contains("d.json") && err.contains("needs token embeddings"),
        "{err}"
    );
}

/// `label DICT ID` labels that one feature alone, the same way whether DICT is a `.json`
/// (in memory), a `.fdict` in place, or a `.fdict` labeled into a new `.fdict`; the other
/// features and the dictionary's labeling config stay as they were.
#[test]
fn labeling_one_feature_is_the_same_in_every_format() {
    use feature_dictionary::store;
    let dir = tempfile::tempdir().unwrap();
    let (acts, toks) = write_inputs(dir.path());
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let built = path("built.fdict");
    let (ok, _, err) = featdict(&["build", &acts, "--tokens", &toks, "--out", &built, "-q"]);
    assert!(ok, "{err}");
    let original = store::load(Path::new(&built)).unwrap();
    assert!(original.features().all(|f| f.labels.is_empty()));
    let json = path("d.json");
    store::save(&original, Path::new(&json)).unwrap();
    let in_place = path("in_place.fdict");
    std::fs::copy(&built, &in_place).unwrap();
    let copy = path("copy.fdict");
    let strategies = ["--strategies", "token_frequency,pattern_matching"];
    for args in [
        vec!["label", &json, "0"],
        vec!["label", &in_place, "0"],
        vec!["label", &built, "0", "--out", &copy],
    ] {
        let args = [&args[..], &strategies].concat();
        let (ok, out, err) = featdict(&args);
        assert!(ok, "{args:?}: {err}");
        assert!(out.contains("labeled 1 of 1 features"), "{args:?}: {out}");
        assert!(out.contains("#0: "), "{args:?}: {out}");
    }
    let labeled = store::load(Path::new(&json)).unwrap();
    assert_eq!(labeled.get(0).unwrap().labels[0], "token:cat");
    let mut expected = original.clone();
    expected
        .feature_set
        .features
        .insert(0, labeled.get(0).unwrap().clone());
    assert_eq!(labeled, expected);
    for fdict in [&in_place, &copy] {
        assert_eq!(store::load(Path::new(fdict)).unwrap(), expected, "{fdict}");
    }
    // The source of --out is left as it was.
    assert_eq!(store::load(Path::new(&built)).unwrap(), original);
    for dict in [&json, &in_place] {
        let (ok, _, err) = featdict(&["label", dict, "7"]);
        assert!(!ok && err.contains("feature 7 is not in"), "{dict}: {err}");
    }

    // A manual label into another .fdict: the copy gets it, the source stays as it was, and
    // a label refused leaves no output.
    let manual = path("manual.fdict");
    let (ok, out, err) = featdict(&["label", &built, "1", "--set", "rivers", "--out", &manual]);
    assert!(ok, "{err}");
    assert!(out.contains("set manual label \"rivers\""), "{out}");
    let mut expected = original.clone();
    let f1 = expected.feature_set.features.get_mut(&1).unwrap();
    feature_dictionary::label::manual::set_manual_label(f1, "rivers");
    feature_dictionary::label::manual::describe_after_edit(
        f1,
        original.feature_set.total_tokens_processed,
    );
    assert_eq!(store::load(Path::new(&manual)).unwrap(), expected);
    assert_eq!(store::load(Path::new(&built)).unwrap(), original);
    let refused = path("refused.fdict");
    let long = "x".repeat(500);
    let (ok, _, err) = featdict(&["label", &built, "1", "--set", &long, "--out", &refused]);
    assert!(!ok && err.contains("200"), "{err}");
    assert!(!Path::new(&refused).exists());
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn labeling_settings_are_shown_saved_and_the_next_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let (acts, toks) = write_inputs(dir.path());
    let dict = dir.path().join("d.fdict").to_string_lossy().into_owned();
    let (ok, _, err) = featdict(&["build", &acts, "--tokens", &toks, "--out", &dict, "-q"]);
    assert!(ok, "{err}");
    let (ok, _, err) = featdict(&["label", &dict, "--max-labels", "0"]);
    assert!(!ok && err.contains("--max-labels"), "{err}");
    let (ok, out, err) = featdict(&[
        "label",
        &dict,
        "--max-labels",
        "1",
        "--min-confidence",
        "0.2",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("settings: token_frequency,ngram_analysis, min confidence 0.2, at most 1 labels, min firings 3 (saved as the dictionary's labeling config"),
        "{out}"
    );
    let (ok, out, err) = featdict(&["label", &dict]);
    assert!(ok, "{err}");
    assert!(
        out.contains("min confidence 0.2, at most 1 labels"),
        "{out}"
    );
}
