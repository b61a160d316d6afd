//! The masked examples of one chunk in flat buffers: what a loader worker hands its
//! batcher. Packing and masking write straight into them, so a chunk costs a handful of
//! allocations whatever its number of examples, and the batcher frees them in one go.

use std::ops::Range;

use crate::mask::{MaskedExample, Masker};
use crate::pack::Packer;

/// One masked example, borrowed (from a [`MaskedBlock`] or a [`MaskedExample`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExampleRef<'a> {
    /// The document it was cut from.
    pub doc_id: u64,
    /// Its index within the document.
    pub example_index: u32,
    /// Token ids after masking.
    pub input_ids: &'a [u32],
    /// Segment ids.
    pub segment_ids: &'a [u8],
    /// Positions chosen for prediction, ascending, relative to the example.
    pub masked_positions: &'a [u32],
    /// Original ids at those positions.
    pub masked_labels: &'a [u32],
}

impl MaskedExample {
    /// The example, borrowed.
    pub fn as_ref(&self) -> ExampleRef<'_> {
        ExampleRef {
            doc_id: self.doc_id,
            example_index: self.example_index,
            input_ids: &self.input_ids,
            segment_ids: &self.segment_ids,
            masked_positions: &self.masked_positions,
            masked_labels: &self.masked_labels,
        }
    }
}

/// Masked examples in flat buffers, each with the position of its document in the epoch.
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
}

/// `ends[i - 1]..ends[i]`, from 0 for the first.
fn span(ends: &[usize], i: usize) -> Range<usize> {
    let start = if i == 0 { 0 } else { ends[i - 1] };
    start..ends[i]
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

    /// Appends a masked example whose document is at position `document` in the epoch.
    pub fn push(&mut self, document: u64, example: ExampleRef<'_>) {
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
    }

    /// Packs the document `ids` (with cumulative `sentence_ends`) as `packer` does, masks
    /// every example as `masker` does, and appends them; `document` is its position in the
    /// epoch. The examples equal [`Packer::pack_document`] followed by [`Masker::mask`].
    #[allow(clippy::too_many_arguments)]
    pub fn push_document(
        &mut self,
        packer: &Packer,
        masker: &Masker,
        seed: u64,
        epoch: u64,
        document: u64,
        doc_id: u64,
        ids: &[u32],
        sentence_ends: &[u32],
    ) {
        let mut example_index = 0u32;
        packer.plan_document(seed, epoch, doc_id, ids.len(), sentence_ends, |a, b| {
            let start = self.input_ids.len();
            packer.write_example(a, b, ids, &mut self.input_ids, &mut self.segment_ids);
            masker.mask_in_place(
                seed,
                epoch,
                doc_id,
                example_index,
                &mut self.input_ids[start..],
                &mut self.masked_positions,
                &mut self.masked_labels,
            );
            self.documents.push(document);
            self.doc_ids.push(doc_id);
            self.example_indices.push(example_index);
            self.token_ends.push(self.input_ids.len());
            self.mask_ends.push(self.masked_positions.len());
            example_index += 1;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MaskStrategy;
    use crate::mask::tests::masker;
    use crate::pack::tests::packer;
    use crate::tokenize::tests::SPECIAL;

    fn stages(split: bool, strategy: MaskStrategy) -> (Packer, Masker) {
        (packer(64, split), masker(strategy))
    }

    /// A document of distinct ids with sentences of the given lengths; a few ids are
    /// special ids, which masking must skip.
    fn document(lengths: &[usize]) -> (Vec<u32>, Vec<u32>) {
        let n: usize = lengths.iter().sum();
        let ids = (0..n as u32)
            .map(|i| if i % 37 == 5 { SPECIAL.sep } else { 1000 + i })
            .collect();
        let ends = lengths
            .iter()
            .scan(0u32, |acc, &l| {
                *acc += l as u32;
                Some(*acc)
            })
            .collect();
        (ids, ends)
    }

    #[test]
    fn a_block_holds_exactly_the_packed_then_masked_examples() {
        let docs = [
            vec![3, 40, 7, 100, 2, 15],
            vec![200],
            vec![1],
            vec![],
            vec![20, 20, 20, 20, 20, 20, 20, 20],
            vec![9; 40],
        ];
        for split in [false, true] {
            for strategy in [MaskStrategy::Electra, MaskStrategy::Bert] {
                let (packer, masker) = stages(split, strategy);
                let mut block = MaskedBlock::new();
                let mut expected = Vec::new();
                for (d, lengths) in docs.iter().enumerate() {
                    let (ids, ends) = document(lengths);
                    let doc_id = 77 + d as u64;
                    let words = vec![true; ids.len()];
                    for e in packer.pack_document(9, 2, doc_id, &ids, &words, &ends) {
                        let masked = masker.mask(
                            9,
                            2,
                            e.doc_id,
                            e.example_index,
                            &e.input_ids,
                            &e.segment_ids,
                        );
                        expected.push((10 + d as u64, masked));
                    }
                    block.push_document(&packer, &masker, 9, 2, 10 + d as u64, doc_id, &ids, &ends);
                }
                assert!(expected.len() >= 10, "{} examples", expected.len());
                assert_eq!(block.len(), expected.len());
                for (i, (document, e)) in expected.iter().enumerate() {
                    assert_eq!(block.document(i), *document);
                    assert_eq!(block.get(i), e.as_ref(), "example {i}, split {split}");
                    assert!(!e.masked_positions.is_empty());
                }
                assert_eq!(block.iter().count(), block.len());
            }
        }
    }

    #[test]
    fn an_empty_block_has_no_examples() {
        let (packer, masker) = stages(true, MaskStrategy::Electra);
        let mut block = MaskedBlock::new();
        assert!(block.is_empty());
        block.push_document(&packer, &masker, 1, 0, 0, 5, &[], &[]);
        assert!(block.is_empty());
        assert_eq!(block.iter().count(), 0);
    }

    #[test]
    fn pushed_examples_come_back_unchanged() {
        let a = MaskedExample {
            doc_id: 3,
            example_index: 1,
            input_ids: vec![101, 7, 103, 102],
            segment_ids: vec![0; 4],
            masked_positions: vec![2],
            masked_labels: vec![9],
        };
        let b = MaskedExample {
            doc_id: 4,
            example_index: 0,
            input_ids: vec![101, 103, 102, 8, 102],
            segment_ids: vec![0, 0, 0, 1, 1],
            masked_positions: vec![1, 3],
            masked_labels: vec![5, 8],
        };
        let mut block = MaskedBlock::new();
        block.push(10, a.as_ref());
        block.push(12, b.as_ref());
        assert_eq!(block.len(), 2);
        assert_eq!((block.document(0), block.get(0)), (10, a.as_ref()));
        assert_eq!((block.document(1), block.get(1)), (12, b.as_ref()));
    }
}
