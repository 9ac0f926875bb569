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

/// A token as a person reads it, escaped: newlines and tabs become visible marks.
pub fn token(s: &str) -> String {
    esc(&s.replace('\n', "↵").replace('\t', "⇥"))
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

/// Formats a float with `digits` decimals, or a dash when absent.
pub fn num(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "–".to_string(),
    }
}
