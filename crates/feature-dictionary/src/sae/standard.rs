//! Standard (ReLU) SAE: `relu(x'·W_enc + b_enc)`.

use super::{push_nonzero, relu, Activation, LoadContext};
use crate::error::Result;

/// ReLU encoder with bias `b_enc`.
pub(crate) struct Standard {
    b_enc: Vec<f32>,
}

impl Standard {
    pub(crate) fn load(cx: &mut LoadContext) -> Result<Self> {
        Ok(Self { b_enc: cx.b_enc()? })
    }
}

impl Activation for Standard {
    fn activate(
        &self,
        pre: &mut [f32],
        _scratch: &mut Vec<f32>,
        idx: &mut Vec<u32>,
        val: &mut Vec<f32>,
    ) {
        for (i, (p, b)) in pre.iter().zip(&self.b_enc).enumerate() {
            push_nonzero(idx, val, i, relu(p + b));
        }
    }
}
