//! Tests of the document reader over the record formats, and helpers other modules' tests
//! share.

use std::path::{Path, PathBuf};

use arrow_array::{Array, ListArray, StringArray, UInt64Array};

use super::*;
use crate::error::{PipelineError, Result};

pub(crate) const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/corpus");

pub(crate) fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

pub(crate) fn zstd_frame(bytes: &[u8]) -> Vec<u8> {
    ::zstd::encode_all(bytes, 3).unwrap()
}

/// `bytes` as one gzip member.
pub(crate) fn gzip_member(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}
/// A document as the tests see it: (doc_id, byte_offset, sentences).
pub(crate) type Doc = (u64, u64, Vec<String>);

/// All documents of `files`, plus the summed counts.
pub(crate) fn read_all(
    files: Vec<PathBuf>,
    options: SourceOptions,
) -> Result<(Vec<Doc>, BadRecordCounts)> {
    let mut docs = Vec::new();
    let mut bad = BadRecordCounts::default();
    for chunk in DocumentReader::new(files, options)? {
        let chunk = chunk?;
        bad.add(&chunk.bad_records);
        let b = &chunk.batch;
        let ids = b.column(0).as_any().downcast_ref::<UInt64Array>().unwrap();
        let offs = b.column(2).as_any().downcast_ref::<UInt64Array>().unwrap();
        let sents = b.column(3).as_any().downcast_ref::<ListArray>().unwrap();
        for row in 0..b.num_rows() {
            let list = sents.value(row);
            let list = list.as_any().downcast_ref::<StringArray>().unwrap();
            let s: Vec<String> = (0..list.len()).map(|i| list.value(i).to_string()).collect();
            docs.push((ids.value(row), offs.value(row), s));
        }
    }
    Ok((docs, bad))
}

pub(crate) fn opts(policy: BadRecordPolicy) -> SourceOptions {
    SourceOptions {
        on_bad_record: policy,
        ..SourceOptions::default()
    }
}

/// `n` documents of two sentences each, as plain text, and the sentences expected.
pub(crate) fn numbered_docs(n: usize) -> (Vec<u8>, Vec<Vec<String>>) {
    let mut text = String::new();
    let mut docs = Vec::new();
    for i in 0..n {
        let a = format!("Document {i} opens with sentence {}.", i * 7919 % 1000);
        let b = format!("It closes with {} more words.", i * 104_729 % 997);
        text.push_str(&format!("{a}\n{b}\n\n"));
        docs.push(vec![a, b]);
    }
    (text.into_bytes(), docs)
}

pub(crate) fn texts(docs: Vec<Doc>) -> Vec<Vec<String>> {
    docs.into_iter().map(|d| d.2).collect()
}

#[test]
fn blank_lines_separate_text_documents() {
    let dir = tempfile::tempdir().unwrap();
    let text = b"  First one.\r\nSecond.\n\n \n\t\nOther doc.\n\n";
    let f = write(dir.path(), "a.txt", text);
    let (docs, bad) = read_all(vec![f], opts(BadRecordPolicy::Fail)).unwrap();
    assert_eq!(
        docs,
        vec![
            (0, 0, vec!["First one.".to_string(), "Second.".to_string()]),
            (1, 27, vec!["Other doc.".to_string()]),
        ]
    );
    assert_eq!(bad.total(), 0);
}

#[test]
fn jsonl_uses_the_configured_field_and_splits_lines() {
    let dir = tempfile::tempdir().unwrap();
    let body =
        b"{\"body\": \"Line one.\\n\\n  Line two. \"}\n\n{\"body\": \"Solo\", \"text\": \"no\"}\n";
    let f = write(dir.path(), "d.jsonl", body);
    let options = SourceOptions {
        text_field: "body".into(),
        ..opts(BadRecordPolicy::Fail)
    };
    let (docs, _) = read_all(vec![f], options).unwrap();
    assert_eq!(
        docs[0].2,
        vec!["Line one.".to_string(), "Line two.".to_string()]
    );
    assert_eq!(docs[1].2, vec!["Solo".to_string()]);
    assert_eq!(docs[1].1, 39);
}

const BAD_JSONL: &[u8] = b"{\"text\": \"good\"}\n{\"text\": oops}\n{\"other\": 1}\n{\"text\": \"\\u00e9\xff\"}\n{\"text\": \" \"}\n{\"text\": \"also good\"}\n";

#[test]
fn bad_jsonl_records_are_counted_under_skip() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "bad.jsonl", BAD_JSONL);
    let (docs, bad) = read_all(vec![f], opts(BadRecordPolicy::Skip)).unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!((docs[0].0, docs[1].0), (0, 1));
    assert_eq!(
        bad,
        BadRecordCounts {
            invalid_utf8: 1,
            malformed_json: 1,
            missing_text_field: 1,
            empty_documents: 1,
            ..Default::default()
        }
    );
}

#[test]
fn malformed_json_fails_naming_file_and_line_under_fail() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "bad.jsonl", BAD_JSONL);
    let err = read_all(vec![f.clone()], opts(BadRecordPolicy::Fail)).unwrap_err();
    assert!(
        matches!(err, PipelineError::Json { line: 2, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(&format!("{}:2:", f.display())),
        "{err}"
    );
}

#[test]
fn invalid_utf8_and_oversized_lines_are_skipped_or_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let long = "x".repeat(100);
    let text = format!("ok line\n{long}\nbad \u{1}\n\nnext\n");
    let mut bytes = text.into_bytes();
    let bad_at = bytes.iter().position(|&b| b == 1).unwrap();
    bytes[bad_at] = 0xff;
    let f = write(dir.path(), "t.txt", &bytes);
    let small = |policy| SourceOptions {
        max_doc_bytes: 50,
        ..opts(policy)
    };
    let (docs, bad) = read_all(vec![f.clone()], small(BadRecordPolicy::Skip)).unwrap();
    assert_eq!(
        docs.iter().map(|d| d.2.clone()).collect::<Vec<_>>(),
        vec![vec!["ok line".to_string()], vec!["next".to_string()]]
    );
    assert_eq!((bad.oversized_lines, bad.invalid_utf8), (1, 1));
    let err = read_all(vec![f], small(BadRecordPolicy::Fail)).unwrap_err();
    assert!(
        matches!(
            err,
            PipelineError::DocumentTooLarge {
                line: 2,
                byte_offset: 8,
                limit: 50,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_document_of_only_bad_lines_counts_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "t.txt", b"a\n\n\xff\xfe\n\nb\n");
    let (docs, bad) = read_all(vec![f], opts(BadRecordPolicy::Skip)).unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!((bad.invalid_utf8, bad.empty_documents), (1, 1));
}

#[test]
fn chunking_never_splits_documents_and_loses_nothing() {
    let files = vec![
        PathBuf::from(CORPUS).join("moby_dick.txt.zst"),
        PathBuf::from(CORPUS).join("sotu.jsonl.zst"),
    ];
    let (whole, bad_whole) = read_all(
        files.clone(),
        SourceOptions {
            chunk_bytes: usize::MAX,
            ..Default::default()
        },
    )
    .unwrap();
    let small = SourceOptions {
        chunk_bytes: 4096,
        ..Default::default()
    };
    let mut chunks = 0;
    for chunk in DocumentReader::new(files.clone(), small.clone()).unwrap() {
        let chunk = chunk.unwrap();
        assert!(chunk.batch.num_rows() > 0);
        chunks += 1;
    }
    let (split, bad_split) = read_all(files, small).unwrap();
    assert!(chunks > 10, "{chunks}");
    assert!(whole.len() > 100, "{}", whole.len());
    assert_eq!(whole, split);
    assert_eq!(bad_whole, bad_split);
    assert!(whole.iter().any(|d| d.0 >> 32 == 1));
}

#[test]
fn invalid_utf8_is_counted_or_fatal_naming_line_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let text = write(
        dir.path(),
        "t.txt",
        b"good one\n\nbad \xc3\x28 line\nkept\n\nlast\n",
    );
    let jsonl = write(
        dir.path(),
        "j.jsonl",
        b"{\"text\": \"good\"}\n{\"text\": \"bad \xc3\x28\"}\n{\"text\": \"last\"}\n",
    );
    let (docs, bad) = read_all(vec![text.clone()], opts(BadRecordPolicy::Skip)).unwrap();
    assert_eq!(
        texts(docs),
        vec![
            vec!["good one".to_string()],
            vec!["kept".to_string()],
            vec!["last".to_string()]
        ]
    );
    assert_eq!(bad.invalid_utf8, 1);
    let (docs, bad) = read_all(vec![jsonl.clone()], opts(BadRecordPolicy::Skip)).unwrap();
    assert_eq!(
        texts(docs),
        vec![vec!["good".to_string()], vec!["last".to_string()]]
    );
    assert_eq!(bad.invalid_utf8, 1);
    for (file, line, offset) in [(&text, 3, 10), (&jsonl, 2, 17)] {
        let err = read_all(vec![file.clone()], opts(BadRecordPolicy::Fail)).unwrap_err();
        assert!(
            matches!(err, PipelineError::InvalidUtf8 { line: l, byte_offset: o, .. } if l == line && o == offset),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with(&format!("{}:{line}:", file.display())),
            "{err}"
        );
    }
}

#[test]
fn empty_and_whitespace_documents_are_counted_not_emitted() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = write(
        dir.path(),
        "e.jsonl",
        b"{\"text\": \"\"}\n{\"text\": \"   \"}\n{\"text\": \"\\n \\t\\n\"}\n{\"text\": \"real\"}\n",
    );
    // In plain text a whitespace-only line is a blank line: whitespace "documents"
    // are one longer boundary and there is nothing to count.
    let text = write(
        dir.path(),
        "e.txt",
        "one\n\n   \n\t \n\u{a0}\n\ntwo\n  \n".as_bytes(),
    );
    for policy in [BadRecordPolicy::Skip, BadRecordPolicy::Fail] {
        let (docs, bad) = read_all(vec![jsonl.clone()], opts(policy)).unwrap();
        assert_eq!(texts(docs), vec![vec!["real".to_string()]]);
        assert_eq!(
            bad,
            BadRecordCounts {
                empty_documents: 3,
                ..Default::default()
            }
        );
        let (docs, bad) = read_all(vec![text.clone()], opts(policy)).unwrap();
        assert_eq!(
            texts(docs),
            vec![vec!["one".to_string()], vec!["two".to_string()]]
        );
        assert_eq!(bad.total(), 0);
    }
}

#[test]
fn a_text_field_of_another_type_or_missing_is_counted_or_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        "{\"text\": 42}",
        "{\"text\": null}",
        "{\"text\": [\"a\", \"b\"]}",
        "{\"text\": {\"inner\": \"x\"}}",
        "{\"body\": \"no text field\"}",
        "[\"not\", \"an\", \"object\"]",
        "\"a bare string\"",
    ];
    let mut body = String::from("{\"text\": \"first\"}\n");
    for l in lines {
        body.push_str(l);
        body.push('\n');
    }
    body.push_str("{\"text\": \"last\"}\n");
    let f = write(dir.path(), "types.jsonl", body.as_bytes());
    let (docs, bad) = read_all(vec![f.clone()], opts(BadRecordPolicy::Skip)).unwrap();
    assert_eq!(
        texts(docs),
        vec![vec!["first".to_string()], vec!["last".to_string()]]
    );
    assert_eq!(
        bad,
        BadRecordCounts {
            missing_text_field: lines.len() as u64,
            ..Default::default()
        }
    );
    // Each kind alone fails under fail, naming its file and line.
    for (i, l) in lines.iter().enumerate() {
        let g = write(
            dir.path(),
            &format!("one-{i}.jsonl"),
            format!("{{\"text\": \"ok\"}}\n{l}\n").as_bytes(),
        );
        let err = read_all(vec![g.clone()], opts(BadRecordPolicy::Fail)).unwrap_err();
        assert!(
            matches!(err, PipelineError::MissingTextField { line: 2, .. }),
            "{l}: {err:?}"
        );
        assert!(
            err.to_string().starts_with(&format!("{}:2:", g.display())),
            "{err}"
        );
    }
}

fn split_opts(policy: BadRecordPolicy, cap: usize) -> SourceOptions {
    SourceOptions {
        max_doc_bytes: cap,
        oversized_lines: OversizedLinePolicy::Split,
        ..opts(policy)
    }
}

#[test]
fn split_cuts_an_oversized_text_line_at_whitespace_into_documents() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "s.txt",
        b"before\nthe quick brown fox jumps over the lazy dog\nafter\n\nnext\n",
    );
    for policy in [BadRecordPolicy::Skip, BadRecordPolicy::Fail] {
        let (docs, bad) = read_all(vec![f.clone()], split_opts(policy, 16)).unwrap();
        let s = |t: &str| vec![t.to_string()];
        assert_eq!(
            docs,
            vec![
                (0, 0, s("before")),
                (1, 7, s("the quick brown")),
                (2, 23, s("fox jumps over")),
                (3, 38, s("the lazy dog")),
                (4, 51, s("after")),
                (5, 58, s("next")),
            ]
        );
        assert_eq!(
            bad,
            BadRecordCounts {
                split_lines: 1,
                ..Default::default()
            }
        );
    }
}

#[test]
fn a_document_without_blank_lines_is_cut_at_max_doc_bytes_and_keeps_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..1000)
        .map(|i| format!("line {i:04} {}", "x".repeat(90)))
        .collect();
    let f = write(
        dir.path(),
        "one-doc.txt",
        (lines.join("\n") + "\n").as_bytes(),
    );
    let options = SourceOptions {
        max_doc_bytes: 2000,
        ..opts(BadRecordPolicy::Fail)
    };
    let (docs, bad) = read_all(vec![f], options).unwrap();
    // Each document holds at most max_doc_bytes of text plus the line that crossed it;
    // every document that reached the cap was cut (and counted) there.
    let mut cut = 0;
    for (_, _, sentences) in &docs {
        let bytes: usize = sentences.iter().map(String::len).sum();
        assert!(bytes < 2000 + 100, "{bytes}");
        cut += u64::from(bytes >= 2000);
    }
    assert_eq!(docs.len(), 50, "1000 lines of 100 bytes, 20 a document");
    assert_eq!(bad.split_documents, cut);
    let all: Vec<String> = docs.into_iter().flat_map(|d| d.2).collect();
    assert_eq!(all, lines, "every line kept, in order");
}

#[test]
fn split_never_cuts_a_utf8_character_and_keeps_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    // No whitespace: cuts fall on character boundaries. CRLF lines of exactly the cap
    // are not split.
    let f = write(
        dir.path(),
        "u.txt",
        "ééééé\n\n😀😀😀\n\nabcd\r\n".as_bytes(),
    );
    let (docs, bad) = read_all(vec![f], split_opts(BadRecordPolicy::Fail, 5)).unwrap();
    assert_eq!(
        texts(docs),
        vec![
            vec!["éé".to_string()],
            vec!["éé".to_string()],
            vec!["é".to_string()],
            vec!["😀".to_string()],
            vec!["😀".to_string()],
            vec!["😀".to_string()],
            vec!["abcd".to_string()],
        ]
    );
    assert_eq!(bad.split_lines, 2);
    // A line of many pieces: every piece within the cap, nothing lost.
    let dir = tempfile::tempdir().unwrap();
    let words: Vec<String> = (0..5000).map(|i| format!("w{}", i * 37 % 1009)).collect();
    let line = words.join(" ");
    let f = write(dir.path(), "long.txt", format!("{line}\n").as_bytes());
    let (docs, bad) = read_all(vec![f], split_opts(BadRecordPolicy::Fail, 100)).unwrap();
    let pieces: Vec<String> = docs.into_iter().flat_map(|d| d.2).collect();
    assert!(pieces.iter().all(|p| p.len() <= 100 && p.len() >= 50));
    assert_eq!(pieces.join(" "), line);
    assert_eq!(bad.split_lines, 1);
}

#[test]
fn an_oversized_jsonl_line_is_rejected_even_under_split() {
    let dir = tempfile::tempdir().unwrap();
    let long = "y ".repeat(100);
    let f = write(
        dir.path(),
        "o.jsonl",
        format!("{{\"text\": \"short\"}}\n{{\"text\": \"{long}\"}}\n{{\"text\": \"end\"}}\n")
            .as_bytes(),
    );
    let (docs, bad) = read_all(vec![f.clone()], split_opts(BadRecordPolicy::Skip, 50)).unwrap();
    assert_eq!(
        texts(docs),
        vec![vec!["short".to_string()], vec!["end".to_string()]]
    );
    assert_eq!(
        bad,
        BadRecordCounts {
            oversized_lines: 1,
            ..Default::default()
        }
    );
    let err = read_all(vec![f.clone()], split_opts(BadRecordPolicy::Fail, 50)).unwrap_err();
    assert!(
        matches!(
            err,
            PipelineError::DocumentTooLarge {
                line: 2,
                byte_offset: 18,
                limit: 50,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(&format!("{}:2:", f.display())),
        "{err}"
    );
}
