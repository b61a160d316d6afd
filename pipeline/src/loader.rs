//! The multithreaded loader: reader -> workers (tokenize, pack, mask) -> batcher ->
//! bounded queue -> consumer, in the shape of burn's multithreaded dataloader.
//!
//! - `electra-reader` reads the files in order, epoch after epoch, and sends numbered
//!   document chunks to the workers. It takes a slot token before each chunk and the
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

use std::collections::{BTreeMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};

use electra_schemas::tokenized;

use crate::batch::{Batch, BatchShape, DataCursor};
use crate::block::{ChunkDocuments, ExampleRef, MaskedBlock};
use crate::config::DataConfig;
use crate::error::{PipelineError, Result};
use crate::mask::{MaskOptions, Masker};
use crate::pack::{PackOptions, Packer};
use crate::parallel::panic_message;
use crate::shard_stream::{is_manifest_path, ShardSet, ShardStream, ShardStreamOptions};
use crate::slice::DataSlice;
use crate::source::{expand_files, BadRecordCounts, DocumentChunk, DocumentReader, SourceOptions};
use crate::tokenize::TextTokenizer;

/// Chunks in flight per worker thread.
const SLOTS_PER_THREAD: usize = 4;

/// Work for a worker: a numbered chunk of documents.
struct Work {
    seq: u64,
    epoch: u64,
    /// Position in the epoch of the chunk's first document.
    first_document: u64,
    /// Positions between the chunk's consecutive documents (the slice count for a slice of
    /// raw files, otherwise 1).
    stride: u64,
    chunk: DocumentChunk,
    /// The rows of `chunk.batch` that are the chunk's documents, in order (all of them
    /// when `None`): a shuffled shard block is shared by its chunks, not copied.
    rows: Option<Vec<u32>>,
}

/// Where a loader starts: after `batches_done` batches, at `cursor` (the cursor of the last
/// batch consumed). The default is the beginning of the stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoaderStart {
    /// Batches already consumed (the first batch out is numbered this).
    pub batches_done: u64,
    /// The position after the last consumed example.
    pub cursor: DataCursor,
}

impl LoaderStart {
    /// Whether reading must seek inside the cursor's epoch.
    fn seeks(&self) -> bool {
        self.cursor.document > 0 || self.cursor.examples_done > 0
    }
}

/// What the batcher receives.
enum Message {
    /// The result of chunk `seq` (or the reader's error in its place).
    Chunk {
        seq: u64,
        epoch: u64,
        examples: Result<Box<MaskedBlock>>,
        bad_records: BadRecordCounts,
    },
    /// The reader is done: `chunks` chunks were sent in all.
    End { chunks: u64 },
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

/// Everything a worker needs to turn a chunk into masked examples.
struct Stages {
    tokenizer: TextTokenizer,
    packer: Packer,
    masker: Masker,
    seed: u64,
}

impl Stages {
    /// Packs and masks a chunk (its `rows`, in that order, or all of them): documents
    /// `first_document`, `first_document + stride`, ... of `epoch`.
    fn process(
        &self,
        chunk: &DocumentChunk,
        rows: Option<&[u32]>,
        epoch: u64,
        first_document: u64,
        stride: u64,
    ) -> Result<Box<MaskedBlock>> {
        #[cfg(test)]
        tests::fault::check(&chunk.batch);
        let mut block = MaskedBlock::new();
        if chunk.batch.num_rows() == 0 {
            // A slice's chunk that only carries bad-record counts.
            return Ok(Box::new(block));
        }
        let is_tokenized = chunk
            .batch
            .schema()
            .column_with_name(tokenized::INPUT_IDS)
            .is_some();
        let tokenized = if is_tokenized {
            chunk.batch.clone()
        } else {
            self.tokenizer.tokenize(&chunk.batch)?
        };
        let documents = ChunkDocuments {
            batch: &tokenized,
            rows,
            first_document,
            stride,
        };
        block.pack_tokenized(&self.packer, self.seed, epoch, documents)?;
        block.mask(&self.masker, self.seed, epoch);
        Ok(Box::new(block))
    }
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
    /// after one pass).
    pub fn with_slice(
        config: &DataConfig,
        tokenizer: TextTokenizer,
        seed: u64,
        start: LoaderStart,
        slice: DataSlice,
    ) -> Result<Loader> {
        slice.validate()?;
        config.validate()?;
        if config.files.is_empty() {
            return Err(PipelineError::InvalidConfig {
                field: "files",
                reason: "no input files given".into(),
            });
        }
        let shard_entries = config.files.iter().filter(|f| is_manifest_path(f)).count();
        let (corpus, files) = if shard_entries == 0 {
            let files = expand_files(&config.files)?;
            (Corpus::Files(files.clone()), files)
        } else if shard_entries == config.files.len() {
            let set = ShardSet::open(&config.files, tokenizer.sha256())?;
            let files = set.shards.iter().map(|(p, _)| p.clone()).collect();
            if !slice.is_whole() {
                let rows = set.rows();
                let blocks = rows.div_ceil(config.shuffle_window.max(1) as u64);
                if rows > 0 && slice.share_of(blocks) == 0 {
                    return Err(PipelineError::EmptySlice {
                        index: slice.index,
                        count: slice.count,
                        available: blocks,
                        unit: "shuffle blocks",
                    });
                }
            }
            (Corpus::Shards(Box::new(set)), files)
        } else {
            return Err(PipelineError::InvalidConfig {
                field: "files",
                reason: "mixes shard manifests and raw corpus files; train from one or the other"
                    .into(),
            });
        };
        let stream_options = ShardStreamOptions {
            shuffle: config.shuffle,
            shuffle_window: config.shuffle_window,
            verify: config.verify_shards,
            vocab_size: u32::try_from(tokenizer.vocab_size()).unwrap_or(u32::MAX),
            seed,
        };
        let special = tokenizer.special();
        let stages = Arc::new(Stages {
            packer: Packer::new(PackOptions::from_config(config), special),
            masker: Masker::new(
                MaskOptions::from_config(config, tokenizer.vocab_size()),
                special,
            ),
            tokenizer,
            seed,
        });
        let shape = BatchShape::from_config(config, special.pad);
        let workers = config.worker_threads();
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());

        let slots = workers * SLOTS_PER_THREAD;
        let (slot_tx, slot_rx) = bounded::<()>(slots);
        for _ in 0..slots {
            // Cannot fail: the channel has room for every token and both ends are alive.
            let _ = slot_tx.send(());
        }
        let (work_tx, work_rx) = bounded::<Work>(workers * 2);
        let (result_tx, result_rx) = bounded::<Message>(slots + workers + 1);
        let (out_tx, out_rx) = bounded::<Result<Batch>>(config.prefetch);

        let mut threads = Vec::with_capacity(workers + 2);
        let reader = Reader {
            corpus,
            stream_options,
            options: SourceOptions::from_config(config),
            epochs: config.epochs,
            start,
            slice,
            stop: stop.clone(),
            counters: counters.clone(),
            work: work_tx,
            results: result_tx.clone(),
            slots: slot_rx,
        };
        threads.push(spawn("electra-reader".into(), move || reader.run())?);
        for i in 0..workers {
            let name = format!("electra-worker-{i}");
            let work = work_rx.clone();
            let results = result_tx.clone();
            let stages = stages.clone();
            let stop = stop.clone();
            let thread = name.clone();
            threads.push(spawn(name, move || {
                worker(&thread, &stages, &work, &results, &stop)
            })?);
        }
        drop(work_rx);
        drop(result_tx);
        let batcher = Batcher {
            start,
            batch_size: config.batch_size,
            shape,
            results: result_rx,
            slots: slot_tx,
            output: out_tx,
            stop: stop.clone(),
            counters: counters.clone(),
        };
        threads.push(spawn("electra-batcher".into(), move || {
            let output = batcher.output.clone();
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| batcher.run())) {
                // Never let a batcher bug look like the end of the data.
                let _ = output.send(Err(PipelineError::WorkerPanicked {
                    thread: "electra-batcher".into(),
                    message: panic_message(payload.as_ref()),
                }));
            }
        })?);
        Ok(Loader {
            output: Some(out_rx),
            stop,
            threads,
            counters,
            files,
            slice,
            finished: false,
        })
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

/// What the reader streams.
enum Corpus {
    /// Raw text or JSONL files, tokenized by the workers.
    Files(Vec<PathBuf>),
    /// Tokenized documents from Parquet shards.
    Shards(Box<ShardSet>),
}

struct Reader {
    corpus: Corpus,
    stream_options: ShardStreamOptions,
    options: SourceOptions,
    epochs: Option<u64>,
    start: LoaderStart,
    slice: DataSlice,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    work: Sender<Work>,
    results: Sender<Message>,
    slots: Receiver<()>,
}

impl Reader {
    fn run(self) {
        let mut seq = 0u64;
        let outcome = catch_unwind(AssertUnwindSafe(|| self.read_all(&mut seq)));
        let message = match outcome {
            Ok(Ok(Some(chunks))) => Message::End { chunks },
            Ok(Ok(None)) => return, // stopped or disconnected
            Ok(Err(e)) => Message::Chunk {
                seq,
                epoch: 0,
                examples: Err(e),
                bad_records: BadRecordCounts::default(),
            },
            Err(payload) => Message::Chunk {
                seq,
                epoch: 0,
                examples: Err(PipelineError::WorkerPanicked {
                    thread: "electra-reader".into(),
                    message: panic_message(payload.as_ref()),
                }),
                bad_records: BadRecordCounts::default(),
            },
        };
        let _ = self.results.send(message);
    }

    /// Sends every chunk of every epoch. `Ok(Some(n))`: done after n chunks; `Ok(None)`:
    /// stopped; `Err`: a read error, to be reported as chunk `*seq`.
    fn read_all(&self, seq: &mut u64) -> Result<Option<u64>> {
        let mut epoch = self.start.cursor.epoch;
        let mut verified = HashSet::new();
        while self.epochs.is_none_or(|n| epoch < n) {
            // The first epoch of a resumed stream starts at the cursor's document.
            let seek = epoch == self.start.cursor.epoch && self.start.seeks();
            let first = if seek { self.start.cursor.document } else { 0 };
            // Documents of the epoch's stream read, and those of them sent (this slice's).
            let mut seen = 0u64;
            let mut sent = 0u64;
            let mut stream = match &self.corpus {
                Corpus::Files(files) => {
                    let mut reader = DocumentReader::new(files.clone(), self.options.clone())?;
                    if seek {
                        let doc_id = self.start.cursor.doc_id;
                        reader.seek((doc_id >> 32) as u32, doc_id & 0xFFFF_FFFF)?;
                    }
                    Stream::Files(Box::new(reader))
                }
                Corpus::Shards(set) => Stream::Shards(Box::new(ShardStream::with_slice(
                    set,
                    self.stream_options.clone(),
                    epoch,
                    first,
                    self.slice,
                    &mut verified,
                ))),
            };
            loop {
                let next = match &mut stream {
                    Stream::Files(reader) => reader.next().map(|chunk| -> Result<Selected> {
                        let (position, chunk) = (first + seen, chunk?);
                        seen += chunk.batch.num_rows() as u64;
                        // Raw documents are dealt one by one: p % count == index.
                        let selected = self.slice.select_documents(chunk, position)?;
                        Ok(selected.map(|(p, c)| (p, self.slice.count as u64, c, None)))
                    }),
                    // The shard stream reads only the slice's blocks.
                    Stream::Shards(shards) => {
                        shards.next_chunk_rows().map(|item| -> Result<Selected> {
                            let (position, chunk) = item?;
                            seen += chunk.len() as u64;
                            let document_chunk = DocumentChunk {
                                batch: chunk.batch,
                                bad_records: BadRecordCounts::default(),
                            };
                            Ok(Some((position, 1, document_chunk, chunk.rows)))
                        })
                    }
                };
                let Some(next) = next else { break };
                let Some((first_document, stride, chunk, rows)) = next? else {
                    // None of the slice's documents and nothing to count.
                    if self.stop.load(Ordering::Relaxed) {
                        return Ok(None);
                    }
                    continue;
                };
                if self.stop.load(Ordering::Relaxed) || self.slots.recv().is_err() {
                    return Ok(None);
                }
                let documents = rows.as_ref().map_or(chunk.batch.num_rows(), Vec::len) as u64;
                let work = Work {
                    seq: *seq,
                    epoch,
                    first_document,
                    stride,
                    chunk,
                    rows,
                };
                if self.work.send(work).is_err() {
                    return Ok(None);
                }
                *seq += 1;
                sent += documents;
                self.counters
                    .documents
                    .fetch_add(documents, Ordering::Relaxed);
                self.counters.chunks.fetch_add(1, Ordering::Relaxed);
            }
            drop(stream);
            let no_documents = match &self.corpus {
                Corpus::Files(_) => seen == 0,
                Corpus::Shards(set) => set.rows() == 0,
            };
            if first == 0 && no_documents {
                return Err(PipelineError::EmptyCorpus {
                    files: match &self.corpus {
                        Corpus::Files(files) => files.clone(),
                        Corpus::Shards(set) => set.shards.iter().map(|(p, _)| p.clone()).collect(),
                    },
                });
            }
            if first == 0 && sent == 0 {
                let (available, unit) = match &self.corpus {
                    Corpus::Files(_) => (seen, "documents"),
                    Corpus::Shards(set) => (
                        set.rows()
                            .div_ceil(self.stream_options.shuffle_window.max(1) as u64),
                        "shuffle blocks",
                    ),
                };
                return Err(PipelineError::EmptySlice {
                    index: self.slice.index,
                    count: self.slice.count,
                    available,
                    unit,
                });
            }
            epoch += 1;
        }
        Ok(Some(*seq))
    }
}

/// A chunk of the loader's slice: the position of its first document, the positions
/// between its documents, the chunk and its rows (see [`Work`]); `None` when a chunk has
/// nothing for the slice.
type Selected = Option<(u64, u64, DocumentChunk, Option<Vec<u32>>)>;

/// One epoch's reader.
enum Stream<'a> {
    Files(Box<DocumentReader>),
    Shards(Box<ShardStream<'a>>),
}

fn worker(
    thread: &str,
    stages: &Stages,
    work: &Receiver<Work>,
    results: &Sender<Message>,
    stop: &AtomicBool,
) {
    while let Ok(Work {
        seq,
        epoch,
        first_document,
        stride,
        chunk,
        rows,
    }) = work.recv()
    {
        if stop.load(Ordering::Relaxed) {
            continue; // drain quickly so the reader is never left blocked
        }
        let examples = catch_unwind(AssertUnwindSafe(|| {
            stages.process(&chunk, rows.as_deref(), epoch, first_document, stride)
        }))
        .unwrap_or_else(|payload| {
            Err(PipelineError::WorkerPanicked {
                thread: thread.to_string(),
                message: panic_message(payload.as_ref()),
            })
        });
        let message = Message::Chunk {
            seq,
            epoch,
            examples,
            bad_records: chunk.bad_records,
        };
        if results.send(message).is_err() {
            return;
        }
    }
}

struct Batcher {
    start: LoaderStart,
    batch_size: usize,
    shape: BatchShape,
    results: Receiver<Message>,
    slots: Sender<()>,
    output: Sender<Result<Batch>>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

/// Examples waiting to fill a batch, with the bad-record counts of the chunks they came from.
#[derive(Default)]
struct Pending {
    /// `(epoch, block, example index in the block)`.
    examples: Vec<(u64, Rc<MaskedBlock>, usize)>,
    /// Bad records of chunks whose examples are all in `examples` (or already sent).
    bad: BadRecordCounts,
    /// `(examples.len() when the chunk was consumed, its counts)`: attributed to the batch
    /// that takes that chunk's last example.
    markers: Vec<(usize, BadRecordCounts)>,
}

impl Batcher {
    fn run(self) {
        let mut held = None;
        if let Err(e) = self.batch_all(&mut held) {
            // The batches before the error come out first.
            if let Some(batch) = held.take() {
                if !self.send(batch) {
                    return;
                }
            }
            let _ = self.output.send(Err(e));
        }
    }

    /// Sends a batch; false when the consumer is gone.
    fn send(&self, batch: Batch) -> bool {
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        self.output.send(Ok(batch)).is_ok() && !self.stop.load(Ordering::Relaxed)
    }

    /// Receives results in order and sends batches, holding the newest one back in `held`
    /// so that the counts of chunks without examples at the very end can join it.
    fn batch_all(&self, held: &mut Option<Batch>) -> Result<()> {
        let mut reorder: BTreeMap<u64, (u64, Result<Box<MaskedBlock>>, BadRecordCounts)> =
            BTreeMap::new();
        let mut next_seq = 0u64;
        let mut end: Option<u64> = None;
        let mut pending = Pending::default();
        let mut seq_no = self.start.batches_done;
        let cursor = self.start.cursor;
        loop {
            if end.is_some_and(|n| next_seq >= n) {
                break;
            }
            let Ok(message) = self.results.recv() else {
                if self.stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                return Err(PipelineError::WorkerExited {
                    thread: "electra-reader or electra-worker".into(),
                });
            };
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            match message {
                Message::End { chunks } => end = Some(chunks),
                Message::Chunk {
                    seq,
                    epoch,
                    examples,
                    bad_records,
                } => {
                    reorder.insert(seq, (epoch, examples, bad_records));
                }
            }
            while let Some((epoch, examples, bad)) = reorder.remove(&next_seq) {
                next_seq += 1;
                let _ = self.slots.try_send(());
                let block: Rc<MaskedBlock> = Rc::from(examples?);
                self.counters
                    .examples
                    .fetch_add(block.len() as u64, Ordering::Relaxed);
                pending.examples.extend(
                    (0..block.len())
                        .filter(|&i| {
                            !cursor.consumed(epoch, block.document(i), block.get(i).example_index)
                        })
                        .map(|i| (epoch, Rc::clone(&block), i)),
                );
                pending.markers.push((pending.examples.len(), bad));
                while pending.examples.len() >= self.batch_size {
                    let batch = self.cut(&mut pending, self.batch_size, seq_no);
                    seq_no += 1;
                    if let Some(previous) = held.replace(batch) {
                        if !self.send(previous) {
                            return Ok(());
                        }
                    }
                }
            }
        }
        // End of a finite stream: the remainder is the last (smaller) batch, and every
        // count not yet attributed goes to the last batch.
        if !pending.examples.is_empty() {
            let n = pending.examples.len();
            let batch = self.cut(&mut pending, n, seq_no);
            if let Some(previous) = held.replace(batch) {
                if !self.send(previous) {
                    return Ok(());
                }
            }
        }
        if let Some(mut last) = held.take() {
            for (_, bad) in pending.markers.drain(..) {
                last.bad_records.add(&bad);
            }
            last.bad_records.add(&pending.bad);
            self.send(last);
        }
        Ok(())
    }

    /// Takes the first `n` pending examples as batch `seq_no`.
    fn cut(&self, pending: &mut Pending, n: usize, seq_no: u64) -> Batch {
        let mut bad = std::mem::take(&mut pending.bad);
        pending.markers.retain_mut(|(end, counts)| {
            if *end <= n {
                bad.add(counts);
                false
            } else {
                *end -= n;
                true
            }
        });
        let taken = &pending.examples[..n];
        let epoch = taken.first().map_or(0, |(e, _, _)| *e);
        let cursor = taken.last().map_or(self.start.cursor, |(epoch, block, i)| {
            DataCursor::after(
                *epoch,
                block.document(*i),
                block.get(*i).doc_id,
                block.get(*i).example_index,
            )
        });
        let examples: Vec<ExampleRef<'_>> =
            taken.iter().map(|(_, block, i)| block.get(*i)).collect();
        let mut batch = Batch::from_refs(seq_no, epoch, &examples, &self.shape, bad);
        drop(examples);
        pending.examples.drain(..n);
        batch.cursor = cursor;
        batch
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::BadRecordPolicy;
    use crate::source::tests::{write, CORPUS};
    use crate::tokenize::tests::bert;
    use std::time::{Duration, Instant};

    /// Test-only fault injection: a document whose first sentence is [`fault::PANIC`]
    /// makes the worker panic.
    pub(crate) mod fault {
        use arrow_array::{Array, ListArray, RecordBatch, StringArray};

        pub(crate) const PANIC: &str = "__electra_test_panic__";

        pub(crate) fn check(batch: &RecordBatch) {
            let Some(list) = batch
                .column_by_name("sentences")
                .and_then(|c| c.as_any().downcast_ref::<ListArray>())
            else {
                return;
            };
            if let Some(values) = list.values().as_any().downcast_ref::<StringArray>() {
                if (0..values.len()).any(|i| values.value(i) == PANIC) {
                    panic!("injected fault");
                }
            }
        }
    }

    fn corpus(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| format!("{CORPUS}/{n}")).collect()
    }

    fn config(files: Vec<String>, threads: usize, chunk_bytes: usize) -> DataConfig {
        DataConfig {
            files,
            threads,
            chunk_bytes,
            batch_size: 32,
            epochs: Some(1),
            ..Default::default()
        }
    }

    fn collect(config: &DataConfig, seed: u64) -> Vec<Batch> {
        Loader::new(config, bert(), seed)
            .unwrap()
            .map(|b| b.unwrap())
            .collect()
    }

    #[test]
    fn batches_are_identical_for_any_thread_count_and_chunk_size() {
        let files = corpus(&["moby_dick.txt.zst", "sotu.jsonl.zst"]);
        let one = collect(&config(files.clone(), 1, 256 << 10), 42);
        assert!(one.len() > 100, "{} batches", one.len());
        for (i, b) in one.iter().enumerate() {
            assert_eq!(b.seq_no, i as u64);
            assert_eq!(b.input_ids.len(), b.batch_size * b.seq_len);
            assert!(b.seq_len <= 128 && b.seq_len % 8 == 0);
        }
        assert!(one[..one.len() - 1].iter().all(|b| b.batch_size == 32));
        let four = collect(&config(files.clone(), 4, 16 << 10), 42);
        assert!(
            one == four,
            "1 thread / 256 KiB chunks differ from 4 threads / 16 KiB chunks"
        );
        let eight = collect(&config(files, 8, 1 << 20), 42);
        assert!(
            one == eight,
            "1 thread differs from 8 threads / 1 MiB chunks"
        );
    }

    /// The loader's batches equal packing then masking every document in order, in one
    /// block on this thread, cut into batches: threads, chunking, reordering and the batcher
    /// change nothing.
    #[test]
    fn batches_equal_packing_then_masking_every_document_in_order() {
        let files = corpus(&["moby_dick.txt.zst", "sotu.jsonl.zst"]);
        let mut c = config(files.clone(), 2, 64 << 10);
        c.mask_strategy = crate::config::MaskStrategy::Bert;
        let seed = 5;
        let batches = collect(&c, seed);
        let tokenizer = bert();
        let special = tokenizer.special();
        let packer = Packer::new(PackOptions::from_config(&c), special);
        let masker = Masker::new(
            MaskOptions::from_config(&c, tokenizer.vocab_size()),
            special,
        );
        let paths: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
        let mut block = MaskedBlock::new();
        let mut position = 0;
        for chunk in DocumentReader::new(paths, SourceOptions::from_config(&c)).unwrap() {
            let tokenized = tokenizer.tokenize(&chunk.unwrap().batch).unwrap();
            let documents = ChunkDocuments {
                batch: &tokenized,
                rows: None,
                first_document: position,
                stride: 1,
            };
            block.pack_tokenized(&packer, seed, 0, documents).unwrap();
            position += tokenized.num_rows() as u64;
        }
        block.mask(&masker, seed, 0);
        let shape = BatchShape::from_config(&c, special.pad);
        let examples: Vec<ExampleRef<'_>> = block.iter().collect();
        let expected: Vec<Batch> = examples
            .chunks(c.batch_size)
            .enumerate()
            .map(|(i, e)| Batch::from_refs(i as u64, 0, e, &shape, BadRecordCounts::default()))
            .collect();
        assert!(expected.len() > 100, "{} batches", expected.len());
        assert_eq!(batches.len(), expected.len());
        for (got, want) in batches.iter().zip(&expected) {
            let fields = |b: &Batch| {
                (
                    b.seq_no,
                    b.seq_len,
                    b.input_ids.clone(),
                    b.segment_ids.clone(),
                    b.attention_mask.clone(),
                    b.masked_positions.clone(),
                    b.masked_labels.clone(),
                    b.example_ids.clone(),
                    b.real_tokens,
                )
            };
            assert!(fields(got) == fields(want), "batch {} differs", got.seq_no);
        }
        let last = examples.len() - 1;
        assert_eq!(
            batches.last().unwrap().cursor,
            DataCursor::after(
                0,
                block.document(last),
                examples[last].doc_id,
                examples[last].example_index
            )
        );
    }

    #[test]
    fn a_new_epoch_gets_new_packing_and_masks() {
        let files = corpus(&["moby_dick.txt.zst"]);
        let mut c = config(files, 2, 64 << 10);
        c.epochs = Some(2);
        let batches = collect(&c, 1);
        // Every row with its example id and its (masked) tokens.
        let rows: Vec<((u64, u32), &[i64])> = batches
            .iter()
            .flat_map(|b| {
                b.example_ids
                    .iter()
                    .copied()
                    .zip(b.input_ids.chunks(b.seq_len))
            })
            .collect();
        let second_pass = rows.iter().skip(1).position(|r| r.0 == (0, 0)).unwrap() + 1;
        assert!(
            second_pass > 100 && rows.len() - second_pass > 100,
            "{second_pass} of {}",
            rows.len()
        );
        assert_ne!(
            rows[0].1, rows[second_pass].1,
            "epoch 1 repeats epoch 0's first example"
        );
        assert!(batches.last().unwrap().epoch == 1);
        // Same seed, same stream; another seed, another stream.
        let again = collect(&c, 1);
        assert!(batches == again);
        let other = collect(&c, 2);
        assert_ne!(batches[0].masked_positions, other[0].masked_positions);
    }

    #[test]
    fn a_worker_panic_reaches_the_consumer_as_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for i in 0..200 {
            text.push_str(&format!(
                "Document number {i} has a sentence.\nAnd another one.\n\n"
            ));
        }
        text.push_str(fault::PANIC);
        text.push('\n');
        let f = write(dir.path(), "p.txt", text.as_bytes());
        let mut c = config(vec![f.display().to_string()], 2, 512);
        c.batch_size = 8;
        let results: Vec<Result<Batch>> = Loader::new(&c, bert(), 0).unwrap().collect();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert!(ok > 10, "{ok} batches before the error");
        match results.last() {
            Some(Err(PipelineError::WorkerPanicked { thread, message })) => {
                assert!(thread.starts_with("electra-worker-"), "{thread}");
                assert_eq!(message, "injected fault");
            }
            other => panic!("expected a panic error last, got {other:?}"),
        }
        assert!(results[..results.len() - 1].iter().all(|r| r.is_ok()));
    }

    #[test]
    fn a_read_error_under_fail_ends_the_stream_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for i in 0..100 {
            text.push_str(&format!(
                "{{\"text\": \"Record {i} says hello.\\nSecond line.\"}}\n"
            ));
        }
        text.push_str("{broken\n");
        let f = write(dir.path(), "e.jsonl", text.as_bytes());
        let mut c = config(vec![f.display().to_string()], 3, 256);
        c.on_bad_record = BadRecordPolicy::Fail;
        c.batch_size = 4;
        let mut loader = Loader::new(&c, bert(), 0).unwrap();
        let mut seq = 0;
        let err = loop {
            match loader.next() {
                Some(Ok(b)) => {
                    assert_eq!(b.seq_no, seq);
                    seq += 1;
                }
                Some(Err(e)) => break e,
                None => panic!("the stream ended without the error"),
            }
        };
        assert!(
            matches!(err, PipelineError::Json { line: 101, .. }),
            "{err:?}"
        );
        assert!(seq >= 20, "{seq} batches before the error");
        assert!(loader.next().is_none());
        assert!(loader.next().is_none());
    }

    #[test]
    fn bad_record_counts_sum_to_the_total_over_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for i in 0..60 {
            text.push_str(&format!("{{\"text\": \"Record {i} is fine.\"}}\n"));
            if i % 7 == 0 {
                text.push_str("not json\n");
            }
        }
        text.push_str("trailing garbage\n");
        let f = write(dir.path(), "c.jsonl", text.as_bytes());
        let mut c = config(vec![f.display().to_string()], 2, 64);
        c.batch_size = 8;
        let mut loader = Loader::new(&c, bert(), 0).unwrap();
        let batches: Vec<Batch> = loader.by_ref().map(|b| b.unwrap()).collect();
        let stats = loader.stats();
        assert_eq!(
            (stats.documents_read, stats.examples, stats.batches),
            (60, 60, batches.len() as u64)
        );
        let mut total = crate::source::BadRecordCounts::default();
        for b in &batches {
            total.add(&b.bad_records);
        }
        assert_eq!(total.malformed_json, 10);
        assert_eq!(batches.iter().map(|b| b.batch_size).sum::<usize>(), 60);
    }

    #[test]
    fn a_vanished_thread_is_an_error_not_the_end_of_data() {
        let (result_tx, result_rx) = bounded(4);
        let (slot_tx, _slot_rx) = bounded(4);
        let (out_tx, out_rx) = bounded(4);
        let batcher = Batcher {
            start: LoaderStart::default(),
            batch_size: 2,
            shape: BatchShape::from_config(&DataConfig::default(), 0),
            results: result_rx,
            slots: slot_tx,
            output: out_tx,
            stop: Arc::new(AtomicBool::new(false)),
            counters: Arc::new(Counters::default()),
        };
        let example = ExampleRef {
            doc_id: 0,
            example_index: 0,
            input_ids: &[101, 7, 102],
            segment_ids: &[0; 3],
            masked_positions: &[1],
            masked_labels: &[7],
        };
        result_tx
            .send(Message::Chunk {
                seq: 0,
                epoch: 0,
                examples: Ok(Box::new((0..5).fold(MaskedBlock::new(), |mut block, i| {
                    block.push(i, example);
                    block
                }))),
                bad_records: BadRecordCounts::default(),
            })
            .unwrap();
        drop(result_tx); // every sender gone, and no End
        let handle = std::thread::spawn(move || batcher.run());
        let got: Vec<Result<Batch>> = out_rx.iter().collect();
        handle.join().unwrap();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[..2]
            .iter()
            .all(|b| b.as_ref().is_ok_and(|b| b.batch_size == 2)));
        assert!(
            matches!(got[2], Err(PipelineError::WorkerExited { .. })),
            "{:?}",
            got[2]
        );
    }

    #[test]
    fn a_missing_file_fails_at_construction_naming_it() {
        let c = config(vec!["/nonexistent/corpus.txt.zst".into()], 1, 1024);
        let err = Loader::new(&c, bert(), 0).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/corpus.txt.zst"),
            "{err}"
        );
    }

    #[test]
    fn dropping_a_loader_mid_stream_joins_its_threads_promptly() {
        let files = corpus(&["kjv.txt.zst", "moby_dick.txt.zst"]);
        let mut c = config(files, 4, 64 << 10);
        c.epochs = None;
        c.prefetch = 2;
        let mut loader = Loader::new(&c, bert(), 0).unwrap();
        for _ in 0..3 {
            loader.next().unwrap().unwrap();
        }
        std::thread::sleep(Duration::from_millis(200)); // let the queues fill up
        let start = Instant::now();
        drop(loader);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "drop took {:?}",
            start.elapsed()
        );
    }

    #[test]
    fn an_infinite_stream_keeps_going_past_the_first_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "tiny.txt",
            b"One small document.\n\nAnother one here.\n",
        );
        let mut c = config(vec![f.display().to_string()], 2, 1024);
        c.epochs = None;
        c.batch_size = 3;
        let batches: Vec<Batch> = Loader::new(&c, bert(), 0)
            .unwrap()
            .take(5)
            .map(|b| b.unwrap())
            .collect();
        assert_eq!(batches.len(), 5);
        assert!(batches[4].epoch >= 6, "epoch {}", batches[4].epoch);
    }

    #[test]
    fn a_corpus_without_documents_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "empty.txt", b"\n\n   \n");
        let mut c = config(vec![f.display().to_string()], 1, 1024);
        c.epochs = None;
        let mut loader = Loader::new(&c, bert(), 0).unwrap();
        assert!(matches!(
            loader.next(),
            Some(Err(PipelineError::EmptyCorpus { .. }))
        ));
        assert!(loader.next().is_none());
    }

    /// Stage costs on one thread: reading alone, then reading + tokenizing.
    #[test]
    #[ignore]
    fn stage_throughput() {
        use crate::source::{DocumentReader, SourceOptions};
        let files: Vec<PathBuf> = corpus(&["moby_dick.txt.zst", "kjv.txt.zst", "sotu.jsonl.zst"])
            .into_iter()
            .map(PathBuf::from)
            .collect();
        let start = Instant::now();
        let chunks: Vec<_> = DocumentReader::new(files, SourceOptions::default())
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let read = start.elapsed().as_secs_f64();
        let t = bert();
        let start = Instant::now();
        let tokens: usize = chunks
            .iter()
            .map(|c| {
                t.tokenize(&c.batch)
                    .unwrap()
                    .column(2)
                    .to_data()
                    .child_data()[0]
                    .len()
            })
            .sum();
        let tok = start.elapsed().as_secs_f64();
        println!(
            "read {read:.2}s, tokenize {tok:.2}s ({:.0} tokens/s), {tokens} tokens",
            tokens as f64 / tok
        );
    }

    /// Single-thread throughput: `cargo test -p electra-pipeline --release -- --ignored
    /// --nocapture single_thread_throughput`.
    #[test]
    #[ignore]
    fn single_thread_throughput() {
        for threads in [1, 4] {
            let c = config(
                corpus(&["moby_dick.txt.zst", "kjv.txt.zst", "sotu.jsonl.zst"]),
                threads,
                256 << 10,
            );
            let start = Instant::now();
            let (mut tokens, mut batches) = (0usize, 0usize);
            for b in Loader::new(&c, bert(), 0).unwrap() {
                tokens += b.unwrap().real_tokens;
                batches += 1;
            }
            let s = start.elapsed().as_secs_f64();
            println!(
                "threads={threads}: {batches} batches, {tokens} tokens in {s:.2}s = {:.0} tokens/s",
                tokens as f64 / s
            );
        }
    }
}
