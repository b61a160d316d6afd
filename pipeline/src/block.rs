//! The examples of one chunk in flat buffers: the one packing and masking path, what a
//! loader worker hands its batcher. Documents are packed straight into the buffers
//! ([`MaskedBlock::pack_tokenized`]), then every example is masked in place
//! ([`MaskedBlock::mask`]), so a chunk costs a handful of allocations whatever its number
//! of examples, and the batcher frees them in one go.

use std::ops::Range;

use arrow_array::{RecordBatch, UInt32Array, UInt64Array};
use electra_schemas::tokenized;

use crate::arrow_util::{column, list_column};
use crate::error::Result;
use crate::mask::Masker;
use crate::pack::Packer;
use crate::word_starts::WordStarts;

/// One example, borrowed from a [`MaskedBlock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExampleRef<'a> {
    /// The document it was cut from.
    pub doc_id: u64,
    /// Its index within the document.
    pub example_index: u32,
    /// Token ids (after masking, once masked).
    pub input_ids: &'a [u32],
    /// Segment ids.
    pub segment_ids: &'a [u8],
    /// Positions chosen for prediction, ascending, relative to the example.
    pub masked_positions: &'a [u32],
    /// Original ids at those positions.
    pub masked_labels: &'a [u32],
}

/// Examples in flat buffers, each with the position of its document in the epoch: packed,
/// then masked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaskedBlock {
    documents: Vec<u64>,
    doc_ids: Vec<u64>,
    example_indices: Vec<u32>,
    /// Example i's tokens are `token_ends[i - 1]..token_ends[i]` (from 0 for the first).
    token_ends: Vec<usize>,
    input_ids: Vec<u32>,
    segment_ids: Vec<u8>,
    /// Example i's predictions are `mask_ends[i - 1]..mask_ends[i]`.
    mask_ends: Vec<usize>,
    masked_positions: Vec<u32>,
    masked_labels: Vec<u32>,
    /// Whether each token starts a word, aligned with `input_ids`, when the documents were
    /// packed with their word starts (empty otherwise).
    word_starts: Vec<bool>,
    /// The first `masked` examples are masked; those after them are packed only.
    masked: usize,
}

/// `ends[i - 1]..ends[i]`, from 0 for the first.
fn span(ends: &[usize], i: usize) -> Range<usize> {
    let start = if i == 0 { 0 } else { ends[i - 1] };
    start..ends[i]
}

/// The documents of a chunk to pack: rows of a tokenized batch and their positions.
#[derive(Debug, Clone, Copy)]
pub struct ChunkDocuments<'a> {
    /// Tokenized documents ([`tokenized::schema`]; `word_starts` is not read).
    pub batch: &'a RecordBatch,
    /// The rows to pack, in order (all of them, in order, when `None`).
    pub rows: Option<&'a [u32]>,
    /// Position in the epoch of the first document.
    pub first_document: u64,
    /// Positions between consecutive documents.
    pub stride: u64,
    /// Read the documents' word starts (the `word_starts` column) and pack them with the
    /// tokens, for a masker that [needs them](Masker::needs_word_starts).
    pub word_starts: bool,
}

impl MaskedBlock {
    /// An empty block.
    pub fn new() -> Self {
        Self::default()
    }

    /// Examples in the block.
    pub fn len(&self) -> usize {
        self.doc_ids.len()
    }

    /// Whether the block holds no example.
    pub fn is_empty(&self) -> bool {
        self.doc_ids.is_empty()
    }

    /// Position in the epoch of example `i`'s document.
    pub fn document(&self, i: usize) -> u64 {
        self.documents[i]
    }

    /// Example `i`.
    pub fn get(&self, i: usize) -> ExampleRef<'_> {
        let tokens = span(&self.token_ends, i);
        let masked = span(&self.mask_ends, i);
        ExampleRef {
            doc_id: self.doc_ids[i],
            example_index: self.example_indices[i],
            input_ids: &self.input_ids[tokens.clone()],
            segment_ids: &self.segment_ids[tokens],
            masked_positions: &self.masked_positions[masked.clone()],
            masked_labels: &self.masked_labels[masked],
        }
    }

    /// The examples, borrowed, in order.
    pub fn iter(&self) -> impl Iterator<Item = ExampleRef<'_>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Appends an example that is already masked, its document at position `document` in
    /// the epoch. Mask the block's packed examples first: an example pushed after unmasked
    /// ones would be masked again with them.
    pub fn push(&mut self, document: u64, example: ExampleRef<'_>) {
        let all_masked = self.masked == self.len();
        if !self.word_starts.is_empty() {
            // No word starts come with it: none of its tokens is one.
            let n = self.word_starts.len() + example.input_ids.len();
            self.word_starts.resize(n, false);
        }
        self.documents.push(document);
        self.doc_ids.push(example.doc_id);
        self.example_indices.push(example.example_index);
        self.input_ids.extend_from_slice(example.input_ids);
        self.segment_ids.extend_from_slice(example.segment_ids);
        self.token_ends.push(self.input_ids.len());
        self.masked_positions
            .extend_from_slice(example.masked_positions);
        self.masked_labels.extend_from_slice(example.masked_labels);
        self.mask_ends.push(self.masked_positions.len());
        if all_masked {
            self.masked = self.len();
        }
    }

    /// Word starts of example `i`, when the block was packed with them.
    pub fn word_starts(&self, i: usize) -> Option<&[bool]> {
        let aligned = self.word_starts.len() == self.input_ids.len();
        aligned.then(|| &self.word_starts[span(&self.token_ends, i)])
    }

    /// Packs the document `ids` (with cumulative `sentence_ends`, and its `word_starts`
    /// when a masker needs them) as `packer` plans it and appends its examples, unmasked;
    /// `document` is its position in the epoch. Pack every document of a block with word
    /// starts, or none.
    #[allow(clippy::too_many_arguments)]
    pub fn pack_document(
        &mut self,
        packer: &Packer,
        seed: u64,
        epoch: u64,
        document: u64,
        doc_id: u64,
        ids: &[u32],
        word_starts: Option<&[bool]>,
        sentence_ends: &[u32],
    ) {
        let mut example_index = 0u32;
        packer.plan_document(seed, epoch, doc_id, ids.len(), sentence_ends, |a, b| {
            packer.write_example(a, b, ids, &mut self.input_ids, &mut self.segment_ids);
            if let Some(starts) = word_starts {
                packer.write_word_starts(a, b, starts, &mut self.word_starts);
            }
            self.documents.push(document);
            self.doc_ids.push(doc_id);
            self.example_indices.push(example_index);
            self.token_ends.push(self.input_ids.len());
            self.mask_ends.push(self.masked_positions.len());
            example_index += 1;
        });
    }

    /// Packs the documents of a chunk, in order ([`pack_document`](Self::pack_document)
    /// for each), with their word starts when `chunk.word_starts`.
    pub fn pack_tokenized(
        &mut self,
        packer: &Packer,
        seed: u64,
        epoch: u64,
        chunk: ChunkDocuments<'_>,
    ) -> Result<()> {
        let batch = chunk.batch;
        let doc_ids: &UInt64Array = column(batch, tokenized::DOC_ID)?;
        let (io, ids): (&[i32], &UInt32Array) = list_column(batch, tokenized::INPUT_IDS)?;
        let (eo, ends): (&[i32], &UInt32Array) = list_column(batch, tokenized::SENTENCE_ENDS)?;
        let (ids, ends) = (ids.values(), ends.values());
        let words = match chunk.word_starts {
            true => Some(WordStarts::of(batch)?),
            false => None,
        };
        let mut starts = Vec::new();
        let documents = chunk.rows.map_or(batch.num_rows(), <[u32]>::len);
        for k in 0..documents {
            let row = chunk.rows.map_or(k, |rows| rows[k] as usize);
            let doc_ids_row = &ids[io[row] as usize..io[row + 1] as usize];
            if let Some(words) = &words {
                words.row(row, doc_ids_row.len(), &mut starts);
            }
            self.pack_document(
                packer,
                seed,
                epoch,
                chunk.first_document + k as u64 * chunk.stride,
                doc_ids.value(row),
                doc_ids_row,
                words.as_ref().map(|_| starts.as_slice()),
                &ends[eo[row] as usize..eo[row + 1] as usize],
            );
        }
        Ok(())
    }

    /// Masks, in place, every example packed since the last call, as `masker` does.
    pub fn mask(&mut self, masker: &Masker, seed: u64, epoch: u64) {
        let with_word_starts = self.word_starts.len() == self.input_ids.len();
        for i in self.masked..self.len() {
            let tokens = span(&self.token_ends, i);
            masker.mask_in_place(
                seed,
                epoch,
                self.doc_ids[i],
                self.example_indices[i],
                &mut self.input_ids[tokens.clone()],
                with_word_starts.then(|| &self.word_starts[tokens]),
                &mut self.masked_positions,
                &mut self.masked_labels,
            );
            self.mask_ends[i] = self.masked_positions.len();
        }
        self.masked = self.len();
    }
}

#[cfg(test)]
pub(crate) mod tests;
