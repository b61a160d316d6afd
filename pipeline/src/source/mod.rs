//! Sources: corpus files (plain text or JSONL, optionally zstd- or gzip-compressed) streamed into
//! Arrow record batches of documents ([`electra_schemas::documents`]).
//!
//! A file goes through four layers, each behind a trait and in its own file:
//!
//! 1. a [`ByteSource`] (where the bytes come from: [`LocalFiles`], or object storage and
//!    HTTP(S) servers through [`object_store`]), chosen by the
//!    file's [`Location`], which also expands glob patterns ([`expand_files`]);
//! 2. a [`Codec`] (compression: [`zstd`], [`gzip`]), chosen by extension, which checks the whole
//!    file before it is read ([`codec`]);
//! 3. a record format (how bytes are framed into documents: `text` lines with blank
//!    lines between documents, `jsonl` objects), chosen by `data.format` or by extension
//!    ([`format`]); line formats read through the capped line reader (`lines`);
//! 4. the [`DocumentReader`], which reads files in order and cuts their documents into
//!    chunks of about `chunk_bytes` of text ([`reader`]).
//!
//! Files are never decompressed whole: memory is bounded by the line reader's cap
//! (`max_doc_bytes`) and the chunk size. Bad records are skipped and counted
//! ([`BadRecordCounts`]) or fatal, as `on_bad_record` says.

pub mod byte_source;
pub mod codec;
mod format;
pub mod gzip;
mod jsonl;
mod line_records;
mod lines;
pub mod local;
pub mod location;
pub mod object_store;
pub mod reader;
mod text;
pub mod zstd;

#[cfg(test)]
mod edge_tests;
#[cfg(test)]
pub(crate) mod tests;

use arrow_array::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::config::{BadRecordPolicy, DataConfig, OversizedLinePolicy, SourceFormat};

pub use byte_source::{byte_source, expand_files, expand_locations, ByteSource};
pub use codec::{check_compressed, codec_for, Codec};
pub use format::detect_format;
pub use local::LocalFiles;
pub use location::Location;
pub use reader::{sentences, DocumentReader};

/// Bad records met while reading, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BadRecordCounts {
    /// Lines that are not valid UTF-8.
    pub invalid_utf8: u64,
    /// JSONL lines that are not valid JSON.
    pub malformed_json: u64,
    /// JSONL objects without a string text field.
    pub missing_text_field: u64,
    /// Documents with no sentence left (all lines bad, or empty JSONL text).
    pub empty_documents: u64,
    /// Lines longer than `max_doc_bytes`, rejected.
    pub oversized_lines: u64,
    /// Plain-text lines longer than `max_doc_bytes` cut into pieces
    /// (`oversized_lines = "split"`); their text is kept.
    pub split_lines: u64,
    /// Plain-text documents (lines with no blank line between them) cut at a line
    /// boundary when their text reached `max_doc_bytes`; their text is kept.
    pub split_documents: u64,
    /// Files whose compressed (zstd or gzip) stream could not be decoded to the end.
    pub unreadable_files: u64,
}

impl BadRecordCounts {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &BadRecordCounts) {
        self.invalid_utf8 += other.invalid_utf8;
        self.malformed_json += other.malformed_json;
        self.missing_text_field += other.missing_text_field;
        self.empty_documents += other.empty_documents;
        self.oversized_lines += other.oversized_lines;
        self.split_lines += other.split_lines;
        self.split_documents += other.split_documents;
        self.unreadable_files += other.unreadable_files;
    }

    /// All bad records together (split lines included: their text is kept, but they are
    /// reported).
    pub fn total(&self) -> u64 {
        self.invalid_utf8
            + self.malformed_json
            + self.missing_text_field
            + self.empty_documents
            + self.oversized_lines
            + self.split_lines
            + self.split_documents
            + self.unreadable_files
    }
}

/// A batch of whole documents and the bad records met while reading them.
#[derive(Debug, Clone)]
pub struct DocumentChunk {
    /// Documents, [`electra_schemas::documents::schema`].
    pub batch: RecordBatch,
    /// Bad records skipped while this chunk was read.
    pub bad_records: BadRecordCounts,
}

/// How files are read.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// File format (`auto` decides by extension).
    pub format: SourceFormat,
    /// JSONL text field.
    pub text_field: String,
    /// Skip-and-count or fail.
    pub on_bad_record: BadRecordPolicy,
    /// Longest line held in memory.
    pub max_doc_bytes: usize,
    /// Lines longer than `max_doc_bytes`: rejected, or (plain text) split.
    pub oversized_lines: OversizedLinePolicy,
    /// A chunk is emitted once its sentences hold this many bytes.
    pub chunk_bytes: usize,
    /// How object storage and HTTP(S) requests are retried.
    pub retry: object_store::RetrySettings,
}

impl SourceOptions {
    /// The source options of a data config.
    pub fn from_config(config: &DataConfig) -> Self {
        Self {
            format: config.format,
            text_field: config.text_field.clone(),
            on_bad_record: config.on_bad_record,
            max_doc_bytes: config.max_doc_bytes,
            oversized_lines: config.oversized_lines,
            chunk_bytes: config.chunk_bytes,
            retry: object_store::RetrySettings {
                retries: config.io_retries,
                timeout_s: config.io_retry_timeout_s,
            },
        }
    }
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self::from_config(&DataConfig::default())
    }
}
