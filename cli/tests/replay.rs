//! `tollgate replay` over events the fused filter's own audit stage writes
//! on the in-memory host (signatures checked, as a sidecar checks them):
//! replayed against the policy that recorded them, nothing changes;
//! against a changed policy, the changes are those recording the same
//! traffic under it gives, request by request. Undecidable events are
//! counted with why, never guessed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tollgate_cli::demo;
use tollgate_cli::replay::report::{FailOn, Report};
use tollgate_cli::replay::{self, Options, Recording};
use tollgate_host::fake::FakeHost;

const NOW: u64 = 1_800_000_000;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The demo policy, every event kept and sent to a JSON lines sink.
fn policy_a() -> Value {
    let mut policy = tollgate_cli::policy_file::load_policy(&repo("wasmplugins/policy.yaml")).unwrap();
    policy["audit"] = json!({"sink": {"cluster": "sink"}, "flush_interval_ms": 10, "batch_size": 1000,
                             "buffer_events": 10000, "capture_headers": ["user-agent"]});
    for route in policy["routes"].as_array_mut().unwrap() {
        if route["audit"].is_object() {
            route["audit"]["sample"] = json!(1.0);
        }
    }
    policy
}

/// A with tenant ACME suspended, a scope rule added to datahub, and the
/// iceberg route switched from shadow to enforce.
fn policy_b() -> Value {
    let mut policy = policy_a();
    for tenant in policy["tenants"].as_array_mut().unwrap() {
        if tenant["id"] == "ACME" {
            tenant["status"] = json!("suspended");
        }
    }
    for route in policy["routes"].as_array_mut().unwrap() {
        if route["name"] == "datahub" {
            route["jwt"] = json!({"rules": [{"claim": "scope", "contains": "datahub:read"}]});
        }
        if route["name"] == "iceberg" {
            route["tenant"]["mode"] = json!("enforce");
            route["jwt"]["mode"] = json!("enforce");
        }
    }
    policy
}

fn token(tenant: &str, roles: &[&str], scope: &str, expired: bool) -> String {
    let claims = demo::token_claims(tenant, roles, scope, expired, NOW);
    let key = EncodingKey::from_rsa_pem(&std::fs::read(repo(demo::SIGNING_KEY)).unwrap()).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(demo::SIGNING_KID.into());
    encode(&header, &claims, &key).unwrap()
}

struct Sent {
    method: &'static str,
    path: &'static str,
    token: Option<String>,
    headers: Vec<(&'static str, &'static str)>,
}

fn sent(method: &'static str, path: &'static str, token: Option<String>) -> Sent {
    Sent {
        method,
        path,
        token,
        headers: Vec::new(),
    }
}

/// Allowed, denied by each stage, shadow-denied; several tenants and routes.
fn traffic() -> Vec<Sent> {
    let read = "datahub:read trino:query";
    let mut mismatch = sent("GET", "/api/datahub/x", Some(token("ACME", &["analyst"], read, false)));
    mismatch.headers.push(("x-tenant-id", "STD-001"));
    let mut agent = sent("GET", "/api/datahub/y", Some(token("STD-001", &["analyst"], "", false)));
    agent.headers.push(("user-agent", "curl/8"));
    vec![
        sent(
            "GET",
            "/api/datahub/x",
            Some(token("STD-001", &["analyst"], read, false)),
        ),
        agent,
        sent("GET", "/api/datahub/x", Some(token("ACME", &["analyst"], read, false))),
        sent("GET", "/api/datahub/x", None),
        sent("GET", "/api/trino/q", Some(token("ACME", &["analyst"], "", false))),
        sent(
            "GET",
            "/api/trino/q",
            Some(token("ACME", &["analyst"], "trino:query", false)),
        ),
        sent(
            "POST",
            "/api/trino/q",
            Some(token("ACME", &["analyst"], "trino:query", false)),
        ),
        sent("GET", "/api/mlflow/x", Some(token("NED-001", &["analyst"], "", false))),
        sent(
            "GET",
            "/api/datahub/x",
            Some(token("OLD-001", &["analyst"], read, false)),
        ),
        sent(
            "GET",
            "/api/datahub/x",
            Some(token("ZZZ-404", &["analyst"], read, false)),
        ),
        mismatch,
        sent("GET", "/api/iceberg/t", None),
        sent("GET", "/api/iceberg/t", Some(token("ACME", &["analyst"], "", false))),
        sent("GET", "/api/admin/users", Some(token("ACME", &["admin"], "", false))),
        sent("GET", "/api/admin/users", Some(token("ACME", &["analyst"], "", false))),
        sent("GET", "/api/services", None),
    ]
}

/// Sends the traffic through the fused filter with `policy` on the fake
/// host, request ids `req-<i>`; the JSON lines its sink receives.
fn record(policy: &Value, traffic: &[Sent]) -> Vec<String> {
    let config = policy.to_string();
    let host = FakeHost::new(tollgate_stages::FUSED_ROOT_ID, config.as_bytes());
    host.now_ms.set(NOW * 1000);
    let mut root = tollgate_stages::fused();
    assert!(root.configure(&host, config.as_bytes()));
    let pipeline = root.pipeline().unwrap();
    for (i, s) in traffic.iter().enumerate() {
        let id = u32::try_from(i).unwrap() + 1;
        let request_id = format!("req-{i}");
        let mut headers = vec![
            (":method", s.method.to_string()),
            (":scheme", "http".into()),
            (":authority", "api.example.com".into()),
            (":path", s.path.to_string()),
            ("x-request-id", request_id),
        ];
        headers.extend(s.headers.iter().map(|(k, v)| (*k, v.to_string())));
        if let Some(t) = &s.token {
            headers.push(("authorization", format!("Bearer {t}")));
        }
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        host.begin(id, &pairs);
        let (_, shared) = pipeline.on_request_headers(&host, id, true);
        let status = host.request(id).reply.map_or(200u64, |r| u64::from(r.status));
        host.set_attribute(id, "response.code", &status.to_le_bytes());
        host.set_attribute(id, "source.address", b"10.1.2.3:5555");
        pipeline.on_log(&host, &shared);
    }
    // Ticks until the sink took them, each call answered: the outbox (one
    // per plugin and thread, its flush clock too) is empty for the next
    // recording in this thread.
    for tick in 1..=5 {
        host.now_ms.set(NOW * 1000 + tick * 60_000);
        host.current.set(0);
        pipeline.on_tick(&host);
        let calls: Vec<u32> = host.calls.borrow().iter().map(|c| c.0).collect();
        for token in calls {
            *host.call_answer.borrow_mut() = (b"200".to_vec(), Vec::new());
            pipeline.on_http_call_response(&host, token, 0);
        }
        host.calls.borrow_mut().clear();
        if !host.call_bodies.borrow().is_empty() {
            break;
        }
    }
    let bodies = host.call_bodies.borrow();
    let lines: Vec<String> = bodies
        .iter()
        .flat_map(|(_, b)| {
            String::from_utf8(b.clone())
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(lines.len(), traffic.len(), "one event per request");
    lines
}

fn run(policy: &Value, lines: &[String], options: &Options) -> Report {
    let input = lines.join("\n");
    replay::replay(policy, input.as_bytes(), options, &mut |_| {}).unwrap()
}

/// request id -> (stage, label) of each compared stage, as recorded.
fn decided(lines: &[String]) -> BTreeMap<String, Vec<(String, String)>> {
    lines
        .iter()
        .map(|l| {
            let event: Value = serde_json::from_str(l).unwrap();
            let id = event["request_id"].as_str().unwrap().to_string();
            (id, replay::compare::recorded(&event))
        })
        .collect()
}

/// (request id, stage, old, new) of every stage whose decision differs.
type Diff = Vec<(String, String, String, String)>;

fn expected_changes(a: &[String], b: &[String]) -> Diff {
    let (a, b) = (decided(a), decided(b));
    let mut out = Vec::new();
    for (id, old) in &a {
        for c in replay::compare::changes(old, &b[id]) {
            out.push((id.clone(), c.stage, c.old, c.new));
        }
    }
    out.sort();
    out
}

/// Every change of a replay, per request (replayed one event at a time,
/// so each group's example is that request), and the undecidable requests.
fn replayed_changes(policy: &Value, lines: &[String], options: &Options) -> (Diff, Vec<String>) {
    let (mut out, mut undecidable) = (Vec::new(), Vec::new());
    for line in lines {
        let report = run(policy, std::slice::from_ref(line), options);
        if report.undecidable.total() > 0 {
            let event: Value = serde_json::from_str(line).unwrap();
            undecidable.push(event["request_id"].as_str().unwrap().to_string());
        }
        for (k, g) in report.groups {
            out.push((g.example.unwrap(), k.stage, k.old, k.new));
        }
    }
    out.sort();
    undecidable.sort();
    (out, undecidable)
}

/// The requests an enforced claim rule denied: their events hold none of
/// the token's claims, so no policy can re-decide them.
fn rule_denied(lines: &[String]) -> Vec<String> {
    decided(lines)
        .into_iter()
        .filter(|(_, d)| d.iter().any(|(s, l)| s == "jwt" && l == "deny (insufficient_scope)"))
        .map(|(id, _)| id)
        .collect()
}

#[test]
fn replaying_the_recording_policy_changes_nothing() {
    let a = policy_a();
    let lines = record(&a, &traffic());
    let outcomes: Vec<String> = decided(&lines).values().flatten().map(|(_, l)| l.clone()).collect();
    for wanted in [
        "allow",
        "deny (token_missing)",
        "deny (insufficient_scope)",
        "deny (tenant_suspended)",
        "deny (tenant_unknown)",
        "deny (tenant_mismatch)",
        "deny (tenant_route_forbidden)",
        "shadow_deny",
    ] {
        assert!(
            outcomes.iter().any(|o| o.starts_with(wanted)),
            "the traffic has {wanted}: {outcomes:?}"
        );
    }
    for recorded in [None, Some(Recording::of(&a).unwrap())] {
        let options = Options {
            recorded,
            ..Options::default()
        };
        let report = run(&a, &lines, &options);
        assert_eq!(report.read, lines.len() as u64);
        let undecidable = rule_denied(&lines).len() as u64;
        assert_eq!(undecidable, 3);
        assert_eq!(report.undecidable.total(), undecidable, "{:?}", report.undecidable);
        assert!(report
            .undecidable
            .by_reason
            .keys()
            .all(|k| k.contains("failed a claim rule in enforce mode")));
        assert_eq!(
            (report.redecided, report.changed),
            (lines.len() as u64 - undecidable, 0),
            "{}",
            report.text()
        );
        assert!(report.text().contains("changes: none"));
    }
}

/// Keys fetched from an IdP: replay trusts the recorded claims, so it
/// needs none, and the answers are the same.
#[test]
fn a_policy_fetching_its_keys_replays_without_them() {
    let a = policy_a();
    let mut remote = a.clone();
    let provider = &mut remote["jwt"]["providers"][0];
    provider.as_object_mut().unwrap().remove("local_jwks");
    provider["remote_jwks"] = json!({"uri": "http://idp.test/jwks.json", "cluster": "idp"});
    let lines = record(&a, &traffic());
    let report = run(&remote, &lines, &Options::default());
    assert_eq!(report.redecided, lines.len() as u64 - rule_denied(&lines).len() as u64);
    assert_eq!(report.changed, 0, "{}", report.text());
}

#[test]
fn replaying_a_changed_policy_reports_the_changes_recording_it_gives() {
    let (a, b) = (policy_a(), policy_b());
    let traffic = traffic();
    let (lines_a, lines_b) = (record(&a, &traffic), record(&b, &traffic));
    let mut undecidable = rule_denied(&lines_a);
    undecidable.sort();
    let mut expected = expected_changes(&lines_a, &lines_b);
    expected.retain(|c| !undecidable.contains(&c.0));
    // Each of B's changes shows: the suspension, the rule, the enforced route.
    for reason in ["tenant_suspended", "insufficient_scope", "deny (token_missing)"] {
        assert!(expected.iter().any(|c| c.3.contains(reason)), "{reason}: {expected:?}");
    }
    let options = Options {
        recorded: Some(Recording::of(&a).unwrap()),
        ..Options::default()
    };
    assert_eq!(replayed_changes(&b, &lines_a, &options), (expected, undecidable));
    let report = run(&b, &lines_a, &options);
    assert!(report.newly_denied() > 0);
    assert!(replay::report::gate(&report, FailOn::NewDenials).is_some());
    assert!(replay::report::gate(&report, FailOn::None).is_none());
}

#[test]
fn an_event_lacking_what_the_candidate_reads_is_undecidable_not_guessed() {
    let a = policy_a();
    let expired = vec![sent(
        "GET",
        "/api/datahub/x",
        Some(token("ACME", &["analyst"], "", true)),
    )];
    let lines = record(&a, &expired);
    let report = run(&a, &lines, &Options::default());
    assert_eq!((report.redecided, report.undecidable.total()), (0, 1));
    assert!(
        report.undecidable.by_reason.keys().any(|k| k.contains("token_expired")),
        "{:?}",
        report.undecidable
    );
    // A rule on a claim the recording policy did not read.
    let mut c = a.clone();
    c["routes"][0]["jwt"] = json!({"rules": [{"claim": "department", "equals": "finance"}]});
    let lines = record(&a, &traffic()[..1]);
    let report = run(
        &c,
        &lines,
        &Options {
            recorded: Some(Recording::of(&a).unwrap()),
            ..Options::default()
        },
    );
    assert_eq!(report.undecidable.total(), 1);
    assert!(report
        .undecidable
        .by_reason
        .keys()
        .any(|k| k.contains("claim 'department'")));
    // A tenant header the recording did not read (nor capture).
    let mut claim_only = a.clone();
    claim_only["tenant"]["sources"] = json!(["claim"]);
    let lines = record(&claim_only, &traffic()[..1]);
    let report = run(
        &a,
        &lines,
        &Options {
            recorded: Some(Recording::of(&claim_only).unwrap()),
            ..Options::default()
        },
    );
    assert!(
        report.undecidable.by_reason.keys().any(|k| k.contains("tenant header")),
        "{:?}",
        report.undecidable
    );
}

#[test]
fn an_event_of_an_unknown_schema_version_is_skipped_with_its_reason() {
    let a = policy_a();
    let mut lines = record(&a, &traffic()[..2]);
    let mut future: Value = serde_json::from_str(&lines[0]).unwrap();
    future["schema_version"] = json!(2);
    lines.push(future.to_string());
    let report = run(&a, &lines, &Options::default());
    assert_eq!((report.read, report.redecided, report.skipped.total()), (3, 2, 1));
    assert_eq!(
        report.skipped.by_reason.keys().next().unwrap(),
        "schema_version 2 (this tollgate reads 1)"
    );
    assert_eq!(report.json()["events"]["skipped"], 1);
}

#[test]
fn the_command_gates_on_its_fail_on_and_prints_json() {
    let (a, b) = (policy_a(), policy_b());
    let dir = std::env::temp_dir().join(format!("tollgate-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let events = dir.join("events.jsonl");
    std::fs::write(&events, record(&a, &traffic()).join("\n")).unwrap();
    let (pa, pb) = (dir.join("a.json"), dir.join("b.json"));
    std::fs::write(&pa, a.to_string()).unwrap();
    std::fs::write(&pb, b.to_string()).unwrap();
    let run = |policy: &PathBuf, extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .arg("replay")
            .arg(policy)
            .arg("--events")
            .arg(&events)
            .args(extra)
            .output()
            .unwrap()
    };
    let same = run(&pa, &["--fail-on", "any-change"]);
    assert_eq!(same.status.code(), Some(0), "{}", String::from_utf8_lossy(&same.stderr));
    let denying = run(&pb, &[]);
    assert_eq!(denying.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&denying.stdout).contains("NEWLY DENIED"));
    let allowed = run(&pb, &["--fail-on", "none", "--json"]);
    assert_eq!(allowed.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&allowed.stdout).unwrap();
    assert_eq!(report["events"]["read"], traffic().len());
    assert!(report["changes"][0]["newly_denied"] == true);
    assert_eq!(report["limits"]["estimate"], true);
    assert_eq!(report["gate"], json!({"fail_on": "none", "passed": true}));
    let bad = run(&pa, &["--fail-on", "sometimes"]);
    assert_eq!(bad.status.code(), Some(2), "clap refuses the value");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes `REPLAY_EVENTS` (default 1,000,000) events to the file
/// `REPLAY_EVENTS_OUT`: the recorded traffic over and over, one second of
/// events per 1,000, request ids unique; and the policy to `<file>.policy.json`.
/// For measuring `tollgate replay`'s events per second (README):
/// `REPLAY_EVENTS_OUT=/tmp/events.jsonl cargo test -p tollgate-cli --test replay -- --ignored generate`
#[test]
#[ignore = "writes a large file; run by hand to measure"]
fn generate_events_for_a_throughput_run() {
    let out = PathBuf::from(std::env::var("REPLAY_EVENTS_OUT").expect("REPLAY_EVENTS_OUT"));
    let count: usize = std::env::var("REPLAY_EVENTS").map_or(1_000_000, |n| n.parse().unwrap());
    let a = policy_a();
    let lines: Vec<Value> = record(&a, &traffic())
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut file = std::io::BufWriter::new(std::fs::File::create(&out).unwrap());
    for i in 0..count {
        let mut event = lines[i % lines.len()].clone();
        event["request_id"] = json!(format!("gen-{i}"));
        let second = NOW + (i / 1000) as u64;
        event["time"] = json!(format!("{}.000000000Z", rfc3339_seconds(second)));
        std::io::Write::write_all(&mut file, format!("{event}\n").as_bytes()).unwrap();
    }
    std::fs::write(out.with_extension("policy.json"), a.to_string()).unwrap();
}

/// `YYYY-MM-DDTHH:MM:SS` of Unix seconds.
fn rfc3339_seconds(t: u64) -> String {
    let (days, rest) = (t / 86_400, t % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[test]
fn event_times_read_back_as_written() {
    for t in [0, NOW, NOW + 86_399, 951_782_400 /* 2000-02-29 */] {
        let text = format!("{}.123456789Z", rfc3339_seconds(t));
        assert_eq!(replay::rebuild::unix_seconds(&text), Some(t), "{text}");
    }
    assert_eq!(rfc3339_seconds(NOW), "2027-01-15T08:00:00");
    assert_eq!(replay::rebuild::unix_seconds("2027-13-15T08:00:00Z"), None);
    assert_eq!(replay::rebuild::unix_seconds("2027-01-15 08:00:00Z"), None);
}
