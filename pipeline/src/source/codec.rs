//! Compression, a layer between a byte source and a record format: the [`Codec`] trait,
//! the registry that picks one by extension (`.zst`, `.gz`), and `DecodedInput`, a file's
//! decompressed bytes with what a reader needs to report damage.
//!
//! A compressed file is first decoded once into nothing, in bounded memory, to check it
//! ([`Codec::check`]); reading then stops at the end of the part that checked out, so a
//! damaged frame never contributes text decoded before the damage was detected. Under
//! `on_bad_record = "fail"` a loader or a preprocessing job runs these checks for every
//! file before reading any ([`check_compressed`]), so a damaged file stops the run at
//! once, naming it, instead of hours in.

use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::byte_source::{byte_source, ByteSource};
use super::gzip::Gzip;
use super::lines::READ_BUFFER;
use super::location::Location;
use super::object_store::DownloadFailed;
use super::zstd::Zstd;
use crate::error::{PipelineError, Result};
use crate::parallel::ordered_map;

/// A compression format: checks and decodes a compressed stream.
pub trait Codec: Send + Sync + std::fmt::Debug {
    /// The file-name extension, without the dot, of the files this codec reads (`zst`).
    fn extension(&self) -> &'static str;

    /// Decodes the whole compressed stream `raw` of `path` into nothing, in bounded
    /// memory: how many decompressed bytes can be trusted, and the error that ends them.
    /// `Err` only when `raw` cannot be read at all.
    fn check(&self, raw: &mut dyn Read, path: &Path) -> Result<Integrity>;

    /// The decompressed stream of `raw`.
    fn decoder(&self, raw: Box<dyn Read + Send>, path: &Path) -> Result<Box<dyn Read + Send>>;

    /// The error a decoding failure becomes, `compressed_offset` bytes into `path`.
    fn error(&self, path: &Path, compressed_offset: u64, source: io::Error) -> PipelineError;
}

/// What checking a compressed file found.
#[derive(Debug)]
pub struct Integrity {
    /// Decompressed bytes that may be read.
    pub readable: u64,
    /// The error that ends the readable part, if any.
    pub error: Option<PipelineError>,
}

/// The registered codecs.
const CODECS: &[&dyn Codec] = &[&Zstd, &Gzip];

/// The extension of a lowercase file name, as `Path::extension` finds it (none for a name
/// that is only a dot and an extension).
fn extension(name: &str) -> Option<&str> {
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => Some(ext),
        _ => None,
    }
}

/// The codec of `location`, by its extension; `None` for an uncompressed file.
pub fn codec_for(location: &Location) -> Option<&'static dyn Codec> {
    let name = location.file_name_lowercase();
    let ext = extension(&name)?;
    CODECS.iter().copied().find(|c| c.extension() == ext)
}

/// The file name of `location`, lowercase, without its codec's extension: what a record
/// format is detected from.
pub fn name_without_codec(location: &Location) -> String {
    let name = location.file_name_lowercase();
    match codec_for(location) {
        Some(codec) => name
            .strip_suffix(&format!(".{}", codec.extension()))
            .map(str::to_string)
            .unwrap_or(name),
        None => name,
    }
}

/// Counts the bytes read from the underlying stream.
struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// How a read of the decompressed stream failed.
#[derive(Debug)]
pub(crate) enum ReadFailure {
    /// A compressed file could not be decoded: a bad record (skipped or fatal by policy).
    Damaged(PipelineError),
    /// The bytes could not be read: always fatal.
    Io(PipelineError),
}

/// What a reader of a decoded file needs besides the stream: how to name a failure.
#[derive(Debug)]
pub(crate) struct Decoding {
    path: PathBuf,
    /// Compressed bytes consumed so far, and the codec (compressed files only).
    compressed: Option<(Arc<AtomicU64>, &'static dyn Codec)>,
    /// Why the readable part ends early (see [`Codec::check`]), reported when reading
    /// reaches that end.
    damage: Option<PipelineError>,
}

impl Decoding {
    /// What a failed read of the decompressed stream is: damage when the codec failed, a
    /// read failure when the bytes could not be fetched (a download that failed after its
    /// retries, which decoders pass through).
    pub fn failure(&self, source: io::Error) -> ReadFailure {
        let fetch_failed = source
            .get_ref()
            .is_some_and(|inner| inner.is::<DownloadFailed>());
        match &self.compressed {
            Some((count, codec)) if !fetch_failed => {
                ReadFailure::Damaged(codec.error(&self.path, count.load(Ordering::Relaxed), source))
            }
            _ => ReadFailure::Io(PipelineError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// The damage found by the check, once: reported when the readable part ends.
    pub fn take_damage(&mut self) -> Option<PipelineError> {
        self.damage.take()
    }
}

/// A file's decompressed bytes.
pub(crate) struct DecodedInput {
    /// The bytes, buffered, ending where the check says they stop being trustworthy.
    pub stream: Box<dyn BufRead + Send>,
    /// How to name a failure.
    pub decoding: Decoding,
}

impl DecodedInput {
    /// Opens `location` from `source`, through its codec (after checking the whole file)
    /// when it has one.
    pub fn open(source: &dyn ByteSource, location: &Location) -> Result<Self> {
        let path = location.to_path_buf();
        let raw = source.open(location)?;
        let Some(codec) = codec_for(location) else {
            return Ok(Self {
                stream: Box::new(BufReader::with_capacity(READ_BUFFER, raw)),
                decoding: Decoding {
                    path,
                    compressed: None,
                    damage: None,
                },
            });
        };
        let check = codec.check(&mut *source.open(location)?, &path)?;
        let count = Arc::new(AtomicU64::new(0));
        let counting = CountingReader {
            inner: raw,
            count: count.clone(),
        };
        let decoder = codec.decoder(Box::new(counting), &path)?;
        Ok(Self {
            stream: Box::new(BufReader::with_capacity(
                READ_BUFFER,
                decoder.take(check.readable),
            )),
            decoding: Decoding {
                path,
                compressed: Some((count, codec)),
                damage: check.error,
            },
        })
    }
}

/// Checks every compressed file of `files` before any is read, on up to `threads`
/// threads: the first damaged one in list order is an error naming it and the compressed
/// offset of the damage. Uncompressed files are not read.
pub fn check_compressed(files: &[Location], threads: usize) -> Result<()> {
    let compressed = files
        .iter()
        .filter_map(|location| codec_for(location).map(|codec| Ok((location, codec))));
    ordered_map(
        compressed,
        threads,
        "electra-check",
        |(location, codec)| {
            let path = location.to_path_buf();
            let mut raw = byte_source(location)?.open(location)?;
            match codec.check(&mut *raw, &path)?.error {
                Some(error) => Err(error),
                None => Ok(()),
            }
        },
        |()| Ok(()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_are_chosen_by_extension() {
        let zst = |name: &str| codec_for(&Location::parse(name)).map(|c| c.extension());
        assert_eq!(zst("a.txt.zst"), Some("zst"));
        assert_eq!(zst("A.JSONL.ZST"), Some("zst"));
        assert_eq!(zst("s3://b/c/a.jsonl.zst"), Some("zst"));
        assert_eq!(zst("a.txt"), None);
        assert_eq!(zst("c4/en/c4-train.00000-of-01024.json.gz"), Some("gz"));
        assert_eq!(zst("s3://b/A.TXT.GZ"), Some("gz"));
        assert_eq!(
            zst(".zst"),
            None,
            "a hidden file named .zst has no extension"
        );
        assert_eq!(
            name_without_codec(&Location::parse("d/A.Jsonl.zst")),
            "a.jsonl"
        );
        assert_eq!(
            name_without_codec(&Location::parse("s3://b/c4/x.json.gz")),
            "x.json"
        );
    }

    #[test]
    fn checking_files_names_the_first_damaged_one_in_list_order_on_any_thread_count() {
        use crate::source::tests::{numbered_docs, write, zstd_frame};
        let dir = tempfile::tempdir().unwrap();
        let (text, _) = numbered_docs(2000);
        let whole = zstd_frame(&text);
        let damaged = |i: usize| i == 5 || i == 9;
        let mut files = Vec::new();
        for i in 0..12 {
            let bytes = if damaged(i) {
                &whole[..whole.len() / 2]
            } else {
                &whole[..]
            };
            let path = write(dir.path(), &format!("{i:02}.txt.zst"), bytes);
            files.push(Location::Local(path));
        }
        let plain = write(dir.path(), "plain.txt", b"not checked\n");
        files.push(Location::Local(plain));
        for threads in [1, 3, 8] {
            let err = check_compressed(&files, threads).unwrap_err();
            assert!(matches!(err, PipelineError::Zstd { .. }), "{err:?}");
            assert!(
                err.to_string().contains("05.txt.zst"),
                "{threads} threads: {err}"
            );
        }
        let good: Vec<Location> = (0..files.len())
            .filter(|&i| !damaged(i))
            .map(|i| files[i].clone())
            .collect();
        check_compressed(&good, 3).unwrap();
    }

    /// What the fail-fast check costs: `cargo test --release -p electra-pipeline --lib --
    /// --ignored --nocapture check_throughput`.
    #[test]
    #[ignore]
    fn check_throughput() {
        use crate::source::tests::CORPUS;
        let files = crate::source::expand_locations(&[format!("{CORPUS}/*.zst")]).unwrap();
        let started = std::time::Instant::now();
        let (mut compressed, mut decompressed) = (0u64, 0u64);
        for _ in 0..10 {
            for location in &files {
                let codec = codec_for(location).unwrap();
                let mut raw = byte_source(location).unwrap().open(location).unwrap();
                let check = codec.check(&mut *raw, &location.to_path_buf()).unwrap();
                decompressed += check.readable;
                compressed += byte_source(location).unwrap().size(location).unwrap();
            }
        }
        let s = started.elapsed().as_secs_f64();
        println!(
            "checked {:.0} MB compressed, {:.0} MB text in {s:.2}s on one thread: {:.1} s per GB of text, {:.1} s per GB compressed",
            compressed as f64 / 1e6,
            decompressed as f64 / 1e6,
            s / (decompressed as f64 / 1e9),
            s / (compressed as f64 / 1e9)
        );
    }
}
