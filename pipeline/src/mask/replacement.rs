//! Replacement corruption: each chosen position becomes `[MASK]`, a random token or stays,
//! with fixed shares (ELECTRA 85/0/15, BERT 80/10/10).

use super::Corruption;
use crate::rng::Rng;
use crate::tokenize::SpecialTokens;

/// ELECTRA: share of the chosen positions replaced by `[MASK]` (the rest are kept).
pub const ELECTRA_MASK_SHARE: f64 = 0.85;
/// BERT: share replaced by `[MASK]`.
pub const BERT_MASK_SHARE: f64 = 0.8;
/// BERT: share replaced by a random token (the rest are kept).
pub const BERT_RANDOM_SHARE: f64 = 0.1;

/// Draws from attempts at a non-special random token before keeping the original.
const RANDOM_TOKEN_ATTEMPTS: usize = 64;

/// Replaces a chosen position by `[MASK]` with probability `mask_share`, by a random
/// non-special token with probability `random_share`, and keeps it otherwise (one uniform
/// draw per position, in position order).
#[derive(Debug, Clone, PartialEq)]
pub struct Replacement {
    /// Share replaced by `[MASK]`.
    pub mask_share: f64,
    /// Share replaced by a random token.
    pub random_share: f64,
    special: SpecialTokens,
    vocab_size: usize,
}

impl Replacement {
    /// ELECTRA's shares: 85% `[MASK]`, 15% kept.
    pub const ELECTRA: Shares = Shares {
        mask: ELECTRA_MASK_SHARE,
        random: 0.0,
    };
    /// BERT's shares: 80% `[MASK]`, 10% random, 10% kept.
    pub const BERT: Shares = Shares {
        mask: BERT_MASK_SHARE,
        random: BERT_RANDOM_SHARE,
    };

    fn random_token(&self, rng: &mut Rng) -> Option<u32> {
        let vocab = self.vocab_size as u64;
        (0..RANDOM_TOKEN_ATTEMPTS).find_map(|_| {
            let t = rng.below(vocab) as u32;
            (!self.special.contains(t)).then_some(t)
        })
    }
}

/// The shares of a [`Replacement`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shares {
    /// Share replaced by `[MASK]`.
    pub mask: f64,
    /// Share replaced by a random token.
    pub random: f64,
}

impl Shares {
    /// The corruption with these shares: `[MASK]` is `special.mask`, random tokens are
    /// drawn below `vocab_size` and never special.
    pub fn with_vocabulary(self, special: SpecialTokens, vocab_size: usize) -> Replacement {
        Replacement {
            mask_share: self.mask,
            random_share: self.random,
            special,
            vocab_size,
        }
    }
}

impl Corruption for Replacement {
    fn corrupt(&self, ids: &mut [u32], positions: &[u32], rng: &mut Rng) {
        let masked_below = self.mask_share;
        let random_below = self.mask_share + self.random_share;
        for &p in positions {
            let r = rng.next_f64();
            if r < masked_below {
                ids[p as usize] = self.special.mask;
            } else if r < random_below {
                if let Some(t) = self.random_token(rng) {
                    ids[p as usize] = t;
                }
            }
        }
    }
}
