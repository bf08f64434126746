//! Hostcall helpers shared by the filters. Only `hostcalls::*` (which return
//! `Result`) are used, never the SDK's trait defaults that unwrap, and header
//! values are read as bytes: a bad header must not trap the VM.

use log::{debug, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, BufferType, MapType, MetricType};
use std::collections::HashMap;
use tollgate_core::policy::Policy;
use tollgate_core::reply::Reply;
use tollgate_core::request::{RequestDenial, RequestView};

/// Request headers as (name, value bytes).
pub type Headers = Vec<(String, Vec<u8>)>;

/// A host read that failed: the request must not be decided on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError(pub String);

/// The request headers. Every request has `:method`, so a map without it
/// is a failed read, not a request. (The SDK traps on any other status.)
pub fn request_headers() -> Result<Headers, ReadError> {
    match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
        Ok(headers) if headers.iter().any(|(k, _)| k == ":method") => Ok(headers),
        Ok(_) => Err(ReadError("request headers are empty or have no :method".into())),
        Err(status) => Err(ReadError(format!("request headers: {status:?}"))),
    }
}

/// Reads the request and builds its view; a path it normalized is written
/// back to `:path`, so the application is served what was decided. On a
/// refusal (always enforced: no route is known yet) the reply is sent,
/// counted and logged, and `Err` holds the action to return.
pub fn read_request(
    context_id: u32,
    filter: &str,
    policy: &Policy,
    counters: &Counters,
) -> Result<(Headers, RequestView), Action> {
    let refused = |headers: &[(String, Vec<u8>)], denial: RequestDenial, why: &str| {
        refuse(context_id, filter, policy, counters, headers, denial, why)
    };
    let headers = request_headers().map_err(|e| refused(&[], RequestDenial::Unreadable, &e.0))?;
    let view = RequestView::read(
        first(&headers, ":method").unwrap_or_default(),
        first(&headers, ":path"),
        first(&headers, ":authority"),
        policy,
    )
    .map_err(|denial| refused(&headers, denial, denial.detail()))?;
    if let Some(served) = &view.served_path {
        if let Err(status) = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, ":path", Some(served)) {
            let why = format!("could not rewrite :path: {status:?}");
            return Err(refused(&headers, RequestDenial::Unreadable, &why));
        }
        debug!("#{context_id} {filter}: :path rewritten to its normal form");
    }
    Ok((headers, view))
}

/// Sends, counts and logs a refusal made before any route is known.
pub fn refuse(
    context_id: u32,
    filter: &str,
    policy: &Policy,
    counters: &Counters,
    headers: &[(String, Vec<u8>)],
    denial: RequestDenial,
    why: &str,
) -> Action {
    let reply = denial.denial();
    if denial == RequestDenial::Unreadable {
        warn!("#{context_id} {filter}: refused, {why}");
    } else {
        debug!("#{context_id} {filter}: deny {}: {why}", reply.reason);
    }
    counters.increment(&denial.metric(filter));
    send_reply(context_id, &reply.reply(first(headers, "x-request-id"), &policy.realm))
}

/// First value of a header (names are lower-case in Envoy).
pub fn first<'h>(headers: &'h [(String, Vec<u8>)], name: &str) -> Option<&'h [u8]> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
}

/// Every value of a header, in order.
pub fn all<'h>(headers: &'h [(String, Vec<u8>)], name: &str) -> Vec<&'h [u8]> {
    headers
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
        .collect()
}

/// Applies header edits in order: `None` removes every copy, `Some` replaces.
pub fn edit_request_headers(context_id: u32, edits: &[(&str, Option<&str>)]) {
    for (name, value) in edits {
        let result = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, value.map(str::as_bytes));
        if let Err(status) = result {
            warn!("#{context_id} could not set header {name}: {status:?}");
        }
    }
}

/// Reads a filter-state value written by another filter (`tollgate.*`):
/// `Ok(None)` when absent (the SDK maps `NotFound` to it), `Err` when the
/// host failed, which must not pass for absent.
pub fn property(path: &str) -> Result<Option<Vec<u8>>, ReadError> {
    hostcalls::get_property(vec![path]).map_err(|status| ReadError(format!("property {path}: {status:?}")))
}

pub fn set_property(context_id: u32, path: &str, value: &[u8]) {
    if let Err(status) = hostcalls::set_property(vec![path], Some(value)) {
        warn!("#{context_id} could not set {path}: {status:?}");
    }
}

/// Sends a local reply and returns the `Pause` Envoy expects after one.
pub fn send_reply(context_id: u32, reply: &Reply) -> Action {
    let headers: Vec<(&str, &str)> = reply.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let status = u32::from(reply.status);
    if let Err(status) = hostcalls::send_http_response(status, headers, Some(&reply.body)) {
        warn!("#{context_id} could not send local reply: {status:?}");
    }
    Action::Pause
}

/// Fails closed for a filter whose configuration never loaded (503).
pub fn reply_unconfigured(context_id: u32) -> Action {
    let headers = request_headers().unwrap_or_default();
    let reply = tollgate_core::reply::UNCONFIGURED.reply(first(&headers, "x-request-id"), "tollgate");
    send_reply(context_id, &reply)
}

/// The plugin configuration bytes given to `on_configure`.
pub fn plugin_config(size: usize) -> Vec<u8> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// A fixed set of counters, defined once at configure time. A counter the
/// host refused to define is skipped, so metrics never fail a request.
#[derive(Debug, Default)]
pub struct Counters {
    ids: HashMap<String, u32>,
}

impl Counters {
    pub fn define<S: AsRef<str>>(names: &[S]) -> Counters {
        let ids = names
            .iter()
            .filter_map(|name| {
                let name = name.as_ref();
                match hostcalls::define_metric(MetricType::Counter, name) {
                    Ok(id) => Some((name.to_string(), id)),
                    Err(status) => {
                        warn!("could not define metric {name}: {status:?}");
                        None
                    }
                }
            })
            .collect();
        Counters { ids }
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn increment(&self, name: &str) {
        if let Some(id) = self.ids.get(name) {
            let _ = hostcalls::increment_metric(*id, 1);
        }
    }
}

/// Unix time in seconds (0 if the host will not say).
pub fn now_seconds() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// Unix time in milliseconds.
pub fn now_millis() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Takes the host's log level so that disabled levels cost no hostcall.
pub fn use_host_log_level() {
    if let Ok(level) = hostcalls::get_log_level() {
        proxy_wasm::set_log_level(level);
    }
}
