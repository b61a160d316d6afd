//! The trainer's error type.

use std::path::PathBuf;

/// Everything that can stop a run, with the file or setting involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The config file or an override does not parse or is invalid.
    #[error(transparent)]
    Config(#[from] electra_config::ConfigError),
    /// A config value is out of range or contradicts another.
    #[error("invalid config: {field}: {reason}")]
    InvalidConfig { field: String, reason: String },
    /// The data pipeline failed.
    #[error(transparent)]
    Pipeline(#[from] electra_pipeline::PipelineError),
    /// A fine-tuning task file is malformed.
    #[error(transparent)]
    Task(#[from] crate::task::TaskError),
    /// The model rejected its input.
    #[error(transparent)]
    Model(#[from] electra_model::ModelError),
    /// libtorch failed.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// `--device cuda` was asked for but libtorch sees no GPU.
    #[error("--device cuda: no CUDA device is available to libtorch")]
    NoCuda,
    /// A checkpoint folder is incomplete, corrupt or does not fit the model.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint { path: PathBuf, reason: String },
    /// `--resume` found nothing to resume from.
    #[error("nothing to resume in {}: {refused}", dir.display())]
    NoCheckpoint { dir: PathBuf, refused: String },
    /// The resumed run's config differs from the checkpoint's where it matters.
    /// `allowed` lists the execution keys, the only ones that may differ.
    #[error("cannot resume with a different experiment: {keys} differ from the checkpoint's config (only the execution keys {allowed} may change)")]
    ResumeMismatch { keys: String, allowed: String },
    /// Too many steps in a row had a non-finite loss or gradient norm.
    #[error("{count} steps in a row (up to step {step}) had a non-finite loss or gradient norm and were skipped; stopping (train.max_bad_steps). Lower the learning rate or check the data")]
    NonFinite { step: u64, count: u64 },
    /// The data stream ended before the run's last step.
    #[error("the data ended after {batches} batches, before step {needed}; set data.epochs higher or leave it unset")]
    DataExhausted { batches: u64, needed: u64 },
    /// A launcher variable (torchrun's or Slurm's) is malformed or contradicts another.
    #[error("distributed launch: {var}: {reason}")]
    DistEnv { var: String, reason: String },
    /// A collective failed: a rank did not answer within the timeout, the master cannot be
    /// reached, or the ranks disagree (the reason names the rank, key and address).
    #[error("distributed: {reason}")]
    Dist { reason: String },
    /// A device facility (autocast, memory statistics) failed in libtorch.
    #[error("device: {reason}")]
    Device { reason: String },
}

impl From<electra_fsutil::FileError> for TrainError {
    fn from(e: electra_fsutil::FileError) -> Self {
        Self::Io {
            path: e.path,
            source: e.source,
        }
    }
}

impl TrainError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

/// Result with [`TrainError`].
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
