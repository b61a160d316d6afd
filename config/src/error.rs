//! The config's error type.

use std::path::PathBuf;

/// A config that cannot be read, parsed or accepted, naming the file, override or key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Reading the config file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The config file or an override does not parse (unknown keys included).
    #[error("config {origin}: {message}")]
    Parse { origin: String, message: String },
    /// A value is out of range or contradicts another.
    #[error("invalid config: {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// A `[data]` value is out of range.
    #[error(transparent)]
    Data(#[from] electra_pipeline::PipelineError),
}

/// Result with [`ConfigError`].
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;
