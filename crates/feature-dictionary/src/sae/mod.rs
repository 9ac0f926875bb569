//! SAEs run in-process: load a SAELens directory (`cfg.json` + `sae_weights.safetensors`),
//! a Gemma Scope `params.npz` or an EleutherAI sparsify directory (`cfg.json` +
//! `sae.safetensors`), and encode residual activations block by block into sparse latents.
//!
//! Every architecture shares one loading path ([`Sae::load`]) and one matrix multiply
//! (`x'·W_enc` with the `gemm` crate on all cores); the per-architecture files only turn a
//! row of pre-activations into latents (`Activation`). The dense latents of a block live
//! in one reusable buffer and are sparsified at once, so the dense latents of the whole
//! input never exist.

mod batchtopk;
pub mod config;
mod gated;
mod groupmax;
mod jumprelu;
mod source;
mod standard;
mod topk;
pub mod weights;
pub mod write;

use std::path::{Path, PathBuf};

use rayon::prelude::*;

pub use config::{Architecture, Normalize, SaeConfig, SaeFormat};
pub use source::SaeSource;
pub use weights::Weights;

use crate::error::{Error, Result};
use crate::ingest::SparseRows;

/// Turns one token's pre-activations `x'·W_enc` (no bias yet) into its nonzero latents.
pub(crate) trait Activation: Send + Sync {
    /// `pre` may be overwritten; `scratch` is a per-thread buffer; nonzero latents are
    /// appended in ascending index order.
    fn activate(
        &self,
        pre: &mut [f32],
        scratch: &mut Vec<f32>,
        idx: &mut Vec<u32>,
        val: &mut Vec<f32>,
    );
}

/// ReLU that passes NaN through, so the accumulator can report it.
#[inline]
pub(crate) fn relu(v: f32) -> f32 {
    if v > 0.0 || v.is_nan() {
        v
    } else {
        0.0
    }
}

#[inline]
pub(crate) fn push_nonzero(idx: &mut Vec<u32>, val: &mut Vec<f32>, i: usize, v: f32) {
    if v != 0.0 || v.is_nan() {
        idx.push(i as u32);
        val.push(v);
    }
}

/// What the architecture files may read while loading.
pub(crate) struct LoadContext<'a> {
    config: &'a SaeConfig,
    weights: &'a mut Weights,
}

impl LoadContext<'_> {
    pub(crate) fn config(&self) -> &SaeConfig {
        self.config
    }

    pub(crate) fn weights_path(&self) -> &Path {
        self.weights.path()
    }

    pub(crate) fn has(&self, names: &[&str]) -> bool {
        self.weights.shape(names).is_some()
    }

    /// A required `[d_sae]` tensor.
    pub(crate) fn latent_vector(&mut self, names: &[&str]) -> Result<Vec<f32>> {
        self.weights.take(names, &[self.config.d_sae])
    }

    pub(crate) fn b_enc(&mut self) -> Result<Vec<f32>> {
        match self.config.format {
            SaeFormat::SaeLens => self.latent_vector(&["b_enc"]),
            SaeFormat::Sparsify => self.latent_vector(&["encoder.bias"]),
        }
    }

    /// Norm of each decoder row (`W_dec [d_sae, d_in]`).
    pub(crate) fn decoder_norms(&mut self) -> Result<Vec<f32>> {
        let d_in = self.config.d_in;
        let w = self
            .weights
            .take(&["W_dec", "w_dec"], &[self.config.d_sae, d_in])?;
        Ok(w.chunks_exact(d_in)
            .map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt())
            .collect())
    }
}

/// A loaded SAE, ready to encode.
pub struct Sae {
    path: PathBuf,
    config: SaeConfig,
    /// Row-major `[d_in, d_sae]` (SAELens), or `[d_sae, d_in]` as sparsify stores it: the
    /// multiply reads either through its strides, so neither layout is copied.
    w_enc: Vec<f32>,
    b_dec: Vec<f32>,
    activation: Box<dyn Activation>,
}

impl std::fmt::Debug for Sae {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sae")
            .field("path", &self.path)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The files [`Sae::load`] may read from the SAE directory `dir` (those that exist): a
/// command that writes must not take one of them for its output.
pub fn input_files(dir: &Path) -> Vec<PathBuf> {
    [
        "cfg.json",
        "sae_weights.safetensors",
        "sae.safetensors",
        "params.npz",
    ]
    .iter()
    .map(|name| dir.join(name))
    .filter(|p| p.exists())
    .collect()
}

impl Sae {
    /// Loads an SAE directory: `cfg.json` + `sae_weights.safetensors` (SAELens),
    /// `params.npz` (Gemma Scope JumpReLU; `cfg.json` optional), or `cfg.json` +
    /// `sae.safetensors` (EleutherAI sparsify, one directory per hookpoint, whose name
    /// becomes the hook name).
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::format(
                dir,
                "expected an SAE directory holding cfg.json and sae_weights.safetensors (SAELens) or sae.safetensors (sparsify), or a Gemma Scope params.npz",
            ));
        }
        let cfg_path = dir.join("cfg.json");
        let st_path = dir.join("sae_weights.safetensors");
        let sparsify_path = dir.join("sae.safetensors");
        let npz_path = dir.join("params.npz");
        if st_path.is_file() && sparsify_path.is_file() {
            return Err(Error::format(
                dir,
                "holds both sae_weights.safetensors (SAELens) and sae.safetensors (sparsify); keep the one that cfg.json describes",
            ));
        }
        if sparsify_path.is_file() {
            if !cfg_path.is_file() {
                return Err(Error::format(
                    dir,
                    "has sae.safetensors but no cfg.json; a sparsify SAE directory holds both",
                ));
            }
            let mut config = SaeConfig::from_sparsify_file(&cfg_path)?;
            // sparsify names a coder only by its directory (the hookpoint, e.g. layers.9).
            config.hook_name = dir
                .canonicalize()
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()));
            let weights = Weights::from_safetensors(&sparsify_path)?;
            return Self::from_parts(dir, config, weights);
        }
        let weights = if st_path.is_file() {
            Weights::from_safetensors(&st_path)?
        } else if npz_path.is_file() {
            Weights::from_npz(&npz_path)?
        } else {
            return Err(no_weights_error(dir, cfg_path.is_file()));
        };
        let config = if cfg_path.is_file() {
            SaeConfig::from_file(&cfg_path)?
        } else if npz_path.is_file() && !st_path.is_file() {
            // Gemma Scope ships only params.npz: JumpReLU, inputs used as they are.
            let shape = weights.shape(&["w_enc", "W_enc"]).ok_or_else(|| {
                weights
                    .not_float_error(&["w_enc", "W_enc"])
                    .unwrap_or_else(|| {
                        Error::format(
                            &npz_path,
                            format!(
                                "no w_enc array; expected a Gemma Scope params.npz (it has {})",
                                weights.list()
                            ),
                        )
                    })
            })?;
            let [d_in, d_sae] = *shape else {
                return Err(Error::format(
                    &npz_path,
                    format!("w_enc has shape {shape:?}; expected [d_in, d_sae]"),
                ));
            };
            SaeConfig {
                format: SaeFormat::SaeLens,
                architecture: Architecture::JumpRelu,
                d_in: d_in as usize,
                d_sae: d_sae as usize,
                apply_b_dec_to_input: false,
                normalize: Normalize::None,
                k: None,
                rescale_acts_by_decoder_norm: false,
                model_name: None,
                hook_name: None,
            }
        } else {
            return Err(Error::format(dir, "no cfg.json in this SAE directory"));
        };
        Self::from_parts(dir, config, weights)
    }

    /// Builds an SAE from a config and its weights (checks every shape, and that every
    /// tensor it reads, and the decoder, is finite).
    pub fn from_parts(path: &Path, config: SaeConfig, mut weights: Weights) -> Result<Self> {
        let (d_in, d_sae) = (config.d_in, config.d_sae);
        let w_enc = match config.format {
            SaeFormat::SaeLens => weights.take(&["W_enc", "w_enc"], &[d_in, d_sae])?,
            SaeFormat::Sparsify => {
                if let Some(s) = weights.shape(&["encoder.weight"]) {
                    if s != [d_sae as u64, d_in as u64] {
                        return Err(Error::format(
                            weights.path(),
                            format!(
                                "encoder.weight has shape {s:?}; expected [num_latents, d_in] = [{d_sae}, {d_in}] from cfg.json (num_latents, or d_in × expansion_factor when it is 0)"
                            ),
                        ));
                    }
                }
                weights.take(&["encoder.weight"], &[d_sae, d_in])?
            }
        };
        let b_dec = weights.take(&["b_dec"], &[d_in])?;
        // W_dec is not needed to encode, but a mismatched one means a mismatched config.
        if let Some(s) = weights.shape(&["W_dec", "w_dec"]) {
            if s != [d_sae as u64, d_in as u64] {
                return Err(Error::format(
                    weights.path(),
                    format!("W_dec has shape {s:?}; expected [{d_sae}, {d_in}] from d_sae/d_in in the config"),
                ));
            }
        }
        if let Some(s) = weights.shape(&["W_skip"]) {
            if s != [d_in as u64, d_in as u64] {
                return Err(Error::format(
                    weights.path(),
                    format!(
                        "W_skip has shape {s:?}; expected [{d_in}, {d_in}] from d_in in the config"
                    ),
                ));
            }
        }
        let mut cx = LoadContext {
            config: &config,
            weights: &mut weights,
        };
        let activation: Box<dyn Activation> = match config.architecture {
            Architecture::Standard => Box::new(standard::Standard::load(&mut cx)?),
            Architecture::JumpRelu => Box::new(jumprelu::JumpRelu::load(&mut cx)?),
            Architecture::TopK => Box::new(topk::TopK::load(&mut cx)?),
            Architecture::BatchTopK => Box::new(batchtopk::load(&mut cx)?),
            Architecture::Gated => Box::new(gated::Gated::load(&mut cx)?),
            Architecture::GroupMax => Box::new(groupmax::GroupMax::load(&mut cx)?),
        };
        // The tensors read to encode were checked as they were taken. The decoder and the
        // skip connection are not read, but a non-finite one still means a damaged SAE, and
        // a NaN decoder row would break `similar` and `logits` on it later.
        weights.check_finite(&["W_dec", "w_dec"])?;
        weights.check_finite(&["W_skip"])?;
        Ok(Self {
            path: path.to_path_buf(),
            config,
            w_enc,
            b_dec,
            activation,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SaeConfig {
        &self.config
    }

    /// The first non-finite latent of `rows` (`(row, latent, value)`) whose residual row in
    /// `x` is all finite: the SAE's own weights overflowed float32 there, which is the
    /// SAE's fault, not the input's. Non-finite latents of non-finite residuals are not
    /// looked at (they are the input's, reported as such).
    pub fn overflow_in(&self, x: &[f32], rows: &SparseRows) -> Option<(usize, u32, f32)> {
        let d_in = self.d_in();
        (0..rows.indptr.len().saturating_sub(1)).find_map(|r| {
            let range = rows.indptr[r]..rows.indptr[r + 1];
            let bad = range.clone().find(|&e| !rows.values[e].is_finite())?;
            let residual = x.get(r * d_in..(r + 1) * d_in)?;
            residual
                .iter()
                .all(|v| v.is_finite())
                .then(|| (r, rows.indices[bad], rows.values[bad]))
        })
    }

    /// The error for an [`Sae::overflow_in`] finding at `sequence`, `position`.
    pub fn overflow_error(&self, latent: u32, value: f32, sequence: u64, position: u64) -> Error {
        Error::format(
            self.path(),
            format!(
                "latent {latent} at sequence {sequence}, position {position} is {value} although the residuals there are finite: this SAE's weights overflow float32 on them (a damaged file, or weights far too large)"
            ),
        )
    }

    /// Where it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Input width.
    pub fn d_in(&self) -> usize {
        self.config.d_in
    }

    /// Latents.
    pub fn d_sae(&self) -> usize {
        self.config.d_sae
    }

    /// Rows per matrix multiply: the dense block buffer stays near 64 MiB.
    pub fn block_rows(&self) -> usize {
        ((16usize << 20) / self.config.d_sae).clamp(64, 4096)
    }

    /// Encodes `x` (`rows × d_in`, row-major) and appends the rows' latents to `out`.
    pub fn encode(
        &self,
        x: &[f32],
        out: &mut SparseRows,
        buffers: &mut EncodeBuffers,
        threads: usize,
    ) {
        let d_in = self.config.d_in;
        assert_eq!(x.len() % d_in, 0, "input is not a whole number of rows");
        if out.indptr.is_empty() {
            out.indptr.push(out.indices.len());
        }
        let block = self.block_rows();
        for xb in x.chunks(block * d_in) {
            self.encode_block(xb, out, buffers, threads.max(1));
        }
    }

    fn encode_block(&self, x: &[f32], out: &mut SparseRows, b: &mut EncodeBuffers, threads: usize) {
        let (d_in, d_sae) = (self.config.d_in, self.config.d_sae);
        let m = x.len() / d_in;
        let input: &[f32] =
            if self.config.normalize == Normalize::None && !self.config.apply_b_dec_to_input {
                x
            } else {
                b.input.clear();
                b.input.extend_from_slice(x);
                for row in b.input.chunks_exact_mut(d_in) {
                    normalize_row(row, self.config.normalize);
                    if self.config.apply_b_dec_to_input {
                        for (v, bd) in row.iter_mut().zip(&self.b_dec) {
                            *v -= bd;
                        }
                    }
                }
                &b.input
            };
        b.pre.resize(m * d_sae, 0.0);
        let par = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        // Column and row strides of W_enc viewed as d_in × d_sae.
        let (rhs_cs, rhs_rs) = match self.config.format {
            SaeFormat::SaeLens => (1, d_sae as isize),
            SaeFormat::Sparsify => (d_in as isize, 1),
        };
        // SAFETY: `pre` is m × d_sae and `input` m × d_in, row-major; `w_enc` holds
        // d_in × d_sae values addressed by the strides above; dst is not read
        // (read_dst = false).
        unsafe {
            gemm::gemm(
                m,
                d_sae,
                d_in,
                b.pre.as_mut_ptr(),
                1,
                d_sae as isize,
                false,
                input.as_ptr(),
                1,
                d_in as isize,
                self.w_enc.as_ptr(),
                rhs_cs,
                rhs_rs,
                0.0,
                1.0,
                false,
                false,
                false,
                par,
            );
        }
        // Rows are independent: sparsify them in parallel chunks, then append in order.
        let rows_per_task = m.div_ceil(threads * 4).max(1);
        let act = &*self.activation;
        let parts: Vec<(Vec<usize>, Vec<u32>, Vec<f32>)> = b
            .pre
            .par_chunks_mut(rows_per_task * d_sae)
            .map(|chunk| {
                let mut scratch = Vec::new();
                let (mut counts, mut idx, mut val) = (Vec::new(), Vec::new(), Vec::new());
                for row in chunk.chunks_exact_mut(d_sae) {
                    let before = idx.len();
                    act.activate(row, &mut scratch, &mut idx, &mut val);
                    counts.push(idx.len() - before);
                }
                (counts, idx, val)
            })
            .collect();
        for (counts, idx, val) in parts {
            for c in counts {
                let last = *out.indptr.last().expect("indptr starts with 0");
                out.indptr.push(last + c);
            }
            out.indices.extend(idx);
            out.values.extend(val);
        }
    }
}

/// The error for a directory without SAE weights: when it holds hookpoint subdirectories
/// (a sparsify checkpoint or a hub download with one coder per layer), it lists them so the
/// user can pick one.
fn no_weights_error(dir: &Path, has_cfg: bool) -> Error {
    let mut subdirs: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let is_sae = |name: &String| {
        let d = dir.join(name);
        [
            "cfg.json",
            "sae.safetensors",
            "sae_weights.safetensors",
            "params.npz",
        ]
        .iter()
        .any(|f| d.join(f).is_file())
    };
    // Only the subdirectories that hold an SAE, unless none does.
    if subdirs.iter().any(is_sae) {
        subdirs.retain(is_sae);
    }
    subdirs.sort_by(|a, b| natural_cmp(a, b));
    if !has_cfg && !subdirs.is_empty() {
        let first = dir.join(&subdirs[0]);
        return Error::format(
            dir,
            format!(
                "holds no cfg.json but hookpoint subdirectories ({}); pass the one to use, e.g. --sae {}",
                subdirs.join(", "),
                first.display()
            ),
        );
    }
    Error::format(
        dir,
        "no sae_weights.safetensors (SAELens), sae.safetensors (sparsify) or params.npz (Gemma Scope) in this SAE directory",
    )
}

/// Orders names with their digit runs compared as numbers, so layers.2 < layers.10.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        let (Some(ca), Some(cb)) = (a.chars().next(), b.chars().next()) else {
            return a.len().cmp(&b.len());
        };
        if ca.is_ascii_digit() && cb.is_ascii_digit() {
            let na = a.len() - a.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let nb = b.len() - b.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let (da, db) = (
                a[..na].trim_start_matches('0'),
                b[..nb].trim_start_matches('0'),
            );
            let ord = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
            if ord.is_ne() {
                return ord;
            }
            (a, b) = (&a[na..], &b[nb..]);
        } else {
            if ca != cb {
                return ca.cmp(&cb);
            }
            (a, b) = (&a[ca.len_utf8()..], &b[cb.len_utf8()..]);
        }
    }
}

/// Per-token input normalization (SAELens `run_time_activation_norm_fn_in`). The norm and
/// variance are summed in f64: in f32 the squares of a row of ≈ 1e-25 underflow to 0 and
/// those of ≈ 2e19 overflow to ∞, and the row came out NaN or encoded as if it were zeros.
/// A row of zeros stays zeros under `constant_norm_rescale` (SAELens divides 0 by its norm
/// 0 and gives NaN; a zero row, such as padding, has no direction to rescale).
fn normalize_row(row: &mut [f32], how: Normalize) {
    match how {
        Normalize::None => {}
        Normalize::ConstantNormRescale => {
            let norm = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
            if norm > 0.0 {
                let s = (row.len() as f64).sqrt() / norm;
                row.iter_mut().for_each(|v| *v = (*v as f64 * s) as f32);
            }
        }
        Normalize::LayerNorm => {
            let n = row.len() as f64;
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = row
                .iter()
                .map(|&v| (v as f64 - mean) * (v as f64 - mean))
                .sum::<f64>()
                / (n - 1.0).max(1.0);
            let s = 1.0 / (var.sqrt() + 1e-5);
            row.iter_mut()
                .for_each(|v| *v = ((*v as f64 - mean) * s) as f32);
        }
    }
}

/// Reusable buffers of [`Sae::encode`] (input copy and one block of dense pre-activations).
#[derive(Debug, Default)]
pub struct EncodeBuffers {
    input: Vec<f32>,
    pre: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::natural_cmp;
    use super::{normalize_row, Normalize};

    /// A row and the same row scaled by 1e-25 or 1e20 normalize alike (the scale cancels);
    /// in f32 the sums of squares underflowed (NaN latents) or overflowed (a zero row). A
    /// row of zeros stays zeros under constant_norm_rescale.
    #[test]
    fn normalization_ignores_the_scale_of_a_row() {
        let row: Vec<f32> = (0..16).map(|i| (i as f32 - 7.5) * 0.3 + 0.1).collect();
        // (layer_norm's ε = 1e-5 dominates the std of a row of 1e-25: not scale-free there.)
        for (how, scales) in [
            (Normalize::ConstantNormRescale, &[1e-25f32, 1e20][..]),
            (Normalize::LayerNorm, &[1e20][..]),
        ] {
            let mut want = row.clone();
            normalize_row(&mut want, how);
            for &scale in scales {
                let mut got: Vec<f32> = row.iter().map(|v| v * scale).collect();
                normalize_row(&mut got, how);
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                        "{how:?} ×{scale}: {g} vs {w}"
                    );
                }
            }
        }
        let mut zeros = vec![0f32; 8];
        normalize_row(&mut zeros, Normalize::ConstantNormRescale);
        assert_eq!(zeros, vec![0f32; 8]);
    }

    #[test]
    fn hookpoints_sort_by_their_numbers() {
        let mut v = vec![
            "layers.10",
            "layers.9",
            "layers.0",
            "embed",
            "layers.10.mlp",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            [
                "embed",
                "layers.0",
                "layers.9",
                "layers.10",
                "layers.10.mlp"
            ]
        );
        assert!(natural_cmp("a01", "a1").is_eq());
    }
}
