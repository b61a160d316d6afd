//! All-`[MASK]` corruption: every chosen position becomes `[MASK]`; no token is kept or
//! replaced by a random one.

use super::Corruption;
use crate::rng::Rng;

/// Replaces every chosen position by the `[MASK]` id; draws nothing from the RNG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllMask {
    mask: u32,
}

impl AllMask {
    /// The corruption that writes `mask` (the tokenizer's `[MASK]` id).
    pub fn new(mask: u32) -> Self {
        Self { mask }
    }
}

impl Corruption for AllMask {
    fn corrupt(&self, ids: &mut [u32], positions: &[u32], _rng: &mut Rng) {
        for &p in positions {
            ids[p as usize] = self.mask;
        }
    }
}
