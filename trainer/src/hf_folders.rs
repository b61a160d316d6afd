//! Weights as Hugging Face folders (`config.json`, `model.safetensors` and the tokenizer
//! files), as checkpoints, `final/` and fine-tuned models hold them. What goes in which
//! sub-folder is the caller's ([`Objective::hf_folders`](crate::objective::Objective)).

use std::path::{Path, PathBuf};

use electra_model::hf::{save_hf_folder, HfTokenizerFiles};
use electra_model::hf_config::config_json;
use electra_model::ElectraConfig;
use serde_json::Value;
use tch::Tensor;

use crate::error::{Result, TrainError};

/// Where [`Objective::hf_folders`](crate::objective::Objective) puts each model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Inside a checkpoint: each model in a sub-folder named for it.
    Checkpoint,
    /// `final/`: the model users fine-tune is the folder itself
    /// (`ElectraForPreTraining.from_pretrained("RUN/final")` works as it is).
    Final,
}

/// One Hugging Face model folder.
#[derive(Debug)]
pub struct HfFolder {
    /// The folder, relative to where the set is written (empty: that folder itself).
    pub dir: PathBuf,
    /// The model's sizes (the tokenizer's `model_max_length` is its
    /// `max_position_embeddings`).
    pub config: ElectraConfig,
    /// Its `config.json`.
    pub config_json: Value,
    /// Tensors with Hugging Face names.
    pub tensors: Vec<(String, Tensor)>,
}

impl HfFolder {
    /// A folder whose `config.json` is `config` with `architectures: [architecture]`.
    pub fn new(
        dir: impl Into<PathBuf>,
        config: &ElectraConfig,
        architecture: &str,
        tensors: Vec<(String, Tensor)>,
    ) -> Self {
        Self {
            dir: dir.into(),
            config: config.clone(),
            config_json: config_json(config, architecture),
            tensors,
        }
    }
}

/// Writes `folders` under `root`, each with the tokenizer files of `tokenizer_json`.
pub fn write_hf_folders(root: &Path, folders: &[HfFolder], tokenizer_json: &Path) -> Result<()> {
    if folders.is_empty() {
        return Err(TrainError::InvalidConfig {
            field: "model".into(),
            reason: "no weights to write".into(),
        });
    }
    let tokenizer = HfTokenizerFiles::read(tokenizer_json)?;
    for folder in folders {
        let dir = root.join(&folder.dir);
        save_hf_folder(&dir, &folder.config_json, &folder.tensors)?;
        tokenizer.write(&dir, folder.config.max_position_embeddings)?;
    }
    Ok(())
}
