//! `merge-manifests`: the manifests of a preprocessing job's parts joined into one.

use std::path::PathBuf;

use clap::Args;
use electra_pipeline::preprocess::merge;

use crate::print_report;

/// `merge-manifests` arguments.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Folders (all their manifest-*.json parts) or manifest files.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The merged manifest (default: FIRST_INPUT_FOLDER/manifest.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `merge-manifests`.
pub fn run(args: MergeArgs) -> anyhow::Result<()> {
    print_report(&merge(&args.inputs, args.out)?, args.json)
}
