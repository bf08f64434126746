//! The audit stage against a fake host: behind separate filters, reading
//! the others' filter state in the log phase, it writes the event the
//! fused filter writes.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use crate::tests::{configured, get, policy, provider, token, NOW};
use serde_json::{json, Value};
use tollgate_host::fake::FakeHost;
use tollgate_host::{Flow, PipelineRoot};

/// Datahub's rule reads `roles`; events go to the `sink` cluster.
fn audit_policy() -> Value {
    let mut policy = policy(provider());
    policy["routes"][0]["jwt"]["rules"] = json!([{"claim": "roles", "contains": "analyst"}]);
    policy["audit"] = json!({"sink": {"format": "jsonl", "cluster": "sink"}, "flush_interval_ms": 10});
    policy
}

/// Runs request `id` through `roots` as Envoy runs a chain (the last
/// root audits), ends it, lets the audit root flush, and returns the
/// event it sent, without the fields that differ per run.
fn event(host: &FakeHost, roots: &[&PipelineRoot], id: u32, request: &[(String, String)]) -> Value {
    let headers: Vec<(&str, &str)> = request.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // A clock that moves on per request, so every tick finds a flush due.
    let at = NOW * 1000 + u64::from(id) * 1000;
    host.now_ms.set(at);
    host.begin(id, &headers);
    let mut seen = Vec::new();
    for root in roots {
        let (flow, shared) = root.pipeline().unwrap().on_request_headers(host, id, true);
        seen.push(shared);
        if flow == Flow::Pause {
            break;
        }
    }
    let audit = roots.last().unwrap().pipeline().unwrap();
    match seen.get(roots.len() - 1) {
        Some(shared) => audit.on_log(host, shared),
        None => audit.on_log_unseen(host, id),
    }
    host.now_ms.set(at + 500);
    let before = host.call_bodies.borrow().len();
    audit.on_tick(host);
    let sent: Vec<(u32, Vec<u8>)> = host.call_bodies.borrow()[before..].to_vec();
    let [(token, body)] = sent.as_slice() else {
        panic!("request {id}: one batch, not {sent:?}")
    };
    // The sink takes it, so calls never pile up.
    *host.call_answer.borrow_mut() = (b"200".to_vec(), Vec::new());
    audit.on_http_call_response(host, *token, 0);
    let mut event: Value = serde_json::from_slice(body).unwrap();
    for varying in ["event_id", "time"] {
        event.as_object_mut().unwrap().remove(varying);
    }
    event
}

#[test]
fn behind_separate_filters_the_event_is_the_fused_filters() {
    let policy = audit_policy();
    let split_host = FakeHost::default();
    let jwt = configured(&split_host, || crate::root_for("tollgate.jwt").unwrap(), &policy);
    let tenant = configured(&split_host, || crate::root_for("tollgate.tenant").unwrap(), &policy);
    let audit = configured(&split_host, || crate::root_for("tollgate.audit").unwrap(), &policy);
    let split = [&jwt, &tenant, &audit];
    // Another root id: the fused filter's buffer is its own.
    let fused_host = FakeHost::default();
    *fused_host.root.borrow_mut() = "tollgate".into();
    let fused = configured(&fused_host, crate::fused, &policy);
    let bearer = |t: &str| format!("Bearer {}", token(t));
    let requests = [
        get("/api/datahub/x", &[("authorization", &bearer("ACME"))]),
        get("/api/datahub/x", &[("authorization", &bearer("GLOBEX"))]),
        get("/api/datahub/x", &[("x-tenant-id", "ACME")]),
        get("/open/x", &[("x-tenant-id", "ACME")]),
        get("/api/datahub/%00", &[]),
    ];
    let mut events = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        let id = u32::try_from(i).unwrap() + 1;
        let split_event = event(&split_host, &split, id, request);
        let fused_event = event(&fused_host, &[&fused], id, request);
        assert_eq!(split_event, fused_event, "request {i}");
        events.push(fused_event);
    }
    // Not vacuous: the claims the rule reads and the sources the tenant
    // stage saw (the claim only: the header it set is not one).
    assert_eq!(events[0]["claims"], json!({"roles": ["analyst"]}));
    assert_eq!(
        events[0]["tenant_sources"],
        json!([{"source": "claim", "value": "ACME"}])
    );
    assert_eq!(events[0]["tenant"], "ACME");
    assert_eq!(events[1]["decisions"][1]["reason"], "tenant_suspended");
    assert_eq!(events[2]["decisions"][0]["reason"], "token_missing");
    assert_eq!(
        events[3]["tenant_sources"],
        json!([{"source": "header", "value": "ACME"}])
    );
    assert_eq!(events[4]["decisions"][0]["stage"], "request");
    assert!(events.iter().all(|e| e["duration_ms"] == 0.0), "{events:?}");
}

/// A request the jwt filter refused never reached the separate audit
/// filter's request phase: its duration is from Envoy's `request.time`.
#[test]
fn a_request_an_earlier_filter_refused_is_timed_from_envoys_start() {
    let policy = audit_policy();
    let host = FakeHost::default();
    let jwt = configured(&host, || crate::root_for("tollgate.jwt").unwrap(), &policy);
    let audit = configured(&host, || crate::root_for("tollgate.audit").unwrap(), &policy);
    let request = get("/api/datahub/x", &[]);
    let headers: Vec<(&str, &str)> = request.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let start_ms = NOW * 1000;
    host.now_ms.set(start_ms);
    host.begin(1, &headers);
    assert_eq!(
        jwt.pipeline().unwrap().on_request_headers(&host, 1, true).0,
        Flow::Pause
    );
    let start_ns = start_ms * 1_000_000;
    host.set_attribute(1, "request.time", &start_ns.to_le_bytes());
    host.now_ms.set(start_ms + 7);
    let pipeline = audit.pipeline().unwrap();
    pipeline.on_log_unseen(&host, 1);
    pipeline.on_tick(&host);
    let body = host.call_bodies.borrow()[0].1.clone();
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["decisions"][0]["reason"], "token_missing");
    assert_eq!(event["duration_ms"], 7.0);
}
