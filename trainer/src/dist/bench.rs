//! `electra bench collective`: checks every collective on every rank, then times the
//! all-reduce of one large buffer (algorithm and bus bandwidth, as nccl-tests reports them).

use std::time::{Duration, Instant};

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::exchange::dist;
use super::{connect, Backend, Collective, DistEnv, GradBuckets};
use crate::error::{Result, TrainError};

/// Exit status of a rank that [`CollectiveBenchOptions::exit_after`] stops.
pub const TEST_EXIT_STATUS: i32 = 17;

/// **Tests only**: the variable [`bench_collective_launched`] reads
/// [`CollectiveBenchOptions::exit_after`] from.
pub const EXIT_AFTER_VAR: &str = "ELECTRA_TEST_DIST_EXIT_AFTER";

/// What to measure.
#[derive(Debug, Clone)]
pub struct CollectiveBenchOptions {
    /// Bytes of the timed f32 buffer.
    pub size_bytes: usize,
    /// Timed all-reduces.
    pub iters: usize,
    /// Untimed all-reduces first.
    pub warmup: usize,
    /// Where the tensors live (NCCL: this rank's GPU).
    pub device: Device,
    /// Which collective implementation.
    pub backend: Backend,
    /// Bound on every wait.
    pub timeout: Duration,
    /// **Tests only**: this rank exits at once (status [`TEST_EXIT_STATUS`], no cleanup,
    /// like a crash) after this many timed-loop all-reduces, so the tests can check that
    /// the other ranks fail within the timeout. [`bench_collective_launched`] reads it
    /// from [`EXIT_AFTER_VAR`].
    pub exit_after: Option<u64>,
}

/// What the bench found (each rank checks its own results; rank 0 reports).
#[derive(Debug, Clone, Serialize)]
pub struct CollectiveReport {
    /// `"nccl"` or `"store"`.
    pub backend: String,
    /// Number of ranks.
    pub world_size: usize,
    /// The reporting rank.
    pub rank: usize,
    /// The device, as libtorch names it.
    pub device: String,
    /// Bytes of the timed buffer.
    pub size_bytes: usize,
    /// Timed all-reduces.
    pub iters: usize,
    /// `W (W + 1) / 2`: what each element of the buffer filled with `rank + 1` sums to.
    pub all_reduce_expected: f64,
    /// The smallest element after the first all-reduce.
    pub all_reduce_min: f64,
    /// The largest element after the first all-reduce.
    pub all_reduce_max: f64,
    /// Double, BFloat16, Half and Int64 tensors sum correctly too.
    pub kinds_ok: bool,
    /// Broadcast from the last rank reached every rank.
    pub broadcast_ok: bool,
    /// The barrier returned on every rank.
    pub barrier_ok: bool,
    /// `all_gather_bytes` returned every rank's bytes in rank order.
    pub gather_ok: bool,
    /// [`GradBuckets`] summed the grads (f32 and bf16 buckets, grads missing on some or
    /// all ranks).
    pub grad_buckets_ok: bool,
    /// Seconds per all-reduce (the slowest rank's mean).
    pub seconds_per_all_reduce: f64,
    /// `size_bytes / seconds`, in GB/s.
    pub algbw_gb_per_s: f64,
    /// `algbw * 2 (W - 1) / W`: what each link carries, comparable across world sizes.
    pub busbw_gb_per_s: f64,
}

fn check(ok: bool, rank: usize, what: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(dist(format!("rank {rank}: check failed: {}", what())))
    }
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.f_to_kind(Kind::Double)?.f_double_value(&[])?)
}

/// Runs the bench in this process as torchrun or Slurm launched it (world size 1, a store
/// on 127.0.0.1 at a free port, without their variables): a CUDA `options.device` becomes
/// this rank's GPU (`LOCAL_RANK`), and [`EXIT_AFTER_VAR`] (tests only) sets
/// [`CollectiveBenchOptions::exit_after`].
pub fn bench_collective_launched(mut options: CollectiveBenchOptions) -> Result<CollectiveReport> {
    let env = DistEnv::from_env()?.unwrap_or_else(DistEnv::single);
    if let Device::Cuda(_) = options.device {
        options.device = env.cuda_device();
    }
    if let Ok(value) = std::env::var(EXIT_AFTER_VAR) {
        let exit_after = value.parse().map_err(|e| TrainError::DistEnv {
            var: EXIT_AFTER_VAR.into(),
            reason: format!("`{value}`: {e}"),
        })?;
        options.exit_after = Some(exit_after);
    }
    bench_collective(&env, &options)
}

/// Connects (see [`connect`]), checks every collective, then times `iters` all-reduces.
///
/// # Errors
/// A collective failed or timed out, or a result is wrong (the error names the check).
pub fn bench_collective(env: &DistEnv, opts: &CollectiveBenchOptions) -> Result<CollectiveReport> {
    let coll = connect(env, opts.backend, opts.device, opts.timeout)?;
    let (rank, world) = (coll.rank(), coll.world_size());
    let w = world as f64;
    let expected = w * (w + 1.0) / 2.0;
    let device = opts.device;

    // All-reduce of the timed buffer, once, checked.
    let numel = (opts.size_bytes / 4).max(1) as i64;
    let buffer = Tensor::f_full([numel], (rank + 1) as f64, (Kind::Float, device))?;
    coll.all_reduce_sum(&buffer)?;
    let (min, max) = (scalar(&buffer.f_min()?)?, scalar(&buffer.f_max()?)?);
    check(min == expected && max == expected, rank, || {
        format!("all_reduce_sum of rank + 1 gave {min}..{max}, expected {expected}")
    })?;

    for kind in [Kind::Double, Kind::BFloat16, Kind::Half, Kind::Int64] {
        let t = Tensor::f_full([17], (rank + 1) as f64, (kind, device))?;
        coll.all_reduce_sum(&t)?;
        let (lo, hi) = (scalar(&t.f_min()?)?, scalar(&t.f_max()?)?);
        let tolerance = if matches!(kind, Kind::BFloat16 | Kind::Half) {
            expected * 0.01
        } else {
            0.0
        };
        check(
            (lo - expected).abs() <= tolerance && (hi - expected).abs() <= tolerance,
            rank,
            || format!("all_reduce_sum in {kind:?} gave {lo}..{hi}, expected {expected}"),
        )?;
    }

    let root = world - 1;
    let value = if rank == root { 42.0 } else { -1.0 };
    let t = Tensor::f_full([33], value, (Kind::Float, device))?;
    coll.broadcast(&t, root)?;
    let (lo, hi) = (scalar(&t.f_min()?)?, scalar(&t.f_max()?)?);
    check(lo == 42.0 && hi == 42.0, rank, || {
        format!("broadcast from rank {root} gave {lo}..{hi}, expected 42")
    })?;

    coll.barrier()?;

    let gathered = coll.all_gather_bytes(format!("rank {rank}").as_bytes())?;
    let wanted: Vec<Vec<u8>> = (0..world)
        .map(|r| format!("rank {r}").into_bytes())
        .collect();
    check(gathered == wanted, rank, || {
        format!("all_gather_bytes gave {gathered:?}")
    })?;

    check_grad_buckets(coll.as_ref(), device, None)?;
    check_grad_buckets(coll.as_ref(), device, Some(Kind::BFloat16))?;

    // Timing.
    let mut done = 0u64;
    let mut step = |coll: &dyn Collective| -> Result<()> {
        coll.all_reduce_sum(&buffer)?;
        done += 1;
        if opts.exit_after.is_some_and(|n| done >= n) {
            eprintln!(
                "rank {rank}: exiting after {done} all-reduces (ELECTRA_TEST_DIST_EXIT_AFTER)"
            );
            std::process::exit(TEST_EXIT_STATUS);
        }
        Ok(())
    };
    for _ in 0..opts.warmup {
        step(coll.as_ref())?;
    }
    synchronize(device);
    coll.barrier()?;
    let start = Instant::now();
    for _ in 0..opts.iters {
        step(coll.as_ref())?;
    }
    synchronize(device);
    let mine = start.elapsed().as_secs_f64() / opts.iters.max(1) as f64;
    let slowest = coll
        .all_gather_bytes(&mine.to_le_bytes())?
        .iter()
        .filter_map(|b| {
            <[u8; 8]>::try_from(b.as_slice())
                .ok()
                .map(f64::from_le_bytes)
        })
        .fold(mine, f64::max);
    let bytes = (numel * 4) as f64;
    let algbw = if slowest > 0.0 {
        bytes / slowest / 1e9
    } else {
        0.0
    };
    Ok(CollectiveReport {
        backend: coll.backend().into(),
        world_size: world,
        rank,
        device: format!("{device:?}"),
        size_bytes: bytes as usize,
        iters: opts.iters,
        all_reduce_expected: expected,
        all_reduce_min: min,
        all_reduce_max: max,
        kinds_ok: true,
        broadcast_ok: true,
        barrier_ok: true,
        gather_ok: true,
        grad_buckets_ok: true,
        seconds_per_all_reduce: slowest,
        algbw_gb_per_s: algbw,
        busbw_gb_per_s: algbw * 2.0 * (w - 1.0) / w,
    })
}

fn synchronize(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

/// Grads of `rank + 1` (p0), `2 (rank + 1)` on ranks other than 0 only (p1), none on any
/// rank (p3), `3 (rank + 1)` (p4, its own bucket), and a frozen p2, through tiny buckets.
fn check_grad_buckets(coll: &dyn Collective, device: Device, kind: Option<Kind>) -> Result<()> {
    let (rank, w) = (coll.rank(), coll.world_size() as f64);
    let r1 = (rank + 1) as f64;
    let param = |shape: &[i64], requires_grad: bool| -> Result<Tensor> {
        Ok(Tensor::f_zeros(shape, (Kind::Float, device))?.set_requires_grad(requires_grad))
    };
    let params = [
        param(&[3, 5], true)?,
        param(&[7], true)?,
        param(&[4], false)?,
        param(&[2, 2], true)?,
        param(&[1000], true)?,
    ];
    let mut loss =
        (&params[0] * r1).f_sum(Kind::Float)? + (&params[4] * (3.0 * r1)).f_sum(Kind::Float)?;
    if rank != 0 {
        loss += (&params[1] * (2.0 * r1)).f_sum(Kind::Float)?;
    }
    loss.f_backward()?;
    let mut buckets = GradBuckets::new(&params, 32, kind);
    buckets.reduce(coll)?;

    let sum = w * (w + 1.0) / 2.0;
    let label = format!("GradBuckets ({kind:?})");
    let expect = |i: usize, want: Option<f64>| -> Result<()> {
        let grad = params[i].grad();
        match want {
            None => check(!grad.defined(), rank, || {
                format!("{label}: p{i} got a grad, expected none")
            }),
            Some(want) => {
                check(grad.defined(), rank, || {
                    format!("{label}: p{i} has no grad, expected {want}")
                })?;
                check(
                    grad.size() == params[i].size() && grad.kind() == Kind::Float,
                    rank,
                    || {
                        format!(
                            "{label}: p{i}'s grad is {:?} {:?}",
                            grad.size(),
                            grad.kind()
                        )
                    },
                )?;
                let (lo, hi) = (scalar(&grad.f_min()?)?, scalar(&grad.f_max()?)?);
                let tolerance = if kind.is_some() {
                    want.abs() * 0.01
                } else {
                    0.0
                };
                check(
                    (lo - want).abs() <= tolerance && (hi - want).abs() <= tolerance,
                    rank,
                    || format!("{label}: p{i}'s grad is {lo}..{hi}, expected {want}"),
                )
            }
        }
    };
    expect(0, Some(sum))?;
    expect(1, (w > 1.0).then_some(2.0 * (sum - 1.0)))?;
    expect(2, None)?;
    expect(3, None)?;
    expect(4, Some(3.0 * sum))?;
    check(buckets.len() >= 2, rank, || {
        format!("{label}: {} bucket(s), expected several", buckets.len())
    })
}

impl std::fmt::Display for CollectiveReport {
    /// What was checked, then the timed all-reduce.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  {} backend, {} ranks, {}: all-reduce {}, broadcast, barrier, gather, grad buckets ok",
            self.backend, self.world_size, self.device, self.all_reduce_expected
        )?;
        writeln!(
            f,
            "  {:.1} MB x {}: {:.3} ms per all-reduce, algbw {:.2} GB/s, busbw {:.2} GB/s",
            self.size_bytes as f64 / 1e6,
            self.iters,
            self.seconds_per_all_reduce * 1e3,
            self.algbw_gb_per_s,
            self.busbw_gb_per_s
        )
    }
}
