//! The transformer encoder: [`Intermediate`], [`Output`], [`EncoderLayer`] (a post-LayerNorm
//! BERT block), [`Encoder`] (the stack) and [`ElectraModel`] (embeddings, optional
//! projection, stack), Hugging Face's `ElectraModel` (`electra.*`).

use tch::{nn, Kind, Tensor};

use crate::attention::Attention;
use crate::config::{Activation, ElectraConfig};
use crate::dropout::dropout;
use crate::embeddings::ElectraEmbeddings;
use crate::error::{check_shape, ModelError, Result};
use crate::layers::{linear, LayerNorm};

/// Path component of an encoder inside every ELECTRA model with a head (`electra.*`).
pub const ENCODER_PREFIX: &str = "electra";
/// Path component of an encoder's embedding layer (`electra.embeddings.*`).
pub const EMBEDDINGS: &str = "embeddings";

/// `intermediate`: `dense` `[I, H]` and the activation (exact GELU).
#[derive(Debug)]
pub struct Intermediate {
    dense: nn::Linear,
    activation: Activation,
}

impl Intermediate {
    /// Creates `p / "dense"`.
    pub fn new(p: &nn::Path, cfg: &ElectraConfig) -> Self {
        Intermediate {
            dense: linear(&(p / "dense"), cfg.hidden_size, cfg.intermediate_size, cfg),
            activation: cfg.hidden_act,
        }
    }

    /// # Shapes
    /// `[batch, seq, H]` -> `[batch, seq, I]`.
    pub fn forward(&self, hidden: &Tensor) -> Tensor {
        self.activation.forward(&hidden.apply(&self.dense))
    }
}

/// `output`: `dense` `[H, I]`, dropout, residual connection, `LayerNorm`.
#[derive(Debug)]
pub struct Output {
    dense: nn::Linear,
    layer_norm: LayerNorm,
    dropout: f64,
}

impl Output {
    /// Creates `p / "dense"` and `p / "LayerNorm"`.
    pub fn new(p: &nn::Path, cfg: &ElectraConfig) -> Self {
        Output {
            dense: linear(&(p / "dense"), cfg.intermediate_size, cfg.hidden_size, cfg),
            layer_norm: LayerNorm::new(&(p / "LayerNorm"), cfg.hidden_size, cfg.layer_norm_eps),
            dropout: cfg.hidden_dropout_prob,
        }
    }

    /// `LayerNorm(dropout(dense(intermediate)) + residual)`.
    ///
    /// # Shapes
    /// `intermediate` `[batch, seq, I]`, `residual` `[batch, seq, H]` -> `[batch, seq, H]`.
    pub fn forward_t(&self, intermediate: &Tensor, residual: &Tensor, train: bool) -> Tensor {
        let projected = dropout(&intermediate.apply(&self.dense), self.dropout, train);
        self.layer_norm.forward(&(projected + residual))
    }
}

/// `encoder.layer.{i}`: attention, then the feed-forward block, each followed by residual
/// and LayerNorm (post-LN, as BERT and ELECTRA).
#[derive(Debug)]
pub struct EncoderLayer {
    attention: Attention,
    intermediate: Intermediate,
    output: Output,
}

impl EncoderLayer {
    /// Creates `p / "attention"`, `p / "intermediate"`, `p / "output"`.
    pub fn new(p: &nn::Path, cfg: &ElectraConfig) -> Self {
        EncoderLayer {
            attention: Attention::new(&(p / "attention"), cfg),
            intermediate: Intermediate::new(&(p / "intermediate"), cfg),
            output: Output::new(&(p / "output"), cfg),
        }
    }

    /// # Shapes
    /// `hidden` `[batch, seq, H]`, `key_mask` `[batch, 1, 1, seq]` Bool -> `[batch, seq, H]`.
    pub fn forward_t(&self, hidden: &Tensor, key_mask: &Tensor, train: bool) -> Tensor {
        let attended = self.attention.forward_t(hidden, key_mask, train);
        let intermediate = self.intermediate.forward(&attended);
        self.output.forward_t(&intermediate, &attended, train)
    }
}

/// `encoder`: `num_hidden_layers` blocks, `encoder.layer.{i}`.
#[derive(Debug)]
pub struct Encoder {
    layers: Vec<EncoderLayer>,
}

impl Encoder {
    /// Creates `p / "layer" / i` for every block.
    pub fn new(p: &nn::Path, cfg: &ElectraConfig) -> Self {
        let layer_root = p / "layer";
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| EncoderLayer::new(&(&layer_root / i), cfg))
            .collect();
        Encoder { layers }
    }

    /// The blocks, bottom first.
    pub fn layers(&self) -> &[EncoderLayer] {
        &self.layers
    }

    /// # Shapes
    /// `hidden` `[batch, seq, H]`, `key_mask` `[batch, 1, 1, seq]` Bool -> `[batch, seq, H]`.
    pub fn forward_t(&self, hidden: &Tensor, key_mask: &Tensor, train: bool) -> Tensor {
        let mut hidden = hidden.shallow_clone();
        for layer in &self.layers {
            hidden = layer.forward_t(&hidden, key_mask, train);
        }
        hidden
    }
}

/// The input of an encoder: token ids, segment ids and the padding mask.
#[derive(Debug, Clone, Copy)]
pub struct EncoderInput<'a> {
    /// `[batch, seq]` Int64 token ids.
    pub input_ids: &'a Tensor,
    /// `[batch, seq]` Int64 segment (token type) ids.
    pub segment_ids: &'a Tensor,
    /// `[batch, seq]`, Bool or integer, nonzero/true for real tokens, 0 for padding.
    pub attention_mask: &'a Tensor,
}

impl EncoderInput<'_> {
    /// Checks the shapes and returns `(batch, seq)`.
    pub fn check(&self) -> Result<(i64, i64)> {
        let (batch, seq) = self.input_ids.size2()?;
        check_shape("segment_ids", self.segment_ids, &[batch, seq])?;
        check_shape("attention_mask", self.attention_mask, &[batch, seq])?;
        Ok((batch, seq))
    }

    /// The padding mask as the key mask of attention, `[batch, 1, 1, seq]` Bool.
    pub fn key_mask(&self) -> Result<Tensor> {
        let (batch, seq) = self.check()?;
        // [b, t] -> [b, 1, 1, t]
        Ok(self
            .attention_mask
            .f_to_kind(Kind::Bool)?
            .view([batch, 1, 1, seq]))
    }
}

/// Hugging Face's `ElectraModel` (`electra.*`): embeddings, `embeddings_project` when
/// `embedding_size != hidden_size`, encoder.
#[derive(Debug)]
pub struct ElectraModel {
    embeddings: ElectraEmbeddings,
    embeddings_project: Option<nn::Linear>,
    encoder: Encoder,
}

impl ElectraModel {
    /// Creates `p / "embeddings"`, `p / "embeddings_project"` (when needed) and
    /// `p / "encoder"`.
    pub fn new(p: &nn::Path, cfg: &ElectraConfig) -> Result<Self> {
        cfg.validate()?;
        let embeddings = ElectraEmbeddings::new(&(p / EMBEDDINGS), cfg);
        Ok(Self::build(p, cfg, embeddings))
    }

    /// Creates a model that uses existing embeddings (no `p / "embeddings"` variables), and
    /// its own `p / "embeddings_project"` and `p / "encoder"`: the generator's side of
    /// ELECTRA's embedding sharing.
    pub fn with_embeddings(
        p: &nn::Path,
        cfg: &ElectraConfig,
        embeddings: ElectraEmbeddings,
    ) -> Result<Self> {
        cfg.validate()?;
        let width = embeddings.word_embeddings().size();
        if width != [cfg.vocab_size, cfg.embedding_size] {
            return Err(ModelError::Shape {
                what: "shared word_embeddings",
                expected: format!(
                    "[vocab_size, embedding_size] = [{}, {}]",
                    cfg.vocab_size, cfg.embedding_size
                ),
                found: width,
            });
        }
        Ok(Self::build(p, cfg, embeddings))
    }

    fn build(p: &nn::Path, cfg: &ElectraConfig, embeddings: ElectraEmbeddings) -> Self {
        let embeddings_project = (cfg.embedding_size != cfg.hidden_size).then(|| {
            linear(
                &(p / "embeddings_project"),
                cfg.embedding_size,
                cfg.hidden_size,
                cfg,
            )
        });
        let encoder = Encoder::new(&(p / "encoder"), cfg);
        ElectraModel {
            embeddings,
            embeddings_project,
            encoder,
        }
    }

    /// The embedding layer.
    pub fn embeddings(&self) -> &ElectraEmbeddings {
        &self.embeddings
    }

    /// The transformer stack.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// The last hidden states.
    ///
    /// # Shapes
    /// - `input`: each tensor `[batch, seq]`
    /// - returns `[batch, seq, H]`
    pub fn forward_t(&self, input: &EncoderInput, train: bool) -> Result<Tensor> {
        let key_mask = input.key_mask()?;
        let embedded = self
            .embeddings
            .forward_t(input.input_ids, input.segment_ids, train)?;
        let hidden = match &self.embeddings_project {
            Some(project) => embedded.apply(project),
            None => embedded,
        };
        Ok(self.encoder.forward_t(&hidden, &key_mask, train))
    }
}
