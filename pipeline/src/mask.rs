//! Dynamic masking: a pure function of (seed, epoch, doc_id, example_index), so the same
//! example gets the same mask on any thread and a new mask every epoch.

use arrow_array::{RecordBatch, UInt32Array, UInt64Array, UInt8Array};
use electra_schemas::{check_schema, examples};

use crate::arrow_util::{column, list_column};
use crate::config::{DataConfig, MaskStrategy};
use crate::error::Result;
use crate::rng::{Rng, MASK_STREAM};
use crate::tokenize::SpecialTokens;

/// ELECTRA: share of the chosen positions replaced by `[MASK]` (the rest are kept).
pub const ELECTRA_MASK_SHARE: f64 = 0.85;
/// BERT: share replaced by `[MASK]`.
pub const BERT_MASK_SHARE: f64 = 0.8;
/// BERT: share replaced by a random token (the rest are kept).
pub const BERT_RANDOM_SHARE: f64 = 0.1;

/// Masking options.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskOptions {
    /// Fraction of the example's tokens (specials included, as the reference) to predict.
    pub mask_prob: f64,
    /// Most positions per example.
    pub max_predictions: usize,
    /// How the chosen positions are corrupted.
    pub strategy: MaskStrategy,
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
            vocab_size,
        }
    }
}

/// A masked example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedExample {
    /// The document it was cut from.
    pub doc_id: u64,
    /// Its index within the document.
    pub example_index: u32,
    /// Token ids after masking.
    pub input_ids: Vec<u32>,
    /// Segment ids (0 for `[CLS] A [SEP]`, 1 for `B [SEP]`).
    pub segment_ids: Vec<u8>,
    /// Positions chosen for prediction, ascending.
    pub masked_positions: Vec<u32>,
    /// Original ids at those positions.
    pub masked_labels: Vec<u32>,
}

/// Chooses and corrupts the positions to predict.
#[derive(Debug, Clone)]
pub struct Masker {
    options: MaskOptions,
    special: SpecialTokens,
}

impl Masker {
    /// A masker with the given options and special ids.
    pub fn new(options: MaskOptions, special: SpecialTokens) -> Self {
        Self { options, special }
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

    fn random_token(&self, rng: &mut Rng) -> Option<u32> {
        let vocab = self.options.vocab_size as u64;
        (0..64).find_map(|_| {
            let t = rng.below(vocab) as u32;
            (!self.special.contains(t)).then_some(t)
        })
    }

    /// Masks one example.
    pub fn mask(
        &self,
        seed: u64,
        epoch: u64,
        doc_id: u64,
        example_index: u32,
        input_ids: &[u32],
        segment_ids: &[u8],
    ) -> MaskedExample {
        self.mask_owned(
            seed,
            epoch,
            doc_id,
            example_index,
            input_ids.to_vec(),
            segment_ids.to_vec(),
        )
    }

    /// [`mask`](Self::mask) on owned vectors, which become the masked example's (no copy).
    pub fn mask_owned(
        &self,
        seed: u64,
        epoch: u64,
        doc_id: u64,
        example_index: u32,
        input_ids: Vec<u32>,
        segment_ids: Vec<u8>,
    ) -> MaskedExample {
        let mut ids = input_ids;
        let mut positions = Vec::new();
        let mut labels = Vec::new();
        self.mask_in_place(
            seed,
            epoch,
            doc_id,
            example_index,
            &mut ids,
            &mut positions,
            &mut labels,
        );
        MaskedExample {
            doc_id,
            example_index,
            input_ids: ids,
            segment_ids,
            masked_positions: positions,
            masked_labels: labels,
        }
    }

    /// Masks the example `ids` in place, appending the chosen positions (ascending, relative
    /// to the example) to `positions` and the original ids there to `labels`: what
    /// [`mask`](Self::mask) does, without allocating.
    #[allow(clippy::too_many_arguments)]
    pub fn mask_in_place(
        &self,
        seed: u64,
        epoch: u64,
        doc_id: u64,
        example_index: u32,
        ids: &mut [u32],
        positions: &mut Vec<u32>,
        labels: &mut Vec<u32>,
    ) {
        let mut rng = Rng::derive(
            seed,
            &[MASK_STREAM, epoch, doc_id, u64::from(example_index)],
        );
        // The candidates (non-special positions) go to the tail of `positions`, written
        // without branches.
        let start = positions.len();
        positions.resize(start + ids.len(), 0);
        let mut n = 0;
        {
            let tail = &mut positions[start..];
            for (i, &id) in ids.iter().enumerate() {
                tail[n] = i as u32;
                n += usize::from(!self.special.contains(id));
            }
        }
        positions.truncate(start + n);
        let k = self.num_predictions(ids.len()).min(n);
        // Partial Fisher-Yates: the first k candidates are a uniform sample.
        let candidates = &mut positions[start..];
        for i in 0..k {
            let j = i + rng.below((n - i) as u64) as usize;
            candidates.swap(i, j);
        }
        positions.truncate(start + k);
        positions[start..].sort_unstable();
        labels.reserve(k);
        for &p in &positions[start..] {
            let p = p as usize;
            labels.push(ids[p]);
            let r = rng.next_f64();
            match self.options.strategy {
                MaskStrategy::Electra => {
                    if r < ELECTRA_MASK_SHARE {
                        ids[p] = self.special.mask;
                    }
                }
                MaskStrategy::Bert => {
                    if r < BERT_MASK_SHARE {
                        ids[p] = self.special.mask;
                    } else if r < BERT_MASK_SHARE + BERT_RANDOM_SHARE {
                        if let Some(t) = self.random_token(&mut rng) {
                            ids[p] = t;
                        }
                    }
                }
            }
        }
    }

    /// Masks every example of an examples batch ([`examples::schema`]), in order.
    pub fn mask_batch(
        &self,
        batch: &RecordBatch,
        seed: u64,
        epoch: u64,
    ) -> Result<Vec<MaskedExample>> {
        check_schema(&batch.schema(), &examples::schema(), "masker input")?;
        let doc_ids: &UInt64Array = column(batch, examples::DOC_ID)?;
        let indices: &UInt32Array = column(batch, examples::EXAMPLE_INDEX)?;
        let (io, ids): (&[i32], &UInt32Array) = list_column(batch, examples::INPUT_IDS)?;
        let (so, segs): (&[i32], &UInt8Array) = list_column(batch, examples::SEGMENT_IDS)?;
        Ok((0..batch.num_rows())
            .map(|row| {
                self.mask(
                    seed,
                    epoch,
                    doc_ids.value(row),
                    indices.value(row),
                    &ids.values()[io[row] as usize..io[row + 1] as usize],
                    &segs.values()[so[row] as usize..so[row + 1] as usize],
                )
            })
            .collect())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tokenize::tests::SPECIAL;
    use proptest::prelude::*;

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
    fn example(a: usize, b: usize) -> (Vec<u32>, Vec<u8>) {
        let mut ids = vec![SPECIAL.cls];
        ids.extend((0..a as u32).map(|i| 1000 + i));
        ids.push(SPECIAL.sep);
        let mut segs = vec![0; ids.len()];
        if b > 0 {
            ids.extend((0..b as u32).map(|i| 2000 + i));
            ids.push(SPECIAL.sep);
            segs.resize(ids.len(), 1);
        }
        (ids, segs)
    }

    proptest! {
        #[test]
        fn exactly_n_pred_positions_never_special(a in 1usize..120, b in 0usize..6, seed in any::<u64>(), bert in any::<bool>()) {
            let m = masker(if bert { MaskStrategy::Bert } else { MaskStrategy::Electra });
            let (ids, segs) = example(a, b);
            let n = ids.len();
            let out = m.mask(seed, 0, 1, 2, &ids, &segs);
            let expected = ((n as f64 * 0.15).round_ties_even() as usize).clamp(1, 19).min(a + b);
            prop_assert_eq!(out.masked_positions.len(), expected);
            prop_assert_eq!(out.masked_labels.len(), expected);
            prop_assert!(out.masked_positions.windows(2).all(|w| w[0] < w[1]));
            for (&p, &l) in out.masked_positions.iter().zip(&out.masked_labels) {
                prop_assert!(!SPECIAL.contains(ids[p as usize]));
                prop_assert_eq!(l, ids[p as usize]);
            }
            // Unmasked positions are untouched.
            for (i, (&after, &before)) in out.input_ids.iter().zip(&ids).enumerate() {
                if !out.masked_positions.contains(&(i as u32)) {
                    prop_assert_eq!(after, before);
                }
            }
            prop_assert_eq!(out.segment_ids, segs);
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

    fn shares(strategy: MaskStrategy) -> (f64, f64, f64) {
        let m = masker(strategy);
        let (ids, segs) = example(60, 60);
        let (mut masked, mut random, mut kept, mut total) = (0, 0, 0, 0);
        for i in 0..3000 {
            let out = m.mask(9, 0, i, 0, &ids, &segs);
            for &p in &out.masked_positions {
                let t = out.input_ids[p as usize];
                total += 1;
                if t == SPECIAL.mask {
                    masked += 1;
                } else if t == ids[p as usize] {
                    kept += 1;
                } else {
                    assert!(!SPECIAL.contains(t) && (t as usize) < 30522);
                    random += 1;
                }
            }
        }
        let t = total as f64;
        (masked as f64 / t, random as f64 / t, kept as f64 / t)
    }

    #[test]
    fn electra_masks_85_percent_and_keeps_15() {
        let (m, r, k) = shares(MaskStrategy::Electra);
        assert!((m - 0.85).abs() < 0.01, "{m}");
        assert_eq!(r, 0.0);
        assert!((k - 0.15).abs() < 0.01, "{k}");
    }

    #[test]
    fn bert_masks_80_randomizes_10_keeps_10() {
        let (m, r, k) = shares(MaskStrategy::Bert);
        assert!((m - 0.8).abs() < 0.01, "{m}");
        assert!((r - 0.1).abs() < 0.01, "{r}");
        assert!((k - 0.1).abs() < 0.01, "{k}");
    }

    #[test]
    fn masks_repeat_for_the_same_ids_and_change_across_epochs() {
        let m = masker(MaskStrategy::Electra);
        let (ids, segs) = example(100, 20);
        let a = m.mask(1, 0, 5, 3, &ids, &segs);
        assert_eq!(a, m.mask(1, 0, 5, 3, &ids, &segs));
        assert_ne!(
            a.masked_positions,
            m.mask(1, 1, 5, 3, &ids, &segs).masked_positions
        );
        assert_ne!(
            a.masked_positions,
            m.mask(1, 0, 5, 4, &ids, &segs).masked_positions
        );
        assert_ne!(
            a.masked_positions,
            m.mask(2, 0, 5, 3, &ids, &segs).masked_positions
        );
    }

    #[test]
    fn positions_are_uniform_over_candidates() {
        let m = masker(MaskStrategy::Electra);
        let (ids, segs) = example(20, 0); // 22 tokens -> 3 predictions among 20 candidates
        let mut hits = [0u32; 22];
        for i in 0..20_000 {
            for p in m.mask(0, 0, i, 0, &ids, &segs).masked_positions {
                hits[p as usize] += 1;
            }
        }
        assert_eq!(hits[0], 0);
        assert_eq!(hits[21], 0);
        for &h in &hits[1..21] {
            assert!((2700..3300).contains(&h), "{hits:?}"); // expected 3000
        }
    }
}
