//! `electra bench pipeline`: the data pipeline alone, as the trainer would consume it.

use std::time::{Duration, Instant};

use electra_pipeline::{DataConfig, Loader, TextTokenizer};
use serde::Serialize;

use crate::error::Result;

/// A `kB` field of `/proc/self/status`, in bytes; 0 where unknown.
fn proc_status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Peak resident memory of this process (`VmHWM`), in bytes; 0 where unknown.
pub fn peak_rss_bytes() -> u64 {
    proc_status_bytes("VmHWM:")
}

/// Current resident memory of this process (`VmRSS`), in bytes; 0 where unknown.
pub fn rss_bytes() -> u64 {
    proc_status_bytes("VmRSS:")
}

/// What one pipeline benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineBench {
    /// Loader worker threads.
    pub threads: usize,
    /// Batches consumed.
    pub batches: u64,
    /// Real (non-padding) tokens in them.
    pub tokens: u64,
    /// Wall time of the measurement (after the first batch).
    pub seconds: f64,
    /// `tokens / seconds`: the whole pipeline through the queue.
    pub pipeline_tokens_per_sec: f64,
    /// Per worker thread.
    pub tokens_per_sec_per_thread: f64,
    /// Peak resident memory of the process.
    pub peak_rss_bytes: u64,
    /// Resident memory before the pipeline started (the binary, libtorch's libraries and
    /// the tokenizer), so `peak - baseline` is what the pipeline itself used.
    pub baseline_rss_bytes: u64,
}

/// Consumes batches for up to `seconds` (or until the data ends) and reports throughput.
/// The first batch (thread start-up, first tokenizer calls) is not timed.
pub fn bench_pipeline(
    config: &DataConfig,
    tokenizer: TextTokenizer,
    seed: u64,
    seconds: f64,
) -> Result<PipelineBench> {
    let baseline_rss_bytes = rss_bytes();
    let mut loader = Loader::new(config, tokenizer, seed)?;
    let threads = config.worker_threads();
    let limit = Duration::from_secs_f64(seconds.max(0.1));
    let mut batches = 0u64;
    let mut tokens = 0u64;
    let mut seconds = 0.0;
    if let Some(first) = loader.next() {
        first?;
        let started = Instant::now();
        for batch in loader.by_ref() {
            let batch = batch?;
            batches += 1;
            tokens += batch.real_tokens as u64;
            if started.elapsed() >= limit {
                break;
            }
        }
        seconds = started.elapsed().as_secs_f64();
    }
    let rate = tokens as f64 / seconds.max(1e-9);
    Ok(PipelineBench {
        threads,
        batches,
        tokens,
        seconds,
        pipeline_tokens_per_sec: rate,
        tokens_per_sec_per_thread: rate / threads.max(1) as f64,
        peak_rss_bytes: peak_rss_bytes(),
        baseline_rss_bytes,
    })
}
