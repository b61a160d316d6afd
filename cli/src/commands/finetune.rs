//! `finetune`: a pre-trained discriminator fine-tuned on a TSV classification or
//! regression task, over one or more seeds; `results.json` and the table.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use electra_trainer::device::retain_cpu_heap;
use electra_trainer::finetune::{self as ft, default_out_dir, finetune, FinetuneOptions};

use crate::args::{DeviceArg, TaskTypeArg};

/// `finetune` arguments.
#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// The pre-trained model: a Hugging Face discriminator folder, an export-hf folder
    /// (discriminator/) or a pretrain run folder (final/); it must hold tokenizer.json.
    #[arg(long)]
    pub model: PathBuf,
    /// The task folder: train.tsv, dev.tsv and optionally test.tsv, with a header
    /// `text<TAB>label` or `text<TAB>text_b<TAB>label`.
    #[arg(long)]
    pub task: PathBuf,
    /// Output folder for results.json (and model/ with --save-model)
    /// [default: runs/finetune-<task name>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Passes over the training set.
    #[arg(long, default_value_t = ft::DEFAULT_EPOCHS)]
    pub epochs: u32,
    /// Peak learning rate (the head's; lower layers get less with --layer-decay).
    #[arg(long, default_value_t = ft::DEFAULT_LEARNING_RATE)]
    pub lr: f64,
    /// Layer-wise learning-rate decay: block i of N gets lr * decay^(N - i), the
    /// embeddings lr * decay^(N + 1); 1 turns it off.
    #[arg(long, default_value_t = ft::DEFAULT_LAYER_DECAY)]
    pub layer_decay: f64,
    /// Longest input in tokens, [CLS] and [SEP] included.
    #[arg(long, default_value_t = ft::DEFAULT_MAX_SEQ_LEN)]
    pub max_seq_len: usize,
    /// Examples per update.
    #[arg(long, default_value_t = ft::DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// Decoupled weight decay (not on LayerNorm weights or biases).
    #[arg(long, default_value_t = ft::DEFAULT_WEIGHT_DECAY)]
    pub weight_decay: f64,
    /// Warmup as a fraction of all updates.
    #[arg(long, default_value_t = ft::DEFAULT_WARMUP_FRACTION)]
    pub warmup_fraction: f64,
    /// Number of runs, with seeds 0, 1, ..., S - 1; the median is reported.
    #[arg(long, default_value_t = 1, conflicts_with = "seed_list")]
    pub seeds: u64,
    /// Explicit seeds instead of 0..S, comma-separated (`--seed-list 3,7,11`).
    #[arg(long, value_delimiter = ',', value_name = "SEEDS")]
    pub seed_list: Vec<u64>,
    /// Classification or regression; auto = regression when every training label is a
    /// number and one is not an integer.
    #[arg(long, value_enum, default_value_t = TaskTypeArg::Auto)]
    pub task_type: TaskTypeArg,
    /// Write the best seed's model (by dev accuracy or Pearson) to OUT/model/ as a Hugging
    /// Face ElectraForSequenceClassification folder.
    #[arg(long)]
    pub save_model: bool,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Train on a fixed random subset of this many examples.
    #[arg(long)]
    pub max_train_examples: Option<usize>,
    /// Score a fixed random subset of this many dev (and test) examples.
    #[arg(long)]
    pub max_eval_examples: Option<usize>,
    /// Never draw a progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

/// Runs `finetune`.
pub fn run(args: FinetuneArgs) -> anyhow::Result<()> {
    retain_cpu_heap();
    let seeds = if args.seed_list.is_empty() {
        (0..args.seeds).collect()
    } else {
        args.seed_list
    };
    let options = FinetuneOptions {
        out: args.out.unwrap_or_else(|| default_out_dir(&args.task)),
        model: args.model,
        task: args.task,
        epochs: args.epochs,
        learning_rate: args.lr,
        layer_decay: args.layer_decay,
        max_seq_len: args.max_seq_len,
        batch_size: args.batch_size,
        weight_decay: args.weight_decay,
        warmup_fraction: args.warmup_fraction,
        seeds,
        task_type: args.task_type.into(),
        save_model: args.save_model,
        device: args.device.into(),
        max_train_examples: args.max_train_examples,
        max_eval_examples: args.max_eval_examples,
        progress: !args.no_progress && std::io::stderr().is_terminal(),
    };
    print!("{}", finetune(&options)?);
    Ok(())
}
