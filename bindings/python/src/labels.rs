//! The Python package's labeling (`FeatureLabeler.label_feature` and `generate_description`
//! in `labeling.py`) computed in Rust over a finalized dictionary, so `finalize()` does not
//! have to build every feature's examples as Python objects just to label them.
//!
//! The Python code is the specification: this module gives the same labels, confidences,
//! stored `label_details` and descriptions (tests compare the two on the same features). It
//! differs from the engine's own `label` module (which the CLI uses) in the Python package's
//! documented choices — tokens merged and shown without surrounding whitespace, n-grams
//! counted over the stored examples — so only the scoring arithmetic ([`Counts`]) is shared.
//!
//! Pattern matching stays in Python (`re` semantics): the caller passes, for each pattern, the
//! set of token forms it matches and its corpus occurrences.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use rustc_hash::FxHashMap;

use feature_dictionary::label::Counts;
use feature_dictionary::model::{Feature, FeatureSet, Label, LabelingStrategy};
use serde::Deserialize;

/// What to label with: the `LabelingConfig` of the Python labeler plus its patterns, already
/// matched against every token form, and its manual labels.
#[derive(Debug, Deserialize)]
pub struct Plan {
    /// Strategies in the configured order (clustering is never passed: it stays in Python).
    pub strategies: Vec<LabelingStrategy>,
    /// Minimum firings on a token or pattern (a Python number, compared as such).
    pub min_token_frequency: f64,
    /// Labels kept per feature, manual ones included.
    pub max_labels: i64,
    /// Automatic labels below this confidence are dropped.
    pub min_confidence: f64,
    /// N-gram lengths; only those ≥ 2 produce n-gram labels.
    pub ngram_sizes: Vec<i64>,
    /// Patterns in the labeler's order.
    #[serde(default)]
    pub patterns: Vec<PatternPlan>,
    /// Manual labels by feature id (as a JSON object key).
    #[serde(default)]
    pub manual: HashMap<String, Vec<Label>>,
}

impl Plan {
    /// Python's `confidence >= min_confidence` (false for NaN on either side).
    fn keeps(&self, confidence: f64) -> bool {
        confidence >= self.min_confidence
    }
}

/// One pattern, matched in Python against every token form.
#[derive(Debug, Deserialize)]
pub struct PatternPlan {
    /// The pattern's name (label text `pattern:NAME`).
    pub name: String,
    /// Token forms (stripped tokens) the regex matches.
    pub matches: HashSet<String>,
    /// Occurrences in the corpus of all tokens it matches, when corpus counts are known.
    pub occurrences: Option<u64>,
}

/// Python's `str.strip()`: Rust's whitespace plus the four information separators
/// U+001C–U+001F, which Python counts as whitespace and Unicode does not.
/// The key a token is searched by (`search_by_token`): stripped as Python's `str.strip()`
/// does, except that a token of whitespace only stays itself — stripped, every such token
/// ("\n", "\t", " ") would be the empty string, and one search would find them all.
pub fn search_key(s: &str) -> &str {
    match py_strip(s) {
        "" => s,
        stripped => stripped,
    }
}

pub fn py_strip(s: &str) -> &str {
    // Most tokens start and end with a visible ASCII character: nothing to strip.
    let b = s.as_bytes();
    if let (Some(f), Some(l)) = (b.first(), b.last()) {
        if f.is_ascii_graphic() && l.is_ascii_graphic() {
            return s;
        }
    }
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// The form a token is merged and matched under: stripped, or itself when only whitespace.
pub fn token_key(s: &str) -> &str {
    let t = py_strip(s);
    if t.is_empty() {
        s
    } else {
        t
    }
}

/// Per stripped token: firings and corpus occurrences, in order of first appearance
/// (`FeatureLabeler._token_stats`).
fn token_stats(f: &Feature) -> Vec<(&str, u64, u64)> {
    let n = f.metadata.top_tokens.len().max(f.top_activations.len());
    let mut order: Vec<(&str, u64, u64)> = Vec::with_capacity(n);
    let mut index: FxHashMap<&str, usize> = FxHashMap::default();
    index.reserve(n);
    let mut add = |key, firings, occ| {
        let i = *index.entry(key).or_insert_with(|| {
            order.push((key, 0, 0));
            order.len() - 1
        });
        order[i].1 += firings;
        order[i].2 += occ;
    };
    if f.metadata.top_tokens.is_empty() {
        for a in &f.top_activations {
            add(token_key(&a.token), 1, 0);
        }
    } else {
        for t in &f.metadata.top_tokens {
            add(token_key(&t.token), t.firings, t.occurrences);
        }
    }
    order
}

/// `FeatureLabeler._scored`: F1 of precision and recall, or recall alone when the
/// occurrences are unknown (0). Labels below `min_confidence` are never kept, so they are
/// not built (a feature can fire on thousands of tokens); `text` and `evidence` are made
/// only for the others.
fn scored(
    plan: &Plan,
    strategy: LabelingStrategy,
    firings: u64,
    occurrences: u64,
    total: u64,
    text: impl FnOnce() -> (String, Vec<String>),
) -> Option<Label> {
    let c = Counts {
        firings,
        occurrences,
        total_firings: total,
    };
    let (confidence, precision) = if occurrences > 0 {
        (c.f1(), Some(c.precision()))
    } else {
        (c.recall(), None)
    };
    if !plan.keeps(confidence) {
        return None;
    }
    let (text, evidence) = text();
    Some(Label {
        text,
        strategy,
        confidence,
        precision,
        recall: Some(c.recall()),
        evidence,
    })
}

/// Firings the Python code divides by: `activation_count or len(top_activations)`.
fn total_firings(f: &Feature) -> u64 {
    if f.activation_count > 0 {
        f.activation_count
    } else {
        f.top_activations.len() as u64
    }
}

fn by_tokens(f: &Feature, stats: &[(&str, u64, u64)], plan: &Plan, out: &mut Vec<Label>) {
    let total = total_firings(f);
    out.extend(
        stats
            .iter()
            .filter(|(_, firings, _)| *firings as f64 >= plan.min_token_frequency)
            .filter_map(|&(tok, firings, occ)| {
                scored(
                    plan,
                    LabelingStrategy::TokenFrequency,
                    firings,
                    occ,
                    total,
                    || (format!("token:{tok}"), vec![tok.to_string()]),
                )
            }),
    );
}

fn by_patterns(f: &Feature, stats: &[(&str, u64, u64)], plan: &Plan, out: &mut Vec<Label>) {
    let total = total_firings(f);
    for p in &plan.patterns {
        let mut matched: Vec<&(&str, u64, u64)> =
            stats.iter().filter(|s| p.matches.contains(s.0)).collect();
        let firings: u64 = matched.iter().map(|s| s.1).sum();
        if (firings as f64) < plan.min_token_frequency || firings == 0 {
            continue;
        }
        let occ = p
            .occurrences
            .unwrap_or_else(|| matched.iter().map(|s| s.2).sum());
        let label = scored(
            plan,
            LabelingStrategy::PatternMatching,
            firings,
            occ,
            total,
            || {
                // Stable, like Python's sorted(): equal firings keep their order of appearance.
                matched.sort_by_key(|s| std::cmp::Reverse(s.1));
                let top = matched.iter().take(3).map(|s| s.0.to_string()).collect();
                (format!("pattern:{}", p.name), top)
            },
        );
        out.extend(label);
    }
}

/// N-grams (n ≥ 2) ending at the firing token over the stored examples (top and quantile
/// samples); confidence = share of the examples showing the n-gram.
fn by_ngrams(f: &Feature, plan: &Plan, out: &mut Vec<Label>) {
    let examples = f.top_activations.iter().chain(
        f.metadata
            .quantile_examples
            .iter()
            .flat_map(|g| g.examples.iter()),
    );
    let sizes: Vec<usize> = plan
        .ngram_sizes
        .iter()
        .filter(|&&n| n >= 2)
        .map(|&n| n as usize)
        .collect();
    let mut n_examples = 0u64;
    let mut counts: FxHashMap<Vec<&str>, u64> = FxHashMap::default();
    let mut gram: Vec<&str> = Vec::new();
    for ex in examples {
        n_examples += 1;
        let ctx = &ex.context_tokens;
        let Some(i) = ex.token_index_in_context() else {
            continue;
        };
        for &n in &sizes {
            if i + 1 >= n {
                gram.clear();
                gram.extend(ctx[i + 1 - n..=i].iter().map(|t| token_key(t)));
                match counts.get_mut(gram.as_slice()) {
                    Some(c) => *c += 1,
                    None => {
                        counts.insert(gram.clone(), 1);
                    }
                }
            }
        }
    }
    let min_count = f64::max(2.0, plan.min_token_frequency);
    for (gram, c) in counts {
        let confidence = c as f64 / n_examples as f64;
        if (c as f64) < min_count || !plan.keeps(confidence) {
            continue;
        }
        // Words with a space between, a WordPiece continuation onto its word, as
        // `labeling.py` joins them.
        let text = feature_dictionary::ingest::join_tokens(gram.iter().copied(), false);
        out.push(Label {
            text: format!("ngram:{text}"),
            strategy: LabelingStrategy::NgramAnalysis,
            confidence,
            precision: None,
            recall: None,
            evidence: vec![text],
        });
    }
}

/// The automatic labels of every configured strategy that reach `min_confidence`.
fn candidates(f: &Feature, plan: &Plan) -> Vec<Label> {
    let stats = token_stats(f);
    let mut labels: Vec<Label> = Vec::new();
    for s in &plan.strategies {
        match s {
            LabelingStrategy::TokenFrequency => by_tokens(f, &stats, plan, &mut labels),
            LabelingStrategy::NgramAnalysis => by_ngrams(f, plan, &mut labels),
            LabelingStrategy::PatternMatching => by_patterns(f, &stats, plan, &mut labels),
            LabelingStrategy::SemanticClustering | LabelingStrategy::Manual => {}
        }
    }
    labels
}

/// `FeatureLabeler.label_feature` for one feature: writes `labels`, `confidence` and
/// `metadata.label_details`.
pub fn label_feature(f: &mut Feature, plan: &Plan) {
    let mut labels = candidates(f, plan);
    // Python sorts by (-confidence, text); equal floats (0.0 and -0.0 included) tie.
    labels.sort_by(|a, b| {
        b.confidence
            .partial_cmp(&a.confidence)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.text.cmp(&b.text))
    });
    let mut seen = HashSet::new();
    labels.retain(|l| seen.insert(l.text.clone()));

    let given: &[Label] = plan
        .manual
        .get(&f.id.to_string())
        .map_or(&[], |v| v.as_slice());
    let given_texts: HashSet<&str> = given.iter().map(|l| l.text.as_str()).collect();
    let mut manual: Vec<Label> = given.to_vec();
    manual.extend(
        f.metadata
            .label_details
            .iter()
            .filter(|l| {
                l.strategy == LabelingStrategy::Manual && !given_texts.contains(l.text.as_str())
            })
            .cloned(),
    );
    let manual_texts: HashSet<String> = manual.iter().map(|l| l.text.clone()).collect();
    let room = (plan.max_labels - manual.len() as i64).max(0) as usize;
    let auto = labels
        .into_iter()
        .filter(|l| !manual_texts.contains(&l.text))
        .take(room);
    let mut result = manual;
    result.extend(auto);

    f.labels = result.iter().map(|l| l.text.clone()).collect();
    // Python's max(): the first of equal maxima, 0.0 without labels.
    let mut confidences = result.iter().map(|l| l.confidence);
    let first = confidences.next();
    f.confidence = first.map_or(0.0, |first| {
        confidences.fold(first, |best, c| if c > best { c } else { best })
    });
    f.metadata.label_details = result;
}

/// Python's `format(x, f".{prec}f")`: Rust rounds the exact binary value half to even like
/// Python; only the spelling of non-finite values differs.
fn py_fixed(x: f64, prec: usize) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{x:.prec$}")
    }
}

/// `FeatureLabeler.generate_description`: type, counts over all tokens, labels with
/// precision, top tokens.
pub fn describe(f: &Feature) -> String {
    let mut first = format!("A {} feature", f.feature_type.as_str());
    if f.activation_count > 0 {
        first += &format!(
            " that fired on {} token{} (frequency: {}, mean activation {}, max {})",
            f.activation_count,
            if f.activation_count == 1 { "" } else { "s" },
            py_fixed(f.activation_frequency, 4),
            py_fixed(f.mean_activation, 3),
            py_fixed(f.max_activation, 3)
        );
    }
    let mut parts = vec![first];
    if !f.labels.is_empty() {
        // A dict built from the details: the last of equal texts wins.
        let details: HashMap<&str, &Label> = f
            .metadata
            .label_details
            .iter()
            .map(|l| (l.text.as_str(), l))
            .collect();
        let shown: Vec<String> = f
            .labels
            .iter()
            .take(3)
            .map(
                |text| match details.get(text.as_str()).and_then(|d| d.precision) {
                    Some(p) => format!("{text} (precision {})", py_fixed(p, 2)),
                    None => text.clone(),
                },
            )
            .collect();
        parts.push(format!("Characterized by: {}", shown.join(", ")));
    }
    if !f.top_activations.is_empty() {
        let top: Vec<String> = f
            .top_activations
            .iter()
            .take(5)
            .map(|a| format!("'{}'", a.token))
            .collect();
        parts.push(format!("Top activating tokens: {}", top.join(", ")));
    }
    parts.join(". ") + "."
}

/// Labels and describes every feature of `set`, features split among `threads` threads
/// (each feature is labeled on its own, so the result does not depend on the split).
///
/// Gives up soon after `stop` is set (each thread looks at it before every feature), leaving
/// the set partly labeled: the caller then drops it.
pub fn label_set(set: &mut FeatureSet, plan: &Plan, threads: usize, stop: &AtomicBool) {
    let mut features: Vec<&mut Feature> = set.features.values_mut().collect();
    let chunk = features.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        for part in features.chunks_mut(chunk) {
            scope.spawn(move || {
                for f in part.iter_mut() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    label_feature(f, plan);
                    f.description = describe(f);
                }
            });
        }
    });
}

/// Every distinct token any feature fired on (what the pattern sets must cover).
pub fn firing_tokens(set: &FeatureSet) -> Vec<String> {
    let mut seen: HashSet<&str> = HashSet::new();
    for f in set.features.values() {
        if f.metadata.top_tokens.is_empty() {
            seen.extend(f.top_activations.iter().map(|a| a.token.as_str()));
        } else {
            seen.extend(f.metadata.top_tokens.iter().map(|t| t.token.as_str()));
        }
    }
    let mut v: Vec<String> = seen.into_iter().map(str::to_string).collect();
    v.sort();
    v
}
