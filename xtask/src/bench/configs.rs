//! The configurations the bench compares. Each is one row of `all()`: a
//! bootstrap, the requests the load cycles through, a request its filters
//! must refuse, and counters that prove the intended code path ran. A new
//! configuration (the fused filter) is one more row.

use super::tokens::{Tokens, ISSUER, TENANT};
use serde_json::{json, Value};
use tollgate_core::stage::{StageName, FUSED_ROOT_ID};
use tollgate_integration::{paths, Bootstrap, Delivery, Filter};

/// The path every request goes to; the route answers it directly.
pub const PATH: &str = "/api/datahub/entities";

/// Which tokens the load sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// No token.
    Plain,
    /// The same valid token on every request.
    Cached,
    /// A different valid token on every request, cycled.
    Uncached,
}

/// A stat whose growth over the whole run must be within `[min, max]`
/// times the requests served (e.g. host-verified signatures on every one).
#[derive(Debug, Clone)]
pub struct StatShare {
    pub stat: &'static str,
    pub min: f64,
    pub max: f64,
}

pub struct Config {
    pub name: &'static str,
    pub what: &'static str,
    pub load: Load,
    /// Headers on every request besides the token.
    pub headers: Vec<(String, String)>,
    /// A request (its headers, no token) that must be answered with this
    /// status within `REFUSED_WITHIN` tries (a limit may admit one first).
    pub refused: Option<(Vec<(String, String)>, u16)>,
    pub shares: Vec<StatShare>,
    /// The row whose CPU per request this one is compared with in each
    /// round, besides `baseline`: what this row's one addition costs.
    pub over: Option<&'static str>,
    /// Its Envoy calls the rate limit service (the `ratelimit` cluster).
    pub global: bool,
    /// Its Envoy posts audit events to the sink (the `audit-sink` cluster),
    /// on `sink_path(name)`.
    pub sink: bool,
    /// Its sink is the Kafka REST front (producing to Tansu), not the
    /// JSON lines sink.
    pub kafka: bool,
    /// The route's `rate_limits` (Envoy's descriptor actions).
    rate_limits: Option<Value>,
    bootstrap: Bootstrap,
}

/// Tries of a `refused` request: a limit of one admits the first.
pub const REFUSED_WITHIN: usize = 2;

/// The cluster of the rate limit service.
pub const SERVICE_CLUSTER: &str = "ratelimit";
/// The cluster of the audit sink.
pub const SINK_CLUSTER: &str = "audit-sink";

/// Where the parties the bench starts listen, when it started them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ports {
    pub ratelimit: Option<u16>,
    pub sink: Option<u16>,
    pub kafka: Option<u16>,
}

/// The sink path a configuration's events go to: the sink counts per path.
pub fn sink_path(name: &str) -> String {
    format!("/events/{name}")
}

impl Config {
    /// The bootstrap, with the access log (if any) written to `log`, the
    /// `ratelimit` cluster (for global rows) and the `audit-sink` cluster
    /// (for audit rows) at their ports.
    pub fn bootstrap(&self, log: &str, ports: Ports) -> Value {
        let mut bootstrap = self.bootstrap.clone();
        if bootstrap.access_log.is_some() {
            bootstrap.access_log = Some(log.to_string());
        }
        if let (true, Some(port)) = (self.global, ports.ratelimit) {
            bootstrap = bootstrap.cluster(SERVICE_CLUSTER, port);
            bootstrap.http2_clusters = vec![SERVICE_CLUSTER.into()];
        }
        let sink_port = if self.kafka { ports.kafka } else { ports.sink };
        if let (true, Some(port)) = (self.sink, sink_port) {
            bootstrap = bootstrap.cluster(SINK_CLUSTER, port);
        }
        let mut json = bootstrap.to_json();
        if let (Some(limits), Some(route)) = (&self.rate_limits, json.pointer_mut(ROUTE)) {
            *route = routed(limits);
        }
        json
    }
}

const ROUTE: &str =
    "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/route_config/virtual_hosts/0/routes/0";

/// Envoy's `ratelimit` filter calls the service only on a route to a
/// cluster (a direct response has no route entry): the fault filter then
/// answers 200 before the router, so the cluster is never reached.
fn routed(rate_limits: &Value) -> Value {
    json!({"match": {"prefix": "/"}, "route": {"cluster": "upstream", "rate_limits": rate_limits}})
}

fn base() -> Bootstrap {
    let mut bootstrap = Bootstrap::new(9);
    bootstrap.direct_response = true;
    // Each row says which filters it runs: none is fused behind its back.
    bootstrap.delivery = Delivery::Split;
    bootstrap
}

fn bad_token(tokens: &Tokens) -> Option<(Vec<(String, String)>, u16)> {
    Some((vec![("authorization".into(), format!("Bearer {}", tokens.forged))], 401))
}

fn tenant_header() -> Vec<(String, String)> {
    vec![("x-tenant-id".into(), TENANT.into())]
}

fn share(stat: &'static str, min: f64, max: f64) -> StatShare {
    StatShare { stat, min, max }
}

const HIT: &str = "wasmcustom.tollgate.jwt.cache_hit";
const MISS: &str = "wasmcustom.tollgate.jwt.cache_miss";
const HOST: &str = "wasmcustom.tollgate.jwt.signature_host";
const TENANT_OK: &str = "wasmcustom.tollgate.tenant.allowed";
const RL_SERVICE_ERROR: &str = "wasmcustom.tollgate.ratelimit.service_error";
const RL_TIMEOUT: &str = "wasmcustom.tollgate.ratelimit.service_timeout";
const LOCAL_OK: &str = "bench.http_local_rate_limit.ok";
const LOCAL_LIMITED: &str = "bench.http_local_rate_limit.rate_limited";
/// Envoy's ratelimit filter counts under the route's cluster.
const RLS_OK: &str = "cluster.upstream.ratelimit.ok";
const RLS_ERROR: &str = "cluster.upstream.ratelimit.error";

/// Every configuration, `baseline` first (the others are compared to it).
pub fn all(tokens: &Tokens) -> Vec<Config> {
    let row = |name, what, load, bootstrap| Config {
        name,
        what,
        load,
        headers: Vec::new(),
        refused: (load != Load::Plain).then(|| bad_token(tokens)).flatten(),
        shares: Vec::new(),
        over: None,
        global: false,
        sink: false,
        kafka: false,
        rate_limits: None,
        bootstrap,
    };
    // Root ids from the stage registry.
    let (jwt_id, tenant_id) = (StageName::Jwt.spec().root_id, StageName::Tenant.spec().root_id);
    let jwt = |cache: bool, host: bool| wasm(&[jwt_id], &tollgate_policy(tokens, cache, host));
    let both = wasm(&[jwt_id, tenant_id], &tollgate_policy(tokens, true, true));
    let tenant_only = wasm(&[tenant_id], &tenant_policy());
    let fused = |cache: bool| wasm(&[FUSED_ROOT_ID], &tollgate_policy(tokens, cache, true));
    let mut quiet = tollgate_policy(tokens, true, true);
    quiet["filter_state"] = json!(false);
    // The fused filter with fewer stages: where its cost goes.
    let stages = |list: Value| {
        let mut policy = quiet.clone();
        policy["stages"] = list;
        wasm(&[FUSED_ROOT_ID], &policy)
    };
    let mut all = vec![
        row("baseline", "router only, direct response", Load::Plain, base()),
        row(
            "native_jwt",
            "jwt_authn RS256, local JWKS, no cache",
            Load::Cached,
            native(tokens, false, false),
        ),
        row(
            "native_jwt_cache",
            "jwt_authn with jwt_cache_config",
            Load::Cached,
            native(tokens, true, false),
        ),
        row(
            "native_chain",
            "jwt_authn cached + header_mutation + local_ratelimit + JSON access log",
            Load::Cached,
            native(tokens, true, true),
        ),
        row(
            "trivial_wasm",
            "state-setter test filter (one header read)",
            Load::Plain,
            trivial(),
        ),
        Config {
            shares: vec![share(HIT, 0.99, 1.0)],
            ..row(
                "tollgate_jwt",
                "tollgate.jwt, cached token",
                Load::Cached,
                jwt(true, true),
            )
        },
        Config {
            headers: tenant_header(),
            refused: Some((vec![("x-tenant-id".into(), "NOBODY".into())], 403)),
            shares: vec![share(TENANT_OK, 0.99, 1.0)],
            ..row(
                "tollgate_tenant",
                "tollgate.tenant, header source",
                Load::Plain,
                tenant_only,
            )
        },
        Config {
            shares: vec![share(HIT, 0.99, 1.0), share(TENANT_OK, 0.99, 1.0)],
            ..row(
                "tollgate_jwt_tenant",
                "tollgate.jwt + tollgate.tenant, cached token",
                Load::Cached,
                both,
            )
        },
        Config {
            shares: vec![share(HIT, 0.99, 1.0), share(TENANT_OK, 0.99, 1.0)],
            ..row(
                "tollgate_fused",
                "tollgate (fused: jwt + tenant stages), cached token",
                Load::Cached,
                fused(true),
            )
        },
        Config {
            refused: None,
            ..row(
                "tollgate_fused_floor",
                "tollgate (fused) with no stage: reads the request, normalizes, matches the route",
                Load::Cached,
                stages(json!([])),
            )
        },
        Config {
            shares: vec![share(HIT, 0.99, 1.0)],
            ..row(
                "tollgate_fused_jwt_stage",
                "tollgate (fused), jwt stage only, cached token, filter_state: false",
                Load::Cached,
                stages(json!(["jwt"])),
            )
        },
        Config {
            // The audit rows capture it, and their pair must send the same.
            headers: user_agent(),
            shares: vec![share(HIT, 0.99, 1.0), share(TENANT_OK, 0.99, 1.0)],
            ..row(
                "tollgate_fused_no_state",
                "tollgate (fused), cached token, filter_state: false (native_chain writes no metadata either)",
                Load::Cached,
                wasm(&[FUSED_ROOT_ID], &quiet),
            )
        },
        Config {
            shares: vec![
                share(MISS, 0.99, 1.0),
                share(HOST, 0.99, 1.0),
                share(TENANT_OK, 0.99, 1.0),
            ],
            ..row(
                "tollgate_fused_uncached_host",
                "tollgate (fused), new token each request, host verifier",
                Load::Uncached,
                fused(false),
            )
        },
        Config {
            shares: vec![share(MISS, 0.99, 1.0), share(HOST, 0.99, 1.0)],
            ..row(
                "tollgate_jwt_uncached_host",
                "tollgate.jwt, new token each request, host verifier",
                Load::Uncached,
                jwt(false, true),
            )
        },
        Config {
            shares: vec![share(MISS, 0.99, 1.0), share(HOST, 0.0, 0.0)],
            ..row(
                "tollgate_jwt_uncached_rust",
                "tollgate.jwt, new token each request, Rust verifier",
                Load::Uncached,
                jwt(false, false),
            )
        },
    ];
    all.extend(ratelimit_rows(&row));
    all.extend(audit_rows(&row, &quiet));
    all
}

const LIMITED: &str = "SMALL";
/// A stage's count per completed request when requests wait on the service.
const IN_FLIGHT: f64 = 1.01;
const RL_OK: &str = "wasmcustom.tollgate.ratelimit.limit.bench-per-tenant.allowed";

/// Issue 22's rows: each limiter beside the row without it (`over`), so
/// that the limiter's own cost is read within each round.
fn ratelimit_rows(row: &impl Fn(&'static str, &'static str, Load, Bootstrap) -> Config) -> Vec<Config> {
    let tenant = |id: &str| vec![("x-tenant-id".to_string(), id.to_string())];
    let limited = Some((tenant(LIMITED), 429));
    let stage = |scope: Option<&str>| wasm(&[FUSED_ROOT_ID], &ratelimit_policy(scope));
    let with = |config: Config, over: &'static str| Config {
        headers: tenant_header(),
        over: Some(over),
        ..config
    };
    vec![
        Config {
            refused: Some((tenant("OTHER"), 429)),
            shares: vec![share(LOCAL_OK, 0.99, 1.0), share(LOCAL_LIMITED, 0.0, 0.0)],
            ..with(
                row(
                    "native_local_ratelimit",
                    "local_ratelimit, a token bucket per tenant (x-tenant-id descriptor), never empty",
                    Load::Plain,
                    base_with(vec![local_ratelimit_per_tenant()]),
                ),
                "baseline",
            )
        },
        Config {
            rate_limits: Some(native_rate_limits()),
            headers: tenant_header(),
            ..row(
                "native_ratelimit_floor",
                "route to a cluster, set_metadata, fault abort 200: native_ratelimit without the ratelimit filter",
                Load::Plain,
                base_with(vec![set_metadata(), fault_200()]),
            )
        },
        Config {
            rate_limits: Some(native_rate_limits()),
            global: true,
            shares: vec![share(RLS_OK, 0.99, IN_FLIGHT), share(RLS_ERROR, 0.0, 0.01)],
            ..with(
                row(
                    "native_ratelimit",
                    "ratelimit filter calling the test service (tenant descriptor, limit override), failure_mode_deny false",
                    Load::Plain,
                    base_with(vec![set_metadata(), native_ratelimit(), fault_200()]),
                ),
                "native_ratelimit_floor",
            )
        },
        Config {
            headers: tenant_header(),
            refused: Some((tenant("NOBODY"), 403)),
            shares: vec![share(TENANT_OK, 0.99, 1.0)],
            ..row(
                "tollgate_fused_tenant_stage",
                "tollgate (fused), tenant stage only, filter_state: false",
                Load::Plain,
                stage(None),
            )
        },
        Config {
            refused: limited.clone(),
            shares: vec![share(TENANT_OK, 0.99, 1.0), share(RL_OK, 0.99, 1.0)],
            ..with(
                row(
                    "tollgate_fused_ratelimit_local",
                    "tollgate (fused), tenant + ratelimit stages, a local limit per tenant, never exhausted",
                    Load::Plain,
                    stage(Some("local")),
                ),
                "tollgate_fused_tenant_stage",
            )
        },
        Config {
            refused: limited,
            global: true,
            // Requests waiting for the service when wrk stops were counted
            // by the stages but never completed.
            shares: vec![
                share(TENANT_OK, 0.99, IN_FLIGHT),
                share(RL_OK, 0.99, IN_FLIGHT),
                share(RL_SERVICE_ERROR, 0.0, 0.01),
                share(RL_TIMEOUT, 0.0, 0.01),
            ],
            ..with(
                row(
                    "tollgate_fused_ratelimit_global",
                    "tollgate (fused), tenant + ratelimit stages, a global limit per tenant (the test service)",
                    Load::Plain,
                    stage(Some("global")),
                ),
                "tollgate_fused_tenant_stage",
            )
        },
    ]
}

pub const AUDIT_EMITTED: &str = "wasmcustom.tollgate.audit.events_emitted";
const AUDIT_SAMPLED_OUT: &str = "wasmcustom.tollgate.audit.events_sampled_out";
/// A share of a 10% sample, with room for chance (3 standard deviations
/// at the quick run's 40,000 requests).
const TENTH: (f64, f64) = (0.09, 0.11);

fn user_agent() -> Vec<(String, String)> {
    vec![("user-agent".into(), "bench/1.0".into())]
}

/// Issue 23's rows: Envoy's JSON file access log (the `native_chain`'s)
/// and the audit stage, each added to `tollgate_fused_no_state` (`quiet`:
/// the jwt and tenant stages, `filter_state: false`) and read over it
/// within each round, so that the two costs are compared in one run.
fn audit_rows(row: &impl Fn(&'static str, &'static str, Load, Bootstrap) -> Config, quiet: &Value) -> Vec<Config> {
    let mut logged = wasm(&[FUSED_ROOT_ID], quiet);
    logged.access_log = Some(String::new());
    let audited = |name: &str, sample: f64, format: &str| {
        let mut bootstrap = wasm(&[FUSED_ROOT_ID], &audit_policy(quiet, name, sample, format));
        // What Istio gives every sidecar: the event's service and namespace.
        bootstrap.node_metadata = Some(json!({"WORKLOAD_NAME": "datahub", "NAMESPACE": "bench"}));
        bootstrap
    };
    let with = |config: Config| Config {
        headers: user_agent(),
        over: Some("tollgate_fused_no_state"),
        ..config
    };
    let stages = [share(HIT, 0.99, 1.0), share(TENANT_OK, 0.99, 1.0)];
    vec![
        Config {
            shares: stages.to_vec(),
            ..with(row(
                "tollgate_fused_access_log",
                "tollgate_fused_no_state + Envoy's JSON file access log (native_chain's)",
                Load::Cached,
                logged,
            ))
        },
        Config {
            sink: true,
            shares: [stages.as_slice(), &[share(AUDIT_EMITTED, 0.99, IN_FLIGHT)]].concat(),
            ..with(row(
                "tollgate_fused_audit",
                "tollgate_fused_no_state + the audit stage: every request, JSON lines to a local sink",
                Load::Cached,
                audited("tollgate_fused_audit", 1.0, "jsonl"),
            ))
        },
        Config {
            sink: true,
            shares: [
                stages.as_slice(),
                &[
                    share(AUDIT_EMITTED, TENTH.0, TENTH.1),
                    share(AUDIT_SAMPLED_OUT, 1.0 - TENTH.1, 1.0 - TENTH.0),
                ],
            ]
            .concat(),
            ..with(row(
                "tollgate_fused_audit_sampled",
                "tollgate_fused_audit with sample: 0.1",
                Load::Cached,
                audited("tollgate_fused_audit_sampled", 0.1, "jsonl"),
            ))
        },
        Config {
            sink: true,
            kafka: true,
            shares: [stages.as_slice(), &[share(AUDIT_EMITTED, 0.99, IN_FLIGHT)]].concat(),
            ..with(row(
                "tollgate_fused_audit_kafka",
                "tollgate_fused_audit into Kafka: the kafka-rest sink, a Kafka REST v2 front, Tansu",
                Load::Cached,
                audited("tollgate_fused_audit_kafka", 1.0, "kafka-rest"),
            ))
        },
    ]
}

/// `quiet` with issue 23's audit section: events in `format` to the sink
/// on this configuration's path (the Kafka REST front takes any base path
/// before `/topics/<topic>`), the route's events sampled at `sample`.
fn audit_policy(quiet: &Value, name: &str, sample: f64, format: &str) -> Value {
    let mut policy = quiet.clone();
    policy["audit"] = json!({
        "sink": {"format": format, "cluster": SINK_CLUSTER, "path": sink_path(name), "timeout_ms": 1000},
        "batch_size": 100,
        "flush_interval_ms": 1000,
        "buffer_events": 10000,
        "capture_headers": ["user-agent"],
    });
    if let Some(route) = policy.pointer_mut("/routes/0") {
        route["audit"] = json!({"event_type": "data_access", "sample": sample});
    }
    policy
}

fn wasm(root_ids: &[&str], policy: &Value) -> Bootstrap {
    root_ids.iter().fold(base(), |b, id| {
        b.filter(Filter::tollgate(id, &paths::module_wasm(), policy))
    })
}

/// The test-only filter: without its header it reads one header and goes on.
fn trivial() -> Bootstrap {
    base().filter(Filter {
        name: "trivial".into(),
        root_id: String::new(),
        wasm: paths::state_setter_wasm().display().to_string(),
        config: String::new(),
        original: None,
    })
}

/// Uncached: a cache far smaller than the token cycle, so every request
/// verifies a signature.
fn tollgate_policy(tokens: &Tokens, cache: bool, host: bool) -> Value {
    json!({
        "version": 1,
        "realm": "bench",
        "routes": [{
            "name": "datahub", "match": {"prefix": "/api/datahub"},
            "jwt": {"requirement": "required"}, "tenant": {"required": true},
        }],
        "tenants": [{"id": TENANT, "tier": "premium"}],
        "tenant": {"sources": ["claim", "header"]},
        "jwt": {
            "cache_entries": if cache { 1024 } else { 16 },
            "use_host_verifier": host,
            "providers": [{
                "name": "platform", "issuer": ISSUER, "audiences": ["bench-api"],
                "local_jwks": tokens.jwks,
                "tenant_claim": "tenant",
                "claim_to_headers": [{"claim_name": "sub", "header_name": "x-user-id"}],
            }],
        },
    })
}

fn tenant_policy() -> Value {
    json!({
        "version": 1,
        "routes": [{"name": "datahub", "match": {"prefix": "/api/datahub"}, "tenant": {"required": true}}],
        "tenants": [{"id": TENANT, "tier": "premium"}],
        "tenant": {"sources": ["header"]},
    })
}

/// Envoy's jwt_authn (and, for the chain, what a native setup adds to get
/// tenant headers, a rate limit and an access log).
fn native(tokens: &Tokens, cache: bool, chain: bool) -> Bootstrap {
    let mut provider = json!({
        "issuer": ISSUER,
        "audiences": ["bench-api"],
        "local_jwks": {"inline_string": tokens.jwks.to_string()},
        "forward": false,
        "claim_to_headers": [
            {"claim_name": "sub", "header_name": "x-user-id"},
            {"claim_name": "tenant", "header_name": "x-tenant-id"},
        ],
    });
    if cache {
        provider["jwt_cache_config"] = json!({"jwt_cache_size": 1024});
    }
    let mut bootstrap = base();
    bootstrap.native_filters.push(json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"platform": provider},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "platform"}}],
        },
    }));
    if chain {
        bootstrap.native_filters.extend([header_mutation(), local_ratelimit()]);
        bootstrap.access_log = Some(String::new());
    }
    bootstrap
}

fn header_mutation() -> Value {
    json!({
        "name": "envoy.filters.http.header_mutation",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {"request_mutations": [
                {"remove": "x-tenant-tier"},
                {"append": {
                    "header": {"key": "x-tenant-tier", "value": "premium"},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }},
            ]},
        },
    })
}

/// A bucket no load empties: the limiter's cost without its refusals.
fn local_ratelimit() -> Value {
    let all = json!({"default_value": {"numerator": 100, "denominator": "HUNDRED"}, "runtime_key": "bench_rl"});
    json!({
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "bench",
            "token_bucket": {"max_tokens": 1_000_000_000u64, "tokens_per_fill": 1_000_000_000u64, "fill_interval": "1s"},
            "filter_enabled": all,
            "filter_enforced": all,
        },
    })
}

fn base_with(filters: Vec<Value>) -> Bootstrap {
    let mut bootstrap = base();
    bootstrap.native_filters = filters;
    bootstrap
}

/// Requests per hour no bench run reaches.
const NEVER: u64 = 1_000_000_000;
/// The rate limit service's domain, Tollgate's and Envoy's.
const DOMAIN: &str = "tollgate-bench";
/// The service's timeout, long enough that a loaded shared machine does
/// not turn the row into a failure-mode row.
const SERVICE_TIMEOUT_MS: u64 = 500;

/// The tenant stage alone (`scope` None) or with one limit per tenant that
/// the load never exhausts; `SMALL` may send one request per hour. No
/// headers on answers: Envoy's filters add none either.
fn ratelimit_policy(scope: Option<&str>) -> Value {
    let mut route = json!({"name": "datahub", "match": {"prefix": "/api/datahub"}, "tenant": {"required": true}});
    let mut stages = json!(["tenant"]);
    if let Some(scope) = scope {
        route["limits"] = json!([{
            "name": "bench-per-tenant", "key": ["tenant"], "requests": NEVER, "period": "hour",
            "tenants": {LIMITED: 1}, "scope": scope,
        }]);
        stages = json!(["tenant", "ratelimit"]);
    }
    json!({
        "version": 1,
        "stages": stages,
        "filter_state": false,
        "routes": [route],
        "tenants": [{"id": TENANT, "tier": "premium"}, {"id": LIMITED, "tier": "standard"}],
        "tenant": {"sources": ["header"]},
        "ratelimit": {
            "headers": "none",
            "service": {"cluster": SERVICE_CLUSTER, "domain": DOMAIN, "timeout_ms": SERVICE_TIMEOUT_MS, "failure_mode": "allow"},
        },
    })
}

/// A bucket per tenant from the filter's own `rate_limits` (route-level
/// ones need a route entry, which a direct response has not). Other
/// tenants share the default bucket of one token an hour.
fn local_ratelimit_per_tenant() -> Value {
    let all = json!({"default_value": {"numerator": 100, "denominator": "HUNDRED"}, "runtime_key": "bench_rl"});
    let bucket = |tokens: u64| json!({"max_tokens": tokens, "tokens_per_fill": tokens, "fill_interval": "3600s"});
    json!({
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "bench",
            "token_bucket": bucket(1),
            "filter_enabled": all,
            "filter_enforced": all,
            "local_rate_limit_per_downstream_connection": false,
            "always_consume_default_token_bucket": false,
            "rate_limits": [{"actions": [{"request_headers": {"header_name": "x-tenant-id", "descriptor_key": "tenant"}}]}],
            "descriptors": [{"entries": [{"key": "tenant", "value": TENANT}], "token_bucket": bucket(NEVER)}],
        },
    })
}

const LIMIT_METADATA: &str = "tollgate.bench";

/// The descriptor's `limit` override, which the test service needs (it has
/// no configuration), read by the route's action from dynamic metadata.
fn set_metadata() -> Value {
    json!({
        "name": "envoy.filters.http.set_metadata",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.set_metadata.v3.Config",
            "metadata": [{
                "metadata_namespace": LIMIT_METADATA,
                "value": {"limit": {"requests_per_unit": NEVER, "unit": "HOUR"}},
            }],
        },
    })
}

/// The route's descriptor: the tenant, with the limit override.
fn native_rate_limits() -> Value {
    json!([{
        "actions": [{"request_headers": {"header_name": "x-tenant-id", "descriptor_key": "tenant"}}],
        "limit": {"dynamic_metadata": {"metadata_key": {"key": LIMIT_METADATA, "path": [{"key": "limit"}]}}},
    }])
}

fn native_ratelimit() -> Value {
    json!({
        "name": "envoy.filters.http.ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
            "domain": DOMAIN,
            "failure_mode_deny": false,
            "timeout": format!("{}s", SERVICE_TIMEOUT_MS as f64 / 1000.0),
            "rate_limit_service": {
                "grpc_service": {"envoy_grpc": {"cluster_name": SERVICE_CLUSTER}},
                "transport_api_version": "V3",
            },
        },
    })
}

/// Answers every request 200 before the router (see `routed`).
fn fault_200() -> Value {
    json!({
        "name": "envoy.filters.http.fault",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
            "abort": {"http_status": 200, "percentage": {"numerator": 100, "denominator": "HUNDRED"}},
        },
    })
}
