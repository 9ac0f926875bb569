//! BatchTopK SAE. Its top-k is taken over a whole training batch, which has no meaning for
//! one token at inference; SAELens therefore saves it for inference with a per-latent
//! `threshold` and encodes it exactly like JumpReLU, which is what we do.

use super::jumprelu::JumpRelu;
use super::LoadContext;
use crate::error::{Error, Result};

/// Loads BatchTopK for inference: JumpReLU with the learned thresholds.
pub(crate) fn load(cx: &mut LoadContext) -> Result<JumpRelu> {
    if !cx.has(&["threshold"]) {
        return Err(Error::format(
            cx.weights_path(),
            "batchtopk SAE without a \"threshold\" tensor: a BatchTopK SAE must be saved for inference (SAELens converts it to JumpReLU thresholds when saving)",
        ));
    }
    JumpRelu::load(cx)
}
