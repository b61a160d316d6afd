//! JSONL: one JSON object a line, the document's text in a configured field; the text's
//! lines are the document's sentences.

use super::byte_source::ByteSource;
use super::format::{Document, FileContext, RecordFormat, RecordReader};
use super::line_records::{LineParser, LineRecords};
use super::lines::LineInfo;
use super::location::Location;
use crate::error::{PipelineError, Result};

/// JSONL as a [`RecordFormat`].
#[derive(Debug, Clone)]
pub(crate) struct JsonlFormat {
    /// The field holding a document's text.
    pub field: String,
    /// Longest line held in memory (`max_doc_bytes`).
    pub cap: usize,
}

impl RecordFormat for JsonlFormat {
    fn open(&self, source: &dyn ByteSource, location: &Location) -> Result<Box<dyn RecordReader>> {
        // A JSONL line is never cut: a piece of an object is not a record.
        let parser = JsonlParser::new(&self.field);
        Ok(Box::new(LineRecords::open(
            source, location, self.cap, false, parser,
        )?))
    }
}

/// Parses JSONL lines into documents.
#[derive(Debug)]
pub(crate) struct JsonlParser {
    field: String,
}

impl JsonlParser {
    pub fn new(field: &str) -> Self {
        Self {
            field: field.to_string(),
        }
    }
}

impl LineParser for JsonlParser {
    /// Feeds one line (without its newline); blank lines are ignored; the document goes to
    /// `out`. A JSONL line is never cut: the reader does not split lines of this format.
    fn line(
        &mut self,
        bytes: &[u8],
        info: LineInfo,
        line_no: u64,
        cap: usize,
        ctx: &mut FileContext<'_>,
        out: &mut Vec<Document>,
    ) -> Result<()> {
        if info.oversized {
            return ctx.oversized(line_no, info.offset, cap);
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            return ctx.invalid_utf8(line_no, info.offset);
        };
        if text.trim().is_empty() {
            return Ok(());
        }
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(source) => {
                ctx.bad_record(
                    PipelineError::Json {
                        path: ctx.path.to_path_buf(),
                        line: line_no,
                        source,
                    },
                    |b| b.malformed_json += 1,
                )?;
                return Ok(());
            }
        };
        let Some(body) = value.get(&self.field).and_then(|v| v.as_str()) else {
            ctx.bad_record(
                PipelineError::MissingTextField {
                    path: ctx.path.to_path_buf(),
                    line: line_no,
                    field: self.field.clone(),
                },
                |b| b.missing_text_field += 1,
            )?;
            return Ok(());
        };
        let sentences: Vec<String> = body
            .split('\n')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if sentences.is_empty() {
            ctx.bad.empty_documents += 1;
            return Ok(());
        }
        out.push(Document {
            offset: info.offset,
            sentences,
        });
        Ok(())
    }
}
