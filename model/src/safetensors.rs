//! A small, strict safetensors reader and writer.
//!
//! We write the format ourselves (it is an 8-byte little-endian header length, a JSON
//! header, then raw little-endian tensor bytes) so that files carry `__metadata__`
//! (`{"format": "pt"}`, which `transformers` expects), are written atomically (temporary
//! file, fsync, rename), and so that reading checks every size and offset against the
//! file before trusting it.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Map, Value};
use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};

/// Headers larger than this are refused (a real header is a few hundred KB at most).
pub const MAX_HEADER_BYTES: u64 = 64 << 20;

fn dtype_name(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Float => "F32",
        Kind::Double => "F64",
        Kind::Half => "F16",
        Kind::BFloat16 => "BF16",
        Kind::Int64 => "I64",
        Kind::Int => "I32",
        Kind::Int16 => "I16",
        Kind::Int8 => "I8",
        Kind::Uint8 => "U8",
        Kind::Bool => "BOOL",
        _ => return None,
    })
}

fn dtype_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "F32" => Kind::Float,
        "F64" => Kind::Double,
        "F16" => Kind::Half,
        "BF16" => Kind::BFloat16,
        "I64" => Kind::Int64,
        "I32" => Kind::Int,
        "I16" => Kind::Int16,
        "I8" => Kind::Int8,
        "U8" => Kind::Uint8,
        "BOOL" => Kind::Bool,
        _ => return None,
    })
}

fn bad(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Serializes named tensors (in the given order) with string metadata.
pub fn serialize(
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
    path_for_errors: &Path,
) -> Result<Vec<u8>> {
    let mut header = Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), json!(metadata));
    }
    let mut blobs = Vec::with_capacity(tensors.len());
    let mut offset = 0usize;
    for (name, tensor) in tensors {
        let kind = tensor.kind();
        let dtype = dtype_name(kind).ok_or_else(|| {
            bad(
                path_for_errors,
                format!("{name}: unsupported dtype {kind:?}"),
            )
        })?;
        let host = tensor.detach().to_device(Device::Cpu).contiguous();
        let numel = host.numel();
        let nbytes = numel * kind.elt_size_in_bytes();
        let mut data = vec![0u8; nbytes];
        host.f_copy_data_u8(&mut data, numel)?;
        header.insert(
            name.clone(),
            json!({"dtype": dtype, "shape": host.size(), "data_offsets": [offset, offset + nbytes]}),
        );
        offset += nbytes;
        blobs.push(data);
    }
    let mut header_bytes = serde_json::to_vec(&Value::Object(header))
        .map_err(|e| bad(path_for_errors, e.to_string()))?;
    while header_bytes.len() % 8 != 0 {
        header_bytes.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + header_bytes.len() + offset);
    out.extend_from_slice(&(header_bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&header_bytes);
    for blob in blobs {
        out.extend_from_slice(&blob);
    }
    Ok(out)
}

/// Writes named tensors as a safetensors file, atomically.
pub fn save(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let bytes = serialize(tensors, metadata, path)?;
    Ok(electra_fsutil::write_atomic(path, &bytes)?)
}

/// A parsed safetensors file.
#[derive(Debug)]
pub struct Loaded {
    /// Tensors in file order (sorted by name in the header's JSON object).
    pub tensors: Vec<(String, Tensor)>,
    /// The `__metadata__` strings.
    pub metadata: BTreeMap<String, String>,
}

/// Reads a safetensors file, checking header size, dtypes, shapes and offsets.
pub fn load(path: &Path) -> Result<Loaded> {
    let bytes = std::fs::read(path).map_err(ModelError::io(path))?;
    parse(&bytes, path)
}

/// Parses safetensors bytes; `path` names the file in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Loaded> {
    let len_bytes: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad(path, "shorter than the 8-byte header length"))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES || 8 + header_len > bytes.len() as u64 {
        return Err(bad(
            path,
            format!(
                "header length {header_len} exceeds the file ({} bytes) or the limit",
                bytes.len()
            ),
        ));
    }
    let header_end = 8 + header_len as usize;
    let header: Map<String, Value> = serde_json::from_slice(&bytes[8..header_end])
        .map_err(|e| bad(path, format!("header is not a JSON object: {e}")))?;
    let data = &bytes[header_end..];
    let mut metadata = BTreeMap::new();
    let mut entries = Vec::new();
    for (name, info) in &header {
        if name == "__metadata__" {
            if let Some(obj) = info.as_object() {
                for (k, v) in obj {
                    metadata.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
                }
            }
            continue;
        }
        let dtype = info["dtype"].as_str().unwrap_or_default();
        let kind = dtype_kind(dtype)
            .ok_or_else(|| bad(path, format!("{name}: unsupported dtype `{dtype}`")))?;
        let shape: Vec<i64> = info["shape"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .ok_or_else(|| bad(path, format!("{name}: no shape")))?;
        let offsets: Vec<u64> = info["data_offsets"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        let [begin, end] = offsets[..] else {
            return Err(bad(
                path,
                format!("{name}: data_offsets must be two integers"),
            ));
        };
        let numel: i64 = shape.iter().product();
        let expected = numel as u64 * kind.elt_size_in_bytes() as u64;
        if shape.iter().any(|&d| d < 0)
            || end < begin
            || end - begin != expected
            || end > data.len() as u64
        {
            return Err(bad(path, format!("{name}: offsets {begin}..{end} do not fit shape {shape:?} {dtype} within {} data bytes", data.len())));
        }
        entries.push((begin, end, name.clone(), kind, shape));
    }
    entries.sort_by_key(|e| (e.0, e.1));
    for pair in entries.windows(2) {
        if pair[1].0 < pair[0].1 {
            return Err(bad(
                path,
                format!("{} and {} overlap", pair[0].2, pair[1].2),
            ));
        }
    }
    let tensors = entries
        .into_iter()
        .map(|(begin, end, name, kind, shape)| {
            let t = Tensor::f_from_data_size(&data[begin as usize..end as usize], &shape, kind)?;
            Ok((name, t))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Loaded { tensors, metadata })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_names_values_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let a = Tensor::from_slice(&[1.5f32, -2.0, 3.25, 4.0]).reshape([2, 2]);
        let b = Tensor::from_slice(&[7i64, 8, 9]);
        let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
        save(
            &path,
            &[
                ("b.x".into(), b.shallow_clone()),
                ("a".into(), a.shallow_clone()),
            ],
            &meta,
        )
        .unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.metadata, meta);
        let names: Vec<&str> = loaded.tensors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["b.x", "a"]);
        assert!(loaded.tensors[1].1.equal(&a));
        assert!(loaded.tensors[0].1.equal(&b));
    }

    #[test]
    fn a_truncated_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        save(
            &path,
            &[("a".into(), Tensor::ones([16], (Kind::Float, Device::Cpu)))],
            &BTreeMap::new(),
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let err = parse(&bytes[..bytes.len() - 4], &path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("m.safetensors") && err.contains("do not fit"),
            "{err}"
        );
        let err = parse(&bytes[..5], &path).unwrap_err().to_string();
        assert!(err.contains("8-byte"), "{err}");
    }
}
