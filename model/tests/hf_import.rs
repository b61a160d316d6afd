//! Hugging Face export and import without Python: the files written, the round trip, a
//! fresh generator, and the errors (missing, unexpected, misshapen or unshared tensors,
//! `pytorch_model.bin` only, an untied generator).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use electra_model::hf::{
    export_hf, hf_safetensors_metadata, HfTokenizerFiles, HF_DISCRIMINATOR_DIR, HF_GENERATOR_DIR,
};
use electra_model::hf_import::{read_hf_config, read_hf_tensors, HfGenerator, POSITION_IDS};
use electra_model::{safetensors, Electra, ElectraConfig};
use serde_json::Value;
use tch::{nn, Device, Kind, Tensor};

const TOKENIZER_JSON: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../data/tokenizer/bert-base-uncased/tokenizer.json"
);

fn rng_lock() -> MutexGuard<'static, ()> {
    static RNG: Mutex<()> = Mutex::new(());
    RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn tiny_configs() -> (ElectraConfig, ElectraConfig) {
    let disc = ElectraConfig {
        vocab_size: 100,
        embedding_size: 16,
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 64,
        max_position_embeddings: 32,
        ..ElectraConfig::small()
    };
    let gen = disc.generator(0.5);
    (disc, gen)
}

/// A tiny model, exported to `dir/discriminator` and `dir/generator`.
fn exported(dir: &Path, seed: i64) -> (nn::VarStore, Electra) {
    let (disc, gen) = tiny_configs();
    let vs = nn::VarStore::new(Device::Cpu);
    let electra = {
        let _rng = rng_lock();
        tch::manual_seed(seed);
        Electra::new(&vs.root(), &disc, &gen).unwrap()
    };
    export_hf(&electra, &vs, dir, None).unwrap();
    (vs, electra)
}

fn import(dir: &Path) -> electra_model::Result<(nn::VarStore, Electra)> {
    let vs = nn::VarStore::new(Device::Cpu);
    let electra = Electra::from_hf(
        &vs,
        &dir.join(HF_DISCRIMINATOR_DIR),
        HfGenerator::Folder(&dir.join(HF_GENERATOR_DIR)),
    )?;
    Ok((vs, electra))
}

/// Rewrites `folder/model.safetensors` through `edit`.
fn edit_weights(folder: &Path, edit: impl FnOnce(&mut BTreeMap<String, Tensor>)) {
    let mut tensors = read_hf_tensors(folder).unwrap();
    edit(&mut tensors);
    let named: Vec<(String, Tensor)> = tensors.into_iter().collect();
    safetensors::save(
        &folder.join("model.safetensors"),
        &named,
        &hf_safetensors_metadata(),
    )
    .unwrap();
}

fn variables(vs: &nn::VarStore) -> BTreeMap<String, Tensor> {
    vs.variables().into_iter().collect()
}

#[test]
fn export_writes_configs_weights_and_tokenizer_files() {
    let dir = tempfile::tempdir().unwrap();
    let (vs, electra) = {
        let (disc, gen) = tiny_configs();
        let vs = nn::VarStore::new(Device::Cpu);
        let electra = Electra::new(&vs.root(), &disc, &gen).unwrap();
        (vs, electra)
    };
    export_hf(&electra, &vs, dir.path(), Some(Path::new(TOKENIZER_JSON))).unwrap();
    for (sub, arch, hidden) in [
        (HF_DISCRIMINATOR_DIR, "ElectraForPreTraining", 32),
        (HF_GENERATOR_DIR, "ElectraForMaskedLM", 16),
    ] {
        let folder = dir.path().join(sub);
        let config: Value =
            serde_json::from_slice(&std::fs::read(folder.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["architectures"][0], arch);
        assert!(config["hidden_size"].is_u64());
        assert_eq!(config["hidden_size"], hidden);
        assert_eq!(read_hf_config(&folder).unwrap().hidden_size, hidden);
        let loaded = safetensors::load(&folder.join("model.safetensors")).unwrap();
        assert_eq!(loaded.metadata, hf_safetensors_metadata());
        assert!(loaded.tensors.iter().all(|(name, _)| name != POSITION_IDS));
        assert_eq!(
            std::fs::read(folder.join("tokenizer.json")).unwrap(),
            std::fs::read(TOKENIZER_JSON).unwrap()
        );
        let tokenizer_config: Value =
            serde_json::from_slice(&std::fs::read(folder.join("tokenizer_config.json")).unwrap())
                .unwrap();
        assert_eq!(tokenizer_config["tokenizer_class"], "ElectraTokenizer");
        assert_eq!(tokenizer_config["do_lower_case"], true);
        assert_eq!(tokenizer_config["model_max_length"], 32);
        assert_eq!(tokenizer_config["mask_token"], "[MASK]");
        let special: Value =
            serde_json::from_slice(&std::fs::read(folder.join("special_tokens_map.json")).unwrap())
                .unwrap();
        assert_eq!(special["unk_token"], "[UNK]");
        assert_eq!(special["cls_token"], "[CLS]");
        let vocab = std::fs::read_to_string(folder.join("vocab.txt")).unwrap();
        assert_eq!(
            vocab.lines().take(2).collect::<Vec<_>>(),
            ["[PAD]", "[unused0]"]
        );
    }
    // The shared tensors are copied into both files; the tied output weight too.
    let disc = read_hf_tensors(&dir.path().join(HF_DISCRIMINATOR_DIR)).unwrap();
    let gen = read_hf_tensors(&dir.path().join(HF_GENERATOR_DIR)).unwrap();
    let words = "electra.embeddings.word_embeddings.weight";
    assert!(gen[words].equal(&disc[words]));
    assert!(gen["generator_lm_head.weight"].equal(&disc[words]));
}

#[test]
fn a_non_wordpiece_tokenizer_gets_no_vocab_txt_and_the_fast_class() {
    let json = br#"{"normalizer": {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "Lowercase"}]},
        "added_tokens": [{"id": 0, "content": "[PAD]"}, {"id": 1, "content": "[MASK]"}],
        "model": {"type": "BPE", "vocab": {"[PAD]": 0, "[MASK]": 1, "a": 2}, "merges": []}}"#;
    let files = HfTokenizerFiles::parse(json.to_vec(), Path::new("t.json")).unwrap();
    assert!(files.vocab_txt().is_none());
    assert!(files.do_lower_case());
    let config = files.tokenizer_config(64);
    assert_eq!(config["tokenizer_class"], "PreTrainedTokenizerFast");
    assert_eq!(config["model_max_length"], 64);
    assert_eq!(config["pad_token"], "[PAD]");
    assert!(config.get("unk_token").is_none(), "{config}");
    let err = HfTokenizerFiles::parse(b"{".to_vec(), Path::new("t.json")).unwrap_err();
    assert!(err.to_string().contains("t.json"), "{err}");
}

#[test]
fn export_then_import_restores_every_variable_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (vs, _electra) = exported(dir.path(), 1);
    let (vs2, electra2) = {
        let _rng = rng_lock();
        tch::manual_seed(99);
        import(dir.path()).unwrap()
    };
    let (before, after) = (variables(&vs), variables(&vs2));
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (name, tensor) in &before {
        assert!(
            tensor.equal(&after[name]),
            "{name} differs after the round trip"
        );
    }
    // Sharing is restored: the generator's output layer is the discriminator's table.
    let words = electra2.discriminator().embeddings().word_embeddings();
    tch::no_grad(|| {
        let _ = words.get(3).get(0).fill_(42.0);
    });
    let generator_words = electra2.generator().embeddings().word_embeddings();
    assert_eq!(generator_words.double_value(&[3, 0]), 42.0);
    let tensors = electra2.hf_generator_tensors(&vs2);
    let lm_head = &tensors
        .iter()
        .find(|(name, _)| name == "generator_lm_head.weight")
        .unwrap()
        .1;
    assert_eq!(lm_head.double_value(&[3, 0]), 42.0);
}

#[test]
fn a_discriminator_alone_gets_a_fresh_generator_of_the_given_width() {
    let dir = tempfile::tempdir().unwrap();
    let (vs, _electra) = exported(dir.path(), 2);
    let vs2 = nn::VarStore::new(Device::Cpu);
    let electra = Electra::from_hf(
        &vs2,
        &dir.path().join(HF_DISCRIMINATOR_DIR),
        HfGenerator::Fresh {
            width_fraction: 0.25,
        },
    )
    .unwrap();
    assert_eq!(electra.generator_config().hidden_size, 8);
    let (before, after) = (variables(&vs), variables(&vs2));
    for (name, tensor) in before
        .iter()
        .filter(|(n, _)| n.starts_with("discriminator."))
    {
        assert!(tensor.equal(&after[name]), "{name}");
    }
}

#[test]
fn missing_and_unexpected_tensors_are_listed_and_position_ids_ignored() {
    let dir = tempfile::tempdir().unwrap();
    exported(dir.path(), 3);
    let disc = dir.path().join(HF_DISCRIMINATOR_DIR);
    edit_weights(&disc, |tensors| {
        tensors.insert(
            POSITION_IDS.into(),
            Tensor::arange(32, (Kind::Int64, Device::Cpu)).view([1, 32]),
        );
    });
    import(dir.path()).unwrap();
    edit_weights(&disc, |tensors| {
        tensors.remove("electra.encoder.layer.1.output.dense.bias");
        tensors.remove("discriminator_predictions.dense.weight");
        tensors.insert(
            "cls.extra".into(),
            Tensor::zeros([2], (Kind::Float, Device::Cpu)),
        );
    });
    let err = import(dir.path()).unwrap_err().to_string();
    assert!(err.contains("discriminator/model.safetensors"), "{err}");
    assert!(
        err.contains(
            "missing tensors: discriminator_predictions.dense.weight, \
             electra.encoder.layer.1.output.dense.bias"
        ),
        "{err}"
    );
    assert!(err.contains("unexpected tensors: cls.extra"), "{err}");
}

#[test]
fn a_tensor_of_the_wrong_shape_is_named() {
    let dir = tempfile::tempdir().unwrap();
    exported(dir.path(), 4);
    edit_weights(&dir.path().join(HF_GENERATOR_DIR), |tensors| {
        tensors.insert(
            "generator_predictions.dense.bias".into(),
            Tensor::zeros([5], (Kind::Float, Device::Cpu)),
        );
    });
    let err = import(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("generator_predictions.dense.bias: shape [5]"),
        "{err}"
    );
}

#[test]
fn a_generator_whose_embeddings_differ_is_refused_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    exported(dir.path(), 5);
    let gen = dir.path().join(HF_GENERATOR_DIR);
    // Within 1e-5 is accepted (and the discriminator's copy wins).
    edit_weights(&gen, |tensors| {
        let name = "electra.embeddings.LayerNorm.bias";
        let nudged = &tensors[name] + 1e-6;
        tensors.insert(name.into(), nudged);
    });
    import(dir.path()).unwrap();
    edit_weights(&gen, |tensors| {
        let name = "electra.embeddings.position_embeddings.weight";
        let moved = &tensors[name] + 1e-3;
        tensors.insert(name.into(), moved);
    });
    let err = import(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("electra.embeddings.position_embeddings.weight differs"),
        "{err}"
    );
    // An output layer that is not the token embeddings is refused too; leaving it out is
    // fine (transformers does: it is tied).
    exported(dir.path(), 5);
    edit_weights(&gen, |tensors| {
        let name = "generator_lm_head.weight";
        let moved = &tensors[name] * 2.0 + 0.01;
        tensors.insert(name.into(), moved);
    });
    let err = import(dir.path()).unwrap_err().to_string();
    assert!(err.contains("generator_lm_head.weight differs"), "{err}");
    edit_weights(&gen, |tensors| {
        tensors.remove("generator_lm_head.weight");
    });
    import(dir.path()).unwrap();
}

#[test]
fn only_safetensors_are_read_and_an_untied_generator_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    exported(dir.path(), 6);
    let disc = dir.path().join(HF_DISCRIMINATOR_DIR);
    std::fs::rename(
        disc.join("model.safetensors"),
        disc.join("pytorch_model.bin"),
    )
    .unwrap();
    let err = import(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("pytorch_model.bin") && err.contains("safetensors"),
        "{err}"
    );
    exported(dir.path(), 6);
    let config_path = dir.path().join(HF_GENERATOR_DIR).join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["tie_word_embeddings"] = Value::Bool(false);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let err = import(dir.path()).unwrap_err().to_string();
    assert!(err.contains("tie_word_embeddings"), "{err}");
    config["tie_word_embeddings"] = Value::Bool(true);
    config["model_type"] = Value::from("bert");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let err = import(dir.path()).unwrap_err().to_string();
    assert!(err.contains("model_type"), "{err}");
}
