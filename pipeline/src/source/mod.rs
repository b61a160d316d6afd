//! Sources: corpus files (plain text or JSONL, optionally zstd-compressed) streamed into
//! Arrow record batches of documents ([`electra_schemas::documents`]).
//!
//! Files are never decompressed whole: each is read through a counting reader (for the
//! compressed offset of a decoding error), a streaming zstd decoder when the name ends in
//! `.zst` (concatenated frames are read in turn) and a line reader whose buffer is capped at
//! `max_doc_bytes` (a longer line is rejected or, for plain text under
//! `oversized_lines = "split"`, cut into pieces).
//!
//! A zstd file is first decoded once into nothing, in bounded memory, to check it: a frame
//! is trusted only once zstd has decoded it to its end (and verified its content checksum,
//! when the frame has one). Reading then stops at the end of the last frame that checked
//! out, so a damaged frame never contributes text decoded before the damage was detected;
//! a truncated file gives the text decoded before its end (zstd only emits whole blocks),
//! and then the error.

mod jsonl;
mod text;

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch, UInt32Array, UInt64Array};
use arrow_schema::SchemaRef;
use electra_schemas::documents;
use serde::{Deserialize, Serialize};

use crate::arrow_util::list_item;
use crate::config::{BadRecordPolicy, DataConfig, OversizedLinePolicy, SourceFormat};
use crate::error::{PipelineError, Result};

/// Warnings logged per file for bad records before going quiet (the counts go on).
const WARNINGS_PER_FILE: u32 = 10;
/// Buffer of the line reader over decompressed bytes.
const READ_BUFFER: usize = 256 << 10;

/// Expands paths and glob patterns into a file list: entries in the given order, a glob's
/// matches sorted, duplicates removed. A pattern matching nothing is `NoFiles`; a missing
/// path is `Io` naming it.
pub fn expand_files(patterns: &[String]) -> Result<Vec<PathBuf>> {
    let mut seen = HashSet::new();
    let mut files = Vec::new();
    for pattern in patterns {
        let mut matches = Vec::new();
        if pattern.contains(['*', '?', '[']) {
            let paths = glob::glob(pattern).map_err(|_| PipelineError::NoFiles {
                pattern: pattern.clone(),
            })?;
            for entry in paths {
                let path = entry.map_err(|e| PipelineError::Io {
                    path: e.path().to_path_buf(),
                    source: io::Error::new(e.error().kind(), e.error().to_string()),
                })?;
                if path.is_file() {
                    matches.push(path);
                }
            }
            matches.sort();
            if matches.is_empty() {
                return Err(PipelineError::NoFiles {
                    pattern: pattern.clone(),
                });
            }
        } else {
            let path = PathBuf::from(pattern);
            std::fs::metadata(&path).map_err(|source| PipelineError::Io {
                path: path.clone(),
                source,
            })?;
            matches.push(path);
        }
        for path in matches {
            if seen.insert(path.clone()) {
                files.push(path);
            }
        }
    }
    Ok(files)
}

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
    /// Files whose zstd stream could not be decoded to the end.
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
        }
    }
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self::from_config(&DataConfig::default())
    }
}

/// The format a file is read as: `format`, or by extension when `auto`.
pub fn detect_format(path: &Path, format: SourceFormat) -> SourceFormat {
    match format {
        SourceFormat::Auto => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            let name = name.strip_suffix(".zst").unwrap_or(&name);
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

fn is_zstd(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zst"))
}

/// Counts the bytes read from the underlying file.
struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// One line, or one piece of a line, as the line reader returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineInfo {
    /// Decompressed offset of the line's (or piece's) first byte.
    pub offset: u64,
    /// The line was longer than the cap; the buffer holds nothing.
    pub oversized: bool,
    /// Split mode: this is a piece of a line longer than the cap.
    pub piece: Option<Piece>,
}

/// Where a piece lies in the line it was cut from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    /// The line's first piece.
    pub first: bool,
    /// The line's last piece.
    pub last: bool,
}

/// Reads lines with a buffer capped at `max_doc_bytes`, tracking the decompressed offset.
struct LineReader {
    inner: Box<dyn BufRead + Send>,
    /// Decompressed bytes consumed from `inner`.
    offset: u64,
    /// Split mode: bytes of the line being cut, read past the last piece's cut (fewer than
    /// the cap).
    carry: Vec<u8>,
    /// Split mode: a line is being cut and its last piece is still to come.
    splitting: bool,
}

impl LineReader {
    fn new(inner: Box<dyn BufRead + Send>) -> Self {
        Self {
            inner,
            offset: 0,
            carry: Vec::new(),
            splitting: false,
        }
    }

    /// Reads the next line into `buf` without its `\n` / `\r\n`. A line longer than `cap`
    /// is consumed up to its newline without being buffered and comes back `oversized`;
    /// with `split`, it comes back instead as pieces of at most `cap` bytes (see
    /// [`split_point`]), one a call. Neither holds more than `cap` bytes of a line.
    fn next_line(
        &mut self,
        buf: &mut Vec<u8>,
        cap: usize,
        split: bool,
    ) -> io::Result<Option<LineInfo>> {
        buf.clear();
        let start = self.offset - self.carry.len() as u64;
        buf.append(&mut self.carry);
        let continuing = std::mem::take(&mut self.splitting);
        let mut oversized = false;
        let mut any = continuing;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                break;
            }
            any = true;
            let newline = available.iter().position(|&b| b == b'\n');
            let content = newline.unwrap_or(available.len());
            if split {
                // A '\r' just before the newline is stripped below and does not count.
                let counted = match newline {
                    Some(_) if content > 0 && available[content - 1] == b'\r' => content - 1,
                    _ => content,
                };
                if buf.len() + counted > cap {
                    let room = cap.saturating_sub(buf.len());
                    buf.extend_from_slice(&available[..room]);
                    self.inner.consume(room);
                    self.offset += room as u64;
                    let cut = split_point(buf);
                    self.carry.extend_from_slice(&buf[cut..]);
                    buf.truncate(cut);
                    self.splitting = true;
                    return Ok(Some(LineInfo {
                        offset: start,
                        oversized: false,
                        piece: Some(Piece {
                            first: !continuing,
                            last: false,
                        }),
                    }));
                }
                buf.extend_from_slice(&available[..content]);
            } else if !oversized {
                if buf.len() + content > cap.saturating_add(1) {
                    // cap + 1 leaves room for a '\r' that is stripped below.
                    oversized = true;
                    buf.clear();
                    buf.shrink_to(READ_BUFFER);
                } else {
                    buf.extend_from_slice(&available[..content]);
                }
            }
            let used = newline.map_or(content, |i| i + 1);
            self.inner.consume(used);
            self.offset += used as u64;
            if newline.is_some() {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        if !oversized && buf.len() > cap {
            oversized = true;
            buf.clear();
        }
        Ok(Some(LineInfo {
            offset: start,
            oversized,
            piece: continuing.then_some(Piece {
                first: false,
                last: true,
            }),
        }))
    }
}

/// Where to cut a full buffer of an oversized line: just after its last ASCII whitespace
/// in the second half (so every piece but the last holds at least half the cap), else
/// before a UTF-8 character the buffer holds only part of. Never 0 for a non-empty buffer.
fn split_point(buf: &[u8]) -> usize {
    let len = buf.len();
    let half = len / 2;
    if let Some(i) = buf[half..].iter().rposition(u8::is_ascii_whitespace) {
        return half + i + 1;
    }
    // The last character starts at the last byte that is not a continuation byte (a
    // character has at most 3 of them).
    let tail = len.saturating_sub(4);
    let Some(lead) = buf[tail..]
        .iter()
        .rposition(|&b| b & 0xC0 != 0x80)
        .map(|i| tail + i)
    else {
        return len; // not UTF-8; the piece is reported as such
    };
    let width = match buf[lead] {
        b if b >= 0xF0 => 4,
        b if b >= 0xE0 => 3,
        b if b >= 0xC0 => 2,
        _ => 1,
    };
    if lead + width > len && lead > 0 {
        lead
    } else {
        len
    }
}

/// What checking a zstd file found.
#[derive(Debug)]
struct ZstdCheck {
    /// Decompressed bytes that may be read: up to the end of the last frame that decoded to
    /// its end, or for a truncated file everything decoded before the end.
    readable: u64,
    /// The error that ends the readable part, if any.
    error: Option<PipelineError>,
}

/// Decodes a zstd file into nothing (bounded memory) and reports how much of it can be
/// trusted; see the module docs.
fn check_zstd(path: &Path) -> Result<ZstdCheck> {
    use zstd::stream::raw::{Decoder, Operation};
    let io_err = |source| PipelineError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let mut decoder = Decoder::new().map_err(io_err)?;
    let mut input = vec![0u8; zstd::zstd_safe::DCtx::in_size()];
    let mut output = vec![0u8; zstd::zstd_safe::DCtx::out_size()];
    // Compressed bytes consumed, decompressed bytes produced, and produced by the end of the
    // last complete frame.
    let (mut consumed, mut produced, mut verified) = (0u64, 0u64, 0u64);
    let mut in_frame = false;
    let mut frame_ended = false;
    let failed = |consumed: u64, readable: u64, source: io::Error| ZstdCheck {
        readable,
        error: Some(PipelineError::Zstd {
            path: path.to_path_buf(),
            compressed_offset: consumed,
            source,
        }),
    };
    loop {
        let n = match file.read(&mut input) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        };
        let mut pos = 0;
        loop {
            if frame_ended && pos < n {
                decoder.reinit().map_err(io_err)?;
                frame_ended = false;
            }
            let status = match decoder.run_on_buffers(&input[pos..n], &mut output) {
                Ok(status) => status,
                Err(e) => return Ok(failed(consumed + pos as u64, verified, e)),
            };
            pos += status.bytes_read;
            produced += status.bytes_written as u64;
            in_frame = status.remaining != 0;
            if !in_frame {
                verified = produced;
                frame_ended = true;
            }
            // Done with this input once it is consumed and the output is flushed.
            if pos == n && status.bytes_written < output.len() {
                break;
            }
            if status.bytes_read == 0 && status.bytes_written == 0 && in_frame {
                let source = io::Error::other("the zstd decoder makes no progress");
                return Ok(failed(consumed + pos as u64, verified, source));
            }
        }
        consumed += n as u64;
    }
    if in_frame {
        let source = io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file ends inside a zstd frame (truncated)",
        );
        return Ok(failed(consumed, produced, source));
    }
    Ok(ZstdCheck {
        readable: produced,
        error: None,
    })
}

/// A document as a parser emits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Document {
    /// Decompressed offset of the document's first line.
    pub offset: u64,
    /// Trimmed, non-empty sentences.
    pub sentences: Vec<String>,
}

/// The per-file context a parser reports bad records through.
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
}

/// Line parser of one file format.
enum Parser {
    Text(text::TextParser),
    Jsonl(jsonl::JsonlParser),
}

/// The file being read.
struct OpenFile {
    index: u32,
    path: PathBuf,
    lines: LineReader,
    compressed: Option<Arc<AtomicU64>>,
    /// Why a zstd file's readable part ends early (see [`check_zstd`]), reported when
    /// reading reaches that end.
    zstd_error: Option<PipelineError>,
    /// Lines longer than the cap are cut into pieces (plain text under `split`).
    split: bool,
    parser: Parser,
    line_no: u64,
    ordinal: u64,
    /// Documents with a smaller ordinal are read and dropped (see [`DocumentReader::seek`]).
    skip_to: u64,
    warnings: u32,
}

/// Accumulates documents into a documents record batch.
struct ChunkBuilder {
    schema: SchemaRef,
    doc_ids: Vec<u64>,
    sources: Vec<u32>,
    offsets: Vec<u64>,
    sentences: ListBuilder<StringBuilder>,
    text_bytes: usize,
    bad: BadRecordCounts,
}

impl ChunkBuilder {
    fn new() -> Result<Self> {
        let schema = documents::schema();
        let item = list_item(&schema, documents::SENTENCES)?;
        Ok(Self {
            schema,
            doc_ids: Vec::new(),
            sources: Vec::new(),
            offsets: Vec::new(),
            sentences: ListBuilder::new(StringBuilder::new()).with_field(item),
            text_bytes: 0,
            bad: BadRecordCounts::default(),
        })
    }

    fn push(&mut self, doc_id: u64, source: u32, doc: &Document) {
        self.doc_ids.push(doc_id);
        self.sources.push(source);
        self.offsets.push(doc.offset);
        for s in &doc.sentences {
            self.sentences.values().append_value(s);
            self.text_bytes += s.len();
        }
        self.sentences.append(true);
    }

    fn is_empty(&self) -> bool {
        self.doc_ids.is_empty() && self.bad.total() == 0
    }

    fn finish(&mut self) -> Result<DocumentChunk> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(std::mem::take(&mut self.doc_ids))),
            Arc::new(UInt32Array::from(std::mem::take(&mut self.sources))),
            Arc::new(UInt64Array::from(std::mem::take(&mut self.offsets))),
            Arc::new(self.sentences.finish()),
        ];
        self.text_bytes = 0;
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        Ok(DocumentChunk {
            batch,
            bad_records: std::mem::take(&mut self.bad),
        })
    }
}

/// Pull iterator over the documents of a list of files, in file order, as chunks of about
/// `chunk_bytes` of text. Documents are never split across chunks. After an error the
/// iterator ends.
pub struct DocumentReader {
    files: Vec<PathBuf>,
    /// Source index of each file (its position in the job's whole file list).
    indices: Vec<u32>,
    options: SourceOptions,
    next_file: usize,
    current: Option<OpenFile>,
    chunk: ChunkBuilder,
    line: Vec<u8>,
    /// Documents completed by the last line read, not yet pushed.
    ready: Vec<Document>,
    /// Documents emitted so far over all files.
    documents: u64,
    /// `(source index, ordinal)` where reading starts (see [`DocumentReader::seek`]).
    seek: Option<(u32, u64)>,
    done: bool,
}

impl DocumentReader {
    /// A reader over `files` (source index = position in the list).
    pub fn new(files: Vec<PathBuf>, options: SourceOptions) -> Result<Self> {
        let indices = (0..files.len())
            .map(|i| {
                u32::try_from(i).map_err(|_| PipelineError::InvalidConfig {
                    field: "files",
                    reason: "more than 2^32 files".into(),
                })
            })
            .collect::<Result<Vec<u32>>>()?;
        Self::with_source_indices(
            files
                .into_iter()
                .zip(indices)
                .map(|(f, i)| (i, f))
                .collect(),
            options,
        )
    }

    /// A reader over `(source index, file)` pairs: a part of a larger file list keeps the
    /// document ids the whole list would give.
    pub fn with_source_indices(files: Vec<(u32, PathBuf)>, options: SourceOptions) -> Result<Self> {
        let (indices, files) = files.into_iter().unzip();
        Ok(Self {
            files,
            indices,
            options,
            next_file: 0,
            current: None,
            chunk: ChunkBuilder::new()?,
            line: Vec::new(),
            ready: Vec::new(),
            documents: 0,
            seek: None,
            done: false,
        })
    }

    /// Starts reading at document `ordinal` (0-based) of the file whose source index is
    /// `source`: files before it are not opened, and its earlier documents are parsed and
    /// dropped, their bad records not counted again. This is how a resumed run continues
    /// a raw corpus; call it before the first chunk.
    pub fn seek(&mut self, source: u32, ordinal: u64) -> Result<()> {
        let Some(position) = self.indices.iter().position(|&i| i == source) else {
            return Err(PipelineError::InvalidConfig {
                field: "files",
                reason: format!(
                    "cannot resume at source file {source}: the run now reads {} files (was the file list changed?)",
                    self.files.len()
                ),
            });
        };
        self.next_file = position;
        self.current = None;
        self.seek = Some((source, ordinal));
        Ok(())
    }

    /// The documents schema of the batches.
    pub fn schema(&self) -> SchemaRef {
        documents::schema()
    }

    /// Documents emitted so far.
    pub fn documents_read(&self) -> u64 {
        self.documents
    }

    fn open(&self, index: usize) -> Result<OpenFile> {
        let path = self.files[index].clone();
        let file = File::open(&path).map_err(|source| PipelineError::Io {
            path: path.clone(),
            source,
        })?;
        let mut zstd_error = None;
        let (reader, compressed): (Box<dyn BufRead + Send>, _) = if is_zstd(&path) {
            let check = check_zstd(&path)?;
            zstd_error = check.error;
            let count = Arc::new(AtomicU64::new(0));
            let counting = CountingReader {
                inner: file,
                count: count.clone(),
            };
            let decoder = zstd::stream::read::Decoder::new(counting).map_err(|source| {
                PipelineError::Zstd {
                    path: path.clone(),
                    compressed_offset: 0,
                    source,
                }
            })?;
            (
                Box::new(BufReader::with_capacity(
                    READ_BUFFER,
                    decoder.take(check.readable),
                )),
                Some(count),
            )
        } else {
            (Box::new(BufReader::with_capacity(READ_BUFFER, file)), None)
        };
        let parser = match detect_format(&path, self.options.format) {
            SourceFormat::Jsonl => Parser::Jsonl(jsonl::JsonlParser::new(&self.options.text_field)),
            _ => Parser::Text(text::TextParser::default()),
        };
        let split = matches!(parser, Parser::Text(_))
            && self.options.oversized_lines == OversizedLinePolicy::Split;
        Ok(OpenFile {
            index: self.indices[index],
            path,
            lines: LineReader::new(reader),
            compressed,
            zstd_error,
            split,
            parser,
            line_no: 0,
            ordinal: 0,
            skip_to: match self.seek {
                Some((source, ordinal)) if source == self.indices[index] => ordinal,
                _ => 0,
            },
            warnings: 0,
        })
    }

    /// Reads from the current file until the chunk is full or the file ends. Returns
    /// whether the file ended.
    fn read_file(&mut self, file: &mut OpenFile) -> Result<bool> {
        let cap = self.options.max_doc_bytes;
        let policy = self.options.on_bad_record;
        // Bad records inside documents skipped by a seek were counted by the earlier run.
        let mut already_counted = BadRecordCounts::default();
        while self.chunk.text_bytes < self.options.chunk_bytes {
            let line = file.lines.next_line(&mut self.line, cap, file.split);
            let skipping = file.ordinal < file.skip_to;
            let mut ctx = FileContext {
                path: &file.path,
                policy,
                bad: if skipping {
                    &mut already_counted
                } else {
                    &mut self.chunk.bad
                },
                warnings: &mut file.warnings,
            };
            let mut ready = std::mem::take(&mut self.ready);
            let ended = match line {
                Err(source) => {
                    let Some(count) = &file.compressed else {
                        return Err(PipelineError::Io {
                            path: file.path.clone(),
                            source,
                        });
                    };
                    let error = PipelineError::Zstd {
                        path: file.path.clone(),
                        compressed_offset: count.load(Ordering::Relaxed),
                        source,
                    };
                    // The document in progress is incomplete and dropped.
                    ctx.bad_record(error, |b| b.unreadable_files += 1)?;
                    return Ok(true);
                }
                Ok(None) => {
                    if let Some(error) = file.zstd_error.take() {
                        // The readable part of a damaged zstd file ends here: the document
                        // in progress may be incomplete and is dropped.
                        ctx.bad_record(error, |b| b.unreadable_files += 1)?;
                        return Ok(true);
                    }
                    if let Parser::Text(p) = &mut file.parser {
                        ready.extend(p.finish(&mut ctx));
                    }
                    true
                }
                Ok(Some(info)) => {
                    if info.piece.is_none_or(|p| p.first) {
                        file.line_no += 1;
                    }
                    match &mut file.parser {
                        Parser::Text(p) => {
                            p.line(&self.line, info, file.line_no, cap, &mut ctx, &mut ready)?
                        }
                        Parser::Jsonl(p) => {
                            p.line(&self.line, info, file.line_no, cap, &mut ctx, &mut ready)?
                        }
                    }
                    false
                }
            };
            for doc in ready.drain(..) {
                self.push(file, &doc);
            }
            self.ready = ready;
            if ended {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn push(&mut self, file: &mut OpenFile, doc: &Document) {
        let doc_id = (u64::from(file.index) << 32) | (file.ordinal & 0xFFFF_FFFF);
        file.ordinal += 1;
        if file.ordinal <= file.skip_to {
            return;
        }
        self.documents += 1;
        self.chunk.push(doc_id, file.index, doc);
    }

    fn next_chunk(&mut self) -> Result<Option<DocumentChunk>> {
        loop {
            if self.chunk.text_bytes >= self.options.chunk_bytes {
                return self.chunk.finish().map(Some);
            }
            let mut file = match self.current.take() {
                Some(f) => f,
                None if self.next_file < self.files.len() => {
                    let f = self.open(self.next_file)?;
                    self.next_file += 1;
                    f
                }
                None => {
                    if self.chunk.is_empty() {
                        return Ok(None);
                    }
                    return self.chunk.finish().map(Some);
                }
            };
            let ended = self.read_file(&mut file)?;
            if !ended {
                self.current = Some(file);
            }
        }
    }
}

impl Iterator for DocumentReader {
    type Item = Result<DocumentChunk>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_chunk() {
            Ok(Some(chunk)) => Some(Ok(chunk)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Every sentence of a documents batch, in order, as owned strings (for tokenizer
/// training and other consumers that want plain text).
pub fn sentences(batch: &RecordBatch) -> Vec<String> {
    let Some(list) = batch
        .column_by_name(documents::SENTENCES)
        .and_then(|c| c.as_any().downcast_ref::<arrow_array::ListArray>())
    else {
        return Vec::new();
    };
    let Some(values) = list
        .values()
        .as_any()
        .downcast_ref::<arrow_array::StringArray>()
    else {
        return Vec::new();
    };
    let offsets = list.value_offsets();
    let (start, end) = match (offsets.first(), offsets.last()) {
        (Some(&a), Some(&b)) => (a as usize, b as usize),
        _ => return Vec::new(),
    };
    (start..end).map(|i| values.value(i).to_string()).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arrow_array::{Array, ListArray, StringArray};

    pub(crate) const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/corpus");

    pub(crate) fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    pub(crate) fn zstd_frame(bytes: &[u8]) -> Vec<u8> {
        zstd::encode_all(bytes, 3).unwrap()
    }

    /// A document as the tests see it: (doc_id, byte_offset, sentences).
    pub(crate) type Doc = (u64, u64, Vec<String>);

    /// All documents of `files`, plus the summed counts.
    pub(crate) fn read_all(
        files: Vec<PathBuf>,
        options: SourceOptions,
    ) -> Result<(Vec<Doc>, BadRecordCounts)> {
        let mut docs = Vec::new();
        let mut bad = BadRecordCounts::default();
        for chunk in DocumentReader::new(files, options)? {
            let chunk = chunk?;
            bad.add(&chunk.bad_records);
            let b = &chunk.batch;
            let ids = b.column(0).as_any().downcast_ref::<UInt64Array>().unwrap();
            let offs = b.column(2).as_any().downcast_ref::<UInt64Array>().unwrap();
            let sents = b.column(3).as_any().downcast_ref::<ListArray>().unwrap();
            for row in 0..b.num_rows() {
                let list = sents.value(row);
                let list = list.as_any().downcast_ref::<StringArray>().unwrap();
                let s: Vec<String> = (0..list.len()).map(|i| list.value(i).to_string()).collect();
                docs.push((ids.value(row), offs.value(row), s));
            }
        }
        Ok((docs, bad))
    }

    fn opts(policy: BadRecordPolicy) -> SourceOptions {
        SourceOptions {
            on_bad_record: policy,
            ..SourceOptions::default()
        }
    }

    #[test]
    fn blank_lines_separate_text_documents() {
        let dir = tempfile::tempdir().unwrap();
        let text = b"  First one.\r\nSecond.\n\n \n\t\nOther doc.\n\n";
        let f = write(dir.path(), "a.txt", text);
        let (docs, bad) = read_all(vec![f], opts(BadRecordPolicy::Fail)).unwrap();
        assert_eq!(
            docs,
            vec![
                (0, 0, vec!["First one.".to_string(), "Second.".to_string()]),
                (1, 27, vec!["Other doc.".to_string()]),
            ]
        );
        assert_eq!(bad.total(), 0);
    }

    #[test]
    fn multi_frame_zstd_is_read_through_all_frames() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = zstd_frame(b"frame one a\nframe one b\n\n");
        bytes.extend(zstd_frame(b"frame two\n"));
        let f = write(dir.path(), "multi.txt.zst", &bytes);
        let g = write(dir.path(), "plain.txt", b"third file\n");
        let (docs, _) = read_all(vec![f, g], opts(BadRecordPolicy::Fail)).unwrap();
        let ids: Vec<u64> = docs.iter().map(|d| d.0).collect();
        assert_eq!(ids, vec![0, 1, 1 << 32]);
        assert_eq!(docs[1].1, 25);
        assert_eq!(docs[1].2, vec!["frame two".to_string()]);
    }

    #[test]
    fn jsonl_uses_the_configured_field_and_splits_lines() {
        let dir = tempfile::tempdir().unwrap();
        let body = b"{\"body\": \"Line one.\\n\\n  Line two. \"}\n\n{\"body\": \"Solo\", \"text\": \"no\"}\n";
        let f = write(dir.path(), "d.jsonl", body);
        let options = SourceOptions {
            text_field: "body".into(),
            ..opts(BadRecordPolicy::Fail)
        };
        let (docs, _) = read_all(vec![f], options).unwrap();
        assert_eq!(
            docs[0].2,
            vec!["Line one.".to_string(), "Line two.".to_string()]
        );
        assert_eq!(docs[1].2, vec!["Solo".to_string()]);
        assert_eq!(docs[1].1, 39);
    }

    const BAD_JSONL: &[u8] = b"{\"text\": \"good\"}\n{\"text\": oops}\n{\"other\": 1}\n{\"text\": \"\\u00e9\xff\"}\n{\"text\": \" \"}\n{\"text\": \"also good\"}\n";

    #[test]
    fn bad_jsonl_records_are_counted_under_skip() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "bad.jsonl", BAD_JSONL);
        let (docs, bad) = read_all(vec![f], opts(BadRecordPolicy::Skip)).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].0, docs[1].0), (0, 1));
        assert_eq!(
            bad,
            BadRecordCounts {
                invalid_utf8: 1,
                malformed_json: 1,
                missing_text_field: 1,
                empty_documents: 1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn malformed_json_fails_naming_file_and_line_under_fail() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "bad.jsonl", BAD_JSONL);
        let err = read_all(vec![f.clone()], opts(BadRecordPolicy::Fail)).unwrap_err();
        assert!(
            matches!(err, PipelineError::Json { line: 2, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with(&format!("{}:2:", f.display())),
            "{err}"
        );
    }

    #[test]
    fn invalid_utf8_and_oversized_lines_are_skipped_or_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let long = "x".repeat(100);
        let text = format!("ok line\n{long}\nbad \u{1}\n\nnext\n");
        let mut bytes = text.into_bytes();
        let bad_at = bytes.iter().position(|&b| b == 1).unwrap();
        bytes[bad_at] = 0xff;
        let f = write(dir.path(), "t.txt", &bytes);
        let small = |policy| SourceOptions {
            max_doc_bytes: 50,
            ..opts(policy)
        };
        let (docs, bad) = read_all(vec![f.clone()], small(BadRecordPolicy::Skip)).unwrap();
        assert_eq!(
            docs.iter().map(|d| d.2.clone()).collect::<Vec<_>>(),
            vec![vec!["ok line".to_string()], vec!["next".to_string()]]
        );
        assert_eq!((bad.oversized_lines, bad.invalid_utf8), (1, 1));
        let err = read_all(vec![f], small(BadRecordPolicy::Fail)).unwrap_err();
        assert!(
            matches!(
                err,
                PipelineError::DocumentTooLarge {
                    line: 2,
                    byte_offset: 8,
                    limit: 50,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_document_of_only_bad_lines_counts_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "t.txt", b"a\n\n\xff\xfe\n\nb\n");
        let (docs, bad) = read_all(vec![f], opts(BadRecordPolicy::Skip)).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!((bad.invalid_utf8, bad.empty_documents), (1, 1));
    }

    fn corrupt_zstd(dir: &Path) -> PathBuf {
        let mut bytes = zstd_frame(b"kept doc\n\n");
        let second = zstd_frame(&"lost doc line\n".repeat(1000).into_bytes());
        bytes.extend_from_slice(&second[..second.len() / 2]); // truncated frame
        write(dir, "corrupt.txt.zst", &bytes)
    }

    #[test]
    fn a_corrupt_zstd_file_fails_naming_it_under_fail() {
        let dir = tempfile::tempdir().unwrap();
        let f = corrupt_zstd(dir.path());
        let err = read_all(vec![f.clone()], opts(BadRecordPolicy::Fail)).unwrap_err();
        assert!(
            matches!(err, PipelineError::Zstd { compressed_offset, .. } if compressed_offset > 0),
            "{err:?}"
        );
        assert!(err.to_string().contains(&f.display().to_string()), "{err}");
        // A plain file named .zst, too.
        let g = write(dir.path(), "plain.txt.zst", b"not zstd at all\n");
        let err = read_all(vec![g], opts(BadRecordPolicy::Fail)).unwrap_err();
        assert!(matches!(err, PipelineError::Zstd { .. }), "{err:?}");
    }

    #[test]
    fn a_corrupt_zstd_file_is_counted_and_skipped_under_skip() {
        let dir = tempfile::tempdir().unwrap();
        let f = corrupt_zstd(dir.path());
        let g = write(dir.path(), "after.txt", b"after\n");
        let (docs, bad) = read_all(vec![f, g], opts(BadRecordPolicy::Skip)).unwrap();
        let texts: Vec<Vec<String>> = docs.into_iter().map(|d| d.2).collect();
        assert_eq!(
            texts,
            vec![vec!["kept doc".to_string()], vec!["after".to_string()]]
        );
        assert_eq!(bad.unreadable_files, 1);
    }

    #[test]
    fn missing_files_and_empty_globs_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.txt").display().to_string();
        let err = expand_files(std::slice::from_ref(&missing)).unwrap_err();
        assert!(matches!(err, PipelineError::Io { .. }));
        assert!(err.to_string().contains(&missing), "{err}");
        let pattern = dir.path().join("*.jsonl").display().to_string();
        let err = expand_files(std::slice::from_ref(&pattern)).unwrap_err();
        assert!(matches!(err, PipelineError::NoFiles { pattern: ref p } if *p == pattern));
    }

    #[test]
    fn globs_are_sorted_and_duplicates_removed() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.txt", "a.txt", "c.txt"] {
            write(dir.path(), name, b"x\n");
        }
        let c = dir.path().join("c.txt").display().to_string();
        let glob = dir.path().join("*.txt").display().to_string();
        let files = expand_files(&[c.clone(), glob]).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["c.txt", "a.txt", "b.txt"]);
    }

    #[test]
    fn formats_are_detected_by_extension() {
        for (name, format) in [
            ("a.jsonl.zst", SourceFormat::Jsonl),
            ("a.ndjson", SourceFormat::Jsonl),
            ("a.JSON.zst", SourceFormat::Jsonl),
            ("a.txt.zst", SourceFormat::Text),
            ("a", SourceFormat::Text),
        ] {
            assert_eq!(
                detect_format(Path::new(name), SourceFormat::Auto),
                format,
                "{name}"
            );
        }
        assert_eq!(
            detect_format(Path::new("a.txt"), SourceFormat::Jsonl),
            SourceFormat::Jsonl
        );
    }

    #[test]
    fn chunking_never_splits_documents_and_loses_nothing() {
        let files = vec![
            PathBuf::from(CORPUS).join("moby_dick.txt.zst"),
            PathBuf::from(CORPUS).join("sotu.jsonl.zst"),
        ];
        let (whole, bad_whole) = read_all(
            files.clone(),
            SourceOptions {
                chunk_bytes: usize::MAX,
                ..Default::default()
            },
        )
        .unwrap();
        let small = SourceOptions {
            chunk_bytes: 4096,
            ..Default::default()
        };
        let mut chunks = 0;
        for chunk in DocumentReader::new(files.clone(), small.clone()).unwrap() {
            let chunk = chunk.unwrap();
            assert!(chunk.batch.num_rows() > 0);
            chunks += 1;
        }
        let (split, bad_split) = read_all(files, small).unwrap();
        assert!(chunks > 10, "{chunks}");
        assert!(whole.len() > 100, "{}", whole.len());
        assert_eq!(whole, split);
        assert_eq!(bad_whole, bad_split);
        assert!(whole.iter().any(|d| d.0 >> 32 == 1));
    }

    #[test]
    fn a_line_buffer_never_exceeds_the_cap() {
        let data = format!("{}\nshort\n", "y".repeat(10_000));
        let mut lines = LineReader::new(Box::new(BufReader::with_capacity(
            64,
            io::Cursor::new(data.into_bytes()),
        )));
        let mut buf = Vec::new();
        let first = lines.next_line(&mut buf, 100, false).unwrap().unwrap();
        assert!(first.oversized && buf.is_empty() && buf.capacity() < 1000);
        let second = lines.next_line(&mut buf, 100, false).unwrap().unwrap();
        assert_eq!(
            (second.offset, buf.as_slice()),
            (10_001, b"short".as_slice())
        );
        assert!(lines.next_line(&mut buf, 100, false).unwrap().is_none());
    }

    /// `n` documents of two sentences each, as plain text, and the sentences expected.
    fn numbered_docs(n: usize) -> (Vec<u8>, Vec<Vec<String>>) {
        let mut text = String::new();
        let mut docs = Vec::new();
        for i in 0..n {
            let a = format!("Document {i} opens with sentence {}.", i * 7919 % 1000);
            let b = format!("It closes with {} more words.", i * 104_729 % 997);
            text.push_str(&format!("{a}\n{b}\n\n"));
            docs.push(vec![a, b]);
        }
        (text.into_bytes(), docs)
    }

    fn texts(docs: Vec<Doc>) -> Vec<Vec<String>> {
        docs.into_iter().map(|d| d.2).collect()
    }

    #[test]
    fn a_zstd_file_cut_in_half_is_counted_or_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let (text, expected) = numbered_docs(20_000);
        let whole = zstd_frame(&text);
        let cut = &whole[..whole.len() / 2];
        let f = write(dir.path(), "cut.txt.zst", cut);
        let g = write(dir.path(), "after.txt", b"after\n");
        // skip: the text decoded before the cut comes through (zstd emits whole blocks
        // only, so it is intact), the document the cut falls in is dropped, the file is
        // counted and the next file is read.
        let (docs, bad) = read_all(vec![f.clone(), g], opts(BadRecordPolicy::Skip)).unwrap();
        let docs = texts(docs);
        let (last, kept) = docs.split_last().unwrap();
        assert_eq!(last, &vec!["after".to_string()]);
        assert!(
            kept.len() > 1000 && kept.len() < expected.len(),
            "{}",
            kept.len()
        );
        assert_eq!(kept, &expected[..kept.len()], "a prefix, intact");
        assert_eq!(
            bad,
            BadRecordCounts {
                unreadable_files: 1,
                ..Default::default()
            }
        );
        // fail: an error naming the file and the compressed offset of the cut.
        let err = read_all(vec![f.clone()], opts(BadRecordPolicy::Fail)).unwrap_err();
        assert!(
            matches!(err, PipelineError::Zstd { compressed_offset, .. } if compressed_offset == cut.len() as u64),
            "{err:?}"
        );
        assert!(err.to_string().contains(&f.display().to_string()), "{err}");
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn a_flipped_byte_in_a_checksummed_zstd_frame_is_detected_and_none_of_its_text_is_read() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let checksummed = |bytes: &[u8]| {
            let mut encoder = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
            encoder.include_checksum(true).unwrap();
            encoder.write_all(bytes).unwrap();
            encoder.finish().unwrap()
        };
        // A first frame that stays intact, then a multi-block frame that gets damaged.
        let (first_text, first_docs) = numbered_docs(10);
        let (text, _) = numbered_docs(20_000);
        let first = checksummed(&first_text);
        let frame = checksummed(&text);
        assert!(frame.len() > 50_000, "{} bytes", frame.len());
        let g = write(dir.path(), "after.txt", b"after\n");
        let mut detected = 0;
        // Positions across the payload (past the frame header, before the checksum).
        for k in 1..16 {
            let at = frame.len() * k / 16;
            let mut bytes = first.clone();
            let mut damaged = frame.clone();
            damaged[at] ^= 0x10;
            bytes.extend_from_slice(&damaged);
            let f = write(dir.path(), "flipped.txt.zst", &bytes);
            let (docs, bad) =
                read_all(vec![f.clone(), g.clone()], opts(BadRecordPolicy::Skip)).unwrap();
            let mut expected = first_docs.clone();
            expected.push(vec!["after".to_string()]);
            assert_eq!(
                texts(docs),
                expected,
                "flip at {at}: no text of the damaged frame"
            );
            assert_eq!(bad.unreadable_files, 1, "flip at {at}");
            let err = read_all(vec![f.clone()], opts(BadRecordPolicy::Fail)).unwrap_err();
            assert!(
                matches!(err, PipelineError::Zstd { compressed_offset, .. } if compressed_offset >= first.len() as u64),
                "flip at {at}: {err:?}"
            );
            assert!(err.to_string().contains(&f.display().to_string()), "{err}");
            detected += 1;
        }
        assert_eq!(detected, 15);
    }

    #[test]
    fn a_plain_file_named_zst_is_counted_or_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "plain.txt.zst",
            b"not zstd at all\n\nsecond doc\n",
        );
        let g = write(dir.path(), "after.txt", b"after\n");
        let (docs, bad) = read_all(vec![f.clone(), g], opts(BadRecordPolicy::Skip)).unwrap();
        assert_eq!(texts(docs), vec![vec!["after".to_string()]]);
        assert_eq!(
            bad,
            BadRecordCounts {
                unreadable_files: 1,
                ..Default::default()
            }
        );
        let err = read_all(vec![f.clone()], opts(BadRecordPolicy::Fail)).unwrap_err();
        assert!(
            matches!(
                err,
                PipelineError::Zstd {
                    compressed_offset: 0,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains(&f.display().to_string()), "{err}");
        // An empty file named .zst holds no frame and no text: not an error.
        let e = write(dir.path(), "empty.txt.zst", b"");
        let (docs, bad) = read_all(vec![e], opts(BadRecordPolicy::Fail)).unwrap();
        assert!(docs.is_empty() && bad.total() == 0);
    }

    #[test]
    fn invalid_utf8_is_counted_or_fatal_naming_line_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let text = write(
            dir.path(),
            "t.txt",
            b"good one\n\nbad \xc3\x28 line\nkept\n\nlast\n",
        );
        let jsonl = write(
            dir.path(),
            "j.jsonl",
            b"{\"text\": \"good\"}\n{\"text\": \"bad \xc3\x28\"}\n{\"text\": \"last\"}\n",
        );
        let (docs, bad) = read_all(vec![text.clone()], opts(BadRecordPolicy::Skip)).unwrap();
        assert_eq!(
            texts(docs),
            vec![
                vec!["good one".to_string()],
                vec!["kept".to_string()],
                vec!["last".to_string()]
            ]
        );
        assert_eq!(bad.invalid_utf8, 1);
        let (docs, bad) = read_all(vec![jsonl.clone()], opts(BadRecordPolicy::Skip)).unwrap();
        assert_eq!(
            texts(docs),
            vec![vec!["good".to_string()], vec!["last".to_string()]]
        );
        assert_eq!(bad.invalid_utf8, 1);
        for (file, line, offset) in [(&text, 3, 10), (&jsonl, 2, 17)] {
            let err = read_all(vec![file.clone()], opts(BadRecordPolicy::Fail)).unwrap_err();
            assert!(
                matches!(err, PipelineError::InvalidUtf8 { line: l, byte_offset: o, .. } if l == line && o == offset),
                "{err:?}"
            );
            assert!(
                err.to_string()
                    .starts_with(&format!("{}:{line}:", file.display())),
                "{err}"
            );
        }
    }

    #[test]
    fn empty_and_whitespace_documents_are_counted_not_emitted() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = write(
            dir.path(),
            "e.jsonl",
            b"{\"text\": \"\"}\n{\"text\": \"   \"}\n{\"text\": \"\\n \\t\\n\"}\n{\"text\": \"real\"}\n",
        );
        // In plain text a whitespace-only line is a blank line: whitespace "documents"
        // are one longer boundary and there is nothing to count.
        let text = write(
            dir.path(),
            "e.txt",
            "one\n\n   \n\t \n\u{a0}\n\ntwo\n  \n".as_bytes(),
        );
        for policy in [BadRecordPolicy::Skip, BadRecordPolicy::Fail] {
            let (docs, bad) = read_all(vec![jsonl.clone()], opts(policy)).unwrap();
            assert_eq!(texts(docs), vec![vec!["real".to_string()]]);
            assert_eq!(
                bad,
                BadRecordCounts {
                    empty_documents: 3,
                    ..Default::default()
                }
            );
            let (docs, bad) = read_all(vec![text.clone()], opts(policy)).unwrap();
            assert_eq!(
                texts(docs),
                vec![vec!["one".to_string()], vec!["two".to_string()]]
            );
            assert_eq!(bad.total(), 0);
        }
    }

    #[test]
    fn a_text_field_of_another_type_or_missing_is_counted_or_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let lines = [
            "{\"text\": 42}",
            "{\"text\": null}",
            "{\"text\": [\"a\", \"b\"]}",
            "{\"text\": {\"inner\": \"x\"}}",
            "{\"body\": \"no text field\"}",
            "[\"not\", \"an\", \"object\"]",
            "\"a bare string\"",
        ];
        let mut body = String::from("{\"text\": \"first\"}\n");
        for l in lines {
            body.push_str(l);
            body.push('\n');
        }
        body.push_str("{\"text\": \"last\"}\n");
        let f = write(dir.path(), "types.jsonl", body.as_bytes());
        let (docs, bad) = read_all(vec![f.clone()], opts(BadRecordPolicy::Skip)).unwrap();
        assert_eq!(
            texts(docs),
            vec![vec!["first".to_string()], vec!["last".to_string()]]
        );
        assert_eq!(
            bad,
            BadRecordCounts {
                missing_text_field: lines.len() as u64,
                ..Default::default()
            }
        );
        // Each kind alone fails under fail, naming its file and line.
        for (i, l) in lines.iter().enumerate() {
            let g = write(
                dir.path(),
                &format!("one-{i}.jsonl"),
                format!("{{\"text\": \"ok\"}}\n{l}\n").as_bytes(),
            );
            let err = read_all(vec![g.clone()], opts(BadRecordPolicy::Fail)).unwrap_err();
            assert!(
                matches!(err, PipelineError::MissingTextField { line: 2, .. }),
                "{l}: {err:?}"
            );
            assert!(
                err.to_string().starts_with(&format!("{}:2:", g.display())),
                "{err}"
            );
        }
    }

    fn split_opts(policy: BadRecordPolicy, cap: usize) -> SourceOptions {
        SourceOptions {
            max_doc_bytes: cap,
            oversized_lines: OversizedLinePolicy::Split,
            ..opts(policy)
        }
    }

    #[test]
    fn split_cuts_an_oversized_text_line_at_whitespace_into_documents() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "s.txt",
            b"before\nthe quick brown fox jumps over the lazy dog\nafter\n\nnext\n",
        );
        for policy in [BadRecordPolicy::Skip, BadRecordPolicy::Fail] {
            let (docs, bad) = read_all(vec![f.clone()], split_opts(policy, 16)).unwrap();
            let s = |t: &str| vec![t.to_string()];
            assert_eq!(
                docs,
                vec![
                    (0, 0, s("before")),
                    (1, 7, s("the quick brown")),
                    (2, 23, s("fox jumps over")),
                    (3, 38, s("the lazy dog")),
                    (4, 51, s("after")),
                    (5, 58, s("next")),
                ]
            );
            assert_eq!(
                bad,
                BadRecordCounts {
                    split_lines: 1,
                    ..Default::default()
                }
            );
        }
    }

    #[test]
    fn a_document_without_blank_lines_is_cut_at_max_doc_bytes_and_keeps_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let lines: Vec<String> = (0..1000)
            .map(|i| format!("line {i:04} {}", "x".repeat(90)))
            .collect();
        let f = write(
            dir.path(),
            "one-doc.txt",
            (lines.join("\n") + "\n").as_bytes(),
        );
        let options = SourceOptions {
            max_doc_bytes: 2000,
            ..opts(BadRecordPolicy::Fail)
        };
        let (docs, bad) = read_all(vec![f], options).unwrap();
        // Each document holds at most max_doc_bytes of text plus the line that crossed it;
        // every document that reached the cap was cut (and counted) there.
        let mut cut = 0;
        for (_, _, sentences) in &docs {
            let bytes: usize = sentences.iter().map(String::len).sum();
            assert!(bytes < 2000 + 100, "{bytes}");
            cut += u64::from(bytes >= 2000);
        }
        assert_eq!(docs.len(), 50, "1000 lines of 100 bytes, 20 a document");
        assert_eq!(bad.split_documents, cut);
        let all: Vec<String> = docs.into_iter().flat_map(|d| d.2).collect();
        assert_eq!(all, lines, "every line kept, in order");
    }

    #[test]
    fn split_never_cuts_a_utf8_character_and_keeps_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        // No whitespace: cuts fall on character boundaries. CRLF lines of exactly the cap
        // are not split.
        let f = write(
            dir.path(),
            "u.txt",
            "ééééé\n\n😀😀😀\n\nabcd\r\n".as_bytes(),
        );
        let (docs, bad) = read_all(vec![f], split_opts(BadRecordPolicy::Fail, 5)).unwrap();
        assert_eq!(
            texts(docs),
            vec![
                vec!["éé".to_string()],
                vec!["éé".to_string()],
                vec!["é".to_string()],
                vec!["😀".to_string()],
                vec!["😀".to_string()],
                vec!["😀".to_string()],
                vec!["abcd".to_string()],
            ]
        );
        assert_eq!(bad.split_lines, 2);
        // A line of many pieces: every piece within the cap, nothing lost.
        let dir = tempfile::tempdir().unwrap();
        let words: Vec<String> = (0..5000).map(|i| format!("w{}", i * 37 % 1009)).collect();
        let line = words.join(" ");
        let f = write(dir.path(), "long.txt", format!("{line}\n").as_bytes());
        let (docs, bad) = read_all(vec![f], split_opts(BadRecordPolicy::Fail, 100)).unwrap();
        let pieces: Vec<String> = docs.into_iter().flat_map(|d| d.2).collect();
        assert!(pieces.iter().all(|p| p.len() <= 100 && p.len() >= 50));
        assert_eq!(pieces.join(" "), line);
        assert_eq!(bad.split_lines, 1);
    }

    #[test]
    fn an_oversized_jsonl_line_is_rejected_even_under_split() {
        let dir = tempfile::tempdir().unwrap();
        let long = "y ".repeat(100);
        let f = write(
            dir.path(),
            "o.jsonl",
            format!("{{\"text\": \"short\"}}\n{{\"text\": \"{long}\"}}\n{{\"text\": \"end\"}}\n")
                .as_bytes(),
        );
        let (docs, bad) = read_all(vec![f.clone()], split_opts(BadRecordPolicy::Skip, 50)).unwrap();
        assert_eq!(
            texts(docs),
            vec![vec!["short".to_string()], vec!["end".to_string()]]
        );
        assert_eq!(
            bad,
            BadRecordCounts {
                oversized_lines: 1,
                ..Default::default()
            }
        );
        let err = read_all(vec![f.clone()], split_opts(BadRecordPolicy::Fail, 50)).unwrap_err();
        assert!(
            matches!(
                err,
                PipelineError::DocumentTooLarge {
                    line: 2,
                    byte_offset: 18,
                    limit: 50,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with(&format!("{}:2:", f.display())),
            "{err}"
        );
    }
}
