//! ELECTRA generator and discriminator in libtorch (`tch`), with Hugging Face parameter
//! names.
//!
//! The modules, in the order a forward pass meets them:
//!
//! 1. [`config`]: [`ElectraConfig`], the sizes (Hugging Face `config.json` field names),
//!    presets `small`/`base`/`large`, and the generator's config.
//! 2. [`embeddings`]: token, position and segment embeddings, LayerNorm, dropout.
//! 3. [`attention`]: multi-head self-attention (fused scaled dot product) with a padding
//!    mask, output projection, residual, LayerNorm.
//! 4. [`encoder`]: feed-forward block, post-LN BERT layer, the stack, and [`ElectraModel`]
//!    (embeddings, optional embedding projection, stack).
//! 5. [`heads`]: [`DiscriminatorHead`] (one logit per token) and [`GeneratorHead`]
//!    (vocabulary logits, tied to the token embeddings).
//! 6. [`sampling`]: Gumbel-max sampling of replacement tokens.
//! 7. [`electra`]: [`Electra`], both models in one `VarStore` with shared embeddings, and
//!    the pre-training forward pass (losses, corrupted ids, labels).
//! 8. [`stats`]: counts computed on the device, read back as [`ElectraStats`].
//! 9. [`hf`]: each model's tensors under their Hugging Face names, for export; the names
//!    are the `VarStore`'s ([`params`]).
//! 10. [`classifier`]: [`ElectraForSequenceClassification`], the encoder with a
//!     classification (or regression) head on `[CLS]`, for fine-tuning.
//!
//! Shared building blocks with Hugging Face initialisation are in [`layers`]; errors in
//! [`error`].
//!
//! ```
//! use electra_model::{Electra, ElectraConfig, ElectraInput, ElectraOptions, ElectraStats};
//! use tch::{nn, Device, Kind, Tensor};
//!
//! # fn main() -> Result<(), electra_model::ModelError> {
//! let disc = ElectraConfig {
//!     vocab_size: 100, embedding_size: 16, hidden_size: 32, num_hidden_layers: 2,
//!     num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 32,
//!     ..ElectraConfig::small()
//! };
//! let gen = disc.generator(0.5);
//! let vs = nn::VarStore::new(Device::Cpu);
//! let electra = Electra::new(&vs.root(), &disc, &gen)?;
//!
//! // Two sequences of 8 tokens, the second with 2 padding tokens; 103-like [MASK] = 4.
//! let input_ids = Tensor::from_slice(&[1i64, 4, 7, 8, 4, 9, 10, 2, 1, 11, 4, 12, 13, 2, 0, 0])
//!     .view([2, 8]);
//! let segment_ids = input_ids.zeros_like();
//! let attention_mask = input_ids.ne(0);
//! let masked_positions = Tensor::from_slice(&[1i64, 4, 10]); // b * 8 + position
//! let masked_labels = Tensor::from_slice(&[5i64, 6, 20]);
//! let input = ElectraInput {
//!     input_ids: &input_ids, segment_ids: &segment_ids, attention_mask: &attention_mask,
//!     masked_positions: &masked_positions, masked_labels: &masked_labels,
//! };
//! let output = electra.forward_t(&input, &ElectraOptions::default(), true)?;
//! assert_eq!(output.gen_logits.size(), [3, 100]);   // only the masked positions
//! assert_eq!(output.disc_logits.size(), [2, 8]);
//! output.loss.backward();
//! let stats = ElectraStats::from_tensor(&output.stats)?;   // the only host sync
//! assert_eq!((stats.masked, stats.real), (3.0, 14.0));
//! # Ok(())
//! # }
//! ```

pub mod attention;
pub mod classifier;
pub mod config;
pub mod dropout;
pub mod electra;
pub mod embeddings;
pub mod encoder;
pub mod error;
pub mod heads;
pub mod hf;
pub mod hf_config;
pub mod hf_import;
pub mod layers;
pub mod mlm;
pub mod params;
pub mod safetensors;
pub mod sampling;
pub mod stats;

pub use attention::{Attention, AttentionOutput, SelfAttention};
pub use classifier::{ClassificationHead, ElectraForSequenceClassification, ProblemType};
pub use config::{Activation, ElectraConfig};
pub use electra::{Electra, ElectraInput, ElectraOptions, ElectraOutput};
pub use embeddings::ElectraEmbeddings;
pub use encoder::{ElectraModel, Encoder, EncoderInput, EncoderLayer, Intermediate, Output};
pub use error::{ModelError, Result};
pub use heads::{DiscriminatorHead, GeneratorHead};
pub use mlm::MaskedLm;
pub use sampling::{gumbel_sample, inverse_cdf_sample, sample, Sampler};
pub use stats::ElectraStats;

#[cfg(test)]
mod test_support {
    use std::sync::{Mutex, MutexGuard};

    /// Torch's default generator is global: unit tests that draw random numbers
    /// (initialisation, sampling) take this lock so that `tch::manual_seed` means something.
    pub(crate) fn rng_lock() -> MutexGuard<'static, ()> {
        static RNG: Mutex<()> = Mutex::new(());
        RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
