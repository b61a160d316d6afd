//! Helpers the pipeline's integration tests share.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod moto;

use std::path::{Path, PathBuf};

use electra_pipeline::preprocess::PreprocessOptions;
use electra_pipeline::source::SourceOptions;
use electra_pipeline::{Batch, DataConfig, Loader, TextTokenizer};

/// A file of the project's `data/` folder.
pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(rel)
}

/// The embedded bert-base-uncased tokenizer.
pub fn tokenizer() -> TextTokenizer {
    TextTokenizer::from_file(data("tokenizer/bert-base-uncased/tokenizer.json")).unwrap()
}

/// Preprocessing options for part `part` of `parts` of `files`: 64 documents a shard,
/// 64 KiB chunks.
pub fn options_for(
    files: Vec<PathBuf>,
    out: &Path,
    threads: usize,
    part: usize,
    parts: usize,
) -> PreprocessOptions {
    PreprocessOptions {
        files,
        part_index: part,
        num_parts: parts,
        out_dir: out.to_path_buf(),
        rows_per_shard: 64,
        threads,
        source: SourceOptions {
            chunk_bytes: 64 << 10,
            ..SourceOptions::default()
        },
        tool_version: "test".into(),
        zstd_level: 3,
    }
}

/// The first `n` batches of `config` (seed 7).
pub fn batches(config: &DataConfig, n: usize) -> Vec<Batch> {
    Loader::new(config, tokenizer(), 7)
        .unwrap()
        .take(n)
        .map(|b| b.unwrap())
        .collect()
}

/// Whether two batch lists hold the same examples, masks and ids.
pub fn same_batches(a: &[Batch], b: &[Batch]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.input_ids == y.input_ids
                && x.segment_ids == y.segment_ids
                && x.masked_positions == y.masked_positions
                && x.masked_labels == y.masked_labels
                && x.example_ids == y.example_ids
        })
}
