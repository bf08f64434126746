//! `Host` over proxy-wasm's hostcalls. Only `hostcalls::*` (which return
//! `Result`) are used, never the SDK's trait defaults that unwrap, and
//! header values are read as bytes: a bad header must not trap the VM.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};
use std::time::Duration;
use tollgate_host::{GrpcCall, Headers, Host, HostError, ReadError, SharedDataError, Versioned};

/// The real host: Envoy, through proxy-wasm.
#[derive(Debug, Default, Clone, Copy)]
pub struct Envoy;

fn failed<S: std::fmt::Debug>(what: &str) -> impl FnOnce(S) -> HostError + '_ {
    move |status| HostError(format!("{what}: {status:?}"))
}

impl Host for Envoy {
    /// The raw map (`raw.rs`), read without a copy per pair. Every request
    /// has `:method`, so a map without it is a failed read, not a request.
    fn request_headers(&self) -> Result<Headers, ReadError> {
        let buffer = crate::raw::request_header_map()
            .map_err(|status| ReadError(format!("request headers: status {status}")))?;
        match Headers::from_wire(buffer) {
            Ok(headers) if headers.first(":method").is_some() => Ok(headers),
            Ok(_) => Err(ReadError("request headers are empty or have no :method".into())),
            Err(e) => Err(ReadError(format!("request headers: {e:?}"))),
        }
    }

    fn set_request_header(&self, name: &str, value: Option<&[u8]>) -> Result<(), HostError> {
        hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, value).map_err(failed(name))
    }

    fn request_body(&self, size: usize) -> Result<Vec<u8>, ReadError> {
        hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
            .map(Option::unwrap_or_default)
            .map_err(|status| ReadError(format!("request body: {status:?}")))
    }

    fn add_response_header(&self, name: &str, value: &[u8]) -> Result<(), HostError> {
        hostcalls::add_map_value_bytes(MapType::HttpResponseHeaders, name, value).map_err(failed(name))
    }

    fn send_reply(
        &self,
        status: u32,
        grpc_status: Option<u32>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        match grpc_status {
            None => hostcalls::send_http_response(status, headers.to_vec(), Some(body)).map_err(failed("local reply")),
            Some(grpc) => crate::raw::send_local_response(status, grpc, headers, body)
                .map_err(|s| HostError(format!("local reply: status {s}"))),
        }
    }

    fn property(&self, path: &str) -> Result<Option<Vec<u8>>, ReadError> {
        hostcalls::get_property(vec![path]).map_err(|status| ReadError(format!("property {path}: {status:?}")))
    }

    fn property_path(&self, path: &[&str]) -> Result<Option<Vec<u8>>, ReadError> {
        hostcalls::get_property(path.to_vec())
            .map_err(|status| ReadError(format!("property {}: {status:?}", path.join("."))))
    }

    fn shared_data(&self, key: &str) -> Result<Versioned, ReadError> {
        hostcalls::get_shared_data(key).map_err(|status| ReadError(format!("shared data {key}: {status:?}")))
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(SharedDataError::CasMismatch),
            Err(status) => Err(SharedDataError::Refused(format!("shared data {key}: {status:?}"))),
        }
    }

    /// Envoy 1.40 answers `xds.node` only (`node` is not found there);
    /// older proxies answer `node`.
    fn node_metadata(&self, key: &str) -> Result<Option<Vec<u8>>, ReadError> {
        let read = |path: Vec<&str>| {
            hostcalls::get_property(path).map_err(|status| ReadError(format!("xds.node.metadata.{key}: {status:?}")))
        };
        match read(vec!["xds", "node", "metadata", key])? {
            Some(value) => Ok(Some(value)),
            None => read(vec!["node", "metadata", key]),
        }
    }

    fn set_property(&self, path: &str, value: &[u8]) -> Result<(), HostError> {
        hostcalls::set_property(vec![path], Some(value)).map_err(failed(path))
    }

    fn define_counter(&self, name: &str) -> Result<u32, HostError> {
        hostcalls::define_metric(MetricType::Counter, name).map_err(failed(name))
    }

    fn increment_counter(&self, id: u32) {
        let _ = hostcalls::increment_metric(id, 1);
    }

    fn add_gauge(&self, id: u32, delta: i64) {
        // Envoy adds a positive offset to a gauge and subtracts a negative one.
        let _ = hostcalls::increment_metric(id, delta);
    }

    fn add_counter(&self, id: u32, n: u64) {
        let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
    }

    fn define_gauge(&self, name: &str) -> Result<u32, HostError> {
        hostcalls::define_metric(MetricType::Gauge, name).map_err(failed(name))
    }

    fn set_gauge(&self, id: u32, value: u64) {
        let _ = hostcalls::record_metric(id, value);
    }

    fn now_nanos(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    /// WASI `random_get`, which Envoy serves from its own secure source.
    fn fill_random(&self, buf: &mut [u8]) -> Result<(), HostError> {
        getrandom::fill(buf).map_err(|e| HostError(format!("random_get: {e}")))
    }

    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError> {
        hostcalls::set_effective_context(context_id).map_err(failed("effective context"))
    }

    fn resume_request(&self) {
        let _ = hostcalls::resume_http_request();
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError> {
        hostcalls::dispatch_http_call(cluster, headers.to_vec(), body, vec![], timeout).map_err(failed(cluster))
    }

    fn dispatch_grpc_call(&self, call: &GrpcCall<'_>) -> Result<u32, HostError> {
        hostcalls::dispatch_grpc_call(
            call.cluster,
            call.service,
            call.method,
            call.metadata.to_vec(),
            Some(call.message),
            call.timeout,
        )
        .map_err(failed(call.cluster))
    }

    fn grpc_call_response(&self, size: usize) -> Vec<u8> {
        hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn http_call_status(&self) -> Vec<u8> {
        hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn http_call_body(&self, size: usize) -> Vec<u8> {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn set_tick_period(&self, period: Duration) -> Result<(), HostError> {
        hostcalls::set_tick_period(period).map_err(failed("tick period"))
    }

    fn call_foreign_function(&self, name: &str, args: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
        hostcalls::call_foreign_function(name, Some(args)).map_err(failed(name))
    }

    fn plugin_config(&self, size: usize) -> Vec<u8> {
        hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn root_id(&self) -> String {
        hostcalls::get_property(vec!["plugin_root_id"])
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn plugin_name(&self) -> String {
        hostcalls::get_property(vec!["plugin_name"])
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

/// Takes the host's log level so that disabled levels cost no hostcall.
pub fn use_host_log_level() {
    if let Ok(level) = hostcalls::get_log_level() {
        proxy_wasm::set_log_level(level);
    }
}
