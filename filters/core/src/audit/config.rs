//! The `audit` policy section and each route's `audit` (or
//! `defaults.audit`), checked and compiled.

use crate::policy::errors::{bounded, bounded_size, index, join, PolicyErrors};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::Duration;

/// Where events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Newline-delimited JSON, POSTed to `path`.
    #[default]
    Jsonl,
    /// Kafka REST Proxy v2 (or the Strimzi bridge): `<path>/topics/<topic>`.
    KafkaRest,
    /// OTLP/HTTP JSON logs.
    Otlp,
    /// Envoy's log, one line per event: for local debugging.
    Log,
}

impl Format {
    /// The path used when the policy gives none.
    pub fn default_path(self) -> &'static str {
        match self {
            Format::Jsonl => "/events",
            Format::KafkaRest | Format::Log => "",
            Format::Otlp => "/v1/logs",
        }
    }
}

/// What an event's `path` keeps of the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryMode {
    #[default]
    Drop,
    /// Kept, with `redact_params` and token parameters' values replaced.
    Keep,
}

/// What kind of record an event is; picks the Kafka topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    #[default]
    ApiCall,
    DataAccess,
    AdminOperation,
    UserAction,
}

impl EventType {
    /// Every type, so tools reading the trail name each topic from here.
    pub const ALL: [EventType; 4] = [
        EventType::ApiCall,
        EventType::DataAccess,
        EventType::AdminOperation,
        EventType::UserAction,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ApiCall => "api_call",
            EventType::DataAccess => "data_access",
            EventType::AdminOperation => "admin_operation",
            EventType::UserAction => "user_action",
        }
    }

    /// The Kafka topic of this type's events.
    pub fn topic(self) -> &'static str {
        match self {
            EventType::ApiCall => "audit-api-calls",
            EventType::DataAccess => "audit-data-access",
            EventType::AdminOperation => "audit-admin-operations",
            EventType::UserAction => "audit-user-actions",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SinkDoc {
    /// Default `jsonl`.
    #[serde(default)]
    pub format: Option<Format>,
    /// The cluster events are POSTed to; required unless `format: log`.
    #[serde(default)]
    pub cluster: Option<String>,
    /// jsonl: the POST path (default `/events`); kafka-rest: the base
    /// before `/topics/<topic>` (default empty); otlp: default `/v1/logs`.
    #[serde(default)]
    pub path: Option<String>,
    /// Default 1000, 1 to 60000.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditDoc {
    pub sink: SinkDoc,
    /// Events per POST: default 100, 1 to 10000.
    #[serde(default)]
    pub batch_size: Option<u64>,
    /// Default 1000, 10 to 3600000.
    #[serde(default)]
    pub flush_interval_ms: Option<u64>,
    /// Per worker, at least `batch_size`: default 10000, at most 1000000.
    #[serde(default)]
    pub buffer_events: Option<u64>,
    /// The only request headers copied into events (lower-case); default none.
    #[serde(default)]
    pub capture_headers: Option<Vec<String>>,
    /// Default `drop`.
    #[serde(default)]
    pub query: Option<QueryMode>,
    /// Query parameters whose values are replaced when `query: keep`.
    #[serde(default)]
    pub redact_params: Option<Vec<String>>,
}

/// A route's `audit`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteAuditDoc {
    /// Default `api_call`.
    #[serde(default)]
    pub event_type: Option<EventType>,
    /// Share of successful requests kept, 0.0 to 1.0 (default 1.0).
    /// Denials, shadow denials, failed responses and admin operations are
    /// always kept.
    #[serde(default)]
    pub sample: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sink {
    pub format: Format,
    /// Empty for `log`.
    pub cluster: String,
    pub path: String,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    pub sink: Sink,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub buffer_events: usize,
    /// Lower-case names.
    pub capture_headers: Vec<String>,
    pub query: QueryMode,
    pub redact_params: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouteAudit {
    pub event_type: EventType,
    pub sample: f64,
}

impl Default for RouteAudit {
    fn default() -> Self {
        RouteAudit {
            event_type: EventType::ApiCall,
            sample: 1.0,
        }
    }
}

/// Headers that carry credentials: never captured, whatever the policy.
pub const NEVER_CAPTURED: &[&str] = &["authorization", "cookie", "proxy-authorization", "set-cookie"];
const MAX_HEADERS: usize = 32;
const MAX_PARAMS: usize = 64;

impl AuditConfig {
    /// `at` is the section's path (`audit`). `forbidden`: more header names
    /// never captured (the jwt providers' token headers), any case.
    pub fn compile(doc: &AuditDoc, at: &str, forbidden: &[&str], errors: &mut PolicyErrors) -> AuditConfig {
        let sink = compile_sink(&doc.sink, &join(at, "sink"), errors);
        let batch_size = bounded_size(doc.batch_size, 100, 1..=10_000, &join(at, "batch_size"), errors);
        let flush_ms = bounded(
            doc.flush_interval_ms,
            1000,
            10..=3_600_000,
            &join(at, "flush_interval_ms"),
            errors,
        );
        let buffer_at = join(at, "buffer_events");
        let buffer_events = bounded_size(doc.buffer_events, 10_000, 1..=1_000_000, &buffer_at, errors);
        if buffer_events < batch_size {
            errors.push(
                buffer_at,
                format!("must be at least batch_size ({batch_size}), not {buffer_events}"),
            );
        }
        let capture_headers = compile_headers(
            doc.capture_headers.as_deref().unwrap_or_default(),
            &join(at, "capture_headers"),
            forbidden,
            errors,
        );
        let redact_params = compile_params(
            doc.redact_params.as_deref().unwrap_or_default(),
            &join(at, "redact_params"),
            errors,
        );
        AuditConfig {
            sink,
            batch_size,
            flush_interval: Duration::from_millis(flush_ms),
            buffer_events,
            capture_headers,
            query: doc.query.unwrap_or_default(),
            redact_params,
        }
    }
}

impl RouteAudit {
    /// `at`: the route's `audit` path (`routes[2].audit`).
    pub fn compile(doc: &RouteAuditDoc, at: &str, errors: &mut PolicyErrors) -> RouteAudit {
        let sample = doc.sample.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&sample) {
            // serde_json prints the number: `Display` for f64 would add ~11 KB
            // of float formatting to the module.
            let shown = match serde_json::Number::from_f64(sample) {
                Some(n) => n.to_string(),
                None => "NaN".to_string(),
            };
            errors.push(join(at, "sample"), format!("must be 0.0 to 1.0, not {shown}"));
        }
        RouteAudit {
            event_type: doc.event_type.unwrap_or_default(),
            sample: sample.clamp(0.0, 1.0),
        }
    }
}

fn compile_sink(doc: &SinkDoc, at: &str, errors: &mut PolicyErrors) -> Sink {
    let format = doc.format.unwrap_or_default();
    let cluster = doc.cluster.clone().unwrap_or_default();
    let cluster_at = join(at, "cluster");
    match (format, &doc.cluster) {
        (Format::Log, Some(_)) => errors.push(cluster_at, "not used with format log"),
        (Format::Log, None) => {}
        (_, None) => errors.push(cluster_at, "required unless format is log"),
        (_, Some(c)) if !printable(c, 255) => {
            errors.push(cluster_at, "must be a cluster name (1 to 255 printable characters)")
        }
        (_, Some(_)) => {}
    }
    let path = doc.path.clone().unwrap_or_else(|| format.default_path().to_string());
    let path_at = join(at, "path");
    if format == Format::Log && doc.path.is_some() {
        errors.push(path_at, "not used with format log");
    } else if !valid_path(&path, format) {
        errors.push(
            path_at,
            "must start with '/' and be printable, without '?' or '#' (at most 1024 bytes)",
        );
    }
    let timeout_ms = bounded(doc.timeout_ms, 1000, 1..=60_000, &join(at, "timeout_ms"), errors);
    Sink {
        format,
        cluster,
        path,
        timeout: Duration::from_millis(timeout_ms),
    }
}

fn printable(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Kafka REST's base may be empty (`/topics/<topic>` at the root).
fn valid_path(path: &str, format: Format) -> bool {
    if path.is_empty() {
        return matches!(format, Format::KafkaRest | Format::Log);
    }
    printable(path, 1024) && path.starts_with('/') && !path.contains(['?', '#'])
}

/// Many servers read `x_api_key` as `x-api-key`.
fn canonical(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

fn compile_headers(names: &[String], at: &str, forbidden: &[&str], errors: &mut PolicyErrors) -> Vec<String> {
    if names.len() > MAX_HEADERS {
        errors.push(at, format!("at most {MAX_HEADERS} headers"));
    }
    let never: HashSet<String> = NEVER_CAPTURED.iter().chain(forbidden).map(|n| canonical(n)).collect();
    let mut seen = HashSet::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let path = index(at, i);
        if let Err(why) = crate::policy::headers::check_name(name) {
            errors.push(path, why);
        } else if name.bytes().any(|b| b.is_ascii_uppercase()) {
            errors.push(path, format!("'{name}' must be a lower-case header name"));
        } else if never.contains(&canonical(name)) {
            errors.push(path, format!("'{name}' carries credentials and is never captured"));
        } else if !seen.insert(canonical(name)) {
            errors.push(path, format!("'{name}' is listed twice (counting '_' as '-')"));
        }
    }
    names.to_vec()
}

fn compile_params(names: &[String], at: &str, errors: &mut PolicyErrors) -> Vec<String> {
    if names.len() > MAX_PARAMS {
        errors.push(at, format!("at most {MAX_PARAMS} parameters"));
    }
    let mut seen = HashSet::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if !printable(name, 128) || name.contains(['&', ';', '=']) {
            errors.push(
                index(at, i),
                "must be a parameter name (1 to 128 printable characters, no '&', ';' or '=')",
            );
        } else if !seen.insert(name.to_ascii_lowercase()) {
            errors.push(index(at, i), format!("'{name}' is listed twice"));
        }
    }
    names.to_vec()
}
