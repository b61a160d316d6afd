//! One seed's run: a fresh classifier whose encoder is the pre-trained one, trained for
//! `epochs` passes over the training set shuffled from the seed, then scored.

use std::time::Instant;

use electra_model::ElectraForSequenceClassification;
use electra_pipeline::rng::Rng;
use indicatif::{ProgressBar, ProgressStyle};
use tch::{nn, Kind, Tensor};

use super::data::{batch_tensors, shuffle, TaskData, SHUFFLE_STREAM};
use super::report::SeedResult;
use super::scoring::{loss, score};
use super::{invalid, layer_depth, layer_lr_scale, Context, FinetuneOptions, CLIP_NORM};
use crate::error::Result;
use crate::optim::{AdamW, AdamWConfig};
use crate::schedule::LinearSchedule;
use crate::task::Encoded;

/// A trained model and its variables.
pub(super) struct Trained {
    pub vs: nn::VarStore,
    pub model: ElectraForSequenceClassification,
    pub result: SeedResult,
}

/// Fine-tunes a fresh classifier with `seed` and scores it on dev (and test).
pub(super) fn run_seed(
    seed: u64,
    options: &FinetuneOptions,
    ctx: &Context,
    task: &TaskData,
) -> Result<Trained> {
    let started = Instant::now();
    tch::manual_seed(seed as i64);
    let vs = nn::VarStore::new(ctx.device);
    let num_outputs = task.labels.num_outputs() as i64;
    let model = ElectraForSequenceClassification::new(&vs.root(), &ctx.config, num_outputs)?;
    model.load_hf_encoder(&vs, &ctx.model_dir)?;
    let mut optimizer = optimizer(&vs, options, ctx.config.num_hidden_layers)?;
    let (train_loss, steps) = train(seed, options, ctx, task, &model, &mut optimizer)?;
    let num_classes = task.labels.num_outputs();
    let dev = score(&model, &task.dev, task.problem, num_classes, ctx)?;
    let test = task
        .test
        .as_ref()
        .map(|t| score(&model, t, task.problem, num_classes, ctx))
        .transpose()?;
    Ok(Trained {
        vs,
        model,
        result: SeedResult {
            seed,
            dev,
            test,
            train_loss,
            steps,
            seconds: started.elapsed().as_secs_f64(),
        },
    })
}

/// The fine-tuning recipe's AdamW over every variable of `vs` (beta 0.9/0.999, eps 1e-6,
/// bias correction), each parameter's rate scaled by its layer's decay.
fn optimizer(vs: &nn::VarStore, options: &FinetuneOptions, num_layers: i64) -> Result<AdamW> {
    let mut optimizer = AdamW::for_var_store(
        vs,
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-6,
            weight_decay: options.weight_decay,
            bias_correction: true,
        },
    );
    if let Some(name) = optimizer
        .names()
        .find(|name| layer_depth(name, num_layers).is_none())
    {
        return Err(invalid(
            "--layer-decay",
            format!("parameter {name} has no place in the layer stack"),
        ));
    }
    optimizer
        .set_lr_scales(|name| layer_lr_scale(name, num_layers, options.layer_decay).unwrap_or(1.0));
    Ok(optimizer)
}

/// `options.epochs` passes over the training set; returns the mean loss of the last epoch
/// and the updates made.
fn train(
    seed: u64,
    options: &FinetuneOptions,
    ctx: &Context,
    task: &TaskData,
    model: &ElectraForSequenceClassification,
    optimizer: &mut AdamW,
) -> Result<(f64, u64)> {
    let examples = &task.train.examples;
    let total_steps = options.total_steps(examples.len());
    let schedule = LinearSchedule::with_warmup_fraction(
        options.learning_rate,
        options.warmup_fraction,
        total_steps,
    );
    let bar = options.progress.then(|| progress_bar(seed, total_steps));
    let mut step = 0u64;
    let mut order: Vec<usize> = (0..examples.len()).collect();
    let mut epoch_loss = 0.0;
    for epoch in 0..options.epochs {
        order.sort_unstable();
        let mut rng = Rng::derive(seed, &[SHUFFLE_STREAM, u64::from(epoch)]);
        shuffle(&mut order, &mut rng);
        let mut losses = Vec::new();
        for chunk in order.chunks(options.batch_size) {
            let batch: Vec<&Encoded> = chunk.iter().map(|&i| &examples[i]).collect();
            let batch = batch_tensors(&batch, ctx.pad_id, ctx.max_seq_len, ctx.device);
            let outputs = model.forward_t(&batch.encoder_input(), true)?;
            let batch_loss = loss(&outputs, &batch.targets, task.problem)?;
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
    Ok((epoch_loss, step))
}

fn progress_bar(seed: u64, total_steps: u64) -> ProgressBar {
    let bar = ProgressBar::new(total_steps);
    if let Ok(style) = ProgressStyle::with_template(
        "seed {prefix} {bar:30} {pos}/{len} steps, {elapsed_precise} ({eta} left) {msg}",
    ) {
        bar.set_style(style);
    }
    bar.set_prefix(seed.to_string());
    bar
}
