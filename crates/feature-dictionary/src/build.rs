//! The whole pipeline for one input: source → accumulator → finalize.

use crate::accumulate::{Accumulator, Settings};
use crate::dictionary::FeatureDictionary;
use crate::error::{Error, Result};
use crate::finalize::finalize;
use crate::ingest::ActivationSource;
use crate::model::DictionaryConfig;

/// How a build runs (none of this changes the result).
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Worker threads (features are split among them).
    pub threads: usize,
    /// Skip NaN/Inf values (they are counted and reported) instead of failing.
    pub allow_nonfinite: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            threads: default_threads(),
            allow_nonfinite: false,
        }
    }
}

/// Available cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Floats per dense batch: 8 Mi values (32 MiB as f32) keeps memory flat and batches long
/// enough that per-batch thread start-up is noise.
pub const VALUES_PER_BATCH: usize = 8 << 20;

/// Streams every batch of `source` into `acc`; `progress` gets the rows done so far.
pub fn accumulate_source(
    source: &mut dyn ActivationSource,
    acc: &mut Accumulator,
    options: &BuildOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let path = source.describe().to_path_buf();
    let mut done = 0u64;
    while let Some(batch) = source.next_batch()? {
        acc.update(&batch)?;
        done += batch.core.len() as u64;
        progress(done);
        if !options.allow_nonfinite {
            let (count, first) = acc.nonfinite();
            if let (true, Some((sequence, position, feature))) = (count > 0, first) {
                return Err(Error::NonFinite {
                    path,
                    count,
                    sequence,
                    position,
                    feature,
                });
            }
        }
    }
    Ok(())
}

/// Builds a dictionary from one source.
pub fn build(
    source: &mut dyn ActivationSource,
    config: DictionaryConfig,
    options: &BuildOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<FeatureDictionary> {
    let settings = Settings::from_config(&config.extraction)?;
    let mut acc = Accumulator::new(source.n_features(), settings, options.threads);
    accumulate_source(source, &mut acc, options, progress)?;
    Ok(finalize(&acc, source.vocab(), config))
}
