//! `electra`: pre-train text encoders with ELECTRA. Every command is a module of
//! [`commands`] (the data commands are `electra-data`'s): parse, call the library, print
//! its report.

mod args;
mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use electra_data_cli::commands::bench_pipeline::{self, BenchPipelineArgs};
use electra_data_cli::{main_with, DataCommand};

use commands::{bench_collective, bench_train, export_hf, finetune, flops, pretrain};

/// Pre-train text encoders with ELECTRA: a streaming Rust data pipeline and a libtorch
/// trainer.
#[derive(Debug, Parser)]
#[command(name = "electra", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pre-train a generator + discriminator from a corpus or from shards.
    Pretrain(pretrain::PretrainArgs),
    #[command(flatten)]
    Data(DataCommand),
    /// Write Hugging Face folders (discriminator/, generator/) from a run's weights.
    ExportHf(export_hf::ExportArgs),
    /// Fine-tune a pre-trained discriminator on a TSV classification or regression task.
    Finetune(finetune::FinetuneArgs),
    /// Measure a component on its own.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Print the training FLOPs of one step of a config (JSON), to compare objectives at
    /// equal compute.
    Flops(flops::FlopsArgs),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// The data pipeline (read, tokenize or read shards, pack, mask, queue) without a model.
    Pipeline(BenchPipelineArgs),
    /// Steady-state training throughput of a config on its data, with the step time split
    /// into data wait, copy, forward, backward and optimizer, and peak memory.
    Train(bench_train::BenchTrainArgs),
    /// The collectives of a distributed job (run under torchrun or srun, or alone): checks
    /// all-reduce, broadcast, barrier, gather and gradient buckets, then times all-reduce.
    Collective(bench_collective::BenchCollectiveArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    main_with(|| match cli.command {
        Command::Pretrain(args) => pretrain::run(args),
        Command::Data(command) => command.run(),
        Command::ExportHf(args) => export_hf::run(args),
        Command::Finetune(args) => finetune::run(args),
        Command::Flops(args) => flops::run(args),
        Command::Bench(BenchCommand::Pipeline(args)) => bench_pipeline::run(args),
        Command::Bench(BenchCommand::Train(args)) => bench_train::run(args),
        Command::Bench(BenchCommand::Collective(args)) => bench_collective::run(args),
    })
}
