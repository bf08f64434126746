//! Staged rollout in a real Envoy 1.40: `modes` puts a whole stage in
//! shadow, and a mesh-wide plugin stands aside in a namespace with its own
//! (`skip_namespaces`, read from `node.metadata.NAMESPACE` as Istio sets it).

#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{counter, require_artefacts, tenant_policy};
use serde_json::{json, Value};
use tollgate_integration::{paths, Bootstrap, Echo, Envoy, Filter, Request};

fn start(policy: &Value, namespace: Option<&str>) -> (Echo, Envoy) {
    require_artefacts();
    let echo = Echo::start();
    let mut bootstrap = Bootstrap::new(echo.port());
    bootstrap.node_metadata = namespace.map(|ns| json!({"NAMESPACE": ns}));
    bootstrap = bootstrap.filter(Filter::tollgate("tollgate.tenant", &paths::module_wasm(), policy));
    (echo, Envoy::start(&bootstrap.to_json()))
}

/// No tenant on a route that requires one: refused when enforced.
fn untenanted() -> Request {
    Request::get("/api/datahub/entities")
}

#[test]
fn the_plugin_stands_aside_only_in_the_namespaces_it_skips() {
    let mut policy = tenant_policy();
    policy["skip_namespaces"] = json!(["datahub", "trino"]);
    let (_echo, envoy) = start(&policy, Some("datahub"));
    let response = envoy.send(&untenanted());
    assert_eq!(response.status, 200, "{}\n{}", response.text(), envoy.log());
    assert_eq!(counter(&envoy, "denied.tenant_required"), 0);
    assert!(envoy.log().contains("stands aside"), "{}", envoy.log());

    for namespace in [Some("superset"), None] {
        let (_echo, envoy) = start(&policy, namespace);
        let response = envoy.send(&untenanted());
        assert_eq!(response.status, 400, "namespace {namespace:?}: {}", response.text());
    }
}

#[test]
fn a_stage_in_shadow_counts_its_denials_and_lets_requests_through() {
    let mut policy = tenant_policy();
    policy["modes"] = json!({"tenant": "shadow"});
    let (_echo, envoy) = start(&policy, None);
    let response = envoy.send(&untenanted());
    assert_eq!(response.status, 200, "{}", response.text());
    let response = envoy.send(&Request::get("/api/datahub").header("x-tenant-id", "OLD-001"));
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(counter(&envoy, "shadow_denied.tenant_required"), 1);
    assert_eq!(counter(&envoy, "shadow_denied.tenant_suspended"), 1);
}
