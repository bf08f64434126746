//! The Avro contract of the audit event, shared by core's `avro_tests` and
//! the integration tests' `common/audit.rs` (included there by `#[path]`):
//! an event's JSON resolves against `schemas/audit-event.avsc` as plain JSON
//! values, encodes to an Avro datum, and that datum decodes back to the same
//! JSON (numbers by value, an absent optional field as null).

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value as Avro;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use serde_json::{Map, Value};

/// Ok when `event` holds to `schema` as above; else what went wrong.
pub fn avro_round_trip(schema: &Schema, event: &Value) -> Result<(), String> {
    let value = Avro::try_from(event.clone())
        .and_then(|v| v.resolve(schema))
        .map_err(|e| format!("does not resolve: {e}"))?;
    let writer = GenericDatumWriter::builder(schema).build().map_err(|e| e.to_string())?;
    let datum = writer
        .write_value_to_vec(value)
        .map_err(|e| format!("does not encode: {e}"))?;
    let reader = GenericDatumReader::builder(schema).build().map_err(|e| e.to_string())?;
    let back = reader
        .read_value(&mut datum.as_slice())
        .map_err(|e| format!("does not decode: {e}"))?;
    let back = Value::try_from(back).map_err(|e| format!("does not read back as JSON: {e}"))?;
    if same_json(event, &back) {
        Ok(())
    } else {
        Err(format!("reads back as {back}"))
    }
}

/// Equal as JSON, numbers by value (Avro has `int`, `long` and `double`;
/// 3 and 3.0 are one JSON number) and an absent member as null.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            let member = |o: &Map<String, Value>, k: &String| o.get(k).cloned().unwrap_or(Value::Null);
            x.keys()
                .chain(y.keys())
                .all(|k| same_json(&member(x, k), &member(y, k)))
        }
        _ => a == b,
    }
}
