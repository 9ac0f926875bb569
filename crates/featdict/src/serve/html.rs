//! HTML building blocks. Every string from a dictionary goes through [`esc`] (text and
//! attribute values alike) or [`url`] (query parameters) before it reaches a page.

use std::fmt::Write as _;

/// Escapes `&`, `<`, `>`, `"` and `'`, which makes text safe both between tags and inside
/// quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A token as a person reads it, escaped: the empty token shows as `∅`; newlines and tabs
/// become visible marks, and so do the other control characters (a carriage return broke
/// the line like a newline; ESC, NUL and the like showed as nothing), as their Unicode
/// control pictures (`␍`, `␛`, `␀`).
/// Bidirectional overrides stay: the stylesheet isolates every token (`unicode-bidi:
/// isolate`), so one reorders only its own token, not the context after it.
pub fn token(s: &str) -> String {
    if s.is_empty() {
        // An empty token would be an invisible (and unclickable) span or link.
        return "∅".into();
    }
    // A token of spaces only would show as a blank box: its spaces show as `␣`.
    let blank = s.chars().all(|c| c == ' ');
    let visible: String = s
        .chars()
        .map(|c| match c {
            ' ' if blank => '␣',
            '\n' => '↵',
            '\t' => '⇥',
            '\u{7f}' => '␡',
            c if (c as u32) < 0x20 => char::from_u32(0x2400 + c as u32).unwrap_or('�'),
            c if c.is_control() => '�',
            c => c,
        })
        .collect();
    esc(&visible)
}

/// Text written from tokens (labels, their evidence, descriptions), escaped: whitespace and
/// control characters as [`token`] shows them, so `token:\n` and `token: ` do not both read
/// "token:", and bidirectional controls as `�`: such text is not isolated token by token, so
/// one override would reverse everything after it (the rest of a description, the next
/// labels).
pub fn text(s: &str) -> String {
    // Spaces that end the text (`token: ` of a space token, `ngram:. `) would not show.
    let kept = s.trim_end_matches(' ');
    let trailing = "␣".repeat(s.len() - kept.len());
    token(&without_bidi_controls(kept)) + &trailing
}

/// `s` with every bidirectional control replaced by `�`.
fn without_bidi_controls(s: &str) -> String {
    s.chars()
        .map(|c| {
            if feature_dictionary::store::fdict::is_bidi_control(c) {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// An error message, escaped, with bidirectional controls as `�`: messages repeat what the
/// request said (a search kind, a regex), and one override would show the rest reversed.
pub fn message(s: &str) -> String {
    esc(&without_bidi_controls(s))
}

/// Labels for a table cell: each one [`text`], in its own `<bdi>`, comma-separated.
pub fn labels(labels: &[String]) -> String {
    labels
        .iter()
        .map(|l| format!("<bdi>{}</bdi>", text(l)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Percent-encodes a query-parameter value (everything but unreserved characters).
pub fn url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A whole page around `body`.
pub fn page(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · featdict</title>
<link rel="stylesheet" href="/assets/style.css">
</head>
<body>
<header>
<a class="home" href="/">featdict</a>
<a class="browse" href="/features">features</a>
<form class="quick" action="/search" method="get">
<select name="kind" aria-label="search kind"><option value="text">full text</option><option value="token">token</option><option value="label">label</option><option value="pattern">regex</option></select>
<input name="q" placeholder="search features" aria-label="query">
<button>Search</button>
</form>
</header>
<main>
{body}
</main>
<script src="/assets/app.js"></script>
</body>
</html>
"#,
        title = esc(title)
    )
}

/// A firing frequency: six decimals, or three significant digits in scientific notation
/// below 0.0001, where six decimals would show a feature that fires as never firing.
pub fn frequency(f: f64) -> String {
    if f > 0.0 && f < 1e-4 {
        format!("{f:.2e}")
    } else {
        format!("{f:.6}")
    }
}

/// Formats a float with `digits` decimals, or a dash when absent.
pub fn num(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "–".to_string(),
    }
}
