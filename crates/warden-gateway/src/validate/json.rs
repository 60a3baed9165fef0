//! Duplicate object keys in JSON bodies. `{"temp":500,"temp":20}` is valid JSON, but parsers
//! disagree on which value wins: the gateway's schema check saw one, a backend may use the
//! other. Keys are compared after unescaping (`"t\u0065mp"` is `"temp"`), at every depth;
//! serde_json's recursion limit bounds the depth, so nothing here can overflow the stack.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(String);

/// `Ok` when `bytes` is one JSON value whose objects have no repeated key.
pub fn unique_keys(bytes: &[u8]) -> Result<(), JsonError> {
    parse_unique(bytes).map(|_| ())
}

/// `bytes` parsed as one JSON value, refused when any of its objects repeats a key: the
/// duplicate check and the parse the schema needs in one pass.
pub fn parse_unique(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let Unique(value) = Unique::deserialize(&mut de).map_err(|e| JsonError(e.to_string()))?;
    de.end().map_err(|e| JsonError(e.to_string()))?;
    Ok(value)
}

/// A JSON value with no repeated object key.
struct Unique(Value);

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

    fn visit_bool<E>(self, v: bool) -> Result<Unique, E> {
        Ok(Unique(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Unique, E> {
        Ok(Unique(Value::Number(v.into())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Unique, E> {
        Ok(Unique(Value::Number(v.into())))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Unique, E> {
        // JSON text has no NaN or infinity; serde_json's own `Value` does the same.
        Ok(Unique(
            Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }
    fn visit_str<E>(self, v: &str) -> Result<Unique, E> {
        Ok(Unique(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Unique, E> {
        Ok(Unique(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(Unique(v)) = seq.next_element::<Unique>()? {
            items.push(v);
        }
        Ok(Unique(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Unique(v) = map.next_value::<Unique>()?;
            if out.insert(key, v).is_some() {
                return Err(de::Error::custom("duplicate key"));
            }
        }
        Ok(Unique(Value::Object(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_unique, unique_keys};

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
        let v = parse_unique(br#"{"t":21.5,"seq":12345,"a":[true,null,"x",-3]}"#);
        assert_eq!(
            v,
            Ok(serde_json::json!({"t": 21.5, "seq": 12345, "a": [true, null, "x", -3]})),
            "the value the schema checks is the body's"
        );
        let deep = "[".repeat(100_000);
        assert!(unique_keys(deep.as_bytes()).is_err(), "depth is bounded");
    }
}
