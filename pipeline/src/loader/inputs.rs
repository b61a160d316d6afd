//! The batcher's inputs: the workers' results of every source, put back in each source's
//! chunk order, and drawn one example at a time in the order the corpus's [`Mixer`] says.
//!
//! A source's next chunk is taken (and its slot token handed back to its reader) only when
//! an example of that source is needed and none is queued, so each source's reader runs
//! ahead by its slots and no further: a source the schedule rarely needs never floods
//! memory. The results that arrive meanwhile wait in their source's reorder buffer.

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::{Counters, Message};
use crate::block::MaskedBlock;
use crate::corpus::Mixer;
use crate::cursor::StreamPosition;
use crate::error::{PipelineError, Result};
use crate::source::BadRecordCounts;

/// An example waiting to be drawn, or drawn.
pub(super) struct Queued {
    /// Its source's epoch.
    pub epoch: u64,
    pub block: Rc<MaskedBlock>,
    /// Its index in `block`.
    pub index: usize,
    /// Where a cursor just after it seeks to, when not its document's own id.
    pub seek_id: Option<u64>,
    /// Bad records due with the batch that takes it (those of the chunks it ends).
    pub bad: BadRecordCounts,
}

/// A worker's result waiting for its turn.
struct Arrived {
    epoch: u64,
    examples: Result<Box<MaskedBlock>>,
    bad: BadRecordCounts,
    seek_id: Option<u64>,
}

/// One source's results.
struct SourceInput {
    reorder: BTreeMap<u64, Arrived>,
    next_seq: u64,
    /// Chunks the reader sent in all, once it is done.
    end: Option<u64>,
    queue: VecDeque<Queued>,
    /// The examples before this position were consumed before a resume.
    start: StreamPosition,
    /// Hands slot tokens back to the source's reader.
    slots: Sender<()>,
}

/// What [`Inputs::next`] gives.
pub(super) enum Next {
    /// The next example, from this source.
    Example(usize, Queued),
    /// Every source is spent.
    End,
    /// The loader is stopping.
    Stopped,
}

/// Every source's results, drawn by the mixer.
pub(super) struct Inputs {
    sources: Vec<SourceInput>,
    results: Receiver<Message>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

impl Inputs {
    /// The inputs of the sources whose readers take tokens from `slots` and start at
    /// `starts`, their results coming from `results`.
    pub fn new(
        results: Receiver<Message>,
        slots: Vec<Sender<()>>,
        starts: Vec<StreamPosition>,
        stop: Arc<AtomicBool>,
        counters: Arc<Counters>,
    ) -> Self {
        let sources = slots
            .into_iter()
            .zip(starts)
            .map(|(slots, start)| SourceInput {
                reorder: BTreeMap::new(),
                next_seq: 0,
                end: None,
                queue: VecDeque::new(),
                start,
                slots,
            })
            .collect();
        Self {
            sources,
            results,
            stop,
            counters,
        }
    }

    /// The example of the mixer's next slot, recorded in the mixer; `loose` takes the bad
    /// records of chunks that end no example (they are due with the batch in progress).
    pub fn next(&mut self, mixer: &mut Mixer, loose: &mut BadRecordCounts) -> Result<Next> {
        loop {
            let Some(s) = mixer.next_source() else {
                return Ok(Next::End);
            };
            let input = &mut self.sources[s];
            if let Some(queued) = input.queue.pop_front() {
                let example = queued.block.get(queued.index);
                let position = StreamPosition::after(
                    queued.epoch,
                    queued.block.document(queued.index),
                    queued.seek_id.unwrap_or(example.doc_id),
                    example.example_index,
                );
                mixer.record(s, position, example.input_ids.len() as u64);
                return Ok(Next::Example(s, queued));
            }
            if input.end == Some(input.next_seq) {
                mixer.exhaust(s);
                continue;
            }
            if let Some(arrived) = input.reorder.remove(&input.next_seq) {
                input.next_seq += 1;
                let _ = input.slots.try_send(());
                self.accept(s, arrived, loose)?;
                continue;
            }
            match self.receive()? {
                Some(message) => self.route(message),
                None => return Ok(Next::Stopped),
            }
        }
    }

    /// Files a message under its source.
    fn route(&mut self, message: Message) {
        match message {
            Message::End { source, chunks } => self.sources[source].end = Some(chunks),
            Message::Chunk {
                source,
                seq,
                epoch,
                examples,
                bad_records,
                seek_id,
            } => {
                let arrived = Arrived {
                    epoch,
                    examples,
                    bad: bad_records,
                    seek_id,
                };
                self.sources[source].reorder.insert(seq, arrived);
            }
        }
    }

    /// Takes source `s`'s next chunk: its examples not consumed before the start join the
    /// source's queue; its bad records are due with its last example, or (none) with the
    /// queue's last, or (none queued) with the batch in progress (`loose`).
    fn accept(&mut self, s: usize, arrived: Arrived, loose: &mut BadRecordCounts) -> Result<()> {
        let block: Rc<MaskedBlock> = Rc::from(arrived.examples?);
        self.counters
            .examples
            .fetch_add(block.len() as u64, Ordering::Relaxed);
        let input = &mut self.sources[s];
        let start = input.start;
        input.queue.extend(
            (0..block.len())
                .filter(|&i| {
                    !start.consumed(arrived.epoch, block.document(i), block.get(i).example_index)
                })
                .map(|index| Queued {
                    epoch: arrived.epoch,
                    block: Rc::clone(&block),
                    index,
                    seek_id: arrived.seek_id,
                    bad: BadRecordCounts::default(),
                }),
        );
        match input.queue.back_mut() {
            Some(last) => last.bad.add(&arrived.bad),
            None => loose.add(&arrived.bad),
        }
        Ok(())
    }

    /// The next message from a reader or a worker; `None` when the loader is stopping.
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
}
