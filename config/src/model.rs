//! `[model]`: the discriminator's sizes, the generator's width, the objective and the loss
//! weights. All of it defines the experiment.

use serde::{Deserialize, Serialize};

/// The training objective.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Generator + discriminator (replaced token detection).
    #[default]
    Electra,
    /// Masked language modelling (BERT/RoBERTa): one encoder predicts the masked tokens;
    /// no generator. Pair it with `data.mask_strategy = "bert"` (80/10/10).
    Mlm,
}

/// How the generator's replacement tokens are drawn (the model crate implements both).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Sampler {
    /// Gumbel-max, as the reference implementation.
    #[default]
    Gumbel,
    /// Inverse-CDF: one uniform number per masked position.
    InverseCdf,
}

/// `[model]`: the discriminator's sizes (Hugging Face names), the generator's width, the
/// loss weights. Defaults: ELECTRA-Small.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// Training objective (default `electra`).
    pub objective: Objective,
    /// Factorized embedding size (default 128).
    pub embedding_size: i64,
    /// Discriminator width (default 256).
    pub hidden_size: i64,
    /// Layers, same for generator and discriminator (default 12).
    pub num_hidden_layers: i64,
    /// Attention heads of the discriminator (default 4).
    pub num_attention_heads: i64,
    /// FFN width of the discriminator (default 1024).
    pub intermediate_size: i64,
    /// Generator width as a fraction of the discriminator's (default 0.25).
    pub generator_fraction: f64,
    /// Position embeddings (default 512).
    pub max_position_embeddings: i64,
    /// Segment types (default 2).
    pub type_vocab_size: i64,
    /// Dropout after embeddings and in every block (default 0.1).
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities (default 0.1).
    pub attention_probs_dropout_prob: f64,
    /// LayerNorm epsilon (default 1e-12).
    pub layer_norm_eps: f64,
    /// Gumbel sampling temperature (default 1.0).
    pub temperature: f64,
    /// Never sample the original token (default false).
    pub disallow_correct: bool,
    /// How replacements are drawn: `gumbel` (default, the reference's Gumbel-max) or
    /// `inverse_cdf` (one random number per masked position instead of one per vocabulary
    /// entry); both sample exactly `softmax(logits / temperature)`.
    pub sampler: Sampler,
    /// Weight of the generator's MLM loss (default 1.0).
    pub gen_weight: f64,
    /// Weight of the discriminator's loss (default 50.0).
    pub disc_weight: f64,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            objective: Objective::Electra,
            embedding_size: 128,
            hidden_size: 256,
            num_hidden_layers: 12,
            num_attention_heads: 4,
            intermediate_size: 1024,
            generator_fraction: 0.25,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            layer_norm_eps: 1e-12,
            temperature: 1.0,
            disallow_correct: false,
            sampler: Sampler::Gumbel,
            gen_weight: 1.0,
            disc_weight: 50.0,
        }
    }
}
