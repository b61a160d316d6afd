//! The `[data]` section: defaults, parsing, validation.

use super::*;

#[test]
fn defaults_are_the_papers_values_and_valid() {
    let c = DataConfig::default();
    assert_eq!(c.max_seq_len, 128);
    assert_eq!(c.mask_prob, 0.15);
    assert_eq!(c.batch_size, 128);
    assert_eq!(c.max_predictions(), 19); // int(0.155 * 128)
    assert_eq!(c.mask_strategy, MaskStrategy::Electra);
    c.validate().unwrap();
}

#[test]
fn an_empty_toml_section_gives_the_defaults() {
    let c: DataConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(c, DataConfig::default());
}

#[test]
fn unknown_keys_are_rejected() {
    let err = serde_json::from_str::<DataConfig>(r#"{"mask_probability": 0.2}"#).unwrap_err();
    assert!(err.to_string().contains("mask_probability"), "{err}");
}

#[test]
fn enums_parse_lowercase() {
    let c: DataConfig = serde_json::from_str(
        r#"{"format": "jsonl", "mask_strategy": "bert", "on_bad_record": "fail", "epochs": 3, "oversized_lines": "split"}"#,
    )
    .unwrap();
    assert_eq!(c.oversized_lines, OversizedLinePolicy::Split);
    assert_eq!(c.format, SourceFormat::Jsonl);
    assert_eq!(c.mask_strategy, MaskStrategy::Bert);
    assert_eq!(c.on_bad_record, BadRecordPolicy::Fail);
    assert_eq!(c.epochs, Some(3));
    let c: DataConfig = serde_json::from_str(r#"{"mask_strategy": "all_mask"}"#).unwrap();
    assert_eq!(c.mask_strategy, MaskStrategy::AllMask);
}

#[test]
fn mask_positions_parse_snake_case_and_default_to_random() {
    for (name, positions) in [
        ("random", MaskPositions::Random),
        ("whole_word", MaskPositions::WholeWord),
        ("span", MaskPositions::Span),
    ] {
        let c: DataConfig =
            serde_json::from_str(&format!(r#"{{"mask_positions": "{name}"}}"#)).unwrap();
        assert_eq!(c.mask_positions, positions);
    }
    assert_eq!(DataConfig::default().mask_positions, MaskPositions::Random);
    let err = serde_json::from_str::<DataConfig>(r#"{"mask_positions": "words"}"#).unwrap_err();
    assert!(err.to_string().contains("whole_word"), "{err}");
}

#[test]
fn mask_prob_presets_are_valid_up_to_one_half_and_scale_max_predictions() {
    let with = |mask_prob| DataConfig {
        mask_prob,
        ..Default::default()
    };
    let counts: Vec<usize> = MASK_PROB_PRESETS
        .iter()
        .map(|&p| {
            with(p).validate().unwrap();
            with(p).max_predictions()
        })
        .collect();
    assert_eq!(counts, [19, 39, 51]); // int((p + 0.005) * 128)
    with(MAX_MASK_PROB).validate().unwrap();
    let err = with(0.51).validate().unwrap_err();
    assert!(
        err.to_string()
            .contains("`mask_prob`: 0.51 is not in (0, 0.5]"),
        "{err}"
    );
}

#[test]
fn out_of_range_values_name_their_field() {
    let cases: Vec<(DataConfig, &str)> = vec![
        (
            DataConfig {
                mask_prob: 0.0,
                ..Default::default()
            },
            "mask_prob",
        ),
        (
            DataConfig {
                mask_prob: 1.0,
                ..Default::default()
            },
            "mask_prob",
        ),
        (
            DataConfig {
                max_seq_len: 7,
                ..Default::default()
            },
            "max_seq_len",
        ),
        (
            DataConfig {
                batch_size: 0,
                ..Default::default()
            },
            "batch_size",
        ),
        (
            DataConfig {
                shuffle_window: 0,
                ..Default::default()
            },
            "shuffle_window",
        ),
        (
            DataConfig {
                single_segment_prob: 1.5,
                ..Default::default()
            },
            "single_segment_prob",
        ),
        (
            DataConfig {
                execution: DataExecution {
                    chunk_bytes: 0,
                    ..DataExecution::default()
                },
                ..Default::default()
            },
            "chunk_bytes",
        ),
        (
            DataConfig {
                oversized_lines: OversizedLinePolicy::Split,
                max_doc_bytes: 3,
                ..Default::default()
            },
            "max_doc_bytes",
        ),
        (
            DataConfig {
                epochs: Some(0),
                ..Default::default()
            },
            "epochs",
        ),
    ];
    for (c, name) in cases {
        match c.validate() {
            Err(PipelineError::InvalidConfig { field, .. }) => assert_eq!(field, name),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn explicit_max_predictions_wins() {
    let c = DataConfig {
        max_predictions_per_seq: Some(5),
        ..Default::default()
    };
    assert_eq!(c.max_predictions(), 5);
    let c = DataConfig {
        max_seq_len: 512,
        mask_prob: 0.25,
        ..Default::default()
    };
    assert_eq!(c.max_predictions(), 130); // int(0.255 * 512)
}
