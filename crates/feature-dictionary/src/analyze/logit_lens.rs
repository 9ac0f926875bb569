//! Logit lens: which output tokens a feature's decoder direction promotes and suppresses,
//! i.e. the largest and smallest entries of `W_dec[i] · W_Uᵀ` (the direct effect of the
//! feature on the logits, ignoring the final norm's scale).
//!
//! The unembedding is a `[vocab, d]` matrix: a GGUF model's `output.weight` (or, for models
//! with tied embeddings, `token_embd.weight`), or a safetensors tensor with a vocab file.

use serde::Serialize;

use super::similar::top_k;
use super::weights::Matrix;
use crate::error::{Error, Result};

/// Top promoted and suppressed tokens of one feature.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogitLens {
    /// Feature id.
    pub feature: u64,
    /// Tokens with the largest logit contribution, best first.
    pub promoted: Vec<(String, f32)>,
    /// Tokens with the most negative logit contribution, most negative first.
    pub suppressed: Vec<(String, f32)>,
}

/// An unembedding with its token strings.
#[derive(Debug, Clone, PartialEq)]
pub struct Unembedding {
    /// `[vocab, d]`.
    pub matrix: Matrix,
    /// Token text of each row.
    pub tokens: Vec<String>,
}

impl Unembedding {
    /// Checks shapes (a `[d, vocab]` matrix is transposed).
    pub fn new(matrix: Matrix, tokens: Vec<String>) -> Result<Self> {
        Self::oriented(matrix, tokens).map_err(|(shape, n)| {
            Error::Invalid(format!(
                "unembedding is {shape} but the vocabulary has {n} tokens"
            ))
        })
    }

    /// The unembedding with one row per token, or its shape and the vocabulary size when
    /// neither dimension is the vocabulary's.
    fn oriented(matrix: Matrix, tokens: Vec<String>) -> std::result::Result<Self, (String, usize)> {
        let matrix = if matrix.rows == tokens.len() {
            matrix
        } else if matrix.cols == tokens.len() {
            matrix.transposed()
        } else {
            return Err((format!("{}×{}", matrix.rows, matrix.cols), tokens.len()));
        };
        Ok(Self { matrix, tokens })
    }

    /// Loads from a GGUF (`output.weight`, else `token_embd.weight`) or safetensors file
    /// (`lm_head.weight`, `W_U`, `output.weight`, else an embedding name).
    pub fn load(
        path: &std::path::Path,
        tensor: Option<&str>,
        vocab: Option<&std::path::Path>,
    ) -> Result<Self> {
        // The unembedding's own names first (HuggingFace, TransformerLens, llama.cpp), then
        // the embedding's: models with tied embeddings store only that.
        let mut names = vec!["lm_head.weight", "W_U", "output.weight"];
        names.extend(super::embeddings::EMBEDDING_NAMES);
        let (m, tokens) = super::embeddings::load_token_matrix(
            path,
            tensor,
            &["output.weight", "token_embd.weight"],
            &names,
            vocab,
        )?;
        Self::oriented(m, tokens).map_err(|(shape, n)| {
            Error::format(
                path,
                format!(
                    "the unembedding is {shape} but {} has {n} tokens; one of its dimensions must be the vocabulary size",
                    super::embeddings::vocab_source(path, vocab)
                ),
            )
        })
    }

    /// Tokens listed each way at most: half the vocabulary, so that no token is listed as
    /// both promoted and suppressed.
    pub fn max_per_side(&self) -> usize {
        self.matrix.rows / 2
    }

    /// The logit lens of feature `id` with decoder direction `direction` (length d): up to
    /// `k` tokens each way, at most [`max_per_side`](Self::max_per_side), and never one
    /// token on both sides. An all-zero direction is an error: every token would score 0
    /// and be listed as promoted.
    pub fn lens(&self, id: u64, direction: &[f32], k: usize) -> Result<LogitLens> {
        let k = k.min(self.max_per_side());
        if direction.len() != self.matrix.cols {
            return Err(Error::Invalid(format!(
                "feature {id}'s decoder direction has {} dimensions but the unembedding has {}",
                direction.len(),
                self.matrix.cols
            )));
        }
        if direction.iter().all(|&v| v == 0.0) {
            return Err(Error::Invalid(format!(
                "feature {id}'s decoder direction is all zeros: it promotes and suppresses no token"
            )));
        }
        let scores: Vec<f32> = (0..self.matrix.rows)
            .map(|v| {
                self.matrix
                    .row(v)
                    .iter()
                    .zip(direction)
                    .map(|(a, b)| a * b)
                    .sum()
            })
            .collect();
        let promoted = top_k(&scores, usize::MAX, k);
        let mut neg: Vec<f32> = scores.iter().map(|s| -s).collect();
        // Tied scores could otherwise rank one token on both sides; non-finite is skipped.
        for &(t, _) in &promoted {
            neg[t as usize] = f32::NAN;
        }
        let name = |(t, s): (u32, f32)| (self.tokens[t as usize].clone(), s);
        Ok(LogitLens {
            feature: id,
            promoted: promoted.into_iter().map(name).collect(),
            suppressed: top_k(&neg, usize::MAX, k)
                .into_iter()
                .map(|(t, s)| name((t, -s)))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asked for more tokens than half the vocabulary (or with every score tied), the two
    /// lists listed the same tokens as promoted and suppressed.
    #[test]
    fn no_token_is_both_promoted_and_suppressed() {
        let tokens: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        for rows in [vec![1.0f32, 2.0, 3.0, 4.0, 5.0], vec![1.0; 5]] {
            let un = Unembedding::new(
                Matrix {
                    rows: 5,
                    cols: 1,
                    data: rows,
                },
                tokens.clone(),
            )
            .unwrap();
            assert_eq!(un.max_per_side(), 2);
            let lens = un.lens(0, &[1.0], 10).unwrap();
            assert_eq!((lens.promoted.len(), lens.suppressed.len()), (2, 2));
            for (t, _) in &lens.promoted {
                assert!(lens.suppressed.iter().all(|(u, _)| u != t), "{lens:?}");
            }
        }
    }
}
