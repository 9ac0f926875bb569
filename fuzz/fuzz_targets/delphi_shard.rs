//! Any bytes as a delphi cache shard `0_63.safetensors`: index it and read every batch.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

use feature_dictionary::ingest::delphi::{DelphiCache, DelphiSource};
use feature_dictionary::ingest::safetensors::SafeTensors;
use feature_dictionary::ingest::ActivationSource;

fuzz_target!(|data: &[u8]| {
    let p = Path::new("0_63.safetensors");
    let Ok(st) = SafeTensors::from_bytes(p, data.to_vec()) else {
        return;
    };
    let Ok(cache) = DelphiCache::from_shards(p, vec![(st, Some((0, 63)))]) else {
        return;
    };
    let Some(ids) = cache.token_ids().cloned() else {
        return;
    };
    let Ok(tokens) = ids.into_sequences(p, None) else {
        return;
    };
    let Ok(mut src) = DelphiSource::new(cache, tokens, 7) else {
        return;
    };
    while let Ok(Some(_)) = src.next_batch() {}
});
