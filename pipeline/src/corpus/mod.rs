//! The corpus a loader reads: one or more [`DocumentSource`]s, each giving, epoch after
//! epoch, the stream of document chunks a reader thread sends to the workers, each chunk
//! with the positions of its documents in the epoch's stream.
//!
//! A source can start an epoch at any document (exact resume: [`Seek`]) and reads only its
//! [`DataSlice`]. The sources:
//!
//! - [`RawFiles`]: text or JSONL files, tokenized by the workers; with `shuffle`, the file
//!   order is permuted every epoch and documents within blocks of `shuffle_window`
//!   ([`shuffle`], the shard stream's permutations); a slice keeps the documents at
//!   positions `p % count == index`;
//! - [`Shards`]: tokenized Parquet shards, shuffled per epoch; a slice reads only its
//!   shuffle blocks.
//!
//! A corpus of several sources is a weighted mixture ([`mixture`]): each example slot is
//! drawn from the source a pure [`SlotSchedule`] names, by the loader's batcher.

pub mod mixture;
mod raw_files;
mod raw_shuffle;
pub mod schedule;
mod shards;
mod shuffle;

use std::path::PathBuf;

use crate::config::DataConfig;
use crate::error::{PipelineError, Result};
use crate::shard_stream::is_manifest_path;
use crate::slice::DataSlice;
use crate::source::DocumentChunk;
use crate::tokenize::TextTokenizer;

pub use mixture::{source_seed, Mixer};
pub use raw_files::RawFiles;
pub use schedule::SlotSchedule;
pub use shards::Shards;

/// Where an epoch's stream starts when not at its beginning: the position of the document
/// a resumed loader continues with, and that document's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seek {
    /// Position of the document in the epoch's stream.
    pub document: u64,
    /// Where raw files seek to (`source index << 32 | ordinal in the file`): that
    /// document's id, or for shuffled raw files the id of the first document (in file
    /// order) of its shuffle block ([`PositionedChunk::seek_id`]).
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
    /// What a resumed reader seeks to (as [`Seek::doc_id`]) to continue at any of these
    /// documents, when not each document's own id: shuffled raw files give the id of the
    /// first document, in file order, of the documents' shuffle block.
    pub seek_id: Option<u64>,
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

/// One source of a loader's corpus.
pub struct CorpusSource {
    /// Its name in metrics and reports.
    pub name: String,
    /// The document source.
    pub source: Box<dyn DocumentSource>,
    /// The seed of its shuffle, packing and masks.
    pub seed: u64,
    /// Passes over it before it is spent; `None` repeats forever.
    pub epochs: Option<u64>,
    /// This slice's token budget: spent once its examples hold this many real tokens.
    pub tokens: Option<u64>,
}

impl std::fmt::Debug for CorpusSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CorpusSource")
            .field("name", &self.name)
            .field("epochs", &self.epochs)
            .field("tokens", &self.tokens)
            .finish()
    }
}

/// A loader's corpus: its sources (one, or a mixture's), the schedule of their example
/// slots, and every file read.
#[derive(Debug)]
pub struct Corpus {
    /// The sources, in config order.
    pub sources: Vec<CorpusSource>,
    /// Which source each example slot is drawn from.
    pub schedule: SlotSchedule,
    /// The files read (every source's, in order), for reports and checkpoints.
    pub files: Vec<PathBuf>,
    /// Whether this is a mixture (`data.sources`): its cursors hold every source's state.
    pub mixture: bool,
}

/// The corpus of `config` read by `slice`: `config.files` (a single corpus, seeded
/// `seed`), or the mixture of `config.sources` (source i seeded [`source_seed`]`(seed,
/// i)`). Shards are read with their word starts when `word_starts`. Missing files fail
/// here; under `on_bad_record = "fail"`, so does a damaged compressed file.
pub fn open_corpus(
    config: &DataConfig,
    tokenizer: &TextTokenizer,
    seed: u64,
    slice: DataSlice,
    word_starts: bool,
) -> Result<Corpus> {
    if config.sources.is_empty() {
        let (source, files) = open_files(config, tokenizer, seed, slice, word_starts)?;
        return Ok(Corpus {
            sources: vec![CorpusSource {
                name: String::new(),
                source,
                seed,
                epochs: config.epochs,
                tokens: None,
            }],
            schedule: SlotSchedule::single(),
            files,
            mixture: false,
        });
    }
    let mut sources = Vec::with_capacity(config.sources.len());
    let mut all_files = Vec::new();
    for (index, spec) in config.sources.iter().enumerate() {
        let source_config = config.for_source(spec);
        let source_seed = source_seed(seed, index);
        let (source, files) =
            open_files(&source_config, tokenizer, source_seed, slice, word_starts)?;
        all_files.extend(files);
        sources.push(CorpusSource {
            name: spec.display_name(index),
            source,
            seed: source_seed,
            epochs: source_config.epochs,
            tokens: spec.tokens.map(|t| mixture::slice_budget(t, slice)),
        });
    }
    let weights: Vec<f64> = config.sources.iter().map(|s| s.weight).collect();
    Ok(Corpus {
        sources,
        schedule: SlotSchedule::new(&weights, seed, slice),
        files: all_files,
        mixture: true,
    })
}

/// The source of `config.files`: shard manifests, or raw corpus files (never both), and
/// its files in reading order.
fn open_files(
    config: &DataConfig,
    tokenizer: &TextTokenizer,
    seed: u64,
    slice: DataSlice,
    word_starts: bool,
) -> Result<(Box<dyn DocumentSource>, Vec<PathBuf>)> {
    if config.files.is_empty() {
        return Err(PipelineError::InvalidConfig {
            field: "files",
            reason: "no input files given".into(),
        });
    }
    let shard_entries = config.files.iter().filter(|f| is_manifest_path(f)).count();
    if shard_entries == 0 {
        let source = RawFiles::open(config, seed, slice)?;
        let files = source.files();
        Ok((Box::new(source), files))
    } else if shard_entries == config.files.len() {
        let source = Shards::open(config, tokenizer, seed, slice, word_starts)?;
        let files = source.files();
        Ok((Box::new(source), files))
    } else {
        Err(PipelineError::InvalidConfig {
            field: "files",
            reason: "mixes shard manifests and raw corpus files; train from one or the other"
                .into(),
        })
    }
}
