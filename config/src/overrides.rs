//! `--set section.key=value`: an override applied to the parsed TOML before it becomes a
//! [`RunConfig`](crate::RunConfig), so overrides and files meet the same checks.

use crate::error::{ConfigError, Result};

/// Applies one `section.key=value` override to a parsed TOML table.
pub(crate) fn apply_override(table: &mut toml::Table, item: &str) -> Result<()> {
    let bad = |message: String| ConfigError::Parse {
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
