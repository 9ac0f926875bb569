//! Finding the nonzero values of dense rows: the one loop that touches every activation value.
//!
//! A row slice is tested 16 (AVX-512) or 8 (AVX2) values at a time; only the indices of
//! nonzero values leave the loop. The test is an integer compare of the value's bits with the
//! sign cleared, so NaN counts as nonzero (and is reported) while -0.0 is zero. The kernel is
//! chosen once per call by runtime CPU detection, so one binary runs everywhere.

/// Calls `nonzero(index, value)` for every value other than ±0 in `row` (NaN and ±∞
/// included: the replay tells them apart), in index order.
#[inline]
pub fn scan_nonzero(row: &[f32], nonzero: &mut impl FnMut(usize, f32)) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: avx512f was just detected.
            unsafe { scan_avx512(row, nonzero) };
            return;
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: avx2 was just detected.
            unsafe { scan_avx2(row, nonzero) };
            return;
        }
    }
    scan_scalar(row, 0, nonzero);
}

#[inline(always)]
fn scan_scalar(row: &[f32], offset: usize, nonzero: &mut impl FnMut(usize, f32)) {
    for (i, &v) in row.iter().enumerate() {
        if v.to_bits() & 0x7fff_ffff != 0 {
            nonzero(offset + i, v);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn scan_avx512(row: &[f32], nonzero: &mut impl FnMut(usize, f32)) {
    use std::arch::x86_64::*;
    let abs_mask = _mm512_set1_epi32(0x7fff_ffff);
    let zero = _mm512_setzero_si512();
    let chunks = row.len() / 16;
    let ptr = row.as_ptr();
    for c in 0..chunks {
        // SAFETY: c * 16 + 15 < row.len().
        let bits = unsafe { _mm512_loadu_si512(ptr.add(c * 16).cast()) };
        let mut m = _mm512_cmpneq_epi32_mask(_mm512_and_si512(bits, abs_mask), zero) as u32;
        if m == 0 {
            continue;
        }
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            m &= m - 1;
            nonzero(c * 16 + i, row[c * 16 + i]);
        }
    }
    scan_scalar(&row[chunks * 16..], chunks * 16, nonzero);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scan_avx2(row: &[f32], nonzero: &mut impl FnMut(usize, f32)) {
    use std::arch::x86_64::*;
    let abs_mask = _mm256_set1_epi32(0x7fff_ffff);
    let zero = _mm256_setzero_si256();
    let chunks = row.len() / 8;
    let ptr = row.as_ptr();
    for c in 0..chunks {
        // SAFETY: c * 8 + 7 < row.len().
        let bits = unsafe { _mm256_loadu_si256(ptr.add(c * 8).cast()) };
        let is_zero = _mm256_cmpeq_epi32(_mm256_and_si256(bits, abs_mask), zero);
        let mut m = !(_mm256_movemask_ps(_mm256_castsi256_ps(is_zero)) as u32) & 0xff;
        if m == 0 {
            continue;
        }
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            m &= m - 1;
            nonzero(c * 8 + i, row[c * 8 + i]);
        }
    }
    scan_scalar(&row[chunks * 8..], chunks * 8, nonzero);
}

/// Hints the CPU to bring `p`'s cache line into L1 ahead of use (a no-op elsewhere).
#[inline(always)]
pub fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is a hint; any address is allowed.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (p as *const T).cast(),
        )
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Features per tile of the transpose (see [`TileBucket`]).
pub const TILE_BITS: u32 = 6;
/// Features per tile.
pub const TILE: usize = 1 << TILE_BITS;

/// How far ahead (in values) the transpose prefetches a row.
const PREFETCH_AHEAD: usize = 512;

/// The nonzero values of one tile of `TILE` features over a batch's rows, in row order:
/// `keys[j] = row << TILE_BITS | feature within the tile`, `values[j]` its value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TileBucket {
    /// Packed row and feature.
    pub keys: Vec<u32>,
    /// Values (NaN and ±∞ included).
    pub values: Vec<f32>,
}

impl TileBucket {
    /// Appends one entry.
    #[inline(always)]
    pub fn push(&mut self, key: u32, value: f32) {
        self.keys.push(key);
        self.values.push(value);
    }

    /// Empties the bucket, keeping its memory.
    pub fn clear(&mut self) {
        self.keys.clear();
        self.values.clear();
    }
}

/// Appends every nonzero value of `row` (a row's slice of a feature range, so index `i`
/// belongs to tile `i / TILE`) to its tile's bucket with key `row_index << TILE_BITS |
/// i % TILE` (NaN and ±∞ included; the replay counts them).
#[inline]
pub fn transpose_row(row: &[f32], row_index: u32, buckets: &mut [TileBucket]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: avx512f was just detected.
            unsafe { transpose_row_avx512(row, row_index, buckets) };
            return;
        }
    }
    transpose_row_from(row, 0, row_index, buckets);
}

/// The portable transpose of `row[from..]`.
#[inline(always)]
fn transpose_row_from(row: &[f32], from: usize, row_index: u32, buckets: &mut [TileBucket]) {
    let key = row_index << TILE_BITS;
    scan_nonzero(&row[from..], &mut |i, v| {
        let i = from + i;
        buckets[i / TILE].push(key | (i % TILE) as u32, v)
    });
}

/// Whole tiles with AVX-512: each 16-value chunk's nonzeros are compressed in registers and
/// stored with one full-width store per array (the bucket has room for a whole tile), so
/// the cost per chunk does not depend on how many values fire.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
unsafe fn transpose_row_avx512(row: &[f32], row_index: u32, buckets: &mut [TileBucket]) {
    use std::arch::x86_64::*;
    let abs_mask = _mm512_set1_epi32(0x7fff_ffff);
    let zero = _mm512_setzero_si512();
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let key = row_index << TILE_BITS;
    let full_tiles = row.len() / TILE;
    let ptr = row.as_ptr();
    for (t, bucket) in buckets.iter_mut().enumerate().take(full_tiles) {
        bucket.keys.reserve(TILE);
        bucket.values.reserve(TILE);
        let len = bucket.keys.len();
        debug_assert_eq!(len, bucket.values.len());
        let mut n = 0usize;
        // The hardware prefetcher restarts at every 4 KiB page, and a thread's slice of a
        // row spans several: fetch a little ahead explicitly (a hint; past-the-end is fine).
        for line in 0..TILE / 16 {
            _mm_prefetch::<_MM_HINT_T0>(
                ptr.wrapping_add(t * TILE + PREFETCH_AHEAD + line * 16)
                    .cast(),
            );
        }
        for c in 0..TILE / 16 {
            let at = t * TILE + c * 16;
            // SAFETY: at + 15 < full_tiles * TILE <= row.len().
            let bits = unsafe { _mm512_loadu_si512(ptr.add(at).cast()) };
            let m = _mm512_cmpneq_epi32_mask(_mm512_and_si512(bits, abs_mask), zero);
            if m == 0 {
                continue;
            }
            let keys = _mm512_add_epi32(_mm512_set1_epi32((key | (c * 16) as u32) as i32), lanes);
            // SAFETY: len + n + 16 <= len + TILE <= capacity (reserved above), and both
            // vectors have the same length.
            unsafe {
                _mm512_storeu_si512(
                    bucket.keys.as_mut_ptr().add(len + n).cast(),
                    _mm512_maskz_compress_epi32(m, keys),
                );
                _mm512_storeu_si512(
                    bucket.values.as_mut_ptr().add(len + n).cast(),
                    _mm512_maskz_compress_epi32(m, bits),
                );
            }
            n += (m as u32).count_ones() as usize;
        }
        // SAFETY: the first len + n elements are initialised (stored above).
        unsafe {
            bucket.keys.set_len(len + n);
            bucket.values.set_len(len + n);
        }
    }
    transpose_row_from(row, full_tiles * TILE, row_index, buckets);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_matches_the_portable_path() {
        // 3 whole tiles and a partial one, with nonzeros, NaN, ±∞, -0.0 and negatives.
        let mut row: Vec<f32> = (0..3 * TILE + 37)
            .map(|i| {
                if (i * 7) % 5 == 0 {
                    (i % 13) as f32 - 4.0
                } else {
                    0.0
                }
            })
            .collect();
        row[3] = f32::NAN;
        row[70] = f32::INFINITY;
        row[200] = f32::NEG_INFINITY;
        row[5] = -0.0;
        let run = |fast: bool| {
            let mut buckets = vec![TileBucket::default(); row.len().div_ceil(TILE)];
            for r in [0u32, 9, 1000] {
                if fast {
                    transpose_row(&row, r, &mut buckets);
                } else {
                    transpose_row_from(&row, 0, r, &mut buckets);
                }
            }
            buckets
                .iter()
                .map(|b| {
                    (
                        b.keys.clone(),
                        b.values.iter().map(|v| v.to_bits()).collect::<Vec<u32>>(),
                    )
                })
                .collect::<Vec<_>>()
        };
        let portable = run(false);
        assert_eq!(run(true), portable);
        let expected: Vec<usize> = (0..row.len())
            .filter(|&i| row[i].to_bits() & 0x7fff_ffff != 0)
            .collect();
        assert!(expected.contains(&3) && expected.contains(&200) && !expected.contains(&5));
        // Each row lists exactly the nonzeros, by tile, with keys decoding to (row, feature).
        for r in [0u32, 9, 1000] {
            let mut got = Vec::new();
            for (t, (keys, values)) in portable.iter().enumerate() {
                for (&k, &v) in keys.iter().zip(values) {
                    if k >> TILE_BITS == r {
                        let i = t * TILE + (k as usize & (TILE - 1));
                        assert_eq!(row[i].to_bits(), v);
                        got.push(i);
                    }
                }
            }
            assert_eq!(got, expected);
        }
    }

    type Scanner<'a> = dyn Fn(&mut dyn FnMut(usize, f32)) + 'a;

    #[test]
    fn all_kernels_agree_with_scalar() {
        let mut row: Vec<f32> = (0..103).map(|i| ((i * 37) % 11) as f32 * 0.1).collect();
        row[7] = f32::NAN;
        row[20] = f32::INFINITY;
        row[21] = f32::NEG_INFINITY;
        row[30] = -0.0;
        row[31] = -2.5;
        row[100] = 5.0;
        let collect = |f: &Scanner<'_>| {
            let mut nonzeros = Vec::new();
            f(&mut |i, v| nonzeros.push((i, v.to_bits())));
            nonzeros
        };
        let reference = collect(&|f| scan_scalar(&row, 0, &mut |i, v| f(i, v)));
        let dispatched = collect(&|f| scan_nonzero(&row, &mut |i, v| f(i, v)));
        assert_eq!(reference, dispatched);
        let expected: Vec<usize> = (0..row.len())
            .filter(|&i| row[i] != 0.0 || row[i].is_nan())
            .collect();
        assert_eq!(reference.iter().map(|p| p.0).collect::<Vec<_>>(), expected);
        assert!(expected.contains(&31) && !expected.contains(&30) && expected.contains(&7));
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            let avx2 = collect(&|f| unsafe { scan_avx2(&row, &mut |i, v| f(i, v)) });
            assert_eq!(reference, avx2);
        }
    }
}
