//! The run folder's layout, in one place: every path inside a run folder is built here.
//!
//! ```text
//! RUN_DIR/
//!   config.toml               the resolved config
//!   tokenizer.json            the run's tokenizer
//!   metrics.jsonl             one row per logging step
//!   checkpoints/
//!     latest                  the newest complete checkpoint's folder name
//!     step-000001000/         a checkpoint (see crate::checkpoint)
//!     .tmp-step-000001000-PID a checkpoint being written
//!   final/                    the final weights as Hugging Face folders
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Result, TrainError};

/// The resolved config.
pub const CONFIG_FILE: &str = "config.toml";
/// The run's tokenizer.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// The metrics rows.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Folder of a run's checkpoints.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// The pointer file naming the newest complete checkpoint.
pub const LATEST_FILE: &str = "latest";
/// The final weights.
pub const FINAL_DIR: &str = "final";
/// Start of a checkpoint folder's name.
const STEP_PREFIX: &str = "step-";
/// Start of a checkpoint folder being written.
const PARTIAL_PREFIX: &str = ".tmp-step-";

/// A run folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The run folder at `root` (nothing is created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Creates the folder.
    pub fn create(&self) -> Result<()> {
        std::fs::create_dir_all(&self.root).map_err(TrainError::io(&self.root))
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `config.toml`.
    pub fn config(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }

    /// `tokenizer.json`.
    pub fn tokenizer(&self) -> PathBuf {
        self.root.join(TOKENIZER_FILE)
    }

    /// `metrics.jsonl`.
    pub fn metrics(&self) -> PathBuf {
        self.root.join(METRICS_FILE)
    }

    /// `checkpoints/`.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join(CHECKPOINTS_DIR)
    }

    /// `checkpoints/latest`.
    pub fn latest(&self) -> PathBuf {
        self.checkpoints().join(LATEST_FILE)
    }

    /// `checkpoints/step-…` of `step`.
    pub fn checkpoint(&self, step: u64) -> PathBuf {
        self.checkpoints().join(step_dir_name(step))
    }

    /// `checkpoints/.tmp-step-…-PID`: where this process writes the checkpoint of `step`.
    pub fn partial_checkpoint(&self, step: u64) -> PathBuf {
        self.checkpoints()
            .join(format!("{PARTIAL_PREFIX}{step:09}-{}", std::process::id()))
    }

    /// `final/`.
    pub fn final_dir(&self) -> PathBuf {
        self.root.join(FINAL_DIR)
    }
}

/// The default run folder of a config file: `runs/<its file stem>`.
pub fn default_run_dir(config_path: &Path) -> PathBuf {
    let stem = config_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    PathBuf::from("runs").join(stem)
}

/// The name of the checkpoint folder of `step`.
pub fn step_dir_name(step: u64) -> String {
    format!("{STEP_PREFIX}{step:09}")
}

/// The step of a checkpoint folder's name.
pub fn parse_step_dir(name: &str) -> Option<u64> {
    name.strip_prefix(STEP_PREFIX)?.parse().ok()
}

/// Whether `name` is a checkpoint folder whose write never completed.
pub fn is_partial_checkpoint(name: &str) -> bool {
    name.starts_with(PARTIAL_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_folders_round_trip_and_partial_writes_are_recognised() {
        let run = RunDir::new("runs/x");
        assert_eq!(step_dir_name(1000), "step-000001000");
        assert_eq!(parse_step_dir(&step_dir_name(1000)), Some(1000));
        assert_eq!(parse_step_dir("latest"), None);
        assert_eq!(
            run.checkpoint(7),
            Path::new("runs/x/checkpoints/step-000000007")
        );
        let partial = run.partial_checkpoint(7);
        let name = partial.file_name().unwrap().to_string_lossy().into_owned();
        assert!(is_partial_checkpoint(&name), "{name}");
        assert_eq!(parse_step_dir(&name), None);
        assert_eq!(run.latest(), Path::new("runs/x/checkpoints/latest"));
        assert_eq!(run.final_dir(), Path::new("runs/x/final"));
    }
}
