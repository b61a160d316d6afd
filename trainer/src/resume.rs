//! What `--resume` continues from: the newest complete checkpoint of the run folder,
//! checked to be the same experiment (config, tokenizer, input files), and where each data
//! slice starts again.

use electra_pipeline::{LoaderStart, TextTokenizer};

use crate::checkpoint::{self, FileStamp, Found};
use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::run_dir::RunDir;

/// Finds the checkpoint to resume from and checks that it is the same experiment: the
/// config (where it matters) and the tokenizer.
pub fn find_resume(config: &RunConfig, run: &RunDir, tokenizer: &TextTokenizer) -> Result<Found> {
    let found = checkpoint::find_latest(run.root())?;
    let saved = RunConfig::from_toml_str(
        &found.state.config_toml,
        &[],
        &found.dir.join(checkpoint::STATE_FILE).display().to_string(),
    )?;
    let keys = saved.resume_differences(config)?;
    if !keys.is_empty() {
        return Err(TrainError::ResumeMismatch {
            keys: keys.join(", "),
        });
    }
    if found.state.tokenizer_sha256 != tokenizer.sha256() {
        return Err(TrainError::Checkpoint {
            path: found.dir.clone(),
            reason: format!(
                "made with tokenizer sha256 {}, this run's is {}",
                found.state.tokenizer_sha256,
                tokenizer.sha256()
            ),
        });
    }
    Ok(found)
}

/// Where each of `slices` data slices starts: at the beginning, or where `found` left it.
pub fn loader_starts(found: Option<&Found>, slices: usize) -> Result<Vec<LoaderStart>> {
    let Some(found) = found else {
        return Ok(vec![LoaderStart::default(); slices]);
    };
    let s = &found.state;
    if slices == 1 {
        return Ok(vec![LoaderStart {
            batches_done: s.batches,
            cursor: s.cursor.clone(),
        }]);
    }
    if s.slice_cursors.len() != slices {
        return Err(TrainError::Checkpoint {
            path: found.dir.clone(),
            reason: format!(
                "holds {} slice cursors for dist.data_slices = {slices}",
                s.slice_cursors.len()
            ),
        });
    }
    Ok(s.slice_cursors
        .iter()
        .map(|cursor| LoaderStart {
            batches_done: s.batches,
            cursor: cursor.clone(),
        })
        .collect())
}

/// Refuses to resume on input files (names or sizes) other than those the run read.
pub fn check_same_data(found: &Found, data_files: &[FileStamp]) -> Result<()> {
    if found.state.data_files != data_files {
        return Err(TrainError::Checkpoint {
            path: found.dir.clone(),
            reason: "the input files (names or sizes) differ from those the run read; the data cursor would point elsewhere".into(),
        });
    }
    Ok(())
}
