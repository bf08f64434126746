//! The audit stage against a fake host: one event per request with every
//! decision (fused, and behind separate filters from filter state), sent
//! from the tick, retried with backoff, kept across reloads, and a tick
//! shared with the jwt stage.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use crate::tests::{configured, get, NOW};
use serde_json::{json, Value};
use std::time::Duration;
use tollgate_host::fake::FakeHost;
use tollgate_host::{Flow, PipelineRoot};

fn policy(audit: Value) -> Value {
    json!({
        "version": 1,
        "routes": [
            {"name": "datahub", "match": {"prefix": "/api/datahub"}, "tenant": {"required": true},
             "audit": {"event_type": "data_access"}},
            {"name": "reads", "match": {"prefix": "/reads"}, "audit": {"sample": 0.0}},
        ],
        "tenants": [{"id": "ACME", "tier": "premium"}],
        "tenant": {"sources": ["header"]},
        "audit": audit,
    })
}

fn jsonl(extra: Value) -> Value {
    let mut audit = json!({"sink": {"cluster": "sink"}, "flush_interval_ms": 100, "batch_size": 10});
    if let (Some(a), Some(extra)) = (audit.as_object_mut(), extra.as_object()) {
        a.extend(extra.clone());
    }
    audit
}

/// A whole exchange through the roots, as Envoy runs a chain: headers,
/// then the status, then every root's log phase (a root that never saw
/// the headers, because one before it answered, logs it unseen).
fn exchange(host: &FakeHost, roots: &[&PipelineRoot], id: u32, headers: &[(String, String)], status: u64) -> Flow {
    let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    host.now_ms.set(NOW * 1000);
    host.begin(id, &pairs);
    let mut seen = Vec::new();
    let mut flow = Flow::Continue;
    for root in roots {
        let (f, shared) = root.pipeline().unwrap().on_request_headers(host, id, true);
        seen.push(shared);
        flow = f;
        if f == Flow::Pause {
            break;
        }
    }
    let status = host.request(id).reply.map_or(status, |r| u64::from(r.status));
    host.set_attribute(id, "response.code", &status.to_le_bytes());
    host.set_attribute(id, "source.address", b"10.1.2.3:5555");
    let started = (NOW * 1000 * 1_000_000).to_le_bytes();
    host.set_attribute(id, "request.time", &started);
    host.now_extra_ns.set(2_500_000);
    for (i, root) in roots.iter().enumerate() {
        match seen.get(i) {
            Some(shared) => root.pipeline().unwrap().on_log(host, shared),
            None => root.pipeline().unwrap().on_log_unseen(host, id),
        }
    }
    host.now_extra_ns.set(0);
    flow
}

/// Ticks the root `ms` later, and answers every new call with `status`;
/// the events the sink took.
fn tick(host: &FakeHost, root: &PipelineRoot, ms: u64, status: &str) -> Vec<Value> {
    host.now_ms.set(host.now_ms.get() + ms);
    let before = host.calls.borrow().len();
    host.current.set(0);
    root.pipeline().unwrap().on_tick(host);
    let calls: Vec<(u32, String, String)> = host.calls.borrow()[before..].to_vec();
    let mut events = Vec::new();
    for (token, cluster, path) in calls {
        assert_eq!((cluster.as_str(), path.as_str()), ("sink", "/events"));
        let body = body_of(host, token);
        *host.call_answer.borrow_mut() = (status.as_bytes().to_vec(), Vec::new());
        root.pipeline().unwrap().on_http_call_response(host, token, 0);
        if status.starts_with('2') {
            events.extend(body.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()));
        }
    }
    events
}

fn body_of(host: &FakeHost, token: u32) -> String {
    let bodies = host.call_bodies.borrow();
    let body = bodies.iter().find(|(t, _)| *t == token).map(|(_, b)| b.clone());
    String::from_utf8(body.unwrap()).unwrap()
}

fn decisions(event: &Value) -> Vec<(String, String, Option<String>)> {
    event["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["stage"].as_str().unwrap().to_string(),
                d["outcome"].as_str().unwrap().to_string(),
                d["reason"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn owned(s: &str, o: &str, r: Option<&str>) -> (String, String, Option<String>) {
    (s.to_string(), o.to_string(), r.map(str::to_string))
}

#[test]
fn every_request_gives_one_event_with_its_decisions() {
    let host = FakeHost::default();
    host.node.borrow_mut().insert("NAMESPACE".into(), b"data".to_vec());
    host.node
        .borrow_mut()
        .insert("WORKLOAD_NAME".into(), b"datahub-api".to_vec());
    let root = configured(
        &host,
        crate::fused,
        &policy(jsonl(json!({"capture_headers": ["user-agent"]}))),
    );
    let tenant = [
        ("x-tenant-id", "acme"),
        ("user-agent", "curl/8"),
        ("cookie", "s=secret"),
    ];
    exchange(&host, &[&root], 1, &get("/api/datahub/x?password=p", &tenant), 200);
    exchange(
        &host,
        &[&root],
        2,
        &get("/api/datahub/x", &[("x-tenant-id", "NOPE")]),
        200,
    );
    exchange(&host, &[&root], 3, &get("/api/%00", &[]), 200);
    let events = tick(&host, &root, 100, "200");
    assert_eq!(events.len(), 3);
    let allowed = &events[0];
    assert_eq!(decisions(allowed), [owned("tenant", "allow", None)]);
    assert_eq!(allowed["event_type"], "data_access");
    assert_eq!(allowed["route"], "datahub");
    assert_eq!(allowed["tenant"], "ACME");
    assert_eq!(allowed["tier"], "premium");
    assert_eq!(allowed["status"], 200);
    assert_eq!(allowed["path"], "/api/datahub/x", "query dropped");
    assert_eq!(allowed["source_ip"], "10.1.2.3");
    assert_eq!(allowed["duration_ms"], 2.5);
    assert_eq!(
        (allowed["service"].clone(), allowed["namespace"].clone()),
        (json!("datahub-api"), json!("data"))
    );
    assert_eq!(allowed["headers"], json!({"user-agent": "curl/8"}));
    assert_eq!(
        allowed["tenant_sources"],
        json!([{"source": "header", "value": "acme"}])
    );
    assert_eq!(decisions(&events[1]), [owned("tenant", "deny", Some("tenant_unknown"))]);
    assert_eq!(events[1]["status"], 403);
    let early = &events[2];
    assert_eq!(decisions(early)[0].0, "request");
    assert_eq!(early["route"], Value::Null);
    assert!(!events.iter().any(|e| e.to_string().contains("secret")));
    assert_eq!(host.counter("tollgate.audit.events_emitted"), 3);
    assert_eq!(host.counter("tollgate.audit.events_sent"), 3);
    assert_eq!(host.counter("tollgate.audit.batches_sent"), 1);
}

#[test]
fn behind_separate_filters_decisions_come_from_filter_state() {
    let host = FakeHost::default();
    let p = policy(jsonl(json!({})));
    let tenant = configured(&host, || crate::root_for("tollgate.tenant").unwrap(), &p);
    let audit = configured(&host, || crate::root_for("tollgate.audit").unwrap(), &p);
    exchange(
        &host,
        &[&tenant, &audit],
        1,
        &get("/api/datahub/x", &[("x-tenant-id", "acme")]),
        200,
    );
    // The tenant filter answers: the audit filter never sees the headers.
    exchange(&host, &[&tenant, &audit], 2, &get("/api/datahub/x", &[]), 200);
    exchange(&host, &[&tenant, &audit], 3, &get("/api/%00", &[]), 200);
    let events = tick(&host, &audit, 100, "204");
    assert_eq!(events.len(), 3);
    assert_eq!(decisions(&events[0]), [owned("tenant", "allow", None)]);
    assert_eq!(
        (events[0]["tenant"].clone(), events[0]["tier"].clone()),
        (json!("ACME"), json!("premium"))
    );
    assert_eq!(
        decisions(&events[1]),
        [owned("tenant", "deny", Some("tenant_required"))]
    );
    assert_eq!(events[1]["route"], "datahub");
    assert_eq!(decisions(&events[2])[0].0, "request");
}

#[test]
fn a_failed_batch_is_retried_after_a_backoff_and_then_arrives() {
    let host = FakeHost::default();
    let root = configured(&host, crate::fused, &policy(jsonl(json!({}))));
    for id in 1..=3 {
        exchange(
            &host,
            &[&root],
            id,
            &get("/api/datahub/x", &[("x-tenant-id", "ACME")]),
            200,
        );
    }
    assert!(tick(&host, &root, 100, "503").is_empty());
    assert_eq!(host.counter("tollgate.audit.batches_failed"), 1);
    assert_eq!(host.gauge("tollgate.audit.buffer_depth"), Some(3));
    assert!(tick(&host, &root, 100, "200").is_empty(), "backing off: no call");
    let events = tick(&host, &root, 200, "200");
    assert_eq!(events.len(), 3, "oldest first, none lost");
    assert_eq!(host.counter("tollgate.audit.events_sent"), 3);
    assert_eq!(host.gauge("tollgate.audit.buffer_depth"), Some(0));
}

#[test]
fn a_full_buffer_drops_the_oldest_and_counts_them() {
    let host = FakeHost::default();
    let root = configured(&host, crate::fused, &policy(jsonl(json!({"buffer_events": 10}))));
    for id in 1..=12 {
        let path = format!("/api/datahub/{id}");
        exchange(&host, &[&root], id, &get(&path, &[("x-tenant-id", "ACME")]), 200);
    }
    let events = tick(&host, &root, 100, "200");
    assert_eq!(host.counter("tollgate.audit.events_dropped.buffer_full"), 2);
    let paths: Vec<&str> = events.iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths.first(), Some(&"/api/datahub/3"));
    assert_eq!(paths.len(), 10);
}

#[test]
fn a_reload_keeps_buffered_events_and_removing_audit_counts_them() {
    let host = FakeHost::default();
    let mut root = configured(&host, crate::fused, &policy(jsonl(json!({}))));
    exchange(
        &host,
        &[&root],
        1,
        &get("/api/datahub/x", &[("x-tenant-id", "ACME")]),
        200,
    );
    assert!(root.configure(&host, policy(jsonl(json!({"batch_size": 5}))).to_string().as_bytes()));
    exchange(
        &host,
        &[&root],
        2,
        &get("/api/datahub/x", &[("x-tenant-id", "ACME")]),
        200,
    );
    assert_eq!(tick(&host, &root, 100, "200").len(), 2, "both survive the reload");
    exchange(
        &host,
        &[&root],
        3,
        &get("/api/datahub/x", &[("x-tenant-id", "ACME")]),
        200,
    );
    let mut without = policy(json!(null));
    without.as_object_mut().unwrap().remove("audit");
    for route in without["routes"].as_array_mut().unwrap() {
        route.as_object_mut().unwrap().remove("audit");
    }
    assert!(root.configure(&host, without.to_string().as_bytes()));
    assert_eq!(host.counter("tollgate.audit.events_dropped.resized"), 1);
}

#[test]
fn sampling_keeps_denials_and_counts_what_it_leaves_out() {
    let host = FakeHost::default();
    let root = configured(&host, crate::fused, &policy(jsonl(json!({}))));
    exchange(&host, &[&root], 1, &get("/reads/a", &[]), 200);
    exchange(&host, &[&root], 2, &get("/reads/a", &[("x-tenant-id", "NOPE")]), 200);
    let events = tick(&host, &root, 100, "200");
    assert_eq!(events.len(), 1);
    assert_eq!(decisions(&events[0]), [owned("tenant", "deny", Some("tenant_unknown"))]);
    assert_eq!(host.counter("tollgate.audit.events_sampled_out"), 1);
}

/// Sampling draws from the worker's pool of random bytes, as event ids
/// do: a host call per `RANDOM_POOL` bytes, not one per request.
#[test]
fn sampling_draws_from_the_pool_not_a_host_call_per_request() {
    let host = FakeHost::default();
    let mut sampled = policy(jsonl(json!({})));
    sampled["routes"][1]["audit"]["sample"] = json!(0.5);
    let root = configured(&host, crate::fused, &sampled);
    let random_calls = |h: &FakeHost| h.trace.borrow().iter().filter(|c| *c == "fill_random").count();
    exchange(&host, &[&root], 1, &get("/reads/a", &[]), 200);
    assert_eq!(random_calls(&host), 1, "the first request fills the pool");
    // At most 24 bytes a request (a draw and an id): 40 stay in one pool.
    for id in 2..=40 {
        exchange(&host, &[&root], id, &get("/reads/a", &[]), 200);
        assert_eq!(random_calls(&host), 0, "request {id}");
    }
    tick(&host, &root, 100, "200");
    let kept = host.counter("tollgate.audit.events_emitted");
    assert_eq!(kept + host.counter("tollgate.audit.events_sampled_out"), 40);
    assert!((8..=32).contains(&kept), "about half of 40 kept, not {kept}");
}

#[test]
fn the_tick_is_the_flush_interval_and_faster_while_a_full_batch_waits() {
    let host = FakeHost::default();
    let root = configured(
        &host,
        crate::fused,
        &policy(jsonl(json!({"batch_size": 2, "flush_interval_ms": 500}))),
    );
    assert_eq!(host.tick.get(), Duration::from_millis(500));
    for id in 1..=2 {
        exchange(
            &host,
            &[&root],
            id,
            &get("/api/datahub/x", &[("x-tenant-id", "ACME")]),
            200,
        );
    }
    assert_eq!(host.tick.get(), Duration::from_millis(10));
    assert_eq!(
        tick(&host, &root, 10, "200").len(),
        2,
        "a full batch goes before the interval"
    );
    assert_eq!(host.tick.get(), Duration::from_millis(500));
}

#[test]
fn format_log_writes_no_call_and_needs_no_cluster() {
    let host = FakeHost::default();
    let root = configured(&host, crate::fused, &policy(json!({"sink": {"format": "log"}})));
    exchange(
        &host,
        &[&root],
        1,
        &get("/api/datahub/x", &[("x-tenant-id", "ACME")]),
        200,
    );
    assert!(tick(&host, &root, 2000, "200").is_empty());
    assert!(host.calls.borrow().is_empty());
    assert_eq!(host.counter("tollgate.audit.events_sent"), 1);
}
