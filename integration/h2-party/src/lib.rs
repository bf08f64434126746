//! HTTP/2 test parties: an h2c client (prior knowledge, one request per
//! connection), a gRPC upstream answering one unary method with what it
//! received, and a gRPC client built on tonic. Every exchange is bounded by
//! `TIMEOUT`; the upstream stops when dropped.

pub mod grpc;
pub mod h2c;

use std::time::Duration;

/// The longest any exchange may take, from connect to the last frame.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A runtime for one blocking call: the clients' futures run to completion
/// (or `TIMEOUT`) on the calling thread.
fn current_thread() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("runtime: {e}"))
}

/// Header pairs with names lower-cased (HTTP/2 sends them so), values as
/// text (lossy).
fn pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}
