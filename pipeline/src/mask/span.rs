//! Span selection (SpanBERT): spans of whole words whose lengths in words follow a
//! geometric distribution (p = 0.2) clipped at 10 words, each at a uniformly random word,
//! until the count is reached.

use super::whole_word::push_words;
use super::words::{choose_exact, shuffled, with_scratch, words_of, Word};
use super::{ExampleTokens, PositionSelector};
use crate::rng::Rng;
use crate::tokenize::SpecialTokens;

/// SpanBERT's parameter of the geometric span length.
pub const SPAN_GEOMETRIC_P: f64 = 0.2;
/// SpanBERT's longest span, in words.
pub const MAX_SPAN_WORDS: usize = 10;
/// Span draws per word of the example before the rest of the count is filled with single
/// words.
const ATTEMPTS_PER_WORD: usize = 4;

/// A span: `words` consecutive words from word `first` of an example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    /// Index of its first word.
    pub first: u32,
    /// Its number of words, 1 to [`MAX_SPAN_WORDS`].
    pub words: u32,
}

/// Chooses spans of whole words as SpanBERT does: a length `l` in words is drawn from
/// `Geometric(0.2)` restricted to 1..=10 (mean 3.8 words), a start word uniformly among
/// the example's words; the span covers up to `l` unmasked words from it, stopping before
/// a special token, a masked word, or a word that would take it past the count. Spans are
/// drawn until the count is reached or `4 x words` draws are spent; the rest of the count
/// is then filled with single whole words, as [`WholeWords`](super::WholeWords) does. A
/// word is never split, a special token never chosen, and the count is exact whenever the
/// example's single-token words alone could make it up.
#[derive(Debug, Clone)]
pub struct Spans {
    special: SpecialTokens,
    /// `cumulative[k]`: probability that a span is at most `k + 1` words long.
    cumulative: [f64; MAX_SPAN_WORDS],
}

impl Spans {
    /// A selector that never chooses one of `special`, with SpanBERT's lengths.
    pub fn new(special: SpecialTokens) -> Self {
        let weights: Vec<f64> = (0..MAX_SPAN_WORDS)
            .map(|k| SPAN_GEOMETRIC_P * (1.0 - SPAN_GEOMETRIC_P).powi(k as i32))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut cumulative = [1.0; MAX_SPAN_WORDS];
        let mut sum = 0.0;
        for (c, w) in cumulative.iter_mut().zip(&weights) {
            sum += w / total;
            *c = sum;
        }
        cumulative[MAX_SPAN_WORDS - 1] = 1.0;
        Self {
            special,
            cumulative,
        }
    }

    /// A span length in words, 1 to [`MAX_SPAN_WORDS`].
    pub(crate) fn span_length(&self, rng: &mut Rng) -> usize {
        let u = rng.next_f64();
        1 + self.cumulative.iter().take_while(|&&c| u >= c).count()
    }

    /// The spans of `words` for `count` tokens, in the order they were drawn, marking
    /// their words in `taken`; returns the tokens they cover.
    pub(crate) fn draw_spans(
        &self,
        words: &[Word],
        count: usize,
        rng: &mut Rng,
        taken: &mut [bool],
        spans: &mut Vec<Span>,
    ) -> usize {
        let mut covered = 0;
        let n = words.len();
        for _ in 0..ATTEMPTS_PER_WORD * n {
            if covered == count {
                break;
            }
            let length = self.span_length(rng);
            let first = rng.below(n as u64) as usize;
            let mut end = first;
            let mut tokens = 0;
            while end < n && end - first < length && !taken[end] {
                let adjacent = end == first || words[end - 1].end() == words[end].start;
                let len = words[end].len as usize;
                if !adjacent || covered + tokens + len > count {
                    break;
                }
                tokens += len;
                end += 1;
            }
            if end == first {
                continue;
            }
            taken[first..end].fill(true);
            covered += tokens;
            spans.push(Span {
                first: first as u32,
                words: (end - first) as u32,
            });
        }
        covered
    }

    /// The spans of `example` for `count` tokens, drawn, then filled with single words.
    pub(crate) fn spans(
        &self,
        example: ExampleTokens<'_>,
        count: usize,
        rng: &mut Rng,
        words: &mut Vec<Word>,
        spans: &mut Vec<Span>,
    ) {
        words_of(example, self.special, words);
        let mut taken = vec![false; words.len()];
        let covered = self.draw_spans(words, count, rng, &mut taken, spans);
        if covered < count {
            let mut order = Vec::new();
            shuffled(words.len(), rng, &mut order);
            order.retain(|&w| !taken[w as usize]);
            let mut chosen = Vec::new();
            choose_exact(words, &order, count - covered, &mut chosen);
            spans.extend(chosen.iter().map(|&first| Span { first, words: 1 }));
        }
    }
}

impl PositionSelector for Spans {
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
            let mut spans = Vec::new();
            self.spans(example, count, rng, &mut scratch.words, &mut spans);
            let chosen = &mut scratch.chosen;
            chosen.extend(spans.iter().flat_map(|s| s.first..s.first + s.words));
            push_words(&scratch.words, chosen, positions);
        });
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::rng::Rng;
    use crate::tokenize::tests::SPECIAL;

    #[test]
    fn span_lengths_follow_the_geometric_clipped_at_ten_words_mean_3_8() {
        let spans = Spans::new(SPECIAL);
        let mut rng = Rng::new(11);
        let mut counts = [0u32; MAX_SPAN_WORDS + 1];
        let draws = 200_000;
        for _ in 0..draws {
            counts[spans.span_length(&mut rng)] += 1;
        }
        assert_eq!(counts[0], 0);
        let q: f64 = 1.0 - SPAN_GEOMETRIC_P;
        let total = 1.0 - q.powi(MAX_SPAN_WORDS as i32);
        for (k, &c) in counts.iter().enumerate().skip(1) {
            let expected = SPAN_GEOMETRIC_P * q.powi(k as i32 - 1) / total;
            let share = f64::from(c) / f64::from(draws);
            assert!(
                (share - expected).abs() < 0.005,
                "{k}: {share} vs {expected}"
            );
        }
        let mean = counts
            .iter()
            .enumerate()
            .map(|(k, &c)| k as f64 * f64::from(c))
            .sum::<f64>()
            / f64::from(draws);
        assert!((mean - 3.8).abs() < 0.03, "mean span length {mean}"); // SpanBERT's 3.8
    }

    /// `[CLS]`, then tokens of which each is special with probability 1/16 and starts a word
    /// with probability 2/3, then `[SEP]`.
    fn example(n: usize, seed: u64) -> (Vec<u32>, Vec<bool>) {
        let mut rng = Rng::new(seed);
        let mut ids = vec![SPECIAL.cls];
        let mut starts = vec![false];
        for i in 0..n as u32 {
            ids.push(if rng.below(16) == 0 {
                SPECIAL.sep
            } else {
                1000 + i
            });
            starts.push(rng.below(3) > 0);
        }
        ids.push(SPECIAL.sep);
        starts.push(false);
        (ids, starts)
    }

    proptest! {
        #[test]
        fn spans_are_one_to_ten_adjacent_whole_words_never_overlapping(
            n in 0usize..300,
            seed in any::<u64>(),
            count in 1usize..100,
        ) {
            let (ids, starts) = example(n, seed);
            let tokens = ExampleTokens { ids: &ids, word_starts: Some(&starts) };
            let (mut words, mut spans) = (Vec::new(), Vec::new());
            let mut rng = Rng::new(seed ^ 1);
            Spans::new(SPECIAL).spans(tokens, count, &mut rng, &mut words, &mut spans);
            let mut taken = vec![false; words.len()];
            let mut covered = 0;
            for span in &spans {
                let range = span.first as usize..(span.first + span.words) as usize;
                prop_assert!((1..=MAX_SPAN_WORDS).contains(&range.len()), "{span:?}");
                prop_assert!(range.end <= words.len());
                for w in range.clone() {
                    prop_assert!(!taken[w], "word {w} in two spans");
                    taken[w] = true;
                    covered += words[w].len as usize;
                }
                for w in range.start + 1..range.end {
                    // No token (a special one) between the words of a span.
                    prop_assert_eq!(words[w - 1].end(), words[w].start);
                }
            }
            prop_assert!(covered <= count);
        }
    }

    #[test]
    fn spans_average_close_to_their_drawn_length_when_the_budget_allows() {
        // 400 one-token words and 120 positions: most spans are drawn whole.
        let ids: Vec<u32> = (0..400).map(|i| 1000 + i).collect();
        let spans = Spans::new(SPECIAL);
        let (mut span_words, mut span_count) = (0, 0);
        for seed in 0..200 {
            let tokens = ExampleTokens {
                ids: &ids,
                word_starts: None,
            };
            let (mut words, mut drawn) = (Vec::new(), Vec::new());
            spans.spans(tokens, 120, &mut Rng::new(seed), &mut words, &mut drawn);
            assert_eq!(drawn.iter().map(|s| s.words).sum::<u32>(), 120);
            span_words += drawn.iter().map(|s| s.words).sum::<u32>();
            span_count += drawn.len() as u32;
        }
        let mean = f64::from(span_words) / f64::from(span_count);
        assert!((3.0..3.9).contains(&mean), "mean span {mean} words");
    }
}
