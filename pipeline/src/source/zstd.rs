//! zstd as a [`Codec`]: multi-frame files (concatenated frames are read in turn), checked
//! before reading.
//!
//! The check decodes the file into nothing: a frame is trusted only once zstd has decoded
//! it to its end (and verified its content checksum, when the frame has one). Reading then
//! stops at the end of the last frame that checked out; a truncated file gives the text
//! decoded before its end (zstd only emits whole blocks), and then the error.

use std::io::{self, Read};
use std::path::Path;

use super::codec::{Codec, Integrity};
use crate::error::{PipelineError, Result};

/// Zstandard (`.zst`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Zstd;

impl Codec for Zstd {
    fn extension(&self) -> &'static str {
        "zst"
    }

    fn check(&self, raw: &mut dyn Read, path: &Path) -> Result<Integrity> {
        check_zstd(raw, path)
    }

    fn decoder(&self, raw: Box<dyn Read + Send>, path: &Path) -> Result<Box<dyn Read + Send>> {
        let decoder = ::zstd::stream::read::Decoder::new(raw)
            .map_err(|source| self.error(path, 0, source))?;
        Ok(Box::new(decoder))
    }

    fn error(&self, path: &Path, compressed_offset: u64, source: io::Error) -> PipelineError {
        PipelineError::Zstd {
            path: path.to_path_buf(),
            compressed_offset,
            source,
        }
    }
}

/// Decodes a zstd stream into nothing (bounded memory) and reports how much of it can be
/// trusted; see the module docs.
fn check_zstd(file: &mut dyn Read, path: &Path) -> Result<Integrity> {
    use ::zstd::stream::raw::{Decoder, Operation};
    let io_err = |source| PipelineError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut decoder = Decoder::new().map_err(io_err)?;
    let mut input = vec![0u8; ::zstd::zstd_safe::DCtx::in_size()];
    let mut output = vec![0u8; ::zstd::zstd_safe::DCtx::out_size()];
    // Compressed bytes consumed, decompressed bytes produced, and produced by the end of the
    // last complete frame.
    let (mut consumed, mut produced, mut verified) = (0u64, 0u64, 0u64);
    let mut in_frame = false;
    let mut frame_ended = false;
    let failed = |consumed: u64, readable: u64, source: io::Error| Integrity {
        readable,
        error: Some(PipelineError::Zstd {
            path: path.to_path_buf(),
            compressed_offset: consumed,
            source,
        }),
    };
    loop {
        let n = match file.read(&mut input) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        };
        let mut pos = 0;
        loop {
            if frame_ended && pos < n {
                decoder.reinit().map_err(io_err)?;
                frame_ended = false;
            }
            let status = match decoder.run_on_buffers(&input[pos..n], &mut output) {
                Ok(status) => status,
                Err(e) => return Ok(failed(consumed + pos as u64, verified, e)),
            };
            pos += status.bytes_read;
            produced += status.bytes_written as u64;
            in_frame = status.remaining != 0;
            if !in_frame {
                verified = produced;
                frame_ended = true;
            }
            // Done with this input once it is consumed and the output is flushed.
            if pos == n && status.bytes_written < output.len() {
                break;
            }
            if status.bytes_read == 0 && status.bytes_written == 0 && in_frame {
                let source = io::Error::other("the zstd decoder makes no progress");
                return Ok(failed(consumed + pos as u64, verified, source));
            }
        }
        consumed += n as u64;
    }
    if in_frame {
        let source = io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file ends inside a zstd frame (truncated)",
        );
        return Ok(failed(consumed, produced, source));
    }
    Ok(Integrity {
        readable: produced,
        error: None,
    })
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::config::BadRecordPolicy;
    use crate::error::PipelineError;
    use crate::source::tests::{numbered_docs, opts, read_all, texts, write, zstd_frame};
    use crate::source::BadRecordCounts;

    #[test]
    fn multi_frame_zstd_is_read_through_all_frames() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = zstd_frame(b"frame one a\nframe one b\n\n");
        bytes.extend(zstd_frame(b"frame two\n"));
        let f = write(dir.path(), "multi.txt.zst", &bytes);
        let g = write(dir.path(), "plain.txt", b"third file\n");
        let (docs, _) = read_all(vec![f, g], opts(BadRecordPolicy::Fail)).unwrap();
        let ids: Vec<u64> = docs.iter().map(|d| d.0).collect();
        assert_eq!(ids, vec![0, 1, 1 << 32]);
        assert_eq!(docs[1].1, 25);
        assert_eq!(docs[1].2, vec!["frame two".to_string()]);
    }

    fn corrupt_zstd(dir: &Path) -> PathBuf {
        let mut bytes = zstd_frame(b"kept doc\n\n");
        let second = zstd_frame(&"lost doc line\n".repeat(1000).into_bytes());
        bytes.extend_from_slice(&second[..second.len() / 2]); // truncated frame
        write(dir, "corrupt.txt.zst", &bytes)
    }

    #[test]
    fn a_corrupt_zstd_file_fails_naming_it_under_fail() {
        let dir = tempfile::tempdir().unwrap();
        let f = corrupt_zstd(dir.path());
        let err = read_all(vec![f.clone()], opts(BadRecordPolicy::Fail)).unwrap_err();
        assert!(
            matches!(err, PipelineError::Zstd { compressed_offset, .. } if compressed_offset > 0),
            "{err:?}"
        );
        assert!(err.to_string().contains(&f.display().to_string()), "{err}");
        // A plain file named .zst, too.
        let g = write(dir.path(), "plain.txt.zst", b"not zstd at all\n");
        let err = read_all(vec![g], opts(BadRecordPolicy::Fail)).unwrap_err();
        assert!(matches!(err, PipelineError::Zstd { .. }), "{err:?}");
    }

    #[test]
    fn a_corrupt_zstd_file_is_counted_and_skipped_under_skip() {
        let dir = tempfile::tempdir().unwrap();
        let f = corrupt_zstd(dir.path());
        let g = write(dir.path(), "after.txt", b"after\n");
        let (docs, bad) = read_all(vec![f, g], opts(BadRecordPolicy::Skip)).unwrap();
        let texts: Vec<Vec<String>> = docs.into_iter().map(|d| d.2).collect();
        assert_eq!(
            texts,
            vec![vec!["kept doc".to_string()], vec!["after".to_string()]]
        );
        assert_eq!(bad.unreadable_files, 1);
    }

    #[test]
    fn a_zstd_file_cut_in_half_is_counted_or_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let (text, expected) = numbered_docs(20_000);
        let whole = zstd_frame(&text);
        let cut = &whole[..whole.len() / 2];
        let f = write(dir.path(), "cut.txt.zst", cut);
        let g = write(dir.path(), "after.txt", b"after\n");
        // skip: the text decoded before the cut comes through (zstd emits whole blocks
        // only, so it is intact), the document the cut falls in is dropped, the file is
        // counted and the next file is read.
        let (docs, bad) = read_all(vec![f.clone(), g], opts(BadRecordPolicy::Skip)).unwrap();
        let docs = texts(docs);
        let (last, kept) = docs.split_last().unwrap();
        assert_eq!(last, &vec!["after".to_string()]);
        assert!(
            kept.len() > 1000 && kept.len() < expected.len(),
            "{}",
            kept.len()
        );
        assert_eq!(kept, &expected[..kept.len()], "a prefix, intact");
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
            matches!(err, PipelineError::Zstd { compressed_offset, .. } if compressed_offset == cut.len() as u64),
            "{err:?}"
        );
        assert!(err.to_string().contains(&f.display().to_string()), "{err}");
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn a_flipped_byte_in_a_checksummed_zstd_frame_is_detected_and_none_of_its_text_is_read() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let checksummed = |bytes: &[u8]| {
            let mut encoder = ::zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
            encoder.include_checksum(true).unwrap();
            encoder.write_all(bytes).unwrap();
            encoder.finish().unwrap()
        };
        // A first frame that stays intact, then a multi-block frame that gets damaged.
        let (first_text, first_docs) = numbered_docs(10);
        let (text, _) = numbered_docs(20_000);
        let first = checksummed(&first_text);
        let frame = checksummed(&text);
        assert!(frame.len() > 50_000, "{} bytes", frame.len());
        let g = write(dir.path(), "after.txt", b"after\n");
        let mut detected = 0;
        // Positions across the payload (past the frame header, before the checksum).
        for k in 1..16 {
            let at = frame.len() * k / 16;
            let mut bytes = first.clone();
            let mut damaged = frame.clone();
            damaged[at] ^= 0x10;
            bytes.extend_from_slice(&damaged);
            let f = write(dir.path(), "flipped.txt.zst", &bytes);
            let (docs, bad) =
                read_all(vec![f.clone(), g.clone()], opts(BadRecordPolicy::Skip)).unwrap();
            let mut expected = first_docs.clone();
            expected.push(vec!["after".to_string()]);
            assert_eq!(
                texts(docs),
                expected,
                "flip at {at}: no text of the damaged frame"
            );
            assert_eq!(bad.unreadable_files, 1, "flip at {at}");
            let err = read_all(vec![f.clone()], opts(BadRecordPolicy::Fail)).unwrap_err();
            assert!(
                matches!(err, PipelineError::Zstd { compressed_offset, .. } if compressed_offset >= first.len() as u64),
                "flip at {at}: {err:?}"
            );
            assert!(err.to_string().contains(&f.display().to_string()), "{err}");
            detected += 1;
        }
        assert_eq!(detected, 15);
    }

    #[test]
    fn a_plain_file_named_zst_is_counted_or_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "plain.txt.zst",
            b"not zstd at all\n\nsecond doc\n",
        );
        let g = write(dir.path(), "after.txt", b"after\n");
        let (docs, bad) = read_all(vec![f.clone(), g], opts(BadRecordPolicy::Skip)).unwrap();
        assert_eq!(texts(docs), vec![vec!["after".to_string()]]);
        assert_eq!(
            bad,
            BadRecordCounts {
                unreadable_files: 1,
                ..Default::default()
            }
        );
        let err = read_all(vec![f.clone()], opts(BadRecordPolicy::Fail)).unwrap_err();
        assert!(
            matches!(
                err,
                PipelineError::Zstd {
                    compressed_offset: 0,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains(&f.display().to_string()), "{err}");
        // An empty file named .zst holds no frame and no text: not an error.
        let e = write(dir.path(), "empty.txt.zst", b"");
        let (docs, bad) = read_all(vec![e], opts(BadRecordPolicy::Fail)).unwrap();
        assert!(docs.is_empty() && bad.total() == 0);
    }
}
