//! The cross-crate tests, one test binary (each binary links libtorch, so one link instead
//! of one per file):
//! - [`pretrain_end_to_end`]: the discriminator learns on the embedded corpus;
//! - [`config_reference`]: every config key has a row in `docs/configuration.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod config_reference;
mod pretrain_end_to_end;

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}
