//! The pre-training loop: batches from the pipeline's queue become tensors, the ELECTRA
//! forward computes both losses, our AdamW updates generator and discriminator together,
//! metrics are appended every `log_every` steps, and the final weights are written with
//! Hugging Face names.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use electra_model::stats::STATS_LEN;
use electra_model::{ElectraConfig, ElectraInput, ElectraOptions, ElectraStats};
use electra_pipeline::{BadRecordCounts, Batch, LoaderStart, TextTokenizer};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tch::{nn, Device, Kind, Tensor};

use crate::checkpoint::{self, CheckpointWriter, FileStamp, Found, TrainerState, WindowState};
use crate::config::{DistBackend, GradReduceKind, Precision, RunConfig, TrainSection};
use crate::device::Autocast;
use crate::dist::{Backend, DistEnv, GradBuckets};
use crate::error::{Result, TrainError};
use crate::metrics::{MetricsRow, MetricsWriter};
use crate::objective::{write_hf_folders, Layout, Pretrainer};
use crate::optim::{AdamW, AdamWConfig};
use crate::parallel::{combine, owned_slices, Combined, RankBatch, RankData, RankReport};
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
    /// Continue from the newest complete checkpoint in `run_dir/checkpoints`.
    pub resume: bool,
    /// When set (by a signal handler), the run finishes the current step, writes a
    /// checkpoint and returns with [`RunSummary::interrupted`].
    pub stop: Option<Arc<AtomicBool>>,
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
    /// Where the weights went (written only when the run was not interrupted).
    pub final_dir: PathBuf,
    /// Stopped early by [`PretrainOptions::stop`].
    pub interrupted: bool,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
    /// Steps skipped for a non-finite loss or gradient norm, since the start.
    pub skipped_steps: u64,
    /// The step a resumed run started from.
    pub resumed_from: Option<u64>,
    /// Training FLOPs of one step (see [`crate::flops`]).
    pub flops_per_step: f64,
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

/// AdamW over every variable of `vs`, as `[train]` configures it.
pub(crate) fn new_optimizer(vs: &nn::VarStore, t: &TrainSection) -> AdamW {
    let params: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    AdamW::new(
        params,
        AdamWConfig {
            beta1: t.adam_beta1,
            beta2: t.adam_beta2,
            eps: t.adam_eps,
            weight_decay: t.weight_decay,
            bias_correction: t.bias_correction,
        },
    )
}

/// A bfloat16 autocast region when `precision` asks for one.
pub(crate) fn autocast(precision: Precision, device: Device) -> Result<Option<Autocast>> {
    match precision {
        Precision::Fp32 => Ok(None),
        Precision::Bf16 => Autocast::bf16(device).map(Some),
    }
}

/// The forward pass's options from `[model]`.
pub(crate) fn forward_options(config: &RunConfig) -> ElectraOptions {
    ElectraOptions {
        temperature: config.model.temperature,
        disallow_correct: config.model.disallow_correct,
        gen_weight: config.model.gen_weight,
        disc_weight: config.model.disc_weight,
        sampler: config.model.sampler,
    }
}

/// Derives the per-step libtorch seed, so dropout and Gumbel noise depend only on
/// (run seed, step).
pub(crate) fn step_seed(seed: u64, step: u64) -> i64 {
    let mut x = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((x ^ (x >> 31)) >> 1) as i64
}

/// Host batch -> device tensors.
pub(crate) struct DeviceBatch {
    input_ids: Tensor,
    segment_ids: Tensor,
    attention_mask: Tensor,
    masked_positions: Tensor,
    masked_labels: Tensor,
}

impl DeviceBatch {
    pub(crate) fn new(batch: &Batch, device: Device) -> Self {
        let shape = [batch.batch_size as i64, batch.seq_len as i64];
        let to = |v: &[i64], shape: &[i64]| upload(v, shape, device);
        Self {
            input_ids: to(&batch.input_ids, &shape),
            segment_ids: to(&batch.segment_ids, &shape),
            attention_mask: to(&batch.attention_mask, &shape),
            masked_positions: to(&batch.masked_positions, &[-1]),
            masked_labels: to(&batch.masked_labels, &[-1]),
        }
    }

    pub(crate) fn input(&self) -> ElectraInput<'_> {
        ElectraInput {
            input_ids: &self.input_ids,
            segment_ids: &self.segment_ids,
            attention_mask: &self.attention_mask,
            masked_positions: &self.masked_positions,
            masked_labels: &self.masked_labels,
        }
    }
}

/// `v` as a `shape` Int64 tensor on `device`. To a GPU through pinned host memory, without
/// waiting for the copy: the host returns to the pipeline while the device works (the
/// caching host allocator keeps each staging buffer until its copy is done).
fn upload(v: &[i64], shape: &[i64], device: Device) -> Tensor {
    let host = Tensor::from_slice(v).view(shape);
    match device {
        Device::Cuda(_) => host
            .pin_memory(device)
            .to_device_(device, Kind::Int64, true, false),
        _ => host,
    }
}

/// The inverse-CDF sampler's uniform numbers for step seed `seed`: a hash of each masked
/// position's place in the global batch (`global_rows[r]` is row `r`'s index there), so
/// every rank of a data-parallel run draws the replacement a single process would.
fn sample_uniforms(
    batch: &Batch,
    global_rows: &[i64],
    seed: i64,
    device: Device,
) -> Result<Tensor> {
    let seq = batch.seq_len.max(1) as i64;
    let keys: Vec<i64> = batch
        .masked_positions
        .iter()
        .map(|&p| {
            let row = global_rows
                .get((p / seq) as usize)
                .copied()
                .unwrap_or(p / seq);
            (row << 16) | (p % seq)
        })
        .collect();
    Ok(electra_model::sampling::hashed_uniforms(
        seed as u64,
        &upload(&keys, &[-1], device),
    )?)
}

/// Sums over a logging window, kept on the device until the row is written. Steps whose
/// loss or gradient norm is not finite add nothing but their count.
struct Window {
    losses: Tensor, // [3]: loss, gen_loss, disc_loss
    stats: Tensor,  // [STATS_LEN]
    grad_norm: Tensor,
    /// Steps that made an update.
    good: Tensor,
    steps: u64,
    tokens: u64,
    data_wait: Duration,
    started: Instant,
}

/// Names of the window's tensors in a checkpoint.
const WINDOW_TENSORS: [&str; 4] = [
    "window.losses",
    "window.stats",
    "window.grad_norm",
    "window.good",
];
/// Names of the non-finite guard's counters in a checkpoint.
const GUARD_TENSORS: [&str; 3] = ["guard.skipped", "guard.consecutive", "guard.longest"];

impl Window {
    fn new(device: Device) -> Self {
        Self {
            losses: Tensor::zeros([3], (Kind::Float, device)),
            stats: Tensor::zeros([STATS_LEN as i64], (Kind::Float, device)),
            grad_norm: Tensor::zeros([], (Kind::Float, device)),
            good: Tensor::zeros([], (Kind::Float, device)),
            steps: 0,
            tokens: 0,
            data_wait: Duration::ZERO,
            started: Instant::now(),
        }
    }

    fn tensors(&self) -> [Tensor; 4] {
        [
            self.losses.shallow_clone(),
            self.stats.shallow_clone(),
            self.grad_norm.shallow_clone(),
            self.good.shallow_clone(),
        ]
    }

    fn state(&self) -> WindowState {
        WindowState {
            steps: self.steps,
            tokens: self.tokens,
            data_wait_sec: self.data_wait.as_secs_f64(),
            wall_sec: self.started.elapsed().as_secs_f64(),
        }
    }

    fn restore(
        device: Device,
        state: &WindowState,
        tensors: &BTreeMap<String, Tensor>,
    ) -> Result<Self> {
        let mut window = Self::new(device);
        for (name, target) in WINDOW_TENSORS.iter().zip(window.tensors()) {
            copy_tensor(tensors, name, &target)?;
        }
        window.steps = state.steps;
        window.tokens = state.tokens;
        window.data_wait = Duration::from_secs_f64(state.data_wait_sec.max(0.0));
        window.started = Instant::now()
            .checked_sub(Duration::from_secs_f64(state.wall_sec.max(0.0)))
            .unwrap_or_else(Instant::now);
        Ok(window)
    }
}

/// Copies checkpoint tensor `name` into `target` (same shape).
fn copy_tensor(tensors: &BTreeMap<String, Tensor>, name: &str, target: &Tensor) -> Result<()> {
    let source = tensors.get(name).ok_or_else(|| TrainError::Checkpoint {
        path: PathBuf::from(name),
        reason: "missing".into(),
    })?;
    if source.size() != target.size() {
        return Err(TrainError::Checkpoint {
            path: PathBuf::from(name),
            reason: format!("shape {:?}, expected {:?}", source.size(), target.size()),
        });
    }
    tch::no_grad(|| target.shallow_clone().f_copy_(source))?;
    Ok(())
}

/// Device counters of steps skipped for a non-finite loss or gradient norm: the total,
/// the current streak and the longest streak. They are read only
/// every `log_every` steps (no host synchronisation per step); a skipped step changes no
/// weights, so stopping a few steps after the limit loses nothing.
struct Guard {
    skipped: Tensor,
    consecutive: Tensor,
    longest: Tensor,
}

impl Guard {
    fn new(device: Device) -> Self {
        Self {
            skipped: Tensor::zeros([], (Kind::Float, device)),
            consecutive: Tensor::zeros([], (Kind::Float, device)),
            longest: Tensor::zeros([], (Kind::Float, device)),
        }
    }

    fn record(&mut self, ok: &Tensor) {
        let bad = ok.logical_not().to_kind(Kind::Float);
        self.skipped = &self.skipped + &bad;
        self.consecutive = (&self.consecutive + 1.0) * &bad;
        self.longest = self.longest.maximum(&self.consecutive);
    }

    /// (skipped in all, longest streak so far).
    fn read(&self) -> Result<(u64, u64)> {
        let skipped = f64::try_from(&self.skipped.to_kind(Kind::Double))?;
        let longest = f64::try_from(&self.longest.to_kind(Kind::Double))?;
        Ok((skipped as u64, longest as u64))
    }
}

/// The files a run reads, with their sizes.
fn stamp_files(files: &[PathBuf]) -> Vec<FileStamp> {
    files
        .iter()
        .map(|p| FileStamp {
            path: p.display().to_string(),
            bytes: std::fs::metadata(p).map_or(0, |m| m.len()),
        })
        .collect()
}

/// What a resumed run starts from.
struct Resumed {
    found: Found,
    tensors: BTreeMap<String, Tensor>,
}

/// Finds the checkpoint to resume from and checks that it is the same experiment.
fn find_resume(config: &RunConfig, run_dir: &Path, tokenizer: &TextTokenizer) -> Result<Found> {
    let found = checkpoint::find_latest(run_dir)?;
    let saved = RunConfig::from_toml_str(
        &found.state.config_toml,
        &[],
        &found.dir.join(checkpoint::STATE_FILE).display().to_string(),
    )?;
    let keys = saved.resume_differences(config)?;
    if !keys.is_empty() {
        return Err(TrainError::ResumeMismatch {
            keys: keys.join(", "),
        });
    }
    if found.state.tokenizer_sha256 != tokenizer.sha256() {
        return Err(TrainError::Checkpoint {
            path: found.dir.clone(),
            reason: format!(
                "made with tokenizer sha256 {}, this run's is {}",
                found.state.tokenizer_sha256,
                tokenizer.sha256()
            ),
        });
    }
    Ok(found)
}

/// Runs pre-training as `config` describes; returns the summary.
pub fn pretrain(config: &RunConfig, options: &PretrainOptions) -> Result<RunSummary> {
    let run_dir = &options.run_dir;
    let dist_env = DistEnv::from_env()?;
    let (rank, world) = dist_env.as_ref().map_or((0, 1), |e| (e.rank, e.world_size));
    // Rank 0 writes the run folder: config, metrics, checkpoints, final weights.
    let is_main = rank == 0;
    let device = match (&dist_env, options.device.resolve()?) {
        (Some(env), Device::Cuda(_)) => env.cuda_device(),
        (_, device) => device,
    };
    let slices = config.dist.data_slices;
    if world > slices {
        return Err(TrainError::InvalidConfig {
            field: "dist.data_slices".into(),
            reason: format!(
                "{slices} slices for {world} ranks: every rank needs a slice; set dist.data_slices to a multiple of the world size"
            ),
        });
    }
    let coll = match &dist_env {
        Some(env) => {
            let backend = match config.dist.backend {
                DistBackend::Auto => Backend::Auto,
                DistBackend::Nccl => Backend::Nccl,
                DistBackend::Store => Backend::Store,
            };
            let timeout = Duration::from_secs(config.dist.timeout_seconds);
            let coll = crate::dist::connect(env, backend, device, timeout)?;
            tracing::info!(
                rank,
                world,
                local_rank = env.local_rank,
                backend = coll.backend(),
                master = %format!("{}:{}", env.master_addr, env.master_port),
                "joined the process group"
            );
            Some(coll)
        }
        None => None,
    };
    if is_main {
        std::fs::create_dir_all(run_dir).map_err(TrainError::io(run_dir))?;
    }
    let tokenizer =
        load_tokenizer(&config.data.tokenizer)?.with_fast_path(config.data.fast_tokenizer);
    let found = if options.resume {
        Some(find_resume(config, run_dir, &tokenizer)?)
    } else {
        None
    };
    let tokenizer_json = run_dir.join("tokenizer.json");
    if is_main && tokenizer.path() != tokenizer_json {
        std::fs::copy(tokenizer.path(), &tokenizer_json)
            .map_err(TrainError::io(tokenizer.path()))?;
    }
    let (disc_cfg, gen_cfg) = model_configs(config, &tokenizer);
    if is_main {
        electra_fsutil::write_atomic(&run_dir.join("config.toml"), config.to_toml()?.as_bytes())?;
    }

    let t = &config.train;
    tch::manual_seed(step_seed(t.seed, u64::MAX));
    let vs = nn::VarStore::new(device);
    let objective = config.model.objective;
    let model = match (&found, &options.init_from_hf) {
        (Some(found), _) => Pretrainer::from_checkpoint(&vs.root(), objective, &found.dir)?,
        (None, None) => Pretrainer::new(&vs.root(), objective, &disc_cfg, &gen_cfg)?,
        (None, Some(dir)) => {
            let model = Pretrainer::from_hf(&vs.root(), config, dir)?;
            let found = model.encoder_config().vocab_size;
            if found != disc_cfg.vocab_size {
                return Err(TrainError::InvalidConfig {
                    field: "--init-from-hf".into(),
                    reason: format!(
                        "{} has a vocabulary of {found}, the run's tokenizer {}; use the tokenizer the model was trained with",
                        dir.display(),
                        disc_cfg.vocab_size
                    ),
                });
            }
            model
        }
    };
    let mut optimizer = new_optimizer(&vs, t);
    // Every rank starts from rank 0's weights; gradients are summed in name order.
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut buckets = match &coll {
        Some(coll) => {
            tch::no_grad(|| -> Result<()> {
                for (_, tensor) in &named {
                    coll.broadcast(tensor, 0)?;
                }
                Ok(())
            })?;
            let params: Vec<Tensor> = named.iter().map(|(_, t)| t.shallow_clone()).collect();
            let kind = match config.dist.grad_reduce {
                GradReduceKind::Fp32 => None,
                GradReduceKind::Bf16 => Some(Kind::BFloat16),
            };
            Some(GradBuckets::new(&params, config.dist.bucket_mb << 20, kind))
        }
        None => None,
    };
    drop(named);
    let state_names: Vec<String> = optimizer
        .state_tensors()
        .into_iter()
        .map(|(n, _)| n)
        .chain(WINDOW_TENSORS.iter().map(|n| n.to_string()))
        .chain(GUARD_TENSORS.iter().map(|n| n.to_string()))
        .collect();
    let resumed = match found {
        Some(found) => {
            let tensors = checkpoint::load_tensors(&found.dir, &state_names)?;
            optimizer
                .load_state(&tensors, found.state.step)
                .map_err(|reason| TrainError::Checkpoint {
                    path: found.dir.join(checkpoint::TENSORS_FILE),
                    reason,
                })?;
            Some(Resumed { found, tensors })
        }
        None => None,
    };
    let schedule = LinearSchedule {
        peak: t.learning_rate,
        warmup_steps: t.warmup_steps,
        total_steps: t.total_steps,
    };
    let forward_options = forward_options(config);
    let steps = t.steps();
    let tokenizer_sha256 = tokenizer.sha256().to_string();
    let state = resumed.as_ref().map(|r| &r.found.state);
    let starts: Vec<LoaderStart> = match state {
        None => vec![LoaderStart::default(); slices],
        Some(s) if slices == 1 => vec![LoaderStart {
            batches_done: s.batches,
            cursor: s.cursor,
        }],
        Some(s) if s.slice_cursors.len() == slices => s
            .slice_cursors
            .iter()
            .map(|&cursor| LoaderStart {
                batches_done: s.batches,
                cursor,
            })
            .collect(),
        Some(s) => {
            return Err(TrainError::Checkpoint {
                path: resumed
                    .as_ref()
                    .map(|r| r.found.dir.clone())
                    .unwrap_or_default(),
                reason: format!(
                    "holds {} slice cursors for dist.data_slices = {slices}",
                    s.slice_cursors.len()
                ),
            })
        }
    };
    let owned = owned_slices(slices, rank, world);
    let mut loader = RankData::new(&config.data, &tokenizer, t.seed, slices, &owned, &starts)?;
    drop(tokenizer);
    let data_files = stamp_files(loader.files());
    if let Some(state) = state {
        if state.data_files != data_files {
            return Err(TrainError::Checkpoint {
                path: resumed
                    .as_ref()
                    .map(|r| r.found.dir.clone())
                    .unwrap_or_default(),
                reason: "the input files (names or sizes) differ from those the run read; the data cursor would point elsewhere".into(),
            });
        }
    }
    let metrics_path = run_dir.join("metrics.jsonl");
    let mut metrics = match (is_main, state) {
        (false, _) => None,
        (true, Some(s)) => Some(MetricsWriter::resume(
            &metrics_path,
            s.step,
            s.window.steps > 0,
        )?),
        (true, None) => Some(MetricsWriter::open(&metrics_path, false)?),
    };
    let first_step = state.map_or(0, |s| s.step);
    let flops_per_step = model.step_flops(config);
    tracing::info!(
        device = ?device,
        steps,
        from_step = first_step,
        objective = ?objective,
        encoder_params = count_params(&vs, ""),
        encoder_hidden = model.encoder_config().hidden_size,
        generator_params = count_params(&vs, "generator."),
        "pre-training"
    );
    if let Some(r) = &resumed {
        tracing::info!(checkpoint = %r.found.dir.display(), step = first_step, cursor = ?r.found.state.cursor, "resuming");
    }

    let writer = CheckpointWriter::new(run_dir, config.checkpoint.keep);
    let bar = progress_bar(options.progress && is_main, steps);
    if let Some(bar) = &bar {
        bar.set_position(first_step);
    }
    let started = Instant::now();
    let elapsed_before = state.map_or(0.0, |s| s.elapsed_sec);
    let mut window = match &resumed {
        Some(r) => Window::restore(device, &r.found.state.window, &r.tensors)?,
        None => Window::new(device),
    };
    // The saved counts are the run's totals: rank 0 carries them, the others start at 0,
    // and the ranks' reports add up to the totals.
    if !is_main {
        window.tokens = 0;
    }
    let mut guard = Guard::new(device);
    if let Some(r) = &resumed {
        copy_tensor(&r.tensors, GUARD_TENSORS[0], &guard.skipped)?;
        copy_tensor(&r.tensors, GUARD_TENSORS[1], &guard.consecutive)?;
        copy_tensor(&r.tensors, GUARD_TENSORS[2], &guard.longest)?;
    }
    let carried = |n: u64| if is_main { n } else { 0 };
    let mut bad_records = match state {
        Some(s) if is_main => s.bad_records.clone(),
        _ => BadRecordCounts::default(),
    };
    let mut tokens_total = state.map_or(0, |s| carried(s.tokens));
    let tokens_before = state.map_or(0, |s| s.tokens);
    let mut combined = Combined {
        tokens: tokens_before,
        bad_records: bad_records.clone(),
        ..Combined::default()
    };
    let uses_uniforms = config.model.sampler == electra_model::Sampler::InverseCdf;
    let (gen_weight, disc_weight) = model.loss_weights(&forward_options);
    drop(resumed);
    let mut first = None;
    let mut last = None;
    let mut last_checkpoint: Option<(u64, PathBuf)> = None;
    let mut interrupted = false;
    let mut done = first_step;

    let checkpoint_state =
        |done: u64, combined: &Combined, skipped: u64, window: &Window| -> TrainerState {
            let mut window_state = window.state();
            window_state.tokens = combined.window_tokens;
            TrainerState {
                format_version: checkpoint::FORMAT_VERSION,
                step: done,
                batches: done,
                cursor: combined.cursors.first().copied().unwrap_or_default(),
                slice_cursors: if slices > 1 {
                    combined.cursors.clone()
                } else {
                    Vec::new()
                },
                tokens: combined.tokens,
                bad_records: combined.bad_records.clone(),
                skipped_steps: skipped,
                elapsed_sec: elapsed_before + started.elapsed().as_secs_f64(),
                window: window_state,
                seed: t.seed,
                tokenizer_sha256: tokenizer_sha256.clone(),
                data_files: data_files.clone(),
                config_toml: config.to_toml().unwrap_or_default(),
                tool_version: format!("electra {}", env!("CARGO_PKG_VERSION")),
            }
        };
    let save = |done: u64,
                combined: &Combined,
                window: &Window,
                guard: &Guard,
                optimizer: &AdamW|
     -> Result<PathBuf> {
        let (skipped, _) = guard.read()?;
        let state = checkpoint_state(done, combined, skipped, window);
        let mut tensors = optimizer.state_tensors();
        tensors.extend(
            WINDOW_TENSORS
                .iter()
                .map(|n| n.to_string())
                .zip(window.tensors()),
        );
        tensors.push((GUARD_TENSORS[0].into(), guard.skipped.shallow_clone()));
        tensors.push((GUARD_TENSORS[1].into(), guard.consecutive.shallow_clone()));
        tensors.push((GUARD_TENSORS[2].into(), guard.longest.shallow_clone()));
        let dir = writer.save(&model.hf_folders(), &tensors, &state, &tokenizer_json)?;
        tracing::info!(step = done, checkpoint = %dir.display(), "checkpoint written");
        Ok(dir)
    };

    for step in first_step..steps {
        let waited = Instant::now();
        let RankBatch {
            batch,
            global_rows,
            cursors,
        } = match loader.next_batch() {
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

        let seed = step_seed(t.seed, step);
        tch::manual_seed(seed);
        let uniforms = if uses_uniforms {
            Some(sample_uniforms(&batch, &global_rows, seed, device)?)
        } else {
            None
        };
        let lr = schedule.lr(step);
        let output = {
            let _autocast = autocast(t.precision, device)?;
            model.forward_with(
                &device_batch.input(),
                &forward_options,
                true,
                uniforms.as_ref(),
            )?
        };
        // Data parallel: each rank's losses are its sums over the global batch's counts,
        // so the ranks' gradients add up to the single-process gradient.
        let (loss, gen_loss, disc_loss) = match &coll {
            None => (
                output.loss.shallow_clone(),
                output.gen_loss.shallow_clone(),
                output.disc_loss.shallow_clone(),
            ),
            Some(coll) => {
                let local = Tensor::from_slice(&[
                    batch.masked_positions.len() as f32,
                    batch.real_tokens as f32,
                ])
                .to_device(device);
                let global = local.copy();
                coll.all_reduce_sum(&global)?;
                let scale = (local / global).detach();
                let gen_loss = &output.gen_loss * scale.get(0);
                let disc_loss = &output.disc_loss * scale.get(1);
                let loss = &gen_loss * gen_weight + &disc_loss * disc_weight;
                (loss, gen_loss, disc_loss)
            }
        };
        optimizer.zero_grad();
        loss.backward();
        if let (Some(coll), Some(buckets)) = (&coll, &mut buckets) {
            buckets.reduce(coll.as_ref())?;
        }
        let grad_norm = optimizer.clip_grad_norm(t.clip_grad_norm);
        // [loss, gen_loss, disc_loss, stats...], summed over ranks.
        let summary = tch::no_grad(|| {
            Tensor::cat(
                &[
                    Tensor::stack(
                        &[
                            loss.detach().to_kind(Kind::Float),
                            gen_loss.detach().to_kind(Kind::Float),
                            disc_loss.detach().to_kind(Kind::Float),
                        ],
                        0,
                    ),
                    output.stats.detach().to_kind(Kind::Float),
                ],
                0,
            )
        });
        if let Some(coll) = &coll {
            coll.all_reduce_sum(&summary)?;
        }
        let ok = summary.get(0).isfinite().logical_and(&grad_norm.isfinite());
        optimizer.step_if(lr, &ok);
        guard.record(&ok);

        tch::no_grad(|| {
            let keep = |x: Tensor| x.where_self(&ok, &x.zeros_like());
            window.losses += keep(summary.narrow(0, 0, 3));
            window.grad_norm += keep(grad_norm.to_kind(Kind::Float));
            window.stats += keep(summary.narrow(0, 3, STATS_LEN as i64));
            window.good += ok.to_kind(Kind::Float);
        });
        window.steps += 1;
        window.tokens += batch.real_tokens as u64;
        tokens_total += batch.real_tokens as u64;
        done = step + 1;

        if done % t.log_every == 0 || done == steps {
            let (_, longest) = guard.read()?;
            if longest >= t.max_bad_steps {
                return Err(TrainError::NonFinite {
                    step: done,
                    count: longest,
                });
            }
        }
        let every = config.checkpoint.every_steps;
        let regular_row = done % t.log_every == 0;
        let scheduled = (every > 0 && done % every == 0) || done == steps;
        let signalled = options
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::SeqCst));
        // The ranks' counters and cursors meet at logging and checkpoint steps, where a
        // signal to any rank becomes a stop for all (a single process stops at once).
        let exchange = regular_row || scheduled || (coll.is_none() && signalled);
        let mut stop = coll.is_none() && signalled;
        if exchange {
            let report = RankReport {
                tokens: tokens_total,
                window_tokens: window.tokens,
                bad_records: bad_records.clone(),
                stop: signalled,
                cursors: cursors.clone(),
            };
            combined = match &coll {
                None => combine(std::slice::from_ref(&report), slices)?,
                Some(coll) => {
                    let bytes = serde_json::to_vec(&report).map_err(|e| TrainError::Dist {
                        reason: format!("encoding this rank's report: {e}"),
                    })?;
                    let reports = coll
                        .all_gather_bytes(&bytes)?
                        .iter()
                        .enumerate()
                        .map(|(r, b)| {
                            serde_json::from_slice::<RankReport>(b).map_err(|e| TrainError::Dist {
                                reason: format!("rank {r}'s report: {e}"),
                            })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    combine(&reports, slices)?
                }
            };
            stop |= combined.stop;
        }
        let checkpoint_now = scheduled || stop;
        let mut write_row = |window: &mut Window, combined: &Combined| -> Result<()> {
            let (skipped, _) = guard.read()?;
            let row = close_window(
                window,
                combined.window_tokens,
                done,
                epoch,
                lr,
                combined.tokens,
                elapsed_before + started.elapsed().as_secs_f64(),
                &combined.bad_records,
                skipped,
            )?;
            if let Some(metrics) = &mut metrics {
                metrics.write(&row)?;
                report(&bar, &row);
            }
            first.get_or_insert_with(|| row.clone());
            last = Some(row);
            *window = Window::new(device);
            Ok(())
        };
        // A row at a logging step comes before a checkpoint there, so the checkpoint holds
        // an empty window. An early row (the run ends or is stopped between logging steps)
        // comes after it: the checkpoint keeps the window open, and a resumed run drops
        // that row and closes the window where an uninterrupted run would.
        if regular_row {
            write_row(&mut window, &combined)?;
            combined.window_tokens = 0;
        }
        if checkpoint_now && is_main {
            let dir = save(done, &combined, &window, &guard, &optimizer)?;
            last_checkpoint = Some((done, dir));
        }
        if !regular_row && (done == steps || stop) {
            write_row(&mut window, &combined)?;
        }
        if let Some(bar) = &bar {
            bar.inc(1);
        }
        if stop {
            interrupted = true;
            break;
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(loader);
    let (skipped_steps, _) = guard.read()?;

    let final_dir = run_dir.join("final");
    if !interrupted && is_main {
        write_hf_folders(
            &final_dir,
            &model.hf_folders(),
            &tokenizer_json,
            Layout::Final,
        )?;
    }
    if let Some(coll) = &coll {
        // Every rank returns once rank 0's files are written.
        coll.barrier()?;
    }
    let trained = combined.tokens.saturating_sub(tokens_before);
    Ok(RunSummary {
        steps: done,
        tokens: combined.tokens,
        seconds,
        tokens_per_sec: trained as f64 / seconds.max(1e-9),
        device: format!("{device:?}"),
        first,
        last,
        bad_records: combined.bad_records,
        final_dir,
        interrupted,
        checkpoint: last_checkpoint.map(|(_, dir)| dir),
        skipped_steps,
        resumed_from: (first_step > 0).then_some(first_step),
        flops_per_step,
    })
}

/// Parameters whose VarStore name starts with `prefix`.
pub(crate) fn count_params(vs: &nn::VarStore, prefix: &str) -> i64 {
    vs.variables()
        .iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(_, t)| t.numel() as i64)
        .sum()
}

#[allow(clippy::too_many_arguments)]
fn close_window(
    window: &mut Window,
    window_tokens: u64,
    step: u64,
    epoch: u64,
    lr: f64,
    tokens: u64,
    elapsed_sec: f64,
    bad_records: &BadRecordCounts,
    skipped_steps: u64,
) -> Result<MetricsRow> {
    let good = f64::try_from(&window.good.to_kind(Kind::Double))?;
    let n = good.max(1.0);
    let losses: Vec<f64> = Vec::try_from(&window.losses.to_kind(Kind::Double))?;
    let grad_norm = f64::try_from(&window.grad_norm.to_kind(Kind::Double))?;
    let stats = ElectraStats::from_tensor(&window.stats)?;
    let wall = window.started.elapsed().as_secs_f64().max(1e-9);
    if (good as u64) < window.steps {
        tracing::warn!(
            step,
            skipped = window.steps - good as u64,
            "steps skipped for a non-finite loss or gradient norm in this window"
        );
    }
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
        tokens_per_sec: window_tokens as f64 / wall,
        data_wait_frac: window.data_wait.as_secs_f64() / wall,
        tokens,
        elapsed_sec,
        skipped_steps,
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
