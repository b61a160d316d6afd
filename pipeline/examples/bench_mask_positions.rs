//! Shard throughput of the loader for each `data.mask_positions`, in one run:
//!
//! ```text
//! cargo run --release -p electra-pipeline --example bench_mask_positions -- \
//!     [--seconds 4] [--rounds 3] [--threads 1] [--shards DIR] [FILES...]
//! ```
//!
//! Without `--shards`, FILES (default: `data/corpus/*.zst`) are first preprocessed into a
//! temporary folder with the bert-base-uncased tokenizer. Each round reads the shards for
//! `--seconds` under `random`, `whole_word` and `span` in turn (rounds interleave the
//! selectors, so machine noise falls on all of them), and prints the tokens per second of
//! each round, the median per selector and its ratio to `random`. `random` reads no word
//! starts; the others read and decode the shards' `word_starts` column.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use electra_pipeline::preprocess::{preprocess, PreprocessOptions};
use electra_pipeline::shard::{DEFAULT_ROWS_PER_SHARD, DEFAULT_ZSTD_LEVEL};
use electra_pipeline::source::SourceOptions;
use electra_pipeline::{DataConfig, DataExecution, Loader, MaskPositions, TextTokenizer};

const TOKENIZER: &str = "data/tokenizer/bert-base-uncased/tokenizer.json";

struct Args {
    seconds: f64,
    rounds: usize,
    threads: usize,
    shards: Option<PathBuf>,
    files: Vec<String>,
}

fn args() -> Args {
    let mut args = Args {
        seconds: 4.0,
        rounds: 3,
        threads: 1,
        shards: None,
        files: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().expect("a value after the flag");
        match arg.as_str() {
            "--seconds" => args.seconds = value().parse().expect("seconds"),
            "--rounds" => args.rounds = value().parse().expect("rounds"),
            "--threads" => args.threads = value().parse().expect("threads"),
            "--shards" => args.shards = Some(value().into()),
            _ => args.files.push(arg),
        }
    }
    if args.files.is_empty() {
        args.files = electra_pipeline::expand_files(&["data/corpus/*.zst".to_string()])
            .unwrap()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
    }
    args
}

/// Real tokens per second of the loader over `config` for `seconds`.
fn tokens_per_second(config: &DataConfig, tokenizer: &TextTokenizer, seconds: f64) -> f64 {
    let loader = Loader::new(config, tokenizer.clone(), 42).unwrap();
    let started = Instant::now();
    let mut tokens = 0;
    for batch in loader {
        tokens += batch.unwrap().real_tokens;
        if started.elapsed() >= Duration::from_secs_f64(seconds) {
            break;
        }
    }
    tokens as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args = args();
    let tokenizer = TextTokenizer::from_file(TOKENIZER).unwrap();
    let temp = tempfile::tempdir().unwrap();
    let shards = args.shards.clone().unwrap_or_else(|| {
        let options = PreprocessOptions {
            files: args.files.iter().map(PathBuf::from).collect(),
            part_index: 0,
            num_parts: 1,
            out_dir: temp.path().to_path_buf(),
            rows_per_shard: DEFAULT_ROWS_PER_SHARD,
            threads: 2,
            source: SourceOptions::from_config(&DataConfig::default()),
            tool_version: "bench_mask_positions".into(),
            zstd_level: DEFAULT_ZSTD_LEVEL,
        };
        preprocess(&options, &tokenizer, |_| {}).unwrap();
        temp.path().to_path_buf()
    });
    let selectors = [
        MaskPositions::Random,
        MaskPositions::WholeWord,
        MaskPositions::Span,
    ];
    let mut rates = vec![Vec::new(); selectors.len()];
    for round in 0..args.rounds {
        for (i, &positions) in selectors.iter().enumerate() {
            let config = DataConfig {
                files: vec![shards.display().to_string()],
                tokenizer: TOKENIZER.into(),
                mask_positions: positions,
                execution: DataExecution {
                    threads: args.threads,
                    ..DataExecution::default()
                },
                ..DataConfig::default()
            };
            let rate = tokens_per_second(&config, &tokenizer, args.seconds);
            println!("round {round} {positions:?}: {rate:.0} tokens/s");
            rates[i].push(rate);
        }
    }
    let random = median(rates[0].clone());
    for (positions, rates) in selectors.iter().zip(rates) {
        let m = median(rates);
        println!(
            "median {positions:?}: {m:.0} tokens/s, {:.1}% of random",
            100.0 * m / random
        );
    }
}
