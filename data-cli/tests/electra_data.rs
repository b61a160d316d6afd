//! The `electra-data` binary (no libtorch) runs the data commands end to end: `bench
//! pipeline` reports the tokenizer paths, the whole pipeline and the zstd-decode limit in
//! one run; `preprocess` writes shards that `inspect` describes.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs `electra-data` from the repository root; its stdout, after checking it succeeded.
fn electra_data(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_electra-data"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "electra-data {args:?}: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

const BENCH: [&str; 10] = [
    "bench",
    "pipeline",
    "--data",
    "data/corpus/moby_dick.txt.zst",
    "--threads",
    "1",
    "--seconds",
    "0.5",
    "--sample-mb",
    "1",
];

fn rate(value: &serde_json::Value, part: &str) -> f64 {
    value["tokenize"][part]["tokens_per_sec"]
        .as_f64()
        .unwrap_or_else(|| panic!("tokenize.{part}.tokens_per_sec in {value}"))
}

#[test]
fn bench_pipeline_reports_both_tokenizer_paths_the_pipeline_and_the_zstd_limit_in_one_run() {
    let json: serde_json::Value =
        serde_json::from_str(&electra_data(&[&BENCH[..], &["--json"]].concat())).unwrap();
    let (zstd, fast, krate) = (
        rate(&json, "zstd_decode"),
        rate(&json, "fast"),
        rate(&json, "crate_path"),
    );
    let pipeline = json["pipeline_tokens_per_sec"].as_f64().unwrap();
    assert!(fast > 0.0 && krate > 0.0 && pipeline > 0.0, "{json}");
    assert!(zstd > fast && zstd > krate && zstd > pipeline, "{json}");
    assert_eq!(json["threads"], 1, "{json}");

    let table = electra_data(&BENCH);
    for line in [
        "zstd decode alone (limit)",
        "fast path",
        "tokenizers crate",
        "pipeline tokens/s",
        "of zstd decode alone",
        "peak RSS MB",
    ] {
        assert!(table.contains(line), "{line:?} in\n{table}");
    }
}

#[test]
fn preprocessed_shards_are_described_by_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shards");
    let out = out.to_str().unwrap();
    let summary: serde_json::Value = serde_json::from_str(&electra_data(&[
        "preprocess",
        "--config",
        "configs/tiny.toml",
        "--input",
        "data/corpus/moby_dick.txt.zst",
        "--out",
        out,
        "--threads",
        "1",
        "--json",
    ]))
    .unwrap();
    let (rows, tokens) = (
        summary["rows"].as_u64().unwrap(),
        summary["tokens"].as_u64(),
    );
    assert!(rows > 100, "{summary}");

    let inspect: serde_json::Value =
        serde_json::from_str(&electra_data(&["inspect", out, "--samples", "1", "--json"])).unwrap();
    assert_eq!(
        inspect["manifest"]["rows"].as_u64(),
        Some(rows),
        "{inspect}"
    );
    assert_eq!(inspect["manifest"]["tokens"].as_u64(), tokens, "{inspect}");
    let table = electra_data(&["inspect", out, "--samples", "1"]);
    assert!(table.contains(&rows.to_string()), "{table}");
}
