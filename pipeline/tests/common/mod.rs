//! Helpers the pipeline's integration tests share.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use electra_pipeline::TextTokenizer;

/// A file of the project's `data/` folder.
pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(rel)
}

/// The embedded bert-base-uncased tokenizer.
pub fn tokenizer() -> TextTokenizer {
    TextTokenizer::from_file(data("tokenizer/bert-base-uncased/tokenizer.json")).unwrap()
}
