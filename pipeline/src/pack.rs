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

use crate::config::DataConfig;
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

/// Packs tokenized documents into examples.
#[derive(Debug, Clone)]
pub struct Packer {
    options: PackOptions,
    special: SpecialTokens,
}

/// Token ranges of a document, by sentence.
type Pieces = Vec<Range<usize>>;

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

    /// Appends the word starts of the example of segments `a` and `b` (ranges of the
    /// document's `word_starts`) to `out`, aligned with
    /// [`write_example`](Self::write_example)'s tokens: false on the special tokens.
    pub fn write_word_starts(
        &self,
        a: &[Range<usize>],
        b: &[Range<usize>],
        word_starts: &[bool],
        out: &mut Vec<bool>,
    ) {
        out.push(false);
        for r in a {
            out.extend_from_slice(&word_starts[r.clone()]);
        }
        out.push(false);
        if !b.is_empty() {
            for r in b {
                out.extend_from_slice(&word_starts[r.clone()]);
            }
            out.push(false);
        }
    }

    /// The packing of one document of `n_tokens` tokens with cumulative `sentence_ends`,
    /// without its tokens: `emit(a, b)` is called for each example in order with the
    /// token ranges of its segments A and B (B empty for a single segment; see
    /// [`write_example`](Self::write_example)), which the loader uses to write each example
    /// straight into its flat buffers ([`crate::block::MaskedBlock::pack_document`]).
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
}

#[cfg(test)]
pub(crate) mod tests;
