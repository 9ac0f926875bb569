//! Minimal readers for weight tensors the analyses need (decoder directions, unembeddings):
//! one named tensor from a `.safetensors` file, as f32.
//!
//! safetensors layout: 8-byte little-endian header length, a JSON header
//! `{name: {"dtype", "shape", "data_offsets": [begin, end]}}`, then the raw little-endian
//! data (offsets relative to the end of the header).

use std::path::Path;

use crate::error::{Error, Result};

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

/// Reads the 2-D tensor `name` of a safetensors file (F32, F16, BF16 or F64) as f32.
pub fn read_safetensors_matrix(path: &Path, name: &str) -> Result<Matrix> {
    let map = crate::ingest::map_file(path)?;
    if map.len() < 8 {
        return Err(Error::format(path, "too short for a safetensors header"));
    }
    let n = u64::from_le_bytes(map[..8].try_into().expect("8 bytes")) as usize;
    if n > map.len() - 8 {
        return Err(Error::format(
            path,
            format!("header length {n} exceeds the file size {}", map.len()),
        ));
    }
    let header: serde_json::Value = serde_json::from_slice(&map[8..8 + n])
        .map_err(|e| Error::format(path, format!("safetensors header is not valid JSON: {e}")))?;
    let names: Vec<&str> = header
        .as_object()
        .map(|o| {
            o.keys()
                .map(|k| k.as_str())
                .filter(|k| *k != "__metadata__")
                .collect()
        })
        .unwrap_or_default();
    let t = header.get(name).ok_or_else(|| {
        Error::format(
            path,
            format!("no tensor named {name:?}; the file holds {names:?}"),
        )
    })?;
    let dtype = t["dtype"].as_str().unwrap_or("");
    let shape: Vec<usize> = t["shape"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_u64())
                .map(|v| v as usize)
                .collect()
        })
        .unwrap_or_default();
    if shape.len() != 2 {
        return Err(Error::format(
            path,
            format!("tensor {name:?} has shape {shape:?}; expected 2 dimensions"),
        ));
    }
    let offs: Vec<usize> = t["data_offsets"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_u64())
                .map(|v| v as usize)
                .collect()
        })
        .unwrap_or_default();
    let size = match dtype {
        "F32" => 4,
        "F16" | "BF16" => 2,
        "F64" => 8,
        other => {
            return Err(Error::format(
                path,
                format!("tensor {name:?} has dtype {other:?}; expected F32, F16, BF16 or F64"),
            ))
        }
    };
    let count = shape[0] * shape[1];
    let base = 8 + n;
    if offs.len() != 2
        || offs[1] < offs[0]
        || offs[1] - offs[0] != count * size
        || base + offs[1] > map.len()
    {
        return Err(Error::format(
            path,
            format!(
                "tensor {name:?}: data_offsets {offs:?} do not hold {count} {dtype} values inside the file"
            ),
        ));
    }
    let bytes = &map[base + offs[0]..base + offs[1]];
    let data: Vec<f32> = match dtype {
        "F32" => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
            .collect(),
        "F16" => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        "BF16" => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8")) as f32)
            .collect(),
    };
    Ok(Matrix {
        rows: shape[0],
        cols: shape[1],
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
