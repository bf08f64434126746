//! The Avro schema (`schemas/audit-event.avsc`) and the JSON Schema
//! (`schemas/audit-event.schema.json`) describe one event: the same
//! fields, each required or nullable alike, of the same types, with the
//! same enum symbols and nested records. And every event the tests make
//! holds to the Avro one as a consumer reads it: its JSON resolves against
//! the schema (`apache-avro`'s JSON value resolution: plain values, a
//! nullable field the value or null), encodes to an Avro datum and decodes
//! back to the same JSON.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use super::avro_check::avro_round_trip;
use super::native_tests::every_test_event;
use apache_avro::Schema;
use serde_json::{json, Map, Value};

const AVSC: &str = include_str!("../../../../schemas/audit-event.avsc");
const JSON_SCHEMA: &str = include_str!("../../../../schemas/audit-event.schema.json");

/// A type as both schema languages can say it.
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    String,
    Integer,
    Number,
    Boolean,
    Enum(Vec<String>),
    Array(Box<Shape>),
    Map(Box<Shape>),
    Record(Vec<Field>),
    /// Any JSON value: a free-form object's members.
    Json,
}

/// How a field may be missing: JSON Schema's `required` and a `null` in its
/// type; Avro's union with `null` and its default.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Presence {
    /// Present, never null.
    Required,
    /// Present, maybe null (JSON: required, type with `null`; Avro:
    /// `["null", T]`, default null).
    Nullable,
    /// May be absent (JSON: not required; Avro: a default).
    Optional,
}

#[derive(Debug, Clone, PartialEq)]
struct Field {
    name: String,
    presence: Presence,
    shape: Shape,
}

// ------------------------------------------------------------ JSON Schema

fn json_shape(at: &str, schema: &Value) -> (bool, Shape) {
    if schema.get("const").is_some_and(Value::is_i64) {
        return (false, Shape::Integer);
    }
    if let Some(symbols) = schema.get("enum").and_then(Value::as_array) {
        let symbols = symbols.iter().map(|s| s.as_str().unwrap().to_string()).collect();
        return (false, Shape::Enum(symbols));
    }
    let (nullable, kind) = match &schema["type"] {
        Value::String(t) => (false, t.clone()),
        Value::Array(types) => {
            let names: Vec<&str> = types.iter().map(|t| t.as_str().unwrap()).collect();
            let other: Vec<&str> = names.iter().copied().filter(|t| *t != "null").collect();
            assert_eq!(other.len(), 1, "{at}: one type besides null, not {names:?}");
            (names.contains(&"null"), other[0].to_string())
        }
        other => panic!("{at}: no type in the JSON Schema ({other})"),
    };
    let shape = match kind.as_str() {
        "string" => Shape::String,
        "integer" => Shape::Integer,
        "number" => Shape::Number,
        "boolean" => Shape::Boolean,
        "array" => Shape::Array(Box::new(json_shape(&format!("{at}[]"), &schema["items"]).1)),
        "object" => json_object(at, schema),
        other => panic!("{at}: JSON Schema type {other} has no Avro twin here"),
    };
    (nullable, shape)
}

fn json_object(at: &str, schema: &Value) -> Shape {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().map(|n| n.as_str().unwrap()).collect())
            .unwrap_or_default();
        let fields = properties
            .iter()
            .map(|(name, property)| {
                let (nullable, shape) = json_shape(&format!("{at}.{name}"), property);
                let presence = match (required.contains(&name.as_str()), nullable) {
                    (true, false) => Presence::Required,
                    (true, true) => Presence::Nullable,
                    (false, false) => Presence::Optional,
                    (false, true) => panic!("{at}.{name}: nullable and optional: say one"),
                };
                Field {
                    name: name.clone(),
                    presence,
                    shape,
                }
            })
            .collect();
        return Shape::Record(fields);
    }
    match schema.get("additionalProperties") {
        Some(values @ Value::Object(_)) => Shape::Map(Box::new(json_shape(&format!("{at}{{}}"), values).1)),
        _ => Shape::Map(Box::new(Shape::Json)),
    }
}

// ------------------------------------------------------------------- Avro

/// The union a JSON value of a free-form object becomes: a scalar, an
/// array of scalars or an object of scalars.
fn json_value_union() -> Value {
    let scalars = json!(["null", "boolean", "long", "double", "string"]);
    let mut union = scalars.as_array().unwrap().clone();
    union.push(json!({"type": "array", "items": scalars}));
    union.push(json!({"type": "map", "values": scalars}));
    Value::Array(union)
}

fn avro_shape(at: &str, schema: &Value) -> Shape {
    match schema {
        Value::String(name) => match name.as_str() {
            "string" => Shape::String,
            "int" | "long" => Shape::Integer,
            "float" | "double" => Shape::Number,
            "boolean" => Shape::Boolean,
            other => panic!("{at}: Avro type {other} has no JSON Schema twin here"),
        },
        Value::Array(_) => {
            assert_eq!(
                schema,
                &json_value_union(),
                "{at}: the only union besides null is a JSON value"
            );
            Shape::Json
        }
        Value::Object(object) => match object["type"].as_str().unwrap() {
            "enum" => Shape::Enum(
                object["symbols"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_string())
                    .collect(),
            ),
            "array" => Shape::Array(Box::new(avro_shape(&format!("{at}[]"), &object["items"]))),
            "map" => Shape::Map(Box::new(avro_shape(&format!("{at}{{}}"), &object["values"]))),
            "record" => Shape::Record(avro_fields(at, object)),
            _ => avro_shape(at, &object["type"]),
        },
        other => panic!("{at}: not an Avro schema: {other}"),
    }
}

fn avro_fields(at: &str, record: &Map<String, Value>) -> Vec<Field> {
    let fields = record["fields"].as_array().unwrap();
    fields
        .iter()
        .map(|f| {
            let name = f["name"].as_str().unwrap().to_string();
            let at = format!("{at}.{name}");
            let (presence, shape) = avro_field(&at, &f["type"], f.get("default"));
            Field { name, presence, shape }
        })
        .collect()
}

/// A field's presence and shape: `["null", T]` must default to null; a
/// default on anything else makes the field optional.
fn avro_field(at: &str, ty: &Value, default: Option<&Value>) -> (Presence, Shape) {
    if let Value::Array(union) = ty {
        if union.first() == Some(&json!("null")) && union.len() == 2 {
            assert_eq!(default, Some(&Value::Null), "{at}: [\"null\", T] defaults to null");
            return (Presence::Nullable, avro_shape(at, &union[1]));
        }
    }
    let presence = if default.is_some() {
        Presence::Optional
    } else {
        Presence::Required
    };
    (presence, avro_shape(at, ty))
}

// -------------------------------------------------------------- comparing

/// Every difference, each naming the field it is about.
fn differences(at: &str, json: &Shape, avro: &Shape, out: &mut Vec<String>) {
    match (json, avro) {
        (Shape::Record(j), Shape::Record(a)) => {
            for field in j {
                match a.iter().find(|f| f.name == field.name) {
                    None => out.push(format!(
                        "{at}.{}: in the JSON Schema, not in the Avro schema",
                        field.name
                    )),
                    Some(twin) => compare_fields(&format!("{at}.{}", field.name), field, twin, out),
                }
            }
            for field in a.iter().filter(|f| !j.iter().any(|g| g.name == f.name)) {
                out.push(format!(
                    "{at}.{}: in the Avro schema, not in the JSON Schema",
                    field.name
                ));
            }
        }
        (Shape::Array(j), Shape::Array(a)) => differences(&format!("{at}[]"), j, a, out),
        (Shape::Map(j), Shape::Map(a)) => differences(&format!("{at}{{}}"), j, a, out),
        (j, a) if j == a => {}
        (j, a) => out.push(format!("{at}: JSON Schema says {j:?}, Avro says {a:?}")),
    }
}

fn compare_fields(at: &str, json: &Field, avro: &Field, out: &mut Vec<String>) {
    // An optional JSON field is, to an Avro reader, a default: null for a
    // scalar (absent reads as null), the empty value for a collection.
    let fits = match (json.presence, avro.presence) {
        (j, a) if j == a => true,
        (Presence::Optional, Presence::Nullable) => true,
        _ => false,
    };
    if !fits {
        out.push(format!(
            "{at}: {:?} in the JSON Schema, {:?} in the Avro schema",
            json.presence, avro.presence
        ));
    }
    differences(at, &json.shape, &avro.shape, out);
}

fn both() -> (Shape, Shape) {
    let json: Value = serde_json::from_str(JSON_SCHEMA).unwrap();
    let avro: Value = serde_json::from_str(AVSC).unwrap();
    (json_shape("event", &json).1, avro_shape("event", &avro))
}

#[test]
fn the_avro_schema_and_the_json_schema_describe_the_same_event() {
    let (json, avro) = both();
    let mut out = Vec::new();
    differences("event", &json, &avro, &mut out);
    assert!(out.is_empty(), "the schemas drifted apart:\n{}", out.join("\n"));
    let Shape::Record(fields) = &json else { panic!() };
    assert!(fields.len() >= 27, "every field compared: {}", fields.len());
}

/// What a drift is called, how to make it in the Avro schema, and how the
/// comparison must name it.
type Drift = (&'static str, fn(&mut Value), &'static str);

/// The comparison is not blind: each kind of drift is named.
#[test]
fn a_drift_between_the_schemas_names_the_field() {
    let json: Value = serde_json::from_str(JSON_SCHEMA).unwrap();
    let avro: Value = serde_json::from_str(AVSC).unwrap();
    let drifts: [Drift; 6] = [
        (
            "a field gone",
            |a| remove_field(a, "tier"),
            "event.tier: in the JSON Schema, not in the Avro schema",
        ),
        (
            "nullable lost",
            |a| set_field(a, "subject", json!({"name": "subject", "type": "string"})),
            "event.subject: Nullable",
        ),
        (
            "an enum symbol",
            |a| {
                set_field(
                    a,
                    "event_type",
                    json!({"name": "event_type", "type": {"type": "enum", "name": "EventType", "symbols": ["api_call", "data_access", "admin_operation"]}}),
                )
            },
            "event.event_type: JSON Schema says Enum",
        ),
        (
            "a type",
            |a| set_field(a, "status", json!({"name": "status", "type": "string"})),
            "event.status: JSON Schema says Integer",
        ),
        (
            "a nested record's field",
            |a| {
                let fields = a["fields"].as_array_mut().unwrap();
                let decisions = fields.iter_mut().find(|f| f["name"] == "decisions").unwrap();
                decisions["type"]["items"]["fields"].as_array_mut().unwrap().pop();
            },
            "event.decisions[].detail: in the JSON Schema, not in the Avro schema",
        ),
        (
            "a field added",
            |a| {
                a["fields"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "token", "type": "string"}));
            },
            "event.token: in the Avro schema, not in the JSON Schema",
        ),
    ];
    for (what, drift, expected) in drifts {
        let mut changed = avro.clone();
        drift(&mut changed);
        let mut out = Vec::new();
        differences(
            "event",
            &json_shape("event", &json).1,
            &avro_shape("event", &changed),
            &mut out,
        );
        assert!(out.iter().any(|d| d.starts_with(expected)), "{what}: {out:?}");
    }
}

fn remove_field(avro: &mut Value, name: &str) {
    avro["fields"].as_array_mut().unwrap().retain(|f| f["name"] != name);
}

fn set_field(avro: &mut Value, name: &str, field: Value) {
    let fields = avro["fields"].as_array_mut().unwrap();
    *fields.iter_mut().find(|f| f["name"] == name).unwrap() = field;
}

// ------------------------------------------------------------ the events

fn schema() -> Schema {
    Schema::parse_str(AVSC).unwrap()
}

#[test]
fn every_test_event_holds_to_the_avro_schema() {
    let schema = schema();
    let events = every_test_event();
    assert!(events.len() >= 8);
    for event in &events {
        if let Err(e) = avro_round_trip(&schema, event) {
            panic!("{e}: {event}");
        }
    }
}

/// The check is not blind: events the schema does not describe fail it.
#[test]
fn the_avro_check_refuses_what_an_event_must_not_be() {
    let schema = schema();
    let good = every_test_event().remove(0);
    let bad = [
        ("event_type", json!("read")),
        ("status", json!("200")),
        ("roles", json!("admin")),
        ("tenant", json!(7)),
        ("token", json!("x")),
        (
            "decisions",
            json!([{"stage": "jwt", "mode": "enforce", "outcome": "maybe"}]),
        ),
        ("claims", json!({"deep": [{"a": 1}]})),
    ];
    for (field, value) in bad {
        let mut event = good.clone();
        event[field] = value;
        assert!(avro_round_trip(&schema, &event).is_err(), "{field}: {event}");
    }
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("decisions");
    assert!(avro_round_trip(&schema, &missing).is_err());
    let mut claims = good;
    claims["claims"] = json!({"groups": ["a", "b"], "aud": {"x": 1, "y": null}, "n": 1.5, "ok": true});
    avro_round_trip(&schema, &claims).unwrap();
}
