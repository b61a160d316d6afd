//! Where bytes come from: the [`ByteSource`] trait, the registry that picks one for a
//! location, and the file-list expansion built on it.
//!
//! Everything in the source layer that opens, sizes or lists a corpus file goes through a
//! byte source: glob expansion, the codec's integrity check, the line reader's stream.
//! The sources are [`LocalFiles`] and [`ObjectStoreFiles`] (`s3://`, `gs://`, `az://`,
//! `http(s)://`); another is a new file implementing the trait and one arm in
//! [`byte_source`].

use std::collections::HashSet;
use std::io::Read;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use super::local::LocalFiles;
use super::location::Location;
use super::object_store::{ObjectStoreFiles, SCHEMES};
use crate::error::{PipelineError, Result};

/// A store of files: opens them as streams, sizes them, reads byte ranges, lists a pattern.
/// Errors name the location.
pub trait ByteSource: Send + Sync + std::fmt::Debug {
    /// Opens `location` for reading from its first byte.
    fn open(&self, location: &Location) -> Result<Box<dyn Read + Send>>;

    /// The size of `location` in bytes.
    fn size(&self, location: &Location) -> Result<u64>;

    /// Bytes `range` of `location` (exactly that many; a range past the end is an error).
    fn read_range(&self, location: &Location, range: Range<u64>) -> Result<Vec<u8>>;

    /// The files a pattern names, sorted: a glob's matches (`NoFiles` when none), or the
    /// one location a pattern without glob characters names (an error naming it when it
    /// does not exist).
    fn expand(&self, pattern: &str) -> Result<Vec<Location>>;
}

/// Whether a pattern holds glob characters.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// The byte source that reads `location`: local files, or object storage by scheme.
pub fn byte_source(location: &Location) -> Result<Arc<dyn ByteSource>> {
    match location {
        Location::Local(_) => Ok(Arc::new(LocalFiles)),
        Location::Url { scheme, .. } if SCHEMES.contains(&scheme.as_str()) => {
            Ok(Arc::new(ObjectStoreFiles))
        }
        Location::Url { scheme, .. } => Err(PipelineError::InvalidConfig {
            field: "files",
            reason: format!("no byte source reads `{scheme}://` locations (`{location}`)"),
        }),
    }
}

/// Expands paths, URLs and glob patterns into a file list: entries in the given order, a
/// glob's matches sorted, duplicates removed. A pattern matching nothing is `NoFiles`; a
/// missing path is `Io` naming it.
pub fn expand_locations(patterns: &[String]) -> Result<Vec<Location>> {
    let mut seen = HashSet::new();
    let mut files = Vec::new();
    for pattern in patterns {
        let location = Location::parse(pattern);
        for found in byte_source(&location)?.expand(pattern)? {
            if seen.insert(found.clone()) {
                files.push(found);
            }
        }
    }
    Ok(files)
}

/// [`expand_locations`] as the paths the trainer carries (a URL as a path holding its text;
/// see [`Location`]).
pub fn expand_files(patterns: &[String]) -> Result<Vec<PathBuf>> {
    Ok(expand_locations(patterns)?
        .iter()
        .map(Location::to_path_buf)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_without_a_registered_byte_source_is_refused_naming_it() {
        let err = expand_files(&["hdfs://namenode/c4/*.json.gz".into()]).unwrap_err();
        assert!(
            matches!(err, PipelineError::InvalidConfig { field: "files", .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("hdfs://namenode/c4/*.json.gz"),
            "{err}"
        );
    }
}
