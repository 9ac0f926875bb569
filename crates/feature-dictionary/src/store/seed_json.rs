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
    super::write_atomically(path, |w| {
        serde_json::to_writer(&mut *w, &saved).map_err(std::io::Error::other)
    })
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
