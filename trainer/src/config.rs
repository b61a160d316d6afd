//! The run configuration: one TOML file with `[model]`, `[data]` and `[train]` sections,
//! `--set section.key=value` overrides, unknown keys rejected with their name.
//!
//! Relative paths in `[data]` (`files`, `tokenizer`, the `files` of `[[data.sources]]`) are resolved against the directory of
//! the config file, so `configs/tiny.toml` can name `../data/corpus/*.zst` and work from
//! any working directory. The resolved config (absolute paths, every default filled in) is
//! written to `RUN_DIR/config.toml`.

use std::path::{Path, PathBuf};

use electra_model::{ElectraConfig, Sampler};
use electra_pipeline::DataConfig;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// Defaults: the ELECTRA-Small values from the paper (ELECTRA.md).
pub const DEFAULT_SEED: u64 = 42;
pub const DEFAULT_LEARNING_RATE: f64 = 5e-4;
pub const DEFAULT_WARMUP_STEPS: u64 = 10_000;
pub const DEFAULT_TOTAL_STEPS: u64 = 1_000_000;
pub const DEFAULT_WEIGHT_DECAY: f64 = 0.01;
pub const DEFAULT_ADAM_BETA1: f64 = 0.9;
pub const DEFAULT_ADAM_BETA2: f64 = 0.999;
pub const DEFAULT_ADAM_EPS: f64 = 1e-6;
pub const DEFAULT_CLIP_GRAD_NORM: f64 = 1.0;
pub const DEFAULT_LOG_EVERY: u64 = 100;

/// The whole experiment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Model sizes and the objective.
    #[serde(default)]
    pub model: ModelSection,
    /// Corpus, tokenizer, packing, masking, loader.
    #[serde(default)]
    pub data: DataConfig,
    /// Optimizer, schedule, seed, logging.
    #[serde(default)]
    pub train: TrainSection,
    /// When checkpoints are written and how many are kept.
    #[serde(default)]
    pub checkpoint: CheckpointSection,
    /// Data-parallel training: data slices, collective backend, timeouts.
    #[serde(default)]
    pub dist: DistSection,
}

/// Which collective implementation a data-parallel run uses.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DistBackend {
    /// NCCL on CUDA devices, the TCPStore fallback on CPU.
    #[default]
    Auto,
    /// c10d's ProcessGroupNCCL (CUDA only): the production path.
    Nccl,
    /// Everything through c10d's TCPStore on rank 0: for tests and CPU-only clusters;
    /// slow (every all-reduce moves every rank's buffer through one server).
    Store,
}

/// The kind gradients are all-reduced in.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GradReduceKind {
    /// The gradients' own kind (float32).
    #[default]
    Fp32,
    /// bfloat16: half the traffic, rounding the summed gradient to 8 bits of mantissa.
    Bf16,
}

/// `[dist]`: data-parallel training (see the README's "Distributed training"). Without
/// torchrun's or Slurm's variables a run is one process and only `data_slices` matters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DistSection {
    /// The document stream is dealt into this many disjoint slices, each read by its own
    /// loader with `batch_size / data_slices` examples per step; the global batch is the
    /// slices' batches in slice order, and rank `r` of `W` reads slices `r, r + W, ...`.
    /// So a run is the same examples in the same order on any world size up to
    /// `data_slices`, and may resume on another one. Part of the experiment (default 1).
    pub data_slices: usize,
    /// Collective implementation (default `auto`).
    pub backend: DistBackend,
    /// A collective or rendezvous that waits longer than this fails the run with an
    /// error naming the peer (default 600).
    pub timeout_seconds: u64,
    /// Gradients are all-reduced in flat buckets of about this many MiB (default 25).
    pub bucket_mb: usize,
    /// The kind gradients are all-reduced in (default `fp32`).
    pub grad_reduce: GradReduceKind,
}

impl Default for DistSection {
    fn default() -> Self {
        Self {
            data_slices: 1,
            backend: DistBackend::Auto,
            timeout_seconds: 600,
            bucket_mb: 25,
            grad_reduce: GradReduceKind::Fp32,
        }
    }
}

/// `[checkpoint]`: see [`crate::checkpoint`] for what a checkpoint holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSection {
    /// Write a checkpoint every this many steps; 0 writes one only at the end of the run
    /// and when it is stopped by a signal (default 1000).
    pub every_steps: u64,
    /// Keep the newest this many checkpoints (default 3).
    pub keep: usize,
}

impl Default for CheckpointSection {
    fn default() -> Self {
        Self {
            every_steps: 1000,
            keep: 3,
        }
    }
}

/// The training objective.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Generator + discriminator (replaced token detection).
    #[default]
    Electra,
    /// Masked language modelling (BERT/RoBERTa): one encoder predicts the masked tokens;
    /// no generator. Pair it with `data.mask_strategy = "bert"` (80/10/10).
    Mlm,
}

/// `[model]`: the discriminator's sizes (Hugging Face names), the generator's width, the
/// loss weights. Defaults: ELECTRA-Small.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// Training objective (default `electra`).
    pub objective: Objective,
    /// Factorized embedding size (default 128).
    pub embedding_size: i64,
    /// Discriminator width (default 256).
    pub hidden_size: i64,
    /// Layers, same for generator and discriminator (default 12).
    pub num_hidden_layers: i64,
    /// Attention heads of the discriminator (default 4).
    pub num_attention_heads: i64,
    /// FFN width of the discriminator (default 1024).
    pub intermediate_size: i64,
    /// Generator width as a fraction of the discriminator's (default 0.25).
    pub generator_fraction: f64,
    /// Position embeddings (default 512).
    pub max_position_embeddings: i64,
    /// Segment types (default 2).
    pub type_vocab_size: i64,
    /// Dropout after embeddings and in every block (default 0.1).
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities (default 0.1).
    pub attention_probs_dropout_prob: f64,
    /// LayerNorm epsilon (default 1e-12).
    pub layer_norm_eps: f64,
    /// Gumbel sampling temperature (default 1.0).
    pub temperature: f64,
    /// Never sample the original token (default false).
    pub disallow_correct: bool,
    /// How replacements are drawn: `gumbel` (default, the reference's Gumbel-max) or
    /// `inverse_cdf` (one random number per masked position instead of one per vocabulary
    /// entry); both sample exactly `softmax(logits / temperature)`.
    pub sampler: Sampler,
    /// Weight of the generator's MLM loss (default 1.0).
    pub gen_weight: f64,
    /// Weight of the discriminator's loss (default 50.0).
    pub disc_weight: f64,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            objective: Objective::Electra,
            embedding_size: 128,
            hidden_size: 256,
            num_hidden_layers: 12,
            num_attention_heads: 4,
            intermediate_size: 1024,
            generator_fraction: 0.25,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            layer_norm_eps: 1e-12,
            temperature: 1.0,
            disallow_correct: false,
            sampler: Sampler::Gumbel,
            gen_weight: 1.0,
            disc_weight: 50.0,
        }
    }
}

impl ModelSection {
    /// The discriminator's Hugging Face config for a vocabulary of `vocab_size` tokens.
    pub fn discriminator(&self, vocab_size: i64, pad_token_id: i64) -> ElectraConfig {
        ElectraConfig {
            vocab_size,
            embedding_size: self.embedding_size,
            hidden_size: self.hidden_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            intermediate_size: self.intermediate_size,
            hidden_dropout_prob: self.hidden_dropout_prob,
            attention_probs_dropout_prob: self.attention_probs_dropout_prob,
            max_position_embeddings: self.max_position_embeddings,
            type_vocab_size: self.type_vocab_size,
            layer_norm_eps: self.layer_norm_eps,
            pad_token_id,
            ..ElectraConfig::small()
        }
    }
}

/// `[train]`: optimizer, schedule, seed and logging. Defaults: ELECTRA-Small.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// Seed of every random choice: init, packing, masks, sampling (default 42).
    pub seed: u64,
    /// Peak learning rate (default 5e-4).
    pub learning_rate: f64,
    /// Linear warmup steps (default 10000).
    pub warmup_steps: u64,
    /// Length of the schedule: the learning rate reaches 0 here (default 1000000).
    pub total_steps: u64,
    /// Stop after this many steps; defaults to `total_steps`. `--max-steps` overrides.
    pub max_steps: Option<u64>,
    /// Decoupled weight decay, not on LayerNorm weights or biases (default 0.01).
    pub weight_decay: f64,
    /// Adam beta1 (default 0.9).
    pub adam_beta1: f64,
    /// Adam beta2 (default 0.999).
    pub adam_beta2: f64,
    /// Adam epsilon (default 1e-6).
    pub adam_eps: f64,
    /// Adam bias correction; the reference has none (default false).
    pub bias_correction: bool,
    /// Clip gradients to this global L2 norm; 0 disables (default 1.0).
    pub clip_grad_norm: f64,
    /// Append a metrics row every this many steps (default 100).
    pub log_every: u64,
    /// A step whose loss or gradient norm is not finite makes no update and is counted;
    /// after this many such steps in a row the run stops with an error (default 10).
    pub max_bad_steps: u64,
    /// Arithmetic of the forward pass (default `fp32`).
    pub precision: Precision,
}

/// The forward pass's arithmetic.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// float32 throughout.
    #[default]
    Fp32,
    /// bfloat16 autocast (matrix products and attention in bfloat16, losses, softmax and
    /// LayerNorm in float32) with float32 master weights and optimizer state; no loss
    /// scaling is needed (bfloat16 has float32's range).
    Bf16,
}

impl Default for TrainSection {
    fn default() -> Self {
        Self {
            seed: DEFAULT_SEED,
            learning_rate: DEFAULT_LEARNING_RATE,
            warmup_steps: DEFAULT_WARMUP_STEPS,
            total_steps: DEFAULT_TOTAL_STEPS,
            max_steps: None,
            weight_decay: DEFAULT_WEIGHT_DECAY,
            adam_beta1: DEFAULT_ADAM_BETA1,
            adam_beta2: DEFAULT_ADAM_BETA2,
            adam_eps: DEFAULT_ADAM_EPS,
            bias_correction: false,
            clip_grad_norm: DEFAULT_CLIP_GRAD_NORM,
            log_every: DEFAULT_LOG_EVERY,
            max_bad_steps: 10,
            precision: Precision::Fp32,
        }
    }
}

impl TrainSection {
    /// Steps this run trains for.
    pub fn steps(&self) -> u64 {
        self.max_steps.unwrap_or(self.total_steps)
    }
}

impl RunConfig {
    /// Reads `path`, applies `overrides` (`section.key=value`, the value parsed as a TOML
    /// literal, else taken as a string), and resolves relative data paths against the
    /// config file's directory.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::from_toml_str(&text, overrides, &path.display().to_string())?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        config.resolve_paths(&base);
        Ok(config)
    }

    /// Parses a config from TOML text with overrides; `origin` names it in errors.
    pub fn from_toml_str(text: &str, overrides: &[String], origin: &str) -> Result<Self> {
        let mut value: toml::Table = toml::from_str(text).map_err(|e| TrainError::Config {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        for item in overrides {
            apply_override(&mut value, item)?;
        }
        let config: RunConfig =
            toml::Value::Table(value)
                .try_into()
                .map_err(|e: toml::de::Error| TrainError::Config {
                    origin: origin.to_string(),
                    message: e.to_string(),
                })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks combinations serde cannot.
    pub fn validate(&self) -> Result<()> {
        self.data.validate()?;
        let invalid = |field: &str, reason: String| TrainError::InvalidConfig {
            field: field.to_string(),
            reason,
        };
        let m = &self.model;
        if m.hidden_size <= 0
            || m.num_attention_heads <= 0
            || m.hidden_size % m.num_attention_heads != 0
        {
            return Err(invalid(
                "model.hidden_size",
                format!(
                    "{} must be a positive multiple of model.num_attention_heads ({})",
                    m.hidden_size, m.num_attention_heads
                ),
            ));
        }
        if !(m.generator_fraction > 0.0 && m.generator_fraction <= 1.0) {
            return Err(invalid(
                "model.generator_fraction",
                format!("{} is not in (0, 1]", m.generator_fraction),
            ));
        }
        if self.data.max_seq_len as i64 > m.max_position_embeddings {
            return Err(invalid(
                "data.max_seq_len",
                format!(
                    "{} exceeds model.max_position_embeddings ({})",
                    self.data.max_seq_len, m.max_position_embeddings
                ),
            ));
        }
        let t = &self.train;
        if t.total_steps == 0 {
            return Err(invalid("train.total_steps", "must be at least 1".into()));
        }
        if t.log_every == 0 {
            return Err(invalid("train.log_every", "must be at least 1".into()));
        }
        if t.max_bad_steps == 0 {
            return Err(invalid("train.max_bad_steps", "must be at least 1".into()));
        }
        let d = &self.dist;
        if d.data_slices == 0 || !self.data.batch_size.is_multiple_of(d.data_slices) {
            return Err(invalid(
                "dist.data_slices",
                format!(
                    "{} must be at least 1 and divide data.batch_size ({})",
                    d.data_slices, self.data.batch_size
                ),
            ));
        }
        if d.timeout_seconds == 0 {
            return Err(invalid("dist.timeout_seconds", "must be at least 1".into()));
        }
        if d.bucket_mb == 0 {
            return Err(invalid("dist.bucket_mb", "must be at least 1".into()));
        }
        if self.checkpoint.keep == 0 {
            return Err(invalid("checkpoint.keep", "must be at least 1".into()));
        }
        if !(t.learning_rate.is_finite() && t.learning_rate >= 0.0) {
            return Err(invalid(
                "train.learning_rate",
                format!("{} is not a finite non-negative number", t.learning_rate),
            ));
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &str| -> String {
            if p.is_empty() || Path::new(p).is_absolute() {
                p.to_string()
            } else {
                base.join(p).display().to_string()
            }
        };
        self.data.files = self.data.files.iter().map(|f| resolve(f)).collect();
        for source in &mut self.data.sources {
            source.files = source.files.iter().map(|f| resolve(f)).collect();
        }
        self.data.tokenizer = resolve(&self.data.tokenizer);
    }

    /// The dotted keys where `self` and `other` differ, ignoring what a resumed run may
    /// change (see [`TrainError::ResumeMismatch`]).
    pub fn resume_differences(&self, other: &RunConfig) -> Result<Vec<String>> {
        let mut a = self.clone();
        let b = other;
        a.train.max_steps = b.train.max_steps;
        a.train.log_every = b.train.log_every;
        a.train.max_bad_steps = b.train.max_bad_steps;
        a.data.threads = b.data.threads;
        a.data.prefetch = b.data.prefetch;
        a.data.chunk_bytes = b.data.chunk_bytes;
        a.data.verify_shards = b.data.verify_shards;
        a.data.fast_tokenizer = b.data.fast_tokenizer;
        a.checkpoint = b.checkpoint.clone();
        a.dist = DistSection {
            data_slices: a.dist.data_slices,
            ..b.dist.clone()
        };
        let to_value = |c: &RunConfig| {
            toml::Value::try_from(c).map_err(|e| TrainError::Config {
                origin: "resolved config".into(),
                message: e.to_string(),
            })
        };
        let mut keys = Vec::new();
        diff_values("", &to_value(&a)?, &to_value(b)?, &mut keys);
        Ok(keys)
    }

    /// The config as TOML, every default written out.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| TrainError::Config {
            origin: "resolved config".into(),
            message: e.to_string(),
        })
    }
}

/// Collects the dotted keys where two TOML values differ.
fn diff_values(prefix: &str, a: &toml::Value, b: &toml::Value, out: &mut Vec<String>) {
    match (a, b) {
        (toml::Value::Table(x), toml::Value::Table(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                match (x.get(key), y.get(key)) {
                    (Some(va), Some(vb)) => diff_values(&name, va, vb, out),
                    _ => out.push(name),
                }
            }
        }
        _ if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

/// Applies one `section.key=value` override to a parsed TOML table.
fn apply_override(table: &mut toml::Table, item: &str) -> Result<()> {
    let bad = |message: String| TrainError::Config {
        origin: format!("--set {item}"),
        message,
    };
    let (key, raw) = item
        .split_once('=')
        .ok_or_else(|| bad("expected section.key=value".into()))?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(bad(format!("`{key}` is not a dotted key")));
    }
    let value = parse_literal(raw.trim());
    let (last, sections) = parts.split_last().ok_or_else(|| bad("empty key".into()))?;
    let mut current = table;
    for section in sections {
        let entry = current
            .entry((*section).to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| bad(format!("`{section}` is not a section")))?;
    }
    current.insert((*last).to_string(), value);
    Ok(())
}

/// A TOML literal (`3`, `1e-4`, `true`, `"x"`, `["a", "b"]`), else the raw text as a string.
fn parse_literal(raw: &str) -> toml::Value {
    let wrapped = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&wrapped) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_errors_that_name_the_key() {
        let err = RunConfig::from_toml_str("[model]\nhiden_size = 3\n", &[], "x.toml").unwrap_err();
        assert!(err.to_string().contains("hiden_size"), "{err}");
        let err =
            RunConfig::from_toml_str("", &["train.lerning_rate=1".into()], "x.toml").unwrap_err();
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
        resumed.data.fast_tokenizer = false;
        assert!(saved.resume_differences(&resumed).unwrap().is_empty());
        resumed.data.tokenizer = "other.json".into();
        assert_eq!(
            saved.resume_differences(&resumed).unwrap(),
            vec!["data.tokenizer".to_string()]
        );
    }
}
