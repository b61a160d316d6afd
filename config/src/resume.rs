//! What may change on `--resume`, from the types: every key of an execution part
//! ([`DataExecution`](electra_pipeline::DataExecution), [`TrainExecution`](crate::TrainExecution),
//! [`DistExecution`](crate::DistExecution) and the whole `[checkpoint]`); every other key
//! defines the experiment and must match the checkpoint's.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::error::{ConfigError, Result};
use crate::RunConfig;

impl RunConfig {
    /// The execution parts, each with its section's name: the one place that names them.
    fn execution_parts(&self) -> [(&'static str, serde_json::Value); 4] {
        [
            ("data", part_json(&self.data.execution)),
            ("train", part_json(&self.train.execution)),
            ("dist", part_json(&self.dist.execution)),
            ("checkpoint", part_json(&self.checkpoint)),
        ]
    }

    /// The dotted keys a resumed run may change (`data.threads`, `checkpoint.keep`, ...),
    /// in section order.
    pub fn execution_keys() -> Vec<String> {
        let mut keys = Vec::new();
        for (section, part) in RunConfig::default().execution_parts() {
            leaf_keys(section, &part, &mut keys);
        }
        keys
    }

    /// The dotted keys where `self` and `other` differ, leaving out the execution keys
    /// ([`RunConfig::execution_keys`]): empty when `other` continues `self`'s experiment.
    pub fn resume_differences(&self, other: &RunConfig) -> Result<Vec<String>> {
        let execution: BTreeSet<String> = Self::execution_keys().into_iter().collect();
        let mut keys = Vec::new();
        diff_values("", &to_json(self)?, &to_json(other)?, &mut keys);
        keys.retain(|k| !execution.contains(k));
        Ok(keys)
    }
}

/// A part serialized to JSON. Parts are plain structs of numbers, booleans and enums, whose
/// serialization cannot fail (`Null` would stand for one that did).
fn part_json(part: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(part).unwrap_or_default()
}

fn to_json(value: &impl Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| ConfigError::Parse {
        origin: "resolved config".into(),
        message: e.to_string(),
    })
}

/// The dotted keys of `value`'s leaves under `prefix`.
fn leaf_keys(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                leaf_keys(&format!("{prefix}.{key}"), child, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// Collects the dotted keys where two values differ (a key missing on one side differs).
fn diff_values(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value::Object;
    match (a, b) {
        (Object(x), Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
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
