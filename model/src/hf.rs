//! Hugging Face export: each model's tensors as `transformers` names them
//! (`ElectraForPreTraining` for the discriminator, `ElectraForMaskedLM` for the generator),
//! and [`export_hf`], which writes both as folders `transformers` loads
//! (`from_pretrained`), with the tokenizer files. Import is in
//! [`hf_import`](crate::hf_import).
//!
//! The names are the `VarStore`'s (see [`params`](crate::params)): the discriminator's are
//! its variables under `discriminator.`, the generator's its variables under `generator.`
//! plus the tensors it uses but the discriminator owns (the embeddings, and
//! `generator_lm_head.weight`, the token embeddings).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Map, Value};
use tch::{nn, Tensor};

use crate::config::ElectraConfig;
use crate::electra::{Electra, DISCRIMINATOR_PREFIX, GENERATOR_PREFIX};
use crate::encoder::{EMBEDDINGS, ENCODER_PREFIX};
use crate::error::{ModelError, Result};
use crate::heads::{LM_HEAD, LM_HEAD_WEIGHT};
use crate::hf_config::config_json;
use crate::params::{insert_tied, variables_under};
use crate::safetensors;

impl Electra {
    /// The discriminator's tensors with Hugging Face `ElectraForPreTraining` names
    /// (`electra.*`, `discriminator_predictions.*`): the variables of `vs` (the store the
    /// model was built in) under `discriminator.`, in module order, as detached views of the
    /// variables (same storage); no `position_ids` buffer.
    pub fn hf_discriminator_tensors(&self, vs: &nn::VarStore) -> Vec<(String, Tensor)> {
        let prefix = format!("{}{DISCRIMINATOR_PREFIX}.", self.var_prefix());
        variables_under(vs, &prefix)
    }

    /// The generator's tensors with Hugging Face `ElectraForMaskedLM` names: the shared
    /// ones ([`hf_shared_tensors`](Self::hf_shared_tensors)) in module order among its own
    /// variables (under `generator.`). Detached views of the variables: shared tensors
    /// appear here and in the discriminator's list.
    pub fn hf_generator_tensors(&self, vs: &nn::VarStore) -> Vec<(String, Tensor)> {
        let mut shared = self.hf_shared_tensors(vs);
        let lm_weight = shared.pop();
        let prefix = format!("{}{GENERATOR_PREFIX}.", self.var_prefix());
        let mut named = shared;
        named.extend(variables_under(vs, &prefix));
        if let Some((name, tensor)) = lm_weight {
            insert_tied(&mut named, &format!("{LM_HEAD}."), name, tensor);
        }
        named
    }

    /// The tensors the generator's folder holds but the discriminator owns, with their
    /// Hugging Face names: the embedding layer's variables (`electra.embeddings.*`) and,
    /// last, `generator_lm_head.weight` (the token embeddings).
    pub fn hf_shared_tensors(&self, vs: &nn::VarStore) -> Vec<(String, Tensor)> {
        let embeddings = format!("{ENCODER_PREFIX}.{EMBEDDINGS}.");
        let prefix = format!("{}{DISCRIMINATOR_PREFIX}.{embeddings}", self.var_prefix());
        let mut shared: Vec<(String, Tensor)> = variables_under(vs, &prefix)
            .into_iter()
            .map(|(name, tensor)| (format!("{embeddings}{name}"), tensor))
            .collect();
        let word = self.discriminator().embeddings().word_embeddings().detach();
        shared.push((LM_HEAD_WEIGHT.to_string(), word));
        shared
    }
}

/// Sub-folder of an export holding the discriminator (`ElectraForPreTraining`).
pub const HF_DISCRIMINATOR_DIR: &str = "discriminator";
/// Sub-folder of an export holding the generator (`ElectraForMaskedLM`).
pub const HF_GENERATOR_DIR: &str = "generator";
/// `architectures` of the discriminator's `config.json`.
pub const HF_DISCRIMINATOR_ARCHITECTURE: &str = "ElectraForPreTraining";
/// `architectures` of the generator's `config.json`.
pub const HF_GENERATOR_ARCHITECTURE: &str = "ElectraForMaskedLM";
/// The weights file of a Hugging Face model folder.
pub const HF_WEIGHTS_FILE: &str = "model.safetensors";
/// The config file of a Hugging Face model folder.
pub const HF_CONFIG_FILE: &str = "config.json";

/// The `__metadata__` of every safetensors file we write: `{"format": "pt"}`.
pub fn hf_safetensors_metadata() -> BTreeMap<String, String> {
    BTreeMap::from([("format".to_string(), "pt".to_string())])
}

/// Writes one Hugging Face model folder: `config.json` (from `cfg`, with `architectures`
/// `[architecture]`) and `model.safetensors` (`tensors`, metadata `{"format": "pt"}`).
/// Creates `dir` if needed.
pub fn save_hf_model(
    dir: &Path,
    cfg: &ElectraConfig,
    architecture: &str,
    tensors: &[(String, Tensor)],
) -> Result<()> {
    save_hf_folder(dir, &config_json(cfg, architecture), tensors)
}

/// Writes one Hugging Face model folder: `config` as `config.json` and `tensors` as
/// `model.safetensors` (metadata `{"format": "pt"}`). Creates `dir` if needed.
pub fn save_hf_folder(dir: &Path, config: &Value, tensors: &[(String, Tensor)]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(ModelError::io(dir))?;
    write_json(&dir.join(HF_CONFIG_FILE), config)?;
    safetensors::save(
        &dir.join(HF_WEIGHTS_FILE),
        tensors,
        &hf_safetensors_metadata(),
    )
}

/// Exports both models (built in `vs`) as Hugging Face folders `out_dir/discriminator/` (load with
/// `ElectraForPreTraining`, `ElectraModel`, `ElectraForSequenceClassification` ...) and
/// `out_dir/generator/` (`ElectraForMaskedLM`).
///
/// Each folder gets `config.json` (its own sizes) and `model.safetensors` (Hugging Face
/// names, the shared embeddings copied into both files, `generator_lm_head.weight` = the
/// token embeddings, no `position_ids`). With `tokenizer_json`, each folder also gets that
/// `tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json` and, for a
/// WordPiece tokenizer, `vocab.txt` (see [`HfTokenizerFiles`]). The tokenizer is parsed
/// before anything is written.
pub fn export_hf(
    model: &Electra,
    vs: &nn::VarStore,
    out_dir: &Path,
    tokenizer_json: Option<&Path>,
) -> Result<()> {
    let tokenizer = tokenizer_json.map(HfTokenizerFiles::read).transpose()?;
    let folders = [
        (
            HF_DISCRIMINATOR_DIR,
            model.discriminator_config(),
            HF_DISCRIMINATOR_ARCHITECTURE,
            model.hf_discriminator_tensors(vs),
        ),
        (
            HF_GENERATOR_DIR,
            model.generator_config(),
            HF_GENERATOR_ARCHITECTURE,
            model.hf_generator_tensors(vs),
        ),
    ];
    for (name, cfg, architecture, tensors) in folders {
        let dir = out_dir.join(name);
        save_hf_model(&dir, cfg, architecture, &tensors)?;
        if let Some(tokenizer) = &tokenizer {
            tokenizer.write(&dir, cfg.max_position_embeddings)?;
        }
    }
    Ok(())
}

pub(crate) fn write_json(path: &Path, value: &Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| ModelError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    text.push('\n');
    Ok(electra_fsutil::write_atomic(path, text.as_bytes())?)
}

/// The BERT names of the special tokens, in `tokenizer_config.json` key order.
const SPECIAL_TOKENS: [(&str, &str); 5] = [
    ("unk_token", "[UNK]"),
    ("sep_token", "[SEP]"),
    ("pad_token", "[PAD]"),
    ("cls_token", "[CLS]"),
    ("mask_token", "[MASK]"),
];

/// The tokenizer files of a Hugging Face folder, derived from a `tokenizers`
/// `tokenizer.json`:
///
/// - `tokenizer.json`, copied byte for byte;
/// - `vocab.txt`, only for a WordPiece model: `model.vocab` ordered by id, one token a line;
/// - `tokenizer_config.json`: `tokenizer_class` (`ElectraTokenizer` for WordPiece,
///   `PreTrainedTokenizerFast` otherwise), `do_lower_case` (from the normalizer's
///   lowercasing: `BertNormalizer.lowercase`, a `Lowercase` step, also inside a `Sequence`;
///   false when there is none), `model_max_length` (`max_position_embeddings`) and the
///   special tokens;
/// - `special_tokens_map.json`: the special tokens.
///
/// The special tokens are BERT's (`[UNK]`, `[SEP]`, `[PAD]`, `[CLS]`, `[MASK]`; the unknown
/// token as the WordPiece model names it), those present in the vocabulary or the added
/// tokens.
#[derive(Debug, Clone)]
pub struct HfTokenizerFiles {
    tokenizer_json: Vec<u8>,
    vocab_txt: Option<String>,
    do_lower_case: bool,
    special_tokens: Vec<(&'static str, String)>,
}

impl HfTokenizerFiles {
    /// Reads and parses a `tokenizer.json`.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(ModelError::io(path))?;
        Self::parse(bytes, path)
    }

    /// Parses `tokenizer.json` bytes; `path` names the file in errors.
    pub fn parse(tokenizer_json: Vec<u8>, path: &Path) -> Result<Self> {
        let bad = |message: String| ModelError::File {
            path: path.to_path_buf(),
            message,
        };
        let value: Value = serde_json::from_slice(&tokenizer_json)
            .map_err(|e| bad(format!("not a tokenizer.json: {e}")))?;
        let model = &value["model"];
        let is_wordpiece = model["type"].as_str() == Some("WordPiece");
        let vocab_txt = if is_wordpiece {
            let vocab = model["vocab"]
                .as_object()
                .ok_or_else(|| bad("WordPiece model without a `vocab` object".into()))?;
            let mut by_id = Vec::with_capacity(vocab.len());
            for (token, id) in vocab {
                let id = id
                    .as_u64()
                    .ok_or_else(|| bad(format!("vocab entry {token:?} has no integer id")))?;
                if token.contains(['\n', '\r']) {
                    return Err(bad(format!(
                        "vocab token {token:?} contains a line break and cannot go in vocab.txt"
                    )));
                }
                by_id.push((id, token.as_str()));
            }
            by_id.sort_unstable();
            for (expected, (id, token)) in by_id.iter().enumerate() {
                if *id != expected as u64 {
                    return Err(bad(format!(
                        "vocab ids are not 0..{}: {token:?} has id {id}, expected {expected}",
                        by_id.len()
                    )));
                }
            }
            let mut text = String::new();
            for (_, token) in by_id {
                text.push_str(token);
                text.push('\n');
            }
            Some(text)
        } else {
            None
        };
        let known = |token: &str| {
            model["vocab"].get(token).is_some()
                || value["added_tokens"]
                    .as_array()
                    .is_some_and(|added| added.iter().any(|t| t["content"] == token))
        };
        let mut special_tokens = Vec::new();
        for (key, default) in SPECIAL_TOKENS {
            let token = match (key, model["unk_token"].as_str()) {
                ("unk_token", Some(unk)) => unk,
                _ => default,
            };
            if known(token) {
                special_tokens.push((key, token.to_string()));
            }
        }
        Ok(HfTokenizerFiles {
            tokenizer_json,
            vocab_txt,
            do_lower_case: lowercases(&value["normalizer"]),
            special_tokens,
        })
    }

    /// `vocab.txt`, for a WordPiece tokenizer.
    pub fn vocab_txt(&self) -> Option<&str> {
        self.vocab_txt.as_deref()
    }

    /// Whether the normalizer lowercases.
    pub fn do_lower_case(&self) -> bool {
        self.do_lower_case
    }

    /// `tokenizer_config.json` for a model whose positions stop at `model_max_length`.
    pub fn tokenizer_config(&self, model_max_length: i64) -> Value {
        let class = if self.vocab_txt.is_some() {
            "ElectraTokenizer"
        } else {
            "PreTrainedTokenizerFast"
        };
        let mut config = Map::new();
        config.insert("tokenizer_class".into(), json!(class));
        config.insert("do_lower_case".into(), json!(self.do_lower_case));
        config.insert("model_max_length".into(), json!(model_max_length));
        for (key, token) in &self.special_tokens {
            config.insert((*key).into(), json!(token));
        }
        Value::Object(config)
    }

    /// `special_tokens_map.json`.
    pub fn special_tokens_map(&self) -> Value {
        Value::Object(
            self.special_tokens
                .iter()
                .map(|(key, token)| ((*key).to_string(), json!(token)))
                .collect(),
        )
    }

    /// Writes the tokenizer files into `dir`.
    pub fn write(&self, dir: &Path, model_max_length: i64) -> Result<()> {
        electra_fsutil::write_atomic(&dir.join("tokenizer.json"), &self.tokenizer_json)?;
        if let Some(vocab) = &self.vocab_txt {
            electra_fsutil::write_atomic(&dir.join("vocab.txt"), vocab.as_bytes())?;
        }
        write_json(
            &dir.join("tokenizer_config.json"),
            &self.tokenizer_config(model_max_length),
        )?;
        write_json(
            &dir.join("special_tokens_map.json"),
            &self.special_tokens_map(),
        )
    }
}

/// Whether a `tokenizers` normalizer lowercases its input.
fn lowercases(normalizer: &Value) -> bool {
    match normalizer["type"].as_str() {
        Some("BertNormalizer") => normalizer["lowercase"].as_bool().unwrap_or(true),
        Some("Lowercase") => true,
        Some("Sequence") => normalizer["normalizers"]
            .as_array()
            .is_some_and(|steps| steps.iter().any(lowercases)),
        _ => false,
    }
}
