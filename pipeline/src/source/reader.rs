//! The document reader: the documents of a list of files, in file order, as chunks of
//! about `chunk_bytes` of text ([`electra_schemas::documents`] record batches), each file
//! read through its byte source, codec and record format.

use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch, UInt32Array, UInt64Array};
use arrow_schema::SchemaRef;
use electra_schemas::documents;

use super::byte_source::byte_source;
use super::format::{record_format, Document, FileContext, RecordReader};
use super::location::Location;
use super::{BadRecordCounts, DocumentChunk, SourceOptions};
use crate::arrow_util::list_item;
use crate::error::{PipelineError, Result};

/// The file being read.
struct OpenFile {
    /// Source index (position in the job's whole file list).
    index: u32,
    path: PathBuf,
    records: Box<dyn RecordReader>,
    /// Documents of the file emitted or skipped so far.
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
    files: Vec<Location>,
    /// Source index of each file (its position in the job's whole file list).
    indices: Vec<u32>,
    options: SourceOptions,
    next_file: usize,
    current: Option<OpenFile>,
    chunk: ChunkBuilder,
    /// Documents completed by the last record read, not yet pushed.
    ready: Vec<Document>,
    /// Documents emitted so far over all files.
    documents: u64,
    /// `(source index, ordinal)` where reading starts (see [`DocumentReader::seek`]).
    seek: Option<(u32, u64)>,
    done: bool,
}

/// Source indices `0..n`.
fn source_indices(n: usize) -> Result<Vec<u32>> {
    (0..n)
        .map(|i| {
            u32::try_from(i).map_err(|_| PipelineError::InvalidConfig {
                field: "files",
                reason: "more than 2^32 files".into(),
            })
        })
        .collect()
}

impl DocumentReader {
    /// A reader over `files` (source index = position in the list; a URL carried as a
    /// path is read as one, see [`Location`]).
    pub fn new(files: Vec<PathBuf>, options: SourceOptions) -> Result<Self> {
        Self::from_locations(files.into_iter().map(Location::from).collect(), options)
    }

    /// A reader over `locations` (source index = position in the list).
    pub fn from_locations(locations: Vec<Location>, options: SourceOptions) -> Result<Self> {
        let indices = source_indices(locations.len())?;
        Self::with_locations(indices.into_iter().zip(locations).collect(), options)
    }

    /// A reader over `(source index, file)` pairs: a part of a larger file list keeps the
    /// document ids the whole list would give.
    pub fn with_source_indices(files: Vec<(u32, PathBuf)>, options: SourceOptions) -> Result<Self> {
        let locations = files
            .into_iter()
            .map(|(i, path)| (i, Location::from(path)))
            .collect();
        Self::with_locations(locations, options)
    }

    /// [`with_source_indices`](Self::with_source_indices) over locations.
    pub fn with_locations(files: Vec<(u32, Location)>, options: SourceOptions) -> Result<Self> {
        let (indices, files) = files.into_iter().unzip();
        Ok(Self {
            files,
            indices,
            options,
            next_file: 0,
            current: None,
            chunk: ChunkBuilder::new()?,
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
        let location = &self.files[index];
        let source = byte_source(location)?;
        let records = record_format(location, &self.options).open(&*source, location)?;
        Ok(OpenFile {
            index: self.indices[index],
            path: location.to_path_buf(),
            records,
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
        let policy = self.options.on_bad_record;
        // Bad records inside documents skipped by a seek were counted by the earlier run.
        let mut already_counted = BadRecordCounts::default();
        while self.chunk.text_bytes < self.options.chunk_bytes {
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
            let more = file.records.read_record(&mut ctx, &mut ready)?;
            for doc in ready.drain(..) {
                self.push(file, &doc);
            }
            self.ready = ready;
            if !more {
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
