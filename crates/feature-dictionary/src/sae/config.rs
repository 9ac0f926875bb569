//! SAE `cfg.json`: SAELens's v6 layout (`architecture`, `metadata {…}`) and flat pre-6.0
//! layout (`hook_point`, `activation_fn_str`, `activation_fn_kwargs.k`, boolean
//! `normalize_activations`), and EleutherAI sparsify's (`d_in`, `num_latents` or
//! `expansion_factor`, `k`, `activation`, `transcode`).

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
    /// sparsify's `groupmax`: the latents split into `k` equal contiguous groups, and each
    /// group keeps its largest `relu(pre)` (the first one on ties).
    GroupMax,
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
            Architecture::GroupMax => "groupmax",
        }
    }
}

/// Which library wrote the weights: decides the tensor names and the encoder's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaeFormat {
    /// SAELens `sae_weights.safetensors` (and Gemma Scope `params.npz`, whose lowercase
    /// names are accepted too): `W_enc [d_in, d_sae]`, `b_enc`, `b_dec`, `W_dec`.
    SaeLens,
    /// EleutherAI sparsify `sae.safetensors`: an `nn.Linear` encoder, so `encoder.weight
    /// [d_sae, d_in]` (the transpose of SAELens's `W_enc`) and `encoder.bias`; `b_dec`,
    /// optional `W_dec [d_sae, d_in]` and `W_skip [d_in, d_in]`.
    Sparsify,
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
    /// Tensor names and encoder layout of the weights.
    pub format: SaeFormat,
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
    /// The model and layer the SAE was trained on: `model_name` and the layer of
    /// `hook_name` (9 for `blocks.9.hook_resid_post`; a sparsify directory's `layers.9`).
    pub fn provenance(&self) -> crate::ingest::Provenance {
        crate::ingest::Provenance {
            model_name: self.model_name.clone().filter(|m| !m.is_empty()),
            layer: self
                .hook_name
                .as_deref()
                .and_then(crate::ingest::delphi::hookpoint_layer),
        }
    }

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
        if get(&root, "d_sae").is_none()
            && (root.get("num_latents").is_some() || root.get("expansion_factor").is_some())
        {
            return Err(Error::format(
                path,
                "cfg.json has no \"d_sae\" but has num_latents/expansion_factor: that is an EleutherAI sparsify config, whose weights are sae.safetensors (not sae_weights.safetensors)",
            ));
        }
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
            Some(v @ (Value::Bool(true) | Value::String(_)))
                if v == "expected_average_only_in" || v == &Value::Bool(true) =>
            {
                return Err(Error::format(
                    path,
                    format!(
                        "normalize_activations {v} is not supported: its scaling factor is estimated from data and not stored — fold it into the weights (SAELens fold_activation_norm_scaling_factor) and set it to \"none\""
                    ),
                ))
            }
            Some(v) => {
                return Err(Error::format(
                    path,
                    format!(
                        "normalize_activations {v} is not a value SAELens knows; expected \"none\", \"expected_average_only_in\", \"constant_norm_rescale\" or \"layer_norm\""
                    ),
                ))
            }
        };
        let text = |key: &str| get(&root, key).and_then(|v| v.as_str()).map(str::to_string);
        Ok(Self {
            format: SaeFormat::SaeLens,
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

/// sparsify config flags that replace the plain `relu(x'·W + b)` encoder (training
/// experiments outside sparsify's main line); an SAE that sets one is refused rather than
/// encoded wrongly.
const SPARSIFY_UNSUPPORTED_FLAGS: [&str; 10] = [
    "signed",
    "matching_pursuit",
    "gram_lookup",
    "slice_encoder",
    "monet",
    "encoder_pkm",
    "encoder_kron",
    "encoder_monarch",
    "encoder_halut",
    "encoder_weird",
];

impl SaeConfig {
    /// Reads an EleutherAI sparsify `cfg.json` (the one beside `sae.safetensors`).
    pub fn from_sparsify_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_sparsify_slice(path, &bytes)
    }

    /// Parses sparsify `cfg.json` bytes (`path` is used in messages).
    ///
    /// sparsify writes every field of its `SparseCoderConfig` plus `d_in`. The width is
    /// `num_latents`, or `d_in × expansion_factor` when that is 0; the encoder is
    /// `relu(x'·encoder.weightᵀ + encoder.bias)` then `activation` (`topk`, or `groupmax`),
    /// with `x' = x − b_dec`, except for transcoders (`transcode`), whose input is used as
    /// it is. Keys that only matter for training or decoding (`normalize_decoder`,
    /// `multi_topk`, `skip_connection`, …) are ignored.
    pub fn from_sparsify_slice(path: &Path, bytes: &[u8]) -> Result<Self> {
        let root: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::format(path, format!("not a valid sparsify cfg.json: {e}")))?;
        if !root.is_object() {
            return Err(Error::format(
                path,
                "not a valid sparsify cfg.json: expected a JSON object",
            ));
        }
        let key = |k: &str| root.get(k).filter(|v| !v.is_null());
        // Integers may be written as 4 or 4.0; anything else is a damaged config.
        let int = |k: &str, v: &Value| -> Result<u64> {
            match v.as_f64() {
                Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= MAX_DIM as f64 => Ok(f as u64),
                _ => Err(Error::format(
                    path,
                    format!(
                        "sparsify cfg.json \"{k}\" is {v}; expected a non-negative integer up to {MAX_DIM}"
                    ),
                )),
            }
        };
        let d_in = match key("d_in") {
            None => return Err(Error::format(
                path,
                "sparsify cfg.json has no \"d_in\" (sparsify writes it beside the coder's config)",
            )),
            Some(v) => match int("d_in", v)? {
                0 => {
                    return Err(Error::format(
                        path,
                        "sparsify cfg.json \"d_in\" is 0; expected a positive integer",
                    ))
                }
                n => n,
            },
        };
        let num_latents = key("num_latents")
            .map(|v| int("num_latents", v))
            .transpose()?
            .unwrap_or(0);
        let d_sae = if num_latents > 0 {
            num_latents
        } else {
            let Some(v) = key("expansion_factor") else {
                return Err(Error::format(
                    path,
                    "sparsify cfg.json has neither a positive \"num_latents\" nor \"expansion_factor\"; the number of latents is num_latents, or d_in × expansion_factor when num_latents is 0",
                ));
            };
            let ef = int("expansion_factor", v)?;
            match d_in.checked_mul(ef) {
                Some(n) if n > 0 && n <= MAX_DIM => n,
                _ => {
                    return Err(Error::format(
                        path,
                        format!(
                            "sparsify cfg.json: num_latents is 0 and d_in {d_in} × expansion_factor {ef} is not a width between 1 and {MAX_DIM}"
                        ),
                    ))
                }
            }
        };
        let architecture = match key("activation") {
            // Versions before `activation` existed always used top-k.
            None => Architecture::TopK,
            Some(Value::String(s)) if s == "topk" => Architecture::TopK,
            Some(Value::String(s)) if s == "groupmax" => Architecture::GroupMax,
            Some(v) => {
                return Err(Error::format(
                    path,
                    format!(
                        "unsupported sparsify activation {v}; supported: \"topk\", \"groupmax\""
                    ),
                ))
            }
        };
        let k = match key("k") {
            None => {
                return Err(Error::format(
                    path,
                    "sparsify cfg.json has no \"k\" (the number of latents kept per token)",
                ))
            }
            Some(v) => match v.as_f64() {
                Some(k) if k >= 1.0 && k.fract() == 0.0 && k <= d_sae as f64 => k as u64,
                _ => {
                    return Err(Error::format(
                        path,
                        format!(
                            "sparsify cfg.json \"k\" is {v}; expected an integer between 1 and the number of latents, {d_sae}"
                        ),
                    ))
                }
            },
        };
        if architecture == Architecture::GroupMax && d_sae % k != 0 {
            return Err(Error::format(
                path,
                format!(
                    "sparsify groupmax needs the {d_sae} latents to split into k = {k} equal groups, but {d_sae} is not a multiple of {k}"
                ),
            ));
        }
        let flag = |k: &str| -> Result<bool> {
            match key(k) {
                None | Some(Value::Bool(false)) => Ok(false),
                Some(Value::Bool(true)) => Ok(true),
                Some(v) => Err(Error::format(
                    path,
                    format!("sparsify cfg.json \"{k}\" is {v}; expected true or false"),
                )),
            }
        };
        for f in SPARSIFY_UNSUPPORTED_FLAGS {
            if flag(f)? {
                return Err(Error::format(
                    path,
                    format!(
                        "sparsify cfg.json sets \"{f}\": true, a variant whose encoder is not relu(x·Wᵀ + b) then top-k; supported: sparse coders with activation \"topk\" or \"groupmax\" (autoencoders and transcoders)"
                    ),
                ));
            }
        }
        let transcode = flag("transcode")?;
        Ok(Self {
            format: SaeFormat::Sparsify,
            architecture,
            d_in: d_in as usize,
            d_sae: d_sae as usize,
            apply_b_dec_to_input: !transcode,
            normalize: Normalize::None,
            k: Some(k as usize),
            rescale_acts_by_decoder_norm: false,
            model_name: None,
            hook_name: None,
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
            (
                br#"{"d_in":4,"d_sae":8,"normalize_activations":"foo"}"#,
                "not a value SAELens knows; expected \"none\"",
            ),
            (br#"[1]"#, "JSON object"),
            (
                br#"{"d_in":4,"num_latents":0,"expansion_factor":2,"k":2}"#,
                "sparsify config, whose weights are sae.safetensors",
            ),
        ] {
            let e = SaeConfig::from_slice(p, bad).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains("cfg.json"), "{e}");
        }
    }

    #[test]
    fn sparsify_configs() {
        let p = Path::new("cfg.json");
        // As sparsify's save_to_disk writes it: every config field plus d_in.
        let c = SaeConfig::from_sparsify_slice(
            p,
            br#"{"activation":"topk","expansion_factor":32,"normalize_decoder":true,
            "num_latents":0,"k":32,"multi_topk":false,"skip_connection":false,
            "transcode":false,"d_in":16}"#,
        )
        .unwrap();
        assert_eq!(c.format, SaeFormat::Sparsify);
        assert_eq!(c.architecture, Architecture::TopK);
        assert_eq!((c.d_in, c.d_sae, c.k), (16, 512, Some(32)));
        assert!(c.apply_b_dec_to_input);
        assert_eq!(c.normalize, Normalize::None);
        // num_latents wins over expansion_factor; transcoders use their input as it is;
        // configs older than `activation` are top-k.
        let c = SaeConfig::from_sparsify_slice(
            p,
            br#"{"expansion_factor":32,"num_latents":24,"k":4,"transcode":true,"d_in":8}"#,
        )
        .unwrap();
        assert_eq!((c.d_sae, c.architecture), (24, Architecture::TopK));
        assert!(!c.apply_b_dec_to_input);
        let c = SaeConfig::from_sparsify_slice(
            p,
            br#"{"activation":"groupmax","expansion_factor":2,"k":4,"d_in":8}"#,
        )
        .unwrap();
        assert_eq!((c.d_sae, c.architecture), (16, Architecture::GroupMax));
    }

    #[test]
    fn bad_sparsify_configs_are_errors() {
        let p = Path::new("layers.9/cfg.json");
        for (bad, needle) in [
            (&br#"{"expansion_factor":4,"k":2}"#[..], "no \"d_in\""),
            (br#"{"d_in":0,"expansion_factor":4,"k":2}"#, "\"d_in\" is 0"),
            (
                br#"{"d_in":-3,"expansion_factor":4,"k":2}"#,
                "\"d_in\" is -3",
            ),
            (
                br#"{"d_in":4,"num_latents":0,"k":2}"#,
                "neither a positive \"num_latents\" nor \"expansion_factor\"",
            ),
            (
                br#"{"d_in":4,"num_latents":0,"expansion_factor":0,"k":2}"#,
                "d_in 4 × expansion_factor 0",
            ),
            (
                br#"{"d_in":67108864,"expansion_factor":32,"k":2}"#,
                "is not a width between 1 and",
            ),
            (br#"{"d_in":4,"expansion_factor":4}"#, "no \"k\""),
            (
                br#"{"d_in":4,"expansion_factor":4,"k":0}"#,
                "\"k\" is 0; expected an integer between 1 and the number of latents, 16",
            ),
            (
                br#"{"d_in":4,"expansion_factor":4,"k":17}"#,
                "\"k\" is 17; expected an integer between 1 and the number of latents, 16",
            ),
            (
                br#"{"d_in":4,"expansion_factor":4,"k":2.5}"#,
                "\"k\" is 2.5",
            ),
            (
                br#"{"d_in":4,"expansion_factor":4,"k":2,"activation":"jumprelu"}"#,
                "unsupported sparsify activation \"jumprelu\"; supported: \"topk\", \"groupmax\"",
            ),
            (
                br#"{"d_in":4,"expansion_factor":4,"k":3,"activation":"groupmax"}"#,
                "16 is not a multiple of 3",
            ),
            (
                br#"{"d_in":4,"expansion_factor":4,"k":2,"matching_pursuit":true}"#,
                "sets \"matching_pursuit\": true",
            ),
            (
                br#"{"d_in":4,"expansion_factor":4,"k":2,"signed":true}"#,
                "sets \"signed\": true",
            ),
            (
                br#"{"d_in":4,"expansion_factor":4,"k":2,"transcode":"yes"}"#,
                "\"transcode\" is \"yes\"; expected true or false",
            ),
            (br#"{"d_in":4"#, "not a valid sparsify cfg.json"),
            (br#"[1]"#, "JSON object"),
        ] {
            let e = SaeConfig::from_sparsify_slice(p, bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle) && e.contains("layers.9/cfg.json"), "{e}");
        }
    }
}
