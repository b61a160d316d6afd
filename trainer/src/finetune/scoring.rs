//! Scoring: the fine-tuning loss, and a split's scores ([`crate::scores`]) with the model in
//! eval mode.

use electra_model::{ElectraForSequenceClassification, ProblemType};
use tch::{Device, Kind, Reduction, Tensor};

use super::data::{batch_tensors, Split};
use super::Context;
use crate::error::Result;
use crate::scores::Scores;
use crate::task::{Encoded, Target};

/// Mean loss of `outputs` `[b, num_labels]`: cross-entropy for classes, MSE for values.
pub(super) fn loss(outputs: &Tensor, targets: &Tensor, problem: ProblemType) -> Result<Tensor> {
    Ok(match problem {
        ProblemType::Regression => outputs
            .f_squeeze_dim(-1)?
            .f_mse_loss(targets, Reduction::Mean)?,
        _ => outputs.f_cross_entropy_loss::<Tensor>(targets, None, Reduction::Mean, -100, 0.0)?,
    })
}

/// Scores `split` with the model in eval mode, in length order (less padding).
pub(super) fn score(
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
    let mut scores = scores_of(split, &outputs, outputs_per_example, problem, num_classes);
    scores.loss = (!split.examples.is_empty()).then(|| loss_sum / split.examples.len() as f64);
    Ok(scores)
}

/// The scores of `outputs` (`per_example` numbers for each example of `split`, in order):
/// correlations for regression, accuracy and F1 of the argmax class otherwise.
fn scores_of(
    split: &Split,
    outputs: &[f32],
    per_example: usize,
    problem: ProblemType,
    num_classes: usize,
) -> Scores {
    match problem {
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
            let predicted: Vec<usize> = outputs.chunks(per_example).map(argmax).collect();
            Scores::classification(&gold, &predicted, num_classes)
        }
    }
}

/// The index of the largest value (the first on a tie; 0 when none is above minus
/// infinity).
fn argmax(row: &[f32]) -> usize {
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
}
