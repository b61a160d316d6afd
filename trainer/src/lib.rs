//! The ELECTRA trainer and the `electra` command-line tool.
//!
//! 1. [`config`]: the run's TOML (`[model]`, `[data]`, `[train]`, `[checkpoint]`),
//!    overrides, validation.
//! 2. [`tokenizer`]: the run's tokenizer, or the embedded bert-base-uncased default.
//! 3. [`train`]: batches from the pipeline's queue -> tensors -> generator + discriminator
//!    forward ([`objective`]: ELECTRA or masked LM) -> our [`optim::AdamW`] under the
//!    [`schedule::LinearSchedule`] -> metrics -> [`checkpoint`]s and final weights with
//!    Hugging Face names; [`flops`] counts the training compute; [`dist`]: collectives
//!    over ranks (c10d's TCPStore and NCCL) for data parallelism.
//! 4. [`finetune`]: a pre-trained discriminator fine-tuned on a [`task`] (TSV
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

pub mod bench;
pub mod bench_train;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod dist;
pub mod error;
pub mod finetune;
pub mod flops;
pub mod inspect;
pub mod metrics;
pub mod objective;
pub mod optim;
pub mod parallel;
pub mod schedule;
pub mod scores;
pub mod task;
pub mod tokenizer;
pub mod train;
