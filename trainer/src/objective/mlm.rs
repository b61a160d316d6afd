//! Masked language modelling alone: one encoder of the discriminator's size with the
//! generator's head, predicting the original tokens at the masked positions
//! ([`electra_model::MaskedLm`]; use `data.mask_strategy = "bert"` for 80/10/10).
//!
//! A checkpoint holds `masked_lm/`, an `ElectraForMaskedLM` folder; so is `final/`.

use electra_model::hf::HF_GENERATOR_ARCHITECTURE;
use electra_model::{ElectraConfig, MaskedLm};
use tch::nn;

use super::{LossWeights, Losses, Objective, ObjectiveInput, ObjectiveKind, Start};
use crate::config::RunConfig;
use crate::error::Result;
use crate::flops::{encoder_per_token, lm_head_per_masked, StepFlops, TRAIN_PASSES};
use crate::hf_folders::{HfFolder, Layout};

/// `architectures` of a masked-LM folder.
pub const MLM_ARCHITECTURE: &str = HF_GENERATOR_ARCHITECTURE;
/// Checkpoint sub-folder of a masked-LM model.
pub const MLM_DIR: &str = "masked_lm";

/// Builds [`MlmObjective`]s.
#[derive(Debug, Clone, Copy)]
pub struct MlmKind;

/// The masked language model.
#[derive(Debug)]
pub struct MlmObjective {
    model: MaskedLm,
}

impl ObjectiveKind for MlmKind {
    fn build(
        &self,
        vs: &nn::VarStore,
        _config: &RunConfig,
        start: Start<'_>,
    ) -> Result<Box<dyn Objective>> {
        let model = match start {
            Start::Fresh { encoder, .. } => MaskedLm::new(&vs.root(), encoder)?,
            Start::Checkpoint(dir) => MaskedLm::from_hf(vs, &dir.join(MLM_DIR))?,
            Start::HuggingFace(dir) => MaskedLm::from_hf(vs, dir)?,
        };
        Ok(Box::new(MlmObjective { model }))
    }

    fn step_flops(
        &self,
        config: &RunConfig,
        encoder: &ElectraConfig,
        _generator: &ElectraConfig,
    ) -> StepFlops {
        let seq = config.data.max_seq_len as f64;
        let tokens = config.data.batch_size as f64 * seq;
        let masked = tokens * config.data.mask_prob;
        StepFlops::new(
            TRAIN_PASSES * tokens * encoder_per_token(encoder, seq),
            0.0,
            TRAIN_PASSES * masked * lm_head_per_masked(encoder),
        )
    }
}

impl Objective for MlmObjective {
    fn encoder_config(&self) -> &ElectraConfig {
        self.model.config()
    }

    fn forward(&self, input: &ObjectiveInput<'_>, train: bool) -> Result<Losses> {
        let output = self.model.forward_t(&input.tensors.input(), train)?;
        Ok(Losses {
            loss: output.loss,
            gen_loss: output.gen_loss,
            disc_loss: output.disc_loss,
            stats: output.stats,
        })
    }

    /// The loss is the masked-LM loss alone.
    fn loss_weights(&self) -> LossWeights {
        LossWeights {
            gen: 1.0,
            disc: 0.0,
        }
    }

    fn hf_folders(&self, vs: &nn::VarStore, layout: Layout) -> Vec<HfFolder> {
        let dir = match layout {
            Layout::Checkpoint => MLM_DIR,
            Layout::Final => "",
        };
        vec![HfFolder::new(
            dir,
            self.model.config(),
            MLM_ARCHITECTURE,
            self.model.hf_tensors(vs),
        )]
    }

    fn step_flops(&self, config: &RunConfig) -> f64 {
        MlmKind
            .step_flops(config, self.model.config(), self.model.config())
            .total
    }

    fn generator_params(&self, _vs: &nn::VarStore) -> i64 {
        0
    }
}
