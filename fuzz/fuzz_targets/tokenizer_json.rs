//! Any bytes as a HuggingFace `tokenizer.json`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

use feature_dictionary::ingest::tokenizer::Tokenizer;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Tokenizer::from_slice(Path::new("tokenizer.json"), data) {
        let _ = t.into_vocab();
    }
});
