//! What the audit tests read back: the event JSON Schema
//! (`schemas/audit-event.schema.json`, with the `jsonschema` validator),
//! the event Avro schema (`schemas/audit-event.avsc`, with `apache-avro`)
//! and OTLP bodies (the OpenTelemetry project's protobuf types). All are
//! dev-dependencies, so they live here, not in the harness's `sink`.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use serde_json::Value;
use tollgate_integration::paths;

#[path = "../../../filters/core/src/audit/avro_check.rs"]
mod avro_check;
use tollgate_integration::sink::{Record, OTLP_CONTENT_TYPE};

pub fn validator() -> jsonschema::Validator {
    let path = paths::repo_root().join("schemas/audit-event.schema.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Panics with every schema error of every event that has one: against
/// the JSON Schema, and against the Avro schema (`avro_valid`).
pub fn assert_schema_valid(events: &[Value]) {
    let validator = validator();
    let avro = avro_schema();
    for event in events {
        let errors: Vec<String> = validator.iter_errors(event).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "schema errors {errors:?} in {event}");
        if let Err(e) = avro_valid_with(&avro, event) {
            panic!("Avro schema: {e} in {event}");
        }
    }
}

pub fn avro_schema() -> apache_avro::Schema {
    let path = paths::repo_root().join("schemas/audit-event.avsc");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    apache_avro::Schema::parse_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Whether a record's value holds to `schemas/audit-event.avsc` as the
/// README states it: its JSON resolves against the schema as plain JSON
/// values (a nullable field the value or null), encodes to an Avro datum,
/// and that datum decodes back to the same JSON (numbers by value, an
/// absent optional field as null). Core's `avro_tests` hold the same
/// contract for the events the unit tests make.
pub fn avro_valid(value: &Value) -> Result<(), String> {
    avro_valid_with(&avro_schema(), value)
}

pub fn avro_valid_with(schema: &apache_avro::Schema, value: &Value) -> Result<(), String> {
    avro_check::avro_round_trip(schema, value)
}

/// Each OTLP request a POST to `path` (`application/json`), read as an
/// `ExportLogsServiceRequest`.
pub fn otlp_exports(records: &[Record], path: &str) -> Result<Vec<ExportLogsServiceRequest>, String> {
    records
        .iter()
        .map(|record| {
            record.check(path, OTLP_CONTENT_TYPE)?;
            serde_json::from_slice(&record.body).map_err(|e| format!("otlp body: {e}"))
        })
        .collect()
}

/// The events of OTLP batches: each log record's body, a string holding
/// the event's JSON.
pub fn otlp_events(records: &[Record], path: &str) -> Result<Vec<Value>, String> {
    let mut events = Vec::new();
    for export in otlp_exports(records, path)? {
        let logs = export.resource_logs.iter().flat_map(|r| &r.scope_logs);
        for record in logs.flat_map(|s| &s.log_records) {
            let body = record.body.as_ref().and_then(|b| b.value.as_ref());
            let Some(Any::StringValue(text)) = body else {
                return Err(format!("otlp log record body is not a string: {body:?}"));
            };
            events.push(serde_json::from_str(text).map_err(|e| format!("otlp body {text:?}: {e}"))?);
        }
    }
    Ok(events)
}
