//! Fixed-edge log histogram of activations.
//!
//! Bin edges are the floats `2^(e + j/8)` for exponents `e` in `MIN_EXPONENT..MAX_EXPONENT`
//! and `j` in `0..8` — 8 bins per octave, each at most 9.05 % wide relative to its lower edge.
//! Because the edges are fixed, histograms of shards add bin by bin (exact merge) and no
//! second pass is needed. The bin of a value comes straight from its IEEE-754 bits (exponent
//! and top 3 mantissa bits), so binning is a shift and a subtract. Edges inside an octave are
//! linear in the mantissa (`2^e·(1 + j/8)`), i.e. piecewise-log; quantiles interpolated in a
//! bin are off by at most one bin width (≤ 12.5 % of the value).

/// Exponent of the lower edge of bin 0 (2^-10 ≈ 0.00098); smaller values land in bin 0.
pub const MIN_EXPONENT: i32 = -10;
/// Exponent of the upper edge of the last bin (2^16 = 65536); larger values land in it.
pub const MAX_EXPONENT: i32 = 16;
/// Bins per octave (power of two).
pub const BINS_PER_OCTAVE: u32 = 8;
/// Number of bins.
pub const N_BINS: usize = ((MAX_EXPONENT - MIN_EXPONENT) as u32 * BINS_PER_OCTAVE) as usize;

const SHIFT: u32 = 23 - BINS_PER_OCTAVE.trailing_zeros();
const BASE: i32 = (MIN_EXPONENT + 127) << BINS_PER_OCTAVE.trailing_zeros();

/// Bin of a positive finite value.
#[inline(always)]
pub fn bin(v: f32) -> usize {
    let b = (v.to_bits() >> SHIFT) as i32 - BASE;
    b.clamp(0, N_BINS as i32 - 1) as usize
}

/// Lower edge of bin `b` (nominal for bin 0, which also holds smaller values).
pub fn lower_edge(b: usize) -> f64 {
    f32::from_bits(((b as i32 + BASE) as u32) << SHIFT) as f64
}

/// Upper edge of bin `b` (nominal for the last bin, which also holds larger values).
pub fn upper_edge(b: usize) -> f64 {
    f32::from_bits(((b as i32 + 1 + BASE) as u32) << SHIFT) as f64
}

/// The `q`-quantile (0 ≤ q ≤ 1) of the values binned in `counts`, interpolated linearly
/// inside the bin and clamped to the exact `[min, max]`. The first and last bins also hold
/// every value below and above the histogram's range, so their span reaches `min` and
/// `max`: a quantile there is only bounded by them (not within one bin width).
pub fn quantile(counts: &[u64], q: f64, min: f64, max: f64) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let target = q.clamp(0.0, 1.0) * total as f64;
    let mut seen = 0u64;
    for (b, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        if (seen + c) as f64 >= target {
            let lo = if b == 0 { min } else { lower_edge(b).max(min) };
            let hi = if b == counts.len() - 1 {
                max
            } else {
                upper_edge(b).min(max)
            };
            let frac = ((target - seen as f64) / c as f64).clamp(0.0, 1.0);
            return (lo + (hi - lo) * frac).clamp(min, max);
        }
        seen += c;
    }
    max
}

/// The exact `q`-quantile (0 ≤ q ≤ 1) of `sorted` (ascending, not empty) as numpy's default
/// `quantile` gives it: linear interpolation between the values at ranks ⌊h⌋ and ⌈h⌉,
/// `h = (n − 1)·q`.
pub fn exact_quantile(sorted: &[f32], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let (lo, frac) = (h.floor() as usize, h - h.floor());
    let a = sorted[lo] as f64;
    match sorted.get(lo + 1) {
        Some(&b) if frac > 0.0 => a + (b as f64 - a) * frac,
        _ => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_between_its_bin_edges() {
        let mut v = 0.001f32;
        while v < 60000.0 {
            let b = bin(v);
            assert!(
                lower_edge(b) <= v as f64 && (v as f64) < upper_edge(b),
                "{v} in bin {b}"
            );
            v *= 1.0137;
        }
        assert_eq!(bin(1e-9), 0);
        assert_eq!(bin(1e9), N_BINS - 1);
        assert_eq!(lower_edge(bin(1.0)), 1.0);
        assert_eq!(upper_edge(bin(1.0)), 1.125);
    }

    /// Values beyond the range share the edge bins: their quantiles spread over the exact
    /// `[min, max]` instead of sticking to the bin's nominal edge (p75 of half 1e5, half 1e6
    /// came out as 1e5).
    #[test]
    fn quantiles_in_the_edge_bins_reach_min_and_max() {
        let mut top = vec![0u64; N_BINS];
        top[N_BINS - 1] = 40;
        let p75 = quantile(&top, 0.75, 1e5, 1e6);
        assert!((p75 - 7.75e5).abs() < 1e-6, "{p75}");
        assert_eq!(quantile(&top, 1.0, 1e5, 1e6), 1e6);
        let mut bottom = vec![0u64; N_BINS];
        bottom[0] = 40;
        let p10 = quantile(&bottom, 0.1, 1e-5, 1e-4);
        assert!((p10 - 1.9e-5).abs() < 1e-12, "{p10}");
        assert_eq!(quantile(&bottom, 0.0, 1e-5, 1e-4), 1e-5);
        // Inside the range nothing changes: bin edges bound the interpolation.
        let mut mid = vec![0u64; N_BINS];
        mid[bin(1.0)] = 10;
        assert_eq!(quantile(&mid, 0.5, 1.0, 1.1), 1.0 + 0.5 * 0.1);
    }

    #[test]
    fn stored_summary_edges_equal_the_binning_edges() {
        let h = crate::model::HistogramSummary {
            bins_per_octave: BINS_PER_OCTAVE,
            min_exponent: MIN_EXPONENT,
            n_bins: N_BINS as u32,
            counts: Vec::new(),
        };
        for b in 0..N_BINS {
            assert_eq!(h.lower_edge(b as u32), lower_edge(b), "bin {b}");
            assert_eq!(h.lower_edge(b as u32 + 1), upper_edge(b), "bin {b}");
        }
    }
}
