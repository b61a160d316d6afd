//! Building blocks with Hugging Face initialisation: `linear` and [`LayerNorm`].
//!
//! Hugging Face's `ElectraPreTrainedModel._init_weights` draws Linear and Embedding weights
//! from `normal(0, initializer_range)`, sets biases to 0, LayerNorm weights to 1 and biases
//! to 0; tch's defaults (Kaiming uniform) differ, so every layer is built here.

use tch::{nn, Tensor};

use crate::config::ElectraConfig;

/// Normal initialisation of weights and embeddings, `normal(0, initializer_range)`.
pub(crate) fn normal_init(cfg: &ElectraConfig) -> nn::Init {
    nn::Init::Randn {
        mean: 0.0,
        stdev: cfg.initializer_range,
    }
}

/// A Linear layer `[out, in]` with weight `normal(0, initializer_range)` and bias 0, named
/// `p / "weight"` and `p / "bias"`, created in that order (the order the names are listed,
/// see [`params`](crate::params); `tch::nn::linear` creates the bias first).
pub(crate) fn linear(p: &nn::Path, in_dim: i64, out_dim: i64, cfg: &ElectraConfig) -> nn::Linear {
    let ws = p.var("weight", &[out_dim, in_dim], normal_init(cfg));
    let bs = p.var("bias", &[out_dim], nn::Init::Const(0.0));
    nn::Linear { ws, bs: Some(bs) }
}

/// Layer normalisation over the last dimension, with `weight` (init 1) and `bias` (init 0).
///
/// Unlike `tch::nn::LayerNorm` it can be rebuilt from existing tensors
/// ([`LayerNorm::shared`]), which the generator needs to share the discriminator's
/// embedding LayerNorm.
#[derive(Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    width: i64,
    eps: f64,
}

impl LayerNorm {
    /// Creates `p / "weight"` and `p / "bias"` of shape `[width]`.
    pub fn new(p: &nn::Path, width: i64, eps: f64) -> Self {
        let weight = p.var("weight", &[width], nn::Init::Const(1.0));
        let bias = p.var("bias", &[width], nn::Init::Const(0.0));
        LayerNorm {
            weight,
            bias,
            width,
            eps,
        }
    }

    /// A second handle on the same tensors (no new variables).
    pub fn shared(&self) -> Self {
        LayerNorm {
            weight: self.weight.shallow_clone(),
            bias: self.bias.shallow_clone(),
            width: self.width,
            eps: self.eps,
        }
    }

    /// The scale, `[width]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The shift, `[width]`.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// Normalises the last dimension (`[..., width]` -> `[..., width]`).
    pub fn forward(&self, input: &Tensor) -> Tensor {
        input.layer_norm(
            [self.width],
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            true,
        )
    }
}
