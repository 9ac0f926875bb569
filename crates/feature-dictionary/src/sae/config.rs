//! SAELens `cfg.json`: the v6 layout (`architecture`, `metadata {…}`) and the flat pre-6.0
//! layout (`hook_point`, `activation_fn_str`, `activation_fn_kwargs.k`, boolean
//! `normalize_activations`).

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// Encoder family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// `relu(pre)`.
    Standard,
    /// `relu(pre) · [pre > threshold]`.
    JumpRelu,
    /// Keep the `k` largest of `pre` per token, then ReLU.
    TopK,
    /// Saved for inference with a per-latent `threshold`, encoded like JumpReLU.
    BatchTopK,
    /// `[x'·W_enc + b_gate > 0] · relu((x'·W_enc) ∘ exp(r_mag) + b_mag)`.
    Gated,
}

impl Architecture {
    /// The name used in `cfg.json`.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Standard => "standard",
            Architecture::JumpRelu => "jumprelu",
            Architecture::TopK => "topk",
            Architecture::BatchTopK => "batchtopk",
            Architecture::Gated => "gated",
        }
    }
}

/// Per-token input normalization applied before the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalize {
    /// Inputs used as they are.
    None,
    /// `x · sqrt(d_in) / ‖x‖`.
    ConstantNormRescale,
    /// `(x − mean) / (std + 1e-5)` (unbiased std, like torch).
    LayerNorm,
}

/// The parts of `cfg.json` that decide how to encode.
#[derive(Debug, Clone, PartialEq)]
pub struct SaeConfig {
    /// Encoder family.
    pub architecture: Architecture,
    /// Input width.
    pub d_in: usize,
    /// Latents.
    pub d_sae: usize,
    /// Subtract `b_dec` from inputs before encoding.
    pub apply_b_dec_to_input: bool,
    /// Input normalization.
    pub normalize: Normalize,
    /// TopK's `k`.
    pub k: Option<usize>,
    /// TopK: multiply pre-activations by each latent's decoder-row norm before selecting.
    pub rescale_acts_by_decoder_norm: bool,
    /// `metadata.model_name` (or flat `model_name`).
    pub model_name: Option<String>,
    /// `metadata.hook_name` (or flat `hook_name` / `hook_point`).
    pub hook_name: Option<String>,
}

/// Largest width accepted: anything beyond is a corrupt file, not a model.
const MAX_DIM: u64 = 1 << 26;

fn get<'a>(root: &'a Value, key: &str) -> Option<&'a Value> {
    root.get(key).filter(|v| !v.is_null()).or_else(|| {
        root.get("metadata")
            .and_then(|m| m.get(key))
            .filter(|v| !v.is_null())
    })
}

impl SaeConfig {
    /// Reads `cfg.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_slice(path, &bytes)
    }

    /// Parses `cfg.json` bytes (`path` is used in messages).
    pub fn from_slice(path: &Path, bytes: &[u8]) -> Result<Self> {
        let root: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::format(path, format!("not a valid SAE cfg.json: {e}")))?;
        if !root.is_object() {
            return Err(Error::format(
                path,
                "not a valid SAE cfg.json: expected a JSON object",
            ));
        }
        let dim = |key: &str| -> Result<usize> {
            let v = get(&root, key)
                .ok_or_else(|| Error::format(path, format!("cfg.json has no \"{key}\"")))?;
            match v.as_u64() {
                Some(n) if n > 0 && n <= MAX_DIM => Ok(n as usize),
                _ => Err(Error::format(
                    path,
                    format!(
                        "cfg.json \"{key}\" is {v}; expected a positive integer up to {MAX_DIM}"
                    ),
                )),
            }
        };
        let d_in = dim("d_in")?;
        let d_sae = dim("d_sae")?;
        let activation_fn = get(&root, "activation_fn_str")
            .or_else(|| get(&root, "activation_fn"))
            .and_then(|v| v.as_str());
        let arch_name = get(&root, "architecture").and_then(|v| v.as_str());
        let architecture = match (arch_name, activation_fn) {
            (Some("topk"), _) => Architecture::TopK,
            (Some("standard") | None, Some("topk")) => Architecture::TopK,
            (Some("standard") | None, Some("relu") | None) => Architecture::Standard,
            (Some("standard") | None, Some(other)) => {
                return Err(Error::format(
                    path,
                    format!("unsupported activation_fn_str {other:?}; expected \"relu\" or \"topk\""),
                ))
            }
            (Some("jumprelu"), _) => Architecture::JumpRelu,
            (Some("batchtopk"), _) => Architecture::BatchTopK,
            (Some("gated"), _) => Architecture::Gated,
            (Some(other), _) => {
                return Err(Error::format(
                    path,
                    format!(
                        "unknown SAE architecture {other:?}; supported: standard, gated, jumprelu, topk, batchtopk"
                    ),
                ))
            }
        };
        let k = match get(&root, "k").or_else(|| {
            root.get("activation_fn_kwargs")
                .and_then(|kw| kw.get("k"))
                .filter(|v| !v.is_null())
        }) {
            None => None,
            Some(v) => match v.as_f64() {
                Some(k) if k >= 1.0 && k.fract() == 0.0 && k <= d_sae as f64 => Some(k as usize),
                _ => {
                    return Err(Error::format(
                        path,
                        format!(
                        "cfg.json \"k\" is {v}; expected an integer between 1 and d_sae = {d_sae}"
                    ),
                    ))
                }
            },
        };
        if architecture == Architecture::TopK && k.is_none() {
            return Err(Error::format(
                path,
                "topk SAE without \"k\" (or activation_fn_kwargs.k) in cfg.json",
            ));
        }
        let flag = |key: &str, default: bool| -> Result<bool> {
            match get(&root, key) {
                None => Ok(default),
                Some(Value::Bool(b)) => Ok(*b),
                Some(v) => Err(Error::format(
                    path,
                    format!("cfg.json \"{key}\" is {v}; expected true or false"),
                )),
            }
        };
        let apply_b_dec_to_input = flag("apply_b_dec_to_input", true)?;
        let rescale_acts_by_decoder_norm = flag("rescale_acts_by_decoder_norm", false)?;
        if rescale_acts_by_decoder_norm && architecture != Architecture::TopK {
            return Err(Error::format(
                path,
                format!(
                    "rescale_acts_by_decoder_norm is supported for topk SAEs only, not {}",
                    architecture.name()
                ),
            ));
        }
        let normalize = match get(&root, "normalize_activations") {
            None | Some(Value::Bool(false)) => Normalize::None,
            Some(Value::String(s)) if s == "none" => Normalize::None,
            Some(Value::String(s)) if s == "constant_norm_rescale" => Normalize::ConstantNormRescale,
            Some(Value::String(s)) if s == "layer_norm" => Normalize::LayerNorm,
            Some(v) => {
                return Err(Error::format(
                    path,
                    format!(
                        "normalize_activations {v} is not supported: its scaling factor is estimated from data and not stored — fold it into the weights (SAELens fold_activation_norm_scaling_factor) and set it to \"none\""
                    ),
                ))
            }
        };
        let text = |key: &str| get(&root, key).and_then(|v| v.as_str()).map(str::to_string);
        Ok(Self {
            architecture,
            d_in,
            d_sae,
            apply_b_dec_to_input,
            normalize,
            k,
            rescale_acts_by_decoder_norm,
            model_name: text("model_name"),
            hook_name: text("hook_name").or_else(|| text("hook_point")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v6_and_flat_configs() {
        let p = Path::new("cfg.json");
        let v6 = br#"{"architecture":"topk","d_in":4,"d_sae":8,"k":2,"apply_b_dec_to_input":true,
            "normalize_activations":"none","metadata":{"model_name":"m","hook_name":"blocks.1"}}"#;
        let c = SaeConfig::from_slice(p, v6).unwrap();
        assert_eq!(c.architecture, Architecture::TopK);
        assert_eq!((c.d_in, c.d_sae, c.k), (4, 8, Some(2)));
        assert_eq!(c.hook_name.as_deref(), Some("blocks.1"));
        let flat = br#"{"d_in":4,"d_sae":8,"hook_point":"h","activation_fn_str":"topk",
            "activation_fn_kwargs":{"k":3},"normalize_activations":false,"apply_b_dec_to_input":false}"#;
        let c = SaeConfig::from_slice(p, flat).unwrap();
        assert_eq!(c.architecture, Architecture::TopK);
        assert_eq!(c.k, Some(3));
        assert!(!c.apply_b_dec_to_input);
        assert_eq!(c.hook_name.as_deref(), Some("h"));
    }

    #[test]
    fn bad_configs_are_errors() {
        let p = Path::new("cfg.json");
        for (bad, needle) in [
            (
                &br#"{"architecture":"mystery","d_in":4,"d_sae":8}"#[..],
                "unknown SAE architecture",
            ),
            (
                br#"{"architecture":"topk","d_in":4,"d_sae":8}"#,
                "without \"k\"",
            ),
            (br#"{"d_in":0,"d_sae":8}"#, "positive integer"),
            (br#"{"d_in":4}"#, "no \"d_sae\""),
            (br#"{"d_in":4,"d_sae":99999999999999}"#, "positive integer"),
            (
                br#"{"d_in":4,"d_sae":8,"normalize_activations":"expected_average_only_in"}"#,
                "fold",
            ),
            (br#"[1]"#, "JSON object"),
        ] {
            let e = SaeConfig::from_slice(p, bad).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains("cfg.json"), "{e}");
        }
    }
}
