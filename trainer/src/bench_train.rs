//! `electra bench train`: steady-state training throughput of a config, with the step
//! time split into data wait, forward, backward and optimizer, and peak memory.
//!
//! The step is the pre-training step (same model, optimizer, clipping and guard) fed by
//! the real pipeline from the config's `[data]`, every batch padded to `max_seq_len` so
//! each step processes `batch_size x max_seq_len` positions. Two passes follow the
//! warm-up:
//!
//! 1. **throughput**: `steps` steps with no host synchronisation inside them (on CUDA the
//!    device is synchronised once at each end), as a training run executes them;
//! 2. **breakdown**: `steps` more steps with the device synchronised after each phase, so
//!    the phases' times are the device's, not the launch queue's. On CPU every operation
//!    is synchronous and the two passes measure the same thing.

use std::time::Instant;

use serde::Serialize;
use tch::{nn, Device};

use crate::bench::peak_rss_bytes;
use crate::config::RunConfig;
use crate::device::{cuda_peak_allocated, heap_retained};
use crate::error::{Result, TrainError};
use crate::objective::Pretrainer;
use crate::schedule::LinearSchedule;
use crate::tokenizer::load_tokenizer;
use crate::train::{
    autocast, count_params, forward_options, model_configs, new_optimizer, step_seed, DeviceBatch,
};
use electra_pipeline::Loader;

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

/// Runs `options.warmup + 2 * options.steps` training steps of `config` on its data.
pub fn bench_train(config: &RunConfig, options: TrainBenchOptions) -> Result<TrainBench> {
    let device = options.device;
    let mut config = config.clone();
    config.data.pad_to_max_len = true;
    config.data.epochs = None;
    let tokenizer =
        load_tokenizer(&config.data.tokenizer)?.with_fast_path(config.data.fast_tokenizer);
    let (disc_cfg, gen_cfg) = model_configs(&config, &tokenizer);
    let t = &config.train;
    tch::manual_seed(step_seed(t.seed, u64::MAX));
    let vs = nn::VarStore::new(device);
    let objective = config.model.objective;
    let model = Pretrainer::new(&vs.root(), objective, &disc_cfg, &gen_cfg)?;
    let mut optimizer = new_optimizer(&vs, t);
    let forward = forward_options(&config);
    let schedule = LinearSchedule {
        peak: t.learning_rate,
        warmup_steps: t.warmup_steps,
        total_steps: t.total_steps,
    };
    let flops_per_step = model.step_flops(&config);
    let total_params = count_params(&vs, "");
    let encoder_params = total_params - count_params(&vs, "generator.");
    let mut loader = Loader::new(&config.data, tokenizer, t.seed)?;
    let (batch_size, seq_len) = (config.data.batch_size, config.data.max_seq_len);

    #[derive(Default)]
    struct Phases {
        wait: f64,
        copy: f64,
        forward: f64,
        backward: f64,
        optimizer: f64,
        real_tokens: u64,
    }
    let mut step_no = 0u64;
    let mut run = |timed_phases: bool, phases: &mut Phases| -> Result<()> {
        let mut clock = Instant::now();
        let batch = loader.next().ok_or(TrainError::DataExhausted {
            batches: step_no,
            needed: options.warmup + 2 * options.steps,
        })??;
        if timed_phases {
            phases.wait += lap(device, &mut clock);
        }
        phases.real_tokens += batch.real_tokens as u64;
        let device_batch = DeviceBatch::new(&batch, device);
        if timed_phases {
            phases.copy += lap(device, &mut clock);
        }
        tch::manual_seed(step_seed(t.seed, step_no));
        let output = {
            let _autocast = autocast(t.precision, device)?;
            model.forward_t(&device_batch.input(), &forward, true)?
        };
        if timed_phases {
            phases.forward += lap(device, &mut clock);
        }
        optimizer.zero_grad();
        output.loss.backward();
        if timed_phases {
            phases.backward += lap(device, &mut clock);
        }
        let grad_norm = optimizer.clip_grad_norm(t.clip_grad_norm);
        let ok = output.loss.isfinite().logical_and(&grad_norm.isfinite());
        optimizer.step_if(schedule.lr(step_no), &ok);
        if timed_phases {
            phases.optimizer += lap(device, &mut clock);
        }
        step_no += 1;
        Ok(())
    };

    let mut ignored = Phases::default();
    for _ in 0..options.warmup {
        run(false, &mut ignored)?;
    }
    sync(device);
    if let Device::Cuda(i) = device {
        cuda_peak_allocated(i, true)?;
    }
    let steps = options.steps.max(1);
    let mut pass1 = Phases::default();
    let started = Instant::now();
    for _ in 0..steps {
        run(false, &mut pass1)?;
    }
    sync(device);
    let seconds = started.elapsed().as_secs_f64().max(1e-9);
    let mut pass2 = Phases::default();
    for _ in 0..steps {
        run(true, &mut pass2)?;
    }
    let n = steps as f64;
    let step_ms = seconds * 1e3 / n;
    let phased_ms =
        (pass2.wait + pass2.copy + pass2.forward + pass2.backward + pass2.optimizer).max(1e-9);
    let peak_memory_bytes = match device {
        Device::Cuda(i) => cuda_peak_allocated(i, false)?,
        _ => peak_rss_bytes(),
    };
    Ok(TrainBench {
        device: format!("{device:?}"),
        precision: format!("{:?}", t.precision).to_lowercase(),
        torch_threads: tch::get_num_threads(),
        retained_heap: heap_retained(),
        objective: format!("{objective:?}").to_lowercase(),
        encoder_params,
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
        data_wait_frac: pass2.wait / phased_ms,
        peak_memory_bytes,
        flops_per_step,
        achieved_tflops: flops_per_step / (step_ms / 1e3) / 1e12,
    })
}
