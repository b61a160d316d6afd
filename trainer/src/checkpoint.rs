//! Checkpoints: the whole training state in one folder, written atomically, verified on
//! load.
//!
//! ```text
//! RUN_DIR/checkpoints/
//!   latest                       the newest complete checkpoint's folder name
//!   step-000001000/
//!     discriminator/             Hugging Face ElectraForPreTraining folder (weights, config,
//!     generator/                 tokenizer); ElectraForMaskedLM: `transformers` loads both
//!                                (objective "mlm": masked_lm/, an ElectraForMaskedLM folder)
//!     trainer_state.safetensors  AdamW moments (adam_m.*, adam_v.* by variable name) and the
//!                                metrics window's device sums (window.*)
//!     trainer_state.json         step, data cursor, counters, seed, tokenizer hash, config
//!     SHA256SUMS                 sha256 of every file above, written last
//! ```
//!
//! A checkpoint is written into `.tmp-step-…`, every file fsynced, the folder renamed to
//! `step-…` and the parent fsynced; only then is `latest` replaced (atomically). A folder
//! without a `SHA256SUMS` that matches its files is incomplete or corrupt: loading skips
//! it, with a warning, for the newest one that verifies. The newest `keep` checkpoints are
//! kept. Random state needs no saving: every step seeds libtorch from (seed, step), and
//! packing and masking are pure functions of (seed, epoch, document).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use electra_fsutil::file_sha256;
use electra_model::safetensors;
use electra_pipeline::{BadRecordCounts, DataCursor};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::error::{Result, TrainError};
use crate::hf_folders::{write_hf_folders, HfFolder};
use crate::run_dir::{is_partial_checkpoint, parse_step_dir, RunDir};
pub use crate::run_dir::{step_dir_name, CHECKPOINTS_DIR, LATEST_FILE};

/// The JSON part of the trainer state.
pub const STATE_FILE: &str = "trainer_state.json";
/// The tensor part of the trainer state.
pub const TENSORS_FILE: &str = "trainer_state.safetensors";
/// Checksums of every file of a checkpoint, written last.
pub const CHECKSUMS_FILE: &str = "SHA256SUMS";
/// Version of the checkpoint layout.
pub const FORMAT_VERSION: u32 = 1;
/// A test hook: with this variable set to N milliseconds, writing pauses for N ms after
/// the weights are written (before the checkpoint is complete) and says so on stderr, so a
/// test can kill the process mid-write.
pub const PAUSE_ENV: &str = "ELECTRA_TEST_CHECKPOINT_PAUSE_MS";

/// An input file as it was when the run read it; a resume refuses a changed corpus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// The path as the run expanded it.
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
}

impl FileStamp {
    /// The stamps of `files` (size 0 for a file that cannot be read).
    pub fn of_files(files: &[PathBuf]) -> Vec<FileStamp> {
        files
            .iter()
            .map(|p| FileStamp {
                path: p.display().to_string(),
                bytes: std::fs::metadata(p).map_or(0, |m| m.len()),
            })
            .collect()
    }
}

/// What every checkpoint of a run records about the run itself.
#[derive(Debug, Clone, PartialEq)]
pub struct RunIdentity {
    /// sha256 of the run's tokenizer.json.
    pub tokenizer_sha256: String,
    /// The input files.
    pub data_files: Vec<FileStamp>,
    /// The resolved config (TOML).
    pub config_toml: String,
}

/// The logging window in progress (its device sums are in the tensors file).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowState {
    /// Steps in the window.
    pub steps: u64,
    /// Real tokens in the window.
    pub tokens: u64,
    /// Seconds spent waiting for data in the window.
    pub data_wait_sec: f64,
    /// Seconds the window had lasted.
    pub wall_sec: f64,
}

/// Everything but tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Updates completed (skipped non-finite steps included): the next step's index.
    pub step: u64,
    /// Batches consumed (equal to `step`).
    pub batches: u64,
    /// The position after the last example consumed (slice 0's when the stream is
    /// sliced).
    pub cursor: DataCursor,
    /// With `dist.data_slices > 1`: every slice's position, in slice order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slice_cursors: Vec<DataCursor>,
    /// Real tokens trained on.
    pub tokens: u64,
    /// Bad records skipped so far, per kind.
    pub bad_records: BadRecordCounts,
    /// Steps skipped for a non-finite loss or gradient norm, in all.
    pub skipped_steps: u64,
    /// Training seconds before this checkpoint.
    pub elapsed_sec: f64,
    /// The metrics window in progress.
    pub window: WindowState,
    /// The run seed.
    pub seed: u64,
    /// sha256 of the tokenizer.json the run used.
    pub tokenizer_sha256: String,
    /// The input files.
    pub data_files: Vec<FileStamp>,
    /// The resolved config (TOML).
    pub config_toml: String,
    /// The writing tool.
    pub tool_version: String,
}

/// A checkpoint found on disk and verified.
#[derive(Debug)]
pub struct Found {
    /// Its folder.
    pub dir: PathBuf,
    /// Its state.
    pub state: TrainerState,
}

/// Writes checkpoints into `RUN_DIR/checkpoints`.
#[derive(Debug, Clone)]
pub struct CheckpointWriter {
    run: RunDir,
    dir: PathBuf,
    keep: usize,
    identity: RunIdentity,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + use<> {
    TrainError::io(path.to_path_buf())
}

fn corrupt(dir: &Path, reason: impl Into<String>) -> TrainError {
    TrainError::Checkpoint {
        path: dir.to_path_buf(),
        reason: reason.into(),
    }
}

impl CheckpointWriter {
    /// Checkpoints of the run in `run`; the newest `keep` (at least 1) are kept. The model
    /// folders get the run's `tokenizer.json`.
    pub fn new(run: &RunDir, keep: usize, identity: RunIdentity) -> Self {
        Self {
            run: run.clone(),
            dir: run.checkpoints(),
            keep: keep.max(1),
            identity,
        }
    }

    /// What every checkpoint records about the run.
    pub fn identity(&self) -> &RunIdentity {
        &self.identity
    }

    /// Writes the checkpoint of `state.step`; returns its folder.
    pub fn save(
        &self,
        model: &[HfFolder],
        tensors: &[(String, Tensor)],
        state: &TrainerState,
    ) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        self.remove_partial();
        let tmp = self.run.partial_checkpoint(state.step);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let written = self.write_files(&tmp, model, tensors, state);
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let name = step_dir_name(state.step);
        let dest = self.run.checkpoint(state.step);
        if dest.exists() {
            // The same step saved again (a resumed run that stopped at once): replace it.
            std::fs::remove_dir_all(&dest).map_err(io(&dest))?;
        }
        std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
        electra_fsutil::fsync_dir(&self.dir);
        electra_fsutil::write_atomic(&self.run.latest(), name.as_bytes())?;
        self.prune(state.step);
        Ok(dest)
    }

    fn write_files(
        &self,
        tmp: &Path,
        model: &[HfFolder],
        tensors: &[(String, Tensor)],
        state: &TrainerState,
    ) -> Result<()> {
        write_hf_folders(tmp, model, &self.run.tokenizer())?;
        if let Some(ms) = std::env::var(PAUSE_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            eprintln!("checkpoint write paused: {}", tmp.display());
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        let mut metadata = BTreeMap::new();
        metadata.insert("format".to_string(), "electra-trainer-state".to_string());
        metadata.insert("step".to_string(), state.step.to_string());
        safetensors::save(&tmp.join(TENSORS_FILE), tensors, &metadata)?;
        let json = serde_json::to_vec_pretty(state)
            .map_err(|e| corrupt(tmp, format!("cannot encode the trainer state: {e}")))?;
        electra_fsutil::write_atomic(&tmp.join(STATE_FILE), &json)?;
        let sums = checksums(tmp)?;
        electra_fsutil::write_atomic(&tmp.join(CHECKSUMS_FILE), sums.as_bytes())?;
        for folder in model {
            electra_fsutil::fsync_dir(&tmp.join(&folder.dir));
        }
        electra_fsutil::fsync_dir(tmp);
        Ok(())
    }

    /// Removes folders of writes that never completed (a process killed mid-write).
    fn remove_partial(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_partial_checkpoint(&name) {
                tracing::warn!(folder = %entry.path().display(), "removing an incomplete checkpoint write");
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// Keeps the newest `keep` checkpoints (and never the one just written).
    fn prune(&self, newest: u64) {
        let mut steps = list_steps(&self.dir);
        steps.retain(|&s| s != newest);
        steps.sort_unstable_by(|a, b| b.cmp(a));
        for &step in steps.iter().skip(self.keep.saturating_sub(1)) {
            let dir = self.run.checkpoint(step);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(folder = %dir.display(), "cannot remove an old checkpoint: {e}");
            }
        }
    }
}

/// Steps of the `step-*` folders in `dir`.
fn list_steps(dir: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| parse_step_dir(&e.file_name().to_string_lossy()))
        .collect()
}

/// Every file under `dir` (relative paths, sorted), `SHA256SUMS` excepted.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(io(&d))? {
            let path = entry.map_err(io(&d))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                if rel != Path::new(CHECKSUMS_FILE) {
                    out.push(rel.to_path_buf());
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `sha256  relative/path` lines for every file of a checkpoint folder.
fn checksums(dir: &Path) -> Result<String> {
    let mut text = String::new();
    for rel in files_under(dir)? {
        let sum = file_sha256(&dir.join(&rel))?;
        text.push_str(&format!("{sum}  {}\n", rel.display()));
    }
    Ok(text)
}

/// Checks a checkpoint folder against its `SHA256SUMS` and reads its state.
pub fn verify(dir: &Path) -> Result<TrainerState> {
    let sums_path = dir.join(CHECKSUMS_FILE);
    let sums = std::fs::read_to_string(&sums_path).map_err(|e| {
        corrupt(
            dir,
            format!("no readable {CHECKSUMS_FILE} ({e}): the write did not complete"),
        )
    })?;
    let mut listed = Vec::new();
    for (i, line) in sums.lines().enumerate() {
        let (sum, rel) = line.split_once("  ").ok_or_else(|| {
            corrupt(
                dir,
                format!("{CHECKSUMS_FILE} line {}: not `sha256  path`", i + 1),
            )
        })?;
        let path = dir.join(rel);
        let actual = file_sha256(&path).map_err(|e| corrupt(dir, format!("{rel}: {e}")))?;
        if actual != sum {
            return Err(corrupt(
                dir,
                format!("{rel}: sha256 {actual} differs from {CHECKSUMS_FILE}'s {sum}"),
            ));
        }
        listed.push(PathBuf::from(rel));
    }
    let present = files_under(dir)?;
    if present != listed {
        return Err(corrupt(
            dir,
            format!("its files {present:?} are not those {CHECKSUMS_FILE} lists {listed:?}"),
        ));
    }
    for required in [STATE_FILE, TENSORS_FILE] {
        if !listed.iter().any(|p| p == Path::new(required)) {
            return Err(corrupt(dir, format!("{required} is missing")));
        }
    }
    let text = std::fs::read(dir.join(STATE_FILE)).map_err(io(&dir.join(STATE_FILE)))?;
    let state: TrainerState =
        serde_json::from_slice(&text).map_err(|e| corrupt(dir, format!("{STATE_FILE}: {e}")))?;
    if state.format_version != FORMAT_VERSION {
        return Err(corrupt(
            dir,
            format!(
                "format version {}, this build reads {FORMAT_VERSION}",
                state.format_version
            ),
        ));
    }
    Ok(state)
}

/// The newest checkpoint of `run_dir` that verifies. Newer ones that do not (a write cut
/// short, a flipped byte) are skipped with a warning; when checkpoints exist but none
/// verifies, the error lists why each was refused.
pub fn find_latest(run_dir: &Path) -> Result<Found> {
    let run = RunDir::new(run_dir);
    let dir = run.checkpoints();
    let mut steps = list_steps(&dir);
    steps.sort_unstable_by(|a, b| b.cmp(a));
    let pointer = std::fs::read_to_string(run.latest()).ok();
    let mut refused = Vec::new();
    for step in steps {
        let path = run.checkpoint(step);
        match verify(&path) {
            Ok(state) => {
                for reason in &refused {
                    tracing::warn!("skipping a newer checkpoint: {reason}");
                }
                if pointer.as_deref().map(str::trim) != Some(step_dir_name(step).as_str()) {
                    tracing::warn!(
                        latest = pointer.as_deref().unwrap_or("(none)").trim(),
                        using = %path.display(),
                        "the `latest` pointer does not name the newest complete checkpoint"
                    );
                }
                return Ok(Found { dir: path, state });
            }
            Err(e) => refused.push(e.to_string()),
        }
    }
    Err(TrainError::NoCheckpoint {
        dir,
        refused: if refused.is_empty() {
            "there is none".into()
        } else {
            refused.join("; ")
        },
    })
}

/// Tensors of the trainer-state file by name, refusing a file whose names are not exactly
/// `expected` (the list of missing and unexpected names is in the error).
pub fn load_tensors(dir: &Path, expected: &[String]) -> Result<BTreeMap<String, Tensor>> {
    let path = dir.join(TENSORS_FILE);
    let loaded = safetensors::load(&path)?;
    let tensors: BTreeMap<String, Tensor> = loaded.tensors.into_iter().collect();
    let missing: Vec<&String> = expected
        .iter()
        .filter(|n| !tensors.contains_key(*n))
        .collect();
    let unexpected: Vec<&String> = tensors.keys().filter(|n| !expected.contains(n)).collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(corrupt(
            &path,
            format!("missing tensors {missing:?}, unexpected tensors {unexpected:?}"),
        ));
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trainer_tensors_must_be_exactly_the_expected_names() {
        let dir = tempfile::tempdir().unwrap();
        let tensors = vec![
            ("adam_m.w".to_string(), Tensor::from_slice(&[1.0f32])),
            ("stray".to_string(), Tensor::from_slice(&[2.0f32])),
        ];
        safetensors::save(&dir.path().join(TENSORS_FILE), &tensors, &BTreeMap::new()).unwrap();
        let expected = vec!["adam_m.w".to_string(), "adam_v.w".to_string()];
        let err = load_tensors(dir.path(), &expected).unwrap_err().to_string();
        assert!(err.contains("adam_v.w") && err.contains("stray"), "{err}");
        let exact = vec!["adam_m.w".to_string(), "stray".to_string()];
        assert_eq!(load_tensors(dir.path(), &exact).unwrap().len(), 2);
    }

    #[test]
    fn a_folder_whose_files_do_not_match_its_checksums_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("step-000000001");
        std::fs::create_dir_all(&ck).unwrap();
        assert!(verify(&ck)
            .unwrap_err()
            .to_string()
            .contains("did not complete"));
        std::fs::write(ck.join(STATE_FILE), b"{}").unwrap();
        std::fs::write(ck.join(TENSORS_FILE), b"x").unwrap();
        std::fs::write(ck.join(CHECKSUMS_FILE), checksums(&ck).unwrap()).unwrap();
        // Checksums match, but the state does not parse: still refused, naming the file.
        assert!(verify(&ck).unwrap_err().to_string().contains(STATE_FILE));
        std::fs::write(ck.join("extra.bin"), b"y").unwrap();
        assert!(verify(&ck).unwrap_err().to_string().contains("extra.bin"));
        std::fs::remove_file(ck.join("extra.bin")).unwrap();
        std::fs::write(ck.join(TENSORS_FILE), b"z").unwrap();
        assert!(verify(&ck).unwrap_err().to_string().contains("sha256"));
        let err = find_latest(dir.path().parent().unwrap_or(dir.path()));
        assert!(err.is_err());
    }
}
