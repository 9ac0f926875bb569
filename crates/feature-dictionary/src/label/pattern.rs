//! `pattern_matching`: regexes over the firing token, scored over token-level counts.
//!
//! A pattern's corpus occurrences are the occurrences of every corpus token it matches
//! (`FeatureSet.metadata.token_counts`); its firings are the feature's firings on the tokens
//! it matches (`metadata.top_tokens`). Precision and recall then follow as for tokens.
//!
//! Matching: the token with surrounding whitespace stripped (" The" → "The"); a token that is
//! only whitespace is matched as is, so `whitespace` can match. Patterns are case-sensitive
//! unless they say otherwise — `uppercase` (`^[A-Z]+$`) does not match "the" (the original
//! matched every pattern case-insensitively). The word-list patterns `article`, `pronoun`
//! and `preposition` are written case-insensitive on purpose (`(?i)`), so "The" is an article.
//! User patterns (`--patterns FILE`) are TOML or JSON objects: `name = "regex"` or
//! `name = { regex = "...", case_insensitive = true }`; a user pattern replaces a built-in one
//! of the same name.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use regex::Regex;
use serde::Deserialize;

use super::{scored_label, CorpusTokens, Counts, LabelOptions, Labeler};
use crate::error::{Error, Result};
use crate::model::{Feature, Label, LabelingStrategy};

/// A named regex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternSpec {
    /// Name used in the label (`pattern:<name>`).
    pub name: String,
    /// Regex (Rust `regex` syntax).
    pub regex: String,
    /// Match ignoring case.
    pub case_insensitive: bool,
}

impl PatternSpec {
    fn new(name: &str, regex: &str, case_insensitive: bool) -> Self {
        Self {
            name: name.into(),
            regex: regex.into(),
            case_insensitive,
        }
    }

    /// The regex with the case flag folded in (`(?i)` prefix), as stored in
    /// `LabelingConfig.patterns`.
    pub fn folded(&self) -> String {
        if self.case_insensitive {
            format!("(?i){}", self.regex)
        } else {
            self.regex.clone()
        }
    }
}

/// The original's built-in patterns.
pub fn builtin_patterns() -> Vec<PatternSpec> {
    vec![
        PatternSpec::new("number", r"^\d+$", false),
        PatternSpec::new("punctuation", r"^[^\w\s]+$", false),
        PatternSpec::new("uppercase", r"^[A-Z]+$", false),
        PatternSpec::new(
            "code_keyword",
            r"^(if|else|for|while|def|class|import|return|function|const|let|var)$",
            false,
        ),
        PatternSpec::new("whitespace", r"^\s+$", false),
        PatternSpec::new("article", r"^(a|an|the)$", true),
        PatternSpec::new(
            "pronoun",
            r"^(i|you|he|she|it|we|they|me|him|her|us|them)$",
            true,
        ),
        PatternSpec::new(
            "preposition",
            r"^(in|on|at|to|for|with|by|from|of|about)$",
            true,
        ),
    ]
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PatternEntry {
    Plain(String),
    Full {
        regex: String,
        #[serde(default)]
        case_insensitive: bool,
    },
}

/// Reads user patterns from a TOML (`.toml`) or JSON file (anything else), checking that
/// every regex compiles. Returns name → regex with the case flag folded in.
pub fn load_patterns(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let expected = "expected an object of name = \"regex\" or name = { regex = \"...\", case_insensitive = true }";
    let raw: BTreeMap<String, PatternEntry> = if path.extension().and_then(|e| e.to_str())
        == Some("toml")
    {
        toml::from_str(&text).map_err(|e| Error::format(path, format!("{expected}: {e}")))?
    } else {
        serde_json::from_str(&text).map_err(|e| Error::format(path, format!("{expected}: {e}")))?
    };
    let mut out = BTreeMap::new();
    for (name, entry) in raw {
        let spec = match entry {
            PatternEntry::Plain(regex) => PatternSpec {
                name: name.clone(),
                regex,
                case_insensitive: false,
            },
            PatternEntry::Full {
                regex,
                case_insensitive,
            } => PatternSpec {
                name: name.clone(),
                regex,
                case_insensitive,
            },
        };
        Regex::new(&spec.folded()).map_err(|e| {
            Error::format(path, format!("pattern {name:?} is not a valid regex: {e}"))
        })?;
        out.insert(name, spec.folded());
    }
    Ok(out)
}

/// The text a pattern sees for `token`.
pub fn match_text(token: &str) -> &str {
    let t = token.trim();
    if t.is_empty() {
        token
    } else {
        t
    }
}

/// The pattern labeler, with corpus occurrences of each pattern precomputed.
#[derive(Debug, Clone)]
pub struct PatternMatching {
    names: Vec<String>,
    regexes: Vec<Regex>,
    occurrences: Vec<u64>,
    /// Pattern indices matching each known token string.
    matches: HashMap<String, Vec<u32>>,
}

impl PatternMatching {
    /// Compiles `specs` and counts each pattern's occurrences in the corpus.
    pub fn new(specs: &[PatternSpec], corpus: &CorpusTokens) -> Result<Self> {
        let mut regexes = Vec::with_capacity(specs.len());
        for s in specs {
            regexes.push(Regex::new(&s.folded()).map_err(|e| {
                Error::Invalid(format!("pattern {:?} is not a valid regex: {e}", s.name))
            })?);
        }
        let mut occurrences = vec![0u64; specs.len()];
        let mut matches = HashMap::with_capacity(corpus.len());
        for (token, c) in corpus.iter() {
            let text = match_text(token);
            let hit: Vec<u32> = regexes
                .iter()
                .enumerate()
                .filter(|(_, r)| r.is_match(text))
                .map(|(i, _)| i as u32)
                .collect();
            for &i in &hit {
                occurrences[i as usize] += c;
            }
            matches.insert(token.to_string(), hit);
        }
        Ok(Self {
            names: specs.iter().map(|s| s.name.clone()).collect(),
            regexes,
            occurrences,
            matches,
        })
    }

    /// Counts of each pattern for `feature`: (pattern index, counts, matched tokens).
    pub fn pattern_counts(&self, feature: &Feature) -> Vec<(usize, Counts, Vec<String>)> {
        let mut firings = vec![0u64; self.names.len()];
        let mut examples: Vec<Vec<String>> = vec![Vec::new(); self.names.len()];
        for t in &feature.metadata.top_tokens {
            let owned;
            let hits: &[u32] = match self.matches.get(&t.token) {
                Some(h) => h,
                None => {
                    let text = match_text(&t.token);
                    owned = self
                        .regexes
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.is_match(text))
                        .map(|(i, _)| i as u32)
                        .collect::<Vec<_>>();
                    &owned
                }
            };
            for &i in hits {
                firings[i as usize] += t.firings;
                if examples[i as usize].len() < 5 {
                    examples[i as usize].push(t.token.clone());
                }
            }
        }
        (0..self.names.len())
            .filter(|&i| firings[i] > 0)
            .map(|i| {
                (
                    i,
                    Counts {
                        firings: firings[i],
                        occurrences: self.occurrences[i].max(firings[i]),
                        total_firings: feature.activation_count,
                    },
                    std::mem::take(&mut examples[i]),
                )
            })
            .collect()
    }
}

impl Labeler for PatternMatching {
    fn strategy(&self) -> LabelingStrategy {
        LabelingStrategy::PatternMatching
    }

    fn label(&self, feature: &Feature, options: &LabelOptions) -> Vec<Label> {
        let mut v: Vec<(usize, Counts, Vec<String>)> = self
            .pattern_counts(feature)
            .into_iter()
            .filter(|(_, c, _)| options.admits(c))
            .collect();
        v.sort_by(|a, b| a.1.cmp_best_first(&b.1, options.rank));
        v.into_iter()
            .map(|(i, c, ex)| {
                let mut evidence = vec![format!(
                    "fires on {} of {} tokens matching /{}/; {} of {} firings; e.g. {:?}",
                    c.firings,
                    c.occurrences,
                    self.regexes[i].as_str(),
                    c.firings,
                    c.total_firings,
                    ex
                )];
                // The firings are summed over the feature's top tokens.
                if feature.metadata.token_counts_exact == Some(false) {
                    evidence.push(super::SKETCH_BOUNDS.into());
                }
                scored_label(
                    format!("pattern:{}", self.names[i]),
                    LabelingStrategy::PatternMatching,
                    &c,
                    options.rank,
                    evidence,
                )
            })
            .collect()
    }
}
