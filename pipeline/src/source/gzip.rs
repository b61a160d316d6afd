//! gzip as a [`Codec`]: multi-member files (concatenated members are read in turn, as
//! `gzip -d` does), checked before reading. C4 and Dolma ship as `.json.gz`.
//!
//! The check decodes the file into nothing, one member at a time: a member is trusted only
//! once it has been decoded to its end and its trailer (CRC-32 and length) matches. Reading
//! then stops at the end of the last member that checked out, so a truncated or damaged
//! member contributes no text at all (unlike zstd, gzip has no block boundary the decoder
//! guarantees intact before its trailer).

use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use flate2::bufread::GzDecoder;
use flate2::read::MultiGzDecoder;

use super::codec::{Codec, Integrity};
use crate::error::{PipelineError, Result};

/// Buffer the check reads compressed bytes through.
const CHECK_BUFFER: usize = 128 << 10;

/// gzip (`.gz`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Gzip;

impl Codec for Gzip {
    fn extension(&self) -> &'static str {
        "gz"
    }

    fn check(&self, raw: &mut dyn Read, path: &Path) -> Result<Integrity> {
        check_gzip(raw, path)
    }

    fn decoder(&self, raw: Box<dyn Read + Send>, _path: &Path) -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(MultiGzDecoder::new(raw)))
    }

    fn error(&self, path: &Path, compressed_offset: u64, source: io::Error) -> PipelineError {
        PipelineError::Gzip {
            path: path.to_path_buf(),
            compressed_offset,
            source,
        }
    }
}

/// A buffered reader that counts the bytes its consumer consumed (not the bytes it
/// buffered): where in the compressed file a member ends or fails.
struct Consumed<R> {
    inner: R,
    consumed: u64,
}

impl<R: BufRead> Read for Consumed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Consumed<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.consumed += amount as u64;
        self.inner.consume(amount);
    }
}

/// Decoded bytes, counted and dropped.
struct Counter(u64);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether a decoding failure is the underlying file's own read error (not damage).
fn is_read_error(error: &io::Error) -> bool {
    !matches!(
        error.kind(),
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
    )
}

/// Decodes a gzip stream into nothing, member by member, and reports how much of it can be
/// trusted; see the module docs.
fn check_gzip(file: &mut dyn Read, path: &Path) -> Result<Integrity> {
    let mut input = Consumed {
        inner: BufReader::with_capacity(CHECK_BUFFER, file),
        consumed: 0,
    };
    let mut verified = 0u64;
    loop {
        let more = input.fill_buf().map_err(|source| PipelineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if more.is_empty() {
            return Ok(Integrity {
                readable: verified,
                error: None,
            });
        }
        let mut decoded = Counter(0);
        if let Err(source) = io::copy(&mut GzDecoder::new(&mut input), &mut decoded) {
            if is_read_error(&source) {
                return Err(PipelineError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
            let source = match source.kind() {
                io::ErrorKind::UnexpectedEof => io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file ends inside a gzip member (truncated)",
                ),
                _ => source,
            };
            return Ok(Integrity {
                readable: verified,
                error: Some(PipelineError::Gzip {
                    path: path.to_path_buf(),
                    compressed_offset: input.consumed,
                    source,
                }),
            });
        }
        verified += decoded.0;
    }
}

#[cfg(test)]
mod tests {
    use crate::config::BadRecordPolicy;
    use crate::error::PipelineError;
    use crate::source::tests::{gzip_member, numbered_docs, opts, read_all, texts, write};
    use crate::source::{check_compressed, BadRecordCounts};

    #[test]
    fn gzip_json_and_text_files_are_read_through_all_members() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = gzip_member(b"{\"text\": \"member one\"}\n");
        bytes.extend(gzip_member(b"{\"text\": \"member two\"}\n"));
        let c4 = write(dir.path(), "c4-train.00000.json.gz", &bytes);
        let text = write(
            dir.path(),
            "b.txt.gz",
            &gzip_member(b"plain a\nplain b\n\nc\n"),
        );
        let bare = write(dir.path(), "c.GZ", &gzip_member(b"bare\n"));
        let (docs, bad) = read_all(vec![c4, text, bare], opts(BadRecordPolicy::Fail)).unwrap();
        assert_eq!(
            texts(docs),
            vec![
                vec!["member one".to_string()],
                vec!["member two".to_string()],
                vec!["plain a".to_string(), "plain b".to_string()],
                vec!["c".to_string()],
                vec!["bare".to_string()],
            ]
        );
        assert_eq!(bad.total(), 0);
    }

    #[test]
    fn a_truncated_gzip_file_is_counted_or_fatal_naming_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (first_text, first_docs) = numbered_docs(10);
        let (text, _) = numbered_docs(20_000);
        let first = gzip_member(&first_text);
        let whole = gzip_member(&text);
        let mut bytes = first.clone();
        bytes.extend_from_slice(&whole[..whole.len() / 2]);
        let f = write(dir.path(), "cut.txt.gz", &bytes);
        let g = write(dir.path(), "after.txt", b"after\n");
        // skip: the intact first member is kept, nothing of the cut one, the file is
        // counted and the next file is read.
        let (docs, bad) = read_all(vec![f.clone(), g], opts(BadRecordPolicy::Skip)).unwrap();
        let mut expected = first_docs;
        expected.push(vec!["after".to_string()]);
        assert_eq!(texts(docs), expected);
        assert_eq!(
            bad,
            BadRecordCounts {
                unreadable_files: 1,
                ..Default::default()
            }
        );
        // fail: an error naming the file and the compressed offset of the cut.
        let err = read_all(vec![f.clone()], opts(BadRecordPolicy::Fail)).unwrap_err();
        assert!(
            matches!(err, PipelineError::Gzip { compressed_offset, .. } if compressed_offset == bytes.len() as u64),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&f.display().to_string()), "{message}");
        assert!(message.contains("truncated"), "{message}");
    }

    #[test]
    fn a_flipped_byte_in_a_gzip_member_is_detected_and_none_of_its_text_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let (first_text, first_docs) = numbered_docs(10);
        let (text, _) = numbered_docs(5_000);
        let first = gzip_member(&first_text);
        let member = gzip_member(&text);
        let g = write(dir.path(), "after.txt", b"after\n");
        // Positions across the deflate payload and the CRC trailer (past the 10-byte header).
        for k in 1..16 {
            let at = 10 + (member.len() - 10) * k / 16;
            let mut bytes = first.clone();
            let mut damaged = member.clone();
            damaged[at] ^= 0x10;
            bytes.extend_from_slice(&damaged);
            let f = write(dir.path(), "flipped.txt.gz", &bytes);
            let (docs, bad) =
                read_all(vec![f.clone(), g.clone()], opts(BadRecordPolicy::Skip)).unwrap();
            let mut expected = first_docs.clone();
            expected.push(vec!["after".to_string()]);
            assert_eq!(texts(docs), expected, "flip at {at}");
            assert_eq!(bad.unreadable_files, 1, "flip at {at}");
            let err = check_compressed(&[f.clone().into()], 1).unwrap_err();
            assert!(
                matches!(err, PipelineError::Gzip { compressed_offset, .. } if compressed_offset >= first.len() as u64),
                "flip at {at}: {err:?}"
            );
        }
    }

    #[test]
    fn a_plain_file_named_gz_is_counted_or_fatal_and_an_empty_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "plain.jsonl.gz", b"{\"text\": \"not gzip\"}\n");
        let g = write(dir.path(), "after.txt", b"after\n");
        let (docs, bad) = read_all(vec![f.clone(), g], opts(BadRecordPolicy::Skip)).unwrap();
        assert_eq!(texts(docs), vec![vec!["after".to_string()]]);
        assert_eq!(bad.unreadable_files, 1);
        let err = read_all(vec![f.clone()], opts(BadRecordPolicy::Fail)).unwrap_err();
        assert!(matches!(err, PipelineError::Gzip { .. }), "{err:?}");
        assert!(err.to_string().contains(&f.display().to_string()), "{err}");
        let e = write(dir.path(), "empty.txt.gz", b"");
        let (docs, bad) = read_all(vec![e], opts(BadRecordPolicy::Fail)).unwrap();
        assert!(docs.is_empty() && bad.total() == 0);
    }
}
