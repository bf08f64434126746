use super::config::NEVER_CAPTURED;
use super::encode::{by_topic, jsonl, kafka_rest, KAFKA_CONTENT_TYPE};
use super::event::{redact_query, MAX_FIELD_BYTES, REDACTED};
use super::ids::{civil_from_days, rfc3339, trace_id, uuid_v4};
use super::*;
use crate::header_map::HeaderMap;
use crate::policy::wire::TenantSource;
use crate::policy::PolicyErrors;
use crate::Mode;
use serde::Deserialize;
use serde_json::{json, Map, Value};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

pub(super) fn doc(value: Value) -> AuditDoc {
    serde_json::from_value(value).unwrap()
}

pub(super) fn compiled(value: Value) -> (AuditConfig, PolicyErrors) {
    let mut errors = PolicyErrors::default();
    let config = AuditConfig::compile(&doc(value), "audit", &["x-api-token"], &mut errors);
    (config, errors)
}

// ---------------------------------------------------------------- config

#[test]
fn defaults_are_documented_ones() {
    let (config, errors) = compiled(json!({"sink": {"cluster": "audit-sink"}}));
    assert!(errors.is_empty(), "{errors}");
    assert_eq!(config.sink.format, Format::Jsonl);
    assert_eq!(config.sink.path, "/events");
    assert_eq!(config.sink.timeout.as_millis(), 1000);
    assert_eq!(config.batch_size, 100);
    assert_eq!(config.flush_interval.as_millis(), 1000);
    assert_eq!(config.buffer_events, 10_000);
    assert!(config.capture_headers.is_empty());
    assert_eq!(config.query, QueryMode::Drop);
    assert!(config.redact_params.is_empty());
    let (otlp, _) = compiled(json!({"sink": {"format": "otlp", "cluster": "c"}}));
    assert_eq!(otlp.sink.path, "/v1/logs");
    let (kafka, errors) = compiled(json!({"sink": {"format": "kafka-rest", "cluster": "c"}}));
    assert!(errors.is_empty(), "{errors}");
    assert_eq!(kafka.sink.path, "");
    let (log, errors) = compiled(json!({"sink": {"format": "log"}}));
    assert!(errors.is_empty(), "{errors}");
    assert_eq!(log.sink.cluster, "");
}

#[test]
fn the_issues_example_compiles() {
    let (config, errors) = compiled(json!({
        "sink": {"format": "jsonl", "cluster": "audit-sink", "path": "/events", "timeout_ms": 1000},
        "batch_size": 100, "flush_interval_ms": 1000, "buffer_events": 10000,
        "capture_headers": ["user-agent"], "query": "drop", "redact_params": ["password", "api_key"]
    }));
    assert!(errors.is_empty(), "{errors}");
    assert_eq!(config.capture_headers, ["user-agent"]);
    assert_eq!(config.redact_params, ["password", "api_key"]);
}

#[test]
fn unknown_fields_and_values_are_refused() {
    for bad in [
        json!({"sink": {"cluster": "c"}, "batchsize": 1}),
        json!({"sink": {"cluster": "c", "topic": "t"}}),
        json!({"sink": {"format": "kafka"}}),
        json!({"sink": {"cluster": "c"}, "query": "redact"}),
        json!({}),
    ] {
        assert!(serde_json::from_value::<AuditDoc>(bad.clone()).is_err(), "{bad}");
    }
    assert!(serde_json::from_value::<RouteAuditDoc>(json!({"event_type": "read"})).is_err());
    assert!(serde_json::from_value::<RouteAuditDoc>(json!({"sampling": 0.5})).is_err());
}

#[test]
fn every_error_is_reported_with_its_path() {
    let (_, errors) = compiled(json!({
        "sink": {"format": "kafka-rest", "path": "events?x", "timeout_ms": 0},
        "batch_size": 0, "flush_interval_ms": 5, "buffer_events": 2_000_000,
        "capture_headers": ["User-Agent", "authorization", "Cookie", "x_api_token", "bad header",
                            ":path", "set-cookie", "proxy-authorization", "x-a", "x_a"],
        "redact_params": ["", "a=b", "pw", "PW"]
    }));
    let want = [
        ("audit.sink.cluster", "required unless format is log"),
        ("audit.sink.path", "must start with '/'"),
        ("audit.sink.timeout_ms", "must be 1 to 60000, not 0"),
        ("audit.batch_size", "must be 1 to 10000, not 0"),
        ("audit.flush_interval_ms", "must be 10 to 3600000, not 5"),
        ("audit.buffer_events", "must be 1 to 1000000"),
        ("audit.capture_headers[0]", "lower-case"),
        ("audit.capture_headers[1]", "never captured"),
        ("audit.capture_headers[2]", "lower-case"),
        ("audit.capture_headers[3]", "never captured"),
        ("audit.capture_headers[4]", "not a header name"),
        ("audit.capture_headers[5]", "pseudo-header"),
        ("audit.capture_headers[6]", "never captured"),
        ("audit.capture_headers[7]", "never captured"),
        ("audit.capture_headers[9]", "listed twice"),
        ("audit.redact_params[0]", "parameter name"),
        ("audit.redact_params[1]", "parameter name"),
        ("audit.redact_params[3]", "listed twice"),
    ];
    for (path, needle) in want {
        assert!(errors.has(path, needle), "missing {path}: {needle} in {errors}");
    }
    assert_eq!(errors.len(), want.len(), "{errors}");
}

#[test]
fn sink_fields_that_format_log_does_not_use_are_refused() {
    let (_, errors) = compiled(json!({"sink": {"format": "log", "cluster": "c", "path": "/x"}}));
    assert!(errors.has("audit.sink.cluster", "not used with format log"), "{errors}");
    assert!(errors.has("audit.sink.path", "not used with format log"), "{errors}");
    let (_, errors) = compiled(json!({"sink": {"cluster": "a b"}}));
    assert!(errors.has("audit.sink.cluster", "cluster name"), "{errors}");
    let (_, errors) = compiled(json!({"sink": {"cluster": "c"}, "batch_size": 500, "buffer_events": 100}));
    assert!(
        errors.has("audit.buffer_events", "at least batch_size (500)"),
        "{errors}"
    );
}

#[test]
fn forbidden_header_names_come_from_the_caller_too() {
    let mut errors = PolicyErrors::default();
    let d = doc(json!({"sink": {"cluster": "c"}, "capture_headers": ["x-token", "user-agent"]}));
    AuditConfig::compile(&d, "audit", &["X_Token"], &mut errors);
    assert!(errors.has("audit.capture_headers[0]", "never captured"), "{errors}");
    assert_eq!(errors.len(), 1);
}

#[test]
fn route_audit_sample_is_bounded() {
    let mut errors = PolicyErrors::default();
    let d: RouteAuditDoc = serde_json::from_value(json!({})).unwrap();
    assert_eq!(
        RouteAudit::compile(&d, "routes[0].audit", &mut errors),
        RouteAudit::default()
    );
    let d: RouteAuditDoc = serde_json::from_value(json!({"event_type": "data_access", "sample": 0.25})).unwrap();
    let r = RouteAudit::compile(&d, "routes[0].audit", &mut errors);
    assert_eq!((r.event_type, r.sample), (EventType::DataAccess, 0.25));
    assert!(errors.is_empty());
    for bad in [-0.1, 1.5] {
        let d = RouteAuditDoc {
            event_type: None,
            sample: Some(bad),
        };
        RouteAudit::compile(&d, "routes[3].audit", &mut errors);
    }
    let d = RouteAuditDoc {
        event_type: None,
        sample: Some(f64::NAN),
    };
    RouteAudit::compile(&d, "routes[4].audit", &mut errors);
    assert!(errors.has("routes[3].audit.sample", "-0.1"), "{errors}");
    assert!(errors.has("routes[3].audit.sample", "1.5"), "{errors}");
    assert!(errors.has("routes[4].audit.sample", "NaN"), "{errors}");
    assert_eq!(errors.len(), 3);
}

// ---------------------------------------------------------------- ids

/// A calendar walked one day at a time: independent of `civil_from_days`.
fn next_day((y, m, d): (i64, u32, u32)) -> (i64, u32, u32) {
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let len = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    match (d == len, m == 12) {
        (false, _) => (y, m, d + 1),
        (true, false) => (y, m + 1, 1),
        (true, true) => (y + 1, 1, 1),
    }
}

#[test]
fn civil_from_days_walks_the_calendar() {
    // 1600-01-01 (day -135140) to past 2400: four 400-year leap rules.
    let mut date = (1600, 1, 1);
    for days in -135_140..=160_000 {
        assert_eq!(civil_from_days(days), date, "day {days}");
        date = next_day(date);
    }
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(-1), (1969, 12, 31));
}

#[test]
fn rfc3339_of_known_instants() {
    let s = 1_000_000_000u64;
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
    assert_eq!(rfc3339(1), "1970-01-01T00:00:00.000000001Z");
    assert_eq!(rfc3339(951_782_400 * s), "2000-02-29T00:00:00.000000000Z");
    assert_eq!(rfc3339(1_234_567_890 * s), "2009-02-13T23:31:30.000000000Z");
    assert_eq!(
        rfc3339(1_709_210_096 * s + 123_456_789),
        "2024-02-29T12:34:56.123456789Z"
    );
    assert_eq!(rfc3339(4_107_542_400 * s), "2100-03-01T00:00:00.000000000Z");
    assert_eq!(
        rfc3339(13_574_649_599 * s + 999_999_999),
        "2400-02-29T23:59:59.999999999Z"
    );
    assert_eq!(rfc3339(u64::MAX), "2554-07-21T23:34:33.709551615Z");
}

fn is_uuid_v4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
    lens == [8, 4, 4, 4, 12]
        && s.bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && parts[2].starts_with('4')
        && parts[3].starts_with(['8', '9', 'a', 'b'])
}

#[test]
fn uuids_have_version_4_and_the_rfc_variant() {
    assert_eq!(uuid_v4([0; 16]), "00000000-0000-4000-8000-000000000000");
    assert_eq!(uuid_v4([0xff; 16]), "ffffffff-ffff-4fff-bfff-ffffffffffff");
    let bytes: [u8; 16] = std::array::from_fn(|i| (i as u8) * 17);
    assert_eq!(uuid_v4(bytes), "00112233-4455-4677-8899-aabbccddeeff");
    for seed in 0..64u8 {
        let random: [u8; 16] = std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8 * 7));
        assert!(is_uuid_v4(&uuid_v4(random)), "{}", uuid_v4(random));
    }
}

#[test]
fn trace_ids_come_only_from_valid_traceparents() {
    let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_eq!(
        trace_id(good.as_bytes()).as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future";
    assert!(trace_id(later.as_bytes()).is_some());
    assert!(trace_id(&later.as_bytes()[..55]).is_some());
    for bad in [
        "",
        "00",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
    ] {
        assert_eq!(trace_id(bad.as_bytes()), None, "{bad}");
    }
}

// ---------------------------------------------------------------- events

/// Every place a token or secret can be, each a distinct marker.
pub(super) const SECRETS: &[&str] = &[
    "AUTHZSECRET",
    "PROXYAUTHSECRET",
    "COOKIESECRET",
    "SETCOOKIESECRET",
    "HDRTOKENSECRET",
    "OTHERHDRSECRET",
    "QTOKENSECRET",
    "QENCODEDSECRET",
    "QSEMISECRET",
    "QDOTSECRET",
    "QCASESECRET",
    "PASSWORDSECRET",
    "APIKEYSECRET",
    "QREPEATSECRET",
];

pub(super) struct Fixture {
    pub headers: HeaderMap,
    pub roles: Vec<String>,
    pub claims: Map<String, Value>,
    pub decisions: Vec<Decision>,
    pub raw_path: String,
    pub traceparent: Option<String>,
    pub tenant: Option<String>,
    pub event_type: EventType,
    pub now_nanos: u64,
    pub method_overrides: Vec<String>,
}

pub(super) fn decision(
    stage: &str,
    mode: Mode,
    outcome: Outcome,
    reason: Option<&str>,
    detail: Option<&str>,
) -> Decision {
    Decision::new(stage, mode, outcome, reason, detail)
}

impl Fixture {
    pub fn leaky() -> Fixture {
        let headers = HeaderMap::from_pairs([
            (":method", "GET"),
            (":path", "/ignored"),
            ("user-agent", "curl/8"),
            ("User-Agent", "second"),
            ("authorization", "Bearer AUTHZSECRET"),
            ("proxy-authorization", "Basic PROXYAUTHSECRET"),
            ("cookie", "session=COOKIESECRET"),
            ("set-cookie", "x=SETCOOKIESECRET"),
            ("x-api-token", "HDRTOKENSECRET"),
            ("x-other", "OTHERHDRSECRET"),
            ("x-request-id", "req-1"),
        ]);
        let mut claims = Map::new();
        claims.insert("department".into(), json!("research"));
        claims.insert("level".into(), json!(3));
        Fixture {
            headers,
            roles: vec!["reader".into(), "admin".into()],
            claims,
            decisions: vec![
                decision("jwt", Mode::Enforce, Outcome::Allow, None, None),
                decision(
                    "tenant",
                    Mode::Shadow,
                    Outcome::ShadowDeny,
                    Some("tenant_unknown"),
                    None,
                ),
                decision(
                    "ratelimit",
                    Mode::Enforce,
                    Outcome::Deny,
                    Some("rate_limited"),
                    Some("per-tenant"),
                ),
            ],
            raw_path: concat!(
                "/data/..//sets?id=7&access_token=QTOKENSECRET&access%5Ftoken=QENCODEDSECRET",
                "&a=1;token=QSEMISECRET&access.token=QDOTSECRET&ACCESS_TOKEN=QCASESECRET",
                "&password=PASSWORDSECRET&Api_Key=APIKEYSECRET&password=QREPEATSECRET&x=%2F#frag"
            )
            .to_string(),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            tenant: Some("acme".into()),
            event_type: EventType::DataAccess,
            now_nanos: 1_709_210_096_123_456_789,
            method_overrides: vec!["DELETE".into()],
        }
    }

    pub fn inputs<'a>(&'a self, tenant_sources: &'a [(TenantSource, &'a [u8])]) -> Inputs<'a> {
        Inputs {
            now_nanos: self.now_nanos,
            random: [7; 16],
            event_type: self.event_type,
            service: Some("datahub"),
            namespace: Some("data"),
            method: "GET",
            method_overrides: &self.method_overrides,
            host: "api.example.com",
            raw_path: self.raw_path.as_bytes(),
            normalized_path: "/data/sets",
            route: Some("datahub"),
            status: 429,
            duration_nanos: 1_234_567,
            request_bytes: 321,
            response_bytes: 87,
            request_id: self.headers.first("x-request-id"),
            traceparent: self.traceparent.as_deref().map(str::as_bytes),
            source_principal: Some("spiffe://cluster.local/ns/web/sa/frontend"),
            source_ip: Some("10.0.0.7"),
            subject: Some("user-1"),
            tenant: self.tenant.as_deref(),
            tier: Some("gold"),
            roles: &self.roles,
            claims: &self.claims,
            decisions: &self.decisions,
            tenant_sources,
            headers: &self.headers,
            token_params: &["access_token", "token"],
            token_headers: &["x-api-token"],
        }
    }
}

pub(super) const TENANT_SOURCES: &[(TenantSource, &[u8])] =
    &[(TenantSource::Claim, b"acme"), (TenantSource::Header, b"acme")];

pub(super) fn keep_config() -> AuditConfig {
    let (config, errors) = compiled(json!({
        "sink": {"cluster": "c"}, "capture_headers": ["user-agent"],
        "query": "keep", "redact_params": ["password", "api_key"]
    }));
    assert!(errors.is_empty(), "{errors}");
    config
}

pub(super) fn assert_no_secret(bytes: &[u8], what: &str) {
    let text = String::from_utf8_lossy(bytes);
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} leaks {secret}: {text}");
    }
}

#[test]
fn an_event_holds_every_field() {
    let f = Fixture::leaky();
    let event = build(&f.inputs(TENANT_SOURCES), &keep_config());
    let got = serde_json::to_value(&event).unwrap();
    let want = json!({
        "schema_version": 1,
        "event_id": "07070707-0707-4707-8707-070707070707",
        "time": "2024-02-29T12:34:56.123456789Z",
        "event_type": "data_access",
        "service": "datahub",
        "namespace": "data",
        "source_principal": "spiffe://cluster.local/ns/web/sa/frontend",
        "source_ip": "10.0.0.7",
        "subject": "user-1",
        "tenant": "acme",
        "tier": "gold",
        "roles": ["reader", "admin"],
        "claims": {"department": "research", "level": 3},
        "method": "GET",
        "method_overrides": ["DELETE"],
        "host": "api.example.com",
        "path": concat!(
            "/data/sets?id=7&access_token=[REDACTED]&access%5Ftoken=[REDACTED]&a=1;token=[REDACTED]",
            "&access.token=[REDACTED]&ACCESS_TOKEN=[REDACTED]&password=[REDACTED]&Api_Key=[REDACTED]",
            "&password=[REDACTED]&x=%2F"
        ),
        "route": "datahub",
        "status": 429,
        "duration_ms": 1.234,
        "request_bytes": 321,
        "response_bytes": 87,
        "request_id": "req-1",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "decisions": [
            {"stage": "jwt", "mode": "enforce", "outcome": "allow"},
            {"stage": "tenant", "mode": "shadow", "outcome": "shadow_deny", "reason": "tenant_unknown"},
            {"stage": "ratelimit", "mode": "enforce", "outcome": "deny", "reason": "rate_limited", "detail": "per-tenant"}
        ],
        "tenant_sources": [{"source": "claim", "value": "acme"}, {"source": "header", "value": "acme"}],
        "headers": {"user-agent": "curl/8, second"}
    });
    assert_eq!(got, want);
    assert!(event.refused());
}

#[test]
fn query_drop_leaves_the_normalized_path() {
    let f = Fixture::leaky();
    let (config, _) = compiled(json!({"sink": {"cluster": "c"}}));
    let event = build(&f.inputs(&[]), &config);
    assert_eq!(event.path, "/data/sets");
    assert!(event.headers.is_empty());
    assert!(event.tenant_sources.is_empty());
}

#[test]
fn no_secret_reaches_an_event_in_any_mode() {
    let f = Fixture::leaky();
    let keep = keep_config();
    // A config built by hand, past the policy check, still captures none.
    let mut reckless = keep.clone();
    reckless.capture_headers = [
        "authorization",
        "Cookie",
        "proxy-authorization",
        "set-cookie",
        "x-api-token",
        "x_api_token",
    ]
    .map(String::from)
    .to_vec();
    let (drop, _) = compiled(json!({"sink": {"cluster": "c"}, "capture_headers": ["user-agent"]}));
    for config in [&keep, &reckless, &drop] {
        let event = build(&f.inputs(TENANT_SOURCES), config);
        let queued = Queued::new(&event, f.now_nanos);
        assert_no_secret(&queued.json, "event");
        for format in [Format::Jsonl, Format::KafkaRest, Format::Otlp] {
            for (request, _) in encode(format, "/p", "svc", 1, vec![queued.clone()]) {
                assert_no_secret(&request.body, &format!("{format:?}"));
                assert_no_secret(request.path.as_bytes(), "path");
            }
        }
    }
    let event = build(&f.inputs(TENANT_SOURCES), &reckless);
    assert!(event.headers.is_empty(), "{:?}", event.headers);
}

#[test]
fn redaction_reads_names_as_servers_decode_them() {
    let secret = ["password", "access_token"];
    assert_eq!(redact_query(b"", &secret), "");
    assert_eq!(redact_query(b"a=1&b", &secret), "a=1&b");
    assert_eq!(redact_query(b"password", &secret), "password=[REDACTED]");
    assert_eq!(redact_query(b"pass%77ord=x", &secret), "pass%77ord=[REDACTED]");
    assert_eq!(redact_query(b"access+token=x&&", &secret), "access+token=[REDACTED]&&");
    assert_eq!(
        redact_query(b"%20access_token=x", &secret),
        "%20access_token=[REDACTED]"
    );
    assert_eq!(
        redact_query(b"access[token=x;y=2", &secret),
        "access[token=[REDACTED];y=2"
    );
    assert_eq!(
        redact_query(b"password%00junk=x", &secret),
        "password%00junk=[REDACTED]"
    );
    assert_eq!(redact_query(b"a=password", &secret), "a=password");
    assert!(REDACTED.starts_with('['));
}

#[test]
fn never_captured_names_are_the_credentials() {
    assert_eq!(
        NEVER_CAPTURED,
        ["authorization", "cookie", "proxy-authorization", "set-cookie"]
    );
}

// ---------------------------------------------------------------- sampling

#[test]
fn sampling_keeps_every_refusal_and_admin_operation() {
    let allow = [decision("jwt", Mode::Enforce, Outcome::Allow, None, None)];
    let deny = [decision(
        "jwt",
        Mode::Enforce,
        Outcome::Deny,
        Some("token_missing"),
        None,
    )];
    let shadow = [decision(
        "tenant",
        Mode::Shadow,
        Outcome::ShadowDeny,
        Some("tenant_unknown"),
        None,
    )];
    let random = u64::MAX;
    assert!(!keep(EventType::ApiCall, 0.0, &allow, true, 0));
    assert!(!keep(EventType::ApiCall, 0.0, &[], true, 0));
    assert!(keep(EventType::ApiCall, 0.0, &deny, true, random));
    assert!(keep(EventType::DataAccess, 0.0, &shadow, true, random));
    assert!(keep(EventType::AdminOperation, 0.0, &allow, true, random));
    assert!(keep(EventType::ApiCall, 1.0, &allow, true, random));
    assert!(!keep(EventType::ApiCall, 0.5, &allow, true, random));
    assert!(keep(EventType::ApiCall, 0.5, &allow, true, 0));
}

#[test]
fn sampling_keeps_about_the_share_asked() {
    // splitmix64: well-spread 64-bit draws.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let allow = [decision("jwt", Mode::Enforce, Outcome::Allow, None, None)];
    let kept = (0..20_000)
        .filter(|_| keep(EventType::DataAccess, 0.1, &allow, true, next()))
        .count();
    assert!((1_800..=2_200).contains(&kept), "{kept}");
}

// ---------------------------------------------------------------- buffer

fn queued(n: u64) -> Queued {
    Queued {
        event_type: EventType::ApiCall,
        tenant: None,
        time_nanos: n,
        trace_id: None,
        refused: false,
        json: format!("{{\"n\":{n}}}").into_bytes(),
    }
}

fn times(events: &[Queued]) -> Vec<u64> {
    events.iter().map(|e| e.time_nanos).collect()
}

#[test]
fn a_full_buffer_drops_the_oldest_and_counts_it() {
    let mut buffer = Buffer::new(3);
    for n in 0..5 {
        buffer.push(queued(n));
    }
    assert_eq!(buffer.depth(), 3);
    assert_eq!(buffer.counters.emitted, 5);
    assert_eq!(buffer.counters.dropped.buffer_full, 2);
    assert_eq!(times(&buffer.take_batch(10)), [2, 3, 4]);
    assert_eq!(buffer.depth(), 0);
    assert!(buffer.take_batch(10).is_empty());
}

#[test]
fn batches_are_taken_oldest_first() {
    let mut buffer = Buffer::new(10);
    for n in 0..5 {
        buffer.push(queued(n));
    }
    assert_eq!(times(&buffer.take_batch(2)), [0, 1]);
    assert_eq!(times(&buffer.take_batch(2)), [2, 3]);
    buffer.sent(4);
    assert_eq!(buffer.counters.sent, 4);
    assert_eq!(buffer.depth(), 1);
}

#[test]
fn failed_batches_come_back_first_within_the_bound() {
    let mut buffer = Buffer::new(4);
    for n in 0..4 {
        buffer.push(queued(n));
    }
    let batch = buffer.take_batch(3);
    buffer.push(queued(4));
    buffer.push(queued(5));
    buffer.requeue_failed(batch, 1_000, 500);
    // Room for one of the three: the newest of them stays.
    assert_eq!(buffer.counters.dropped.retry_overflow, 2);
    assert_eq!(buffer.counters.batches_failed, 1);
    assert_eq!(times(&buffer.take_batch(10)), [2, 3, 4, 5]);
    assert!(!buffer.ready(1_000));
    assert!(buffer.ready(1_000 + BACKOFF_BASE));
    let dropped = buffer.counters.dropped;
    assert_eq!(dropped.total(), 2);
}

const BACKOFF_BASE: u64 = buffer::BACKOFF_BASE_NANOS;

#[test]
fn retries_back_off_exponentially_up_to_the_cap() {
    assert_eq!(next_attempt_at(5, 0), 5);
    assert_eq!(next_attempt_at(5, 1), 5 + BACKOFF_BASE);
    assert_eq!(next_attempt_at(5, 2), 5 + 2 * BACKOFF_BASE);
    assert_eq!(next_attempt_at(5, 4), 5 + 8 * BACKOFF_BASE);
    assert_eq!(next_attempt_at(5, 20), 5 + buffer::BACKOFF_CAP_NANOS);
    assert_eq!(next_attempt_at(5, u32::MAX), 5 + buffer::BACKOFF_CAP_NANOS);
    assert_eq!(next_attempt_at(u64::MAX, 3), u64::MAX);
    let mut buffer = Buffer::new(10);
    for failures in 1..=3u64 {
        // Each sent after the failure before it: attempts in a row.
        buffer.requeue_failed(vec![queued(failures)], 0, 0);
        assert!(!buffer.ready(BACKOFF_BASE * (1 << (failures - 1)) - 1));
        assert!(buffer.ready(BACKOFF_BASE * (1 << (failures - 1))));
    }
    buffer.sent(1);
    assert!(buffer.ready(0), "a success ends the backoff");
    assert_eq!(buffer.depth(), 3);
    assert_eq!(buffer.counters.batches_failed, 3);
}

#[test]
fn batches_out_together_that_fail_together_double_the_backoff_once() {
    let mut buffer = Buffer::new(100);
    for n in 0..8 {
        buffer.push(queued(n));
    }
    // Four calls sent at 10 fail at 20, 21, 22, 23: one failed attempt.
    let batches: Vec<Vec<Queued>> = (0..4).map(|_| buffer.take_batch(2)).collect();
    for (i, batch) in batches.into_iter().enumerate() {
        buffer.requeue_failed(batch, 20 + i as u64, 10);
    }
    assert_eq!(buffer.counters.batches_failed, 4);
    assert!(!buffer.ready(20 + BACKOFF_BASE - 1));
    assert!(buffer.ready(20 + BACKOFF_BASE), "backed off once, not four times");
    assert_eq!(buffer.depth(), 8);
    // The next attempt, sent after that failure, fails too: doubled.
    let t = 20 + BACKOFF_BASE;
    let batch = buffer.take_batch(2);
    buffer.requeue_failed(batch, t + 5, t);
    assert!(!buffer.ready(t + 5 + 2 * BACKOFF_BASE - 1));
    assert!(buffer.ready(t + 5 + 2 * BACKOFF_BASE));
    // A success ends it; the next failure starts again at the base.
    buffer.sent(0);
    let batch = buffer.take_batch(2);
    buffer.requeue_failed(batch, t + 10, 0);
    assert!(buffer.ready(t + 10 + BACKOFF_BASE));
}

#[test]
fn shrinking_drops_the_oldest_counted() {
    let mut buffer = Buffer::new(5);
    for n in 0..5 {
        buffer.push(queued(n));
    }
    buffer.resize(2);
    assert_eq!(buffer.counters.dropped.resized, 3);
    assert_eq!(buffer.capacity(), 2);
    assert_eq!(times(&buffer.take_batch(10)), [3, 4]);
    buffer.resize(0);
    assert_eq!(buffer.capacity(), 1);
    let c = buffer.counters;
    assert_eq!(c.emitted, c.sent + c.dropped.total() + buffer.depth() as u64 + 2);
}

// ---------------------------------------------------------------- encoders

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KafkaBody {
    records: Vec<KafkaRecord>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KafkaRecord {
    key: Option<String>,
    value: Value,
}

pub(super) fn mixed_batch() -> Vec<Queued> {
    let f = Fixture::leaky();
    let config = keep_config();
    let mut batch = Vec::new();
    let types = [
        EventType::ApiCall,
        EventType::DataAccess,
        EventType::ApiCall,
        EventType::AdminOperation,
        EventType::UserAction,
    ];
    for (i, event_type) in types.into_iter().enumerate() {
        let mut inputs = f.inputs(TENANT_SOURCES);
        inputs.event_type = event_type;
        inputs.now_nanos += i as u64;
        inputs.random = [i as u8; 16];
        let tenant = ["acme".to_string()];
        inputs.tenant = tenant.first().filter(|_| i % 2 == 0).map(String::as_str);
        inputs.traceparent = inputs.traceparent.filter(|_| i != 1);
        let event = build(&inputs, &config);
        batch.push(Queued::new(&event, inputs.now_nanos));
    }
    batch
}

#[test]
fn kafka_rest_sends_one_request_per_topic_keyed_by_tenant() {
    let batch = mixed_batch();
    let requests = encode(Format::KafkaRest, "/kafka/", "svc", 0, batch.clone());
    let paths: Vec<&str> = requests.iter().map(|(r, _)| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/kafka/topics/audit-api-calls",
            "/kafka/topics/audit-data-access",
            "/kafka/topics/audit-admin-operations",
            "/kafka/topics/audit-user-actions"
        ]
    );
    let mut seen = 0;
    for (request, events) in &requests {
        assert_eq!(request.content_type, KAFKA_CONTENT_TYPE);
        let body: KafkaBody = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body.records.len(), events.len());
        for (record, event) in body.records.iter().zip(events) {
            assert_eq!(record.key, event.tenant);
            assert_eq!(record.value, serde_json::from_slice::<Value>(&event.json).unwrap());
            assert_eq!(record.value["event_type"], event.event_type.as_str());
            assert!(request.path.ends_with(event.event_type.topic()));
        }
        seen += events.len();
    }
    assert_eq!(seen, batch.len());
    assert_eq!(by_topic(batch)[0].1.len(), 2);
    assert_eq!(
        kafka_rest("", EventType::UserAction, &[]).path,
        "/topics/audit-user-actions"
    );
    let empty: KafkaBody = serde_json::from_slice(&kafka_rest("", EventType::ApiCall, &[]).body).unwrap();
    assert!(empty.records.is_empty());
}

#[test]
fn jsonl_is_one_event_per_line() {
    let batch = mixed_batch();
    let requests = encode(Format::Jsonl, "/events", "svc", 0, batch.clone());
    assert_eq!(requests.len(), 1);
    let (request, events) = &requests[0];
    assert_eq!(
        (request.path.as_str(), request.content_type),
        ("/events", "application/x-ndjson")
    );
    assert_eq!(events, &batch);
    let text = String::from_utf8(request.body.clone()).unwrap();
    assert!(text.ends_with('\n'));
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), batch.len());
    assert_eq!(jsonl("/e", &[]).body, b"");
}

#[test]
fn log_and_empty_batches_send_nothing() {
    assert!(encode(Format::Log, "", "svc", 0, mixed_batch()).is_empty());
    for format in [Format::Jsonl, Format::KafkaRest, Format::Otlp] {
        assert!(encode(format, "/p", "svc", 0, Vec::new()).is_empty());
    }
}

#[test]
fn the_written_event_is_the_bytes_serde_writes() {
    let f = Fixture::leaky();
    let mut odd = Fixture::leaky();
    odd.tenant = Some("quote\"and\\slash\u{1}".into());
    odd.traceparent = None;
    odd.decisions.clear();
    let drop_config = compiled(json!({"sink": {"cluster": "c"}})).0;
    for (fixture, config) in [(&f, keep_config()), (&odd, drop_config)] {
        for sources in [TENANT_SOURCES, &[]] {
            let inputs = fixture.inputs(sources);
            let serde = serde_json::to_vec(&build(&inputs, &config)).unwrap();
            let written = Queued::from_inputs(&inputs, &config);
            assert_eq!(String::from_utf8_lossy(&written.json), String::from_utf8_lossy(&serde));
            assert_eq!(written, Queued::new(&build(&inputs, &config), inputs.now_nanos));
        }
    }
}

#[test]
fn bytes_bound_the_buffer_and_the_batch_as_well_as_counts() {
    let event = |n: usize| Queued {
        json: vec![b'x'; n],
        ..Queued::new(&build(&Fixture::leaky().inputs(&[]), &keep_config()), 0)
    };
    let mut buffer = Buffer::with_max_bytes(100, 1000);
    for _ in 0..5 {
        buffer.push(event(300));
    }
    assert_eq!((buffer.depth(), buffer.bytes()), (3, 900), "the oldest two went");
    assert_eq!(buffer.counters.dropped.buffer_full, 2);
    let batch = buffer.take_batch(10);
    assert_eq!((batch.len(), buffer.bytes()), (3, 0));
    buffer.push(event(600));
    buffer.requeue_failed(batch, 0, 0);
    assert_eq!((buffer.depth(), buffer.bytes()), (2, 900), "one of the batch fits back");
    assert_eq!(buffer.counters.dropped.retry_overflow, 2);
    buffer.push(event(2000));
    assert_eq!(buffer.depth(), 1, "an event over the bound alone is kept, alone");
    let mut big = Buffer::new(10);
    for _ in 0..3 {
        big.push(event(audit_max_batch() / 2));
    }
    assert_eq!(big.take_batch(10).len(), 2, "a batch stops at MAX_BATCH_BYTES");
    assert_eq!(big.take_batch(10).len(), 1);
}

fn audit_max_batch() -> usize {
    super::buffer::MAX_BATCH_BYTES
}

/// Attack: `password[]=x`, `user[password]=x`, `access_token[0]=x` are the
/// parameter `password` (or `access_token`) to every framework that nests
/// parameters (PHP, Rack, Express's qs), but their names were compared
/// whole, so with `query: keep` the value reached the event.
#[test]
fn redaction_reads_nested_parameter_names() {
    let secret = ["password", "access_token"];
    assert_eq!(redact_query(b"password[]=x", &secret), "password[]=[REDACTED]");
    assert_eq!(
        redact_query(b"user%5Bpassword%5D=x&a=1", &secret),
        "user%5Bpassword%5D=[REDACTED]&a=1"
    );
    assert_eq!(
        redact_query(b"access_token[0]=x;b[c]=2", &secret),
        "access_token[0]=[REDACTED];b[c]=2"
    );
    assert_eq!(
        redact_query(b"a[b][access.token]=x", &secret),
        "a[b][access.token]=[REDACTED]"
    );
    assert_eq!(
        redact_query(b"a[password=x", &secret),
        "a[password=x",
        "PHP reads a_password"
    );
}

/// Attack: a tenant header is the client's to fill. Its values went into
/// `tenant_sources` whole, so a token a client sent there (or any secret,
/// of any length up to Envoy's header limit) reached the trail. A value no
/// policy could take as a tenant id (letters, digits, `-`, `_`, at most
/// 256 once trimmed) re-decides as `tenant_invalid` whatever it holds.
#[test]
fn tenant_sources_keep_only_what_could_be_a_tenant() {
    let f = Fixture::leaky();
    let long = "a".repeat(257);
    let sources: &[(TenantSource, &[u8])] = &[
        (TenantSource::Header, b"Bearer eyJhbGciOi.TENANTHDRSECRET.sig"),
        (TenantSource::Header, b" acme "),
        (TenantSource::Path, long.as_bytes()),
        (TenantSource::Header, b"\xff"),
    ];
    let config = keep_config();
    let event = build(&f.inputs(sources), &config);
    let values: Vec<&str> = event.tenant_sources.iter().map(|s| s.value.as_str()).collect();
    assert_eq!(values, [REDACTED, " acme ", REDACTED, REDACTED]);
    let written = Queued::from_inputs(&f.inputs(sources), &config);
    assert_eq!(written, Queued::new(&event, f.now_nanos));
    assert!(!String::from_utf8_lossy(&written.json).contains("TENANTHDRSECRET"));
}

#[test]
fn adopted_events_keep_the_bounds_and_count_what_does_not_fit() {
    let mut orphan = Buffer::new(10);
    for n in 0..3 {
        orphan.push(queued(n));
    }
    let mut own = Buffer::new(2);
    own.push(queued(9));
    own.adopt(&mut orphan);
    assert_eq!((orphan.depth(), orphan.bytes()), (0, 0));
    assert_eq!(times(&own.take_batch(10)), [9, 0]);
    assert_eq!(own.counters.dropped.resized, 2);
    assert_eq!(own.counters.emitted, 1, "the orphan counted its own");
}

/// Attack: on a sampled route (`sample: 0.1`), enumerate ids or probe
/// for access the application refuses (401, 403, 404, 5xx, or a gRPC
/// status other than OK under HTTP 200). Tollgate let each request
/// through, so each was sampled like a successful read and nine in ten
/// attempts left no event. The issue samples successful reads: anything
/// else is always kept.
#[test]
fn sampling_keeps_every_failed_response() {
    let allow = [decision("jwt", Mode::Enforce, Outcome::Allow, None, None)];
    let random = u64::MAX;
    for status in [0, 400, 401, 403, 404, 429, 500, 503, 599, 600] {
        assert!(!succeeded(status, None), "{status}");
    }
    for status in [100, 200, 204, 301, 304, 399] {
        assert!(succeeded(status, None), "{status}");
    }
    assert!(succeeded(200, Some(0)));
    assert!(!succeeded(200, Some(7)), "gRPC PERMISSION_DENIED under HTTP 200");
    assert!(keep(EventType::DataAccess, 0.0, &allow, false, random));
    assert!(!keep(EventType::DataAccess, 0.0, &allow, true, random));
}

/// Attack: an event is as large as what the client sends in a captured
/// header (every copy, joined) or `x-request-id`: up to Envoy's header
/// limit, six times that once control bytes are escaped. While the sink
/// is slow, a few hundred such requests fill the 64 MiB a worker buffers
/// and push out (as `buffer_full`) the events of the requests before
/// them: an attacker's own, say. Each is bounded now.
#[test]
fn captured_headers_and_request_ids_are_bounded() {
    let mut f = Fixture::leaky();
    let huge = "\u{1}".repeat(50_000);
    let mut pairs: Vec<(&str, &str)> = vec![("x-request-id", huge.as_str())];
    pairs.extend(std::iter::repeat_n(("user-agent", huge.as_str()), 20));
    f.headers = HeaderMap::from_pairs(pairs);
    let config = keep_config();
    let event = build(&f.inputs(&[]), &config);
    assert!(event.headers["user-agent"].len() <= MAX_FIELD_BYTES);
    assert!(event.request_id.as_deref().unwrap_or_default().len() <= MAX_FIELD_BYTES);
    let written = Queued::from_inputs(&f.inputs(&[]), &config);
    assert_eq!(written, Queued::new(&event, f.now_nanos));
    assert!(written.json.len() < 16 * MAX_FIELD_BYTES, "{}", written.json.len());
    // Short values are kept whole; a cut never splits a character.
    let text = "é".repeat(MAX_FIELD_BYTES);
    assert!(super::event::bounded(&text).len() <= MAX_FIELD_BYTES);
    assert_eq!(super::event::bounded("curl/8"), "curl/8");
}

#[test]
fn kafka_answers_name_the_records_that_failed_and_what_becomes_of_them() {
    use Failure::{Reject, Retry};
    let confluent = br#"{"key_schema_id":null,"value_schema_id":null,"offsets":[
        {"partition":2,"offset":100,"error_code":null,"error":null},
        {"partition":null,"offset":null,"error_code":2,"error":"NotLeaderForPartition"},
        {"partition":1,"offset":101},
        {"partition":null,"offset":null,"error_code":1,"error":"RecordTooLargeException"}]}"#;
    assert_eq!(kafka_failed_records(confluent), [None, Some(Retry), None, Some(Reject)]);
    let strimzi = br#"{"offsets":[{"error_code":500,"message":"timeout"},{"partition":0,"offset":3},
        {"error_code":404,"message":"Topic audit-x not present in metadata"}]}"#;
    assert_eq!(kafka_failed_records(strimzi), [Some(Retry), None, Some(Reject)]);
    let odd = br#"{"offsets":[{"error_code":"x"},{"error_code":7}]}"#;
    assert_eq!(
        kafka_failed_records(odd),
        [Some(Retry), Some(Retry)],
        "unknown codes are retried"
    );
    for body in [&b""[..], b"not json", b"{}", b"[]", br#"{"offsets":7}"#] {
        assert!(kafka_failed_records(body).is_empty());
    }
}

#[test]
fn record_error_codes_of_each_proxy_are_read_as_they_mean() {
    use Failure::{Reject, Retry};
    // REST Proxy v2 as documented; its later five-digit codes; Strimzi's
    // HTTP statuses; anything else is retried.
    let cases = [
        (1, Reject),
        (2, Retry),
        (40101, Reject),
        (40301, Reject),
        (40401, Reject),
        (42901, Retry),
        (50002, Reject),
        (50003, Retry),
        (50302, Retry),
        (400, Reject),
        (404, Reject),
        (408, Retry),
        (429, Retry),
        (500, Retry),
        (503, Retry),
        (0, Retry),
        (-1, Retry),
        (3, Retry),
        (99_999, Retry),
    ];
    for (code, failure) in cases {
        assert_eq!(record_failure(code), failure, "error_code {code}");
    }
}

#[test]
fn whole_batch_answers_that_retrying_cannot_fix_are_rejected() {
    use Failure::{Reject, Retry};
    for status in ["400", "401", "403", "404", "405", "409", "413", "415", "422", "499"] {
        assert_eq!(batch_failure(status.as_bytes()), Reject, "{status}");
    }
    for status in ["408", "429", "500", "502", "503", "504", "", "abc", "3xx", "302", "100"] {
        assert_eq!(batch_failure(status.as_bytes()), Retry, "{status:?}");
    }
}

#[test]
fn a_refusals_reason_names_the_topic_the_status_and_the_proxys_words() {
    let path = "/topics/audit-data-access";
    let unknown = br#"{"error_code":40401,"message":"Topic audit-data-access not found."}"#;
    assert_eq!(
        refusal_reason(path, b"404", unknown),
        "/topics/audit-data-access: 404, error_code 40401: Topic audit-data-access not found."
    );
    assert_eq!(refusal_reason(path, b"401", b""), "/topics/audit-data-access: 401");
    let records = br#"{"offsets":[{"error_code":2,"error":"later"},{"error_code":1,"error":"RecordTooLarge"}]}"#;
    assert_eq!(
        refusal_reason(path, b"", records),
        "/topics/audit-data-access: records refused, error_code 1: RecordTooLarge"
    );
    // A body that tries to forge log lines, or to fill the log.
    let long = format!(
        r#"{{"error_code":400,"message":"bad\nFAKE LINE {}"}}"#,
        "x".repeat(5000)
    );
    let reason = refusal_reason(path, b"400", long.as_bytes());
    assert!(!reason.contains('\n'), "{reason}");
    assert_eq!(reason.len(), answer::MAX_REASON_BYTES + '…'.len_utf8());
    assert!(reason.ends_with('…'));
}

#[test]
fn refusals_are_logged_at_most_once_per_interval_with_what_came_between() {
    let interval = answer::REFUSAL_LOG_INTERVAL_NANOS;
    let mut refusals = Refusals::default();
    assert_eq!(refusals.due(0), None, "nothing refused, nothing to say");
    refusals.add(100, true, "/topics/t: 404".into());
    let first = refusals.due(5).unwrap();
    assert!(first.contains("refused 100 events (1 whole batches)"), "{first}");
    assert!(first.ends_with("last: /topics/t: 404"), "{first}");
    // 100 batches a second for the next 29.9 s: no line.
    let mut t = 5;
    for n in 0..2990u64 {
        t = 5 + n * 10_000_000;
        refusals.add(100, true, "/topics/t: 404".into());
        assert_eq!(refusals.due(t), None, "at {t}");
    }
    refusals.add(3, false, "/topics/u: a record refused, error_code 1".into());
    assert_eq!(refusals.due(t + 1), None);
    let second = refusals.due(5 + interval).unwrap();
    assert!(
        second.contains("refused 299003 events since the last line (2990 whole batches)"),
        "{second}"
    );
    assert!(
        second.ends_with("last: /topics/u: a record refused, error_code 1"),
        "{second}"
    );
    assert_eq!(refusals.due(5 + 3 * interval), None, "counts start again");
}

#[test]
fn otlp_answers_say_how_many_records_were_rejected() {
    let partial = br#"{"partialSuccess":{"rejectedLogRecords":"2","errorMessage":"too large"}}"#;
    assert_eq!(otlp_rejected(partial), 2);
    assert_eq!(otlp_rejected(br#"{"partialSuccess":{"rejectedLogRecords":3}}"#), 3);
    for body in [&b""[..], b"{}", br#"{"partialSuccess":{}}"#, b"junk"] {
        assert_eq!(otlp_rejected(body), 0);
    }
}
