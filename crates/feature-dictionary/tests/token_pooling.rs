//! Token ids that decode to the same string are one token in every statistic.
//!
//! A byte-level BPE vocabulary has many ids holding part of a multi-byte UTF-8 character;
//! each decodes on its own to U+FFFD. A dictionary built from ids must count such a string
//! once (top tokens, corpus counts, label precision/recall, n-grams), exactly as a dictionary
//! built from the decoded strings (a tokens JSON) does.

use std::path::Path;

use feature_dictionary::accumulate::{Accumulator, Settings};
use feature_dictionary::build::{self, BuildOptions};
use feature_dictionary::finalize::finalize;
use feature_dictionary::ingest::open::{open_source, InputSpec};
use feature_dictionary::ingest::token_ids::TokenIdMatrix;
use feature_dictionary::ingest::tokenizer::Tokenizer;
use feature_dictionary::ingest::{open_dense, ActivationSource, DenseSource, Vocab};
use feature_dictionary::label::{self, LabelOptions};
use feature_dictionary::model::{DictionaryConfig, LabelingStrategy, TokenCount};
use feature_dictionary::store::seed_json;
use feature_dictionary::FeatureDictionary;

const FFFD: &str = "\u{FFFD}";

/// A byte-level BPE tokenizer.json. `Ã` (0xC3), `Â` (0xC2) and `â` (0xE2) are lone UTF-8
/// lead bytes: ids 1, 3 and 5 all decode to U+FFFD, ids 4 and 7 to " U+FFFD", ids 8 and 10
/// (two lead bytes) to two U+FFFD. `Ã©` (0xC3 0xA9) is a whole character, "é".
const TOKENIZER: &str = r#"{"model":{"type":"BPE","vocab":{
    "\u0120the":0,"\u00c3":1,"hi":2,"\u00c2":3,"\u0120\u00c3":4,"\u00e2":5,
    "\u00c3\u00a9":6,"\u0120\u00c2":7,"\u00c3\u00c2":8,"\u0120cat":9,"\u00c2\u00c3":10}},
    "added_tokens":[{"id":11,"content":"<|endoftext|>","special":true}],
    "decoder":{"type":"ByteLevel"}}"#;

/// Decoded string of each id of [`TOKENIZER`].
const DECODED: [&str; 12] = [
    " the",
    FFFD,
    "hi",
    FFFD,
    " \u{FFFD}",
    FFFD,
    "é",
    " \u{FFFD}",
    "\u{FFFD}\u{FFFD}",
    " cat",
    "\u{FFFD}\u{FFFD}",
    "<|endoftext|>",
];

/// Three sequences of six ids. Every string first appears under its smallest id, in id
/// order, so a tokens JSON interns the strings in the same order (and ties between tokens
/// resolve alike on both paths).
const IDS: [[u32; 6]; 3] = [[0, 1, 2, 3, 4, 5], [6, 8, 1, 7, 9, 0], [10, 3, 11, 2, 9, 1]];

const N_FEATURES: usize = 4;

/// `[18, 4]` activations, row = sequence × 6 + position:
/// - feature 0 fires on the U+FFFD ids 1 and 3 (5 rows; never on id 5) and once on " cat";
/// - feature 1 fires on " U+FFFD" (ids 4 and 7) and on "U+FFFD U+FFFD" under id 8 only;
/// - feature 2 fires on every row; feature 3 never fires.
///
/// Values are multiples of 1/8, so sums are exact in any order (merges compare bit for bit).
fn activations() -> Vec<f32> {
    let mut a = vec![0f32; 18 * N_FEATURES];
    for (r, &id) in IDS.iter().flatten().enumerate() {
        let v = &mut a[r * N_FEATURES..(r + 1) * N_FEATURES];
        if id == 1 || id == 3 || r == 10 {
            v[0] = 1.0 + 0.25 * r as f32;
        }
        if id == 4 || id == 7 || id == 8 {
            v[1] = 2.0 + 0.5 * r as f32;
        }
        v[2] = 0.125 * (r + 1) as f32;
    }
    a
}

struct Inputs {
    _dir: tempfile::TempDir,
    acts: std::path::PathBuf,
    ids: std::path::PathBuf,
    tokenizer: std::path::PathBuf,
    tokens_json: std::path::PathBuf,
    delphi: std::path::PathBuf,
}

fn write_ids_npy(path: &Path, ids: &[u32], n: usize, l: usize) {
    let bytes: Vec<u8> = ids.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect();
    feature_dictionary::ingest::npy::write_bytes(path, "<i4", &[n, l], false, &bytes).unwrap();
}

/// A one-shard delphi cache (`0_3.safetensors`) holding the nonzero activations and the ids.
fn write_delphi(path: &Path, acts: &[f32]) {
    let mut loc = Vec::new();
    let mut val = Vec::new();
    for (i, &v) in acts.iter().enumerate() {
        if v != 0.0 {
            let (r, f) = (i / N_FEATURES, i % N_FEATURES);
            for x in [r / 6, r % 6, f] {
                loc.extend((x as i32).to_le_bytes());
            }
            val.extend(v.to_le_bytes());
        }
    }
    let toks: Vec<u8> = IDS
        .iter()
        .flatten()
        .flat_map(|&t| (t as i32).to_le_bytes())
        .collect();
    let n = val.len() / 4;
    let (a, b, c) = (
        loc.len(),
        loc.len() + val.len(),
        loc.len() + val.len() + toks.len(),
    );
    let header = format!(
        r#"{{"locations":{{"dtype":"I32","shape":[{n},3],"data_offsets":[0,{a}]}},"activations":{{"dtype":"F32","shape":[{n}],"data_offsets":[{a},{b}]}},"tokens":{{"dtype":"I32","shape":[3,6],"data_offsets":[{b},{c}]}}}}"#
    );
    let mut header = header.into_bytes();
    while header.len() % 8 != 0 {
        header.push(b' ');
    }
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    bytes.extend(loc);
    bytes.extend(val);
    bytes.extend(toks);
    std::fs::write(path, bytes).unwrap();
}

fn inputs() -> Inputs {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let acts = activations();
    feature_dictionary::ingest::npy::write_f32(&p("acts.npy"), &[18, N_FEATURES], &acts).unwrap();
    write_ids_npy(&p("ids.npy"), IDS.as_flattened(), 3, 6);
    std::fs::write(p("tokenizer.json"), TOKENIZER).unwrap();
    let strings: Vec<Vec<&str>> = IDS
        .iter()
        .map(|s| s.iter().map(|&t| DECODED[t as usize]).collect())
        .collect();
    std::fs::write(p("tokens.json"), serde_json::to_string(&strings).unwrap()).unwrap();
    std::fs::create_dir(p("cache")).unwrap();
    write_delphi(&p("cache").join("0_3.safetensors"), &acts);
    Inputs {
        acts: p("acts.npy"),
        ids: p("ids.npy"),
        tokenizer: p("tokenizer.json"),
        tokens_json: p("tokens.json"),
        delphi: p("cache"),
        _dir: dir,
    }
}

fn config() -> DictionaryConfig {
    let mut c = DictionaryConfig::default();
    c.extraction.ngram_capacity = 64;
    c
}

fn source(spec: InputSpec) -> Box<dyn ActivationSource> {
    open_source(&InputSpec {
        context_window: config().extraction.context_window,
        threads: 1,
        ..spec
    })
    .unwrap()
}

fn from_ids(inp: &Inputs) -> Box<dyn ActivationSource> {
    source(InputSpec {
        acts: Some(&inp.acts),
        token_ids: Some(&inp.ids),
        tokenizer: Some(&inp.tokenizer),
        ..Default::default()
    })
}

fn from_strings(inp: &Inputs) -> Box<dyn ActivationSource> {
    source(InputSpec {
        acts: Some(&inp.acts),
        tokens_json: Some(&inp.tokens_json),
        ..Default::default()
    })
}

fn from_delphi(inp: &Inputs) -> Box<dyn ActivationSource> {
    source(InputSpec {
        acts: Some(&inp.delphi),
        tokenizer: Some(&inp.tokenizer),
        ..Default::default()
    })
}

fn build_with(mut src: Box<dyn ActivationSource>, threads: usize) -> FeatureDictionary {
    let options = BuildOptions {
        threads,
        allow_nonfinite: false,
    };
    build::build(&mut *src, config(), &options, &mut |_| {}).unwrap()
}

fn labeled(mut d: FeatureDictionary) -> FeatureDictionary {
    let mut o = LabelOptions::default();
    o.config.strategies = vec![LabelingStrategy::TokenFrequency];
    o.config.min_confidence = 0.0;
    label::label_dictionary(&mut d, &o, None).unwrap();
    d
}

fn json(d: &FeatureDictionary) -> String {
    seed_json::to_string(d).unwrap()
}

/// `assert_eq!` on two dictionaries' JSON, reporting the first differing line (the whole
/// text is too long to read).
fn assert_same(a: &str, b: &str) {
    let first = a
        .lines()
        .zip(b.lines())
        .enumerate()
        .find(|(_, (x, y))| x != y);
    if let Some((i, (x, y))) = first {
        let ctx = |t: &str| {
            t.lines()
                .skip(i.saturating_sub(40))
                .take(60)
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "line {}: {x:?} vs {y:?}\n{}\n=====\n{}",
            i + 1,
            ctx(a),
            ctx(b)
        );
    }
    assert_eq!(a.lines().count(), b.lines().count());
}

fn tc(token: &str, firings: u64, occurrences: u64) -> TokenCount {
    TokenCount {
        token: token.into(),
        firings,
        occurrences,
    }
}

#[test]
fn the_tokenizer_decodes_several_ids_to_u_fffd() {
    let t = Tokenizer::from_slice(Path::new("tokenizer.json"), TOKENIZER.as_bytes()).unwrap();
    let got: Vec<&str> = (0..12).map(|i| t.decode(i).unwrap()).collect();
    assert_eq!(got, DECODED);
}

/// The real case: SmolLM2's byte-level BPE vocabulary has hundreds of ids that decode alike.
#[test]
fn smollm2_ids_that_decode_alike_get_one_canonical_id() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2/tokenizer.json");
    let vocab = Tokenizer::from_file(&path).unwrap().into_vocab();
    assert_eq!(vocab.len(), 49_152);
    let canonical = vocab.canonical_ids();
    for (s, n) in [(FFFD, 265), (" \u{FFFD}", 37), ("\u{FFFD}\u{FFFD}", 10)] {
        let ids: Vec<u32> = (0..vocab.len() as u32)
            .filter(|&i| vocab.token(i) == s)
            .collect();
        assert_eq!(ids.len(), n, "{s:?}");
        assert!(
            ids.iter().all(|&i| canonical[i as usize] == ids[0]),
            "{s:?}"
        );
        assert_eq!(vocab.get(s), Some(ids[0]));
    }
}

#[test]
fn ids_sharing_a_string_are_counted_as_one_token() {
    let inp = inputs();
    let d = build_with(from_ids(&inp), 1);
    assert_eq!(d.feature_set.total_tokens_processed, 18);

    let f0 = d.get(0).unwrap();
    assert_eq!(f0.activation_count, 6);
    assert_eq!(
        f0.metadata.top_tokens,
        vec![tc(FFFD, 5, 6), tc(" cat", 1, 2)],
        "U+FFFD once, with the firings of ids 1 and 3 and the occurrences of ids 1, 3 and 5"
    );
    assert_eq!(f0.metadata.unique_tokens, Some(2));
    assert_eq!(f0.metadata.token_counts_exact, Some(true));

    let f1 = d.get(1).unwrap();
    assert_eq!(
        f1.metadata.top_tokens,
        vec![tc(" \u{FFFD}", 2, 2), tc("\u{FFFD}\u{FFFD}", 1, 2)]
    );

    // Corpus counts: one entry per string, counts summed over its ids.
    let mut counts = d.feature_set.metadata.token_counts.clone();
    counts.sort();
    let mut want: Vec<(String, u64)> = [
        (FFFD, 6),
        (" \u{FFFD}", 2),
        ("\u{FFFD}\u{FFFD}", 2),
        (" the", 2),
        ("hi", 2),
        (" cat", 2),
        ("é", 1),
        ("<|endoftext|>", 1),
    ]
    .iter()
    .map(|&(s, c)| (s.to_string(), c))
    .collect();
    want.sort();
    assert_eq!(counts, want);

    // Contexts still show the decoded strings, whichever id stood at a position.
    let top = &f0.top_activations[0];
    assert_eq!((top.metadata.sequence, top.position), (Some(2), 5));
    assert_eq!(top.token, FFFD);
    assert_eq!(
        top.context_tokens,
        [
            "\u{FFFD}\u{FFFD}",
            FFFD,
            "<|endoftext|>",
            "hi",
            " cat",
            FFFD
        ]
    );

    // The token-frequency label scores U+FFFD over all its occurrences.
    let d = labeled(d);
    let best = &d.get(0).unwrap().metadata.label_details[0];
    assert_eq!(best.text, format!("token:{FFFD}"));
    assert_eq!(best.precision, Some(5.0 / 6.0));
    assert_eq!(best.recall, Some(5.0 / 6.0));
}

#[test]
fn ids_and_their_decoded_strings_give_the_same_dictionary() {
    let inp = inputs();
    let by_ids = labeled(build_with(from_ids(&inp), 1));
    let by_strings = labeled(build_with(from_strings(&inp), 1));
    for id in 0..N_FEATURES as u64 {
        let (a, b) = (by_ids.get(id).unwrap(), by_strings.get(id).unwrap());
        assert_eq!(a.metadata.top_tokens, b.metadata.top_tokens, "feature {id}");
        assert_eq!(
            a.metadata.label_details, b.metadata.label_details,
            "feature {id}"
        );
    }
    // Everything else too: corpus counts, examples, n-grams.
    assert_same(&json(&by_ids), &json(&by_strings));
    // A delphi cache's own `tokens` go the same way.
    assert_same(
        &json(&labeled(build_with(from_delphi(&inp), 1))),
        &json(&by_ids),
    );
}

#[test]
fn pooled_counts_do_not_depend_on_threads() {
    let inp = inputs();
    let one = json(&build_with(from_ids(&inp), 1));
    assert_same(&one, &json(&build_with(from_ids(&inp), 2)));
    assert_same(&one, &json(&build_with(from_delphi(&inp), 2)));
}

/// The accumulator of `src` (built on `threads` threads) and its vocabulary.
fn accumulate(mut src: impl ActivationSource, threads: usize) -> (Accumulator, Vocab) {
    let settings = Settings::from_config(&config().extraction).unwrap();
    let mut acc = Accumulator::new(src.n_features(), settings, threads);
    let options = BuildOptions {
        threads,
        allow_nonfinite: false,
    };
    build::accumulate_source(&mut src, &mut acc, &options, &mut |_| {}).unwrap();
    (acc, src.vocab().clone())
}

#[test]
fn shards_with_one_tokenizer_merge_exactly() {
    let inp = inputs();
    let whole = json(&build_with(from_ids(&inp), 1));
    // Sequences 0–1 and sequence 2 as two shards, each read with the tokenizer and numbered
    // as in the whole corpus.
    let dir = tempfile::tempdir().unwrap();
    let acts = activations();
    let mut parts = Vec::new();
    for (name, seqs) in [("a", 0..2), ("b", 2..3)] {
        let rows = seqs.start * 6..seqs.end * 6;
        let a = dir.path().join(format!("{name}.npy"));
        let ids = dir.path().join(format!("{name}-ids.npy"));
        feature_dictionary::ingest::npy::write_f32(
            &a,
            &[rows.len(), N_FEATURES],
            &acts[rows.start * N_FEATURES..rows.end * N_FEATURES],
        )
        .unwrap();
        write_ids_npy(&ids, &IDS.as_flattened()[rows], seqs.len(), 6);
        let vocab = Tokenizer::from_file(&inp.tokenizer).unwrap().into_vocab();
        let tokens = TokenIdMatrix::from_npy(&ids)
            .unwrap()
            .into_sequences(&ids, Some(vocab))
            .unwrap();
        let src = DenseSource::new(open_dense(&a).unwrap(), tokens, 5, 1 << 20)
            .unwrap()
            .with_first_sequence(seqs.start as u64);
        parts.push(accumulate(src, 1 + parts.len()));
    }
    let (b, _) = parts.pop().unwrap();
    let (a, vocab) = parts.pop().unwrap();

    // Same tokenizer, so the same ids: a plain merge, in either order.
    let mut merged = a.clone();
    merged.merge(b.clone()).unwrap();
    assert_same(&json(&finalize(&merged, &vocab, config())), &whole);
    let mut merged = b.clone();
    merged.merge(a.clone()).unwrap();
    assert_same(&json(&finalize(&merged, &vocab, config())), &whole);

    // Into an accumulator keyed by interned strings (as the Python engine merges): every id
    // of the tokenizer maps to its string's id there, several ids to one.
    let mut strings = Vocab::new();
    let map: Vec<u32> = (0..vocab.len() as u32)
        .map(|id| strings.intern(&vocab.token(id)))
        .collect();
    assert_eq!(strings.len(), 8);
    let mut total = Accumulator::new(N_FEATURES, a.settings().clone(), 2);
    total.merge_remapped(a, &map, None).unwrap();
    total.merge_remapped(b, &map, None).unwrap();
    let by_strings = json(&build_with(from_strings(&inp), 1));
    assert_same(&json(&finalize(&total, &strings, config())), &by_strings);
}
