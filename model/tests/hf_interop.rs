//! Interoperability with Hugging Face `transformers`, checked by running it: our export
//! loads there with the same logits, a `save_pretrained` checkpoint loads here with the
//! same logits, and HF -> ours -> HF keeps every tensor bit for bit.
//!
//! The Python side is `tests/python/hf_interop.py`, run with the project's
//! `.venv/bin/python` (or `python3` on `PATH`). A missing `transformers` fails these tests:
//! `make test` installs it. Data goes through files in a temporary folder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use electra_model::hf::{export_hf, HF_DISCRIMINATOR_DIR, HF_GENERATOR_DIR};
use electra_model::hf_import::HfGenerator;
use electra_model::{safetensors, Electra, ElectraConfig, EncoderInput};
use tch::{nn, Device, Kind, Tensor};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/python/hf_interop.py");
const TOKENIZER_JSON: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../data/tokenizer/bert-base-uncased/tokenizer.json"
);
const TOLERANCE: f64 = 1e-5;

/// Torch's default generator is global: tests that initialise models run one at a time.
fn rng_lock() -> MutexGuard<'static, ()> {
    static RNG: Mutex<()> = Mutex::new(());
    RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// Runs `hf_interop.py` with `args`, prints its output, and panics unless it succeeds.
fn run_python(args: &[&Path]) {
    let output = Command::new(python())
        .arg(SCRIPT)
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .env("TOKENIZERS_PARALLELISM", "false")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python().display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "hf_interop.py {args:?} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
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

/// Inputs of 3 rows of 12 tokens with 12, 9 and 5 real tokens (padding id 0), segment 1
/// on the second half of each row's real tokens.
fn inputs() -> BTreeMap<&'static str, Tensor> {
    let (batch, seq, lengths) = (3i64, 12i64, [12i64, 9, 5]);
    let (mut ids, mut mask, mut segments) = (vec![], vec![], vec![]);
    let mut state = 17u64;
    for &length in &lengths {
        for pos in 0..seq {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let real = pos < length;
            ids.push(if real {
                5 + ((state >> 33) % 995) as i64
            } else {
                0
            });
            mask.push(i64::from(real));
            segments.push(i64::from(real && pos >= length / 2));
        }
    }
    BTreeMap::from([
        ("input_ids", Tensor::from_slice(&ids).view([batch, seq])),
        (
            "attention_mask",
            Tensor::from_slice(&mask).view([batch, seq]),
        ),
        (
            "token_type_ids",
            Tensor::from_slice(&segments).view([batch, seq]),
        ),
    ])
}

/// Our discriminator logits `[b, t]` and generator logits at every position `[b * t, V]`.
fn our_logits(electra: &Electra, io: &BTreeMap<&str, Tensor>) -> (Tensor, Tensor) {
    let input = EncoderInput {
        input_ids: &io["input_ids"],
        segment_ids: &io["token_type_ids"],
        attention_mask: &io["attention_mask"],
    };
    let (batch, seq) = input.check().unwrap();
    let all_positions = Tensor::arange(batch * seq, (Kind::Int64, Device::Cpu));
    tch::no_grad(|| {
        (
            electra.discriminator_logits(&input, false).unwrap(),
            electra
                .generator_logits(&input, &all_positions, false)
                .unwrap(),
        )
    })
}

fn max_difference(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

fn save_io(path: &Path, io: &BTreeMap<&str, Tensor>) {
    let named: Vec<(String, Tensor)> = io
        .iter()
        .map(|(name, tensor)| (name.to_string(), tensor.shallow_clone()))
        .collect();
    safetensors::save(path, &named, &BTreeMap::new()).unwrap();
}

#[test]
fn our_export_loads_in_transformers_with_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    let (disc, gen) = tiny_configs();
    let vs = nn::VarStore::new(Device::Cpu);
    let electra = {
        let _rng = rng_lock();
        tch::manual_seed(7);
        let electra = Electra::new(&vs.root(), &disc, &gen).unwrap();
        // Move LayerNorms and biases away from 1 and 0 so every tensor matters.
        tch::no_grad(|| {
            for mut variable in vs.trainable_variables() {
                let noise = variable.randn_like() * 0.05;
                let _ = variable.g_add_(&noise);
            }
        });
        electra
    };
    let export = dir.path().join("export");
    export_hf(&electra, &vs, &export, Some(Path::new(TOKENIZER_JSON))).unwrap();

    let mut io = inputs();
    let (disc_logits, gen_logits) = our_logits(&electra, &io);
    assert_eq!(gen_logits.size(), [36, 1000]);
    io.insert("disc_logits", disc_logits);
    io.insert("gen_logits", gen_logits);
    let io_file = dir.path().join("io.safetensors");
    save_io(&io_file, &io);
    run_python(&[Path::new("check-export"), &export, &io_file]);

    // The WordPiece vocabulary, ordered by id, is bert-base-uncased's vocab.txt.
    let reference =
        std::fs::read_to_string(Path::new(TOKENIZER_JSON).with_file_name("vocab.txt")).unwrap();
    for sub in [HF_DISCRIMINATOR_DIR, HF_GENERATOR_DIR] {
        let vocab = std::fs::read_to_string(export.join(sub).join("vocab.txt")).unwrap();
        assert_eq!(vocab.lines().count(), 30522);
        assert_eq!(
            vocab.lines().collect::<Vec<_>>(),
            reference.lines().collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_transformers_checkpoint_loads_with_the_same_logits_and_round_trips_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let hf = dir.path().join("hf");
    run_python(&[Path::new("make-checkpoint"), &hf]);

    let vs = nn::VarStore::new(Device::Cpu);
    let electra = Electra::from_hf(
        &vs,
        &hf.join(HF_DISCRIMINATOR_DIR),
        HfGenerator::Folder(&hf.join(HF_GENERATOR_DIR)),
    )
    .unwrap();
    assert_eq!(electra.generator_config().hidden_size, 32);
    assert_eq!(electra.generator_config().num_attention_heads, 2);

    let loaded = safetensors::load(&hf.join("io.safetensors")).unwrap();
    let io: BTreeMap<&str, Tensor> = ["input_ids", "attention_mask", "token_type_ids"]
        .into_iter()
        .map(|name| {
            let tensor = loaded.tensors.iter().find(|(n, _)| n == name).unwrap();
            (name, tensor.1.shallow_clone())
        })
        .collect();
    let expected = |name: &str| {
        loaded
            .tensors
            .iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .shallow_clone()
    };
    let (disc_logits, gen_logits) = our_logits(&electra, &io);
    let disc_diff = max_difference(&disc_logits, &expected("disc_logits"));
    let gen_diff = max_difference(&gen_logits, &expected("gen_logits"));
    println!(
        "transformers -> ours: max |disc diff| {disc_diff:.3e}, max |gen diff| {gen_diff:.3e}"
    );
    assert!(
        disc_diff <= TOLERANCE,
        "discriminator logits differ by {disc_diff:e}"
    );
    assert!(
        gen_diff <= TOLERANCE,
        "generator logits differ by {gen_diff:e}"
    );

    let ours = dir.path().join("ours");
    export_hf(&electra, &vs, &ours, None).unwrap();
    run_python(&[
        Path::new("compare"),
        &hf.join(HF_DISCRIMINATOR_DIR),
        &ours.join(HF_DISCRIMINATOR_DIR),
        &hf.join(HF_GENERATOR_DIR),
        &ours.join(HF_GENERATOR_DIR),
    ]);
    // And back once more: ours -> ours is the identity too.
    let vs2 = nn::VarStore::new(Device::Cpu);
    let again = Electra::from_hf(
        &vs2,
        &ours.join(HF_DISCRIMINATOR_DIR),
        HfGenerator::Folder(&ours.join(HF_GENERATOR_DIR)),
    )
    .unwrap();
    let (disc_again, gen_again) = our_logits(&again, &io);
    assert!(disc_again.equal(&disc_logits) && gen_again.equal(&gen_logits));
}
