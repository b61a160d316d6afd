//! `train-tokenizer`: a WordPiece (default), BPE or Unigram `tokenizer.json` trained on a
//! corpus.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use electra_pipeline::train_tokenizer::{
    train_tokenizer_files, TokenizerJob, TokenizerModel, TokenizerTrainOptions,
};

use crate::print_report;

/// The subword model, as the command line names it.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModelArg {
    /// WordPiece, as BERT and ELECTRA.
    Wordpiece,
    /// Byte-pair encoding.
    Bpe,
    /// Unigram language model (SentencePiece's).
    Unigram,
}

impl From<ModelArg> for TokenizerModel {
    fn from(model: ModelArg) -> Self {
        match model {
            ModelArg::Wordpiece => Self::WordPiece,
            ModelArg::Bpe => Self::Bpe,
            ModelArg::Unigram => Self::Unigram,
        }
    }
}

/// `train-tokenizer` arguments.
#[derive(Debug, Args)]
pub struct TrainTokenizerArgs {
    /// Corpus files or globs (plain text or JSONL, zstd or not).
    #[arg(long, required = true, num_args = 1.., value_name = "PATH_OR_GLOB")]
    pub input: Vec<String>,
    /// Vocabulary size, special tokens included.
    #[arg(long)]
    pub vocab_size: usize,
    /// Subword model.
    #[arg(long, value_enum, default_value_t = ModelArg::Wordpiece)]
    pub model: ModelArg,
    /// Lower-case and strip accents (as bert-base-uncased).
    #[arg(long)]
    pub lowercase: bool,
    /// Minimum frequency of a piece (WordPiece, BPE).
    #[arg(long, default_value_t = 2)]
    pub min_frequency: u64,
    /// JSONL field holding the text.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// Output tokenizer.json.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `train-tokenizer`.
pub fn run(args: TrainTokenizerArgs) -> anyhow::Result<()> {
    let job = TokenizerJob {
        inputs: args.input,
        text_field: args.text_field,
        out: args.out,
        options: TokenizerTrainOptions {
            model: args.model.into(),
            vocab_size: args.vocab_size,
            lowercase: args.lowercase,
            min_frequency: args.min_frequency,
            show_progress: std::io::stderr().is_terminal(),
        },
    };
    print_report(&train_tokenizer_files(&job)?, false)
}
