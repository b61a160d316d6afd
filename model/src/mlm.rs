//! Masked language modelling (BERT/RoBERTa style) on the same architecture and pipeline:
//! one encoder of the discriminator's size with the generator's head (dense, activation,
//! LayerNorm, output tied to the token embeddings), predicting the original tokens at the
//! positions the pipeline masked (use `data.mask_strategy = "bert"` for 80/10/10). No
//! generator, no sampling, no replaced-token detection.
//!
//! Its Hugging Face form is `ElectraForMaskedLM` (`electra.*`, `generator_predictions.*`,
//! `generator_lm_head.*`): the BERT recipe on ELECTRA's layout, loadable with
//! `ElectraForMaskedLM.from_pretrained` and, as an encoder, by `AutoModel` and
//! `ElectraForSequenceClassification`.

use std::collections::BTreeSet;
use std::path::Path;

use tch::{nn, Kind, Reduction, Tensor};

use crate::config::ElectraConfig;
use crate::electra::{ElectraInput, ElectraOutput};
use crate::encoder::{ElectraModel, ENCODER_PREFIX};
use crate::error::Result;
use crate::heads::{GeneratorHead, LM_HEAD, LM_HEAD_WEIGHT};
use crate::hf_import::{copy_weights, read_config, read_hf_weights};
use crate::params::{insert_tied, prefix_of, variables_under};
use crate::stats::{STATS_LEN, STAT_GEN_CORRECT, STAT_MASKED, STAT_REAL};

/// Variable prefix of the masked-LM model.
pub const MLM_PREFIX: &str = "mlm";

/// A masked language model: encoder + tied LM head.
#[derive(Debug)]
pub struct MaskedLm {
    encoder: ElectraModel,
    head: GeneratorHead,
    config: ElectraConfig,
    /// The `VarStore` prefix of its variables (`"mlm."` at the root).
    root: String,
}

impl MaskedLm {
    /// Creates the model under `p / "mlm"`.
    pub fn new(p: &nn::Path, config: &ElectraConfig) -> Result<Self> {
        config.validate()?;
        let root = p / MLM_PREFIX;
        let encoder = ElectraModel::new(&(&root / ENCODER_PREFIX), config)?;
        let head = GeneratorHead::new(&root, config, encoder.embeddings().word_embeddings())?;
        Ok(Self {
            encoder,
            head,
            config: config.clone(),
            root: prefix_of(&root),
        })
    }

    /// Builds the model at the root of `vs` from an `ElectraForMaskedLM` Hugging Face
    /// folder.
    pub fn from_hf(vs: &nn::VarStore, dir: &Path) -> Result<Self> {
        let config = read_config(dir, true)?;
        let model = Self::new(&vs.root(), &config)?;
        model.load_hf_weights(vs, dir)?;
        Ok(model)
    }

    /// Copies an `ElectraForMaskedLM` folder's weights into this model's variables (in
    /// `vs`): names and shapes checked; the LM head's weight must equal the token
    /// embeddings.
    pub fn load_hf_weights(&self, vs: &nn::VarStore, dir: &Path) -> Result<()> {
        let (path, loaded) = read_hf_weights(dir)?;
        let tied: BTreeSet<&str> = [LM_HEAD_WEIGHT].into_iter().collect();
        copy_weights(
            &path,
            &self.hf_tensors(vs),
            &loaded,
            &[LM_HEAD_WEIGHT],
            &tied,
        )
    }

    /// The config.
    pub fn config(&self) -> &ElectraConfig {
        &self.config
    }

    /// The encoder.
    pub fn encoder(&self) -> &ElectraModel {
        &self.encoder
    }

    /// The tensors with `ElectraForMaskedLM` names: the variables of `vs` under `mlm.` and
    /// the tied `generator_lm_head.weight` (the token embeddings), in module order;
    /// detached views of the variables.
    pub fn hf_tensors(&self, vs: &nn::VarStore) -> Vec<(String, Tensor)> {
        let mut named = variables_under(vs, &self.root);
        let word = self.encoder.embeddings().word_embeddings().detach();
        insert_tied(
            &mut named,
            &format!("{LM_HEAD}."),
            LM_HEAD_WEIGHT.into(),
            word,
        );
        named
    }

    /// One training forward pass: logits at the masked positions and their cross-entropy.
    /// The output's discriminator fields are empty and its loss is the MLM loss; its
    /// statistics count masked positions, correct predictions and real tokens.
    pub fn forward_t(&self, input: &ElectraInput, train: bool) -> Result<ElectraOutput> {
        let (batch, seq, _masked) = input.check()?;
        let encoder_input = input.encoder_input();
        let hidden = self.encoder.forward_t(&encoder_input, train)?;
        let masked_hidden = hidden
            .reshape([batch * seq, self.config.hidden_size])
            .f_index_select(0, input.masked_positions)?;
        let logits = self.head.forward_t(&masked_hidden, train);
        let loss = logits
            .f_to_kind(Kind::Float)?
            .f_log_softmax(-1, Kind::Float)?
            .f_nll_loss::<Tensor>(input.masked_labels, None, Reduction::Mean, -100)?;
        let stats = tch::no_grad(|| {
            let mut counts: Vec<Tensor> = (0..STATS_LEN)
                .map(|_| Tensor::zeros([], (Kind::Float, logits.device())))
                .collect();
            counts[STAT_MASKED] = input.masked_labels.ones_like().sum(Kind::Float);
            counts[STAT_GEN_CORRECT] = logits
                .argmax(-1, false)
                .eq_tensor(input.masked_labels)
                .sum(Kind::Float);
            counts[STAT_REAL] = input.attention_mask.sum(Kind::Float);
            Tensor::stack(&counts, 0)
        });
        let device = logits.device();
        let empty = || Tensor::zeros([0], (Kind::Float, device));
        Ok(ElectraOutput {
            disc_loss: Tensor::zeros([], (Kind::Float, device)),
            gen_loss: loss.shallow_clone(),
            loss,
            disc_logits: empty(),
            disc_labels: empty(),
            gen_logits: logits,
            sampled: empty().to_kind(Kind::Int64),
            stats,
        })
    }
}
