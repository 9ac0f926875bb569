//! # feature-dictionary
//!
//! Turns the activations of a sparse autoencoder (SAE) into an exact, searchable dictionary
//! of features, in one streaming pass and bounded memory. Data flows one way:
//!
//! 1. [`ingest`] — readers turn files into [`ingest::ActivationBatch`]es (dense rows or CSR);
//! 2. [`accumulate`] — one pass updates the mergeable [`accumulate::Accumulator`];
//! 3. [`finalize`] — frequency, type, std, quantiles, examples with readable tokens;
//! 4. [`store`] — the on-disk dictionary (the original library's JSON, the native `.fdict`
//!    SQLite file, Neuronpedia-style export);
//! 5. [`dictionary`] — query a finished [`FeatureDictionary`];
//! 6. [`label`] — name features with scored hypotheses (token, n-gram, regex pattern, embedding
//!    cluster; precision and recall over the whole corpus) plus manual labels and descriptions;
//! 7. [`analyze`] — stats over all tokens, correlation, similar and polysemantic features,
//!    logit lens;
//! 8. [`query`] — search by token, label, regex or full text, in memory or on an `.fdict`.
//!
//! ```no_run
//! use feature_dictionary::{build, ingest, model::DictionaryConfig, store};
//! use std::path::Path;
//!
//! let matrix = ingest::npy::open(Path::new("acts.npy"))?;
//! let tokens = ingest::TokenSequences::from_json_file(Path::new("tokens.json"))?;
//! let config = DictionaryConfig::default();
//! let mut source = ingest::DenseSource::new(
//!     matrix, tokens, config.extraction.context_window, build::VALUES_PER_BATCH)?;
//! let dict = build::build(&mut source, config, &Default::default(), &mut |_| {})?;
//! store::save(&dict, Path::new("dict.json"))?;
//! # Ok::<(), feature_dictionary::Error>(())
//! ```

pub mod accumulate;
pub mod analyze;
pub mod build;
pub mod dictionary;
mod error;
pub mod finalize;
pub mod finite;
pub mod ingest;
pub mod label;
pub mod model;
pub mod query;
pub mod sae;
pub mod store;

pub use dictionary::FeatureDictionary;
pub use error::{Error, Result};

/// `n` with the noun in the number it needs: "1 sequence", "2 sequences". For every message
/// whose count may be 1.
pub fn count_of(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Written into `feature_set.metadata.format` so files say who wrote them.
pub const FORMAT_MARKER: &str = "feature-dictionary/1";
