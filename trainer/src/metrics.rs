//! Metrics: one JSON object per logging step appended to `RUN_DIR/metrics.jsonl`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use electra_pipeline::BadRecordCounts;
use serde::Serialize;

use crate::error::{Result, TrainError};

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

/// Appends rows to `metrics.jsonl`, flushing each one.
#[derive(Debug)]
pub struct MetricsWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl MetricsWriter {
    /// Creates `path` (emptying it), or appends to it when `append` (a resumed run).
    pub fn open(path: &Path, append: bool) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path)
            .map_err(TrainError::io(path))?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    /// Reopens the metrics of a run resumed at `step`: rows after it are dropped (a run
    /// killed after its last checkpoint wrote them, and the resumed run writes them again),
    /// and so is the row at `step` itself when `window_open` (it closed a window early
    /// because the run stopped there; the resumed run closes that window where an
    /// uninterrupted run would). Then rows are appended.
    pub fn resume(path: &Path, step: u64, window_open: bool) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(TrainError::Io {
                    path: path.to_path_buf(),
                    source: e,
                })
            }
        };
        let mut kept = String::new();
        for line in text.lines() {
            let row_step = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("step").and_then(serde_json::Value::as_u64));
            let keep = match row_step {
                Some(s) => s < step || (s == step && !window_open),
                None => false, // a line cut short by a kill
            };
            if keep {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        electra_fsutil::write_atomic(path, kept.as_bytes())?;
        Self::open(path, true)
    }

    /// Appends one row.
    pub fn write(&mut self, row: &MetricsRow) -> Result<()> {
        let line = serde_json::to_string(row).map_err(|e| TrainError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        writeln!(self.out, "{line}")
            .and_then(|()| self.out.flush())
            .map_err(TrainError::io(&self.path))
    }
}
