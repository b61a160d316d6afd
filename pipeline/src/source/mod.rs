//! Sources: corpus files (plain text or JSONL, optionally zstd-compressed) streamed into
//! Arrow record batches of documents ([`electra_schemas::documents`]).
//!
//! Files are never decompressed whole: each is read through a counting reader (for the
//! compressed offset of a decoding error), a streaming zstd decoder when the name ends in
//! `.zst` (concatenated frames are read in turn) and a line reader whose buffer is capped at
//! `max_doc_bytes`.

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
use crate::config::{BadRecordPolicy, DataConfig, SourceFormat};
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
    /// Lines longer than `max_doc_bytes`.
    pub oversized_lines: u64,
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
        self.unreadable_files += other.unreadable_files;
    }

    /// All bad records together.
    pub fn total(&self) -> u64 {
        self.invalid_utf8
            + self.malformed_json
            + self.missing_text_field
            + self.empty_documents
            + self.oversized_lines
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

/// One line as the line reader returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineInfo {
    /// Decompressed offset of the line's first byte.
    pub offset: u64,
    /// The line was longer than the cap; the buffer holds nothing.
    pub oversized: bool,
}

/// Reads lines with a buffer capped at `max_doc_bytes`, tracking the decompressed offset.
struct LineReader {
    inner: Box<dyn BufRead + Send>,
    offset: u64,
}

impl LineReader {
    /// Reads the next line into `buf` without its `\n` / `\r\n`. A line longer than `cap`
    /// is consumed up to its newline without being buffered and comes back `oversized`.
    fn next_line(&mut self, buf: &mut Vec<u8>, cap: usize) -> io::Result<Option<LineInfo>> {
        buf.clear();
        let start = self.offset;
        let mut oversized = false;
        let mut any = false;
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
            if !oversized {
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
        }))
    }
}

/// A document as a parser emits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Document {
    /// Decompressed offset of the document's first line.
    pub offset: u64,
    /// Trimmed, non-empty sentences.
    pub sentences: Vec<String>,
}

/// What reading one line produced.
pub(crate) enum LineOutcome {
    /// Nothing to emit yet.
    Nothing,
    /// A complete document.
    Document(Document),
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
        let (reader, compressed): (Box<dyn BufRead + Send>, _) = if is_zstd(&path) {
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
                Box::new(BufReader::with_capacity(READ_BUFFER, decoder)),
                Some(count),
            )
        } else {
            (Box::new(BufReader::with_capacity(READ_BUFFER, file)), None)
        };
        let parser = match detect_format(&path, self.options.format) {
            SourceFormat::Jsonl => Parser::Jsonl(jsonl::JsonlParser::new(&self.options.text_field)),
            _ => Parser::Text(text::TextParser::default()),
        };
        Ok(OpenFile {
            index: self.indices[index],
            path,
            lines: LineReader {
                inner: reader,
                offset: 0,
            },
            compressed,
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
            let line = file.lines.next_line(&mut self.line, cap);
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
            let (outcome, ended) = match line {
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
                    let doc = match &mut file.parser {
                        Parser::Text(p) => p.finish(&mut ctx),
                        Parser::Jsonl(_) => None,
                    };
                    (
                        doc.map_or(LineOutcome::Nothing, LineOutcome::Document),
                        true,
                    )
                }
                Ok(Some(info)) => {
                    file.line_no += 1;
                    let outcome = match &mut file.parser {
                        Parser::Text(p) => p.line(&self.line, info, file.line_no, cap, &mut ctx)?,
                        Parser::Jsonl(p) => {
                            p.line(&self.line, info, file.line_no, cap, &mut ctx)?
                        }
                    };
                    (outcome, false)
                }
            };
            if let LineOutcome::Document(doc) = outcome {
                self.push(file, &doc);
            }
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
        let mut lines = LineReader {
            inner: Box::new(BufReader::with_capacity(
                64,
                io::Cursor::new(data.into_bytes()),
            )),
            offset: 0,
        };
        let mut buf = Vec::new();
        let first = lines.next_line(&mut buf, 100).unwrap().unwrap();
        assert!(first.oversized && buf.is_empty() && buf.capacity() < 1000);
        let second = lines.next_line(&mut buf, 100).unwrap().unwrap();
        assert_eq!(
            (second.offset, buf.as_slice()),
            (10_001, b"short".as_slice())
        );
        assert!(lines.next_line(&mut buf, 100).unwrap().is_none());
    }
}
