//! The line reader: lines of a decompressed stream with a buffer capped at
//! `max_doc_bytes`, tracking each line's decompressed offset. A longer line is consumed
//! without being buffered and reported as oversized, or (plain text under
//! `oversized_lines = "split"`) cut into pieces of at most the cap.

use std::io::{self, BufRead};

/// Buffer of the line reader over decompressed bytes.
pub(crate) const READ_BUFFER: usize = 256 << 10;

/// One line, or one piece of a line, as the line reader returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineInfo {
    /// Decompressed offset of the line's (or piece's) first byte.
    pub offset: u64,
    /// The line was longer than the cap; the buffer holds nothing.
    pub oversized: bool,
    /// Split mode: this is a piece of a line longer than the cap.
    pub piece: Option<Piece>,
}

/// Where a piece lies in the line it was cut from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    /// The line's first piece.
    pub first: bool,
    /// The line's last piece.
    pub last: bool,
}

/// Reads lines with a buffer capped at `max_doc_bytes`, tracking the decompressed offset.
pub(crate) struct LineReader {
    inner: Box<dyn BufRead + Send>,
    /// Decompressed bytes consumed from `inner`.
    offset: u64,
    /// Split mode: bytes of the line being cut, read past the last piece's cut (fewer than
    /// the cap).
    carry: Vec<u8>,
    /// Split mode: a line is being cut and its last piece is still to come.
    splitting: bool,
}

impl LineReader {
    pub fn new(inner: Box<dyn BufRead + Send>) -> Self {
        Self {
            inner,
            offset: 0,
            carry: Vec::new(),
            splitting: false,
        }
    }

    /// Reads the next line into `buf` without its `\n` / `\r\n`. A line longer than `cap`
    /// is consumed up to its newline without being buffered and comes back `oversized`;
    /// with `split`, it comes back instead as pieces of at most `cap` bytes (see
    /// [`split_point`]), one a call. Neither holds more than `cap` bytes of a line.
    pub fn next_line(
        &mut self,
        buf: &mut Vec<u8>,
        cap: usize,
        split: bool,
    ) -> io::Result<Option<LineInfo>> {
        buf.clear();
        let start = self.offset - self.carry.len() as u64;
        buf.append(&mut self.carry);
        let continuing = std::mem::take(&mut self.splitting);
        let mut oversized = false;
        let mut any = continuing;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                break;
            }
            any = true;
            let newline = available.iter().position(|&b| b == b'\n');
            let content = newline.unwrap_or(available.len());
            if split {
                // A '\r' just before the newline is stripped below and does not count.
                let counted = match newline {
                    Some(_) if content > 0 && available[content - 1] == b'\r' => content - 1,
                    _ => content,
                };
                if buf.len() + counted > cap {
                    let room = cap.saturating_sub(buf.len());
                    buf.extend_from_slice(&available[..room]);
                    self.inner.consume(room);
                    self.offset += room as u64;
                    let cut = split_point(buf);
                    self.carry.extend_from_slice(&buf[cut..]);
                    buf.truncate(cut);
                    self.splitting = true;
                    return Ok(Some(LineInfo {
                        offset: start,
                        oversized: false,
                        piece: Some(Piece {
                            first: !continuing,
                            last: false,
                        }),
                    }));
                }
                buf.extend_from_slice(&available[..content]);
            } else if !oversized {
                if buf.len() + content > cap.saturating_add(1) {
                    // cap + 1 leaves room for a '\r' that is stripped below.
                    oversized = true;
                    buf.clear();
                    buf.shrink_to(READ_BUFFER);
                } else {
                    buf.extend_from_slice(&available[..content]);
                }
            }
            let used = newline.map_or(content, |i| i + 1);
            self.inner.consume(used);
            self.offset += used as u64;
            if newline.is_some() {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        if !oversized && buf.len() > cap {
            oversized = true;
            buf.clear();
        }
        Ok(Some(LineInfo {
            offset: start,
            oversized,
            piece: continuing.then_some(Piece {
                first: false,
                last: true,
            }),
        }))
    }
}

/// Where to cut a full buffer of an oversized line: just after its last ASCII whitespace
/// in the second half (so every piece but the last holds at least half the cap), else
/// before a UTF-8 character the buffer holds only part of. Never 0 for a non-empty buffer.
fn split_point(buf: &[u8]) -> usize {
    let len = buf.len();
    let half = len / 2;
    if let Some(i) = buf[half..].iter().rposition(u8::is_ascii_whitespace) {
        return half + i + 1;
    }
    // The last character starts at the last byte that is not a continuation byte (a
    // character has at most 3 of them).
    let tail = len.saturating_sub(4);
    let Some(lead) = buf[tail..]
        .iter()
        .rposition(|&b| b & 0xC0 != 0x80)
        .map(|i| tail + i)
    else {
        return len; // not UTF-8; the piece is reported as such
    };
    let width = match buf[lead] {
        b if b >= 0xF0 => 4,
        b if b >= 0xE0 => 3,
        b if b >= 0xC0 => 2,
        _ => 1,
    };
    if lead + width > len && lead > 0 {
        lead
    } else {
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    #[test]
    fn a_line_buffer_never_exceeds_the_cap() {
        let data = format!("{}\nshort\n", "y".repeat(10_000));
        let mut lines = LineReader::new(Box::new(BufReader::with_capacity(
            64,
            io::Cursor::new(data.into_bytes()),
        )));
        let mut buf = Vec::new();
        let first = lines.next_line(&mut buf, 100, false).unwrap().unwrap();
        assert!(first.oversized && buf.is_empty() && buf.capacity() < 1000);
        let second = lines.next_line(&mut buf, 100, false).unwrap().unwrap();
        assert_eq!(
            (second.offset, buf.as_slice()),
            (10_001, b"short".as_slice())
        );
        assert!(lines.next_line(&mut buf, 100, false).unwrap().is_none());
    }
}
