//! What every Tollgate filter shares over proxy-wasm: the `Host` trait
//! (Envoy, or a fake in tests), counters held as handles, and the pipeline
//! that runs stages over one request view.

pub mod api;
pub mod counters;
pub mod envoy;
pub mod fake;
pub mod pipeline;
pub mod reply;

pub use api::{first, Headers, Host, HostError, ReadError};
pub use counters::{Counters, Gauges};
pub use envoy::{use_host_log_level, Envoy};
pub use pipeline::{Build, Exchange, Facts, Flow, JwtFacts, Pipeline, PipelineRoot, Stage, Step};

#[cfg(test)]
mod tests;
