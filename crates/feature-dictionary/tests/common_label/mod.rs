//! Helpers shared by the labeling tests: build a dictionary from explicitly constructed
//! sparse batches (no file reader involved).
#![allow(dead_code)]

use feature_dictionary::accumulate::{Accumulator, Settings};
use feature_dictionary::finalize::finalize;
use feature_dictionary::ingest::{ActivationBatch, BatchValues, SparseRows, TokenId, Vocab};
use feature_dictionary::model::DictionaryConfig;
use feature_dictionary::FeatureDictionary;

/// Knuth's MMIX linear congruential generator: reproducible test data from a seed.
pub struct Lcg(pub u64);

impl Lcg {
    fn step(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0
    }

    /// 31 random bits: the state's high bits (an LCG's low bits have short periods).
    pub fn next(&mut self) -> u64 {
        self.step() >> 33
    }

    /// Uniform in [0, 1), from the state's top 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.step() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Rows of one or more sequences: token id per row and sorted (feature, value) firings.
pub struct Rows {
    pub tokens: Vec<TokenId>,
    pub sequences: Vec<u64>,
    pub positions: Vec<u32>,
    pub firings: Vec<Vec<(u32, f32)>>,
}

impl Rows {
    pub fn batch(&self, n_features: usize) -> ActivationBatch<'static> {
        let mut sp = SparseRows {
            indptr: vec![0],
            ..Default::default()
        };
        for row in &self.firings {
            let mut row = row.clone();
            row.sort_by_key(|e| e.0);
            for (f, v) in row {
                sp.indices.push(f);
                sp.values.push(v);
            }
            sp.indptr.push(sp.indices.len());
        }
        ActivationBatch {
            n_features,
            tokens: self.tokens.clone(),
            sequences: self.sequences.clone(),
            positions: self.positions.clone(),
            core: 0..self.tokens.len(),
            values: BatchValues::Sparse(sp),
            token_keys: None,
        }
    }
}

/// Accumulates `batches` (each holding whole sequences) and finalizes.
pub fn build(
    batches: &[Rows],
    n_features: usize,
    vocab: &Vocab,
    config: DictionaryConfig,
    threads: usize,
) -> FeatureDictionary {
    let settings = Settings::from_config(&config.extraction).unwrap();
    let mut acc = Accumulator::new(n_features, settings, threads);
    for b in batches {
        acc.update(&b.batch(n_features)).unwrap();
    }
    finalize(&acc, vocab, config)
}
