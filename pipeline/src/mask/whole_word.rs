//! Whole-word selection: words in a random order, every sub-token of a chosen word masked
//! together (BERT's and Chinese-BERT-wwm's whole-word masking), with the exact count of
//! [`RandomTokens`](super::RandomTokens) whenever whole words can make it up.

use super::words::{choose_exact, shuffled, words_of, Word};
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
        let mut words = Vec::new();
        words_of(example, self.special, &mut words);
        let mut order = Vec::new();
        shuffled(words.len(), rng, &mut order);
        let mut chosen = Vec::new();
        choose_exact(&words, &order, count, &mut chosen);
        push_words(&words, &mut chosen, positions);
    }
}

/// Appends the tokens of the `chosen` words (sorted in place) to `positions`, ascending.
pub(crate) fn push_words(words: &[Word], chosen: &mut [u32], positions: &mut Vec<u32>) {
    chosen.sort_unstable();
    for &w in chosen.iter() {
        let word = words[w as usize];
        positions.extend(word.start..word.end());
    }
}
