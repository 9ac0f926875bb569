//! API and page tests: a real server on 127.0.0.1:0 in-process, hit with a minimal HTTP/1.1
//! client over `TcpStream` (no browser needed).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use feature_dictionary::model::LabelingStrategy;
use feature_dictionary::query::synthetic::{self, Spec, HOSTILE_LABEL, HOSTILE_TOKEN};
use feature_dictionary::query::{Query, Search, TokenRank};
use feature_dictionary::store::fdict::FdictReader;
use feature_dictionary::{store, FeatureDictionary};
use serde_json::Value;

use super::{html, AppState};

struct Server {
    addr: SocketAddr,
    dict: FeatureDictionary,
    path: std::path::PathBuf,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn start(n: u64) -> Server {
    start_with(n, super::ServeOptions::default())
}

fn start_with(n: u64, options: super::ServeOptions) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        n_features: n,
        vocab_words: 80,
        ..Default::default()
    };
    let dict = synthetic::dictionary(&spec);
    let path = dir.path().join("d.fdict");
    store::save(&dict, &path).unwrap();
    let (addr, rt) = serve_file(&path, options);
    Server {
        addr,
        dict,
        path,
        _rt: rt,
        _dir: dir,
    }
}

/// A server on the `.fdict` at `path` (it stops when the runtime drops).
fn serve_file(
    path: &std::path::Path,
    options: super::ServeOptions,
) -> (SocketAddr, tokio::runtime::Runtime) {
    let state = Arc::new(AppState::open(path).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(super::serve(listener, state, options));
    (addr, rt)
}

struct Resp {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn request(addr: SocketAddr, method: &str, path: &str, ctype: Option<&str>, body: &[u8]) -> Resp {
    let ctype: Vec<(&str, &str)> = ctype.map(|c| ("Content-Type", c)).into_iter().collect();
    request_with(addr, method, path, &ctype, body)
}

/// A request with `headers`; `Host: {addr}` unless they name another Host (`Host` with an
/// empty value: none at all).
fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    match headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("host")) {
        None => head.push_str(&format!("Host: {addr}\r\n")),
        Some((_, "")) => {}
        Some((_, h)) => head.push_str(&format!("Host: {h}\r\n")),
    }
    for (k, v) in headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
    {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) before reading a large body; ignore a reset then.
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, None, b"")
}

#[test]
fn stats_and_feature_lookup() {
    let s = start(120);
    let r = get(s.addr, "/api/stats");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["statistics"]["total_features"], 120);
    assert_eq!(v["summary"]["num_features"], 120);
    assert_eq!(
        v["statistics"],
        serde_json::to_value(s.dict.statistics()).unwrap()
    );
    // Every feature is stored here: over all features is the same.
    assert_eq!(v["all_features"], v["statistics"]);
    for id in [0u64, 1, 77, 119] {
        let r = get(s.addr, &format!("/api/features/{id}"));
        assert_eq!(r.status, 200);
        let got: feature_dictionary::model::Feature = serde_json::from_str(&r.body).unwrap();
        assert_eq!(&got, s.dict.get(id).unwrap());
    }
    for (path, code) in [
        ("/api/features/120", 404),
        ("/api/features/18446744073709551615", 404),
        ("/api/features/abc", 400),
        ("/api/features/-1", 400),
        ("/api/features/1.5", 400),
        ("/api/nope", 404),
        ("/features/99999", 404),
        ("/features/x", 400),
        ("/nothing/here", 404),
        ("/go?id=abc", 400),
        ("/go", 400),
        ("/go?id=%2012%20", 303),
        // One URL per feature: no sign, no leading zeros in a path; the box accepts them.
        ("/api/features/01", 400),
        ("/api/features/+1", 400),
        ("/features/%31", 200),
        ("/features/007", 400),
        ("/api/features/0", 200),
        ("/go?id=007", 303),
        ("/go?id=%2B7", 303),
        ("/go?id=000", 303),
    ] {
        let r = get(s.addr, path);
        assert_eq!(r.status, code, "{path}: {}", r.body);
    }
    for (typed, to) in [
        ("007", "/features/7"),
        ("%2B7", "/features/7"),
        ("000", "/features/0"),
        // As pages write ids.
        ("%2312", "/features/12"),
        ("%20%23%2012", "/features/12"),
    ] {
        let r = get(s.addr, &format!("/go?id={typed}"));
        assert_eq!(
            r.headers.get("location").map(String::as_str),
            Some(to),
            "{typed}"
        );
    }
    let r = get(s.addr, "/api/features/01");
    assert!(r.body.contains("not written canonically"), "{}", r.body);
    let r = get(s.addr, "/api/features/99999999999999999999");
    assert!(r.body.contains("is too large"), "{}", r.body);
    let r = get(s.addr, "/api/features/abc");
    assert!(
        r.body.contains("is not a non-negative integer"),
        "{}",
        r.body
    );
}

#[test]
fn search_api_matches_library_and_rejects_bad_queries() {
    let s = start(200);
    let reader = FdictReader::open(&s.path).unwrap();
    let tok = s.dict.get(0).unwrap().metadata.top_tokens.first().cloned();
    let tok = tok
        .unwrap_or_else(|| s.dict.get(2).unwrap().metadata.top_tokens[0].clone())
        .token;
    let cases = [
        (
            format!("token={}&by=firings", html::url(&tok)),
            Query::Token {
                token: tok.clone(),
                by: Some(TokenRank::Firings),
            },
        ),
        ("label=TOKEN%3A".to_string(), Query::Label("TOKEN:".into())),
        (
            "pattern=%5E%20%3Fka&limit=7".to_string(),
            Query::Pattern {
                pattern: "^ ?ka".into(),
                by: None,
            },
        ),
        ("text=fires".to_string(), Query::Text("fires".into())),
    ];
    for (qs, q) in cases {
        let r = get(s.addr, &format!("/api/search?{qs}"));
        assert_eq!(r.status, 200, "{qs}: {}", r.body);
        let v = r.json();
        let limit = if qs.contains("limit=7") { 7 } else { 20 };
        let want = reader.search(&q, limit).unwrap();
        assert!(!want.is_empty(), "{qs}");
        let got: Vec<u64> = v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_u64().unwrap())
            .collect();
        assert_eq!(got, want.iter().map(|h| h.id).collect::<Vec<_>>(), "{qs}");
        assert_eq!(v["kind"], q.kind());
        assert_eq!(v["hits"][0]["feature"]["id"], want[0].id);
        // Token and pattern searches say they ranked by top tokens (precision unless
        // asked otherwise); label and text searches have no token basis.
        match q {
            Query::Token { .. } | Query::Pattern { .. } => {
                assert_eq!(v["basis"], "top_tokens", "{qs}");
                let by = if qs.contains("by=firings") {
                    "firings"
                } else {
                    "precision"
                };
                assert_eq!(v["by"], by, "{qs}");
            }
            _ => assert!(v.get("basis").is_none() && v.get("by").is_none(), "{qs}"),
        }
    }
    // The page of a dictionary with per-token counts shows no note on them.
    let r = get(s.addr, &format!("/search?kind=token&q={}", html::url(&tok)));
    assert_eq!(r.status, 200);
    assert!(r.body.contains("id=\"results\""), "{}", r.body);
    assert!(!r.body.contains("class=\"note\""), "{}", r.body);
    assert!(r
        .body
        .contains("<option value=\"precision\" selected>by precision</option>"));
    // Pages: offset and limit cut the same ranking; `more` says whether hits follow.
    let all = reader
        .search(&Query::Label("a".into()), 1000)
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect::<Vec<_>>();
    assert!(all.len() > 5, "{}", all.len());
    let mut paged = Vec::new();
    let mut offset = 0;
    loop {
        let v = get(
            s.addr,
            &format!("/api/search?label=a&limit=3&offset={offset}"),
        )
        .json();
        assert_eq!(v["offset"], offset);
        paged.extend(
            v["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["id"].as_u64().unwrap()),
        );
        if !v["more"].as_bool().unwrap() {
            break;
        }
        offset += 3;
    }
    assert_eq!(paged, all);
    let r = get(s.addr, "/search?kind=label&q=a&limit=3&offset=3");
    assert!(r.body.contains("results 4–6"), "{}", r.body);
    assert!(r.body.contains("offset=0\" rel=\"prev\""), "{}", r.body);
    assert!(r.body.contains("offset=6\" rel=\"next\""), "{}", r.body);
    assert_eq!(get(s.addr, "/api/search?label=a&offset=-1").status, 400);
    assert_eq!(get(s.addr, "/api/search?label=a&offset=100001").status, 400);
    // Thousands of repeated words once kept the server busy for minutes: refused at once.
    let many = vec!["the"; 8000].join("+");
    let started = std::time::Instant::now();
    let r = get(s.addr, &format!("/api/search?text={many}"));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("at most 32"), "{}", r.body);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let r = get(
        s.addr,
        &format!("/api/search?text={}", vec!["fires"; 32].join("+")),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    for bad in [
        "",
        "token=a&label=b",
        "pattern=(",
        "pattern=a{99999}{99999}",
        "text=%21%21%21",
        "label=%20",
        "token=x&limit=0",
        "token=x&limit=abc",
        "token=x&limit=100000",
        "token=x&by=magic",
        // `by` ranks token and pattern searches only (it was accepted and ignored).
        "label=a&by=firings",
        "text=fires&by=firings",
        "label=a&by=precision",
    ] {
        let r = get(s.addr, &format!("/api/search?{bad}"));
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(r.json()["error"].is_string(), "{bad}");
    }
    let r = get(s.addr, "/api/search?label=a&by=firings");
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("a ranking by firings applies only to token and pattern searches"),
        "{}",
        r.body
    );
    // The page's form sends its ranking with every kind (kept selected from a token
    // search): a label or text search leaves it out, and finds what it finds without it.
    assert_eq!(
        get(s.addr, "/search?kind=label&q=a&by=precision").status,
        200
    );
    let r = get(s.addr, "/search?kind=text&q=fires&by=firings");
    assert_eq!(r.status, 200, "{}", r.body);
    let results = |page: &str| {
        let from = page.find("<table id=\"results\"").unwrap();
        page[from..from + page[from..].find("</table>").unwrap()].to_string()
    };
    assert_eq!(
        results(&r.body),
        results(&get(s.addr, "/search?kind=text&q=fires").body)
    );
    assert_eq!(
        get(s.addr, "/search?kind=pattern&q=a&by=firings").status,
        200
    );
    // The HTML search page answers the same, escaped.
    let r = get(s.addr, "/search?kind=label&q=%3Cscript%3E");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("value=\"&lt;script&gt;\""), "{}", r.body);
    assert!(r.body.contains("href=\"/features/1\""));
    assert!(!r.body.contains(HOSTILE_TOKEN));
    let r = get(s.addr, "/search?kind=pattern&q=%28");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("class=\"error\""));
}

#[test]
fn pages_escape_hostile_text_and_highlight_examples() {
    let s = start(50);
    let r = get(s.addr, "/features/1");
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].starts_with("text/html"));
    assert!(r.headers["content-security-policy"].contains("script-src 'self'"));
    let b = &r.body;
    assert!(!b.contains(HOSTILE_TOKEN), "raw hostile token in page");
    assert!(!b.contains(HOSTILE_LABEL), "raw hostile label in page");
    assert!(!b.contains("<img"), "an <img> tag made it into the page");
    assert!(b.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(b.contains("&quot;&#39;&gt;&lt;img src=x onerror=alert(1)&gt;"));
    // The only script is the bundled one.
    assert_eq!(b.matches("<script").count(), 1);
    assert!(b.contains("<script src=\"/assets/app.js\"></script>"));
    // Examples: every context token is a span, the firing one outlined, shading by activation.
    let f = s.dict.get(1).unwrap();
    let n_tokens: usize = f
        .top_activations
        .iter()
        .map(|a| a.context_tokens.len())
        .sum::<usize>()
        + f.metadata
            .quantile_examples
            .iter()
            .flat_map(|g| &g.examples)
            .map(|a| a.context_tokens.len())
            .sum::<usize>();
    assert_eq!(b.matches("<span class=\"tok").count(), n_tokens);
    assert_eq!(
        b.matches("class=\"tok fire\"").count(),
        f.top_activations.len()
            + f.metadata
                .quantile_examples
                .iter()
                .map(|g| g.examples.len())
                .sum::<usize>()
    );
    assert!(
        b.contains("background-color: rgba(255, 110, 0, 1.000)"),
        "max activation fully shaded"
    );
    assert!(b.contains("<svg class=\"hist\""));
    assert!(b.contains("id=\"labels\""));
    assert!(b.contains("href=\"/features/"), "neighbour links");
    let r = get(s.addr, "/");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("id=\"types\""));
    for t in ["ultra_sparse", "sparse", "dead"] {
        assert!(r.body.contains(&format!("<td>{t}</td>")));
    }
    // The saturating importance score says what it is and how ties rank.
    assert!(r.body.contains("id=\"importance\""), "{}", r.body);
    assert!(
        r.body.contains("equal scores ranked by firings"),
        "{}",
        r.body
    );
    let css = get(s.addr, "/assets/style.css");
    assert_eq!(css.status, 200);
    assert!(css.headers["content-type"].starts_with("text/css"));
    let js = get(s.addr, "/assets/app.js");
    assert!(js.headers["content-type"].starts_with("text/javascript"));
}

#[test]
fn manual_labels_via_json_and_form() {
    let s = start(30);
    let r = request(
        s.addr,
        "POST",
        "/api/features/4/labels",
        Some("application/json"),
        br#"{"text": "  <b>bold</b> claim "}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["labels"][0], "<b>bold</b> claim");
    let r = request(
        s.addr,
        "POST",
        "/api/features/4/labels",
        Some("application/x-www-form-urlencoded"),
        b"text=from+a+form%21",
    );
    assert_eq!(r.status, 303);
    assert_eq!(r.headers["location"], "/features/4");
    // The field twice: refused, nothing added (either value would be a guess).
    let r = request(
        s.addr,
        "POST",
        "/api/features/4/labels",
        Some("application/x-www-form-urlencoded"),
        b"text=a&text=b",
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("given more than once"), "{}", r.body);
    // `curl -d '{"text": …}'` sends JSON typed as a form: a JSON error saying what to send
    // (it was an HTML page); a browser's form post still gets its errors as a page.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = request_with(
        s.addr,
        "POST",
        "/api/features/4/labels",
        &form,
        br#"{"text":"x"}"#,
    );
    assert_eq!(r.status, 400);
    assert!(
        r.headers["content-type"].starts_with("application/json"),
        "{:?}",
        r.headers
    );
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("needs Content-Type: application/json"),
        "{}",
        r.body
    );
    let browser = [
        form[0],
        ("Accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
    ];
    let r = request_with(
        s.addr,
        "POST",
        "/api/features/4/labels",
        &browser,
        b"nothing=1",
    );
    assert_eq!(r.status, 400);
    assert!(
        r.headers["content-type"].starts_with("text/html"),
        "{:?}",
        r.headers
    );
    let v = get(s.addr, "/api/features/4").json();
    assert_eq!(v["labels"][0], "from a form!");
    assert_eq!(v["labels"][1], "<b>bold</b> claim");
    assert_eq!(v["metadata"]["label_details"][0]["strategy"], "manual");
    let page = get(s.addr, "/features/4").body;
    assert!(page.contains("&lt;b&gt;bold&lt;/b&gt; claim"));
    let hits = get(s.addr, "/api/search?label=BOLD").json();
    assert_eq!(hits["hits"][0]["id"], 4);
    for (path, ctype, body, code) in [
        (
            "/api/features/4/labels",
            Some("application/json"),
            br#"{"text": ""}"#.to_vec(),
            400,
        ),
        (
            "/api/features/4/labels",
            Some("application/json"),
            b"{not json".to_vec(),
            400,
        ),
        (
            "/api/features/4/labels",
            Some("application/json"),
            br#"{"txt": "x"}"#.to_vec(),
            400,
        ),
        // Only the documented object: not an array (which a derived struct would take),
        // not a number for the text.
        (
            "/api/features/4/labels",
            Some("application/json"),
            br#"["x"]"#.to_vec(),
            400,
        ),
        (
            "/api/features/4/labels",
            Some("application/json"),
            br#"{"text": 123}"#.to_vec(),
            400,
        ),
        (
            "/api/features/4/labels",
            Some("application/json"),
            br#"{"text": "a", "text": "b"}"#.to_vec(),
            400,
        ),
        (
            "/api/features/4/labels",
            Some("text/plain"),
            b"x".to_vec(),
            415,
        ),
        ("/api/features/4/labels", None, b"x".to_vec(), 415),
        (
            "/api/features/999/labels",
            Some("application/json"),
            br#"{"text": "x"}"#.to_vec(),
            404,
        ),
        (
            "/api/features/zz/labels",
            Some("application/json"),
            br#"{"text": "x"}"#.to_vec(),
            400,
        ),
        (
            "/api/features/4/labels",
            Some("application/json"),
            format!("{{\"text\": \"{}\"}}", "y".repeat(300)).into_bytes(),
            400,
        ),
        (
            "/api/features/4/labels",
            Some("application/json"),
            format!("{{\"text\": \"{}\"}}", "z".repeat(100_000)).into_bytes(),
            413,
        ),
        // The media type is compared whole, its parameters aside.
        (
            "/api/features/4/labels",
            Some("application/jsonx"),
            br#"{"text": "x"}"#.to_vec(),
            415,
        ),
        (
            "/api/features/4/labels",
            Some("Application/JSON; charset=utf-8"),
            br#"{"text": "with a charset"}"#.to_vec(),
            200,
        ),
    ] {
        let r = request(s.addr, "POST", path, ctype, &body);
        assert_eq!(r.status, code, "{path} {ctype:?}: {}", r.body);
    }
    // A body announced over the limit and never sent: refused at once (it was awaited
    // until the read timeout, then answered 408).
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(
        c,
        "POST /api/features/4/labels HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n",
        s.addr
    )
    .unwrap();
    let mut answer = [0u8; 512];
    let n = c.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // A chunked body over the limit, whose size is not announced, is refused in the same
    // words (it got the framework's "Failed to buffer the request body").
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(
        c,
        "POST /api/features/4/labels HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        s.addr
    )
    .unwrap();
    let chunk = "x".repeat(16 * 1024);
    for _ in 0..5 {
        if write!(c, "{:x}\r\n{chunk}\r\n", chunk.len()).is_err() {
            break;
        }
    }
    let _ = write!(c, "0\r\n\r\n");
    let mut answer = Vec::new();
    let _ = c.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("this server takes at most 65536 bytes"),
        "{answer}"
    );
    // Stored on disk: a fresh reader sees the labels.
    let r = FdictReader::open(&s.path).unwrap();
    let f = r.feature(4).unwrap().unwrap();
    assert_eq!(
        f.metadata.label_details[1].strategy,
        LabelingStrategy::Manual
    );
    assert_eq!(
        f.metadata.label_details.len(),
        s.dict.get(4).unwrap().metadata.label_details.len() + 3
    );
    // Refused: text that would reorder what is shown after it, invisible text, bytes that are
    // not UTF-8 (they were stored as U+FFFD). A form's error comes back as a page.
    for (ctype, body, says) in [
        (
            "application/json",
            br#"{"text": "safe \u202eretaw"}"#.to_vec(),
            "U+202E",
        ),
        (
            "application/json",
            br#"{"text": "\u200b\u200b"}"#.to_vec(),
            "no visible characters",
        ),
        (
            "application/x-www-form-urlencoded",
            b"text=%FF%FE".to_vec(),
            "not valid UTF-8",
        ),
    ] {
        // A browser's form post (it accepts HTML) gets its error as a page.
        let html = ctype.starts_with("application/x-www");
        let mut headers = vec![("Content-Type", ctype)];
        if html {
            headers.push(("Accept", "text/html"));
        }
        let r = request_with(s.addr, "POST", "/api/features/6/labels", &headers, &body);
        assert_eq!(r.status, 400, "{ctype}: {}", r.body);
        assert!(r.body.contains(says), "{}", r.body);
        assert_eq!(
            r.headers["content-type"].starts_with("text/html"),
            html,
            "{ctype}"
        );
    }
    assert_eq!(
        get(s.addr, "/api/features/6").json()["labels"],
        serde_json::to_value(&s.dict.get(6).unwrap().labels).unwrap()
    );
}

#[test]
fn feature_pages_link_their_neighbours_and_show_the_empty_token() {
    let s = start(5);
    let first = get(s.addr, "/features/0").body;
    assert!(
        first.contains("<a href=\"/features/1\" rel=\"next\">#1 →</a>"),
        "{first}"
    );
    assert!(!first.contains("rel=\"prev\""));
    let mid = get(s.addr, "/features/2").body;
    assert!(mid.contains("href=\"/features/1\" rel=\"prev\""));
    assert!(mid.contains("href=\"/features/3\" rel=\"next\""));
    let last = get(s.addr, "/features/4").body;
    assert!(!last.contains("rel=\"next\""), "{last}");
    assert_eq!(html::token(""), "∅");
}

#[test]
fn manual_labels_can_be_removed_automatic_ones_not() {
    let s = start(8);
    for text in ["first", "second"] {
        let r = request(
            s.addr,
            "POST",
            "/api/features/3/labels",
            Some("application/json"),
            format!("{{\"text\": \"{text}\"}}").as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let page = get(s.addr, "/features/3").body;
    assert_eq!(page.matches("class=\"remove-label\"").count(), 2, "{page}");
    // By JSON, then by the page's form (which redirects back).
    let r = request(
        s.addr,
        "POST",
        "/api/features/3/labels/remove",
        Some("application/json"),
        br#"{"text": "second"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["labels"][0], "first");
    let r = request(
        s.addr,
        "POST",
        "/api/features/3/labels/remove",
        Some("application/x-www-form-urlencoded"),
        b"text=first",
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let stored = FdictReader::open(&s.path)
        .unwrap()
        .feature(3)
        .unwrap()
        .unwrap();
    assert_eq!(stored.labels, s.dict.get(3).unwrap().labels);
    assert!(
        !stored.description.contains("second"),
        "{}",
        stored.description
    );
    // An automatic label, a label never set, a feature not stored.
    let labeled = s.dict.features().find(|f| !f.labels.is_empty()).unwrap();
    let automatic = labeled.labels[0].clone();
    for (id, text, says) in [
        (labeled.id, automatic.as_str(), "no manual label"),
        (3, "never set", "no manual label"),
        (999, "x", "not in this dictionary"),
    ] {
        let r = request(
            s.addr,
            "POST",
            &format!("/api/features/{id}/labels/remove"),
            Some("application/json"),
            serde_json::json!({ "text": text }).to_string().as_bytes(),
        );
        assert_eq!(r.status, 404, "{}", r.body);
        assert!(r.body.contains(says), "{}", r.body);
    }
    assert_eq!(
        FdictReader::open(&s.path)
            .unwrap()
            .feature(labeled.id)
            .unwrap()
            .unwrap()
            .labels,
        labeled.labels
    );
    // From another site's page: refused like adding.
    let r = request_with(
        s.addr,
        "POST",
        "/api/features/3/labels/remove",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", "http://evil.example"),
        ],
        b"text=first",
    );
    assert_eq!(r.status, 403, "{}", r.body);
}

#[test]
fn labels_and_descriptions_show_whitespace_and_neutralize_bidi_controls() {
    assert_eq!(html::text("token:\n"), "token:↵");
    // A space token's label ends in its space, which shows; spaces inside text stay.
    assert_eq!(html::text("token: "), "token:␣");
    assert_eq!(html::text("ngram:.  "), "ngram:.␣␣");
    assert_eq!(html::text("token: the"), "token: the");
    assert_eq!(html::token("  "), "␣␣");
    assert_eq!(html::token(" the"), " the");
    assert_eq!(html::text("a\u{202e}b <i>"), "a\u{fffd}b &lt;i&gt;");
    assert_eq!(html::text("nul\0"), "nul␀");
    assert_eq!(
        html::labels(&["token:\t".into(), "x\u{2067}".into()]),
        "<bdi>token:⇥</bdi>, <bdi>x\u{fffd}</bdi>"
    );
}

#[test]
fn result_tables_name_their_score_and_page_at_both_ends() {
    let s = start(40);
    let token = s
        .dict
        .features()
        .find_map(|f| f.metadata.top_tokens.first().map(|t| t.token.clone()))
        .unwrap();
    let r = get(
        s.addr,
        &format!(
            "/search?kind=token&q={}&by=firings&limit=3",
            html::url(&token)
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("<th class=\"n\">firings on it</th>"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("<th class=\"n\">all firings</th>"),
        "{}",
        r.body
    );
    // Counts, not four decimals of them.
    let first = r.body.split("<td class=\"n\">").nth(1).unwrap();
    let score = &first[..first.find('<').unwrap()];
    assert!(score.parse::<u64>().is_ok(), "{score}");
    let r = get(
        s.addr,
        &format!("/search?kind=token&q={}&limit=3", html::url(&token)),
    );
    assert!(
        r.body
            .contains("<th class=\"n\">precision</th><th class=\"n\">firings on it</th>"),
        "{}",
        r.body
    );
    // The support column holds the firings on the token the API reports for the hit.
    let api: Value = serde_json::from_str(
        &get(
            s.addr,
            &format!("/api/search?token={}&limit=3", html::url(&token)),
        )
        .body,
    )
    .unwrap();
    let firings = api["hits"][0]["support"].as_u64().unwrap();
    let cell = format!("</td><td class=\"n\">{firings}</td><td><span class=\"token\">");
    assert!(r.body.contains(&cell), "{}", r.body);
    assert_eq!(
        r.body.matches("<nav class=\"pager\">").count(),
        2,
        "{}",
        r.body
    );
    let list = get(s.addr, "/features?limit=5");
    assert_eq!(
        list.body.matches("<nav class=\"pager\">").count(),
        2,
        "{}",
        list.body
    );
}

#[test]
fn an_unlabeled_feature_lists_no_confidence_and_relations_say_what_they_measure() {
    let dir = tempfile::tempdir().unwrap();
    let mut dict = synthetic::dictionary(&Spec {
        n_features: 6,
        vocab_words: 20,
        ..Default::default()
    });
    let f = dict.feature_set.features.get_mut(&3).unwrap();
    f.labels.clear();
    f.confidence = 0.0;
    f.metadata.label_details.clear();
    let path = dir.path().join("d.fdict");
    store::save(&dict, &path).unwrap();
    let (addr, _rt) = serve_file(&path, super::ServeOptions::default());
    let list = get(addr, "/features?order=id&limit=6").body;
    let row = |id: u64| {
        let at = list.find(&format!("<a href=\"/features/{id}\">")).unwrap();
        list[at..at + list[at..].find("</tr>").unwrap()].to_string()
    };
    assert!(row(3).contains("<td class=\"n\">–</td>"), "{}", row(3));
    let confidence = format!(
        "<td class=\"n\">{:.2}</td>",
        dict.get(2).unwrap().confidence
    );
    assert!(row(2).contains(&confidence), "{}", row(2));
    let page = get(addr, "/features/2").body;
    assert!(
        page.contains("<td>correlated (over all tokens)</td>"),
        "{page}"
    );
}

#[test]
fn error_pages_neutralize_bidi_controls_the_request_repeats() {
    let s = start(10);
    for path in [
        "/search?kind=%E2%80%AEtxet&q=x",
        "/search?kind=pattern&q=%E2%80%AE(",
    ] {
        let r = get(s.addr, path);
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        // The search box keeps the query as typed (a form control is isolated); the message
        // that repeats it must not carry the override.
        let error = r
            .body
            .split("<p class=\"error\">")
            .nth(1)
            .expect("an error paragraph");
        let error = &error[..error.find("</p>").unwrap()];
        assert!(!error.contains('\u{202e}'), "{path}: {error}");
        assert!(error.contains('\u{fffd}'), "{path}: {error}");
    }
}

#[test]
fn concurrent_label_writes_lose_nothing() {
    let s = start(40);
    let addr = s.addr;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..12 {
                    let id = if i % 2 == 0 { 7 } else { 10 + t };
                    let body = format!("{{\"text\": \"label {t}-{i}\"}}");
                    let r = request(
                        addr,
                        "POST",
                        &format!("/api/features/{id}/labels"),
                        Some("application/json"),
                        body.as_bytes(),
                    );
                    assert_eq!(r.status, 200, "{}", r.body);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let f7 = get(addr, "/api/features/7").json();
    let manual = |v: &Value| {
        v["metadata"]["label_details"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["strategy"] == "manual")
            .count()
    };
    assert_eq!(manual(&f7), 8 * 6);
    for t in 0..8u64 {
        assert_eq!(
            manual(&get(addr, &format!("/api/features/{}", 10 + t)).json()),
            6
        );
    }
    let before = s.dict.statistics().labeled_features;
    let dead_gained = [7u64]
        .iter()
        .chain(&(10..18).collect::<Vec<_>>())
        .filter(|id| s.dict.get(**id).unwrap().labels.is_empty())
        .count();
    assert_eq!(
        get(addr, "/api/stats").json()["statistics"]["labeled_features"],
        before + dead_gained
    );
}

#[test]
fn json_dictionaries_are_served_through_a_sibling_fdict() {
    let dir = tempfile::tempdir().unwrap();
    let dict = synthetic::dictionary(&Spec {
        n_features: 10,
        ..Default::default()
    });
    let json = dir.path().join("d.json");
    store::save(&dict, &json).unwrap();
    let (p, note) = super::prepare(&json).unwrap();
    assert_eq!(p, dir.path().join("d.fdict"));
    assert!(note.unwrap().contains("converted"));
    assert_eq!(store::load(&p).unwrap(), dict);
    let mut w = FdictReader::open_rw(&p).unwrap();
    w.add_manual_label(3, "kept").unwrap();
    drop(w);
    let (p2, note) = super::prepare(&json).unwrap();
    assert_eq!(p2, p);
    assert!(note.unwrap().contains("with the manual labels set since"));
    assert_eq!(
        FdictReader::open(&p2)
            .unwrap()
            .feature(3)
            .unwrap()
            .unwrap()
            .labels[0],
        "kept"
    );
    let (p3, note) = super::prepare(&p).unwrap();
    assert_eq!((p3, note), (p.clone(), None));
}

/// A dictionary of the original library (no per-token counts; planted counts in the
/// fixture's README), served as JSON through its sibling `.fdict`: `/api/search` finds
/// features by their stored examples' tokens, ranked as `featdict search` ranks them, says
/// so (`basis`) and refuses precision; the search page shows the note and offers only the
/// ranking it can give.
#[test]
fn an_original_library_file_is_searched_by_its_examples() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("orig.json");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../feature-dictionary/tests/fixtures/original/no_token_counts.json");
    std::fs::copy(fixture, &json).unwrap();
    let (path, _) = super::prepare(&json).unwrap();
    let (addr, _rt) = serve_file(&path, super::ServeOptions::default());
    let hits = |v: &Value| -> Vec<(u64, f64, String)> {
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                let m = h["matched"].as_str().unwrap().to_string();
                (h["id"].as_u64().unwrap(), h["score"].as_f64().unwrap(), m)
            })
            .collect()
    };
    let owned = |rows: &[(u64, f64, &str)]| -> Vec<(u64, f64, String)> {
        rows.iter()
            .map(|&(i, s, m)| (i, s, m.to_string()))
            .collect()
    };
    let v = get(addr, "/api/search?token=%20the").json();
    assert_eq!(
        (&v["kind"], &v["basis"], &v["by"]),
        (&"token".into(), &"examples".into(), &"firings".into())
    );
    assert_eq!(
        hits(&v),
        owned(&[
            (3, 2.0, " the"),
            (8, 2.0, " the"),
            (2, 1.0, " the"),
            (5, 1.0, " the")
        ])
    );
    assert_eq!(v["hits"][0]["feature"]["labels"][0], "token:the");
    let v = get(addr, "/api/search?pattern=%5E%20(dog%7Cthe)%24&by=firings").json();
    assert_eq!(
        (&v["basis"], &v["by"]),
        (&"examples".into(), &"firings".into())
    );
    assert_eq!(
        hits(&v),
        owned(&[
            (5, 3.0, " dog"),
            (3, 2.0, " the"),
            (8, 2.0, " dog"),
            (2, 1.0, " the")
        ])
    );
    // Pages cut the same ranking.
    let v = get(addr, "/api/search?token=%20the&limit=2&offset=1").json();
    assert_eq!(hits(&v), owned(&[(8, 2.0, " the"), (2, 1.0, " the")]));
    assert_eq!(v["more"], true);
    // Precision needs the corpus occurrences such a file lacks: refused, not replaced.
    for qs in ["token=%20the&by=precision", "pattern=the&by=precision"] {
        let r = get(addr, &format!("/api/search?{qs}"));
        assert_eq!(r.status, 400, "{qs}: {}", r.body);
        let e = r.json()["error"].as_str().unwrap().to_string();
        assert!(e.starts_with("a ranking by precision needs"), "{e}");
    }
    let v = get(addr, "/api/search?label=token%3A").json();
    assert!(v.get("basis").is_none(), "{v}");
    assert_eq!(hits(&v).iter().map(|h| h.0).collect::<Vec<_>>(), [5, 3, 2]);
    // The page: the note above the results, the same ranking, and only the ranking by
    // examples offered (and selected by default).
    let note = "Note: this dictionary holds no per-token counts (as files of the original library): token and regex searches look only at the firing tokens of its stored examples";
    let r = get(addr, "/search?kind=token&q=%20the");
    assert_eq!(r.status, 200, "{}", r.body);
    let at = |needle: &str| {
        r.body
            .find(needle)
            .unwrap_or_else(|| panic!("{needle}: {}", r.body))
    };
    assert!(at(note) < at("id=\"results\""));
    assert!(at("href=\"/features/3\"") < at("href=\"/features/8\""));
    assert!(at("href=\"/features/8\"") < at("href=\"/features/2\""));
    assert!(at("href=\"/features/2\"") < at("href=\"/features/5\""));
    at("<option value=\"precision\" disabled>");
    at("<option value=\"firings\" selected>by examples firing on it</option>");
    at("regex: over the tokens of stored examples");
    // Nothing found says so with the note; the empty form shows it too.
    let r = get(addr, "/search?kind=token&q=the");
    assert!(
        r.body.contains("No feature matches") && r.body.contains(note),
        "{}",
        r.body
    );
    let r = get(addr, "/search");
    assert!(r.body.contains(note), "{}", r.body);
    // The form's default ranking goes unsaid for a label search; precision asked for in
    // the address is refused as by the API.
    let r = get(addr, "/search?kind=label&q=token&by=firings");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains(note), "{}", r.body);
    let r = get(addr, "/search?kind=token&q=%20the&by=precision");
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("a ranking by precision needs"),
        "{}",
        r.body
    );
    // Its examples store no activations of their context tokens: the page shows the firing
    // token's value and says the others are not stored, rather than show 0.
    let page = get(addr, "/features/3").body;
    assert!(page.contains("title=\"activation not stored\""), "{page}");
    assert!(!page.contains("data-act=\"0.0000\""), "{page}");
    assert!(
        page.contains("<span class=\"tok fire\" data-act="),
        "{page}"
    );
}

#[test]
fn escaping_helpers() {
    assert_eq!(
        html::esc("<a href='x'>&\"</a>"),
        "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
    );
    assert_eq!(html::url(" a/b?c=d&e"), "%20a%2Fb%3Fc%3Dd%26e");
    assert_eq!(html::token("a\nb\t"), "a↵b⇥");
    // A carriage return broke the line in `white-space: pre`; ESC and NUL showed as nothing.
    assert_eq!(html::token("h\r\u{1b}[0m\0\u{7f}\u{85}<"), "h␍␛[0m␀␡�&lt;");
    // Right-to-left text and overrides are kept; the stylesheet isolates each token.
    assert_eq!(html::token("\u{202e}ab\u{5d0}"), "\u{202e}ab\u{5d0}");
    // A feature that fires does not show a frequency of zero.
    assert_eq!(html::frequency(0.0), "0.000000");
    assert_eq!(html::frequency(0.0123456), "0.012346");
    assert_eq!(html::frequency(3.2e-7), "3.20e-7");
}

/// A token with a right-to-left override reorders the tokens after it unless every token is
/// its own bidi isolate; the served stylesheet must say so for both token classes.
#[test]
fn tokens_are_bidi_isolated_by_the_stylesheet() {
    let s = start(5);
    let css = get(s.addr, "/assets/style.css").body;
    for class in [".tok {", ".token {"] {
        let rule = css
            .lines()
            .find(|l| l.starts_with(class))
            .unwrap_or_else(|| panic!("no {class} rule"));
        assert!(rule.contains("unicode-bidi: isolate"), "{rule}");
    }
}

/// Every error under /api/ is a JSON `{"error": …}`, including those axum answers before a
/// handler runs (an id that is not UTF-8, a body over the limit, a wrong method, no route).
#[test]
fn api_errors_are_json_even_before_the_handler() {
    let s = start(10);
    let big = format!("{{\"text\": \"{}\"}}", "z".repeat(100_000)).into_bytes();
    for (method, path, ctype, body, code) in [
        ("GET", "/api/features/%FF", None, Vec::new(), 400),
        (
            "POST",
            "/api/features/%FF/labels",
            Some("application/json"),
            br#"{"text": "x"}"#.to_vec(),
            400,
        ),
        (
            "POST",
            "/api/features/4/labels",
            Some("application/json"),
            big,
            413,
        ),
        ("GET", "/api/features/4/labels", None, Vec::new(), 405),
        ("DELETE", "/api/features/4", None, Vec::new(), 405),
        ("GET", "/api/nope", None, Vec::new(), 404),
        ("GET", "/api/features/", None, Vec::new(), 404),
    ] {
        let r = request(s.addr, method, path, ctype, &body);
        assert_eq!(r.status, code, "{method} {path}: {}", r.body);
        assert!(
            r.headers["content-type"].starts_with("application/json"),
            "{method} {path}: {:?} {}",
            r.headers.get("content-type"),
            r.body
        );
        let msg = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(
            !msg.is_empty() && !msg.contains('<'),
            "{method} {path}: {msg:?}"
        );
    }
    // Pages keep their HTML error pages.
    let r = get(s.addr, "/features/%FF");
    assert_eq!(r.status, 400);
    assert!(
        r.headers["content-type"].starts_with("text/html"),
        "{}",
        r.body
    );
}

/// A histogram whose bins are not listed in order (or sit at the last bin index) still
/// draws every bar inside the figure, instead of overflowing the bin arithmetic.
#[test]
fn histogram_bins_in_any_order_stay_in_the_figure() {
    use feature_dictionary::model::HistogramSummary;
    for counts in [
        vec![(83u32, 1u64), (74, 1), (72, 2)],
        vec![(u32::MAX, 3)],
        vec![(5, 1), (300, 2), (0, 7)],
    ] {
        let h = HistogramSummary {
            bins_per_octave: 8,
            min_exponent: -10,
            n_bins: 208,
            counts: counts.clone(),
        };
        let svg = super::pages::histogram_svg(&h);
        let xs: Vec<f64> = svg
            .split("<rect x=\"")
            .skip(1)
            .map(|r| r.split('"').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(xs.len(), counts.len(), "{svg}");
        assert!(
            xs.iter().all(|x| (0.0..420.0).contains(x)),
            "{counts:?}: {xs:?}"
        );
    }
}

/// A file named `.fdict` that is not one is an error naming it, not "served" as its own
/// sibling of itself.
#[test]
fn a_bad_fdict_is_named_not_taken_for_json() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.fdict");
    std::fs::write(&bad, b"not a database at all").unwrap();
    let e = format!("{:#}", super::prepare(&bad).unwrap_err());
    assert!(e.contains("bad.fdict") && e.contains("SQLite"), "{e}");
    assert!(!e.contains("beside"), "{e}");
    // JSON under the .fdict name loads elsewhere (told by content), but serving it would
    // convert it over itself: it is left as it is and the user asked to rename it.
    let json = dir.path().join("j.fdict");
    store::save(
        &synthetic::dictionary(&Spec::default()),
        &dir.path().join("j.json"),
    )
    .unwrap();
    std::fs::rename(dir.path().join("j.json"), &json).unwrap();
    let before = std::fs::read(&json).unwrap();
    let e = format!("{:#}", super::prepare(&json).unwrap_err());
    assert!(
        e.contains("j.fdict") && e.contains("rename it to .json"),
        "{e}"
    );
    assert_eq!(std::fs::read(&json).unwrap(), before);
}

/// While a label write waits for SQLite's lock (another process is writing the file), the
/// overview and `/api/stats` answer at once: they used to wait for the writer's mutex on the
/// async workers, which stalled every request, feature lookups included, until the write
/// went through or timed out.
#[test]
fn a_waiting_label_write_does_not_stall_other_requests() {
    let s = start(20);
    let addr = s.addr;
    let other = FdictReader::open_rw(&s.path).unwrap();
    other.connection().execute_batch("BEGIN IMMEDIATE").unwrap();
    let post = std::thread::spawn(move || {
        request(
            addr,
            "POST",
            "/api/features/4/labels",
            Some("application/json"),
            br#"{"text": "waited"}"#,
        )
    });
    // Let the POST take the writer and start waiting for the lock.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    let readers: Vec<_> = ["/api/stats", "/api/stats", "/", "/", "/api/features/3"]
        .into_iter()
        .map(|p| std::thread::spawn(move || (p, get(addr, p))))
        .collect();
    for r in readers {
        let (p, r) = r.join().unwrap();
        assert_eq!(r.status, 200, "{p}: {}", r.body);
    }
    let waited = started.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(2),
        "reads took {waited:?} behind a waiting write"
    );
    assert!(!post.is_finished(), "the write should still be waiting");
    other.connection().execute_batch("ROLLBACK").unwrap();
    let r = post.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    // The totals follow the write.
    let labeled = get(addr, "/api/stats").json()["statistics"]["labeled_features"].clone();
    let gained = s.dict.get(4).unwrap().labels.is_empty() as usize;
    assert_eq!(labeled, s.dict.statistics().labeled_features + gained);
}

/// `/api` without the slash is an API path too: a JSON 404, not the HTML error page.
#[test]
fn the_api_root_answers_json() {
    let s = start(3);
    // (`/api/features` is the feature listing.)
    for p in ["/api", "/api/", "/api/features/", "/api/nothing"] {
        let r = get(s.addr, p);
        assert_eq!(r.status, 404, "{p}");
        assert!(
            r.headers["content-type"].starts_with("application/json"),
            "{p}: {}",
            r.body
        );
        assert!(r.json()["error"].is_string(), "{p}");
    }
    // Pages still get the HTML error page.
    let r = get(s.addr, "/apix");
    assert_eq!(r.status, 404);
    assert!(r.headers["content-type"].starts_with("text/html"));
}

/// Another program rewriting the served file (`featdict label`, `build` and `import` write
/// a new file and rename it over the old one) must not make the server keep showing the old
/// file, nor write labels into it, where they would be lost with it.
#[test]
fn a_file_replaced_while_served_is_followed() {
    let s = start(12);
    let r = request(
        s.addr,
        "POST",
        "/api/features/2/labels",
        Some("application/json"),
        br#"{"text": "before the rewrite"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // The rewrite: the served dictionary with a changed description on feature 5.
    let mut rewritten = store::fdict::FdictReader::open(&s.path)
        .unwrap()
        .load_all()
        .unwrap();
    rewritten
        .feature_set
        .features
        .get_mut(&5)
        .unwrap()
        .description = "written by another program".into();
    store::save(&rewritten, &s.path).unwrap();
    // Every reader follows: the new description is served...
    for _ in 0..8 {
        let v = get(s.addr, "/api/features/5").json();
        assert_eq!(v["description"], "written by another program");
    }
    // ...and a label written now lands in the new file, beside the earlier one.
    let r = request(
        s.addr,
        "POST",
        "/api/features/5/labels",
        Some("application/json"),
        br#"{"text": "after the rewrite"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let fresh = store::fdict::FdictReader::open(&s.path).unwrap();
    assert_eq!(
        fresh.feature(5).unwrap().unwrap().labels[0],
        "after the rewrite"
    );
    assert_eq!(
        fresh.feature(2).unwrap().unwrap().labels[0],
        "before the rewrite"
    );
    assert_eq!(
        get(s.addr, "/api/stats").json()["statistics"]["labeled_features"],
        fresh.statistics().labeled_features
    );
}

/// `cp other.fdict served.fdict` writes the served file in place (same inode, no SQLite
/// commit): the server reads the new content instead of its cached pages of the old one
/// ("database disk image is malformed"), and a label lands in the new content intact.
#[test]
fn a_file_copied_over_in_place_is_followed() {
    let s = start(12);
    // Every reader and the writer have the old content open and cached.
    for i in 0..8 {
        assert_eq!(get(s.addr, &format!("/features/{}", i % 12)).status, 200);
    }
    let r = request(
        s.addr,
        "POST",
        "/api/features/2/labels",
        Some("application/json"),
        br#"{"text": "in the old content"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // Another program's label, in place through SQLite: a commit, not an overwrite; the
    // server's next label follows it (and must still notice the copy below).
    FdictReader::open_rw(&s.path)
        .unwrap()
        .add_manual_label(5, "by another program")
        .unwrap();
    let r = request(
        s.addr,
        "POST",
        "/api/features/6/labels",
        Some("application/json"),
        br#"{"text": "after the other program"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // Larger, so its tables and indexes begin on other pages than the served file's
    // (SQLite's cached schema pointed into the old layout), and with a change counter of
    // its own (the served file's was raised by the commits above).
    let mut other = synthetic::dictionary(&Spec {
        n_features: 3000,
        vocab_words: 80,
        ..Default::default()
    });
    for f in other.feature_set.features.values_mut() {
        f.description = format!("copied over, feature {}", f.id);
    }
    other.feature_set.features.remove(&11);
    let elsewhere = s.path.with_file_name("other.fdict");
    store::save(&other, &elsewhere).unwrap();
    let inode =
        |p: &std::path::Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let before = inode(&s.path);
    std::fs::write(&s.path, std::fs::read(&elsewhere).unwrap()).unwrap();
    assert_eq!(
        inode(&s.path),
        before,
        "an in-place write, not a replacement"
    );
    for i in 0..8 {
        let r = get(s.addr, &format!("/features/{i}"));
        assert_eq!(r.status, 200, "{}", r.body);
        let v = get(s.addr, &format!("/api/features/{i}")).json();
        assert_eq!(v["description"], format!("copied over, feature {i}"));
    }
    let r = request(
        s.addr,
        "POST",
        "/api/features/3/labels",
        Some("application/json"),
        br#"{"text": "in the copied content"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let fresh = FdictReader::open(&s.path).unwrap();
    assert_eq!(
        fresh.feature(3).unwrap().unwrap().labels[0],
        "in the copied content"
    );
    assert!(fresh.feature(11).unwrap().is_none());
    // Every feature of the file still reads (a label written through stale pages corrupts it).
    let all = fresh.load_all().unwrap();
    assert_eq!(all.feature_set.features.len(), 2999);
    assert_eq!(all.get(4).unwrap().description, "copied over, feature 4");
    let stats = get(s.addr, "/api/stats").json();
    assert_eq!(stats["statistics"]["total_features"], 2999);
    assert_eq!(stats["summary"]["num_features"], 3000);
    assert_eq!(stats["all_features"]["total_features"], 3000);
    let r = get(s.addr, "/api/features?limit=3");
    assert_eq!(r.status, 200, "{}", r.body);
}

/// `featdict label` on the served file writes it in place (the same file, no rename): the
/// features served come from the file as always, and the totals follow too (they are kept
/// in memory, and used to stay as they were until the server's own next label).
#[test]
fn labels_written_in_place_by_another_program_show_in_the_totals() {
    let s = start(12);
    let before = get(s.addr, "/api/stats").json()["statistics"]["labeled_features"]
        .as_u64()
        .unwrap();
    let unlabeled: Vec<u64> = s
        .dict
        .features()
        .filter(|f| f.labels.is_empty())
        .map(|f| f.id)
        .take(3)
        .collect();
    assert!(!unlabeled.is_empty());
    let mut other = store::fdict::FdictReader::open_rw(&s.path).unwrap();
    let config = other.load_some(&[]).unwrap().config;
    other
        .relabel(
            &config,
            |f| -> feature_dictionary::Result<()> {
                if unlabeled.contains(&f.id) {
                    feature_dictionary::label::manual::set_manual_label(f, "from another program");
                }
                Ok(())
            },
            |_| {},
        )
        .unwrap();
    // Whichever reading connection answers has followed the change.
    for _ in 0..8 {
        let v = get(s.addr, "/api/stats").json();
        assert_eq!(
            v["statistics"]["labeled_features"].as_u64().unwrap(),
            before + unlabeled.len() as u64,
            "{v}"
        );
    }
    let f = get(s.addr, &format!("/api/features/{}", unlabeled[0])).json();
    assert_eq!(f["labels"][0], "from another program");
}

/// Options with a short read timeout, so that tests of it are quick.
fn quick_timeout(ms: u64, max_connections: usize) -> super::ServeOptions {
    super::ServeOptions {
        read_timeout: std::time::Duration::from_millis(ms),
        max_connections,
        ..Default::default()
    }
}

/// Reads from `s` until the server closes the connection; returns what it sent and how long
/// after `since` it closed. Fails the test if the connection is still open after `patience`.
fn read_until_closed(
    s: &mut TcpStream,
    since: std::time::Instant,
    patience: std::time::Duration,
) -> (Vec<u8>, std::time::Duration) {
    let started = since;
    s.set_read_timeout(Some(patience)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "connection still open after {:?} ({e}); got {:?}",
                started.elapsed(),
                String::from_utf8_lossy(&got)
            ),
        }
    }
    (got, started.elapsed())
}

/// A connection that never finishes its request headers, or never sends any, is closed
/// after the read timeout; it used to be held forever, and enough of them exhausted the
/// process's file descriptors.
#[test]
fn stalled_connections_are_closed_after_the_read_timeout() {
    let s = start_with(5, quick_timeout(400, 64));
    let connected = std::time::Instant::now();
    let mut partial = TcpStream::connect(s.addr).unwrap();
    partial
        .write_all(format!("GET / HTTP/1.1\r\nHost: {}\r\n", s.addr).as_bytes())
        .unwrap();
    let mut silent = TcpStream::connect(s.addr).unwrap();
    // Requests on other connections are answered meanwhile.
    assert_eq!(get(s.addr, "/api/stats").status, 200);
    for conn in [&mut partial, &mut silent] {
        let (got, took) = read_until_closed(conn, connected, std::time::Duration::from_secs(10));
        assert!(
            took >= std::time::Duration::from_millis(300),
            "closed after {took:?}, before the timeout"
        );
        assert!(
            !String::from_utf8_lossy(&got).contains(" 200 "),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
    }
    // An idle keep-alive connection, after a complete request, is closed too.
    let mut kept = TcpStream::connect(s.addr).unwrap();
    kept.write_all(format!("GET /api/stats HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr).as_bytes())
        .unwrap();
    let (got, _) = read_until_closed(
        &mut kept,
        std::time::Instant::now(),
        std::time::Duration::from_secs(10),
    );
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200 "));
}

/// Beyond `max_connections`, a connection waits until one closes instead of taking a
/// descriptor: with both slots held by silent clients, a request is answered only once the
/// timeout has closed them.
#[test]
fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let s = start_with(5, quick_timeout(800, 2));
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(s.addr).unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let started = std::time::Instant::now();
    let r = get(s.addr, "/api/stats");
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        took >= std::time::Duration::from_millis(500),
        "answered after {took:?}, while both slots were held"
    );
    drop(held);
    // With the slots free, answers come at once.
    let started = std::time::Instant::now();
    assert_eq!(get(s.addr, "/api/stats").status, 200);
    assert!(started.elapsed() < std::time::Duration::from_millis(700));
}

/// A label whose body never fully arrives is answered 408 after the timeout, and nothing
/// is written.
#[test]
fn a_trickled_label_body_times_out_and_writes_nothing() {
    let s = start_with(8, quick_timeout(400, 64));
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(
        format!(
            "POST /api/features/3/labels HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"text\": \"never fin",
            s.addr
        )
        .as_bytes(),
    )
    .unwrap();
    let sent = std::time::Instant::now();
    let (got, took) = read_until_closed(&mut c, sent, std::time::Duration::from_secs(10));
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(text.contains("\"error\""), "{text}");
    assert!(took >= std::time::Duration::from_millis(300), "{took:?}");
    let f = FdictReader::open(&s.path)
        .unwrap()
        .feature(3)
        .unwrap()
        .unwrap();
    assert_eq!(&f, s.dict.get(3).unwrap());
}

/// A client that asks and never reads the answers is disconnected once the server's writes
/// have waited for the timeout, instead of holding its connection forever.
#[test]
fn a_client_that_never_reads_is_disconnected() {
    let s = start_with(40, quick_timeout(500, 64));
    let mut c = TcpStream::connect(s.addr).unwrap();
    // Enough pipelined page requests to fill both sides' socket buffers many times over.
    let one = format!("GET /features/1 HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr);
    let page = get(s.addr, "/features/1").body.len().max(1);
    let n = (64 << 20) / page + 1;
    c.set_write_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut sent = 0;
    for _ in 0..n {
        if c.write_all(one.as_bytes()).is_err() {
            break;
        }
        sent += 1;
    }
    assert!(sent > 0);
    std::thread::sleep(std::time::Duration::from_secs(2));
    // The server has given up: draining what it sent ends in a close, not in more waiting.
    let (got, _) = read_until_closed(
        &mut c,
        std::time::Instant::now(),
        std::time::Duration::from_secs(10),
    );
    let answered = String::from_utf8_lossy(&got)
        .matches("HTTP/1.1 200 ")
        .count();
    assert!(
        answered < sent,
        "all {sent} answered: the server never stalled"
    );
    // And it still serves others.
    assert_eq!(get(s.addr, "/api/stats").status, 200);
}

/// A page of another site can make the browser POST the label form here; the browser says
/// where the page came from (Origin, Sec-Fetch-Site), and such a POST is refused without
/// writing anything. A request without either (curl, scripts) or from the server's own page
/// is served.
#[test]
fn label_posts_from_other_sites_are_refused() {
    let s = start(10);
    let own = format!("http://{}", s.addr);
    let form = "application/x-www-form-urlencoded";
    for (origin, site) in [
        (Some("http://evil.example"), None),
        (Some("http://evil.example"), Some("cross-site")),
        (Some("null"), None),
        (Some("https://127.0.0.1"), None),
        // Another server on this machine is another origin (the port differs).
        (Some("http://127.0.0.1:1"), Some("same-site")),
        (Some(own.as_str()), Some("cross-site")),
        (None, Some("cross-site")),
        (None, Some("same-site")),
    ] {
        let mut headers = vec![("Content-Type", form)];
        headers.extend(origin.map(|o| ("Origin", o)));
        headers.extend(site.map(|v| ("Sec-Fetch-Site", v)));
        for path in ["/api/features/3/labels", "/api/features/3/labels?x=1"] {
            let r = request_with(s.addr, "POST", path, &headers, b"text=written-by-evil");
            assert_eq!(r.status, 403, "{origin:?} {site:?}: {}", r.body);
            assert!(r.headers["content-type"].starts_with("application/json"));
            let msg = r.json()["error"].as_str().unwrap().to_string();
            assert!(msg.contains("refused"), "{msg}");
        }
    }
    // Nothing was written.
    let f = FdictReader::open(&s.path)
        .unwrap()
        .feature(3)
        .unwrap()
        .unwrap();
    assert_eq!(&f, s.dict.get(3).unwrap());
    // The server's own page, a browser's direct navigation and curl are served.
    for (i, headers) in [
        vec![("Origin", own.as_str()), ("Sec-Fetch-Site", "same-origin")],
        vec![("Origin", own.as_str())],
        vec![("Sec-Fetch-Site", "same-origin")],
        vec![("Sec-Fetch-Site", "none")],
        vec![],
    ]
    .into_iter()
    .enumerate()
    {
        let mut headers = headers;
        headers.push(("Content-Type", form));
        let body = format!("text=mine+{i}");
        let r = request_with(
            s.addr,
            "POST",
            "/api/features/3/labels",
            &headers,
            body.as_bytes(),
        );
        assert_eq!(r.status, 303, "{headers:?}: {}", r.body);
    }
    let labels = FdictReader::open(&s.path)
        .unwrap()
        .feature(3)
        .unwrap()
        .unwrap()
        .labels;
    assert!(labels.contains(&"mine 0".to_string()) && labels.contains(&"mine 4".to_string()));
    // Reads carry no Origin check: a cross-site GET cannot read the answer anyway.
    let r = request_with(
        s.addr,
        "GET",
        "/api/features/3",
        &[("Origin", "http://evil.example")],
        b"",
    );
    assert_eq!(r.status, 200);
}

/// A site that makes its own name resolve to 127.0.0.1 (DNS rebinding) could read and
/// write through the browser; its requests carry its name in Host, and are refused.
#[test]
fn headers_given_twice_are_checked_in_every_copy() {
    let s = start(10);
    let addr = s.addr;
    let own = format!("http://{addr}");
    let body = br#"{"text": "twice"}"#;
    for headers in [
        vec![("Origin", own.as_str()), ("Origin", "http://evil.example")],
        vec![
            ("Sec-Fetch-Site", "same-origin"),
            ("Sec-Fetch-Site", "cross-site"),
        ],
    ] {
        let mut all = vec![("Content-Type", "application/json")];
        all.extend(headers.iter().copied());
        let r = request_with(addr, "POST", "/api/features/1/labels", &all, body);
        assert_eq!(r.status, 403, "{headers:?}: {}", r.body);
    }
    // Two Hosts, the first this server's: refused, whatever a later reader would take.
    let mut c = TcpStream::connect(addr).unwrap();
    let port = addr.port();
    write!(
        c,
        "GET /api/stats HTTP/1.1\r\nHost: {addr}\r\nHost: evil.example:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("more than one Host"), "{answer}");
    let f = get(addr, "/api/features/1").json();
    assert!(!f["labels"].to_string().contains("twice"), "{f}");
}

#[test]
fn requests_for_other_hosts_are_refused() {
    let s = start(10);
    let port = s.addr.port();
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
        // The right name on another port is another server.
        format!("localhost:{}", port.wrapping_add(1)),
        format!("127.0.0.1:{port}x"),
        format!("127.0.0.1:{port}:{port}"),
        "[::1".to_string(),
        ":80".to_string(),
    ] {
        for (path, json) in [("/api/stats", true), ("/", false), ("/features/1", false)] {
            let r = request_with(s.addr, "GET", path, &[("Host", &host)], b"");
            assert_eq!(r.status, 403, "Host {host} {path}: {}", r.body);
            if json {
                assert!(r.json()["error"]
                    .as_str()
                    .unwrap()
                    .contains("not an address of this server"));
            } else {
                assert!(r.headers["content-type"].starts_with("text/html"));
                assert!(
                    r.body.contains("not an address of this server"),
                    "{}",
                    r.body
                );
                assert!(r.headers["content-security-policy"].contains("script-src 'self'"));
            }
        }
    }
    // What the client sent comes back escaped in the page.
    let r = request_with(s.addr, "GET", "/", &[("Host", "<b>x</b>")], b"");
    assert_eq!(r.status, 403);
    assert!(
        r.body.contains("&lt;b&gt;x&lt;/b&gt;") && !r.body.contains("<b>x"),
        "{}",
        r.body
    );
    // A POST to another host is refused before it is read: nothing written.
    let r = request_with(
        s.addr,
        "POST",
        "/api/features/2/labels",
        &[
            ("Host", "evil.example"),
            ("Content-Type", "application/json"),
        ],
        br#"{"text": "rebound"}"#,
    );
    assert_eq!(r.status, 403);
    let f = FdictReader::open(&s.path)
        .unwrap()
        .feature(2)
        .unwrap()
        .unwrap();
    assert_eq!(&f, s.dict.get(2).unwrap());
    // No Host at all is a malformed HTTP/1.1 request.
    let r = request_with(s.addr, "GET", "/api/stats", &[("Host", "")], b"");
    assert_eq!(r.status, 400, "{}", r.body);
    // An absolute request target names the host too.
    let r = request_with(
        s.addr,
        "GET",
        &format!("http://evil.example:{port}/api/stats"),
        &[],
        b"",
    );
    assert_eq!(r.status, 403, "{}", r.body);
    // The server's own names, in any case, are served.
    for host in [
        s.addr.to_string(),
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
        format!("127.0.0.2:{port}"),
        format!("[::1]:{port}"),
    ] {
        let r = request_with(s.addr, "GET", "/api/stats", &[("Host", &host)], b"");
        assert_eq!(r.status, 200, "Host {host}: {}", r.body);
    }
}

/// Which Host values a server on another address accepts: its own address, loopback
/// names, `--allow-host` names, and on 0.0.0.0 any IP literal (no name: a name can be
/// pointed at this machine by whoever owns it).
#[test]
fn host_rules_follow_the_listening_address() {
    use super::guard::{parse_allowed_host, HostGuard};
    let lan: SocketAddr = "192.168.1.5:8080".parse().unwrap();
    let g = HostGuard::new(lan, &[]);
    for ok in [
        "192.168.1.5:8080",
        "localhost:8080",
        "127.0.0.1:8080",
        "[::1]:8080",
    ] {
        assert!(g.allows(ok), "{ok}");
    }
    for no in [
        "192.168.1.6:8080",
        "192.168.1.5",
        "192.168.1.5:80",
        "myhost:8080",
        "evil.example:8080",
    ] {
        assert!(!g.allows(no), "{no}");
    }
    let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
    let g = HostGuard::new(any, &["myhost.lan".into(), "tunnel:9000".into()]);
    for ok in [
        "10.0.0.7:8080",
        "[fe80::1]:8080",
        "myhost.lan:8080",
        "MYHOST.LAN:8080",
        "tunnel:9000",
        "localhost:8080",
    ] {
        assert!(g.allows(ok), "{ok}");
    }
    for no in [
        "10.0.0.7:9000",
        "myhost.lan:9000",
        "tunnel:8080",
        "evil.example:8080",
        "myhost.lan",
    ] {
        assert!(!g.allows(no), "{no}");
    }
    let port80: SocketAddr = "127.0.0.1:80".parse().unwrap();
    assert!(HostGuard::new(port80, &[]).allows("localhost"));
    for ok in ["myhost", "myhost.lan:9000", "[::1]:9000", "localhost:9000"] {
        assert!(parse_allowed_host(ok).is_ok(), "{ok}");
    }
    for no in ["", "a b", "http://x", "x:port", "x:", "[::1", "x/y"] {
        assert!(parse_allowed_host(no).is_err(), "{no:?}");
    }
}

/// Replaces `path` the way other programs do (a new file renamed over it) with `bytes`.
fn replace_with(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A served file replaced by a truncated or foreign file, or removed, gives 503 naming the
/// file and the reason on every page and API path — it used to go on serving the old
/// file's features — and a valid dictionary put back at the path is served again.
#[test]
fn a_file_replaced_by_garbage_or_removed_answers_503_then_recovers() {
    let s = start(12);
    let original = std::fs::read(&s.path).unwrap();
    let earlier = store::load(&s.path).unwrap();
    assert_eq!(get(s.addr, "/api/features/1").status, 200);
    let name = s.path.display().to_string();
    let check_unavailable = |why: &str| {
        for p in ["/api/features/1", "/api/stats", "/api/search?text=fires"] {
            let r = get(s.addr, p);
            assert_eq!(r.status, 503, "{why} {p}: {}", r.body);
            let msg = r.json()["error"].as_str().unwrap().to_string();
            assert!(msg.contains(&name) && msg.contains(why), "{p}: {msg}");
        }
        for p in ["/", "/features/1", "/search?kind=text&q=fires"] {
            let r = get(s.addr, p);
            assert_eq!(r.status, 503, "{why} {p}: {}", r.body);
            assert!(r.headers["content-type"].starts_with("text/html"));
            assert!(
                r.body.contains(&name) && r.body.contains(why),
                "{p}: {}",
                r.body
            );
            assert!(
                !r.body.contains("id=\"types\""),
                "{p} shows the old overview"
            );
        }
        let r = request(
            s.addr,
            "POST",
            "/api/features/1/labels",
            Some("application/json"),
            br#"{"text": "into nothing"}"#,
        );
        assert_eq!(r.status, 503, "{why}: {}", r.body);
    };
    replace_with(&s.path, &original[..original.len() / 3]);
    check_unavailable("malformed");
    replace_with(&s.path, b"{\"not\": \"a dictionary, and long enough to pass the size check ................................................................\"}");
    check_unavailable("not a .fdict");
    std::fs::remove_file(&s.path).unwrap();
    check_unavailable("removed");
    // A valid dictionary at the path again: served at once, labels included.
    let mut next = earlier;
    next.feature_set.features.get_mut(&1).unwrap().description = "the new file".into();
    store::save(&next, &s.path).unwrap();
    for p in [
        "/api/features/1",
        "/api/stats",
        "/",
        "/features/1",
        "/api/search?text=fires",
    ] {
        assert_eq!(get(s.addr, p).status, 200, "{p}");
    }
    assert_eq!(
        get(s.addr, "/api/features/1").json()["description"],
        "the new file"
    );
    let r = request(
        s.addr,
        "POST",
        "/api/features/1/labels",
        Some("application/json"),
        br#"{"text": "after recovery"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let fresh = FdictReader::open(&s.path).unwrap();
    assert_eq!(
        fresh.feature(1).unwrap().unwrap().labels[0],
        "after recovery"
    );
}

/// Sets the modification time of `path` to `secs` seconds after the epoch.
fn set_mtime(path: &std::path::Path, secs: u64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    std::fs::File::options()
        .append(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// A JSON dictionary rebuilt after its sibling `.fdict` was made is converted again (it
/// used to be served from the stale sibling), and the manual labels written into the
/// sibling are carried over to features the new JSON still has.
#[test]
fn a_changed_json_is_converted_again_keeping_manual_labels() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("d.json");
    let first = synthetic::dictionary(&Spec {
        n_features: 10,
        ..Default::default()
    });
    store::save(&first, &json).unwrap();
    let (sibling, _) = super::prepare(&json).unwrap();
    let w = FdictReader::open_rw(&sibling).unwrap();
    let mut w = w;
    w.add_manual_label(3, "kept by hand").unwrap();
    w.add_manual_label(8, "feature gone").unwrap();
    drop(w);
    // The JSON is rebuilt with fewer features and other descriptions.
    let mut second = synthetic::dictionary(&Spec {
        n_features: 6,
        ..Default::default()
    });
    second.feature_set.features.get_mut(&5).unwrap().description = "from the rebuild".into();
    store::save(&second, &json).unwrap();
    let (p, note) = super::prepare(&json).unwrap();
    assert_eq!(p, sibling);
    let note = note.unwrap();
    assert!(
        note.contains("again") && note.contains("kept 1 manual label"),
        "{note}"
    );
    assert!(note.contains("1 manual label(s) of features"), "{note}");
    let served = store::load(&sibling).unwrap();
    assert_eq!(served.num_features(), 6);
    assert_eq!(served.get(5).unwrap().description, "from the rebuild");
    let f3 = served.get(3).unwrap();
    assert_eq!(f3.labels[0], "kept by hand");
    assert_eq!(
        f3.metadata.label_details[0].strategy,
        LabelingStrategy::Manual
    );
    // Unchanged since: reused as it is.
    let before = std::fs::read(&sibling).unwrap();
    let (_, note) = super::prepare(&json).unwrap();
    assert!(note.unwrap().contains("with the manual labels set since"));
    assert_eq!(std::fs::read(&sibling).unwrap(), before);
    // A JSON that differs from the recorded one is converted again even when it is older
    // than the sibling (restored from a backup, copied with its times).
    store::save(&first, &json).unwrap();
    set_mtime(&json, 1_000_000_000);
    let (_, note) = super::prepare(&json).unwrap();
    assert!(note.unwrap().contains("changed since"));
    assert_eq!(store::load(&sibling).unwrap().num_features(), 10);
    assert_eq!(
        store::load(&sibling).unwrap().get(3).unwrap().labels[0],
        "kept by hand"
    );
}

/// Removing a manual label the JSON holds is an edit of the sibling like adding one: when the
/// JSON changes elsewhere and is converted again, the label stays removed (it used to come
/// back from the JSON), while labels the JSON gained since and labels added on the sibling
/// are both kept.
#[test]
fn a_manual_label_removed_on_the_sibling_stays_removed_after_converting_again() {
    use feature_dictionary::label::manual;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("d.json");
    let mut d = synthetic::dictionary(&Spec {
        n_features: 6,
        ..Default::default()
    });
    for (id, text) in [(1, "from the json"), (1, "json keeps"), (2, "also json")] {
        manual::set_manual_label(d.feature_set.features.get_mut(&id).unwrap(), text);
    }
    store::save(&d, &json).unwrap();
    let (sibling, _) = super::prepare(&json).unwrap();
    let mut w = FdictReader::open_rw(&sibling).unwrap();
    assert!(
        w.remove_manual_label(1, "from the json")
            .unwrap()
            .unwrap()
            .1
    );
    w.add_manual_label(4, "by hand").unwrap();
    drop(w);
    // The JSON is edited elsewhere (another feature gets a label), so it is converted again.
    manual::set_manual_label(d.feature_set.features.get_mut(&5).unwrap(), "json later");
    store::save(&d, &json).unwrap();
    let (_, note) = super::prepare(&json).unwrap();
    let note = note.unwrap();
    assert!(
        note.contains("again") && note.contains("1 manual label(s) removed there stay removed"),
        "{note}"
    );
    let r = FdictReader::open(&sibling).unwrap();
    let mut labels = r.manual_labels().unwrap();
    labels.sort();
    let want: Vec<(u64, String)> = [
        (1, "json keeps"),
        (2, "also json"),
        (4, "by hand"),
        (5, "json later"),
    ]
    .iter()
    .map(|&(id, t)| (id, t.to_string()))
    .collect();
    assert_eq!(labels, want);
    // And again: what the sibling was converted with is now the JSON's labels of this
    // conversion, so removing the JSON's newest label on the sibling sticks as well.
    let mut w = FdictReader::open_rw(&sibling).unwrap();
    assert!(w.remove_manual_label(5, "json later").unwrap().unwrap().1);
    drop(w);
    manual::set_manual_label(d.feature_set.features.get_mut(&0).unwrap(), "json third");
    store::save(&d, &json).unwrap();
    super::prepare(&json).unwrap();
    let mut labels = FdictReader::open(&sibling)
        .unwrap()
        .manual_labels()
        .unwrap();
    labels.sort();
    assert_eq!(
        labels
            .iter()
            .map(|(id, t)| (*id, t.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (0, "json third"),
            (1, "json keeps"),
            (2, "also json"),
            (4, "by hand")
        ]
    );
    // A label the JSON drops, untouched on the sibling, stays dropped (the sibling's copy
    // of it came from the JSON and is no edit), and one renamed in the JSON is not doubled;
    // the sibling's own label is carried again.
    manual::remove_manual_label(d.feature_set.features.get_mut(&2).unwrap(), "also json");
    manual::remove_manual_label(d.feature_set.features.get_mut(&1).unwrap(), "json keeps");
    manual::set_manual_label(d.feature_set.features.get_mut(&1).unwrap(), "json renamed");
    store::save(&d, &json).unwrap();
    let (_, note) = super::prepare(&json).unwrap();
    let note = note.unwrap();
    assert!(note.contains("kept 1 manual label(s)"), "{note}");
    let mut labels = FdictReader::open(&sibling)
        .unwrap()
        .manual_labels()
        .unwrap();
    labels.sort();
    assert_eq!(
        labels
            .iter()
            .map(|(id, t)| (*id, t.as_str()))
            .collect::<Vec<_>>(),
        vec![(0, "json third"), (1, "json renamed"), (4, "by hand")]
    );
}

/// A sibling without a record of its source (written by `featdict import` or an earlier
/// version) is reused while the JSON is older, converted again once the JSON is newer; an
/// unreadable sibling is an error naming it, and is left alone (it may hold labels).
#[test]
fn siblings_without_a_record_go_by_modification_time() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("d.json");
    let sibling = dir.path().join("d.fdict");
    let small = synthetic::dictionary(&Spec {
        n_features: 4,
        ..Default::default()
    });
    store::save(&small, &json).unwrap();
    let big = synthetic::dictionary(&Spec {
        n_features: 9,
        ..Default::default()
    });
    store::save(&big, &sibling).unwrap();
    set_mtime(&json, 1_000_000_000);
    let (_, note) = super::prepare(&json).unwrap();
    assert!(note.unwrap().contains("with the manual labels set since"));
    assert_eq!(store::load(&sibling).unwrap().num_features(), 9);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    set_mtime(&json, now + 60);
    let (_, note) = super::prepare(&json).unwrap();
    assert!(note.unwrap().contains("is newer than"));
    assert_eq!(store::load(&sibling).unwrap().num_features(), 4);
    // Now it has a record: the same JSON is not converted a third time.
    let (_, note) = super::prepare(&json).unwrap();
    assert!(note.unwrap().contains("with the manual labels set since"));
    std::fs::write(&sibling, b"garbage that is no database, but long enough for the size check of the reader to pass on to SQLite..").unwrap();
    let e = format!("{:#}", super::prepare(&json).unwrap_err());
    assert!(e.contains("d.fdict") && e.contains("move it away"), "{e}");
    assert!(std::fs::read(&sibling).unwrap().starts_with(b"garbage"));
}

/// A request target over hyper's limit (65,534 bytes: `refusals::URL_LIMIT`) is answered
/// 414 by hyper itself, before the router, and was sent with an empty body: it now says
/// the limit, as JSON under /api/ (as every API error) and as plain text for pages, the
/// connection closes and the server goes on. One exactly at the limit reaches the API. A URL
/// longer than hyper's whole request buffer (which hyper answered 431) is the same error;
/// too many header fields get 431 with their limits.
#[test]
fn an_overlong_url_is_refused_with_the_limit_said() {
    use super::refusals::URL_LIMIT;
    let s = start(5);
    let said = format!(
        "request URL too long: this server takes a path and query of at most {URL_LIMIT} bytes (64 KiB)"
    );
    let prefix = "/api/search?limit=";
    let at_limit = format!("{prefix}{}", "9".repeat(URL_LIMIT - prefix.len()));
    let r = get(s.addr, &at_limit);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("limit"));
    for over in [
        format!("{at_limit}9"),
        format!("/api/search?text={}", "a".repeat(600_000)),
    ] {
        let r = get(s.addr, &over);
        assert_eq!(r.status, 414, "{} bytes: {}", over.len(), r.body);
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.headers["connection"], "close");
        assert_eq!(r.json(), serde_json::json!({ "error": said }));
    }
    let r = get(s.addr, &format!("/search?text={}", "a".repeat(70_000)));
    assert_eq!(r.status, 414);
    assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(r.body, format!("{said}\n"));
    let names: Vec<String> = (0..101).map(|i| format!("X-Field-{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    let r = request_with(s.addr, "GET", "/api/stats", &many, b"");
    assert_eq!(r.status, 431, "{}", r.body);
    let e = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        e.contains("at most 100 header fields") && e.contains("408 KiB"),
        "{e}"
    );
    let r = request_with(s.addr, "GET", "/api/stats", &many[..90], b"");
    assert_eq!(r.status, 200, "{}", r.body);
    // The documented bounds of a head's size: under 408 KiB passes, over 490 KiB does not.
    for (kib, status) in [(400, 200), (600, 431)] {
        let value = "v".repeat(kib * 1024);
        let r = request_with(
            s.addr,
            "GET",
            "/api/stats",
            &[("X-Big", value.as_str())],
            b"",
        );
        assert_eq!(r.status, status, "{kib} KiB");
    }
    // HEAD gets the same status and headers, and no body.
    let long = format!("/api/search?text={}", "a".repeat(70_000));
    let r = request_with(s.addr, "HEAD", &long, &[], b"");
    assert_eq!(r.status, 414);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.body, "");
    // A request hyper cannot parse: its bare 400 says what is wrong.
    let r = request_with(s.addr, "GET", "/api/stats", &[("Bad Header", "x")], b"");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("malformed HTTP request"), "{}", r.body);
    assert_eq!(get(s.addr, "/api/stats").status, 200);
}

/// Quantile groups no sample fell in are left out of a dictionary; the page says how
/// many are shown and how many firings they hold, instead of letting them pass for all.
#[test]
fn a_page_says_when_quantile_groups_are_missing() {
    let s = start(6);
    let full = get(s.addr, "/features/2").body;
    assert!(
        !full.contains("equal-count groups have sampled examples"),
        "{full}"
    );
    let mut d = s.dict.clone();
    let f = d.feature_set.features.get_mut(&2).unwrap();
    let kept = f.metadata.quantile_examples[1].count;
    f.metadata.quantile_examples.remove(0);
    let total = f.activation_count;
    store::save(&d, &s.path).unwrap();
    let page = get(s.addr, "/features/2").body;
    assert!(
        page.contains(&format!(
            "1 of the ~10 equal-count groups have sampled examples ({kept} of {total} firings"
        )),
        "{page}"
    );
}

/// `/api/features` and `/features` list every feature of the file in the order asked (ties
/// by id), of one type when asked, a page at a time; bad parameters are 400s that say what
/// was expected.
#[test]
fn features_are_listed_in_order_filtered_by_type_and_paged() {
    let s = start(50);
    let all: Vec<&feature_dictionary::model::Feature> =
        s.dict.feature_set.features.values().collect();
    let ranked = |key: &dyn Fn(&feature_dictionary::model::Feature) -> f64| {
        let mut v: Vec<(f64, u64)> = all.iter().map(|f| (-key(f), f.id)).collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v.into_iter().map(|(_, id)| id).collect::<Vec<u64>>()
    };
    let ids = |body: &Value| -> Vec<u64> {
        body["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_u64().unwrap())
            .collect()
    };
    let by_count = ranked(&|f| f.activation_count as f64);
    let by_max = ranked(&|f| f.max_activation);
    let by_confidence = ranked(&|f| f.confidence);
    let mut by_id: Vec<u64> = all.iter().map(|f| f.id).collect();
    by_id.sort();
    for (order, expected) in [
        ("activation_count", &by_count),
        ("frequency", &by_count),
        ("max_activation", &by_max),
        ("confidence", &by_confidence),
        ("id", &by_id),
    ] {
        let mut got: Vec<u64> = Vec::new();
        let mut offset = 0;
        loop {
            let r = get(
                s.addr,
                &format!("/api/features?order={order}&limit=7&offset={offset}"),
            );
            assert_eq!(r.status, 200, "{}", r.body);
            let body = r.json();
            let page = ids(&body);
            got.extend(&page);
            offset += 7;
            if !body["more"].as_bool().unwrap() {
                break;
            }
            assert_eq!(page.len(), 7);
        }
        assert_eq!(&got, expected, "order {order}");
    }
    // The default order is by firings, 100 to a page.
    assert_eq!(ids(&get(s.addr, "/api/features").json()), by_count);
    let sparse: Vec<u64> = by_count
        .iter()
        .copied()
        .filter(|id| s.dict.get(*id).unwrap().feature_type.as_str() == "sparse")
        .collect();
    assert!(!sparse.is_empty() && sparse.len() < all.len());
    let r = get(s.addr, "/api/features?type=sparse&limit=1000").json();
    assert_eq!(ids(&r), sparse);
    assert_eq!(r["type"], "sparse");

    for (query, says) in [
        ("order=loudest", "unknown order"),
        ("type=rare", "unknown feature type"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("offset=-1", "offset"),
        ("limit=3&limit=5", "`limit` is given more than once"),
    ] {
        let r = get(s.addr, &format!("/api/features?{query}"));
        assert_eq!(r.status, 400, "{query}");
        assert!(
            r.json()["error"].as_str().unwrap().contains(says),
            "{query}: {}",
            r.body
        );
        let p = get(s.addr, &format!("/features?{query}"));
        assert_eq!(p.status, 400, "{query}");
        assert!(p.body.contains("class=\"error\""));
    }

    let p = get(
        s.addr,
        "/features?order=max_activation&type=all&limit=5&offset=5",
    );
    assert_eq!(p.status, 200);
    let linked: Vec<u64> = p
        .body
        .match_indices("<tr><td><a href=\"/features/")
        .map(|(i, m)| {
            let rest = &p.body[i + m.len()..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        })
        .collect();
    assert_eq!(linked, by_max[5..10]);
    assert!(p.body.contains("features 6–10"));
    assert!(p.body.contains(
        "href=\"/features?order=max_activation&amp;type=all&amp;limit=5&amp;offset=0\" rel=\"prev\""
    ));
    assert!(p.body.contains(
        "href=\"/features?order=max_activation&amp;type=all&amp;limit=5&amp;offset=10\" rel=\"next\""
    ));
    assert!(p
        .body
        .contains("<option value=\"max_activation\" selected>"));
    assert!(!p.body.contains(HOSTILE_TOKEN) && !p.body.contains(HOSTILE_LABEL));
    // Every page links the listing from its header.
    assert!(get(s.addr, "/")
        .body
        .contains("<a class=\"browse\" href=\"/features\">"));
    let past = get(s.addr, "/features?offset=4000&limit=7");
    assert_eq!(past.status, 200);
    assert!(past.body.contains("No feature from position 4001 on."));
    assert!(past.body.contains(
        "<a href=\"/features?order=activation_count&amp;type=all&amp;limit=7&amp;offset=0\" rel=\"first\">"
    ));
    // The form keeps the page size given.
    assert!(past
        .body
        .contains("<input type=\"hidden\" name=\"limit\" value=\"7\">"));
    let r = get(s.addr, "/api/features?limit=3&type=all").json();
    assert_eq!(
        (r["limit"].as_u64(), r["type"].as_str()),
        (Some(3), Some("all"))
    );
    assert_eq!(get(s.addr, "/api/features").json()["type"], "all");
    // A repeated parameter is refused everywhere, not resolved by a guess, on routes that
    // read no parameter too.
    for path in [
        "/api/search?token=a&token=b",
        "/search?q=a&q=b",
        "/go?id=1&id=2",
        "/api/stats?x=1&x=2",
        "/features/5?x=1&x=2",
    ] {
        let r = get(s.addr, path);
        assert_eq!(r.status, 400, "{path}");
        assert!(
            r.body.contains("is given more than once"),
            "{path}: {}",
            r.body
        );
    }
    // Bytes that are not UTF-8 were decoded as U+FFFD, itself a token ("�") of many
    // vocabularies, and searched for.
    let r = get(s.addr, "/api/search?token=%FF");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("`token` is not valid UTF-8"),
        "{}",
        r.body
    );
    let r = get(s.addr, "/search?kind=token&q=%C3");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("class=\"error\""), "{}", r.body);
    // A parameter an API endpoint does not read is refused by name (a misspelt `limit`
    // answered the default 20 hits); pages ignore what they do not know.
    for (path, message) in [
        (
            "/api/search?token=a&limt=5",
            "unknown query parameter `limt`: /api/search takes token, label, pattern, text, by, limit, offset",
        ),
        (
            "/api/features?sort=max&order=max_activation",
            "unknown query parameter `sort`: /api/features takes order, type, limit, offset",
        ),
        (
            "/api/stats?b=1&a=2",
            "unknown query parameters `a`, `b`: /api/stats takes no query parameters",
        ),
        (
            "/api/features/5?full=1",
            "unknown query parameter `full`: /api/features/5 takes no query parameters",
        ),
    ] {
        let r = get(s.addr, path);
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert_eq!(r.json()["error"], message, "{path}");
    }
    assert_eq!(
        get(s.addr, "/api/features?order=max_activation&limit=2").status,
        200
    );
    assert_eq!(get(s.addr, "/features?utm_source=x").status, 200);
    assert_eq!(get(s.addr, "/search?q=a&kind=label&ref=1").status, 200);
    // Decoding: `+` is a space, `%2B` a plus, a key without `=` an empty value.
    let parsed = super::query_params(Some("q=a+b%2Bc&flag&k%C3%A9=%E2%9C%93")).unwrap();
    assert_eq!(parsed["q"], "a b+c");
    assert_eq!(parsed["flag"], "");
    assert_eq!(parsed["k\u{e9}"], "\u{2713}");
}

/// A file written before the listing's indexes existed gets them when first served (and
/// the label search's index in its newer form), with the same listing.
#[test]
fn a_file_without_the_listing_indexes_gets_them_when_served() {
    let s = start(30);
    let listing = |addr| {
        ["activation_count", "max_activation", "confidence", "id"]
            .map(|o| get(addr, &format!("/api/features?order={o}&type=sparse")).body)
    };
    let before = listing(s.addr);
    let old = s._dir.path().join("old.fdict");
    std::fs::copy(&s.path, &old).unwrap();
    let conn = FdictReader::open_rw(&old).unwrap();
    conn.connection()
        .execute_batch(
            "DROP INDEX features_by_count; DROP INDEX features_by_max; DROP INDEX features_by_id;
         DROP INDEX features_by_confidence;
         CREATE INDEX features_by_confidence ON features(confidence DESC, id, labels);",
        )
        .unwrap();
    let indexes = |r: &FdictReader| -> Vec<String> {
        let mut st = r
            .connection()
            .prepare("SELECT sql FROM sqlite_master WHERE type = 'index' AND name LIKE 'features_by_%' ORDER BY name")
            .unwrap();
        st.query_map([], |row| row.get::<_, String>(0))
            .unwrap()
            .map(|sql| sql.unwrap())
            .collect()
    };
    assert_eq!(indexes(&conn).len(), 1);
    drop(conn);
    let state = AppState::open(&old).unwrap();
    drop(state);
    let conn = FdictReader::open(&old).unwrap();
    assert_eq!(
        indexes(&conn),
        [
            "CREATE INDEX features_by_confidence ON features(confidence DESC, id, labels, feature_type)",
            "CREATE INDEX features_by_count ON features(activation_count DESC, id, feature_type)",
            "CREATE INDEX features_by_id ON features(id, feature_type)",
            "CREATE INDEX features_by_max ON features(max_activation DESC, id, feature_type)",
        ]
    );
    drop(conn);
    // Opening it again changes nothing; the listing is the one of the new file.
    let mut again = FdictReader::open_rw(&old).unwrap();
    assert!(again.add_listing_indexes().unwrap().is_empty());
    drop(again);
    std::fs::copy(&old, &s.path).unwrap();
    assert_eq!(listing(s.addr), before);
}

/// A read that runs past the time limit is stopped (SQLite interrupts it) and answered 503
/// with what to do, instead of holding a reading connection for as long as it takes; the
/// connection then serves the next request as usual.
#[test]
fn a_query_past_the_time_limit_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        n_features: 3000,
        vocab_words: 80,
        ..Default::default()
    };
    let path = dir.path().join("d.fdict");
    store::save(&synthetic::dictionary(&spec), &path).unwrap();
    let mut state = AppState::open(&path).unwrap();
    // Every word of the synthetic descriptions: bm25 over every row, far more than the
    // steps between two looks at the clock.
    let query = Query::Text("fires times".into());
    let ok = (0..super::READERS)
        .map(|_| state.read(|r| Ok(r.search(&query, 5)?.len())))
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert!(ok.iter().all(|&n| n == 5), "{ok:?}");
    state.query_time_limit = std::time::Duration::ZERO;
    let e = state
        .read(|r| Ok(r.search(&query, 5)?.len()))
        .expect_err("stopped");
    assert_eq!(e.status, 503);
    assert!(e.message.contains("stopped after 0 s"), "{}", e.message);
    state.query_time_limit = super::QUERY_TIME_LIMIT;
    for _ in 0..super::READERS {
        assert_eq!(state.read(|r| Ok(r.search(&query, 5)?.len())).unwrap(), 5);
    }
}

/// A file built with `--drop-dead` skips ids: the page's previous/next links go to the
/// stored neighbours (they went to id ± 1, which answered 404).
#[test]
fn pages_link_the_stored_neighbours_of_a_file_with_features_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut dict = synthetic::dictionary(&Spec {
        n_features: 6,
        vocab_words: 20,
        ..Default::default()
    });
    for id in [1, 2, 5] {
        dict.feature_set.features.remove(&id);
    }
    let path = dir.path().join("gaps.fdict");
    store::save(&dict, &path).unwrap();
    let r = FdictReader::open(&path).unwrap();
    assert_eq!(r.adjacent_ids(0).unwrap(), (None, Some(3)));
    assert_eq!(r.adjacent_ids(3).unwrap(), (Some(0), Some(4)));
    assert_eq!(r.adjacent_ids(4).unwrap(), (Some(3), None));
}

/// A feature the file does not hold is explained in the CLI's words: past the SAE's width,
/// or not stored.
#[test]
fn a_missing_feature_says_why() {
    let summary = |stored| feature_dictionary::store::fdict::Summary {
        model_name: String::new(),
        sae_name: String::new(),
        layer: 0,
        num_features: 100,
        stored_features: stored,
        total_tokens_processed: 10,
    };
    let e = super::not_stored(7, &summary(40));
    assert_eq!(e.status, axum::http::StatusCode::NOT_FOUND);
    assert_eq!(
        e.message,
        "feature 7 is not stored in this dictionary (it holds 40 of the 100 features, ids 0 to 99)"
    );
    let e = super::not_stored(100, &summary(40)).message;
    assert_eq!(
        e,
        "feature 100 is not in this dictionary (it holds 40 features, ids 0 to 99)"
    );
}

/// A file built with `--drop-dead`: listings of every type and of dead features say how many
/// dead features it left out (the page and the API, as `featdict top --type dead` does), and
/// a stored feature that never fired, in a dictionary that counted tokens, shows 0 distinct
/// tokens rather than "–" (not stored).
#[test]
fn listings_say_which_dead_features_the_file_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut dict = synthetic::dictionary(&Spec {
        n_features: 10,
        vocab_words: 20,
        ..Default::default()
    });
    for id in [2, 5, 6] {
        dict.feature_set.features.remove(&id);
    }
    dict.feature_set.metadata.omitted_features = vec![2, 5, 6];
    let dead = dict.feature_set.features.get_mut(&3).unwrap();
    dead.activation_count = 0;
    dead.activation_frequency = 0.0;
    dead.feature_type = feature_dictionary::model::FeatureType::Dead;
    dead.metadata.top_tokens.clear();
    dead.metadata.unique_tokens = None;
    dead.metadata.token_entropy = None;
    let path = dir.path().join("dropped.fdict");
    store::save(&dict, &path).unwrap();
    let (addr, _rt) = serve_file(&path, super::ServeOptions::default());
    for (query, left_out) in [
        ("", Some(3)),
        ("?type=dead", Some(3)),
        ("?type=sparse", None),
    ] {
        let v = get(addr, &format!("/api/features{query}")).json();
        assert_eq!(v["dead_left_out"].as_u64(), left_out, "{query}: {v}");
        let page = get(addr, &format!("/features{query}")).body;
        assert_eq!(
            page.contains("3 dead features were left out of this file"),
            left_out.is_some(),
            "{query}: {page}"
        );
    }
    // Features missing without being listed as left out are not called dead.
    let mut cut = dict.clone();
    cut.feature_set.metadata.omitted_features.clear();
    let cut_path = dir.path().join("cut.fdict");
    store::save(&cut, &cut_path).unwrap();
    let (cut_addr, _cut_rt) = serve_file(&cut_path, super::ServeOptions::default());
    let v = get(cut_addr, "/api/features?type=dead").json();
    assert!(v.get("dead_left_out").is_none(), "{v}");
    assert!(!get(cut_addr, "/features").body.contains("left out"));
    let page = get(addr, "/features/3").body;
    assert!(
        page.contains("<tr><th>distinct tokens</th><td class=\"n\">0</td></tr>"),
        "{page}"
    );
    // The search box's empty kind is full text, as leaving it out is.
    let r = get(addr, "/search?kind=&q=zzzz");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get(addr, "/search?kind=words&q=a");
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("expected text, token, label or pattern"),
        "{}",
        r.body
    );
}
