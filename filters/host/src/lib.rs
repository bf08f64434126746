//! What every Tollgate filter shares, without proxy-wasm: the `Host` trait
//! (Envoy in `tollgate-envoy`, or `fake::FakeHost` in tests), counters held
//! as handles, the request context and the pipeline that runs stages on it.

pub mod api;
pub mod context;
pub mod counters;
pub mod fake;
pub mod pipeline;
pub mod reply;

pub use api::{first, GrpcCall, Headers, Host, HostError, ReadError, SharedDataError, Versioned};
pub use context::{Extras, Facts, JwtFacts, Progress, Publish, RequestContext, StageDecision, TenantFacts};
pub use counters::{Counters, Gauges};
pub use pipeline::{Build, Flow, Pipeline, PipelineRoot, Shared, Stage, Step};
pub use reply::Verdict;

#[cfg(test)]
mod tests;
