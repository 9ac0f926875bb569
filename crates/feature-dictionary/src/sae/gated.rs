//! Gated SAE: `[x'·W_enc + b_gate > 0] · relu(x'·(W_enc ∘ exp(r_mag)) + b_mag)`.
//!
//! `r_mag` scales whole columns of `W_enc`, so the magnitude path is the same product as the
//! gate times `exp(r_mag)`: one matrix multiply serves both.

use super::{push_nonzero, Activation, LoadContext};
use crate::error::Result;

/// Gated encoder parameters.
pub(crate) struct Gated {
    b_gate: Vec<f32>,
    b_mag: Vec<f32>,
    exp_r_mag: Vec<f32>,
}

impl Gated {
    pub(crate) fn load(cx: &mut LoadContext) -> Result<Self> {
        Ok(Self {
            b_gate: cx.latent_vector(&["b_gate"])?,
            b_mag: cx.latent_vector(&["b_mag"])?,
            exp_r_mag: cx
                .latent_vector(&["r_mag"])?
                .into_iter()
                .map(f32::exp)
                .collect(),
        })
    }
}

impl Activation for Gated {
    fn activate(
        &self,
        pre: &mut [f32],
        _scratch: &mut Vec<f32>,
        idx: &mut Vec<u32>,
        val: &mut Vec<f32>,
    ) {
        for (i, p) in pre.iter().enumerate() {
            let gate = p + self.b_gate[i];
            let mag = p * self.exp_r_mag[i] + self.b_mag[i];
            let v = if gate.is_nan() || mag.is_nan() {
                f32::NAN
            } else if gate > 0.0 && mag > 0.0 {
                mag
            } else {
                0.0
            };
            push_nonzero(idx, val, i, v);
        }
    }
}
