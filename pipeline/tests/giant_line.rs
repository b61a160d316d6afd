//! One line of 300 MB with no newline, read through a zstd file with `max_doc_bytes` =
//! 1 MiB: the reader's memory stays bounded whether the line is rejected or split, and
//! split keeps every byte. A test binary of its own, so that the peak RSS it measures is
//! its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;

use electra_pipeline::source::{sentences, SourceOptions};
use electra_pipeline::{BadRecordCounts, BadRecordPolicy, DocumentReader, OversizedLinePolicy};

/// Bytes of the giant line.
const LINE_BYTES: usize = 300 << 20;
/// `max_doc_bytes`.
const CAP: usize = 1 << 20;
/// Allowed growth of the peak RSS while reading.
const MAX_GROWTH: u64 = 64 << 20;

const WORDS: [&str; 16] = [
    "the", "whale", "sea", "ishmael", "café", "naïve", "harpoon", "ahab", "deck", "wind", "sail",
    "white", "ocean", "rope", "ship", "storm",
];

/// The giant line's bytes, in order: words from a small LCG, one space between them.
struct Words {
    state: u64,
    pending: Vec<u8>,
    at: usize,
    left: usize,
}

impl Words {
    fn new() -> Self {
        Self {
            state: 0x9E37_79B9_7F4A_7C15,
            pending: Vec::new(),
            at: 0,
            left: LINE_BYTES,
        }
    }

    /// The next `n` bytes (fewer at the end) appended to `out`.
    fn take(&mut self, n: usize, out: &mut Vec<u8>) {
        let mut want = n.min(self.left);
        self.left -= want;
        while want > 0 {
            if self.at == self.pending.len() {
                self.pending.clear();
                self.at = 0;
                while self.pending.len() < 4096 {
                    self.state = self
                        .state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    self.pending
                        .extend_from_slice(WORDS[(self.state >> 60) as usize].as_bytes());
                    self.pending.push(b' ');
                }
            }
            let k = want.min(self.pending.len() - self.at);
            out.extend_from_slice(&self.pending[self.at..self.at + k]);
            self.at += k;
            want -= k;
        }
        // The line must not end in a space (it would be trimmed off the last piece).
        if self.left == 0 && out.last() == Some(&b' ') {
            out.pop();
            out.push(b'x');
        }
    }
}

/// `first doc`, the giant line (no newline), a blank line, `last doc`.
fn write_corpus(path: &Path) {
    let file = std::fs::File::create(path).unwrap();
    let mut encoder = zstd::stream::Encoder::new(file, 1).unwrap();
    encoder.include_checksum(true).unwrap();
    encoder.write_all(b"first doc\n\n").unwrap();
    let mut words = Words::new();
    let mut buf = Vec::with_capacity(1 << 20);
    loop {
        buf.clear();
        words.take(1 << 20, &mut buf);
        if buf.is_empty() {
            break;
        }
        encoder.write_all(&buf).unwrap();
    }
    encoder.write_all(b"\n\nlast doc\n").unwrap();
    encoder.finish().unwrap().sync_all().unwrap();
}

fn vm_hwm() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb << 10
}

/// Resets the peak RSS to the current RSS where the kernel allows it (Linux 4.0+); where
/// it does not, the growth measured is over the peak so far, which writing the corpus keeps
/// small.
fn reset_hwm() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[test]
fn a_giant_line_is_read_in_bounded_memory_and_split_keeps_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("giant.txt.zst");
    write_corpus(&path);
    let options = |oversized_lines| SourceOptions {
        max_doc_bytes: CAP,
        oversized_lines,
        on_bad_record: BadRecordPolicy::Skip,
        ..SourceOptions::default()
    };

    // Rejected: consumed without being buffered, counted.
    let reset = reset_hwm();
    let before = vm_hwm();
    let mut texts = Vec::new();
    let mut bad = BadRecordCounts::default();
    for chunk in
        DocumentReader::new(vec![path.clone()], options(OversizedLinePolicy::Reject)).unwrap()
    {
        let chunk = chunk.unwrap();
        bad.add(&chunk.bad_records);
        texts.extend(sentences(&chunk.batch));
    }
    let reject_growth = vm_hwm().saturating_sub(before);
    assert_eq!(texts, vec!["first doc", "last doc"]);
    // The line was a document of its own, now without a sentence: also counted empty.
    assert_eq!(
        bad,
        BadRecordCounts {
            oversized_lines: 1,
            empty_documents: 1,
            ..Default::default()
        }
    );

    // Split: pieces of at most CAP bytes, cut after a space, that give the line back.
    reset_hwm();
    let before = vm_hwm();
    let mut expected = Words::new();
    let mut want = Vec::with_capacity(CAP);
    let (mut pieces, mut piece_bytes, mut short) = (0usize, 0usize, 0usize);
    let mut others = Vec::new();
    let mut bad = BadRecordCounts::default();
    for chunk in
        DocumentReader::new(vec![path.clone()], options(OversizedLinePolicy::Split)).unwrap()
    {
        let chunk = chunk.unwrap();
        bad.add(&chunk.bad_records);
        for s in sentences(&chunk.batch) {
            if s == "first doc" || s == "last doc" {
                others.push(s);
                continue;
            }
            assert!(s.len() <= CAP, "piece of {}", s.len());
            short += usize::from(s.len() < CAP / 2);
            want.clear();
            expected.take(s.len(), &mut want);
            assert!(want == s.as_bytes(), "piece {pieces} differs from the line");
            want.clear();
            expected.take(1, &mut want);
            assert!(want.is_empty() || want == b" ", "a cut not at a space");
            pieces += 1;
            piece_bytes += s.len();
        }
    }
    let split_growth = vm_hwm().saturating_sub(before);
    assert_eq!(others, vec!["first doc", "last doc"]);
    assert!(short <= 1, "only the last piece may be under half the cap");
    assert_eq!(expected.left, 0, "the pieces cover the whole line");
    // Every cut drops one space: the pieces and the cuts give the line's length.
    assert_eq!(piece_bytes + pieces - 1, LINE_BYTES);
    assert!(
        (LINE_BYTES.div_ceil(CAP)..=LINE_BYTES.div_ceil(CAP - 16)).contains(&pieces),
        "{pieces} pieces"
    );
    assert_eq!(
        bad,
        BadRecordCounts {
            split_lines: 1,
            ..Default::default()
        }
    );
    eprintln!(
        "giant line of {} MiB, max_doc_bytes {} MiB: peak RSS growth reject {:.1} MiB, split {:.1} MiB (peak reset: {reset}), {pieces} pieces",
        LINE_BYTES >> 20,
        CAP >> 20,
        reject_growth as f64 / (1 << 20) as f64,
        split_growth as f64 / (1 << 20) as f64,
    );
    assert!(reject_growth < MAX_GROWTH, "reject: {reject_growth} bytes");
    assert!(split_growth < MAX_GROWTH, "split: {split_growth} bytes");
}
