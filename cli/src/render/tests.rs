#![allow(clippy::unwrap_used, clippy::indexing_slicing)]
use super::*;
use serde_json::json;

fn docs(text: &str) -> Vec<Value> {
    text.split("\n---\n")
        .skip(1)
        .map(|doc| serde_yaml_ng::from_str(doc).unwrap())
        .collect()
}

fn policy() -> Value {
    json!({
        "version": 1,
        "jwt": {"providers": [
            {"name": "idp", "issuer": "https://idp.example.com",
             "remote_jwks": {"uri": "https://idp.example.com/jwks.json",
                             "cluster": "outbound|443||idp.example.com"}},
            {"name": "internal", "issuer": "internal",
             "remote_jwks": {"uri": "http://keys.auth.svc.cluster.local/jwks",
                             "cluster": "outbound|80||keys.auth.svc.cluster.local"}}
        ]},
        "mesh": {
            "modes": {"jwt": "shadow", "tenant": "shadow"},
            "selector": {"tollgate": "on"},
            "namespaces": [{"name": "datahub", "modes": {"jwt": "enforce", "tenant": "enforce"}}]
        }
    })
}

/// Gateways and waypoints are attached by `targetRefs`, with no SERVER
/// match (Istio counts their listeners as CLIENT); the CRD's own checks
/// (one of selector or targetRefs, no cross-namespace reference) pass.
#[test]
fn target_refs_render_for_gateways_and_waypoints() {
    let mut policy = policy();
    policy["mesh"] = json!({
        "target_refs": [{"kind": "GatewayClass", "name": "istio-waypoint"}],
        "namespaces": [
            {"name": "datahub", "target_refs": [{"kind": "Gateway", "name": "waypoint"}]},
            {"name": "trino", "selector": {"app": "trino"}},
        ]
    });
    let files = render(&policy, &Options::default(), "policy.yaml").unwrap();
    let spec = |i: usize| docs(&files[i].text)[0]["spec"].clone();
    let (root, datahub, trino) = (spec(0), spec(1), spec(2));
    assert_eq!(
        root["targetRefs"],
        json!([{"group": "gateway.networking.k8s.io", "kind": "GatewayClass", "name": "istio-waypoint"}])
    );
    assert!(root.get("selector").is_none() && root.get("match").is_none());
    assert_eq!(datahub["targetRefs"][0]["name"], "waypoint");
    assert!(datahub.get("match").is_none());
    assert_eq!(trino["selector"], json!({"matchLabels": {"app": "trino"}}));
    assert_eq!(trino["match"], json!([{"mode": "SERVER"}]));
    assert!(trino.get("targetRefs").is_none());
}

#[test]
fn one_file_per_namespace_the_mesh_wide_one_first() {
    let files = render(&policy(), &Options::default(), "policy.yaml").unwrap();
    let names: Vec<_> = files.iter().map(Rendered::file).collect();
    assert_eq!(names, ["istio-system/tollgate.yaml", "datahub/tollgate.yaml"]);
    let mesh = docs(&files[0].text);
    let plugin = &mesh[0];
    assert_eq!(
        plugin["metadata"],
        json!({"name": "tollgate", "namespace": "istio-system"})
    );
    assert_eq!(plugin["spec"]["selector"], json!({"matchLabels": {"tollgate": "on"}}));
    assert_eq!(plugin["spec"]["match"], json!([{"mode": "SERVER"}]));
    assert_eq!(plugin["spec"]["pluginConfig"]["skip_namespaces"], json!(["datahub"]));
    assert_eq!(
        plugin["spec"]["pluginConfig"]["modes"],
        json!({"jwt": "shadow", "tenant": "shadow"})
    );
    let local = docs(&files[1].text);
    assert_eq!(local.len(), 1, "ServiceEntries live with the mesh-wide plugin only");
    assert_eq!(
        local[0]["spec"]["pluginConfig"]["modes"],
        json!({"jwt": "enforce", "tenant": "enforce"})
    );
    assert!(files[1]
        .text
        .contains("namespace datahub, instead of the mesh-wide plugin: jwt enforce, tenant enforce"));
}

#[test]
fn the_pin_pull_settings_and_fail_strategy_follow_the_options() {
    let sha = "ab".repeat(32);
    let options = |istio| Options {
        sha256: Some(sha.clone()),
        istio,
        pull_policy: "Always".into(),
        pull_secret: Some("registry-creds".into()),
        ..Options::default()
    };
    for (istio, strategy) in [
        ((1, 27), "FAIL_RELOAD"),
        ((1, 30), "FAIL_RELOAD"),
        ((1, 26), "FAIL_CLOSE"),
    ] {
        let files = render(&policy(), &options(istio), "p").unwrap();
        let spec = &docs(&files[0].text)[0]["spec"];
        assert_eq!(spec["failStrategy"], strategy, "Istio {istio:?}");
        assert_eq!(spec["sha256"], sha.as_str());
        assert_eq!(spec["imagePullPolicy"], "Always");
        assert_eq!(spec["imagePullSecret"], "registry-creds");
    }
    assert!(render(&policy(), &Options::default(), "p").unwrap()[0]
        .text
        .contains("url: oci://"));
    assert!(!render(&policy(), &Options::default(), "p").unwrap()[0]
        .text
        .contains("sha256"));
}

#[test]
fn istio_versions_are_read_and_old_ones_refused() {
    assert_eq!(parse_istio_version("1.27").unwrap(), (1, 27));
    assert_eq!(parse_istio_version("v1.28.2").unwrap(), (1, 28));
    assert!(parse_istio_version("1.21").unwrap_err().contains("older than 1.22"));
    assert!(parse_istio_version("one").unwrap_err().contains("not an Istio version"));
}

/// Istio orders plugins by phase (AUTHN, AUTHZ, STATS), then by priority,
/// higher first: that order must be the chain order the filters expect.
#[test]
fn phase_and_priority_give_the_documented_chain_order() {
    let options = Options {
        split: true,
        ..Options::default()
    };
    let files = render(&policy(), &options, "p").unwrap();
    let mut plugins: Vec<Value> = docs(&files[0].text)
        .into_iter()
        .filter(|d| d["kind"] == "WasmPlugin")
        .collect();
    let phase = |p: &Value| {
        ["AUTHN", "AUTHZ", "STATS"]
            .iter()
            .position(|x| p["spec"]["phase"] == *x)
            .unwrap()
    };
    plugins.sort_by_key(|p| (phase(p), -p["spec"]["priority"].as_i64().unwrap()));
    let order: Vec<_> = plugins
        .iter()
        .map(|p| p["spec"]["pluginName"].as_str().unwrap())
        .collect();
    assert_eq!(order, root_ids(true).collect::<Vec<_>>());
    assert_eq!(
        order,
        [
            "tollgate.jwt",
            "tollgate.tenant",
            "tollgate.ratelimit",
            "tollgate.audit"
        ]
    );
}

/// Alone, the audit stage runs after the deciding filters (STATS), as the
/// registry says, and reads their decisions from filter state.
#[test]
fn the_audit_stage_alone_is_a_plugin_of_its_own_in_the_stats_phase() {
    let options = Options {
        split: true,
        ..Options::default()
    };
    let files = render(
        &audited("outbound|8082||kafka-rest.kafka.svc.cluster.local"),
        &options,
        "p",
    )
    .unwrap();
    let mesh = docs(&files[0].text);
    let audit = mesh.iter().find(|d| d["metadata"]["name"] == "tollgate-audit").unwrap();
    assert_eq!(audit["spec"]["pluginName"], "tollgate.audit");
    assert_eq!(audit["spec"]["phase"], "STATS");
    assert_eq!(audit["spec"]["priority"], 100);
    assert_eq!(audit["spec"]["match"], json!([{"mode": "SERVER"}]));
    assert_eq!(audit["spec"]["pluginConfig"]["audit"]["sink"]["format"], "kafka-rest");
    assert_eq!(manifests::check_plugin(audit).unwrap(), Vec::<String>::new());
}

#[test]
fn a_jwks_host_outside_the_mesh_gets_a_service_entry_and_tls_origination() {
    let files = render(&policy(), &Options::default(), "p").unwrap();
    let mesh = docs(&files[0].text);
    let kinds: Vec<_> = mesh.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["WasmPlugin", "ServiceEntry", "DestinationRule"],
        "no entry for *.cluster.local"
    );
    assert_eq!(mesh[1]["spec"]["hosts"], json!(["idp.example.com"]));
    assert_eq!(mesh[1]["spec"]["ports"][0]["number"], 443);
    assert_eq!(
        mesh[2]["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"]["mode"],
        "SIMPLE"
    );
}

#[test]
fn a_jwks_cluster_a_sidecar_does_not_have_is_an_error_with_its_path() {
    let mut policy = policy();
    policy["jwt"]["providers"][0]["remote_jwks"]["cluster"] = json!("jwks");
    let error = render(&policy, &Options::default(), "p").unwrap_err();
    assert!(
        error.starts_with("jwt.providers[0].remote_jwks.cluster: 'jwks' is not an Istio cluster name"),
        "{error}"
    );
}

#[test]
fn the_example_policy_renders_and_every_plugin_fits_the_crd() {
    let text = include_str!("../../../wasmplugins/policy.yaml");
    let policy = crate::policy_file::check_policy(text).unwrap();
    for split in [false, true] {
        let files = render(
            &policy,
            &Options {
                split,
                ..Options::default()
            },
            "p",
        )
        .unwrap();
        for file in files {
            for doc in docs(&file.text).iter().filter(|d| d["kind"] == "WasmPlugin") {
                assert_eq!(manifests::check_plugin(doc).unwrap(), Vec::<String>::new());
                let config = serde_json::to_string(&doc["spec"]["pluginConfig"]).unwrap();
                tollgate_core::policy::Policy::from_json(config.as_bytes()).unwrap();
            }
        }
    }
}

/// The policy with a global limit counted by `cluster`.
fn limited(cluster: &str) -> Value {
    let mut policy = policy();
    policy["defaults"] = json!({"limits": [
        {"name": "per-tenant", "key": ["tenant"], "requests": 50, "period": "minute", "scope": "global"}
    ]});
    policy["ratelimit"] = json!({"service": {"cluster": cluster, "timeout_ms": 50}});
    policy
}

#[test]
fn a_rate_limit_service_outside_the_mesh_gets_a_grpc_service_entry() {
    let files = render(&limited("outbound|8081||rls.example.com"), &Options::default(), "p").unwrap();
    let mesh = docs(&files[0].text);
    let entry = mesh
        .iter()
        .find(|d| d["metadata"]["name"] == "tollgate-ratelimit-rls-example-com-8081")
        .unwrap();
    assert_eq!(entry["kind"], "ServiceEntry");
    assert_eq!(entry["spec"]["hosts"], json!(["rls.example.com"]));
    assert_eq!(
        entry["spec"]["ports"],
        json!([{"number": 8081, "name": "grpc-8081", "protocol": "GRPC"}])
    );
    for doc in mesh.iter().filter(|d| d["kind"] == "WasmPlugin") {
        assert_eq!(manifests::check_plugin(doc).unwrap(), Vec::<String>::new());
    }
    let inside = render(
        &limited("outbound|8081||ratelimit.infra.svc.cluster.local"),
        &Options::default(),
        "p",
    )
    .unwrap();
    let names: Vec<Value> = docs(&inside[0].text)
        .iter()
        .map(|d| d["metadata"]["name"].clone())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.as_str().unwrap().starts_with("tollgate-ratelimit")),
        "{names:?}"
    );
}

#[test]
fn a_rate_limit_cluster_a_sidecar_does_not_have_is_an_error_with_its_path() {
    let error = render(&limited("ratelimit"), &Options::default(), "p").unwrap_err();
    assert!(
        error.starts_with("ratelimit.service.cluster: 'ratelimit' is not an Istio cluster name"),
        "{error}"
    );
}

/// The registry's stages are the rollout modes' keys: `ratelimit` too.
#[test]
fn namespaces_roll_out_the_ratelimit_stage_too() {
    let mut policy = limited("outbound|8081||rls.example.com");
    policy["mesh"]["modes"]["ratelimit"] = json!("shadow");
    let files = render(&policy, &Options::default(), "p").unwrap();
    let root = &docs(&files[0].text)[0];
    assert_eq!(root["spec"]["pluginConfig"]["modes"]["ratelimit"], "shadow");
    assert!(files[0].text.contains("ratelimit shadow"), "{}", files[0].text);
    assert!(
        files[1].text.contains("ratelimit shadow"),
        "datahub inherits: {}",
        files[1].text
    );
}

/// The policy with an audit section whose sink is `cluster`.
fn audited(cluster: &str) -> Value {
    let mut policy = policy();
    policy["audit"] = json!({"sink": {"format": "kafka-rest", "cluster": cluster}});
    policy["routes"] = json!([{"name": "datahub", "match": {"prefix": "/api/datahub"},
                               "audit": {"event_type": "data_access"}}]);
    policy
}

#[test]
fn an_audit_sink_outside_the_mesh_gets_an_http_service_entry() {
    let files = render(
        &audited("outbound|8082||kafka-rest.example.com"),
        &Options::default(),
        "p",
    )
    .unwrap();
    let mesh = docs(&files[0].text);
    let entry = mesh
        .iter()
        .find(|d| d["metadata"]["name"] == "tollgate-audit-kafka-rest-example-com-8082")
        .unwrap();
    assert_eq!(entry["kind"], "ServiceEntry");
    assert_eq!(entry["metadata"]["namespace"], "istio-system");
    assert_eq!(entry["spec"]["hosts"], json!(["kafka-rest.example.com"]));
    assert_eq!(entry["spec"]["location"], "MESH_EXTERNAL");
    assert_eq!(
        entry["spec"]["ports"],
        json!([{"number": 8082, "name": "http-8082", "protocol": "HTTP"}])
    );
    assert_eq!(
        docs(&files[1].text).len(),
        1,
        "entries live with the mesh-wide plugin only"
    );
}

#[test]
fn an_audit_sink_in_the_mesh_or_a_logging_one_needs_no_entry() {
    let entries = |policy: &Value| -> Vec<Value> {
        let files = render(policy, &Options::default(), "p").unwrap();
        docs(&files[0].text)
            .into_iter()
            .filter(|d| d["metadata"]["name"].as_str().unwrap().starts_with("tollgate-audit"))
            .collect()
    };
    let inside = audited("outbound|8082||kafka-rest.kafka.svc.cluster.local");
    assert_eq!(entries(&inside), Vec::<Value>::new());
    let mut logged = audited("unused");
    logged["audit"]["sink"] = json!({"format": "log"});
    assert_eq!(entries(&logged), Vec::<Value>::new());
}

#[test]
fn an_audit_sink_cluster_a_sidecar_does_not_have_is_an_error_with_its_path() {
    let error = render(&audited("audit-sink"), &Options::default(), "p").unwrap_err();
    assert!(
        error.starts_with("audit.sink.cluster: 'audit-sink' is not an Istio cluster name"),
        "{error}"
    );
}
