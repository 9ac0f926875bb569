//! Times the accumulator on an activation array already in memory (as the Python bindings
//! feed it): one batch of the whole array, `REPEATS` passes through the same accumulator
//! (the first from fresh state, "cold"; the others "warm").
//!
//! `cargo run --release --example pass_memory -- ACTS.npy TOKENS.json [THREADS] [REPEATS]`

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
    for pass in 0..repeats {
        let batch = ActivationBatch {
            n_features,
            tokens: tokens.ids()[..rows].to_vec(),
            // Each pass is new sequences, as a second process_batch call is.
            sequences: sequences
                .iter()
                .map(|s| s + (pass * n_sequences) as u64)
                .collect(),
            positions: positions.clone(),
            core: 0..rows,
            values: BatchValues::Dense(&values),
        };
        let t = Instant::now();
        acc.update(&batch)?;
        let s = t.elapsed().as_secs_f64();
        println!(
            "pass {pass}: {:.1} ms  {:.0} tok/s",
            s * 1e3,
            rows as f64 / s
        );
    }
    Ok(())
}
