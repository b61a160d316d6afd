//! [`ElectraEmbeddings`]: token + position + segment embeddings, LayerNorm, dropout.

use tch::{nn, Kind, Tensor};

use crate::config::ElectraConfig;
use crate::dropout::dropout;
use crate::error::{check_int64, check_shape, ModelError, Result};
use crate::layers::{normal_init, LayerNorm};

/// The embedding layer of an ELECTRA encoder (`electra.embeddings`):
/// `word_embeddings`, `position_embeddings`, `token_type_embeddings` (each `.weight`) and
/// `LayerNorm`. Position ids are `0..seq`, computed at each call (no `position_ids` buffer).
#[derive(Debug)]
pub struct ElectraEmbeddings {
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    token_type_embeddings: Tensor,
    layer_norm: LayerNorm,
    pad_token_id: i64,
    dropout: f64,
}

impl ElectraEmbeddings {
    /// Creates the variables under `p` (`p / "word_embeddings" / "weight"` ...), initialised
    /// as Hugging Face does: `normal(0, initializer_range)`, the padding row set to zero.
    pub fn new(p: &nn::Path, cfg: &ElectraConfig) -> Self {
        let init = normal_init(cfg);
        let (vocab, width) = (cfg.vocab_size, cfg.embedding_size);
        let word_embeddings = (p / "word_embeddings").var("weight", &[vocab, width], init);
        if (0..vocab).contains(&cfg.pad_token_id) {
            tch::no_grad(|| {
                let mut padding_row = word_embeddings.get(cfg.pad_token_id);
                let _ = padding_row.fill_(0.0);
            });
        }
        let position_embeddings =
            (p / "position_embeddings").var("weight", &[cfg.max_position_embeddings, width], init);
        let token_type_embeddings =
            (p / "token_type_embeddings").var("weight", &[cfg.type_vocab_size, width], init);
        let layer_norm = LayerNorm::new(&(p / "LayerNorm"), width, cfg.layer_norm_eps);
        ElectraEmbeddings {
            word_embeddings,
            position_embeddings,
            token_type_embeddings,
            layer_norm,
            pad_token_id: cfg.pad_token_id,
            dropout: cfg.hidden_dropout_prob,
        }
    }

    /// A second embedding layer over the same tensors (no new variables), with its own
    /// dropout probability: how the generator shares the discriminator's embeddings.
    pub fn shared(&self, dropout: f64) -> Self {
        ElectraEmbeddings {
            word_embeddings: self.word_embeddings.shallow_clone(),
            position_embeddings: self.position_embeddings.shallow_clone(),
            token_type_embeddings: self.token_type_embeddings.shallow_clone(),
            layer_norm: self.layer_norm.shared(),
            pad_token_id: self.pad_token_id,
            dropout,
        }
    }

    /// The token embedding table `[vocab, E]` (also the generator's output layer).
    pub fn word_embeddings(&self) -> &Tensor {
        &self.word_embeddings
    }

    /// The position embedding table `[max_position_embeddings, E]`.
    pub fn position_embeddings(&self) -> &Tensor {
        &self.position_embeddings
    }

    /// The segment embedding table `[type_vocab_size, E]`.
    pub fn token_type_embeddings(&self) -> &Tensor {
        &self.token_type_embeddings
    }

    /// The embedding LayerNorm.
    pub fn layer_norm(&self) -> &LayerNorm {
        &self.layer_norm
    }

    /// Embeds token ids.
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, seq]` Int64, `seq <= max_position_embeddings`
    /// - `segment_ids`: `[batch, seq]` Int64
    /// - returns `[batch, seq, E]`
    pub fn forward_t(
        &self,
        input_ids: &Tensor,
        segment_ids: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        let (batch, seq) = input_ids.size2()?;
        check_int64("input_ids", input_ids)?;
        check_shape("segment_ids", segment_ids, &[batch, seq])?;
        check_int64("segment_ids", segment_ids)?;
        let max_positions = self.position_embeddings.size()[0];
        if seq > max_positions {
            return Err(ModelError::Shape {
                what: "input_ids",
                expected: format!(
                    "[batch, seq] with seq <= max_position_embeddings = {max_positions}"
                ),
                found: vec![batch, seq],
            });
        }
        let positions = Tensor::f_arange(seq, (Kind::Int64, input_ids.device()))?;
        let words = Tensor::embedding(
            &self.word_embeddings,
            input_ids,
            self.pad_token_id,
            false,
            false,
        );
        let positions = Tensor::embedding(&self.position_embeddings, &positions, -1, false, false);
        let segments =
            Tensor::embedding(&self.token_type_embeddings, segment_ids, -1, false, false);
        // [b, t, E] + [t, E] + [b, t, E]
        let embedded = words + positions + segments;
        Ok(dropout(
            &self.layer_norm.forward(&embedded),
            self.dropout,
            train,
        ))
    }
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::*;
    use crate::test_support::rng_lock;

    #[test]
    fn embeddings_add_word_position_and_segment_then_normalise() {
        let _rng = rng_lock();
        let cfg = ElectraConfig {
            vocab_size: 20,
            embedding_size: 6,
            max_position_embeddings: 10,
            ..ElectraConfig::small()
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let embeddings = ElectraEmbeddings::new(&vs.root(), &cfg);
        let ids = Tensor::from_slice(&[3i64, 0, 7, 19]).view([1, 4]);
        let segments = Tensor::from_slice(&[0i64, 0, 1, 1]).view([1, 4]);
        let got = embeddings.forward_t(&ids, &segments, false).unwrap();
        let sum = embeddings.word_embeddings().index_select(0, &ids.view([4]))
            + embeddings.position_embeddings().narrow(0, 0, 4)
            + embeddings
                .token_type_embeddings()
                .index_select(0, &segments.view([4]));
        let expected = sum
            .layer_norm([6], None::<Tensor>, None::<Tensor>, 1e-12, false)
            .unsqueeze(0);
        assert!(got.allclose(&expected, 1e-5, 1e-6, false));
        // The padding row starts at zero.
        assert_eq!(
            embeddings
                .word_embeddings()
                .get(0)
                .abs()
                .sum(Kind::Float)
                .double_value(&[]),
            0.0
        );
        let too_long = Tensor::zeros([1, 11], (Kind::Int64, Device::Cpu));
        assert!(embeddings.forward_t(&too_long, &too_long, false).is_err());
    }
}
