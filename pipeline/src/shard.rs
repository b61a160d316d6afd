//! Parquet shards of tokenized documents, and their manifest.
//!
//! A shard is a zstd-compressed Parquet file with the [`tokenized`] schema and key-value
//! metadata (schema version, tokenizer sha256, tool version, source files). Shards are
//! written to a temporary name, fsynced and renamed, so a crash never leaves a file under
//! a shard's name that a reader would accept; the manifest, written after its shards, is
//! the only authority on which shards exist.

use std::fs::File;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, ListArray, RecordBatch, UInt32Array};
use arrow_schema::SchemaRef;
use electra_fsutil::{file_sha256, fsync_parent, tmp_path, write_atomic};
use electra_schemas::manifest::{Manifest, ShardEntry};
use electra_schemas::{check_schema, metadata, tokenized, SCHEMA_VERSION};
use parquet::arrow::arrow_reader::{
    ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, PageIndexPolicy};
use parquet::file::properties::WriterProperties;

use crate::error::{PipelineError, Result};
use crate::source::{byte_source, Location};

/// Default documents per shard.
pub const DEFAULT_ROWS_PER_SHARD: u64 = 65_536;
/// Default documents per row group (a reader holds one row group at a time).
pub const DEFAULT_ROW_GROUP_ROWS: usize = 1024;
/// A row group is also closed once its buffered data reaches this many bytes.
pub const DEFAULT_ROW_GROUP_BYTES: usize = 64 << 20;
/// zstd level of the column chunks.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// Parquet footers larger than this are refused before they are parsed.
pub const MAX_FOOTER_BYTES: u64 = 64 << 20;
/// Rows per record batch when reading.
pub const READ_BATCH_ROWS: usize = 256;

fn parquet_err(path: &Path) -> impl FnOnce(parquet::errors::ParquetError) -> PipelineError + '_ {
    move |source| PipelineError::Parquet {
        path: path.to_path_buf(),
        source,
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PipelineError + '_ {
    move |source| PipelineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn shard_err(path: &Path, reason: impl Into<String>) -> PipelineError {
    PipelineError::BadShard {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// How to replace shards of another schema version (version 1 stored `word_starts` as a
/// `list<bool>`; version 2 bit-packs it).
const REBUILD: &str = "rebuild the shards from the corpus with `electra preprocess` (same \
     --input and tokenizer, a new --out folder)";

/// A manifest path must stay inside its folder: relative, no `..`, no root.
pub fn check_relative(path: &str) -> bool {
    let p = Path::new(path);
    !path.is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Reads and checks a manifest: shard paths inside its folder, the schema version known.
pub fn read_manifest(path: &Path) -> Result<Manifest> {
    if crate::source::Location::from(path).as_local().is_none() {
        return Err(PipelineError::BadManifest {
            path: path.to_path_buf(),
            reason: "shards are not read from object storage yet: copy the manifest and its shards to a local folder".into(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| PipelineError::BadManifest {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if manifest.schema_version != SCHEMA_VERSION {
        return Err(PipelineError::BadManifest {
            path: path.to_path_buf(),
            reason: format!(
                "schema version {} (this build reads {SCHEMA_VERSION}); {REBUILD}",
                manifest.schema_version
            ),
        });
    }
    for shard in &manifest.shards {
        if !check_relative(&shard.path) {
            return Err(PipelineError::BadManifest {
                path: path.to_path_buf(),
                reason: format!("shard path `{}` escapes the manifest's folder", shard.path),
            });
        }
    }
    Ok(manifest)
}

/// Writes a manifest atomically.
pub fn write_manifest(path: &Path, manifest: &Manifest) -> Result<()> {
    let text = serde_json::to_string_pretty(manifest).map_err(|e| PipelineError::BadManifest {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(write_atomic(path, text.as_bytes())?)
}

/// How shards are cut and compressed.
#[derive(Debug, Clone)]
pub struct ShardWriterOptions {
    /// Documents per shard.
    pub rows_per_shard: u64,
    /// Documents per row group.
    pub row_group_rows: usize,
    /// Buffered bytes that close a row group early.
    pub row_group_bytes: usize,
    /// zstd level.
    pub zstd_level: i32,
    /// Hex sha256 of the tokenizer.
    pub tokenizer_sha256: String,
    /// Version of the writing tool.
    pub tool_version: String,
    /// Source files (the whole job's list).
    pub source_files: Vec<String>,
}

struct OpenShard {
    writer: ArrowWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
    name: String,
    rows: u64,
    tokens: u64,
}

/// Cuts a stream of tokenized batches into shards `PREFIX-NNNNN.parquet`.
pub struct ShardWriter {
    dir: PathBuf,
    prefix: String,
    next_index: usize,
    options: ShardWriterOptions,
    props: WriterProperties,
    current: Option<OpenShard>,
}

impl std::fmt::Debug for ShardWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardWriter")
            .field("dir", &self.dir)
            .field("prefix", &self.prefix)
            .field("next_index", &self.next_index)
            .finish()
    }
}

/// The shard file name for a prefix and index.
pub fn shard_name(prefix: &str, index: usize) -> String {
    format!("{prefix}-{index:05}.parquet")
}

impl ShardWriter {
    /// A writer whose first shard is `dir/PREFIX-{first_index}.parquet`.
    pub fn new(
        dir: &Path,
        prefix: &str,
        first_index: usize,
        options: ShardWriterOptions,
    ) -> Result<Self> {
        let level = ZstdLevel::try_new(options.zstd_level).map_err(parquet_err(dir))?;
        let source_files = serde_json::to_string(&options.source_files).unwrap_or_default();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(options.row_group_rows.max(1)))
            .set_key_value_metadata(Some(vec![
                KeyValue::new(
                    metadata::SCHEMA_VERSION.to_string(),
                    SCHEMA_VERSION.to_string(),
                ),
                KeyValue::new(
                    metadata::TOKENIZER_SHA256.to_string(),
                    options.tokenizer_sha256.clone(),
                ),
                KeyValue::new(
                    metadata::TOOL_VERSION.to_string(),
                    options.tool_version.clone(),
                ),
                KeyValue::new(metadata::SOURCE_FILES.to_string(), source_files),
            ]))
            .build();
        Ok(Self {
            dir: dir.to_path_buf(),
            prefix: prefix.to_string(),
            next_index: first_index,
            options,
            props,
            current: None,
        })
    }

    /// Index the next shard will get.
    pub fn next_index(&self) -> usize {
        self.next_index
    }

    fn open(&mut self) -> Result<&mut OpenShard> {
        if self.current.is_none() {
            let name = shard_name(&self.prefix, self.next_index);
            let path = self.dir.join(&name);
            let tmp = tmp_path(&path);
            let file = File::create(&tmp).map_err(io_err(&tmp))?;
            let writer = ArrowWriter::try_new(file, tokenized::schema(), Some(self.props.clone()))
                .map_err(parquet_err(&tmp))?;
            self.current = Some(OpenShard {
                writer,
                tmp,
                path,
                name,
                rows: 0,
                tokens: 0,
            });
        }
        self.current
            .as_mut()
            .ok_or_else(|| shard_err(&self.dir, "no open shard"))
    }

    /// Appends tokenized documents; returns the shards this completed.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<Vec<ShardEntry>> {
        check_schema(&batch.schema(), &tokenized::schema(), "shard writer input")?;
        let mut done = Vec::new();
        let mut offset = 0;
        while offset < batch.num_rows() {
            let limit = self.options.rows_per_shard.max(1);
            let row_group_bytes = self.options.row_group_bytes;
            let shard = self.open()?;
            let room = (limit - shard.rows) as usize;
            let take = room.min(batch.num_rows() - offset);
            let part = batch.slice(offset, take);
            shard.tokens += token_count(&part);
            shard.rows += take as u64;
            shard.writer.write(&part).map_err(parquet_err(&shard.tmp))?;
            if shard.writer.in_progress_size() >= row_group_bytes {
                shard.writer.flush().map_err(parquet_err(&shard.tmp))?;
            }
            offset += take;
            if shard.rows >= limit {
                if let Some(entry) = self.finish_current()? {
                    done.push(entry);
                }
            }
        }
        Ok(done)
    }

    /// Closes the open shard, if any.
    pub fn finish(&mut self) -> Result<Option<ShardEntry>> {
        self.finish_current()
    }

    fn finish_current(&mut self) -> Result<Option<ShardEntry>> {
        let Some(shard) = self.current.take() else {
            return Ok(None);
        };
        let tmp = shard.tmp.clone();
        let entry = self.close(shard);
        if entry.is_err() {
            // A failed shard (a full disk, say) must not keep its partial file around.
            let _ = std::fs::remove_file(&tmp);
        }
        entry.map(Some)
    }

    /// Writes the footer, syncs and renames a finished shard.
    fn close(&mut self, shard: OpenShard) -> Result<ShardEntry> {
        let file = shard.writer.into_inner().map_err(parquet_err(&shard.tmp))?;
        file.sync_all().map_err(io_err(&shard.tmp))?;
        drop(file);
        let bytes = std::fs::metadata(&shard.tmp)
            .map_err(io_err(&shard.tmp))?
            .len();
        let sha256 = file_sha256(&shard.tmp)?;
        std::fs::rename(&shard.tmp, &shard.path).map_err(io_err(&shard.path))?;
        fsync_parent(&shard.path);
        self.next_index += 1;
        Ok(ShardEntry {
            path: shard.name,
            rows: shard.rows,
            tokens: shard.tokens,
            bytes,
            sha256,
        })
    }

    /// Removes the temporary file of an unfinished shard (after a failure).
    pub fn abandon(&mut self) {
        if let Some(shard) = self.current.take() {
            drop(shard.writer);
            let _ = std::fs::remove_file(&shard.tmp);
        }
    }
}

/// Total tokens in a tokenized batch.
pub fn token_count(batch: &RecordBatch) -> u64 {
    batch
        .column_by_name(tokenized::INPUT_IDS)
        .and_then(|c| c.as_any().downcast_ref::<ListArray>())
        .map(|l| {
            let offsets = l.value_offsets();
            match (offsets.first(), offsets.last()) {
                (Some(a), Some(b)) => (b - a) as u64,
                _ => 0,
            }
        })
        .unwrap_or(0)
}

/// What a reader checks while opening a shard.
#[derive(Debug, Clone, Default)]
pub struct ShardChecks {
    /// The shard's sha256 must equal this (from the manifest).
    pub sha256: Option<String>,
    /// The shard's tokenizer hash must equal this (the run's tokenizer).
    pub tokenizer_sha256: Option<String>,
    /// Token ids must be below this.
    pub vocab_size: Option<u32>,
    /// The file must have this many bytes (cheap; from the manifest).
    pub bytes: Option<u64>,
    /// The footer must count this many rows (cheap; from the manifest).
    pub rows: Option<u64>,
}

/// Which columns a [`ShardReader`] decodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ShardColumns {
    /// Every column of [`tokenized::schema`].
    #[default]
    All,
    /// All but `word_starts`, which packing and masking do not read (the loader reads
    /// shards so): its list is as long as `input_ids`, so decoding it costs as much.
    /// Batches have [`tokenized::schema`] without that column.
    WithoutWordStarts,
}

/// Which rows a [`ShardReader`] reads.
#[derive(Debug, Clone, Copy)]
pub enum ShardRows<'a> {
    /// Every row from this one on.
    From(usize),
    /// Only these (ascending, disjoint, within the file), in order.
    Ranges(&'a [Range<usize>]),
}

/// Streams a shard's tokenized documents one row group at a time.
pub struct ShardReader {
    path: PathBuf,
    inner: ParquetRecordBatchReader,
    /// The schema batches are re-labelled with.
    schema: SchemaRef,
    vocab_size: Option<u32>,
    failed: bool,
}

impl std::fmt::Debug for ShardReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardReader")
            .field("path", &self.path)
            .finish()
    }
}

/// A shard's key-value metadata.
pub fn shard_metadata(
    builder_meta: &parquet::file::metadata::ParquetMetaData,
) -> Vec<(String, String)> {
    builder_meta
        .file_metadata()
        .key_value_metadata()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks a shard's size (against `expected`, from the manifest) and its Parquet footer's
/// frame, reading them through the byte source, before the file is parsed.
fn check_file(path: &Path, expected: Option<u64>) -> Result<()> {
    let location = Location::from(path);
    let source = byte_source(&location)?;
    let len = source.size(&location)?;
    if let Some(expected) = expected {
        if len != expected {
            return Err(shard_err(
                path,
                format!("{len} bytes, the manifest says {expected}"),
            ));
        }
    }
    if len < 12 {
        return Err(shard_err(
            path,
            format!("{len} bytes is too short for a Parquet file"),
        ));
    }
    let tail = source.read_range(&location, len - 8..len)?;
    if &tail[4..] != b"PAR1" {
        return Err(shard_err(
            path,
            "no Parquet footer (truncated or not a Parquet file)",
        ));
    }
    let footer = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if footer > MAX_FOOTER_BYTES || footer + 12 > len {
        return Err(shard_err(
            path,
            format!("footer of {footer} bytes does not fit the file ({len} bytes) or the limit"),
        ));
    }
    Ok(())
}

/// Checks what a shard's footer says against what the reader expects: schema, row count,
/// schema version and tokenizer.
fn check_metadata(
    path: &Path,
    builder: &ParquetRecordBatchReaderBuilder<File>,
    checks: &ShardChecks,
) -> Result<()> {
    check_schema(
        builder.schema(),
        &tokenized::schema(),
        &path.display().to_string(),
    )?;
    if let Some(expected) = checks.rows {
        let rows = builder.metadata().file_metadata().num_rows();
        if u64::try_from(rows).ok() != Some(expected) {
            return Err(shard_err(
                path,
                format!("{rows} rows, the manifest says {expected}"),
            ));
        }
    }
    let meta = shard_metadata(builder.metadata());
    let get = |key: &str| meta.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    match get(metadata::SCHEMA_VERSION) {
        Some(v) if v == SCHEMA_VERSION.to_string() => {}
        other => {
            return Err(shard_err(
                path,
                format!("schema version {other:?}, this build reads {SCHEMA_VERSION}; {REBUILD}"),
            ));
        }
    }
    if let Some(expected) = &checks.tokenizer_sha256 {
        let found = get(metadata::TOKENIZER_SHA256).unwrap_or("(none)");
        if found != expected {
            return Err(PipelineError::TokenizerMismatch {
                path: path.to_path_buf(),
                found: found.to_string(),
                expected: expected.clone(),
            });
        }
    }
    Ok(())
}

/// The builder decoding `columns`, and the schema its batches are re-labelled with.
fn project(
    path: &Path,
    builder: ParquetRecordBatchReaderBuilder<File>,
    columns: ShardColumns,
) -> Result<(ParquetRecordBatchReaderBuilder<File>, SchemaRef)> {
    let full = tokenized::schema();
    match columns {
        ShardColumns::All => Ok((builder, full)),
        ShardColumns::WithoutWordStarts => {
            // By the file's own root columns: it may order them otherwise or hold more (a
            // shard rewritten by another tool), which `check_schema` allows.
            let without = |schema: &arrow_schema::Schema| -> Vec<usize> {
                (0..schema.fields().len())
                    .filter(|&i| schema.field(i).name() != tokenized::WORD_STARTS)
                    .collect()
            };
            let keep = without(builder.schema());
            let mask = ProjectionMask::roots(builder.parquet_schema(), keep);
            let schema = full
                .project(&without(&full))
                .map_err(|e| shard_err(path, e.to_string()))?;
            Ok((builder.with_projection(mask), Arc::new(schema)))
        }
    }
}

/// The builder reading `rows`.
fn select_rows(
    path: &Path,
    builder: ParquetRecordBatchReaderBuilder<File>,
    rows: ShardRows<'_>,
) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let ranges = match rows {
        ShardRows::From(first_row) => return Ok(builder.with_offset(first_row)),
        ShardRows::Ranges(ranges) => ranges,
    };
    let total = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let ordered = ranges.windows(2).all(|w| w[0].end <= w[1].start)
        && ranges.iter().all(|r| r.start <= r.end && r.end <= total);
    if !ordered {
        return Err(shard_err(
            path,
            format!(
                "the row ranges to read are not ascending and disjoint within the file's {total} rows ({} ranges from {:?} to {:?})",
                ranges.len(),
                ranges.first(),
                ranges.last()
            ),
        ));
    }
    let selection = RowSelection::from_consecutive_ranges(ranges.iter().cloned(), total);
    Ok(builder.with_row_selection(selection))
}

impl ShardReader {
    /// Opens `path`, checking sha256 (when given), footer size, schema, schema version and
    /// tokenizer hash before any row is read.
    pub fn open(path: &Path, checks: &ShardChecks) -> Result<Self> {
        Self::open_at(path, checks, 0)
    }

    /// [`open`](Self::open), reading from row `first_row` on (pages before it are skipped
    /// where the file's page index allows).
    pub fn open_at(path: &Path, checks: &ShardChecks, first_row: usize) -> Result<Self> {
        Self::open_with(path, checks, ShardRows::From(first_row), ShardColumns::All)
    }

    /// [`open`](Self::open), reading only the rows in `ranges` (ascending, disjoint, within
    /// the file), in order. The rows between them are skipped without being decoded where
    /// the file's page index allows, and skipped at the level of record boundaries
    /// otherwise.
    pub fn open_ranges(path: &Path, checks: &ShardChecks, ranges: &[Range<usize>]) -> Result<Self> {
        Self::open_with(path, checks, ShardRows::Ranges(ranges), ShardColumns::All)
    }

    /// [`open`](Self::open), reading `rows` and decoding `columns`. The shard's size and
    /// footer frame are checked through its byte source; the Parquet decoder reads the
    /// local file.
    pub fn open_with(
        path: &Path,
        checks: &ShardChecks,
        rows: ShardRows<'_>,
        columns: ShardColumns,
    ) -> Result<Self> {
        if let Some(expected) = &checks.sha256 {
            let actual = file_sha256(path)?;
            if &actual != expected {
                return Err(shard_err(
                    path,
                    format!("sha256 {actual} differs from the manifest's {expected}"),
                ));
            }
        }
        check_file(path, checks.bytes)?;
        let file = File::open(path).map_err(io_err(path))?;
        // The offset index (page locations) lets a row selection skip whole pages.
        let page_index = match rows {
            ShardRows::From(_) => PageIndexPolicy::Skip,
            ShardRows::Ranges(_) => PageIndexPolicy::Optional,
        };
        let options = ArrowReaderOptions::new().with_offset_index_policy(page_index);
        let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
            .map_err(parquet_err(path))?;
        check_metadata(path, &builder, checks)?;
        let (builder, schema) = project(path, builder, columns)?;
        let builder = select_rows(path, builder.with_batch_size(READ_BATCH_ROWS), rows)?;
        let inner = builder.build().map_err(parquet_err(path))?;
        Ok(Self {
            path: path.to_path_buf(),
            inner,
            schema,
            vocab_size: checks.vocab_size,
            failed: false,
        })
    }

    fn check_ids(&self, batch: &RecordBatch) -> Result<()> {
        let Some(vocab) = self.vocab_size else {
            return Ok(());
        };
        let ids = batch
            .column_by_name(tokenized::INPUT_IDS)
            .and_then(|c| c.as_any().downcast_ref::<ListArray>())
            .and_then(|l| l.values().as_any().downcast_ref::<UInt32Array>().cloned());
        if let Some(values) = ids {
            if let Some(bad) = values.values().iter().find(|&&id| id >= vocab) {
                return Err(shard_err(
                    &self.path,
                    format!("token id {bad} is outside the vocabulary of {vocab}"),
                ));
            }
        }
        Ok(())
    }
}

impl Iterator for ShardReader {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = match self.inner.next()? {
            Ok(batch) => normalize(batch, &self.schema, &self.path)
                .and_then(|b| self.check_ids(&b).map(|()| b)),
            Err(e) => Err(shard_err(&self.path, e.to_string())),
        };
        self.failed = item.is_err();
        Some(item)
    }
}

/// Re-labels a batch read from Parquet with the canonical `schema` (list item names and
/// nullability as written by this crate); nulls anywhere are an error naming the file.
fn normalize(batch: RecordBatch, schema: &SchemaRef, path: &Path) -> Result<RecordBatch> {
    let mut columns: Vec<Arc<dyn Array>> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = batch
            .column_by_name(field.name())
            .ok_or_else(|| shard_err(path, format!("missing column {}", field.name())))?;
        columns.push(relabel(column, field.data_type(), path)?);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| shard_err(path, e.to_string()))
}

fn relabel(
    column: &Arc<dyn Array>,
    target: &arrow_schema::DataType,
    path: &Path,
) -> Result<Arc<dyn Array>> {
    if column.null_count() > 0 {
        return Err(shard_err(
            path,
            format!("{} null values in a {target} column", column.null_count()),
        ));
    }
    if let (Some(list), arrow_schema::DataType::List(field)) =
        (column.as_any().downcast_ref::<ListArray>(), target)
    {
        if list.values().null_count() > 0 {
            return Err(shard_err(path, "null list items"));
        }
        let l = ListArray::try_new(
            field.clone(),
            list.offsets().clone(),
            list.values().clone(),
            None,
        )
        .map_err(|e| shard_err(path, e.to_string()))?;
        return Ok(Arc::new(l));
    }
    Ok(column.clone())
}
