//! Audit: one event per request with every stage's decision, sampled,
//! buffered per worker and sent in batches (Kafka REST, OTLP, JSON lines)
//! or logged. Decisions only: the stage that reads the request context in
//! the log phase and dispatches the batches lives in `filters/stages`.
//! The event's fields are documented in `schemas/audit-event.schema.json`
//! and, for Avro consumers, `schemas/audit-event.avsc` (held together by
//! `avro_tests`).

pub mod answer;
pub mod buffer;
pub mod config;
pub mod encode;
pub mod event;
pub mod ids;
pub mod sample;
pub mod write;

pub use answer::{
    batch_failure, kafka_failed_records, otlp_rejected, record_failure, refusal_reason, Failure, Refusals,
};
pub use buffer::{next_attempt_at, Buffer, Counters, DropCause, Dropped};
pub use config::{AuditConfig, AuditDoc, EventType, Format, QueryMode, RouteAudit, RouteAuditDoc, Sink, SinkDoc};
pub use encode::{encode, Queued, Request};
pub use event::{build, Decision, Event, Inputs, Outcome, TenantSeen, SCHEMA_VERSION};
pub use sample::{keep, succeeded};
pub use write::{event_json, read_tenant_sources, tenant_sources_json};

/// The claims an event carries: those the routes' claim rules read and
/// the providers' `claims_to_state`, each once, in that order.
pub fn claims_read(policy: &crate::policy::Policy) -> Vec<String> {
    let rules = policy
        .routes
        .iter()
        .chain(std::iter::once(&policy.fallback))
        .flat_map(|r| r.jwt.rules.iter().map(|rule| rule.claim.clone()));
    let to_state = policy
        .jwt
        .providers
        .iter()
        .flat_map(|p| p.claims_to_state.iter().cloned());
    let mut out: Vec<String> = Vec::new();
    for claim in rules.chain(to_state) {
        if !out.contains(&claim) {
            out.push(claim);
        }
    }
    out
}

/// The stage's counters (`tollgate.audit.<name>`), in `Counter` order.
/// `events_dropped.<cause>` becomes `events_dropped` with a `cause` tag
/// (`DROP_CAUSE_TAG_REGEX`).
pub const COUNTERS: [&str; 10] = [
    "events_emitted",
    "events_sampled_out",
    "events_sent",
    "events_dropped.buffer_full",
    "events_dropped.retry_overflow",
    "events_dropped.resized",
    "batches_sent",
    "batches_failed",
    "events_dropped.rejected",
    "batches_rejected",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    EventsEmitted = 0,
    EventsSampledOut = 1,
    EventsSent = 2,
    DroppedBufferFull = 3,
    DroppedRetryOverflow = 4,
    DroppedResized = 5,
    BatchesSent = 6,
    BatchesFailed = 7,
    DroppedRejected = 8,
    BatchesRejected = 9,
}

/// Gauges: events waiting in this worker's buffer, and in calls to the sink.
pub const GAUGES: [&str; 2] = ["tollgate.audit.buffer_depth", "tollgate.audit.in_flight_events"];

/// Envoy `stats_tags` regex that makes a drop's cause the `cause` tag.
pub const DROP_CAUSE_TAG_REGEX: &str = r"^wasmcustom\.tollgate\.audit\.events_dropped(\.(\w+))$";

pub fn metric_names() -> Vec<String> {
    COUNTERS.iter().map(|n| format!("tollgate.audit.{n}")).collect()
}

impl Counters {
    /// Each counter's total, in `COUNTERS` order.
    pub fn totals(&self) -> [u64; 10] {
        [
            self.emitted,
            self.sampled_out,
            self.sent,
            self.dropped.buffer_full,
            self.dropped.retry_overflow,
            self.dropped.resized,
            self.batches_sent,
            self.batches_failed,
            self.dropped.rejected,
            self.batches_rejected,
        ]
    }
}

#[cfg(test)]
mod tests;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod native_tests;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod avro_tests;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod avro_check;
