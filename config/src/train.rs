//! `[train]`: the optimizer, schedule and seed (the experiment) and how long and how
//! loudly this run goes ([`TrainExecution`]).

use electra_pipeline::config::UnknownKeys;
use serde::{Deserialize, Serialize};

/// Defaults: the ELECTRA-Small values from the paper (ELECTRA.md).
pub const DEFAULT_SEED: u64 = 42;
pub const DEFAULT_LEARNING_RATE: f64 = 5e-4;
pub const DEFAULT_WARMUP_STEPS: u64 = 10_000;
pub const DEFAULT_TOTAL_STEPS: u64 = 1_000_000;
pub const DEFAULT_WEIGHT_DECAY: f64 = 0.01;
pub const DEFAULT_ADAM_BETA1: f64 = 0.9;
pub const DEFAULT_ADAM_BETA2: f64 = 0.999;
pub const DEFAULT_ADAM_EPS: f64 = 1e-6;
pub const DEFAULT_CLIP_GRAD_NORM: f64 = 1.0;
pub const DEFAULT_LOG_EVERY: u64 = 100;
/// Default `max_bad_steps`.
pub const DEFAULT_MAX_BAD_STEPS: u64 = 10;

/// The forward pass's arithmetic.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// float32 throughout.
    #[default]
    Fp32,
    /// bfloat16 autocast (matrix products and attention in bfloat16, losses, softmax and
    /// LayerNorm in float32) with float32 master weights and optimizer state; no loss
    /// scaling is needed (bfloat16 has float32's range).
    Bf16,
}

/// `[train]`: optimizer, schedule and seed, then this run's length and logging
/// ([`TrainExecution`], plain keys of `[train]` in TOML). Defaults: ELECTRA-Small.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TrainSection {
    /// Seed of every random choice: init, packing, masks, sampling (default 42).
    pub seed: u64,
    /// Peak learning rate (default 5e-4).
    pub learning_rate: f64,
    /// Linear warmup steps (default 10000).
    pub warmup_steps: u64,
    /// Length of the schedule: the learning rate reaches 0 here (default 1000000).
    pub total_steps: u64,
    /// Decoupled weight decay, not on LayerNorm weights or biases (default 0.01).
    pub weight_decay: f64,
    /// Adam beta1 (default 0.9).
    pub adam_beta1: f64,
    /// Adam beta2 (default 0.999).
    pub adam_beta2: f64,
    /// Adam epsilon (default 1e-6).
    pub adam_eps: f64,
    /// Adam bias correction; the reference has none (default false).
    pub bias_correction: bool,
    /// Clip gradients to this global L2 norm; 0 disables (default 1.0).
    pub clip_grad_norm: f64,
    /// Arithmetic of the forward pass (default `fp32`).
    pub precision: Precision,
    /// How long this run goes and how it logs.
    #[serde(flatten)]
    pub execution: TrainExecution,
    /// Refuses any other key of `[train]`, naming it.
    #[serde(flatten)]
    pub unknown: UnknownKeys<TrainSection>,
}

/// How long this run goes and how it logs and guards itself: a resumed run may change
/// these. Keys of `[train]` in TOML.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct TrainExecution {
    /// Stop after this many steps; defaults to `total_steps`. `--max-steps` overrides.
    pub max_steps: Option<u64>,
    /// Append a metrics row every this many steps (default 100).
    pub log_every: u64,
    /// A step whose loss or gradient norm is not finite makes no update and is counted;
    /// after this many such steps in a row the run stops with an error (default 10).
    pub max_bad_steps: u64,
}

impl Default for TrainExecution {
    fn default() -> Self {
        Self {
            max_steps: None,
            log_every: DEFAULT_LOG_EVERY,
            max_bad_steps: DEFAULT_MAX_BAD_STEPS,
        }
    }
}

impl Default for TrainSection {
    fn default() -> Self {
        Self {
            seed: DEFAULT_SEED,
            learning_rate: DEFAULT_LEARNING_RATE,
            warmup_steps: DEFAULT_WARMUP_STEPS,
            total_steps: DEFAULT_TOTAL_STEPS,
            weight_decay: DEFAULT_WEIGHT_DECAY,
            adam_beta1: DEFAULT_ADAM_BETA1,
            adam_beta2: DEFAULT_ADAM_BETA2,
            adam_eps: DEFAULT_ADAM_EPS,
            bias_correction: false,
            clip_grad_norm: DEFAULT_CLIP_GRAD_NORM,
            precision: Precision::Fp32,
            execution: TrainExecution::default(),
            unknown: UnknownKeys::default(),
        }
    }
}

impl TrainSection {
    /// Steps this run trains for.
    pub fn steps(&self) -> u64 {
        self.execution.max_steps.unwrap_or(self.total_steps)
    }
}
