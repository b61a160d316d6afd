//! `inspect PATH`: what a shard, a manifest or a shard folder holds, as an
//! [`InspectReport`] (its `Display` is the text `inspect` prints).

use std::fmt;
use std::path::{Path, PathBuf};

use arrow_array::{Array, ListArray, UInt32Array};
use electra_schemas::manifest::{Manifest, FILE_NAME};
use electra_schemas::tokenized;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

use crate::error::{PipelineError, Result};
use crate::shard::{read_manifest, shard_metadata, ShardChecks, ShardReader};
use crate::tokenize::TextTokenizer;

/// How much `inspect` reads.
#[derive(Debug, Clone)]
pub struct InspectOptions {
    /// Shards read for the histogram (the manifest's totals cover all of them).
    pub max_shards: usize,
    /// Documents decoded back to text.
    pub samples: usize,
    /// Characters kept per decoded document.
    pub sample_chars: usize,
}

impl Default for InspectOptions {
    fn default() -> Self {
        Self {
            max_shards: 8,
            samples: 3,
            sample_chars: 300,
        }
    }
}

/// What `inspect` found.
#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    /// The manifest's totals, when given a manifest or a folder.
    pub manifest: Option<ManifestSummary>,
    /// The first shard's layout, when there is a shard.
    pub first_shard: Option<ShardSummary>,
    /// Shards read for the histogram.
    pub shards_read: usize,
    /// Shards in all.
    pub shards_total: usize,
    /// Document lengths over the shards read.
    pub lengths: Histogram,
    /// Documents decoded back to text, when a tokenizer was given.
    pub samples: Option<Samples>,
}

/// A manifest's totals.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestSummary {
    /// The manifest file.
    pub path: PathBuf,
    /// Whether the job that wrote it finished.
    pub complete: bool,
    /// The shards' schema version.
    pub schema_version: u32,
    /// The sha256 of the tokenizer the shards were made with.
    pub tokenizer_sha256: String,
    /// The tool that wrote them.
    pub tool_version: String,
    /// Input files of the job.
    pub source_files: usize,
    /// Shards listed.
    pub shards: usize,
    /// Documents.
    pub rows: u64,
    /// Tokens.
    pub tokens: u64,
    /// Bytes of all shards.
    pub bytes: u64,
    /// The tokenizer given, when it is not the one the shards were made with.
    pub other_tokenizer: Option<PathBuf>,
}

/// The first shard's layout.
#[derive(Debug, Clone, Serialize)]
pub struct ShardSummary {
    /// The shard file.
    pub path: PathBuf,
    /// Parquet row groups.
    pub row_groups: usize,
    /// Documents.
    pub rows: i64,
    /// Column names and Arrow types.
    pub schema: Vec<(String, String)>,
    /// Key-value metadata, long values cut to 120 characters.
    pub metadata: Vec<(String, String)>,
}

/// Document-length histogram over power-of-two buckets.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Histogram {
    /// Documents per bucket: bucket `i > 0` holds lengths `2^(i-1) ..= 2^i - 1`, bucket 0
    /// length 0.
    pub buckets: Vec<u64>,
    /// Documents counted.
    pub documents: u64,
    /// Their tokens.
    pub tokens: u64,
    /// The longest.
    pub max: u64,
}

/// Documents decoded back to text.
#[derive(Debug, Clone, Serialize)]
pub struct Samples {
    /// The tokenizer that decoded them.
    pub tokenizer: PathBuf,
    /// The documents, in shard order.
    pub documents: Vec<Sample>,
}

/// One decoded document.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Its tokens.
    pub tokens: usize,
    /// Its text, cut to [`InspectOptions::sample_chars`] characters.
    pub text: String,
    /// Whether the text was cut.
    pub cut: bool,
}

impl Histogram {
    fn add(&mut self, length: u64) {
        let bucket = (64 - length.max(1).leading_zeros()) as usize;
        if self.buckets.len() <= bucket {
            self.buckets.resize(bucket + 1, 0);
        }
        self.buckets[bucket] += 1;
        self.documents += 1;
        self.tokens += length;
        self.max = self.max.max(length);
    }
}

/// Describes `path` (a `.parquet` shard, a manifest `.json`, or a folder with
/// `manifest.json`), decoding sample documents with `tokenizer` when given.
pub fn inspect(
    path: &Path,
    tokenizer: Option<&TextTokenizer>,
    options: &InspectOptions,
) -> Result<InspectReport> {
    let manifest_path = if path.is_dir() {
        Some(path.join(FILE_NAME))
    } else if path.extension().is_some_and(|e| e == "json") {
        Some(path.to_path_buf())
    } else {
        None
    };
    let (manifest, shards) = match &manifest_path {
        Some(mp) => {
            let m = read_manifest(mp)?;
            let dir = mp.parent().map(Path::to_path_buf).unwrap_or_default();
            let shards = m.shards.iter().map(|s| dir.join(&s.path)).collect();
            (Some(summarize(mp, &m, tokenizer)), shards)
        }
        None => (None, vec![path.to_path_buf()]),
    };
    let first_shard = shards.first().map(|s| shard_summary(s)).transpose()?;
    let read = &shards[..shards.len().min(options.max_shards.max(1))];
    let (lengths, ids) = lengths_and_samples(read, options.samples)?;
    let samples = tokenizer.map(|t| Samples {
        tokenizer: t.path().to_path_buf(),
        documents: ids.iter().map(|ids| decode(t, ids, options)).collect(),
    });
    Ok(InspectReport {
        manifest,
        first_shard,
        shards_read: read.len(),
        shards_total: shards.len(),
        lengths,
        samples,
    })
}

fn summarize(path: &Path, m: &Manifest, tokenizer: Option<&TextTokenizer>) -> ManifestSummary {
    ManifestSummary {
        path: path.to_path_buf(),
        complete: m.complete,
        schema_version: m.schema_version,
        tokenizer_sha256: m.tokenizer_sha256.clone(),
        tool_version: m.tool_version.clone(),
        source_files: m.source_files.len(),
        shards: m.shards.len(),
        rows: m.rows(),
        tokens: m.tokens(),
        bytes: m.shards.iter().map(|s| s.bytes).sum(),
        other_tokenizer: tokenizer
            .filter(|t| t.sha256() != m.tokenizer_sha256)
            .map(|t| t.path().to_path_buf()),
    }
}

/// The schema and metadata of the shard at `path`.
fn shard_summary(path: &Path) -> Result<ShardSummary> {
    let file = std::fs::File::open(path).map_err(|source| PipelineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|source| {
        PipelineError::Parquet {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let meta = builder.metadata();
    let cut = |v: String| {
        if v.len() > 120 {
            let end = v.char_indices().nth(117).map_or(v.len(), |(i, _)| i);
            format!("{}...", &v[..end])
        } else {
            v
        }
    };
    Ok(ShardSummary {
        path: path.to_path_buf(),
        row_groups: meta.num_row_groups(),
        rows: meta.file_metadata().num_rows(),
        schema: builder
            .schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().to_string()))
            .collect(),
        metadata: shard_metadata(meta)
            .into_iter()
            .map(|(k, v)| (k, cut(v)))
            .collect(),
    })
}

/// The length histogram of the documents of `shards`, and the ids of the first `samples`.
fn lengths_and_samples(shards: &[PathBuf], samples: usize) -> Result<(Histogram, Vec<Vec<u32>>)> {
    let mut histogram = Histogram::default();
    let mut kept = Vec::new();
    for shard in shards {
        for batch in ShardReader::open(shard, &ShardChecks::default())? {
            let batch = batch?;
            let Some(ids) = batch
                .column_by_name(tokenized::INPUT_IDS)
                .and_then(|c| c.as_any().downcast_ref::<ListArray>())
            else {
                continue;
            };
            for row in 0..ids.len() {
                let doc = ids.value(row);
                histogram.add(doc.len() as u64);
                if kept.len() < samples {
                    if let Some(values) = doc.as_any().downcast_ref::<UInt32Array>() {
                        kept.push(values.values().to_vec());
                    }
                }
            }
        }
    }
    Ok((histogram, kept))
}

fn decode(tokenizer: &TextTokenizer, ids: &[u32], options: &InspectOptions) -> Sample {
    let text = tokenizer
        .inner()
        .decode(ids, true)
        .unwrap_or_else(|e| format!("<cannot decode: {e}>"));
    Sample {
        tokens: ids.len(),
        cut: text.chars().count() > options.sample_chars,
        text: text.chars().take(options.sample_chars).collect(),
    }
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(m) = &self.manifest {
            write!(f, "{m}")?;
        }
        let Some(shard) = &self.first_shard else {
            return Ok(());
        };
        write!(f, "\n{shard}")?;
        writeln!(
            f,
            "\nover {} of {} shards:",
            self.shards_read, self.shards_total
        )?;
        write!(f, "{}", self.lengths)?;
        if let Some(samples) = &self.samples {
            write!(f, "\n{samples}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ManifestSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "manifest        {}", self.path.display())?;
        writeln!(f, "complete        {}", self.complete)?;
        writeln!(f, "schema version  {}", self.schema_version)?;
        writeln!(f, "tokenizer       sha256 {}", self.tokenizer_sha256)?;
        writeln!(f, "tool            {}", self.tool_version)?;
        writeln!(f, "source files    {}", self.source_files)?;
        writeln!(f, "shards          {}", self.shards)?;
        writeln!(f, "rows            {}", self.rows)?;
        writeln!(f, "tokens          {}", self.tokens)?;
        writeln!(
            f,
            "bytes           {} ({:.2} bytes/token)",
            self.bytes,
            self.bytes as f64 / self.tokens.max(1) as f64
        )?;
        if let Some(other) = &self.other_tokenizer {
            writeln!(f, "warning: the tokenizer given ({}) is not the one the shards were made with; decoded text will be wrong", other.display())?;
        }
        Ok(())
    }
}

impl fmt::Display for ShardSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "shard           {}", self.path.display())?;
        writeln!(f, "row groups      {}", self.row_groups)?;
        writeln!(f, "rows            {}", self.rows)?;
        writeln!(f, "schema")?;
        for (name, kind) in &self.schema {
            writeln!(f, "  {name:<16} {kind}")?;
        }
        writeln!(f, "metadata")?;
        for (key, value) in &self.metadata {
            writeln!(f, "  {key:<28} {value}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let peak = self.buckets.iter().copied().max().unwrap_or(1).max(1);
        writeln!(
            f,
            "document lengths (tokens): {} documents, mean {:.0}, max {}",
            self.documents,
            self.tokens as f64 / self.documents.max(1) as f64,
            self.max
        )?;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let lo = if i == 0 { 0 } else { 1u64 << (i - 1) };
            let hi = (1u64 << i) - 1;
            let bar = "#".repeat(((n as f64 / peak as f64) * 40.0).ceil() as usize);
            writeln!(f, "  {lo:>8} - {hi:<8} {n:>9}  {bar}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Samples {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sample documents (decoded with {}):",
            self.tokenizer.display()
        )?;
        for (i, doc) in self.documents.iter().enumerate() {
            let more = if doc.cut { " ..." } else { "" };
            writeln!(f, "  [{i}] {} tokens: {}{more}", doc.tokens, doc.text)?;
        }
        Ok(())
    }
}
