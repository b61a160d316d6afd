use std::sync::atomic::AtomicBool;

use crossbeam_channel::bounded;

use super::*;
use crate::block::{ChunkDocuments, ExampleRef};
use crate::config::BadRecordPolicy;
use crate::corpus::SlotSchedule;
use crate::mask::{MaskOptions, Masker};
use crate::pack::{PackOptions, Packer};
use crate::source::tests::{write, CORPUS};
use crate::source::{DocumentReader, SourceOptions};
use crate::tokenize::tests::bert;
use std::time::{Duration, Instant};

/// Test-only fault injection: a document whose first sentence is [`fault::PANIC`]
/// makes the worker panic.
pub(crate) mod fault {
    use arrow_array::{Array, ListArray, RecordBatch, StringArray};

    pub(crate) const PANIC: &str = "__electra_test_panic__";

    pub(crate) fn check(batch: &RecordBatch) {
        let Some(list) = batch
            .column_by_name("sentences")
            .and_then(|c| c.as_any().downcast_ref::<ListArray>())
        else {
            return;
        };
        if let Some(values) = list.values().as_any().downcast_ref::<StringArray>() {
            if (0..values.len()).any(|i| values.value(i) == PANIC) {
                panic!("injected fault");
            }
        }
    }
}

fn corpus(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| format!("{CORPUS}/{n}")).collect()
}

fn config(files: Vec<String>, threads: usize, chunk_bytes: usize) -> DataConfig {
    DataConfig {
        files,
        threads,
        chunk_bytes,
        batch_size: 32,
        epochs: Some(1),
        ..Default::default()
    }
}

fn collect(config: &DataConfig, seed: u64) -> Vec<Batch> {
    Loader::new(config, bert(), seed)
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

#[test]
fn batches_are_identical_for_any_thread_count_and_chunk_size() {
    let files = corpus(&["moby_dick.txt.zst", "sotu.jsonl.zst"]);
    let one = collect(&config(files.clone(), 1, 256 << 10), 42);
    assert!(one.len() > 100, "{} batches", one.len());
    for (i, b) in one.iter().enumerate() {
        assert_eq!(b.seq_no, i as u64);
        assert_eq!(b.input_ids.len(), b.batch_size * b.seq_len);
        assert!(b.seq_len <= 128 && b.seq_len % 8 == 0);
    }
    assert!(one[..one.len() - 1].iter().all(|b| b.batch_size == 32));
    let four = collect(&config(files.clone(), 4, 16 << 10), 42);
    assert!(
        one == four,
        "1 thread / 256 KiB chunks differ from 4 threads / 16 KiB chunks"
    );
    let eight = collect(&config(files, 8, 1 << 20), 42);
    assert!(
        one == eight,
        "1 thread differs from 8 threads / 1 MiB chunks"
    );
}

/// Without `shuffle`, the loader's batches equal packing then masking every document in
/// file order, in one block on this thread, cut into batches: threads, chunking,
/// reordering and the batcher change nothing.
#[test]
fn batches_equal_packing_then_masking_every_document_in_order() {
    let files = corpus(&["moby_dick.txt.zst", "sotu.jsonl.zst"]);
    let mut c = config(files.clone(), 2, 64 << 10);
    c.mask_strategy = crate::config::MaskStrategy::Bert;
    c.shuffle = false;
    let seed = 5;
    let batches = collect(&c, seed);
    let tokenizer = bert();
    let special = tokenizer.special();
    let packer = Packer::new(PackOptions::from_config(&c), special);
    let masker = Masker::new(
        MaskOptions::from_config(&c, tokenizer.vocab_size()),
        special,
    );
    let paths: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
    let mut block = MaskedBlock::new();
    let mut position = 0;
    for chunk in DocumentReader::new(paths, SourceOptions::from_config(&c)).unwrap() {
        let tokenized = tokenizer.tokenize(&chunk.unwrap().batch).unwrap();
        let documents = ChunkDocuments {
            batch: &tokenized,
            rows: None,
            first_document: position,
            stride: 1,
            word_starts: false,
        };
        block.pack_tokenized(&packer, seed, 0, documents).unwrap();
        position += tokenized.num_rows() as u64;
    }
    block.mask(&masker, seed, 0);
    let shape = BatchShape::from_config(&c, special.pad);
    let examples: Vec<ExampleRef<'_>> = block.iter().collect();
    let expected: Vec<Batch> = examples
        .chunks(c.batch_size)
        .enumerate()
        .map(|(i, e)| Batch::from_refs(i as u64, 0, e, &shape, BadRecordCounts::default()))
        .collect();
    assert!(expected.len() > 100, "{} batches", expected.len());
    assert_eq!(batches.len(), expected.len());
    for (got, want) in batches.iter().zip(&expected) {
        let fields = |b: &Batch| {
            (
                b.seq_no,
                b.seq_len,
                b.input_ids.clone(),
                b.segment_ids.clone(),
                b.attention_mask.clone(),
                b.masked_positions.clone(),
                b.masked_labels.clone(),
                b.example_ids.clone(),
                b.real_tokens,
            )
        };
        assert!(fields(got) == fields(want), "batch {} differs", got.seq_no);
    }
    let last = examples.len() - 1;
    assert_eq!(
        batches.last().unwrap().cursor,
        DataCursor::after(
            0,
            block.document(last),
            examples[last].doc_id,
            examples[last].example_index
        )
    );
}

#[test]
fn a_new_epoch_gets_new_packing_and_masks() {
    let files = corpus(&["moby_dick.txt.zst"]);
    let mut c = config(files, 2, 64 << 10);
    c.epochs = Some(2);
    // In file order, so the second pass starts with the first document again.
    c.shuffle = false;
    let batches = collect(&c, 1);
    // Every row with its example id and its (masked) tokens.
    let rows: Vec<((u64, u32), &[i64])> = batches
        .iter()
        .flat_map(|b| {
            b.example_ids
                .iter()
                .copied()
                .zip(b.input_ids.chunks(b.seq_len))
        })
        .collect();
    let second_pass = rows.iter().skip(1).position(|r| r.0 == (0, 0)).unwrap() + 1;
    assert!(
        second_pass > 100 && rows.len() - second_pass > 100,
        "{second_pass} of {}",
        rows.len()
    );
    assert_ne!(
        rows[0].1, rows[second_pass].1,
        "epoch 1 repeats epoch 0's first example"
    );
    assert!(batches.last().unwrap().epoch == 1);
    // Same seed, same stream; another seed, another stream.
    let again = collect(&c, 1);
    assert!(batches == again);
    let other = collect(&c, 2);
    assert_ne!(batches[0].masked_positions, other[0].masked_positions);
}

#[test]
fn a_worker_panic_reaches_the_consumer_as_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..200 {
        text.push_str(&format!(
            "Document number {i} has a sentence.\nAnd another one.\n\n"
        ));
    }
    text.push_str(fault::PANIC);
    text.push('\n');
    let f = write(dir.path(), "p.txt", text.as_bytes());
    let mut c = config(vec![f.display().to_string()], 2, 512);
    c.batch_size = 8;
    // In file order, so the fault comes last (a shuffle would move it).
    c.shuffle = false;
    let results: Vec<Result<Batch>> = Loader::new(&c, bert(), 0).unwrap().collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!(ok > 10, "{ok} batches before the error");
    match results.last() {
        Some(Err(PipelineError::WorkerPanicked { thread, message })) => {
            assert!(thread.starts_with("electra-worker-"), "{thread}");
            assert_eq!(message, "injected fault");
        }
        other => panic!("expected a panic error last, got {other:?}"),
    }
    assert!(results[..results.len() - 1].iter().all(|r| r.is_ok()));
}

#[test]
fn a_read_error_under_fail_ends_the_stream_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..100 {
        text.push_str(&format!(
            "{{\"text\": \"Record {i} says hello.\\nSecond line.\"}}\n"
        ));
    }
    text.push_str("{broken\n");
    let f = write(dir.path(), "e.jsonl", text.as_bytes());
    let mut c = config(vec![f.display().to_string()], 3, 256);
    c.on_bad_record = BadRecordPolicy::Fail;
    c.batch_size = 4;
    // In file order: a shuffle block is read whole before any of its documents go out, so
    // shuffled, the error would come before the block's batches.
    c.shuffle = false;
    let mut loader = Loader::new(&c, bert(), 0).unwrap();
    let mut seq = 0;
    let err = loop {
        match loader.next() {
            Some(Ok(b)) => {
                assert_eq!(b.seq_no, seq);
                seq += 1;
            }
            Some(Err(e)) => break e,
            None => panic!("the stream ended without the error"),
        }
    };
    assert!(
        matches!(err, PipelineError::Json { line: 101, .. }),
        "{err:?}"
    );
    assert!(seq >= 20, "{seq} batches before the error");
    assert!(loader.next().is_none());
    assert!(loader.next().is_none());
}

#[test]
fn bad_record_counts_sum_to_the_total_over_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..60 {
        text.push_str(&format!("{{\"text\": \"Record {i} is fine.\"}}\n"));
        if i % 7 == 0 {
            text.push_str("not json\n");
        }
    }
    text.push_str("trailing garbage\n");
    let f = write(dir.path(), "c.jsonl", text.as_bytes());
    let mut c = config(vec![f.display().to_string()], 2, 64);
    c.batch_size = 8;
    let mut loader = Loader::new(&c, bert(), 0).unwrap();
    let batches: Vec<Batch> = loader.by_ref().map(|b| b.unwrap()).collect();
    let stats = loader.stats();
    assert_eq!(
        (stats.documents_read, stats.examples, stats.batches),
        (60, 60, batches.len() as u64)
    );
    let mut total = crate::source::BadRecordCounts::default();
    for b in &batches {
        total.add(&b.bad_records);
    }
    assert_eq!(total.malformed_json, 10);
    assert_eq!(batches.iter().map(|b| b.batch_size).sum::<usize>(), 60);
}

#[test]
fn a_vanished_thread_is_an_error_not_the_end_of_data() {
    let (result_tx, result_rx) = bounded(4);
    let (slot_tx, _slot_rx) = bounded(4);
    let (out_tx, out_rx) = bounded(4);
    let batcher = Batcher {
        batches_done: 0,
        batch_size: 2,
        shape: BatchShape::from_config(&DataConfig::default(), 0),
        mixer: Mixer::new(SlotSchedule::single(), vec![None], MixtureCursor::default()),
        is_mixture: false,
        results: result_rx,
        slots: vec![slot_tx],
        output: out_tx,
        stop: Arc::new(AtomicBool::new(false)),
        counters: Arc::new(Counters::default()),
    };
    let example = ExampleRef {
        doc_id: 0,
        example_index: 0,
        input_ids: &[101, 7, 102],
        segment_ids: &[0; 3],
        masked_positions: &[1],
        masked_labels: &[7],
    };
    result_tx
        .send(Message::Chunk {
            source: 0,
            seq: 0,
            epoch: 0,
            examples: Ok(Box::new((0..5).fold(MaskedBlock::new(), |mut block, i| {
                block.push(i, example);
                block
            }))),
            bad_records: BadRecordCounts::default(),
            seek_id: None,
        })
        .unwrap();
    drop(result_tx); // every sender gone, and no End
    let handle = std::thread::spawn(move || batcher.run());
    let got: Vec<Result<Batch>> = out_rx.iter().collect();
    handle.join().unwrap();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got[..2]
        .iter()
        .all(|b| b.as_ref().is_ok_and(|b| b.batch_size == 2)));
    assert!(
        matches!(got[2], Err(PipelineError::WorkerExited { .. })),
        "{:?}",
        got[2]
    );
}

#[test]
fn a_missing_file_fails_at_construction_naming_it() {
    let c = config(vec!["/nonexistent/corpus.txt.zst".into()], 1, 1024);
    let err = Loader::new(&c, bert(), 0).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/corpus.txt.zst"),
        "{err}"
    );
}

#[test]
fn dropping_a_loader_mid_stream_joins_its_threads_promptly() {
    let files = corpus(&["kjv.txt.zst", "moby_dick.txt.zst"]);
    let mut c = config(files, 4, 64 << 10);
    c.epochs = None;
    c.prefetch = 2;
    let mut loader = Loader::new(&c, bert(), 0).unwrap();
    for _ in 0..3 {
        loader.next().unwrap().unwrap();
    }
    std::thread::sleep(Duration::from_millis(200)); // let the queues fill up
    let start = Instant::now();
    drop(loader);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "drop took {:?}",
        start.elapsed()
    );
}

#[test]
fn an_infinite_stream_keeps_going_past_the_first_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "tiny.txt",
        b"One small document.\n\nAnother one here.\n",
    );
    let mut c = config(vec![f.display().to_string()], 2, 1024);
    c.epochs = None;
    c.batch_size = 3;
    let batches: Vec<Batch> = Loader::new(&c, bert(), 0)
        .unwrap()
        .take(5)
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(batches.len(), 5);
    assert!(batches[4].epoch >= 6, "epoch {}", batches[4].epoch);
}

#[test]
fn a_corpus_without_documents_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "empty.txt", b"\n\n   \n");
    let mut c = config(vec![f.display().to_string()], 1, 1024);
    c.epochs = None;
    let mut loader = Loader::new(&c, bert(), 0).unwrap();
    assert!(matches!(
        loader.next(),
        Some(Err(PipelineError::EmptyCorpus { .. }))
    ));
    assert!(loader.next().is_none());
}

/// Stage costs on one thread: reading alone, then reading + tokenizing.
#[test]
#[ignore]
fn stage_throughput() {
    use crate::source::{DocumentReader, SourceOptions};
    let files: Vec<PathBuf> = corpus(&["moby_dick.txt.zst", "kjv.txt.zst", "sotu.jsonl.zst"])
        .into_iter()
        .map(PathBuf::from)
        .collect();
    let start = Instant::now();
    let chunks: Vec<_> = DocumentReader::new(files, SourceOptions::default())
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let read = start.elapsed().as_secs_f64();
    let t = bert();
    let start = Instant::now();
    let tokens: usize = chunks
        .iter()
        .map(|c| {
            t.tokenize(&c.batch)
                .unwrap()
                .column(2)
                .to_data()
                .child_data()[0]
                .len()
        })
        .sum();
    let tok = start.elapsed().as_secs_f64();
    println!(
        "read {read:.2}s, tokenize {tok:.2}s ({:.0} tokens/s), {tokens} tokens",
        tokens as f64 / tok
    );
}

/// Single-thread throughput: `cargo test -p electra-pipeline --release -- --ignored
/// --nocapture single_thread_throughput`.
#[test]
#[ignore]
fn single_thread_throughput() {
    for threads in [1, 4] {
        let c = config(
            corpus(&["moby_dick.txt.zst", "kjv.txt.zst", "sotu.jsonl.zst"]),
            threads,
            256 << 10,
        );
        let start = Instant::now();
        let (mut tokens, mut batches) = (0usize, 0usize);
        for b in Loader::new(&c, bert(), 0).unwrap() {
            tokens += b.unwrap().real_tokens;
            batches += 1;
        }
        let s = start.elapsed().as_secs_f64();
        println!(
            "threads={threads}: {batches} batches, {tokens} tokens in {s:.2}s = {:.0} tokens/s",
            tokens as f64 / s
        );
    }
}
