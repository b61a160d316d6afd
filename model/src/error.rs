//! The crate's error type.

use tch::Kind;

/// Everything that can go wrong while building or running the model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A tensor given to a forward function has the wrong shape.
    #[error("{what}: expected shape {expected}, found {found:?}")]
    Shape {
        /// Which tensor (for example `"ElectraInput::segment_ids"`).
        what: &'static str,
        /// The expected shape, in words (`"[batch, seq] = [4, 128]"`).
        expected: String,
        /// The shape that was given.
        found: Vec<i64>,
    },
    /// A tensor given to a forward function has the wrong element type.
    #[error("{what}: expected element kind {expected}, found {found:?}")]
    Kind {
        /// Which tensor.
        what: &'static str,
        /// The accepted kinds, in words.
        expected: &'static str,
        /// The kind that was given.
        found: Kind,
    },
    /// A configuration value is out of range.
    #[error("invalid model config: {field} = {value}: {reason}")]
    Config {
        /// The Hugging Face name of the field.
        field: &'static str,
        /// The offending value, printed.
        value: String,
        /// What a valid value looks like.
        reason: &'static str,
    },
    /// The generator's and the discriminator's configs disagree on a value they must share.
    #[error(
        "generator and discriminator configs must agree on {field} (shared embeddings): \
         discriminator {discriminator}, generator {generator}"
    )]
    SharedConfigMismatch {
        /// The Hugging Face name of the field.
        field: &'static str,
        /// The discriminator's value.
        discriminator: i64,
        /// The generator's value.
        generator: i64,
    },
    /// A forward option is out of range.
    #[error("invalid option {option} = {value}: {reason}")]
    Option {
        /// The option's name.
        option: &'static str,
        /// The offending value, printed.
        value: String,
        /// What a valid value looks like.
        reason: &'static str,
    },
    /// An error raised by libtorch.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A safetensors or config file is malformed or does not hold what was expected.
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl ModelError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<std::path::PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

impl From<electra_fsutil::FileError> for ModelError {
    fn from(e: electra_fsutil::FileError) -> Self {
        Self::Io {
            path: e.path,
            source: e.source,
        }
    }
}

/// `Result` with [`ModelError`].
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// Checks that `tensor` has exactly the shape `expected`.
pub(crate) fn check_shape(
    what: &'static str,
    tensor: &tch::Tensor,
    expected: &[i64],
) -> Result<()> {
    let found = tensor.size();
    if found.as_slice() == expected {
        Ok(())
    } else {
        Err(ModelError::Shape {
            what,
            expected: format!("{expected:?}"),
            found,
        })
    }
}

/// Checks that `tensor` has 64-bit integer elements (token ids, positions).
pub(crate) fn check_int64(what: &'static str, tensor: &tch::Tensor) -> Result<()> {
    let found = tensor.f_kind()?;
    if found == Kind::Int64 {
        Ok(())
    } else {
        Err(ModelError::Kind {
            what,
            expected: "Int64",
            found,
        })
    }
}
