//! A JSON value deserialized with duplicate mapping keys refused. YAML forbids them, but a plain
//! `serde_json::Value` would keep the last one silently — a typo'd manifest would lose data.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// A [`Value`] whose mappings had no duplicate keys.
pub struct StrictValue(pub Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("{v} is not a number JSON can hold")))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let mut merged = Vec::new();
        while let Some(key) = map.next_key::<KeyString>()? {
            let StrictValue(v) = map.next_value()?;
            // YAML merge keys (`<<: *base`), which kubectl honours: keys written out win, then
            // the merged mappings in the order given.
            if key.0 == "<<" {
                match v {
                    Value::Object(m) => merged.push(m),
                    Value::Array(items) if items.iter().all(Value::is_object) => {
                        merged.extend(items.into_iter().filter_map(|i| match i {
                            Value::Object(m) => Some(m),
                            _ => None,
                        }))
                    }
                    _ => {
                        return Err(de::Error::custom(
                            "a merge key (<<) takes a mapping or a list of mappings",
                        ));
                    }
                }
                continue;
            }
            if out.contains_key(&key.0) {
                return Err(de::Error::custom(format!(
                    "duplicate key {:?} in a mapping",
                    key.0
                )));
            }
            out.insert(key.0, v);
        }
        for m in merged {
            for (k, v) in m {
                out.entry(k).or_insert(v);
            }
        }
        Ok(Value::Object(out))
    }
}

/// A mapping key. Kubernetes objects only have string keys; numbers and booleans are turned into
/// their text, as YAML-to-JSON converters (and kubectl) do.
struct KeyString(String);

impl<'de> Deserialize<'de> for KeyString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct K;
        impl Visitor<'_> for K {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean mapping key")
            }
            fn visit_str<E>(self, v: &str) -> Result<String, E> {
                Ok(v.to_owned())
            }
            fn visit_string<E>(self, v: String) -> Result<String, E> {
                Ok(v)
            }
            fn visit_bool<E>(self, v: bool) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_i64<E>(self, v: i64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_u64<E>(self, v: u64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_f64<E>(self, v: f64) -> Result<String, E> {
                Ok(v.to_string())
            }
        }
        d.deserialize_any(K).map(KeyString)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Value, String> {
        serde_yaml::from_str::<StrictValue>(s)
            .map(|v| v.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert!(parse("a: 1\na: 2\n").unwrap_err().contains("duplicate"));
        assert!(
            parse("spec:\n  x: 1\n  x: 1\n")
                .unwrap_err()
                .contains("duplicate key \"x\"")
        );
        assert!(parse("- {a: 1, a: 1}\n").is_err());
    }

    #[test]
    fn merge_keys_are_applied() {
        let v =
            parse("base: &b {a: 1, b: 1}\nother: &o {c: 3}\nx:\n  <<: [*b, *o]\n  b: 2\n").unwrap();
        assert_eq!(v["x"], serde_json::json!({"a": 1, "b": 2, "c": 3}));
        assert!(parse("x:\n  <<: 5\n").is_err());
    }

    #[test]
    fn values_convert_like_json() {
        let v = parse("a: [1, -2, 1.5, true, null, x]\n1: b\n").unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a": [1, -2, 1.5, true, null, "x"], "1": "b"})
        );
        assert!(parse("a: .nan\n").is_err());
    }
}
