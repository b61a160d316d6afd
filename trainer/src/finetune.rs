//! Fine-tuning a pre-trained discriminator on a classification or regression task, with
//! ELECTRA's recipe, and the scores over several seeds.
//!
//! 1. [`resolve_model_dir`]: `--model` is a Hugging Face discriminator folder, a folder
//!    with `discriminator/` (as `export-hf` writes) or a run folder with `final/` (as
//!    `pretrain` writes). Its `config.json` gives the sizes, its `tokenizer.json` the
//!    tokenizer (required).
//! 2. The task ([`crate::task`]): TSV files read, labels mapped, examples tokenized once.
//!    `--max-train-examples` / `--max-eval-examples` keep a fixed random subset (the same
//!    for every seed).
//! 3. For each seed: `tch::manual_seed(seed)`, a fresh
//!    [`ElectraForSequenceClassification`] whose encoder is copied from the folder (the
//!    head is new), then `epochs` passes over the training set shuffled from the seed.
//!    Batches are padded to their longest example, rounded up to a multiple of 8.
//! 4. The recipe: our [`AdamW`] (beta 0.9/0.999, eps 1e-6, weight decay 0.01 except
//!    LayerNorm and biases, bias correction on, as `transformers` and PyTorch do; with a
//!    warmup of a few dozen steps the uncorrected first steps of the reference are too
//!    large), gradient clipping at norm 1, the reference's schedule
//!    ([`LinearSchedule`], warmup 10% of the steps), dropout 0.1 (the config's), and
//!    layer-wise learning-rate decay ([`layer_lr_scale`]).
//! 5. Dev (and test, when present) are scored after training ([`crate::scores`]); the
//!    report has each seed and the median, written to `OUT/results.json`. With
//!    `save_model`, the seed with the best dev score (accuracy, or Pearson; the first on a
//!    tie) is written to `OUT/model/` as a Hugging Face `ElectraForSequenceClassification`
//!    folder with the tokenizer files.

use std::path::{Path, PathBuf};
use std::time::Instant;

use electra_model::classifier::{layer_depth, save_hf_classifier};
use electra_model::hf::{HfTokenizerFiles, HF_CONFIG_FILE, HF_DISCRIMINATOR_DIR, HF_WEIGHTS_FILE};
use electra_model::hf_import::read_hf_config;
use electra_model::{ElectraConfig, ElectraForSequenceClassification, EncoderInput, ProblemType};
use electra_pipeline::rng::Rng;
use electra_pipeline::TextTokenizer;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tch::{nn, Device, Kind, Reduction, Tensor};

use crate::error::{Result, TrainError};
use crate::optim::{AdamW, AdamWConfig};
use crate::schedule::LinearSchedule;
use crate::scores::{median_scores, Scores};
use crate::task::{encode, read_tsv, Encoded, LabelSpace, Target, TaskType, TsvFile};
use crate::train::DeviceChoice;

/// Default epochs (ELECTRA: 3, 10 for RTE and STS).
pub const DEFAULT_EPOCHS: u32 = 3;
/// Default peak learning rate (ELECTRA-Small's).
pub const DEFAULT_LEARNING_RATE: f64 = 3e-4;
/// Default layer-wise learning-rate decay (Small and Base; 0.9 for Large).
pub const DEFAULT_LAYER_DECAY: f64 = 0.8;
/// Default longest input, special tokens included.
pub const DEFAULT_MAX_SEQ_LEN: usize = 128;
/// Default examples per update (ELECTRA fine-tunes with 32).
pub const DEFAULT_BATCH_SIZE: usize = 32;
/// Default decoupled weight decay.
pub const DEFAULT_WEIGHT_DECAY: f64 = 0.01;
/// Default fraction of the updates spent warming up.
pub const DEFAULT_WARMUP_FRACTION: f64 = 0.1;
/// Gradient clipping threshold (global norm), as in the reference.
pub const CLIP_NORM: f64 = 1.0;
/// Padded lengths are multiples of this.
pub const PAD_MULTIPLE: usize = 8;
/// Sub-folder of the output holding the saved model.
pub const MODEL_DIR: &str = "model";
/// The results file in the output folder.
pub const RESULTS_FILE: &str = "results.json";

/// RNG stream tags (kept apart from the pipeline's).
const SHUFFLE_STREAM: u64 = 0x7368_7566; // "shuf"
const SUBSET_STREAM: u64 = 0x7375_6273; // "subs"

/// Everything `electra finetune` takes.
#[derive(Debug, Clone)]
pub struct FinetuneOptions {
    /// The pre-trained model (see [`resolve_model_dir`]).
    pub model: PathBuf,
    /// The task folder (`train.tsv`, `dev.tsv`, optional `test.tsv`).
    pub task: PathBuf,
    /// Output folder for `results.json` and `model/`.
    pub out: PathBuf,
    /// Passes over the training set; default 3.
    pub epochs: u32,
    /// Peak learning rate (the head's); default 3e-4.
    pub learning_rate: f64,
    /// Layer-wise decay of the learning rate; default 0.8 (1 = none).
    pub layer_decay: f64,
    /// Longest input in tokens; default 128.
    pub max_seq_len: usize,
    /// Examples per update; default 32.
    pub batch_size: usize,
    /// Decoupled weight decay; default 0.01.
    pub weight_decay: f64,
    /// Warmup as a fraction of all updates; default 0.1.
    pub warmup_fraction: f64,
    /// One run per seed; default `[0]`.
    pub seeds: Vec<u64>,
    /// Classification or regression (default: decided from the labels).
    pub task_type: TaskType,
    /// Write the best seed's model to `OUT/model/`.
    pub save_model: bool,
    /// Where to train.
    pub device: DeviceChoice,
    /// Keep a fixed random subset of this many training examples.
    pub max_train_examples: Option<usize>,
    /// Keep a fixed random subset of this many dev (and test) examples.
    pub max_eval_examples: Option<usize>,
    /// Draw a progress bar.
    pub progress: bool,
}

impl Default for FinetuneOptions {
    fn default() -> Self {
        Self {
            model: PathBuf::new(),
            task: PathBuf::new(),
            out: PathBuf::new(),
            epochs: DEFAULT_EPOCHS,
            learning_rate: DEFAULT_LEARNING_RATE,
            layer_decay: DEFAULT_LAYER_DECAY,
            max_seq_len: DEFAULT_MAX_SEQ_LEN,
            batch_size: DEFAULT_BATCH_SIZE,
            weight_decay: DEFAULT_WEIGHT_DECAY,
            warmup_fraction: DEFAULT_WARMUP_FRACTION,
            seeds: vec![0],
            task_type: TaskType::Auto,
            save_model: false,
            device: DeviceChoice::Auto,
            max_train_examples: None,
            max_eval_examples: None,
            progress: false,
        }
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> TrainError {
    TrainError::InvalidConfig {
        field: field.into(),
        reason: reason.into(),
    }
}

impl FinetuneOptions {
    /// Checks every value's range.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(invalid("--epochs", "must be at least 1"));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(invalid("--lr", "must be positive"));
        }
        if !(self.layer_decay > 0.0 && self.layer_decay <= 1.0) {
            return Err(invalid("--layer-decay", "must be in (0, 1]"));
        }
        if self.max_seq_len < 3 {
            return Err(invalid("--max-seq-len", "must be at least 3"));
        }
        if self.batch_size == 0 {
            return Err(invalid("--batch-size", "must be at least 1"));
        }
        if !(0.0..1.0).contains(&self.warmup_fraction) {
            return Err(invalid("warmup fraction", "must be in [0, 1)"));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(invalid("weight decay", "must be non-negative"));
        }
        if self.seeds.is_empty() {
            return Err(invalid("--seeds", "needs at least one seed"));
        }
        if self.max_train_examples == Some(0) || self.max_eval_examples == Some(0) {
            return Err(invalid("--max-*-examples", "must be at least 1"));
        }
        Ok(())
    }
}

/// The Hugging Face discriminator folder inside `dir`: `dir` itself when it has
/// `config.json` and `model.safetensors`, else `dir/discriminator` (an `export-hf`
/// folder), else `dir/final` (a `pretrain` run folder).
pub fn resolve_model_dir(dir: &Path) -> Result<PathBuf> {
    let is_model = |d: &Path| d.join(HF_CONFIG_FILE).is_file() && d.join(HF_WEIGHTS_FILE).is_file();
    for candidate in [
        dir.to_path_buf(),
        dir.join(HF_DISCRIMINATOR_DIR),
        dir.join("final"),
    ] {
        if is_model(&candidate) {
            return Ok(candidate);
        }
    }
    Err(invalid(
        "--model",
        format!(
            "{}: no {HF_CONFIG_FILE} + {HF_WEIGHTS_FILE} here, in discriminator/ or in final/ \
             (expected a Hugging Face discriminator folder, an export-hf folder or a pretrain \
             run folder)",
            dir.display()
        ),
    ))
}

/// The learning-rate multiplier of a parameter under layer-wise decay, by its Hugging
/// Face name: `decay^(num_layers + 1 - depth)` with [`layer_depth`]'s depths, so the head
/// gets the full rate, the top block `decay`, block `i` (0-based)
/// `decay^(num_layers - i)` and the embeddings `decay^(num_layers + 1)`.
///
/// The reference (`_get_layer_lrs` in google-research/electra) puts the head at depth
/// `num_layers + 2`, one above the top block's `num_layers`, a left-over from a removed
/// pooler (its issue #51): every encoder rate there is one more factor of `decay` lower.
/// We follow the stated rule, not the off-by-one.
pub fn layer_lr_scale(name: &str, num_layers: i64, decay: f64) -> Option<f64> {
    let depth = layer_depth(name, num_layers)?;
    Some(decay.powi((num_layers + 1 - depth) as i32))
}

/// One seed's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct SeedResult {
    /// The seed.
    pub seed: u64,
    /// Dev scores after training.
    pub dev: Scores,
    /// Test scores, when the task has `test.tsv`.
    pub test: Option<Scores>,
    /// Mean training loss over the last epoch.
    pub train_loss: f64,
    /// Updates made.
    pub steps: u64,
    /// Wall time of training and evaluation.
    pub seconds: f64,
}

/// The medians over seeds.
#[derive(Debug, Clone, Serialize)]
pub struct MedianResult {
    /// Median dev scores.
    pub dev: Scores,
    /// Median test scores.
    pub test: Option<Scores>,
}

/// The settings a report was made with.
#[derive(Debug, Clone, Serialize)]
pub struct Hyperparameters {
    pub epochs: u32,
    pub learning_rate: f64,
    pub layer_decay: f64,
    pub max_seq_len: usize,
    pub batch_size: usize,
    pub weight_decay: f64,
    pub warmup_fraction: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
    pub clip_norm: f64,
}

/// What `electra finetune` reports and writes to `OUT/results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct FinetuneReport {
    /// The task folder.
    pub task: PathBuf,
    /// The discriminator folder used.
    pub model: PathBuf,
    /// `single_label_classification` or `regression`.
    pub problem_type: ProblemType,
    /// Class names by id (one name for regression).
    pub labels: Vec<String>,
    /// Whether the examples are sentence pairs.
    pub pairs: bool,
    /// Training examples used.
    pub train_examples: usize,
    /// Dev examples scored.
    pub dev_examples: usize,
    /// Test examples scored (absent without `test.tsv`).
    pub test_examples: Option<usize>,
    /// Examples cut to `max_seq_len`, over all splits.
    pub truncated_examples: usize,
    /// The device, in words.
    pub device: String,
    /// The recipe.
    pub hyperparameters: Hyperparameters,
    /// Per seed, in the order run.
    pub seeds: Vec<SeedResult>,
    /// Medians over the seeds.
    pub median: MedianResult,
    /// The seed whose model was saved.
    pub saved_seed: Option<u64>,
    /// Where it was saved.
    pub saved_model: Option<PathBuf>,
    /// Wall time of the whole command.
    pub seconds: f64,
}

/// A column of the results table: its name and how to read it from [`Scores`].
type MetricColumn = (&'static str, fn(&Scores) -> Option<f64>);

impl FinetuneReport {
    fn metric_columns(&self) -> Vec<MetricColumn> {
        match self.problem_type {
            ProblemType::Regression => vec![
                ("pearson", |s: &Scores| s.pearson),
                ("spearman", |s: &Scores| s.spearman),
            ],
            _ => {
                let mut columns: Vec<MetricColumn> = vec![
                    ("acc", |s: &Scores| s.accuracy),
                    ("macro-F1", |s: &Scores| s.macro_f1),
                ];
                if self.labels.len() == 2 {
                    columns.push(("MCC", |s: &Scores| s.mcc));
                }
                columns
            }
        }
    }

    /// The results as a text table: one row per seed, then the median.
    pub fn table(&self) -> String {
        let columns = self.metric_columns();
        let splits: Vec<&str> = if self.test_examples.is_some() {
            vec!["dev", "test"]
        } else {
            vec!["dev"]
        };
        let mut out = String::new();
        let mut header = format!("  {:>8}", "seed");
        for split in &splits {
            for (name, _) in &columns {
                header.push_str(&format!(" {:>14}", format!("{split} {name}")));
            }
        }
        header.push_str(&format!(" {:>11} {:>9}", "train loss", "seconds"));
        out.push_str(&header);
        out.push('\n');
        let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        let row = |label: String, dev: &Scores, test: Option<&Scores>, tail: String| {
            let mut line = format!("  {label:>8}");
            for scores in [Some(dev), test].into_iter().take(splits.len()) {
                for (_, get) in &columns {
                    line.push_str(&format!(" {:>14}", cell(scores.and_then(get))));
                }
            }
            line.push_str(&tail);
            line
        };
        for s in &self.seeds {
            out.push_str(&row(
                s.seed.to_string(),
                &s.dev,
                s.test.as_ref(),
                format!(" {:>11.4} {:>9.1}", s.train_loss, s.seconds),
            ));
            out.push('\n');
        }
        if self.seeds.len() > 1 {
            out.push_str(&row(
                "median".into(),
                &self.median.dev,
                self.median.test.as_ref(),
                String::new(),
            ));
            out.push('\n');
        }
        out
    }
}

/// A tokenized split.
struct Split {
    examples: Vec<Encoded>,
}

/// Keeps a fixed random subset of `n` rows (the same whatever the seed), in file order.
fn subset(file: &mut TsvFile, n: Option<usize>) {
    let Some(n) = n else { return };
    if file.examples.len() <= n {
        return;
    }
    let mut keep: Vec<usize> = (0..file.examples.len()).collect();
    shuffle(&mut keep, &mut Rng::derive(0, &[SUBSET_STREAM]));
    keep.truncate(n);
    keep.sort_unstable();
    let mut rows = std::mem::take(&mut file.examples)
        .into_iter()
        .map(Some)
        .collect::<Vec<_>>();
    file.examples = keep.into_iter().filter_map(|i| rows[i].take()).collect();
}

/// Fisher-Yates.
fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

fn tokenize_split(
    file: &TsvFile,
    labels: &LabelSpace,
    tokenizer: &TextTokenizer,
    max_seq_len: usize,
    truncated: &mut usize,
) -> Result<Split> {
    let mut examples = Vec::with_capacity(file.examples.len());
    for raw in &file.examples {
        let target = labels.target(raw, &file.path)?;
        let encoded = encode(tokenizer, raw, target, max_seq_len)?;
        *truncated += usize::from(encoded.truncated);
        examples.push(encoded);
    }
    Ok(Split { examples })
}

/// Device tensors of one batch.
struct BatchTensors {
    input_ids: Tensor,
    segment_ids: Tensor,
    attention_mask: Tensor,
    targets: Tensor,
}

impl BatchTensors {
    fn encoder_input(&self) -> EncoderInput<'_> {
        EncoderInput {
            input_ids: &self.input_ids,
            segment_ids: &self.segment_ids,
            attention_mask: &self.attention_mask,
        }
    }
}

/// The padded length of a batch whose longest example has `longest` tokens.
pub fn padded_length(longest: usize, max_seq_len: usize) -> usize {
    longest
        .div_ceil(PAD_MULTIPLE)
        .saturating_mul(PAD_MULTIPLE)
        .min(max_seq_len.max(longest))
}

fn batch_tensors(
    examples: &[&Encoded],
    pad_id: i64,
    max_seq_len: usize,
    device: Device,
) -> BatchTensors {
    let longest = examples
        .iter()
        .map(|e| e.input_ids.len())
        .max()
        .unwrap_or(1);
    let width = padded_length(longest, max_seq_len);
    let rows = examples.len();
    let mut ids = vec![pad_id; rows * width];
    let mut segments = vec![0i64; rows * width];
    let mut mask = vec![0i64; rows * width];
    let mut classes = Vec::with_capacity(rows);
    let mut values = Vec::with_capacity(rows);
    for (r, e) in examples.iter().enumerate() {
        let row = r * width;
        let n = e.input_ids.len();
        ids[row..row + n].copy_from_slice(&e.input_ids);
        segments[row..row + n].copy_from_slice(&e.segment_ids);
        mask[row..row + n].fill(1);
        match e.target {
            Target::Class(c) => classes.push(c as i64),
            Target::Value(v) => values.push(v as f32),
        }
    }
    let shape = [rows as i64, width as i64];
    let targets = if values.is_empty() {
        Tensor::from_slice(&classes)
    } else {
        Tensor::from_slice(&values)
    };
    BatchTensors {
        input_ids: Tensor::from_slice(&ids).view(shape).to_device(device),
        segment_ids: Tensor::from_slice(&segments).view(shape).to_device(device),
        attention_mask: Tensor::from_slice(&mask).view(shape).to_device(device),
        targets: targets.to_device(device),
    }
}

/// Mean loss of `outputs` `[b, num_labels]`: cross-entropy for classes, MSE for values.
fn loss(outputs: &Tensor, targets: &Tensor, problem: ProblemType) -> Result<Tensor> {
    Ok(match problem {
        ProblemType::Regression => outputs
            .f_squeeze_dim(-1)?
            .f_mse_loss(targets, Reduction::Mean)?,
        _ => outputs.f_cross_entropy_loss::<Tensor>(targets, None, Reduction::Mean, -100, 0.0)?,
    })
}

/// Scores `split` with the model in eval mode, in length order (less padding).
fn evaluate(
    model: &ElectraForSequenceClassification,
    split: &Split,
    problem: ProblemType,
    num_classes: usize,
    ctx: &Context,
) -> Result<Scores> {
    let mut order: Vec<usize> = (0..split.examples.len()).collect();
    order.sort_by_key(|&i| split.examples[i].input_ids.len());
    let outputs_per_example = model.num_labels() as usize;
    let mut outputs = vec![0f32; split.examples.len() * outputs_per_example];
    let mut loss_sum = 0.0;
    let eval_batch = ctx.batch_size * 2;
    tch::no_grad(|| -> Result<()> {
        for chunk in order.chunks(eval_batch) {
            let examples: Vec<&Encoded> = chunk.iter().map(|&i| &split.examples[i]).collect();
            let batch = batch_tensors(&examples, ctx.pad_id, ctx.max_seq_len, ctx.device);
            let out = model.forward_t(&batch.encoder_input(), false)?;
            loss_sum +=
                loss(&out, &batch.targets, problem)?.f_double_value(&[])? * chunk.len() as f64;
            let host: Vec<f32> = Vec::try_from(
                out.f_to_kind(Kind::Float)?
                    .f_to_device(Device::Cpu)?
                    .f_flatten(0, -1)?,
            )?;
            for (k, &i) in chunk.iter().enumerate() {
                outputs[i * outputs_per_example..(i + 1) * outputs_per_example]
                    .copy_from_slice(&host[k * outputs_per_example..(k + 1) * outputs_per_example]);
            }
        }
        Ok(())
    })?;
    let mut scores = match problem {
        ProblemType::Regression => {
            let gold: Vec<f64> = split
                .examples
                .iter()
                .map(|e| match e.target {
                    Target::Value(v) => v,
                    Target::Class(c) => c as f64,
                })
                .collect();
            let predicted: Vec<f64> = outputs.iter().map(|&v| f64::from(v)).collect();
            Scores::regression(&gold, &predicted)
        }
        _ => {
            let gold: Vec<usize> = split
                .examples
                .iter()
                .map(|e| match e.target {
                    Target::Class(c) => c,
                    Target::Value(_) => 0,
                })
                .collect();
            let predicted: Vec<usize> = outputs
                .chunks(outputs_per_example)
                .map(|row| {
                    row.iter()
                        .enumerate()
                        .fold((0, f32::NEG_INFINITY), |best, (c, &v)| {
                            if v > best.1 {
                                (c, v)
                            } else {
                                best
                            }
                        })
                        .0
                })
                .collect();
            Scores::classification(&gold, &predicted, num_classes)
        }
    };
    scores.loss = (!split.examples.is_empty()).then(|| loss_sum / split.examples.len() as f64);
    Ok(scores)
}

/// What every seed shares.
struct Context {
    config: ElectraConfig,
    model_dir: PathBuf,
    device: Device,
    pad_id: i64,
    max_seq_len: usize,
    batch_size: usize,
}

/// A trained model and its variables.
struct Trained {
    _vs: nn::VarStore,
    model: ElectraForSequenceClassification,
    result: SeedResult,
}

#[allow(clippy::too_many_arguments)]
fn run_seed(
    seed: u64,
    options: &FinetuneOptions,
    ctx: &Context,
    train: &Split,
    dev: &Split,
    test: Option<&Split>,
    labels: &LabelSpace,
    problem: ProblemType,
) -> Result<Trained> {
    let started = Instant::now();
    tch::manual_seed(seed as i64);
    let vs = nn::VarStore::new(ctx.device);
    let model = ElectraForSequenceClassification::new(
        &vs.root(),
        &ctx.config,
        labels.num_outputs() as i64,
    )?;
    model.load_hf_encoder(&vs, &ctx.model_dir)?;
    let num_layers = ctx.config.num_hidden_layers;
    let named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    for (name, _) in &named {
        if layer_depth(name, num_layers).is_none() {
            return Err(invalid(
                "--layer-decay",
                format!("parameter {name} has no place in the layer stack"),
            ));
        }
    }
    let mut optimizer = AdamW::new(
        named,
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-6,
            weight_decay: options.weight_decay,
            bias_correction: true,
        },
    );
    optimizer
        .set_lr_scales(|name| layer_lr_scale(name, num_layers, options.layer_decay).unwrap_or(1.0));
    let steps_per_epoch = train.examples.len().div_ceil(options.batch_size) as u64;
    let total_steps = steps_per_epoch * u64::from(options.epochs);
    let schedule = LinearSchedule {
        peak: options.learning_rate,
        warmup_steps: (total_steps as f64 * options.warmup_fraction).round() as u64,
        total_steps,
    };
    let bar = options.progress.then(|| {
        let bar = ProgressBar::new(total_steps);
        if let Ok(style) = ProgressStyle::with_template(
            "seed {prefix} {bar:30} {pos}/{len} steps, {elapsed_precise} ({eta} left) {msg}",
        ) {
            bar.set_style(style);
        }
        bar.set_prefix(seed.to_string());
        bar
    });
    let mut step = 0u64;
    let mut order: Vec<usize> = (0..train.examples.len()).collect();
    let mut epoch_loss = 0.0;
    for epoch in 0..options.epochs {
        order.sort_unstable();
        shuffle(
            &mut order,
            &mut Rng::derive(seed, &[SHUFFLE_STREAM, u64::from(epoch)]),
        );
        let mut losses = Vec::with_capacity(steps_per_epoch as usize);
        for chunk in order.chunks(options.batch_size) {
            let examples: Vec<&Encoded> = chunk.iter().map(|&i| &train.examples[i]).collect();
            let batch = batch_tensors(&examples, ctx.pad_id, ctx.max_seq_len, ctx.device);
            let outputs = model.forward_t(&batch.encoder_input(), true)?;
            let batch_loss = loss(&outputs, &batch.targets, problem)?;
            optimizer.zero_grad();
            batch_loss.f_backward()?;
            let _norm = optimizer.clip_grad_norm(CLIP_NORM);
            optimizer.step(schedule.lr(step));
            step += 1;
            losses.push(batch_loss.detach());
            if let Some(bar) = &bar {
                bar.inc(1);
            }
        }
        // One host sync per epoch.
        epoch_loss = Tensor::f_stack(&losses, 0)?
            .f_mean(Kind::Float)?
            .f_double_value(&[])?;
        if let Some(bar) = &bar {
            bar.set_message(format!("loss {epoch_loss:.4}"));
        }
        tracing::info!(seed, epoch, loss = epoch_loss, step, "epoch done");
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let num_classes = labels.num_outputs();
    let dev_scores = evaluate(&model, dev, problem, num_classes, ctx)?;
    let test_scores = test
        .map(|t| evaluate(&model, t, problem, num_classes, ctx))
        .transpose()?;
    Ok(Trained {
        _vs: vs,
        model,
        result: SeedResult {
            seed,
            dev: dev_scores,
            test: test_scores,
            train_loss: epoch_loss,
            steps: step,
            seconds: started.elapsed().as_secs_f64(),
        },
    })
}

/// Fine-tunes `options.model` on `options.task` once per seed and writes
/// `OUT/results.json` (and `OUT/model/` with `save_model`). See the [module docs](self).
pub fn finetune(options: &FinetuneOptions) -> Result<FinetuneReport> {
    let started = Instant::now();
    options.validate()?;
    let device = options.device.resolve()?;
    let model_dir = resolve_model_dir(&options.model)?;
    let config = read_hf_config(&model_dir)?;
    if options.max_seq_len as i64 > config.max_position_embeddings {
        return Err(invalid(
            "--max-seq-len",
            format!(
                "{} is longer than the model's max_position_embeddings {}",
                options.max_seq_len, config.max_position_embeddings
            ),
        ));
    }
    let tokenizer_path = model_dir.join("tokenizer.json");
    if !tokenizer_path.is_file() {
        return Err(invalid(
            "--model",
            format!(
                "{}: not found; the model folder must hold the tokenizer it was trained with",
                tokenizer_path.display()
            ),
        ));
    }
    let tokenizer = TextTokenizer::from_file(&tokenizer_path)?;
    if tokenizer.vocab_size() as i64 > config.vocab_size {
        return Err(invalid(
            "--model",
            format!(
                "{} has {} tokens, the model's vocabulary only {}",
                tokenizer_path.display(),
                tokenizer.vocab_size(),
                config.vocab_size
            ),
        ));
    }

    let mut train_file = read_tsv(&options.task.join("train.tsv"))?;
    let mut dev_file = read_tsv(&options.task.join("dev.tsv"))?;
    let test_path = options.task.join("test.tsv");
    let mut test_file = test_path
        .is_file()
        .then(|| read_tsv(&test_path))
        .transpose()?;
    for file in [&dev_file].into_iter().chain(test_file.as_ref()) {
        if file.pairs != train_file.pairs {
            return Err(invalid(
                "--task",
                format!(
                    "{} and {} disagree on text_b (pairs)",
                    train_file.path.display(),
                    file.path.display()
                ),
            ));
        }
    }
    let labels = LabelSpace::infer(&train_file, options.task_type)?;
    let problem = match labels {
        LabelSpace::Regression => ProblemType::Regression,
        LabelSpace::Classes(_) => ProblemType::SingleLabelClassification,
    };
    subset(&mut train_file, options.max_train_examples);
    subset(&mut dev_file, options.max_eval_examples);
    if let Some(test) = &mut test_file {
        subset(test, options.max_eval_examples);
    }
    for file in [&dev_file].into_iter().chain(test_file.as_ref()) {
        if file.examples.is_empty() {
            return Err(crate::task::TaskError::Empty {
                path: file.path.clone(),
            }
            .into());
        }
    }
    let mut truncated = 0;
    let train = tokenize_split(
        &train_file,
        &labels,
        &tokenizer,
        options.max_seq_len,
        &mut truncated,
    )?;
    let dev = tokenize_split(
        &dev_file,
        &labels,
        &tokenizer,
        options.max_seq_len,
        &mut truncated,
    )?;
    let test = test_file
        .as_ref()
        .map(|f| tokenize_split(f, &labels, &tokenizer, options.max_seq_len, &mut truncated))
        .transpose()?;
    tracing::info!(
        train = train.examples.len(),
        dev = dev.examples.len(),
        test = test.as_ref().map_or(0, |t| t.examples.len()),
        truncated,
        labels = labels.num_outputs(),
        problem = problem.as_str(),
        "task loaded"
    );

    let ctx = Context {
        config,
        model_dir: model_dir.clone(),
        device,
        pad_id: i64::from(tokenizer.special().pad),
        max_seq_len: options.max_seq_len,
        batch_size: options.batch_size,
    };
    std::fs::create_dir_all(&options.out).map_err(TrainError::io(&options.out))?;
    let saved_dir = options.out.join(MODEL_DIR);
    let mut best: Option<(u64, f64)> = None;
    let mut results = Vec::with_capacity(options.seeds.len());
    for &seed in &options.seeds {
        let trained = run_seed(
            seed,
            options,
            &ctx,
            &train,
            &dev,
            test.as_ref(),
            &labels,
            problem,
        )?;
        let score = trained.result.dev.primary().unwrap_or(f64::NEG_INFINITY);
        tracing::info!(seed, dev = ?trained.result.dev, "seed done");
        if options.save_model && best.is_none_or(|(_, b)| score > b) {
            save_hf_classifier(
                &saved_dir,
                &trained.model,
                &trained._vs,
                &labels.names(),
                problem,
            )?;
            HfTokenizerFiles::read(&tokenizer_path)?
                .write(&saved_dir, ctx.config.max_position_embeddings)?;
            best = Some((seed, score));
        }
        results.push(trained.result);
    }
    let dev_all: Vec<&Scores> = results.iter().map(|r| &r.dev).collect();
    let test_all: Vec<&Scores> = results.iter().filter_map(|r| r.test.as_ref()).collect();
    let steps_per_epoch = train.examples.len().div_ceil(options.batch_size) as u64;
    let total_steps = steps_per_epoch * u64::from(options.epochs);
    let report = FinetuneReport {
        task: options.task.clone(),
        model: model_dir,
        problem_type: problem,
        labels: labels.names(),
        pairs: train_file.pairs,
        train_examples: train.examples.len(),
        dev_examples: dev.examples.len(),
        test_examples: test.as_ref().map(|t| t.examples.len()),
        truncated_examples: truncated,
        device: format!("{device:?}"),
        hyperparameters: Hyperparameters {
            epochs: options.epochs,
            learning_rate: options.learning_rate,
            layer_decay: options.layer_decay,
            max_seq_len: options.max_seq_len,
            batch_size: options.batch_size,
            weight_decay: options.weight_decay,
            warmup_fraction: options.warmup_fraction,
            warmup_steps: (total_steps as f64 * options.warmup_fraction).round() as u64,
            total_steps,
            clip_norm: CLIP_NORM,
        },
        median: MedianResult {
            dev: median_scores(&dev_all),
            test: (!test_all.is_empty()).then(|| median_scores(&test_all)),
        },
        seeds: results,
        saved_seed: best.map(|(seed, _)| seed),
        saved_model: best.map(|_| saved_dir),
        seconds: started.elapsed().as_secs_f64(),
    };
    let path = options.out.join(RESULTS_FILE);
    let mut text = serde_json::to_string_pretty(&report)
        .map_err(|e| invalid("results.json", e.to_string()))?;
    text.push('\n');
    electra_fsutil::write_atomic(&path, text.as_bytes())?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_decay_gives_the_head_the_full_rate_and_the_embeddings_the_least() {
        let d: f64 = 0.8;
        let scale = |name: &str| layer_lr_scale(name, 12, d).unwrap();
        assert_eq!(scale("classifier.dense.weight"), 1.0);
        assert_eq!(scale("classifier.out_proj.bias"), 1.0);
        // The top block: one factor (the reference, with its off-by-one, gives d^2).
        assert!((scale("electra.encoder.layer.11.output.dense.weight") - d).abs() < 1e-15);
        assert!(
            (scale("electra.encoder.layer.0.attention.self.query.weight") - d.powi(12)).abs()
                < 1e-15
        );
        assert!(
            (scale("electra.encoder.layer.5.intermediate.dense.bias") - d.powi(7)).abs() < 1e-15
        );
        assert!((scale("electra.embeddings.word_embeddings.weight") - d.powi(13)).abs() < 1e-15);
        assert!((scale("electra.embeddings_project.weight") - d.powi(13)).abs() < 1e-15);
        assert_eq!(
            layer_lr_scale("discriminator_predictions.dense.weight", 12, d),
            None
        );
        // No decay: every rate is the peak.
        assert_eq!(
            layer_lr_scale("electra.embeddings.LayerNorm.bias", 2, 1.0),
            Some(1.0)
        );
    }

    /// Every variable of a real model gets a scale, and they follow the stack.
    #[test]
    fn every_parameter_of_the_classifier_gets_its_layer_s_scale() {
        let cfg = ElectraConfig {
            vocab_size: 30,
            embedding_size: 8,
            hidden_size: 16,
            num_hidden_layers: 3,
            num_attention_heads: 2,
            intermediate_size: 32,
            max_position_embeddings: 16,
            ..ElectraConfig::small()
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let _model = ElectraForSequenceClassification::new(&vs.root(), &cfg, 2).unwrap();
        let mut opt = AdamW::new(
            vs.variables().into_iter().collect(),
            AdamWConfig {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-6,
                weight_decay: 0.01,
                bias_correction: true,
            },
        );
        opt.set_lr_scales(|name| layer_lr_scale(name, 3, 0.5).unwrap());
        for (name, scale) in opt.lr_scales() {
            let want = if name.starts_with("classifier.") {
                1.0
            } else if name.starts_with("electra.encoder.layer.2.") {
                0.5
            } else if name.starts_with("electra.encoder.layer.1.") {
                0.25
            } else if name.starts_with("electra.encoder.layer.0.") {
                0.125
            } else {
                assert!(name.starts_with("electra.embeddings"), "{name}");
                0.0625
            };
            assert_eq!(scale, want, "{name}");
        }
    }

    #[test]
    fn batches_pad_to_a_multiple_of_eight_within_the_limit() {
        assert_eq!(padded_length(5, 128), 8);
        assert_eq!(padded_length(8, 128), 8);
        assert_eq!(padded_length(9, 128), 16);
        assert_eq!(padded_length(126, 128), 128);
        assert_eq!(padded_length(99, 100), 100);
        let a = Encoded {
            input_ids: vec![101, 5, 102],
            segment_ids: vec![0, 0, 0],
            target: Target::Class(1),
            truncated: false,
        };
        let b = Encoded {
            input_ids: vec![101, 5, 6, 7, 8, 9, 10, 11, 12, 102],
            segment_ids: vec![0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
            target: Target::Class(0),
            truncated: false,
        };
        let batch = batch_tensors(&[&a, &b], 0, 128, Device::Cpu);
        assert_eq!(batch.input_ids.size(), [2, 16]);
        assert_eq!(batch.attention_mask.sum(Kind::Int64).int64_value(&[]), 13);
        assert_eq!(batch.segment_ids.sum(Kind::Int64).int64_value(&[]), 5);
        assert_eq!(Vec::<i64>::try_from(&batch.targets).unwrap(), [1, 0]);
    }

    #[test]
    fn subsets_are_fixed_and_shuffles_are_permutations() {
        let text: String = std::iter::once("text\tlabel\n".to_string())
            .chain((0..50).map(|i| format!("t{i}\t{}\n", i % 2)))
            .collect();
        let file = crate::task::parse_tsv(&text, Path::new("x.tsv")).unwrap();
        let (mut a, mut b) = (file.clone(), file);
        subset(&mut a, Some(10));
        subset(&mut b, Some(10));
        assert_eq!(a.examples.len(), 10);
        assert_eq!(a, b);
        assert!(a.examples.windows(2).all(|w| w[0].line < w[1].line));
        let mut v: Vec<usize> = (0..20).collect();
        shuffle(&mut v, &mut Rng::derive(3, &[SHUFFLE_STREAM, 0]));
        assert_ne!(v, (0..20).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..20).collect::<Vec<_>>());
    }
}
