//! The multithreaded loader: reader -> workers (tokenize, pack, mask) -> batcher ->
//! bounded queue -> consumer, in the shape of burn's multithreaded dataloader.
//!
//! - `electra-reader` pulls document chunks from the corpus's [`DocumentSource`] (raw
//!   files in order, or shuffled shards), epoch after epoch, and sends them, numbered, to
//!   the workers. It takes a slot token before each chunk and the
//!   batcher returns it when it consumes the chunk's result, so at most `4 * threads`
//!   chunks are in flight and the reorder buffer stays bounded.
//! - `electra-worker-{i}` tokenizes, packs and masks a chunk. A panic is caught and becomes
//!   a [`PipelineError::WorkerPanicked`] in the stream.
//! - `electra-batcher` puts results back in chunk order, cuts batches and sends them to a
//!   `bounded(prefetch)` queue. A full queue blocks; nothing is dropped. An error ends the
//!   stream after the batches before it; a thread that vanishes before the end is
//!   [`PipelineError::WorkerExited`], never a silent end of data.
//!
//! Packing and masking depend only on (seed, epoch, doc_id, example_index), and examples
//! are concatenated in document order, so the batches are identical for any thread count
//! and any `chunk_bytes`. Each batch carries the [`DataCursor`] after its last example;
//! [`Loader::resume`] from that cursor yields exactly the batches that followed it: the
//! reader seeks (raw files: to the cursor's file and document; shards: to the shard and row
//! of the cursor's position) and the batcher drops the examples of the cursor's document
//! that were already consumed.
//!
//! [`Loader::with_slice`] reads one [`DataSlice`] of the stream: the reader drops the raw
//! documents of other slices before they reach the workers (or reads only the slice's
//! shard blocks), and each chunk carries the whole-stream positions of its documents, so
//! cursors and resume work the same way.

mod batcher;
mod inputs;
mod reader;
mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver};

use crate::batch::{Batch, BatchShape};
use crate::block::MaskedBlock;
use crate::config::DataConfig;
use crate::corpus::{open_corpus, Corpus, Mixer, PositionedChunk};
use crate::cursor::{DataCursor, MixtureCursor};
use crate::error::{PipelineError, Result};
use crate::slice::DataSlice;
use crate::source::BadRecordCounts;
use crate::tokenize::TextTokenizer;

use batcher::Batcher;
use reader::{Feed, Reader};
use worker::{worker, Stages};

/// Chunks in flight per worker thread.
const SLOTS_PER_THREAD: usize = 4;

/// Work for a worker: a numbered chunk of documents of one source.
struct Work {
    source: usize,
    seq: u64,
    epoch: u64,
    chunk: PositionedChunk,
}

/// Where a loader starts: after `batches_done` batches, at `cursor` (the cursor of the last
/// batch consumed). The default is the beginning of the stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoaderStart {
    /// Batches already consumed (the first batch out is numbered this).
    pub batches_done: u64,
    /// The position after the last consumed example.
    pub cursor: DataCursor,
}

/// What the batcher receives.
enum Message {
    /// The result of chunk `seq` of `source` (or the source reader's error in its place).
    Chunk {
        source: usize,
        seq: u64,
        epoch: u64,
        examples: Result<Box<MaskedBlock>>,
        bad_records: BadRecordCounts,
        /// Where a cursor at these examples seeks to, when not the document's own id.
        seek_id: Option<u64>,
    },
    /// The reader of `source` is done: `chunks` chunks were sent in all.
    End { source: usize, chunks: u64 },
}

/// Cheap counters shared with the pipeline threads.
#[derive(Debug, Default)]
struct Counters {
    chunks: AtomicU64,
    documents: AtomicU64,
    examples: AtomicU64,
    batches: AtomicU64,
}

/// A snapshot of the loader's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoaderStats {
    /// Chunks the reader has sent.
    pub chunks_read: u64,
    /// Documents the reader has sent to the workers (those of the loader's slice).
    pub documents_read: u64,
    /// Examples the batcher has received.
    pub examples: u64,
    /// Batches the batcher has queued.
    pub batches: u64,
}

/// Iterator of batches from a multithreaded pipeline. Dropping it stops and joins the
/// threads.
pub struct Loader {
    output: Option<Receiver<Result<Batch>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    counters: Arc<Counters>,
    files: Vec<PathBuf>,
    slice: DataSlice,
    finished: bool,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("files", &self.files)
            .field("slice", &self.slice)
            .field("threads", &self.threads.len())
            .field("finished", &self.finished)
            .finish()
    }
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map_err(|source| PipelineError::Io {
            path: PathBuf::from(format!("<thread {name}>")),
            source,
        })
}

impl Loader {
    /// Validates the config, expands the file list (missing files fail here) and starts the
    /// threads.
    pub fn new(config: &DataConfig, tokenizer: TextTokenizer, seed: u64) -> Result<Loader> {
        Self::resume(config, tokenizer, seed, LoaderStart::default())
    }

    /// [`new`](Self::new), starting at `start`: the batches out are exactly those a loader
    /// from the beginning yields after `start.cursor`, numbered from `start.batches_done`.
    pub fn resume(
        config: &DataConfig,
        tokenizer: TextTokenizer,
        seed: u64,
        start: LoaderStart,
    ) -> Result<Loader> {
        Self::with_slice(config, tokenizer, seed, start, DataSlice::WHOLE)
    }

    /// [`resume`](Self::resume), reading only `slice` of the document stream (see
    /// [`crate::slice`]): raw documents at positions `p % count == index`, or the shard
    /// blocks `b % count == index`. Batches hold `config.batch_size` examples of this
    /// slice; cursors keep positions in the whole stream, so a loader started at the cursor
    /// of one of this slice's batches yields exactly the batches that followed it. Each
    /// slice counts its own epochs. [`DataSlice::WHOLE`] is [`resume`](Self::resume).
    ///
    /// # Errors
    /// [`PipelineError::InvalidSlice`] unless `slice.index < slice.count`;
    /// [`PipelineError::EmptySlice`] when the slice gets no documents: here for shards (an
    /// epoch has fewer blocks than `index + 1`), from the first batch for raw files (known
    /// after one pass). Under `on_bad_record = "fail"`, a damaged compressed file fails
    /// here, naming it, before anything is read. The tokenizer takes its exact fast path
    /// when it has one and `config.fast_tokenizer` is on.
    pub fn with_slice(
        config: &DataConfig,
        tokenizer: TextTokenizer,
        seed: u64,
        start: LoaderStart,
        slice: DataSlice,
    ) -> Result<Loader> {
        slice.validate()?;
        config.validate()?;
        let shape = BatchShape::from_config(config, tokenizer.special().pad);
        let tokenizer = tokenizer.with_fast_path(config.fast_tokenizer);
        let stages = Stages::new(config, tokenizer, seed);
        let word_starts = stages.needs_word_starts();
        let corpus = open_corpus(config, stages.tokenizer(), seed, slice, word_starts)?;
        let stages = stages.with_seeds(corpus.sources.iter().map(|s| s.seed).collect());
        let mut loader = Loader {
            output: None,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            counters: Arc::new(Counters::default()),
            files: corpus.files.clone(),
            slice,
            finished: false,
        };
        loader.start(config, corpus, stages, shape, start)?;
        Ok(loader)
    }

    /// Starts a reader per source, the workers and the batcher, joined by bounded channels.
    fn start(
        &mut self,
        config: &DataConfig,
        corpus: Corpus,
        stages: Stages,
        shape: BatchShape,
        start: LoaderStart,
    ) -> Result<()> {
        let workers = config.worker_threads();
        let sources = corpus.sources.len();
        // The chunks in flight are shared out over the sources, a few each at least.
        let slots = (workers * SLOTS_PER_THREAD / sources).max(SLOTS_PER_THREAD);
        let mixture = start_mixture(&start.cursor, sources)?;
        let (work_tx, work_rx) = bounded::<Work>(workers * 2);
        let (result_tx, result_rx) = bounded::<Message>(slots * sources + workers + sources);
        let (out_tx, out_rx) = bounded::<Result<Batch>>(config.prefetch);
        self.output = Some(out_rx);

        let mut slot_senders = Vec::with_capacity(sources);
        let mut budgets = Vec::with_capacity(sources);
        for (index, source) in corpus.sources.into_iter().enumerate() {
            let (slot_tx, slot_rx) = bounded::<()>(slots);
            for _ in 0..slots {
                // Cannot fail: the channel has room for every token and both ends are alive.
                let _ = slot_tx.send(());
            }
            slot_senders.push(slot_tx);
            budgets.push(source.tokens);
            let feed = Feed {
                stop: self.stop.clone(),
                counters: self.counters.clone(),
                work: work_tx.clone(),
                slots: slot_rx,
            };
            let position = mixture.sources[index].position;
            let reader = Reader::new(index, source, position, feed, result_tx.clone());
            let name = match sources {
                1 => "electra-reader".to_string(),
                _ => format!("electra-reader-{index}"),
            };
            self.threads.push(spawn(name, move || reader.run())?);
        }
        drop(work_tx);
        let stages = Arc::new(stages);
        for i in 0..workers {
            let name = format!("electra-worker-{i}");
            let (work, results) = (work_rx.clone(), result_tx.clone());
            let (stages, stop, thread) = (stages.clone(), self.stop.clone(), name.clone());
            self.threads.push(spawn(name, move || {
                worker(&thread, &stages, &work, &results, &stop)
            })?);
        }
        drop(work_rx);
        drop(result_tx);
        let batcher = Batcher {
            batches_done: start.batches_done,
            batch_size: config.batch_size,
            shape,
            mixer: Mixer::new(corpus.schedule, budgets, mixture),
            is_mixture: corpus.mixture,
            results: result_rx,
            slots: slot_senders,
            output: out_tx,
            stop: self.stop.clone(),
            counters: self.counters.clone(),
        };
        self.threads.push(spawn("electra-batcher".into(), move || {
            batcher.run_guarded()
        })?);
        Ok(())
    }

    /// The expanded input files, in reading order (source index = position).
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The part of the document stream this loader reads.
    pub fn slice(&self) -> DataSlice {
        self.slice
    }

    /// A snapshot of the pipeline's counters.
    pub fn stats(&self) -> LoaderStats {
        LoaderStats {
            chunks_read: self.counters.chunks.load(Ordering::Relaxed),
            documents_read: self.counters.documents.load(Ordering::Relaxed),
            examples: self.counters.examples.load(Ordering::Relaxed),
            batches: self.counters.batches.load(Ordering::Relaxed),
        }
    }
}

impl Iterator for Loader {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.finished {
            return None;
        }
        let received = self.output.as_ref().and_then(|rx| rx.recv().ok());
        match received {
            Some(Ok(batch)) => Some(Ok(batch)),
            Some(Err(e)) => {
                self.finished = true;
                Some(Err(e))
            }
            None => {
                self.finished = true;
                None
            }
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.output = None;
        for handle in self.threads.drain(..) {
            // A thread that panicked outside catch_unwind has nothing left to report.
            let _ = handle.join();
        }
    }
}

/// Where each of `sources` sources starts, from a cursor: its mixture state, or a single
/// corpus's position. A cursor of another shape (another number of sources) is refused.
fn start_mixture(cursor: &DataCursor, sources: usize) -> Result<MixtureCursor> {
    let starts = (0..sources)
        .map(|s| cursor.source_start(s, sources))
        .collect::<Option<Vec<_>>>();
    let Some(starts) = starts else {
        let held = cursor.mixture.as_ref().map_or(1, |m| m.sources.len());
        return Err(PipelineError::InvalidConfig {
            field: "sources",
            reason: format!(
                "cannot resume: the cursor holds the positions of {held} source(s), the config reads {sources}"
            ),
        });
    };
    Ok(MixtureCursor {
        slot: cursor.mixture.as_ref().map_or(0, |m| m.slot),
        sources: starts,
    })
}

#[cfg(test)]
pub(crate) mod tests;
