//! Which requests the server answers at all: those addressed to it by a name no other site
//! can take over, and — for requests that change something — those a page of this server
//! sent, not another site's.
//!
//! A page from any site can make the browser send a form POST here (the label form takes
//! `application/x-www-form-urlencoded`, which needs no CORS preflight), and a site whose
//! name it makes resolve to 127.0.0.1 (DNS rebinding) can even read the answers, its own
//! origin being the server's then. The browser gives both away: the first by an `Origin`
//! (or `Sec-Fetch-Site`) header naming another site, the second by a `Host` header holding
//! that site's name instead of this server's address. Programs such as curl send neither
//! `Origin` nor `Sec-Fetch-Site`, and the address they were given as `Host`, so they pass.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{pages, ApiError};

/// The `Host` values this server answers to.
#[derive(Clone, Debug)]
pub struct HostGuard {
    bound: SocketAddr,
    /// `--allow-host` values: lowercased name and port.
    extra: Vec<(String, u16)>,
}

/// Checks an `--allow-host` value: `NAME` or `NAME:PORT` (`[V6]:PORT`).
pub fn parse_allowed_host(s: &str) -> Result<String, String> {
    let t = s.trim();
    let plain = t
        .strip_prefix('[')
        .map_or(t, |r| r.split(']').next().unwrap_or(""));
    let ok = split_host(t).is_some()
        && !plain.is_empty()
        && plain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:_".contains(&b))
        && !t.contains('/');
    if ok {
        Ok(t.to_string())
    } else {
        Err(format!(
            "{s:?} is not a host name with an optional port (e.g. myhost.lan or localhost:9000)"
        ))
    }
}

impl HostGuard {
    /// Requests to `bound` (the listening address, with its actual port) by its IP, by a
    /// loopback IP or `localhost` with that port, or by one of `extra` (`NAME` with the
    /// server's port, or `NAME:PORT`, compared without regard to case; values that
    /// [`parse_allowed_host`] refuses are ignored).
    pub fn new(bound: SocketAddr, extra: &[String]) -> Self {
        let extra = extra
            .iter()
            .filter_map(|h| {
                let h = h.trim().to_ascii_lowercase();
                let (name, port) = split_host(&h)?;
                let port = if has_port(&h) { port } else { bound.port() };
                Some((name.to_string(), port))
            })
            .collect();
        Self { bound, extra }
    }

    /// Whether a request whose `Host` (or absolute URI's authority) is `host` is for this
    /// server.
    ///
    /// A name is accepted only if it is `localhost` or given by `--allow-host`: any other
    /// name can be made to resolve to this machine by whoever owns it. An IP literal cannot
    /// be redirected that way, so every one is accepted when the server listens on all
    /// addresses (0.0.0.0 or ::), which it does not know one by one.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let Some((name, port)) = split_host(&host) else {
            return false;
        };
        if self.extra.iter().any(|(n, p)| n == name && *p == port) {
            return true;
        }
        if port != self.bound.port() {
            return false;
        }
        if name == "localhost" {
            return true;
        }
        match name.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback() || ip == self.bound.ip() || self.bound.ip().is_unspecified(),
            Err(_) => false,
        }
    }

    /// Addresses to suggest when a request is refused.
    fn suggestion(&self) -> String {
        let port = self.bound.port();
        let ip = self.bound.ip();
        if ip.is_loopback() || ip.is_unspecified() {
            format!("http://127.0.0.1:{port}/ or http://localhost:{port}/")
        } else {
            format!("http://{}/", self.bound)
        }
    }
}

/// Splits `host[:port]` (`[v6]:port` for IPv6) into the name (brackets removed) and the
/// port, 80 when none is given (the `http` default a browser leaves out).
fn split_host(host: &str) -> Option<(&str, u16)> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (name, after) = rest.split_once(']')?;
        match after {
            "" => (name, None),
            p => (name, Some(p.strip_prefix(':')?)),
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let port = match port {
        None => 80,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
        Some(_) => return None,
    };
    (!name.is_empty()).then_some((name, port))
}

/// Whether `host` (as [`split_host`] takes it) names its port.
fn has_port(host: &str) -> bool {
    match host.strip_prefix('[') {
        Some(rest) => rest
            .split_once(']')
            .is_some_and(|(_, after)| !after.is_empty()),
        None => host.contains(':'),
    }
}

/// Whether `method` can change the dictionary (every method but the read-only ones).
fn changes_state(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// At most `max` characters of a header value a client sent, for an error message.
fn shown(value: &str, max: usize) -> String {
    match value.char_indices().nth(max) {
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
        None => format!("{value:?}"),
    }
}

/// Why a request is refused, if it is: a `Host` that is not this server's, or a
/// state-changing request sent by another site's page.
pub(super) fn check(
    guard: &HostGuard,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    // A header given twice is checked in every copy: which one a later reader takes is not
    // ours to know. Two Hosts cannot both be right.
    if headers.get_all(header::HOST).iter().count() > 1 {
        return Err(ApiError::bad(
            "request refused: it has more than one Host header",
        ));
    }
    let host = headers
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("\u{fffd}"));
    // An absolute request target names the host too, and takes precedence over Host.
    let authority = uri.authority().map(|a| a.as_str());
    let Some(named) = authority.or(host) else {
        return Err(ApiError::bad(
            "request refused: it has no Host header (HTTP/1.1 requires one)",
        ));
    };
    for h in [authority, host].into_iter().flatten() {
        if !guard.allows(h) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "request refused: Host {} is not an address of this server (open {}; to reach it under another name, start featdict serve with --allow-host NAME:PORT)",
                    shown(h, 100),
                    guard.suggestion()
                ),
            ));
        }
    }
    if !changes_state(method) {
        return Ok(());
    }
    for origin in headers.get_all(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("\u{fffd}");
        let own = format!("http://{named}");
        if !origin.eq_ignore_ascii_case(&own) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "request refused: a page from {} may not change this server's dictionary (only pages from {own} may)",
                    shown(origin, 100)
                ),
            ));
        }
    }
    for site in headers.get_all("sec-fetch-site") {
        let site = site.to_str().unwrap_or("\u{fffd}");
        if !(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none")) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "request refused: the browser says it comes from another site (Sec-Fetch-Site: {}); only this server's pages may change its dictionary",
                    shown(site, 40)
                ),
            ));
        }
    }
    Ok(())
}

/// The middleware: refuses what [`check`] refuses, with a JSON error under `/api` and an
/// error page elsewhere, before any handler reads the request.
pub(super) async fn refuse_foreign(
    State(guard): State<HostGuard>,
    req: Request,
    next: Next,
) -> Response {
    match check(&guard, req.method(), req.uri(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            let path = req.uri().path();
            if path == "/api" || path.starts_with("/api/") {
                e.into_response()
            } else {
                pages::error_page(e)
            }
        }
    }
}
