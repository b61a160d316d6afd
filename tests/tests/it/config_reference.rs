//! `docs/configuration.md` documents every key of the config, one key per table row: a key
//! without a row, a row naming no key, a key with two rows or a row naming several keys
//! fails here.
//!
//! The keys are walked from the default `RunConfig` serialized to JSON rather than TOML:
//! TOML leaves out options that are unset by default (`train.max_steps`, `data.epochs`,
//! `data.max_predictions_per_seq`), JSON writes them as `null`.

use std::collections::{BTreeMap, BTreeSet};

use electra_trainer::config::RunConfig;
use serde_json::Value;

use crate::repo_root;

/// The dotted path of every leaf of `value`: `section.key` for a config. An empty table
/// counts as a leaf (a map-valued key whose default is empty).
fn config_keys(value: &Value) -> BTreeSet<String> {
    fn walk(path: &str, value: &Value, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    let child_path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    walk(&child_path, child, out);
                }
            }
            _ => {
                out.insert(path.to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk("", value, &mut out);
    out
}

fn default_config_keys() -> BTreeSet<String> {
    config_keys(&serde_json::to_value(RunConfig::default()).unwrap())
}

/// The cells of a Markdown table line, trimmed (`| a | b |` -> `["a", "b"]`).
fn cells(line: &str) -> Vec<&str> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(str::trim).collect()
}

/// The keys of the reference: the first cell of every row of every table whose header
/// starts with `key`, each a single code span holding one dotted name; with the line
/// numbers of each key's rows. A first cell of another shape is an error naming its line.
fn documented_keys(markdown: &str) -> Result<BTreeMap<String, Vec<usize>>, String> {
    let mut keys: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut in_key_table = false;
    let mut previous_was_table = false;
    for (index, line) in markdown.lines().enumerate() {
        let number = index + 1;
        let is_table = line.trim_start().starts_with('|');
        if !is_table {
            previous_was_table = false;
            continue;
        }
        let first = cells(line)[0];
        if !previous_was_table {
            // A new table: its first line is the header.
            in_key_table = first == "key";
            previous_was_table = true;
            continue;
        }
        if !in_key_table || first.starts_with("---") {
            continue;
        }
        let name = first
            .strip_prefix('`')
            .and_then(|rest| rest.strip_suffix('`'))
            .filter(|name| {
                name.contains('.')
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.".contains(c))
            })
            .ok_or_else(|| {
                format!("line {number}: the first cell must be one `section.key`, found {first:?}")
            })?;
        keys.entry(name.to_string()).or_default().push(number);
    }
    Ok(keys)
}

fn reference() -> String {
    let path = repo_root().join("docs/configuration.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Keys of `config` that have no row in `markdown`.
fn undocumented(config: &BTreeSet<String>, markdown: &str) -> Vec<String> {
    let documented = documented_keys(markdown).unwrap();
    config
        .iter()
        .filter(|key| !documented.contains_key(*key))
        .cloned()
        .collect()
}

#[test]
fn every_config_key_has_a_row_in_the_configuration_reference() {
    let config = default_config_keys();
    assert!(config.len() > 60, "too few keys walked: {config:?}");
    let missing = undocumented(&config, &reference());
    assert!(
        missing.is_empty(),
        "docs/configuration.md has no row for {missing:?}: add a row `| `section.key` | default | meaning |`"
    );
}

#[test]
fn every_row_of_the_configuration_reference_names_one_existing_key_once() {
    let config = default_config_keys();
    let documented = documented_keys(&reference()).unwrap_or_else(|e| panic!("{e}"));
    let unknown: Vec<&String> = documented
        .keys()
        .filter(|key| !config.contains(*key))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/configuration.md documents keys the config does not have: {unknown:?}"
    );
    let twice: Vec<(&String, &Vec<usize>)> = documented
        .iter()
        .filter(|(_, lines)| lines.len() > 1)
        .collect();
    assert!(
        twice.is_empty(),
        "keys with several rows (lines): {twice:?}"
    );
}

/// The check itself: a key added to a section, a new section, a removed row and a grouped
/// row are all caught.
#[test]
fn a_new_key_a_removed_row_and_a_grouped_row_are_caught() {
    let markdown = reference();
    let mut config = serde_json::to_value(RunConfig::default()).unwrap();
    config["data"]["new_key"] = Value::from(1);
    config["new_section"] = serde_json::json!({ "knob": true });
    let missing = undocumented(&config_keys(&config), &markdown);
    assert_eq!(missing, ["data.new_key", "new_section.knob"]);

    let row = markdown
        .lines()
        .find(|line| line.starts_with("| `data.prefetch` |"))
        .unwrap();
    let without_row = markdown.replace(&format!("{row}\n"), "");
    assert_eq!(
        undocumented(&default_config_keys(), &without_row),
        ["data.prefetch"]
    );

    let grouped = markdown.replace("| `data.prefetch` |", "| `data.prefetch`, `chunk_bytes` |");
    let err = documented_keys(&grouped).unwrap_err();
    assert!(err.contains("must be one `section.key`"), "{err}");
}
