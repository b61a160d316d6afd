//! Streaming data pipeline for ELECTRA and other encoders: corpus files in, padded and
//! masked batches out, on many threads, in bounded memory, without libtorch.
//!
//! The stages, each in its own module, each seam a trait:
//!
//! 1. [`source`]: corpus files streamed into Arrow record batches of documents
//!    ([`electra_schemas::documents`]), each file through a [`source::ByteSource`] (where
//!    the bytes come from: local files), a [`source::Codec`] (zstd, checked before reading)
//!    and a record format (plain text, JSONL); bad records are skipped and counted, or
//!    fatal ([`config::BadRecordPolicy`]).
//! 2. [`corpus`]: the stream of document chunks a loader reads, epoch by epoch, as a
//!    [`corpus::DocumentSource`]: raw files or Parquet [`shard`]s, shuffled per epoch
//!    (or in order); several corpora make a weighted mixture ([`corpus::mixture`]), each
//!    example slot drawn from the source a pure [`corpus::SlotSchedule`] names.
//! 3. [`tokenize`]: a Hugging Face `tokenizer.json` turns each document's sentences into
//!    token ids, sentence ends and word starts ([`electra_schemas::tokenized`]); BERT-style
//!    WordPiece takes an exact fast path (LinMaxMatch), everything else the `tokenizers`
//!    crate. [`bench_tokenize`] measures the two.
//! 4. [`pack`]: sentences of one document are packed into `[CLS] A [SEP] B [SEP]`
//!    examples of up to `max_seq_len` tokens, as the reference `ExampleBuilder` does,
//!    straight into a chunk's flat buffers ([`block::MaskedBlock`]).
//! 5. [`mask`]: a fresh mask per epoch, a pure function of (seed, epoch, doc_id,
//!    example_index): a [`mask::PositionSelector`] chooses the positions (random tokens,
//!    whole words or SpanBERT spans), a
//!    [`mask::Corruption`] what they become (ELECTRA 85% `[MASK]` / 15% kept, BERT
//!    80/10/10, or all `[MASK]`).
//! 6. [`batch`]: examples padded into flat row-major `i64` buffers.
//! 7. [`loader`]: reader threads (one per source), worker threads and a batcher joined by
//!    bounded crossbeam channels; batches come out in order, identical for any thread
//!    count, each with the [`cursor`] a resumed loader starts from.
//!    [`slice`](mod@slice): a loader can read one of S disjoint parts of the stream, for data-parallel
//!    training that is the same whatever the number of ranks.
//!
//! Every random choice comes from [`rng::Rng::derive`] (run seed + position); errors are
//! [`PipelineError`]s that name the file and line or offset.
//!
//! ```
//! use electra_pipeline::{DataConfig, DataExecution, Loader, TextTokenizer};
//!
//! let tokenizer = TextTokenizer::from_file("../data/tokenizer/bert-base-uncased/tokenizer.json")?;
//! let config = DataConfig {
//!     files: vec!["../data/corpus/moby_dick.txt.zst".into()],
//!     batch_size: 4,
//!     epochs: Some(1),
//!     execution: DataExecution { threads: 2, ..DataExecution::default() },
//!     ..DataConfig::default()
//! };
//! let mut loader = Loader::new(&config, tokenizer, 42)?;
//! let batch = loader.next().expect("a batch")?;
//! assert_eq!(batch.seq_no, 0);
//! assert_eq!(batch.input_ids.len(), batch.batch_size * batch.seq_len);
//! assert_eq!(batch.input_ids[0], 101); // [CLS]
//! assert!(!batch.masked_positions.is_empty());
//! # Ok::<(), electra_pipeline::PipelineError>(())
//! ```

mod arrow_util;
pub mod batch;
pub mod bench_pipeline;
pub mod bench_tokenize;
pub mod block;
pub mod config;
pub mod corpus;
pub mod cursor;
pub mod error;
pub mod inspect;
pub mod loader;
pub mod mask;
pub mod pack;
pub mod parallel;
pub mod preprocess;
pub mod report;
pub mod resources;
pub mod rng;
pub mod shard;
pub mod shard_stream;
pub mod slice;
pub mod source;
pub mod tokenize;
pub mod train_tokenizer;
pub mod word_starts;

pub use batch::{Batch, BatchShape};
pub use block::{ChunkDocuments, ExampleRef, MaskedBlock};
pub use config::{
    BadRecordPolicy, DataConfig, DataExecution, MaskPositions, MaskStrategy, OversizedLinePolicy,
    SourceConfig, SourceFormat,
};
pub use cursor::{DataCursor, MixtureCursor, SourceCursor, StreamPosition};
pub use error::{PipelineError, Result};
pub use loader::{Loader, LoaderStart, LoaderStats};
pub use mask::{Corruption, Masker, PositionSelector};
pub use pack::Packer;
pub use slice::DataSlice;
pub use source::{expand_files, BadRecordCounts, DocumentChunk, DocumentReader};
pub use tokenize::{load_tokenizer, SpecialTokens, TextTokenizer};
