//! EleutherAI delphi latent caches: one `.safetensors` shard, or a directory of
//! `<start>_<end>.safetensors` shards (end inclusive) that split the latent range.
//!
//! Each shard holds `locations [N, 3]` = (sequence, position, latent − start) as
//! uint16/uint32/int32/int64, `activations [N]` (float16/float32) and usually the whole
//! `tokens [n_seq, ctx_len]` matrix. The shards are memory-mapped and indexed once by
//! sequence (a stable counting sort only when entries are not already in sequence order),
//! then read sequence range by sequence range into CSR batches, so memory is the cache's
//! entries (on disk, paged in on demand) plus one batch — never tokens × features.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::safetensors::{float_dtype, IntReader, SafeTensors, TensorInfo};
use super::token_ids::TokenIdMatrix;
use super::{
    ActivationBatch, ActivationSource, BatchValues, Provenance, SparseRows, TokenSequences, Vocab,
};
use crate::error::{Error, Result};

/// `__metadata__` key holding the SAE width of a latents file written by `featdict encode`.
pub const D_SAE_KEY: &str = "d_sae";
/// `__metadata__` key holding the residual width the SAE read (`featdict encode`), which
/// becomes the dictionary's `feature_dim` as when `build --sae` encodes itself.
pub const D_IN_KEY: &str = "d_in";
/// Metadata key of a latents file `featdict encode` wrote: the model of its SAE's config.
pub const MODEL_NAME_KEY: &str = "model_name";
/// Metadata key of a latents file `featdict encode` wrote: its SAE's hookpoint.
pub const HOOK_NAME_KEY: &str = "hook_name";

/// One shard file and its latent range.
#[derive(Debug)]
struct Shard {
    /// Shared with the token sequences that read the cache's `tokens` from it.
    file: Arc<SafeTensors>,
    /// First latent (global index) of the shard.
    start: u64,
    /// Latents in the shard (`end − start + 1`), or `None` for a lone file named otherwise.
    width: Option<u64>,
    locations: TensorInfo,
    activations: TensorInfo,
}

/// A delphi latent cache: its shards and, when present, its token ids.
#[derive(Debug)]
pub struct DelphiCache {
    path: PathBuf,
    shards: Vec<Shard>,
    n_features: usize,
    /// Whether `n_features` is one past the largest latent that fired, for want of anything
    /// saying the SAE's width (a lone file with absolute indices and no recorded `d_sae`).
    n_features_guessed: bool,
    /// The `tokens` tensor: index of the first shard holding it, and where it lies there.
    tokens: Option<(usize, TensorInfo)>,
}

/// `<start>_<end>` from a shard file name.
fn shard_range(path: &Path) -> Option<(u64, u64)> {
    let stem = path.file_stem()?.to_str()?;
    let (a, b) = stem.split_once('_')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn file_name(path: &Path) -> std::borrow::Cow<'_, str> {
    path.file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy()
}

/// Whether a `.safetensors` file looks like a delphi cache shard (has `locations` and
/// `activations`), judged from its header alone.
pub fn is_delphi_file(path: &Path) -> bool {
    SafeTensors::open(path)
        .map(|f| f.get("locations").is_some() && f.get("activations").is_some())
        .unwrap_or(false)
}

/// The `config.json` delphi writes beside the shards of the cache at `path` (a shard file
/// or its directory), parsed, with its path; `None` when there is none to read.
fn cache_config(path: &Path) -> Option<(PathBuf, serde_json::Value)> {
    let file = cache_dir(path)?.join("config.json");
    let value = serde_json::from_slice(&std::fs::read(&file).ok()?).ok()?;
    Some((file, value))
}

/// The directory of the cache at `path` (a shard file or its directory).
fn cache_dir(path: &Path) -> Option<&Path> {
    if path.is_dir() {
        Some(path)
    } else {
        path.parent()
    }
}

/// Refuses a cache whose last shards are missing: delphi writes `n_splits` (its
/// `config.json` beside the shards) files covering the latents from 0 up, so fewer ranged
/// shard files than that mean the latents past the last one would silently not exist (the
/// missing first and middle shards are caught by their ranges). Without that config, or for
/// a lone file with absolute indices (delphi's unsplit save), there is nothing to check.
fn check_split_count(path: &Path, files: &[(PathBuf, Option<(u64, u64)>)]) -> Result<()> {
    let Some((config, n_splits)) = cache_config(path).and_then(|(file, c)| {
        c.get("n_splits")
            .and_then(serde_json::Value::as_u64)
            .map(|n| (file, n))
    }) else {
        return Ok(());
    };
    let dir = config.parent().unwrap_or(path);
    let ranged: Vec<(&PathBuf, (u64, u64))> = files
        .iter()
        .filter_map(|(p, r)| r.map(|r| (p, r)))
        .collect();
    let Some(&(last, (_, end))) = ranged.iter().max_by_key(|(_, r)| r.1) else {
        return Ok(());
    };
    if (ranged.len() as u64) >= n_splits {
        return Ok(());
    }
    let saved = format!(
        "{} says the cache was saved in {n_splits} shards (n_splits)",
        config.display()
    );
    let why = if path.is_dir() {
        format!(
            "{saved}, but the directory holds {}, the last ending at latent {end} ({}): the shards after it are missing, and their latents would be left out of the dictionary",
            crate::count_of(ranged.len() as u64, "shard file", "shard files"),
            file_name(last),
        )
    } else {
        format!(
            "{saved}, and this one ends at latent {end}: a dictionary is built over a whole cache, so pass its directory, {}",
            dir.display()
        )
    };
    Err(Error::format(path, why))
}

/// [`Provenance`] of the cache at `path` (a shard file or its directory): the model
/// from a `config.json` beside the shards, the layer from the directory's name when it
/// names a hookpoint (with or without that file: shards copied without it keep their layer).
pub fn cache_provenance(path: &Path) -> Provenance {
    let Some(dir) = cache_dir(path) else {
        return Provenance::default();
    };
    let config = cache_config(path).map(|(_, c)| c);
    let model_name = config.as_ref().and_then(|config| {
        config["model_name"]
            .as_str()
            .filter(|m| !m.is_empty())
            .map(str::to_string)
    });
    let hookpoint = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()));
    // Beside delphi's config the directory is a hookpoint whatever its naming
    // (`encoder.block.3`): its first number is the layer.
    let layer = hookpoint.as_deref().and_then(|h| {
        hookpoint_layer(h).or_else(|| {
            config
                .as_ref()
                .and_then(|_| h.split('.').find_map(|part| part.parse::<i64>().ok()))
        })
    });
    Provenance { model_name, layer }
}

/// The layer a hookpoint name gives: the number after its `blocks`, `block`, `layers`,
/// `layer` or `h` part (`blocks.9.hook_resid_post`, `layers.9`, `model.layers.9.mlp`,
/// `transformer.h.9`); `None` for a name that is no hookpoint (`run.3`, `cache`).
pub fn hookpoint_layer(name: &str) -> Option<i64> {
    let parts: Vec<&str> = name.split('.').collect();
    parts.windows(2).find_map(|w| {
        matches!(w[0], "blocks" | "block" | "layers" | "layer" | "h")
            .then(|| w[1].parse::<i64>().ok())
            .flatten()
    })
}

impl DelphiCache {
    /// Opens a shard file or a directory of shards.
    pub fn open(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let mut files: Vec<(PathBuf, Option<(u64, u64)>)> = Vec::new();
        if meta.is_dir() {
            let mut subdirs = Vec::new();
            for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
                let entry = entry.map_err(|e| Error::io(path, e))?;
                let p = entry.path();
                if p.is_dir() {
                    subdirs.push(entry.file_name().to_string_lossy().into_owned());
                } else if p.extension().and_then(|e| e.to_str()) == Some("safetensors") {
                    match shard_range(&p) {
                        Some(r) => files.push((p, Some(r))),
                        None => {
                            return Err(Error::format(
                                &p,
                                "shard file name is not <start>_<end>.safetensors",
                            ))
                        }
                    }
                }
            }
            if files.is_empty() {
                subdirs.sort();
                let hint = if subdirs.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; it has subdirectories ({}) — pass the one of your hookpoint",
                        subdirs.join(", ")
                    )
                };
                return Err(Error::format(
                    path,
                    format!("is a directory without <start>_<end>.safetensors shards; expected an activation file or a delphi cache directory{hint}"),
                ));
            }
            files.sort_by_key(|(_, r)| r.map(|r| r.0));
        } else {
            files.push((path.to_path_buf(), shard_range(path)));
        }
        check_split_count(path, &files)?;
        let files = files
            .into_iter()
            .map(|(p, range)| Ok((SafeTensors::open(&p)?, range)))
            .collect::<Result<Vec<_>>>()?;
        Self::from_shards(path, files)
    }

    /// Builds a cache from parsed shard files and their `<start>, <end>` latent ranges
    /// (`None` for a lone file with absolute latent indices).
    pub fn from_shards(path: &Path, files: Vec<(SafeTensors, Option<(u64, u64)>)>) -> Result<Self> {
        if files.is_empty() {
            return Err(Error::format(path, "no shards"));
        }
        let lone = files.len() == 1;
        let mut shards: Vec<Shard> = Vec::with_capacity(files.len());
        let mut tokens: Option<(usize, TensorInfo)> = None;
        for (file, range) in files {
            let p = file.path().to_path_buf();
            let locations = file.tensor("locations")?.clone();
            let activations = file.tensor("activations")?.clone();
            let n = match locations.shape.as_slice() {
                [n, 3] => *n,
                s => {
                    return Err(Error::format(
                        &p,
                        format!("tensor \"locations\" has shape {s:?}; expected [N, 3]"),
                    ))
                }
            };
            IntReader::new(&p, &locations, file.bytes(&locations))?;
            if float_dtype(&activations.dtype).is_none() {
                return Err(Error::format(
                    &p,
                    format!(
                        "tensor \"activations\" has dtype {}; expected F16, BF16, F32 or F64",
                        activations.dtype
                    ),
                ));
            }
            file.expect_shape(&activations, &[n])?;
            if let Some(t) = file.get("tokens") {
                // Checked (as ids) when the sequences are made; here only the same values
                // in every shard, read where they lie, never copied out.
                let reader = IntReader::new(&p, t, file.bytes(t))?;
                match &tokens {
                    None => tokens = Some((shards.len(), t.clone())),
                    Some((first, ft)) => {
                        let first: &SafeTensors = &shards[*first].file;
                        let theirs = IntReader::new(first.path(), ft, first.bytes(ft))?;
                        // The same values: byte for byte when the dtypes agree (values a
                        // dtype cannot hold as ids are refused later, not called different).
                        let same = ft.shape == t.shape
                            && if ft.dtype == t.dtype {
                                first.bytes(ft) == file.bytes(t)
                            } else {
                                (0..reader.len()).all(|i| {
                                    matches!((reader.get(i), theirs.get(i)), (Ok(a), Ok(b)) if a == b)
                                })
                            };
                        if !same {
                            return Err(Error::format(
                                &p,
                                format!(
                                    "its \"tokens\" tensor differs from the one in {}; shards of one cache repeat the same tokens",
                                    first.path().display()
                                ),
                            ));
                        }
                    }
                }
            }
            let (start, width) = match range {
                Some((s, e)) if e >= s => (s, Some(e - s + 1)),
                Some((s, e)) => {
                    return Err(Error::format(
                        &p,
                        format!("shard range {s}_{e} ends before it starts"),
                    ))
                }
                // A lone file is read with absolute latent indices unless its name says
                // otherwise; among several shards every one needs its range.
                None if lone => (0, None),
                None => {
                    return Err(Error::format(
                        &p,
                        "a shard among several needs its <start>_<end> latent range",
                    ))
                }
            };
            shards.push(Shard {
                file: Arc::new(file),
                start,
                width,
                locations,
                activations,
            });
        }
        // delphi's shards cover latents from 0; a first shard starting later means the
        // earlier shard files are missing (or a lone shard was given), and reading on would
        // report latents 0..start as dead.
        if let Some(first) = shards.first().filter(|s| s.width.is_some() && s.start > 0) {
            let before = first.start - 1;
            return Err(Error::format(
                path,
                format!(
                    "latents 0..={before} are in no shard: the first shard, {}, starts at latent {}; is the shard 0_{before}.safetensors missing? (a dictionary is built over a whole cache, from latent 0)",
                    file_name(first.file.path()),
                    first.start
                ),
            ));
        }
        // Shards must not overlap.
        for w in shards.windows(2) {
            if let Some(wa) = w[0].width {
                if w[0].start + wa > w[1].start {
                    return Err(Error::format(
                        w[1].file.path(),
                        format!(
                            "its latent range overlaps {} (ranges must be disjoint)",
                            w[0].file.path().display()
                        ),
                    ));
                }
                // delphi splits the latent range into adjacent shards, so a hole means a
                // shard file is missing; reading on would report its latents as dead.
                if w[0].start + wa < w[1].start {
                    let (lo, hi) = (w[0].start + wa, w[1].start - 1);
                    return Err(Error::format(
                        path,
                        format!(
                            "latents {lo}..={hi} are in no shard: {} ends at latent {} and {} starts at {}; is the shard {lo}_{hi}.safetensors missing?",
                            file_name(w[0].file.path()),
                            lo - 1,
                            file_name(w[1].file.path()),
                            w[1].start
                        ),
                    ));
                }
            }
        }
        let mut n_features = 0u64;
        let mut n_features_guessed = false;
        for s in &mut shards {
            let end = match s.width {
                Some(w) => s.start + w,
                None => {
                    // Lone file with absolute indices: one pass for the largest latent.
                    let r =
                        IntReader::new(s.file.path(), &s.locations, s.file.bytes(&s.locations))?;
                    let mut max = -1i64;
                    for i in 0..r.len() / 3 {
                        max = max.max(r.get(i * 3 + 2)?);
                    }
                    let seen = (max + 1).max(1) as u64;
                    // Latents above the largest that fired are only known from the width
                    // `featdict encode` records; without it they would silently vanish.
                    match s.file.metadata(D_SAE_KEY) {
                        None => {
                            n_features_guessed = true;
                            seen
                        }
                        Some(text) => match text.parse::<u64>() {
                            Ok(w) if w >= seen => w,
                            Ok(w) => {
                                return Err(Error::format(
                                    s.file.path(),
                                    format!(
                                        "holds latent {max} but its metadata says {D_SAE_KEY} = {w}"
                                    ),
                                ))
                            }
                            Err(_) => {
                                return Err(Error::format(
                                    s.file.path(),
                                    format!(
                                        "metadata {D_SAE_KEY} is {text:?}; expected a latent count"
                                    ),
                                ))
                            }
                        },
                    }
                }
            };
            n_features = n_features.max(end);
        }
        let n_features = usize::try_from(n_features)
            .ok()
            .filter(|&n| n < u32::MAX as usize)
            .ok_or_else(|| Error::format(path, format!("absurd latent count {n_features}")))?;
        Ok(Self {
            path: path.to_path_buf(),
            shards,
            n_features,
            n_features_guessed,
            tokens,
        })
    }

    /// Latents (one past the largest index any shard covers).
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Whether [`Self::n_features`] is only one past the largest latent that fired: a lone
    /// file with absolute indices that records no `d_sae` (delphi's unsplit save) does not
    /// say how many latents its SAE has, so latents above that never fired are not counted
    /// (give the width with [`Self::with_n_latents`]).
    pub fn n_features_guessed(&self) -> bool {
        self.n_features_guessed
    }

    /// The cache with the SAE's latent count `n` given by the user (`featdict build
    /// --latents`): it must cover every latent the shards hold, and — where shard ranges or
    /// a recorded `d_sae` say the count — equal it.
    pub fn with_n_latents(mut self, n: usize) -> Result<Self> {
        if self.n_features_guessed {
            if n < self.n_features {
                return Err(Error::format(
                    &self.path,
                    format!(
                        "holds latent {} but the SAE is said to have {n} latents",
                        self.n_features - 1
                    ),
                ));
            }
            self.n_features = n;
            self.n_features_guessed = false;
        } else if n != self.n_features {
            let how = if n > self.n_features {
                format!(
                    "; latents {}..={} are in no shard (is a shard missing?)",
                    self.n_features,
                    n - 1
                )
            } else {
                String::new()
            };
            return Err(Error::format(
                &self.path,
                format!(
                    "covers {} latents, but the SAE is said to have {n}{how}",
                    self.n_features
                ),
            ));
        }
        Ok(self)
    }

    /// The cache's `tokens` matrix read whole, when its shards carry one.
    pub fn token_ids(&self) -> Result<Option<TokenIdMatrix>> {
        let Some((shard, t)) = &self.tokens else {
            return Ok(None);
        };
        let file = &self.shards[*shard].file;
        let reader = IntReader::new(file.path(), t, file.bytes(t))?;
        let values = (0..reader.len()).map(|i| reader.get(i).unwrap_or(-1));
        TokenIdMatrix::from_i64(file.path(), values, &t.shape).map(Some)
    }

    /// `[sequences, seq_len]` of the cache's `tokens`, when its shards carry them.
    pub fn token_shape(&self) -> Option<(u64, u64)> {
        match self.tokens.as_ref()?.1.shape.as_slice() {
            &[s, l] => Some((s, l)),
            _ => None,
        }
    }

    /// The cache's `tokens` as sequences for a build, with `vocab` (a tokenizer's) or,
    /// without one, each id shown as `[id]`: every id is checked here, then read from the
    /// shard as batches ask for rows (never copied out whole).
    pub fn token_sequences(&self, vocab: Option<Vocab>) -> Result<Option<TokenSequences>> {
        let Some((shard, t)) = &self.tokens else {
            return Ok(None);
        };
        super::token_ids::tensor_sequences(self.shards[*shard].file.clone(), t, vocab).map(Some)
    }

    /// Total stored entries.
    pub fn n_entries(&self) -> u64 {
        self.shards.iter().map(|s| s.locations.shape[0]).sum()
    }

    /// The cache path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Per-shard index: entry ids grouped by sequence.
#[derive(Debug)]
struct ShardIndex {
    /// Entry order (ascending sequence, stable); `None` when the file already is.
    order: Option<Vec<u32>>,
    /// `bounds[s]..bounds[s + 1]` are the entries (in `order`) of sequence `s`.
    bounds: Vec<usize>,
}

/// A delphi cache read as CSR batches of whole sequences.
pub struct DelphiSource {
    cache: DelphiCache,
    tokens: TokenSequences,
    index: Vec<ShardIndex>,
    next_seq: usize,
    /// Index of the first sequence (see [`DelphiSource::with_first_sequence`]).
    first_sequence: u64,
    max_rows: u64,
}

impl DelphiSource {
    /// Indexes `cache` against `tokens` (which must cover every stored (sequence,
    /// position)); batches hold whole sequences, about `max_rows` rows each.
    pub fn new(cache: DelphiCache, tokens: TokenSequences, max_rows: usize) -> Result<Self> {
        if let Some((n_sequences, _)) = cache.token_shape() {
            if n_sequences != tokens.n_sequences() as u64 {
                return Err(Error::format(
                    tokens.path(),
                    format!(
                        "the cache {} has tokens for {} but the given tokens have {}",
                        cache.path().display(),
                        crate::count_of(n_sequences, "sequence", "sequences"),
                        tokens.n_sequences()
                    ),
                ));
            }
        }
        let n_seq = tokens.n_sequences();
        let offsets = tokens.offsets().to_vec();
        let mut index = Vec::with_capacity(cache.shards.len());
        for shard in &cache.shards {
            let path = shard.file.path();
            let loc = IntReader::new(path, &shard.locations, shard.file.bytes(&shard.locations))?;
            let n = loc.len() / 3;
            if n > u32::MAX as usize {
                return Err(Error::format(path, "more than 2^32 entries in one shard"));
            }
            let mut counts = vec![0usize; n_seq + 1];
            let mut sorted = true;
            let mut prev = 0i64;
            for i in 0..n {
                let (s, p, l) = (loc.get(3 * i)?, loc.get(3 * i + 1)?, loc.get(3 * i + 2)?);
                let seq_ok = s >= 0 && (s as usize) < n_seq;
                let len = if seq_ok {
                    offsets[s as usize + 1] - offsets[s as usize]
                } else {
                    0
                };
                let lat_ok = l >= 0 && shard.width.is_none_or(|w| (l as u64) < w);
                if !seq_ok || p < 0 || p as u64 >= len || !lat_ok {
                    return Err(Error::format(
                        path,
                        format!(
                            "entry {i} (sequence {s}, position {p}, latent {l}) is out of range: the tokens have {n_seq} sequences (lengths {}){}",
                            tokens.describe_lengths(),
                            shard
                                .width
                                .map(|w| format!(" and the shard holds {w} latents"))
                                .unwrap_or_default()
                        ),
                    ));
                }
                sorted &= s >= prev;
                prev = s;
                counts[s as usize + 1] += 1;
            }
            for s in 0..n_seq {
                counts[s + 1] += counts[s];
            }
            let order = if sorted {
                None
            } else {
                let mut next = counts.clone();
                let mut order = vec![0u32; n];
                for i in 0..n {
                    let s = loc.get(3 * i)? as usize;
                    order[next[s]] = i as u32;
                    next[s] += 1;
                }
                Some(order)
            };
            index.push(ShardIndex {
                order,
                bounds: counts,
            });
        }
        Ok(Self {
            cache,
            tokens,
            index,
            next_seq: 0,
            first_sequence: 0,
            max_rows: max_rows.max(1) as u64,
        })
    }

    /// Numbers this input's sequences from `first` (so shards of one corpus, built
    /// separately and merged, keep distinct sequence indices).
    pub fn with_first_sequence(mut self, first: u64) -> Self {
        self.first_sequence = first;
        self
    }

    /// The token sequences.
    pub fn tokens(&self) -> &TokenSequences {
        &self.tokens
    }
}

impl ActivationSource for DelphiSource {
    fn n_features(&self) -> usize {
        self.cache.n_features
    }

    fn n_features_guessed(&self) -> bool {
        self.cache.n_features_guessed
    }

    fn input_dim(&self) -> Option<usize> {
        // Only a width every shard that records one agrees on.
        let mut dims = self
            .cache
            .shards
            .iter()
            .filter_map(|s| s.file.metadata(D_IN_KEY)?.parse::<usize>().ok());
        let first = dims.next()?;
        dims.all(|d| d == first).then_some(first)
    }

    fn n_tokens_hint(&self) -> Option<u64> {
        Some(self.tokens.n_tokens())
    }

    fn provenance(&self) -> Provenance {
        // What `featdict encode` recorded, when every shard that records it agrees.
        let agreed = |key: &str| {
            let mut values = self
                .cache
                .shards
                .iter()
                .filter_map(|s| s.file.metadata(key));
            let first = values.next()?;
            values.all(|v| v == first).then(|| first.to_string())
        };
        Provenance {
            model_name: agreed(MODEL_NAME_KEY).filter(|m| !m.is_empty()),
            layer: agreed(HOOK_NAME_KEY).as_deref().and_then(hookpoint_layer),
        }
    }

    fn vocab(&self) -> &Vocab {
        self.tokens.vocab()
    }

    fn tokens_decoded(&self) -> bool {
        self.tokens.decoded_byte_level()
    }

    fn token_notes(&self) -> &[String] {
        self.tokens.notes()
    }

    fn describe(&self) -> &Path {
        &self.cache.path
    }

    fn sequences(&self) -> Option<std::ops::Range<u64>> {
        Some(self.first_sequence..self.first_sequence + self.tokens.n_sequences() as u64)
    }

    fn next_batch(&mut self) -> Result<Option<ActivationBatch<'_>>> {
        let n_seq = self.tokens.n_sequences();
        if self.next_seq >= n_seq {
            return Ok(None);
        }
        let offsets = self.tokens.offsets();
        let s0 = self.next_seq;
        let mut s1 = s0 + 1;
        while s1 < n_seq && offsets[s1 + 1] - offsets[s0] <= self.max_rows {
            s1 += 1;
        }
        self.next_seq = s1;
        let base = offsets[s0];
        let n_rows = (offsets[s1] - base) as usize;

        // Gather (row, latent, value) from every shard, count per row, then scatter into CSR.
        let mut entries: Vec<(u32, u32, f32)> = Vec::new();
        for (shard, idx) in self.cache.shards.iter().zip(&self.index) {
            let path = shard.file.path();
            let loc = IntReader::new(path, &shard.locations, shard.file.bytes(&shard.locations))?;
            let act_bytes = shard.file.bytes(&shard.activations);
            let act_dtype = float_dtype(&shard.activations.dtype).expect("checked at open");
            let size = act_dtype.size();
            for k in idx.bounds[s0]..idx.bounds[s1] {
                let i = match &idx.order {
                    Some(o) => o[k] as usize,
                    None => k,
                };
                let s = loc.get(3 * i)? as u64;
                let p = loc.get(3 * i + 1)? as u64;
                let l = loc.get(3 * i + 2)? as u64 + shard.start;
                let row = (offsets[s as usize] - base + p) as u32;
                let raw = &act_bytes[i * size..(i + 1) * size];
                let v = super::safetensors::decode_float(raw, act_dtype);
                // A finite float64 beyond float32's range becomes ±inf here, which would be
                // reported as a NaN/Inf of the input; say what it is.
                if v.is_infinite() && act_dtype == super::DenseDtype::F64 {
                    let wide = f64::from_le_bytes(raw.try_into().expect("8 bytes"));
                    if wide.is_finite() {
                        let at = format!("sequence {s}, position {p}, latent {l}");
                        return Err(super::beyond_f32(path, wide, &at));
                    }
                }
                entries.push((row, l as u32, v));
            }
        }
        let mut indptr = vec![0usize; n_rows + 1];
        for e in &entries {
            indptr[e.0 as usize + 1] += 1;
        }
        for r in 0..n_rows {
            indptr[r + 1] += indptr[r];
        }
        let mut fill = indptr.clone();
        let mut pairs = vec![(0u32, 0f32); entries.len()];
        for (row, l, v) in entries {
            pairs[fill[row as usize]] = (l, v);
            fill[row as usize] += 1;
        }
        for r in 0..n_rows {
            let seg = &mut pairs[indptr[r]..indptr[r + 1]];
            seg.sort_unstable_by_key(|p| p.0);
            if let Some(w) = seg.windows(2).find(|w| w[0].0 == w[1].0) {
                let seqs = offsets.partition_point(|&o| o <= base + r as u64) - 1;
                return Err(Error::format(
                    &self.cache.path,
                    format!(
                        "latent {} is stored twice for sequence {seqs}, position {}; a cache holds each (sequence, position, latent) once",
                        w[0].0,
                        base + r as u64 - offsets[seqs]
                    ),
                ));
            }
        }
        let (indices, values): (Vec<u32>, Vec<f32>) = pairs.into_iter().unzip();
        let mut sequences = Vec::with_capacity(n_rows);
        let mut positions = Vec::with_capacity(n_rows);
        for s in s0..s1 {
            for p in 0..offsets[s + 1] - offsets[s] {
                sequences.push(self.first_sequence + s as u64);
                positions.push(p as u32);
            }
        }
        Ok(Some(ActivationBatch {
            n_features: self.cache.n_features,
            tokens: self.tokens.ids(base..offsets[s1])?,
            sequences,
            positions,
            core: 0..n_rows,
            values: BatchValues::Sparse(SparseRows {
                indptr,
                indices,
                values,
            }),
            token_keys: Some(self.tokens.keys()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layer_comes_from_a_hookpoint_name_only() {
        for (name, layer) in [
            ("blocks.9.hook_resid_post", Some(9)),
            ("layers.9", Some(9)),
            ("model.layers.12.mlp", Some(12)),
            ("transformer.h.3", Some(3)),
            ("run.3", None),
            ("cache", None),
            ("blocks.x.hook", None),
        ] {
            assert_eq!(hookpoint_layer(name), layer, "{name}");
        }
    }

    #[test]
    fn a_cache_without_its_config_keeps_the_layer_of_its_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("blocks.9.hook_resid_post");
        std::fs::create_dir(&dir).unwrap();
        let p = cache_provenance(&dir);
        assert_eq!((p.model_name, p.layer), (None, Some(9)));
        std::fs::write(dir.join("config.json"), r#"{"model_name": "m"}"#).unwrap();
        let p = cache_provenance(&dir.join("0_9.safetensors"));
        assert_eq!((p.model_name.as_deref(), p.layer), (Some("m"), Some(9)));
        assert_eq!(cache_provenance(root.path()).layer, None);
        // Beside delphi's config any name's first number is the layer.
        let other = root.path().join("encoder.mlp.3");
        std::fs::create_dir(&other).unwrap();
        assert_eq!(cache_provenance(&other).layer, None);
        std::fs::write(other.join("config.json"), "{}").unwrap();
        assert_eq!(cache_provenance(&other).layer, Some(3));
    }
}
