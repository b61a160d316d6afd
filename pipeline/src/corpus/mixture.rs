//! Weighted mixtures of corpora (`[[data.sources]]`): which source each example slot is
//! drawn from, and when a source is spent.
//!
//! - **Sources.** Each source is a corpus of its own (raw files or shards, with every
//!   `[data]` setting but `files` and `epochs`), read by its own reader thread, with its
//!   own seed ([`source_seed`]): its shuffle, packing and masks are those a plain loader
//!   over its files with that seed gives, so source s of a mixture can be checked alone.
//! - **Slots.** The mixture's stream is a sequence of example slots; slot n is drawn from
//!   the source [`SlotSchedule`] gives for (seed, slice, n), so the stream is the same for
//!   any thread count, and each slice of a data-parallel run has its own schedule. Weights
//!   are held per example, not per document: a source of long documents does not get
//!   more than its share.
//! - **Epochs.** A mixture has no epoch of its own. Each source counts its own passes
//!   (they key its shuffle and masks), and a batch's `epoch` is the smallest epoch among
//!   its examples. A source's `epochs` (default `data.epochs`) is how many passes it makes:
//!   more than the others up-samples it, and a source without one repeats forever.
//! - **Running out.** A source is spent when its last epoch ends or when its examples
//!   reach its token budget (`tokens`; with S data slices each slice spends `tokens / S`,
//!   the first `tokens % S` slices one more). The slots of a spent source are passed
//!   over, so the others share them in proportion to their weights. The mixture ends when
//!   every source is spent: never, while one repeats forever without a budget.
//! - **Resume.** The cursor ([`MixtureCursor`]) holds the next slot and each source's own
//!   position, example and token counts; every source seeks to its own position, as a
//!   plain loader does, and the counts give the budgets and the metrics.

use crate::cursor::{MixtureCursor, SourceCursor, StreamPosition};
use crate::rng::Rng;
use crate::slice::DataSlice;

use super::schedule::SlotSchedule;

/// Stream tag of the sources' seeds.
const SOURCE_STREAM: u64 = 0x736f_7572; // "sour"

/// The seed of mixture source `index` in a run seeded `seed`: the seed of its shuffle,
/// packing and masks.
pub fn source_seed(seed: u64, index: usize) -> u64 {
    Rng::derive(seed, &[SOURCE_STREAM, index as u64]).next_u64()
}

/// Slice `slice`'s share of a token budget of `tokens`.
pub fn slice_budget(tokens: u64, slice: DataSlice) -> u64 {
    let count = slice.count as u64;
    tokens / count + u64::from((slice.index as u64) < tokens % count)
}

/// The state of a mixture's draws: the schedule's next slot, and each source's cursor and
/// whether it is spent. A single corpus is a mixture of one source.
#[derive(Debug, Clone)]
pub struct Mixer {
    schedule: SlotSchedule,
    slot: u64,
    /// Each source's token budget (this slice's share).
    budgets: Vec<Option<u64>>,
    spent: Vec<bool>,
    cursors: Vec<SourceCursor>,
}

impl Mixer {
    /// Draws by `schedule`, from `start` (the slot and each source's cursor; `budgets`
    /// has one entry per source).
    pub fn new(schedule: SlotSchedule, budgets: Vec<Option<u64>>, start: MixtureCursor) -> Self {
        let sources = schedule.sources();
        let mut cursors = start.sources;
        cursors.resize(sources, SourceCursor::default());
        Self {
            schedule,
            slot: start.slot,
            spent: vec![false; sources],
            budgets,
            cursors,
        }
    }

    /// The source the next slot is drawn from, passing over (and resolving) slots whose
    /// source is spent; `None` when every source is spent. The slot stays open until
    /// [`record`](Self::record) fills it.
    pub fn next_source(&mut self) -> Option<usize> {
        loop {
            for (s, spent) in self.spent.iter_mut().enumerate() {
                let budget_reached = self.budgets[s].is_some_and(|b| self.cursors[s].tokens >= b);
                *spent |= budget_reached;
            }
            if self.spent.iter().all(|&s| s) {
                return None;
            }
            let source = self.schedule.source(self.slot);
            if !self.spent[source] {
                return Some(source);
            }
            self.slot += 1;
        }
    }

    /// Fills the open slot with an example of `source` (the one
    /// [`next_source`](Self::next_source) gave) of `tokens` real tokens, after which the
    /// source stands at `position`.
    pub fn record(&mut self, source: usize, position: StreamPosition, tokens: u64) {
        let cursor = &mut self.cursors[source];
        cursor.position = position;
        cursor.examples += 1;
        cursor.tokens += tokens;
        self.slot += 1;
    }

    /// `source` has no example left (its last epoch ended): it is spent.
    pub fn exhaust(&mut self, source: usize) {
        self.spent[source] = true;
    }

    /// Where source `source` stands.
    pub fn source_cursor(&self, source: usize) -> SourceCursor {
        self.cursors[source]
    }

    /// The state to resume from.
    pub fn cursor(&self) -> MixtureCursor {
        MixtureCursor {
            slot: self.slot,
            sources: self.cursors.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(document: u64) -> StreamPosition {
        StreamPosition::after(0, document, document, 0)
    }

    /// Draws `n` slots, each source giving examples of `tokens[s]` tokens.
    fn draw(mixer: &mut Mixer, n: usize, tokens: &[u64]) -> Vec<usize> {
        let mut drawn = Vec::new();
        for _ in 0..n {
            let Some(s) = mixer.next_source() else { break };
            let examples = mixer.source_cursor(s).examples;
            mixer.record(s, position(examples), tokens[s]);
            drawn.push(s);
        }
        drawn
    }

    fn mixer(weights: &[f64], budgets: Vec<Option<u64>>) -> Mixer {
        let schedule = SlotSchedule::new(weights, 3, DataSlice::WHOLE);
        Mixer::new(schedule, budgets, MixtureCursor::default())
    }

    #[test]
    fn each_source_keeps_its_own_cursor_and_counts() {
        let mut m = mixer(&[0.6, 0.4], vec![None, None]);
        let drawn = draw(&mut m, 1000, &[10, 3]);
        let from_0 = drawn.iter().filter(|&&s| s == 0).count() as u64;
        let c = m.cursor();
        assert_eq!(c.slot, 1000);
        assert_eq!(c.sources[0].examples, from_0);
        assert_eq!(c.sources[1].examples, 1000 - from_0);
        assert_eq!(c.sources[0].tokens, 10 * from_0);
        assert_eq!(c.sources[1].position, position(1000 - from_0 - 1));
        assert!((595..=605).contains(&from_0), "{from_0}");
    }

    #[test]
    fn a_resumed_mixer_draws_what_the_first_would_have() {
        let mut whole = mixer(&[0.2, 0.5, 0.3], vec![None, Some(400), None]);
        let all = draw(&mut whole, 3000, &[1, 7, 2]);
        let mut first = mixer(&[0.2, 0.5, 0.3], vec![None, Some(400), None]);
        let head = draw(&mut first, 1234, &[1, 7, 2]);
        let schedule = SlotSchedule::new(&[0.2, 0.5, 0.3], 3, DataSlice::WHOLE);
        let mut resumed = Mixer::new(schedule, vec![None, Some(400), None], first.cursor());
        let tail = draw(&mut resumed, 3000 - 1234, &[1, 7, 2]);
        assert_eq!([head, tail].concat(), all);
        assert_eq!(resumed.cursor(), whole.cursor());
    }

    #[test]
    fn a_spent_source_gives_its_slots_to_the_others_in_proportion() {
        // Source 1 (half the slots) stops at 700 tokens = 100 examples of 7.
        let mut m = mixer(&[0.5, 0.5 * 0.75, 0.5 * 0.25], vec![None, Some(700), None]);
        let drawn = draw(&mut m, 10_400, &[1, 7, 1]);
        let c = m.cursor();
        assert_eq!(
            c.sources[1].examples, 100,
            "the example reaching the budget is the last"
        );
        assert_eq!(c.sources[1].tokens, 700);
        // Once source 1 is spent (within ~270 slots), sources 0 and 2 share its slots 4:1,
        // as their weights.
        let tail = &drawn[400..];
        assert!(!tail.contains(&1));
        let share0 = tail.iter().filter(|&&s| s == 0).count() as f64 / tail.len() as f64;
        assert!((share0 - 0.8).abs() < 0.01, "{share0}");
        m.exhaust(0);
        m.exhaust(2);
        assert_eq!(
            m.next_source(),
            None,
            "every source spent: the mixture ends"
        );
    }

    #[test]
    fn budgets_are_shared_out_over_slices() {
        let shares: Vec<u64> = (0..3)
            .map(|i| slice_budget(10, DataSlice::new(i, 3).unwrap()))
            .collect();
        assert_eq!(shares, [4, 3, 3]);
        assert_eq!(slice_budget(10, DataSlice::WHOLE), 10);
        assert_ne!(source_seed(1, 0), source_seed(1, 1));
        assert_ne!(source_seed(1, 0), 1);
    }
}
