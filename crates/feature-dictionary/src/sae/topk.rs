//! TopK SAE: keep the `k` largest pre-activations of each token, then ReLU.
//!
//! With `rescale_acts_by_decoder_norm` the pre-activations are first multiplied by each
//! latent's decoder-row norm (as SAELens does), which changes which latents are selected.
//! Ties at the k-th value keep the lowest latent indices, so the result is deterministic.

use super::{push_nonzero, Activation, LoadContext};
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
        for (i, p) in pre.iter_mut().enumerate() {
            *p += self.b_enc[i];
            if let Some(n) = &self.decoder_norms {
                *p *= n[i];
            }
        }
        let n = pre.len();
        let k = self.k.min(n);
        scratch.clear();
        scratch.extend_from_slice(pre);
        // k-th largest by total order (NaN sorts above +inf, so it is kept and reported).
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
                push_nonzero(idx, val, i, if v > 0.0 || v.is_nan() { v } else { 0.0 });
            }
        }
    }
}
