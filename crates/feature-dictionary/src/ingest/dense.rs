//! Dense activation matrices (memory-mapped) paired with token sequences.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, UncheckedAdvice};

use super::{ActivationBatch, ActivationSource, BatchPlanner, BatchValues, TokenSequences, Vocab};
use crate::error::{Error, Result};

/// Element type of a dense matrix on disk (always little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseDtype {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    BF16,
    /// IEEE binary64.
    F64,
}

impl DenseDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DenseDtype::F32 => 4,
            DenseDtype::F16 | DenseDtype::BF16 => 2,
            DenseDtype::F64 => 8,
        }
    }

    /// Name for messages.
    pub fn name(self) -> &'static str {
        match self {
            DenseDtype::F32 => "float32",
            DenseDtype::F16 => "float16",
            DenseDtype::BF16 => "bfloat16",
            DenseDtype::F64 => "float64",
        }
    }
}

/// Maps a whole file read-only, with errors that say what is wrong with the path.
pub fn map_file(path: &Path) -> Result<Mmap> {
    map_file_expecting(path, "a non-empty input file")
}

/// Like [`map_file`], saying in its errors what the file should have held (`expected`,
/// e.g. "a NumPy .npy array"), so an empty file or a directory reads as what it is
/// instead of what it should be.
pub fn map_file_expecting(path: &Path, expected: &str) -> Result<Mmap> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::format(
            path,
            format!("is a directory; expected a file holding {expected}"),
        ));
    }
    if meta.len() == 0 {
        return Err(Error::format(
            path,
            format!("file is empty (0 bytes); expected {expected}"),
        ));
    }
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only; like every reader of memory-mapped files we rely on the
    // file not being truncated while we read it.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    // No madvise: on a page-cached file, mapping each batch up front (POPULATE_READ), or
    // hinting WILLNEED/SEQUENTIAL, measured slower than the page faults the scanning threads
    // take in parallel (BENCHMARKS.md, core accumulation).
    Ok(map)
}

/// A validated dense matrix `[rows, features]` inside a memory-mapped file.
#[derive(Debug)]
pub struct DenseMatrix {
    path: PathBuf,
    map: Mmap,
    offset: usize,
    dtype: DenseDtype,
    n_rows: u64,
    n_features: usize,
    /// `(sequences, seq_len)` when the array was 3-D.
    sequences: Option<(u64, u64)>,
}

impl DenseMatrix {
    /// Checks `shape` × dtype against the bytes after `offset` and wraps the map.
    pub fn new(
        path: &Path,
        map: Mmap,
        offset: usize,
        dtype: DenseDtype,
        shape: &[u64],
    ) -> Result<Self> {
        let extent = map.len() - offset.min(map.len());
        Self::with_extent(path, map, offset, extent, dtype, shape)
    }

    /// Like [`DenseMatrix::new`] for an array that occupies exactly `extent` bytes from
    /// `offset` (other data may follow it, as in a `.safetensors` file with several tensors).
    pub fn with_extent(
        path: &Path,
        map: Mmap,
        offset: usize,
        extent: usize,
        dtype: DenseDtype,
        shape: &[u64],
    ) -> Result<Self> {
        let (n_rows, n_features, sequences) = match *shape {
            [t, f] => (t, f, None),
            [s, l, f] => (
                s.checked_mul(l)
                    .ok_or_else(|| Error::format(path, format!("absurd shape {shape:?}")))?,
                f,
                Some((s, l)),
            ),
            _ => {
                return Err(Error::format(
                    path,
                    format!(
                        "array has shape {shape:?}; expected [tokens, features] or [sequences, seq_len, features]"
                    ),
                ))
            }
        };
        if n_features == 0 {
            return Err(Error::format(
                path,
                format!("array has shape {shape:?}: zero features"),
            ));
        }
        let needed = n_rows
            .checked_mul(n_features)
            .and_then(|n| n.checked_mul(dtype.size() as u64))
            .ok_or_else(|| {
                Error::format(path, format!("absurd shape {shape:?}: byte size overflows"))
            })?;
        let available = extent.min(map.len() - offset.min(map.len())) as u64;
        if needed != available {
            let what = if needed > available {
                "is truncated"
            } else {
                "has trailing bytes"
            };
            return Err(Error::format(
                path,
                format!(
                    "file {what}: shape {shape:?} of {} needs {needed} data bytes but {available} follow the header",
                    dtype.name()
                ),
            ));
        }
        let n_features = usize::try_from(n_features)
            .map_err(|_| Error::format(path, format!("absurd feature count {n_features}")))?;
        Ok(Self {
            path: path.to_path_buf(),
            map,
            offset,
            dtype,
            n_rows,
            n_features,
            sequences,
        })
    }

    /// Rows (tokens).
    pub fn n_rows(&self) -> u64 {
        self.n_rows
    }

    /// Columns (features).
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// `(sequences, seq_len)` for 3-D inputs.
    pub fn sequence_shape(&self) -> Option<(u64, u64)> {
        self.sequences
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Element type.
    pub fn dtype(&self) -> DenseDtype {
        self.dtype
    }

    fn bytes(&self, rows: std::ops::Range<u64>) -> &[u8] {
        let row_bytes = self.n_features * self.dtype.size();
        let a = self.offset + rows.start as usize * row_bytes;
        let b = self.offset + rows.end as usize * row_bytes;
        &self.map[a..b]
    }

    /// Whether [`DenseMatrix::rows_f32`] borrows the file's bytes (aligned f32) rather than
    /// converting into a buffer.
    pub fn reads_in_place(&self) -> bool {
        self.dtype == DenseDtype::F32
            && (self.map.as_ptr() as usize + self.offset)
                .is_multiple_of(std::mem::align_of::<f32>())
    }

    /// Rows as f32: borrowed when the file already holds aligned f32, else converted into
    /// `buffer`.
    pub fn rows_f32<'a>(
        &'a self,
        rows: std::ops::Range<u64>,
        buffer: &'a mut Vec<f32>,
    ) -> &'a [f32] {
        let bytes = self.bytes(rows);
        match self.dtype {
            DenseDtype::F32 => {
                // SAFETY: f32 has no invalid bit patterns; align_to only yields the aligned middle.
                let (pre, mid, post) = unsafe { bytes.align_to::<f32>() };
                if pre.is_empty() && post.is_empty() {
                    return mid;
                }
                buffer.clear();
                buffer.extend(
                    bytes
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                );
            }
            DenseDtype::F16 => {
                use half::slice::HalfFloatSliceExt;
                buffer.clear();
                buffer.resize(bytes.len() / 2, 0.0);
                // SAFETY: every 16-bit pattern is a valid f16.
                let (pre, mid, post) = unsafe { bytes.align_to::<half::f16>() };
                if pre.is_empty() && post.is_empty() {
                    mid.convert_to_f32_slice(buffer);
                } else {
                    for (o, c) in buffer.iter_mut().zip(bytes.chunks_exact(2)) {
                        *o = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
                    }
                }
            }
            DenseDtype::BF16 => {
                buffer.clear();
                buffer.extend(
                    bytes
                        .chunks_exact(2)
                        .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)),
                );
            }
            DenseDtype::F64 => {
                buffer.clear();
                buffer.extend(bytes.chunks_exact(8).map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                }));
            }
        }
        buffer
    }

    /// The first float64 value in `rows` that is finite but too large for float32 (it would
    /// become ±Inf, which the build reports as a non-finite input): `(row, feature, value)`.
    pub fn first_f32_overflow(&self, rows: std::ops::Range<u64>) -> Option<(u64, usize, f64)> {
        if self.dtype != DenseDtype::F64 {
            return None;
        }
        let start = rows.start;
        self.bytes(rows)
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .enumerate()
            .find(|(_, v)| v.is_finite() && !(*v as f32).is_finite())
            .map(|(i, v)| (start + (i / self.n_features) as u64, i % self.n_features, v))
    }

    /// Tells the kernel that rows before `row` will not be read again, so resident memory
    /// stays bounded however large the file is (the page cache keeps them if it wants).
    pub fn release_before(&self, row: u64) {
        let row_bytes = (self.n_features * self.dtype.size()) as u64;
        let end = self.offset as u64 + row * row_bytes;
        let end = end & !4095;
        if end > 0 {
            // SAFETY: the map is a read-only shared file mapping; dropping its pages only makes
            // later reads fault them back in from the file.
            let _ = unsafe {
                self.map
                    .unchecked_advise_range(UncheckedAdvice::DontNeed, 0, end as usize)
            };
        }
    }
}

/// A dense matrix plus its token sequences, read batch by batch.
pub struct DenseSource {
    matrix: DenseMatrix,
    tokens: TokenSequences,
    planner: BatchPlanner,
    buffer: Vec<f32>,
    window: u64,
}

impl DenseSource {
    /// Pairs `matrix` with `tokens`, checking that they describe the same tokens.
    /// `values_per_batch` bounds the floats held per batch (memory ≈ 4 × that).
    pub fn new(
        matrix: DenseMatrix,
        tokens: TokenSequences,
        window: usize,
        values_per_batch: usize,
    ) -> Result<Self> {
        let n_tok: u64 = tokens.n_tokens();
        if let Some((s, l)) = matrix.sequence_shape() {
            if tokens.n_sequences() as u64 != s || tokens.lengths().any(|len| len != l) {
                return Err(Error::format(
                    tokens.path(),
                    format!(
                        "token/activation length mismatch: {} is shaped [{s} sequences, {l} tokens, {} features] but the tokens file has {} sequences with {} tokens in all (lengths {})",
                        matrix.path().display(),
                        matrix.n_features(),
                        tokens.n_sequences(),
                        n_tok,
                        tokens.describe_lengths()
                    ),
                ));
            }
        } else if n_tok != matrix.n_rows() {
            return Err(Error::format(
                tokens.path(),
                format!(
                    "token/activation length mismatch: {} has {} rows (tokens) but the tokens file has {n_tok} tokens in {} sequences",
                    matrix.path().display(),
                    matrix.n_rows(),
                    tokens.n_sequences()
                ),
            ));
        }
        let max_rows = (values_per_batch / matrix.n_features()).max(1) as u64;
        let planner = BatchPlanner::new(tokens.offsets().to_vec(), max_rows, window as u64);
        Ok(Self {
            matrix,
            tokens,
            planner,
            buffer: Vec::new(),
            window: window as u64,
        })
    }
}

impl DenseSource {
    /// Numbers this input's sequences from `first` (so shards of one corpus, built
    /// separately and merged, keep distinct sequence indices).
    pub fn with_first_sequence(mut self, first: u64) -> Self {
        self.planner.set_first_sequence(first);
        self
    }
}

impl ActivationSource for DenseSource {
    fn n_features(&self) -> usize {
        self.matrix.n_features()
    }

    fn n_tokens_hint(&self) -> Option<u64> {
        Some(self.matrix.n_rows())
    }

    fn vocab(&self) -> &Vocab {
        self.tokens.vocab()
    }

    fn describe(&self) -> &Path {
        self.matrix.path()
    }

    fn next_batch(&mut self) -> Result<Option<ActivationBatch<'_>>> {
        let Some(plan) = self.planner.next_batch() else {
            return Ok(None);
        };
        self.matrix
            .release_before(plan.load.start.saturating_sub(self.window));
        let (sequences, positions) = self.planner.row_coordinates(plan.load.clone());
        let tokens = self.tokens.ids()[plan.load.start as usize..plan.load.end as usize].to_vec();
        let values = self.matrix.rows_f32(plan.load.clone(), &mut self.buffer);
        if self.matrix.dtype() == DenseDtype::F64 && values.iter().any(|v| v.is_infinite()) {
            if let Some((row, feature, v)) = self.matrix.first_f32_overflow(plan.load.clone()) {
                let (s, p) = self.planner.row_coordinates(row..row + 1);
                return Err(Error::format(
                    self.matrix.path(),
                    format!(
                        "float64 activation {v:e} at sequence {}, position {}, feature {feature} is outside the float32 range (±3.4e38) the statistics are computed in; expected finite values below that magnitude",
                        s[0], p[0]
                    ),
                ));
            }
        }
        let base = plan.load.start;
        Ok(Some(ActivationBatch {
            n_features: self.matrix.n_features(),
            tokens,
            sequences,
            positions,
            core: (plan.core.start - base) as usize..(plan.core.end - base) as usize,
            values: BatchValues::Dense(values),
        }))
    }
}
