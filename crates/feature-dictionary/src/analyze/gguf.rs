//! Minimal GGUF reader: the key/value header (for the tokenizer's token list) and one
//! tensor, dequantised to f32 (F32, F16, Q8_0, Q4_0, Q4_1).
//!
//! Layout (v2/v3, little-endian): magic `GGUF`, version u32, tensor count u64, kv count u64,
//! kv pairs (string key, u32 type, value), tensor infos (name, n_dims u32, dims u64 × n,
//! type u32, offset u64), padding to `general.alignment` (default 32), tensor data.
//! `dims[0]` is the fastest-varying axis, so `token_embd.weight` with dims `[d, V]` is a
//! row-major `[V, d]` matrix.

use std::path::Path;

use super::weights::Matrix;
use crate::error::{Error, Result};

/// A parsed GGUF header over a memory-mapped file.
pub struct Gguf {
    path: std::path::PathBuf,
    map: memmap2::Mmap,
    /// Token strings of `tokenizer.ggml.tokens`, if present.
    pub tokens: Option<Vec<String>>,
    tensors: Vec<TensorInfo>,
    data_start: usize,
}

#[derive(Debug, Clone)]
struct TensorInfo {
    name: String,
    dims: Vec<u64>,
    kind: u32,
    offset: u64,
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    path: &'a Path,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        // `n` comes from the file: compare without adding, which could overflow.
        if n > self.b.len() - self.at {
            return Err(Error::format(
                self.path,
                format!(
                    "GGUF header truncated: needed {n} bytes at offset {}, file has {}",
                    self.at,
                    self.b.len()
                ),
            ));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn string(&mut self) -> Result<String> {
        let n = usize::try_from(self.u64()?).unwrap_or(usize::MAX);
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
    /// A count read from the file, refused when even `min_bytes` per item could not fit
    /// in the bytes left (so a lying count can neither allocate nor loop for long).
    fn count(&mut self, what: &str, min_bytes: usize) -> Result<usize> {
        let at = self.at;
        let n = self.u64()?;
        let left = (self.b.len() - self.at) as u64;
        if n.saturating_mul(min_bytes.max(1) as u64) > left {
            return Err(Error::format(
                self.path,
                format!(
                    "GGUF header: {what} at offset {at} is {n}, more than the {left} bytes left in the file can hold"
                ),
            ));
        }
        Ok(n as usize)
    }
    /// Skips (or, for strings, returns) a value of GGUF type `t`.
    fn value(&mut self, t: u32) -> Result<Option<String>> {
        self.value_nested(t, 0)
    }
    fn value_nested(&mut self, t: u32, depth: usize) -> Result<Option<String>> {
        let size = match t {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            8 => return self.string().map(Some),
            9 => {
                // Real files nest arrays once at most; recursion on a file's say-so must end.
                if depth >= MAX_ARRAY_NESTING {
                    return Err(Error::format(
                        self.path,
                        format!(
                            "GGUF header: arrays nested more than {MAX_ARRAY_NESTING} deep at offset {}",
                            self.at
                        ),
                    ));
                }
                let inner = self.u32()?;
                let n = self.count("an array length", 1)?;
                for _ in 0..n {
                    self.value_nested(inner, depth + 1)?;
                }
                return Ok(None);
            }
            other => {
                return Err(Error::format(
                    self.path,
                    format!("unknown GGUF value type {other} at offset {}", self.at),
                ))
            }
        };
        self.take(size)?;
        Ok(None)
    }
}

/// Dimensions a GGML tensor may have (`GGML_MAX_DIMS`).
const MAX_TENSOR_DIMS: usize = 4;

/// Deepest nesting of array values accepted in a header.
const MAX_ARRAY_NESTING: usize = 16;

impl Gguf {
    /// Parses the header of `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let map = crate::ingest::map_file(path)?;
        let mut r = Reader {
            b: &map,
            at: 0,
            path,
        };
        if r.take(4)? != b"GGUF" {
            return Err(Error::format(
                path,
                "not a GGUF file (magic is not \"GGUF\")",
            ));
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(Error::format(
                path,
                format!("GGUF version {version}; expected 2 or 3"),
            ));
        }
        // A key/value pair takes at least 12 bytes (an empty key, its type, a one-byte
        // value), a tensor info at least 24 (an empty name, no dims, type, offset).
        let n_tensors = r.count("the tensor count", 24)?;
        let n_kv = r.count("the key/value count", 12)?;
        let mut tokens = None;
        let mut alignment = 32u64;
        for _ in 0..n_kv {
            let key = r.string()?;
            let t = r.u32()?;
            if key == "tokenizer.ggml.tokens" && t == 9 {
                let inner = r.u32()?;
                let n = r.count("the token list's length", 1)?;
                let mut v = Vec::with_capacity(n.min(1 << 22));
                for _ in 0..n {
                    match r.value(inner)? {
                        Some(s) => v.push(s),
                        None => v.push(String::new()),
                    }
                }
                tokens = Some(v);
            } else if key == "general.alignment" && t == 4 {
                alignment = r.u32()? as u64;
            } else {
                r.value(t)?;
            }
        }
        let mut tensors = Vec::with_capacity(n_tensors.min(1 << 16));
        for _ in 0..n_tensors {
            let name = r.string()?;
            let at = r.at;
            let nd = r.u32()? as usize;
            if nd > MAX_TENSOR_DIMS {
                return Err(Error::format(
                    path,
                    format!(
                        "GGUF header: tensor {name:?} has {nd} dimensions (offset {at}); GGML tensors have at most {MAX_TENSOR_DIMS}"
                    ),
                ));
            }
            let mut dims = Vec::with_capacity(nd);
            for _ in 0..nd {
                dims.push(r.u64()?);
            }
            let kind = r.u32()?;
            let offset = r.u64()?;
            tensors.push(TensorInfo {
                name,
                dims,
                kind,
                offset,
            });
        }
        let a = alignment.max(1) as usize;
        let data_start = r.at.div_ceil(a) * a;
        Ok(Self {
            path: path.to_path_buf(),
            map,
            tokens,
            tensors,
            data_start,
        })
    }

    /// Names of the tensors.
    pub fn tensor_names(&self) -> Vec<&str> {
        self.tensors.iter().map(|t| t.name.as_str()).collect()
    }

    /// Tensor `name` as a row-major `[dims[1], dims[0]]` f32 matrix; a NaN or ±Inf in it
    /// (after dequantisation) is an error naming its row and column.
    pub fn matrix(&self, name: &str) -> Result<Matrix> {
        let t = self
            .tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| {
                Error::format(
                    &self.path,
                    format!(
                        "no tensor named {name:?}; the file holds {:?}",
                        self.tensor_names()
                    ),
                )
            })?;
        if t.dims.len() != 2 {
            return Err(Error::format(
                &self.path,
                format!("tensor {name:?} has dims {:?}; expected 2", t.dims),
            ));
        }
        let (cols, rows) = (t.dims[0], t.dims[1]);
        // The dims come from the file: a product that overflows cannot fit in it either.
        let count = rows
            .checked_mul(cols)
            .and_then(|c| usize::try_from(c).ok())
            .ok_or_else(|| {
                Error::format(
                    &self.path,
                    format!(
                        "tensor {name:?} has dims {:?}: more values than the file can hold",
                        t.dims
                    ),
                )
            })?;
        let (cols, rows) = (cols as usize, rows as usize);
        // (bytes per block, values per block)
        let (bb, bv) = match t.kind {
            0 => (4, 1),
            1 => (2, 1),
            2 => (18, 32),
            3 => (20, 32),
            8 => (34, 32),
            other => {
                return Err(Error::format(
                    &self.path,
                    format!("tensor {name:?} has GGML type {other}; supported: F32 (0), F16 (1), Q4_0 (2), Q4_1 (3), Q8_0 (8)"),
                ))
            }
        };
        if count % bv != 0 {
            return Err(Error::format(
                &self.path,
                format!(
                    "tensor {name:?}: {count} values is not a whole number of {bv}-value blocks"
                ),
            ));
        }
        let len = (count / bv).checked_mul(bb);
        let start = usize::try_from(t.offset)
            .ok()
            .and_then(|o| o.checked_add(self.data_start));
        let (Some(start), Some(len)) = (start, len) else {
            return Err(Error::format(
                &self.path,
                format!(
                    "tensor {name:?}: offset {} and dims {:?} lie outside the file",
                    t.offset, t.dims
                ),
            ));
        };
        if start > self.map.len() || len > self.map.len() - start {
            return Err(Error::format(
                &self.path,
                format!(
                    "tensor {name:?} data ({len} bytes at {start}) runs past the end of the file"
                ),
            ));
        }
        let bytes = &self.map[start..start + len];
        let f16 = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f32();
        let mut data = Vec::with_capacity(count);
        match t.kind {
            0 => data.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4"))),
            ),
            1 => data.extend(bytes.chunks_exact(2).map(f16)),
            8 => {
                for b in bytes.chunks_exact(34) {
                    let d = f16(&b[..2]);
                    data.extend(b[2..].iter().map(|&q| d * (q as i8) as f32));
                }
            }
            2 => {
                for b in bytes.chunks_exact(18) {
                    let d = f16(&b[..2]);
                    let q = &b[2..];
                    data.extend(q.iter().map(|&x| d * ((x & 0x0f) as f32 - 8.0)));
                    data.extend(q.iter().map(|&x| d * ((x >> 4) as f32 - 8.0)));
                }
            }
            _ => {
                for b in bytes.chunks_exact(20) {
                    let (d, m) = (f16(&b[..2]), f16(&b[2..4]));
                    let q = &b[4..];
                    data.extend(q.iter().map(|&x| d * (x & 0x0f) as f32 + m));
                    data.extend(q.iter().map(|&x| d * (x >> 4) as f32 + m));
                }
            }
        }
        // Quantised blocks scale by an f16 factor, which can itself be NaN or Inf.
        crate::finite::check(
            &self.path,
            name,
            &[rows as u64, cols as u64],
            &data,
            super::weights::NONFINITE_WHY,
        )?;
        Ok(Matrix { rows, cols, data })
    }
}
