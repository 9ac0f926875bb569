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
    let dict = synthetic::dictionary(&Spec {
        n_features: 80,
        ..Default::default()
    });
    let json = dir.path().join("d.json");
    store::save(&dict, &json).unwrap();
    let fd = dir.path().join("d.fdict");
    let out = featdict(&[
        "import".as_ref(),
        json.as_os_str(),
        "--out".as_ref(),
        fd.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    assert_eq!(v.as_array().unwrap().len(), 80);
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
    let out = featdict(&["show".as_ref(), fd.as_os_str(), "999".as_ref()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("feature 999 is not in"));
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
    let out = featdict(&[
        "import".as_ref(),
        json.as_os_str(),
        "--out".as_ref(),
        dir.path().join("x.json").as_os_str(),
    ]);
    assert!(!out.status.success());
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
