//! The pre-training loop: batches from the pipeline's queue become tensors, the ELECTRA
//! forward computes both losses, our AdamW updates generator and discriminator together,
//! metrics are appended every `log_every` steps, and the final weights are written with
//! Hugging Face names.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use electra_model::hf::{self, HfTokenizerFiles};
use electra_model::hf_import::HfGenerator;
use electra_model::safetensors;
use electra_model::{Electra, ElectraConfig, ElectraInput, ElectraOptions, ElectraStats};
use electra_pipeline::{BadRecordCounts, Batch, Loader, TextTokenizer};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tch::{nn, Device, Kind, Tensor};

use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::metrics::{MetricsRow, MetricsWriter};
use crate::optim::{AdamW, AdamWConfig};
use crate::schedule::LinearSchedule;
use crate::tokenizer::load_tokenizer;

/// Where to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DeviceChoice {
    /// CUDA when libtorch sees a GPU, else CPU.
    #[default]
    Auto,
    /// CPU.
    Cpu,
    /// The first CUDA device; an error when there is none.
    Cuda,
}

impl DeviceChoice {
    /// The libtorch device.
    pub fn resolve(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => Ok(Device::cuda_if_available()),
            Self::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            Self::Cuda => Err(TrainError::NoCuda),
        }
    }
}

/// How a run executes (what does not change the experiment).
#[derive(Debug, Clone)]
pub struct PretrainOptions {
    /// The run folder: `config.toml`, `metrics.jsonl`, `final/`.
    pub run_dir: PathBuf,
    /// Device choice.
    pub device: DeviceChoice,
    /// Show a progress bar (default: when stderr is a terminal).
    pub progress: bool,
    /// Start from a Hugging Face ELECTRA folder: `DIR/discriminator` + `DIR/generator`
    /// (as `export-hf` writes and Google publishes), or a discriminator folder alone (a
    /// fresh generator of `model.generator_fraction` is built). The model sizes come from
    /// its `config.json`, not from `[model]`.
    pub init_from_hf: Option<PathBuf>,
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Updates made.
    pub steps: u64,
    /// Real tokens trained on.
    pub tokens: u64,
    /// Wall time of the training loop.
    pub seconds: f64,
    /// `tokens / seconds`.
    pub tokens_per_sec: f64,
    /// The device used.
    pub device: String,
    /// The first metrics row (the start of training).
    pub first: Option<MetricsRow>,
    /// The last metrics row.
    pub last: Option<MetricsRow>,
    /// Bad records skipped, per kind.
    pub bad_records: BadRecordCounts,
    /// Where the weights went.
    pub final_dir: PathBuf,
}

/// The discriminator and generator configs a run config and tokenizer imply.
pub fn model_configs(
    config: &RunConfig,
    tokenizer: &TextTokenizer,
) -> (ElectraConfig, ElectraConfig) {
    let disc = config.model.discriminator(
        tokenizer.vocab_size() as i64,
        i64::from(tokenizer.special().pad),
    );
    let gen = disc.generator(config.model.generator_fraction);
    (disc, gen)
}

/// Builds the model from a Hugging Face folder (see [`PretrainOptions::init_from_hf`]).
fn init_from_hf(
    vs: &nn::VarStore,
    dir: &Path,
    config: &RunConfig,
    vocab_size: i64,
) -> Result<Electra> {
    let (disc_dir, gen_dir) = if dir.join(hf::HF_DISCRIMINATOR_DIR).is_dir() {
        (
            dir.join(hf::HF_DISCRIMINATOR_DIR),
            Some(dir.join(hf::HF_GENERATOR_DIR)).filter(|g| g.is_dir()),
        )
    } else {
        (
            dir.to_path_buf(),
            Some(dir.join("generator")).filter(|g| g.is_dir()),
        )
    };
    let generator = match &gen_dir {
        Some(g) => HfGenerator::Folder(g),
        None => HfGenerator::Fresh {
            width_fraction: config.model.generator_fraction,
        },
    };
    let model = Electra::from_hf(&vs.root(), &disc_dir, generator)?;
    let found = model.discriminator_config().vocab_size;
    if found != vocab_size {
        return Err(TrainError::InvalidConfig {
            field: "--init-from-hf".into(),
            reason: format!(
                "{} has a vocabulary of {found}, the run's tokenizer {vocab_size}; use the tokenizer the model was trained with",
                disc_dir.display()
            ),
        });
    }
    tracing::info!(
        discriminator = %disc_dir.display(),
        generator = %gen_dir.as_ref().map_or("fresh".to_string(), |g| g.display().to_string()),
        "initialised from Hugging Face weights"
    );
    Ok(model)
}

/// Derives the per-step libtorch seed, so dropout and Gumbel noise depend only on
/// (run seed, step).
fn step_seed(seed: u64, step: u64) -> i64 {
    let mut x = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((x ^ (x >> 31)) >> 1) as i64
}

/// Host batch -> device tensors.
struct DeviceBatch {
    input_ids: Tensor,
    segment_ids: Tensor,
    attention_mask: Tensor,
    masked_positions: Tensor,
    masked_labels: Tensor,
}

impl DeviceBatch {
    fn new(batch: &Batch, device: Device) -> Self {
        let shape = [batch.batch_size as i64, batch.seq_len as i64];
        let to = |v: &[i64], shape: &[i64]| Tensor::from_slice(v).view(shape).to_device(device);
        Self {
            input_ids: to(&batch.input_ids, &shape),
            segment_ids: to(&batch.segment_ids, &shape),
            attention_mask: to(&batch.attention_mask, &shape),
            masked_positions: to(&batch.masked_positions, &[-1]),
            masked_labels: to(&batch.masked_labels, &[-1]),
        }
    }

    fn input(&self) -> ElectraInput<'_> {
        ElectraInput {
            input_ids: &self.input_ids,
            segment_ids: &self.segment_ids,
            attention_mask: &self.attention_mask,
            masked_positions: &self.masked_positions,
            masked_labels: &self.masked_labels,
        }
    }
}

/// Sums over a logging window, kept on the device until the row is written.
struct Window {
    losses: Tensor, // [3]: loss, gen_loss, disc_loss
    stats: Option<Tensor>,
    grad_norm: Tensor,
    steps: u64,
    tokens: u64,
    data_wait: Duration,
    started: Instant,
}

impl Window {
    fn new(device: Device) -> Self {
        Self {
            losses: Tensor::zeros([3], (Kind::Float, device)),
            stats: None,
            grad_norm: Tensor::zeros([], (Kind::Float, device)),
            steps: 0,
            tokens: 0,
            data_wait: Duration::ZERO,
            started: Instant::now(),
        }
    }
}

/// Runs pre-training as `config` describes; returns the summary.
pub fn pretrain(config: &RunConfig, options: &PretrainOptions) -> Result<RunSummary> {
    let run_dir = &options.run_dir;
    std::fs::create_dir_all(run_dir).map_err(TrainError::io(run_dir))?;
    let device = options.device.resolve()?;
    let tokenizer = load_tokenizer(&config.data.tokenizer)?;
    std::fs::copy(tokenizer.path(), run_dir.join("tokenizer.json"))
        .map_err(TrainError::io(tokenizer.path()))?;
    let (disc_cfg, gen_cfg) = model_configs(config, &tokenizer);
    safetensors::write_atomic(&run_dir.join("config.toml"), config.to_toml()?.as_bytes())?;

    let t = &config.train;
    tch::manual_seed(step_seed(t.seed, u64::MAX));
    let vs = nn::VarStore::new(device);
    let model = match &options.init_from_hf {
        None => Electra::new(&vs.root(), &disc_cfg, &gen_cfg)?,
        Some(dir) => init_from_hf(&vs, dir, config, disc_cfg.vocab_size)?,
    };
    let params: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    let mut optimizer = AdamW::new(
        params,
        AdamWConfig {
            beta1: t.adam_beta1,
            beta2: t.adam_beta2,
            eps: t.adam_eps,
            weight_decay: t.weight_decay,
            bias_correction: t.bias_correction,
        },
    );
    let schedule = LinearSchedule {
        peak: t.learning_rate,
        warmup_steps: t.warmup_steps,
        total_steps: t.total_steps,
    };
    let forward_options = ElectraOptions {
        temperature: config.model.temperature,
        disallow_correct: config.model.disallow_correct,
        gen_weight: config.model.gen_weight,
        disc_weight: config.model.disc_weight,
        sampler: config.model.sampler,
    };
    let steps = t.steps();
    let mut loader = Loader::new(&config.data, tokenizer, t.seed)?;
    let mut metrics = MetricsWriter::open(&run_dir.join("metrics.jsonl"), false)?;
    tracing::info!(
        device = ?device,
        steps,
        discriminator_params = count_params(&vs, "discriminator."),
        discriminator_hidden = model.discriminator_config().hidden_size,
        generator_params = count_params(&vs, "generator."),
        "pre-training"
    );

    let bar = progress_bar(options.progress, steps);
    let started = Instant::now();
    let mut window = Window::new(device);
    let mut bad_records = BadRecordCounts::default();
    let mut tokens_total = 0u64;
    let mut first = None;
    let mut last = None;
    for step in 0..steps {
        let waited = Instant::now();
        let batch = match loader.next() {
            Some(batch) => batch?,
            None => {
                return Err(TrainError::DataExhausted {
                    batches: step,
                    needed: steps,
                })
            }
        };
        window.data_wait += waited.elapsed();
        bad_records.add(&batch.bad_records);
        let epoch = batch.epoch;
        let device_batch = DeviceBatch::new(&batch, device);

        tch::manual_seed(step_seed(t.seed, step));
        let lr = schedule.lr(step);
        let output = model.forward_t(&device_batch.input(), &forward_options, true)?;
        optimizer.zero_grad();
        output.loss.backward();
        let grad_norm = optimizer.clip_grad_norm(t.clip_grad_norm);
        optimizer.step(lr);

        tch::no_grad(|| {
            let losses = Tensor::stack(
                &[
                    output.loss.detach().to_kind(Kind::Float),
                    output.gen_loss.detach().to_kind(Kind::Float),
                    output.disc_loss.detach().to_kind(Kind::Float),
                ],
                0,
            );
            window.losses += losses;
            window.grad_norm += grad_norm;
            let stats = output.stats.detach();
            window.stats = Some(match window.stats.take() {
                Some(sum) => sum + stats,
                None => stats,
            });
        });
        window.steps += 1;
        window.tokens += batch.real_tokens as u64;
        tokens_total += batch.real_tokens as u64;

        let done = step + 1;
        if done % t.log_every == 0 || done == steps {
            let row = close_window(
                &mut window,
                done,
                epoch,
                lr,
                tokens_total,
                started,
                &bad_records,
            )?;
            metrics.write(&row)?;
            report(&bar, &row);
            first.get_or_insert_with(|| row.clone());
            last = Some(row);
            window = Window::new(device);
        }
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(loader);

    let final_dir = run_dir.join("final");
    save_final(&final_dir, &model, &run_dir.join("tokenizer.json"))?;
    Ok(RunSummary {
        steps,
        tokens: tokens_total,
        seconds,
        tokens_per_sec: tokens_total as f64 / seconds.max(1e-9),
        device: format!("{device:?}"),
        first,
        last,
        bad_records,
        final_dir,
    })
}

/// Parameters whose VarStore name starts with `prefix`.
fn count_params(vs: &nn::VarStore, prefix: &str) -> i64 {
    vs.variables()
        .iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(_, t)| t.numel() as i64)
        .sum()
}

fn close_window(
    window: &mut Window,
    step: u64,
    epoch: u64,
    lr: f64,
    tokens: u64,
    started: Instant,
    bad_records: &BadRecordCounts,
) -> Result<MetricsRow> {
    let n = window.steps.max(1) as f64;
    let losses: Vec<f64> = Vec::try_from(&window.losses.to_kind(Kind::Double))?;
    let grad_norm = f64::try_from(&window.grad_norm.to_kind(Kind::Double))?;
    let stats = match &window.stats {
        Some(sum) => ElectraStats::from_tensor(sum)?,
        None => ElectraStats::default(),
    };
    let wall = window.started.elapsed().as_secs_f64().max(1e-9);
    Ok(MetricsRow {
        step,
        epoch,
        loss: losses[0] / n,
        gen_loss: losses[1] / n,
        disc_loss: losses[2] / n,
        gen_acc: stats.gen_acc(),
        replaced_frac: stats.replaced_frac(),
        disc_acc: stats.disc_acc(),
        disc_precision: stats.disc_precision(),
        disc_recall: stats.disc_recall(),
        disc_baseline_acc: 1.0 - stats.replaced_frac(),
        grad_norm: grad_norm / n,
        lr,
        tokens_per_sec: window.tokens as f64 / wall,
        data_wait_frac: window.data_wait.as_secs_f64() / wall,
        tokens,
        elapsed_sec: started.elapsed().as_secs_f64(),
        bad_records: bad_records.clone(),
    })
}

fn progress_bar(enabled: bool, steps: u64) -> Option<ProgressBar> {
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(steps);
    if let Ok(style) = ProgressStyle::with_template(
        "{elapsed_precise} [{wide_bar}] {pos}/{len} step  eta {eta}  {msg}",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

fn report(bar: &Option<ProgressBar>, row: &MetricsRow) {
    let line = format!(
        "loss {:.3}  gen {:.3} (acc {:.3})  disc {:.4} (acc {:.3} vs {:.3} baseline, p {:.2} r {:.2})  {:.0} tok/s  wait {:.1}%",
        row.loss,
        row.gen_loss,
        row.gen_acc,
        row.disc_loss,
        row.disc_acc,
        row.disc_baseline_acc,
        row.disc_precision,
        row.disc_recall,
        row.tokens_per_sec,
        100.0 * row.data_wait_frac
    );
    match bar {
        Some(bar) => bar.set_message(line),
        None => tracing::info!(step = row.step, "{line}"),
    }
}

/// Writes the final weights as Hugging Face folders: `final/` is the discriminator
/// (`ElectraForPreTraining`: `model.safetensors`, `config.json`, tokenizer files) and
/// `final/generator/` the generator (`ElectraForMaskedLM`), so `transformers` loads either.
pub fn save_final(dir: &Path, model: &Electra, tokenizer_json: &Path) -> Result<()> {
    let tokenizer = HfTokenizerFiles::read(tokenizer_json)?;
    let max_len = model.discriminator_config().max_position_embeddings;
    hf::save_hf_model(
        dir,
        model.discriminator_config(),
        hf::HF_DISCRIMINATOR_ARCHITECTURE,
        &model.hf_discriminator_tensors(),
    )?;
    tokenizer.write(dir, max_len)?;
    let generator = dir.join("generator");
    hf::save_hf_model(
        &generator,
        model.generator_config(),
        hf::HF_GENERATOR_ARCHITECTURE,
        &model.hf_generator_tensors(),
    )?;
    tokenizer.write(&generator, max_len)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_seeds_differ_per_step_and_are_stable() {
        assert_eq!(step_seed(42, 7), step_seed(42, 7));
        assert_ne!(step_seed(42, 7), step_seed(42, 8));
        assert_ne!(step_seed(42, 7), step_seed(43, 7));
        assert!(step_seed(u64::MAX, u64::MAX) >= 0);
    }
}
