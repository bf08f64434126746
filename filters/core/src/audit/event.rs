//! The audit event: one per request, built in the log phase from what the
//! request context knows. It carries what a decision reads (the normalized
//! request, the tenant sources seen, the claims the rules use), so a
//! candidate policy can re-decide it, and never a secret: no credential
//! header, no cookie, no token, no header outside `capture_headers`.

use super::config::{AuditConfig, EventType, QueryMode, NEVER_CAPTURED};
use super::ids;
use crate::header_map::HeaderMap;
use crate::params::{decoded_name, same_param};
use crate::policy::wire::TenantSource;
use crate::Mode;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Bumped when a field changes meaning or goes; new optional fields keep it.
pub const SCHEMA_VERSION: u32 = 1;
/// What a redacted parameter's value becomes.
pub const REDACTED: &str = "[REDACTED]";
/// Bytes a captured header (its copies joined) or a request id keeps at
/// most: what a client sends there is bounded only by Envoy's header
/// limit, and large events let a few requests push others out of a full
/// buffer.
pub const MAX_FIELD_BYTES: usize = 1024;

/// A stage's outcome, as events and decision records name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allow,
    Deny,
    ShadowDeny,
}

/// One stage's decision on the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// `jwt`, `tenant`, `ratelimit`; `request` for a refusal before any stage.
    pub stage: String,
    pub mode: Mode,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the decision was about: a rate limit's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Decision {
    /// A stage's decision as the request context holds it.
    pub fn from_action(stage: &str, mode: Mode, action: &crate::decision::Action, detail: Option<&str>) -> Decision {
        use crate::decision::Action;
        let (outcome, reason) = match action {
            Action::Allow => (Outcome::Allow, None),
            Action::Deny(d) => (Outcome::Deny, Some(d.reason)),
            Action::ShadowDeny(d) => (Outcome::ShadowDeny, Some(d.reason)),
        };
        Decision::new(stage, mode, outcome, reason, detail)
    }

    pub fn new(stage: &str, mode: Mode, outcome: Outcome, reason: Option<&str>, detail: Option<&str>) -> Decision {
        Decision {
            stage: stage.to_string(),
            mode,
            outcome,
            reason: reason.map(str::to_string),
            detail: detail.map(str::to_string),
        }
    }

    /// A separate filter's decision record (`tollgate.decision.<stage>`,
    /// `decision::record`); `None` when it is not one.
    pub fn from_record(stage: &str, json: &[u8]) -> Option<Decision> {
        #[derive(serde::Deserialize)]
        struct Record {
            mode: Mode,
            outcome: String,
            #[serde(default)]
            reason: Option<String>,
            #[serde(default)]
            limit: Option<String>,
        }
        let record: Record = serde_json::from_slice(json).ok()?;
        let outcome = match record.outcome.as_str() {
            "allow" => Outcome::Allow,
            "deny" => Outcome::Deny,
            "shadow_deny" => Outcome::ShadowDeny,
            _ => return None,
        };
        Some(Decision {
            stage: stage.to_string(),
            mode: record.mode,
            outcome,
            reason: record.reason,
            detail: record.limit,
        })
    }

    /// Denied, or would have been (shadow).
    pub fn refused(&self) -> bool {
        self.outcome != Outcome::Allow
    }
}

/// Where the tenant stage looked, and what it found there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TenantSeen {
    pub source: TenantSource,
    pub value: String,
}

/// The event as serialized (`schemas/audit-event.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub schema_version: u32,
    pub event_id: String,
    /// RFC 3339, nanoseconds, UTC.
    pub time: String,
    pub event_type: EventType,
    pub service: Option<String>,
    pub namespace: Option<String>,
    /// The peer's mTLS identity (a SPIFFE id in Istio).
    pub source_principal: Option<String>,
    pub source_ip: Option<String>,
    pub subject: Option<String>,
    pub tenant: Option<String>,
    pub tier: Option<String>,
    pub roles: Vec<String>,
    /// The verified claims the policy's rules read.
    pub claims: Map<String, Value>,
    pub method: String,
    /// Other methods the application may act on: `_method` in the query
    /// or a form body, method headers the policy leaves in (upper-case).
    pub method_overrides: Vec<String>,
    pub host: String,
    /// Normalized; the query after `?` per `audit.query`, redacted.
    pub path: String,
    pub route: Option<String>,
    pub status: u16,
    pub duration_ms: f64,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub request_id: Option<String>,
    /// From a valid `traceparent`.
    pub trace_id: Option<String>,
    pub decisions: Vec<Decision>,
    pub tenant_sources: Vec<TenantSeen>,
    /// The `capture_headers` the request had (values joined with `, `).
    pub headers: BTreeMap<String, String>,
}

impl Event {
    /// Some stage denied it or would have (shadow).
    pub fn refused(&self) -> bool {
        self.decisions.iter().any(Decision::refused)
    }
}

/// What the log phase knows of a request, borrowed from its context.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Host clock when the event is made (Unix nanoseconds).
    pub now_nanos: u64,
    /// For the event id.
    pub random: [u8; 16],
    pub event_type: EventType,
    pub service: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub method: &'a str,
    /// Upper-case, each once, without `method` itself.
    pub method_overrides: &'a [String],
    pub host: &'a str,
    /// `:path` as it arrived, with its query.
    pub raw_path: &'a [u8],
    pub normalized_path: &'a str,
    pub route: Option<&'a str>,
    pub status: u16,
    pub duration_nanos: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub request_id: Option<&'a [u8]>,
    pub traceparent: Option<&'a [u8]>,
    pub source_principal: Option<&'a str>,
    pub source_ip: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub tier: Option<&'a str>,
    pub roles: &'a [String],
    /// Only the claims the rules read: the caller picks them.
    pub claims: &'a Map<String, Value>,
    pub decisions: &'a [Decision],
    pub tenant_sources: &'a [(TenantSource, &'a [u8])],
    pub headers: &'a HeaderMap,
    /// Every provider's `from_params`: their values never leave.
    pub token_params: &'a [&'a str],
    /// Every provider's token header names: never captured.
    pub token_headers: &'a [&'a str],
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn owned(s: Option<&str>) -> Option<String> {
    s.map(str::to_string)
}

/// The event for one request.
pub fn build(inputs: &Inputs<'_>, config: &AuditConfig) -> Event {
    Event {
        schema_version: SCHEMA_VERSION,
        event_id: ids::uuid_v4(inputs.random),
        time: ids::rfc3339(inputs.now_nanos),
        event_type: inputs.event_type,
        service: owned(inputs.service),
        namespace: owned(inputs.namespace),
        source_principal: owned(inputs.source_principal),
        source_ip: owned(inputs.source_ip),
        subject: owned(inputs.subject),
        tenant: owned(inputs.tenant),
        tier: owned(inputs.tier),
        roles: inputs.roles.to_vec(),
        claims: inputs.claims.clone(),
        method: inputs.method.to_string(),
        method_overrides: inputs.method_overrides.to_vec(),
        host: inputs.host.to_string(),
        path: event_path(inputs, config),
        route: owned(inputs.route),
        status: inputs.status,
        duration_ms: duration_ms(inputs.duration_nanos),
        request_bytes: inputs.request_bytes,
        response_bytes: inputs.response_bytes,
        request_id: inputs.request_id.map(request_id),
        trace_id: inputs.traceparent.and_then(ids::trace_id),
        decisions: inputs.decisions.to_vec(),
        tenant_sources: inputs
            .tenant_sources
            .iter()
            .map(|(source, value)| TenantSeen {
                source: *source,
                value: tenant_value(value).to_string(),
            })
            .collect(),
        headers: captured(inputs.headers, &config.capture_headers, inputs.token_headers),
    }
}

/// `text` cut to at most `MAX_FIELD_BYTES`, at a character boundary.
pub fn bounded(text: &str) -> &str {
    let mut end = text.len().min(MAX_FIELD_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// The request id as events keep it (`bounded`).
pub(super) fn request_id(raw: &[u8]) -> String {
    let head = raw.get(..MAX_FIELD_BYTES).unwrap_or(raw);
    bounded(&String::from_utf8_lossy(head)).to_string()
}

/// A tenant source's value as events keep it. One no policy could take as
/// a tenant id (`could_be_id`) re-decides as `tenant_invalid` whatever it
/// holds, so it is not kept: a token or other secret a client sent in a
/// tenant header never reaches the trail, and the value is bounded.
pub(super) fn tenant_value(value: &[u8]) -> &str {
    match std::str::from_utf8(value) {
        Ok(text) if crate::policy::tenant::could_be_id(value) => text,
        _ => REDACTED,
    }
}

/// Milliseconds with microsecond precision: enough, and short in JSON.
pub(super) fn duration_ms(nanos: u64) -> f64 {
    (nanos / 1000) as f64 / 1000.0
}

pub(super) fn event_path(inputs: &Inputs<'_>, config: &AuditConfig) -> String {
    let query = match config.query {
        QueryMode::Drop => None,
        QueryMode::Keep => query_of(inputs.raw_path),
    };
    match query {
        Some(q) if !q.is_empty() => {
            let secret: Vec<&str> = config
                .redact_params
                .iter()
                .map(String::as_str)
                .chain(inputs.token_params.iter().copied())
                .collect();
            format!("{}?{}", inputs.normalized_path, redact_query(q, &secret))
        }
        _ => inputs.normalized_path.to_string(),
    }
}

/// The query of a raw `:path` (after the first `?`, before any `#`).
fn query_of(raw_path: &[u8]) -> Option<&[u8]> {
    let start = raw_path.iter().position(|b| *b == b'?')?;
    let query = raw_path.get(start + 1..)?;
    Some(query.split(|b| *b == b'#').next().unwrap_or_default())
}

/// The query with the value of every parameter whose decoded name reads as
/// one of `secret` (as some stack reads it: `same_param`) replaced by
/// `[REDACTED]`, or whose nested names (`user[password]`) hold one. Split
/// on `;` as well as `&`, as Rack 2 and older Pythons read it, so
/// `a=1;access_token=x` loses its token too.
pub fn redact_query(query: &[u8], secret: &[&str]) -> String {
    let mut out = Vec::with_capacity(query.len());
    let mut rest = query;
    loop {
        let end = rest.iter().position(|b| *b == b'&' || *b == b';');
        let piece = end.and_then(|i| rest.get(..i)).unwrap_or(rest);
        let name = decoded_name(piece);
        let nested = nested_names(&name);
        let named = |s: &&str| same_param(&name, s) || nested.iter().any(|n| same_param(n, s));
        if secret.iter().any(named) {
            let raw_name = piece.split(|b| *b == b'=').next().unwrap_or_default();
            out.extend_from_slice(raw_name);
            out.push(b'=');
            out.extend_from_slice(REDACTED.as_bytes());
        } else {
            out.extend_from_slice(piece);
        }
        let Some(i) = end else { break };
        out.extend(rest.get(i).copied());
        rest = rest.get(i + 1..).unwrap_or_default();
    }
    text(&out)
}

/// The names a framework that nests parameters (PHP, Rack, Express's qs)
/// reads in `a[b][c]`: `a`, `b` and `c`. None when the name does not nest
/// (`a[b` with no `]` is PHP's `a_b`, which `same_param` reads).
fn nested_names(name: &str) -> Vec<&str> {
    let Some((base, mut rest)) = name.split_once('[') else {
        return Vec::new();
    };
    let mut names = vec![base];
    while let Some((key, after)) = rest.split_once(']') {
        names.push(key);
        match after.strip_prefix('[') {
            Some(more) => rest = more,
            None => break,
        }
    }
    if names.len() == 1 {
        names.clear();
    }
    names
}

/// The `capture_headers` present, never a credential header or a token
/// header even if the list held one (the policy check refuses that too);
/// each at most `MAX_FIELD_BYTES`.
pub(super) fn captured(headers: &HeaderMap, capture: &[String], token_headers: &[&str]) -> BTreeMap<String, String> {
    let canonical = |name: &str| name.to_ascii_lowercase().replace('_', "-");
    let never = |name: &str| {
        let name = canonical(name);
        NEVER_CAPTURED.iter().chain(token_headers).any(|n| canonical(n) == name)
    };
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers.iter() {
        let wanted = capture.iter().any(|c| c.eq_ignore_ascii_case(name));
        if !wanted || never(name) {
            continue;
        }
        let joined = out.entry(name.to_ascii_lowercase()).or_default();
        if joined.len() >= MAX_FIELD_BYTES {
            continue;
        }
        if !joined.is_empty() {
            joined.push_str(", ");
        }
        let head = value.get(..MAX_FIELD_BYTES).unwrap_or(value);
        joined.push_str(&String::from_utf8_lossy(head));
        let keep = bounded(joined).len();
        joined.truncate(keep);
    }
    out
}
