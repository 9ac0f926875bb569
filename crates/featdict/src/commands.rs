//! Command-line definitions and their handlers.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use feature_dictionary::build::{self, BuildOptions, BuildTimings};
use feature_dictionary::dictionary::TopBy;
use feature_dictionary::model::{DictionaryConfig, FeatureType};
use feature_dictionary::{accumulate, ingest, store, FeatureDictionary};
use indicatif::{ProgressBar, ProgressStyle};

use crate::print;

/// Turn sparse-autoencoder activations into a searchable, labeled dictionary of features.
///
/// `featdict build` reads activations once, in bounded memory, and writes a dictionary;
/// the other commands read a dictionary (`.json`, or the native `.fdict`).
#[derive(Parser, Debug)]
#[command(name = "featdict", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// No progress displays: bars and spinners of reading, building, labeling, importing and
    /// writing (they show only when stderr is a terminal anyway). Warnings and notes still
    /// print.
    #[arg(long, short, global = true)]
    quiet: bool,
}

/// Set once from `--quiet` before a command runs; every progress display asks it.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether progress displays are off (`--quiet`).
pub(crate) fn quiet() -> bool {
    QUIET.load(std::sync::atomic::Ordering::Relaxed)
}

impl Cli {
    /// Whether the command runs the web server (which must outlive closed connections).
    pub fn serves(&self) -> bool {
        matches!(self.command, Command::Serve(_))
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build, label and summarize the bundled real demo dataset (data/demo: SmolLM2-135M
    /// residuals encoded by a TopK SAE, as a delphi latent cache with its tokenizer).
    Demo(crate::demo::DemoArgs),
    /// Build a dictionary from SAE activations and their tokens.
    ///
    /// ACTS is a dense NumPy array shaped [tokens, features] or [sequences, seq_len, features]
    /// (float32, float16 or float64). TOKENS is a JSON list of lists of token strings, one list
    /// per sequence; for a 2-D array the lists' lengths must add up to the number of rows.
    /// Every statistic is computed over all tokens in one pass; memory does not grow with
    /// the number of tokens.
    ///
    /// ACTS may also be a dense .safetensors tensor (F32/F16/BF16; --tensor NAME picks one),
    /// or a delphi latent cache: a `<start>_<end>.safetensors` shard or a directory of them
    /// (its `tokens` tensor supplies the tokens). Tokens may be token ids (--token-ids
    /// IDS.npy) shown as text with --tokenizer tokenizer.json. With --sae DIR, ACTS are
    /// residual activations encoded by that SAE (SAELens, Gemma Scope or EleutherAI
    /// sparsify) in-process, block by block.
    Build(BuildArgs),
    /// Encode residual activations with an SAE and write the latents as a delphi cache file.
    ///
    /// RESIDUALS is a dense .npy or .safetensors shaped [tokens, d_in] or [sequences, seq_len,
    /// d_in]; --sae DIR holds cfg.json + sae_weights.safetensors (SAELens: standard, jumprelu,
    /// topk, batchtopk, gated), a Gemma Scope params.npz, or cfg.json + sae.safetensors
    /// (EleutherAI sparsify, one directory per hookpoint such as layers.9/: topk or groupmax,
    /// autoencoder or transcoder). The output has `locations [N, 3]`
    /// (sequence, position, latent; uint16 when all < 65536 else uint32), `activations [N]`
    /// (float16, or float32 with --f32) and `tokens` when token ids are given. As delphi's
    /// cache, it stores only latents with |a| > 1e-5.
    Encode(EncodeArgs),
    /// Merge partial dictionaries (shards built with `featdict build … --out SHARD.fdpart`)
    /// and finalize them into one dictionary.
    ///
    /// Build each shard of a corpus (in other processes or on other machines) with the same
    /// extraction options and `--first-sequence` = the index of its first sequence in the
    /// corpus, then merge, in any order and in any tree of merges: the result is what one
    /// build over the shards' inputs, one after another, writes. Counts, extrema,
    /// histograms, top and sampled examples and token counts are exact (token and n-gram
    /// tables within their documented bounds once past their capacity); means and variances
    /// are summed in f64 and may differ from one pass in the last bits. Shards built without
    /// --first-sequence are each numbered from 0: a shard whose sequence indices collide with
    /// those merged before it is moved past them (so the order given is the corpus order),
    /// and only the quantile samples, drawn by sequence index, differ from one build's.
    /// Tokens are matched by their text and numbered by where they first occur, as one build
    /// numbers them. The shards must agree on the feature count, the extraction
    /// options (--top-k, --context, --min-activation, --samples-per-group, --token-capacity,
    /// --ngrams, --correlation, --correlation-capacity) and the model, SAE and layer names
    /// (or give them here). A single PARTIAL is simply finalized; an --out ending in .fdpart
    /// writes the merged state for a later merge (merging in a tree).
    Merge(MergeArgs),
    /// Print summary statistics of a dictionary.
    Stats(StatsArgs),
    /// Print one feature: statistics, histogram quantiles, top tokens and examples in context.
    Show(ShowArgs),
    /// List the top features by a metric.
    Top(TopArgs),
    /// Label features: token, n-gram and pattern labels scored by precision and recall over
    /// the whole corpus, manual labels (--set), and a one-sentence description per feature.
    Label(crate::label_cmds::LabelArgs),
    /// Features most similar to one: cosine of decoder directions with --sae, otherwise of
    /// firing-token profiles.
    Similar(crate::analyze_cmds::SimilarArgs),
    /// Features whose activations correlate with one over all tokens (dictionaries built
    /// with --correlation exact or sketch).
    Correlated(crate::analyze_cmds::CorrelatedArgs),
    /// Logit lens: the output tokens a feature's decoder direction promotes and suppresses.
    Logits(crate::analyze_cmds::LogitsArgs),
    /// Features whose firing tokens form two or more well-separated embedding clusters.
    Polysemantic(crate::analyze_cmds::PolysemanticArgs),
    /// Compare two features: statistics over all tokens, shared tokens and labels,
    /// token-profile cosine and (when stored) correlation.
    Compare(crate::analyze_cmds::CompareArgs),
    /// Write a dictionary in another format: seed JSON or Neuronpedia-style feature JSON.
    Export(ExportArgs),
    /// Convert a JSON dictionary into the native `.fdict` (SQLite) file.
    Import(ImportArgs),
    /// Search features by token, label substring, regex over top tokens, or full text.
    ///
    /// Exactly one of --token, --label, --pattern, --text. On a `.fdict` the search uses the
    /// file's indexes (FTS5 bm25 for --text) without loading the dictionary; on a `.json`
    /// it loads the dictionary and ranks the same way in memory.
    ///
    /// A dictionary without per-token counts (as files of the original library) has no top
    /// tokens: --token and --pattern then look at the firing tokens of its stored examples
    /// and rank by how many of them fire on the token (--by firings; --by precision is
    /// refused). The output says so: a `note:` line, and `"basis": "examples"` with --json
    /// (otherwise `"top_tokens"`).
    Search(SearchArgs),
    /// Browse a dictionary in a web browser: JSON API and HTML pages.
    ///
    /// Binds 127.0.0.1 unless --addr says otherwise. It answers only requests addressed to it:
    /// the Host header must be the address it listens on (any IP address with its port
    /// when that is 0.0.0.0 or ::), a loopback address or `localhost` with its port, or a
    /// name given by --allow-host; other names are refused (403), because a site that makes
    /// its own name resolve to this machine (DNS rebinding) could otherwise read and change
    /// the dictionary. Requests that change something (label POSTs) are refused too when the
    /// browser says they come from a page of another site (an Origin other than
    /// `http://HOST`, or Sec-Fetch-Site other than same-origin or none); programs such as
    /// curl send neither header and are served.
    ///
    /// A `.json` DICT is first converted into a
    /// sibling `.fdict` (same name, `.fdict` extension) that holds manual labels; an existing
    /// sibling is reused so labels survive restarts, unless the JSON changed since it was
    /// converted (a different size or modification time than recorded in it, or newer than
    /// a sibling without a record): then it is converted again and its manual labels
    /// carried over. That is checked at startup: a JSON rewritten while the server runs is
    /// served as it was until the next start.
    ///
    /// Pages: / (overview), /features (every feature, sorted, filtered by type, paged), /search,
    /// /features/ID. JSON API: GET /api/stats, GET /api/features?order=activation_count|
    /// max_activation|confidence|id&type=all|dead|ultra_sparse|sparse|moderate|dense&
    /// limit=1..1000&offset=N (each optional; by default the most firing first, 100 a page),
    /// GET /api/features/ID, GET /api/search?token=|label=|pattern=|text=…[&by=precision|firings]
    /// [&limit=1..1000] [&offset=N], POST /api/features/ID/labels with {"text": "…"} to add a
    /// manual label and POST /api/features/ID/labels/remove to remove one (see the README,
    /// "Using featdict", for the fields).
    Serve(crate::serve::ServeArgs),
    /// Write a synthetic `.fdict` with N features (for benchmarks).
    #[command(hide = true)]
    GenSynthetic(crate::serve::bench::GenArgs),
    /// Measure open, lookup and search latency on a `.fdict`, through the library and HTTP.
    #[command(hide = true)]
    BenchQuery(crate::serve::bench::BenchArgs),
}

#[derive(Args, Debug)]
struct BuildArgs {
    /// Activations: .npy, .safetensors (dense, or a delphi shard), or a delphi shard directory.
    acts: PathBuf,
    /// Tokens JSON: a list of lists of token strings, one list per sequence. A pipe
    /// (`/dev/stdin`, `<(zcat tokens.json.gz)`) works too; it is then held in memory.
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// Keep the strings of --tokens exactly as written. By default, tokens spelled in
    /// byte-level BPE as a GPT-2-style tokenizer lists them (`Ġ` for a space, `Ċ` for a
    /// newline: every token made of that 256-character alphabet, each sequence's bytes valid
    /// UTF-8, and at least 5 % of the distinct tokens holding `Ġ` or `Ċ`) are read as the text
    /// they stand for.
    #[arg(long, requires = "tokens")]
    raw_tokens: bool,
    /// Token ids (.npy int32/int64 [sequences, seq_len]) instead of --tokens.
    #[arg(long)]
    token_ids: Option<PathBuf>,
    /// HuggingFace tokenizer.json that shows token ids (--token-ids or a delphi cache's) as text.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Tensor to read from a dense .safetensors file (default: its only 2-D/3-D tensor).
    #[arg(long)]
    tensor: Option<String>,
    /// SAE directory: ACTS are residuals, encoded in-process by this SAE. SAELens
    /// (cfg.json + sae_weights.safetensors), Gemma Scope (params.npz) or EleutherAI sparsify
    /// (cfg.json + sae.safetensors; pass the hookpoint's directory, e.g. layers.9/).
    #[arg(long)]
    sae: Option<PathBuf>,
    /// Output dictionary: `.json` (the original library's format) or `.fdict` (the native
    /// SQLite file that opens without loading everything); or `.fdpart`, a partial
    /// dictionary (this shard's accumulator state, not finalized) for `featdict merge`.
    #[arg(long)]
    out: PathBuf,
    /// Top examples kept per feature.
    #[arg(long, default_value_t = 20, value_parser = at_most::<{ accumulate::MAX_TOP_K }>)]
    top_k: usize,
    /// Tokens of context kept on each side of an example.
    #[arg(long, default_value_t = 5, value_parser = at_most::<{ accumulate::MAX_CONTEXT_WINDOW }>)]
    context: usize,
    /// An activation >= this counts as a firing (must be > 0).
    #[arg(long, default_value_t = 0.01)]
    min_activation: f64,
    /// Model name stored in the dictionary (default: the `model_name` of a delphi cache's
    /// config.json, of the --sae cfg.json, or recorded in latents `featdict encode` wrote;
    /// else none).
    #[arg(long, default_value = "", hide_default_value = true)]
    model_name: String,
    /// SAE name stored in the dictionary (default: none).
    #[arg(long, default_value = "", hide_default_value = true)]
    sae_name: String,
    /// Layer stored in the dictionary (default: the hookpoint's of a delphi cache, of the
    /// --sae config or recorded by `featdict encode`, e.g. 9 for blocks.9.hook_resid_post,
    /// else 0).
    #[arg(long)]
    layer: Option<i64>,
    /// Index of this input's first sequence in the whole corpus, when the input is one
    /// shard of it built into a partial dictionary (`--out SHARD.fdpart`, see `featdict
    /// merge`): shards numbered as in the whole corpus merge into exactly what one build over
    /// it writes, sampled examples included. Without it every shard starts at 0 and `merge`
    /// moves each shard's indices past the earlier ones: the statistics are the same, but
    /// the quantile samples, drawn by sequence index, differ. Examples show their sequence
    /// indices counted from here.
    #[arg(long, default_value_t = 0)]
    first_sequence: u64,
    /// The SAE's number of latents (its d_sae). A delphi cache saved unsplit (one
    /// safetensors file with absolute latent indices) does not say it, so its latents above
    /// the largest that fired would be left out rather than reported dead; with this they are
    /// counted. For other inputs, a check: a count the input contradicts (a dense file's
    /// width, the --sae's d_sae, a sharded cache whose last shards are missing) is an error.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=u32::MAX as u64 - 1))]
    latents: Option<u64>,
    /// Worker threads (default: all cores). The result does not depend on it.
    #[arg(long, value_parser = one_to::<MAX_THREADS>)]
    threads: Option<usize>,
    /// Examples per quantile group, on average (the quantile-stratified examples): each
    /// feature keeps a uniform sample of 10 × this many of its firings, split into 10
    /// equal-count groups at the end. Each sampled example costs the pass about as much as a
    /// top example; 4 doubles the default's examples for ≈ 10–25 % of the pass.
    #[arg(long, visible_alias = "samples-per-band", default_value_t = 2, value_parser = at_most::<{ accumulate::MAX_SAMPLES_PER_GROUP }>)]
    samples_per_group: usize,
    /// Distinct tokens counted exactly per feature before the token sketch approximates.
    #[arg(long, default_value_t = 1024, value_parser = one_to::<{ accumulate::MAX_TOKEN_CAPACITY }>)]
    token_capacity: usize,
    /// Activation values per batch [default: 134217728 for C-order f32 files, read in place;
    /// 33554432 for f16/bf16/f64 and Fortran-order files, converted into a buffer of 4 bytes ×
    /// this]. The batch's transpose also holds 8 bytes per nonzero value.
    #[arg(
        long,
        default_value_t = 0,
        hide_default_value = true,
        hide_short_help = true
    )]
    batch_values: usize,
    /// Count the 2- and 3-grams ending at each firing token, exactly up to this many distinct
    /// n-grams per feature (0 = off; the 2- and 3-gram labels of `featdict label
    /// --strategies ngram_analysis` need them). A capacity, not an n-gram length: the demo
    /// uses 4096; past it a feature's counts become a summary of its most frequent n-grams.
    #[arg(long, default_value_t = 0, value_parser = at_most::<{ accumulate::MAX_NGRAM_CAPACITY }>)]
    ngrams: usize,
    /// Keep co-activation for `featdict correlated`: off; exact (Pearson of activations over
    /// all tokens, dense F×F matrix, at most 4,096 features); sketch (phi of firings from
    /// bounded per-feature partner tables, any size; cost grows with the square of the
    /// firings per token).
    #[arg(long, default_value = "off", value_parser = ["off", "exact", "sketch"])]
    correlation: String,
    /// Partners each feature's table holds in `--correlation sketch` (memory ≈ 32 bytes per
    /// partner per feature). Counts are exact while a feature co-fires with at most this
    /// many others; beyond, each is a lower bound within (its co-firing pairs) / (capacity
    /// + 1), so a larger table loses fewer partners.
    #[arg(long, default_value_t = feature_dictionary::model::DEFAULT_CORRELATION_CAPACITY, value_parser = at_most::<{ accumulate::MAX_CORRELATION_CAPACITY }>)]
    correlation_capacity: usize,
    /// Skip NaN/Inf activations (counted and reported) instead of failing.
    #[arg(long)]
    allow_nonfinite: bool,
    /// Leave features that never fired out of the output (their ids are listed in it).
    #[arg(long)]
    drop_dead: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct EncodeArgs {
    /// Residual activations (.npy or .safetensors).
    residuals: PathBuf,
    /// SAE directory: SAELens (cfg.json + sae_weights.safetensors), Gemma Scope (params.npz)
    /// or EleutherAI sparsify (cfg.json + sae.safetensors; the hookpoint's directory, e.g.
    /// layers.9/).
    #[arg(long)]
    sae: PathBuf,
    /// Output latents: a .safetensors file in the delphi layout (not the residuals file).
    #[arg(long)]
    out: PathBuf,
    /// Tensor to read from a .safetensors residual file.
    #[arg(long)]
    tensor: Option<String>,
    /// Token ids (.npy [sequences, seq_len]) stored as the `tokens` tensor.
    #[arg(long)]
    token_ids: Option<PathBuf>,
    /// Tokens per sequence for 2-D residuals without token ids.
    #[arg(long)]
    seq_len: Option<u64>,
    /// Store activations as float32 instead of float16.
    #[arg(long)]
    f32: bool,
    /// Worker threads (default: all cores).
    #[arg(long, value_parser = one_to::<MAX_THREADS>)]
    threads: Option<usize>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct StatsArgs {
    /// Dictionary file.
    dict: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ShowArgs {
    /// Dictionary file.
    dict: PathBuf,
    /// Feature id.
    id: u64,
    /// Top examples shown (the quantile-stratified ones, one per group, are shown unless
    /// this is 0: `-n 0` shows no examples).
    #[arg(long, short = 'n', default_value_t = 10)]
    examples: usize,
    /// Machine-readable output (the whole feature).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct TopArgs {
    /// Dictionary file.
    dict: PathBuf,
    /// Metric: activation_count, max_activation or frequency.
    #[arg(long, default_value = "activation_count")]
    by: TopBy,
    /// Number of features (at least 1).
    #[arg(short = 'n', long = "count", default_value_t = 10, value_parser = at_least_one)]
    n: usize,
    /// Only features of this type: dead, ultra_sparse, sparse, moderate or dense; all (the
    /// default) for every type.
    #[arg(long = "type", value_parser = type_filter)]
    feature_type: Option<TypeFilter>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// A `--type` filter: one type, or every type (`None`, from `all`).
#[derive(Debug, Clone, Copy)]
struct TypeFilter(Option<FeatureType>);

fn type_filter(s: &str) -> Result<TypeFilter, String> {
    FeatureType::parse_filter(s).map(TypeFilter)
}

/// `top --type dead` on a file whose build left dead features out (`--drop-dead`, the ids
/// listed in the file): they are not in the list (it shows the stored ones only), which is
/// said on stderr. Features missing for another reason (a file written from part of a
/// dictionary) are not called dead.
fn note_dead_left_out(
    dict: &Path,
    only: Option<FeatureType>,
    omitted: usize,
    all: usize,
    stored: usize,
) {
    if only == Some(FeatureType::Dead) && omitted > 0 {
        eprintln!(
            "note: {} stores {stored} of its {all} features; dead features left out when it was built (--drop-dead), not listed: {omitted}",
            dict.display(),
        );
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    QUIET.store(cli.quiet, std::sync::atomic::Ordering::Relaxed);
    match cli.command {
        Command::Demo(a) => crate::demo::cmd_demo(a),
        Command::Build(a) => cmd_build(a),
        Command::Encode(a) => cmd_encode(a),
        Command::Merge(a) => cmd_merge(a),
        Command::Stats(a) if store::fdict::is_fdict(&a.dict)? => {
            // Precomputed in the native file: no need to load the features.
            let r = store::fdict::FdictReader::open(&a.dict)?;
            print::stats_summary(r.summary(), r.statistics(), a.json)
        }
        Command::Stats(a) => {
            let dict = load(&a.dict)?;
            print::stats(&dict, a.json)
        }
        Command::Show(a) if store::fdict::is_fdict(&a.dict)? => {
            // One row from the native file, without loading the dictionary.
            let r = store::fdict::FdictReader::open(&a.dict)?;
            let Some(f) = r.feature(a.id)? else {
                bail!(not_in_fdict(&r, &a.dict, a.id));
            };
            print::feature(&f, a.examples, a.json)
        }
        Command::Show(a) => {
            let dict = load(&a.dict)?;
            let Some(f) = dict.get(a.id) else {
                bail!(not_in_dict(&dict, &a.dict, a.id));
            };
            print::feature(f, a.examples, a.json)
        }
        Command::Top(a) if store::fdict::is_fdict(&a.dict)? => {
            // Ranked by SQLite over the scalar columns; only the n bodies are parsed.
            let r = store::fdict::FdictReader::open(&a.dict)?;
            let only = a.feature_type.and_then(|t| t.0);
            let top = r.top_features(a.by, only, a.n)?;
            let (all, stored) = (r.summary().num_features, r.summary().stored_features);
            note_dead_left_out(&a.dict, only, r.omitted_count()?, all, stored);
            print::top(&top.iter().collect::<Vec<_>>(), only, a.json)
        }
        Command::Top(a) => {
            let dict = load(&a.dict)?;
            let only = a.feature_type.and_then(|t| t.0);
            let omitted = dict.feature_set.metadata.omitted_features.len();
            note_dead_left_out(
                &a.dict,
                only,
                omitted,
                dict.num_features(),
                dict.feature_set.len(),
            );
            print::top(&dict.top_features(a.by, only, a.n), only, a.json)
        }
        Command::Label(a) => crate::label_cmds::cmd_label(a),
        Command::Similar(a) => crate::analyze_cmds::cmd_similar(a),
        Command::Correlated(a) => crate::analyze_cmds::cmd_correlated(a),
        Command::Logits(a) => crate::analyze_cmds::cmd_logits(a),
        Command::Polysemantic(a) => crate::analyze_cmds::cmd_polysemantic(a),
        Command::Compare(a) => crate::analyze_cmds::cmd_compare(a),
        Command::Export(a) => cmd_export(a),
        Command::Import(a) => cmd_import(a),
        Command::Search(a) => cmd_search(a),
        Command::Serve(a) => crate::serve::run(a),
        Command::GenSynthetic(a) => crate::serve::bench::generate(a),
        Command::BenchQuery(a) => crate::serve::bench::bench(a),
    }
}

pub(crate) fn load(path: &Path) -> Result<FeatureDictionary> {
    store::load(path).with_context(|| format!("cannot read dictionary {}", path.display()))
}

/// Some features of the dictionary at `path`, with every dictionary-wide field (config,
/// corpus token counts, omitted features): a `.fdict` gives only those features, since a
/// command about one or two features of a file of millions must not read them all; a JSON
/// file is read whole.
pub(crate) struct Subset {
    /// The dictionary, holding at least the features asked for that the file stores.
    pub dict: FeatureDictionary,
    /// Whether the whole file holds per-token counts ([`FeatureDictionary::has_token_counts`]
    /// of a part of a `.fdict` cannot tell).
    pub has_token_counts: bool,
    /// Why each id asked for and not stored is missing.
    missing: Vec<(u64, String)>,
    /// The open `.fdict`, when the file is one (`None`: `dict` is the whole JSON file).
    reader: Option<store::fdict::FdictReader>,
}

impl Subset {
    /// Reads features `ids` of `path`.
    pub fn load(path: &Path, ids: &[u64]) -> Result<Self> {
        let context = || format!("cannot read dictionary {}", path.display());
        if store::fdict::is_fdict(path).with_context(context)? {
            let reader = store::fdict::FdictReader::open(path).with_context(context)?;
            let dict = reader.load_some(ids).with_context(context)?;
            let missing = ids
                .iter()
                .filter(|id| dict.get(**id).is_none())
                .map(|&id| (id, not_in_fdict(&reader, path, id)))
                .collect();
            let has_token_counts = reader.has_token_counts().with_context(context)?;
            return Ok(Self {
                dict,
                has_token_counts,
                missing,
                reader: Some(reader),
            });
        }
        let dict = load(path)?;
        let missing = ids
            .iter()
            .filter(|id| dict.get(**id).is_none())
            .map(|&id| (id, not_in_dict(&dict, path, id)))
            .collect();
        Ok(Self {
            has_token_counts: dict.has_token_counts(),
            dict,
            missing,
            reader: None,
        })
    }

    /// Adds features `ids` (those the file stores) to `dict`; a JSON file's are all there.
    pub fn add(&mut self, ids: &[u64]) -> Result<()> {
        let Some(reader) = &self.reader else {
            return Ok(());
        };
        let wanted: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| self.dict.get(*id).is_none())
            .collect();
        let more = reader
            .load_some(&wanted)
            .with_context(|| format!("cannot read dictionary {}", reader.path().display()))?;
        // One map built at once from both (extending it would leave its nodes half empty).
        let held = std::mem::take(&mut self.dict.feature_set.features);
        self.dict.feature_set.features =
            held.into_iter().chain(more.feature_set.features).collect();
        Ok(())
    }

    /// The open `.fdict`, if the file is one.
    pub fn reader(&self) -> Option<&store::fdict::FdictReader> {
        self.reader.as_ref()
    }

    /// An error saying why `id` is not stored, if it is not.
    pub fn check(&self, id: u64) -> Result<()> {
        match self.missing.iter().find(|(m, _)| *m == id) {
            Some((_, why)) => bail!("{why}"),
            None => Ok(()),
        }
    }
}

/// Why feature `id` is not in the dictionary `path` (its file's path, or "this
/// dictionary" for the server), which stores `stored` of the SAE's `num_features` features
/// (`dropped`: `build --drop-dead` left it out). Every command and the server say it in
/// these words. A dropped id lies inside "ids 0 to N-1", so without the reason the message
/// would contradict itself.
pub(crate) fn feature_not_found(
    path: &dyn std::fmt::Display,
    id: u64,
    stored: usize,
    num_features: usize,
    dropped: bool,
) -> String {
    if dropped {
        format!(
            "feature {id} is dead (it never fired) and was dropped from {path} at build time (--drop-dead); it holds {stored} of the {num_features} features"
        )
    } else if id < num_features as u64 {
        format!(
            "feature {id} is not stored in {path} (it holds {stored} of the {num_features} features, ids 0 to {})", num_features.saturating_sub(1)
        )
    } else {
        format!(
            "feature {id} is not in {path} (it holds {stored} features, ids 0 to {})",
            num_features.saturating_sub(1)
        )
    }
}

/// [`feature_not_found`] for a dictionary in memory.
pub(crate) fn not_in_dict(dict: &FeatureDictionary, path: &Path, id: u64) -> String {
    let dropped = dict.feature_set.metadata.omitted_features.contains(&id);
    feature_not_found(
        &path.display(),
        id,
        dict.feature_set.len(),
        dict.num_features(),
        dropped,
    )
}

/// [`feature_not_found`] for an open `.fdict`.
pub(crate) fn not_in_fdict(r: &store::fdict::FdictReader, path: &Path, id: u64) -> String {
    let s = r.summary();
    // Read only to explain a missing feature: a failure reads as "none dropped".
    let dropped =
        id < s.num_features as u64 && r.omitted_features().unwrap_or_default().contains(&id);
    feature_not_found(
        &path.display(),
        id,
        s.stored_features,
        s.num_features,
        dropped,
    )
}

fn cmd_build(a: BuildArgs) -> Result<()> {
    // A delphi cache says which model and layer it holds; what the options give wins.
    let cache = if a.sae.is_none() && (a.acts.is_dir() || ingest::delphi::is_delphi_file(&a.acts)) {
        ingest::delphi::cache_provenance(&a.acts)
    } else {
        Default::default()
    };
    let mut config = DictionaryConfig {
        sae_name: a.sae_name,
        ..Default::default()
    };
    let ex = &mut config.extraction;
    ex.max_examples_per_feature = a.top_k;
    ex.context_window = a.context;
    ex.min_activation = a.min_activation;
    ex.samples_per_group = a.samples_per_group;
    ex.token_sketch_capacity = a.token_capacity;
    ex.ngram_capacity = a.ngrams;
    ex.correlation = a.correlation;
    ex.correlation_capacity = a.correlation_capacity;
    // The file then says what was done to it in the original's terms: features with fewer
    // than min_activation_count (1) firings are not included.
    ex.include_dead_features = !a.drop_dead;
    let options = BuildOptions {
        threads: worker_threads(a.threads),
        allow_nonfinite: a.allow_nonfinite,
    };

    // A bad --out would otherwise only show after the whole pass.
    check_build_output(&a.out)?;
    let sae_files = a
        .sae
        .as_deref()
        .map(feature_dictionary::sae::input_files)
        .unwrap_or_default();
    let mut inputs = given_inputs(&[
        ("activations", Some(&a.acts)),
        ("tokens", a.tokens.as_ref()),
        ("token ids", a.token_ids.as_ref()),
        ("tokenizer", a.tokenizer.as_ref()),
    ]);
    inputs.extend(sae_files.iter().map(|p| ("SAE file", p.as_path())));
    store::check_not_input(&a.out, &inputs)?;
    let started = std::time::Instant::now();
    let spec = ingest::open::InputSpec {
        acts: Some(&a.acts),
        tensor: a.tensor.as_deref(),
        tokens_json: a.tokens.as_deref(),
        token_ids: a.token_ids.as_deref(),
        tokenizer: a.tokenizer.as_deref(),
        sae: a.sae.as_deref(),
        context_window: config.extraction.context_window,
        threads: options.threads,
        batch_values: a.batch_values,
        token_spelling: if a.raw_tokens {
            ingest::TokenSpelling::AsWritten
        } else {
            ingest::TokenSpelling::Auto
        },
        first_sequence: a.first_sequence,
        n_latents: a.latents.map(|n| n as usize),
    };
    // Opening reads the tokens whole once (a large tokens JSON takes seconds) and checks
    // every token id.
    let opening = status(format!("opening {}", a.acts.display()));
    let mut source = ingest::open::open_source(&spec)?;
    opening.finish_and_clear();
    // Then what the input records: the SAE's config, or what `encode` wrote into the file.
    let recorded = source.provenance();
    config.model_name = match a.model_name.as_str() {
        "" => cache.model_name.or(recorded.model_name).unwrap_or_default(),
        given => given.to_string(),
    };
    config.layer = a.layer.or(cache.layer).or(recorded.layer).unwrap_or(0);
    if source.tokens_decoded() {
        // Shown even with -q: the tokens stored differ from the strings in the file.
        eprintln!(
            "note: {} spells its tokens in byte-level BPE (Ġ for a space, Ċ for a newline); they are read as the text they stand for (--raw-tokens keeps them as written)",
            a.tokens.as_deref().map_or_else(String::new, |p| p.display().to_string())
        );
    }
    if a.tokens.is_none() && a.tokenizer.is_none() {
        // Shown even with -q: every token of the dictionary would read as a number.
        eprintln!(
            "warning: no --tokenizer: tokens are kept and shown as their ids (\"[314]\"); pass --tokenizer tokenizer.json to see their text"
        );
    }
    for note in source.token_notes() {
        // Shown even with -q: tokens may read otherwise than the tokenizer decodes them.
        eprintln!("warning: {note}");
    }
    if source.n_features_guessed() {
        // Shown even with -q: features would be missing from the dictionary, not dead.
        eprintln!(
            "warning: {} does not say how many latents its SAE has: taking {} (one past the largest latent that fired); latents above it that never fired are left out instead of reported dead — pass --latents N (the SAE's d_sae) to count them",
            a.acts.display(),
            source.n_features()
        );
    }
    if (1..64).contains(&a.ngrams) {
        eprintln!(
            "warning: --ngrams {} counts at most {} distinct n-grams per feature exactly (it is a capacity, not an n-gram length; the demo uses 4096)",
            a.ngrams, a.ngrams
        );
    }
    let total = source.n_tokens_hint().unwrap_or(0);
    let bar = if quiet() {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} accumulating [{bar:40}] {pos}/{len} tokens ({rate}, eta {eta})",
            )
            .expect("valid template")
            // indicatif's own {per_sec} prints four decimals of tokens per second.
            .with_key(
                "rate",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0} tokens/s", state.per_sec());
                },
            )
            .progress_chars("=> "),
        );
        bar
    };
    let n_features = source.n_features();
    // Each feature's `dimension` (the original's field): the residual width an SAE reads.
    config.feature_dim = source.input_dim().unwrap_or(config.feature_dim);
    let started_pass = std::time::Instant::now();
    // Where each token first occurs: a partial dictionary keeps it, so merged shards order
    // their vocabulary as one pass over the corpus does.
    let mut first_seen = Vec::new();
    let partial = store::partial::is_partial_path(&a.out);
    let mut done = 0u64;
    let acc = build::accumulate_observed(source.as_mut(), &config, &options, &mut |batch| {
        if partial {
            store::partial::note_first_seen(&mut first_seen, batch);
        }
        done += batch.core.len() as u64;
        bar.set_position(done);
        if done == total && !bar.is_hidden() {
            // Finalizing follows the last batch; say so while it runs.
            bar.set_style(spinner_style());
            bar.set_message(format!("finalizing {n_features} features"));
            bar.reset_elapsed();
            bar.enable_steady_tick(STATUS_TICK);
        }
    })
    .map_err(|e| {
        // Latents are what the check sees; with --sae, say where such latents come from.
        let from_residuals = a.sae.is_some()
            && matches!(e, feature_dictionary::Error::NonFinite { .. });
        let e = anyhow::Error::from(e);
        if from_residuals {
            e.context(format!(
                "the SAE's latents of a token are NaN/Inf when its residual vector in {} holds a NaN/Inf (every latent of that token is then counted)",
                a.acts.display()
            ))
        } else {
            e
        }
    })?;
    let accumulate_seconds = started_pass.elapsed().as_secs_f64();
    if partial {
        bar.finish_and_clear();
        if a.sae.is_some() {
            eprintln!(
                "note: a partial dictionary stores no similar features; give --sae to `featdict merge` to store them"
            );
        }
        config.num_features = n_features;
        first_seen.resize(source.vocab().len(), store::partial::NEVER);
        let partial = store::partial::Partial {
            config,
            first_seen,
            vocab: source.vocab().clone(),
            // Every input here knows its sequences; a source that did not would have started
            // one at each position 0 accumulated.
            sequences: Some(source.sequences().unwrap_or(0..acc.total_sequences))
                .filter(|r| !r.is_empty())
                .into_iter()
                .collect(),
            acc,
        };
        let timings = BuildTimings {
            accumulate_seconds,
            finalize_seconds: 0.0,
        };
        return write_partial(&partial, &a.out, started, timings, a.json);
    }
    finish_build(
        acc,
        source.vocab(),
        config,
        &Finish {
            out: &a.out,
            drop_dead: a.drop_dead,
            sae: a.sae.as_deref(),
            threads: options.threads,
            started,
            accumulate_seconds,
            first_stage: print::FirstStage::Pass,
            json: a.json,
        },
        &bar,
    )
}

#[derive(Args, Debug)]
struct MergeArgs {
    /// Partial dictionaries (.fdpart): in any order when built with --first-sequence, else
    /// in corpus order.
    #[arg(required = true)]
    partials: Vec<PathBuf>,
    /// Output: a dictionary (`.fdict` or `.json`), or `.fdpart` for the merged state.
    #[arg(long)]
    out: PathBuf,
    /// Model name stored in the result (needed when the shards name different ones).
    #[arg(long)]
    model_name: Option<String>,
    /// SAE name stored in the result (needed when the shards name different ones).
    #[arg(long)]
    sae_name: Option<String>,
    /// Layer stored in the result (needed when the shards name different ones).
    #[arg(long, allow_negative_numbers = true)]
    layer: Option<i64>,
    /// SAE directory whose decoder directions give every feature its 10 most similar
    /// features, stored in the result (as `build --sae` does).
    #[arg(long)]
    sae: Option<PathBuf>,
    /// Leave features that never fired out of the output (their ids are listed in it);
    /// also done when a shard was built with --drop-dead.
    #[arg(long)]
    drop_dead: bool,
    /// Worker threads for merging and finalizing (default: all cores). The result does not
    /// depend on it.
    #[arg(long)]
    threads: Option<usize>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

fn cmd_merge(a: MergeArgs) -> Result<()> {
    // A file damaged past its checksum's reach, or made by hand, can decode into a state
    // whose parts disagree (a token id beyond its vocabulary); the engine trusts its own
    // state and would panic. Such a panic becomes an error naming the inputs.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let files: Vec<String> = a.partials.iter().map(|p| p.display().to_string()).collect();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| merge_partials(a)));
    std::panic::set_hook(previous);
    result.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("an internal check failed");
        bail!(
            "{}: the partial dictionaries hold inconsistent state (damaged, or not written by this featdict): {what}",
            files.join(", ")
        )
    })
}

fn merge_partials(a: MergeArgs) -> Result<()> {
    let started = std::time::Instant::now();
    check_build_output(&a.out)?;
    let mut inputs: Vec<(&str, &Path)> = a
        .partials
        .iter()
        .map(|p| ("partial dictionary", p.as_path()))
        .collect();
    if let Some(sae) = &a.sae {
        inputs.push(("SAE directory", sae.as_path()));
    }
    store::check_not_input(&a.out, &inputs)?;
    for (i, p) in a.partials.iter().enumerate() {
        if let Some(q) = a.partials[..i].iter().find(|q| store::same_file(p, q)) {
            bail!(
                "{} and {} are the same file: each shard would count twice",
                q.display(),
                p.display()
            );
        }
    }
    let threads = worker_threads(a.threads);
    // The names given here win, so shards that name different ones still merge.
    let named = |config: &mut DictionaryConfig| {
        if let Some(m) = &a.model_name {
            config.model_name.clone_from(m);
        }
        if let Some(s) = &a.sae_name {
            config.sae_name.clone_from(s);
        }
        if let Some(l) = a.layer {
            config.layer = l;
        }
    };
    // Every shard's config first (each file starts with it): shards that cannot merge are
    // named before any state, possibly gigabytes, is read.
    let configs = a
        .partials
        .iter()
        .map(|p| {
            let mut c = store::partial::Partial::read_config(p)?;
            named(&mut c);
            Ok(c)
        })
        .collect::<Result<Vec<_>>>()?;
    store::partial::check_shards_agree(
        &a.partials
            .iter()
            .map(PathBuf::as_path)
            .zip(&configs)
            .collect::<Vec<_>>(),
    )?;
    let read = |path: &Path| -> Result<store::partial::Partial> {
        let reading = status(format!("reading {}", path.display()));
        let mut p = store::partial::Partial::read(path)?;
        reading.finish_and_clear();
        named(&mut p.config);
        Ok(p)
    };
    // Merging splits the work by the first shard's feature ranges (as many as the threads
    // that built it); finalizing uses `threads`.
    let mut merged = read(&a.partials[0])?;
    let mut drop_dead = a.drop_dead || !merged.config.extraction.include_dead_features;
    for path in &a.partials[1..] {
        let next = read(path)?;
        drop_dead |= !next.config.extraction.include_dead_features;
        let merging = status(format!("merging {}", path.display()));
        merged.merge(next, (&a.partials[0], path))?;
        merging.finish_and_clear();
    }
    let accumulate_seconds = started.elapsed().as_secs_f64();
    if store::partial::is_partial_path(&a.out) {
        merged.config.extraction.include_dead_features = !drop_dead;
        if a.sae.is_some() {
            eprintln!(
                "note: a partial dictionary stores no similar features; give --sae to the merge that finalizes it"
            );
        }
        let timings = BuildTimings {
            accumulate_seconds,
            finalize_seconds: 0.0,
        };
        return write_partial(&merged, &a.out, started, timings, a.json);
    }
    let bar = status(format!("finalizing {} features", merged.acc.n_features()));
    let store::partial::Partial {
        mut config,
        vocab,
        acc,
        ..
    } = merged;
    config.extraction.include_dead_features = !drop_dead;
    finish_build(
        acc,
        &vocab,
        config,
        &Finish {
            out: &a.out,
            drop_dead,
            sae: a.sae.as_deref(),
            threads,
            started,
            accumulate_seconds,
            first_stage: print::FirstStage::Merge,
            json: a.json,
        },
        &bar,
    )
}

/// Checks a build's or merge's `--out` before the work: a dictionary (`.json`, `.fdict`) or
/// a partial dictionary (`.fdpart`) in a directory that exists.
fn check_build_output(out: &Path) -> Result<()> {
    if store::partial::is_partial_path(out) {
        store::check_output_location(out)?;
    } else if let Err(e) = store::check_output(out) {
        bail!("{e} (or .fdpart: a partial dictionary, for `featdict merge`)");
    }
    Ok(())
}

/// Where and how a build (or a merge of partial dictionaries) ends once its accumulator is
/// complete.
struct Finish<'a> {
    out: &'a Path,
    drop_dead: bool,
    /// The SAE whose decoder gives similar features to store.
    sae: Option<&'a Path>,
    threads: usize,
    started: std::time::Instant,
    accumulate_seconds: f64,
    first_stage: print::FirstStage,
    json: bool,
}

/// Finalizes `acc` into the dictionary file `f.out` and prints the build's summary.
fn finish_build(
    acc: accumulate::Accumulator,
    vocab: &ingest::Vocab,
    config: DictionaryConfig,
    f: &Finish<'_>,
    bar: &ProgressBar,
) -> Result<()> {
    let finishing = std::time::Instant::now();
    let n_features = acc.n_features();
    if f.sae.is_none() || n_features > MAX_SIMILAR_FEATURES {
        // Straight from the accumulator into the file, a wave of features at a time: the
        // whole finalized dictionary of a wide SAE would take gigabytes.
        bar.set_message(format!(
            "finalizing {n_features} features into {}",
            f.out.display()
        ));
        let (shell, statistics) =
            build::finalize_into_file(&acc, vocab, config, f.out, f.drop_dead)?;
        bar.finish_and_clear();
        if f.sae.is_some() {
            similar_not_stored_note(n_features);
        }
        let timings = BuildTimings {
            accumulate_seconds: f.accumulate_seconds,
            finalize_seconds: 0.0,
        };
        return print::build_summary(
            &shell,
            &statistics,
            f.out,
            f.started.elapsed(),
            (
                f.first_stage,
                timings,
                print::WriteTime::WithFinalize(finishing.elapsed().as_secs_f64()),
            ),
            f.json,
        );
    }
    let mut dict = feature_dictionary::finalize::finalize(&acc, vocab, config);
    drop(acc);
    let timings = BuildTimings {
        accumulate_seconds: f.accumulate_seconds,
        finalize_seconds: finishing.elapsed().as_secs_f64(),
    };
    bar.finish_and_clear();
    if f.drop_dead {
        // In place: `without_rare` would hold a second copy of a large dictionary.
        dict.drop_rare(1);
    }
    if let Some(sae) = f.sae {
        store_similar(&mut dict, sae, f.threads);
    }
    let write_started = std::time::Instant::now();
    let writing = status(format!("writing {}", f.out.display()));
    store::save(&dict, f.out)?;
    writing.finish_and_clear();
    let write_seconds = write_started.elapsed().as_secs_f64();
    print::build_summary(
        &dict,
        &dict.statistics(),
        f.out,
        f.started.elapsed(),
        (
            f.first_stage,
            timings,
            print::WriteTime::Separate(write_seconds),
        ),
        f.json,
    )
}

/// Writes a partial dictionary and says what it holds.
fn write_partial(
    partial: &store::partial::Partial,
    out: &Path,
    started: std::time::Instant,
    timings: BuildTimings,
    json: bool,
) -> Result<()> {
    let writing = status(format!("writing {}", out.display()));
    partial.write(out)?;
    writing.finish_and_clear();
    print::partial_summary(partial, out, started.elapsed(), timings, json)
}

/// Said even with -q, which hides progress only: the file lacks what a build with --sae is
/// documented to store.
fn similar_not_stored_note(n: usize) {
    eprintln!(
        "note: {n} features: similar features are not stored (the all-pairs decoder product is too large); `featdict similar DICT ID --sae` finds them one at a time"
    );
}

/// Largest SAE whose features `build --sae` stores decoder-cosine neighbours for: the
/// all-pairs product costs F²·d (≈ 3 s at F = 24,576, d = 768 on 2 cores; 20× that here).
const MAX_SIMILAR_FEATURES: usize = 1 << 16;

/// With the SAE at hand, stores every feature's 10 nearest decoder directions (what the
/// pages show as similar features). A decoder that cannot be read as `W_dec` only costs the
/// neighbours, with a warning: the dictionary is written anyway.
pub(crate) fn store_similar(dict: &mut FeatureDictionary, sae: &Path, threads: usize) {
    let n = dict.num_features();
    if n > MAX_SIMILAR_FEATURES {
        similar_not_stored_note(n);
        return;
    }
    let spinner = status(format!("finding similar features of {n}"));
    let loaded = crate::analyze_cmds::sae_weights(sae).and_then(|w| {
        feature_dictionary::analyze::similar::Directions::load(&w, "W_dec", Some(n))
            .map_err(anyhow::Error::from)
    });
    let stored = loaded.map(|dirs| {
        feature_dictionary::analyze::similar::store_neighbours(dict, &dirs, 10, threads)
    });
    spinner.finish_and_clear();
    if let Err(e) = stored {
        eprintln!("warning: similar features not stored: {e:#}");
    }
}

/// How often a status spinner redraws.
const STATUS_TICK: std::time::Duration = std::time::Duration::from_millis(120);

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template")
}

/// A bar counting `total` features as `message` goes on (hidden when stderr is not a
/// terminal, as indicatif's bars are).
pub(crate) fn count_bar(total: u64, message: String) -> ProgressBar {
    if quiet() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {pos}/{len} features (eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar.enable_steady_tick(STATUS_TICK);
    bar
}

/// A spinner on stderr saying what runs (`message`) until it is finished; hidden with
/// `--quiet` (and, as every progress display, when stderr is not a terminal).
pub(crate) fn status(message: String) -> ProgressBar {
    if quiet() {
        return ProgressBar::hidden();
    }
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(spinner_style());
    spinner.set_message(message);
    spinner.enable_steady_tick(STATUS_TICK);
    spinner
}

/// Runs `work` under a [`status`] spinner saying `message` (shown only on a terminal, and
/// not with `--quiet`; it goes away when `work` ends).
pub(crate) fn with_status<T>(message: String, work: impl FnOnce() -> Result<T>) -> Result<T> {
    let spinner = status(message);
    let result = work();
    spinner.finish_and_clear();
    result
}

fn cmd_encode(a: EncodeArgs) -> Result<()> {
    // `featdict build` reads a delphi cache only under this name.
    if a.out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!(
            "--out must end in .safetensors (a delphi latent cache file); got {}",
            a.out.display()
        );
    }
    store::check_output_location(&a.out)?;
    let sae_files = feature_dictionary::sae::input_files(&a.sae);
    let mut inputs = given_inputs(&[
        ("residuals", Some(&a.residuals)),
        ("token ids", a.token_ids.as_ref()),
    ]);
    inputs.extend(sae_files.iter().map(|p| ("SAE file", p.as_path())));
    store::check_not_input(&a.out, &inputs)?;
    let started = std::time::Instant::now();
    let sae = feature_dictionary::sae::Sae::load(&a.sae)?;
    let residuals = match a.residuals.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => ingest::safetensors::open_dense(&a.residuals, a.tensor.as_deref())?,
        _ if a.tensor.is_some() => bail!(
            "--tensor picks a tensor of a .safetensors file; {} is not one",
            a.residuals.display()
        ),
        _ => ingest::open_dense(&a.residuals)?,
    };
    let tokens = match &a.token_ids {
        Some(p) => Some(ingest::token_ids::TokenIdMatrix::from_npy(p)?),
        None => None,
    };
    let options = feature_dictionary::sae::write::EncodeOptions {
        f16: !a.f32,
        seq_len: a.seq_len,
        threads: worker_threads(a.threads),
    };
    let summary = feature_dictionary::sae::write::encode_to_delphi(
        &sae,
        &residuals,
        tokens.as_ref(),
        &options,
        &a.out,
    )?;
    print::encode_summary(&summary, &a.out, started.elapsed(), a.json)
}

#[derive(Args, Debug)]
struct ExportArgs {
    /// Dictionary file (.fdict or .json).
    dict: PathBuf,
    /// Output format: `json` (the original library's JSON) or `neuronpedia` (a SAEDashboard
    /// batch, `{model_id, layer, sae_set, features}`, of Neuronpedia-style feature objects;
    /// see the README for what is derived and what is left at SAEDashboard's defaults).
    #[arg(long, value_parser = ["json", "neuronpedia"])]
    format: String,
    /// Output file (.json for either format; not the input).
    #[arg(long)]
    out: PathBuf,
    /// Neuronpedia batch's `model_id` (default: the dictionary's model name).
    #[arg(long)]
    model_id: Option<String>,
    /// Neuronpedia batch's `sae_set` (default: the dictionary's SAE name).
    #[arg(long)]
    sae_set: Option<String>,
    /// Neuronpedia batch's `layer` (default: the dictionary's layer; a note says when that
    /// is 0, which is also what a build records when nothing tells it the layer).
    #[arg(long)]
    layer: Option<i64>,
    /// Print a summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ImportArgs {
    /// JSON dictionary (the original library's format, or ours).
    input: PathBuf,
    /// Output `.fdict` file (written to a temporary file, then renamed).
    #[arg(long)]
    out: PathBuf,
    /// Print a summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct SearchArgs {
    /// Dictionary file (.fdict or .json).
    dict: PathBuf,
    /// Features whose top tokens include this exact token (mind leading spaces: " the");
    /// without top tokens, features with a stored example firing on it.
    #[arg(long, group = "kind")]
    token: Option<String>,
    /// Features with a label containing this text (case-insensitive), ranked by that
    /// label's confidence.
    #[arg(long, group = "kind")]
    label: Option<String>,
    /// Features with a top token matching this regex (unanchored); without top tokens, with
    /// a stored example firing on a matching token.
    #[arg(long, group = "kind")]
    pattern: Option<String>,
    /// Full text over labels, descriptions and top tokens (every word must occur; bm25).
    #[arg(long, group = "kind")]
    text: Option<String>,
    /// Ranking for --token and --pattern: precision (default) or firings. Without top
    /// tokens, firings (the stored examples firing on the token) is the default and
    /// precision is refused. Refused with --label (ranked by the matching label's
    /// confidence) and --text (ranked by bm25).
    #[arg(long)]
    by: Option<feature_dictionary::query::TokenRank>,
    /// Results shown (at least 1: with 0, "no match" would hide every match).
    #[arg(short = 'n', long = "limit", default_value_t = 20, value_parser = at_least_one)]
    limit: usize,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// A count of results to show, which must be positive: with 0, a list would print as
/// empty ("no match", "none") whatever the dictionary holds.
pub(crate) fn at_least_one(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A number of clusters that makes a feature polysemantic: one cluster is every feature.
pub(crate) fn at_least_two(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n < 2 => {
            Err("must be at least 2 (a feature with fewer clusters is not polysemantic)".into())
        }
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Features a `.fdict` exported as JSON reads at a time.
const EXPORT_CHUNK: usize = 1024;

fn cmd_export(a: ExportArgs) -> Result<()> {
    // Both formats are JSON; under another name the file would pass for something else (a
    // Neuronpedia batch named .fdict reads as a damaged database).
    if a.out.extension().and_then(|e| e.to_str()) != Some("json") {
        bail!(
            "--format {} writes a .json file; got {}",
            a.format,
            a.out.display()
        );
    }
    if a.format != "neuronpedia"
        && (a.model_id.is_some() || a.sae_set.is_some() || a.layer.is_some())
    {
        bail!("--model-id, --sae-set and --layer name a Neuronpedia batch; they go with --format neuronpedia");
    }
    store::check_output_location(&a.out)?;
    store::check_not_input(&a.out, &[("dictionary", &a.dict)])?;
    // The batch's names: the dictionary's, unless given; an empty one is said (Neuronpedia
    // files them under it).
    let names = |own: store::neuronpedia::BatchNames| {
        if a.layer.is_none() && own.layer == 0 {
            // 0 is also what a build records when nothing said the layer.
            eprintln!(
                "note: the batch's layer is {}'s layer, 0, which a build also records when nothing tells it the layer; pass --layer if the SAE reads another",
                a.dict.display()
            );
        }
        let names = store::neuronpedia::BatchNames {
            model_id: a.model_id.clone().unwrap_or(own.model_id),
            layer: a.layer.unwrap_or(own.layer),
            sae_set: a.sae_set.clone().unwrap_or(own.sae_set),
        };
        for (value, flag) in [
            (&names.model_id, "--model-id"),
            (&names.sae_set, "--sae-set"),
        ] {
            if value.trim().is_empty() {
                eprintln!(
                    "warning: {} names no {}; the batch's {} is empty (pass {flag})",
                    a.dict.display(),
                    if flag == "--model-id" { "model" } else { "SAE" },
                    flag.trim_start_matches("--").replace('-', "_"),
                );
            }
        }
        names
    };
    // A warning for an export that had to write 0 where nothing is known.
    let report = |e: store::neuronpedia::Exported| {
        if e.examples_without_context_activations > 0 {
            eprintln!(
                "warning: {} of the exported examples hold no activations for their context tokens ({} stores none, as files of the original library do); the export gives those tokens 0",
                e.examples_without_context_activations,
                a.dict.display()
            );
        }
        e.features
    };
    if store::fdict::is_fdict(&a.dict)? {
        // Streams a chunk of features at a time: a large .fdict is never held in memory.
        let r = store::fdict::FdictReader::open(&a.dict)?;
        let n = if a.format == "neuronpedia" {
            let names = names(store::neuronpedia::BatchNames::of(r.summary()));
            report(store::neuronpedia::write_from_reader(
                &r,
                &a.out,
                Some(&names),
            )?)
        } else {
            let n = r.summary().stored_features;
            let bar = count_bar(n as u64, format!("writing {}", a.out.display()));
            let shell = r.load_some(&[])?;
            let mut after = None;
            let waves = n.div_ceil(EXPORT_CHUNK).max(1);
            let written = store::seed_json::write_waves(
                &shell,
                &a.out,
                waves,
                |i| {
                    let features = r.features_after(after, EXPORT_CHUNK)?;
                    // Fewer than the statistics count: the remaining waves would all be empty
                    // (millions of them for a count edited by hand).
                    if features.is_empty() && i > 0 {
                        return Err(feature_dictionary::Error::format(
                            &a.dict,
                            format!("holds fewer features than its statistics count ({n}); the file was edited or damaged"),
                        ));
                    }
                    after = features.last().map(|f| f.id).or(after);
                    bar.inc(features.len() as u64);
                    // The count comes from the file's statistics: a file holding more
                    // features than they say must not be exported without the rest.
                    if i + 1 == waves && !r.features_after(after, 1)?.is_empty() {
                        return Err(feature_dictionary::Error::format(
                            &a.dict,
                            format!("holds more features than its statistics count ({n}); the export would leave some out"),
                        ));
                    }
                    Ok(features)
                },
                &std::sync::atomic::AtomicBool::new(false),
            );
            bar.finish_and_clear();
            written?.total_features
        };
        return print::wrote(&a.out, n, &a.format, a.json);
    }
    let dict = with_status(format!("reading {}", a.dict.display()), || load(&a.dict))?;
    let exported = with_status(format!("writing {}", a.out.display()), || {
        Ok(match a.format.as_str() {
            "json" => {
                store::save(&dict, &a.out)?;
                None
            }
            _ => {
                let own = store::neuronpedia::BatchNames::of(&store::fdict::Summary::of(&dict));
                Some(store::neuronpedia::write(&dict, &a.out, Some(&names(own)))?)
            }
        })
    })?;
    if let Some(e) = exported {
        report(e);
    }
    print::wrote(&a.out, dict.feature_set.len(), &a.format, a.json)
}

fn cmd_import(a: ImportArgs) -> Result<()> {
    if a.out.extension().and_then(|e| e.to_str()) != Some("fdict") {
        bail!("--out must end in .fdict; got {}", a.out.display());
    }
    store::check_output_location(&a.out)?;
    store::check_not_input(&a.out, &[("dictionary", &a.input)])?;
    // Feature by feature as the JSON is read (see `store::fdict::import_json`): a JSON of
    // millions of features is not held.
    let spinner = status(format!(
        "importing {} into {}",
        a.input.display(),
        a.out.display()
    ));
    let written = store::fdict::import_json(&a.input, &a.out, &mut |n| {
        if n % 1024 == 0 {
            spinner.set_message(format!(
                "importing {} into {}: {n} features",
                a.input.display(),
                a.out.display()
            ));
        }
    });
    spinner.finish_and_clear();
    print::wrote(&a.out, written?, "fdict", a.json)
}

fn cmd_search(a: SearchArgs) -> Result<()> {
    use feature_dictionary::query::Query;
    use feature_dictionary::store::fdict::{self, FdictReader, FeatureBrief};
    let (kind, value) = match (a.token, a.label, a.pattern, a.text) {
        (Some(token), None, None, None) => ("token", token),
        (None, Some(l), None, None) => ("label", l),
        (None, None, Some(pattern), None) => ("pattern", pattern),
        (None, None, None, Some(t)) => ("text", t),
        _ => bail!("give exactly one of --token, --label, --pattern, --text"),
    };
    let query = Query::new(kind, value.clone(), a.by).with_context(|| format!("--{kind}"))?;
    // A token given without the leading space byte-level BPE tokens carry ("LORD" for
    // " LORD") finds nothing; the spaced one is tried too, to say so.
    let spaced = (kind == "token" && !value.starts_with(char::is_whitespace))
        .then(|| Query::new("token", format!(" {value}"), a.by))
        .and_then(|q| q.ok());
    // One hit past the limit tells whether more follow.
    let (mut found, briefs, spaced_hits) = if fdict::is_fdict(&a.dict)? {
        let r = FdictReader::open(&a.dict)?;
        let found = find(&r, &query, a.limit + 1)?;
        let briefs = r.briefs(&found.hits.iter().map(|h| h.id).collect::<Vec<_>>())?;
        let spaced_hits = match (&spaced, found.hits.is_empty()) {
            (Some(q), true) => find(&r, q, 1)?.hits.len(),
            _ => 0,
        };
        (found, briefs, spaced_hits)
    } else {
        let dict = load(&a.dict)?;
        let found = find(&dict, &query, a.limit + 1)?;
        let briefs = found
            .hits
            .iter()
            .filter_map(|h| dict.get(h.id).map(FeatureBrief::of))
            .collect();
        let spaced_hits = match (&spaced, found.hits.is_empty()) {
            (Some(q), true) => find(&dict, q, 1)?.hits.len(),
            _ => 0,
        };
        (found, briefs, spaced_hits)
    };
    let more = found.hits.len() > a.limit;
    found.hits.truncate(a.limit);
    if spaced_hits > 0 && !a.json {
        eprintln!(
            "note: no feature fired on {value:?}, but some did on {:?} (tokens of byte-level BPE vocabularies carry their leading space)",
            format!(" {value}")
        );
    }
    print::search(&query, &found, &briefs, more, a.json)
}

/// `query`'s hits in `d`; a ranking `--by` asked for that the dictionary cannot give is
/// refused first, naming the option.
fn find(
    d: &impl feature_dictionary::query::Search,
    query: &feature_dictionary::query::Query,
    limit: usize,
) -> Result<feature_dictionary::query::Found> {
    use feature_dictionary::query::Query;
    if let Query::Token { by: Some(by), .. } | Query::Pattern { by: Some(by), .. } = query {
        query
            .ranking(d.token_basis()?)
            .with_context(|| format!("--by {}", by.as_str()))?;
    }
    Ok(d.find(query, limit)?)
}

/// The worker threads of a command: `--threads`, or every core. The engine's parts that run
/// on rayon's pool (SAE encoding, the JSON write) get the same number, so `--threads 1` keeps
/// the whole command on one core.
/// Most worker threads a command takes: far more than any machine's cores, and few enough
/// that a mistyped count does not spend minutes starting threads.
pub(crate) const MAX_THREADS: usize = 1024;

/// A clap parser of counts up to `MAX`: larger ones are beyond any use and would only
/// exhaust memory (or time) midway, so they are refused with the option's name.
pub(crate) fn at_most<const MAX: usize>(s: &str) -> std::result::Result<usize, String> {
    let v: usize = s.parse().map_err(|e| format!("{e}"))?;
    if v > MAX {
        return Err(format!("{v} is more than {MAX}, the largest accepted"));
    }
    Ok(v)
}

/// [`at_most`] for a count that must also be at least 1 (0 would mean nothing to count
/// with, and was taken as 1 or refused later under the config's name, not the flag's).
pub(crate) fn one_to<const MAX: usize>(s: &str) -> std::result::Result<usize, String> {
    match at_most::<MAX>(s)? {
        0 => Err("must be at least 1".into()),
        v => Ok(v),
    }
}

pub(crate) fn worker_threads(requested: Option<usize>) -> usize {
    let n = requested.unwrap_or_else(build::default_threads).max(1);
    // Only the first call can size the global pool; a process runs one command.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    n
}

/// The inputs a command was given, from its optional ones, for [`store::check_not_input`].
pub(crate) fn given_inputs<'a>(
    inputs: &[(&'a str, Option<&'a std::path::PathBuf>)],
) -> Vec<(&'a str, &'a Path)> {
    inputs
        .iter()
        .filter_map(|&(what, p)| p.map(|p| (what, p.as_path())))
        .collect()
}
