//! Descriptions: one readable sentence per feature from its type, frequency, best labels
//! (with precision and recall) and top tokens.

use crate::model::{Feature, FeatureType};

/// One sentence describing `feature`; `total_tokens` is the corpus size.
///
/// Example: "Sparse feature firing on 0.19% of 12800 tokens (24 times; mean activation 2.42,
/// max 6.02), best explained by token: living (precision 0.20, recall 0.04); top tokens
/// " living" ×1, " the" ×1."
pub fn describe(feature: &Feature, total_tokens: u64) -> String {
    if feature.activation_count == 0 || feature.feature_type == FeatureType::Dead {
        let labeled = if feature.labels.is_empty() {
            String::new()
        } else {
            format!(" (labeled {})", visible(&feature.labels.join(", ")))
        };
        return format!(
            "Dead feature{labeled}: never fired on the {total_tokens} tokens processed."
        );
    }
    let kind = feature.feature_type.as_str().replace('_', "-");
    let mut kind_cap = kind.clone();
    if let Some(first) = kind_cap.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    let mut s = format!(
        "{kind_cap} feature firing on {:.2}% of {total_tokens} tokens ({} times; mean activation {:.3}, max {:.3})",
        feature.activation_frequency * 100.0,
        feature.activation_count,
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
            s.push_str(&format!(
                ", firing {what} {:.0}% of the time",
                *c as f64 / n * 100.0
            ));
        }
    }
    let tops: Vec<String> = feature
        .metadata
        .top_tokens
        .iter()
        .take(3)
        .map(|t| format!("{:?} ×{}", t.token, t.firings))
        .collect();
    if !tops.is_empty() {
        s.push_str("; top tokens ");
        s.push_str(&tops.join(", "));
    }
    s.push('.');
    s
}

/// Shows control characters of token texts as escapes, so a sentence stays on one line.
fn visible(s: &str) -> String {
    s.replace('\n', "\\n")
        .replace('\t', "\\t")
        .replace('\r', "\\r")
}
