//! Packing tests, on the loader's path: documents packed into a [`MaskedBlock`], read back
//! before masking.

use proptest::prelude::*;

use super::*;
use crate::block::{ChunkDocuments, MaskedBlock};
use crate::tokenize::tests::{bert, docs, SPECIAL};

pub(crate) fn packer(max_seq_len: usize, split: bool) -> Packer {
    Packer::new(
        PackOptions {
            max_seq_len,
            single_segment_prob: 0.1,
            random_length_prob: 0.05,
            split_long_sentences: split,
        },
        SPECIAL,
    )
}

/// An example as packed, before masking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Packed {
    pub doc_id: u64,
    pub example_index: u32,
    pub input_ids: Vec<u32>,
    pub segment_ids: Vec<u8>,
}

/// The examples of a block, unmasked.
pub(crate) fn examples(block: &MaskedBlock) -> Vec<Packed> {
    block
        .iter()
        .map(|e| {
            assert!(e.masked_positions.is_empty(), "a packed block is unmasked");
            Packed {
                doc_id: e.doc_id,
                example_index: e.example_index,
                input_ids: e.input_ids.to_vec(),
                segment_ids: e.segment_ids.to_vec(),
            }
        })
        .collect()
}

/// Packs one document into a block, as the loader does.
pub(crate) fn pack(
    p: &Packer,
    seed: u64,
    epoch: u64,
    doc_id: u64,
    ids: &[u32],
    ends: &[u32],
) -> Vec<Packed> {
    let mut block = MaskedBlock::new();
    block.pack_document(p, seed, epoch, 0, doc_id, ids, None, ends);
    examples(&block)
}

/// A document whose tokens are distinct ids >= 1000, with the given sentence lengths.
fn document(lengths: &[usize]) -> (Vec<u32>, Vec<u32>) {
    let n: usize = lengths.iter().sum();
    let ids: Vec<u32> = (0..n as u32).map(|i| 1000 + i).collect();
    let mut ends = Vec::new();
    let mut acc = 0;
    for l in lengths {
        acc += *l as u32;
        ends.push(acc);
    }
    (ids, ends)
}

fn check_layout(e: &Packed, max: usize) {
    assert!(e.input_ids.len() <= max, "{} > {max}", e.input_ids.len());
    assert_eq!(e.input_ids[0], SPECIAL.cls);
    assert_eq!(*e.input_ids.last().unwrap(), SPECIAL.sep);
    assert_eq!(e.segment_ids.len(), e.input_ids.len());
    let seps: Vec<usize> = (0..e.input_ids.len())
        .filter(|&i| e.input_ids[i] == SPECIAL.sep)
        .collect();
    assert!(seps.len() == 1 || seps.len() == 2, "{seps:?}");
    // Segment ids: 0 up to and including the first SEP, then 1.
    for (i, &s) in e.segment_ids.iter().enumerate() {
        assert_eq!(s, u8::from(i > seps[0]), "position {i}");
    }
    assert!(seps[0] >= 2, "segment A is empty");
    if seps.len() == 2 {
        assert!(seps[1] > seps[0] + 1, "segment B is empty");
    }
}

proptest! {
    #[test]
    fn examples_respect_the_layout_and_lose_no_tokens_when_splitting(
        lengths in prop::collection::vec(1usize..300, 1..30),
        max in 8usize..200,
        seed in any::<u64>(),
    ) {
        let (ids, ends) = document(&lengths);
        let out = pack(&packer(max, true), seed, 0, 7, &ids, &ends);
        let mut seen: Vec<u32> = Vec::new();
        for (i, e) in out.iter().enumerate() {
            check_layout(e, max);
            prop_assert_eq!(e.doc_id, 7);
            prop_assert_eq!(e.example_index, i as u32);
            seen.extend(e.input_ids.iter().copied().filter(|&t| t >= 1000));
        }
        seen.sort_unstable();
        prop_assert_eq!(seen, ids);
    }

    #[test]
    fn truncating_mode_keeps_the_layout_and_never_invents_tokens(
        lengths in prop::collection::vec(1usize..300, 1..30),
        max in 8usize..200,
        seed in any::<u64>(),
    ) {
        let (ids, ends) = document(&lengths);
        let out = pack(&packer(max, false), seed, 0, 7, &ids, &ends);
        prop_assert!(!out.is_empty());
        let mut seen: Vec<u32> = Vec::new();
        for e in &out {
            check_layout(e, max);
            seen.extend(e.input_ids.iter().copied().filter(|&t| t >= 1000));
        }
        let before = seen.len();
        seen.sort_unstable();
        seen.dedup();
        prop_assert_eq!(seen.len(), before, "a token appears twice");
    }
}

#[test]
fn a_long_sentence_is_truncated_in_reference_mode() {
    let (ids, ends) = document(&[300]);
    let out = pack(&packer(128, false), 1, 0, 0, &ids, &ends);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].input_ids.len(), 128);
    assert_eq!(&out[0].input_ids[1..127], &ids[..126]);
}

#[test]
fn packing_is_a_function_of_seed_epoch_and_document() {
    let (ids, ends) = document(&[10; 100]);
    let p = packer(64, true);
    let a = pack(&p, 1, 0, 5, &ids, &ends);
    assert_eq!(a, pack(&p, 1, 0, 5, &ids, &ends));
    assert_ne!(a, pack(&p, 1, 1, 5, &ids, &ends));
    assert_ne!(a, pack(&p, 2, 0, 5, &ids, &ends));
}

#[test]
fn segment_proportions_follow_the_reference() {
    // Many short sentences: single-segment examples appear ~10% of the time.
    let (ids, ends) = document(&[7; 20_000]);
    let out = pack(&packer(128, true), 3, 0, 0, &ids, &ends);
    let single = out
        .iter()
        .filter(|e| e.segment_ids.iter().all(|&s| s == 0))
        .count();
    let frac = single as f64 / out.len() as f64;
    assert!(
        (0.06..0.15).contains(&frac),
        "single-segment fraction {frac}"
    );
    let short = out[..out.len() - 1]
        .iter()
        .filter(|e| e.input_ids.len() < 100)
        .count();
    let frac = short as f64 / out.len() as f64;
    assert!(
        (0.02..0.09).contains(&frac),
        "random-length fraction {frac}"
    );
}

#[test]
fn examples_never_cross_documents_on_real_text() {
    use arrow_array::UInt32Array;
    use electra_schemas::tokenized;

    use crate::arrow_util::list_column;

    let t = bert();
    let batch = docs(&[
        &[
            "The quick brown fox jumps over the lazy dog.",
            "It was not amused.",
        ],
        &[
            "Call me Ishmael.",
            "Some years ago, never mind how long precisely.",
        ],
        &["In the beginning God created the heaven and the earth."],
    ]);
    let tok = t.tokenize(&batch).unwrap();
    let p = packer(16, true);
    let mut block = MaskedBlock::new();
    let chunk = ChunkDocuments {
        batch: &tok,
        rows: None,
        first_document: 10,
        stride: 1,
        word_starts: false,
    };
    block.pack_tokenized(&p, 0, 0, chunk).unwrap();
    let packed = examples(&block);
    let (io, ids): (&[i32], &UInt32Array) = list_column(&tok, tokenized::INPUT_IDS).unwrap();
    for (i, e) in packed.iter().enumerate() {
        let row = e.doc_id as usize;
        assert_eq!(block.document(i), 10 + e.doc_id, "position of its document");
        let doc: &[u32] = &ids.values()[io[row] as usize..io[row + 1] as usize];
        check_layout(e, 16);
        for &t in e.input_ids.iter().filter(|&&t| !SPECIAL.contains(t)) {
            assert!(
                doc.contains(&t),
                "token {t} of doc {row} example not in its document"
            );
        }
    }
    assert!(packed.iter().any(|e| e.doc_id == 2));
}

/// A packer that always draws the full target length, with two segments (`two`) or one.
fn fixed_packer(max_seq_len: usize, two: bool) -> Packer {
    Packer::new(
        PackOptions {
            max_seq_len,
            single_segment_prob: if two { 0.0 } else { 1.0 },
            random_length_prob: 0.0,
            split_long_sentences: true,
        },
        SPECIAL,
    )
}

/// The real tokens of segment A (between `[CLS]` and the first `[SEP]`).
fn segment_a(e: &Packed) -> &[u32] {
    let sep = e.input_ids.iter().position(|&t| t == SPECIAL.sep).unwrap();
    &e.input_ids[1..sep]
}

#[test]
fn segment_a_ends_where_the_reference_puts_it() {
    // max 16: the reference's first target is (16 - 3) / 2 = 6 tokens. With sentences of
    // 2 tokens, A takes sentences while it stays under 6 (2, then 4), then one more with
    // probability 1/2: A holds 4 or 6 tokens, never 8, and both happen.
    let (ids, ends) = document(&[2; 40]);
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..64 {
        let first = &pack(&fixed_packer(16, true), seed, 0, 7, &ids, &ends)[0];
        assert!(first.segment_ids.contains(&1), "seed {seed}: one segment");
        seen.insert(segment_a(first).len());
    }
    assert_eq!(seen, [4, 6].into_iter().collect());
}

#[test]
fn a_long_sentence_is_cut_into_pieces_of_max_len_minus_three() {
    // One sentence of 100 tokens, max 16: pieces of 13 tokens (room for [CLS] and two
    // [SEP]s). The first example's A is exactly the first piece; a longer one would not
    // leave room for a B segment.
    let (ids, ends) = document(&[100]);
    for seed in 0..16 {
        let examples = pack(&fixed_packer(16, true), seed, 0, 3, &ids, &ends);
        assert_eq!(segment_a(&examples[0]), &ids[..13], "seed {seed}");
        let real: usize = examples.iter().map(|e| e.input_ids.len()).sum::<usize>()
            - examples
                .iter()
                .map(|e| {
                    e.input_ids
                        .iter()
                        .filter(|&&t| t == SPECIAL.cls || t == SPECIAL.sep)
                        .count()
                })
                .sum::<usize>();
        assert_eq!(real, 100, "seed {seed}: tokens lost or invented");
    }
}

#[test]
fn pack_options_come_from_every_config_key() {
    let config = crate::config::DataConfig {
        max_seq_len: 96,
        single_segment_prob: 0.25,
        random_length_prob: 0.75,
        split_long_sentences: false,
        ..Default::default()
    };
    assert_eq!(
        PackOptions::from_config(&config),
        PackOptions {
            max_seq_len: 96,
            single_segment_prob: 0.25,
            random_length_prob: 0.75,
            split_long_sentences: false,
        }
    );
}
