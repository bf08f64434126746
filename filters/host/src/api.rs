//! The host as the filters see it: every call they make to Envoy goes
//! through `Host`, so the glue can run against `fake::FakeHost` in unit
//! tests (as Kuadrant's wasm-shim does with its mock host).

use std::time::Duration;

/// Request headers as (name, value bytes).
pub type Headers = Vec<(String, Vec<u8>)>;

/// First value of a header (names are lower-case in Envoy).
pub fn first<'h>(headers: &'h [(String, Vec<u8>)], name: &str) -> Option<&'h [u8]> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
}

/// A host read that failed: the request must not be decided on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError(pub String);

/// A host call that was refused, with the host's status for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError(pub String);

pub trait Host {
    /// The request headers of the current context.
    fn request_headers(&self) -> Result<Headers, ReadError>;
    /// Replaces every copy of a request header (`None`: removes them).
    fn set_request_header(&self, name: &str, value: Option<&[u8]>) -> Result<(), HostError>;
    fn send_reply(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostError>;
    /// A filter-state value: `Ok(None)` when absent.
    fn property(&self, path: &str) -> Result<Option<Vec<u8>>, ReadError>;
    fn set_property(&self, path: &str, value: &[u8]) -> Result<(), HostError>;
    /// A string of the Envoy node's metadata (Istio sets `NAMESPACE`).
    fn node_metadata(&self, key: &str) -> Result<Option<Vec<u8>>, ReadError>;
    fn define_counter(&self, name: &str) -> Result<u32, HostError>;
    fn increment_counter(&self, id: u32);
    fn define_gauge(&self, name: &str) -> Result<u32, HostError>;
    fn set_gauge(&self, id: u32, value: u64);
    /// Unix time in milliseconds (0 if the host will not say).
    fn now_millis(&self) -> u64;
    /// Makes a paused request's context current (root callbacks).
    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError>;
    fn resume_request(&self);
    /// Starts an HTTP call; its token comes back in the root's callback.
    fn dispatch_http_call(&self, cluster: &str, headers: &[(&str, &str)], timeout: Duration) -> Result<u32, HostError>;
    /// In an HTTP call's callback: its `:status`, then its body.
    fn http_call_status(&self) -> Vec<u8>;
    fn http_call_body(&self, size: usize) -> Vec<u8>;
    fn set_tick_period(&self, period: Duration) -> Result<(), HostError>;
    /// A foreign function (Envoy's `verify_signature`): `Err` when absent or refused.
    fn call_foreign_function(&self, name: &str, args: &[u8]) -> Result<Option<Vec<u8>>, HostError>;
    fn plugin_config(&self, size: usize) -> Vec<u8>;
    fn root_id(&self) -> String;
    /// Trust tokens' claims without checking signatures
    /// (`HostVerifier::skips_signatures`): only the host of `tollgate
    /// explain --no-verify` says yes; Envoy never does.
    fn skips_signatures(&self) -> bool {
        false
    }
    /// A random number, for jitter only (not for secrets): std's hasher
    /// keys, seeded once per VM from WASI `random_get` in Envoy.
    fn random(&self) -> u64 {
        use std::hash::BuildHasher;
        std::collections::hash_map::RandomState::new().hash_one(self.now_millis())
    }
}

impl dyn Host + '_ {
    /// Unix time in seconds.
    pub fn now_seconds(&self) -> u64 {
        self.now_millis() / 1000
    }
}
