//! The epoch shuffle of a document stream, keyed by (seed, epoch): the order of its files
//! (or shards), then a permutation of every block of `shuffle_window` consecutive
//! documents. Raw files and shards draw the same permutations (the shard stream's RNG
//! paths), so a raw corpus and shards holding one file each, in file order, give the same
//! stream (tested in `tests/raw_shuffle.rs`).

use crate::rng::Rng;

/// Stream tag of the shuffle RNG: the shard stream's (`shard_stream.rs`), so raw files and
/// shards are permuted alike.
const SHUFFLE_STREAM: u64 = 0x5348_5546;
/// Sub-stream tag of the per-block document permutations (the shard stream's).
const BLOCK_STREAM: u64 = 0x626c_6f63;

/// A uniform permutation of `0..n` drawn from `rng` (Fisher-Yates, from the top).
fn permutation(n: usize, mut rng: Rng) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    for i in (1..order.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// The order in which `epoch` reads `n` files: `order[k]` is the k-th file read.
pub(crate) fn file_order(seed: u64, epoch: u64, n: usize) -> Vec<u32> {
    permutation(n, Rng::derive(seed, &[SHUFFLE_STREAM, epoch]))
}

/// The permutation of block `block` (of `n` documents) of `epoch`: the document at
/// position `k` of the block is the one read `order[k]`-th.
pub(crate) fn block_order(seed: u64, epoch: u64, block: u64, n: usize) -> Vec<u32> {
    permutation(
        n,
        Rng::derive(seed, &[SHUFFLE_STREAM, epoch, BLOCK_STREAM, block]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_permutations_keyed_by_seed_epoch_and_block() {
        let a = block_order(7, 1, 3, 100);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<u32>>());
        assert_eq!(a, block_order(7, 1, 3, 100), "pure");
        assert_ne!(a, block_order(7, 1, 4, 100), "per block");
        assert_ne!(a, block_order(7, 2, 3, 100), "per epoch");
        assert_ne!(a, block_order(8, 1, 3, 100), "per seed");
        assert_ne!(file_order(7, 0, 50), file_order(7, 1, 50));
        assert_eq!(file_order(7, 0, 1), [0]);
        assert!(file_order(7, 0, 0).is_empty());
    }
}
