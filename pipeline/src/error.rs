//! The pipeline's error type: every variant keeps its source error and the file, line or
//! offset involved.

use std::path::PathBuf;

use electra_schemas::SchemaError;

impl From<electra_fsutil::FileError> for PipelineError {
    fn from(e: electra_fsutil::FileError) -> Self {
        Self::Io {
            path: e.path,
            source: e.source,
        }
    }
}

/// Result alias for the pipeline.
pub type Result<T> = std::result::Result<T, PipelineError>;

/// Everything that can go wrong between a corpus file and a batch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// A file could not be opened or read (not a decoding error).
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// zstd decoding failed (corrupt frame, truncated file, not a zstd file).
    #[error("{}: zstd decoding failed near compressed byte {compressed_offset}: {source}", path.display())]
    Zstd {
        path: PathBuf,
        /// Bytes of the compressed file consumed when decoding failed.
        compressed_offset: u64,
        #[source]
        source: std::io::Error,
    },
    /// gzip decoding failed (corrupt member, CRC mismatch, truncated file, not a gzip file).
    #[error("{}: gzip decoding failed near compressed byte {compressed_offset}: {source}", path.display())]
    Gzip {
        path: PathBuf,
        /// Bytes of the compressed file consumed when decoding failed.
        compressed_offset: u64,
        #[source]
        source: std::io::Error,
    },
    /// A line is not valid UTF-8.
    #[error("{}:{line}: invalid UTF-8 (decompressed byte offset {byte_offset})", path.display())]
    InvalidUtf8 {
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// Decompressed offset of the line's first byte.
        byte_offset: u64,
    },
    /// A JSONL line is not a JSON object.
    #[error("{}:{line}: malformed JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        #[source]
        source: serde_json::Error,
    },
    /// A JSONL object lacks the configured text field, or it is not a string.
    #[error("{}:{line}: missing or non-string text field `{field}`", path.display())]
    MissingTextField {
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        field: String,
    },
    /// An object store request failed (after its retries), or a store could not be built
    /// from the environment. Never holds a credential.
    #[error("{url}: {source}")]
    ObjectStore {
        url: String,
        #[source]
        source: Box<object_store::Error>,
    },
    /// A pattern or path matched no file.
    #[error("no files match `{pattern}`")]
    NoFiles { pattern: String },
    /// The tokenizer could not be loaded or failed to encode.
    #[error("tokenizer {}: {source}", path.display())]
    Tokenizer {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The vocabulary lacks a special token the pipeline needs.
    #[error("the tokenizer's vocabulary has no {token} token")]
    MissingSpecialToken { token: String },
    /// A record batch does not have the schema a stage expects.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A pipeline thread panicked while processing a chunk.
    #[error("pipeline thread `{thread}` panicked: {message}")]
    WorkerPanicked { thread: String, message: String },
    /// A pipeline thread ended before the end of the data.
    #[error("pipeline thread `{thread}` exited before the end of the data")]
    WorkerExited { thread: String },
    /// A configuration value is out of range.
    #[error("invalid data config `{field}`: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    /// A line is longer than `max_doc_bytes` (under the `fail` policy).
    #[error("{}:{line}: line at decompressed byte {byte_offset} is longer than max_doc_bytes = {limit}", path.display())]
    DocumentTooLarge {
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// Decompressed offset of the line's first byte.
        byte_offset: u64,
        /// The configured `max_doc_bytes`.
        limit: usize,
    },
    /// A full pass over the files produced no document at all.
    #[error("the corpus has no documents (files: {files:?})")]
    EmptyCorpus { files: Vec<PathBuf> },
    /// A data slice is not one of its count's parts (`count` is 0 or `index >= count`).
    #[error("invalid data slice {index} of {count}: the count must be at least 1 and the index below it")]
    InvalidSlice { index: usize, count: usize },
    /// A data slice gets no documents: an epoch has fewer documents (raw files) or shuffle
    /// blocks (shards) than the slice's index needs.
    #[error("data slice {index} of {count} gets no documents: an epoch deals only {available} {unit} to {count} slices")]
    EmptySlice {
        index: usize,
        count: usize,
        /// Units dealt per epoch.
        available: u64,
        /// What is dealt: `documents` (raw files) or `shuffle blocks` (shards).
        unit: &'static str,
    },
    /// An Arrow array could not be built (a bug: the pipeline builds its own arrays).
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A Parquet file could not be read or written.
    #[error("{}: {source}", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A shard is truncated, corrupt, of another schema, or fails a check.
    #[error("shard {}: {reason}", path.display())]
    BadShard { path: PathBuf, reason: String },
    /// A manifest does not parse or lists an unsafe path.
    #[error("manifest {}: {reason}", path.display())]
    BadManifest { path: PathBuf, reason: String },
    /// A shard was made with another tokenizer than the run's.
    #[error("shard {}: made with tokenizer sha256 {found}, but this run's tokenizer is {expected}", path.display())]
    TokenizerMismatch {
        path: PathBuf,
        found: String,
        expected: String,
    },
}
