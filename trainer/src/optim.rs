//! Our own AdamW, as in the ELECTRA reference (`AdamWeightDecayOptimizer`): Adam moments,
//! optional bias correction (off by default, as in the reference), and decoupled weight
//! decay added to the update, not to the gradient, and skipped for LayerNorm weights and
//! biases. We own its state (moments and step), so a checkpoint can hold it whole.
//!
//! The update for a parameter `p` with gradient `g` at learning rate `lr`:
//! ```text
//! m = b1 m + (1 - b1) g          v = b2 v + (1 - b2) g^2
//! u = m / (sqrt(v) + eps)        (with bias correction: m / (1 - b1^t), v / (1 - b2^t))
//! u = u + wd p                   (only for parameters that decay)
//! p = p - lr s u                (s: the parameter's learning-rate scale, 1 by default)
//! ```
//!
//! Per-parameter scales ([`AdamW::set_lr_scales`]) give layer-wise learning-rate decay for
//! fine-tuning; pre-training leaves them at 1.

use tch::{nn, Kind, Tensor};

use crate::config::TrainSection;

/// AdamW hyper-parameters (the learning rate comes from the schedule at each step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the root of the second moment.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Divide the moments by `1 - beta^t`.
    pub bias_correction: bool,
}

impl AdamWConfig {
    /// The pre-training optimizer `[train]` configures.
    pub fn from_train(t: &TrainSection) -> Self {
        Self {
            beta1: t.adam_beta1,
            beta2: t.adam_beta2,
            eps: t.adam_eps,
            weight_decay: t.weight_decay,
            bias_correction: t.bias_correction,
        }
    }
}

/// One optimised tensor and its moments.
#[derive(Debug)]
struct ParamState {
    name: String,
    param: Tensor,
    m: Tensor,
    v: Tensor,
    decay: bool,
    lr_scale: f64,
}

/// AdamW over a fixed, name-sorted list of parameters.
#[derive(Debug)]
pub struct AdamW {
    config: AdamWConfig,
    params: Vec<ParamState>,
    step: u64,
}

/// Whether a parameter takes weight decay: not LayerNorm weights, not biases.
pub fn takes_weight_decay(name: &str) -> bool {
    !(name.contains("LayerNorm") || name.contains("layer_norm") || name.ends_with("bias"))
}

impl AdamW {
    /// Optimises `named` parameters (sorted by name, so the state has a stable order).
    pub fn new(mut named: Vec<(String, Tensor)>, config: AdamWConfig) -> Self {
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let params = named
            .into_iter()
            .map(|(name, param)| {
                let m = param.zeros_like().detach();
                let v = param.zeros_like().detach();
                ParamState {
                    decay: takes_weight_decay(&name),
                    lr_scale: 1.0,
                    name,
                    param,
                    m,
                    v,
                }
            })
            .collect();
        Self {
            config,
            params,
            step: 0,
        }
    }

    /// Optimises every variable of `vs`.
    pub fn for_var_store(vs: &nn::VarStore, config: AdamWConfig) -> Self {
        Self::new(vs.variables().into_iter().collect(), config)
    }

    /// Updates completed so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// Names of the optimised parameters, in state order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|p| p.name.as_str())
    }

    /// Sets each parameter's learning-rate multiplier to `scale(name)`: the update at
    /// learning rate `lr` moves it by `lr * scale` (layer-wise decay).
    pub fn set_lr_scales(&mut self, scale: impl Fn(&str) -> f64) {
        for p in &mut self.params {
            p.lr_scale = scale(&p.name);
        }
    }

    /// `(name, learning-rate multiplier)` of every parameter, in state order.
    pub fn lr_scales(&self) -> impl Iterator<Item = (&str, f64)> {
        self.params.iter().map(|p| (p.name.as_str(), p.lr_scale))
    }

    /// Clears every gradient.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.param.zero_grad();
        }
    }

    /// The global L2 norm of all gradients, as a device scalar (no host sync).
    pub fn grad_norm(&self) -> Tensor {
        let norms: Vec<Tensor> = self
            .params
            .iter()
            .filter_map(|p| {
                let g = p.param.grad();
                g.defined().then(|| g.to_kind(Kind::Float).norm())
            })
            .collect();
        if norms.is_empty() {
            return Tensor::zeros([], (Kind::Float, tch::Device::Cpu));
        }
        Tensor::stack(&norms, 0).norm()
    }

    /// Scales gradients so their global norm is at most `max_norm`, as
    /// `tf.clip_by_global_norm` does (`g * max / max(norm, max)`). Returns the norm
    /// before clipping, as a device scalar.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> Tensor {
        let norm = self.grad_norm();
        if max_norm > 0.0 {
            let scale = (norm.clamp_min(max_norm)).reciprocal() * max_norm;
            tch::no_grad(|| {
                for p in &self.params {
                    let mut g = p.param.grad();
                    if g.defined() {
                        let _ = g.g_mul_(&scale.to_kind(g.kind()));
                    }
                }
            });
        }
        norm
    }

    /// Applies one update at learning rate `lr` from the current gradients.
    pub fn step(&mut self, lr: f64) {
        self.update(lr, None);
    }

    /// [`step`](Self::step) where `ok` (a boolean device scalar) is true; where it is false
    /// parameters and moments keep their values bit for bit. The decision stays on the
    /// device: no host synchronisation. The step count (for bias correction) advances
    /// either way.
    pub fn step_if(&mut self, lr: f64, ok: &Tensor) {
        self.update(lr, Some(ok));
    }

    fn update(&mut self, lr: f64, ok: Option<&Tensor>) {
        self.step += 1;
        let c = self.config;
        let (bc1, bc2) = if c.bias_correction {
            let t = self.step as i32;
            (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t))
        } else {
            (1.0, 1.0)
        };
        // Under a guard, a skipped step is a step with a zero gradient and zero weights on
        // every change, so nothing moves; `m + 0 * (0 - m)` is `m` bit for bit. An accepted
        // step multiplies by 1 and computes what an unguarded step does, bit for bit.
        let accept = ok.map(|ok| ok.to_kind(Kind::Float));
        tch::no_grad(|| {
            for p in &mut self.params {
                let g = p.param.grad();
                if !g.defined() {
                    continue;
                }
                let device = p.m.device();
                let accept = accept.as_ref().map(|a| a.to_device(device));
                let weight = |w: f64| match &accept {
                    Some(a) => a * w,
                    None => Tensor::from(w as f32).to_device(device),
                };
                let g = match ok {
                    Some(ok) => g.where_self(
                        &ok.to_device(device),
                        &Tensor::zeros([], (g.kind(), device)),
                    ),
                    None => g,
                };
                let _ = p.m.lerp_tensor_(&g, &weight(1.0 - c.beta1));
                let _ = p.v.lerp_tensor_(&g.square(), &weight(1.0 - c.beta2));
                let denom = if c.bias_correction {
                    (&p.v / bc2).sqrt().g_add_scalar_(c.eps)
                } else {
                    p.v.sqrt().g_add_scalar_(c.eps)
                };
                let mut update = if c.bias_correction {
                    (&p.m / bc1) / denom
                } else {
                    &p.m / denom
                };
                if p.decay && c.weight_decay != 0.0 {
                    let _ = update.g_add_(&(&p.param * c.weight_decay));
                }
                let _ = p.param.g_add_(&(update * weight(-lr * p.lr_scale)));
            }
        });
    }

    /// Restores the state [`state_tensors`](Self::state_tensors) gave, and the step count.
    /// Every moment must be present with its parameter's shape.
    pub fn load_state(
        &mut self,
        tensors: &std::collections::BTreeMap<String, Tensor>,
        step: u64,
    ) -> Result<(), String> {
        tch::no_grad(|| {
            for p in &mut self.params {
                for (prefix, target) in [("adam_m", &mut p.m), ("adam_v", &mut p.v)] {
                    let name = format!("{prefix}.{}", p.name);
                    let source = tensors
                        .get(&name)
                        .ok_or_else(|| format!("{name} is missing"))?;
                    if source.size() != target.size() {
                        return Err(format!(
                            "{name} has shape {:?}, the parameter {:?}",
                            source.size(),
                            target.size()
                        ));
                    }
                    target.f_copy_(source).map_err(|e| format!("{name}: {e}"))?;
                }
            }
            Ok(())
        })?;
        self.step = step;
        Ok(())
    }

    /// The optimizer state as named tensors (`adam_m.NAME`, `adam_v.NAME`), for checkpoints.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(self.params.len() * 2);
        for p in &self.params {
            out.push((format!("adam_m.{}", p.name), p.m.shallow_clone()));
            out.push((format!("adam_v.{}", p.name), p.v.shallow_clone()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(bias_correction: bool, weight_decay: f64) -> AdamWConfig {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-6,
            weight_decay,
            bias_correction,
        }
    }

    /// The update computed by hand in f64 for one scalar parameter.
    #[test]
    fn one_step_matches_the_formula() {
        let w = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut opt = AdamW::new(
            vec![("layer.weight".into(), w.shallow_clone())],
            config(false, 0.01),
        );
        let loss = (&w * Tensor::from_slice(&[3.0f32, 4.0])).sum(Kind::Float);
        loss.backward();
        opt.step(0.1);
        let got: Vec<f32> = Vec::try_from(&w.detach()).unwrap();
        for (i, (p0, g)) in [(1.0f64, 3.0f64), (-2.0, 4.0)].iter().enumerate() {
            let m = 0.1 * g;
            let v = 0.001 * g * g;
            let u = m / (v.sqrt() + 1e-6) + 0.01 * p0;
            let want = p0 - 0.1 * u;
            assert!(
                (got[i] as f64 - want).abs() < 1e-5,
                "{i}: {} vs {want}",
                got[i]
            );
        }
    }

    #[test]
    fn layer_norm_weights_and_biases_take_no_decay() {
        assert!(takes_weight_decay(
            "discriminator.electra.encoder.layer.0.output.dense.weight"
        ));
        assert!(!takes_weight_decay(
            "discriminator.electra.encoder.layer.0.output.LayerNorm.weight"
        ));
        assert!(!takes_weight_decay("generator.generator_lm_head.bias"));
        // With a zero gradient and no decay, the parameter must not move at all.
        let b = Tensor::from_slice(&[5.0f32]).set_requires_grad(true);
        let mut opt = AdamW::new(
            vec![("x.bias".into(), b.shallow_clone())],
            config(false, 0.5),
        );
        (&b * 0.0).sum(Kind::Float).backward();
        opt.step(1.0);
        assert_eq!(f32::try_from(&b.detach()).unwrap(), 5.0);
    }

    #[test]
    fn learning_rate_scales_multiply_each_parameter_s_step() {
        let a = Tensor::from_slice(&[0.0f32]).set_requires_grad(true);
        let b = Tensor::from_slice(&[0.0f32]).set_requires_grad(true);
        let mut opt = AdamW::new(
            vec![
                ("a".into(), a.shallow_clone()),
                ("b".into(), b.shallow_clone()),
            ],
            config(true, 0.0),
        );
        opt.set_lr_scales(|name| if name == "b" { 0.25 } else { 1.0 });
        assert_eq!(
            opt.lr_scales().collect::<Vec<_>>(),
            [("a", 1.0), ("b", 0.25)]
        );
        ((&a * 3.0) + (&b * 3.0)).sum(Kind::Float).backward();
        opt.step(0.01);
        let (ga, gb) = (
            f32::try_from(&a.detach()).unwrap(),
            f32::try_from(&b.detach()).unwrap(),
        );
        assert!((ga + 0.01).abs() < 1e-6, "{ga}");
        assert!((gb + 0.0025).abs() < 1e-6, "{gb}");
    }

    #[test]
    fn bias_correction_makes_the_first_step_lr_sized() {
        let w = Tensor::from_slice(&[0.0f32]).set_requires_grad(true);
        let mut opt = AdamW::new(vec![("w".into(), w.shallow_clone())], config(true, 0.0));
        (&w * 7.0).sum(Kind::Float).backward();
        opt.step(0.01);
        let got = f32::try_from(&w.detach()).unwrap();
        assert!((got + 0.01).abs() < 1e-6, "{got}");
    }

    #[test]
    fn an_accepted_guarded_step_equals_an_unguarded_one_bit_for_bit() {
        let run = |guarded: bool| {
            let w = Tensor::from_slice(&[0.5f32, -1.5, 2.25]).set_requires_grad(true);
            let mut opt = AdamW::new(vec![("w".into(), w.shallow_clone())], config(true, 0.01));
            for step in 0..3 {
                opt.zero_grad();
                (&w * Tensor::from_slice(&[3.0f32, -0.7, 0.01 * step as f32]))
                    .sum(Kind::Float)
                    .backward();
                if guarded {
                    opt.step_if(0.1, &Tensor::from(true));
                } else {
                    opt.step(0.1);
                }
            }
            Vec::<f32>::try_from(&w.detach()).unwrap()
        };
        assert_eq!(run(true), run(false));
    }

    #[test]
    fn a_guarded_step_with_a_non_finite_gradient_changes_nothing() {
        let w = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut opt = AdamW::new(vec![("w".into(), w.shallow_clone())], config(false, 0.01));
        (&w * Tensor::from_slice(&[3.0f32, 4.0]))
            .sum(Kind::Float)
            .backward();
        opt.step_if(0.1, &Tensor::from(true));
        let before: Vec<f32> = Vec::try_from(&w.detach()).unwrap();
        let moments: Vec<Vec<f32>> = opt
            .state_tensors()
            .iter()
            .map(|(_, t)| Vec::try_from(t).unwrap())
            .collect();
        assert_ne!(
            before,
            vec![1.0, -2.0],
            "an accepted step moves the weights"
        );
        opt.zero_grad();
        (&w * Tensor::from_slice(&[f32::NAN, 1.0]))
            .sum(Kind::Float)
            .backward();
        let norm = opt.clip_grad_norm(1.0);
        let ok = norm.isfinite();
        opt.step_if(0.1, &ok);
        let after: Vec<f32> = Vec::try_from(&w.detach()).unwrap();
        assert_eq!(
            before, after,
            "a skipped step leaves the weights bit for bit"
        );
        let moments_after: Vec<Vec<f32>> = opt
            .state_tensors()
            .iter()
            .map(|(_, t)| Vec::try_from(t).unwrap())
            .collect();
        assert_eq!(moments, moments_after, "and the moments");
    }

    #[test]
    fn state_round_trips_and_names_what_is_missing() {
        let w = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut opt = AdamW::new(vec![("w".into(), w.shallow_clone())], config(true, 0.0));
        (&w * 3.0).sum(Kind::Float).backward();
        opt.step(0.1);
        let saved: std::collections::BTreeMap<String, Tensor> = opt
            .state_tensors()
            .into_iter()
            .map(|(n, t)| (n, t.copy()))
            .collect();
        let v = Tensor::from_slice(&[0.0f32, 0.0]).set_requires_grad(true);
        let mut other = AdamW::new(vec![("w".into(), v.shallow_clone())], config(true, 0.0));
        other.load_state(&saved, opt.step_count()).unwrap();
        assert_eq!(other.step_count(), 1);
        for ((_, a), (_, b)) in opt.state_tensors().iter().zip(other.state_tensors().iter()) {
            assert!(a.equal(b));
        }
        let mut partial = saved;
        partial.remove("adam_v.w");
        let err = other.load_state(&partial, 1).unwrap_err();
        assert!(err.contains("adam_v.w"), "{err}");
    }

    #[test]
    fn clipping_scales_to_the_global_norm() {
        let a = Tensor::from_slice(&[0.0f32, 0.0]).set_requires_grad(true);
        let b = Tensor::from_slice(&[0.0f32]).set_requires_grad(true);
        let mut opt = AdamW::new(
            vec![
                ("a".into(), a.shallow_clone()),
                ("b".into(), b.shallow_clone()),
            ],
            config(false, 0.0),
        );
        let loss = (&a * Tensor::from_slice(&[3.0f32, 0.0])).sum(Kind::Float)
            + (&b * 4.0).sum(Kind::Float);
        loss.backward();
        let norm = f32::try_from(&opt.clip_grad_norm(1.0)).unwrap();
        assert!((norm - 5.0).abs() < 1e-5);
        let clipped = f32::try_from(&opt.grad_norm()).unwrap();
        assert!((clipped - 1.0).abs() < 1e-5, "{clipped}");
        let ga: Vec<f32> = Vec::try_from(&a.grad()).unwrap();
        assert!((ga[0] - 0.6).abs() < 1e-6);
    }
}
