//! Offline preprocessing to Parquet shards and training from them: determinism, restart,
//! parts and merge, and equality with the live pipeline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{batches, data, options_for, same_batches, tokenizer};

use std::path::{Path, PathBuf};

use electra_pipeline::preprocess::{
    merge_manifests, part_shard_name, preprocess, PreprocessOptions,
};
use electra_pipeline::shard::{read_manifest, write_manifest, ShardChecks, ShardReader};
use electra_pipeline::{DataConfig, DataExecution, Loader, PipelineError};

fn corpus() -> Vec<PathBuf> {
    vec![
        data("corpus/moby_dick.txt.zst"),
        data("corpus/sotu.jsonl.zst"),
    ]
}

fn options(out: &Path, threads: usize, part: usize, parts: usize) -> PreprocessOptions {
    options_for(corpus(), out, threads, part, parts)
}

#[test]
fn shards_are_identical_for_any_thread_count_and_pyarrow_shaped() {
    let one = tempfile::tempdir().unwrap();
    let three = tempfile::tempdir().unwrap();
    let tok = tokenizer();
    let a = preprocess(&options(one.path(), 1, 0, 1), &tok, |_| {}).unwrap();
    let b = preprocess(&options(three.path(), 3, 0, 1), &tok, |_| {}).unwrap();
    let ma = read_manifest(&a.manifest).unwrap();
    let mb = read_manifest(&b.manifest).unwrap();
    assert!(ma.complete);
    assert_eq!(
        ma.shards, mb.shards,
        "same bytes (sha256) for 1 and 3 threads"
    );
    assert_eq!(ma.rows(), 135 + 233, "every document of both files");
    assert!(
        ma.shards.len() >= 6,
        "rows_per_shard = 64 cuts several shards"
    );
    assert_eq!(ma.tokenizer_sha256, tok.sha256());
    // Every shard reads back with its metadata checks and token count.
    let mut tokens = 0;
    for s in &ma.shards {
        let reader = ShardReader::open(
            &one.path().join(&s.path),
            &ShardChecks {
                sha256: Some(s.sha256.clone()),
                tokenizer_sha256: Some(tok.sha256().to_string()),
                vocab_size: Some(30522),
                bytes: Some(s.bytes),
                rows: Some(s.rows),
            },
        )
        .unwrap();
        for batch in reader {
            tokens += electra_pipeline::shard::token_count(&batch.unwrap());
        }
    }
    assert_eq!(tokens, ma.tokens());
}

#[test]
fn batches_from_shards_equal_batches_from_the_raw_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let report = preprocess(&options(dir.path(), 2, 0, 1), &tokenizer(), |_| {}).unwrap();
    let raw = DataConfig {
        files: corpus().iter().map(|p| p.display().to_string()).collect(),
        batch_size: 16,
        max_seq_len: 128,
        epochs: Some(2),
        shuffle: false,
        execution: DataExecution {
            threads: 2,
            ..DataExecution::default()
        },
        ..DataConfig::default()
    };
    let shards = DataConfig {
        files: vec![report.manifest.display().to_string()],
        execution: DataExecution {
            threads: 3,
            ..raw.execution.clone()
        },
        ..raw.clone()
    };
    let live = batches(&raw, 400);
    let from_shards = batches(&shards, 400);
    assert_eq!(live.len(), 400);
    assert!(
        same_batches(&live, &from_shards),
        "shards give the live pipeline's batches"
    );
    // A folder works as well as its manifest.
    let by_folder = DataConfig {
        files: vec![dir.path().display().to_string()],
        ..shards.clone()
    };
    assert!(same_batches(&batches(&by_folder, 20), &live[..20]));
}

#[test]
fn shard_shuffling_is_deterministic_per_seed_and_epoch_and_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let moby = vec![data("corpus/moby_dick.txt.zst")];
    let report = preprocess(
        &options_for(moby, dir.path(), 2, 0, 1),
        &tokenizer(),
        |_| {},
    )
    .unwrap();
    let config = DataConfig {
        files: vec![report.manifest.display().to_string()],
        batch_size: 64,
        epochs: Some(2),
        shuffle: true,
        shuffle_window: 100,
        execution: DataExecution {
            threads: 1,
            ..DataExecution::default()
        },
        ..DataConfig::default()
    };
    let a = batches(&config, usize::MAX);
    let b = batches(
        &DataConfig {
            execution: DataExecution {
                threads: 4,
                ..config.execution.clone()
            },
            ..config.clone()
        },
        usize::MAX,
    );
    assert!(same_batches(&a, &b), "same order on 1 and 4 threads");
    let unshuffled = batches(
        &DataConfig {
            shuffle: false,
            ..config.clone()
        },
        10,
    );
    assert!(
        !same_batches(&a[..10], &unshuffled[..10]),
        "the shuffle changes the order"
    );
    // Every document is seen (a batch is labelled with its first example's epoch, so
    // count over the whole run), and the run has two epochs.
    let mut docs: Vec<u64> = a
        .iter()
        .flat_map(|b| b.example_ids.iter().map(|x| x.0))
        .collect();
    docs.sort_unstable();
    docs.dedup();
    assert_eq!(docs.len(), 135);
    assert!(a.iter().any(|b| b.epoch == 1));
    let first_docs = |e: u64| a.iter().find(|b| b.epoch == e).map(|b| b.example_ids[0].0);
    assert_ne!(first_docs(0), first_docs(1), "each epoch has its own order");
}

#[test]
fn a_rerun_keeps_verified_shards_and_redoes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer();
    let first = preprocess(&options(dir.path(), 2, 0, 1), &tok, |_| {}).unwrap();
    let complete = read_manifest(&first.manifest).unwrap();
    // A crash after shard 3: the manifest lists 3 shards, is not complete, and a
    // temporary file and a later shard are lying around; shard 2 got corrupted.
    let mut partial = complete.clone();
    partial.shards.truncate(3);
    partial.complete = false;
    write_manifest(&first.manifest, &partial).unwrap();
    std::fs::write(dir.path().join(".part-00000-00003.parquet.tmp-1"), b"half").unwrap();
    // The same documents come out only with the same inputs and options: a rerun with
    // another max_doc_bytes is refused rather than silently shifted (tested below).
    let shard2 = dir.path().join(part_shard_name(0, 1, 2));
    let mut bytes = std::fs::read(&shard2).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&shard2, bytes).unwrap();

    let second = preprocess(&options(dir.path(), 2, 0, 1), &tok, |_| {}).unwrap();
    assert_eq!(second.shards_kept, 2, "shards 0 and 1 verify, 2 does not");
    let redone = read_manifest(&second.manifest).unwrap();
    assert_eq!(redone, complete, "the same shards, byte for byte");
    assert!(!dir.path().join(".part-00000-00003.parquet.tmp-1").exists());
    // A third run finds everything complete and writes nothing.
    let third = preprocess(&options(dir.path(), 2, 0, 1), &tok, |_| {}).unwrap();
    assert_eq!(
        (third.shards_kept, third.shards_written),
        (complete.shards.len(), 0)
    );
}

#[test]
fn parts_cover_the_corpus_once_and_merge_into_one_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer();
    let single = tempfile::tempdir().unwrap();
    let whole = preprocess(&options(single.path(), 2, 0, 1), &tok, |_| {}).unwrap();
    for part in 0..2 {
        preprocess(&options(dir.path(), 1, part, 2), &tok, |_| {}).unwrap();
    }
    let merged = merge_manifests(
        &[dir.path().to_path_buf()],
        &dir.path().join("manifest.json"),
    )
    .unwrap();
    assert_eq!(merged.rows(), whole.rows);
    assert_eq!(merged.tokens(), whole.tokens);
    // The merged folder trains, and gives the same documents as the single-part job.
    let config = |files: String| DataConfig {
        files: vec![files],
        batch_size: 32,
        epochs: Some(1),
        shuffle: false,
        execution: DataExecution {
            threads: 2,
            ..DataExecution::default()
        },
        ..DataConfig::default()
    };
    let docs = |c: &DataConfig| {
        let mut d: Vec<u64> = Loader::new(c, tokenizer(), 1)
            .unwrap()
            .flat_map(|b| b.unwrap().example_ids.into_iter().map(|x| x.0))
            .collect();
        d.sort_unstable();
        d.dedup();
        d
    };
    assert_eq!(
        docs(&config(
            dir.path().join("manifest.json").display().to_string()
        )),
        docs(&config(whole.manifest.display().to_string()))
    );
    // Another tokenizer's part is refused by the merge.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let mut foreign = read_manifest(&whole.manifest).unwrap();
    foreign.tokenizer_sha256 = "0".repeat(64);
    write_manifest(&other.join("manifest.json"), &foreign).unwrap();
    let err = merge_manifests(
        &[dir.path().to_path_buf(), other.clone()],
        &dir.path().join("m2.json"),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("refusing to mix tokenizers"),
        "{err}"
    );
}

#[test]
fn bad_shards_and_manifests_are_refused_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer();
    let report = preprocess(&options(dir.path(), 2, 0, 1), &tok, |_| {}).unwrap();
    let manifest = read_manifest(&report.manifest).unwrap();
    let config = DataConfig {
        files: vec![report.manifest.display().to_string()],
        batch_size: 8,
        shuffle: false,
        // One pass: a check that stops refusing fails the test instead of hanging it.
        epochs: Some(1),
        execution: DataExecution {
            threads: 1,
            ..DataExecution::default()
        },
        ..DataConfig::default()
    };
    let first_error = |config: &DataConfig| -> PipelineError {
        match Loader::new(config, tokenizer(), 1) {
            Err(e) => e,
            Ok(loader) => loader.filter_map(|b| b.err()).next().expect("an error"),
        }
    };

    // A flipped byte is caught by the manifest's sha256.
    let shard0 = dir.path().join(&manifest.shards[0].path);
    let good = std::fs::read(&shard0).unwrap();
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x01;
    std::fs::write(&shard0, &flipped).unwrap();
    let err = first_error(&config).to_string();
    assert!(
        err.contains("part-00000-00000.parquet") && err.contains("sha256"),
        "{err}"
    );
    // Truncated: caught before parsing, with verification off too.
    std::fs::write(&shard0, &good[..good.len() - 20]).unwrap();
    let err = first_error(&DataConfig {
        execution: DataExecution {
            verify_shards: false,
            ..config.execution.clone()
        },
        ..config.clone()
    })
    .to_string();
    assert!(err.contains("part-00000-00000.parquet"), "{err}");
    std::fs::write(&shard0, &good).unwrap();

    // Paths that escape the folder.
    for escape in ["../x.parquet", "/etc/passwd"] {
        let mut m = manifest.clone();
        m.shards[0].path = escape.into();
        let path = dir.path().join("manifest.escape.json");
        write_manifest(&path, &m).unwrap();
        let err = first_error(&DataConfig {
            files: vec![path.display().to_string()],
            ..config.clone()
        })
        .to_string();
        assert!(err.contains("escapes"), "{escape}: {err}");
    }
    // Another tokenizer.
    let mut m = manifest.clone();
    m.tokenizer_sha256 = "ab".repeat(32);
    let path = dir.path().join("manifest.other-tok.json");
    write_manifest(&path, &m).unwrap();
    let err = first_error(&DataConfig {
        files: vec![path.display().to_string()],
        ..config.clone()
    });
    assert!(
        matches!(err, PipelineError::TokenizerMismatch { .. }),
        "{err}"
    );
    // Incomplete.
    let mut m = manifest.clone();
    m.complete = false;
    let path = dir.path().join("manifest.partial.json");
    write_manifest(&path, &m).unwrap();
    let err = first_error(&DataConfig {
        files: vec![path.display().to_string()],
        ..config.clone()
    })
    .to_string();
    assert!(err.contains("incomplete"), "{err}");
}

#[test]
fn a_rerun_with_other_reading_options_is_refused_not_shifted() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer();
    let first = preprocess(&options(dir.path(), 2, 0, 1), &tok, |_| {}).unwrap();
    let mut partial = read_manifest(&first.manifest).unwrap();
    partial.shards.truncate(2);
    partial.complete = false;
    write_manifest(&first.manifest, &partial).unwrap();
    // Lines over 200 bytes are now skipped: the document stream differs.
    let mut changed = options(dir.path(), 2, 0, 1);
    changed.source.max_doc_bytes = 200;
    let err = preprocess(&changed, &tok, |_| {}).unwrap_err().to_string();
    assert!(err.contains("reading options changed"), "{err}");
}

#[test]
fn merge_refuses_a_missing_part_and_a_folder_split_another_way() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer();
    preprocess(&options(dir.path(), 1, 0, 3), &tok, |_| {}).unwrap();
    preprocess(&options(dir.path(), 1, 2, 3), &tok, |_| {}).unwrap();
    let err = merge_manifests(
        &[dir.path().to_path_buf()],
        &dir.path().join("manifest.json"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("parts [0, 2]"), "{err}");
    let err = preprocess(&options(dir.path(), 1, 0, 2), &tok, |_| {}).unwrap_err();
    assert!(err.to_string().contains("3 parts"), "{err}");
}

#[test]
fn shards_are_read_with_word_starts_only_when_masking_needs_them() {
    use electra_pipeline::corpus::{DocumentSource, Shards};
    use electra_pipeline::DataSlice;
    use electra_schemas::tokenized::WORD_STARTS;

    let dir = tempfile::tempdir().unwrap();
    let moby = vec![data("corpus/moby_dick.txt.zst")];
    let options = options_for(moby, dir.path(), 2, 0, 1);
    let report = preprocess(&options, &tokenizer(), |_| {}).unwrap();
    let config = DataConfig {
        files: vec![report.manifest.display().to_string()],
        shuffle: false,
        ..DataConfig::default()
    };
    let first_chunk = |word_starts| {
        let t = tokenizer();
        let mut shards = Shards::open(&config, &t, 1, DataSlice::WHOLE, word_starts).unwrap();
        let mut epoch = shards.epoch(0, None).unwrap();
        epoch.next_chunk().unwrap().unwrap().chunk.batch
    };
    let (with, without) = (first_chunk(true), first_chunk(false));
    assert!(without.column_by_name(WORD_STARTS).is_none());
    // The column is the shard's own, rows in order.
    let manifest = read_manifest(&report.manifest).unwrap();
    let shard = dir.path().join(&manifest.shards[0].path);
    let mut reader = ShardReader::open(&shard, &ShardChecks::default()).unwrap();
    let first = reader.next().unwrap().unwrap();
    let n = with.num_rows().min(first.num_rows());
    assert!(n > 10, "{n} rows");
    let column = |b: &arrow_array::RecordBatch| b.column_by_name(WORD_STARTS).unwrap().slice(0, n);
    assert_eq!(column(&with).as_ref(), column(&first).as_ref());
}

#[test]
fn whole_word_and_span_masks_are_the_same_from_shards_and_raw_on_any_thread_count() {
    use electra_pipeline::MaskPositions;

    let dir = tempfile::tempdir().unwrap();
    let moby = vec![data("corpus/moby_dick.txt.zst")];
    let report = preprocess(
        &options_for(moby.clone(), dir.path(), 2, 0, 1),
        &tokenizer(),
        |_| {},
    )
    .unwrap();
    let raw = DataConfig {
        files: moby.iter().map(|p| p.display().to_string()).collect(),
        batch_size: 16,
        shuffle: false,
        execution: DataExecution {
            threads: 1,
            ..DataExecution::default()
        },
        ..DataConfig::default()
    };
    let random = batches(&raw, 150);
    for positions in [MaskPositions::WholeWord, MaskPositions::Span] {
        let one = DataConfig {
            mask_positions: positions,
            ..raw.clone()
        };
        let three = DataConfig {
            execution: DataExecution {
                threads: 3,
                ..DataExecution::default()
            },
            ..one.clone()
        };
        let shards = DataConfig {
            files: vec![report.manifest.display().to_string()],
            execution: DataExecution {
                threads: 2,
                ..DataExecution::default()
            },
            ..one.clone()
        };
        let live = batches(&one, 150);
        assert!(
            same_batches(&live, &batches(&three, 150)),
            "{positions:?}: 1 and 3 threads"
        );
        assert!(
            same_batches(&live, &batches(&shards, 150)),
            "{positions:?}: shards and raw"
        );
        let masked =
            |b: &[electra_pipeline::Batch]| b.iter().map(|b| b.num_masked()).sum::<usize>();
        assert_eq!(
            masked(&live),
            masked(&random),
            "{positions:?}: as many positions as random"
        );
        assert!(live
            .iter()
            .zip(&random)
            .any(|(a, b)| a.masked_positions != b.masked_positions));
    }
}
