//! Reading a task's untrusted JSON: how a value of the wrong type is named
//! in an error, integers held to a range, and the top-level key given twice
//! (which JSON parsers disagree on). The parse and the scheduling fields
//! stand on these; `trust` uses the duplicate-key check on signed bytes.

use serde_json::Value;

use super::error::TaskError;

pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number written with a decimal point or an exponent",
        Value::Number(n) if n.is_i64() && n.as_i64().is_some_and(|i| i < 0) => "a negative number",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) fn wrong(field: &'static str, expected: &'static str, found: &Value) -> TaskError {
    TaskError::WrongType {
        field,
        expected,
        found: type_name(found),
    }
}

pub(super) fn bounded_int(
    v: &Value,
    field: &'static str,
    min: u64,
    max: u64,
) -> Result<u64, TaskError> {
    let Value::Number(n) = v else {
        return Err(wrong(field, "an integer", v));
    };
    let out_of_range = || TaskError::OutOfRange {
        field,
        value: n.to_string(),
        min,
        max,
    };
    if n.is_f64() {
        return Err(wrong(field, "an integer", v));
    }
    match n.as_u64() {
        Some(x) if (min..=max).contains(&x) => Ok(x),
        _ => Err(out_of_range()),
    }
}

/// The first top-level key of a JSON object that appears twice, if any.
pub(crate) fn duplicate_key(text: &str) -> Option<String> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

    struct FirstDuplicate(Option<String>);
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = FirstDuplicate;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FirstDuplicate, A::Error> {
            let mut seen = std::collections::BTreeSet::new();
            let mut first = None;
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                if first.is_none() && seen.contains(&key) {
                    first = Some(key);
                } else {
                    seen.insert(key);
                }
            }
            Ok(FirstDuplicate(first))
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_map(Keys).ok().and_then(|d| d.0)
}

/// The first key given twice in a task file of one object or an array of
/// them (`submit --task-file`): the item (from 1; none for one object)
/// and the key.
pub(crate) fn duplicate_key_in_file(text: &str) -> Option<(Option<usize>, String)> {
    match serde_json::from_str::<Vec<&serde_json::value::RawValue>>(text) {
        Ok(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| duplicate_key(item.get()).map(|k| (Some(i + 1), k))),
        Err(_) => duplicate_key(text).map(|k| (None, k)),
    }
}
