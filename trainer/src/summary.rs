//! [`RunSummary`]: what a finished (or stopped) pre-training run reports.

use std::path::PathBuf;

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
