//! `bench train`: steady-state training throughput of a config on its data, the step time
//! split into data wait, copy, forward, backward and optimizer, and peak memory.

use clap::Args;
use electra_config::FlagOverrides;
use electra_data_cli::args::ConfigArgs;
use electra_data_cli::print_report;
use electra_trainer::bench_train::{bench_train, TrainBenchOptions};
use electra_trainer::device::{retain_cpu_heap, DeviceChoice};

use crate::args::{DeviceArg, PrecisionArg};

/// `bench train` arguments.
#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Timed steps (twice: once straight through, once with the phases timed).
    #[arg(long, default_value_t = 20)]
    pub steps: u64,
    /// Untimed steps first.
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// Examples per step; replaces data.batch_size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Positions per example; replaces data.max_seq_len (and raises
    /// model.max_position_embeddings to it when needed).
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Data loader worker threads (default: the config's).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Forward arithmetic; replaces train.precision.
    #[arg(long, value_enum)]
    pub precision: Option<PrecisionArg>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `bench train`.
pub fn run(args: BenchTrainArgs) -> anyhow::Result<()> {
    retain_cpu_heap();
    let config = args.config.load(&FlagOverrides {
        batch_size: args.batch_size,
        seq_len: args.seq_len,
        threads: args.threads,
        precision: args.precision.map(Into::into),
        ..FlagOverrides::default()
    })?;
    let options = TrainBenchOptions {
        device: DeviceChoice::from(args.device).resolve()?,
        warmup: args.warmup,
        steps: args.steps,
    };
    print_report(&bench_train(&config, options)?, args.json)
}
