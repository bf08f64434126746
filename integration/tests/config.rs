//! Bad configuration: Envoy refuses the filter and the log names each field.

#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{require_artefacts, tenant_policy};
use serde_json::{json, Value};
use tollgate_integration::envoy::StartFailure;
use tollgate_integration::{paths, Bootstrap, Delivery, Echo, Envoy, Filter};

/// "<filter> rejected its configuration", as the delivery under test names it.
fn rejected(root_id: &str) -> String {
    format!("{} rejected its configuration", Delivery::from_env().name_of(root_id))
}

fn refused(root_id: &str, policy: &Value) -> StartFailure {
    require_artefacts();
    let echo = Echo::start();
    let bootstrap = Bootstrap::new(echo.port()).filter(Filter::tollgate(root_id, &paths::module_wasm(), policy));
    match Envoy::try_start(&bootstrap.to_json()) {
        Ok(envoy) => panic!("Envoy started with a bad filter config\n{}", envoy.log()),
        Err(failure) => failure,
    }
}

#[test]
fn a_bad_policy_is_refused_with_every_field_named() {
    let mut policy = tenant_policy();
    policy["routes"][0]["match"] = json!({"prefix": "api/datahub"});
    policy["tenants"][1]["status"] = json!("paused");
    policy["tenant"]["hedaer"] = json!("x-tenant");
    let failure = refused("tollgate.tenant", &policy);
    assert!(failure.reason.contains("exited"), "{}", failure.reason);
    let line = failure
        .log
        .lines()
        .find(|l| l.contains(&rejected("tollgate.tenant")))
        .unwrap_or_else(|| panic!("no rejection line in\n{}", failure.log));
    for expected in [
        "3 error(s)",
        "routes[0].match.prefix: 'api/datahub' must start with '/'",
        "tenants[1].status: unknown variant `paused`",
        "tenant.hedaer: unknown field",
    ] {
        assert!(line.contains(expected), "{expected:?} not in {line}");
    }
    let plugin = Delivery::from_env().name_of("tollgate.tenant");
    assert!(
        failure.log.contains(&format!("Plugin {plugin} failed to load")),
        "{}",
        failure.log
    );
}

#[test]
fn a_policy_that_is_not_json_is_refused() {
    require_artefacts();
    let echo = Echo::start();
    let mut filter = Filter::tollgate("tollgate.tenant", &paths::module_wasm(), &json!({}));
    filter.config = "version: 1\nroutes: []".into();
    let bootstrap = Bootstrap::new(echo.port()).filter(filter);
    let failure = match Envoy::try_start(&bootstrap.to_json()) {
        Ok(envoy) => panic!("Envoy started with a YAML config\n{}", envoy.log()),
        Err(failure) => failure,
    };
    assert!(
        failure
            .log
            .contains("rejected its configuration: 1 error(s) in policy: not valid JSON"),
        "{}",
        failure.log
    );
}

#[test]
fn an_unknown_root_id_is_refused() {
    let failure = refused("tollgate.nope", &tenant_policy());
    assert!(
        failure.log.contains("unknown root_id 'tollgate.nope'"),
        "{}",
        failure.log
    );
}

#[test]
fn an_ambiguous_policy_is_refused_with_every_field_named() {
    require_artefacts();
    let jwks: Value = serde_json::from_str(include_str!("../../tests/fixtures/keys/jwks.json")).unwrap();
    let mut policy = tenant_policy();
    // A tenant whose `routes:` was left empty in YAML: not every route.
    policy["tenants"][1]["routes"] = Value::Null;
    policy["jwt"] = json!({"providers": [{
        "name": "p",
        "issuer": "i",
        "clock_skew_seconds": u64::MAX,
        "local_jwks": {"keys": [jwks["keys"][0], {"kty": "RSA", "n": "", "e": "AQAB"}]},
    }]});
    // serde_json::Value cannot hold a repeated key: add one to the text.
    let text = policy
        .to_string()
        .replacen(r#""realm":"#, r#""realm":"first","realm":"#, 1);
    let echo = Echo::start();
    let mut filter = Filter::tollgate("tollgate.jwt", &paths::module_wasm(), &json!({}));
    filter.config = text;
    let bootstrap = Bootstrap::new(echo.port()).filter(filter);
    let failure = match Envoy::try_start(&bootstrap.to_json()) {
        Ok(envoy) => panic!("Envoy started with an ambiguous policy\n{}", envoy.log()),
        Err(failure) => failure,
    };
    let line = failure
        .log
        .lines()
        .find(|l| l.contains(&rejected("tollgate.jwt")))
        .unwrap_or_else(|| panic!("no rejection line in\n{}", failure.log));
    for expected in [
        "4 error(s)",
        "realm: duplicate key",
        "tenants[1].routes: null is not allowed: leave the field out or give a value",
        "jwt.providers[0].clock_skew_seconds: must be 0 to 300, not 18446744073709551615",
        "jwt.providers[0].local_jwks.keys[1]: RSA modulus of 0 bits; 2048 to 4096 accepted",
    ] {
        assert!(line.contains(expected), "{expected:?} not in {line}");
    }
}
