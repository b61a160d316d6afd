//! The metrics window: sums over the steps since the last row, kept on the device until the
//! row is written. Steps whose loss or gradient norm is not finite add nothing but their
//! count.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use electra_model::stats::STATS_LEN;
use electra_model::ElectraStats;
use tch::{Device, Kind, Tensor};

use super::copy_tensor;
use crate::checkpoint::WindowState;
use crate::error::Result;
use crate::metrics::MetricsRow;

/// Names of the window's tensors in a checkpoint.
pub(super) const WINDOW_TENSORS: [&str; 4] = [
    "window.losses",
    "window.stats",
    "window.grad_norm",
    "window.good",
];

/// Device sums and host counts of the open window.
pub(super) struct Window {
    /// `[3]`: loss, gen_loss, disc_loss.
    pub losses: Tensor,
    /// `[STATS_LEN]`.
    pub stats: Tensor,
    pub grad_norm: Tensor,
    /// Steps that made an update.
    pub good: Tensor,
    pub steps: u64,
    /// Real tokens of this rank.
    pub tokens: u64,
    pub data_wait: Duration,
    pub started: Instant,
}

/// What a row needs besides the window: the run's totals at its last step.
pub(super) struct RowContext<'a> {
    /// Real tokens of the window, all ranks.
    pub window_tokens: u64,
    pub step: u64,
    pub epoch: u64,
    pub lr: f64,
    pub tokens: u64,
    pub elapsed_sec: f64,
    pub bad_records: &'a electra_pipeline::BadRecordCounts,
    pub skipped_steps: u64,
    /// A mixture's per-source counts (empty for a single corpus).
    pub sources: Vec<crate::metrics::SourceCounts>,
}

impl Window {
    pub fn new(device: Device) -> Self {
        Self {
            losses: Tensor::zeros([3], (Kind::Float, device)),
            stats: Tensor::zeros([STATS_LEN as i64], (Kind::Float, device)),
            grad_norm: Tensor::zeros([], (Kind::Float, device)),
            good: Tensor::zeros([], (Kind::Float, device)),
            steps: 0,
            tokens: 0,
            data_wait: Duration::ZERO,
            started: Instant::now(),
        }
    }

    /// Adds one step: `summary` is `[loss, gen_loss, disc_loss, stats...]`, `ok` whether
    /// the step made an update.
    pub fn add(&mut self, summary: &Tensor, grad_norm: &Tensor, ok: &Tensor, tokens: u64) {
        tch::no_grad(|| {
            let keep = |x: Tensor| x.where_self(ok, &x.zeros_like());
            self.losses += keep(summary.narrow(0, 0, 3));
            self.grad_norm += keep(grad_norm.to_kind(Kind::Float));
            self.stats += keep(summary.narrow(0, 3, STATS_LEN as i64));
            self.good += ok.to_kind(Kind::Float);
        });
        self.steps += 1;
        self.tokens += tokens;
    }

    /// The device sums with their checkpoint names.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let tensors = [&self.losses, &self.stats, &self.grad_norm, &self.good];
        WINDOW_TENSORS
            .iter()
            .zip(tensors)
            .map(|(name, t)| (name.to_string(), t.shallow_clone()))
            .collect()
    }

    /// The host counts for a checkpoint (`tokens`: all ranks').
    pub fn state(&self, tokens: u64) -> WindowState {
        WindowState {
            steps: self.steps,
            tokens,
            data_wait_sec: self.data_wait.as_secs_f64(),
            wall_sec: self.started.elapsed().as_secs_f64(),
        }
    }

    /// The window a checkpoint saved.
    pub fn restore(
        device: Device,
        state: &WindowState,
        tensors: &BTreeMap<String, Tensor>,
    ) -> Result<Self> {
        let window = Self::new(device);
        for (name, target) in window.named_tensors() {
            copy_tensor(tensors, &name, &target)?;
        }
        Ok(Self {
            steps: state.steps,
            tokens: state.tokens,
            data_wait: Duration::from_secs_f64(state.data_wait_sec.max(0.0)),
            started: Instant::now()
                .checked_sub(Duration::from_secs_f64(state.wall_sec.max(0.0)))
                .unwrap_or_else(Instant::now),
            ..window
        })
    }

    /// The row of this window (averages over its steps that made an update); reads the
    /// device sums (a host synchronisation).
    pub fn row(&self, at: &RowContext<'_>) -> Result<MetricsRow> {
        let good = f64::try_from(&self.good.to_kind(Kind::Double))?;
        let n = good.max(1.0);
        let losses: Vec<f64> = Vec::try_from(&self.losses.to_kind(Kind::Double))?;
        let grad_norm = f64::try_from(&self.grad_norm.to_kind(Kind::Double))?;
        let stats = ElectraStats::from_tensor(&self.stats)?;
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        if (good as u64) < self.steps {
            tracing::warn!(
                step = at.step,
                skipped = self.steps - good as u64,
                "steps skipped for a non-finite loss or gradient norm in this window"
            );
        }
        Ok(MetricsRow {
            step: at.step,
            epoch: at.epoch,
            loss: losses[0] / n,
            gen_loss: losses[1] / n,
            disc_loss: losses[2] / n,
            gen_acc: stats.gen_acc(),
            replaced_frac: stats.replaced_frac(),
            disc_acc: stats.disc_acc(),
            disc_precision: stats.disc_precision(),
            disc_recall: stats.disc_recall(),
            disc_baseline_acc: 1.0 - stats.replaced_frac(),
            grad_norm: grad_norm / n,
            lr: at.lr,
            tokens_per_sec: at.window_tokens as f64 / wall,
            data_wait_frac: self.data_wait.as_secs_f64() / wall,
            tokens: at.tokens,
            elapsed_sec: at.elapsed_sec,
            skipped_steps: at.skipped_steps,
            bad_records: at.bad_records.clone(),
            sources: at.sources.clone(),
        })
    }
}
