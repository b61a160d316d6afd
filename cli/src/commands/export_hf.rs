//! `export-hf`: Hugging Face folders (`discriminator/`, `generator/`) from a run's weights.

use std::path::PathBuf;

use clap::Args;
use electra_data_cli::print_report;
use electra_trainer::export::export_hf_folders;

/// `export-hf` arguments.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A run folder (its final/ weights, else its newest complete checkpoint), a
    /// checkpoint folder (RUN_DIR/checkpoints/step-N, verified against its SHA256SUMS), or
    /// a final/ folder.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Output folder: discriminator/ and generator/ are written inside.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `export-hf`.
pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    print_report(&export_hf_folders(&args.checkpoint, &args.out)?, false)
}
