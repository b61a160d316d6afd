//! `preprocess`: a corpus tokenized once into zstd Parquet shards and a manifest; one part
//! of a job split over machines with `--shard-index`/`--num-shards`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use electra_config::FlagOverrides;
use electra_pipeline::parallel::thread_count;
use electra_pipeline::preprocess::{preprocess, PreprocessOptions, Progress};
use electra_pipeline::shard::{DEFAULT_ROWS_PER_SHARD, DEFAULT_ZSTD_LEVEL};
use electra_pipeline::source::SourceOptions;
use electra_pipeline::{expand_files, load_tokenizer};
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::load_config;
use crate::print_report;

/// `preprocess` arguments.
#[derive(Debug, Args)]
pub struct PreprocessArgs {
    /// A run config; its [data] section says how to read (format, text_field,
    /// on_bad_record, max_doc_bytes) and which tokenizer to use.
    #[arg(long)]
    pub config: PathBuf,
    /// Override a config value: `section.key=value` (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Input files or globs (the whole job's list: every part passes the same).
    #[arg(long, required = true, num_args = 1.., value_name = "PATH_OR_GLOB")]
    pub input: Vec<String>,
    /// Output folder for shards and the manifest.
    #[arg(long)]
    pub out: PathBuf,
    /// A `tokenizer.json`; replaces the config's.
    #[arg(long)]
    pub tokenizer: Option<String>,
    /// This machine's part of the job (0-based).
    #[arg(long, default_value_t = 0)]
    pub shard_index: usize,
    /// How many parts the job is split into (one per machine).
    #[arg(long, default_value_t = 1)]
    pub num_shards: usize,
    /// Documents per Parquet shard.
    #[arg(long, default_value_t = DEFAULT_ROWS_PER_SHARD)]
    pub rows_per_shard: u64,
    /// Tokenizer threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// zstd level of the shards.
    #[arg(long, default_value_t = DEFAULT_ZSTD_LEVEL)]
    pub zstd_level: i32,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `preprocess`.
pub fn run(args: PreprocessArgs) -> anyhow::Result<()> {
    let flags = FlagOverrides {
        tokenizer: args.tokenizer.clone(),
        ..FlagOverrides::default()
    };
    let config = load_config(Some(&args.config), &args.overrides, &flags)?;
    let data = &config.data;
    let tokenizer = load_tokenizer(&data.tokenizer)?.with_fast_path(data.execution.fast_tokenizer);
    let options = PreprocessOptions {
        files: expand_files(&args.input)?,
        part_index: args.shard_index,
        num_parts: args.num_shards,
        out_dir: args.out.clone(),
        rows_per_shard: args.rows_per_shard,
        threads: thread_count(args.threads),
        source: SourceOptions::from_config(data),
        tool_version: format!("electra {}", env!("CARGO_PKG_VERSION")),
        zstd_level: args.zstd_level,
    };
    let mut progress = ProgressLine::new();
    let report = preprocess(&options, &tokenizer, |p| progress.show(p))?;
    progress.finish();
    print_report(&report, args.json)
}

/// Progress on stderr: a spinner line on a terminal, else a log line every 10 seconds.
struct ProgressLine {
    bar: Option<ProgressBar>,
    started: Instant,
    last_log: Instant,
}

impl ProgressLine {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}") {
                bar.set_style(style);
            }
            bar
        });
        Self {
            bar,
            started: Instant::now(),
            last_log: Instant::now(),
        }
    }

    fn show(&mut self, p: Progress) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let message = format!(
            "{} documents, {} tokens ({:.0} tokens/s), {} shards",
            p.documents,
            p.tokens,
            p.tokens as f64 / secs,
            p.shards
        );
        match &self.bar {
            Some(bar) => bar.set_message(message),
            None if self.last_log.elapsed().as_secs() >= 10 => {
                self.last_log = Instant::now();
                tracing::info!("{message}");
            }
            None => {}
        }
    }

    fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
