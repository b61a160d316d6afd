//! What is pre-trained. An [`Objective`] is the modules being trained, built in the run's
//! `VarStore`: it turns a batch into losses and statistics, and names the Hugging Face
//! folders of its weights. Its [`ObjectiveKind`] builds it (fresh, from a checkpoint or from
//! Hugging Face weights) and counts the FLOPs of a step.
//!
//! - [`electra`]: replaced-token detection with a generator, as in the paper;
//! - [`mlm`]: masked language modelling alone (BERT's recipe on ELECTRA's layout).
//!
//! A new objective is a new file implementing both traits, a variant of
//! [`config::Objective`] (its name in `model.objective`) and an arm in [`kind`].

pub mod electra;
pub mod mlm;

use std::path::Path;

use electra_model::ElectraConfig;
use electra_pipeline::{Batch, TextTokenizer};
use tch::{nn, Tensor};

use crate::config::{self, ModelSection, RunConfig};
use crate::device_batch::DeviceBatch;
use crate::error::Result;
use crate::flops::StepFlops;
use crate::hf_folders::{HfFolder, Layout};

/// The objective `model.objective` names: the one registry of objectives.
pub fn kind(objective: config::Objective) -> &'static dyn ObjectiveKind {
    match objective {
        config::Objective::Electra => &electra::ElectraKind,
        config::Objective::Mlm => &mlm::MlmKind,
    }
}

/// The encoder's (ELECTRA's discriminator's) and the generator's configs that a run config
/// and its tokenizer imply.
pub fn model_configs(
    config: &RunConfig,
    tokenizer: &TextTokenizer,
) -> (ElectraConfig, ElectraConfig) {
    let encoder = encoder_config(
        &config.model,
        tokenizer.vocab_size() as i64,
        i64::from(tokenizer.special().pad),
    );
    let generator = encoder.generator(config.model.generator_fraction);
    (encoder, generator)
}

/// The encoder's (discriminator's) Hugging Face config: `[model]`'s sizes for a vocabulary
/// of `vocab_size` tokens.
pub fn encoder_config(model: &ModelSection, vocab_size: i64, pad_token_id: i64) -> ElectraConfig {
    ElectraConfig {
        vocab_size,
        embedding_size: model.embedding_size,
        hidden_size: model.hidden_size,
        num_hidden_layers: model.num_hidden_layers,
        num_attention_heads: model.num_attention_heads,
        intermediate_size: model.intermediate_size,
        hidden_dropout_prob: model.hidden_dropout_prob,
        attention_probs_dropout_prob: model.attention_probs_dropout_prob,
        max_position_embeddings: model.max_position_embeddings,
        type_vocab_size: model.type_vocab_size,
        layer_norm_eps: model.layer_norm_eps,
        pad_token_id,
        ..ElectraConfig::small()
    }
}

/// Where an objective's weights come from.
#[derive(Debug, Clone, Copy)]
pub enum Start<'a> {
    /// Freshly initialised (from torch's current seed) with these sizes; objectives without
    /// a generator ignore its config.
    Fresh {
        /// The encoder that is kept after pre-training.
        encoder: &'a ElectraConfig,
        /// The generator.
        generator: &'a ElectraConfig,
    },
    /// A checkpoint folder: the sub-folders [`Objective::hf_folders`] names for
    /// [`Layout::Checkpoint`].
    Checkpoint(&'a Path),
    /// Hugging Face weights (`--init-from-hf`); the sizes come from their `config.json`.
    HuggingFace(&'a Path),
}

/// How to build an objective, and what a step of it costs.
pub trait ObjectiveKind: Sync {
    /// Builds the objective's modules in `vs` (at its root) from `start`.
    fn build(
        &self,
        vs: &nn::VarStore,
        config: &RunConfig,
        start: Start<'_>,
    ) -> Result<Box<dyn Objective>>;

    /// Training FLOPs of one step of `config` with these sizes (see [`crate::flops`]).
    fn step_flops(
        &self,
        config: &RunConfig,
        encoder: &ElectraConfig,
        generator: &ElectraConfig,
    ) -> StepFlops;
}

/// One batch as an objective sees it.
#[derive(Debug, Clone, Copy)]
pub struct ObjectiveInput<'a> {
    /// The host batch.
    pub batch: &'a Batch,
    /// Its tensors on the device.
    pub tensors: &'a DeviceBatch,
    /// `[rows]`: each row's index in the global batch (data parallel).
    pub global_rows: &'a [i64],
    /// The step's seed: torch is seeded with it before the forward pass, and random choices
    /// that must not depend on the rank's share of the batch hash it with `global_rows`.
    pub seed: i64,
}

/// What a forward pass gives: the losses by name, and counts for the metrics.
#[derive(Debug)]
pub struct Losses {
    /// The loss to minimise: `gen_weight * gen_loss + disc_weight * disc_loss`
    /// ([`Objective::loss_weights`]).
    pub loss: Tensor,
    /// The masked-LM loss, a mean over the masked positions.
    pub gen_loss: Tensor,
    /// The replaced-token-detection loss, a mean over real tokens (0 without one).
    pub disc_loss: Tensor,
    /// `[STATS_LEN]` float32 counts on the device
    /// ([`ElectraStats`](electra_model::ElectraStats)).
    pub stats: Tensor,
}

/// The weights of [`Losses::gen_loss`] and [`Losses::disc_loss`] in [`Losses::loss`]; data
/// parallel training rescales each to the global batch's counts and adds them again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossWeights {
    /// Weight of the masked-LM loss.
    pub gen: f64,
    /// Weight of the replaced-token-detection loss.
    pub disc: f64,
}

/// The modules being pre-trained.
pub trait Objective {
    /// The encoder kept after pre-training (the one users fine-tune).
    fn encoder_config(&self) -> &ElectraConfig;

    /// One forward pass over `input` (`train`: dropout on).
    fn forward(&self, input: &ObjectiveInput<'_>, train: bool) -> Result<Losses>;

    /// The weights of the two losses in the total.
    fn loss_weights(&self) -> LossWeights;

    /// The weights as Hugging Face folders in `layout`; the first is the encoder users
    /// fine-tune. `vs` is the store the objective was built in.
    fn hf_folders(&self, vs: &nn::VarStore, layout: Layout) -> Vec<HfFolder>;

    /// Training FLOPs of one step of `config` with this objective's sizes.
    fn step_flops(&self, config: &RunConfig) -> f64;

    /// Parameters of the generator, which pre-training throws away (0 without one).
    fn generator_params(&self, vs: &nn::VarStore) -> i64;
}

/// Parameters of the variables of `vs` whose names start with `prefix`.
pub(crate) fn count_params(vs: &nn::VarStore, prefix: &str) -> i64 {
    vs.variables()
        .iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(_, t)| t.numel() as i64)
        .sum()
}
