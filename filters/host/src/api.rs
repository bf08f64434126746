//! The host as the filters see it: every call they make to Envoy goes
//! through `Host`, so the glue can run against `fake::FakeHost` in unit
//! tests (as Kuadrant's wasm-shim does with its mock host).

use std::time::Duration;

/// Request headers: one buffer, read without a copy per pair.
pub type Headers = tollgate_core::header_map::HeaderMap;

/// First value of a header (names are lower-case in Envoy).
pub fn first<'h>(headers: &'h Headers, name: &str) -> Option<&'h [u8]> {
    headers.first(name)
}

/// A host read that failed: the request must not be decided on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError(pub String);

/// A host call that was refused, with the host's status for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError(pub String);

/// Why a shared-data write did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedDataError {
    /// The value changed since it was read (compare-and-swap lost): read again.
    CasMismatch,
    Refused(String),
}

/// A shared-data value with its compare-and-swap version (`None`: absent).
pub type Versioned = (Option<Vec<u8>>, Option<u32>);

/// A unary gRPC call (`dispatch_grpc_call`): the message is the serialized
/// protobuf request; the answer comes back in the root's gRPC callback.
#[derive(Debug, Clone, Copy)]
pub struct GrpcCall<'a> {
    pub cluster: &'a str,
    /// Fully-qualified service (`envoy.service.ratelimit.v3.RateLimitService`).
    pub service: &'a str,
    pub method: &'a str,
    pub metadata: &'a [(&'a str, &'a [u8])],
    pub message: &'a [u8],
    pub timeout: Duration,
}

pub trait Host {
    /// The request headers of the current context.
    fn request_headers(&self) -> Result<Headers, ReadError>;
    /// Replaces every copy of a request header (`None`: removes them).
    fn set_request_header(&self, name: &str, value: Option<&[u8]>) -> Result<(), HostError>;
    /// The request body buffered so far (request body phase), up to `size`.
    fn request_body(&self, size: usize) -> Result<Vec<u8>, ReadError>;
    /// Adds a response header (response headers phase).
    fn add_response_header(&self, name: &str, value: &[u8]) -> Result<(), HostError>;
    /// A local reply; `grpc_status` replaces the one Envoy derives from
    /// `status` for a gRPC request.
    fn send_reply(
        &self,
        status: u32,
        grpc_status: Option<u32>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError>;
    /// A filter-state value: `Ok(None)` when absent.
    fn property(&self, path: &str) -> Result<Option<Vec<u8>>, ReadError>;
    /// A property by path (`["source", "address"]`, `["response", "code"]`):
    /// the attribute's bytes as Envoy encodes them (strings as UTF-8, numbers
    /// as little-endian 8 bytes).
    fn property_path(&self, path: &[&str]) -> Result<Option<Vec<u8>>, ReadError>;
    /// Shared data: one store per VM configuration, shared by every worker.
    fn shared_data(&self, key: &str) -> Result<Versioned, ReadError>;
    /// Writes when `cas` is the version read (`None`: unconditionally).
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError>;
    fn set_property(&self, path: &str, value: &[u8]) -> Result<(), HostError>;
    /// A string of the Envoy node's metadata (Istio sets `NAMESPACE`).
    fn node_metadata(&self, key: &str) -> Result<Option<Vec<u8>>, ReadError>;
    fn define_counter(&self, name: &str) -> Result<u32, HostError>;
    fn increment_counter(&self, id: u32);
    /// Adds `n` to a counter (one host call in Envoy).
    fn add_counter(&self, id: u32, n: u64) {
        for _ in 0..n {
            self.increment_counter(id);
        }
    }
    fn define_gauge(&self, name: &str) -> Result<u32, HostError>;
    fn set_gauge(&self, id: u32, value: u64);
    /// Adds `delta` to a gauge: each worker adds its own share, so the
    /// gauge is the sum over workers (a `set` is the last writer's value).
    fn add_gauge(&self, id: u32, delta: i64);
    /// Unix time in nanoseconds (0 if the host will not say).
    fn now_nanos(&self) -> u64;
    /// Unix time in milliseconds (0 if the host will not say).
    fn now_millis(&self) -> u64 {
        self.now_nanos() / 1_000_000
    }
    /// Makes a paused request's context current (root callbacks).
    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError>;
    fn resume_request(&self);
    /// Starts an HTTP call; its token comes back in the root's callback.
    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError>;
    /// In an HTTP call's callback: its `:status`, then its body.
    fn http_call_status(&self) -> Vec<u8>;
    fn http_call_body(&self, size: usize) -> Vec<u8>;
    /// Starts a gRPC call; its token comes back in the root's gRPC callback.
    fn dispatch_grpc_call(&self, call: &GrpcCall<'_>) -> Result<u32, HostError>;
    /// In a gRPC call's callback: the response message (serialized protobuf).
    fn grpc_call_response(&self, size: usize) -> Vec<u8>;
    fn set_tick_period(&self, period: Duration) -> Result<(), HostError>;
    /// A foreign function (Envoy's `verify_signature`): `Err` when absent or refused.
    fn call_foreign_function(&self, name: &str, args: &[u8]) -> Result<Option<Vec<u8>>, HostError>;
    fn plugin_config(&self, size: usize) -> Vec<u8>;
    fn root_id(&self) -> String;
    /// The plugin's name (Istio: `<namespace>.<WasmPlugin name>`): plugins
    /// with one root id and module share a VM, and so a thread.
    fn plugin_name(&self) -> String {
        String::new()
    }
    /// Trust tokens' claims without checking signatures
    /// (`HostVerifier::skips_signatures`): only the host of `tollgate
    /// explain --no-verify` says yes; Envoy never does.
    fn skips_signatures(&self) -> bool {
        false
    }
    /// Random bytes from the host's secure source (WASI `random_get` in
    /// Envoy): event ids, jitter.
    fn fill_random(&self, buf: &mut [u8]) -> Result<(), HostError>;
    /// A random number (jitter, sampling); 0-entropy fallback is the clock.
    fn random(&self) -> u64 {
        let mut bytes = [0u8; 8];
        match self.fill_random(&mut bytes) {
            Ok(()) => u64::from_le_bytes(bytes),
            Err(_) => self.now_nanos(),
        }
    }
}

impl dyn Host + '_ {
    /// Unix time in seconds.
    pub fn now_seconds(&self) -> u64 {
        self.now_millis() / 1000
    }
}
