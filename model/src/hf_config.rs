//! Hugging Face `config.json` for what we save.

use crate::ElectraConfig;
use serde_json::{json, Value};

/// The `config.json` `transformers` reads for an ELECTRA model of `architecture`
/// (`ElectraForPreTraining` or `ElectraForMaskedLM`); integers stay integers.
pub fn config_json(cfg: &ElectraConfig, architecture: &str) -> Value {
    let mut value = serde_json::to_value(cfg).unwrap_or_else(|_| json!({}));
    if let Some(obj) = value.as_object_mut() {
        obj.insert("architectures".into(), json!([architecture]));
        obj.insert("model_type".into(), json!("electra"));
        obj.insert("hidden_act".into(), json!("gelu"));
        obj.insert("position_embedding_type".into(), json!("absolute"));
        obj.insert("summary_type".into(), json!("first"));
        obj.insert("summary_use_proj".into(), json!(true));
        obj.insert("summary_activation".into(), json!("gelu"));
        obj.insert("summary_last_dropout".into(), json!(0.1));
        obj.insert("torch_dtype".into(), json!("float32"));
        obj.insert("use_cache".into(), json!(true));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_written_as_integers() {
        let v = config_json(&ElectraConfig::small(), "ElectraForPreTraining");
        assert_eq!(v["hidden_size"], json!(256));
        assert!(v["hidden_size"].is_u64());
        assert_eq!(v["architectures"][0], "ElectraForPreTraining");
        assert_eq!(v["model_type"], "electra");
    }
}
