//! Integration tests on the bundled real demo dataset (data/demo).

use std::path::{Path, PathBuf};
use std::process::Command;

fn demo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/demo")
}

/// `featdict demo` end to end: every token of the cache is accounted for, TopK's L0 of 32
/// shows in the counts, and the features it calls interesting carry labels whose precision
/// and recall are real fractions backed by examples.
/// Runs `featdict demo` on the bundled data, writing `out`, with `extra` options.
fn run_demo(out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_featdict"))
        .args(["demo", "--data"])
        .arg(demo_dir())
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn demo_builds_labels_and_summarizes_real_features() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo.json");
    let run = run_demo(&out, &["--json"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let st = &v["statistics"];
    assert_eq!(st["total_tokens_processed"], 102_400);
    assert_eq!(st["total_features"], 4608);
    // TopK with k = 32: 32 latents per token, all above the 0.01 threshold but a few.
    let mean_freq = st["mean_activation_frequency"].as_f64().unwrap();
    let l0 = mean_freq * 4608.0;
    assert!((31.5..=32.0).contains(&l0), "mean L0 {l0}");
    let interesting = v["interesting_features"].as_array().unwrap();
    assert_eq!(interesting.len(), 10);
    for f in interesting {
        let label = &f["label"];
        let (p, r) = (
            label["precision"].as_f64().unwrap(),
            label["recall"].as_f64().unwrap(),
        );
        assert!(p > 0.5 && p <= 1.0 && r > 0.5 && r <= 1.0, "{f}");
        assert!(f["activation_count"].as_u64().unwrap() >= 20);
        assert_eq!(f["top_examples"].as_array().unwrap().len(), 3);
    }

    // The written dictionary reads back with the same numbers.
    let dict = feature_dictionary::store::load(&out).unwrap();
    assert_eq!(dict.num_features(), 4608);
    assert_eq!(dict.config.model_name, "SmolLM2-135M-Instruct");
    let total: u64 = dict.features().map(|f| f.activation_count).sum();
    assert!((total as f64 / 102_400.0 - l0).abs() < 1e-9);
    // Every feature stores its 10 nearest decoder directions, as `similar --sae` ranks them.
    let dirs = feature_dictionary::analyze::similar::Directions::load(
        &demo_dir().join("sae/sae_weights.safetensors"),
        "W_dec",
        Some(4608),
    )
    .unwrap();
    for id in [0u64, 34, 4607] {
        let stored = feature_dictionary::store::fdict::neighbours_of(
            dict.get(id).unwrap(),
            feature_dictionary::analyze::similar::SIMILAR_KEY,
        );
        let want = dirs.similar_to(id as usize, 10).unwrap().similar;
        assert_eq!(stored.len(), 10);
        for ((j, c), (wj, wc)) in stored.iter().zip(&want) {
            assert_eq!(*j, *wj as u64, "feature {id}");
            assert!((c - *wc as f64).abs() < 1e-6, "feature {id}: {c} vs {wc}");
        }
    }

    // A label written while browsing (`--serve` keeps the dictionary as a sibling .fdict)
    // survives the next demo run, which rebuilds everything.
    let fdict = out.with_extension("fdict");
    feature_dictionary::store::save(&dict, &fdict).unwrap();
    feature_dictionary::store::fdict::FdictReader::open_rw(&fdict)
        .unwrap()
        .add_manual_label(7, "written in the browser")
        .unwrap();
    // This run also serves: with --json its stdout is JSON Lines (the summary, then the
    // address once listening), parseable line by line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_featdict"))
        .args(["demo", "--data"])
        .arg(demo_dir())
        .arg("--out")
        .arg(&out)
        .args(["--json", "--serve", "--addr", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let summary: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let listening: serde_json::Value =
        serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    child.kill().unwrap();
    let stopped = child.wait_with_output().unwrap();
    assert_eq!(summary["statistics"]["total_features"], 4608);
    assert!(listening["url"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:"));
    assert_eq!(listening["dict"], fdict.to_str().unwrap());
    assert!(String::from_utf8_lossy(&stopped.stderr).contains("kept 1 manual label(s)"));
    let rebuilt = feature_dictionary::store::load(&out).unwrap();
    assert_eq!(rebuilt.get(7).unwrap().labels[0], "written in the browser");
}

/// The delphi cache and a dense re-encoding of its first sequences from the shipped float16
/// residuals agree: the SAE in data/demo reproduces the cached latents.
#[test]
fn demo_sae_reproduces_the_cached_latents() {
    let dir = tempfile::tempdir().unwrap();
    let d = demo_dir();
    let cache_dict = dir.path().join("cache.json");
    let encoded = dir.path().join("encoded.safetensors");
    let run = |args: Vec<std::ffi::OsString>| {
        let o = Command::new(env!("CARGO_BIN_EXE_featdict"))
            .args(&args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    // Encode the 256 shipped residual rows (4 sequences of 64) with the shipped SAE.
    run(vec![
        "encode".into(),
        d.join("residuals_sample.npy").into(),
        "--sae".into(),
        d.join("sae").into(),
        "--seq-len".into(),
        "64".into(),
        "--f32".into(),
        "--out".into(),
        encoded.clone().into(),
    ]);
    use feature_dictionary::ingest::delphi::{DelphiCache, DelphiSource};
    use feature_dictionary::ingest::{ActivationSource, BatchValues, TokenSequences};
    let first_rows = |cache: DelphiCache| -> Vec<(usize, u32, f32)> {
        let dummy: Vec<Vec<String>> = (0..cache.token_shape().map_or(4, |(s, _)| s as usize))
            .map(|_| vec!["t".to_string(); 64])
            .collect();
        let mut src = DelphiSource::new(cache, TokenSequences::from_strings(&dummy), 256).unwrap();
        let batch = src.next_batch().unwrap().unwrap();
        let BatchValues::Sparse(sp) = &batch.values else {
            panic!("delphi batches are sparse")
        };
        let mut out = Vec::new();
        for row in 0..256 {
            for j in sp.indptr[row]..sp.indptr[row + 1] {
                out.push((row, sp.indices[j], sp.values[j]));
            }
        }
        out
    };
    let a = first_rows(DelphiCache::open(&encoded).unwrap());
    let b = first_rows(DelphiCache::open(&d.join("latents/blocks.9.hook_resid_post")).unwrap());
    assert_eq!(a.len(), 4 * 64 * 32);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((x.0, x.1), (y.0, y.1));
        // The cache stores float16; this encode keeps float32.
        assert!(
            (x.2 - y.2).abs() <= 2e-3 * y.2.abs().max(1.0),
            "{x:?} vs {y:?}"
        );
    }
    let _ = cache_dict;
}

/// An --out inside the demo data (the tokenizer, the SAE's config, a new file among the
/// latents) is refused before anything is written: every file there is an input.
#[test]
fn demo_refuses_to_write_inside_its_data() {
    let data = demo_dir();
    let tokenizer = data.join("tokenizer.json");
    let before = std::fs::read(&tokenizer).unwrap();
    for out in [
        tokenizer.clone(),
        data.join("sae/cfg.json"),
        data.join("new-dictionary.json"),
    ] {
        let run = run_demo(&out, &[]);
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{}", out.display());
        assert!(
            err.contains("inside the demo data directory") && err.contains(out.to_str().unwrap()),
            "{err}"
        );
    }
    assert!(!data.join("new-dictionary.json").exists());
    assert_eq!(std::fs::read(&tokenizer).unwrap(), before);
}

/// `build` of a delphi cache takes the model and the layer the cache says it holds (its
/// config.json and its hookpoint directory) unless the options say otherwise; they were
/// stored as "" and 0, a layer that looked measured.
#[test]
fn build_of_a_delphi_cache_keeps_its_model_and_layer() {
    let dir = tempfile::tempdir().unwrap();
    let cache = demo_dir().join("latents/blocks.9.hook_resid_post");
    let tokenizer = demo_dir().join("tokenizer.json");
    let stats = |extra: &[&str]| -> serde_json::Value {
        let out = dir.path().join("d.json");
        let built = Command::new(env!("CARGO_BIN_EXE_featdict"))
            .arg("build")
            .arg(&cache)
            .arg("--tokenizer")
            .arg(&tokenizer)
            .arg("--out")
            .arg(&out)
            .arg("-q")
            .args(extra)
            .output()
            .unwrap();
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
        let shown = Command::new(env!("CARGO_BIN_EXE_featdict"))
            .arg("stats")
            .arg(&out)
            .arg("--json")
            .output()
            .unwrap();
        serde_json::from_slice(&shown.stdout).unwrap()
    };
    let v = stats(&[]);
    assert_eq!(
        (&v["model_name"], &v["layer"]),
        (&"SmolLM2-135M-Instruct".into(), &9.into())
    );
    let v = stats(&["--layer", "0", "--model-name", "other"]);
    assert_eq!(
        (&v["model_name"], &v["layer"]),
        (&"other".into(), &0.into())
    );
}
