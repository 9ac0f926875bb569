//! `featdict label` (and later the analysis commands): parse, call the library, print.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use feature_dictionary::analyze::embeddings::TokenEmbeddings;
use feature_dictionary::label::{self, manual, pattern, LabelOptions, Rank};
use feature_dictionary::model::LabelingStrategy;
use feature_dictionary::store;
use serde_json::json;

/// The options of automatic labeling, which `--set` and `--clear-manual` do not run.
const AUTOMATIC: [&str; 10] = [
    "strategies",
    "patterns",
    "embeddings",
    "embedding_vocab",
    "embedding_tensor",
    "rank",
    "min_confidence",
    "max_labels",
    "min_firings",
    "min_occurrences",
];

/// Arguments of `featdict label`.
#[derive(Args, Debug)]
pub struct LabelArgs {
    /// Dictionary file, labeled and written back unless --out is given: a .fdict in place
    /// (one transaction that rewrites only the features whose labels changed), a .json as a
    /// new file renamed over the old. A .fdict is read and labeled 1,024 features at a time
    /// (into an --out .fdict too), so millions of features take megabytes; a .json, or a
    /// .fdict labeled into a .json, is held whole. The settings of a labeling of all
    /// features (--strategies, --patterns, --min-confidence, --max-labels, --min-firings)
    /// are saved as the written dictionary's labeling config: they say how its labels were
    /// made, and they are the defaults of its next `featdict label`.
    dict: PathBuf,
    /// Only this feature (required with --set / --clear-manual).
    id: Option<u64>,
    /// Set a manual label on feature ID; automatic labeling never removes it. Runs no
    /// automatic labeling, so the options that tune it are refused beside it.
    #[arg(long, requires = "id", conflicts_with_all = AUTOMATIC)]
    set: Option<String>,
    /// Remove the manual labels of feature ID.
    #[arg(long, requires = "id", conflicts_with = "set", conflicts_with_all = AUTOMATIC)]
    clear_manual: bool,
    /// Strategies to run, comma-separated: token_frequency, ngram_analysis,
    /// pattern_matching, semantic_clustering (default: the dictionary's labeling config, normally
    /// token_frequency,ngram_analysis). ngram_analysis needs a dictionary built with --ngrams.
    #[arg(long, value_delimiter = ',')]
    strategies: Vec<String>,
    /// User patterns for pattern_matching: a TOML or JSON object of name = "regex" or
    /// name = { regex = "...", case_insensitive = true }. Patterns are case-sensitive unless
    /// they say otherwise and are matched against the token with surrounding spaces stripped.
    #[arg(long)]
    patterns: Option<PathBuf>,
    /// Token embeddings for semantic_clustering: a GGUF model (token list and
    /// token_embd.weight, F32/F16/Q8_0/Q4_0/Q4_1) or a safetensors [vocab, d] matrix (with
    /// --embedding-vocab). Adds semantic_clustering to the strategies.
    #[arg(long)]
    embeddings: Option<PathBuf>,
    /// Token strings of a safetensors embedding matrix: tokenizer.json or a JSON list (a
    /// GGUF file carries its own, and is refused with one).
    #[arg(long, requires = "embeddings")]
    embedding_vocab: Option<PathBuf>,
    /// Tensor name of the embedding matrix (default: token_embd.weight or a usual name).
    #[arg(long, requires = "embeddings")]
    embedding_tensor: Option<String>,
    /// How labels are ranked and what confidence means: f1 (of precision and recall) or
    /// precision (ties: more firings, then smaller token id).
    #[arg(long, default_value = "f1")]
    rank: Rank,
    /// Labels below this confidence (0..=1) are dropped (default: the dictionary's config, 0.3).
    #[arg(long)]
    min_confidence: Option<f64>,
    /// Automatic labels kept per feature, at least 1 (default: the dictionary's config, 5).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_labels: Option<u64>,
    /// Minimum firings on a candidate (default: the dictionary's config, 3).
    #[arg(long)]
    min_firings: Option<u64>,
    /// Candidates occurring fewer times in the corpus are ignored.
    #[arg(long, default_value_t = 1)]
    min_occurrences: u64,
    /// Write the labeled dictionary here instead of into DICT (another file: an --out that
    /// is DICT, or another input, is refused; leave --out out to label DICT itself).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

fn parse_strategy(s: &str) -> Result<LabelingStrategy> {
    Ok(match s.trim() {
        "token_frequency" => LabelingStrategy::TokenFrequency,
        "ngram_analysis" => LabelingStrategy::NgramAnalysis,
        "pattern_matching" => LabelingStrategy::PatternMatching,
        "semantic_clustering" => LabelingStrategy::SemanticClustering,
        "manual" => bail!("manual labels are set with `featdict label DICT ID --set TEXT`"),
        other => bail!(
            "unknown strategy {other:?}; expected token_frequency, ngram_analysis, pattern_matching or semantic_clustering"
        ),
    })
}

/// Whether the labels go back into DICT itself (no --out) and DICT is a `.fdict`: then only
/// what labeling changes is rewritten, in one transaction, instead of a whole new file.
fn labels_in_place(a: &LabelArgs) -> Result<bool> {
    Ok(a.out.is_none() && store::fdict::is_fdict(&a.dict)?)
}

/// Whether automatic labeling streams DICT, a `.fdict`, a chunk of features at a time
/// instead of loading it: into DICT itself (no --out) or into a copy (an --out `.fdict`).
fn streams(a: &LabelArgs) -> Result<bool> {
    let into_fdict = a
        .out
        .as_ref()
        .is_none_or(|out| out.extension().is_some_and(|e| e == "fdict"));
    Ok(into_fdict && store::fdict::is_fdict(&a.dict)?)
}

/// `featdict label`.
pub fn cmd_label(a: LabelArgs) -> Result<()> {
    use crate::commands::with_status;
    if let Some(out) = &a.out {
        // Checked before the labeling, which may take long.
        store::check_output(out)?;
        // As every command that writes a file: --out naming an input is refused (through
        // any path or link), DICT included; without --out the labels go into DICT.
        store::check_not_input(
            out,
            &crate::commands::given_inputs(&[
                ("dictionary", Some(&a.dict)),
                ("patterns file", a.patterns.as_ref()),
                ("embeddings", a.embeddings.as_ref()),
                ("embedding vocabulary", a.embedding_vocab.as_ref()),
            ]),
        )?;
    }
    let out = a.out.clone().unwrap_or_else(|| a.dict.clone());
    let in_place = labels_in_place(&a)?;
    if a.set.is_some() || a.clear_manual {
        let id = a.id.expect("clap requires ID");
        let (labels, what, wrote) = if in_place {
            let mut reader = store::fdict::FdictReader::open_rw(&a.dict)
                .with_context(|| format!("cannot read dictionary {}", a.dict.display()))?;
            let total = reader.summary().total_tokens_processed;
            let edited =
                reader.edit_labels(id, "no label was changed", |f| edit_manual(&a, f, total))?;
            let Some((f, (what, changed))) = edited else {
                bail!(crate::commands::not_in_fdict(&reader, &a.dict, id));
            };
            (f.labels, what, changed)
        } else if streams(&a)? {
            // Into another .fdict: a copy of DICT, edited as it streams by.
            let reader = store::fdict::FdictReader::open(&a.dict)
                .with_context(|| format!("cannot read dictionary {}", a.dict.display()))?;
            if reader.feature(id)?.is_none() {
                bail!(crate::commands::not_in_fdict(&reader, &a.dict, id));
            }
            let config = reader.load_some(&[])?.config;
            let total = reader.summary().total_tokens_processed;
            let bar = crate::commands::count_bar(
                reader.summary().stored_features as u64,
                format!("copying {} into {}", a.dict.display(), out.display()),
            );
            let mut edited = None;
            let copied = reader.relabel_into(
                &out,
                &config,
                |f| {
                    if f.id == id {
                        let (what, _) = edit_manual(&a, f, total)?;
                        edited = Some((f.labels.clone(), what));
                    }
                    Ok::<_, anyhow::Error>(())
                },
                |done| bar.set_position(done as u64),
            );
            bar.finish_and_clear();
            copied?;
            let (labels, what) = edited.expect("the feature is stored");
            (labels, what, true)
        } else {
            let mut dict = with_status(format!("reading {}", a.dict.display()), || {
                crate::commands::load(&a.dict)
            })?;
            let total = dict.feature_set.total_tokens_processed;
            if dict.get(id).is_none() {
                bail!(crate::commands::not_in_dict(&dict, &a.dict, id));
            }
            let f = dict.feature_set.features.get_mut(&id).expect("checked");
            let (what, changed) = edit_manual(&a, f, total)?;
            let labels = f.labels.clone();
            // Nothing changed and nothing to write elsewhere: the file is left as it was.
            if changed || out != a.dict {
                with_status(format!("writing {}", out.display()), || {
                    store::save(&dict, &out).with_context(|| format!("writing {}", out.display()))
                })?;
            }
            (labels, what, changed || out != a.dict)
        };
        if a.json {
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &json!({"id": id, "labels": labels, "output": out, "changed": wrote})
                )?
            );
        } else if wrote {
            println!("{what}; labels now {labels:?}; wrote {}", out.display());
        } else {
            println!(
                "{what}; labels now {labels:?}; {} left as it was",
                out.display()
            );
        }
        return Ok(());
    }

    let embeddings = match &a.embeddings {
        Some(path) => Some(TokenEmbeddings::load(
            path,
            a.embedding_tensor.as_deref(),
            a.embedding_vocab.as_deref(),
        )?),
        None => None,
    };
    let shown = if a.json { 10 } else { 5 };
    let mut seen = Seen::new(&a, shown);
    // Features whose rows were rewritten in place (`None`: a whole new file was written).
    let (report, rewritten, options) = if streams(&a)? {
        let mut reader = if a.out.is_none() {
            store::fdict::FdictReader::open_rw(&a.dict)
        } else {
            store::fdict::FdictReader::open(&a.dict)
        }
        .with_context(|| format!("cannot read dictionary {}", a.dict.display()))?;
        // The dictionary without its features: its config and corpus counts.
        let mut shell = reader.load_some(&[])?;
        let options = label_options(&a, &shell.config, reader.has_token_counts()?, &embeddings)?;
        let corpus = reader.corpus_tokens()?;
        let total = reader.summary().total_tokens_processed;
        let mut labeling = label::Labeling::new(&corpus, total, &options, embeddings.as_ref())?;
        if let Some(id) = a.id {
            if reader.feature(id)?.is_none() {
                bail!(crate::commands::not_in_fdict(&reader, &a.dict, id));
            }
        } else {
            shell.config.labeling = options.config.clone();
        }
        let rewritten = match (a.id, &a.out) {
            (Some(id), None) => {
                let mut changed = false;
                reader.edit_labels(id, "no labels were written", |f| {
                    let before = f.clone();
                    labeling.label(f);
                    changed = *f != before;
                    seen.visit(f);
                    Ok::<_, anyhow::Error>(())
                })?;
                usize::from(changed)
            }
            (_, out) => {
                let bar = crate::commands::count_bar(
                    reader.summary().stored_features as u64,
                    match out {
                        None => format!("labeling {} in place", a.dict.display()),
                        Some(out) => {
                            format!("labeling {} into {}", a.dict.display(), out.display())
                        }
                    },
                );
                let edit = |f: &mut feature_dictionary::model::Feature| {
                    if a.id.is_none_or(|id| id == f.id) {
                        labeling.label(f);
                        seen.visit(f);
                    }
                    Ok::<_, anyhow::Error>(())
                };
                let progress = |done| bar.set_position(done as u64);
                let rewritten = match out {
                    None => reader.relabel(&shell.config, edit, progress),
                    Some(out) => reader.relabel_into(out, &shell.config, edit, progress),
                }
                .with_context(|| format!("labeling {}", a.dict.display()));
                bar.finish_and_clear();
                rewritten?
            }
        };
        let rewritten = a.out.is_none().then_some(rewritten);
        (labeling.into_report(), rewritten, options)
    } else {
        let mut dict = with_status(format!("reading {}", a.dict.display()), || {
            crate::commands::load(&a.dict)
        })?;
        if let Some(id) = a.id {
            if dict.get(id).is_none() {
                bail!(crate::commands::not_in_dict(&dict, &a.dict, id));
            }
        }
        let options = label_options(&a, &dict.config, dict.has_token_counts(), &embeddings)?;
        let corpus = label::CorpusTokens::of(&dict);
        let total = dict.feature_set.total_tokens_processed;
        let mut labeling = label::Labeling::new(&corpus, total, &options, embeddings.as_ref())?;
        for (id, f) in dict.feature_set.features.iter_mut() {
            if a.id.is_none_or(|wanted| wanted == *id) {
                labeling.label(f);
                seen.visit(f);
            }
        }
        if a.id.is_none() {
            dict.config.labeling = options.config.clone();
        }
        with_status(format!("writing {}", out.display()), || {
            store::save(&dict, &out).with_context(|| format!("writing {}", out.display()))
        })?;
        (labeling.into_report(), None, options)
    };
    seen.note_missing_ngrams(&a, &options);
    let features = seen.shown;
    if a.json {
        let rows: Vec<_> = features
            .iter()
            .map(|f| json!({"id": f.id, "labels": f.metadata.label_details, "description": f.description}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"output": out, "report": report, "features": rows, "rewritten_in_place": rewritten})
            )?
        );
        return Ok(());
    }
    let wrote = match rewritten {
        Some(n) => format!(
            "rewrote the labels of {n} of them in {} in place",
            out.display()
        ),
        None => format!("wrote {}", out.display()),
    };
    println!(
        "labeled {} of {} features ({} with manual labels); {wrote}",
        report.labeled, report.features, report.manual,
    );
    let c = &options.config;
    let strategies: Vec<&str> = c.strategies.iter().map(|s| s.as_str()).collect();
    println!(
        "  settings: {}, min confidence {}, at most {} labels, min firings {}{}",
        strategies.join(","),
        c.min_confidence,
        c.max_labels,
        c.min_token_frequency,
        if a.id.is_none() {
            " (saved as the dictionary's labeling config: the defaults of its next labeling)"
        } else {
            ""
        }
    );
    for (s, n) in &report.per_strategy {
        println!("  {s:<20} {n} labels");
    }
    for f in features {
        println!("  #{}: {}", f.id, crate::print::visible(&f.description));
    }
    Ok(())
}

/// `--set TEXT` or `--clear-manual` on one feature (then described anew: the description
/// names its best labels); says what it did, and whether it changed anything.
fn edit_manual(
    a: &LabelArgs,
    f: &mut feature_dictionary::model::Feature,
    total_tokens: u64,
) -> feature_dictionary::Result<(String, bool)> {
    let id = f.id;
    let what = if let Some(text) = &a.set {
        // The server's label form refuses these texts; a label set here must be one it
        // could also have taken (and an empty one would show as a blank label).
        let text = store::fdict::validate_label(text)?;
        manual::check_room_for(f, &text)?;
        manual::set_manual_label(f, &text);
        format!("set manual label {text:?} on feature {id}")
    } else {
        match manual::clear_manual_labels(f) {
            // Its description too stays as it was (an original-library file's own text).
            0 => return Ok((format!("feature {id} has no manual label"), false)),
            n => format!("removed {n} manual label(s) from feature {id}"),
        }
    };
    label::manual::describe_after_edit(f, total_tokens);
    Ok((what, true))
}

/// What the summary shows of the labeled features, gathered as they go by: feature ID, or
/// the first `n` labeled; and whether any held n-gram counts.
struct Seen {
    id: Option<u64>,
    n: usize,
    shown: Vec<feature_dictionary::model::Feature>,
    with_ngrams: bool,
    visited: usize,
}

impl Seen {
    fn new(a: &LabelArgs, n: usize) -> Self {
        Self {
            id: a.id,
            n,
            shown: Vec::new(),
            with_ngrams: false,
            visited: 0,
        }
    }

    fn visit(&mut self, f: &feature_dictionary::model::Feature) {
        self.visited += 1;
        self.with_ngrams |= f.metadata.extra.contains_key(label::ngram::TOP_NGRAMS_KEY);
        let wanted = match self.id {
            Some(id) => id == f.id,
            None => !f.labels.is_empty() && self.shown.len() < self.n,
        };
        if wanted {
            self.shown.push(f.clone());
        }
    }

    /// Asked (or by default) for n-gram labels of features without n-gram counts: says what
    /// that added, so that a default run does not leave one of its two strategies silent.
    fn note_missing_ngrams(&self, a: &LabelArgs, options: &LabelOptions) {
        let asked = &options.config.strategies;
        if self.visited == 0
            || self.with_ngrams
            || !asked.contains(&LabelingStrategy::NgramAnalysis)
        {
            return;
        }
        // Without token_frequency, ngram_analysis still labels single tokens (1-grams).
        let adds = if asked.contains(&LabelingStrategy::TokenFrequency)
            || !options.config.ngram_sizes.contains(&1)
        {
            "adds nothing"
        } else {
            "adds only single-token (1-gram) labels"
        };
        let what = match a.id {
            Some(id) => format!("feature {id} of {}", a.dict.display()),
            None => a.dict.display().to_string(),
        };
        let which = if a.strategies.is_empty() {
            "the default ngram_analysis"
        } else {
            "ngram_analysis"
        };
        eprintln!(
            "note: {what} has no n-gram counts (build with --ngrams, e.g. --ngrams 4096); {which} {adds}"
        );
    }
}

/// Adds `strategy` unless it is there: giving its input (patterns, embeddings) asks for it.
fn ensure_strategy(strategies: &mut Vec<LabelingStrategy>, strategy: LabelingStrategy) {
    if !strategies.contains(&strategy) {
        strategies.push(strategy);
    }
}

/// The labeling options of the command line over the dictionary's own labeling `config`;
/// refuses a dictionary without per-token counts (`has_token_counts`), which labels are
/// scored by.
fn label_options(
    a: &LabelArgs,
    config: &feature_dictionary::model::DictionaryConfig,
    has_token_counts: bool,
    embeddings: &Option<TokenEmbeddings>,
) -> Result<LabelOptions> {
    // Labels are scored by per-token firing counts over the corpus; a file without any (the
    // original library's) would come out with every computed label gone.
    if !has_token_counts {
        bail!(
            "{}: this dictionary holds no per-token firing counts (a file of the original library, or a dictionary of no tokens), which labels are scored by; its labels are left as they are. Build it again with `featdict build` to label it, or set manual labels with `featdict label DICT ID --set TEXT`",
            a.dict.display()
        );
    }
    let mut options = LabelOptions {
        config: config.labeling.clone(),
        min_occurrences: a.min_occurrences,
        rank: a.rank,
    };
    if !a.strategies.is_empty() {
        options.config.strategies = a
            .strategies
            .iter()
            .map(|s| parse_strategy(s))
            .collect::<Result<_>>()?;
    }
    if let Some(path) = &a.patterns {
        let user = pattern::load_patterns(path)?;
        options.config.patterns.extend(user);
        ensure_strategy(
            &mut options.config.strategies,
            LabelingStrategy::PatternMatching,
        );
    }
    if embeddings.is_some() {
        ensure_strategy(
            &mut options.config.strategies,
            LabelingStrategy::SemanticClustering,
        );
    } else if a.strategies.is_empty()
        && options
            .config
            .strategies
            .contains(&LabelingStrategy::SemanticClustering)
    {
        // The strategies stored by an earlier `--embeddings` run: without embeddings now,
        // that one cannot run, and labeling again must not fail for it.
        options
            .config
            .strategies
            .retain(|&s| s != LabelingStrategy::SemanticClustering);
        eprintln!(
            "note: {} was labeled with semantic_clustering before (--embeddings); without --embeddings this run leaves it out, and its semantic labels are replaced",
            a.dict.display()
        );
    } else if options
        .config
        .strategies
        .contains(&LabelingStrategy::SemanticClustering)
    {
        bail!(
            "{}: --strategies semantic_clustering needs token embeddings (--embeddings FILE: a GGUF model, or a safetensors matrix with --embedding-vocab)",
            a.dict.display()
        );
    }
    if let Some(v) = a.min_confidence {
        options.config.min_confidence = v;
    }
    if let Some(v) = a.max_labels {
        options.config.max_labels = usize::try_from(v).unwrap_or(usize::MAX);
    }
    if let Some(v) = a.min_firings {
        options.config.min_token_frequency = v;
    }
    Ok(options)
}
