//! `featdict demo`: build, label and summarize the bundled real demo dataset in one command.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use feature_dictionary::build::{self, BuildOptions};
use feature_dictionary::dictionary::FeatureDictionary;
use feature_dictionary::ingest;
use feature_dictionary::label::{self, LabelOptions, Rank};
use feature_dictionary::model::{DictionaryConfig, Feature, LabelingStrategy};
use feature_dictionary::store;
use feature_dictionary::store::fdict::FdictReader;
use serde_json::json;

use crate::print;

/// Arguments of `featdict demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// The demo dataset (a folder with `latents/`, `sae/`, `tokenizer.json`). Default:
    /// `data/demo` in the current directory or in the repository holding this binary.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where to write the dictionary.
    #[arg(long, default_value = "demo-dictionary.json")]
    out: PathBuf,
    /// Features shown.
    #[arg(short = 'n', long, default_value_t = 10)]
    count: usize,
    /// Worker threads (default: all cores).
    #[arg(long, value_parser = crate::commands::one_to::<{ crate::commands::MAX_THREADS }>)]
    threads: Option<usize>,
    /// Machine-readable summary (pretty JSON; with --serve, JSON Lines: the summary on one
    /// line, then `{"url", "dict"}` once the server listens).
    #[arg(long)]
    json: bool,
    /// Then browse the dictionary in the web UI (written as a `.fdict` next to --out).
    #[arg(long)]
    serve: bool,
    /// Address for --serve.
    #[arg(long, default_value = "127.0.0.1:8080", requires = "serve")]
    addr: std::net::SocketAddr,
}

/// Finds `data/demo` next to the working directory or the binary (target/*/featdict).
fn demo_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let mut candidates = vec![PathBuf::from("data/demo")];
    if let Ok(exe) = std::env::current_exe() {
        for up in exe.ancestors().skip(1).take(4) {
            candidates.push(up.join("data/demo"));
        }
    }
    for c in &candidates {
        if c.join("latents").is_dir() {
            return Ok(c.clone());
        }
    }
    bail!(
        "no demo dataset found (looked for data/demo/latents in {}); run from the repository root or pass --data DIR",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The single hookpoint folder of `latents/`.
fn latents_dir(data: &Path) -> Result<PathBuf> {
    let latents = data.join("latents");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&latents)
        .with_context(|| format!("reading {}", latents.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    match dirs.len() {
        1 => Ok(dirs.remove(0)),
        0 => bail!(
            "{}: expected one hookpoint folder of delphi shards, found none",
            latents.display()
        ),
        n => bail!(
            "{}: expected one hookpoint folder, found {n}",
            latents.display()
        ),
    }
}

/// Interesting = a clean label: the best label's F1 (precision and recall over all tokens),
/// among features that fire often enough for that to mean something. Labels about words
/// rank before punctuation and whitespace ones, which small SAEs learn in numbers.
fn interest(f: &Feature) -> f64 {
    if f.activation_count < 20 {
        return 0.0;
    }
    f.metadata.label_details.first().map_or(0.0, |l| {
        let about = l.text.split_once(':').map_or(l.text.as_str(), |(_, t)| t);
        let wordy = !l.text.starts_with("pattern:")
            && about.chars().filter(|c| c.is_alphabetic()).count() >= 2;
        l.confidence * if wordy { 1.0 } else { 0.5 }
    })
}

/// Refuses an output inside the demo's data directory: every file there is an input (the
/// latents, the tokenizer, the SAE), and a dictionary written over one would break the
/// next run.
fn refuse_output_inside(out: &Path, data: &Path) -> Result<()> {
    let target = store::output_target(out)?;
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if let (Ok(dir), Ok(data)) = (dir.canonicalize(), data.canonicalize()) {
        if dir.starts_with(&data) {
            bail!(
                "{}: the output would be written inside the demo data directory {}, whose files this command reads; give an --out outside it",
                out.display(),
                data.display()
            );
        }
    }
    Ok(())
}

/// Runs the demo.
pub fn cmd_demo(a: DemoArgs) -> Result<()> {
    store::check_output(&a.out)?;
    let started = std::time::Instant::now();
    let data = demo_dir(a.data.as_deref())?;
    refuse_output_inside(&a.out, &data)?;
    if a.serve {
        refuse_output_inside(&a.out.with_extension("fdict"), &data)?;
    }
    let latents = latents_dir(&data)?;
    let tokenizer = data.join("tokenizer.json");
    let sae_cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("sae/cfg.json"))
            .with_context(|| format!("reading {}", data.join("sae/cfg.json").display()))?,
    )
    .with_context(|| format!("parsing {}", data.join("sae/cfg.json").display()))?;
    let meta = &sae_cfg["metadata"];
    let hook = meta["hook_name"].as_str().unwrap_or("").to_string();
    let layer = hook
        .split('.')
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut config = DictionaryConfig {
        model_name: meta["model_name"].as_str().unwrap_or("").to_string(),
        sae_name: format!(
            "{}-topk{}-{}",
            hook,
            sae_cfg["k"].as_u64().unwrap_or(0),
            sae_cfg["d_sae"].as_u64().unwrap_or(0)
        ),
        layer,
        feature_dim: sae_cfg["d_in"].as_u64().unwrap_or(0) as usize,
        ..Default::default()
    };
    config.extraction.ngram_capacity = 4096;
    let threads = crate::commands::worker_threads(a.threads);
    let spec = ingest::open::InputSpec {
        acts: Some(&latents),
        tokenizer: Some(&tokenizer),
        context_window: config.extraction.context_window,
        threads,
        ..Default::default()
    };
    let mut source = ingest::open::open_source(&spec)?;
    let options = BuildOptions {
        threads,
        allow_nonfinite: false,
    };
    let (mut dict, timings) = build::build_timed(source.as_mut(), config, &options, &mut |_| {})?;
    let label_options = LabelOptions {
        min_occurrences: 5,
        rank: Rank::F1,
        config: feature_dictionary::model::LabelingConfig {
            strategies: vec![
                LabelingStrategy::TokenFrequency,
                LabelingStrategy::NgramAnalysis,
                LabelingStrategy::PatternMatching,
            ],
            ..Default::default()
        },
    };
    label::label_dictionary(&mut dict, &label_options, None)?;
    // Each feature's nearest decoder directions, for the pages' "similar" links, as
    // `build --sae` stores them.
    crate::commands::store_similar(&mut dict, &data.join("sae"), threads);
    // `--serve` labels go into the sibling .fdict, which every run rebuilds: keep them.
    let fdict = a.out.with_extension("fdict");
    let kept = if fdict.is_file() {
        match FdictReader::open(&fdict).and_then(|r| r.manual_labels()) {
            Ok(earlier) => feature_dictionary::label::manual::carry_over(&mut dict, &earlier),
            // --serve would overwrite the file and whatever labels it holds.
            Err(e) if a.serve => bail!(
                "cannot read the manual labels of the earlier {} ({e}); move it away to start afresh",
                fdict.display()
            ),
            Err(e) => {
                eprintln!("warning: manual labels of {} not carried over: {e}", fdict.display());
                0
            }
        }
    } else {
        0
    };
    if kept > 0 {
        eprintln!("kept {kept} manual label(s) from {}", fdict.display());
    }
    store::save(&dict, &a.out)?;
    let took = started.elapsed().as_secs_f64();
    summarize(&dict, &data, &a, took, timings.accumulate_seconds)?;
    if a.serve {
        store::save(&dict, &fdict)?;
        crate::serve::run(crate::serve::ServeArgs::new(fdict, a.addr, a.json))?;
    }
    Ok(())
}

fn summarize(
    dict: &FeatureDictionary,
    data: &Path,
    a: &DemoArgs,
    took: f64,
    pass: f64,
) -> Result<()> {
    let (out, n, as_json, one_line) = (&a.out, a.count, a.json, a.serve);
    let st = dict.statistics();
    let mut ranked: Vec<&Feature> = dict.features().filter(|f| interest(f) > 0.0).collect();
    ranked.sort_by(|a, b| interest(b).total_cmp(&interest(a)).then(a.id.cmp(&b.id)));
    // One feature per label text, so the summary shows n different things.
    let mut seen = std::collections::HashSet::new();
    ranked.retain(|f| seen.insert(f.metadata.label_details[0].text.clone()));
    ranked.truncate(n);
    if as_json {
        let rows: Vec<_> = ranked
            .iter()
            .map(|f| {
                json!({
                    "id": f.id,
                    "label": f.metadata.label_details.first(),
                    "activation_count": f.activation_count,
                    "max_activation": f.max_activation,
                    "top_examples": f.top_activations.iter().take(3).map(print::context_line).collect::<Vec<_>>(),
                })
            })
            .collect();
        let summary = json!({
            "data": data,
            "output": out,
            "seconds": took,
            "statistics": st,
            "interesting_features": rows,
        });
        // The server prints its address as a second document: one line each keeps stdout
        // parseable line by line.
        if one_line {
            println!("{summary}");
        } else {
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
        return Ok(());
    }
    println!(
        "{} · {} · layer {}: {} features over {} tokens ({} active, {} dead, {} labeled)",
        dict.config.model_name,
        dict.config.sae_name,
        dict.config.layer,
        dict.num_features(),
        st.total_tokens_processed,
        st.active_features,
        st.dead_features,
        st.labeled_features
    );
    println!(
        "built and labeled in {took:.1}s (streaming pass {pass:.2}s); wrote {}",
        out.display()
    );
    let types: Vec<String> = st
        .type_distribution
        .iter()
        .map(|(t, c)| format!("{t} {c}"))
        .collect();
    println!("types: {}", types.join(", "));
    println!();
    println!(
        "{n} most clearly labeled features (best label's F1 over all tokens, manual labels and word labels first, one per label; ≥ 20 firings):"
    );
    for f in ranked {
        let l = &f.metadata.label_details[0];
        println!(
            "\n#{:<5} {:<28} {}  fires {} (max {:.2})",
            f.id,
            print::visible(&l.text),
            print::label_scores(l),
            print::times(f.activation_count),
            f.max_activation
        );
        for ex in f.top_activations.iter().take(3) {
            println!("   {:>6.2}  {}", ex.activation, print::context_line(ex));
        }
    }
    println!(
        "\nexplore: featdict show {} ID · featdict search {} --label TEXT · featdict top {} --by max_activation",
        out.display(),
        out.display(),
        out.display()
    );
    // Every command reads a JSON whole (seconds for the demo's); a .fdict answers at once.
    if out.extension().is_some_and(|e| e == "json") {
        println!(
            "for instant answers: featdict import {} --out {} (then use that file)",
            out.display(),
            out.with_extension("fdict").display()
        );
    }
    Ok(())
}
