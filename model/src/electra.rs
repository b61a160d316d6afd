//! [`Electra`]: generator and discriminator in one `VarStore`, sharing embeddings, and the
//! replaced-token-detection training step's forward pass.

use tch::{nn, Kind, Reduction, Tensor};

use crate::config::ElectraConfig;
use crate::encoder::{ElectraModel, EncoderInput, ENCODER_PREFIX};
use crate::error::{check_int64, check_shape, ModelError, Result};
use crate::heads::{DiscriminatorHead, GeneratorHead};
use crate::params::prefix_of;
use crate::sampling::{sample_with, Sampler};
use crate::stats::compute_stats;

/// Default sampling temperature of the generator.
pub const DEFAULT_TEMPERATURE: f64 = 1.0;
/// Default weight of the generator's MLM loss.
pub const DEFAULT_GEN_WEIGHT: f64 = 1.0;
/// Default weight of the discriminator's loss (the paper's lambda).
pub const DEFAULT_DISC_WEIGHT: f64 = 50.0;
/// Path component of the discriminator's variables.
pub const DISCRIMINATOR_PREFIX: &str = "discriminator";
/// Path component of the generator's own variables.
pub const GENERATOR_PREFIX: &str = "generator";

/// Options of one forward pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ElectraOptions {
    /// Temperature of the generator's sampling distribution; default 1.0.
    pub temperature: f64,
    /// Never sample the original token (off in the paper); default false.
    pub disallow_correct: bool,
    /// Weight of the generator loss; default 1.0.
    pub gen_weight: f64,
    /// Weight of the discriminator loss; default 50.0.
    pub disc_weight: f64,
    /// How replacements are drawn (same distribution either way); default Gumbel-max.
    pub sampler: Sampler,
}

impl Default for ElectraOptions {
    fn default() -> Self {
        ElectraOptions {
            temperature: DEFAULT_TEMPERATURE,
            disallow_correct: false,
            gen_weight: DEFAULT_GEN_WEIGHT,
            disc_weight: DEFAULT_DISC_WEIGHT,
            sampler: Sampler::default(),
        }
    }
}

impl ElectraOptions {
    /// Checks that the temperature is positive and the weights finite and non-negative.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(ModelError::Option {
                option: "temperature",
                value: self.temperature.to_string(),
                reason: "must be positive and finite",
            });
        }
        for (option, value) in [
            ("gen_weight", self.gen_weight),
            ("disc_weight", self.disc_weight),
        ] {
            if !(value >= 0.0 && value.is_finite()) {
                return Err(ModelError::Option {
                    option,
                    value: value.to_string(),
                    reason: "must be finite and non-negative",
                });
            }
        }
        Ok(())
    }
}

/// One masked batch.
#[derive(Debug, Clone, Copy)]
pub struct ElectraInput<'a> {
    /// `[batch, seq]` Int64, the masked token ids (with `[MASK]` or kept tokens at the
    /// masked positions).
    pub input_ids: &'a Tensor,
    /// `[batch, seq]` Int64 segment ids.
    pub segment_ids: &'a Tensor,
    /// `[batch, seq]` Bool or integer, 1/true for real tokens, 0 for padding.
    pub attention_mask: &'a Tensor,
    /// `[m]` Int64 flat indices `b * seq + position` of the masked positions, `m >= 1`.
    pub masked_positions: &'a Tensor,
    /// `[m]` Int64 original token ids at the masked positions.
    pub masked_labels: &'a Tensor,
}

impl ElectraInput<'_> {
    /// The encoder input (ids, segments, mask).
    pub fn encoder_input(&self) -> EncoderInput<'_> {
        EncoderInput {
            input_ids: self.input_ids,
            segment_ids: self.segment_ids,
            attention_mask: self.attention_mask,
        }
    }

    /// Checks shapes and kinds and returns `(batch, seq, m)`.
    pub fn check(&self) -> Result<(i64, i64, i64)> {
        let (batch, seq) = self.encoder_input().check()?;
        check_int64("input_ids", self.input_ids)?;
        let found = self.masked_positions.size();
        let masked = match found.as_slice() {
            &[masked] if masked >= 1 => masked,
            _ => {
                return Err(ModelError::Shape {
                    what: "masked_positions",
                    expected: "[m] with m >= 1".to_string(),
                    found,
                })
            }
        };
        check_int64("masked_positions", self.masked_positions)?;
        check_shape("masked_labels", self.masked_labels, &[masked])?;
        check_int64("masked_labels", self.masked_labels)?;
        Ok((batch, seq, masked))
    }
}

/// What one forward pass returns. Losses are float32 scalars.
#[derive(Debug)]
pub struct ElectraOutput {
    /// `gen_weight * gen_loss + disc_weight * disc_loss`.
    pub loss: Tensor,
    /// Mean cross-entropy of the generator at the masked positions.
    pub gen_loss: Tensor,
    /// Binary cross-entropy of the discriminator, averaged over real tokens.
    pub disc_loss: Tensor,
    /// `[batch, seq]` discriminator logits (positive = replaced).
    pub disc_logits: Tensor,
    /// `[batch, seq]` float32, 1 where the corrupted token differs from the original.
    pub disc_labels: Tensor,
    /// `[m, vocab]` generator logits at the masked positions.
    pub gen_logits: Tensor,
    /// `[m]` Int64 sampled tokens.
    pub sampled: Tensor,
    /// `[STATS_LEN]` float32 counts on the device, indexed by the `STAT_*` constants; read
    /// with [`ElectraStats::from_tensor`](crate::ElectraStats::from_tensor).
    pub stats: Tensor,
}

/// ELECTRA pre-training: a generator (small masked language model) and a discriminator
/// (replaced-token detection), sharing the token, position and segment embeddings and the
/// embedding LayerNorm; the generator's output layer is tied to the token embeddings.
///
/// Variables (Hugging Face names under the two prefixes):
/// `discriminator.electra.*`, `discriminator.discriminator_predictions.*`,
/// `generator.electra.{embeddings_project,encoder}.*`, `generator.generator_predictions.*`,
/// `generator.generator_lm_head.bias`.
#[derive(Debug)]
pub struct Electra {
    discriminator: ElectraModel,
    discriminator_head: DiscriminatorHead,
    generator: ElectraModel,
    generator_head: GeneratorHead,
    discriminator_config: ElectraConfig,
    generator_config: ElectraConfig,
    /// The `VarStore` prefix both models were created under (`""` at the root).
    root: String,
}

impl Electra {
    /// Creates both models under `p / "discriminator"` and `p / "generator"`. The configs
    /// must agree on `vocab_size`, `embedding_size`, `max_position_embeddings`,
    /// `type_vocab_size` and `pad_token_id`.
    pub fn new(p: &nn::Path, disc: &ElectraConfig, gen: &ElectraConfig) -> Result<Self> {
        disc.validate()?;
        gen.validate()?;
        for (field, discriminator, generator) in [
            ("vocab_size", disc.vocab_size, gen.vocab_size),
            ("embedding_size", disc.embedding_size, gen.embedding_size),
            (
                "max_position_embeddings",
                disc.max_position_embeddings,
                gen.max_position_embeddings,
            ),
            ("type_vocab_size", disc.type_vocab_size, gen.type_vocab_size),
            ("pad_token_id", disc.pad_token_id, gen.pad_token_id),
        ] {
            if discriminator != generator {
                return Err(ModelError::SharedConfigMismatch {
                    field,
                    discriminator,
                    generator,
                });
            }
        }
        let disc_root = p / DISCRIMINATOR_PREFIX;
        let discriminator = ElectraModel::new(&(&disc_root / ENCODER_PREFIX), disc)?;
        let discriminator_head =
            DiscriminatorHead::new(&(&disc_root / "discriminator_predictions"), disc);
        let gen_root = p / GENERATOR_PREFIX;
        let shared = discriminator.embeddings().shared(gen.hidden_dropout_prob);
        let generator = ElectraModel::with_embeddings(&(&gen_root / ENCODER_PREFIX), gen, shared)?;
        let generator_head =
            GeneratorHead::new(&gen_root, gen, discriminator.embeddings().word_embeddings())?;
        Ok(Electra {
            discriminator,
            discriminator_head,
            generator,
            generator_head,
            discriminator_config: disc.clone(),
            generator_config: gen.clone(),
            root: prefix_of(p),
        })
    }

    /// The discriminator's config.
    pub fn discriminator_config(&self) -> &ElectraConfig {
        &self.discriminator_config
    }

    /// The generator's config.
    pub fn generator_config(&self) -> &ElectraConfig {
        &self.generator_config
    }

    /// The `VarStore` name prefix of both models (`""` when built at the root).
    pub fn var_prefix(&self) -> &str {
        &self.root
    }

    /// The discriminator's encoder (the model kept after pre-training).
    pub fn discriminator(&self) -> &ElectraModel {
        &self.discriminator
    }

    /// The discriminator's head.
    pub fn discriminator_head(&self) -> &DiscriminatorHead {
        &self.discriminator_head
    }

    /// The generator's encoder (its embeddings are the discriminator's).
    pub fn generator(&self) -> &ElectraModel {
        &self.generator
    }

    /// The generator's head.
    pub fn generator_head(&self) -> &GeneratorHead {
        &self.generator_head
    }

    /// Discriminator logits for every token.
    ///
    /// # Shapes
    /// each input tensor `[batch, seq]` -> `[batch, seq]`.
    pub fn discriminator_logits(&self, input: &EncoderInput, train: bool) -> Result<Tensor> {
        let hidden = self.discriminator.forward_t(input, train)?;
        Ok(self.discriminator_head.forward_t(&hidden, train))
    }

    /// Generator logits at the given flat positions only.
    ///
    /// # Shapes
    /// each input tensor `[batch, seq]`, `masked_positions` `[m]` Int64 (`b * seq + pos`)
    /// -> `[m, vocab]`.
    pub fn generator_logits(
        &self,
        input: &EncoderInput,
        masked_positions: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        let (batch, seq) = input.check()?;
        check_int64("masked_positions", masked_positions)?;
        let hidden = self.generator.forward_t(input, train)?;
        // [b, t, H_gen] -> [b * t, H_gen] -> [m, H_gen]
        let masked_hidden = hidden
            .reshape([batch * seq, self.generator_config.hidden_size])
            .f_index_select(0, masked_positions)?;
        Ok(self.generator_head.forward_t(&masked_hidden, train))
    }

    /// One pre-training forward pass: generator at the masked positions, sampling,
    /// corruption, discriminator on every token, losses and statistics.
    ///
    /// # Shapes
    /// See [`ElectraInput`] and [`ElectraOutput`].
    pub fn forward_t(
        &self,
        input: &ElectraInput,
        opts: &ElectraOptions,
        train: bool,
    ) -> Result<ElectraOutput> {
        self.forward_with(input, opts, train, None)
    }

    /// [`Electra::forward_t`] with the inverse-CDF sampler's uniform numbers given, one per
    /// masked position (`[m]` Float64 in `[0, 1)`, see
    /// [`hashed_uniforms`](crate::sampling::hashed_uniforms)); `None` draws them from
    /// torch's generator. The Gumbel sampler ignores them.
    pub fn forward_with(
        &self,
        input: &ElectraInput,
        opts: &ElectraOptions,
        train: bool,
        uniforms: Option<&Tensor>,
    ) -> Result<ElectraOutput> {
        opts.validate()?;
        let (batch, seq, _masked) = input.check()?;
        let encoder_input = input.encoder_input();

        // 1-2. Generator: logits [m, V] at the masked positions, MLM loss in float32.
        let gen_logits = self.generator_logits(&encoder_input, input.masked_positions, train)?;
        let gen_loss = gen_logits
            .f_to_kind(Kind::Float)?
            .f_log_softmax(-1, Kind::Float)?
            .f_nll_loss::<Tensor>(input.masked_labels, None, Reduction::Mean, -100)?;

        // 3. Sample replacements (no gradient).
        let disallow = opts.disallow_correct.then_some(input.masked_labels);
        let sampled = sample_with(
            &gen_logits,
            opts.temperature,
            disallow,
            opts.sampler,
            uniforms,
        )?;

        // 4. Corrupted ids and the discriminator's labels.
        let (corrupted, disc_labels) = tch::no_grad(|| -> Result<(Tensor, Tensor)> {
            // [b, t] -> [b * t]
            let flat = input.input_ids.reshape([batch * seq]);
            let positions = [Some(input.masked_positions)];
            let corrupted = flat
                .f_index_put(&positions, &sampled, false)?
                .view([batch, seq]);
            let original = flat
                .f_index_put(&positions, input.masked_labels, false)?
                .view([batch, seq]);
            let disc_labels = corrupted.f_ne_tensor(&original)?.f_to_kind(Kind::Float)?;
            Ok((corrupted, disc_labels))
        })?;

        // 5. Discriminator over every token; loss over real tokens only.
        let corrupted_input = EncoderInput {
            input_ids: &corrupted,
            ..encoder_input
        };
        let disc_logits = self.discriminator_logits(&corrupted_input, train)?;
        let real = input.attention_mask.f_to_kind(Kind::Bool)?;
        let per_token = disc_logits
            .f_to_kind(Kind::Float)?
            .f_binary_cross_entropy_with_logits::<Tensor>(
                &disc_labels,
                None,
                None,
                Reduction::None,
            )?;
        // masked_fill rather than a product, so a NaN at a padding position cannot leak.
        let real_count = real.f_sum(Kind::Float)?.f_clamp_min(1.0)?;
        let disc_loss = per_token
            .f_masked_fill(&real.f_logical_not()?, 0.0)?
            .f_sum(Kind::Float)?
            / real_count;

        // 6. Total loss.
        let loss = &gen_loss * opts.gen_weight + &disc_loss * opts.disc_weight;
        let stats = compute_stats(
            &gen_logits,
            input.masked_labels,
            &disc_logits,
            &disc_labels,
            &real,
        );
        Ok(ElectraOutput {
            loss,
            gen_loss,
            disc_loss,
            disc_logits,
            disc_labels,
            gen_logits,
            sampled,
            stats,
        })
    }
}
