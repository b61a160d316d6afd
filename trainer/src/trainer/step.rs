//! One training step in four phases, each a method so that `bench train` can time them
//! (synchronising the device between them); [`Trainer::step`] runs them in order.
//!
//! 1. [`upload`](Trainer::upload): the host batch to device tensors (and the batch's
//!    counts into the counters);
//! 2. [`forward`](Trainer::forward): torch seeded from (run seed, step), the objective's
//!    losses, under bfloat16 autocast when `train.precision` asks for it;
//! 3. [`backward`](Trainer::backward): gradients; data parallel: each rank's losses are its
//!    sums over the global batch's counts, so the ranks' gradients, summed, are the
//!    single-process gradient;
//! 4. [`update`](Trainer::update): gradient clipping, the finite check (loss and gradient
//!    norm, over all ranks), AdamW where it passed (a skipped step changes nothing), the
//!    guard's and the window's sums. No host synchronisation.

use tch::{Kind, Tensor};

use super::{step_seed, Trainer};
use crate::device::autocast;
use crate::device_batch::DeviceBatch;
use crate::error::Result;
use crate::objective::{Losses, ObjectiveInput};
use crate::parallel::RankBatch;

/// A step after [`Trainer::upload`].
#[derive(Debug)]
pub struct Uploaded<'b> {
    batch: &'b RankBatch,
    tensors: DeviceBatch,
}

/// A step after [`Trainer::forward`].
#[derive(Debug)]
pub struct Forwarded<'b> {
    batch: &'b RankBatch,
    losses: Losses,
}

/// A step after [`Trainer::backward`].
#[derive(Debug)]
pub struct Backwarded {
    losses: Losses,
    real_tokens: usize,
}

/// What a step did. Its tensors stay on the device: reading them synchronises.
#[derive(Debug)]
pub struct StepReport {
    /// Updates made so far, this one included.
    pub step: u64,
    /// The learning rate of the update.
    pub lr: f64,
    /// The loss (summed over ranks), a float32 scalar.
    pub loss: Tensor,
    /// Whether the update was made (the loss and gradient norm were finite), a boolean
    /// scalar.
    pub accepted: Tensor,
}

impl Trainer {
    /// Runs one step on `batch`: [`upload`](Self::upload), [`forward`](Self::forward),
    /// [`backward`](Self::backward), [`update`](Self::update).
    pub fn step(&mut self, batch: &RankBatch) -> Result<StepReport> {
        let uploaded = self.upload(batch);
        let forwarded = self.forward(uploaded)?;
        let backwarded = self.backward(forwarded)?;
        self.update(backwarded)
    }

    /// Phase 1: copies the batch to the device and counts what it brings (bad records,
    /// the wait for it, its epoch and cursors).
    pub fn upload<'b>(&mut self, batch: &'b RankBatch) -> Uploaded<'b> {
        let c = &mut self.counters;
        c.bad_records.add(&batch.batch.bad_records);
        c.epoch = batch.batch.epoch;
        c.cursors.clone_from(&batch.cursors);
        self.window.data_wait += batch.data_wait;
        Uploaded {
            batch,
            tensors: DeviceBatch::new(&batch.batch, self.settings.device),
        }
    }

    /// Phase 2: the objective's forward pass, torch seeded from (run seed, step).
    pub fn forward<'b>(&mut self, uploaded: Uploaded<'b>) -> Result<Forwarded<'b>> {
        let seed = step_seed(self.settings.seed, self.counters.step);
        tch::manual_seed(seed);
        let input = ObjectiveInput {
            batch: &uploaded.batch.batch,
            tensors: &uploaded.tensors,
            global_rows: &uploaded.batch.global_rows,
            seed,
        };
        let losses = {
            let _autocast = autocast(self.settings.precision, self.settings.device)?;
            self.objective.forward(&input, true)?
        };
        Ok(Forwarded {
            batch: uploaded.batch,
            losses,
        })
    }

    /// Phase 3: the gradients (summed over ranks in a data-parallel run).
    pub fn backward(&mut self, forwarded: Forwarded<'_>) -> Result<Backwarded> {
        let batch = &forwarded.batch.batch;
        let losses = match &self.data_parallel {
            None => forwarded.losses,
            Some(dp) => dp.scale_losses(
                forwarded.losses,
                self.objective.loss_weights(),
                batch.masked_positions.len(),
                batch.real_tokens,
                self.settings.device,
            )?,
        };
        self.optimizer.zero_grad();
        losses.loss.f_backward()?;
        if let Some(dp) = &mut self.data_parallel {
            dp.reduce_grads()?;
        }
        Ok(Backwarded {
            losses,
            real_tokens: batch.real_tokens,
        })
    }

    /// Phase 4: clipping, the finite check, the update, the guard and the window.
    pub fn update(&mut self, backwarded: Backwarded) -> Result<StepReport> {
        let lr = self.schedule.lr(self.counters.step);
        let grad_norm = self.optimizer.clip_grad_norm(self.settings.clip_grad_norm);
        // [loss, gen_loss, disc_loss, stats...], summed over ranks.
        let summary = tch::no_grad(|| summary(&backwarded.losses));
        if let Some(dp) = &self.data_parallel {
            dp.sum(&summary)?;
        }
        let ok = summary.get(0).isfinite().logical_and(&grad_norm.isfinite());
        self.optimizer.step_if(lr, &ok);
        self.guard.record(&ok);
        let tokens = backwarded.real_tokens as u64;
        self.window.add(&summary, &grad_norm, &ok, tokens);
        self.counters.tokens += tokens;
        self.counters.step += 1;
        self.counters.lr = lr;
        Ok(StepReport {
            step: self.counters.step,
            lr,
            loss: summary.get(0),
            accepted: ok,
        })
    }
}

/// `[loss, gen_loss, disc_loss, stats...]` in float32, detached.
pub(super) fn summary(losses: &Losses) -> Tensor {
    Tensor::cat(
        &[
            Tensor::stack(
                &[
                    losses.loss.detach().to_kind(Kind::Float),
                    losses.gen_loss.detach().to_kind(Kind::Float),
                    losses.disc_loss.detach().to_kind(Kind::Float),
                ],
                0,
            ),
            losses.stats.detach().to_kind(Kind::Float),
        ],
        0,
    )
}
