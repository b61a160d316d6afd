//! [`ElectraConfig`]: the sizes of one ELECTRA model (generator or discriminator), with the
//! field names of Hugging Face's `config.json`.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::error::{ModelError, Result};

/// Default `hidden_act`: GELU with the exact erf formulation.
pub const DEFAULT_HIDDEN_ACT: Activation = Activation::Gelu;
/// Default dropout probability (hidden states and attention probabilities).
pub const DEFAULT_DROPOUT: f64 = 0.1;
/// Default LayerNorm epsilon, as BERT and ELECTRA.
pub const DEFAULT_LAYER_NORM_EPS: f64 = 1e-12;
/// Default id of the padding token.
pub const DEFAULT_PAD_TOKEN_ID: i64 = 0;
/// Default standard deviation of the normal weight initialisation.
pub const DEFAULT_INITIALIZER_RANGE: f64 = 0.02;
/// Vocabulary of the uncased BERT WordPiece tokenizer that ELECTRA uses.
pub const BERT_UNCASED_VOCAB_SIZE: i64 = 30522;

/// The activation of the feed-forward block and the heads (Hugging Face's `hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// `"gelu"`: exact GELU, `x * Phi(x)` with erf (ELECTRA, BERT).
    #[serde(rename = "gelu")]
    Gelu,
    /// `"gelu_new"`: the tanh approximation of GELU (GPT-2).
    #[serde(rename = "gelu_new")]
    GeluTanh,
}

impl Activation {
    /// Applies the activation elementwise.
    pub fn forward(self, input: &Tensor) -> Tensor {
        match self {
            Activation::Gelu => input.gelu("none"),
            Activation::GeluTanh => input.gelu("tanh"),
        }
    }
}

fn default_hidden_act() -> Activation {
    DEFAULT_HIDDEN_ACT
}
fn default_dropout() -> f64 {
    DEFAULT_DROPOUT
}
fn default_layer_norm_eps() -> f64 {
    DEFAULT_LAYER_NORM_EPS
}
fn default_pad_token_id() -> i64 {
    DEFAULT_PAD_TOKEN_ID
}
fn default_initializer_range() -> f64 {
    DEFAULT_INITIALIZER_RANGE
}

/// Sizes and hyper-parameters of one ELECTRA encoder. Field names are those of Hugging
/// Face's `ElectraConfig` (`config.json`), so a config serialises into a file that
/// `transformers` reads. Unknown keys are accepted because Hugging Face files carry many
/// (`model_type`, `architectures`, `torch_dtype` ...).
///
/// `Default` is [`ElectraConfig::small`], the discriminator of ELECTRA-Small.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElectraConfig {
    /// Number of token ids (30522 for the uncased BERT vocabulary).
    pub vocab_size: i64,
    /// Width `E` of the token, position and type embeddings (128 for Small).
    pub embedding_size: i64,
    /// Width `H` of the encoder (256 for Small).
    pub hidden_size: i64,
    /// Number of transformer blocks (12 for Small).
    pub num_hidden_layers: i64,
    /// Attention heads per block; must divide `hidden_size` (4 for Small).
    pub num_attention_heads: i64,
    /// Width of the feed-forward block (1024 for Small).
    pub intermediate_size: i64,
    /// Activation of the feed-forward block and heads; default `"gelu"`.
    #[serde(default = "default_hidden_act")]
    pub hidden_act: Activation,
    /// Dropout on embeddings and block outputs; default 0.1.
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities; default 0.1.
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    /// Longest sequence the position embeddings cover (512).
    pub max_position_embeddings: i64,
    /// Number of segment (token type) ids (2).
    pub type_vocab_size: i64,
    /// LayerNorm epsilon; default 1e-12.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Id of the padding token; its embedding row starts at zero and gets no gradient;
    /// default 0.
    #[serde(default = "default_pad_token_id")]
    pub pad_token_id: i64,
    /// Standard deviation of the normal initialisation of weights; default 0.02.
    #[serde(default = "default_initializer_range")]
    pub initializer_range: f64,
}

impl Default for ElectraConfig {
    fn default() -> Self {
        Self::small()
    }
}

impl ElectraConfig {
    fn with_sizes(embedding: i64, hidden: i64, layers: i64, heads: i64, ffn: i64) -> Self {
        ElectraConfig {
            vocab_size: BERT_UNCASED_VOCAB_SIZE,
            embedding_size: embedding,
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            intermediate_size: ffn,
            hidden_act: DEFAULT_HIDDEN_ACT,
            hidden_dropout_prob: DEFAULT_DROPOUT,
            attention_probs_dropout_prob: DEFAULT_DROPOUT,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: DEFAULT_LAYER_NORM_EPS,
            pad_token_id: DEFAULT_PAD_TOKEN_ID,
            initializer_range: DEFAULT_INITIALIZER_RANGE,
        }
    }

    /// ELECTRA-Small discriminator: 12 layers, hidden 256, 4 heads, FFN 1024, embeddings 128
    /// (14M parameters).
    pub fn small() -> Self {
        Self::with_sizes(128, 256, 12, 4, 1024)
    }

    /// ELECTRA-Base discriminator: 12 layers, hidden 768, 12 heads, FFN 3072 (110M).
    pub fn base() -> Self {
        Self::with_sizes(768, 768, 12, 12, 3072)
    }

    /// ELECTRA-Large discriminator: 24 layers, hidden 1024, 16 heads, FFN 4096 (335M).
    pub fn large() -> Self {
        Self::with_sizes(1024, 1024, 24, 16, 4096)
    }

    /// The generator that goes with this discriminator: the same depth, vocabulary and
    /// embeddings, width `round(hidden_size * fraction)`, `max(1, width / 64)` heads (reduced
    /// until they divide the width) and FFN `4 * width`, as the official code does.
    /// ELECTRA uses 0.25 for Small and Large, 1/3 for Base. Call [`validate`](Self::validate)
    /// on the result: a tiny fraction gives a width of 0.
    pub fn generator(&self, fraction: f64) -> ElectraConfig {
        // A width is far below 2^53, so the float round trip is exact.
        let hidden = (self.hidden_size as f64 * fraction).round() as i64;
        let mut heads = (hidden / 64).max(1);
        while heads > 1 && hidden % heads != 0 {
            heads -= 1;
        }
        ElectraConfig {
            hidden_size: hidden,
            num_attention_heads: heads,
            intermediate_size: 4 * hidden,
            ..self.clone()
        }
    }

    /// Width of one attention head, `hidden_size / num_attention_heads`.
    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// Checks that every size is positive, heads divide the width, probabilities lie in
    /// `[0, 1)`, and the padding id is inside the vocabulary.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("embedding_size", self.embedding_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        for (field, value) in positive {
            if value <= 0 {
                return Err(ModelError::Config {
                    field,
                    value: value.to_string(),
                    reason: "must be positive",
                });
            }
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(ModelError::Config {
                field: "num_attention_heads",
                value: self.num_attention_heads.to_string(),
                reason: "must divide hidden_size",
            });
        }
        for (field, value) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&value) {
                return Err(ModelError::Config {
                    field,
                    value: value.to_string(),
                    reason: "must lie in [0, 1)",
                });
            }
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(ModelError::Config {
                field: "layer_norm_eps",
                value: self.layer_norm_eps.to_string(),
                reason: "must be positive and finite",
            });
        }
        if !(self.initializer_range > 0.0 && self.initializer_range.is_finite()) {
            return Err(ModelError::Config {
                field: "initializer_range",
                value: self.initializer_range.to_string(),
                reason: "must be positive and finite",
            });
        }
        if !(0..self.vocab_size).contains(&self.pad_token_id) {
            return Err(ModelError::Config {
                field: "pad_token_id",
                value: self.pad_token_id.to_string(),
                reason: "must be a token id below vocab_size",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_match_the_paper_table() {
        let small = ElectraConfig::small();
        assert_eq!(
            (
                small.num_hidden_layers,
                small.hidden_size,
                small.num_attention_heads
            ),
            (12, 256, 4)
        );
        assert_eq!((small.intermediate_size, small.embedding_size), (1024, 128));
        let base = ElectraConfig::base();
        assert_eq!(
            (
                base.hidden_size,
                base.num_attention_heads,
                base.intermediate_size
            ),
            (768, 12, 3072)
        );
        let large = ElectraConfig::large();
        assert_eq!(
            (
                large.num_hidden_layers,
                large.hidden_size,
                large.num_attention_heads
            ),
            (24, 1024, 16)
        );
        for cfg in [small, base, large] {
            assert_eq!(cfg.vocab_size, 30522);
            cfg.validate().unwrap();
        }
    }

    #[test]
    fn generator_sizes_follow_the_official_rule() {
        let small = ElectraConfig::small().generator(0.25);
        assert_eq!(
            (
                small.hidden_size,
                small.num_attention_heads,
                small.intermediate_size
            ),
            (64, 1, 256)
        );
        assert_eq!((small.num_hidden_layers, small.embedding_size), (12, 128));
        let base = ElectraConfig::base().generator(1.0 / 3.0);
        assert_eq!(
            (
                base.hidden_size,
                base.num_attention_heads,
                base.intermediate_size
            ),
            (256, 4, 1024)
        );
        let large = ElectraConfig::large().generator(0.25);
        assert_eq!(
            (
                large.hidden_size,
                large.num_attention_heads,
                large.num_hidden_layers
            ),
            (256, 4, 24)
        );
        assert!(ElectraConfig::small().generator(0.001).validate().is_err());
    }

    #[test]
    fn validate_rejects_heads_that_do_not_divide_the_width() {
        let cfg = ElectraConfig {
            num_attention_heads: 3,
            ..ElectraConfig::small()
        };
        let err = cfg.validate().unwrap_err();
        assert!(
            matches!(
                err,
                ModelError::Config {
                    field: "num_attention_heads",
                    ..
                }
            ),
            "{err}"
        );
        let cfg = ElectraConfig {
            pad_token_id: 30522,
            ..ElectraConfig::small()
        };
        assert!(cfg.validate().is_err());
        let cfg = ElectraConfig {
            hidden_dropout_prob: 1.0,
            ..ElectraConfig::small()
        };
        assert!(cfg.validate().is_err());
    }
}
