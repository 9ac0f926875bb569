//! The native dictionary file `.fdict`: one SQLite database (rollback journal) that opens without loading
//! everything.
//!
//! # Layout
//! - `meta(key, value)`: `format`, `schema_version`, `config` (JSON), `feature_set` (the
//!   feature set's JSON without its features: layer, names, tokens processed, metadata with the
//!   corpus token counts), `statistics` (JSON, precomputed so opening is O(1)), `summary`
//!   and, in a labeled file (schema version 2), `dead_descriptions` (see [`DeadDescriptions`]).
//! - `features`: one row per feature — indexed scalar columns for ranking and filtering plus
//!   `body`, the whole [`Feature`] as JSON (examples, histogram, quantile samples, scored
//!   labels, neighbours, unknown keys). The body is the single source of truth for reading a
//!   feature back, which is what makes JSON → `.fdict` → JSON lossless. A feature that holds
//!   nothing but its id, dimension, type and description (one that never fired and has no
//!   label) has only those keys in its body; the others read back as their zero defaults.
//! - `tokens(id, token)`, `top_tokens(token_id, feature_id, firings, occurrences, precision)`:
//!   each feature's fired-on tokens, indexed by token, for token and regex search.
//! - `example_tokens(token, feature_id, examples)`: for each feature without `top_tokens`,
//!   how many of its stored examples fire on each token ([`crate::query::example_token_counts`]),
//!   indexed by token: what token and regex search use in a dictionary without per-token
//!   counts (a file of the original library). Files written before this table existed lack
//!   it; their searches read the examples from the bodies instead (see [`crate::query`]).
//! - `labels(feature_id, rank, text, strategy, confidence, precision, recall)`: scored labels.
//! - `neighbours(feature_id, kind, other_id, score)`: correlated (`kind = "correlated"`) and
//!   similar (`"similar"`) features: the partners a `--correlation` build stored (metadata
//!   key `correlated`, else `correlated_features`) and the key `similar_features` (arrays
//!   of `{"id", "score"}` or `[id, score]`).
//! - `fts` (FTS5, unicode61): labels, description and top tokens, for bm25-ranked full text;
//!   `labels_tri` (FTS5, trigram): label texts (and the feature's confidence, unindexed), for
//!   case-insensitive substring search.
//! - Index `labels_by_confidence(confidence DESC, feature_id, rank, text)` covers the ranked
//!   scan of label search, so it reads the index alone. `features_by_confidence`,
//!   `features_by_count`,
//!   `features_by_max` (`activation_count` or `max_activation` DESC, `id`, `feature_type`)
//!   and `features_by_id(id, feature_type)` give the feature listing its orders and its type
//!   filter without reading the table.
//!
//! Histograms and samples live in the body only: nothing queries inside them.
//!
//! # Writing
//! [`FdictWriter`] builds the database in a temporary file next to the target (journal off,
//! one transaction, indexes created after the bulk insert), syncs it and renames it over the
//! target. A crash at any point leaves the previous file intact (and at worst a
//! `.NAME.tmp-PID` file, which the next write of that target removes). Later edits (manual
//! labels) go through [`FdictReader::add_manual_label`] in an immediate transaction.
//!
//! Files use SQLite's rollback journal, not WAL, because every rewrite renames a new file
//! over one that a server may hold open. WAL's side files (`-wal`, `-shm`) are found by
//! name and outlive such a rename: pages the open connection had not checkpointed were read
//! as part of the new file (a fresh reader saw the old file's labels in the new one), and
//! its close deleted the side files the new file's connections were using. A rollback
//! journal exists only while a label is being written, and the writer holds the old file's
//! write lock across the rename so that no such write is in progress or starts in it
//! afterwards (a label writer that waited re-checks and finds the file replaced).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::analyze::correlation::PARTNERS_KEY;
use crate::dictionary::{FeatureDictionary, Statistics, StatisticsTally, TopBy};
use crate::error::{Error, Result};
use crate::model::{
    DictionaryConfig, Feature, FeatureMetadata, FeatureSet, FeatureType, FeatureView,
    LabelingStrategy, TokenCount,
};

/// The first 16 bytes of every SQLite database (and so of every `.fdict`).
pub const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// The `meta` keys the dictionary itself writes (see the layout above).
const OWN_META_KEYS: [&str; 8] = [
    "format",
    "schema_version",
    "writer",
    "config",
    "feature_set",
    "statistics",
    "summary",
    DEAD_DESCRIPTIONS_KEY,
];

/// Value of the `format` meta key.
pub const FORMAT: &str = "feature-dictionary/fdict";

/// The newest schema version, which this code reads and writes: version 1 with the meta key
/// [`DEAD_DESCRIPTIONS_KEY`]. A file is written as version 1 unless it needs that key, so
/// that earlier builds (which read version 1 only, and would show the descriptions it
/// leaves out as empty) refuse only the files they would misread.
pub const SCHEMA_VERSION: i64 = 2;

/// The oldest schema version read.
const FIRST_SCHEMA_VERSION: i64 = 1;

/// Meta key whose value `implied` says that the descriptions of features that never fired
/// are left out where they are the labeler's boilerplate (see [`DeadDescriptions`]).
pub const DEAD_DESCRIPTIONS_KEY: &str = "dead_descriptions";

/// Value of [`DEAD_DESCRIPTIONS_KEY`] in a file that leaves those descriptions out.
const IMPLIED: &str = "implied";

/// How the description of a dead feature without labels begins
/// ([`crate::label::describe::dead_description`]).
const DEAD_SENTENCE_START: &str = "Dead feature: never fired on the ";

/// Label texts longer than this are refused (manual labels are short phrases).
pub const MAX_LABEL_CHARS: usize = 200;

pub use crate::label::manual::MAX_MANUAL_LABELS;

/// Top tokens per feature that go into the full-text index (all of them go into
/// `top_tokens`, which token and regex search use).
const FTS_TOKENS: usize = 20;

const SCHEMA: &str = "
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE features(
    id INTEGER PRIMARY KEY,
    feature_type TEXT NOT NULL,
    activation_count INTEGER NOT NULL,
    activation_frequency REAL NOT NULL,
    max_activation REAL NOT NULL,
    mean_activation REAL NOT NULL,
    confidence REAL NOT NULL,
    labels TEXT NOT NULL,
    description TEXT NOT NULL,
    top_token TEXT,
    body TEXT NOT NULL
);
CREATE TABLE tokens(id INTEGER PRIMARY KEY, token TEXT NOT NULL UNIQUE);
CREATE TABLE top_tokens(
    token_id INTEGER NOT NULL,
    feature_id INTEGER NOT NULL,
    firings INTEGER NOT NULL,
    occurrences INTEGER NOT NULL,
    precision REAL NOT NULL,
    PRIMARY KEY(feature_id, token_id)
) WITHOUT ROWID;
CREATE TABLE labels(
    feature_id INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    text TEXT NOT NULL,
    strategy TEXT NOT NULL,
    confidence REAL NOT NULL,
    precision REAL,
    recall REAL,
    PRIMARY KEY(feature_id, rank)
) WITHOUT ROWID;
CREATE TABLE neighbours(
    feature_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    other_id INTEGER NOT NULL,
    score REAL NOT NULL
);
CREATE VIRTUAL TABLE fts USING fts5(labels, description, tokens);
CREATE VIRTUAL TABLE labels_tri USING fts5(labels, confidence UNINDEXED, tokenize = 'trigram');
";

/// Indexes created after the bulk insert (much faster than maintaining them row by row).
const INDEXES: &str = "
CREATE INDEX top_tokens_by_precision ON top_tokens(token_id, precision DESC, feature_id);
CREATE INDEX top_tokens_by_firings ON top_tokens(token_id, firings DESC, feature_id);
CREATE INDEX neighbours_by_feature ON neighbours(feature_id);
";

/// The table of a dictionary's example tokens (see the layout above), part of the schema;
/// also added by [`FdictReader::add_example_tokens`] to files written before it existed.
const EXAMPLE_TOKENS_TABLE: &str = "
CREATE TABLE example_tokens(
    token TEXT NOT NULL,
    feature_id INTEGER NOT NULL,
    examples INTEGER NOT NULL,
    PRIMARY KEY(feature_id, token)
) WITHOUT ROWID;
";

/// The index of `example_tokens`, created after the bulk insert with the others.
const EXAMPLE_TOKENS_INDEX: &str =
    "CREATE INDEX example_tokens_by_examples ON example_tokens(token, examples DESC, feature_id);";

/// The indexes of [`FdictReader::list_features`] and of label search (which reads
/// `labels_by_confidence` alone): each of the features' ends with the feature type, so a
/// listing of one type filters the index without reading the table. Created after the bulk insert with the
/// others, and by [`FdictReader::add_listing_indexes`] in files written before they existed.
const LISTING_INDEXES: [(&str, &str); 5] = [
    (
        "features_by_confidence",
        "features(confidence DESC, id, labels, feature_type)",
    ),
    (
        "features_by_count",
        "features(activation_count DESC, id, feature_type)",
    ),
    (
        "features_by_max",
        "features(max_activation DESC, id, feature_type)",
    ),
    // Narrower than the table, so paging by id walks it instead of the features' bodies.
    ("features_by_id", "features(id, feature_type)"),
    // Label search's ranked scan: each label by its own confidence.
    (
        "labels_by_confidence",
        "labels(confidence DESC, feature_id, rank, text)",
    ),
];

/// Small facts about a dictionary, read when it is opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Model name.
    pub model_name: String,
    /// SAE name.
    pub sae_name: String,
    /// Layer.
    pub layer: i64,
    /// Number of SAE features (dead and omitted ones included).
    pub num_features: usize,
    /// Features stored in the file.
    pub stored_features: usize,
    /// Tokens processed.
    pub total_tokens_processed: u64,
}

impl Summary {
    /// The summary of an in-memory dictionary.
    pub fn of(dict: &FeatureDictionary) -> Summary {
        Summary {
            model_name: dict.config.model_name.clone(),
            sae_name: dict.config.sae_name.clone(),
            layer: dict.config.layer,
            num_features: dict.num_features(),
            stored_features: dict.feature_set.len(),
            total_tokens_processed: dict.feature_set.total_tokens_processed,
        }
    }
}

fn sql_err(path: &Path, what: &str, e: rusqlite::Error) -> Error {
    Error::format(path, format!("{what}: {e}"))
}

/// Whether `path` starts with the SQLite magic (an `.fdict`), `Ok(false)` for anything else.
///
/// It opens and closes the file, which drops the POSIX locks of any SQLite connection this
/// process has open on it (see [`FdictReader::open`]): call it before opening, never while a
/// connection to the file is open.
pub fn is_fdict(path: &Path) -> Result<bool> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::format(
            path,
            "is a directory; expected a dictionary file (.fdict or .json)",
        ));
    }
    // A pipe or FIFO would lose the bytes looked at here, and SQLite cannot open one
    // anyway: it is read as JSON ([`super::load`] says so if it holds a database).
    if !meta.is_file() {
        return Ok(false);
    }
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = [0u8; 16];
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok(got == head.len() && &head == SQLITE_MAGIC)
}

/// Features whose JSON bodies [`write`] serializes while the previous wave is inserted.
pub(crate) const WRITE_WAVE: usize = 256;

/// Features [`FdictReader::relabel`] reads, labels and writes at a time: enough to keep
/// both threads busy parsing, few enough that a chunk of rich features (thousands of
/// examples each) stays in the tens of megabytes.
pub const RELABEL_CHUNK: usize = 1024;

/// Writes `dict` as an `.fdict` at `path` (temporary file + rename).
///
/// SQLite inserts on one thread; serializing the features' JSON bodies took about as long
/// again, so the next wave's bodies are serialized on the other threads while this wave is
/// inserted. The rows and their order are those of one [`FdictWriter::add`] per feature.
pub fn write(dict: &FeatureDictionary, path: &Path) -> Result<()> {
    write_with(dict, path, FeatureView::from, &AtomicBool::new(false))
}

/// [`write()`], with each feature written as `view(feature)`: a caller whose features hold
/// only their scalar fields and labels lends their examples and metadata from another copy
/// instead of cloning them in (as [`super::seed_json::write_with`]).
///
/// Given up soon after `stop` is set (it is looked at before each wave of features is
/// inserted), as [`super::seed_json::write_with`]: the temporary database is removed, the
/// file at `path` is left as it was, and the error is an I/O error of kind
/// [`std::io::ErrorKind::Interrupted`].
pub fn write_with<'a>(
    dict: &'a FeatureDictionary,
    path: &Path,
    view: impl Fn(&'a Feature) -> FeatureView<'a>,
    stop: &AtomicBool,
) -> Result<()> {
    let mut w = FdictWriter::create(path, &dict.config, &dict.feature_set)?;
    let features: Vec<FeatureView<'a>> = dict.features().map(view).collect();
    w.choose_dead_descriptions(&features);
    let dead = w.dead;
    for_each_serialized(&features, dead, not_stopped(path, stop), |f, body| {
        w.add_with_body(*f, body)
    })?;
    w.finish_unless(stop).map(|_| ())
}

/// Calls `store` with each feature and its JSON body, in order, while the bodies of the
/// next [`WRITE_WAVE`] features are serialized on the other threads (`store` itself runs on
/// the calling thread: a SQLite connection may not be shared). `go_on` is asked before each
/// wave; its error ends the loop.
fn for_each_serialized<T: AsView>(
    features: &[T],
    dead: DeadDescriptions,
    go_on: impl Fn() -> Result<()>,
    mut store: impl FnMut(&T, &Body) -> Result<()>,
) -> Result<()> {
    let waves: Vec<&[T]> = features.chunks(WRITE_WAVE).collect();
    pipelined(
        waves.len(),
        |i| Ok((waves[i], serialize_all(waves[i], dead)?)),
        go_on,
        |(wave, bodies)| {
            wave.iter()
                .zip(&bodies)
                .try_for_each(|(f, body)| store(f, body))
        },
    )
}

/// The `go_on` of a write given up when `stop` is set: an `Interrupted` I/O error naming
/// `path`.
fn not_stopped<'a>(path: &'a Path, stop: &'a AtomicBool) -> impl Fn() -> Result<()> + 'a {
    move || {
        if stop.load(Ordering::Relaxed) {
            Err(Error::io(path, super::stopped()))
        } else {
            Ok(())
        }
    }
}

/// Each item's JSON body ([`body_of`]), serialized on all threads.
fn serialize_all<T: AsView>(items: &[T], dead: DeadDescriptions) -> Result<Vec<Body>> {
    use rayon::prelude::*;
    items.par_iter().map(|f| body_of(f.view(), dead)).collect()
}

/// Makes wave `i + 1` (`make`, on the other threads) while wave `i` is stored (`store`, on
/// the calling thread), for `i` in `0..n_waves`. `go_on` is asked before each wave is
/// stored; its error, or one of `make` or `store`, ends the loop.
fn pipelined<W: Send>(
    n_waves: usize,
    make: impl Fn(usize) -> Result<W> + Sync,
    go_on: impl Fn() -> Result<()>,
    mut store: impl FnMut(W) -> Result<()>,
) -> Result<()> {
    let mut current = (n_waves > 0).then(|| make(0));
    let mut i = 0;
    while let Some(wave) = current.take() {
        go_on()?;
        let wave = wave?;
        i += 1;
        let mut next = None;
        rayon::in_place_scope(|scope| {
            if i < n_waves {
                let (next, make) = (&mut next, &make);
                scope.spawn(move |_| *next = Some(make(i)));
            }
            store(wave)
        })?;
        current = next;
    }
    Ok(())
}

/// Writes a dictionary whose features are made a wave at a time: `shell` gives the
/// dictionary-wide fields (its own features are ignored), `wave(i)` the features of wave `i`
/// (of `n_waves`, together in increasing id order). Wave `i + 1` is made and serialized on
/// the other threads while wave `i` is inserted, and each is dropped once written, so memory
/// holds two waves rather than the whole dictionary. Returns the written dictionary's
/// statistics. `stop` as in [`write_with`].
pub fn write_waves(
    shell: &FeatureDictionary,
    path: &Path,
    n_waves: usize,
    wave: impl Fn(usize) -> Vec<Feature> + Sync,
    stop: &AtomicBool,
) -> Result<Statistics> {
    let mut w = FdictWriter::create(path, &shell.config, &shell.feature_set)?;
    pipelined(
        n_waves,
        |i| {
            let features = wave(i);
            // A build's waves are not labeled: their dead features have no description.
            let bodies = serialize_all(&features, DeadDescriptions::Stored)?;
            Ok((features, bodies))
        },
        not_stopped(path, stop),
        |(features, bodies)| {
            features
                .iter()
                .zip(&bodies)
                .try_for_each(|(f, body)| w.add_with_body(f.into(), body))
        },
    )?;
    w.finish_unless(stop)
}

/// Writes the dictionary JSON at `input` (ours or the original library's) as the `.fdict`
/// `out`, a feature at a time as the JSON is read when it allows (see
/// [`super::seed_json::stream_features`]; it is read whole otherwise), calling `progress`
/// with the features written so far. Returns how many features were written.
pub fn import_json(input: &Path, out: &Path, progress: &mut dyn FnMut(usize)) -> Result<usize> {
    use super::seed_json;
    let regular = std::fs::metadata(input).is_ok_and(|m| m.is_file());
    if regular {
        let file = std::fs::File::open(input).map_err(|e| Error::io(input, e))?;
        let mut writer: Option<FdictWriter> = None;
        let mut written = 0;
        let streamed = seed_json::stream_features(file, &mut |head, f| {
            let w = match &mut writer {
                Some(w) => w,
                None => {
                    // The rest of the feature set follows its features: see `replace_shell`.
                    let shell = FeatureSet {
                        layer: head.layer.unwrap_or(0),
                        features: Default::default(),
                        total_tokens_processed: 0,
                        model_name: String::new(),
                        sae_name: String::new(),
                        metadata: Default::default(),
                    };
                    writer.insert(FdictWriter::create(out, &head.config, &shell)?)
                }
            };
            w.add(&f)?;
            written += 1;
            progress(written);
            Ok(())
        })?;
        if let Some(dict) = streamed {
            let mut w = match writer {
                Some(w) => w,
                None => FdictWriter::create(out, &dict.config, &dict.feature_set)?,
            };
            w.replace_shell(&dict.config, &dict.feature_set)?;
            w.finish()?;
            return Ok(written);
        }
        // Dropping the writer removes its temporary file.
        drop(writer);
    }
    let dict = super::load(input)?;
    write(&dict, out)?;
    Ok(dict.feature_set.len())
}

/// Reads a whole `.fdict` into memory.
pub fn read(path: &Path) -> Result<FeatureDictionary> {
    FdictReader::open(path)?.load_all()
}

/// Removes the SQLite database at `path` with its journal companions, where they exist.
fn remove_database(path: &Path) {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// Streams features into a new `.fdict`; nothing is visible at the target path until
/// [`FdictWriter::finish`] renames the finished file over it.
pub struct FdictWriter {
    conn: Option<Connection>,
    tmp: PathBuf,
    path: PathBuf,
    token_ids: HashMap<String, i64>,
    stats: StatisticsTally,
    total_tokens: u64,
    last_id: Option<u64>,
    /// How the descriptions of dead features are written ([`FdictWriter::choose_dead_descriptions`]).
    dead: DeadDescriptions,
    /// Dead features without labels written out so far: (with a description that looks like
    /// the labeler's sentence, with an empty one); see [`FdictWriter::leave_out_at_finish`].
    dead_tally: (usize, usize),
    done: bool,
}

impl FdictWriter {
    /// Starts a new file for `path`; `feature_set` gives the dictionary-wide fields (its
    /// features are ignored: add them with [`FdictWriter::add`]).
    pub fn create(
        path: &Path,
        config: &DictionaryConfig,
        feature_set: &FeatureSet,
    ) -> Result<Self> {
        super::check_link_format(path)?;
        let path = &super::output_target(path)?;
        let tmp = super::temp_path_for(path)?;
        remove_database(&tmp);
        let conn = Connection::open(&tmp).map_err(|e| {
            sql_err(
                path,
                &format!(
                    "cannot create the temporary file {} beside it (is the directory writable?)",
                    tmp.display()
                ),
                e,
            )
        })?;
        let e = |e| sql_err(&tmp, "cannot write", e);
        // Nothing is visible until the rename, so the temporary file needs no journal.
        conn.execute_batch(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA page_size = 8192;
             PRAGMA cache_size = -65536; BEGIN;",
        )
        .map_err(e)?;
        conn.execute_batch(SCHEMA).map_err(e)?;
        conn.execute_batch(EXAMPLE_TOKENS_TABLE).map_err(e)?;

        let (config, shell) = shell_meta(config, feature_set, 0)?;
        let meta = [
            ("format", FORMAT.to_string()),
            ("schema_version", FIRST_SCHEMA_VERSION.to_string()),
            ("writer", crate::FORMAT_MARKER.to_string()),
            ("config", config),
            ("feature_set", shell),
        ];
        for (k, v) in meta {
            conn.execute(
                "INSERT INTO meta(key, value) VALUES (?1, ?2)",
                params![k, v],
            )
            .map_err(e)?;
        }
        Ok(Self {
            conn: Some(conn),
            tmp,
            path: path.to_path_buf(),
            token_ids: HashMap::new(),
            stats: StatisticsTally::default(),
            total_tokens: feature_set.total_tokens_processed,
            last_id: None,
            dead: DeadDescriptions::Stored,
            dead_tally: (0, 0),
            done: false,
        })
    }

    /// Leaves out the descriptions of dead features ([`DeadDescriptions::Implied`]) when
    /// `features` (all that will be added) are labeled ones, which the descriptions of
    /// their dead features tell: most are the labeler's sentence rather than empty. Either
    /// way each reads back as it was; this only picks the smaller file. Call before adding.
    fn choose_dead_descriptions<T: AsView>(&mut self, features: &[T]) {
        let implied = DeadDescriptions::Implied {
            total_tokens: self.total_tokens,
        };
        let (mut left_out, mut empty) = (0usize, 0usize);
        for f in features {
            let f = f.view();
            if f.activation_count == 0 {
                left_out += implied.leaves_out(f) as usize;
                empty += f.description.is_empty() as usize;
            }
        }
        if self.last_id.is_none() && left_out > empty {
            self.dead = implied;
        }
    }

    fn conn(&self) -> &Connection {
        self.conn.as_ref().expect("connection open until finish")
    }

    /// Adds one feature; ids must be strictly increasing.
    pub fn add(&mut self, f: &Feature) -> Result<()> {
        self.add_view(FeatureView::from(f))
    }

    /// [`FdictWriter::add`] of a feature whose examples and metadata may be borrowed from
    /// another copy ([`FeatureView`]): the same rows as adding the feature it describes.
    pub fn add_view(&mut self, f: FeatureView<'_>) -> Result<()> {
        self.add_with_body(f, &body_of(f, self.dead)?)
    }

    fn check_next_id(&self, f: FeatureView<'_>) -> Result<()> {
        if let Some(last) = self.last_id {
            if f.id <= last {
                return Err(Error::Invalid(format!(
                    "{}: features must be added in increasing id order (got {} after {last})",
                    self.path.display(),
                    f.id
                )));
            }
        }
        // SQLite integers are signed 64-bit: a larger id would be stored wrapped to a
        // negative one and never found again.
        if f.id > i64::MAX as u64 {
            return Err(Error::Invalid(format!(
                "{}: feature id {} is too large for a .fdict file (ids go up to {}); keep such a dictionary as JSON",
                self.path.display(),
                f.id,
                i64::MAX
            )));
        }
        Ok(())
    }

    /// [`FdictWriter::add`] with the feature's JSON body already serialized
    /// (`body_of(f, self.dead)`).
    fn add_with_body(&mut self, f: FeatureView<'_>, body: &Body) -> Result<()> {
        self.check_next_id(f)?;
        self.last_id = Some(f.id);
        self.stats.add(f);
        if f.activation_count == 0 && f.labels.is_empty() && !body.description_left_out {
            self.dead_tally.0 += f.description.starts_with(DEAD_SENTENCE_START) as usize;
            self.dead_tally.1 += f.description.is_empty() as usize;
        }
        self.insert(f, body)
    }

    /// For a writer whose features came before their token count (a JSON dictionary read as
    /// it streams by), which could not leave out the dead features' descriptions as they
    /// were written: when most of those were the labeler's sentence, leaves them out now,
    /// in SQL over the rows written (and gives the empty ones their key), as
    /// [`DeadDescriptions::Implied`] would have written them.
    fn leave_out_at_finish(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let (sentences, empty) = self.dead_tally;
        if self.dead != DeadDescriptions::Stored || sentences <= empty {
            return Ok(());
        }
        let sentence = crate::label::describe::dead_description(&[], self.total_tokens);
        // A bare body (see `body_of`) is the one without the keys every whole body has.
        let bare_dead = "activation_count = 0 AND labels = ''
             AND json_type(body, '$.activation_count') IS NULL";
        // First the empty ones (their key tells them from those left out next).
        conn.execute(
            &format!(
                "UPDATE features SET body = json_set(body, '$.description', '')
                 WHERE {bare_dead} AND description = ''
                 AND json_type(body, '$.description') IS NULL"
            ),
            [],
        )?;
        conn.execute(
            &format!(
                "UPDATE features SET body = json_remove(body, '$.description'), description = ''
                 WHERE {bare_dead} AND description = ?1"
            ),
            [&sentence],
        )?;
        self.dead = DeadDescriptions::Implied {
            total_tokens: self.total_tokens,
        };
        Ok(())
    }

    fn insert(&mut self, f: FeatureView<'_>, body: &Body) -> Result<()> {
        let tmp = self.tmp.clone();
        let e = |e| sql_err(&tmp, "cannot write", e);
        let mut token_rows = Vec::with_capacity(f.metadata.top_tokens.len());
        for t in &f.metadata.top_tokens {
            let next = self.token_ids.len() as i64;
            let id = match self.token_ids.get(&t.token) {
                Some(&id) => id,
                None => {
                    self.conn()
                        .prepare_cached("INSERT INTO tokens(id, token) VALUES (?1, ?2)")
                        .and_then(|mut s| s.execute(params![next, t.token]))
                        .map_err(e)?;
                    self.token_ids.insert(t.token.clone(), next);
                    next
                }
            };
            token_rows.push((id, t));
        }
        let conn = self.conn();
        insert_feature_row(conn, f, body).map_err(e)?;
        insert_top_tokens(conn, f.id, &token_rows).map_err(e)?;
        if f.metadata.top_tokens.is_empty() {
            insert_example_tokens(conn, f).map_err(e)?;
        }
        insert_labels(conn, f).map_err(e)?;
        insert_neighbours(conn, f).map_err(e)?;
        insert_fts(conn, f).map_err(e)?;
        Ok(())
    }

    /// Replaces the dictionary-wide fields given to [`FdictWriter::create`] (for a writer
    /// whose features came before all of them were known: a JSON dictionary read as it
    /// streams by holds its token count and names after its features).
    pub fn replace_shell(
        &mut self,
        config: &DictionaryConfig,
        feature_set: &FeatureSet,
    ) -> Result<()> {
        let stored = self.last_id.map_or(0, |id| id as usize + 1);
        if let DeadDescriptions::Implied { total_tokens } = self.dead {
            // The descriptions left out name the token count: it must not change under them.
            if total_tokens != feature_set.total_tokens_processed {
                return Err(Error::Invalid(format!(
                    "{}: the feature set's token count cannot change ({total_tokens} → {}) once descriptions naming it are left out",
                    self.path.display(),
                    feature_set.total_tokens_processed
                )));
            }
        }
        let (config, shell) = shell_meta(config, feature_set, stored)?;
        let tmp = self.tmp.clone();
        for (key, value) in [("config", config), ("feature_set", shell)] {
            self.conn()
                .execute(
                    "UPDATE meta SET value = ?2 WHERE key = ?1",
                    params![key, value],
                )
                .map_err(|e| sql_err(&tmp, "cannot write", e))?;
        }
        self.total_tokens = feature_set.total_tokens_processed;
        Ok(())
    }

    /// Writes statistics and indexes, syncs and renames over the target (holding the old
    /// target's write lock across the rename, see the module docs).
    pub fn finish(self) -> Result<()> {
        self.finish_unless(&AtomicBool::new(false)).map(|_| ())
    }

    /// [`FdictWriter::finish`], given up (the target untouched, the temporary file removed,
    /// an `Interrupted` I/O error) when `stop` is set by the time the indexes are built:
    /// the last moment before the rename, which a stop must not follow. Returns the written
    /// dictionary's statistics.
    pub fn finish_unless(mut self, stop: &AtomicBool) -> Result<Statistics> {
        let stats = std::mem::take(&mut self.stats).finish(self.total_tokens);
        let stats_json = to_json(&stats)?;
        let conn = self.conn.take().expect("connection open until finish");
        let tmp = self.tmp.clone();
        let e = |e| sql_err(&tmp, "cannot write", e);
        conn.execute(
            "INSERT INTO meta(key, value) VALUES ('statistics', ?1)",
            params![stats_json],
        )
        .map_err(e)?;
        self.leave_out_at_finish(&conn).map_err(e)?;
        if let Some(value) = self.dead.meta_value() {
            write_dead_descriptions_meta(&conn, value).map_err(e)?;
        }
        conn.execute_batch(INDEXES).map_err(e)?;
        conn.execute_batch(EXAMPLE_TOKENS_INDEX).map_err(e)?;
        for (name, on) in LISTING_INDEXES {
            conn.execute_batch(&format!("CREATE INDEX {name} ON {on}"))
                .map_err(e)?;
        }
        if stop.load(Ordering::Relaxed) {
            // `Drop` removes the temporary file (the connection closes first).
            return Err(Error::io(&self.path, super::stopped()));
        }
        conn.execute_batch("COMMIT;").map_err(e)?;
        conn.close().map_err(|(_, err)| e(err))?;
        let sync = std::fs::File::open(&self.tmp).and_then(|f| f.sync_all());
        if let Err(err) = sync {
            return Err(Error::io(&self.path, err));
        }
        let old_file_lock = lock_for_replacement(&self.path);
        super::replace_file(&self.tmp, &self.path).map_err(|err| Error::io(&self.path, err))?;
        drop(old_file_lock);
        if let Some(dir) = self.path.parent() {
            // Make the rename itself durable (best effort: not every platform allows it).
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        self.done = true;
        Ok(stats)
    }
}

impl Drop for FdictWriter {
    fn drop(&mut self) {
        if !self.done {
            // An error or an early return: the target is untouched; remove the partial file.
            drop(self.conn.take());
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Rows per `top_tokens` insert statement: millions of rows one statement each spent more
/// time in statement overhead than in the table.
const TOP_TOKEN_ROWS_PER_INSERT: usize = 64;

/// Inserts a feature's `(token id, top token)` rows, `TOP_TOKEN_ROWS_PER_INSERT` per
/// statement (the rest one by one); a repeated token keeps its first row.
fn insert_top_tokens(
    conn: &Connection,
    feature_id: u64,
    rows: &[(i64, &TokenCount)],
) -> rusqlite::Result<()> {
    // The SQL of both statements, built once per process rather than once per feature.
    static STATEMENTS: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
        [TOP_TOKEN_ROWS_PER_INSERT, 1].map(|n| {
            let values = vec!["(?, ?, ?, ?, ?)"; n].join(", ");
            format!(
                "INSERT OR IGNORE INTO top_tokens(token_id, feature_id, firings, occurrences, precision) VALUES {values}"
            )
        })
    });
    let [chunked, single] = &*STATEMENTS;
    let bind = |st: &mut rusqlite::CachedStatement<'_>, chunk: &[(i64, &TokenCount)]| {
        for (i, (tid, t)) in chunk.iter().enumerate() {
            let at = 5 * i;
            st.raw_bind_parameter(at + 1, tid)?;
            st.raw_bind_parameter(at + 2, feature_id as i64)?;
            st.raw_bind_parameter(at + 3, t.firings as i64)?;
            st.raw_bind_parameter(at + 4, t.occurrences as i64)?;
            st.raw_bind_parameter(at + 5, precision(t.firings, t.occurrences))?;
        }
        st.raw_execute().map(|_| ())
    };
    let mut chunks = rows.chunks_exact(TOP_TOKEN_ROWS_PER_INSERT);
    if chunks.len() > 0 {
        let mut st = conn.prepare_cached(chunked)?;
        for chunk in &mut chunks {
            bind(&mut st, chunk)?;
        }
    }
    let mut st = conn.prepare_cached(single)?;
    for row in chunks.remainder() {
        bind(&mut st, std::slice::from_ref(row))?;
    }
    Ok(())
}

/// Feature `id`'s stored JSON body (with the description `dead` says it leaves out), or an
/// error naming the file at `path`.
fn parse_body(path: &Path, id: u64, body: &str, dead: DeadDescriptions) -> Result<Feature> {
    let mut f: Feature = super::json::from_str(body).map_err(|e| {
        Error::format(
            path,
            format!("feature {id}: body is not a feature JSON: {e}"),
        )
    })?;
    dead.fill_in(&mut f, body);
    Ok(f)
}

/// Marks the file of `conn` as leaving out dead features' descriptions (`value`), which
/// needs schema version 2.
fn write_dead_descriptions_meta(conn: &Connection, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
        params![DEAD_DESCRIPTIONS_KEY, value],
    )?;
    conn.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
        params![SCHEMA_VERSION.to_string()],
    )?;
    Ok(())
}

/// Inserts the counts of a feature's example tokens (written for features without top
/// tokens only: a dictionary's searches use them only when it holds no per-token counts at
/// all, and in our own builds such features are mostly dead ones, without examples).
fn insert_example_tokens(conn: &Connection, f: FeatureView<'_>) -> rusqlite::Result<()> {
    let mut st = conn.prepare_cached(
        "INSERT INTO example_tokens(token, feature_id, examples) VALUES (?1, ?2, ?3)",
    )?;
    for (token, n) in crate::query::example_token_counts(f.top_activations, f.metadata) {
        st.execute(params![token, f.id as i64, n as i64])?;
    }
    Ok(())
}

/// The `config` and `feature_set` meta values of a dictionary: the config with its
/// `num_features` (at least `stored`, one past the largest id written), and the feature set
/// without its features (cloning the set would copy every feature first).
fn shell_meta(
    config: &DictionaryConfig,
    feature_set: &FeatureSet,
    stored: usize,
) -> Result<(String, String)> {
    let mut config = config.clone();
    config.num_features = crate::dictionary::width(&config, feature_set).max(stored);
    Ok((to_json(&config)?, to_json(&feature_set.without_features())?))
}

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Invalid(format!("cannot serialize: {e}")))
}

/// How a file stores the descriptions of features that never fired (its meta key
/// [`DEAD_DESCRIPTIONS_KEY`]).
///
/// Labeling describes each of them with the same sentence ("Dead feature: never fired on
/// the N tokens processed."), and a wide SAE on a small corpus has millions: written out,
/// they grew a labeled 16M-latent file from 3.2 to 5.8 GB and made its first labeling
/// rewrite every row. In a file where they are `Implied`, a feature whose body is bare (its
/// id, dimension, type and description only; see the module docs) and whose description is
/// exactly that sentence is stored without it: its body has no `description` key and its
/// `description` column is empty; reading such a body back gives the sentence again. A bare feature with any other description, the
/// empty one included, keeps it (under its key), so every description reads back as it was
/// written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadDescriptions {
    /// Written out like every other description (files of schema version 1).
    Stored,
    /// Left out where they are the boilerplate for a corpus of this many tokens.
    Implied {
        /// The corpus size the sentence names (the file's tokens processed).
        total_tokens: u64,
    },
}

impl DeadDescriptions {
    /// The meta value this mode writes, if any.
    fn meta_value(self) -> Option<&'static str> {
        matches!(self, Self::Implied { .. }).then_some(IMPLIED)
    }

    /// The mode of a file whose [`DEAD_DESCRIPTIONS_KEY`] is `value`.
    fn from_meta(path: &Path, value: Option<&str>, total_tokens: u64) -> Result<Self> {
        match value {
            None => Ok(Self::Stored),
            Some(IMPLIED) => Ok(Self::Implied { total_tokens }),
            Some(other) => Err(Error::format(
                path,
                format!("meta {DEAD_DESCRIPTIONS_KEY:?} is {other:?}; expected {IMPLIED:?}"),
            )),
        }
    }

    /// Whether the bare feature `f`'s description is left out of its rows.
    fn leaves_out(self, f: FeatureView<'_>) -> bool {
        match self {
            Self::Stored => false,
            Self::Implied { total_tokens } => {
                f.activation_count == 0
                    && f.labels.is_empty()
                    && f.description.starts_with(DEAD_SENTENCE_START)
                    && f.description == crate::label::describe::dead_description(&[], total_tokens)
            }
        }
    }

    /// The description left out of the rows of a feature that fired `activation_count`
    /// times, has labels or not, and was read with `description`; `has_key` says whether
    /// its body has a `description` key (asked only when it matters).
    fn left_out(
        self,
        activation_count: u64,
        has_labels: bool,
        description: &str,
        has_key: impl FnOnce() -> bool,
    ) -> Option<String> {
        let Self::Implied { total_tokens } = self else {
            return None;
        };
        (activation_count == 0 && !has_labels && description.is_empty() && !has_key())
            .then(|| crate::label::describe::dead_description(&[], total_tokens))
    }

    /// Gives `f`, just parsed from `body`, the description its rows leave out, if they do.
    fn fill_in(self, f: &mut Feature, body: &str) {
        #[derive(Deserialize)]
        struct DescriptionKey {
            description: Option<serde::de::IgnoredAny>,
        }
        // A body that fails this second parse was parsed once already: it has the key.
        let has_key = || {
            serde_json::from_str::<DescriptionKey>(body).map_or(true, |k| k.description.is_some())
        };
        let has_labels = !f.labels.is_empty();
        if let Some(d) = self.left_out(f.activation_count, has_labels, &f.description, has_key) {
            f.description = d;
        }
    }
}

/// What a feature's rows hold: its JSON body, and whether its description is left out of
/// them ([`DeadDescriptions`]).
struct Body {
    json: String,
    description_left_out: bool,
}

impl Body {
    /// The feature's `description` column.
    fn description<'a>(&self, f: FeatureView<'a>) -> &'a str {
        if self.description_left_out {
            ""
        } else {
            f.description
        }
    }
}

/// The `body` of feature `f`: its JSON, which reads back as `f`. A feature holding nothing
/// but its id, dimension, type and description — every feature that never fired and was
/// not labeled by hand — gets only those keys, which read back the same (the others
/// default to zero and empty); the whole JSON is ≈ 230 bytes of zeros and empty lists,
/// and a wide SAE on a small corpus has millions of such features. Its description is
/// left out as `dead` says.
fn body_of(f: FeatureView<'_>, dead: DeadDescriptions) -> Result<Body> {
    #[derive(Serialize)]
    struct BareBody<'a> {
        id: u64,
        dimension: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        description: Option<&'a str>,
        feature_type: FeatureType,
    }
    // Bit patterns, not `== 0.0`: a stored −0.0 must read back as −0.0.
    let zero = |x: f64| x.to_bits() == 0;
    let bare = f.activation_count == 0
        && zero(f.bias)
        && zero(f.mean_activation)
        && zero(f.max_activation)
        && zero(f.activation_frequency)
        && zero(f.confidence)
        && f.top_activations.is_empty()
        && f.labels.is_empty()
        && *f.metadata == FeatureMetadata::default();
    if !bare {
        return Ok(Body {
            json: to_json(&f)?,
            description_left_out: false,
        });
    }
    let left_out = dead.leaves_out(f);
    let description = match dead {
        _ if left_out => None,
        // Where none is left out, an empty one needs no key (so files of version 1 are
        // written as before); where some are, the key tells an empty one from them.
        DeadDescriptions::Stored if f.description.is_empty() => None,
        _ => Some(f.description),
    };
    Ok(Body {
        json: to_json(&BareBody {
            id: f.id,
            dimension: f.dimension,
            description,
            feature_type: f.feature_type,
        })?,
        description_left_out: left_out,
    })
}

/// What a writer serializes a feature from.
trait AsView: Sync {
    fn view(&self) -> FeatureView<'_>;
}

impl AsView for Feature {
    fn view(&self) -> FeatureView<'_> {
        self.into()
    }
}

impl AsView for FeatureView<'_> {
    fn view(&self) -> FeatureView<'_> {
        *self
    }
}

/// Label precision of a top token: firings / occurrences.
pub fn precision(firings: u64, occurrences: u64) -> f64 {
    firings as f64 / occurrences.max(1) as f64
}

fn insert_feature_row(conn: &Connection, f: FeatureView<'_>, body: &Body) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO features(id, feature_type, activation_count, activation_frequency,
             max_activation, mean_activation, confidence, labels, description, top_token, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        f.id as i64,
        f.feature_type.as_str(),
        f.activation_count as i64,
        f.activation_frequency,
        f.max_activation,
        f.mean_activation,
        f.confidence,
        f.labels.join("\n"),
        body.description(f),
        f.metadata.top_tokens.first().map(|t| t.token.as_str()),
        body.json
    ])?;
    Ok(())
}

fn insert_labels(conn: &Connection, f: FeatureView<'_>) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM labels WHERE feature_id = ?1")?
        .execute(params![f.id as i64])?;
    let mut st = conn.prepare_cached(
        "INSERT INTO labels(feature_id, rank, text, strategy, confidence, precision, recall)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    // Bare texts (a file of the original library) get a detail, as manual edits give them.
    for (rank, l) in crate::label::manual::label_details(f).iter().enumerate() {
        st.execute(params![
            f.id as i64,
            rank as i64,
            l.text,
            l.strategy.as_str(),
            l.confidence,
            l.precision,
            l.recall
        ])?;
    }
    Ok(())
}

/// Correlated features of `f` as `(id, score)`: the partners a build stored, else those of a
/// `correlated_features` key.
pub fn correlated_of(f: &Feature) -> Vec<(u64, f64)> {
    correlated_in(&f.metadata)
}

/// [`correlated_of`] a feature's metadata.
fn correlated_in(metadata: &FeatureMetadata) -> Vec<(u64, f64)> {
    let built = neighbours_in(metadata, PARTNERS_KEY);
    if built.is_empty() {
        neighbours_in(metadata, crate::analyze::correlation::PYTHON_PARTNERS_KEY)
    } else {
        built
    }
}

/// Neighbours listed in a feature's metadata under `key`, as `(id, score)`.
pub fn neighbours_of(f: &Feature, key: &str) -> Vec<(u64, f64)> {
    neighbours_in(&f.metadata, key)
}

/// [`neighbours_of`] a feature's metadata.
/// The `[[id, score], …]` (or `[{id, score}, …]`) list under `key` of a feature's metadata.
pub(crate) fn neighbours_in(metadata: &FeatureMetadata, key: &str) -> Vec<(u64, f64)> {
    let Some(Value::Array(items)) = metadata.extra.get(key) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|v| match v {
            Value::Array(pair) if pair.len() == 2 => Some((pair[0].as_u64()?, pair[1].as_f64()?)),
            Value::Object(o) => Some((
                o.get("id").or_else(|| o.get("feature_id"))?.as_u64()?,
                o.get("score")
                    .or_else(|| o.get("pearson"))
                    .or_else(|| o.get("similarity"))
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0),
            )),
            _ => None,
        })
        .collect()
}

fn insert_neighbours(conn: &Connection, f: FeatureView<'_>) -> rusqlite::Result<()> {
    let mut st = conn.prepare_cached(
        "INSERT INTO neighbours(feature_id, kind, other_id, score) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let similar = neighbours_in(f.metadata, crate::analyze::similar::SIMILAR_KEY);
    for (kind, list) in [
        ("correlated", correlated_in(f.metadata)),
        ("similar", similar),
    ] {
        for (other, score) in list {
            st.execute(params![f.id as i64, kind, other as i64, score])?;
        }
    }
    Ok(())
}

/// The full-text index's columns for `f`: labels (one per line), description, and the top
/// tokens (trimmed, one per line).
pub fn fts_columns(f: &Feature) -> (String, String, String) {
    fts_columns_of(f.into())
}

/// [`fts_columns`] of a [`FeatureView`].
fn fts_columns_of(f: FeatureView<'_>) -> (String, String, String) {
    let tokens = f
        .metadata
        .top_tokens
        .iter()
        .take(FTS_TOKENS)
        .map(|t| t.token.trim())
        .collect::<Vec<_>>()
        .join("\n");
    (f.labels.join("\n"), f.description.to_string(), tokens)
}

/// [`fts_columns`], or `None` for a feature without any text: it gets no full-text row,
/// since it could match no search, and a dictionary of millions of features that never
/// fired spent most of its writing on such rows. The description of a feature that never
/// fired does not count (nor is it indexed): it says no more than that it never fired.
/// (Rows count in bm25's document frequency, so the in-memory search of a `.json` leaves
/// them out too.)
pub fn fts_row(f: &Feature) -> Option<(String, String, String)> {
    fts_row_of(f.into())
}

fn fts_row_of(f: FeatureView<'_>) -> Option<(String, String, String)> {
    let (labels, mut description, tokens) = fts_columns_of(f);
    if f.activation_count == 0 {
        // The same boilerplate ("Dead feature: never fired on …") for millions of features
        // of a wide SAE once labeled: they match only by the labels someone gave them.
        description.clear();
    }
    let empty = labels.is_empty() && description.is_empty() && tokens.is_empty();
    (!empty).then_some((labels, description, tokens))
}

fn insert_fts(conn: &Connection, f: FeatureView<'_>) -> rusqlite::Result<()> {
    let Some((labels, description, tokens)) = fts_row_of(f) else {
        return Ok(());
    };
    conn.prepare_cached(
        "INSERT INTO fts(rowid, labels, description, tokens) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![f.id as i64, labels, description, tokens])?;
    if !labels.is_empty() {
        conn.prepare_cached(
            "INSERT INTO labels_tri(rowid, labels, confidence) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![f.id as i64, labels, f.confidence])?;
    }
    Ok(())
}

/// An open `.fdict`: fetches single features, statistics and search results on demand.
///
/// One reader holds one SQLite connection (not `Sync`); share it behind a mutex or open one
/// per thread. Readers and one label writer share the file through SQLite's locks (a commit
/// waits for reads in progress; reads wait out a commit, within the busy timeout).
pub struct FdictReader {
    conn: Connection,
    path: PathBuf,
    statistics: Statistics,
    summary: Summary,
    /// The file's identity when opened (see [`FdictReader::is_replaced`]).
    identity: Option<FileIdentity>,
    /// SQLite's `data_version` when `statistics` were read: it changes when another
    /// connection commits (see [`FdictReader::refresh_if_changed`]).
    data_version: i64,
    /// The file's size and modification time as last explained: at opening, after a commit
    /// another connection made (`data_version`), after [`FdictReader::restamp`] (this
    /// connection's own writes). A change nothing explains is another program writing the
    /// file in place (see [`FdictReader::is_overwritten`]).
    stamp: Option<ContentStamp>,
    /// `data_version` when `stamp` was taken (kept apart from `data_version`, which only
    /// [`FdictReader::refresh_if_changed`] moves: a writer that never calls it would
    /// otherwise take every later change for a commit).
    stamp_version: i64,
    /// How the file stores dead features' descriptions (its meta, re-read with the
    /// statistics when another connection commits).
    dead: DeadDescriptions,
    /// Whether the dictionary holds per-token counts (see [`FdictReader::has_token_counts`]),
    /// once asked: it takes parsing the corpus token counts, and no write changes it.
    has_token_counts: std::sync::OnceLock<bool>,
    /// How many ids `--drop-dead` left out (see [`FdictReader::omitted_count`]), once asked.
    omitted_count: std::sync::OnceLock<usize>,
}

/// Size and modification time of a file.
type ContentStamp = (u64, std::time::SystemTime);

fn content_stamp(md: &std::fs::Metadata) -> Option<ContentStamp> {
    md.modified().ok().map(|t| (md.len(), t))
}

/// Whether the file at `path` is no longer the one whose identity was `opened`.
fn file_replaced(path: &Path, opened: Option<FileIdentity>) -> bool {
    match opened {
        Some(opened) => {
            std::fs::metadata(path)
                .ok()
                .and_then(|md| file_identity(&md))
                != Some(opened)
        }
        None => false,
    }
}

/// Why labels were not written into a file that another program replaced; `unwritten`
/// says which.
fn replaced_error(path: &Path, unwritten: &str) -> Error {
    Error::Unavailable {
        path: path.to_path_buf(),
        message: format!("the file was replaced or removed after it was opened (another program rewrote it); {unwritten}: open the file again"),
    }
}

/// The fields of a feature that labeling changes; the rest of its rows stay as stored.
#[derive(PartialEq)]
struct LabelFields {
    labels: Vec<String>,
    confidence: u64,
    details: Vec<crate::model::Label>,
    description: String,
}

impl LabelFields {
    fn of(f: &Feature) -> Self {
        Self {
            labels: f.labels.clone(),
            confidence: f.confidence.to_bits(),
            details: f.metadata.label_details.clone(),
            description: f.description.clone(),
        }
    }
}

/// Writes the rows of `f` that its labels and description make: its row and JSON `body`,
/// its label rows and its full-text entries (its top tokens and neighbours stay).
fn store_label_rows(conn: &Connection, f: FeatureView<'_>, body: &Body) -> rusqlite::Result<()> {
    // An update of the columns labeling changes, not a replace of the row: the indexes of
    // the columns it leaves alone (counts, frequencies, ids) are not rewritten.
    conn.prepare_cached(
        "UPDATE features SET confidence = ?2, labels = ?3, description = ?4, body = ?5
         WHERE id = ?1",
    )?
    .execute(params![
        f.id as i64,
        f.confidence,
        f.labels.join("\n"),
        body.description(f),
        body.json
    ])?;
    insert_labels(conn, f)?;
    conn.prepare_cached("DELETE FROM fts WHERE rowid = ?1")?
        .execute([f.id as i64])?;
    conn.prepare_cached("DELETE FROM labels_tri WHERE rowid = ?1")?
        .execute([f.id as i64])?;
    insert_fts(conn, f)
}

/// An immediate transaction on a reader's connection (the file's write lock, taken before
/// anything is read), rolled back unless committed.
struct WriteTx<'a> {
    conn: &'a Connection,
    path: PathBuf,
    committed: bool,
}

impl<'a> WriteTx<'a> {
    /// Takes the write lock of `reader`'s file; fails when another program replaced the
    /// file since the reader opened it (before or while waiting for the lock).
    fn begin(reader: &'a FdictReader, unwritten: &str) -> Result<Self> {
        if reader.is_replaced() {
            return Err(replaced_error(&reader.path, unwritten));
        }
        reader
            .conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|err| write_err(&reader.path, err))?;
        let tx = Self {
            conn: &reader.conn,
            path: reader.path.clone(),
            committed: false,
        };
        // A rewrite holds the old file's write lock across its rename: having waited for
        // the lock, this may now hold the lock of a file that is no longer there.
        if reader.is_replaced() {
            return Err(replaced_error(&reader.path, unwritten));
        }
        Ok(tx)
    }

    fn err(&self, e: rusqlite::Error) -> Error {
        write_err(&self.path, e)
    }

    fn commit(mut self) -> Result<()> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(|err| self.err(err))?;
        self.committed = true;
        Ok(())
    }
}

/// A failed label write as an error: another writer keeping the lock past the busy timeout
/// is [`Error::Unavailable`] (nothing was written, and trying again can work).
fn write_err(path: &Path, e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            Error::Unavailable {
                path: path.to_path_buf(),
                message: format!("cannot write labels now: {e}; try again"),
            }
        }
        // SQLite says "readonly database" also when the file is writable but its directory
        // is not (the journal is a file beside it).
        Some(rusqlite::ErrorCode::ReadOnly) => sql_err(
            path,
            &format!(
                "cannot write labels (SQLite writes a journal file beside the dictionary: are both the file and its directory {} writable?)",
                path.parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .display()
            ),
            e,
        ),
        _ => sql_err(path, "cannot write labels", e),
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// The write lock of the `.fdict` at `path`, if there is one, held while a new file is
/// renamed over it: a label write already in it finishes first, and one waiting for it
/// finds the file replaced once it gets the lock ([`FdictReader::add_manual_label`]), so no
/// write is in progress in the old file (no journal of it under the shared name) when the
/// new one takes its place.
///
/// A file written by an earlier version may be in WAL mode, and SQLite opens any database
/// in WAL mode while a `-wal` file of its name exists, header notwithstanding: the WAL is
/// checkpointed into the old file and its side files removed before the rename, so the new
/// file is never read through them. Best effort: a file that cannot be locked within the
/// timeout (or is not a database) is replaced anyway.
fn lock_for_replacement(path: &Path) -> Option<Connection> {
    if !is_fdict(path).unwrap_or(false) {
        return None;
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE).ok()?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).ok()?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .ok()?;
    let wal = mode.eq_ignore_ascii_case("wal");
    if wal {
        let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
    }
    conn.execute_batch("BEGIN IMMEDIATE").ok()?;
    if wal {
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
    Some(conn)
}

/// Takes a file an earlier version wrote in WAL mode out of it (best effort: it needs the
/// file to itself). In WAL mode the labels written sit in the `-wal` side file until a
/// checkpoint, so a copy of the `.fdict` alone lacks them, and a `-wal` left beside a file
/// copied over it would be replayed into the new content.
fn leave_wal_mode(conn: &Connection) {
    let wal = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
        .is_ok_and(|m| m.eq_ignore_ascii_case("wal"));
    if wal {
        let _ = conn.query_row("PRAGMA journal_mode = DELETE", [], |r| {
            r.get::<_, String>(0)
        });
    }
}

/// Device and inode of a file (`None` where the platform has no such notion).
type FileIdentity = (u64, u64);

fn file_identity(md: &std::fs::Metadata) -> Option<FileIdentity> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((md.dev(), md.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = md;
        None
    }
}

impl FdictReader {
    /// Opens `path` for reading.
    ///
    /// The connection is read-write when the file allows it, because only a writable
    /// connection can roll back a journal a crashed label writer left (and, for a file an
    /// earlier version wrote in WAL mode, remove the WAL side files when it closes); a
    /// read-only file is opened read-only.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .or_else(|_| Self::open_with(path, OpenFlags::SQLITE_OPEN_READ_ONLY))
    }

    /// Opens `path` for reading and for manual-label writes.
    pub fn open_rw(path: &Path) -> Result<Self> {
        Self::open_with(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
    }

    /// Every manual label in the file as `(feature id, text)`, each feature's in rank order
    /// (the newest first).
    pub fn manual_labels(&self) -> Result<Vec<(u64, String)>> {
        let e = |e| sql_err(&self.path, "cannot read labels", e);
        let mut st = self
            .conn
            .prepare(
                "SELECT feature_id, text FROM labels WHERE strategy = ?1 ORDER BY feature_id, rank",
            )
            .map_err(e)?;
        let rows = st
            .query_map([LabelingStrategy::Manual.as_str()], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
            })
            .map_err(e)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(e)
    }

    /// The value of `key` in the `meta` table, if the file has one.
    pub fn meta_value(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err("cannot read meta", e))
    }

    /// The ids `build --drop-dead` left out of the file (listed in its feature set's
    /// metadata), to explain a missing feature; empty when none were.
    pub fn omitted_features(&self) -> Result<Vec<u64>> {
        #[derive(Deserialize, Default)]
        struct Shell {
            #[serde(default)]
            metadata: ShellMetadata,
        }
        #[derive(Deserialize, Default)]
        struct ShellMetadata {
            #[serde(default)]
            omitted_features: Vec<u64>,
        }
        let Some(text) = self.meta_value("feature_set")? else {
            return Ok(Vec::new());
        };
        let shell: Shell = serde_json::from_str(&text).map_err(|e| {
            Error::format(
                &self.path,
                format!("meta feature_set is not a feature set: {e}"),
            )
        })?;
        Ok(shell.metadata.omitted_features)
    }

    /// How many ids `build --drop-dead` left out of the file (the length of
    /// [`FdictReader::omitted_features`]), counted by SQLite without building the list (a
    /// wide SAE may leave out millions) and kept: no write changes it.
    pub fn omitted_count(&self) -> Result<usize> {
        if let Some(&known) = self.omitted_count.get() {
            return Ok(known);
        }
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COALESCE((SELECT json_array_length(value, '$.metadata.omitted_features')
                                  FROM meta WHERE key = 'feature_set'), 0)",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err("cannot read the omitted features", e))?;
        Ok(*self.omitted_count.get_or_init(|| n.max(0) as usize))
    }

    /// Records `value` under `key` in the `meta` table, for other programs' notes about
    /// the file (such as which file it was converted from). The dictionary's own keys,
    /// which the other methods keep consistent with its rows, are refused.
    pub fn set_meta_value(&self, key: &str, value: &str) -> Result<()> {
        if OWN_META_KEYS.contains(&key) {
            return Err(Error::Invalid(format!(
                "meta key {key:?} belongs to the dictionary and is not set directly"
            )));
        }
        self.conn
            .execute(
                "INSERT INTO meta(key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map_err(|e| write_err(&self.path, e))?;
        Ok(())
    }

    /// Whether the file at this reader's path is no longer the one it opened: every
    /// rewrite (`featdict build`, `label`, `import`) writes a new file and renames it over
    /// the old, which an open connection keeps reading — and writing, into a file nobody
    /// will see again.
    pub fn is_replaced(&self) -> bool {
        file_replaced(&self.path, self.identity)
    }

    fn open_with(path: &Path, flags: OpenFlags) -> Result<Self> {
        // The file is checked by `stat` and by SQLite, never opened and closed here: closing
        // any descriptor of a file drops every POSIX lock the process holds on it, those of
        // connections already open included (a server's writer, when its readers open). Then
        // another process may take a lock this process believes it holds: a commit under a
        // reader's feet, or (for a file in WAL mode, as earlier versions wrote) another
        // process closing its own connection believes it is the last one, checkpoints and
        // deletes the WAL, and the labels this process writes afterwards go to a deleted file.
        // Whether the file starts with SQLite's magic is not looked at (that would open it;
        // see above), so the message names both causes SQLite cannot tell apart.
        let not_fdict = || {
            Error::format(
                path,
                "not a .fdict dictionary: SQLite does not read it as a database (expected a file starting with \"SQLite format 3\\0\" and a valid 100-byte header; the file is something else, or a damaged or truncated copy)",
            )
        };
        let md = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if md.is_dir() {
            return Err(Error::format(
                path,
                "is a directory; expected a dictionary file (.fdict or .json)",
            ));
        }
        // SQLite takes an empty file for an empty database; its header alone is 100 bytes.
        if md.len() < 100 {
            return Err(not_fdict());
        }
        let identity = file_identity(&md);
        let stamp = content_stamp(&md);
        let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(|e| sql_err(path, "cannot open", e))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| sql_err(path, "cannot open", e))?;
        if let Err(e) = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        }) {
            return Err(match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::NotADatabase) => not_fdict(),
                // SQLite cannot say more (its header's page count, which would tell a file
                // cut short, is read only by opening the file, which would drop this
                // process's locks on it; see above).
                Some(rusqlite::ErrorCode::DatabaseCorrupt) => Error::format(
                    path,
                    format!(
                        "is damaged or truncated (a copy cut short?): SQLite finds the {} bytes malformed ({e}); copy or write it again",
                        md.len()
                    ),
                ),
                _ => sql_err(path, "cannot open", e),
            });
        }
        let meta = |key: &str| -> Result<Option<String>> {
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map_err(|e| {
                    Error::format(
                        path,
                        format!("not a feature dictionary (expected a `meta` table with key {key:?}): {e}"),
                    )
                })
        };
        let format = meta("format")?;
        if format.as_deref() != Some(FORMAT) {
            return Err(Error::format(
                path,
                format!("expected meta format {FORMAT:?}, found {format:?}"),
            ));
        }
        let version: i64 = meta("schema_version")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if !(FIRST_SCHEMA_VERSION..=SCHEMA_VERSION).contains(&version) {
            let newer = if version > SCHEMA_VERSION {
                ": it was written by a newer featdict, which reads it"
            } else {
                ""
            };
            return Err(Error::format(
                path,
                format!("schema version {version} is not supported (this build reads versions {FIRST_SCHEMA_VERSION} to {SCHEMA_VERSION}){newer}"),
            ));
        }
        let statistics: Statistics = parse_meta(path, "statistics", meta("statistics")?)?;
        let config: DictionaryConfig = parse_meta(path, "config", meta("config")?)?;
        // The feature-set shell can hold the whole vocabulary's counts; summary fields come
        // from the config and statistics so opening stays cheap.
        let summary = Summary {
            model_name: config.model_name.clone(),
            sae_name: config.sae_name.clone(),
            layer: config.layer,
            num_features: config.num_features,
            stored_features: statistics.total_features,
            total_tokens_processed: statistics.total_tokens_processed,
        };
        let dead = DeadDescriptions::from_meta(
            path,
            meta(DEAD_DESCRIPTIONS_KEY)?.as_deref(),
            summary.total_tokens_processed,
        )?;
        if flags.contains(OpenFlags::SQLITE_OPEN_READ_WRITE) {
            leave_wal_mode(&conn);
        }
        let data_version = data_version(&conn).map_err(|e| sql_err(path, "cannot open", e))?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
            statistics,
            summary,
            identity,
            data_version,
            stamp,
            stamp_version: data_version,
            dead,
            has_token_counts: std::sync::OnceLock::new(),
            omitted_count: std::sync::OnceLock::new(),
        })
    }

    /// Whether the dictionary was built counting the tokens its features fire on: some
    /// feature has top tokens, or the corpus token counts are stored (a build of ours whose
    /// token tables all ended empty, as a tiny `--token-capacity` can leave them, still
    /// counted). Files of the original library have neither.
    pub fn has_token_counts(&self) -> Result<bool> {
        if let Some(&known) = self.has_token_counts.get() {
            return Ok(known);
        }
        let known: bool = self
            .conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM top_tokens)
                     OR COALESCE((SELECT json_array_length(value, '$.metadata.token_counts')
                                  FROM meta WHERE key = 'feature_set'), 0) > 0",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err("cannot read the token counts", e))?;
        Ok(*self.has_token_counts.get_or_init(|| known))
    }

    /// The corpus's tokens as labeling needs them ([`crate::label::CorpusTokens`]), read
    /// without loading the features: the stored corpus `token_counts`, or for a file without
    /// them the top tokens of the features' bodies, each with its corpus occurrences.
    pub fn corpus_tokens(&self) -> Result<crate::label::CorpusTokens> {
        let shell = self.load_some(&[])?;
        if !shell.feature_set.metadata.token_counts.is_empty() {
            return Ok(crate::label::CorpusTokens::of(&shell));
        }
        let e = |e| self.err("cannot read the top tokens", e);
        // From the bodies, not the `top_tokens` table: that keeps one entry per string and
        // feature, where a body (as memory) lists each token id's own.
        let mut st = self
            .conn
            .prepare(
                "SELECT json_extract(t.value, '$.token'), MAX(json_extract(t.value, '$.occurrences'))
                 FROM features, json_each(features.body, '$.metadata.top_tokens') AS t
                 WHERE json_extract(t.value, '$.token') IS NOT NULL GROUP BY 1",
            )
            .map_err(e)?;
        let pairs: Vec<(String, i64)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(e)?;
        Ok(crate::label::CorpusTokens::from_top_tokens(
            pairs.iter().map(|(t, c)| (t.as_str(), (*c).max(0) as u64)),
        ))
    }

    /// Whether any feature lists co-activation partners the way the Python package saves
    /// them (`correlated_features` in its metadata), which is how a file without a recorded
    /// correlation method says it has correlations ([`crate::analyze::correlation::method`]).
    /// Looked up in the file (the neighbours table, then the features' bodies as text, in
    /// constant memory) rather than by loading every feature.
    pub fn has_python_partners(&self) -> Result<bool> {
        let e = |e| self.err("cannot read", e);
        let listed: bool = self
            .conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM neighbours WHERE kind = 'correlated')",
                [],
                |r| r.get(0),
            )
            .map_err(e)?;
        if listed {
            return Ok(true);
        }
        // A key of the body's JSON: inside a string (a token) its quotes would be escaped.
        let key = format!("\"{}\":", crate::analyze::correlation::PYTHON_PARTNERS_KEY);
        self.conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM features WHERE instr(body, ?1) > 0)",
                [key],
                |r| r.get(0),
            )
            .map_err(e)
    }

    /// The other features that fired on at least one token feature `id` fired on (by the
    /// `top_tokens` table), in id order: every feature whose firing-token profile can have
    /// a positive cosine with `id`'s, found without reading the features that cannot.
    pub fn features_sharing_tokens(&self, id: u64) -> Result<Vec<u64>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT b.feature_id FROM top_tokens a
                 JOIN top_tokens b ON b.token_id = a.token_id
                 WHERE a.feature_id = ?1 AND b.feature_id != ?1
                 ORDER BY b.feature_id",
            )
            .map_err(|e| self.err("cannot read the token counts", e))?;
        let ids = st
            .query_map([id as i64], |r| r.get::<_, i64>(0))
            .and_then(|rows| rows.map(|r| r.map(|v| v as u64)).collect())
            .map_err(|e| self.err("cannot read the token counts", e))?;
        Ok(ids)
    }

    /// Whether another program wrote the file in place since this reader last looked (a
    /// `cp` over it, or a commit through another connection): its size or modification time
    /// changed, and not by this connection ([`FdictReader::restamp`]). The reader must then
    /// be opened again: SQLite would go on with the schema it read, whose tables and
    /// indexes may begin on other pages in the new content ("database disk image is
    /// malformed", and a label write would corrupt it). A commit through another
    /// connection cannot be told from a copy by SQLite's own change counter (the copied
    /// file has one too), so it is taken for one; a reopening costs milliseconds.
    pub fn is_overwritten(&mut self) -> bool {
        match std::fs::metadata(&self.path)
            .ok()
            .and_then(|md| content_stamp(&md))
        {
            Some(now) => Some(now) != self.stamp,
            None => false, // removed: `is_replaced` says so
        }
    }

    /// Adds the indexes of the feature listing that a file written before they existed
    /// lacks (or has in an older form), in one transaction; returns their names. Without
    /// them a listing sorts or filters the whole table: seconds on a million features.
    pub fn add_listing_indexes(&mut self) -> Result<Vec<&'static str>> {
        let path = self.path.clone();
        let e = |err| sql_err(&path, "cannot add the feature-listing indexes", err);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e)?;
        let mut added = Vec::new();
        for (name, on) in LISTING_INDEXES {
            let sql: Option<String> = tx
                .query_row(
                    "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?1",
                    [name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(e)?;
            let wanted = format!("CREATE INDEX {name} ON {on}");
            if sql.as_deref() == Some(wanted.as_str()) {
                continue;
            }
            tx.execute_batch(&format!("DROP INDEX IF EXISTS {name}; {wanted}"))
                .map_err(e)?;
            added.push(name);
        }
        tx.commit().map_err(e)?;
        self.restamp();
        Ok(added)
    }

    /// Adds the `example_tokens` table (and its index) that a file written before it existed
    /// lacks, filled as the writer fills it, in one transaction; returns how many features
    /// got rows, or `None` when the file needs none: it has the table, or its token
    /// searches use top tokens (some feature has them) and never read it. Without it, a token or
    /// pattern search of a dictionary with no per-token counts (a file of the original
    /// library) reads every feature's body: most of a second per search at 25k features.
    pub fn add_example_tokens(&mut self) -> Result<Option<usize>> {
        let path = self.path.clone();
        let e = |err| sql_err(&path, "cannot add the example-token table", err);
        // Looked at before any write, so that a file that needs nothing (a new one, or one
        // whose searches use top tokens) is never written, and a read-only one still opens.
        let has_table: bool = self
            .conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'example_tokens')",
                [],
                |r| r.get(0),
            )
            .map_err(e)?;
        if has_table || self.has_token_counts()? {
            return Ok(None);
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e)?;
        tx.execute_batch(EXAMPLE_TOKENS_TABLE).map_err(e)?;
        // The writer's rule: the features without top tokens (all of them in a file of the
        // original library; only dead ones, without examples, in a build of ours).
        let mut filled = 0;
        {
            let mut st = tx
                .prepare(
                    "SELECT id, body FROM features
                     WHERE NOT EXISTS (SELECT 1 FROM top_tokens WHERE feature_id = features.id)
                     ORDER BY id",
                )
                .map_err(e)?;
            let mut rows = st.query([]).map_err(e)?;
            while let Some(row) = rows.next().map_err(e)? {
                let id: i64 = row.get(0).map_err(e)?;
                let body: String = row.get(1).map_err(e)?;
                let f = parse_body(&path, id as u64, &body, self.dead)?;
                if !f.top_activations.is_empty() {
                    insert_example_tokens(&tx, FeatureView::from(&f)).map_err(e)?;
                    filled += 1;
                }
            }
        }
        tx.execute_batch(EXAMPLE_TOKENS_INDEX).map_err(e)?;
        tx.commit().map_err(e)?;
        self.restamp();
        Ok(Some(filled))
    }

    /// Records the file's size and modification time as this connection's own doing (call
    /// after writing through it): its own commits do not change its `data_version`.
    pub fn restamp(&mut self) {
        self.stamp = std::fs::metadata(&self.path)
            .ok()
            .and_then(|md| content_stamp(&md));
        if let Ok(v) = data_version(&self.conn) {
            self.stamp_version = v;
        }
    }

    /// The file this reader has open.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying connection (for the query module).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Summary statistics (precomputed at write time, updated by manual labels).
    pub fn statistics(&self) -> &Statistics {
        &self.statistics
    }

    /// Names, layer and sizes.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    pub(crate) fn err(&self, what: &str, e: rusqlite::Error) -> Error {
        sql_err(&self.path, what, e)
    }

    /// One feature by id, or `None` when the file does not hold it.
    pub fn feature(&self, id: u64) -> Result<Option<Feature>> {
        let Ok(key) = i64::try_from(id) else {
            return Ok(None);
        };
        let body: Option<String> = self
            .conn
            .prepare_cached("SELECT body FROM features WHERE id = ?1")
            .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
            .map_err(|e| self.err("cannot read feature", e))?;
        body.map(|b| self.parse_body(id, &b)).transpose()
    }

    fn parse_body(&self, id: u64, body: &str) -> Result<Feature> {
        parse_body(&self.path, id, body, self.dead)
    }

    /// Scalar columns of several features (for search result lists), in the order given;
    /// ids the file does not hold are skipped.
    pub fn briefs(&self, ids: &[u64]) -> Result<Vec<FeatureBrief>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, feature_type, activation_count, activation_frequency, max_activation,
                        confidence, labels, description, top_token,
                        instr(body, '\"token_counts_exact\":false') = 0,
                        json_type(body, '$.description') IS NULL
                 FROM features WHERE id = ?1",
            )
            .map_err(|e| self.err("cannot read features", e))?;
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            let Ok(key) = i64::try_from(id) else { continue };
            let row = st
                .query_row([key], |r| {
                    let labels: String = r.get(6)?;
                    Ok((
                        FeatureBrief {
                            id: r.get::<_, i64>(0)? as u64,
                            feature_type: r.get(1)?,
                            activation_count: r.get::<_, i64>(2)? as u64,
                            activation_frequency: r.get(3)?,
                            max_activation: r.get(4)?,
                            confidence: r.get(5)?,
                            labels: Vec::new(),
                            description: r.get(7)?,
                            top_token: r.get(8)?,
                            token_counts_exact: r.get(9)?,
                        },
                        labels,
                        // Whether the body has no `description` key.
                        r.get::<_, bool>(10)?,
                    ))
                })
                .optional()
                .map_err(|e| self.err("cannot read features", e))?;
            if let Some((mut brief, labels, without_key)) = row {
                brief.labels = self.labels_of(key, &labels)?;
                let has_labels = !brief.labels.is_empty();
                let (count, has_key) = (brief.activation_count, || !without_key);
                if let Some(d) = self
                    .dead
                    .left_out(count, has_labels, &brief.description, has_key)
                {
                    brief.description = d;
                }
                out.push(brief);
            }
        }
        Ok(out)
    }

    /// The label texts of feature `id` whose `labels` column is `column`.
    ///
    /// The column joins the texts with newlines, yet a label may hold a newline itself (the
    /// label of a newline token, `token:\n`), so the split is only trusted when the
    /// `labels` table, which holds every text separately, has none with a newline; otherwise
    /// the texts come from the body, the source of truth.
    pub(crate) fn labels_of(&self, id: i64, column: &str) -> Result<Vec<String>> {
        if !column.contains('\n') {
            return Ok(split_labels(column));
        }
        let e = |e| self.err("cannot read labels", e);
        let ambiguous: bool = self
            .conn
            .prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM labels WHERE feature_id = ?1 AND instr(text, char(10)) > 0)",
            )
            .and_then(|mut s| s.query_row([id], |r| r.get(0)))
            .map_err(e)?;
        if !ambiguous {
            return Ok(split_labels(column));
        }
        #[derive(Deserialize)]
        struct LabelsOnly {
            #[serde(default)]
            labels: Vec<String>,
        }
        let body: String = self
            .conn
            .prepare_cached("SELECT body FROM features WHERE id = ?1")
            .and_then(|mut s| s.query_row([id], |r| r.get(0)))
            .map_err(e)?;
        let parsed: LabelsOnly = serde_json::from_str(&body).map_err(|err| {
            Error::format(
                &self.path,
                format!("feature {id}: body is not a feature JSON: {err}"),
            )
        })?;
        Ok(parsed.labels)
    }

    /// Correlated and similar features stored for `id`, as `(kind, other id, score)`.
    pub fn neighbours(&self, id: u64) -> Result<Vec<(String, u64, f64)>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT kind, other_id, score FROM neighbours WHERE feature_id = ?1 ORDER BY kind, score DESC",
            )
            .map_err(|e| self.err("cannot read neighbours", e))?;
        let rows = st
            .query_map([id as i64], |r| {
                Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err("cannot read neighbours", e))?;
        Ok(rows)
    }

    /// The stored ids just below and just above `id` (a file built with `--drop-dead`
    /// skips the ids of dead features), for a page's previous/next links.
    pub fn adjacent_ids(&self, id: u64) -> Result<(Option<u64>, Option<u64>)> {
        let key = i64::try_from(id).unwrap_or(i64::MAX);
        let one = |sql: &str| -> Result<Option<u64>> {
            let found: Option<i64> = self
                .conn
                .prepare_cached(sql)
                .and_then(|mut st| st.query_row([key], |r| r.get(0)))
                .map_err(|e| self.err("cannot read feature ids", e))?;
            Ok(found.map(|v| v as u64))
        };
        Ok((
            one("SELECT max(id) FROM features WHERE id < ?1")?,
            one("SELECT min(id) FROM features WHERE id > ?1")?,
        ))
    }

    /// A page of the ids of the features in the file (`feature_type` only, when given), in
    /// `order`: `limit` ids after the first `offset`, read from the listing's indexes (which
    /// `featdict serve` adds to files written before they existed).
    pub fn list_features(
        &self,
        order: FeatureOrder,
        feature_type: Option<FeatureType>,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<u64>> {
        let by = match order {
            FeatureOrder::Id => "id",
            FeatureOrder::ActivationCount => "activation_count DESC, id",
            FeatureOrder::MaxActivation => "max_activation DESC, id",
            FeatureOrder::Confidence => "confidence DESC, id",
        };
        self.ranked_ids(by, feature_type, offset, limit)
    }

    /// The ids of the features (`feature_type` only, when given) in the SQL order `by`:
    /// `limit` after the first `offset`.
    fn ranked_ids(
        &self,
        by: &str,
        feature_type: Option<FeatureType>,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<u64>> {
        let filter = if feature_type.is_some() {
            "WHERE feature_type = ?3"
        } else {
            "WHERE ?3 IS NULL"
        };
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT id FROM features {filter} ORDER BY {by} LIMIT ?1 OFFSET ?2"
            ))
            .map_err(|e| self.err("cannot list features", e))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let ids: Vec<i64> = st
            .query_map(
                params![limit, offset, feature_type.map(|t| t.as_str())],
                |r| r.get(0),
            )
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err("cannot list features", e))?;
        Ok(ids.into_iter().map(|id| id as u64).collect())
    }

    /// The `n` features ranked highest by `by` (of type `only`, when given), ties by id — the
    /// ranking of [`FeatureDictionary::top_features`], read from the scalar columns (through
    /// the listing's indexes for the firing count and the maximum) so only the `n` bodies are
    /// parsed.
    pub fn top_features(
        &self,
        by: TopBy,
        only: Option<FeatureType>,
        n: usize,
    ) -> Result<Vec<Feature>> {
        let order = match by {
            TopBy::ActivationCount => "activation_count DESC, id",
            TopBy::MaxActivation => "max_activation DESC, id",
            // By the stored column, as a `.json` sorts: a file whose frequencies are not
            // firings / tokens (hand-edited, or missing and read as 0) must rank alike.
            TopBy::Frequency => "activation_frequency DESC, id",
        };
        let mut out = Vec::new();
        for id in self.ranked_ids(order, only, 0, n)? {
            out.extend(self.feature(id)?);
        }
        Ok(out)
    }

    /// Calls `visit` with every feature in id order, one at a time.
    pub fn for_each_feature(&self, mut visit: impl FnMut(&Feature) -> Result<()>) -> Result<()> {
        let mut st = self
            .conn
            .prepare("SELECT id, body FROM features ORDER BY id")
            .map_err(|e| self.err("cannot read features", e))?;
        let mut rows = st
            .query([])
            .map_err(|e| self.err("cannot read features", e))?;
        while let Some(row) = rows
            .next()
            .map_err(|e| self.err("cannot read features", e))?
        {
            let id: i64 = row
                .get(0)
                .map_err(|e| self.err("cannot read features", e))?;
            let body: String = row
                .get(1)
                .map_err(|e| self.err("cannot read features", e))?;
            visit(&self.parse_body(id as u64, &body)?)?;
        }
        Ok(())
    }

    /// The id, body and `description` column of the next `limit` features in id order
    /// after feature `after` (from the first when `None`).
    fn stored_rows_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(i64, String, String)>> {
        let after = after.map_or(-1, |id| i64::try_from(id).unwrap_or(i64::MAX));
        self.conn
            .prepare_cached(
                "SELECT id, body, description FROM features WHERE id > ?1 ORDER BY id LIMIT ?2",
            )
            .and_then(|mut st| {
                st.query_map(params![after, limit as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect()
            })
            .map_err(|e| self.err("cannot read features", e))
    }

    /// The next `limit` features in id order after feature `after` (from the first when
    /// `None`), parsed on all threads: a file read a chunk at a time.
    pub fn features_after(&self, after: Option<u64>, limit: usize) -> Result<Vec<Feature>> {
        use rayon::prelude::*;
        let e = |e| self.err("cannot read features", e);
        let after = after.map_or(-1, |id| i64::try_from(id).unwrap_or(i64::MAX));
        let rows: Vec<(i64, String)> = self
            .conn
            .prepare_cached("SELECT id, body FROM features WHERE id > ?1 ORDER BY id LIMIT ?2")
            .and_then(|mut st| {
                st.query_map(params![after, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(e)?;
        // The reader's connection is not `Sync`: the threads get only the path.
        let (path, dead) = (&self.path, self.dead);
        rows.par_iter()
            .map(|(id, body)| parse_body(path, *id as u64, body, dead))
            .collect()
    }

    /// Reads everything back into a [`FeatureDictionary`] (equal to the one written).
    pub fn load_all(&self) -> Result<FeatureDictionary> {
        self.load_with(|feature_set| {
            self.for_each_feature(|f| {
                feature_set.features.insert(f.id, f.clone());
                Ok(())
            })
        })
    }

    /// The dictionary with only the features of `ids` that it stores (ids it does not
    /// store are left out): what a command about a few features needs of a file of
    /// millions, with the dictionary-wide fields (configuration, corpus token counts,
    /// omitted features) whole. [`FdictReader::has_token_counts`] answers for the whole
    /// file where [`FeatureDictionary::has_token_counts`] of this one cannot.
    pub fn load_some(&self, ids: &[u64]) -> Result<FeatureDictionary> {
        self.load_with(|feature_set| {
            let mut found = Vec::with_capacity(ids.len());
            for &id in ids {
                if let Some(f) = self.feature(id)? {
                    // A parsed feature's vectors keep the slack they grew by; a clone's are
                    // exact (as `load_all` keeps them): up to half the memory.
                    found.push((id, f.clone()));
                }
            }
            // Built at once, the map's nodes are full; inserted one by one, half empty.
            feature_set.features = found.into_iter().collect();
            Ok(())
        })
    }

    fn load_with(
        &self,
        fill: impl FnOnce(&mut FeatureSet) -> Result<()>,
    ) -> Result<FeatureDictionary> {
        let meta = |key: &str| -> Result<Option<String>> {
            self.conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map_err(|e| self.err("cannot read meta", e))
        };
        let mut config: DictionaryConfig = parse_meta(&self.path, "config", meta("config")?)?;
        let mut feature_set: FeatureSet =
            parse_meta(&self.path, "feature_set", meta("feature_set")?)?;
        fill(&mut feature_set)?;
        if config.model_name.is_empty() {
            config.model_name = feature_set.model_name.clone();
        }
        if config.sae_name.is_empty() {
            config.sae_name = feature_set.sae_name.clone();
        }
        let mut dict = FeatureDictionary::new(config, feature_set);
        dict.config.num_features = dict.num_features();
        Ok(dict)
    }

    /// Adds a manual label to feature `id` (first in `labels` and `label_details`, strategy
    /// `manual`, confidence 1) and describes the feature anew (the description names its
    /// best labels). Adding a text the feature already has as a manual label changes
    /// nothing. Returns the updated feature, or `None` when `id` is not stored.
    ///
    /// Runs in one immediate transaction: concurrent writers (other threads or processes)
    /// wait for each other instead of losing updates.
    pub fn add_manual_label(&mut self, id: u64, text: &str) -> Result<Option<Feature>> {
        let text = validate_label(text)?;
        let unwritten = format!("the label {text:?} was not written");
        let total_tokens = self.summary.total_tokens_processed;
        self.edit_labels(id, &unwritten, |f| -> Result<()> {
            let already = f
                .metadata
                .label_details
                .iter()
                .any(|l| l.strategy == LabelingStrategy::Manual && l.text == text);
            crate::label::manual::check_room_for(f, &text)?;
            if !already {
                // The same edit as `featdict label --set`: an automatic label with the same
                // text is replaced (it was kept beside the manual one, listed twice), and an
                // original-library file's bare label texts are kept.
                crate::label::manual::set_manual_label(f, &text);
                crate::label::manual::describe_after_edit(f, total_tokens);
            }
            Ok(())
        })
        .map(|edited| edited.map(|(f, ())| f))
    }

    /// Removes the manual label `text` of feature `id` and rewrites its description, in one
    /// transaction. Returns the feature and whether it had that label (`None`: `id` is not
    /// stored); automatic labels are never removed.
    pub fn remove_manual_label(&mut self, id: u64, text: &str) -> Result<Option<(Feature, bool)>> {
        let text = text.trim().to_string();
        let unwritten = format!("the label {text:?} was not removed");
        let total_tokens = self.summary.total_tokens_processed;
        self.edit_labels(id, &unwritten, |f| -> Result<bool> {
            let removed = crate::label::manual::remove_manual_label(f, &text);
            if removed {
                crate::label::manual::describe_after_edit(f, total_tokens);
            }
            Ok(removed)
        })
    }

    /// Runs `edit` on feature `id` and stores what it changed of the feature's labels,
    /// confidence and description in place, in one immediate transaction (the feature is
    /// read inside it, so a concurrent writer's label is never lost). `edit` must change
    /// nothing else: the feature's top tokens and neighbours are not rewritten. Returns the
    /// edited feature and what `edit` returned, or `None` when `id` is not stored.
    /// `unwritten` says what was not written when the file turns out to be replaced.
    pub fn edit_labels<R, E: From<Error>>(
        &mut self,
        id: u64,
        unwritten: &str,
        edit: impl FnOnce(&mut Feature) -> std::result::Result<R, E>,
    ) -> std::result::Result<Option<(Feature, R)>, E> {
        let Ok(key) = i64::try_from(id) else {
            return Ok(None);
        };
        let tx = WriteTx::begin(self, unwritten)?;
        let e = |err| tx.err(err);
        let body: Option<String> = self
            .conn
            .query_row("SELECT body FROM features WHERE id = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(e)?;
        let Some(body) = body else {
            return Ok(None);
        };
        // Inside the transaction: another connection may have labeled the file meanwhile.
        let dead = self.read_dead_descriptions()?;
        let mut f = parse_body(&self.path, id, &body, dead)?;
        let before = LabelFields::of(&f);
        let out = edit(&mut f)?;
        if LabelFields::of(&f) == before {
            return Ok(Some((f, out)));
        }
        store_label_rows(&self.conn, (&f).into(), &body_of((&f).into(), dead)?).map_err(e)?;
        // Re-read the statistics inside the transaction: another connection may have
        // changed them since this reader opened.
        let mut stats = self.read_statistics(&tx)?;
        stats.labeled_features = (stats.labeled_features + !f.labels.is_empty() as usize)
            .saturating_sub(!before.labels.is_empty() as usize);
        self.write_meta(&tx, "statistics", &to_json(&stats)?)?;
        tx.commit()?;
        self.statistics = stats;
        Ok(Some((f, out)))
    }

    /// Runs `edit` on every stored feature in id order (labeling) and stores, in place, what
    /// it changed of the features' labels, confidences and descriptions, then `config` as
    /// the dictionary's config. Features are read, edited and written
    /// [`RELABEL_CHUNK`] at a time (parsed and serialized on all threads), so memory holds a
    /// chunk, not the dictionary: a file of millions of features is labeled in the memory
    /// of a few thousand. `progress` is told how many features are done after each chunk.
    ///
    /// One immediate transaction spans the whole pass, so no label another writer adds
    /// meanwhile is lost (it waits, within its busy timeout) and a crash or an error leaves
    /// the file as it was. `edit` must change nothing else of a feature (its top tokens and
    /// neighbours are not rewritten) and must not change its id. Returns how many features
    /// were rewritten.
    ///
    /// Cheaper than writing a new file: the token and neighbour tables and their indexes,
    /// most of the file, stay as they are.
    pub fn relabel<E: From<Error>>(
        &mut self,
        config: &DictionaryConfig,
        mut edit: impl FnMut(&mut Feature) -> std::result::Result<(), E>,
        mut progress: impl FnMut(usize),
    ) -> std::result::Result<usize, E> {
        use rayon::prelude::*;
        let tx = WriteTx::begin(self, "no labels were written")?;
        let old = self.read_dead_descriptions()?;
        // Labeling describes every dead feature with the same sentence, which a file then
        // leaves out: decided by the first dead feature without labels the pass edits (the
        // features before it are not dead, so their rows do not depend on it). The
        // sentences an earlier labeling wrote out stay as they are: they read back the same.
        let implied = DeadDescriptions::Implied {
            total_tokens: self.summary.total_tokens_processed,
        };
        let mut new = (old != DeadDescriptions::Stored).then_some(old);
        let path = self.path.clone();
        let (mut after, mut done, mut rewritten, mut labeled) = (None, 0, 0, 0);
        loop {
            let rows = self.stored_rows_after(after, RELABEL_CHUNK)?;
            let Some(&(last, _, _)) = rows.last() else {
                break;
            };
            after = Some(last as u64);
            let mut features: Vec<Feature> = rows
                .par_iter()
                .map(|(id, body, _)| parse_body(&path, *id as u64, body, old))
                .collect::<Result<_>>()?;
            let mut changed = Vec::new();
            for (i, f) in features.iter_mut().enumerate() {
                let (id, before) = (f.id, LabelFields::of(f));
                edit(f)?;
                if f.id != id {
                    return Err(Error::Invalid(format!(
                        "{}: relabeling must not change a feature's id ({id} became {})",
                        self.path.display(),
                        f.id
                    ))
                    .into());
                }
                labeled += !f.labels.is_empty() as usize;
                if new.is_none() && f.activation_count == 0 && f.labels.is_empty() {
                    let leaves_out = implied.leaves_out(FeatureView::from(&*f));
                    new = Some(if leaves_out { implied } else { old });
                }
                // An empty description read from a body without the key needs the key once
                // the file leaves descriptions out, or it would read back as left out.
                let needs_key = new.is_some_and(|new| new != old)
                    && f.activation_count == 0
                    && f.description.is_empty();
                if LabelFields::of(f) != before || needs_key {
                    changed.push(i);
                }
            }
            let new = new.unwrap_or(old);
            let bodies: Vec<Body> = changed
                .par_iter()
                .map(|&i| body_of((&features[i]).into(), new))
                .collect::<Result<_>>()?;
            for (&i, body) in changed.iter().zip(&bodies) {
                let f = (&features[i]).into();
                let (_, stored_json, stored_description) = &rows[i];
                // The same body and description store the same labels, confidence and
                // full-text rows: a dead feature given the sentence that is left out.
                if body.json == *stored_json && body.description(f) == stored_description {
                    continue;
                }
                store_label_rows(&self.conn, f, body).map_err(|err| tx.err(err))?;
                rewritten += 1;
            }
            done += features.len();
            progress(done);
        }
        let new = new.unwrap_or(old);
        if new != old {
            if let Some(value) = new.meta_value() {
                write_dead_descriptions_meta(&self.conn, value).map_err(|err| tx.err(err))?;
            }
        }
        let mut stats = self.read_statistics(&tx)?;
        stats.labeled_features = labeled;
        self.write_meta(&tx, "statistics", &to_json(&stats)?)?;
        self.write_meta(&tx, "config", &to_json(config)?)?;
        tx.commit()?;
        self.statistics = stats;
        self.dead = new;
        Ok(rewritten)
    }

    /// [`Self::relabel`] into a copy of this file at `path`, which is replaced only when all
    /// went well (temporary file + rename; this file is left as it is): a consistent copy
    /// of the file (SQLite's `VACUUM INTO`, which waits for no writer and sees no half
    /// of one) is labeled in place, a chunk at a time, so a dictionary of millions of
    /// features is labeled into a new file without being held in memory either.
    pub fn relabel_into<E: From<Error>>(
        &self,
        path: &Path,
        config: &DictionaryConfig,
        edit: impl FnMut(&mut Feature) -> std::result::Result<(), E>,
        progress: impl FnMut(usize),
    ) -> std::result::Result<usize, E> {
        super::check_link_format(path)?;
        let target = super::output_target(path)?;
        let tmp = super::temp_path_for(&target)?;
        let remove_tmp = || remove_database(&tmp);
        // `VACUUM INTO` refuses a file that is there.
        remove_tmp();
        let labeled = (|| -> std::result::Result<usize, E> {
            self.conn
                .execute("VACUUM INTO ?1", [tmp.to_string_lossy()])
                .map_err(|e| write_err(path, e))?;
            let rewritten = FdictReader::open_rw(&tmp)?.relabel(config, edit, progress)?;
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(path, e))?;
            Ok(rewritten)
        })();
        let rewritten = labeled.inspect_err(|_| remove_tmp())?;
        super::replace_file(&tmp, &target).map_err(|e| {
            remove_tmp();
            Error::io(path, e)
        })?;
        Ok(rewritten)
    }

    fn read_statistics(&self, tx: &WriteTx) -> Result<Statistics> {
        let stats: String = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'statistics'", [], |r| {
                r.get(0)
            })
            .map_err(|err| tx.err(err))?;
        parse_meta(&self.path, "statistics", Some(stats))
    }

    fn write_meta(&self, tx: &WriteTx, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE meta SET value = ?2 WHERE key = ?1",
                params![key, value],
            )
            .map_err(|err| tx.err(err))?;
        Ok(())
    }

    /// Re-reads the statistics when another connection (another program's `featdict label`
    /// in place, a server's label) has committed to the file since they were read; returns
    /// whether it did. Features are always read from the file; only these figures are kept.
    pub fn refresh_if_changed(&mut self) -> Result<bool> {
        let version = data_version(&self.conn).map_err(|e| self.err("cannot read meta", e))?;
        if version == self.data_version {
            return Ok(false);
        }
        let stats: String = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'statistics'", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.err("cannot read meta", e))?;
        self.statistics = parse_meta(&self.path, "statistics", Some(stats))?;
        self.summary.stored_features = self.statistics.total_features;
        self.summary.total_tokens_processed = self.statistics.total_tokens_processed;
        self.dead = self.read_dead_descriptions()?;
        self.data_version = version;
        Ok(true)
    }

    /// The file's [`DeadDescriptions`], read now (another connection may have labeled it).
    fn read_dead_descriptions(&self) -> Result<DeadDescriptions> {
        let value = self.meta_value(DEAD_DESCRIPTIONS_KEY)?;
        DeadDescriptions::from_meta(
            &self.path,
            value.as_deref(),
            self.summary.total_tokens_processed,
        )
    }
}

/// SQLite's `PRAGMA data_version` of `conn`: it differs between two reads exactly when
/// another connection committed in between.
fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
}

/// The order of a feature listing ([`FdictReader::list_features`]); ties by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureOrder {
    /// By id, ascending.
    Id,
    /// Most firings first (the same order as by firing frequency).
    ActivationCount,
    /// Largest maximum activation first.
    MaxActivation,
    /// Highest labeling confidence first.
    Confidence,
}

impl FeatureOrder {
    /// Every order, with the name its `FromStr` reads.
    pub const ALL: [(FeatureOrder, &'static str); 4] = [
        (FeatureOrder::Id, "id"),
        (FeatureOrder::ActivationCount, "activation_count"),
        (FeatureOrder::MaxActivation, "max_activation"),
        (FeatureOrder::Confidence, "confidence"),
    ];

    /// The name its `FromStr` reads.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(o, _)| *o == self)
            .map_or("id", |(_, name)| name)
    }
}

impl std::str::FromStr for FeatureOrder {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "frequency" | "activation_frequency" => Ok(FeatureOrder::ActivationCount),
            _ => Self::ALL
                .iter()
                .find(|(_, name)| *name == s)
                .map(|(o, _)| *o)
                .ok_or_else(|| {
                    format!(
                        "unknown order {s:?}: expected one of id, activation_count, frequency (or \
                         activation_frequency), max_activation, confidence"
                    )
                }),
        }
    }
}

/// Checks a manual label's text: trimmed, non-empty, at most [`MAX_LABEL_CHARS`] characters,
/// no control characters.
pub fn validate_label(text: &str) -> Result<String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(Error::Invalid("label text is empty".into()));
    }
    if t.chars().count() > MAX_LABEL_CHARS {
        return Err(Error::Invalid(format!(
            "label text has {} characters; at most {MAX_LABEL_CHARS} are allowed",
            t.chars().count()
        )));
    }
    if t.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "label text contains control characters (newline, tab, …)".into(),
        ));
    }
    // An override (U+202E …) reverses the text shown after the label: other labels, the
    // description that quotes it.
    if let Some(c) = t.chars().find(|&c| is_bidi_control(c)) {
        return Err(Error::Invalid(format!(
            "label text contains the bidirectional control character U+{:04X}, which would reorder the text shown after it",
            c as u32
        )));
    }
    if t.chars().all(|c| {
        c.is_whitespace() || matches!(c, '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}')
    }) {
        return Err(Error::Invalid(
            "label text has no visible characters (only zero-width ones)".into(),
        ));
    }
    if let Some(c) = invisible_in(t) {
        return Err(Error::Invalid(format!(
            "label text contains the invisible character U+{:04X}, which would make it look like another label",
            c as u32
        )));
    }
    // A private-use character has no agreed glyph: each reader's font shows it differently,
    // or as nothing.
    if let Some(c) = t.chars().find(|&c| {
        matches!(c, '\u{e000}'..='\u{f8ff}' | '\u{f0000}'..='\u{ffffd}' | '\u{100000}'..='\u{10fffd}')
    }) {
        return Err(Error::Invalid(format!(
            "label text contains the private-use character U+{:04X}, which has no agreed appearance",
            c as u32
        )));
    }
    Ok(t.to_string())
}

/// The first character of `text` that shows as nothing and is not needed to write it: a
/// default-ignorable code point, a line or paragraph separator, or a blank that is no space
/// (U+2800, the blank Braille pattern; U+3164 and U+FFA0, Hangul fillers). What writing needs is let
/// through: joiners and variation selectors after a non-ASCII character, between two
/// characters (emoji sequences, Persian and Indic scripts, Mongolian); the emoji presentation
/// selector of a keycap (`1️⃣`: digit, U+FE0F, U+20E3); the tags of a subdivision flag
/// (U+1F3F4, tags, U+E007F).
fn invisible_in(text: &str) -> Option<char> {
    let chars: Vec<char> = text.chars().collect();
    let is_tag = |c: char| ('\u{e0020}'..='\u{e007f}').contains(&c);
    chars.iter().enumerate().find_map(|(i, &c)| {
        if is_tag(c) {
            let start = chars[..i].iter().rposition(|&p| !is_tag(p)).map_or(0, |p| p + 1);
            let end = chars[i..].iter().position(|&n| !is_tag(n)).map_or(chars.len(), |n| i + n);
            let flag = start > 0 && chars[start - 1] == '\u{1f3f4}' && chars[end - 1] == '\u{e007f}';
            return (!flag).then_some(c);
        }
        let joiner = matches!(
            c,
            '\u{200c}' | '\u{200d}' | '\u{180b}'..='\u{180d}' | '\u{fe00}'..='\u{fe0f}' | '\u{e0100}'..='\u{e01ef}'
        );
        if joiner {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1).copied();
            let keycap = c == '\u{fe0f}'
                && prev.is_some_and(|p| p.is_ascii_digit() || p == '#' || p == '*')
                && next == Some('\u{20e3}');
            let after_writing = prev.is_some_and(|p| !p.is_ascii() && !p.is_whitespace());
            let before_more = next.is_some_and(|n| !n.is_whitespace());
            let ends_sequence = matches!(c, '\u{fe00}'..='\u{fe0f}' | '\u{e0100}'..='\u{e01ef}');
            let written = keycap || (after_writing && (before_more || ends_sequence));
            return (!written).then_some(c);
        }
        let invisible = matches!(
            c,
            '\u{00ad}'
                | '\u{034f}'
                | '\u{115f}'
                | '\u{1160}'
                | '\u{17b4}'
                | '\u{17b5}'
                | '\u{180e}'
                | '\u{180f}'
                | '\u{200b}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2800}'
                | '\u{206a}'..='\u{206f}'
                | '\u{3164}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{fff0}'..='\u{fff8}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0000}'..='\u{e0fff}'
        );
        invisible.then_some(c)
    })
}

/// Unicode's explicit bidirectional formatting characters (marks, embeddings, overrides,
/// isolates): refused in manual labels, and neutralized where the server shows text that is
/// not isolated token by token.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn split_labels(s: &str) -> Vec<String> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split('\n').map(str::to_string).collect()
    }
}

fn parse_meta<T: for<'de> Deserialize<'de>>(
    path: &Path,
    key: &str,
    v: Option<String>,
) -> Result<T> {
    let v = v.ok_or_else(|| Error::format(path, format!("meta key {key:?} is missing")))?;
    super::json::from_str(&v)
        .map_err(|e| Error::format(path, format!("meta key {key:?} is not valid: {e}")))
}

/// A feature's scalar fields, for result lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureBrief {
    /// Feature id.
    pub id: u64,
    /// Frequency class.
    pub feature_type: String,
    /// Firings.
    pub activation_count: u64,
    /// Firing frequency.
    pub activation_frequency: f64,
    /// Largest activation.
    pub max_activation: f64,
    /// Confidence of the best label.
    pub confidence: f64,
    /// Label texts.
    pub labels: Vec<String>,
    /// Description.
    pub description: String,
    /// Most frequent firing token.
    pub top_token: Option<String>,
    /// Whether its per-token firing counts are exact; `false` once its token sketch
    /// overflowed (`--token-capacity`): its top tokens' counts are then lower bounds, and a
    /// token search ranks it by them.
    pub token_counts_exact: bool,
}

impl FeatureBrief {
    /// The brief of an in-memory feature.
    pub fn of(f: &Feature) -> FeatureBrief {
        FeatureBrief {
            id: f.id,
            feature_type: f.feature_type.as_str().to_string(),
            activation_count: f.activation_count,
            activation_frequency: f.activation_frequency,
            max_activation: f.max_activation,
            confidence: f.confidence,
            labels: f.labels.clone(),
            description: f.description.clone(),
            top_token: f.metadata.top_tokens.first().map(|t| t.token.clone()),
            token_counts_exact: f.metadata.token_counts_exact != Some(false),
        }
    }
}
