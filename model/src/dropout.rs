//! Dropout, and the attention that needs it, fast on CPU.
//!
//! libtorch draws CPU dropout masks with a serial Bernoulli sampler (one Mersenne-twister
//! draw per element on one thread, unless MKL's sampler is picked, which it is only on
//! Intel CPUs). On ELECTRA-Small that was about a seventh of a CPU training step, with the
//! other intra-op threads idle. Here a CPU mask is a counter-based hash of
//! (key, element index) compared with `p * 2^32`, vectorised by the compiler: the key is one
//! draw from torch's default generator, so `tch::manual_seed` still fixes every mask.
//! Elsewhere (CUDA) libtorch's own fused dropout runs.
//!
//! [`math_attention`] is the matching attention for CPU training: the math path of
//! scaled dot-product attention with this dropout on the probabilities.

use tch::{Device, Kind, Tensor};

/// Elements per hash block: the counter is 32 bits, so each block gets its own key.
const BLOCK: usize = 1 << 32;

/// Applies inverted dropout: zeroes each element with probability `p` and scales the rest
/// by `1 / (1 - p)`. The identity when `!train` or `p == 0`; zeros when `p >= 1`.
pub fn dropout(x: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p <= 0.0 {
        return x.shallow_clone();
    }
    if p >= 1.0 {
        return x.zeros_like();
    }
    match x.device() {
        Device::Cpu => x * mask_like(x, p),
        _ => x.dropout(p, train),
    }
}

/// A `{0, 1 / (1 - p)}` mask of `x`'s shape (and floating kind) on the CPU, keyed by one
/// draw from torch's default generator.
pub fn mask_like(x: &Tensor, p: f64) -> Tensor {
    let key = Tensor::randint(i64::MAX, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]) as u64;
    let mask = Tensor::empty(x.size(), (Kind::Float, Device::Cpu));
    let n = x.numel();
    if n == 0 {
        return mask.to_kind(x.kind()); // no storage to fill (its pointer may be null)
    }
    #[allow(unsafe_code)]
    // SAFETY: `mask` is a fresh, contiguous float tensor of `n` elements on the CPU; no
    // other handle on its storage exists while the slice lives.
    let values = unsafe { std::slice::from_raw_parts_mut(mask.data_ptr().cast::<f32>(), n) };
    fill_mask(values, key, p);
    match x.kind() {
        Kind::Float => mask,
        kind => mask.to_kind(kind),
    }
}

/// Fills `out` with the mask for `key`: element `i` is 0 when `hash(key, i) < p * 2^32`,
/// else `1 / (1 - p)`. On libtorch's intra-op thread count when `out` is large (the values
/// do not depend on the split).
fn fill_mask(out: &mut [f32], key: u64, p: f64) {
    const PER_THREAD: usize = 1 << 18;
    let threshold = (p.clamp(0.0, 1.0) * 4_294_967_296.0).round();
    let scale = (1.0 / (1.0 - p)) as f32;
    let threads = (out.len() / PER_THREAD).clamp(1, tch::get_num_threads().max(1) as usize);
    let per = out.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for (part, chunk) in out.chunks_mut(per).enumerate() {
            let start = part * per;
            if part + 1 == threads {
                fill(chunk, start, key, threshold, scale); // the last part on this thread
            } else {
                scope.spawn(move || fill(chunk, start, key, threshold, scale));
            }
        }
    });
}

/// Chris Wellons' `lowbias32` integer hash: a bijection of `u32` with low bias.
#[inline(always)]
fn mix(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// Elements `start..start + out.len()` of the mask. Each block of 2^32 elements has its own
/// key (the counter is 32 bits); the inner loop is branch-free so that it vectorises.
fn fill(out: &mut [f32], start: usize, key: u64, threshold: f64, scale: f32) {
    if threshold >= 4_294_967_296.0 {
        out.fill(0.0); // p == 1
        return;
    }
    let threshold = threshold as u32;
    let mut done = 0;
    while done < out.len() {
        let index = start + done;
        let block = (index / BLOCK) as u64;
        let len = (BLOCK - index % BLOCK).min(out.len() - done);
        let key = key ^ block.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let (k0, k1) = (key as u32, (key >> 32) as u32);
        let first = (index % BLOCK) as u32;
        for (i, v) in out[done..done + len].iter_mut().enumerate() {
            let h = mix(mix(first.wrapping_add(i as u32) ^ k0) ^ k1);
            *v = if h >= threshold { scale } else { 0.0 };
        }
        done += len;
    }
}

/// Scaled dot-product attention with `key_mask` and dropout `p` on the probabilities in
/// training: libtorch's fused kernel, except in CPU training with dropout, where libtorch's
/// fused kernel has none and its math path samples the mask serially ([`math_attention`]).
///
/// # Shapes
/// As [`math_attention`].
pub fn attention(
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
    key_mask: &Tensor,
    p: f64,
    train: bool,
) -> Tensor {
    let p = if train { p } else { 0.0 };
    if p > 0.0 && query.device() == Device::Cpu {
        return math_attention(query, key, value, key_mask, p);
    }
    Tensor::scaled_dot_product_attention(query, key, value, Some(key_mask), p, false, None, false)
}

/// Scaled dot-product attention with `key_mask`, dropout `p` on the probabilities, done
/// as separate products (the math path), for CPU training.
///
/// # Shapes
/// - `query`, `key`, `value`: `[batch, heads, seq, head_dim]`
/// - `key_mask`: `[batch, 1, 1, seq]` Bool, true where the key is a real token
/// - returns `[batch, heads, seq, head_dim]`
///
/// A query whose keys are all padding attends evenly to them (the result is finite; such
/// rows are padding and never reach a loss).
pub fn math_attention(
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
    key_mask: &Tensor,
    p: f64,
) -> Tensor {
    let size = query.size();
    let (batch, heads, seq, head_dim) = (size[0], size[1], size[2], size[3]);
    let keys = key.size()[2];
    let scale = 1.0 / (head_dim as f64).sqrt();
    // 0 for real keys, -1e30 for padding (finite in bfloat16 too, where f32::MIN rounds to
    // -inf), expanded over heads:
    // [b, 1, 1, t] -> [b * h, 1, t].
    let bias = key_mask
        .logical_not()
        .to_kind(query.kind())
        .multiply_scalar(-1e30)
        .expand([batch, heads, 1, keys], false)
        .reshape([batch * heads, 1, keys]);
    let q = query.reshape([batch * heads, seq, head_dim]);
    let k = key.reshape([batch * heads, keys, head_dim]);
    let v = value.reshape([batch * heads, keys, head_dim]);
    // bias + scale * q k^T in one product.
    let scores = bias.baddbmm(&q, &k.transpose(1, 2), 1.0, scale);
    let probs = dropout(&scores.softmax(-1, scores.kind()), p, true);
    probs.bmm(&v).view([batch, heads, seq, value.size()[3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::rng_lock;

    fn hashed_mask(n: usize, key: u64, p: f64) -> Vec<f32> {
        let mut out = vec![0f32; n];
        fill_mask(&mut out, key, p);
        out
    }

    /// Random query, key and value of `shape`.
    fn qkv(shape: [i64; 4], kind: Kind) -> (Tensor, Tensor, Tensor) {
        let opts = (kind, Device::Cpu);
        (
            Tensor::randn(shape, opts),
            Tensor::randn(shape, opts),
            Tensor::randn(shape, opts),
        )
    }

    #[test]
    fn masks_drop_p_of_the_elements_and_scale_the_rest() {
        for p in [0.1, 0.5, 0.9] {
            let mask = hashed_mask(1 << 20, 12345, p);
            let scale = (1.0 / (1.0 - p)) as f32;
            assert!(mask.iter().all(|&v| v == 0.0 || v == scale));
            let dropped = mask.iter().filter(|&&v| v == 0.0).count() as f64 / mask.len() as f64;
            // binomial sd at n = 2^20 is below 5e-4
            assert!((dropped - p).abs() < 3e-3, "p {p}: dropped {dropped}");
        }
    }

    #[test]
    fn masks_do_not_depend_on_the_thread_split_or_block_edges() {
        let (n, key, p) = ((1 << 20) + 3, 77, 0.1);
        let threshold = (p * 4_294_967_296.0f64).round();
        let mut serial = vec![0f32; n];
        fill(&mut serial, 0, key, threshold, 1.0);
        let split = hashed_mask(n, key, p);
        let scale = (1.0 / (1.0 - p)) as f32;
        assert!(serial.iter().zip(&split).all(|(a, b)| a * scale == *b));
        // Across the 2^32 boundary: one call equals two calls on either side of it.
        let start = BLOCK - 5;
        let mut whole = vec![0f32; 10];
        fill(&mut whole, start, key, threshold, 1.0);
        let (mut left, mut right) = (vec![0f32; 5], vec![0f32; 5]);
        fill(&mut left, start, key, threshold, 1.0);
        fill(&mut right, BLOCK, key, threshold, 1.0);
        assert_eq!(whole, [left, right].concat());
    }

    #[test]
    fn masks_depend_on_the_key_and_neighbours_are_independent() {
        let p = 0.5;
        let a = hashed_mask(1 << 16, 1, p);
        let b = hashed_mask(1 << 16, 2, p);
        assert_eq!(a, hashed_mask(1 << 16, 1, p));
        let agree = a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64;
        assert!((agree - 0.5).abs() < 0.01, "keys 1 and 2 agree on {agree}");
        // Pairs of neighbours: each of the 4 patterns about a quarter of the time.
        let mut patterns = [0usize; 4];
        for w in a.windows(2) {
            patterns[usize::from(w[0] == 0.0) * 2 + usize::from(w[1] == 0.0)] += 1;
        }
        let n = (a.len() - 1) as f64;
        for (i, &count) in patterns.iter().enumerate() {
            assert!(
                (count as f64 / n - 0.25).abs() < 0.01,
                "pattern {i}: {count}"
            );
        }
    }

    #[test]
    fn cpu_dropout_is_fixed_by_manual_seed_and_backpropagates_through_the_mask() {
        let _rng = rng_lock();
        let x = Tensor::ones([64, 33], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        tch::manual_seed(5);
        let y = dropout(&x, 0.25, true);
        tch::manual_seed(5);
        let again = dropout(&x, 0.25, true);
        assert!(y.equal(&again));
        tch::manual_seed(6);
        assert!(!y.equal(&dropout(&x, 0.25, true)));
        y.sum(Kind::Float).backward();
        // d(sum(x * mask)) / dx = mask
        assert!(x.grad().equal(&y.detach()));
        assert!(dropout(&x, 0.25, false).equal(&x));
        let empty = Tensor::zeros([0, 4], (Kind::Float, Device::Cpu));
        assert_eq!(dropout(&empty, 0.25, true).size(), [0, 4]);
        assert!(dropout(&x, 0.0, true).equal(&x));
        assert_eq!(
            dropout(&x, 1.0, true)
                .abs()
                .sum(Kind::Float)
                .double_value(&[]),
            0.0
        );
    }

    #[test]
    fn math_attention_without_dropout_equals_fused_attention() {
        let _rng = rng_lock();
        tch::manual_seed(1);
        let (q, k, v) = qkv([2, 3, 5, 4], Kind::Float);
        let real =
            Tensor::from_slice(&[true, true, true, true, true, true, true, true, false, false])
                .view([2, 1, 1, 5]);
        let fused = attention(&q, &k, &v, &real, 0.1, false);
        let math = math_attention(&q, &k, &v, &real, 0.0);
        assert!(math.allclose(&fused, 1e-5, 1e-6, false));
    }

    #[test]
    fn a_query_whose_keys_are_all_padding_stays_finite_in_float_and_bfloat16() {
        let _rng = rng_lock();
        tch::manual_seed(3);
        for kind in [Kind::Float, Kind::BFloat16] {
            let (q, k, v) = qkv([2, 1, 3, 4], kind);
            // The second sequence is padding throughout.
            let real =
                Tensor::from_slice(&[true, true, false, false, false, false]).view([2, 1, 1, 3]);
            let out = math_attention(&q, &k, &v, &real, 0.1);
            assert!(bool::try_from(out.isfinite().all()).unwrap(), "{kind:?}");
        }
    }

    #[test]
    fn math_attention_drops_probabilities_with_the_seeded_mask() {
        let _rng = rng_lock();
        tch::manual_seed(2);
        let (q, k, v) = qkv([2, 2, 6, 4], Kind::Float);
        let real = Tensor::ones([2, 1, 1, 6], (Kind::Bool, Device::Cpu));
        tch::manual_seed(9);
        let got = math_attention(&q, &k, &v, &real, 0.3);
        tch::manual_seed(9);
        assert!(
            attention(&q, &k, &v, &real, 0.3, true).equal(&got),
            "CPU training takes the math path"
        );
        // The same computation by hand, with the mask the same seed gives.
        let probs = (q.matmul(&k.transpose(2, 3)) / 2.0).softmax(-1, Kind::Float);
        tch::manual_seed(9);
        let mask = mask_like(&probs, 0.3);
        let expected = (probs * mask).matmul(&v);
        assert!(got.allclose(&expected, 1e-5, 1e-6, false));
    }
}
