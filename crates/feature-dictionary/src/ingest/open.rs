//! Picks the right reader for a set of input paths: dense `.npy`/`.safetensors`, a delphi
//! cache (file or shard directory), optionally encoded on the fly by an SAE; tokens from a
//! JSON file, a token-id `.npy` or the cache itself, decoded by a `tokenizer.json`.

use std::path::Path;

use super::delphi::{is_delphi_file, DelphiCache, DelphiSource};
use super::tokenizer::Tokenizer;
use super::{ActivationSource, DenseSource, TokenSequences};
use crate::error::{Error, Result};
use crate::sae::{Sae, SaeSource};

/// Everything that says where activations and tokens come from.
#[derive(Debug, Clone, Default)]
pub struct InputSpec<'a> {
    /// Activations: `.npy`, `.safetensors` (dense or a delphi shard), or a delphi directory;
    /// residuals when `sae` is given.
    pub acts: Option<&'a Path>,
    /// Tensor to read from a dense `.safetensors` file.
    pub tensor: Option<&'a str>,
    /// Tokens JSON (list of lists of token strings).
    pub tokens_json: Option<&'a Path>,
    /// Token ids `.npy` `[sequences, seq_len]`.
    pub token_ids: Option<&'a Path>,
    /// HuggingFace `tokenizer.json` decoding token ids.
    pub tokenizer: Option<&'a Path>,
    /// SAE directory encoding the (residual) activations in-process.
    pub sae: Option<&'a Path>,
    /// Context tokens kept on each side of an example.
    pub context_window: usize,
    /// Worker threads (SAE encoding).
    pub threads: usize,
    /// Dense values held per batch (0 = [`crate::build::VALUES_PER_BATCH`]).
    pub batch_values: usize,
    /// How the strings of `tokens_json` are read.
    pub token_spelling: super::TokenSpelling,
    /// Index of the input's first sequence (0 unless it is a later shard of a corpus, whose
    /// partial dictionary merges exactly with the others when numbered as in the whole).
    pub first_sequence: u64,
    /// The SAE's number of latents (`d_sae`), when the user gives it: checked against what
    /// the input says, and the only source of it for a lone delphi file with absolute latent
    /// indices (whose latents above the largest that fired are otherwise not counted).
    pub n_latents: Option<usize>,
}

/// Rows per batch for sparse caches (whole sequences; memory is O(nonzeros of a batch)).
const SPARSE_BATCH_ROWS: usize = 1 << 14;

/// How the activation path will be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A dense matrix.
    Dense,
    /// A delphi latent cache.
    Delphi,
}

/// Decides how `acts` is read (a directory or a `.safetensors` with `locations` and
/// `activations` is a delphi cache, unless a tensor was named).
pub fn input_kind(acts: &Path, tensor: Option<&str>) -> InputKind {
    if acts.is_dir()
        || (tensor.is_none()
            && acts.extension().and_then(|e| e.to_str()) == Some("safetensors")
            && is_delphi_file(acts))
    {
        InputKind::Delphi
    } else {
        InputKind::Dense
    }
}

/// Reads the token sequences named by `spec` (`cache`: a delphi cache, whose own tokens are
/// used when `spec` names none).
pub fn open_tokens(spec: &InputSpec, cache: Option<&DelphiCache>) -> Result<TokenSequences> {
    let (vocab, notes) = match spec.tokenizer {
        Some(p) => {
            let tokenizer = Tokenizer::from_file(p)?;
            let notes = tokenizer.notes().to_vec();
            (Some(tokenizer.into_vocab()), notes)
        }
        None => (None, Vec::new()),
    };
    open_tokens_with(spec, cache, vocab).map(|t| t.with_notes(notes))
}

fn open_tokens_with(
    spec: &InputSpec,
    cache: Option<&DelphiCache>,
    vocab: Option<super::Vocab>,
) -> Result<TokenSequences> {
    match (spec.tokens_json, spec.token_ids) {
        (Some(_), Some(_)) => Err(Error::Invalid(
            "give tokens either as --tokens (JSON strings) or as --token-ids (ids), not both"
                .into(),
        )),
        (Some(json), None) => {
            if spec.tokenizer.is_some() {
                return Err(Error::Invalid(
                    "--tokenizer decodes token ids (--token-ids or a delphi cache's tokens); a tokens JSON already holds strings".into(),
                ));
            }
            TokenSequences::from_json_file_as(json, spec.token_spelling)
        }
        (None, Some(ids)) => super::token_ids::open_npy(ids, vocab),
        (None, None) => {
            const PASS: &str = "pass --tokens TOKENS.json or --token-ids IDS.npy (with --tokenizer tokenizer.json to show them as text)";
            match cache {
                Some(c) => match c.token_sequences(vocab)? {
                    Some(sequences) => Ok(sequences),
                    // Said about the cache: its tokens were what was looked for.
                    None => {
                        let lacks = if c.path().is_dir() {
                            "no shard of this delphi cache has a `tokens` tensor"
                        } else {
                            "this delphi cache shard has no `tokens` tensor"
                        };
                        Err(Error::format(
                            c.path(),
                            format!("{lacks} to take the tokens from; {PASS}"),
                        ))
                    }
                },
                None => Err(Error::Invalid(format!("no tokens: {PASS}"))),
            }
        }
    }
}

/// Opens the activation source described by `spec`.
pub fn open_source(spec: &InputSpec) -> Result<Box<dyn ActivationSource>> {
    let acts = spec
        .acts
        .ok_or_else(|| Error::Invalid("no activation file given".into()))?;
    match input_kind(acts, spec.tensor) {
        InputKind::Delphi => {
            if let Some(sae) = spec.sae {
                return Err(Error::Invalid(format!(
                    "{} is a delphi latent cache (already SAE latents); --sae {} expects dense residual activations",
                    acts.display(),
                    sae.display()
                )));
            }
            let mut cache = DelphiCache::open(acts)?;
            if let Some(n) = spec.n_latents {
                cache = cache.with_n_latents(n)?;
            }
            let tokens = open_tokens(spec, Some(&cache))?;
            Ok(Box::new(
                DelphiSource::new(cache, tokens, SPARSE_BATCH_ROWS)?
                    .with_first_sequence(spec.first_sequence),
            ))
        }
        InputKind::Dense => {
            let matrix = match acts.extension().and_then(|e| e.to_str()) {
                Some("safetensors") => super::safetensors::open_dense(acts, spec.tensor)?,
                _ if spec.tensor.is_some() => {
                    return Err(Error::Invalid(format!(
                        "--tensor picks a tensor of a .safetensors file; {} is not one",
                        acts.display()
                    )))
                }
                _ => super::open_dense(acts)?,
            };
            let tokens = open_tokens(spec, None)?;
            let batch_values = match spec.batch_values {
                0 if matrix.reads_in_place() => crate::build::VALUES_PER_BATCH,
                0 => crate::build::CONVERTED_VALUES_PER_BATCH,
                n => n,
            };
            let source = DenseSource::new(matrix, tokens, spec.context_window, batch_values)?
                .with_first_sequence(spec.first_sequence);
            let source: Box<dyn ActivationSource> = match spec.sae {
                Some(dir) => Box::new(SaeSource::new(source, Sae::load(dir)?, spec.threads)?),
                None => Box::new(source),
            };
            match spec.n_latents {
                Some(n) if n != source.n_features() => {
                    let what = match spec.sae {
                        Some(dir) => format!("the SAE {} has", dir.display()),
                        None => format!("{} has", acts.display()),
                    };
                    Err(Error::Invalid(format!(
                        "{what} {} latents, but the SAE is said to have {n}",
                        source.n_features()
                    )))
                }
                _ => Ok(source),
            }
        }
    }
}
