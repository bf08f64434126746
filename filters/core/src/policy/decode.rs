//! Serde decoding that reports every field error, not just the first.
//!
//! serde stops at the first error. We decode, record the error with its path,
//! remove the offending field from the JSON value and decode again, a bounded
//! number of times. A missing required field cannot be repaired that way, so
//! it ends the item (lists are decoded item by item, so other items go on).

use super::errors::{join, PolicyErrors};
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_path_to_error::Segment;

pub const MISSING: &str = "missing required field";

/// Most errors collected from one item before giving up on it.
const MAX_ERRORS_PER_ITEM: usize = 32;

#[cfg(test)]
thread_local! {
    /// Decode passes made on this thread: tests bound the work per item.
    pub static PASSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

pub fn decode<T: DeserializeOwned>(mut value: Value, base: &str, errors: &mut PolicyErrors) -> Option<T> {
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..MAX_ERRORS_PER_ITEM {
        #[cfg(test)]
        PASSES.with(|p| p.set(p.get() + 1));
        let err = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(decoded) => return Some(decoded),
            Err(err) => err,
        };
        let segments: Vec<Segment> = err.path().iter().cloned().collect();
        let message = err.inner().to_string();
        if quoted_after(&message, "unknown field `").is_some() {
            // The path already ends at the unknown field.
            errors.push(render(base, &segments), "unknown field");
        } else if let Some(field) = quoted_after(&message, "missing field `") {
            let at = join(&render(base, &segments), &field);
            // Already reported as a bad value we removed: say it once.
            if !removed.contains(&at) {
                errors.push(at, MISSING);
            }
            return None;
        } else {
            let at = render(base, &segments);
            errors.push(at.clone(), message);
            removed.push(at);
        }
        if segments.is_empty() || !remove(&mut value, &segments) {
            return None;
        }
    }
    None
}

fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next().map(str::to_string)
}

fn render(base: &str, segments: &[Segment]) -> String {
    let mut out = base.to_string();
    for segment in segments {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => out = join(&out, key),
            Segment::Enum { variant } => out = join(&out, variant),
            Segment::Unknown => out = join(&out, "?"),
        }
    }
    out
}

fn remove(value: &mut Value, segments: &[Segment]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut at = value;
    for segment in parents {
        let next = match (segment, at) {
            (Segment::Map { key }, Value::Object(map)) => map.get_mut(key),
            (Segment::Seq { index }, Value::Array(items)) => items.get_mut(*index),
            _ => None,
        };
        match next {
            Some(next) => at = next,
            None => return false,
        }
    }
    match (last, at) {
        (Segment::Map { key }, Value::Object(map)) => map.remove(key).is_some(),
        (Segment::Seq { index }, Value::Array(items)) if *index < items.len() => {
            items.remove(*index);
            true
        }
        _ => false,
    }
}
