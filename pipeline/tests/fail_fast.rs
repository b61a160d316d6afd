//! `on_bad_record = "fail"` stops before reading when a compressed input is damaged: the
//! loader and preprocessing check every compressed file first and fail naming it, instead
//! of training on (or writing) the text before the damage. Under `skip` they read as
//! before: the text before the damage, the file counted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::tokenizer;

use std::path::{Path, PathBuf};

use electra_pipeline::preprocess::{preprocess, PreprocessOptions};
use electra_pipeline::source::SourceOptions;
use electra_pipeline::{BadRecordCounts, BadRecordPolicy, DataConfig, Loader, PipelineError};

/// A good plain-text file of many documents, then a zstd file cut in half after many
/// documents of its own: a reader reaches the damage only after thousands of examples.
fn corpus(dir: &Path) -> (PathBuf, PathBuf) {
    let documents = |n: usize| {
        let mut text = String::new();
        for i in 0..n {
            text.push_str(&format!(
                "Document {i} opens with sentence {}.\nIt closes with {} more words.\n\n",
                i * 7919 % 1000,
                i * 104_729 % 997
            ));
        }
        text
    };
    let good = dir.join("a-good.txt");
    std::fs::write(&good, documents(3000)).unwrap();
    // Many zstd blocks, so that half the file decodes to whole documents.
    let whole = zstd::encode_all(documents(20_000).as_bytes(), 3).unwrap();
    let cut = dir.join("b-cut.txt.zst");
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    (good, cut)
}

/// The good file of [`corpus`], then a JSONL gzip file of ten members (C4's layout, one
/// member per 1,000 documents) cut in the middle of its sixth member.
fn gzip_corpus(dir: &Path) -> (PathBuf, PathBuf) {
    use std::io::Write;
    let (good, _) = corpus(dir);
    let mut bytes = Vec::new();
    let mut ends = Vec::new();
    for member in 0..10 {
        let mut lines = String::new();
        for i in member * 1000..(member + 1) * 1000 {
            lines.push_str(&format!(
                "{{\"text\": \"Web page {i} says {}.\\nThen {} more.\"}}\n",
                i * 7919 % 1000,
                i * 104_729 % 997
            ));
        }
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(lines.as_bytes()).unwrap();
        bytes.extend(encoder.finish().unwrap());
        ends.push(bytes.len());
    }
    let cut = dir.join("b-cut.json.gz");
    std::fs::write(&cut, &bytes[..(ends[4] + ends[5]) / 2]).unwrap();
    (good, cut)
}

fn config(files: &[&Path], policy: BadRecordPolicy) -> DataConfig {
    DataConfig {
        files: files.iter().map(|f| f.display().to_string()).collect(),
        on_bad_record: policy,
        threads: 2,
        batch_size: 16,
        epochs: Some(1),
        ..DataConfig::default()
    }
}

fn assert_names_the_cut_file(err: &PipelineError, cut: &Path) {
    assert!(
        matches!(err, PipelineError::Zstd { compressed_offset, .. } if *compressed_offset > 0),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&cut.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("truncated"), "{err}");
}

fn assert_names_the_cut_gzip_file(err: &PipelineError, cut: &Path) {
    let size = std::fs::metadata(cut).unwrap().len();
    assert!(
        matches!(err, PipelineError::Gzip { compressed_offset, .. } if *compressed_offset == size),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&cut.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn a_damaged_zstd_file_fails_the_loader_at_construction_under_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (good, cut) = corpus(dir.path());
    let err = Loader::new(
        &config(&[&good, &cut], BadRecordPolicy::Fail),
        tokenizer(),
        1,
    )
    .expect_err("no batch before the damaged file is found");
    assert_names_the_cut_file(&err, &cut);
}

#[test]
fn under_skip_the_loader_reads_up_to_the_damage_and_counts_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (good, cut) = corpus(dir.path());
    let loader = Loader::new(
        &config(&[&good, &cut], BadRecordPolicy::Skip),
        tokenizer(),
        1,
    );
    let batches: Vec<_> = loader.unwrap().map(|b| b.unwrap()).collect();
    let mut bad = BadRecordCounts::default();
    for b in &batches {
        bad.add(&b.bad_records);
    }
    assert_eq!(
        bad,
        BadRecordCounts {
            unreadable_files: 1,
            ..BadRecordCounts::default()
        }
    );
    let cut_docs = batches
        .iter()
        .flat_map(|b| &b.example_ids)
        .filter(|(doc_id, _)| doc_id >> 32 == 1)
        .count();
    assert!(cut_docs > 100, "{cut_docs} examples from before the damage");
}

#[test]
fn a_damaged_zstd_file_fails_preprocessing_before_any_shard_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (good, cut) = corpus(dir.path());
    let out = dir.path().join("shards");
    let options = |policy| PreprocessOptions {
        files: vec![good.clone(), cut.clone()],
        part_index: 0,
        num_parts: 1,
        out_dir: out.clone(),
        rows_per_shard: 100,
        threads: 2,
        source: SourceOptions {
            on_bad_record: policy,
            chunk_bytes: 16 << 10,
            ..SourceOptions::default()
        },
        tool_version: "test".into(),
        zstd_level: 1,
    };
    let err = preprocess(&options(BadRecordPolicy::Fail), &tokenizer(), |_| {})
        .expect_err("the damaged file fails the job");
    assert_names_the_cut_file(&err, &cut);
    let written: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".lock"))
        .collect();
    assert!(written.is_empty(), "{} files written", written.len());
    // Under skip the same job writes the good file and the text before the damage.
    let report = preprocess(&options(BadRecordPolicy::Skip), &tokenizer(), |_| {}).unwrap();
    assert_eq!(report.bad_records.unreadable_files, 1);
    assert!(report.rows > 3000, "{} documents", report.rows);
}

#[test]
fn a_truncated_gzip_file_fails_the_loader_at_construction_under_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (good, cut) = gzip_corpus(dir.path());
    let err = Loader::new(
        &config(&[&good, &cut], BadRecordPolicy::Fail),
        tokenizer(),
        1,
    )
    .expect_err("no batch before the damaged file is found");
    assert_names_the_cut_gzip_file(&err, &cut);
}

#[test]
fn a_truncated_gzip_file_fails_preprocessing_up_front_and_under_skip_keeps_its_whole_members() {
    let dir = tempfile::tempdir().unwrap();
    let (good, cut) = gzip_corpus(dir.path());
    let out = dir.path().join("shards");
    let options = |policy| PreprocessOptions {
        files: vec![good.clone(), cut.clone()],
        part_index: 0,
        num_parts: 1,
        out_dir: out.clone(),
        rows_per_shard: 1000,
        threads: 2,
        source: SourceOptions {
            on_bad_record: policy,
            chunk_bytes: 16 << 10,
            ..SourceOptions::default()
        },
        tool_version: "test".into(),
        zstd_level: 1,
    };
    let err = preprocess(&options(BadRecordPolicy::Fail), &tokenizer(), |_| {})
        .expect_err("the damaged file fails the job");
    assert_names_the_cut_gzip_file(&err, &cut);
    let written = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".lock")
        })
        .count();
    assert_eq!(written, 0, "files written before the check");
    // Under skip: the good file's 3,000 documents and the five whole members' 5,000.
    let report = preprocess(&options(BadRecordPolicy::Skip), &tokenizer(), |_| {}).unwrap();
    assert_eq!(report.bad_records.unreadable_files, 1);
    assert_eq!(report.rows, 8000);
}
