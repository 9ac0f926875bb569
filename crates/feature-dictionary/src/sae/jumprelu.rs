//! JumpReLU SAE (also Gemma Scope): `relu(pre) · [pre > threshold]`.

use super::{push_nonzero, Activation, LoadContext};
use crate::error::Result;

/// JumpReLU encoder: bias `b_enc` and per-latent `threshold`.
pub(crate) struct JumpRelu {
    b_enc: Vec<f32>,
    threshold: Vec<f32>,
}

impl JumpRelu {
    pub(crate) fn load(cx: &mut LoadContext) -> Result<Self> {
        Ok(Self {
            b_enc: cx.b_enc()?,
            threshold: cx.latent_vector(&["threshold"])?,
        })
    }
}

impl Activation for JumpRelu {
    fn activate(
        &self,
        pre: &mut [f32],
        _scratch: &mut Vec<f32>,
        idx: &mut Vec<u32>,
        val: &mut Vec<f32>,
    ) {
        for (i, p) in pre.iter().enumerate() {
            let v = p + self.b_enc[i];
            let keep = (v > self.threshold[i] && v > 0.0) || v.is_nan();
            push_nonzero(idx, val, i, if keep { v } else { 0.0 });
        }
    }
}
