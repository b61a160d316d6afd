//! Training from Parquet shards: the shards of one or more manifests, streamed as chunks
//! of tokenized documents, with a deterministic per-epoch shuffle. The chunks have the
//! `tokenized` schema without `word_starts` ([`ShardColumns::WithoutWordStarts`]) unless
//! masking needs them ([`ShardStreamOptions::columns`]).
//!
//! Every epoch the shard order is permuted (from an RNG derived from (seed, epoch)); the
//! documents of the permuted shards, one after another, are cut into blocks of
//! `shuffle_window` documents and each block is permuted (from (seed, epoch, block)). A
//! document's position in the epoch therefore determines which block, shard and row it
//! comes from, so a stream can start at any position by opening one shard at one row: a
//! resumed run does not re-read the epoch. With `shuffle = false` documents come in
//! manifest order, exactly the order the raw corpus gives. A [`DataSlice`] reads only the
//! blocks dealt to it (block b to slice `b % count`; see [`crate::slice`]). Each shard's sha256 is checked against its manifest the first time it is opened
//! (`verify_shards`), its tokenizer hash against the run's, and its token ids against the
//! vocabulary.

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use arrow_array::{RecordBatch, UInt32Array};
use electra_schemas::manifest::{ShardEntry, FILE_NAME};

use crate::error::{PipelineError, Result};
use crate::rng::Rng;
use crate::shard::{read_manifest, ShardChecks, ShardColumns, ShardReader, ShardRows};
use crate::slice::DataSlice;
use crate::source::{BadRecordCounts, DocumentChunk};

/// Stream tag of the shuffle RNG (distinct from packing and masking).
const SHUFFLE_STREAM: u64 = 0x5348_5546;
/// Sub-stream tag of the per-block document permutations.
const BLOCK_STREAM: u64 = 0x626c_6f63;
/// Documents per chunk handed to a worker.
pub const CHUNK_DOCUMENTS: usize = 256;

/// The shards a run trains on.
#[derive(Debug, Clone)]
pub struct ShardSet {
    /// `(absolute path, manifest entry)` in manifest order.
    pub shards: Vec<(PathBuf, ShardEntry)>,
    /// The tokenizer hash every manifest agrees on.
    pub tokenizer_sha256: String,
}

/// Whether a data path names shards: a `manifest*.json` file, or a folder holding
/// `manifest.json` or part manifests (`manifest-*.json`).
pub fn is_manifest_path(entry: &str) -> bool {
    let path = Path::new(entry);
    let is_manifest_name = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("manifest") && n.ends_with(".json"))
    };
    if path.is_dir() {
        return std::fs::read_dir(path)
            .map(|entries| entries.flatten().any(|e| is_manifest_name(&e.path())))
            .unwrap_or(false);
    }
    is_manifest_name(path)
}

impl ShardSet {
    /// Documents in all the shards (one epoch).
    pub fn rows(&self) -> u64 {
        self.shards.iter().map(|(_, entry)| entry.rows).sum()
    }

    /// Reads manifests (files, or folders holding `manifest.json`); all must be complete
    /// and made with `tokenizer_sha256`.
    pub fn open(entries: &[String], tokenizer_sha256: &str) -> Result<Self> {
        let mut shards = Vec::new();
        for entry in entries {
            let mut path = PathBuf::from(entry);
            if path.is_dir() {
                path = path.join(FILE_NAME);
                if !path.is_file() {
                    return Err(PipelineError::BadManifest {
                        path,
                        reason: "the folder holds part manifests but no manifest.json: run `electra merge-manifests` on it first".into(),
                    });
                }
            }
            let manifest = read_manifest(&path)?;
            if !manifest.complete {
                return Err(PipelineError::BadManifest {
                    path,
                    reason: "incomplete: the preprocessing job has not finished (rerun it to complete the folder)".into(),
                });
            }
            if manifest.tokenizer_sha256 != tokenizer_sha256 {
                return Err(PipelineError::TokenizerMismatch {
                    path,
                    found: manifest.tokenizer_sha256,
                    expected: tokenizer_sha256.to_string(),
                });
            }
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            for shard in manifest.shards {
                shards.push((dir.join(&shard.path), shard));
            }
        }
        if shards.is_empty() {
            return Err(PipelineError::InvalidConfig {
                field: "files",
                reason: format!("the manifests {entries:?} list no shards"),
            });
        }
        Ok(Self {
            shards,
            tokenizer_sha256: tokenizer_sha256.to_string(),
        })
    }
}

/// How a [`ShardStream`] reads.
#[derive(Debug, Clone)]
pub struct ShardStreamOptions {
    /// Permute shards and shuffle documents.
    pub shuffle: bool,
    /// Shuffle window in documents.
    pub shuffle_window: usize,
    /// Check sha256 on first open.
    pub verify: bool,
    /// Token ids must be below this.
    pub vocab_size: u32,
    /// Run seed.
    pub seed: u64,
    /// The columns read: without word starts unless masking needs them.
    pub columns: ShardColumns,
}

/// One epoch over a [`ShardSet`] (or over one [`DataSlice`] of it): chunks of tokenized
/// documents.
pub struct ShardStream<'a> {
    set: &'a ShardSet,
    options: ShardStreamOptions,
    epoch: u64,
    order: Vec<usize>,
    /// Position in the epoch's stream of the first row of each shard of `order`, and the
    /// epoch's document count last.
    starts: Vec<u64>,
    /// The part of the stream read.
    slice: DataSlice,
    /// Rows are read in blocks of `shuffle_window`: to shuffle them, or to deal them to
    /// slices.
    blocked: bool,
    /// Next entry of `order` to open.
    next_shard: usize,
    /// Position in the epoch where reading starts: the start position, or (blocked) the
    /// first row of the first block read.
    read_from: u64,
    reader: Option<ShardReader>,
    /// Rows read from the shards but not yet put into a block.
    leftover: Option<RecordBatch>,
    verified: &'a mut HashSet<PathBuf>,
    /// The current block (in read order), its permutation (with `shuffle`), its index in
    /// the epoch and the next row of it (in permuted order) to hand out.
    block: Option<RecordBatch>,
    permutation: Option<Vec<u32>>,
    block_index: u64,
    block_next: usize,
    /// Rows of the next block to drop (the documents before the start position).
    skip_in_block: usize,
    /// Index of the next block to read in the epoch.
    next_block: u64,
    /// Position of the next row (not blocked).
    position: u64,
    done: bool,
}

impl std::fmt::Debug for ShardStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardStream")
            .field("epoch", &self.epoch)
            .field("slice", &self.slice)
            .field("next_shard", &self.next_shard)
            .field("next_block", &self.next_block)
            .finish()
    }
}

impl<'a> ShardStream<'a> {
    /// The stream of `epoch` from its document `start` on (0 for the whole epoch);
    /// `verified` remembers shards already checked.
    pub fn new(
        set: &'a ShardSet,
        options: ShardStreamOptions,
        epoch: u64,
        start: u64,
        verified: &'a mut HashSet<PathBuf>,
    ) -> Self {
        Self::with_slice(set, options, epoch, start, DataSlice::WHOLE, verified)
    }

    /// [`new`](Self::new), reading only the blocks of `shuffle_window` documents that
    /// belong to `slice` (block b of the epoch's stream belongs to slice `b % count`; see
    /// [`crate::slice`]). Rows of other blocks are skipped in the Parquet files, and shards
    /// without rows of the slice are not opened. `start` is a position in the whole
    /// epoch's stream.
    pub fn with_slice(
        set: &'a ShardSet,
        options: ShardStreamOptions,
        epoch: u64,
        start: u64,
        slice: DataSlice,
        verified: &'a mut HashSet<PathBuf>,
    ) -> Self {
        let mut rng = Rng::derive(options.seed, &[SHUFFLE_STREAM, epoch]);
        let mut order: Vec<usize> = (0..set.shards.len()).collect();
        if options.shuffle {
            for i in (1..order.len()).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                order.swap(i, j);
            }
        }
        let mut starts = Vec::with_capacity(order.len() + 1);
        let mut total = 0u64;
        for &index in &order {
            starts.push(total);
            total += set.shards[index].1.rows;
        }
        starts.push(total);
        let block_rows = Self::block_rows(&options) as u64;
        let blocked = options.shuffle || !slice.is_whole();
        let (next_block, read_from, skip_in_block) = if blocked {
            let block = start / block_rows;
            let first = slice.first_owned_from(block);
            // A start inside one of the slice's blocks drops that block's earlier rows.
            let skip = if first == block {
                start - block * block_rows
            } else {
                0
            };
            (first, first * block_rows, skip as usize)
        } else {
            (0, start, 0)
        };
        // The first shard (in this epoch's order) with rows at or after `read_from`.
        let next_shard = (0..order.len())
            .find(|&k| read_from < starts[k + 1])
            .unwrap_or(order.len());
        Self {
            set,
            epoch,
            order,
            starts,
            slice,
            blocked,
            next_shard,
            read_from,
            reader: None,
            leftover: None,
            verified,
            block: None,
            permutation: None,
            block_index: next_block,
            block_next: 0,
            skip_in_block,
            next_block,
            position: start,
            done: false,
            options,
        }
    }

    /// Documents per shuffle block.
    fn block_rows(options: &ShardStreamOptions) -> usize {
        options.shuffle_window.max(1)
    }

    /// The rows of shard `k` (of this epoch's order) that this stream reads, relative to
    /// the shard's first row.
    fn shard_ranges(&self, k: usize) -> Vec<Range<usize>> {
        let (begin, end) = (self.starts[k], self.starts[k + 1]);
        let from = begin.max(self.read_from);
        if from >= end {
            return Vec::new();
        }
        let relative = |a: u64, b: u64| (a - begin) as usize..(b - begin) as usize;
        if self.slice.is_whole() {
            return vec![relative(from, end)];
        }
        let block_rows = Self::block_rows(&self.options) as u64;
        let mut ranges = Vec::new();
        let mut block = self.slice.first_owned_from(from / block_rows);
        while block * block_rows < end {
            let a = (block * block_rows).max(from);
            let b = ((block + 1) * block_rows).min(end);
            ranges.push(relative(a, b));
            block += self.slice.count as u64;
        }
        ranges
    }

    /// The next batch read from the shards, or None at the end of the last shard.
    fn read_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if let Some(reader) = &mut self.reader {
                match reader.next() {
                    Some(batch) => return batch.map(Some),
                    None => self.reader = None,
                }
            }
            let k = self.next_shard;
            let Some(&index) = self.order.get(k) else {
                return Ok(None);
            };
            self.next_shard += 1;
            let ranges = self.shard_ranges(k);
            let (path, entry) = &self.set.shards[index];
            let verify = self.options.verify && !self.verified.contains(path);
            let checks = ShardChecks {
                sha256: verify.then(|| entry.sha256.clone()),
                tokenizer_sha256: Some(self.set.tokenizer_sha256.clone()),
                vocab_size: Some(self.options.vocab_size),
                bytes: Some(entry.bytes),
                rows: Some(entry.rows),
            };
            self.reader = Some(if self.slice.is_whole() {
                // The whole stream reads every shard from its first row needed on.
                let first_row = ranges.first().map_or(0, |r| r.start);
                ShardReader::open_with(
                    path,
                    &checks,
                    ShardRows::From(first_row),
                    self.options.columns,
                )?
            } else if ranges.is_empty() {
                continue; // none of this slice's rows: never opened
            } else {
                ShardReader::open_with(
                    path,
                    &checks,
                    ShardRows::Ranges(&ranges),
                    self.options.columns,
                )?
            });
            if verify {
                self.verified.insert(path.clone());
            }
        }
    }

    /// Up to `n` rows in stream order (fewer only at the end of the epoch).
    fn read_rows(&mut self, n: usize) -> Result<Vec<RecordBatch>> {
        let mut parts = Vec::new();
        let mut have = 0;
        while have < n {
            let batch = match self.leftover.take() {
                Some(batch) => batch,
                None => match self.read_batch()? {
                    Some(batch) => batch,
                    None => break,
                },
            };
            let need = n - have;
            if batch.num_rows() > need {
                parts.push(batch.slice(0, need));
                self.leftover = Some(batch.slice(need, batch.num_rows() - need));
                have = n;
            } else {
                have += batch.num_rows();
                parts.push(batch);
            }
        }
        Ok(parts)
    }

    /// Reads the next block (and with `shuffle` draws its permutation); false at the end of
    /// the epoch. The rows read are exactly this stream's blocks, one after another, each
    /// of `shuffle_window` rows but the epoch's last, so a block is the next
    /// `shuffle_window` rows.
    fn next_block(&mut self) -> Result<bool> {
        let parts = self.read_rows(Self::block_rows(&self.options))?;
        if parts.is_empty() {
            return Ok(false);
        }
        let batch = if parts.len() == 1 {
            parts[0].clone()
        } else {
            arrow_select::concat::concat_batches(&parts[0].schema(), &parts)?
        };
        self.permutation = self.options.shuffle.then(|| {
            let mut rng = Rng::derive(
                self.options.seed,
                &[SHUFFLE_STREAM, self.epoch, BLOCK_STREAM, self.next_block],
            );
            let mut permutation: Vec<u32> = (0..batch.num_rows() as u32).collect();
            for i in (1..permutation.len()).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                permutation.swap(i, j);
            }
            permutation
        });
        self.block_index = self.next_block;
        self.next_block += self.slice.count as u64;
        self.block_next = std::mem::take(&mut self.skip_in_block);
        self.block = Some(batch);
        Ok(true)
    }

    /// The next chunk and the position of its first document in the epoch's stream.
    fn next_chunk(&mut self) -> Result<Option<(u64, ShardChunk)>> {
        if !self.blocked {
            let Some(batch) = self.read_batch()? else {
                return Ok(None);
            };
            let position = self.position;
            self.position += batch.num_rows() as u64;
            return Ok(Some((position, ShardChunk { batch, rows: None })));
        }
        let block_rows = Self::block_rows(&self.options) as u64;
        loop {
            if let Some(block) = &self.block {
                let rows = block.num_rows();
                if self.block_next < rows {
                    let (from, n) = (self.block_next, CHUNK_DOCUMENTS.min(rows - self.block_next));
                    let chunk = match &self.permutation {
                        // The block's buffers are shared; the worker reads the rows in
                        // permuted order, so nothing is copied here.
                        Some(permutation) => ShardChunk {
                            batch: block.clone(),
                            rows: Some(permutation[from..from + n].to_vec()),
                        },
                        None => ShardChunk {
                            batch: block.slice(from, n),
                            rows: None,
                        },
                    };
                    let position = self.block_index * block_rows + from as u64;
                    self.block_next += n;
                    return Ok(Some((position, chunk)));
                }
                self.block = None;
                self.permutation = None;
            }
            if !self.next_block()? {
                return Ok(None);
            }
        }
    }

    /// The next chunk, not gathered, with the position of its first document in the
    /// epoch's stream (its documents follow at consecutive positions).
    pub fn next_chunk_rows(&mut self) -> Option<Result<(u64, ShardChunk)>> {
        if self.done {
            return None;
        }
        match self.next_chunk() {
            Ok(Some(chunk)) => Some(Ok(chunk)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }

    /// [`next_chunk_rows`](Self::next_chunk_rows) with the chunk's rows gathered into a
    /// batch of their own.
    pub fn next_positioned(&mut self) -> Option<Result<(u64, DocumentChunk)>> {
        self.next_chunk_rows().map(|item| {
            let (position, chunk) = item?;
            Ok((
                position,
                DocumentChunk {
                    batch: chunk.gather()?,
                    bad_records: BadRecordCounts::default(),
                },
            ))
        })
    }
}

/// A chunk of tokenized documents as a [`ShardStream`] reads it: rows `rows` of `batch`,
/// in that order (all of them, in order, when `None`).
#[derive(Debug, Clone)]
pub struct ShardChunk {
    /// Tokenized documents (without word starts).
    pub batch: RecordBatch,
    /// The rows of `batch` in the chunk, in order.
    pub rows: Option<Vec<u32>>,
}

impl ShardChunk {
    /// Documents in the chunk.
    pub fn len(&self) -> usize {
        self.rows.as_ref().map_or(self.batch.num_rows(), Vec::len)
    }

    /// Whether the chunk has no document.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The chunk's documents as a batch of their own, in order.
    pub fn gather(self) -> Result<RecordBatch> {
        match self.rows {
            None => Ok(self.batch),
            Some(rows) => Ok(arrow_select::take::take_record_batch(
                &self.batch,
                &UInt32Array::from(rows),
            )?),
        }
    }
}

impl Iterator for ShardStream<'_> {
    type Item = Result<DocumentChunk>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_positioned()
            .map(|item| item.map(|(_, chunk)| chunk))
    }
}
