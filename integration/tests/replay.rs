//! `tollgate replay`'s round trip in real Envoys: one with policy A
//! records a traffic mix (allowed, denied by each stage, shadow-denied,
//! several tenants and routes) to the test sink; replaying those events
//! against A reports no change, and against B (a tenant suspended, a rule
//! added, a route switched from shadow to enforce) exactly the changes
//! that sending the same traffic to an Envoy with B records, request by
//! request. Runs in the native fused run only: it tests no delivery.

#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::tokens::{self, claims_with};
use common::{once_per_suite, require_artefacts};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tollgate_integration::sink::{jsonl_events, Record};
use tollgate_integration::{paths, Bootstrap, Echo, Envoy, Request, Sink};

const SINK_CLUSTER: &str = "audit-sink";
const ARRIVE_WITHIN: Duration = Duration::from_secs(10);

/// datahub: a scope rule; reports: tenants ACME and GLOBEX only; iceberg:
/// jwt and tenant in shadow. Tenants from the claim or the header.
fn policy_a() -> Value {
    json!({
        "version": 1,
        "realm": "tollgate-test",
        "jwt": {"providers": [tokens::local_provider()]},
        "tenants": [{"id": "ACME", "tier": "premium"}, {"id": "GLOBEX"},
                    {"id": "INITECH", "routes": ["datahub"]}, {"id": "HOOLI", "status": "suspended"}],
        "tenant": {"sources": ["claim", "header"]},
        "routes": [
            {"name": "datahub", "match": {"prefix": "/api/datahub"},
             "jwt": {"requirement": "required", "rules": [{"claim": "scope", "contains": "trino:query"}]},
             "tenant": {"required": true}},
            {"name": "reports", "match": {"prefix": "/api/reports"},
             "jwt": {"requirement": "required"}, "tenant": {"required": true}},
            {"name": "iceberg", "match": {"prefix": "/api/iceberg"},
             "jwt": {"requirement": "required", "mode": "shadow"}, "tenant": {"required": true, "mode": "shadow"}},
        ],
        "audit": {"sink": {"format": "jsonl", "cluster": SINK_CLUSTER}, "batch_size": 100,
                  "flush_interval_ms": 50, "capture_headers": ["user-agent"]},
    })
}

/// A with GLOBEX suspended, a scope rule on reports (on the claim A's rule
/// reads) and iceberg enforced.
fn policy_b() -> Value {
    let mut b = policy_a();
    b["tenants"][1]["status"] = json!("suspended");
    b["routes"][1]["jwt"]["rules"] = json!([{"claim": "scope", "contains": "reports:read"}]);
    b["routes"][2]["jwt"]["mode"] = json!("enforce");
    b["routes"][2]["tenant"]["mode"] = json!("enforce");
    b
}

fn bearer(tenant: &str, scope: &str) -> String {
    tokens::bearer(&claims_with(&json!({"tenant": tenant, "scope": scope})))
}

/// (request id, request): the traffic mix, ids sent as `x-request-id`.
fn traffic(run: &str) -> Vec<(String, Request)> {
    let all = "trino:query reports:read";
    let cases: Vec<(&str, &str, Option<String>, Option<&str>)> = vec![
        ("acme-datahub", "/api/datahub/t", Some(bearer("ACME", all)), None),
        (
            "globex-datahub",
            "/api/datahub/t",
            Some(bearer("GLOBEX", "trino:query")),
            None,
        ),
        (
            "globex-reports",
            "/api/reports/daily",
            Some(bearer("GLOBEX", all)),
            None,
        ),
        (
            "acme-reports-no-scope",
            "/api/reports/daily",
            Some(bearer("ACME", "trino:query")),
            None,
        ),
        ("no-token", "/api/datahub/t", None, None),
        ("rule-denied", "/api/datahub/t", Some(bearer("ACME", "echo:call")), None),
        (
            "unknown-tenant",
            "/api/reports/daily",
            Some(bearer("UMBRELLA", all)),
            None,
        ),
        ("suspended", "/api/reports/daily", Some(bearer("HOOLI", all)), None),
        (
            "route-forbidden",
            "/api/reports/daily",
            Some(bearer("INITECH", all)),
            None,
        ),
        (
            "mismatch",
            "/api/reports/daily",
            Some(bearer("ACME", all)),
            Some("GLOBEX"),
        ),
        (
            "header-tenant",
            "/api/reports/daily",
            Some(bearer("ACME", all)),
            Some("ACME"),
        ),
        ("shadow-no-token", "/api/iceberg/t", None, Some("ACME")),
        ("shadow-no-tenant", "/api/iceberg/t", None, None),
        ("shadow-allowed", "/api/iceberg/t", Some(bearer("GLOBEX", all)), None),
    ];
    cases
        .into_iter()
        .map(|(name, target, auth, tenant_header)| {
            let id = format!("{run}-{name}");
            let mut request = Request::get(target)
                .header("host", "api.example.com")
                .header("x-request-id", &id)
                .header("user-agent", "tollgate-replay-test/1");
            if let Some(auth) = auth {
                request = request.header("authorization", &auth);
            }
            if let Some(tenant) = tenant_header {
                request = request.header("x-tenant-id", tenant);
            }
            (id, request)
        })
        .collect()
}

/// Sends the traffic to an Envoy running `policy` (the fused filter); the
/// events its sink received.
fn record(policy: &Value, run: &str) -> Vec<Value> {
    let sink = Sink::start();
    let echo = Echo::start();
    let mut bootstrap = Bootstrap::new(echo.port()).cluster(SINK_CLUSTER, sink.port());
    bootstrap = common::all_stages(bootstrap, policy);
    let envoy = Envoy::start(&bootstrap.to_json());
    let traffic = traffic(run);
    for (_, request) in &traffic {
        envoy.send(request);
    }
    let read = |r: &[Record]| jsonl_events(r, "/events");
    sink.wait_events(traffic.len(), ARRIVE_WITHIN, read)
        .unwrap_or_else(|e| panic!("{e}"));
    let events = read(&sink.records()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(events.len(), traffic.len(), "one event per request");
    events
}

/// stage -> `outcome (reason)` of each decision but the rate limit's.
fn decisions(event: &Value) -> BTreeMap<String, String> {
    event["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["stage"] != "ratelimit")
        .map(|d| {
            let outcome = d["outcome"].as_str().unwrap();
            let label = match d["reason"].as_str() {
                Some(reason) => format!("{outcome} ({reason})"),
                None => outcome.to_string(),
            };
            (d["stage"].as_str().unwrap().to_string(), label)
        })
        .collect()
}

/// (request id in A's run, stage, old, new) for every stage the two
/// recordings decided differently, matched by request name.
type Changes = Vec<(String, String, String, String)>;

fn recorded_differences(a: &[Value], b: &[Value]) -> Changes {
    let name = |e: &Value| e["request_id"].as_str().unwrap().split_once('-').unwrap().1.to_string();
    let by_name: BTreeMap<String, &Value> = b.iter().map(|e| (name(e), e)).collect();
    let mut out = Vec::new();
    for event in a {
        let (old, new) = (decisions(event), decisions(by_name[&name(event)]));
        let stages: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        for stage in stages {
            let get = |m: &BTreeMap<String, String>| m.get(stage).cloned().unwrap_or_else(|| "not run".into());
            if get(&old) != get(&new) {
                let id = event["request_id"].as_str().unwrap().to_string();
                out.push((id, stage.clone(), get(&old), get(&new)));
            }
        }
    }
    out.sort();
    out
}

/// The `tollgate` binary, built if needed.
fn tollgate() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "-q", "-p", "tollgate-cli", "--bin", "tollgate"])
        .current_dir(paths::repo_root())
        .status()
        .unwrap();
    assert!(status.success(), "building tollgate");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| paths::repo_root().join("target"), PathBuf::from);
    target.join("debug/tollgate")
}

/// `tollgate replay POLICY --events FILE --json --fail-on none` with A as
/// the recorded policy.
fn replay(tollgate: &Path, dir: &Path, policy: &Value, events: &[&Value]) -> Value {
    let (policy_file, events_file, recorded) = (dir.join("policy.json"), dir.join("events.jsonl"), dir.join("a.json"));
    std::fs::write(&policy_file, policy.to_string()).unwrap();
    std::fs::write(&recorded, policy_a().to_string()).unwrap();
    let lines: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    std::fs::write(&events_file, lines.join("\n")).unwrap();
    let out = std::process::Command::new(tollgate)
        .arg("replay")
        .arg(&policy_file)
        .arg("--events")
        .arg(&events_file)
        .arg("--recorded-policy")
        .arg(&recorded)
        .args(["--json", "--fail-on", "none"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn replay_reports_the_changes_a_second_envoy_records() {
    if !once_per_suite() {
        return;
    }
    require_artefacts();
    let (a, b) = (policy_a(), policy_b());
    let events_a = record(&a, "a");
    let events_b = record(&b, "b");
    let expected = recorded_differences(&events_a, &events_b);
    for (stage, new) in [
        ("tenant", "deny (tenant_suspended)"),
        ("jwt", "deny (insufficient_scope)"),
        ("jwt", "deny (token_missing)"),
    ] {
        assert!(
            expected.iter().any(|c| c.1 == stage && c.3 == new),
            "B changes {stage} to {new}: {expected:#?}"
        );
    }
    let tollgate = tollgate();
    let dir = std::env::temp_dir().join(format!("tollgate-replay-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let all: Vec<&Value> = events_a.iter().collect();
    let same = replay(&tollgate, &dir, &a, &all);
    assert_eq!(same["events"]["read"], events_a.len());
    assert_eq!(same["events"]["changed"], 0, "{same:#}");
    assert_eq!(same["changes"], json!([]));
    // Only the enforced rule's denial cannot be re-decided: its event holds no claim.
    assert_eq!(same["events"]["redecided"], events_a.len() - 1, "{same:#}");
    let undecidable: Vec<String> = events_a
        .iter()
        .filter(|e| decisions(e).get("jwt").map(String::as_str) == Some("deny (insufficient_scope)"))
        .map(|e| e["request_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(undecidable, ["a-rule-denied"]);

    // Request by request: each event replayed alone, its changes are its own.
    let mut replayed = Vec::new();
    for event in &events_a {
        let report = replay(&tollgate, &dir, &b, &[event]);
        for change in report["changes"].as_array().unwrap() {
            assert_eq!(change["example_request_id"], event["request_id"]);
            let text = |k: &str| change[k].as_str().unwrap().to_string();
            replayed.push((text("example_request_id"), text("stage"), text("old"), text("new")));
        }
    }
    replayed.sort();
    let decidable: Changes = expected.into_iter().filter(|c| !undecidable.contains(&c.0)).collect();
    assert_eq!(replayed, decidable);
    let all_b = replay(&tollgate, &dir, &b, &all);
    assert!(all_b["newly_denied"].as_u64().unwrap() > 0);
    assert_eq!(all_b["gate"]["passed"], true, "--fail-on none");
    std::fs::remove_dir_all(&dir).unwrap();
}
