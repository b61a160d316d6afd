//! Offline preprocessing: corpus files -> tokenized documents -> zstd Parquet shards and a
//! manifest, restartable, splittable over many machines.
//!
//! - The job's input list is split deterministically: file `i` belongs to part
//!   `i % num_parts`, so N machines (Slurm arrays, Kubernetes indexed jobs) each run
//!   `--shard-index I --num-shards N` on the same list. Document ids are those the whole
//!   list gives, so shards from any part match the live pipeline's ids.
//! - Part `I` writes `part-IIIII-KKKKK.parquet` shards and its manifest
//!   (`manifest.json` when there is one part, else `manifest-IIIII-of-NNNNN.json`),
//!   rewritten atomically after every completed shard and marked `complete` at the end.
//! - A rerun into the same folder verifies the listed shards (size and sha256), keeps the
//!   longest verified prefix, skips the documents they hold, removes anything else of its
//!   part, and goes on. A crash never leaves a shard a reader would accept: shards are
//!   written under a temporary name and renamed when complete.
//! - Tokenization runs on `threads` workers through [`crate::parallel::ordered_map`], so
//!   the shards are identical for any thread count; memory stays bounded by the chunks in
//!   flight and one open row group.

use std::path::{Path, PathBuf};
use std::time::Instant;

use electra_schemas::manifest::{Manifest, ShardEntry, FILE_NAME};
use electra_schemas::SCHEMA_VERSION;

use crate::config::{BadRecordPolicy, OversizedLinePolicy};
use crate::error::{PipelineError, Result};
use crate::parallel::ordered_map;
use electra_fsutil::file_sha256;

use crate::shard::{read_manifest, shard_name, write_manifest, ShardWriter, ShardWriterOptions};
use crate::source::{
    byte_source, check_compressed, BadRecordCounts, DocumentChunk, DocumentReader, Location,
    SourceOptions,
};
use crate::tokenize::TextTokenizer;

mod merge;

pub use merge::{merge_manifests, part_shard_name};

/// What to preprocess and how.
#[derive(Debug, Clone)]
pub struct PreprocessOptions {
    /// The whole job's input files, in order (every part gets the same list).
    pub files: Vec<PathBuf>,
    /// This part's index.
    pub part_index: usize,
    /// Number of parts the job is split into.
    pub num_parts: usize,
    /// Output folder.
    pub out_dir: PathBuf,
    /// Documents per shard.
    pub rows_per_shard: u64,
    /// Tokenizer threads.
    pub threads: usize,
    /// How files are read.
    pub source: SourceOptions,
    /// The writing tool's version, recorded in every shard.
    pub tool_version: String,
    /// zstd level of the shards.
    pub zstd_level: i32,
}

/// What a preprocessing run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PreprocessReport {
    /// Input files of this part.
    pub files: usize,
    /// Compressed bytes of those files.
    pub input_bytes: u64,
    /// UTF-8 bytes of sentence text tokenized by this run (the raw text, without line
    /// breaks).
    pub text_bytes: u64,
    /// Shards verified and kept from an earlier run.
    pub shards_kept: usize,
    /// Shards written by this run.
    pub shards_written: usize,
    /// Documents in the manifest.
    pub rows: u64,
    /// Tokens in the manifest.
    pub tokens: u64,
    /// Bytes of all shards in the manifest.
    pub shard_bytes: u64,
    /// Bad records skipped by this run.
    pub bad_records: BadRecordCounts,
    /// The manifest written.
    pub manifest: PathBuf,
    /// Wall time.
    pub seconds: f64,
}

/// The manifest file name of part `index` of `parts`.
pub fn manifest_name(index: usize, parts: usize) -> String {
    if parts <= 1 {
        FILE_NAME.to_string()
    } else {
        format!("manifest-{index:05}-of-{parts:05}.json")
    }
}

/// The shard-name prefix of part `index` of `parts`.
pub fn part_prefix(index: usize, parts: usize) -> String {
    if parts <= 1 {
        "part-00000".to_string()
    } else {
        format!("part-{index:05}-of-{parts:05}")
    }
}

/// The indices of the files that belong to part `index` of `parts`: contiguous blocks
/// (file `i` goes to part `i * parts / files`), so the parts concatenated in order give
/// the files in their original order.
pub fn partition(files: usize, index: usize, parts: usize) -> Vec<usize> {
    let parts = parts.max(1);
    (0..files)
        .filter(|i| i * parts / files.max(1) == index)
        .collect()
}

/// Progress callback data.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Documents written (this run).
    pub documents: u64,
    /// Tokens written (this run).
    pub tokens: u64,
    /// Shards completed (this run).
    pub shards: usize,
}

/// Runs one part of a preprocessing job. Under `on_bad_record = "fail"`, every compressed
/// input of the part is checked before anything is written, so a damaged file fails at
/// once, naming it.
pub fn preprocess(
    options: &PreprocessOptions,
    tokenizer: &TextTokenizer,
    progress: impl FnMut(Progress),
) -> Result<PreprocessReport> {
    let started = Instant::now();
    crate::source::object_store::configure_retries(options.source.retry);
    if Location::from(options.out_dir.as_path())
        .as_local()
        .is_none()
    {
        return Err(PipelineError::InvalidConfig {
            field: "out",
            reason: format!(
                "`{}`: shards are written to a local folder only (object storage output is not built yet)",
                options.out_dir.display()
            ),
        });
    }
    if options.num_parts == 0 || options.part_index >= options.num_parts {
        return Err(PipelineError::InvalidConfig {
            field: "shard_index",
            reason: format!(
                "{} is not below --num-shards {}",
                options.part_index, options.num_parts
            ),
        });
    }
    std::fs::create_dir_all(&options.out_dir).map_err(|source| PipelineError::Io {
        path: options.out_dir.clone(),
        source,
    })?;
    let out = PartOutput::new(options);
    let _lock = lock_part(&options.out_dir, &out.prefix)?;
    refuse_other_splits(&options.out_dir, options.num_parts)?;

    let mut manifest = fresh_manifest(options, tokenizer);
    let (kept, already_complete) =
        resume_point(&out.manifest, &manifest, &options.out_dir, &out.prefix)?;
    let part = PartFiles::of(options)?;
    if !already_complete && options.source.on_bad_record == BadRecordPolicy::Fail {
        check_compressed(&part.locations(), options.threads)?;
    }
    let resume = ResumeAt {
        shards_kept: kept.len(),
        skip_rows: kept.iter().map(|s| s.rows).sum(),
        last_kept_doc: match kept.last() {
            Some(entry) => last_doc_id(&options.out_dir.join(&entry.path))?,
            None => None,
        },
    };
    manifest.shards = kept;
    if !already_complete && out.manifest.exists() {
        // Before anything is removed, the manifest lists only what is kept.
        write_manifest(&out.manifest, &manifest)?;
    }
    remove_strays(&options.out_dir, &out.prefix, &manifest.shards)?;

    let mut report = PreprocessReport {
        files: part.files.len(),
        input_bytes: part.input_bytes,
        shards_kept: resume.shards_kept,
        manifest: out.manifest.clone(),
        ..PreprocessReport::default()
    };
    if already_complete {
        manifest.complete = true;
        tracing::info!(manifest = %out.manifest.display(), "already complete; verified and kept");
    } else {
        let job = ShardJob {
            options,
            tokenizer,
            out: &out,
            resume,
        };
        report.shards_written = job.run(part, &mut manifest, &mut report, progress)?;
    }
    report.rows = manifest.rows();
    report.tokens = manifest.tokens();
    report.shard_bytes = manifest.shards.iter().map(|s| s.bytes).sum();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Where a part writes: its manifest and the prefix of its shard names.
struct PartOutput {
    manifest: PathBuf,
    prefix: String,
}

impl PartOutput {
    fn new(options: &PreprocessOptions) -> Self {
        Self {
            manifest: options
                .out_dir
                .join(manifest_name(options.part_index, options.num_parts)),
            prefix: part_prefix(options.part_index, options.num_parts),
        }
    }
}

/// The manifest a part starts from: no shards yet, not complete.
fn fresh_manifest(options: &PreprocessOptions, tokenizer: &TextTokenizer) -> Manifest {
    Manifest {
        schema_version: SCHEMA_VERSION,
        tokenizer_sha256: tokenizer.sha256().to_string(),
        tool_version: options.tool_version.clone(),
        source_files: source_files(options),
        shards: Vec::new(),
        complete: false,
        part_index: u32::try_from(options.part_index).unwrap_or(u32::MAX),
        num_parts: u32::try_from(options.num_parts).unwrap_or(u32::MAX),
        reader: reader_fingerprint(&options.source),
    }
}

/// The job's input files as the manifests and shards record them.
fn source_files(options: &PreprocessOptions) -> Vec<String> {
    options
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect()
}

/// This part's input files with their source indices, and their compressed size.
struct PartFiles {
    files: Vec<(u32, PathBuf)>,
    input_bytes: u64,
}

impl PartFiles {
    fn of(options: &PreprocessOptions) -> Result<Self> {
        let mine = partition(options.files.len(), options.part_index, options.num_parts);
        let mut input_bytes = 0;
        let mut files = Vec::with_capacity(mine.len());
        for i in mine {
            let path = options.files[i].clone();
            let location = Location::from(path.as_path());
            input_bytes += byte_source(&location)
                .and_then(|source| source.size(&location))
                .unwrap_or(0);
            let index = u32::try_from(i).map_err(|_| PipelineError::InvalidConfig {
                field: "files",
                reason: "more than 2^32 files".into(),
            })?;
            files.push((index, path));
        }
        Ok(Self { files, input_bytes })
    }

    fn locations(&self) -> Vec<Location> {
        self.files
            .iter()
            .map(|(_, path)| Location::from(path.as_path()))
            .collect()
    }
}

/// Where a part's writing resumes: after the shards kept from an earlier run.
struct ResumeAt {
    shards_kept: usize,
    /// Documents those shards hold.
    skip_rows: u64,
    /// The id of the last of them, which the input must give at that point again.
    last_kept_doc: Option<u64>,
}

/// Reads a part's files, tokenizes them on `threads` workers and writes the shards.
struct ShardJob<'a> {
    options: &'a PreprocessOptions,
    tokenizer: &'a TextTokenizer,
    out: &'a PartOutput,
    resume: ResumeAt,
}

impl ShardJob<'_> {
    /// Writes the shards after the kept ones and completes the manifest; returns the
    /// number of shards written. On error the shard being written is removed.
    fn run(
        &self,
        part: PartFiles,
        manifest: &mut Manifest,
        report: &mut PreprocessReport,
        mut progress: impl FnMut(Progress),
    ) -> Result<usize> {
        let reader = DocumentReader::with_source_indices(part.files, self.options.source.clone())?;
        let chunks = SkipDocuments::new(reader, self.resume.skip_rows, self.resume.last_kept_doc);
        let mut writer = self.writer(manifest)?;
        let mut done = Progress::default();
        let tokenizer = self.tokenizer;
        let result = ordered_map(
            chunks,
            self.options.threads,
            "electra-preprocess",
            |chunk: DocumentChunk| {
                let text = text_bytes(&chunk.batch);
                Ok((tokenizer.tokenize(&chunk.batch)?, chunk.bad_records, text))
            },
            |(tokenized, bad, text)| {
                report.bad_records.add(&bad);
                report.text_bytes += text;
                done.documents += tokenized.num_rows() as u64;
                done.tokens += crate::shard::token_count(&tokenized);
                for entry in writer.write(&tokenized)? {
                    done.shards += 1;
                    manifest.shards.push(entry);
                    write_manifest(&self.out.manifest, manifest)?;
                }
                progress(done);
                Ok(())
            },
        )
        .and_then(|()| {
            if let Some(entry) = writer.finish()? {
                done.shards += 1;
                manifest.shards.push(entry);
            }
            manifest.complete = true;
            write_manifest(&self.out.manifest, manifest)
        });
        if let Err(e) = result {
            writer.abandon();
            return Err(e);
        }
        Ok(done.shards)
    }

    /// The shard writer, numbering after the kept shards.
    fn writer(&self, manifest: &Manifest) -> Result<ShardWriter> {
        ShardWriter::new(
            &self.options.out_dir,
            &self.out.prefix,
            self.resume.shards_kept,
            ShardWriterOptions {
                rows_per_shard: self.options.rows_per_shard,
                row_group_rows: crate::shard::DEFAULT_ROW_GROUP_ROWS,
                row_group_bytes: crate::shard::DEFAULT_ROW_GROUP_BYTES,
                zstd_level: self.options.zstd_level,
                tokenizer_sha256: manifest.tokenizer_sha256.clone(),
                tool_version: self.options.tool_version.clone(),
                source_files: manifest.source_files.clone(),
            },
        )
    }
}

/// The reading options that decide the document stream, as recorded in the manifest.
/// `oversized_lines` appears only when it is not the default, so manifests written before
/// it existed still match.
fn reader_fingerprint(source: &SourceOptions) -> String {
    let mut fingerprint = format!(
        "format={:?} text_field={} on_bad_record={:?} max_doc_bytes={}",
        source.format, source.text_field, source.on_bad_record, source.max_doc_bytes
    );
    if source.oversized_lines != OversizedLinePolicy::default() {
        fingerprint.push_str(&format!(" oversized_lines={:?}", source.oversized_lines));
    }
    fingerprint
}

/// Bytes of sentence text in a documents batch.
fn text_bytes(batch: &arrow_array::RecordBatch) -> u64 {
    use arrow_array::Array;
    batch
        .column_by_name(electra_schemas::documents::SENTENCES)
        .and_then(|c| c.as_any().downcast_ref::<arrow_array::ListArray>())
        .and_then(|l| {
            let values = l
                .values()
                .as_any()
                .downcast_ref::<arrow_array::StringArray>()?;
            let offsets = values.value_offsets();
            let (first, last) = (l.value_offsets().first()?, l.value_offsets().last()?);
            let a = *offsets.get(*first as usize)?;
            let b = *offsets.get(*last as usize)?;
            Some((b - a) as u64)
        })
        .unwrap_or(0)
}

/// Reads an existing manifest of this part and returns its longest prefix of shards that
/// still verify (present, same size, same sha256), and whether that is all of a complete
/// manifest. A manifest of another job (other tokenizer or other file list) is an error:
/// the folder is not ours to overwrite.
fn resume_point(
    path: &Path,
    fresh: &Manifest,
    dir: &Path,
    prefix: &str,
) -> Result<(Vec<ShardEntry>, bool)> {
    if !path.exists() {
        return Ok((Vec::new(), false));
    }
    let old = read_manifest(path)?;
    if old.reader != fresh.reader {
        return Err(PipelineError::BadManifest {
            path: path.to_path_buf(),
            reason: format!(
                "the reading options changed ({}; now {}); preprocess into a new folder",
                old.reader, fresh.reader
            ),
        });
    }
    if old.tokenizer_sha256 != fresh.tokenizer_sha256 || old.source_files != fresh.source_files {
        return Err(PipelineError::BadManifest {
            path: path.to_path_buf(),
            reason:
                "it belongs to a job with another tokenizer or input list; use a new --out folder"
                    .into(),
        });
    }
    let mut kept = Vec::new();
    let total = old.shards.len();
    for (i, entry) in old.shards.into_iter().enumerate() {
        if entry.path != shard_name(prefix, i) {
            tracing::warn!(shard = %entry.path, "not a shard this part writes at this position; it and the rest are redone");
            break;
        }
        let file = dir.join(&entry.path);
        let size_ok = std::fs::metadata(&file)
            .map(|m| m.len() == entry.bytes)
            .unwrap_or(false);
        if !size_ok || file_sha256(&file)? != entry.sha256 {
            tracing::warn!(shard = %file.display(), "shard does not verify; it and the shards after it are redone");
            break;
        }
        kept.push(entry);
    }
    let complete = old.complete && kept.len() == total;
    Ok((kept, complete))
}

/// The file names in `dir` (an unreadable entry is an error naming the folder).
fn file_names(dir: &Path) -> Result<Vec<String>> {
    let io = |source| PipelineError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        names.push(
            entry
                .map_err(io)?
                .file_name()
                .to_string_lossy()
                .into_owned(),
        );
    }
    Ok(names)
}

/// Removes this part's shard files (and temporary files) that the manifest does not list.
fn remove_strays(dir: &Path, prefix: &str, kept: &[ShardEntry]) -> Result<()> {
    for name in file_names(dir)? {
        if is_part_file(&name, prefix) && !kept.iter().any(|k| k.path == name) {
            let path = dir.join(&name);
            std::fs::remove_file(&path).map_err(|source| PipelineError::Io { path, source })?;
        }
    }
    Ok(())
}

/// `PREFIX-NNNNN.parquet`, or its temporary `.PREFIX-NNNNN.parquet.tmp-PID`.
fn is_part_file(name: &str, prefix: &str) -> bool {
    let rest = name.strip_prefix('.').unwrap_or(name);
    let Some(tail) = rest.strip_prefix(prefix).and_then(|t| t.strip_prefix('-')) else {
        return false;
    };
    let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
    digits == 5 && tail.get(5..).is_some_and(|t| t.starts_with(".parquet"))
}

/// Drops the first `skip` documents of a chunk stream (they are already in kept shards),
/// checking that the last one dropped is the last kept document: the same inputs and
/// options must give the same document stream.
struct SkipDocuments {
    inner: DocumentReader,
    skip: u64,
    expect_last: Option<u64>,
}

impl SkipDocuments {
    fn new(inner: DocumentReader, skip: u64, expect_last: Option<u64>) -> Self {
        Self {
            inner,
            skip,
            expect_last,
        }
    }

    fn check_last(&mut self, batch: &arrow_array::RecordBatch, row: usize) -> Result<()> {
        let Some(expected) = self.expect_last.take() else {
            return Ok(());
        };
        let found = doc_ids(batch).and_then(|ids| ids.get(row).copied());
        if found != Some(expected) {
            return Err(PipelineError::BadManifest {
                path: PathBuf::from("(resume)"),
                reason: format!(
                    "the kept shards end with document {expected:#x}, but the inputs now give {found:?} there: \
                     the input files or the reading options changed; preprocess into a new folder"
                ),
            });
        }
        Ok(())
    }
}

fn doc_ids(batch: &arrow_array::RecordBatch) -> Option<Vec<u64>> {
    use arrow_array::Array;
    batch
        .column_by_name(electra_schemas::documents::DOC_ID)
        .and_then(|c| c.as_any().downcast_ref::<arrow_array::UInt64Array>())
        .map(|a| a.values().to_vec())
}

/// The last document id of a shard.
fn last_doc_id(path: &Path) -> Result<Option<u64>> {
    let mut last = None;
    for batch in crate::shard::ShardReader::open(path, &crate::shard::ShardChecks::default())? {
        if let Some(ids) = doc_ids(&batch?) {
            last = ids.last().copied().or(last);
        }
    }
    Ok(last)
}

/// Holds an exclusive advisory lock on the part's lock file for the life of the run (the
/// kernel releases it if the process dies), so two processes never write one part.
fn lock_part(dir: &Path, prefix: &str) -> Result<std::fs::File> {
    let path = dir.join(format!(".{prefix}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| PipelineError::Io {
            path: path.clone(),
            source,
        })?;
    file.try_lock().map_err(|_| PipelineError::InvalidConfig {
        field: "out",
        reason: format!(
            "{} is held by another preprocessing process of this part",
            path.display()
        ),
    })?;
    Ok(file)
}

/// Refuses a folder that holds the manifests of a job split another way.
fn refuse_other_splits(dir: &Path, parts: usize) -> Result<()> {
    for name in file_names(dir)? {
        let Some(rest) = name
            .strip_prefix("manifest-")
            .and_then(|r| r.strip_suffix(".json"))
        else {
            continue;
        };
        let other = rest
            .split("-of-")
            .nth(1)
            .and_then(|n| n.parse::<usize>().ok());
        if other.is_some_and(|n| n != parts) {
            return Err(PipelineError::InvalidConfig {
                field: "num_shards",
                reason: format!(
                    "{} holds {name}, a job split into {} parts, not {parts}; use a new --out folder",
                    dir.display(),
                    other.unwrap_or(0)
                ),
            });
        }
    }
    Ok(())
}

impl Iterator for SkipDocuments {
    type Item = Result<DocumentChunk>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let chunk = match self.inner.next()? {
                Ok(chunk) => chunk,
                Err(e) => return Some(Err(e)),
            };
            let rows = chunk.batch.num_rows() as u64;
            if self.skip > 0 && self.skip <= rows {
                if let Err(e) = self.check_last(&chunk.batch, self.skip as usize - 1) {
                    return Some(Err(e));
                }
            }
            if self.skip >= rows {
                self.skip -= rows;
                continue;
            }
            let skip = self.skip as usize;
            self.skip = 0;
            return Some(Ok(DocumentChunk {
                batch: chunk.batch.slice(skip, rows as usize - skip),
                bad_records: chunk.bad_records,
            }));
        }
    }
}
