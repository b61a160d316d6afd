//! Tokenization: documents -> token ids per document, sentences encoded one by one with a
//! Hugging Face `tokenizer.json` (WordPiece, BPE, Unigram ...).
//!
//! Two paths, the same output:
//! - BERT-style WordPiece (BERT's normalizer and pre-tokenizer, any vocabulary, cased or
//!   not) takes the fast path by default: `bert_chars` normalizes and splits words in
//!   one pass, `lin_max_match` tokenizes each word in linear time. It gives the ids and
//!   word starts of the `tokenizers` crate for every input.
//! - Every other tokenizer, and any with the fast path turned off
//!   ([`TextTokenizer::with_fast_path`], `data.fast_tokenizer = false`), runs the crate.
//!
//! [`load_tokenizer`] loads a run's `data.tokenizer`, or the embedded bert-base-uncased
//! when it is empty.

mod bert_chars;
mod default;
mod fast_wordpiece;
mod lin_max_match;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::types::UInt32Type;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_schema::SchemaRef;
use electra_schemas::{check_schema, documents, tokenized};

use crate::arrow_util::{column, list_array, list_column, list_item};
use crate::error::{PipelineError, Result};
use crate::word_starts::pack_word_starts;
use fast_wordpiece::FastWordPiece;

pub use default::{load_tokenizer, DEFAULT_TOKENIZER_JSON};

/// The special token ids the packer and the masker need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialTokens {
    /// `[CLS]` or `<s>`.
    pub cls: u32,
    /// `[SEP]` or `</s>`.
    pub sep: u32,
    /// `[MASK]` or `<mask>`.
    pub mask: u32,
    /// `[PAD]` or `<pad>`.
    pub pad: u32,
}

impl SpecialTokens {
    /// Whether `id` is one of the four special ids.
    pub fn contains(&self, id: u32) -> bool {
        id == self.cls || id == self.sep || id == self.mask || id == self.pad
    }
}

/// A loaded tokenizer and its special ids; cheap to clone (shared).
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Arc<tokenizers::Tokenizer>,
    path: PathBuf,
    special: SpecialTokens,
    sha256: String,
    /// WordPiece behind BERT's pre-tokenizer: per id, whether the token continues a word
    /// (`##...`). Then a word starts at every other token and the faster offset-free
    /// `encode_fast` suffices.
    continuations: Option<Arc<Vec<bool>>>,
    /// The fast path, when the tokenizer is BERT-style WordPiece and it is on.
    fast: Option<Arc<FastWordPiece>>,
}

/// Per id, whether the token continues a word, for a WordPiece model behind BERT's
/// pre-tokenizer (which splits words at whitespace and punctuation, so a word's first
/// piece never carries the prefix); `None` for any other tokenizer.
fn wordpiece_continuations(tokenizer: &tokenizers::Tokenizer) -> Option<Arc<Vec<bool>>> {
    use tokenizers::{ModelWrapper, PreTokenizerWrapper};
    let ModelWrapper::WordPiece(model) = tokenizer.get_model() else {
        return None;
    };
    let Some(PreTokenizerWrapper::BertPreTokenizer(_)) = tokenizer.get_pre_tokenizer() else {
        return None;
    };
    let prefix = &model.continuing_subword_prefix;
    if prefix.is_empty() {
        return None;
    }
    let added = tokenizer.get_added_tokens_decoder();
    let mut continuations = vec![false; tokenizer.get_vocab_size(true)];
    for (token, id) in tokenizer.get_vocab(false) {
        if let Some(slot) = continuations.get_mut(id as usize) {
            *slot = token.starts_with(prefix.as_str()) && !added.contains_key(&id);
        }
    }
    Some(Arc::new(continuations))
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("path", &self.path)
            .field("special", &self.special)
            .field("vocab_size", &self.vocab_size())
            .field("fast_path", &self.fast_path())
            .finish()
    }
}

fn find_token(tokenizer: &tokenizers::Tokenizer, names: &[&str]) -> Result<u32> {
    names
        .iter()
        .find_map(|n| tokenizer.token_to_id(n))
        .ok_or_else(|| PipelineError::MissingSpecialToken {
            token: names.join(" or "),
        })
}

/// The fast path of `tokenizer`, if it has one (the reason it has none is logged).
fn fast_wordpiece(tokenizer: &tokenizers::Tokenizer, path: &Path) -> Option<Arc<FastWordPiece>> {
    match FastWordPiece::new(tokenizer) {
        Ok(fast) => Some(Arc::new(fast)),
        Err(reason) => {
            tracing::debug!(path = %path.display(), reason, "no fast tokenizer path");
            None
        }
    }
}

impl TextTokenizer {
    /// Loads a `tokenizer.json` and finds its special tokens. A BERT-style WordPiece
    /// tokenizer takes the fast path ([`Self::with_fast_path`]).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(|source| PipelineError::Io {
            path: path.clone(),
            source,
        })?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|source| {
            PipelineError::Tokenizer {
                path: path.clone(),
                source,
            }
        })?;
        let sha256 = electra_fsutil::bytes_sha256(&bytes);
        let special = SpecialTokens {
            cls: find_token(&inner, &["[CLS]", "<s>"])?,
            sep: find_token(&inner, &["[SEP]", "</s>"])?,
            mask: find_token(&inner, &["[MASK]", "<mask>"])?,
            pad: find_token(&inner, &["[PAD]", "<pad>"])?,
        };
        let continuations = wordpiece_continuations(&inner);
        let fast = fast_wordpiece(&inner, &path);
        Ok(Self {
            inner: Arc::new(inner),
            path,
            special,
            sha256,
            continuations,
            fast,
        })
    }

    /// Turns the fast path on (where the tokenizer has one) or off; the output is the
    /// same either way, only the speed differs. Loaded tokenizers have it on.
    pub fn with_fast_path(mut self, enabled: bool) -> Self {
        self.fast = match (enabled, self.fast.take()) {
            (false, _) => None,
            (true, Some(fast)) => Some(fast),
            (true, None) => fast_wordpiece(&self.inner, &self.path),
        };
        self
    }

    /// Whether sentences are encoded by the fast path.
    pub fn fast_path(&self) -> bool {
        self.fast.is_some()
    }

    /// Hex sha256 of the `tokenizer.json` bytes: how shards and checkpoints name it.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The special token ids.
    pub fn special(&self) -> SpecialTokens {
        self.special
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The `tokenizer.json` this was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The wrapped Hugging Face tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Encodes one sentence without special tokens: `(ids, word_starts)` appended to the
    /// given vectors. Returns the number of tokens added.
    pub fn encode_sentence(
        &self,
        sentence: &str,
        ids: &mut Vec<u32>,
        word_starts: &mut Vec<bool>,
    ) -> Result<usize> {
        if let Some(fast) = &self.fast {
            return Ok(fast.encode(sentence, ids, word_starts));
        }
        let Some(continuations) = &self.continuations else {
            return self.encode_sentence_with_words(sentence, ids, word_starts);
        };
        // WordPiece: `encode_fast` (no offsets, no word ids), word starts from the ids.
        let encoding =
            self.inner
                .encode_fast(sentence, false)
                .map_err(|source| PipelineError::Tokenizer {
                    path: self.path.clone(),
                    source,
                })?;
        let new_ids = encoding.get_ids();
        ids.extend_from_slice(new_ids);
        word_starts.extend(
            new_ids.iter().enumerate().map(|(i, &id)| {
                i == 0 || !continuations.get(id as usize).copied().unwrap_or(false)
            }),
        );
        Ok(new_ids.len())
    }

    /// [`Self::encode_sentence`] for any tokenizer: word starts from the encoding's word
    /// ids, which only `encode` (with offsets) computes.
    fn encode_sentence_with_words(
        &self,
        sentence: &str,
        ids: &mut Vec<u32>,
        word_starts: &mut Vec<bool>,
    ) -> Result<usize> {
        let encoding =
            self.inner
                .encode(sentence, false)
                .map_err(|source| PipelineError::Tokenizer {
                    path: self.path.clone(),
                    source,
                })?;
        let new_ids = encoding.get_ids();
        let words = encoding.get_word_ids();
        ids.extend_from_slice(new_ids);
        for i in 0..new_ids.len() {
            let start = i == 0
                || words.get(i).copied().flatten().is_none()
                || words.get(i) != words.get(i - 1);
            word_starts.push(start);
        }
        Ok(new_ids.len())
    }

    /// Tokenizes a documents batch into a tokenized batch ([`tokenized::schema`]): per
    /// document the ids of its sentences concatenated, the cumulative sentence ends and the
    /// word-start flags. Sentences with no tokens are dropped; a document may end up with
    /// no tokens (zero sentence ends).
    pub fn tokenize(&self, documents: &RecordBatch) -> Result<RecordBatch> {
        check_schema(&documents.schema(), &documents::schema(), "tokenizer input")?;
        let doc_ids: &UInt64Array = column(documents, documents::DOC_ID)?;
        let sources: &UInt32Array = column(documents, documents::SOURCE)?;
        let (offsets, sentences): (&[i32], &StringArray) =
            list_column(documents, documents::SENTENCES)?;

        let schema: SchemaRef = tokenized::schema();
        let rows = documents.num_rows();
        let mut ids = Vec::new();
        let mut word_starts = Vec::new();
        let mut ends = Vec::new();
        let mut id_lengths = Vec::with_capacity(rows);
        let mut end_lengths = Vec::with_capacity(rows);
        for row in 0..rows {
            let before_ids = ids.len();
            let before_ends = ends.len();
            let mut count = 0u32;
            for s in offsets[row] as usize..offsets[row + 1] as usize {
                if sentences.is_null(s) {
                    continue;
                }
                let added = self.encode_sentence(sentences.value(s), &mut ids, &mut word_starts)?;
                if added > 0 {
                    count += added as u32;
                    ends.push(count);
                }
            }
            id_lengths.push(ids.len() - before_ids);
            end_lengths.push(ends.len() - before_ends);
        }
        let word_array: ArrayRef = Arc::new(pack_word_starts(&id_lengths, &word_starts));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(doc_ids.clone()),
            Arc::new(sources.clone()),
            list_array::<UInt32Type>(list_item(&schema, tokenized::INPUT_IDS)?, ids, &id_lengths)?,
            list_array::<UInt32Type>(
                list_item(&schema, tokenized::SENTENCE_ENDS)?,
                ends,
                &end_lengths,
            )?,
            word_array,
        ];
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arrow_array::builder::{ListBuilder, StringBuilder};

    pub(crate) const BERT: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/tokenizer/bert-base-uncased/tokenizer.json"
    );

    /// bert-base-uncased's special ids, for tests that need no tokenizer.
    pub(crate) const SPECIAL: SpecialTokens = SpecialTokens {
        cls: 101,
        sep: 102,
        mask: 103,
        pad: 0,
    };

    pub(crate) fn bert() -> TextTokenizer {
        TextTokenizer::from_file(BERT).unwrap()
    }

    /// A documents batch from literal sentences (doc ids 0, 1, 2 ...).
    pub(crate) fn docs(documents: &[&[&str]]) -> RecordBatch {
        let schema = documents::schema();
        let item = list_item(&schema, documents::SENTENCES).unwrap();
        let mut sentences = ListBuilder::new(StringBuilder::new()).with_field(item);
        for d in documents {
            for s in *d {
                sentences.values().append_value(s);
            }
            sentences.append(true);
        }
        let n = documents.len();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(UInt64Array::from_iter_values(0..n as u64)),
                Arc::new(UInt32Array::from(vec![0; n])),
                Arc::new(UInt64Array::from(vec![0; n])),
                Arc::new(sentences.finish()),
            ],
        )
        .unwrap()
    }

    #[test]
    fn bert_special_tokens_are_found() {
        let t = bert();
        assert_eq!(
            t.special(),
            SpecialTokens {
                cls: 101,
                sep: 102,
                mask: 103,
                pad: 0
            }
        );
        assert_eq!(t.vocab_size(), 30522);
    }

    #[test]
    fn a_missing_tokenizer_file_is_an_error_naming_it() {
        let err = TextTokenizer::from_file("/nonexistent/tokenizer.json").unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/tokenizer.json"),
            "{err}"
        );
    }

    #[test]
    fn wordpiece_word_starts_from_ids_equal_those_from_word_ids_on_both_paths() {
        let tokenizer = bert();
        assert!(tokenizer.fast_path(), "bert takes the fast path");
        let crate_path = tokenizer.clone().with_fast_path(false);
        assert!(
            crate_path.continuations.is_some(),
            "without it, bert takes encode_fast with word starts from the ids"
        );
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/corpus");
        let mut text = String::new();
        for entry in std::fs::read_dir(path).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let decoded = zstd::decode_all(&bytes[..]).unwrap();
            text.push_str(&String::from_utf8_lossy(
                &decoded[..decoded.len().min(400_000)],
            ));
        }
        text.push_str("\n[MASK] don't ##abc [UNK]x naïve 東京 e-mail 3.14 @user\n");
        let (mut fast_ids, mut fast_starts) = (Vec::new(), Vec::new());
        let (mut crate_ids, mut crate_starts) = (Vec::new(), Vec::new());
        let (mut ids, mut starts) = (Vec::new(), Vec::new());
        let mut words = 0;
        for line in text.lines() {
            tokenizer
                .encode_sentence(line, &mut fast_ids, &mut fast_starts)
                .unwrap();
            crate_path
                .encode_sentence(line, &mut crate_ids, &mut crate_starts)
                .unwrap();
            tokenizer
                .encode_sentence_with_words(line, &mut ids, &mut starts)
                .unwrap();
            words += 1;
        }
        assert!(words > 1000 && ids.len() > 100_000, "{} tokens", ids.len());
        assert_eq!(crate_ids, ids);
        assert_eq!(crate_starts, starts);
        assert_eq!(fast_ids, ids);
        assert_eq!(fast_starts, starts);
        assert!(starts.iter().any(|s| !s), "some words have several pieces");
    }

    #[test]
    fn sentences_are_concatenated_with_cumulative_ends_and_word_starts() {
        let t = bert();
        let out = t
            .tokenize(&docs(&[&["Hello world.", "unaffable"], &["", "a"]]))
            .unwrap();
        check_schema(&out.schema(), &tokenized::schema(), "test").unwrap();
        let (io, ids): (&[i32], &UInt32Array) = list_column(&out, tokenized::INPUT_IDS).unwrap();
        let (eo, ends): (&[i32], &UInt32Array) =
            list_column(&out, tokenized::SENTENCE_ENDS).unwrap();
        let starts = crate::word_starts::WordStarts::of(&out).unwrap();
        let doc0: Vec<u32> = ids.values()[io[0] as usize..io[1] as usize].to_vec();
        // hello world . una ##ffa ##ble
        assert_eq!(doc0, vec![7592, 2088, 1012, 14477, 20961, 3468]);
        assert_eq!(&ends.values()[eo[0] as usize..eo[1] as usize], &[3, 6]);
        let mut s0 = Vec::new();
        starts.row(0, doc0.len(), &mut s0);
        assert_eq!(s0, vec![true, true, true, true, false, false]);
        // The empty sentence of doc 1 is dropped.
        assert_eq!(&ends.values()[eo[1] as usize..eo[2] as usize], &[1]);
    }
}
