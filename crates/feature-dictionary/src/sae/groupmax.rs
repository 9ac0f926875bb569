//! sparsify's `groupmax` activation: the `d_sae` latents form `k` contiguous groups of
//! `d_sae / k`, and each group keeps only its largest `relu(pre + b_enc)`.
//!
//! sparsify applies the ReLU before taking the maximum, so a group whose pre-activations
//! are all ≤ 0 yields a zero, which is not a firing and is dropped. Ties keep the first
//! latent of the group, as `torch.max` does.

use super::{push_nonzero, relu, Activation, LoadContext};
use crate::error::Result;

/// GroupMax encoder: bias and number of groups.
pub(crate) struct GroupMax {
    b_enc: Vec<f32>,
    groups: usize,
}

impl GroupMax {
    pub(crate) fn load(cx: &mut LoadContext) -> Result<Self> {
        let groups = cx.config().k.expect("checked by the config");
        Ok(Self {
            b_enc: cx.b_enc()?,
            groups,
        })
    }
}

impl Activation for GroupMax {
    fn activate(
        &self,
        pre: &mut [f32],
        _scratch: &mut Vec<f32>,
        idx: &mut Vec<u32>,
        val: &mut Vec<f32>,
    ) {
        let size = pre.len() / self.groups;
        for (g, (p, b)) in pre
            .chunks_exact(size)
            .zip(self.b_enc.chunks_exact(size))
            .enumerate()
        {
            let mut best = (0, relu(p[0] + b[0]));
            for (i, (p, b)) in p.iter().zip(b).enumerate().skip(1) {
                let v = relu(p + b);
                // NaN wins (torch.max propagates it), so the accumulator can report it.
                if v > best.1 || (v.is_nan() && !best.1.is_nan()) {
                    best = (i, v);
                }
            }
            push_nonzero(idx, val, g * size + best.0, best.1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_group_keeps_its_first_largest_positive_value() {
        let act = GroupMax {
            b_enc: vec![0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            groups: 3,
        };
        // Group 0: tie of 2.0 at 0 and 2 (first wins); group 1: bias lifts latent 3;
        // group 2: nothing positive, so no firing.
        let mut pre = vec![2.0, 1.0, 2.0, 0.5, 1.2, -3.0, -1.0, 0.0, -0.5];
        let (mut idx, mut val) = (vec![], vec![]);
        act.activate(&mut pre, &mut Vec::new(), &mut idx, &mut val);
        assert_eq!(idx, [0, 3]);
        assert_eq!(val, [2.0, 1.5]);
    }
}
