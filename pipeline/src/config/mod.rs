//! The `[data]` section of a run's TOML: where the corpus is and how it becomes batches.

mod unknown_keys;

use serde::{Deserialize, Serialize};

use crate::error::{PipelineError, Result};

pub use unknown_keys::UnknownKeys;

/// Default `max_seq_len` (ELECTRA-Small).
pub const DEFAULT_MAX_SEQ_LEN: usize = 128;
/// Default `mask_prob` (ELECTRA-Small and Base).
pub const DEFAULT_MASK_PROB: f64 = 0.15;
/// Largest accepted `mask_prob`.
pub const MAX_MASK_PROB: f64 = 0.5;
/// The documented `mask_prob` presets: 15% (BERT, ELECTRA), 30% (MosaicBERT, ModernBERT)
/// and 40% (Wettig et al., "Should You Mask 15% in Masked Language Modeling?").
pub const MASK_PROB_PRESETS: [f64; 3] = [0.15, 0.3, 0.4];
/// Default `batch_size` (ELECTRA-Small).
pub const DEFAULT_BATCH_SIZE: usize = 128;
/// Default `single_segment_prob` (reference ExampleBuilder).
pub const DEFAULT_SINGLE_SEGMENT_PROB: f64 = 0.1;
/// Default `random_length_prob` (reference ExampleBuilder).
pub const DEFAULT_RANDOM_LENGTH_PROB: f64 = 0.05;
/// Default `text_field` of JSONL records.
pub const DEFAULT_TEXT_FIELD: &str = "text";
/// Default `max_doc_bytes`: 64 MiB.
pub const DEFAULT_MAX_DOC_BYTES: usize = 64 << 20;
/// Default `prefetch`: batches waiting in the output queue.
pub const DEFAULT_PREFETCH: usize = 8;
/// Default `chunk_bytes`: text bytes per work unit (256 KiB).
pub const DEFAULT_CHUNK_BYTES: usize = 256 << 10;
/// Default `pad_to_multiple_of`.
pub const DEFAULT_PAD_TO_MULTIPLE_OF: usize = 8;
/// Default document window of the shuffle (shards and raw files).
pub const DEFAULT_SHUFFLE_WINDOW: usize = 4096;
/// Smallest accepted `max_seq_len`.
pub const MIN_SEQ_LEN: usize = 8;

/// How source files are parsed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    /// By extension: `.jsonl`/`.json`/`.ndjson` (optionally `.zst` or `.gz`) are JSONL, everything
    /// else plain text.
    #[default]
    Auto,
    /// One sentence a line, blank lines between documents.
    Text,
    /// One JSON object a line, the document in `text_field`.
    Jsonl,
}

/// How masked positions are corrupted.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum MaskStrategy {
    /// ELECTRA: 85% `[MASK]`, 15% kept.
    #[default]
    Electra,
    /// BERT: 80% `[MASK]`, 10% random token, 10% kept.
    Bert,
    /// Every masked position becomes `[MASK]`.
    #[serde(rename = "all_mask")]
    AllMask,
}

/// Which positions of an example are masked.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum MaskPositions {
    /// A uniform sample of the non-special tokens (the reference ELECTRA and BERT).
    #[default]
    Random,
    /// Whole words: every sub-token of a chosen word is masked with it.
    WholeWord,
    /// SpanBERT: spans of whole words, geometric lengths (p = 0.2) clipped at 10 words.
    Span,
}

/// What to do with a bad record (invalid UTF-8, malformed JSON, oversized line, corrupt
/// zstd or gzip stream).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BadRecordPolicy {
    /// Skip it, count it, warn (the first few per file).
    #[default]
    Skip,
    /// Stop with an error naming the file and line.
    Fail,
}

/// What to do with a line longer than `max_doc_bytes`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OversizedLinePolicy {
    /// The line is a bad record: consumed without being buffered, then skipped and counted
    /// as `oversized_lines` (or an error under `on_bad_record = "fail"`).
    #[default]
    Reject,
    /// Plain text only: the line is cut into pieces of at most `max_doc_bytes` (at the last
    /// whitespace in a piece's second half, else at a UTF-8 character boundary), each
    /// emitted as a document of its own, and counted as `split_lines`. The document in
    /// progress ends before the line and the lines after it begin a new one. A JSONL line
    /// cannot be cut and is rejected as above.
    Split,
}

/// Smallest `max_doc_bytes` with `oversized_lines = "split"`: a piece always holds a whole
/// UTF-8 character.
pub const MIN_SPLIT_BYTES: usize = 4;

/// The `[data]` section of a run config: what the batches are (its own fields: the
/// experiment, compared on `--resume`) and how the loader computes them
/// ([`DataExecution`]: free to change on `--resume`, since no setting there changes a
/// batch). In TOML both are plain keys of `[data]`. A new key goes into one of the two
/// structs; nothing else lists keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DataConfig {
    /// Corpus files: paths or glob patterns, read in the given order. Default: empty.
    pub files: Vec<String>,
    /// File format. Default: `auto` (by extension).
    pub format: SourceFormat,
    /// JSONL field holding the document text. Default: `"text"`.
    pub text_field: String,
    /// Path to a Hugging Face `tokenizer.json`. Default: `""`.
    pub tokenizer: String,
    /// Longest example in tokens, specials included. Default: 128.
    pub max_seq_len: usize,
    /// Fraction of tokens masked, at most 0.5 ([`MASK_PROB_PRESETS`]: 0.15, 0.3, 0.4).
    /// Default: 0.15.
    pub mask_prob: f64,
    /// Most masked positions per example. Default: none, meaning
    /// `int((mask_prob + 0.005) * max_seq_len)` as in the reference.
    pub max_predictions_per_seq: Option<usize>,
    /// How masked positions are corrupted: `electra` (85% `[MASK]`, 15% kept), `bert`
    /// (80/10/10) or `all_mask`. Default: `electra`.
    pub mask_strategy: MaskStrategy,
    /// Which positions are masked: `random` tokens, `whole_word`s or SpanBERT `span`s of
    /// whole words; the same count of positions either way. Default: `random`.
    pub mask_positions: MaskPositions,
    /// Examples per batch. Default: 128.
    pub batch_size: usize,
    /// Probability that an example has a single segment. Default: 0.1.
    pub single_segment_prob: f64,
    /// Probability that an example's target length is uniform in [5, max_seq_len].
    /// Default: 0.05.
    pub random_length_prob: f64,
    /// Cut sentences longer than `max_seq_len - 3` into pieces and carry the tokens an
    /// example cannot hold into the next one, so no token is lost. `false` truncates, as
    /// the reference does. Default: true.
    pub split_long_sentences: bool,
    /// Skip-and-count or fail on bad records. Default: `skip`.
    pub on_bad_record: BadRecordPolicy,
    /// Longest line held in memory; what happens to longer lines is `oversized_lines`.
    /// Default: 64 MiB.
    pub max_doc_bytes: usize,
    /// Lines longer than `max_doc_bytes`: `reject` (a bad record, see `on_bad_record`) or
    /// `split` (plain text is cut into documents of at most `max_doc_bytes`; JSONL lines
    /// are still rejected). Memory stays bounded by `max_doc_bytes` either way.
    /// Default: `reject`.
    pub oversized_lines: OversizedLinePolicy,
    /// Batch length is rounded up to a multiple of this. Default: 8.
    pub pad_to_multiple_of: usize,
    /// Pad every batch to `max_seq_len`. Default: false.
    pub pad_to_max_len: bool,
    /// Passes over the corpus; none repeats forever. Default: none.
    pub epochs: Option<u64>,
    /// Permute the order of the shards (or of the raw files) every epoch and shuffle
    /// documents within consecutive blocks of `shuffle_window` documents, both from (seed,
    /// epoch); `false` reads files and shards in the given order. Default: true.
    pub shuffle: bool,
    /// Documents per shuffle block (held in memory). For shards also the unit dealt to
    /// data slices ([`crate::slice`]), shuffled or not. Default: 4096.
    pub shuffle_window: usize,
    /// A weighted mixture of corpora (`[[data.sources]]`), in place of `files`: each
    /// example slot is drawn from one source by a schedule of (seed, slot) that holds the
    /// weights (see [`crate::corpus::mixture`]). Every other key applies to every source.
    /// Default: empty (read `files`).
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// How the loader computes the batches (its keys sit in `[data]` beside these).
    #[serde(flatten)]
    pub execution: DataExecution,
    /// Refuses any other key of `[data]`, naming it.
    #[serde(flatten)]
    pub unknown: UnknownKeys<DataConfig>,
}

/// How the loader computes a run's batches: the same batches for any value of these, so a
/// resumed run may change them. Keys of `[data]` in TOML.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DataExecution {
    /// Worker threads; 0 means the available parallelism. Default: 0.
    pub threads: usize,
    /// Batches waiting in the output queue. Default: 8.
    pub prefetch: usize,
    /// Text bytes per work unit. Default: 256 KiB.
    pub chunk_bytes: usize,
    /// Shards only: check each shard's sha256 against its manifest the first time it is
    /// opened. Default: true.
    pub verify_shards: bool,
    /// Encode BERT-style WordPiece tokenizers with the fast path (same ids and word starts
    /// as the `tokenizers` crate, several times faster); `false` runs the crate, and then
    /// `preprocess` writes byte-identical shards. Other tokenizers always run the crate.
    /// Default: true.
    pub fast_tokenizer: bool,
    /// Object storage and HTTP(S) files: retries of a failed request (with exponential
    /// backoff; a download that breaks off resumes where it stopped). Default: 10.
    pub io_retries: usize,
    /// Object storage and HTTP(S) files: no retry starts this many seconds after a
    /// request's first attempt. Default: 180.
    pub io_retry_timeout_s: f64,
}

/// One corpus of a mixture (`[[data.sources]]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The name in metrics and reports. Default: `source-I` (I = its index).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Its files, globs, shard manifests or shard folders (raw files or shards, as
    /// `data.files`). Required.
    pub files: Vec<String>,
    /// Its share of the example slots, relative to the other sources' (weights need not
    /// sum to 1). Required, positive.
    pub weight: f64,
    /// Passes over its files before it is spent (more than 1 up-samples it). Default:
    /// `data.epochs` (none: it repeats until its token budget or forever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u64>,
    /// Token budget: it is spent once its examples hold this many real tokens (the example
    /// that reaches the budget is its last; with several data slices each slice spends
    /// its share). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
}

impl SourceConfig {
    /// Its name: `name`, or `source-{index}`.
    pub fn display_name(&self, index: usize) -> String {
        if self.name.is_empty() {
            format!("source-{index}")
        } else {
            self.name.clone()
        }
    }

    /// An `InvalidConfig` error on `sources` naming this source.
    fn invalid(&self, index: usize, reason: impl std::fmt::Display) -> PipelineError {
        invalid(
            "sources",
            format!("source {index} ({}): {reason}", self.display_name(index)),
        )
    }

    /// Checks its values.
    fn validate(&self, index: usize) -> Result<()> {
        if self.files.is_empty() {
            return Err(self.invalid(index, "lists no files"));
        }
        if !(self.weight.is_finite() && self.weight > 0.0) {
            return Err(self.invalid(
                index,
                format_args!("weight {} is not a positive number", self.weight),
            ));
        }
        if self.epochs == Some(0) {
            return Err(self.invalid(index, "epochs must be at least 1"));
        }
        if self.tokens == Some(0) {
            return Err(self.invalid(index, "a token budget must be at least 1"));
        }
        Ok(())
    }
}

impl Default for DataExecution {
    fn default() -> Self {
        Self {
            threads: 0,
            prefetch: DEFAULT_PREFETCH,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            verify_shards: true,
            fast_tokenizer: true,
            io_retries: crate::source::object_store::DEFAULT_IO_RETRIES,
            io_retry_timeout_s: crate::source::object_store::DEFAULT_IO_RETRY_TIMEOUT_S,
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            files: Vec::new(),
            format: SourceFormat::Auto,
            text_field: DEFAULT_TEXT_FIELD.to_string(),
            tokenizer: String::new(),
            max_seq_len: DEFAULT_MAX_SEQ_LEN,
            mask_prob: DEFAULT_MASK_PROB,
            max_predictions_per_seq: None,
            mask_strategy: MaskStrategy::Electra,
            mask_positions: MaskPositions::Random,
            batch_size: DEFAULT_BATCH_SIZE,
            single_segment_prob: DEFAULT_SINGLE_SEGMENT_PROB,
            random_length_prob: DEFAULT_RANDOM_LENGTH_PROB,
            split_long_sentences: true,
            on_bad_record: BadRecordPolicy::Skip,
            max_doc_bytes: DEFAULT_MAX_DOC_BYTES,
            oversized_lines: OversizedLinePolicy::Reject,
            pad_to_multiple_of: DEFAULT_PAD_TO_MULTIPLE_OF,
            pad_to_max_len: false,
            epochs: None,
            shuffle: true,
            shuffle_window: DEFAULT_SHUFFLE_WINDOW,
            sources: Vec::new(),
            execution: DataExecution::default(),
            unknown: UnknownKeys::default(),
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> PipelineError {
    PipelineError::InvalidConfig {
        field,
        reason: reason.into(),
    }
}

fn check_prob(field: &'static str, p: f64) -> Result<()> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(invalid(field, format!("{p} is not in [0, 1]")))
    }
}

impl DataConfig {
    /// Checks every value's range; an invalid value is an `InvalidConfig` error naming it.
    pub fn validate(&self) -> Result<()> {
        self.validate_masking()?;
        if self.max_seq_len < MIN_SEQ_LEN {
            return Err(invalid(
                "max_seq_len",
                format!("{} is below {MIN_SEQ_LEN}", self.max_seq_len),
            ));
        }
        if u32::try_from(self.max_seq_len).is_err() {
            return Err(invalid("max_seq_len", "does not fit in u32"));
        }
        if self.batch_size == 0 {
            return Err(invalid("batch_size", "must be at least 1"));
        }
        if self.shuffle_window == 0 {
            return Err(invalid("shuffle_window", "must be at least 1 document"));
        }
        if !(self.execution.io_retry_timeout_s.is_finite()
            && self.execution.io_retry_timeout_s >= 0.0)
        {
            return Err(invalid(
                "io_retry_timeout_s",
                format!(
                    "{} is not a number of seconds",
                    self.execution.io_retry_timeout_s
                ),
            ));
        }
        if self.max_predictions_per_seq == Some(0) {
            return Err(invalid("max_predictions_per_seq", "must be at least 1"));
        }
        check_prob("single_segment_prob", self.single_segment_prob)?;
        check_prob("random_length_prob", self.random_length_prob)?;
        if self.max_doc_bytes == 0 {
            return Err(invalid("max_doc_bytes", "must be at least 1"));
        }
        if self.oversized_lines == OversizedLinePolicy::Split
            && self.max_doc_bytes < MIN_SPLIT_BYTES
        {
            return Err(invalid(
                "max_doc_bytes",
                format!(
                    "{} is below {MIN_SPLIT_BYTES}, the least oversized_lines = \"split\" needs",
                    self.max_doc_bytes
                ),
            ));
        }
        if self.execution.prefetch == 0 {
            return Err(invalid("prefetch", "must be at least 1"));
        }
        if self.execution.chunk_bytes == 0 {
            return Err(invalid("chunk_bytes", "must be at least 1"));
        }
        if self.pad_to_multiple_of == 0 {
            return Err(invalid("pad_to_multiple_of", "must be at least 1"));
        }
        if self.epochs == Some(0) {
            return Err(invalid(
                "epochs",
                "must be at least 1 (omit it to repeat forever)",
            ));
        }
        if self.text_field.is_empty() {
            return Err(invalid("text_field", "must not be empty"));
        }
        self.validate_sources()
    }

    /// The masking keys: `mask_prob` in (0, [`MAX_MASK_PROB`]].
    fn validate_masking(&self) -> Result<()> {
        if !(self.mask_prob > 0.0 && self.mask_prob <= MAX_MASK_PROB) {
            return Err(invalid(
                "mask_prob",
                format!("{} is not in (0, {MAX_MASK_PROB}]", self.mask_prob),
            ));
        }
        Ok(())
    }

    /// Mixture sources: each valid, and never together with `files`.
    fn validate_sources(&self) -> Result<()> {
        if !self.sources.is_empty() && !self.files.is_empty() {
            return Err(invalid(
                "sources",
                "given together with `files`: list the files in the sources",
            ));
        }
        for (index, source) in self.sources.iter().enumerate() {
            source.validate(index)?;
        }
        Ok(())
    }

    /// The data config that reads mixture source `source` alone: its files and epochs,
    /// the rest of this config.
    pub fn for_source(&self, source: &SourceConfig) -> DataConfig {
        DataConfig {
            files: source.files.clone(),
            epochs: source.epochs.or(self.epochs),
            sources: Vec::new(),
            ..self.clone()
        }
    }

    /// The names of the mixture's sources (empty for a single corpus).
    pub fn source_names(&self) -> Vec<String> {
        self.sources
            .iter()
            .enumerate()
            .map(|(i, s)| s.display_name(i))
            .collect()
    }

    /// Most masked positions per example: `max_predictions_per_seq`, or
    /// `int((mask_prob + 0.005) * max_seq_len)` (at least 1).
    pub fn max_predictions(&self) -> usize {
        match self.max_predictions_per_seq {
            Some(n) => n,
            None => (((self.mask_prob + 0.005) * self.max_seq_len as f64) as usize).max(1),
        }
    }

    /// The worker thread count: `threads`, or the available parallelism when 0.
    pub fn worker_threads(&self) -> usize {
        crate::parallel::thread_count(self.execution.threads)
    }
}

#[cfg(test)]
mod tests;
