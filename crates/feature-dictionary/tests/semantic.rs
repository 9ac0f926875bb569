//! Semantic clustering, polysemantic features and the logit lens on generated embeddings:
//! three token groups (animals, colours, numbers) whose vectors sit near three orthogonal
//! directions. Embeddings are written as safetensors (+ a vocab list) and as GGUF files
//! (F32, F16, Q8_0, byte-level token strings) and read back through the public loaders.

mod common_label;

use common_label::{build, Rows};
use feature_dictionary::analyze::embeddings::{decode_byte_level, TokenEmbeddings};
use feature_dictionary::analyze::gguf::Gguf;
use feature_dictionary::analyze::logit_lens::Unembedding;
use feature_dictionary::analyze::polysemantic::{self, ClusterParams};
use feature_dictionary::analyze::weights::{self, Matrix};
use feature_dictionary::ingest::Vocab;
use feature_dictionary::label::{self, LabelOptions};
use feature_dictionary::model::{DictionaryConfig, LabelingStrategy};

const GROUPS: [&[&str]; 3] = [
    &[" cat", " dog", " wolf", " horse"],
    &[" red", " green", " blue", " yellow"],
    &[" one", " two", " three", " four"],
];
const OTHER: [&str; 3] = [" the", " and", "."];
const D: usize = 32;

fn tokens() -> Vec<String> {
    GROUPS
        .iter()
        .flat_map(|g| g.iter())
        .chain(OTHER.iter())
        .map(|s| s.to_string())
        .collect()
}

fn embedding_matrix() -> Matrix {
    let toks = tokens();
    let mut data = Vec::new();
    for (i, _) in toks.iter().enumerate() {
        let mut v = vec![0f32; D];
        if i < 12 {
            v[i / 4] = 1.0; // group direction
            v[3 + i % 4] = 0.25; // small token-specific part
        } else {
            v[5 + (i - 12)] = 1.0; // unrelated tokens
        }
        data.extend(v);
    }
    Matrix {
        rows: toks.len(),
        cols: D,
        data,
    }
}

/// Corpus: every token repeated; feature 0 fires on animals, feature 1 on animals and
/// colours, feature 2 on " the".
fn dictionary() -> feature_dictionary::FeatureDictionary {
    let toks = tokens();
    let vocab = Vocab::from_strings(toks.clone());
    let mut rows = Rows {
        tokens: vec![],
        sequences: vec![],
        positions: vec![],
        firings: vec![],
    };
    for rep in 0..10 {
        for (i, _) in toks.iter().enumerate() {
            let pos = rows.tokens.len() % 30;
            rows.tokens.push(i as u32);
            rows.sequences.push((rows.sequences.len() / 30) as u64);
            rows.positions.push(pos as u32);
            let mut f = vec![];
            if i < 4 {
                f.push((0, 1.0));
            }
            if i < 8 {
                f.push((1, 1.0 + rep as f32));
            }
            if i == 12 {
                f.push((2, 1.0));
            }
            rows.firings.push(f);
        }
    }
    build(&[rows], 3, &vocab, DictionaryConfig::default(), 1)
}

fn write_gguf(path: &std::path::Path, toks: &[String], m: &Matrix, kind: u32) {
    let mut b: Vec<u8> = Vec::new();
    let s = |b: &mut Vec<u8>, x: &str| {
        b.extend((x.len() as u64).to_le_bytes());
        b.extend(x.as_bytes());
    };
    b.extend(b"GGUF");
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes()); // tensors
    b.extend(2u64.to_le_bytes()); // kv pairs
    s(&mut b, "general.name");
    b.extend(8u32.to_le_bytes());
    s(&mut b, "test");
    s(&mut b, "tokenizer.ggml.tokens");
    b.extend(9u32.to_le_bytes());
    b.extend(8u32.to_le_bytes());
    b.extend((toks.len() as u64).to_le_bytes());
    for t in toks {
        // Byte-level BPE spelling: a leading space is "Ġ".
        s(&mut b, &t.replace(' ', "Ġ"));
    }
    s(&mut b, "token_embd.weight");
    b.extend(2u32.to_le_bytes());
    b.extend((m.cols as u64).to_le_bytes());
    b.extend((m.rows as u64).to_le_bytes());
    b.extend(kind.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    while !b.len().is_multiple_of(32) {
        b.push(0);
    }
    match kind {
        0 => m.data.iter().for_each(|v| b.extend(v.to_le_bytes())),
        1 => m
            .data
            .iter()
            .for_each(|v| b.extend(half::f16::from_f32(*v).to_le_bytes())),
        8 => {
            for block in m.data.chunks(32) {
                let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
                let d = amax / 127.0;
                b.extend(half::f16::from_f32(d).to_le_bytes());
                for v in block {
                    let q = if d > 0.0 { (v / d).round() } else { 0.0 };
                    b.push(q as i8 as u8);
                }
            }
        }
        _ => unreachable!(),
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn byte_level_decoding() {
    assert_eq!(decode_byte_level("Ġthe"), " the");
    assert_eq!(decode_byte_level("Ċ"), "\n");
    assert_eq!(decode_byte_level("<|endoftext|>"), "<|endoftext|>");
}

#[test]
fn gguf_and_safetensors_embeddings_load_the_same_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let m = embedding_matrix();
    let toks = tokens();
    let st = dir.path().join("emb.safetensors");
    weights::write_safetensors(&st, &[("embeddings", &m)]).unwrap();
    let vocab = dir.path().join("vocab.json");
    std::fs::write(&vocab, serde_json::to_string(&toks).unwrap()).unwrap();
    let a = TokenEmbeddings::load(&st, None, Some(&vocab)).unwrap();
    for kind in [0u32, 1, 8] {
        let g = dir.path().join(format!("m{kind}.gguf"));
        write_gguf(&g, &toks, &m, kind);
        let gg = Gguf::open(&g).unwrap();
        let raw = gg.matrix("token_embd.weight").unwrap();
        assert_eq!((raw.rows, raw.cols), (m.rows, m.cols));
        let tol = [0.0, 1e-3, 1e-2][[0u32, 1, 8].iter().position(|&k| k == kind).unwrap()];
        for (x, y) in raw.data.iter().zip(&m.data) {
            assert!((x - y).abs() <= tol, "kind {kind}: {x} vs {y}");
        }
        let b = TokenEmbeddings::load(&g, None, None).unwrap();
        // A vocabulary file beside a GGUF would not be used: refused, not ignored.
        let err = TokenEmbeddings::load(&g, None, Some(&vocab))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("carries its own vocabulary") && err.contains("vocab.json"),
            "{err}"
        );
        for t in &toks {
            let (va, vb) = (a.get(t).unwrap(), b.get(t).unwrap());
            for (x, y) in va.iter().zip(vb) {
                assert!((x - y).abs() <= 0.02, "{t:?}");
            }
        }
    }
    // Clear errors.
    let err = TokenEmbeddings::load(&st, None, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("token strings"), "{err}");
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00").unwrap();
    let err = TokenEmbeddings::load(&bad, None, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("bad.gguf") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn semantic_labels_polysemantic_features_and_logit_lens() {
    let mut dict = dictionary();
    let emb = TokenEmbeddings::new(embedding_matrix(), tokens()).unwrap();
    let mut o = LabelOptions::default();
    o.config.strategies = vec![LabelingStrategy::SemanticClustering];
    o.config.min_confidence = 0.0;
    label::label_dictionary(&mut dict, &o, Some(&emb)).unwrap();

    // Feature 0 fires on exactly the animal group: one cluster, precision = recall = 1.
    let f = dict.get(0).unwrap();
    let top = &f.metadata.label_details[0];
    assert_eq!(top.strategy, LabelingStrategy::SemanticClustering);
    assert!(top.text.starts_with("semantic:"));
    for t in top.text["semantic:".len()..].split('|') {
        assert!(GROUPS[0].contains(&t), "{}", top.text);
    }
    assert_eq!((top.precision, top.recall), (Some(1.0), Some(1.0)));

    // Feature 1 fires on animals and colours: two clusters, each half of the firings.
    let f1 = dict.get(1).unwrap();
    let labels: Vec<_> = f1
        .metadata
        .label_details
        .iter()
        .filter(|l| l.strategy == LabelingStrategy::SemanticClustering)
        .collect();
    assert_eq!(labels.len(), 2);
    for l in &labels {
        assert_eq!((l.precision, l.recall), (Some(1.0), Some(0.5)));
    }

    let params = ClusterParams::default();
    let poly = polysemantic::find_polysemantic(&dict, &emb, &params);
    assert_eq!(poly.len(), 1);
    assert_eq!(poly[0].0, 1);
    let mut groups: Vec<Vec<String>> = poly[0]
        .1
        .iter()
        .map(|c| {
            let mut t = c.tokens.clone();
            t.sort();
            t
        })
        .collect();
    groups.sort();
    let mut want: Vec<Vec<String>> = GROUPS[..2]
        .iter()
        .map(|g| {
            let mut v: Vec<String> = g.iter().map(|s| s.to_string()).collect();
            v.sort();
            v
        })
        .collect();
    want.sort();
    assert_eq!(groups, want);
    assert!(polysemantic::polysemantic_clusters(dict.get(0).unwrap(), &emb, &params).is_none());

    // Logit lens with the (tied) embedding matrix as unembedding: a direction along the
    // colour axis promotes colours and suppresses nothing positive.
    let un = Unembedding::new(embedding_matrix(), tokens()).unwrap();
    let mut dir = vec![0f32; D];
    dir[1] = 1.0;
    dir[5] = -1.0;
    let lens = un.lens(7, &dir, 4).unwrap();
    // By hand: colours score 1 on axis 1, " blue" (own part on axis 5) 1 − 0.25; " wolf" and
    // " three" have their own part on axis 5 (−0.25), " the" lies on it (−1); the rest 0.
    // Ties in token order.
    let pairs = |v: &[(&str, f32)]| -> Vec<(String, f32)> {
        v.iter().map(|&(t, s)| (t.to_string(), s)).collect()
    };
    assert_eq!(
        lens.promoted,
        pairs(&[
            (" red", 1.0),
            (" green", 1.0),
            (" yellow", 1.0),
            (" blue", 0.75)
        ])
    );
    assert_eq!(
        lens.suppressed,
        pairs(&[(" the", -1.0), (" wolf", -0.25), (" three", -0.25)])
    );
    // " cat" scores 0: it is neither raised nor lowered, so a list of four stops at three.
    assert!(un.lens(7, &[1.0], 3).is_err());
}

/// A NaN in an embedding or unembedding matrix silently removed its token from every
/// cosine and logit ranking: in safetensors and in GGUF (a value of F32 and F16, a block
/// scale of Q8_0) it is an error naming the file, the tensor and the row.
#[test]
fn nonfinite_embeddings_are_errors_naming_file_tensor_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let toks = tokens();
    let vocab = dir.path().join("vocab.json");
    std::fs::write(&vocab, serde_json::to_string(&toks).unwrap()).unwrap();
    let mut m = embedding_matrix();
    m.data[4 * D + 7] = f32::NAN;
    let st = dir.path().join("nan.safetensors");
    weights::write_safetensors(&st, &[("embeddings", &m)]).unwrap();
    let errors = [
        TokenEmbeddings::load(&st, None, Some(&vocab)).unwrap_err(),
        Unembedding::load(&st, None, Some(&vocab)).unwrap_err(),
    ];
    for e in errors.map(|e| e.to_string()) {
        assert!(e.contains(st.to_str().unwrap()), "{e}");
        assert!(
            e.contains("tensor \"embeddings\" [15, 32] holds NaN at row 4, column 7 (the only non-finite value)"),
            "{e}"
        );
    }
    for kind in [0u32, 1] {
        let g = dir.path().join(format!("nan{kind}.gguf"));
        write_gguf(&g, &toks, &m, kind);
        let e = TokenEmbeddings::load(&g, None, None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(g.to_str().unwrap()), "{e}");
        assert!(
            e.contains("tensor \"token_embd.weight\" [15, 32] holds NaN at row 4, column 7"),
            "{e}"
        );
    }
    // Q8_0: one 32-value block per row; a NaN scale makes all of row 4 NaN.
    let g = dir.path().join("nan8.gguf");
    write_gguf(&g, &toks, &embedding_matrix(), 8);
    let mut bytes = std::fs::read(&g).unwrap();
    let block4 = bytes.len() - (toks.len() - 4) * 34;
    bytes[block4..block4 + 2].copy_from_slice(&half::f16::NAN.to_le_bytes());
    std::fs::write(&g, bytes).unwrap();
    let e = Unembedding::load(&g, None, None).unwrap_err().to_string();
    assert!(
        e.contains("holds NaN at row 4, column 0 (32 non-finite values in all)"),
        "{e}"
    );
}

/// A matrix and a vocabulary of different sizes: the error names both files.
#[test]
fn vocabulary_size_mismatches_name_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("emb.safetensors");
    weights::write_safetensors(&st, &[("embeddings", &embedding_matrix())]).unwrap();
    let vocab = dir.path().join("short.json");
    std::fs::write(&vocab, serde_json::to_string(&tokens()[1..]).unwrap()).unwrap();
    let e = TokenEmbeddings::load(&st, None, Some(&vocab))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(st.to_str().unwrap())
            && e.contains(&format!(
                "the embedding matrix is 15×32 but the vocabulary {} has 14 tokens",
                vocab.display()
            )),
        "{e}"
    );
    let e = Unembedding::load(&st, None, Some(&vocab))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(st.to_str().unwrap())
            && e.contains(&format!(
                "the unembedding is 15×32 but the vocabulary {} has 14 tokens",
                vocab.display()
            )),
        "{e}"
    );
    // A GGUF file's vocabulary is its own token list.
    let g = dir.path().join("short.gguf");
    write_gguf(&g, &tokens()[1..], &embedding_matrix(), 0);
    let e = TokenEmbeddings::load(&g, None, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("its tokenizer.ggml.tokens list has 14 tokens"),
        "{e}"
    );
}

/// A token whose embedding row is all zeros has no direction: it is left out like a token
/// without an embedding (a cosine of 0 with everything made it a cluster of its own), and
/// a zero decoder direction has no logit lens.
#[test]
fn zero_rows_and_directions_have_no_direction() {
    let toks = tokens();
    let mut m = embedding_matrix();
    m.data[5 * D..6 * D].fill(0.0);
    let emb = TokenEmbeddings::new(m, toks.clone()).unwrap();
    assert!(emb.get(&toks[5]).is_none() && emb.id(&toks[5]).is_none());
    assert_eq!(emb.id(&toks[6]), Some(6));
    let un = Unembedding::new(embedding_matrix(), toks).unwrap();
    let e = un.lens(3, &[0.0; D], 4).unwrap_err().to_string();
    assert!(
        e.contains("feature 3's decoder direction is all zeros"),
        "{e}"
    );
}

/// Every header field comes from the file: lengths, counts, dims and offsets that lie must
/// give an error naming the file, never a panic, an abort on a huge allocation, a stack
/// overflow, or a tensor read from the wrong bytes.
#[test]
fn gguf_headers_that_lie_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.gguf");
    write_gguf(&good, &tokens(), &embedding_matrix(), 0);
    let bytes = std::fs::read(&good).unwrap();
    let bad = dir.path().join("bad.gguf");
    let outcome = |b: &[u8]| -> Result<(), String> {
        std::fs::write(&bad, b).unwrap();
        let g = Gguf::open(&bad).map_err(|e| e.to_string())?;
        g.matrix("token_embd.weight")
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let find = |needle: &[u8]| {
        bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap()
    };
    let tensor = find(b"token_embd.weight") + "token_embd.weight".len();
    let patch = |at: usize, value: &[u8]| {
        let mut b = bytes.clone();
        b[at..at + value.len()].copy_from_slice(value);
        b
    };
    let expect = |b: Vec<u8>, wanted: &str| {
        let e = outcome(&b).unwrap_err();
        assert!(e.contains("bad.gguf") && e.contains(wanted), "{e}");
    };
    // The value string of "general.name" claims u64::MAX bytes.
    let name_value = find(b"general.name") + "general.name".len() + 4;
    expect(patch(name_value, &u64::MAX.to_le_bytes()), "truncated");
    // The tensor claims 2^32 - 1 dimensions.
    expect(patch(tensor, &u32::MAX.to_le_bytes()), "dimensions");
    // Dims whose product overflows, or whose data would lie past the end.
    let dims = tensor + 4;
    let mut b = patch(dims, &(1u64 << 31).to_le_bytes());
    b[dims + 8..dims + 16].copy_from_slice(&(1u64 << 31).to_le_bytes());
    expect(b, "outside the file");
    let mut b = patch(dims, &u64::MAX.to_le_bytes());
    b[dims + 8..dims + 16].copy_from_slice(&u64::MAX.to_le_bytes());
    expect(b, "more values than the file can hold");
    // An offset that wraps around to the header.
    let offset = dims + 16 + 4;
    expect(
        patch(offset, &(u64::MAX - 200).to_le_bytes()),
        "outside the file",
    );
    // Counts no file of this size could hold.
    expect(patch(8, &u64::MAX.to_le_bytes()), "the tensor count");
    expect(
        patch(16, &(1u64 << 40).to_le_bytes()),
        "the key/value count",
    );
    // Arrays nested 100,000 deep.
    let mut b = bytes[..24].to_vec();
    b[16..24].copy_from_slice(&1u64.to_le_bytes());
    b.extend(4u64.to_le_bytes());
    b.extend(b"deep");
    b.extend(9u32.to_le_bytes());
    for _ in 0..100_000 {
        b.extend(9u32.to_le_bytes());
        b.extend(1u64.to_le_bytes());
    }
    expect(b, "nested");
    // Any one header byte set to 0x00, 0x7F, 0x80 or 0xFF: an error or a tensor, no panic.
    let header_end = offset + 8;
    for at in 0..header_end {
        for v in [0x00, 0x7F, 0x80, 0xFF] {
            let _ = outcome(&patch(at, &[v]));
        }
    }
}

/// The logit lens against brute force `W_dec[i] · W_Uᵀ`: small integer weights make every
/// score exact (and ties frequent), so promoted and suppressed lists are compared whole —
/// tokens, order (score, then token index) and scores — for several `k` (up to and past the
/// half-vocabulary cap). The unembedding is given both as `[vocab, d]` and as `[d, vocab]`
/// (transposed here by index arithmetic), which must give the same lens.
#[test]
fn logit_lens_matches_brute_force_in_both_orientations() {
    let (vocab, d, n_features) = (23usize, 7usize, 7usize);
    let mut rng = common_label::Lcg(99);
    let mut int = || (rng.next() % 9) as i64 - 4;
    let mut u: Vec<i64> = (0..vocab * d).map(|_| int()).collect(); // [vocab, d]
                                                                   // U's last column is 0 but for one positive and one negative token.
    for v in 0..vocab {
        u[v * d + d - 1] = 0;
    }
    u[3 * d + d - 1] = 2;
    u[8 * d + d - 1] = -3;
    let mut w_dec: Vec<i64> = (0..n_features * d).map(|_| int()).collect();
    w_dec[..d].fill(0);
    w_dec[0] = 1; // feature 0 reads one column of U: many tied scores
                  // Feature 6 reads the last column: 21 tokens tie at 0, across the promoted/suppressed
                  // boundary, so a token could be listed on both sides.
    w_dec[6 * d..].fill(0);
    w_dec[7 * d - 1] = 1;
    let tokens: Vec<String> = (0..vocab).map(|v| format!("tok{v}")).collect();
    let as_f32 = |v: &[i64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let rows_first = Matrix {
        rows: vocab,
        cols: d,
        data: as_f32(&u),
    };
    let mut u_t = vec![0i64; d * vocab]; // [d, vocab]
    for v in 0..vocab {
        for j in 0..d {
            u_t[j * vocab + v] = u[v * d + j];
        }
    }
    let cols_first = Matrix {
        rows: d,
        cols: vocab,
        data: as_f32(&u_t),
    };
    let by_rows = Unembedding::new(rows_first.clone(), tokens.clone()).unwrap();
    let by_cols = Unembedding::new(cols_first, tokens.clone()).unwrap();
    assert_eq!(
        by_cols.matrix, rows_first,
        "a [d, vocab] matrix is read as [vocab, d]"
    );
    assert_eq!(by_cols.max_per_side(), vocab / 2);

    for i in 0..n_features {
        let row = &w_dec[i * d..(i + 1) * d];
        let scores: Vec<i64> = (0..vocab)
            .map(|v| (0..d).map(|j| row[j] * u[v * d + j]).sum())
            .collect();
        let mut order: Vec<usize> = (0..vocab).collect();
        order.sort_by_key(|&v| (-scores[v], v));
        for k in [1usize, 3, 11, 40] {
            let per_side = k.min(vocab / 2);
            let promoted: Vec<usize> = order[..per_side].to_vec();
            let mut rest: Vec<usize> = (0..vocab).filter(|v| !promoted.contains(v)).collect();
            rest.sort_by_key(|&v| (scores[v], v));
            // Promoted raise the logit, suppressed lower it: zeros are neither.
            let suppressed: Vec<usize> = rest[..per_side]
                .iter()
                .copied()
                .filter(|&v| scores[v] < 0)
                .collect();
            let promoted: Vec<usize> = promoted.into_iter().filter(|&v| scores[v] > 0).collect();
            let named = |vs: &[usize]| -> Vec<(String, f32)> {
                vs.iter()
                    .map(|&v| (tokens[v].clone(), scores[v] as f32))
                    .collect()
            };
            for (name, un) in [("[vocab, d]", &by_rows), ("[d, vocab]", &by_cols)] {
                let lens = un.lens(i as u64, &as_f32(row), k).unwrap();
                assert_eq!(lens.feature, i as u64);
                assert_eq!(
                    lens.promoted,
                    named(&promoted),
                    "{name}: feature {i}, k {k}"
                );
                assert_eq!(
                    lens.suppressed,
                    named(&suppressed),
                    "{name}: feature {i}, k {k}"
                );
            }
        }
    }
    // Feature 0 scores every token by U's first column: ties broken by token index.
    let first_col: Vec<i64> = (0..vocab).map(|v| u[v * d]).collect();
    let top = *first_col.iter().max().unwrap();
    let tied: Vec<String> = (0..vocab)
        .filter(|&v| first_col[v] == top)
        .map(|v| tokens[v].clone())
        .collect();
    assert!(tied.len() >= 2, "no tie to check: {first_col:?}");
    let lens = by_cols.lens(0, &as_f32(&w_dec[..d]), tied.len()).unwrap();
    let got: Vec<String> = lens.promoted.into_iter().map(|p| p.0).collect();
    assert_eq!(got, tied);
}
