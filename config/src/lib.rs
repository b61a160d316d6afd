//! The run configuration: one TOML file with `[model]`, `[data]`, `[train]`,
//! `[checkpoint]` and `[dist]` sections, `--set section.key=value` overrides, unknown keys
//! rejected with their name. No libtorch: the data-only tools read it too.
//!
//! 1. [`RunConfig::load`]: the file is parsed, the [overrides](RunConfig::from_toml_str)
//!    applied to the parsed table, and relative paths in `[data]` (`files`, `tokenizer`,
//!    the `files` of `[[data.sources]]`) resolved against the config file's folder, so `configs/tiny.toml` can name
//!    `../data/corpus/*.zst` from any working directory.
//! 2. [`RunConfig::with_flags`]: command-line flags that replace keys ([`FlagOverrides`]),
//!    then [`RunConfig::validate`]: combinations serde cannot check.
//! 3. [`RunConfig::to_toml`]: the resolved config (absolute paths, every default filled
//!    in), as the trainer writes it to `RUN_DIR/config.toml` and into checkpoints.
//!
//! Each section holds what defines the experiment, and the sections whose settings only
//! change how a run executes hold them in an execution part: [`DataExecution`] (loader
//! threads, prefetch, ...), [`TrainExecution`] (`max_steps`, logging, the non-finite
//! guard), [`DistExecution`] (the collective's backend, timeout, buckets) and the whole
//! [`CheckpointSection`]. In TOML they are plain keys of their section. A resumed run may
//! change exactly the execution keys ([`RunConfig::execution_keys`]); any other difference
//! is refused ([`RunConfig::resume_differences`]). A new key goes into the experiment or
//! the execution part of its section, and the resume check follows.
//!
//! ```
//! use electra_config::RunConfig;
//! let config = RunConfig::from_toml_str("[train]\nseed = 7\n", &["train.log_every=5".into()], "example")?;
//! assert_eq!((config.train.seed, config.train.execution.log_every), (7, 5));
//! let mut resumed = config.clone();
//! resumed.data.execution.threads = 3; // how the loader runs: may change on resume
//! resumed.data.max_seq_len = 64; // what the batches are: may not
//! assert_eq!(config.resume_differences(&resumed)?, vec!["data.max_seq_len".to_string()]);
//! # Ok::<(), electra_config::ConfigError>(())
//! ```

mod checkpoint;
mod dist;
mod error;
mod flags;
mod model;
mod overrides;
mod resume;
mod train;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use checkpoint::CheckpointSection;
pub use dist::{DistBackend, DistExecution, DistSection, GradReduceKind};
pub use electra_pipeline::{DataConfig, DataExecution};
pub use error::{ConfigError, Result};
pub use flags::FlagOverrides;
pub use model::{ModelSection, Objective, Sampler};
pub use train::{
    Precision, TrainExecution, TrainSection, DEFAULT_ADAM_BETA1, DEFAULT_ADAM_BETA2,
    DEFAULT_ADAM_EPS, DEFAULT_CLIP_GRAD_NORM, DEFAULT_LEARNING_RATE, DEFAULT_LOG_EVERY,
    DEFAULT_MAX_BAD_STEPS, DEFAULT_SEED, DEFAULT_TOTAL_STEPS, DEFAULT_WARMUP_STEPS,
    DEFAULT_WEIGHT_DECAY,
};

/// The whole experiment, and how this run of it executes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Model sizes and the objective.
    #[serde(default)]
    pub model: ModelSection,
    /// Corpus, tokenizer, packing, masking, loader.
    #[serde(default)]
    pub data: DataConfig,
    /// Optimizer, schedule, seed, logging.
    #[serde(default)]
    pub train: TrainSection,
    /// When checkpoints are written and how many are kept.
    #[serde(default)]
    pub checkpoint: CheckpointSection,
    /// Data-parallel training: data slices, collective backend, timeouts.
    #[serde(default)]
    pub dist: DistSection,
}

impl RunConfig {
    /// Reads `path`, applies `overrides` (`section.key=value`, the value parsed as a TOML
    /// literal, else taken as a string), and resolves relative data paths against the
    /// config file's directory.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::from_toml_str(&text, overrides, &path.display().to_string())?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        config.resolve_paths(&base);
        Ok(config)
    }

    /// Parses a config from TOML text with overrides; `origin` names it in errors.
    pub fn from_toml_str(text: &str, overrides: &[String], origin: &str) -> Result<Self> {
        let parse_error = |message: String| ConfigError::Parse {
            origin: origin.to_string(),
            message,
        };
        let mut value: toml::Table =
            toml::from_str(text).map_err(|e| parse_error(e.to_string()))?;
        for item in overrides {
            overrides::apply_override(&mut value, item)?;
        }
        let config: RunConfig = toml::Value::Table(value)
            .try_into()
            .map_err(|e: toml::de::Error| parse_error(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks combinations serde cannot.
    pub fn validate(&self) -> Result<()> {
        self.data.validate()?;
        self.validate_model()?;
        self.validate_train()?;
        self.validate_dist()?;
        if self.checkpoint.keep == 0 {
            return Err(invalid("checkpoint.keep", "must be at least 1"));
        }
        let lr = self.train.learning_rate;
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(invalid(
                "train.learning_rate",
                format!("{lr} is not a finite non-negative number"),
            ));
        }
        Ok(())
    }

    fn validate_model(&self) -> Result<()> {
        let m = &self.model;
        if m.hidden_size <= 0
            || m.num_attention_heads <= 0
            || m.hidden_size % m.num_attention_heads != 0
        {
            return Err(invalid(
                "model.hidden_size",
                format!(
                    "{} must be a positive multiple of model.num_attention_heads ({})",
                    m.hidden_size, m.num_attention_heads
                ),
            ));
        }
        if !(m.generator_fraction > 0.0 && m.generator_fraction <= 1.0) {
            return Err(invalid(
                "model.generator_fraction",
                format!("{} is not in (0, 1]", m.generator_fraction),
            ));
        }
        if self.data.max_seq_len as i64 > m.max_position_embeddings {
            return Err(invalid(
                "data.max_seq_len",
                format!(
                    "{} exceeds model.max_position_embeddings ({})",
                    self.data.max_seq_len, m.max_position_embeddings
                ),
            ));
        }
        Ok(())
    }

    fn validate_train(&self) -> Result<()> {
        let t = &self.train;
        if t.total_steps == 0 {
            return Err(invalid("train.total_steps", "must be at least 1"));
        }
        if t.execution.log_every == 0 {
            return Err(invalid("train.log_every", "must be at least 1"));
        }
        if t.execution.max_bad_steps == 0 {
            return Err(invalid("train.max_bad_steps", "must be at least 1"));
        }
        Ok(())
    }

    fn validate_dist(&self) -> Result<()> {
        let d = &self.dist;
        if d.data_slices == 0 || !self.data.batch_size.is_multiple_of(d.data_slices) {
            return Err(invalid(
                "dist.data_slices",
                format!(
                    "{} must be at least 1 and divide data.batch_size ({})",
                    d.data_slices, self.data.batch_size
                ),
            ));
        }
        if d.execution.timeout_seconds == 0 {
            return Err(invalid("dist.timeout_seconds", "must be at least 1"));
        }
        if d.execution.bucket_mb == 0 {
            return Err(invalid("dist.bucket_mb", "must be at least 1"));
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &str| -> String {
            if p.is_empty() || Path::new(p).is_absolute() {
                p.to_string()
            } else {
                base.join(p).display().to_string()
            }
        };
        self.data.files = self.data.files.iter().map(|f| resolve(f)).collect();
        for source in &mut self.data.sources {
            source.files = source.files.iter().map(|f| resolve(f)).collect();
        }
        self.data.tokenizer = resolve(&self.data.tokenizer);
    }

    /// The config as TOML, every default written out.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| ConfigError::Parse {
            origin: "resolved config".into(),
            message: e.to_string(),
        })
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_string(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests;
