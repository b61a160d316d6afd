//! Weighted mixtures (`[[data.sources]]`): the shares hold the weights over 10,000
//! examples; each source streams exactly what it would alone (with its own seed); the
//! stream is the same for any thread count; sources are spent by their epochs or token
//! budgets and the mixture ends with the last; a mixture resumes exactly at any batch,
//! from raw files and from shards, whole or in data slices; bad configs and cursors are
//! refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{data, options_for, tokenizer};

use std::io::Read;
use std::path::{Path, PathBuf};

use electra_pipeline::corpus::source_seed;
use electra_pipeline::preprocess::preprocess;
use electra_pipeline::{
    Batch, DataConfig, DataCursor, DataSlice, Loader, LoaderStart, MixtureCursor, PipelineError,
    SourceConfig, SourceCursor,
};

const SEED: u64 = 7;

fn source(name: &str, files: &[PathBuf], weight: f64) -> SourceConfig {
    SourceConfig {
        name: name.into(),
        files: files.iter().map(|p| p.display().to_string()).collect(),
        weight,
        epochs: None,
        tokens: None,
    }
}

fn load(config: &DataConfig, slice: DataSlice, start: LoaderStart, n: usize) -> Vec<Batch> {
    Loader::with_slice(config, tokenizer(), SEED, start, slice)
        .unwrap()
        .take(n)
        .map(|b| b.unwrap())
        .collect()
}

/// An example as the model sees it: its id, tokens and masked `(position, label)`s,
/// without padding.
type Row = ((u64, u32), Vec<i64>, Vec<(i64, i64)>);

/// The rows of `batches` drawn from `source` (all rows when `None`), in order.
fn rows(batches: &[Batch], source: Option<u32>) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches {
        let l = b.seq_len;
        for (row, &id) in b.example_ids.iter().enumerate() {
            if source.is_some_and(|s| b.example_sources[row] != s) {
                continue;
            }
            let span = row * l..(row + 1) * l;
            let len = b.attention_mask[span.clone()].iter().sum::<i64>() as usize;
            let masked = b
                .masked_positions
                .iter()
                .zip(&b.masked_labels)
                .filter(|(&p, _)| span.contains(&(p as usize)))
                .map(|(&p, &label)| (p - span.start as i64, label))
                .collect();
            out.push((id, b.input_ids[row * l..row * l + len].to_vec(), masked));
        }
    }
    out
}

/// The three embedded corpora, repeating forever, at weights 0.5 / 0.3 / 0.2.
fn embedded_mixture() -> DataConfig {
    DataConfig {
        sources: vec![
            source("moby", &[data("corpus/moby_dick.txt.zst")], 0.5),
            source("sotu", &[data("corpus/sotu.jsonl.zst")], 0.3),
            source("kjv", &[data("corpus/kjv.txt.zst")], 0.2),
        ],
        batch_size: 100,
        max_seq_len: 32,
        threads: 2,
        chunk_bytes: 16 << 10,
        ..DataConfig::default()
    }
}

#[test]
fn ten_thousand_examples_hold_each_weight_within_a_point_and_each_source_streams_alone() {
    let config = embedded_mixture();
    let batches = load(&config, DataSlice::WHOLE, LoaderStart::default(), 100);
    let sources: Vec<u32> = batches
        .iter()
        .flat_map(|b| b.example_sources.iter().copied())
        .collect();
    assert_eq!(sources.len(), 10_000);
    let cursor = batches.last().unwrap().cursor.mixture.clone().unwrap();
    assert_eq!(
        cursor.slot, 10_000,
        "no source is spent: every slot is drawn"
    );
    for (s, spec) in config.sources.iter().enumerate() {
        let count = sources.iter().filter(|&&x| x == s as u32).count() as u64;
        let share = count as f64 / 10_000.0;
        assert!((share - spec.weight).abs() < 0.01, "{}: {share}", spec.name);
        // The cursor counts each source's examples and tokens.
        let source_rows = rows(&batches, Some(s as u32));
        let tokens: usize = source_rows.iter().map(|r| r.1.len()).sum();
        assert_eq!(cursor.sources[s].examples, count);
        assert_eq!(cursor.sources[s].tokens, tokens as u64);
        // Source s gives what a plain loader over its files gives with its seed.
        let alone = Loader::new(&config.for_source(spec), tokenizer(), source_seed(SEED, s))
            .unwrap()
            .take(count.div_ceil(100) as usize)
            .map(|b| b.unwrap())
            .collect::<Vec<_>>();
        let alone = rows(&alone, None);
        assert!(source_rows == alone[..source_rows.len()], "{}", spec.name);
    }
}

/// A finite mixture on small files: `books` (6 chapters of Moby Dick, one epoch),
/// `speeches` (the starts of 8 speeches, up-sampled to two epochs) and `verses` (the book
/// of Ruth in 9 documents, repeating, with a budget of 1,500 tokens); 64-token examples,
/// batches of 10, blocks of 4.
fn finite_mixture(dir: &Path) -> (DataConfig, Vec<PathBuf>) {
    let text = |name: &str| {
        let mut out = String::new();
        zstd::stream::read::Decoder::new(std::fs::File::open(data(name)).unwrap())
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        out
    };
    let moby = text("corpus/moby_dick.txt.zst");
    let chapters: Vec<&str> = moby
        .split("\n\n")
        .filter(|d| !d.trim().is_empty())
        .collect();
    let kjv = text("corpus/kjv.txt.zst");
    let books: Vec<&str> = kjv.split("\n\n").filter(|d| !d.trim().is_empty()).collect();
    // Ruth, ten verses a document.
    let ruth: Vec<&str> = books[7].lines().collect();
    let verses: Vec<String> = ruth.chunks(10).map(|c| c.join("\n")).collect();
    // The first 2,000 characters of eight speeches.
    let speeches: Vec<String> = text("corpus/sotu.jsonl.zst")
        .lines()
        .take(8)
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            let text: String = record["text"]
                .as_str()
                .unwrap()
                .chars()
                .take(2_000)
                .collect();
            serde_json::json!({ "text": text }).to_string()
        })
        .collect();
    let files = [
        ("books.txt", chapters[4..10].join("\n\n")),
        ("speeches.jsonl", speeches.join("\n")),
        ("verses.txt", verses.join("\n\n")),
    ];
    let paths: Vec<PathBuf> = files
        .iter()
        .map(|(name, text)| {
            let path = dir.join(name);
            std::fs::write(&path, format!("{text}\n")).unwrap();
            path
        })
        .collect();
    let mut sources = vec![
        source("books", &paths[0..1], 0.5),
        source("speeches", &paths[1..2], 0.3),
        source("verses", &paths[2..3], 0.2),
    ];
    sources[0].epochs = Some(1);
    sources[1].epochs = Some(2);
    sources[2].tokens = Some(1_500);
    let config = DataConfig {
        sources,
        batch_size: 10,
        max_seq_len: 64,
        threads: 2,
        chunk_bytes: 8 << 10,
        shuffle_window: 4,
        ..DataConfig::default()
    };
    (config, paths)
}

/// The same config over shards: each source's file preprocessed on its own.
fn as_shards(config: &DataConfig, dir: &Path) -> DataConfig {
    let mut shards = config.clone();
    for (i, source) in shards.sources.iter_mut().enumerate() {
        let files = vec![PathBuf::from(&source.files[0])];
        let out = dir.join(format!("shards-{i}"));
        let report = preprocess(&options_for(files, &out, 2, 0, 1), &tokenizer(), |_| {}).unwrap();
        source.files = vec![report.manifest.display().to_string()];
    }
    shards
}

#[test]
fn sources_are_spent_by_their_epochs_or_budget_and_the_mixture_ends_with_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = finite_mixture(dir.path());
    let batches = load(
        &config,
        DataSlice::WHOLE,
        LoaderStart::default(),
        usize::MAX,
    );
    let last = batches.last().unwrap().cursor.mixture.clone().unwrap();
    let totals: Vec<(u64, u64)> = last
        .sources
        .iter()
        .map(|c| (c.examples, c.tokens))
        .collect();
    // Books and speeches give every example of their epochs, as they would alone.
    for s in 0..2 {
        let alone = Loader::new(
            &config.for_source(&config.sources[s]),
            tokenizer(),
            source_seed(SEED, s),
        )
        .unwrap()
        .map(|b| b.unwrap())
        .collect::<Vec<_>>();
        assert_eq!(
            rows(&batches, Some(s as u32)),
            rows(&alone, None),
            "source {s}"
        );
    }
    // Verses stop at the example that reaches 1,500 tokens.
    let verses = rows(&batches, Some(2));
    let before_last: usize = verses[..verses.len() - 1].iter().map(|r| r.1.len()).sum();
    assert!(
        totals[2].1 >= 1_500 && (before_last as u64) < 1_500,
        "{totals:?}"
    );
    // Once spent, a source gives no more: verses come early, in the first 40%.
    let sources: Vec<u32> = batches
        .iter()
        .flat_map(|b| b.example_sources.clone())
        .collect();
    let last_verse = sources.iter().rposition(|&s| s == 2).unwrap();
    assert!(
        last_verse < sources.len() * 2 / 5,
        "{last_verse} of {}",
        sources.len()
    );
    assert_eq!(
        sources.len() as u64,
        totals.iter().map(|t| t.0).sum::<u64>()
    );
    assert!(batches.len() > 25, "{} batches", batches.len());
}

/// Resuming from the cursor of batch k gives exactly the batches after k, with another
/// thread count and chunk size, at cuts before, around and after a source is spent.
fn check_resume(config: &DataConfig, slice: DataSlice) {
    let full = load(config, slice, LoaderStart::default(), usize::MAX);
    assert!(full.len() > 10, "{} batches", full.len());
    let resumed_config = DataConfig {
        threads: 3,
        chunk_bytes: 3 << 10,
        ..config.clone()
    };
    let n = full.len();
    for k in [0, 1, n / 4, n / 3, n / 2, n - 2, n - 1] {
        let start = LoaderStart {
            batches_done: k as u64 + 1,
            cursor: full[k].cursor.clone(),
        };
        let rest = load(&resumed_config, slice, start, usize::MAX);
        assert_eq!(
            rest.len(),
            n - k - 1,
            "slice {slice}: resuming after batch {k}"
        );
        for (a, b) in rest.iter().zip(&full[k + 1..]) {
            assert!(
                a == b,
                "slice {slice}: batch {} differs after batch {k}",
                b.seq_no
            );
        }
    }
}

#[test]
fn a_mixture_of_raw_files_resumes_exactly_whole_or_in_slices() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = finite_mixture(dir.path());
    check_resume(&config, DataSlice::WHOLE);
    // Two slices, each with half the batch and its own schedule, each resumed from its
    // own cursor: what a run of two slices needs on one rank or two.
    let half = DataConfig {
        batch_size: 5,
        ..config
    };
    for index in 0..2 {
        let slice = DataSlice::new(index, 2).unwrap();
        check_resume(&half, slice);
        // Each slice spends its half of the verses' budget.
        let batches = load(&half, slice, LoaderStart::default(), usize::MAX);
        let verses = batches
            .last()
            .unwrap()
            .cursor
            .mixture
            .clone()
            .unwrap()
            .sources[2];
        assert!((750..750 + 64).contains(&verses.tokens), "{verses:?}");
    }
}

#[test]
fn a_mixture_of_shards_resumes_exactly_whole_or_in_slices() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = finite_mixture(dir.path());
    let shards = as_shards(&config, dir.path());
    check_resume(&shards, DataSlice::WHOLE);
    let half = DataConfig {
        batch_size: 5,
        ..shards
    };
    check_resume(&half, DataSlice::new(1, 2).unwrap());
}

#[test]
fn a_mixture_is_the_same_for_any_thread_count_and_chunk_size() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = finite_mixture(dir.path());
    let one = load(
        &DataConfig {
            threads: 1,
            ..config.clone()
        },
        DataSlice::WHOLE,
        LoaderStart::default(),
        usize::MAX,
    );
    let four = load(
        &DataConfig {
            threads: 4,
            chunk_bytes: 1 << 10,
            ..config
        },
        DataSlice::WHOLE,
        LoaderStart::default(),
        usize::MAX,
    );
    assert!(
        one == four,
        "1 thread differs from 4 threads / 1 KiB chunks"
    );
}

#[test]
fn bad_mixture_configs_and_foreign_cursors_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (config, paths) = finite_mixture(dir.path());
    let refused = |config: &DataConfig, start: LoaderStart| match Loader::resume(
        config,
        tokenizer(),
        SEED,
        start,
    ) {
        Err(PipelineError::InvalidConfig { field, reason }) => (field, reason),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let with_files = DataConfig {
        files: vec![paths[0].display().to_string()],
        ..config.clone()
    };
    assert_eq!(refused(&with_files, LoaderStart::default()).0, "sources");
    let mut zero = config.clone();
    zero.sources[1].weight = 0.0;
    let (field, reason) = refused(&zero, LoaderStart::default());
    assert_eq!(field, "sources");
    assert!(reason.contains("speeches"), "{reason}");
    // A cursor of two sources, or of a single corpus, does not resume three.
    let two = DataCursor {
        mixture: Some(MixtureCursor {
            slot: 5,
            sources: vec![SourceCursor::default(); 2],
        }),
        ..DataCursor::default()
    };
    for cursor in [two, DataCursor::after(0, 3, 3, 0)] {
        let start = LoaderStart {
            batches_done: 1,
            cursor,
        };
        assert_eq!(refused(&config, start).0, "sources");
    }
}

#[test]
fn dropping_a_mixture_with_a_spent_source_mid_stream_joins_its_threads_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = finite_mixture(dir.path());
    let mut loader = Loader::new(&config, tokenizer(), SEED).unwrap();
    // Past the verses' budget: their reader waits for a slot it will never get.
    let batch = loader.nth(20).unwrap().unwrap();
    let verses = batch.cursor.mixture.unwrap().sources[2];
    assert!(verses.tokens >= 1_500, "{verses:?}");
    let started = std::time::Instant::now();
    drop(loader);
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(2),
        "drop took {took:?}"
    );
}
