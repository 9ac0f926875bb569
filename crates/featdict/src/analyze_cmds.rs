//! `featdict similar`, `correlated`, `search`: parse, call the library's analyses, print.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use feature_dictionary::accumulate::coactivation::PARTNERS_STORED;
use feature_dictionary::analyze::{correlation, similar};
use feature_dictionary::model::Feature;
use feature_dictionary::FeatureDictionary;
use serde::Serialize;
use serde_json::json;

use crate::print::visible;

/// Arguments of `featdict similar`.
#[derive(Args, Debug)]
pub struct SimilarArgs {
    /// Dictionary file.
    dict: PathBuf,
    /// Feature id.
    id: u64,
    /// SAE directory or its weights file (SAELens sae_weights.safetensors, EleutherAI
    /// sparsify sae.safetensors, both with the decoder as W_dec; Gemma Scope params.npz,
    /// whose w_dec the default finds too): rank by cosine of decoder directions. Without
    /// it: the decoder neighbours a `build --sae` stored (10 per feature), else the cosine
    /// of the features' firing-token count vectors over the whole corpus.
    #[arg(long)]
    sae: Option<PathBuf>,
    /// Ranking without --sae: `decoder` (the stored decoder neighbours) or `tokens` (the
    /// firing-token profiles); default: decoder when the file stores neighbours.
    #[arg(long, value_parser = ["decoder", "tokens"])]
    by: Option<String>,
    /// Decoder tensor name in --sae ([d_sae, d_in] or [d_in, d_sae]).
    #[arg(long, default_value = "W_dec", requires = "sae")]
    tensor: String,
    /// Neighbours shown (at least 1).
    #[arg(short = 'n', long = "count", default_value_t = 10, value_parser = crate::commands::at_least_one)]
    n: usize,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// Arguments of `featdict correlated`.
#[derive(Args, Debug)]
pub struct CorrelatedArgs {
    /// Dictionary file (built with --correlation exact or sketch).
    dict: PathBuf,
    /// Feature id.
    id: u64,
    /// Smallest correlation shown (only positive correlations are stored).
    #[arg(long, default_value_t = 0.0)]
    min: f64,
    /// Partners shown (at least 1).
    #[arg(short = 'n', long = "count", default_value_t = 10, value_parser = crate::commands::at_least_one)]
    n: usize,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// The weights file of `--sae`: the path itself, or for an SAE directory (what
/// `build --sae` takes) its `sae_weights.safetensors` (SAELens), `sae.safetensors`
/// (sparsify) or `params.npz` (Gemma Scope).
pub(crate) fn sae_weights(path: &std::path::Path) -> Result<PathBuf> {
    if !path.is_dir() {
        // A JSON file (the SAE's cfg.json, a tokenizer) would be read as a safetensors
        // header and misreported as a damaged one.
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        if ext.as_deref() == Some("json") {
            bail!(
                "{}: expected an SAE directory, or the .safetensors or .npz file holding its decoder (W_dec); this is not one (for an SAE directory, pass the directory itself)",
                path.display()
            );
        }
        return Ok(path.to_path_buf());
    }
    for name in ["sae_weights.safetensors", "sae.safetensors", "params.npz"] {
        let w = path.join(name);
        if w.is_file() {
            return Ok(w);
        }
    }
    bail!(
        "{}: a directory without sae_weights.safetensors, sae.safetensors or params.npz; expected an SAELens, sparsify or Gemma Scope SAE directory, or a .safetensors or .npz file holding the decoder",
        path.display()
    );
}

fn first_label(dict: &FeatureDictionary, id: u64) -> String {
    dict.get(id)
        .and_then(|f| f.labels.first().cloned())
        .map(|l| visible(&l))
        .unwrap_or_default()
}

/// `featdict similar`.
pub fn cmd_similar(a: SimilarArgs) -> Result<()> {
    let mut subset = crate::commands::Subset::load(&a.dict, &[a.id])?;
    subset.check(a.id)?;
    // Features without a decoder direction (all-zero rows), when ranking by decoder cosine.
    if a.sae.is_some() && a.by.is_some() {
        bail!("--by chooses the ranking without --sae; with --sae it is the decoder's");
    }
    // The decoder neighbours a `build --sae` stored (none for other builds).
    let stored = subset
        .dict
        .get(a.id)
        .map(similar::stored_neighbours)
        .unwrap_or_default();
    let (method, rows, zero_rows): (&str, Vec<(u64, f64)>, Option<usize>) = match &a.sae {
        Some(path) => {
            let path = sae_weights(path)?;
            let dirs =
                similar::Directions::load(&path, &a.tensor, Some(subset.dict.num_features()))?;
            let nb = dirs.similar_to(a.id as usize, a.n)?;
            (
                "decoder cosine",
                nb.similar
                    .into_iter()
                    .map(|(j, s)| (j as u64, s as f64))
                    .collect(),
                Some(nb.zero_rows_skipped),
            )
        }
        None if a.by.as_deref() != Some("tokens") && !stored.is_empty() => {
            if a.n > stored.len() {
                eprintln!(
                    "note: {} stores {} decoder neighbours of feature {}; pass --sae for more",
                    a.dict.display(),
                    stored.len(),
                    a.id
                );
            }
            (
                "decoder cosine, stored by build --sae",
                stored.into_iter().take(a.n).collect(),
                None,
            )
        }
        None if a.by.as_deref() == Some("decoder") => bail!(
            "{}: feature {} has no stored decoder neighbours (only a build with --sae stores them); pass --sae to rank by decoder cosine",
            a.dict.display(),
            a.id
        ),
        None => {
            if !subset.has_token_counts {
                bail!(
                    "{}: this dictionary holds no per-token firing counts (a file of the original library?), so firing-token profiles cannot be compared; pass --sae to rank by decoder cosine, or rebuild the dictionary with featdict build",
                    a.dict.display()
                );
            }
            if subset
                .dict
                .get(a.id)
                .is_some_and(|f| f.activation_count == 0)
            {
                bail!(
                    "{}: feature {} never fired, so it has no firing-token profile to compare; pass --sae to rank by decoder cosine",
                    a.dict.display(),
                    a.id
                );
            }
            if subset
                .dict
                .get(a.id)
                .is_some_and(|f| f.metadata.top_tokens.is_empty())
            {
                bail!(
                    "{}: feature {} has no stored top tokens (the dictionary counted tokens, but kept none for it), so it has no firing-token profile to compare; pass --sae to rank by decoder cosine",
                    a.dict.display(),
                    a.id
                );
            }
            // Only features sharing a token can have a positive cosine: of a .fdict, read
            // just those.
            if let Some(reader) = subset.reader() {
                let sharing = reader
                    .features_sharing_tokens(a.id)
                    .with_context(|| format!("cannot read dictionary {}", a.dict.display()))?;
                subset.add(&sharing)?;
            }
            (
                "firing-token profile cosine",
                similar::similar_by_tokens(&subset.dict, a.id, a.n)?,
                None,
            )
        }
    };
    // Their labels are shown.
    subset.add(&rows.iter().map(|r| r.0).collect::<Vec<_>>())?;
    let dict = &subset.dict;
    if a.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(j, s)| json!({"id": j, "similarity": s, "labels": dict.get(*j).map(|f| &f.labels)}))
            .collect();
        let mut out = json!({"id": a.id, "method": method, "similar": v});
        if let Some(z) = zero_rows {
            out["zero_rows_skipped"] = json!(z);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("features most similar to #{} ({method})", a.id);
    for (j, s) in rows {
        println!("  #{j:<8} {s:>8.4}  {}", first_label(dict, j));
    }
    match zero_rows {
        Some(1) => println!("  (1 feature skipped: its decoder row is all zeros)"),
        Some(z) if z > 1 => {
            println!("  ({z} features skipped: their decoder rows are all zeros)")
        }
        _ => {}
    }
    Ok(())
}

/// `featdict correlated`.
pub fn cmd_correlated(a: CorrelatedArgs) -> Result<()> {
    let mut subset = crate::commands::Subset::load(&a.dict, &[a.id])?;
    subset.check(a.id)?;
    // The feature's stored partners, then those partners too (their labels are shown). The
    // Python package marks co-activation data only on features that have partners: a part
    // of a .fdict cannot say there is none, the whole file can. (A JSON file, perhaps a
    // pipe that reads once, is already whole.)
    let whole;
    let dict = if correlation::method(&subset.dict).is_some() {
        let partners: Vec<u64> = correlation::correlated(&subset.dict, a.id, f64::NEG_INFINITY)?
            .iter()
            .map(|p| p.0)
            .collect();
        subset.add(&partners)?;
        &subset.dict
    } else if let Some(reader) = subset.reader() {
        if reader.has_python_partners()? {
            whole = crate::commands::load(&a.dict)?;
            &whole
        } else {
            // Neither a recorded method nor any partner in the whole file: refused below
            // without loading it (seconds and gigabytes for millions of features).
            &subset.dict
        }
    } else {
        &subset.dict
    };
    let Some(m) = correlation::method(dict) else {
        bail!(
            "{}: this dictionary holds no co-activation data; rebuild it with --correlation exact (≤ 4,096 features) or --correlation sketch",
            a.dict.display()
        );
    };
    let mut rows = correlation::correlated(dict, a.id, a.min)?;
    rows.truncate(a.n);
    if a.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(j, r)| json!({"id": j, "correlation": r, "labels": dict.get(*j).map(|f| &f.labels)}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"id": a.id, "method": m, "correlated": v, "never_fired": dict.get(a.id).is_some_and(|f| f.activation_count == 0)})
            )?
        );
        return Ok(());
    }
    let what = if m.measure == "pearson" {
        "Pearson correlation of activations over all tokens"
    } else if m.exact {
        "phi correlation of firings over all tokens (sketch, exact here: nothing was evicted)"
    } else {
        "phi correlation of firings over all tokens (sketch, approximate: co-firing counts are lower bounds, and partners can be missing)"
    };
    println!("features correlated with #{} ({what})", a.id);
    let never_fired = dict.get(a.id).is_some_and(|f| f.activation_count == 0);
    if rows.is_empty() {
        if never_fired {
            println!("  none: feature {} never fired", a.id);
        } else {
            println!("  none with correlation >= {}", a.min);
        }
    }
    let shown = rows.len();
    for (j, r) in rows {
        println!("  #{j:<8} {r:>8.4}  {}", first_label(dict, j));
    }
    let stored = correlation::correlated(dict, a.id, f64::NEG_INFINITY)?.len();
    if a.n > shown && stored >= PARTNERS_STORED {
        println!("  (only the {PARTNERS_STORED} strongest partners of each feature are stored)");
    }
    Ok(())
}

/// Arguments of `featdict logits`.
#[derive(Args, Debug)]
pub struct LogitsArgs {
    /// Dictionary file.
    dict: PathBuf,
    /// Feature id.
    id: u64,
    /// SAE directory or its weights file holding the decoder (.safetensors, or a Gemma
    /// Scope params.npz, whose w_dec the default tensor name finds too).
    #[arg(long)]
    sae: PathBuf,
    /// Decoder tensor name in --sae.
    #[arg(long, default_value = "W_dec")]
    tensor: String,
    /// Unembedding: a GGUF model (output.weight, or token_embd.weight when tied), or a
    /// safetensors tensor or 2-D .npy array with --unembed-vocab. [vocab, d] and [d, vocab]
    /// are both read (the vocabulary's size tells them apart); a square matrix is [vocab, d]
    /// unless its tensor is named W_U (TransformerLens' [d_model, d_vocab]).
    #[arg(long)]
    unembed: PathBuf,
    /// Tensor name of the unembedding.
    #[arg(long)]
    unembed_tensor: Option<String>,
    /// Token strings of a safetensors or .npy unembedding: tokenizer.json or a JSON list (a GGUF
    /// file carries its own, and is refused with one).
    #[arg(long)]
    unembed_vocab: Option<PathBuf>,
    /// Tokens shown each way (at least 1; at most half the unembedding's vocabulary, so that
    /// no token is listed as both promoted and suppressed). Promoted tokens are those whose
    /// logit the direction raises, suppressed those it lowers: a side may list fewer.
    #[arg(short = 'n', long = "count", default_value_t = 10, value_parser = crate::commands::at_least_one)]
    n: usize,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// `featdict logits`: the tokens a feature's decoder direction promotes and suppresses.
pub fn cmd_logits(a: LogitsArgs) -> Result<()> {
    use feature_dictionary::analyze::{logit_lens::Unembedding, weights};
    let subset = crate::commands::Subset::load(&a.dict, &[a.id])?;
    subset.check(a.id)?;
    let dict = &subset.dict;
    let sae = sae_weights(&a.sae)?;
    let mut w = weights::read_weight_matrix(&sae, &a.tensor)?;
    let n = dict.num_features();
    if w.rows != n && w.cols == n {
        w = w.transposed();
    }
    if w.rows != n {
        bail!(
            "{}: tensor {:?} is {}×{}; neither dimension matches the dictionary's {n} features",
            sae.display(),
            a.tensor,
            w.rows,
            w.cols
        );
    }
    let direction = w.row(a.id as usize);
    if direction.iter().all(|&v| v == 0.0) {
        bail!(
            "{}: tensor {:?}: feature {}'s decoder row is all zeros: it has no direction, so it promotes and suppresses no token",
            sae.display(),
            a.tensor,
            a.id
        );
    }
    let un = Unembedding::load(
        &a.unembed,
        a.unembed_tensor.as_deref(),
        a.unembed_vocab.as_deref(),
    )?;
    if direction.len() != un.matrix.cols {
        bail!(
            "{}: tensor {:?} has {}-dimensional decoder rows but the unembedding {} has {}-dimensional token rows ({} tokens); both must come from the same model",
            sae.display(),
            a.tensor,
            direction.len(),
            a.unembed.display(),
            un.matrix.cols,
            un.matrix.rows
        );
    }
    if a.n > un.max_per_side() {
        eprintln!(
            "note: -n {} is more than half the vocabulary of {} tokens; showing {} each way, so no token is both promoted and suppressed",
            a.n,
            un.matrix.rows,
            un.max_per_side()
        );
    }
    let lens = un.lens(a.id, direction, a.n)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&lens)?);
        return Ok(());
    }
    println!("feature #{}: logit lens (W_dec row · unembedding)", a.id);
    println!("  promoted");
    if lens.promoted.is_empty() {
        println!("    (none: no token's logit is raised)");
    }
    for (t, s) in &lens.promoted {
        println!("    {:>9.4}  {:?}", s, t);
    }
    println!("  suppressed");
    if lens.suppressed.is_empty() {
        println!("    (none: no token's logit is lowered)");
    }
    for (t, s) in &lens.suppressed {
        println!("    {:>9.4}  {:?}", s, t);
    }
    Ok(())
}

/// Arguments of `featdict polysemantic`.
#[derive(Args, Debug)]
pub struct PolysemanticArgs {
    /// Dictionary file.
    dict: PathBuf,
    /// Token embeddings (GGUF model, or safetensors with --embedding-vocab).
    #[arg(long)]
    embeddings: PathBuf,
    /// Token strings of a safetensors embedding matrix: tokenizer.json or a JSON list (a
    /// GGUF file carries its own, and is refused with one).
    #[arg(long)]
    embedding_vocab: Option<PathBuf>,
    /// Tensor name of the embedding matrix (default: token_embd.weight or a usual name).
    #[arg(long)]
    embedding_tensor: Option<String>,
    /// Well-separated clusters of firing tokens a feature needs to be listed (at least 2).
    #[arg(long, default_value_t = 2, value_parser = crate::commands::at_least_two)]
    min_clusters: usize,
    /// Tokens a cluster needs.
    #[arg(long, default_value_t = 3, value_parser = crate::commands::at_least_one)]
    min_cluster_size: usize,
    /// Features shown.
    #[arg(short = 'n', long = "count", default_value_t = 20, value_parser = crate::commands::at_least_one)]
    n: usize,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// `featdict polysemantic`: features whose firing tokens form well-separated embedding
/// clusters.
pub fn cmd_polysemantic(a: PolysemanticArgs) -> Result<()> {
    use feature_dictionary::analyze::{embeddings::TokenEmbeddings, polysemantic};
    // A .fdict is read a feature at a time (millions of features need not fit in memory);
    // a .json is read whole anyway.
    enum Features {
        File(feature_dictionary::store::fdict::FdictReader),
        Memory(feature_dictionary::FeatureDictionary),
    }
    let features = if feature_dictionary::store::fdict::is_fdict(&a.dict)? {
        Features::File(
            feature_dictionary::store::fdict::FdictReader::open(&a.dict)
                .with_context(|| format!("cannot read dictionary {}", a.dict.display()))?,
        )
    } else {
        Features::Memory(crate::commands::load(&a.dict)?)
    };
    let emb = TokenEmbeddings::load(
        &a.embeddings,
        a.embedding_tensor.as_deref(),
        a.embedding_vocab.as_deref(),
    )?;
    let params = polysemantic::ClusterParams {
        min_clusters: a.min_clusters,
        min_cluster_size: a.min_cluster_size,
        ..Default::default()
    };
    // What the clustering had to work with, so that "0" can say why when it is not a finding.
    let mut with_tokens = 0u64;
    let mut with_embedded_tokens = 0u64;
    let mut found = Vec::new();
    let mut consider = |f: &feature_dictionary::model::Feature| {
        let tokens = &f.metadata.top_tokens;
        if !tokens.is_empty() {
            with_tokens += 1;
            if tokens.iter().any(|t| emb.get(&t.token).is_some()) {
                with_embedded_tokens += 1;
            }
        }
        if let Some(c) = polysemantic::polysemantic_clusters(f, &emb, &params) {
            found.push((f.id, c));
        }
    };
    match features {
        Features::Memory(dict) => dict.features().for_each(&mut consider),
        Features::File(reader) => reader.for_each_feature(|f| {
            consider(f);
            Ok(())
        })?,
    }
    let why_none = if !found.is_empty() {
        None
    } else if with_tokens == 0 {
        Some("no feature of this dictionary has top tokens (per-token counts), which the clustering groups; a file of the original library has none".to_string())
    } else if with_embedded_tokens == 0 {
        Some(format!(
            "none of the top tokens of the {with_tokens} features that have them is in the embeddings' vocabulary ({}): are they the embeddings of the model the SAE was trained on?",
            a.embeddings.display()
        ))
    } else {
        None
    };
    if a.json {
        let v: Vec<_> = found
            .iter()
            .take(a.n)
            .map(|(id, c)| json!({"id": id, "clusters": c}))
            .collect();
        let mut out = json!({"total": found.len(), "features": v});
        if let Some(why) = &why_none {
            out["note"] = json!(why);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("{} polysemantic feature(s)", found.len());
    if let Some(why) = &why_none {
        println!("  ({why})");
    }
    for (id, clusters) in found.iter().take(a.n) {
        let parts: Vec<String> = clusters
            .iter()
            .map(|c| {
                let t: Vec<String> = c.tokens.iter().take(5).map(|t| format!("{t:?}")).collect();
                format!("[{}] ×{}", t.join(" "), c.firings)
            })
            .collect();
        println!("  #{id:<8} {}", parts.join("  |  "));
    }
    Ok(())
}

/// Arguments of `featdict compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Dictionary file.
    dict: PathBuf,
    /// First feature id.
    a: u64,
    /// Second feature id.
    b: u64,
    /// Machine-readable output; what the text prints as "–" (a statistic the file does not
    /// hold, as in the original library's files) is null.
    #[arg(long)]
    json: bool,
}

/// One feature's statistics as `compare` shows them: `None` (JSON `null`, "–" in the text)
/// for what the file does not hold — an original-library file has no std, min, positions or
/// per-token counts — rather than a 0 that reads as measured.
#[derive(Serialize)]
struct ComparedStats {
    feature_id: u64,
    activation_count: u64,
    mean_activation: f64,
    std_activation: Option<f64>,
    max_activation: f64,
    min_activation: Option<f64>,
    activation_frequency: f64,
    mean_position: Option<f64>,
    position_variance: Option<f64>,
    unique_tokens: Option<u64>,
    token_entropy: Option<f64>,
    /// Whether `unique_tokens` and `token_entropy` are exact (false: estimates past the
    /// token table's capacity); unknown when the file holds neither, or does not say. Named
    /// as `show --json` and the search results name the same flag.
    #[serde(rename = "token_counts_exact")]
    token_stats_exact: Option<bool>,
}

impl ComparedStats {
    /// `counts_stored`: the dictionary holds per-token counts, so a feature that never fired
    /// fired on no token (rather than on tokens nobody counted).
    fn of(f: &Feature, counts_stored: bool) -> Self {
        let m = &f.metadata;
        let never_fired = counts_stored && f.activation_count == 0;
        let token_stats = m.unique_tokens.is_some() || m.token_entropy.is_some();
        Self {
            feature_id: f.id,
            activation_count: f.activation_count,
            mean_activation: f.mean_activation,
            std_activation: m.std_activation,
            max_activation: f.max_activation,
            min_activation: m.min_activation.map(f64::from),
            activation_frequency: f.activation_frequency,
            mean_position: m.positions.as_ref().map(|p| p.mean),
            position_variance: m.positions.as_ref().map(|p| p.variance),
            unique_tokens: m.unique_tokens.or(never_fired.then_some(0)),
            token_entropy: m.token_entropy,
            token_stats_exact: m.token_counts_exact.filter(|_| token_stats),
        }
    }

    /// "≈" before an estimate.
    fn approx(&self) -> &'static str {
        if self.token_stats_exact == Some(false) {
            "≈"
        } else {
            ""
        }
    }
}

/// What `compare` prints, and `--json` gives.
#[derive(Serialize)]
struct Compared {
    a: ComparedStats,
    b: ComparedStats,
    /// `None` unless both features have per-token counts; `token_profile_missing` says why.
    token_profile_cosine: Option<f64>,
    /// Why there is no token-profile cosine: "no per-token counts stored" or "feature N
    /// never fired".
    #[serde(skip_serializing_if = "Option::is_none")]
    token_profile_missing: Option<String>,
    /// `None` unless both features have per-token counts (otherwise it is not known which
    /// tokens they share).
    shared_tokens: Option<Vec<(String, u64)>>,
    shared_labels: Vec<String>,
    correlation: Option<f64>,
    /// What `correlation` measures (`pearson` or `phi`, `exact` or `sketch`), when stored.
    correlation_method: Option<correlation::CorrelationMethod>,
}

/// `featdict compare`: two features' statistics over all tokens, shared tokens and labels,
/// token-profile cosine and stored correlation.
pub fn cmd_compare(a: CompareArgs) -> Result<()> {
    use feature_dictionary::analyze;
    let subset = crate::commands::Subset::load(&a.dict, &[a.a, a.b])?;
    subset.check(a.a)?;
    subset.check(a.b)?;
    let dict = &subset.dict;
    let (fa, fb) = (
        dict.get(a.a).expect("checked"),
        dict.get(a.b).expect("checked"),
    );
    let c = analyze::compare(dict, fa, fb);
    let counts_stored = subset.has_token_counts;
    // Per feature: why its token profile is unknown, if it is.
    let missing = |f: &Feature| {
        if counts_stored && f.activation_count == 0 {
            Some(format!("feature {} never fired", f.id))
        } else if f.metadata.top_tokens.is_empty() {
            Some(if counts_stored {
                // The dictionary counted tokens, but not this feature's (e.g. a file whose
                // features' top tokens were cut).
                format!("feature {} has no stored top tokens", f.id)
            } else {
                "no per-token counts stored".to_string()
            })
        } else {
            None
        }
    };
    let token_profile_missing = missing(fa).or_else(|| missing(fb));
    // A feature that never fired shares no token; one without counts, nobody knows.
    let tokens_known = |f: &Feature| {
        !f.metadata.top_tokens.is_empty() || (counts_stored && f.activation_count == 0)
    };
    let c = Compared {
        a: ComparedStats::of(fa, counts_stored),
        b: ComparedStats::of(fb, counts_stored),
        token_profile_cosine: token_profile_missing
            .is_none()
            .then_some(c.token_profile_cosine),
        token_profile_missing,
        shared_tokens: (tokens_known(fa) && tokens_known(fb)).then_some(c.shared_tokens),
        shared_labels: c.shared_labels,
        correlation: c.correlation,
        correlation_method: correlation::method(dict),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&c)?);
        return Ok(());
    }
    println!(
        "{:<22}{:>14}{:>14}",
        "",
        format!("#{}", a.a),
        format!("#{}", a.b)
    );
    // Counts print as integers, measurements with six decimals.
    println!(
        "{:<22}{:>14}{:>14}",
        "firings", c.a.activation_count, c.b.activation_count
    );
    let row = |name: &str, x: Option<String>, y: Option<String>| {
        let dash = || "–".to_string();
        println!(
            "{name:<22}{:>14}{:>14}",
            x.unwrap_or_else(dash),
            y.unwrap_or_else(dash)
        );
    };
    let decimals = |v: f64| format!("{v:.6}");
    row(
        "distinct tokens",
        c.a.unique_tokens.map(|u| format!("{}{u}", c.a.approx())),
        c.b.unique_tokens.map(|u| format!("{}{u}", c.b.approx())),
    );
    row(
        "frequency",
        Some(decimals(c.a.activation_frequency)),
        Some(decimals(c.b.activation_frequency)),
    );
    row(
        "mean activation",
        Some(decimals(c.a.mean_activation)),
        Some(decimals(c.b.mean_activation)),
    );
    row(
        "std activation",
        c.a.std_activation.map(decimals),
        c.b.std_activation.map(decimals),
    );
    row(
        "max activation",
        Some(decimals(c.a.max_activation)),
        Some(decimals(c.b.max_activation)),
    );
    row(
        "mean position",
        c.a.mean_position.map(decimals),
        c.b.mean_position.map(decimals),
    );
    row(
        "token entropy (bits)",
        c.a.token_entropy.map(|e| format!("{}{e:.6}", c.a.approx())),
        c.b.token_entropy.map(|e| format!("{}{e:.6}", c.b.approx())),
    );
    match (c.token_profile_cosine, &c.token_profile_missing) {
        (Some(cos), _) => println!("token-profile cosine  {cos:.4}"),
        (None, why) => println!(
            "token-profile cosine  – ({})",
            why.as_deref().unwrap_or("no per-token counts stored")
        ),
    }
    match (c.correlation, &c.correlation_method) {
        (Some(r), Some(m)) if m.measure == "pearson" => {
            println!("correlation           {r:.4} (Pearson of activations over all tokens)")
        }
        (Some(r), Some(m)) if m.exact => {
            println!("correlation           {r:.4} (phi of firings; sketch, exact here)")
        }
        (Some(r), Some(_)) => println!(
            "correlation           {r:.4} (phi of firings; sketch: approximate, from co-firing counts that are lower bounds)"
        ),
        (Some(r), None) => println!("correlation           {r:.4}"),
        (None, Some(_)) => println!("correlation           – (not stored for this pair)"),
        (None, None) => println!(
            "correlation           – (no co-activation data in this dictionary: build with --correlation exact or sketch)"
        ),
    }
    if !c.shared_labels.is_empty() {
        println!(
            "shared labels         {}",
            visible(&c.shared_labels.join(", "))
        );
    }
    if let Some(shared) = c.shared_tokens.as_ref().filter(|s| !s.is_empty()) {
        let t: Vec<String> = shared
            .iter()
            .take(10)
            .map(|(t, n)| format!("{t:?}×{n}"))
            .collect();
        println!(
            "shared tokens         {} (×: the fewer firings of the two)",
            t.join(" ")
        );
    }
    Ok(())
}
