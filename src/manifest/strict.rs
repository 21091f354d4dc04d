//! The YAML reader: a file's text into JSON values, read in one streaming pass with every
//! limit a hostile document could push against (nesting depth, values and text after alias
//! expansion), and duplicate mapping keys refused. YAML forbids duplicates, but a plain
//! `serde_json::Value` would keep the last one silently — a typo'd manifest would lose data.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::budget::{Budget, BudgetBreach};
use serde_saphyr::options::{DuplicateKeyPolicy, MergeKeyPolicy, Options};

thread_local! {
    /// How many more values, and bytes of text, the document being read may produce, its
    /// aliases expanded.
    static BUDGET: Cell<Allowance> = const { Cell::new(Allowance::UNLIMITED) };
}

/// What a document may still produce.
#[derive(Clone, Copy)]
struct Allowance {
    values: usize,
    text: usize,
}

impl Allowance {
    const UNLIMITED: Allowance = Allowance {
        values: usize::MAX,
        text: usize::MAX,
    };
}

/// The values a document of `bytes` bytes may produce, aliases expanded: one for every eight
/// bytes, and a thousand more. Real objects are sparser than that: the densest a suborg object
/// gets is a Group's member list at its shortest (`  - {kind: Group, name: g}` a line, nine
/// bytes a value), and the thousand cover any small document, anchors and merge keys used for
/// reuse.
/// What is denser (thousands of one-character scalars, an anchor referenced over and over) is
/// refused once it passes the budget, so the values built stay within a few times the input's
/// size whatever its shape: each costs about 50 bytes of memory.
pub fn budget_for(bytes: usize) -> usize {
    1_000 + bytes / 8
}

/// The bytes of scalar text a document of `bytes` bytes may produce, aliases expanded: all of
/// its own text four times over (a long value anchored and reused a few times fits), and 64 KiB
/// more. One long scalar referenced over and over is refused instead of filling memory.
pub fn text_budget_for(bytes: usize) -> usize {
    65_536 + bytes.saturating_mul(4)
}

/// Runs `f` (which reads one document) allowing it `values` values and `text` bytes of scalar
/// text: past either, reading fails with an error that says so. Bounds the memory an alias bomb
/// can take.
pub fn with_budget<T>(values: usize, text: usize, f: impl FnOnce() -> T) -> T {
    BUDGET.with(|b| b.set(Allowance { values, text }));
    let out = f();
    BUDGET.with(|b| b.set(Allowance::UNLIMITED));
    out
}

/// Why the values expanded past the budget: one wording, whichever counter saw it first.
const TOO_MANY_VALUES: &str = "the document holds more values than its size allows (one for every 8 bytes, and 1,000 more, counting what aliases expand to): aliases referenced over and over, or values packed denser than any object; refused";

/// Counts one value, holding `text` bytes of scalar text, against the budget.
fn spend<E: de::Error>(text: usize) -> Result<(), E> {
    spend_values::<E>(1, text)
}

/// Counts `values` values holding `text` bytes of text (a mapping key is text, not a value).
fn spend_values<E: de::Error>(values: usize, text: usize) -> Result<(), E> {
    BUDGET.with(|b| {
        let left = b.get();
        let Some(values) = left.values.checked_sub(values) else {
            return Err(E::custom(TOO_MANY_VALUES));
        };
        let Some(text) = left.text.checked_sub(text) else {
            return Err(E::custom(
                "the document expands to more text than its size allows (long values referenced over and over); refused",
            ));
        };
        b.set(Allowance { values, text });
        Ok(())
    })
}

/// A YAML document that could not be read: where (1-based line and column, when known) and why.
#[derive(Debug)]
pub struct YamlError {
    pub at: Option<(u64, u64)>,
    pub message: String,
}

/// Reads every document of `text`, one piece of a file, into a JSON value each (`Null` for an
/// empty document), within the limits of this module. The reader streams: its memory is the
/// values it builds, not a buffer of the document's events.
pub fn read_documents(text: &str) -> Result<Vec<Value>, YamlError> {
    let values = budget_for(text.len());
    let read = with_budget(values, text_budget_for(text.len()), || {
        serde_saphyr::from_multiple_with_options::<StrictValue>(text, options(text.len()))
    });
    match read {
        Ok(docs) => Ok(docs.into_iter().map(|d| d.0).collect()),
        Err(e) => Err(describe(&e)),
    }
}

/// The reader's settings: plain scalars resolved as kubectl, Helm and Argo CD read them
/// (sigs.k8s.io/yaml, YAML 1.1's resolution: `yes`, `no`, `on`, `off`, `y`, `n` are booleans,
/// `0755` is octal, `1_000` a number), so that `validate` refuses what the API server will be
/// sent as a boolean or number where a string belongs; unknown tags refused; and the parser's
/// own limits set past this module's, so that what they catch first is reported in this
/// module's words. The parser differs from sigs.k8s.io/yaml on spellings no one writes: it
/// reads mixed-case booleans (`yEs`) as booleans, and upper-case radix prefixes (`0X1F`),
/// doubled underscores (`1__000`) and underscores in fractions as strings.
fn options(bytes: usize) -> Options {
    let values = budget_for(bytes);
    let mut budget = Budget::default();
    budget.max_nodes = values.saturating_mul(2);
    budget.max_events = values.saturating_mul(4);
    budget.max_aliases = values;
    budget.max_anchors = values;
    // The parser keeps a copy of what an anchor holds, to replay it for each alias: anchors
    // are for reusing small parts, and one holding more than a quarter of the budget is refused
    // before its copy (larger than the values it stands for) fills memory.
    budget.max_recorded_anchor_events = values / 4;
    budget.max_recorded_anchor_bytes = bytes.max(65_536);
    budget.max_depth = 2 * MAX_DEPTH;
    budget.flow_nesting_limit = MAX_DEPTH + 1;
    // The value budget bounds what aliases expand to; many aliases of a few anchors cost no
    // more than the values they produce.
    budget.enforce_alias_anchor_ratio = false;
    let mut options = Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = values.saturating_mul(4);
    options.with_snippet = false;
    options.emit_comments = false;
    options.strict_booleans = false;
    options.legacy_octal_numbers = true;
    options.leading_zero_numbers_as_strings = false;
    options.underscored_numbers_as_strings = false;
    options.reject_unsupported_tags = true;
    // A repeated key is refused by the reader, which knows its line; merge keys reach the
    // visitor below, which applies them with the precedence kubectl gives them.
    options.duplicate_keys = DuplicateKeyPolicy::Error;
    options.merge_keys = MergeKeyPolicy::AsOrdinary;
    options
}

/// The reader's error in the words `validate` reports: the message without its position, which
/// is kept apart.
fn describe(e: &serde_saphyr::Error) -> YamlError {
    let mut inner = e;
    while let serde_saphyr::Error::AliasError { error, .. }
    | serde_saphyr::Error::WithSnippet { error, .. } = inner
    {
        inner = error;
    }
    let at = e
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| (l.line(), l.column()));
    let message = match inner {
        serde_saphyr::Error::Budget { breach, .. } => match breach {
            BudgetBreach::Depth { .. } => format!(
                "nests collections more than {} levels deep: refused (Kubernetes objects are not nested that deep)",
                2 * MAX_DEPTH
            ),
            BudgetBreach::RecordedAnchorEvents { .. } | BudgetBreach::RecordedAnchorBytes { .. } => {
                "the document holds more values than its size allows: an anchor holds more than a quarter of the values, or more text than the document itself (anchors are for reusing small parts); refused".to_owned()
            }
            BudgetBreach::Documents { documents } => format!(
                "holds more than {} documents between two `---` markers; refused",
                documents.saturating_sub(1)
            ),
            BudgetBreach::ScalarBytes { .. } => {
                "the document expands to more text than its size allows (long values referenced over and over); refused".to_owned()
            }
            _ => TOO_MANY_VALUES.to_owned(),
        },
        serde_saphyr::Error::DuplicateMappingKey { key: Some(key), .. } => {
            format!("duplicate key {key:?} in a mapping")
        }
        _ => {
            let text = inner.to_string();
            match text.rfind(" at line ") {
                Some(cut) => text[..cut].to_owned(),
                None => text,
            }
        }
    };
    YamlError { at, message }
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
        spend(0)?;
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        spend(0)?;
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        spend(0)?;
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        spend(0)?;
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("{v} is not a number JSON can hold")))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        spend(v.len())?;
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        spend(v.len())?;
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        spend(0)?;
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        spend(0)?;
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        spend(0)?;
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        spend(0)?;
        let mut out = Map::new();
        let mut merged = Vec::new();
        while let Some(key) = map.next_key::<KeyString>()? {
            spend_values::<A::Error>(0, key.0.len())?;
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
    use serde_json::json;

    fn parse(s: &str) -> Result<Value, String> {
        let mut docs = read_documents(s).map_err(|e| e.message)?;
        assert_eq!(docs.len(), 1, "{s}");
        Ok(docs.remove(0))
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
        let bomb = |n: usize| {
            format!(
                "x: &a [{}]\ny: [{}]\n",
                vec!["r"; n].join(", "),
                vec!["*a"; n].join(", ")
            )
        };
        // 20 × 21 values from 150 bytes: within the thousand spare values, so read.
        assert!(parse(&bomb(20)).is_ok());
        // No alias, but packed tighter than any object: refused too.
        let dense = format!("x: [{}]\n", vec!["r"; 10_000].join(","));
        let e = parse(&dense).unwrap_err();
        assert!(e.contains("more values than its size allows"), "{e}");
        // 100 × 101 from 700 bytes, or 1,000 × 1,001 from 7 KB: refused.
        assert!(parse(&bomb(100)).is_err());
        let e = parse(&bomb(1_000)).unwrap_err();
        assert!(e.contains("more values than its size allows"), "{e}");
        // The budget is the reading's alone.
        assert!(with_budget(10, 10, || serde_json::from_str::<StrictValue>("[1, 2]")).is_ok());
        assert!(
            with_budget(2, 100, || serde_json::from_str::<StrictValue>("[1, 2]")).is_err(),
            "three values"
        );
    }

    #[test]
    fn the_text_budget_stops_a_long_value_referenced_over_and_over() {
        let long = "x".repeat(100_000);
        let refs = ["*a"; 10].join(", ");
        let e = parse(&format!("a: &a {long}\nb: [{refs}]\n")).unwrap_err();
        assert!(
            e.contains("expands to more text than its size allows"),
            "{e}"
        );
        // Reused a few times, it fits.
        assert!(parse(&format!("a: &a {long}\nb: [*a, *a]\n")).is_ok());
        // An anchor holding most of a document is refused before its copy is made.
        let e = parse(&format!("x: &a [{}]\n", vec!["r"; 3_000].join(", "))).unwrap_err();
        assert!(e.contains("an anchor holds more than a quarter"), "{e}");
        assert!(e.contains("more values than its size allows"), "{e}");
        // Keys count too (a flow key is at most 1,024 characters).
        let key = "k".repeat(1_000);
        let refs = vec!["*a"; 100].join(", ");
        let e = parse(&format!("a: &a {{{key}: 1}}\nb: [{refs}]\n")).unwrap_err();
        assert!(e.contains("expands to more text"), "{e}");
    }

    #[test]
    fn errors_give_their_place_apart_from_their_message() {
        let e = read_documents("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(e.at.is_some_and(|(line, _)| line >= 1), "{e:?}");
        assert!(!e.message.contains(" at line "), "{e:?}");
        let e = read_documents(&format!("a: {}", "[".repeat(MAX_DEPTH + 5))).unwrap_err();
        assert!(!e.message.is_empty(), "{e:?}");
    }

    #[test]
    fn plain_scalars_resolve_as_kubectl_reads_them() {
        // What `kubectl apply --dry-run=client -o json` (sigs.k8s.io/yaml, YAML 1.1's
        // resolution) makes of each plain scalar; quoted, every one is a string.
        let cases = [
            ("yes", json!(true)),
            ("no", json!(false)),
            ("on", json!(true)),
            ("off", json!(false)),
            ("y", json!(true)),
            ("N", json!(false)),
            ("Yes", json!(true)),
            ("NO", json!(false)),
            ("True", json!(true)),
            ("0755", json!(493)),
            ("08", json!(8.0)),
            ("1_000", json!(1000)),
            ("0x1F", json!(31)),
            ("-0x1F", json!(-31)),
            ("0o17", json!(15)),
            ("0b101", json!(5)),
            ("+12", json!(12)),
            ("1e3", json!(1000.0)),
            (".5", json!(0.5)),
            ("~", json!(null)),
            ("Null", json!(null)),
            ("nUll", json!("nUll")),
            ("_1", json!("_1")),
            ("1_0x", json!("1_0x")),
            ("2026-01-01", json!("2026-01-01")),
            ("190:20:30", json!("190:20:30")),
            ("12:30", json!("12:30")),
            ("0x", json!("0x")),
            ("1e", json!("1e")),
            ("=", json!("=")),
        ];
        for (plain, read) in cases {
            let v = parse(&format!("a: {plain}\nb: '{plain}'\nc: \"{plain}\"\n")).unwrap();
            assert_eq!(v["a"], read, "{plain}");
            assert_eq!(v["b"], json!(plain), "'{plain}'");
            assert_eq!(v["c"], json!(plain), "\"{plain}\"");
        }
        let v = parse("yes: 1\n0x1F: 2\n").unwrap();
        assert_eq!(v, json!({"true": 1, "31": 2}));
        assert!(parse("a: !custom x\n").is_err());
        assert!(parse("a: .inf\n").is_err());
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
        // Where the repeated key is.
        let e = read_documents("kind: x\nspec:\n  a: 1\nspec:\n  a: 2\n").unwrap_err();
        assert_eq!(e.at, Some((4, 1)), "{e:?}");
        assert_eq!(e.message, "duplicate key \"spec\" in a mapping");
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
