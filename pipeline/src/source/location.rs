//! Where a corpus file lives: a local path, or a URL that a byte source registered for its
//! scheme reads (see [`super::byte_source::byte_source`]).
//!
//! The trainer's boundaries (`expand_files`, `Loader::files`, `DocumentReader::new`) carry
//! locations as `PathBuf`s: a URL travels as a path holding its text, unchanged, and
//! [`Location::from`] turns it back into a URL.

use std::fmt;
use std::path::{Path, PathBuf};

/// A corpus file's location.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Location {
    /// A file on this machine.
    Local(PathBuf),
    /// `scheme://rest`, read by the byte source registered for `scheme`.
    Url {
        /// The scheme, lowercase (`s3`, `gs`, `https` ...).
        scheme: String,
        /// The whole URL as given.
        url: String,
    },
}

/// The scheme of `text` when it is a URL: `scheme://...` with a scheme of at least two
/// characters (so a Windows drive letter is a path), starting with a letter.
fn url_scheme(text: &str) -> Option<String> {
    let (scheme, _) = text.split_once("://")?;
    let valid = scheme.len() >= 2
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| scheme.to_ascii_lowercase())
}

impl Location {
    /// Parses a path or URL as a config or command line gives it.
    pub fn parse(text: &str) -> Self {
        match url_scheme(text) {
            Some(scheme) => Location::Url {
                scheme,
                url: text.to_string(),
            },
            None => Location::Local(PathBuf::from(text)),
        }
    }

    /// The local path, when this is a local file.
    pub fn as_local(&self) -> Option<&Path> {
        match self {
            Location::Local(path) => Some(path),
            Location::Url { .. } => None,
        }
    }

    /// The location as the `PathBuf` errors and the trainer carry (a URL's text, unchanged).
    pub fn to_path_buf(&self) -> PathBuf {
        match self {
            Location::Local(path) => path.clone(),
            Location::Url { url, .. } => PathBuf::from(url),
        }
    }

    /// The file name (the last path segment), lowercase, for detecting formats and codecs
    /// by extension.
    pub fn file_name_lowercase(&self) -> String {
        match self {
            Location::Local(path) => path
                .file_name()
                .map(|n| n.to_string_lossy().to_lowercase())
                .unwrap_or_default(),
            Location::Url { url, .. } => url.rsplit('/').next().unwrap_or_default().to_lowercase(),
        }
    }
}

impl From<PathBuf> for Location {
    /// A path, or a URL carried as a path (see the module docs).
    fn from(path: PathBuf) -> Self {
        match path.to_str().and_then(url_scheme) {
            Some(_) => Location::parse(&path.to_string_lossy()),
            None => Location::Local(path),
        }
    }
}

impl From<&Path> for Location {
    fn from(path: &Path) -> Self {
        Location::from(path.to_path_buf())
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::Url { url, .. } => f.write_str(url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_paths_and_urls_keep_their_scheme_through_a_path_buf() {
        for text in ["data/a.txt.zst", "/abs/b.jsonl", "C://odd/windows", "x:/y"] {
            let location = Location::parse(text);
            assert_eq!(location, Location::Local(PathBuf::from(text)), "{text}");
        }
        let url = Location::parse("S3://bucket/c4/part-1.json.gz");
        assert!(matches!(&url, Location::Url { scheme, .. } if scheme == "s3"));
        assert_eq!(url.to_string(), "S3://bucket/c4/part-1.json.gz");
        assert_eq!(url.file_name_lowercase(), "part-1.json.gz");
        assert_eq!(Location::from(url.to_path_buf()), url);
        assert!(url.as_local().is_none());
    }
}
