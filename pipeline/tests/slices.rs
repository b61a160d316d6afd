//! Data slices: S loaders, each on one slice of the stream, together yield exactly the
//! examples of the whole stream, each once; `DataSlice::WHOLE` is the plain loader; a slice
//! resumes exactly from its own cursor; a slice without documents and an invalid slice are
//! errors. For raw files and for shards, shuffled or not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{data, tokenizer};

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use arrow_array::{Array, UInt64Array};
use electra_pipeline::preprocess::{preprocess, PreprocessOptions};
use electra_pipeline::shard::{read_manifest, ShardChecks, ShardReader};
use electra_pipeline::source::SourceOptions;
use electra_pipeline::{Batch, DataConfig, DataSlice, Loader, LoaderStart, PipelineError};

const SEED: u64 = 5;
/// The global batch: every slice count tested divides it.
const GLOBAL_BATCH: usize = 24;
const SHUFFLE_WINDOW: usize = 40;

/// Moby Dick plus the first 25 State of the Union speeches as a JSONL file, so the stream
/// crosses a file boundary.
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

fn make_shards(files: Vec<PathBuf>, out: PathBuf, rows_per_shard: u64) -> String {
    let report = preprocess(
        &PreprocessOptions {
            files,
            part_index: 0,
            num_parts: 1,
            out_dir: out,
            rows_per_shard,
            threads: 2,
            source: SourceOptions::default(),
            tool_version: "test".into(),
            zstd_level: 3,
        },
        &tokenizer(),
        |_| {},
    )
    .unwrap();
    report.manifest.display().to_string()
}

fn config(files: Vec<String>, shuffle: bool) -> DataConfig {
    DataConfig {
        files,
        batch_size: GLOBAL_BATCH,
        max_seq_len: 128,
        threads: 2,
        chunk_bytes: 64 << 10,
        epochs: Some(1),
        shuffle,
        shuffle_window: SHUFFLE_WINDOW,
        ..DataConfig::default()
    }
}

fn raw_config(dir: &Path) -> DataConfig {
    let files = corpus(dir)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    config(files, false)
}

fn shard_config(dir: &Path, shuffle: bool) -> DataConfig {
    let manifest = make_shards(corpus(dir), dir.join("shards"), 16);
    config(vec![manifest], shuffle)
}

/// The config of one of `count` slices: the global batch divided among them.
fn slice_config(config: &DataConfig, count: usize) -> DataConfig {
    DataConfig {
        batch_size: config.batch_size / count,
        ..config.clone()
    }
}

/// Every batch of a slice from `start`, and the documents its reader sent to the workers.
fn load(config: &DataConfig, slice: DataSlice, start: LoaderStart) -> (Vec<Batch>, u64) {
    let mut loader = Loader::with_slice(config, tokenizer(), SEED, start, slice).unwrap();
    let batches: Vec<Batch> = loader.by_ref().map(|b| b.unwrap()).collect();
    (batches, loader.stats().documents_read)
}

/// `(doc_id, example_index)`.
type Key = (u64, u32);
/// An example as the model sees it: tokens, segments, and `(position, label)` of the
/// masked positions, all without padding.
type Example = (Vec<i64>, Vec<i64>, Vec<(i64, i64)>);

/// The examples of `batches` in order, cut out of the padded rows.
fn examples(batches: &[Batch]) -> Vec<(Key, Example)> {
    let mut out = Vec::new();
    for b in batches {
        let l = b.seq_len;
        for (row, &key) in b.example_ids.iter().enumerate() {
            let span = row * l..(row + 1) * l;
            let len = b.attention_mask[span.clone()].iter().sum::<i64>() as usize;
            let tokens = b.input_ids[row * l..row * l + len].to_vec();
            let segments = b.segment_ids[row * l..row * l + len].to_vec();
            let masked = b
                .masked_positions
                .iter()
                .zip(&b.masked_labels)
                .filter(|(&p, _)| span.contains(&(p as usize)))
                .map(|(&p, &label)| (p - (row * l) as i64, label))
                .collect();
            out.push((key, (tokens, segments, masked)));
        }
    }
    out
}

/// `examples` keyed by example id; every id must be new.
fn by_id(into: &mut BTreeMap<Key, Example>, examples: Vec<(Key, Example)>, what: &str) {
    for (key, example) in examples {
        assert!(
            into.insert(key, example).is_none(),
            "{what}: example {key:?} comes twice"
        );
    }
}

/// For S in {2, 3}: the slices' examples over one epoch are disjoint and their union is
/// the whole stream's, each slice holds only its own documents (`owns(position)`), and
/// the readers send each document to the workers once in all.
fn check_partition(config: &DataConfig, owns: impl Fn(DataSlice, u64) -> bool) {
    let (whole, whole_documents) = load(config, DataSlice::WHOLE, LoaderStart::default());
    let mut expected = BTreeMap::new();
    by_id(&mut expected, examples(&whole), "the whole stream");
    assert!(expected.len() > 500, "{} examples", expected.len());
    for count in [2, 3] {
        let mut union = BTreeMap::new();
        let mut documents = 0;
        for index in 0..count {
            let slice = DataSlice::new(index, count).unwrap();
            let (batches, sent) = load(&slice_config(config, count), slice, LoaderStart::default());
            assert!(
                batches.len() > 5,
                "slice {slice}: {} batches",
                batches.len()
            );
            for (i, b) in batches.iter().enumerate() {
                if i + 1 < batches.len() {
                    assert_eq!(b.batch_size, config.batch_size / count);
                }
                assert!(
                    owns(slice, b.cursor.document),
                    "slice {slice}: batch {} ends at position {}",
                    b.seq_no,
                    b.cursor.document
                );
            }
            documents += sent;
            by_id(
                &mut union,
                examples(&batches),
                &format!("slices of {count}"),
            );
        }
        assert_eq!(
            union.len(),
            expected.len(),
            "{count} slices hold another number of examples"
        );
        assert!(union == expected, "the examples of {count} slices differ");
        assert_eq!(
            documents, whole_documents,
            "{count} slices tokenize another number of documents"
        );
    }
}

#[test]
fn slices_of_raw_files_partition_the_stream_shuffled_or_not() {
    let dir = tempfile::tempdir().unwrap();
    // Raw documents are dealt one by one, by their position after the shuffle.
    let in_order = raw_config(dir.path());
    check_partition(&in_order, |slice, position| slice.owns(position));
    let shuffled = DataConfig {
        shuffle: true,
        ..in_order
    };
    check_partition(&shuffled, |slice, position| slice.owns(position));
}

#[test]
fn slices_of_shards_partition_the_stream_shuffled_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let shuffled = shard_config(dir.path(), true);
    // Shards are dealt in whole blocks of `shuffle_window` documents.
    let owns_block = |slice: DataSlice, position: u64| slice.owns(position / SHUFFLE_WINDOW as u64);
    check_partition(&shuffled, owns_block);
    let in_order = DataConfig {
        shuffle: false,
        ..shuffled
    };
    check_partition(&in_order, owns_block);
}

#[test]
fn the_whole_slice_is_the_plain_loader() {
    let dir = tempfile::tempdir().unwrap();
    for config in [raw_config(dir.path()), shard_config(dir.path(), true)] {
        let plain: Vec<Batch> = Loader::new(&config, tokenizer(), SEED)
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
        let (whole, _) = load(&config, DataSlice::WHOLE, LoaderStart::default());
        assert!(plain.len() > 40, "{} batches", plain.len());
        assert!(plain == whole, "DataSlice::WHOLE differs from Loader::new");
    }
}

/// A slice loader started at the cursor of its batch k yields exactly the batches that
/// followed batch k, over two epochs and with another thread count.
fn check_resume(config: &DataConfig, slice: DataSlice) {
    let config = DataConfig {
        epochs: Some(2),
        ..slice_config(config, slice.count)
    };
    let (full, _) = load(&config, slice, LoaderStart::default());
    assert!(full.len() > 20, "{} batches", full.len());
    let epoch_end = full.iter().position(|b| b.cursor.epoch == 1).unwrap() - 1;
    let cuts = [
        0,
        1,
        full.len() / 3,
        epoch_end,
        epoch_end + 1,
        full.len() - 2,
        full.len() - 1,
    ];
    let resumed_config = DataConfig {
        threads: 3,
        chunk_bytes: config.chunk_bytes / 2 + 1000,
        ..config.clone()
    };
    for k in cuts {
        let start = LoaderStart {
            batches_done: k as u64 + 1,
            cursor: full[k].cursor.clone(),
        };
        let (rest, _) = load(&resumed_config, slice, start);
        assert_eq!(
            rest.len(),
            full.len() - k - 1,
            "slice {slice}: resuming after batch {k} of {} (cursor {:?})",
            full.len(),
            full[k].cursor
        );
        for (a, b) in rest.iter().zip(&full[k + 1..]) {
            assert!(
                a == b,
                "slice {slice}: batch {} differs after resuming from batch {k} ({:?})",
                b.seq_no,
                full[k].cursor
            );
        }
    }
}

#[test]
fn a_slice_of_raw_files_resumes_exactly_from_its_cursor_shuffled_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let in_order = raw_config(dir.path());
    check_resume(&in_order, DataSlice::new(1, 3).unwrap());
    let shuffled = DataConfig {
        shuffle: true,
        ..in_order
    };
    check_resume(&shuffled, DataSlice::new(1, 2).unwrap());
}

#[test]
fn a_slice_of_shards_resumes_exactly_from_its_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let shuffled = shard_config(dir.path(), true);
    check_resume(&shuffled, DataSlice::new(2, 3).unwrap());
    let in_order = DataConfig {
        shuffle: false,
        ..shuffled
    };
    check_resume(&in_order, DataSlice::new(1, 2).unwrap());
}

/// Five short documents.
fn tiny_corpus(dir: &Path) -> PathBuf {
    let path = dir.join("tiny.txt");
    let text: String = (0..5)
        .map(|i| format!("Document {i} has one sentence.\nAnd a second one.\n\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_slice_without_documents_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let raw = DataConfig {
        batch_size: 2,
        epochs: None, // an empty slice must not loop forever
        ..config(vec![tiny_corpus(dir.path()).display().to_string()], false)
    };
    // Five documents for six slices: slice 4 gets one, slice 5 none.
    let (last, _) = load(
        &DataConfig {
            epochs: Some(1),
            ..raw.clone()
        },
        DataSlice::new(4, 6).unwrap(),
        LoaderStart::default(),
    );
    assert_eq!(last.iter().map(|b| b.batch_size).sum::<usize>(), 1);
    let mut loader = Loader::with_slice(
        &raw,
        tokenizer(),
        SEED,
        LoaderStart::default(),
        DataSlice::new(5, 6).unwrap(),
    )
    .unwrap();
    let err = loader.next().unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            PipelineError::EmptySlice {
                index: 5,
                count: 6,
                available: 5,
                unit: "documents"
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("slice 5 of 6"), "{err}");
    assert!(loader.next().is_none());

    // Five documents in blocks of two are three blocks: slice 3 of 4 gets none.
    let manifest = make_shards(vec![tiny_corpus(dir.path())], dir.path().join("shards"), 2);
    let shards = DataConfig {
        shuffle_window: 2,
        ..config(vec![manifest], true)
    };
    let err = Loader::with_slice(
        &shards,
        tokenizer(),
        SEED,
        LoaderStart::default(),
        DataSlice::new(3, 4).unwrap(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            PipelineError::EmptySlice {
                index: 3,
                count: 4,
                available: 3,
                unit: "shuffle blocks"
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("slice 3 of 4"), "{err}");
    // Slice 2 gets the last block: the fifth document alone.
    let (batches, documents) = load(
        &DataConfig {
            batch_size: 2,
            ..shards
        },
        DataSlice::new(2, 4).unwrap(),
        LoaderStart::default(),
    );
    assert_eq!(documents, 1);
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].cursor.document, 4);
}

#[test]
fn an_invalid_slice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let raw = config(vec![tiny_corpus(dir.path()).display().to_string()], false);
    for (index, count) in [(0, 0), (3, 3), (4, 2)] {
        let err = Loader::with_slice(
            &raw,
            tokenizer(),
            SEED,
            LoaderStart::default(),
            DataSlice { index, count },
        )
        .unwrap_err();
        assert!(
            matches!(err, PipelineError::InvalidSlice { index: i, count: c } if (i, c) == (index, count)),
            "{err:?}"
        );
    }
}

/// The doc ids of every row a shard reader yields.
fn doc_ids(reader: ShardReader) -> Vec<u64> {
    reader
        .flat_map(|batch| {
            let batch = batch.unwrap();
            let ids = batch
                .column_by_name("doc_id")
                .unwrap()
                .as_any()
                .downcast_ref::<UInt64Array>()
                .unwrap()
                .values()
                .to_vec();
            ids
        })
        .collect()
}

#[test]
fn a_shard_reader_reads_exactly_the_selected_rows() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = make_shards(corpus(dir.path()), dir.path().join("shards"), 1000);
    let entry = read_manifest(Path::new(&manifest))
        .unwrap()
        .shards
        .into_iter()
        .max_by_key(|e| e.rows)
        .unwrap();
    let n = entry.rows as usize;
    assert!(n >= 100, "{n} rows");
    let shard = dir.path().join("shards").join(&entry.path);
    let checks = ShardChecks::default();
    let all = doc_ids(ShardReader::open(&shard, &checks).unwrap());
    assert_eq!(all.len(), n);
    let ranges = [3..10, 40..n / 2, n / 2..n / 2 + 1, n - 1..n];
    let expected: Vec<u64> = ranges
        .iter()
        .flat_map(|r| all[r.clone()].to_vec())
        .collect();
    let selected = doc_ids(ShardReader::open_ranges(&shard, &checks, &ranges).unwrap());
    assert_eq!(selected, expected);
    for bad in [vec![10..20, 5..8], vec![0..1, n - 10..n + 1]] {
        let err = ShardReader::open_ranges(&shard, &checks, &bad).unwrap_err();
        assert!(matches!(err, PipelineError::BadShard { .. }), "{err:?}");
    }
}
