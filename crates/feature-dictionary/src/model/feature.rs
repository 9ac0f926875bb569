//! Features, examples and the feature set.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use super::Label;

/// Feature classes by firing frequency, with the original's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureType {
    /// Never fired.
    Dead,
    /// Fires on < 0.01 % of tokens.
    UltraSparse,
    /// Fires on < 1 % of tokens.
    Sparse,
    /// Fires on < 10 % of tokens.
    Moderate,
    /// Fires on ≥ 10 % of tokens.
    Dense,
}

impl FeatureType {
    /// All types, in the order the original lists them in summaries.
    pub const ALL: [FeatureType; 5] = [
        FeatureType::Sparse,
        FeatureType::Moderate,
        FeatureType::Dense,
        FeatureType::Dead,
        FeatureType::UltraSparse,
    ];

    /// Classifies by `activation_count / total_tokens` with the original's thresholds.
    pub fn classify(activation_count: u64, total_tokens: u64) -> FeatureType {
        if total_tokens == 0 || activation_count == 0 {
            return FeatureType::Dead;
        }
        let frequency = activation_count as f64 / total_tokens as f64;
        if frequency < 1e-4 {
            FeatureType::UltraSparse
        } else if frequency < 0.01 {
            FeatureType::Sparse
        } else if frequency < 0.1 {
            FeatureType::Moderate
        } else {
            FeatureType::Dense
        }
    }

    /// The original's string value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dead => "dead",
            Self::UltraSparse => "ultra_sparse",
            Self::Sparse => "sparse",
            Self::Moderate => "moderate",
            Self::Dense => "dense",
        }
    }

    /// Parses the original's string value.
    pub fn parse(s: &str) -> Option<FeatureType> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Parses a filter by type, as `featdict top --type` and the server's `type=` take it:
    /// a type's name, or `all` (`None`: every type). The error lists every accepted name.
    pub fn parse_filter(s: &str) -> Result<Option<FeatureType>, String> {
        if s == "all" {
            return Ok(None);
        }
        Self::parse(s).map(Some).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|t| t.as_str()).collect();
            format!(
                "unknown feature type {s:?}: expected all or one of {}",
                names.join(", ")
            )
        })
    }
}

/// Extra facts about an example, stored in the original's `metadata` slot.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ActivationMetadata {
    /// Index of the sequence in the input (0-based, across all inputs of a build); `None`
    /// for an example read from a file that does not say (the original library stores
    /// none), which is then written without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// Position of `context_tokens[0]` in the sequence.
    #[serde(default)]
    pub context_start: u32,
    /// This feature's activation on each context token (same length as `context_tokens`),
    /// for highlighting; values below the firing threshold are still shown as they were.
    #[serde(default)]
    pub context_activations: Vec<f32>,
    /// Keys we do not know (kept so files round-trip).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One example: a token where the feature fired, with its context (the original's
/// `FeatureActivation`).
///
/// Reading one checks that its context holds it: a `metadata.context_start` that does not
/// put the example's token at `context_tokens[position − context_start]`, or
/// `metadata.context_activations` not one per context token, is an error (the example would
/// be shown with the wrong token highlighted). Without `context_start` (the original
/// library stores none) it is inferred; see [`FeatureActivation::token_index_in_context`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawFeatureActivation")]
pub struct FeatureActivation {
    /// Feature index.
    pub feature_id: u64,
    /// The token as a person reads it.
    pub token: String,
    /// Position in its sequence.
    pub position: u32,
    /// Activation value.
    pub activation: f32,
    /// Context text (the context tokens joined), empty when `collect_context` is off.
    #[serde(default)]
    pub context: String,
    /// Tokens around the firing token (± `context_window`, clipped at sequence edges).
    #[serde(default)]
    pub context_tokens: Vec<String>,
    /// Sequence index, context start and per-token activations.
    #[serde(default)]
    pub metadata: ActivationMetadata,
}

/// [`FeatureActivation`] as read, before a missing `context_start` is inferred. (Its
/// errors name what a file holds, not this type.)
#[derive(Deserialize)]
#[serde(expecting = "an example (a FeatureActivation object)")]
struct RawFeatureActivation {
    feature_id: u64,
    token: String,
    position: u32,
    activation: f32,
    #[serde(default)]
    context: String,
    #[serde(default)]
    context_tokens: Vec<String>,
    #[serde(default)]
    metadata: RawActivationMetadata,
}

#[derive(Default, Deserialize)]
#[serde(expecting = "an example's metadata object")]
struct RawActivationMetadata {
    #[serde(default)]
    sequence: Option<u64>,
    #[serde(default)]
    context_start: Option<u32>,
    /// `null` where a build before 2026-11-28 wrote a NaN or ±∞ it had skipped
    /// (`--allow-nonfinite`): read as 0, as such a value is now written, so those files open.
    #[serde(default)]
    context_activations: Vec<Option<f32>>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl TryFrom<RawFeatureActivation> for FeatureActivation {
    type Error = String;

    fn try_from(raw: RawFeatureActivation) -> Result<Self, String> {
        let m = raw.metadata;
        let context_start = match m.context_start {
            Some(start) => {
                check_context_start(
                    &raw.token,
                    raw.feature_id,
                    raw.position,
                    start,
                    &raw.context_tokens,
                )?;
                start
            }
            None => infer_context_start(raw.position, &raw.context_tokens, &raw.token),
        };
        let (acts, tokens) = (m.context_activations.len(), raw.context_tokens.len());
        if acts != 0 && acts != tokens {
            return Err(format!(
                "an example of feature {} with {} for its {}; expected one per context token (or none)",
                raw.feature_id,
                crate::count_of(acts as u64, "metadata.context_activations value", "metadata.context_activations values"),
                crate::count_of(tokens as u64, "context token", "context tokens"),
            ));
        }
        Ok(FeatureActivation {
            feature_id: raw.feature_id,
            token: raw.token,
            position: raw.position,
            activation: raw.activation,
            context: raw.context,
            context_tokens: raw.context_tokens,
            metadata: ActivationMetadata {
                sequence: m.sequence,
                context_start,
                context_activations: m
                    .context_activations
                    .into_iter()
                    .map(|v| v.unwrap_or(0.0))
                    .collect(),
                extra: m.extra,
            },
        })
    }
}

/// Indices of `context` where `token` sits at or before `position` (where a context starting
/// at a position ≥ 0 can hold the firing token).
fn token_indices<'a>(
    context: &'a [String],
    token: &'a str,
    position: u32,
) -> impl Iterator<Item = usize> + 'a {
    context
        .iter()
        .enumerate()
        .take((position as usize).saturating_add(1))
        .filter(move |(_, t)| *t == token)
        .map(|(k, _)| k)
}

/// Refuses a stored `context_start` that does not put `token` at `context[position −
/// context_start]`, saying what it found and which context starts would. An example
/// stored without context tokens has nothing to point into, and one whose context holds its
/// token nowhere no start could place: it is read with the token placed nowhere (shown
/// without a highlight), as an inferred start places it — earlier versions wrote such
/// inferred starts for examples of the original library, and those files must still read.
fn check_context_start(
    token: &str,
    feature: u64,
    position: u32,
    start: u32,
    context: &[String],
) -> Result<(), String> {
    if context.is_empty() || token_indices(context, token, position).next().is_none() {
        return Ok(());
    }
    let found = match position.checked_sub(start) {
        None => format!("metadata.context_start ({start}) is after its position ({position})"),
        Some(i) => match context.get(i as usize) {
            None => format!(
                "firing token would be context_tokens[{i}] (position {position} − metadata.context_start {start}), past its {}",
                crate::count_of(context.len() as u64, "context token", "context tokens")
            ),
            Some(t) if t == token => return Ok(()),
            Some(t) => format!(
                "context_tokens[{i}] (position {position} − metadata.context_start {start}) is {t:?}, not its token"
            ),
        },
    };
    let mut starts: Vec<String> = token_indices(context, token, position)
        .map(|k| (position - k as u32).to_string())
        .collect();
    if starts.len() > 5 {
        starts.truncate(5);
        starts.push("…".into());
    }
    let expected = match starts.as_slice() {
        [one] => {
            format!("expected context_start {one}, where context_tokens hold its token {token:?}")
        }
        _ => format!(
            "expected one of context_start {}, where context_tokens hold its token {token:?}",
            starts.join(", ")
        ),
    };
    Err(format!(
        "an example of feature {feature} whose {found}; {expected}"
    ))
}

/// Where the context of an example of the original library starts: it stores none. Its
/// context is `tokens[max(0, position − w) .. position + w + 1]` for a window `w`, clipped at
/// both sequence edges, so the firing token sits at index `min(position, w)`: at `position`
/// itself, or at an index `k < position` with no more than `k` tokens after it. Without `w`
/// (see [`FeatureActivation::place_in_window`] for when it is known), of the context tokens
/// equal to the firing token at such an index, the one nearest `min(position, centre)` is
/// taken (the first on a tie), as the Python package's n-gram labeler does; when none is at
/// such an index (a context made some other way), the nearest of all at an index ≤
/// `position`. Read as 0, an example at position 10 had its firing token looked for at
/// index 10.
///
/// When the context holds no such token, no start would highlight the right one: the
/// start returned is then past `position` (or 0 for the largest position), which places
/// the token nowhere ([`FeatureActivation::token_index_in_context`] is `None`), and such a
/// start is not written back (the example is read the same way again).
fn infer_context_start(position: u32, context: &[String], token: &str) -> u32 {
    let centre = (position as usize).min(context.len() / 2);
    let nearest =
        |indices: &mut dyn Iterator<Item = usize>| indices.min_by_key(|&k| k.abs_diff(centre));
    let windowed = |&k: &usize| k == position as usize || 2 * k + 1 >= context.len();
    let at = nearest(&mut token_indices(context, token, position).filter(windowed))
        .or_else(|| nearest(&mut token_indices(context, token, position)));
    match at {
        Some(at) => position - at as u32,
        None => position.checked_add(1).unwrap_or(0),
    }
}

impl FeatureActivation {
    /// Places the firing token of an example of the original library (one without a
    /// sequence index, whose context start was inferred) exactly, given the context window
    /// `window` its file's configuration says it was collected with: at index
    /// `min(position, window)`, when the token is there; otherwise the inferred start stays.
    pub fn place_in_window(&mut self, window: usize) {
        if self.metadata.sequence.is_some() {
            return;
        }
        let at = (self.position as usize).min(window);
        if self.context_tokens.get(at) == Some(&self.token) {
            self.metadata.context_start = self.position - at as u32;
        }
    }

    /// Index of the firing token inside `context_tokens`: `position − context_start`, when
    /// that is an index of the context and the token there is this example's. `None` for an
    /// example whose context does not hold its token where it says (one of the original
    /// library with a context not holding its token; a reader refuses other such examples),
    /// which is then shown with no token highlighted rather than the wrong one.
    pub fn token_index_in_context(&self) -> Option<usize> {
        let i = self.position.checked_sub(self.metadata.context_start)? as usize;
        (self.context_tokens.get(i)? == &self.token).then_some(i)
    }

    /// The tokens to show for this example, with the firing token's index (`None`: its
    /// place in the context is unknown, see [`Self::token_index_in_context`]) and each
    /// token's activation: the context, or — for an example stored without one (files of
    /// the original library may hold `context_tokens: []`) — the firing token alone, which
    /// would otherwise not be shown at all. Activations are this feature's on each token
    /// when stored, else the example's own on the firing token and 0 elsewhere.
    pub fn shown_context(&self) -> (std::borrow::Cow<'_, [String]>, Option<usize>, Vec<f32>) {
        if self.context_tokens.is_empty() {
            let only = vec![self.token.clone()];
            return (
                std::borrow::Cow::Owned(only),
                Some(0),
                vec![self.activation],
            );
        }
        let at = self.token_index_in_context();
        let acts = if self.metadata.context_activations.len() == self.context_tokens.len() {
            self.metadata.context_activations.clone()
        } else {
            (0..self.context_tokens.len())
                .map(|i| if Some(i) == at { self.activation } else { 0.0 })
                .collect()
        };
        (std::borrow::Cow::Borrowed(&self.context_tokens), at, acts)
    }
}

/// Written as the derived form would be, except that a `context_start` that does not place
/// the token in a non-empty context (inferred for an example of the original library whose
/// context lacks its token) is left out: written, it would be refused when read back. An
/// example without a sequence index (the original library's) also leaves out what reading
/// it back would fill in alike — a `context_start` equal to the inferred one, empty
/// `context_activations` — so that such a file is written back as it was read.
impl Serialize for FeatureActivation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename = "FeatureActivation")]
        struct Out<'a> {
            feature_id: u64,
            token: &'a str,
            position: u32,
            activation: f32,
            context: &'a str,
            context_tokens: &'a [String],
            metadata: OutMetadata<'a>,
        }
        #[derive(Serialize)]
        struct OutMetadata<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            sequence: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            context_start: Option<u32>,
            #[serde(skip_serializing_if = "Option::is_none")]
            context_activations: Option<&'a [f32]>,
            #[serde(flatten)]
            extra: &'a Map<String, Value>,
        }
        let m = &self.metadata;
        let placed = self.context_tokens.is_empty() || self.token_index_in_context().is_some();
        let original = m.sequence.is_none();
        let implied_start = original
            && m.context_start
                == infer_context_start(self.position, &self.context_tokens, &self.token);
        let implied_activations = original && m.context_activations.is_empty();
        Out {
            feature_id: self.feature_id,
            token: &self.token,
            position: self.position,
            activation: self.activation,
            context: &self.context,
            context_tokens: &self.context_tokens,
            metadata: OutMetadata {
                sequence: m.sequence,
                context_start: (placed && !implied_start).then_some(m.context_start),
                context_activations: (!implied_activations).then_some(&m.context_activations),
                extra: &m.extra,
            },
        }
        .serialize(s)
    }
}

/// A sparse view of the fixed-edge log histogram. With `B = bins_per_octave`, bin `b` lies in
/// octave `e = min_exponent + b / B` and covers `[2^e·(1 + j/B), 2^e·(1 + (j+1)/B))` with
/// `j = b mod B` — log-spaced octaves split linearly, which is what a float's exponent and top
/// mantissa bits give. Bin 0 also holds everything below, the last bin everything above.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "UncheckedHistogram")]
pub struct HistogramSummary {
    /// Bins per factor of two.
    pub bins_per_octave: u32,
    /// Exponent of the lower edge of bin 0.
    pub min_exponent: i32,
    /// Number of bins.
    pub n_bins: u32,
    /// Non-empty bins as `[bin, count]`.
    pub counts: Vec<(u32, u64)>,
}

/// A [`HistogramSummary`] as read, before [`HistogramSummary::try_from`] checks that its
/// bins exist: a file's bins are drawn and exported as they say.
#[derive(Deserialize)]
struct UncheckedHistogram {
    bins_per_octave: u32,
    min_exponent: i32,
    n_bins: u32,
    counts: Vec<(u32, u64)>,
}

/// Bins a stored histogram may declare (ours has 208); more is not a histogram of ours.
const MAX_HISTOGRAM_BINS: u32 = 1 << 16;

impl TryFrom<UncheckedHistogram> for HistogramSummary {
    type Error = String;
    fn try_from(h: UncheckedHistogram) -> Result<Self, String> {
        if h.bins_per_octave == 0 || h.n_bins == 0 || h.n_bins > MAX_HISTOGRAM_BINS {
            return Err(format!(
                "histogram of {} bins with {} per octave; expected 1 to {MAX_HISTOGRAM_BINS} bins and at least 1 per octave",
                h.n_bins, h.bins_per_octave
            ));
        }
        // Edges must be finite, positive floats (2^-1022 … 2^1023).
        let top_octave = h.min_exponent as i64 + (h.n_bins / h.bins_per_octave) as i64 + 1;
        if h.min_exponent < -1022 || top_octave > 1023 {
            return Err(format!(
                "histogram edges from 2^{} over {} bins fall outside the float range",
                h.min_exponent, h.n_bins
            ));
        }
        let mut last = None;
        for &(bin, _) in &h.counts {
            if bin >= h.n_bins {
                return Err(format!(
                    "histogram bin {bin} is outside its {} bins (0 to {})",
                    h.n_bins,
                    h.n_bins - 1
                ));
            }
            if last.is_some_and(|l| bin <= l) {
                return Err(format!(
                    "histogram bins must be listed once each in increasing order; bin {bin} follows bin {}",
                    last.unwrap_or(0)
                ));
            }
            last = Some(bin);
        }
        Ok(Self {
            bins_per_octave: h.bins_per_octave,
            min_exponent: h.min_exponent,
            n_bins: h.n_bins,
            counts: h.counts,
        })
    }
}

impl HistogramSummary {
    /// Lower edge of bin `b` (bin 0's edge is nominal: it also holds smaller values);
    /// `lower_edge(b + 1)` is bin `b`'s upper edge.
    pub fn lower_edge(&self, b: u32) -> f64 {
        let per = self.bins_per_octave.max(1);
        let octave = self.min_exponent as f64 + (b / per) as f64;
        2f64.powf(octave) * (1.0 + (b % per) as f64 / per as f64)
    }
}

/// Where in their sequences a feature fires (positions are 0-based).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PositionStats {
    /// Mean position of firings.
    pub mean: f64,
    /// Population variance of firing positions.
    pub variance: f64,
    /// Firings at positions < 5 (the original's buckets).
    pub start: u64,
    /// Firings at positions 5..20.
    pub early: u64,
    /// Firings at positions 20..50.
    pub middle: u64,
    /// Firings at positions ≥ 50.
    pub late: u64,
}

/// A token the feature fires on, with its corpus-wide count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenCount {
    /// Token as a person reads it. Counts are per string: with token-id input, every id that
    /// decodes to this string is counted here.
    pub token: String,
    /// Firings of the feature on this token (a lower bound when the sketch was not exact).
    pub firings: u64,
    /// Occurrences of the token among all tokens processed.
    pub occurrences: u64,
}

/// One of about ten equal-count groups of a feature's firings (bounded by histogram bin
/// edges), with examples from the feature's uniform sample that fall in it, for
/// quantile-stratified browsing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantileGroup {
    /// Lower activation edge of the group.
    pub min_activation: f64,
    /// Upper activation edge of the group (included for the last group).
    pub max_activation: f64,
    /// Firings in the group (exact).
    pub count: u64,
    /// Deterministic pseudo-random examples from the group.
    pub examples: Vec<FeatureActivation>,
}

/// Everything we know about a feature beyond the original's fields.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FeatureMetadata {
    /// Population standard deviation over all firings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std_activation: Option<f64>,
    /// Smallest firing activation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_activation: Option<f32>,
    /// Sum of firing activations (kept so dictionaries can be compared and merged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum_activation: Option<f64>,
    /// Non-finite (NaN/Inf) values seen for this feature; never folded into statistics.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nonfinite_count: u64,
    /// Quantiles (p10…p99.9): from the histogram (see `accumulate::histogram`), or exact
    /// when `quantiles_exact`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quantiles: BTreeMap<String, f64>,
    /// Whether `quantiles` are exact: every firing is among the top examples (a feature that
    /// fired at most `top_k` times), so they are computed from the values themselves, as
    /// numpy's default (linear) `quantile` does, rather than estimated from the histogram.
    #[serde(default, skip_serializing_if = "is_false")]
    pub quantiles_exact: bool,
    /// Fixed-edge log histogram of firing activations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<HistogramSummary>,
    /// Quantile-stratified examples.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quantile_examples: Vec<QuantileGroup>,
    /// Position statistics over all firings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positions: Option<PositionStats>,
    /// Tokens the feature fires on most, with corpus counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_tokens: Vec<TokenCount>,
    /// Distinct tokens fired on: exact when `token_counts_exact`, otherwise a HyperLogLog
    /// estimate (≈ 1.6 % standard error; see `accumulate::distinct`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_tokens: Option<u64>,
    /// Shannon entropy (bits) of the firing-token distribution: exact when
    /// `token_counts_exact`, otherwise estimated (the firings the token table no longer
    /// accounts for spread evenly over the distinct tokens it no longer holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_entropy: Option<f64>,
    /// Whether per-token firing counts are exact (the sketch never evicted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_counts_exact: Option<bool>,
    /// Scored labels (the original stores only their texts in `labels`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_details: Vec<Label>,
    /// Keys we do not know (kept so files round-trip).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn is_false(v: &bool) -> bool {
    !*v
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One SAE feature (the original's `Feature`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    /// Feature index.
    pub id: u64,
    /// Dimension of the feature's direction (d_in), 0 when unknown.
    pub dimension: usize,
    /// Encoder bias when known (the original's field).
    #[serde(default)]
    pub bias: f64,
    /// Firings over all tokens (activation ≥ min_activation).
    #[serde(default)]
    pub activation_count: u64,
    /// Mean activation over all firings.
    #[serde(default)]
    pub mean_activation: f64,
    /// Largest activation.
    #[serde(default)]
    pub max_activation: f64,
    /// activation_count / tokens processed.
    #[serde(default)]
    pub activation_frequency: f64,
    /// Top examples: activation desc, then sequence, then position.
    #[serde(default)]
    pub top_activations: Vec<FeatureActivation>,
    /// Label texts, best first.
    #[serde(default)]
    pub labels: Vec<String>,
    /// One readable sentence.
    #[serde(default)]
    pub description: String,
    /// Confidence of the best label.
    #[serde(default)]
    pub confidence: f64,
    /// Frequency class.
    #[serde(default = "default_type")]
    pub feature_type: FeatureType,
    /// Everything else we measured.
    #[serde(default)]
    pub metadata: FeatureMetadata,
}

fn default_type() -> FeatureType {
    FeatureType::Sparse
}

/// A [`Feature`] to serialize whose examples and metadata may be borrowed from elsewhere:
/// its JSON is exactly that of the `Feature` it describes (same fields, same order), so a
/// writer can take the large parts of a feature from another copy without cloning them.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FeatureView<'a> {
    /// [`Feature::id`].
    pub id: u64,
    /// [`Feature::dimension`].
    pub dimension: usize,
    /// [`Feature::bias`].
    pub bias: f64,
    /// [`Feature::activation_count`].
    pub activation_count: u64,
    /// [`Feature::mean_activation`].
    pub mean_activation: f64,
    /// [`Feature::max_activation`].
    pub max_activation: f64,
    /// [`Feature::activation_frequency`].
    pub activation_frequency: f64,
    /// [`Feature::top_activations`].
    pub top_activations: &'a [FeatureActivation],
    /// [`Feature::labels`].
    pub labels: &'a [String],
    /// [`Feature::description`].
    pub description: &'a str,
    /// [`Feature::confidence`].
    pub confidence: f64,
    /// [`Feature::feature_type`].
    pub feature_type: FeatureType,
    /// [`Feature::metadata`].
    pub metadata: &'a FeatureMetadata,
}

impl<'a> From<&'a Feature> for FeatureView<'a> {
    fn from(f: &'a Feature) -> Self {
        Self {
            id: f.id,
            dimension: f.dimension,
            bias: f.bias,
            activation_count: f.activation_count,
            mean_activation: f.mean_activation,
            max_activation: f.max_activation,
            activation_frequency: f.activation_frequency,
            top_activations: &f.top_activations,
            labels: &f.labels,
            description: &f.description,
            confidence: f.confidence,
            feature_type: f.feature_type,
            metadata: &f.metadata,
        }
    }
}

impl Feature {
    /// A feature that has not fired.
    pub fn new(id: u64, dimension: usize) -> Self {
        Self {
            id,
            dimension,
            bias: 0.0,
            activation_count: 0,
            mean_activation: 0.0,
            max_activation: 0.0,
            activation_frequency: 0.0,
            top_activations: Vec::new(),
            labels: Vec::new(),
            description: String::new(),
            confidence: 0.0,
            feature_type: FeatureType::Dead,
            metadata: FeatureMetadata::default(),
        }
    }

    /// The original's `get_top_tokens(n)`: tokens of the top `n` examples with activations.
    pub fn top_example_tokens(&self, n: usize) -> Vec<(&str, f32)> {
        self.top_activations
            .iter()
            .take(n)
            .map(|a| (a.token.as_str(), a.activation))
            .collect()
    }
}

/// Dictionary-wide facts stored in the feature set's `metadata`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FeatureSetMetadata {
    /// Format marker and version of the writer.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub format: String,
    /// Number of SAE features, dead ones included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_features: Option<usize>,
    /// Sequences processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_sequences: Option<u64>,
    /// Non-finite activation values skipped during the build.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nonfinite_values: u64,
    /// Occurrences of every token string in the corpus (ids that decode alike counted
    /// together), `[token, count]`, most common first — the denominators of label precision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_counts: Vec<(String, u64)>,
    /// Features left out of this file by an output filter (e.g. `--drop-dead`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub omitted_features: Vec<u64>,
    /// Keys we do not know (kept so files round-trip).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// All features of one SAE (the original's `FeatureSet`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSet {
    /// Layer the SAE reads.
    pub layer: i64,
    /// Features by id (JSON object keys are the ids as strings, as in the original).
    #[serde(with = "features_by_id")]
    pub features: BTreeMap<u64, Feature>,
    /// Tokens processed.
    #[serde(default)]
    pub total_tokens_processed: u64,
    /// Model name.
    #[serde(default)]
    pub model_name: String,
    /// SAE name.
    #[serde(default)]
    pub sae_name: String,
    /// Dictionary-wide facts.
    #[serde(default)]
    pub metadata: FeatureSetMetadata,
}

impl FeatureSet {
    /// The dictionary-wide fields alone (what a writer puts before or after the features),
    /// without cloning the features.
    pub fn without_features(&self) -> FeatureSet {
        FeatureSet {
            layer: self.layer,
            features: Default::default(),
            total_tokens_processed: self.total_tokens_processed,
            model_name: self.model_name.clone(),
            sae_name: self.sae_name.clone(),
            metadata: self.metadata.clone(),
        }
    }

    /// Number of features held.
    pub fn len(&self) -> usize {
        self.features.len()
    }

    /// Whether no feature is held.
    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    /// Counts of each feature type.
    pub fn type_counts(&self) -> BTreeMap<FeatureType, usize> {
        let mut counts: BTreeMap<FeatureType, usize> =
            FeatureType::ALL.iter().map(|t| (*t, 0)).collect();
        for f in self.features.values() {
            *counts.entry(f.feature_type).or_default() += 1;
        }
        counts
    }
}

mod features_by_id {
    use super::Feature;
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(map: &BTreeMap<u64, Feature>, s: S) -> Result<S::Ok, S::Error> {
        // Keys are written in numeric order (a BTreeMap<String> would sort "10" before "2").
        s.collect_map(map.iter().map(|(k, v)| (k.to_string(), v)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<u64, Feature>, D::Error> {
        let raw: BTreeMap<String, Feature> = BTreeMap::deserialize(d)?;
        raw.into_iter()
            .map(|(k, v)| {
                let id: u64 = k.parse().map_err(|_| {
                    D::Error::custom(format!("feature key {k:?} is not an integer id"))
                })?;
                Ok((id, v))
            })
            .collect()
    }
}
