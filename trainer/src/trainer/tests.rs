//! The trainer on synthetic batches: seeds, phases, evaluation.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use electra_model::{ElectraConfig, Sampler};
use electra_pipeline::{BadRecordCounts, Batch, DataCursor};
use tch::{Device, Tensor};

use super::*;
use crate::config::Objective as ObjectiveName;
use crate::parallel::RankBatch;

/// Torch's generator is global: tests that train take this lock.
fn rng_lock() -> MutexGuard<'static, ()> {
    static RNG: Mutex<()> = Mutex::new(());
    RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

const VOCAB: i64 = 64;

fn tiny_config(objective: ObjectiveName) -> RunConfig {
    let mut config = RunConfig::default();
    let m = &mut config.model;
    m.objective = objective;
    m.embedding_size = 16;
    m.hidden_size = 32;
    m.num_hidden_layers = 1;
    m.num_attention_heads = 2;
    m.intermediate_size = 64;
    m.generator_fraction = 0.5;
    m.max_position_embeddings = 32;
    m.sampler = Sampler::InverseCdf;
    config.train.warmup_steps = 0;
    config.train.total_steps = 100;
    config.train.learning_rate = 1e-2;
    config
}

fn trainer(config: &RunConfig) -> Trainer {
    let encoder: ElectraConfig = config.model.discriminator(VOCAB, 0);
    let generator = encoder.generator(config.model.generator_fraction);
    let start = Start::Fresh {
        encoder: &encoder,
        generator: &generator,
    };
    Trainer::new(config, Device::Cpu, start, None).unwrap()
}

/// Four rows of 12 tokens (the last two of row 3 padding), 3 masked positions per row.
fn batch(seed: i64) -> Batch {
    let (rows, seq) = (4usize, 12usize);
    let mut input_ids = Vec::new();
    let mut attention_mask = Vec::new();
    let (mut masked_positions, mut masked_labels) = (Vec::new(), Vec::new());
    for r in 0..rows {
        for p in 0..seq {
            let real = !(r == 3 && p >= 10);
            let token = 5 + (seed * 7 + (r * seq + p) as i64 * 13) % (VOCAB - 5);
            input_ids.push(if real { token } else { 0 });
            attention_mask.push(i64::from(real));
            if real && p % 4 == 1 {
                masked_positions.push((r * seq + p) as i64);
                masked_labels.push(token);
            }
        }
    }
    for &p in &masked_positions {
        input_ids[p as usize] = 4; // [MASK]
    }
    Batch {
        seq_no: 0,
        epoch: 0,
        batch_size: rows,
        seq_len: seq,
        real_tokens: attention_mask.iter().filter(|&&m| m == 1).count(),
        segment_ids: vec![0; rows * seq],
        input_ids,
        attention_mask,
        masked_positions,
        masked_labels,
        example_ids: (0..rows as u32).map(|r| (seed as u64, r)).collect(),
        bad_records: BadRecordCounts::default(),
        cursor: DataCursor::default(),
        example_sources: Vec::new(),
    }
}

fn rank_batch(seed: i64) -> RankBatch {
    let batch = batch(seed);
    RankBatch {
        global_rows: (0..batch.batch_size as i64).collect(),
        cursors: vec![(0, batch.cursor.clone())],
        batch,
        data_wait: Duration::ZERO,
    }
}

/// Every variable and optimizer moment, by name, copied.
fn snapshot(trainer: &Trainer) -> BTreeMap<String, Tensor> {
    let mut all: BTreeMap<String, Tensor> = trainer
        .var_store()
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.detach().copy()))
        .collect();
    for (name, tensor) in trainer.optimizer.state_tensors() {
        all.insert(name, tensor.copy());
    }
    for (name, tensor) in trainer.window.named_tensors() {
        all.insert(name, tensor.copy());
    }
    all
}

fn assert_same(a: &BTreeMap<String, Tensor>, b: &BTreeMap<String, Tensor>) {
    assert_eq!(a.len(), b.len());
    for (name, tensor) in a {
        assert!(tensor.equal(&b[name]), "{name} differs");
    }
}

#[test]
fn step_seeds_differ_per_step_and_are_stable() {
    assert_eq!(step_seed(42, 7), step_seed(42, 7));
    assert_ne!(step_seed(42, 7), step_seed(42, 8));
    assert_ne!(step_seed(42, 7), step_seed(43, 7));
    assert!(step_seed(u64::MAX, u64::MAX) >= 0);
}

#[test]
fn the_phases_run_in_sequence_are_the_step() {
    let _rng = rng_lock();
    let config = tiny_config(ObjectiveName::Electra);
    let batches = [rank_batch(1), rank_batch(2)];
    let fresh = snapshot(&trainer(&config));
    let mut whole = trainer(&config);
    for b in &batches {
        whole.step(b).unwrap();
    }
    let mut phased = trainer(&config);
    for b in &batches {
        let uploaded = phased.upload(b);
        let forwarded = phased.forward(uploaded).unwrap();
        let backwarded = phased.backward(forwarded).unwrap();
        let report = phased.update(backwarded).unwrap();
        assert!(bool::try_from(&report.accepted).unwrap());
    }
    assert_eq!(whole.steps_done(), 2);
    assert_eq!(phased.steps_done(), 2);
    assert_same(&snapshot(&whole), &snapshot(&phased));
    let name = "discriminator.discriminator_predictions.dense.weight";
    assert!(
        !snapshot(&whole)[name].equal(&fresh[name]),
        "the steps moved the weights"
    );
}

#[test]
fn evaluation_changes_nothing_and_repeats_exactly() {
    let _rng = rng_lock();
    let config = tiny_config(ObjectiveName::Electra);
    let held_out = [batch(10), batch(11)];

    let mut evaluated = trainer(&config);
    evaluated.step(&rank_batch(1)).unwrap();
    let before = snapshot(&evaluated);
    let first = evaluated.evaluate(&held_out).unwrap();
    let second = evaluated.evaluate(&held_out).unwrap();
    assert_eq!(first, second, "the same batches give the same report");
    assert_same(&before, &snapshot(&evaluated));
    assert_eq!(evaluated.steps_done(), 1);
    assert_eq!(first.batches, 2);
    assert!(first.gen_loss > 0.0 && first.disc_loss > 0.0, "{first:?}");
    for share in [first.gen_acc, first.disc_acc, first.replaced_frac] {
        assert!((0.0..=1.0).contains(&share), "{first:?}");
    }
    let total =
        first.gen_loss * config.model.gen_weight + first.disc_loss * config.model.disc_weight;
    assert!((first.loss - total).abs() < 1e-3 * total, "{first:?}");
    evaluated.step(&rank_batch(2)).unwrap();

    // Training around an evaluation gives the weights training without one gives.
    let mut plain = trainer(&config);
    plain.step(&rank_batch(1)).unwrap();
    plain.step(&rank_batch(2)).unwrap();
    assert_same(&snapshot(&plain), &snapshot(&evaluated));
}

#[test]
fn masked_lm_evaluation_has_no_discriminator_loss() {
    let _rng = rng_lock();
    let config = tiny_config(ObjectiveName::Mlm);
    let trainer = trainer(&config);
    let report = trainer.evaluate(&[batch(3)]).unwrap();
    assert_eq!(report.disc_loss, 0.0);
    assert!(report.gen_loss > 0.0);
    assert!((report.loss - report.gen_loss).abs() < 1e-6, "{report:?}");
    assert_eq!(trainer.objective().generator_params(trainer.var_store()), 0);
}
