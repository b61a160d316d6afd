//! Gumbel-max sampling of replacement tokens from the generator's logits.
//!
//! `argmax(logits / temperature + g)` with `g = -log(-log(u + 1e-9) + 1e-9)`, `u ~ U[0, 1)`
//! draws from `softmax(logits / temperature)`; it is what the official ELECTRA code does. The
//! noise comes from torch's default generator, so `tch::manual_seed` makes it reproducible.

use tch::{Kind, Tensor};

use crate::error::{check_int64, check_shape, ModelError, Result};

/// Offset inside the logarithms of the Gumbel noise, as the official code.
pub const GUMBEL_EPS: f64 = 1e-9;

/// Gumbel noise `-log(-log(u + eps) + eps)` with the shape and device of `like`, float32.
pub fn gumbel_noise(like: &Tensor) -> Result<Tensor> {
    let uniform = like.f_rand_like()?.f_to_kind(Kind::Float)?;
    Ok(-(-(uniform + GUMBEL_EPS).log() + GUMBEL_EPS).log())
}

/// Samples one token per row of `logits`, without gradient, in float32.
///
/// With `disallow = Some(labels)`, the label of each row is never drawn (its logit is set
/// to minus infinity after the temperature: the official code subtracts 1000).
///
/// # Shapes
/// - `logits`: `[m, vocab]`, any float kind (detached here)
/// - `disallow`: `[m]` Int64
/// - returns `[m]` Int64 token ids
pub fn gumbel_sample(
    logits: &Tensor,
    temperature: f64,
    disallow: Option<&Tensor>,
) -> Result<Tensor> {
    let (rows, _vocab) = logits.size2()?;
    if !(temperature > 0.0 && temperature.is_finite()) {
        return Err(ModelError::Option {
            option: "temperature",
            value: temperature.to_string(),
            reason: "must be positive and finite",
        });
    }
    if let Some(labels) = disallow {
        check_shape("disallowed labels", labels, &[rows])?;
        check_int64("disallowed labels", labels)?;
    }
    tch::no_grad(|| {
        let scaled = logits.detach().f_to_kind(Kind::Float)? / temperature;
        let scaled = match disallow {
            // [m] -> [m, 1]
            Some(labels) => scaled.f_scatter_value(1, &labels.unsqueeze(1), f64::NEG_INFINITY)?,
            None => scaled,
        };
        let perturbed = scaled + gumbel_noise(logits)?;
        Ok(perturbed.f_argmax(-1, false)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::rng_lock;

    #[test]
    fn sampling_is_reproducible_under_manual_seed() {
        let _rng = rng_lock();
        let logits = Tensor::zeros([64, 50], (Kind::Float, tch::Device::Cpu));
        tch::manual_seed(7);
        let first = gumbel_sample(&logits, 1.0, None).unwrap();
        tch::manual_seed(7);
        let second = gumbel_sample(&logits, 1.0, None).unwrap();
        tch::manual_seed(8);
        let third = gumbel_sample(&logits, 1.0, None).unwrap();
        assert!(first.equal(&second));
        assert!(
            !first.equal(&third),
            "another seed should give other samples"
        );
        assert_eq!(first.size(), [64]);
        assert_eq!(first.kind(), Kind::Int64);
    }

    #[test]
    fn disallow_correct_never_returns_the_label() {
        let _rng = rng_lock();
        // Logits that put almost all mass on the label: without the option it is drawn.
        let labels = Tensor::arange_start(0, 200, (Kind::Int64, tch::Device::Cpu)).remainder(10);
        let logits = Tensor::zeros([200, 10], (Kind::Float, tch::Device::Cpu)).scatter_value(
            1,
            &labels.unsqueeze(1),
            30.0,
        );
        tch::manual_seed(1);
        let free = gumbel_sample(&logits, 1.0, None).unwrap();
        assert!(free.equal(&labels), "a dominant logit is always drawn");
        let disallowed = gumbel_sample(&logits, 1.0, Some(&labels)).unwrap();
        let hits = disallowed
            .eq_tensor(&labels)
            .sum(Kind::Int64)
            .int64_value(&[]);
        assert_eq!(hits, 0);
        // Every other token is reachable.
        assert!(disallowed.min().int64_value(&[]) >= 0 && disallowed.max().int64_value(&[]) < 10);
    }

    #[test]
    fn samples_follow_the_tempered_softmax() {
        let _rng = rng_lock();
        // p = softmax([0, ln 3]) = [0.25, 0.75]; at temperature 2, softmax([0, ln 3 / 2]):
        // p1 = sqrt(3) / (1 + sqrt(3)) = 0.634.
        let row = Tensor::from_slice(&[0.0f32, 3f32.ln()]);
        let logits = row.unsqueeze(0).repeat([20000, 1]);
        tch::manual_seed(3);
        let p1 = gumbel_sample(&logits, 1.0, None)
            .unwrap()
            .to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[]);
        assert!((p1 - 0.75).abs() < 0.015, "{p1}");
        let p1 = gumbel_sample(&logits, 2.0, None)
            .unwrap()
            .to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[]);
        assert!((p1 - 0.634).abs() < 0.015, "{p1}");
        assert!(gumbel_sample(&logits, 0.0, None).is_err());
    }
}
