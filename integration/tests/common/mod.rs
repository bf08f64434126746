//! Fixtures shared by the integration tests.
#![allow(dead_code)]

pub mod audit;
pub mod load;
pub mod ratelimit;
pub mod tokens;

use serde_json::{json, Value};
use tollgate_integration::{docker, paths, Bootstrap, Delivery, Echo, Envoy, Filter, Response};

/// Tests of a format, a sink or a tool rather than of the delivery: they
/// run in the native fused run only.
pub fn once_per_suite() -> bool {
    let once = Delivery::from_env() == Delivery::Fused && docker::container_mode().is_none();
    if !once {
        println!("runs in the native fused run only");
    }
    once
}

/// `bootstrap` with the jwt, tenant, rate limit and audit filters over
/// `policy` (fused when `TOLLGATE_DELIVERY=fused`).
pub fn all_stages(mut bootstrap: Bootstrap, policy: &Value) -> Bootstrap {
    for root_id in [
        "tollgate.jwt",
        "tollgate.tenant",
        "tollgate.ratelimit",
        "tollgate.audit",
    ] {
        bootstrap = bootstrap.filter(Filter::tollgate(root_id, &paths::module_wasm(), policy));
    }
    bootstrap
}

/// Fails (never skips) when an artefact is missing, naming the command.
pub fn require_artefacts() {
    for (path, how) in [
        (paths::module_wasm(), "cargo xtask build"),
        (paths::state_setter_wasm(), "cargo xtask build"),
        (paths::envoy_binary(), "cargo xtask setup"),
    ] {
        if let Err(e) = paths::require(&path, how) {
            panic!("{e}");
        }
    }
}

/// The tenant filter alone, or behind the test filter that writes
/// `tollgate.tenant` to filter state as the jwt filter will.
pub fn start(policy: &Value, with_state_setter: bool) -> (Echo, Envoy) {
    require_artefacts();
    let echo = Echo::start();
    let mut bootstrap = Bootstrap::new(echo.port());
    if with_state_setter {
        bootstrap = bootstrap.filter(Filter {
            name: "state-setter".into(),
            root_id: String::new(),
            wasm: paths::state_setter_wasm().display().to_string(),
            config: String::new(),
            original: None,
        });
    }
    bootstrap = bootstrap.filter(Filter::tollgate("tollgate.tenant", &paths::module_wasm(), policy));
    let envoy = Envoy::start(&bootstrap.to_json());
    (echo, envoy)
}

/// A policy covering every tenant outcome.
pub fn tenant_policy() -> Value {
    json!({
        "version": 1,
        "realm": "tollgate-test",
        "routes": [
            {"name": "datahub", "match": {"prefix": "/api/datahub"}, "tenant": {"required": true}},
            {"name": "trino", "match": {"prefix": "/api/trino"}, "tenant": {"required": true, "missing_status": 401}},
            {"name": "superset", "match": {"prefix": "/api/superset"}, "tenant": {"required": true, "mode": "shadow"}},
            {"name": "open", "match": {"prefix": "/open"}},
        ],
        "tenants": [
            {"id": "STD-001", "tier": "premium"},
            {"id": "NED-001", "tier": "standard", "routes": ["datahub", "open"]},
            {"id": "OLD-001", "status": "suspended"},
        ],
        "tenant": {
            "sources": ["claim", "header", "host", "path"],
            "host": "{tenant}.tenants.example.com",
            "path_prefix": "/t/{tenant}",
        },
    })
}

/// Every value of a header the echo upstream received.
pub fn upstream_values(response: &Response, name: &str) -> Vec<String> {
    response.json()["headers"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|h| h[0] == name)
                .filter_map(|h| h[1].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

pub fn counter(envoy: &Envoy, name: &str) -> u64 {
    let stat = format!("wasmcustom.tollgate.tenant.{name}");
    match envoy.stat(&stat) {
        Some(value) => value,
        None => panic!("Envoy has no stat {stat}"),
    }
}

/// A tenant denial case: path, headers, status, reason.
pub type TenantCase = (&'static str, Vec<(&'static str, String)>, u16, &'static str);

/// Every denial of the tenant filter under `tenant_policy()`: the HTTP/1.1
/// and the h2c tests send the same table.
pub fn tenant_denials() -> Vec<TenantCase> {
    vec![
        ("/api/datahub", vec![], 400, "tenant_required"),
        ("/api/trino", vec![], 401, "tenant_required"),
        (
            "/api/datahub",
            vec![("x-tenant-id", "GLOBEX".to_string())],
            403,
            "tenant_unknown",
        ),
        (
            "/api/datahub",
            vec![("x-tenant-id", "OLD-001".to_string())],
            403,
            "tenant_suspended",
        ),
        (
            "/api/trino",
            vec![("x-tenant-id", "NED-001".to_string())],
            403,
            "tenant_route_forbidden",
        ),
        (
            "/api/datahub",
            vec![("x-tenant-id", "no spaces".to_string())],
            400,
            "tenant_invalid",
        ),
        (
            "/api/datahub",
            vec![("x-tenant-id", "A".repeat(65))],
            400,
            "tenant_invalid",
        ),
        (
            "/api/datahub",
            vec![
                ("x-tenant-id", "STD-001".to_string()),
                ("x-tenant-id", "NED-001".to_string()),
            ],
            403,
            "tenant_mismatch",
        ),
        (
            "/api/datahub",
            vec![
                ("host", "std-001.tenants.example.com".to_string()),
                ("x-tenant-id", "NED-001".to_string()),
            ],
            403,
            "tenant_mismatch",
        ),
        (
            "/t/STD-001/api/datahub",
            vec![("x-tenant-id", "NED-001".to_string())],
            403,
            "tenant_mismatch",
        ),
    ]
}
