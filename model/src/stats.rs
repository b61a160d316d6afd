//! Training statistics computed on the device without a host sync (`compute_stats`), and
//! read back and summed on the host every few steps ([`ElectraStats`]).

use std::ops::{Add, AddAssign};

use tch::{Device, Kind, Tensor};

use crate::error::{check_shape, Result};

/// Index in the stats tensor: number of masked positions (`m`).
pub const STAT_MASKED: usize = 0;
/// Index: masked positions where the generator's argmax equals the original token.
pub const STAT_GEN_CORRECT: usize = 1;
/// Index: real (non-padding) tokens.
pub const STAT_REAL: usize = 2;
/// Index: real tokens whose corrupted id differs from the original (label 1); these are
/// also the discriminator's actual positives.
pub const STAT_REPLACED: usize = 3;
/// Index: real tokens the discriminator classifies correctly (`logit > 0` means replaced).
pub const STAT_DISC_CORRECT: usize = 4;
/// Index: real tokens predicted replaced that are replaced (true positives).
pub const STAT_DISC_TRUE_POSITIVES: usize = 5;
/// Index: real tokens predicted replaced (`logit > 0`).
pub const STAT_DISC_PREDICTED_POSITIVES: usize = 6;
/// Index: actual positives, the same count as [`STAT_REPLACED`].
pub const STAT_DISC_ACTUAL_POSITIVES: usize = STAT_REPLACED;
/// Length of the stats tensor.
pub const STATS_LEN: usize = 7;

/// The counts of one step as a float32 tensor `[STATS_LEN]` on the logits' device, indexed
/// by the `STAT_*` constants. Nothing is copied to the host.
///
/// # Shapes
/// - `gen_logits` `[m, vocab]`, `masked_labels` `[m]`
/// - `disc_logits`, `disc_labels` (0/1 float), `real` (Bool): `[batch, seq]`
pub(crate) fn compute_stats(
    gen_logits: &Tensor,
    masked_labels: &Tensor,
    disc_logits: &Tensor,
    disc_labels: &Tensor,
    real: &Tensor,
) -> Tensor {
    tch::no_grad(|| {
        let count = |mask: &Tensor| mask.sum(Kind::Float);
        let masked = count(&masked_labels.ones_like());
        let gen_correct = count(&gen_logits.argmax(-1, false).eq_tensor(masked_labels));
        let actual = disc_labels.gt(0.5).logical_and(real);
        let predicted = disc_logits.gt(0.0).logical_and(real);
        let correct = disc_logits
            .gt(0.0)
            .eq_tensor(&disc_labels.gt(0.5))
            .logical_and(real);
        let true_positives = predicted.logical_and(&actual);
        // In the order of the STAT_* indices.
        let stats: [Tensor; STATS_LEN] = [
            masked,
            gen_correct,
            count(real),
            count(&actual),
            count(&correct),
            count(&true_positives),
            count(&predicted),
        ];
        Tensor::stack(&stats, 0)
    })
}

/// Counts over one or more steps, read from the stats tensor of
/// [`ElectraOutput`](crate::ElectraOutput); sum steps with `+` / `+=`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ElectraStats {
    /// Masked positions.
    pub masked: f64,
    /// Masked positions where the generator's argmax is the original token.
    pub gen_correct: f64,
    /// Real (non-padding) tokens.
    pub real: f64,
    /// Real tokens that were replaced (differ from the original).
    pub replaced: f64,
    /// Real tokens the discriminator classified correctly.
    pub disc_correct: f64,
    /// Replaced tokens the discriminator flagged.
    pub disc_true_positives: f64,
    /// Tokens the discriminator flagged.
    pub disc_predicted_positives: f64,
}

fn ratio(numerator: f64, denominator: f64) -> f64 {
    if denominator > 0.0 {
        numerator / denominator
    } else {
        0.0
    }
}

impl ElectraStats {
    /// Reads a stats tensor `[STATS_LEN]` (one host sync).
    pub fn from_tensor(stats: &Tensor) -> Result<ElectraStats> {
        check_shape("stats", stats, &[STATS_LEN as i64])?;
        let values =
            Vec::<f64>::try_from(stats.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?)?;
        Ok(ElectraStats {
            masked: values[STAT_MASKED],
            gen_correct: values[STAT_GEN_CORRECT],
            real: values[STAT_REAL],
            replaced: values[STAT_REPLACED],
            disc_correct: values[STAT_DISC_CORRECT],
            disc_true_positives: values[STAT_DISC_TRUE_POSITIVES],
            disc_predicted_positives: values[STAT_DISC_PREDICTED_POSITIVES],
        })
    }

    /// Generator accuracy at the masked positions (0 when nothing was masked).
    pub fn gen_acc(&self) -> f64 {
        ratio(self.gen_correct, self.masked)
    }

    /// Fraction of real tokens that were replaced.
    pub fn replaced_frac(&self) -> f64 {
        ratio(self.replaced, self.real)
    }

    /// Discriminator accuracy over real tokens.
    pub fn disc_acc(&self) -> f64 {
        ratio(self.disc_correct, self.real)
    }

    /// Discriminator precision on "replaced" (0 when it flagged nothing).
    pub fn disc_precision(&self) -> f64 {
        ratio(self.disc_true_positives, self.disc_predicted_positives)
    }

    /// Discriminator recall on "replaced" (0 when nothing was replaced).
    pub fn disc_recall(&self) -> f64 {
        ratio(self.disc_true_positives, self.replaced)
    }
}

impl Add for ElectraStats {
    type Output = ElectraStats;

    fn add(self, other: ElectraStats) -> ElectraStats {
        ElectraStats {
            masked: self.masked + other.masked,
            gen_correct: self.gen_correct + other.gen_correct,
            real: self.real + other.real,
            replaced: self.replaced + other.replaced,
            disc_correct: self.disc_correct + other.disc_correct,
            disc_true_positives: self.disc_true_positives + other.disc_true_positives,
            disc_predicted_positives: self.disc_predicted_positives
                + other.disc_predicted_positives,
        }
    }
}

impl AddAssign for ElectraStats {
    fn add_assign(&mut self, other: ElectraStats) {
        *self = *self + other;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_count_what_they_name() {
        // 2 masked positions, the generator right on the first only.
        let gen_logits = Tensor::from_slice(&[0.0f32, 5.0, 0.0, 5.0, 0.0, 0.0]).view([2, 3]);
        let masked_labels = Tensor::from_slice(&[1i64, 2]);
        // 1 x 4 tokens, last is padding; replaced: tokens 0 and 1; flagged: 0 and 2 (and pad).
        let disc_logits = Tensor::from_slice(&[2.0f32, -1.0, 3.0, 9.0]).view([1, 4]);
        let disc_labels = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 0.0]).view([1, 4]);
        let real = Tensor::from_slice(&[true, true, true, false]).view([1, 4]);
        let stats = compute_stats(
            &gen_logits,
            &masked_labels,
            &disc_logits,
            &disc_labels,
            &real,
        );
        let stats = ElectraStats::from_tensor(&stats).unwrap();
        assert_eq!(
            stats,
            ElectraStats {
                masked: 2.0,
                gen_correct: 1.0,
                real: 3.0,
                replaced: 2.0,
                disc_correct: 1.0,
                disc_true_positives: 1.0,
                disc_predicted_positives: 2.0,
            }
        );
        assert_eq!(stats.gen_acc(), 0.5);
        assert_eq!(stats.disc_precision(), 0.5);
        assert_eq!(stats.disc_recall(), 0.5);
        assert!((stats.disc_acc() - 1.0 / 3.0).abs() < 1e-12);
        let twice = stats + stats;
        assert_eq!(twice.masked, 4.0);
        assert_eq!(twice.gen_acc(), 0.5);
        assert_eq!(ElectraStats::default().disc_precision(), 0.0);
        assert!(
            ElectraStats::from_tensor(&Tensor::zeros([3], (Kind::Float, Device::Cpu))).is_err()
        );
    }
}
