//! Crash safety: a writer killed with SIGKILL in the middle of writing a `.fdict` leaves the
//! previous dictionary file intact and readable.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use feature_dictionary::ingest;
use feature_dictionary::query::synthetic::{self, Spec};
use feature_dictionary::store::{self, fdict::FdictReader};

fn featdict() -> Command {
    Command::new(env!("CARGO_BIN_EXE_featdict"))
}

/// Waits until `child` has created its temporary `.NAME.tmp-PID` file next to `target`
/// (so it is writing the new dictionary), then kills it with SIGKILL. Returns whether it
/// was killed mid-write (false: it finished first).
fn kill_while_writing(mut child: Child, target: &Path) -> bool {
    let tmp: PathBuf = target.with_file_name(format!(
        ".{}.tmp-{}",
        target.file_name().unwrap().to_string_lossy(),
        child.id()
    ));
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(300) {
        if tmp.exists()
            && std::fs::metadata(&tmp)
                .map(|m| m.len() > 0)
                .unwrap_or(false)
        {
            // Let it write a little more, then kill it mid-way.
            std::thread::sleep(Duration::from_millis(30));
            let still_running = child.try_wait().unwrap().is_none();
            child.kill().unwrap(); // SIGKILL on Unix
            let status = child.wait().unwrap();
            return still_running && !status.success();
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill();
    panic!("writer never started writing {}", tmp.display());
}

fn previous_dictionary(dir: &Path) -> (PathBuf, feature_dictionary::FeatureDictionary, Vec<u8>) {
    let old = synthetic::dictionary(&Spec {
        n_features: 60,
        ..Default::default()
    });
    let target = dir.join("dict.fdict");
    store::save(&old, &target).unwrap();
    let bytes = std::fs::read(&target).unwrap();
    (target, old, bytes)
}

fn assert_intact(target: &Path, old: &feature_dictionary::FeatureDictionary, bytes: &[u8]) {
    assert_eq!(
        std::fs::read(target).unwrap(),
        bytes,
        "the previous file changed"
    );
    let r = FdictReader::open(target).unwrap();
    assert_eq!(r.statistics(), &old.statistics());
    assert_eq!(r.feature(5).unwrap().as_ref(), old.get(5));
    drop(r);
    assert_eq!(&store::load(target).unwrap(), old);
    let out = featdict()
        .arg("stats")
        .arg(target)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn killed_build_leaves_previous_dictionary_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (target, old, bytes) = previous_dictionary(dir.path());
    // Many features with examples, so writing the dictionary takes a noticeable time.
    let (seqs, len, feats) = (40, 64, 6000);
    let npy = dir.path().join("acts.npy");
    let values: Vec<f32> = (0..seqs * len * feats)
        .map(|i| {
            let (r, c) = (i / feats, i % feats);
            let h = (r as u64).wrapping_mul(0x9e37_79b9) ^ (c as u64).wrapping_mul(0x85eb_ca6b);
            match h % 7 {
                0 => ((h >> 8) % 1000) as f32 / 100.0,
                _ => 0.0,
            }
        })
        .collect();
    ingest::npy::write_f32(&npy, &[seqs * len, feats], &values).unwrap();
    let tokens: Vec<Vec<String>> = (0..seqs)
        .map(|s| {
            (0..len)
                .map(|i| format!("t{}", (s * 31 + i * 7) % 500))
                .collect()
        })
        .collect();
    let tok = dir.path().join("tokens.json");
    std::fs::write(&tok, serde_json::to_string(&tokens).unwrap()).unwrap();
    let build = || {
        let mut c = featdict();
        c.arg("build")
            .arg(&npy)
            .arg("--tokens")
            .arg(&tok)
            .arg("--out")
            .arg(&target);
        c
    };
    let child = build()
        .args(["--quiet", "--threads", "1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let killed = kill_while_writing(child, &target);
    assert!(
        killed,
        "the build finished before it could be killed; make the input larger"
    );
    assert_intact(&target, &old, &bytes);
    assert_eq!(
        temp_files(&target).len(),
        1,
        "the killed writer's temp file"
    );
    // A completed build then replaces it, and removes the dead writer's temp file.
    let ok = build().arg("--quiet").status().unwrap();
    assert!(ok.success());
    assert_eq!(
        FdictReader::open(&target)
            .unwrap()
            .statistics()
            .total_features,
        feats
    );
    assert_eq!(temp_files(&target), Vec::<String>::new());
}

/// Names of the `.NAME.tmp-PID` files (and their SQLite companions) next to `target`.
fn temp_files(target: &Path) -> Vec<String> {
    let prefix = format!(".{}.tmp-", target.file_name().unwrap().to_string_lossy());
    std::fs::read_dir(target.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

#[test]
fn killed_synthetic_writer_leaves_previous_dictionary_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (target, old, bytes) = previous_dictionary(dir.path());
    let child = featdict()
        .arg("gen-synthetic")
        .arg("--out")
        .arg(&target)
        .args(["--features", "400000"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(kill_while_writing(child, &target));
    assert_intact(&target, &old, &bytes);
}
