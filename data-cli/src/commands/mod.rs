//! One module per command: its arguments and `run` (parse, call, print).

pub mod bench_pipeline;
pub mod inspect;
pub mod merge_manifests;
pub mod preprocess;
pub mod train_tokenizer;

use clap::Subcommand;

/// The data commands both binaries have at their top level (`bench pipeline` sits under
/// each binary's `bench`).
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Tokenize a corpus once into zstd Parquet shards and a manifest.
    Preprocess(preprocess::PreprocessArgs),
    /// Join the manifests of a preprocessing job's parts into one.
    MergeManifests(merge_manifests::MergeArgs),
    /// Describe a shard, a manifest or a shard folder.
    Inspect(inspect::InspectArgs),
    /// Train a tokenizer (WordPiece by default) on a corpus.
    TrainTokenizer(train_tokenizer::TrainTokenizerArgs),
}

impl DataCommand {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Preprocess(args) => preprocess::run(args),
            Self::MergeManifests(args) => merge_manifests::run(args),
            Self::Inspect(args) => inspect::run(args),
            Self::TrainTokenizer(args) => train_tokenizer::run(args),
        }
    }
}
