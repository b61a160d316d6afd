//! The data side of data-parallel training: which slices of the document stream a rank
//! reads, and how their batches become the rank's part of the global batch.
//!
//! The stream is dealt into `dist.data_slices` disjoint slices (see
//! [`electra_pipeline::DataSlice`]); each slice has its own loader yielding
//! `batch_size / data_slices` examples per step. The global batch of a step is the slices'
//! batches in slice order, whatever the world size: rank `r` of `W` reads slices
//! `r, r + W, ...` and trains on their rows, which sit at known places of the global batch.
//! A single process reads every slice. With one slice this is the plain loader.

use std::time::{Duration, Instant};

use electra_pipeline::{
    BadRecordCounts, Batch, DataConfig, DataCursor, DataSlice, Loader, LoaderStart, TextTokenizer,
};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// The slices rank `rank` of `world` reads out of `slices`.
pub fn owned_slices(slices: usize, rank: usize, world: usize) -> Vec<usize> {
    (0..slices).filter(|s| s % world.max(1) == rank).collect()
}

/// One step's examples on this rank.
#[derive(Debug)]
pub struct RankBatch {
    /// The owned slices' batches, rows concatenated in slice order, padded to the longest.
    pub batch: Batch,
    /// `[rows]`: each row's index in the global batch.
    pub global_rows: Vec<i64>,
    /// `(slice, cursor after this step)` of every owned slice.
    pub cursors: Vec<(usize, DataCursor)>,
    /// How long the trainer waited for it.
    pub data_wait: Duration,
}

/// This rank's loaders, one per owned slice.
pub struct RankData {
    loaders: Vec<(usize, Loader)>,
    rows_per_slice: usize,
    pad_id: i64,
}

impl RankData {
    /// Opens a loader for each slice of `owned` (of `slices`), started at `starts[slice]`;
    /// `config.batch_size` is the global batch. The worker threads are shared out.
    pub fn new(
        config: &DataConfig,
        tokenizer: &TextTokenizer,
        seed: u64,
        slices: usize,
        owned: &[usize],
        starts: &[LoaderStart],
    ) -> Result<Self> {
        if owned.is_empty() {
            return Err(TrainError::InvalidConfig {
                field: "dist.data_slices".into(),
                reason: format!(
                    "{slices} slices leave this rank nothing to read: use at least as many slices as ranks"
                ),
            });
        }
        let rows_per_slice = config.batch_size / slices.max(1);
        let mut slice_config = config.clone();
        slice_config.batch_size = rows_per_slice;
        if owned.len() > 1 {
            slice_config.threads = (config.worker_threads() / owned.len()).max(1);
        }
        let mut loaders = Vec::with_capacity(owned.len());
        for &index in owned {
            let start = starts.get(index).cloned().unwrap_or_default();
            let slice = DataSlice {
                index,
                count: slices,
            };
            let loader = Loader::with_slice(&slice_config, tokenizer.clone(), seed, start, slice)?;
            loaders.push((index, loader));
        }
        Ok(Self {
            loaders,
            rows_per_slice,
            pad_id: i64::from(tokenizer.special().pad),
        })
    }

    /// The files the loaders read.
    pub fn files(&self) -> &[std::path::PathBuf] {
        self.loaders.first().map_or(&[], |(_, l)| l.files())
    }

    /// The next step's examples; `None` when a slice's data ended.
    pub fn next_batch(&mut self) -> Option<Result<RankBatch>> {
        let waited = Instant::now();
        let mut parts = Vec::with_capacity(self.loaders.len());
        for (index, loader) in &mut self.loaders {
            match loader.next()? {
                Ok(batch) => parts.push((*index, batch)),
                Err(e) => return Some(Err(e.into())),
            }
        }
        let mut global_rows = Vec::new();
        let mut cursors = Vec::with_capacity(parts.len());
        for (index, batch) in &parts {
            let first = (index * self.rows_per_slice) as i64;
            global_rows.extend((0..batch.batch_size as i64).map(|r| first + r));
            cursors.push((*index, batch.cursor.clone()));
        }
        let batch = concat(parts.into_iter().map(|(_, b)| b).collect(), self.pad_id);
        Some(Ok(RankBatch {
            batch,
            global_rows,
            cursors,
            data_wait: waited.elapsed(),
        }))
    }
}

/// Rows of `parts` in order, each padded to the longest part's length; one part is
/// returned as it is.
pub fn concat(mut parts: Vec<Batch>, pad_id: i64) -> Batch {
    if parts.len() == 1 {
        return parts.remove(0);
    }
    let seq = parts.iter().map(|b| b.seq_len).max().unwrap_or(0);
    let rows: usize = parts.iter().map(|b| b.batch_size).sum();
    let mut out = Batch {
        seq_no: parts.first().map_or(0, |b| b.seq_no),
        epoch: parts.first().map_or(0, |b| b.epoch),
        batch_size: rows,
        seq_len: seq,
        input_ids: Vec::with_capacity(rows * seq),
        segment_ids: Vec::with_capacity(rows * seq),
        attention_mask: Vec::with_capacity(rows * seq),
        masked_positions: Vec::new(),
        masked_labels: Vec::new(),
        example_ids: Vec::with_capacity(rows),
        real_tokens: 0,
        bad_records: BadRecordCounts::default(),
        cursor: parts
            .last()
            .map_or_else(DataCursor::default, |b| b.cursor.clone()),
        example_sources: Vec::new(),
    };
    let mut row_offset = 0i64;
    for part in parts {
        let l = part.seq_len;
        let pad = seq - l;
        for r in 0..part.batch_size {
            let span = r * l..(r + 1) * l;
            out.input_ids
                .extend_from_slice(&part.input_ids[span.clone()]);
            out.input_ids.extend(std::iter::repeat_n(pad_id, pad));
            out.segment_ids
                .extend_from_slice(&part.segment_ids[span.clone()]);
            out.segment_ids.extend(std::iter::repeat_n(0, pad));
            out.attention_mask
                .extend_from_slice(&part.attention_mask[span]);
            out.attention_mask.extend(std::iter::repeat_n(0, pad));
        }
        out.masked_positions
            .extend(part.masked_positions.iter().map(|&p| {
                let (row, pos) = (p / l as i64, p % l as i64);
                (row_offset + row) * seq as i64 + pos
            }));
        out.masked_labels.extend_from_slice(&part.masked_labels);
        out.example_ids.extend_from_slice(&part.example_ids);
        out.example_sources.extend_from_slice(&part.example_sources);
        out.real_tokens += part.real_tokens;
        out.bad_records.add(&part.bad_records);
        row_offset += part.batch_size as i64;
    }
    out
}

/// What each rank reports at a logging or checkpoint step, gathered on every rank.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RankReport {
    /// Real tokens this rank trained on since it started (rank 0 includes the resumed
    /// run's total).
    pub tokens: u64,
    /// Real tokens of the open metrics window on this rank.
    pub window_tokens: u64,
    /// Bad records this rank met since it started (rank 0 includes the resumed run's).
    pub bad_records: BadRecordCounts,
    /// A stop signal reached this rank.
    pub stop: bool,
    /// `(slice, cursor)` of every slice it reads.
    pub cursors: Vec<(usize, DataCursor)>,
}

/// The ranks' reports combined.
#[derive(Debug, Clone, Default)]
pub struct Combined {
    /// Real tokens trained on in all.
    pub tokens: u64,
    /// Real tokens of the open window, all ranks.
    pub window_tokens: u64,
    /// Bad records in all.
    pub bad_records: BadRecordCounts,
    /// Some rank was signalled.
    pub stop: bool,
    /// The cursor of every slice, in slice order.
    pub cursors: Vec<DataCursor>,
}

/// Sums the reports; every slice `0..slices` must be covered exactly once.
pub fn combine(reports: &[RankReport], slices: usize) -> Result<Combined> {
    let mut out = Combined::default();
    let mut cursors: Vec<Option<DataCursor>> = vec![None; slices];
    for report in reports {
        out.tokens += report.tokens;
        out.window_tokens += report.window_tokens;
        out.bad_records.add(&report.bad_records);
        out.stop |= report.stop;
        for (slice, cursor) in &report.cursors {
            match cursors.get_mut(*slice) {
                Some(slot @ None) => *slot = Some(cursor.clone()),
                _ => {
                    return Err(TrainError::Dist {
                        reason: format!("slice {slice} reported twice or out of range 0..{slices}"),
                    })
                }
            }
        }
    }
    out.cursors = cursors
        .into_iter()
        .enumerate()
        .map(|(slice, c)| {
            c.ok_or_else(|| TrainError::Dist {
                reason: format!("no rank reported slice {slice}"),
            })
        })
        .collect::<Result<_>>()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(rows: usize, seq: usize, base: i64, masked: &[i64]) -> Batch {
        let n = rows * seq;
        Batch {
            seq_no: 3,
            epoch: 1,
            batch_size: rows,
            seq_len: seq,
            input_ids: (0..n as i64).map(|i| base + i).collect(),
            segment_ids: vec![1; n],
            attention_mask: vec![1; n],
            masked_positions: masked.to_vec(),
            masked_labels: masked.iter().map(|p| 1000 + base + p).collect(),
            example_ids: (0..rows).map(|r| (base as u64, r as u32)).collect(),
            real_tokens: n,
            bad_records: BadRecordCounts::default(),
            cursor: DataCursor {
                epoch: 1,
                document: base as u64,
                ..DataCursor::default()
            },
            example_sources: Vec::new(),
        }
    }

    #[test]
    fn slices_are_dealt_round_robin() {
        assert_eq!(owned_slices(6, 0, 2), [0, 2, 4]);
        assert_eq!(owned_slices(6, 1, 2), [1, 3, 5]);
        assert_eq!(owned_slices(6, 2, 3), [2, 5]);
        assert_eq!(owned_slices(5, 1, 3), [1, 4]);
        assert_eq!(owned_slices(3, 0, 1), [0, 1, 2]);
        assert!(owned_slices(2, 2, 3).is_empty());
    }

    #[test]
    fn concat_pads_rows_and_moves_masked_positions() {
        let a = batch(2, 4, 0, &[1, 6]);
        let b = batch(1, 8, 100, &[7]);
        let out = concat(vec![a, b], 0);
        assert_eq!((out.batch_size, out.seq_len), (3, 8));
        assert_eq!(&out.input_ids[..8], &[0, 1, 2, 3, 0, 0, 0, 0]);
        assert_eq!(&out.input_ids[8..16], &[4, 5, 6, 7, 0, 0, 0, 0]);
        assert_eq!(&out.attention_mask[..8], &[1, 1, 1, 1, 0, 0, 0, 0]);
        assert_eq!(&out.input_ids[16..], &(100..108).collect::<Vec<i64>>()[..]);
        // Row 0 position 1; row 1 position 2; row 2 position 7.
        assert_eq!(out.masked_positions, [1, 10, 23]);
        for (p, label) in out.masked_positions.iter().zip(&out.masked_labels) {
            let id = out.input_ids[*p as usize];
            assert_eq!(1000 + id, *label, "label follows its token");
        }
        assert_eq!(out.real_tokens, 16);
        assert_eq!(out.example_ids.len(), 3);
        let single = batch(2, 4, 0, &[1]);
        let same = concat(vec![single.clone()], 0);
        assert_eq!(same.input_ids, single.input_ids);
    }

    #[test]
    fn reports_combine_and_every_slice_is_covered_once() {
        let cursor = |d| DataCursor {
            document: d,
            doc_id: d,
            ..DataCursor::default()
        };
        let a = RankReport {
            tokens: 10,
            window_tokens: 4,
            stop: false,
            cursors: vec![(0, cursor(0)), (2, cursor(2))],
            ..Default::default()
        };
        let b = RankReport {
            tokens: 5,
            window_tokens: 1,
            stop: true,
            cursors: vec![(1, cursor(1))],
            ..Default::default()
        };
        let c = combine(&[a.clone(), b.clone()], 3).unwrap();
        assert_eq!((c.tokens, c.window_tokens, c.stop), (15, 5, true));
        assert_eq!(c.cursors, [cursor(0), cursor(1), cursor(2)]);
        assert!(
            combine(std::slice::from_ref(&a), 3).is_err(),
            "slice 1 missing"
        );
        assert!(combine(&[a.clone(), a, b], 3).is_err(), "slice twice");
    }
}
