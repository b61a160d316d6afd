//! Arrow schemas shared by every stage of the ELECTRA data flow.
//!
//! The data moves through three record-batch shapes, each defined here once:
//!
//! 1. [`documents`]: what a source yields: one row per document, its sentences (lines) as
//!    a list of strings.
//! 2. [`tokenized`]: what the tokenizer yields and what offline shards store: token ids,
//!    the token offsets where sentences end, and which tokens start a word.
//! 3. [`examples`]: what the packer yields: `[CLS] A [SEP] B [SEP]` token ids with their
//!    segment ids, before masking.
//!
//! Column names are constants, types are fixed, and every stage checks the schema it
//! receives with [`check_schema`], so a mismatch is an error that names the column.
//!
//! ```
//! use electra_schemas::{documents, check_schema};
//! let schema = documents::schema();
//! assert!(check_schema(&schema, &documents::schema(), "example").is_ok());
//! assert_eq!(schema.field(0).name(), documents::DOC_ID);
//! ```

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};

/// Version of the column layout written into Parquet shards; bump it on any change.
pub const SCHEMA_VERSION: u32 = 2;

/// Parquet key-value metadata keys carried by every shard.
pub mod metadata {
    /// The schema version ([`crate::SCHEMA_VERSION`]) the shard was written with.
    pub const SCHEMA_VERSION: &str = "electra.schema_version";
    /// Hex sha256 of the `tokenizer.json` bytes used to tokenize the shard.
    pub const TOKENIZER_SHA256: &str = "electra.tokenizer_sha256";
    /// Version of the tool that wrote the shard.
    pub const TOOL_VERSION: &str = "electra.tool_version";
    /// JSON list of the source files the shard's documents came from.
    pub const SOURCE_FILES: &str = "electra.source_files";
}

/// A schema did not match the one a stage expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// A required column is absent.
    #[error("{context}: missing column `{column}`")]
    MissingColumn { context: String, column: String },
    /// A column has the wrong Arrow type.
    #[error("{context}: column `{column}` has type {found}, expected {expected}")]
    WrongType {
        context: String,
        column: String,
        expected: String,
        found: String,
    },
}

/// Checks that `actual` holds every column of `expected` with the same type (extra columns
/// are allowed). `context` names the file or stage in the error.
pub fn check_schema(actual: &Schema, expected: &Schema, context: &str) -> Result<(), SchemaError> {
    for field in expected.fields() {
        let found =
            actual
                .field_with_name(field.name())
                .map_err(|_| SchemaError::MissingColumn {
                    context: context.to_string(),
                    column: field.name().clone(),
                })?;
        if !types_match(found.data_type(), field.data_type()) {
            return Err(SchemaError::WrongType {
                context: context.to_string(),
                column: field.name().clone(),
                expected: field.data_type().to_string(),
                found: found.data_type().to_string(),
            });
        }
    }
    Ok(())
}

/// Type equality that ignores the names and nullability of list items (Parquet readers
/// name them `item` or `element`).
fn types_match(found: &DataType, expected: &DataType) -> bool {
    match (found, expected) {
        (DataType::List(a), DataType::List(b))
        | (DataType::LargeList(a), DataType::LargeList(b)) => {
            types_match(a.data_type(), b.data_type())
        }
        (a, b) => a == b,
    }
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, false)))
}

/// Documents as sources emit them.
pub mod documents {
    use super::*;

    /// Stable document id: `(source_index << 32) | ordinal of the document in its source`.
    pub const DOC_ID: &str = "doc_id";
    /// Index of the source file in the run's sorted file list.
    pub const SOURCE: &str = "source";
    /// Byte offset of the document's first line in the decompressed source.
    pub const BYTE_OFFSET: &str = "byte_offset";
    /// The document's sentences (or lines/paragraphs), whitespace-trimmed, none empty.
    pub const SENTENCES: &str = "sentences";

    /// The documents schema.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(DOC_ID, DataType::UInt64, false),
            Field::new(SOURCE, DataType::UInt32, false),
            Field::new(BYTE_OFFSET, DataType::UInt64, false),
            Field::new(SENTENCES, list_of(DataType::Utf8), false),
        ]))
    }
}

/// Tokenized documents: the tokenizer's output and the rows of offline Parquet shards.
pub mod tokenized {
    use super::*;

    /// Same id as [`documents::DOC_ID`].
    pub const DOC_ID: &str = "doc_id";
    /// Same as [`documents::SOURCE`].
    pub const SOURCE: &str = "source";
    /// All token ids of the document, sentences concatenated, no special tokens.
    pub const INPUT_IDS: &str = "input_ids";
    /// Exclusive end offset (in tokens) of each sentence; the last equals the token count.
    pub const SENTENCE_ENDS: &str = "sentence_ends";
    /// One flag per token, true where the token starts a word (for whole-word masking),
    /// bit-packed: one binary value per document, token `i` in bit `i % 8` of byte `i / 8`
    /// (schema version 2; version 1 stored a `list<bool>`).
    pub const WORD_STARTS: &str = "word_starts";

    /// The tokenized-documents schema.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(DOC_ID, DataType::UInt64, false),
            Field::new(SOURCE, DataType::UInt32, false),
            Field::new(INPUT_IDS, list_of(DataType::UInt32), false),
            Field::new(SENTENCE_ENDS, list_of(DataType::UInt32), false),
            Field::new(WORD_STARTS, DataType::Binary, false),
        ]))
    }
}

/// Packed training examples, before masking.
pub mod examples {
    use super::*;

    /// The document the example was cut from.
    pub const DOC_ID: &str = "doc_id";
    /// Index of the example within its document: `(doc_id, example_index)` identifies an
    /// example, and with the run seed and the epoch it determines the example's mask.
    pub const EXAMPLE_INDEX: &str = "example_index";
    /// `[CLS] A [SEP] B [SEP]` (or `[CLS] A [SEP]`) token ids.
    pub const INPUT_IDS: &str = "input_ids";
    /// 0 for `[CLS] A [SEP]`, 1 for `B [SEP]`.
    pub const SEGMENT_IDS: &str = "segment_ids";
    /// Word-start flags aligned with `input_ids` (special tokens are not word starts).
    pub const WORD_STARTS: &str = "word_starts";

    /// The packed-examples schema.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(DOC_ID, DataType::UInt64, false),
            Field::new(EXAMPLE_INDEX, DataType::UInt32, false),
            Field::new(INPUT_IDS, list_of(DataType::UInt32), false),
            Field::new(SEGMENT_IDS, list_of(DataType::UInt8), false),
            Field::new(WORD_STARTS, list_of(DataType::Boolean), false),
        ]))
    }
}

/// The manifest of a folder of Parquet shards (`manifest.json`).
///
/// It is written last, atomically, after every shard it lists is complete and fsynced: a
/// shard that is not in the manifest does not exist.
pub mod manifest {
    use serde::{Deserialize, Serialize};

    /// File name of a manifest inside its shard folder.
    pub const FILE_NAME: &str = "manifest.json";

    /// The shard folder's table of contents.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Manifest {
        /// [`crate::SCHEMA_VERSION`] of every shard.
        pub schema_version: u32,
        /// Hex sha256 of the `tokenizer.json` that produced every shard.
        pub tokenizer_sha256: String,
        /// Version of the tool that wrote it.
        pub tool_version: String,
        /// The complete input file list of the preprocessing job, in order; a document's
        /// `source` column indexes this list.
        pub source_files: Vec<String>,
        /// Shards in stream order.
        pub shards: Vec<ShardEntry>,
        /// True once the job that wrote it finished; a partial manifest (a job still
        /// running or interrupted) lists only the shards completed so far.
        #[serde(default)]
        pub complete: bool,
        /// Which part of a multi-machine job this is (0 for a whole or merged job).
        #[serde(default)]
        pub part_index: u32,
        /// How many parts the job was split into (1 for a whole or merged job).
        #[serde(default = "one")]
        pub num_parts: u32,
        /// The reading options that decide which documents come out of the inputs
        /// (format, text field, bad-record policy, line limit); a resumed job must match.
        #[serde(default)]
        pub reader: String,
    }

    fn one() -> u32 {
        1
    }

    /// One shard.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ShardEntry {
        /// Path relative to the manifest's folder (never absolute, never `..`).
        pub path: String,
        /// Documents (rows).
        pub rows: u64,
        /// Tokens over all rows.
        pub tokens: u64,
        /// File size in bytes.
        pub bytes: u64,
        /// Hex sha256 of the file.
        pub sha256: String,
    }

    impl Manifest {
        /// Total rows over all shards.
        pub fn rows(&self) -> u64 {
            self.shards.iter().map(|s| s.rows).sum()
        }

        /// Total tokens over all shards.
        pub fn tokens(&self) -> u64 {
            self.shards.iter().map(|s| s.tokens).sum()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_column_is_named() {
        let partial = Schema::new(vec![Field::new(documents::DOC_ID, DataType::UInt64, false)]);
        let err = check_schema(&partial, &documents::schema(), "f.jsonl").unwrap_err();
        assert_eq!(err.to_string(), "f.jsonl: missing column `source`",);
    }

    #[test]
    fn a_wrong_type_is_named_with_both_types() {
        let wrong = Schema::new(vec![
            Field::new(tokenized::DOC_ID, DataType::UInt64, false),
            Field::new(tokenized::SOURCE, DataType::UInt32, false),
            Field::new(tokenized::INPUT_IDS, list_of(DataType::Int64), false),
        ]);
        let err = check_schema(&wrong, &tokenized::schema(), "shard-0.parquet").unwrap_err();
        assert!(matches!(err, SchemaError::WrongType { ref column, .. } if column == "input_ids"));
    }

    #[test]
    fn list_item_names_do_not_matter() {
        let renamed = Schema::new(vec![
            Field::new(tokenized::DOC_ID, DataType::UInt64, false),
            Field::new(tokenized::SOURCE, DataType::UInt32, false),
            Field::new(
                tokenized::INPUT_IDS,
                DataType::List(Arc::new(Field::new("element", DataType::UInt32, true))),
                true,
            ),
            Field::new(tokenized::SENTENCE_ENDS, list_of(DataType::UInt32), false),
            Field::new(tokenized::WORD_STARTS, DataType::Binary, false),
        ]);
        assert!(check_schema(&renamed, &tokenized::schema(), "x").is_ok());
    }
}
