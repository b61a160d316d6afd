//! Data slices: the document stream of every epoch dealt into `count` disjoint parts, each
//! read by its own [`Loader`](crate::Loader), for data-parallel training that is the same
//! whatever the world size.
//!
//! A run fixes the number of slices S (part of the experiment, like the seed). Slice s is
//! read by a loader whose `batch_size` is the global batch divided by S; concatenating the
//! slices' batches in slice order gives the global batch, and rank r of W owns slices r,
//! r + W, r + 2W, ... So the global batch is the same examples in the same order for any
//! W up to S (ranks hold unequal shares when W does not divide S; the trainer weighs each
//! rank's loss by the global counts), and a run can resume on another number of ranks.
//!
//! How the stream is dealt:
//!
//! - **Raw files**: document p of the epoch (its ordinal in the epoch's stream, after the
//!   epoch's shuffle) belongs to slice `p % S`. Every slice's reader parses all the files
//!   (reading is cheap) and, shuffled, permutes every block, but only its own documents go
//!   to the tokenizer workers, so tokenizing, packing and masking are divided by S.
//!   Decoding is not: a process reading k slices decodes the files k times (and holds k
//!   shuffle blocks), which matters only for large k; at scale, train from shards.
//! - **Shards**: the epoch's stream (shards in the epoch's permutation, one after another)
//!   is cut into blocks of `shuffle_window` documents, as the shuffle cuts it, and block b
//!   belongs to slice `b % S`. Whole blocks, not single documents, because a block is
//!   permuted as a unit: dealing documents would make every slice read and permute every
//!   block. With whole blocks a slice reads only its own rows from the Parquet files (the
//!   others are skipped with a row selection, whole pages at a time where the page index
//!   allows) and shards holding none of its rows are never opened. Without `shuffle`, the
//!   same blocks are dealt but not permuted.
//!
//! Either way the position of a document ([`DataCursor::document`](crate::DataCursor)) is
//! its position in the whole epoch's stream, so a slice's cursor resumes that slice
//! exactly, and packing and masks, pure functions of (seed, epoch, document), make an
//! example the same whichever slice reads it. Each slice counts its epochs on its own
//! (an epoch is one pass over the slice's documents); `data.epochs` applies per slice.
//! A mixture deals each source this way and draws each slice's example slots by a
//! schedule of its own (see [`crate::corpus::mixture`]); a token budget is shared out
//! over the slices. [`DataSlice::WHOLE`] reads the stream exactly as a loader without
//! slices does.

use serde::{Deserialize, Serialize};

use crate::error::{PipelineError, Result};
use crate::source::{BadRecordCounts, DocumentChunk};

/// One of `count` disjoint parts of the document stream; `DataSlice::WHOLE` = {index 0,
/// count 1} is today's behaviour, bit for bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSlice {
    /// Which part, `0..count`.
    pub index: usize,
    /// How many parts the stream is dealt into (at least 1).
    pub count: usize,
}

impl Default for DataSlice {
    fn default() -> Self {
        Self::WHOLE
    }
}

impl std::fmt::Display for DataSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of {}", self.index, self.count)
    }
}

impl DataSlice {
    /// The whole stream: one slice.
    pub const WHOLE: DataSlice = DataSlice { index: 0, count: 1 };

    /// Slice `index` of `count`, checked ([`PipelineError::InvalidSlice`] unless
    /// `index < count`).
    pub fn new(index: usize, count: usize) -> Result<Self> {
        let slice = Self { index, count };
        slice.validate()?;
        Ok(slice)
    }

    /// [`PipelineError::InvalidSlice`] unless `count >= 1` and `index < count`.
    pub fn validate(&self) -> Result<()> {
        if self.count == 0 || self.index >= self.count {
            return Err(PipelineError::InvalidSlice {
                index: self.index,
                count: self.count,
            });
        }
        Ok(())
    }

    /// Whether this is the whole stream.
    pub fn is_whole(&self) -> bool {
        self.count == 1
    }

    /// Whether unit `n` of the stream (a raw document's position, a shard block's index)
    /// belongs to this slice.
    pub fn owns(&self, n: u64) -> bool {
        n % self.count as u64 == self.index as u64
    }

    /// The first unit at or after `n` that belongs to this slice.
    pub fn first_owned_from(&self, n: u64) -> u64 {
        let count = self.count as u64;
        let offset = (self.index as u64 + count - n % count) % count;
        n + offset
    }

    /// How many of the units `0..n` belong to this slice.
    pub fn share_of(&self, n: u64) -> u64 {
        let index = self.index as u64;
        if n <= index {
            return 0;
        }
        (n - index).div_ceil(self.count as u64)
    }

    /// The documents of `chunk` that belong to this slice, its first document being at
    /// `position` in the epoch: `Some((position of the first one kept, chunk of the kept
    /// ones))`, whose documents are `count` positions apart; `None` when it keeps nothing
    /// and carries no bad-record counts. Bad records are counted by slice 0 only (every
    /// slice's reader meets them all), so the counts summed over the slices are the
    /// stream's.
    pub(crate) fn select_documents(
        &self,
        chunk: DocumentChunk,
        position: u64,
    ) -> Result<Option<(u64, DocumentChunk)>> {
        if self.is_whole() {
            return Ok(Some((position, chunk)));
        }
        let rows = chunk.batch.num_rows() as u64;
        let first = self.first_owned_from(position);
        let keep: Vec<u32> = (first..position + rows)
            .step_by(self.count)
            .filter_map(|p| u32::try_from(p - position).ok())
            .collect();
        let bad_records = if self.index == 0 {
            chunk.bad_records
        } else {
            BadRecordCounts::default()
        };
        if keep.is_empty() && bad_records.total() == 0 {
            return Ok(None);
        }
        let batch = arrow_select::take::take_record_batch(
            &chunk.batch,
            &arrow_array::UInt32Array::from(keep),
        )?;
        Ok(Some((first, DocumentChunk { batch, bad_records })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_slice_is_refused() {
        assert!(matches!(
            DataSlice::new(0, 0),
            Err(PipelineError::InvalidSlice { index: 0, count: 0 })
        ));
        assert!(matches!(
            DataSlice::new(3, 3),
            Err(PipelineError::InvalidSlice { index: 3, count: 3 })
        ));
        assert_eq!(
            DataSlice::new(2, 3).unwrap(),
            DataSlice { index: 2, count: 3 }
        );
        assert_eq!(DataSlice::default(), DataSlice::WHOLE);
    }

    #[test]
    fn every_unit_belongs_to_exactly_one_slice() {
        for count in 1..6 {
            let slices: Vec<DataSlice> = (0..count)
                .map(|i| DataSlice::new(i, count).unwrap())
                .collect();
            for n in 0..40u64 {
                assert_eq!(slices.iter().filter(|s| s.owns(n)).count(), 1);
                for s in &slices {
                    let first = s.first_owned_from(n);
                    assert!(first >= n && s.owns(first) && first < n + count as u64);
                    let share = (0..n).filter(|&u| s.owns(u)).count() as u64;
                    assert_eq!(s.share_of(n), share, "slice {s}, n {n}");
                }
            }
        }
    }

    #[test]
    fn slices_survive_a_json_round_trip() {
        let slice = DataSlice::new(1, 4).unwrap();
        let json = serde_json::to_string(&slice).unwrap();
        assert_eq!(json, r#"{"index":1,"count":4}"#);
        assert_eq!(serde_json::from_str::<DataSlice>(&json).unwrap(), slice);
    }
}
