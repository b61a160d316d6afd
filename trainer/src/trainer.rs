//! [`Trainer`]: the state of a pre-training run and what changes it.
//!
//! It owns the model (an [`Objective`] in its `VarStore`), the optimizer, the schedule, the
//! collective of a data-parallel run, the metrics window and its sinks, the non-finite
//! guard and the counters. A run is a sequence of
//!
//! - [`step`](Trainer::step): one update, in four phases that `bench train` times one by
//!   one: [`upload`](Trainer::upload), [`forward`](Trainer::forward),
//!   [`backward`](Trainer::backward), [`update`](Trainer::update);
//! - [`check_finite`](Trainer::check_finite), [`exchange`](Trainer::exchange),
//!   [`log`](Trainer::log): at logging steps, the guard is read, the ranks' counters meet
//!   and the window's row goes to the sinks;
//! - [`checkpoint`](Trainer::checkpoint) and [`resume`](Trainer::resume): the whole state
//!   written and read back, so a resumed run continues bit for bit;
//!
//! and [`evaluate`](Trainer::evaluate) scores batches without changing any of it.

mod data_parallel;
mod evaluate;
mod guard;
mod step;
#[cfg(test)]
mod tests;
mod window;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use electra_pipeline::{BadRecordCounts, DataCursor};
use tch::{nn, Device, Tensor};

use crate::checkpoint::{self, CheckpointWriter, Found, TrainerState};
use crate::config::{Precision, RunConfig};
use crate::dist::Collective;
use crate::error::{Result, TrainError};
use crate::hf_folders::{write_hf_folders, Layout};
use crate::metrics::{source_counts, MetricsRow, MetricsSink};
use crate::objective::{self, Objective, Start};
use crate::optim::{AdamW, AdamWConfig};
use crate::parallel::{combine, Combined, RankReport};
use crate::run_dir::RunDir;
use crate::schedule::LinearSchedule;
use crate::summary::RunSummary;
use data_parallel::DataParallel;
use guard::{Guard, GUARD_TENSORS};
use window::{RowContext, Window, WINDOW_TENSORS};

pub use evaluate::EvalReport;
pub use step::{Backwarded, Forwarded, StepReport, Uploaded};

/// Derives the per-step libtorch seed, so dropout and sampling noise depend only on
/// (run seed, step).
pub fn step_seed(seed: u64, step: u64) -> i64 {
    let mut x = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((x ^ (x >> 31)) >> 1) as i64
}

/// The `[train]` values a step reads.
#[derive(Debug, Clone, Copy)]
struct Settings {
    device: Device,
    seed: u64,
    precision: Precision,
    clip_grad_norm: f64,
    max_bad_steps: u64,
    slices: usize,
}

/// Counts of the run so far.
#[derive(Debug, Clone, Default)]
struct Counters {
    /// Updates made (skipped steps included): the next step's index.
    step: u64,
    /// Real tokens this rank trained on (rank 0: the resumed run's total included).
    tokens: u64,
    /// Real tokens of the run before this process started (a resumed run's).
    tokens_before: u64,
    /// Bad records this rank met (rank 0: the resumed run's included).
    bad_records: BadRecordCounts,
    /// All ranks' counts at the last exchange.
    combined: Combined,
    /// Epoch of the last batch.
    epoch: u64,
    /// Learning rate of the last update.
    lr: f64,
    /// `(slice, cursor)` after the last batch.
    cursors: Vec<(usize, DataCursor)>,
}

impl Counters {
    /// The counts a checkpoint saved. The saved counts are the run's totals: rank 0
    /// carries them, the others start at 0, and the ranks' reports add up to the totals.
    fn resumed(state: &TrainerState, is_main: bool) -> Self {
        let bad_records = if is_main {
            state.bad_records.clone()
        } else {
            BadRecordCounts::default()
        };
        Self {
            step: state.step,
            tokens: if is_main { state.tokens } else { 0 },
            tokens_before: state.tokens,
            combined: Combined {
                tokens: state.tokens,
                bad_records: bad_records.clone(),
                ..Combined::default()
            },
            bad_records,
            ..Self::default()
        }
    }
}

/// How a run ended, for [`Trainer::summary`].
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Wall time of the training loop.
    pub seconds: f64,
    /// Where the final weights went.
    pub final_dir: PathBuf,
    /// Stopped by a signal before the last step.
    pub interrupted: bool,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
}

/// A pre-training run's state (see the [module docs](self)).
pub struct Trainer {
    vs: nn::VarStore,
    objective: Box<dyn Objective>,
    optimizer: AdamW,
    schedule: LinearSchedule,
    data_parallel: Option<DataParallel>,
    window: Window,
    guard: Guard,
    counters: Counters,
    sinks: Vec<Box<dyn MetricsSink>>,
    settings: Settings,
    /// The names of a mixture's sources (empty for a single corpus).
    source_names: Vec<String>,
    flops_per_step: f64,
    /// When this process started training, and the seconds trained before it.
    started: Instant,
    elapsed_before: f64,
    resumed_from: Option<u64>,
    first_row: Option<MetricsRow>,
    last_row: Option<MetricsRow>,
}

impl Trainer {
    /// Builds `config`'s objective on `device` from `start` (torch seeded from the run
    /// seed first, so a fresh model is the same on every rank and every run), our AdamW
    /// over all its variables and the schedule. With a `collective`, every rank takes
    /// rank 0's weights and gradients are summed over ranks.
    pub fn new(
        config: &RunConfig,
        device: Device,
        start: Start<'_>,
        collective: Option<Box<dyn Collective>>,
    ) -> Result<Self> {
        let t = &config.train;
        tch::manual_seed(step_seed(t.seed, u64::MAX));
        let vs = nn::VarStore::new(device);
        let objective = objective::kind(config.model.objective).build(&vs, config, start)?;
        let optimizer = AdamW::for_var_store(&vs, AdamWConfig::from_train(t));
        let data_parallel = collective
            .map(|c| DataParallel::new(c, &vs, &config.dist))
            .transpose()?;
        let flops_per_step = objective.step_flops(config);
        Ok(Self {
            vs,
            objective,
            optimizer,
            schedule: LinearSchedule::from_train(t),
            data_parallel,
            window: Window::new(device),
            guard: Guard::new(device),
            counters: Counters::default(),
            sinks: Vec::new(),
            settings: Settings {
                device,
                seed: t.seed,
                precision: t.precision,
                clip_grad_norm: t.clip_grad_norm,
                max_bad_steps: t.max_bad_steps,
                slices: config.dist.data_slices,
            },
            source_names: config.data.source_names(),
            flops_per_step,
            started: Instant::now(),
            elapsed_before: 0.0,
            resumed_from: None,
            first_row: None,
            last_row: None,
        })
    }

    /// The variables.
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// The model being trained.
    pub fn objective(&self) -> &dyn Objective {
        self.objective.as_ref()
    }

    /// The device.
    pub fn device(&self) -> Device {
        self.settings.device
    }

    /// Updates made: the next step's index.
    pub fn steps_done(&self) -> u64 {
        self.counters.step
    }

    /// Whether this is rank 0 (a single process is), which writes the run folder.
    pub fn is_main(&self) -> bool {
        self.data_parallel.as_ref().is_none_or(|dp| dp.rank() == 0)
    }

    /// Training FLOPs of one step.
    pub fn flops_per_step(&self) -> f64 {
        self.flops_per_step
    }

    /// Where metrics rows go from now on.
    pub fn set_sinks(&mut self, sinks: Vec<Box<dyn MetricsSink>>) {
        self.sinks = sinks;
    }

    /// Continues from `found`: optimizer moments, the open metrics window, the guard's
    /// counters and the run's counts (the weights were loaded by [`Start::Checkpoint`]).
    pub fn resume(&mut self, found: &Found) -> Result<()> {
        let state = &found.state;
        let names: Vec<String> = self
            .optimizer
            .state_tensors()
            .into_iter()
            .map(|(n, _)| n)
            .chain(WINDOW_TENSORS.iter().map(|n| n.to_string()))
            .chain(GUARD_TENSORS.iter().map(|n| n.to_string()))
            .collect();
        let tensors = checkpoint::load_tensors(&found.dir, &names)?;
        self.optimizer
            .load_state(&tensors, state.step)
            .map_err(|reason| TrainError::Checkpoint {
                path: found.dir.join(checkpoint::TENSORS_FILE),
                reason,
            })?;
        self.window = Window::restore(self.settings.device, &state.window, &tensors)?;
        self.guard.restore(&tensors)?;
        let is_main = self.is_main();
        if !is_main {
            self.window.tokens = 0;
        }
        self.counters = Counters::resumed(state, is_main);
        self.elapsed_before = state.elapsed_sec;
        self.resumed_from = (state.step > 0).then_some(state.step);
        Ok(())
    }

    /// Seconds trained, the resumed run's included.
    fn elapsed(&self) -> f64 {
        self.elapsed_before + self.started.elapsed().as_secs_f64()
    }

    /// Fails when the longest run of skipped steps reached `train.max_bad_steps` (reads the
    /// guard: a host synchronisation).
    pub fn check_finite(&self) -> Result<()> {
        let (_, longest) = self.guard.read()?;
        if longest >= self.settings.max_bad_steps {
            return Err(TrainError::NonFinite {
                step: self.counters.step,
                count: longest,
            });
        }
        Ok(())
    }

    /// Brings the ranks' counters and cursors together when `due` (every rank must call it
    /// at the same steps), and in a single process also when `signalled`. Returns whether
    /// to stop: a stop signal reached some rank.
    pub fn exchange(&mut self, due: bool, signalled: bool) -> Result<bool> {
        let single = self.data_parallel.is_none();
        let now = due || (single && signalled);
        if !now {
            return Ok(false);
        }
        let report = RankReport {
            tokens: self.counters.tokens,
            window_tokens: self.window.tokens,
            bad_records: self.counters.bad_records.clone(),
            stop: signalled,
            cursors: self.counters.cursors.clone(),
        };
        let slices = self.settings.slices;
        self.counters.combined = match &self.data_parallel {
            None => combine(std::slice::from_ref(&report), slices)?,
            Some(dp) => dp.gather(&report, slices)?,
        };
        Ok((single && signalled) || self.counters.combined.stop)
    }

    /// Closes the metrics window: its row (the counters as of the last
    /// [`exchange`](Self::exchange)) goes to every sink and is returned.
    pub fn log(&mut self) -> Result<MetricsRow> {
        let (skipped, _) = self.guard.read()?;
        let c = &self.counters;
        let row = self.window.row(&RowContext {
            window_tokens: c.combined.window_tokens,
            step: c.step,
            epoch: c.epoch,
            lr: c.lr,
            tokens: c.combined.tokens,
            elapsed_sec: self.elapsed(),
            bad_records: &c.combined.bad_records,
            skipped_steps: skipped,
            sources: source_counts(&self.source_names, &c.combined.cursors),
        })?;
        for sink in &mut self.sinks {
            sink.write(&row)?;
        }
        self.first_row.get_or_insert_with(|| row.clone());
        self.last_row = Some(row.clone());
        self.window = Window::new(self.settings.device);
        self.counters.combined.window_tokens = 0;
        Ok(row)
    }

    /// Writes the whole state as the checkpoint of this step (the counters as of the last
    /// [`exchange`](Self::exchange)); returns its folder. The open window is saved too: a
    /// checkpoint written after a logging step's row holds an empty one.
    pub fn checkpoint(&self, writer: &CheckpointWriter) -> Result<PathBuf> {
        let (skipped, _) = self.guard.read()?;
        let c = &self.counters;
        let run = writer.identity();
        let state = TrainerState {
            format_version: checkpoint::FORMAT_VERSION,
            step: c.step,
            batches: c.step,
            cursor: c.combined.cursors.first().cloned().unwrap_or_default(),
            slice_cursors: if self.settings.slices > 1 {
                c.combined.cursors.clone()
            } else {
                Vec::new()
            },
            tokens: c.combined.tokens,
            bad_records: c.combined.bad_records.clone(),
            skipped_steps: skipped,
            elapsed_sec: self.elapsed(),
            window: self.window.state(c.combined.window_tokens),
            seed: self.settings.seed,
            tokenizer_sha256: run.tokenizer_sha256.clone(),
            data_files: run.data_files.clone(),
            config_toml: run.config_toml.clone(),
            tool_version: format!("electra {}", env!("CARGO_PKG_VERSION")),
        };
        let mut tensors = self.optimizer.state_tensors();
        tensors.extend(self.window.named_tensors());
        tensors.extend(self.guard.named_tensors());
        let folders = self.objective.hf_folders(&self.vs, Layout::Checkpoint);
        let dir = writer.save(&folders, &tensors, &state)?;
        tracing::info!(step = c.step, checkpoint = %dir.display(), "checkpoint written");
        Ok(dir)
    }

    /// Writes the weights to `run`'s `final/` with its tokenizer.
    pub fn write_final(&self, run: &RunDir) -> Result<()> {
        let folders = self.objective.hf_folders(&self.vs, Layout::Final);
        write_hf_folders(&run.final_dir(), &folders, &run.tokenizer())
    }

    /// Returns once every rank has reached it (at once in a single process).
    pub fn barrier(&self) -> Result<()> {
        match &self.data_parallel {
            Some(dp) => dp.barrier(),
            None => Ok(()),
        }
    }

    /// The run's summary.
    pub fn summary(&self, outcome: Outcome) -> Result<RunSummary> {
        let (skipped_steps, _) = self.guard.read()?;
        let c = &self.counters;
        let trained = c.combined.tokens.saturating_sub(c.tokens_before);
        Ok(RunSummary {
            steps: c.step,
            tokens: c.combined.tokens,
            seconds: outcome.seconds,
            tokens_per_sec: trained as f64 / outcome.seconds.max(1e-9),
            device: format!("{:?}", self.settings.device),
            first: self.first_row.clone(),
            last: self.last_row.clone(),
            bad_records: c.combined.bad_records.clone(),
            final_dir: outcome.final_dir,
            interrupted: outcome.interrupted,
            checkpoint: outcome.checkpoint,
            skipped_steps,
            resumed_from: self.resumed_from,
            flops_per_step: self.flops_per_step,
        })
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
