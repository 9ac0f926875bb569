//! The whole pipeline for one input: source → accumulator → finalize.

use crate::accumulate::{Accumulator, Settings};
use crate::dictionary::FeatureDictionary;
use crate::dictionary::Statistics;
use crate::error::{Error, Result};
use crate::finalize::{finalize, Finalizer};
use crate::ingest::{ActivationBatch, ActivationSource};
use crate::model::DictionaryConfig;
use crate::store::{self, fdict::WRITE_WAVE};

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

/// Values per dense batch when the file is f32 and read in place (no copy): 128 Mi values.
/// Long batches matter: each batch replays every feature's state once (state that no longer
/// fits in cache at 16k features), so a feature should fire many times per batch. The
/// batch's transpose holds 8 bytes per nonzero value (≈ 50 MiB at 5 % density).
pub const VALUES_PER_BATCH: usize = 128 << 20;

/// Values per dense batch when values are converted into a buffer (f16, bf16, f64, an
/// unaligned f32 file, or a Fortran-order file, whose rows are gathered from its columns):
/// 32 Mi values, a 128 MiB buffer.
pub const CONVERTED_VALUES_PER_BATCH: usize = 32 << 20;

/// Streams every batch of `source` into `acc`; `progress` gets the rows done so far.
pub fn accumulate_source(
    source: &mut dyn ActivationSource,
    acc: &mut Accumulator,
    options: &BuildOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    accumulate_batches(source, acc, options, &mut rows_done(progress))
}

/// `progress` (told the rows done so far) as a callback told each batch.
fn rows_done<'a>(progress: &'a mut dyn FnMut(u64)) -> impl FnMut(&ActivationBatch<'_>) + 'a {
    let mut done = 0u64;
    move |batch| {
        done += batch.core.len() as u64;
        progress(done);
    }
}

/// Streams every batch of `source` into `acc`, showing each batch to `after_batch` once it
/// is accumulated.
pub fn accumulate_batches(
    source: &mut dyn ActivationSource,
    acc: &mut Accumulator,
    options: &BuildOptions,
    after_batch: &mut dyn FnMut(&ActivationBatch<'_>),
) -> Result<()> {
    let path = source.describe().to_path_buf();
    while let Some(batch) = source.next_batch()? {
        if options.allow_nonfinite {
            acc.update(&batch)?;
        } else if let Some(found) = acc.update_if_finite(&batch)? {
            return Err(found.error(&path));
        }
        after_batch(&batch);
    }
    Ok(())
}

/// Wall-clock seconds spent in each stage of a build.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct BuildTimings {
    /// The streaming pass (reading included).
    pub accumulate_seconds: f64,
    /// Turning state into features.
    pub finalize_seconds: f64,
}

/// Peak resident memory of this process so far (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Builds a dictionary from one source.
pub fn build(
    source: &mut dyn ActivationSource,
    config: DictionaryConfig,
    options: &BuildOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<FeatureDictionary> {
    build_timed(source, config, options, progress).map(|(d, _)| d)
}

/// [`build`], also reporting how long each stage took.
pub fn build_timed(
    source: &mut dyn ActivationSource,
    config: DictionaryConfig,
    options: &BuildOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<(FeatureDictionary, BuildTimings)> {
    let t0 = std::time::Instant::now();
    let acc = accumulate(source, &config, options, progress)?;
    let t1 = std::time::Instant::now();
    let dict = finalize(&acc, source.vocab(), config);
    let timings = BuildTimings {
        accumulate_seconds: (t1 - t0).as_secs_f64(),
        finalize_seconds: t1.elapsed().as_secs_f64(),
    };
    Ok((dict, timings))
}

/// The streaming pass of a build: a new accumulator for `source`'s features, fed every
/// batch of it.
pub fn accumulate(
    source: &mut dyn ActivationSource,
    config: &DictionaryConfig,
    options: &BuildOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<Accumulator> {
    accumulate_observed(source, config, options, &mut rows_done(progress))
}

/// [`accumulate`], showing each batch to `after_batch` once it is accumulated.
pub fn accumulate_observed(
    source: &mut dyn ActivationSource,
    config: &DictionaryConfig,
    options: &BuildOptions,
    after_batch: &mut dyn FnMut(&ActivationBatch<'_>),
) -> Result<Accumulator> {
    let settings = Settings::from_config(&config.extraction)?;
    // The feature count comes from the input (a shape, shard names, an SAE's config): an
    // absurd one is a problem of what was read, so name the input.
    let mut acc =
        Accumulator::try_new(source.n_features(), settings, options.threads).map_err(|e| {
            Error::format(
                source.describe(),
                format!(
                    "{} features per token (from this input's shape, shard names or SAE); {e}",
                    source.n_features()
                ),
            )
        })?;
    accumulate_batches(source, &mut acc, options, after_batch)?;
    Ok(acc)
}

/// Finalizes `acc` straight into a new dictionary file at `path` (`.fdict` or `.json`, by
/// extension, as [`crate::store::save`]), a wave of features at a time, so the finalized
/// dictionary is never in memory whole: with millions of features (most of which never
/// fire) holding it took gigabytes. The file is the one [`finalize`] then
/// [`crate::store::save`] make, with features that never fired left out (and listed as
/// omitted) when `drop_dead`. Returns the dictionary without its features (config and
/// dictionary-wide fields) and the file's statistics.
pub fn finalize_into_file(
    acc: &Accumulator,
    vocab: &crate::ingest::Vocab,
    config: DictionaryConfig,
    path: &std::path::Path,
    drop_dead: bool,
) -> Result<(FeatureDictionary, Statistics)> {
    use rayon::prelude::*;
    let extension = path.extension().and_then(|e| e.to_str());
    if !matches!(extension, Some("fdict" | "json")) {
        return Err(store::unsupported_extension(path, extension));
    }
    let fin = Finalizer::new(acc, vocab, config);
    let n = fin.n_features();
    let mut shell = fin.shell();
    if drop_dead {
        shell.feature_set.metadata.omitted_features = (0..n)
            .filter(|&id| fin.activation_count(id) == 0)
            .map(|id| id as u64)
            .collect();
    }
    let wave = WRITE_WAVE;
    let n_waves = n.div_ceil(wave);
    let make = |i: usize| -> Vec<_> {
        (i * wave..n.min((i + 1) * wave))
            .into_par_iter()
            .filter(|&id| !drop_dead || fin.activation_count(id) > 0)
            .map(|id| fin.feature(id))
            .collect()
    };
    let never = std::sync::atomic::AtomicBool::new(false);
    let stats = if extension == Some("fdict") {
        store::fdict::write_waves(&shell, path, n_waves, make, &never)?
    } else {
        store::seed_json::write_waves(&shell, path, n_waves, |i| Ok(make(i)), &never)?
    };
    Ok((shell, stats))
}
