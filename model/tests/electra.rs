//! Behaviour of the whole ELECTRA model on CPU: variable names, sharing, forward pass,
//! losses, sampling, padding, errors, and a short learning check.

// Helpers outside `#[test]` functions are test code too.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use electra_model::{
    Electra, ElectraConfig, ElectraInput, ElectraOptions, ElectraStats, EncoderInput, ModelError,
};
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

const VARIABLES_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/electra_tiny_variables.txt"
);
const PAD: i64 = 0;
const CLS: i64 = 1;
const SEP: i64 = 2;
const MASK: i64 = 4;

/// Torch's default generator is global: tests that draw random numbers (initialisation,
/// dropout, sampling) run one at a time so that `tch::manual_seed` means something.
fn rng_lock() -> MutexGuard<'static, ()> {
    static RNG: Mutex<()> = Mutex::new(());
    RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn tiny_configs() -> (ElectraConfig, ElectraConfig) {
    let disc = ElectraConfig {
        vocab_size: 1000,
        embedding_size: 32,
        hidden_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 256,
        max_position_embeddings: 128,
        ..ElectraConfig::small()
    };
    let gen = disc.generator(0.5);
    (disc, gen)
}

fn tiny_electra() -> (nn::VarStore, Electra) {
    let (disc, gen) = tiny_configs();
    let vs = nn::VarStore::new(Device::Cpu);
    let electra = Electra::new(&vs.root(), &disc, &gen).unwrap();
    (vs, electra)
}

/// A masked batch: `lengths[i]` real tokens in row `i` (`[CLS] ... [SEP]`, then padding to
/// `seq`), masked at positions 2 and 5 of every row.
struct Batch {
    input_ids: Tensor,
    segment_ids: Tensor,
    attention_mask: Tensor,
    masked_positions: Tensor,
    masked_labels: Tensor,
}

impl Batch {
    fn new(lengths: &[i64], seq: i64, seed: u64) -> Batch {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next_token = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            10 + ((state >> 33) % 990) as i64
        };
        let (mut ids, mut segments, mut mask, mut positions, mut labels) =
            (vec![], vec![], vec![], vec![], vec![]);
        for (row, &length) in lengths.iter().enumerate() {
            for pos in 0..seq {
                let token = match pos {
                    0 => CLS,
                    p if p == length - 1 => SEP,
                    p if p >= length => PAD,
                    _ => next_token(),
                };
                let masked = (pos == 2 || pos == 5) && pos < length - 1;
                if masked {
                    positions.push(row as i64 * seq + pos);
                    labels.push(token);
                }
                ids.push(if masked { MASK } else { token });
                segments.push(i64::from(pos >= length / 2 && pos < length));
                mask.push(i64::from(pos < length));
            }
        }
        let shape = [lengths.len() as i64, seq];
        Batch {
            input_ids: Tensor::from_slice(&ids).view(shape),
            segment_ids: Tensor::from_slice(&segments).view(shape),
            attention_mask: Tensor::from_slice(&mask).view(shape),
            masked_positions: Tensor::from_slice(&positions),
            masked_labels: Tensor::from_slice(&labels),
        }
    }

    fn input(&self) -> ElectraInput<'_> {
        ElectraInput {
            input_ids: &self.input_ids,
            segment_ids: &self.segment_ids,
            attention_mask: &self.attention_mask,
            masked_positions: &self.masked_positions,
            masked_labels: &self.masked_labels,
        }
    }
}

fn scalar(tensor: &Tensor) -> f64 {
    tensor.double_value(&[])
}

fn variable_lines(vs: &nn::VarStore) -> String {
    let sorted: BTreeMap<String, Vec<i64>> = vs
        .variables()
        .into_iter()
        .map(|(name, t)| (name, t.size()))
        .collect();
    sorted
        .iter()
        .map(|(name, shape)| format!("{name} {shape:?}\n"))
        .collect()
}

#[test]
fn variable_names_and_shapes_match_the_committed_list() {
    let _rng = rng_lock();
    let (vs, _electra) = tiny_electra();
    let actual = variable_lines(&vs);
    if std::env::var_os("ELECTRA_BLESS_VARIABLES").is_some() {
        std::fs::write(VARIABLES_FILE, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(VARIABLES_FILE).unwrap();
    assert_eq!(
        actual, expected,
        "set ELECTRA_BLESS_VARIABLES=1 to rewrite {VARIABLES_FILE} after reviewing"
    );
    // No reused name: tch would add a `__N` suffix.
    assert!(!actual.contains("__"));

    // ELECTRA-Small's discriminator has ~14M parameters.
    let small = ElectraConfig::small();
    let vs = nn::VarStore::new(Device::Cpu);
    let _electra = Electra::new(&vs.root(), &small, &small.generator(0.25)).unwrap();
    let count = |prefix: &str| -> i64 {
        vs.variables()
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, t)| t.numel() as i64)
            .sum()
    };
    let disc = count("discriminator.");
    assert!(
        (13_000_000..15_000_000).contains(&disc),
        "discriminator parameters: {disc}"
    );
    // The generator's own: no embeddings of its own, so well under a quarter.
    let gen = count("generator.");
    assert!(gen > 0 && gen < disc / 4, "generator parameters: {gen}");
}

#[test]
fn generator_and_discriminator_share_embeddings() {
    let _rng = rng_lock();
    let (vs, electra) = tiny_electra();
    let disc = electra.discriminator().embeddings();
    let gen = electra.generator().embeddings();
    let same = |a: &Tensor, b: &Tensor| a.data_ptr() == b.data_ptr();
    assert!(same(disc.word_embeddings(), gen.word_embeddings()));
    assert!(same(disc.position_embeddings(), gen.position_embeddings()));
    assert!(same(
        disc.token_type_embeddings(),
        gen.token_type_embeddings()
    ));
    assert!(same(disc.layer_norm().weight(), gen.layer_norm().weight()));
    assert!(same(disc.layer_norm().bias(), gen.layer_norm().bias()));
    assert!(!vs
        .variables()
        .keys()
        .any(|name| name.starts_with("generator.electra.embeddings.")));

    // A gradient from the generator loss alone reaches the shared embeddings, and not the
    // discriminator's own layers.
    let batch = Batch::new(&[16, 16], 16, 1);
    let output = electra
        .forward_t(&batch.input(), &ElectraOptions::default(), false)
        .unwrap();
    output.gen_loss.backward();
    let variables = vs.variables();
    let grad_norm = |name: &str| {
        let grad = variables[name].grad();
        if grad.defined() {
            scalar(&grad.norm())
        } else {
            0.0
        }
    };
    assert!(grad_norm("discriminator.electra.embeddings.word_embeddings.weight") > 0.0);
    assert!(grad_norm("discriminator.electra.embeddings.LayerNorm.weight") > 0.0);
    assert!(grad_norm("generator.generator_lm_head.bias") > 0.0);
    assert_eq!(
        grad_norm("discriminator.electra.encoder.layer.0.attention.self.query.weight"),
        0.0
    );
    assert_eq!(
        grad_norm("discriminator.discriminator_predictions.dense_prediction.weight"),
        0.0
    );

    // The output layer is the word embedding table: changing it changes the logits.
    let input = batch.input();
    let before = electra
        .generator_logits(&input.encoder_input(), &batch.masked_positions, false)
        .unwrap();
    tch::no_grad(|| {
        let mut row = disc.word_embeddings().get(7);
        let _ = row.fill_(1.0);
    });
    let after = electra
        .generator_logits(&input.encoder_input(), &batch.masked_positions, false)
        .unwrap();
    let changed = (&after - &before).abs().gt(1e-6);
    // Column 7 changes everywhere (the tied weight); token 7 is not in the input.
    assert!(changed.select(1, 7).all().int64_value(&[]) == 1);
    let other_columns = changed.narrow(1, 8, 100).any().int64_value(&[]);
    assert_eq!(other_columns, 0, "only the changed row's logit moves");
}

#[test]
fn forward_shapes_and_initial_losses() {
    let _rng = rng_lock();
    let (_vs, electra) = tiny_electra();
    let batch = Batch::new(&[16, 12, 9], 16, 2);
    let m = batch.masked_positions.size()[0];
    assert_eq!(m, 6);
    tch::manual_seed(0);
    let output = electra
        .forward_t(&batch.input(), &ElectraOptions::default(), true)
        .unwrap();
    assert_eq!(
        output.gen_logits.size(),
        [m, 1000],
        "generator logits only at masked positions"
    );
    assert_eq!(output.sampled.size(), [m]);
    assert_eq!(output.sampled.kind(), Kind::Int64);
    assert_eq!(output.disc_logits.size(), [3, 16]);
    assert_eq!(output.disc_labels.size(), [3, 16]);
    assert_eq!(output.disc_labels.kind(), Kind::Float);
    for loss in [&output.loss, &output.gen_loss, &output.disc_loss] {
        assert_eq!(loss.size(), Vec::<i64>::new());
        assert_eq!(loss.kind(), Kind::Float);
    }
    let gen_loss = scalar(&output.gen_loss);
    let disc_loss = scalar(&output.disc_loss);
    assert!(
        (gen_loss - 1000f64.ln()).abs() < 0.3,
        "gen loss {gen_loss} vs ln(1000)"
    );
    assert!(
        (disc_loss - 2f64.ln()).abs() < 0.05,
        "disc loss {disc_loss} vs ln 2"
    );
    let total = scalar(&output.loss);
    assert!((total - (gen_loss + 50.0 * disc_loss)).abs() < 1e-3);

    let stats = ElectraStats::from_tensor(&output.stats).unwrap();
    assert_eq!(stats.masked, 6.0);
    assert_eq!(stats.real, 16.0 + 12.0 + 9.0);
    let replaced = scalar(&output.disc_labels.sum(Kind::Float));
    assert_eq!(stats.replaced, replaced);
    assert!(stats.disc_acc() >= 0.0 && stats.disc_acc() <= 1.0);
}

#[test]
fn disc_labels_are_zero_where_the_sample_equals_the_original() {
    let _rng = rng_lock();
    let (vs, electra) = tiny_electra();
    let batch = Batch::new(&[16, 16, 16, 16], 16, 3);
    // Make the generator almost always sample token 7, and make half the labels 7.
    let labels: Vec<i64> = (0..8)
        .map(|i| if i % 2 == 0 { 7 } else { 500 + i })
        .collect();
    let masked_labels = Tensor::from_slice(&labels);
    let input = ElectraInput {
        masked_labels: &masked_labels,
        ..batch.input()
    };
    tch::no_grad(|| {
        let mut bias = vs.variables()["generator.generator_lm_head.bias"].get(7);
        let _ = bias.fill_(100.0);
    });
    tch::manual_seed(3);
    let output = electra
        .forward_t(&input, &ElectraOptions::default(), false)
        .unwrap();
    assert!(output.sampled.eq(7).all().int64_value(&[]) == 1);
    let labels_at_masked = output
        .disc_labels
        .view([-1])
        .index_select(0, &batch.masked_positions);
    let expected = output
        .sampled
        .ne_tensor(&masked_labels)
        .to_kind(Kind::Float);
    assert!(labels_at_masked.equal(&expected));
    assert_eq!(scalar(&labels_at_masked.sum(Kind::Float)), 4.0);
    // Unmasked positions are never labelled replaced.
    assert_eq!(scalar(&output.disc_labels.sum(Kind::Float)), 4.0);

    // With disallow_correct the label is never drawn.
    let opts = ElectraOptions {
        disallow_correct: true,
        ..ElectraOptions::default()
    };
    let output = electra.forward_t(&input, &opts, false).unwrap();
    assert_eq!(
        output
            .sampled
            .eq_tensor(&masked_labels)
            .sum(Kind::Int64)
            .int64_value(&[]),
        0
    );
    let labels_at_masked = output
        .disc_labels
        .view([-1])
        .index_select(0, &batch.masked_positions);
    assert_eq!(scalar(&labels_at_masked.sum(Kind::Float)), 8.0);
}

#[test]
fn forward_is_reproducible_under_manual_seed() {
    let _rng = rng_lock();
    let (_vs, electra) = tiny_electra();
    let batch = Batch::new(&[16, 16], 16, 4);
    let run = |seed| {
        tch::manual_seed(seed);
        electra
            .forward_t(&batch.input(), &ElectraOptions::default(), true)
            .unwrap()
    };
    let (first, second) = (run(11), run(11));
    assert!(first.sampled.equal(&second.sampled));
    assert!(first.disc_logits.equal(&second.disc_logits));
    assert_eq!(scalar(&first.loss), scalar(&second.loss));
}

#[test]
fn padding_does_not_change_outputs_at_real_positions() {
    let _rng = rng_lock();
    let (_vs, electra) = tiny_electra();
    let lengths = [12, 9];
    let short = Batch::new(&lengths, 12, 5);
    let long = Batch::new(&lengths, 20, 5);
    assert!(short.masked_labels.equal(&long.masked_labels));
    tch::manual_seed(5);
    let a = electra
        .forward_t(&short.input(), &ElectraOptions::default(), false)
        .unwrap();
    tch::manual_seed(5);
    let b = electra
        .forward_t(&long.input(), &ElectraOptions::default(), false)
        .unwrap();
    assert!(a.gen_logits.allclose(&b.gen_logits, 1e-5, 1e-5, false));
    assert!(a.sampled.equal(&b.sampled));
    for (row, &length) in lengths.iter().enumerate() {
        let real_a = a.disc_logits.get(row as i64).narrow(0, 0, length);
        let real_b = b.disc_logits.get(row as i64).narrow(0, 0, length);
        let diff = scalar(&(&real_a - &real_b).abs().max());
        assert!(diff < 1e-5, "row {row}: max difference {diff}");
    }
    assert!((scalar(&a.disc_loss) - scalar(&b.disc_loss)).abs() < 1e-5);
    assert!((scalar(&a.gen_loss) - scalar(&b.gen_loss)).abs() < 1e-5);
}

#[test]
fn input_shape_mismatch_returns_an_error() {
    let _rng = rng_lock();
    let (_vs, electra) = tiny_electra();
    let batch = Batch::new(&[16, 16], 16, 6);
    let opts = ElectraOptions::default();
    let wrong_segments = Tensor::zeros([2, 15], (Kind::Int64, Device::Cpu));
    let input = ElectraInput {
        segment_ids: &wrong_segments,
        ..batch.input()
    };
    let err = electra.forward_t(&input, &opts, false).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::Shape {
                what: "segment_ids",
                ..
            }
        ),
        "{err}"
    );

    let wrong_labels = Tensor::zeros([3], (Kind::Int64, Device::Cpu));
    let input = ElectraInput {
        masked_labels: &wrong_labels,
        ..batch.input()
    };
    assert!(matches!(
        electra.forward_t(&input, &opts, false),
        Err(ModelError::Shape {
            what: "masked_labels",
            ..
        })
    ));

    let float_ids = batch.input_ids.to_kind(Kind::Float);
    let input = ElectraInput {
        input_ids: &float_ids,
        ..batch.input()
    };
    assert!(matches!(
        electra.forward_t(&input, &opts, false),
        Err(ModelError::Kind {
            what: "input_ids",
            ..
        })
    ));

    let flat_ids = batch.input_ids.view([-1]);
    let input = ElectraInput {
        input_ids: &flat_ids,
        ..batch.input()
    };
    assert!(electra.forward_t(&input, &opts, false).is_err());

    let too_long = Batch::new(&[130], 130, 6);
    assert!(matches!(
        electra.forward_t(&too_long.input(), &opts, false),
        Err(ModelError::Shape {
            what: "input_ids",
            ..
        })
    ));

    let empty = Tensor::zeros([0], (Kind::Int64, Device::Cpu));
    let input = ElectraInput {
        masked_positions: &empty,
        masked_labels: &empty,
        ..batch.input()
    };
    assert!(electra.forward_t(&input, &opts, false).is_err());

    let bad = ElectraOptions {
        temperature: 0.0,
        ..opts
    };
    assert!(matches!(
        electra.forward_t(&batch.input(), &bad, false),
        Err(ModelError::Option { .. })
    ));

    let (disc, gen) = tiny_configs();
    let vs = nn::VarStore::new(Device::Cpu);
    let gen = ElectraConfig {
        embedding_size: 16,
        ..gen
    };
    assert!(matches!(
        Electra::new(&vs.root(), &disc, &gen),
        Err(ModelError::SharedConfigMismatch {
            field: "embedding_size",
            ..
        })
    ));
}

#[test]
fn hf_tensor_lists_are_the_variables_under_hugging_face_names() {
    let _rng = rng_lock();
    let (vs, electra) = tiny_electra();
    let variables = vs.variables();
    let disc = electra.hf_discriminator_tensors(&vs);
    let gen = electra.hf_generator_tensors(&vs);
    let shared = electra.hf_shared_tensors(&vs);
    for list in [&disc, &gen] {
        assert!(!list.iter().any(|(name, _)| name.contains("position_ids")));
        let names: std::collections::BTreeSet<_> = list.iter().map(|(name, _)| name).collect();
        assert_eq!(names.len(), list.len(), "duplicate names");
    }

    // The discriminator's list is exactly its variables, prefix stripped, same storage.
    let disc_vars: BTreeMap<_, _> = variables
        .iter()
        .filter_map(|(name, t)| Some((name.strip_prefix("discriminator.")?.to_string(), t)))
        .collect();
    assert_eq!(disc.len(), disc_vars.len());
    for (name, tensor) in &disc {
        let var = disc_vars
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not a variable"));
        assert_eq!(tensor.data_ptr(), var.data_ptr(), "{name}");
        assert!(!tensor.requires_grad());
    }
    assert_eq!(disc[0].0, "electra.embeddings.word_embeddings.weight");

    // The generator's list: its own variables, the shared ones and the tied lm head weight.
    let gen_vars: BTreeMap<_, _> = variables
        .iter()
        .filter_map(|(name, t)| Some((name.strip_prefix("generator.")?.to_string(), t)))
        .collect();
    assert_eq!(gen.len(), gen_vars.len() + shared.len());
    let by_name: BTreeMap<_, _> = gen.iter().map(|(name, t)| (name.as_str(), t)).collect();
    for (name, var) in &gen_vars {
        assert_eq!(by_name[name.as_str()].data_ptr(), var.data_ptr(), "{name}");
    }
    let shared_names: Vec<&str> = shared.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        shared_names,
        [
            "electra.embeddings.word_embeddings.weight",
            "electra.embeddings.position_embeddings.weight",
            "electra.embeddings.token_type_embeddings.weight",
            "electra.embeddings.LayerNorm.weight",
            "electra.embeddings.LayerNorm.bias",
            "generator_lm_head.weight",
        ]
    );
    for name in &shared_names[..5] {
        assert_eq!(
            by_name[name].data_ptr(),
            disc_vars[*name].data_ptr(),
            "{name}"
        );
    }
    // Module order, as the files list them: the shared embeddings first, every bias right
    // after its weight, the tied output weight right before the output bias.
    let gen_names: Vec<&str> = gen.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(gen_names[..5], shared_names[..5]);
    for list in [&disc, &gen] {
        for (i, (name, _)) in list.iter().enumerate() {
            if let Some(stem) = name.strip_suffix(".bias") {
                assert_eq!(list[i - 1].0, format!("{stem}.weight"), "{name}");
            }
        }
    }
    let word = &disc_vars["electra.embeddings.word_embeddings.weight"];
    assert_eq!(
        by_name["generator_lm_head.weight"].data_ptr(),
        word.data_ptr()
    );
    assert_eq!(
        by_name["generator_predictions.dense.weight"].size(),
        [32, 32]
    );
    // The tiny generator's width equals the embedding size: no projection; the
    // discriminator's projects 32 -> 64 (`[out, in]`).
    assert!(!by_name.contains_key("electra.embeddings_project.weight"));
    assert_eq!(
        disc_vars["electra.embeddings_project.weight"].size(),
        [64, 32]
    );
}

#[test]
fn initialisation_follows_hugging_face() {
    let _rng = rng_lock();
    let (vs, _electra) = tiny_electra();
    let variables = vs.variables();
    let std = |name: &str| scalar(&variables[name].std(true));
    let query = std("discriminator.electra.encoder.layer.0.attention.self.query.weight");
    assert!((query - 0.02).abs() < 0.002, "{query}");
    assert_eq!(
        scalar(
            &variables["discriminator.electra.encoder.layer.0.attention.self.query.bias"]
                .abs()
                .sum(Kind::Float)
        ),
        0.0
    );
    assert_eq!(
        scalar(
            &variables["discriminator.electra.encoder.layer.1.output.LayerNorm.weight"]
                .mean(Kind::Float)
        ),
        1.0
    );
    let word = &variables["discriminator.electra.embeddings.word_embeddings.weight"];
    assert_eq!(
        scalar(&word.get(PAD).abs().sum(Kind::Float)),
        0.0,
        "padding row starts at zero"
    );
    assert!((scalar(&word.std(true)) - 0.02).abs() < 0.002);
}

#[test]
fn discriminator_logits_in_eval_mode_ignore_padding_tokens_values() {
    let _rng = rng_lock();
    // Changing the ids at padding positions changes nothing at real positions.
    let (_vs, electra) = tiny_electra();
    let batch = Batch::new(&[10, 16], 16, 7);
    let input = EncoderInput {
        input_ids: &batch.input_ids,
        segment_ids: &batch.segment_ids,
        attention_mask: &batch.attention_mask,
    };
    let base = electra.discriminator_logits(&input, false).unwrap();
    let other_ids = batch
        .input_ids
        .where_self(&batch.attention_mask.ne(0), &batch.input_ids.full_like(99));
    let other = electra
        .discriminator_logits(
            &EncoderInput {
                input_ids: &other_ids,
                ..input
            },
            false,
        )
        .unwrap();
    let real = batch.attention_mask.ne(0);
    let diff = scalar(&(&base - &other).abs().masked_select(&real).max());
    assert!(diff < 1e-5, "{diff}");
}

#[test]
fn thirty_adam_steps_lower_the_loss() {
    let _rng = rng_lock();
    tch::manual_seed(0);
    let (vs, electra) = tiny_electra();
    let batch = Batch::new(&[16, 16, 12, 10], 16, 8);
    let mut opt = nn::Adam::default().build(&vs, 1e-3).unwrap();
    let opts = ElectraOptions::default();
    let mut losses = Vec::new();
    for _ in 0..30 {
        let output = electra.forward_t(&batch.input(), &opts, true).unwrap();
        opt.backward_step(&output.loss);
        losses.push((scalar(&output.gen_loss), scalar(&output.disc_loss)));
    }
    let (gen_first, disc_first) = losses[0];
    let (gen_last, disc_last) = losses[losses.len() - 1];
    assert!(
        gen_last < gen_first - 1.0,
        "generator loss {gen_first} -> {gen_last}"
    );
    assert!(
        disc_last < disc_first,
        "discriminator loss {disc_first} -> {disc_last}"
    );
}

#[test]
fn config_reads_and_writes_hugging_face_json() {
    let _rng = rng_lock();
    let json = r#"{
        "architectures": ["ElectraForPreTraining"], "model_type": "electra",
        "attention_probs_dropout_prob": 0.1, "embedding_size": 128, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "hidden_size": 256, "initializer_range": 0.02,
        "intermediate_size": 1024, "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
        "num_attention_heads": 4, "num_hidden_layers": 12, "pad_token_id": 0,
        "type_vocab_size": 2, "vocab_size": 30522
    }"#;
    let cfg: ElectraConfig = serde_json::from_str(json).unwrap();
    assert_eq!(cfg, ElectraConfig::small());
    let written = serde_json::to_value(&cfg).unwrap();
    assert_eq!(written["hidden_act"], "gelu");
    assert_eq!(written["hidden_size"], 256);
    assert!(
        written["hidden_size"].is_i64(),
        "integers are written as integers"
    );
    let round_trip: ElectraConfig = serde_json::from_value(written).unwrap();
    assert_eq!(round_trip, cfg);
}

#[test]
fn bfloat16_weights_keep_losses_and_sampling_in_float32() {
    let _rng = rng_lock();
    let (mut vs, electra) = tiny_electra();
    vs.bfloat16();
    assert_eq!(
        electra
            .discriminator()
            .embeddings()
            .word_embeddings()
            .kind(),
        Kind::BFloat16
    );
    let batch = Batch::new(&[16, 11], 16, 9);
    let output = electra
        .forward_t(&batch.input(), &ElectraOptions::default(), true)
        .unwrap();
    for loss in [&output.loss, &output.gen_loss, &output.disc_loss] {
        assert_eq!(loss.kind(), Kind::Float);
        assert!(scalar(loss).is_finite());
    }
    assert!((scalar(&output.gen_loss) - 1000f64.ln()).abs() < 0.3);
    output.loss.backward();
    let stats = ElectraStats::from_tensor(&output.stats).unwrap();
    assert_eq!(stats.real, 27.0);
}

/// Runs only where CUDA is available: the model moved to the GPU after construction (the
/// shared and tied tensors follow), eval logits match the CPU's, and a bf16 autocast step
/// gives float32 losses.
#[test]
fn cuda_forward_matches_cpu_when_available() {
    let _rng = rng_lock();
    if !tch::Cuda::is_available() {
        eprintln!("no CUDA device: skipped");
        return;
    }
    let device = Device::Cuda(0);
    let (mut vs, electra) = tiny_electra();
    let batch = Batch::new(&[16, 10, 7], 16, 10);
    let input = batch.input();
    let cpu_logits = electra
        .discriminator_logits(&input.encoder_input(), false)
        .unwrap();
    vs.set_device(device);
    assert_eq!(
        electra.generator().embeddings().word_embeddings().device(),
        device
    );
    let on = |t: &Tensor| t.to_device(device);
    let (ids, segments, mask) = (
        on(&batch.input_ids),
        on(&batch.segment_ids),
        on(&batch.attention_mask),
    );
    let (positions, labels) = (on(&batch.masked_positions), on(&batch.masked_labels));
    let input = ElectraInput {
        input_ids: &ids,
        segment_ids: &segments,
        attention_mask: &mask,
        masked_positions: &positions,
        masked_labels: &labels,
    };
    let gpu_logits = electra
        .discriminator_logits(&input.encoder_input(), false)
        .unwrap();
    let real = batch.attention_mask.ne(0);
    let diff = scalar(
        &(gpu_logits.to_device(Device::Cpu) - &cpu_logits)
            .abs()
            .masked_select(&real)
            .max(),
    );
    assert!(diff < 1e-3, "CPU vs CUDA: {diff}");
    let output = tch::autocast(true, || {
        electra.forward_t(&input, &ElectraOptions::default(), true)
    })
    .unwrap();
    for loss in [&output.loss, &output.gen_loss, &output.disc_loss] {
        assert_eq!(loss.kind(), Kind::Float);
        assert!(scalar(loss).is_finite());
    }
    output.loss.backward();
    assert_eq!(output.stats.device(), device);
    let stats = ElectraStats::from_tensor(&output.stats).unwrap();
    assert_eq!(stats.real, 33.0);
}

/// The discriminator generalises, not just memorises: originals come from ids 10..60,
/// near-uniform samples (temperature 1000) mostly fall outside, so token identity alone
/// separates them. Fresh random batches every step; the last batches are unseen.
#[test]
fn the_discriminator_learns_to_spot_out_of_distribution_replacements() {
    let _rng = rng_lock();
    tch::manual_seed(11);
    let (vs, electra) = tiny_electra();
    let mut opt = nn::Adam::default().build(&vs, 2e-3).unwrap();
    let opts = ElectraOptions {
        temperature: 1000.0,
        ..ElectraOptions::default()
    };
    let (b, t) = (16i64, 32i64);
    let mut accs = Vec::new();
    for step in 0..80 {
        let ids = Tensor::randint_low(10, 60, [b, t], (Kind::Int64, Device::Cpu));
        let positions = Tensor::randperm(b * t, (Kind::Int64, Device::Cpu)).narrow(0, 0, b * t / 7);
        let labels = ids.reshape([-1]).index_select(0, &positions);
        let masked = ids
            .reshape([-1])
            .index_put(&[Some(&positions)], &Tensor::from(MASK), false)
            .reshape([b, t]);
        let segments = Tensor::zeros([b, t], (Kind::Int64, Device::Cpu));
        let attention = Tensor::ones([b, t], (Kind::Int64, Device::Cpu));
        let input = ElectraInput {
            input_ids: &masked,
            segment_ids: &segments,
            attention_mask: &attention,
            masked_positions: &positions,
            masked_labels: &labels,
        };
        let out = electra.forward_t(&input, &opts, true).unwrap();
        opt.zero_grad();
        out.loss.backward();
        opt.step();
        let stats = ElectraStats::from_tensor(&out.stats).unwrap();
        if step >= 70 {
            accs.push((stats.disc_acc(), 1.0 - stats.replaced_frac()));
        }
    }
    let acc: f64 = accs.iter().map(|a| a.0).sum::<f64>() / accs.len() as f64;
    let baseline: f64 = accs.iter().map(|a| a.1).sum::<f64>() / accs.len() as f64;
    println!("discriminator accuracy {acc:.4} vs always-original {baseline:.4}");
    assert!(
        acc > baseline + 0.05,
        "accuracy {acc} vs baseline {baseline}"
    );
}
