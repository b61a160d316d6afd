//! Parsing, overrides, validation, path resolution and the resume check.

use super::*;

#[test]
fn unknown_keys_are_errors_that_name_the_key() {
    let err = RunConfig::from_toml_str("[model]\nhiden_size = 3\n", &[], "x.toml").unwrap_err();
    assert!(err.to_string().contains("hiden_size"), "{err}");
    let err = RunConfig::from_toml_str("", &["train.lerning_rate=1".into()], "x.toml").unwrap_err();
    assert!(err.to_string().contains("lerning_rate"), "{err}");
    let err = RunConfig::from_toml_str("[trian]\nseed = 1\n", &[], "x.toml").unwrap_err();
    assert!(err.to_string().contains("trian"), "{err}");
}

#[test]
fn overrides_parse_typed_values_and_strings() {
    let cfg = RunConfig::from_toml_str(
        "[train]\nseed = 1\n",
        &[
            "train.seed=7".into(),
            "train.learning_rate=1e-3".into(),
            "data.tokenizer=some/path.json".into(),
            "model.disallow_correct=true".into(),
            "data.files=[\"a.txt\", \"b.txt\"]".into(),
        ],
        "x.toml",
    )
    .unwrap();
    assert_eq!(cfg.train.seed, 7);
    assert_eq!(cfg.train.learning_rate, 1e-3);
    assert_eq!(cfg.data.tokenizer, "some/path.json");
    assert!(cfg.model.disallow_correct);
    assert_eq!(
        cfg.data.files,
        vec!["a.txt".to_string(), "b.txt".to_string()]
    );
}

#[test]
fn invalid_combinations_are_rejected() {
    let err = RunConfig::from_toml_str(
        "[model]\nhidden_size = 100\nnum_attention_heads = 3\n",
        &[],
        "x",
    )
    .unwrap_err();
    assert!(err.to_string().contains("model.hidden_size"), "{err}");
    let err = RunConfig::from_toml_str("[data]\nmax_seq_len = 1024\n", &[], "x").unwrap_err();
    assert!(err.to_string().contains("max_seq_len"), "{err}");
}

#[test]
fn the_resolved_config_round_trips() {
    let cfg = RunConfig::default();
    let text = cfg.to_toml().unwrap();
    let back = RunConfig::from_toml_str(&text, &[], "resolved").unwrap();
    assert_eq!(cfg, back);
}

#[test]
fn relative_data_paths_resolve_against_the_config_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[data]\nfiles = [\"corpus/*.zst\", \"/abs/x.txt\"]\ntokenizer = \"tok.json\"\n",
    )
    .unwrap();
    let cfg = RunConfig::load(&path, &[]).unwrap();
    assert_eq!(
        cfg.data.files[0],
        dir.path().join("corpus/*.zst").display().to_string()
    );
    assert_eq!(cfg.data.files[1], "/abs/x.txt");
    assert_eq!(
        cfg.data.tokenizer,
        dir.path().join("tok.json").display().to_string()
    );
}

#[test]
fn mixture_sources_parse_resolve_their_paths_and_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let toml = "[data]\n\
        [[data.sources]]\nname = \"books\"\nfiles = [\"books/*.zst\"]\nweight = 0.7\nepochs = 2\n\
        [[data.sources]]\nfiles = [\"/abs/web\"]\nweight = 0.3\ntokens = 5000\n";
    std::fs::write(&path, toml).unwrap();
    let cfg = RunConfig::load(&path, &[]).unwrap();
    let sources = &cfg.data.sources;
    assert_eq!(sources.len(), 2);
    assert_eq!(
        sources[0].files[0],
        dir.path().join("books/*.zst").display().to_string()
    );
    assert_eq!(
        (sources[0].epochs, sources[1].tokens),
        (Some(2), Some(5000))
    );
    assert_eq!(cfg.data.source_names(), ["books", "source-1"]);
    let back = RunConfig::from_toml_str(&cfg.to_toml().unwrap(), &[], "resolved").unwrap();
    assert_eq!(cfg, back);
    let mut other = cfg.clone();
    other.data.sources[1].weight = 0.4;
    assert_eq!(
        cfg.resume_differences(&other).unwrap(),
        vec!["data.sources".to_string()]
    );
}

#[test]
fn a_resumed_run_may_switch_the_fast_tokenizer_path_but_not_the_tokenizer() {
    let saved = RunConfig::default();
    let mut resumed = saved.clone();
    resumed.data.execution.fast_tokenizer = false;
    assert!(saved.resume_differences(&resumed).unwrap().is_empty());
    resumed.data.tokenizer = "other.json".into();
    assert_eq!(
        saved.resume_differences(&resumed).unwrap(),
        vec!["data.tokenizer".to_string()]
    );
}

#[test]
fn the_keys_of_every_part_keep_their_flat_toml_names() {
    let cfg = RunConfig::from_toml_str(
        "[data]\nthreads = 3\nmax_seq_len = 64\n[train]\nmax_steps = 9\nseed = 1\n[dist]\nbackend = \"store\"\ndata_slices = 2\n",
        &["data.prefetch=4".into(), "train.log_every=7".into()],
        "x.toml",
    )
    .unwrap();
    assert_eq!(cfg.data.execution.threads, 3);
    assert_eq!(cfg.data.execution.prefetch, 4);
    assert_eq!(cfg.data.max_seq_len, 64);
    assert_eq!(cfg.train.execution.max_steps, Some(9));
    assert_eq!(cfg.train.execution.log_every, 7);
    assert_eq!(cfg.dist.execution.backend, DistBackend::Store);
    assert_eq!(cfg.dist.data_slices, 2);
    let text = cfg.to_toml().unwrap();
    for line in [
        "threads = 3",
        "max_steps = 9",
        "backend = \"store\"",
        "data_slices = 2",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    assert!(
        !text.contains("execution") && !text.contains("unknown"),
        "{text}"
    );
}

#[test]
fn unknown_keys_beside_an_execution_part_are_errors_that_name_the_key() {
    for (toml, key) in [
        ("[data]\nthread = 2\n", "thread"),
        ("[train]\nmax_step = 2\n", "max_step"),
        ("[dist]\nbackends = \"store\"\n", "backends"),
    ] {
        let err = RunConfig::from_toml_str(toml, &[], "x.toml").unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&format!("unknown field `{key}`")), "{text}");
        assert!(text.contains("expected one of"), "{text}");
    }
}

#[test]
fn the_execution_keys_are_those_of_the_execution_parts() {
    let keys = RunConfig::execution_keys();
    for key in [
        "data.threads",
        "data.prefetch",
        "data.chunk_bytes",
        "data.verify_shards",
        "data.fast_tokenizer",
        "data.io_retries",
        "data.io_retry_timeout_s",
        "train.max_steps",
        "train.log_every",
        "train.max_bad_steps",
        "dist.backend",
        "dist.timeout_seconds",
        "dist.bucket_mb",
        "dist.grad_reduce",
        "checkpoint.every_steps",
        "checkpoint.keep",
    ] {
        assert!(keys.contains(&key.to_string()), "{key} in {keys:?}");
    }
    assert_eq!(keys.len(), 16, "{keys:?}");
}

#[test]
fn a_resumed_run_may_change_every_execution_key_and_no_experiment_key() {
    let saved = RunConfig::default();
    let mut resumed = saved.clone();
    resumed.data.execution = DataExecution {
        threads: 5,
        prefetch: 2,
        chunk_bytes: 1000,
        verify_shards: false,
        fast_tokenizer: false,
        io_retries: 3,
        io_retry_timeout_s: 9.5,
    };
    resumed.train.execution = TrainExecution {
        max_steps: Some(3),
        log_every: 1,
        max_bad_steps: 2,
    };
    resumed.dist.execution = DistExecution {
        backend: DistBackend::Store,
        timeout_seconds: 5,
        bucket_mb: 1,
        grad_reduce: GradReduceKind::Bf16,
    };
    resumed.checkpoint = CheckpointSection {
        every_steps: 1,
        keep: 9,
    };
    assert!(saved.resume_differences(&resumed).unwrap().is_empty());
    resumed.data.shuffle_window = 7;
    resumed.train.seed = 1;
    resumed.dist.data_slices = 2;
    resumed.model.hidden_size = 64;
    assert_eq!(
        saved.resume_differences(&resumed).unwrap(),
        vec![
            "data.shuffle_window".to_string(),
            "dist.data_slices".into(),
            "model.hidden_size".into(),
            "train.seed".into(),
        ]
    );
}

#[test]
fn flags_replace_their_keys_and_are_validated() {
    let flags = FlagOverrides {
        files: vec!["a.txt".into()],
        tokenizer: Some("t.json".into()),
        threads: Some(3),
        batch_size: Some(8),
        seq_len: Some(1024),
        max_steps: Some(5),
        precision: Some(Precision::Bf16),
    };
    let cfg = RunConfig::default().with_flags(&flags).unwrap();
    assert_eq!(cfg.data.files, vec!["a.txt".to_string()]);
    assert_eq!(cfg.data.tokenizer, "t.json");
    assert_eq!(cfg.data.execution.threads, 3);
    assert_eq!((cfg.data.batch_size, cfg.data.max_seq_len), (8, 1024));
    assert_eq!(cfg.model.max_position_embeddings, 1024);
    assert_eq!(cfg.train.execution.max_steps, Some(5));
    assert_eq!(cfg.train.precision, Precision::Bf16);
    let unchanged = RunConfig::default()
        .with_flags(&FlagOverrides::default())
        .unwrap();
    assert_eq!(unchanged, RunConfig::default());
    let err = RunConfig::default()
        .with_flags(&FlagOverrides {
            batch_size: Some(0),
            ..FlagOverrides::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("batch_size"), "{err}");
}
