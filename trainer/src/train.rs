//! The pre-training loop, [`pretrain`], in sections as nanoGPT's `train.py` reads: set-up,
//! resume, data, model, the loop (data, step, log, checkpoint, stop signal), the end. The
//! state it changes is the [`Trainer`]'s; the run folder's layout is [`RunDir`]'s.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use electra_pipeline::TextTokenizer;
use indicatif::ProgressBar;

use crate::checkpoint::{CheckpointWriter, FileStamp, Found, RunIdentity};
use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::metrics::{open_sinks, progress_bar};
use crate::objective::{count_params, Start};
use crate::parallel::{owned_slices, RankData};
use crate::ranks::Ranks;
use crate::resume::{check_same_data, find_resume, loader_starts};
use crate::run_dir::RunDir;
use crate::trainer::{Outcome, Trainer};
use electra_pipeline::load_tokenizer;

pub use crate::device::DeviceChoice;
pub use crate::objective::model_configs;
pub use crate::summary::RunSummary;

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

/// Runs pre-training as `config` describes; returns the summary.
pub fn pretrain(config: &RunConfig, options: &PretrainOptions) -> Result<RunSummary> {
    // ---- Set-up: this process's rank and device, the run folder, the tokenizer.
    let ranks = Ranks::join(config, options.device)?;
    let run = RunDir::new(&options.run_dir);
    if ranks.rank == 0 {
        run.create()?; // rank 0 writes the run folder
    }
    let tokenizer = load_tokenizer(&config.data.tokenizer)?;

    // ---- Resume: the newest complete checkpoint, refused if another experiment's.
    let found = match options.resume {
        true => Some(find_resume(config, &run, &tokenizer)?),
        false => None,
    };

    // ---- Data, model, metrics: this rank's slices and the trainer, as the checkpoint
    // left them.
    let mut session = Session::open(config, options, ranks, &run, &tokenizer, found)?;
    let (data, trainer) = (&mut session.data, &mut session.trainer);

    // ---- The loop: data, step, log, checkpoint, stop signal.
    let (steps, log_every, every) = (
        config.train.steps(),
        config.train.execution.log_every,
        config.checkpoint.every_steps,
    );
    let started = Instant::now();
    let (mut last_checkpoint, mut interrupted) = (None, false);
    for step in trainer.steps_done()..steps {
        // Data: this rank's rows of the global batch.
        let exhausted = TrainError::DataExhausted {
            batches: step,
            needed: steps,
        };
        let batch = data.next_batch().ok_or(exhausted)??;
        // Step: forward, backward, an update unless the loss or gradient norm is not finite.
        trainer.step(&batch)?;
        // Log: the guard is read, and the ranks' counters meet, at logging and checkpoint
        // steps only; a signal to any rank becomes a stop for all there (a single process
        // stops at once).
        let done = step + 1;
        let (log_now, last) = (done % log_every == 0, done == steps);
        let scheduled = last || (every > 0 && done % every == 0);
        if log_now || last {
            trainer.check_finite()?;
        }
        let stop = trainer.exchange(log_now || scheduled, stop_requested(options))?;
        if log_now {
            trainer.log()?;
        }
        // Checkpoint: after a logging step's row, so it holds an empty window. An early row
        // (the run ends or stops between logging steps) comes after it: the checkpoint keeps
        // the window open, and a resumed run drops that row and closes the window where an
        // uninterrupted run would.
        if (scheduled || stop) && trainer.is_main() {
            last_checkpoint = Some(trainer.checkpoint(&session.writer)?);
        }
        if !log_now && (last || stop) {
            trainer.log()?;
        }
        session.progress.inc(1);
        // Stop signal: the step is done and saved.
        if stop {
            interrupted = true;
            break;
        }
    }

    // ---- The end: the final weights (rank 0); every rank returns once they are written.
    let seconds = started.elapsed().as_secs_f64();
    session.progress.finish_and_clear();
    let trainer = session.close();
    if !interrupted && trainer.is_main() {
        trainer.write_final(&run)?;
    }
    trainer.barrier()?;
    trainer.summary(Outcome {
        seconds,
        run_dir: run.root().to_path_buf(),
        final_dir: run.final_dir(),
        interrupted,
        checkpoint: last_checkpoint,
    })
}

/// What the loop works with: the data, the trainer, the checkpoint writer, the bar.
struct Session {
    data: RankData,
    trainer: Trainer,
    writer: CheckpointWriter,
    progress: ProgressBar,
}

impl Session {
    /// Writes the run folder's `config.toml` and `tokenizer.json` (rank 0), opens this
    /// rank's data slices and builds the trainer, from `found` when resuming; the main
    /// rank's trainer gets the metrics sinks.
    fn open(
        config: &RunConfig,
        options: &PretrainOptions,
        ranks: Ranks,
        run: &RunDir,
        tokenizer: &TextTokenizer,
        found: Option<Found>,
    ) -> Result<Self> {
        let is_main = ranks.rank == 0;
        if is_main {
            write_run_files(config, run, tokenizer)?;
        }
        let slices = config.dist.data_slices;
        let starts = loader_starts(found.as_ref(), slices)?;
        let owned = owned_slices(slices, ranks.rank, ranks.world);
        let seed = config.train.seed;
        let data = RankData::new(&config.data, tokenizer, seed, slices, &owned, &starts)?;
        let identity = RunIdentity {
            tokenizer_sha256: tokenizer.sha256().to_string(),
            data_files: FileStamp::of_files(data.files()),
            config_toml: config.to_toml()?,
        };
        if let Some(found) = &found {
            check_same_data(found, &identity.data_files)?;
        }
        let mut trainer = build_trainer(config, options, ranks, tokenizer, found.as_ref())?;
        let steps = config.train.steps();
        let progress =
            progress_bar(options.progress && is_main, steps).unwrap_or_else(ProgressBar::hidden);
        progress.set_position(trainer.steps_done());
        if is_main {
            let resumed = found.as_ref().map(|f| &f.state);
            let bar = (!progress.is_hidden()).then(|| progress.clone());
            trainer.set_sinks(open_sinks(run, resumed, bar)?);
        }
        Ok(Self {
            data,
            trainer,
            writer: CheckpointWriter::new(run, config.checkpoint.keep, identity),
            progress,
        })
    }

    /// Stops the data loaders; the trainer remains.
    fn close(self) -> Trainer {
        drop(self.data);
        self.trainer
    }
}

/// The trainer: fresh, from Hugging Face weights or from `found`, with its state.
fn build_trainer(
    config: &RunConfig,
    options: &PretrainOptions,
    ranks: Ranks,
    tokenizer: &TextTokenizer,
    found: Option<&Found>,
) -> Result<Trainer> {
    let (encoder, generator) = model_configs(config, tokenizer);
    let start = match (found, &options.init_from_hf) {
        (Some(found), _) => Start::Checkpoint(&found.dir),
        (None, Some(dir)) => Start::HuggingFace(dir),
        (None, None) => Start::Fresh {
            encoder: &encoder,
            generator: &generator,
        },
    };
    let mut trainer = Trainer::new(config, ranks.device, start, ranks.collective)?;
    if let (None, Some(dir)) = (found, &options.init_from_hf) {
        check_vocabulary(&trainer, dir, encoder.vocab_size)?;
    }
    if let Some(found) = found {
        trainer.resume(found)?;
    }
    log_start(config, &trainer, found);
    Ok(trainer)
}

/// The run folder's `tokenizer.json` (a copy of the run's tokenizer) and `config.toml`.
fn write_run_files(config: &RunConfig, run: &RunDir, tokenizer: &TextTokenizer) -> Result<()> {
    let copy = run.tokenizer();
    if tokenizer.path() != copy {
        std::fs::copy(tokenizer.path(), &copy).map_err(TrainError::io(tokenizer.path()))?;
    }
    electra_fsutil::write_atomic(&run.config(), config.to_toml()?.as_bytes())?;
    Ok(())
}

/// Refuses Hugging Face weights whose vocabulary is not the run tokenizer's.
fn check_vocabulary(trainer: &Trainer, dir: &Path, vocab_size: i64) -> Result<()> {
    let found = trainer.objective().encoder_config().vocab_size;
    if found != vocab_size {
        return Err(TrainError::InvalidConfig {
            field: "--init-from-hf".into(),
            reason: format!(
                "{} has a vocabulary of {found}, the run's tokenizer {vocab_size}; use the tokenizer the model was trained with",
                dir.display(),
            ),
        });
    }
    Ok(())
}

/// Whether a signal handler asked the run to stop.
fn stop_requested(options: &PretrainOptions) -> bool {
    options
        .stop
        .as_ref()
        .is_some_and(|s| s.load(Ordering::SeqCst))
}

fn log_start(config: &RunConfig, trainer: &Trainer, found: Option<&Found>) {
    let vs = trainer.var_store();
    tracing::info!(
        device = ?trainer.device(),
        steps = config.train.steps(),
        from_step = trainer.steps_done(),
        objective = ?config.model.objective,
        encoder_params = count_params(vs, ""),
        encoder_hidden = trainer.objective().encoder_config().hidden_size,
        generator_params = trainer.objective().generator_params(vs),
        "pre-training"
    );
    if let Some(found) = found {
        tracing::info!(checkpoint = %found.dir.display(), step = found.state.step, cursor = ?found.state.cursor, "resuming");
    }
}
