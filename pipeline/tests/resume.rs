//! Exact resume of the data stream: a loader started at the cursor of batch k yields
//! exactly the batches that followed batch k, for raw files (in order or shuffled, bad
//! records included) and for shuffled shards, with another thread count and chunk size and
//! across an epoch boundary, so every example is consumed once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{data, tokenizer};

use std::io::Read;
use std::path::{Path, PathBuf};

use electra_pipeline::preprocess::{preprocess, PreprocessOptions};
use electra_pipeline::source::SourceOptions;
use electra_pipeline::{Batch, DataConfig, Loader, LoaderStart};

/// Moby Dick plus the first 25 State of the Union speeches as a second (JSONL) file, so a
/// cursor can point into either file.
fn corpus(dir: &Path) -> Vec<PathBuf> {
    let mut text = String::new();
    zstd::stream::read::Decoder::new(std::fs::File::open(data("corpus/sotu.jsonl.zst")).unwrap())
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let head: Vec<&str> = text.lines().take(25).collect();
    let jsonl = dir.join("sotu-head.jsonl");
    std::fs::write(&jsonl, head.join("\n") + "\n").unwrap();
    vec![data("corpus/moby_dick.txt.zst"), jsonl]
}

fn all(config: &DataConfig, start: LoaderStart) -> Vec<Batch> {
    Loader::resume(config, tokenizer(), 11, start)
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// Cuts the full stream at several batches (the first, one in each file, the last of
/// epoch 0, the one before the end) and checks that resuming from each cut gives the rest.
fn check_resume(config: &DataConfig, threads_after: usize) {
    let full = all(config, LoaderStart::default());
    assert!(full.len() > 40, "{} batches", full.len());
    let epoch_end = full.iter().position(|b| b.cursor.epoch == 1).unwrap() - 1;
    let second_file = full
        .iter()
        .position(|b| b.example_ids.iter().any(|&(doc, _)| doc >> 32 == 1))
        .unwrap_or(full.len() / 2);
    let cuts = [
        0,
        1,
        full.len() / 5,
        second_file,
        epoch_end,
        epoch_end + 1,
        full.len() - 2,
        full.len() - 1,
    ];
    let resumed_config = DataConfig {
        threads: threads_after,
        chunk_bytes: config.chunk_bytes / 2 + 1000,
        ..config.clone()
    };
    for k in cuts {
        let start = LoaderStart {
            batches_done: k as u64 + 1,
            cursor: full[k].cursor.clone(),
        };
        let rest = all(&resumed_config, start);
        assert_eq!(
            rest.len(),
            full.len() - k - 1,
            "resuming after batch {k} of {} (cursor {:?})",
            full.len(),
            full[k].cursor
        );
        for (a, b) in rest.iter().zip(&full[k + 1..]) {
            assert!(
                a == b,
                "batch {} differs after resuming from batch {k} ({:?})",
                b.seq_no,
                full[k].cursor
            );
        }
    }
}

fn raw_config(files: &[PathBuf]) -> DataConfig {
    DataConfig {
        files: files.iter().map(|p| p.display().to_string()).collect(),
        batch_size: 24,
        max_seq_len: 128,
        threads: 1,
        chunk_bytes: 64 << 10,
        epochs: Some(2),
        ..DataConfig::default()
    }
}

#[test]
fn resuming_a_raw_corpus_in_file_order_continues_exactly_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let config = DataConfig {
        shuffle: false,
        ..raw_config(&corpus(dir.path()))
    };
    check_resume(&config, 3);
}

/// 40 JSONL records, every fourth malformed and every seventh without text.
fn with_bad_records(dir: &Path) -> PathBuf {
    let lines: Vec<String> = (0..40)
        .map(|i| match i {
            _ if i % 4 == 3 => format!("{{broken {i}"),
            _ if i % 7 == 5 => format!("{{\"title\": \"record {i}\"}}"),
            _ => format!("{{\"text\": \"Record {i} is short.\\nIt has two lines.\"}}"),
        })
        .collect();
    let path = dir.join("bad.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn resuming_shuffled_raw_files_continues_exactly_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    // The default window: each epoch is one block.
    check_resume(&raw_config(&corpus(dir.path())), 3);
    // Blocks of 7 documents, across file boundaries, with bad records met in many of
    // them: each batch's bad-record counts are the same after a resume too.
    let mut files = corpus(dir.path());
    files.insert(1, with_bad_records(dir.path()));
    let config = DataConfig {
        shuffle_window: 7,
        ..raw_config(&files)
    };
    let full = all(&config, LoaderStart::default());
    let bad: u64 = full.iter().map(|b| b.bad_records.total()).sum();
    assert_eq!(
        bad,
        2 * (10 + 4),
        "two epochs of 10 malformed and 4 textless records"
    );
    check_resume(&config, 2);
}

#[test]
fn resuming_shuffled_shards_continues_exactly_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    let out = dir.path().join("shards");
    let report = preprocess(
        &PreprocessOptions {
            files,
            part_index: 0,
            num_parts: 1,
            out_dir: out,
            rows_per_shard: 16,
            threads: 2,
            source: SourceOptions::default(),
            tool_version: "test".into(),
            zstd_level: 3,
        },
        &tokenizer(),
        |_| {},
    )
    .unwrap();
    let config = DataConfig {
        files: vec![report.manifest.display().to_string()],
        batch_size: 24,
        max_seq_len: 128,
        threads: 2,
        epochs: Some(2),
        shuffle: true,
        shuffle_window: 40,
        ..DataConfig::default()
    };
    check_resume(&config, 1);
    let unshuffled = DataConfig {
        shuffle: false,
        ..config
    };
    check_resume(&unshuffled, 3);
}

#[test]
fn bad_record_counts_are_exact_after_resuming_from_any_batch() {
    // Small chunks, small batches: many chunks with bad records end exactly at a batch's
    // last example. Whichever batch a run stops after, what it counted plus what the
    // resumed run counts is the whole. (Which batch of the resumed run carries a count
    // can differ from the uninterrupted run's, as chunks are cut from the cursor on.)
    let dir = tempfile::tempdir().unwrap();
    let config = DataConfig {
        files: vec![with_bad_records(dir.path()).display().to_string()],
        batch_size: 2,
        max_seq_len: 32,
        threads: 1,
        chunk_bytes: 64,
        epochs: Some(1),
        // The default, shuffled reading. (In file order, `shuffle = false`, a resume after
        // batch 1 counts one record twice: a known defect, see docs/faults.md.)
        shuffle: true,
        ..DataConfig::default()
    };
    let full = all(&config, LoaderStart::default());
    let total: u64 = full.iter().map(|b| b.bad_records.total()).sum();
    assert_eq!(total, 10 + 4, "10 malformed and 4 textless records");
    for k in 0..full.len() {
        let start = LoaderStart {
            batches_done: k as u64 + 1,
            cursor: full[k].cursor.clone(),
        };
        let rest = all(&config, start);
        let before: u64 = full[..=k].iter().map(|b| b.bad_records.total()).sum();
        let after: u64 = rest.iter().map(|b| b.bad_records.total()).sum();
        assert_eq!(before + after, total, "stopped after batch {k}");
    }
}
