//! A small JSON tree that keeps object members in document order and rejects
//! duplicate member names.
//!
//! `serde_json::Value` silently keeps the last of two members with the same
//! name; for a security policy (`"Effect": "Deny", ..., "Effect": "Allow"`)
//! that ambiguity must be an error, so policies are read into this tree.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Deepest nesting accepted when converting a caller-built `serde_json::Value`
/// (text input is bounded by serde_json's own recursion limit of 128).
const MAX_DEPTH: usize = 64;

/// One JSON value. Numbers are kept as their decimal text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// A short name of the JSON type, for error messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }

    /// Parses JSON text.
    pub(crate) fn parse(text: &str) -> Result<Json, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Converts a `serde_json::Value` (which cannot hold duplicate members).
    /// Returns `None` when it nests deeper than [`MAX_DEPTH`].
    pub(crate) fn from_value(value: &serde_json::Value) -> Option<Json> {
        Self::from_value_at(value, 0)
    }

    fn from_value_at(value: &serde_json::Value, depth: usize) -> Option<Json> {
        if depth > MAX_DEPTH {
            return None;
        }
        Some(match value {
            serde_json::Value::Null => Json::Null,
            serde_json::Value::Bool(b) => Json::Bool(*b),
            serde_json::Value::Number(n) => Json::Number(n.to_string()),
            serde_json::Value::String(s) => Json::String(s.clone()),
            serde_json::Value::Array(items) => Json::Array(
                items
                    .iter()
                    .map(|v| Self::from_value_at(v, depth + 1))
                    .collect::<Option<Vec<_>>>()?,
            ),
            serde_json::Value::Object(map) => Json::Object(
                map.iter()
                    .map(|(k, v)| Some((k.clone(), Self::from_value_at(v, depth + 1)?)))
                    .collect::<Option<Vec<_>>>()?,
            ),
        })
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.to_string()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.to_string()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(Json::Number(v.to_string()))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Json>()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members: Vec<(String, Json)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if members.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom(format!("duplicate member \"{key}\"")));
            }
            let value = map.next_value::<Json>()?;
            members.push((key, value));
        }
        Ok(Json::Object(members))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_members_are_rejected() {
        let err = Json::parse(r#"{"a": 1, "a": 2}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate member \"a\""), "{err}");
    }

    #[test]
    fn order_is_kept_and_numbers_are_text() {
        let j = Json::parse(r#"{"b": 10, "a": [true, 1.5, null, "x"]}"#).unwrap();
        assert_eq!(
            j,
            Json::Object(vec![
                ("b".into(), Json::Number("10".into())),
                (
                    "a".into(),
                    Json::Array(vec![
                        Json::Bool(true),
                        Json::Number("1.5".into()),
                        Json::Null,
                        Json::String("x".into())
                    ])
                ),
            ])
        );
    }

    #[test]
    fn deep_values_are_refused() {
        let mut v = serde_json::Value::Null;
        for _ in 0..100 {
            v = serde_json::Value::Array(vec![v]);
        }
        assert!(Json::from_value(&v).is_none());
    }
}
