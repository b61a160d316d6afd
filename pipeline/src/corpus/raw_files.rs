//! Raw corpus files as a [`DocumentSource`], tokenized by the loader's workers. With
//! `shuffle` (the default) every epoch reads the files in its own order and permutes the
//! documents within blocks of `shuffle_window` ([`ShuffledEpoch`]); without it the files
//! are read in the given order, every epoch. A slice keeps the documents at positions
//! `p % count == index` (every slice's reader parses all the files; see [`crate::slice`]).

use std::path::PathBuf;

use super::raw_shuffle::ShuffledEpoch;
use super::shuffle::file_order;
use super::{DocumentSource, EpochStream, PositionedChunk, Seek};
use crate::config::{BadRecordPolicy, DataConfig};
use crate::error::{PipelineError, Result};
use crate::slice::DataSlice;
use crate::source::{check_compressed, expand_locations, DocumentReader, Location, SourceOptions};

/// Text or JSONL files, shuffled or in order.
#[derive(Debug, Clone)]
pub struct RawFiles {
    files: Vec<Location>,
    options: SourceOptions,
    slice: DataSlice,
    /// The seed of the shuffle, with documents per shuffle block; `None`: in order.
    shuffle: Option<(u64, usize)>,
}

impl RawFiles {
    /// The files of `config` (expanded; a missing one fails here, naming it), shuffled
    /// from `seed` when `config.shuffle`. Under `on_bad_record = "fail"` every compressed
    /// file is checked here too, on the loader's worker count of threads, so a damaged one
    /// fails before any is read.
    pub fn open(config: &DataConfig, seed: u64, slice: DataSlice) -> Result<Self> {
        let options = SourceOptions::from_config(config);
        crate::source::object_store::configure_retries(options.retry);
        let files = expand_locations(&config.files)?;
        if options.on_bad_record == BadRecordPolicy::Fail {
            check_compressed(&files, config.worker_threads())?;
        }
        Ok(Self {
            files,
            options,
            slice,
            shuffle: config
                .shuffle
                .then_some((seed, config.shuffle_window.max(1))),
        })
    }

    /// The files, in reading order.
    pub fn files(&self) -> Vec<PathBuf> {
        self.files.iter().map(Location::to_path_buf).collect()
    }
}

impl DocumentSource for RawFiles {
    fn epoch(&mut self, epoch: u64, seek: Option<Seek>) -> Result<Box<dyn EpochStream + '_>> {
        let Some((seed, window)) = self.shuffle else {
            return self.in_order(seek);
        };
        let order = file_order(seed, epoch, self.files.len());
        let files = order
            .iter()
            .map(|&i| (i, self.files[i as usize].clone()))
            .collect();
        // One document a chunk: each document comes with the bad records met just before
        // it, so a block's bad records do not depend on how the files are chunked.
        let options = SourceOptions {
            chunk_bytes: 1,
            ..self.options.clone()
        };
        let mut reader = DocumentReader::with_locations(files, options)?;
        if let Some(seek) = seek {
            // The first document of the cursor's shuffle block.
            reader.seek((seek.doc_id >> 32) as u32, seek.doc_id & 0xFFFF_FFFF)?;
        }
        Ok(Box::new(ShuffledEpoch::new(
            reader,
            &self.files,
            self.slice,
            (seed, epoch),
            window,
            self.options.chunk_bytes,
            seek.map(|s| s.document),
        )))
    }
}

impl RawFiles {
    /// An epoch reading the files in the given order.
    fn in_order(&self, seek: Option<Seek>) -> Result<Box<dyn EpochStream + '_>> {
        let mut reader = DocumentReader::from_locations(self.files.clone(), self.options.clone())?;
        if let Some(seek) = seek {
            reader.seek((seek.doc_id >> 32) as u32, seek.doc_id & 0xFFFF_FFFF)?;
        }
        Ok(Box::new(RawEpoch {
            reader,
            files: &self.files,
            slice: self.slice,
            next_position: seek.map_or(0, |s| s.document),
            seen: 0,
        }))
    }
}

/// One epoch of [`RawFiles`].
struct RawEpoch<'a> {
    reader: DocumentReader,
    files: &'a [Location],
    slice: DataSlice,
    /// Position in the epoch of the next document read.
    next_position: u64,
    /// Documents of the whole stream read this epoch.
    seen: u64,
}

impl EpochStream for RawEpoch<'_> {
    fn next_chunk(&mut self) -> Option<Result<PositionedChunk>> {
        loop {
            let chunk = match self.reader.next()? {
                Ok(chunk) => chunk,
                Err(e) => return Some(Err(e)),
            };
            let position = self.next_position;
            let documents = chunk.batch.num_rows() as u64;
            self.next_position += documents;
            self.seen += documents;
            // Raw documents are dealt one by one; a chunk with none of the slice's
            // documents and nothing to count is passed over.
            match self.slice.select_documents(chunk, position) {
                Ok(None) => continue,
                Ok(Some((first_document, chunk))) => {
                    return Some(Ok(PositionedChunk {
                        first_document,
                        stride: self.slice.count as u64,
                        chunk,
                        rows: None,
                        seek_id: None,
                    }))
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }

    fn nothing_read(self: Box<Self>) -> PipelineError {
        nothing_read(self.files, self.slice, self.seen)
    }
}

/// The error of an epoch of `files` that gave `slice` no document, having read `seen`
/// documents of the whole stream.
pub(super) fn nothing_read(files: &[Location], slice: DataSlice, seen: u64) -> PipelineError {
    if seen == 0 {
        return PipelineError::EmptyCorpus {
            files: files.iter().map(Location::to_path_buf).collect(),
        };
    }
    PipelineError::EmptySlice {
        index: slice.index,
        count: slice.count,
        available: seen,
        unit: "documents",
    }
}
