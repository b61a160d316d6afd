//! Fine-tuning a pre-trained discriminator on a classification or regression task, with
//! ELECTRA's recipe, and the scores over several seeds.
//!
//! 1. [`resolve_model_dir`]: `--model` is a Hugging Face discriminator folder, a folder
//!    with `discriminator/` (as `export-hf` writes) or a run folder with `final/` (as
//!    `pretrain` writes). Its `config.json` gives the sizes, its `tokenizer.json` the
//!    tokenizer (required).
//! 2. The task (`data.rs`, [`crate::task`]): TSV files read, labels mapped, examples
//!    tokenized once. `--max-train-examples` / `--max-eval-examples` keep a fixed random
//!    subset (the same for every seed).
//! 3. For each seed (`seed.rs`): `tch::manual_seed(seed)`, a fresh
//!    [`ElectraForSequenceClassification`](electra_model::ElectraForSequenceClassification)
//!    whose encoder is copied from the folder (the head is new), then `epochs` passes over
//!    the training set shuffled from the seed. Batches are padded to their longest
//!    example, rounded up to a multiple of 8.
//! 4. The recipe: our [`AdamW`](crate::optim::AdamW) (beta 0.9/0.999, eps 1e-6, weight
//!    decay 0.01 except LayerNorm and biases, bias correction on, as `transformers` and
//!    PyTorch do; with a warmup of a few dozen steps the uncorrected first steps of the
//!    reference are too large), gradient clipping at norm 1, the reference's schedule
//!    ([`LinearSchedule`], warmup 10% of the steps), dropout 0.1 (the config's), and
//!    layer-wise learning-rate decay ([`layer_lr_scale`]).
//! 5. Dev (and test, when present) are scored after training (`scoring.rs`); the
//!    [`FinetuneReport`] has each seed and the median, written to `OUT/results.json`. With
//!    `save_model`, the seed with the best dev score (accuracy, or Pearson; the first on a
//!    tie) is written to `OUT/model/` as a Hugging Face `ElectraForSequenceClassification`
//!    folder with the tokenizer files (written as pre-training writes its folders,
//!    [`write_hf_folders`]).

mod data;
mod report;
mod scoring;
mod seed;

use std::path::{Path, PathBuf};
use std::time::Instant;

use electra_model::classifier::layer_depth;
use electra_model::hf::{HF_CONFIG_FILE, HF_DISCRIMINATOR_DIR, HF_WEIGHTS_FILE};
use electra_model::hf_import::read_hf_config;
use electra_model::ElectraConfig;
use electra_pipeline::TextTokenizer;
use tch::Device;

use crate::device::DeviceChoice;
use crate::error::{Result, TrainError};
use crate::hf_folders::{write_hf_folders, HfFolder};
use crate::run_dir::RunDir;
use crate::schedule::LinearSchedule;
use crate::scores::{median_scores, Scores};
use crate::task::TaskType;
use data::TaskData;
use seed::{run_seed, Trained};

pub use data::padded_length;
pub use report::{FinetuneReport, Hyperparameters, MedianResult, SeedResult};

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

    /// Updates over `train_examples` examples: `epochs` passes of `batch_size` batches.
    pub fn total_steps(&self, train_examples: usize) -> u64 {
        train_examples.div_ceil(self.batch_size) as u64 * u64::from(self.epochs)
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
        RunDir::new(dir).final_dir(),
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

/// What every seed shares.
struct Context {
    config: ElectraConfig,
    model_dir: PathBuf,
    device: Device,
    pad_id: i64,
    max_seq_len: usize,
    batch_size: usize,
}

/// The pre-trained model: its discriminator folder, sizes and tokenizer.
struct Pretrained {
    dir: PathBuf,
    config: ElectraConfig,
    tokenizer_path: PathBuf,
    tokenizer: TextTokenizer,
}

impl Pretrained {
    /// Finds `options.model`'s folder (see [`resolve_model_dir`]) and checks that it fits
    /// the options and holds the tokenizer it was trained with.
    fn load(options: &FinetuneOptions) -> Result<Self> {
        let dir = resolve_model_dir(&options.model)?;
        let config = read_hf_config(&dir)?;
        if options.max_seq_len as i64 > config.max_position_embeddings {
            return Err(invalid(
                "--max-seq-len",
                format!(
                    "{} is longer than the model's max_position_embeddings {}",
                    options.max_seq_len, config.max_position_embeddings
                ),
            ));
        }
        let tokenizer_path = dir.join("tokenizer.json");
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
        Ok(Self {
            dir,
            config,
            tokenizer_path,
            tokenizer,
        })
    }
}

/// Fine-tunes `options.model` on `options.task` once per seed and writes
/// `OUT/results.json` (and `OUT/model/` with `save_model`). See the [module docs](self).
pub fn finetune(options: &FinetuneOptions) -> Result<FinetuneReport> {
    let started = Instant::now();
    options.validate()?;
    let device = options.device.resolve()?;
    let pretrained = Pretrained::load(options)?;
    let task = TaskData::load(options, &pretrained.tokenizer)?;
    task.log();
    let ctx = Context {
        config: pretrained.config.clone(),
        model_dir: pretrained.dir.clone(),
        device,
        pad_id: i64::from(pretrained.tokenizer.special().pad),
        max_seq_len: options.max_seq_len,
        batch_size: options.batch_size,
    };
    std::fs::create_dir_all(&options.out).map_err(TrainError::io(&options.out))?;
    let (results, saved) = run_seeds(options, &ctx, &task, &pretrained)?;
    let report = build_report(options, &pretrained, &task, device, results, saved, started);
    let path = options.out.join(RESULTS_FILE);
    let mut text = serde_json::to_string_pretty(&report)
        .map_err(|e| invalid("results.json", e.to_string()))?;
    text.push('\n');
    electra_fsutil::write_atomic(&path, text.as_bytes())?;
    Ok(report)
}

/// Runs every seed; with `save_model`, the seed with the best dev score so far (the first
/// on a tie) is written to `OUT/model/` as it finishes. Returns the results and the saved
/// seed.
fn run_seeds(
    options: &FinetuneOptions,
    ctx: &Context,
    task: &TaskData,
    pretrained: &Pretrained,
) -> Result<(Vec<SeedResult>, Option<u64>)> {
    let mut best: Option<(u64, f64)> = None;
    let mut results = Vec::with_capacity(options.seeds.len());
    for &seed in &options.seeds {
        let trained = run_seed(seed, options, ctx, task)?;
        let score = trained.result.dev.primary().unwrap_or(f64::NEG_INFINITY);
        tracing::info!(seed, dev = ?trained.result.dev, "seed done");
        if options.save_model && best.is_none_or(|(_, b)| score > b) {
            save_model(&options.out.join(MODEL_DIR), &trained, task, pretrained)?;
            best = Some((seed, score));
        }
        results.push(trained.result);
    }
    Ok((results, best.map(|(seed, _)| seed)))
}

/// Writes `trained` to `dir` as a Hugging Face `ElectraForSequenceClassification` folder
/// with the pre-trained model's tokenizer files.
fn save_model(
    dir: &Path,
    trained: &Trained,
    task: &TaskData,
    pretrained: &Pretrained,
) -> Result<()> {
    let folder = HfFolder {
        dir: PathBuf::new(),
        config: pretrained.config.clone(),
        config_json: trained
            .model
            .hf_config_json(&task.labels.names(), task.problem)?,
        tensors: trained.model.hf_tensors(&trained.vs),
    };
    write_hf_folders(dir, &[folder], &pretrained.tokenizer_path)
}

/// The report of the seeds' `results`.
fn build_report(
    options: &FinetuneOptions,
    pretrained: &Pretrained,
    task: &TaskData,
    device: Device,
    results: Vec<SeedResult>,
    saved_seed: Option<u64>,
    started: Instant,
) -> FinetuneReport {
    let dev_all: Vec<&Scores> = results.iter().map(|r| &r.dev).collect();
    let test_all: Vec<&Scores> = results.iter().filter_map(|r| r.test.as_ref()).collect();
    let median = MedianResult {
        dev: median_scores(&dev_all),
        test: (!test_all.is_empty()).then(|| median_scores(&test_all)),
    };
    let total_steps = options.total_steps(task.train.examples.len());
    let schedule = LinearSchedule::with_warmup_fraction(
        options.learning_rate,
        options.warmup_fraction,
        total_steps,
    );
    FinetuneReport {
        task: options.task.clone(),
        model: pretrained.dir.clone(),
        problem_type: task.problem,
        labels: task.labels.names(),
        pairs: task.pairs,
        train_examples: task.train.examples.len(),
        dev_examples: task.dev.examples.len(),
        test_examples: task.test.as_ref().map(|t| t.examples.len()),
        truncated_examples: task.truncated,
        device: format!("{device:?}"),
        hyperparameters: Hyperparameters {
            epochs: options.epochs,
            learning_rate: options.learning_rate,
            layer_decay: options.layer_decay,
            max_seq_len: options.max_seq_len,
            batch_size: options.batch_size,
            weight_decay: options.weight_decay,
            warmup_fraction: options.warmup_fraction,
            warmup_steps: schedule.warmup_steps,
            total_steps,
            clip_norm: CLIP_NORM,
        },
        median,
        seeds: results,
        saved_seed,
        saved_model: saved_seed.map(|_| options.out.join(MODEL_DIR)),
        seconds: started.elapsed().as_secs_f64(),
        results_file: options.out.join(RESULTS_FILE),
    }
}

/// The default output folder of a fine-tuning run on `task`: `runs/finetune-<task name>`.
pub fn default_out_dir(task: &Path) -> PathBuf {
    let name = task
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "task".into());
    PathBuf::from("runs").join(format!("finetune-{name}"))
}

#[cfg(test)]
mod tests {
    use electra_model::ElectraForSequenceClassification;
    use tch::nn;

    use super::*;
    use crate::optim::{AdamW, AdamWConfig};

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
}
