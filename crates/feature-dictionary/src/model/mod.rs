//! The data model: what a finished dictionary holds, with serde shapes compatible with the
//! original Python library's saved JSON (`Feature.to_dict`, `FeatureSet.to_dict`, …).
//!
//! Everything the original did not have (std, min, histogram, quantile samples, position and
//! token statistics, scored labels) lives in typed fields that serialize into the feature's
//! `metadata` object, so the original `FeatureDictionary.load` still reads our files while our
//! reader gets every field back losslessly.

mod config;
mod feature;
mod label;

pub use config::{
    DictionaryConfig, ExtractionConfig, LabelingConfig, DEFAULT_CORRELATION_CAPACITY,
};
pub use feature::{
    ActivationMetadata, Feature, FeatureActivation, FeatureMetadata, FeatureSet,
    FeatureSetMetadata, FeatureType, FeatureView, HistogramSummary, PositionStats, QuantileGroup,
    TokenCount,
};
pub use label::{Label, LabelingStrategy};
