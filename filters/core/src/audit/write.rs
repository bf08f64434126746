//! The event's JSON written straight from the request's inputs: the bytes
//! `serde_json::to_vec(&build(inputs, config))` makes (a test checks),
//! without an owned copy of every field or serde's derive code per event
//! (about 6 KB of the module, and an allocation per field).

use super::config::AuditConfig;
use super::event::{captured, event_path, Decision, Inputs, Outcome, SCHEMA_VERSION};
use super::ids;
use crate::policy::wire::TenantSource;
use serde::Serialize;

/// The event for one request, as JSON.
pub fn event_json(inputs: &Inputs<'_>, config: &AuditConfig) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(768));
    w.0.extend_from_slice(b"{\"schema_version\":");
    w.0.extend_from_slice(SCHEMA_VERSION.to_string().as_bytes());
    w.field("event_id");
    w.string(&ids::uuid_v4(inputs.random));
    w.field("time");
    w.string(&ids::rfc3339(inputs.now_nanos));
    w.field("event_type");
    w.string(inputs.event_type.as_str());
    w.optional("service", inputs.service);
    w.optional("namespace", inputs.namespace);
    w.optional("source_principal", inputs.source_principal);
    w.optional("source_ip", inputs.source_ip);
    w.optional("subject", inputs.subject);
    w.optional("tenant", inputs.tenant);
    w.optional("tier", inputs.tier);
    w.field("roles");
    w.serde(inputs.roles);
    w.field("claims");
    w.serde(inputs.claims);
    w.field("method");
    w.string(inputs.method);
    w.field("host");
    w.string(inputs.host);
    w.field("path");
    w.string(&event_path(inputs, config));
    w.optional("route", inputs.route);
    w.field("status");
    w.serde(&inputs.status);
    w.field("duration_ms");
    w.serde(&super::event::duration_ms(inputs.duration_nanos));
    w.field("request_bytes");
    w.serde(&inputs.request_bytes);
    w.field("response_bytes");
    w.serde(&inputs.response_bytes);
    w.optional("request_id", inputs.request_id.map(String::from_utf8_lossy).as_deref());
    w.optional("trace_id", inputs.traceparent.and_then(ids::trace_id).as_deref());
    w.field("decisions");
    w.decisions(inputs.decisions);
    w.field("tenant_sources");
    w.tenant_sources(inputs.tenant_sources);
    w.field("headers");
    w.serde(&captured(inputs.headers, &config.capture_headers, inputs.token_headers));
    w.0.push(b'}');
    w.0
}

struct Writer(Vec<u8>);

impl Writer {
    /// `,"name":`
    fn field(&mut self, name: &str) {
        self.0.extend_from_slice(b",\"");
        self.0.extend_from_slice(name.as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    fn string(&mut self, s: &str) {
        crate::decision::json_string(&mut self.0, s);
    }

    fn optional(&mut self, name: &str, value: Option<&str>) {
        self.field(name);
        match value {
            Some(s) => self.string(s),
            None => self.0.extend_from_slice(b"null"),
        }
    }

    fn serde<T: Serialize + ?Sized>(&mut self, value: &T) {
        let _ = serde_json::to_writer(&mut self.0, value);
    }

    fn decisions(&mut self, decisions: &[Decision]) {
        self.0.push(b'[');
        for (i, d) in decisions.iter().enumerate() {
            if i > 0 {
                self.0.push(b',');
            }
            self.0.extend_from_slice(b"{\"stage\":");
            self.string(&d.stage);
            self.field("mode");
            self.string(d.mode.as_str());
            self.field("outcome");
            self.string(match d.outcome {
                Outcome::Allow => "allow",
                Outcome::Deny => "deny",
                Outcome::ShadowDeny => "shadow_deny",
            });
            if let Some(reason) = &d.reason {
                self.field("reason");
                self.string(reason);
            }
            if let Some(detail) = &d.detail {
                self.field("detail");
                self.string(detail);
            }
            self.0.push(b'}');
        }
        self.0.push(b']');
    }

    fn tenant_sources(&mut self, seen: &[(TenantSource, &[u8])]) {
        self.0.push(b'[');
        for (i, (source, value)) in seen.iter().enumerate() {
            if i > 0 {
                self.0.push(b',');
            }
            self.0.extend_from_slice(b"{\"source\":");
            self.string(match source {
                TenantSource::Claim => "claim",
                TenantSource::Header => "header",
                TenantSource::Host => "host",
                TenantSource::Path => "path",
            });
            self.field("value");
            self.string(&String::from_utf8_lossy(value));
            self.0.push(b'}');
        }
        self.0.push(b']');
    }
}
