//! The glue against a fake host: the fused filter and the separate ones
//! answer alike, stages run in order over one read of the request, and a
//! request waiting for keys resumes through every stage.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tollgate_host::fake::FakeHost;
use tollgate_host::{Flow, PipelineRoot};

const ISSUER: &str = "https://idp.test";
pub(crate) const NOW: u64 = 1_700_000_000;

fn fixture(name: &str) -> String {
    let path = format!("{}/../../tests/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn jwks() -> Value {
    let all: Value = serde_json::from_str(&fixture("jwks.json")).unwrap();
    let keys: Vec<Value> = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kid"] == "rsa-1")
        .cloned()
        .collect();
    json!({ "keys": keys })
}

pub(crate) fn token(tenant: &str) -> String {
    let claims = json!({"iss": ISSUER, "sub": "ann", "exp": NOW + 600, "tenant": tenant, "roles": ["analyst"]});
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let key = EncodingKey::from_rsa_pem(fixture("rsa-1.pem").as_bytes()).unwrap();
    encode(&header, &claims, &key).unwrap()
}

pub(crate) fn provider() -> Value {
    json!({
        "name": "platform", "issuer": ISSUER, "local_jwks": jwks(), "tenant_claim": "tenant",
        "claim_to_headers": [{"claim_name": "sub", "header_name": "x-user-id"}],
    })
}

fn remote_provider() -> Value {
    json!({
        "name": "platform", "issuer": ISSUER, "tenant_claim": "tenant",
        "remote_jwks": {"uri": "http://idp.test/jwks.json", "cluster": "idp", "timeout_ms": 1000},
    })
}

fn policy(provider: Value) -> Value {
    json!({
        "version": 1,
        "routes": [
            {"name": "datahub", "match": {"prefix": "/api/datahub"}, "jwt": {"requirement": "required"}, "tenant": {"required": true}},
            {"name": "open", "match": {"prefix": "/open"}},
        ],
        "tenants": [{"id": "ACME", "tier": "premium"}, {"id": "GLOBEX", "status": "suspended"}],
        "tenant": {"sources": ["claim", "header"]},
        "jwt": {"providers": [provider]},
    })
}

/// A root configured on a fake host (the same host for every root given).
pub(crate) fn configured(host: &FakeHost, root: fn() -> PipelineRoot, policy: &Value) -> PipelineRoot {
    *host.config.borrow_mut() = policy.to_string().into_bytes();
    let mut root = root();
    assert!(root.configure(host, policy.to_string().as_bytes()));
    root
}

pub(crate) fn get(path: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut headers = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), path.to_string()),
        (":authority".to_string(), "api.test".to_string()),
        ("x-request-id".to_string(), "r1".to_string()),
    ];
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    headers
}

/// Runs a request through roots in order, as Envoy runs a filter chain.
pub(crate) fn run(host: &FakeHost, roots: &[&PipelineRoot], id: u32, headers: &[(String, String)]) -> Flow {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    host.now_ms.set(NOW * 1000);
    host.begin(id, &headers);
    for root in roots {
        let flow = root.pipeline().unwrap().on_request_headers(host, id, true).0;
        if flow == Flow::Pause {
            return flow;
        }
    }
    Flow::Continue
}

/// What a client and the application would see: reply, or headers upstream.
type Outcome = (Option<u32>, Vec<(String, Vec<u8>)>, String);

fn outcome(host: &FakeHost, id: u32) -> Outcome {
    let request = host.request(id);
    let body = request
        .reply
        .as_ref()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned());
    (
        request.reply.map(|r| r.status),
        request.headers,
        body.unwrap_or_default(),
    )
}

fn counters(host: &FakeHost) -> Vec<(String, u64)> {
    let mut all: Vec<(String, u64)> = host.counters.borrow().iter().filter(|(_, v)| *v > 0).cloned().collect();
    all.sort();
    all.dedup();
    all
}

fn requests() -> Vec<Vec<(String, String)>> {
    let bearer = |t: &str| format!("Bearer {}", token(t));
    vec![
        get(
            "/api/datahub/x",
            &[("authorization", &bearer("ACME")), ("x-user-id", "mallory")],
        ),
        get(
            "/api/datahub/x",
            &[("authorization", &bearer("acme")), ("x_tenant_id", "GLOBEX")],
        ),
        get("/api/datahub/x", &[("authorization", &bearer("GLOBEX"))]),
        get("/api/datahub/x", &[]),
        get("/api/datahub/x", &[("authorization", "Bearer not.a.token")]),
        get(
            "/open/a/../b?q=1",
            &[("x-tenant-id", "ACME"), ("x-original-url", "/api/datahub")],
        ),
        get("/open", &[("x-tenant-id", "NOPE")]),
        get("/api/%2e%2e/x", &[]),
    ]
}

#[test]
fn fused_and_separate_filters_answer_alike() {
    let policy = policy(provider());
    let split_host = FakeHost::default();
    let jwt = configured(&split_host, || crate::root_for("tollgate.jwt").unwrap(), &policy);
    let tenant = configured(&split_host, || crate::root_for("tollgate.tenant").unwrap(), &policy);
    let fused_host = FakeHost::default();
    let fused = configured(&fused_host, crate::fused, &policy);
    for (i, request) in requests().iter().enumerate() {
        let id = u32::try_from(i).unwrap() + 1;
        let split_flow = run(&split_host, &[&jwt, &tenant], id, request);
        let fused_flow = run(&fused_host, &[&fused], id, request);
        assert_eq!(split_flow, fused_flow, "request {i}");
        assert_eq!(outcome(&split_host, id), outcome(&fused_host, id), "request {i}");
    }
    assert_eq!(counters(&split_host), counters(&fused_host));
    // Not vacuous: some requests were refused, some went on with a tenant.
    assert!(fused_host.counter("tollgate.tenant.allowed") >= 2);
    assert!(fused_host.counter("tollgate.jwt.denied.token_missing") == 1);
    assert_eq!(fused_host.header(1, "x-tenant-id"), ["ACME"]);
    assert_eq!(fused_host.header(1, "x-user-id"), ["ann"]);
}

#[test]
fn the_fused_filter_reads_once_hands_facts_in_memory_and_writes_one_record() {
    let host = FakeHost::default();
    let fused = configured(&host, crate::fused, &policy(provider()));
    let request = get(
        "/api/datahub/x",
        &[("authorization", &format!("Bearer {}", token("ACME")))],
    );
    assert_eq!(run(&host, &[&fused], 1, &request), Flow::Continue);
    let trace = host.trace.borrow().clone();
    let calls = |name: &str| trace.iter().filter(|c| *c == name).count();
    assert_eq!(calls("request_headers"), 1, "{trace:?}");
    assert_eq!(calls("property"), 0, "{trace:?}");
    assert_eq!(calls("set_property"), 3, "{trace:?}");
    assert_eq!(host.header(1, "x-tenant-id"), ["ACME"]);
    let state = host.request(1).state;
    let mut keys: Vec<&str> = state.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["tollgate.decision", "tollgate.sub", "tollgate.tenant"]);
    let record: Value = serde_json::from_slice(&state["tollgate.decision"]).unwrap();
    assert_eq!(record["jwt"]["outcome"], "allow");
    assert_eq!(record["jwt"]["route"], "datahub");
    assert_eq!(record["tenant"]["tenant"], "ACME");
    assert_eq!(record["roles"], json!(["analyst"]));
    assert_eq!(record["tier"], "premium");
    // A refused request has its record too.
    let refused = get("/api/datahub/x", &[("authorization", "Bearer not.a.token")]);
    assert_eq!(run(&host, &[&fused], 2, &refused), Flow::Pause);
    let record: Value = serde_json::from_slice(&host.request(2).state["tollgate.decision"]).unwrap();
    assert_eq!(record["jwt"]["outcome"], "deny");
    assert!(record.get("tenant").is_none(), "the tenant stage never ran");
}

#[test]
fn filter_state_can_be_turned_off_for_the_fused_filter_only() {
    let mut policy = policy(provider());
    policy["filter_state"] = json!(false);
    let host = FakeHost::default();
    let fused = configured(&host, crate::fused, &policy);
    let request = get(
        "/api/datahub/x",
        &[("authorization", &format!("Bearer {}", token("ACME")))],
    );
    assert_eq!(run(&host, &[&fused], 1, &request), Flow::Continue);
    assert!(host.request(1).state.is_empty());
    assert_eq!(host.header(1, "x-tenant-id"), ["ACME"]);
    // The separate jwt filter still publishes: the tenant filter reads it.
    let split = FakeHost::default();
    let jwt = configured(&split, || crate::root_for("tollgate.jwt").unwrap(), &policy);
    run(&split, &[&jwt], 1, &request);
    assert_eq!(
        split.request(1).state.get("tollgate.tenant").map(Vec::as_slice),
        Some(&b"ACME"[..])
    );
}

#[test]
fn stages_run_in_order_and_a_refusal_ends_the_request() {
    let host = FakeHost::default();
    let fused = configured(&host, crate::fused, &policy(provider()));
    // No token: the jwt stage answers; the tenant stage never runs.
    assert_eq!(run(&host, &[&fused], 1, &get("/api/datahub/x", &[])), Flow::Pause);
    assert_eq!(host.request(1).reply.map(|r| r.status), Some(401));
    let tenant_counted: u64 = counters(&host)
        .iter()
        .filter(|(n, _)| n.starts_with("tollgate.tenant."))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(tenant_counted, 0);
    // A policy listing only the tenant stage: no token is asked for.
    let mut only_tenant = policy(provider());
    only_tenant["stages"] = json!(["tenant"]);
    let host = FakeHost::default();
    let fused = configured(&host, crate::fused, &only_tenant);
    let request = get("/api/datahub/x", &[("x-tenant-id", "ACME")]);
    assert_eq!(run(&host, &[&fused], 1, &request), Flow::Continue);
}

#[test]
fn a_failed_host_read_refuses_the_request() {
    let host = FakeHost::default();
    let fused = configured(&host, crate::fused, &policy(provider()));
    host.fail("request_headers");
    assert_eq!(run(&host, &[&fused], 1, &get("/open", &[])), Flow::Pause);
    let reply = host.request(1).reply.unwrap();
    assert_eq!(reply.status, 500);
    assert!(String::from_utf8_lossy(&reply.body).contains("request_unreadable"));
    assert_eq!(host.counter("tollgate.jwt.denied.request_unreadable"), 1);
    // The separate tenant filter reading the claim from filter state.
    let host = FakeHost::default();
    let tenant = configured(
        &host,
        || crate::root_for("tollgate.tenant").unwrap(),
        &policy(provider()),
    );
    host.fail("property");
    assert_eq!(run(&host, &[&tenant], 1, &get("/open", &[])), Flow::Pause);
    assert_eq!(host.request(1).reply.map(|r| r.status), Some(500));
    assert_eq!(host.counter("tollgate.tenant.denied.request_unreadable"), 1);
}

#[test]
fn a_request_waiting_for_keys_resumes_through_every_stage() {
    let host = FakeHost::default();
    let fused = configured(&host, crate::fused, &policy(remote_provider()));
    let pipeline = fused.pipeline().unwrap();
    let request = get(
        "/api/datahub/x",
        &[("authorization", &format!("Bearer {}", token("ACME")))],
    );
    assert_eq!(run(&host, &[&fused], 7, &request), Flow::Pause);
    assert!(host.request(7).reply.is_none(), "it waits, unanswered");
    pipeline.on_tick(&host);
    let calls = host.calls.borrow().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!((calls[0].1.as_str(), calls[0].2.as_str()), ("idp", "/jwks.json"));
    *host.call_answer.borrow_mut() = (b"200".to_vec(), jwks().to_string().into_bytes());
    host.current.set(0);
    pipeline.on_http_call_response(&host, calls[0].0, jwks().to_string().len());
    let resumed = host.request(7);
    assert_eq!(resumed.resumed, 1);
    assert!(resumed.reply.is_none());
    assert_eq!(
        host.header(7, "x-tenant-id"),
        ["ACME"],
        "the tenant stage ran after the wait"
    );
    assert_eq!(host.counter("tollgate.jwt.jwks_fetch_ok"), 1);
}

#[test]
fn a_failed_fetch_answers_the_waiting_request() {
    let host = FakeHost::default();
    let fused = configured(&host, crate::fused, &policy(remote_provider()));
    let request = get(
        "/api/datahub/x",
        &[("authorization", &format!("Bearer {}", token("ACME")))],
    );
    host.fail("dispatch");
    assert_eq!(run(&host, &[&fused], 3, &request), Flow::Pause);
    fused.pipeline().unwrap().on_tick(&host);
    let answered = host.request(3);
    assert_eq!(answered.reply.map(|r| r.status), Some(503));
    assert_eq!(answered.resumed, 0);
    assert_eq!(host.counter("tollgate.jwt.jwks_fetch_failed"), 1);
}

/// Not a check: a loop of fused requests for a profiler (`valgrind
/// --tool=callgrind` on the test binary with `--ignored profile`).
/// `PROFILE_UNCACHED`: a new HS256 token each request (the path of a new
/// token but the signature check); `PROFILE_NO_STATE`: `filter_state: false`.
#[test]
#[ignore]
fn profile_fused_requests() {
    let n: u32 = std::env::var("PROFILE_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let uncached = std::env::var("PROFILE_UNCACHED").is_ok();
    let mut provider = provider();
    provider["hmac_secret_base64"] = json!("MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=");
    let mut policy = policy(provider);
    if std::env::var("PROFILE_NO_STATE").is_ok() {
        policy["filter_state"] = json!(false);
    }
    let host = FakeHost::default();
    let fused = configured(&host, crate::fused, &policy);
    let key = EncodingKey::from_secret(b"01234567890123456789012345678901");
    let hs256 = |i: u32| {
        let claims = json!({"iss": ISSUER, "sub": format!("user-{i}"), "exp": NOW + 600, "tenant": "ACME", "roles": ["analyst"]});
        encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    };
    let tokens: Vec<String> = (0..if uncached { n } else { 1 }).map(hs256).collect();
    for id in 1..=n {
        let token = &tokens[if uncached { (id - 1) as usize } else { 0 }];
        let request = get(
            "/api/datahub/entities",
            &[("authorization", &format!("Bearer {token}")), ("user-agent", "wrk")],
        );
        assert_eq!(run(&host, &[&fused], id, &request), Flow::Continue);
        host.requests.borrow_mut().remove(&id);
    }
    eprintln!("host calls of the last request: {:?}", host.trace.borrow());
}

#[test]
fn modes_put_a_whole_stage_in_shadow() {
    let mut shadowed = policy(provider());
    shadowed["modes"] = json!({"jwt": "shadow"});
    let host = FakeHost::default();
    let fused = configured(&host, crate::fused, &shadowed);
    // No token: the jwt stage lets it through in shadow; the tenant stage,
    // still enforcing, then refuses the request for its missing tenant.
    assert_eq!(run(&host, &[&fused], 1, &get("/api/datahub/x", &[])), Flow::Pause);
    assert_eq!(host.request(1).reply.map(|r| r.status), Some(400));
    let shadow_denials: u64 = counters(&host)
        .iter()
        .filter(|(n, _)| n.starts_with("tollgate.jwt.") && n.contains("shadow"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(shadow_denials, 1, "{:?}", counters(&host));
    shadowed["modes"] = json!({"jwt": "shadow", "tenant": "shadow"});
    let host = FakeHost::default();
    let fused = configured(&host, crate::fused, &shadowed);
    assert_eq!(run(&host, &[&fused], 1, &get("/api/datahub/x", &[])), Flow::Continue);
}

#[test]
fn a_plugin_stands_aside_in_a_namespace_with_its_own() {
    let mut mesh_wide = policy(provider());
    mesh_wide["skip_namespaces"] = json!(["datahub"]);
    for (namespace, status) in [(Some("datahub"), None), (Some("trino"), Some(401)), (None, Some(401))] {
        let host = FakeHost::default();
        if let Some(ns) = namespace {
            host.node
                .borrow_mut()
                .insert("NAMESPACE".into(), ns.as_bytes().to_vec());
        }
        let fused = configured(&host, crate::fused, &mesh_wide);
        run(&host, &[&fused], 1, &get("/api/datahub/x", &[]));
        assert_eq!(host.request(1).reply.map(|r| r.status), status, "in {namespace:?}");
    }
    // An unreadable namespace is not skipped: the plugin enforces.
    let host = FakeHost::default();
    host.fail("node_metadata");
    let fused = configured(&host, crate::fused, &mesh_wide);
    run(&host, &[&fused], 1, &get("/api/datahub/x", &[]));
    assert_eq!(host.request(1).reply.map(|r| r.status), Some(401));
}

#[test]
fn only_a_host_that_skips_signatures_lets_a_forged_token_through() {
    let (head, _) = token("ACME")
        .rsplit_once('.')
        .map(|(h, s)| (h.to_string(), s.to_string()))
        .unwrap();
    let forged = format!("Bearer {head}.AAAA");
    let request = get("/api/datahub/x", &[("authorization", &forged)]);
    let host = FakeHost::default();
    let fused = configured(&host, crate::fused, &policy(provider()));
    assert_eq!(run(&host, &[&fused], 1, &request), Flow::Pause);
    let reply = host.request(1).reply.unwrap();
    assert_eq!(reply.status, 401);
    assert!(String::from_utf8_lossy(&reply.body).contains("token_signature_invalid"));
    // `tollgate explain --no-verify`: the claims are trusted as sent.
    let trusting = FakeHost::default();
    trusting.skip_signatures.set(true);
    let fused = configured(&trusting, crate::fused, &policy(provider()));
    assert_eq!(run(&trusting, &[&fused], 1, &request), Flow::Continue);
    assert_eq!(trusting.header(1, "x-tenant-id"), ["ACME"]);
}

/// The token caches' sizes are gauges, set after a miss only: the bound
/// (`cache_entries`) can be watched in Envoy's stats, and a hit costs no
/// gauge call.
#[test]
fn cache_gauges_follow_the_caches_within_their_bounds() {
    let mut policy = policy(provider());
    policy["jwt"]["cache_entries"] = json!(3);
    let host = FakeHost::new("tollgate", b"");
    let fused = configured(&host, crate::fused, &policy);
    let key = EncodingKey::from_rsa_pem(fixture("rsa-1.pem").as_bytes()).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let token_of = |sub: &str| {
        let claims = json!({"iss": ISSUER, "sub": sub, "exp": NOW + 600, "tenant": "ACME"});
        encode(&header, &claims, &key).unwrap()
    };
    let ask = |id: u32, token: &str| {
        let auth = format!("Bearer {token}");
        run(
            &host,
            &[&fused],
            id,
            &get("/api/datahub/x", &[("authorization", auth.as_str())]),
        );
    };
    ask(1, &token_of("u0"));
    assert_eq!(host.gauge("tollgate.jwt.cache_entries"), Some(1));
    let one_entry = host.gauge("tollgate.jwt.cache_bytes").unwrap();
    assert!(one_entry > 0);
    let calls = |h: &FakeHost| h.trace.borrow().iter().filter(|c| *c == "set_gauge").count();
    // The trace is the current request's: the miss set entries and bytes.
    assert_eq!(calls(&host), 2);
    ask(2, &token_of("u0"));
    assert_eq!(calls(&host), 0, "a cache hit sets no gauge");
    for (i, sub) in ["u1", "u2", "u3", "u4"].iter().enumerate() {
        ask(10 + i as u32, &token_of(sub));
    }
    assert_eq!(
        host.gauge("tollgate.jwt.cache_entries"),
        Some(3),
        "held at cache_entries"
    );
    assert!(host.gauge("tollgate.jwt.cache_bytes").unwrap() <= 3 * one_entry + 64);
    assert_eq!(host.gauge("tollgate.jwt.refused_cache_entries"), Some(0));
    // Signed by another key under rsa-1's kid: well formed, refused, cached.
    let other = EncodingKey::from_rsa_pem(fixture("rsa-2.pem").as_bytes()).unwrap();
    let claims = json!({"iss": ISSUER, "sub": "u5", "exp": NOW + 600, "tenant": "ACME"});
    let forged = encode(&header, &claims, &other).unwrap();
    ask(20, &forged);
    assert_eq!(host.request(20).reply.map(|r| r.status), Some(401));
    assert_eq!(host.gauge("tollgate.jwt.refused_cache_entries"), Some(1));
}

/// A form POST on a route whose provider reads `access_token`.
fn form_setup() -> (FakeHost, PipelineRoot) {
    let mut provider = provider();
    provider["from_params"] = json!(["access_token"]);
    let host = FakeHost::default();
    let fused = configured(&host, crate::fused, &policy(provider));
    (host, fused)
}

/// Sends the headers (not the end of the stream), then the body.
fn post_form(host: &FakeHost, root: &PipelineRoot, id: u32, extra: &[(&str, &str)], body: &str) -> (Flow, Flow) {
    let mut headers = vec![
        (":method", "POST"),
        (":path", "/api/datahub/x"),
        (":authority", "api.test"),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let length = body.len().to_string();
    headers.push(("content-length", &length));
    headers.extend_from_slice(extra);
    host.now_ms.set(NOW * 1000);
    host.begin(id, &headers);
    host.requests.borrow_mut().get_mut(&id).unwrap().body = body.as_bytes().to_vec();
    let pipeline = root.pipeline().unwrap();
    let (first, cx) = pipeline.on_request_headers(host, id, false);
    let second = pipeline.on_request_body(host, &cx, body.len(), true);
    (first, second)
}

#[test]
fn a_token_in_a_form_body_is_refused_before_the_body_reaches_the_app() {
    let (host, fused) = form_setup();
    let body = format!("a=1&access_token={}&b=2", token("ACME"));
    let bearer = format!("Bearer {}", token("ACME"));
    // The headers are decided and sent on; the body is held and judged.
    let flows = post_form(&host, &fused, 1, &[("authorization", &bearer)], &body);
    assert_eq!(flows, (Flow::Continue, Flow::Pause));
    let reply = host.request(1).reply.unwrap();
    assert_eq!(reply.status, 400);
    assert!(String::from_utf8_lossy(&reply.body).contains("token_in_form_body"));
    // Without a header token the headers already lack one: 401.
    assert_eq!(post_form(&host, &fused, 4, &[], &body).0, Flow::Pause);
    assert_eq!(host.request(4).reply.map(|r| r.status), Some(401));
    let unsigned = "access_token=eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.";
    post_form(&host, &fused, 2, &[("authorization", &bearer)], unsigned);
    assert_eq!(host.request(2).reply.map(|r| r.status), Some(400));
    // A form without a token goes on whole.
    let flows = post_form(&host, &fused, 3, &[("authorization", &bearer)], "a=1&b=2");
    assert_eq!(flows, (Flow::Continue, Flow::Continue));
    assert!(host.request(3).reply.is_none());
}

#[test]
fn a_form_body_over_the_bound_is_refused_and_other_bodies_pass() {
    let (host, fused) = form_setup();
    let pipeline = fused.pipeline().unwrap();
    let bearer = format!("Bearer {}", token("ACME"));
    host.now_ms.set(NOW * 1000);
    host.begin(
        1,
        &[
            (":method", "POST"),
            (":path", "/api/datahub/x"),
            (":authority", "api.test"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("authorization", &bearer),
        ],
    );
    let (_, cx) = pipeline.on_request_headers(&host, 1, false);
    let big = tollgate_core::form::MAX_FORM_BODY_BYTES + 1;
    assert_eq!(pipeline.on_request_body(&host, &cx, big, false), Flow::Pause);
    assert_eq!(host.request(1).reply.map(|r| r.status), Some(413));
    // A JSON body is not waited for: the stages decide on the headers.
    host.begin(
        2,
        &[
            (":method", "POST"),
            (":path", "/open"),
            (":authority", "api.test"),
            ("content-type", "application/json"),
        ],
    );
    let (flow, cx) = pipeline.on_request_headers(&host, 2, false);
    assert_eq!(flow, Flow::Continue);
    assert_eq!(pipeline.on_request_body(&host, &cx, 10, true), Flow::Continue);
}

/// A request that waited for keys is counted when it reaches the rate
/// limit stage, not when it arrived: a window from the past would reset a
/// bucket another worker counts in now.
#[test]
fn a_request_that_waited_is_counted_at_the_time_it_is_counted() {
    let host = FakeHost::default();
    let mut p = policy(remote_provider());
    p["routes"][0]["limits"] = json!([{"name": "dh", "key": ["tenant"], "requests": 0, "period": "minute"}]);
    let fused = configured(&host, crate::fused, &p);
    let pipeline = fused.pipeline().unwrap();
    let request = get(
        "/api/datahub/x",
        &[("authorization", &format!("Bearer {}", token("ACME")))],
    );
    assert_eq!(run(&host, &[&fused], 7, &request), Flow::Pause);
    pipeline.on_tick(&host);
    let call = host.calls.borrow()[0].0;
    *host.call_answer.borrow_mut() = (b"200".to_vec(), jwks().to_string().into_bytes());
    host.current.set(0);
    // NOW is second 20 of its minute; the keys come 30 seconds later.
    host.now_extra_ns.set(30_000_000_000);
    pipeline.on_http_call_response(&host, call, jwks().to_string().len());
    let reply = host.request(7).reply.unwrap();
    assert_eq!(reply.status, 429);
    assert!(
        reply.headers.contains(&("retry-after".into(), "10".into())),
        "{:?}",
        reply.headers
    );
}
