//! `bench pipeline`: the data pipeline alone, as the trainer would consume it. For a raw
//! corpus, first each stage alone on one thread over a sample of the text, and the
//! tokenizer alone on the same sentences ([`crate::bench_tokenize`]: zstd decoding, the
//! fast path, the `tokenizers` crate); then, for any corpus, the whole pipeline through its
//! queue.

mod stages;

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::bench_tokenize::{bench_tokenize, TokenizeBench, TokenizeBenchOptions};
use crate::config::DataConfig;
use crate::error::Result;
use crate::loader::Loader;
use crate::report::{mb, Rows};
use crate::resources::{peak_rss_bytes, process_cpu_seconds, rss_bytes};
use crate::shard_stream::is_manifest_path;
use crate::source::{expand_files, SourceOptions};
use crate::tokenize::TextTokenizer;

pub use stages::{bench_stages, Stage, StageBench};

/// How long and on how much text `bench pipeline` measures.
#[derive(Debug, Clone)]
pub struct PipelineBenchOptions {
    /// The whole pipeline runs this long (the corpus repeats as often as needed).
    pub seconds: f64,
    /// Text sampled for the per-stage and tokenizer figures (raw corpora only).
    pub sample_bytes: u64,
    /// The run seed (packing and masks).
    pub seed: u64,
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
    /// CPU time of the whole process over the measurement (every thread: reader, workers,
    /// batcher and the consumer), in seconds.
    pub cpu_seconds: f64,
    /// `tokens / cpu_seconds`: throughput per core of CPU time actually used.
    pub tokens_per_cpu_sec: f64,
    /// Peak resident memory of the process.
    pub peak_rss_bytes: u64,
    /// Resident memory before the pipeline started (the binary, its libraries and the
    /// tokenizer), so `peak - baseline` is what the pipeline itself used.
    pub baseline_rss_bytes: u64,
}

/// The report of `bench pipeline`: one JSON object with `--json`, the whole pipeline's
/// figures at its top level.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineBenchReport {
    /// The whole pipeline.
    #[serde(flatten)]
    pub pipeline: PipelineBench,
    /// Raw corpora: the tokenizer as the pipeline runs it (the fast path when it has one)
    /// alone on one thread over the sample, the limit of one worker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokenizer_tokens_per_sec: Option<f64>,
    /// Raw corpora: the same on the loader's worker count at once, the limit of the
    /// pipeline at that count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokenizer_threads_tokens_per_sec: Option<f64>,
    /// Raw corpora: each stage alone on one thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stages: Option<StageBench>,
    /// Raw corpora: zstd decoding, the fast path and the `tokenizers` crate on the same
    /// sentences, one thread each.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokenize: Option<TokenizeBench>,
}

/// Measures `config`'s pipeline (its files read as often as needed, whatever its
/// `epochs`): the stages and the tokenizer alone first for a raw corpus, then the whole
/// pipeline for `options.seconds`.
pub fn bench_pipeline(
    config: &DataConfig,
    tokenizer: TextTokenizer,
    options: &PipelineBenchOptions,
) -> Result<PipelineBenchReport> {
    let config = DataConfig {
        epochs: None,
        ..config.clone()
    };
    // Shards are read, not tokenized: their reading is the whole difference.
    let raw = !config.files.iter().any(|f| is_manifest_path(f));
    let (stages, tokenize) = if raw {
        let stages = bench_stages(&config, &tokenizer, options.seed, options.sample_bytes)?;
        let tokenize = bench_tokenize(
            &tokenizer,
            &TokenizeBenchOptions {
                files: expand_files(&config.files)?,
                source: SourceOptions::from_config(&config),
                sample_bytes: options.sample_bytes,
                min_seconds: 0.0,
                pipeline_seconds: 0.0,
                threads: config.worker_threads(),
                crate_stages: false,
            },
        )?;
        (Some(stages), Some(tokenize))
    } else {
        (None, None)
    };
    let pipeline = whole_pipeline(&config, tokenizer, options.seed, options.seconds)?;
    Ok(PipelineBenchReport {
        pipeline,
        tokenizer_tokens_per_sec: tokenize.as_ref().map(|t| t.as_given().tokens_per_sec),
        tokenizer_threads_tokens_per_sec: tokenize
            .as_ref()
            .map(|t| t.on_threads.unwrap_or(t.as_given()).tokens_per_sec),
        stages,
        tokenize,
    })
}

/// Consumes batches for up to `seconds` (or until the data ends) and reports throughput.
/// The first batch (thread start-up, first tokenizer calls) is not timed.
pub fn whole_pipeline(
    config: &DataConfig,
    tokenizer: TextTokenizer,
    seed: u64,
    seconds: f64,
) -> Result<PipelineBench> {
    let baseline_rss_bytes = rss_bytes();
    let mut loader = Loader::new(config, tokenizer, seed)?;
    let threads = config.worker_threads();
    let limit = Duration::from_secs_f64(seconds.max(0.1));
    let (mut batches, mut tokens) = (0u64, 0u64);
    let (mut seconds, mut cpu_seconds) = (0.0, 0.0);
    if let Some(first) = loader.next() {
        first?;
        let started = Instant::now();
        let cpu_started = process_cpu_seconds();
        for batch in loader.by_ref() {
            batches += 1;
            tokens += batch?.real_tokens as u64;
            if started.elapsed() >= limit {
                break;
            }
        }
        seconds = started.elapsed().as_secs_f64();
        cpu_seconds = process_cpu_seconds() - cpu_started;
    }
    let rate = tokens as f64 / seconds.max(1e-9);
    Ok(PipelineBench {
        threads,
        batches,
        tokens,
        seconds,
        pipeline_tokens_per_sec: rate,
        tokens_per_sec_per_thread: rate / threads.max(1) as f64,
        cpu_seconds,
        tokens_per_cpu_sec: tokens as f64 / cpu_seconds.max(1e-9),
        peak_rss_bytes: peak_rss_bytes(),
        baseline_rss_bytes,
    })
}

/// The width of the labels of the report's rows.
const LABEL_WIDTH: usize = 28;

impl fmt::Display for PipelineBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(stages) = &self.stages {
            write!(f, "{stages}")?;
        }
        if let Some(tokenize) = &self.tokenize {
            tokenizer_rows(f, tokenize, self.pipeline.threads)?;
            writeln!(f, "  the whole pipeline through the queue:")?;
        }
        let p = &self.pipeline;
        let mut rows = Rows::new(f, LABEL_WIDTH);
        rows.row("threads", p.threads)?;
        rows.row("batches", p.batches)?;
        rows.row("tokens", p.tokens)?;
        rows.row("seconds", format!("{:.2}", p.seconds))?;
        rows.row(
            "pipeline tokens/s",
            format!("{:.0}", p.pipeline_tokens_per_sec),
        )?;
        if let Some(tokenize) = &self.tokenize {
            let share = tokenize.of_zstd_decode(p.pipeline_tokens_per_sec);
            rows.row("  of zstd decode alone", format!("{share:.4}"))?;
        }
        rows.row(
            "tokens/s per thread",
            format!("{:.0}", p.tokens_per_sec_per_thread),
        )?;
        let cores = p.cpu_seconds / p.seconds.max(1e-9);
        rows.row(
            "CPU seconds, all threads",
            format!("{:.2} ({cores:.2} cores)", p.cpu_seconds),
        )?;
        rows.row(
            "tokens per CPU second",
            format!("{:.0}", p.tokens_per_cpu_sec),
        )?;
        rows.row("peak RSS MB", mb(p.peak_rss_bytes))?;
        rows.row("  of which before the pipeline", mb(p.baseline_rss_bytes))
    }
}

/// The tokenizer alone: zstd decoding (the limit), the fast path, the crate, and the
/// tokenizer as run on the loader's thread count, in the stage table's columns.
fn tokenizer_rows(f: &mut fmt::Formatter<'_>, t: &TokenizeBench, threads: usize) -> fmt::Result {
    writeln!(
        f,
        "  the tokenizer alone, 1 thread, on the same sentences ({:.1} MB):",
        t.text_bytes as f64 / 1e6
    )?;
    let row = |f: &mut fmt::Formatter<'_>, label: &str, rate: f64, note: String| {
        writeln!(f, "  {label:<28} {:>8} {:>10} {rate:>14.0}{note}", "", "")
    };
    row(
        f,
        "zstd decode alone (limit)",
        t.zstd_decode.tokens_per_sec,
        String::new(),
    )?;
    if let Some(fast) = &t.fast {
        let share = t.of_zstd_decode(fast.tokens_per_sec);
        row(
            f,
            "fast path",
            fast.tokens_per_sec,
            format!("  {share:.4} of zstd decode"),
        )?;
    }
    let note = t
        .speedup()
        .map_or(String::new(), |x| format!("  fast path {x:.2}x"));
    row(f, "tokenizers crate", t.crate_path.tokens_per_sec, note)?;
    if let Some(on_threads) = &t.on_threads {
        let label = format!("as run, {threads} threads");
        row(f, &label, on_threads.tokens_per_sec, String::new())?;
    }
    Ok(())
}
