//! [`ProgressSink`]: each row as the progress bar's message on a terminal, else as a log
//! line.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use super::{MetricsRow, MetricsSink};
use crate::error::Result;

/// A progress bar of `steps` steps when `enabled` and stderr is a terminal.
pub fn progress_bar(enabled: bool, steps: u64) -> Option<ProgressBar> {
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(steps);
    if let Ok(style) = ProgressStyle::with_template(
        "{elapsed_precise} [{wide_bar}] {pos}/{len} step  eta {eta}  {msg}",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

/// Shows rows on the progress bar, or logs them (`tracing`) when there is none.
#[derive(Debug)]
pub struct ProgressSink {
    bar: Option<ProgressBar>,
}

impl ProgressSink {
    /// Rows go to `bar` (a handle on the run's bar), or to the log.
    pub fn new(bar: Option<ProgressBar>) -> Self {
        Self { bar }
    }
}

impl MetricsSink for ProgressSink {
    fn write(&mut self, row: &MetricsRow) -> Result<()> {
        let line = format!(
            "loss {:.3}  gen {:.3} (acc {:.3})  disc {:.4} (acc {:.3} vs {:.3} baseline, p {:.2} r {:.2})  {:.0} tok/s  wait {:.1}%",
            row.loss,
            row.gen_loss,
            row.gen_acc,
            row.disc_loss,
            row.disc_acc,
            row.disc_baseline_acc,
            row.disc_precision,
            row.disc_recall,
            row.tokens_per_sec,
            100.0 * row.data_wait_frac
        );
        match &self.bar {
            Some(bar) => bar.set_message(line),
            None => tracing::info!(step = row.step, "{line}"),
        }
        Ok(())
    }
}
