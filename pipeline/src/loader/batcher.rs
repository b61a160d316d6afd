//! The batcher thread: draws examples one slot at a time from the sources' results, in
//! the order the corpus's [`Mixer`] says ([`Inputs`]; a single corpus is a mixture of one),
//! cuts batches and queues them; the bad-record counts of a chunk go to the batch that
//! takes its last example.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::inputs::{Inputs, Next, Queued};
use super::{Counters, Message};
use crate::batch::{Batch, BatchShape};
use crate::block::ExampleRef;
use crate::corpus::Mixer;
use crate::cursor::DataCursor;
use crate::error::{PipelineError, Result};
use crate::parallel::panic_message;
use crate::source::BadRecordCounts;

/// The `electra-batcher` thread.
pub(super) struct Batcher {
    /// Batches consumed before the start (the first batch out is numbered this).
    pub batches_done: u64,
    pub batch_size: usize,
    pub shape: BatchShape,
    /// The draws, from the start cursor.
    pub mixer: Mixer,
    /// Whether the corpus is a mixture (its cursors hold every source's state).
    pub is_mixture: bool,
    pub results: Receiver<Message>,
    /// Each source's slot tokens.
    pub slots: Vec<Sender<()>>,
    pub output: Sender<Result<Batch>>,
    pub stop: Arc<AtomicBool>,
    pub counters: Arc<Counters>,
}

/// The batch being filled: its examples (with their sources) and the bad records due with
/// it.
#[derive(Default)]
struct Forming {
    examples: Vec<(usize, Queued)>,
    bad: BadRecordCounts,
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
    pub fn run(mut self) {
        let starts = (0..self.slots.len())
            .map(|s| self.mixer.source_cursor(s).position)
            .collect();
        let mut inputs = Inputs::new(
            self.results.clone(),
            std::mem::take(&mut self.slots),
            starts,
            self.stop.clone(),
            self.counters.clone(),
        );
        let mut held = None;
        if let Err(e) = self.batch_all(&mut inputs, &mut held) {
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

    /// Draws examples and sends batches, holding the newest one back in `held` so that the
    /// counts of chunks without examples at the very end can join it.
    fn batch_all(&mut self, inputs: &mut Inputs, held: &mut Option<Batch>) -> Result<()> {
        let mut forming = Forming::default();
        let mut seq_no = self.batches_done;
        loop {
            match inputs.next(&mut self.mixer, &mut forming.bad)? {
                Next::Stopped => return Ok(()),
                Next::End => break,
                Next::Example(source, queued) => {
                    forming.bad.add(&queued.bad);
                    forming.examples.push((source, queued));
                    if forming.examples.len() == self.batch_size {
                        let batch = self.cut(&mut forming, seq_no);
                        seq_no += 1;
                        if !self.hold(held, batch) {
                            return Ok(());
                        }
                    }
                }
            }
        }
        self.finish(forming, held, seq_no);
        Ok(())
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
    fn finish(&self, mut forming: Forming, held: &mut Option<Batch>, seq_no: u64) {
        if !forming.examples.is_empty() {
            let batch = self.cut(&mut forming, seq_no);
            if !self.hold(held, batch) {
                return;
            }
        }
        if let Some(mut last) = held.take() {
            last.bad_records.add(&forming.bad);
            self.send(last);
        }
    }

    /// The forming batch's examples as batch `seq_no`, with the cursor after them.
    fn cut(&self, forming: &mut Forming, seq_no: u64) -> Batch {
        let taken = std::mem::take(&mut forming.examples);
        let bad = std::mem::take(&mut forming.bad);
        let epoch = taken.iter().map(|(_, q)| q.epoch).min().unwrap_or(0);
        let examples: Vec<ExampleRef<'_>> =
            taken.iter().map(|(_, q)| q.block.get(q.index)).collect();
        let mut batch = Batch::from_refs(seq_no, epoch, &examples, &self.shape, bad);
        if self.is_mixture {
            batch.cursor = DataCursor {
                epoch,
                mixture: Some(self.mixer.cursor()),
                ..DataCursor::default()
            };
            batch.example_sources = taken.iter().map(|(s, _)| *s as u32).collect();
        } else {
            batch.cursor = DataCursor::at(self.mixer.source_cursor(0).position);
        }
        batch
    }
}
