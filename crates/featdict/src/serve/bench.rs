//! Hidden benchmark commands: `featdict gen-synthetic` writes a synthetic `.fdict`;
//! `featdict bench-query` measures open, lookup and search latency through the library and
//! through HTTP (a server started in-process on 127.0.0.1:0), plus an unindexed scan as the
//! baseline measured in the same run.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use feature_dictionary::query::synthetic::{self, Spec};
use feature_dictionary::query::{words, Query, Search, TokenRank};
use feature_dictionary::store::fdict::FdictReader;
use serde_json::json;

use super::html::url;
use super::AppState;

/// Arguments of `featdict gen-synthetic`.
#[derive(Args, Debug)]
pub struct GenArgs {
    /// Output `.fdict`.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of features.
    #[arg(long, default_value_t = 1_000_000)]
    pub features: u64,
    /// Distinct words in the vocabulary.
    #[arg(long, default_value_t = 20_000)]
    pub vocab: usize,
    /// Generator seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Arguments of `featdict bench-query`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Dictionary (.fdict).
    pub dict: PathBuf,
    /// Queries per kind (and lookups = 5 × this).
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    /// Results per search.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Seed for picking ids and queries.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Skip the HTTP measurements.
    #[arg(long)]
    pub no_http: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// `featdict gen-synthetic`.
pub fn generate(a: GenArgs) -> Result<()> {
    let spec = Spec {
        n_features: a.features,
        seed: a.seed,
        vocab_words: a.vocab,
        hostile: true,
    };
    let t = Instant::now();
    synthetic::write_fdict(&spec, &a.out, &mut |done| {
        if done % 100_000 == 0 && done > 0 {
            eprintln!(
                "{done} features written ({:.1}s)",
                t.elapsed().as_secs_f64()
            );
        }
    })?;
    let size = std::fs::metadata(&a.out).map(|m| m.len()).unwrap_or(0);
    println!(
        "wrote {}: {} synthetic features, {:.1} MiB, in {:.1}s",
        a.out.display(),
        a.features,
        size as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i].as_secs_f64() * 1e3
}

fn summary(samples: &mut [Duration]) -> serde_json::Value {
    json!({"n": samples.len(), "p50_ms": percentile(samples, 0.5), "p99_ms": percentile(samples, 0.99)})
}

/// Queries drawn from the dictionary itself: tokens of random features, label fragments,
/// regex prefixes and description words.
fn make_queries(r: &FdictReader, n: usize, rng: &mut Rng) -> Result<Vec<(String, Query)>> {
    let count = r.statistics().total_features as u64;
    let max_id = r.summary().num_features.max(1) as u64;
    let mut out = Vec::new();
    let mut tries = 0;
    while out.len() < 4 * n && tries < 100 * n {
        tries += 1;
        let Some(f) = r.feature(rng.below(max_id))? else {
            continue;
        };
        let Some(tok) = f.metadata.top_tokens.first().map(|t| t.token.clone()) else {
            continue;
        };
        let label = f.labels.first().cloned().unwrap_or_default();
        let frag: String = label
            .split(':')
            .next_back()
            .unwrap_or("")
            .chars()
            .take(4)
            .collect();
        let word = words(&f.description)
            .into_iter()
            .max_by_key(|w| w.len())
            .unwrap_or_default();
        let prefix: String = tok.trim().chars().take(3).collect();
        if frag.chars().count() < 3 || word.is_empty() || prefix.is_empty() {
            continue;
        }
        out.push((
            "token".into(),
            Query::Token {
                token: tok,
                by: Some(TokenRank::Precision),
            },
        ));
        out.push(("label".into(), Query::Label(frag)));
        out.push((
            "pattern".into(),
            Query::Pattern {
                pattern: format!("^ ?{}", regex_escape(&prefix)),
                by: Some(TokenRank::Precision),
            },
        ));
        out.push(("text".into(), Query::Text(word)));
    }
    if out.is_empty() && count > 0 {
        bail!(
            "{}: found no features with tokens and labels to build queries from",
            r.path().display()
        );
    }
    Ok(out)
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$#&-~".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, usize)> {
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let head = String::from_utf8_lossy(&buf[..buf.len().min(16)]).to_string();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, buf.len()))
}

fn query_path(q: &Query, limit: usize) -> String {
    let (k, v) = match q {
        Query::Token { token, .. } => ("token", token.as_str()),
        Query::Label(l) => ("label", l.as_str()),
        Query::Pattern { pattern, .. } => ("pattern", pattern.as_str()),
        Query::Text(t) => ("text", t.as_str()),
    };
    format!("/api/search?{k}={}&limit={limit}", url(v))
}

/// `featdict bench-query`.
pub fn bench(a: BenchArgs) -> Result<()> {
    let mut rng = Rng(a.seed);
    let mut opens = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let r = FdictReader::open(&a.dict)?;
        opens.push(t.elapsed());
        drop(r);
    }
    let r = FdictReader::open(&a.dict)?;
    let max_id = r.summary().num_features.max(1) as u64;
    let ids: Vec<u64> = (0..a.queries * 5).map(|_| rng.below(max_id)).collect();
    let mut lookups = Vec::new();
    for &id in &ids {
        let t = Instant::now();
        let f = r.feature(id)?;
        lookups.push(t.elapsed());
        std::hint::black_box(f);
    }
    let queries = make_queries(&r, a.queries, &mut rng)?;
    let mut per_kind: std::collections::BTreeMap<String, Vec<Duration>> = Default::default();
    let mut hits_total = 0usize;
    for (kind, q) in &queries {
        let t = Instant::now();
        let hits = r.search(q, a.limit)?;
        per_kind.entry(kind.clone()).or_default().push(t.elapsed());
        hits_total += hits.len();
    }
    // Baseline: the same label searches as an unindexed scan of every feature's labels.
    let mut scans = Vec::new();
    for (_, q) in queries.iter().filter(|(k, _)| k == "label").take(5) {
        let Query::Label(l) = q else { continue };
        let t = Instant::now();
        let n: i64 = r
            .connection()
            .query_row(
                "SELECT count(*) FROM features WHERE instr(lower(labels), lower(?1)) > 0",
                [l],
                |row| row.get(0),
            )
            .context("baseline scan")?;
        scans.push(t.elapsed());
        std::hint::black_box(n);
    }
    let mut report = json!({
        "dict": a.dict,
        "features": r.statistics().total_features,
        "open": summary(&mut opens),
        "lookup": summary(&mut lookups),
        "search": per_kind.iter_mut().map(|(k, v)| (k.clone(), summary(v))).collect::<serde_json::Map<_, _>>(),
        "mean_hits": hits_total as f64 / queries.len().max(1) as f64,
        "baseline_label_scan": summary(&mut scans),
    });

    if !a.no_http {
        let state = Arc::new(AppState::open(&a.dict)?);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        rt.spawn(super::serve(listener, state, Default::default()));
        let mut http_lookup = Vec::new();
        for &id in ids.iter().take(a.queries * 2) {
            let t = Instant::now();
            let (status, _) = http_get(addr, &format!("/api/features/{id}"))?;
            http_lookup.push(t.elapsed());
            if status != 200 && status != 404 {
                bail!("GET /api/features/{id} answered {status}");
            }
        }
        let mut http_kind: std::collections::BTreeMap<String, Vec<Duration>> = Default::default();
        for (kind, q) in &queries {
            let path = query_path(q, a.limit);
            let t = Instant::now();
            let (status, _) = http_get(addr, &path)?;
            http_kind.entry(kind.clone()).or_default().push(t.elapsed());
            if status != 200 {
                bail!("GET {path} answered {status}");
            }
        }
        let mut page = Vec::new();
        for &id in ids.iter().take(a.queries / 2) {
            let t = Instant::now();
            http_get(addr, &format!("/features/{id}"))?;
            page.push(t.elapsed());
        }
        report["http"] = json!({
            "lookup": summary(&mut http_lookup),
            "feature_page": summary(&mut page),
            "search": http_kind.iter_mut().map(|(k, v)| (k.clone(), summary(v))).collect::<serde_json::Map<_, _>>(),
        });
        rt.shutdown_background();
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let row = |name: &str, v: &serde_json::Value| {
        println!(
            "{name:<28} p50 {:>9.3} ms   p99 {:>9.3} ms   (n={})",
            v["p50_ms"].as_f64().unwrap_or(f64::NAN),
            v["p99_ms"].as_f64().unwrap_or(f64::NAN),
            v["n"]
        )
    };
    println!("{} ({} features)", a.dict.display(), report["features"]);
    row("open", &report["open"]);
    row("lookup (library)", &report["lookup"]);
    for (k, v) in report["search"].as_object().cloned().unwrap_or_default() {
        row(&format!("search {k} (library)"), &v);
    }
    row("baseline: label scan", &report["baseline_label_scan"]);
    if let Some(h) = report.get("http") {
        row("lookup (HTTP)", &h["lookup"]);
        row("feature page (HTTP)", &h["feature_page"]);
        for (k, v) in h["search"].as_object().cloned().unwrap_or_default() {
            row(&format!("search {k} (HTTP)"), &v);
        }
    }
    Ok(())
}
