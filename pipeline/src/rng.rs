//! A small deterministic random number generator (SplitMix64), derived from the run seed
//! and a position, so that every random choice is reproducible on any thread.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Stream tags that keep the packing and masking RNGs apart.
pub(crate) const PACK_STREAM: u64 = 0x7061_636b; // "pack"
pub(crate) const MASK_STREAM: u64 = 0x6d61_736b; // "mask"

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SplitMix64: 64 bits of state, passes BigCrush, trivially seeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator seeded directly.
    pub fn new(seed: u64) -> Self {
        Self { state: mix(seed) }
    }

    /// A generator whose state is a hash of `seed` and the `path` of positions (stream tag,
    /// epoch, document id, ...). Different paths give independent streams.
    pub fn derive(seed: u64, path: &[u64]) -> Self {
        let mut h = mix(seed ^ GOLDEN);
        for (i, &v) in path.iter().enumerate() {
            h = mix(h ^ mix(v.wrapping_add((i as u64 + 1).wrapping_mul(GOLDEN))));
        }
        Self { state: h }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }

    /// A uniform float in [0, 1) with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in [0, n) without bias (Lemire's method); 0 when `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// A uniform integer in [lo, hi] (inclusive, like Python's `random.randint`).
    pub fn range_inclusive(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(mut rng: Rng) -> Vec<u64> {
        (0..4).map(|_| rng.next_u64()).collect()
    }

    #[test]
    fn derived_streams_are_reproducible_and_distinct() {
        let a = first(Rng::derive(1, &[2, 3]));
        assert_eq!(a, first(Rng::derive(1, &[2, 3])));
        assert_ne!(a, first(Rng::derive(1, &[3, 2])));
        assert_ne!(a, first(Rng::derive(2, &[2, 3])));
        assert_ne!(a, first(Rng::derive(1, &[2, 3, 0])));
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut rng = Rng::new(7);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            let v = rng.below(10);
            counts[v as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.below(1), 0);
    }

    #[test]
    fn next_f64_is_in_unit_interval_with_mean_one_half() {
        let mut rng = Rng::new(3);
        let mut sum = 0.0;
        for _ in 0..100_000 {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
            sum += x;
        }
        assert!((sum / 100_000.0 - 0.5).abs() < 0.01);
    }

    #[test]
    fn range_inclusive_reaches_both_ends() {
        let mut rng = Rng::new(5);
        let v: Vec<u64> = (0..1000).map(|_| rng.range_inclusive(5, 8)).collect();
        assert!(v.iter().all(|x| (5..=8).contains(x)));
        assert!(v.contains(&5) && v.contains(&8));
    }
}
