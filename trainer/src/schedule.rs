//! The learning-rate schedule of the reference implementation: linear warmup applied
//! together with linear decay to zero at the last step,
//! `lr(step) = peak * min(1, step / warmup) * max(0, 1 - step / total)`,
//! where `step` counts completed updates (the first update uses step 0, as the
//! reference's `global_step` does, so its learning rate is 0).

use crate::config::TrainSection;

/// Warmup + linear decay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearSchedule {
    /// Peak learning rate.
    pub peak: f64,
    /// Warmup steps (0 = none).
    pub warmup_steps: u64,
    /// Step at which the rate reaches 0.
    pub total_steps: u64,
}

impl LinearSchedule {
    /// The pre-training schedule `[train]` configures.
    pub fn from_train(t: &TrainSection) -> Self {
        Self {
            peak: t.learning_rate,
            warmup_steps: t.warmup_steps,
            total_steps: t.total_steps,
        }
    }

    /// Warmup over `warmup_fraction` of `total_steps` (rounded), then decay to 0 at the end.
    pub fn with_warmup_fraction(peak: f64, warmup_fraction: f64, total_steps: u64) -> Self {
        Self {
            peak,
            warmup_steps: (total_steps as f64 * warmup_fraction).round() as u64,
            total_steps,
        }
    }

    /// The learning rate for the update made at `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        let step = step as f64;
        let warmup = if self.warmup_steps == 0 {
            1.0
        } else {
            (step / self.warmup_steps as f64).min(1.0)
        };
        let decay = (1.0 - step / self.total_steps.max(1) as f64).max(0.0);
        self.peak * warmup * decay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_and_decay_follow_the_reference_formula() {
        let s = LinearSchedule {
            peak: 1e-3,
            warmup_steps: 100,
            total_steps: 1000,
        };
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(50) - 1e-3 * 0.5 * 0.95).abs() < 1e-15);
        assert!((s.lr(100) - 1e-3 * 0.9).abs() < 1e-15);
        assert!((s.lr(500) - 1e-3 * 0.5).abs() < 1e-15);
        assert_eq!(s.lr(1000), 0.0);
        assert_eq!(s.lr(2000), 0.0);
    }

    #[test]
    fn no_warmup_starts_at_the_peak() {
        let s = LinearSchedule {
            peak: 2.0,
            warmup_steps: 0,
            total_steps: 4,
        };
        assert_eq!(s.lr(0), 2.0);
        assert_eq!(s.lr(2), 1.0);
    }
}
