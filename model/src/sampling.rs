//! Sampling replacement tokens from the generator's logits, in float32, without gradient.
//!
//! Two samplers draw from exactly the same distribution, `softmax(logits / temperature)`:
//!
//! - [`Sampler::Gumbel`] (default): `argmax(logits / temperature + g)` with
//!   `g = -log(-log(u + 1e-9) + 1e-9)`, `u ~ U[0, 1)`, as the official ELECTRA code does.
//!   It needs one uniform number per vocabulary entry per masked position (18.7M for a batch
//!   of 32 x 128 with a 30,522-token vocabulary), which dominates a CPU step.
//! - [`Sampler::InverseCdf`]: one uniform number per masked position, located in
//!   the cumulative distribution (accumulated in float64, so the rounding of 30k float32
//!   terms does not bias it). Several times cheaper on CPU.
//!
//! The noise comes from torch's default generator, so `tch::manual_seed` makes either
//! reproducible.

use tch::{Kind, Tensor};

/// How replacement tokens are drawn from the generator's distribution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampler {
    /// Gumbel-max, as the reference implementation.
    #[default]
    Gumbel,
    /// Inverse-CDF: one uniform number per row.
    InverseCdf,
}

/// Samples one token per row of `logits` from `softmax(logits / temperature)` with the
/// chosen sampler; see [`gumbel_sample`] for the shapes and `disallow`.
pub fn sample(
    logits: &Tensor,
    temperature: f64,
    disallow: Option<&Tensor>,
    sampler: Sampler,
) -> Result<Tensor> {
    match sampler {
        Sampler::Gumbel => gumbel_sample(logits, temperature, disallow),
        Sampler::InverseCdf => inverse_cdf_sample(logits, temperature, disallow),
    }
}

/// Inverse-CDF sampling: `searchsorted(cumsum(p), u * sum(p))` per row, in float64.
///
/// # Shapes
/// - `logits`: `[m, vocab]`; `disallow`: `[m]` Int64; returns `[m]` Int64
pub fn inverse_cdf_sample(
    logits: &Tensor,
    temperature: f64,
    disallow: Option<&Tensor>,
) -> Result<Tensor> {
    let (rows, vocab) = logits.size2()?;
    tch::no_grad(|| {
        let scaled = tempered(logits, temperature, disallow)?;
        let probs = scaled.f_softmax(-1, Kind::Float)?;
        let cdf = probs.f_cumsum(-1, Kind::Double)?;
        // [m, 1]: a point in [0, total) per row.
        let total = cdf.f_narrow(1, vocab - 1, 1)?;
        let u = Tensor::f_rand([rows, 1], (Kind::Double, logits.device()))? * &total;
        let index = u.f_searchsorted(&cdf, false, true, "right", None::<Tensor>)?;
        Ok(index.f_squeeze_dim(1)?.f_clamp_max(vocab - 1)?)
    })
}

/// `logits / temperature` in float32, detached, with the `disallow` labels' logits at
/// minus infinity; checks the temperature and the labels' shape.
fn tempered(logits: &Tensor, temperature: f64, disallow: Option<&Tensor>) -> Result<Tensor> {
    let (rows, _vocab) = logits.size2()?;
    if !(temperature > 0.0 && temperature.is_finite()) {
        return Err(ModelError::Option {
            option: "temperature",
            value: temperature.to_string(),
            reason: "must be positive and finite",
        });
    }
    let scaled = logits.detach().f_to_kind(Kind::Float)? / temperature;
    match disallow {
        Some(labels) => {
            check_shape("disallowed labels", labels, &[rows])?;
            check_int64("disallowed labels", labels)?;
            // [m] -> [m, 1]
            Ok(scaled.f_scatter_value(1, &labels.unsqueeze(1), f64::NEG_INFINITY)?)
        }
        None => Ok(scaled),
    }
}

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
    tch::no_grad(|| {
        let scaled = tempered(logits, temperature, disallow)?;
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
        for sampler in [Sampler::Gumbel, Sampler::InverseCdf] {
            let logits = Tensor::zeros([64, 50], (Kind::Float, tch::Device::Cpu));
            tch::manual_seed(7);
            let first = sample(&logits, 1.0, None, sampler).unwrap();
            tch::manual_seed(7);
            let second = sample(&logits, 1.0, None, sampler).unwrap();
            tch::manual_seed(8);
            let third = sample(&logits, 1.0, None, sampler).unwrap();
            assert!(first.equal(&second));
            assert!(
                !first.equal(&third),
                "another seed should give other samples"
            );
            assert_eq!(first.size(), [64]);
            assert_eq!(first.kind(), Kind::Int64);
        }
    }

    #[test]
    fn disallow_correct_never_returns_the_label() {
        let _rng = rng_lock();
        for sampler in [Sampler::Gumbel, Sampler::InverseCdf] {
            // Logits that put almost all mass on the label: without the option it is drawn.
            let labels =
                Tensor::arange_start(0, 200, (Kind::Int64, tch::Device::Cpu)).remainder(10);
            let logits = Tensor::zeros([200, 10], (Kind::Float, tch::Device::Cpu)).scatter_value(
                1,
                &labels.unsqueeze(1),
                30.0,
            );
            tch::manual_seed(1);
            let free = sample(&logits, 1.0, None, sampler).unwrap();
            assert!(free.equal(&labels), "a dominant logit is always drawn");
            let disallowed = sample(&logits, 1.0, Some(&labels), sampler).unwrap();
            let hits = disallowed
                .eq_tensor(&labels)
                .sum(Kind::Int64)
                .int64_value(&[]);
            assert_eq!(hits, 0);
            // Every other token is reachable.
            assert!(
                disallowed.min().int64_value(&[]) >= 0 && disallowed.max().int64_value(&[]) < 10
            );
        }
    }

    #[test]
    fn samples_follow_the_tempered_softmax() {
        let _rng = rng_lock();
        for sampler in [Sampler::Gumbel, Sampler::InverseCdf] {
            // p = softmax([0, ln 3]) = [0.25, 0.75]; at temperature 2, softmax([0, ln 3 / 2]):
            // p1 = sqrt(3) / (1 + sqrt(3)) = 0.634.
            let row = Tensor::from_slice(&[0.0f32, 3f32.ln()]);
            let logits = row.unsqueeze(0).repeat([20000, 1]);
            tch::manual_seed(3);
            let p1 = sample(&logits, 1.0, None, sampler)
                .unwrap()
                .to_kind(Kind::Float)
                .mean(Kind::Float)
                .double_value(&[]);
            assert!((p1 - 0.75).abs() < 0.015, "{sampler:?}: {p1}");
            let p1 = sample(&logits, 2.0, None, sampler)
                .unwrap()
                .to_kind(Kind::Float)
                .mean(Kind::Float)
                .double_value(&[]);
            assert!((p1 - 0.634).abs() < 0.015, "{p1}");
            assert!(sample(&logits, 0.0, None, sampler).is_err());
        }
    }
}
