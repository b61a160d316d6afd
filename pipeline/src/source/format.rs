//! Record formats: how a file's bytes are framed into documents, with bad records skipped
//! and counted, or fatal, as configured.
//!
//! A [`RecordFormat`] opens a file (through its byte source) as a [`RecordReader`], which
//! the document reader pulls one record at a time. Plain text and JSONL are line formats
//! ([`super::line_records`]): they read the file's decompressed bytes line by line. A format
//! that is not line-based (Parquet text columns) implements [`RecordReader`] directly and
//! reads its bytes through the byte source's ranges. [`record_format`] picks the format of
//! a file: the configured one, or by extension under `format = "auto"`.

use std::path::Path;

use super::byte_source::ByteSource;
use super::codec::name_without_codec;
use super::jsonl::JsonlFormat;
use super::location::Location;
use super::text::TextFormat;
use super::{BadRecordCounts, SourceOptions};
use crate::config::{BadRecordPolicy, OversizedLinePolicy, SourceFormat};
use crate::error::{PipelineError, Result};

/// Warnings logged per file for bad records before going quiet (the counts go on).
const WARNINGS_PER_FILE: u32 = 10;

/// A document as a format emits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Document {
    /// Decompressed offset of the document's first record.
    pub offset: u64,
    /// Trimmed, non-empty sentences.
    pub sentences: Vec<String>,
}

/// The per-file context a format reports bad records through.
pub(crate) struct FileContext<'a> {
    pub path: &'a Path,
    pub policy: BadRecordPolicy,
    pub bad: &'a mut BadRecordCounts,
    pub warnings: &'a mut u32,
}

impl FileContext<'_> {
    /// Under `fail`, returns `error`; under `skip`, counts it with `count` and warns.
    pub fn bad_record(
        &mut self,
        error: PipelineError,
        count: impl FnOnce(&mut BadRecordCounts),
    ) -> Result<()> {
        match self.policy {
            BadRecordPolicy::Fail => Err(error),
            BadRecordPolicy::Skip => {
                count(self.bad);
                *self.warnings += 1;
                if *self.warnings <= WARNINGS_PER_FILE {
                    tracing::warn!(file = %self.path.display(), "skipping bad record: {error}");
                    if *self.warnings == WARNINGS_PER_FILE {
                        tracing::warn!(file = %self.path.display(), "further bad records in this file are counted, not logged");
                    }
                }
                Ok(())
            }
        }
    }

    /// Line `line` (at decompressed `offset`) is not valid UTF-8.
    pub fn invalid_utf8(&mut self, line: u64, offset: u64) -> Result<()> {
        let error = PipelineError::InvalidUtf8 {
            path: self.path.to_path_buf(),
            line,
            byte_offset: offset,
        };
        self.bad_record(error, |b| b.invalid_utf8 += 1)
    }

    /// Line `line` (at decompressed `offset`) is longer than `limit`.
    pub fn oversized(&mut self, line: u64, offset: u64, limit: usize) -> Result<()> {
        let error = PipelineError::DocumentTooLarge {
            path: self.path.to_path_buf(),
            line,
            byte_offset: offset,
            limit,
        };
        self.bad_record(error, |b| b.oversized_lines += 1)
    }
}

/// The documents of one open file, a record at a time.
pub(crate) trait RecordReader: Send {
    /// Reads the next record: the documents it completes go to `out`, its bad records to
    /// `ctx`. `Ok(false)` once the file has ended (its last documents are in `out`).
    fn read_record(&mut self, ctx: &mut FileContext<'_>, out: &mut Vec<Document>) -> Result<bool>;
}

/// A way of framing a file into documents.
pub(crate) trait RecordFormat: std::fmt::Debug {
    /// Opens `location`, read from `source`, as a stream of documents.
    fn open(&self, source: &dyn ByteSource, location: &Location) -> Result<Box<dyn RecordReader>>;
}

/// The format a file is read as: `format`, or by extension (after any codec's) when
/// `auto`: `.jsonl`, `.json` and `.ndjson` are JSONL, everything else plain text.
pub fn detect_format(location: &Location, format: SourceFormat) -> SourceFormat {
    match format {
        SourceFormat::Auto => {
            let name = name_without_codec(location);
            if [".jsonl", ".json", ".ndjson"]
                .iter()
                .any(|ext| name.ends_with(ext))
            {
                SourceFormat::Jsonl
            } else {
                SourceFormat::Text
            }
        }
        other => other,
    }
}

/// The record format that reads `location` under `options`.
pub(crate) fn record_format(location: &Location, options: &SourceOptions) -> Box<dyn RecordFormat> {
    let cap = options.max_doc_bytes;
    match detect_format(location, options.format) {
        SourceFormat::Jsonl => Box::new(JsonlFormat {
            field: options.text_field.clone(),
            cap,
        }),
        SourceFormat::Text | SourceFormat::Auto => Box::new(TextFormat {
            cap,
            split: options.oversized_lines == OversizedLinePolicy::Split,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_detected_by_extension() {
        for (name, format) in [
            ("a.jsonl.zst", SourceFormat::Jsonl),
            ("a.ndjson", SourceFormat::Jsonl),
            ("a.JSON.zst", SourceFormat::Jsonl),
            ("a.txt.zst", SourceFormat::Text),
            ("a", SourceFormat::Text),
            ("s3://bucket/c4/a.json.zst", SourceFormat::Jsonl),
        ] {
            assert_eq!(
                detect_format(&Location::parse(name), SourceFormat::Auto),
                format,
                "{name}"
            );
        }
        assert_eq!(
            detect_format(&Location::parse("a.txt"), SourceFormat::Jsonl),
            SourceFormat::Jsonl
        );
    }
}
