//! The partial dictionary file (`.fdpart`): the accumulator state of one shard of a corpus,
//! saved instead of a finalized dictionary, so that shards accumulated apart (other
//! processes, other machines) merge into the dictionary one pass over all of them gives
//! (`featdict build … --out SHARD.fdpart`, then `featdict merge A.fdpart B.fdpart --out
//! DICT.fdict`). Merging goes through [`Accumulator::merge_remapped`], the one path threads
//! and the Python package's shards take too, so it is exact wherever that merge is.
//!
//! Layout: [`MAGIC`], the format version (u32, little-endian), then the bincode encoding of
//! the config (as JSON text: its serde attributes are written for JSON), the vocabulary, the
//! sequence indices the shard holds, and the accumulator. Bincode is not self-describing, so
//! any change to the accumulator's state bumps [`VERSION`]; a file of another version is
//! refused by name, never misread.

use std::io::{Read, Write};
use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::accumulate::distinct::text_key;
use crate::accumulate::Accumulator;
use crate::error::{Error, Result};
use crate::ingest::{TokenId, Vocab};
use crate::model::DictionaryConfig;

/// The file name extension of a partial dictionary.
pub const EXTENSION: &str = "fdpart";

/// The first bytes of every partial dictionary.
pub use super::PARTIAL_MAGIC as MAGIC;

/// The layout of the encoded state (see the module docs); bumped whenever the accumulator's
/// state changes shape.
pub const VERSION: u32 = 1;

/// One shard's accumulated state, with what finalizing it needs.
#[derive(Debug, Clone)]
pub struct Partial {
    /// The dictionary's configuration (extraction settings, model, SAE and layer names).
    pub config: DictionaryConfig,
    /// The token strings of the ids the accumulator holds.
    pub vocab: Vocab,
    /// The sequence indices this shard's examples are numbered in (empty sequences included).
    pub sequences: Range<u64>,
    /// The accumulated state.
    pub acc: Accumulator,
}

#[derive(Serialize)]
struct Encoded<'a> {
    config_json: String,
    vocab: Vec<std::borrow::Cow<'a, str>>,
    sequences: (u64, u64),
    acc: &'a Accumulator,
}

#[derive(Deserialize)]
struct Decoded {
    config_json: String,
    vocab: Vec<String>,
    sequences: (u64, u64),
    acc: Accumulator,
}

/// Whether `path` names a partial dictionary (by extension; [`Partial::read`] checks the
/// content).
pub fn is_partial_path(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == EXTENSION)
}

pub use super::not_finalized;

impl Partial {
    /// Writes the partial dictionary to `path` (temporary file + rename, as every write).
    pub fn write(&self, path: &Path) -> Result<()> {
        let config_json = serde_json::to_string(&self.config)
            .map_err(|e| Error::Invalid(format!("cannot encode the config: {e}")))?;
        let encoded = Encoded {
            config_json,
            vocab: (0..self.vocab.len() as TokenId)
                .map(|id| self.vocab.token(id))
                .collect(),
            sequences: (self.sequences.start, self.sequences.end),
            acc: &self.acc,
        };
        super::write_atomically(path, |w| {
            w.write_all(MAGIC)?;
            w.write_all(&VERSION.to_le_bytes())?;
            bincode::serialize_into(&mut *w, &encoded).map_err(std::io::Error::other)
        })
    }

    /// Reads a partial dictionary written by [`Partial::write`].
    pub fn read(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(Error::format(
                path,
                "is a directory; expected a partial dictionary file (.fdpart)",
            ));
        }
        let mut r = std::io::BufReader::with_capacity(1 << 20, file);
        let mut head = [0u8; 12];
        if r.read_exact(&mut head).is_err() || &head[..8] != MAGIC {
            return Err(Error::format(
                path,
                "is not a partial dictionary: expected a file written by `featdict build … --out X.fdpart` (it starts with FDPART)",
            ));
        }
        let version = u32::from_le_bytes(head[8..].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(Error::format(
                path,
                format!(
                    "is a partial dictionary of format version {version}; this featdict reads version {VERSION}: build the shard again with this version, or merge it with the version that wrote it"
                ),
            ));
        }
        let damaged = |what: String| {
            Error::format(
                path,
                format!("partial dictionary is truncated or damaged: {what}"),
            )
        };
        let decoded: Decoded =
            bincode::deserialize_from(&mut r).map_err(|e| damaged(e.to_string()))?;
        let mut rest = [0u8; 1];
        if r.read(&mut rest).map_err(|e| Error::io(path, e))? != 0 {
            return Err(damaged("bytes follow the end of its state".into()));
        }
        if !decoded.acc.has_consistent_shape() {
            return Err(damaged(
                "its per-feature state does not cover its features".into(),
            ));
        }
        if decoded.acc.token_counts.len() > decoded.vocab.len() {
            return Err(damaged(format!(
                "it counts {} token ids but names {}",
                decoded.acc.token_counts.len(),
                decoded.vocab.len()
            )));
        }
        let config: DictionaryConfig = serde_json::from_str(&decoded.config_json)
            .map_err(|e| damaged(format!("its config does not parse: {e}")))?;
        if config.num_features != decoded.acc.n_features() {
            return Err(damaged(format!(
                "its config says {} features, its state holds {}",
                config.num_features,
                decoded.acc.n_features()
            )));
        }
        let (start, end) = decoded.sequences;
        if start > end {
            return Err(damaged(format!("sequence range {start}..{end}")));
        }
        Ok(Self {
            config,
            vocab: Vocab::from_strings(decoded.vocab),
            sequences: start..end,
            acc: decoded.acc,
        })
    }

    /// Folds `other` (another shard, accumulated with the same settings) into `self`, as
    /// one pass over this shard's input followed by the other's would have accumulated it:
    /// when the two shards' sequence indices collide (each numbered from 0, as separate
    /// builds are), the other's are moved past this one's; tokens are matched by their text
    /// (the other's new tokens join the vocabulary in their order). Returns the shift applied
    /// to the other's sequence indices. `names` name the two shards in errors.
    pub fn merge(&mut self, mut other: Partial, names: (&Path, &Path)) -> Result<u64> {
        let refuse = |what: String| {
            Error::Invalid(format!(
                "cannot merge {} into {}: {what}",
                names.1.display(),
                names.0.display()
            ))
        };
        if self.acc.n_features() != other.acc.n_features() {
            return Err(refuse(format!(
                "{} features against {}",
                other.acc.n_features(),
                self.acc.n_features()
            )));
        }
        if let Some(diff) = self.acc.settings().difference(other.acc.settings()) {
            return Err(refuse(format!(
                "they were accumulated with different settings ({}'s vs {}'s): {diff}",
                names.0.display(),
                names.1.display()
            )));
        }
        let config = agreed_config(&self.config, &other.config).map_err(refuse)?;
        let (a, b) = (&self.sequences, &other.sequences);
        let shift = if a.start < b.end && b.start < a.end {
            a.end - b.start
        } else {
            0
        };
        let identical = self.vocab.len() == other.vocab.len()
            && (0..self.vocab.len() as TokenId)
                .all(|id| self.vocab.token(id) == other.vocab.token(id));
        let map: Vec<TokenId> = if identical {
            (0..other.vocab.len() as TokenId).collect()
        } else {
            (0..other.vocab.len() as TokenId)
                .map(|id| self.vocab.intern(&other.vocab.token(id)))
                .collect()
        };
        let keyed = !self.acc.token_keys().is_empty() || !other.acc.token_keys().is_empty();
        let keys: Vec<u64> = (0..self.vocab.len() as TokenId)
            .map(|id| text_key(&self.vocab.token(id)))
            .collect();
        if shift > 0 {
            other.acc.shift_sequences(shift);
        }
        let keys = keyed.then_some(&keys[..]);
        if identical {
            self.acc.merge_keyed(other.acc, keys)?;
        } else {
            self.acc.merge_remapped(other.acc, &map, keys)?;
        }
        self.config = config;
        let b = other.sequences.start + shift..other.sequences.end + shift;
        self.sequences = self.sequences.start.min(b.start)..self.sequences.end.max(b.end);
        Ok(shift)
    }
}

/// The config of two shards' merge: `a`'s, with what only `b` names (model, SAE, layer,
/// input width) filled in; an error when both name different ones (shards of different
/// models or layers do not make one dictionary).
fn agreed_config(
    a: &DictionaryConfig,
    b: &DictionaryConfig,
) -> std::result::Result<DictionaryConfig, String> {
    let mut merged = a.clone();
    for (what, mine, theirs) in [
        ("model", &mut merged.model_name, &b.model_name),
        ("SAE", &mut merged.sae_name, &b.sae_name),
    ] {
        if mine.is_empty() {
            mine.clone_from(theirs);
        } else if !theirs.is_empty() && mine != theirs {
            return Err(format!(
                "they are of different {what}s ({mine:?} vs {theirs:?}); give --model-name/--sae-name to merge to name the result"
            ));
        }
    }
    if a.layer != b.layer {
        return Err(format!(
            "they are of different layers ({} vs {}); give --layer to merge to name the result",
            a.layer, b.layer
        ));
    }
    if merged.feature_dim == 0 {
        merged.feature_dim = b.feature_dim;
    } else if b.feature_dim != 0 && b.feature_dim != merged.feature_dim {
        return Err(format!(
            "their features read inputs of different widths ({} vs {})",
            merged.feature_dim, b.feature_dim
        ));
    }
    Ok(merged)
}
