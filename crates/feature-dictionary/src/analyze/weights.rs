//! Minimal readers for weight tensors the analyses need (decoder directions, unembeddings):
//! one named tensor from a `.safetensors` file (or, for decoders, an `.npz` such as Gemma
//! Scope's `params.npz`), as f32, checked to be finite.
//!
//! safetensors layout: 8-byte little-endian header length, a JSON header
//! `{name: {"dtype", "shape", "data_offsets": [begin, end]}}`, then the raw little-endian
//! data (offsets relative to the end of the header).

use std::path::Path;

use crate::error::{Error, Result};

/// Why a matrix with a NaN or ±Inf is refused when read: its row's cosines and logits would
/// be NaN, and rankings skip NaN, so the feature or token would silently drop out.
pub(crate) const NONFINITE_WHY: &str = "every value of a weight matrix must be finite (a NaN row would silently drop out of every ranking)";

/// A dense row-major f32 matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// `rows × cols` values.
    pub data: Vec<f32>,
}

impl Matrix {
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// The transpose.
    pub fn transposed(&self) -> Matrix {
        let mut data = vec![0.0; self.data.len()];
        for i in 0..self.rows {
            for j in 0..self.cols {
                data[j * self.rows + i] = self.data[i * self.cols + j];
            }
        }
        Matrix {
            rows: self.cols,
            cols: self.rows,
            data,
        }
    }
}

/// Reads the 2-D tensor `name` of a safetensors file (F32, F16, BF16 or F64) as f32,
/// through the validating reader of `ingest::safetensors`; a NaN or ±Inf in it is an error
/// naming its row and column.
pub fn read_safetensors_matrix(path: &Path, name: &str) -> Result<Matrix> {
    safetensors_matrix(&crate::ingest::safetensors::SafeTensors::open(path)?, name)
}

/// Reads the 2-D tensor `name` of an SAE weight file as f32, all finite: a `.safetensors`
/// file (SAELens, sparsify), or an `.npz` (told by content: Gemma Scope's `params.npz`,
/// whose decoder is named `w_dec`, which a request for `W_dec` also finds there).
pub fn read_weight_matrix(path: &Path, name: &str) -> Result<Matrix> {
    // An `.npz` that is not a zip (empty, damaged) is reported as a bad .npz, not as a
    // bad safetensors file.
    let npz_named = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npz"));
    if !npz_named && !is_zip(path)? {
        return read_safetensors_matrix(path, name);
    }
    let mut npz = crate::sae::weights::Weights::from_npz(path)?;
    let names: &[&str] = if name == "W_dec" {
        &["W_dec", "w_dec"]
    } else {
        &[name]
    };
    let Some(shape) = npz.shape(names).map(<[u64]>::to_vec) else {
        return Err(Error::format(
            path,
            format!("no array {name:?} in this .npz; it has {}", npz.list()),
        ));
    };
    let [rows, cols] = shape[..] else {
        return Err(Error::format(
            path,
            format!("array {name:?} has shape {shape:?}; expected 2 dimensions"),
        ));
    };
    let data = npz.take(names, &[rows as usize, cols as usize])?;
    Ok(Matrix {
        rows: rows as usize,
        cols: cols as usize,
        data,
    })
}

/// Whether `path` starts as a zip archive (an `.npz`) does.
fn is_zip(path: &Path) -> Result<bool> {
    starts_with(path, b"PK\x03\x04")
}

/// Whether the file at `path` starts with the bytes `magic`.
pub(crate) fn starts_with(path: &Path, magic: &[u8]) -> Result<bool> {
    use std::io::Read;
    let mut head = Vec::with_capacity(magic.len());
    std::fs::File::open(path)
        .and_then(|f| f.take(magic.len() as u64).read_to_end(&mut head))
        .map_err(|e| Error::io(path, e))?;
    Ok(head == magic)
}

/// The 2-D tensor `name` of an opened safetensors file, as f32 (all finite).
pub fn safetensors_matrix(
    file: &crate::ingest::safetensors::SafeTensors,
    name: &str,
) -> Result<Matrix> {
    let path = file.path();
    let t = file.tensor(name)?;
    let [rows, cols] = t.shape[..] else {
        return Err(Error::format(
            path,
            format!(
                "tensor {name:?} has shape {:?}; expected 2 dimensions",
                t.shape
            ),
        ));
    };
    let data = file.to_f32(t)?;
    crate::finite::check(path, name, &t.shape, &data, NONFINITE_WHY)?;
    Ok(Matrix {
        rows: rows as usize,
        cols: cols as usize,
        data,
    })
}

/// Writes f32 tensors to a safetensors file (for fixtures and exports).
pub fn write_safetensors(path: &Path, tensors: &[(&str, &Matrix)]) -> Result<()> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, m) in tensors {
        let len = m.data.len() * 4;
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": [m.rows, m.cols], "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let mut h = serde_json::to_vec(&header).map_err(|e| Error::Invalid(e.to_string()))?;
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    crate::store::write_atomically(path, |w| {
        use std::io::Write;
        w.write_all(&(h.len() as u64).to_le_bytes())?;
        w.write_all(&h)?;
        for (_, m) in tensors {
            for v in &m.data {
                w.write_all(&v.to_le_bytes())?;
            }
        }
        Ok(())
    })
}
