//! A JSON value deserialized with duplicate mapping keys refused. YAML forbids them, but a plain
//! `serde_json::Value` would keep the last one silently — a typo'd manifest would lose data.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

thread_local! {
    /// How many more values the document being read may produce, its aliases expanded.
    static BUDGET: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The values a document of `bytes` bytes may produce, aliases expanded. Without aliases a
/// document produces at most one value for every two bytes (each value needs a character and
/// a separator: `[a,b,c]`, or `-` and a newline), so any document without aliases fits, a
/// thousand more leave room for anchors and merge keys used for reuse, and an alias bomb costs
/// no more memory than a plain document of its size.
pub fn budget_for(bytes: usize) -> usize {
    1_000 + bytes / 2
}

/// Runs `f` (which reads one document) allowing it `budget` values: past that, reading fails
/// with an error that says so. Bounds the memory an alias bomb can take.
pub fn with_budget<T>(budget: usize, f: impl FnOnce() -> T) -> T {
    BUDGET.with(|b| b.set(budget));
    let out = f();
    BUDGET.with(|b| b.set(usize::MAX));
    out
}

/// Counts one value against the budget.
fn spend<E: de::Error>() -> Result<(), E> {
    BUDGET.with(|b| match b.get() {
        0 => Err(E::custom(
            "the document expands to more values than its size allows (aliases referenced over and over); refused",
        )),
        n => {
            b.set(n - 1);
            Ok(())
        }
    })
}

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

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        spend()?;
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        spend()?;
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        spend()?;
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        spend()?;
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("{v} is not a number JSON can hold")))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        spend()?;
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        spend()?;
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        spend()?;
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        spend()?;
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        spend()?;
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        spend()?;
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

/// The deepest nesting the YAML reader takes. Kubernetes objects are shallow (suborg's kinds
/// nest under ten levels); the YAML parser's time grows with the square of the flow depth, so
/// a document nested deeper is refused before it is parsed.
pub const MAX_DEPTH: usize = 100;

/// The 1-based line where `text` first nests flow collections (`[`, `{`) deeper than `limit`,
/// if it does. Quoted scalars and comments are skipped; one linear pass.
pub fn too_deep(text: &str, limit: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let (mut depth, mut line, mut i) = (0usize, 1usize, 0usize);
    let mut prev = b'\n';
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\n' => line += 1,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(line);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'#' if prev == b' ' || prev == b'\t' || prev == b'\n' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\''
                if matches!(
                    prev,
                    b' ' | b'\t' | b'\n' | b'[' | b'{' | b',' | b':' | b'-'
                ) =>
            {
                let quote = b;
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' if quote == b'"' => i += 1,
                        b'\n' => line += 1,
                        c if c == quote => {
                            // '' is an escaped quote inside a single-quoted scalar.
                            if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                                i += 1;
                            } else {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            _ => {}
        }
        prev = b;
        i += 1;
    }
    None
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
    fn depth_counts_flow_brackets_outside_quotes_and_comments() {
        assert_eq!(too_deep("a: [[[x]]]\n", 3), None);
        assert_eq!(too_deep("a: [[[[x]]]]\n", 3), Some(1));
        assert_eq!(too_deep("a: 1\nb: {c: [{d: [x]}]}\n", 3), Some(2));
        // Closed brackets free their level.
        assert_eq!(too_deep("a: [[x]]\nb: [[y]]\n", 2), None);
        // Quoted text and comments are not structure.
        assert_eq!(too_deep("a: \"[[[[\"\nb: '[[[[ it''s [['\n", 1), None);
        assert_eq!(too_deep("a: 1 # [[[[\n", 1), None);
        assert_eq!(too_deep("a: \"x\\\"[[[[\"\n", 1), None);
        // A '#' inside a plain scalar is text; brackets after it still count.
        assert_eq!(too_deep("a: b#[[c\n", 1), Some(1));
        assert_eq!(too_deep("x: 1\n\"multi\nline\"\nb: [[[q]]]", 2), Some(4));
    }

    #[test]
    fn the_value_budget_stops_a_document_that_expands() {
        let bomb = format!(
            "x: &a [{}]\ny: [{}]\n",
            vec!["r"; 100].join(", "),
            vec!["*a"; 100].join(", ")
        );
        let e = with_budget(1_000, || parse(&bomb)).unwrap_err();
        assert!(
            e.contains("expands to more values than its size allows"),
            "{e}"
        );
        assert!(with_budget(budget_for(bomb.len()) * 10, || parse(&bomb)).is_ok());
        // The budget is the reading's alone.
        assert!(parse(&bomb).is_ok());
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
