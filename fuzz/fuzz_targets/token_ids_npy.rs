//! Any bytes as a token-id `.npy`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

use feature_dictionary::ingest::token_ids::TokenIdMatrix;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = TokenIdMatrix::from_npy_bytes(Path::new("ids.npy"), data) {
        let _ = m.into_sequences(Path::new("ids.npy"), None);
    }
});
