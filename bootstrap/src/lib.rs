//! Envoy bootstraps as JSON values: one listener with an HTTP connection
//! manager, a chain of wasm filters, the router, and an upstream cluster.

use serde_json::{json, Value};
use std::path::Path;

/// Sets `value` at `path` in `json`, making objects on the way (a
/// non-object on the way is replaced): never panics, unlike `json[key] =`.
fn set(json: &mut Value, path: &[&str], value: Value) {
    let mut at = json;
    for key in path {
        if !at.is_object() {
            *at = Value::Object(serde_json::Map::new());
        }
        let Value::Object(map) = at else { return };
        at = map.entry(key.to_string()).or_insert(Value::Null);
    }
    *at = value;
}

/// One wasm filter in the chain.
#[derive(Debug, Clone)]
pub struct Filter {
    /// Envoy filter name and plugin name.
    pub name: String,
    /// Picks the filter inside `tollgate.wasm` (Istio: `pluginName`).
    pub root_id: String,
    pub wasm: String,
    /// Plugin configuration: the policy as JSON text.
    pub config: String,
    /// For a fused filter: the policy before `stages` was added.
    pub original: Option<String>,
}

impl Filter {
    pub fn tollgate(root_id: &str, wasm: &Path, policy: &Value) -> Filter {
        Filter {
            name: root_id.to_string(),
            root_id: root_id.to_string(),
            wasm: wasm.display().to_string(),
            config: policy.to_string(),
            original: None,
        }
    }

    /// A test-only filter that needs no root id nor configuration.
    pub fn test_only(name: &str, wasm: &Path) -> Filter {
        Filter {
            name: name.to_string(),
            root_id: String::new(),
            wasm: wasm.display().to_string(),
            config: String::new(),
            original: None,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": self.name,
                    "root_id": self.root_id,
                    "configuration": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": self.config,
                    },
                    // Same VM config for every plugin of a module: one VM per
                    // worker, shared by them (Istio sets no vm_id either).
                    "vm_config": {
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": {"local": {"filename": self.wasm}},
                    },
                },
            },
        })
    }
}

/// How Tollgate's filters are delivered: one plugin per filter (`split`),
/// or the one `tollgate` plugin running them as stages (`fused`). Tests
/// build split chains; `TOLLGATE_DELIVERY=fused` runs them fused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Split,
    Fused,
}

impl Delivery {
    pub fn from_env() -> Delivery {
        match std::env::var("TOLLGATE_DELIVERY").as_deref() {
            Ok("fused") => Delivery::Fused,
            _ => Delivery::Split,
        }
    }

    /// The name Envoy and the filter's log use for a split filter's root id.
    pub fn name_of(self, root_id: &str) -> &str {
        match self {
            Delivery::Fused if root_id.starts_with("tollgate.") => "tollgate",
            _ => root_id,
        }
    }
}

/// Each run of consecutive `tollgate.<stage>` filters with one policy as
/// one `tollgate` filter whose policy lists those stages.
pub fn fuse(filters: &[Filter]) -> Vec<Filter> {
    let mut out: Vec<Filter> = Vec::new();
    let mut stages: Vec<String> = Vec::new();
    for filter in filters {
        let stage = tollgate_core::stage::by_root_id(&filter.root_id).map(|s| s.key);
        let Some(stage) = stage else {
            stages.clear();
            out.push(filter.clone());
            continue;
        };
        let open = !stages.is_empty();
        // Filters with another policy start a fused filter of their own.
        let same_policy = |f: &Filter| f.original.as_deref() == Some(filter.config.as_str());
        if let Some(last) = out
            .last_mut()
            .filter(|f| open && f.root_id == tollgate_core::stage::FUSED_ROOT_ID && same_policy(f))
        {
            let original = last.original.clone().unwrap_or_default();
            stages.push(stage.to_string());
            last.config = with_stages(&original, &stages);
        } else {
            stages = vec![stage.to_string()];
            out.push(Filter {
                name: "tollgate".into(),
                root_id: "tollgate".into(),
                wasm: filter.wasm.clone(),
                config: with_stages(&filter.config, &stages),
                original: Some(filter.config.clone()),
            });
        }
    }
    out
}

/// The policy with `stages` set, unless it is not a JSON object (a test of
/// bad configuration: left as it is) or lists its own. Inserted as text, so
/// a repeated key a test wrote stays in.
fn with_stages(config: &str, stages: &[String]) -> String {
    let is_object = matches!(serde_json::from_str::<Value>(config), Ok(Value::Object(_)));
    let listed = serde_json::from_str::<Value>(config).is_ok_and(|v| v.get("stages").is_some());
    match config.trim_start().strip_prefix('{') {
        Some(rest) if is_object && !listed => {
            let comma = if rest.trim_start().starts_with('}') { "" } else { "," };
            format!("{{\"stages\":{}{comma}{rest}", json!(stages))
        }
        _ => config.to_string(),
    }
}

#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub listen_port: u16,
    pub admin_port: u16,
    pub upstream_port: u16,
    pub filters: Vec<Filter>,
    /// Envoy's own path normalization; off in tests so ours is what is tested.
    pub envoy_normalizes: bool,
    /// `path_with_escaped_slashes_action` (`REJECT_REQUEST`, ...); `None`
    /// keeps Envoy's default (`KEEP_UNCHANGED`).
    pub escaped_slashes_action: Option<String>,
    /// `common_http_protocol_options.headers_with_underscores_action`;
    /// `None` keeps Envoy's default `ALLOW`, so Tollgate's own header
    /// stripping is what tests see.
    pub underscores_action: Option<String>,
    /// More clusters on 127.0.0.1, by name and port (JWKS servers, sinks).
    pub clusters: Vec<(String, u16)>,
    /// Those of `clusters` that speak HTTP/2 with prior knowledge: gRPC
    /// services (the rate limit service).
    pub http2_clusters: Vec<String>,
    /// Per-limit counters get their limit's name as the `limit` tag
    /// (`tollgate_core::ratelimit::LIMIT_TAG_REGEX`).
    pub limit_tag: bool,
    /// Audit drops get their cause as the `cause` tag
    /// (`tollgate_core::audit::DROP_CAUSE_TAG_REGEX`).
    pub cause_tag: bool,
    /// Envoy's own HTTP filters (JSON), placed before the wasm filters.
    pub native_filters: Vec<Value>,
    /// The route answers 200 itself instead of going upstream (the bench).
    pub direct_response: bool,
    /// A JSON file access log on the connection manager, to this path.
    pub access_log: Option<String>,
    pub delivery: Delivery,
    /// `node.metadata` (Istio sets `NAMESPACE`, `WORKLOAD_NAME`, ...).
    pub node_metadata: Option<Value>,
    /// The `upstream` cluster speaks HTTP/2 with prior knowledge (h2c), as
    /// a gRPC server does; `false` (the default): HTTP/1.1. Downstream, the
    /// connection manager's `codec_type` is left at its default, `AUTO`,
    /// which takes HTTP/1.1 and prior-knowledge h2c on the same listener.
    pub upstream_http2: bool,
    /// The listener comes from this file by LDS (`path_config_source`,
    /// its directory watched) instead of `static_resources`; the file is
    /// what `lds_resources` gives (see `xds::WatchedFile`).
    pub lds_path: Option<String>,
}

impl Bootstrap {
    /// Ports 0: Envoy picks them, the harness asks the admin API which.
    pub fn new(upstream_port: u16) -> Bootstrap {
        Bootstrap {
            listen_port: 0,
            admin_port: 0,
            upstream_port,
            filters: Vec::new(),
            envoy_normalizes: false,
            escaped_slashes_action: None,
            underscores_action: None,
            clusters: Vec::new(),
            http2_clusters: Vec::new(),
            limit_tag: false,
            cause_tag: false,
            native_filters: Vec::new(),
            direct_response: false,
            access_log: None,
            delivery: Delivery::from_env(),
            node_metadata: None,
            lds_path: None,
            upstream_http2: false,
        }
    }

    pub fn filter(mut self, filter: Filter) -> Bootstrap {
        self.filters.push(filter);
        self
    }

    pub fn cluster(mut self, name: &str, port: u16) -> Bootstrap {
        self.clusters.push((name.to_string(), port));
        self
    }

    pub fn to_json(&self) -> Value {
        let mut upstream = cluster("upstream", self.upstream_port);
        if self.upstream_http2 {
            http2(&mut upstream);
        }
        let mut clusters = vec![upstream];
        for (name, port) in &self.clusters {
            let mut more = cluster(name, *port);
            if self.http2_clusters.contains(name) {
                http2(&mut more);
            }
            clusters.push(more);
        }
        let mut bootstrap = json!({
            "admin": {"address": socket(self.admin_port)},
            "stats_config": {"stats_tags": stats_tags(self.limit_tag, self.cause_tag)},
            "static_resources": {"clusters": clusters},
        });
        match &self.lds_path {
            Some(path) => {
                let dir = Path::new(path)
                    .parent()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default();
                let lds = json!({"lds_config": {
                    "resource_api_version": "V3",
                    "path_config_source": {"path": path, "watched_directory": {"path": dir}},
                }});
                set(&mut bootstrap, &["dynamic_resources"], lds);
            }
            None => set(
                &mut bootstrap,
                &["static_resources", "listeners"],
                json!([self.listener()]),
            ),
        }
        // xDS needs a node id and cluster, even from a file.
        if self.node_metadata.is_some() || self.lds_path.is_some() {
            set(
                &mut bootstrap,
                &["node"],
                json!({"id": "tollgate-test", "cluster": "tollgate-test"}),
            );
        }
        if let Some(metadata) = &self.node_metadata {
            set(&mut bootstrap, &["node", "metadata"], metadata.clone());
        }
        bootstrap
    }

    /// The file LDS reads: a discovery response holding the listener.
    pub fn lds_resources(&self, version: &str) -> Value {
        let mut listener = self.listener();
        set(
            &mut listener,
            &["@type"],
            json!("type.googleapis.com/envoy.config.listener.v3.Listener"),
        );
        json!({"version_info": version, "resources": [listener]})
    }

    /// The `ingress` listener: the connection manager and its filters.
    pub fn listener(&self) -> Value {
        let mut http_filters = self.native_filters.clone();
        let filters = match self.delivery {
            Delivery::Split => self.filters.clone(),
            Delivery::Fused => fuse(&self.filters),
        };
        http_filters.extend(filters.iter().map(Filter::to_json));
        http_filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }));
        let mut manager = json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "ingress",
            "normalize_path": self.envoy_normalizes,
            "merge_slashes": self.envoy_normalizes,
            "route_config": {"virtual_hosts": [{
                "name": "all",
                "domains": ["*"],
                "routes": [self.route()],
            }]},
            "http_filters": http_filters,
        });
        if let Some(action) = &self.escaped_slashes_action {
            set(&mut manager, &["path_with_escaped_slashes_action"], json!(action));
        }
        if let Some(action) = &self.underscores_action {
            set(
                &mut manager,
                &["common_http_protocol_options"],
                json!({"headers_with_underscores_action": action}),
            );
        }
        if let Some(path) = &self.access_log {
            set(&mut manager, &["access_log"], json_access_log(path));
        }
        json!({
            "name": "ingress",
            "address": socket(self.listen_port),
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": manager,
            }]}],
        })
    }
}

impl Bootstrap {
    fn route(&self) -> Value {
        if self.direct_response {
            json!({"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}})
        } else {
            json!({"match": {"prefix": "/"}, "route": {"cluster": "upstream"}})
        }
    }
}

fn json_access_log(path: &str) -> Value {
    json!([{
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path,
            "log_format": {"json_format": {
                "start_time": "%START_TIME%",
                "method": "%REQ(:METHOD)%",
                "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
                "status": "%RESPONSE_CODE%",
                "duration_ms": "%DURATION%",
                "tenant": "%REQ(X-TENANT-ID)%",
                "request_id": "%REQ(X-REQUEST-ID)%",
            }},
        },
    }])
}

/// HTTP/2 with prior knowledge (h2c), as gRPC servers speak it.
fn http2(cluster: &mut Value) {
    set(
        cluster,
        &["typed_extension_protocol_options"],
        json!({"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        }}),
    );
}

fn cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket(port)}}]}],
        },
    })
}

fn socket(port: u16) -> Value {
    json!({"socket_address": {"address": "127.0.0.1", "port_value": port}})
}

/// Turns `wasmcustom.tollgate.tenant.denied.tenant_unknown` into the metric
/// `tollgate.tenant.denied` with tag `reason="tenant_unknown"` for Prometheus;
/// with `limit_tag`, `wasmcustom.tollgate.ratelimit.limit.<name>.allowed`
/// into `tollgate.ratelimit.limit.allowed` with tag `limit="<name>"` (and
/// `...ratelimit.tenant.<id>.allowed` likewise with tag `tenant`);
/// with `cause_tag`, `wasmcustom.tollgate.audit.events_dropped.buffer_full`
/// into `tollgate.audit.events_dropped` with tag `cause="buffer_full"`.
/// Public: `tollgate render` puts the same tags in Istio's bootstrap override.
/// The name of a filter configuration delivered by ECDS (Istio names a
/// WasmPlugin's `<namespace>.<name>`) out of Envoy's own counters of its
/// updates, so that one alert reads `config_fail` for every plugin:
/// `extension_config_discovery.http_filter.istio-system.tollgate.config_fail`
/// becomes `envoy_extension_config_discovery_http_filter_config_fail
/// {extension_config="istio-system.tollgate"}`.
pub const EXTENSION_CONFIG_TAG_REGEX: &str =
    r"^extension_config_discovery\.http_filter\.((.+)\.)(?:config_reload|config_fail|config_conflict)$";

pub fn stats_tags(limit_tag: bool, cause_tag: bool) -> Value {
    let mut tags = vec![json!({
        "tag_name": "reason",
        "regex": r"^wasmcustom\.tollgate\.\w+\.(?:shadow_)?denied(\.(\w+))$",
    })];
    if limit_tag {
        tags.push(json!({"tag_name": "limit", "regex": tollgate_core::ratelimit::LIMIT_TAG_REGEX}));
        tags.push(json!({"tag_name": "tenant", "regex": tollgate_core::ratelimit::TENANT_TAG_REGEX}));
    }
    if cause_tag {
        tags.push(json!({"tag_name": "cause", "regex": tollgate_core::audit::DROP_CAUSE_TAG_REGEX}));
    }
    tags.push(json!({"tag_name": "extension_config", "regex": EXTENSION_CONFIG_TAG_REGEX}));
    Value::Array(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(root_id: &str, config: &str) -> Filter {
        Filter {
            name: root_id.into(),
            root_id: root_id.into(),
            wasm: "t.wasm".into(),
            config: config.into(),
            original: None,
        }
    }

    #[test]
    fn consecutive_stages_with_one_policy_become_one_filter() {
        let policy = r#"{"version":1,"realm":"a","realm":"b"}"#;
        let other = split("state-setter", "");
        let fused = fuse(&[
            other.clone(),
            split("tollgate.jwt", policy),
            split("tollgate.tenant", policy),
        ]);
        assert_eq!(fused.len(), 2);
        assert_eq!(fused[0].root_id, "state-setter");
        assert_eq!(fused[1].root_id, "tollgate");
        // Inserted as text: the repeated key a test wrote is still there.
        assert_eq!(
            fused[1].config,
            r#"{"stages":["jwt","tenant"],"version":1,"realm":"a","realm":"b"}"#
        );
    }

    #[test]
    fn the_upstream_speaks_http2_only_when_asked() {
        let options = "/static_resources/clusters/0/typed_extension_protocol_options";
        let mut bootstrap = Bootstrap::new(8080);
        assert_eq!(bootstrap.to_json().pointer(options), None);
        // Downstream: `codec_type` unset, Envoy's AUTO (HTTP/1.1 and h2c).
        assert_eq!(
            bootstrap
                .listener()
                .pointer("/filter_chains/0/filters/0/typed_config/codec_type"),
            None
        );
        bootstrap.upstream_http2 = true;
        let json = bootstrap.to_json();
        let http = json
            .pointer(options)
            .and_then(|o| o.get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions"));
        assert_eq!(
            http.and_then(|h| h.pointer("/explicit_http_config/http2_protocol_options")),
            Some(&json!({}))
        );
    }

    #[test]
    fn named_clusters_speak_http2_when_listed_and_limits_get_their_tag() {
        let mut bootstrap = Bootstrap::new(8080).cluster("ratelimit", 8081).cluster("jwks", 8082);
        bootstrap.http2_clusters = vec!["ratelimit".into()];
        let json = bootstrap.to_json();
        let options = |i: usize| {
            json.pointer(&format!(
                "/static_resources/clusters/{i}/typed_extension_protocol_options"
            ))
        };
        assert!(options(1).is_some(), "ratelimit: h2c");
        assert_eq!(options(2), None, "jwks: HTTP/1.1");
        let tags = |b: &Bootstrap| b.to_json()["stats_config"]["stats_tags"].as_array().unwrap().len();
        assert_eq!(
            tags(&bootstrap),
            2,
            "no limits, no limit or tenant tag: reason, extension_config"
        );
        bootstrap.limit_tag = true;
        assert_eq!(tags(&bootstrap), 4);
        assert_eq!(
            tollgate_core::ratelimit::LIMIT_TAG_REGEX,
            r"^wasmcustom\.tollgate\.ratelimit\.limit\.((.+?)\.)(?:allowed|limited|shadow_limited)$"
        );
    }

    /// Envoy's reading of a tag: the first group leaves the name, the
    /// second is the value; `None` when the regex does not match.
    fn tagged(regex: &str, name: &str) -> Option<(String, String)> {
        let found = regex::Regex::new(regex).unwrap().captures(name)?;
        let (cut, value) = (found.get(1)?, found.get(2)?);
        let rest = format!("{}{}", &name[..cut.start()], &name[cut.end()..]);
        Some((rest, value.as_str().to_string()))
    }

    #[test]
    fn audit_drops_get_their_cause_tag_when_asked() {
        let tags = |b: &Bootstrap| b.to_json()["stats_config"]["stats_tags"].clone();
        let mut bootstrap = Bootstrap::new(8080);
        let cause = |t: &Value| t.as_array().unwrap().iter().find(|t| t["tag_name"] == "cause").cloned();
        assert_eq!(cause(&tags(&bootstrap)), None, "no audit, no cause tag");
        bootstrap.cause_tag = true;
        let regex = cause(&tags(&bootstrap)).unwrap()["regex"].as_str().unwrap().to_string();
        for name in tollgate_core::audit::metric_names() {
            let envoy_name = format!("wasmcustom.{name}");
            match name.strip_prefix("tollgate.audit.events_dropped.") {
                Some(why) => assert_eq!(
                    tagged(&regex, &envoy_name),
                    Some(("wasmcustom.tollgate.audit.events_dropped".into(), why.into()))
                ),
                None => assert_eq!(tagged(&regex, &envoy_name), None, "{name}"),
            }
        }
        let reason = &tags(&bootstrap)[0]["regex"];
        assert_eq!(
            tagged(
                reason.as_str().unwrap(),
                "wasmcustom.tollgate.audit.events_dropped.buffer_full"
            ),
            None,
            "the reason tag leaves audit's counters alone"
        );
    }

    #[test]
    fn every_denial_counter_of_every_stage_gets_its_reason_and_nothing_else_does() {
        let tags = stats_tags(true, true);
        let reason = tags[0]["regex"].as_str().unwrap();
        let mut denials = 0;
        for spec in tollgate_core::stage::STAGES {
            for name in (spec.metric_names)() {
                let envoy_name = format!("wasmcustom.{name}");
                let denial = name
                    .rsplit_once('.')
                    .filter(|(head, _)| head.ends_with(".denied") || head.ends_with(".shadow_denied"));
                match denial {
                    Some((head, why)) => {
                        denials += 1;
                        assert_eq!(
                            tagged(reason, &envoy_name),
                            Some((format!("wasmcustom.{head}"), why.into()))
                        );
                    }
                    None => assert_eq!(tagged(reason, &envoy_name), None, "{name}"),
                }
            }
        }
        assert!(denials > 10, "{denials} denial counters");
    }

    #[test]
    fn limit_names_with_dashes_dots_and_outcome_words_extract_whole() {
        let tags = stats_tags(true, false);
        let limit = tags[1]["regex"].as_str().unwrap();
        let reason = tags[0]["regex"].as_str().unwrap();
        // What the policy allows: letters, digits, '-', '_', '.' (check_name).
        for name in [
            "trino-per-tenant",
            "api.v2",
            "a_b.c-d.e",
            "x.allowed",
            "limited",
            "denied.shadow_limited",
        ] {
            for outcome in tollgate_core::ratelimit::LIMIT_OUTCOMES {
                let envoy_name = format!("wasmcustom.tollgate.ratelimit.limit.{name}.{outcome}");
                assert_eq!(
                    tagged(limit, &envoy_name),
                    Some((format!("wasmcustom.tollgate.ratelimit.limit.{outcome}"), name.into())),
                    "{envoy_name}"
                );
                assert_eq!(tagged(reason, &envoy_name), None, "{envoy_name}");
            }
        }
    }

    #[test]
    fn an_ecds_filter_name_with_dots_and_dashes_becomes_the_extension_config_tag() {
        for name in ["tollgate", "istio-system.tollgate", "datahub.tollgate-audit"] {
            assert_eq!(
                tagged(
                    EXTENSION_CONFIG_TAG_REGEX,
                    &format!("extension_config_discovery.http_filter.{name}.config_fail")
                ),
                Some(("extension_config_discovery.http_filter.config_fail".into(), name.into()))
            );
        }
        let other = "extension_config_discovery.http_filter.tollgate.update_success";
        assert_eq!(tagged(EXTENSION_CONFIG_TAG_REGEX, other), None);
    }

    #[test]
    fn tenant_ids_with_dashes_and_underscores_extract_whole_and_no_other_tag_reads_them() {
        let tags = stats_tags(true, true);
        let regexes: Vec<(&str, &str)> = tags
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["tag_name"].as_str().unwrap(), t["regex"].as_str().unwrap()))
            .collect();
        for id in ["ACME", "globex-2", "a_b", "limited"] {
            let names = tollgate_core::ratelimit::tenant_metric_names(&[id]);
            for (name, outcome) in names.iter().zip(tollgate_core::ratelimit::LIMIT_OUTCOMES) {
                let envoy_name = format!("wasmcustom.{name}");
                for (tag, regex) in &regexes {
                    let want = (*tag == "tenant").then(|| {
                        (
                            format!("wasmcustom.tollgate.ratelimit.tenant.{outcome}"),
                            id.to_string(),
                        )
                    });
                    assert_eq!(tagged(regex, &envoy_name), want, "{tag} on {envoy_name}");
                }
            }
        }
    }

    #[test]
    fn unknown_stages_bad_configs_and_other_filters_stay_as_they_are() {
        let fused = fuse(&[split("tollgate.nope", "{}"), split("tollgate.tenant", "version: 1")]);
        assert_eq!(fused[0].root_id, "tollgate.nope");
        assert_eq!(
            (fused[1].root_id.as_str(), fused[1].config.as_str()),
            ("tollgate", "version: 1")
        );
        let listed = fuse(&[split("tollgate.jwt", r#"{"stages":[]}"#)]);
        assert_eq!(listed[0].config, r#"{"stages":[]}"#);
        assert_eq!(fuse(&[split("tollgate.jwt", "{}")])[0].config, r#"{"stages":["jwt"]}"#);
    }
}
