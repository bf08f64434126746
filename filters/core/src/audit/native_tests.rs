//! Checks with native-only parsers: the event JSON Schema (the `jsonschema`
//! crate) and OTLP JSON read back by OpenTelemetry's protobuf types.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use super::encode::OTLP_CONTENT_TYPE;
use super::tests::{compiled, decision, keep_config, mixed_batch, Fixture, TENANT_SOURCES};
use super::*;
use crate::Mode;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use serde_json::{json, Value};

const SCHEMA: &str = include_str!("../../../../schemas/audit-event.schema.json");

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    jsonschema::draft202012::new(&schema).unwrap()
}

fn assert_valid(validator: &jsonschema::Validator, event: &Value) {
    let errors: Vec<String> = validator.iter_errors(event).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?} in {event}");
}

/// Events of every shape the tests make: full, bare, refused before any
/// stage, each event type, both query modes.
pub(super) fn every_test_event() -> Vec<Value> {
    let f = Fixture::leaky();
    let mut events: Vec<Value> = mixed_batch()
        .iter()
        .map(|q| serde_json::from_slice(&q.json).unwrap())
        .collect();
    let (drop, _) = compiled(json!({"sink": {"format": "log"}}));
    for config in [keep_config(), drop] {
        events.push(serde_json::to_value(build(&f.inputs(TENANT_SOURCES), &config)).unwrap());
    }
    let mut bare = f.inputs(&[]);
    let early = [decision(
        "request",
        Mode::Enforce,
        Outcome::Deny,
        Some("path_invalid"),
        None,
    )];
    let empty = serde_json::Map::new();
    bare.decisions = &early;
    bare.claims = &empty;
    bare.roles = &[];
    bare.route = None;
    bare.service = None;
    bare.namespace = None;
    bare.source_principal = None;
    bare.source_ip = None;
    bare.subject = None;
    bare.tenant = None;
    bare.tier = None;
    bare.request_id = None;
    bare.traceparent = Some(b"garbage");
    bare.now_nanos = 0;
    bare.random = [0xff; 16];
    events.push(serde_json::to_value(build(&bare, &keep_config())).unwrap());
    events
}

#[test]
fn every_test_event_matches_the_schema() {
    let validator = validator();
    let events = every_test_event();
    assert!(events.len() >= 8);
    for event in &events {
        assert_valid(&validator, event);
    }
}

#[test]
fn the_schema_refuses_what_an_event_must_not_be() {
    let validator = validator();
    let good = every_test_event().remove(0);
    let mut bad = Vec::new();
    for (field, value) in [
        ("event_id", json!("07070707-0707-1707-8707-070707070707")),
        ("time", json!("2024-02-29T12:34:56Z")),
        ("event_type", json!("read")),
        ("trace_id", json!("4BF92F3577B34DA6A3CE929D0E0E4736")),
        ("headers", json!({"authorization": "Bearer x"})),
        ("schema_version", json!(2)),
        ("token", json!("x")),
    ] {
        let mut event = good.clone();
        event[field] = value;
        bad.push(event);
    }
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("decisions");
    bad.push(missing);
    for event in bad {
        assert!(!validator.is_valid(&event), "{event}");
    }
}

#[test]
fn otlp_json_reads_back_as_an_export_logs_request() {
    let batch = mixed_batch();
    let observed = 1_709_210_100_000_000_007u64;
    let requests = encode(Format::Otlp, "/v1/logs", "datahub", observed, batch.clone());
    assert_eq!(requests.len(), 1);
    let (request, events) = &requests[0];
    assert_eq!(
        (request.path.as_str(), request.content_type),
        ("/v1/logs", OTLP_CONTENT_TYPE)
    );
    assert_eq!(events, &batch);

    let export: ExportLogsServiceRequest = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(export.resource_logs.len(), 1);
    let resource_logs = &export.resource_logs[0];
    let resource = resource_logs.resource.as_ref().unwrap();
    assert_eq!(resource.attributes[0].key, "service.name");
    let service = resource.attributes[0].value.as_ref().unwrap().value.as_ref().unwrap();
    assert_eq!(service, &Any::StringValue("datahub".into()));
    let scope_logs = &resource_logs.scope_logs[0];
    assert_eq!(scope_logs.scope.as_ref().unwrap().name, "tollgate");
    assert_eq!(scope_logs.log_records.len(), batch.len());
    for (record, event) in scope_logs.log_records.iter().zip(&batch) {
        assert_eq!(record.time_unix_nano, event.time_nanos);
        assert_eq!(record.observed_time_unix_nano, observed);
        let (number, text) = if event.refused { (13, "WARN") } else { (9, "INFO") };
        assert_eq!((record.severity_number, record.severity_text.as_str()), (number, text));
        let body = record.body.as_ref().unwrap().value.as_ref().unwrap();
        let Any::StringValue(body) = body else {
            panic!("body is not a string: {body:?}")
        };
        assert_eq!(body.as_bytes(), event.json.as_slice());
        let trace: String = record.trace_id.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(Some(trace).filter(|t| !t.is_empty()), event.trace_id);
        let attributes: Vec<(&str, &Option<Any>)> = record
            .attributes
            .iter()
            .map(|kv| (kv.key.as_str(), &kv.value.as_ref().unwrap().value))
            .collect();
        assert_eq!(
            attributes[0],
            ("event.type", &Some(Any::StringValue(event.event_type.as_str().into())))
        );
        let tenant = event.tenant.clone().map(Any::StringValue);
        assert_eq!(attributes.get(1).map(|(_, v)| (*v).clone()), tenant.map(Some));
    }
    // 64-bit integers are JSON strings, as the OTLP JSON mapping has them.
    let raw: Value = serde_json::from_slice(&request.body).unwrap();
    let first = &raw["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
    assert_eq!(first["timeUnixNano"], json!(batch[0].time_nanos.to_string()));
    assert_eq!(first["observedTimeUnixNano"], json!(observed.to_string()));
    assert_eq!(first["traceId"], json!("4bf92f3577b34da6a3ce929d0e0e4736"));
}
