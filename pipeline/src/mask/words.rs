//! The words of an example, for the selectors that mask whole words: runs of non-special
//! tokens, each starting at a word start, and the exact-sum choice of whole words that
//! both [`WholeWords`](super::WholeWords) and [`Spans`](super::Spans) use to reach their
//! count without splitting a word.

use std::cell::RefCell;

use super::ExampleTokens;
use crate::rng::Rng;
use crate::tokenize::SpecialTokens;

/// Buffers a selector reuses from one example to the next on a thread.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// The example's words.
    pub words: Vec<Word>,
    /// Word indices in a random order.
    pub order: Vec<u32>,
    /// The chosen word indices.
    pub chosen: Vec<u32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch buffers, cleared.
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut scratch = cell.borrow_mut();
        scratch.words.clear();
        scratch.order.clear();
        scratch.chosen.clear();
        f(&mut scratch)
    })
}

/// A word of an example: `len` tokens from `start`, none special.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word {
    /// Position of its first token in the example.
    pub start: u32,
    /// Its number of tokens (at least 1).
    pub len: u32,
}

impl Word {
    /// One past its last token.
    pub fn end(self) -> u32 {
        self.start + self.len
    }
}

/// Appends the words of `example` to `out`, in order. A word starts at every non-special
/// token that is a word start, follows a special token or opens the example, and runs over
/// the non-special tokens after it that are not word starts. Without word starts (or with
/// fewer or more flags than tokens) every non-special token is a word.
pub(crate) fn words_of(example: ExampleTokens<'_>, special: SpecialTokens, out: &mut Vec<Word>) {
    let ids = example.ids;
    let Some(starts) = example.word_starts.filter(|s| s.len() == ids.len()) else {
        let singles = ids
            .iter()
            .enumerate()
            .filter(|&(_, &id)| !special.contains(id));
        out.extend(singles.map(|(i, _)| Word {
            start: i as u32,
            len: 1,
        }));
        return;
    };
    // `open`: the last word may grow (the previous token was not special).
    let mut open = false;
    for (i, (&id, &start)) in ids.iter().zip(starts).enumerate() {
        if special.contains(id) {
            open = false;
        } else if open && !start {
            if let Some(word) = out.last_mut() {
                word.len += 1;
            }
        } else {
            out.push(Word {
                start: i as u32,
                len: 1,
            });
            open = true;
        }
    }
}

/// A uniform random permutation of `0..n` into `order` (Fisher-Yates, `n - 1` draws).
pub(crate) fn shuffled(n: usize, rng: &mut Rng, order: &mut Vec<u32>) {
    order.clear();
    order.extend(0..n as u32);
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
}

/// Chooses, among `candidates` (indices into `words`, in the order of preference), whole
/// words whose tokens add up to the largest total not above `budget` that any choice can
/// reach, and returns the chosen indices in `chosen` (in preference order). A word is
/// taken whenever it fits and the rest of the budget stays reachable by the words after it,
/// so when taking every word that fits reaches `budget` (the usual case), that is the
/// choice. No draw from any RNG.
pub(crate) fn choose_exact(
    words: &[Word],
    candidates: &[u32],
    budget: usize,
    chosen: &mut Vec<u32>,
) {
    chosen.clear();
    let mut left = budget;
    for &w in candidates {
        let len = words[w as usize].len as usize;
        if len <= left {
            chosen.push(w);
            left -= len;
        }
    }
    if left == 0 {
        return;
    }
    let reach = SuffixSums::new(words, candidates, budget);
    let Some(target) = (0..=budget).rev().find(|&s| reach.reachable(0, s)) else {
        chosen.clear();
        return;
    };
    chosen.clear();
    let mut left = target;
    for (i, &w) in candidates.iter().enumerate() {
        let len = words[w as usize].len as usize;
        if len <= left && reach.reachable(i + 1, left - len) {
            chosen.push(w);
            left -= len;
        }
    }
}

/// For every suffix of a candidate list, the token totals (up to a budget) its words can
/// make: a bitset per suffix.
struct SuffixSums {
    blocks: usize,
    bits: Vec<u64>,
}

impl SuffixSums {
    fn new(words: &[Word], candidates: &[u32], budget: usize) -> Self {
        let blocks = budget / 64 + 1;
        let n = candidates.len();
        let mut bits = vec![0u64; (n + 1) * blocks];
        bits[n * blocks] = 1; // the empty suffix makes 0
        for i in (0..n).rev() {
            let len = words[candidates[i] as usize].len as usize;
            let (head, tail) = bits.split_at_mut((i + 1) * blocks);
            let next = &tail[..blocks];
            let this = &mut head[i * blocks..];
            for b in 0..blocks {
                this[b] = next[b] | shifted(next, b, len);
            }
            // Sums above the budget are never needed.
            let top = budget % 64;
            if top < 63 {
                this[blocks - 1] &= (1u64 << (top + 1)) - 1;
            }
        }
        Self { blocks, bits }
    }

    /// Whether the candidates from index `from` on can make exactly `sum`.
    fn reachable(&self, from: usize, sum: usize) -> bool {
        let word = self.bits[from * self.blocks + sum / 64];
        word >> (sum % 64) & 1 == 1
    }
}

/// Block `b` of the bitset `set` shifted up by `by` bits.
fn shifted(set: &[u64], b: usize, by: usize) -> u64 {
    let (whole, part) = (by / 64, by % 64);
    let Some(src) = b.checked_sub(whole) else {
        return 0;
    };
    let low = set[src] << part;
    let carry = match (part, src.checked_sub(1)) {
        (0, _) | (_, None) => 0,
        (_, Some(below)) => set[below] >> (64 - part),
    };
    low | carry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenize::tests::SPECIAL;

    fn words(ids: &[u32], starts: Option<&[bool]>) -> Vec<Word> {
        let mut out = Vec::new();
        let example = ExampleTokens {
            ids,
            word_starts: starts,
        };
        words_of(example, SPECIAL, &mut out);
        out
    }

    fn word(start: u32, len: u32) -> Word {
        Word { start, len }
    }

    #[test]
    fn words_run_from_a_word_start_and_end_at_specials() {
        let (c, s) = (SPECIAL.cls, SPECIAL.sep);
        let ids = [c, 7, 8, 9, 10, s, 11, 12, s];
        let starts = [false, true, false, true, true, false, false, true, false];
        // 11 is no word start but follows [SEP]: it opens a word of its own.
        assert_eq!(
            words(&ids, Some(&starts)),
            [word(1, 2), word(3, 1), word(4, 1), word(6, 1), word(7, 1)]
        );
        assert_eq!(
            words(&ids, None).len(),
            6,
            "without word starts, one word a token"
        );
    }

    /// Every total the words can make, by brute force.
    fn best_total(lens: &[u32], budget: usize) -> usize {
        (0u32..1 << lens.len())
            .map(|set| {
                (0..lens.len())
                    .filter(|i| set >> i & 1 == 1)
                    .map(|i| lens[i] as usize)
                    .sum::<usize>()
            })
            .filter(|&s| s <= budget)
            .max()
            .unwrap_or(0)
    }

    proptest::proptest! {
        #[test]
        fn choose_exact_reaches_the_best_total_any_choice_can(
            lens in proptest::collection::vec(1u32..70, 0..12),
            budget in 0usize..200,
        ) {
            let mut start = 0;
            let ws: Vec<Word> = lens.iter().map(|&len| {
                start += len;
                word(start - len, len)
            }).collect();
            let order: Vec<u32> = (0..ws.len() as u32).rev().collect();
            let mut chosen = Vec::new();
            choose_exact(&ws, &order, budget, &mut chosen);
            let total: usize = chosen.iter().map(|&w| ws[w as usize].len as usize).sum();
            proptest::prop_assert_eq!(total, best_total(&lens, budget));
            let mut unique = chosen.clone();
            unique.sort_unstable();
            unique.dedup();
            proptest::prop_assert_eq!(unique.len(), chosen.len());
        }
    }

    #[test]
    fn choose_exact_takes_every_word_that_fits_when_that_reaches_the_budget() {
        let ws = [word(0, 2), word(2, 3), word(5, 1), word(6, 1)];
        let mut chosen = Vec::new();
        choose_exact(&ws, &[1, 0, 2, 3], 4, &mut chosen);
        assert_eq!(chosen, [1, 2]); // 3 + 1: 2 does not fit after 3
        choose_exact(&ws, &[1, 0, 2, 3], 5, &mut chosen);
        assert_eq!(chosen, [1, 0]); // 3 + 2
                                    // Taking every word that fits stops at 3 (no 1 left), yet 2 + 2 makes 4 exactly.
        choose_exact(
            &[word(0, 3), word(3, 2), word(5, 2)],
            &[0, 1, 2],
            4,
            &mut chosen,
        );
        assert_eq!(chosen, [1, 2]);
    }
}
