//! Several `electra bench collective --backend store` processes on one machine, as torchrun
//! would launch them: every collective is checked on every rank (the bench fails a rank
//! whose result is wrong), rank 0's report is checked here, and a rank that dies makes the
//! others fail within the timeout.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::repo;

/// Launcher variables the tests' own environment might carry (a CI job under Slurm).
const LAUNCH_VARS: &[&str] = &[
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "SLURM_LOCALID",
    "SLURM_JOB_NODELIST",
    "SLURM_STEP_NODELIST",
    "SLURM_JOB_ID",
];

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn bench(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_electra"));
    cmd.args([
        "bench",
        "collective",
        "--backend",
        "store",
        "--device",
        "cpu",
    ])
    .args(args)
    .current_dir(repo())
    .env("RUST_LOG", "warn")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for var in LAUNCH_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// Starts rank `rank` of `world` with torchrun's variables.
fn spawn_rank(
    rank: usize,
    world: usize,
    port: u16,
    args: &[&str],
    extra: &[(&str, &str)],
) -> Child {
    let mut cmd = bench(args);
    cmd.env("RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Waits for every child (killing all of them past `limit`); the outputs and when each
/// process ended, from `start`.
fn wait_all(children: Vec<Child>, start: Instant, limit: Duration) -> Vec<(Output, Duration)> {
    let mut children: Vec<Option<Child>> = children.into_iter().map(Some).collect();
    let mut ended = vec![None; children.len()];
    while ended.iter().any(Option::is_none) {
        for (i, slot) in children.iter_mut().enumerate() {
            if ended[i].is_none() {
                if let Some(child) = slot.as_mut() {
                    if child.try_wait().unwrap().is_some() {
                        ended[i] = Some(start.elapsed());
                    }
                }
            }
        }
        if start.elapsed() > limit {
            for child in children.iter_mut().flatten() {
                let _ = child.kill();
            }
            panic!("the ranks did not all finish within {limit:?}: a rank hangs");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    children
        .into_iter()
        .zip(ended)
        .map(|(child, t)| (child.unwrap().wait_with_output().unwrap(), t.unwrap()))
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(outputs: &[(Output, Duration)]) -> String {
    outputs
        .iter()
        .enumerate()
        .map(|(rank, (out, t))| {
            format!(
                "rank {rank}: {:?} after {t:?}\nstdout: {}\nstderr: {}\n",
                out.status,
                text(&out.stdout),
                text(&out.stderr)
            )
        })
        .collect()
}

/// Runs `world` ranks of a small bench; returns rank 0's JSON report after checking that
/// every rank succeeded and only rank 0 printed.
fn run_ok(world: usize) -> serde_json::Value {
    let port = free_port();
    let args = [
        "--size-mb",
        "1",
        "--iters",
        "3",
        "--warmup",
        "1",
        "--timeout-seconds",
        "60",
        "--json",
    ];
    let start = Instant::now();
    let children = (0..world)
        .map(|r| spawn_rank(r, world, port, &args, &[]))
        .collect();
    let outputs = wait_all(children, start, Duration::from_secs(240));
    for (rank, (out, _)) in outputs.iter().enumerate() {
        assert!(
            out.status.success(),
            "rank {rank} failed\n{}",
            describe(&outputs)
        );
        if rank > 0 {
            assert!(
                out.stdout.is_empty(),
                "rank {rank} printed\n{}",
                describe(&outputs)
            );
        }
    }
    serde_json::from_str(text(&outputs[0].0.stdout).trim()).unwrap()
}

fn assert_report(report: &serde_json::Value, world: usize) {
    let w = world as f64;
    let expected = w * (w + 1.0) / 2.0;
    assert_eq!(report["backend"], "store");
    assert_eq!(report["world_size"], world);
    assert_eq!(report["all_reduce_expected"], expected);
    assert_eq!(report["all_reduce_min"], expected);
    assert_eq!(report["all_reduce_max"], expected);
    for check in [
        "kinds_ok",
        "broadcast_ok",
        "barrier_ok",
        "gather_ok",
        "grad_buckets_ok",
    ] {
        assert_eq!(report[check], true, "{check}: {report}");
    }
    assert_eq!(report["size_bytes"], 1_000_000);
    let seconds = report["seconds_per_all_reduce"].as_f64().unwrap();
    let algbw = report["algbw_gb_per_s"].as_f64().unwrap();
    let busbw = report["busbw_gb_per_s"].as_f64().unwrap();
    assert!(seconds > 0.0 && algbw > 0.0, "{report}");
    assert!(
        (busbw - algbw * 2.0 * (w - 1.0) / w).abs() < 1e-9,
        "{report}"
    );
}

#[test]
fn two_ranks_sum_broadcast_gather_and_reduce_grad_buckets_through_the_store() {
    assert_report(&run_ok(2), 2);
}

#[test]
fn three_ranks_sum_broadcast_gather_and_reduce_grad_buckets_through_the_store() {
    assert_report(&run_ok(3), 3);
}

#[test]
fn a_single_process_without_launcher_variables_is_world_size_one() {
    let out = bench(&["--size-mb", "1", "--iters", "2", "--warmup", "0", "--json"])
        .output()
        .unwrap();
    let stdout = common::ok(&out);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_report(&report, 1);
    assert_eq!(report["busbw_gb_per_s"], 0.0);
}

const TIMEOUT_S: u64 = 3;
/// Process start (loading libtorch) and the checks before the timed loop, on a busy machine.
const MARGIN: Duration = Duration::from_secs(20);

fn run_with_a_dying_rank(world: usize, dying: usize) -> Vec<(Output, Duration)> {
    let port = free_port();
    let timeout = TIMEOUT_S.to_string();
    let args = [
        "--size-mb",
        "1",
        "--iters",
        "1000",
        "--warmup",
        "0",
        "--timeout-seconds",
        &timeout,
    ];
    let start = Instant::now();
    let children = (0..world)
        .map(|r| {
            let extra: &[(&str, &str)] = if r == dying {
                &[("ELECTRA_TEST_DIST_EXIT_AFTER", "2")]
            } else {
                &[]
            };
            spawn_rank(r, world, port, &args, extra)
        })
        .collect();
    let outputs = wait_all(children, start, Duration::from_secs(TIMEOUT_S) + MARGIN * 3);
    let all = describe(&outputs);
    assert_eq!(outputs[dying].0.status.code(), Some(17), "{all}");
    for (rank, (out, t)) in outputs.iter().enumerate().filter(|(r, _)| *r != dying) {
        assert!(!out.status.success(), "rank {rank} succeeded\n{all}");
        assert!(
            *t < Duration::from_secs(TIMEOUT_S) + MARGIN,
            "rank {rank} took {t:?}\n{all}"
        );
        let err = text(&out.stderr);
        assert!(err.contains(&format!("rank {rank}:")), "{all}");
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{all}");
    }
    outputs
}

#[test]
fn a_rank_that_dies_makes_the_others_fail_within_the_timeout() {
    let outputs = run_with_a_dying_rank(3, 2);
    for rank in [0, 1] {
        let err = text(&outputs[rank].0.stderr);
        assert!(err.contains("from rank 2"), "{}", describe(&outputs));
        assert!(
            err.contains(&format!("timeout of {TIMEOUT_S}s")),
            "{}",
            describe(&outputs)
        );
    }
}

#[test]
fn losing_rank_0_and_its_store_fails_the_others() {
    let outputs = run_with_a_dying_rank(2, 0);
    let err = text(&outputs[1].0.stderr);
    assert!(err.contains("all_reduce_sum"), "{}", describe(&outputs));
}

#[test]
fn a_rank_that_cannot_reach_the_master_fails_naming_the_address() {
    let port = free_port();
    let start = Instant::now();
    let child = spawn_rank(1, 2, port, &["--timeout-seconds", "2"], &[]);
    let outputs = wait_all(vec![child], start, Duration::from_secs(2) + MARGIN * 3);
    let (out, t) = &outputs[0];
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{}", describe(&outputs));
    assert!(*t < Duration::from_secs(2) + MARGIN, "took {t:?}");
    assert!(
        err.contains(&format!(
            "rank 1: cannot reach rank 0's TCPStore at 127.0.0.1:{port} (MASTER_ADDR:MASTER_PORT)"
        )),
        "{err}"
    );
}

#[test]
fn ranks_launched_with_different_world_sizes_are_told_so() {
    let port = free_port();
    let start = Instant::now();
    let args = ["--size-mb", "1", "--timeout-seconds", "3"];
    let children = vec![
        spawn_rank(0, 2, port, &args, &[]),
        spawn_rank(1, 3, port, &args, &[]),
    ];
    let outputs = wait_all(children, start, Duration::from_secs(3) + MARGIN * 3);
    let all = describe(&outputs);
    assert!(
        outputs.iter().all(|(out, _)| !out.status.success()),
        "{all}"
    );
    assert!(
        text(&outputs[0].0.stderr).contains(
            "rank 0 (world_size=2 backend=store) and rank 1 (world_size=3 backend=store) disagree"
        ),
        "{all}"
    );
}
