//! CLI: import, export, search and build --out X.fdict on small dictionaries.

use std::process::Command;

use feature_dictionary::query::synthetic::{self, Spec};
use feature_dictionary::store;

fn featdict(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_featdict"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn import_export_search_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    // More than the 1,024 features a .fdict is exported as JSON at a time.
    let dict = synthetic::dictionary(&Spec {
        n_features: 2100,
        ..Default::default()
    });
    let json = dir.path().join("d.json");
    store::save(&dict, &json).unwrap();
    let fd = dir.path().join("d.fdict");
    imported(&json, &fd);
    let back = dir.path().join("back.json");
    let out = featdict(&[
        "export".as_ref(),
        fd.as_os_str(),
        "--format".as_ref(),
        "json".as_ref(),
        "--out".as_ref(),
        back.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&json).unwrap(), std::fs::read(&back).unwrap());
    let np = dir.path().join("np.json");
    let out = featdict(&[
        "export".as_ref(),
        fd.as_os_str(),
        "--format".as_ref(),
        "neuronpedia".as_ref(),
        "--out".as_ref(),
        np.as_os_str(),
        "--json".as_ref(),
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&np).unwrap()).unwrap();
    assert_eq!(v["features"].as_array().unwrap().len(), 2100);
    // Streamed from the .fdict and built in memory from the .json: the same bytes.
    let np2 = dir.path().join("np2.json");
    let out = featdict(&[
        "export".as_ref(),
        json.as_os_str(),
        "--format".as_ref(),
        "neuronpedia".as_ref(),
        "--out".as_ref(),
        np2.as_os_str(),
    ]);
    assert!(out.status.success());
    assert_eq!(std::fs::read(&np).unwrap(), std::fs::read(&np2).unwrap());
    // stats on the .fdict (precomputed) prints exactly what it prints for the JSON.
    for extra in [None, Some("--json")] {
        let run = |d: &std::path::Path| {
            let mut args: Vec<&std::ffi::OsStr> = vec!["stats".as_ref(), d.as_os_str()];
            args.extend(extra.map(std::ffi::OsStr::new));
            let out = featdict(&args);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        assert_eq!(
            String::from_utf8(run(&json)).unwrap(),
            String::from_utf8(run(&fd)).unwrap()
        );
    }
    // show on the .fdict reads one row; a missing id is a clear error.
    let out = featdict(&["show".as_ref(), fd.as_os_str(), "99999".as_ref()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("feature 99999 is not in"));
    // Search gives the same answer on both formats.
    for d in [&json, &fd] {
        let out = featdict(&[
            "search".as_ref(),
            d.as_os_str(),
            "--label".as_ref(),
            "<SCRIPT>".as_ref(),
            "--json".as_ref(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["kind"], "label");
        assert_eq!(v["hits"][0]["id"], 1);
    }
    let out = featdict(&[
        "search".as_ref(),
        fd.as_os_str(),
        "--pattern".as_ref(),
        "(".as_ref(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid regex"));
    let out = featdict(&["search".as_ref(), fd.as_os_str()]);
    assert!(!out.status.success());
    // show/stats read the .fdict too.
    let out = featdict(&[
        "show".as_ref(),
        fd.as_os_str(),
        "1".as_ref(),
        "--json".as_ref(),
    ]);
    assert!(out.status.success());
    let f: feature_dictionary::model::Feature = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(&f, dict.get(1).unwrap());
    let out = import(&json, &dir.path().join("x.json"));
    assert!(!out.status.success());
}

/// `featdict import JSON --out OUT`.
fn import(json: &std::path::Path, out: &std::path::Path) -> std::process::Output {
    featdict(&[
        "import".as_ref(),
        json.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ])
}

/// [`import`], which must succeed.
fn imported(json: &std::path::Path, out: &std::path::Path) {
    let run = import(json, out);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// The ids of `featdict top --json` output, in order.
fn ids_of(top: &serde_json::Value) -> Vec<u64> {
    top.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect()
}

/// `featdict top PATH --by BY -n N [--type T] --json`, parsed.
fn top(path: &std::path::Path, by: &str, n: &str, only: Option<&str>) -> serde_json::Value {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "top".as_ref(),
        path.as_os_str(),
        "--by".as_ref(),
        by.as_ref(),
        "-n".as_ref(),
        n.as_ref(),
        "--json".as_ref(),
    ];
    if let Some(t) = only {
        args.push("--type".as_ref());
        args.push(t.as_ref());
    }
    let out = featdict(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn top_on_fdict_ranks_as_on_json_ties_included() {
    let dir = tempfile::tempdir().unwrap();
    let mut dict = synthetic::dictionary(&Spec {
        n_features: 300,
        ..Default::default()
    });
    // Ties on every key, at the top and across the cut, so the id tie-break decides.
    for id in [7u64, 3, 250, 41, 120] {
        let f = dict.feature_set.features.get_mut(&id).unwrap();
        f.activation_count = 1_000_000;
        f.max_activation = 1e6;
        f.activation_frequency = 0.99;
    }
    let json = dir.path().join("d.json");
    let fd = dir.path().join("d.fdict");
    store::save(&dict, &json).unwrap();
    store::save(&dict, &fd).unwrap();
    for by in ["activation_count", "max_activation", "frequency"] {
        for n in ["3", "40", "1000"] {
            let (a, b) = (top(&json, by, n, None), top(&fd, by, n, None));
            assert_eq!(a, b, "--by {by} -n {n}");
            let ids = ids_of(&a);
            assert_eq!(ids.len(), n.parse::<usize>().unwrap().min(300));
            assert_eq!(&ids[..3], &[3, 7, 41], "--by {by}");
        }
        // Of one type only: the same ranking, filtered.
        for t in ["sparse", "dead"] {
            let (a, b) = (
                top(&json, by, "1000", Some(t)),
                top(&fd, by, "1000", Some(t)),
            );
            assert_eq!(a, b, "--by {by} --type {t}");
            let ids = ids_of(&a);
            let expected: Vec<u64> = dict
                .top_features(by.parse().unwrap(), None, 1000)
                .into_iter()
                .filter(|f| f.feature_type.as_str() == t)
                .map(|f| f.id)
                .collect();
            assert!(!expected.is_empty(), "no {t} feature");
            assert_eq!(ids, expected, "--by {by} --type {t}");
        }
        // `all`, as the server's type=all, is every type (it was refused).
        for d in [&json, &fd] {
            assert_eq!(
                top(d, by, "1000", Some("all")),
                top(d, by, "1000", None),
                "{by}"
            );
        }
    }
    let bad = featdict(&[
        "top".as_ref(),
        fd.as_os_str(),
        "--type".as_ref(),
        "rare".as_ref(),
    ]);
    assert!(!bad.status.success());
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(
        said.contains("unknown feature type \"rare\": expected all or one of "),
        "{said}"
    );
}

/// `featdict search` on a file of the original library (no per-token counts; planted counts
/// in the fixture's README), as JSON and converted to `.fdict`: token and pattern searches
/// find features by their stored examples' tokens, ranked by how many fire on the token
/// (ties to the smaller id), say so in a note and in `basis`, and refuse precision.
#[test]
fn search_in_an_original_library_file_uses_the_stored_examples() {
    let dir = tempfile::tempdir().unwrap();
    let json = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../feature-dictionary/tests/fixtures/original/no_token_counts.json");
    let fd = dir.path().join("orig.fdict");
    imported(&json, &fd);
    let search = |d: &std::path::Path, args: &[&str]| {
        let mut all: Vec<&std::ffi::OsStr> = vec!["search".as_ref(), d.as_os_str()];
        all.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
        featdict(&all)
    };
    let json_of = |out: &std::process::Output| -> serde_json::Value {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let hits = |v: &serde_json::Value| -> Vec<(u64, f64, String)> {
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
    let note = "note: this dictionary holds no per-token counts (as files of the original library): token and regex searches look only at the firing tokens of its stored examples";
    for d in [json.as_path(), fd.as_path()] {
        let v = json_of(&search(d, &["--token", " the", "--json"]));
        assert_eq!(
            (&v["kind"], &v["basis"], &v["by"]),
            (&"token".into(), &"examples".into(), &"firings".into())
        );
        let want: Vec<_> = [(3, 2.0), (8, 2.0), (2, 1.0), (5, 1.0)]
            .map(|(id, s)| (id, s, " the".to_string()))
            .to_vec();
        assert_eq!(hits(&v), want, "{}", d.display());
        assert_eq!(v["hits"][0]["feature"]["labels"][0], "token:the");
        let v = json_of(&search(
            d,
            &["--pattern", "^ (dog|the)$", "--by", "firings", "--json"],
        ));
        assert_eq!(
            (&v["basis"], &v["by"]),
            (&"examples".into(), &"firings".into())
        );
        let want: Vec<_> = [
            (5, 3.0, " dog"),
            (3, 2.0, " the"),
            (8, 2.0, " dog"),
            (2, 1.0, " the"),
        ]
        .map(|(id, s, m)| (id, s, m.to_string()))
        .to_vec();
        assert_eq!(hits(&v), want, "{}", d.display());
        // The text output: the note first, then the ranking (the count column is the
        // feature's firings over all tokens, as stored).
        let out = search(d, &["--token", " the", "-n", "3"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with(note), "{text}");
        // A fourth hit exists: said after the three shown.
        assert_eq!(
            lines.last(),
            Some(&"(more hits follow: raise --limit)"),
            "{text}"
        );
        let rows: Vec<Vec<&str>> = lines[2..lines.len() - 1]
            .iter()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            [
                // Counts of examples, printed as counts.
                vec!["3", "2", "12", "\"", "the\"", "token:the"],
                vec!["8", "2", "7", "\"", "the\""],
                vec!["2", "1", "9", "\"", "the\"", "token:the"],
            ],
            "{text}"
        );
        // Nothing found says why it may have missed: tokens are exact, and only the stored
        // examples were looked at.
        let out = search(d, &["--token", "the"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.lines().nth(1), Some("no match"), "{text}");
        assert!(text.starts_with(note), "{text}");
        // ...and that the token with its leading space has hits.
        assert!(
            err.contains(r#"no feature fired on "the", but some did on " the""#),
            "{err}"
        );
        // Precision needs corpus occurrences: refused, naming the option.
        let out = search(d, &["--token", " the", "--by", "precision"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.starts_with("error: --by precision: a ranking by precision needs"),
            "{err}"
        );
        // A label search has no token basis.
        let v = json_of(&search(d, &["--label", "token:", "--json"]));
        assert!(v.get("basis").is_none() && v.get("by").is_none(), "{v}");
        assert_eq!(v["more"], false, "{v}");
        assert_eq!(hits(&v).iter().map(|h| h.0).collect::<Vec<_>>(), [5, 3, 2]);
        let v = json_of(&search(d, &["--label", "token:", "-n", "2", "--json"]));
        assert_eq!(v["more"], true, "{v}");
        assert_eq!(hits(&v).iter().map(|h| h.0).collect::<Vec<_>>(), [5, 3]);
    }
}

/// A dictionary with per-token counts is searched by them as before: no note, and the basis
/// and the default ranking reported as `top_tokens` and `precision`.
#[test]
fn search_with_per_token_counts_reports_top_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        n_features: 40,
        ..Default::default()
    };
    let dict = synthetic::dictionary(&spec);
    let fd = dir.path().join("d.fdict");
    store::save(&dict, &fd).unwrap();
    let token = dict.get(0).unwrap().metadata.top_tokens[0].token.clone();
    let args = |json: bool| {
        let mut a: Vec<&std::ffi::OsStr> = vec![
            "search".as_ref(),
            fd.as_os_str(),
            "--token".as_ref(),
            token.as_ref(),
        ];
        if json {
            a.push("--json".as_ref());
        }
        featdict(&a)
    };
    let v: serde_json::Value = serde_json::from_slice(&args(true).stdout).unwrap();
    assert_eq!(
        (&v["basis"], &v["by"]),
        (&"top_tokens".into(), &"precision".into())
    );
    assert!(
        v["hits"].as_array().unwrap().iter().any(|h| h["id"] == 0),
        "{v}"
    );
    let text = String::from_utf8(args(false).stdout).unwrap();
    assert!(text.starts_with("      id       score"), "{text}");
    assert!(!text.contains("note:"), "{text}");
}

/// A dictionary from a pipe (`cat d.json | featdict stats /dev/stdin`): the look at its
/// first bytes for the SQLite magic consumed them, and the JSON reader saw the rest ("found
/// a boolean"). It reads as the file does; a `.fdict` piped in is refused by name.
#[cfg(unix)]
#[test]
fn dictionaries_can_come_from_a_pipe() {
    use std::io::Write;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let dict = synthetic::dictionary(&Spec {
        n_features: 12,
        ..Default::default()
    });
    let json = dir.path().join("d.json");
    store::save(&dict, &json).unwrap();
    let fd = dir.path().join("d.fdict");
    store::save(&dict, &fd).unwrap();
    let piped = |file: &std::path::Path, args: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_featdict"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let bytes = std::fs::read(file).unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // The reader may stop early on an error: a closed pipe is not this test's failure.
        let _ = stdin.write_all(&bytes);
        drop(stdin);
        child.wait_with_output().unwrap()
    };
    for command in [
        &["stats", "/dev/stdin", "--json"][..],
        &["show", "/dev/stdin", "3", "--json"],
        &["top", "/dev/stdin", "-n", "3", "--json"],
        &["compare", "/dev/stdin", "3", "5", "--json"],
        &["similar", "/dev/stdin", "3", "--json"],
        // Read twice (the feature, then its partners) before: a pipe gives its bytes once.
        &["correlated", "/dev/stdin", "3", "--json"],
    ] {
        let from_pipe = piped(&json, command);
        let mut from_file: Vec<&std::ffi::OsStr> = command.iter().map(|a| a.as_ref()).collect();
        from_file[1] = json.as_os_str();
        let from_file = featdict(&from_file);
        assert!(
            from_file.status.success() || ["correlated", "similar"].contains(&command[0]),
            "{command:?}: {}",
            String::from_utf8_lossy(&from_file.stderr)
        );
        assert_eq!(from_pipe.status, from_file.status, "{command:?}");
        assert_eq!(from_pipe.stdout, from_file.stdout, "{command:?}");
        let err = |o: &std::process::Output| {
            String::from_utf8_lossy(&o.stderr)
                .replace("/dev/stdin", "DICT")
                .replace(json.to_str().unwrap(), "DICT")
        };
        assert_eq!(err(&from_pipe), err(&from_file), "{command:?}");
    }
    let out = piped(&fd, &["stats", "/dev/stdin"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("/dev/stdin")
            && err.contains("SQLite needs a regular file"),
        "{err}"
    );
}

/// `compare`, `correlated` and `similar` read only the features they need from a `.fdict`
/// (they loaded all of it: seconds and gigabytes on a million features), and answer exactly
/// as from the JSON file, errors included.
#[test]
fn feature_commands_on_fdict_answer_as_on_json() {
    let dir = tempfile::tempdir().unwrap();
    let dict = synthetic::dictionary(&Spec {
        n_features: 120,
        ..Default::default()
    });
    let json = dir.path().join("d.json");
    let fd = dir.path().join("d.fdict");
    store::save(&dict, &json).unwrap();
    store::save(&dict, &fd).unwrap();
    let run = |path: &std::path::Path, args: &[&str]| {
        let mut all: Vec<&std::ffi::OsStr> = vec![args[0].as_ref(), path.as_os_str()];
        all.extend(args[1..].iter().map(std::ffi::OsStr::new));
        let out = featdict(&all);
        let err = String::from_utf8_lossy(&out.stderr).replace(path.to_str().unwrap(), "DICT");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            err,
        )
    };
    let mut answered = 0;
    for args in [
        &["compare", "3", "17", "--json"][..],
        &["compare", "3", "17"],
        &["compare", "5", "5"],
        &["compare", "3", "500"],
        &["similar", "3", "--json"],
        &["similar", "40", "-n", "25"],
        &["similar", "500"],
        &["correlated", "3", "--json"],
        &["correlated", "500"],
    ] {
        let (a, b) = (run(&json, args), run(&fd, args));
        assert_eq!(a, b, "{args:?}");
        answered += (a.0 == Some(0) && !a.1.is_empty()) as usize;
    }
    assert!(answered >= 5, "{answered}");
}

/// A `.fdict` whose statistics count more features than it holds (edited or damaged): the
/// JSON export stops with an error at the first empty chunk instead of running one empty
/// query per 1,024 counted features (2^40 of them here), and leaves no output.
#[test]
fn exporting_a_fdict_that_counts_more_features_than_it_holds_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let dict = synthetic::dictionary(&Spec {
        n_features: 30,
        vocab_words: 20,
        ..Default::default()
    });
    let fd = dir.path().join("d.fdict");
    store::save(&dict, &fd).unwrap();
    {
        let w = feature_dictionary::store::fdict::FdictReader::open_rw(&fd).unwrap();
        w.connection()
            .execute(
                "UPDATE meta SET value = json_set(value, '$.total_features', 1099511627776)
                 WHERE key = 'statistics'",
                [],
            )
            .unwrap();
    }
    let out = dir.path().join("out.json");
    let started = std::time::Instant::now();
    let res = featdict(&[
        "export".as_ref(),
        fd.as_os_str(),
        "--format".as_ref(),
        "json".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success(), "{err}");
    assert!(
        err.contains("holds fewer features than its statistics count"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    assert!(!out.exists());
}

/// The Neuronpedia batch is named by the dictionary unless `--model-id`, `--sae-set` and
/// `--layer` say otherwise; a name left empty is warned about (it was written empty, as if
/// it were one), and the flags are refused with `--format json`.
#[test]
fn neuronpedia_batch_names_can_be_given_and_empty_ones_are_said() {
    let dir = tempfile::tempdir().unwrap();
    let dict = synthetic::dictionary(&Spec {
        n_features: 12,
        vocab_words: 20,
        ..Default::default()
    });
    let json = dir.path().join("d.json");
    store::save(&dict, &json).unwrap();
    let np = dir.path().join("np.json");
    let export = |extra: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "export".as_ref(),
            json.as_os_str(),
            "--format".as_ref(),
            "neuronpedia".as_ref(),
            "--out".as_ref(),
            np.as_os_str(),
        ];
        args.extend(extra.iter().map(|s| std::ffi::OsStr::new(*s)));
        featdict(&args)
    };
    let out = export(&[]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&np).unwrap()).unwrap();
    for (key, flag) in [("model_id", "--model-id"), ("sae_set", "--sae-set")] {
        let named = !v[key].as_str().unwrap().is_empty();
        assert_eq!(
            err.contains(&format!("the batch's {key} is empty (pass {flag})")),
            !named,
            "{key}: {err}"
        );
    }
    let out = export(&[
        "--model-id",
        "gpt2-small",
        "--sae-set",
        "res-jb",
        "--layer",
        "8",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&np).unwrap()).unwrap();
    assert_eq!(
        (
            v["model_id"].as_str(),
            v["sae_set"].as_str(),
            v["layer"].as_i64()
        ),
        (Some("gpt2-small"), Some("res-jb"), Some(8))
    );
    assert_eq!(v["features"].as_array().unwrap().len(), 12);
    let out = featdict(&[
        "export".as_ref(),
        json.as_os_str(),
        "--format".as_ref(),
        "json".as_ref(),
        "--out".as_ref(),
        dir.path().join("x.json").as_os_str(),
        "--layer".as_ref(),
        "3".as_ref(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("go with --format neuronpedia"));
}
