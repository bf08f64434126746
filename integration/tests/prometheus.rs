//! A real Prometheus (Debian's, installed by `cargo xtask setup`) scrapes a
//! real Envoy running the fused filter, and a second one whose filter comes
//! by ECDS and is refused a bad policy: the counters reach it with the names
//! and labels the README lists, and the values the traffic made. It loads
//! `prometheus/alerts.yaml` and answers every rule and every query of
//! `grafana/tollgate.json` with data. Native fused run only: names and
//! labels do not depend on the delivery.

#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::require_artefacts;
use common::tokens;
use serde_json::{json, Value};
use std::net::TcpListener;
use std::time::{Duration, Instant};
use tollgate_integration::prometheus::{self, Prometheus};
use tollgate_integration::{docker, paths, xds, Bootstrap, Delivery, Echo, Envoy, Filter, Request, WatchedFile};

/// Limit and tenant names with the '-' and '.' the policy allows.
const LIMIT: &str = "api.v2-per-ip";
const SHADOW_LIMIT: &str = "shadow.lim";
/// The JWKS cluster of the `jwks-down` route: a port nothing answers on.
const IDP_CLUSTER: &str = "idp";
/// As Istio names a WasmPlugin's filter configuration.
const ECDS_NAME: &str = "istio-system.tollgate";
/// The `namespace` label each scrape sets, as Istio's Prometheus does.
const NAMESPACE: &str = "datahub";
const ECDS_NAMESPACE: &str = "trino";

fn policy() -> Value {
    json!({
        "version": 1,
        "defaults": {"jwt": {"requirement": "none"}, "tenant": {"required": false}},
        "routes": [
            {"name": "jwt-route.v1", "match": {"prefix": "/jwt"}, "jwt": {"requirement": "required"}},
            {"name": "jwt-shadow", "match": {"prefix": "/shadow-jwt"}, "jwt": {"requirement": "required", "mode": "shadow"}},
            {"name": "tenant-route", "match": {"prefix": "/tenant"}, "tenant": {"required": true}},
            {"name": "shadow.route", "match": {"prefix": "/shadow"}, "tenant": {"required": true, "mode": "shadow"}},
            {"name": "limited", "match": {"prefix": "/limited"}, "limits": [
                {"name": LIMIT, "key": ["client_ip"], "requests": 1, "period": "minute"}
            ]},
            {"name": "shadow-limited", "match": {"prefix": "/slimit"}, "limits": [
                {"name": SHADOW_LIMIT, "key": ["client_ip"], "requests": 1, "period": "minute", "mode": "shadow"}
            ]},
            {"name": "jwks-down", "match": {"prefix": "/jwks-down"},
             "jwt": {"requirement": "required", "providers": ["platform"]}},
        ],
        "tenants": [{"id": "ACME-1", "tier": "standard"}, {"id": "GLOBEX_2", "tier": "standard"}],
        "tenant": {"sources": ["header"], "header": "x-tenant-id"},
        "jwt": {"providers": [{
            "name": "p", "issuer": "iss",
            "hmac_secret_base64": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0",
        }, tokens::remote_provider(IDP_CLUSTER)]},
        "audit": {"sink": {"format": "log"}},
    })
}

/// A token provider `p` verifies (HS256 with the policy's secret).
fn hs256_token() -> String {
    let claims = json!({"iss": "iss", "sub": "s", "exp": tokens::now() + 600});
    let key = jsonwebtoken::EncodingKey::from_secret(b"secretsecretsecretsecretsecretsecret");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &key,
    )
    .unwrap()
}

/// The one series `promql` selects, once it reads `want`.
fn wait_for(prometheus: &Prometheus, promql: &str, want: u64) {
    let want_text = want.to_string();
    let read = |r: &Vec<Value>| matches!(r.as_slice(), [one] if one["value"][1].as_str() == Some(want_text.as_str()));
    let start = Instant::now();
    let mut last = Vec::new();
    while start.elapsed() < prometheus::WAIT {
        last = prometheus.query(promql);
        if read(&last) {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{promql}: want one series at {want}, Prometheus has {last:?}");
}

fn data(prometheus: &Prometheus, promql: &str, what: &str) -> Vec<Value> {
    prometheus
        .wait_for_data(promql)
        .unwrap_or_else(|e| panic!("{what}: {e}\n{}", prometheus.log()))
}

fn start() -> (Echo, Envoy) {
    require_artefacts();
    let echo = Echo::start();
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut bootstrap = Bootstrap::new(echo.port()).cluster(IDP_CLUSTER, closed);
    bootstrap = common::all_stages(bootstrap, &policy());
    // As `tollgate envoy` renders them for a policy with limits and audit.
    bootstrap.limit_tag = true;
    bootstrap.cause_tag = true;
    let envoy = Envoy::start(&bootstrap.to_json());
    (echo, envoy)
}

/// The fused filter delivered by ECDS under Istio's name for a WasmPlugin.
struct EcdsEnvoy {
    _echo: Echo,
    file: WatchedFile,
    typed: Value,
    envoy: Envoy,
}

impl EcdsEnvoy {
    fn start() -> EcdsEnvoy {
        let echo = Echo::start();
        let mut bootstrap = Bootstrap::new(echo.port());
        bootstrap.delivery = Delivery::Fused;
        let good = json!({"version": 1, "routes": [{"name": "all", "match": {"prefix": "/"}}]});
        let mut json = bootstrap
            .filter(Filter::tollgate("tollgate.tenant", &paths::module_wasm(), &good))
            .to_json();
        xds::http_filter(&mut json, "tollgate").unwrap()["name"] = json!(ECDS_NAME);
        let typed = xds::http_filter(&mut json, ECDS_NAME).unwrap()["typed_config"].clone();
        let file = WatchedFile::create("ecds.json", &xds::ecds_resources("1", ECDS_NAME, typed.clone())).unwrap();
        xds::deliver_by_ecds(&mut json, ECDS_NAME, &file).unwrap();
        let envoy = Envoy::start(&json);
        EcdsEnvoy {
            _echo: echo,
            file,
            typed,
            envoy,
        }
    }

    /// Pushes a policy the filter refuses: `config_fail` goes to 1.
    fn push_bad_policy(&self) {
        let mut bad = self.typed.clone();
        bad["config"]["configuration"]["value"] = json!(r#"{"version": 1, "routes": "not a list"}"#);
        self.file.replace(&xds::ecds_resources("2", ECDS_NAME, bad)).unwrap();
    }
}

/// Every query of the dashboard, with Grafana's variables as a user's
/// first look sets them (every namespace, a range the test's data fills).
fn dashboard_queries() -> Vec<(String, String)> {
    let path = paths::repo_root().join("grafana/tollgate.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$__range", "5m")
                .replace("$namespace", ".*");
            assert!(!expr.contains('$'), "a variable the test does not set: {expr}");
            queries.push((panel["title"].as_str().unwrap().to_string(), expr));
        }
    }
    queries
}

#[test]
fn prometheus_reads_every_stage_with_its_labels_and_values() {
    if Delivery::from_env() != Delivery::Fused || docker::container_mode().is_some() {
        println!("runs in the native fused run only");
        return;
    }
    if let Err(e) = paths::require(std::path::Path::new(prometheus::PROMETHEUS), "cargo xtask setup") {
        panic!("{e}");
    }
    let (_echo, envoy) = start();
    let ecds = EcdsEnvoy::start();
    let rules = paths::repo_root().join("prometheus/alerts.yaml");
    let targets = [
        (envoy.admin_addr(), NAMESPACE),
        (ecds.envoy.admin_addr(), ECDS_NAMESPACE),
    ];
    let prometheus = Prometheus::start(&targets, &[rules.as_path()], "1s", None).unwrap();
    // Both scraped before the traffic and the refused push, so that rates
    // and increases see them.
    data(&prometheus, "tollgate_jwt_denied", "the first scrape");
    data(
        &prometheus,
        r#"envoy_extension_config_discovery_http_filter_config_fail{extension_config="istio-system.tollgate"}"#,
        "the first scrape of the ECDS Envoy",
    );
    ecds.push_bad_policy();
    let send = |path: &str, headers: &[(&str, &str)]| {
        let request = headers.iter().fold(Request::get(path), |r, (n, v)| r.header(n, v));
        envoy.send(&request).status
    };
    assert_eq!(send("/jwt", &[]), 401);
    assert_eq!(send("/jwt", &[("authorization", "Bearer x.y.z")]), 401);
    assert_eq!(send("/tenant", &[]), 400);
    assert_eq!(send("/tenant", &[("x-tenant-id", "NOPE")]), 403);
    assert_eq!(send("/tenant", &[("x-tenant-id", "ACME-1")]), 200);
    assert_eq!(send("/shadow", &[]), 200);
    assert_eq!(send("/limited", &[("x-tenant-id", "ACME-1")]), 200);
    assert_eq!(send("/limited", &[("x-tenant-id", "ACME-1")]), 429);
    assert_eq!(send("/slimit", &[("x-tenant-id", "GLOBEX_2")]), 200);
    assert_eq!(send("/slimit", &[("x-tenant-id", "GLOBEX_2")]), 200);
    let hs256 = format!("Bearer {}", hs256_token());
    assert_eq!(send("/jwt", &[("authorization", hs256.as_str())]), 200);
    assert_eq!(send("/shadow-jwt", &[]), 200);
    let bearer = tokens::bearer(&tokens::claims());
    assert_eq!(send("/jwks-down", &[("authorization", bearer.as_str())]), 503);
    let expected: [(&str, u64); 25] = [
        ("tollgate_jwt_allowed", 1),
        (r#"tollgate_jwt_shadow_denied{reason="token_missing"}"#, 1),
        // /jwt with a token without a tenant, /shadow-jwt.
        ("tollgate_tenant_allowed_without_tenant", 2),
        // Reached the stage and not refused, shadow refusals apart: /tenant,
        // /shadow, the first /limited and /slimit, /jwt, /shadow-jwt.
        ("tollgate_ratelimit_allowed", 6),
        (r#"tollgate_jwt_denied{reason="token_missing"}"#, 1),
        (r#"tollgate_jwt_denied{reason="token_malformed"}"#, 1),
        (r#"tollgate_jwt_denied{reason="jwks_unavailable"}"#, 1),
        ("tollgate_jwt_allowed_without_token", 8),
        (r#"tollgate_tenant_denied{reason="tenant_required"}"#, 1),
        (r#"tollgate_tenant_denied{reason="tenant_unknown"}"#, 1),
        (r#"tollgate_tenant_shadow_denied{reason="tenant_required"}"#, 1),
        ("tollgate_tenant_allowed", 5),
        (r#"tollgate_ratelimit_denied{reason="rate_limited"}"#, 1),
        (r#"tollgate_ratelimit_shadow_denied{reason="rate_limited"}"#, 1),
        (r#"tollgate_ratelimit_limit_limited{limit="api.v2-per-ip"}"#, 1),
        (r#"tollgate_ratelimit_limit_allowed{limit="api.v2-per-ip"}"#, 1),
        (r#"tollgate_ratelimit_limit_shadow_limited{limit="shadow.lim"}"#, 1),
        (r#"tollgate_ratelimit_limit_allowed{limit="shadow.lim"}"#, 1),
        (r#"tollgate_ratelimit_tenant_allowed{tenant="ACME-1"}"#, 1),
        (r#"tollgate_ratelimit_tenant_limited{tenant="ACME-1"}"#, 1),
        (r#"tollgate_ratelimit_tenant_allowed{tenant="GLOBEX_2"}"#, 1),
        (r#"tollgate_ratelimit_tenant_shadow_limited{tenant="GLOBEX_2"}"#, 1),
        ("tollgate_audit_events_emitted", 13),
        (r#"tollgate_audit_events_dropped{cause="buffer_full"}"#, 0),
        (
            r#"envoy_extension_config_discovery_http_filter_config_fail{extension_config="istio-system.tollgate"}"#,
            1,
        ),
    ];
    // The ECDS Envoy (namespace trino) runs the tenant stage too.
    let in_datahub = |promql: &str| match promql.split_once('{') {
        _ if !promql.starts_with("tollgate_") => promql.to_string(),
        Some((name, labels)) => format!("{name}{{namespace=\"{NAMESPACE}\",{labels}"),
        None => format!("{promql}{{namespace=\"{NAMESPACE}\"}}"),
    };
    for (promql, want) in expected {
        wait_for(&prometheus, &in_datahub(promql), want);
    }
    wait_for(&prometheus, &in_datahub("tollgate_audit_events_sent"), 13);
    // Prometheus knows them as counters (Envoy writes `# TYPE ... counter`),
    // without a `_total` suffix, and no label leaks a name's variable part.
    let metadata = Request::get("/api/v1/metadata?metric=tollgate_jwt_denied")
        .send(prometheus.addr)
        .unwrap();
    assert_eq!(
        metadata.json()["data"]["tollgate_jwt_denied"][0]["type"],
        "counter",
        "{}",
        metadata.text()
    );
    assert!(prometheus.query(r#"{__name__=~"tollgate_.*_total"}"#).is_empty());
    assert!(prometheus
        .query(r#"{__name__=~"tollgate_.*(rate_limited|token_missing|api_v2|acme|globex).*"}"#)
        .is_empty());
    assert!(prometheus
        .query(r#"{__name__=~"envoy_extension_config_discovery_.*tollgate.*_config_(fail|reload|conflict)"}"#)
        .is_empty());

    // Every rule loaded and healthy; every recording rule answers for
    // this traffic; the alerts this traffic should raise are raised.
    let rules = prometheus.rules().unwrap();
    assert_eq!(rules.len(), 19, "rules loaded: {rules:?}\n{}", prometheus.log());
    for rule in &rules {
        if rule.kind == "recording" {
            data(&prometheus, &rule.name, "recording rule");
        }
        assert!(prometheus.query_ok(&rule.query), "{rule:?}");
    }
    for rule in prometheus.rules().unwrap() {
        assert_eq!((rule.health.as_str(), rule.last_error.as_str()), ("ok", ""), "{rule:?}");
    }
    let raised = |alert: &str| -> Value {
        let rule = rules.iter().find(|r| r.name == alert).unwrap();
        data(&prometheus, &rule.query, alert)[0]["metric"].clone()
    };
    assert_eq!(raised("TollgateJwksUnavailable")["namespace"], NAMESPACE);
    let refused = raised("TollgatePolicyRefused");
    assert_eq!(
        (&refused["namespace"], &refused["extension_config"]),
        (&json!(ECDS_NAMESPACE), &json!(ECDS_NAME))
    );

    // The dashboard: no panel shows nothing.
    let queries = dashboard_queries();
    assert!(queries.len() > 30, "{} queries", queries.len());
    for (panel, promql) in &queries {
        data(&prometheus, promql, panel);
    }
    let namespaces = Request::get("/api/v1/label/namespace/values?match[]=%7B__name__%3D~%22tollgate_.%2A%22%7D")
        .send(prometheus.addr)
        .unwrap()
        .json();
    assert_eq!(
        namespaces["data"],
        json!([NAMESPACE, ECDS_NAMESPACE]),
        "the dashboard's namespace list"
    );
}
