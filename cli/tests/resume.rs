//! Exact resume and fault tolerance of `electra pretrain`, through the real binary:
//! N steps then --resume to 2N equals 2N straight (weights bit for bit, the same metrics
//! rows) for raw files and shards with other thread counts; SIGTERM and Ctrl-C; SIGKILL in
//! the middle of a checkpoint write; a corrupt newest checkpoint; a full disk; non-finite
//! steps; a resume with another experiment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A small, fast experiment on the embedded corpus: the tiny model at batch 8 x 64.
const SMALL: [&str; 8] = [
    "--set",
    "data.batch_size=8",
    "--set",
    "data.max_seq_len=64",
    "--set",
    "train.warmup_steps=2",
    "--set",
    "train.log_every=3",
];

fn pretrain_command(run: &Path, total: u64, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_electra"));
    cmd.args([
        "pretrain",
        "--config",
        "configs/tiny.toml",
        "--device",
        "cpu",
    ])
    .args(["--no-progress", "--run-dir", s(run)])
    .args(SMALL)
    .args(["--set", &format!("train.total_steps={total}")])
    .args(extra)
    .current_dir(repo())
    .env("RUST_LOG", "info");
    cmd
}

fn pretrain(run: &Path, total: u64, extra: &[&str]) -> Output {
    pretrain_command(run, total, extra).output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "{}", text(&out));
    out
}

fn bytes(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The metrics rows without their timing fields.
fn rows(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            for timing in ["tokens_per_sec", "data_wait_frac", "elapsed_sec"] {
                o.remove(timing);
            }
            v
        })
        .collect()
}

fn assert_same_training(a: &Path, b: &Path) {
    for file in [
        "final/model.safetensors",
        "final/generator/model.safetensors",
    ] {
        assert!(
            bytes(a.join(file)) == bytes(b.join(file)),
            "{file} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
    assert_eq!(rows(a), rows(b), "metrics rows differ");
}

/// 12 steps straight vs `stop` steps (checkpoints every 4 and at `stop`; rows every 3)
/// and --resume to 12, the two halves with other loader thread counts.
fn check_exact_resume(data: &[&str], stop: u64) {
    let straight = tempfile::tempdir().unwrap();
    let split = tempfile::tempdir().unwrap();
    let common: Vec<&str> = data
        .iter()
        .copied()
        .chain(["--set", "checkpoint.every_steps=4"])
        .collect();
    let with = |extra: &[&str]| -> Vec<String> {
        common.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let args = with(&["--threads", "2"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(pretrain(straight.path(), 12, &args));

    let stop_arg = stop.to_string();
    let first = with(&["--threads", "1", "--max-steps", &stop_arg]);
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    ok(pretrain(split.path(), 12, &first));
    let checkpoints = split.path().join("checkpoints");
    assert!(checkpoints.join("step-000000004/SHA256SUMS").is_file());
    let last = format!("step-{stop:09}");
    assert!(checkpoints.join(&last).join("SHA256SUMS").is_file());
    assert_eq!(
        std::fs::read_to_string(checkpoints.join("latest")).unwrap(),
        last
    );
    let second = with(&["--threads", "3", "--resume"]);
    let second: Vec<&str> = second.iter().map(String::as_str).collect();
    let out = ok(pretrain(split.path(), 12, &second));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("step {stop}")),
        "{}",
        text(&out)
    );
    assert_same_training(straight.path(), split.path());
    let steps: Vec<u64> = rows(split.path())
        .iter()
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(
        steps,
        vec![3, 6, 9, 12],
        "an early row at the stop is replaced"
    );
}

/// Stopped at a logging step: the checkpoint comes after the row, with an empty window.
#[test]
fn resuming_raw_files_equals_training_straight_through() {
    check_exact_resume(&[], 6);
}

#[test]
fn resuming_from_shards_equals_training_straight_through() {
    let shards = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_electra"))
        .args(["preprocess", "--config", "configs/tiny.toml", "--out"])
        .arg(shards.path())
        .args(["--rows-per-shard", "32", "--input"])
        .args([
            "data/corpus/moby_dick.txt.zst",
            "data/corpus/sotu.jsonl.zst",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    ok(out);
    let manifest = shards.path().join("manifest.json");
    // Stopped between logging steps: the checkpoint keeps the window open.
    check_exact_resume(
        &["--data", s(&manifest), "--set", "data.shuffle_window=50"],
        7,
    );
}

/// Spawns a run and forwards its stderr lines to a channel.
fn spawn(mut cmd: Command) -> (Child, mpsc::Receiver<String>) {
    let mut child = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

/// Waits for a stderr line containing `needle`.
fn wait_for(rx: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let hit = line.contains(needle);
            seen.push(line);
            if hit {
                return;
            }
        }
    }
    panic!("no `{needle}` on stderr:\n{}", seen.join("\n"));
}

fn kill(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait(mut child: Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the run did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_writes_a_checkpoint_and_exits_75_and_the_run_resumes() {
    let run = tempfile::tempdir().unwrap();
    let (child, rx) = spawn(pretrain_command(
        run.path(),
        1000,
        &["--set", "checkpoint.every_steps=0"],
    ));
    let mut seen = Vec::new();
    wait_for(&rx, "step=3", &mut seen); // the first metrics row
    kill(&child, "-TERM");
    let status = wait(child, Duration::from_secs(60));
    seen.extend(rx.try_iter());
    assert_eq!(status.code(), Some(75), "{}", seen.join("\n"));
    let latest = std::fs::read_to_string(run.path().join("checkpoints/latest")).unwrap();
    let step: u64 = latest.trim_start_matches("step-").parse().unwrap();
    assert!(step >= 3, "{latest}");
    assert!(
        !run.path().join("final").exists(),
        "no final weights when stopped"
    );
    let resumed = ok(pretrain(
        run.path(),
        1000,
        &["--resume", "--max-steps", &(step + 2).to_string()],
    ));
    assert!(
        String::from_utf8_lossy(&resumed.stdout).contains(&format!("step {step}")),
        "{}",
        text(&resumed)
    );
    assert!(run.path().join("final/model.safetensors").is_file());
}

#[test]
fn a_second_ctrl_c_aborts_at_once() {
    let run = tempfile::tempdir().unwrap();
    let mut cmd = pretrain_command(run.path(), 1000, &["--set", "checkpoint.every_steps=0"]);
    cmd.env("ELECTRA_TEST_CHECKPOINT_PAUSE_MS", "30000");
    let (child, rx) = spawn(cmd);
    let mut seen = Vec::new();
    wait_for(&rx, "step=3", &mut seen);
    kill(&child, "-INT");
    wait_for(&rx, "checkpoint write paused", &mut seen);
    let second = Instant::now();
    kill(&child, "-INT");
    let status = wait(child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(130), "{}", seen.join("\n"));
    assert!(second.elapsed() < Duration::from_secs(10));
    // The interrupted write never became a checkpoint.
    let complete = std::fs::read_dir(run.path().join("checkpoints"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("step-"))
        .count();
    assert_eq!(complete, 0);
}

#[test]
fn sigkill_during_a_checkpoint_write_resumes_from_the_previous_one_exactly() {
    let straight = tempfile::tempdir().unwrap();
    ok(pretrain(
        straight.path(),
        8,
        &["--set", "checkpoint.every_steps=4"],
    ));

    let run = tempfile::tempdir().unwrap();
    let mut cmd = pretrain_command(run.path(), 8, &["--set", "checkpoint.every_steps=4"]);
    cmd.env("ELECTRA_TEST_CHECKPOINT_PAUSE_MS", "1500");
    let (child, rx) = spawn(cmd);
    let mut seen = Vec::new();
    wait_for(&rx, "checkpoint written", &mut seen); // step 4, complete
    wait_for(&rx, "checkpoint write paused", &mut seen); // step 8, half written
    kill(&child, "-KILL");
    let status = wait(child, Duration::from_secs(20));
    assert_eq!(status.code(), None, "killed by a signal");
    let checkpoints = run.path().join("checkpoints");
    assert!(
        std::fs::read_dir(&checkpoints).unwrap().flatten().any(|e| e
            .file_name()
            .to_string_lossy()
            .starts_with(".tmp-step-000000008")),
        "the write was cut short"
    );
    let out = ok(pretrain(run.path(), 8, &["--resume"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("step 4"),
        "{}",
        text(&out)
    );
    assert_same_training(straight.path(), run.path());
}

#[test]
fn a_corrupt_newest_checkpoint_is_skipped_for_the_previous_one() {
    let run = tempfile::tempdir().unwrap();
    ok(pretrain(
        run.path(),
        8,
        &["--set", "checkpoint.every_steps=4"],
    ));
    let weights = run
        .path()
        .join("checkpoints/step-000000008/discriminator/model.safetensors");
    let mut b = bytes(weights.clone());
    let i = b.len() - 100;
    b[i] ^= 0x40;
    std::fs::write(&weights, b).unwrap();
    let out = ok(pretrain(run.path(), 8, &["--resume", "--max-steps", "8"]));
    let all = text(&out);
    assert!(all.contains("step 4"), "{all}");
    assert!(all.contains("skipping a newer checkpoint"), "{all}");
    assert!(all.contains("sha256"), "the warning says why: {all}");
}

#[test]
fn a_full_disk_fails_the_checkpoint_cleanly_and_a_rerun_completes() {
    let straight = tempfile::tempdir().unwrap();
    ok(pretrain(
        straight.path(),
        8,
        &["--set", "checkpoint.every_steps=2"],
    ));

    let run = tempfile::tempdir().unwrap();
    ok(pretrain(
        run.path(),
        8,
        &["--set", "checkpoint.every_steps=2", "--max-steps", "4"],
    ));
    // Files may not grow past 4 MB: the next checkpoint's weights cannot be written.
    let script = format!(
        "trap '' XFSZ; ulimit -f 4096; exec {} pretrain --config configs/tiny.toml --device cpu --no-progress --run-dir {} {} --set train.total_steps=8 --set checkpoint.every_steps=2 --resume",
        env!("CARGO_BIN_EXE_electra"),
        s(run.path()),
        SMALL.join(" ")
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("model.safetensors"), "names the file: {err}");
    assert!(err.to_lowercase().contains("too large"), "says why: {err}");
    let checkpoints = run.path().join("checkpoints");
    let names: Vec<String> = std::fs::read_dir(&checkpoints)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with(".tmp")),
        "the failed write is removed: {names:?}"
    );
    assert!(!names.contains(&"step-000000006".to_string()), "{names:?}");
    ok(pretrain(
        run.path(),
        8,
        &["--set", "checkpoint.every_steps=2", "--resume"],
    ));
    assert_same_training(straight.path(), run.path());
}

#[test]
fn non_finite_steps_are_skipped_and_too_many_in_a_row_stop_the_run() {
    let run = tempfile::tempdir().unwrap();
    let out = pretrain(
        run.path(),
        40,
        &[
            "--set",
            "train.learning_rate=1e30",
            "--set",
            "train.max_bad_steps=4",
            "--set",
            "train.clip_grad_norm=0",
        ],
    );
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("non-finite"), "{err}");
    assert!(err.contains("train.max_bad_steps"), "{err}");
    assert!(!run.path().join("final").exists());
    // The rows written before the stop count the skipped steps and stay finite.
    let rows = rows(run.path());
    let last = rows.last().expect("at least one row");
    assert!(last["skipped_steps"].as_u64().unwrap() >= 1, "{last}");
    assert!(last["loss"].as_f64().is_some_and(f64::is_finite), "{last}");
}

#[test]
fn a_resume_with_another_experiment_is_refused_naming_the_keys() {
    let run = tempfile::tempdir().unwrap();
    ok(pretrain(
        run.path(),
        4,
        &["--set", "checkpoint.every_steps=2"],
    ));
    let out = pretrain(
        run.path(),
        4,
        &[
            "--resume",
            "--set",
            "train.learning_rate=0.1",
            "--set",
            "data.mask_prob=0.2",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("train.learning_rate"), "{err}");
    assert!(err.contains("data.mask_prob"), "{err}");
    // Allowed changes go through.
    ok(pretrain(
        run.path(),
        4,
        &["--resume", "--threads", "3", "--set", "train.log_every=1"],
    ));
    // Nothing to resume is an error, not a fresh start.
    let empty = tempfile::tempdir().unwrap();
    let out = pretrain(empty.path(), 4, &["--resume"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to resume"));
}
