//! Faults the `electra` binary meets outside its data: a disk that fills up while shards
//! are written. (Bad input records are tested in the pipeline crate.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

const INPUTS: [&str; 2] = [
    "data/corpus/moby_dick.txt.zst",
    "data/corpus/sotu.jsonl.zst",
];

/// `electra preprocess` of the two-file corpus into `out`, under a file-size limit of
/// `limit_kb` KiB when given: `ulimit -f` with SIGXFSZ ignored, so a write past the limit
/// fails with EFBIG as on a full disk instead of killing the process.
fn preprocess(out: &Path, limit_kb: Option<u64>) -> Output {
    let limit = limit_kb.map_or("unlimited".to_string(), |kb| kb.to_string());
    let mut args = vec![
        "preprocess".to_string(),
        "--config".into(),
        "configs/tiny.toml".into(),
        "--input".into(),
    ];
    args.extend(INPUTS.iter().map(|s| s.to_string()));
    args.extend([
        "--out".into(),
        out.display().to_string(),
        "--rows-per-shard".into(),
        "50".into(),
        "--threads".into(),
        "2".into(),
    ]);
    Command::new("bash")
        .arg("-c")
        .arg(format!(
            r#"trap "" XFSZ; ulimit -f {limit}; exec "$0" "$@""#
        ))
        .arg(env!("CARGO_BIN_EXE_electra"))
        .args(&args)
        .current_dir(repo())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

fn shards(m: &serde_json::Value) -> Vec<serde_json::Value> {
    m["shards"].as_array().unwrap().clone()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_full_disk_while_writing_shards_fails_naming_the_file_and_a_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean");
    let out = preprocess(&clean, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let clean_manifest = manifest(&clean);
    let sizes: Vec<u64> = shards(&clean_manifest)
        .iter()
        .map(|s| s["bytes"].as_u64().unwrap())
        .collect();
    // A limit the first shard fits under and a later one does not.
    let limit_kb = sizes[0] / 1024 + 1;
    let failing = sizes
        .iter()
        .position(|&b| b > limit_kb * 1024)
        .expect("a shard larger than the first (the fixture changed?)");
    assert!(failing > 0, "{sizes:?}");

    let full = dir.path().join("full");
    let out = preprocess(&full, Some(limit_kb));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the limit was not hit: {sizes:?}");
    // The error names the file whose write failed: the failing shard's temporary file.
    let tmp_name = format!(".part-00000-{failing:05}.parquet.tmp-");
    assert!(
        stderr.contains(&full.display().to_string())
            && stderr.contains(&tmp_name)
            && stderr.contains("File too large"),
        "{stderr}"
    );
    // The manifest lists the shards completed before the failure, exactly as a clean run
    // wrote them, and is not complete; no partial shard or temporary file is left.
    let partial = manifest(&full);
    assert_eq!(partial["complete"], false);
    assert_eq!(
        shards(&partial),
        shards(&clean_manifest)[..failing].to_vec()
    );
    let listed: Vec<String> = shards(&partial)
        .iter()
        .map(|s| s["path"].as_str().unwrap().to_string())
        .collect();
    for name in names(&full) {
        assert!(
            listed.contains(&name) || name == "manifest.json" || name == ".part-00000.lock",
            "{name} left in the output folder: {:?}",
            names(&full)
        );
    }

    // Without the limit the same command finishes the job: the same manifest as the
    // clean run, shard for shard.
    let out = preprocess(&full, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(manifest(&full), clean_manifest);
    assert_eq!(names(&full), names(&clean));
}
