//! The partial dictionary file (`.fdpart`): the accumulator state of one shard of a corpus,
//! saved instead of a finalized dictionary, so that shards accumulated apart (other
//! processes, other machines) merge into the dictionary one pass over all of them gives
//! (`featdict build … --out SHARD.fdpart`, then `featdict merge A.fdpart B.fdpart --out
//! DICT.fdict`). Merging goes through [`Accumulator::merge_remapped`], the one path threads
//! and the Python package's shards take too, so it is exact wherever that merge is.
//!
//! Layout: [`MAGIC`], the format version (u32, little-endian), then the bincode encoding of
//! the config (as JSON text: its serde attributes are written for JSON), the vocabulary with
//! each token's first occurrence, the sequence ranges the shard holds, and the accumulator;
//! then a 64-bit checksum of everything before it. Bincode is not self-describing, so
//! any change to the accumulator's state bumps [`VERSION`]; a file of another version is
//! refused by name, never misread.

use std::io::{Read, Write};
use std::ops::Range;
use std::path::Path;

use bincode::Options as _;
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

/// The first occurrence of a token id that never occurred.
pub const NEVER: (u64, u32) = (u64::MAX, u32::MAX);

/// Notes in `first_seen` (indexed by token id, grown as needed) where each token of
/// `batch`'s accumulated rows first occurred.
pub fn note_first_seen(
    first_seen: &mut Vec<(u64, u32)>,
    batch: &crate::ingest::ActivationBatch<'_>,
) {
    for row in batch.core.clone() {
        let id = batch.tokens[row] as usize;
        if id >= first_seen.len() {
            first_seen.resize(id + 1, NEVER);
        }
        let at = (batch.sequences[row], batch.positions[row]);
        if at < first_seen[id] {
            first_seen[id] = at;
        }
    }
}

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
    /// Where each token id first occurred, `(sequence, position)` ([`NEVER`] for an id the
    /// shard never saw, e.g. a tokenizer's): a merge orders its vocabulary by it, as one
    /// pass over the whole corpus does.
    pub first_seen: Vec<(u64, u32)>,
    /// The sequence indices this shard's examples are numbered in (empty sequences
    /// included): one range for a shard, the disjoint ranges of its shards for a merge.
    pub sequences: Vec<Range<u64>>,
    /// The accumulated state.
    pub acc: Accumulator,
}

#[derive(Serialize)]
struct Encoded<'a> {
    config_json: String,
    vocab: Vec<std::borrow::Cow<'a, str>>,
    first_seen: &'a [(u64, u32)],
    sequences: Vec<(u64, u64)>,
    acc: &'a Accumulator,
}

#[derive(Deserialize)]
struct Decoded {
    config_json: String,
    vocab: Vec<String>,
    first_seen: Vec<(u64, u32)>,
    sequences: Vec<(u64, u64)>,
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
            first_seen: &self.first_seen,
            sequences: self.sequences.iter().map(|r| (r.start, r.end)).collect(),
            acc: &self.acc,
        };
        super::write_atomically(path, |w| {
            let mut hashed = Hashed {
                inner: &mut *w,
                sum: Checksum::default(),
            };
            hashed.write_all(MAGIC)?;
            hashed.write_all(&VERSION.to_le_bytes())?;
            encoding()
                .serialize_into(&mut hashed, &encoded)
                .map_err(std::io::Error::other)?;
            let sum = hashed.sum.finish();
            hashed.inner.write_all(&sum.to_le_bytes())
        })
    }

    /// Reads a partial dictionary written by [`Partial::write`].
    pub fn read(path: &Path) -> Result<Self> {
        let (r, len) = open(path)?;
        let damaged = |what: String| damaged(path, what);
        let mut sum = Checksum::default();
        sum.update(MAGIC);
        sum.update(&VERSION.to_le_bytes());
        let mut r = Hashed { inner: r, sum };
        // Every length in the file is bounded by the file's own size: a damaged length is an
        // error, not an allocation that aborts the process.
        let decoded: Decoded = encoding()
            .with_limit(len)
            .deserialize_from(&mut r)
            .map_err(|e| damaged(e.to_string()))?;
        // The checksum of everything before it: a damaged value (a token id, a count) decodes
        // as well as the right one would, and would be trusted by the merge.
        let computed = r.sum.finish();
        let mut rest = Vec::new();
        r.inner
            .read_to_end(&mut rest)
            .map_err(|e| Error::io(path, e))?;
        match <[u8; 8]>::try_from(rest.as_slice()) {
            Ok(stored) if u64::from_le_bytes(stored) == computed => {}
            Ok(_) => return Err(damaged("its checksum does not match its contents".into())),
            Err(_) if rest.len() < 8 => return Err(damaged("its checksum is missing".into())),
            Err(_) => return Err(damaged("bytes follow the end of its state".into())),
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
        let config = parse_config(path, &decoded.config_json)?;
        if config.num_features != decoded.acc.n_features() {
            return Err(damaged(format!(
                "its config says {} features, its state holds {}",
                config.num_features,
                decoded.acc.n_features()
            )));
        }
        let sequences: Vec<Range<u64>> = decoded.sequences.iter().map(|&(a, b)| a..b).collect();
        let sorted = sequences.windows(2).all(|w| w[0].end <= w[1].start);
        if !sorted || sequences.iter().any(|r| r.start > r.end) {
            return Err(damaged(format!("sequence ranges {sequences:?}")));
        }
        if decoded.first_seen.len() != decoded.vocab.len() {
            return Err(damaged(format!(
                "it has first occurrences for {} of its {} tokens",
                decoded.first_seen.len(),
                decoded.vocab.len()
            )));
        }
        Ok(Self {
            config,
            first_seen: decoded.first_seen,
            vocab: Vocab::from_strings(decoded.vocab),
            sequences,
            acc: decoded.acc,
        })
    }

    /// The config of the partial dictionary at `path` alone (the file's first field): what a
    /// merge checks before it reads any shard's state.
    pub fn read_config(path: &Path) -> Result<DictionaryConfig> {
        let (r, len) = open(path)?;
        let config_json: String = encoding()
            .with_limit(len)
            .deserialize_from(r)
            .map_err(|e| damaged(path, e.to_string()))?;
        parse_config(path, &config_json)
    }

    /// Folds `other` (another shard, accumulated with the same settings) into `self`, as
    /// one pass over both shards' inputs, in the order of their sequence indices, would have
    /// accumulated it. Shards whose sequence ranges are apart keep their indices, so merges
    /// in any order or tree give the same result; when the other's collide with any held
    /// here (separate builds each start at 0), they are moved past all of them. Tokens are
    /// matched by their text and numbered by their first occurrence, as one pass numbers
    /// them (ids are kept when both shards have the same vocabulary, as shards read with one
    /// tokenizer do). Returns the shift applied to the other's sequence indices. `names`
    /// name the two shards in errors.
    pub fn merge(&mut self, mut other: Partial, names: (&Path, &Path)) -> Result<u64> {
        // The one rule for shards that belong together (what `featdict merge` checks of
        // every shard before reading any state); the settings of the accumulators
        // themselves are checked again by their merge.
        check_shards_agree(&[(names.0, &self.config), (names.1, &other.config)])?;
        let config = filled_config(&self.config, &other.config);
        // Shards numbered apart (`--first-sequence`) keep their numbers, whatever the order
        // of merging; a shard whose numbers collide with any held here (separate builds all
        // start at 0) moves past everything held.
        let collide = self.sequences.iter().any(|a| {
            other
                .sequences
                .iter()
                .any(|b| a.start < b.end && b.start < a.end)
        });
        let shift = match (
            self.sequences.iter().map(|r| r.end).max(),
            other.sequences.first(),
        ) {
            (Some(end), Some(first)) if collide => end - first.start,
            _ => 0,
        };
        for seen in &mut other.first_seen {
            if seen.0 != NEVER.0 {
                seen.0 += shift;
            }
        }
        let identical = self.vocab.len() == other.vocab.len()
            && (0..self.vocab.len() as TokenId)
                .all(|id| self.vocab.token(id) == other.vocab.token(id));
        let keyed = !self.acc.token_keys().is_empty() || !other.acc.token_keys().is_empty();
        if shift > 0 {
            other.acc.shift_sequences(shift);
        }
        if identical {
            // One tokenizer's ids (or the same strings in the same order): ids stay.
            let keys: Vec<u64> = (0..self.vocab.len() as TokenId)
                .map(|id| text_key(&self.vocab.token(id)))
                .collect();
            self.acc
                .merge_keyed(other.acc, keyed.then_some(&keys[..]))?;
            for (mine, theirs) in self.first_seen.iter_mut().zip(&other.first_seen) {
                *mine = (*mine).min(*theirs);
            }
        } else {
            // Strings interned in order of first occurrence, as one pass over the whole
            // corpus interns them, whatever the order the shards are merged in.
            let mut union: std::collections::HashMap<String, (u64, u32)> =
                std::collections::HashMap::new();
            let mut order: Vec<String> = Vec::new();
            for (vocab, seen) in [
                (&self.vocab, &self.first_seen),
                (&other.vocab, &other.first_seen),
            ] {
                for id in 0..vocab.len() as TokenId {
                    let t = vocab.token(id);
                    let at = seen.get(id as usize).copied().unwrap_or(NEVER);
                    match union.get_mut(t.as_ref()) {
                        Some(first) => *first = (*first).min(at),
                        None => {
                            union.insert(t.to_string(), at);
                            order.push(t.into_owned());
                        }
                    }
                }
            }
            // Stable: strings never seen keep the order they were listed in.
            order.sort_by_key(|t| union[t]);
            let merged = Vocab::from_strings(order);
            let map_of = |vocab: &Vocab| -> Vec<TokenId> {
                (0..vocab.len() as TokenId)
                    .map(|id| merged.get(&vocab.token(id)).expect("in the union"))
                    .collect()
            };
            let (mine, theirs) = (map_of(&self.vocab), map_of(&other.vocab));
            let keys: Vec<u64> = (0..merged.len() as TokenId)
                .map(|id| text_key(&merged.token(id)))
                .collect();
            self.acc.remap_tokens(&mine, merged.len())?;
            self.acc
                .merge_remapped(other.acc, &theirs, keyed.then_some(&keys[..]))?;
            self.first_seen = (0..merged.len() as TokenId)
                .map(|id| union[merged.token(id).as_ref()])
                .collect();
            self.vocab = merged;
        }
        self.config = config;
        for r in &other.sequences {
            add_range(&mut self.sequences, r.start + shift..r.end + shift);
        }
        Ok(shift)
    }
}

/// Checks, from their configs alone (see [`Partial::read_config`]), that shards can merge:
/// the same feature count and extraction settings, and no two naming different models, SAEs,
/// layers or input widths. The error names the two shards that disagree.
pub fn check_shards_agree(shards: &[(&Path, &DictionaryConfig)]) -> Result<()> {
    let Some(&(first, base)) = shards.first() else {
        return Ok(());
    };
    let settings = |path: &Path, c: &DictionaryConfig| {
        crate::accumulate::Settings::from_config(&c.extraction)
            .map_err(|e| damaged(path, e.to_string()))
    };
    let base_settings = settings(first, base)?;
    let refuse = |a: &Path, b: &Path, what: String| {
        Error::Invalid(format!(
            "cannot merge {} with {}: {what}",
            b.display(),
            a.display()
        ))
    };
    // The first shard that names each of model, SAE and input width.
    let mut model: Option<(&Path, &str)> = None;
    let mut sae: Option<(&Path, &str)> = None;
    let mut width: Option<(&Path, usize)> = None;
    for &(path, c) in shards {
        if c.num_features != base.num_features {
            return Err(refuse(
                first,
                path,
                format!(
                    "{} features against {} (shards of one SAE have its width; a lone delphi file that does not record it is built with one past its largest latent that fired, unless `featdict build --latents` gives it)",
                    c.num_features, base.num_features
                ),
            ));
        }
        if let Some(diff) = base_settings.difference(&settings(path, c)?) {
            return Err(refuse(
                first,
                path,
                format!(
                    "they were accumulated with different settings ({}'s vs {}'s): {diff}",
                    first.display(),
                    path.display()
                ),
            ));
        }
        if c.layer != base.layer {
            return Err(refuse(
                first,
                path,
                format!(
                    "they are of different layers ({} vs {}); give --layer to merge to name the result",
                    base.layer, c.layer
                ),
            ));
        }
        for (what, named, mine) in [
            ("model", &mut model, &c.model_name),
            ("SAE", &mut sae, &c.sae_name),
        ] {
            if mine.is_empty() {
                continue;
            }
            match *named {
                None => *named = Some((path, mine.as_str())),
                Some((by, theirs)) if theirs != mine => {
                    return Err(refuse(
                        by,
                        path,
                        format!(
                            "they are of different {what}s ({theirs:?} vs {mine:?}); give --model-name/--sae-name to merge to name the result"
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        if c.feature_dim != 0 {
            match width {
                None => width = Some((path, c.feature_dim)),
                Some((by, w)) if w != c.feature_dim => {
                    return Err(refuse(
                        by,
                        path,
                        format!(
                            "their features read inputs of different widths ({w} vs {})",
                            c.feature_dim
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// Adds `r` to `ranges` (sorted, disjoint), joining the ranges it meets or touches; an
/// empty range adds nothing.
fn add_range(ranges: &mut Vec<Range<u64>>, r: Range<u64>) {
    if r.start >= r.end {
        return;
    }
    ranges.push(r);
    ranges.sort_unstable_by_key(|r| r.start);
    let mut joined: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges.drain(..) {
        match joined.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => joined.push(r),
        }
    }
    *ranges = joined;
}

/// A 64-bit checksum of a byte stream, word by word (the same for any split of the stream
/// into writes): not cryptographic, it catches damage, as a file's CRC does.
#[derive(Default)]
struct Checksum {
    h: u64,
    pending: [u8; 8],
    n_pending: usize,
    len: u64,
}

impl Checksum {
    fn update(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if self.n_pending > 0 {
            let take = (8 - self.n_pending).min(bytes.len());
            self.pending[self.n_pending..self.n_pending + take].copy_from_slice(&bytes[..take]);
            self.n_pending += take;
            bytes = &bytes[take..];
            if self.n_pending < 8 {
                return;
            }
            self.word(u64::from_le_bytes(self.pending));
            self.n_pending = 0;
        }
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.word(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let tail = words.remainder();
        self.pending[..tail.len()].copy_from_slice(tail);
        self.n_pending = tail.len();
    }

    #[inline]
    fn word(&mut self, w: u64) {
        self.h = (self.h ^ w)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }

    fn finish(mut self) -> u64 {
        let mut last = [0u8; 8];
        last[..self.n_pending].copy_from_slice(&self.pending[..self.n_pending]);
        self.word(u64::from_le_bytes(last));
        self.word(self.len);
        crate::accumulate::samples::mix(self.h)
    }
}

/// A reader or writer that checksums the bytes passing through it.
struct Hashed<T> {
    inner: T,
    sum: Checksum,
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sum.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sum.update(&buf[..n]);
        Ok(n)
    }
}

/// The bincode encoding of the file (fixed-width integers, little-endian).
fn encoding() -> impl bincode::Options {
    bincode::DefaultOptions::new().with_fixint_encoding()
}

/// The file at `path` past its magic and version (checked), and the file's length.
fn open(path: &Path) -> Result<(std::io::BufReader<std::fs::File>, u64)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
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
    Ok((r, meta.len()))
}

fn damaged(path: &Path, what: String) -> Error {
    Error::format(
        path,
        format!("partial dictionary is truncated or damaged: {what}"),
    )
}

fn parse_config(path: &Path, json: &str) -> Result<DictionaryConfig> {
    serde_json::from_str(json).map_err(|e| damaged(path, format!("its config does not parse: {e}")))
}

/// The config of two agreeing shards' merge (see [`check_shards_agree`]): `a`'s, with
/// what only `b` names (model, SAE, input width) filled in.
fn filled_config(a: &DictionaryConfig, b: &DictionaryConfig) -> DictionaryConfig {
    let mut merged = a.clone();
    for (mine, theirs) in [
        (&mut merged.model_name, &b.model_name),
        (&mut merged.sae_name, &b.sae_name),
    ] {
        if mine.is_empty() {
            mine.clone_from(theirs);
        }
    }
    if merged.feature_dim == 0 {
        merged.feature_dim = b.feature_dim;
    }
    merged
}
