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

/// An allowed request of tenant ACME to `/api/datahub/<id>`.
fn acme_at(host: &FakeHost, root: &PipelineRoot, id: u32) {
    let path = format!("/api/datahub/{id}");
    exchange(host, &[root], id, &get(&path, &[("x-tenant-id", "ACME")]), 200);
}

/// An allowed datahub request of tenant ACME.
fn acme(host: &FakeHost, root: &PipelineRoot, id: u32) {
    exchange(
        host,
        &[root],
        id,
        &get("/api/datahub/x", &[("x-tenant-id", "ACME")]),
        200,
    );
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
        acme(&host, &root, id);
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
    assert!(tick(&host, &root, 100, "503").is_empty(), "back in the buffer");
    let waiting = |host: &FakeHost| {
        host.gauge("tollgate.audit.buffer_depth").unwrap() + host.gauge("tollgate.audit.in_flight_events").unwrap()
    };
    assert_eq!(waiting(&host), 1);
    assert!(root.configure(&host, policy(jsonl(json!({"batch_size": 5}))).to_string().as_bytes()));
    assert_eq!(waiting(&host), 1, "not counted twice");
    exchange(
        &host,
        &[&root],
        2,
        &get("/api/datahub/x", &[("x-tenant-id", "ACME")]),
        200,
    );
    assert_eq!(tick(&host, &root, 400, "200").len(), 2, "both survive the reload");
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
    // The application refused it: a failed read is kept too.
    exchange(&host, &[&root], 3, &get("/reads/b", &[]), 404);
    // A gRPC service refuses under HTTP 200: kept too; its OK is sampled.
    let pipeline = root.pipeline().unwrap();
    for (id, code) in [(4u32, 7u64), (5, 0)] {
        host.begin(
            id,
            &[
                (":method", "POST"),
                (":path", "/reads/c"),
                (":authority", "api.test"),
                ("content-type", "application/grpc"),
            ],
        );
        let (_, cx) = pipeline.on_request_headers(&host, id, false);
        host.set_attribute(id, "response.code", &200u64.to_le_bytes());
        host.set_attribute(id, "response.grpc_status", &code.to_le_bytes());
        pipeline.on_log(&host, &cx);
    }
    let events = tick(&host, &root, 100, "200");
    assert_eq!(events.len(), 3);
    assert_eq!(decisions(&events[0]), [owned("tenant", "deny", Some("tenant_unknown"))]);
    assert_eq!(events[1]["status"], 404);
    assert_eq!(events[2]["path"], "/reads/c");
    assert_eq!(host.counter("tollgate.audit.events_sampled_out"), 2);
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
        acme(&host, &root, id);
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

/// Attack: in a namespace with its own plugin, the mesh-wide plugin stands
/// aside (`skip_namespaces`) but its audit stage still logged every request,
/// so each request gave two events (one from each plugin).
#[test]
fn a_plugin_that_stands_aside_records_no_event() {
    let host = FakeHost::default();
    host.node.borrow_mut().insert("NAMESPACE".into(), b"datahub".to_vec());
    let mut mesh_wide = policy(jsonl(json!({})));
    mesh_wide["skip_namespaces"] = json!(["datahub"]);
    let root = configured(&host, crate::fused, &mesh_wide);
    exchange(
        &host,
        &[&root],
        1,
        &get("/api/datahub/x", &[("x-tenant-id", "ACME")]),
        200,
    );
    assert!(tick(&host, &root, 100, "200").is_empty());
    assert_eq!(host.counter("tollgate.audit.events_emitted"), 0);
}

/// Attack: a reload from a sink to `format: log` left the buffered events
/// in the buffer; the next tick took them out and encoded nothing, so they
/// were neither sent, logged nor counted as dropped.
#[test]
fn a_reload_to_format_log_loses_no_buffered_event_uncounted() {
    let host = FakeHost::default();
    let mut root = configured(&host, crate::fused, &policy(jsonl(json!({}))));
    for id in 1..=2 {
        exchange(
            &host,
            &[&root],
            id,
            &get("/api/datahub/x", &[("x-tenant-id", "ACME")]),
            200,
        );
    }
    let log = policy(json!({"sink": {"format": "log"}}));
    assert!(root.configure(&host, log.to_string().as_bytes()));
    tick(&host, &root, 2000, "200");
    let accounted = host.counter("tollgate.audit.events_sent")
        + host.counter("tollgate.audit.events_dropped.resized")
        + host.gauge("tollgate.audit.buffer_depth").unwrap_or(0);
    assert_eq!(accounted, 2, "every buffered event is logged, sent or counted");
}

/// Attack: a request answered by a filter before the audit filter was
/// logged unseen with a start time of 0, so its event's `duration_ms` was
/// the time since 1970 (an impact analysis or a latency query reading it
/// gets 1.7e12 ms). It starts at Envoy's `request.time`.
#[test]
fn an_unseen_request_has_its_own_duration() {
    let host = FakeHost::default();
    let p = policy(jsonl(json!({})));
    let tenant = configured(&host, || crate::root_for("tollgate.tenant").unwrap(), &p);
    let audit = configured(&host, || crate::root_for("tollgate.audit").unwrap(), &p);
    let headers = get("/api/datahub/x", &[]);
    let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    host.now_ms.set(NOW * 1000);
    host.begin(1, &pairs);
    let started = (NOW * 1000 - 4) * 1_000_000;
    host.set_attribute(1, "request.time", &started.to_le_bytes());
    let (flow, _) = tenant.pipeline().unwrap().on_request_headers(&host, 1, true);
    assert_eq!(flow, Flow::Pause, "the tenant filter answers");
    audit.pipeline().unwrap().on_log_unseen(&host, 1);
    let events = tick(&host, &audit, 100, "200");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["duration_ms"], 4.0);
}

/// Attack: a dead sink backs the buffer off for up to 30 s, but a full
/// batch with no call out set the 10 ms tick: every worker ran the tick
/// (flush check, gauges, counters) 100 times a second for as long as the
/// sink stayed down.
#[test]
fn a_failing_sink_does_not_keep_the_fast_tick() {
    let host = FakeHost::default();
    let root = configured(
        &host,
        crate::fused,
        &policy(jsonl(json!({"batch_size": 2, "flush_interval_ms": 500}))),
    );
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
    assert!(tick(&host, &root, 10, "503").is_empty());
    assert_eq!(host.gauge("tollgate.audit.buffer_depth"), Some(2));
    assert_eq!(host.tick.get(), Duration::from_millis(500), "backing off");
}

/// Attack: behind separate filters, the first filter refuses a form body
/// (413, a token in it, a rerouting `_method`) after every filter's
/// headers phase allowed the request and wrote its record. The audit
/// filter saw only those allows: the event had no refusal, so sampling
/// could leave it out, and an impact analysis read it as allowed.
#[test]
fn behind_separate_filters_a_refused_form_body_is_a_refusal_in_the_event() {
    let host = FakeHost::default();
    let mut p = policy(jsonl(json!({})));
    p["routes"][1]["match"]["methods"] = json!(["GET"]);
    let tenant = configured(&host, || crate::root_for("tollgate.tenant").unwrap(), &p);
    let audit = configured(&host, || crate::root_for("tollgate.audit").unwrap(), &p);
    host.now_ms.set(NOW * 1000);
    host.begin(
        1,
        &[
            (":method", "POST"),
            (":path", "/reads/x"),
            (":authority", "api.test"),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
    );
    let first = tenant.pipeline().unwrap();
    let (flow, seen_first) = first.on_request_headers(&host, 1, false);
    assert_eq!(flow, Flow::Continue);
    let second = audit.pipeline().unwrap();
    let (flow, seen_second) = second.on_request_headers(&host, 1, false);
    assert_eq!(flow, Flow::Continue);
    let big = tollgate_core::form::MAX_FORM_BODY_BYTES + 1;
    assert_eq!(first.on_request_body(&host, &seen_first, big, false), Flow::Pause);
    host.set_attribute(1, "response.code", &413u64.to_le_bytes());
    first.on_log(&host, &seen_first);
    second.on_log(&host, &seen_second);
    let events = tick(&host, &audit, 100, "200");
    assert_eq!(events.len(), 1, "sampled like a refusal: always kept");
    assert_eq!(
        decisions(&events[0]),
        [
            owned("tenant", "allow", None),
            owned("form", "deny", Some("form_body_too_large"))
        ]
    );
}

/// Attack: `tollgate render` gives the mesh-wide plugin and a namespace's
/// own plugin the same root id (`tollgate`) and module, so in that
/// namespace's sidecars Envoy runs both in one VM. The outbox was keyed by
/// root id alone: the mesh-wide plugin's tick sent the namespace's events
/// to its own sink, and a mesh-wide reload without `audit` dropped them.
#[test]
fn two_plugins_with_one_root_id_keep_their_own_outboxes() {
    let host = FakeHost::default();
    *host.root.borrow_mut() = "tollgate".into();
    let mut mesh = policy(jsonl(json!({})));
    mesh["audit"]["sink"]["cluster"] = json!("mesh-sink");
    *host.plugin.borrow_mut() = "istio-system.tollgate".into();
    let mut mesh_wide = configured(&host, crate::fused, &mesh);
    *host.plugin.borrow_mut() = "datahub.tollgate".into();
    let own = configured(&host, crate::fused, &policy(jsonl(json!({}))));
    exchange(
        &host,
        &[&own],
        1,
        &get("/api/datahub/x", &[("x-tenant-id", "ACME")]),
        200,
    );
    host.now_ms.set(host.now_ms.get() + 100);
    mesh_wide.pipeline().unwrap().on_tick(&host);
    assert!(host.calls.borrow().is_empty(), "not to the mesh-wide sink");
    let mut without = mesh.clone();
    without.as_object_mut().unwrap().remove("audit");
    for route in without["routes"].as_array_mut().unwrap() {
        route.as_object_mut().unwrap().remove("audit");
    }
    *host.plugin.borrow_mut() = "istio-system.tollgate".into();
    assert!(mesh_wide.configure(&host, without.to_string().as_bytes()));
    assert_eq!(host.counter("tollgate.audit.events_dropped.resized"), 0);
    assert_eq!(tick(&host, &own, 0, "200").len(), 1);
}

/// Attack: behind separate filters the audit filter recomputed the tenant
/// sources from what the filters before it left: `tollgate.tenant`, which
/// the tenant filter overwrites with the tenant it decided, and the
/// request headers, in which it sets `x-tenant-id` for the application.
/// A request with no token and `x-tenant-id: acme` was recorded with a
/// verified `claim` source, and one with a token and no header with a
/// `header` source: an impact analysis of a claim-only (header-only)
/// candidate policy would let through what that policy refuses.
#[test]
fn behind_separate_filters_a_header_tenant_is_not_recorded_as_a_claim() {
    let host = FakeHost::default();
    let mut p = policy(jsonl(json!({})));
    p["tenant"]["sources"] = json!(["claim", "header"]);
    let tenant = configured(&host, || crate::root_for("tollgate.tenant").unwrap(), &p);
    let audit = configured(&host, || crate::root_for("tollgate.audit").unwrap(), &p);
    exchange(
        &host,
        &[&tenant, &audit],
        1,
        &get("/api/datahub/x", &[("x-tenant-id", "acme")]),
        200,
    );
    let events = tick(&host, &audit, 100, "200");
    assert_eq!(events[0]["tenant"], "ACME");
    let sources: Vec<&str> = events[0]["tenant_sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["header"], "no claim was there");
    // With a verified claim behind a separate jwt filter, the claim is one.
    let host = FakeHost::default();
    p["jwt"] = json!({"providers": [crate::tests::provider()]});
    p["routes"][0]["jwt"] = json!({"requirement": "required"});
    let jwt = configured(&host, || crate::root_for("tollgate.jwt").unwrap(), &p);
    let tenant = configured(&host, || crate::root_for("tollgate.tenant").unwrap(), &p);
    let audit = configured(&host, || crate::root_for("tollgate.audit").unwrap(), &p);
    let bearer = format!("Bearer {}", crate::tests::token("acme"));
    let headers = get("/api/datahub/x", &[("authorization", &bearer)]);
    exchange(&host, &[&jwt, &tenant, &audit], 1, &headers, 200);
    // The outbox is this thread's: its last flush was 100 ms later.
    let events = tick(&host, &audit, 200, "200");
    assert_eq!(decisions(&events[0])[1], owned("tenant", "allow", None));
    assert_eq!(
        events[0]["tenant_sources"],
        json!([{"source": "claim", "value": "acme"}]),
        "as sent: not the x-tenant-id the tenant filter set for the app"
    );
}

/// Attack (what an event must carry): behind separate filters the audit
/// filter reads claims from `tollgate.claims`, which held only the
/// providers' `claims_to_state`: the claims the routes' rules read were
/// missing, so an impact analysis could not re-decide a claim rule on any
/// event made behind separate filters (the fused filter's carried them).
#[test]
fn behind_separate_filters_events_carry_the_claims_the_rules_read() {
    let host = FakeHost::default();
    let mut p = policy(jsonl(json!({})));
    p["jwt"] = json!({"providers": [crate::tests::provider()]});
    p["routes"][0]["jwt"] = json!({"requirement": "required", "rules": [{"claim": "roles", "contains": "analyst"}]});
    let jwt = configured(&host, || crate::root_for("tollgate.jwt").unwrap(), &p);
    let audit = configured(&host, || crate::root_for("tollgate.audit").unwrap(), &p);
    let bearer = format!("Bearer {}", crate::tests::token("acme"));
    let headers = get("/api/datahub/x", &[("authorization", &bearer), ("x-tenant-id", "acme")]);
    exchange(&host, &[&jwt, &audit], 1, &headers, 200);
    *host.plugin.borrow_mut() = "fused".into();
    let fused = configured(&host, crate::fused, &p);
    exchange(&host, &[&fused], 2, &headers, 200);
    let separate = tick(&host, &audit, 100, "200");
    assert_eq!(separate[0]["claims"], json!({"roles": ["analyst"]}));
    let fused = tick(&host, &fused, 0, "200");
    assert_eq!(fused[0]["claims"], separate[0]["claims"]);
}

/// Attack: remove a plugin while its buffer holds events (a namespace
/// taken off `mesh.namespaces`, a move from separate filters to the fused
/// one). Its outbox stayed in the VM with no root to flush it: the events
/// were neither sent nor counted, and the memory was never given back.
#[test]
fn a_removed_plugins_events_are_taken_over_by_another() {
    let host = FakeHost::default();
    *host.root.borrow_mut() = "tollgate".into();
    *host.plugin.borrow_mut() = "istio-system.tollgate".into();
    let mesh_wide = configured(&host, crate::fused, &policy(jsonl(json!({}))));
    *host.plugin.borrow_mut() = "datahub.tollgate".into();
    let own = configured(&host, crate::fused, &policy(jsonl(json!({}))));
    exchange(
        &host,
        &[&own],
        1,
        &get("/api/datahub/x", &[("x-tenant-id", "ACME")]),
        200,
    );
    drop(own);
    let events = tick(&host, &mesh_wide, 100, "200");
    assert_eq!(events.len(), 1);
    assert_eq!(host.counter("tollgate.audit.events_emitted"), 1);
    assert_eq!(host.counter("tollgate.audit.events_sent"), 1);
}

/// Attack (the in-flight bound): with `kafka-rest` a batch is one POST per
/// event type in it, and the bound was checked per batch: a worker could
/// have 3 calls out, take a batch of several topics, and so hold more than
/// the 4 calls (and their bodies) the delivery promises.
#[test]
fn kafka_rest_keeps_at_most_four_calls_in_flight() {
    let host = FakeHost::default();
    let audit = jsonl(json!({"batch_size": 2, "sink": {"cluster": "sink", "format": "kafka-rest"}}));
    let root = configured(&host, crate::fused, &policy(audit));
    let paths = [
        "/a",
        "/b",
        "/c",
        "/api/datahub/x",
        "/d",
        "/api/datahub/y",
        "/e",
        "/api/datahub/z",
    ];
    for (id, path) in (1..).zip(paths) {
        exchange(&host, &[&root], id, &get(path, &[("x-tenant-id", "ACME")]), 200);
    }
    host.now_ms.set(host.now_ms.get() + 100);
    root.pipeline().unwrap().on_tick(&host);
    assert_eq!(host.calls.borrow().len(), 4);
    assert_eq!(
        host.gauge("tollgate.audit.buffer_depth"),
        Some(3),
        "taken back, not lost"
    );
}

/// Attack: `POST /api/datahub/x?_method=DELETE` (or a form `_method`, or
/// `x-http-method-override: DELETE`): Laravel, Symfony, Express act on
/// DELETE. Tollgate let it through (the override keeps the route and its
/// rules), and the event said `POST`, its query dropped: the trail hid a
/// delete, and an impact analysis could not re-decide a rule scoped to
/// DELETE, which the policy checks on every method the application may
/// act on.
#[test]
fn an_event_carries_the_methods_the_application_may_act_on() {
    let host = FakeHost::default();
    let mut p = policy(jsonl(json!({})));
    // Left in, the application reads the method headers (stripped by default).
    p["strip_headers"] = json!([]);
    let root = configured(&host, crate::fused, &p);
    let mut headers = get(
        "/api/datahub/x?_method=delete",
        &[("x-tenant-id", "ACME"), ("x-http-method-override", "PUT")],
    );
    headers[0].1 = "POST".into();
    exchange(&host, &[&root], 1, &headers, 200);
    exchange(
        &host,
        &[&root],
        2,
        &get("/api/datahub/x", &[("x-tenant-id", "ACME")]),
        200,
    );
    let events = tick(&host, &root, 100, "200");
    assert_eq!(events[0]["method"], "POST");
    assert_eq!(events[0]["method_overrides"], json!(["DELETE", "PUT"]));
    assert_eq!(events[1]["method_overrides"], json!([]));
}

/// Ticks the root `ms` later and answers each new call with `status` and
/// `body`; the calls' paths and the event ids each carried.
fn answer_calls(host: &FakeHost, root: &PipelineRoot, ms: u64, status: &str, body: &str) -> Vec<(String, Vec<String>)> {
    host.now_ms.set(host.now_ms.get() + ms);
    let before = host.calls.borrow().len();
    root.pipeline().unwrap().on_tick(host);
    let calls: Vec<(u32, String, String)> = host.calls.borrow()[before..].to_vec();
    let mut out = Vec::new();
    for (token, _, path) in calls {
        let sent: Value = serde_json::from_str(&body_of(host, token)).unwrap();
        let ids = sent["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["value"]["event_id"].as_str().unwrap().to_string())
            .collect();
        *host.call_answer.borrow_mut() = (status.as_bytes().to_vec(), body.as_bytes().to_vec());
        root.pipeline().unwrap().on_http_call_response(host, token, body.len());
        out.push((path, ids));
    }
    out
}

fn kafka_rest_root(host: &FakeHost) -> PipelineRoot {
    let audit = jsonl(json!({"sink": {"cluster": "sink", "format": "kafka-rest"}}));
    configured(host, crate::fused, &policy(audit))
}

/// Attack: Kafka REST Proxy v2 (and the Strimzi bridge) answer 200 for a
/// batch whose records partly failed, with an `error_code` on each failed
/// record's offset (a partition without a leader, a record over the
/// broker's `max.message.bytes`). Those events were counted as sent and
/// lost; then every one of them was retried, the ones no retry can help
/// (`error_code` 1: non-retriable) for ever. Now exactly the retriable
/// ones come again, and the others are dropped, counted `rejected`.
#[test]
fn kafka_rest_retries_exactly_the_records_the_proxy_may_take_later() {
    let host = FakeHost::default();
    let root = kafka_rest_root(&host);
    for id in 1..=4 {
        acme_at(&host, &root, id);
    }
    let answer = r#"{"offsets":[{"partition":0,"offset":7},
        {"partition":null,"offset":null,"error_code":2,"error":"NotLeaderOrFollowerException"},
        {"partition":null,"offset":null,"error_code":1,"error":"RecordTooLargeException"},
        {"partition":0,"offset":8,"error_code":null}]}"#;
    let first = answer_calls(&host, &root, 100, "200", answer);
    assert_eq!(first.len(), 1);
    let ids = &first[0].1;
    assert_eq!(host.counter("tollgate.audit.events_sent"), 2);
    assert_eq!(host.counter("tollgate.audit.events_dropped.rejected"), 1);
    assert_eq!(
        host.gauge("tollgate.audit.buffer_depth"),
        Some(1),
        "the retriable record waits"
    );
    assert_eq!(host.counter("tollgate.audit.batches_failed"), 1);
    assert!(answer_calls(&host, &root, 100, "200", "{}").is_empty(), "backing off");
    let again = answer_calls(&host, &root, 200, "200", r#"{"offsets":[{"partition":0,"offset":9}]}"#);
    assert_eq!(again, [("/topics/audit-data-access".to_string(), vec![ids[1].clone()])]);
    assert_eq!(host.counter("tollgate.audit.events_sent"), 3);
    let emitted = host.counter("tollgate.audit.events_emitted");
    let accounted = host.counter("tollgate.audit.events_sent") + host.counter("tollgate.audit.events_dropped.rejected");
    assert_eq!((emitted, accounted), (4, 4));
}

/// The Strimzi bridge's per-record codes are HTTP statuses: 404 when the
/// topic is not in the metadata (dropped), 500 for the rest (retried).
#[test]
fn kafka_rest_reads_the_strimzi_bridges_record_codes() {
    let host = FakeHost::default();
    let root = kafka_rest_root(&host);
    for id in 1..=2 {
        acme_at(&host, &root, id);
    }
    let answer = r#"{"offsets":[{"error_code":404,"message":"Topic not present in metadata"},
        {"error_code":500,"message":"Expiring 1 record(s)"}]}"#;
    answer_calls(&host, &root, 100, "200", answer);
    assert_eq!(host.counter("tollgate.audit.events_dropped.rejected"), 1);
    assert_eq!(host.gauge("tollgate.audit.buffer_depth"), Some(1));
}

/// Attack: a topic that does not exist (or credentials the proxy refuses)
/// answers 404 `40401` to every batch. Each went back to the buffer and was
/// retried for ever, filling it (and so dropping the other topics' events
/// as `buffer_full`), with a warning per answer. Now such a batch is
/// dropped and counted at once, and the next batch goes without a backoff.
#[test]
fn kafka_rest_batches_refused_for_good_are_dropped_and_counted() {
    let host = FakeHost::default();
    let root = kafka_rest_root(&host);
    let unknown = r#"{"error_code":40401,"message":"Topic audit-data-access not found."}"#;
    for (round, status) in ["404", "400", "401", "403", "413", "415", "422"]
        .into_iter()
        .enumerate()
    {
        let round = round as u32;
        for id in 1..=3 {
            acme_at(&host, &root, round * 10 + id);
        }
        // `exchange` sets the clock back to NOW: each round a flush later.
        let calls = answer_calls(&host, &root, 100 * u64::from(round + 1), status, unknown);
        assert_eq!(calls.len(), 1, "{status}: no backoff after a refusal");
        let n = u64::from(round + 1);
        assert_eq!(
            host.counter("tollgate.audit.events_dropped.rejected"),
            3 * n,
            "{status}"
        );
        assert_eq!(host.counter("tollgate.audit.batches_rejected"), n, "{status}");
        assert_eq!(
            host.gauge("tollgate.audit.buffer_depth"),
            Some(0),
            "{status}: not retried"
        );
    }
    assert_eq!(host.counter("tollgate.audit.batches_failed"), 0);
    assert_eq!(host.counter("tollgate.audit.events_sent"), 0);
}

/// 5xx, 408, 429 and no answer at all (a timeout, a reset) are retried
/// with backoff, within the buffer's bound: none is dropped.
#[test]
fn kafka_rest_batches_the_proxy_may_take_later_are_retried_with_backoff() {
    // A thread each: outboxes are per thread (a worker's VM).
    let one = |status: &'static str| std::thread::spawn(move || retried_with_backoff(status));
    for status in ["500", "502", "503", "504", "408", "429", ""] {
        one(status).join().unwrap();
    }
}

fn retried_with_backoff(status: &str) {
    let host = FakeHost::default();
    let root = kafka_rest_root(&host);
    for id in 1..=3 {
        acme_at(&host, &root, id);
    }
    let body = r#"{"error_code":50302,"message":"Broker not available"}"#;
    let sent = answer_calls(&host, &root, 100, status, body);
    assert_eq!(host.counter("tollgate.audit.batches_failed"), 1, "{status:?}");
    assert_eq!(host.gauge("tollgate.audit.buffer_depth"), Some(3), "{status:?}");
    assert!(
        answer_calls(&host, &root, 100, "200", "{}").is_empty(),
        "{status:?}: backing off"
    );
    let again = answer_calls(&host, &root, 200, "200", "{}");
    assert_eq!(again, sent, "{status:?}: the same events, oldest first");
    assert_eq!(host.counter("tollgate.audit.events_sent"), 3, "{status:?}");
    assert_eq!(host.counter("tollgate.audit.events_dropped.rejected"), 0);
}

/// A sink that never answers: the call is given up after its timeout
/// (and some slack), its events back in the buffer, retried.
#[test]
fn a_call_never_answered_is_given_up_and_its_events_retried() {
    let host = FakeHost::default();
    let root = kafka_rest_root(&host);
    for id in 1..=2 {
        acme_at(&host, &root, id);
    }
    host.now_ms.set(host.now_ms.get() + 100);
    root.pipeline().unwrap().on_tick(&host);
    assert_eq!(host.calls.borrow().len(), 1);
    assert_eq!(host.gauge("tollgate.audit.in_flight_events"), Some(2));
    // Timeout 1 s and 5 s of slack later: given up.
    host.now_ms.set(host.now_ms.get() + 6_001);
    root.pipeline().unwrap().on_tick(&host);
    assert_eq!(host.counter("tollgate.audit.batches_failed"), 1);
    assert_eq!(host.gauge("tollgate.audit.in_flight_events"), Some(0));
    let again = answer_calls(&host, &root, 300, "200", "{}");
    assert_eq!(again.iter().map(|(_, ids)| ids.len()).sum::<usize>(), 2);
    assert_eq!(host.counter("tollgate.audit.events_sent"), 2);
}

/// Attack: an OTLP collector answers 200 with `partialSuccess` when it
/// rejected some log records (too large, invalid): the spec forbids
/// retrying them, and they were counted as sent. They are dropped, and
/// counted as such (`events_dropped.rejected`).
#[test]
fn otlp_records_the_collector_rejected_are_counted_dropped() {
    let host = FakeHost::default();
    let audit = jsonl(json!({"sink": {"cluster": "sink", "format": "otlp"}}));
    let root = configured(&host, crate::fused, &policy(audit));
    for id in 1..=3 {
        acme_at(&host, &root, id);
    }
    let answer = r#"{"partialSuccess":{"rejectedLogRecords":"2","errorMessage":"record too large"}}"#;
    host.now_ms.set(host.now_ms.get() + 100);
    root.pipeline().unwrap().on_tick(&host);
    let token = host.calls.borrow()[0].0;
    *host.call_answer.borrow_mut() = (b"200".to_vec(), answer.as_bytes().to_vec());
    root.pipeline()
        .unwrap()
        .on_http_call_response(&host, token, answer.len());
    assert_eq!(host.counter("tollgate.audit.events_sent"), 1);
    assert_eq!(host.counter("tollgate.audit.events_dropped.rejected"), 2);
    assert_eq!(host.gauge("tollgate.audit.buffer_depth"), Some(0), "never retried");
}

/// Attack: remove `audit` from the policy while requests are in flight.
/// Each still runs the old pipeline to its log phase, and its event went
/// to the outbox `retire` had taken out of the list: never sent, never
/// counted. It is counted as dropped (`resized`), as the buffered ones.
#[test]
fn a_request_in_flight_when_audit_is_removed_is_counted() {
    let host = FakeHost::default();
    let mut root = configured(&host, crate::fused, &policy(jsonl(json!({}))));
    let old = root.pipeline().unwrap();
    let headers = get("/api/datahub/x", &[("x-tenant-id", "ACME")]);
    let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    host.now_ms.set(NOW * 1000);
    host.begin(1, &pairs);
    let (_, cx) = old.on_request_headers(&host, 1, true);
    let mut without = policy(json!(null));
    without.as_object_mut().unwrap().remove("audit");
    for route in without["routes"].as_array_mut().unwrap() {
        route.as_object_mut().unwrap().remove("audit");
    }
    assert!(root.configure(&host, without.to_string().as_bytes()));
    host.set_attribute(1, "response.code", &200u64.to_le_bytes());
    old.on_log(&host, &cx);
    let emitted = host.counter("tollgate.audit.events_emitted");
    let dropped = host.counter("tollgate.audit.events_dropped.resized");
    assert_eq!((emitted, dropped), (1, 1));
}
