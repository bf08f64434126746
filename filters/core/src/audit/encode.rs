//! Batches of events as the sinks take them: Kafka REST Proxy v2 records
//! (one request per topic), OTLP/HTTP JSON logs, or JSON lines.

use super::config::{EventType, Format};
use super::event::Event;
use serde::Serialize;

pub const KAFKA_CONTENT_TYPE: &str = "application/vnd.kafka.json.v2+json";
pub const OTLP_CONTENT_TYPE: &str = "application/json";
pub const JSONL_CONTENT_TYPE: &str = "application/x-ndjson";

/// An event serialized once, with what the encoders need beside its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub event_type: EventType,
    /// The Kafka key.
    pub tenant: Option<String>,
    pub time_nanos: u64,
    pub trace_id: Option<String>,
    pub refused: bool,
    /// The event's JSON object.
    pub json: Vec<u8>,
}

impl Queued {
    /// `time_nanos`: the same clock reading the event's `time` came from.
    pub fn new(event: &Event, time_nanos: u64) -> Queued {
        Queued {
            event_type: event.event_type,
            tenant: event.tenant.clone(),
            time_nanos,
            trace_id: event.trace_id.clone(),
            refused: event.refused(),
            json: serde_json::to_vec(event).unwrap_or_default(),
        }
    }
}

impl Queued {
    /// The event for a request, written straight from its inputs
    /// (`write::event_json`), as `new(&build(inputs, config), now)` makes it.
    pub fn from_inputs(inputs: &super::event::Inputs<'_>, config: &super::config::AuditConfig) -> Queued {
        Queued {
            event_type: inputs.event_type,
            tenant: inputs.tenant.map(str::to_string),
            time_nanos: inputs.now_nanos,
            trace_id: inputs.traceparent.and_then(super::ids::trace_id),
            refused: inputs.decisions.iter().any(super::event::Decision::refused),
            json: super::write::event_json(inputs, config),
        }
    }
}

/// One POST to the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// The requests for a batch, each with the events it carries (to requeue
/// them if it fails). `log` sends nothing: the stage logs each event.
/// `observed_nanos`: now, for OTLP's `observedTimeUnixNano`.
pub fn encode(
    format: Format,
    path: &str,
    service: &str,
    observed_nanos: u64,
    batch: Vec<Queued>,
) -> Vec<(Request, Vec<Queued>)> {
    if batch.is_empty() {
        return Vec::new();
    }
    match format {
        Format::Jsonl => {
            let request = jsonl(path, &batch);
            vec![(request, batch)]
        }
        Format::Otlp => {
            let request = otlp(path, service, observed_nanos, &batch);
            vec![(request, batch)]
        }
        Format::KafkaRest => by_topic(batch)
            .into_iter()
            .map(|(event_type, events)| (kafka_rest(path, event_type, &events), events))
            .collect(),
        Format::Log => Vec::new(),
    }
}

/// Splits a batch by event type, keeping order within each.
pub fn by_topic(batch: Vec<Queued>) -> Vec<(EventType, Vec<Queued>)> {
    let mut groups: Vec<(EventType, Vec<Queued>)> = Vec::new();
    for event in batch {
        match groups.iter_mut().find(|(t, _)| *t == event.event_type) {
            Some((_, events)) => events.push(event),
            None => groups.push((event.event_type, vec![event])),
        }
    }
    groups
}

pub fn jsonl(path: &str, batch: &[Queued]) -> Request {
    let mut body = Vec::with_capacity(batch.iter().map(|e| e.json.len() + 1).sum());
    for event in batch {
        body.extend_from_slice(&event.json);
        body.push(b'\n');
    }
    Request {
        path: path.to_string(),
        content_type: JSONL_CONTENT_TYPE,
        body,
    }
}

/// `{"records":[{"key":<tenant or null>,"value":<event>},...]}` to
/// `<base>/topics/<topic>`; every event of `batch` is of `event_type`.
pub fn kafka_rest(base: &str, event_type: EventType, batch: &[Queued]) -> Request {
    let mut body = Vec::with_capacity(16 + batch.iter().map(|e| e.json.len() + 40).sum::<usize>());
    body.extend_from_slice(b"{\"records\":[");
    for (i, event) in batch.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"key\":");
        let _ = serde_json::to_writer(&mut body, &event.tenant);
        body.extend_from_slice(b",\"value\":");
        body.extend_from_slice(&event.json);
        body.push(b'}');
    }
    body.extend_from_slice(b"]}");
    Request {
        path: format!("{}/topics/{}", base.trim_end_matches('/'), event_type.topic()),
        content_type: KAFKA_CONTENT_TYPE,
        body,
    }
}

// OTLP/HTTP JSON (the protobuf JSON mapping with OTLP's exceptions):
// lowerCamelCase names, 64-bit integers as strings, trace ids as hex.

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LogsRequest<'a> {
    resource_logs: [ResourceLogs<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceLogs<'a> {
    resource: Resource<'a>,
    scope_logs: [ScopeLogs<'a>; 1],
}

#[derive(Serialize)]
struct Resource<'a> {
    attributes: Vec<KeyValue<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ScopeLogs<'a> {
    scope: Scope,
    log_records: Vec<LogRecord<'a>>,
}

#[derive(Serialize)]
struct Scope {
    name: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LogRecord<'a> {
    time_unix_nano: String,
    observed_time_unix_nano: String,
    severity_number: u8,
    severity_text: &'static str,
    body: AnyValue<'a>,
    attributes: Vec<KeyValue<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
}

#[derive(Serialize)]
struct KeyValue<'a> {
    key: &'static str,
    value: AnyValue<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AnyValue<'a> {
    string_value: &'a str,
}

/// OTLP severity numbers: INFO for allowed requests, WARN for refused ones.
const INFO: u8 = 9;
const WARN: u8 = 13;

fn text(value: &str) -> AnyValue<'_> {
    AnyValue { string_value: value }
}

/// One `ExportLogsServiceRequest`: each event a log record whose body is
/// the event's JSON as a string (collectors parse it, and the body stays
/// the same bytes the other formats send).
pub fn otlp(path: &str, service: &str, observed_nanos: u64, batch: &[Queued]) -> Request {
    let observed = observed_nanos.to_string();
    let records = batch.iter().map(|event| record(event, &observed)).collect();
    let request = LogsRequest {
        resource_logs: [ResourceLogs {
            resource: Resource {
                attributes: vec![KeyValue {
                    key: "service.name",
                    value: text(service),
                }],
            },
            scope_logs: [ScopeLogs {
                scope: Scope { name: "tollgate" },
                log_records: records,
            }],
        }],
    };
    Request {
        path: path.to_string(),
        content_type: OTLP_CONTENT_TYPE,
        body: serde_json::to_vec(&request).unwrap_or_default(),
    }
}

fn record<'a>(event: &'a Queued, observed: &str) -> LogRecord<'a> {
    // Serde wrote the JSON: it is UTF-8.
    let body = std::str::from_utf8(&event.json).unwrap_or_default();
    let mut attributes = vec![KeyValue {
        key: "event.type",
        value: text(event.event_type.as_str()),
    }];
    if let Some(tenant) = &event.tenant {
        attributes.push(KeyValue {
            key: "tenant",
            value: text(tenant),
        });
    }
    LogRecord {
        time_unix_nano: event.time_nanos.to_string(),
        observed_time_unix_nano: observed.to_string(),
        severity_number: if event.refused { WARN } else { INFO },
        severity_text: if event.refused { "WARN" } else { "INFO" },
        body: text(body),
        attributes,
        trace_id: event.trace_id.as_deref(),
    }
}
