//! Merging the manifests of a preprocessing job's parts into one.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use electra_schemas::manifest::{Manifest, ShardEntry, FILE_NAME};

use super::{file_names, part_prefix};
use crate::error::{PipelineError, Result};
use crate::shard::{read_manifest, shard_name, write_manifest};

/// The shard file name of part `part` of `parts`, shard `index` (for tests and tools).
pub fn part_shard_name(part: usize, parts: usize, index: usize) -> String {
    shard_name(&part_prefix(part, parts), index)
}

/// The manifests named by `input`: a manifest file, or every `manifest*.json` of a folder
/// (its parts when there are parts, else its `manifest.json`).
fn manifests_in(input: &Path) -> Result<Vec<PathBuf>> {
    if !input.is_dir() {
        return Ok(vec![input.to_path_buf()]);
    }
    let mut parts: Vec<PathBuf> = file_names(input)?
        .into_iter()
        .filter(|n| n.starts_with("manifest-") && n.ends_with(".json"))
        .map(|n| input.join(n))
        .collect();
    parts.sort();
    if parts.is_empty() {
        parts.push(input.join(FILE_NAME));
    }
    Ok(parts)
}

/// The folder of a file (`.` for a bare name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn canonical(dir: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(dir).map_err(|source| PipelineError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn bad(path: &Path, reason: impl Into<String>) -> PipelineError {
    PipelineError::BadManifest {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The parts read so far.
struct Merge {
    out_dir: PathBuf,
    out_dir_abs: PathBuf,
    merged: Option<Manifest>,
    /// Shard paths listed so far (relative to the merged manifest's folder).
    seen: HashSet<String>,
    /// `(part index, part count, manifest)` of each part.
    parts: Vec<(u32, u32, PathBuf)>,
    /// Each part's shards, paths rewritten.
    by_part: Vec<(u32, Vec<ShardEntry>)>,
}

impl Merge {
    /// Adds the part manifest at `path`: complete, inside the output folder, of the same
    /// job as the others, its shards listed once.
    fn add(&mut self, path: &Path) -> Result<()> {
        let manifest = read_manifest(path)?;
        if !manifest.complete {
            return Err(bad(
                path,
                "incomplete: its preprocessing part has not finished",
            ));
        }
        let dir_abs = canonical(&parent_of(path))?;
        let relative = dir_abs.strip_prefix(&self.out_dir_abs).map_err(|_| {
            bad(
                path,
                format!(
                    "is not inside {}, where the merged manifest goes",
                    self.out_dir.display()
                ),
            )
        })?;
        self.parts
            .push((manifest.part_index, manifest.num_parts, path.to_path_buf()));
        let target = self.merged.get_or_insert_with(|| Manifest {
            shards: Vec::new(),
            complete: true,
            part_index: 0,
            num_parts: 1,
            ..manifest.clone()
        });
        same_job(target, &manifest, path)?;
        let mut shards = Vec::with_capacity(manifest.shards.len());
        for mut shard in manifest.shards {
            let joined = relative.join(&shard.path);
            shard.path = joined.to_string_lossy().replace('\\', "/");
            if !self.seen.insert(shard.path.clone()) {
                return Err(bad(path, format!("shard {} is listed twice", shard.path)));
            }
            shards.push(shard);
        }
        self.by_part.push((manifest.part_index, shards));
        Ok(())
    }

    /// Checks that the parts are every part of one split, each exactly once.
    fn check_parts(&self, out: &Path) -> Result<()> {
        let num_parts = self.parts.first().map_or(1, |p| p.1);
        let mut indices: Vec<u32> = Vec::new();
        for (index, parts, path) in &self.parts {
            if *parts != num_parts {
                return Err(bad(
                    path,
                    format!("is part of a {parts}-part job, the others of a {num_parts}-part job"),
                ));
            }
            indices.push(*index);
        }
        indices.sort_unstable();
        if indices != (0..num_parts).collect::<Vec<_>>() {
            return Err(bad(out, format!("the job has {num_parts} parts but the manifests found are parts {indices:?}: a part is missing or given twice")));
        }
        Ok(())
    }
}

/// Refuses a part made with another tokenizer, schema version or input list than `target`.
fn same_job(target: &Manifest, manifest: &Manifest, path: &Path) -> Result<()> {
    if target.tokenizer_sha256 != manifest.tokenizer_sha256 {
        return Err(bad(
            path,
            format!(
                "made with tokenizer {}, the others with {}: refusing to mix tokenizers",
                manifest.tokenizer_sha256, target.tokenizer_sha256
            ),
        ));
    }
    if target.schema_version != manifest.schema_version
        || target.source_files != manifest.source_files
    {
        return Err(bad(
            path,
            "belongs to another job (schema version or input list differs)",
        ));
    }
    Ok(())
}

/// Joins the manifests of a job's parts into one manifest at `out` (a file path). Every
/// part must be complete, made with the same tokenizer, schema version and input list, and
/// live in `out`'s folder or below it (shard paths are rewritten relative to it).
pub fn merge_manifests(inputs: &[PathBuf], out: &Path) -> Result<Manifest> {
    let out_dir = parent_of(out);
    let mut merge = Merge {
        out_dir_abs: canonical(&out_dir)?,
        out_dir,
        merged: None,
        seen: HashSet::new(),
        parts: Vec::new(),
        by_part: Vec::new(),
    };
    for input in inputs {
        for path in manifests_in(input)? {
            merge.add(&path)?;
        }
    }
    let mut merged = merge
        .merged
        .take()
        .ok_or_else(|| PipelineError::InvalidConfig {
            field: "manifests",
            reason: "no manifest given".into(),
        })?;
    merge.check_parts(out)?;
    // Parts in index order: with contiguous file blocks, the shards follow the input order.
    merge.by_part.sort_by_key(|(index, _)| *index);
    merged.shards = merge
        .by_part
        .into_iter()
        .flat_map(|(_, shards)| shards)
        .collect();
    write_manifest(out, &merged)?;
    Ok(merged)
}

/// What `merge-manifests` wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MergeReport {
    /// The merged manifest.
    pub manifest: PathBuf,
    /// Its shards.
    pub shards: usize,
    /// Its documents.
    pub rows: u64,
    /// Its tokens.
    pub tokens: u64,
}

/// Where a merged manifest goes by default: `manifest.json` in the first input's folder
/// (the input itself when it is a folder).
pub fn default_merged_manifest(inputs: &[PathBuf]) -> PathBuf {
    let dir = match inputs.first() {
        Some(first) if first.is_dir() => first.clone(),
        Some(first) => first.parent().map(PathBuf::from).unwrap_or_default(),
        None => PathBuf::new(),
    };
    dir.join(FILE_NAME)
}

/// [`merge_manifests`] into `out`, by default [`default_merged_manifest`].
pub fn merge(inputs: &[PathBuf], out: Option<PathBuf>) -> Result<MergeReport> {
    let out = out.unwrap_or_else(|| default_merged_manifest(inputs));
    let merged = merge_manifests(inputs, &out)?;
    Ok(MergeReport {
        shards: merged.shards.len(),
        rows: merged.rows(),
        tokens: merged.tokens(),
        manifest: out,
    })
}

impl std::fmt::Display for MergeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}: {} shards, {} documents, {} tokens",
            self.manifest.display(),
            self.shards,
            self.rows,
            self.tokens
        )
    }
}
