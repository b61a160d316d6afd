//! Damaged and foreign shards: every fault is fatal (shards are trusted preprocessed data,
//! there is no skip policy for them) and the error names the shard.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{batches, data, options_for, same_batches, tokenizer};

use std::path::{Path, PathBuf};

use electra_pipeline::preprocess::preprocess;
use electra_pipeline::shard::{read_manifest, write_manifest, ShardChecks, ShardReader};
use electra_pipeline::source::SourceOptions;
use electra_pipeline::{DataConfig, DataExecution, Loader, PipelineError};

/// A one-file job (moby_dick, 135 documents in 3 shards), its manifest and a config
/// that trains from it.
struct Fixture {
    dir: tempfile::TempDir,
    manifest_path: PathBuf,
    manifest: electra_schemas::manifest::Manifest,
    config: DataConfig,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let moby = vec![data("corpus/moby_dick.txt.zst")];
    let report = preprocess(
        &options_for(moby, dir.path(), 2, 0, 1),
        &tokenizer(),
        |_| {},
    )
    .unwrap();
    let manifest = read_manifest(&report.manifest).unwrap();
    let config = DataConfig {
        files: vec![report.manifest.display().to_string()],
        batch_size: 8,
        epochs: Some(1),
        shuffle: false,
        execution: DataExecution {
            threads: 2,
            ..DataExecution::default()
        },
        ..DataConfig::default()
    };
    Fixture {
        dir,
        manifest_path: report.manifest,
        manifest,
        config,
    }
}

impl Fixture {
    fn shard(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.manifest.shards[i].path)
    }

    /// Puts `bytes` in place of shard `i` and lists them in the manifest with their true
    /// size and sha256 (and `rows`), so only the check under test can catch them.
    fn replace_listed(&self, i: usize, bytes: &[u8], rows: u64) {
        std::fs::write(self.shard(i), bytes).unwrap();
        let mut m = self.manifest.clone();
        m.shards[i].bytes = bytes.len() as u64;
        m.shards[i].sha256 = electra_fsutil::bytes_sha256(bytes);
        m.shards[i].rows = rows;
        write_manifest(&self.manifest_path, &m).unwrap();
    }

    /// Shard `i`'s rows, as one tokenized batch.
    fn rows(&self, i: usize) -> arrow_array::RecordBatch {
        let batches: Vec<_> = ShardReader::open(&self.shard(i), &ShardChecks::default())
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
        arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap()
    }

    /// The first error the loader gives (at construction or in the stream).
    fn first_error(&self, config: &DataConfig) -> PipelineError {
        match Loader::new(config, tokenizer(), 1) {
            Err(e) => e,
            Ok(loader) => loader
                .filter_map(|b| b.err())
                .next()
                .expect("the loader reported no error"),
        }
    }
}

/// A shard file written by the crate's own writer, with `tokenizer_sha256` in its metadata.
fn shard_bytes(batch: &arrow_array::RecordBatch, tokenizer_sha256: &str) -> Vec<u8> {
    use electra_pipeline::shard::{ShardWriter, ShardWriterOptions};
    let dir = tempfile::tempdir().unwrap();
    let mut writer = ShardWriter::new(
        dir.path(),
        "x",
        0,
        ShardWriterOptions {
            rows_per_shard: u64::MAX,
            row_group_rows: 1024,
            row_group_bytes: 64 << 20,
            zstd_level: 3,
            tokenizer_sha256: tokenizer_sha256.to_string(),
            tool_version: "test".into(),
            source_files: Vec::new(),
        },
    )
    .unwrap();
    assert!(writer.write(batch).unwrap().is_empty());
    let entry = writer.finish().unwrap().unwrap();
    std::fs::read(dir.path().join(entry.path)).unwrap()
}

#[test]
fn a_truncated_shard_is_refused_naming_it_with_or_without_verification() {
    let f = fixture();
    let good = std::fs::read(f.shard(1)).unwrap();
    std::fs::write(f.shard(1), &good[..good.len() / 2]).unwrap();
    let name = &f.manifest.shards[1].path;
    // verify_shards on: the sha256 differs.
    let err = f.first_error(&f.config).to_string();
    assert!(err.contains(name) && err.contains("sha256"), "{err}");
    // Off: the size the manifest records differs.
    let unverified = DataConfig {
        execution: DataExecution {
            verify_shards: false,
            ..f.config.execution.clone()
        },
        ..f.config.clone()
    };
    let err = f.first_error(&unverified).to_string();
    assert!(
        err.contains(name) && err.contains("the manifest says"),
        "{err}"
    );
    // Off, and the manifest rewritten to the cut size: the footer check.
    f.replace_listed(1, &good[..good.len() / 2], f.manifest.shards[1].rows);
    let err = f.first_error(&unverified).to_string();
    assert!(err.contains(name) && err.contains("footer"), "{err}");
}

#[test]
fn a_flipped_shard_byte_is_caught_by_sha256_and_never_panics_without_it() {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let f = fixture();
    let path = f.shard(0);
    let entry = f.manifest.shards[0].clone();
    let good = std::fs::read(&path).unwrap();
    let tok = tokenizer();
    let clean: Vec<_> = ShardReader::open(&path, &ShardChecks::default())
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    let checks = |verify: bool| ShardChecks {
        sha256: verify.then(|| entry.sha256.clone()),
        tokenizer_sha256: Some(tok.sha256().to_string()),
        vocab_size: Some(30522),
        bytes: Some(entry.bytes),
        rows: Some(entry.rows),
    };
    let (mut errors, mut silent, mut same) = (0, 0, 0);
    let stride = (good.len() / 400).max(1);
    for at in (0..good.len()).step_by(stride) {
        let mut bytes = good.clone();
        bytes[at] ^= 0x04;
        std::fs::write(&path, &bytes).unwrap();
        // With the manifest's sha256 (verify_shards = true): always refused.
        let err = ShardReader::open(&path, &checks(true))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&entry.path) && err.contains("sha256"), "{err}");
        // Without it: an error naming the shard, or rows; never a panic.
        let read = catch_unwind(AssertUnwindSafe(|| {
            ShardReader::open(&path, &checks(false)).and_then(|r| r.collect::<Result<Vec<_>, _>>())
        }));
        match read {
            Err(_) => panic!("reading a shard with byte {at} flipped panicked"),
            Ok(Err(e)) => {
                assert!(e.to_string().contains(&entry.path), "{e}");
                errors += 1;
            }
            Ok(Ok(batches)) if batches == clean => same += 1,
            Ok(Ok(_)) => silent += 1,
        }
    }
    std::fs::write(&path, &good).unwrap();
    eprintln!(
        "flipped shard bytes without sha256: {errors} refused, {same} read back unchanged, {silent} read back changed"
    );
    assert!(errors > 0);
}

#[test]
fn a_shard_of_another_schema_is_refused_naming_it() {
    use arrow_array::{Array, ArrayRef, ListArray, RecordBatch, UInt32Array, UInt64Array};
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;
    let f = fixture();
    let rows = f.manifest.shards[0].rows;
    let n = rows as usize;
    // input_ids as List<Int64> (as pyarrow writes Python ints), and a shard that lacks
    // word_starts.
    let ids = ListArray::from_iter_primitive::<arrow_array::types::Int64Type, _, _>(
        (0..n).map(|i| Some(vec![Some(i as i64), Some(7)])),
    );
    let ends = ListArray::from_iter_primitive::<arrow_array::types::UInt32Type, _, _>(
        (0..n).map(|_| Some(vec![Some(2u32)])),
    );
    let wide = Arc::new(Schema::new(vec![
        Field::new("doc_id", DataType::UInt64, false),
        Field::new("source", DataType::UInt32, false),
        Field::new("input_ids", ids.data_type().clone(), false),
        Field::new("sentence_ends", ends.data_type().clone(), false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(0..rows)),
        Arc::new(UInt32Array::from_iter_values((0..n).map(|_| 0))),
        Arc::new(ids),
        Arc::new(ends),
    ];
    let batch = RecordBatch::try_new(wide, columns).unwrap();
    let mut bytes = Vec::new();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    f.replace_listed(0, &bytes, rows);
    let err = f.first_error(&f.config);
    let text = err.to_string();
    assert!(matches!(err, PipelineError::Schema(_)), "{err:?}");
    assert!(
        text.contains(&f.manifest.shards[0].path) && text.contains("input_ids"),
        "{text}"
    );
}

#[test]
fn a_shard_made_with_another_tokenizer_is_refused_naming_it() {
    let f = fixture();
    // The manifest names the run's tokenizer; the shard's own metadata another one.
    let bytes = shard_bytes(&f.rows(1), &"ab".repeat(32));
    f.replace_listed(1, &bytes, f.manifest.shards[1].rows);
    let err = f.first_error(&f.config);
    match &err {
        PipelineError::TokenizerMismatch { path, found, .. } => {
            assert_eq!(path, &f.shard(1));
            assert_eq!(found, &"ab".repeat(32));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn token_ids_outside_the_vocabulary_are_refused_naming_the_shard() {
    use arrow_array::{Array, ArrayRef, ListArray, RecordBatch, UInt32Array};
    use std::sync::Arc;
    let f = fixture();
    let batch = f.rows(2);
    let column = batch.column_by_name("input_ids").unwrap();
    let list = column.as_any().downcast_ref::<ListArray>().unwrap();
    let mut values = list
        .values()
        .as_any()
        .downcast_ref::<UInt32Array>()
        .unwrap()
        .values()
        .to_vec();
    let mid = values.len() / 2;
    values[mid] = 40_000; // bert-base-uncased has 30522
    let arrow_schema::DataType::List(item) = list.data_type() else {
        unreachable!()
    };
    let ids = ListArray::new(
        item.clone(),
        list.offsets().clone(),
        Arc::new(UInt32Array::from(values)),
        None,
    );
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    let index = batch.schema().index_of("input_ids").unwrap();
    columns[index] = Arc::new(ids);
    let bad = RecordBatch::try_new(batch.schema(), columns).unwrap();
    let bytes = shard_bytes(&bad, tokenizer().sha256());
    f.replace_listed(2, &bytes, f.manifest.shards[2].rows);
    let err = f.first_error(&f.config).to_string();
    assert!(
        err.contains(&f.manifest.shards[2].path) && err.contains("token id 40000 is outside"),
        "{err}"
    );
}

#[test]
fn a_manifest_whose_shard_paths_escape_its_folder_is_refused() {
    let f = fixture();
    for escape in ["../x.parquet", "/etc/passwd", "sub/../../x.parquet", ""] {
        let mut m = f.manifest.clone();
        m.shards[0].path = escape.into();
        let path = f.dir.path().join("manifest.escape.json");
        write_manifest(&path, &m).unwrap();
        let err = f.first_error(&DataConfig {
            files: vec![path.display().to_string()],
            ..f.config.clone()
        });
        assert!(
            matches!(&err, PipelineError::BadManifest { path: p, reason } if *p == path && reason.contains("escapes")),
            "{escape}: {err:?}"
        );
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}

#[test]
fn a_shard_write_on_a_full_disk_fails_naming_the_file_and_leaves_nothing() {
    use electra_pipeline::shard::{ShardWriter, ShardWriterOptions};
    use electra_pipeline::DocumentReader;
    if !Path::new("/dev/full").exists() {
        eprintln!("no /dev/full here; nothing to test");
        return;
    }
    let tok = tokenizer();
    let chunk = DocumentReader::new(
        vec![data("corpus/moby_dick.txt.zst")],
        SourceOptions::default(),
    )
    .unwrap()
    .next()
    .unwrap()
    .unwrap();
    let batch = tok.tokenize(&chunk.batch).unwrap();
    // The failure surfaces where bytes reach the file: at a row-group flush inside
    // `write`, or at the footer in `finish`.
    for flush_in_write in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        // ENOSPC on every write: the shard's temporary file is a link to /dev/full.
        let tmp = dir.path().join(format!(
            ".part-00000-00000.parquet.tmp-{}",
            std::process::id()
        ));
        std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
        let mut writer = ShardWriter::new(
            dir.path(),
            "part-00000",
            0,
            ShardWriterOptions {
                rows_per_shard: u64::MAX,
                row_group_rows: 1024,
                row_group_bytes: if flush_in_write { 1 } else { 64 << 20 },
                zstd_level: 3,
                tokenizer_sha256: tok.sha256().to_string(),
                tool_version: "test".into(),
                source_files: Vec::new(),
            },
        )
        .unwrap();
        let err = match writer.write(&batch) {
            Err(e) => {
                assert!(flush_in_write, "{e}");
                writer.abandon();
                e
            }
            Ok(done) => {
                assert!(!flush_in_write && done.is_empty());
                writer.finish().unwrap_err()
            }
        };
        let text = err.to_string();
        assert!(
            text.contains(&tmp.display().to_string()) && text.contains("No space left"),
            "{text}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "files left behind: {left:?}");
    }
}

#[test]
fn a_shard_with_reordered_and_extra_columns_trains_like_the_original() {
    use arrow_array::{ArrayRef, RecordBatch, StringArray};
    use arrow_schema::{Field, Schema};
    use parquet::file::metadata::KeyValue;
    use parquet::file::properties::WriterProperties;
    use std::sync::Arc;
    let f = fixture();
    let mut config = f.config.clone();
    config.shuffle = true;
    let before = batches(&config, usize::MAX);
    // Shard 0 as another tool might rewrite it: the columns in another order, word_starts
    // first, and one more column.
    let rows = f.rows(0);
    let order = [
        "word_starts",
        "sentence_ends",
        "doc_id",
        "input_ids",
        "source",
    ];
    let mut fields: Vec<Field> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for name in order {
        let schema = rows.schema();
        fields.push(schema.field_with_name(name).unwrap().clone());
        columns.push(rows.column_by_name(name).unwrap().clone());
        if name == "doc_id" {
            fields.push(Field::new("note", arrow_schema::DataType::Utf8, false));
            columns.push(Arc::new(StringArray::from_iter_values(
                (0..rows.num_rows()).map(|i| format!("row {i}")),
            )));
        }
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    let metadata = vec![
        KeyValue::new(
            electra_schemas::metadata::SCHEMA_VERSION.to_string(),
            electra_schemas::SCHEMA_VERSION.to_string(),
        ),
        KeyValue::new(
            electra_schemas::metadata::TOKENIZER_SHA256.to_string(),
            f.manifest.tokenizer_sha256.clone(),
        ),
    ];
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(metadata))
        .build();
    let mut bytes = Vec::new();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    f.replace_listed(0, &bytes, f.manifest.shards[0].rows);
    let after = batches(&config, usize::MAX);
    assert!(before.len() > 10, "{} batches", before.len());
    assert!(same_batches(&before, &after));
}

#[test]
fn shards_of_schema_version_1_are_refused_with_how_to_rebuild_them() {
    let f = fixture();
    let mut m = f.manifest.clone();
    m.schema_version = 1;
    write_manifest(&f.manifest_path, &m).unwrap();
    let err = f.first_error(&f.config).to_string();
    assert!(err.contains("schema version 1"), "{err}");
    assert!(err.contains("electra preprocess"), "{err}");
    assert!(
        err.contains(&f.manifest_path.display().to_string()),
        "{err}"
    );
}
