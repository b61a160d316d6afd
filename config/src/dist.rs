//! `[dist]`: data-parallel training. How the stream is dealt into slices defines the
//! experiment; the collective's backend, timeouts and buckets ([`DistExecution`]) only how
//! this run communicates.

use electra_pipeline::config::UnknownKeys;
use serde::{Deserialize, Serialize};

/// Which collective implementation a data-parallel run uses.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DistBackend {
    /// NCCL on CUDA devices, the TCPStore fallback on CPU.
    #[default]
    Auto,
    /// c10d's ProcessGroupNCCL (CUDA only): the production path.
    Nccl,
    /// Everything through c10d's TCPStore on rank 0: for tests and CPU-only clusters;
    /// slow (every all-reduce moves every rank's buffer through one server).
    Store,
}

/// The kind gradients are all-reduced in.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GradReduceKind {
    /// The gradients' own kind (float32).
    #[default]
    Fp32,
    /// bfloat16: half the traffic, rounding the summed gradient to 8 bits of mantissa.
    Bf16,
}

/// `[dist]`: data-parallel training (see the README's "Distributed training"). Without
/// torchrun's or Slurm's variables a run is one process and only `data_slices` matters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct DistSection {
    /// The document stream is dealt into this many disjoint slices, each read by its own
    /// loader with `batch_size / data_slices` examples per step; the global batch is the
    /// slices' batches in slice order, and rank `r` of `W` reads slices `r, r + W, ...`.
    /// So a run is the same examples in the same order on any world size up to
    /// `data_slices`, and may resume on another one. Part of the experiment (default 1).
    pub data_slices: usize,
    /// How this run's ranks communicate.
    #[serde(flatten)]
    pub execution: DistExecution,
    /// Refuses any other key of `[dist]`, naming it.
    #[serde(flatten)]
    pub unknown: UnknownKeys<DistSection>,
}

/// How this run's ranks communicate: a resumed run may change these. Keys of `[dist]` in
/// TOML.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct DistExecution {
    /// Collective implementation (default `auto`).
    pub backend: DistBackend,
    /// A collective or rendezvous that waits longer than this fails the run with an
    /// error naming the peer (default 600).
    pub timeout_seconds: u64,
    /// Gradients are all-reduced in flat buckets of about this many MiB (default 25).
    pub bucket_mb: usize,
    /// The kind gradients are all-reduced in (default `fp32`).
    pub grad_reduce: GradReduceKind,
}

impl Default for DistExecution {
    fn default() -> Self {
        Self {
            backend: DistBackend::Auto,
            timeout_seconds: 600,
            bucket_mb: 25,
            grad_reduce: GradReduceKind::Fp32,
        }
    }
}

impl Default for DistSection {
    fn default() -> Self {
        Self {
            data_slices: 1,
            execution: DistExecution::default(),
            unknown: UnknownKeys::default(),
        }
    }
}
