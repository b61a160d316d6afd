//! Masking tests: the counts and invariants on whole packed blocks (the loader's path), the
//! shares and the determinism on single examples through [`Masker::mask_in_place`].

use proptest::prelude::*;

use super::*;
use crate::block::MaskedBlock;
use crate::pack::tests::packer;
use crate::tokenize::tests::SPECIAL;

pub(crate) fn masker(strategy: MaskStrategy) -> Masker {
    Masker::new(
        MaskOptions {
            mask_prob: 0.15,
            max_predictions: 19,
            strategy,
            vocab_size: 30522,
        },
        SPECIAL,
    )
}

/// `[CLS] 1000.. [SEP] 2000.. [SEP]`.
fn example(a: usize, b: usize) -> Vec<u32> {
    let mut ids = vec![SPECIAL.cls];
    ids.extend((0..a as u32).map(|i| 1000 + i));
    ids.push(SPECIAL.sep);
    if b > 0 {
        ids.extend((0..b as u32).map(|i| 2000 + i));
        ids.push(SPECIAL.sep);
    }
    ids
}

/// One example masked: its ids after masking, the positions and the labels.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Masked {
    ids: Vec<u32>,
    positions: Vec<u32>,
    labels: Vec<u32>,
}

fn mask_one(m: &Masker, seed: u64, epoch: u64, doc_id: u64, index: u32, ids: &[u32]) -> Masked {
    let mut out = Masked {
        ids: ids.to_vec(),
        positions: Vec::new(),
        labels: Vec::new(),
    };
    m.mask_in_place(
        seed,
        epoch,
        doc_id,
        index,
        &mut out.ids,
        None,
        &mut out.positions,
        &mut out.labels,
    );
    out
}

/// A document of sentences of the given lengths; a few of its ids are special ids, which
/// masking must skip.
pub(crate) fn document(lengths: &[usize]) -> (Vec<u32>, Vec<u32>) {
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

/// The special ids of the test vocabulary, written out rather than asked of
/// [`SpecialTokens::contains`], so that the property checks the code instead of repeating
/// it: `[PAD]`, `[CLS]`, `[SEP]`, `[MASK]`.
const SPECIAL_IDS: [u32; 4] = [0, 101, 102, 103];

fn is_special(id: u32) -> bool {
    SPECIAL_IDS.contains(&id)
}

proptest! {
    #[test]
    fn every_example_of_a_block_gets_exactly_n_pred_positions_never_special(
        lengths in prop::collection::vec(1usize..200, 1..12),
        max in 8usize..160,
        seed in any::<u64>(),
        bert in any::<bool>(),
    ) {
        let m = masker(if bert { MaskStrategy::Bert } else { MaskStrategy::Electra });
        let (ids, ends) = document(&lengths);
        let mut block = MaskedBlock::new();
        block.pack_document(&packer(max, true), seed, 0, 0, 1, &ids, None, &ends);
        let packed = block.clone();
        block.mask(&m, seed, 0);
        prop_assert_eq!(block.len(), packed.len());
        for (before, out) in packed.iter().zip(block.iter()) {
            let n = before.input_ids.len();
            let candidates = before.input_ids.iter().filter(|&&t| !is_special(t)).count();
            let expected = ((n as f64 * 0.15).round_ties_even() as usize).clamp(1, 19).min(candidates);
            prop_assert_eq!(out.masked_positions.len(), expected);
            prop_assert_eq!(out.masked_labels.len(), expected);
            prop_assert!(out.masked_positions.windows(2).all(|w| w[0] < w[1]));
            for (&p, &l) in out.masked_positions.iter().zip(out.masked_labels) {
                prop_assert!(!is_special(before.input_ids[p as usize]));
                prop_assert_eq!(l, before.input_ids[p as usize]);
            }
            // Unmasked positions are untouched.
            for (i, (&after, &was)) in out.input_ids.iter().zip(before.input_ids).enumerate() {
                if !out.masked_positions.contains(&(i as u32)) {
                    prop_assert_eq!(after, was);
                }
            }
            prop_assert_eq!(out.segment_ids, before.segment_ids);
        }
    }
}

#[test]
fn num_predictions_follows_the_reference_formula() {
    let m = masker(MaskStrategy::Electra);
    assert_eq!(m.num_predictions(3), 1); // at least one
    assert_eq!(m.num_predictions(10), 2); // round(1.5) = 2 (ties to even)
    assert_eq!(m.num_predictions(30), 4); // round(4.5) = 4 (ties to even)
    assert_eq!(m.num_predictions(128), 19); // capped at max_predictions
}

fn shares(m: &Masker) -> (f64, f64, f64) {
    let ids = example(60, 60);
    let (mut masked, mut random, mut kept, mut total) = (0, 0, 0, 0);
    for i in 0..3000 {
        let out = mask_one(m, 9, 0, i, 0, &ids);
        for &p in &out.positions {
            let t = out.ids[p as usize];
            total += 1;
            if t == SPECIAL.mask {
                masked += 1;
            } else if t == ids[p as usize] {
                kept += 1;
            } else {
                assert!(!is_special(t) && (t as usize) < 30522);
                random += 1;
            }
        }
    }
    let t = total as f64;
    (masked as f64 / t, random as f64 / t, kept as f64 / t)
}

#[test]
fn electra_masks_85_percent_and_keeps_15() {
    let (m, r, k) = shares(&masker(MaskStrategy::Electra));
    assert!((m - 0.85).abs() < 0.01, "{m}");
    assert_eq!(r, 0.0);
    assert!((k - 0.15).abs() < 0.01, "{k}");
}

#[test]
fn bert_masks_80_randomizes_10_keeps_10() {
    let (m, r, k) = shares(&masker(MaskStrategy::Bert));
    assert!((m - 0.8).abs() < 0.01, "{m}");
    assert!((r - 0.1).abs() < 0.01, "{r}");
    assert!((k - 0.1).abs() < 0.01, "{k}");
}

#[test]
fn a_corruption_with_other_shares_plugs_into_the_same_selection() {
    // All-[MASK]: the same positions as ELECTRA's (the selector draws first), every one
    // of them [MASK].
    let electra = masker(MaskStrategy::Electra);
    let all_mask = Replacement::ELECTRA;
    let all_mask = Shares {
        mask: 1.0,
        ..all_mask
    };
    let m = Masker::with_stages(
        electra.options().clone(),
        Arc::new(RandomTokens::new(SPECIAL)),
        Arc::new(all_mask.with_vocabulary(SPECIAL, 30522)),
    );
    assert_eq!(shares(&m), (1.0, 0.0, 0.0));
    let ids = example(100, 20);
    for doc in 0..50 {
        let (a, b) = (
            mask_one(&electra, 3, 0, doc, 0, &ids),
            mask_one(&m, 3, 0, doc, 0, &ids),
        );
        assert_eq!((a.positions, a.labels), (b.positions, b.labels));
    }
}

#[test]
fn masks_repeat_for_the_same_ids_and_change_across_epochs() {
    let m = masker(MaskStrategy::Electra);
    let ids = example(100, 20);
    let a = mask_one(&m, 1, 0, 5, 3, &ids);
    assert_eq!(a, mask_one(&m, 1, 0, 5, 3, &ids));
    assert_ne!(a.positions, mask_one(&m, 1, 1, 5, 3, &ids).positions);
    assert_ne!(a.positions, mask_one(&m, 1, 0, 5, 4, &ids).positions);
    assert_ne!(a.positions, mask_one(&m, 2, 0, 5, 3, &ids).positions);
}

#[test]
fn positions_are_uniform_over_candidates() {
    let m = masker(MaskStrategy::Electra);
    let ids = example(20, 0); // 22 tokens -> 3 predictions among 20 candidates
    let mut hits = [0u32; 22];
    for i in 0..20_000 {
        for p in mask_one(&m, 0, 0, i, 0, &ids).positions {
            hits[p as usize] += 1;
        }
    }
    assert_eq!(hits[0], 0);
    assert_eq!(hits[21], 0);
    for &h in &hits[1..21] {
        assert!((2700..3300).contains(&h), "{hits:?}"); // expected 3000
    }
}
