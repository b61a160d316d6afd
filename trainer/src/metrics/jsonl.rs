//! [`JsonlSink`]: one JSON object per row appended to `RUN_DIR/metrics.jsonl`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{MetricsRow, MetricsSink};
use crate::error::{Result, TrainError};

/// Appends rows to `metrics.jsonl`, flushing each one.
#[derive(Debug)]
pub struct JsonlSink {
    path: PathBuf,
    out: BufWriter<File>,
}

impl JsonlSink {
    /// Creates `path`, emptying it.
    pub fn create(path: &Path) -> Result<Self> {
        Self::open(path, false)
    }

    /// Opens `path`, emptying it or appending to it.
    fn open(path: &Path, append: bool) -> Result<Self> {
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
}

impl MetricsSink for JsonlSink {
    /// Appends one row as a line of JSON and flushes it.
    fn write(&mut self, row: &MetricsRow) -> Result<()> {
        let line = serde_json::to_string(row).map_err(|e| TrainError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        writeln!(self.out, "{line}")
            .and_then(|()| self.out.flush())
            .map_err(TrainError::io(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(step: u64) -> MetricsRow {
        MetricsRow {
            step,
            loss: 1.5,
            ..MetricsRow::default()
        }
    }

    fn steps(path: &Path) -> Vec<u64> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn a_resumed_sink_drops_rows_after_the_checkpoint_and_an_early_row_at_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut sink = JsonlSink::create(&path).unwrap();
        for step in [10, 20, 25, 30] {
            sink.write(&row(step)).unwrap();
        }
        drop(sink);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"step\": 3"); // a line cut short by a kill
        std::fs::write(&path, text).unwrap();

        // Resumed at 20 with a closed window: the row at 20 stays.
        JsonlSink::resume(&path, 20, false).unwrap();
        assert_eq!(steps(&path), [10, 20]);
        // Resumed at 20 with the window open: the early row at 20 goes too.
        let mut sink = JsonlSink::resume(&path, 20, true).unwrap();
        sink.write(&row(30)).unwrap();
        assert_eq!(steps(&path), [10, 30]);
        let line = std::fs::read_to_string(&path).unwrap();
        assert!(
            line.ends_with('\n') && line.contains("\"loss\":1.5"),
            "{line}"
        );
    }
}
