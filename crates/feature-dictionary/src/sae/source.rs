//! An [`ActivationSource`] that encodes a dense residual source with an SAE on the fly.

use std::path::Path;

use super::{EncodeBuffers, Sae};
use crate::error::{Error, Result};
use crate::ingest::{ActivationBatch, ActivationSource, BatchValues, SparseRows, Vocab};

/// Residual activations in, sparse SAE latents out — batch by batch, so only one block of
/// dense latents exists at a time.
pub struct SaeSource<S> {
    inner: S,
    sae: Sae,
    threads: usize,
    buffers: EncodeBuffers,
}

impl<S: ActivationSource> SaeSource<S> {
    /// Wraps `inner` (dense residuals, `d_in` features per row) with `sae`.
    pub fn new(inner: S, sae: Sae, threads: usize) -> Result<Self> {
        if inner.n_features() != sae.d_in() {
            return Err(Error::format(
                inner.describe(),
                format!(
                    "residuals have {} features per token but the SAE at {} expects d_in = {}",
                    inner.n_features(),
                    sae.path().display(),
                    sae.d_in()
                ),
            ));
        }
        Ok(Self {
            inner,
            sae,
            threads: threads.max(1),
            buffers: EncodeBuffers::default(),
        })
    }

    /// The SAE.
    pub fn sae(&self) -> &Sae {
        &self.sae
    }
}

impl<S: ActivationSource> ActivationSource for SaeSource<S> {
    fn n_features(&self) -> usize {
        self.sae.d_sae()
    }

    fn n_tokens_hint(&self) -> Option<u64> {
        self.inner.n_tokens_hint()
    }

    fn vocab(&self) -> &Vocab {
        self.inner.vocab()
    }

    fn tokens_decoded(&self) -> bool {
        self.inner.tokens_decoded()
    }

    fn token_notes(&self) -> &[String] {
        self.inner.token_notes()
    }

    fn describe(&self) -> &Path {
        self.inner.describe()
    }

    fn input_dim(&self) -> Option<usize> {
        Some(self.sae.d_in())
    }

    fn sequences(&self) -> Option<std::ops::Range<u64>> {
        self.inner.sequences()
    }

    fn provenance(&self) -> crate::ingest::Provenance {
        self.sae.config().provenance()
    }

    fn next_batch(&mut self) -> Result<Option<ActivationBatch<'_>>> {
        // The batch borrows the inner source until it is returned: name it beforehand.
        let input = self.inner.describe().to_path_buf();
        let Some(batch) = self.inner.next_batch()? else {
            return Ok(None);
        };
        let BatchValues::Dense(x) = batch.values else {
            return Err(Error::Invalid(format!(
                "{}: an SAE encodes dense residual activations, but this input is sparse",
                input.display()
            )));
        };
        let mut rows = SparseRows::default();
        self.sae
            .encode(x, &mut rows, &mut self.buffers, self.threads);
        if let Some((r, latent, value)) = self.sae.overflow_in(x, &rows) {
            let (sequence, position) = (batch.sequences[r], batch.positions[r] as u64);
            return Err(self.sae.overflow_error(latent, value, sequence, position));
        }
        Ok(Some(ActivationBatch {
            n_features: self.sae.d_sae(),
            tokens: batch.tokens,
            sequences: batch.sequences,
            positions: batch.positions,
            core: batch.core,
            values: BatchValues::Sparse(rows),
            token_keys: batch.token_keys,
        }))
    }
}
