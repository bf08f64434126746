//! The rate limit stage in a real Envoy 1.40 with two workers: exact
//! counts across workers beside Envoy's own `local_ratelimit`, windows that
//! refill, overrides, shadow limits, client addresses from
//! `X-Forwarded-For`, each header style, gRPC's RESOURCE_EXHAUSTED and
//! bounded memory under many keys.

#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::require_artefacts;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tollgate_integration::http::KeepAlive;
use tollgate_integration::{docker, paths, Bootstrap, Delivery, Echo, Envoy, Filter, Request};

/// Tenants from the `x-tenant-id` header, one route with `limits`.
fn policy(limits: Value, ratelimit: Value) -> Value {
    json!({
        "version": 1,
        "tenants": [{"id": "ACME"}, {"id": "GLOBEX"}, {"id": "INITECH", "tier": "premium"}, {"id": "STD-001"}],
        "tenant": {"sources": ["header"]},
        "routes": [{"name": "trino", "match": {"prefix": "/api/trino"}, "limits": limits}],
        "ratelimit": ratelimit,
    })
}

/// The tenant and rate limit filters (fused when `TOLLGATE_DELIVERY=fused`).
fn start(policy: &Value) -> (Echo, Envoy) {
    require_artefacts();
    let echo = Echo::start_on(&format!("{}:0", docker::party_host())).unwrap();
    let mut bootstrap = Bootstrap::new(echo.port())
        .filter(Filter::tollgate("tollgate.tenant", &paths::module_wasm(), policy))
        .filter(Filter::tollgate("tollgate.ratelimit", &paths::module_wasm(), policy));
    bootstrap.limit_tag = true;
    let envoy = Envoy::start(&bootstrap.to_json());
    (echo, envoy)
}

/// Seconds since the epoch, with the fraction.
fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Waits, if need be, until at least `room` seconds are left in the
/// current window of `period` seconds (windows are aligned to the clock):
/// the requests of one check then all fall in one window.
fn inside_window(period: f64, room: f64) {
    let into = now() % period;
    if period - into < room {
        std::thread::sleep(Duration::from_secs_f64(period - into + 0.05));
    }
}

/// Sends `per_thread` requests on each of `threads` keep-alive connections
/// at once (the kernel spreads connections over both workers); the
/// statuses of all of them.
fn burst(envoy: &Envoy, threads: usize, per_thread: usize, request: &Request) -> Vec<u16> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut conn = KeepAlive::new(envoy.addr());
                    (0..per_thread)
                        .map(|_| conn.send(request).map_or(0, |r| r.status))
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

fn tenant(id: &str) -> Request {
    Request::get("/api/trino/q").header("x-tenant-id", id)
}

#[test]
fn many_concurrent_requests_are_admitted_exactly_up_to_the_limit_per_key() {
    let limits = json!([{"name": "trino-per-tenant", "key": ["tenant"], "requests": 50, "period": "hour"}]);
    let (_echo, envoy) = start(&policy(limits, json!({})));
    inside_window(3600.0, 30.0);
    let started = now();
    let (acme, globex) = std::thread::scope(|s| {
        let a = s.spawn(|| burst(&envoy, 8, 25, &tenant("ACME")));
        let g = s.spawn(|| burst(&envoy, 8, 25, &tenant("GLOBEX")));
        (a.join().unwrap(), g.join().unwrap())
    });
    println!("400 requests of two tenants in {:.2} s", now() - started);
    for (name, statuses) in [("ACME", &acme), ("GLOBEX", &globex)] {
        assert_eq!(count(statuses, 200), 50, "{name}: {statuses:?}");
        assert_eq!(count(statuses, 429), 150, "{name}: {statuses:?}");
    }
    let stat = |name: &str| {
        envoy
            .stat(&format!("wasmcustom.tollgate.ratelimit.{name}"))
            .unwrap_or(0)
    };
    assert_eq!(stat("limit.trino-per-tenant.allowed"), 100);
    assert_eq!(stat("limit.trino-per-tenant.limited"), 300);
    assert_eq!(stat("cas_retries_exhausted") + stat("slots_full"), 0);
    let prometheus = envoy
        .admin_get("/stats/prometheus")
        .map(|r| r.text())
        .unwrap_or_default();
    assert!(
        prometheus.contains("tollgate_ratelimit_limit_allowed{limit=\"trino-per-tenant\"} 100"),
        "the limit's name is a tag:\n{prometheus}"
    );
}

#[test]
fn envoys_own_local_ratelimit_admits_exactly_its_limit_in_the_same_setting() {
    require_artefacts();
    let echo = Echo::start_on(&format!("{}:0", docker::party_host())).unwrap();
    let mut bootstrap = Bootstrap::new(echo.port());
    bootstrap.native_filters = vec![json!({
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "native",
            "token_bucket": {"max_tokens": 50, "tokens_per_fill": 50, "fill_interval": "3600s"},
            "filter_enabled": {"default_value": {"numerator": 100}, "runtime_key": "rl_enabled"},
            "filter_enforced": {"default_value": {"numerator": 100}, "runtime_key": "rl_enforced"},
        },
    })];
    let envoy = Envoy::start(&bootstrap.to_json());
    let statuses = burst(&envoy, 8, 25, &tenant("ACME"));
    assert_eq!(count(&statuses, 200), 50, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 150);
}

#[test]
fn a_window_admits_requests_plus_burst_then_refills() {
    let limits = json!([
        {"name": "per-second", "key": ["tenant"], "requests": 5, "period": "second", "burst": 3}]);
    let (_echo, envoy) = start(&policy(limits, json!({})));
    // A fresh bucket holds requests + burst (8); each window adds 5.
    for (round, want) in [(0, 8), (1, 5), (2, 5)] {
        inside_window(1.0, 0.7);
        let statuses = burst(&envoy, 4, 6, &tenant("ACME"));
        assert_eq!(count(&statuses, 200), want, "window {round}: {statuses:?}");
        let rest = 1.0 - now() % 1.0;
        std::thread::sleep(Duration::from_secs_f64(rest + 0.05));
    }
    // Windows left unused carry at most `burst` over.
    std::thread::sleep(Duration::from_secs(2));
    inside_window(1.0, 0.7);
    assert_eq!(count(&burst(&envoy, 4, 6, &tenant("ACME")), 200), 8);
}

#[test]
fn tiers_and_tenants_override_and_refusals_carry_the_limit() {
    let limits = json!([{"name": "trino-per-tenant", "key": ["tenant"], "requests": 2, "period": "hour",
                         "tiers": {"premium": 4}, "tenants": {"STD-001": 1}}]);
    let (_echo, envoy) = start(&policy(limits, json!({})));
    inside_window(3600.0, 30.0);
    let statuses = |id: &str, n: usize| -> Vec<u16> { (0..n).map(|_| envoy.send(&tenant(id)).status).collect() };
    assert_eq!(statuses("ACME", 3), [200, 200, 429]);
    assert_eq!(statuses("INITECH", 5), [200, 200, 200, 200, 429], "tier premium: 4");
    assert_eq!(statuses("std-001", 2), [200, 429], "tenant STD-001: 1");

    let refused = envoy.send(&tenant("ACME").header("x-request-id", "rl-1"));
    assert_eq!(refused.status, 429);
    let body = refused.json();
    assert_eq!(body["reason"], "rate_limited");
    assert_eq!(body["limit"], "trino-per-tenant");
    assert_eq!(body["request_id"], "rl-1");
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"trino-per-tenant\";q=2;w=3600")
    );
    assert_eq!(
        refused.header("ratelimit"),
        Some(&*format!("\"trino-per-tenant\";r=0;t={retry}"))
    );
    let allowed = envoy.send(&tenant("GLOBEX"));
    assert_eq!(allowed.status, 200);
    assert_eq!(
        allowed.header("ratelimit-policy"),
        Some("\"trino-per-tenant\";q=2;w=3600")
    );
    assert!(
        allowed.header("ratelimit").is_some_and(|v| v.contains(";r=1;")),
        "{:?}",
        allowed.headers
    );
}

#[test]
fn shadow_limits_count_without_refusing_and_x_ratelimit_headers_show_the_tightest() {
    let limits = json!([
        {"name": "loose", "key": ["tenant"], "requests": 100, "period": "hour"},
        {"name": "tight", "key": ["tenant"], "requests": 1, "period": "hour", "mode": "shadow"}]);
    let (_echo, envoy) = start(&policy(limits, json!({"headers": "x-ratelimit"})));
    inside_window(3600.0, 30.0);
    for _ in 0..3 {
        let r = envoy.send(&tenant("ACME"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            r.header("x-ratelimit-limit"),
            Some("100"),
            "shadow limits are not shown"
        );
    }
    let r = envoy.send(&tenant("ACME"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("96"));
    assert!(r.header("x-ratelimit-reset").is_some_and(|v| v.parse::<u64>().is_ok()));
    assert!(r.header("ratelimit").is_none());
    let stat = |name: &str| {
        envoy
            .stat(&format!("wasmcustom.tollgate.ratelimit.{name}"))
            .unwrap_or(0)
    };
    assert_eq!(stat("limit.tight.shadow_limited"), 3);
    assert_eq!(stat("shadow_denied.rate_limited"), 3);
}

#[test]
fn the_client_address_is_the_trusted_hop_of_x_forwarded_for_and_headers_can_be_off() {
    let limits = json!([{"name": "per-ip", "key": ["client_ip"], "requests": 2, "period": "hour"}]);
    let config = json!({"client_ip": {"xff_trusted_hops": 1}, "headers": "none"});
    let (_echo, envoy) = start(&policy(limits, config));
    inside_window(3600.0, 30.0);
    let from = |xff: &str| envoy.send(&tenant("ACME").header("x-forwarded-for", xff));
    assert_eq!(from("198.51.100.1").status, 200);
    assert_eq!(
        from("203.0.113.7, 198.51.100.1").status,
        200,
        "what the client wrote is not trusted"
    );
    let third = from("198.51.100.1");
    assert_eq!(third.status, 429);
    assert!(third.header("ratelimit").is_none() && third.header("x-ratelimit-limit").is_none());
    assert!(third.header("retry-after").is_some());
    assert_eq!(from("198.51.100.2").status, 200, "another address has its own bucket");
    // No X-Forwarded-For: the peer's address (127.0.0.1 or the bridge's).
    assert_eq!(envoy.send(&tenant("ACME")).status, 200);
}

#[test]
fn a_grpc_call_over_its_limit_ends_with_resource_exhausted() {
    use tollgate_h2_party::grpc::{self, Code, CALL};
    require_artefacts();
    let limits = json!([{"name": "echo-calls", "key": ["route"], "requests": 1, "period": "hour"}]);
    let mut policy = policy(json!([]), json!({}));
    policy["routes"] = json!([{"name": "echo", "match": {"prefix": "/tollgate.test.Echo/"}, "limits": limits}]);
    let upstream = grpc::Upstream::start_on(&format!("{}:0", docker::party_host())).unwrap();
    let mut bootstrap =
        Bootstrap::new(upstream.port()).filter(Filter::tollgate("tollgate.ratelimit", &paths::module_wasm(), &policy));
    bootstrap.upstream_http2 = true;
    let envoy = Envoy::start(&bootstrap.to_json());
    inside_window(3600.0, 30.0);
    let call = || grpc::call(envoy.addr(), CALL, &[], "hello").unwrap();
    assert!(call().is_ok(), "the first call is within the limit");
    let status = call().expect_err("the second is over it");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let body: Value = serde_json::from_str(status.message()).unwrap();
    assert_eq!(body["limit"], "echo-calls");
}

/// Envoy's resident memory, in KiB (native runs only).
fn rss_kib(envoy: &Envoy) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", envoy.pid())).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_hundred_thousand_keys_leave_memory_bounded_and_refuse_no_one() {
    // One delivery is enough: the slot table is the stage's, whichever
    // filter runs it; container mode has no /proc of Envoy to read.
    if Delivery::from_env() != Delivery::Fused || docker::container_mode().is_some() {
        println!("runs in the native fused run only");
        return;
    }
    let limits = json!([{"name": "per-key", "key": ["header:x-api-key"], "requests": 5, "period": "hour"}]);
    let (_echo, envoy) = start(&policy(limits, json!({"slots_per_limit": 10000})));
    // Prepared slots are allocated at start: memory after the first few
    // requests is the baseline.
    envoy.send(&tenant("ACME").header("x-api-key", "warm-up"));
    let before = rss_kib(&envoy).unwrap();
    let keys = 100_000;
    let threads = 8;
    let refused = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let envoy = &envoy;
                scope.spawn(move || {
                    let mut conn = KeepAlive::new(envoy.addr());
                    (t..keys)
                        .step_by(threads)
                        .filter(|k| {
                            let request = tenant("ACME").header("x-api-key", &format!("key-{k}"));
                            conn.send(&request).map_or(true, |r| r.status != 200)
                        })
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum::<usize>()
    });
    let after = rss_kib(&envoy).unwrap();
    let stat = |name: &str| {
        envoy
            .stat(&format!("wasmcustom.tollgate.ratelimit.{name}"))
            .unwrap_or(0)
    };
    println!(
        "{keys} keys: Envoy RSS {before} KiB before, {after} KiB after; slots_full {}, allowed {}",
        stat("slots_full"),
        stat("limit.per-key.allowed")
    );
    assert_eq!(refused, 0, "no request is refused for lack of space");
    assert!(
        stat("slots_full") > 0,
        "10,000 slots cannot hold 100,000 keys of one window"
    );
    assert!(after < before + 64 * 1024, "RSS grew from {before} to {after} KiB");
}
