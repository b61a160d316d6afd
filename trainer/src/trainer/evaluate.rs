//! [`Trainer::evaluate`]: the objective's losses and statistics over given batches, with
//! no update and no change to the training state.

use electra_model::stats::STATS_LEN;
use electra_model::ElectraStats;
use electra_pipeline::Batch;
use serde::Serialize;
use tch::{Kind, Tensor};

use super::step::summary;
use super::{step_seed, Trainer};
use crate::device::autocast;
use crate::device_batch::DeviceBatch;
use crate::error::Result;
use crate::objective::ObjectiveInput;

/// Keeps evaluation's seeds apart from the training steps'.
const EVAL_STREAM: u64 = 0x6576_616c; // "eval"

/// Scores over evaluated batches: losses averaged over batches, the statistics pooled over
/// their positions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// Batches scored (over all ranks).
    pub batches: u64,
    /// The objective's total loss.
    pub loss: f64,
    /// The generator's (or masked LM's) loss at the masked positions.
    pub gen_loss: f64,
    /// Its argmax accuracy at the masked positions.
    pub gen_acc: f64,
    /// The discriminator's loss over real tokens (0 without one).
    pub disc_loss: f64,
    /// Its accuracy over real tokens.
    pub disc_acc: f64,
    /// Its precision on "replaced".
    pub disc_precision: f64,
    /// Its recall on "replaced".
    pub disc_recall: f64,
    /// Fraction of real tokens the generator's samples replaced.
    pub replaced_frac: f64,
}

impl Trainer {
    /// Scores `batches` with dropout off and no gradient: nothing the trainer holds
    /// changes (weights, optimizer, window, guard, counters). Batch `i` is scored with
    /// torch seeded from (run seed, `i`), so the same batches give the same report at
    /// any point of the run; training steps reseed torch, so they are not affected
    /// either. In a data-parallel run every rank must call it (with as many batches); the
    /// report is over all ranks' batches.
    pub fn evaluate<'b>(&self, batches: impl IntoIterator<Item = &'b Batch>) -> Result<EvalReport> {
        let device = self.settings.device;
        // [batches, loss, gen_loss, disc_loss, stats...]
        let mut sums = Tensor::zeros([4 + STATS_LEN as i64], (Kind::Float, device));
        for (index, batch) in batches.into_iter().enumerate() {
            let tensors = DeviceBatch::new(batch, device);
            let rows: Vec<i64> = (0..batch.batch_size as i64).collect();
            let seed = step_seed(self.settings.seed ^ EVAL_STREAM, index as u64);
            tch::manual_seed(seed);
            let input = ObjectiveInput {
                batch,
                tensors: &tensors,
                global_rows: &rows,
                seed,
            };
            let scored = tch::no_grad(|| -> Result<Tensor> {
                let _autocast = autocast(self.settings.precision, device)?;
                let losses = self.objective.forward(&input, false)?;
                let one = Tensor::ones([1], (Kind::Float, device));
                Ok(Tensor::cat(&[one, summary(&losses)], 0))
            })?;
            sums += scored;
        }
        if let Some(dp) = &self.data_parallel {
            dp.sum(&sums)?;
        }
        let host: Vec<f64> = Vec::try_from(&sums.to_kind(Kind::Double))?;
        let n = host[0].max(1.0);
        let stats = ElectraStats::from_tensor(&sums.narrow(0, 4, STATS_LEN as i64))?;
        Ok(EvalReport {
            batches: host[0] as u64,
            loss: host[1] / n,
            gen_loss: host[2] / n,
            gen_acc: stats.gen_acc(),
            disc_loss: host[3] / n,
            disc_acc: stats.disc_acc(),
            disc_precision: stats.disc_precision(),
            disc_recall: stats.disc_recall(),
            replaced_frac: stats.replaced_frac(),
        })
    }
}
