//! What Istio needs to show Tollgate's counters to Prometheus with their
//! tags: sidecars keep only the stats `proxyStatsMatcher` includes, and
//! custom tag regexes reach Envoy only through a bootstrap override
//! (`sidecar.istio.io/bootstrapOverride`, a ConfigMap in the pod's
//! namespace whose `custom_bootstrap.json` Envoy merges into its bootstrap;
//! `extraStatTags` only names tags of Istio's own `istio_*` metrics).

use super::{header, to_yaml};
use serde_json::{json, Value};

/// The ConfigMap the pods' `sidecar.istio.io/bootstrapOverride` names.
pub const OVERRIDE_CONFIGMAP: &str = "tollgate-stats-tags";
/// Envoy names a wasm counter `wasmcustom.<name>`; ours start `tollgate.`.
pub const STATS_PREFIX: &str = "wasmcustom.tollgate.";
/// Envoy's counters of ECDS updates, `config_fail` among them: the only
/// sign in Prometheus that a sidecar refused a policy.
pub const ECDS_PREFIX: &str = "extension_config_discovery.http_filter.";

/// `(file, text)`: the ConfigMap, the pod annotations and the `meshConfig`
/// fragment, written beside the WasmPlugins.
pub fn render(policy: &Value, source: &str) -> Result<Vec<(String, String)>, String> {
    let config = crate::mesh::filter_config(policy);
    let tags = tollgate_bootstrap::stats_tags(crate::envoy::has_limits(&config), config["audit"].is_object());
    let bootstrap =
        serde_json::to_string_pretty(&json!({"stats_config": {"stats_tags": tags}})).map_err(|e| e.to_string())?;
    let configmap = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": OVERRIDE_CONFIGMAP},
        "data": {"custom_bootstrap.json": bootstrap},
    });
    let matcher = json!({"proxyStatsMatcher": {"inclusionPrefixes": [STATS_PREFIX, ECDS_PREFIX]}});
    let annotations = json!({"metadata": {"annotations": {
        "proxy.istio.io/config": to_yaml(&matcher)?,
        "sidecar.istio.io/bootstrapOverride": OVERRIDE_CONFIGMAP,
    }}});
    let mesh = json!({"meshConfig": {"defaultConfig": matcher}});
    let file = |what: &str, doc: &Value| -> Result<String, String> {
        Ok(format!("{}---\n{}", header(what, source), to_yaml(doc)?))
    };
    Ok(vec![
        (
            "stats-bootstrap-override.yaml".into(),
            file(
                "Envoy stats tags (reason, limit, tenant, cause, extension_config) for Tollgate's counters: apply in each workload's \
                 namespace (kubectl apply -n NAMESPACE -f); the pods name it in sidecar.istio.io/bootstrapOverride",
                &configmap,
            )?,
        ),
        (
            "stats-pod-annotations.yaml".into(),
            file(
                "Pod template annotations: keep Tollgate's counters in the sidecar's /stats/prometheus, \
                 with their tags (needs stats-bootstrap-override.yaml in the pod's namespace)",
                &annotations,
            )?,
        ),
        (
            "stats-mesh-config.yaml".into(),
            file(
                "Mesh-wide instead of the proxy.istio.io/config annotation: merge into the IstioOperator's \
                 spec (or the istiod chart's values); the tags still need the bootstrap override",
                &mesh,
            )?,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_override_carries_the_bootstrap_tags_and_the_matcher_keeps_our_counters() {
        let policy: Value = serde_json::from_str(
            r#"{"version":1,"routes":[{"name":"r","match":{"prefix":"/"},"limits":[{"name":"a-b.c","requests":1,"period":"1s"}]}]}"#,
        )
        .unwrap();
        let files = render(&policy, "p.yaml").unwrap();
        let names: Vec<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            names,
            [
                "stats-bootstrap-override.yaml",
                "stats-pod-annotations.yaml",
                "stats-mesh-config.yaml"
            ]
        );
        let doc = |i: usize| -> Value { serde_yaml_ng::from_str(files[i].1.split("---\n").nth(1).unwrap()).unwrap() };
        let merged: Value = serde_json::from_str(doc(0)["data"]["custom_bootstrap.json"].as_str().unwrap()).unwrap();
        assert_eq!(
            merged["stats_config"]["stats_tags"],
            tollgate_bootstrap::stats_tags(true, false)
        );
        let annotations = &doc(1)["metadata"]["annotations"];
        assert_eq!(annotations["sidecar.istio.io/bootstrapOverride"], OVERRIDE_CONFIGMAP);
        let proxy: Value = serde_yaml_ng::from_str(annotations["proxy.istio.io/config"].as_str().unwrap()).unwrap();
        assert_eq!(proxy, doc(2)["meshConfig"]["defaultConfig"]);
        let prefixes = &proxy["proxyStatsMatcher"]["inclusionPrefixes"];
        assert!("wasmcustom.tollgate.ratelimit.limit.a-b.c.allowed".starts_with(prefixes[0].as_str().unwrap()));
        assert!(
            "extension_config_discovery.http_filter.istio-system.tollgate.config_fail"
                .starts_with(prefixes[1].as_str().unwrap())
        );
    }
}
