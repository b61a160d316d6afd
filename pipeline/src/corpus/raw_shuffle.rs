//! One shuffled epoch of raw files: the files in the epoch's order (read by the
//! [`DocumentReader`] it is given), their documents cut into blocks of `shuffle_window`
//! and each block permuted, from (seed, epoch, block), exactly as the shard stream cuts and
//! permutes its rows. So a raw corpus gives the same documents in the same order as shards
//! holding one file each, in file order.
//!
//! A block is held in memory (`shuffle_window` documents of text) and handed out in
//! chunks of about `chunk_bytes` of text. Every chunk of a block carries the id of the
//! block's first document in file order ([`PositionedChunk::seek_id`]): a cursor inside
//! the block seeks there, re-reads the block (the documents before the cursor are parsed
//! and permuted, not tokenized) and goes on. So a resumed stream costs what resuming in
//! order costs (the cursor's file is parsed up to the block) plus at most one block.
//!
//! The bad records met while a block is read are handed out before its documents, as a
//! chunk of their own (slice 0 only, as [`DataSlice::select_documents`] does): a resumed
//! stream drops those of the block it resumes in, which the first run counted.

use arrow_array::{ListArray, RecordBatch, StringArray, UInt32Array, UInt64Array};
use electra_schemas::documents;

use super::raw_files::nothing_read;
use super::shuffle::block_order;
use super::{EpochStream, PositionedChunk};
use crate::arrow_util::column;
use crate::error::{PipelineError, Result};
use crate::slice::DataSlice;
use crate::source::{BadRecordCounts, DocumentChunk, DocumentReader, Location};

/// A block of the epoch: its documents in read order and their permutation.
struct Block {
    /// Index of the block in the epoch.
    index: u64,
    /// The documents, in read order.
    batch: RecordBatch,
    /// `order[k]`: the row of `batch` at position k of the block.
    order: Vec<u32>,
    /// Text bytes of each row of `batch`.
    bytes: Vec<usize>,
    /// Next position of the block to hand out.
    next: usize,
    /// The id of its first document in read order (where a resumed reader seeks).
    seek_id: u64,
}

/// One shuffled epoch of raw files.
pub(super) struct ShuffledEpoch<'a> {
    reader: DocumentReader,
    files: &'a [Location],
    slice: DataSlice,
    /// `(seed, epoch)` of the permutations.
    key: (u64, u64),
    window: usize,
    chunk_bytes: usize,
    /// Documents read but not yet in a block.
    leftover: Option<RecordBatch>,
    next_block: u64,
    /// Positions before this are not handed out (a resumed stream).
    start: u64,
    /// The block a resumed stream starts in: its bad records were counted by the first run.
    counted_block: Option<u64>,
    /// The block's bad records still to hand out, before its documents.
    counts: BadRecordCounts,
    block: Option<Block>,
    /// Documents of the whole stream read this epoch.
    seen: u64,
}

impl<'a> ShuffledEpoch<'a> {
    /// The epoch `key = (seed, epoch)` of `files`, read by `reader` (files in the epoch's
    /// order, already sought to the start's block when `start` is given), in blocks of
    /// `window` documents, handed out in chunks of about `chunk_bytes` of text.
    pub fn new(
        reader: DocumentReader,
        files: &'a [Location],
        slice: DataSlice,
        key: (u64, u64),
        window: usize,
        chunk_bytes: usize,
        start: Option<u64>,
    ) -> Self {
        let start_at = start.unwrap_or(0);
        Self {
            reader,
            files,
            slice,
            key,
            window,
            chunk_bytes: chunk_bytes.max(1),
            leftover: None,
            next_block: start_at / window as u64,
            start: start_at,
            counted_block: start.map(|p| p / window as u64),
            counts: BadRecordCounts::default(),
            block: None,
            seen: 0,
        }
    }

    /// Reads the next block and draws its permutation; false at the end of the epoch
    /// (its trailing bad records, if any, are still to hand out).
    fn read_block(&mut self) -> Result<bool> {
        let mut parts = Vec::new();
        let mut have = 0;
        while have < self.window {
            let batch = match self.leftover.take() {
                Some(batch) => batch,
                None => match self.reader.next() {
                    None => break,
                    Some(chunk) => {
                        let chunk = chunk?;
                        self.counts.add(&chunk.bad_records);
                        chunk.batch
                    }
                },
            };
            let need = self.window - have;
            if batch.num_rows() > need {
                parts.push(batch.slice(0, need));
                self.leftover = Some(batch.slice(need, batch.num_rows() - need));
                have = self.window;
            } else {
                have += batch.num_rows();
                parts.push(batch);
            }
        }
        if self.counted_block == Some(self.next_block) {
            // The cursor is past this block's first example, so past its bad records.
            self.counts = BadRecordCounts::default();
        }
        if have == 0 {
            return Ok(false);
        }
        self.seen += have as u64;
        let batch = arrow_select::concat::concat_batches(&documents::schema(), &parts)?;
        let (seed, epoch) = self.key;
        self.block = Some(Block {
            index: self.next_block,
            order: block_order(seed, epoch, self.next_block, have),
            bytes: text_bytes(&batch)?,
            seek_id: column::<UInt64Array>(&batch, documents::DOC_ID)?.value(0),
            batch,
            next: 0,
        });
        self.next_block += 1;
        Ok(true)
    }

    /// The block's bad records as a chunk of their own, when there are any for this
    /// slice to count.
    fn counts_chunk(&mut self) -> Option<PositionedChunk> {
        let counts = std::mem::take(&mut self.counts);
        if self.slice.index != 0 || counts.total() == 0 {
            return None;
        }
        let position = self.next_block.saturating_sub(1) * self.window as u64;
        Some(PositionedChunk {
            first_document: position,
            stride: 1,
            chunk: DocumentChunk {
                batch: RecordBatch::new_empty(documents::schema()),
                bad_records: counts,
            },
            rows: None,
            seek_id: self.block.as_ref().map(|b| b.seek_id),
        })
    }

    /// The next chunk of the current block holding documents of this slice, if any.
    fn next_of_block(&mut self) -> Result<Option<PositionedChunk>> {
        let Some(block) = &mut self.block else {
            return Ok(None);
        };
        let base = block.index * self.window as u64;
        while block.next < block.order.len() {
            let from = block.next;
            let mut bytes = 0;
            while block.next < block.order.len() && bytes < self.chunk_bytes {
                bytes += block.bytes[block.order[block.next] as usize];
                block.next += 1;
            }
            let (start, slice) = (self.start, self.slice);
            let kept: Vec<usize> = (from..block.next)
                .filter(|&k| base + k as u64 >= start && slice.owns(base + k as u64))
                .collect();
            let Some(&first) = kept.first() else {
                continue;
            };
            let rows: Vec<u32> = kept.iter().map(|&k| block.order[k]).collect();
            let batch =
                arrow_select::take::take_record_batch(&block.batch, &UInt32Array::from(rows))?;
            return Ok(Some(PositionedChunk {
                first_document: base + first as u64,
                stride: self.slice.count as u64,
                chunk: DocumentChunk {
                    batch,
                    bad_records: BadRecordCounts::default(),
                },
                rows: None,
                seek_id: Some(block.seek_id),
            }));
        }
        self.block = None;
        Ok(None)
    }

    fn next_chunk_inner(&mut self) -> Result<Option<PositionedChunk>> {
        loop {
            if let Some(counts) = self.counts_chunk() {
                return Ok(Some(counts));
            }
            if let Some(chunk) = self.next_of_block()? {
                return Ok(Some(chunk));
            }
            if !self.read_block()? {
                return Ok(self.counts_chunk());
            }
        }
    }
}

impl EpochStream for ShuffledEpoch<'_> {
    fn next_chunk(&mut self) -> Option<Result<PositionedChunk>> {
        self.next_chunk_inner().transpose()
    }

    fn nothing_read(self: Box<Self>) -> PipelineError {
        nothing_read(self.files, self.slice, self.seen)
    }
}

/// The text bytes of each document of a documents batch.
fn text_bytes(batch: &RecordBatch) -> Result<Vec<usize>> {
    let sentences: &ListArray = column(batch, documents::SENTENCES)?;
    let offsets = sentences.value_offsets();
    let values = sentences
        .values()
        .as_any()
        .downcast_ref::<StringArray>()
        .map(|s| s.value_offsets());
    Ok((0..batch.num_rows())
        .map(|row| {
            let (a, b) = (offsets[row] as usize, offsets[row + 1] as usize);
            values.map_or(0, |v| (v[b] - v[a]) as usize)
        })
        .collect())
}
