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

#[cfg(test)]
mod tests {
    use super::*;

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
