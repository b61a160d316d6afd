//! Metrics: a [`MetricsRow`] every `log_every` steps, handed to every [`MetricsSink`] of
//! the run: [`JsonlSink`] (`RUN_DIR/metrics.jsonl`) and [`ProgressSink`] (the progress bar,
//! or a log line). A new destination is a new file here implementing the trait, opened in
//! [`open_sinks`].

mod jsonl;
mod progress;

use electra_pipeline::{BadRecordCounts, DataCursor};
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
    /// A mixture's sources (`data.sources`), in config order: examples and tokens drawn
    /// from each since the start. Absent for a single corpus.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceCounts>,
}

/// What a mixture source has given the run so far.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SourceCounts {
    /// Its name (`data.sources[i].name`, or `source-i`).
    pub name: String,
    /// Examples drawn from it.
    pub examples: u64,
    /// Real tokens of those examples.
    pub tokens: u64,
}

/// The counts of the sources named `names`, summed over every slice's cursor (empty for a
/// single corpus).
pub fn source_counts(names: &[String], cursors: &[DataCursor]) -> Vec<SourceCounts> {
    let mut counts: Vec<SourceCounts> = names
        .iter()
        .map(|name| SourceCounts {
            name: name.clone(),
            ..SourceCounts::default()
        })
        .collect();
    for mixture in cursors.iter().filter_map(|c| c.mixture.as_ref()) {
        for (total, source) in counts.iter_mut().zip(&mixture.sources) {
            total.examples += source.examples;
            total.tokens += source.tokens;
        }
    }
    counts
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

#[cfg(test)]
mod tests {
    use super::*;
    use electra_pipeline::{MixtureCursor, SourceCursor};

    #[test]
    fn source_counts_sum_every_slices_cursor_in_config_order() {
        let slice = |a: (u64, u64), b: (u64, u64)| DataCursor {
            mixture: Some(MixtureCursor {
                slot: 9,
                sources: [a, b]
                    .into_iter()
                    .map(|(examples, tokens)| SourceCursor {
                        examples,
                        tokens,
                        ..SourceCursor::default()
                    })
                    .collect(),
            }),
            ..DataCursor::default()
        };
        let names = ["books".to_string(), "web".to_string()];
        let counts = source_counts(&names, &[slice((3, 30), (1, 5)), slice((2, 20), (4, 9))]);
        let got: Vec<(&str, u64, u64)> = counts
            .iter()
            .map(|c| (c.name.as_str(), c.examples, c.tokens))
            .collect();
        assert_eq!(got, [("books", 5, 50), ("web", 5, 14)]);
        assert!(source_counts(&[], &[DataCursor::default()]).is_empty());
        let json = serde_json::to_string(&MetricsRow::default()).unwrap();
        assert!(
            !json.contains("sources"),
            "a single corpus's rows are unchanged"
        );
    }
}
