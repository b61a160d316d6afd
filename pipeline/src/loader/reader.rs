//! The reader threads, one per source of the corpus: each pulls its source's chunks,
//! epoch after epoch, from its [`DocumentSource`] and sends them, numbered, to the workers,
//! taking a slot token of its own before each so the chunks in flight stay bounded.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::{Counters, Message, Work};
use crate::corpus::{CorpusSource, DocumentSource, PositionedChunk, Seek};
use crate::cursor::StreamPosition;
use crate::error::{PipelineError, Result};
use crate::parallel::panic_message;
use crate::source::BadRecordCounts;

/// The reader's end of the pipeline.
pub(super) struct Feed {
    pub stop: Arc<AtomicBool>,
    pub counters: Arc<Counters>,
    pub work: Sender<Work>,
    pub slots: Receiver<()>,
}

impl Feed {
    /// Sends chunk `seq` of `source`'s `epoch` to the workers once a slot is free; false
    /// when the loader is stopping.
    fn send(&self, source: usize, seq: u64, epoch: u64, chunk: PositionedChunk) -> bool {
        if self.stop.load(Ordering::Relaxed) || self.slots.recv().is_err() {
            return false;
        }
        let documents = chunk.documents() as u64;
        let work = Work {
            source,
            seq,
            epoch,
            chunk,
        };
        if self.work.send(work).is_err() {
            return false;
        }
        self.counters
            .documents
            .fetch_add(documents, Ordering::Relaxed);
        self.counters.chunks.fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// An `electra-reader` thread: the reader of one source.
pub(super) struct Reader {
    /// The source's index in the corpus.
    index: usize,
    source: Box<dyn DocumentSource>,
    epochs: Option<u64>,
    start: StreamPosition,
    feed: Feed,
    results: Sender<Message>,
}

impl Reader {
    /// The reader of source `index` of the corpus, from `start` on, for its epochs.
    pub fn new(
        index: usize,
        source: CorpusSource,
        start: StreamPosition,
        feed: Feed,
        results: Sender<Message>,
    ) -> Self {
        Self {
            index,
            source: source.source,
            epochs: source.epochs,
            start,
            feed,
            results,
        }
    }

    /// Reads everything, then tells the batcher how many chunks were sent, or sends the
    /// error (a panic included) in place of the next chunk.
    pub fn run(mut self) {
        let mut seq = 0u64;
        let outcome = catch_unwind(AssertUnwindSafe(|| self.read_all(&mut seq)));
        let error = match outcome {
            Ok(Ok(Some(chunks))) => {
                let _ = self.results.send(Message::End {
                    source: self.index,
                    chunks,
                });
                return;
            }
            Ok(Ok(None)) => return, // stopped or disconnected
            Ok(Err(e)) => e,
            Err(payload) => PipelineError::WorkerPanicked {
                thread: "electra-reader".into(),
                message: panic_message(payload.as_ref()),
            },
        };
        let _ = self.results.send(Message::Chunk {
            source: self.index,
            seq,
            epoch: 0,
            examples: Err(error),
            bad_records: BadRecordCounts::default(),
            seek_id: None,
        });
    }

    /// Sends every chunk of every epoch. `Ok(Some(n))`: done after n chunks; `Ok(None)`:
    /// stopped; `Err`: a read error, to be reported as chunk `*seq`.
    fn read_all(&mut self, seq: &mut u64) -> Result<Option<u64>> {
        let start = self.start;
        let mut epoch = start.epoch;
        while self.epochs.is_none_or(|n| epoch < n) {
            // The first epoch of a resumed stream starts at the cursor's document.
            let seek = (epoch == start.epoch && start.seeks()).then_some(Seek {
                document: start.document,
                doc_id: start.doc_id,
            });
            if !self.read_epoch(epoch, seek, seq)? {
                return Ok(None);
            }
            epoch += 1;
        }
        Ok(Some(*seq))
    }

    /// Sends the chunks of one epoch; false when stopped. An epoch read from its
    /// beginning that sends no document is an error (an empty corpus or slice).
    fn read_epoch(&mut self, epoch: u64, seek: Option<Seek>, seq: &mut u64) -> Result<bool> {
        let mut stream = self.source.epoch(epoch, seek)?;
        let mut sent = 0u64;
        while let Some(chunk) = stream.next_chunk() {
            let chunk = chunk?;
            let documents = chunk.documents() as u64;
            if !self.feed.send(self.index, *seq, epoch, chunk) {
                return Ok(false);
            }
            *seq += 1;
            sent += documents;
        }
        if seek.map_or(0, |s| s.document) == 0 && sent == 0 {
            return Err(stream.nothing_read());
        }
        Ok(true)
    }
}
