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
    sample_with(logits, temperature, disallow, sampler, None)
}

/// [`sample`], with the inverse-CDF sampler's uniform numbers given (`[m]` Float64 in
/// `[0, 1)`, e.g. from [`hashed_uniforms`]) instead of drawn from torch's generator. The
/// Gumbel sampler ignores them.
pub fn sample_with(
    logits: &Tensor,
    temperature: f64,
    disallow: Option<&Tensor>,
    sampler: Sampler,
    uniforms: Option<&Tensor>,
) -> Result<Tensor> {
    match sampler {
        Sampler::Gumbel => gumbel_sample(logits, temperature, disallow),
        Sampler::InverseCdf => inverse_cdf_sample_with(logits, temperature, disallow, uniforms),
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
    inverse_cdf_sample_with(logits, temperature, disallow, None)
}

/// [`inverse_cdf_sample`] with the row's uniform numbers given (`[m]`, any float kind, on
/// the logits' device), or drawn from torch's generator when `None`.
pub fn inverse_cdf_sample_with(
    logits: &Tensor,
    temperature: f64,
    disallow: Option<&Tensor>,
    uniforms: Option<&Tensor>,
) -> Result<Tensor> {
    let (rows, vocab) = logits.size2()?;
    tch::no_grad(|| {
        let scaled = tempered(logits, temperature, disallow)?;
        let probs = scaled.f_softmax(-1, Kind::Float)?;
        let cdf = probs.f_cumsum(-1, Kind::Double)?;
        // [m, 1]: a point in [0, total) per row.
        let total = cdf.f_narrow(1, vocab - 1, 1)?;
        let u = match uniforms {
            Some(u) => {
                check_shape("uniforms", u, &[rows])?;
                u.f_to_kind(Kind::Double)?.f_unsqueeze(1)?
            }
            None => Tensor::f_rand([rows, 1], (Kind::Double, logits.device()))?,
        } * &total;
        let index = u.f_searchsorted(&cdf, false, true, "right", None::<Tensor>)?;
        Ok(index.f_squeeze_dim(1)?.f_clamp_max(vocab - 1)?)
    })
}

/// One uniform number in `(0, 1)` per key, a pure function of `(seed, key)` computed on the
/// keys' device (a counter-based generator: 31-bit multiply-xorshift rounds in Int64, so
/// no product overflows).
///
/// The trainer keys each masked position by its place in the *global* batch (row and
/// position), so a replacement drawn on any rank of a data-parallel run is the one a
/// single process would draw.
///
/// # Shapes
/// - `keys`: `[m]` Int64, non-negative, below 2^62; returns `[m]` Float64
pub fn hashed_uniforms(seed: u64, keys: &Tensor) -> Result<Tensor> {
    const M31: i64 = 0x7FFF_FFFF;
    check_int64("keys", keys)?;
    let round = |x: &Tensor| -> Result<Tensor> {
        let x = x.f_bitwise_xor_tensor(&x.f_bitwise_right_shift_tensor_scalar(15)?)?;
        let x = (x * 0x2C1B_3C6D_i64).f_bitwise_and(M31)?;
        let x = x.f_bitwise_xor_tensor(&x.f_bitwise_right_shift_tensor_scalar(12)?)?;
        let x = (x * 0x297A_2D39_i64).f_bitwise_and(M31)?;
        Ok(x.f_bitwise_xor_tensor(&x.f_bitwise_right_shift_tensor_scalar(15)?)?)
    };
    let s0 = (seed as i64) & M31;
    let s1 = ((seed >> 31) as i64) & M31;
    let s2 = (seed >> 62) as i64;
    tch::no_grad(|| {
        let low = keys.f_bitwise_and(M31)?;
        let high = keys.f_bitwise_right_shift_tensor_scalar(31)?;
        let x = round(&low.f_bitwise_xor(s0)?)?;
        let x = round(&x.f_bitwise_xor_tensor(&high)?.f_bitwise_xor(s1)?)?;
        let x = round(&x.f_bitwise_xor(s2 ^ 0x5851_F42D)?)?;
        let y = round(&x.f_bitwise_xor(0x1405_7B7E)?)?;
        // 62 bits -> a float64 in (0, 1).
        let x = x.f_to_kind(Kind::Double)?;
        let y = y.f_to_kind(Kind::Double)?;
        Ok((x * 2f64.powi(31) + y + 0.5) / 2f64.powi(62))
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
    fn hashed_uniforms_are_uniform_and_a_function_of_seed_and_key_alone() {
        let keys = Tensor::arange(100_000, (Kind::Int64, tch::Device::Cpu)) * 65_536 + 17;
        let u = hashed_uniforms(42, &keys).unwrap();
        let values: Vec<f64> = Vec::try_from(&u).unwrap();
        assert!(values.iter().all(|&v| v > 0.0 && v < 1.0));
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
        assert!((var - 1.0 / 12.0).abs() < 0.002, "variance {var}");
        // Chi-square over 100 bins: 99 degrees of freedom, 99.9th percentile ~149.
        let mut bins = [0f64; 100];
        for v in &values {
            bins[(v * 100.0) as usize] += 1.0;
        }
        let expected = n / 100.0;
        let chi2: f64 = bins.iter().map(|b| (b - expected).powi(2) / expected).sum();
        assert!(chi2 < 149.0, "chi-square {chi2}");
        // Neighbouring keys are not correlated.
        let lag: f64 = values
            .windows(2)
            .map(|w| (w[0] - 0.5) * (w[1] - 0.5))
            .sum::<f64>()
            / (n - 1.0);
        assert!(lag.abs() < 0.002, "lag-1 covariance {lag}");
        // A key's number does not depend on the other keys in the tensor.
        let part = hashed_uniforms(42, &keys.narrow(0, 500, 10)).unwrap();
        assert!(part.equal(&u.narrow(0, 500, 10)));
        let again = hashed_uniforms(42, &keys).unwrap();
        assert!(again.equal(&u));
        let other = hashed_uniforms(43, &keys).unwrap();
        let same = other.eq_tensor(&u).sum(Kind::Int64).int64_value(&[]);
        assert_eq!(same, 0, "another seed gives other numbers");
        let high = hashed_uniforms(u64::MAX, &(keys + (1i64 << 40))).unwrap();
        assert!(high.min().double_value(&[]) > 0.0 && high.max().double_value(&[]) < 1.0);
    }

    #[test]
    fn inverse_cdf_with_given_uniforms_follows_the_softmax() {
        let row = Tensor::from_slice(&[0.0f32, 3f32.ln()]);
        let logits = row.unsqueeze(0).repeat([20000, 1]);
        let keys = Tensor::arange(20000, (Kind::Int64, tch::Device::Cpu));
        let u = hashed_uniforms(5, &keys).unwrap();
        let drawn = sample_with(&logits, 1.0, None, Sampler::InverseCdf, Some(&u)).unwrap();
        let p1 = drawn
            .to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[]);
        assert!((p1 - 0.75).abs() < 0.015, "{p1}");
        // The same numbers give the same draws, whatever torch's generator holds.
        tch::manual_seed(99);
        let again = sample_with(&logits, 1.0, None, Sampler::InverseCdf, Some(&u)).unwrap();
        assert!(again.equal(&drawn));
        let wrong = Tensor::zeros([3], (Kind::Double, tch::Device::Cpu));
        assert!(sample_with(&logits, 1.0, None, Sampler::InverseCdf, Some(&wrong)).is_err());
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
