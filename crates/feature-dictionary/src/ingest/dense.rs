//! Dense activation matrices (memory-mapped) paired with token sequences.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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
    if !meta.is_file() {
        return read_stream(path, expected);
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

/// A pipe, FIFO or other stream (`--tokens /dev/stdin`, `<(zcat tokens.json.gz)`), which
/// cannot be mapped: read whole into memory, and handed on as a map like a file's.
fn read_stream(path: &Path, expected: &str) -> Result<Mmap> {
    use std::io::Read;
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| Error::io(path, e))?;
    if bytes.is_empty() {
        return Err(Error::format(
            path,
            format!("is a pipe or stream that gave no bytes; expected {expected}"),
        ));
    }
    let mut map = memmap2::MmapMut::map_anon(bytes.len()).map_err(|e| Error::io(path, e))?;
    map.copy_from_slice(&bytes);
    map.make_read_only().map_err(|e| Error::io(path, e))
}

/// A validated dense matrix `[rows, features]` inside a memory-mapped file.
///
/// The file holds the array either in C order (row-major: a row's features are contiguous)
/// or in NumPy's Fortran order (column-major: a feature's values are contiguous, see
/// [`DenseMatrix::new_fortran_order`]); readers see row-major rows either way.
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
    /// Fortran (column-major) order.
    column_major: bool,
    /// Rows whose pages [`DenseMatrix::release_before`] has dropped from every column
    /// (column-major 2-D arrays only, which release in steps; see there).
    released_rows: AtomicU64,
}

/// Bytes a column-major column must have behind the scan before its pages are dropped: one
/// `madvise` per column and step, so one system call per this many bytes read, and at most
/// `features ×` this many bytes kept resident behind the scan (1 GiB at 16k features).
const COLUMN_RELEASE_BYTES: u64 = 64 << 10;

/// Features gathered together from a column-major file: 16 read streams, each advancing
/// sequentially, and a batch row's writes landing in one or two cache lines.
const GATHER_FEATURES: usize = 16;

/// A stretch of a batch's rows that lie one after another in every column of a
/// column-major file: batch row `first + j·step` is at column index `column + j`, for
/// `j < len`.
#[derive(Debug, Clone, Copy)]
struct ColumnRun {
    first: usize,
    step: usize,
    column: u64,
    len: usize,
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
            column_major: false,
            released_rows: AtomicU64::new(0),
        })
    }

    /// Like [`DenseMatrix::new`] for an array stored in NumPy's Fortran (column-major)
    /// order, as `np.save` writes a transposed array (`np.save(p, acts.T)`): element
    /// `(i0, …, in)` of shape `(d0, …, dn)` is at flat index `i0 + d0·(i1 + d1·(…))`. So for
    /// `[tokens, F]` each feature's column is contiguous, and for `[S, L, F]` row `(s, l)`
    /// of feature `f` is at `s + S·l + S·L·f`. Rows are gathered into a buffer batch by
    /// batch, never transposing the whole file.
    pub fn new_fortran_order(
        path: &Path,
        map: Mmap,
        offset: usize,
        dtype: DenseDtype,
        shape: &[u64],
    ) -> Result<Self> {
        let mut m = Self::new(path, map, offset, dtype, shape)?;
        m.column_major = true;
        Ok(m)
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

    /// Whether the file holds the array in Fortran (column-major) order.
    pub fn is_column_major(&self) -> bool {
        self.column_major
    }

    /// The bytes of `rows` (row-major files only).
    fn bytes(&self, rows: Range<u64>) -> &[u8] {
        debug_assert!(!self.column_major);
        let row_bytes = self.n_features * self.dtype.size();
        let a = self.offset + rows.start as usize * row_bytes;
        let b = self.offset + rows.end as usize * row_bytes;
        &self.map[a..b]
    }

    /// The whole array's bytes.
    fn data(&self) -> &[u8] {
        let n = self.n_rows as usize * self.n_features * self.dtype.size();
        &self.map[self.offset..self.offset + n]
    }

    /// Where `rows` lie in each column of a column-major file, as runs of consecutive
    /// column indices (one run for `[tokens, F]`; one per position present for
    /// `[S, L, F]`, whose column holds position 0 of every sequence, then position 1, …).
    fn column_runs(&self, rows: Range<u64>) -> Vec<ColumnRun> {
        let (a, b) = (rows.start, rows.end);
        match self.sequences {
            _ if a >= b => Vec::new(),
            None => vec![ColumnRun {
                first: 0,
                step: 1,
                column: a,
                len: (b - a) as usize,
            }],
            Some((n_seq, seq_len)) => {
                // Row r = s·L + l is at column index l·S + s: for each position l the
                // batch's sequences are contiguous.
                let l_count = seq_len.min(b - a);
                let mut runs = Vec::with_capacity(l_count as usize);
                for k in 0..l_count {
                    let r0 = a + k; // the batch's first row at position (a + k) mod L
                    let l = r0 % seq_len;
                    let s0 = r0 / seq_len;
                    let len = (b - r0).div_ceil(seq_len);
                    runs.push(ColumnRun {
                        first: k as usize,
                        step: seq_len as usize,
                        column: l * n_seq + s0,
                        len: len as usize,
                    });
                }
                runs
            }
        }
    }

    /// Gathers `rows` of a column-major file into `out` (row-major `[rows, F]`), decoding
    /// each `N`-byte element with `decode`. Features go in blocks so each column is read
    /// sequentially while each row's writes stay within a cache line or two.
    fn gather_columns<const N: usize>(
        &self,
        rows: Range<u64>,
        out: &mut Vec<f32>,
        decode: impl Fn([u8; N]) -> f32,
    ) {
        let f = self.n_features;
        out.clear();
        out.resize((rows.end - rows.start) as usize * f, 0.0);
        let data = self.data();
        let column_bytes = self.n_rows as usize * N;
        let runs = self.column_runs(rows);
        let mut starts = [0usize; GATHER_FEATURES];
        for f0 in (0..f).step_by(GATHER_FEATURES) {
            let f1 = (f0 + GATHER_FEATURES).min(f);
            for run in &runs {
                for (i, s) in starts[..f1 - f0].iter_mut().enumerate() {
                    *s = (f0 + i) * column_bytes + run.column as usize * N;
                }
                for j in 0..run.len {
                    let row = run.first + j * run.step;
                    let dst = &mut out[row * f + f0..row * f + f1];
                    for (d, &s) in dst.iter_mut().zip(&starts) {
                        let at = s + j * N;
                        let mut b = [0u8; N];
                        b.copy_from_slice(&data[at..at + N]);
                        *d = decode(b);
                    }
                }
            }
        }
    }

    /// Whether [`DenseMatrix::rows_f32`] borrows the file's bytes (aligned f32 in C order)
    /// rather than converting into a buffer. When it does not, batches should be sized for
    /// the buffer ([`crate::build::CONVERTED_VALUES_PER_BATCH`]).
    pub fn reads_in_place(&self) -> bool {
        self.dtype == DenseDtype::F32
            && !self.column_major
            && (self.map.as_ptr() as usize + self.offset)
                .is_multiple_of(std::mem::align_of::<f32>())
    }

    /// Rows as f32 (row-major `[rows, F]`): borrowed when the file already holds aligned
    /// f32 in C order, else converted (and, for a column-major file, gathered) into
    /// `buffer`, which then holds `rows × F` values.
    pub fn rows_f32<'a>(&'a self, rows: Range<u64>, buffer: &'a mut Vec<f32>) -> &'a [f32] {
        if self.column_major {
            match self.dtype {
                DenseDtype::F32 => self.gather_columns(rows, buffer, f32::from_le_bytes),
                DenseDtype::F16 => {
                    self.gather_columns(rows, buffer, |b| half::f16::from_le_bytes(b).to_f32())
                }
                DenseDtype::BF16 => self.gather_columns(rows, buffer, |b| {
                    f32::from_bits((u16::from_le_bytes(b) as u32) << 16)
                }),
                DenseDtype::F64 => {
                    self.gather_columns(rows, buffer, |b| f64::from_le_bytes(b) as f32)
                }
            }
            return buffer;
        }
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
    pub fn first_f32_overflow(&self, rows: Range<u64>) -> Option<(u64, usize, f64)> {
        if self.dtype != DenseDtype::F64 {
            return None;
        }
        let overflows = |v: f64| v.is_finite() && !(v as f32).is_finite();
        let start = rows.start;
        if self.column_major {
            // Each column is scanned in file order; the first in row-major order is the
            // smallest (row, feature) among every column's hits.
            let data = self.data();
            let runs = self.column_runs(rows);
            let mut first: Option<(u64, usize, f64)> = None;
            for f in 0..self.n_features {
                let column = f * self.n_rows as usize * 8;
                for run in &runs {
                    for j in 0..run.len {
                        let at = column + (run.column as usize + j) * 8;
                        let v = f64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
                        if overflows(v) {
                            let row = start + (run.first + j * run.step) as u64;
                            if first.is_none_or(|(r, g, _)| (row, f) < (r, g)) {
                                first = Some((row, f, v));
                            }
                            break; // later hits of this run are later rows
                        }
                    }
                }
            }
            return first;
        }
        self.bytes(rows)
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .enumerate()
            .find(|(_, v)| overflows(*v))
            .map(|(i, v)| (start + (i / self.n_features) as u64, i % self.n_features, v))
    }

    /// Tells the kernel that rows before `row` will not be read again, so resident memory
    /// stays bounded however large the file is (the page cache keeps them if it wants).
    /// Calls are expected with non-decreasing `row`s; dropping pages never changes what is
    /// read (a read-only file mapping faults them back in), only how much stays resident.
    ///
    /// In a column-major file the rows behind the scan are not one prefix of the file:
    /// - `[tokens, F]`: they are a prefix of each of the F columns. Dropping those takes one
    ///   `madvise` per column, so it is done in steps, once every column has at least
    ///   `COLUMN_RELEASE_BYTES` behind the scan: resident memory behind the scan stays below
    ///   F × that, whatever the number of tokens. Ahead of the scan the kernel maps what it
    ///   chooses: recent kernels map a page-cache folio whole on a fault, up to 2 MiB on
    ///   x86-64, so up to about F × 4 MiB (two folios when a batch straddles them) can be
    ///   mapped there — bounded too, and clean page cache the kernel can reclaim.
    /// - `[S, L, F]`: they are a prefix of each of the F × L per-position runs of S values
    ///   (row `(s, l)` of feature `f` is at `s + S·l + S·L·f`). A run is S × 4 bytes for
    ///   float32, often a page or less, so little of it lies on whole pages behind the scan
    ///   before the scan ends, and dropping that would take F × L system calls per step (2M
    ///   at 16k features × 128 positions). Nothing is dropped: the pages are clean page
    ///   cache, which the kernel reclaims under memory pressure without writing anything,
    ///   but the process's resident size grows toward the file's size (saving the array in
    ///   C order, or as `[tokens, F]`, avoids that).
    pub fn release_before(&self, row: u64) {
        if self.column_major {
            self.release_columns_before(row);
            return;
        }
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

impl DenseMatrix {
    /// [`DenseMatrix::release_before`] for a column-major file.
    fn release_columns_before(&self, row: u64) {
        if self.sequences.is_some() {
            return;
        }
        let size = self.dtype.size() as u64;
        let done = self.released_rows.load(Ordering::Relaxed);
        let row = row.min(self.n_rows);
        if row <= done || (row - done) * size < COLUMN_RELEASE_BYTES {
            return;
        }
        const PAGE: u64 = 4096;
        let column_bytes = self.n_rows * size;
        for f in 0..self.n_features as u64 {
            let column = self.offset as u64 + f * column_bytes;
            // From the page holding the last release's end (its earlier bytes were released
            // rows too), but not into the page the previous column's tail shares with this
            // column's head; up to the last whole page behind the scan.
            let mut start = (column + done * size) & !(PAGE - 1);
            if start < column {
                start = column.next_multiple_of(PAGE);
            }
            let end = (column + row * size) & !(PAGE - 1);
            if end > start {
                // SAFETY: as in `release_before`: a read-only shared file mapping, whose
                // dropped pages fault back in from the file if read again.
                let _ = unsafe {
                    self.map.unchecked_advise_range(
                        UncheckedAdvice::DontNeed,
                        start as usize,
                        (end - start) as usize,
                    )
                };
            }
        }
        self.released_rows.store(row, Ordering::Relaxed);
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
                        "token/activation length mismatch: {} is shaped [{s} sequences, {l} tokens, {} features] but the tokens file has {} with {} in all (lengths {})",
                        matrix.path().display(),
                        matrix.n_features(),
                        crate::count_of(tokens.n_sequences() as u64, "sequence", "sequences"),
                        crate::count_of(n_tok, "token", "tokens"),
                        tokens.describe_lengths()
                    ),
                ));
            }
        } else if n_tok != matrix.n_rows() {
            return Err(Error::format(
                tokens.path(),
                format!(
                    "token/activation length mismatch: {} has {} (tokens) but the tokens file has {} in {}",
                    matrix.path().display(),
                    crate::count_of(matrix.n_rows(), "row", "rows"),
                    crate::count_of(n_tok, "token", "tokens"),
                    crate::count_of(tokens.n_sequences() as u64, "sequence", "sequences")
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

    fn tokens_decoded(&self) -> bool {
        self.tokens.decoded_byte_level()
    }

    fn token_notes(&self) -> &[String] {
        self.tokens.notes()
    }

    fn describe(&self) -> &Path {
        self.matrix.path()
    }

    fn sequences(&self) -> Option<std::ops::Range<u64>> {
        Some(self.planner.sequence_range())
    }

    fn next_batch(&mut self) -> Result<Option<ActivationBatch<'_>>> {
        let Some(plan) = self.planner.next_batch() else {
            return Ok(None);
        };
        self.matrix
            .release_before(plan.load.start.saturating_sub(self.window));
        let (sequences, positions) = self.planner.row_coordinates(plan.load.clone());
        let tokens = self.tokens.ids(plan.load.clone())?;
        let values = self.matrix.rows_f32(plan.load.clone(), &mut self.buffer);
        if self.matrix.dtype() == DenseDtype::F64 && values.iter().any(|v| v.is_infinite()) {
            if let Some((row, feature, v)) = self.matrix.first_f32_overflow(plan.load.clone()) {
                let (s, p) = self.planner.row_coordinates(row..row + 1);
                let at = format!("sequence {}, position {}, feature {feature}", s[0], p[0]);
                return Err(super::beyond_f32(self.matrix.path(), v, &at));
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
            token_keys: Some(self.tokens.keys()),
        }))
    }
}
