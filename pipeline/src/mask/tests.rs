//! Masking tests: the counts and invariants on whole packed blocks (the loader's path), the
//! shares and the determinism on single examples through [`Masker::mask_in_place`].

use proptest::prelude::*;

use super::*;
use crate::block::MaskedBlock;
use crate::pack::tests::packer;
use crate::tokenize::tests::SPECIAL;

pub(crate) fn masker(strategy: MaskStrategy) -> Masker {
    masker_of(strategy, MaskPositions::Random, 0.15, 19)
}

pub(crate) fn masker_of(
    strategy: MaskStrategy,
    positions: MaskPositions,
    mask_prob: f64,
    max_predictions: usize,
) -> Masker {
    Masker::new(
        MaskOptions {
            mask_prob,
            max_predictions,
            strategy,
            positions,
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
fn all_mask_masks_every_chosen_position_of_the_electra_selection() {
    let (electra, all) = (masker(MaskStrategy::Electra), masker(MaskStrategy::AllMask));
    assert_eq!(shares(&all), (1.0, 0.0, 0.0));
    let ids = example(100, 20);
    for doc in 0..50 {
        let (a, b) = (
            mask_one(&electra, 3, 0, doc, 0, &ids),
            mask_one(&all, 3, 0, doc, 0, &ids),
        );
        assert_eq!((a.positions, a.labels), (b.positions, b.labels));
    }
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

const ALL_POSITIONS: [MaskPositions; 3] = [
    MaskPositions::Random,
    MaskPositions::WholeWord,
    MaskPositions::Span,
];

/// Word starts for `ids`: each token starts a word with probability `share / 10`.
fn word_starts(n: usize, share: u64, seed: u64) -> Vec<bool> {
    let mut rng = crate::rng::Rng::new(seed);
    (0..n).map(|_| rng.below(10) < share).collect()
}

/// Whether token `i` continues the word of token `i - 1` (an independent statement of the
/// word rule: not special, not a word start, after a token that is not special).
fn continues_word(ids: &[u32], starts: &[bool], i: usize) -> bool {
    i > 0 && !starts[i] && !SPECIAL.contains(ids[i]) && !SPECIAL.contains(ids[i - 1])
}

/// The token counts of the example's words.
fn word_lengths(ids: &[u32], starts: &[bool]) -> Vec<usize> {
    let mut lengths: Vec<usize> = Vec::new();
    for i in 0..ids.len() {
        if continues_word(ids, starts, i) {
            *lengths.last_mut().unwrap() += 1;
        } else if !SPECIAL.contains(ids[i]) {
            lengths.push(1);
        }
    }
    lengths
}

/// The largest total not above `budget` that some set of the words makes.
fn best_total(lengths: &[usize], budget: usize) -> usize {
    let mut can = vec![false; budget + 1];
    can[0] = true;
    for &l in lengths {
        for s in (l..=budget).rev() {
            can[s] |= can[s - l];
        }
    }
    (0..=budget).rev().find(|&s| can[s]).unwrap()
}

/// Checks how many positions a selector chose in an example, given the count the masker
/// asks for: random tokens reach it (or take every candidate); whole words reach the best
/// total whole words can make; spans never pass it, and reach it whenever single-token
/// words alone could make it up.
fn check_count(positions: MaskPositions, ids: &[u32], starts: &[bool], count: usize, got: usize) {
    let lengths = word_lengths(ids, starts);
    let candidates: usize = lengths.iter().sum();
    let reachable = count.min(candidates);
    match positions {
        MaskPositions::Random => assert_eq!(got, reachable),
        MaskPositions::WholeWord => assert_eq!(got, best_total(&lengths, count)),
        MaskPositions::Span => {
            assert!(got <= reachable, "{got} > {reachable}");
            if lengths.iter().filter(|&&l| l == 1).count() >= reachable {
                assert_eq!(got, reachable);
            }
        }
    }
}

/// Checks what a chosen token `was` became (`now`) under `strategy`.
fn check_corruption(strategy: MaskStrategy, was: u32, now: u32) {
    let random = now != was && now != SPECIAL.mask;
    match strategy {
        MaskStrategy::AllMask => assert_eq!(now, SPECIAL.mask),
        MaskStrategy::Electra => assert!(!random, "{was} -> {now}"),
        MaskStrategy::Bert => assert!(!random || (!SPECIAL.contains(now) && now < 30522)),
    }
}

proptest! {
    #[test]
    fn every_selector_and_corruption_masks_exact_counts_of_whole_words_never_a_special(
        lengths in prop::collection::vec(1usize..200, 1..8),
        max in 8usize..160,
        seed in any::<u64>(),
        share in 1u64..=10,
        mask_prob in prop::sample::select(vec![0.15, 0.3, 0.4, 0.5]),
        strategy in prop::sample::select(vec![
            MaskStrategy::Electra,
            MaskStrategy::Bert,
            MaskStrategy::AllMask,
        ]),
    ) {
        let (ids, ends) = document(&lengths);
        let starts = word_starts(ids.len(), share, seed);
        let max_predictions = ((mask_prob + 0.005) * max as f64) as usize;
        for positions in ALL_POSITIONS {
            let m = masker_of(strategy, positions, mask_prob, max_predictions);
            let mut block = MaskedBlock::new();
            block.pack_document(&packer(max, true), seed, 0, 0, 1, &ids, Some(&starts), &ends);
            let packed = block.clone();
            block.mask(&m, seed, 0);
            for (i, (before, out)) in packed.iter().zip(block.iter()).enumerate() {
                let (ids, starts) = (before.input_ids, packed.word_starts(i).unwrap());
                let count = m.num_predictions(ids.len());
                check_count(positions, ids, starts, count, out.masked_positions.len());
                let masked: Vec<bool> = (0..ids.len() as u32)
                    .map(|p| out.masked_positions.binary_search(&p).is_ok())
                    .collect();
                prop_assert!(out.masked_positions.windows(2).all(|w| w[0] < w[1]));
                for (&p, &l) in out.masked_positions.iter().zip(out.masked_labels) {
                    prop_assert!(!SPECIAL.contains(ids[p as usize]), "{positions:?}");
                    prop_assert_eq!(l, ids[p as usize]);
                    check_corruption(strategy, l, out.input_ids[p as usize]);
                }
                if positions != MaskPositions::Random {
                    for t in 1..ids.len() {
                        prop_assert!(
                            !continues_word(ids, starts, t) || masked[t] == masked[t - 1],
                            "{positions:?} splits the word at {t}"
                        );
                    }
                }
                for (t, (&after, &was)) in out.input_ids.iter().zip(ids).enumerate() {
                    prop_assert!(masked[t] || after == was);
                }
            }
        }
    }
}

#[test]
fn every_selector_repeats_its_mask_and_changes_it_across_epochs_and_examples() {
    let ids = example(100, 20);
    let starts = word_starts(ids.len(), 6, 1);
    for positions in ALL_POSITIONS {
        let m = masker_of(MaskStrategy::Electra, positions, 0.15, 19);
        assert_eq!(m.needs_word_starts(), positions != MaskPositions::Random);
        let run = |seed, epoch, doc_id, index| {
            let mut out = (ids.clone(), Vec::new(), Vec::new());
            let (ids, positions, labels) = (&mut out.0, &mut out.1, &mut out.2);
            m.mask_in_place(
                seed,
                epoch,
                doc_id,
                index,
                ids,
                Some(&starts),
                positions,
                labels,
            );
            out
        };
        let a = run(1, 0, 5, 3);
        assert_eq!(a, run(1, 0, 5, 3), "{positions:?}");
        assert_ne!(a.1, run(1, 1, 5, 3).1, "{positions:?}: new epoch, new mask");
        assert_ne!(a.1, run(1, 0, 5, 4).1, "{positions:?}");
        assert_ne!(a.1, run(2, 0, 5, 3).1, "{positions:?}");
    }
}

#[test]
fn whole_words_of_one_length_are_chosen_equally_often() {
    // 30 words of 1, 2 or 3 tokens (62 tokens with the specials): 4 positions each time.
    let m = masker_of(MaskStrategy::Electra, MaskPositions::WholeWord, 0.07, 19);
    let lengths: Vec<usize> = (0..30).map(|w| 1 + w % 3).collect();
    let mut ids = vec![SPECIAL.cls];
    let mut starts = vec![false];
    for (w, &l) in lengths.iter().enumerate() {
        ids.extend((0..l as u32).map(|t| 1000 + 10 * w as u32 + t));
        starts.extend((0..l).map(|t| t == 0));
    }
    ids.push(SPECIAL.sep);
    starts.push(false);
    assert_eq!(m.num_predictions(ids.len()), 4);
    let mut hits = vec![0u32; ids.len()];
    for doc in 0..20_000 {
        let (mut out, mut positions, mut labels) = (ids.clone(), Vec::new(), Vec::new());
        m.mask_in_place(
            0,
            0,
            doc,
            0,
            &mut out,
            Some(&starts),
            &mut positions,
            &mut labels,
        );
        assert_eq!(positions.len(), 4);
        for p in positions {
            hits[p as usize] += 1;
        }
    }
    let word_starts: Vec<usize> = (0..ids.len()).filter(|&i| starts[i]).collect();
    for length in 1..=3 {
        let class: Vec<u32> = word_starts
            .iter()
            .zip(&lengths)
            .filter(|&(_, &l)| l == length)
            .map(|(&i, _)| hits[i])
            .collect();
        let mean = class.iter().sum::<u32>() as f64 / class.len() as f64;
        assert!(mean > 500.0, "length {length}: {class:?}");
        for &h in &class {
            assert!(
                (h as f64 - mean).abs() < 0.1 * mean,
                "length {length}: {class:?}"
            );
        }
    }
}
