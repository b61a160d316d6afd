//! `bench pipeline`: the data pipeline (read, tokenize or read shards, pack, mask, queue)
//! measured without a model.

use std::path::PathBuf;

use clap::Args;
use electra_config::FlagOverrides;
use electra_pipeline::bench_pipeline::{bench_pipeline, PipelineBenchOptions};
use electra_pipeline::load_tokenizer;

use crate::args::load_config;
use crate::print_report;

/// `bench pipeline` arguments.
#[derive(Debug, Args)]
pub struct BenchPipelineArgs {
    /// Corpus files, globs, manifests or shard folders.
    #[arg(long, required = true, num_args = 1.., value_name = "PATH_OR_GLOB")]
    pub data: Vec<String>,
    /// A run config for the [data] settings (default: configs' defaults, batch 128 x 128).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a config value: `section.key=value` (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub overrides: Vec<String>,
    /// A `tokenizer.json` (default: the config's, else the embedded bert-base-uncased).
    #[arg(long)]
    pub tokenizer: Option<String>,
    /// Loader worker threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Measure for this long (the corpus repeats as often as needed).
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    /// Text sampled for the per-stage and tokenizer figures (raw corpora only), in MB.
    #[arg(long, default_value_t = 16)]
    pub sample_mb: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `bench pipeline`.
pub fn run(args: BenchPipelineArgs) -> anyhow::Result<()> {
    let flags = FlagOverrides {
        files: args.data,
        tokenizer: args.tokenizer,
        threads: Some(args.threads),
        ..FlagOverrides::default()
    };
    let config = load_config(args.config.as_deref(), &args.overrides, &flags)?;
    let tokenizer = load_tokenizer(&config.data.tokenizer)?
        .with_fast_path(config.data.execution.fast_tokenizer);
    let options = PipelineBenchOptions {
        seconds: args.seconds,
        sample_bytes: args.sample_mb * 1_000_000,
        seed: config.train.seed,
    };
    print_report(
        &bench_pipeline(&config.data, tokenizer, &options)?,
        args.json,
    )
}
