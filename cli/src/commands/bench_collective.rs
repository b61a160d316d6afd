//! `bench collective`: the collectives of a distributed job (under torchrun or srun, or
//! alone) checked, then the all-reduce timed.

use std::time::Duration;

use clap::Args;
use electra_data_cli::print_report;
use electra_trainer::device::DeviceChoice;
use electra_trainer::dist::bench::{bench_collective_launched, CollectiveBenchOptions};

use crate::args::{BackendArg, DeviceArg};

/// `bench collective` arguments.
#[derive(Debug, Args)]
pub struct BenchCollectiveArgs {
    /// Size of the timed all-reduce buffer (f32), in MB.
    #[arg(long, default_value_t = 500.0)]
    pub size_mb: f64,
    /// Timed all-reduces.
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Untimed all-reduces first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Device (cuda: GPU LOCAL_RANK).
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Collective backend (auto: NCCL on CUDA, else the slow TCPStore one).
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// Give up on any rank that does not answer within this many seconds.
    #[arg(long, default_value_t = 60.0)]
    pub timeout_seconds: f64,
    /// Print one JSON object (rank 0).
    #[arg(long)]
    pub json: bool,
}

/// Runs `bench collective`; rank 0 prints the report.
pub fn run(args: BenchCollectiveArgs) -> anyhow::Result<()> {
    if !(args.timeout_seconds > 0.0 && args.size_mb > 0.0) {
        anyhow::bail!("--timeout-seconds and --size-mb must be positive");
    }
    let report = bench_collective_launched(CollectiveBenchOptions {
        size_bytes: (args.size_mb * 1e6) as usize,
        iters: args.iters,
        warmup: args.warmup,
        device: DeviceChoice::from(args.device).resolve()?,
        backend: args.backend.into(),
        timeout: Duration::from_secs_f64(args.timeout_seconds),
        exit_after: None,
    })?;
    if report.rank != 0 {
        return Ok(());
    }
    print_report(&report, args.json)
}
