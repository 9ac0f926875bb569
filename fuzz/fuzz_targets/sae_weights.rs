//! Any bytes as SAE weights: a `.npz` (Gemma Scope) and a `.safetensors` (SAELens, and
//! sparsify), each assembled into a small SAE of every architecture and run on one token.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

use feature_dictionary::ingest::safetensors::SafeTensors;
use feature_dictionary::ingest::SparseRows;
use feature_dictionary::sae::{EncodeBuffers, Sae, SaeConfig, Weights};

const SPARSIFY_CONFIGS: [&[u8]; 2] = [
    br#"{"d_in":4,"expansion_factor":2,"k":2,"activation":"topk"}"#,
    br#"{"d_in":4,"num_latents":8,"k":2,"activation":"groupmax","transcode":true}"#,
];

const CONFIGS: [&[u8]; 4] = [
    br#"{"architecture":"standard","d_in":4,"d_sae":8}"#,
    br#"{"architecture":"jumprelu","d_in":4,"d_sae":8}"#,
    br#"{"architecture":"topk","d_in":4,"d_sae":8,"k":2,"rescale_acts_by_decoder_norm":true}"#,
    br#"{"architecture":"gated","d_in":4,"d_sae":8}"#,
];

fuzz_target!(|data: &[u8]| {
    let p = Path::new("weights");
    let _ = Weights::from_npz_bytes(p, data);
    let Ok(st) = SafeTensors::from_bytes(p, data.to_vec()) else {
        return;
    };
    let configs = CONFIGS.iter().map(|c| SaeConfig::from_slice(p, c)).chain(
        SPARSIFY_CONFIGS
            .iter()
            .map(|c| SaeConfig::from_sparsify_slice(p, c)),
    );
    for cfg in configs {
        let Ok(w) = Weights::from_st(&st) else { return };
        let cfg = cfg.expect("valid config");
        if let Ok(sae) = Sae::from_parts(p, cfg, w) {
            let mut rows = SparseRows::default();
            sae.encode(
                &[1.0, -2.0, 0.5, 3.0],
                &mut rows,
                &mut EncodeBuffers::default(),
                1,
            );
        }
    }
});
