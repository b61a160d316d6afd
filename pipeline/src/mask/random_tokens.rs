//! Random-token selection: a uniform sample of the example's non-special positions, as
//! the reference ELECTRA and BERT choose them.

use super::{ExampleTokens, PositionSelector};
use crate::rng::Rng;
use crate::tokenize::SpecialTokens;

/// Chooses `count` non-special positions uniformly (a partial Fisher-Yates shuffle of the
/// candidates).
#[derive(Debug, Clone)]
pub struct RandomTokens {
    special: SpecialTokens,
}

impl RandomTokens {
    /// A selector that never chooses one of `special`.
    pub fn new(special: SpecialTokens) -> Self {
        Self { special }
    }
}

impl PositionSelector for RandomTokens {
    fn select(
        &self,
        example: ExampleTokens<'_>,
        count: usize,
        rng: &mut Rng,
        positions: &mut Vec<u32>,
    ) {
        let ids = example.ids;
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
        let k = count.min(n);
        // Partial Fisher-Yates: the first k candidates are a uniform sample.
        let candidates = &mut positions[start..];
        for i in 0..k {
            let j = i + rng.below((n - i) as u64) as usize;
            candidates.swap(i, j);
        }
        positions.truncate(start + k);
        positions[start..].sort_unstable();
    }
}
