//! Times the streaming pass alone (no finalize, no output), for profiling the accumulator.
//!
//! `cargo run --release --example pass -- ACTS.npy TOKENS.json [THREADS] [REPEATS]`
//!
//! Environment knobs, to weigh one statistic's share: `SPG=N` samples per quantile group
//! (0 turns the example sample off), `TOPK=N` top examples, `TSC=N` token sketch capacity, `NOPOS=1`
//! no position statistics.

use std::path::Path;
use std::time::Instant;

use feature_dictionary::accumulate::{Accumulator, Settings};
use feature_dictionary::build::{accumulate_source, BuildOptions};
use feature_dictionary::ingest::open::{open_source, InputSpec};
use feature_dictionary::model::ExtractionConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: pass ACTS.npy TOKENS.json [THREADS] [REPEATS]".into());
    }
    let threads: usize = args.get(3).map_or(Ok(2), |t| t.parse())?;
    let repeats: usize = args.get(4).map_or(Ok(3), |t| t.parse())?;
    let mut config = ExtractionConfig::default();
    if let Ok(v) = std::env::var("SPG") {
        config.samples_per_group = v.parse()?;
    }
    if let Ok(v) = std::env::var("TSC") {
        config.token_sketch_capacity = v.parse()?;
    }
    if let Ok(v) = std::env::var("TOPK") {
        config.max_examples_per_feature = v.parse()?;
    }
    if std::env::var("NOPOS").is_ok() {
        config.collect_positions = false;
    }
    for _ in 0..repeats {
        let spec = InputSpec {
            acts: Some(Path::new(&args[1])),
            tensor: None,
            tokens_json: Some(Path::new(&args[2])),
            token_ids: None,
            tokenizer: None,
            sae: None,
            context_window: config.context_window,
            threads,
            batch_values: 0,
            token_spelling: Default::default(),
            first_sequence: 0,
            n_latents: None,
        };
        let mut source = open_source(&spec)?;
        let settings = Settings::from_config(&config)?;
        let t = Instant::now();
        let mut acc = Accumulator::new(source.n_features(), settings, threads);
        let options = BuildOptions {
            threads,
            allow_nonfinite: false,
        };
        accumulate_source(source.as_mut(), &mut acc, &options, &mut |_| {})?;
        let s = t.elapsed().as_secs_f64();
        println!("pass {:.3} s  {:.0} tok/s", s, acc.total_tokens as f64 / s);
    }
    Ok(())
}
