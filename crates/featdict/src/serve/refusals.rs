//! Bodies for the requests hyper refuses itself.
//!
//! A request target over hyper's limit (414) or a request head over its buffer (431) is
//! answered by hyper's parser with an empty body, before the request reaches any service,
//! and hyper offers no hook to change that answer. A client then learns only a status code.
//! So the connection's bytes are watched: reading, the start of each request line is noted
//! (whether it asks for `/api/...`, and whether it ran past the URL limit); writing, hyper's
//! body-less 414 or 431 is replaced by the same status with a short body saying what the
//! limit is — `{"error": …}` for the API, as its other errors, plain text otherwise — and
//! its body-less 400 (a request it could not parse) by one saying so.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Longest request target (path and query) hyper accepts, in bytes: its `MAX_URI_LEN`
/// (`u16::MAX - 1`), which it does not let a server change (a test checks the edge).
pub(super) const URL_LIMIT: usize = 65_534;

/// hyper's read buffer, which a request's line and headers must fit in; set on every
/// connection (hyper's own default), so the message below stays true.
pub(super) const HEAD_LIMIT: usize = 8192 + 4096 * 100;

/// About the largest request head that still passes: hyper checks its buffer against
/// [`HEAD_LIMIT`] before each read, and a read may add tens of KiB more (measured: heads of
/// up to ≈ 482 KiB were served, whether sent at once or in 4 KiB pieces).
pub(super) const HEAD_OVERSHOOT_LIMIT: usize = 490 * 1024;

/// Header fields a request may have: hyper's default, which the server keeps.
const MAX_HEADER_FIELDS: usize = 100;

/// How long a refused connection's further bytes are read and dropped before it closes:
/// closed with bytes unread (a URL longer than hyper's buffer is read only in part), the
/// connection would be reset, which can lose the answer before the client reads it.
const LINGER: Duration = Duration::from_secs(2);

/// Bytes kept of the start of each line: enough for a method and `/api/`, or an
/// absolute-form target's scheme and host before its path.
const LINE_HEAD: usize = 320;

/// What is known of the latest request line received.
#[derive(Debug, Clone, Copy, Default)]
struct RequestLine {
    /// It asks for `/api` or a path under it.
    api: bool,
    /// Its method is HEAD: the answer has headers only.
    head: bool,
    /// It is longer than a request line with a target of [`URL_LIMIT`] bytes can be.
    long: bool,
}

/// A connection whose hyper-made 414 and 431 answers get bodies.
pub(super) struct ExplainRefusals<T> {
    inner: T,
    /// Bytes of the line being received so far (since the last `\n`).
    line_len: usize,
    /// Its first bytes (up to [`LINE_HEAD`]).
    line_head: Vec<u8>,
    /// Whether the line being received was seen to start like a request line.
    line_is_request: bool,
    /// The latest request line, once its start was seen.
    request: Option<RequestLine>,
    /// The latest request's head has ended (a blank line came after its request line).
    head_ended: bool,
    /// A line that is no request line came after the latest request's head ended: a request
    /// hyper cannot parse, of which nothing (API or page, HEAD or not) is known.
    stray_line: bool,
    /// The first request line seen to run past the URL limit: the one hyper refuses (it
    /// answers requests in order and closes at the first refusal), whatever pipelined lines
    /// arrived after it.
    first_long: Option<RequestLine>,
    /// The answer written in place of hyper's, and how much of it is written.
    replacement: Option<(Vec<u8>, usize)>,
    /// Whether an answer was replaced (the connection is being refused).
    refused: bool,
    /// Once a refused connection's sending side is shut: until when its bytes are dropped.
    linger: Option<Pin<Box<Sleep>>>,
}

impl<T> ExplainRefusals<T> {
    pub(super) fn new(inner: T) -> Self {
        Self {
            inner,
            line_len: 0,
            line_head: Vec::with_capacity(LINE_HEAD),
            line_is_request: false,
            request: None,
            head_ended: false,
            stray_line: false,
            first_long: None,
            replacement: None,
            refused: false,
            linger: None,
        }
    }

    /// Notes what `bytes`, the next ones received, say about request lines.
    fn observe(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        loop {
            let (part, ended) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            if self.line_head.len() < LINE_HEAD {
                let take = (LINE_HEAD - self.line_head.len()).min(part.len());
                self.line_head.extend_from_slice(&part[..take]);
                // A request line is known by its start; decided once, when enough of it
                // (or all of it) is in.
                if self.line_head.len() == LINE_HEAD || ended {
                    if let Some(api) = request_target_is_api(&self.line_head) {
                        self.line_is_request = true;
                        self.head_ended = false;
                        self.stray_line = false;
                        self.request = Some(RequestLine {
                            api,
                            head: self.line_head.starts_with(b"HEAD "),
                            long: false,
                        });
                    }
                }
            }
            self.line_len += part.len();
            // Method, space, target, space, `HTTP/1.1`, CR: a target over the limit makes
            // the line longer than this.
            if self.line_is_request && self.line_len > URL_LIMIT + "GET  HTTP/1.1\r".len() {
                if let Some(r) = self.request.as_mut() {
                    r.long = true;
                    if self.first_long.is_none() {
                        self.first_long = Some(*r);
                    }
                }
            }
            if !ended {
                return;
            }
            let blank = self.line_len == 0 || self.line_head == b"\r";
            if self.request.is_some() && !self.line_is_request {
                if blank {
                    self.head_ended = true;
                } else if self.head_ended {
                    self.stray_line = true;
                }
            }
            self.line_len = 0;
            self.line_head.clear();
            self.line_is_request = false;
            rest = &rest[part.len() + 1..];
        }
    }

    /// The answer to send instead of `head` when `head` is hyper's own body-less 414 or 431.
    fn replacement_for(&self, head: &[u8]) -> Option<Vec<u8>> {
        let status = [b"HTTP/1.1 ", b"HTTP/1.0 "]
            .iter()
            .find_map(|v| head.strip_prefix(&v[..]))
            .and_then(|rest| rest.get(..4))?;
        let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
        let bodiless = head[..end + 2]
            .windows(21)
            .any(|w| w.eq_ignore_ascii_case(b"\r\ncontent-length: 0\r\n"));
        if !bodiless {
            return None;
        }
        let request = self.first_long.or(self.request).unwrap_or_default();
        // A URL too long to fit in hyper's buffer ends in 431 (the head never completed),
        // but what is wrong is still the URL.
        let (code, message) = match status {
            b"414 " => (414, url_message()),
            b"431 " if request.long => (414, url_message()),
            b"431 " => (
                431,
                format!(
                    "request head too large: this server reads a request line and headers of at least {} KiB together (hyper reads on while its buffer holds less, so heads of up to about {} KiB pass), and at most {MAX_HEADER_FIELDS} header fields",
                    HEAD_LIMIT / 1024,
                    HEAD_OVERSHOOT_LIMIT / 1024
                ),
            ),
            // Hyper answers a request it cannot parse with a bare 400; every 400 of ours
            // says what was wrong.
            b"400 " => (
                400,
                "malformed HTTP request: this server reads HTTP/1.1 requests, a request line \
                 (`GET /path HTTP/1.1`) and header lines (`Name: value`), each ending in CRLF"
                    .to_string(),
            ),
            _ => return None,
        };
        // A 400 after a complete request: the line refused is not that request's (it may
        // be the answer to a HEAD, or to the API, and this is neither).
        let request = if code == 400 && self.stray_line {
            RequestLine::default()
        } else {
            request
        };
        Some(response(code, request, &message))
    }

    /// Writes what is left of the replacement answer.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>
    where
        T: AsyncWrite + Unpin,
    {
        while let Some((bytes, done)) = self.replacement.as_mut() {
            if *done == bytes.len() {
                self.replacement = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Reads and drops what the client still sends, until it closes or [`LINGER`] passes.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()>
    where
        T: AsyncRead + Unpin,
    {
        let timer = self
            .linger
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(LINGER)));
        let mut scratch = [0u8; 8192];
        loop {
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => continue,
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

fn url_message() -> String {
    format!(
        "request URL too long: this server takes a path and query of at most {URL_LIMIT} bytes (64 KiB)"
    )
}

/// A complete response with `message` as its body (headers only to a HEAD request, which
/// must get none), closing the connection (hyper closes it after a refusal).
fn response(code: u16, request: RequestLine, message: &str) -> Vec<u8> {
    let reason = match code {
        400 => "Bad Request",
        414 => "URI Too Long",
        _ => "Request Header Fields Too Large",
    };
    let (ctype, body) = if request.api {
        (
            "application/json",
            serde_json::json!({ "error": message }).to_string(),
        )
    } else {
        ("text/plain; charset=utf-8", format!("{message}\n"))
    };
    format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nx-content-type-options: nosniff\r\nconnection: close\r\n\r\n{}",
        body.len(),
        if request.head { "" } else { &body }
    )
    .into_bytes()
}

/// For a line that starts like a request line (`METHOD target`), whether its target is
/// `/api` or under it; `None` for any other line.
fn request_target_is_api(line: &[u8]) -> Option<bool> {
    let space = line.iter().position(|&b| b == b' ')?;
    let method = &line[..space];
    if method.is_empty() || !method.iter().all(u8::is_ascii_uppercase) {
        return None;
    }
    let mut target = &line[space + 1..];
    // Absolute form (`GET http://host:port/api/stats HTTP/1.1`): the path follows the host.
    for scheme in [&b"http://"[..], b"https://"] {
        if target.len() >= scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let host = &target[scheme.len()..];
            target = host
                .iter()
                .position(|&b| b == b'/')
                .map_or(&b""[..], |i| &host[i..]);
        }
    }
    if !target.starts_with(b"/") {
        return None;
    }
    let api = target
        .strip_prefix(b"/api")
        .is_some_and(|rest| matches!(rest.first(), None | Some(b'/' | b'?' | b' ' | b'#' | b'\r')));
    Some(api)
}

impl<T: AsyncRead + Unpin> AsyncRead for ExplainRefusals<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let this = &mut *self;
        this.observe(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ExplainRefusals<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_replacement(cx))?;
        if let Some(answer) = self.replacement_for(buf) {
            // hyper's answer counts as written; ours goes out on the flush that follows.
            self.replacement = Some((answer, 0));
            self.refused = true;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_replacement(cx))?;
        // hyper writes a response's head as one buffer, first.
        if let Some(head) = bufs.iter().find(|b| !b.is_empty()) {
            if let Some(answer) = self.replacement_for(head) {
                self.replacement = Some((answer, 0));
                self.refused = true;
                return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        if !self.refused {
            return Pin::new(&mut self.inner).poll_shutdown(cx);
        }
        if self.linger.is_none() {
            ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
        }
        ready!(self.poll_linger(cx));
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_told_from_other_lines_and_api_targets_from_pages() {
        assert_eq!(
            request_target_is_api(b"GET /api/search?x HTTP/1.1"),
            Some(true)
        );
        assert_eq!(request_target_is_api(b"GET /api?x"), Some(true));
        assert_eq!(request_target_is_api(b"POST /api"), Some(true));
        assert_eq!(
            request_target_is_api(b"GET http://h:1/api/stats HTTP/1.1"),
            Some(true)
        );
        assert_eq!(request_target_is_api(b"GET /apiary HTTP/1.1"), Some(false));
        assert_eq!(
            request_target_is_api(b"GET /search?q=/api/ HTTP/1.1"),
            Some(false)
        );
        assert_eq!(request_target_is_api(b"Host: /api"), None);
        assert_eq!(request_target_is_api(b"text=hello /api"), None);
    }

    /// The state after `chunks` arrive, one read each.
    fn after(chunks: &[&[u8]]) -> ExplainRefusals<()> {
        let mut c = ExplainRefusals::new(());
        for chunk in chunks {
            c.observe(chunk);
        }
        c
    }

    #[test]
    fn a_request_line_is_followed_across_reads_and_lines() {
        let long = format!(
            "GET /api/search?text={} HTTP/1.1\r\n",
            "a".repeat(URL_LIMIT)
        );
        let bytes = long.as_bytes();
        // In one read, byte by byte, and split inside its start.
        for split in [bytes.len(), 1, 3, 200] {
            let chunks: Vec<&[u8]> = bytes.chunks(split).collect();
            let r = after(&chunks).request.unwrap();
            assert!(r.api && r.long, "split {split}");
        }
        // Just within the limit: not long.
        let within = format!("GET /{} HTTP/1.1\r\n", "a".repeat(URL_LIMIT - 1));
        let r = after(&[within.as_bytes()]).request.unwrap();
        assert!(!r.api && !r.long);
        // The latest request line counts: a short one after a body line.
        let r = after(&[
            b"POST /api/features/1/labels HTTP/1.1\r\nHost: x\r\n\r\ntext=a\nGET / HTTP/1.1\r\n",
        ])
        .request
        .unwrap();
        assert!(!r.api && !r.long);
        assert!(after(&[b"Host: x\r\n"]).request.is_none());
    }

    #[test]
    fn a_refusal_answers_in_the_form_of_the_refused_request_not_a_later_one() {
        let refusal = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n";
        let long = format!(
            "GET /search?q={} HTTP/1.1\r\n\r\n",
            "a".repeat(URL_LIMIT + 10)
        );
        // A page with an overlong URL, then an API request pipelined behind it: text.
        let c = after(&[long.as_bytes(), b"GET /api/stats HTTP/1.1\r\n\r\n"]);
        let answer = String::from_utf8(c.replacement_for(refusal).unwrap()).unwrap();
        assert!(answer.contains("content-type: text/plain"), "{answer}");
        // And the other way round: JSON.
        let long_api = long.replacen("/search", "/api/search", 1);
        let c = after(&[long_api.as_bytes(), b"GET /features HTTP/1.1\r\n\r\n"]);
        let answer = String::from_utf8(c.replacement_for(refusal).unwrap()).unwrap();
        assert!(
            answer.contains("content-type: application/json"),
            "{answer}"
        );
    }

    #[test]
    fn only_hypers_bodiless_refusals_are_replaced() {
        let c = after(&[b"GET /api/stats?x HTTP/1.1\r\n"]);
        let refusal = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let answer = String::from_utf8(c.replacement_for(refusal).unwrap()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}\r\n", body.len())),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(
            v["error"].as_str().unwrap().contains("at most 65534 bytes"),
            "{body}"
        );
        // A page: plain text.
        let c = after(&[b"GET /features HTTP/1.1\r\n"]);
        let answer = String::from_utf8(c.replacement_for(refusal).unwrap()).unwrap();
        assert!(answer.contains("content-type: text/plain"), "{answer}");
        assert!(answer.ends_with("(64 KiB)\n"), "{answer}");
        // A HEAD request: the same headers, no body.
        let c = after(&[b"HEAD /api/stats?x HTTP/1.1\r\n"]);
        let answer = String::from_utf8(c.replacement_for(refusal).unwrap()).unwrap();
        assert!(
            answer.contains("content-type: application/json"),
            "{answer}"
        );
        assert!(answer.ends_with("\r\n\r\n"), "{answer}");
        // Our own answers (with a body, or another status) pass unchanged.
        assert!(c
            .replacement_for(b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 5\r\n\r\nhello")
            .is_none());
        assert!(c
            .replacement_for(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 9\r\n\r\nbad input")
            .is_none());
        // After a complete HEAD request, a line that is no request: answered as unknown
        // (with its body), not as the HEAD before it.
        let c = after(&[b"HEAD /api/stats HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n"]);
        let answer = c
            .replacement_for(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .unwrap();
        let answer = String::from_utf8(answer).unwrap();
        assert!(answer.contains("content-type: text/plain"), "{answer}");
        assert!(answer.ends_with("CRLF\n"), "{answer}");
        // A HEAD whose own header is malformed: its head has not ended, so it is that HEAD.
        let c = after(&[b"HEAD /api/stats HTTP/1.1\r\nBad Header\r\n\r\n"]);
        let answer = c
            .replacement_for(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .unwrap();
        assert!(String::from_utf8(answer).unwrap().ends_with("\r\n\r\n"));
        // Hyper's bare 400 (a request it could not parse) is explained.
        let answer = after(&[b"GET /features HTTP/1.1\r\n"])
            .replacement_for(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .unwrap();
        let answer = String::from_utf8(answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer}"
        );
        assert!(answer.contains("malformed HTTP request"), "{answer}");
        assert!(c
            .replacement_for(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .is_none());
    }
}
