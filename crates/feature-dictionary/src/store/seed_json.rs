//! The original library's saved JSON: `{"config", "feature_set", "statistics"}`.
//!
//! Our extra measurements ride in each feature's `metadata` and in the feature set's
//! `metadata`, which the original loads as opaque dicts, so its `FeatureDictionary.load`
//! reads our files and our reader gets every field back.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::dictionary::{FeatureDictionary, Statistics};
use crate::error::{Error, Result};
use crate::model::{DictionaryConfig, FeatureSet};

#[derive(Serialize)]
struct SavedRef<'a> {
    config: &'a DictionaryConfig,
    feature_set: &'a FeatureSet,
    statistics: Statistics,
}

#[derive(Deserialize)]
struct Saved {
    #[serde(default)]
    config: Option<DictionaryConfig>,
    feature_set: FeatureSet,
}

/// Writes `dict` as compact JSON (the original indents; compact is half the size and loads
/// the same).
pub fn write(dict: &FeatureDictionary, path: &Path) -> Result<()> {
    let mut config = dict.config.clone();
    config.num_features = dict.num_features();
    let saved = SavedRef {
        config: &config,
        feature_set: &dict.feature_set,
        statistics: dict.statistics(),
    };
    super::write_atomically(path, |w| write_saved(w, &saved))
}

/// Features serialized per round and thread by [`write_saved`].
const FEATURES_PER_CHUNK: usize = 256;

/// `serde_json::to_writer(w, saved)`, byte for byte, with the features (nearly all of the
/// bytes: examples with their contexts) serialized on all cores. The envelope is serialized
/// with an empty feature map and the features are spliced into it; if the envelope ever
/// does not start as expected, this falls back to the one-thread serializer.
fn write_saved(w: &mut impl std::io::Write, saved: &SavedRef<'_>) -> std::io::Result<()> {
    let fs = saved.feature_set;
    let envelope_set = FeatureSet {
        features: Default::default(),
        metadata: fs.metadata.clone(),
        model_name: fs.model_name.clone(),
        sae_name: fs.sae_name.clone(),
        ..*fs
    };
    let envelope = SavedRef {
        config: saved.config,
        feature_set: &envelope_set,
        statistics: saved.statistics.clone(),
    };
    let bytes = serde_json::to_vec(&envelope).map_err(std::io::Error::other)?;
    let config = serde_json::to_vec(saved.config).map_err(std::io::Error::other)?;
    let head = format!(
        "{{\"config\":{},\"feature_set\":{{\"layer\":{},\"features\":{{",
        String::from_utf8_lossy(&config),
        fs.layer
    );
    if !bytes.starts_with(head.as_bytes()) || bytes.get(head.len()) != Some(&b'}') {
        return serde_json::to_writer(w, saved).map_err(std::io::Error::other);
    }
    w.write_all(head.as_bytes())?;
    let features: Vec<(&u64, &crate::model::Feature)> = fs.features.iter().collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut first = true;
    // One buffer per thread, reused every round (fresh multi-MB buffers would each be
    // page-faulted in and unmapped again).
    let mut buffers: Vec<Vec<u8>> = vec![Vec::new(); threads];
    for round in features.chunks(FEATURES_PER_CHUNK * threads) {
        let results: Vec<std::io::Result<()>> = std::thread::scope(|scope| {
            let handles: Vec<_> = round
                .chunks(FEATURES_PER_CHUNK)
                .zip(buffers.iter_mut())
                .map(|(chunk, out)| {
                    scope.spawn(move || {
                        out.clear();
                        for (id, feature) in chunk {
                            out.push(b'"');
                            out.extend_from_slice(id.to_string().as_bytes());
                            out.extend_from_slice(b"\":");
                            serde_json::to_writer(&mut *out, feature)
                                .map_err(std::io::Error::other)?;
                            out.push(b',');
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("serializer thread panicked"))
                .collect()
        });
        for (result, part) in results.into_iter().zip(&buffers) {
            result?;
            if part.is_empty() {
                continue;
            }
            if !first {
                w.write_all(b",")?;
            }
            first = false;
            // Each part ends with a separator; the next part (or the map's end) decides.
            w.write_all(&part[..part.len() - 1])?;
        }
    }
    w.write_all(&bytes[head.len()..])
}

/// Serializes `dict` to a JSON string (what [`write`] puts in the file).
pub fn to_string(dict: &FeatureDictionary) -> Result<String> {
    let saved = SavedRef {
        config: &dict.config,
        feature_set: &dict.feature_set,
        statistics: dict.statistics(),
    };
    serde_json::to_string_pretty(&saved).map_err(|e| Error::Invalid(e.to_string()))
}

/// Reads a dictionary written by us or by the original library.
pub fn read(path: &Path) -> Result<FeatureDictionary> {
    let map = crate::ingest::map_file(path)?;
    let saved: Saved = serde_json::from_slice(&map).map_err(|e| {
        Error::format(
            path,
            format!("not a feature dictionary JSON (expected {{\"config\", \"feature_set\", \"statistics\"}}): {e}"),
        )
    })?;
    let mut config = saved.config.unwrap_or_default();
    if config.model_name.is_empty() {
        config.model_name = saved.feature_set.model_name.clone();
    }
    if config.sae_name.is_empty() {
        config.sae_name = saved.feature_set.sae_name.clone();
    }
    let mut dict = FeatureDictionary::new(config, saved.feature_set);
    dict.config.num_features = dict.num_features();
    Ok(dict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::synthetic::{dictionary, Spec};

    /// The parallel writer must produce exactly what serde's one-thread writer does, across
    /// several rounds of chunks, with hostile strings (quotes, backslashes, controls).
    #[test]
    fn parallel_writer_is_byte_identical_to_serde() {
        for n_features in [0, 1, 3, 2 * FEATURES_PER_CHUNK as u64 * 4 + 17] {
            let dict = dictionary(&Spec {
                n_features,
                hostile: true,
                ..Spec::default()
            });
            let saved = SavedRef {
                config: &dict.config,
                feature_set: &dict.feature_set,
                statistics: dict.statistics(),
            };
            let mut ours = Vec::new();
            write_saved(&mut ours, &saved).unwrap();
            let reference = serde_json::to_vec(&saved).unwrap();
            assert_eq!(ours.len(), reference.len(), "{n_features} features");
            assert!(ours == reference, "{n_features} features: bytes differ");
        }
    }
}
