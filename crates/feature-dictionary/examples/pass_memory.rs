//! Times the accumulator on an activation array already in memory (as the Python bindings
//! feed it): one batch of the whole array, `REPEATS` passes through the same accumulator
//! (the first from fresh state, "cold"; the others "warm").
//!
//! `cargo run --release --example pass_memory -- ACTS.npy TOKENS.json [THREADS] [REPEATS]`
//!
//! Each line also shows how much resident memory the pass first touched. Two environment
//! knobs, for timing only:
//! * `CHUNK=ROWS` feeds each pass as batches of ROWS rows (a multiple of the sequence
//!   length; no margins, so contexts at the cuts are clipped) — how the per-feature cost of a
//!   batch weighs against its rows;
//! * `FRESH=1` starts every pass from a fresh accumulator — a cold pass in a process whose
//!   allocator has already served one (what a second `FeatureDictionary` costs).

use std::path::Path;
use std::time::Instant;

use feature_dictionary::accumulate::{Accumulator, Settings};
use feature_dictionary::ingest::{npy, ActivationBatch, BatchValues, TokenSequences};
use feature_dictionary::model::ExtractionConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: pass_memory ACTS.npy TOKENS.json [THREADS] [REPEATS]".into());
    }
    let threads: usize = args.get(3).map_or(Ok(2), |t| t.parse())?;
    let repeats: usize = args.get(4).map_or(Ok(4), |t| t.parse())?;
    let matrix = npy::open(Path::new(&args[1]))?;
    let n_features = matrix.n_features();
    let mut buffer = Vec::new();
    let values: Vec<f32> = matrix.rows_f32(0..matrix.n_rows(), &mut buffer).to_vec();
    let tokens = TokenSequences::from_json_file(Path::new(&args[2]))?;
    let mut sequences = Vec::new();
    let mut positions = Vec::new();
    for (s, len) in tokens.lengths().enumerate() {
        sequences.extend(std::iter::repeat_n(s as u64, len as usize));
        positions.extend(0..len as u32);
    }
    let rows = values.len() / n_features;
    let n_sequences = tokens.n_sequences();
    let settings = Settings::from_config(&ExtractionConfig::default())?;
    let mut acc = Accumulator::new(n_features, settings, threads);
    let chunk: usize = std::env::var("CHUNK")
        .ok()
        .map(|c| c.parse())
        .transpose()?
        .unwrap_or(rows)
        .max(1);
    for pass in 0..repeats {
        if std::env::var_os("FRESH").is_some() {
            acc = Accumulator::new(n_features, acc.settings().clone(), threads);
        }
        let rss_before = resident_mib();
        let t = Instant::now();
        for a in (0..rows).step_by(chunk) {
            let b = (a + chunk).min(rows);
            let batch = ActivationBatch {
                n_features,
                tokens: tokens.ids(a as u64..b as u64)?,
                sequences: sequences[a..b]
                    .iter()
                    .map(|s| s + (pass * n_sequences) as u64)
                    .collect(),
                positions: positions[a..b].to_vec(),
                core: 0..b - a,
                values: BatchValues::Dense(&values[a * n_features..b * n_features]),
                token_keys: None,
            };
            acc.update(&batch)?;
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "pass {pass}: {:.1} ms  {:.0} tok/s  resident {:+.0} MiB",
            s * 1e3,
            rows as f64 / s,
            resident_mib() - rss_before
        );
    }
    Ok(())
}

/// Resident memory of this process (Linux; 0 elsewhere), to show what a pass first touches.
fn resident_mib() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |pages| pages * 4096.0 / (1 << 20) as f64)
}
