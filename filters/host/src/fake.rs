//! A host in memory for unit tests of the glue: requests by context id,
//! what the filters did to them, counters, filter state, HTTP calls and
//! the tick, all inspectable.

use crate::api::{GrpcCall, Headers, Host, HostError, ReadError, SharedDataError, Versioned};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentReply {
    pub status: u32,
    pub grpc_status: Option<u32>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Default, Clone)]
pub struct FakeRequest {
    pub headers: Vec<(String, Vec<u8>)>,
    pub state: HashMap<String, Vec<u8>>,
    pub reply: Option<SentReply>,
    pub resumed: usize,
    /// Headers added to the application's response.
    pub response_headers: Vec<(String, Vec<u8>)>,
    /// The request body as buffered (and as the filters left it).
    pub body: Vec<u8>,
    /// Properties by path, joined with '.' (`source.address`).
    pub attributes: HashMap<String, Vec<u8>>,
}

/// A gRPC call the fake host was asked to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeGrpcCall {
    pub token: u32,
    pub cluster: String,
    pub service: String,
    pub method: String,
    pub metadata: Vec<(String, Vec<u8>)>,
    pub message: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct FakeHost {
    pub requests: RefCell<HashMap<u32, FakeRequest>>,
    pub current: Cell<u32>,
    pub counters: RefCell<Vec<(String, u64)>>,
    /// (name, value) of every gauge defined.
    pub gauges: RefCell<Vec<(String, u64)>>,
    pub now_ms: Cell<u64>,
    pub config: RefCell<Vec<u8>>,
    pub root: RefCell<String>,
    /// `Host::plugin_name`: several plugins may share a root id.
    pub plugin: RefCell<String>,
    /// (token, cluster, path) of every call dispatched.
    pub calls: RefCell<Vec<(u32, String, String)>>,
    /// The body of every HTTP call dispatched with one, by token.
    pub call_bodies: RefCell<Vec<(u32, Vec<u8>)>>,
    /// Every gRPC call dispatched; the current one's answer.
    pub grpc_calls: RefCell<Vec<FakeGrpcCall>>,
    pub grpc_answer: RefCell<Vec<u8>>,
    /// Shared data: key to (value, version).
    pub shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    /// Nanoseconds past `now_ms`.
    pub now_extra_ns: Cell<u64>,
    /// The state of the random source (xorshift; tests want repeatable runs).
    pub random_state: Cell<u64>,
    /// What the current call's callback reads: (status, body).
    pub call_answer: RefCell<(Vec<u8>, Vec<u8>)>,
    pub tick: Cell<Duration>,
    /// Host calls that fail: `request_headers`, `property`, `dispatch`.
    pub failing: RefCell<Vec<&'static str>>,
    /// Log of every host call made for the current request, by name.
    pub trace: RefCell<Vec<String>>,
    /// The Envoy node's metadata strings.
    pub node: RefCell<HashMap<String, Vec<u8>>>,
    /// `Host::skips_signatures` (`tollgate explain --no-verify`).
    pub skip_signatures: Cell<bool>,
}

impl FakeHost {
    pub fn new(root_id: &str, config: &[u8]) -> FakeHost {
        let host = FakeHost::default();
        *host.root.borrow_mut() = root_id.to_string();
        *host.config.borrow_mut() = config.to_vec();
        host.now_ms.set(1_700_000_000_000);
        host
    }

    /// Starts a request: its context becomes current.
    pub fn begin(&self, context_id: u32, headers: &[(&str, &str)]) {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        let request = FakeRequest {
            headers,
            ..FakeRequest::default()
        };
        self.requests.borrow_mut().insert(context_id, request);
        self.current.set(context_id);
        self.trace.borrow_mut().clear();
    }

    pub fn request(&self, context_id: u32) -> FakeRequest {
        self.requests.borrow().get(&context_id).cloned().unwrap_or_default()
    }

    /// Every value of a request header now, as text.
    pub fn header(&self, context_id: u32, name: &str) -> Vec<String> {
        self.request(context_id)
            .headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// A gauge's value (the last defined of that name).
    pub fn gauge(&self, name: &str) -> Option<u64> {
        self.gauges
            .borrow()
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.counters
            .borrow()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .sum()
    }

    /// The current request's property at a path (`source.address`).
    pub fn set_attribute(&self, context_id: u32, path: &str, value: &[u8]) {
        if let Some(r) = self.requests.borrow_mut().get_mut(&context_id) {
            r.attributes.insert(path.to_string(), value.to_vec());
        }
    }

    /// Ends a request as its client going away does: its context is gone.
    pub fn forget(&self, context_id: u32) {
        self.requests.borrow_mut().remove(&context_id);
    }

    pub fn fail(&self, call: &'static str) {
        self.failing.borrow_mut().push(call);
    }

    fn fails(&self, call: &str) -> bool {
        self.failing.borrow().contains(&call)
    }

    fn with_current<T>(&self, f: impl FnOnce(&mut FakeRequest) -> T) -> Option<T> {
        self.requests.borrow_mut().get_mut(&self.current.get()).map(f)
    }

    /// Tokens of HTTP and gRPC calls, unique across both.
    fn next_token(&self) -> u32 {
        let n = self.calls.borrow().len() + self.grpc_calls.borrow().len() + 1;
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    fn note(&self, call: &str) {
        self.trace.borrow_mut().push(call.to_string());
    }
}

impl Host for FakeHost {
    fn request_headers(&self) -> Result<Headers, ReadError> {
        self.note("request_headers");
        if self.fails("request_headers") {
            return Err(ReadError("request headers: failed".into()));
        }
        self.with_current(|r| Headers::from_pairs(r.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice()))))
            .ok_or(ReadError("no current request".into()))
    }

    fn set_request_header(&self, name: &str, value: Option<&[u8]>) -> Result<(), HostError> {
        self.note("set_request_header");
        self.with_current(|r| {
            let at = r.headers.iter().position(|(k, _)| k == name);
            r.headers.retain(|(k, _)| k != name);
            if let Some(value) = value {
                let entry = (name.to_string(), value.to_vec());
                match at {
                    Some(i) => r.headers.insert(i.min(r.headers.len()), entry),
                    None => r.headers.push(entry),
                }
            }
        })
        .ok_or(HostError("no current request".into()))
    }

    fn request_body(&self, size: usize) -> Result<Vec<u8>, ReadError> {
        self.note("request_body");
        self.with_current(|r| r.body.get(..size.min(r.body.len())).unwrap_or_default().to_vec())
            .ok_or(ReadError("no current request".into()))
    }

    fn add_response_header(&self, name: &str, value: &[u8]) -> Result<(), HostError> {
        self.note("add_response_header");
        self.with_current(|r| r.response_headers.push((name.to_string(), value.to_vec())))
            .ok_or(HostError("no current request".into()))
    }

    fn send_reply(
        &self,
        status: u32,
        grpc_status: Option<u32>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        self.note("send_reply");
        let reply = SentReply {
            status,
            grpc_status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.to_vec(),
        };
        self.with_current(|r| r.reply = Some(reply))
            .ok_or(HostError("no current request".into()))
    }

    fn property(&self, path: &str) -> Result<Option<Vec<u8>>, ReadError> {
        self.note("property");
        if self.fails("property") {
            return Err(ReadError(format!("property {path}: failed")));
        }
        Ok(self.with_current(|r| r.state.get(path).cloned()).flatten())
    }

    fn property_path(&self, path: &[&str]) -> Result<Option<Vec<u8>>, ReadError> {
        self.note("property_path");
        if self.fails("property") {
            return Err(ReadError(format!("property {}: failed", path.join("."))));
        }
        Ok(self
            .with_current(|r| r.attributes.get(&path.join(".")).cloned())
            .flatten())
    }

    fn shared_data(&self, key: &str) -> Result<Versioned, ReadError> {
        self.note("shared_data");
        if self.fails("shared_data") {
            return Err(ReadError(format!("shared data {key}: failed")));
        }
        Ok(match self.shared.borrow().get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    /// As Envoy: a `cas` of the version read succeeds once; a write with
    /// no `cas` always does; every write makes a new version.
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError> {
        self.note("set_shared_data");
        let mut shared = self.shared.borrow_mut();
        let current = shared.get(key).map(|(_, v)| *v);
        if let (Some(cas), Some(current)) = (cas.filter(|c| *c != 0), current) {
            if cas != current {
                return Err(SharedDataError::CasMismatch);
            }
        }
        let version = current.unwrap_or(0).wrapping_add(1).max(1);
        shared.insert(key.to_string(), (value.to_vec(), version));
        Ok(())
    }

    fn node_metadata(&self, key: &str) -> Result<Option<Vec<u8>>, ReadError> {
        self.note("node_metadata");
        if self.fails("node_metadata") {
            return Err(ReadError(format!("node.metadata.{key}: failed")));
        }
        Ok(self.node.borrow().get(key).cloned())
    }

    fn set_property(&self, path: &str, value: &[u8]) -> Result<(), HostError> {
        self.note("set_property");
        self.with_current(|r| r.state.insert(path.to_string(), value.to_vec()));
        Ok(())
    }

    fn define_counter(&self, name: &str) -> Result<u32, HostError> {
        let mut counters = self.counters.borrow_mut();
        counters.push((name.to_string(), 0));
        u32::try_from(counters.len() - 1).map_err(|_| HostError("too many counters".into()))
    }

    fn increment_counter(&self, id: u32) {
        self.note("increment_counter");
        if let Some((_, value)) = self.counters.borrow_mut().get_mut(id as usize) {
            *value += 1;
        }
    }

    /// As Envoy: a name defined again is the same gauge.
    fn define_gauge(&self, name: &str) -> Result<u32, HostError> {
        let mut gauges = self.gauges.borrow_mut();
        if let Some(at) = gauges.iter().position(|(n, _)| n == name) {
            return u32::try_from(at).map_err(|_| HostError("too many gauges".into()));
        }
        gauges.push((name.to_string(), 0));
        u32::try_from(gauges.len() - 1).map_err(|_| HostError("too many gauges".into()))
    }

    fn add_gauge(&self, id: u32, delta: i64) {
        self.note("add_gauge");
        if let Some((_, v)) = self.gauges.borrow_mut().get_mut(id as usize) {
            *v = v.saturating_add_signed(delta);
        }
    }

    fn set_gauge(&self, id: u32, value: u64) {
        self.note("set_gauge");
        if let Some((_, v)) = self.gauges.borrow_mut().get_mut(id as usize) {
            *v = value;
        }
    }

    fn now_nanos(&self) -> u64 {
        self.now_ms
            .get()
            .saturating_mul(1_000_000)
            .saturating_add(self.now_extra_ns.get())
    }

    fn fill_random(&self, buf: &mut [u8]) -> Result<(), HostError> {
        self.note("fill_random");
        for byte in buf.iter_mut() {
            let mut x = self.random_state.get() | 1;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.random_state.set(x);
            *byte = x.to_le_bytes().first().copied().unwrap_or_default();
        }
        Ok(())
    }

    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError> {
        if !self.requests.borrow().contains_key(&context_id) {
            return Err(HostError("gone".into()));
        }
        self.current.set(context_id);
        Ok(())
    }

    fn resume_request(&self) {
        self.with_current(|r| r.resumed += 1);
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        _: Duration,
    ) -> Result<u32, HostError> {
        if self.fails("dispatch") {
            return Err(HostError(format!("{cluster}: BadArgument")));
        }
        let path = headers.iter().find(|(k, _)| *k == ":path").map_or("", |(_, v)| v);
        let token = self.next_token();
        self.calls
            .borrow_mut()
            .push((token, cluster.to_string(), path.to_string()));
        if let Some(body) = body {
            self.call_bodies.borrow_mut().push((token, body.to_vec()));
        }
        Ok(token)
    }

    fn dispatch_grpc_call(&self, call: &GrpcCall<'_>) -> Result<u32, HostError> {
        if self.fails("dispatch_grpc") {
            return Err(HostError(format!("{}: BadArgument", call.cluster)));
        }
        let token = self.next_token();
        self.grpc_calls.borrow_mut().push(FakeGrpcCall {
            token,
            cluster: call.cluster.to_string(),
            service: call.service.to_string(),
            method: call.method.to_string(),
            metadata: call.metadata.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect(),
            message: call.message.to_vec(),
        });
        Ok(token)
    }

    fn grpc_call_response(&self, size: usize) -> Vec<u8> {
        let answer = self.grpc_answer.borrow();
        answer.get(..size.min(answer.len())).unwrap_or_default().to_vec()
    }

    fn http_call_status(&self) -> Vec<u8> {
        self.call_answer.borrow().0.clone()
    }

    fn http_call_body(&self, size: usize) -> Vec<u8> {
        let body = &self.call_answer.borrow().1;
        body.get(..size.min(body.len())).unwrap_or_default().to_vec()
    }

    fn set_tick_period(&self, period: Duration) -> Result<(), HostError> {
        self.tick.set(period);
        Ok(())
    }

    fn call_foreign_function(&self, name: &str, _: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
        Err(HostError(format!("{name}: NotFound")))
    }

    fn plugin_config(&self, _: usize) -> Vec<u8> {
        self.config.borrow().clone()
    }

    fn root_id(&self) -> String {
        self.root.borrow().clone()
    }

    fn plugin_name(&self) -> String {
        self.plugin.borrow().clone()
    }

    fn skips_signatures(&self) -> bool {
        self.skip_signatures.get()
    }
}
