//! `electra-data`: the data tools of electra-rs without libtorch, for preprocessing
//! fleets. `electra` has the same commands, and training.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use electra_data_cli::commands::bench_pipeline::{self, BenchPipelineArgs};
use electra_data_cli::{main_with, DataCommand};

/// Prepare corpora for ELECTRA pre-training: tokenize into shards, merge and inspect
/// manifests, train tokenizers, measure the data pipeline. No libtorch needed.
#[derive(Debug, Parser)]
#[command(name = "electra-data", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Data(DataCommand),
    /// Measure a component on its own.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// The data pipeline (read, tokenize or read shards, pack, mask, queue) without a model.
    Pipeline(BenchPipelineArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    main_with(|| match cli.command {
        Command::Data(command) => command.run(),
        Command::Bench(BenchCommand::Pipeline(args)) => bench_pipeline::run(args),
    })
}
