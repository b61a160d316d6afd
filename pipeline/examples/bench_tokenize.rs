//! Prints [`electra_pipeline::bench_tokenize`] for tokenizers and corpora:
//!
//! ```text
//! cargo run --release -p electra-pipeline --example bench_tokenize -- \
//!     [--seconds 3] [--pipeline-seconds 10] [--sample-mb 8] [--other-models] \
//!     --tokenizer data/tokenizer/bert-base-uncased/tokenizer.json [--tokenizer ...] FILES...
//! ```
//!
//! `--other-models` also trains a byte-level BPE (GPT-2/RoBERTa style: no normalizer,
//! ByteLevel pre-tokenizer) and a Unigram (NFKC, Metaspace: SentencePiece style), 16k
//! tokens each, on 1 MB of the sample, and reports where the crate spends its time on them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use electra_pipeline::bench_tokenize::{bench_tokenize, Rate, TokenizeBench, TokenizeBenchOptions};
use electra_pipeline::source::{sentences, SourceOptions};
use electra_pipeline::{DocumentReader, TextTokenizer};
use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::models::unigram::{Unigram, UnigramTrainer};
use tokenizers::models::TrainerWrapper;
use tokenizers::normalizers::unicode::NFKC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::metaspace::Metaspace;
use tokenizers::{AddedToken, ModelWrapper, Tokenizer};

/// Errors of the crate and of this binary alike.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    options: TokenizeBenchOptions,
    tokenizers: Vec<PathBuf>,
    other_models: bool,
}

fn args() -> Result<Args, BoxError> {
    let mut options = TokenizeBenchOptions::default();
    let (mut tokenizers, mut other_models) = (Vec::new(), false);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--seconds" => options.min_seconds = value()?.parse()?,
            "--pipeline-seconds" => options.pipeline_seconds = value()?.parse()?,
            "--sample-mb" => options.sample_bytes = (value()?.parse::<f64>()? * 1e6) as u64,
            "--tokenizer" => tokenizers.push(value()?.into()),
            "--other-models" => other_models = true,
            _ => options.files.push(a.into()),
        }
    }
    if options.files.is_empty() || (tokenizers.is_empty() && !other_models) {
        return Err("usage: bench_tokenize [options] --tokenizer FILE... FILES...".into());
    }
    Ok(Args {
        options,
        tokenizers,
        other_models,
    })
}

fn specials() -> Vec<AddedToken> {
    ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        .iter()
        .map(|t| AddedToken::from(*t, true))
        .collect()
}

/// Trains the byte-level BPE and the Unigram on 1 MB of the files; their paths.
fn other_models(files: &[PathBuf], dir: &Path) -> Result<Vec<PathBuf>, BoxError> {
    let mut sample = Vec::new();
    let mut bytes = 0;
    for chunk in DocumentReader::new(files.to_vec(), SourceOptions::default())? {
        let s = sentences(&chunk?.batch);
        bytes += s.iter().map(String::len).sum::<usize>();
        sample.extend(s);
        if bytes > 1_000_000 {
            break;
        }
    }
    let bpe_trainer = BpeTrainer::builder()
        .vocab_size(16000)
        .min_frequency(2)
        .special_tokens(specials())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let unigram_trainer = UnigramTrainer::builder()
        .vocab_size(16000)
        .special_tokens(specials())
        .unk_token(Some("<unk>".into()))
        .build()?;
    let mut paths = Vec::new();
    for (name, model, trainer) in [
        (
            "byte-level-bpe",
            ModelWrapper::from(BPE::default()),
            TrainerWrapper::from(bpe_trainer),
        ),
        ("unigram", Unigram::default().into(), unigram_trainer.into()),
    ] {
        let mut tokenizer = Tokenizer::new(model);
        if name == "unigram" {
            tokenizer
                .with_normalizer(Some(NFKC))
                .with_pre_tokenizer(Some(Metaspace::default()));
        } else {
            tokenizer
                .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
                .with_decoder(Some(ByteLevel::default()));
        }
        let mut trainer = trainer;
        tokenizer.train(&mut trainer, sample.iter())?;
        let path = dir.join(format!("{name}.json"));
        tokenizer.save(&path, false)?;
        paths.push(path);
    }
    Ok(paths)
}

fn rate(r: &Rate) -> String {
    format!("{:>7.3}M tokens/s", r.tokens_per_sec / 1e6)
}

fn print(path: &Path, r: &TokenizeBench) {
    println!("{}", path.display());
    println!(
        "  sample                {} sentences, {:.1} MB, {} tokens",
        r.sentences,
        r.text_bytes as f64 / 1e6,
        r.tokens
    );
    println!("  zstd decode alone     {}", rate(&r.zstd_decode));
    if let Some(fast) = &r.fast {
        let limit = fast.tokens_per_sec / r.zstd_decode.tokens_per_sec;
        println!(
            "  fast path, 1 thread   {}  ({limit:.3} of zstd decode)",
            rate(fast)
        );
    }
    println!("  tokenizers crate      {}", rate(&r.crate_path));
    if let Some(x) = r.speedup() {
        println!("  fast / crate          {x:.2}x");
    }
    if let Some(p) = &r.pipeline {
        println!("  pipeline, 1 worker    {}", rate(p));
    }
    if let Some(p) = &r.pipeline_crate {
        println!("  pipeline, crate       {}", rate(p));
    }
    let Some(s) = &r.crate_stages else {
        return;
    };
    let share = |x: f64| 100.0 * x / s.encode_fast;
    println!(
        "  crate time per pass   encode_fast {:.3}s = normalize {:.0}% + pre-tokenize {:.0}% + model {:.0}% + rest {:.0}%",
        s.encode_fast,
        share(s.normalize),
        share(s.pre_tokenize - s.normalize),
        share(s.model - s.pre_tokenize),
        share(s.encode_fast - s.model),
    );
}

fn main() -> Result<(), BoxError> {
    let mut args = args()?;
    let dir = tempfile::tempdir()?;
    if args.other_models {
        args.tokenizers
            .extend(other_models(&args.options.files, dir.path())?);
    }
    for path in &args.tokenizers {
        let started = std::time::Instant::now();
        let tokenizer = TextTokenizer::from_file(path)?;
        let load = started.elapsed().as_secs_f64() * 1e3;
        print(path, &bench_tokenize(&tokenizer, &args.options)?);
        println!(
            "  loading               {load:.0} ms (fast path: {})",
            tokenizer.fast_path()
        );
    }
    Ok(())
}
