//! Metrics: a [`MetricsRow`] every `log_every` steps, handed to every [`MetricsSink`] of
//! the run: [`JsonlSink`] (`RUN_DIR/metrics.jsonl`) and [`ProgressSink`] (the progress bar,
//! or a log line). A new destination is a new file here implementing the trait, opened in
//! [`open_sinks`].

mod jsonl;
mod progress;

use electra_pipeline::BadRecordCounts;
use indicatif::ProgressBar;
use serde::Serialize;

use crate::checkpoint::TrainerState;
use crate::error::Result;
use crate::run_dir::RunDir;

pub use jsonl::JsonlSink;
pub use progress::{progress_bar, ProgressSink};

/// One row of `metrics.jsonl`: averages over the steps since the previous row.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MetricsRow {
    /// Updates completed.
    pub step: u64,
    /// Epoch of the last batch.
    pub epoch: u64,
    /// `gen_weight * gen_loss + disc_weight * disc_loss`.
    pub loss: f64,
    /// Generator cross-entropy at masked positions.
    pub gen_loss: f64,
    /// Discriminator binary cross-entropy over real tokens.
    pub disc_loss: f64,
    /// Generator argmax accuracy at masked positions.
    pub gen_acc: f64,
    /// Fraction of real tokens the generator's samples actually replaced.
    pub replaced_frac: f64,
    /// Discriminator accuracy over real tokens.
    pub disc_acc: f64,
    /// Discriminator precision on "replaced".
    pub disc_precision: f64,
    /// Discriminator recall on "replaced".
    pub disc_recall: f64,
    /// Accuracy of always answering "original" on the same tokens (the baseline to beat).
    pub disc_baseline_acc: f64,
    /// Global gradient norm before clipping (mean over the window).
    pub grad_norm: f64,
    /// Learning rate of the last update.
    pub lr: f64,
    /// Real (non-padding) tokens per second over the window.
    pub tokens_per_sec: f64,
    /// Share of the window's wall time spent waiting on the data queue.
    pub data_wait_frac: f64,
    /// Real tokens trained on since the start.
    pub tokens: u64,
    /// Seconds since the start.
    pub elapsed_sec: f64,
    /// Steps skipped since the start because their loss or gradient norm was not finite.
    pub skipped_steps: u64,
    /// Bad input records skipped since the start, per kind.
    pub bad_records: BadRecordCounts,
}

/// Where metrics rows go. Rows arrive in step order; a resumed run's sink starts after the
/// checkpoint's step (the rows a killed run wrote after it come again).
pub trait MetricsSink: Send {
    /// Records one row.
    fn write(&mut self, row: &MetricsRow) -> Result<()>;
}

/// The sinks of the run in `run` (the main rank's): `metrics.jsonl` (created, or cut back
/// to `resumed`'s step) and the progress display (`bar`, or log lines without one).
pub fn open_sinks(
    run: &RunDir,
    resumed: Option<&TrainerState>,
    bar: Option<ProgressBar>,
) -> Result<Vec<Box<dyn MetricsSink>>> {
    let jsonl = match resumed {
        Some(state) => JsonlSink::resume(&run.metrics(), state.step, state.window.steps > 0)?,
        None => JsonlSink::create(&run.metrics())?,
    };
    Ok(vec![Box::new(jsonl), Box::new(ProgressSink::new(bar))])
}
