//! The slot schedule of a mixture: which source example slot `n` is drawn from, a pure
//! function of (seed, slice, n).
//!
//! The sources' weights cut `[0, 2^64)` into one interval each, as long as its share.
//! Slot `n` goes to the source whose interval holds `offset + n * G (mod 2^64)`, where
//! `G = 2^64 / phi` (the golden ratio) and `offset` is drawn from (seed, slice). The points
//! of this Weyl sequence are as evenly spread as any sequence can be (their discrepancy
//! falls as `log N / N`), so over any run of N consecutive slots each source gets its share
//! within a few slots, whatever N and wherever the run starts: a batch of 128 holds each
//! source's share to within an example or two, and over 10,000 slots every share is
//! within 0.1 percentage points of its weight (tested). A slot whose source is spent is
//! passed over, which shares that source's slots among the others in proportion to their
//! weights. Nothing here depends on what was read, so the schedule is the same for any
//! thread count, and a resumed loader needs only the slot number.

use crate::rng::Rng;
use crate::slice::DataSlice;

/// `2^64 / phi`, odd: the step of the Weyl sequence.
const GOLDEN_STEP: u64 = 0x9E37_79B9_7F4A_7C15;
/// Stream tag of the schedule's offset.
const SCHEDULE_STREAM: u64 = 0x6d69_7874; // "mixt"

/// Which source each example slot of one slice is drawn from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotSchedule {
    offset: u64,
    /// `ends[s]`: the end of source s's interval of `[0, 2^64)` (the last is `u64::MAX`,
    /// and covers it).
    ends: Vec<u64>,
}

impl SlotSchedule {
    /// The schedule of `slice` for sources of `weights` (positive; they need not sum to 1).
    pub fn new(weights: &[f64], seed: u64, slice: DataSlice) -> Self {
        let total: f64 = weights.iter().sum();
        let mut cumulative = 0.0;
        let mut ends: Vec<u64> = weights
            .iter()
            .map(|w| {
                cumulative += w;
                // A float in [0, 2^64] casts to u64 saturating at the top.
                (cumulative / total * 18_446_744_073_709_551_616.0) as u64
            })
            .collect();
        if let Some(last) = ends.last_mut() {
            *last = u64::MAX;
        }
        let offset = Rng::derive(seed, &[SCHEDULE_STREAM, slice.index as u64]).next_u64();
        Self { offset, ends }
    }

    /// A schedule that draws every slot from source 0 (a single corpus).
    pub fn single() -> Self {
        Self {
            offset: 0,
            ends: vec![u64::MAX],
        }
    }

    /// The number of sources.
    pub fn sources(&self) -> usize {
        self.ends.len()
    }

    /// The source slot `slot` is drawn from.
    pub fn source(&self, slot: u64) -> usize {
        let point = self.offset.wrapping_add(slot.wrapping_mul(GOLDEN_STEP));
        let s = self.ends.partition_point(|&end| end <= point);
        s.min(self.ends.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counts(schedule: &SlotSchedule, from: u64, n: u64) -> Vec<u64> {
        let mut counts = vec![0; schedule.sources()];
        for slot in from..from + n {
            counts[schedule.source(slot)] += 1;
        }
        counts
    }

    #[test]
    fn a_single_source_gets_every_slot() {
        let schedule = SlotSchedule::new(&[3.0], 1, DataSlice::WHOLE);
        assert_eq!(counts(&schedule, 0, 1000), [1000]);
        assert_eq!(counts(&SlotSchedule::single(), 77, 10), [10]);
    }

    #[test]
    fn the_schedule_depends_on_seed_and_slice_only() {
        let weights = [0.5, 0.3, 0.2];
        let a = SlotSchedule::new(&weights, 9, DataSlice::WHOLE);
        let slots = |s: &SlotSchedule| (0..200).map(|n| s.source(n)).collect::<Vec<_>>();
        assert_eq!(
            slots(&a),
            slots(&SlotSchedule::new(&weights, 9, DataSlice::WHOLE))
        );
        assert_ne!(
            slots(&a),
            slots(&SlotSchedule::new(&weights, 10, DataSlice::WHOLE))
        );
        let other_slice = SlotSchedule::new(&weights, 9, DataSlice::new(1, 2).unwrap());
        assert_ne!(slots(&a), slots(&other_slice));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Over 10,000 consecutive slots anywhere in the stream, every share is within 0.1
        /// percentage points of its weight (the issue asks for 1).
        #[test]
        fn shares_hold_the_weights_over_ten_thousand_slots(
            weights in proptest::collection::vec(0.01f64..1.0, 1..6),
            seed in any::<u64>(),
            start in 0u64..1 << 40,
            slice in 0usize..4,
        ) {
            let schedule = SlotSchedule::new(&weights, seed, DataSlice::new(slice, 4).unwrap());
            let total: f64 = weights.iter().sum();
            let n = 10_000;
            for (s, count) in counts(&schedule, start, n).into_iter().enumerate() {
                let share = count as f64 / n as f64;
                let weight = weights[s] / total;
                prop_assert!((share - weight).abs() < 0.001, "source {s}: {share} vs {weight}");
            }
        }

        /// Every batch of 64 slots holds each source's share to within 3 slots.
        #[test]
        fn every_batch_holds_each_share_to_a_few_slots(
            weights in proptest::collection::vec(0.05f64..1.0, 2..5),
            seed in any::<u64>(),
        ) {
            let schedule = SlotSchedule::new(&weights, seed, DataSlice::WHOLE);
            let total: f64 = weights.iter().sum();
            for batch in 0..50u64 {
                for (s, count) in counts(&schedule, batch * 64, 64).into_iter().enumerate() {
                    let expected = 64.0 * weights[s] / total;
                    prop_assert!((count as f64 - expected).abs() <= 3.0, "{count} vs {expected}");
                }
            }
        }
    }
}
