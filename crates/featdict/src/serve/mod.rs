//! `featdict serve`: a JSON API and server-rendered HTML pages over one dictionary.
//!
//! - JSON: `GET /api/stats`, `GET /api/features[?order=activation_count|max_activation|
//!   confidence|id][&type=sparse|…][&limit=N][&offset=N]` (a page of feature briefs),
//!   `GET /api/features/{id}`, `GET /api/search?token=|label=|
//!   pattern=|text=…[&by=precision|firings][&limit=N][&offset=N]` (a token or pattern
//!   search also answers its `basis`, `top_tokens` or `examples`, and the ranking `by` it
//!   applied; see [`feature_dictionary::query`]), `POST /api/features/{id}/labels`
//!   (`{"text": "…"}` as JSON, or `text=…` as a form, which redirects back to the page),
//!   `POST /api/features/{id}/labels/remove` (the same bodies; manual labels only).
//! - HTML: `/` (overview), `/features` (every feature, sorted and filtered, paged),
//!   `/search`, `/features/{id}`; CSS and JS are compiled into the
//!   binary (`include_str!`), so the UI works offline, without a build step or a CDN.
//!
//! Safety: binds 127.0.0.1 unless told otherwise; every text from the dictionary is
//! HTML-escaped and pages send a Content-Security-Policy that forbids inline scripts, so
//! hostile tokens or labels show as text; request bodies and URLs are capped at 64 KiB (a
//! longer URL gets a 414 that says so, see `refusals`); unknown ids
//! give 404 and bad queries 400. Requests for another Host, and label POSTs another site's
//! page sent, are refused (`guard`). Connections are capped in number and closed when a
//! client stalls ([`ServeOptions`]); a read running past [`QUERY_TIME_LIMIT`] is stopped
//! (503). A served file replaced or removed is followed: the new
//! file is served, or 503 while there is none that opens. Manual labels are written through one connection behind a
//! mutex, each in an immediate SQLite transaction, so concurrent writes serialize and none
//! is lost; reads go through a small pool of other connections (SQLite's locks let them
//! share the file: a commit waits for reads in progress, reads wait out a commit).
//!
//! A `.json` dictionary is served through a sibling `.fdict` (created on first use, reused
//! while the JSON is unchanged, converted again with its manual-label edits — additions and
//! removals — when it changed),
//! which is where its manual labels are kept.

pub mod bench;
mod guard;
mod html;
mod listen;
mod pages;
mod pool;
mod refusals;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, FromRequest, Path as UrlPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use clap::Args;
use feature_dictionary::dictionary::Statistics;
use feature_dictionary::label::manual;
use feature_dictionary::model::FeatureType;
use feature_dictionary::query::{Hit, Query, Search, TokenBasis, TokenRank};
use feature_dictionary::store::fdict::{self, FdictReader, FeatureBrief, FeatureOrder, Summary};
use feature_dictionary::{store, Error as LibError};
use serde::Deserialize;
use serde_json::json;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;
/// Largest `limit` a search or listing accepts.
pub const MAX_LIMIT: usize = 1000;
/// Read connections kept open.
const READERS: usize = 4;
/// Default of `--read-timeout`, in seconds.
pub const DEFAULT_READ_TIMEOUT_SECS: u64 = 15;
/// Default of `--max-connections`: far more than a browser opens (six per server), far
/// fewer than the usual limit of 1,024 open files.
pub const DEFAULT_MAX_CONNECTIONS: usize = 128;

/// Arguments of `featdict serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Dictionary file (.fdict, or .json served through a sibling .fdict).
    pub dict: PathBuf,
    /// Address to listen on. Anything but a loopback address exposes the dictionary (and
    /// the manual-label form) to the network; requests must then name this address (or,
    /// for 0.0.0.0 and ::, any IP address: DNS cannot repoint one) with the port, or a name
    /// given by --allow-host.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Also answer requests addressed to HOST (`NAME` with the server's port, or
    /// `NAME:PORT`): the machine's name when listening on 0.0.0.0, or `localhost:9000` behind
    /// an SSH tunnel from port 9000. Repeatable. Only names you trust: whoever controls a
    /// name's DNS can point it at this machine.
    #[arg(long = "allow-host", value_name = "HOST", value_parser = guard::parse_allowed_host)]
    pub allow_host: Vec<String>,
    /// Print the listening address as JSON (`{"url": …, "dict": …}`, the served `.fdict`)
    /// instead of a sentence.
    #[arg(long)]
    pub json: bool,
    /// Seconds a client has to send a request's headers (and a label's body) and to take
    /// each part of an answer; an idle connection is closed after as long. Without a limit,
    /// connections that never finish a request would pile up until no file descriptor is
    /// left.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_READ_TIMEOUT_SECS as f64, value_parser = parse_seconds)]
    pub read_timeout: f64,
    /// Connections served at once; further ones wait until one closes.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = parse_connections)]
    pub max_connections: usize,
}

impl ServeArgs {
    /// The defaults for serving `dict` at `addr` (what `featdict serve DICT --addr ADDR`
    /// means).
    pub fn new(dict: PathBuf, addr: SocketAddr, json: bool) -> Self {
        Self {
            dict,
            addr,
            json,
            allow_host: Vec::new(),
            read_timeout: DEFAULT_READ_TIMEOUT_SECS as f64,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }

    /// The connection settings these arguments ask for.
    pub fn options(&self) -> ServeOptions {
        ServeOptions {
            read_timeout: Duration::from_secs_f64(self.read_timeout),
            max_connections: self.max_connections,
            allowed_hosts: self.allow_host.clone(),
        }
    }
}

/// `--read-timeout`: positive seconds, at most an hour (a longer one is no limit).
fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.001..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of seconds between 0.001 and 3600"
        )),
    }
}

/// `--max-connections`: 1 to 100,000.
fn parse_connections(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=100_000).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a whole number between 1 and 100000")),
    }
}

/// How connections are served.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Time a client has to send a request's headers, to send a label's body and to take
    /// each part of an answer; an idle keep-alive connection is closed after it too.
    pub read_timeout: Duration,
    /// Connections served at once; more wait in the kernel's listen queue.
    pub max_connections: usize,
    /// `Host` values answered besides the listening address, loopback addresses and
    /// `localhost` (see `--allow-host`).
    pub allowed_hosts: Vec<String>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            read_timeout: Duration::from_secs(DEFAULT_READ_TIMEOUT_SECS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            allowed_hosts: Vec::new(),
        }
    }
}

/// What the label handler needs from [`ServeOptions`] (handlers see the router's state,
/// which is the dictionary's).
#[derive(Clone, Copy)]
struct BodyTimeout(Duration);

/// What the handlers share.
pub struct AppState {
    /// The served file (reopened when another program replaces it).
    path: PathBuf,
    writer: Mutex<FdictReader>,
    /// The reading connections (see [`pool`]).
    readers: pool::Pool<FdictReader>,
    /// The summary and statistics as of the last label write. The overview and
    /// `/api/stats` read this copy: the writer's mutex is held for as long as a write waits
    /// for SQLite's lock (up to the busy timeout), and those handlers run on the async
    /// workers, which would all stall behind it.
    totals: RwLock<(Summary, Statistics)>,
    /// Why the file at `path` cannot be served, while it cannot (it was replaced by
    /// something that is not a dictionary, or removed); kept to report each problem once.
    problem: Mutex<Option<String>>,
    /// How long one request's reading may run before SQLite is told to stop it.
    query_time_limit: Duration,
}

/// How long one request's reading may run ([`AppState::read`]): far beyond any query of a
/// million-feature file (the slowest, a full-text search for words in every description,
/// takes ~1.4 s), yet short enough that a few runaway requests do not hold every reading
/// connection (a client that gives up does not stop the query it started).
pub const QUERY_TIME_LIMIT: Duration = Duration::from_secs(10);

/// SQLite virtual-machine steps between two looks at the clock of a running query.
const QUERY_CLOCK_STEPS: i32 = 10_000;

impl AppState {
    /// Opens `path` (an `.fdict`) with one writing and a few reading connections.
    pub fn open(path: &Path) -> Result<Self> {
        let mut writer = FdictReader::open_rw(path)
            .with_context(|| format!("cannot open {} for writing labels", path.display()))?;
        let added = writer.add_listing_indexes()?;
        if !added.is_empty() {
            eprintln!(
                "added the feature-listing indexes {} to {} (once: it was written before they existed)",
                added.join(", "),
                path.display()
            );
        }
        // Only speeds searches up: a file that cannot take it (read-only) is served as it is.
        match writer.add_example_tokens() {
            Ok(Some(filled)) => eprintln!(
                "added the example-token table to {} ({filled} features' example tokens, which token and pattern searches use when no feature has per-token counts; once: it was written before the table existed)",
                path.display()
            ),
            Ok(None) => {}
            Err(e) => eprintln!(
                "warning: {e:#}; token and pattern searches of this file read every feature's examples instead"
            ),
        }
        let readers = pool::Pool::new(
            (0..READERS)
                .map(|_| FdictReader::open(path))
                .collect::<Result<Vec<_>, _>>()?,
        );
        let totals = RwLock::new((writer.summary().clone(), writer.statistics().clone()));
        Ok(Self {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            readers,
            totals,
            problem: Mutex::new(None),
            query_time_limit: QUERY_TIME_LIMIT,
        })
    }

    /// The summary and statistics, without waiting for a write in progress.
    pub(crate) fn totals(&self) -> (Summary, Statistics) {
        self.totals
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The summary and statistics of the file at the served path as it is now: an error
    /// when it was replaced by something unreadable or removed, instead of the figures of a
    /// file that is gone.
    pub(crate) fn current_totals(&self) -> Result<(Summary, Statistics), ApiError> {
        self.read(|_| Ok(()))?;
        Ok(self.totals())
    }

    /// Adds a manual label (see [`FdictReader::add_manual_label`]) and refreshes the totals.
    fn add_manual_label(
        &self,
        id: u64,
        text: &str,
    ) -> Result<Option<feature_dictionary::model::Feature>, ApiError> {
        self.write(|w| {
            let f = w.add_manual_label(id, text)?;
            *self.totals.write().unwrap_or_else(|p| p.into_inner()) =
                (w.summary().clone(), w.statistics().clone());
            Ok(f)
        })
    }

    /// Removes a manual label (see [`FdictReader::remove_manual_label`]) and refreshes the
    /// totals.
    fn remove_manual_label(
        &self,
        id: u64,
        text: &str,
    ) -> Result<Option<(feature_dictionary::model::Feature, bool)>, ApiError> {
        self.write(|w| {
            let edited = w.remove_manual_label(id, text)?;
            *self.totals.write().unwrap_or_else(|p| p.into_inner()) =
                (w.summary().clone(), w.statistics().clone());
            Ok(edited)
        })
    }

    /// Runs `f`, light work, on a reading connection to the file now at the served path.
    fn read<T>(&self, f: impl FnOnce(&FdictReader) -> Result<T, ApiError>) -> Result<T, ApiError> {
        self.read_as(pool::Work::Light, f)
    }

    /// Runs `f` on a reading connection to the file now at the served path, once one is
    /// free for `work` (see [`pool`]): 503 when too many requests wait already, or when none
    /// was free within the query time limit.
    fn read_as<T>(
        &self,
        work: pool::Work,
        f: impl FnOnce(&FdictReader) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let waited_until = std::time::Instant::now() + self.query_time_limit;
        let mut r = self.readers.lease(work, waited_until).map_err(|refused| {
            let why = match refused {
                pool::Refused::Crowded => format!(
                    "the server is busy: {} requests are waiting for the database already; try again shortly",
                    pool::MAX_WAITING
                ),
                pool::Refused::TimedOut => format!(
                    "the server is busy: no database connection was free for {} s; try again shortly",
                    self.query_time_limit.as_secs_f64()
                ),
            };
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, why)
        })?;
        // Replaced by a rename (`build`, `import`, `label --out`), or written in place by
        // another program (`label` on this file): the totals shown must follow either way.
        let switched = self.follow_replacement(&mut r, FdictReader::open)?;
        let relabeled = r.refresh_if_changed().map_err(|e| self.unavailable(&e))?;
        if switched || relabeled {
            *self.totals.write().unwrap_or_else(|p| p.into_inner()) =
                (r.summary().clone(), r.statistics().clone());
        }
        let limit = self.query_time_limit;
        let deadline = std::time::Instant::now() + limit;
        r.connection().progress_handler(
            QUERY_CLOCK_STEPS,
            Some(move || std::time::Instant::now() >= deadline),
        );
        let result = f(&r);
        r.connection().progress_handler(0, None::<fn() -> bool>);
        match result {
            Err(_) if std::time::Instant::now() >= deadline => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the query was stopped after {} s; narrow it (a more selective word, token or pattern)",
                    limit.as_secs_f64()
                ),
            )),
            other => other,
        }
    }

    /// Runs `f` on the writing connection to the file now at the served path.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut FdictReader) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if self.follow_replacement(&mut w, FdictReader::open_rw)? {
            *self.totals.write().unwrap_or_else(|p| p.into_inner()) =
                (w.summary().clone(), w.statistics().clone());
        }
        let result = f(&mut w);
        // Its own commit changed the file: not another program's overwrite.
        w.restamp();
        result
    }

    /// When another program has rewritten the served file (`featdict label`, `build`,
    /// `import` replace it by a rename), switches `conn` to the new file: serving the old
    /// one would show stale features, and labels written to it would be lost with it.
    /// Returns whether it switched.
    ///
    /// When the file was removed, or replaced by one that does not open as a dictionary,
    /// the answer is 503 naming the file and the reason — never the old file's features —
    /// until a valid dictionary is at the path again, which the next request picks up.
    fn follow_replacement(
        &self,
        conn: &mut FdictReader,
        open: impl Fn(&Path) -> feature_dictionary::Result<FdictReader>,
    ) -> Result<bool, ApiError> {
        // Renamed over (`build`, `import`, `label --out`), or written in place by a program
        // that is not SQLite (`cp other.fdict served.fdict`).
        if !conn.is_replaced() && !conn.is_overwritten() {
            return Ok(false);
        }
        match open(&self.path) {
            Ok(fresh) => {
                *conn = fresh;
                let mut problem = self.problem.lock().unwrap_or_else(|p| p.into_inner());
                if problem.take().is_some() {
                    eprintln!(
                        "{} is a valid dictionary again; serving it",
                        self.path.display()
                    );
                }
                Ok(true)
            }
            Err(e) => Err(self.unavailable(&e)),
        }
    }

    /// The 503 for a served file that cannot be read now; logs each new reason once (every
    /// request retries, and so meets the same reason again).
    fn unavailable(&self, e: &LibError) -> ApiError {
        let reason = match e {
            LibError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                format!("{}: the file was removed", self.path.display())
            }
            e => e.to_string(),
        };
        let message = format!(
            "{reason} (the served dictionary was replaced or removed, and what is there now cannot be served; a valid dictionary at {} is served again as soon as it appears)",
            self.path.display()
        );
        let mut problem = self.problem.lock().unwrap_or_else(|p| p.into_inner());
        if problem.as_deref() != Some(message.as_str()) {
            eprintln!("error: {message}");
            *problem = Some(message.clone());
        }
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

/// The `meta` key of a sibling `.fdict` that records the JSON it was converted from.
const SOURCE_KEY: &str = "serve_source_json";

/// The `meta` key of a sibling `.fdict` that records the manual labels its JSON held when
/// converted (`[[id, text], …]`): what edits on the sibling are measured against, so that a
/// label removed there stays removed when the JSON is converted again.
const SOURCE_LABELS_KEY: &str = "serve_source_manual_labels";

/// What identifies the content of a JSON dictionary without reading it: its size and
/// modification time (what `make` trusts too), recorded in the sibling at conversion.
#[derive(Debug, PartialEq, serde::Serialize, Deserialize)]
struct SourceStamp {
    size: u64,
    modified_secs: u64,
    modified_nanos: u32,
}

impl SourceStamp {
    fn of(md: &std::fs::Metadata) -> Option<Self> {
        let t = md
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        Some(Self {
            size: md.len(),
            modified_secs: t.as_secs(),
            modified_nanos: t.subsec_nanos(),
        })
    }
}

/// Why the sibling `.fdict` no longer shows `json`, if it does not: `json` differs from the
/// file it was converted from (as recorded in it), or — for a sibling without a record,
/// written by an earlier version or by `featdict import` — `json` was modified after it.
fn sibling_outdated(json: &Path, sibling: &Path, recorded: Option<&str>) -> Result<Option<String>> {
    let md = std::fs::metadata(json).with_context(|| format!("cannot read {}", json.display()))?;
    let now = SourceStamp::of(&md);
    if let Some(was) = recorded.and_then(|r| serde_json::from_str::<SourceStamp>(r).ok()) {
        return Ok((now.as_ref() != Some(&was)).then(|| {
            format!(
                "{} changed since {} was converted from it",
                json.display(),
                sibling.display()
            )
        }));
    }
    let sibling_modified = std::fs::metadata(sibling)
        .and_then(|m| m.modified())
        .with_context(|| format!("cannot read {}", sibling.display()))?;
    Ok(match md.modified() {
        Ok(t) if t > sibling_modified => Some(format!(
            "{} is newer than {}",
            json.display(),
            sibling.display()
        )),
        _ => None,
    })
}

/// The manual labels of an earlier sibling: those it holds now, and those its JSON held
/// when it was converted (`None` for a sibling that did not record them).
#[derive(Default)]
struct EarlierLabels {
    now: Vec<(u64, String)>,
    converted_with: Option<Vec<(u64, String)>>,
}

/// Converts `json` into `sibling` (replacing it), carrying over the manual-label edits of
/// the `earlier` sibling (labels added there, and — when it recorded what it was converted
/// with — labels removed there), and records which JSON it was made from and that JSON's
/// manual labels.
fn convert_sibling(
    json: &Path,
    sibling: &Path,
    earlier: &EarlierLabels,
) -> Result<manual::CarriedEdits> {
    // The stamp is taken before reading: a JSON rewritten while it is read then looks
    // changed next time, and is converted again rather than trusted.
    let stamp = std::fs::metadata(json)
        .ok()
        .and_then(|m| SourceStamp::of(&m));
    let mut d =
        store::load(json).with_context(|| format!("cannot read dictionary {}", json.display()))?;
    let own = manual::manual_labels_of(&d);
    let carried = match &earlier.converted_with {
        Some(base) => manual::carry_over_edits(&mut d, base, &earlier.now),
        None => {
            // Without the record, every label of the sibling is kept (removals are lost).
            let kept = manual::carry_over(&mut d, &earlier.now);
            manual::CarriedEdits {
                kept,
                dropped: earlier.now.len() - kept,
                removed: 0,
            }
        }
    };
    store::save(&d, sibling)?;
    let record = |w: FdictReader| -> feature_dictionary::Result<()> {
        if let Some(stamp) = &stamp {
            let value = serde_json::to_string(stamp).expect("a stamp serializes");
            w.set_meta_value(SOURCE_KEY, &value)?;
        }
        let labels = serde_json::to_string(&own).expect("labels serialize");
        w.set_meta_value(SOURCE_LABELS_KEY, &labels)
    };
    FdictReader::open_rw(sibling)
        .and_then(record)
        .with_context(|| format!("cannot record the source of {}", sibling.display()))?;
    Ok(carried)
}

/// The `.fdict` to serve for `dict`: itself, or for a JSON dictionary its sibling `.fdict`,
/// created when missing and converted again (keeping its manual labels) when the JSON
/// changed since. Returns the path and a note for the user, if any.
pub fn prepare(dict: &Path) -> Result<(PathBuf, Option<String>)> {
    if fdict::is_fdict(dict)? {
        return Ok((dict.to_path_buf(), None));
    }
    let sibling = dict.with_extension("fdict");
    if sibling == dict {
        // Not a database under the `.fdict` name: loading names a damaged file as such; JSON
        // would be converted over itself, so it is asked to be renamed instead.
        store::load(dict).with_context(|| format!("cannot read dictionary {}", dict.display()))?;
        anyhow::bail!(
            "{} holds a JSON dictionary, not an .fdict database; rename it to .json and serve that (it is converted to an .fdict beside it)",
            dict.display()
        );
    }
    if sibling.exists() {
        // Its manual labels are read now, while it is known to be readable: converting
        // again would otherwise replace the only copy of them.
        let (recorded, earlier) = FdictReader::open(&sibling)
            .and_then(|r| {
                let converted_with = r
                    .meta_value(SOURCE_LABELS_KEY)?
                    .and_then(|v| serde_json::from_str(&v).ok());
                let now = r.manual_labels()?;
                Ok((
                    r.meta_value(SOURCE_KEY)?,
                    EarlierLabels {
                        now,
                        converted_with,
                    },
                ))
            })
            .with_context(|| {
                format!(
                    "cannot read {} (the .fdict beside {}, which holds its manual labels); move it away to convert {} afresh",
                    sibling.display(),
                    dict.display(),
                    dict.display()
                )
            })?;
        let Some(why) = sibling_outdated(dict, &sibling, recorded.as_deref())? else {
            let note = format!(
                "serving {} (converted from {} earlier, with the manual labels set since; converted again, keeping them, when the JSON changes and the server is started again)",
                sibling.display(),
                dict.display()
            );
            return Ok((sibling, Some(note)));
        };
        let carried = crate::commands::with_status(
            format!(
                "converting {} to {} again ({why})",
                dict.display(),
                sibling.display()
            ),
            || convert_sibling(dict, &sibling, &earlier),
        )?;
        let mut note = format!(
            "converted {} to {} again ({why}); kept {} manual label(s)",
            dict.display(),
            sibling.display(),
            carried.kept
        );
        if carried.removed > 0 {
            note.push_str(&format!(
                "; {} manual label(s) removed there stay removed",
                carried.removed
            ));
        }
        if carried.dropped > 0 {
            note.push_str(&format!(
                "; {} manual label(s) of features {} no longer holds were dropped",
                carried.dropped,
                dict.display()
            ));
        }
        return Ok((sibling, Some(note)));
    }
    crate::commands::with_status(
        format!("converting {} to {}", dict.display(), sibling.display()),
        || convert_sibling(dict, &sibling, &EarlierLabels::default()),
    )?;
    let note = format!(
        "converted {} to {} (manual labels are stored there)",
        dict.display(),
        sibling.display()
    );
    Ok((sibling, Some(note)))
}

/// The router over `state` for a server listening on `local`.
pub fn router(state: Arc<AppState>, local: SocketAddr, options: &ServeOptions) -> Router {
    let hosts = guard::HostGuard::new(local, &options.allowed_hosts);
    Router::new()
        .route("/", get(pages::overview))
        .route("/search", get(pages::search))
        .route("/features", get(pages::features))
        .route("/features/{id}", get(pages::feature))
        .route("/go", get(pages::go))
        .route("/assets/style.css", get(pages::style))
        .route("/assets/app.js", get(pages::script))
        .route("/api/stats", get(api_stats))
        .route("/api/search", get(api_search))
        .route("/api/features", get(api_list))
        .route("/api/features/{id}", get(api_feature))
        .route(
            "/api/features/{id}/labels",
            axum::routing::post(api_add_label),
        )
        .route(
            "/api/features/{id}/labels/remove",
            axum::routing::post(api_remove_label),
        )
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn(refuse_bad_query))
        .layer(Extension(BodyTimeout(options.read_timeout)))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response(uniform_errors))
        .layer(axum::middleware::from_fn_with_state(
            hosts,
            guard::refuse_foreign,
        ))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// A request's query parameters (see [`query_params`]).
pub(crate) struct Params(pub std::collections::HashMap<String, String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Params {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        query_params(parts.uri.query())
            .map(Params)
            .map_err(|message| (StatusCode::BAD_REQUEST, message).into_response())
    }
}

/// The parameters of a query string (`a=1&b=x+y`: percent-decoded, `+` a space). Refused,
/// with the reason: a parameter given twice (taking either value would be a guess about
/// what the client meant), and one whose bytes are not UTF-8 (decoded with U+FFFD in
/// their place, `token=%FF` found the real token "\u{FFFD}").
pub(crate) fn query_params(
    query: Option<&str>,
) -> Result<std::collections::HashMap<String, String>, String> {
    let mut params = std::collections::HashMap::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |part: &str| {
            percent_encoding::percent_decode_str(&part.replace('+', " "))
                .decode_utf8()
                .map(|text| text.into_owned())
        };
        let key = decode(key).map_err(|_| {
            format!("a query parameter name ({key:?}) is not valid UTF-8 text once decoded")
        })?;
        let value = decode(value).map_err(|_| {
            format!("query parameter `{key}` is not valid UTF-8 text once decoded ({value:?})")
        })?;
        if params.contains_key(&key) {
            return Err(format!(
                "query parameter `{key}` is given more than once; give it once"
            ));
        }
        params.insert(key, value);
    }
    Ok(params)
}

/// Refuses a query [`query_params`] refuses on every route, those that read no parameter
/// too: it is answered the same way everywhere.
///
/// An API endpoint also refuses a parameter it does not take: `/api/search?token=x&limt=5`
/// would otherwise answer 20 hits as if the limit had been read. (Pages take what they
/// know and ignore the rest, as links from elsewhere may carry extra parameters.)
async fn refuse_bad_query(req: Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path();
    let is_api = path == "/api" || path.starts_with("/api/");
    let refused = query_params(req.uri().query()).and_then(|params| {
        if is_api {
            unknown_api_params(path, &params)
        } else {
            Ok(())
        }
    });
    if let Err(message) = refused {
        let e = ApiError::new(StatusCode::BAD_REQUEST, message);
        return if is_api {
            e.into_response()
        } else {
            pages::error_page(e)
        };
    }
    next.run(req).await
}

/// The query parameters each API endpoint reads (none for the others).
fn api_params(path: &str) -> &'static [&'static str] {
    match path {
        "/api/search" => &["token", "label", "pattern", "text", "by", "limit", "offset"],
        "/api/features" => &["order", "type", "limit", "offset"],
        _ => &[],
    }
}

/// Refuses, naming them, the parameters of `params` that the API endpoint at `path` does
/// not read.
fn unknown_api_params(
    path: &str,
    params: &std::collections::HashMap<String, String>,
) -> Result<(), String> {
    let known = api_params(path);
    let mut unknown: Vec<&str> = params
        .keys()
        .map(String::as_str)
        .filter(|k| !known.contains(k))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort_unstable();
    let names = unknown
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let takes = if known.is_empty() {
        "takes no query parameters".to_string()
    } else {
        format!("takes {}", known.join(", "))
    };
    Err(format!(
        "unknown query parameter{} {names}: {path} {takes}",
        if unknown.len() > 1 { "s" } else { "" }
    ))
}

/// axum answers some bad requests itself, before a handler runs: an id that is not UTF-8
/// (400), a body over [`BODY_LIMIT`] (413), a wrong method (405). Those answers are plain
/// text; API clients expect `{"error": …}` and browsers a page, so they are rewrapped.
///
/// hyper's own answers cannot be: a request target over 64 KiB (414), a request head over
/// its buffer (431) or an unparseable request line (400) are answered by its parser before
/// the request reaches any service, and hyper offers no hook to change them (the URI limit
/// is a constant). The first two get their bodies in the connection's bytes instead (see
/// `refusals`).
async fn uniform_errors(uri: axum::http::Uri, res: Response) -> Response {
    let status = res.status();
    let ctype = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let api = uri.path() == "/api" || uri.path().starts_with("/api/");
    // The label routes answer their page's forms (posted without JavaScript) with a page.
    let form_route = uri.path().ends_with("/labels") || uri.path().ends_with("/labels/remove");
    let ours = ctype.starts_with("application/json")
        || ((!api || form_route) && ctype.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || ours {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() || ctype.starts_with("text/html") {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let e = ApiError::new(status, message);
    let mut out = if api {
        e.into_response()
    } else {
        pages::error_page(e)
    };
    // Keep what the status needs (Allow on 405), not the old body's type or length.
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().entry(k).or_insert(v.clone());
        }
    }
    out
}

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

/// Serves `state` on `listener` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    options: ServeOptions,
) -> std::io::Result<()> {
    let app = router(state, listener.local_addr()?, &options);
    listen::accept_loop(listener, app, options.max_connections, options.read_timeout).await
}

/// `featdict serve`.
pub fn run(args: ServeArgs) -> Result<()> {
    let (path, note) = prepare(&args.dict)?;
    if let Some(n) = note {
        eprintln!("{n}");
    }
    let state = Arc::new(AppState::open(&path)?);
    let options = args.options();
    if !args.addr.ip().is_loopback() {
        eprintln!(
            "warning: listening on {}, reachable from other machines; anyone who can reach it can add labels",
            args.addr
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let local = listener.local_addr()?;
        if args.json {
            println!(
                "{}",
                json!({"url": format!("http://{local}/"), "dict": path})
            );
        } else {
            println!(
                "serving {} at http://{local}/ (Ctrl-C stops)",
                path.display()
            );
        }
        tokio::select! {
            r = serve(listener, state, options) => r.context("server failed"),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}

/// An error answer: status and message (JSON for the API, a page for HTML).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<LibError> for ApiError {
    fn from(e: LibError) -> Self {
        match e {
            LibError::Invalid(m) => ApiError::bad(m),
            e @ LibError::Unavailable { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("worker failed: {e}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": self.message}))).into_response()
    }
}

/// A feature id in a path: decimal digits, no sign and no leading zero, so that every
/// feature has one URL (`/features/01` and `/features/+1` are not feature 1's page).
fn parse_id(raw: &str) -> Result<u64, ApiError> {
    if raw.len() > 1 && raw.starts_with('0') || raw.starts_with('+') {
        return Err(ApiError::bad(format!(
            "feature id {raw:?} is not written canonically (decimal digits without a sign or leading zeros)"
        )));
    }
    raw.parse::<u64>().map_err(|_| {
        if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
            ApiError::bad(format!(
                "feature id {raw} is too large (ids go up to {})",
                u64::MAX
            ))
        } else {
            ApiError::bad(format!("feature id {raw:?} is not a non-negative integer"))
        }
    })
}

/// A feature id as a person types it into the "go to" box: a sign or leading zeros are
/// dropped (the answer is a redirect to the canonical page).
fn parse_typed_id(raw: &str) -> Result<u64, ApiError> {
    let unsigned = raw.strip_prefix('+').unwrap_or(raw);
    let digits = unsigned.trim_start_matches('0');
    if digits.is_empty() && !unsigned.is_empty() {
        return Ok(0);
    }
    parse_id(if digits.is_empty() { raw } else { digits })
}

/// Runs blocking database work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await?
}

async fn api_stats(State(st): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let (summary, statistics) = blocking(move || st.current_totals()).await?;
    // The saved block counts the stored features only (the original's rule); the overview
    // page and `featdict stats` count every feature, those left out of the file as dead.
    let all_features = statistics.over_all_features(summary.num_features);
    Ok(
        Json(json!({"summary": summary, "statistics": statistics, "all_features": all_features}))
            .into_response(),
    )
}

async fn api_feature(
    State(st): State<Arc<AppState>>,
    UrlPath(raw): UrlPath<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&raw)?;
    let (f, summary) =
        blocking(move || st.read(|r| Ok((r.feature(id)?, r.summary().clone())))).await?;
    match f {
        Some(f) => Ok(Json(f).into_response()),
        None => Err(not_stored(id, &summary)),
    }
}

/// The 404 of a feature the served file does not hold, in the words of the CLI
/// ([`crate::commands::feature_not_found`]): an id past the SAE's width, or one not stored.
/// (Whether `--drop-dead` left it out is not looked up: that reads the whole list of
/// omitted ids, seconds for a wide SAE, for each such request.)
pub(crate) fn not_stored(id: u64, summary: &Summary) -> ApiError {
    ApiError::not_found(crate::commands::feature_not_found(
        &"this dictionary",
        id,
        summary.stored_features,
        summary.num_features,
        false,
    ))
}

/// A parsed feature listing request.
pub(crate) struct ListRequest {
    pub order: FeatureOrder,
    pub feature_type: Option<FeatureType>,
    pub limit: usize,
    /// Features skipped (the page's start).
    pub offset: u64,
}

/// Features a listing shows when `limit=` is not given.
pub const DEFAULT_LIST_LIMIT: usize = 100;

/// Reads `order=` (default `activation_count`), `type=`, `limit=` and `offset=` of a listing.
pub(crate) fn parse_list(
    params: &std::collections::HashMap<String, String>,
) -> Result<ListRequest, ApiError> {
    let order = match params.get("order").map(String::as_str) {
        None | Some("") => FeatureOrder::ActivationCount,
        Some(s) => s.parse().map_err(ApiError::bad)?,
    };
    let feature_type = match params.get("type").map(String::as_str) {
        None | Some("") => None,
        Some(s) => FeatureType::parse_filter(s).map_err(ApiError::bad)?,
    };
    Ok(ListRequest {
        order,
        feature_type,
        limit: bounded(
            params,
            "limit",
            DEFAULT_LIST_LIMIT as u64,
            1,
            MAX_LIMIT as u64,
        )? as usize,
        offset: bounded(params, "offset", 0, 0, u32::MAX as u64)?,
    })
}

/// The integer parameter `key` (`default` when absent or empty), which must lie in
/// `min..=max`.
fn bounded(
    params: &std::collections::HashMap<String, String>,
    key: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ApiError> {
    match params.get(key).map(String::as_str) {
        None | Some("") => Ok(default),
        Some(s) => s
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                ApiError::bad(format!("{key} {s:?} must be an integer in {min}..={max}"))
            }),
    }
}

/// One page of a listing: its features' briefs, in order.
pub(crate) struct ListPage {
    pub briefs: Vec<FeatureBrief>,
    /// Whether features follow this page.
    pub more: bool,
    /// Dead features the listing cannot show because the file was built without them
    /// (`--drop-dead`); counted for listings of every type and of dead features.
    pub dead_left_out: usize,
}

/// Runs a listing and fetches the page's briefs.
pub(crate) async fn run_list(st: Arc<AppState>, req: ListRequest) -> Result<ListPage, ApiError> {
    blocking(move || {
        st.read_as(pool::Work::Heavy, |r| {
            // One id past the page tells whether another page follows.
            let mut ids =
                r.list_features(req.order, req.feature_type, req.offset, req.limit + 1)?;
            let more = ids.len() > req.limit;
            ids.truncate(req.limit);
            // Only the ids the build left out as dead: a file can lack features for other
            // reasons (written from part of a dictionary), and those are not called dead.
            let dead_left_out = match req.feature_type {
                None | Some(FeatureType::Dead) => r.omitted_count()?,
                Some(_) => 0,
            };
            Ok(ListPage {
                briefs: r.briefs(&ids)?,
                more,
                dead_left_out,
            })
        })
    })
    .await
}

async fn api_list(
    State(st): State<Arc<AppState>>,
    Params(params): Params,
) -> Result<Response, ApiError> {
    let req = parse_list(&params)?;
    let (order, feature_type, offset, limit) = (req.order, req.feature_type, req.offset, req.limit);
    let page = run_list(st, req).await?;
    let mut out = json!({
        "order": order.as_str(),
        "type": feature_type.map_or("all", |t| t.as_str()),
        "offset": offset,
        "limit": limit,
        "more": page.more,
        "features": page.briefs,
    });
    if page.dead_left_out > 0 {
        out["dead_left_out"] = json!(page.dead_left_out);
    }
    Ok(Json(out).into_response())
}

/// A parsed search request.
pub(crate) struct SearchRequest {
    pub query: Query,
    pub limit: usize,
    /// Hits skipped (the page's start).
    pub offset: usize,
}

/// The largest `offset=` of a search (the hits before it are ranked too).
pub const MAX_OFFSET: usize = 100_000;

/// Reads `token=`/`label=`/`pattern=`/`text=` (exactly one), `by=`, `limit=` and `offset=`.
pub(crate) fn parse_search(
    params: &std::collections::HashMap<String, String>,
) -> Result<SearchRequest, ApiError> {
    let by: Option<TokenRank> = match params.get("by").map(String::as_str) {
        None | Some("") => None,
        Some(s) => Some(s.parse().map_err(ApiError::bad)?),
    };
    let limit = bounded(params, "limit", 20, 1, MAX_LIMIT as u64)? as usize;
    let offset = bounded(params, "offset", 0, 0, MAX_OFFSET as u64)? as usize;
    let given: Vec<(&str, &String)> = ["token", "label", "pattern", "text"]
        .into_iter()
        .filter_map(|k| params.get(k).filter(|v| !v.is_empty()).map(|v| (k, v)))
        .collect();
    let query = match given.as_slice() {
        [(kind, v)] => Query::new(kind, (*v).clone(), by)?,
        _ => {
            return Err(ApiError::bad(
                "give exactly one non-empty parameter of token, label, pattern, text",
            ))
        }
    };
    Ok(SearchRequest {
        query,
        limit,
        offset,
    })
}

/// One page of a search's hits, with their briefs.
pub(crate) struct SearchPage {
    pub hits: Vec<Hit>,
    pub briefs: Vec<FeatureBrief>,
    /// Whether hits follow this page.
    pub more: bool,
    /// Where a token or pattern search looked (`None` for label and text searches).
    pub basis: Option<TokenBasis>,
    /// The ranking a token or pattern search applied.
    pub by: Option<TokenRank>,
}

/// Runs a search and fetches the page's hits and briefs.
pub(crate) async fn run_search(
    st: Arc<AppState>,
    req: SearchRequest,
) -> Result<SearchPage, ApiError> {
    blocking(move || {
        st.read_as(pool::Work::Heavy, |r| {
            // One hit past the page tells whether another page follows.
            let found = r.find(&req.query, req.offset + req.limit + 1)?;
            let mut hits = found.hits;
            let more = hits.len() > req.offset + req.limit;
            hits.truncate(req.offset + req.limit);
            let hits: Vec<Hit> = hits.into_iter().skip(req.offset).collect();
            let briefs = r.briefs(&hits.iter().map(|h| h.id).collect::<Vec<_>>())?;
            Ok(SearchPage {
                hits,
                briefs,
                more,
                basis: found.basis,
                by: found.by,
            })
        })
    })
    .await
}

async fn api_search(
    State(st): State<Arc<AppState>>,
    Params(params): Params,
) -> Result<Response, ApiError> {
    let req = parse_search(&params)?;
    let kind = req.query.kind();
    let offset = req.offset;
    let page = run_search(st, req).await?;
    let rows: Vec<_> = page
        .hits
        .iter()
        .map(|h| {
            json!({
                "id": h.id,
                "score": h.score,
                "matched": h.matched,
                "support": h.support,
                "feature": page.briefs.iter().find(|b| b.id == h.id),
            })
        })
        .collect();
    let mut out = json!({"kind": kind, "offset": offset, "more": page.more, "hits": rows});
    if let (Some(basis), Some(by)) = (page.basis, page.by) {
        out["basis"] = json!(basis.as_str());
        out["by"] = json!(by.as_str());
    }
    Ok(Json(out).into_response())
}

/// Where the served dictionary's token and pattern searches look.
pub(crate) async fn token_basis(st: Arc<AppState>) -> Result<TokenBasis, ApiError> {
    blocking(move || st.read(|r| Ok(r.token_basis()?))).await
}

#[derive(Deserialize)]
struct LabelBody {
    text: String,
}

/// The JSON body of a label request: an object with one string `text`. (The derived struct
/// alone would also take the array `["…"]`, which the API does not document; it refuses a
/// repeated `text`, which a map would take the last of.)
fn label_text(body: &[u8]) -> Result<String, ApiError> {
    let bad = |why: String| ApiError::bad(format!("body must be JSON {{\"text\": \"…\"}}: {why}"));
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    if !value.is_object() {
        return Err(bad("it is not an object".into()));
    }
    let b: LabelBody = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    Ok(b.text)
}

/// What a label request does.
#[derive(Clone, Copy)]
enum LabelAction {
    Add,
    Remove,
}

async fn api_add_label(
    st: State<Arc<AppState>>,
    raw: UrlPath<String>,
    limit: Extension<BodyTimeout>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    label_request(st, raw, limit, headers, req, LabelAction::Add).await
}

async fn api_remove_label(
    st: State<Arc<AppState>>,
    raw: UrlPath<String>,
    limit: Extension<BodyTimeout>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    label_request(st, raw, limit, headers, req, LabelAction::Remove).await
}

async fn label_request(
    State(st): State<Arc<AppState>>,
    UrlPath(raw): UrlPath<String>,
    Extension(BodyTimeout(limit)): Extension<BodyTimeout>,
    headers: HeaderMap,
    req: Request,
    action: LabelAction,
) -> Response {
    // The page's form (posted by a browser without JavaScript) gets its errors as a page;
    // scripts get JSON, a form-encoded post from curl (`-d` without a type) included.
    let from_form = media_type(&headers) == "application/x-www-form-urlencoded"
        && headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("text/html"));
    match edit_label(st, &raw, limit, headers, req, action).await {
        Ok(r) => r,
        Err(e) if from_form => pages::error_page(e),
        Err(e) => e.into_response(),
    }
}

async fn edit_label(
    st: Arc<AppState>,
    raw: &str,
    limit: Duration,
    headers: HeaderMap,
    req: Request,
    action: LabelAction,
) -> Result<Response, ApiError> {
    let id = parse_id(raw)?;
    // A body announced over the limit is refused now, not after waiting for it in vain.
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body of {} bytes; this server takes at most {BODY_LIMIT} bytes (64 KiB)",
                announced.unwrap_or_default()
            ),
        ));
    }
    // Read here rather than by an extractor, so that a client trickling its body cannot
    // keep the connection (one of a capped number) forever; the size limit still applies.
    let body = match tokio::time::timeout(limit, Bytes::from_request(req, &())).await {
        Ok(Ok(body)) => body,
        // A chunked body, whose size was not announced, meets the limit while it is read:
        // the same words as an announced one.
        Ok(Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body of more than {BODY_LIMIT} bytes; this server takes at most {BODY_LIMIT} bytes (64 KiB)"),
            ))
        }
        Ok(Err(rejection)) => return Ok(rejection.into_response()),
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s",
                    limit.as_secs_f64()
                ),
            ))
        }
    };
    let ctype = media_type(&headers);
    let text = if ctype == "application/x-www-form-urlencoded" {
        form_field(&body, "text").map_err(|e| {
            if body.trim_ascii_start().starts_with(b"{") {
                ApiError::bad(format!(
                    "{}; this body looks like JSON, which needs Content-Type: application/json",
                    e.message
                ))
            } else {
                e
            }
        })?
    } else if ctype == "application/json" {
        label_text(&body)?
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send application/json ({\"text\": \"…\"}) or a form (text=…)",
        ));
    };
    let st2 = st.clone();
    let edited = match action {
        LabelAction::Add => blocking(move || st2.add_manual_label(id, &text))
            .await?
            .map(|f| (f, true)),
        LabelAction::Remove => {
            let shown = text.clone();
            let edited = blocking(move || st2.remove_manual_label(id, &text)).await?;
            if let Some((_, false)) = edited {
                return Err(ApiError::not_found(format!(
                    "feature {id} has no manual label {shown:?} (automatic labels are not removed)"
                )));
            }
            edited
        }
    };
    let Some((f, _)) = edited else {
        let summary = blocking(move || st.read(|r| Ok(r.summary().clone()))).await?;
        return Err(not_stored(id, &summary));
    };
    if ctype == "application/x-www-form-urlencoded" {
        return Ok(Redirect::to(&format!("/features/{id}")).into_response());
    }
    Ok(
        Json(json!({"id": f.id, "labels": f.labels, "label_details": f.metadata.label_details}))
            .into_response(),
    )
}

/// The media type of a request's `Content-Type`, lower case, without its parameters
/// (`application/json; charset=utf-8` is `application/json`; `application/jsonx` is not).
fn media_type(headers: &HeaderMap) -> String {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The value of field `name` of an `application/x-www-form-urlencoded` body. Bytes that are
/// not UTF-8 are refused, not turned into U+FFFD and stored so; so is the field given
/// twice, as a repeated query parameter is (taking one would be a guess).
fn form_field(body: &[u8], name: &str) -> Result<String, ApiError> {
    let mut found = None;
    for pair in body.split(|&b| b == b'&') {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[..0]),
        };
        if form_decode(key, "field name")? == name {
            if found.is_some() {
                return Err(ApiError::bad(format!(
                    "form field `{name}` is given more than once; give it once"
                )));
            }
            found = Some(form_decode(value, "`text` field")?);
        }
    }
    found.ok_or_else(|| ApiError::bad(format!("form must have a `{name}` field")))
}

/// Decodes one urlencoded component (`+` is a space, `%XX` a byte).
fn form_decode(raw: &[u8], what: &str) -> Result<String, ApiError> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                raw.get(i + 1).and_then(|&b| hex(b)),
                raw.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out)
        .map_err(|_| ApiError::bad(format!("the form's {what} is not valid UTF-8 text")))
}
