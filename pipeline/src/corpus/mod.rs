//! The corpus a loader reads: a [`DocumentSource`] gives, epoch after epoch, the stream of
//! document chunks the loader's reader thread sends to its workers, each chunk with the
//! positions of its documents in the epoch's stream.
//!
//! A source can start an epoch at any document (exact resume: [`Seek`]) and reads only its
//! [`DataSlice`]. Today's sources:
//!
//! - [`RawFiles`]: text or JSONL files in order, tokenized by the workers; a slice keeps
//!   the documents at positions `p % count == index`;
//! - [`Shards`]: tokenized Parquet shards, shuffled per epoch; a slice reads only its
//!   shuffle blocks.
//!
//! A combinator (a weighted mixture of sources, a shuffle buffer over a raw stream) is a
//! new file implementing [`DocumentSource`] over other sources, and an arm in
//! [`open_corpus`].

mod raw_files;
mod shards;

use std::path::PathBuf;

use crate::config::DataConfig;
use crate::error::{PipelineError, Result};
use crate::shard_stream::is_manifest_path;
use crate::slice::DataSlice;
use crate::source::DocumentChunk;
use crate::tokenize::TextTokenizer;

pub use raw_files::RawFiles;
pub use shards::Shards;

/// Where an epoch's stream starts when not at its beginning: the position of the document
/// a resumed loader continues with, and that document's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seek {
    /// Position of the document in the epoch's stream.
    pub document: u64,
    /// Its id (raw files seek by it: `source index << 32 | ordinal in the file`).
    pub doc_id: u64,
}

/// A chunk of documents and where they sit in the epoch's stream.
#[derive(Debug)]
pub struct PositionedChunk {
    /// Position of the chunk's first document.
    pub first_document: u64,
    /// Positions between consecutive documents (the slice count for a slice of raw files,
    /// otherwise 1).
    pub stride: u64,
    /// The documents (raw or tokenized) and the bad records met reading them.
    pub chunk: DocumentChunk,
    /// The rows of `chunk.batch` that are the chunk's documents, in order (all of them
    /// when `None`): a shuffled shard block is shared by its chunks, not copied.
    pub rows: Option<Vec<u32>>,
}

impl PositionedChunk {
    /// Documents in the chunk.
    pub fn documents(&self) -> usize {
        self.rows
            .as_ref()
            .map_or(self.chunk.batch.num_rows(), Vec::len)
    }
}

/// The documents of a loader's slice, one stream per epoch.
pub trait DocumentSource: Send {
    /// The stream of `epoch`, from its beginning or from `seek`.
    fn epoch(&mut self, epoch: u64, seek: Option<Seek>) -> Result<Box<dyn EpochStream + '_>>;
}

/// One epoch of a [`DocumentSource`].
pub trait EpochStream {
    /// The next chunk of the slice's documents (a chunk may hold none and carry only
    /// bad-record counts), or `None` at the end of the epoch.
    fn next_chunk(&mut self) -> Option<Result<PositionedChunk>>;

    /// The error for an epoch read from its beginning that gave the slice no document: an
    /// empty corpus, or a slice the corpus is too small for.
    fn nothing_read(self: Box<Self>) -> PipelineError;
}

/// A loader's corpus: its source and its files in reading order (source index = position).
pub struct Corpus {
    /// The document source.
    pub source: Box<dyn DocumentSource>,
    /// The files read, for reports and checkpoints.
    pub files: Vec<PathBuf>,
}

impl std::fmt::Debug for Corpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Corpus")
            .field("files", &self.files)
            .finish()
    }
}

/// The corpus of `config.files`, read by `slice`: shard manifests, or raw corpus files
/// (never both); shards are read with their word starts when `word_starts`. Missing files
/// fail here; under `on_bad_record = "fail"`, so does a damaged compressed file.
pub fn open_corpus(
    config: &DataConfig,
    tokenizer: &TextTokenizer,
    seed: u64,
    slice: DataSlice,
    word_starts: bool,
) -> Result<Corpus> {
    if config.files.is_empty() {
        return Err(PipelineError::InvalidConfig {
            field: "files",
            reason: "no input files given".into(),
        });
    }
    let shard_entries = config.files.iter().filter(|f| is_manifest_path(f)).count();
    if shard_entries == 0 {
        let source = RawFiles::open(config, slice)?;
        let files = source.files();
        Ok(Corpus {
            source: Box::new(source),
            files,
        })
    } else if shard_entries == config.files.len() {
        let source = Shards::open(config, tokenizer, seed, slice, word_starts)?;
        let files = source.files();
        Ok(Corpus {
            source: Box::new(source),
            files,
        })
    } else {
        Err(PipelineError::InvalidConfig {
            field: "files",
            reason: "mixes shard manifests and raw corpus files; train from one or the other"
                .into(),
        })
    }
}
