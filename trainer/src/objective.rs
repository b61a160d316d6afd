//! The pre-training objectives the trainer runs on the same pipeline: ELECTRA (generator +
//! discriminator, [`Electra`]) and plain masked language modelling ([`MaskedLm`]). This is
//! the only place the trainer tells them apart: building, the forward pass, and which
//! Hugging Face folders a checkpoint and the final weights consist of.

use std::path::Path;

use electra_model::hf::{self, HfTokenizerFiles};
use electra_model::hf_import::HfGenerator;
use electra_model::{
    Electra, ElectraConfig, ElectraInput, ElectraOptions, ElectraOutput, MaskedLm,
};
use tch::{nn, Tensor};

use crate::config::{Objective, RunConfig};
use crate::error::{Result, TrainError};
use crate::flops::step_flops;

/// `architectures` of a masked-LM folder.
pub const MLM_ARCHITECTURE: &str = "ElectraForMaskedLM";
/// Checkpoint sub-folder of a masked-LM model.
pub const MLM_DIR: &str = "masked_lm";

/// The model being pre-trained (built once per run, so the variants' sizes do not matter).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Pretrainer {
    /// Replaced-token detection with a generator.
    Electra(Electra),
    /// Masked language modelling.
    Mlm(MaskedLm),
}

/// One Hugging Face folder of a model: its sub-folder name, config, architecture and
/// tensors.
#[derive(Debug)]
pub struct HfFolder {
    /// Sub-folder in a checkpoint.
    pub name: &'static str,
    /// Its config.
    pub config: ElectraConfig,
    /// `architectures[0]` of its `config.json`.
    pub architecture: &'static str,
    /// Tensors with Hugging Face names.
    pub tensors: Vec<(String, Tensor)>,
}

impl Pretrainer {
    /// A fresh model: `disc` is the encoder's config, `gen` the generator's (ELECTRA only).
    pub fn new(
        p: &nn::Path,
        objective: Objective,
        disc: &ElectraConfig,
        gen: &ElectraConfig,
    ) -> Result<Self> {
        Ok(match objective {
            Objective::Electra => Self::Electra(Electra::new(p, disc, gen)?),
            Objective::Mlm => Self::Mlm(MaskedLm::new(p, disc)?),
        })
    }

    /// The model stored in a checkpoint folder (its Hugging Face sub-folders).
    pub fn from_checkpoint(vs: &nn::VarStore, objective: Objective, dir: &Path) -> Result<Self> {
        Ok(match objective {
            Objective::Electra => Self::Electra(Electra::from_hf(
                vs,
                &dir.join(hf::HF_DISCRIMINATOR_DIR),
                HfGenerator::Folder(&dir.join(hf::HF_GENERATOR_DIR)),
            )?),
            Objective::Mlm => Self::Mlm(MaskedLm::from_hf(vs, &dir.join(MLM_DIR))?),
        })
    }

    /// Starts from Hugging Face weights: for ELECTRA a folder with `discriminator/` and
    /// `generator/` or a discriminator alone (a fresh generator of
    /// `model.generator_fraction`); for MLM an `ElectraForMaskedLM` folder.
    pub fn from_hf(vs: &nn::VarStore, config: &RunConfig, dir: &Path) -> Result<Self> {
        if config.model.objective == Objective::Mlm {
            return Ok(Self::Mlm(MaskedLm::from_hf(vs, dir)?));
        }
        let (disc_dir, gen_dir) = if dir.join(hf::HF_DISCRIMINATOR_DIR).is_dir() {
            (
                dir.join(hf::HF_DISCRIMINATOR_DIR),
                Some(dir.join(hf::HF_GENERATOR_DIR)).filter(|g| g.is_dir()),
            )
        } else {
            (
                dir.to_path_buf(),
                Some(dir.join("generator")).filter(|g| g.is_dir()),
            )
        };
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
        Ok(Self::Electra(model))
    }

    /// The encoder kept after pre-training (ELECTRA's discriminator, or the MLM encoder).
    pub fn encoder_config(&self) -> &ElectraConfig {
        match self {
            Self::Electra(m) => m.discriminator_config(),
            Self::Mlm(m) => m.config(),
        }
    }

    /// One training forward pass.
    pub fn forward_t(
        &self,
        input: &ElectraInput,
        options: &ElectraOptions,
        train: bool,
    ) -> Result<ElectraOutput> {
        self.forward_with(input, options, train, None)
    }

    /// One training forward pass with the sampler's uniform numbers given (ELECTRA's
    /// inverse-CDF sampler; see [`Electra::forward_with`]).
    pub fn forward_with(
        &self,
        input: &ElectraInput,
        options: &ElectraOptions,
        train: bool,
        uniforms: Option<&Tensor>,
    ) -> Result<ElectraOutput> {
        Ok(match self {
            Self::Electra(m) => m.forward_with(input, options, train, uniforms)?,
            Self::Mlm(m) => m.forward_t(input, train)?,
        })
    }

    /// Training FLOPs of one step of `config` with this model (see [`crate::flops`]).
    pub fn step_flops(&self, config: &RunConfig) -> f64 {
        match self {
            Self::Electra(m) => {
                step_flops(config, m.discriminator_config(), m.generator_config()).total
            }
            Self::Mlm(m) => step_flops(config, m.config(), m.config()).total,
        }
    }

    /// `(generator, discriminator)` weights of the total loss: the options' for ELECTRA,
    /// `(1, 0)` for MLM, whose loss is its masked-LM loss.
    pub fn loss_weights(&self, options: &ElectraOptions) -> (f64, f64) {
        match self {
            Self::Electra(_) => (options.gen_weight, options.disc_weight),
            Self::Mlm(_) => (1.0, 0.0),
        }
    }

    /// The model as Hugging Face folders; the first is the encoder users fine-tune.
    pub fn hf_folders(&self, vs: &nn::VarStore) -> Vec<HfFolder> {
        match self {
            Self::Electra(m) => vec![
                HfFolder {
                    name: hf::HF_DISCRIMINATOR_DIR,
                    config: m.discriminator_config().clone(),
                    architecture: hf::HF_DISCRIMINATOR_ARCHITECTURE,
                    tensors: m.hf_discriminator_tensors(vs),
                },
                HfFolder {
                    name: hf::HF_GENERATOR_DIR,
                    config: m.generator_config().clone(),
                    architecture: hf::HF_GENERATOR_ARCHITECTURE,
                    tensors: m.hf_generator_tensors(vs),
                },
            ],
            Self::Mlm(m) => vec![HfFolder {
                name: MLM_DIR,
                config: m.config().clone(),
                architecture: MLM_ARCHITECTURE,
                tensors: m.hf_tensors(vs),
            }],
        }
    }
}

/// Where [`write_hf_folders`] puts each folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Each folder under `root/<name>` (checkpoints, `export-hf`).
    Named,
    /// The first folder is `root` itself, the others `root/generator` (`final/`:
    /// `ElectraForPreTraining.from_pretrained("RUN/final")` works as it is).
    Final,
}

/// Writes `folders` under `root` with the tokenizer files in each.
pub fn write_hf_folders(
    root: &Path,
    folders: &[HfFolder],
    tokenizer_json: &Path,
    layout: Layout,
) -> Result<()> {
    if folders.is_empty() {
        return Err(TrainError::InvalidConfig {
            field: "model".into(),
            reason: "no weights to write".into(),
        });
    }
    let tokenizer = HfTokenizerFiles::read(tokenizer_json)?;
    for (i, folder) in folders.iter().enumerate() {
        let dir = match (layout, i) {
            (Layout::Final, 0) => root.to_path_buf(),
            (Layout::Final, _) => root.join("generator"),
            (Layout::Named, _) => root.join(folder.name),
        };
        hf::save_hf_model(&dir, &folder.config, folder.architecture, &folder.tensors)?;
        tokenizer.write(&dir, folder.config.max_position_embeddings)?;
    }
    Ok(())
}
