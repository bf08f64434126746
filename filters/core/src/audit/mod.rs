//! Audit: one event per request with every stage's decision, sampled,
//! buffered per worker and sent in batches (Kafka REST, OTLP, JSON lines)
//! or logged. Decisions only: the stage that reads the request context in
//! the log phase and dispatches the batches lives in `filters/stages`.
//! The event's fields are documented in `docs/audit-event.schema.json`.

pub mod buffer;
pub mod config;
pub mod encode;
pub mod event;
pub mod ids;
pub mod sample;

pub use buffer::{next_attempt_at, Buffer, Counters, DropCause, Dropped};
pub use config::{AuditConfig, AuditDoc, EventType, Format, QueryMode, RouteAudit, RouteAuditDoc, Sink, SinkDoc};
pub use encode::{encode, Queued, Request};
pub use event::{build, Decision, Event, Inputs, Outcome, TenantSeen, SCHEMA_VERSION};
pub use sample::keep;

#[cfg(test)]
mod tests;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod native_tests;
