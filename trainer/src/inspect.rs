//! `electra inspect PATH`: what a shard, a manifest or a shard folder holds.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use arrow_array::{Array, ListArray, UInt32Array};
use electra_pipeline::shard::{read_manifest, shard_metadata, ShardChecks, ShardReader};
use electra_pipeline::{PipelineError, TextTokenizer};
use electra_schemas::manifest::FILE_NAME;
use electra_schemas::tokenized;

use crate::error::{Result, TrainError};

/// How much `inspect` reads.
#[derive(Debug, Clone)]
pub struct InspectOptions {
    /// Shards read for the histogram (the manifest's totals cover all of them).
    pub max_shards: usize,
    /// Documents decoded back to text.
    pub samples: usize,
    /// Characters printed per decoded document.
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

/// Document-length histogram over power-of-two buckets.
#[derive(Debug, Default)]
struct Histogram {
    buckets: Vec<u64>,
    documents: u64,
    tokens: u64,
    max: u64,
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

    fn render(&self, out: &mut String) {
        let peak = self.buckets.iter().copied().max().unwrap_or(1).max(1);
        let _ = writeln!(
            out,
            "document lengths (tokens): {} documents, mean {:.0}, max {}",
            self.documents,
            self.tokens as f64 / self.documents.max(1) as f64,
            self.max
        );
        for (i, &n) in self.buckets.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let lo = if i == 0 { 0 } else { 1u64 << (i - 1) };
            let hi = (1u64 << i) - 1;
            let bar = "#".repeat(((n as f64 / peak as f64) * 40.0).ceil() as usize);
            let _ = writeln!(out, "  {lo:>8} - {hi:<8} {n:>9}  {bar}");
        }
    }
}

/// Describes `path` (a `.parquet` shard, a manifest `.json`, or a folder with
/// `manifest.json`), decoding sample documents with `tokenizer` when given.
pub fn inspect(
    path: &Path,
    tokenizer: Option<&TextTokenizer>,
    options: &InspectOptions,
) -> Result<String> {
    let mut out = String::new();
    let mut shards: Vec<PathBuf> = Vec::new();
    let manifest_path = if path.is_dir() {
        Some(path.join(FILE_NAME))
    } else if path.extension().is_some_and(|e| e == "json") {
        Some(path.to_path_buf())
    } else {
        None
    };
    if let Some(mp) = &manifest_path {
        let m = read_manifest(mp)?;
        let bytes: u64 = m.shards.iter().map(|s| s.bytes).sum();
        let _ = writeln!(out, "manifest        {}", mp.display());
        let _ = writeln!(out, "complete        {}", m.complete);
        let _ = writeln!(out, "schema version  {}", m.schema_version);
        let _ = writeln!(out, "tokenizer       sha256 {}", m.tokenizer_sha256);
        let _ = writeln!(out, "tool            {}", m.tool_version);
        let _ = writeln!(out, "source files    {}", m.source_files.len());
        let _ = writeln!(out, "shards          {}", m.shards.len());
        let _ = writeln!(out, "rows            {}", m.rows());
        let _ = writeln!(out, "tokens          {}", m.tokens());
        let _ = writeln!(
            out,
            "bytes           {bytes} ({:.2} bytes/token)",
            bytes as f64 / m.tokens().max(1) as f64
        );
        let dir = mp.parent().map(Path::to_path_buf).unwrap_or_default();
        shards.extend(m.shards.iter().map(|s| dir.join(&s.path)));
        if let Some(t) = tokenizer {
            if t.sha256() != m.tokenizer_sha256 {
                let _ = writeln!(out, "warning: the tokenizer given ({}) is not the one the shards were made with; decoded text will be wrong", t.path().display());
            }
        }
    } else {
        shards.push(path.to_path_buf());
    }
    let Some(first) = shards.first() else {
        return Ok(out);
    };
    // Schema and metadata of the first shard.
    {
        let file = std::fs::File::open(first).map_err(TrainError::io(first))?;
        let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|source| PipelineError::Parquet {
                path: first.clone(),
                source,
            })?;
        let meta = builder.metadata();
        let _ = writeln!(out, "\nshard           {}", first.display());
        let _ = writeln!(out, "row groups      {}", meta.num_row_groups());
        let _ = writeln!(out, "rows            {}", meta.file_metadata().num_rows());
        let _ = writeln!(out, "schema");
        for field in builder.schema().fields() {
            let _ = writeln!(out, "  {:<16} {}", field.name(), field.data_type());
        }
        let _ = writeln!(out, "metadata");
        for (k, v) in shard_metadata(meta) {
            let shown = if v.len() > 120 {
                format!(
                    "{}...",
                    &v[..v.char_indices().nth(117).map_or(v.len(), |(i, _)| i)]
                )
            } else {
                v
            };
            let _ = writeln!(out, "  {k:<28} {shown}");
        }
    }
    let mut histogram = Histogram::default();
    let mut samples = Vec::new();
    for shard in shards.iter().take(options.max_shards.max(1)) {
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
                if samples.len() < options.samples {
                    if let Some(values) = doc.as_any().downcast_ref::<UInt32Array>() {
                        samples.push(values.values().to_vec());
                    }
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "\nover {} of {} shards:",
        shards.len().min(options.max_shards.max(1)),
        shards.len()
    );
    histogram.render(&mut out);
    if let Some(t) = tokenizer {
        let _ = writeln!(
            out,
            "\nsample documents (decoded with {}):",
            t.path().display()
        );
        for (i, ids) in samples.iter().enumerate() {
            let text = t
                .inner()
                .decode(ids, true)
                .unwrap_or_else(|e| format!("<cannot decode: {e}>"));
            let cut: String = text.chars().take(options.sample_chars).collect();
            let more = if text.chars().count() > options.sample_chars {
                " ..."
            } else {
                ""
            };
            let _ = writeln!(out, "  [{i}] {} tokens: {cut}{more}", ids.len());
        }
    }
    Ok(out)
}
