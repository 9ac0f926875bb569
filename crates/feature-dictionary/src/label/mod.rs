//! Label: name features from evidence measured over the **whole** corpus.
//!
//! Every automatic label is a hypothesis "the feature fires on X" scored like a classifier:
//!
//! * precision = firings on X / occurrences of X in the corpus,
//! * recall    = firings on X / all firings of the feature,
//! * confidence = F1 = 2·P·R / (P + R) by default ([`Rank::F1`]), or the precision itself
//!   ([`Rank::Precision`], the definition of the real-data ground truth).
//!
//! So a token that is common everywhere (" the") gets a low precision and no longer labels
//! every feature, and a rare token the feature fires on once gets a low recall.
//!
//! One [`Labeler`] per [`LabelingStrategy`], one file each:
//!
//! | strategy              | file                   | evidence                                    |
//! |-----------------------|------------------------|---------------------------------------------|
//! | `token_frequency`     | [`token_frequency`]    | `metadata.top_tokens` (exact per-token counts) |
//! | `ngram_analysis`      | [`ngram`]              | `metadata.top_ngrams` (built with n-grams on) |
//! | `pattern_matching`    | [`pattern`]            | top tokens + corpus `token_counts` through regexes |
//! | `semantic_clustering` | [`semantic`]           | top tokens clustered by token embeddings    |
//! | `manual`              | [`manual`]             | a person; never replaced by automatic labels |
//!
//! [`describe`] writes one sentence per feature. [`Labeling`] runs the chosen strategies on
//! one feature at a time and writes its `Feature.labels` (texts, best first),
//! `Feature.confidence`, `Feature.metadata.label_details` and `Feature.description`; all it
//! needs of the rest of the dictionary is [`CorpusTokens`], so a `.fdict` too large to hold
//! is labeled as it streams by. [`label_dictionary`] labels a dictionary held in memory.

pub mod describe;
pub mod manual;
pub mod ngram;
pub mod pattern;
pub mod semantic;
pub mod token_frequency;

use crate::analyze::embeddings::TokenEmbeddings;
use crate::dictionary::FeatureDictionary;
use crate::error::{Error, Result};
use crate::model::{Feature, Label, LabelingConfig, LabelingStrategy};

/// How candidate labels are ranked (and what `Label::confidence` holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rank {
    /// F1 of precision and recall: a label must both predict the feature and cover it.
    #[default]
    F1,
    /// Precision first, ties by more firings (then by the order of the evidence, which for
    /// tokens is ascending token id): the definition used by `truth.json`.
    Precision,
}

impl std::str::FromStr for Rank {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f1" => Ok(Rank::F1),
            "precision" => Ok(Rank::Precision),
            _ => Err(format!("unknown ranking {s:?}; expected f1 or precision")),
        }
    }
}

/// Scored evidence for one candidate: `firings` of the feature on it, its `occurrences` in
/// the corpus, and the feature's total firings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counts {
    /// Firings of the feature on the candidate.
    pub firings: u64,
    /// Occurrences of the candidate among all tokens processed.
    pub occurrences: u64,
    /// All firings of the feature.
    pub total_firings: u64,
}

impl Counts {
    /// firings / occurrences (0 when the candidate never occurs).
    pub fn precision(&self) -> f64 {
        ratio(self.firings, self.occurrences)
    }

    /// firings / all firings of the feature.
    pub fn recall(&self) -> f64 {
        ratio(self.firings, self.total_firings)
    }

    /// F1 of precision and recall.
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }

    /// The confidence under `rank`.
    pub fn confidence(&self, rank: Rank) -> f64 {
        match rank {
            Rank::F1 => self.f1(),
            Rank::Precision => self.precision(),
        }
    }

    /// Orders by `rank`, best first. Precisions are compared exactly as fractions
    /// (`a/b > c/d ⇔ a·d > c·b`), so equal ratios tie and fall through to more firings.
    pub fn cmp_best_first(&self, other: &Counts, rank: Rank) -> std::cmp::Ordering {
        match rank {
            Rank::Precision => {
                let lhs = other.firings as u128 * self.occurrences as u128;
                let rhs = self.firings as u128 * other.occurrences as u128;
                lhs.cmp(&rhs).then(other.firings.cmp(&self.firings))
            }
            Rank::F1 => other
                .f1()
                .total_cmp(&self.f1())
                .then(other.firings.cmp(&self.firings)),
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// What automatic labeling does, beyond the original's [`LabelingConfig`].
#[derive(Debug, Clone, PartialEq)]
pub struct LabelOptions {
    /// The original's knobs: `min_token_frequency` (minimum firings on a candidate),
    /// `max_labels`, `min_confidence`, `ngram_sizes`, `strategies`, `patterns` (user regexes).
    pub config: LabelingConfig,
    /// Candidates occurring fewer times than this in the corpus are ignored (their precision
    /// is noise). Default 1.
    pub min_occurrences: u64,
    /// How candidates are ranked and what confidence means.
    pub rank: Rank,
}

impl Default for LabelOptions {
    fn default() -> Self {
        Self {
            config: LabelingConfig::default(),
            min_occurrences: 1,
            rank: Rank::F1,
        }
    }
}

impl LabelOptions {
    /// Whether a candidate passes the count filters.
    pub fn admits(&self, c: &Counts) -> bool {
        c.firings > 0
            && c.firings >= self.config.min_token_frequency
            && c.occurrences >= self.min_occurrences
    }
}

/// One labeling strategy. Labelers that need corpus-wide facts (pattern occurrence counts,
/// embeddings) take them when they are constructed, so labeling one feature is cheap.
pub trait Labeler: Send + Sync {
    /// Which strategy this is.
    fn strategy(&self) -> LabelingStrategy;
    /// Candidate labels for `feature`, best first, already filtered by the options' counts
    /// (not yet by `min_confidence` / `max_labels`, which [`combine`] applies).
    fn label(&self, feature: &Feature, options: &LabelOptions) -> Vec<Label>;
}

/// Evidence added to a label whose firing counts come from a sketch (a feature's token table
/// past its capacity): they may be lower than the truth, so precision and recall may be too.
pub const SKETCH_BOUNDS: &str = "firing counts are sketch lower bounds";

/// [`SKETCH_BOUNDS`] for n-gram counts, whose corpus occurrences may be sketched too.
pub const NGRAM_SKETCH_BOUNDS: &str =
    "counts are sketch bounds: firings at least, occurrences at most";

/// Builds a scored label.
pub fn scored_label(
    text: String,
    strategy: LabelingStrategy,
    counts: &Counts,
    rank: Rank,
    evidence: Vec<String>,
) -> Label {
    Label {
        text,
        strategy,
        confidence: counts.confidence(rank),
        precision: Some(counts.precision()),
        recall: Some(counts.recall()),
        evidence,
    }
}

/// The corpus's tokens as labelers see them: each token string and its occurrences among
/// all tokens processed. Taken from the dictionary's corpus `token_counts` (two ids that
/// decode to one string add up); a file without them (the original library's) falls back
/// to the union of the features' top tokens, whose `occurrences` are corpus counts, so
/// tokens no feature fired on are missed (and two ids of one string count as the larger).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CorpusTokens {
    occurrences: std::collections::HashMap<String, u64>,
}

impl CorpusTokens {
    /// The corpus tokens of a dictionary held in memory.
    pub fn of(dict: &FeatureDictionary) -> Self {
        let counts = &dict.feature_set.metadata.token_counts;
        if counts.is_empty() {
            Self::from_top_tokens(
                dict.features()
                    .flat_map(|f| f.metadata.top_tokens.iter())
                    .map(|t| (t.token.as_str(), t.occurrences)),
            )
        } else {
            Self::from_token_counts(counts.iter().map(|(t, c)| (t.as_str(), *c)))
        }
    }

    /// From corpus token counts: occurrences of one string add up.
    pub fn from_token_counts<'a>(counts: impl IntoIterator<Item = (&'a str, u64)>) -> Self {
        let mut occurrences = std::collections::HashMap::new();
        for (t, c) in counts {
            *occurrences.entry(t.to_string()).or_default() += c;
        }
        Self { occurrences }
    }

    /// From the features' top tokens: each carries the corpus count of its token, so a
    /// token listed by several features is counted once. Two token ids that decode to one
    /// string are listed with their own counts; the string keeps the largest, whatever the
    /// order they come in (a `.fdict` reads them in another order than memory does).
    pub fn from_top_tokens<'a>(tokens: impl IntoIterator<Item = (&'a str, u64)>) -> Self {
        let mut occurrences = std::collections::HashMap::<String, u64>::new();
        for (t, c) in tokens {
            let known = occurrences.entry(t.to_string()).or_default();
            *known = (*known).max(c);
        }
        Self { occurrences }
    }

    /// Each token string with its occurrences, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.occurrences.iter().map(|(t, &c)| (t.as_str(), c))
    }

    /// Distinct token strings known.
    pub fn len(&self) -> usize {
        self.occurrences.len()
    }

    /// Whether no token is known.
    pub fn is_empty(&self) -> bool {
        self.occurrences.is_empty()
    }
}

/// Corpus facts labelers share.
#[derive(Debug, Clone, Default)]
pub struct CorpusFacts {
    /// Whether tokens carry their own spaces (byte-level BPE), so n-grams are joined by
    /// concatenation rather than with spaces.
    pub tokens_carry_spaces: bool,
}

impl CorpusFacts {
    /// Reads the facts from the corpus's tokens.
    pub fn of(corpus: &CorpusTokens) -> Self {
        Self {
            tokens_carry_spaces: corpus
                .iter()
                .any(|(t, _)| crate::ingest::token_carries_space(t)),
        }
    }

    /// Joins tokens into readable text.
    pub fn join(&self, tokens: &[String]) -> String {
        crate::ingest::join_tokens(tokens.iter().map(String::as_str), self.tokens_carry_spaces)
    }
}

/// Builds the labelers for `options.config.strategies` (manual labels are never generated,
/// only kept). `embeddings` are needed by semantic clustering.
pub fn labelers(
    corpus: &CorpusTokens,
    options: &LabelOptions,
    embeddings: Option<&TokenEmbeddings>,
) -> Result<Vec<Box<dyn Labeler>>> {
    let facts = CorpusFacts::of(corpus);
    let mut out: Vec<Box<dyn Labeler>> = Vec::new();
    let strategies = &options.config.strategies;
    for s in strategies {
        match s {
            LabelingStrategy::TokenFrequency => {
                out.push(Box::new(token_frequency::TokenFrequency));
            }
            LabelingStrategy::NgramAnalysis => {
                out.push(Box::new(ngram::NgramAnalysis::new(
                    facts.clone(),
                    // Unigrams are token labels; only add them when token_frequency is off.
                    !strategies.contains(&LabelingStrategy::TokenFrequency),
                )));
            }
            LabelingStrategy::PatternMatching => {
                let mut specs = pattern::builtin_patterns();
                for (name, re) in &options.config.patterns {
                    specs.retain(|p| &p.name != name);
                    specs.push(pattern::PatternSpec {
                        name: name.clone(),
                        regex: re.clone(),
                        case_insensitive: false,
                    });
                }
                out.push(Box::new(pattern::PatternMatching::new(&specs, corpus)?));
            }
            LabelingStrategy::SemanticClustering => {
                let Some(emb) = embeddings else {
                    return Err(crate::Error::Invalid(
                        "semantic_clustering needs token embeddings (--embeddings FILE: a GGUF model, or a safetensors matrix with --embedding-vocab)".into(),
                    ));
                };
                out.push(Box::new(semantic::SemanticClustering::new(emb.clone())));
            }
            LabelingStrategy::Manual => {}
        }
    }
    Ok(out)
}

/// Merges the strategies' candidates for one feature: manual labels first (kept as they
/// are), then automatic ones by confidence (ties by strategy order), filtered by
/// `min_confidence`, at most `max_labels`, and without duplicate texts. Also returns the
/// automatic labels that a manual label of the same text hides (see
/// [`manual::AUTOMATIC_UNDER_MANUAL_KEY`]).
pub fn combine(
    existing: &[Label],
    candidates: Vec<Label>,
    options: &LabelOptions,
) -> (Vec<Label>, Vec<Label>) {
    let mut out: Vec<Label> = existing
        .iter()
        .filter(|l| l.strategy == LabelingStrategy::Manual)
        .cloned()
        .collect();
    let mut auto: Vec<Label> = candidates
        .into_iter()
        .filter(|l| l.confidence >= options.config.min_confidence)
        .collect();
    // Stable: equal confidences keep the strategies' own best-first order.
    auto.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    let mut n_auto = 0;
    let mut hidden: Vec<Label> = Vec::new();
    for l in auto {
        if n_auto >= options.config.max_labels {
            break;
        }
        if let Some(o) = out.iter().find(|o| o.text == l.text) {
            // A label hidden under a manual one keeps its place among the automatic ones:
            // removing the manual label must not give the feature one more than allowed.
            if o.strategy == LabelingStrategy::Manual && !hidden.iter().any(|h| h.text == l.text) {
                hidden.push(l);
                n_auto += 1;
            }
            continue;
        }
        out.push(l);
        n_auto += 1;
    }
    (out, hidden)
}

/// Writes `labels` into the feature: texts, confidence of the best one, details.
pub fn apply(feature: &mut Feature, labels: Vec<Label>) {
    feature.labels = labels.iter().map(|l| l.text.clone()).collect();
    feature.confidence = labels.first().map_or(0.0, |l| l.confidence);
    feature.metadata.label_details = labels;
}

/// What [`label_dictionary`] did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LabelReport {
    /// Features looked at.
    pub features: usize,
    /// Features that have at least one label afterwards.
    pub labeled: usize,
    /// Features holding a manual label (kept).
    pub manual: usize,
    /// Labels written, per strategy.
    pub per_strategy: std::collections::BTreeMap<String, usize>,
}

/// Labels features one at a time, so a dictionary too large to hold can be labeled as it
/// streams by (a `.fdict` in place): the labelers are built once from what they need of
/// the whole corpus ([`CorpusTokens`]), then each feature needs only itself.
pub struct Labeling<'a> {
    labelers: Vec<Box<dyn Labeler>>,
    options: &'a LabelOptions,
    total_tokens: u64,
    report: LabelReport,
}

impl<'a> Labeling<'a> {
    /// Checks `options` and builds the labelers of its strategies over `corpus`;
    /// `total_tokens` (all tokens processed) goes into the descriptions.
    pub fn new(
        corpus: &CorpusTokens,
        total_tokens: u64,
        options: &'a LabelOptions,
        embeddings: Option<&TokenEmbeddings>,
    ) -> Result<Self> {
        // The config is stored in the dictionary: a NaN would be written as `null`, which no
        // reader takes back, so the labeled file could not be opened again.
        let c = options.config.min_confidence;
        if !(0.0..=1.0).contains(&c) {
            return Err(Error::Invalid(format!(
                "min_confidence must be a number in 0..=1 (a label's confidence is an F1 or a precision), got {c}"
            )));
        }
        Ok(Self {
            labelers: labelers(corpus, options, embeddings)?,
            options,
            total_tokens,
            report: LabelReport::default(),
        })
    }

    /// Labels `f` (manual labels are kept and stay first), describes it, and counts it in
    /// the report.
    pub fn label(&mut self, f: &mut Feature) {
        let mut candidates = Vec::new();
        for l in &self.labelers {
            candidates.extend(l.label(f, self.options));
        }
        let (labels, hidden) = combine(&f.metadata.label_details, candidates, self.options);
        manual::set_hidden_automatic(f, hidden);
        let report = &mut self.report;
        report.features += 1;
        report.labeled += !labels.is_empty() as usize;
        report.manual += labels
            .iter()
            .any(|l| l.strategy == LabelingStrategy::Manual) as usize;
        for l in &labels {
            *report
                .per_strategy
                .entry(l.strategy.as_str().to_string())
                .or_default() += 1;
        }
        apply(f, labels);
        f.description = describe::describe(f, self.total_tokens);
    }

    /// What was labeled so far.
    pub fn report(&self) -> &LabelReport {
        &self.report
    }

    /// The report of everything labeled.
    pub fn into_report(self) -> LabelReport {
        self.report
    }
}

/// Labels every feature of `dict` with the strategies of `options` and writes a description
/// for each. Manual labels are kept and stay first.
pub fn label_dictionary(
    dict: &mut FeatureDictionary,
    options: &LabelOptions,
    embeddings: Option<&TokenEmbeddings>,
) -> Result<LabelReport> {
    let corpus = CorpusTokens::of(dict);
    let mut labeling = Labeling::new(
        &corpus,
        dict.feature_set.total_tokens_processed,
        options,
        embeddings,
    )?;
    for f in dict.feature_set.features.values_mut() {
        labeling.label(f);
    }
    dict.config.labeling = options.config.clone();
    Ok(labeling.into_report())
}
