//! Compatibility with the original Python library's saved JSON, both ways.

use feature_dictionary::build::{build, BuildOptions};
use feature_dictionary::ingest::{npy, DenseSource, TokenSequences};
use feature_dictionary::model::{DictionaryConfig, FeatureType};
use serde_json::Value;

/// Every key the original's `FeatureDictionary.load` → `FeatureSet.from_dict` →
/// `Feature.from_dict` → `FeatureActivation.from_dict` indexes without a default, with the
/// types its code then relies on (`int(key)`, `FeatureType(value)`).
#[test]
fn our_json_has_what_the_original_loader_requires() {
    let dir = tempfile::tempdir().unwrap();
    let acts = dir.path().join("a.npy");
    let mut data = vec![0f32; 6 * 3];
    data[0] = 1.5;
    data[4] = 0.5;
    data[3 * 3 + 1] = 2.0;
    npy::write_f32(&acts, &[6, 3], &data).unwrap();
    let tokens = TokenSequences::from_strings(&[vec!["a", "b", "c"], vec!["d", "e", "f"]]);
    let cfg = DictionaryConfig {
        model_name: "m".into(),
        ..Default::default()
    };
    let mut src = DenseSource::new(npy::open(&acts).unwrap(), tokens, 5, 1 << 20).unwrap();
    let dict = build(&mut src, cfg, &BuildOptions::default(), &mut |_| {}).unwrap();
    let path = dir.path().join("d.json");
    feature_dictionary::store::save(&dict, &path).unwrap();
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();

    assert!(v["config"].is_object() && v["statistics"].is_object());
    let fs = &v["feature_set"];
    assert!(fs["layer"].is_i64());
    assert_eq!(fs["model_name"], "m");
    let features = fs["features"].as_object().unwrap();
    assert_eq!(features.len(), 3, "dead feature 2 is kept");
    for (key, f) in features {
        let id: u64 = key.parse().expect("int(key)");
        assert_eq!(f["id"].as_u64(), Some(id));
        assert!(f["dimension"].is_u64());
        let t = f["feature_type"].as_str().unwrap();
        assert!(FeatureType::parse(t).is_some(), "FeatureType({t:?})");
        for key in [
            "bias",
            "activation_count",
            "mean_activation",
            "max_activation",
            "activation_frequency",
            "confidence",
        ] {
            assert!(f[key].is_number(), "{key}");
        }
        assert!(
            f["labels"].is_array() && f["description"].is_string() && f["metadata"].is_object()
        );
        for a in f["top_activations"].as_array().unwrap() {
            assert!(a["feature_id"].is_u64() && a["token"].is_string());
            assert!(a["position"].is_u64() && a["activation"].is_number());
            assert!(
                a["context"].is_string()
                    && a["context_tokens"].is_array()
                    && a["metadata"].is_object()
            );
        }
    }
    let stats = &v["statistics"];
    for key in [
        "total_features",
        "active_features",
        "dead_features",
        "labeled_features",
        "mean_activation_frequency",
        "total_tokens_processed",
    ] {
        assert!(stats[key].is_number(), "{key}");
    }
    assert_eq!(stats["type_distribution"]["dead"], 1);
}

/// A file as the original writes it (indent=2, no metadata of ours) reads back with its
/// values; the number of features comes from the ids when the config does not say.
#[test]
fn reads_a_file_written_by_the_original() {
    let text = r#"{
  "config": {
    "extraction": {"activation_threshold": 0.0, "min_activation": 0.01, "max_examples_per_feature": 20,
                   "context_window": 5, "batch_size": 32, "min_activation_count": 1,
                   "include_dead_features": false, "collect_context": true, "collect_positions": true},
    "labeling": {"min_token_frequency": 3, "max_labels": 5, "patterns": {}, "min_confidence": 0.3,
                 "ngram_sizes": [1, 2, 3], "strategies": ["token_frequency", "ngram_analysis"]},
    "name": "feature_dictionary", "model_name": "", "sae_name": "", "layer": 0,
    "auto_save": false, "save_path": null
  },
  "feature_set": {
    "layer": 5,
    "features": {
      "7": {"id": 7, "dimension": 768, "bias": 0.0, "activation_count": 2, "mean_activation": 1.25,
            "max_activation": 1.5, "activation_frequency": 0.5,
            "top_activations": [
              {"feature_id": 7, "token": "hello", "position": 1, "activation": 1.5, "context": "",
               "context_tokens": ["hi", "hello"], "metadata": {}},
              {"feature_id": 7, "token": "hi", "position": 0, "activation": 1.0, "context": "",
               "context_tokens": ["hi", "hello"], "metadata": {}}],
            "labels": ["token:hello"], "description": "A moderate feature.", "confidence": 0.5,
            "feature_type": "dense", "metadata": {}}
    },
    "total_tokens_processed": 4, "model_name": "gpt2", "sae_name": "sae_layer5", "metadata": {}
  },
  "statistics": {"total_features": 1}
}"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orig.json");
    std::fs::write(&path, text).unwrap();
    let d = feature_dictionary::store::load(&path).unwrap();
    assert_eq!(d.num_features(), 8);
    assert_eq!(d.config.model_name, "gpt2");
    assert_eq!(d.feature_set.layer, 5);
    let f = d.get(7).unwrap();
    assert_eq!(
        (f.activation_count, f.dimension, f.feature_type),
        (2, 768, FeatureType::Dense)
    );
    assert_eq!(f.top_activations[1].token, "hi");
    assert_eq!(f.labels, vec!["token:hello"]);
    // And it survives our writer, its examples written as they were read.
    let again = dir.path().join("again.json");
    feature_dictionary::store::save(&d, &again).unwrap();
    assert_eq!(
        feature_dictionary::store::load(&again).unwrap().feature_set,
        d.feature_set
    );
    let read: Value = serde_json::from_str(text).unwrap();
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&again).unwrap()).unwrap();
    assert_eq!(
        written["feature_set"]["features"]["7"]["top_activations"],
        read["feature_set"]["features"]["7"]["top_activations"]
    );
}

/// The original's examples have no `context_start`: its window is clipped at the sequence
/// start, so it is inferred from where the firing token sits (nearest the window's centre);
/// reading it as 0 pointed every consumer (n-gram labels, the highlighted token) elsewhere.
#[test]
fn examples_of_the_original_get_their_context_start_inferred() {
    let ex = |pos: u32, ctx: &[&str], tok: &str| {
        serde_json::json!({"feature_id": 1, "token": tok, "position": pos, "activation": 1.0,
                           "context": "", "context_tokens": ctx, "metadata": {}})
    };
    let text = serde_json::json!({
        "config": {},
        "feature_set": {"layer": 0, "features": {"1": {
            "id": 1, "dimension": 4, "activation_count": 4, "feature_type": "dense",
            "top_activations": [
                ex(10, &["a", "b", "c", "d", "e", "York", "f", "g", "h", "i", "j"], "York"),
                ex(2, &["x", "the", "York", "y", "z", "w", "v", "u"], "York"),
                ex(7, &["York", "in", "York", "k"], "York"),
                ex(3, &["p", "q"], "absent"),
            ],
            "metadata": {}}}, "total_tokens_processed": 20}
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orig.json");
    std::fs::write(&path, text.to_string()).unwrap();
    let d = feature_dictionary::store::load(&path).unwrap();
    let starts: Vec<u32> = d
        .get(1)
        .unwrap()
        .top_activations
        .iter()
        .map(|a| a.metadata.context_start)
        .collect();
    // The last example's context does not hold its token: no start puts it there, so it is
    // placed nowhere (a start past its position) rather than on another token.
    assert_eq!(starts, vec![5, 0, 5, 4]);
    let examples = &d.get(1).unwrap().top_activations;
    for a in &examples[..3] {
        assert_eq!(
            a.context_tokens[a.token_index_in_context().unwrap()],
            "York"
        );
    }
    assert_eq!(examples[3].token_index_in_context(), None);
    assert_eq!(examples[3].shown_context().1, None);
    // Written back, that start would be refused on reading; it is left out instead, so the
    // file reads back the same, as JSON and as .fdict.
    for name in ["again.json", "again.fdict"] {
        let again = dir.path().join(name);
        feature_dictionary::store::save(&d, &again).unwrap();
        let back = feature_dictionary::store::load(&again).unwrap();
        assert_eq!(back.feature_set, d.feature_set, "{name}");
    }
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("again.json")).unwrap())
            .unwrap();
    let starts: Vec<Option<u64>> = written["feature_set"]["features"]["1"]["top_activations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["metadata"]["context_start"].as_u64())
        .collect();
    // Every start here is the inferred one, which reading fills in again: left out, the
    // examples are written back as the file gave them.
    assert_eq!(starts, vec![None, None, None, None]);
    assert_eq!(
        written["feature_set"]["features"]["1"]["top_activations"],
        text["feature_set"]["features"]["1"]["top_activations"]
    );
    // A Neuronpedia export says it does not know rather than point at another token; the
    // activations of the other context tokens, which it must give, are counted as made up.
    let exported =
        feature_dictionary::store::neuronpedia::write(&d, &dir.path().join("np.json"), None)
            .unwrap();
    assert_eq!(exported.features, 1);
    assert_eq!(exported.examples_without_context_activations, 4);
    let corpus = feature_dictionary::store::neuronpedia::Corpus {
        total_tokens: 20,
        total_sequences: None,
    };
    let np = feature_dictionary::store::neuronpedia::feature_json(d.get(1).unwrap(), &corpus);
    let at: Vec<Value> = np["activations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["qualifying_token_index"].clone())
        .collect();
    assert_eq!(at, vec![5.into(), 2.into(), 2.into(), Value::Null]);
    // Our own files say where the context starts; that is kept as written.
    let ours = serde_json::json!({"feature_id": 1, "token": "b", "position": 4, "activation": 1.0,
        "context_tokens": ["b", "b"], "metadata": {"context_start": 3}});
    let a: feature_dictionary::model::FeatureActivation = serde_json::from_value(ours).unwrap();
    assert_eq!(a.metadata.context_start, 3);
}

/// A firing token repeated in its context: the original's window (`tokens[p − w ..= p + w]`,
/// clipped at both sequence edges) puts it at `min(position, w)`. With the window of
/// the file's configuration that index is exact; without it, a repeat the window could not
/// have put there is never taken — here, near the end of a sequence, the context is short
/// and its centre points at the wrong repeat.
#[test]
fn a_repeated_firing_token_is_placed_where_the_window_puts_it() {
    let ex = |ctx: &[&str]| {
        serde_json::json!({"feature_id": 1, "token": "York", "position": 100, "activation": 1.0,
                           "context": "", "context_tokens": ctx, "metadata": {}})
    };
    // Context tokens 95..=101 of a sequence that ends at 101: the firing token is index 5.
    let impossible_repeat = ex(&["a", "b", "York", "c", "d", "York", "e"]);
    let possible_repeat = ex(&["a", "b", "c", "York", "d", "York", "e"]);
    let file = |config: Option<Value>| {
        let mut text = serde_json::json!({
            "feature_set": {"layer": 0, "features": {"1": {
                "id": 1, "dimension": 4, "activation_count": 2, "feature_type": "dense",
                "top_activations": [impossible_repeat, possible_repeat], "metadata": {}}},
                "total_tokens_processed": 200}
        });
        if let Some(config) = config {
            text["config"] = config;
        }
        text.to_string()
    };
    let dir = tempfile::tempdir().unwrap();
    let starts = |text: String| -> Vec<u32> {
        let path = dir.path().join("orig.json");
        std::fs::write(&path, text).unwrap();
        let d = feature_dictionary::store::load(&path).unwrap();
        let examples = &d.get(1).unwrap().top_activations;
        examples.iter().map(|a| a.metadata.context_start).collect()
    };
    // No configuration: the repeat at index 2 would leave 4 tokens after a window of 2; the
    // one at index 3 is possible (a window of 3) and nearer the centre, so it is taken.
    assert_eq!(starts(file(None)), vec![95, 97]);
    // The original's configuration (window 5): both exact.
    let config = serde_json::json!({"extraction": {"context_window": 5}});
    assert_eq!(starts(file(Some(config))), vec![95, 95]);
    // A window that does not put the token where the file says leaves the inference.
    let config = serde_json::json!({"extraction": {"context_window": 4}});
    assert_eq!(starts(file(Some(config))), vec![95, 97]);
}
