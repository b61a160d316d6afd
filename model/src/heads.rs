//! The pre-training heads: [`DiscriminatorHead`] (replaced-token detection) and
//! [`GeneratorHead`] (masked language model, output tied to the token embeddings). Both
//! return logits; sigmoid and softmax belong to metrics and inference.

use tch::{nn, Tensor};

use crate::config::{Activation, ElectraConfig};
use crate::error::{ModelError, Result};
use crate::layers::{linear, LayerNorm};

/// Path component of the generator's output layer: `generator_lm_head.bias` is its variable.
pub const LM_HEAD: &str = "generator_lm_head";
/// Hugging Face name of the output layer's weight: the token embedding table, tied (it has
/// no variable of its own, see [`crate::params`]).
pub const LM_HEAD_WEIGHT: &str = "generator_lm_head.weight";

/// `discriminator_predictions`: `dense` `[H, H]`, activation, `dense_prediction` `[1, H]`.
#[derive(Debug)]
pub struct DiscriminatorHead {
    dense: nn::Linear,
    dense_prediction: nn::Linear,
    activation: Activation,
}

impl DiscriminatorHead {
    /// Creates `p / "dense"` and `p / "dense_prediction"`.
    pub fn new(p: &nn::Path, cfg: &ElectraConfig) -> Self {
        DiscriminatorHead {
            dense: linear(&(p / "dense"), cfg.hidden_size, cfg.hidden_size, cfg),
            dense_prediction: linear(&(p / "dense_prediction"), cfg.hidden_size, 1, cfg),
            activation: cfg.hidden_act,
        }
    }

    /// One logit per token, positive for "replaced".
    ///
    /// # Shapes
    /// `hidden` `[batch, seq, H]` -> `[batch, seq]`.
    pub fn forward_t(&self, hidden: &Tensor, _train: bool) -> Tensor {
        let projected = self.activation.forward(&hidden.apply(&self.dense));
        // [b, t, 1] -> [b, t]
        projected.apply(&self.dense_prediction).squeeze_dim(-1)
    }
}

/// `generator_predictions` (`dense` `[E, H_gen]`, activation, `LayerNorm` over `E`) and
/// `generator_lm_head`, whose weight is the shared token embedding table and whose bias
/// `[vocab]` is the head's own variable.
#[derive(Debug)]
pub struct GeneratorHead {
    dense: nn::Linear,
    layer_norm: LayerNorm,
    word_embeddings: Tensor,
    lm_bias: Tensor,
    activation: Activation,
}

impl GeneratorHead {
    /// Creates `p / "generator_predictions" / {"dense", "LayerNorm"}` and
    /// `p / "generator_lm_head" / "bias"`, where `p` is the generator's root; the output
    /// weight is `word_embeddings` `[vocab, E]` itself (tied, no new variable).
    pub fn new(p: &nn::Path, cfg: &ElectraConfig, word_embeddings: &Tensor) -> Result<Self> {
        let expected = [cfg.vocab_size, cfg.embedding_size];
        if word_embeddings.size() != expected {
            return Err(ModelError::Shape {
                what: "GeneratorHead word_embeddings",
                expected: format!("[vocab_size, embedding_size] = {expected:?}"),
                found: word_embeddings.size(),
            });
        }
        let predictions = p / "generator_predictions";
        Ok(GeneratorHead {
            dense: linear(
                &(&predictions / "dense"),
                cfg.hidden_size,
                cfg.embedding_size,
                cfg,
            ),
            layer_norm: LayerNorm::new(
                &(&predictions / "LayerNorm"),
                cfg.embedding_size,
                cfg.layer_norm_eps,
            ),
            word_embeddings: word_embeddings.shallow_clone(),
            lm_bias: (p / LM_HEAD).var("bias", &[cfg.vocab_size], nn::Init::Const(0.0)),
            activation: cfg.hidden_act,
        })
    }

    /// The bias of the output layer, `[vocab]`.
    pub fn lm_bias(&self) -> &Tensor {
        &self.lm_bias
    }

    /// Vocabulary logits, `LayerNorm(gelu(dense(hidden))) @ word_embeddings^T + bias`.
    ///
    /// # Shapes
    /// `hidden` `[..., H_gen]` (the masked positions only, `[m, H_gen]`) -> `[..., vocab]`.
    pub fn forward_t(&self, hidden: &Tensor, _train: bool) -> Tensor {
        let projected = self.activation.forward(&hidden.apply(&self.dense));
        let normalized = self.layer_norm.forward(&projected);
        // [m, E] x [V, E]^T + [V] -> [m, V]
        normalized.linear(&self.word_embeddings, Some(&self.lm_bias))
    }
}
