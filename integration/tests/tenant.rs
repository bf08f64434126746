//! The tenant filter in a real Envoy 1.40 (two workers).

#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{counter, start, tenant_denials, tenant_policy, upstream_values};
use tollgate_integration::Request;

#[test]
fn allowed_tenant_reaches_the_app_with_normalized_headers() {
    let (_echo, envoy) = start(&tenant_policy(), false);
    let response = envoy.send(
        &Request::get("/api/datahub/entities")
            .header("x-tenant-id", "std-001")
            .header("x-tenant-tier", "gold"),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(upstream_values(&response, "x-tenant-id"), ["STD-001"]);
    assert_eq!(upstream_values(&response, "x-tenant-tier"), ["premium"]);
    assert_eq!(response.json()["path"], "/api/datahub/entities");
    assert_eq!(counter(&envoy, "allowed"), 1);
}

#[test]
fn every_denial_has_its_status_reason_and_body() {
    let (_echo, envoy) = start(&tenant_policy(), false);
    let cases = tenant_denials();
    for (i, (path, headers, status, reason)) in cases.iter().enumerate() {
        let request_id = format!("req-{i}");
        let request = headers
            .iter()
            .fold(Request::get(path).header("x-request-id", &request_id), |r, (k, v)| {
                r.header(k, v)
            });
        let response = envoy.send(&request);
        assert_eq!(
            response.status,
            *status,
            "case {i} {path} {headers:?}: {}",
            response.text()
        );
        let body = response.json();
        assert_eq!(body["reason"], *reason, "case {i}: {body}");
        assert_eq!(body["request_id"], request_id.as_str(), "case {i}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "case {i}: {body}"
        );
        assert_eq!(response.header("content-type"), Some("application/json"), "case {i}");
        let challenge = response.header("www-authenticate");
        if *status == 401 {
            assert_eq!(challenge, Some("Bearer realm=\"tollgate-test\""), "case {i}");
        } else {
            assert_eq!(challenge, None, "case {i}");
        }
    }
    for (reason, count) in [
        ("tenant_required", 2),
        ("tenant_unknown", 1),
        ("tenant_suspended", 1),
        ("tenant_route_forbidden", 1),
        ("tenant_invalid", 2),
        ("tenant_mismatch", 3),
    ] {
        assert_eq!(counter(&envoy, &format!("denied.{reason}")), count, "{reason}");
    }
    assert_eq!(counter(&envoy, "allowed"), 0);
    let prometheus = envoy
        .admin_get("/stats/prometheus")
        .map(|r| r.text())
        .unwrap_or_default();
    assert!(
        prometheus.contains("tollgate_tenant_denied{reason=\"tenant_mismatch\"} 3"),
        "reason tag missing from Prometheus output:\n{prometheus}"
    );
}

#[test]
fn client_sent_tier_never_reaches_the_app() {
    let (_echo, envoy) = start(&tenant_policy(), false);
    // No tenant on a route that does not need one: both routing headers go.
    let response = envoy.send(&Request::get("/open/x").header("x-tenant-tier", "gold"));
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(upstream_values(&response, "x-tenant-tier").is_empty());
    assert!(upstream_values(&response, "x-tenant-id").is_empty());
    assert_eq!(counter(&envoy, "allowed_without_tenant"), 1);
    // Two tier headers and a tenant: exactly the tenant's tier arrives.
    let response = envoy.send(
        &Request::get("/open/x")
            .header("x-tenant-tier", "gold")
            .header("x-tenant-tier", "platinum")
            .header("x-tenant-id", "NED-001"),
    );
    assert_eq!(upstream_values(&response, "x-tenant-tier"), ["standard"]);
}

#[test]
fn path_tricks_cannot_dodge_a_route_rule() {
    let (_echo, envoy) = start(&tenant_policy(), false);
    // NED-001 may use datahub but not trino; each of these is trino.
    for path in [
        "/api/datahub/../trino/query",
        "/api//trino/query",
        "//api/trino",
        "/api/./trino",
        "/api/%74rino/query",
        "/api/datahub/%2e%2e/trino",
        "/api/datahub/%2E%2E/%2E%2E/api/trino",
        "/t/NED-001/api/datahub/../trino",
    ] {
        let response = envoy.send(&Request::get(path).header("x-tenant-id", "NED-001"));
        assert_eq!(response.status, 403, "{path}: {}", response.text());
        assert_eq!(response.json()["reason"], "tenant_route_forbidden", "{path}");
    }
    let allowed = envoy.send(&Request::get("/api/datahub/trino/../x").header("x-tenant-id", "NED-001"));
    assert_eq!(allowed.status, 200, "{}", allowed.text());
}

#[test]
fn verified_tenant_in_filter_state_is_a_source() {
    let (_echo, envoy) = start(&tenant_policy(), true);
    let response = envoy.send(&Request::get("/api/datahub").header("x-test-verified-tenant", "STD-001"));
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(upstream_values(&response, "x-tenant-id"), ["STD-001"]);
    assert_eq!(upstream_values(&response, "x-tenant-tier"), ["premium"]);
    assert!(upstream_values(&response, "x-test-verified-tenant").is_empty());
    // The verified claim says STD-001, the client's header another tenant.
    let spoofed = envoy.send(
        &Request::get("/api/datahub")
            .header("x-test-verified-tenant", "STD-001")
            .header("x-tenant-id", "NED-001"),
    );
    assert_eq!(spoofed.status, 403, "{}", spoofed.text());
    assert_eq!(spoofed.json()["reason"], "tenant_mismatch");
    // Agreeing sources pass.
    let agreeing = envoy.send(
        &Request::get("/api/datahub")
            .header("x-test-verified-tenant", "STD-001")
            .header("x-tenant-id", "std-001"),
    );
    assert_eq!(agreeing.status, 200, "{}", agreeing.text());
}

#[test]
fn host_and_path_sources() {
    let (_echo, envoy) = start(&tenant_policy(), false);
    let by_host = envoy.send(&Request::get("/api/datahub").header("host", "Std-001.tenants.example.com:8080"));
    assert_eq!(by_host.status, 200, "{}", by_host.text());
    assert_eq!(upstream_values(&by_host, "x-tenant-id"), ["STD-001"]);
    let by_path = envoy.send(&Request::get("/t/NED-001/api/datahub/entities"));
    assert_eq!(by_path.status, 200, "{}", by_path.text());
    assert_eq!(upstream_values(&by_path, "x-tenant-id"), ["NED-001"]);
    // The application still sees the path as sent.
    assert_eq!(by_path.json()["path"], "/t/NED-001/api/datahub/entities");
}

#[test]
fn shadow_mode_lets_denials_through_and_counts_them() {
    let (_echo, envoy) = start(&tenant_policy(), false);
    let response = envoy.send(
        &Request::get("/api/superset/dashboards")
            .header("x-tenant-id", "OLD-001")
            .header("x-tenant-tier", "gold"),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    // The tenant header is left as sent during rollout, the tier never.
    assert_eq!(upstream_values(&response, "x-tenant-id"), ["OLD-001"]);
    assert!(upstream_values(&response, "x-tenant-tier").is_empty());
    let missing = envoy.send(&Request::get("/api/superset"));
    assert_eq!(missing.status, 200);
    assert_eq!(counter(&envoy, "shadow_denied.tenant_suspended"), 1);
    assert_eq!(counter(&envoy, "shadow_denied.tenant_required"), 1);
    assert_eq!(counter(&envoy, "denied.tenant_suspended"), 0);
    assert_eq!(counter(&envoy, "denied.tenant_required"), 0);
}

#[test]
fn both_workers_run_the_filter() {
    let (_echo, envoy) = start(&tenant_policy(), false);
    let requests = 40;
    for i in 0..requests {
        let id = if i % 2 == 0 { "STD-001" } else { "NED-001" };
        let response = envoy.send(&Request::get("/api/datahub").header("x-tenant-id", id));
        assert_eq!(response.status, 200, "request {i}: {}", response.text());
        assert_eq!(upstream_values(&response, "x-tenant-id"), [id]);
    }
    assert_eq!(counter(&envoy, "allowed"), requests);
    for worker in 0..2 {
        let suffix = format!(".worker_{worker}.downstream_cx_total");
        // `listener.<address>_<port>.`: 127.0.0.1 natively, 0.0.0.0 in a container.
        let served = envoy.stat_where(|name| {
            name.starts_with("listener.") && !name.starts_with("listener.admin.") && name.ends_with(&suffix)
        });
        assert!(served > 0, "worker {worker} took no connection out of {requests}");
    }
}

#[test]
fn hostile_requests_do_not_trap_the_vm() {
    let (_echo, envoy) = start(&tenant_policy(), false);
    let long_path = format!("/api/datahub/{}", "../a/".repeat(1500));
    let many = (0..100).fold(Request::get("/api/datahub"), |r, i| {
        r.header("x-tenant-id", &format!("T-{i}"))
    });
    let hostile = [
        Request::get("/api/datahub").header_bytes("x-tenant-id", b"\xff\xfe\xc3"),
        Request::get("/api/datahub").header_bytes("x-request-id", b"\xff\xfe"),
        Request::get("/api/datahub").header("x-tenant-id", &"A".repeat(16 * 1024)),
        Request::get(&long_path).header("x-tenant-id", "STD-001"),
        Request::get("/api/datahub%").header("x-tenant-id", "STD-001"),
        Request::get("/api/datahub").header_bytes("host", b"\xff.tenants.example.com"),
        Request::get("/t//api/datahub"),
        Request::get("*").method("OPTIONS"),
        many,
    ];
    for request in &hostile {
        let response = envoy.send(request);
        assert!(
            response.status < 500,
            "{} {}: {}",
            request.method,
            request.target,
            response.text()
        );
    }
    // The VM on each worker still decides.
    for _ in 0..10 {
        let ok = envoy.send(&Request::get("/api/datahub").header("x-tenant-id", "STD-001"));
        assert_eq!(ok.status, 200, "{}", ok.text());
    }
    let log = envoy.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains("Function: proxy_on"), "{log}");
}

#[test]
fn underscore_spellings_of_routing_headers_never_reach_the_app() {
    let (_echo, envoy) = start(&tenant_policy(), false);
    let response = envoy.send(
        &Request::get("/api/datahub")
            .header("x_tenant_id", "std-001")
            .header("x_tenant_tier", "gold")
            .header("x-tenant_tier", "gold"),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(upstream_values(&response, "x-tenant-id"), ["STD-001"]);
    assert_eq!(upstream_values(&response, "x-tenant-tier"), ["premium"]);
    for name in ["x_tenant_id", "x_tenant_tier", "x-tenant_tier"] {
        assert!(upstream_values(&response, name).is_empty(), "{name} reached the app");
    }
    // A shadow denial keeps the header as sent, in its canonical spelling only.
    let shadow = envoy.send(
        &Request::get("/api/superset")
            .header("x-tenant-id", "OLD-001")
            .header("x_tenant_id", "OLD-001")
            .header("x_tenant_tier", "gold"),
    );
    assert_eq!(shadow.status, 200, "{}", shadow.text());
    assert_eq!(upstream_values(&shadow, "x-tenant-id"), ["OLD-001"]);
    for name in ["x_tenant_id", "x_tenant_tier", "x-tenant-tier"] {
        assert!(upstream_values(&shadow, name).is_empty(), "{name} reached the app");
    }
    // Disagreeing spellings are a mismatch, not a choice.
    let mixed = envoy.send(
        &Request::get("/api/datahub")
            .header("x-tenant-id", "STD-001")
            .header("x_tenant_id", "NED-001"),
    );
    assert_eq!(mixed.status, 403, "{}", mixed.text());
    assert_eq!(mixed.json()["reason"], "tenant_mismatch");
}
