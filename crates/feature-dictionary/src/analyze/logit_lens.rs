//! Logit lens: which output tokens a feature's decoder direction promotes and suppresses,
//! i.e. the largest and smallest entries of `W_dec[i] · W_Uᵀ` (the direct effect of the
//! feature on the logits, ignoring the final norm's scale).
//!
//! The unembedding is a `[vocab, d]` matrix: a GGUF model's `output.weight` (or, for models
//! with tied embeddings, `token_embd.weight`), or a safetensors tensor or `.npy` array with a
//! vocab file. A `[d, vocab]` matrix (TransformerLens' `W_U`) is transposed; a square one is
//! told by its name (`W_U` is `[d, vocab]`, the others `[vocab, d]`).

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
    /// Checks shapes (a `[d, vocab]` matrix is transposed; a square one is `[vocab, d]`).
    pub fn new(matrix: Matrix, tokens: Vec<String>) -> Result<Self> {
        Self::oriented(matrix, tokens, false).map_err(|(shape, n)| {
            Error::Invalid(format!(
                "unembedding is {shape} but the vocabulary has {n} tokens"
            ))
        })
    }

    /// The unembedding with one row per token, or its shape and the vocabulary size when
    /// neither dimension is the vocabulary's. A square matrix has tokens as rows unless
    /// `columns_are_tokens` (its name says it is `[d, vocab]`).
    fn oriented(
        matrix: Matrix,
        tokens: Vec<String>,
        columns_are_tokens: bool,
    ) -> std::result::Result<Self, (String, usize)> {
        let n = tokens.len();
        let matrix = if matrix.cols == n && (matrix.rows != n || columns_are_tokens) {
            matrix.transposed()
        } else if matrix.rows == n {
            matrix
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
        let (m, tokens, name) = super::embeddings::load_token_matrix(
            path,
            tensor,
            &["output.weight", "token_embd.weight"],
            &names,
            vocab,
        )?;
        // TransformerLens' `W_U` (also as `unembed.W_U`) is [d_model, d_vocab]; only a
        // square matrix needs its name to tell.
        let columns_are_tokens = name == "W_U" || name.ends_with(".W_U");
        Self::oriented(m, tokens, columns_are_tokens).map_err(|(shape, n)| {
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
        // Promoted means a positive contribution and suppressed a negative one: asked for
        // many, a list ends where the sign changes rather than run into the other side.
        let mut promoted = top_k(&scores, usize::MAX, k);
        promoted.retain(|&(_, s)| s > 0.0);
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
                .filter(|&(_, s)| s > 0.0)
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
        for rows in [vec![-2.0f32, -1.0, 0.5, 1.0, 2.0], vec![1.0; 5]] {
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
            for (t, _) in &lens.promoted {
                assert!(lens.suppressed.iter().all(|(u, _)| u != t), "{lens:?}");
            }
            // Promoted are positive, suppressed negative: a list ends at the sign change
            // (the tied positive scores list two promoted tokens and no suppressed one).
            assert!(lens.promoted.iter().all(|(_, s)| *s > 0.0), "{lens:?}");
            assert!(lens.suppressed.iter().all(|(_, s)| *s < 0.0), "{lens:?}");
            let sides = (lens.promoted.len(), lens.suppressed.len());
            assert!(sides == (2, 2) || sides == (2, 0), "{lens:?}");
        }
        let un = Unembedding::new(
            Matrix {
                rows: 5,
                cols: 1,
                data: vec![-2.0, -1.0, 0.5, 1.0, 2.0],
            },
            tokens,
        )
        .unwrap();
        let lens = un.lens(0, &[1.0], 2).unwrap();
        assert_eq!(
            lens.promoted,
            vec![("e".to_string(), 2.0), ("d".to_string(), 1.0)]
        );
        assert_eq!(
            lens.suppressed,
            vec![("a".to_string(), -2.0), ("b".to_string(), -1.0)]
        );
    }

    /// A square unembedding is read by its name: TransformerLens' `W_U` is [d, vocab] (it was
    /// read as [vocab, d], silently transposed logits), others [vocab, d]. A `.npy` array is
    /// read too (it was reported as a damaged safetensors file), a [d, vocab] one transposed.
    #[test]
    fn the_unembeddings_orientation_comes_from_its_shape_or_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let vocab = dir.path().join("vocab.json");
        std::fs::write(&vocab, r#"["x", "y", "z"]"#).unwrap();
        // Rows 0..3 of a 3×3 matrix: row r is 10·r + column.
        let square = Matrix {
            rows: 3,
            cols: 3,
            data: (0..9).map(|i| (10 * (i / 3) + i % 3) as f32).collect(),
        };
        // Feature direction e0: the logit of token t is entry (t, 0) of [vocab, d], or
        // entry (0, t) of [d, vocab].
        let top = |path: &std::path::Path, tensor: Option<&str>| {
            let un = Unembedding::load(path, tensor, Some(&vocab)).unwrap();
            un.lens(0, &[1.0, 0.0, 0.0], 1).unwrap().promoted[0].clone()
        };
        for (name, want) in [
            ("W_U", ("z".to_string(), 2.0)),
            ("unembed.W_U", ("z".to_string(), 2.0)),
            ("lm_head.weight", ("z".to_string(), 20.0)),
        ] {
            let path = dir.path().join(format!("{name}.safetensors"));
            super::super::weights::write_safetensors(&path, &[(name, &square)]).unwrap();
            assert_eq!(top(&path, Some(name)), want, "{name}");
            if name != "unembed.W_U" {
                assert_eq!(top(&path, None), want, "{name}, found by name");
            }
        }
        // [d = 2, vocab = 3] as .npy: transposed by its shape.
        let npy = dir.path().join("w_u.npy");
        crate::ingest::npy::write_f32(&npy, &[2, 3], &[1.0, 5.0, 3.0, 0.0, 0.0, 0.0]).unwrap();
        let un = Unembedding::load(&npy, None, Some(&vocab)).unwrap();
        assert_eq!(
            un.lens(0, &[1.0, 0.0], 1).unwrap().promoted[0],
            ("y".to_string(), 5.0)
        );
        let e = Unembedding::load(&npy, Some("W_U"), Some(&vocab))
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds one unnamed array"), "{e}");
    }
}
