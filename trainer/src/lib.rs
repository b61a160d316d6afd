//! The ELECTRA trainer, a library: the `electra` binary (crate `electra-cli`) parses its
//! command line, calls in here and prints the reports it gets back (each implements
//! `Display` for the table and `Serialize` for `--json`).
//!
//! 1. [`config`]: the run's TOML (crate `electra-config`): what defines the experiment and
//!    how a run executes, overrides, validation. The tokenizer is the pipeline's
//!    ([`electra_pipeline::load_tokenizer`]).
//! 2. [`train`]: the pre-training loop, [`pretrain`](train::pretrain), over a
//!    [`trainer::Trainer`]: batches from the pipeline ([`parallel`]: this rank's slices) ->
//!    tensors ([`device_batch`]) -> the [`objective`] (ELECTRA or masked LM) -> our
//!    [`optim::AdamW`] under the [`schedule::LinearSchedule`] -> [`metrics`] sinks ->
//!    [`checkpoint`]s ([`resume`]) and final weights as Hugging Face folders
//!    ([`hf_folders`]), all in the [`run_dir::RunDir`]; [`flops`] counts the training
//!    compute; [`ranks`] and [`dist`]: collectives over ranks (c10d's TCPStore and NCCL)
//!    for data parallelism. [`bench_train`] times the same step; [`summary::RunSummary`]
//!    is what a run reports; [`export`] writes a run's weights as Hugging Face folders.
//! 3. [`finetune`]: a pre-trained discriminator fine-tuned on a [`task`] (TSV
//!    classification or regression) with layer-wise learning-rate decay, scored by
//!    [`scores`] over several seeds.
//!
//! ```no_run
//! use electra_trainer::{config::RunConfig, train::{pretrain, PretrainOptions, DeviceChoice}};
//! let config = RunConfig::load("configs/tiny.toml".as_ref(), &["train.max_steps=10".into()])?;
//! let summary = pretrain(&config, &PretrainOptions {
//!     run_dir: "runs/example".into(),
//!     device: DeviceChoice::Cpu,
//!     progress: false,
//!     init_from_hf: None,
//!     resume: false,
//!     stop: None,
//! })?;
//! println!("{} tokens/s", summary.tokens_per_sec);
//! # Ok::<(), electra_trainer::error::TrainError>(())
//! ```

pub mod bench_train;
pub mod checkpoint;
pub mod device;
pub mod device_batch;
pub mod dist;
pub mod error;
pub mod export;
pub mod finetune;
pub mod flops;
pub mod hf_folders;
pub mod metrics;
pub mod objective;
pub mod optim;
pub mod parallel;
pub mod ranks;
pub mod resume;
pub mod run_dir;
pub mod schedule;
pub mod scores;
pub mod summary;
pub mod task;
pub mod train;
pub mod trainer;

/// The run config (crate `electra-config`, which the data-only tools share).
pub use electra_config as config;
