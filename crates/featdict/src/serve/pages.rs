//! Server-rendered pages: overview, feature list, search and feature. Everything taken from the
//! dictionary or the request is escaped with [`html::esc`] / [`html::token`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use feature_dictionary::model::{Feature, FeatureActivation, FeatureType, HistogramSummary};
use feature_dictionary::query::{TokenBasis, TokenRank};

use super::html::{self, esc, num, page};
use super::{
    blocking, parse_id, parse_list, parse_search, parse_typed_id, run_list, run_search, ApiError,
    AppState, Params,
};

const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/app.js");

pub async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

pub(super) fn error_page(e: ApiError) -> Response {
    let body = format!(
        "<h1>{}</h1><p class=\"error\">{}</p><p><a href=\"/\">overview</a></p>",
        e.status.as_u16(),
        html::message(&e.message)
    );
    (e.status, Html(page("error", &body))).into_response()
}

pub async fn not_found() -> Response {
    error_page(ApiError::not_found("no such page"))
}

pub async fn overview(State(st): State<Arc<AppState>>) -> Response {
    let got = blocking(move || {
        let (summary, stats) = st.current_totals()?;
        let ids: Vec<u64> = stats.top_features.iter().map(|t| t.0).collect();
        let briefs = st.read(|r| Ok(r.briefs(&ids)?))?;
        Ok((summary, stats, briefs))
    })
    .await;
    let (summary, stats, briefs) = match got {
        Ok(got) => got,
        Err(e) => return error_page(e),
    };
    // Counts and mean over every feature of the SAE, those left out of the file as dead.
    let all = stats.over_all_features(summary.num_features);
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>{}</h1><p class=\"muted\">model {} · layer {}</p>",
        esc(if summary.sae_name.is_empty() {
            "dictionary"
        } else {
            &summary.sae_name
        }),
        esc(if summary.model_name.is_empty() {
            "–"
        } else {
            &summary.model_name
        }),
        summary.layer
    );
    let _ = write!(
        b,
        "<div class=\"stats-grid\"><table>\
         <tr><th>features</th><td class=\"n\">{}</td></tr>\
         <tr><th>in file</th><td class=\"n\">{}</td></tr>\
         <tr><th>active</th><td class=\"n\">{}</td></tr>\
         <tr><th>dead</th><td class=\"n\">{}</td></tr>\
         <tr><th>labeled</th><td class=\"n\">{}</td></tr>\
         <tr><th>tokens processed</th><td class=\"n\">{}</td></tr>\
         <tr><th>mean frequency</th><td class=\"n\">{:.6}</td></tr></table>",
        summary.num_features,
        stats.total_features,
        all.active_features,
        all.dead_features,
        all.labeled_features,
        all.total_tokens_processed,
        all.mean_activation_frequency
    );
    b.push_str("<table id=\"types\"><tr><th>type</th><th class=\"n\">features</th><th></th></tr>");
    let total = all.total_features.max(1) as f64;
    for (t, c) in &all.type_distribution {
        let _ = write!(
            b,
            "<tr><td>{}</td><td class=\"n\">{c}</td><td><span class=\"bar\" style=\"width:{:.1}px\"></span></td></tr>",
            esc(t),
            240.0 * *c as f64 / total
        );
    }
    b.push_str("</table></div>");
    // The score saturates (every feature firing on ≥ 1 % of tokens with a max ≥ 5 scores
    // 1.000), so say what it is and how its ties are ranked.
    b.push_str("<h2>Most important features</h2><p class=\"muted\" id=\"importance\">importance, the original library's score: 0.7 × min(1, 100 × frequency) + 0.3 × min(1, max ÷ 5); equal scores ranked by firings, then max</p><table><tr><th>feature</th><th class=\"n\">importance</th><th>top token</th><th>labels</th></tr>");
    for (id, score) in &stats.top_features {
        let br = briefs.iter().find(|x| x.id == *id);
        let _ = write!(
            b,
            "<tr><td><a href=\"/features/{id}\">#{id}</a></td><td class=\"n\">{score:.3}</td><td>{}</td><td>{}</td></tr>",
            br.and_then(|x| x.top_token.as_deref())
                .map(|t| format!("<span class=\"token\">{}</span>", html::token(t)))
                .unwrap_or_default(),
            br.map(|x| html::labels(&x.labels)).unwrap_or_default()
        );
    }
    b.push_str("</table>");
    b.push_str(
        "<h2>Open a feature</h2><form action=\"/go\" method=\"get\" id=\"go\">\
         <input name=\"id\" inputmode=\"numeric\" placeholder=\"feature id\" aria-label=\"feature id\"> \
         <button>Open</button></form>",
    );
    Html(page("overview", &b)).into_response()
}

/// `/features`: every feature of the file, in a chosen order and of a chosen type, a page
/// at a time.
pub async fn features(State(st): State<Arc<AppState>>, Params(params): Params) -> Response {
    let order = params
        .get("order")
        .map(String::as_str)
        .unwrap_or("activation_count");
    let kind = params.get("type").map(String::as_str).unwrap_or("all");
    let opt = |v: &str, label: &str, cur: &str| {
        format!(
            "<option value=\"{}\"{}>{}</option>",
            esc(v),
            if v == cur { " selected" } else { "" },
            esc(label)
        )
    };
    let orders: String = [
        ("activation_count", "most firings"),
        ("max_activation", "largest activation"),
        ("confidence", "most confident"),
        ("id", "id"),
    ]
    .iter()
    .map(|(v, l)| opt(v, l, order))
    .collect();
    let mut types = opt("all", "all types", kind);
    for t in FeatureType::ALL {
        types.push_str(&opt(t.as_str(), t.as_str(), kind));
    }
    // A page size given in the URL is kept when the form changes the order or the type.
    let limit_field = params
        .get("limit")
        .filter(|l| !l.is_empty())
        .map(|l| {
            format!(
                "<input type=\"hidden\" name=\"limit\" value=\"{}\">",
                esc(l)
            )
        })
        .unwrap_or_default();
    let mut b = format!(
        "<h1>Features</h1><form action=\"/features\" method=\"get\" class=\"search\">\
         <select name=\"order\" aria-label=\"order\">{orders}</select> \
         <select name=\"type\" aria-label=\"feature type\">{types}</select>{limit_field} \
         <button>Show</button></form>"
    );
    let request = match parse_list(&params) {
        Ok(r) => r,
        Err(e) => return error_in("features", b, e),
    };
    let (offset, limit) = (request.offset, request.limit as u64);
    let (order, feature_type) = (request.order, request.feature_type);
    let found = match run_list(st, request).await {
        Ok(found) => found,
        Err(e) => return error_in("features", b, e),
    };
    // Previous and next pages keep the order, the type and the page size.
    let href = |from: u64| {
        format!(
            "/features?order={}&amp;type={}&amp;limit={limit}&amp;offset={from}",
            order.as_str(),
            feature_type.map_or("all", |t| t.as_str()),
        )
    };
    if found.dead_left_out > 0 {
        let n = found.dead_left_out;
        let _ = write!(
            b,
            "<p class=\"note\" id=\"left-out\">Note: {n} dead feature{} left out of this file when it was built (--drop-dead), so not listed.</p>",
            if n == 1 { " was" } else { "s were" }
        );
    }
    if found.briefs.is_empty() {
        if offset > 0 {
            let _ = write!(
                b,
                "<p><a href=\"{}\" rel=\"first\">first page</a></p>",
                href(0)
            );
        }
        return nothing_found("features", b, "No feature", offset);
    }
    let pages = Pages {
        what: "features",
        offset,
        shown: found.briefs.len() as u64,
        limit,
        more: found.more,
    };
    let nav = pages.nav(href);
    b.push_str(&nav);
    b.push_str(
        "<table id=\"results\"><tr><th>feature</th><th>type</th><th class=\"n\">firings</th>\
         <th class=\"n\">frequency</th><th class=\"n\">max</th><th class=\"n\">confidence</th>\
         <th>top token</th><th>labels</th></tr>",
    );
    for x in &found.briefs {
        let _ = write!(
            b,
            "<tr><td><a href=\"/features/{id}\">#{id}</a></td><td>{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(&x.feature_type),
            x.activation_count,
            html::frequency(x.activation_frequency),
            num(Some(x.max_activation), 3),
            // A feature without labels has no confidence to show, not a measured 0.
            num((!x.labels.is_empty()).then_some(x.confidence), 2),
            x.top_token
                .as_deref()
                .map(|t| format!("<span class=\"token\">{}</span>", html::token(t)))
                .unwrap_or_default(),
            html::labels(&x.labels),
            id = x.id,
        );
    }
    b.push_str("</table>");
    b.push_str(&nav);
    Html(page("features", &b)).into_response()
}

/// `body` (the page so far) with `e` appended, as page `title` with `e`'s status.
fn error_in(title: &str, mut body: String, e: ApiError) -> Response {
    let _ = write!(body, "<p class=\"error\">{}</p>", html::message(&e.message));
    (e.status, Html(page(title, &body))).into_response()
}

/// Appends a note on how results were found (shown above them).
fn push_note(body: &mut String, note: &str) {
    let _ = write!(
        body,
        "<p class=\"note\" id=\"basis\">Note: {}.</p>",
        esc(note)
    );
}

/// `body` with "`nothing`." (or "`nothing` after the first N." past the first page).
fn nothing_found(title: &str, mut body: String, nothing: &str, offset: u64) -> Response {
    let _ = write!(body, "<p id=\"results\">{nothing}");
    if offset > 0 {
        // Past the end of the list, which may hold far fewer than `offset` entries.
        let _ = write!(body, " from position {} on", offset + 1);
    }
    body.push_str(".</p>");
    Html(page(title, &body)).into_response()
}

/// Where a page of a paged list stands, for its navigation.
struct Pages {
    /// What is listed ("results", "features").
    what: &'static str,
    offset: u64,
    shown: u64,
    limit: u64,
    /// Whether more follow.
    more: bool,
}

impl Pages {
    /// "what a–b · ← previous · next →", the links made by `href(offset)` (already escaped).
    fn nav(&self, href: impl Fn(u64) -> String) -> String {
        let link = |from: u64, text: &str, rel: &str| {
            format!("<a href=\"{}\" rel=\"{rel}\">{text}</a>", href(from))
        };
        let mut parts = vec![format!(
            "{} {}–{}",
            self.what,
            self.offset + 1,
            self.offset + self.shown
        )];
        if self.offset > 0 {
            parts.push(link(
                self.offset.saturating_sub(self.limit),
                "← previous",
                "prev",
            ));
        }
        if self.more {
            parts.push(link(self.offset + self.limit, "next →", "next"));
        }
        format!("<nav class=\"pager\">{}</nav>", parts.join(" · "))
    }
}

/// `/go?id=N` (the overview's form) redirects to the feature page.
pub async fn go(Params(params): Params) -> Response {
    // Pages write ids as "#12"; one pasted from them is taken as written.
    let raw = params
        .get("id")
        .map(|s| {
            let s = s.trim();
            s.strip_prefix('#').unwrap_or(s).trim().to_string()
        })
        .unwrap_or_default();
    match parse_typed_id(&raw) {
        Ok(id) => axum::response::Redirect::to(&format!("/features/{id}")).into_response(),
        Err(e) => error_page(e),
    }
}

pub async fn search(State(st): State<Arc<AppState>>, Params(params): Params) -> Response {
    // An empty value is the default, as for `by=`, `type=` and `order=`.
    let kind = params
        .get("kind")
        .map(String::as_str)
        .filter(|k| !k.is_empty())
        .unwrap_or("text");
    let q = params.get("q").cloned().unwrap_or_default();
    // The form offers only the rankings the dictionary can give, defaulting to its own; an
    // error here leaves the ordinary form, and the search below reports the error.
    let basis = super::token_basis(st.clone()).await.ok();
    let examples = basis == Some(TokenBasis::Examples);
    let default_by = if examples { "firings" } else { "precision" };
    let by = params
        .get("by")
        .map(String::as_str)
        .filter(|b| !b.is_empty())
        .unwrap_or(default_by);
    let mut b = String::new();
    let opt = |v: &str, label: &str, cur: &str| {
        format!(
            "<option value=\"{v}\"{}>{label}</option>",
            if v == cur { " selected" } else { "" }
        )
    };
    let (precision, firings, over) = if examples {
        (
            "<option value=\"precision\" disabled>by precision (needs per-token counts)</option>"
                .to_string(),
            opt("firings", "by examples firing on it", by),
            "the tokens of stored examples",
        )
    } else {
        (
            opt("precision", "by precision", by),
            opt("firings", "by firings", by),
            "top tokens",
        )
    };
    let _ = write!(
        b,
        "<h1>Search</h1><form action=\"/search\" method=\"get\" class=\"search\">\
         <select name=\"kind\">{}{}{}{}</select> \
         <input name=\"q\" value=\"{}\" size=\"40\" placeholder=\"query\"> \
         <select name=\"by\" title=\"ranking for token and regex search\">{precision}{firings}</select> \
         <button>Search</button></form>\
         <p class=\"muted\">token: exact token (mind leading spaces) · label: substring, any case, by that label's confidence · \
         regex: over {over} · full text: labels, descriptions and tokens, bm25-ranked</p>",
        opt("text", "full text", kind),
        opt("token", "token", kind),
        opt("label", "label", kind),
        opt("pattern", "regex", kind),
        esc(&q),
    );
    if q.is_empty() {
        if let Some(note) = basis.and_then(|basis| basis.note()) {
            push_note(&mut b, note);
        }
        return Html(page("search", &b)).into_response();
    }
    let mut p: HashMap<String, String> = HashMap::new();
    let key = match kind {
        "token" | "label" | "pattern" | "text" => kind,
        other => {
            let _ = write!(
                b,
                "<p class=\"error\">unknown search kind {}; expected text, token, label or pattern</p>",
                html::message(other)
            );
            return (StatusCode::BAD_REQUEST, Html(page("search", &b))).into_response();
        }
    };
    p.insert(key.to_string(), q.clone());
    // The form sends its ranking with every kind (kept from the last token search, say);
    // it ranks token and regex searches only, so a label or text search leaves it out
    // (the API, which is not sent it by a form, refuses it there).
    if matches!(key, "token" | "pattern") {
        p.insert("by".into(), by.to_string());
    }
    for k in ["limit", "offset"] {
        if let Some(v) = params.get(k) {
            p.insert(k.into(), v.clone());
        }
    }
    let request = parse_search(&p);
    let (offset, limit) = request.as_ref().map_or((0, 0), |r| (r.offset, r.limit));
    let result = match request {
        Ok(req) => run_search(st, req).await,
        Err(e) => Err(e),
    };
    let found = match result {
        Ok(r) => r,
        Err(e) => return error_in("search", b, e),
    };
    let (hits, briefs) = (&found.hits, &found.briefs);
    if let Some(note) = found.basis.and_then(|basis| basis.note()) {
        push_note(&mut b, note);
    }
    let approximate = briefs.iter().filter(|x| !x.token_counts_exact).count();
    if let Some(note) = feature_dictionary::query::lower_bounds_note(found.basis, approximate) {
        let _ = write!(
            b,
            "<p class=\"note\" id=\"lower-bounds\">Note: {}.</p>",
            esc(&note)
        );
    }
    if hits.is_empty() {
        return nothing_found("search", b, "No feature matches", offset as u64);
    }
    // Previous and next pages keep the query, its kind, ranking and page size.
    let pages = Pages {
        what: "results",
        offset: offset as u64,
        shown: hits.len() as u64,
        limit: limit as u64,
        more: found.more,
    };
    let nav = pages.nav(|from| {
        format!(
            "/search?kind={}&amp;q={}&amp;by={}&amp;limit={limit}&amp;offset={from}",
            html::url(key),
            html::url(&q),
            html::url(by)
        )
    });
    b.push_str(&nav);
    // What the score is: counts print as integers.
    let (score_name, counted) = match (key, found.by) {
        (_, Some(TokenRank::Precision)) => ("precision", false),
        (_, Some(TokenRank::Firings)) if examples => ("examples firing on it", true),
        (_, Some(TokenRank::Firings)) => ("firings on it", true),
        ("label", None) => ("confidence", false),
        _ => ("relevance", false),
    };
    // Beside a precision, the firings behind it: 1 of 1 and 3,000 of 3,000 both read 1.0000.
    let with_support = found.by == Some(TokenRank::Precision);
    let _ = write!(
        b,
        "<table id=\"results\"><tr><th>feature</th><th class=\"n\">{score_name}</th>{}<th>matched</th><th>type</th><th class=\"n\">all firings</th><th>labels</th><th>description</th></tr>",
        if with_support { "<th class=\"n\">firings on it</th>" } else { "" }
    );
    for h in hits {
        let br = briefs.iter().find(|x| x.id == h.id);
        let mut score = if counted {
            format!("{:.0}", h.score)
        } else {
            format!("{:.4}", h.score)
        };
        if with_support {
            let _ = write!(score, "</td><td class=\"n\">{}", h.support);
        }
        let _ = write!(
            b,
            "<tr><td><a href=\"/features/{id}\">#{id}</a></td><td class=\"n\">{score}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            if h.matched.is_empty() { String::new() } else { format!("<span class=\"token\">{}</span>", html::token(&h.matched)) },
            esc(br.map_or("", |x| x.feature_type.as_str())),
            br.map_or(0, |x| x.activation_count),
            br.map(|x| html::labels(&x.labels)).unwrap_or_default(),
            html::text(br.map_or("", |x| x.description.as_str())),
            id = h.id,
        );
    }
    b.push_str("</table>");
    b.push_str(&nav);
    Html(page("search", &b)).into_response()
}

pub async fn feature(State(st): State<Arc<AppState>>, UrlPath(raw): UrlPath<String>) -> Response {
    let id = match parse_id(&raw) {
        Ok(id) => id,
        Err(e) => return error_page(e),
    };
    let got = blocking(move || {
        st.read(|r| {
            let mut f = r.feature(id)?;
            let n = if f.is_some() {
                r.neighbours(id)?
            } else {
                Vec::new()
            };
            // A feature that never fired, in a dictionary that counted tokens, fired on no
            // token: 0, as `compare` says, not "–" (not stored).
            if let Some(f) = f.as_mut() {
                if f.activation_count == 0
                    && f.metadata.unique_tokens.is_none()
                    && r.has_token_counts()?
                {
                    f.metadata.unique_tokens = Some(0);
                }
            }
            Ok((f, n, r.adjacent_ids(id)?, r.summary().clone()))
        })
    })
    .await;
    match got {
        Ok((Some(f), neighbours, adjacent, _)) => Html(page(
            &format!("feature {id}"),
            &format!(
                "{}{}",
                neighbour_links(adjacent),
                feature_body(&f, &neighbours)
            ),
        ))
        .into_response(),
        Ok((None, _, _, summary)) => error_page(super::not_stored(id, &summary)),
        Err(e) => error_page(e),
    }
}

/// Links to the stored features before and after this one (by id: a file built with
/// `--drop-dead` skips the dead features' ids, which would answer 404).
fn neighbour_links((prev, next): (Option<u64>, Option<u64>)) -> String {
    let mut links = Vec::new();
    if let Some(p) = prev {
        links.push(format!("<a href=\"/features/{p}\" rel=\"prev\">← #{p}</a>"));
    }
    if let Some(n) = next {
        links.push(format!("<a href=\"/features/{n}\" rel=\"next\">#{n} →</a>"));
    }
    format!("<nav class=\"pager\">{}</nav>", links.join(" · "))
}

fn feature_body(f: &Feature, neighbours: &[(String, u64, f64)]) -> String {
    let m = &f.metadata;
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>Feature #{} <span class=\"badge\">{}</span></h1>",
        f.id,
        esc(f.feature_type.as_str())
    );
    if !f.description.is_empty() {
        let _ = write!(
            b,
            "<p id=\"description\">{}</p>",
            html::text(&f.description)
        );
    }
    b.push_str("<div class=\"stats-grid\"><table id=\"stats\">");
    // Estimates once the feature fired on more distinct tokens than its table holds.
    let approx = if m.token_counts_exact == Some(false) {
        "≈ "
    } else {
        ""
    };
    let rows: Vec<(&str, String)> = vec![
        ("firings", f.activation_count.to_string()),
        ("frequency", format!("{:.6}", f.activation_frequency)),
        ("mean", format!("{:.4}", f.mean_activation)),
        ("std", num(m.std_activation, 4)),
        ("min", num(m.min_activation.map(f64::from), 4)),
        ("max", format!("{:.4}", f.max_activation)),
        (
            "distinct tokens",
            m.unique_tokens
                .map_or("–".into(), |u| format!("{approx}{u}")),
        ),
        (
            "token entropy (bits)",
            format!("{approx}{}", num(m.token_entropy, 3)),
        ),
    ];
    for (k, v) in rows {
        let _ = write!(b, "<tr><th>{k}</th><td class=\"n\">{v}</td></tr>");
    }
    // Histogram quantiles are estimates within a bin; a feature whose every firing is a
    // top example has them exact.
    let estimated = if m.quantiles_exact { "" } else { "≈ " };
    for (k, v) in &m.quantiles {
        let _ = write!(
            b,
            "<tr><th>{}</th><td class=\"n\">{estimated}{v:.4}</td></tr>",
            esc(k)
        );
    }
    b.push_str("</table>");
    if let Some(h) = &m.histogram {
        b.push_str(&histogram_svg(h));
    }
    b.push_str("</div>");

    b.push_str("<h2>Labels</h2>");
    if m.label_details.is_empty() && f.labels.is_empty() {
        b.push_str("<p class=\"muted\">No labels yet.</p>");
    } else {
        b.push_str("<table id=\"labels\"><tr><th>label</th><th>strategy</th><th class=\"n\">confidence</th><th class=\"n\">precision</th><th class=\"n\">recall</th><th>evidence</th></tr>");
        for l in &m.label_details {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{:.3}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                html::labels(std::slice::from_ref(&l.text)),
                if l.strategy == feature_dictionary::model::LabelingStrategy::Manual {
                    // A plain form: removing works without the script too.
                    format!(
                        "manual <form method=\"post\" action=\"/api/features/{}/labels/remove\" class=\"remove-label\">\
                         <input type=\"hidden\" name=\"text\" value=\"{}\"><button title=\"remove this manual label\">remove</button></form>",
                        f.id,
                        esc(&l.text)
                    )
                } else {
                    esc(l.strategy.as_str())
                },
                l.confidence,
                num(l.precision, 3),
                num(l.recall, 3),
                l.evidence.iter().map(|e| format!("<bdi>{}</bdi>", html::text(e))).collect::<Vec<_>>().join("; ")
            );
        }
        for t in f
            .labels
            .iter()
            .filter(|t| !m.label_details.iter().any(|l| &l.text == *t))
        {
            let _ = write!(b, "<tr><td>{}</td><td class=\"muted\">–</td><td></td><td></td><td></td><td></td></tr>", html::labels(std::slice::from_ref(t)));
        }
        b.push_str("</table>");
    }
    let _ = write!(
        b,
        "<form class=\"label\" method=\"post\" action=\"/api/features/{}/labels\">\
         <input name=\"text\" maxlength=\"200\" required placeholder=\"describe this feature\" aria-label=\"manual label\"> \
         <button>Add manual label</button> <span class=\"status muted\"></span></form>",
        f.id
    );

    if !m.top_tokens.is_empty() {
        let exact = if m.token_counts_exact == Some(false) {
            " (lower bounds: the token sketch overflowed)"
        } else {
            ""
        };
        let _ = write!(b, "<h2>Top tokens</h2><p class=\"muted\">firings on the token / its occurrences in the corpus{exact}</p>");
        b.push_str("<table id=\"top-tokens\"><tr><th>token</th><th class=\"n\">firings</th><th class=\"n\">occurrences</th><th class=\"n\">precision</th></tr>");
        for t in m.top_tokens.iter().take(20) {
            let _ = write!(
                b,
                "<tr><td><a class=\"token\" href=\"/search?kind=token&amp;q={}\">{}</a></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:.3}</td></tr>",
                html::url(&t.token),
                html::token(&t.token),
                t.firings,
                t.occurrences,
                t.firings as f64 / t.occurrences.max(1) as f64
            );
        }
        b.push_str("</table>");
    }

    let scale = f.max_activation.max(1e-12);
    if !f.top_activations.is_empty() {
        b.push_str("<h2>Top examples</h2><div class=\"examples\" id=\"top-examples\">");
        for a in &f.top_activations {
            b.push_str(&example_html(a, scale));
        }
        b.push_str("</div>");
    }
    if !m.quantile_examples.is_empty() {
        b.push_str("<h2>Examples across the activation range</h2><div class=\"examples\" id=\"quantile-examples\">");
        let shown: u64 = m.quantile_examples.iter().map(|g| g.count).sum();
        if shown < f.activation_count {
            // Groups no sample fell in are left out; say so rather than let the
            // ranges shown pass for all of them.
            let _ = write!(
                b,
                "<p class=\"muted\">{} of the ~10 equal-count groups have sampled examples \
                 ({shown} of {} firings lie in them); build with a larger \
                 <code>--samples-per-group</code> for more.</p>",
                m.quantile_examples.len(),
                f.activation_count
            );
        }
        for g in &m.quantile_examples {
            let _ = write!(
                b,
                "<p class=\"muted\">activation {:.3} – {:.3} · {} firings</p>",
                g.min_activation, g.max_activation, g.count
            );
            for a in &g.examples {
                b.push_str(&example_html(a, scale));
            }
        }
        b.push_str("</div>");
    }
    if let Some(p) = &m.positions {
        let _ = write!(
            b,
            "<h2>Positions</h2><p>mean {:.1}, variance {:.1}; start (&lt;5) {}, early (5–19) {}, middle (20–49) {}, late (≥50) {}</p>",
            p.mean, p.variance, p.start, p.early, p.middle, p.late
        );
    }
    if !neighbours.is_empty() {
        b.push_str("<h2>Related features</h2><table id=\"neighbours\"><tr><th>relation</th><th>feature</th><th class=\"n\">score</th></tr>");
        for (kind, other, score) in neighbours {
            let _ = write!(
                b,
                "<tr><td>{}</td><td><a href=\"/features/{other}\">#{other}</a></td><td class=\"n\">{score:.3}</td></tr>",
                esc(relation_name(kind))
            );
        }
        b.push_str("</table>");
    }
    b
}

/// How the page names a stored relation: what its score measures.
fn relation_name(kind: &str) -> &str {
    match kind {
        "similar" => "similar (decoder cosine)",
        "correlated" => "correlated (over all tokens)",
        other => other,
    }
}

/// One example: each context token shaded by this feature's activation on it (relative to
/// the feature's max), the firing token outlined (none, for an example whose context does
/// not hold its token); the exact value is in the tooltip. An example stored without its
/// context's activations (the original library stores none) has a value only on its
/// firing token; the other tokens' tooltips say it is not stored rather than show a 0.
fn example_html(a: &FeatureActivation, scale: f64) -> String {
    let (tokens, at, acts) = a.shown_context();
    let known =
        |i: usize| a.metadata.context_activations.len() == a.context_tokens.len() || Some(i) == at;
    // Joined as in the terminal (and as the stored context text): word tokens with spaces
    // between them, a `##` continuation onto its word.
    let mut s = format!(
        "<div class=\"example\"><span class=\"act\">{:.3}</span><span class=\"ctx\">",
        a.activation
    );
    for (i, (sep, t)) in crate::print::context_pieces(a, &tokens)
        .into_iter()
        .enumerate()
    {
        s.push_str(sep);
        let v = acts[i] as f64;
        let alpha = (v / scale).clamp(0.0, 1.0);
        let class = if Some(i) == at { "tok fire" } else { "tok" };
        if alpha > 0.0 {
            let _ = write!(
                s,
                "<span class=\"{class}\" data-act=\"{v:.4}\" title=\"{v:.4}\" style=\"background-color: rgba(255, 110, 0, {alpha:.3})\">{}</span>",
                html::token(t)
            );
        } else if known(i) {
            let _ = write!(
                s,
                "<span class=\"{class}\" data-act=\"{v:.4}\" title=\"{v:.4}\">{}</span>",
                html::token(t)
            );
        } else {
            let _ = write!(
                s,
                "<span class=\"{class}\" title=\"activation not stored\">{}</span>",
                html::token(t)
            );
        }
    }
    s.push_str("</span></div>");
    s
}

/// The fixed-edge histogram as SVG bars on a log activation axis. Bins split each octave
/// into equal widths, so their widths on a log axis shrink across an octave and double at
/// the next power of two; bars of raw counts would jump by ≈ 2× there and draw a sawtooth
/// the data does not have. Each bar spans its bin's true extent and its height is the
/// density, firings per unit of log₂ activation (its tooltip gives the count).
pub(super) fn histogram_svg(h: &HistogramSummary) -> String {
    // The span comes from the smallest and largest bin, not the first and last entry: a
    // dictionary from elsewhere may list its bins in any order.
    let bins = h.counts.iter().map(|c| c.0);
    let (Some(lo), Some(hi)) = (bins.clone().min(), bins.max()) else {
        return String::new();
    };
    // Where bin edges fall on the axis: log₂ of the edge, or (for bins whose edges no f64
    // holds, in a damaged file) the bin index, which keeps every bar in the figure.
    let in_range = h.lower_edge(hi.saturating_add(1)).is_finite() && h.lower_edge(lo) > 0.0;
    let edge = |b: u32| {
        if in_range {
            h.lower_edge(b).log2()
        } else {
            b as f64
        }
    };
    let (left, right) = (edge(lo), edge(hi.saturating_add(1)));
    let span = (right - left).max(f64::MIN_POSITIVE);
    let log_width = |b: u32| (edge(b.saturating_add(1)) - edge(b)).max(1e-12);
    let density = |(b, c): (u32, u64)| c as f64 / log_width(b);
    let max = h
        .counts
        .iter()
        .map(|&bc| density(bc))
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let largest = h.counts.iter().map(|c| c.1).max().unwrap_or(0);
    let (w, ht, pad) = (420.0, 140.0, 18.0);
    let mut s = format!(
        "<figure><svg class=\"hist\" id=\"histogram\" width=\"{w}\" height=\"{}\" viewBox=\"0 0 {w} {}\" role=\"img\" aria-label=\"activation histogram\">",
        ht + pad,
        ht + pad
    );
    for &(b, c) in &h.counts {
        let x0 = (edge(b) - left) / span * w;
        let x1 = (edge(b.saturating_add(1)) - left) / span * w;
        let y = ht * (1.0 - density((b, c)) / max);
        let _ = write!(
            s,
            "<rect x=\"{x0:.2}\" y=\"{y:.2}\" width=\"{:.2}\" height=\"{:.2}\"><title>[{:.4}, {:.4}): {c}</title></rect>",
            (x1 - x0 - 0.5).max(0.5),
            ht - y,
            h.lower_edge(b),
            h.lower_edge(b.saturating_add(1))
        );
    }
    let _ = write!(
        s,
        "<text x=\"0\" y=\"{}\">{:.3}</text><text x=\"{w}\" y=\"{}\" text-anchor=\"end\">{:.3}</text></svg>\
         <figcaption class=\"muted\">firing activations on a log axis; bar height: firings per unit of log₂ activation (a bin's count is in its tooltip; the largest holds {largest})</figcaption></figure>",
        ht + pad - 4.0,
        h.lower_edge(lo),
        ht + pad - 4.0,
        h.lower_edge(hi.saturating_add(1)),
    );
    s
}

#[cfg(test)]
mod tests {
    use crate::print::tests::example;

    /// The `(x, y, width)` of every bar of a histogram SVG.
    fn bars(svg: &str) -> Vec<(f64, f64, f64)> {
        let attr = |rect: &str, name: &str| -> f64 {
            let at = rect.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            rect[at..at + rect[at..].find('"').unwrap()]
                .parse()
                .unwrap()
        };
        svg.split("<rect")
            .skip(1)
            .map(|r| (attr(r, "x"), attr(r, "y"), attr(r, "width")))
            .collect()
    }

    #[test]
    fn a_histogram_even_in_log_activation_draws_bars_of_one_height() {
        // Two octaves of 8 equal-width bins, each holding firings in proportion to its width
        // on a log axis (what a log-uniform distribution gives): raw counts jump ≈ 2× at
        // 2⁰ and would draw a sawtooth; densities are equal.
        let h = feature_dictionary::model::HistogramSummary {
            bins_per_octave: 8,
            min_exponent: -1,
            n_bins: 16,
            counts: (0..16u32)
                .map(|b| {
                    let (a, z) = (1.0 + (b % 8) as f64 / 8.0, 1.0 + (b % 8 + 1) as f64 / 8.0);
                    (b, (1e6 * (z.log2() - a.log2())).round() as u64)
                })
                .collect(),
        };
        assert!(h.counts[8].1 > h.counts[7].1 * 18 / 10, "{:?}", h.counts);
        let svg = super::histogram_svg(&h);
        let bars = bars(&svg);
        assert_eq!(bars.len(), 16);
        for &(_, y, _) in &bars {
            assert!((y - bars[0].1).abs() < 0.05, "{bars:?}");
        }
        // Bars sit at their true extent: two octaves split the width in halves, each bar
        // narrower than the one before within an octave.
        assert!((bars[8].0 - 210.0).abs() < 0.01, "{bars:?}");
        assert!(bars[1].2 < bars[0].2 && bars[8].2 > bars[7].2, "{bars:?}");
        assert!(svg.contains("the largest holds"), "{svg}");
    }

    #[test]
    fn examples_show_words_spaced_and_a_bare_example_its_escaped_token() {
        let words = super::example_html(&example("sat", 2, 0, &["The", "cat", "sat"]), 2.0);
        assert!(
            words.contains(">The</span> <span")
                && words.contains(">cat</span> <span class=\"tok fire\""),
            "{words}"
        );
        let bpe = super::example_html(&example(" sat", 1, 0, &["The", " sat"]), 2.0);
        assert!(bpe.contains(">The</span><span"), "{bpe}");
        // No stored context (a file of the original library): the firing token, escaped.
        let bare = super::example_html(&example("<dog>", 7, 0, &[]), 2.0);
        assert!(
            bare.contains("class=\"tok fire\"") && bare.contains("&lt;dog&gt;"),
            "{bare}"
        );
        assert!(!bare.contains("<dog>"), "{bare}");
    }
}
