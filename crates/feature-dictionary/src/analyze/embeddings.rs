//! Token embeddings the user has, addressed by the token strings a dictionary stores.
//!
//! Sources:
//! * a GGUF model file: token list `tokenizer.ggml.tokens` and tensor `token_embd.weight`
//!   (F32, F16, Q8_0, Q4_0 or Q4_1, dequantised);
//! * a safetensors file holding a `[vocab, d]` matrix (tensor name given, or the first of
//!   `token_embd.weight`, `model.embed_tokens.weight`, `embed_tokens.weight`, `W_E`,
//!   `embeddings`), with its token strings from a HuggingFace `tokenizer.json` or a JSON
//!   list of strings (row i = string i).
//!
//! Vocabulary strings of byte-level BPE tokenizers ("Ġthe") are decoded to text (" the")
//! with the GPT-2 byte↔unicode table; SentencePiece's "▁" becomes a space. Dictionaries
//! store decoded token text, so the two meet.

use std::collections::HashMap;
use std::path::Path;

use super::gguf::Gguf;
use super::weights::{read_safetensors_matrix, safetensors_matrix, Matrix};
use crate::error::{Error, Result};
use crate::ingest::safetensors::SafeTensors;

/// Unit-normalised token vectors by token text.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenEmbeddings {
    index: HashMap<String, usize>,
    /// `[vocab, d]`, rows of norm 1.
    pub unit: Matrix,
}

impl TokenEmbeddings {
    /// From a matrix and the token string of each row (already decoded text).
    ///
    /// A token whose row is all zeros has no direction (some models leave unused or padding
    /// tokens at zero): it is left out, as a token without an embedding is, rather than
    /// given a cosine of 0 with everything, which would make it a cluster of its own.
    pub fn new(matrix: Matrix, tokens: Vec<String>) -> Result<Self> {
        if tokens.len() != matrix.rows {
            return Err(Error::Invalid(format!(
                "the embedding matrix has {} rows but the vocabulary has {} tokens",
                matrix.rows,
                tokens.len()
            )));
        }
        Ok(Self::indexed(matrix, tokens))
    }

    /// Normalises the rows and indexes the tokens (the lengths agree).
    fn indexed(matrix: Matrix, tokens: Vec<String>) -> Self {
        let unit = super::similar::Directions::new(matrix).unit;
        let mut index = HashMap::with_capacity(tokens.len());
        for (i, t) in tokens.into_iter().enumerate() {
            if unit.row(i).iter().any(|&v| v != 0.0) {
                index.entry(t).or_insert(i);
            }
        }
        Self { index, unit }
    }

    /// Loads embeddings from `path` (`.gguf`, or `.safetensors` with `vocab`).
    pub fn load(path: &Path, tensor: Option<&str>, vocab: Option<&Path>) -> Result<Self> {
        let (m, tokens, _) = load_token_matrix(
            path,
            tensor,
            &["token_embd.weight"],
            &EMBEDDING_NAMES,
            vocab,
        )?;
        if tokens.len() != m.rows {
            return Err(Error::format(
                path,
                format!(
                    "the embedding matrix is {}×{} but {} has {} tokens; expected one row per token",
                    m.rows,
                    m.cols,
                    vocab_source(path, vocab),
                    tokens.len()
                ),
            ));
        }
        Ok(Self::indexed(m, tokens))
    }
}

/// Where the token strings of the matrix in `path` come from, for messages: the `vocab`
/// file, or a GGUF file's own token list.
pub(crate) fn vocab_source(path: &Path, vocab: Option<&Path>) -> String {
    // A GGUF file is refused with a vocabulary file (see `load_token_matrix`).
    match vocab {
        Some(v) if !is_gguf(path) => format!("the vocabulary {}", v.display()),
        _ => "its tokenizer.ggml.tokens list".to_string(),
    }
}

fn is_gguf(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()) == Some("gguf")
}

/// Names an input-embedding matrix goes by in safetensors files (llama.cpp, HuggingFace,
/// TransformerLens, plain).
pub const EMBEDDING_NAMES: [&str; 5] = [
    "token_embd.weight",
    "model.embed_tokens.weight",
    "embed_tokens.weight",
    "W_E",
    "embeddings",
];

/// A token matrix, the decoded token strings of its vocabulary and the name of the tensor
/// read, from a GGUF file (tensor `tensor`, else the first of `gguf_names` present), a
/// safetensors file (`tensor`, else the first of `safetensors_names` present) with a
/// `vocab` file, or a 2-D `.npy` array (one array, no name) with a `vocab` file.
pub fn load_token_matrix(
    path: &Path,
    tensor: Option<&str>,
    gguf_names: &[&str],
    safetensors_names: &[&str],
    vocab: Option<&Path>,
) -> Result<(Matrix, Vec<String>, String)> {
    {
        if is_gguf(path) {
            if let Some(v) = vocab {
                // Used, it would have been silently ignored: the file's own list names rows.
                return Err(Error::Invalid(format!(
                    "{} is a GGUF file, which carries its own vocabulary (tokenizer.ggml.tokens); the vocabulary file {} would not be used, so leave it out",
                    path.display(),
                    v.display()
                )));
            }
            let g = Gguf::open(path)?;
            let tokens = g.tokens.clone().ok_or_else(|| {
                Error::format(path, "GGUF file has no tokenizer.ggml.tokens list")
            })?;
            let names = g.tensor_names();
            let name = match tensor {
                Some(t) => t.to_string(),
                None => gguf_names
                    .iter()
                    .find(|n| names.contains(n))
                    .map(|n| n.to_string())
                    .ok_or_else(|| {
                        Error::format(
                            path,
                            format!("none of the tensors {gguf_names:?} is in the file"),
                        )
                    })?,
            };
            let m = g.matrix(&name)?;
            return Ok((m, decode_vocab(tokens), name));
        }
        let (m, name) = match tensor {
            _ if is_npy(path)? => {
                if let Some(t) = tensor {
                    return Err(Error::format(
                        path,
                        format!("is a .npy file, which holds one unnamed array; the tensor name {t:?} does not apply"),
                    ));
                }
                (read_npy_matrix(path)?, String::new())
            }
            Some(t) => (read_safetensors_matrix(path, t)?, t.to_string()),
            None => {
                let names = safetensors_names;
                // Only the choice of name is a guess: the file's own errors (missing,
                // damaged, a tensor of the wrong shape or dtype) are reported as they are.
                let file = SafeTensors::open(path)?;
                let name = names.iter().find(|n| file.get(n).is_some()).ok_or_else(|| {
                    let present: Vec<&str> =
                        file.tensors().iter().map(|t| t.name.as_str()).take(12).collect();
                    Error::format(
                        path,
                        format!("no embedding tensor found (tried {names:?}; the file has {present:?}{}); name it with --embedding-tensor (--unembed-tensor for `featdict logits`)",
                            if file.tensors().len() > present.len() { ", …" } else { "" }),
                    )
                })?;
                (safetensors_matrix(&file, name)?, name.to_string())
            }
        };
        let vocab = vocab.ok_or_else(|| {
            Error::Invalid(format!(
                "{}: a safetensors embedding matrix needs its token strings (a tokenizer.json or a JSON list of strings)",
                path.display()
            ))
        })?;
        Ok((m, read_vocab(vocab)?, name))
    }
}

/// Whether `path` starts as a NumPy `.npy` file does.
fn is_npy(path: &Path) -> Result<bool> {
    super::weights::starts_with(path, b"\x93NUMPY")
}

/// A 2-D `.npy` array (f32, f16 or f64; C or Fortran order) as a row-major f32 matrix, all
/// finite.
fn read_npy_matrix(path: &Path) -> Result<Matrix> {
    let m = crate::ingest::npy::open(path)?;
    if m.sequence_shape().is_some() {
        return Err(Error::format(
            path,
            "is a 3-D array; a token matrix has 2 dimensions",
        ));
    }
    let (rows, cols) = (m.n_rows() as usize, m.n_features());
    let mut buffer = Vec::new();
    let data = m.rows_f32(0..m.n_rows(), &mut buffer).to_vec();
    crate::finite::check(
        path,
        "the array",
        &[rows as u64, cols as u64],
        &data,
        super::weights::NONFINITE_WHY,
    )?;
    Ok(Matrix { rows, cols, data })
}

impl TokenEmbeddings {
    /// The unit vector of `token`, if known.
    pub fn get(&self, token: &str) -> Option<&[f32]> {
        self.index.get(token).map(|&i| self.unit.row(i))
    }

    /// Row of `token`, if known.
    pub fn id(&self, token: &str) -> Option<usize> {
        self.index.get(token).copied()
    }

    /// The token text of every row (first string per row).
    pub fn tokens_by_row(&self) -> Vec<String> {
        let mut v = vec![String::new(); self.unit.rows];
        for (t, &i) in &self.index {
            v[i] = t.clone();
        }
        v
    }
}

/// Reads token strings: a HuggingFace `tokenizer.json` (`model.vocab` + `added_tokens`,
/// decoded) or a JSON list of strings (taken as is).
pub fn read_vocab(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::format(path, format!("not JSON: {e}")))?;
    if let Some(list) = v.as_array() {
        return list
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| Error::format(path, "expected a list of token strings"))
            })
            .collect();
    }
    let vocab = v
        .pointer("/model/vocab")
        .and_then(|x| x.as_object())
        .ok_or_else(|| {
            Error::format(
                path,
                "expected a tokenizer.json (with model.vocab) or a JSON list of token strings",
            )
        })?;
    let mut pairs: Vec<(usize, String)> = vocab
        .iter()
        .filter_map(|(s, id)| id.as_u64().map(|i| (i as usize, s.clone())))
        .collect();
    let mut added = std::collections::HashSet::new();
    if let Some(a) = v.get("added_tokens").and_then(|x| x.as_array()) {
        for t in a {
            if let (Some(id), Some(c)) = (t["id"].as_u64(), t["content"].as_str()) {
                pairs.push((id as usize, c.to_string()));
                added.insert(id as usize);
            }
        }
    }
    let n = pairs.iter().map(|p| p.0 + 1).max().unwrap_or(0);
    let mut out = vec![String::new(); n];
    let byte_level = pairs.iter().any(|p| p.1.starts_with('Ġ'));
    for (i, s) in pairs {
        out[i] = if added.contains(&i) {
            s
        } else if byte_level {
            decode_byte_level(&s)
        } else {
            s.replace('▁', " ")
        };
    }
    Ok(out)
}

/// Decodes a whole vocabulary of a GGUF file.
pub fn decode_vocab(tokens: Vec<String>) -> Vec<String> {
    let byte_level = tokens.iter().any(|t| t.starts_with('Ġ'));
    tokens
        .into_iter()
        .map(|t| {
            if byte_level {
                decode_byte_level(&t)
            } else {
                t.replace('▁', " ")
            }
        })
        .collect()
}

/// GPT-2 byte-level vocabulary string → text ("Ġthe" → " the"). Strings with characters
/// outside the byte table (special tokens) are returned unchanged.
pub fn decode_byte_level(s: &str) -> String {
    let mut bytes = Vec::with_capacity(s.len());
    for c in s.chars() {
        match unicode_to_byte(c) {
            Some(b) => bytes.push(b),
            None => return s.to_string(),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn unicode_to_byte(c: char) -> Option<u8> {
    let u = c as u32;
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    if u < 256 && printable(u) {
        return Some(u as u8);
    }
    if u >= 256 {
        // Non-printable bytes were mapped, in increasing order, to 256, 257, …
        let mut n = 256;
        for b in 0u32..256 {
            if !printable(b) {
                if n == u {
                    return Some(b as u8);
                }
                n += 1;
            }
        }
    }
    None
}
