//! [`UnknownKeys`]: unknown keys refused in a config section made of flattened parts.
//!
//! serde's `deny_unknown_fields` does not work beside `#[serde(flatten)]`: with a part
//! flattened into a section, a misspelt key would be silently ignored. A section therefore
//! ends with a flattened `UnknownKeys<Section>` field: serde hands it every key that no other
//! field took, and it refuses the first one, naming it and the keys the section knows.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The catch-all field of a section `S`: deserializes only from an empty map, serializes
/// to nothing. Every value is equal to every other.
pub struct UnknownKeys<S>(PhantomData<fn() -> S>);

impl<S> Default for UnknownKeys<S> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<S> Clone for UnknownKeys<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for UnknownKeys<S> {}

impl<S> PartialEq for UnknownKeys<S> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<S> Eq for UnknownKeys<S> {}

impl<S> fmt::Debug for UnknownKeys<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnknownKeys")
    }
}

impl<S> Serialize for UnknownKeys<S> {
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        serializer.serialize_map(Some(0))?.end()
    }
}

impl<'de, S: Default + Serialize> Deserialize<'de> for UnknownKeys<S> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(Refuse::<S>(PhantomData))
    }
}

/// Refuses the first key of a map.
struct Refuse<S>(PhantomData<fn() -> S>);

impl<'de, S: Default + Serialize> Visitor<'de> for Refuse<S> {
    type Value = UnknownKeys<S>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no other keys")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        match map.next_key::<String>()? {
            None => Ok(UnknownKeys::default()),
            Some(key) => Err(de::Error::custom(format!(
                "unknown field `{key}`, expected one of {}",
                known_keys::<S>()
            ))),
        }
    }
}

/// The keys of `S`, as serde's own "unknown field" error lists them: `` `a`, `b` ``.
fn known_keys<S: Default + Serialize>() -> String {
    let keys = match serde_json::to_value(S::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    };
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(default)]
    struct Part {
        b: u32,
    }

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(default)]
    struct Section {
        a: u32,
        #[serde(flatten)]
        part: Part,
        #[serde(flatten)]
        unknown: UnknownKeys<Section>,
    }

    #[test]
    fn keys_of_the_section_and_of_its_flattened_part_are_read() {
        let s: Section = serde_json::from_str(r#"{"a": 1, "b": 2}"#).unwrap();
        assert_eq!((s.a, s.part.b), (1, 2));
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"a":1,"b":2}"#);
    }

    #[test]
    fn any_other_key_is_refused_with_its_name_and_the_known_ones() {
        let err = serde_json::from_str::<Section>(r#"{"a": 1, "c": 2}"#).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("unknown field `c`, expected one of `a`, `b`"),
            "{text}"
        );
    }
}
