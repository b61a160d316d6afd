//! Edge cases of framing that lose data silently when they go wrong: a file's last line
//! without a newline, and invalid UTF-8 inside a piece of a split oversized line.

use super::tests::{opts, read_all, texts, write, zstd_frame};
use super::*;
use crate::config::OversizedLinePolicy;

fn s(t: &str) -> Vec<String> {
    vec![t.to_string()]
}

#[test]
fn a_last_line_without_a_newline_is_read_in_every_format_and_codec() {
    let dir = tempfile::tempdir().unwrap();
    let text = b"first line.\n\nlast line, no newline.";
    let jsonl = b"{\"text\": \"first line.\"}\n{\"text\": \"last line, no newline.\"}";
    let crlf = b"first line.\r\n\r\nlast line, no newline.\r";
    let files = [
        write(dir.path(), "a.txt", text),
        write(dir.path(), "a.txt.zst", &zstd_frame(text)),
        write(dir.path(), "a.jsonl", jsonl),
        write(dir.path(), "a.jsonl.zst", &zstd_frame(jsonl)),
        write(dir.path(), "crlf.txt", crlf),
    ];
    let split = SourceOptions {
        max_doc_bytes: 1 << 20,
        oversized_lines: OversizedLinePolicy::Split,
        ..opts(BadRecordPolicy::Fail)
    };
    for file in files {
        for options in [opts(BadRecordPolicy::Fail), split.clone()] {
            let (docs, bad) = read_all(vec![file.clone()], options).unwrap();
            assert_eq!(
                texts(docs),
                vec![s("first line."), s("last line, no newline.")],
                "{}",
                file.display()
            );
            assert_eq!(bad.total(), 0);
        }
    }
}

#[test]
fn a_last_line_without_a_newline_is_cut_into_pieces_too() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "s.txt", b"one\nthe quick brown fox");
    let options = SourceOptions {
        max_doc_bytes: 10,
        oversized_lines: OversizedLinePolicy::Split,
        ..opts(BadRecordPolicy::Fail)
    };
    let (docs, _) = read_all(vec![f], options).unwrap();
    assert_eq!(texts(docs), vec![s("one"), s("the quick"), s("brown fox")]);
}

#[test]
fn invalid_utf8_in_a_piece_of_a_split_line_is_counted_or_fatal() {
    let dir = tempfile::tempdir().unwrap();
    // The second piece of the long line holds a lone continuation byte.
    let mut body = b"before\nthe quick brown ".to_vec();
    body.extend_from_slice(b"f\x80x jumps\nafter\n");
    let f = write(dir.path(), "bad-piece.txt", &body);
    let options = |policy| SourceOptions {
        max_doc_bytes: 16,
        oversized_lines: OversizedLinePolicy::Split,
        ..opts(policy)
    };
    let (docs, bad) = read_all(vec![f.clone()], options(BadRecordPolicy::Skip)).unwrap();
    assert_eq!(bad.invalid_utf8, 1, "{bad:?}");
    assert_eq!(bad.split_lines, 1, "{bad:?}");
    let texts = texts(docs);
    assert_eq!(texts.first(), Some(&s("before")));
    assert_eq!(texts.last(), Some(&s("after")));
    assert!(texts.contains(&s("the quick brown")), "{texts:?}");
    let err = read_all(vec![f.clone()], options(BadRecordPolicy::Fail)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("{}:2:", f.display())), "{msg}");
    assert!(msg.contains("UTF-8"), "{msg}");
}
