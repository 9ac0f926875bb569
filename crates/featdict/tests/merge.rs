//! Partial dictionaries (`build --out X.fdpart`) and `featdict merge`: shards of a corpus
//! built apart merge into what one build over the whole corpus writes.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_clean_error, assert_success, build, featdict, s};
use feature_dictionary::ingest::npy;
use serde_json::Value;

/// A deterministic corpus: `lengths[i]` tokens in sequence `i` (empty ones included), `f`
/// features firing on ~15 % of tokens with values spread over several decades, and tokens
/// from a small vocabulary of which each shard sees a different part.
struct Corpus {
    lengths: Vec<usize>,
    f: usize,
    values: Vec<f32>,
    tokens: Vec<Vec<String>>,
}

fn corpus() -> Corpus {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let lengths: Vec<usize> = (0..30)
        .map(|i| {
            if i % 7 == 3 {
                0
            } else {
                (next() % 70) as usize
            }
        })
        .collect();
    let f = 24;
    let rows: usize = lengths.iter().sum();
    let values = (0..rows * f)
        .map(|_| {
            let r = next();
            if r % 100 < 15 {
                // 0.01 .. ~40, quantized so that ties between examples occur.
                ((r >> 20) % 4000) as f32 / 100.0 + 0.01
            } else {
                0.0
            }
        })
        .collect();
    let mut seq = 0;
    let tokens = lengths
        .iter()
        .map(|&n| {
            seq += 1;
            (0..n)
                .map(|_| {
                    // Later sequences draw from later words, so shards add new tokens.
                    let w = (next() % 12) as usize + seq / 3;
                    if w.is_multiple_of(5) {
                        format!(" w{w}")
                    } else {
                        format!("w{w}")
                    }
                })
                .collect()
        })
        .collect();
    Corpus {
        lengths,
        f,
        values,
        tokens,
    }
}

impl Corpus {
    /// Writes sequences `range` as ACTS.npy + TOKENS.json under `dir` named `name`.
    fn write(&self, dir: &Path, name: &str, range: std::ops::Range<usize>) -> (PathBuf, PathBuf) {
        let first_row: usize = self.lengths[..range.start].iter().sum();
        let rows: usize = self.lengths[range.clone()].iter().sum();
        let acts = dir.join(format!("{name}.npy"));
        let tokens = dir.join(format!("{name}.json"));
        npy::write_f32(
            &acts,
            &[rows, self.f],
            &self.values[first_row * self.f..(first_row + rows) * self.f],
        )
        .unwrap();
        std::fs::write(&tokens, serde_json::to_vec(&self.tokens[range]).unwrap()).unwrap();
        (acts, tokens)
    }
}

const OPTIONS: [&str; 6] = [
    "--top-k",
    "4",
    "--samples-per-group",
    "1",
    "--ngrams",
    "4096",
];

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Asserts `a == b`, except that numbers under keys derived from sums (means, standard
/// deviations) may differ in their last bits: shards add their sums in another order.
fn assert_same(a: &Value, b: &Value, path: &str) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: Vec<_> = x.keys().collect();
            assert_eq!(keys, y.keys().collect::<Vec<_>>(), "keys at {path}");
            for k in keys {
                assert_same(&x[k], &y[k], &format!("{path}/{k}"));
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "length at {path}");
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                assert_same(p, q, &format!("{path}[{i}]"));
            }
        }
        (Value::Number(x), Value::Number(y))
            if path.ends_with("mean_activation") || path.ends_with("std_activation") =>
        {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-12 * x.abs().max(1.0),
                "{path}: {x} vs {y}"
            );
        }
        _ => assert_eq!(a, b, "at {path}"),
    }
}

#[test]
fn shards_merged_equal_one_build_over_the_whole_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let c = corpus();
    let (acts, tokens) = c.write(dir.path(), "all", 0..30);
    let whole = dir.path().join("whole.json");
    assert_success(&build(&acts, &tokens, &whole, &OPTIONS));

    // Three shards; the first ends with an empty sequence (index 10), which still counts
    // when numbering the next shard.
    let cuts = [0, 11, 19, 30];
    let mut parts = Vec::new();
    for (i, w) in cuts.windows(2).enumerate() {
        let (acts, tokens) = c.write(dir.path(), &format!("shard{i}"), w[0]..w[1]);
        let part = dir.path().join(format!("shard{i}.fdpart"));
        let first = w[0].to_string();
        let mut extra = OPTIONS.to_vec();
        extra.extend(["--first-sequence", &first]);
        let out = build(&acts, &tokens, &part, &extra);
        assert_success(&out);
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains(&format!("sequences {}..{}", w[0], w[1])),
            "{said}"
        );
        parts.push(part);
    }
    assert_eq!(c.lengths[10], 0);

    let merged = dir.path().join("merged.json");
    let out = featdict(&[
        "merge",
        s(&parts[0]),
        s(&parts[1]),
        s(&parts[2]),
        "--out",
        s(&merged),
    ]);
    assert_success(&out);
    // The summary does not call reading the partials a pass over tokens.
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("read and merge") && !said.contains("pass"),
        "{said}"
    );
    let (want, got) = (read_json(&whole), read_json(&merged));
    assert_same(&want, &got, "");
    // The comparison saw real content: examples, samples and n-grams of active features.
    let features = want["feature_set"]["features"].as_object().unwrap();
    assert_eq!(features.len(), c.f);
    assert!(features
        .values()
        .all(|f| f["activation_count"].as_u64() > Some(20)));
    assert_eq!(
        want["feature_set"]["total_tokens_processed"],
        c.lengths.iter().sum::<usize>()
    );

    // In a tree: (0 + 1) into a partial, then with 2; and in another order of arguments
    // with the same numbering.
    let left = dir.path().join("left.fdpart");
    assert_success(&featdict(&[
        "merge",
        s(&parts[0]),
        s(&parts[1]),
        "--out",
        s(&left),
    ]));
    let tree = dir.path().join("tree.json");
    assert_success(&featdict(&[
        "merge",
        s(&left),
        s(&parts[2]),
        "--out",
        s(&tree),
    ]));
    assert_same(&want, &read_json(&tree), "");

    // Shards numbered as in the corpus keep their numbers whatever the order of merging:
    // out of order, and as a tree whose first merge leaves a gap the last shard fills.
    let shuffled = dir.path().join("shuffled.json");
    assert_success(&featdict(&[
        "merge",
        s(&parts[2]),
        s(&parts[0]),
        s(&parts[1]),
        "--out",
        s(&shuffled),
    ]));
    assert_same(&want, &read_json(&shuffled), "");
    let outer = dir.path().join("outer.fdpart");
    let out = featdict(&["merge", s(&parts[0]), s(&parts[2]), "--out", s(&outer)]);
    assert_success(&out);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("sequences 0..11, 19..30"), "{said}");
    let gap_filled = dir.path().join("gap.json");
    assert_success(&featdict(&[
        "merge",
        s(&outer),
        s(&parts[1]),
        "--out",
        s(&gap_filled),
    ]));
    assert_same(&want, &read_json(&gap_filled), "");
}

#[test]
fn one_partial_finalizes_to_the_dictionary_build_writes() {
    let dir = tempfile::tempdir().unwrap();
    let c = corpus();
    let (acts, tokens) = c.write(dir.path(), "all", 0..30);
    let direct = dir.path().join("direct.json");
    assert_success(&build(&acts, &tokens, &direct, &OPTIONS));
    let part = dir.path().join("all.fdpart");
    assert_success(&build(&acts, &tokens, &part, &OPTIONS));
    let via = dir.path().join("via.json");
    assert_success(&featdict(&["merge", s(&part), "--out", s(&via)]));
    // Nothing was summed in another order: the same bytes.
    assert_eq!(
        std::fs::read(&direct).unwrap(),
        std::fs::read(&via).unwrap()
    );
}

#[test]
fn shards_numbered_from_zero_are_shifted_and_keep_exact_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let c = corpus();
    let (acts, tokens) = c.write(dir.path(), "all", 0..30);
    let whole = dir.path().join("whole.json");
    assert_success(&build(&acts, &tokens, &whole, &OPTIONS));
    let mut parts = Vec::new();
    for (i, range) in [0..11, 11..30].into_iter().enumerate() {
        let (acts, tokens) = c.write(dir.path(), &format!("s{i}"), range);
        let part = dir.path().join(format!("s{i}.fdpart"));
        assert_success(&build(&acts, &tokens, &part, &OPTIONS));
        parts.push(part);
    }
    let merged = dir.path().join("merged.json");
    assert_success(&featdict(&[
        "merge",
        s(&parts[0]),
        s(&parts[1]),
        "--out",
        s(&merged),
    ]));
    let (want, got) = (read_json(&whole), read_json(&merged));
    let (wf, gf) = (
        want["feature_set"]["features"].as_object().unwrap(),
        got["feature_set"]["features"].as_object().unwrap(),
    );
    for (id, w) in wf {
        let g = &gf[id];
        for key in ["activation_count", "max_activation", "activation_frequency"] {
            assert_eq!(w[key], g[key], "feature {id} {key}");
        }
        // Top examples carry their sequence index: shifted past the first shard's 11.
        assert_same(&w["top_activations"], &g["top_activations"], id);
        assert_eq!(
            w["metadata"]["histogram"], g["metadata"]["histogram"],
            "{id}"
        );
        assert_eq!(
            w["metadata"]["top_tokens"], g["metadata"]["top_tokens"],
            "{id}"
        );
    }
    assert_eq!(
        want["feature_set"]["metadata"]["total_sequences"],
        got["feature_set"]["metadata"]["total_sequences"]
    );
}

#[test]
fn shards_that_do_not_belong_together_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let c = corpus();
    let (acts, tokens) = c.write(dir.path(), "a", 0..15);
    let a = dir.path().join("a.fdpart");
    assert_success(&build(&acts, &tokens, &a, &[]));
    let out = dir.path().join("m.json");

    let k5 = dir.path().join("k5.fdpart");
    assert_success(&build(&acts, &tokens, &k5, &["--top-k", "5"]));
    assert_clean_error(
        &featdict(&["merge", s(&a), s(&k5), "--out", s(&out)]),
        &[
            "k5.fdpart",
            "a.fdpart",
            "max_examples_per_feature (20 vs 5)",
        ],
    );
    // The library's merge applies the same rule (the CLI checks it before reading states).
    use feature_dictionary::store::partial::Partial;
    let mut first = Partial::read(&a).unwrap();
    let e = first
        .merge(Partial::read(&k5).unwrap(), (&a, &k5))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("k5.fdpart") && e.contains("max_examples_per_feature (20 vs 5)"),
        "{e}"
    );

    let (narrow, narrow_tokens) = {
        let acts = dir.path().join("narrow.npy");
        npy::write_f32(&acts, &[2, 3], &[1.0, 0.0, 0.5, 0.0, 2.0, 0.0]).unwrap();
        let tokens = dir.path().join("narrow.json");
        std::fs::write(&tokens, r#"[["x", "y"]]"#).unwrap();
        (acts, tokens)
    };
    let three = dir.path().join("three.fdpart");
    assert_success(&build(&narrow, &narrow_tokens, &three, &[]));
    assert_clean_error(
        &featdict(&["merge", s(&a), s(&three), "--out", s(&out)]),
        &["three.fdpart", "3 features against 24"],
    );

    let other_model = dir.path().join("gpt.fdpart");
    assert_success(&build(
        &acts,
        &tokens,
        &other_model,
        &["--model-name", "gpt2"],
    ));
    let named = dir.path().join("named.fdpart");
    assert_success(&build(&acts, &tokens, &named, &["--model-name", "pythia"]));
    assert_clean_error(
        &featdict(&["merge", s(&named), s(&other_model), "--out", s(&out)]),
        &["different models", "\"pythia\" vs \"gpt2\"", "--model-name"],
    );
    // Named here, they merge, and the result says the name given.
    assert_success(&featdict(&[
        "merge",
        s(&named),
        s(&other_model),
        "--model-name",
        "both",
        "--out",
        s(&out),
    ]));
    assert_eq!(read_json(&out)["config"]["model_name"], "both");

    assert_clean_error(
        &featdict(&["merge", s(&a), s(&a), "--out", s(&out)]),
        &["same file", "count twice"],
    );

    // Of three shards, the two that disagree are named (the first names no model).
    let third = dir.path().join("third.fdpart");
    assert_success(&build(
        &acts,
        &tokens,
        &third,
        &["--model-name", "gpt2", "--first-sequence", "100"],
    ));
    let out3 = featdict(&["merge", s(&a), s(&named), s(&third), "--out", s(&out)]);
    assert_clean_error(
        &out3,
        &[
            "cannot merge",
            "third.fdpart with",
            "named.fdpart",
            "\"pythia\" vs \"gpt2\"",
        ],
    );
    assert!(!String::from_utf8_lossy(&out3.stderr).contains("a.fdpart"));
}

#[test]
fn partial_files_are_checked_and_not_taken_for_dictionaries() {
    let dir = tempfile::tempdir().unwrap();
    let c = corpus();
    let (acts, tokens) = c.write(dir.path(), "a", 0..15);
    let part = dir.path().join("a.fdpart");
    assert_success(&build(&acts, &tokens, &part, &[]));

    // Every command that reads a dictionary says what the file is and what to do.
    for cmd in [&["stats"][..], &["show", "", "0"], &["top", ""]] {
        let mut args: Vec<&str> = cmd.to_vec();
        if args.len() == 1 {
            args.push(s(&part));
        } else {
            args[1] = s(&part);
        }
        assert_clean_error(
            &featdict(&args),
            &["a.fdpart", "partial dictionary", "featdict merge"],
        );
    }

    let out = dir.path().join("m.fdict");
    let bytes = std::fs::read(&part).unwrap();
    let cut = dir.path().join("cut.fdpart");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert_clean_error(
        &featdict(&["merge", s(&cut), "--out", s(&out)]),
        &["cut.fdpart", "truncated or damaged"],
    );
    let long = dir.path().join("long.fdpart");
    std::fs::write(&long, [&bytes[..], b"x"].concat()).unwrap();
    assert_clean_error(
        &featdict(&["merge", s(&long), "--out", s(&out)]),
        &["long.fdpart", "bytes follow"],
    );
    let json = dir.path().join("d.json");
    assert_success(&build(&acts, &tokens, &json, &[]));
    let renamed = dir.path().join("renamed.fdpart");
    std::fs::copy(&json, &renamed).unwrap();
    assert_clean_error(
        &featdict(&["merge", s(&renamed), "--out", s(&out)]),
        &["renamed.fdpart", "not a partial dictionary"],
    );
    // A length that claims more than the file holds (here the config's, right after the
    // magic and version) is damage, not an allocation that aborts the process.
    let mut huge = bytes.clone();
    huge[12..20].copy_from_slice(&(1u64 << 62).to_le_bytes());
    let lying = dir.path().join("lying.fdpart");
    std::fs::write(&lying, huge).unwrap();
    assert_clean_error(
        &featdict(&["merge", s(&lying), "--out", s(&out)]),
        &["lying.fdpart", "truncated or damaged"],
    );
    // One byte changed deep in the state: caught by the checksum, not trusted.
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    let damaged = dir.path().join("flipped.fdpart");
    std::fs::write(&damaged, flipped).unwrap();
    assert_clean_error(
        &featdict(&["merge", s(&damaged), "--out", s(&out)]),
        &["flipped.fdpart", "checksum does not match"],
    );
    // A state whose parts disagree under a valid checksum (made by hand: token ids beyond
    // its vocabulary) ends in an error naming the inputs, not a panic.
    let mut crafted = feature_dictionary::store::partial::Partial::read(&part).unwrap();
    crafted.vocab = feature_dictionary::ingest::Vocab::from_strings(vec!["x".into()]);
    crafted.first_seen.truncate(1);
    crafted.acc.token_counts.truncate(1);
    let made = dir.path().join("made.fdpart");
    crafted.write(&made).unwrap();
    let (acts_b, tokens_b) = c.write(dir.path(), "b", 15..30);
    let other = dir.path().join("b.fdpart");
    assert_success(&build(
        &acts_b,
        &tokens_b,
        &other,
        &["--first-sequence", "15"],
    ));
    assert_clean_error(
        &featdict(&["merge", s(&made), s(&other), "--out", s(&out)]),
        &["made.fdpart", "inconsistent state"],
    );
    let mut other_version = bytes.clone();
    other_version[8] = 99;
    let old = dir.path().join("old.fdpart");
    std::fs::write(&old, other_version).unwrap();
    assert_clean_error(
        &featdict(&["merge", s(&old), "--out", s(&out)]),
        &["old.fdpart", "version 99"],
    );
    assert!(!out.exists());
    // The output may not be one of the inputs, and needs a known extension.
    assert_clean_error(
        &featdict(&["merge", s(&part), "--out", s(&part)]),
        &["a.fdpart", "replace that input"],
    );
    assert_clean_error(
        &featdict(&["merge", s(&part), "--out", s(&dir.path().join("m.txt"))]),
        &["m.txt", ".fdpart"],
    );
    // A .fdict from a merge opens like any built one, with --drop-dead applied.
    assert_success(&featdict(&[
        "merge",
        s(&part),
        "--out",
        s(&out),
        "--drop-dead",
    ]));
    let stats = featdict(&["stats", s(&out), "--json"]);
    assert_success(&stats);
    let v: Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(v["num_features"], 24, "{v}");
}
