//! Neuronpedia-style feature JSON: a SAEDashboard batch file (`neuronpedia_dashboard.py`'s
//! `NeuronpediaDashboardBatch`, what Neuronpedia's conversion scripts read), an export only.
//!
//! `{model_id, layer, sae_set, features: [...]}` (the dictionary's model name, layer and SAE
//! name). Per feature, every key of SAEDashboard's `NeuronpediaDashboardFeature.to_dict`:
//! `feature_index, frac_nonzero, freq_hist_data_bar_heights, freq_hist_data_bar_values,
//! pos_str, pos_values, neg_str, neg_values, correlated_features_indices,
//! correlated_features_pearson, n_prompts_total, n_tokens_in_prompt, activations`, measured;
//! and, with SAEDashboard's own defaults (empty lists, `""`) because nothing here measures
//! them, `neuron_alignment_indices/values/l1, correlated_neurons_indices/l1/pearson,
//! correlated_features_l1, logits_hist_data_bar_heights/values, decoder_weights_dist,
//! dataset`.
//!
//! Approximations, because we keep no raw activations:
//! - `frac_nonzero` is firings / tokens, a firing being an activation ≥ `min_activation`
//!   (smaller nonzero values are not counted).
//! - The 50 equal-width bins over `[min, max]` of the firing activations are derived from our
//!   fixed-edge log histogram: one firing is at the minimum (the first bin) and one at the
//!   maximum (the last); each log bin's other firings are spread uniformly over its value
//!   range (clipped to `[min, max]`) and rounded to whole firings within that range (largest
//!   remainder, ties to the middle of the range), so the heights add up to the firing count
//!   exactly and no firing is placed outside the log bin that holds it (log bins are
//!   ≤ 12.5 % wide). `freq_hist_data_bar_values` are the bin centres.
//! - `pos_*` / `neg_*` (logit lens) are empty unless the feature metadata holds
//!   `logit_lens: {pos_str, pos_values, neg_str, neg_values}`; correlated features are the
//!   partners a `--correlation` build stored (or a `correlated_features` metadata key).
//! - `activations`: the top examples form one group with `bin_min = bin_max = -1` and
//!   `bin_contains = -1`; each quantile group gives its activation range and, as
//!   `bin_contains`, the share of the feature's firings in it (a fraction in [0, 1], which
//!   SAEDashboard shows as "Contains X%").
//! - A feature whose firings all had one value gets one histogram bar at that value.
//!   Every example lists its context tokens, this feature's activation on each of them
//!   (`context_activations`; zeros except the firing token when absent, which
//!   [`Exported`] counts so the caller can say so) and the index of the
//!   firing token (`null` for an example of the original library whose context does not
//!   hold its token, rather than an index pointing at another token).

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

use super::fdict::correlated_of;
use crate::dictionary::FeatureDictionary;
use crate::error::Result;
use crate::model::{Feature, FeatureActivation, HistogramSummary};

/// Bins of the Neuronpedia activation histogram.
pub const HIST_BINS: usize = 50;

/// Heights and bin centres of the 50 equal-width bins over `[min, max]` (see module docs).
pub fn equal_width_histogram(
    hist: &HistogramSummary,
    min: f64,
    max: f64,
    bins: usize,
) -> (Vec<u64>, Vec<f64>) {
    let total: u64 = hist.counts.iter().map(|c| c.1).sum();
    if bins == 0 || total == 0 || !(min.is_finite() && max.is_finite()) || max < min {
        return (Vec::new(), Vec::new());
    }
    if max == min {
        // Every firing had the same value: one bar (fifty zero-width bins would say nothing).
        return (vec![total], vec![min]);
    }
    let width = (max - min) / bins as f64;
    let centres: Vec<f64> = (0..bins).map(|i| min + width * (i as f64 + 0.5)).collect();
    let bar_of = |v: f64| (((v - min) / width).max(0.0) as usize).min(bins - 1);
    let mut heights = vec![0u64; bins];
    let occupied: Vec<(usize, u64)> = hist
        .counts
        .iter()
        .filter(|&&(_, c)| c > 0)
        .map(|&(b, c)| (b as usize, c))
        .collect();
    let last = occupied.len() - 1;
    for (k, &(b, mut c)) in occupied.iter().enumerate() {
        let lo = if b == 0 {
            min
        } else {
            hist.lower_edge(b as u32).max(min)
        };
        let hi = if b + 1 >= hist.n_bins as usize {
            max
        } else {
            hist.lower_edge(b as u32 + 1).min(max)
        };
        let (lo, hi) = (lo.min(max), hi.max(lo.min(max)));
        // The lowest occupied log bin holds the minimum and the highest the maximum: one
        // firing each is exactly there.
        if k == 0 {
            heights[0] += 1;
            c -= 1;
        }
        if k == last && c > 0 {
            heights[bins - 1] += 1;
            c -= 1;
        }
        if c == 0 {
            continue;
        }
        if hi <= lo {
            heights[bar_of(lo)] += c;
            continue;
        }
        // The rest spread uniformly over the log bin's range and rounded within it, so
        // that no firing leaves its log bin (the error stays below one log bin's width).
        let (first, end) = (bar_of(lo), bar_of(hi));
        let shares: Vec<(usize, f64)> = (first..=end)
            .map(|i| {
                let a = (min + width * i as f64).max(lo);
                let z = (min + width * (i + 1) as f64).min(hi);
                (i, c as f64 * (z - a).max(0.0) / (hi - lo))
            })
            .collect();
        let centre = (lo + hi) / 2.0;
        for (i, n) in round_preserving_sum(&shares, c, |i| (centres[i] - centre).abs()) {
            heights[i] += n;
        }
    }
    (heights, centres)
}

/// Rounds the `(bar, mass)` shares to integers summing to `total` (largest remainder; ties
/// to the bar of smallest `distance`, as a firing of unknown value is likeliest in the
/// middle of its range).
fn round_preserving_sum(
    shares: &[(usize, f64)],
    total: u64,
    distance: impl Fn(usize) -> f64,
) -> Vec<(usize, u64)> {
    let mut out: Vec<(usize, u64)> = shares
        .iter()
        .map(|&(i, m)| (i, m.floor().max(0.0) as u64))
        .collect();
    let given: u64 = out.iter().map(|o| o.1).sum();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    // Remainders equal but for rounding (the equal shares of a uniform spread) are ties.
    let remainder = |k: usize| ((shares[k].1 - shares[k].1.floor()) * 1e9).round() as i64;
    order.sort_by(|&a, &b| {
        remainder(b)
            .cmp(&remainder(a))
            .then(distance(shares[a].0).total_cmp(&distance(shares[b].0)))
            .then(a.cmp(&b))
    });
    let mut left = total.saturating_sub(given);
    for k in order.into_iter().cycle().take(shares.len() * 2) {
        if left == 0 {
            break;
        }
        out[k].1 += 1;
        left -= 1;
    }
    out
}

fn example(a: &FeatureActivation, bin_min: f64, bin_max: f64, bin_contains: f64) -> Value {
    let (tokens, at, values) = a.shown_context();
    json!({
        "bin_min": bin_min,
        "bin_max": bin_max,
        "bin_contains": bin_contains,
        "tokens": tokens,
        "values": values,
        "qualifying_token_index": at,
    })
}

/// What the export says about the corpus the dictionary was built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corpus {
    /// Tokens processed.
    pub total_tokens: u64,
    /// Sequences (prompts) processed, when the file records it.
    pub total_sequences: Option<u64>,
}

impl Corpus {
    /// The corpus of `dict`.
    pub fn of(dict: &FeatureDictionary) -> Self {
        Self {
            total_tokens: dict.feature_set.total_tokens_processed,
            total_sequences: dict.feature_set.metadata.total_sequences,
        }
    }

    /// SAEDashboard's `n_prompts_total` (0, its default, when unknown).
    fn prompts(&self) -> u64 {
        self.total_sequences.unwrap_or(0)
    }

    /// SAEDashboard's `n_tokens_in_prompt`: the length every sequence had (0, its default,
    /// when the lengths differed or are unknown).
    fn tokens_in_prompt(&self) -> u64 {
        match self.total_sequences {
            Some(s) if s > 0 && self.total_tokens.is_multiple_of(s) => self.total_tokens / s,
            _ => 0,
        }
    }
}

/// The Neuronpedia-style object of one feature.
pub fn feature_json(f: &Feature, corpus: &Corpus) -> Value {
    let total_tokens = corpus.total_tokens;
    let (heights, values) = match &f.metadata.histogram {
        Some(h) if f.activation_count > 0 => equal_width_histogram(
            h,
            f.metadata.min_activation.map_or(0.0, f64::from),
            f.max_activation,
            HIST_BINS,
        ),
        _ => (Vec::new(), Vec::new()),
    };
    let lens = f.metadata.extra.get("logit_lens");
    let lens_field = |k: &str| {
        lens.and_then(|l| l.get(k))
            .cloned()
            .unwrap_or_else(|| json!([]))
    };
    let correlated = correlated_of(f);
    let mut activations: Vec<Value> = f
        .top_activations
        .iter()
        .map(|a| example(a, -1.0, -1.0, -1.0))
        .collect();
    for g in &f.metadata.quantile_examples {
        for a in &g.examples {
            // SAEDashboard's "Contains X%": the share of the feature's firings in the group.
            let share = if f.activation_count == 0 {
                0.0
            } else {
                g.count as f64 / f.activation_count as f64
            };
            activations.push(example(a, g.min_activation, g.max_activation, share));
        }
    }
    json!({
        "feature_index": f.id,
        "frac_nonzero": if total_tokens == 0 { 0.0 } else { f.activation_count as f64 / total_tokens as f64 },
        "freq_hist_data_bar_heights": heights,
        "freq_hist_data_bar_values": values,
        "pos_str": lens_field("pos_str"),
        "pos_values": lens_field("pos_values"),
        "neg_str": lens_field("neg_str"),
        "neg_values": lens_field("neg_values"),
        "correlated_features_indices": correlated.iter().map(|c| c.0).collect::<Vec<_>>(),
        "correlated_features_pearson": correlated.iter().map(|c| c.1).collect::<Vec<_>>(),
        "correlated_features_l1": [],
        "neuron_alignment_indices": [],
        "neuron_alignment_values": [],
        "neuron_alignment_l1": [],
        "correlated_neurons_indices": [],
        "correlated_neurons_l1": [],
        "correlated_neurons_pearson": [],
        "logits_hist_data_bar_heights": [],
        "logits_hist_data_bar_values": [],
        "decoder_weights_dist": [],
        "n_prompts_total": corpus.prompts(),
        "n_tokens_in_prompt": corpus.tokens_in_prompt(),
        "dataset": "",
        "activations": activations,
    })
}

/// What the batch says it holds: SAEDashboard's `model_id`, `layer` and `sae_set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchNames {
    /// The model (Neuronpedia's model id).
    pub model_id: String,
    /// The layer of the SAE's hookpoint.
    pub layer: i64,
    /// The SAE set's name.
    pub sae_set: String,
}

impl BatchNames {
    /// The names a dictionary carries: its config's model name, layer and SAE name (what
    /// `featdict stats` shows).
    pub fn of(summary: &super::fdict::Summary) -> Self {
        Self {
            model_id: summary.model_name.clone(),
            layer: summary.layer,
            sae_set: summary.sae_name.clone(),
        }
    }
}

/// The batch's opening, up to the `features` list's `[`.
fn batch_head(names: &BatchNames) -> Vec<u8> {
    let head = json!({"model_id": names.model_id, "layer": names.layer, "sae_set": names.sae_set})
        .to_string();
    // `{...}` becomes `{...,"features":[`.
    let mut out = head.as_bytes()[..head.len() - 1].to_vec();
    out.extend_from_slice(b",\"features\":[");
    out
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exported {
    /// Features written.
    pub features: usize,
    /// Examples (with a context of more than their own token) stored without this feature's
    /// activation on each context token — the original library stores none —, whose other
    /// tokens are written as 0 since the format has no "unknown".
    pub examples_without_context_activations: usize,
}

impl Exported {
    fn add(&mut self, f: &Feature) {
        self.features += 1;
        let examples = f.top_activations.iter().chain(
            f.metadata
                .quantile_examples
                .iter()
                .flat_map(|g| &g.examples),
        );
        self.examples_without_context_activations += examples
            .filter(|a| a.context_tokens.len() > 1 && a.metadata.context_activations.is_empty())
            .count();
    }
}

/// Writes every feature of `dict` as a SAEDashboard batch of Neuronpedia-style objects
/// named `names` (`None`: the dictionary's own, [`BatchNames::of`]).
pub fn write(
    dict: &FeatureDictionary,
    path: &Path,
    names: Option<&BatchNames>,
) -> Result<Exported> {
    let corpus = Corpus::of(dict);
    let mut exported = Exported::default();
    let own = BatchNames::of(&super::fdict::Summary::of(dict));
    let head = batch_head(names.unwrap_or(&own));
    super::write_atomically(path, |w| {
        w.write_all(&head)?;
        for (i, f) in dict.features().enumerate() {
            if i > 0 {
                w.write_all(b",\n")?;
            }
            serde_json::to_writer(&mut *w, &feature_json(f, &corpus))
                .map_err(std::io::Error::other)?;
            exported.add(f);
        }
        w.write_all(b"]}\n")
    })?;
    Ok(exported)
}

/// Writes every feature of an open `.fdict` like [`write()`], one feature at a time (the
/// dictionary is never held in memory).
pub fn write_from_reader(
    r: &super::fdict::FdictReader,
    path: &Path,
    names: Option<&BatchNames>,
) -> Result<Exported> {
    let shell = r.load_some(&[])?;
    let corpus = Corpus::of(&shell);
    let own = BatchNames::of(r.summary());
    let head = batch_head(names.unwrap_or(&own));
    let mut exported = Exported::default();
    let mut failure: Option<crate::Error> = None;
    super::write_atomically(path, |w| {
        w.write_all(&head)?;
        let res = r.for_each_feature(|f| {
            if exported.features > 0 {
                w.write_all(b",\n").map_err(|e| crate::Error::io(path, e))?;
            }
            serde_json::to_writer(&mut *w, &feature_json(f, &corpus))
                .map_err(|e| crate::Error::io(path, std::io::Error::other(e)))?;
            exported.add(f);
            Ok(())
        });
        if let Err(e) = res {
            failure = Some(e);
            return Err(std::io::Error::other("reading the dictionary failed"));
        }
        w.write_all(b"]}\n")
    })
    .map_err(|e| failure.take().unwrap_or(e))?;
    Ok(exported)
}
