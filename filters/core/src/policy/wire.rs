//! The policy file as written (version 1): serde types, strict about unknown
//! fields. `compile` turns them into the ready-to-use types in `policy`.

use crate::Mode;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    pub version: u32,
    /// `realm` of the `WWW-Authenticate` challenge on 401 answers.
    #[serde(default)]
    pub realm: Option<String>,
    /// Route settings for requests no route matches, and defaults for the
    /// fields each route leaves out.
    #[serde(default)]
    pub defaults: RouteRulesDoc,
    #[serde(default)]
    pub routes: Vec<RouteDoc>,
    #[serde(default)]
    pub tenants: Vec<TenantDoc>,
    #[serde(default)]
    pub tenant: TenantFilterDoc,
    #[serde(default)]
    pub jwt: JwtFilterDoc,
    /// Rate limit settings: headers, client address, slots, service.
    #[serde(default)]
    pub ratelimit: super::ratelimit::RatelimitDoc,
    /// Audit events: the sink, batching, what events carry.
    #[serde(default)]
    pub audit: Option<crate::audit::AuditDoc>,
    /// How request paths are checked and normalized, for every filter.
    #[serde(default)]
    pub paths: PathsDoc,
    /// Request headers every filter removes, in every `_`/`-` spelling:
    /// frameworks act on them instead of the decided host, path and method
    /// (default `policy::headers::DEFAULT_STRIP`; `[]` removes none).
    #[serde(default)]
    pub strip_headers: Option<Vec<String>>,
    /// The stages the fused `tollgate` filter runs (always in the order
    /// jwt, tenant, ratelimit, audit). Default: `jwt` when providers are configured, `tenant`
    /// when tenants are or a route requires one, `ratelimit` when a limit is
    /// defined, `audit` when the `audit` section is there.
    #[serde(default)]
    pub stages: Option<Vec<StageName>>,
    /// Whether the fused filter writes its outputs (`tollgate.sub`,
    /// `tollgate.decision.*`, ...) to filter state, for access logs or a
    /// filter after it (default true). The separate filters always do: the
    /// next Tollgate filter reads them there.
    #[serde(default)]
    pub filter_state: Option<bool>,
    /// Every route of a stage in shadow (`{jwt: shadow}`): how a rollout starts.
    #[serde(default)]
    pub modes: Option<super::rollout::StageModes>,
    /// Namespaces (the sidecar's `node.metadata.NAMESPACE`, which Istio
    /// sets) where this plugin stands aside: they have a plugin of their own.
    #[serde(default)]
    pub skip_namespaces: Option<Vec<String>>,
    /// How `tollgate render` lays the policy over an Istio mesh
    /// (`rollout::MeshDoc`). The tool's section: decoded and checked by
    /// `Policy::from_read` only; the filters never act on it (render sends
    /// it to none), so its decoder is not in the module.
    #[serde(default)]
    pub mesh: Option<serde_json::Value>,
}

pub use crate::stage::StageName;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PathsDoc {
    /// Longest `:path` (query included), 1 to 65536; longer is 414 (default 8192).
    #[serde(default)]
    pub max_bytes: Option<usize>,
    /// `rewrite` (default): serve the normalized path; `reject`: refuse others.
    #[serde(default)]
    pub normalization: Option<crate::path::Normalization>,
    /// `reject` (default): refuse `;`; `strip`: drop each segment's parameters.
    #[serde(default)]
    pub parameters: Option<crate::path::Parameters>,
    /// `reject_rerouting` (default): refuse `%2F`/`%5C` where decoding them
    /// would pick another route; `reject`: refuse them all.
    #[serde(default)]
    pub escaped_slashes: Option<crate::path::EscapedSlashes>,
    /// `reject_rerouting` (default): refuse a path a case-insensitive
    /// application would route elsewhere; `sensitive`: no such reading.
    #[serde(default)]
    pub case: Option<crate::path::CaseReading>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRulesDoc {
    #[serde(default)]
    pub tenant: RouteTenantDoc,
    #[serde(default)]
    pub jwt: RouteJwtDoc,
    /// Limits every request counts against (routes add their own).
    #[serde(default)]
    pub limits: Vec<super::ratelimit::LimitDoc>,
    /// The audit event type and sampling of routes that set none.
    #[serde(default)]
    pub audit: Option<crate::audit::RouteAuditDoc>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDoc {
    pub name: String,
    #[serde(rename = "match", default)]
    pub matcher: MatchDoc,
    #[serde(default)]
    pub tenant: RouteTenantDoc,
    #[serde(default)]
    pub jwt: RouteJwtDoc,
    /// Limits of this route, besides `defaults.limits`.
    #[serde(default)]
    pub limits: Vec<super::ratelimit::LimitDoc>,
    /// This route's audit event type and sampling (else `defaults.audit`).
    #[serde(default)]
    pub audit: Option<crate::audit::RouteAuditDoc>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MatchDoc {
    #[serde(default)]
    pub exact: Option<String>,
    /// Segment-aware: `/api/datahub` matches `/api/datahub/x`, not `/api/datahubx`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// `*` is one segment, a final `**` any number of segments.
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    /// Exact host names or `*.example.com`; ports are ignored.
    #[serde(default)]
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTenantDoc {
    #[serde(default)]
    pub required: Option<bool>,
    /// Status when a required tenant is missing: 400 (default) or 401.
    #[serde(default)]
    pub missing_status: Option<u16>,
    #[serde(default)]
    pub mode: Option<Mode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    #[default]
    Active,
    Suspended,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantDoc {
    pub id: String,
    #[serde(default)]
    pub status: TenantStatus,
    #[serde(default)]
    pub tier: Option<String>,
    /// Route names this tenant may use; absent means every route.
    #[serde(default)]
    pub routes: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantSource {
    /// The verified identity in filter state (`tollgate.tenant`).
    Claim,
    Header,
    Host,
    Path,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantFilterDoc {
    /// Where the tenant is read from, in order; default `[claim, header]`.
    #[serde(default)]
    pub sources: Option<Vec<TenantSource>>,
    /// Header read as a source and set for the application (`x-tenant-id`).
    #[serde(default)]
    pub header: Option<String>,
    /// Header set for the application with the tenant's tier (`x-tenant-tier`).
    #[serde(default)]
    pub tier_header: Option<String>,
    /// Host pattern such as `{tenant}.example.com`.
    #[serde(default)]
    pub host: Option<String>,
    /// Path prefix such as `/t/{tenant}`; routes then match what follows it.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Longest tenant id accepted (default 64).
    #[serde(default)]
    pub max_id_length: Option<u64>,
}

/// The jwt filter's section: providers and limits.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtFilterDoc {
    #[serde(default)]
    pub providers: Vec<ProviderDoc>,
    /// Tokens longer than this are refused unparsed (default 8192).
    #[serde(default)]
    pub max_token_bytes: Option<u64>,
    /// Verified-token cache per worker: entries and bytes (defaults 1024, 1 MiB).
    #[serde(default)]
    pub cache_entries: Option<u64>,
    #[serde(default)]
    pub cache_bytes: Option<u64>,
    /// Use Envoy's native `verify_signature` where it works (default true).
    #[serde(default)]
    pub use_host_verifier: Option<bool>,
}

/// A token issuer. Field names follow Envoy's jwt_authn where they can.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderDoc {
    pub name: String,
    pub issuer: String,
    /// Accepted `aud` values; empty accepts any.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// An inline JWKS (`{"keys": [...]}`).
    #[serde(default)]
    pub local_jwks: Option<serde_json::Value>,
    #[serde(default)]
    pub remote_jwks: Option<RemoteJwksDoc>,
    /// Base64 secret for HS256/384/512; without it HMAC tokens are refused.
    #[serde(default)]
    pub hmac_secret_base64: Option<String>,
    /// Default: `Authorization: Bearer <token>`.
    #[serde(default)]
    pub from_headers: Option<Vec<HeaderSourceDoc>>,
    #[serde(default)]
    pub from_params: Vec<String>,
    #[serde(default)]
    pub from_cookies: Vec<String>,
    /// Default 60.
    #[serde(default)]
    pub clock_skew_seconds: Option<u64>,
    /// Refuse tokens without `exp` (default true).
    #[serde(default)]
    pub require_expiration: Option<bool>,
    #[serde(default)]
    pub max_lifetime_seconds: Option<u64>,
    /// Keep the token in the request sent upstream (default false: removed).
    #[serde(default)]
    pub forward: Option<bool>,
    /// Claim holding the tenant id, written to `tollgate.tenant`.
    #[serde(default)]
    pub tenant_claim: Option<String>,
    /// Refuse a token without the tenant claim (or from a provider without
    /// `tenant_claim`) on routes that require a tenant (default true).
    #[serde(default)]
    pub require_tenant_claim: Option<bool>,
    /// Claim holding roles (default `roles`), written to `tollgate.roles`.
    #[serde(default)]
    pub roles_claim: Option<String>,
    /// Claims copied to `tollgate.claims`.
    #[serde(default)]
    pub claims_to_state: Vec<String>,
    #[serde(default)]
    pub claim_to_headers: Vec<ClaimToHeaderDoc>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteJwksDoc {
    /// Where the JWKS is: `https://idp.example.com/.well-known/jwks.json`
    /// gives the `:authority` and `:path` of the fetch.
    pub uri: String,
    /// Envoy cluster to fetch through: a plain name locally,
    /// `outbound|443||idp.example.com` in Istio.
    pub cluster: String,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub cache_duration_seconds: Option<u64>,
    #[serde(default)]
    pub min_refetch_interval_seconds: Option<u64>,
    #[serde(default)]
    pub stale_ttl_seconds: Option<u64>,
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderSourceDoc {
    pub name: String,
    #[serde(default)]
    pub value_prefix: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimToHeaderDoc {
    pub claim_name: String,
    pub header_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Requirement {
    /// A valid token is needed.
    Required,
    /// A token is verified if present; none is fine.
    Optional,
    /// Tokens are not looked at.
    #[default]
    None,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteJwtDoc {
    #[serde(default)]
    pub requirement: Option<Requirement>,
    /// Provider names accepted on the route; default all.
    #[serde(default)]
    pub providers: Option<Vec<String>>,
    /// Claim rules; all must hold.
    #[serde(default)]
    pub rules: Option<Vec<ClaimRuleDoc>>,
    /// On `optional` routes, a request without a token when a rule applies
    /// to its method: `deny` (default, 401 token_missing) or `skip`.
    #[serde(default)]
    pub rules_without_token: Option<RulesWithoutToken>,
    #[serde(default)]
    pub mode: Option<Mode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RulesWithoutToken {
    /// No token cannot satisfy a rule: 401 `token_missing`.
    #[default]
    Deny,
    /// Rules only bind requests that carry a token.
    Skip,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRuleDoc {
    /// Claim name; dots reach into objects (`realm_access.roles`) unless
    /// the whole name is a claim (`https://example.com/tenant`).
    pub claim: String,
    #[serde(default)]
    pub equals: Option<serde_json::Value>,
    /// Array element, or word of a space-delimited string (`scope`).
    #[serde(default)]
    pub contains: Option<String>,
    #[serde(default)]
    pub any_of: Option<Vec<String>>,
    /// Only for these methods; default all.
    #[serde(default)]
    pub methods: Vec<String>,
}
