//! Dynamic masking: a pure function of (seed, epoch, doc_id, example_index), so the same
//! example gets the same mask on any thread and a new mask every epoch.
//!
//! Masking is two stages, each behind a trait, sharing one RNG derived from those four
//! values (the selector draws first, then the corruption):
//!
//! 1. a [`PositionSelector`] chooses which positions are predicted, by
//!    `data.mask_positions`: [`RandomTokens`] (a uniform sample of the non-special tokens),
//!    [`WholeWords`] (every sub-token of a chosen word together) or [`Spans`] (SpanBERT's
//!    spans of whole words); the whole-word selectors read the examples' word starts;
//! 2. a [`Corruption`] decides what each chosen position becomes, by
//!    `data.mask_strategy`: [`Replacement`] with ELECTRA's shares (85% `[MASK]`, 15% kept)
//!    or BERT's (80/10/10), or [`AllMask`] (every one `[MASK]`).
//!
//! The [`Masker`] calls each stage once per example; the loader runs it over a whole
//! chunk's examples in their flat buffers ([`crate::block::MaskedBlock::mask`]).

mod all_mask;
mod random_tokens;
mod replacement;
mod span;
mod whole_word;
mod words;

use std::sync::Arc;

use crate::config::{DataConfig, MaskPositions, MaskStrategy};
use crate::rng::{Rng, MASK_STREAM};
use crate::tokenize::SpecialTokens;

pub use all_mask::AllMask;
pub use random_tokens::RandomTokens;
pub use replacement::{
    Replacement, Shares, BERT_MASK_SHARE, BERT_RANDOM_SHARE, ELECTRA_MASK_SHARE,
};
pub use span::{Spans, MAX_SPAN_WORDS, SPAN_GEOMETRIC_P};
pub use whole_word::WholeWords;

/// An example as a [`PositionSelector`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct ExampleTokens<'a> {
    /// Token ids, `[CLS] A [SEP] B [SEP]`.
    pub ids: &'a [u32],
    /// Whether each token starts a word (false on special tokens); read, and `Some`, only
    /// for a selector whose [`needs_word_starts`](PositionSelector::needs_word_starts).
    pub word_starts: Option<&'a [bool]>,
}

/// Chooses the positions of an example to predict.
pub trait PositionSelector: Send + Sync + std::fmt::Debug {
    /// Whether [`select`](Self::select) needs the examples' word starts: the loader then
    /// reads them (from the tokenizer, or the shards' `word_starts` column) and packs them
    /// with the tokens.
    fn needs_word_starts(&self) -> bool {
        false
    }

    /// Appends to `positions` the positions of `example` to predict, ascending and relative
    /// to the example: at most `count` of them (exactly `count` when the example has that
    /// many candidates), never a special token. Every draw comes from `rng`.
    fn select(
        &self,
        example: ExampleTokens<'_>,
        count: usize,
        rng: &mut Rng,
        positions: &mut Vec<u32>,
    );
}

/// Decides what each chosen position of an example becomes.
pub trait Corruption: Send + Sync + std::fmt::Debug {
    /// Corrupts `ids` at `positions` (ascending, as the selector chose them), drawing from
    /// `rng` after the selector.
    fn corrupt(&self, ids: &mut [u32], positions: &[u32], rng: &mut Rng);
}

/// Masking options.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskOptions {
    /// Fraction of the example's tokens (specials included, as the reference) to predict.
    pub mask_prob: f64,
    /// Most positions per example.
    pub max_predictions: usize,
    /// How the chosen positions are corrupted.
    pub strategy: MaskStrategy,
    /// Which positions are chosen.
    pub positions: MaskPositions,
    /// Vocabulary size (random replacement tokens are drawn below it).
    pub vocab_size: usize,
}

impl MaskOptions {
    /// The masking options of a data config and a vocabulary size.
    pub fn from_config(config: &DataConfig, vocab_size: usize) -> Self {
        Self {
            mask_prob: config.mask_prob,
            max_predictions: config.max_predictions(),
            strategy: config.mask_strategy,
            positions: config.mask_positions,
            vocab_size,
        }
    }

    /// The position selector of these options' `positions`.
    fn selector(&self, special: SpecialTokens) -> Arc<dyn PositionSelector> {
        match self.positions {
            MaskPositions::Random => Arc::new(RandomTokens::new(special)),
            MaskPositions::WholeWord => Arc::new(WholeWords::new(special)),
            MaskPositions::Span => Arc::new(Spans::new(special)),
        }
    }

    /// The corruption of these options' `mask_strategy`.
    fn corruption(&self, special: SpecialTokens) -> Arc<dyn Corruption> {
        let shares = match self.strategy {
            MaskStrategy::Electra => Replacement::ELECTRA,
            MaskStrategy::Bert => Replacement::BERT,
            MaskStrategy::AllMask => return Arc::new(AllMask::new(special.mask)),
        };
        Arc::new(shares.with_vocabulary(special, self.vocab_size))
    }
}

/// Chooses and corrupts the positions to predict.
#[derive(Debug, Clone)]
pub struct Masker {
    options: MaskOptions,
    selector: Arc<dyn PositionSelector>,
    corruption: Arc<dyn Corruption>,
}

impl Masker {
    /// The masker of `options`: its positions' selector and its strategy's corruption.
    pub fn new(options: MaskOptions, special: SpecialTokens) -> Self {
        let selector = options.selector(special);
        let corruption = options.corruption(special);
        Self::with_stages(options, selector, corruption)
    }

    /// A masker with the given stages (`options.strategy` and `options.positions` are then
    /// only informative).
    pub fn with_stages(
        options: MaskOptions,
        selector: Arc<dyn PositionSelector>,
        corruption: Arc<dyn Corruption>,
    ) -> Self {
        Self {
            options,
            selector,
            corruption,
        }
    }

    /// The masking options.
    pub fn options(&self) -> &MaskOptions {
        &self.options
    }

    /// How many positions an example of `n` real tokens gets:
    /// `max(1, min(max_predictions, round(n * mask_prob)))` (ties to even, as `tf.round`).
    pub fn num_predictions(&self, n: usize) -> usize {
        let wanted = (n as f64 * self.options.mask_prob).round_ties_even() as usize;
        wanted.min(self.options.max_predictions).max(1)
    }

    /// Whether masking needs the examples' word starts (see
    /// [`PositionSelector::needs_word_starts`]).
    pub fn needs_word_starts(&self) -> bool {
        self.selector.needs_word_starts()
    }

    /// Masks the example `ids` (with its `word_starts`, when read) in place, appending the
    /// chosen positions (ascending, relative to the example) to `positions` and the original
    /// ids there to `labels`.
    #[allow(clippy::too_many_arguments)]
    pub fn mask_in_place(
        &self,
        seed: u64,
        epoch: u64,
        doc_id: u64,
        example_index: u32,
        ids: &mut [u32],
        word_starts: Option<&[bool]>,
        positions: &mut Vec<u32>,
        labels: &mut Vec<u32>,
    ) {
        let mut rng = Rng::derive(
            seed,
            &[MASK_STREAM, epoch, doc_id, u64::from(example_index)],
        );
        let start = positions.len();
        let count = self.num_predictions(ids.len());
        let example = ExampleTokens { ids, word_starts };
        self.selector.select(example, count, &mut rng, positions);
        let chosen = &positions[start..];
        labels.extend(chosen.iter().map(|&p| ids[p as usize]));
        self.corruption.corrupt(ids, chosen, &mut rng);
    }
}

#[cfg(test)]
pub(crate) mod tests;
