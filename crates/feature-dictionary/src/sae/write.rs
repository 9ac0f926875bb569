//! `featdict encode`: residuals → SAE latents written in the delphi cache layout
//! (`locations [N, 3]` = (sequence, position, latent), `activations [N]`, optional
//! `tokens [n_seq, seq_len]`), readable by [`crate::ingest::delphi`] and by delphi itself.

use std::io::Write;
use std::path::Path;

use super::{EncodeBuffers, Sae};
use crate::error::{Error, Result};
use crate::ingest::safetensors::serialize;
use crate::ingest::token_ids::TokenIdMatrix;
use crate::ingest::{DenseMatrix, SparseRows};

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
                "{}: 2-D residuals need the sequence length: pass token ids (--token-ids/--tokens) or --seq-len",
                residuals.path().display()
            )))
        }
    };
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
    let mut locations: Vec<[u32; 3]> = Vec::new();
    let mut values: Vec<f32> = Vec::new();
    let mut buffers = EncodeBuffers::default();
    let mut conv = Vec::new();
    let block = sae.block_rows() as u64 * 4;
    let mut start = 0u64;
    while start < n_rows {
        let end = (start + block).min(n_rows);
        let x = residuals.rows_f32(start..end, &mut conv);
        let mut rows = SparseRows::default();
        sae.encode(x, &mut rows, &mut buffers, options.threads);
        for r in 0..(end - start) as usize {
            let g = start + r as u64;
            let (s, p) = ((g / seq_len) as u32, (g % seq_len) as u32);
            for e in rows.indptr[r]..rows.indptr[r + 1] {
                locations.push([s, p, rows.indices[e]]);
                values.push(rows.values[e]);
            }
        }
        residuals.release_before(end);
        start = end;
    }
    let max = locations.iter().flatten().copied().max().unwrap_or(0);
    let (loc_dtype, loc_bytes): (&str, Vec<u8>) = if max < 65536 {
        (
            "U16",
            locations
                .iter()
                .flatten()
                .flat_map(|&v| (v as u16).to_le_bytes())
                .collect(),
        )
    } else {
        (
            "U32",
            locations
                .iter()
                .flatten()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        )
    };
    let (act_dtype, act_bytes): (&str, Vec<u8>) = if options.f16 {
        (
            "F16",
            values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
        )
    } else {
        ("F32", values.iter().flat_map(|v| v.to_le_bytes()).collect())
    };
    let n = values.len() as u64;
    let tok_bytes: Option<Vec<u8>> = tokens.map(|t| {
        t.ids
            .iter()
            .flat_map(|&v| (v as i32).to_le_bytes())
            .collect()
    });
    let mut tensors: Vec<(&str, &str, Vec<u64>, &[u8])> = vec![
        ("locations", loc_dtype, vec![n, 3], &loc_bytes),
        ("activations", act_dtype, vec![n], &act_bytes),
    ];
    if let (Some(t), Some(b)) = (tokens, &tok_bytes) {
        tensors.push(("tokens", "I32", vec![t.n_sequences, t.seq_len], b));
    }
    let bytes = serialize(&tensors);
    crate::store::write_atomically(out, |w| w.write_all(&bytes))?;
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
