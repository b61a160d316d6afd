//! Line formats: a file's decompressed bytes read line by line ([`super::lines`]), each line
//! handed to the format's [`LineParser`]. Decoding failures of a compressed file are bad
//! records (`unreadable_files`): the document in progress is dropped and the file ends.

use super::byte_source::ByteSource;
use super::codec::{DecodedInput, Decoding, ReadFailure};
use super::format::{Document, FileContext, RecordReader};
use super::lines::{LineInfo, LineReader};
use super::location::Location;
use crate::error::Result;

/// What a line format does with each line.
pub(crate) trait LineParser: Send {
    /// Feeds one line (without its newline), or one piece of a line cut under
    /// `oversized_lines = "split"`; completed documents go to `out`.
    fn line(
        &mut self,
        bytes: &[u8],
        info: LineInfo,
        line_no: u64,
        cap: usize,
        ctx: &mut FileContext<'_>,
        out: &mut Vec<Document>,
    ) -> Result<()>;

    /// The file has ended: the document in progress, if any, goes to `out`.
    fn finish(&mut self, _ctx: &mut FileContext<'_>, _out: &mut Vec<Document>) {}
}

/// A [`RecordReader`] over the lines of one file.
pub(crate) struct LineRecords<P> {
    lines: LineReader,
    decoding: Decoding,
    parser: P,
    /// Longest line held in memory.
    cap: usize,
    /// Lines longer than the cap are cut into pieces.
    split: bool,
    line: Vec<u8>,
    /// 1-based number of the current line.
    line_no: u64,
}

impl<P: LineParser> LineRecords<P> {
    /// Opens `location` from `source` (through its codec) for `parser`.
    pub fn open(
        source: &dyn ByteSource,
        location: &Location,
        cap: usize,
        split: bool,
        parser: P,
    ) -> Result<Self> {
        let input = DecodedInput::open(source, location)?;
        Ok(Self {
            lines: LineReader::new(input.stream),
            decoding: input.decoding,
            parser,
            cap,
            split,
            line: Vec::new(),
            line_no: 0,
        })
    }
}

impl<P: LineParser> RecordReader for LineRecords<P> {
    fn read_record(&mut self, ctx: &mut FileContext<'_>, out: &mut Vec<Document>) -> Result<bool> {
        let info = match self.lines.next_line(&mut self.line, self.cap, self.split) {
            Ok(Some(info)) => info,
            Ok(None) => {
                if let Some(error) = self.decoding.take_damage() {
                    // The readable part of a damaged file ends here: the document in
                    // progress may be incomplete and is dropped.
                    ctx.bad_record(error, |b| b.unreadable_files += 1)?;
                    return Ok(false);
                }
                self.parser.finish(ctx, out);
                return Ok(false);
            }
            Err(source) => {
                return match self.decoding.failure(source) {
                    // The document in progress is incomplete and dropped.
                    ReadFailure::Damaged(error) => {
                        ctx.bad_record(error, |b| b.unreadable_files += 1)?;
                        Ok(false)
                    }
                    ReadFailure::Io(error) => Err(error),
                };
            }
        };
        if info.piece.is_none_or(|p| p.first) {
            self.line_no += 1;
        }
        self.parser
            .line(&self.line, info, self.line_no, self.cap, ctx, out)?;
        Ok(true)
    }
}
