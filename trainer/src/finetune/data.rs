//! The task's data: the TSV files read, labels mapped, fixed random subsets kept, every
//! example tokenized once ([`TaskData::load`]); the seeds' shuffles; padded batches as
//! device tensors.

use electra_model::{EncoderInput, ProblemType};
use electra_pipeline::rng::Rng;
use electra_pipeline::TextTokenizer;
use tch::{Device, Tensor};

use super::{invalid, FinetuneOptions, PAD_MULTIPLE};
use crate::error::Result;
use crate::task::{encode, read_tsv, Encoded, LabelSpace, Target, TaskError, TsvFile};

/// RNG stream tags (kept apart from the pipeline's).
pub(super) const SHUFFLE_STREAM: u64 = 0x7368_7566; // "shuf"
const SUBSET_STREAM: u64 = 0x7375_6273; // "subs"

/// The task, read and tokenized.
pub(super) struct TaskData {
    /// The training examples.
    pub train: Split,
    /// The dev examples.
    pub dev: Split,
    /// The test examples, when the task has `test.tsv`.
    pub test: Option<Split>,
    /// Class names, or regression.
    pub labels: LabelSpace,
    /// Classification or regression.
    pub problem: ProblemType,
    /// Whether the examples are sentence pairs.
    pub pairs: bool,
    /// Examples cut to `max_seq_len`, over all splits.
    pub truncated: usize,
}

impl TaskData {
    /// Reads `options.task`'s `train.tsv`, `dev.tsv` and optional `test.tsv`, keeps the
    /// subsets the options ask for and tokenizes every example.
    pub fn load(options: &FinetuneOptions, tokenizer: &TextTokenizer) -> Result<Self> {
        let mut train_file = read_tsv(&options.task.join("train.tsv"))?;
        let mut dev_file = read_tsv(&options.task.join("dev.tsv"))?;
        let test_path = options.task.join("test.tsv");
        let mut test_file = test_path
            .is_file()
            .then(|| read_tsv(&test_path))
            .transpose()?;
        for file in [&dev_file].into_iter().chain(test_file.as_ref()) {
            if file.pairs != train_file.pairs {
                return Err(invalid(
                    "--task",
                    format!(
                        "{} and {} disagree on text_b (pairs)",
                        train_file.path.display(),
                        file.path.display()
                    ),
                ));
            }
        }
        let labels = LabelSpace::infer(&train_file, options.task_type)?;
        let problem = match labels {
            LabelSpace::Regression => ProblemType::Regression,
            LabelSpace::Classes(_) => ProblemType::SingleLabelClassification,
        };
        subset(&mut train_file, options.max_train_examples);
        subset(&mut dev_file, options.max_eval_examples);
        if let Some(test) = &mut test_file {
            subset(test, options.max_eval_examples);
        }
        for file in [&dev_file].into_iter().chain(test_file.as_ref()) {
            if file.examples.is_empty() {
                return Err(TaskError::Empty {
                    path: file.path.clone(),
                }
                .into());
            }
        }
        let mut truncated = 0;
        let mut tokenize = |file: &TsvFile| {
            tokenize_split(
                file,
                &labels,
                tokenizer,
                options.max_seq_len,
                &mut truncated,
            )
        };
        let train = tokenize(&train_file)?;
        let dev = tokenize(&dev_file)?;
        let test = test_file.as_ref().map(&mut tokenize).transpose()?;
        Ok(Self {
            train,
            dev,
            test,
            pairs: train_file.pairs,
            labels,
            problem,
            truncated,
        })
    }

    /// Logs the split sizes.
    pub fn log(&self) {
        tracing::info!(
            train = self.train.examples.len(),
            dev = self.dev.examples.len(),
            test = self.test.as_ref().map_or(0, |t| t.examples.len()),
            truncated = self.truncated,
            labels = self.labels.num_outputs(),
            problem = self.problem.as_str(),
            "task loaded"
        );
    }
}

/// A tokenized split.
pub(super) struct Split {
    /// Its examples, in file order.
    pub examples: Vec<Encoded>,
}

/// Keeps a fixed random subset of `n` rows (the same whatever the seed), in file order.
fn subset(file: &mut TsvFile, n: Option<usize>) {
    let Some(n) = n else { return };
    if file.examples.len() <= n {
        return;
    }
    let mut keep: Vec<usize> = (0..file.examples.len()).collect();
    shuffle(&mut keep, &mut Rng::derive(0, &[SUBSET_STREAM]));
    keep.truncate(n);
    keep.sort_unstable();
    let mut rows = std::mem::take(&mut file.examples)
        .into_iter()
        .map(Some)
        .collect::<Vec<_>>();
    file.examples = keep.into_iter().filter_map(|i| rows[i].take()).collect();
}

/// Fisher-Yates.
pub(super) fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

fn tokenize_split(
    file: &TsvFile,
    labels: &LabelSpace,
    tokenizer: &TextTokenizer,
    max_seq_len: usize,
    truncated: &mut usize,
) -> Result<Split> {
    let mut examples = Vec::with_capacity(file.examples.len());
    for raw in &file.examples {
        let target = labels.target(raw, &file.path)?;
        let encoded = encode(tokenizer, raw, target, max_seq_len)?;
        *truncated += usize::from(encoded.truncated);
        examples.push(encoded);
    }
    Ok(Split { examples })
}

/// Device tensors of one batch.
pub(super) struct BatchTensors {
    pub input_ids: Tensor,
    pub segment_ids: Tensor,
    pub attention_mask: Tensor,
    /// Class ids (Int64) or values (Float).
    pub targets: Tensor,
}

impl BatchTensors {
    pub fn encoder_input(&self) -> EncoderInput<'_> {
        EncoderInput {
            input_ids: &self.input_ids,
            segment_ids: &self.segment_ids,
            attention_mask: &self.attention_mask,
        }
    }
}

/// The padded length of a batch whose longest example has `longest` tokens.
pub fn padded_length(longest: usize, max_seq_len: usize) -> usize {
    longest
        .div_ceil(PAD_MULTIPLE)
        .saturating_mul(PAD_MULTIPLE)
        .min(max_seq_len.max(longest))
}

/// `examples` padded to their longest, rounded up to a multiple of [`PAD_MULTIPLE`]
/// within `max_seq_len`.
pub(super) fn batch_tensors(
    examples: &[&Encoded],
    pad_id: i64,
    max_seq_len: usize,
    device: Device,
) -> BatchTensors {
    let longest = examples
        .iter()
        .map(|e| e.input_ids.len())
        .max()
        .unwrap_or(1);
    let width = padded_length(longest, max_seq_len);
    let rows = examples.len();
    let mut ids = vec![pad_id; rows * width];
    let mut segments = vec![0i64; rows * width];
    let mut mask = vec![0i64; rows * width];
    let mut classes = Vec::with_capacity(rows);
    let mut values = Vec::with_capacity(rows);
    for (r, e) in examples.iter().enumerate() {
        let row = r * width;
        let n = e.input_ids.len();
        ids[row..row + n].copy_from_slice(&e.input_ids);
        segments[row..row + n].copy_from_slice(&e.segment_ids);
        mask[row..row + n].fill(1);
        match e.target {
            Target::Class(c) => classes.push(c as i64),
            Target::Value(v) => values.push(v as f32),
        }
    }
    let shape = [rows as i64, width as i64];
    let targets = if values.is_empty() {
        Tensor::from_slice(&classes)
    } else {
        Tensor::from_slice(&values)
    };
    BatchTensors {
        input_ids: Tensor::from_slice(&ids).view(shape).to_device(device),
        segment_ids: Tensor::from_slice(&segments).view(shape).to_device(device),
        attention_mask: Tensor::from_slice(&mask).view(shape).to_device(device),
        targets: targets.to_device(device),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tch::Kind;

    use super::*;

    #[test]
    fn batches_pad_to_a_multiple_of_eight_within_the_limit() {
        assert_eq!(padded_length(5, 128), 8);
        assert_eq!(padded_length(8, 128), 8);
        assert_eq!(padded_length(9, 128), 16);
        assert_eq!(padded_length(126, 128), 128);
        assert_eq!(padded_length(99, 100), 100);
        let a = Encoded {
            input_ids: vec![101, 5, 102],
            segment_ids: vec![0, 0, 0],
            target: Target::Class(1),
            truncated: false,
        };
        let b = Encoded {
            input_ids: vec![101, 5, 6, 7, 8, 9, 10, 11, 12, 102],
            segment_ids: vec![0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
            target: Target::Class(0),
            truncated: false,
        };
        let batch = batch_tensors(&[&a, &b], 0, 128, Device::Cpu);
        assert_eq!(batch.input_ids.size(), [2, 16]);
        assert_eq!(batch.attention_mask.sum(Kind::Int64).int64_value(&[]), 13);
        assert_eq!(batch.segment_ids.sum(Kind::Int64).int64_value(&[]), 5);
        assert_eq!(Vec::<i64>::try_from(&batch.targets).unwrap(), [1, 0]);
    }

    #[test]
    fn subsets_are_fixed_and_shuffles_are_permutations() {
        let text: String = std::iter::once("text\tlabel\n".to_string())
            .chain((0..50).map(|i| format!("t{i}\t{}\n", i % 2)))
            .collect();
        let file = crate::task::parse_tsv(&text, Path::new("x.tsv")).unwrap();
        let (mut a, mut b) = (file.clone(), file);
        subset(&mut a, Some(10));
        subset(&mut b, Some(10));
        assert_eq!(a.examples.len(), 10);
        assert_eq!(a, b);
        assert!(a.examples.windows(2).all(|w| w[0].line < w[1].line));
        let mut v: Vec<usize> = (0..20).collect();
        shuffle(&mut v, &mut Rng::derive(3, &[SHUFFLE_STREAM, 0]));
        assert_ne!(v, (0..20).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..20).collect::<Vec<_>>());
    }
}
