//! `tollgate_envoy::Envoy`, the `Host` the filters run on, against a real
//! Envoy: properties by path, shared data with compare-and-swap, the clock
//! in nanoseconds, the random source, HTTP calls with a body, gRPC calls
//! to a real gRPC server and their answers, and response headers. The filter is the test-only
//! `host_probe.wasm`, which answers with what each call gave.
//!
//! `#[ignore]`: run once, by the step of `cargo xtask ci` that runs these
//! (`--ignored`), not again in each delivery mode of the suite.

#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::require_artefacts;
use serde_json::Value;
use tollgate_h2_party::grpc::Upstream;
use tollgate_integration::{docker, paths, Bootstrap, Delivery, Echo, Envoy, Filter, Request};

/// The echo upstream, a gRPC upstream (cluster `grpc`, h2c) and Envoy.
fn start() -> (Echo, Upstream, Envoy) {
    require_artefacts();
    let probe = paths::host_probe_wasm();
    paths::require(&probe, "cargo xtask build").unwrap();
    let echo = Echo::start();
    let grpc = Upstream::start_on(&format!("{}:0", docker::party_host())).unwrap();
    let mut bootstrap = Bootstrap::new(echo.port()).cluster("grpc", grpc.port());
    bootstrap.delivery = Delivery::Split;
    bootstrap = bootstrap.filter(Filter::test_only("probe", &probe));
    let mut config = bootstrap.to_json();
    let clusters = config["static_resources"]["clusters"].as_array_mut().unwrap();
    let grpc_cluster = clusters.iter_mut().find(|c| c["name"] == "grpc").unwrap();
    grpc_cluster["typed_extension_protocol_options"] = serde_json::json!({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        }
    });
    let envoy = Envoy::start(&config);
    (echo, grpc, envoy)
}

fn probe(envoy: &Envoy, what: &str) -> Value {
    let response = envoy.send(&Request::get("/probe/path?q=1").header("x-probe", what));
    assert_eq!(response.status, 200, "{what}: {}\n{}", response.text(), envoy.log());
    response.json()
}

#[test]
#[ignore]
fn the_envoy_host_calls_work_against_a_real_envoy() {
    let (_echo, _grpc, envoy) = start();

    let sync = probe(&envoy, "sync");
    // Properties by path: the client's address and the request's path.
    let source = sync["source_address"].as_str().unwrap_or_default();
    assert!(source.starts_with("127.0.0.1:"), "{sync}");
    assert_eq!(sync["request_path"], "/probe/path?q=1", "{sync}");
    // Shared data: a write, a read with its version, a CAS write with that
    // version, and a second one with the same (now stale) version refused.
    let shared = &sync["shared"];
    assert_eq!(shared["first_write"], true, "{sync}");
    assert_eq!(shared["read"], "1", "{sync}");
    assert_eq!(shared["cas_write"], true, "{sync}");
    assert_eq!(shared["stale_cas_refused"], true, "{sync}");
    assert_eq!(shared["after"], "2", "{sync}");
    // The clock in nanoseconds: a real Unix time, not rounded to milliseconds.
    let nanos: Vec<u64> = sync["nanos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert!(nanos.iter().all(|n| *n > 1_700_000_000_000_000_000), "{sync}");
    assert!(nanos.windows(2).all(|w| w[0] <= w[1]), "{sync}");
    assert!(nanos.iter().any(|n| n % 1_000_000 != 0), "{sync}");
    // WASI random_get: two draws, both non-zero and different.
    assert_eq!(sync["random"]["ok"], true, "{sync}");
    assert_eq!(sync["random"]["differ"], true, "{sync}");
    assert_eq!(sync["random"]["nonzero"], true, "{sync}");

    // The raw header map read gives what the SDK's copying read gives,
    // odd values and repeated names included.
    let odd = Request::get("/probe")
        .header("x-probe", "headers")
        .header("x-dup", "1")
        .header("x-dup", "2")
        .header("x-empty", "")
        .header_bytes("x-high", b"caf\xc3\xa9 \xff")
        .header("x-long", &"v".repeat(4000));
    let response = envoy.send(&odd);
    assert_eq!(response.status, 200, "{}", response.text());
    let headers = response.json();
    assert_eq!(headers["same"], true, "{headers}");
    assert!(headers["count"].as_u64().unwrap_or_default() >= 9, "{headers}");

    // An HTTP call with a body reaches the cluster, and its answer comes back.
    let http = probe(&envoy, "http");
    assert_eq!(http["status"], "200", "{http}");
    let echoed: Value = serde_json::from_str(http["body"].as_str().unwrap_or_default()).unwrap();
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["path"], "/probe");
    assert_eq!(echoed["body"], "probe-body");

    // A gRPC call reaches a real gRPC server with its metadata, and its
    // answer comes back: status 0 and the reply message (what the server
    // received: our message, the method's path, the metadata). A method
    // the server lacks comes back UNIMPLEMENTED (12); an unknown cluster is
    // refused at dispatch.
    let grpc = probe(&envoy, "grpc");
    assert_eq!(grpc["grpc_status"], 0, "{grpc}");
    let message = grpc["message"].as_str().unwrap_or_default();
    assert!(message.contains("ping"), "{grpc}");
    assert!(message.contains("/tollgate.test.Echo/Call"), "{grpc}");
    assert!(message.contains("x-probe-meta"), "{grpc}");
    let unimplemented = probe(&envoy, "grpc-unimplemented");
    assert_eq!(unimplemented["grpc_status"], 12, "{unimplemented}");
    let unknown = probe(&envoy, "grpc-unknown");
    assert!(unknown["dispatch_error"].is_string(), "{unknown}");

    // A response the filter lets through gets the header it added.
    let passed = envoy.send(&Request::get("/through"));
    assert_eq!(passed.status, 200);
    assert_eq!(passed.header("x-probe-added"), Some("1"));
}
