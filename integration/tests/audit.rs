//! The audit stage in a real Envoy (two workers) behind the jwt, tenant and
//! rate limit stages, sending to a test sink: one event per request, with
//! each stage's decision and every field checked; no secret ever reaches
//! the sink; each format's body read with a real parser; sampling keeps
//! denials. The decision tests run in every mode the suite runs (split,
//! fused, container); the format and sampling tests only in the native
//! fused run, as they test no delivery.

#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::audit::{assert_schema_valid, otlp_events, otlp_exports};
use common::tokens::{self, claims_with};
use common::{once_per_suite, require_artefacts};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tollgate_integration::sink::{jsonl_events, kafka_records, Record};
use tollgate_integration::{docker, Bootstrap, Delivery, Echo, Envoy, Request, Response, Sink};

const SINK_CLUSTER: &str = "audit-sink";
const FLUSH_MS: u64 = 50;
/// How long events may take to arrive (a flush is every 50 ms).
const ARRIVE_WITHIN: Duration = Duration::from_secs(10);
/// After the events expected arrived: long enough for any extra one to.
const SETTLE: Duration = Duration::from_millis(20 * FLUSH_MS);
const USER_AGENT: &str = "tollgate-audit-test/1";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SERVICE: &str = "datahub-api";
const NAMESPACE: &str = "data";
/// The fields that differ from run to run, checked apart.
const VARYING: [&str; 6] = [
    "event_id",
    "time",
    "duration_ms",
    "request_bytes",
    "response_bytes",
    "source_ip",
];

/// The fixture provider, also reading tokens from the `session` cookie.
fn provider() -> Value {
    let mut provider = tokens::local_provider();
    provider["from_cookies"] = json!(["session"]);
    provider
}

/// datahub: a token with `trino:query` and a known tenant (data access);
/// reports: one request per tenant and hour; sampled: keeps no allowed
/// request. Tenants from the token's claim or the header.
fn policy(audit: Value) -> Value {
    json!({
        "version": 1,
        "realm": "tollgate-test",
        "jwt": {"providers": [provider()]},
        "tenants": [{"id": "ACME", "tier": "premium"}, {"id": "GLOBEX"}],
        "tenant": {"sources": ["claim", "header"]},
        "routes": [
            {"name": "datahub", "match": {"prefix": "/api/datahub"},
             "jwt": {"requirement": "required", "rules": [{"claim": "scope", "contains": "trino:query"}]},
             "tenant": {"required": true},
             "audit": {"event_type": "data_access", "sample": 1.0}},
            {"name": "reports", "match": {"prefix": "/api/reports"},
             "jwt": {"requirement": "required"}, "tenant": {"required": true},
             "limits": [{"name": "reports-per-tenant", "key": ["tenant"], "requests": 1, "period": "hour"}]},
            {"name": "sampled", "match": {"prefix": "/api/sampled"},
             "jwt": {"requirement": "required"}, "audit": {"sample": 0.0}},
        ],
        "audit": audit,
    })
}

/// The `audit` section: the sink, quick flushes, `user-agent` captured.
fn audit(sink: Value, query: &str) -> Value {
    json!({
        "sink": sink,
        "batch_size": 100,
        "flush_interval_ms": FLUSH_MS,
        "buffer_events": 1000,
        "capture_headers": ["user-agent"],
        "query": query,
        "redact_params": ["password", "api_key"],
    })
}

fn jsonl_sink() -> Value {
    json!({"format": "jsonl", "cluster": SINK_CLUSTER, "path": "/events", "timeout_ms": 1000})
}

struct Rig {
    envoy: Envoy,
    sink: Sink,
    _echo: Echo,
}

/// jwt, tenant, rate limit and audit filters (fused when
/// `TOLLGATE_DELIVERY=fused`), the sink as the `audit-sink` cluster, and
/// node metadata naming the workload.
fn start(policy: &Value) -> Rig {
    require_artefacts();
    let sink = Sink::start();
    let echo = Echo::start();
    let mut bootstrap = Bootstrap::new(echo.port()).cluster(SINK_CLUSTER, sink.port());
    bootstrap = common::all_stages(bootstrap, policy);
    bootstrap.node_metadata = Some(json!({"WORKLOAD_NAME": SERVICE, "NAMESPACE": NAMESPACE}));
    let envoy = Envoy::start(&bootstrap.to_json());
    Rig {
        envoy,
        sink,
        _echo: echo,
    }
}

/// A request with an id, a traceparent, the captured header, one header
/// not captured, and a cookie that is not a token.
fn request(method: &str, target: &str, id: &str) -> Request {
    Request::get(target)
        .method(method)
        .header("host", "Api.Example.COM:8443")
        .header("x-request-id", id)
        .header("traceparent", &format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .header("user-agent", USER_AGENT)
        .header("x-not-captured", "nope")
        .header("cookie", "theme=dark; tracking=cookie-secret-1")
}

/// A token for `tenant`, with a `jti` of its own so no two are alike.
fn token_for(tenant: &str, jti: &str) -> String {
    tokens::token(&claims_with(&json!({"tenant": tenant, "jti": jti})))
}

/// `token` with the signature of another token: well formed, not valid.
fn forged(token: &str) -> String {
    let other = token_for("ACME", "other");
    let head: Vec<&str> = token.split('.').collect();
    let sig = other.rsplit('.').next().unwrap();
    format!("{}.{}.{sig}", head[0], head[1])
}

/// What one request should give.
struct Case {
    id: String,
    request: Request,
    status: u16,
    /// The event without the `VARYING` fields.
    want: Value,
}

/// What was sent and answered, for the varying fields' bounds.
struct Sent {
    started: SystemTime,
    elapsed: Duration,
    response: Response,
    /// Bounds of the request's size as Envoy counts it (headers and body):
    /// filters remove credentials and rewrite the path, so the least is the
    /// body and the headers no filter touches.
    request_size: (usize, usize),
}

/// Headers every request has that no filter changes.
const UNTOUCHED: [&str; 4] = ["user-agent", "x-request-id", "traceparent", "x-not-captured"];

fn send(envoy: &Envoy, request: &Request) -> Sent {
    let started = SystemTime::now();
    let clock = Instant::now();
    let response = envoy.send(request);
    let size = |(k, v): &(String, Vec<u8>)| k.len() + v.len();
    let head: usize = request.headers.iter().map(size).sum();
    let untouched: usize = request
        .headers
        .iter()
        .filter(|(k, _)| UNTOUCHED.contains(&k.as_str()))
        .map(size)
        .sum();
    let body = request.body.len();
    Sent {
        started,
        elapsed: clock.elapsed(),
        response,
        request_size: (untouched + body, head + request.target.len() + body + 1024),
    }
}

/// The event every request under the policy starts from: an allowed
/// datahub read by ACME's token.
fn allowed_event(id: &str, method: &str, path: &str) -> Value {
    json!({
        "schema_version": 1,
        "event_type": "data_access",
        "service": SERVICE,
        "namespace": NAMESPACE,
        "source_principal": null,
        "subject": "user@254carbon.com",
        "tenant": "ACME",
        "tier": "premium",
        "roles": ["data-engineer"],
        "claims": {"scope": "trino:query echo:call"},
        "method": method,
        "method_overrides": [],
        "host": "api.example.com",
        "path": path,
        "route": "datahub",
        "status": 200,
        "request_id": id,
        "trace_id": TRACE_ID,
        "decisions": [
            decision("jwt", "allow", None, None),
            decision("tenant", "allow", None, None),
            decision("ratelimit", "allow", None, None),
        ],
        "tenant_sources": [{"source": "claim", "value": "ACME"}],
        "headers": {"user-agent": USER_AGENT},
    })
}

fn decision(stage: &str, outcome: &str, reason: Option<&str>, detail: Option<&str>) -> Value {
    let mut d = json!({"stage": stage, "mode": "enforce", "outcome": outcome});
    if let Some(reason) = reason {
        d["reason"] = json!(reason);
    }
    if let Some(detail) = detail {
        d["detail"] = json!(detail);
    }
    d
}

/// `event` with the fields of a request no token identified.
fn anonymous(mut event: Value) -> Value {
    for (field, value) in [
        ("subject", json!(null)),
        ("tenant", json!(null)),
        ("tier", json!(null)),
        ("roles", json!([])),
        ("claims", json!({})),
        ("tenant_sources", json!([])),
    ] {
        event[field] = value;
    }
    event
}

/// `event` as a refusal before any stage: no route, host nor path was
/// decided on, the fallback's event type.
fn refused_early(event: Value, status: u16, reason: &str) -> Value {
    let mut event = anonymous(event);
    event["event_type"] = json!("api_call");
    event["route"] = json!(null);
    event["host"] = json!("");
    event["path"] = json!("");
    event["status"] = json!(status);
    event["decisions"] = json!([decision("request", "deny", Some(reason), None)]);
    event
}

/// An allowed request, one refused by each stage and two refused before
/// any stage (ids are unique per run: `run`).
fn decision_cases(run: &str) -> Vec<Case> {
    let id = |name: &str| format!("{run}-{name}");
    let acme = token_for("ACME", &id("acme"));
    let bearer = |token: &str| format!("Bearer {token}");
    let mut cases = Vec::new();

    let mut post = request(
        "POST",
        "/api/datahub/a/../tables?password=hunter2&limit=5",
        &id("allowed"),
    )
    .header("authorization", &bearer(&acme));
    post.body = vec![b'x'; 1000];
    cases.push(Case {
        want: allowed_event(&id("allowed"), "POST", "/api/datahub/tables"),
        id: id("allowed"),
        request: post,
        status: 200,
    });

    let mut missing = anonymous(allowed_event(&id("missing"), "GET", "/api/datahub/tables"));
    missing["status"] = json!(401);
    missing["decisions"] = json!([decision("jwt", "deny", Some("token_missing"), None)]);
    cases.push(Case {
        request: request("GET", "/api/datahub/tables?limit=5", &id("missing")),
        id: id("missing"),
        status: 401,
        want: missing,
    });

    let mut invalid = anonymous(allowed_event(&id("invalid"), "GET", "/api/datahub/tables"));
    invalid["status"] = json!(401);
    invalid["decisions"] = json!([decision("jwt", "deny", Some("token_signature_invalid"), None)]);
    cases.push(Case {
        request: request("GET", "/api/datahub/tables", &id("invalid"))
            .header("authorization", &bearer(&forged(&token_for("ACME", &id("forged"))))),
        id: id("invalid"),
        status: 401,
        want: invalid,
    });

    let mut unknown = allowed_event(&id("unknown"), "GET", "/api/datahub/tables");
    unknown["status"] = json!(403);
    // No tenant was decided: the event names the verified claim.
    unknown["tenant"] = json!("INITECH");
    unknown["tier"] = json!(null);
    unknown["tenant_sources"] = json!([{"source": "claim", "value": "INITECH"}]);
    unknown["decisions"] = json!([
        decision("jwt", "allow", None, None),
        decision("tenant", "deny", Some("tenant_unknown"), None),
    ]);
    cases.push(Case {
        request: request("GET", "/api/datahub/tables", &id("unknown"))
            .header("authorization", &bearer(&token_for("INITECH", &id("initech")))),
        id: id("unknown"),
        status: 403,
        want: unknown,
    });

    // One request per tenant and hour: the first passes, the second not.
    for (name, status) in [("limit-first", 200), ("limit-second", 429)] {
        let mut event = allowed_event(&id(name), "GET", "/api/reports/daily");
        event["event_type"] = json!("api_call");
        event["route"] = json!("reports");
        event["status"] = json!(status);
        // The deciding limit is named when it refuses.
        if status == 429 {
            event["decisions"][2] = decision("ratelimit", "deny", Some("rate_limited"), Some("reports-per-tenant"));
        }
        cases.push(Case {
            request: request("GET", "/api/reports/daily", &id(name)).header("authorization", &bearer(&acme)),
            id: id(name),
            status,
            want: event,
        });
    }

    let nul = refused_early(allowed_event(&id("nul"), "GET", ""), 400, "path_invalid");
    cases.push(Case {
        request: request("GET", "/api/datahub/%00?password=hunter2", &id("nul"))
            .header("authorization", &bearer(&acme)),
        id: id("nul"),
        status: 400,
        want: nul,
    });
    let long = refused_early(allowed_event(&id("long"), "GET", ""), 414, "path_too_long");
    cases.push(Case {
        request: request("GET", &format!("/api/datahub/{}", "a".repeat(9000)), &id("long")),
        id: id("long"),
        status: 414,
        want: long,
    });
    cases
}

/// A unique prefix for request ids.
fn run_id(test: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{test}-{nanos}")
}

/// Waits until the hour window has 30 s left, so the rate limit's two
/// requests fall in one window.
fn inside_hour() {
    let into = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64() % 3600.0;
    if 3600.0 - into < 30.0 {
        std::thread::sleep(Duration::from_secs_f64(3600.0 - into + 0.05));
    }
}

/// Waits for `count` JSON lines events at `/events`, then for any extra
/// one; all of them.
fn settled_jsonl(sink: &Sink, count: usize) -> Vec<Value> {
    let read = |r: &[Record]| jsonl_events(r, "/events");
    sink.wait_events(count, ARRIVE_WITHIN, read)
        .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(SETTLE);
    read(&sink.records()).unwrap_or_else(|e| panic!("{e}"))
}

/// The one event with `request_id` (panics on none or more).
fn only_event<'e>(events: &'e [Value], id: &str) -> &'e Value {
    let found: Vec<&Value> = events.iter().filter(|e| e["request_id"] == id).collect();
    assert_eq!(found.len(), 1, "events with request id {id}: {found:#?}");
    found[0]
}

/// `event` without the `VARYING` fields.
fn stable(event: &Value) -> Value {
    let mut rest: Map<String, Value> = event.as_object().cloned().unwrap_or_default();
    for field in VARYING {
        rest.remove(field);
    }
    Value::Object(rest)
}

/// A lower-case UUID version 4.
fn is_uuid_v4(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let hex = id
        .chars()
        .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c));
    lengths == [8, 4, 4, 4, 12] && hex && groups[2].starts_with('4') && groups[3].starts_with(['8', '9', 'a', 'b'])
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`), to read `time` back without trusting the encoder's.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` as Unix nanoseconds; `None` in any
/// other shape.
fn rfc3339_nanos(time: &str) -> Option<i128> {
    let b = time.as_bytes();
    let shape = b.len() == 30
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[29] == b'Z';
    if !shape {
        return None;
    }
    let num = |from: usize, to: usize| time.get(from..to)?.parse::<i64>().ok();
    let days = days_from_civil(num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let secs = days * 86_400 + num(11, 13)? * 3600 + num(14, 16)? * 60 + num(17, 19)?;
    Some(i128::from(secs) * 1_000_000_000 + i128::from(num(20, 29)?))
}

fn unix_nanos(t: SystemTime) -> i128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128)
}

/// The fields that vary, within what the request and its answer bound.
fn check_varying(event: &Value, sent: &Sent) {
    let id = event["event_id"].as_str().unwrap_or_default();
    assert!(is_uuid_v4(id), "event_id {id:?} is not a UUID v4");
    let time = event["time"].as_str().unwrap_or_default();
    let at = rfc3339_nanos(time).unwrap_or_else(|| panic!("time {time:?} is not RFC 3339 with nanoseconds"));
    let started = unix_nanos(sent.started);
    let ended = started + sent.elapsed.as_nanos() as i128;
    // The log phase may end a little after the client read the answer.
    let slack = 1_000_000_000;
    assert!(
        at >= started - slack && at <= ended + slack,
        "time {time} outside the request"
    );
    let duration = event["duration_ms"].as_f64().unwrap_or(-1.0);
    let elapsed_ms = sent.elapsed.as_secs_f64() * 1000.0;
    assert!(
        duration >= 0.0 && duration <= elapsed_ms + 1000.0,
        "duration_ms {duration} for a request of {elapsed_ms:.1} ms"
    );
    // Sizes as Envoy counts them: headers and body (Envoy adds a few headers).
    let request_bytes = event["request_bytes"].as_u64().unwrap_or(0) as usize;
    let (least, most) = sent.request_size;
    assert!(
        (least..=most).contains(&request_bytes),
        "request_bytes {request_bytes} not in {least}..={most}"
    );
    let body = sent.response.body.len();
    let response_bytes = event["response_bytes"].as_u64().unwrap_or(0) as usize;
    assert!(
        response_bytes > body && response_bytes <= body + 1024,
        "response_bytes {response_bytes} for a body of {body}"
    );
    let ip = event["source_ip"].as_str().unwrap_or_default();
    let ip: IpAddr = ip.parse().unwrap_or_else(|e| panic!("source_ip {ip:?}: {e}"));
    if docker::container_mode().is_none() {
        assert_eq!(ip, IpAddr::from([127, 0, 0, 1]));
    }
}

/// Sends each case, checks its status, and returns what was sent.
fn send_cases(envoy: &Envoy, cases: &[Case]) -> Vec<Sent> {
    inside_hour();
    cases
        .iter()
        .map(|case| {
            let sent = send(envoy, &case.request);
            assert_eq!(
                sent.response.status,
                case.status,
                "{}: {}",
                case.id,
                sent.response.text()
            );
            sent
        })
        .collect()
}

#[test]
fn each_request_gives_one_event_with_every_stages_decision_and_every_field() {
    let rig = start(&policy(audit(jsonl_sink(), "drop")));
    let cases = decision_cases(&run_id("decisions"));
    let sent = send_cases(&rig.envoy, &cases);
    let events = settled_jsonl(&rig.sink, cases.len());
    assert_eq!(events.len(), cases.len(), "one event per request: {events:#?}");
    assert_schema_valid(&events);
    for (case, sent) in cases.iter().zip(&sent) {
        let event = only_event(&events, &case.id);
        assert_eq!(stable(event), case.want, "{}", case.id);
        check_varying(event, sent);
    }
    let ids: HashSet<&str> = events.iter().filter_map(|e| e["event_id"].as_str()).collect();
    assert_eq!(ids.len(), events.len(), "event ids are unique");
    assert_no_secret(&rig.sink, &["cookie-secret-1", "hunter2", "Bearer "]);
}

/// No byte string in `secrets`, nor any part of a token's payload or
/// signature, is in anything the sink received.
fn assert_no_secret(sink: &Sink, secrets: &[&str]) {
    let raw = String::from_utf8_lossy(&sink.raw()).into_owned();
    assert!(!raw.is_empty(), "the sink received nothing");
    for secret in secrets {
        assert!(!raw.contains(secret), "{secret:?} reached the sink:\n{raw}");
    }
}

/// Every token part that identifies it (payload, signature).
fn token_parts(token: &str) -> Vec<String> {
    token.split('.').skip(1).map(str::to_string).collect()
}

#[test]
fn a_kept_query_is_redacted_and_no_token_cookie_or_authorization_reaches_the_sink() {
    let rig = start(&policy(audit(jsonl_sink(), "keep")));
    let run = run_id("secrets");
    let id = |name: &str| format!("{run}-{name}");
    let tokens: Vec<String> = (0..5).map(|i| token_for("ACME", &id(&format!("t{i}")))).collect();
    let bad = forged(&tokens[2]);
    // A separate audit filter sees the request after the jwt filter took
    // the token parameter out of `:path`: the event has it not at all,
    // where the fused filter's has it redacted.
    let param_path = match Delivery::from_env() {
        Delivery::Fused => "/api/datahub/t?access_token=[REDACTED]&limit=5",
        Delivery::Split => "/api/datahub/t?limit=5",
    };
    let cases: Vec<(String, Request, u16, &str)> = vec![
        (
            id("header"),
            request(
                "GET",
                "/api/datahub/t?password=hunter2&limit=5&api_key=k-secret-123",
                &id("header"),
            )
            .header("authorization", &format!("Bearer {}", tokens[0])),
            200,
            "/api/datahub/t?password=[REDACTED]&limit=5&api_key=[REDACTED]",
        ),
        (
            id("param"),
            request(
                "GET",
                &format!("/api/datahub/t?access_token={}&limit=5", tokens[1]),
                &id("param"),
            ),
            200,
            param_path,
        ),
        (
            id("bad-param"),
            request(
                "GET",
                &format!("/api/datahub/t?a=1;access_token={bad}"),
                &id("bad-param"),
            ),
            401,
            "/api/datahub/t?a=1;access_token=[REDACTED]",
        ),
        (
            id("cookie"),
            request("GET", "/api/datahub/t", &id("cookie"))
                .header("cookie", &format!("session={}; other=cookie-secret-2", tokens[3])),
            200,
            "/api/datahub/t",
        ),
        (
            id("early"),
            request(
                "GET",
                &format!("/api/datahub/%00?password=hunter3&access_token={}", tokens[4]),
                &id("early"),
            ),
            400,
            "?password=[REDACTED]&access_token=[REDACTED]",
        ),
    ];
    for (name, request, status, _) in &cases {
        let response = rig.envoy.send(request);
        assert_eq!(response.status, *status, "{name}: {}", response.text());
    }
    let events = settled_jsonl(&rig.sink, cases.len());
    assert_eq!(events.len(), cases.len(), "{events:#?}");
    assert_schema_valid(&events);
    for (name, _, _, path) in &cases {
        assert_eq!(only_event(&events, name)["path"], *path, "{name}");
    }
    let mut secrets: Vec<String> = [
        "hunter2",
        "hunter3",
        "k-secret-123",
        "cookie-secret-1",
        "cookie-secret-2",
    ]
    .map(String::from)
    .to_vec();
    secrets.extend(tokens.iter().chain([&bad]).flat_map(|t| token_parts(t)));
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_no_secret(&rig.sink, &secrets);
}

#[test]
fn kafka_rest_records_go_to_the_topic_of_their_event_type_keyed_by_tenant() {
    if !once_per_suite() {
        return;
    }
    let sink = json!({"format": "kafka-rest", "cluster": SINK_CLUSTER, "path": "/kafka", "timeout_ms": 1000});
    let rig = start(&policy(audit(sink, "drop")));
    let run = run_id("kafka");
    let acme = format!("Bearer {}", token_for("ACME", &run));
    let requests = [
        (format!("{run}-read"), "/api/datahub/t", Some(&acme), 200),
        (format!("{run}-anonymous"), "/api/datahub/t", None, 401),
        (format!("{run}-report"), "/api/reports/daily", Some(&acme), 200),
    ];
    inside_hour();
    for (id, path, auth, status) in &requests {
        let mut request = request("GET", path, id);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        assert_eq!(rig.envoy.send(&request).status, *status, "{id}");
    }
    let read = |r: &[Record]| -> Result<Vec<Value>, String> {
        let produced = kafka_records(r, "/kafka")?;
        Ok(produced
            .iter()
            .map(|p| json!({"topic": p.topic, "key": p.key, "value": p.value}))
            .collect())
    };
    rig.sink
        .wait_events(requests.len(), ARRIVE_WITHIN, read)
        .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(SETTLE);
    let produced = read(&rig.sink.records()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(produced.len(), requests.len(), "{produced:#?}");
    let seen: HashSet<(String, String, Value)> = produced
        .iter()
        .map(|p| {
            assert_eq!(p["key"], p["value"]["tenant"], "keyed by tenant: {p}");
            let topic = p["topic"].as_str().unwrap_or_default().to_string();
            (
                topic,
                p["value"]["request_id"].as_str().unwrap_or_default().to_string(),
                p["key"].clone(),
            )
        })
        .collect();
    let want: HashSet<(String, String, Value)> = [
        ("audit-data-access", &requests[0].0, json!("ACME")),
        ("audit-data-access", &requests[1].0, json!(null)),
        ("audit-api-calls", &requests[2].0, json!("ACME")),
    ]
    .into_iter()
    .map(|(t, id, key)| (t.to_string(), id.clone(), key))
    .collect();
    assert_eq!(seen, want);
    let values: Vec<Value> = produced.iter().map(|p| p["value"].clone()).collect();
    assert_schema_valid(&values);
}

#[test]
fn otlp_log_records_read_back_with_opentelemetrys_types() {
    if !once_per_suite() {
        return;
    }
    let sink = json!({"format": "otlp", "cluster": SINK_CLUSTER, "path": "/v1/logs", "timeout_ms": 1000});
    let rig = start(&policy(audit(sink, "drop")));
    let run = run_id("otlp");
    let acme = format!("Bearer {}", token_for("ACME", &run));
    let allowed = format!("{run}-allowed");
    let denied = format!("{run}-denied");
    assert_eq!(
        rig.envoy
            .send(&request("GET", "/api/datahub/t", &allowed).header("authorization", &acme))
            .status,
        200
    );
    assert_eq!(rig.envoy.send(&request("GET", "/api/datahub/t", &denied)).status, 401);
    let read = |r: &[Record]| otlp_events(r, "/v1/logs");
    rig.sink
        .wait_events(2, ARRIVE_WITHIN, read)
        .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(SETTLE);
    let records = rig.sink.records();
    let events = read(&records).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_schema_valid(&events);
    let exports = otlp_exports(&records, "/v1/logs").unwrap_or_else(|e| panic!("{e}"));
    for export in &exports {
        let [resource_logs] = export.resource_logs.as_slice() else {
            panic!("one resource per export: {export:?}")
        };
        let resource = resource_logs.resource.as_ref().unwrap();
        let service = resource.attributes.iter().find(|kv| kv.key == "service.name");
        let service = service.and_then(|kv| kv.value.as_ref()).and_then(|v| v.value.clone());
        assert_eq!(service, Some(Any::StringValue(SERVICE.into())));
        for scope in &resource_logs.scope_logs {
            assert_eq!(scope.scope.as_ref().map(|s| s.name.as_str()), Some("tollgate"));
            for record in &scope.log_records {
                check_log_record(record);
            }
        }
    }
    let ids: Vec<&str> = events.iter().filter_map(|e| e["request_id"].as_str()).collect();
    assert!(
        ids.contains(&allowed.as_str()) && ids.contains(&denied.as_str()),
        "{ids:?}"
    );
}

/// A log record agrees with the event in its body: time, severity, trace
/// id, attributes.
fn check_log_record(record: &opentelemetry_proto::tonic::logs::v1::LogRecord) {
    let Some(Any::StringValue(body)) = record.body.as_ref().and_then(|b| b.value.clone()) else {
        panic!("body is not a string: {record:?}")
    };
    let event: Value = serde_json::from_str(&body).unwrap();
    let time = rfc3339_nanos(event["time"].as_str().unwrap_or_default()).unwrap();
    assert_eq!(i128::from(record.time_unix_nano), time);
    assert!(record.observed_time_unix_nano >= record.time_unix_nano);
    let refused = event["status"] != 200;
    let severity = if refused { (13, "WARN") } else { (9, "INFO") };
    assert_eq!((record.severity_number, record.severity_text.as_str()), severity);
    let trace: String = record.trace_id.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(trace, TRACE_ID);
    let attribute = |key: &str| {
        record
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.clone())
    };
    assert_eq!(attribute("event.type"), Some(Any::StringValue("data_access".into())));
    let tenant = event["tenant"].as_str().map(|t| Any::StringValue(t.into()));
    assert_eq!(attribute("tenant"), tenant);
}

#[test]
fn a_route_sampled_at_zero_keeps_no_allowed_request_but_keeps_its_denials() {
    if !once_per_suite() {
        return;
    }
    let rig = start(&policy(audit(jsonl_sink(), "drop")));
    let run = run_id("sampling");
    let acme = format!("Bearer {}", token_for("ACME", &run));
    for i in 0..5 {
        let request = request("GET", "/api/sampled/x", &format!("{run}-allowed-{i}")).header("authorization", &acme);
        assert_eq!(rig.envoy.send(&request).status, 200);
    }
    let denied = format!("{run}-denied");
    assert_eq!(rig.envoy.send(&request("GET", "/api/sampled/x", &denied)).status, 401);
    // A route sampled at 1.0 after them: its event shows the flushes ran.
    let marker = format!("{run}-marker");
    let request = request("GET", "/api/datahub/t", &marker).header("authorization", &acme);
    assert_eq!(rig.envoy.send(&request).status, 200);
    let events = settled_jsonl(&rig.sink, 2);
    let ids: HashSet<&str> = events.iter().filter_map(|e| e["request_id"].as_str()).collect();
    assert_eq!(ids, HashSet::from([denied.as_str(), marker.as_str()]), "{events:#?}");
    let denial = only_event(&events, &denied);
    assert_eq!(
        (&denial["route"], &denial["event_type"], &denial["decisions"]),
        (
            &json!("sampled"),
            &json!("api_call"),
            &json!([decision("jwt", "deny", Some("token_missing"), None)])
        )
    );
    let sampled_out = rig.envoy.stat("wasmcustom.tollgate.audit.events_sampled_out");
    assert_eq!(sampled_out, Some(5));
}
