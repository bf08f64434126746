//! `tollgate explain` over the demo policy: every demo example gives the
//! status, reason and application headers the demo expects of a real
//! Envoy; --no-verify, --jwks and the route's why.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::path::PathBuf;
use tollgate_cli::demo::{self, Example, EXAMPLES, TOKENS};
use tollgate_cli::explain::{explain, Request};

const NOW: u64 = 1_800_000_000;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn demo_policy() -> Value {
    tollgate_cli::policy_file::load_policy(&repo("wasmplugins/policy.yaml")).unwrap()
}

fn sign(claims: &Value, kid: &str, pem: &str) -> String {
    let key = EncodingKey::from_rsa_pem(&std::fs::read(repo(pem)).unwrap()).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    encode(&header, claims, &key).unwrap()
}

/// The demo's token for a shell variable of `TOKENS`, minted at `NOW`.
fn demo_token(var: &str) -> String {
    let (_, tenant, roles, scope, expired) = TOKENS.iter().find(|t| t.0 == var).unwrap();
    let claims = demo::token_claims(tenant, roles, scope, *expired, NOW);
    sign(&claims, demo::SIGNING_KID, demo::SIGNING_KEY)
}

fn request(example: &Example) -> Request {
    Request {
        method: example.method.to_string(),
        url: format!("http://127.0.0.1:10000{}", example.path),
        headers: example
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        token: example.token.map(demo_token),
        now: Some(NOW),
        ..Request::default()
    }
}

/// (status, reason) of an explanation: a local reply's, or 200 forwarded.
fn answer(e: &Value) -> (u64, Option<String>) {
    let answer = &e["answer"];
    match answer["kind"].as_str() {
        Some("local_reply") => (
            answer["status"].as_u64().unwrap(),
            answer["reason"].as_str().map(str::to_string),
        ),
        Some("forwarded") => (200, None),
        other => panic!("no answer: {other:?}: {e:#}"),
    }
}

/// Every value of a header the application receives.
fn received(e: &Value, name: &str) -> Vec<String> {
    e["upstream"]["receives"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h[0] == name)
        .map(|h| h[1].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_demo_example_gets_the_answer_the_demo_expects() {
    let policy = demo_policy();
    assert!(EXAMPLES.len() >= 14, "the demo's list, not a copy");
    for example in EXAMPLES {
        let e = explain(&policy, &request(example)).unwrap();
        let (status, reason) = answer(&e);
        assert_eq!(status, u64::from(example.status), "{}: {e:#}", example.what);
        assert_eq!(reason.as_deref(), example.reason, "{}", example.what);
        for (name, value) in example.upstream {
            assert_eq!(received(&e, name), [*value], "{}: {name}", example.what);
        }
        if let Some(reason) = example.reason {
            // The stage that refused says so in its own record, or the
            // request was refused before any route.
            let by_stage = e["stages"].as_array().unwrap().iter().any(|s| s["reason"] == reason);
            let before = e["route"]["refused_before_routing"] == reason;
            assert!(by_stage || before, "{}: {e:#}", example.what);
        } else {
            assert!(e["upstream"]["receives"].is_array(), "{}", example.what);
        }
        assert!(
            e["notes"].as_array().unwrap().is_empty(),
            "{}: {:?}",
            example.what,
            e["notes"]
        );
    }
}

#[test]
fn the_explanation_names_the_route_its_why_the_stages_and_the_counters() {
    let policy = demo_policy();
    let shadow = EXAMPLES.iter().find(|x| x.path == "/api/iceberg/tables").unwrap();
    let e = explain(&policy, &request(shadow)).unwrap();
    assert_eq!(e["route"]["name"], "iceberg");
    assert_eq!(e["route"]["decided_by"], "only_match");
    assert_eq!(e["stages"][0]["outcome"], "shadow_deny");
    assert_eq!(e["stages"][0]["reason"], "token_missing");
    let counters: Vec<&str> = e["counters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[0].as_str().unwrap())
        .collect();
    assert!(
        counters.contains(&"tollgate.jwt.shadow_denied.token_missing"),
        "{counters:?}"
    );
    // The policy's default limit counts every route's requests.
    assert_eq!(e["limits"]["limits"][0]["name"], "per-ip");
    assert!(e["limits"]["counts"].as_str().is_some_and(|c| !c.is_empty()));
    // A rewritten path is what the application is served, and what matched.
    let dotted = EXAMPLES
        .iter()
        .find(|x| x.path == "/api/superset/../mlflow/runs")
        .unwrap();
    let e = explain(&policy, &request(dotted)).unwrap();
    assert_eq!(e["route"]["name"], "mlflow");
    assert_eq!(e["route"]["normalized_path"], "/api/mlflow/runs");
    assert_eq!(e["stages"][1]["reason"], "tenant_route_forbidden");
    assert_eq!(e["stages"][0]["sub"], "user@254carbon.com");
    // The claims a rule of the route tests, and whether each holds.
    let post = EXAMPLES.iter().find(|x| x.method == "POST").unwrap();
    let e = explain(&policy, &request(post)).unwrap();
    let rules = e["stages"][0]["claims"]["rules"].as_array().unwrap();
    let engineer = rules.iter().find(|r| r["test"] == "contains data-engineer").unwrap();
    assert_eq!(
        (engineer["applies"].as_bool(), engineer["holds"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(e["stages"][0]["rfc6750_error"], "insufficient_scope");
}

#[test]
fn the_route_why_is_the_precedence_step() {
    let policy = json!({
        "version": 1,
        "defaults": {"jwt": {"requirement": "none"}},
        "routes": [
            {"name": "api", "match": {"prefix": "/api"}},
            {"name": "status", "match": {"exact": "/api/status"}},
            {"name": "api-post", "match": {"prefix": "/api", "methods": ["POST"]}},
        ],
    });
    let why = |method: &str, path: &str| {
        let request = Request {
            method: method.into(),
            url: format!("http://h{path}"),
            ..Request::default()
        };
        let e = explain(&policy, &request).unwrap();
        (
            e["route"]["name"].as_str().unwrap().to_string(),
            e["route"]["decided_by"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(why("GET", "/api/status"), ("status".into(), "exact_path".into()));
    assert_eq!(why("POST", "/api/x"), ("api-post".into(), "method".into()));
    assert_eq!(why("GET", "/api/x"), ("api".into(), "only_match".into()));
    assert_eq!(why("GET", "/other"), ("default".into(), "no_match".into()));
}

#[test]
fn no_verify_trusts_the_claims_and_says_so() {
    let policy = demo_policy();
    // Signed by a key the policy does not hold.
    let claims = demo::token_claims("STD-001", &["analyst"], "", false, NOW);
    let foreign = sign(&claims, "rsa-1", "tests/fixtures/keys/rsa-2.pem");
    let mut request = Request {
        method: "GET".into(),
        url: "http://127.0.0.1/api/datahub/entities".into(),
        token: Some(foreign),
        now: Some(NOW),
        ..Request::default()
    };
    let e = explain(&policy, &request).unwrap();
    assert_eq!(answer(&e), (401, Some("token_signature_invalid".into())));
    request.no_verify = true;
    let e = explain(&policy, &request).unwrap();
    assert_eq!(answer(&e), (200, None));
    assert_eq!(received(&e, "x-tenant-id"), ["STD-001"]);
    assert_eq!(e["request"]["signature_checked"], false);
    assert!(e["notes"][0].as_str().unwrap().contains("SIGNATURE NOT CHECKED"));
    let text = tollgate_cli::explain::text(&e);
    assert!(text.contains("SIGNATURE NOT CHECKED"), "{text}");
    // Times are still checked, on the clock given.
    request.now = Some(NOW + 7200);
    let e = explain(&policy, &request).unwrap();
    assert_eq!(answer(&e), (401, Some("token_expired".into())));
}

/// The demo policy with its keys fetched from an IdP instead.
fn remote_policy() -> Value {
    let mut policy = demo_policy();
    let provider = &mut policy["jwt"]["providers"][0];
    provider.as_object_mut().unwrap().remove("local_jwks");
    provider["remote_jwks"] = json!({"uri": "http://idp.test/jwks.json", "cluster": "idp"});
    policy
}

#[test]
fn remote_keys_come_from_the_jwks_option_or_a_note_says_they_cannot() {
    let policy = remote_policy();
    let mut request = Request {
        method: "GET".into(),
        url: "http://127.0.0.1/api/datahub/entities".into(),
        token: Some(demo_token("STD")),
        now: Some(NOW),
        ..Request::default()
    };
    let e = explain(&policy, &request).unwrap();
    assert_eq!(answer(&e), (503, Some("jwks_unavailable".into())));
    let note = e["notes"][0].as_str().unwrap();
    assert!(note.contains("--jwks") && note.contains("--no-verify"), "{note}");
    request.jwks = Some(std::fs::read(repo("tests/fixtures/keys/jwks.json")).unwrap());
    let e = explain(&policy, &request).unwrap();
    assert_eq!(answer(&e), (200, None), "{e:#}");
    assert_eq!(received(&e, "x-tenant-id"), ["STD-001"]);
    assert!(e["notes"].as_array().unwrap().is_empty());
    // --no-verify needs no keys at all.
    request.jwks = None;
    request.no_verify = true;
    let e = explain(&policy, &request).unwrap();
    assert_eq!(answer(&e), (200, None), "{e:#}");
}

#[test]
fn the_command_prints_text_and_json() {
    let token_file = std::env::temp_dir().join(format!("tollgate-explain-{}.jwt", std::process::id()));
    std::fs::write(&token_file, format!("Bearer {}\n", demo_token("NED"))).unwrap();
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .arg("explain")
            .arg(repo("wasmplugins/policy.yaml"))
            .args([
                "--url",
                "http://127.0.0.1/api/superset/charts",
                "-H",
                "x-tenant-tier: gold",
            ])
            .arg("--token-file")
            .arg(&token_file)
            .args(["--now", &NOW.to_string()])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let text = run(&[]);
    assert!(text.contains("route: superset (the only route that matched)"), "{text}");
    assert!(text.contains("~ x-tenant-tier: gold -> standard"), "{text}");
    assert!(text.contains("answer: forwarded"), "{text}");
    let parsed: Value = serde_json::from_str(&run(&["--json"])).unwrap();
    assert_eq!(parsed["stages"][1]["tenant"], "NED-001");
    std::fs::remove_file(&token_file).ok();
}

/// `--namespace`: the answer of the plugin `render` lays over that
/// namespace. The example policy enforces in datahub (its own plugin) and
/// shadows mesh-wide; a namespace in `skip_namespaces` has no Tollgate.
#[test]
fn the_namespace_decides_which_plugin_answers() {
    let mut policy = demo_policy();
    policy["skip_namespaces"] = json!(["legacy"]);
    let ask = |namespace: Option<&str>| {
        let request = Request {
            url: "http://api.local/api/datahub/datasets".into(),
            headers: vec![("x-tenant-id".into(), "ACME".into())],
            now: Some(NOW),
            namespace: namespace.map(str::to_string),
            ..Request::default()
        };
        explain(&policy, &request).unwrap()
    };
    let datahub = ask(Some("datahub"));
    assert_eq!(answer(&datahub), (401, Some("token_missing".into())), "{datahub:#}");
    assert_eq!(datahub["plugin"]["runs"], "datahub/tollgate (the namespace's own)");
    assert_eq!(datahub["plugin"]["stands_aside"], false);
    assert_eq!(datahub["plugin"]["attaches_to"], "every sidecar");

    let trino = ask(Some("trino"));
    assert_eq!(
        answer(&trino),
        (200, None),
        "mesh-wide shadow lets it through: {trino:#}"
    );
    assert_eq!(trino["plugin"]["runs"], "istio-system/tollgate (mesh-wide)");
    assert_eq!(trino["plugin"]["modes"], "jwt shadow, tenant shadow, ratelimit shadow");
    assert_eq!(trino["stages"][0]["outcome"], "shadow_deny", "{trino:#}");

    let legacy = ask(Some("legacy"));
    assert_eq!(legacy["plugin"]["stands_aside"], true, "{legacy:#}");
    assert_eq!(legacy["audit"]["audited"], false, "no Tollgate, no event: {legacy:#}");
    assert_eq!(answer(&legacy), (200, None));

    let written = ask(None);
    assert!(written.get("plugin").is_none());
    assert_eq!(
        answer(&written),
        (401, Some("token_missing".into())),
        "top-level modes enforce"
    );

    let mut waypoint = policy.clone();
    waypoint["mesh"]["namespaces"][0]["target_refs"] = json!([{"kind": "Gateway", "name": "waypoint"}]);
    let request = Request {
        url: "http://api.local/api/datahub/datasets".into(),
        namespace: Some("datahub".into()),
        ..Request::default()
    };
    let on_waypoint = explain(&waypoint, &request).unwrap();
    assert_eq!(on_waypoint["plugin"]["attaches_to"], "Gateway waypoint");

    let bad = Request {
        namespace: Some("Not_A_Namespace".into()),
        ..Request::default()
    };
    let err = explain(&policy, &bad).unwrap_err();
    assert!(err.contains("--namespace"), "{err}");
}

/// The demo policy with a per-ip default limit, a tier- and tenant-aware
/// local limit and a global shadow limit on the superset route.
fn limited_policy() -> Value {
    let mut policy = demo_policy();
    policy["defaults"]["limits"] = json!([
        {"name": "per-ip", "key": ["client_ip"], "requests": 20, "period": "second"}
    ]);
    let superset = policy["routes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["name"] == "superset")
        .unwrap();
    superset["limits"] = json!([
        {"name": "superset-per-tenant", "key": ["tenant", "header:x-api-key"], "requests": 100,
         "period": "minute", "burst": 10, "tiers": {"premium": 500}, "tenants": {"NED-001": 1000}},
        {"name": "superset-global", "key": ["subject"], "requests": 5, "period": "hour",
         "scope": "global", "mode": "shadow"}
    ]);
    policy["ratelimit"] = json!({"client_ip": {"xff_trusted_hops": 2}, "service": {"cluster": "ratelimit"}});
    policy
}

#[test]
fn the_limits_a_request_counts_against_with_their_rates_and_key_values() {
    let policy = limited_policy();
    let ask = |token: &str, source: Option<&str>| {
        let request = Request {
            url: "http://127.0.0.1/api/superset/charts".into(),
            headers: vec![("x-forwarded-for".into(), "203.0.113.7, 10.0.0.1".into())],
            token: Some(demo_token(token)),
            now: Some(NOW),
            source_address: source.map(str::to_string),
            ..Request::default()
        };
        explain(&policy, &request).unwrap()
    };
    let e = ask("NED", None);
    assert_eq!(answer(&e), (200, None), "{e:#}");
    let limits = e["limits"]["limits"].as_array().unwrap();
    let names: Vec<_> = limits.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["per-ip", "superset-per-tenant", "superset-global"]);
    assert_eq!(limits[0]["from"], "defaults");
    // Two trusted hops: the second address from the right.
    assert_eq!(limits[0]["key"], json!([{"part": "client_ip", "value": "203.0.113.7"}]));
    assert_eq!(
        (&limits[1]["requests"], &limits[1]["rate_from"]),
        (&json!(1000), &json!("tenant NED-001's override"))
    );
    assert_eq!(
        limits[1]["key"],
        json!([{"part": "tenant", "value": "NED-001"}, {"part": "header.x-api-key", "value": ""}])
    );
    assert_eq!(
        (&limits[2]["scope"], &limits[2]["mode"]),
        (&json!("global"), &json!("shadow"))
    );
    assert_eq!(limits[2]["key"][0]["value"], e["stages"][0]["sub"]);
    let notes = e["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n.as_str().unwrap().contains("rate limit service")),
        "{notes:?}"
    );
    let ratelimit = e["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "ratelimit");
    assert_eq!(ratelimit.unwrap()["outcome"], "allow", "{e:#}");
    let text = tollgate_cli::explain::text(&e);
    for want in [
        "rate limits (offline, the counts are not known",
        "  per-ip (defaults): 20/second (the limit's requests), burst 0, local, enforce",
        "  superset-per-tenant (route superset): 1000/minute (tenant NED-001's override), burst 10, local, enforce",
        "    key: tenant=\"NED-001\" header.x-api-key=\"\" (none: such requests share one count)",
        "  superset-global (route superset): 5/hour (the limit's requests), burst 0, global, shadow",
        "  client_ip: 203.0.113.7 (address 2 from the right of X-Forwarded-For",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
    // A premium tenant gets its tier's rate.
    let premium = ask("STD", None);
    assert_eq!(premium["limits"]["limits"][1]["requests"], 500);
    assert_eq!(premium["limits"]["limits"][1]["rate_from"], "tier premium's override");
}

#[test]
fn client_ip_limits_read_the_source_address_given() {
    let mut policy = limited_policy();
    policy["ratelimit"]["client_ip"]["xff_trusted_hops"] = json!(0);
    let request = |source: Option<&str>| Request {
        url: "http://127.0.0.1/api/datahub/entities".into(),
        token: Some(demo_token("NED")),
        now: Some(NOW),
        source_address: source.map(str::to_string),
        ..Request::default()
    };
    let e = explain(&policy, &request(Some("198.51.100.4:51234"))).unwrap();
    assert_eq!(e["limits"]["limits"][0]["key"][0]["value"], "198.51.100.4");
    let e = explain(&policy, &request(None)).unwrap();
    assert_eq!(e["limits"]["limits"][0]["key"][0]["value"], "");
    let text = tollgate_cli::explain::text(&e);
    assert!(
        text.contains("explain does not have offline: give --source-address"),
        "{text}"
    );
}

/// The `audit` part of the explanation of a demo example, by its path and token.
fn audit_of(path: &str, token: Option<&str>) -> Value {
    let example = EXAMPLES.iter().find(|x| x.path == path && x.token == token).unwrap();
    let e = explain(&demo_policy(), &request(example)).unwrap();
    assert!(
        e["stages"].as_array().unwrap().iter().all(|s| s["stage"] != "audit"),
        "audit decides nothing: no stage record of its own: {e:#}"
    );
    e["audit"].clone()
}

#[test]
fn the_audit_event_type_sample_and_whether_the_event_is_kept() {
    let allowed = audit_of("/api/datahub/entities", Some("STD"));
    assert_eq!(allowed["route"], "datahub");
    assert_eq!(allowed["event_type"], "data_access");
    assert_eq!(
        (allowed["sample"].as_f64(), allowed["kept"].as_str()),
        (Some(1.0), Some("always"))
    );
    assert_eq!(allowed["sink"]["format"], "kafka-rest");
    assert_eq!(
        allowed["sink"]["cluster"],
        "outbound|8082||kafka-rest.kafka.svc.cluster.local"
    );
    assert_eq!(
        allowed["sink"]["sends"],
        "POST /topics/audit-data-access (Kafka REST), keyed by tenant"
    );

    // The read-heavy route samples allowed requests; its denials are kept.
    let sampled = audit_of("/api/superset/charts", Some("NED"));
    assert_eq!(
        (
            sampled["event_type"].as_str(),
            sampled["sample"].as_f64(),
            sampled["kept"].as_str()
        ),
        (Some("user_action"), Some(0.1), Some("sampled"))
    );
    let denied = audit_of("/api/superset/../mlflow/runs", Some("NED"));
    assert_eq!(
        (denied["route"].as_str(), denied["kept"].as_str()),
        (Some("mlflow"), Some("always"))
    );
    assert!(
        denied["kept_because"].as_str().unwrap().contains("denials"),
        "{denied:#}"
    );

    let admin = audit_of("/api/admin/tenants", Some("NED"));
    assert_eq!(
        (admin["event_type"].as_str(), admin["kept"].as_str()),
        (Some("admin_operation"), Some("always"))
    );
    assert_eq!(admin["kept_because"], "admin operations are always kept");

    // Refused before routing: the defaults' event type, always kept.
    let early = audit_of("/api/superset;v=2/charts", Some("NED"));
    assert_eq!(early["route"], Value::Null);
    assert_eq!(
        (early["event_type"].as_str(), early["kept"].as_str()),
        (Some("api_call"), Some("always"))
    );
}

#[test]
fn a_policy_without_audit_says_so_and_text_names_the_event() {
    let mut policy = demo_policy();
    let example = EXAMPLES.iter().find(|x| x.path == "/api/superset/charts").unwrap();
    let text = tollgate_cli::explain::text(&explain(&policy, &request(example)).unwrap());
    assert!(
        text.contains("audit: event type user_action (route superset), sample 0.1: sampled (allowed requests are kept with probability 0.1"),
        "{text}"
    );
    assert!(text.contains("POST /topics/audit-user-actions"), "{text}");
    assert!(!text.contains("stage audit"), "{text}");

    let map = policy.as_object_mut().unwrap();
    map.remove("audit");
    for route in map["routes"].as_array_mut().unwrap() {
        route.as_object_mut().unwrap().remove("audit");
    }
    let e = explain(&policy, &request(example)).unwrap();
    assert_eq!(
        e["audit"],
        json!({"audited": false, "why": "the policy has no audit section"})
    );
    assert!(tollgate_cli::explain::text(&e).contains("audit: none (the policy has no audit section)"));
}
