//! Helpers shared by the CLI test files: run the built `featdict` and check how it ended.
// Each test file compiles this module on its own and uses only some of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `featdict` binary of this build with `args`.
pub fn featdict(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_featdict"))
        .args(args)
        .output()
        .expect("run featdict")
}

/// `featdict build ACTS --tokens TOKENS --out OUT` with `extra` options.
pub fn build(acts: &Path, tokens: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["build", s(acts), "--tokens", s(tokens), "--out", s(out)];
    args.extend_from_slice(extra);
    featdict(&args)
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The command failed cleanly: non-zero exit, no panic, an `error: ` line on stderr holding
/// every one of `must_contain`.
pub fn assert_clean_error(out: &Output, must_contain: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success; stdout: {}; stderr: {err}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(err.starts_with("error: "), "{err}");
    for m in must_contain {
        assert!(err.contains(m), "stderr lacks {m:?}: {err}");
    }
}

/// The command succeeded (stderr shown otherwise).
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes a `.npy` of `shape` and dtype `descr` from `c_order` (its elements' little-endian
/// bytes, row-major), in C order or, with `fortran`, in Fortran order (what `np.save` writes
/// for a transposed array; see `npy::write_bytes`).
pub fn write_npy(path: &Path, descr: &str, shape: &[usize], fortran: bool, c_order: &[u8]) {
    feature_dictionary::ingest::npy::write_bytes(path, descr, shape, fortran, c_order).unwrap();
}
