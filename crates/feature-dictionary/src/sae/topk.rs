//! TopK SAE: keep the `k` largest pre-activations of each token, then ReLU.
//!
//! With `rescale_acts_by_decoder_norm` the pre-activations are first multiplied by each
//! latent's decoder-row norm (as SAELens does), which changes which latents are selected.
//! Ties at the k-th value keep the lowest latent indices, so the result is deterministic.
//!
//! sparsify applies the ReLU first and then takes the top k; that keeps the same nonzero
//! latents with the same values (the k largest positive ones, all of them when fewer are
//! positive) and differs only in which zeros it pads with, which are not firings. So its
//! SAEs use this activation too, with sparsify's `encoder.bias` as the bias.

use super::{push_nonzero, relu, Activation, LoadContext};
use crate::error::Result;

/// TopK encoder parameters.
pub(crate) struct TopK {
    b_enc: Vec<f32>,
    k: usize,
    decoder_norms: Option<Vec<f32>>,
}

impl TopK {
    pub(crate) fn load(cx: &mut LoadContext) -> Result<Self> {
        let k = cx.config().k.expect("checked by the config");
        let decoder_norms = if cx.config().rescale_acts_by_decoder_norm {
            Some(cx.decoder_norms()?)
        } else {
            None
        };
        Ok(Self {
            b_enc: cx.b_enc()?,
            k,
            decoder_norms,
        })
    }
}

impl Activation for TopK {
    fn activate(
        &self,
        pre: &mut [f32],
        scratch: &mut Vec<f32>,
        idx: &mut Vec<u32>,
        val: &mut Vec<f32>,
    ) {
        let k = self.k.min(pre.len());
        let b = &self.b_enc[..pre.len()];
        if k * 16 <= pre.len() {
            // Bias (and norm) applied on the fly: `pre` is only read, never written back,
            // which saves a pass of memory traffic over the block.
            match &self.decoder_norms {
                None => select_by_heap(pre.len(), k, |i| pre[i] + b[i], idx, val),
                Some(n) => select_by_heap(pre.len(), k, |i| (pre[i] + b[i]) * n[i], idx, val),
            }
        } else {
            match &self.decoder_norms {
                None => pre.iter_mut().zip(b).for_each(|(p, b)| *p += b),
                Some(norms) => {
                    for ((p, b), n) in pre.iter_mut().zip(b).zip(norms) {
                        *p = (*p + b) * n;
                    }
                }
            }
            select_by_partition(pre, k, scratch, idx, val);
        }
    }
}

/// `a` ranks below `b`: smaller value, or equal value and larger index (lower indices win
/// ties). Values compare by total order, so NaN ranks above +inf and is kept and reported.
#[inline]
fn worse(a: (f32, u32), b: (f32, u32)) -> bool {
    match a.0.total_cmp(&b.0) {
        std::cmp::Ordering::Less => true,
        std::cmp::Ordering::Greater => false,
        std::cmp::Ordering::Equal => a.1 > b.1,
    }
}

/// Small k: one pass with a min-heap of the k best so far. On real pre-activations almost
/// every value loses to the heap's minimum at once, so this is a single compare per latent.
fn select_by_heap(
    n: usize,
    k: usize,
    value: impl Fn(usize) -> f32,
    idx: &mut Vec<u32>,
    val: &mut Vec<f32>,
) {
    let mut heap: Vec<(f32, u32)> = Vec::with_capacity(k);
    let sift_down = |heap: &mut Vec<(f32, u32)>, mut i: usize| loop {
        let (l, r) = (2 * i + 1, 2 * i + 2);
        let mut m = i;
        if l < heap.len() && worse(heap[l], heap[m]) {
            m = l;
        }
        if r < heap.len() && worse(heap[r], heap[m]) {
            m = r;
        }
        if m == i {
            break;
        }
        heap.swap(i, m);
        i = m;
    };
    // Value of the heap's worst entry once the heap is full: a value that is not above it
    // can never enter (equal values lose on index), so the common case is one float compare.
    // NaN fails `v <= min` and takes the exact path.
    let mut min = f32::NAN;
    for i in 0..n {
        let v = value(i);
        if heap.len() == k && v <= min {
            continue;
        }
        let e = (v, i as u32);
        if heap.len() < k {
            heap.push(e);
            // Sift up.
            let mut c = heap.len() - 1;
            while c > 0 {
                let p = (c - 1) / 2;
                if worse(heap[c], heap[p]) {
                    heap.swap(c, p);
                    c = p;
                } else {
                    break;
                }
            }
            if heap.len() == k {
                min = heap[0].0;
            }
        } else if worse(heap[0], e) {
            heap[0] = e;
            sift_down(&mut heap, 0);
            min = heap[0].0;
        }
    }
    heap.sort_unstable_by_key(|e| e.1);
    for (v, i) in heap {
        push_nonzero(idx, val, i as usize, relu(v));
    }
}

/// Large k: find the k-th largest with a partial sort, then keep values above it (and the
/// lowest-index ties).
fn select_by_partition(
    pre: &[f32],
    k: usize,
    scratch: &mut Vec<f32>,
    idx: &mut Vec<u32>,
    val: &mut Vec<f32>,
) {
    let n = pre.len();
    scratch.clear();
    scratch.extend_from_slice(pre);
    let (_, kth, _) = scratch.select_nth_unstable_by(n - k, |a, b| a.total_cmp(b));
    let kth = *kth;
    let greater = pre.iter().filter(|v| v.total_cmp(&kth).is_gt()).count();
    let mut ties = k - greater;
    for (i, &v) in pre.iter().enumerate() {
        let keep = match v.total_cmp(&kth) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Equal if ties > 0 => {
                ties -= 1;
                true
            }
            _ => false,
        };
        if keep {
            push_nonzero(idx, val, i, relu(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_and_partition_agree_including_ties() {
        let mut state = 12345u64;
        for trial in 0..200 {
            let n = 40 + trial % 50;
            let pre: Vec<f32> = (0..n)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    // Few distinct values, so ties at the boundary are common.
                    ((state >> 33) % 9) as f32 - 4.0
                })
                .collect();
            for k in [1, 2, 3, 7, n / 2] {
                let (mut i1, mut v1, mut i2, mut v2) = (vec![], vec![], vec![], vec![]);
                select_by_heap(pre.len(), k, |i| pre[i], &mut i1, &mut v1);
                select_by_partition(&pre, k, &mut Vec::new(), &mut i2, &mut v2);
                assert_eq!((&i1, &v1), (&i2, &v2), "n {n} k {k}: {pre:?}");
            }
        }
    }
}
