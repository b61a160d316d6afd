//! Data-parallel `electra pretrain` through the real binary, two and three processes on
//! this machine over c10d's TCPStore (the CPU backend), launched as torchrun would:
//! `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`.
//!
//! - The final weights of 2 and 3 processes equal a single process's with the same global
//!   batch, within float tolerance (the ranks' gradients are summed in another order).
//! - A run checkpointed by 2 processes and resumed by 1 continues the same stream; so does
//!   a weighted mixture of corpora checkpointed by 1 process and resumed by 2, whose
//!   metrics rows count each source's examples and tokens.
//! - A rank that dies makes the others fail within `dist.timeout_seconds`.
//!
//! Dropout is off, so the only randomness left is the generator's sampling, which the
//! inverse-CDF sampler keys by each position's place in the global batch.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{repo, s};
use tch::Tensor;

/// Tiny model, global batch 12 in 6 slices, no dropout, 6 steps.
const EXPERIMENT: [&str; 20] = [
    "--set",
    "data.batch_size=12",
    "--set",
    "data.max_seq_len=64",
    "--set",
    "dist.data_slices=6",
    "--set",
    "dist.backend=\"store\"",
    "--set",
    "model.hidden_dropout_prob=0.0",
    "--set",
    "model.attention_probs_dropout_prob=0.0",
    "--set",
    "train.warmup_steps=2",
    "--set",
    "train.total_steps=6",
    "--set",
    "train.log_every=2",
    "--set",
    "checkpoint.every_steps=3",
];

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn command(run: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_electra"));
    cmd.args([
        "pretrain",
        "--config",
        "configs/tiny.toml",
        "--device",
        "cpu",
    ])
    .args(["--no-progress", "--run-dir", s(run), "--threads", "1"])
    .args(EXPERIMENT)
    .args(extra)
    .current_dir(repo())
    // Several processes share two cores.
    .env("OMP_NUM_THREADS", "1")
    .env("RUST_LOG", "info")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for var in [
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Starts `world` ranks of one job.
fn launch(run: &Path, world: usize, extra: &[&str]) -> Vec<Child> {
    let port = free_port().to_string();
    (0..world)
        .map(|rank| {
            command(run, extra)
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .spawn()
                .unwrap()
        })
        .collect()
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    )
}

fn all_ok(children: Vec<Child>) {
    for (rank, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "rank {rank}: {}", text(&out));
    }
}

fn single(run: &Path, extra: &[&str]) {
    let out = command(run, extra).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

fn weights(run: &Path) -> BTreeMap<String, Tensor> {
    let mut all = BTreeMap::new();
    // final/ is the discriminator, final/generator/ the generator.
    for (part, folder) in [("discriminator", ""), ("generator", "generator")] {
        let file = run.join("final").join(folder).join("model.safetensors");
        let loaded = electra_model::safetensors::load(&file).unwrap();
        for (name, tensor) in loaded.tensors {
            all.insert(format!("{part}/{name}"), tensor);
        }
    }
    all
}

/// Largest absolute difference between two runs' weights.
fn max_difference(a: &Path, b: &Path) -> f64 {
    let (wa, wb) = (weights(a), weights(b));
    assert_eq!(wa.keys().collect::<Vec<_>>(), wb.keys().collect::<Vec<_>>());
    wa.iter()
        .map(|(name, x)| {
            let y = &wb[name];
            assert_eq!(x.size(), y.size(), "{name}");
            (x - y).abs().max().double_value(&[])
        })
        .fold(0.0, f64::max)
}

/// The metrics rows' losses.
fn losses(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap())
        })
        .collect()
}

/// Float tolerance on weights after 6 AdamW steps: the ranks' partial sums of the
/// gradients round differently from one process's sums (measured: 6e-8, one float32 ulp
/// at these magnitudes). Another data stream moves weights by ~1e-3 in the same steps.
const WEIGHT_TOLERANCE: f64 = 1e-6;

#[test]
fn two_and_three_ranks_train_the_single_process_weights() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one");
    single(&one, &[]);
    for world in [2, 3] {
        let run = dir.path().join(format!("world{world}"));
        all_ok(launch(&run, world, &[]));
        let diff = max_difference(&one, &run);
        eprintln!("{world} ranks vs one process: max weight difference {diff:e}");
        assert!(
            diff < WEIGHT_TOLERANCE,
            "{world} ranks: weights differ from one process by up to {diff}"
        );
        let (a, b) = (losses(&one), losses(&run));
        assert_eq!(
            a.iter().map(|r| r.0).collect::<Vec<_>>(),
            b.iter().map(|r| r.0).collect::<Vec<_>>()
        );
        for ((step, x), (_, y)) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() < 1e-5 * x.abs().max(1.0),
                "{world} ranks, step {step}: loss {y} vs {x}"
            );
        }
        // Rank 0 wrote the run folder: checkpoints with every slice's cursor.
        let state: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(run.join("checkpoints/step-000000006/trainer_state.json"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(state["slice_cursors"].as_array().unwrap().len(), 6);
    }
    // Another slicing is another experiment: the weights move away from the tolerance.
    let other = dir.path().join("other");
    single(&other, &["--set", "dist.data_slices=3"]);
    let apart = max_difference(&one, &other);
    eprintln!("3 slices vs 6 slices: max weight difference {apart:e}");
    assert!(apart > 100.0 * WEIGHT_TOLERANCE, "{apart}");
}

#[test]
fn a_two_rank_checkpoint_resumes_on_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    single(&straight, &[]);
    let run = dir.path().join("resumed");
    all_ok(launch(&run, 2, &["--max-steps", "3"]));
    assert!(run.join("checkpoints/step-000000003").is_dir());
    single(&run, &["--resume"]);
    let diff = max_difference(&straight, &run);
    assert!(
        diff < WEIGHT_TOLERANCE,
        "2 ranks then 1 differs from 1 straight by up to {diff}"
    );
    // And back: one process to step 3, three ranks to the end.
    let run = dir.path().join("grown");
    single(&run, &["--max-steps", "3"]);
    all_ok(launch(&run, 3, &["--resume"]));
    let diff = max_difference(&straight, &run);
    assert!(diff < WEIGHT_TOLERANCE, "1 then 3 ranks: {diff}");
}

/// A mixture of the three embedded corpora (paths relative to `configs/`).
const MIXTURE: [&str; 4] = [
    "--set",
    "data.files=[]",
    "--set",
    "data.sources=[{name=\"moby\", files=[\"../data/corpus/moby_dick.txt.zst\"], weight=0.5}, \
     {name=\"sotu\", files=[\"../data/corpus/sotu.jsonl.zst\"], weight=0.3}, \
     {name=\"kjv\", files=[\"../data/corpus/kjv.txt.zst\"], weight=0.2, tokens=1500}]",
];

#[test]
fn a_mixture_checkpointed_by_one_process_resumes_on_two_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    single(&straight, &MIXTURE);
    let run = dir.path().join("grown");
    single(&run, &[&MIXTURE[..], &["--max-steps", "3"]].concat());
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("checkpoints/step-000000003/trainer_state.json"))
            .unwrap(),
    )
    .unwrap();
    let cursors = state["slice_cursors"].as_array().unwrap();
    assert_eq!(cursors.len(), 6);
    assert_eq!(
        cursors[0]["mixture"]["sources"].as_array().unwrap().len(),
        3
    );
    all_ok(launch(&run, 2, &[&MIXTURE[..], &["--resume"]].concat()));
    let diff = max_difference(&straight, &run);
    assert!(diff < WEIGHT_TOLERANCE, "1 then 2 ranks: {diff}");
    // Each row counts every source's examples and tokens since the start (the
    // resumed run's rows go on from the checkpoint's counts).
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for row in &rows {
        let sources = row["sources"].as_array().unwrap();
        let names: Vec<&str> = sources
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["moby", "sotu", "kjv"]);
        let examples: u64 = sources
            .iter()
            .map(|s| s["examples"].as_u64().unwrap())
            .sum();
        let tokens: u64 = sources.iter().map(|s| s["tokens"].as_u64().unwrap()).sum();
        assert_eq!(examples, 12 * row["step"].as_u64().unwrap());
        assert_eq!(tokens, row["tokens"].as_u64().unwrap());
    }
    assert_eq!(rows.last().unwrap()["step"], 6);
}

#[test]
fn a_dead_rank_fails_the_others_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let timeout = 8;
    let extra = [
        "--set",
        "train.total_steps=100000",
        "--set",
        &format!("dist.timeout_seconds={timeout}"),
    ];
    let mut ranks = launch(&run, 2, &extra);
    // Wait until training runs (rank 0 writes a metrics row every 2 steps).
    let started = Instant::now();
    while std::fs::read_to_string(run.join("metrics.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
        < 1
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no training progress"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    ranks[1].kill().unwrap();
    let killed = Instant::now();
    let survivor = ranks.remove(0).wait_with_output().unwrap();
    let waited = killed.elapsed();
    let _ = ranks.remove(0).wait();
    assert!(!survivor.status.success(), "rank 0 must fail");
    assert!(
        waited < Duration::from_secs(timeout + 20),
        "rank 0 took {waited:?} to notice"
    );
    let err = String::from_utf8_lossy(&survivor.stderr);
    assert!(err.contains("rank"), "the error names the rank: {err}");
}

#[test]
fn more_ranks_than_slices_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let children = launch(&run, 2, &["--set", "dist.data_slices=1"]);
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("dist.data_slices"), "{err}");
    }
}
