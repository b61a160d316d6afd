//! Training from Parquet shards: the shards of one or more manifests, streamed as chunks
//! of tokenized documents, with a deterministic per-epoch shuffle.
//!
//! Every epoch the shard order is permuted and documents are shuffled within a window of
//! `shuffle_window` documents, both from an RNG derived from (seed, epoch); with
//! `shuffle = false` documents come in manifest order, exactly the order the raw corpus
//! gives. Each shard's sha256 is checked against its manifest the first time it is opened
//! (`verify_shards`), its tokenizer hash against the run's, and its token ids against the
//! vocabulary.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use arrow_array::{Array, RecordBatch};
use electra_schemas::manifest::{ShardEntry, FILE_NAME};
use electra_schemas::tokenized;

use crate::error::{PipelineError, Result};
use crate::rng::Rng;
use crate::shard::{read_manifest, ShardChecks, ShardReader};
use crate::source::{BadRecordCounts, DocumentChunk};

/// Stream tag of the shuffle RNG (distinct from packing and masking).
const SHUFFLE_STREAM: u64 = 0x5348_5546;
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
}

/// One epoch over a [`ShardSet`]: chunks of tokenized documents.
pub struct ShardStream<'a> {
    set: &'a ShardSet,
    options: ShardStreamOptions,
    order: Vec<usize>,
    next_shard: usize,
    reader: Option<ShardReader>,
    verified: &'a mut HashSet<PathBuf>,
    window: Window,
    rng: Rng,
    done: bool,
}

impl std::fmt::Debug for ShardStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardStream")
            .field("next_shard", &self.next_shard)
            .finish()
    }
}

impl<'a> ShardStream<'a> {
    /// The stream of `epoch`; `verified` remembers shards already checked.
    pub fn new(
        set: &'a ShardSet,
        options: ShardStreamOptions,
        epoch: u64,
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
        Self {
            set,
            order,
            next_shard: 0,
            reader: None,
            verified,
            window: Window::default(),
            rng,
            done: false,
            options,
        }
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
            let Some(&index) = self.order.get(self.next_shard) else {
                return Ok(None);
            };
            self.next_shard += 1;
            let (path, entry) = &self.set.shards[index];
            let verify = self.options.verify && !self.verified.contains(path);
            let checks = ShardChecks {
                sha256: verify.then(|| entry.sha256.clone()),
                tokenizer_sha256: Some(self.set.tokenizer_sha256.clone()),
                vocab_size: Some(self.options.vocab_size),
                bytes: Some(entry.bytes),
                rows: Some(entry.rows),
            };
            self.reader = Some(ShardReader::open(path, &checks)?);
            if verify {
                self.verified.insert(path.clone());
            }
        }
    }

    fn next_chunk(&mut self) -> Result<Option<RecordBatch>> {
        if !self.options.shuffle {
            return self.read_batch();
        }
        let window = self.options.shuffle_window.max(CHUNK_DOCUMENTS);
        while self.window.len() < window {
            match self.read_batch()? {
                Some(batch) => self.window.push(batch),
                None => break,
            }
        }
        if self.window.len() == 0 {
            return Ok(None);
        }
        self.window
            .take_random(CHUNK_DOCUMENTS, &mut self.rng)
            .map(Some)
    }
}

impl Iterator for ShardStream<'_> {
    type Item = Result<DocumentChunk>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_chunk() {
            Ok(Some(batch)) => Some(Ok(DocumentChunk {
                batch,
                bad_records: BadRecordCounts::default(),
            })),
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
}

/// Documents held for shuffling, as references into the batches they came in.
#[derive(Default)]
struct Window {
    batches: Vec<Option<RecordBatch>>,
    live: Vec<usize>,
    rows: Vec<(usize, usize)>,
}

impl Window {
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn push(&mut self, batch: RecordBatch) {
        let index = self.batches.len();
        let n = batch.num_rows();
        self.rows.extend((0..n).map(|r| (index, r)));
        self.live.push(n);
        self.batches.push(Some(batch));
    }

    /// Removes up to `n` documents chosen uniformly at random and returns them as a batch.
    fn take_random(&mut self, n: usize, rng: &mut Rng) -> Result<RecordBatch> {
        let take = n.min(self.rows.len());
        let mut picked = Vec::with_capacity(take);
        for _ in 0..take {
            let j = rng.below(self.rows.len() as u64) as usize;
            picked.push(self.rows.swap_remove(j));
        }
        // Only the batches still held take part; indices are remapped onto them.
        let mut slot = vec![usize::MAX; self.batches.len()];
        let mut held = Vec::new();
        for (i, b) in self.batches.iter().enumerate() {
            if let Some(batch) = b {
                slot[i] = held.len();
                held.push(batch);
            }
        }
        let remapped: Vec<(usize, usize)> = picked.iter().map(|&(b, r)| (slot[b], r)).collect();
        let schema = tokenized::schema();
        let mut columns = Vec::with_capacity(schema.fields().len());
        for c in 0..schema.fields().len() {
            let arrays: Vec<&dyn Array> =
                held.iter().map(|batch| batch.column(c).as_ref()).collect();
            columns.push(arrow_select::interleave::interleave(&arrays, &remapped)?);
        }
        for &(b, _) in &picked {
            self.live[b] -= 1;
            if self.live[b] == 0 {
                self.batches[b] = None;
            }
        }
        let held_now = self.batches.iter().filter(|b| b.is_some()).count();
        if held_now * 2 < self.batches.len() {
            self.compact();
        }
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    /// Drops the slots of batches whose rows were all taken, so the bookkeeping stays
    /// proportional to the window, not to the epoch.
    fn compact(&mut self) {
        let mut slot = vec![usize::MAX; self.batches.len()];
        let mut batches = Vec::new();
        let mut live = Vec::new();
        for (i, b) in self.batches.drain(..).enumerate() {
            if let Some(batch) = b {
                slot[i] = batches.len();
                batches.push(Some(batch));
                live.push(self.live[i]);
            }
        }
        for row in &mut self.rows {
            row.0 = slot[row.0];
        }
        self.batches = batches;
        self.live = live;
    }
}
