//! Every reader of real inputs meets corrupt files: truncations, headers that disagree with
//! the byte length, absurd declared sizes, wrong dtypes, missing tensors, bad configs. Each
//! must give an error naming the file — never a panic or an allocation sized by the header.
//! The random-bytes properties are a cheap stand-in for the cargo-fuzz targets in fuzz/.

use std::path::{Path, PathBuf};

use feature_dictionary::ingest::delphi::{DelphiCache, DelphiSource};
use feature_dictionary::ingest::safetensors::{parse_header, serialize, SafeTensors};
use feature_dictionary::ingest::token_ids::TokenIdMatrix;
use feature_dictionary::ingest::tokenizer::Tokenizer;
use feature_dictionary::ingest::ActivationSource;
use feature_dictionary::ingest::SparseRows;
use feature_dictionary::sae::{EncodeBuffers, Sae, SaeConfig, Weights};
use proptest::prelude::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Opens a delphi shard from bytes and reads every batch; any error is fine, panics are not.
fn read_delphi(bytes: Vec<u8>) -> Result<u64, String> {
    let p = Path::new("0_63.safetensors");
    let st = SafeTensors::from_bytes(p, bytes).map_err(|e| e.to_string())?;
    let cache =
        DelphiCache::from_shards(p, vec![(st, Some((0, 63)))]).map_err(|e| e.to_string())?;
    let tokens = cache
        .token_sequences(None)
        .map_err(|e| e.to_string())?
        .ok_or("no tokens")?;
    let mut src = DelphiSource::new(cache, tokens, 7).map_err(|e| e.to_string())?;
    let mut n = 0;
    while let Some(b) = src.next_batch().map_err(|e| e.to_string())? {
        n += b.core.len() as u64;
    }
    Ok(n)
}

/// A small valid delphi shard: 3 sequences of 4 tokens, latents 0..64.
fn small_shard(loc_dtype: &str) -> Vec<u8> {
    let locs: Vec<[i64; 3]> = vec![[0, 0, 5], [0, 0, 1], [1, 3, 63], [2, 1, 0], [0, 2, 7]];
    let loc_bytes: Vec<u8> = locs
        .iter()
        .flatten()
        .flat_map(|&v| match loc_dtype {
            "U16" => (v as u16).to_le_bytes().to_vec(),
            "U32" => (v as u32).to_le_bytes().to_vec(),
            "I32" => (v as i32).to_le_bytes().to_vec(),
            _ => v.to_le_bytes().to_vec(),
        })
        .collect();
    let acts: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0]
        .iter()
        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
        .collect();
    let toks: Vec<u8> = (0..12i64).flat_map(|v| v.to_le_bytes()).collect();
    serialize(&[
        ("locations", loc_dtype, vec![5, 3], &loc_bytes),
        ("activations", "F16", vec![5], &acts),
        ("tokens", "I64", vec![3, 4], &toks),
    ])
}

#[test]
fn delphi_shards_of_every_location_dtype_read_and_sort_rows() {
    for dt in ["U16", "U32", "I32", "I64"] {
        assert_eq!(read_delphi(small_shard(dt)), Ok(12), "{dt}");
    }
    // Out-of-order entries (sequence 2 before 0) are indexed, not assumed sorted.
    let p = Path::new("0_63.safetensors");
    let st = SafeTensors::from_bytes(p, small_shard("I32")).unwrap();
    let cache = DelphiCache::from_shards(p, vec![(st, Some((0, 63)))]).unwrap();
    let tokens = cache.token_sequences(None).unwrap().unwrap();
    let mut src = DelphiSource::new(cache, tokens, 100).unwrap();
    let b = src.next_batch().unwrap().unwrap();
    assert_eq!(b.value(0, 1), 2.0);
    assert_eq!(b.value(0, 5), 1.0);
    assert_eq!(b.value(7, 63), 3.0);
    assert_eq!(b.value(9, 0), 4.0);
    assert_eq!(b.value(2, 7), 5.0);
}

#[test]
fn corrupt_delphi_shards_are_errors() {
    let good = small_shard("I32");
    // Every truncation.
    for cut in 0..good.len() {
        assert!(read_delphi(good[..cut].to_vec()).is_err(), "cut {cut}");
    }
    let loc = |v: &[i32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let acts: Vec<u8> = [1.0f32].iter().flat_map(|v| v.to_le_bytes()).collect();
    let toks: Vec<u8> = (0..4i32).flat_map(|v| v.to_le_bytes()).collect();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // Latent beyond the shard's 64.
        (
            serialize(&[
                ("locations", "I32", vec![1, 3], &loc(&[0, 0, 64])),
                ("activations", "F32", vec![1], &acts),
                ("tokens", "I32", vec![1, 4], &toks),
            ]),
            "out of range",
        ),
        // A finite float64 beyond float32's range is not a NaN/Inf of the input.
        (
            serialize(&[
                ("locations", "I32", vec![1, 3], &loc(&[0, 2, 1])),
                ("activations", "F64", vec![1], &1e300f64.to_le_bytes()),
                ("tokens", "I32", vec![1, 4], &toks),
            ]),
            "float64 activation 1e300 at sequence 0, position 2, latent 1 is outside the float32 range",
        ),
        // Position beyond the sequence.
        (
            serialize(&[
                ("locations", "I32", vec![1, 3], &loc(&[0, 4, 1])),
                ("activations", "F32", vec![1], &acts),
                ("tokens", "I32", vec![1, 4], &toks),
            ]),
            "out of range",
        ),
        // Negative sequence.
        (
            serialize(&[
                ("locations", "I32", vec![1, 3], &loc(&[-1, 0, 1])),
                ("activations", "F32", vec![1], &acts),
                ("tokens", "I32", vec![1, 4], &toks),
            ]),
            "out of range",
        ),
        // Duplicate entry.
        (
            serialize(&[
                ("locations", "I32", vec![2, 3], &loc(&[0, 0, 1, 0, 0, 1])),
                (
                    "activations",
                    "F32",
                    vec![2],
                    &[acts.clone(), acts.clone()].concat(),
                ),
                ("tokens", "I32", vec![1, 4], &toks),
            ]),
            "twice",
        ),
        // Wrong dtypes.
        (
            serialize(&[
                ("locations", "F32", vec![1, 3], &loc(&[0, 0, 1])),
                ("activations", "F32", vec![1], &acts),
                ("tokens", "I32", vec![1, 4], &toks),
            ]),
            "integer",
        ),
        (
            serialize(&[
                ("locations", "I32", vec![1, 3], &loc(&[0, 0, 1])),
                ("activations", "I32", vec![1], &acts),
                ("tokens", "I32", vec![1, 4], &toks),
            ]),
            "expected F16, BF16, F32 or F64",
        ),
        // Missing tensor.
        (
            serialize(&[
                ("locations", "I32", vec![1, 3], &loc(&[0, 0, 1])),
                ("tokens", "I32", vec![1, 4], &toks),
            ]),
            "missing tensor \"activations\"",
        ),
        // Shapes that disagree.
        (
            serialize(&[
                ("locations", "I32", vec![3, 1], &loc(&[0, 0, 1])),
                ("activations", "F32", vec![1], &acts),
                ("tokens", "I32", vec![1, 4], &toks),
            ]),
            "expected [N, 3]",
        ),
        (
            serialize(&[
                ("locations", "I32", vec![1, 3], &loc(&[0, 0, 1])),
                ("activations", "F32", vec![1], &acts),
                ("tokens", "I32", vec![4], &toks),
            ]),
            "[sequences, seq_len]",
        ),
    ];
    for (bytes, needle) in cases {
        let e = read_delphi(bytes).unwrap_err();
        assert!(
            e.contains(needle) && e.contains("0_63.safetensors"),
            "{needle}: {e}"
        );
    }
    // Header length 2^60.
    let mut huge = good.clone();
    huge[..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(read_delphi(huge).unwrap_err().contains("header"));
}

/// A cache whose last shards are missing, or that does not say its SAE's width, must not
/// silently lose latents (they used to be absent from the dictionary, not reported dead):
/// delphi's `n_splits` names the missing shards; a lone file with absolute indices has its
/// width guessed (and says so) unless it is given, which is checked against what the shards
/// say.
#[test]
fn delphi_caches_missing_their_last_latents_are_refused_or_given_their_width() {
    let tmp = tempfile::tempdir().unwrap();
    let shard = tmp.path().join("0_63.safetensors");
    std::fs::write(&shard, small_shard("U16")).unwrap();
    std::fs::write(tmp.path().join("config.json"), r#"{"n_splits": 2}"#).unwrap();
    let e = DelphiCache::open(tmp.path()).unwrap_err().to_string();
    assert!(
        e.contains("saved in 2 shards (n_splits)")
            && e.contains("holds 1 shard file, the last ending at latent 63 (0_63.safetensors)"),
        "{e}"
    );
    let e = DelphiCache::open(&shard).unwrap_err().to_string();
    assert!(e.contains("so pass its directory"), "{e}");
    std::fs::write(tmp.path().join("config.json"), r#"{"n_splits": 1}"#).unwrap();
    let cache = DelphiCache::open(tmp.path()).unwrap();
    assert_eq!(
        (cache.n_features(), cache.n_features_guessed()),
        (64, false)
    );
    let e = DelphiCache::open(tmp.path())
        .unwrap()
        .with_n_latents(128)
        .unwrap_err()
        .to_string();
    assert!(e.contains("latents 64..=127 are in no shard"), "{e}");
    assert!(DelphiCache::open(tmp.path())
        .unwrap()
        .with_n_latents(32)
        .is_err());
    assert_eq!(
        DelphiCache::open(tmp.path())
            .unwrap()
            .with_n_latents(64)
            .unwrap()
            .n_features(),
        64
    );
    // A lone file with absolute indices: the largest latent that fired is 63.
    let lone_dir = tempfile::tempdir().unwrap();
    let lone = lone_dir.path().join("layers.3.safetensors");
    std::fs::write(&lone, small_shard("U16")).unwrap();
    let cache = DelphiCache::open(&lone).unwrap();
    assert_eq!((cache.n_features(), cache.n_features_guessed()), (64, true));
    let given = DelphiCache::open(&lone)
        .unwrap()
        .with_n_latents(100)
        .unwrap();
    assert_eq!(
        (given.n_features(), given.n_features_guessed()),
        (100, false)
    );
    let e = DelphiCache::open(&lone)
        .unwrap()
        .with_n_latents(50)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("holds latent 63 but the SAE is said to have 50 latents"),
        "{e}"
    );
}

#[test]
fn delphi_directory_errors_name_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let e = DelphiCache::open(tmp.path()).unwrap_err().to_string();
    assert!(
        e.contains("is a directory without <start>_<end>.safetensors shards"),
        "{e}"
    );
    std::fs::create_dir(tmp.path().join("layers.3")).unwrap();
    let e = DelphiCache::open(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("layers.3"), "{e}");
    std::fs::write(tmp.path().join("0_63.safetensors"), small_shard("U16")).unwrap();
    std::fs::write(tmp.path().join("32_95.safetensors"), small_shard("U16")).unwrap();
    let e = DelphiCache::open(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("overlaps"), "{e}");
    std::fs::write(tmp.path().join("nonsense.safetensors"), small_shard("U16")).unwrap();
    let e = DelphiCache::open(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("<start>_<end>"), "{e}");
    // Shards that do not start at latent 0: the missing first shard is named, whether
    // the directory or the lone shard file is given.
    let later = tempfile::tempdir().unwrap();
    let shard = later.path().join("64_127.safetensors");
    std::fs::write(&shard, small_shard("U16")).unwrap();
    for given in [later.path(), shard.as_path()] {
        let e = DelphiCache::open(given).unwrap_err().to_string();
        assert!(
            e.contains("latents 0..=63 are in no shard") && e.contains("0_63.safetensors missing"),
            "{e}"
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn corrupt_sae_directories_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("sae/topk_f32");
    let d = tmp.path().join("sae");
    copy_dir(&src, &d);
    assert!(Sae::load(&d).is_ok());
    let cfg = std::fs::read_to_string(src.join("cfg.json")).unwrap();
    let check = |cfg: String, needle: &str| {
        std::fs::write(d.join("cfg.json"), cfg).unwrap();
        let e = Sae::load(&d).unwrap_err().to_string();
        assert!(e.contains(needle), "{needle}: {e}");
    };
    check(
        cfg.replace("\"topk\"", "\"mystery\""),
        "unknown SAE architecture \"mystery\"",
    );
    check(
        cfg.replace("\"d_in\": 16", "\"d_in\": 17"),
        "expected [17, 64] from d_in/d_sae",
    );
    check(
        cfg.replace("\"d_sae\": 64", "\"d_sae\": 65"),
        "from d_in/d_sae",
    );
    check(cfg[..cfg.len() / 2].to_string(), "cfg.json");
    std::fs::write(d.join("cfg.json"), &cfg).unwrap();
    // Truncated weights, at every cut.
    let w = std::fs::read(src.join("sae_weights.safetensors")).unwrap();
    for cut in (0..w.len()).step_by(97) {
        std::fs::write(d.join("sae_weights.safetensors"), &w[..cut]).unwrap();
        let e = Sae::load(&d).unwrap_err().to_string();
        assert!(e.contains("sae_weights.safetensors"), "cut {cut}: {e}");
    }
    // Missing tensor.
    let st = SafeTensors::from_bytes(Path::new("w"), w.clone()).unwrap();
    let keep: Vec<_> = st
        .tensors()
        .iter()
        .filter(|t| t.name != "b_enc")
        .cloned()
        .collect();
    let parts: Vec<(&str, &str, Vec<u64>, &[u8])> = keep
        .iter()
        .map(|t| {
            (
                t.name.as_str(),
                t.dtype.as_str(),
                t.shape.clone(),
                st.bytes(t),
            )
        })
        .collect();
    std::fs::write(d.join("sae_weights.safetensors"), serialize(&parts)).unwrap();
    let e = Sae::load(&d).unwrap_err().to_string();
    assert!(e.contains("missing tensor b_enc"), "{e}");
    // Integer weights.
    let parts: Vec<(&str, &str, Vec<u64>, &[u8])> = st
        .tensors()
        .iter()
        .map(|t| {
            (
                t.name.as_str(),
                if t.name == "W_enc" {
                    "I32"
                } else {
                    t.dtype.as_str()
                },
                t.shape.clone(),
                st.bytes(t),
            )
        })
        .collect();
    std::fs::write(d.join("sae_weights.safetensors"), serialize(&parts)).unwrap();
    let e = Sae::load(&d).unwrap_err().to_string();
    assert!(
        e.contains("tensor W_enc has dtype I32; SAE weights must be little-endian floats"),
        "{e}"
    );
    // No weights at all.
    std::fs::remove_file(d.join("sae_weights.safetensors")).unwrap();
    let e = Sae::load(&d).unwrap_err().to_string();
    assert!(
        e.contains(
            "no sae_weights.safetensors (SAELens), sae.safetensors (sparsify) or params.npz"
        ),
        "{e}"
    );
    // A corrupt npz.
    let npz = std::fs::read(fixtures().join("sae/gemmascope_npz/params.npz")).unwrap();
    for cut in (0..npz.len()).step_by(61) {
        assert!(
            Weights::from_npz_bytes(Path::new("params.npz"), &npz[..cut]).is_err(),
            "cut {cut}"
        );
    }
}

/// A NaN or ±Inf in any tensor an SAE reads (encoder, biases, thresholds, gates, decoder,
/// skip connection; every architecture and dtype of the fixtures, and a Gemma Scope .npz)
/// is an error at load naming the weight file, the tensor and the element: encoding used to
/// turn it into NaN latents blamed on the residuals file.
#[test]
fn nonfinite_sae_weights_are_errors_naming_tensor_and_element() {
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    let mut dirs: Vec<_> = std::fs::read_dir(fixtures().join("sae"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for src in dirs {
        let name = src.file_name().unwrap().to_str().unwrap().to_string();
        let file = ["sae_weights.safetensors", "sae.safetensors"]
            .into_iter()
            .find(|f| src.join(f).is_file());
        let Some(file) = file else { continue };
        let st = SafeTensors::open(&src.join(file)).unwrap();
        let tensors: Vec<(String, Vec<u64>)> = st
            .tensors()
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone()))
            .collect();
        drop(st);
        for (tensor, shape) in tensors {
            for (bad, shown) in [(f32::NAN, "NaN"), (f32::NEG_INFINITY, "-inf")] {
                let d = tmp.path().join(format!("{name}-{tensor}"));
                copy_dir(&src, &d);
                rewrite_tensors(&d.join(file), |parts| {
                    let (_, dtype, _, bytes) =
                        parts.iter_mut().find(|p| p.0 == tensor).expect("tensor");
                    let v = match dtype.as_str() {
                        "F32" => bad.to_le_bytes().to_vec(),
                        "F16" => half::f16::from_f32(bad).to_le_bytes().to_vec(),
                        "BF16" => half::bf16::from_f32(bad).to_le_bytes().to_vec(),
                        other => panic!("{name}: dtype {other}"),
                    };
                    // The last element: row r-1, column c-1 of a matrix.
                    let at = bytes.len() - v.len();
                    bytes[at..].copy_from_slice(&v);
                });
                let e = Sae::load(&d).unwrap_err().to_string();
                let at = match shape[..] {
                    [r, c] => format!("row {}, column {}", r - 1, c - 1),
                    [n] => format!("index {}", n - 1),
                    _ => panic!("{name}: {tensor} {shape:?}"),
                };
                let want = format!(
                    "{}: tensor {tensor:?} {shape:?} holds {shown} at {at} (the only non-finite value); every weight of an SAE must be finite",
                    d.join(file).display()
                );
                assert!(e.starts_with(&want), "{name}:\n{e}\n{want}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 2 * 60, "{checked}");
    // Gemma Scope's params.npz: the same check on the arrays of a zip.
    let npz = fixtures().join("sae/gemmascope_npz/params.npz");
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&npz).unwrap()).unwrap();
    let d = tmp.path().join("gemmascope");
    std::fs::create_dir_all(&d).unwrap();
    let mut out = zip::ZipWriter::new(std::fs::File::create(d.join("params.npz")).unwrap());
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        if entry.name() == "threshold.npy" {
            // float32 [64]: the last 4 bytes are element 63.
            let at = bytes.len() - 4;
            bytes[at..].copy_from_slice(&f32::INFINITY.to_le_bytes());
        }
        out.start_file(entry.name(), zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut out, &bytes).unwrap();
    }
    out.finish().unwrap();
    let e = Sae::load(&d).unwrap_err().to_string();
    assert!(
        e.contains("params.npz: tensor \"threshold\" [64] holds inf at index 63"),
        "{e}"
    );
}

/// Rewrites `file` (a safetensors file) with `edit` applied to its (name, dtype, shape,
/// bytes) list.
fn rewrite_tensors(file: &Path, edit: impl FnOnce(&mut Vec<(String, String, Vec<u64>, Vec<u8>)>)) {
    let st = SafeTensors::open(file).unwrap();
    let mut parts: Vec<(String, String, Vec<u64>, Vec<u8>)> = st
        .tensors()
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.dtype.clone(),
                t.shape.clone(),
                st.bytes(t).to_vec(),
            )
        })
        .collect();
    drop(st);
    edit(&mut parts);
    let refs: Vec<(&str, &str, Vec<u64>, &[u8])> = parts
        .iter()
        .map(|(n, d, s, b)| (n.as_str(), d.as_str(), s.clone(), b.as_slice()))
        .collect();
    std::fs::write(file, serialize(&refs)).unwrap();
}

/// sparsify directories: a checkpoint root with one directory per hookpoint, missing and
/// misshapen tensors, configs that disagree with the weights, k out of range and unknown
/// activations are errors naming the file, what was expected and what was found.
#[test]
fn sparsify_directory_errors_name_the_file_and_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("sae/sparsify_topk_bf16");
    let root = tmp.path().join("checkpoints");
    for layer in ["layers.9", "layers.10", "layers.2"] {
        std::fs::create_dir_all(root.join(layer)).unwrap();
        for f in ["cfg.json", "sae.safetensors"] {
            std::fs::copy(src.join(f), root.join(layer).join(f)).unwrap();
        }
    }
    std::fs::create_dir_all(root.join("wandb")).unwrap();
    std::fs::write(root.join("config.json"), "{}").unwrap();
    let d = root.join("layers.9");
    let loaded = Sae::load(&d).unwrap();
    assert_eq!(loaded.config().hook_name.as_deref(), Some("layers.9"));
    let err = |dir: &Path| Sae::load(dir).unwrap_err().to_string();

    // The checkpoint root: its hookpoints, in numeric order, and not the other folder.
    let e = err(&root);
    assert!(
        e.contains(root.to_str().unwrap())
            && e.contains(
                "no cfg.json but hookpoint subdirectories (layers.2, layers.9, layers.10)"
            )
            && e.contains("pass the one to use"),
        "{e}"
    );

    let weights = d.join("sae.safetensors");
    let w = std::fs::read(&weights).unwrap();
    let cfg = std::fs::read_to_string(d.join("cfg.json")).unwrap();
    let restore = || {
        std::fs::write(&weights, &w).unwrap();
        std::fs::write(d.join("cfg.json"), &cfg).unwrap();
    };

    // Tensors missing, misshapen or of the SAELens layout.
    for (edit, needles) in [
        (
            "drop encoder.bias",
            &[
                "sae.safetensors",
                "missing tensor encoder.bias (shape [64])",
                "encoder.weight [64, 16]",
            ][..],
        ),
        (
            "drop encoder.weight",
            &[
                "sae.safetensors",
                "missing tensor encoder.weight (shape [64, 16])",
            ],
        ),
        (
            "drop b_dec",
            &["sae.safetensors", "missing tensor b_dec (shape [16])"],
        ),
        (
            "transpose encoder.weight",
            &[
                "sae.safetensors",
                "encoder.weight has shape [16, 64]; expected [num_latents, d_in] = [64, 16]",
            ],
        ),
        (
            "shorten encoder.bias",
            &[
                "sae.safetensors",
                "tensor encoder.bias has shape [32]; expected [64]",
            ],
        ),
        (
            "shorten W_dec",
            &[
                "sae.safetensors",
                "W_dec has shape [32, 16]; expected [64, 16]",
            ],
        ),
    ] {
        rewrite_tensors(&weights, |parts| {
            let (verb, name) = edit.split_once(' ').unwrap();
            let i = parts.iter().position(|p| p.0 == name).unwrap();
            match verb {
                "drop" => {
                    parts.remove(i);
                }
                "transpose" => parts[i].2.reverse(),
                _ => {
                    let p = &mut parts[i];
                    p.2[0] /= 2;
                    let n = p.3.len() / 2;
                    p.3.truncate(n);
                }
            }
        });
        let e = err(&d);
        for n in needles {
            assert!(e.contains(n), "{edit}: lacks {n:?}: {e}");
        }
        restore();
    }

    // Configs that disagree with the weights, or are out of range.
    let check = |new_cfg: String, needles: &[&str]| {
        std::fs::write(d.join("cfg.json"), new_cfg).unwrap();
        let e = err(&d);
        for n in needles {
            assert!(e.contains(n), "lacks {n:?}: {e}");
        }
        restore();
    };
    check(
        cfg.replace("\"num_latents\": 0", "\"num_latents\": 32"),
        &[
            "sae.safetensors",
            "encoder.weight has shape [64, 16]; expected [num_latents, d_in] = [32, 16]",
        ],
    );
    check(
        cfg.replace("\"d_in\": 16", "\"d_in\": 8"),
        &[
            "sae.safetensors",
            "encoder.weight has shape [64, 16]; expected [num_latents, d_in] = [32, 8]",
        ],
    );
    check(
        cfg.replace("\"k\": 8", "\"k\": 0"),
        &[
            "layers.9/cfg.json",
            "\"k\" is 0; expected an integer between 1 and the number of latents, 64",
        ],
    );
    check(
        cfg.replace("\"k\": 8", "\"k\": 65"),
        &[
            "layers.9/cfg.json",
            "\"k\" is 65; expected an integer between 1 and the number of latents, 64",
        ],
    );
    check(
        cfg.replace("\"topk\"", "\"batchtopk\""),
        &[
            "layers.9/cfg.json",
            "unsupported sparsify activation \"batchtopk\"; supported: \"topk\", \"groupmax\"",
        ],
    );
    check(
        cfg.replace("\"topk\"", "\"groupmax\"")
            .replace("\"k\": 8", "\"k\": 7"),
        &["layers.9/cfg.json", "64 is not a multiple of 7"],
    );
    check(
        cfg[..cfg.len() / 2].to_string(),
        &["layers.9/cfg.json", "not a valid sparsify cfg.json"],
    );

    // Truncated weights, at every cut.
    for cut in (0..w.len()).step_by(89) {
        std::fs::write(&weights, &w[..cut]).unwrap();
        let e = err(&d);
        assert!(e.contains("sae.safetensors"), "cut {cut}: {e}");
    }
    restore();

    // A lone sae.safetensors, and both libraries' weight files at once.
    std::fs::remove_file(d.join("cfg.json")).unwrap();
    let e = err(&d);
    assert!(e.contains("has sae.safetensors but no cfg.json"), "{e}");
    restore();
    std::fs::copy(
        fixtures().join("sae/topk_f32/sae_weights.safetensors"),
        d.join("sae_weights.safetensors"),
    )
    .unwrap();
    let e = err(&d);
    assert!(
        e.contains("both sae_weights.safetensors (SAELens) and sae.safetensors (sparsify)"),
        "{e}"
    );
    std::fs::remove_file(d.join("sae_weights.safetensors")).unwrap();
    assert!(Sae::load(&d).is_ok());
}

#[test]
fn token_id_and_tokenizer_files_reject_corruption() {
    let ids = std::fs::read(fixtures().join("smollm2/token_ids.npy")).unwrap();
    for cut in (0..ids.len()).step_by(331) {
        assert!(
            TokenIdMatrix::from_npy_bytes(Path::new("ids.npy"), &ids[..cut]).is_err(),
            "cut {cut}"
        );
    }
    let tok = std::fs::read(fixtures().join("smollm2/tokenizer.json")).unwrap();
    for cut in [0, 1, 100, tok.len() / 2, tok.len() - 1] {
        let e = Tokenizer::from_slice(Path::new("tokenizer.json"), &tok[..cut])
            .unwrap_err()
            .to_string();
        assert!(e.contains("tokenizer.json"), "{e}");
    }
}

#[test]
fn empty_input_files_say_what_they_should_hold() {
    let dir = tempfile::tempdir().unwrap();
    let empty = |name: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, b"").unwrap();
        p
    };
    let check = |e: String, name: &str, expected: &str| {
        assert!(
            e.contains(name) && e.contains("empty") && e.contains(expected),
            "{e}"
        );
    };
    let p = empty("acts.npy");
    check(
        feature_dictionary::ingest::npy::open(&p)
            .unwrap_err()
            .to_string(),
        "acts.npy",
        "expected a NumPy .npy array",
    );
    let p = empty("tokens.json");
    check(
        feature_dictionary::ingest::TokenSequences::from_json_file(&p)
            .unwrap_err()
            .to_string(),
        "tokens.json",
        "expected a JSON list of lists of token strings",
    );
    let p = empty("ids.npy");
    check(
        TokenIdMatrix::from_npy(&p).unwrap_err().to_string(),
        "ids.npy",
        "expected a NumPy .npy array of token ids",
    );
    let p = empty("tokenizer.json");
    check(
        Tokenizer::from_file(&p).unwrap_err().to_string(),
        "tokenizer.json",
        "expected a HuggingFace tokenizer.json",
    );
    let p = empty("acts.safetensors");
    check(
        SafeTensors::open(&p).unwrap_err().to_string(),
        "acts.safetensors",
        "expected a .safetensors file",
    );
    // A directory where a file is expected says what file.
    let e = Tokenizer::from_file(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("is a directory") && e.contains("tokenizer.json"),
        "{e}"
    );
}

/// A C-order float64 `.npy` of `shape` (format 1.0).
fn f64_npy(path: &Path, shape: &str, data: &[f64]) {
    let dict = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}\n");
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((dict.len() as u16).to_le_bytes());
    b.extend(dict.as_bytes());
    for v in data {
        b.extend(v.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_finite_float64_beyond_float32_is_named_not_called_nan_or_inf() {
    use feature_dictionary::ingest::{npy, DenseSource, TokenSequences};
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("acts64.npy");
    // 2 sequences x 3 positions x 2 features; 1e39 fits a float64, not a float32.
    let mut data = vec![0.5f64; 12];
    data[2 * 4 + 1] = 1e39; // sequence 1, position 1, feature 1
    f64_npy(&p, "(2, 3, 2)", &data);
    let tokens = TokenSequences::from_strings(&[vec!["a", "b", "c"], vec!["d", "e", "f"]]);
    let mut source = DenseSource::new(npy::open(&p).unwrap(), tokens, 2, 1 << 20).unwrap();
    let e = match source.next_batch() {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a float64 beyond the float32 range was read as a value"),
    };
    assert!(
        e.contains("acts64.npy")
            && e.contains("1e39")
            && e.contains("sequence 1, position 1, feature 1")
            && e.contains("float32"),
        "{e}"
    );
    // A real infinity is still left to the build's non-finite handling (--allow-nonfinite).
    data[2 * 4 + 1] = f64::INFINITY;
    f64_npy(&p, "(2, 3, 2)", &data);
    let tokens = TokenSequences::from_strings(&[vec!["a", "b", "c"], vec!["d", "e", "f"]]);
    let mut source = DenseSource::new(npy::open(&p).unwrap(), tokens, 2, 1 << 20).unwrap();
    assert!(source.next_batch().unwrap().is_some());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let p = Path::new("random");
        let _ = parse_header(p, &bytes);
        let _ = read_delphi(bytes.clone());
        let _ = TokenIdMatrix::from_npy_bytes(p, &bytes);
        let _ = Tokenizer::from_slice(p, &bytes);
        let _ = SaeConfig::from_slice(p, &bytes);
        let _ = SaeConfig::from_sparsify_slice(p, &bytes);
        let _ = Weights::from_npz_bytes(p, &bytes);
        if let Ok(st) = SafeTensors::from_bytes(p, bytes) {
            let _ = Weights::from_st(&st);
        }
    }

    #[test]
    fn mutated_valid_files_never_panic(
        which in 0usize..5,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = match which {
            0 => small_shard("U16"),
            1 => small_shard("I64"),
            2 => std::fs::read(fixtures().join("sae/gemmascope_npz/params.npz")).unwrap(),
            3 => std::fs::read(fixtures().join("sae/gated_f32/sae_weights.safetensors")).unwrap(),
            _ => std::fs::read(fixtures().join("sae/sparsify_topk_bf16/sae.safetensors")).unwrap(),
        };
        for (i, b) in edits {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        let p = Path::new("mutated");
        match which {
            0 | 1 => { let _ = read_delphi(bytes); }
            2 => { let _ = Weights::from_npz_bytes(p, &bytes); }
            _ => {
                if let Ok(st) = SafeTensors::from_bytes(p, bytes) {
                    if let Ok(w) = Weights::from_st(&st) {
                        let cfg = if which == 3 {
                            SaeConfig::from_slice(p, br#"{"architecture":"gated","d_in":16,"d_sae":64}"#)
                        } else {
                            SaeConfig::from_sparsify_slice(p, br#"{"d_in":16,"expansion_factor":4,"k":8}"#)
                        };
                        if let Ok(sae) = Sae::from_parts(p, cfg.unwrap(), w) {
                            let mut rows = SparseRows::default();
                            sae.encode(&[0.5; 16], &mut rows, &mut EncodeBuffers::default(), 1);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn shards_must_repeat_the_same_tokens_whatever_their_dtype() {
    // Two shards (latents 0–63 and 64–127), each with one entry, and a `tokens` tensor.
    let shard = |first: bool, dtype: &str, tokens: &[i64]| -> SafeTensors {
        let locs: Vec<u8> = [0i32, 1, 3].iter().flat_map(|v| v.to_le_bytes()).collect();
        let acts: Vec<u8> = 1.5f32.to_le_bytes().to_vec();
        let toks: Vec<u8> = tokens
            .iter()
            .flat_map(|&v| match dtype {
                "I32" => (v as i32).to_le_bytes().to_vec(),
                _ => v.to_le_bytes().to_vec(),
            })
            .collect();
        let name = if first {
            "0_63.safetensors"
        } else {
            "64_127.safetensors"
        };
        let bytes = serialize(&[
            ("locations", "I32", vec![1, 3], &locs),
            ("activations", "F32", vec![1], &acts),
            ("tokens", dtype, vec![2, 4], &toks),
        ]);
        SafeTensors::from_bytes(Path::new(name), bytes).unwrap()
    };
    let open = |a: SafeTensors, b: SafeTensors| {
        DelphiCache::from_shards(
            Path::new("cache"),
            vec![(a, Some((0, 63))), (b, Some((64, 127)))],
        )
    };
    let ids = [5i64, 6, 7, 8, 9, 10, 11, 12];
    // The same values, as I64 in one shard and I32 in the other: one cache, whose tokens read
    // back as those values.
    let cache = open(shard(true, "I64", &ids), shard(false, "I32", &ids)).unwrap();
    let tokens = cache.token_sequences(None).unwrap().unwrap();
    let names: Vec<String> = tokens
        .ids(0..8)
        .unwrap()
        .into_iter()
        .map(|id| tokens.vocab().token(id).into_owned())
        .collect();
    assert_eq!(
        names,
        ["[5]", "[6]", "[7]", "[8]", "[9]", "[10]", "[11]", "[12]"]
    );
    assert!(open(shard(true, "I64", &ids), shard(false, "I64", &ids)).is_ok());
    // One value differs, in either dtype pairing: an error naming both shards.
    let mut other = ids;
    other[6] = 99;
    for dtype in ["I64", "I32"] {
        let e = open(shard(true, "I64", &ids), shard(false, dtype, &other))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("64_127.safetensors")
                && e.contains("differs from the one in 0_63.safetensors"),
            "{dtype}: {e}"
        );
    }
}

/// A dictionary JSON as a person edits it: the original's layout, indented, one feature (3)
/// with two examples, each context holding its token where `context_start` says.
fn dictionary_json() -> serde_json::Value {
    let example = |token: &str, position: u32, start: u32, context: &[&str]| {
        serde_json::json!({
            "feature_id": 3, "token": token, "position": position, "activation": 2.0,
            "context": context.join(" "), "context_tokens": context,
            "metadata": {"sequence": 0, "context_start": start,
                         "context_activations": vec![0.5; context.len()]}
        })
    };
    serde_json::json!({
        "config": {"extraction": {"context_window": 2}, "name": "d"},
        "feature_set": {
            "layer": 0,
            "features": {"3": {
                "id": 3, "dimension": 4, "activation_count": 2, "mean_activation": 1.5,
                "max_activation": 2.0, "activation_frequency": 0.1,
                "top_activations": [
                    example("the", 1, 0, &["in", "the", "city"]),
                    example("York", 10, 8, &["in", "New", "York", "City", "."]),
                ],
                "labels": ["token:York"], "description": "", "confidence": 0.5,
                "feature_type": "moderate",
                "metadata": {"std_activation": 0.5, "quantile_examples": [{
                    "min_activation": 1.0, "max_activation": 2.0, "count": 2,
                    "examples": [example("York", 10, 8, &["in", "New", "York", "City", "."])]
                }]}
            }},
            "total_tokens_processed": 20, "model_name": "", "sae_name": "", "metadata": {}
        },
        "statistics": {}
    })
}

/// Loads `doc` written indented to `path`; the error, with the line serde_json names
/// checked against the line of `needle` in the text (`None`: any line).
fn load_error(path: &Path, doc: &serde_json::Value, needle: Option<&str>) -> String {
    let text = serde_json::to_string_pretty(doc).unwrap();
    std::fs::write(path, &text).unwrap();
    let e = feature_dictionary::store::load(path)
        .unwrap_err()
        .to_string();
    let line = match needle {
        Some(needle) => {
            1 + text
                .lines()
                .position(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("{needle:?} is not in the text"))
        }
        None => 1 + text.lines().count(),
    };
    let said = e
        .rsplit_once(" at line ")
        .map(|(_, at)| at.split_once(' ').unwrap().0);
    match needle {
        Some(_) => assert_eq!(said, Some(line.to_string().as_str()), "{e}"),
        None => assert!(
            said.is_some_and(|l| l.parse::<usize>().unwrap() <= line),
            "{e}"
        ),
    }
    e
}

/// A value of the wrong type in a hand-edited dictionary is named by its path in the
/// document, after the file, with serde's line and column still given: "invalid type:
/// string, expected f64 at line 40" alone does not say which of a million features to fix.
#[test]
fn type_errors_in_a_dictionary_json_name_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hand.json");
    let file = path.display().to_string();
    std::fs::write(&path, dictionary_json().to_string()).unwrap();
    feature_dictionary::store::load(&path).unwrap();

    let mut doc = dictionary_json();
    doc["feature_set"]["features"]["3"]["metadata"]["std_activation"] = "x".into();
    let e = load_error(&path, &doc, Some("\"std_activation\": \"x\""));
    assert!(
        e.starts_with(&format!(
            "{file}: feature_set.features[\"3\"].metadata.std_activation: invalid type: string \"x\", expected f64 at line"
        )),
        "{e}"
    );

    let mut doc = dictionary_json();
    doc["feature_set"]["features"]["3"]["top_activations"][1]["position"] = (-1).into();
    let e = load_error(&path, &doc, Some("\"position\": -1"));
    assert!(
        e.starts_with(&format!(
            "{file}: feature_set.features[\"3\"].top_activations[1].position: invalid value: integer `-1`, expected u32 at line"
        )),
        "{e}"
    );

    let mut doc = dictionary_json();
    doc["feature_set"]["features"]["3"]["labels"][0] = 5.25.into();
    let e = load_error(&path, &doc, Some("5.25"));
    assert!(
        e.contains(
            "feature_set.features[\"3\"].labels[0]: invalid type: floating point `5.25`, expected a string"
        ),
        "{e}"
    );

    // The extraction settings are read through a buffer of their own; still named.
    let mut doc = dictionary_json();
    doc["config"]["extraction"]["context_window"] = "wide".into();
    let e = load_error(&path, &doc, None);
    assert!(
        e.starts_with(&format!(
            "{file}: config.extraction: context_window: invalid type: string \"wide\", expected usize at line"
        )),
        "{e}"
    );

    // A file cut short: where the text ends (keys are written sorted, so inside the
    // quantile group's example, before the top examples).
    let text = serde_json::to_string_pretty(&dictionary_json()).unwrap();
    let cut = text.find("\"City\"").unwrap();
    std::fs::write(&path, &text[..cut]).unwrap();
    let e = feature_dictionary::store::load(&path)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "{file}: feature_set.features[\"3\"].metadata.quantile_examples[0].examples[0].context_tokens: EOF while parsing"
        )),
        "{e}"
    );

    // What is wrong with the document as a whole still says what it should be.
    std::fs::write(&path, r#"{"config": {}}"#).unwrap();
    let e = feature_dictionary::store::load(&path)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "{file}: not a feature dictionary JSON (expected a JSON object"
        )) && e.contains("missing field `feature_set`"),
        "{e}"
    );
}

/// Contradictions a hand-edited file can hold, which every count or export downstream would
/// repeat: a declared width below a stored id (read as widened to the ids stored, as a
/// feature added by hand in Python widens it: "3 features, 16 in file" was printed),
/// histogram bins that do not exist (refused).
#[test]
fn contradictory_dictionary_fields_are_refused_or_reconciled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hand.json");
    let file = path.display().to_string();
    let load = |doc: &serde_json::Value| {
        std::fs::write(&path, serde_json::to_string(doc).unwrap()).unwrap();
        feature_dictionary::store::load(&path).map_err(|e| e.to_string())
    };
    assert!(load(&dictionary_json()).is_ok());
    for at in [
        &["config", "num_features"][..],
        &["feature_set", "metadata", "num_features"][..],
    ] {
        let with = |n: u64| {
            let mut doc = dictionary_json();
            let mut v = &mut doc;
            for key in at {
                v = &mut v[*key];
            }
            *v = n.into();
            doc
        };
        assert_eq!(load(&with(3)).unwrap().num_features(), 4, "{at:?}");
        assert_eq!(load(&with(9)).unwrap().num_features(), 9, "{at:?}");
    }
    let histogram = |bins_per_octave: u32, counts: serde_json::Value| {
        let mut doc = dictionary_json();
        doc["feature_set"]["features"]["3"]["metadata"]["histogram"] = serde_json::json!({
            "bins_per_octave": bins_per_octave, "min_exponent": -10, "n_bins": 208,
            "counts": counts
        });
        load(&doc)
    };
    assert!(histogram(8, serde_json::json!([[80, 1], [88, 1]])).is_ok());
    for (bpo, counts, wanted) in [
        (
            8,
            serde_json::json!([[99999, 2]]),
            "bin 99999 is outside its 208 bins",
        ),
        (
            8,
            serde_json::json!([[88, 1], [80, 1]]),
            "bin 80 follows bin 88",
        ),
        (
            8,
            serde_json::json!([[80, 1], [80, 1]]),
            "bin 80 follows bin 80",
        ),
        (0, serde_json::json!([[80, 2]]), "with 0 per octave"),
    ] {
        let e = histogram(bpo, counts).unwrap_err();
        assert!(
            e.starts_with(&format!(
                "{file}: feature_set.features[\"3\"].metadata.histogram: "
            )) && e.contains(wanted),
            "{e}"
        );
    }
}

/// An example whose `context_start` does not put its token at `context_tokens[position −
/// context_start]` was shown with another token highlighted (or none); neither our writer
/// nor the original library (which stores no `context_start`) writes one, so reading it is
/// an error naming the file, the example's place and feature, what its context holds there
/// and which start would be right. So are context activations that are not one per token.
#[test]
fn examples_whose_context_does_not_hold_them_are_refused_with_what_would() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hand.json");
    let file = path.display().to_string();
    let at = "feature_set.features[\"3\"].top_activations[1]";
    let edited = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut doc = dictionary_json();
        edit(&mut doc["feature_set"]["features"]["3"]["top_activations"][1]);
        std::fs::write(&path, doc.to_string()).unwrap();
        feature_dictionary::store::load(&path)
    };
    let refused = |edit: &dyn Fn(&mut serde_json::Value), says: &str| {
        let e = edited(edit).unwrap_err().to_string();
        let want = format!("{file}: {at}: an example of feature 3 {says} at line 1 column ");
        assert!(e.starts_with(&want), "\n{e}\nwanted\n{want}");
    };
    let start =
        |s: u32| move |ex: &mut serde_json::Value| ex["metadata"]["context_start"] = s.into();
    // Position 10, context ["in", "New", "York", "City", "."], "York" at index 2: start 8.
    refused(
        &start(11),
        "whose metadata.context_start (11) is after its position (10); expected context_start 8, where context_tokens hold its token \"York\"",
    );
    refused(
        &start(2),
        "whose firing token would be context_tokens[8] (position 10 − metadata.context_start 2), past its 5 context tokens; expected context_start 8, where context_tokens hold its token \"York\"",
    );
    refused(
        &start(7),
        "whose context_tokens[3] (position 10 − metadata.context_start 7) is \"City\", not its token; expected context_start 8, where context_tokens hold its token \"York\"",
    );
    refused(
        &|ex| ex["context_tokens"] = serde_json::json!(["York", "York", "x", "York", "y"]),
        "whose context_tokens[2] (position 10 − metadata.context_start 8) is \"x\", not its token; expected one of context_start 10, 9, 7, where context_tokens hold its token \"York\"",
    );
    refused(
        &|ex| ex["metadata"]["context_activations"] = serde_json::json!([0.0, 1.0, 2.0, 0.5]),
        "with 4 metadata.context_activations values for its 5 context tokens; expected one per context token (or none)",
    );
    // A `null` is what builds before 2026-11-28 wrote for a NaN skipped by
    // --allow-nonfinite: read as 0, as such a value is now written.
    let read = edited(&|ex| {
        ex["metadata"]["context_activations"] = serde_json::json!([0.0, null, 2.0, 0.5, null])
    })
    .unwrap();
    let ex = &read.get(3).unwrap().top_activations[1];
    assert_eq!(ex.metadata.context_activations, [0.0, 0.0, 2.0, 0.5, 0.0]);
    // In a quantile group's examples too.
    let mut doc = dictionary_json();
    doc["feature_set"]["features"]["3"]["metadata"]["quantile_examples"][0]["examples"][0]
        ["metadata"]["context_start"] = 9.into();
    std::fs::write(&path, doc.to_string()).unwrap();
    let e = feature_dictionary::store::load(&path)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "{file}: feature_set.features[\"3\"].metadata.quantile_examples[0].examples[0]: an example of feature 3 whose context_tokens[1]"
        )),
        "{e}"
    );

    // A context that holds the token nowhere: no start could place it, so it is read (as
    // earlier versions wrote such examples of the original library) and shown without a
    // highlight, and written back without the start.
    let d = edited(&|ex| ex["token"] = "Boston".into()).unwrap();
    let ex = &d.get(3).unwrap().top_activations[1];
    assert_eq!(ex.token_index_in_context(), None);
    let again = dir.path().join("again.json");
    feature_dictionary::store::save(&d, &again).unwrap();
    let back = feature_dictionary::store::load(&again).unwrap();
    assert_eq!(
        back.get(3).unwrap().top_activations[1].token_index_in_context(),
        None
    );
    feature_dictionary::store::save(&back, &again).unwrap();
    assert_eq!(feature_dictionary::store::load(&again).unwrap(), back);
    // What fits is read as written: no context activations (the original stores none), and
    // no context at all, where there is nothing to point into.
    let d = edited(&|ex| ex["metadata"]["context_activations"] = serde_json::json!([])).unwrap();
    let ex = &d.get(3).unwrap().top_activations[1];
    assert_eq!(
        (ex.metadata.context_start, ex.token_index_in_context()),
        (8, Some(2))
    );
    let d = edited(&|ex| {
        ex["context_tokens"] = serde_json::json!([]);
        ex["metadata"]["context_activations"] = serde_json::json!([]);
    })
    .unwrap();
    let (tokens, at, acts) = d.get(3).unwrap().top_activations[1].shown_context();
    assert_eq!(
        (tokens.to_vec(), at, acts),
        (vec!["York".to_string()], Some(0), vec![2.0])
    );
}

/// The bytes of a `.npy` file of `shape` and dtype `descr` holding `c_order` (see
/// `ingest::npy::write_bytes`).
fn npy_bytes(
    dir: &Path,
    descr: &str,
    fortran_order: bool,
    shape: &[usize],
    c_order: &[u8],
) -> Vec<u8> {
    let path = dir.join("entry.npy");
    feature_dictionary::ingest::npy::write_bytes(&path, descr, shape, fortran_order, c_order)
        .unwrap();
    std::fs::read(&path).unwrap()
}

/// A `params.npz` whose matrices were saved column-major (what `np.savez` writes for a
/// transposed array) and which holds arrays no SAE reads, in dtypes we do not decode (an
/// integer step count, a big-endian float): it loads, and every matrix reads as the same
/// row-major values as the C-order original. (Any Fortran-order or integer array refused
/// the whole file.)
#[test]
fn npz_with_fortran_order_matrices_and_unused_integer_arrays_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let original_dir = fixtures().join("sae/gemmascope_npz");
    let mut zip =
        zip::ZipArchive::new(std::fs::File::open(original_dir.join("params.npz")).unwrap())
            .unwrap();
    let d = tmp.path().join("fortran");
    std::fs::create_dir_all(&d).unwrap();
    let mut out = zip::ZipWriter::new(std::fs::File::create(d.join("params.npz")).unwrap());
    let mut matrices = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        let name = entry.name().to_string();
        let h = feature_dictionary::ingest::npy::parse_header(Path::new(&name), &bytes).unwrap();
        assert_eq!(h.descr, "<f4");
        if let [rows, cols] = h.shape[..] {
            let (rows, cols) = (rows as usize, cols as usize);
            bytes = npy_bytes(
                tmp.path(),
                "<f4",
                true,
                &[rows, cols],
                &bytes[h.data_offset..],
            );
            matrices.push((name.trim_end_matches(".npy").to_string(), [rows, cols]));
        }
        out.start_file(&name, zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut out, &bytes).unwrap();
    }
    let step: Vec<u8> = 1234i64.to_le_bytes().to_vec();
    out.start_file("step.npy", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(&mut out, &npy_bytes(tmp.path(), "<i8", false, &[1], &step)).unwrap();
    out.start_file("lr.npy", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(
        &mut out,
        &npy_bytes(tmp.path(), ">f4", false, &[1], &[0x3f, 0x80, 0, 0]),
    )
    .unwrap();
    out.finish().unwrap();

    assert_eq!(matrices.len(), 2, "{matrices:?}");
    let mut original = Weights::from_npz(&original_dir.join("params.npz")).unwrap();
    let mut transposed = Weights::from_npz(&d.join("params.npz")).unwrap();
    for (name, shape) in &matrices {
        let want = original.take(&[name.as_str()], shape).unwrap();
        let got = transposed.take(&[name.as_str()], shape).unwrap();
        assert_eq!(got, want, "{name}");
    }
    // The integer array is named, with its dtype, if something asks for it.
    let e = transposed.take(&["step"], &[1]).unwrap_err().to_string();
    assert!(e.contains("tensor step has dtype <i8"), "{e}");
    let e = transposed.take(&["lr"], &[1]).unwrap_err().to_string();
    assert!(e.contains("tensor lr has dtype >f4"), "{e}");
    // The whole SAE loads from it.
    Sae::load(&d).unwrap();
    // An object (pickled) w_enc is named with its dtype: it was reported as missing.
    let pickled = tmp.path().join("pickled");
    std::fs::create_dir_all(&pickled).unwrap();
    let mut zip = zip::ZipArchive::new(std::fs::File::open(d.join("params.npz")).unwrap()).unwrap();
    let mut out = zip::ZipWriter::new(std::fs::File::create(pickled.join("params.npz")).unwrap());
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        if entry.name() == "w_enc.npy" {
            bytes = npy_bytes(tmp.path(), "|O", false, &[1], b"\x80\x04N.");
        }
        out.start_file(entry.name(), zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut out, &bytes).unwrap();
    }
    out.finish().unwrap();
    let e = Sae::load(&pickled).unwrap_err().to_string();
    assert!(
        e.contains("tensor w_enc has dtype |O; SAE weights must be little-endian floats"),
        "{e}"
    );
}
