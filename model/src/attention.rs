//! Multi-head self-attention: [`SelfAttention`] (`attention.self`), [`AttentionOutput`]
//! (`attention.output`) and the two together, [`Attention`].

use tch::{nn, Tensor};

use crate::config::ElectraConfig;
use crate::dropout::{attention, dropout};
use crate::layers::{linear, LayerNorm};

/// `attention.self`: the `query`, `key` and `value` projections and fused scaled dot-product
/// attention ([`crate::dropout::attention`]).
#[derive(Debug)]
pub struct SelfAttention {
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    num_heads: i64,
    head_dim: i64,
    dropout: f64,
}

impl SelfAttention {
    /// Creates `p / "query"`, `p / "key"`, `p / "value"`, each `[H, H]` with bias `[H]`.
    pub fn new(p: &nn::Path, cfg: &ElectraConfig) -> Self {
        let hidden = cfg.hidden_size;
        SelfAttention {
            query: linear(&(p / "query"), hidden, hidden, cfg),
            key: linear(&(p / "key"), hidden, hidden, cfg),
            value: linear(&(p / "value"), hidden, hidden, cfg),
            num_heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
            dropout: cfg.attention_probs_dropout_prob,
        }
    }

    /// Attends from every position to the real positions of the same sequence.
    ///
    /// # Shapes
    /// - `hidden`: `[batch, seq, H]`
    /// - `key_mask`: `[batch, 1, 1, seq]` Bool, true where the key is a real token
    /// - returns the context `[batch, seq, H]`
    ///
    /// Callers (the [`Encoder`](crate::encoder::Encoder)) check the shapes.
    pub fn forward_t(&self, hidden: &Tensor, key_mask: &Tensor, train: bool) -> Tensor {
        let size = hidden.size();
        let (batch, seq) = (size[0], size[1]);
        // The three projections as one product, [b, t, H] -> [b, t, 3H]: the input is read
        // once, and backward sums the three input gradients inside one product.
        let weight = Tensor::cat(&[&self.query.ws, &self.key.ws, &self.value.ws], 0);
        let bias = match (&self.query.bs, &self.key.bs, &self.value.bs) {
            (Some(q), Some(k), Some(v)) => Some(Tensor::cat(&[q, k, v], 0)),
            _ => None,
        };
        // [b, t, 3H] -> [b, t, 3, h, d] -> [3, b, h, t, d]
        let qkv = hidden
            .linear(&weight, bias.as_ref())
            .view([batch, seq, 3, self.num_heads, self.head_dim])
            .permute([2, 0, 3, 1, 4]);
        // unbind, not three selects: its backward stacks the three gradients in one op.
        let parts = qkv.unbind(0);
        let (query, key, value) = (&parts[0], &parts[1], &parts[2]);
        // [b, h, t, d]; the mask [b, 1, 1, t] broadcasts over heads and queries.
        let context = attention(query, key, value, key_mask, self.dropout, train);
        // [b, h, t, d] -> [b, t, h, d] -> [b, t, H]
        context
            .transpose(1, 2)
            .reshape([batch, seq, self.num_heads * self.head_dim])
    }
}

/// `attention.output`: `dense` `[H, H]`, dropout, residual connection, `LayerNorm`.
#[derive(Debug)]
pub struct AttentionOutput {
    dense: nn::Linear,
    layer_norm: LayerNorm,
    dropout: f64,
}

impl AttentionOutput {
    /// Creates `p / "dense"` and `p / "LayerNorm"`.
    pub fn new(p: &nn::Path, cfg: &ElectraConfig) -> Self {
        AttentionOutput {
            dense: linear(&(p / "dense"), cfg.hidden_size, cfg.hidden_size, cfg),
            layer_norm: LayerNorm::new(&(p / "LayerNorm"), cfg.hidden_size, cfg.layer_norm_eps),
            dropout: cfg.hidden_dropout_prob,
        }
    }

    /// `LayerNorm(dropout(dense(context)) + residual)`.
    ///
    /// # Shapes
    /// `context`, `residual` and the result: `[batch, seq, H]`.
    pub fn forward_t(&self, context: &Tensor, residual: &Tensor, train: bool) -> Tensor {
        let projected = dropout(&context.apply(&self.dense), self.dropout, train);
        self.layer_norm.forward(&(projected + residual))
    }
}

/// `attention`: [`SelfAttention`] then [`AttentionOutput`] (post-LayerNorm).
#[derive(Debug)]
pub struct Attention {
    self_attention: SelfAttention,
    output: AttentionOutput,
}

impl Attention {
    /// Creates `p / "self"` and `p / "output"`.
    pub fn new(p: &nn::Path, cfg: &ElectraConfig) -> Self {
        Attention {
            self_attention: SelfAttention::new(&(p / "self"), cfg),
            output: AttentionOutput::new(&(p / "output"), cfg),
        }
    }

    /// # Shapes
    /// `hidden` `[batch, seq, H]`, `key_mask` `[batch, 1, 1, seq]` Bool -> `[batch, seq, H]`.
    pub fn forward_t(&self, hidden: &Tensor, key_mask: &Tensor, train: bool) -> Tensor {
        let context = self.self_attention.forward_t(hidden, key_mask, train);
        self.output.forward_t(&context, hidden, train)
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;
    use crate::test_support::rng_lock;

    #[test]
    fn fused_attention_equals_per_head_softmax_with_the_key_mask() {
        let _rng = rng_lock();
        let cfg = ElectraConfig {
            hidden_size: 8,
            num_attention_heads: 2,
            ..ElectraConfig::small()
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let attention = SelfAttention::new(&vs.root(), &cfg);
        let hidden = Tensor::randn([2, 5, 8], (Kind::Float, Device::Cpu));
        // Second sequence: last two tokens are padding.
        let real =
            Tensor::from_slice(&[true, true, true, true, true, true, true, true, false, false])
                .view([2, 5]);
        let fused = attention.forward_t(&hidden, &real.view([2, 1, 1, 5]), false);
        assert_eq!(fused.size(), [2, 5, 8]);

        let (query, key, value) = (
            hidden.apply(&attention.query),
            hidden.apply(&attention.key),
            hidden.apply(&attention.value),
        );
        for b in 0..2 {
            for head in 0..2 {
                let slice = |t: &Tensor| t.get(b).narrow(1, head * 4, 4); // [t, d]
                let scores = slice(&query).matmul(&slice(&key).tr()) / 2.0; // sqrt(4)
                let scores =
                    scores.masked_fill(&real.get(b).logical_not().unsqueeze(0), f64::NEG_INFINITY);
                let expected = scores.softmax(-1, Kind::Float).matmul(&slice(&value));
                let got = fused.get(b).narrow(1, head * 4, 4);
                assert!(
                    got.allclose(&expected, 1e-5, 1e-6, false),
                    "batch {b} head {head}"
                );
            }
        }
    }
}
