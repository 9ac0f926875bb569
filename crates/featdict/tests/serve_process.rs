//! `featdict serve` as its own process, beside other `featdict` processes reading the same
//! `.fdict` (the way a user runs `featdict show` while browsing).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use feature_dictionary::query::synthetic::{self, Spec};
use feature_dictionary::{store, FeatureDictionary};

mod common;
use common::{assert_success, s};

/// A small synthetic dictionary saved as `d.fdict` in `dir`, and its server.
fn served_dictionary(dir: &Path) -> (FeatureDictionary, std::path::PathBuf, Server) {
    let dict = synthetic::dictionary(&Spec {
        n_features: 20,
        vocab_words: 30,
        ..Default::default()
    });
    let path = dir.join("d.fdict");
    store::save(&dict, &path).unwrap();
    let server = serve(&path);
    (dict, path, server)
}

/// Kills the server when the test ends, passed or not.
struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dict: &Path) -> Server {
    serve_with(dict, &[])
}

/// `featdict serve DICT --addr 127.0.0.1:0 --json` with `extra` arguments.
fn serve_with(dict: &Path, extra: &[&str]) -> Server {
    serve_logging(dict, extra, Stdio::null())
}

/// [`serve_with`], its stderr going to `log`.
fn serve_logging(dict: &Path, extra: &[&str], log: impl Into<Stdio>) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_featdict"))
        .arg("serve")
        .arg(dict)
        .args(["--addr", "127.0.0.1:0", "--json"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let url = v["url"].as_str().unwrap();
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    Server(child, addr)
}

/// POSTs a manual label as JSON; returns the status line.
fn post_label(addr: &str, id: u64, text: &str) -> String {
    let body = serde_json::json!({ "text": text }).to_string();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /api/features/{id}/labels HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.lines().next().unwrap_or_default().to_string()
}

fn labels_by_cli(dict: &Path, id: u64) -> Vec<String> {
    let out = common::featdict(&["show", s(dict), &id.to_string(), "--json"]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    serde_json::from_value(v["labels"].clone()).unwrap()
}

#[test]
fn labels_written_by_the_server_stay_visible_to_other_processes() {
    let dir = tempfile::tempdir().unwrap();
    let (dict, path, server) = served_dictionary(dir.path());
    // Each CLI run opens and closes its own connection, which must not disturb the server's
    // (in WAL mode, as earlier versions wrote files, the CLI took itself for the last
    // connection, checkpointed and deleted the WAL, and the server wrote into the deleted
    // file).
    for (i, id) in [2u64, 5, 7, 11].into_iter().enumerate() {
        let text = format!("by hand {i}");
        assert!(post_label(&server.1, id, &text).contains(" 200 "));
        assert!(
            labels_by_cli(&path, id).contains(&text),
            "label {i} on feature {id} is not in the file"
        );
    }
    let out = common::featdict(&["stats", s(&path), "--json"]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let labeled_before = dict.features().filter(|f| !f.labels.is_empty()).count() as u64;
    let newly = [2u64, 5, 7, 11]
        .iter()
        .filter(|id| dict.get(**id).unwrap().labels.is_empty())
        .count() as u64;
    assert_eq!(
        v["statistics"]["labeled_features"].as_u64().unwrap(),
        labeled_before + newly
    );
    // And after the server is gone, every label is in the file.
    drop(server);
    let back = store::load(&path).unwrap();
    for (i, id) in [2u64, 5, 7, 11].into_iter().enumerate() {
        assert!(back
            .get(id)
            .unwrap()
            .labels
            .contains(&format!("by hand {i}")));
    }
}

/// `featdict label` rewrites the file (a new file renamed over the old) while the server has
/// written a label into it: the rewrite carries that label, other processes read exactly the
/// new file, and the server's next label lands in the new file.
#[test]
fn a_file_rewritten_while_served_keeps_every_label() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path, server) = served_dictionary(dir.path());
    assert!(post_label(&server.1, 2, "before the rewrite").contains(" 200 "));
    assert_success(&common::featdict(&[
        "label",
        s(&path),
        "--strategies",
        "token_frequency",
    ]));
    assert!(labels_by_cli(&path, 2).contains(&"before the rewrite".to_string()));
    assert!(post_label(&server.1, 7, "after the rewrite").contains(" 200 "));
    assert!(labels_by_cli(&path, 7).contains(&"after the rewrite".to_string()));
    drop(server);
    let back = store::load(&path).unwrap();
    assert!(back
        .get(2)
        .unwrap()
        .labels
        .contains(&"before the rewrite".to_string()));
    assert!(back
        .get(7)
        .unwrap()
        .labels
        .contains(&"after the rewrite".to_string()));
    // A rollback journal: no side files outlive a connection to be found under the name of
    // the next file renamed over this one.
    assert_eq!(journal_mode_of(&path), "delete");
}

/// The journal mode a fresh connection sees for `path`.
fn journal_mode_of(path: &Path) -> String {
    let r = feature_dictionary::store::fdict::FdictReader::open(path).unwrap();
    r.connection()
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap()
}

/// `--read-timeout` closes a connection that never finishes its headers, and the server
/// keeps answering others; nonsensical values are refused before anything starts.
#[test]
fn read_timeout_closes_stalled_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path, _) = served_dictionary(dir.path());
    let server = serve_with(&path, &["--read-timeout", "0.5"]);
    let mut stalled = TcpStream::connect(&server.1).unwrap();
    write!(stalled, "GET / HTTP/1.1\r\nHost: {}\r\n", server.1).unwrap();
    stalled
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    match stalled.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("still open after {:?}: {e}", started.elapsed()),
    }
    assert!(post_label(&server.1, 1, "still served").contains(" 200 "));
    for bad in ["0", "-1", "nan", "inf", "1e9", "soon"] {
        let flag = format!("--read-timeout={bad}");
        let out = common::featdict(&["serve", s(&path), &flag]);
        assert!(!out.status.success(), "--read-timeout {bad} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--read-timeout") && !err.contains("panicked"),
            "{err}"
        );
    }
    let out = common::featdict(&["serve", s(&path), "--max-connections", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-connections"));
}

/// One raw HTTP/1.1 request with `headers` (which must include Host); returns the whole
/// answer.
fn raw(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// What a hostile page can make a browser send: a cross-site form POST (CSRF) and, after
/// DNS rebinding, requests carrying its own name as Host. Both are refused and nothing is
/// written; `--allow-host` lets a name in.
#[test]
fn cross_site_posts_and_foreign_hosts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path, _) = served_dictionary(dir.path());
    let server = serve_with(&path, &["--allow-host", "tunnel.example:9999"]);
    let addr = server.1.clone();
    let port = addr.rsplit(':').next().unwrap().to_string();
    let before = labels_by_cli(&path, 3);
    let out = raw(
        &addr,
        "POST",
        "/api/features/3/labels",
        &[
            ("Host", &addr),
            ("Origin", "http://evil.example"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        "text=written-by-evil.example",
    );
    assert!(out.starts_with("HTTP/1.1 403 "), "{out}");
    assert!(
        out.contains("\"error\"") && out.contains("evil.example"),
        "{out}"
    );
    let rebound = format!("evil.example:{port}");
    let out = raw(&addr, "GET", "/api/stats", &[("Host", &rebound)], "");
    assert!(out.starts_with("HTTP/1.1 403 "), "{out}");
    let out = raw(&addr, "GET", "/", &[("Host", &rebound)], "");
    assert!(
        out.starts_with("HTTP/1.1 403 ") && out.contains("text/html"),
        "{out}"
    );
    assert_eq!(labels_by_cli(&path, 3), before);
    // Curl-like clients and the allowed name are served.
    assert!(post_label(&addr, 3, "by curl").contains(" 200 "));
    let out = raw(
        &addr,
        "GET",
        "/api/stats",
        &[("Host", "tunnel.example:9999")],
        "",
    );
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    let out = common::featdict(&["serve", s(&path), "--allow-host", "http://x/"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-host"));
}

/// A GET's status code.
fn status_of(addr: &str, path: &str) -> u16 {
    let out = raw(addr, "GET", path, &[("Host", addr)], "");
    out.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0)
}

/// The served file truncated (by a rename, as a crashed copy would leave it) and then
/// removed: 503 instead of the old file's features, each problem logged once however many
/// requests meet it, and the dictionary served again once a valid one is back.
#[test]
fn a_broken_replacement_is_reported_once_and_recovered_from() {
    let dir = tempfile::tempdir().unwrap();
    let dict = synthetic::dictionary(&Spec {
        n_features: 20,
        vocab_words: 30,
        ..Default::default()
    });
    let path = dir.path().join("d.fdict");
    store::save(&dict, &path).unwrap();
    let log = dir.path().join("serve.log");
    let server = serve_logging(&path, &[], std::fs::File::create(&log).unwrap());
    let addr = server.1.clone();
    assert_eq!(status_of(&addr, "/api/features/1"), 200);
    let bytes = std::fs::read(&path).unwrap();
    let tmp = dir.path().join("t.fdict");
    std::fs::write(&tmp, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    for _ in 0..5 {
        for p in ["/api/features/1", "/api/stats", "/"] {
            assert_eq!(status_of(&addr, p), 503, "{p}");
        }
    }
    std::fs::remove_file(&path).unwrap();
    for _ in 0..5 {
        assert_eq!(status_of(&addr, "/api/stats"), 503);
    }
    store::save(&dict, &path).unwrap();
    for p in ["/api/features/1", "/api/stats", "/"] {
        assert_eq!(status_of(&addr, p), 200, "{p}");
    }
    drop(server);
    let log = std::fs::read_to_string(&log).unwrap();
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 2, "{log}");
    assert!(
        errors[0].contains("d.fdict") && errors[0].contains("malformed"),
        "{log}"
    );
    assert!(
        errors[1].contains("d.fdict") && errors[1].contains("removed"),
        "{log}"
    );
    assert_eq!(log.matches("valid dictionary again").count(), 1, "{log}");
}

/// `featdict serve X.json` after X.json was rebuilt serves the rebuilt dictionary, not the
/// `.fdict` made from the old one, with the label written through the first server kept.
#[test]
fn a_rebuilt_json_is_served_with_the_labels_written_before() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("d.json");
    let spec = |n| Spec {
        n_features: n,
        vocab_words: 30,
        ..Default::default()
    };
    store::save(&synthetic::dictionary(&spec(20)), &json).unwrap();
    let server = serve(&json);
    assert!(post_label(&server.1, 2, "written before the rebuild").contains(" 200 "));
    drop(server);
    store::save(&synthetic::dictionary(&spec(7)), &json).unwrap();
    let server = serve(&json);
    let out = raw(&server.1, "GET", "/api/stats", &[("Host", &server.1)], "");
    let body = out.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["statistics"]["total_features"], 7, "{body}");
    let sibling = dir.path().join("d.fdict");
    assert_eq!(labels_by_cli(&sibling, 2)[0], "written before the rebuild");
}
