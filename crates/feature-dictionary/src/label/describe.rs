//! Descriptions: one readable sentence per feature from its type, frequency, best labels
//! (with precision and recall) and top tokens.

use crate::model::{Feature, FeatureType};

/// The description of a feature that never fired, with `labels`, in a corpus of
/// `total_tokens` ([`describe`] of such a feature).
pub fn dead_description(labels: &[String], total_tokens: u64) -> String {
    let labeled = if labels.is_empty() {
        String::new()
    } else {
        format!(" (labeled {})", visible(&labels.join(", ")))
    };
    format!("Dead feature{labeled}: never fired on the {total_tokens} tokens processed.")
}

/// One sentence describing `feature`; `total_tokens` is the corpus size.
///
/// Example: "Sparse feature firing on 0.19% of 12800 tokens (24 times; mean activation 2.42,
/// max 6.02), best explained by token: living (precision 0.20, recall 0.04); top tokens
/// " living" ×1, " the" ×1."
pub fn describe(feature: &Feature, total_tokens: u64) -> String {
    if feature.activation_count == 0 || feature.feature_type == FeatureType::Dead {
        return dead_description(&feature.labels, total_tokens);
    }
    let kind = feature.feature_type.as_str().replace('_', "-");
    let mut kind_cap = kind.clone();
    if let Some(first) = kind_cap.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    let mut s = format!(
        "{kind_cap} feature firing on {}% of {} ({}; mean activation {:.3}, max {:.3})",
        percent(feature.activation_frequency * 100.0),
        crate::count_of(total_tokens, "token", "tokens"),
        crate::count_of(feature.activation_count, "time", "times"),
        feature.mean_activation,
        feature.max_activation,
    );
    let best: Vec<String> = feature
        .metadata
        .label_details
        .iter()
        .take(2)
        .map(|l| match (l.precision, l.recall) {
            (Some(p), Some(r)) => {
                format!("{} (precision {p:.2}, recall {r:.2})", visible(&l.text))
            }
            _ => format!("{} ({})", visible(&l.text), l.strategy.as_str()),
        })
        .collect();
    if best.is_empty() {
        s.push_str(", with no label passing the confidence threshold");
    } else {
        s.push_str(", best explained by ");
        s.push_str(&best.join(" and "));
    }
    if let Some(p) = &feature.metadata.positions {
        // Name a position concentration when one bucket holds at least 90 % of firings.
        let n = feature.activation_count as f64;
        let buckets = [
            (p.start, "at the start of sequences (positions < 5)"),
            (p.early, "early in sequences (positions 5–19)"),
            (p.middle, "mid-sequence (positions 20–49)"),
            (p.late, "late in sequences (positions ≥ 50)"),
        ];
        if let Some((c, what)) = buckets.iter().find(|(c, _)| *c as f64 >= 0.9 * n) {
            // Rounded down: 999 of 1,000 firings is not "100% of the time".
            s.push_str(&format!(
                ", firing {what} {:.0}% of the time",
                (*c as f64 / n * 100.0).floor()
            ));
        }
    }
    // Past the token table's capacity the counts are sketch lower bounds: "≥" says so.
    let at_least = if feature.metadata.token_counts_exact == Some(false) {
        "≥"
    } else {
        ""
    };
    let tops: Vec<String> = feature
        .metadata
        .top_tokens
        .iter()
        .take(3)
        .map(|t| format!("{:?} ×{at_least}{}", t.token, t.firings))
        .collect();
    if !tops.is_empty() {
        s.push_str("; top tokens ");
        s.push_str(&tops.join(", "));
    }
    s.push('.');
    s
}

/// A percentage with two decimals, or two significant digits below 0.1 %: with two decimals
/// a feature firing 3 times in 100,000 tokens would read "0.00%", and one just under the
/// ultra-sparse bound (0.01 %) would read as on it.
fn percent(p: f64) -> String {
    if p >= 0.1 || p <= 0.0 || !p.is_finite() {
        return format!("{p:.2}");
    }
    let decimals = (1 - p.log10().floor() as i32).max(2) as usize;
    format!("{p:.decimals$}")
}

/// Shows control characters of token texts as escapes, so a sentence stays on one line.
fn visible(s: &str) -> String {
    s.replace('\n', "\\n")
        .replace('\t', "\\t")
        .replace('\r', "\\r")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PositionStats;

    fn feature(count: u64, total: u64) -> Feature {
        let mut f = Feature::new(7, 0);
        f.activation_count = count;
        f.activation_frequency = count as f64 / total as f64;
        f.feature_type = FeatureType::classify(count, total);
        f.mean_activation = 1.0;
        f.max_activation = 1.0;
        f
    }

    #[test]
    fn a_rare_feature_is_not_said_to_fire_on_zero_percent() {
        // 3 / 102,400 = 0.00293 %: two decimals would print "0.00%".
        let d = describe(&feature(3, 102_400), 102_400);
        assert!(
            d.contains("firing on 0.0029% of 102400 tokens (3 times"),
            "{d}"
        );
        // 10 / 102,400 = 0.00977 % is ultra-sparse (< 0.01 %); "0.01%" would contradict it.
        let d = describe(&feature(10, 102_400), 102_400);
        assert!(
            d.starts_with("Ultra-sparse feature firing on 0.0098% "),
            "{d}"
        );
        // Common frequencies keep two decimals.
        let d = describe(&feature(24, 12_800), 12_800);
        assert!(d.contains("firing on 0.19% of 12800"), "{d}");
        // One firing is "1 time" (it said "1 times").
        let d = describe(&feature(1, 256), 256);
        assert!(d.contains("firing on 0.39% of 256 tokens (1 time;"), "{d}");
    }

    #[test]
    fn a_position_share_is_not_rounded_up_to_all_firings() {
        let mut f = feature(1000, 100_000);
        f.metadata.positions = Some(PositionStats {
            start: 999,
            late: 1,
            ..Default::default()
        });
        let d = describe(&f, 100_000);
        assert!(d.contains("(positions < 5) 99% of the time"), "{d}");
        f.metadata.positions = Some(PositionStats {
            start: 1000,
            ..Default::default()
        });
        let d = describe(&f, 100_000);
        assert!(d.contains("(positions < 5) 100% of the time"), "{d}");
    }
}
