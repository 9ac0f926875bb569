//! `featdict encode`: residuals → SAE latents written in the delphi cache layout
//! (`locations [N, 3]` = (sequence, position, latent), `activations [N]`, optional
//! `tokens [n_seq, seq_len]`), readable by [`crate::ingest::delphi`] and by delphi itself.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::{EncodeBuffers, Sae};
use crate::error::{Error, Result};
use crate::ingest::delphi::{D_IN_KEY, D_SAE_KEY, HOOK_NAME_KEY, MODEL_NAME_KEY};
use crate::ingest::safetensors::header_bytes_with_metadata;
use crate::ingest::token_ids::TokenIdMatrix;
use crate::ingest::{DenseMatrix, SparseRows};

/// Latents written are those with |a| above this, as delphi's cache stores them.
pub const STORED_ABOVE: f32 = 1e-5;

/// How to write the latents.
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    /// Activations as float16 (delphi's default) instead of float32.
    pub f16: bool,
    /// Tokens per sequence (needed for 2-D residuals without tokens).
    pub seq_len: Option<u64>,
    /// Worker threads.
    pub threads: usize,
}

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EncodeSummary {
    /// Tokens encoded.
    pub tokens: u64,
    /// Sequences.
    pub sequences: u64,
    /// Nonzero latents stored.
    pub entries: u64,
    /// Latents per token on average.
    pub mean_l0: f64,
    /// `U16` or `U32`.
    pub locations_dtype: String,
    /// `F16` or `F32`.
    pub activations_dtype: String,
}

/// Encodes every row of `residuals` with `sae` and writes the latents to `out`.
pub fn encode_to_delphi(
    sae: &Sae,
    residuals: &DenseMatrix,
    tokens: Option<&TokenIdMatrix>,
    options: &EncodeOptions,
    out: &Path,
) -> Result<EncodeSummary> {
    if residuals.n_features() != sae.d_in() {
        return Err(Error::format(
            residuals.path(),
            format!(
                "residuals have {} features per token but the SAE expects d_in = {}",
                residuals.n_features(),
                sae.d_in()
            ),
        ));
    }
    let n_rows = residuals.n_rows();
    let seq_len = match (residuals.sequence_shape(), tokens, options.seq_len) {
        (Some((_, l)), _, _) => l,
        (None, Some(t), _) => t.seq_len,
        (None, None, Some(l)) => l,
        (None, None, None) => {
            return Err(Error::Invalid(format!(
            "{}: 2-D residuals need the sequence length: pass token ids (--token-ids) or --seq-len",
            residuals.path().display()
        )))
        }
    };
    if let Some(given) = options.seq_len.filter(|&l| l != seq_len) {
        let from = if residuals.sequence_shape().is_some() {
            "the residuals are shaped"
        } else {
            "the token ids have"
        };
        return Err(Error::Invalid(format!(
            "{}: --seq-len {given} contradicts the {seq_len} tokens per sequence {from}",
            residuals.path().display()
        )));
    }
    if seq_len == 0 || !n_rows.is_multiple_of(seq_len) {
        return Err(Error::Invalid(format!(
            "{}: {n_rows} rows are not a whole number of sequences of {seq_len} tokens",
            residuals.path().display()
        )));
    }
    let n_seq = n_rows / seq_len;
    if let Some(t) = tokens {
        if t.n_sequences != n_seq || t.seq_len != seq_len {
            return Err(Error::Invalid(format!(
                "{}: residuals are {n_seq} sequences × {seq_len} tokens but the token ids are {} × {}",
                residuals.path().display(),
                t.n_sequences,
                t.seq_len
            )));
        }
    }
    // Entries stream to two scratch files next to the output (memory stays one block), and
    // are copied behind the header once their count and largest location are known.
    let scratch = Scratch::new(out)?;
    let mut loc_w = std::io::BufWriter::new(
        std::fs::File::create(&scratch.locations).map_err(|e| Error::io(&scratch.locations, e))?,
    );
    let mut act_w = std::io::BufWriter::new(
        std::fs::File::create(&scratch.activations)
            .map_err(|e| Error::io(&scratch.activations, e))?,
    );
    let mut buffers = EncodeBuffers::default();
    let mut conv = Vec::new();
    let block = sae.block_rows() as u64 * 4;
    let (mut n, mut max) = (0u64, 0u32);
    let mut start = 0u64;
    while start < n_rows {
        let end = (start + block).min(n_rows);
        let x = residuals.rows_f32(start..end, &mut conv);
        let mut rows = SparseRows::default();
        sae.encode(x, &mut rows, &mut buffers, options.threads);
        if let Some((r, latent, value)) = sae.overflow_in(x, &rows) {
            let g = start + r as u64;
            return Err(sae.overflow_error(latent, value, g / seq_len, g % seq_len));
        }
        let mut lb = Vec::with_capacity(rows.values.len() * 12);
        let mut ab = Vec::with_capacity(rows.values.len() * 4);
        for r in 0..(end - start) as usize {
            let g = start + r as u64;
            let (s, p) = ((g / seq_len) as u32, (g % seq_len) as u32);
            for e in rows.indptr[r]..rows.indptr[r + 1] {
                let l = rows.indices[e];
                let v = rows.values[e];
                // delphi stores only |a| > 1e-5 (its `cache.py`): a ReLU or JumpReLU SAE's
                // barely positive latents are not firings a reader of the cache expects, and
                // in float16 the smallest of them would be written as exact zeros.
                if v.abs() <= STORED_ABOVE {
                    continue;
                }
                max = max.max(s).max(p).max(l);
                for x in [s, p, l] {
                    lb.extend(x.to_le_bytes());
                }
                // A NaN or infinite residual encodes to non-finite latents; written, the
                // file would only be refused later, by whatever reads it.
                if !v.is_finite() {
                    return Err(Error::format(
                        residuals.path(),
                        format!(
                            "latent {l} at sequence {s}, position {p} is {v}: the residuals hold NaN or infinite values there"
                        ),
                    ));
                }
                if options.f16 {
                    let h = half::f16::from_f32(v);
                    // Rounding to float16 turns a large latent into inf, which no reader
                    // accepts as an activation.
                    if h.is_infinite() {
                        return Err(Error::format(
                            residuals.path(),
                            format!(
                                "latent {l} at sequence {s}, position {p} is {v}, beyond float16's range (±65504); pass --f32 to store activations as float32"
                            ),
                        ));
                    }
                    ab.extend(h.to_le_bytes());
                } else {
                    ab.extend(v.to_le_bytes());
                }
                n += 1;
            }
        }
        loc_w
            .write_all(&lb)
            .map_err(|e| Error::io(&scratch.locations, e))?;
        act_w
            .write_all(&ab)
            .map_err(|e| Error::io(&scratch.activations, e))?;
        residuals.release_before(end);
        start = end;
    }
    loc_w
        .flush()
        .map_err(|e| Error::io(&scratch.locations, e))?;
    act_w
        .flush()
        .map_err(|e| Error::io(&scratch.activations, e))?;
    drop((loc_w, act_w));
    let loc_dtype = if max < 65536 { "U16" } else { "U32" };
    let loc_size = if max < 65536 { 2 } else { 4 };
    let act_dtype = if options.f16 { "F16" } else { "F32" };
    let act_size = if options.f16 { 2 } else { 4 };
    let tok_bytes: Option<Vec<u8>> = tokens.map(|t| {
        t.ids
            .iter()
            .flat_map(|&v| (v as i32).to_le_bytes())
            .collect()
    });
    let mut entries: Vec<(&str, &str, Vec<u64>, u64)> = vec![
        ("locations", loc_dtype, vec![n, 3], n * 3 * loc_size),
        ("activations", act_dtype, vec![n], n * act_size),
    ];
    if let (Some(t), Some(b)) = (tokens, &tok_bytes) {
        entries.push((
            "tokens",
            "I32",
            vec![t.n_sequences, t.seq_len],
            b.len() as u64,
        ));
    }
    // The file's locations are absolute latent indices; its width says how many latents
    // there are when the last ones never fired.
    let d_sae = sae.d_sae().to_string();
    let d_in = sae.d_in().to_string();
    let mut metadata = vec![(D_SAE_KEY, d_sae.as_str()), (D_IN_KEY, d_in.as_str())];
    // So that a build from the file names the model and layer, as `build --sae` does.
    let config = sae.config();
    if let Some(m) = config.model_name.as_deref().filter(|m| !m.is_empty()) {
        metadata.push((MODEL_NAME_KEY, m));
    }
    if let Some(h) = config.hook_name.as_deref().filter(|h| !h.is_empty()) {
        metadata.push((HOOK_NAME_KEY, h));
    }
    let header = header_bytes_with_metadata(&entries, &metadata);
    crate::store::write_atomically(out, |w| {
        w.write_all(&header)?;
        let mut r = std::io::BufReader::new(std::fs::File::open(&scratch.locations)?);
        if loc_size == 4 {
            std::io::copy(&mut r, w)?;
        } else {
            let mut four = [0u8; 4];
            for _ in 0..n * 3 {
                r.read_exact(&mut four)?;
                w.write_all(&four[..2])?;
            }
        }
        std::io::copy(&mut std::fs::File::open(&scratch.activations)?, w)?;
        if let Some(b) = &tok_bytes {
            w.write_all(b)?;
        }
        Ok(())
    })?;
    Ok(EncodeSummary {
        tokens: n_rows,
        sequences: n_seq,
        entries: n,
        mean_l0: if n_rows == 0 {
            0.0
        } else {
            n as f64 / n_rows as f64
        },
        locations_dtype: loc_dtype.into(),
        activations_dtype: act_dtype.into(),
    })
}

/// Scratch files next to the output, removed however the encode ends.
struct Scratch {
    locations: PathBuf,
    activations: PathBuf,
}

impl Scratch {
    fn new(out: &Path) -> Result<Self> {
        Ok(Self {
            locations: crate::store::temp_sibling(out, Some("locations"))?,
            activations: crate::store::temp_sibling(out, Some("activations"))?,
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.locations);
        let _ = std::fs::remove_file(&self.activations);
    }
}
