//! `electra`: pre-train text encoders with ELECTRA.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use electra_trainer::config::RunConfig;
use electra_trainer::train::{pretrain, DeviceChoice, PretrainOptions, RunSummary};
use tracing_subscriber::EnvFilter;

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
    /// Pre-train a generator + discriminator from a corpus.
    Pretrain(PretrainArgs),
}

#[derive(Debug, Args)]
struct PretrainArgs {
    /// The experiment: a TOML file with [model], [data] and [train] sections.
    #[arg(long)]
    config: PathBuf,
    /// Override a config value: `section.key=value` (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    overrides: Vec<String>,
    /// Corpus files or globs; replaces the config's `data.files` (repeatable).
    #[arg(long, value_name = "PATH_OR_GLOB")]
    data: Vec<String>,
    /// A `tokenizer.json`; replaces the config's `data.tokenizer`.
    #[arg(long)]
    tokenizer: Option<String>,
    /// Run folder for config.toml, metrics.jsonl and final/ (default: runs/<config name>).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Stop after N steps (the schedule still spans train.total_steps).
    #[arg(long)]
    max_steps: Option<u64>,
    /// Data loader worker threads (default: the config's data.threads, 0 = all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Never draw a progress bar, even on a terminal.
    #[arg(long)]
    no_progress: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Pretrain(args) => run_pretrain(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_pretrain(args: PretrainArgs) -> anyhow::Result<()> {
    let mut config = RunConfig::load(&args.config, &args.overrides)
        .with_context(|| format!("loading {}", args.config.display()))?;
    if !args.data.is_empty() {
        config.data.files = args.data.clone();
    }
    if let Some(tokenizer) = &args.tokenizer {
        config.data.tokenizer = tokenizer.clone();
    }
    if let Some(steps) = args.max_steps {
        config.train.max_steps = Some(steps);
    }
    if let Some(threads) = args.threads {
        config.data.threads = threads;
    }
    config.validate()?;
    let run_dir = args.run_dir.unwrap_or_else(|| {
        let stem = args
            .config
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into());
        PathBuf::from("runs").join(stem)
    });
    let summary = pretrain(
        &config,
        &PretrainOptions {
            run_dir: run_dir.clone(),
            device: args.device,
            progress: !args.no_progress,
        },
    )?;
    print_summary(&summary, &run_dir);
    Ok(())
}

fn print_summary(s: &RunSummary, run_dir: &std::path::Path) {
    println!();
    println!("  {:<22} {}", "run", run_dir.display());
    println!("  {:<22} {}", "device", s.device);
    println!("  {:<22} {}", "steps", s.steps);
    println!("  {:<22} {}", "tokens", s.tokens);
    println!("  {:<22} {:.1}", "seconds", s.seconds);
    println!("  {:<22} {:.0}", "tokens/s", s.tokens_per_sec);
    if let (Some(first), Some(last)) = (&s.first, &s.last) {
        println!(
            "  {:<22} {:>10} {:>10}",
            "",
            format!("step {}", first.step),
            format!("step {}", last.step)
        );
        for (name, a, b) in [
            ("loss", first.loss, last.loss),
            ("generator loss", first.gen_loss, last.gen_loss),
            ("generator accuracy", first.gen_acc, last.gen_acc),
            ("discriminator loss", first.disc_loss, last.disc_loss),
            ("discriminator acc", first.disc_acc, last.disc_acc),
            (
                "  always-original acc",
                first.disc_baseline_acc,
                last.disc_baseline_acc,
            ),
            ("disc precision", first.disc_precision, last.disc_precision),
            ("disc recall", first.disc_recall, last.disc_recall),
            ("replaced fraction", first.replaced_frac, last.replaced_frac),
        ] {
            println!("  {name:<22} {a:>10.4} {b:>10.4}");
        }
    }
    println!("  {:<22} {}", "bad records skipped", s.bad_records.total());
    println!(
        "  {:<22} {}",
        "weights",
        s.final_dir.join("model.safetensors").display()
    );
}
