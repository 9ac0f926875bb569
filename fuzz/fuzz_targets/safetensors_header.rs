//! Any bytes as a `.safetensors` file: parse, then read every tensor with every accessor.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

use feature_dictionary::ingest::safetensors::SafeTensors;

fuzz_target!(|data: &[u8]| {
    if let Ok(st) = SafeTensors::from_bytes(Path::new("fuzz.safetensors"), data.to_vec()) {
        for t in st.tensors() {
            let _ = st.to_f32(t);
            let _ = st.to_i64(t);
        }
    }
});
