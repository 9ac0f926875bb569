//! Fortran-order (column-major) `.npy` activations — what `np.save(path, acts.T)` writes —
//! read as the same rows as the C-order file of the same array: the gathered rows, the
//! accumulators and dictionaries built from them at any batch size and thread count, and the
//! locations named by every error.

use std::path::{Path, PathBuf};

use feature_dictionary::accumulate::{Accumulator, Settings};
use feature_dictionary::build::{accumulate_source, build, BuildOptions};
use feature_dictionary::ingest::{npy, ActivationSource, DenseSource, TokenSequences};
use feature_dictionary::model::DictionaryConfig;
use feature_dictionary::{Error, FeatureDictionary};

mod common;
use common::Rng;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Dtype {
    F16,
    F32,
    F64,
}

impl Dtype {
    fn descr(self) -> &'static str {
        match self {
            Dtype::F16 => "<f2",
            Dtype::F32 => "<f4",
            Dtype::F64 => "<f8",
        }
    }
    fn encode(self, v: f64, out: &mut Vec<u8>) {
        match self {
            Dtype::F16 => out.extend(half::f16::from_f64(v).to_le_bytes()),
            Dtype::F32 => out.extend((v as f32).to_le_bytes()),
            Dtype::F64 => out.extend(v.to_le_bytes()),
        }
    }
    /// The f32 the reader must produce for a value written as `v`.
    fn read_back(self, v: f64) -> f32 {
        match self {
            Dtype::F16 => half::f16::from_f64(v).to_f32(),
            Dtype::F32 | Dtype::F64 => v as f32,
        }
    }
}

/// Writes `values` (the array of `shape` in C order, i.e. row-major) as a `.npy` of `dtype`,
/// in C order or in Fortran order. The Fortran layout comes from `npy::write_bytes`, which
/// follows NumPy's definition independently of the reader.
fn write_npy(path: &Path, dtype: Dtype, shape: &[usize], fortran: bool, values: &[f64]) {
    let mut bytes = Vec::new();
    for &v in values {
        dtype.encode(v, &mut bytes);
    }
    npy::write_bytes(path, dtype.descr(), shape, fortran, &bytes).unwrap();
}

/// A sparse random corpus: `rows × f` values (about a fifth nonzero, on a grid f16 holds
/// exactly plus some with a full mantissa, a few below the 0.01 threshold), with features
/// whose firing depends on the position so sequence structure matters.
struct Corpus {
    values: Vec<f64>,
    tokens: Vec<Vec<String>>,
    f: usize,
}

fn corpus(seed: u64, lengths: &[usize], f: usize) -> Corpus {
    let mut rng = Rng(seed | 1);
    let words = ["the", "cat", " sat", "on", "<mat>", "\n", "dog", "a"];
    let mut values = Vec::new();
    let mut tokens = Vec::new();
    for &len in lengths {
        let mut seq = Vec::new();
        for p in 0..len {
            seq.push(words[rng.below(words.len() as u64) as usize].to_string());
            for j in 0..f {
                let fires = if j % 3 == 0 {
                    p % (2 + j % 5) == 0 // position-locked features
                } else {
                    rng.unit() < 0.2
                };
                let v = if !fires {
                    0.0
                } else if rng.below(4) == 0 {
                    rng.unit() * 6.0
                } else {
                    rng.below(40) as f64 / 8.0 + if rng.below(6) == 0 { 0.005 } else { 0.0 }
                };
                values.push(v);
            }
        }
        tokens.push(seq);
    }
    Corpus { values, tokens, f }
}

fn config() -> DictionaryConfig {
    let mut c = DictionaryConfig::default();
    c.extraction.max_examples_per_feature = 5;
    c.extraction.context_window = 2;
    c
}

fn source(acts: &Path, toks: &Path, vpb: usize) -> DenseSource {
    let m = npy::open(acts).unwrap();
    let t = TokenSequences::from_json_file(toks).unwrap();
    DenseSource::new(m, t, config().extraction.context_window, vpb).unwrap()
}

fn build_dict(acts: &Path, toks: &Path, threads: usize, vpb: usize) -> FeatureDictionary {
    let opts = BuildOptions {
        threads,
        allow_nonfinite: false,
    };
    build(&mut source(acts, toks, vpb), config(), &opts, &mut |_| {}).unwrap()
}

fn accumulate(acts: &Path, toks: &Path, threads: usize, vpb: usize) -> Accumulator {
    let settings = Settings::from_config(&config().extraction).unwrap();
    let mut src = source(acts, toks, vpb);
    let mut acc = Accumulator::new(src.n_features(), settings, threads);
    accumulate_source(&mut src, &mut acc, &BuildOptions::default(), &mut |_| {}).unwrap();
    acc
}

/// Writes `c` as `name`-c.npy (C order), `name`-f.npy (Fortran order) and `name`.json.
fn write_pair(dir: &Path, name: &str, c: &Corpus, dtype: Dtype, shape: &[usize]) -> [PathBuf; 3] {
    let paths = [
        dir.join(format!("{name}-c.npy")),
        dir.join(format!("{name}-f.npy")),
        dir.join(format!("{name}.json")),
    ];
    write_npy(&paths[0], dtype, shape, false, &c.values);
    write_npy(&paths[1], dtype, shape, true, &c.values);
    std::fs::write(&paths[2], serde_json::to_string(&c.tokens).unwrap()).unwrap();
    paths
}

/// Every row range the reader is asked for (batches with margins, cut anywhere) gives the
/// rows of the array, in both orders.
fn assert_rows_match(c: &Corpus, dtype: Dtype, c_path: &Path, f_path: &Path) {
    let (mc, mf) = (npy::open(c_path).unwrap(), npy::open(f_path).unwrap());
    assert!(mf.is_column_major() && !mc.is_column_major());
    assert!(
        !mf.reads_in_place(),
        "a column-major file is gathered into a buffer"
    );
    assert_eq!(
        (mf.n_rows(), mf.n_features(), mf.sequence_shape()),
        (mc.n_rows(), mc.n_features(), mc.sequence_shape())
    );
    let n = mf.n_rows();
    let expected: Vec<f32> = c.values.iter().map(|&v| dtype.read_back(v)).collect();
    let mut rng = Rng(n ^ 0x5eed);
    let mut ranges = vec![0..n, 0..1, n - 1..n, 0..0, 3..3];
    for _ in 0..40 {
        let a = rng.below(n);
        ranges.push(a..a + 1 + rng.below(n - a));
    }
    let (mut bc, mut bf) = (Vec::new(), Vec::new());
    for r in ranges {
        let want = &expected[r.start as usize * c.f..r.end as usize * c.f];
        assert_eq!(
            mf.rows_f32(r.clone(), &mut bf),
            want,
            "{dtype:?} rows {r:?}"
        );
        assert_eq!(
            mc.rows_f32(r.clone(), &mut bc),
            want,
            "{dtype:?} rows {r:?}"
        );
    }
}

/// Builds the C-order and Fortran-order files at several batch sizes (2 and 5 rows cut
/// through sequences, with margins; a few sequences; everything) and 1 and 2 threads.
fn assert_builds_match(c_path: &Path, f_path: &Path, toks: &Path, f: usize, what: &str) {
    let reference = build_dict(c_path, toks, 1, 1 << 20);
    assert!(reference.feature_set.total_tokens_processed > 0);
    assert!(
        reference
            .feature_set
            .features
            .values()
            .filter(|x| x.activation_count > 0)
            .count()
            == f,
        "{what}: every feature should fire"
    );
    for threads in [1, 2] {
        for vpb in [2 * f, 5 * f, 23 * f, 1 << 20] {
            let from_f = build_dict(f_path, toks, threads, vpb);
            assert!(
                from_f == reference,
                "{what}: Fortran order, threads {threads}, {vpb} values per batch"
            );
            assert!(
                accumulate(f_path, toks, threads, vpb) == accumulate(c_path, toks, threads, vpb),
                "{what}: accumulators, threads {threads}, {vpb} values per batch"
            );
        }
    }
}

#[test]
fn rank3_fortran_order_builds_what_c_order_builds() {
    let dir = tempfile::tempdir().unwrap();
    let (s, l, f) = (7, 9, 13);
    let c = corpus(11, &[l; 7], f);
    for dtype in [Dtype::F32, Dtype::F16, Dtype::F64] {
        let name = format!("r3-{dtype:?}");
        let [cp, fp, tp] = write_pair(dir.path(), &name, &c, dtype, &[s, l, f]);
        assert_rows_match(&c, dtype, &cp, &fp);
        assert_builds_match(&cp, &fp, &tp, f, &name);
    }
}

#[test]
fn rank2_fortran_order_builds_what_c_order_builds() {
    let dir = tempfile::tempdir().unwrap();
    // Sequences of varied lengths (1 included) in a [tokens, F] array.
    let lengths = [5, 1, 12, 3, 8, 1, 17, 4];
    let f = 11;
    let c = corpus(23, &lengths, f);
    let rows: usize = lengths.iter().sum();
    for dtype in [Dtype::F32, Dtype::F16, Dtype::F64] {
        let name = format!("r2-{dtype:?}");
        let [cp, fp, tp] = write_pair(dir.path(), &name, &c, dtype, &[rows, f]);
        assert_rows_match(&c, dtype, &cp, &fp);
        assert_builds_match(&cp, &fp, &tp, f, &name);
    }
}

/// Columns long enough that pages behind the scan are dropped as it goes (64 KiB of each
/// column): the rows read after each release are still the file's.
#[test]
fn long_columns_released_behind_the_scan_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let lengths = vec![50; 1000]; // 50,000 tokens: 195 KiB per f32 column
    let f = 3;
    let c = corpus(5, &lengths, f);
    let [cp, fp, tp] = write_pair(dir.path(), "long", &c, Dtype::F32, &[50_000, f]);
    for vpb in [f * 997, f * 20_000] {
        for threads in [1, 2] {
            assert!(
                build_dict(&fp, &tp, threads, vpb) == build_dict(&cp, &tp, threads, vpb),
                "threads {threads}, {vpb} values per batch"
            );
        }
    }
    // Released explicitly, far and in small steps, then read everywhere.
    let m = npy::open(&fp).unwrap();
    let expected: Vec<f32> = c.values.iter().map(|&v| v as f32).collect();
    let mut buf = Vec::new();
    for row in (0..=50_000).step_by(7_001).chain([50_000]) {
        m.release_before(row);
        assert_eq!(m.rows_f32(0..50_000, &mut buf), &expected[..]);
    }
}

fn nonfinite(acts: &Path, toks: &Path, vpb: usize) -> Error {
    let mut src = source(acts, toks, vpb);
    let opts = BuildOptions {
        threads: 2,
        allow_nonfinite: false,
    };
    match build(&mut src, config(), &opts, &mut |_| {}) {
        Err(e) => e,
        Ok(_) => panic!("a NaN was read as a value"),
    }
}

#[test]
fn a_nan_in_a_fortran_order_file_is_reported_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let (s, l, f) = (4, 6, 5);
    let mut c = corpus(3, &[l; 4], f);
    // Sequence 2, position 3, feature 4: row 15, but element 4·24 + 3·4 + 2 = 110 of the
    // Fortran file (element 79 of the C file).
    c.values[(2 * l + 3) * f + 4] = f64::NAN;
    for dtype in [Dtype::F32, Dtype::F16, Dtype::F64] {
        let [cp, fp, tp] = write_pair(dir.path(), &format!("nan-{dtype:?}"), &c, dtype, &[s, l, f]);
        for vpb in [2 * f, 1 << 20] {
            for p in [&cp, &fp] {
                match nonfinite(p, &tp, vpb) {
                    Error::NonFinite {
                        sequence,
                        position,
                        feature,
                        count,
                        ..
                    } => assert_eq!(
                        (sequence, position, feature, count),
                        (2, 3, 4, 1),
                        "{} ({vpb} values per batch)",
                        p.display()
                    ),
                    e => panic!("{}: {e}", p.display()),
                }
            }
        }
    }
    // 2-D: the same location in [tokens, F] terms.
    let [cp, fp, tp] = write_pair(dir.path(), "nan-2d", &c, Dtype::F32, &[s * l, f]);
    for p in [&cp, &fp] {
        let e = nonfinite(p, &tp, 3 * f).to_string();
        assert!(
            e.contains("first at sequence 2, position 3, feature 4")
                && e.contains(p.to_str().unwrap()),
            "{e}"
        );
    }
}

#[test]
fn a_float64_beyond_float32_in_a_fortran_order_file_is_named_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let (s, l, f) = (3, 4, 3);
    let mut c = corpus(9, &[l; 3], f);
    // Two: (sequence 1, position 0, feature 0) comes first in the file (column 0), but
    // (sequence 0, position 2, feature 2) comes first in the array.
    c.values[(l) * f] = 1e39;
    c.values[2 * f + 2] = -2e40;
    let [cp, fp, tp] = write_pair(dir.path(), "big", &c, Dtype::F64, &[s, l, f]);
    for p in [&cp, &fp] {
        for vpb in [f, 1 << 20] {
            let mut src = source(p, &tp, vpb);
            let e = loop {
                match src.next_batch() {
                    Err(e) => break e.to_string(),
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("{}: read without an error", p.display()),
                }
            };
            assert!(
                e.contains("-2e40")
                    && e.contains("sequence 0, position 2, feature 2")
                    && e.contains(p.to_str().unwrap()),
                "{vpb}: {e}"
            );
        }
    }
}

#[test]
fn a_truncated_fortran_order_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let c = corpus(1, &[4, 4], 3);
    let [_, fp, _] = write_pair(dir.path(), "cut", &c, Dtype::F32, &[2, 4, 3]);
    let mut bytes = std::fs::read(&fp).unwrap();
    bytes.truncate(bytes.len() - 4);
    std::fs::write(&fp, &bytes).unwrap();
    let e = npy::open(&fp).unwrap_err().to_string();
    assert!(
        e.contains("cut-f.npy") && e.contains("is truncated") && e.contains("[2, 4, 3]"),
        "{e}"
    );
}

/// bfloat16 comes only from `.safetensors` (always C order), but a column-major matrix of it
/// is gathered like the others.
#[test]
fn bfloat16_columns_are_gathered_too() {
    use feature_dictionary::ingest::{map_file, DenseDtype, DenseMatrix};
    let dir = tempfile::tempdir().unwrap();
    let (s, l, f) = (3, 5, 4);
    let c = corpus(17, &[l; 3], f);
    let bf16 = |v: f64| ((v as f32).to_bits() >> 16) as u16;
    let expected: Vec<f32> = c
        .values
        .iter()
        .map(|&v| f32::from_bits((bf16(v) as u32) << 16))
        .collect();
    let (cp, fp) = (dir.path().join("c.bin"), dir.path().join("f.bin"));
    let mut fortran = Vec::new();
    for j in 0..f {
        for p in 0..l {
            for q in 0..s {
                fortran.extend(bf16(c.values[(q * l + p) * f + j]).to_le_bytes());
            }
        }
    }
    let c_bytes: Vec<u8> = c
        .values
        .iter()
        .flat_map(|&v| bf16(v).to_le_bytes())
        .collect();
    std::fs::write(&cp, c_bytes).unwrap();
    std::fs::write(&fp, fortran).unwrap();
    let shape = [s as u64, l as u64, f as u64];
    let mc = DenseMatrix::new(&cp, map_file(&cp).unwrap(), 0, DenseDtype::BF16, &shape).unwrap();
    let mf =
        DenseMatrix::new_fortran_order(&fp, map_file(&fp).unwrap(), 0, DenseDtype::BF16, &shape)
            .unwrap();
    let (mut bc, mut bf) = (Vec::new(), Vec::new());
    for r in [0..15, 2..9, 4..5, 6..15] {
        let want = &expected[r.start as usize * f..r.end as usize * f];
        assert_eq!(mf.rows_f32(r.clone(), &mut bf), want, "rows {r:?}");
        assert_eq!(mc.rows_f32(r.clone(), &mut bc), want, "rows {r:?}");
    }
}
