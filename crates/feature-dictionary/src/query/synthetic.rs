//! Synthetic dictionaries: deterministic, realistic-looking features (tokens, examples with
//! per-token activations, histograms, quantile samples, scored labels, neighbours) for
//! benchmarks at sizes no real run here produces, and for tests of the store, search and
//! web UI. Nothing here is used to build real dictionaries.

use std::path::Path;

use serde_json::json;

use crate::dictionary::FeatureDictionary;
use crate::error::Result;
use crate::model::{
    ActivationMetadata, DictionaryConfig, Feature, FeatureActivation, FeatureSet,
    FeatureSetMetadata, FeatureType, HistogramSummary, Label, LabelingStrategy, QuantileGroup,
    TokenCount,
};
use crate::store::fdict::FdictWriter;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Number of features (ids 0..n).
    pub n_features: u64,
    /// Seed of the deterministic generator.
    pub seed: u64,
    /// Distinct words in the vocabulary (each appears with and without a leading space).
    pub vocab_words: usize,
    /// Give feature 1 hostile tokens and labels (HTML/script injection attempts).
    pub hostile: bool,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            n_features: 100,
            seed: 1,
            vocab_words: 5000,
            hostile: true,
        }
    }
}

/// Tokens processed by every synthetic dictionary.
pub const TOTAL_TOKENS: u64 = 10_000_000;

/// The hostile token given to feature 1 when [`Spec::hostile`] is set.
pub const HOSTILE_TOKEN: &str = "<script>alert(1)</script>";
/// The hostile label given to feature 1 when [`Spec::hostile`] is set.
pub const HOSTILE_LABEL: &str = "\"'><img src=x onerror=alert(1)>";

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = mix(self.0);
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const SYLLABLES: [&str; 24] = [
    "ka", "lo", "mi", "ne", "ru", "ta", "po", "si", "ve", "zu", "an", "el", "or", "is", "um",
    "tra", "gon", "bel", "dar", "fen", "qui", "hex", "nor", "wil",
];

/// Word `i` of the synthetic vocabulary (distinct for distinct `i`).
pub fn word(i: usize) -> String {
    let mut s = String::new();
    let mut n = i;
    loop {
        s.push_str(SYLLABLES[n % SYLLABLES.len()]);
        n /= SYLLABLES.len();
        if n == 0 {
            break;
        }
        n -= 1;
    }
    s
}

/// Token `i` of the synthetic vocabulary: even `i` with a leading space (BPE style).
pub fn token(spec: &Spec, i: usize) -> String {
    let w = word((i / 2) % spec.vocab_words.max(1));
    if i & 1 == 0 {
        format!(" {w}")
    } else {
        w
    }
}

fn zipf_token(spec: &Spec, rng: &mut Rng) -> usize {
    // Roughly Zipfian: small indices are much more common.
    let n = (spec.vocab_words * 2) as f64;
    (n.powf(rng.unit()) as usize).saturating_sub(1)
}

/// Feature `id` of the dictionary described by `spec`.
pub fn feature(spec: &Spec, id: u64) -> Feature {
    let mut rng = Rng(mix(spec.seed ^ mix(id)));
    let mut f = Feature::new(id, 64);
    if rng.below(20) == 0 && id != 1 {
        return f; // dead
    }
    let count = 1 + (TOTAL_TOKENS as f64 * 0.02 * rng.unit().powi(4)) as u64;
    let max = 1.0 + 9.0 * rng.unit();
    let mean = max * (0.2 + 0.3 * rng.unit());
    f.activation_count = count;
    f.max_activation = max as f32 as f64;
    f.mean_activation = mean;
    f.activation_frequency = count as f64 / TOTAL_TOKENS as f64;
    f.feature_type = FeatureType::classify(count, TOTAL_TOKENS);
    f.bias = -0.1;

    // Top tokens: distinct, firings decreasing.
    let mut toks: Vec<String> = Vec::new();
    while toks.len() < 5 {
        let t = token(spec, zipf_token(spec, &mut rng));
        if !toks.contains(&t) {
            toks.push(t);
        }
    }
    if spec.hostile && id == 1 {
        toks[0] = HOSTILE_TOKEN.to_string();
    }
    let mut left = count;
    f.metadata.top_tokens = toks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let firings = if i == 4 {
                left
            } else {
                (left / 2).max(1).min(left)
            };
            left -= firings.min(left);
            TokenCount {
                token: t.clone(),
                firings,
                occurrences: firings * (1 + rng.below(40)),
            }
        })
        .collect();

    // Examples: the first top token fires in the middle of a 7-token context.
    let example = |rng: &mut Rng, act: f32, tok: &str| {
        let seq = rng.below(100_000);
        let pos = 3 + rng.below(60) as u32;
        let mut ctx: Vec<String> = (0..7).map(|_| token(spec, zipf_token(spec, rng))).collect();
        ctx[3] = tok.to_string();
        let acts: Vec<f32> = (0..7)
            .map(|i| {
                if i == 3 {
                    act
                } else if rng.below(3) == 0 {
                    act * rng.unit() as f32 * 0.5
                } else {
                    0.0
                }
            })
            .collect();
        FeatureActivation {
            feature_id: id,
            token: tok.to_string(),
            position: pos,
            activation: act,
            context: ctx.concat(),
            context_tokens: ctx,
            metadata: ActivationMetadata {
                sequence: Some(seq),
                context_start: pos - 3,
                context_activations: acts,
                extra: Default::default(),
            },
        }
    };
    let top_acts = [max as f32, (max * 0.9) as f32];
    f.top_activations = top_acts
        .iter()
        .map(|&a| example(&mut rng, a, &toks[0]))
        .collect();
    let q_lo = (mean * 0.5) as f32;
    f.metadata.quantile_examples = vec![
        QuantileGroup {
            min_activation: (mean * 0.1) as f32 as f64,
            max_activation: mean,
            count: count / 2,
            examples: vec![example(&mut rng, q_lo, &toks[1])],
        },
        QuantileGroup {
            min_activation: mean,
            max_activation: f.max_activation,
            count: count - count / 2,
            examples: vec![example(&mut rng, mean as f32, &toks[0])],
        },
    ];
    f.metadata.min_activation = Some((mean * 0.1) as f32);
    f.metadata.std_activation = Some(mean * 0.3);
    f.metadata.sum_activation = Some(mean * count as f64);
    let hist_bin = |v: f64| ((v.log2() + 10.0) * 8.0).clamp(0.0, 207.0) as u32;
    let (b0, b1) = (hist_bin(mean * 0.1), hist_bin(max));
    let span = (b1 - b0 + 1) as u64;
    f.metadata.histogram = Some(HistogramSummary {
        bins_per_octave: 8,
        min_exponent: -10,
        n_bins: 208,
        counts: (b0..=b1)
            .map(|b| (b, count / span + (((b - b0) as u64) < count % span) as u64))
            .filter(|c| c.1 > 0)
            .collect(),
    });
    let q = [("p10", 0.15), ("p50", 0.5), ("p90", 0.85)];
    f.metadata.quantiles = q
        .iter()
        .map(|(k, v)| (k.to_string(), mean * 2.0 * v))
        .collect();
    f.metadata.unique_tokens = Some(5);
    f.metadata.token_counts_exact = Some(true);
    f.metadata.token_entropy = Some(1.5);

    // Labels: the best token as a scored token label, sometimes a pattern label.
    let best = &f.metadata.top_tokens[0];
    let precision = best.firings as f64 / best.occurrences as f64;
    let recall = best.firings as f64 / count as f64;
    let mut labels = vec![Label {
        text: format!("token:{}", best.token.trim()),
        strategy: LabelingStrategy::TokenFrequency,
        confidence: precision * recall,
        precision: Some(precision),
        recall: Some(recall),
        evidence: vec![format!(
            "{} of {} occurrences",
            best.firings, best.occurrences
        )],
    }];
    if rng.below(3) == 0 {
        labels.push(Label {
            text: format!("ngram:{}{}", toks[1].trim(), toks[2]),
            strategy: LabelingStrategy::NgramAnalysis,
            confidence: precision * recall * 0.5,
            precision: Some(precision * 0.5),
            recall: Some(recall * 0.5),
            evidence: Vec::new(),
        });
    }
    if spec.hostile && id == 1 {
        labels.push(Label {
            text: HOSTILE_LABEL.to_string(),
            strategy: LabelingStrategy::PatternMatching,
            confidence: 0.01,
            precision: Some(0.5),
            recall: Some(0.01),
            evidence: vec![HOSTILE_TOKEN.to_string()],
        });
    }
    f.labels = labels.iter().map(|l| l.text.clone()).collect();
    f.confidence = labels[0].confidence;
    f.description = format!(
        "Fires on \"{}\" and \"{}\" ({} times).",
        toks[0].trim(),
        toks[1].trim(),
        count
    );
    f.metadata.label_details = labels;
    let n = spec.n_features.max(2);
    let neighbours: Vec<_> = (0..3)
        .map(|_| json!({"id": rng.below(n), "score": (rng.unit() * 1000.0).round() / 1000.0}))
        .collect();
    f.metadata
        .extra
        .insert("correlated_features".into(), json!(neighbours));
    f
}

fn shell(spec: &Spec) -> (DictionaryConfig, FeatureSet) {
    let config = DictionaryConfig {
        model_name: "synthetic-model".into(),
        sae_name: format!("synthetic-{}", spec.n_features),
        num_features: spec.n_features as usize,
        ..Default::default()
    };
    let fs = FeatureSet {
        layer: 0,
        features: Default::default(),
        total_tokens_processed: TOTAL_TOKENS,
        model_name: config.model_name.clone(),
        sae_name: config.sae_name.clone(),
        metadata: FeatureSetMetadata {
            format: crate::FORMAT_MARKER.into(),
            num_features: Some(spec.n_features as usize),
            ..Default::default()
        },
    };
    (config, fs)
}

/// The whole dictionary in memory (for small `n_features`).
pub fn dictionary(spec: &Spec) -> FeatureDictionary {
    let (config, mut fs) = shell(spec);
    for id in 0..spec.n_features {
        fs.features.insert(id, feature(spec, id));
    }
    FeatureDictionary::new(config, fs)
}

/// Streams the dictionary into an `.fdict` at `path` without holding it in memory;
/// `progress` gets the features written so far.
pub fn write_fdict(spec: &Spec, path: &Path, progress: &mut dyn FnMut(u64)) -> Result<()> {
    let (config, fs) = shell(spec);
    let mut w = FdictWriter::create(path, &config, &fs)?;
    for id in 0..spec.n_features {
        w.add(&feature(spec, id))?;
        if id % 10_000 == 0 {
            progress(id);
        }
    }
    w.finish()
}
