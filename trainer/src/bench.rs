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
    /// CPU time of the whole process over the measurement (every thread: reader, workers,
    /// batcher and the consumer), in seconds.
    pub cpu_seconds: f64,
    /// `tokens / cpu_seconds`: throughput per core of CPU time actually used.
    pub tokens_per_cpu_sec: f64,
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
    let mut cpu_seconds = 0.0;
    if let Some(first) = loader.next() {
        first?;
        let started = Instant::now();
        let cpu_started = crate::device::process_cpu_seconds();
        for batch in loader.by_ref() {
            let batch = batch?;
            batches += 1;
            tokens += batch.real_tokens as u64;
            if started.elapsed() >= limit {
                break;
            }
        }
        seconds = started.elapsed().as_secs_f64();
        cpu_seconds = crate::device::process_cpu_seconds() - cpu_started;
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

/// One stage of the pipeline measured alone, on one thread.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    /// `read` (zstd decode + lines -> documents), `tokenize`, `pack` or `mask`.
    pub name: &'static str,
    /// Seconds over the sample.
    pub seconds: f64,
    /// Tokens of the sample per second.
    pub tokens_per_sec: f64,
    /// Text bytes of the sample per second.
    pub mb_per_sec: f64,
}

/// Each stage alone on one thread, and the bare tokenizer on the same text.
#[derive(Debug, Clone, Serialize)]
pub struct StageBench {
    /// Text bytes in the sample.
    pub text_bytes: u64,
    /// Tokens in the sample.
    pub tokens: u64,
    /// The stages in pipeline order.
    pub stages: Vec<Stage>,
    /// The `tokenizers` crate encoding the sample's sentences one by one on one thread
    /// (`encode_fast`, no special tokens): the limit of the live path.
    pub tokenizer_tokens_per_sec: f64,
    /// Threads of the multi-threaded bare-tokenizer run (the loader's worker count).
    pub tokenizer_threads: usize,
    /// The same on `tokenizer_threads` threads at once, each encoding every
    /// `tokenizer_threads`-th sentence: how far this machine scales the tokenizer alone,
    /// the limit of the pipeline at that thread count.
    pub tokenizer_threads_tokens_per_sec: f64,
}

/// Encodes `sentences` one by one (`encode_fast`, no special tokens) on `threads` threads
/// at once, thread t taking sentences t, t + threads, ...: `(tokens, seconds)`.
fn bare_tokenizer(
    tokenizer: &TextTokenizer,
    sentences: &[String],
    threads: usize,
) -> Result<(u64, f64)> {
    let threads = threads.max(1);
    let started = Instant::now();
    let counts = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || -> std::result::Result<u64, String> {
                    let mut tokens = 0u64;
                    for sentence in sentences.iter().skip(t).step_by(threads) {
                        let encoding = tokenizer
                            .inner()
                            .encode_fast(sentence.as_str(), false)
                            .map_err(|e| e.to_string())?;
                        tokens += encoding.len() as u64;
                    }
                    Ok(tokens)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a tokenizer thread panicked".into()))
            })
            .collect::<std::result::Result<Vec<u64>, String>>()
    })
    .map_err(|reason| crate::error::TrainError::InvalidConfig {
        field: "tokenizer".into(),
        reason,
    })?;
    Ok((
        counts.iter().sum(),
        started.elapsed().as_secs_f64().max(1e-9),
    ))
}

/// Bytes of sentence text in a documents batch (the string buffer's length, no copy).
fn text_len(batch: &arrow_array::RecordBatch) -> u64 {
    use arrow_array::{Array, ListArray, StringArray};
    batch
        .column_by_name(electra_schemas::documents::SENTENCES)
        .and_then(|c| c.as_any().downcast_ref::<ListArray>())
        .and_then(|l| {
            let values = l.values().as_any().downcast_ref::<StringArray>()?;
            let offsets = values.value_offsets();
            Some((offsets[offsets.len() - 1] - offsets[0]) as u64)
        })
        .unwrap_or(0)
}

/// Reads up to `sample_bytes` of text from the raw corpus of `config` and times each stage
/// alone over it on this thread, then the bare tokenizer on the same sentences, on one
/// thread and on the loader's worker count.
pub fn bench_stages(
    config: &DataConfig,
    tokenizer: &TextTokenizer,
    seed: u64,
    sample_bytes: u64,
) -> Result<StageBench> {
    use electra_pipeline::mask::{MaskOptions, Masker};
    use electra_pipeline::pack::{PackOptions, Packer};
    use electra_pipeline::source::{sentences, SourceOptions};
    use electra_pipeline::{expand_files, DocumentReader};
    use electra_pipeline::{ChunkDocuments, MaskedBlock};

    let files = expand_files(&config.files)?;
    let started = Instant::now();
    let mut chunks = Vec::new();
    let mut text_bytes = 0u64;
    for chunk in DocumentReader::new(files, SourceOptions::from_config(config))? {
        let chunk = chunk?;
        text_bytes += text_len(&chunk.batch);
        chunks.push(chunk);
        if text_bytes >= sample_bytes {
            break;
        }
    }
    let read = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let tokenized = chunks
        .iter()
        .map(|c| tokenizer.tokenize(&c.batch))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let tokenize = started.elapsed().as_secs_f64();
    let tokens: u64 = tokenized
        .iter()
        .map(electra_pipeline::shard::token_count)
        .sum();

    // Packing and masking on the loader's path: documents packed into one block per
    // chunk, then every example of the block masked in place.
    let special = tokenizer.special();
    let packer = Packer::new(PackOptions::from_config(config), special);
    let masker = Masker::new(
        MaskOptions::from_config(config, tokenizer.vocab_size()),
        special,
    );
    let started = Instant::now();
    let mut blocks = Vec::with_capacity(tokenized.len());
    let mut position = 0;
    for batch in &tokenized {
        let mut block = MaskedBlock::new();
        let documents = ChunkDocuments {
            batch,
            rows: None,
            first_document: position,
            stride: 1,
            word_starts: masker.needs_word_starts(),
        };
        block.pack_tokenized(&packer, seed, 0, documents)?;
        position += batch.num_rows() as u64;
        blocks.push(block);
    }
    let pack = started.elapsed().as_secs_f64();

    let started = Instant::now();
    for block in &mut blocks {
        block.mask(&masker, seed, 0);
    }
    let mask = started.elapsed().as_secs_f64();
    std::hint::black_box(&blocks);

    let all: Vec<String> = chunks.iter().flat_map(|c| sentences(&c.batch)).collect();
    let (bare_tokens, bare) = bare_tokenizer(tokenizer, &all, 1)?;
    let threads = config.worker_threads();
    let (threads_tokens, threads_seconds) = bare_tokenizer(tokenizer, &all, threads)?;

    let stage = |name, seconds: f64| Stage {
        name,
        seconds,
        tokens_per_sec: tokens as f64 / seconds.max(1e-9),
        mb_per_sec: text_bytes as f64 / 1e6 / seconds.max(1e-9),
    };
    Ok(StageBench {
        text_bytes,
        tokens,
        stages: vec![
            stage("read", read),
            stage("tokenize", tokenize),
            stage("pack", pack),
            stage("mask", mask),
        ],
        tokenizer_tokens_per_sec: bare_tokens as f64 / bare,
        tokenizer_threads: threads,
        tokenizer_threads_tokens_per_sec: threads_tokens as f64 / threads_seconds,
    })
}
