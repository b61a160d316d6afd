//! A fine-tuning task folder: `train.tsv`, `dev.tsv` and optionally `test.tsv`.
//!
//! 1. [`read_tsv`]: each file has a header naming its columns, `text` and `label`, and
//!    `text_b` for sentence pairs, in any order; no other column names. Fields are split on
//!    tabs (no quoting); a trailing `\r` is dropped; blank lines are skipped. A row with the
//!    wrong number of fields is an error naming the file and line (rows are never skipped).
//! 2. [`LabelSpace::infer`] decides the problem from the training labels: regression when
//!    every label parses as a finite number and at least one is not an integer (`3.8`,
//!    `0.5`), classification otherwise (labels `0`/`1`, or `positive`/`negative`). A task
//!    with integer-valued scores can be forced to regression (`--task-type regression`).
//!    Class labels get ids in sorted (byte) order of the distinct training labels.
//! 3. [`LabelSpace::target`]: a dev or test label outside the training labels (or not a
//!    number, for regression) is an error naming the file and line.
//! 4. [`encode`]: `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, segment ids 0 then 1,
//!    truncated to `max_seq_len` "longest first" ([`truncate_lengths`]), as
//!    `transformers`' fast tokenizers do with `truncation="longest_first"`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use electra_pipeline::TextTokenizer;

/// One labelled example as read.
#[derive(Debug, Clone, PartialEq)]
pub struct RawExample {
    /// The first (or only) text.
    pub text: String,
    /// The second text of a pair.
    pub text_b: Option<String>,
    /// The label as written.
    pub label: String,
    /// 1-based line in the file (for errors).
    pub line: usize,
}

/// A TSV file of examples.
#[derive(Debug, Clone, PartialEq)]
pub struct TsvFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Whether the header has `text_b`.
    pub pairs: bool,
    /// The rows, in file order.
    pub examples: Vec<RawExample>,
}

/// A malformed task file or label.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The header is not `text<TAB>label` or `text<TAB>text_b<TAB>label` (any order).
    #[error("{}:1: bad header {found:?}: {reason} (expected text<TAB>label or text<TAB>text_b<TAB>label)", path.display())]
    Header {
        path: PathBuf,
        found: String,
        reason: String,
    },
    /// A row has the wrong number of tab-separated fields.
    #[error("{}:{line}: {found} fields, the header has {expected}", path.display())]
    Fields {
        path: PathBuf,
        line: usize,
        found: usize,
        expected: usize,
    },
    /// A label the training file does not have, or not a number for regression.
    #[error("{}:{line}: label {label:?} {reason}", path.display())]
    Label {
        path: PathBuf,
        line: usize,
        label: String,
        reason: String,
    },
    /// The file has no examples.
    #[error("{}: no examples", path.display())]
    Empty { path: PathBuf },
}

/// Reads a task TSV file (see the [module docs](self)).
pub fn read_tsv(path: &Path) -> Result<TsvFile, TaskError> {
    let text = std::fs::read_to_string(path).map_err(|source| TaskError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_tsv(&text, path)
}

/// Parses TSV text; `path` names it in errors.
pub fn parse_tsv(text: &str, path: &Path) -> Result<TsvFile, TaskError> {
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate();
    let header = lines.next().map(|(_, l)| l).unwrap_or("");
    let columns: Vec<&str> = header.split('\t').collect();
    let header_error = |reason: &str| TaskError::Header {
        path: path.to_path_buf(),
        found: header.to_string(),
        reason: reason.to_string(),
    };
    let find = |name: &str| columns.iter().position(|c| *c == name);
    if let Some(other) = columns
        .iter()
        .find(|c| !["text", "text_b", "label"].contains(c))
    {
        return Err(header_error(&format!("unknown column {other:?}")));
    }
    let (Some(text_col), Some(label_col)) = (find("text"), find("label")) else {
        return Err(header_error("needs the columns text and label"));
    };
    let text_b_col = find("text_b");
    let expected = 2 + usize::from(text_b_col.is_some());
    if columns.len() != expected {
        return Err(header_error("a column is repeated"));
    }
    let mut examples = Vec::new();
    for (index, line) in lines {
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != expected {
            return Err(TaskError::Fields {
                path: path.to_path_buf(),
                line: index + 1,
                found: fields.len(),
                expected,
            });
        }
        examples.push(RawExample {
            text: fields[text_col].to_string(),
            text_b: text_b_col.map(|c| fields[c].to_string()),
            label: fields[label_col].trim().to_string(),
            line: index + 1,
        });
    }
    Ok(TsvFile {
        path: path.to_path_buf(),
        pairs: text_b_col.is_some(),
        examples,
    })
}

/// Classification or regression, as asked on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TaskType {
    /// Regression when every training label is a number and one is not an integer.
    #[default]
    Auto,
    /// One class per distinct training label.
    Classification,
    /// Labels are numbers; one output, mean squared error.
    Regression,
}

/// What the labels mean: class names (sorted, id = index) or numbers.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelSpace {
    /// Class names by id.
    Classes(Vec<String>),
    /// Real-valued targets.
    Regression,
}

/// A label turned into a training target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// A class id.
    Class(usize),
    /// A number.
    Value(f64),
}

fn parse_number(label: &str) -> Option<f64> {
    label.parse::<f64>().ok().filter(|v| v.is_finite())
}

impl LabelSpace {
    /// Decides the label space from the training file (see the [module docs](self)).
    pub fn infer(train: &TsvFile, task_type: TaskType) -> Result<Self, TaskError> {
        if train.examples.is_empty() {
            return Err(TaskError::Empty {
                path: train.path.clone(),
            });
        }
        let numbers: Option<Vec<f64>> = train
            .examples
            .iter()
            .map(|e| parse_number(&e.label))
            .collect();
        let regression = match task_type {
            TaskType::Classification => false,
            TaskType::Regression => true,
            TaskType::Auto => numbers
                .as_ref()
                .is_some_and(|v| v.iter().any(|x| x.fract() != 0.0)),
        };
        if regression {
            // Report the first label that is not a number.
            for e in &train.examples {
                if parse_number(&e.label).is_none() {
                    return Err(TaskError::Label {
                        path: train.path.clone(),
                        line: e.line,
                        label: e.label.clone(),
                        reason: "is not a number (regression)".into(),
                    });
                }
            }
            return Ok(LabelSpace::Regression);
        }
        let classes: BTreeSet<&str> = train.examples.iter().map(|e| e.label.as_str()).collect();
        Ok(LabelSpace::Classes(
            classes.into_iter().map(String::from).collect(),
        ))
    }

    /// Outputs of the head: the number of classes, or 1.
    pub fn num_outputs(&self) -> usize {
        match self {
            LabelSpace::Classes(c) => c.len(),
            LabelSpace::Regression => 1,
        }
    }

    /// The `id2label` names: the classes, or one name for regression.
    pub fn names(&self) -> Vec<String> {
        match self {
            LabelSpace::Classes(c) => c.clone(),
            LabelSpace::Regression => vec!["LABEL_0".to_string()],
        }
    }

    /// The target of `example` from `file`; an unknown class or a non-number is an error.
    pub fn target(&self, example: &RawExample, file: &Path) -> Result<Target, TaskError> {
        let error = |reason: String| TaskError::Label {
            path: file.to_path_buf(),
            line: example.line,
            label: example.label.clone(),
            reason,
        };
        match self {
            LabelSpace::Classes(classes) => classes
                .binary_search(&example.label)
                .map(Target::Class)
                .map_err(|_| {
                    let shown: Vec<&str> = classes.iter().take(10).map(String::as_str).collect();
                    let more = if classes.len() > 10 { ", ..." } else { "" };
                    error(format!(
                        "is not a training label ({}{more})",
                        shown.join(", ")
                    ))
                }),
            LabelSpace::Regression => parse_number(&example.label)
                .map(Target::Value)
                .ok_or_else(|| error("is not a number (regression)".into())),
        }
    }
}

/// One tokenized example.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// Token ids with `[CLS]` and `[SEP]`.
    pub input_ids: Vec<i64>,
    /// Segment ids: 0 through the first `[SEP]`, then 1.
    pub segment_ids: Vec<i64>,
    /// The label.
    pub target: Target,
    /// Whether tokens were cut to fit `max_seq_len`.
    pub truncated: bool,
}

/// How many tokens of `a` and `b` survive in `budget` under longest-first truncation, as
/// the `tokenizers` crate (and so `transformers`' fast tokenizers) computes it: the
/// shorter side stays whole when the longer one can make room, else the shorter side
/// keeps `budget / 2` and the longer the rest (on equal lengths, `b` is the longer).
pub fn truncate_lengths(a: usize, b: usize, budget: usize) -> (usize, usize) {
    if a + b <= budget {
        return (a, b);
    }
    let swapped = a > b;
    let short = a.min(b);
    let (short_kept, long_kept) = if short > budget - short.min(budget) {
        (budget / 2, budget / 2 + budget % 2)
    } else {
        (short, budget - short)
    };
    if swapped {
        (long_kept, short_kept)
    } else {
        (short_kept, long_kept)
    }
}

/// Tokenizes an example: `[CLS] a [SEP] (b [SEP])`, at most `max_seq_len` tokens.
pub fn encode(
    tokenizer: &TextTokenizer,
    example: &RawExample,
    target: Target,
    max_seq_len: usize,
) -> electra_pipeline::Result<Encoded> {
    let special = tokenizer.special();
    let mut word_starts = Vec::new();
    let mut a = Vec::new();
    tokenizer.encode_sentence(&example.text, &mut a, &mut word_starts)?;
    let mut b = Vec::new();
    if let Some(text_b) = &example.text_b {
        tokenizer.encode_sentence(text_b, &mut b, &mut word_starts)?;
    }
    let specials = if example.text_b.is_some() { 3 } else { 2 };
    let (keep_a, keep_b) = truncate_lengths(a.len(), b.len(), max_seq_len.saturating_sub(specials));
    let mut input_ids = Vec::with_capacity(keep_a + keep_b + specials);
    input_ids.push(i64::from(special.cls));
    input_ids.extend(a[..keep_a].iter().map(|&id| i64::from(id)));
    input_ids.push(i64::from(special.sep));
    let first_segment = input_ids.len();
    if example.text_b.is_some() {
        input_ids.extend(b[..keep_b].iter().map(|&id| i64::from(id)));
        input_ids.push(i64::from(special.sep));
    }
    let mut segment_ids = vec![0i64; input_ids.len()];
    for s in &mut segment_ids[first_segment..] {
        *s = 1;
    }
    Ok(Encoded {
        input_ids,
        segment_ids,
        target,
        truncated: keep_a + keep_b < a.len() + b.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TsvFile, TaskError> {
        parse_tsv(text, Path::new("task/train.tsv"))
    }

    #[test]
    fn single_sentences_and_pairs_parse_with_either_header() {
        let single = parse("text\tlabel\nhello world\tpos\r\nbad day\tneg\n\n").unwrap();
        assert!(!single.pairs);
        assert_eq!(single.examples.len(), 2);
        assert_eq!(single.examples[1].text, "bad day");
        assert_eq!(single.examples[1].label, "neg");
        assert_eq!(single.examples[1].line, 3);

        let pairs = parse("text\ttext_b\tlabel\na\tb\t1\n").unwrap();
        assert!(pairs.pairs);
        assert_eq!(pairs.examples[0].text_b.as_deref(), Some("b"));
        // Columns may come in any order.
        let reordered = parse("label\ttext\n0.5\tsome text\n").unwrap();
        assert_eq!(reordered.examples[0].text, "some text");
        assert_eq!(reordered.examples[0].label, "0.5");
    }

    #[test]
    fn bad_rows_and_headers_name_the_file_and_line() {
        let err = parse("text\tlabel\nok\tpos\nno label here\n")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "task/train.tsv:3: 1 fields, the header has 2");
        let err = parse("text\ttext_b\tlabel\na\tb\tc\td\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("task/train.tsv:2: 4 fields"), "{err}");
        let err = parse("sentence\tlabel\nx\ty\n").unwrap_err().to_string();
        assert!(
            err.contains("task/train.tsv:1") && err.contains("\"sentence\""),
            "{err}"
        );
        assert!(parse("text\ttext\nx\ty\n").is_err());
        assert!(parse("text\nx\n").is_err());
    }

    #[test]
    fn labels_get_sorted_ids_and_unknown_ones_are_errors() {
        let train = parse("text\tlabel\na\tsport\nb\tbusiness\nc\ttech\nd\tsport\n").unwrap();
        let space = LabelSpace::infer(&train, TaskType::Auto).unwrap();
        assert_eq!(
            space,
            LabelSpace::Classes(vec!["business".into(), "sport".into(), "tech".into()])
        );
        assert_eq!(
            space.target(&train.examples[0], &train.path).unwrap(),
            Target::Class(1)
        );
        let dev = parse_tsv(
            "text\tlabel\nx\tsport\ny\tpolitics\n",
            Path::new("t/dev.tsv"),
        )
        .unwrap();
        let err = space
            .target(&dev.examples[1], &dev.path)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("t/dev.tsv:3: label \"politics\" is not a training label"),
            "{err}"
        );
    }

    #[test]
    fn regression_needs_a_non_integer_number_or_the_flag() {
        let scores = parse("text\tlabel\na\t3.8\nb\t1\nc\t5.0\n").unwrap();
        assert_eq!(
            LabelSpace::infer(&scores, TaskType::Auto).unwrap(),
            LabelSpace::Regression
        );
        let ints = parse("text\tlabel\na\t0\nb\t1\n").unwrap();
        assert_eq!(
            LabelSpace::infer(&ints, TaskType::Auto).unwrap(),
            LabelSpace::Classes(vec!["0".into(), "1".into()])
        );
        assert_eq!(
            LabelSpace::infer(&ints, TaskType::Regression).unwrap(),
            LabelSpace::Regression
        );
        assert!(matches!(
            LabelSpace::infer(&scores, TaskType::Classification).unwrap(),
            LabelSpace::Classes(c) if c.len() == 3
        ));
        let mixed = parse("text\tlabel\na\t0.5\nb\thigh\n").unwrap();
        assert!(matches!(
            LabelSpace::infer(&mixed, TaskType::Auto).unwrap(),
            LabelSpace::Classes(_)
        ));
        let err = LabelSpace::infer(&mixed, TaskType::Regression)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("task/train.tsv:3: label \"high\""), "{err}");
        assert_eq!(
            LabelSpace::Regression
                .target(&scores.examples[0], &scores.path)
                .unwrap(),
            Target::Value(3.8)
        );
    }

    #[test]
    fn longest_first_truncation_trims_the_longer_side() {
        assert_eq!(truncate_lengths(3, 4, 10), (3, 4));
        assert_eq!(truncate_lengths(3, 20, 10), (3, 7));
        assert_eq!(truncate_lengths(20, 2, 10), (8, 2));
        assert_eq!(truncate_lengths(20, 20, 10), (5, 5));
        assert_eq!(truncate_lengths(20, 20, 9), (4, 5));
        assert_eq!(truncate_lengths(6, 5, 9), (5, 4));
        assert_eq!(truncate_lengths(5, 6, 9), (4, 5));
        assert_eq!(truncate_lengths(30, 0, 10), (10, 0));
    }
}
