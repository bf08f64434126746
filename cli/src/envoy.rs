//! `tollgate envoy`: an Envoy bootstrap with the filters, their
//! configuration and the clusters they call, for local testing.

use crate::render::{header, root_ids, to_yaml};
use serde_json::Value;
use std::path::PathBuf;
use tollgate_bootstrap::{Bootstrap, Delivery, Filter};

pub struct Options {
    /// tollgate.wasm as Envoy will find it (relative to Envoy's directory).
    pub wasm: PathBuf,
    pub listen_port: u16,
    pub admin_port: u16,
    pub upstream_port: u16,
    /// One filter per stage instead of the fused `tollgate` one.
    pub split: bool,
    /// Clusters the filters call (JWKS, ...): name and loopback port.
    pub clusters: Vec<(String, u16)>,
}

/// Envoy's own path normalization is on, as it should be in production.
/// Escaped slashes are refused (no component can then read `%2F` as a
/// separator, and no redirect a non-GET client would not follow), and so
/// are header names with `_`, which some servers read as `-`
/// (`x_tenant_id`).
pub fn bootstrap(policy: &Value, options: &Options, source: &str) -> Result<String, String> {
    // One Envoy is one workload: the policy as written, without the mesh layout.
    let config = crate::mesh::filter_config(policy);
    let mut bootstrap = Bootstrap::new(options.upstream_port);
    bootstrap.listen_port = options.listen_port;
    bootstrap.admin_port = options.admin_port;
    bootstrap.envoy_normalizes = true;
    bootstrap.escaped_slashes_action = Some("REJECT_REQUEST".into());
    bootstrap.underscores_action = Some("REJECT_REQUEST".into());
    bootstrap.delivery = Delivery::Split;
    for root_id in root_ids(options.split) {
        bootstrap = bootstrap.filter(Filter::tollgate(root_id, &options.wasm, &config));
    }
    for (name, port) in &options.clusters {
        bootstrap = bootstrap.cluster(name, *port);
    }
    if let Some(service) = ratelimit_cluster(&config, &options.clusters)? {
        bootstrap.http2_clusters.push(service);
    }
    bootstrap.limit_tag = has_limits(&config);
    // The sink stays HTTP/1.1, as the bootstrap's clusters are: the stage POSTs batches.
    check_sink_cluster(&config, &options.clusters)?;
    bootstrap.cause_tag = config["audit"].is_object();
    let mut out = header("Envoy bootstrap for local testing.", source);
    out.push_str(&to_yaml(&bootstrap.to_json())?);
    Ok(out)
}

/// The rate limit service's cluster, which must be one given: it speaks
/// gRPC, so the bootstrap makes it HTTP/2.
fn ratelimit_cluster(policy: &Value, clusters: &[(String, u16)]) -> Result<Option<String>, String> {
    let Some(cluster) = policy["ratelimit"]["service"]["cluster"].as_str() else {
        return Ok(None);
    };
    if !clusters.iter().any(|(name, _)| name == cluster) {
        return Err(format!(
            "ratelimit.service.cluster: '{cluster}' is not a cluster of this bootstrap: \
             give it with --cluster {cluster}=PORT"
        ));
    }
    Ok(Some(cluster.to_string()))
}

/// The audit sink's cluster must be one given (`format: log` has none).
fn check_sink_cluster(policy: &Value, clusters: &[(String, u16)]) -> Result<(), String> {
    let Some(cluster) = policy["audit"]["sink"]["cluster"].as_str() else {
        return Ok(());
    };
    if !clusters.iter().any(|(name, _)| name == cluster) {
        return Err(format!(
            "audit.sink.cluster: '{cluster}' is not a cluster of this bootstrap: \
             give it with --cluster '{cluster}=PORT'"
        ));
    }
    Ok(())
}

/// Whether the defaults or a route define limits (their counters then
/// get the `limit` tag).
pub(crate) fn has_limits(policy: &Value) -> bool {
    let some = |list: &Value| list.as_array().is_some_and(|l| !l.is_empty());
    let mut routes = policy["routes"].as_array().into_iter().flatten();
    some(&policy["defaults"]["limits"]) || routes.any(|r| some(&r["limits"]))
}

/// Writes the bootstrap to standard output.
pub fn run(policy: &std::path::Path, options: &Options) -> Result<(), String> {
    let value = crate::policy_file::load_policy(policy)?;
    print!("{}", bootstrap(&value, options, &policy.display().to_string())?);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use serde_json::json;

    fn options(clusters: &[(&str, u16)]) -> Options {
        Options {
            wasm: PathBuf::from("tollgate.wasm"),
            listen_port: 10000,
            admin_port: 9901,
            upstream_port: 18080,
            split: false,
            clusters: clusters.iter().map(|(n, p)| (n.to_string(), *p)).collect(),
        }
    }

    fn policy() -> Value {
        json!({
            "version": 1,
            "routes": [{"name": "api", "match": {"prefix": "/api"}, "limits": [
                {"name": "api-global", "key": ["route"], "requests": 5, "period": "second", "scope": "global"}
            ]}],
            "ratelimit": {"service": {"cluster": "ratelimit"}},
        })
    }

    #[test]
    fn the_rate_limit_cluster_must_be_given_and_speaks_http2() {
        let error = bootstrap(&policy(), &options(&[("jwks", 8082)]), "p").unwrap_err();
        assert!(
            error.starts_with("ratelimit.service.cluster: 'ratelimit' is not a cluster"),
            "{error}"
        );
        let text = bootstrap(&policy(), &options(&[("ratelimit", 8081), ("jwks", 8082)]), "p").unwrap();
        let json: Value = serde_yaml_ng::from_str(&text).unwrap();
        let clusters = json["static_resources"]["clusters"].as_array().unwrap();
        let protocol = |name: &str| {
            let cluster = clusters.iter().find(|c| c["name"] == name).unwrap();
            cluster.pointer("/typed_extension_protocol_options").is_some()
        };
        assert!(protocol("ratelimit"));
        assert!(!protocol("jwks"));
        let tags = json["stats_config"]["stats_tags"].as_array().unwrap();
        assert!(tags.iter().any(|t| t["tag_name"] == "limit"), "{tags:?}");
    }

    fn audited(sink: Value) -> Value {
        json!({"version": 1, "audit": {"sink": sink}})
    }

    #[test]
    fn the_audit_sink_cluster_must_be_given_and_speaks_http1() {
        let policy = audited(json!({"format": "jsonl", "cluster": "audit-sink"}));
        let error = bootstrap(&policy, &options(&[("jwks", 8082)]), "p").unwrap_err();
        assert!(
            error.starts_with("audit.sink.cluster: 'audit-sink' is not a cluster of this bootstrap"),
            "{error}"
        );
        assert!(error.contains("--cluster 'audit-sink=PORT'"), "{error}");
        let text = bootstrap(&policy, &options(&[("audit-sink", 8083)]), "p").unwrap();
        let json: Value = serde_yaml_ng::from_str(&text).unwrap();
        let clusters = json["static_resources"]["clusters"].as_array().unwrap();
        let sink = clusters.iter().find(|c| c["name"] == "audit-sink").unwrap();
        assert_eq!(sink.get("typed_extension_protocol_options"), None, "HTTP/1.1");
        assert_eq!(
            sink.pointer("/load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address/port_value"),
            Some(&json!(8083))
        );
        let tags = json["stats_config"]["stats_tags"].as_array().unwrap();
        assert!(tags.iter().any(|t| t["tag_name"] == "cause"), "{tags:?}");
    }

    #[test]
    fn a_logging_sink_needs_no_cluster() {
        let policy = audited(json!({"format": "log"}));
        let text = bootstrap(&policy, &options(&[]), "p").unwrap();
        let json: Value = serde_yaml_ng::from_str(&text).unwrap();
        let tags = json["stats_config"]["stats_tags"].as_array().unwrap();
        assert!(tags.iter().any(|t| t["tag_name"] == "cause"), "{tags:?}");
    }

    #[test]
    fn no_limits_no_limit_tag() {
        let plain = json!({"version": 1});
        let text = bootstrap(&plain, &options(&[]), "p").unwrap();
        let json: Value = serde_yaml_ng::from_str(&text).unwrap();
        let tags = json["stats_config"]["stats_tags"].as_array().unwrap();
        assert!(!tags.iter().any(|t| t["tag_name"] == "limit"));
        assert!(!tags.iter().any(|t| t["tag_name"] == "cause"), "no audit, no cause tag");
    }
}
