//! Each stage of the pipeline alone on one thread, over a sample of a raw corpus: reading,
//! tokenizing, packing and masking, on the loader's own code path.

use std::fmt;
use std::time::Instant;

use arrow_array::{Array, ListArray, RecordBatch, StringArray};
use serde::Serialize;

use crate::block::{ChunkDocuments, MaskedBlock};
use crate::config::DataConfig;
use crate::error::Result;
use crate::mask::{MaskOptions, Masker};
use crate::pack::{PackOptions, Packer};
use crate::source::{expand_files, DocumentChunk, DocumentReader, SourceOptions};
use crate::tokenize::TextTokenizer;

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

/// Each stage alone on one thread over a sample.
#[derive(Debug, Clone, Serialize)]
pub struct StageBench {
    /// Text bytes in the sample.
    pub text_bytes: u64,
    /// Tokens in the sample.
    pub tokens: u64,
    /// The stages in pipeline order.
    pub stages: Vec<Stage>,
}

/// Bytes of sentence text in a documents batch (the string buffer's length, no copy).
fn text_len(batch: &RecordBatch) -> u64 {
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

/// The first chunks of `config`'s corpus holding at least `sample_bytes` of text, their
/// text bytes, and the seconds reading them took.
fn read_sample(config: &DataConfig, sample_bytes: u64) -> Result<(Vec<DocumentChunk>, u64, f64)> {
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
    Ok((chunks, text_bytes, started.elapsed().as_secs_f64()))
}

/// Reads up to `sample_bytes` of text from the raw corpus of `config` and times each stage
/// alone over it on this thread.
pub fn bench_stages(
    config: &DataConfig,
    tokenizer: &TextTokenizer,
    seed: u64,
    sample_bytes: u64,
) -> Result<StageBench> {
    let (chunks, text_bytes, read) = read_sample(config, sample_bytes)?;

    let started = Instant::now();
    let tokenized = chunks
        .iter()
        .map(|c| tokenizer.tokenize(&c.batch))
        .collect::<Result<Vec<_>>>()?;
    let tokenize = started.elapsed().as_secs_f64();
    let tokens: u64 = tokenized.iter().map(crate::shard::token_count).sum();

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
    })
}

impl fmt::Display for StageBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  each stage alone, 1 thread, on {:.1} MB of text ({} tokens):",
            self.text_bytes as f64 / 1e6,
            self.tokens
        )?;
        writeln!(
            f,
            "  {:<28} {:>8} {:>10} {:>14}",
            "stage", "seconds", "MB/s", "tokens/s"
        )?;
        for stage in &self.stages {
            writeln!(
                f,
                "  {:<28} {:>8.2} {:>10.2} {:>14.0}",
                stage.name, stage.seconds, stage.mb_per_sec, stage.tokens_per_sec
            )?;
        }
        Ok(())
    }
}
