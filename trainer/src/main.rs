//! `electra`: pre-train text encoders with ELECTRA.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use electra_model::hf::export_hf;
use electra_model::hf_import::HfGenerator;
use electra_model::Electra;
use electra_pipeline::preprocess::{merge_manifests, preprocess, PreprocessOptions, Progress};
use electra_pipeline::source::SourceOptions;
use electra_pipeline::train_tokenizer::{train_tokenizer, TokenizerModel, TokenizerTrainOptions};
use electra_pipeline::{expand_files, DataConfig, DocumentReader, SourceFormat};
use electra_trainer::config::RunConfig;
use electra_trainer::device::retain_cpu_heap;
use electra_trainer::finetune::{self, finetune, FinetuneOptions};
use electra_trainer::inspect::{inspect, InspectOptions};
use electra_trainer::task::TaskType;
use electra_trainer::tokenizer::load_tokenizer;
use electra_trainer::train::{pretrain, DeviceChoice, PretrainOptions, RunSummary};
use indicatif::{ProgressBar, ProgressStyle};
use tracing_subscriber::EnvFilter;

/// Pre-train text encoders with ELECTRA: a streaming Rust data pipeline and a libtorch
/// trainer.
#[derive(Debug, Parser)]
#[command(name = "electra", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pre-train a generator + discriminator from a corpus or from shards.
    Pretrain(PretrainArgs),
    /// Tokenize a corpus once into zstd Parquet shards and a manifest.
    Preprocess(PreprocessArgs),
    /// Join the manifests of a preprocessing job's parts into one.
    MergeManifests(MergeArgs),
    /// Describe a shard, a manifest or a shard folder.
    Inspect(InspectArgs),
    /// Train a tokenizer (WordPiece by default) on a corpus.
    TrainTokenizer(TrainTokenizerArgs),
    /// Write Hugging Face folders (discriminator/, generator/) from a run's weights.
    ExportHf(ExportArgs),
    /// Fine-tune a pre-trained discriminator on a TSV classification or regression task.
    Finetune(FinetuneArgs),
    /// Measure a component on its own.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Print the training FLOPs of one step of a config (JSON), to compare objectives at
    /// equal compute.
    Flops(FlopsArgs),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// The data pipeline (read, tokenize or read shards, pack, mask, queue) without a model.
    Pipeline(BenchPipelineArgs),
    /// Steady-state training throughput of a config on its data, with the step time split
    /// into data wait, copy, forward, backward and optimizer, and peak memory.
    Train(BenchTrainArgs),
    /// The collectives of a distributed job (run under torchrun or srun, or alone): checks
    /// all-reduce, broadcast, barrier, gather and gradient buckets, then times all-reduce.
    Collective(BenchCollectiveArgs),
}

#[derive(Debug, Args)]
struct BenchTrainArgs {
    /// The experiment (its [model], [data] and [train]).
    #[arg(long)]
    config: PathBuf,
    /// Override a config value: `section.key=value` (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    overrides: Vec<String>,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Timed steps (twice: once straight through, once with the phases timed).
    #[arg(long, default_value_t = 20)]
    steps: u64,
    /// Untimed steps first.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Examples per step; replaces data.batch_size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Positions per example; replaces data.max_seq_len (and raises
    /// model.max_position_embeddings to it when needed).
    #[arg(long)]
    seq_len: Option<usize>,
    /// Data loader worker threads (default: the config's).
    #[arg(long)]
    threads: Option<usize>,
    /// Forward arithmetic; replaces train.precision.
    #[arg(long, value_enum)]
    precision: Option<electra_trainer::config::Precision>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct BenchCollectiveArgs {
    /// Size of the timed all-reduce buffer (f32), in MB.
    #[arg(long, default_value_t = 500.0)]
    size_mb: f64,
    /// Timed all-reduces.
    #[arg(long, default_value_t = 20)]
    iters: usize,
    /// Untimed all-reduces first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Device (cuda: GPU LOCAL_RANK).
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Collective backend (auto: NCCL on CUDA, else the slow TCPStore one).
    #[arg(long, value_enum, default_value_t = electra_trainer::dist::Backend::Auto)]
    backend: electra_trainer::dist::Backend,
    /// Give up on any rank that does not answer within this many seconds.
    #[arg(long, default_value_t = 60.0)]
    timeout_seconds: f64,
    /// Print one JSON object (rank 0).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct BenchPipelineArgs {
    /// Corpus files, globs, manifests or shard folders.
    #[arg(long, required = true, num_args = 1.., value_name = "PATH_OR_GLOB")]
    data: Vec<String>,
    /// A run config for the [data] settings (default: configs' defaults, batch 128 x 128).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A `tokenizer.json` (default: the config's, else the embedded bert-base-uncased).
    #[arg(long)]
    tokenizer: Option<String>,
    /// Loader worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Measure for this long (the corpus repeats as often as needed).
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Text sampled for the per-stage figures (raw corpora only), in MB.
    #[arg(long, default_value_t = 16)]
    sample_mb: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct PretrainArgs {
    /// The experiment: a TOML file with [model], [data] and [train] sections.
    #[arg(long)]
    config: PathBuf,
    /// Override a config value: `section.key=value` (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    overrides: Vec<String>,
    /// Corpus files, globs, shard manifests or shard folders; replaces `data.files`.
    #[arg(long, value_name = "PATH_OR_GLOB")]
    data: Vec<String>,
    /// A `tokenizer.json`; replaces the config's `data.tokenizer`.
    #[arg(long)]
    tokenizer: Option<String>,
    /// Run folder for config.toml, metrics.jsonl and final/ (default: runs/<config name>).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Stop after N steps (the schedule still spans train.total_steps).
    #[arg(long)]
    max_steps: Option<u64>,
    /// Data loader worker threads (default: the config's data.threads, 0 = all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Start from Hugging Face weights (a folder with discriminator/ and generator/, or a
    /// discriminator folder alone).
    #[arg(long, value_name = "DIR")]
    init_from_hf: Option<PathBuf>,
    /// Never draw a progress bar, even on a terminal.
    #[arg(long)]
    no_progress: bool,
    /// Continue the run in --run-dir from its newest complete checkpoint (weights,
    /// optimizer, data position, counters). The config must be the same experiment; only
    /// max_steps, log_every, max_bad_steps, loader threads/prefetch/chunk_bytes,
    /// verify_shards, fast_tokenizer and [checkpoint] may change.
    #[arg(long)]
    resume: bool,
}

/// Exit status of a run stopped by SIGTERM or SIGINT after it wrote its checkpoint:
/// `EX_TEMPFAIL`, "try again" (with `--resume`).
const EXIT_INTERRUPTED: u8 = 75;

/// SIGTERM and SIGINT set the returned flag: the run finishes its step, writes a checkpoint
/// and exits with [`EXIT_INTERRUPTED`]. A second signal while the first is handled exits at
/// once with 128 + the signal number (130 for Ctrl-C).
fn install_stop_handler() -> anyhow::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, flag.clone())
            .context("installing the signal handler")?;
        signal_hook::flag::register(signal, flag.clone())
            .context("installing the signal handler")?;
    }
    Ok(flag)
}

#[derive(Debug, Args)]
struct FlopsArgs {
    /// The experiment.
    #[arg(long)]
    config: PathBuf,
    /// Override a config value: `section.key=value` (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    overrides: Vec<String>,
}

#[derive(Debug, Args)]
struct PreprocessArgs {
    /// A run config; its [data] section says how to read (format, text_field,
    /// on_bad_record, max_doc_bytes) and which tokenizer to use.
    #[arg(long)]
    config: PathBuf,
    /// Input files or globs (the whole job's list: every part passes the same).
    #[arg(long, required = true, num_args = 1.., value_name = "PATH_OR_GLOB")]
    input: Vec<String>,
    /// Output folder for shards and the manifest.
    #[arg(long)]
    out: PathBuf,
    /// A `tokenizer.json`; replaces the config's.
    #[arg(long)]
    tokenizer: Option<String>,
    /// This machine's part of the job (0-based).
    #[arg(long, default_value_t = 0)]
    shard_index: usize,
    /// How many parts the job is split into (one per machine).
    #[arg(long, default_value_t = 1)]
    num_shards: usize,
    /// Documents per Parquet shard.
    #[arg(long, default_value_t = electra_pipeline::shard::DEFAULT_ROWS_PER_SHARD)]
    rows_per_shard: u64,
    /// Tokenizer threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// zstd level of the shards.
    #[arg(long, default_value_t = electra_pipeline::shard::DEFAULT_ZSTD_LEVEL)]
    zstd_level: i32,
}

#[derive(Debug, Args)]
struct MergeArgs {
    /// Folders (all their manifest-*.json parts) or manifest files.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// The merged manifest (default: FIRST_INPUT_FOLDER/manifest.json).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// A .parquet shard, a manifest .json, or a folder holding manifest.json.
    path: PathBuf,
    /// Tokenizer to decode sample documents with (default: the embedded bert-base-uncased).
    #[arg(long)]
    tokenizer: Option<String>,
    /// Shards read for the length histogram.
    #[arg(long, default_value_t = 8)]
    max_shards: usize,
    /// Documents decoded back to text.
    #[arg(long, default_value_t = 3)]
    samples: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModelKind {
    Wordpiece,
    Bpe,
    Unigram,
}

#[derive(Debug, Args)]
struct TrainTokenizerArgs {
    /// Corpus files or globs (plain text or JSONL, zstd or not).
    #[arg(long, required = true, num_args = 1.., value_name = "PATH_OR_GLOB")]
    input: Vec<String>,
    /// Vocabulary size, special tokens included.
    #[arg(long)]
    vocab_size: usize,
    /// Subword model.
    #[arg(long, value_enum, default_value_t = ModelKind::Wordpiece)]
    model: ModelKind,
    /// Lower-case and strip accents (as bert-base-uncased).
    #[arg(long)]
    lowercase: bool,
    /// Minimum frequency of a piece (WordPiece, BPE).
    #[arg(long, default_value_t = 2)]
    min_frequency: u64,
    /// JSONL field holding the text.
    #[arg(long, default_value = "text")]
    text_field: String,
    /// Output tokenizer.json.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// A run folder (its final/ weights, else its newest complete checkpoint), a
    /// checkpoint folder (RUN_DIR/checkpoints/step-N, verified against its SHA256SUMS), or
    /// a final/ folder.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Output folder: discriminator/ and generator/ are written inside.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct FinetuneArgs {
    /// The pre-trained model: a Hugging Face discriminator folder, an export-hf folder
    /// (discriminator/) or a pretrain run folder (final/); it must hold tokenizer.json.
    #[arg(long)]
    model: PathBuf,
    /// The task folder: train.tsv, dev.tsv and optionally test.tsv, with a header
    /// `text<TAB>label` or `text<TAB>text_b<TAB>label`.
    #[arg(long)]
    task: PathBuf,
    /// Output folder for results.json (and model/ with --save-model)
    /// [default: runs/finetune-<task name>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Passes over the training set.
    #[arg(long, default_value_t = finetune::DEFAULT_EPOCHS)]
    epochs: u32,
    /// Peak learning rate (the head's; lower layers get less with --layer-decay).
    #[arg(long, default_value_t = finetune::DEFAULT_LEARNING_RATE)]
    lr: f64,
    /// Layer-wise learning-rate decay: block i of N gets lr * decay^(N - i), the
    /// embeddings lr * decay^(N + 1); 1 turns it off.
    #[arg(long, default_value_t = finetune::DEFAULT_LAYER_DECAY)]
    layer_decay: f64,
    /// Longest input in tokens, [CLS] and [SEP] included.
    #[arg(long, default_value_t = finetune::DEFAULT_MAX_SEQ_LEN)]
    max_seq_len: usize,
    /// Examples per update.
    #[arg(long, default_value_t = finetune::DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Decoupled weight decay (not on LayerNorm weights or biases).
    #[arg(long, default_value_t = finetune::DEFAULT_WEIGHT_DECAY)]
    weight_decay: f64,
    /// Warmup as a fraction of all updates.
    #[arg(long, default_value_t = finetune::DEFAULT_WARMUP_FRACTION)]
    warmup_fraction: f64,
    /// Number of runs, with seeds 0, 1, ..., S - 1; the median is reported.
    #[arg(long, default_value_t = 1, conflicts_with = "seed_list")]
    seeds: u64,
    /// Explicit seeds instead of 0..S, comma-separated (`--seed-list 3,7,11`).
    #[arg(long, value_delimiter = ',', value_name = "SEEDS")]
    seed_list: Vec<u64>,
    /// Classification or regression; auto = regression when every training label is a
    /// number and one is not an integer.
    #[arg(long, value_enum, default_value_t = TaskType::Auto)]
    task_type: TaskType,
    /// Write the best seed's model (by dev accuracy or Pearson) to OUT/model/ as a Hugging
    /// Face ElectraForSequenceClassification folder.
    #[arg(long)]
    save_model: bool,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Train on a fixed random subset of this many examples.
    #[arg(long)]
    max_train_examples: Option<usize>,
    /// Score a fixed random subset of this many dev (and test) examples.
    #[arg(long)]
    max_eval_examples: Option<usize>,
    /// Never draw a progress bar, even on a terminal.
    #[arg(long)]
    no_progress: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Pretrain(args) => run_pretrain(args),
        Command::Preprocess(args) => run_preprocess(args),
        Command::MergeManifests(args) => run_merge(args),
        Command::Inspect(args) => run_inspect(args),
        Command::TrainTokenizer(args) => run_train_tokenizer(args),
        Command::ExportHf(args) => run_export(args),
        Command::Flops(args) => run_flops(args),
        Command::Finetune(args) => run_finetune(args),
        Command::Bench(BenchCommand::Pipeline(args)) => run_bench_pipeline(args),
        Command::Bench(BenchCommand::Train(args)) => run_bench_train(args),
        Command::Bench(BenchCommand::Collective(args)) => run_bench_collective(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_pretrain(args: PretrainArgs) -> anyhow::Result<()> {
    retain_cpu_heap();
    let mut config = RunConfig::load(&args.config, &args.overrides)
        .with_context(|| format!("loading {}", args.config.display()))?;
    if !args.data.is_empty() {
        config.data.files = args.data.clone();
    }
    if let Some(tokenizer) = &args.tokenizer {
        config.data.tokenizer = tokenizer.clone();
    }
    if let Some(steps) = args.max_steps {
        config.train.max_steps = Some(steps);
    }
    if let Some(threads) = args.threads {
        config.data.threads = threads;
    }
    config.validate()?;
    let run_dir = args.run_dir.unwrap_or_else(|| {
        let stem = args
            .config
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into());
        PathBuf::from("runs").join(stem)
    });
    let summary = pretrain(
        &config,
        &PretrainOptions {
            run_dir: run_dir.clone(),
            device: args.device,
            progress: !args.no_progress,
            init_from_hf: args.init_from_hf,
            resume: args.resume,
            stop: Some(install_stop_handler()?),
        },
    )?;
    print_summary(&summary, &run_dir);
    if summary.interrupted {
        eprintln!(
            "stopped by a signal at step {}; checkpoint {}; continue with --resume (exit status {EXIT_INTERRUPTED})",
            summary.steps,
            summary
                .checkpoint
                .as_ref()
                .map_or("(none)".into(), |p| p.display().to_string())
        );
        std::process::exit(i32::from(EXIT_INTERRUPTED));
    }
    Ok(())
}

fn spinner(template: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    Some(bar)
}

fn run_preprocess(args: PreprocessArgs) -> anyhow::Result<()> {
    let config = RunConfig::load(&args.config, &[])
        .with_context(|| format!("loading {}", args.config.display()))?;
    let data: &DataConfig = &config.data;
    let tokenizer = load_tokenizer(args.tokenizer.as_deref().unwrap_or(&data.tokenizer))?
        .with_fast_path(data.fast_tokenizer);
    let files = expand_files(&args.input)?;
    let threads = if args.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        args.threads
    };
    let options = PreprocessOptions {
        files,
        part_index: args.shard_index,
        num_parts: args.num_shards,
        out_dir: args.out.clone(),
        rows_per_shard: args.rows_per_shard,
        threads,
        source: SourceOptions::from_config(data),
        tool_version: format!("electra {}", env!("CARGO_PKG_VERSION")),
        zstd_level: args.zstd_level,
    };
    let bar = spinner("{spinner} {elapsed_precise} {msg}");
    let started = Instant::now();
    let mut last_log = Instant::now();
    let report = preprocess(&options, &tokenizer, |p: Progress| {
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        let msg = format!(
            "{} documents, {} tokens ({:.0} tokens/s), {} shards",
            p.documents,
            p.tokens,
            p.tokens as f64 / secs,
            p.shards
        );
        match &bar {
            Some(bar) => bar.set_message(msg),
            None if last_log.elapsed().as_secs() >= 10 => {
                last_log = Instant::now();
                tracing::info!("{msg}");
            }
            None => {}
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    println!("  {:<22} {}", "manifest", report.manifest.display());
    println!("  {:<22} {}", "input files", report.files);
    println!(
        "  {:<22} {:.1}",
        "input MB (compressed)",
        report.input_bytes as f64 / 1e6
    );
    println!(
        "  {:<22} {} kept, {} written",
        "shards", report.shards_kept, report.shards_written
    );
    println!("  {:<22} {}", "documents", report.rows);
    println!("  {:<22} {}", "tokens", report.tokens);
    println!(
        "  {:<22} {:.1}",
        "shard MB",
        report.shard_bytes as f64 / 1e6
    );
    println!("  {:<22} {:.1}", "seconds", report.seconds);
    println!(
        "  {:<22} {:.0}",
        "tokens/s",
        report.tokens as f64 / report.seconds.max(1e-9)
    );
    let text_mb_per_sec = report.text_bytes as f64 / 1e6 / report.seconds.max(1e-9);
    println!(
        "  {:<22} {:.1}",
        "text MB tokenized",
        report.text_bytes as f64 / 1e6
    );
    println!(
        "  {:<22} {:.2} ({:.2} per thread)",
        "text MB/s",
        text_mb_per_sec,
        text_mb_per_sec / threads as f64
    );
    println!(
        "  {:<22} {}",
        "bad records skipped",
        report.bad_records.total()
    );
    println!(
        "  {:<22} {:.1}",
        "peak RSS MB",
        electra_trainer::bench::peak_rss_bytes() as f64 / 1e6
    );
    Ok(())
}

fn run_merge(args: MergeArgs) -> anyhow::Result<()> {
    let out = match args.out {
        Some(out) => out,
        None => {
            let first = &args.inputs[0];
            let dir = if first.is_dir() {
                first.clone()
            } else {
                first.parent().map(PathBuf::from).unwrap_or_default()
            };
            dir.join(electra_schemas::manifest::FILE_NAME)
        }
    };
    let merged = merge_manifests(&args.inputs, &out)?;
    println!(
        "{}: {} shards, {} documents, {} tokens",
        out.display(),
        merged.shards.len(),
        merged.rows(),
        merged.tokens()
    );
    Ok(())
}

fn run_inspect(args: InspectArgs) -> anyhow::Result<()> {
    let tokenizer = load_tokenizer(args.tokenizer.as_deref().unwrap_or(""))?;
    let text = inspect(
        &args.path,
        Some(&tokenizer),
        &InspectOptions {
            max_shards: args.max_shards,
            samples: args.samples,
            ..InspectOptions::default()
        },
    )?;
    print!("{text}");
    Ok(())
}

fn run_train_tokenizer(args: TrainTokenizerArgs) -> anyhow::Result<()> {
    let files = expand_files(&args.input)?;
    let source = SourceOptions {
        format: SourceFormat::Auto,
        text_field: args.text_field.clone(),
        ..SourceOptions::default()
    };
    let reader = DocumentReader::new(files, source)?;
    let mut read_error = None;
    let sentences = SentenceIter {
        reader,
        pending: Vec::new().into_iter(),
        error: &mut read_error,
    };
    let model = match args.model {
        ModelKind::Wordpiece => TokenizerModel::WordPiece,
        ModelKind::Bpe => TokenizerModel::Bpe,
        ModelKind::Unigram => TokenizerModel::Unigram,
    };
    let started = Instant::now();
    let tokenizer = train_tokenizer(
        sentences,
        &TokenizerTrainOptions {
            model,
            vocab_size: args.vocab_size,
            lowercase: args.lowercase,
            min_frequency: args.min_frequency,
            show_progress: std::io::stderr().is_terminal(),
        },
    )?;
    if let Some(e) = read_error {
        bail!(e);
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    tokenizer
        .save(&args.out, true)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", args.out.display()))?;
    println!(
        "{}: {:?}, {} tokens, trained in {:.1} s",
        args.out.display(),
        model,
        tokenizer.get_vocab_size(true),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Sentences of a document stream, as owned strings; a read error stops the stream and is
/// kept for the caller.
struct SentenceIter<'a> {
    reader: DocumentReader,
    pending: std::vec::IntoIter<String>,
    error: &'a mut Option<electra_pipeline::PipelineError>,
}

impl Iterator for SentenceIter<'_> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        loop {
            if let Some(s) = self.pending.next() {
                return Some(s);
            }
            match self.reader.next()? {
                Ok(chunk) => {
                    self.pending = electra_pipeline::source::sentences(&chunk.batch).into_iter()
                }
                Err(e) => {
                    *self.error = Some(e);
                    return None;
                }
            }
        }
    }
}

fn run_bench_train(args: BenchTrainArgs) -> anyhow::Result<()> {
    retain_cpu_heap();
    let mut config = RunConfig::load(&args.config, &args.overrides)
        .with_context(|| format!("loading {}", args.config.display()))?;
    if let Some(batch) = args.batch_size {
        config.data.batch_size = batch;
    }
    if let Some(seq) = args.seq_len {
        config.data.max_seq_len = seq;
        config.model.max_position_embeddings = config.model.max_position_embeddings.max(seq as i64);
    }
    if let Some(threads) = args.threads {
        config.data.threads = threads;
    }
    if let Some(precision) = args.precision {
        config.train.precision = precision;
    }
    config.validate()?;
    let options = electra_trainer::bench_train::TrainBenchOptions {
        device: args.device.resolve()?,
        warmup: args.warmup,
        steps: args.steps,
    };
    let r = electra_trainer::bench_train::bench_train(&config, options)?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    println!(
        "  {} {} {}: {:.2}M-parameter encoder ({:.2}M in all), batch {} x {}, {} torch threads{}",
        r.device,
        r.precision,
        r.objective,
        r.encoder_params as f64 / 1e6,
        r.total_params as f64 / 1e6,
        r.batch_size,
        r.seq_len,
        r.torch_threads,
        if r.retained_heap {
            ", heap retained"
        } else {
            ""
        }
    );
    println!("  {:<22} {:>12.0}", "tokens/s", r.tokens_per_sec);
    println!("  {:<22} {:>12.0}", "real tokens/s", r.real_tokens_per_sec);
    println!("  {:<22} {:>12.2}", "step ms", r.step_ms);
    for (name, ms) in [
        ("  data wait ms", r.data_wait_ms),
        ("  copy ms", r.copy_ms),
        ("  forward ms", r.forward_ms),
        ("  backward ms", r.backward_ms),
        ("  optimizer ms", r.optimizer_ms),
    ] {
        println!("  {name:<22} {ms:>12.2}");
    }
    println!("  {:<22} {:>11.2}%", "data wait", 100.0 * r.data_wait_frac);
    println!(
        "  {:<22} {:>12.1}",
        "peak memory MB",
        r.peak_memory_bytes as f64 / 1e6
    );
    println!("  {:<22} {:>12.3}", "TFLOP/s", r.achieved_tflops);
    Ok(())
}

fn run_flops(args: FlopsArgs) -> anyhow::Result<()> {
    let config = RunConfig::load(&args.config, &args.overrides)
        .with_context(|| format!("loading {}", args.config.display()))?;
    let tokenizer = load_tokenizer(&config.data.tokenizer)?;
    let (disc, gen) = electra_trainer::train::model_configs(&config, &tokenizer);
    let flops = electra_trainer::flops::step_flops(&config, &disc, &gen);
    println!("{}", serde_json::to_string(&flops)?);
    Ok(())
}

fn run_export(args: ExportArgs) -> anyhow::Result<()> {
    use electra_model::hf::{HF_DISCRIMINATOR_DIR, HF_GENERATOR_DIR};
    use electra_trainer::checkpoint;
    let given = &args.checkpoint;
    // A checkpoint folder (verified first), a run folder (final/, else its newest complete
    // checkpoint), or a final/ folder.
    let (disc, generator) = if given.join(checkpoint::STATE_FILE).is_file() {
        checkpoint::verify(given)?;
        (
            given.join(HF_DISCRIMINATOR_DIR),
            given.join(HF_GENERATOR_DIR),
        )
    } else if given.join("final").is_dir() {
        (given.join("final"), given.join("final/generator"))
    } else if given.join(checkpoint::CHECKPOINTS_DIR).is_dir() {
        let found = checkpoint::find_latest(given)?;
        (
            found.dir.join(HF_DISCRIMINATOR_DIR),
            found.dir.join(HF_GENERATOR_DIR),
        )
    } else {
        (given.clone(), given.join("generator"))
    };
    if !disc.join("model.safetensors").is_file() || !generator.is_dir() {
        bail!(
            "{}: expected a run folder, a checkpoint folder, or a final/ folder (model.safetensors and generator/)",
            given.display()
        );
    }
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let model = Electra::from_hf(&vs, &disc, HfGenerator::Folder(&generator))?;
    let tokenizer = disc.join("tokenizer.json");
    export_hf(
        &model,
        &vs,
        &args.out,
        tokenizer.is_file().then_some(tokenizer.as_path()),
    )?;
    println!(
        "{}: discriminator/ (ElectraForPreTraining) and generator/ (ElectraForMaskedLM) from {}",
        args.out.display(),
        disc.display()
    );
    Ok(())
}

fn run_finetune(args: FinetuneArgs) -> anyhow::Result<()> {
    retain_cpu_heap();
    let out = args.out.clone().unwrap_or_else(|| {
        let name = args
            .task
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "task".into());
        PathBuf::from("runs").join(format!("finetune-{name}"))
    });
    let seeds = if args.seed_list.is_empty() {
        (0..args.seeds).collect()
    } else {
        args.seed_list.clone()
    };
    let options = FinetuneOptions {
        model: args.model,
        task: args.task,
        out: out.clone(),
        epochs: args.epochs,
        learning_rate: args.lr,
        layer_decay: args.layer_decay,
        max_seq_len: args.max_seq_len,
        batch_size: args.batch_size,
        weight_decay: args.weight_decay,
        warmup_fraction: args.warmup_fraction,
        seeds,
        task_type: args.task_type,
        save_model: args.save_model,
        device: args.device,
        max_train_examples: args.max_train_examples,
        max_eval_examples: args.max_eval_examples,
        progress: !args.no_progress && std::io::stderr().is_terminal(),
    };
    let report = finetune(&options)?;
    println!();
    println!(
        "  {} ({}, {} labels{}): {} train, {} dev{} examples, {} steps per seed on {}",
        report.task.display(),
        report.problem_type.as_str(),
        report.labels.len(),
        if report.pairs { ", pairs" } else { "" },
        report.train_examples,
        report.dev_examples,
        report
            .test_examples
            .map_or(String::new(), |n| format!(", {n} test")),
        report.hyperparameters.total_steps,
        report.device,
    );
    print!("{}", report.table());
    println!(
        "  {:<22} {}",
        "results",
        out.join(finetune::RESULTS_FILE).display()
    );
    if let (Some(seed), Some(dir)) = (report.saved_seed, &report.saved_model) {
        println!("  {:<22} {} (seed {seed})", "model", dir.display());
    }
    println!("  {:<22} {:.1}", "seconds", report.seconds);
    Ok(())
}

/// Without torchrun's or Slurm's variables: world size 1, a store on 127.0.0.1 (free port).
/// `ELECTRA_TEST_DIST_EXIT_AFTER=N` (tests only) makes this rank exit after N timed
/// all-reduces, as if it crashed.
fn run_bench_collective(args: BenchCollectiveArgs) -> anyhow::Result<()> {
    use electra_trainer::dist::{bench, DistEnv};
    let env = DistEnv::from_env()?.unwrap_or_else(DistEnv::single);
    let device = match args.device.resolve()? {
        tch::Device::Cuda(_) => env.cuda_device(),
        other => other,
    };
    let exit_after = match std::env::var("ELECTRA_TEST_DIST_EXIT_AFTER") {
        Ok(v) => Some(v.parse().context("ELECTRA_TEST_DIST_EXIT_AFTER")?),
        Err(_) => None,
    };
    if !(args.timeout_seconds > 0.0 && args.size_mb > 0.0) {
        bail!("--timeout-seconds and --size-mb must be positive");
    }
    let report = bench::bench_collective(
        &env,
        &bench::CollectiveBenchOptions {
            size_bytes: (args.size_mb * 1e6) as usize,
            iters: args.iters,
            warmup: args.warmup,
            device,
            backend: args.backend,
            timeout: std::time::Duration::from_secs_f64(args.timeout_seconds),
            exit_after,
        },
    )?;
    if report.rank != 0 {
        return Ok(());
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "  {} backend, {} ranks, {}: all-reduce {}, broadcast, barrier, gather, grad buckets ok",
            report.backend, report.world_size, report.device, report.all_reduce_expected
        );
        println!(
            "  {:.1} MB x {}: {:.3} ms per all-reduce, algbw {:.2} GB/s, busbw {:.2} GB/s",
            report.size_bytes as f64 / 1e6,
            report.iters,
            report.seconds_per_all_reduce * 1e3,
            report.algbw_gb_per_s,
            report.busbw_gb_per_s
        );
    }
    Ok(())
}

fn run_bench_pipeline(args: BenchPipelineArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => RunConfig::load(path, &[])?,
        None => RunConfig::default(),
    };
    config.data.files = args.data.clone();
    config.data.threads = args.threads;
    config.data.epochs = None;
    if let Some(t) = &args.tokenizer {
        config.data.tokenizer = t.clone();
    }
    let tokenizer =
        load_tokenizer(&config.data.tokenizer)?.with_fast_path(config.data.fast_tokenizer);
    // Each stage alone on one thread over a sample of the raw text (not for shards, whose
    // reading is the whole difference).
    let raw = !config
        .data
        .files
        .iter()
        .any(|f| electra_pipeline::shard_stream::is_manifest_path(f));
    let stages = if raw {
        Some(electra_trainer::bench::bench_stages(
            &config.data,
            &tokenizer,
            config.train.seed,
            args.sample_mb * 1_000_000,
        )?)
    } else {
        None
    };
    let result = electra_trainer::bench::bench_pipeline(
        &config.data,
        tokenizer,
        config.train.seed,
        args.seconds,
    )?;
    if args.json {
        let mut value = serde_json::to_value(&result)?;
        if let (Some(stages), Some(object)) = (&stages, value.as_object_mut()) {
            object.insert(
                "tokenizer_tokens_per_sec".into(),
                stages.tokenizer_tokens_per_sec.into(),
            );
            object.insert(
                "tokenizer_threads_tokens_per_sec".into(),
                stages.tokenizer_threads_tokens_per_sec.into(),
            );
            object.insert("stages".into(), serde_json::to_value(stages)?);
        }
        println!("{value}");
    } else {
        if let Some(st) = &stages {
            println!(
                "  each stage alone, 1 thread, on {:.1} MB of text ({} tokens):",
                st.text_bytes as f64 / 1e6,
                st.tokens
            );
            println!(
                "  {:<28} {:>8} {:>10} {:>14}",
                "stage", "seconds", "MB/s", "tokens/s"
            );
            for stage in &st.stages {
                println!(
                    "  {:<28} {:>8.2} {:>10.2} {:>14.0}",
                    stage.name, stage.seconds, stage.mb_per_sec, stage.tokens_per_sec
                );
            }
            println!(
                "  {:<28} {:>8} {:>10} {:>14.0}",
                "bare tokenizer (limit)", "", "", st.tokenizer_tokens_per_sec
            );
            if st.tokenizer_threads > 1 {
                println!(
                    "  {:<28} {:>8} {:>10} {:>14.0}",
                    format!("bare tokenizer, {} threads", st.tokenizer_threads),
                    "",
                    "",
                    st.tokenizer_threads_tokens_per_sec
                );
            }
            println!("  the whole pipeline through the queue:");
        }
        println!("  {:<28} {}", "threads", result.threads);
        println!("  {:<28} {}", "batches", result.batches);
        println!("  {:<28} {}", "tokens", result.tokens);
        println!("  {:<28} {:.2}", "seconds", result.seconds);
        println!(
            "  {:<28} {:.0}",
            "pipeline tokens/s", result.pipeline_tokens_per_sec
        );
        println!(
            "  {:<28} {:.0}",
            "tokens/s per thread", result.tokens_per_sec_per_thread
        );
        println!(
            "  {:<28} {:.2} ({:.2} cores)",
            "CPU seconds, all threads",
            result.cpu_seconds,
            result.cpu_seconds / result.seconds.max(1e-9)
        );
        println!(
            "  {:<28} {:.0}",
            "tokens per CPU second", result.tokens_per_cpu_sec
        );
        println!(
            "  {:<28} {:.1}",
            "peak RSS MB",
            result.peak_rss_bytes as f64 / 1e6
        );
        println!(
            "  {:<28} {:.1}",
            "  of which before the pipeline",
            result.baseline_rss_bytes as f64 / 1e6
        );
    }
    Ok(())
}

fn print_summary(s: &RunSummary, run_dir: &std::path::Path) {
    println!();
    println!("  {:<22} {}", "run", run_dir.display());
    println!("  {:<22} {}", "device", s.device);
    println!("  {:<22} {}", "steps", s.steps);
    println!("  {:<22} {}", "tokens", s.tokens);
    println!("  {:<22} {:.1}", "seconds", s.seconds);
    println!("  {:<22} {:.0}", "tokens/s", s.tokens_per_sec);
    println!(
        "  {:<22} {:.3e} per step, {:.3e} in all",
        "training FLOPs",
        s.flops_per_step,
        s.flops_per_step * s.steps as f64
    );
    if let (Some(first), Some(last)) = (&s.first, &s.last) {
        println!(
            "  {:<22} {:>10} {:>10}",
            "",
            format!("step {}", first.step),
            format!("step {}", last.step)
        );
        for (name, a, b) in [
            ("loss", first.loss, last.loss),
            ("generator loss", first.gen_loss, last.gen_loss),
            ("generator accuracy", first.gen_acc, last.gen_acc),
            ("discriminator loss", first.disc_loss, last.disc_loss),
            ("discriminator acc", first.disc_acc, last.disc_acc),
            (
                "  always-original acc",
                first.disc_baseline_acc,
                last.disc_baseline_acc,
            ),
            ("disc precision", first.disc_precision, last.disc_precision),
            ("disc recall", first.disc_recall, last.disc_recall),
            ("replaced fraction", first.replaced_frac, last.replaced_frac),
        ] {
            println!("  {name:<22} {a:>10.4} {b:>10.4}");
        }
    }
    println!("  {:<22} {}", "bad records skipped", s.bad_records.total());
    if let Ok(serde_json::Value::Object(kinds)) = serde_json::to_value(&s.bad_records) {
        for (kind, count) in kinds {
            if count.as_u64().is_some_and(|c| c > 0) {
                println!("  {:<22} {count}", format!("  {kind}"));
            }
        }
    }
    println!("  {:<22} {}", "non-finite steps", s.skipped_steps);
    if let Some(step) = s.resumed_from {
        println!("  {:<22} step {step}", "resumed from");
    }
    if let Some(dir) = &s.checkpoint {
        println!("  {:<22} {}", "checkpoint", dir.display());
    }
    if !s.interrupted {
        println!("  {:<22} {}", "weights", s.final_dir.display());
    }
}
