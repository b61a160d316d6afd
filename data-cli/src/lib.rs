//! The data commands of the ELECTRA tools, shared by two binaries: `electra-data` (this
//! crate's, with no libtorch: `cargo install --path data-cli` needs no Python) and
//! `electra` (crate `electra-cli`, which adds training).
//!
//! Each command is a module of [`commands`]: its clap arguments and a `run` that parses,
//! calls the pipeline library and prints the report it gets back (`Display` for the table,
//! `Serialize` for `--json`). [`args`] holds what several commands take: the run config
//! with its overrides. [`main_with`] is both binaries' `main`: logging to stderr, the error
//! printed with its causes.
//!
//! 1. [`commands::preprocess`]: a corpus tokenized once into zstd Parquet shards.
//! 2. [`commands::merge_manifests`]: the manifests of a job's parts joined into one.
//! 3. [`commands::inspect`]: what a shard, a manifest or a shard folder holds.
//! 4. [`commands::train_tokenizer`]: a WordPiece, BPE or Unigram `tokenizer.json`.
//! 5. [`commands::bench_pipeline`]: the data pipeline measured without a model.

pub mod args;
pub mod commands;

use std::io::IsTerminal;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

pub use commands::DataCommand;

/// Runs a binary's command: installs the log subscriber (stderr, `RUST_LOG`, default
/// `info`), runs `command`, prints an error with its causes. Success or failure as the exit
/// status.
pub fn main_with(command: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match command() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints `report`: its table, or one JSON line with `json`.
pub fn print_report<R>(report: &R, json: bool) -> anyhow::Result<()>
where
    R: std::fmt::Display + serde::Serialize,
{
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}
