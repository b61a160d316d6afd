//! `inspect`: what a shard, a manifest or a shard folder holds.

use std::path::PathBuf;

use clap::Args;
use electra_pipeline::inspect::{inspect, InspectOptions};
use electra_pipeline::load_tokenizer;

use crate::print_report;

/// `inspect` arguments.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A .parquet shard, a manifest .json, or a folder holding manifest.json.
    pub path: PathBuf,
    /// Tokenizer to decode sample documents with (default: the embedded bert-base-uncased).
    #[arg(long)]
    pub tokenizer: Option<String>,
    /// Shards read for the length histogram.
    #[arg(long, default_value_t = 8)]
    pub max_shards: usize,
    /// Documents decoded back to text.
    #[arg(long, default_value_t = 3)]
    pub samples: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `inspect`.
pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let tokenizer = load_tokenizer(args.tokenizer.as_deref().unwrap_or(""))?;
    let options = InspectOptions {
        max_shards: args.max_shards,
        samples: args.samples,
        ..InspectOptions::default()
    };
    print_report(&inspect(&args.path, Some(&tokenizer), &options)?, args.json)
}
