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

/// Writes a format 1.0 `.npy` of `shape` and dtype `descr` (e.g. `<f2`, `<f4`, `<i8`) from
/// `c_order` (its elements' little-endian bytes, row-major), in C order or, with `fortran`,
/// in Fortran order — what `np.save` writes for a transposed array: element `(i0, …, in)`
/// at flat index `i0 + d0·(i1 + d1·(…))`, laid out here from that definition alone.
pub fn write_npy(path: &Path, descr: &str, shape: &[usize], fortran: bool, c_order: &[u8]) {
    let n: usize = shape.iter().product();
    let size = c_order.len() / n.max(1);
    assert_eq!(
        n * size,
        c_order.len(),
        "{shape:?} vs {} bytes",
        c_order.len()
    );
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let order = if fortran { "True" } else { "False" };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {tuple}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((header.len() as u16).to_le_bytes());
    b.extend(header.as_bytes());
    for k in 0..n {
        let c = if fortran {
            // File element k is the array element whose first index varies fastest.
            let (mut rest, mut at) = (k, 0);
            let mut index = Vec::with_capacity(shape.len());
            for &d in shape {
                index.push(rest % d);
                rest /= d;
            }
            for (&i, &d) in index.iter().zip(shape) {
                at = at * d + i;
            }
            at
        } else {
            k
        };
        b.extend_from_slice(&c_order[c * size..(c + 1) * size]);
    }
    std::fs::write(path, b).unwrap();
}
