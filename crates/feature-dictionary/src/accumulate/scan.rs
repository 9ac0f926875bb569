//! Finding the nonzero values of dense rows: the one loop that touches every activation value.
//!
//! A row slice is tested 16 (AVX-512) or 8 (AVX2) values at a time; only the indices of
//! nonzero values leave the loop. The test is an integer compare of the value's bits with the
//! sign cleared, so NaN counts as nonzero (and is reported) while -0.0 is zero. The kernel is
//! chosen once per call by runtime CPU detection, so one binary runs everywhere.

/// Calls `nonzero(index, value)` for every value other than ±0 in `row` (NaN and ±∞
/// included), and additionally `bad(index)` for every NaN/±∞, in index order.
#[inline]
pub fn scan_nonzero(
    row: &[f32],
    nonzero: &mut impl FnMut(usize, f32),
    bad: &mut impl FnMut(usize),
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: avx512f was just detected.
            unsafe { scan_avx512(row, nonzero, bad) };
            return;
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: avx2 was just detected.
            unsafe { scan_avx2(row, nonzero, bad) };
            return;
        }
    }
    scan_scalar(row, 0, nonzero, bad);
}

#[inline(always)]
fn is_finite(v: f32) -> bool {
    v.to_bits() & 0x7f80_0000 != 0x7f80_0000
}

#[inline(always)]
fn scan_scalar(
    row: &[f32],
    offset: usize,
    nonzero: &mut impl FnMut(usize, f32),
    bad: &mut impl FnMut(usize),
) {
    for (i, &v) in row.iter().enumerate() {
        if v.to_bits() & 0x7fff_ffff != 0 {
            nonzero(offset + i, v);
            if !is_finite(v) {
                bad(offset + i);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn scan_avx512(
    row: &[f32],
    nonzero: &mut impl FnMut(usize, f32),
    bad: &mut impl FnMut(usize),
) {
    use std::arch::x86_64::*;
    let abs_mask = _mm512_set1_epi32(0x7fff_ffff);
    let exp_mask = _mm512_set1_epi32(0x7f80_0000);
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
        let nonfinite = _mm512_cmpeq_epi32_mask(_mm512_and_si512(bits, exp_mask), exp_mask);
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            m &= m - 1;
            nonzero(c * 16 + i, row[c * 16 + i]);
        }
        let mut b = nonfinite as u32;
        while b != 0 {
            let i = b.trailing_zeros() as usize;
            b &= b - 1;
            bad(c * 16 + i);
        }
    }
    scan_scalar(&row[chunks * 16..], chunks * 16, nonzero, bad);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scan_avx2(
    row: &[f32],
    nonzero: &mut impl FnMut(usize, f32),
    bad: &mut impl FnMut(usize),
) {
    use std::arch::x86_64::*;
    let abs_mask = _mm256_set1_epi32(0x7fff_ffff);
    let exp_mask = _mm256_set1_epi32(0x7f80_0000);
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
        let nf = _mm256_cmpeq_epi32(_mm256_and_si256(bits, exp_mask), exp_mask);
        let nonfinite = _mm256_movemask_ps(_mm256_castsi256_ps(nf)) as u32;
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            m &= m - 1;
            nonzero(c * 8 + i, row[c * 8 + i]);
        }
        let mut b = nonfinite;
        while b != 0 {
            let i = b.trailing_zeros() as usize;
            b &= b - 1;
            bad(c * 8 + i);
        }
    }
    scan_scalar(&row[chunks * 8..], chunks * 8, nonzero, bad);
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
/// i % TILE`; calls `bad(i)` for every NaN/±∞ (which are appended too).
#[inline]
pub fn transpose_row(
    row: &[f32],
    row_index: u32,
    buckets: &mut [TileBucket],
    bad: &mut impl FnMut(usize),
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: avx512f was just detected.
            unsafe { transpose_row_avx512(row, row_index, buckets, bad) };
            return;
        }
    }
    transpose_row_from(row, 0, row_index, buckets, bad);
}

/// The portable transpose of `row[from..]`.
#[inline(always)]
fn transpose_row_from(
    row: &[f32],
    from: usize,
    row_index: u32,
    buckets: &mut [TileBucket],
    bad: &mut impl FnMut(usize),
) {
    let key = row_index << TILE_BITS;
    scan_nonzero(
        &row[from..],
        &mut |i, v| {
            let i = from + i;
            buckets[i / TILE].push(key | (i % TILE) as u32, v)
        },
        &mut |i| bad(from + i),
    );
}

/// Whole tiles with AVX-512: each 16-value chunk's nonzeros are compressed in registers and
/// stored with one full-width store per array (the bucket has room for a whole tile), so
/// the cost per chunk does not depend on how many values fire.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
unsafe fn transpose_row_avx512(
    row: &[f32],
    row_index: u32,
    buckets: &mut [TileBucket],
    bad: &mut impl FnMut(usize),
) {
    use std::arch::x86_64::*;
    let abs_mask = _mm512_set1_epi32(0x7fff_ffff);
    let exp_mask = _mm512_set1_epi32(0x7f80_0000);
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
            let nonfinite = _mm512_cmpeq_epi32_mask(_mm512_and_si512(bits, exp_mask), exp_mask);
            if nonfinite != 0 {
                let mut b = nonfinite as u32;
                while b != 0 {
                    bad(at + b.trailing_zeros() as usize);
                    b &= b - 1;
                }
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
    transpose_row_from(row, full_tiles * TILE, row_index, buckets, bad);
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
            let mut bads = Vec::new();
            for r in [0u32, 9, 1000] {
                if fast {
                    transpose_row(&row, r, &mut buckets, &mut |i| bads.push(i));
                } else {
                    transpose_row_from(&row, 0, r, &mut buckets, &mut |i| bads.push(i));
                }
            }
            let contents: Vec<(Vec<u32>, Vec<u32>)> = buckets
                .iter()
                .map(|b| {
                    (
                        b.keys.clone(),
                        b.values.iter().map(|v| v.to_bits()).collect(),
                    )
                })
                .collect();
            (contents, bads)
        };
        let (portable, bads) = run(false);
        assert_eq!(run(true), (portable.clone(), bads.clone()));
        assert_eq!(bads, [3, 70, 200].repeat(3));
        let expected = row
            .iter()
            .filter(|v| v.to_bits() & 0x7fff_ffff != 0)
            .count();
        assert_eq!(
            portable.iter().map(|b| b.0.len()).sum::<usize>(),
            3 * expected
        );
        // Keys decode to (row, feature) and values are the row's values.
        for (t, (keys, values)) in portable.iter().enumerate() {
            for (&k, &v) in keys.iter().zip(values) {
                let i = t * TILE + (k as usize & (TILE - 1));
                assert!([0, 9, 1000].contains(&(k >> TILE_BITS)));
                assert_eq!(row[i].to_bits(), v);
            }
        }
    }

    type Scanner<'a> = dyn Fn(&mut dyn FnMut(usize, f32), &mut dyn FnMut(usize)) + 'a;

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
            let (mut nonzeros, mut bads) = (Vec::new(), Vec::new());
            f(&mut |i, v| nonzeros.push((i, v.to_bits())), &mut |i| {
                bads.push(i)
            });
            (nonzeros, bads)
        };
        let reference = collect(&|f, b| scan_scalar(&row, 0, &mut |i, v| f(i, v), &mut |i| b(i)));
        let dispatched = collect(&|f, b| scan_nonzero(&row, &mut |i, v| f(i, v), &mut |i| b(i)));
        assert_eq!(reference, dispatched);
        assert_eq!(reference.1, vec![7, 20, 21]);
        let expected: Vec<usize> = (0..row.len())
            .filter(|&i| row[i] != 0.0 || row[i].is_nan())
            .collect();
        assert_eq!(
            reference.0.iter().map(|p| p.0).collect::<Vec<_>>(),
            expected
        );
        assert!(expected.contains(&31) && !expected.contains(&30));
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            let avx2 =
                collect(&|f, b| unsafe { scan_avx2(&row, &mut |i, v| f(i, v), &mut |i| b(i)) });
            assert_eq!(reference, avx2);
        }
    }
}
