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

use crate::error::{PipelineError, Result};
use crate::parallel::ordered_map;
use crate::shard::{
    file_sha256, read_manifest, shard_name, write_manifest, ShardWriter, ShardWriterOptions,
};
use crate::source::{BadRecordCounts, DocumentChunk, DocumentReader, SourceOptions};
use crate::tokenize::TextTokenizer;

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

/// The shard-name prefix of part `index`.
pub fn part_prefix(index: usize) -> String {
    format!("part-{index:05}")
}

/// The indices of the files that belong to part `index` of `parts`.
pub fn partition(files: usize, index: usize, parts: usize) -> Vec<usize> {
    (0..files).filter(|i| i % parts.max(1) == index).collect()
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

/// Runs one part of a preprocessing job.
pub fn preprocess(
    options: &PreprocessOptions,
    tokenizer: &TextTokenizer,
    mut progress: impl FnMut(Progress),
) -> Result<PreprocessReport> {
    let started = Instant::now();
    let invalid =
        |field: &'static str, reason: String| PipelineError::InvalidConfig { field, reason };
    if options.num_parts == 0 || options.part_index >= options.num_parts {
        return Err(invalid(
            "shard_index",
            format!(
                "{} is not below --num-shards {}",
                options.part_index, options.num_parts
            ),
        ));
    }
    std::fs::create_dir_all(&options.out_dir).map_err(|source| PipelineError::Io {
        path: options.out_dir.clone(),
        source,
    })?;
    let source_files: Vec<String> = options
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    let tokenizer_sha256 = tokenizer.sha256().to_string();
    let manifest_path = options
        .out_dir
        .join(manifest_name(options.part_index, options.num_parts));
    let prefix = part_prefix(options.part_index);

    let mut manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        tokenizer_sha256: tokenizer_sha256.clone(),
        tool_version: options.tool_version.clone(),
        source_files: source_files.clone(),
        shards: Vec::new(),
        complete: false,
    };
    let (kept, already_complete) = resume_point(&manifest_path, &manifest, &options.out_dir)?;
    let shards_kept = kept.len();
    let skip_rows: u64 = kept.iter().map(|s| s.rows).sum();
    manifest.shards = kept;
    remove_strays(&options.out_dir, &prefix, &manifest.shards)?;

    let mine = partition(options.files.len(), options.part_index, options.num_parts);
    let mut input_bytes = 0;
    let mut pairs = Vec::with_capacity(mine.len());
    for i in mine {
        let path = options.files[i].clone();
        input_bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let index =
            u32::try_from(i).map_err(|_| invalid("files", "more than 2^32 files".into()))?;
        pairs.push((index, path));
    }
    let files = pairs.len();

    let mut report = PreprocessReport {
        files,
        input_bytes,
        shards_kept,
        manifest: manifest_path.clone(),
        ..PreprocessReport::default()
    };
    if already_complete {
        manifest.complete = true;
        tracing::info!(manifest = %manifest_path.display(), "already complete; verified and kept");
    } else {
        let reader = DocumentReader::with_source_indices(pairs, options.source.clone())?;
        let chunks = SkipDocuments::new(reader, skip_rows);
        let mut writer = ShardWriter::new(
            &options.out_dir,
            &prefix,
            shards_kept,
            ShardWriterOptions {
                rows_per_shard: options.rows_per_shard,
                row_group_rows: crate::shard::DEFAULT_ROW_GROUP_ROWS,
                row_group_bytes: crate::shard::DEFAULT_ROW_GROUP_BYTES,
                zstd_level: options.zstd_level,
                tokenizer_sha256: tokenizer_sha256.clone(),
                tool_version: options.tool_version.clone(),
                source_files: source_files.clone(),
            },
        )?;
        let mut done = Progress::default();
        let result = ordered_map(
            chunks,
            options.threads,
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
                    write_manifest(&manifest_path, &manifest)?;
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
            write_manifest(&manifest_path, &manifest)
        });
        if let Err(e) = result {
            writer.abandon();
            return Err(e);
        }
        report.shards_written = done.shards;
    }
    report.rows = manifest.rows();
    report.tokens = manifest.tokens();
    report.shard_bytes = manifest.shards.iter().map(|s| s.bytes).sum();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
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
fn resume_point(path: &Path, fresh: &Manifest, dir: &Path) -> Result<(Vec<ShardEntry>, bool)> {
    if !path.exists() {
        return Ok((Vec::new(), false));
    }
    let old = read_manifest(path)?;
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
    for entry in old.shards {
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

/// Removes this part's shard files (and temporary files) that the manifest does not list.
fn remove_strays(dir: &Path, prefix: &str, kept: &[ShardEntry]) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|source| PipelineError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours =
            name.starts_with(&format!("{prefix}-")) || name.starts_with(&format!(".{prefix}-"));
        if ours && !kept.iter().any(|k| k.path == name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Drops the first `skip` documents of a chunk stream (they are already in kept shards).
struct SkipDocuments {
    inner: DocumentReader,
    skip: u64,
}

impl SkipDocuments {
    fn new(inner: DocumentReader, skip: u64) -> Self {
        Self { inner, skip }
    }
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

/// The shard file name of part `part`, shard `index` (for tests and tools).
pub fn part_shard_name(part: usize, index: usize) -> String {
    shard_name(&part_prefix(part), index)
}

/// The manifests named by `input`: a manifest file, or every `manifest*.json` of a folder
/// (its parts when there are parts, else its `manifest.json`).
fn manifests_in(input: &Path) -> Result<Vec<PathBuf>> {
    if !input.is_dir() {
        return Ok(vec![input.to_path_buf()]);
    }
    let entries = std::fs::read_dir(input).map_err(|source| PipelineError::Io {
        path: input.to_path_buf(),
        source,
    })?;
    let mut parts: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("manifest-") && n.ends_with(".json"))
        })
        .collect();
    parts.sort();
    if parts.is_empty() {
        parts.push(input.join(FILE_NAME));
    }
    Ok(parts)
}

/// Joins the manifests of a job's parts into one manifest at `out` (a file path). Every
/// part must be complete, made with the same tokenizer, schema version and input list, and
/// live in `out`'s folder or below it (shard paths are rewritten relative to it).
pub fn merge_manifests(inputs: &[PathBuf], out: &Path) -> Result<Manifest> {
    let out_dir = out.parent().map(Path::to_path_buf).unwrap_or_default();
    let out_dir_abs = std::fs::canonicalize(&out_dir).map_err(|source| PipelineError::Io {
        path: out_dir.clone(),
        source,
    })?;
    let bad = |path: &Path, reason: String| PipelineError::BadManifest {
        path: path.to_path_buf(),
        reason,
    };
    let mut merged: Option<Manifest> = None;
    let mut seen = std::collections::HashSet::new();
    for input in inputs {
        for path in manifests_in(input)? {
            let manifest = read_manifest(&path)?;
            if !manifest.complete {
                return Err(bad(
                    &path,
                    "incomplete: its preprocessing part has not finished".into(),
                ));
            }
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            let dir_abs = std::fs::canonicalize(&dir).map_err(|source| PipelineError::Io {
                path: dir.clone(),
                source,
            })?;
            let relative = dir_abs.strip_prefix(&out_dir_abs).map_err(|_| {
                bad(
                    &path,
                    format!(
                        "is not inside {}, where the merged manifest goes",
                        out_dir.display()
                    ),
                )
            })?;
            let target = merged.get_or_insert_with(|| Manifest {
                shards: Vec::new(),
                complete: true,
                ..manifest.clone()
            });
            if target.tokenizer_sha256 != manifest.tokenizer_sha256 {
                return Err(bad(
                    &path,
                    format!(
                        "made with tokenizer {}, the others with {}: refusing to mix tokenizers",
                        manifest.tokenizer_sha256, target.tokenizer_sha256
                    ),
                ));
            }
            if target.schema_version != manifest.schema_version
                || target.source_files != manifest.source_files
            {
                return Err(bad(
                    &path,
                    "belongs to another job (schema version or input list differs)".into(),
                ));
            }
            for mut shard in manifest.shards {
                let joined = relative.join(&shard.path);
                shard.path = joined.to_string_lossy().replace('\\', "/");
                if !seen.insert(shard.path.clone()) {
                    return Err(bad(&path, format!("shard {} is listed twice", shard.path)));
                }
                target.shards.push(shard);
            }
        }
    }
    let merged = merged.ok_or_else(|| PipelineError::InvalidConfig {
        field: "manifests",
        reason: "no manifest given".into(),
    })?;
    write_manifest(out, &merged)?;
    Ok(merged)
}
