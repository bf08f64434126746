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
    /// A request (its headers, no token) that must be answered with this status.
    pub refused: Option<(Vec<(String, String)>, u16)>,
    pub shares: Vec<StatShare>,
    bootstrap: Bootstrap,
}

impl Config {
    /// The bootstrap, with the access log (if any) written to `log`.
    pub fn bootstrap(&self, log: &str) -> Value {
        let mut bootstrap = self.bootstrap.clone();
        if bootstrap.access_log.is_some() {
            bootstrap.access_log = Some(log.to_string());
        }
        bootstrap.to_json()
    }
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

/// Every configuration, `baseline` first (the others are compared to it).
pub fn all(tokens: &Tokens) -> Vec<Config> {
    let row = |name, what, load, bootstrap| Config {
        name,
        what,
        load,
        headers: Vec::new(),
        refused: (load != Load::Plain).then(|| bad_token(tokens)).flatten(),
        shares: Vec::new(),
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
    vec![
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
    ]
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
