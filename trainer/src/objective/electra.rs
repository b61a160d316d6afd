//! ELECTRA: a small generator fills the masked positions with samples and the
//! discriminator learns which tokens were replaced ([`electra_model::Electra`]).
//!
//! A checkpoint holds `discriminator/` (`ElectraForPreTraining`) and `generator/`
//! (`ElectraForMaskedLM`); `final/` is the discriminator's folder with the generator's in
//! `final/generator/`.

use std::path::Path;

use electra_model::electra::GENERATOR_PREFIX;
use electra_model::hf::{
    HF_DISCRIMINATOR_ARCHITECTURE, HF_DISCRIMINATOR_DIR, HF_GENERATOR_ARCHITECTURE,
    HF_GENERATOR_DIR,
};
use electra_model::hf_import::HfGenerator;
use electra_model::{Electra, ElectraConfig, ElectraOptions, Sampler};
use electra_pipeline::Batch;
use tch::{nn, Device, Tensor};

use super::{count_params, LossWeights, Losses, Objective, ObjectiveInput, ObjectiveKind, Start};
use crate::config::{self, RunConfig};
use crate::device_batch::upload;
use crate::error::Result;
use crate::flops::{encoder_per_token, lm_head_per_masked, StepFlops, TRAIN_PASSES};
use crate::hf_folders::{HfFolder, Layout};

/// Builds [`ElectraObjective`]s.
#[derive(Debug, Clone, Copy)]
pub struct ElectraKind;

/// Generator and discriminator, and the forward pass's options from `[model]`.
#[derive(Debug)]
pub struct ElectraObjective {
    model: Electra,
    options: ElectraOptions,
}

/// The forward pass's options from `[model]`.
pub fn forward_options(config: &RunConfig) -> ElectraOptions {
    ElectraOptions {
        temperature: config.model.temperature,
        disallow_correct: config.model.disallow_correct,
        gen_weight: config.model.gen_weight,
        disc_weight: config.model.disc_weight,
        sampler: match config.model.sampler {
            config::Sampler::Gumbel => Sampler::Gumbel,
            config::Sampler::InverseCdf => Sampler::InverseCdf,
        },
    }
}

impl ObjectiveKind for ElectraKind {
    fn build(
        &self,
        vs: &nn::VarStore,
        config: &RunConfig,
        start: Start<'_>,
    ) -> Result<Box<dyn Objective>> {
        let model = match start {
            Start::Fresh { encoder, generator } => Electra::new(&vs.root(), encoder, generator)?,
            Start::Checkpoint(dir) => Electra::from_hf(
                vs,
                &dir.join(HF_DISCRIMINATOR_DIR),
                HfGenerator::Folder(&dir.join(HF_GENERATOR_DIR)),
            )?,
            Start::HuggingFace(dir) => from_hf(vs, config, dir)?,
        };
        Ok(Box::new(ElectraObjective {
            model,
            options: forward_options(config),
        }))
    }

    fn step_flops(
        &self,
        config: &RunConfig,
        encoder: &ElectraConfig,
        generator: &ElectraConfig,
    ) -> StepFlops {
        let seq = config.data.max_seq_len as f64;
        let tokens = config.data.batch_size as f64 * seq;
        let masked = tokens * config.data.mask_prob;
        let h = encoder.hidden_size as f64;
        let encoder_flops = TRAIN_PASSES * tokens * encoder_per_token(encoder, seq);
        let generator_flops = TRAIN_PASSES * tokens * encoder_per_token(generator, seq);
        let heads = TRAIN_PASSES
            * (masked * lm_head_per_masked(generator) + tokens * (2.0 * h * h + 2.0 * h));
        StepFlops::new(encoder_flops, generator_flops, heads)
    }
}

/// A Hugging Face folder with `discriminator/` and `generator/`, or a discriminator folder
/// alone (with its generator in `generator/` when there is one, else a fresh generator of
/// `model.generator_fraction`).
fn from_hf(vs: &nn::VarStore, config: &RunConfig, dir: &Path) -> Result<Electra> {
    let (disc_dir, gen_dir) = if dir.join(HF_DISCRIMINATOR_DIR).is_dir() {
        (dir.join(HF_DISCRIMINATOR_DIR), dir.join(HF_GENERATOR_DIR))
    } else {
        (dir.to_path_buf(), dir.join(HF_GENERATOR_DIR))
    };
    let gen_dir = Some(gen_dir).filter(|g| g.is_dir());
    let generator = match &gen_dir {
        Some(g) => HfGenerator::Folder(g),
        None => HfGenerator::Fresh {
            width_fraction: config.model.generator_fraction,
        },
    };
    let model = Electra::from_hf(vs, &disc_dir, generator)?;
    tracing::info!(
        discriminator = %disc_dir.display(),
        generator = %gen_dir.as_ref().map_or("fresh".to_string(), |g| g.display().to_string()),
        "initialised from Hugging Face weights"
    );
    Ok(model)
}

impl Objective for ElectraObjective {
    fn encoder_config(&self) -> &ElectraConfig {
        self.model.discriminator_config()
    }

    fn forward(&self, input: &ObjectiveInput<'_>, train: bool) -> Result<Losses> {
        let uniforms = match self.options.sampler {
            Sampler::InverseCdf => Some(sample_uniforms(
                input.batch,
                input.global_rows,
                input.seed,
                input.tensors.input().input_ids.device(),
            )?),
            Sampler::Gumbel => None,
        };
        let output = self.model.forward_with(
            &input.tensors.input(),
            &self.options,
            train,
            uniforms.as_ref(),
        )?;
        Ok(Losses {
            loss: output.loss,
            gen_loss: output.gen_loss,
            disc_loss: output.disc_loss,
            stats: output.stats,
        })
    }

    fn loss_weights(&self) -> LossWeights {
        LossWeights {
            gen: self.options.gen_weight,
            disc: self.options.disc_weight,
        }
    }

    fn hf_folders(&self, vs: &nn::VarStore, layout: Layout) -> Vec<HfFolder> {
        let discriminator_dir = match layout {
            Layout::Checkpoint => HF_DISCRIMINATOR_DIR,
            Layout::Final => "",
        };
        vec![
            HfFolder::new(
                discriminator_dir,
                self.model.discriminator_config(),
                HF_DISCRIMINATOR_ARCHITECTURE,
                self.model.hf_discriminator_tensors(vs),
            ),
            HfFolder::new(
                HF_GENERATOR_DIR,
                self.model.generator_config(),
                HF_GENERATOR_ARCHITECTURE,
                self.model.hf_generator_tensors(vs),
            ),
        ]
    }

    fn step_flops(&self, config: &RunConfig) -> f64 {
        ElectraKind
            .step_flops(
                config,
                self.model.discriminator_config(),
                self.model.generator_config(),
            )
            .total
    }

    fn generator_params(&self, vs: &nn::VarStore) -> i64 {
        count_params(
            vs,
            &format!("{}{GENERATOR_PREFIX}.", self.model.var_prefix()),
        )
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
