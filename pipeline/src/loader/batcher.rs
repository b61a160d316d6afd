//! The batcher thread: puts the workers' blocks back in chunk order, drops the examples a
//! resumed loader already consumed, cuts batches and queues them; the bad-record counts of
//! a chunk go to the batch that takes its last example.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::{Counters, LoaderStart, Message};
use crate::batch::{Batch, BatchShape, DataCursor};
use crate::block::{ExampleRef, MaskedBlock};
use crate::error::{PipelineError, Result};
use crate::parallel::panic_message;
use crate::source::BadRecordCounts;

/// The `electra-batcher` thread.
pub(super) struct Batcher {
    pub start: LoaderStart,
    pub batch_size: usize,
    pub shape: BatchShape,
    pub results: Receiver<Message>,
    pub slots: Sender<()>,
    pub output: Sender<Result<Batch>>,
    pub stop: Arc<AtomicBool>,
    pub counters: Arc<Counters>,
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
    /// Runs the batcher; a panic becomes an error in the stream, never a silent end.
    pub fn run_guarded(self) {
        let output = self.output.clone();
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| self.run())) {
            // Never let a batcher bug look like the end of the data.
            let _ = output.send(Err(PipelineError::WorkerPanicked {
                thread: "electra-batcher".into(),
                message: panic_message(payload.as_ref()),
            }));
        }
    }

    /// Batches everything; an error goes out after the batches before it.
    pub fn run(self) {
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
        while end.is_none_or(|n| next_seq < n) {
            let Some(message) = self.receive()? else {
                return Ok(());
            };
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
                self.accept(&mut pending, epoch, examples?, bad);
                while pending.examples.len() >= self.batch_size {
                    let batch = self.cut(&mut pending, self.batch_size, seq_no);
                    seq_no += 1;
                    if !self.hold(held, batch) {
                        return Ok(());
                    }
                }
            }
        }
        self.finish(pending, held, seq_no);
        Ok(())
    }

    /// The next message from the reader or a worker; `None` when the loader is stopping.
    /// Every sender gone before the end is [`PipelineError::WorkerExited`].
    fn receive(&self) -> Result<Option<Message>> {
        let Ok(message) = self.results.recv() else {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            return Err(PipelineError::WorkerExited {
                thread: "electra-reader or electra-worker".into(),
            });
        };
        if self.stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        Ok(Some(message))
    }

    /// Takes the next chunk's block (in order): its examples not consumed before the start
    /// cursor wait for a batch, its counts for the batch that takes its last example.
    fn accept(
        &self,
        pending: &mut Pending,
        epoch: u64,
        block: Box<MaskedBlock>,
        bad: BadRecordCounts,
    ) {
        let block: Rc<MaskedBlock> = Rc::from(block);
        self.counters
            .examples
            .fetch_add(block.len() as u64, Ordering::Relaxed);
        let cursor = self.start.cursor;
        pending.examples.extend(
            (0..block.len())
                .filter(|&i| !cursor.consumed(epoch, block.document(i), block.get(i).example_index))
                .map(|i| (epoch, Rc::clone(&block), i)),
        );
        pending.markers.push((pending.examples.len(), bad));
    }

    /// Holds `batch` back and sends the one held before it; false when the consumer is
    /// gone.
    fn hold(&self, held: &mut Option<Batch>, batch: Batch) -> bool {
        match held.replace(batch) {
            Some(previous) => self.send(previous),
            None => true,
        }
    }

    /// End of a finite stream: the remainder is the last (smaller) batch, and every count
    /// not yet attributed goes to the last batch.
    fn finish(&self, mut pending: Pending, held: &mut Option<Batch>, seq_no: u64) {
        if !pending.examples.is_empty() {
            let n = pending.examples.len();
            let batch = self.cut(&mut pending, n, seq_no);
            if !self.hold(held, batch) {
                return;
            }
        }
        if let Some(mut last) = held.take() {
            for (_, bad) in pending.markers.drain(..) {
                last.bad_records.add(&bad);
            }
            last.bad_records.add(&pending.bad);
            self.send(last);
        }
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
