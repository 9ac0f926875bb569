//! Any bytes as an SAELens `cfg.json` and as a sparsify one.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

use feature_dictionary::sae::SaeConfig;

fuzz_target!(|data: &[u8]| {
    let _ = SaeConfig::from_slice(Path::new("cfg.json"), data);
    let _ = SaeConfig::from_sparsify_slice(Path::new("cfg.json"), data);
});
