//! Training a tokenizer with the `tokenizers` crate's trainers, from the same streamed
//! sentences the pipeline reads.
//!
//! The default is what ELECTRA uses: WordPiece with BERT's normalizer (lower-casing
//! optional), BERT's pre-tokenizer, the special tokens `[PAD] [UNK] [CLS] [SEP] [MASK]`
//! (ids 0..4), the `[CLS] A [SEP] B [SEP]` post-processor and the WordPiece decoder, so the
//! result works as an ELECTRA tokenizer. BPE and Unigram models get the same normalizer,
//! pre-tokenizer, special tokens and post-processor.

use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::models::unigram::{Unigram, UnigramTrainer};
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainer};
use tokenizers::models::TrainerWrapper;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, DecoderWrapper, ModelWrapper, Tokenizer};

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{PipelineError, Result};
use crate::source::{expand_files, sentences, DocumentReader, SourceOptions};

/// The special tokens, in id order.
pub const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
/// Smallest vocabulary we accept (the special tokens plus an alphabet).
pub const MIN_VOCAB_SIZE: usize = 64;

/// The subword model to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenizerModel {
    /// WordPiece, as BERT and ELECTRA.
    #[default]
    WordPiece,
    /// Byte-pair encoding.
    Bpe,
    /// Unigram language model (SentencePiece's).
    Unigram,
}

impl std::str::FromStr for TokenizerModel {
    type Err = PipelineError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "wordpiece" => Ok(Self::WordPiece),
            "bpe" => Ok(Self::Bpe),
            "unigram" => Ok(Self::Unigram),
            other => Err(PipelineError::InvalidConfig {
                field: "model",
                reason: format!("`{other}` is not one of wordpiece, bpe, unigram"),
            }),
        }
    }
}

/// What to train.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizerTrainOptions {
    /// The subword model.
    pub model: TokenizerModel,
    /// Target vocabulary size, special tokens included.
    pub vocab_size: usize,
    /// Lower-case (and strip accents) in the normalizer.
    pub lowercase: bool,
    /// Pieces seen fewer times are not added (WordPiece, BPE).
    pub min_frequency: u64,
    /// Draw the trainer's progress bars.
    pub show_progress: bool,
}

impl Default for TokenizerTrainOptions {
    fn default() -> Self {
        Self {
            model: TokenizerModel::WordPiece,
            vocab_size: 30522,
            lowercase: true,
            min_frequency: 2,
            show_progress: false,
        }
    }
}

fn train_error(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> PipelineError {
    PipelineError::Tokenizer {
        path: "(training)".into(),
        source: e.into(),
    }
}

/// Trains a tokenizer on `sentences` (streamed; each item one sentence or line).
pub fn train_tokenizer<I, S>(sentences: I, options: &TokenizerTrainOptions) -> Result<Tokenizer>
where
    I: Iterator<Item = S> + Send,
    S: AsRef<str> + Send,
{
    if options.vocab_size < MIN_VOCAB_SIZE {
        return Err(PipelineError::InvalidConfig {
            field: "vocab_size",
            reason: format!(
                "{} is below the minimum of {MIN_VOCAB_SIZE}",
                options.vocab_size
            ),
        });
    }
    let specials: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|t| AddedToken::from(*t, true))
        .collect();
    let unk = SPECIAL_TOKENS[1].to_string();
    let (model, mut trainer): (ModelWrapper, TrainerWrapper) = match options.model {
        TokenizerModel::WordPiece => (
            WordPiece::builder()
                .unk_token(unk)
                .build()
                .map_err(train_error)?
                .into(),
            WordPieceTrainer::builder()
                .vocab_size(options.vocab_size)
                .min_frequency(options.min_frequency)
                .special_tokens(specials)
                .show_progress(options.show_progress)
                .build()
                .into(),
        ),
        TokenizerModel::Bpe => (
            BPE::builder()
                .unk_token(unk)
                .build()
                .map_err(train_error)?
                .into(),
            BpeTrainer::builder()
                .vocab_size(options.vocab_size)
                .min_frequency(options.min_frequency)
                .special_tokens(specials)
                .show_progress(options.show_progress)
                .build()
                .into(),
        ),
        TokenizerModel::Unigram => (
            Unigram::default().into(),
            UnigramTrainer::builder()
                .vocab_size(options.vocab_size as u32)
                .special_tokens(specials)
                .unk_token(Some(unk))
                .show_progress(options.show_progress)
                .build()
                .map_err(train_error)?
                .into(),
        ),
    };
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(
            true,
            true,
            Some(options.lowercase),
            options.lowercase,
        )))
        .with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer
        .train(&mut trainer, sentences)
        .map_err(train_error)?;

    let id = |token: &str| {
        tokenizer
            .token_to_id(token)
            .ok_or_else(|| PipelineError::MissingSpecialToken {
                token: token.to_string(),
            })
    };
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    tokenizer.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".to_string(), sep),
        ("[CLS]".to_string(), cls),
    )));
    if options.model == TokenizerModel::WordPiece {
        tokenizer.with_decoder(Some(DecoderWrapper::from(WordPieceDecoder::default())));
    }
    Ok(tokenizer)
}

/// A tokenizer to train from corpus files into a `tokenizer.json`.
#[derive(Debug, Clone)]
pub struct TokenizerJob {
    /// Corpus files or globs (plain text or JSONL, zstd or not).
    pub inputs: Vec<String>,
    /// JSONL field holding the text.
    pub text_field: String,
    /// The `tokenizer.json` written (its folder is created).
    pub out: PathBuf,
    /// What to train.
    pub options: TokenizerTrainOptions,
}

/// What `train-tokenizer` wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainedTokenizer {
    /// The `tokenizer.json`.
    pub out: PathBuf,
    /// Its subword model, in words (`WordPiece`, `Bpe`, `Unigram`).
    pub model: String,
    /// Its vocabulary, special tokens included.
    pub vocab_size: usize,
    /// Training time.
    pub seconds: f64,
}

/// Trains on the sentences of `job.inputs`, streamed, and writes `job.out`. A read error
/// stops training and is returned.
pub fn train_tokenizer_files(job: &TokenizerJob) -> Result<TrainedTokenizer> {
    let source = SourceOptions {
        text_field: job.text_field.clone(),
        ..SourceOptions::default()
    };
    let reader = DocumentReader::new(expand_files(&job.inputs)?, source)?;
    let mut read_error = None;
    let sentences = SentenceIter {
        reader,
        pending: Vec::new().into_iter(),
        error: &mut read_error,
    };
    let started = Instant::now();
    let tokenizer = train_tokenizer(sentences, &job.options)?;
    if let Some(e) = read_error {
        return Err(e);
    }
    save(&tokenizer, &job.out)?;
    Ok(TrainedTokenizer {
        out: job.out.clone(),
        model: format!("{:?}", job.options.model),
        vocab_size: tokenizer.get_vocab_size(true),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Writes `tokenizer` to `out`, creating its folder.
fn save(tokenizer: &Tokenizer, out: &Path) -> Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| PipelineError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    tokenizer
        .save(out, true)
        .map_err(|source| PipelineError::Tokenizer {
            path: out.to_path_buf(),
            source,
        })
}

/// Sentences of a document stream, as owned strings; a read error stops the stream and is
/// kept for the caller.
struct SentenceIter<'a> {
    reader: DocumentReader,
    pending: std::vec::IntoIter<String>,
    error: &'a mut Option<PipelineError>,
}

impl Iterator for SentenceIter<'_> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        loop {
            if let Some(s) = self.pending.next() {
                return Some(s);
            }
            match self.reader.next()? {
                Ok(chunk) => self.pending = sentences(&chunk.batch).into_iter(),
                Err(e) => {
                    *self.error = Some(e);
                    return None;
                }
            }
        }
    }
}

impl std::fmt::Display for TrainedTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}: {}, {} tokens, trained in {:.1} s",
            self.out.display(),
            self.model,
            self.vocab_size,
            self.seconds
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<String> {
        let words = [
            "the", "whale", "ship", "sea", "captain", "harpoon", "ocean", "sailor", "white", "deep",
        ];
        (0..400)
            .map(|i| {
                (0..12)
                    .map(|j| words[(i * 7 + j * 3) % words.len()])
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    #[test]
    fn wordpiece_has_the_electra_special_tokens_first() {
        let tok = train_tokenizer(
            corpus().into_iter(),
            &TokenizerTrainOptions {
                vocab_size: 100,
                ..Default::default()
            },
        )
        .unwrap();
        for (i, t) in SPECIAL_TOKENS.iter().enumerate() {
            assert_eq!(tok.token_to_id(t), Some(i as u32), "{t}");
        }
        let enc = tok.encode("The WHALE", true).unwrap();
        let tokens = enc.get_tokens();
        assert_eq!(tokens.first().map(String::as_str), Some("[CLS]"));
        assert_eq!(tokens.last().map(String::as_str), Some("[SEP]"));
        assert!(tokens.contains(&"whale".to_string()), "{tokens:?}");
    }

    #[test]
    fn bpe_and_unigram_train_too() {
        for model in [TokenizerModel::Bpe, TokenizerModel::Unigram] {
            let tok = train_tokenizer(
                corpus().into_iter(),
                &TokenizerTrainOptions {
                    model,
                    vocab_size: 80,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(tok.token_to_id("[MASK]"), Some(4), "{model:?}");
            // Every letter here occurs in the training text (no "f": "of" would be [UNK]).
            let encoding = tok.encode("captain the deep sea", false).unwrap();
            let ids = encoding.get_ids().to_vec();
            assert!(
                !ids.is_empty() && !ids.contains(&1),
                "{model:?}: {ids:?} {:?} has [UNK]",
                encoding.get_tokens()
            );
        }
    }

    #[test]
    fn a_tiny_vocabulary_is_refused() {
        let err = train_tokenizer(
            corpus().into_iter(),
            &TokenizerTrainOptions {
                vocab_size: 10,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("vocab_size"), "{err}");
    }
}
