//! Command-line flags that replace config keys (`--data`, `--tokenizer`, `--threads`,
//! `--batch-size`, `--seq-len`, `--max-steps`, `--precision`): applied in one place, after
//! the file and its `--set` overrides, and validated with them.

use crate::error::Result;
use crate::{Precision, RunConfig};

/// Values given as flags; each one set replaces its key. Relative paths stay relative to
/// the working directory, where the user typed them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlagOverrides {
    /// Corpus files, globs, shard manifests or shard folders: replace `data.files` when
    /// not empty.
    pub files: Vec<String>,
    /// A `tokenizer.json`: replaces `data.tokenizer`.
    pub tokenizer: Option<String>,
    /// Loader worker threads: replace `data.threads`.
    pub threads: Option<usize>,
    /// Examples per step: replace `data.batch_size`.
    pub batch_size: Option<usize>,
    /// Positions per example: replace `data.max_seq_len`, and raise
    /// `model.max_position_embeddings` to it when it is lower.
    pub seq_len: Option<usize>,
    /// Steps of this run: replace `train.max_steps`.
    pub max_steps: Option<u64>,
    /// Forward arithmetic: replaces `train.precision`.
    pub precision: Option<Precision>,
}

impl RunConfig {
    /// This config with `flags` applied, validated again.
    pub fn with_flags(mut self, flags: &FlagOverrides) -> Result<Self> {
        if !flags.files.is_empty() {
            self.data.files = flags.files.clone();
        }
        if let Some(tokenizer) = &flags.tokenizer {
            self.data.tokenizer = tokenizer.clone();
        }
        if let Some(threads) = flags.threads {
            self.data.execution.threads = threads;
        }
        if let Some(batch_size) = flags.batch_size {
            self.data.batch_size = batch_size;
        }
        if let Some(seq_len) = flags.seq_len {
            self.data.max_seq_len = seq_len;
            let positions = &mut self.model.max_position_embeddings;
            *positions = (*positions).max(seq_len as i64);
        }
        if let Some(steps) = flags.max_steps {
            self.train.execution.max_steps = Some(steps);
        }
        if let Some(precision) = flags.precision {
            self.train.precision = precision;
        }
        self.validate()?;
        Ok(self)
    }
}
