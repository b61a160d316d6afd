//! `export-hf`: the ELECTRA weights of a run, a checkpoint or a `final/` folder written as
//! the two Hugging Face folders users load (`discriminator/`, `generator/`).

use std::fmt;
use std::path::{Path, PathBuf};

use electra_model::hf::{export_hf, HF_DISCRIMINATOR_DIR, HF_GENERATOR_DIR, HF_WEIGHTS_FILE};
use electra_model::hf_import::HfGenerator;
use electra_model::Electra;

use crate::checkpoint;
use crate::error::{Result, TrainError};
use crate::run_dir::{RunDir, TOKENIZER_FILE};

/// What `export-hf` wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportReport {
    /// The output folder, holding `discriminator/` and `generator/`.
    pub out: PathBuf,
    /// The discriminator folder the weights came from.
    pub from: PathBuf,
}

/// The discriminator and generator folders `given` names: a checkpoint folder (verified
/// against its `SHA256SUMS` first), a run folder (its `final/`, else its newest complete
/// checkpoint), or a `final/` folder.
pub fn weights_of(given: &Path) -> Result<(PathBuf, PathBuf)> {
    let run = RunDir::new(given);
    let (disc, generator) = if given.join(checkpoint::STATE_FILE).is_file() {
        checkpoint::verify(given)?;
        (
            given.join(HF_DISCRIMINATOR_DIR),
            given.join(HF_GENERATOR_DIR),
        )
    } else if run.final_dir().is_dir() {
        (run.final_dir(), run.final_dir().join(HF_GENERATOR_DIR))
    } else if run.checkpoints().is_dir() {
        let found = checkpoint::find_latest(given)?;
        (
            found.dir.join(HF_DISCRIMINATOR_DIR),
            found.dir.join(HF_GENERATOR_DIR),
        )
    } else {
        (given.to_path_buf(), given.join(HF_GENERATOR_DIR))
    };
    if !disc.join(HF_WEIGHTS_FILE).is_file() || !generator.is_dir() {
        return Err(TrainError::Checkpoint {
            path: given.to_path_buf(),
            reason: format!(
                "expected a run folder, a checkpoint folder, or a final/ folder ({HF_WEIGHTS_FILE} and {HF_GENERATOR_DIR}/)"
            ),
        });
    }
    Ok((disc, generator))
}

/// Writes `out/discriminator` (ElectraForPreTraining) and `out/generator`
/// (ElectraForMaskedLM) from the weights `given` names (see [`weights_of`]), with the
/// discriminator folder's `tokenizer.json` when it has one.
pub fn export_hf_folders(given: &Path, out: &Path) -> Result<ExportReport> {
    let (disc, generator) = weights_of(given)?;
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let model = Electra::from_hf(&vs, &disc, HfGenerator::Folder(&generator))?;
    let tokenizer = disc.join(TOKENIZER_FILE);
    export_hf(
        &model,
        &vs,
        out,
        tokenizer.is_file().then_some(tokenizer.as_path()),
    )?;
    Ok(ExportReport {
        out: out.to_path_buf(),
        from: disc,
    })
}

impl fmt::Display for ExportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: discriminator/ (ElectraForPreTraining) and generator/ (ElectraForMaskedLM) from {}",
            self.out.display(),
            self.from.display()
        )
    }
}
