//! `flops`: the training FLOPs of one step of a config, as JSON, to compare objectives at
//! equal compute.

use clap::Args;
use electra_config::FlagOverrides;
use electra_data_cli::args::ConfigArgs;
use electra_trainer::flops::config_step_flops;

/// `flops` arguments.
#[derive(Debug, Args)]
pub struct FlopsArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Runs `flops`: one JSON object.
pub fn run(args: FlopsArgs) -> anyhow::Result<()> {
    let config = args.config.load(&FlagOverrides::default())?;
    println!("{}", serde_json::to_string(&config_step_flops(&config)?)?);
    Ok(())
}
