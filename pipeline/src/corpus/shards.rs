//! Parquet shards as a [`DocumentSource`]: tokenized documents, the shard order and
//! documents shuffled per epoch ([`ShardStream`]); a slice reads only its shuffle blocks.

use std::collections::HashSet;
use std::path::PathBuf;

use super::{DocumentSource, EpochStream, PositionedChunk, Seek};
use crate::config::DataConfig;
use crate::error::{PipelineError, Result};
use crate::shard::ShardColumns;
use crate::shard_stream::{ShardSet, ShardStream, ShardStreamOptions};
use crate::slice::DataSlice;
use crate::source::{BadRecordCounts, DocumentChunk};
use crate::tokenize::TextTokenizer;

/// The shards of one or more manifests.
#[derive(Debug)]
pub struct Shards {
    set: ShardSet,
    files: Vec<PathBuf>,
    options: ShardStreamOptions,
    slice: DataSlice,
    /// Shards whose sha256 was checked already (once per loader).
    verified: HashSet<PathBuf>,
}

impl Shards {
    /// The shards of the manifests in `config.files`, which must be made with `tokenizer`,
    /// read with their `word_starts` column when `word_starts`. A slice that gets no
    /// shuffle block fails here.
    pub fn open(
        config: &DataConfig,
        tokenizer: &TextTokenizer,
        seed: u64,
        slice: DataSlice,
        word_starts: bool,
    ) -> Result<Self> {
        let set = ShardSet::open(&config.files, tokenizer.sha256())?;
        let options = ShardStreamOptions {
            shuffle: config.shuffle,
            shuffle_window: config.shuffle_window,
            verify: config.verify_shards,
            vocab_size: u32::try_from(tokenizer.vocab_size()).unwrap_or(u32::MAX),
            seed,
            columns: match word_starts {
                true => ShardColumns::All,
                false => ShardColumns::WithoutWordStarts,
            },
        };
        let shards = Self {
            files: set.shards.iter().map(|(p, _)| p.clone()).collect(),
            set,
            options,
            slice,
            verified: HashSet::new(),
        };
        if !slice.is_whole() && shards.set.rows() > 0 && slice.share_of(shards.blocks()) == 0 {
            return Err(shards.empty_slice());
        }
        Ok(shards)
    }

    /// The shard files, in manifest order.
    pub fn files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }

    /// Shuffle blocks in an epoch.
    fn blocks(&self) -> u64 {
        self.set
            .rows()
            .div_ceil(self.options.shuffle_window.max(1) as u64)
    }

    fn empty_slice(&self) -> PipelineError {
        PipelineError::EmptySlice {
            index: self.slice.index,
            count: self.slice.count,
            available: self.blocks(),
            unit: "shuffle blocks",
        }
    }
}

impl DocumentSource for Shards {
    fn epoch(&mut self, epoch: u64, seek: Option<Seek>) -> Result<Box<dyn EpochStream + '_>> {
        let nothing_read = if self.set.rows() == 0 {
            PipelineError::EmptyCorpus {
                files: self.files.clone(),
            }
        } else {
            self.empty_slice()
        };
        let stream = ShardStream::with_slice(
            &self.set,
            self.options.clone(),
            epoch,
            seek.map_or(0, |s| s.document),
            self.slice,
            &mut self.verified,
        );
        Ok(Box::new(ShardEpoch {
            stream,
            nothing_read,
        }))
    }
}

/// One epoch of [`Shards`].
struct ShardEpoch<'a> {
    stream: ShardStream<'a>,
    /// What an epoch without a document for the slice is.
    nothing_read: PipelineError,
}

impl EpochStream for ShardEpoch<'_> {
    fn next_chunk(&mut self) -> Option<Result<PositionedChunk>> {
        self.stream.next_chunk_rows().map(|item| {
            let (first_document, chunk) = item?;
            Ok(PositionedChunk {
                first_document,
                stride: 1,
                chunk: DocumentChunk {
                    batch: chunk.batch,
                    bad_records: BadRecordCounts::default(),
                },
                rows: chunk.rows,
                seek_id: None,
            })
        })
    }

    fn nothing_read(self: Box<Self>) -> PipelineError {
        self.nothing_read
    }
}
