//! Shuffled raw streams (`data.shuffle`, on by default): every epoch reads the files in an
//! order of its own and permutes the documents within blocks of `shuffle_window`, keyed
//! by (seed, epoch), the same for any thread count; `shuffle = false` keeps file order;
//! and raw files give the batches of shards holding one file each, shuffled alike.
//! (Exact resume of shuffled raw files: `tests/resume.rs`; slices: `tests/slices.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{batches, data, options_for, same_batches, tokenizer};

use std::io::Read;
use std::path::{Path, PathBuf};

use electra_pipeline::preprocess::preprocess;
use electra_pipeline::{Batch, DataConfig};

/// Moby Dick (135 documents) and the first 25 State of the Union speeches (JSONL), each
/// in two files: four files, so that an epoch's file order is one of 24.
fn corpus(dir: &Path) -> Vec<PathBuf> {
    let text = |name: &str| {
        let mut out = String::new();
        zstd::stream::read::Decoder::new(std::fs::File::open(data(name)).unwrap())
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        out
    };
    let moby = text("corpus/moby_dick.txt.zst");
    let chapters: Vec<&str> = moby
        .split("\n\n")
        .filter(|d| !d.trim().is_empty())
        .collect();
    let sotu = text("corpus/sotu.jsonl.zst");
    let speeches: Vec<&str> = sotu.lines().take(25).collect();
    let files = [
        ("moby-a.txt", chapters[..60].join("\n\n")),
        ("moby-b.txt", chapters[60..].join("\n\n")),
        ("sotu-a.jsonl", speeches[..15].join("\n")),
        ("sotu-b.jsonl", speeches[15..].join("\n")),
    ];
    files
        .iter()
        .map(|(name, text)| {
            let path = dir.join(name);
            std::fs::write(&path, format!("{text}\n")).unwrap();
            path
        })
        .collect()
}

fn config(files: &[PathBuf], window: usize) -> DataConfig {
    DataConfig {
        files: files.iter().map(|p| p.display().to_string()).collect(),
        batch_size: 16,
        max_seq_len: 128,
        threads: 2,
        chunk_bytes: 32 << 10,
        epochs: Some(1),
        shuffle: true,
        shuffle_window: window,
        ..DataConfig::default()
    }
}

/// The documents of `batches` in the order their first example comes.
fn document_order(batches: &[Batch]) -> Vec<u64> {
    batches
        .iter()
        .flat_map(|b| b.example_ids.iter())
        .filter(|(_, example)| *example == 0)
        .map(|(doc, _)| *doc)
        .collect()
}

#[test]
fn a_shuffled_epoch_reads_every_document_once_in_an_order_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    let in_order = document_order(&batches(
        &DataConfig {
            shuffle: false,
            ..config(&files, 40)
        },
        usize::MAX,
    ));
    assert_eq!(in_order.len(), 135 + 25);
    assert!(
        in_order.windows(2).all(|w| w[0] < w[1]),
        "without shuffle: file order"
    );
    let shuffled = config(&files, 40);
    let a = batches(&shuffled, usize::MAX);
    let order = document_order(&a);
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, in_order, "every document once");
    assert_ne!(order, in_order);
    // The same for any thread count and chunk size; another seed, another order.
    let other_threads = DataConfig {
        threads: 4,
        chunk_bytes: 4 << 10,
        ..shuffled.clone()
    };
    assert!(a == batches(&other_threads, usize::MAX));
    let reseeded: Vec<Batch> = electra_pipeline::Loader::new(&shuffled, tokenizer(), 8)
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    assert_ne!(document_order(&reseeded), order);
    // Each epoch has its own order.
    let two = batches(
        &DataConfig {
            epochs: Some(2),
            ..shuffled
        },
        usize::MAX,
    );
    let both = document_order(&two);
    assert_eq!(both.len(), 2 * order.len());
    assert_eq!(both[..order.len()], order[..]);
    assert_ne!(both[order.len()..], order[..]);
}

#[test]
fn batches_from_raw_files_equal_shards_of_one_file_each_shuffled_alike() {
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    // One part per file, one shard per part: the shards permute as the files do.
    let manifests: Vec<String> = (0..4)
        .map(|part| {
            let mut options = options_for(files.clone(), &dir.path().join("shards"), 2, part, 4);
            options.rows_per_shard = 1_000;
            let report = preprocess(&options, &tokenizer(), |_| {}).unwrap();
            report.manifest.display().to_string()
        })
        .collect();
    for window in [40, 4096] {
        let raw = DataConfig {
            epochs: Some(2),
            ..config(&files, window)
        };
        let shards = DataConfig {
            files: manifests.clone(),
            threads: 3,
            ..raw.clone()
        };
        let from_raw = batches(&raw, usize::MAX);
        let from_shards = batches(&shards, usize::MAX);
        assert!(from_raw.len() > 100, "{} batches", from_raw.len());
        assert!(
            same_batches(&from_raw, &from_shards),
            "window {window}: shards give the raw files' shuffled batches"
        );
    }
}
