//! Test-only filter: each request with `x-probe: <what>` makes it call
//! `tollgate_envoy::Envoy`'s `Host` methods against the real Envoy and
//! answer 200 with a JSON of what they gave (integration/tests/host.rs).
//! Every response it lets through gets `x-probe-added` by
//! `add_response_header`. Never shipped.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use serde_json::{json, Value};
use std::time::Duration;
use tollgate_envoy::Envoy;
use tollgate_host::{first, GrpcCall, Host, SharedDataError};

proxy_wasm::main! {{
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Probe) });
}}

struct Probe;

fn answer(body: &Value) {
    let _ = Envoy.send_reply(
        200,
        None,
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    );
}

fn text(bytes: Option<Vec<u8>>) -> Value {
    bytes.map_or(Value::Null, |b| String::from_utf8_lossy(&b).into_owned().into())
}

/// Properties, shared data with CAS, the clock and the random source.
fn sync_probe() -> Value {
    let host = Envoy;
    let source = host.property_path(&["source", "address"]).ok().flatten();
    let path = host.property_path(&["request", "path"]).ok().flatten();
    let key = "tollgate.probe";
    let first_write = host.set_shared_data(key, b"1", None).is_ok();
    let (value, cas) = host.shared_data(key).unwrap_or((None, None));
    let cas_write = host.set_shared_data(key, b"2", cas).is_ok();
    let stale = matches!(host.set_shared_data(key, b"3", cas), Err(SharedDataError::CasMismatch));
    let after = host.shared_data(key).ok().and_then(|(v, _)| v);
    let times: Vec<u64> = (0..3).map(|_| host.now_nanos()).collect();
    let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
    let random_ok = host.fill_random(&mut a).is_ok() && host.fill_random(&mut b).is_ok();
    json!({
        "source_address": text(source),
        "request_path": text(path),
        "shared": {"first_write": first_write, "read": text(value), "cas_write": cas_write,
                   "stale_cas_refused": stale, "after": text(after)},
        "nanos": times,
        "random": {"ok": random_ok, "differ": a != b, "nonzero": a.iter().any(|x| *x != 0)},
    })
}

/// The raw read (`Envoy::request_headers`) against the SDK's own copy.
fn headers_probe(ours: &tollgate_host::Headers) -> Value {
    let sdk = proxy_wasm::hostcalls::get_map_bytes(proxy_wasm::types::MapType::HttpRequestHeaders).unwrap_or_default();
    let same = ours.len() == sdk.len()
        && ours
            .iter()
            .zip(&sdk)
            .all(|((k, v), (sk, sv))| k == sk && v == sv.as_slice());
    json!({"same": same, "count": ours.len()})
}

impl Context for Probe {
    fn on_http_call_response(&mut self, _: u32, _: usize, body_size: usize, _: usize) {
        let status = String::from_utf8_lossy(&Envoy.http_call_status()).into_owned();
        let body = String::from_utf8_lossy(&Envoy.http_call_body(body_size)).into_owned();
        answer(&json!({"status": status, "body": body}));
    }

    fn on_grpc_call_response(&mut self, _: u32, status: u32, size: usize) {
        let message = Envoy.grpc_call_response(size);
        answer(&json!({"grpc_status": status, "size": size, "message": String::from_utf8_lossy(&message)}));
    }
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let headers = Envoy.request_headers().unwrap_or_default();
        let what = first(&headers, "x-probe").map(|v| String::from_utf8_lossy(v).into_owned());
        match what.as_deref() {
            Some("sync") => answer(&sync_probe()),
            Some("headers") => answer(&headers_probe(&headers)),
            Some("http") => {
                let call = [(":method", "POST"), (":path", "/probe"), (":authority", "upstream")];
                let sent = Envoy.dispatch_http_call("upstream", &call, Some(b"probe-body"), Duration::from_secs(5));
                if let Err(e) = sent {
                    answer(&json!({"dispatch_error": e.0}));
                }
            }
            Some(which @ ("grpc" | "grpc-unimplemented" | "grpc-unknown")) => {
                let (cluster, service, method) = match which {
                    "grpc" => ("grpc", "tollgate.test.Echo", "Call"),
                    "grpc-unimplemented" => ("grpc", "tollgate.test.Probe", "Ping"),
                    _ => ("no-such-cluster", "tollgate.test.Echo", "Call"),
                };
                let call = GrpcCall {
                    cluster,
                    service,
                    method,
                    metadata: &[("x-probe-meta", b"1")],
                    // tollgate.test.CallRequest { message: "ping" }
                    message: b"\x0a\x04ping",
                    timeout: Duration::from_secs(5),
                };
                if let Err(e) = Envoy.dispatch_grpc_call(&call) {
                    answer(&json!({"dispatch_error": e.0}));
                }
            }
            _ => return Action::Continue,
        }
        Action::Pause
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        let _ = Envoy.add_response_header("x-probe-added", b"1");
        Action::Continue
    }
}
