//! The finiteness check of weight tensors (SAE weights, decoders, (un)embeddings), and the
//! scan for non-finite values it is made of (the Python package checks its inputs with it).
//!
//! A NaN or ±Inf weight does not fail on its own: it turns every latent, cosine or logit it
//! touches into NaN, and those are then skipped or reported far from their cause (an SAE's
//! NaN encoder weight surfaced as "non-finite activations" in the residuals file). So the
//! weights are checked once when they are loaded, and the error names the file, the tensor
//! and the first bad element.

use std::path::Path;

use crate::error::{Error, Result};

/// Values checked per step: a branch-free test of a whole chunk vectorises, so the common
/// all-finite case costs one fast pass; only a chunk that holds a bad value is searched.
const CHUNK: usize = 1024;

/// Fails when `data` (tensor `tensor` of `path`, row-major of `shape`) holds a NaN or ±Inf,
/// naming the first one by its row and column (or index) and counting them all. `why` ends
/// the message: what such a value would have done.
pub(crate) fn check(
    path: &Path,
    tensor: &str,
    shape: &[u64],
    data: &[f32],
    why: &str,
) -> Result<()> {
    let Some((first, count)) = nonfinite(data, |v| v.is_finite()) else {
        return Ok(());
    };
    let value = data[first];
    let at = position(shape, first);
    let more = if count == 1 {
        "the only non-finite value".to_string()
    } else {
        format!("{count} non-finite values in all")
    };
    Err(Error::format(
        path,
        format!("tensor {tensor:?} {shape:?} holds {value} at {at} ({more}); {why}"),
    ))
}

/// The index of the first value of `data` that is not `finite` (NaN or ±Inf, of any float
/// type), and how many are not; `None` when all are. The all-finite case is one
/// vectorised pass; only chunks holding a bad value are searched and counted.
pub fn nonfinite<T>(data: &[T], finite: impl Fn(&T) -> bool + Copy) -> Option<(usize, usize)> {
    let first = data.chunks(CHUNK).enumerate().find_map(|(c, chunk)| {
        let bad = chunk.iter().fold(false, |acc, v| acc | !finite(v));
        bad.then(|| c * CHUNK + chunk.iter().position(|v| !finite(v)).expect("found"))
    })?;
    let rest = &data[first..];
    let count = rest
        .chunks(CHUNK)
        .filter(|chunk| !chunk.iter().fold(true, |all, v| all & finite(v)))
        .map(|chunk| chunk.iter().filter(|v| !finite(v)).count())
        .sum();
    Some((first, count))
}

/// "row r, column c" for a matrix, "index i" for a vector, "index [i, j, k]" otherwise.
fn position(shape: &[u64], flat: usize) -> String {
    match shape {
        [_, cols] => {
            let cols = (*cols).max(1) as usize;
            format!("row {}, column {}", flat / cols, flat % cols)
        }
        [_] | [] => format!("index {flat}"),
        _ => {
            let mut rest = flat as u64;
            let mut idx = vec![0u64; shape.len()];
            for (i, &d) in shape.iter().enumerate().rev() {
                let d = d.max(1);
                idx[i] = rest % d;
                rest /= d;
            }
            format!("index {idx:?}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_first_bad_value_by_row_and_column_and_counts_them() {
        let mut m = vec![0.5f32; 3 * 1500];
        m[2 * 1500 + 1100] = f32::NAN;
        m[2 * 1500 + 1200] = f32::INFINITY;
        let e = check(Path::new("w.safetensors"), "W_enc", &[3, 1500], &m, "why")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "w.safetensors: tensor \"W_enc\" [3, 1500] holds NaN at row 2, column 1100 (2 non-finite values in all); why"
        );
        m[2 * 1500 + 1100] = 1.0;
        let e = check(Path::new("w"), "W_enc", &[3, 1500], &m, "why")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("holds inf at row 2, column 1200 (the only non-finite value)"),
            "{e}"
        );
        m[2 * 1500 + 1200] = f32::MAX;
        assert!(check(Path::new("w"), "W_enc", &[3, 1500], &m, "why").is_ok());
    }

    #[test]
    fn vectors_and_higher_ranks_name_an_index() {
        let v = [0.0, f32::NEG_INFINITY];
        let e = check(Path::new("w"), "b_enc", &[2], &v, "why")
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds -inf at index 1 "), "{e}");
        let mut t = vec![0.0f32; 2 * 3 * 4];
        t[12 + 4 + 3] = f32::NAN;
        let e = check(Path::new("w"), "x", &[2, 3, 4], &t, "why")
            .unwrap_err()
            .to_string();
        assert!(e.contains("at index [1, 1, 3]"), "{e}");
    }
}
