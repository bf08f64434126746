//! Reads a policy document (JSON from Envoy, or YAML in the CLI) into a
//! `serde_json::Value`, refusing what `Value` would silently make ambiguous:
//! a key given twice (`Value` keeps the last) and `null` as a field value
//! (serde reads it as "absent", so `routes: null` would mean every route).
//! Both are reported with their path and reading goes on, so every error is
//! still listed. Nesting depth is bounded by the format's recursion limit
//! (serde_json: 128; the CLI checks YAML's depth before reading it), and the
//! work is linear in the input.

use super::errors::PolicyErrors;
use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

pub const DUPLICATE_KEY: &str = "duplicate key";
pub const NULL_VALUE: &str = "null is not allowed: leave the field out or give a value";

/// A document read strictly: its value and what was refused in it.
#[derive(Debug, Default)]
pub struct Read {
    pub value: Value,
    pub errors: PolicyErrors,
    /// Paths of `null` fields left out of `value`, so a required field that
    /// was `null` is not also reported as missing.
    pub nulls: HashSet<String>,
}

/// Most errors reported while reading: a path can be as long as the
/// document, so rendering one per duplicate key could be quadratic.
const MAX_ERRORS: usize = 64;

/// Reads one document from any serde format.
pub fn read<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Read, D::Error> {
    let state = RefCell::new(State::default());
    let value = Seed { state: &state }.deserialize(deserializer)?;
    let state = state.into_inner();
    Ok(Read {
        value,
        errors: state.errors,
        nulls: state.nulls,
    })
}

#[derive(Default)]
struct State {
    /// Where the reader is; rendered only for an error.
    path: Vec<Segment>,
    errors: PolicyErrors,
    nulls: HashSet<String>,
}

enum Segment {
    Key(String),
    Index(usize),
}

impl State {
    fn report(&mut self, message: &str) {
        if self.errors.len() >= MAX_ERRORS {
            return;
        }
        let mut path = String::new();
        for segment in &self.path {
            match segment {
                Segment::Key(key) if path.is_empty() => path.push_str(key),
                Segment::Key(key) => {
                    path.push('.');
                    path.push_str(key);
                }
                Segment::Index(i) => path.push_str(&format!("[{i}]")),
            }
        }
        if message == NULL_VALUE {
            self.nulls.insert(path.clone());
        }
        self.errors.push(path, message);
    }
}

/// `v`'s `Display` for the values `Number` refuses (NaN and the infinities),
/// written out: formatting an `f64` links core's float printing (about
/// 13 KB of tollgate.wasm) for a message only YAML can cause.
fn non_finite(v: f64) -> &'static str {
    if v.is_nan() {
        "NaN"
    } else if v < 0.0 {
        "-inf"
    } else {
        "inf"
    }
}

#[derive(Clone, Copy)]
struct Seed<'a> {
    state: &'a RefCell<State>,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
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

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        // YAML has .inf and .nan, which JSON (and Value) cannot hold.
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format_args!("{} is not a finite number", non_finite(v))))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
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

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        loop {
            self.state.borrow_mut().path.push(Segment::Index(items.len()));
            let item = seq.next_element_seed(self);
            self.state.borrow_mut().path.pop();
            match item? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.state.borrow_mut().path.push(Segment::Key(key));
            let value = map.next_value_seed(self)?;
            let mut state = self.state.borrow_mut();
            if let Some(Segment::Key(key)) = state.path.last() {
                if out.contains_key(key) {
                    state.report(DUPLICATE_KEY);
                } else if value.is_null() {
                    state.report(NULL_VALUE);
                }
            }
            if let Some(Segment::Key(key)) = state.path.pop() {
                // A null stays until the end so that a later duplicate is seen.
                out.entry(key).or_insert(value);
            }
        }
        out.retain(|_, value| !value.is_null());
        Ok(Value::Object(out))
    }

    fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<Value, E> {
        Err(E::custom("binary data is not allowed"))
    }

    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, _: A) -> Result<Value, A::Error> {
        Err(A::Error::custom("tagged values are not allowed"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn non_finite_is_what_display_writes() {
        for v in [f64::NAN, -f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(super::non_finite(v), v.to_string());
        }
    }
}
