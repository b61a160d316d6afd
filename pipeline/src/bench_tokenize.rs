//! Measuring the tokenize stage on one thread: the fast path against the `tokenizers`
//! crate on the same sentences, the whole live pipeline with one worker, zstd decoding
//! alone (the limit), and where the crate's own time goes (normalizer, pre-tokenizer,
//! model, the rest) for any tokenizer, BPE and Unigram included.
//!
//! `cargo run --release -p electra-pipeline --example bench_tokenize` prints it.

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokenizers::{
    Model, NormalizedString, Normalizer, OffsetReferential, OffsetType, PreTokenizedString,
    PreTokenizer,
};

use crate::config::{DataConfig, DataExecution};
use crate::error::{PipelineError, Result};
use crate::loader::Loader;
use crate::source::{sentences, DocumentReader, SourceOptions};
use crate::tokenize::TextTokenizer;

/// What to measure.
#[derive(Debug, Clone)]
pub struct TokenizeBenchOptions {
    /// Corpus files (plain text or JSONL, zstd or not).
    pub files: Vec<PathBuf>,
    /// How they are read.
    pub source: SourceOptions,
    /// Sentences are read up to this many bytes of text.
    pub sample_bytes: u64,
    /// Each timing repeats its pass over the sample until this long has passed (0: one
    /// pass).
    pub min_seconds: f64,
    /// Also run the whole live pipeline (one worker) for this long; 0 skips it.
    pub pipeline_seconds: f64,
    /// Also time the tokenizer as given on this many threads at once, when above 1.
    pub threads: usize,
    /// Also split the crate's time by stage ([`CrateStages`]; three rounds over 2 MB).
    pub crate_stages: bool,
}

impl Default for TokenizeBenchOptions {
    /// 8 MB of text, 3 s per timing, 10 s of pipeline, one thread, the crate's stages.
    fn default() -> Self {
        Self {
            files: Vec::new(),
            source: SourceOptions::default(),
            sample_bytes: 8 << 20,
            min_seconds: 3.0,
            pipeline_seconds: 10.0,
            threads: 1,
            crate_stages: true,
        }
    }
}

/// Tokens per second of one way of tokenizing the sample.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Rate {
    /// Tokens produced over all passes.
    pub tokens: u64,
    /// Seconds taken.
    pub seconds: f64,
    /// `tokens / seconds`.
    pub tokens_per_sec: f64,
}

/// Where the `tokenizers` crate spends its time on the sample, in seconds per pass.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CrateStages {
    /// The normalizer (on a `NormalizedString`, with its alignments). All four figures
    /// are seconds over the first 2 MB of the sample, the least of three rounds; each
    /// includes the stages before it.
    pub normalize: f64,
    /// The pre-tokenizer (splitting the normalized string into words).
    pub pre_tokenize: f64,
    /// The model on every word (WordPiece, BPE, Unigram ...).
    pub model: f64,
    /// `encode_fast` over the sample, all of it: added tokens, encodings and the rest.
    pub encode_fast: f64,
}

/// The report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TokenizeBench {
    /// Sentences in the sample.
    pub sentences: usize,
    /// Their UTF-8 bytes.
    pub text_bytes: u64,
    /// Tokens in one pass over them.
    pub tokens: u64,
    /// zstd decoding of the sample's files alone, as tokens per second at the sample's
    /// tokens per byte of text: how fast tokenizing could possibly go.
    pub zstd_decode: Rate,
    /// The fast path, if the tokenizer has one.
    pub fast: Option<Rate>,
    /// The `tokenizers` crate as the pipeline calls it with the fast path off.
    pub crate_path: Rate,
    /// The tokenizer as given (the fast path when it has one) on
    /// [`TokenizeBenchOptions::threads`] threads at once, thread `t` encoding sentences
    /// `t, t + threads, ...`: how far this machine scales the tokenizer alone. When
    /// `threads` is above 1.
    pub on_threads: Option<Rate>,
    /// The whole live pipeline (reader, one worker, batcher) with the tokenizer as given,
    /// if it was run.
    pub pipeline: Option<Rate>,
    /// The same with the fast path off, if it was run and the tokenizer has one.
    pub pipeline_crate: Option<Rate>,
    /// The crate's time split by stage, when asked for.
    pub crate_stages: Option<CrateStages>,
}

impl TokenizeBench {
    /// Fast path / crate.
    pub fn speedup(&self) -> Option<f64> {
        self.fast
            .map(|f| f.tokens_per_sec / self.crate_path.tokens_per_sec.max(1e-9))
    }

    /// The tokenizer as given on one thread: the fast path when it has one, else the crate.
    pub fn as_given(&self) -> Rate {
        self.fast.unwrap_or(self.crate_path)
    }

    /// `rate` as a fraction of zstd decoding alone: how close it comes to the limit.
    pub fn of_zstd_decode(&self, rate: f64) -> f64 {
        rate / self.zstd_decode.tokens_per_sec.max(1e-9)
    }
}

/// Repeats `pass` (which returns tokens) until `min_seconds` have passed.
fn timed(min_seconds: f64, mut pass: impl FnMut() -> Result<u64>) -> Result<Rate> {
    let started = Instant::now();
    let mut tokens = 0;
    loop {
        tokens += pass()?;
        let seconds = started.elapsed().as_secs_f64();
        if seconds >= min_seconds {
            return Ok(Rate {
                tokens,
                seconds,
                tokens_per_sec: tokens as f64 / seconds.max(1e-9),
            });
        }
    }
}

/// Encodes `sample`'s sentences one by one as the pipeline does; the tokens.
fn encode_all<'a>(
    tokenizer: &TextTokenizer,
    sample: impl IntoIterator<Item = &'a String>,
) -> Result<u64> {
    let (mut ids, mut starts) = (Vec::new(), Vec::new());
    let mut tokens = 0;
    for s in sample {
        ids.clear();
        starts.clear();
        tokens += tokenizer.encode_sentence(s, &mut ids, &mut starts)? as u64;
    }
    Ok(tokens)
}

/// One pass over `sample` on `threads` threads at once, thread `t` encoding sentences
/// `t, t + threads, ...`.
fn encode_on_threads(tokenizer: &TextTokenizer, sample: &[String], threads: usize) -> Result<Rate> {
    let started = Instant::now();
    let counts = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || encode_all(tokenizer, sample.iter().skip(t).step_by(threads)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(PipelineError::WorkerPanicked {
                        thread: "bench tokenizer".into(),
                        message: "while encoding the sample".into(),
                    })
                })
            })
            .collect::<Result<Vec<u64>>>()
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let tokens = counts.iter().sum();
    Ok(Rate {
        tokens,
        seconds,
        tokens_per_sec: tokens as f64 / seconds.max(1e-9),
    })
}

fn read_sample(options: &TokenizeBenchOptions) -> Result<Vec<String>> {
    let mut sample = Vec::new();
    let mut bytes = 0u64;
    for chunk in DocumentReader::new(options.files.clone(), options.source.clone())? {
        for s in sentences(&chunk?.batch) {
            bytes += s.len() as u64;
            sample.push(s);
        }
        if bytes >= options.sample_bytes {
            break;
        }
    }
    Ok(sample)
}

/// The start of `sample` up to [`STAGE_SAMPLE_BYTES`].
fn stage_sample(sample: &[String]) -> &[String] {
    let mut bytes = 0;
    let n = sample
        .iter()
        .take_while(|s| {
            bytes += s.len();
            bytes <= STAGE_SAMPLE_BYTES
        })
        .count();
    &sample[..n.max(1).min(sample.len())]
}

/// Decodes the files (zstd where named `.zst`) into nothing; returns the decoded bytes.
fn zstd_decode(files: &[PathBuf]) -> Result<u64> {
    let mut total = 0;
    let mut buffer = vec![0u8; 1 << 20];
    for path in files {
        let io = |source| PipelineError::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "zst") {
            Box::new(zstd::Decoder::new(file).map_err(io)?)
        } else {
            Box::new(file)
        };
        loop {
            let n = reader.read(&mut buffer).map_err(io)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    Ok(total)
}

/// The crate's stages, each timed over the whole sample: normalizing alone, normalizing
/// and pre-tokenizing, all three, then `encode_fast`.
fn crate_stages(text_tokenizer: &TextTokenizer, sample: &[String]) -> Result<CrateStages> {
    let tokenizer = text_tokenizer.inner();
    let error = |source: tokenizers::Error| PipelineError::Tokenizer {
        path: text_tokenizer.path().to_path_buf(),
        source,
    };
    let normalize = |s: &str| -> Result<NormalizedString> {
        let mut n = NormalizedString::from(s);
        if let Some(normalizer) = tokenizer.get_normalizer() {
            normalizer.normalize(&mut n).map_err(error)?;
        }
        Ok(n)
    };
    let pre_tokenize = |s: &str| -> Result<PreTokenizedString> {
        let mut p = PreTokenizedString::from(normalize(s)?);
        if let Some(pre) = tokenizer.get_pre_tokenizer() {
            pre.pre_tokenize(&mut p).map_err(error)?;
        }
        Ok(p)
    };
    let model = tokenizer.get_model();
    let time = |f: &dyn Fn(&str) -> Result<()>| -> Result<f64> {
        let started = Instant::now();
        for s in sample {
            f(s)?;
        }
        Ok(started.elapsed().as_secs_f64())
    };
    let round = || -> Result<CrateStages> {
        Ok(CrateStages {
            normalize: time(&|s| normalize(s).map(drop))?,
            pre_tokenize: time(&|s| pre_tokenize(s).map(drop))?,
            model: time(&|s| {
                let mut p = pre_tokenize(s)?;
                p.tokenize(|n| model.tokenize(n.get())).map_err(error)?;
                std::hint::black_box(p.get_splits(OffsetReferential::Original, OffsetType::None));
                Ok(())
            })?,
            encode_fast: time(&|s| tokenizer.encode_fast(s, false).map(drop).map_err(error))?,
        })
    };
    // The least of three rounds of each, so that a busy machine skews the split less.
    let mut best = round()?;
    for _ in 1..STAGE_ROUNDS {
        let r = round()?;
        best = CrateStages {
            normalize: best.normalize.min(r.normalize),
            pre_tokenize: best.pre_tokenize.min(r.pre_tokenize),
            model: best.model.min(r.model),
            encode_fast: best.encode_fast.min(r.encode_fast),
        };
    }
    Ok(best)
}

/// Rounds of the crate's stage timings.
const STAGE_ROUNDS: usize = 3;
/// Text the crate's stages are timed on (the start of the sample).
const STAGE_SAMPLE_BYTES: usize = 2 << 20;

/// The whole live pipeline over `files` with one worker, for `seconds`.
fn pipeline(tokenizer: &TextTokenizer, files: &[PathBuf], seconds: f64) -> Result<Rate> {
    let config = DataConfig {
        files: files.iter().map(|f| f.display().to_string()).collect(),
        epochs: None,
        execution: DataExecution {
            threads: 1,
            ..DataExecution::default()
        },
        ..DataConfig::default()
    };
    let mut loader = Loader::new(&config, tokenizer.clone(), 42)?;
    loader.next().transpose()?; // start-up is not timed
    let limit = Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tokens = 0u64;
    for batch in loader.by_ref() {
        tokens += batch?.real_tokens as u64;
        if started.elapsed() >= limit {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Rate {
        tokens,
        seconds,
        tokens_per_sec: tokens as f64 / seconds.max(1e-9),
    })
}

/// Measures `tokenizer` on a sample of `options.files`, everything on this thread (the
/// pipeline figure uses its own reader, worker and batcher threads, the threads figure its
/// own threads).
pub fn bench_tokenize(
    tokenizer: &TextTokenizer,
    options: &TokenizeBenchOptions,
) -> Result<TokenizeBench> {
    let sample = read_sample(options)?;
    let text_bytes: u64 = sample.iter().map(|s| s.len() as u64).sum();
    let slow = tokenizer.clone().with_fast_path(false);
    let mut tokens = 0;
    let crate_path = timed(options.min_seconds, || {
        tokens = encode_all(&slow, &sample)?;
        Ok(tokens)
    })?;
    let tokens_per_byte = tokens as f64 / text_bytes.max(1) as f64;
    let zstd_decode = timed(options.min_seconds, || {
        Ok((zstd_decode(&options.files)? as f64 * tokens_per_byte) as u64)
    })?;
    let fast = if tokenizer.fast_path() {
        Some(timed(options.min_seconds, || {
            encode_all(tokenizer, &sample)
        })?)
    } else {
        None
    };
    let on_threads = (options.threads > 1)
        .then(|| encode_on_threads(tokenizer, &sample, options.threads))
        .transpose()?;
    let run_pipeline = |t: &TextTokenizer| {
        (options.pipeline_seconds > 0.0)
            .then(|| pipeline(t, &options.files, options.pipeline_seconds))
            .transpose()
    };
    let pipeline = run_pipeline(tokenizer)?;
    let pipeline_crate = match fast {
        Some(_) => run_pipeline(&slow)?,
        None => None,
    };
    Ok(TokenizeBench {
        sentences: sample.len(),
        text_bytes,
        tokens,
        zstd_decode,
        fast,
        crate_path,
        on_threads,
        pipeline,
        pipeline_crate,
        crate_stages: options
            .crate_stages
            .then(|| crate_stages(tokenizer, stage_sample(&sample)))
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_counts_the_same_tokens_on_both_paths_and_times_the_crates_stages() {
        let tokenizer = crate::tokenize::tests::bert();
        let options = TokenizeBenchOptions {
            files: vec![concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../data/corpus/moby_dick.txt.zst"
            )
            .into()],
            sample_bytes: 20_000,
            min_seconds: 0.0,
            pipeline_seconds: 0.0,
            threads: 2,
            ..TokenizeBenchOptions::default()
        };
        let report = bench_tokenize(&tokenizer, &options).unwrap();
        assert!(
            report.text_bytes >= 20_000 && report.tokens > 3_000,
            "{report:?}"
        );
        let fast = report.fast.unwrap();
        assert_eq!(fast.tokens, report.tokens, "one pass, the same tokens");
        assert_eq!(report.crate_path.tokens, report.tokens);
        assert_eq!(report.on_threads.unwrap().tokens, report.tokens);
        assert!(
            report.zstd_decode.tokens > report.tokens,
            "the whole book is decoded, the sample is its first chunk"
        );
        let s = report.crate_stages.unwrap();
        for seconds in [s.normalize, s.pre_tokenize, s.model, s.encode_fast] {
            assert!(seconds > 0.0 && seconds.is_finite(), "{s:?}");
        }
        assert!(report.speedup().unwrap() > 0.0 && report.pipeline.is_none());
    }
}
