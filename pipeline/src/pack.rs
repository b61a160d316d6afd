//! Packing: sentences of one document -> `[CLS] A [SEP] B [SEP]` examples, a port of the
//! reference `ExampleBuilder` (google-research/electra, `build_pretraining_dataset.py`).
//!
//! Packing is a pure function of (seed, epoch, document): the RNG of a document is derived
//! from those three, so any worker can pack any document and the result does not depend on
//! the thread count or on how documents are chunked. An example is identified by
//! `(doc_id, example_index)`.
//!
//! Differences from the reference, all deliberate: the target length of every example
//! (the first included) is drawn when the example starts; and with `split_long_sentences`
//! a sentence longer than `max_seq_len - 3` is cut into pieces of that size, and the tokens
//! an example cannot hold after trimming are carried into the next example of the same
//! document instead of being dropped, so no token is lost. Without it, long sentences and
//! overflow are truncated exactly as the reference does.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::types::{UInt32Type, UInt8Type};
use arrow_array::{ArrayRef, BooleanArray, ListArray, RecordBatch, UInt32Array, UInt64Array};
use arrow_buffer::OffsetBuffer;
use electra_schemas::{check_schema, examples, tokenized};

use crate::arrow_util::{column, list_array, list_column, list_item};
use crate::config::DataConfig;
use crate::error::Result;
use crate::rng::{Rng, PACK_STREAM};
use crate::tokenize::SpecialTokens;

/// Shortest random target length (reference: `random.randint(5, max_length)`).
pub const MIN_RANDOM_TARGET: usize = 5;

/// Packing options.
#[derive(Debug, Clone, PartialEq)]
pub struct PackOptions {
    /// Longest example, specials included.
    pub max_seq_len: usize,
    /// Probability of a single-segment example.
    pub single_segment_prob: f64,
    /// Probability of a random target length in [5, max_seq_len].
    pub random_length_prob: f64,
    /// Cut long sentences and carry what an example cannot hold into the next one.
    pub split_long_sentences: bool,
}

impl PackOptions {
    /// The packing options of a data config.
    pub fn from_config(config: &DataConfig) -> Self {
        Self {
            max_seq_len: config.max_seq_len,
            single_segment_prob: config.single_segment_prob,
            random_length_prob: config.random_length_prob,
            split_long_sentences: config.split_long_sentences,
        }
    }
}

/// One packed example, before masking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedExample {
    /// The document it was cut from.
    pub doc_id: u64,
    /// Its index within the document.
    pub example_index: u32,
    /// `[CLS] A [SEP] B [SEP]` or `[CLS] A [SEP]`.
    pub input_ids: Vec<u32>,
    /// 0 for `[CLS] A [SEP]`, 1 for `B [SEP]`.
    pub segment_ids: Vec<u8>,
    /// Word-start flags (false on special tokens).
    pub word_starts: Vec<bool>,
}

/// Packs tokenized documents into examples.
#[derive(Debug, Clone)]
pub struct Packer {
    options: PackOptions,
    special: SpecialTokens,
}

/// Token ranges of a document, by sentence.
type Pieces = Vec<Range<usize>>;

/// Length of the example of segments `a` and `b`, specials included.
fn example_len(a: &[Range<usize>], b: &[Range<usize>]) -> usize {
    let len_b = total(b);
    total(a) + 2 + if len_b > 0 { len_b + 1 } else { 0 }
}

fn total(pieces: &[Range<usize>]) -> usize {
    pieces.iter().map(|r| r.len()).sum()
}

/// Keeps the first `cap` tokens of `pieces` and appends the rest to `rest`, in order.
fn trim(pieces: &mut Pieces, cap: usize, rest: &mut Pieces) {
    let mut kept = 0;
    let mut cut = pieces.len();
    for (i, r) in pieces.iter_mut().enumerate() {
        let room = cap - kept;
        if room >= r.len() {
            kept += r.len();
            continue;
        }
        cut = i;
        if room > 0 {
            rest.push(r.start + room..r.end);
            r.end = r.start + room;
            cut = i + 1;
        }
        break;
    }
    rest.extend(pieces.drain(cut..));
}

impl Packer {
    /// A packer with the given options and special ids.
    pub fn new(options: PackOptions, special: SpecialTokens) -> Self {
        Self { options, special }
    }

    /// The packing options.
    pub fn options(&self) -> &PackOptions {
        &self.options
    }

    fn draw_target(&self, rng: &mut Rng) -> usize {
        let max = self.options.max_seq_len;
        if rng.next_f64() < self.options.random_length_prob {
            rng.range_inclusive(MIN_RANDOM_TARGET as u64, max as u64) as usize
        } else {
            max
        }
    }

    /// Packs one document: `ids` and `word_starts` are its tokens, `sentence_ends` the
    /// cumulative sentence ends.
    pub fn pack_document(
        &self,
        seed: u64,
        epoch: u64,
        doc_id: u64,
        ids: &[u32],
        word_starts: &[bool],
        sentence_ends: &[u32],
    ) -> Vec<PackedExample> {
        let mut out = Vec::new();
        self.plan_document(seed, epoch, doc_id, ids.len(), sentence_ends, |a, b| {
            let mut input_ids = Vec::with_capacity(example_len(a, b));
            let mut segment_ids = Vec::with_capacity(input_ids.capacity());
            self.write_example(a, b, ids, &mut input_ids, &mut segment_ids);
            let mut starts = Vec::with_capacity(input_ids.len());
            starts.push(false);
            for r in a {
                starts.extend_from_slice(&word_starts[r.clone()]);
            }
            starts.push(false);
            if !b.is_empty() {
                for r in b {
                    starts.extend_from_slice(&word_starts[r.clone()]);
                }
                starts.push(false);
            }
            out.push(PackedExample {
                doc_id,
                example_index: out.len() as u32,
                input_ids,
                segment_ids,
                word_starts: starts,
            });
        });
        out
    }

    /// Appends the example of segments `a` and `b` (token ranges of `ids`) to `input_ids`
    /// as `[CLS] A [SEP] B [SEP]` (or `[CLS] A [SEP]` when `b` is empty), and its segment
    /// ids to `segment_ids`.
    pub fn write_example(
        &self,
        a: &[Range<usize>],
        b: &[Range<usize>],
        ids: &[u32],
        input_ids: &mut Vec<u32>,
        segment_ids: &mut Vec<u8>,
    ) {
        let start = input_ids.len();
        input_ids.push(self.special.cls);
        for r in a {
            input_ids.extend_from_slice(&ids[r.clone()]);
        }
        input_ids.push(self.special.sep);
        segment_ids.resize(segment_ids.len() + (input_ids.len() - start), 0);
        if !b.is_empty() {
            let start_b = input_ids.len();
            for r in b {
                input_ids.extend_from_slice(&ids[r.clone()]);
            }
            input_ids.push(self.special.sep);
            segment_ids.resize(segment_ids.len() + (input_ids.len() - start_b), 1);
        }
    }

    /// The packing of one document of `n_tokens` tokens with cumulative `sentence_ends`,
    /// without its tokens: `emit(a, b)` is called for each example in order with the
    /// token ranges of its segments A and B (B empty for a single segment; see
    /// [`write_example`](Self::write_example)). What [`pack_document`](Self::pack_document)
    /// builds its examples from, and the loader writes straight into its buffers.
    pub fn plan_document(
        &self,
        seed: u64,
        epoch: u64,
        doc_id: u64,
        n_tokens: usize,
        sentence_ends: &[u32],
        mut emit: impl FnMut(&[Range<usize>], &[Range<usize>]),
    ) {
        let max = self.options.max_seq_len;
        let piece_cap = max.saturating_sub(3).max(1);
        let mut queue: VecDeque<Range<usize>> = VecDeque::new();
        let mut start = 0usize;
        for &end in sentence_ends {
            let end = (end as usize).min(n_tokens);
            if end <= start {
                continue;
            }
            if self.options.split_long_sentences {
                let mut s = start;
                while s < end {
                    let e = (s + piece_cap).min(end);
                    queue.push_back(s..e);
                    s = e;
                }
            } else {
                queue.push_back(start..end);
            }
            start = end;
        }

        let mut rng = Rng::derive(seed, &[PACK_STREAM, epoch, doc_id]);
        let mut pending: Pieces = Vec::new();
        let (mut a, mut b, mut carry): (Pieces, Pieces, Pieces) = Default::default();
        let mut pending_len = 0;
        let mut target = self.draw_target(&mut rng);
        loop {
            let full = match queue.pop_front() {
                Some(s) => {
                    pending_len += s.len();
                    pending.push(s);
                    pending_len >= target
                }
                None if pending.is_empty() => break,
                None => true,
            };
            if full {
                self.split(&mut rng, &pending, target, &mut a, &mut b, &mut carry);
                emit(&a, &b);
                pending.clear();
                pending_len = 0;
                for r in carry.drain(..).rev() {
                    queue.push_front(r);
                }
                target = self.draw_target(&mut rng);
            }
        }
    }

    /// Splits `pending` into segments A and B as the reference does and trims them (into
    /// `a` and `b`); what was trimmed off goes to `carry` when it is to be carried.
    fn split(
        &self,
        rng: &mut Rng,
        pending: &[Range<usize>],
        target: usize,
        a: &mut Pieces,
        b: &mut Pieces,
        carry: &mut Pieces,
    ) {
        let max = self.options.max_seq_len;
        let first_target = if rng.next_f64() < self.options.single_segment_prob {
            usize::MAX
        } else {
            target.saturating_sub(3) / 2
        };
        a.clear();
        b.clear();
        let (mut len_a, mut len_b) = (0usize, 0usize);
        for s in pending {
            if len_a == 0
                || len_a.saturating_add(s.len()) < first_target
                || (len_b == 0 && len_a < first_target && rng.next_f64() < 0.5)
            {
                len_a += s.len();
                a.push(s.clone());
            } else {
                len_b += s.len();
                b.push(s.clone());
            }
        }
        carry.clear();
        trim(a, max - 2, carry);
        let len_a = total(a);
        trim(b, max.saturating_sub(len_a + 3), carry);
        if !self.options.split_long_sentences {
            carry.clear();
        }
    }

    /// Packs every document of a tokenized batch ([`tokenized::schema`]), in order.
    pub fn pack_examples(
        &self,
        tokenized: &RecordBatch,
        seed: u64,
        epoch: u64,
    ) -> Result<Vec<PackedExample>> {
        Ok(self
            .pack_rows(tokenized, seed, epoch)?
            .into_iter()
            .map(|(_, example)| example)
            .collect())
    }

    /// [`pack_examples`](Self::pack_examples), each example with the row of the document it
    /// came from.
    pub fn pack_rows(
        &self,
        tokenized: &RecordBatch,
        seed: u64,
        epoch: u64,
    ) -> Result<Vec<(usize, PackedExample)>> {
        check_schema(&tokenized.schema(), &tokenized::schema(), "packer input")?;
        let doc_ids: &UInt64Array = column(tokenized, tokenized::DOC_ID)?;
        let (io, ids): (&[i32], &UInt32Array) = list_column(tokenized, tokenized::INPUT_IDS)?;
        let (eo, ends): (&[i32], &UInt32Array) = list_column(tokenized, tokenized::SENTENCE_ENDS)?;
        let (wo, words): (&[i32], &BooleanArray) = list_column(tokenized, tokenized::WORD_STARTS)?;
        let mut out = Vec::new();
        let mut word_buf = Vec::new();
        for row in 0..tokenized.num_rows() {
            let doc_ids_row = &ids.values()[io[row] as usize..io[row + 1] as usize];
            word_buf.clear();
            let (start, end) = (wo[row] as usize, wo[row + 1] as usize);
            word_buf.extend(words.values().slice(start, end - start).iter());
            word_buf.resize(doc_ids_row.len(), true);
            let ends_row = &ends.values()[eo[row] as usize..eo[row + 1] as usize];
            out.extend(
                self.pack_document(
                    seed,
                    epoch,
                    doc_ids.value(row),
                    doc_ids_row,
                    &word_buf,
                    ends_row,
                )
                .into_iter()
                .map(|example| (row, example)),
            );
        }
        Ok(out)
    }

    /// Packs a tokenized batch into an examples batch ([`examples::schema`]).
    pub fn pack(&self, tokenized: &RecordBatch, seed: u64, epoch: u64) -> Result<RecordBatch> {
        examples_to_batch(&self.pack_examples(tokenized, seed, epoch)?)
    }
}

/// Packed examples as an examples record batch.
pub fn examples_to_batch(packed: &[PackedExample]) -> Result<RecordBatch> {
    let schema = examples::schema();
    let lengths: Vec<usize> = packed.iter().map(|e| e.input_ids.len()).collect();
    let ids: Vec<u32> = packed
        .iter()
        .flat_map(|e| e.input_ids.iter().copied())
        .collect();
    let segments: Vec<u8> = packed
        .iter()
        .flat_map(|e| e.segment_ids.iter().copied())
        .collect();
    let words: Vec<bool> = packed
        .iter()
        .flat_map(|e| e.word_starts.iter().copied())
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(
            packed.iter().map(|e| e.doc_id),
        )),
        Arc::new(UInt32Array::from_iter_values(
            packed.iter().map(|e| e.example_index),
        )),
        list_array::<UInt32Type>(list_item(&schema, examples::INPUT_IDS)?, ids, &lengths)?,
        list_array::<UInt8Type>(
            list_item(&schema, examples::SEGMENT_IDS)?,
            segments,
            &lengths,
        )?,
        Arc::new(ListArray::try_new(
            list_item(&schema, examples::WORD_STARTS)?,
            OffsetBuffer::<i32>::from_lengths(lengths.iter().copied()),
            Arc::new(BooleanArray::from(words)),
            None,
        )?),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tokenize::tests::{bert, docs, SPECIAL};
    use proptest::prelude::*;

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

    /// A document whose tokens are distinct ids >= 1000, with the given sentence lengths.
    fn document(lengths: &[usize]) -> (Vec<u32>, Vec<bool>, Vec<u32>) {
        let n: usize = lengths.iter().sum();
        let ids: Vec<u32> = (0..n as u32).map(|i| 1000 + i).collect();
        let mut ends = Vec::new();
        let mut acc = 0;
        for l in lengths {
            acc += *l as u32;
            ends.push(acc);
        }
        (ids, vec![true; n], ends)
    }

    fn check_layout(e: &PackedExample, max: usize) {
        assert!(e.input_ids.len() <= max, "{} > {max}", e.input_ids.len());
        assert_eq!(e.input_ids[0], SPECIAL.cls);
        assert_eq!(*e.input_ids.last().unwrap(), SPECIAL.sep);
        assert_eq!(e.segment_ids.len(), e.input_ids.len());
        assert_eq!(e.word_starts.len(), e.input_ids.len());
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
            let (ids, words, ends) = document(&lengths);
            let out = packer(max, true).pack_document(seed, 0, 7, &ids, &words, &ends);
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
            let (ids, words, ends) = document(&lengths);
            let out = packer(max, false).pack_document(seed, 0, 7, &ids, &words, &ends);
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
        let (ids, words, ends) = document(&[300]);
        let out = packer(128, false).pack_document(1, 0, 0, &ids, &words, &ends);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].input_ids.len(), 128);
        assert_eq!(&out[0].input_ids[1..127], &ids[..126]);
    }

    #[test]
    fn packing_is_a_function_of_seed_epoch_and_document() {
        let (ids, words, ends) = document(&[10; 100]);
        let p = packer(64, true);
        let a = p.pack_document(1, 0, 5, &ids, &words, &ends);
        assert_eq!(a, p.pack_document(1, 0, 5, &ids, &words, &ends));
        assert_ne!(a, p.pack_document(1, 1, 5, &ids, &words, &ends));
        assert_ne!(a, p.pack_document(2, 0, 5, &ids, &words, &ends));
    }

    #[test]
    fn segment_proportions_follow_the_reference() {
        // Many short sentences: single-segment examples appear ~10% of the time.
        let (ids, words, ends) = document(&[7; 20_000]);
        let out = packer(128, true).pack_document(3, 0, 0, &ids, &words, &ends);
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
        let packed = p.pack_examples(&tok, 0, 0).unwrap();
        let (io, ids): (&[i32], &UInt32Array) = list_column(&tok, tokenized::INPUT_IDS).unwrap();
        for e in &packed {
            let row = e.doc_id as usize;
            let doc: &[u32] = &ids.values()[io[row] as usize..io[row + 1] as usize];
            check_layout(e, 16);
            for &t in e.input_ids.iter().filter(|&&t| !SPECIAL.contains(t)) {
                assert!(
                    doc.contains(&t),
                    "token {t} of doc {row} example not in its document"
                );
            }
        }
        let batch = p.pack(&tok, 0, 0).unwrap();
        check_schema(&batch.schema(), &examples::schema(), "test").unwrap();
        assert_eq!(batch.num_rows(), packed.len());
        assert!(packed.iter().any(|e| e.doc_id == 2));
    }
}
