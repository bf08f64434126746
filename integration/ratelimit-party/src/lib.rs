//! A real Envoy rate limit service for the integration tests:
//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` over tonic,
//! every descriptor counted in Redis by one atomic Lua script, so two Envoys
//! (or two services) sharing one Redis share one exact count; and the
//! Redis server itself, Debian's `redis-server` started on a free loopback
//! port with no persistence.
//!
//! - [`Redis::start`]: a `redis-server` child, ready (it answered `PING`)
//!   when returned, killed by PID on drop.
//! - [`Service::start`]: the gRPC service in-process on a free 127.0.0.1
//!   port, on its own runtime; [`Service::set_delay`] makes it answer late,
//!   dropping it makes it dead.
//! - [`should_rate_limit`] and the [`descriptor`]/[`request`] builders: a
//!   blocking tonic client for tests and readiness probes.
//! - The `tollgate-ratelimit` binary runs the same service in a container.
//!
//! How a request is counted is in [`service`]'s documentation.

// A test harness: a fixture that cannot start must fail the test loudly
// (`Redis::start`/`Service::start` panic; the `try_` variants do not).
#![allow(clippy::panic)]

pub mod client;
pub mod redis_server;
pub mod service;

pub use client::{descriptor, request, should_rate_limit};
pub use redis_server::{ping, Redis};
pub use service::Service;

/// The protocol's messages, as `envoy-types` generates them.
pub mod proto {
    pub use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
        Entry, RateLimitOverride,
    };
    pub use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
    pub use envoy_types::pb::envoy::r#type::v3::RateLimitUnit;
    pub use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
        rate_limit::Unit as ResponseUnit, Code, DescriptorStatus, RateLimit,
    };
    pub use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
    pub use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
        RateLimitService, RateLimitServiceServer,
    };
    pub use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
}
