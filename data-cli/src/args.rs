//! Arguments several commands share: the run config, loaded once with its `--set`
//! overrides and the flags that replace keys ([`FlagOverrides`]).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use electra_config::{FlagOverrides, RunConfig};

/// `--config FILE` and `--set section.key=value`.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// The experiment: a TOML file with [model], [data] and [train] sections.
    #[arg(long)]
    pub config: PathBuf,
    /// Override a config value: `section.key=value` (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub overrides: Vec<String>,
}

impl ConfigArgs {
    /// The config file with its overrides, then `flags`.
    pub fn load(&self, flags: &FlagOverrides) -> anyhow::Result<RunConfig> {
        load_config(Some(&self.config), &self.overrides, flags)
    }
}

/// The config at `path` (the defaults without one) with `overrides` (`section.key=value`)
/// and then `flags` applied, validated.
pub fn load_config(
    path: Option<&Path>,
    overrides: &[String],
    flags: &FlagOverrides,
) -> anyhow::Result<RunConfig> {
    let config = match path {
        Some(path) => RunConfig::load(path, overrides)
            .with_context(|| format!("loading {}", path.display()))?,
        None => RunConfig::from_toml_str("", overrides, "(defaults)")?,
    };
    Ok(config.with_flags(flags)?)
}
