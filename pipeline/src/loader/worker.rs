//! The worker threads: each turns a chunk of documents into a block of masked examples
//! (tokenize unless the chunk is tokenized already, pack, mask).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender};
use electra_schemas::tokenized;

use super::{Message, Work};
use crate::block::{ChunkDocuments, MaskedBlock};
use crate::config::DataConfig;
use crate::corpus::PositionedChunk;
use crate::error::{PipelineError, Result};
use crate::mask::{MaskOptions, Masker};
use crate::pack::{PackOptions, Packer};
use crate::parallel::panic_message;
use crate::tokenize::TextTokenizer;

/// Everything a worker needs to turn a chunk into masked examples.
pub(super) struct Stages {
    tokenizer: TextTokenizer,
    packer: Packer,
    masker: Masker,
    /// The packing and masking seed of each source of the corpus.
    seeds: Vec<u64>,
}

impl Stages {
    /// The stages of `config`, with `tokenizer`'s special ids and vocabulary, for a corpus
    /// of one source seeded `seed`.
    pub fn new(config: &DataConfig, tokenizer: TextTokenizer, seed: u64) -> Self {
        let special = tokenizer.special();
        Self {
            packer: Packer::new(PackOptions::from_config(config), special),
            masker: Masker::new(
                MaskOptions::from_config(config, tokenizer.vocab_size()),
                special,
            ),
            tokenizer,
            seeds: vec![seed],
        }
    }

    /// The same stages for the corpus's sources, seeded `seeds`.
    pub fn with_seeds(self, seeds: Vec<u64>) -> Self {
        Self { seeds, ..self }
    }

    /// Whether the masker needs word starts (shards must then be read with them).
    pub fn needs_word_starts(&self) -> bool {
        self.masker.needs_word_starts()
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Packs and masks a chunk's documents (its `rows`, in that order, or all of them) at
    /// their positions of `epoch`, with the seed of its `source`.
    fn process(
        &self,
        chunk: &PositionedChunk,
        source: usize,
        epoch: u64,
    ) -> Result<Box<MaskedBlock>> {
        // Every source of the corpus has a seed (a bad index panics: a worker error).
        let seed = self.seeds[source];
        let batch = &chunk.chunk.batch;
        #[cfg(test)]
        super::tests::fault::check(batch);
        let mut block = MaskedBlock::new();
        if batch.num_rows() == 0 {
            // A slice's chunk that only carries bad-record counts.
            return Ok(Box::new(block));
        }
        let is_tokenized = batch
            .schema()
            .column_with_name(tokenized::INPUT_IDS)
            .is_some();
        let tokenized = if is_tokenized {
            batch.clone()
        } else {
            self.tokenizer.tokenize(batch)?
        };
        let documents = ChunkDocuments {
            batch: &tokenized,
            rows: chunk.rows.as_deref(),
            first_document: chunk.first_document,
            stride: chunk.stride,
            word_starts: self.masker.needs_word_starts(),
        };
        block.pack_tokenized(&self.packer, seed, epoch, documents)?;
        block.mask(&self.masker, seed, epoch);
        Ok(Box::new(block))
    }
}

/// A worker thread's loop: chunks in, blocks (or errors, a panic included) out, until the
/// reader is done or the loader stops.
pub(super) fn worker(
    thread: &str,
    stages: &Stages,
    work: &Receiver<Work>,
    results: &Sender<Message>,
    stop: &AtomicBool,
) {
    while let Ok(Work {
        source,
        seq,
        epoch,
        chunk,
    }) = work.recv()
    {
        if stop.load(Ordering::Relaxed) {
            continue; // drain quickly so the reader is never left blocked
        }
        let examples = catch_unwind(AssertUnwindSafe(|| stages.process(&chunk, source, epoch)))
            .unwrap_or_else(|payload| {
                Err(PipelineError::WorkerPanicked {
                    thread: thread.to_string(),
                    message: panic_message(payload.as_ref()),
                })
            });
        let message = Message::Chunk {
            source,
            seq,
            epoch,
            examples,
            bad_records: chunk.chunk.bad_records,
            seek_id: chunk.seek_id,
        };
        if results.send(message).is_err() {
            return;
        }
    }
}
