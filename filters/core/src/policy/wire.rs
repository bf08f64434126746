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
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRulesDoc {
    #[serde(default)]
    pub tenant: RouteTenantDoc,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDoc {
    pub name: String,
    #[serde(rename = "match", default)]
    pub matcher: MatchDoc,
    #[serde(default)]
    pub tenant: RouteTenantDoc,
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
    pub max_id_length: Option<usize>,
}
