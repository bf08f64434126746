//! The rate limit stage against a fake host: local buckets shared by
//! roots on one host (Envoy's workers share shared data), the answers'
//! status, headers and body, shadow limits, and global limits through a
//! gRPC call the request waits for.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use crate::tests::{configured, get, run};
use serde_json::{json, Value};
use tollgate_host::fake::FakeHost;
use tollgate_host::Flow;

fn policy(limits: Value, extra: Value) -> Value {
    let mut p = json!({
        "version": 1,
        "tenants": [{"id": "ACME"}, {"id": "INITECH", "tier": "premium"}, {"id": "STD-001"}],
        "tenant": {"sources": ["header"]},
        "routes": [{"name": "trino", "match": {"prefix": "/api/trino"}, "tenant": {"required": true}, "limits": limits}],
    });
    if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
        p.extend(extra.clone());
    }
    p
}

fn tenant_limit() -> Value {
    json!([{"name": "trino-per-tenant", "key": ["tenant"], "requests": 3, "period": "minute",
            "tiers": {"premium": 5}, "tenants": {"STD-001": 1}}])
}

fn status(host: &FakeHost, id: u32) -> u32 {
    host.request(id).reply.map_or(200, |r| r.status)
}

/// Sends `n` requests of a tenant from id `first`; the statuses.
fn send(host: &FakeHost, roots: &[&tollgate_host::PipelineRoot], first: u32, n: u32, tenant: &str) -> Vec<u32> {
    (first..first + n)
        .map(|id| {
            run(host, roots, id, &get("/api/trino/q", &[("x-tenant-id", tenant)]));
            status(host, id)
        })
        .collect()
}

#[test]
fn workers_share_one_bucket_per_tenant_and_overrides_apply() {
    let host = FakeHost::default();
    let p = policy(tenant_limit(), json!({}));
    // Two roots on one host: two workers of one Envoy.
    let a = configured(&host, crate::fused, &p);
    let b = configured(&host, crate::fused, &p);
    let mut acme = send(&host, &[&a], 1, 2, "ACME");
    acme.extend(send(&host, &[&b], 3, 3, "acme"));
    assert_eq!(acme, [200, 200, 200, 429, 429]);
    assert_eq!(
        send(&host, &[&b], 10, 6, "INITECH"),
        [200, 200, 200, 200, 200, 429],
        "tier premium: 5"
    );
    assert_eq!(send(&host, &[&a], 20, 2, "STD-001"), [200, 429], "tenant override: 1");
    assert_eq!(host.counter("tollgate.ratelimit.limit.trino-per-tenant.allowed"), 9);
    assert_eq!(host.counter("tollgate.ratelimit.limit.trino-per-tenant.limited"), 4);
    assert_eq!(host.counter("tollgate.ratelimit.denied.rate_limited"), 4);
    // Per tenant, under the policy's spelling whatever the request's.
    let tenant = |id: &str, outcome: &str| host.counter(&format!("tollgate.ratelimit.tenant.{id}.{outcome}"));
    assert_eq!((tenant("ACME", "allowed"), tenant("ACME", "limited")), (3, 2));
    assert_eq!((tenant("INITECH", "allowed"), tenant("INITECH", "limited")), (5, 1));
    assert_eq!((tenant("STD-001", "allowed"), tenant("STD-001", "limited")), (1, 1));
    assert_eq!(tenant("acme", "allowed"), 0);

    let refused = host.request(4).reply.unwrap();
    assert_eq!(refused.grpc_status, Some(8), "RESOURCE_EXHAUSTED for gRPC clients");
    let body: Value = serde_json::from_slice(&refused.body).unwrap();
    assert_eq!(
        (body["reason"].as_str(), body["limit"].as_str()),
        (Some("rate_limited"), Some("trino-per-tenant"))
    );
    let header = |name: &str| refused.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let retry: u64 = header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(
        header("ratelimit-policy").as_deref(),
        Some("\"trino-per-tenant\";q=3;w=60")
    );
    assert_eq!(header("ratelimit"), Some(format!("\"trino-per-tenant\";r=0;t={retry}")));

    // The next window admits again.
    host.now_extra_ns.set(60_000_000_000);
    let id = 30;
    let shared = {
        host.begin(
            id,
            &[
                (":method", "GET"),
                (":path", "/api/trino/q"),
                (":authority", "a"),
                ("x-tenant-id", "ACME"),
            ],
        );
        let (flow, shared) = a.pipeline().unwrap().on_request_headers(&host, id, true);
        assert_eq!(flow, Flow::Continue);
        shared
    };
    a.pipeline().unwrap().on_response_headers(&host, &shared);
    let added = host.request(id).response_headers;
    let expected = format!("\"trino-per-tenant\";r=2;t={retry}");
    assert!(
        added.contains(&("ratelimit".into(), expected.into_bytes())),
        "{added:?}"
    );
}

#[test]
fn shadow_limits_only_count_and_x_ratelimit_headers_name_the_tightest() {
    let limits = json!([
        {"name": "loose", "key": ["tenant"], "requests": 10, "period": "second"},
        {"name": "tight", "key": ["header:x-api-key"], "requests": 1, "period": "second", "mode": "shadow"}]);
    let host = FakeHost::default();
    let root = configured(
        &host,
        crate::fused,
        &policy(limits, json!({"ratelimit": {"headers": "x-ratelimit"}})),
    );
    assert_eq!(send(&host, &[&root], 1, 3, "ACME"), [200, 200, 200]);
    assert_eq!(host.counter("tollgate.ratelimit.limit.tight.shadow_limited"), 2);
    assert_eq!(host.counter("tollgate.ratelimit.shadow_denied.rate_limited"), 2);
    assert_eq!(host.counter("tollgate.ratelimit.limit.loose.allowed"), 3);
}

#[test]
fn the_separate_filter_keys_on_the_tenant_in_filter_state() {
    let host = FakeHost::default();
    let p = policy(tenant_limit(), json!({}));
    let tenant = configured(&host, || crate::root_for("tollgate.tenant").unwrap(), &p);
    let limit = configured(&host, || crate::root_for("tollgate.ratelimit").unwrap(), &p);
    assert_eq!(send(&host, &[&tenant, &limit], 1, 4, "ACME"), [200, 200, 200, 429]);
    assert_eq!(send(&host, &[&tenant, &limit], 5, 1, "INITECH"), [200]);
    assert_eq!(host.counter("tollgate.ratelimit.tenant.ACME.limited"), 1);
    assert_eq!(host.counter("tollgate.ratelimit.tenant.INITECH.allowed"), 1);
    let record: Value = serde_json::from_slice(&host.request(4).state["tollgate.decision.ratelimit"]).unwrap();
    assert_eq!(
        (record["outcome"].as_str(), record["limit"].as_str()),
        (Some("deny"), Some("trino-per-tenant"))
    );
}

fn global(failure_mode: &str) -> Value {
    let limits = json!([{"name": "mesh", "key": ["tenant"], "requests": 100, "period": "minute", "scope": "global",
                         "tiers": {"premium": 7}}]);
    policy(
        limits,
        json!({"ratelimit": {"service": {"cluster": "rls", "domain": "d", "timeout_ms": 20, "failure_mode": failure_mode}}}),
    )
}

/// `RateLimitResponse{overall_code: code, statuses: [{code, remaining 0, reset 5s}]}`.
fn answer(code: u8) -> Vec<u8> {
    vec![
        0x08, code, 0x12, 0x0a, 0x08, code, 0x18, 0x00, 0x22, 0x02, 0x08, 0x05, 0x10, 0x00,
    ]
}

#[test]
fn global_limits_wait_for_the_service_and_resume_at_the_stage() {
    let host = FakeHost::default();
    let root = configured(&host, crate::fused, &global("allow"));
    let pipeline = root.pipeline().unwrap();
    assert_eq!(
        run(&host, &[&root], 1, &get("/api/trino/q", &[("x-tenant-id", "INITECH")])),
        Flow::Pause
    );
    let call = host.grpc_calls.borrow()[0].clone();
    assert_eq!(
        (call.cluster.as_str(), call.service.as_str(), call.method.as_str()),
        ("rls", "envoy.service.ratelimit.v3.RateLimitService", "ShouldRateLimit")
    );
    assert!(call.message.starts_with(b"\x0a\x01d"), "domain d");
    assert!(call.message.windows(7).any(|w| w == b"INITECH"));
    // Tier premium sends 7 per MINUTE as the override: {1: 7, 2: 2}.
    assert!(call
        .message
        .windows(6)
        .any(|w| w == [0x12, 0x04, 0x08, 0x07, 0x10, 0x02]));

    *host.grpc_answer.borrow_mut() = answer(2);
    pipeline.on_grpc_call_response(&host, call.token, 0, answer(2).len());
    let reply = host.request(1).reply.unwrap();
    assert_eq!(reply.status, 429);
    assert!(reply.headers.contains(&("retry-after".into(), "5".into())));

    run(&host, &[&root], 2, &get("/api/trino/q", &[("x-tenant-id", "ACME")]));
    let token = host.grpc_calls.borrow()[1].token;
    *host.grpc_answer.borrow_mut() = answer(1);
    pipeline.on_grpc_call_response(&host, token, 0, answer(1).len());
    assert_eq!((host.request(2).reply, host.request(2).resumed), (None, 1));

    // Late (DEADLINE_EXCEEDED): failure_mode allow lets it through.
    run(&host, &[&root], 3, &get("/api/trino/q", &[("x-tenant-id", "ACME")]));
    let token = host.grpc_calls.borrow()[2].token;
    pipeline.on_grpc_call_response(&host, token, 4, 0);
    assert_eq!((host.request(3).reply, host.request(3).resumed), (None, 1));
    assert_eq!(host.counter("tollgate.ratelimit.service_timeout"), 1);
    assert_eq!(host.counter("tollgate.ratelimit.failure_mode_allowed"), 1);
    assert_eq!(pipeline.waiting(), 0);
    // Counted per tenant once the answer came, or the call failed.
    assert_eq!(host.counter("tollgate.ratelimit.tenant.INITECH.limited"), 1);
    assert_eq!(host.counter("tollgate.ratelimit.tenant.ACME.allowed"), 2);
}

#[test]
fn a_failed_service_with_failure_mode_deny_refuses_with_500() {
    let host = FakeHost::default();
    let root = configured(&host, crate::fused, &global("deny"));
    run(&host, &[&root], 1, &get("/api/trino/q", &[("x-tenant-id", "ACME")]));
    let token = host.grpc_calls.borrow()[0].token;
    root.pipeline().unwrap().on_grpc_call_response(&host, token, 14, 0);
    assert_eq!(status(&host, 1), 500);
    assert_eq!(host.counter("tollgate.ratelimit.service_error"), 1);
    assert_eq!(host.counter("tollgate.ratelimit.failure_mode_denied"), 1);
    // A call that cannot start is decided at once, the same way.
    host.fail("dispatch_grpc");
    assert_eq!(
        run(&host, &[&root], 2, &get("/api/trino/q", &[("x-tenant-id", "ACME")])),
        Flow::Pause
    );
    assert_eq!(status(&host, 2), 500);
}

/// The service's overall code decides, as for Envoy's `ratelimit` filter.
#[test]
fn the_services_overall_code_decides() {
    let host = FakeHost::default();
    let root = configured(&host, crate::fused, &global("allow"));
    let pipeline = root.pipeline().unwrap();
    let ask = |id: u32, answer: Vec<u8>| {
        run(&host, &[&root], id, &get("/api/trino/q", &[("x-tenant-id", "ACME")]));
        let token = host.grpc_calls.borrow().last().unwrap().token;
        let size = answer.len();
        *host.grpc_answer.borrow_mut() = answer;
        pipeline.on_grpc_call_response(&host, token, 0, size);
        status(&host, id)
    };
    // envoyproxy/ratelimit in global shadow mode: OK over an OVER_LIMIT status.
    let mut shadowed = answer(2);
    shadowed[1] = 1;
    assert_eq!(ask(1, shadowed), 200);
    // OVER_LIMIT without statuses: over, not a failed call let through.
    assert_eq!(ask(2, vec![0x08, 0x02]), 429);
    assert_eq!(host.counter("tollgate.ratelimit.service_error"), 0);
    let body: Value = serde_json::from_slice(&host.request(2).reply.unwrap().body).unwrap();
    assert_eq!(body["limit"].as_str(), Some("mesh"));
}
