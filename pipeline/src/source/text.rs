//! Plain text: one sentence (or paragraph) a line, blank lines between documents.
//!
//! A line of only whitespace is a blank line, so a "document" of whitespace lines is just a
//! longer boundary; a document all of whose lines are bad counts as empty. The pieces of a
//! line cut under `oversized_lines = "split"` are documents of their own. A document whose
//! text reaches `max_doc_bytes` ends after that line (counted as `split_documents`), so a
//! file with no blank lines never becomes one unbounded document.

use super::byte_source::ByteSource;
use super::format::{Document, FileContext, RecordFormat, RecordReader};
use super::line_records::{LineParser, LineRecords};
use super::lines::LineInfo;
use super::location::Location;
use crate::error::Result;

/// Plain text as a [`RecordFormat`].
#[derive(Debug, Clone)]
pub(crate) struct TextFormat {
    /// Longest line held in memory (`max_doc_bytes`).
    pub cap: usize,
    /// Lines longer than the cap are cut into pieces (`oversized_lines = "split"`).
    pub split: bool,
}

impl RecordFormat for TextFormat {
    fn open(&self, source: &dyn ByteSource, location: &Location) -> Result<Box<dyn RecordReader>> {
        let parser = TextParser::default();
        Ok(Box::new(LineRecords::open(
            source, location, self.cap, self.split, parser,
        )?))
    }
}

/// Groups trimmed lines into documents; an empty or whitespace-only line ends a document.
#[derive(Debug, Default)]
pub(crate) struct TextParser {
    sentences: Vec<String>,
    /// Offset of the document's first line.
    start: u64,
    /// A non-blank line (good or bad) has been seen since the last boundary.
    open: bool,
    /// Text bytes of `sentences`.
    bytes: usize,
}

impl LineParser for TextParser {
    fn line(
        &mut self,
        bytes: &[u8],
        info: LineInfo,
        line_no: u64,
        cap: usize,
        ctx: &mut FileContext<'_>,
        out: &mut Vec<Document>,
    ) -> Result<()> {
        if let Some(piece) = info.piece {
            return self.piece(bytes, info.offset, piece.first, line_no, ctx, out);
        }
        if info.oversized {
            self.begin(info.offset);
            return ctx.oversized(line_no, info.offset, cap);
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            self.begin(info.offset);
            return ctx.invalid_utf8(line_no, info.offset);
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            out.extend(self.end_document(ctx));
            return Ok(());
        }
        self.begin(info.offset);
        self.sentences.push(trimmed.to_string());
        self.bytes += trimmed.len();
        if self.bytes >= cap {
            out.extend(self.end_document(ctx));
            ctx.bad.split_documents += 1;
        }
        Ok(())
    }

    fn finish(&mut self, ctx: &mut FileContext<'_>, out: &mut Vec<Document>) {
        out.extend(self.end_document(ctx));
    }
}

impl TextParser {
    /// A piece of a line cut under `oversized_lines = "split"`: a document of its own (the
    /// document in progress ends before the line's first piece).
    fn piece(
        &mut self,
        bytes: &[u8],
        offset: u64,
        first: bool,
        line_no: u64,
        ctx: &mut FileContext<'_>,
        out: &mut Vec<Document>,
    ) -> Result<()> {
        if first {
            out.extend(self.end_document(ctx));
            ctx.bad.split_lines += 1;
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            return ctx.invalid_utf8(line_no, offset);
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            ctx.bad.empty_documents += 1;
        } else {
            out.push(Document {
                offset,
                sentences: vec![trimmed.to_string()],
            });
        }
        Ok(())
    }

    /// Ends the document in progress (a blank line or the end of the file).
    fn end_document(&mut self, ctx: &mut FileContext<'_>) -> Option<Document> {
        if !self.open {
            return None;
        }
        self.open = false;
        self.bytes = 0;
        if self.sentences.is_empty() {
            ctx.bad.empty_documents += 1;
            return None;
        }
        Some(Document {
            offset: self.start,
            sentences: std::mem::take(&mut self.sentences),
        })
    }

    fn begin(&mut self, offset: u64) {
        if !self.open {
            self.open = true;
            self.start = offset;
        }
    }
}
