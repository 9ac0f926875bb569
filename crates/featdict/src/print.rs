//! Human-readable and JSON output of the commands.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use feature_dictionary::build::BuildTimings;
use feature_dictionary::dictionary::Statistics;
use feature_dictionary::model::{Feature, FeatureActivation, HistogramSummary};
use feature_dictionary::FeatureDictionary;
use serde_json::json;

fn out_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Shows a token (or label) on one terminal line, as it is: newline, tab and carriage return
/// as `\n`, `\t`, `\r`, other control characters (ESC starts terminal escape sequences)
/// and the bidirectional overrides and isolates (which reorder the rest of the line) as
/// `\u{..}`, the way the top-token lists (Rust's `{:?}`) show them.
pub fn visible(token: &str) -> String {
    let mut out = String::with_capacity(token.len());
    for c in token.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || is_bidi_control(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Characters that change the display order of the text after them.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A label's precision and recall over the corpus, or `(manual)` for a label a person wrote,
/// which has neither: printed as numbers they would read as a measured 0.
pub fn label_scores(l: &feature_dictionary::model::Label) -> String {
    match (l.precision, l.recall) {
        (Some(p), Some(r)) => format!("precision {p:.2} recall {r:.2}"),
        _ if l.strategy == feature_dictionary::model::LabelingStrategy::Manual => {
            "(manual)".to_string()
        }
        _ => format!("({}, confidence {:.2})", l.strategy.as_str(), l.confidence),
    }
}

/// `n` firings as "1 time" / "n times".
pub fn times(n: u64) -> String {
    feature_dictionary::count_of(n, "time", "times")
}

/// What goes between a window's tokens when shown: nothing when they carry their own
/// spaces (byte-level BPE: some token starts with whitespace), a space between words
/// otherwise. Decided per window, the same way in the terminal and on the feature page.
/// Each context token of `a` (its `tokens`, as [`FeatureActivation::shown_context`] gives
/// them) as shown: the separator before it and its text, joined as the stored context text
/// was (`feature_dictionary::ingest::token_pieces`): concatenated when the dictionary's
/// tokens carry their own spaces, which the stored text says (an example without one goes
/// by its own tokens), otherwise as words.
pub fn context_pieces<'t>(
    a: &FeatureActivation,
    tokens: &'t [String],
) -> Vec<(&'static str, &'t str)> {
    let carry = if !a.context.is_empty() && tokens.len() > 1 {
        a.context == tokens.concat()
    } else {
        tokens
            .iter()
            .any(|t| feature_dictionary::ingest::token_carries_space(t))
    };
    feature_dictionary::ingest::token_pieces(tokens.iter().map(String::as_str), carry).collect()
}

/// Context with the firing token marked `[[token]]`; with none marked when the example's
/// context does not say where its token is (see `FeatureActivation::token_index_in_context`).
pub fn context_line(a: &FeatureActivation) -> String {
    let mut s = String::new();
    let (tokens, at, _) = a.shown_context();
    for (i, (sep, t)) in context_pieces(a, &tokens).into_iter().enumerate() {
        s.push_str(sep);
        if Some(i) == at {
            let _ = write!(s, "[[{}]]", visible(t));
        } else {
            s.push_str(&visible(t));
        }
    }
    s
}

/// After `featdict build`.
pub fn build_summary(
    dict: &FeatureDictionary,
    st: &Statistics,
    out: &Path,
    took: std::time::Duration,
    (first_stage, timings, write): (FirstStage, BuildTimings, WriteTime),
    as_json: bool,
) -> Result<()> {
    let tokens = dict.feature_set.total_tokens_processed;
    let secs = took.as_secs_f64();
    if as_json {
        let (finalize_seconds, write_seconds, finalize_and_write_seconds) = match write {
            WriteTime::Separate(w) => (
                Some(timings.finalize_seconds),
                Some(w),
                timings.finalize_seconds + w,
            ),
            WriteTime::WithFinalize(both) => (None, None, both),
        };
        return out_json(&json!({
            "output": out,
            "seconds": secs,
            "tokens_per_second": tokens as f64 / secs.max(1e-9),
            "accumulate_seconds": timings.accumulate_seconds,
            "accumulate_tokens_per_second": tokens as f64 / timings.accumulate_seconds.max(1e-9),
            "finalize_seconds": finalize_seconds,
            "write_seconds": write_seconds,
            "finalize_and_write_seconds": finalize_and_write_seconds,
            "peak_rss_bytes": feature_dictionary::build::peak_rss_bytes(),
            "statistics": st,
        }));
    }
    // With --drop-dead the file holds no dead feature; say how many were left out rather
    // than "0 dead".
    let omitted = dict.feature_set.metadata.omitted_features.len();
    let dead = if omitted > 0 {
        format!("{} dead, left out", st.dead_features + omitted)
    } else {
        format!("{} dead", st.dead_features)
    };
    println!(
        "wrote {}: {} features ({} active, {dead}) over {} tokens in {:.2}s ({:.0} tokens/s)",
        out.display(),
        dict.num_features(),
        st.active_features,
        tokens,
        secs,
        tokens as f64 / secs.max(1e-9)
    );
    let rest = match write {
        WriteTime::Separate(w) => {
            format!("finalize {:.2}s, write {w:.2}s", timings.finalize_seconds)
        }
        WriteTime::WithFinalize(both) => format!("finalize and write {both:.2}s"),
    };
    match first_stage {
        FirstStage::Pass => println!(
            "  pass {:.2}s ({:.0} tokens/s), {rest}",
            timings.accumulate_seconds,
            tokens as f64 / timings.accumulate_seconds.max(1e-9),
        ),
        FirstStage::Merge => println!(
            "  read and merge {:.2}s, {rest}",
            timings.accumulate_seconds
        ),
    }
    let nonfinite = dict.feature_set.metadata.nonfinite_values;
    if nonfinite > 0 {
        println!(
            "warning: {nonfinite} non-finite activation values were skipped (not in any statistic)"
        );
    }
    Ok(())
}

/// After `featdict build --out X.fdpart` (or a merge into one).
pub fn partial_summary(
    partial: &feature_dictionary::store::partial::Partial,
    out: &Path,
    took: std::time::Duration,
    timings: BuildTimings,
    as_json: bool,
) -> Result<()> {
    let acc = &partial.acc;
    let active: usize = acc
        .features()
        .map(|r| r.moments.iter().filter(|m| m.count > 0).count())
        .sum();
    let (nonfinite, _) = acc.nonfinite();
    let secs = took.as_secs_f64();
    if as_json {
        return out_json(&json!({
            "output": out,
            "partial": true,
            "num_features": acc.n_features(),
            "active_features": active,
            "total_tokens": acc.total_tokens,
            "sequences": partial.sequences.iter().map(|r| [r.start, r.end]).collect::<Vec<_>>(),
            "nonfinite_values": nonfinite,
            "seconds": secs,
            "accumulate_seconds": timings.accumulate_seconds,
            "peak_rss_bytes": feature_dictionary::build::peak_rss_bytes(),
        }));
    }
    let ranges: Vec<String> = partial
        .sequences
        .iter()
        .map(|r| format!("{}..{}", r.start, r.end))
        .collect();
    println!(
        "wrote partial dictionary {}: {} features ({active} fired) over {} tokens, sequences {}, in {secs:.2}s",
        out.display(),
        acc.n_features(),
        acc.total_tokens,
        if ranges.is_empty() { "none".to_string() } else { ranges.join(", ") },
    );
    if nonfinite > 0 {
        println!(
            "warning: {nonfinite} non-finite activation values were skipped (not in any statistic)"
        );
    }
    println!(
        "  finalize it, alone or with the other shards: featdict merge {} [MORE.fdpart …] --out DICT.fdict",
        out.display()
    );
    Ok(())
}

/// What a build's first stage was: a pass over activations, or reading and merging partial
/// dictionaries (`timings.accumulate_seconds` either way).
#[derive(Clone, Copy)]
pub enum FirstStage {
    /// `featdict build`: the streaming pass.
    Pass,
    /// `featdict merge`.
    Merge,
}

/// How long writing a built dictionary took.
pub enum WriteTime {
    /// Written after finalizing, which took [`BuildTimings::finalize_seconds`].
    Separate(f64),
    /// Finalized feature by feature into the file: both stages together.
    WithFinalize(f64),
}

/// `featdict stats`.
pub fn stats(dict: &FeatureDictionary, as_json: bool) -> Result<()> {
    let c = &dict.config;
    stats_lines(
        (&c.model_name, &c.sae_name, c.layer, dict.num_features()),
        &dict.statistics(),
        as_json,
    )
}

/// The body of `featdict stats`, shared by loaded dictionaries and `.fdict` summaries.
/// `stored` are the statistics of the features in the file; every number printed is over
/// all `num_features` features, those left out of the file counted as dead.
fn stats_lines(
    (model, sae, layer, num_features): (&str, &str, i64, usize),
    stored: &feature_dictionary::dictionary::Statistics,
    as_json: bool,
) -> Result<()> {
    let st = stored.over_all_features(num_features);
    if as_json {
        return out_json(&json!({
            "model_name": model,
            "sae_name": sae,
            "layer": layer,
            "num_features": num_features,
            "stored_features": stored.total_features,
            "statistics": st,
        }));
    }
    println!("model        {}", visible(or_dash(model)));
    println!("sae          {}", visible(or_dash(sae)));
    println!("layer        {layer}");
    println!(
        "features     {num_features} ({} in file)",
        stored.total_features
    );
    println!("tokens       {}", st.total_tokens_processed);
    println!("active       {}", st.active_features);
    // A dictionary built with --drop-dead (or the original's include_dead_features=False)
    // holds fewer features than the SAE has; say which of the dead are not in the file.
    let left_out = num_features.saturating_sub(stored.total_features);
    if left_out > 0 {
        println!(
            "dead         {} ({left_out} left out of the file when it was built: never fired, with --drop-dead; or, in Python, fewer firings than min_activation_count)",
            st.dead_features
        );
    } else {
        println!("dead         {}", st.dead_features);
    }
    println!("labeled      {}", st.labeled_features);
    println!("mean freq    {:.6}", st.mean_activation_frequency);
    println!("types");
    for (t, c) in &st.type_distribution {
        println!("  {t:<13}{c}");
    }
    println!("most important (0.7·min(100·freq,1) + 0.3·min(max/5,1); ties by firings)");
    for (id, score) in &st.top_features {
        println!("  #{id:<8} {score:.3}");
    }
    Ok(())
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// `featdict show`.
pub fn feature(f: &Feature, n_examples: usize, as_json: bool) -> Result<()> {
    if as_json {
        return out_json(f);
    }
    let m = &f.metadata;
    println!("feature #{}  ({})", f.id, f.feature_type.as_str());
    println!(
        "  fires {}, frequency {:.6}",
        times(f.activation_count),
        f.activation_frequency
    );
    if f.activation_count > 0 {
        // "–" for what the file does not hold (an original-library file has no std or min).
        let or_dash = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| number(v, 4));
        println!(
            "  activation mean {}  std {}  min {}  max {}",
            number(f.mean_activation, 4),
            or_dash(m.std_activation),
            or_dash(m.min_activation.map(f64::from)),
            number(f.max_activation, 4)
        );
        let q: Vec<String> = m
            .quantiles
            .iter()
            .map(|(k, v)| format!("{k} {}", number(*v, 3)))
            .collect();
        if !q.is_empty() {
            let how = if m.quantiles_exact {
                "exact: every firing is a top example"
            } else {
                "from the histogram"
            };
            println!("  quantiles ({how}) {}", q.join("  "));
        }
        if let Some(h) = &m.histogram {
            histogram_by_octave(h);
        }
    }
    if let Some(p) = &m.positions {
        println!(
            "  positions mean {:.1} var {:.1}  start {} early {} middle {} late {}",
            p.mean, p.variance, p.start, p.early, p.middle, p.late
        );
    }
    if !f.labels.is_empty() {
        // Labels of whitespace tokens hold the whitespace ("token:\n").
        println!("  labels {}", visible(&f.labels.join(", ")));
    }
    if !f.description.is_empty() {
        println!("  {}", visible(&f.description));
    }
    if let Some(distinct) = m.unique_tokens {
        // Past the token table's capacity both are estimates (see `accumulate::distinct`).
        let approx = if m.token_counts_exact == Some(false) {
            "≈"
        } else {
            ""
        };
        let entropy = m
            .token_entropy
            .map_or_else(String::new, |e| format!(", entropy {approx}{e:.3} bits"));
        println!("  firing tokens: {approx}{distinct} distinct{entropy}");
    }
    if !m.top_tokens.is_empty() {
        let exact = if m.token_counts_exact == Some(false) {
            " (sketch: lower bounds)"
        } else {
            ""
        };
        println!("  top tokens{exact}: firings/occurrences");
        for t in m.top_tokens.iter().take(10) {
            println!(
                "    {:<20} {:>7} / {:<7} precision {:.3}",
                format!("{:?}", t.token),
                t.firings,
                t.occurrences,
                t.firings as f64 / t.occurrences.max(1) as f64
            );
        }
    }
    // What the web page shows beside the statistics: the stored neighbours.
    let similar = feature_dictionary::analyze::similar::stored_neighbours(f);
    if !similar.is_empty() {
        let list: Vec<String> = similar
            .iter()
            .map(|(id, c)| format!("#{id} {}", number(*c, 3)))
            .collect();
        println!("  similar (decoder cosine): {}", list.join("  "));
    }
    // `-n 0` asks for no examples at all (quantile-stratified ones included).
    if n_examples > 0 && !f.top_activations.is_empty() {
        println!("  top examples (activation  seq:pos  context)");
        for a in f.top_activations.iter().take(n_examples) {
            println!(
                "    {:>9}  {:>6}:{:<4} {}",
                number(a.activation.into(), 4),
                // A file of the original library says no sequence.
                a.metadata
                    .sequence
                    .map_or_else(|| "?".to_string(), |s| s.to_string()),
                a.position,
                context_line(a)
            );
        }
    }
    if n_examples > 0 && !m.quantile_examples.is_empty() {
        println!("  quantile-stratified examples");
        for g in &m.quantile_examples {
            if let Some(a) = g.examples.first() {
                println!(
                    "    [{}, {}] {:>9}  {}",
                    number(g.min_activation, 3),
                    number(g.max_activation, 3),
                    number(a.activation.into(), 4),
                    context_line(a)
                );
            }
        }
    }
    Ok(())
}

/// `v` with `decimals` decimals, or in scientific notation where those would hide it: an
/// activation of 1e-30 is not "0.0000", nor 3e38 a 39-digit number.
pub fn number(v: f64, decimals: usize) -> String {
    let a = v.abs();
    if v == 0.0 || (1e-3..1e6).contains(&a) || !v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        format!("{v:.decimals$e}")
    }
}

/// Prints a feature's histogram with its bins summed per octave (factor of two): its
/// `bins_per_octave` bins each would run to dozens of lines, and the counts stay exact.
/// The full bins are in `show --json` (`metadata.histogram`).
fn histogram_by_octave(h: &HistogramSummary) {
    let per = h.bins_per_octave.max(1);
    let mut octaves: Vec<(u32, u64)> = Vec::new();
    for &(bin, count) in &h.counts {
        match octaves.last_mut() {
            Some((octave, sum)) if *octave == bin / per => *sum += count,
            _ => octaves.push((bin / per, count)),
        }
    }
    let Some(&most) = octaves.iter().map(|(_, c)| c).max() else {
        return;
    };
    let last = h.n_bins.saturating_sub(1) / per;
    println!("  histogram (firings per octave; bins of 1/{per} octave in --json)");
    for (octave, count) in octaves {
        let lower = h.lower_edge(octave * per);
        let upper = h.lower_edge((octave + 1) * per);
        // The edge octaves also hold everything beyond them.
        let range = match (octave == 0, octave == last) {
            (true, true) => "all values".to_string(),
            (true, false) => format!("< {}", number(upper, 4)),
            (false, true) => format!(">= {}", number(lower, 4)),
            (false, false) => format!("[{}, {})", number(lower, 4), number(upper, 4)),
        };
        let width = ((count as f64 / most as f64) * 30.0).ceil() as usize;
        println!("    {range:<20} {count:>9}  {}", "█".repeat(width));
    }
}

/// `featdict top`.
pub fn top(
    top: &[&Feature],
    only: Option<feature_dictionary::model::FeatureType>,
    as_json: bool,
) -> Result<()> {
    if as_json {
        let rows: Vec<_> = top
            .iter()
            .map(|f| {
                json!({
                    "id": f.id,
                    "activation_count": f.activation_count,
                    "activation_frequency": f.activation_frequency,
                    "max_activation": f.max_activation,
                    "mean_activation": f.mean_activation,
                    "feature_type": f.feature_type,
                    "top_token": f.metadata.top_tokens.first().map(|t| &t.token),
                    "labels": f.labels,
                })
            })
            .collect();
        return out_json(&rows);
    }
    if top.is_empty() {
        match only {
            Some(t) => println!("no {} features", t.as_str()),
            None => println!("no features"),
        }
        return Ok(());
    }
    println!(
        "{:>8}  {:>10}  {:>10}  {:>9}  {:>9}  top token",
        "id", "count", "frequency", "max", "mean"
    );
    for f in top {
        println!(
            "{:>8}  {:>10}  {:>10.6}  {:>9}  {:>9}  {}",
            f.id,
            f.activation_count,
            f.activation_frequency,
            number(f.max_activation, 4),
            number(f.mean_activation, 4),
            f.metadata
                .top_tokens
                .first()
                .map(|t| format!("{:?}", t.token))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// After `featdict encode`.
pub fn encode_summary(
    s: &feature_dictionary::sae::write::EncodeSummary,
    out: &Path,
    took: std::time::Duration,
    as_json: bool,
) -> Result<()> {
    let secs = took.as_secs_f64();
    if as_json {
        return out_json(&json!({
            "output": out,
            "seconds": secs,
            "tokens_per_second": s.tokens as f64 / secs.max(1e-9),
            "summary": s,
        }));
    }
    println!(
        "wrote {}: {} nonzero latents over {} in {} (mean L0 {:.2}; locations {}, activations {}) in {:.2}s ({:.0} tokens/s)",
        out.display(),
        s.entries,
        feature_dictionary::count_of(s.tokens, "token", "tokens"),
        feature_dictionary::count_of(s.sequences, "sequence", "sequences"),
        s.mean_l0,
        s.locations_dtype,
        s.activations_dtype,
        secs,
        s.tokens as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// After `featdict export` / `import`.
pub fn wrote(out: &Path, features: usize, format: &str, as_json: bool) -> Result<()> {
    if as_json {
        return out_json(&json!({"output": out, "features": features, "format": format}));
    }
    println!("wrote {}: {features} features ({format})", out.display());
    Ok(())
}

/// `featdict search`. A token or pattern search reports its basis and ranking (`basis`, `by`
/// in JSON); one over stored examples says so above its results, found or not, since only
/// there can a reader tell that a missing feature may fire on the token all the same.
pub fn search(
    query: &feature_dictionary::query::Query,
    found: &feature_dictionary::query::Found,
    briefs: &[feature_dictionary::store::fdict::FeatureBrief],
    more: bool,
    as_json: bool,
) -> Result<()> {
    let hits = &found.hits;
    let brief = |id: u64| briefs.iter().find(|b| b.id == id);
    if as_json {
        let rows: Vec<_> = hits
            .iter()
            .map(|h| json!({"id": h.id, "score": h.score, "matched": h.matched, "support": h.support, "feature": brief(h.id)}))
            .collect();
        let mut out = json!({"kind": query.kind()});
        if let (Some(basis), Some(by)) = (found.basis, found.by) {
            out["basis"] = json!(basis.as_str());
            out["by"] = json!(by.as_str());
        }
        out["more"] = json!(more);
        out["hits"] = json!(rows);
        return out_json(&out);
    }
    if let Some(note) = found.basis.and_then(|b| b.note()) {
        println!("note: {note}");
    }
    let approximate = briefs.iter().filter(|b| !b.token_counts_exact).count();
    if let Some(note) = feature_dictionary::query::lower_bounds_note(found.basis, approximate) {
        println!("note: {note}");
    }
    if hits.is_empty() {
        println!("no match");
        return Ok(());
    }
    // Beside a precision, the firings behind it (1 of 1 and 3,000 of 3,000 both read 1.0);
    // "all firings" are the feature's over the whole corpus, not only on the matched token.
    let with_support = found.by == Some(feature_dictionary::query::TokenRank::Precision);
    let support = |h: &feature_dictionary::query::Hit| {
        if with_support {
            format!("  {:>12}", h.support)
        } else {
            String::new()
        }
    };
    println!(
        "{:>8}  {:>10}{}  {:>11}  {:<16}  labels",
        "id",
        "score",
        if with_support { "  on the token" } else { "" },
        "all firings",
        "matched"
    );
    for h in hits {
        let b = brief(h.id);
        // Counts print as counts.
        let score = if found.by == Some(feature_dictionary::query::TokenRank::Firings) {
            format!("{:.0}", h.score)
        } else {
            format!("{:.4}", h.score)
        };
        println!(
            "{:>8}  {score:>10}{}  {:>11}  {:<16}  {}",
            h.id,
            support(h),
            b.map_or(0, |b| b.activation_count),
            // Quoted and escaped like the top tokens of `show` (not escaped twice).
            format!("{:?}", h.matched),
            b.map(|b| visible(&b.labels.join(", "))).unwrap_or_default()
        );
    }
    if more {
        println!("(more hits follow: raise --limit)");
    }
    Ok(())
}

/// `featdict stats` on an `.fdict`, from its precomputed summary and statistics; prints
/// exactly what [`stats`] prints for the same dictionary (a test compares them).
pub fn stats_summary(
    summary: &feature_dictionary::store::fdict::Summary,
    st: &feature_dictionary::dictionary::Statistics,
    as_json: bool,
) -> Result<()> {
    stats_lines(
        (
            &summary.model_name,
            &summary.sae_name,
            summary.layer,
            summary.num_features,
        ),
        st,
        as_json,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use feature_dictionary::model::{Label, LabelingStrategy};

    #[test]
    fn numbers_too_small_or_large_for_decimals_show_in_scientific_notation() {
        assert_eq!(number(1.5e-30, 4), "1.5000e-30");
        assert_eq!(number(3e38, 4), "3.0000e38");
        assert_eq!(number(-2e-5, 3), "-2.000e-5");
        assert_eq!(number(0.0, 4), "0.0000");
        assert_eq!(number(0.0012, 4), "0.0012");
        assert_eq!(number(123456.5, 2), "123456.50");
    }

    /// A manual label has no precision or recall; it was shown as measured zeros.
    #[test]
    fn a_manual_label_shows_as_manual_not_as_zero_scores() {
        let mut l = Label {
            text: "my label".into(),
            strategy: LabelingStrategy::Manual,
            confidence: 1.0,
            precision: None,
            recall: None,
            evidence: vec![],
        };
        assert_eq!(label_scores(&l), "(manual)");
        l.strategy = LabelingStrategy::TokenFrequency;
        l.precision = Some(0.5);
        l.recall = Some(0.25);
        assert_eq!(label_scores(&l), "precision 0.50 recall 0.25");
        assert_eq!(times(1), "1 time");
        assert_eq!(times(2), "2 times");
    }

    /// An example, with its context tokens starting at position `start`.
    pub(crate) fn example(
        token: &str,
        position: u32,
        start: u32,
        context: &[&str],
    ) -> FeatureActivation {
        FeatureActivation {
            feature_id: 0,
            token: token.into(),
            position,
            activation: 2.0,
            context: String::new(),
            context_tokens: context.iter().map(|t| t.to_string()).collect(),
            metadata: feature_dictionary::model::ActivationMetadata {
                context_start: start,
                ..Default::default()
            },
        }
    }

    #[test]
    fn contexts_show_words_spaced_bpe_tokens_joined_and_a_bare_example_its_token() {
        assert_eq!(
            context_line(&example("sat", 2, 0, &["The", "cat", "sat", "on"])),
            "The cat [[sat]] on"
        );
        assert_eq!(
            context_line(&example(" sat", 2, 0, &["The", " cat", " sat", " on"])),
            "The cat[[ sat]] on"
        );
        // The original library's files may store no context: the firing token is shown.
        assert_eq!(context_line(&example("<dog>", 7, 0, &[])), "[[<dog>]]");
        // A context that does not hold the token where the example says: nothing marked,
        // rather than the token that happens to be there.
        assert_eq!(context_line(&example("cat", 2, 3, &["a", "b"])), "a b");
        assert_eq!(
            context_line(&example("cat", 2, 0, &["The", "dog", "sat"])),
            "The dog sat"
        );
        assert_eq!(
            context_line(&example("cat", 9, 0, &["The", "cat"])),
            "The cat"
        );
    }
}
