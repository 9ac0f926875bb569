//! BatchTopK SAE. Its top-k is taken over a whole training batch, which has no meaning for
//! one token at inference; SAELens therefore saves it for inference with a per-latent
//! `threshold` and encodes it exactly like JumpReLU, which is what we do.

use super::jumprelu::JumpRelu;
use super::{Activation, LoadContext};
use crate::error::{Error, Result};

/// BatchTopK at inference: JumpReLU with the learned thresholds.
pub(crate) struct BatchTopK(JumpRelu);

impl BatchTopK {
    pub(crate) fn load(cx: &mut LoadContext) -> Result<Self> {
        if !cx.has(&["threshold"]) {
            return Err(Error::format(
                cx.weights_path(),
                "batchtopk SAE without a \"threshold\" tensor: a BatchTopK SAE must be saved for inference (SAELens converts it to JumpReLU thresholds when saving)",
            ));
        }
        Ok(Self(JumpRelu::load(cx)?))
    }
}

impl Activation for BatchTopK {
    fn activate(
        &self,
        pre: &mut [f32],
        scratch: &mut Vec<f32>,
        idx: &mut Vec<u32>,
        val: &mut Vec<f32>,
    ) {
        self.0.activate(pre, scratch, idx, val)
    }
}
