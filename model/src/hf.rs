//! Hugging Face names for export: each model's tensors as `transformers` names them
//! (`ElectraForPreTraining` for the discriminator, `ElectraForMaskedLM` for the generator).
//!
//! Inside the `VarStore` the names are the Hugging Face ones under `discriminator.` or
//! `generator.`; the generator's shared tensors live only under `discriminator.`, so the
//! generator's list adds them (and `generator_lm_head.weight`, the token embeddings).

use tch::Tensor;

use crate::electra::Electra;

/// The Hugging Face names (within each model) of the tensors the generator shares with the
/// discriminator; `generator_lm_head.weight` is also the discriminator's
/// `electra.embeddings.word_embeddings.weight`.
pub const SHARED_PARAMETER_NAMES: [&str; 5] = [
    "electra.embeddings.word_embeddings.weight",
    "electra.embeddings.position_embeddings.weight",
    "electra.embeddings.token_type_embeddings.weight",
    "electra.embeddings.LayerNorm.weight",
    "electra.embeddings.LayerNorm.bias",
];

fn detached(named: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    named
        .into_iter()
        .map(|(name, tensor)| (name, tensor.detach()))
        .collect()
}

impl Electra {
    /// The discriminator's tensors with Hugging Face `ElectraForPreTraining` names
    /// (`electra.*`, `discriminator_predictions.*`), in module order. The tensors are
    /// detached views of the variables (same storage); no `position_ids` buffer.
    pub fn hf_discriminator_tensors(&self) -> Vec<(String, Tensor)> {
        let mut named = Vec::new();
        self.discriminator().push_named("electra", &mut named);
        self.discriminator_head()
            .push_named("discriminator_predictions", &mut named);
        detached(named)
    }

    /// The generator's tensors with Hugging Face `ElectraForMaskedLM` names (`electra.*`
    /// including the shared embeddings, `generator_predictions.*`,
    /// `generator_lm_head.{weight,bias}` with the weight = the token embeddings). Detached
    /// views of the variables: shared tensors appear here and in the discriminator's list.
    pub fn hf_generator_tensors(&self) -> Vec<(String, Tensor)> {
        let mut named = Vec::new();
        self.generator().push_named("electra", &mut named);
        self.generator_head().push_named(&mut named);
        detached(named)
    }

    /// See [`SHARED_PARAMETER_NAMES`].
    pub fn shared_parameter_names() -> &'static [&'static str] {
        &SHARED_PARAMETER_NAMES
    }
}
