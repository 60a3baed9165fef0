//! Duplicate object keys in JSON bodies. `{"temp":500,"temp":20}` is valid JSON, but parsers
//! disagree on which value wins: the gateway's schema check saw one, a backend may use the
//! other. Keys are compared after unescaping (`"t\u0065mp"` is `"temp"`), at every depth;
//! serde_json's recursion limit bounds the depth, so nothing here can overflow the stack.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(String);

/// `Ok` when `bytes` is one JSON value whose objects have no repeated key.
pub fn unique_keys(bytes: &[u8]) -> Result<(), JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Unique::deserialize(&mut de).map_err(|e| JsonError(e.to_string()))?;
    de.end().map_err(|e| JsonError(e.to_string()))
}

/// A JSON value, checked and thrown away.
struct Unique;

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Unique;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        while seq.next_element::<Unique>()?.is_some() {}
        Ok(Unique)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value::<Unique>()?;
            if !seen.insert(key) {
                return Err(de::Error::custom("duplicate key"));
            }
        }
        Ok(Unique)
    }
}

#[cfg(test)]
mod tests {
    use super::unique_keys;

    #[test]
    fn duplicates_are_found_after_unescaping_at_any_depth() {
        for ok in [
            r#"{"temp":20}"#,
            r#"{"t\u0065mp":20}"#,
            r#"{"a":{"x":1},"b":{"x":2}}"#,
            r#"[{"x":1},{"x":1}]"#,
            "1",
            "null",
        ] {
            assert!(unique_keys(ok.as_bytes()).is_ok(), "{ok}");
        }
        for bad in [
            r#"{"temp":500,"temp":20}"#,
            r#"{"temp":500,"t\u0065mp":20}"#,
            r#"{"a":[{"x":1,"\u0078":2}]}"#,
            r#"{"a":{"b":{"c":{"d":1,"d":2}}}}"#,
            r#"{"x":1} {"x":2}"#,
            "{",
        ] {
            assert!(unique_keys(bad.as_bytes()).is_err(), "{bad}");
        }
        let deep = "[".repeat(100_000);
        assert!(unique_keys(deep.as_bytes()).is_err(), "depth is bounded");
    }
}
