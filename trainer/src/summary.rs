//! [`RunSummary`]: what a finished (or stopped) pre-training run reports.

use std::fmt;
use std::path::PathBuf;

use electra_pipeline::report::Rows;
use electra_pipeline::BadRecordCounts;
use serde::Serialize;

use crate::metrics::MetricsRow;

/// What a finished run reports.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Updates made.
    pub steps: u64,
    /// Real tokens trained on.
    pub tokens: u64,
    /// Wall time of the training loop.
    pub seconds: f64,
    /// `tokens / seconds`.
    pub tokens_per_sec: f64,
    /// The device used.
    pub device: String,
    /// The first metrics row (the start of training).
    pub first: Option<MetricsRow>,
    /// The last metrics row.
    pub last: Option<MetricsRow>,
    /// Bad records skipped, per kind.
    pub bad_records: BadRecordCounts,
    /// The run folder.
    pub run_dir: PathBuf,
    /// Where the weights went (written only when the run was not interrupted).
    pub final_dir: PathBuf,
    /// Stopped early by [`PretrainOptions::stop`](crate::train::PretrainOptions::stop).
    pub interrupted: bool,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
    /// Steps skipped for a non-finite loss or gradient norm, since the start.
    pub skipped_steps: u64,
    /// The step a resumed run started from.
    pub resumed_from: Option<u64>,
    /// Training FLOPs of one step (see [`crate::flops`]).
    pub flops_per_step: f64,
}

impl fmt::Display for RunSummary {
    /// The table `electra pretrain` prints at the end: throughput, the first and last
    /// metrics rows side by side, what was skipped, where things went.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f)?;
        let mut rows = Rows::new(f, 22);
        rows.row("run", self.run_dir.display())?;
        rows.row("device", &self.device)?;
        rows.row("steps", self.steps)?;
        rows.row("tokens", self.tokens)?;
        rows.row("seconds", format!("{:.1}", self.seconds))?;
        rows.row("tokens/s", format!("{:.0}", self.tokens_per_sec))?;
        let all = self.flops_per_step * self.steps as f64;
        let flops = format!("{:.3e} per step, {all:.3e} in all", self.flops_per_step);
        rows.row("training FLOPs", flops)?;
        if let (Some(first), Some(last)) = (&self.first, &self.last) {
            metrics_columns(f, first, last)?;
        }
        let mut rows = Rows::new(f, 22);
        rows.row("bad records skipped", self.bad_records.total())?;
        if let Ok(serde_json::Value::Object(kinds)) = serde_json::to_value(&self.bad_records) {
            for (kind, count) in kinds {
                if count.as_u64().is_some_and(|c| c > 0) {
                    rows.row(&format!("  {kind}"), count)?;
                }
            }
        }
        rows.row("non-finite steps", self.skipped_steps)?;
        if let Some(step) = self.resumed_from {
            rows.row("resumed from", format!("step {step}"))?;
        }
        if let Some(dir) = &self.checkpoint {
            rows.row("checkpoint", dir.display())?;
        }
        if !self.interrupted {
            rows.row("weights", self.final_dir.display())?;
        }
        Ok(())
    }
}

/// The first and the last metrics rows, side by side.
fn metrics_columns(
    f: &mut fmt::Formatter<'_>,
    first: &MetricsRow,
    last: &MetricsRow,
) -> fmt::Result {
    let steps = (
        format!("step {}", first.step),
        format!("step {}", last.step),
    );
    writeln!(f, "  {:<22} {:>10} {:>10}", "", steps.0, steps.1)?;
    for (name, a, b) in [
        ("loss", first.loss, last.loss),
        ("generator loss", first.gen_loss, last.gen_loss),
        ("generator accuracy", first.gen_acc, last.gen_acc),
        ("discriminator loss", first.disc_loss, last.disc_loss),
        ("discriminator acc", first.disc_acc, last.disc_acc),
        (
            "  always-original acc",
            first.disc_baseline_acc,
            last.disc_baseline_acc,
        ),
        ("disc precision", first.disc_precision, last.disc_precision),
        ("disc recall", first.disc_recall, last.disc_recall),
        ("replaced fraction", first.replaced_frac, last.replaced_frac),
    ] {
        writeln!(f, "  {name:<22} {a:>10.4} {b:>10.4}")?;
    }
    Ok(())
}
