//! The local file system as a [`ByteSource`].

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::byte_source::{is_glob, ByteSource};
use super::location::Location;
use crate::error::{PipelineError, Result};

/// Files on this machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalFiles;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PipelineError + '_ {
    move |source| PipelineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The path of a local location; any other location is refused, naming it.
fn local(location: &Location) -> Result<&Path> {
    location
        .as_local()
        .ok_or_else(|| PipelineError::InvalidConfig {
            field: "files",
            reason: format!("`{location}` is not a local file"),
        })
}

impl LocalFiles {
    /// The files a glob pattern matches, sorted; `NoFiles` when there are none.
    fn glob(pattern: &str) -> Result<Vec<PathBuf>> {
        let no_files = || PipelineError::NoFiles {
            pattern: pattern.to_string(),
        };
        let mut matches = Vec::new();
        for entry in glob::glob(pattern).map_err(|_| no_files())? {
            let path = entry.map_err(|e| PipelineError::Io {
                path: e.path().to_path_buf(),
                source: io::Error::new(e.error().kind(), e.error().to_string()),
            })?;
            if path.is_file() {
                matches.push(path);
            }
        }
        matches.sort();
        if matches.is_empty() {
            return Err(no_files());
        }
        Ok(matches)
    }
}

impl ByteSource for LocalFiles {
    fn open(&self, location: &Location) -> Result<Box<dyn Read + Send>> {
        let path = local(location)?;
        Ok(Box::new(File::open(path).map_err(io_err(path))?))
    }

    fn size(&self, location: &Location) -> Result<u64> {
        let path = local(location)?;
        Ok(std::fs::metadata(path).map_err(io_err(path))?.len())
    }

    fn read_range(&self, location: &Location, range: Range<u64>) -> Result<Vec<u8>> {
        let path = local(location)?;
        let length = usize::try_from(range.end.saturating_sub(range.start)).map_err(|_| {
            io_err(path)(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the range {range:?} does not fit in memory"),
            ))
        })?;
        let mut file = File::open(path).map_err(io_err(path))?;
        file.seek(SeekFrom::Start(range.start))
            .map_err(io_err(path))?;
        let mut bytes = vec![0u8; length];
        file.read_exact(&mut bytes).map_err(io_err(path))?;
        Ok(bytes)
    }

    fn expand(&self, pattern: &str) -> Result<Vec<Location>> {
        let paths = if is_glob(pattern) {
            Self::glob(pattern)?
        } else {
            let path = PathBuf::from(pattern);
            std::fs::metadata(&path).map_err(io_err(&path))?;
            vec![path]
        };
        Ok(paths.into_iter().map(Location::Local).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::tests::write;
    use crate::source::{expand_files, expand_locations};

    #[test]
    fn missing_files_and_empty_globs_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.txt").display().to_string();
        let err = expand_files(std::slice::from_ref(&missing)).unwrap_err();
        assert!(matches!(err, PipelineError::Io { .. }));
        assert!(err.to_string().contains(&missing), "{err}");
        let pattern = dir.path().join("*.jsonl").display().to_string();
        let err = expand_files(std::slice::from_ref(&pattern)).unwrap_err();
        assert!(matches!(err, PipelineError::NoFiles { pattern: ref p } if *p == pattern));
    }

    #[test]
    fn globs_are_sorted_and_duplicates_removed() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.txt", "a.txt", "c.txt"] {
            write(dir.path(), name, b"x\n");
        }
        let c = dir.path().join("c.txt").display().to_string();
        let glob = dir.path().join("*.txt").display().to_string();
        let files = expand_files(&[c.clone(), glob.clone()]).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["c.txt", "a.txt", "b.txt"]);
        let locations = expand_locations(&[c, glob]).unwrap();
        assert!(locations
            .iter()
            .zip(&files)
            .all(|(l, f)| l.as_local() == Some(f.as_path())));
    }

    #[test]
    fn a_local_file_is_sized_streamed_and_read_by_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "r.bin", b"0123456789");
        let location = Location::Local(path.clone());
        assert_eq!(LocalFiles.size(&location).unwrap(), 10);
        assert_eq!(LocalFiles.read_range(&location, 3..7).unwrap(), b"3456");
        let mut all = Vec::new();
        LocalFiles
            .open(&location)
            .unwrap()
            .read_to_end(&mut all)
            .unwrap();
        assert_eq!(all, b"0123456789");
        let err = LocalFiles.read_range(&location, 8..12).unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}
