//! `pretrain`: a generator + discriminator (or an MLM encoder) pre-trained from a corpus
//! or from shards; stopped by SIGTERM/SIGINT, it checkpoints and exits with
//! [`EXIT_INTERRUPTED`].

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use electra_config::FlagOverrides;
use electra_data_cli::args::ConfigArgs;
use electra_trainer::device::retain_cpu_heap;
use electra_trainer::run_dir::default_run_dir;
use electra_trainer::train::{pretrain, PretrainOptions};

use crate::args::DeviceArg;

/// Exit status of a run stopped by SIGTERM or SIGINT after it wrote its checkpoint:
/// `EX_TEMPFAIL`, "try again" (with `--resume`).
pub const EXIT_INTERRUPTED: u8 = 75;

/// `pretrain` arguments.
#[derive(Debug, Args)]
pub struct PretrainArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Corpus files, globs, shard manifests or shard folders; replaces `data.files`.
    #[arg(long, value_name = "PATH_OR_GLOB")]
    pub data: Vec<String>,
    /// A `tokenizer.json`; replaces the config's `data.tokenizer`.
    #[arg(long)]
    pub tokenizer: Option<String>,
    /// Run folder for config.toml, metrics.jsonl and final/ (default: runs/<config name>).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Stop after N steps (the schedule still spans train.total_steps).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Data loader worker threads (default: the config's data.threads, 0 = all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Start from Hugging Face weights (a folder with discriminator/ and generator/, or a
    /// discriminator folder alone).
    #[arg(long, value_name = "DIR")]
    pub init_from_hf: Option<PathBuf>,
    /// Never draw a progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    /// Continue the run in --run-dir from its newest complete checkpoint (weights,
    /// optimizer, data position, counters). The config must be the same experiment: only
    /// the keys of how a run executes (loader threads, max_steps, logging, [checkpoint],
    /// the collective; docs/configuration.md marks them) may change.
    #[arg(long)]
    pub resume: bool,
}

/// Runs `pretrain`.
pub fn run(args: PretrainArgs) -> anyhow::Result<()> {
    retain_cpu_heap();
    let config = args.config.load(&FlagOverrides {
        files: args.data,
        tokenizer: args.tokenizer,
        threads: args.threads,
        max_steps: args.max_steps,
        ..FlagOverrides::default()
    })?;
    let options = PretrainOptions {
        run_dir: args
            .run_dir
            .unwrap_or_else(|| default_run_dir(&args.config.config)),
        device: args.device.into(),
        progress: !args.no_progress,
        init_from_hf: args.init_from_hf,
        resume: args.resume,
        stop: Some(install_stop_handler()?),
    };
    let summary = pretrain(&config, &options)?;
    print!("{summary}");
    if summary.interrupted {
        eprintln!(
            "stopped by a signal at step {}; checkpoint {}; continue with --resume (exit status {EXIT_INTERRUPTED})",
            summary.steps,
            summary
                .checkpoint
                .as_ref()
                .map_or("(none)".into(), |p| p.display().to_string())
        );
        std::process::exit(i32::from(EXIT_INTERRUPTED));
    }
    Ok(())
}

/// SIGTERM and SIGINT set the returned flag: the run finishes its step, writes a checkpoint
/// and exits with [`EXIT_INTERRUPTED`]. A second signal while the first is handled exits at
/// once with 128 + the signal number (130 for Ctrl-C).
fn install_stop_handler() -> anyhow::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, flag.clone())
            .context("installing the signal handler")?;
        signal_hook::flag::register(signal, flag.clone())
            .context("installing the signal handler")?;
    }
    Ok(flag)
}
