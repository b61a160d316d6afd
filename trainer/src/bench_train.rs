//! `electra bench train`: steady-state training throughput of a config, with the step
//! time split into data wait, forward, backward and optimizer, and peak memory.
//!
//! The step is the pre-training step itself ([`Trainer::step`]: same model, optimizer,
//! clipping, guard and window) fed by the real pipeline from the config's `[data]`, every
//! batch padded to `max_seq_len` so each step processes `batch_size x max_seq_len`
//! positions. Two passes follow the warm-up:
//!
//! 1. **throughput**: `steps` steps with no host synchronisation inside them (on CUDA the
//!    device is synchronised once at each end), as a training run executes them;
//! 2. **breakdown**: `steps` more steps run phase by phase ([`Trainer::upload`],
//!    [`forward`](Trainer::forward), [`backward`](Trainer::backward),
//!    [`update`](Trainer::update)) with the device synchronised after each, so the phases'
//!    times are the device's, not the launch queue's. On CPU every operation is synchronous
//!    and the two passes measure the same thing.

use std::time::Instant;

use serde::Serialize;
use tch::Device;

use crate::config::RunConfig;
use crate::device::{cuda_peak_allocated, heap_retained};
use crate::error::{Result, TrainError};
use crate::objective::{count_params, model_configs, Start};
use crate::parallel::{RankBatch, RankData};
use crate::trainer::Trainer;
use electra_pipeline::load_tokenizer;
use electra_pipeline::report::Rows;
use electra_pipeline::resources::peak_rss_bytes;

/// What `bench train` measures.
#[derive(Debug, Clone, Copy)]
pub struct TrainBenchOptions {
    /// The device.
    pub device: Device,
    /// Untimed steps first (allocator, kernels, threads warm up).
    pub warmup: u64,
    /// Timed steps of each pass.
    pub steps: u64,
}

/// The result, one JSON object with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct TrainBench {
    /// `Cpu` or `Cuda(i)`.
    pub device: String,
    /// `fp32` or `bf16` (autocast).
    pub precision: String,
    /// libtorch's intra-op threads (CPU).
    pub torch_threads: i32,
    /// Whether glibc keeps freed activations in the heap
    /// ([`retain_cpu_heap`](crate::device::retain_cpu_heap), called by the binary).
    pub retained_heap: bool,
    /// `electra` or `mlm`.
    pub objective: String,
    /// Parameters of the kept encoder.
    pub encoder_params: i64,
    /// Parameters in all (generator included).
    pub total_params: i64,
    /// Examples per step.
    pub batch_size: usize,
    /// Positions per example (every batch is padded to it).
    pub seq_len: usize,
    /// Timed steps per pass.
    pub steps: u64,
    /// Positions processed per second (`batch_size x seq_len` per step), pass 1.
    pub tokens_per_sec: f64,
    /// Non-padding tokens per second, pass 1.
    pub real_tokens_per_sec: f64,
    /// Mean step time, pass 1, in milliseconds.
    pub step_ms: f64,
    /// Waiting for the pipeline's next batch (host), pass 2.
    pub data_wait_ms: f64,
    /// Host-to-device copy of the batch, pass 2.
    pub copy_ms: f64,
    /// The forward pass (generator, sampling, discriminator, losses), pass 2.
    pub forward_ms: f64,
    /// The backward pass, pass 2.
    pub backward_ms: f64,
    /// Clipping, the finite check and the AdamW update, pass 2.
    pub optimizer_ms: f64,
    /// Data wait over the step time, pass 2.
    pub data_wait_frac: f64,
    /// Peak memory: the process's resident set on CPU; on CUDA, the peak bytes libtorch's
    /// allocator held during the timed steps.
    pub peak_memory_bytes: u64,
    /// Training FLOPs of one step (see `electra flops`).
    pub flops_per_step: f64,
    /// `flops_per_step / step time`, in TFLOP/s.
    pub achieved_tflops: f64,
}

/// Synchronises the device (a no-op on CPU).
fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Milliseconds since `t` after synchronising the device.
fn lap(device: Device, t: &mut Instant) -> f64 {
    sync(device);
    let ms = t.elapsed().as_secs_f64() * 1e3;
    *t = Instant::now();
    ms
}

/// Time spent in each phase of the timed steps, in milliseconds.
#[derive(Debug, Default)]
struct Phases {
    wait: f64,
    copy: f64,
    forward: f64,
    backward: f64,
    optimizer: f64,
    real_tokens: u64,
}

impl Phases {
    fn total(&self) -> f64 {
        self.wait + self.copy + self.forward + self.backward + self.optimizer
    }
}

/// The pipeline and the trainer, stepped as training steps.
struct Bench {
    data: RankData,
    trainer: Trainer,
    needed: u64,
}

impl Bench {
    /// The next batch; its wait is added to `phases`.
    fn next_batch(&mut self, phases: &mut Phases) -> Result<RankBatch> {
        let step = self.trainer.steps_done();
        let batch = self.data.next_batch().ok_or(TrainError::DataExhausted {
            batches: step,
            needed: self.needed,
        })??;
        phases.real_tokens += batch.batch.real_tokens as u64;
        Ok(batch)
    }

    /// One step as training runs it.
    fn step(&mut self, phases: &mut Phases) -> Result<()> {
        let batch = self.next_batch(phases)?;
        self.trainer.step(&batch)?;
        Ok(())
    }

    /// One step phase by phase, the device synchronised after each.
    fn timed_step(&mut self, phases: &mut Phases) -> Result<()> {
        let device = self.trainer.device();
        let mut clock = Instant::now();
        let batch = self.next_batch(phases)?;
        phases.wait += lap(device, &mut clock);
        let uploaded = self.trainer.upload(&batch);
        phases.copy += lap(device, &mut clock);
        let forwarded = self.trainer.forward(uploaded)?;
        phases.forward += lap(device, &mut clock);
        let backwarded = self.trainer.backward(forwarded)?;
        phases.backward += lap(device, &mut clock);
        self.trainer.update(backwarded)?;
        phases.optimizer += lap(device, &mut clock);
        Ok(())
    }
}

/// Runs `options.warmup + 2 * options.steps` training steps of `config` on its data.
pub fn bench_train(config: &RunConfig, options: TrainBenchOptions) -> Result<TrainBench> {
    let device = options.device;
    let mut config = config.clone();
    config.data.pad_to_max_len = true;
    config.data.epochs = None;
    let tokenizer = load_tokenizer(&config.data.tokenizer)?;
    let (encoder, generator) = model_configs(&config, &tokenizer);
    let start = Start::Fresh {
        encoder: &encoder,
        generator: &generator,
    };
    let trainer = Trainer::new(&config, device, start, None)?;
    let seed = config.train.seed;
    let data = RankData::new(
        &config.data,
        &tokenizer,
        seed,
        1,
        &[0],
        &[Default::default()],
    )?;
    let steps = options.steps.max(1);
    let mut bench = Bench {
        data,
        trainer,
        needed: options.warmup + 2 * steps,
    };

    let mut ignored = Phases::default();
    for _ in 0..options.warmup {
        bench.step(&mut ignored)?;
    }
    sync(device);
    if let Device::Cuda(i) = device {
        cuda_peak_allocated(i, true)?;
    }
    let mut pass1 = Phases::default();
    let started = Instant::now();
    for _ in 0..steps {
        bench.step(&mut pass1)?;
    }
    sync(device);
    let seconds = started.elapsed().as_secs_f64().max(1e-9);
    let mut pass2 = Phases::default();
    for _ in 0..steps {
        bench.timed_step(&mut pass2)?;
    }
    let peak_memory_bytes = match device {
        Device::Cuda(i) => cuda_peak_allocated(i, false)?,
        _ => peak_rss_bytes(),
    };
    Ok(report(
        &config,
        &bench.trainer,
        steps,
        seconds,
        &pass1,
        &pass2,
        peak_memory_bytes,
    ))
}

/// The report of `steps` timed steps per pass.
fn report(
    config: &RunConfig,
    trainer: &Trainer,
    steps: u64,
    seconds: f64,
    pass1: &Phases,
    pass2: &Phases,
    peak_memory_bytes: u64,
) -> TrainBench {
    let (batch_size, seq_len) = (config.data.batch_size, config.data.max_seq_len);
    let n = steps as f64;
    let step_ms = seconds * 1e3 / n;
    let vs = trainer.var_store();
    let total_params = count_params(vs, "");
    let flops_per_step = trainer.flops_per_step();
    TrainBench {
        device: format!("{:?}", trainer.device()),
        precision: format!("{:?}", config.train.precision).to_lowercase(),
        torch_threads: tch::get_num_threads(),
        retained_heap: heap_retained(),
        objective: format!("{:?}", config.model.objective).to_lowercase(),
        encoder_params: total_params - trainer.objective().generator_params(vs),
        total_params,
        batch_size,
        seq_len,
        steps,
        tokens_per_sec: (batch_size * seq_len) as f64 * n / seconds,
        real_tokens_per_sec: pass1.real_tokens as f64 / seconds,
        step_ms,
        data_wait_ms: pass2.wait / n,
        copy_ms: pass2.copy / n,
        forward_ms: pass2.forward / n,
        backward_ms: pass2.backward / n,
        optimizer_ms: pass2.optimizer / n,
        data_wait_frac: pass2.wait / pass2.total().max(1e-9),
        peak_memory_bytes,
        flops_per_step,
        achieved_tflops: flops_per_step / (step_ms / 1e3) / 1e12,
    }
}

impl std::fmt::Display for TrainBench {
    /// The header line, then one right-aligned figure per row.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let heap = if self.retained_heap {
            ", heap retained"
        } else {
            ""
        };
        writeln!(
            f,
            "  {} {} {}: {:.2}M-parameter encoder ({:.2}M in all), batch {} x {}, {} torch threads{heap}",
            self.device,
            self.precision,
            self.objective,
            self.encoder_params as f64 / 1e6,
            self.total_params as f64 / 1e6,
            self.batch_size,
            self.seq_len,
            self.torch_threads,
        )?;
        let mut rows = Rows::new(f, 22);
        rows.row("tokens/s", format!("{:>12.0}", self.tokens_per_sec))?;
        rows.row(
            "real tokens/s",
            format!("{:>12.0}", self.real_tokens_per_sec),
        )?;
        rows.row("step ms", format!("{:>12.2}", self.step_ms))?;
        for (name, ms) in [
            ("  data wait ms", self.data_wait_ms),
            ("  copy ms", self.copy_ms),
            ("  forward ms", self.forward_ms),
            ("  backward ms", self.backward_ms),
            ("  optimizer ms", self.optimizer_ms),
        ] {
            rows.row(name, format!("{ms:>12.2}"))?;
        }
        rows.row(
            "data wait",
            format!("{:>11.2}%", 100.0 * self.data_wait_frac),
        )?;
        let memory = self.peak_memory_bytes as f64 / 1e6;
        rows.row("peak memory MB", format!("{memory:>12.1}"))?;
        rows.row("TFLOP/s", format!("{:>12.3}", self.achieved_tflops))
    }
}
