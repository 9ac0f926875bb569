//! `ngram_analysis`: 1–3-grams ending at the firing token, scored like tokens against the
//! corpus n-gram counts.
//!
//! Evidence for 2- and 3-grams is `metadata.top_ngrams`, written by finalize when the
//! dictionary was built with n-grams on (`featdict build --ngrams`): per n-gram its tokens,
//! the feature's firings after it and its corpus occurrences. Counts are exact unless
//! `metadata.ngram_counts_exact` is false (bounds in [`crate::accumulate::ngrams`]:
//! firings are then lower bounds and occurrences upper bounds, so precision is never
//! overstated). 1-grams are the token labels; they are produced here only when
//! `token_frequency` is not run, so the same evidence is not listed twice.
//!
//! Label text: `ngram:` + the tokens joined as text (`ngram: of the` for byte-level BPE
//! tokens " of", " the"; `ngram:of the` for word tokens).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{
    scored_label, CorpusFacts, Counts, LabelOptions, Labeler, NGRAM_SKETCH_BOUNDS, SKETCH_BOUNDS,
};
use crate::accumulate::ngrams::{unpack, CorpusNgrams, NgramTable};
use crate::ingest::Vocab;
use crate::model::{Feature, Label, LabelingStrategy};

/// Key of the stored n-grams in `Feature.metadata`.
pub const TOP_NGRAMS_KEY: &str = "top_ngrams";
/// Key of the exactness flag in `Feature.metadata`.
pub const EXACT_KEY: &str = "ngram_counts_exact";

/// One stored n-gram: `[tokens, firings, occurrences]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NgramCount(
    /// Tokens, first to last (the last is the firing token).
    pub Vec<String>,
    /// Firings of the feature on the last token of this n-gram.
    pub u64,
    /// Occurrences of the n-gram among all tokens processed.
    pub u64,
);

/// Writes a feature's n-gram evidence (most firings first, then by text) into its metadata.
pub fn store_ngrams(f: &mut Feature, table: &NgramTable, corpus: &CorpusNgrams, vocab: &Vocab) {
    let mut rows: Vec<NgramCount> = table
        .entries()
        .map(|(key, firings)| {
            let tokens = unpack(key)
                .into_iter()
                .map(|t| vocab.token(t).into_owned())
                .collect();
            NgramCount(tokens, firings, corpus.get(key).max(firings))
        })
        .collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    f.metadata.extra.insert(
        TOP_NGRAMS_KEY.into(),
        serde_json::to_value(rows).expect("n-grams serialize"),
    );
    f.metadata.extra.insert(
        EXACT_KEY.into(),
        serde_json::Value::Bool(table.error == 0 && corpus.is_exact()),
    );
}

/// Whether a feature's stored n-gram counts are exact (`false` only when the build said so:
/// sketch bounds, see the module docs).
pub fn ngram_counts_exact(f: &Feature) -> bool {
    f.metadata.extra.get(EXACT_KEY) != Some(&serde_json::Value::Bool(false))
}

/// A feature's stored n-grams (empty when the dictionary was built without them).
pub fn stored_ngrams(f: &Feature) -> Vec<NgramCount> {
    f.metadata
        .extra
        .get(TOP_NGRAMS_KEY)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

/// The n-gram labeler.
#[derive(Debug, Clone)]
pub struct NgramAnalysis {
    facts: CorpusFacts,
    unigrams: bool,
}

impl NgramAnalysis {
    /// `unigrams`: also label single tokens (when token_frequency is not run).
    pub fn new(facts: CorpusFacts, unigrams: bool) -> Self {
        Self { facts, unigrams }
    }
}

impl Labeler for NgramAnalysis {
    fn strategy(&self) -> LabelingStrategy {
        LabelingStrategy::NgramAnalysis
    }

    fn label(&self, feature: &Feature, options: &LabelOptions) -> Vec<Label> {
        let sizes = &options.config.ngram_sizes;
        let total = feature.activation_count;
        // Each candidate with the note its counts need when they are not exact (1-grams
        // are the token counts).
        let mut cands: Vec<(Vec<String>, Counts, Option<&str>)> = Vec::new();
        if self.unigrams && sizes.contains(&1) {
            let note =
                (feature.metadata.token_counts_exact == Some(false)).then_some(SKETCH_BOUNDS);
            for t in &feature.metadata.top_tokens {
                cands.push((
                    vec![t.token.clone()],
                    Counts {
                        firings: t.firings,
                        occurrences: t.occurrences,
                        total_firings: total,
                    },
                    note,
                ));
            }
        }
        let note = (!ngram_counts_exact(feature)).then_some(NGRAM_SKETCH_BOUNDS);
        for NgramCount(tokens, firings, occurrences) in stored_ngrams(feature) {
            if sizes.contains(&tokens.len()) {
                cands.push((
                    tokens,
                    Counts {
                        firings,
                        occurrences,
                        total_firings: total,
                    },
                    note,
                ));
            }
        }
        cands.retain(|c| options.admits(&c.1));
        cands.sort_by(|a, b| a.1.cmp_best_first(&b.1, options.rank));
        // An n-gram that fires exactly where a shorter one ending it does (same firings,
        // same occurrences: the same positions) explains nothing more, and would only
        // repeat its evidence under another label ("ngram:\n\t Culture" beside
        // "token: Culture", both 8 of 8). The shortest such suffix stands in for it, in its
        // place in the ranking (ties would otherwise put an unrelated label there), unless
        // it is a token that token_frequency labels.
        let mut shorter: HashMap<&[String], (u64, u64)> = HashMap::new();
        if !self.unigrams {
            for t in &feature.metadata.top_tokens {
                shorter.insert(std::slice::from_ref(&t.token), (t.firings, t.occurrences));
            }
        }
        let ranked: HashMap<&[String], usize> = cands
            .iter()
            .enumerate()
            .map(|(i, (tokens, _, _))| (tokens.as_slice(), i))
            .collect();
        for (tokens, c, _) in &cands {
            shorter.insert(tokens, (c.firings, c.occurrences));
        }
        let mut placed = vec![false; cands.len()];
        let mut order = Vec::new();
        for (i, (tokens, c, _)) in cands.iter().enumerate() {
            let same = Some(&(c.firings, c.occurrences));
            let stand_in = (1..tokens.len())
                .rev()
                .map(|k| &tokens[k..])
                .find(|suffix| shorter.get(suffix) == same);
            let Some(j) = stand_in.map_or(Some(i), |s| ranked.get(s).copied()) else {
                continue; // token_frequency's label
            };
            if !std::mem::replace(&mut placed[j], true) {
                order.push(j);
            }
        }
        let mut cands: Vec<Option<_>> = cands.into_iter().map(Some).collect();
        order
            .into_iter()
            .take(options.config.max_labels.max(1) * 4)
            .filter_map(|j| cands[j].take())
            .map(|(tokens, c, note)| {
                let mut evidence = vec![format!(
                    "fires after {} of {} occurrences of {:?}; {} of {} firings",
                    c.firings, c.occurrences, tokens, c.firings, c.total_firings
                )];
                evidence.extend(note.map(String::from));
                scored_label(
                    format!("ngram:{}", self.facts.join(&tokens)),
                    LabelingStrategy::NgramAnalysis,
                    &c,
                    options.rank,
                    evidence,
                )
            })
            .collect()
    }
}
