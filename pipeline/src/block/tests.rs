//! Block tests: masking a packed block is masking each of its examples on its own, so how
//! documents are grouped into chunks changes nothing.

use super::*;
use crate::config::MaskStrategy;
use crate::mask::tests::{document, masker};
use crate::pack::tests::packer;

const DOCS: [&[usize]; 6] = [
    &[3, 40, 7, 100, 2, 15],
    &[200],
    &[1],
    &[],
    &[20, 20, 20, 20, 20, 20, 20, 20],
    &[9; 40],
];

/// The documents of [`DOCS`] packed into one block, at positions 10, 11, ...
fn packed(packer: &Packer) -> MaskedBlock {
    let mut block = MaskedBlock::new();
    for (d, lengths) in DOCS.iter().enumerate() {
        let (ids, ends) = document(lengths);
        block.pack_document(
            packer,
            9,
            2,
            10 + d as u64,
            77 + d as u64,
            &ids,
            None,
            &ends,
        );
    }
    block
}

#[test]
fn a_masked_block_holds_each_packed_example_masked_on_its_own() {
    for split in [false, true] {
        for strategy in [MaskStrategy::Electra, MaskStrategy::Bert] {
            let (packer, masker) = (packer(64, split), masker(strategy));
            let unmasked = packed(&packer);
            let mut block = unmasked.clone();
            block.mask(&masker, 9, 2);
            assert!(block.len() >= 10, "{} examples", block.len());
            assert_eq!(block.len(), unmasked.len());
            for (i, before) in unmasked.iter().enumerate() {
                let mut ids = before.input_ids.to_vec();
                let (mut positions, mut labels) = (Vec::new(), Vec::new());
                masker.mask_in_place(
                    9,
                    2,
                    before.doc_id,
                    before.example_index,
                    &mut ids,
                    None,
                    &mut positions,
                    &mut labels,
                );
                let expected = ExampleRef {
                    input_ids: &ids,
                    masked_positions: &positions,
                    masked_labels: &labels,
                    ..before
                };
                assert_eq!(block.get(i), expected, "example {i}, split {split}");
                assert_eq!(block.document(i), unmasked.document(i));
                assert!(!positions.is_empty());
            }
            assert_eq!(block.iter().count(), block.len());
        }
    }
}

#[test]
fn masking_after_each_document_or_once_per_chunk_gives_the_same_block() {
    let (packer, masker) = (packer(64, true), masker(MaskStrategy::Bert));
    let mut once = packed(&packer);
    once.mask(&masker, 9, 2);
    let mut each = MaskedBlock::new();
    for (d, lengths) in DOCS.iter().enumerate() {
        let (ids, ends) = document(lengths);
        each.pack_document(
            &packer,
            9,
            2,
            10 + d as u64,
            77 + d as u64,
            &ids,
            None,
            &ends,
        );
        each.mask(&masker, 9, 2);
        each.mask(&masker, 9, 2); // nothing new: a no-op
    }
    assert_eq!(each, once);
}

#[test]
fn an_empty_block_has_no_examples() {
    let (packer, masker) = (packer(64, true), masker(MaskStrategy::Electra));
    let mut block = MaskedBlock::new();
    assert!(block.is_empty());
    block.pack_document(&packer, 1, 0, 0, 5, &[], None, &[]);
    block.mask(&masker, 1, 0);
    assert!(block.is_empty());
    assert_eq!(block.iter().count(), 0);
}

#[test]
fn pushed_examples_come_back_unchanged() {
    let a = ExampleRef {
        doc_id: 3,
        example_index: 1,
        input_ids: &[101, 7, 103, 102],
        segment_ids: &[0; 4],
        masked_positions: &[2],
        masked_labels: &[9],
    };
    let b = ExampleRef {
        doc_id: 4,
        example_index: 0,
        input_ids: &[101, 103, 102, 8, 102],
        segment_ids: &[0, 0, 0, 1, 1],
        masked_positions: &[1, 3],
        masked_labels: &[5, 8],
    };
    let mut block = MaskedBlock::new();
    block.push(10, a);
    block.push(12, b);
    block.mask(&masker(MaskStrategy::Electra), 0, 0); // pushed examples are masked already
    assert_eq!(block.len(), 2);
    assert_eq!((block.document(0), block.get(0)), (10, a));
    assert_eq!((block.document(1), block.get(1)), (12, b));
}

/// A selector that asks for word starts and picks the first `count` of them: what
/// whole-word masking needs from the loader's path.
#[derive(Debug)]
struct FirstWordStarts;

impl crate::mask::PositionSelector for FirstWordStarts {
    fn needs_word_starts(&self) -> bool {
        true
    }

    fn select(
        &self,
        example: crate::mask::ExampleTokens<'_>,
        count: usize,
        _rng: &mut crate::rng::Rng,
        positions: &mut Vec<u32>,
    ) {
        let starts = example
            .word_starts
            .expect("word starts for a selector that asks");
        assert_eq!(starts.len(), example.ids.len());
        let chosen = (0..starts.len()).filter(|&i| starts[i]).take(count);
        positions.extend(chosen.map(|i| i as u32));
    }
}

#[test]
fn word_starts_are_packed_with_the_tokens_for_a_selector_that_needs_them() {
    use std::sync::Arc;

    use crate::mask::{Masker, Replacement};
    use crate::tokenize::tests::{bert, docs, SPECIAL};

    let tokenized = bert()
        .tokenize(&docs(&[
            &[
                "Unbelievably, the quick brown fox jumps over the lazy dog.",
                "It was not amused by the proceedings.",
            ],
            &["Call me Ishmael.", "Some years ago, never mind how long."],
        ]))
        .unwrap();
    let chunk = |word_starts| ChunkDocuments {
        batch: &tokenized,
        rows: None,
        first_document: 0,
        stride: 1,
        word_starts,
    };
    let p = packer(16, true);
    let mut block = MaskedBlock::new();
    block.pack_tokenized(&p, 3, 0, chunk(true)).unwrap();
    let mut without = MaskedBlock::new();
    without.pack_tokenized(&p, 3, 0, chunk(false)).unwrap();
    assert!(block.len() >= 4, "{} examples", block.len());
    let mut starts_in_examples = 0;
    for (i, e) in block.iter().enumerate() {
        assert_eq!(without.get(i), e, "word starts change no token");
        assert!(without.word_starts(i).is_none());
        let starts = block.word_starts(i).unwrap();
        assert_eq!(starts.len(), e.input_ids.len());
        for (&id, &start) in e.input_ids.iter().zip(starts) {
            assert!(
                !(start && SPECIAL.contains(id)),
                "a special token starts no word"
            );
            starts_in_examples += usize::from(start);
        }
    }
    let column: &arrow_array::BinaryArray = column(&tokenized, tokenized::WORD_STARTS).unwrap();
    let packed_starts: u32 = column.values().iter().map(|b| b.count_ones()).sum();
    assert_eq!(
        starts_in_examples, packed_starts as usize,
        "no token is lost"
    );

    let base = masker(MaskStrategy::Electra);
    let corruption = Replacement::ELECTRA.with_vocabulary(SPECIAL, 30522);
    let m = Masker::with_stages(
        base.options().clone(),
        Arc::new(FirstWordStarts),
        Arc::new(corruption),
    );
    assert!(m.needs_word_starts() && !base.needs_word_starts());
    let unmasked = block.clone();
    block.mask(&m, 3, 0);
    for i in 0..block.len() {
        let starts = unmasked.word_starts(i).unwrap();
        let e = block.get(i);
        assert!(!e.masked_positions.is_empty());
        assert!(e.masked_positions.iter().all(|&p| starts[p as usize]));
    }
}
