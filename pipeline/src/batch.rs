//! A padded, masked batch ready for the trainer: flat row-major `i64` host buffers.

use crate::block::ExampleRef;
use crate::config::DataConfig;
pub use crate::cursor::DataCursor;
use crate::source::BadRecordCounts;

/// How a batch is padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchShape {
    /// Longest allowed length.
    pub max_seq_len: usize,
    /// The batch length is rounded up to a multiple of this (capped at `max_seq_len`).
    pub pad_to_multiple_of: usize,
    /// Always pad to `max_seq_len`.
    pub pad_to_max_len: bool,
    /// The padding token id.
    pub pad_id: u32,
}

impl BatchShape {
    /// The batch shape of a data config and a padding id.
    pub fn from_config(config: &DataConfig, pad_id: u32) -> Self {
        Self {
            max_seq_len: config.max_seq_len,
            pad_to_multiple_of: config.pad_to_multiple_of,
            pad_to_max_len: config.pad_to_max_len,
            pad_id,
        }
    }

    /// The padded length of a batch whose longest example has `longest` tokens.
    pub fn seq_len(&self, longest: usize) -> usize {
        if self.pad_to_max_len {
            return self.max_seq_len.max(longest);
        }
        let m = self.pad_to_multiple_of.max(1);
        let rounded = longest.div_ceil(m) * m;
        rounded.min(self.max_seq_len).max(longest)
    }
}

/// A batch of masked examples.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// 0, 1, 2 ... in stream order.
    pub seq_no: u64,
    /// Epoch of the first example (a mixture's: the smallest epoch of its examples'
    /// sources).
    pub epoch: u64,
    /// B: examples in the batch (the last batch of a finite stream may be smaller).
    pub batch_size: usize,
    /// L: longest example rounded up to `pad_to_multiple_of` (capped at `max_seq_len`), or
    /// `max_seq_len` with `pad_to_max_len`.
    pub seq_len: usize,
    /// `[B*L]` row-major masked ids, the padding id after each example.
    pub input_ids: Vec<i64>,
    /// `[B*L]` segment ids (0 on padding).
    pub segment_ids: Vec<i64>,
    /// `[B*L]` 1 on real tokens, 0 on padding.
    pub attention_mask: Vec<i64>,
    /// `[M]` flat indices `b*L + t` of the positions to predict, ascending.
    pub masked_positions: Vec<i64>,
    /// `[M]` original ids at those positions.
    pub masked_labels: Vec<i64>,
    /// `[B]` `(doc_id, example_index)` of each row.
    pub example_ids: Vec<(u64, u32)>,
    /// Real (non-padding) tokens.
    pub real_tokens: usize,
    /// Bad records met in the input chunks whose examples completed in this batch (the
    /// sum over all batches is the run's total).
    pub bad_records: BadRecordCounts,
    /// Where the stream stands after this batch: a loader started at this cursor yields
    /// the batches that follow it.
    pub cursor: DataCursor,
    /// `[B]` the mixture source each row was drawn from (index into `data.sources`);
    /// empty for a single corpus.
    pub example_sources: Vec<u32>,
}

impl Batch {
    /// Pads and flattens `examples` into a batch.
    pub fn from_refs(
        seq_no: u64,
        epoch: u64,
        examples: &[ExampleRef<'_>],
        shape: &BatchShape,
        bad_records: BadRecordCounts,
    ) -> Batch {
        let b = examples.len();
        let longest = examples
            .iter()
            .map(|e| e.input_ids.len())
            .max()
            .unwrap_or(0);
        let l = shape.seq_len(longest);
        let pad = i64::from(shape.pad_id);
        let mut input_ids = Vec::with_capacity(b * l);
        let mut segment_ids = Vec::with_capacity(b * l);
        let mut attention_mask = Vec::with_capacity(b * l);
        let masked: usize = examples.iter().map(|e| e.masked_positions.len()).sum();
        let mut masked_positions = Vec::with_capacity(masked);
        let mut masked_labels = Vec::with_capacity(masked);
        let mut real_tokens = 0;
        for (row, e) in examples.iter().enumerate() {
            let base = row * l;
            let n = e.input_ids.len();
            real_tokens += n;
            input_ids.extend(e.input_ids.iter().map(|&id| i64::from(id)));
            input_ids.resize(base + l, pad);
            // Exactly n segment ids per row, whatever the example holds.
            segment_ids.extend(e.segment_ids.iter().take(n).map(|&s| i64::from(s)));
            segment_ids.resize(base + n, 0);
            segment_ids.resize(base + l, 0);
            attention_mask.resize(base + n, 1);
            attention_mask.resize(base + l, 0);
            masked_positions.extend(
                e.masked_positions
                    .iter()
                    .map(|&p| (base + p as usize) as i64),
            );
            masked_labels.extend(e.masked_labels.iter().map(|&label| i64::from(label)));
        }
        Batch {
            seq_no,
            epoch,
            batch_size: b,
            seq_len: l,
            input_ids,
            segment_ids,
            attention_mask,
            masked_positions,
            masked_labels,
            example_ids: examples
                .iter()
                .map(|e| (e.doc_id, e.example_index))
                .collect(),
            real_tokens,
            bad_records,
            cursor: DataCursor::default(),
            example_sources: Vec::new(),
        }
    }

    /// Number of positions to predict.
    pub fn num_masked(&self) -> usize {
        self.masked_positions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An example of `n` tokens with the given masked positions, as owned buffers.
    struct Ex {
        n: usize,
        input_ids: Vec<u32>,
        segment_ids: Vec<u8>,
        masked_positions: Vec<u32>,
        masked_labels: Vec<u32>,
    }

    fn ex(n: usize, masked: &[u32]) -> Ex {
        Ex {
            n,
            input_ids: (0..n as u32).map(|i| 1000 + i).collect(),
            segment_ids: vec![1; n],
            masked_positions: masked.to_vec(),
            masked_labels: masked.iter().map(|&p| 5000 + p).collect(),
        }
    }

    impl Ex {
        fn as_ref(&self) -> ExampleRef<'_> {
            ExampleRef {
                doc_id: self.n as u64,
                example_index: 0,
                input_ids: &self.input_ids,
                segment_ids: &self.segment_ids,
                masked_positions: &self.masked_positions,
                masked_labels: &self.masked_labels,
            }
        }
    }

    const SHAPE: BatchShape = BatchShape {
        max_seq_len: 32,
        pad_to_multiple_of: 8,
        pad_to_max_len: false,
        pad_id: 0,
    };

    #[test]
    fn rows_are_padded_to_a_multiple_and_positions_are_flat() {
        let (a, c) = (ex(5, &[1, 3]), ex(10, &[2]));
        let b = Batch::from_refs(
            3,
            1,
            &[a.as_ref(), c.as_ref()],
            &SHAPE,
            BadRecordCounts::default(),
        );
        assert_eq!((b.batch_size, b.seq_len), (2, 16));
        assert_eq!(b.input_ids.len(), 32);
        assert_eq!(&b.input_ids[..6], &[1000, 1001, 1002, 1003, 1004, 0]);
        assert_eq!(b.attention_mask[..16].iter().sum::<i64>(), 5);
        assert_eq!(b.attention_mask[16..].iter().sum::<i64>(), 10);
        assert_eq!(b.segment_ids[5], 0);
        assert_eq!(b.masked_positions, vec![1, 3, 18]);
        assert_eq!(b.masked_labels, vec![5001, 5003, 5002]);
        assert_eq!(b.real_tokens, 15);
        assert_eq!(b.example_ids, vec![(5, 0), (10, 0)]);
    }

    #[test]
    fn length_is_capped_at_max_seq_len_or_fixed_when_asked() {
        let shape = BatchShape {
            max_seq_len: 30,
            ..SHAPE
        };
        assert_eq!(shape.seq_len(27), 30);
        assert_eq!(shape.seq_len(8), 8);
        let fixed = BatchShape {
            pad_to_max_len: true,
            ..SHAPE
        };
        assert_eq!(fixed.seq_len(3), 32);
    }
}
