//! JSONL: one JSON object a line, the document's text in a configured field; the text's
//! lines are the document's sentences.

use super::{Document, FileContext, LineInfo, LineOutcome};
use crate::error::{PipelineError, Result};

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

    /// Feeds one line (without its newline); blank lines are ignored.
    pub fn line(
        &mut self,
        bytes: &[u8],
        info: LineInfo,
        line_no: u64,
        cap: usize,
        ctx: &mut FileContext<'_>,
    ) -> Result<LineOutcome> {
        let path = ctx.path.to_path_buf();
        if info.oversized {
            ctx.bad_record(
                PipelineError::DocumentTooLarge {
                    path,
                    line: line_no,
                    byte_offset: info.offset,
                    limit: cap,
                },
                |b| b.oversized_lines += 1,
            )?;
            return Ok(LineOutcome::Nothing);
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            ctx.bad_record(
                PipelineError::InvalidUtf8 {
                    path,
                    line: line_no,
                    byte_offset: info.offset,
                },
                |b| b.invalid_utf8 += 1,
            )?;
            return Ok(LineOutcome::Nothing);
        };
        if text.trim().is_empty() {
            return Ok(LineOutcome::Nothing);
        }
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(source) => {
                ctx.bad_record(
                    PipelineError::Json {
                        path,
                        line: line_no,
                        source,
                    },
                    |b| b.malformed_json += 1,
                )?;
                return Ok(LineOutcome::Nothing);
            }
        };
        let Some(body) = value.get(&self.field).and_then(|v| v.as_str()) else {
            ctx.bad_record(
                PipelineError::MissingTextField {
                    path,
                    line: line_no,
                    field: self.field.clone(),
                },
                |b| b.missing_text_field += 1,
            )?;
            return Ok(LineOutcome::Nothing);
        };
        let sentences: Vec<String> = body
            .split('\n')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if sentences.is_empty() {
            ctx.bad.empty_documents += 1;
            return Ok(LineOutcome::Nothing);
        }
        Ok(LineOutcome::Document(Document {
            offset: info.offset,
            sentences,
        }))
    }
}
