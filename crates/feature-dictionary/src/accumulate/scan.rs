//! Finding firings in dense rows: the one loop that touches every activation value.
//!
//! A row slice is compared 16 (AVX-512) or 8 (AVX2) values at a time against the threshold;
//! only the indices of firing and non-finite values leave the loop. The kernel is chosen
//! once per call by runtime CPU detection, so one binary runs everywhere.

/// Calls `fire(index, value)` for every `value >= threshold` (finite) in `row`, and `bad(index)`
/// for every NaN/±Inf, in index order.
#[inline]
pub fn scan_row(
    row: &[f32],
    threshold: f32,
    fire: &mut impl FnMut(usize, f32),
    bad: &mut impl FnMut(usize),
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: avx512f was just detected.
            unsafe { scan_avx512(row, threshold, fire, bad) };
            return;
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: avx2 was just detected.
            unsafe { scan_avx2(row, threshold, fire, bad) };
            return;
        }
    }
    scan_scalar(row, 0, threshold, fire, bad);
}

#[inline(always)]
fn is_finite(v: f32) -> bool {
    v.to_bits() & 0x7f80_0000 != 0x7f80_0000
}

#[inline(always)]
fn scan_scalar(
    row: &[f32],
    offset: usize,
    threshold: f32,
    fire: &mut impl FnMut(usize, f32),
    bad: &mut impl FnMut(usize),
) {
    for (i, &v) in row.iter().enumerate() {
        if !is_finite(v) {
            bad(offset + i);
        } else if v >= threshold {
            fire(offset + i, v);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn scan_avx512(
    row: &[f32],
    threshold: f32,
    fire: &mut impl FnMut(usize, f32),
    bad: &mut impl FnMut(usize),
) {
    use std::arch::x86_64::*;
    let thr = _mm512_set1_ps(threshold);
    let exp_mask = _mm512_set1_epi32(0x7f80_0000);
    let chunks = row.len() / 16;
    let ptr = row.as_ptr();
    for c in 0..chunks {
        // SAFETY: c * 16 + 15 < row.len().
        let v = unsafe { _mm512_loadu_ps(ptr.add(c * 16)) };
        let bits = _mm512_castps_si512(v);
        let nonfinite = _mm512_cmpeq_epi32_mask(_mm512_and_si512(bits, exp_mask), exp_mask);
        let ge = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(v, thr);
        let mut m = (ge & !nonfinite) as u32;
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            m &= m - 1;
            fire(c * 16 + i, row[c * 16 + i]);
        }
        let mut b = nonfinite as u32;
        while b != 0 {
            let i = b.trailing_zeros() as usize;
            b &= b - 1;
            bad(c * 16 + i);
        }
    }
    scan_scalar(&row[chunks * 16..], chunks * 16, threshold, fire, bad);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scan_avx2(
    row: &[f32],
    threshold: f32,
    fire: &mut impl FnMut(usize, f32),
    bad: &mut impl FnMut(usize),
) {
    use std::arch::x86_64::*;
    let thr = _mm256_set1_ps(threshold);
    let exp_mask = _mm256_set1_epi32(0x7f80_0000);
    let chunks = row.len() / 8;
    let ptr = row.as_ptr();
    for c in 0..chunks {
        // SAFETY: c * 8 + 7 < row.len().
        let v = unsafe { _mm256_loadu_ps(ptr.add(c * 8)) };
        let bits = _mm256_castps_si256(v);
        let nf = _mm256_cmpeq_epi32(_mm256_and_si256(bits, exp_mask), exp_mask);
        let nonfinite = _mm256_movemask_ps(_mm256_castsi256_ps(nf)) as u32;
        let ge = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(v, thr)) as u32;
        let mut m = ge & !nonfinite;
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            m &= m - 1;
            fire(c * 8 + i, row[c * 8 + i]);
        }
        let mut b = nonfinite;
        while b != 0 {
            let i = b.trailing_zeros() as usize;
            b &= b - 1;
            bad(c * 8 + i);
        }
    }
    scan_scalar(&row[chunks * 8..], chunks * 8, threshold, fire, bad);
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
        row[100] = 5.0;
        let collect = |f: &Scanner<'_>| {
            let (mut fires, mut bads) = (Vec::new(), Vec::new());
            f(&mut |i, v| fires.push((i, v)), &mut |i| bads.push(i));
            (fires, bads)
        };
        let reference =
            collect(&|f, b| scan_scalar(&row, 0, 0.45, &mut |i, v| f(i, v), &mut |i| b(i)));
        let dispatched = collect(&|f, b| scan_row(&row, 0.45, &mut |i, v| f(i, v), &mut |i| b(i)));
        assert_eq!(reference, dispatched);
        assert_eq!(reference.1, vec![7, 20, 21]);
        assert!(reference.0.iter().all(|&(i, v)| v >= 0.45 && row[i] == v));
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            let avx2 = collect(&|f, b| unsafe {
                scan_avx2(&row, 0.45, &mut |i, v| f(i, v), &mut |i| b(i))
            });
            assert_eq!(reference, avx2);
        }
    }
}
