//! Whole-word selection: words in a random order, every sub-token of a chosen word masked
//! together (BERT's and Chinese-BERT-wwm's whole-word masking), with the exact count of
//! [`RandomTokens`](super::RandomTokens) whenever whole words can make it up.

use super::words::{choose_exact, with_scratch, words_of, Scratch, Word};
use super::{ExampleTokens, PositionSelector};
use crate::rng::Rng;
use crate::tokenize::SpecialTokens;

/// Chooses whole words ([`words_of`]: a word start and the non-special tokens after it
/// that start no word) in a uniformly random order, taking each one that fits in the
/// count, until the count is reached. When no choice of whole words makes the count
/// exactly (long words only), it takes the largest total below it that some choice makes:
/// a word is never split, a special token never chosen.
#[derive(Debug, Clone)]
pub struct WholeWords {
    special: SpecialTokens,
}

impl WholeWords {
    /// A selector that never chooses one of `special`.
    pub fn new(special: SpecialTokens) -> Self {
        Self { special }
    }
}

impl PositionSelector for WholeWords {
    fn needs_word_starts(&self) -> bool {
        true
    }

    fn select(
        &self,
        example: ExampleTokens<'_>,
        count: usize,
        rng: &mut Rng,
        positions: &mut Vec<u32>,
    ) {
        with_scratch(|scratch| {
            let Scratch {
                words,
                order,
                chosen,
            } = scratch;
            words_of(example, self.special, words);
            if !take_words_that_fit(words, count, rng, order, chosen) {
                // `order` is then a whole permutation: choose the best total from it.
                choose_exact(words, order, count, chosen);
            }
            push_words(words, chosen, positions);
        });
    }
}

/// Takes words in a uniformly random order (drawn as it goes: a forward Fisher-Yates
/// shuffle of `order`), each one that fits in what is left of `count`; whether that made
/// `count` exactly (else `order` is a whole permutation of the words).
fn take_words_that_fit(
    words: &[Word],
    count: usize,
    rng: &mut Rng,
    order: &mut Vec<u32>,
    chosen: &mut Vec<u32>,
) -> bool {
    let n = words.len();
    order.extend(0..n as u32);
    let mut left = count;
    for i in 0..n {
        if left == 0 {
            break;
        }
        let j = i + rng.below((n - i) as u64) as usize;
        order.swap(i, j);
        let len = words[order[i] as usize].len as usize;
        if len <= left {
            chosen.push(order[i]);
            left -= len;
        }
    }
    left == 0
}

/// Appends the tokens of the `chosen` words (sorted in place) to `positions`, ascending.
pub(crate) fn push_words(words: &[Word], chosen: &mut [u32], positions: &mut Vec<u32>) {
    chosen.sort_unstable();
    for &w in chosen.iter() {
        let word = words[w as usize];
        positions.extend(word.start..word.end());
    }
}
