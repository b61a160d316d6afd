//! `[checkpoint]`: when checkpoints are written and how many are kept. All of it is
//! execution: a resumed run may change it.

use serde::{Deserialize, Serialize};

/// `[checkpoint]`: see the trainer's `checkpoint` module for what a checkpoint holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSection {
    /// Write a checkpoint every this many steps; 0 writes one only at the end of the run
    /// and when it is stopped by a signal (default 1000).
    pub every_steps: u64,
    /// Keep the newest this many checkpoints (default 3).
    pub keep: usize,
}

impl Default for CheckpointSection {
    fn default() -> Self {
        Self {
            every_steps: 1000,
            keep: 3,
        }
    }
}
