//! Hugging Face import: [`Electra::from_hf`] builds both models from `transformers` folders
//! (`config.json` + `model.safetensors`), as [`export_hf`](crate::hf::export_hf) writes
//! them or as `save_pretrained(safe_serialization=True)` does.
//!
//! 1. The discriminator folder's `config.json` gives the discriminator's sizes; a generator
//!    folder's gives the generator's, otherwise the generator is fresh:
//!    [`ElectraConfig::generator`] with the given width fraction, randomly initialised.
//! 2. Both models are built with [`Electra::new`] (shared embeddings, tied output layer).
//! 3. The discriminator's tensors are copied into the variables. A missing or unexpected
//!    tensor, or one of the wrong shape, is an error naming every such tensor
//!    (`electra.embeddings.position_ids`, which older checkpoints carry, is ignored).
//! 4. The generator's own tensors are copied; its copies of the shared embeddings (and
//!    `generator_lm_head.weight`, tied to the token embeddings; it may be absent, as
//!    `transformers` leaves tied weights out) must equal the discriminator's within
//!    [`SHARED_TOLERANCE`], as in Google's published pairs; otherwise the error names the
//!    tensor.
//!
//! Only `model.safetensors` is read (through the strict reader in
//! [`safetensors`]); a folder with only `pytorch_model.bin` or a sharded
//! checkpoint is an error that says so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;
use tch::{nn, Kind, Tensor};

use crate::config::ElectraConfig;
use crate::electra::Electra;
use crate::error::{ModelError, Result};
use crate::heads::LM_HEAD_WEIGHT;
use crate::hf::{HF_CONFIG_FILE, HF_WEIGHTS_FILE};
use crate::safetensors;

/// Largest absolute difference allowed between a generator folder's copy of a shared
/// tensor and the discriminator's.
pub const SHARED_TOLERANCE: f64 = 1e-5;
/// The buffer older Hugging Face checkpoints carry; ignored on import.
pub const POSITION_IDS: &str = "electra.embeddings.position_ids";

/// Where [`Electra::from_hf`] takes the generator from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HfGenerator<'a> {
    /// A Hugging Face `ElectraForMaskedLM` folder whose shared embeddings equal the
    /// discriminator's.
    Folder(&'a Path),
    /// A freshly initialised generator of width `round(width_fraction * hidden_size)` (see
    /// [`ElectraConfig::generator`]), for continuing pre-training from a discriminator alone.
    Fresh {
        /// The generator's width as a fraction of the discriminator's (0.25 for Small).
        width_fraction: f64,
    },
}

fn bad(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads a Hugging Face `config.json` into an [`ElectraConfig`]. Keys the file leaves out
/// take `transformers`' `ElectraConfig` defaults (which are ELECTRA-Small's); other keys
/// (`architectures`, `torch_dtype` ...) are ignored. Refuses a `model_type` other than
/// `electra` and a `position_embedding_type` other than `absolute`, and validates the sizes.
pub fn read_hf_config(dir: &Path) -> Result<ElectraConfig> {
    read_config(dir, false)
}

/// [`read_hf_config`]; for a generator (`tied`), also refuses `tie_word_embeddings: false`.
pub(crate) fn read_config(dir: &Path, tied: bool) -> Result<ElectraConfig> {
    let path = dir.join(HF_CONFIG_FILE);
    let bytes = std::fs::read(&path).map_err(ModelError::io(&path))?;
    let file: serde_json::Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|e| bad(&path, format!("not a JSON object: {e}")))?;
    if tied && file.get("tie_word_embeddings") == Some(&Value::Bool(false)) {
        return Err(bad(
            &path,
            "tie_word_embeddings is false; the generator's output layer must be tied to the \
             token embeddings",
        ));
    }
    for (key, expected) in [
        ("model_type", "electra"),
        ("position_embedding_type", "absolute"),
    ] {
        if let Some(found) = file.get(key) {
            if found.as_str() != Some(expected) {
                return Err(bad(
                    &path,
                    format!("{key} is {found}, only \"{expected}\" is supported"),
                ));
            }
        }
    }
    let mut merged =
        serde_json::to_value(ElectraConfig::small()).map_err(|e| bad(&path, e.to_string()))?;
    if let Some(defaults) = merged.as_object_mut() {
        defaults.extend(file);
    }
    let cfg: ElectraConfig = serde_json::from_value(merged)
        .map_err(|e| bad(&path, format!("not an ELECTRA config: {e}")))?;
    cfg.validate()?;
    Ok(cfg)
}

/// Reads `dir/model.safetensors` as a name -> tensor map, without `position_ids`.
pub(crate) fn read_hf_weights(
    dir: &Path,
) -> Result<(std::path::PathBuf, BTreeMap<String, Tensor>)> {
    let path = dir.join(HF_WEIGHTS_FILE);
    if !path.exists() {
        let message = if dir.join("model.safetensors.index.json").exists() {
            "not found; sharded checkpoints (model.safetensors.index.json) are not supported"
        } else if dir.join("pytorch_model.bin").exists() {
            "not found; only safetensors weights are read, and this folder has only \
             pytorch_model.bin (convert it: load with transformers and \
             save_pretrained(..., safe_serialization=True))"
        } else {
            "not found"
        };
        return Err(bad(&path, message));
    }
    let loaded = safetensors::load(&path)?;
    let tensors = loaded
        .tensors
        .into_iter()
        .filter(|(name, _)| name != POSITION_IDS)
        .collect();
    Ok((path, tensors))
}

/// Copies `loaded` into `targets` (detached views of variables), after checking that the
/// names match (apart from `optional` ones) and the shapes agree; every problem is listed.
/// Returns the names whose values were compared instead of copied (`compare_only`).
pub(crate) fn copy_weights(
    path: &Path,
    targets: &[(String, Tensor)],
    loaded: &BTreeMap<String, Tensor>,
    optional: &[&str],
    compare_only: &BTreeSet<&str>,
) -> Result<()> {
    let expected: BTreeSet<&str> = targets.iter().map(|(name, _)| name.as_str()).collect();
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|name| !loaded.contains_key(*name) && !optional.contains(name))
        .collect();
    let unexpected: Vec<&str> = loaded
        .keys()
        .map(String::as_str)
        .filter(|name| !expected.contains(name))
        .collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("missing tensors: {}", missing.join(", ")));
    }
    if !unexpected.is_empty() {
        problems.push(format!("unexpected tensors: {}", unexpected.join(", ")));
    }
    for (name, target) in targets {
        if let Some(source) = loaded.get(name) {
            if source.size() != target.size() {
                problems.push(format!(
                    "{name}: shape {:?} in the file, the config gives {:?}",
                    source.size(),
                    target.size()
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(bad(path, problems.join("; ")));
    }
    tch::no_grad(|| -> Result<()> {
        for (name, target) in targets {
            let Some(source) = loaded.get(name) else {
                continue;
            };
            if compare_only.contains(name.as_str()) {
                let difference = source
                    .f_to_device(target.device())?
                    .f_to_kind(Kind::Double)?
                    .f_sub(&target.f_to_kind(Kind::Double)?)?
                    .f_abs()?
                    .f_max()?
                    .f_double_value(&[])?;
                if difference.is_nan() || difference > SHARED_TOLERANCE {
                    return Err(bad(
                        path,
                        format!(
                            "{name} differs from the discriminator's shared tensor by up to \
                             {difference:e} (tolerance {SHARED_TOLERANCE:e}): the generator \
                             must share the discriminator's embeddings"
                        ),
                    ));
                }
            } else {
                let mut target = target.shallow_clone();
                target.f_copy_(source)?;
            }
        }
        Ok(())
    })
}

impl Electra {
    /// Builds both models at the root of `vs` from Hugging Face folders: the discriminator's
    /// (`ElectraForPreTraining`: `config.json`, `model.safetensors`) and, with
    /// [`HfGenerator::Folder`], the generator's (`ElectraForMaskedLM`), or a fresh
    /// generator. See the [module docs](crate::hf_import) for the checks.
    ///
    /// ```no_run
    /// # use electra_model::{Electra, hf_import::HfGenerator};
    /// # use std::path::Path;
    /// # fn main() -> electra_model::Result<()> {
    /// let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    /// let electra = Electra::from_hf(
    ///     &vs,
    ///     Path::new("export/discriminator"),
    ///     HfGenerator::Folder(Path::new("export/generator")),
    /// )?;
    /// # Ok(()) }
    /// ```
    pub fn from_hf(
        vs: &nn::VarStore,
        discriminator_dir: &Path,
        generator: HfGenerator<'_>,
    ) -> Result<Electra> {
        let disc = read_hf_config(discriminator_dir)?;
        let (gen, generator_dir) = match generator {
            HfGenerator::Folder(dir) => (read_config(dir, true)?, Some(dir)),
            HfGenerator::Fresh { width_fraction } => {
                let gen = disc.generator(width_fraction);
                gen.validate()?;
                (gen, None)
            }
        };
        let electra = Electra::new(&vs.root(), &disc, &gen)?;
        electra.load_hf_weights(vs, discriminator_dir, generator_dir)?;
        Ok(electra)
    }

    /// Copies the weights of Hugging Face folders into this model's variables (in `vs`): the
    /// discriminator's `model.safetensors` and, when given, the generator's. The sizes must
    /// be this model's (build it with [`read_hf_config`]'s configs, or use
    /// [`from_hf`](Self::from_hf)). On error the variables may be partly overwritten.
    pub fn load_hf_weights(
        &self,
        vs: &nn::VarStore,
        discriminator_dir: &Path,
        generator_dir: Option<&Path>,
    ) -> Result<()> {
        let (path, loaded) = read_hf_weights(discriminator_dir)?;
        copy_weights(
            &path,
            &self.hf_discriminator_tensors(vs),
            &loaded,
            &[],
            &BTreeSet::new(),
        )?;
        if let Some(dir) = generator_dir {
            let (path, loaded) = read_hf_weights(dir)?;
            let shared_tensors = self.hf_shared_tensors(vs);
            let shared: BTreeSet<&str> = shared_tensors.iter().map(|(n, _)| n.as_str()).collect();
            copy_weights(
                &path,
                &self.hf_generator_tensors(vs),
                &loaded,
                &[LM_HEAD_WEIGHT],
                &shared,
            )?;
        }
        Ok(())
    }
}

/// The tensors of `model.safetensors` in `dir`, by name (without `position_ids`); for
/// tests and tools that compare checkpoints.
pub fn read_hf_tensors(dir: &Path) -> Result<BTreeMap<String, Tensor>> {
    read_hf_weights(dir).map(|(_, tensors)| tensors)
}
