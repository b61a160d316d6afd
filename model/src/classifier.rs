//! Sequence classification and regression on top of the discriminator: Hugging Face's
//! `ElectraForSequenceClassification` (`electra.*` + `classifier.*`).
//!
//! 1. [`ClassificationHead`] is `ElectraClassificationHead`: the `[CLS]` hidden state,
//!    dropout, `dense` `[H, H]`, exact GELU (always GELU, whatever `hidden_act` says, as in
//!    `transformers`), dropout, `out_proj` `[num_labels, H]`. Dropout is
//!    `hidden_dropout_prob` (`classifier_dropout` is not read).
//! 2. [`ElectraForSequenceClassification`] is the encoder ([`ElectraModel`]) and the head.
//!    For fine-tuning, build it fresh with [`new`](ElectraForSequenceClassification::new)
//!    and copy a pre-trained encoder in with
//!    [`load_hf_encoder`](ElectraForSequenceClassification::load_hf_encoder) (the head stays
//!    freshly initialised); to reload a fine-tuned folder whole, use
//!    [`from_hf`](ElectraForSequenceClassification::from_hf).
//! 3. [`save_hf_classifier`] writes the folder `transformers` loads:
//!    `config.json` with `num_labels`, `id2label`, `label2id` and `problem_type`, and
//!    `model.safetensors`.
//! 4. [`layer_depth`] places each parameter in the stack (embeddings 0, block `i` at
//!    `i + 1`, head `N + 1`), the basis of layer-wise learning-rate decay.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tch::{nn, Tensor};

use crate::config::{Activation, ElectraConfig};
use crate::dropout::dropout;
use crate::encoder::{ElectraModel, EncoderInput};
use crate::error::{ModelError, Result};
use crate::hf::{save_hf_folder, HF_CONFIG_FILE};
use crate::hf_config::config_json;
use crate::hf_import::{copy_weights, read_hf_config, read_hf_weights};
use crate::layers::linear;
use crate::params::{prefix_of, variables_under};

/// `architectures` of a sequence-classification `config.json`.
pub const HF_CLASSIFIER_ARCHITECTURE: &str = "ElectraForSequenceClassification";
pub use crate::encoder::ENCODER_PREFIX;
/// Prefix of the classification head's tensors.
pub const CLASSIFIER_PREFIX: &str = "classifier";

/// What the head predicts, with Hugging Face's `problem_type` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProblemType {
    /// One class per example; cross-entropy over `num_labels` logits.
    #[serde(rename = "single_label_classification")]
    SingleLabelClassification,
    /// One number per example; mean squared error on a single output.
    #[serde(rename = "regression")]
    Regression,
}

impl ProblemType {
    /// The `problem_type` string of `config.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SingleLabelClassification => "single_label_classification",
            Self::Regression => "regression",
        }
    }
}

/// `classifier`: dropout, `dense` `[H, H]`, GELU, dropout, `out_proj` `[num_labels, H]`
/// on the first (`[CLS]`) position.
#[derive(Debug)]
pub struct ClassificationHead {
    dense: nn::Linear,
    out_proj: nn::Linear,
    dropout: f64,
}

impl ClassificationHead {
    /// Creates `p / "dense"` and `p / "out_proj"` (normal(0, initializer_range) weights,
    /// zero biases, as `transformers` initialises them).
    pub fn new(p: &nn::Path, cfg: &ElectraConfig, num_labels: i64) -> Self {
        ClassificationHead {
            dense: linear(&(p / "dense"), cfg.hidden_size, cfg.hidden_size, cfg),
            out_proj: linear(&(p / "out_proj"), cfg.hidden_size, num_labels, cfg),
            dropout: cfg.hidden_dropout_prob,
        }
    }

    /// Logits from the `[CLS]` hidden state.
    ///
    /// # Shapes
    /// `hidden` `[batch, seq, H]` -> `[batch, num_labels]`.
    pub fn forward_t(&self, hidden: &Tensor, train: bool) -> Tensor {
        // [b, t, H] -> [b, H]
        let cls = hidden.select(1, 0);
        let projected = dropout(&cls, self.dropout, train).apply(&self.dense);
        dropout(&Activation::Gelu.forward(&projected), self.dropout, train).apply(&self.out_proj)
    }
}

/// Hugging Face's `ElectraForSequenceClassification`: the discriminator's encoder under
/// `electra.*` and a [`ClassificationHead`] under `classifier.*`.
#[derive(Debug)]
pub struct ElectraForSequenceClassification {
    config: ElectraConfig,
    num_labels: i64,
    electra: ElectraModel,
    classifier: ClassificationHead,
    /// The `VarStore` prefix of its variables (`""` at the root).
    root: String,
}

fn bad(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl ElectraForSequenceClassification {
    /// Creates `p / "electra"` and `p / "classifier"`, randomly initialised, with
    /// `num_labels` outputs (1 for regression).
    pub fn new(p: &nn::Path, cfg: &ElectraConfig, num_labels: i64) -> Result<Self> {
        if num_labels < 1 {
            return Err(ModelError::Config {
                field: "num_labels",
                value: num_labels.to_string(),
                reason: "must be at least 1",
            });
        }
        let electra = ElectraModel::new(&(p / ENCODER_PREFIX), cfg)?;
        let classifier = ClassificationHead::new(&(p / CLASSIFIER_PREFIX), cfg, num_labels);
        Ok(Self {
            config: cfg.clone(),
            num_labels,
            electra,
            classifier,
            root: prefix_of(p),
        })
    }

    /// Builds the model at the root of `vs` from a fine-tuned Hugging Face folder (`config.json` with `id2label` or
    /// `num_labels`, `model.safetensors` with `electra.*` and `classifier.*`); every tensor
    /// must be there and no other.
    pub fn from_hf(vs: &nn::VarStore, dir: &Path) -> Result<Self> {
        let cfg = read_hf_config(dir)?;
        let labels = read_hf_labels(dir)?;
        let model = Self::new(&vs.root(), &cfg, labels.len() as i64)?;
        let (path, loaded) = read_hf_weights(dir)?;
        copy_weights(&path, &model.hf_tensors(vs), &loaded, &[], &BTreeSet::new())?;
        Ok(model)
    }

    /// Copies a pre-trained encoder into `electra.*` (variables of `vs`) from a Hugging Face folder's
    /// `model.safetensors` (`ElectraForPreTraining`, `ElectraForSequenceClassification`, or
    /// `ElectraModel`, whose names have no `electra.` prefix). Tensors outside the encoder
    /// (heads) are ignored; a missing encoder tensor or one of the wrong shape is an error
    /// naming it. The head is left as it is.
    pub fn load_hf_encoder(&self, vs: &nn::VarStore, dir: &Path) -> Result<()> {
        let (path, loaded) = read_hf_weights(dir)?;
        let prefix = format!("{ENCODER_PREFIX}.");
        let has_prefix = loaded.keys().any(|name| name.starts_with(&prefix));
        let encoder: BTreeMap<String, Tensor> = loaded
            .into_iter()
            .filter_map(|(name, tensor)| {
                if has_prefix {
                    name.starts_with(&prefix).then_some((name, tensor))
                } else {
                    // A bare `ElectraModel`: `embeddings.*`, `encoder.*`.
                    Some((format!("{prefix}{name}"), tensor))
                }
            })
            .collect();
        copy_weights(
            &path,
            &self.hf_encoder_tensors(vs),
            &encoder,
            &[],
            &BTreeSet::new(),
        )
    }

    /// The encoder's sizes.
    pub fn config(&self) -> &ElectraConfig {
        &self.config
    }

    /// Number of outputs (1 for regression).
    pub fn num_labels(&self) -> i64 {
        self.num_labels
    }

    /// The encoder.
    pub fn electra(&self) -> &ElectraModel {
        &self.electra
    }

    /// The head.
    pub fn classifier(&self) -> &ClassificationHead {
        &self.classifier
    }

    /// Logits (classification) or predictions (regression, one column).
    ///
    /// # Shapes
    /// - `input`: each tensor `[batch, seq]`
    /// - returns `[batch, num_labels]`
    pub fn forward_t(&self, input: &EncoderInput, train: bool) -> Result<Tensor> {
        let hidden = self.electra.forward_t(input, train)?;
        Ok(self.classifier.forward_t(&hidden, train))
    }

    /// The encoder's tensors with Hugging Face names (`electra.*`), detached views.
    pub fn hf_encoder_tensors(&self, vs: &nn::VarStore) -> Vec<(String, Tensor)> {
        let encoder = format!("{ENCODER_PREFIX}.");
        self.hf_tensors(vs)
            .into_iter()
            .filter(|(name, _)| name.starts_with(&encoder))
            .collect()
    }

    /// Every tensor with Hugging Face `ElectraForSequenceClassification` names
    /// (`electra.*`, `classifier.*`): the variables of `vs` under the model's root, in
    /// module order; detached views of the variables.
    pub fn hf_tensors(&self, vs: &nn::VarStore) -> Vec<(String, Tensor)> {
        variables_under(vs, &self.root)
    }
}

/// Where a parameter sits in the stack, by its Hugging Face name: 0 for the embeddings
/// (`electra.embeddings.*`, `electra.embeddings_project.*`), `i + 1` for block `i`
/// (`electra.encoder.layer.{i}.*`), `num_layers + 1` for the head (`classifier.*`).
/// `None` for any other name.
pub fn layer_depth(name: &str, num_layers: i64) -> Option<i64> {
    if name.starts_with("electra.embeddings.") || name.starts_with("electra.embeddings_project.") {
        return Some(0);
    }
    if let Some(rest) = name.strip_prefix("electra.encoder.layer.") {
        let index: i64 = rest.split('.').next()?.parse().ok()?;
        return (0..num_layers).contains(&index).then_some(index + 1);
    }
    name.starts_with("classifier.").then_some(num_layers + 1)
}

/// The labels of a Hugging Face folder's `config.json`, by id: `id2label` when present,
/// else `LABEL_{i}` for `num_labels` (default 2, as `transformers`).
pub fn read_hf_labels(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join(HF_CONFIG_FILE);
    let bytes = std::fs::read(&path).map_err(ModelError::io(&path))?;
    let file: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|e| bad(&path, format!("not a JSON object: {e}")))?;
    if let Some(id2label) = file.get("id2label").and_then(Value::as_object) {
        let mut by_id = BTreeMap::new();
        for (id, label) in id2label {
            let id: usize = id
                .parse()
                .map_err(|_| bad(&path, format!("id2label key {id:?} is not an integer")))?;
            let label = label
                .as_str()
                .ok_or_else(|| bad(&path, format!("id2label[{id}] is not a string")))?;
            by_id.insert(id, label.to_string());
        }
        if by_id.keys().copied().ne(0..by_id.len()) || by_id.is_empty() {
            return Err(bad(&path, "id2label keys are not 0..num_labels"));
        }
        return Ok(by_id.into_values().collect());
    }
    let num_labels = match file.get("num_labels") {
        Some(value) => value.as_u64().filter(|&n| n >= 1).ok_or_else(|| {
            bad(
                &path,
                format!("num_labels is {value}, not a positive integer"),
            )
        })?,
        None => 2,
    };
    Ok((0..num_labels).map(|i| format!("LABEL_{i}")).collect())
}

/// The `config.json` of a sequence-classification folder: the encoder's sizes,
/// `architectures: ["ElectraForSequenceClassification"]`, `num_labels`, `id2label`,
/// `label2id` and `problem_type`. `labels` are by id (one, any name, for regression).
pub fn classifier_config_json(
    cfg: &ElectraConfig,
    labels: &[String],
    problem_type: ProblemType,
) -> Value {
    let mut value = config_json(cfg, HF_CLASSIFIER_ARCHITECTURE);
    if let Some(obj) = value.as_object_mut() {
        let id2label: Map<String, Value> = labels
            .iter()
            .enumerate()
            .map(|(id, label)| (id.to_string(), json!(label)))
            .collect();
        let label2id: Map<String, Value> = labels
            .iter()
            .enumerate()
            .map(|(id, label)| (label.clone(), json!(id)))
            .collect();
        obj.insert("num_labels".into(), json!(labels.len()));
        obj.insert("id2label".into(), Value::Object(id2label));
        obj.insert("label2id".into(), Value::Object(label2id));
        obj.insert("problem_type".into(), json!(problem_type.as_str()));
    }
    value
}

impl ElectraForSequenceClassification {
    /// This model's `config.json` ([`classifier_config_json`]); `labels` must have one
    /// label per output of the head.
    pub fn hf_config_json(&self, labels: &[String], problem_type: ProblemType) -> Result<Value> {
        if labels.len() as i64 != self.num_labels() {
            return Err(ModelError::Config {
                field: "id2label",
                value: format!("{} labels", labels.len()),
                reason: "must have one label per output of the head",
            });
        }
        Ok(classifier_config_json(self.config(), labels, problem_type))
    }
}

/// Writes `model` (built in `vs`) as a Hugging Face `ElectraForSequenceClassification`
/// folder: `config.json` ([`classifier_config_json`]) and `model.safetensors` (metadata
/// `{"format": "pt"}`). Tokenizer files are the caller's
/// ([`HfTokenizerFiles::write`](crate::hf::HfTokenizerFiles::write)). Creates `dir`.
pub fn save_hf_classifier(
    dir: &Path,
    model: &ElectraForSequenceClassification,
    vs: &nn::VarStore,
    labels: &[String],
    problem_type: ProblemType,
) -> Result<()> {
    let config = model.hf_config_json(labels, problem_type)?;
    save_hf_folder(dir, &config, &model.hf_tensors(vs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hf::save_hf_model;
    use crate::test_support::rng_lock;
    use crate::Electra;
    use tch::{Device, Kind};

    fn tiny() -> ElectraConfig {
        ElectraConfig {
            vocab_size: 50,
            embedding_size: 8,
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 32,
            max_position_embeddings: 16,
            ..ElectraConfig::small()
        }
    }

    fn input() -> (Tensor, Tensor, Tensor) {
        let ids = Tensor::from_slice(&[1i64, 5, 6, 7, 2, 1, 8, 9, 2, 0]).view([2, 5]);
        let segments = ids.zeros_like();
        let mask = ids.ne(0);
        (ids, segments, mask)
    }

    fn logits(model: &ElectraForSequenceClassification) -> Tensor {
        let (ids, segments, mask) = input();
        let input = EncoderInput {
            input_ids: &ids,
            segment_ids: &segments,
            attention_mask: &mask,
        };
        tch::no_grad(|| model.forward_t(&input, false)).unwrap()
    }

    #[test]
    fn variables_have_the_hugging_face_names_and_shapes() {
        let _rng = rng_lock();
        let vs = nn::VarStore::new(Device::Cpu);
        let model = ElectraForSequenceClassification::new(&vs.root(), &tiny(), 3).unwrap();
        let mut from_store: Vec<(String, Vec<i64>)> = vs
            .variables()
            .into_iter()
            .map(|(name, t)| (name, t.size()))
            .collect();
        from_store.sort();
        let mut from_model: Vec<(String, Vec<i64>)> = model
            .hf_tensors(&vs)
            .into_iter()
            .map(|(name, t)| (name, t.size()))
            .collect();
        from_model.sort();
        assert_eq!(from_store, from_model);
        let head: Vec<_> = from_model
            .iter()
            .filter(|(name, _)| name.starts_with("classifier."))
            .cloned()
            .collect();
        assert_eq!(
            head,
            [
                ("classifier.dense.bias".to_string(), vec![16]),
                ("classifier.dense.weight".to_string(), vec![16, 16]),
                ("classifier.out_proj.bias".to_string(), vec![3]),
                ("classifier.out_proj.weight".to_string(), vec![3, 16]),
            ]
        );
        assert_eq!(logits(&model).size(), [2, 3]);
    }

    #[test]
    fn the_head_reads_only_the_first_position() {
        let _rng = rng_lock();
        let vs = nn::VarStore::new(Device::Cpu);
        let model = ElectraForSequenceClassification::new(&vs.root(), &tiny(), 2).unwrap();
        let hidden = Tensor::randn([2, 4, 16], (Kind::Float, Device::Cpu));
        let changed = hidden.copy();
        let _ = changed.narrow(1, 1, 3).fill_(7.0);
        let a = model.classifier().forward_t(&hidden, false);
        let b = model.classifier().forward_t(&changed, false);
        assert!(a.equal(&b));
        let _ = changed.narrow(1, 0, 1).fill_(7.0);
        let c = model.classifier().forward_t(&changed, false);
        assert!(!a.equal(&c));
    }

    #[test]
    fn layer_depths_put_embeddings_first_and_the_head_last() {
        assert_eq!(
            layer_depth("electra.embeddings.word_embeddings.weight", 12),
            Some(0)
        );
        assert_eq!(layer_depth("electra.embeddings_project.bias", 12), Some(0));
        assert_eq!(
            layer_depth("electra.encoder.layer.0.attention.self.query.weight", 12),
            Some(1)
        );
        assert_eq!(
            layer_depth("electra.encoder.layer.11.output.LayerNorm.bias", 12),
            Some(12)
        );
        assert_eq!(layer_depth("classifier.out_proj.weight", 12), Some(13));
        assert_eq!(
            layer_depth("electra.encoder.layer.12.output.dense.weight", 12),
            None
        );
        assert_eq!(
            layer_depth("discriminator_predictions.dense.weight", 12),
            None
        );
    }

    /// A pre-training folder (`ElectraForPreTraining`) gives its encoder; the
    /// discriminator head is ignored and the classifier keeps its own weights.
    #[test]
    fn the_encoder_loads_from_a_pretraining_folder_and_heads_are_ignored() {
        let _rng = rng_lock();
        let dir = tempfile::tempdir().unwrap();
        let cfg = tiny();
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let electra = Electra::new(&vs.root(), &cfg, &cfg.generator(0.5)).unwrap();
        save_hf_model(
            dir.path(),
            &cfg,
            "ElectraForPreTraining",
            &electra.hf_discriminator_tensors(&vs),
        )
        .unwrap();

        tch::manual_seed(2);
        let vs2 = nn::VarStore::new(Device::Cpu);
        let model = ElectraForSequenceClassification::new(&vs2.root(), &cfg, 2).unwrap();
        let head_before: Vec<Tensor> = model
            .hf_tensors(&vs2)
            .iter()
            .filter(|(n, _)| n.starts_with("classifier."))
            .map(|(_, t)| t.copy())
            .collect();
        model.load_hf_encoder(&vs2, dir.path()).unwrap();
        let ours: BTreeMap<String, Tensor> = model.hf_encoder_tensors(&vs2).into_iter().collect();
        for (name, tensor) in electra.hf_discriminator_tensors(&vs) {
            if let Some(loaded) = ours.get(&name) {
                assert!(loaded.equal(&tensor), "{name}");
            } else {
                assert!(name.starts_with("discriminator_predictions."), "{name}");
            }
        }
        let head_after: Vec<Tensor> = model
            .hf_tensors(&vs2)
            .iter()
            .filter(|(n, _)| n.starts_with("classifier."))
            .map(|(_, t)| t.shallow_clone())
            .collect();
        for (a, b) in head_before.iter().zip(&head_after) {
            assert!(a.equal(b));
        }
    }

    #[test]
    fn a_missing_encoder_tensor_is_named() {
        let _rng = rng_lock();
        let dir = tempfile::tempdir().unwrap();
        let cfg = tiny();
        let vs = nn::VarStore::new(Device::Cpu);
        let model = ElectraForSequenceClassification::new(&vs.root(), &cfg, 2).unwrap();
        let tensors: Vec<(String, Tensor)> = model
            .hf_tensors(&vs)
            .into_iter()
            .filter(|(name, _)| name != "electra.encoder.layer.1.output.dense.weight")
            .collect();
        save_hf_model(dir.path(), &cfg, HF_CLASSIFIER_ARCHITECTURE, &tensors).unwrap();
        let err = model
            .load_hf_encoder(&vs, dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("missing tensors: electra.encoder.layer.1.output.dense.weight"),
            "{err}"
        );
    }

    #[test]
    fn a_saved_classifier_reloads_with_the_same_logits_and_labels() {
        let _rng = rng_lock();
        let dir = tempfile::tempdir().unwrap();
        let cfg = tiny();
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = ElectraForSequenceClassification::new(&vs.root(), &cfg, 3).unwrap();
        let labels: Vec<String> = ["neg", "neutral", "pos"].map(String::from).to_vec();
        save_hf_classifier(
            dir.path(),
            &model,
            &vs,
            &labels,
            ProblemType::SingleLabelClassification,
        )
        .unwrap();
        let config: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config["architectures"][0], HF_CLASSIFIER_ARCHITECTURE);
        assert_eq!(config["num_labels"], 3);
        assert_eq!(config["id2label"]["2"], "pos");
        assert_eq!(config["label2id"]["neutral"], 1);
        assert_eq!(config["problem_type"], "single_label_classification");
        assert_eq!(read_hf_labels(dir.path()).unwrap(), labels);

        let vs2 = nn::VarStore::new(Device::Cpu);
        let again = ElectraForSequenceClassification::from_hf(&vs2, dir.path()).unwrap();
        assert_eq!(again.num_labels(), 3);
        assert!(logits(&again).equal(&logits(&model)));
        // Wrong label count for the head.
        assert!(save_hf_classifier(
            dir.path(),
            &model,
            &vs,
            &labels[..2],
            ProblemType::SingleLabelClassification
        )
        .is_err());
    }
}
