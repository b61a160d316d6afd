//! The `electra` binary end to end: preprocessing read back by pyarrow, parts and merge,
//! inspect, tokenizer training used by the pipeline, Hugging Face folders loaded by
//! `transformers`, and config errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{electra, ok, python, repo, s};

use std::path::Path;
use std::process::Command;

#[test]
fn preprocessed_shards_are_read_by_pyarrow_and_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shards");
    let report = ok(&electra(&[
        "preprocess",
        "--config",
        "configs/tiny.toml",
        "--input",
        "data/corpus/moby_dick.txt.zst",
        "data/corpus/sotu.jsonl.zst",
        "--out",
        s(&out),
        "--rows-per-shard",
        "50",
        "--threads",
        "2",
    ]));
    assert!(report.contains("documents              368"), "{report}");

    // pyarrow, as a Python user would read them: schema, metadata, counts, sha256.
    let check = Command::new(python())
        .arg(repo().join("tests/python/check_shards.py"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "pyarrow check failed:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let lines = String::from_utf8_lossy(&check.stdout);
    assert_eq!(
        lines.lines().filter(|l| l.starts_with("ok ")).count(),
        8,
        "{lines}"
    );

    let text = ok(&electra(&["inspect", s(&out), "--samples", "1"]));
    for needle in [
        "complete        true",
        "rows            368",
        "input_ids",
        "document lengths",
        "call me ishmael",
    ] {
        assert!(
            text.contains(needle),
            "inspect output lacks {needle:?}:\n{text}"
        );
    }
}

#[test]
fn two_parts_merge_into_the_single_part_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let parts = dir.path().join("parts");
    for i in ["0", "1"] {
        ok(&electra(&[
            "preprocess",
            "--config",
            "configs/tiny.toml",
            "--input",
            "data/corpus/*.zst",
            "--out",
            s(&parts),
            "--shard-index",
            i,
            "--num-shards",
            "2",
        ]));
    }
    let merged = ok(&electra(&["merge-manifests", s(&parts)]));
    assert!(merged.contains("434 documents"), "{merged}");
    let inspect = ok(&electra(&[
        "inspect",
        s(&parts.join("manifest.json")),
        "--max-shards",
        "1",
    ]));
    assert!(inspect.contains("source files    3"), "{inspect}");
}

#[test]
fn a_trained_tokenizer_drives_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let tok = dir.path().join("tok/tokenizer.json");
    let out = ok(&electra(&[
        "train-tokenizer",
        "--input",
        "data/corpus/moby_dick.txt.zst",
        "--vocab-size",
        "3000",
        "--lowercase",
        "--out",
        s(&tok),
    ]));
    assert!(out.contains("3000 tokens"), "{out}");
    let tokenizer = electra_pipeline::TextTokenizer::from_file(&tok).unwrap();
    let special = tokenizer.special();
    assert_eq!(
        (special.pad, special.cls, special.sep, special.mask),
        (0, 2, 3, 4)
    );
    let config = electra_pipeline::DataConfig {
        files: vec![repo()
            .join("data/corpus/moby_dick.txt.zst")
            .display()
            .to_string()],
        batch_size: 8,
        execution: electra_pipeline::DataExecution {
            threads: 2,
            ..electra_pipeline::DataExecution::default()
        },
        ..electra_pipeline::DataConfig::default()
    };
    let batch = electra_pipeline::Loader::new(&config, tokenizer, 1)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(batch.input_ids[0], 2, "[CLS] of the trained vocabulary");
    assert!(batch.input_ids.iter().all(|&id| (0..3000).contains(&id)));
    let unk = batch.input_ids.iter().filter(|&&id| id == 1).count();
    assert!(
        unk * 100 < batch.real_tokens,
        "{unk} [UNK] in {} tokens",
        batch.real_tokens
    );
}

#[test]
fn a_run_folder_loads_in_transformers_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    ok(&electra(&[
        "pretrain",
        "--config",
        "configs/tiny.toml",
        "--data",
        "data/corpus/moby_dick.txt.zst",
        "--run-dir",
        s(&run),
        "--max-steps",
        "2",
        "--device",
        "cpu",
        "--set",
        "train.log_every=1",
    ]));
    let export = dir.path().join("hf");
    ok(&electra(&[
        "export-hf",
        "--checkpoint",
        s(&run),
        "--out",
        s(&export),
    ]));
    let script = r#"
import sys, torch
from transformers import ElectraForPreTraining, ElectraForMaskedLM, AutoTokenizer
for path, cls in [(sys.argv[1], ElectraForPreTraining), (sys.argv[2], ElectraForMaskedLM), (sys.argv[3], ElectraForPreTraining), (sys.argv[4], ElectraForPreTraining), (sys.argv[5], ElectraForMaskedLM)]:
    model, info = cls.from_pretrained(path, output_loading_info=True)
    bad = [k for k in ("missing_keys", "unexpected_keys", "mismatched_keys") if info[k]]
    assert not bad, (path, info)
from transformers import AutoModel, ElectraForSequenceClassification
encoder, info = AutoModel.from_pretrained(sys.argv[3], output_loading_info=True)
assert not info["missing_keys"] and not info["mismatched_keys"], info
classifier, info = ElectraForSequenceClassification.from_pretrained(sys.argv[3], num_labels=3, output_loading_info=True)
assert all(k.startswith("classifier.") for k in info["missing_keys"]), info
tok = AutoTokenizer.from_pretrained(sys.argv[1])
ids = tok("call me ishmael", return_tensors="pt")
print("ok", ElectraForPreTraining.from_pretrained(sys.argv[1])(**ids).logits.shape)
"#;
    let final_dir = run.join("final");
    // The run's last checkpoint holds the same weights as Hugging Face folders.
    let checkpoint = run.join("checkpoints/step-000000002");
    let from_checkpoint = dir.path().join("hf-from-checkpoint");
    ok(&electra(&[
        "export-hf",
        "--checkpoint",
        s(&checkpoint),
        "--out",
        s(&from_checkpoint),
    ]));
    for file in [
        "discriminator/model.safetensors",
        "generator/model.safetensors",
    ] {
        assert_eq!(
            std::fs::read(export.join(file)).unwrap(),
            std::fs::read(from_checkpoint.join(file)).unwrap(),
            "{file}"
        );
    }
    let out = Command::new(python())
        .args(["-c", script])
        .arg(&final_dir)
        .arg(final_dir.join("generator"))
        .arg(export.join("discriminator"))
        .arg(checkpoint.join("discriminator"))
        .arg(checkpoint.join("generator"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "transformers could not load the run's weights:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The exported discriminator is byte-identical to the run's.
    assert_eq!(
        std::fs::read(final_dir.join("model.safetensors")).unwrap(),
        std::fs::read(export.join("discriminator/model.safetensors")).unwrap()
    );
}

#[test]
fn config_errors_name_the_key_and_exit_non_zero() {
    let out = electra(&[
        "pretrain",
        "--config",
        "configs/tiny.toml",
        "--set",
        "model.hiden_size=3",
        "--max-steps",
        "1",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hiden_size"), "{err}");
    let out = electra(&[
        "pretrain",
        "--config",
        "configs/tiny.toml",
        "--data",
        "/nonexistent/*.txt",
        "--max-steps",
        "1",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/*.txt"), "{err}");
}

#[test]
fn the_mlm_objective_trains_resumes_and_loads_as_electra_for_masked_lm() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("mlm");
    let args = |extra: &[&str]| -> Vec<String> {
        [
            "pretrain",
            "--config",
            "configs/tiny.toml",
            "--data",
            "data/corpus/moby_dick.txt.zst",
            "--run-dir",
            s(&run),
            "--device",
            "cpu",
            "--set",
            "model.objective=\"mlm\"",
            "--set",
            "data.mask_strategy=\"bert\"",
            "--set",
            "data.batch_size=8",
            "--set",
            "train.log_every=2",
        ]
        .iter()
        .chain(extra)
        .map(|a| a.to_string())
        .collect()
    };
    let first = args(&["--max-steps", "4"]);
    let out = ok(&electra(
        &first.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    assert!(out.contains("training FLOPs"), "{out}");
    assert!(run
        .join("checkpoints/step-000000004/masked_lm/model.safetensors")
        .is_file());
    let resumed = args(&["--max-steps", "6", "--resume"]);
    ok(&electra(
        &resumed.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let rows = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = rows
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, vec![2, 4, 6]);
    let script = r#"
import sys, torch
from transformers import ElectraForMaskedLM
model, info = ElectraForMaskedLM.from_pretrained(sys.argv[1], output_loading_info=True)
bad = [k for k in ("missing_keys", "unexpected_keys", "mismatched_keys") if info[k]]
assert not bad, info
assert torch.equal(model.generator_lm_head.weight, model.electra.embeddings.word_embeddings.weight)
assert model.config.hidden_size == 128, model.config
print("ok")
"#;
    let out = Command::new(python())
        .args(["-c", script])
        .arg(run.join("final"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pretraining_continues_from_hugging_face_folders() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let base = |run: &Path, extra: &[&str]| -> Vec<String> {
        [
            "pretrain",
            "--config",
            "configs/tiny.toml",
            "--data",
            "data/corpus/moby_dick.txt.zst",
            "--run-dir",
            s(run),
            "--device",
            "cpu",
            "--set",
            "data.batch_size=4",
        ]
        .iter()
        .chain(extra)
        .map(|a| a.to_string())
        .collect()
    };
    let run_args = |run: &Path, extra: &[&str]| {
        ok(&electra(
            &base(run, extra)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        ))
    };
    run_args(&run, &["--max-steps", "2"]);
    let export = dir.path().join("hf");
    ok(&electra(&[
        "export-hf",
        "--checkpoint",
        s(&run),
        "--out",
        s(&export),
    ]));
    // A generator + discriminator pair: zero steps give back exactly the weights loaded.
    let pair = dir.path().join("from-pair");
    run_args(&pair, &["--init-from-hf", s(&export), "--max-steps", "0"]);
    for (ours, theirs) in [
        ("final/model.safetensors", "discriminator/model.safetensors"),
        (
            "final/generator/model.safetensors",
            "generator/model.safetensors",
        ),
    ] {
        assert_eq!(
            std::fs::read(pair.join(ours)).unwrap(),
            std::fs::read(export.join(theirs)).unwrap(),
            "{ours}"
        );
    }
    // A discriminator alone: its weights, and a fresh generator sharing its embeddings.
    let alone = dir.path().join("from-discriminator");
    run_args(
        &alone,
        &[
            "--init-from-hf",
            s(&export.join("discriminator")),
            "--max-steps",
            "0",
        ],
    );
    assert_eq!(
        std::fs::read(alone.join("final/model.safetensors")).unwrap(),
        std::fs::read(export.join("discriminator/model.safetensors")).unwrap()
    );
    assert_ne!(
        std::fs::read(alone.join("final/generator/model.safetensors")).unwrap(),
        std::fs::read(export.join("generator/model.safetensors")).unwrap(),
        "the generator is new"
    );
    // And training goes on from there.
    run_args(
        &dir.path().join("continued"),
        &["--init-from-hf", s(&export), "--max-steps", "2"],
    );
}

#[test]
fn bench_pipeline_reports_each_stage_and_the_tokenizer_limit_as_json() {
    let out = ok(&electra(&[
        "bench",
        "pipeline",
        "--data",
        "data/corpus/moby_dick.txt.zst",
        "--threads",
        "1",
        "--seconds",
        "1",
        "--sample-mb",
        "1",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for key in [
        "pipeline_tokens_per_sec",
        "tokenizer_tokens_per_sec",
        "threads",
        "peak_rss_bytes",
    ] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {v}");
    }
    let names: Vec<&str> = v["stages"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["read", "tokenize", "pack", "mask"]);
    assert!(v["stages"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["tokens_per_sec"].as_f64().unwrap() > 0.0));
}

#[test]
fn bench_train_reports_the_step_breakdown_and_bf16_trains_like_fp32() {
    let bench = |precision: &str| -> serde_json::Value {
        let out = ok(&electra(&[
            "bench",
            "train",
            "--config",
            "configs/tiny.toml",
            "--device",
            "cpu",
            "--batch-size",
            "4",
            "--seq-len",
            "32",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--precision",
            precision,
            "--json",
        ]));
        serde_json::from_str(out.trim()).unwrap()
    };
    for precision in ["fp32", "bf16"] {
        let v = bench(precision);
        assert_eq!(v["precision"], precision);
        assert_eq!(
            (v["batch_size"].as_u64(), v["seq_len"].as_u64()),
            (Some(4), Some(32))
        );
        for key in [
            "tokens_per_sec",
            "step_ms",
            "forward_ms",
            "backward_ms",
            "optimizer_ms",
            "peak_memory_bytes",
            "flops_per_step",
        ] {
            assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {v}");
        }
        // Every step is 4 x 32 positions.
        let (step, rate) = (
            v["step_ms"].as_f64().unwrap(),
            v["tokens_per_sec"].as_f64().unwrap(),
        );
        assert!((rate - 128.0 / (step / 1e3)).abs() <= 1e-6 * rate, "{v}");
    }
    // The first step's loss under bfloat16 autocast is the float32 loss within rounding.
    let dir = tempfile::tempdir().unwrap();
    let first_loss = |precision: &str| -> f64 {
        let run = dir.path().join(precision);
        ok(&electra(&[
            "pretrain",
            "--config",
            "configs/tiny.toml",
            "--data",
            "data/corpus/moby_dick.txt.zst",
            "--run-dir",
            s(&run),
            "--device",
            "cpu",
            "--max-steps",
            "2",
            "--set",
            "data.batch_size=4",
            "--set",
            "data.max_seq_len=32",
            "--set",
            "train.log_every=1",
            "--set",
            &format!("train.precision=\"{precision}\""),
        ]));
        let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        let row: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        row["loss"].as_f64().unwrap()
    };
    let (fp32, bf16) = (first_loss("fp32"), first_loss("bf16"));
    assert!(bf16.is_finite());
    assert!(
        (bf16 - fp32).abs() < 0.03 * fp32,
        "bf16 loss {bf16} vs fp32 {fp32}"
    );
}
