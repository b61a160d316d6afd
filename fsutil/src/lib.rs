//! The one place for the file operations every ELECTRA crate needs to make durable,
//! checkable files:
//!
//! 1. [`write_atomic`]: a temporary file beside the target, fsync, rename, fsync of the
//!    folder, so a reader sees the old file or the new one, never half of one.
//! 2. [`fsync_dir`] and [`fsync_parent`]: make a rename or a new entry durable.
//! 3. [`file_sha256`] and [`bytes_sha256`]: the hex content hashes that manifests,
//!    checkpoints and tokenizers are identified by.
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("manifest.json");
//! electra_fsutil::write_atomic(&path, b"{}")?;
//! assert_eq!(
//!     electra_fsutil::file_sha256(&path)?,
//!     electra_fsutil::bytes_sha256(b"{}")
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// An I/O error and the file it happened on.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct FileError {
    /// The file (for a failed write: the temporary file, which has been removed).
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    /// A `map_err` adapter naming `path`.
    pub fn at(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + use<> {
        let path = path.to_path_buf();
        move |source| FileError { path, source }
    }
}

/// The temporary name [`write_atomic`] writes `path` under first: hidden, beside it, and
/// unique to this process.
pub fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename, and an
/// fsync of the folder. On failure the temporary file is removed and the error names it
/// (or `path`, when the rename failed); `path` keeps its old content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let tmp = tmp_path(path);
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    if let Err(source) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(FileError { path: tmp, source });
    }
    std::fs::rename(&tmp, path).map_err(FileError::at(path))?;
    fsync_parent(path);
    Ok(())
}

/// Flushes a folder's entries (new files, renames) to disk. Best effort: some filesystems
/// cannot open or sync a folder, and the data itself was synced already.
pub fn fsync_dir(dir: &Path) {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// [`fsync_dir`] of the folder that holds `path`.
pub fn fsync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        fsync_dir(dir);
    }
}

/// Hex sha256 of a file, read in 1 MiB pieces.
pub fn file_sha256(path: &Path) -> Result<String, FileError> {
    let mut file = File::open(path).map_err(FileError::at(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(FileError::at(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Hex sha256 of bytes.
pub fn bytes_sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    use std::fmt::Write as _;
    digest.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_bytes() {
        assert_eq!(
            bytes_sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the file itself remains");
        assert_eq!(file_sha256(&path).unwrap(), bytes_sha256(b"new"));
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_names_the_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-folder").join("a.json");
        let err = write_atomic(&path, b"x").unwrap_err();
        assert_eq!(err.path, tmp_path(&path));
        assert!(err.to_string().contains("missing-folder"), "{err}");
    }

    #[test]
    fn hashing_a_missing_file_names_it() {
        let err = file_sha256(Path::new("/nonexistent/x.parquet")).unwrap_err();
        assert!(
            err.to_string().starts_with("/nonexistent/x.parquet: "),
            "{err}"
        );
    }
}
