//! A blocking tonic client for `ShouldRateLimit` (its own current-thread
//! runtime per call), and builders for the requests Tollgate sends.

use crate::proto::{
    Entry, RateLimitDescriptor, RateLimitOverride, RateLimitRequest, RateLimitResponse, RateLimitServiceClient,
    RateLimitUnit,
};
use std::net::SocketAddr;
use std::time::Duration;
use tonic::transport::Endpoint;

/// One `ShouldRateLimit` call to `addr` (plain-text HTTP/2), connection and
/// call each bounded by `timeout`. `Err` carries the gRPC status or the
/// transport error as text.
pub fn should_rate_limit(
    addr: SocketAddr,
    request: RateLimitRequest,
    timeout: Duration,
) -> Result<RateLimitResponse, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(async {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("{addr}: {e}"))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect()
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let answer = tokio::time::timeout(timeout, RateLimitServiceClient::new(channel).should_rate_limit(request))
            .await
            .map_err(|_| format!("ShouldRateLimit {addr}: no answer within {timeout:?}"))?;
        answer
            .map(tonic::Response::into_inner)
            .map_err(|status| format!("ShouldRateLimit {addr}: {:?}: {}", status.code(), status.message()))
    })
}

/// A descriptor as Tollgate sends it: `("limit", limit)`, then `parts`,
/// and the override `requests_per_unit` per `unit`.
pub fn descriptor(
    limit: &str,
    parts: &[(&str, &str)],
    requests_per_unit: u32,
    unit: RateLimitUnit,
) -> RateLimitDescriptor {
    let entry = |key: &str, value: &str| Entry {
        key: key.into(),
        value: value.into(),
    };
    RateLimitDescriptor {
        entries: std::iter::once(entry("limit", limit))
            .chain(parts.iter().map(|(k, v)| entry(k, v)))
            .collect(),
        limit: Some(RateLimitOverride {
            requests_per_unit,
            unit: unit as i32,
        }),
        ..RateLimitDescriptor::default()
    }
}

/// A request for `domain` with `descriptors` and hits_addend 0 (one hit).
pub fn request(domain: &str, descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.into(),
        descriptors,
        hits_addend: 0,
    }
}
