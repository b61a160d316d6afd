//! Object storage as a byte source, against a real S3-compatible server (moto, started by
//! each test on 127.0.0.1 at a free port and killed after): training batches from objects
//! equal batches from the same local files; a listing that matches nothing, wrong
//! credentials and a server stopped in the middle of a download are clear errors naming
//! the URL, with no secret in them; an HTTP(S) source with range support.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::moto::{use_server, MotoServer, ACCESS_KEY, SECRET_KEY};
use common::{batches, data, same_batches};

use std::io::Write;
use std::path::{Path, PathBuf};

use electra_pipeline::source::{byte_source, expand_files, Location, SourceOptions};
use electra_pipeline::{BadRecordPolicy, DataConfig, DocumentReader, Loader, PipelineError};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// The embedded corpus's SOTU speeches as a C4-style `.json.gz` (decoded from the zstd file).
fn sotu_json_gz() -> Vec<u8> {
    let zst = std::fs::read(data("corpus/sotu.jsonl.zst")).unwrap();
    gzip(&zstd::decode_all(&zst[..]).unwrap())
}

fn config(files: Vec<String>) -> DataConfig {
    DataConfig {
        files,
        threads: 2,
        batch_size: 32,
        epochs: Some(1),
        on_bad_record: BadRecordPolicy::Fail,
        ..DataConfig::default()
    }
}

#[test]
fn batches_from_s3_objects_equal_batches_from_the_same_local_files() {
    let server = MotoServer::start();
    let dir = tempfile::tempdir().unwrap();
    server.create_bucket("corpus");
    // The objects, and the same bytes on disk, in the listing's (sorted) order.
    let mut local = Vec::new();
    for (key, bytes) in [
        (
            "en/a-moby_dick.txt.zst",
            std::fs::read(data("corpus/moby_dick.txt.zst")).unwrap(),
        ),
        ("en/b-sotu.json.gz", sotu_json_gz()),
    ] {
        server.put("corpus", key, &bytes);
        let path = dir.path().join(key.replace('/', "-"));
        std::fs::write(&path, &bytes).unwrap();
        local.push(path.display().to_string());
    }
    server.put("corpus", "other/not-listed.txt", b"outside the glob\n");
    server.put(
        "corpus",
        "en/sub/deeper.txt",
        b"`*` does not cross a slash\n",
    );
    let _env = use_server(&server, ACCESS_KEY, SECRET_KEY);
    let glob = "s3://corpus/en/*".to_string();
    let listed = expand_files(std::slice::from_ref(&glob)).unwrap();
    assert_eq!(
        listed,
        vec![
            PathBuf::from("s3://corpus/en/a-moby_dick.txt.zst"),
            PathBuf::from("s3://corpus/en/b-sotu.json.gz")
        ]
    );
    let from_s3 = batches(&config(vec![glob]), 400);
    let from_disk = batches(&config(local), 400);
    assert_eq!(from_s3.len(), 400, "enough text for 400 batches");
    assert!(same_batches(&from_s3, &from_disk));
}

#[test]
fn a_listing_that_matches_nothing_and_a_missing_object_are_errors_naming_the_url() {
    let server = MotoServer::start();
    server.create_bucket("corpus");
    server.put(
        "corpus",
        "c4/en/part-0.json.gz",
        &gzip(b"{\"text\": \"x\"}\n"),
    );
    let _env = use_server(&server, ACCESS_KEY, SECRET_KEY);
    let nothing = "s3://corpus/c4/fr/*.json.gz".to_string();
    let err = Loader::new(&config(vec![nothing.clone()]), common::tokenizer(), 1).unwrap_err();
    assert!(
        matches!(err, PipelineError::NoFiles { ref pattern } if *pattern == nothing),
        "{err:?}"
    );
    assert!(err.to_string().contains(&nothing), "{err}");
    let missing = "s3://corpus/c4/en/part-9.json.gz".to_string();
    let err = expand_files(std::slice::from_ref(&missing)).unwrap_err();
    assert!(matches!(err, PipelineError::ObjectStore { .. }), "{err:?}");
    assert!(err.to_string().contains(&missing), "{err}");
}

/// Everything an error shows: its message, its sources' messages, its debug form.
fn everything_shown(err: &PipelineError) -> String {
    let mut shown = format!("{err}\n{err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        shown.push_str(&format!("\n{s}"));
        source = s.source();
    }
    shown
}

#[test]
fn wrong_credentials_give_a_clear_error_naming_the_url_with_no_secret_in_it() {
    // This server checks credentials, and knows none of ours.
    let server = MotoServer::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let _env = use_server(&server, ACCESS_KEY, SECRET_KEY);
    let url = "s3://corpus/c4/en/part-0.json.gz".to_string();
    let mut data_config = config(vec![url.clone()]);
    data_config.io_retries = 1;
    let err = Loader::new(&data_config, common::tokenizer(), 1).unwrap_err();
    let shown = everything_shown(&err);
    assert!(matches!(err, PipelineError::ObjectStore { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
    assert!(err.to_string().contains("403"), "{err}");
    assert!(err.to_string().contains("privileges"), "{err}");
    assert!(!shown.contains(SECRET_KEY), "the secret is shown: {shown}");
}

#[test]
fn a_server_stopped_mid_download_is_retried_then_an_error_names_the_object() {
    let mut server = MotoServer::start();
    server.create_bucket("corpus");
    // 48 MB of text: far more than the reader's queue and the sockets hold.
    let mut text = String::new();
    let mut i = 0;
    while text.len() < 48 << 20 {
        text.push_str(&format!(
            "Document {i} has one sentence of some length here.\n\n"
        ));
        i += 1;
    }
    server.put("corpus", "big.txt", text.as_bytes());
    let _env = use_server(&server, ACCESS_KEY, SECRET_KEY);
    let url = "s3://corpus/big.txt";
    let mut options = SourceOptions {
        on_bad_record: BadRecordPolicy::Skip,
        chunk_bytes: 64 << 10,
        ..SourceOptions::default()
    };
    options.retry.retries = 2;
    options.retry.timeout_s = 10.0;
    electra_pipeline::source::object_store::configure_retries(options.retry);
    let mut reader = DocumentReader::new(vec![PathBuf::from(url)], options).unwrap();
    let first = reader.next().unwrap().unwrap();
    assert!(first.batch.num_rows() > 100);
    server.stop();
    let started = std::time::Instant::now();
    let mut documents = first.batch.num_rows();
    let err = loop {
        match reader.next().expect("the stream never ends quietly") {
            Ok(chunk) => documents += chunk.batch.num_rows(),
            Err(err) => break err,
        }
    };
    assert!(
        documents < i,
        "{documents} of {i} documents read before the error"
    );
    assert!(matches!(err, PipelineError::Io { .. }), "{err:?}");
    let message = everything_shown(&err);
    assert!(err.to_string().contains(url), "{message}");
    assert!(message.contains("retries"), "retried first: {message}");
    assert!(started.elapsed().as_secs() < 60, "{:?}", started.elapsed());
    // Restore the defaults for the other tests of this binary.
    electra_pipeline::source::object_store::configure_retries(Default::default());
}

#[test]
fn an_http_source_is_listed_streamed_and_read_by_ranges() {
    // moto serves public objects over plain HTTP, with `Range` support, to anonymous
    // readers: a plain web server as far as the HTTP source can tell.
    let server = MotoServer::start();
    server.create_bucket("public");
    let bytes = std::fs::read(data("corpus/moby_dick.txt.zst")).unwrap();
    server.put_public("public", "corpus/moby_dick.txt.zst", &bytes);
    let url = format!("{}/public/corpus/moby_dick.txt.zst", server.endpoint());
    assert_eq!(
        expand_files(std::slice::from_ref(&url)).unwrap(),
        vec![PathBuf::from(&url)]
    );
    let location = Location::parse(&url);
    let source = byte_source(&location).unwrap();
    assert_eq!(source.size(&location).unwrap(), bytes.len() as u64);
    assert_eq!(
        source.read_range(&location, 1000..1100).unwrap(),
        bytes[1000..1100]
    );
    let read = |files: Vec<PathBuf>| -> Vec<_> {
        DocumentReader::new(files, SourceOptions::default())
            .unwrap()
            .map(|chunk| chunk.unwrap().batch)
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("moby_dick.txt.zst");
    std::fs::write(&local, &bytes).unwrap();
    assert_eq!(read(vec![PathBuf::from(&url)]), read(vec![local]));
    let err = expand_files(&[format!("{}/public/nope.txt", server.endpoint())]).unwrap_err();
    assert!(err.to_string().contains("/public/nope.txt"), "{err}");
}

/// The pipeline reading the embedded corpus from the local S3 server against reading it
/// from disk (a benchmark, not a test): `cargo test --release -p electra-pipeline --test
/// object_store -- --ignored --nocapture s3_against_disk_throughput`.
#[test]
#[ignore]
fn s3_against_disk_throughput() {
    let server = MotoServer::start();
    server.create_bucket("corpus");
    let names = ["kjv.txt.zst", "moby_dick.txt.zst", "sotu.jsonl.zst"];
    for name in names {
        let bytes = std::fs::read(data(&format!("corpus/{name}"))).unwrap();
        server.put("corpus", name, &bytes);
    }
    let _env = use_server(&server, ACCESS_KEY, SECRET_KEY);
    let local: Vec<String> = names
        .iter()
        .map(|n| data(&format!("corpus/{n}")).display().to_string())
        .collect();
    let threads: usize = std::env::var("BENCH_THREADS").map_or(2, |t| t.parse().unwrap());
    let run = |files: Vec<String>| {
        let config = DataConfig {
            threads,
            epochs: Some(3),
            on_bad_record: BadRecordPolicy::Skip,
            ..config(files)
        };
        let started = std::time::Instant::now();
        let mut tokens = 0usize;
        for batch in Loader::new(&config, common::tokenizer(), 7).unwrap() {
            tokens += batch.unwrap().real_tokens;
        }
        (tokens, started.elapsed().as_secs_f64())
    };
    let (mut disk, mut s3) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let (tokens_disk, t_disk) = run(local.clone());
        let (tokens_s3, t_s3) = run(vec!["s3://corpus/*".into()]);
        assert_eq!(tokens_disk, tokens_s3);
        disk.push(tokens_disk as f64 / t_disk);
        s3.push(tokens_s3 as f64 / t_s3);
        println!(
            "{tokens_disk} tokens, {threads} workers: disk {t_disk:.2}s ({:.0} tokens/s), s3 {t_s3:.2}s ({:.0} tokens/s), s3/disk {:.3}",
            disk.last().unwrap(),
            s3.last().unwrap(),
            s3.last().unwrap() / disk.last().unwrap()
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("median s3/disk: {:.3}", median(&mut s3) / median(&mut disk));
}

#[test]
fn preprocessing_s3_objects_writes_the_shards_the_same_local_files_give() {
    use electra_pipeline::preprocess::preprocess;
    use electra_pipeline::shard::read_manifest;
    let server = MotoServer::start();
    server.create_bucket("corpus");
    let dir = tempfile::tempdir().unwrap();
    let (moby, sotu) = (
        std::fs::read(data("corpus/moby_dick.txt.zst")).unwrap(),
        sotu_json_gz(),
    );
    server.put("corpus", "a.txt.zst", &moby);
    server.put("corpus", "b.json.gz", &sotu);
    let local = [dir.path().join("a.txt.zst"), dir.path().join("b.json.gz")];
    std::fs::write(&local[0], &moby).unwrap();
    std::fs::write(&local[1], &sotu).unwrap();
    let _env = use_server(&server, ACCESS_KEY, SECRET_KEY);
    let urls = expand_files(&["s3://corpus/*".to_string()]).unwrap();
    let shards = |files: Vec<PathBuf>, out: &str| {
        let out = dir.path().join(out);
        let report = preprocess(
            &common::options_for(files, &out, 2, 0, 1),
            &common::tokenizer(),
            |_| {},
        )
        .unwrap();
        let manifest = read_manifest(&out.join(report.manifest.file_name().unwrap())).unwrap();
        // The shards' rows (their metadata names the input files, so their bytes differ).
        let rows: Vec<_> = manifest
            .shards
            .iter()
            .flat_map(|s| {
                let file = std::fs::File::open(out.join(&s.path)).unwrap();
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap()
                    .map(|b| b.unwrap())
            })
            .collect();
        (report.rows, report.tokens, manifest.shards.len(), rows)
    };
    let from_s3 = shards(urls, "from-s3");
    let from_disk = shards(local.to_vec(), "from-disk");
    assert!(from_s3.0 > 300, "{} documents", from_s3.0);
    assert_eq!(from_s3, from_disk);
    // Object storage is not yet a place to write shards, nor to read them from: both
    // refused by name rather than written to (or read from) a local folder named `s3:`.
    let mut to_s3 = common::options_for(local.to_vec(), Path::new("s3://corpus/shards"), 1, 0, 1);
    to_s3.rows_per_shard = 64;
    let err = preprocess(&to_s3, &common::tokenizer(), |_| {}).unwrap_err();
    assert!(err.to_string().contains("s3://corpus/shards"), "{err}");
    assert!(!Path::new("s3:").exists());
    let err = read_manifest(Path::new("s3://corpus/shards/manifest.json")).unwrap_err();
    assert!(matches!(err, PipelineError::BadManifest { .. }), "{err:?}");
}
