//! The policy: one document for every filter. `Policy::from_json` is the one
//! entry point, used by each filter's `on_configure` and by the CLI, so a
//! policy the CLI accepts is a policy the filters accept.

mod decode;
pub mod errors;
pub mod headers;
pub mod lint;
pub mod ratelimit;
pub mod rollout;
pub mod strict;
pub mod tenant;
pub mod wire;

use crate::jwt::config::{JwtConfig, RouteJwt};
use crate::path::{self, PathSettings};
use crate::route::{self, HostMatch, PathMatch, Rank, RequestHead, RouteMatch};
use crate::Mode;
use errors::{compile_methods, index, join};
pub use errors::{PolicyError, PolicyErrors};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use tenant::{Tenant, TenantConfig};
pub use wire::PolicyDoc;
use wire::{MatchDoc, PathsDoc, ProviderDoc, RouteDoc, RouteTenantDoc, StageName, TenantDoc};

/// Largest policy accepted, in bytes: config is held once per worker VM.
pub const MAX_POLICY_BYTES: usize = 1 << 20;
/// Name of the route that requests no route matches get.
pub const DEFAULT_ROUTE: &str = "default";

#[derive(Debug, Clone)]
pub struct Policy {
    pub realm: String,
    pub routes: Vec<Route>,
    /// Settings for requests no route matches (`defaults` in the file).
    pub fallback: Route,
    /// Keyed by the lower-cased id: ids match without regard to case.
    pub tenants: HashMap<String, Tenant>,
    pub tenant: TenantConfig,
    pub jwt: JwtConfig,
    pub paths: PathSettings,
    /// Lower-case names removed from every request, in every spelling.
    pub strip_headers: Vec<String>,
    /// Some route pattern holds an upper-case letter, so a case-insensitive
    /// reading can differ even for a lower-case path.
    pub upper_case_patterns: bool,
    /// What the fused filter runs, in order (`stages` in the file).
    pub stages: Vec<StageName>,
    /// The fused filter writes filter state (`filter_state` in the file).
    pub filter_state: bool,
    /// Namespaces where the plugin stands aside (`skip_namespaces`).
    pub skip_namespaces: Vec<String>,
    /// Every limit the policy defines: `defaults.limits`, then each
    /// route's, in file order. Routes refer to them by position.
    pub limits: Vec<crate::ratelimit::Limit>,
    pub ratelimit: crate::ratelimit::RatelimitConfig,
    /// The `audit` section, when there is one.
    pub audit: Option<crate::audit::AuditConfig>,
}

/// The route for a request and why (`Policy::route_explained`).
#[derive(Debug, Clone)]
pub struct RouteChoice<'p> {
    pub route: &'p Route,
    /// The path routes were matched on (after the tenant path prefix).
    pub matched_path: String,
    pub why: RouteWhy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteWhy {
    /// No route matched: the fallback (`defaults`).
    NoMatch,
    /// The only route that matched.
    OnlyMatch,
    /// Won over the next best match, `runner_up`, at `step`.
    Beat { runner_up: String, step: route::Precedence },
}

/// A route of a policy by position (`None`: the fallback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteIndex(Option<usize>);

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub matcher: RouteMatch,
    pub tenant: RouteTenant,
    pub jwt: RouteJwt,
    pub ratelimit: RouteLimits,
    pub audit: crate::audit::RouteAudit,
}

/// The limits a route's requests count against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteLimits {
    /// Positions in `Policy::limits`: `defaults.limits`, then the route's.
    pub limits: Vec<usize>,
    /// `shadow` (from `modes`) puts every limit of the route in shadow.
    pub mode: Mode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteTenant {
    pub required: bool,
    /// 400 or 401.
    pub missing_status: u16,
    pub mode: Mode,
}

impl Policy {
    /// Parses and compiles a JSON policy, reporting every error with its path:
    /// structural ones from decoding and, for what did decode, semantic ones.
    /// The filters' entry: `mesh` (the tool's section) is not checked.
    pub fn from_json(bytes: &[u8]) -> Result<Policy, PolicyErrors> {
        Policy::compile(read_json(bytes)?, |_, _| {})
    }

    /// Compiles a document read strictly from any format (the CLI reads
    /// YAML), with the checks of `from_json` and of the `mesh` section.
    pub fn from_read(read: strict::Read) -> Result<Policy, PolicyErrors> {
        Policy::compile(read, rollout::check_mesh)
    }

    /// A JSON policy as the tool checks it (`from_read`).
    pub fn from_json_checked(bytes: &[u8]) -> Result<Policy, PolicyErrors> {
        Policy::from_read(read_json(bytes)?)
    }

    fn compile(read: strict::Read, check_mesh: fn(&Value, &mut PolicyErrors)) -> Result<Policy, PolicyErrors> {
        let nulls = read.nulls;
        let (doc, mut errors) = decode_doc(read.value, read.errors);
        if let Some(mesh) = doc.as_ref().and_then(|d| d.doc.mesh.as_ref()) {
            check_mesh(mesh, &mut errors);
        }
        let result = match doc {
            None => Err(errors),
            Some(doc) => match Policy::try_from(doc.doc) {
                Ok(policy) if errors.is_empty() => Ok(policy),
                Ok(_) => Err(errors),
                Err(more) => {
                    errors.0.extend(more.0.into_iter().map(|e| doc.kept.original(e)));
                    Err(errors)
                }
            },
        };
        result.map_err(|mut errors| {
            // A required field given as null is reported once, as null.
            errors
                .0
                .retain(|e| !(e.message == decode::MISSING && nulls.contains(&e.path)));
            errors
        })
    }

    /// The route for a request, or the fallback. `head.path` is matched after
    /// the tenant path prefix (`/t/{tenant}`), when one is configured.
    pub fn route(&self, head: &RequestHead<'_>) -> &Route {
        self.route_as(head, route::Case::Sensitive)
    }

    /// `route`, with path literals compared as `case` says.
    pub fn route_as(&self, head: &RequestHead<'_>, case: route::Case) -> &Route {
        let path = self.route_path(head.path);
        let head = RequestHead { path, ..*head };
        self.matches(&head, case)
            .max_by_key(|(rank, _)| *rank)
            .map_or(&self.fallback, |(_, r)| r)
    }

    /// Every route `head` (path already `route_path`) matches, ranked.
    fn matches<'s, 'h>(
        &'s self,
        head: &'h RequestHead<'h>,
        case: route::Case,
    ) -> impl Iterator<Item = (Rank, &'s Route)> + use<'s, 'h> {
        self.routes
            .iter()
            .enumerate()
            .filter_map(move |(i, r)| r.matcher.rank_as(head, i, case).map(|rank| (rank, r)))
    }

    /// `route` with why it won: for `tollgate explain`. The same ranks and
    /// the same `max()` as `route`; the reason is the step of the
    /// precedence that put it above the next best match.
    pub fn route_explained(&self, head: &RequestHead<'_>) -> RouteChoice<'_> {
        let path = self.route_path(head.path);
        let head = RequestHead { path, ..*head };
        let mut ranked: Vec<(Rank, &Route)> = self.matches(&head, route::Case::Sensitive).collect();
        ranked.sort_by_key(|(rank, _)| std::cmp::Reverse(*rank));
        let mut ranked = ranked.into_iter();
        let Some((best, route)) = ranked.next() else {
            return RouteChoice {
                route: &self.fallback,
                matched_path: path.to_string(),
                why: RouteWhy::NoMatch,
            };
        };
        let why = match ranked.next() {
            None => RouteWhy::OnlyMatch,
            Some((next, runner_up)) => RouteWhy::Beat {
                runner_up: runner_up.name.clone(),
                step: best.decided_by(&next).unwrap_or(route::Precedence::FirstInFile),
            },
        };
        RouteChoice {
            route,
            matched_path: path.to_string(),
            why,
        }
    }

    /// Where a route of this policy is kept, for `route_at`.
    pub fn index_of(&self, route: &Route) -> RouteIndex {
        let at = self.routes.iter().position(|r| std::ptr::eq(r, route));
        RouteIndex(at)
    }

    /// The route `index_of` gave.
    pub fn route_at(&self, index: RouteIndex) -> &Route {
        index.0.and_then(|i| self.routes.get(i)).unwrap_or(&self.fallback)
    }

    /// The part of a normalized path that routes match on.
    pub fn route_path<'p>(&self, path: &'p str) -> &'p str {
        match self.tenant.split_path(path) {
            Some((_, rest)) => rest,
            None => path,
        }
    }
}

/// Reads JSON strictly (no duplicate keys, no null fields), within the size limit.
fn read_json(bytes: &[u8]) -> Result<strict::Read, PolicyErrors> {
    let mut errors = PolicyErrors::default();
    if bytes.len() > MAX_POLICY_BYTES {
        errors.push(
            "",
            format!("policy is {} bytes; the limit is {MAX_POLICY_BYTES}", bytes.len()),
        );
        return Err(errors);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match strict::read(&mut de).and_then(|read| de.end().map(|()| read)) {
        Ok(read) => Ok(read),
        Err(e) => {
            errors.push("", format!("not valid JSON: {e}"));
            Err(errors)
        }
    }
}

/// Parses a JSON policy into its wire form, or every decoding error.
pub fn parse_doc(bytes: &[u8]) -> Result<PolicyDoc, PolicyErrors> {
    let read = read_json(bytes)?;
    match decode_doc(read.value, read.errors) {
        (Some(decoded), errors) if errors.is_empty() => Ok(decoded.doc),
        (_, errors) => Err(errors),
    }
}

/// A decoded document plus, for each list, which original items it kept.
struct Decoded {
    doc: PolicyDoc,
    kept: Kept,
}

#[derive(Default)]
struct Kept {
    routes: Vec<usize>,
    tenants: Vec<usize>,
    providers: Vec<usize>,
}

impl Kept {
    /// Items that failed to decode are left out of `doc`; put the original
    /// position back in the path of an error found later (`routes[2]`).
    fn original(&self, mut e: PolicyError) -> PolicyError {
        let lists = [
            ("routes[", &self.routes),
            ("tenants[", &self.tenants),
            ("jwt.providers[", &self.providers),
        ];
        for (field, kept) in lists {
            let Some(rest) = e.path.strip_prefix(field) else {
                continue;
            };
            let Some((now, rest)) = rest.split_once(']') else {
                continue;
            };
            if let Some(was) = now.parse::<usize>().ok().and_then(|now| kept.get(now)) {
                e.path = format!("{field}{was}]{rest}");
            }
            return e;
        }
        e
    }
}

/// Decodes list items one by one so that an error in one route does not hide
/// errors in the others; items that cannot be decoded are left out.
fn decode_doc(mut value: Value, mut errors: PolicyErrors) -> (Option<Decoded>, PolicyErrors) {
    if !value.is_object() {
        errors.push("", "policy must be a JSON object");
        return (None, errors);
    }
    let routes = take_list(&mut value, "routes", &mut errors);
    let tenants = take_list(&mut value, "tenants", &mut errors);
    let providers = match value.get_mut("jwt") {
        Some(jwt) => take_list(jwt, "providers", &mut errors),
        None => Vec::new(),
    };
    let doc = decode::decode::<PolicyDoc>(value, "", &mut errors);
    let (routes, kept_routes) = decode_items::<RouteDoc>(routes, "routes", &mut errors);
    let (tenants, kept_tenants) = decode_items::<TenantDoc>(tenants, "tenants", &mut errors);
    let (providers, kept_providers) = decode_items::<ProviderDoc>(providers, "jwt.providers", &mut errors);
    let decoded = doc.map(|mut doc| {
        doc.jwt.providers = providers;
        Decoded {
            doc: PolicyDoc { routes, tenants, ..doc },
            kept: Kept {
                routes: kept_routes,
                tenants: kept_tenants,
                providers: kept_providers,
            },
        }
    });
    (decoded, errors)
}

fn take_list(value: &mut Value, field: &str, errors: &mut PolicyErrors) -> Vec<Value> {
    let Some(map) = value.as_object_mut() else {
        return Vec::new();
    };
    match map.remove(field) {
        Some(Value::Array(items)) => items,
        None => Vec::new(),
        Some(_) => {
            errors.push(field, "must be a list");
            Vec::new()
        }
    }
}

fn decode_items<T: serde::de::DeserializeOwned>(
    items: Vec<Value>,
    field: &str,
    errors: &mut PolicyErrors,
) -> (Vec<T>, Vec<usize>) {
    let mut decoded = Vec::with_capacity(items.len());
    let mut kept = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        if let Some(item) = decode::decode(item, &index(field, i), errors) {
            decoded.push(item);
            kept.push(i);
        }
    }
    (decoded, kept)
}

impl TryFrom<PolicyDoc> for Policy {
    type Error = PolicyErrors;

    fn try_from(doc: PolicyDoc) -> Result<Policy, PolicyErrors> {
        let mut errors = PolicyErrors::default();
        if doc.version != 1 {
            errors.push(
                "version",
                format!("unsupported version {}; this build reads version 1", doc.version),
            );
        }
        let jwt = JwtConfig::compile(&doc.jwt, "jwt", &mut errors);
        let defaults = compile_route_tenant(&doc.defaults.tenant, None, "defaults.tenant", &mut errors);
        let jwt_defaults = jwt.compile_route(&doc.defaults.jwt, None, "defaults.jwt", &mut errors);
        let mut routes = compile_routes(&doc.routes, defaults, &jwt, &jwt_defaults, &mut errors);
        let route_names: HashSet<&str> = routes.iter().map(|r| r.name.as_str()).collect();
        let tenant = TenantConfig::compile(&doc.tenant, "tenant", &mut errors);
        let tenants = compile_tenants(&doc.tenants, &tenant, &route_names, &mut errors);
        let ratelimit_config = ratelimit::compile_config(&doc.ratelimit, &mut errors);
        let managed = managed_headers(&doc, &tenant);
        let (limits, default_limits) =
            compile_all_limits(&doc, &mut routes, &tenants, &ratelimit_config, &managed, &mut errors);
        let paths = compile_paths(&doc.paths, "paths", &mut errors);
        check_ambiguous_patterns(&doc.routes, paths.case, &mut errors);
        check_path_prefix_case(doc.tenant.path_prefix.as_deref(), paths.case, &mut errors);
        let tenant_headers = [tenant.header.as_str(), tenant.tier_header.as_str()];
        headers::check_collisions(&doc, tenant_headers, &mut errors);
        let strip_headers = headers::compile_strip(&doc, tenant_headers, &mut errors);
        let audit = compile_audit(&doc, &jwt, &mut errors);
        let audit_defaults = compile_route_audits(&doc, &mut routes, &mut errors);
        let stages = compile_stages(&doc, &routes, &defaults, &mut errors);
        let skip_namespaces = doc.skip_namespaces.clone().unwrap_or_default();
        rollout::check_skip_namespaces(&skip_namespaces, &mut errors);
        let realm = doc.realm.unwrap_or_else(|| "tollgate".to_string());
        if !realm
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ')
        {
            errors.push("realm", "must be printable ASCII without quotes or backslashes");
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut fallback = Route {
            name: DEFAULT_ROUTE.to_string(),
            matcher: RouteMatch {
                path: PathMatch::Any,
                methods: Vec::new(),
                hosts: Vec::new(),
            },
            tenant: defaults,
            jwt: jwt_defaults,
            ratelimit: RouteLimits {
                limits: default_limits,
                mode: Mode::Enforce,
            },
            audit: audit_defaults,
        };
        doc.modes.unwrap_or_default().apply(&mut routes, &mut fallback);
        let upper_case_patterns = doc
            .routes
            .iter()
            .filter_map(|r| pattern(&r.matcher))
            .any(|(_, p)| p.bytes().any(|b| b.is_ascii_uppercase()));
        let mut policy = Policy {
            realm,
            routes,
            fallback,
            tenants,
            tenant,
            jwt,
            paths,
            strip_headers,
            upper_case_patterns,
            stages,
            filter_state: doc.filter_state.unwrap_or(true),
            skip_namespaces,
            limits,
            ratelimit: ratelimit_config,
            audit,
        };
        if policy.audit.is_some() {
            state_audited_claims(&mut policy);
        }
        Ok(policy)
    }
}

/// Behind separate filters the audit filter reads a request's claims from
/// `tollgate.claims`: when the policy audits, every provider puts there the
/// claims the rules read as well (`audit::claims_read`), as the fused
/// filter's events carry them, so an event can be re-decided either way.
fn state_audited_claims(policy: &mut Policy) {
    let claims = crate::audit::claims_read(policy);
    for provider in &mut policy.jwt.providers {
        for claim in &claims {
            if !provider.claims_to_state.contains(claim) {
                provider.claims_to_state.push(claim.clone());
            }
        }
    }
}

/// `stages` as listed (each once), in run order; or the stages the policy
/// has something for.
fn compile_stages(
    doc: &PolicyDoc,
    routes: &[Route],
    defaults: &RouteTenant,
    errors: &mut PolicyErrors,
) -> Vec<StageName> {
    let Some(listed) = &doc.stages else {
        let needs_tenant = !doc.tenants.is_empty() || defaults.required || routes.iter().any(|r| r.tenant.required);
        let mut stages = Vec::new();
        if !doc.jwt.providers.is_empty() {
            stages.push(StageName::Jwt);
        }
        if needs_tenant {
            stages.push(StageName::Tenant);
        }
        let limited = !doc.defaults.limits.is_empty() || doc.routes.iter().any(|r| !r.limits.is_empty());
        if limited {
            stages.push(StageName::Ratelimit);
        }
        if doc.audit.is_some() {
            stages.push(StageName::Audit);
        }
        return stages;
    };
    let mut stages = listed.clone();
    stages.sort();
    stages.dedup();
    if stages.len() != listed.len() {
        errors.push("stages", "lists a stage twice");
    }
    if stages.contains(&StageName::Audit) && doc.audit.is_none() {
        errors.push("stages", "lists audit, but there is no audit section");
    }
    stages
}

/// The `audit` section. Token headers join the headers never captured.
fn compile_audit(doc: &PolicyDoc, jwt: &JwtConfig, errors: &mut PolicyErrors) -> Option<crate::audit::AuditConfig> {
    let section = doc.audit.as_ref()?;
    let token_headers = token_headers(jwt);
    let forbidden: Vec<&str> = token_headers.iter().map(String::as_str).collect();
    Some(crate::audit::AuditConfig::compile(section, "audit", &forbidden, errors))
}

/// Every provider's token header names (lower-case).
pub fn token_headers(jwt: &JwtConfig) -> Vec<String> {
    token_source_names(jwt, |s| match s {
        crate::jwt::config::TokenSource::Header { name, .. } => Some(name),
        _ => None,
    })
}

/// Every provider's token query parameters.
pub fn token_params(jwt: &JwtConfig) -> Vec<String> {
    token_source_names(jwt, |s| match s {
        crate::jwt::config::TokenSource::Param(name) => Some(name),
        _ => None,
    })
}

fn token_source_names(jwt: &JwtConfig, pick: fn(&crate::jwt::config::TokenSource) -> Option<&String>) -> Vec<String> {
    let mut names: Vec<String> = jwt
        .providers
        .iter()
        .flat_map(|p| p.sources.iter())
        .filter_map(pick)
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Each route's `audit`, else `defaults.audit`; returns the fallback's.
fn compile_route_audits(doc: &PolicyDoc, routes: &mut [Route], errors: &mut PolicyErrors) -> crate::audit::RouteAudit {
    use crate::audit::RouteAudit;
    let defaults = doc
        .defaults
        .audit
        .as_ref()
        .map(|a| RouteAudit::compile(a, "defaults.audit", errors))
        .unwrap_or_default();
    for (i, (route, route_doc)) in routes.iter_mut().zip(&doc.routes).enumerate() {
        route.audit = match &route_doc.audit {
            Some(a) => RouteAudit::compile(a, &join(&index("routes", i), "audit"), errors),
            None => defaults,
        };
    }
    let configured = doc.defaults.audit.is_some() || doc.routes.iter().any(|r| r.audit.is_some());
    if configured && doc.audit.is_none() {
        errors.push("audit", "routes set audit, but there is no audit section");
    }
    defaults
}

/// The headers the jwt and tenant stages set, canonical, with their paths.
fn managed_headers(doc: &PolicyDoc, tenant: &TenantConfig) -> Vec<(String, String)> {
    let mut managed = Vec::new();
    let tenant_stage = !doc.tenants.is_empty() || doc.stages.as_ref().is_some_and(|s| s.contains(&StageName::Tenant));
    if tenant_stage {
        managed.push((headers::canonical(&tenant.header), "tenant.header".to_string()));
        managed.push((
            headers::canonical(&tenant.tier_header),
            "tenant.tier_header".to_string(),
        ));
    }
    for (i, p) in doc.jwt.providers.iter().enumerate() {
        let at = join(&index("jwt.providers", i), "claim_to_headers");
        for c in &p.claim_to_headers {
            managed.push((headers::canonical(&c.header_name), at.clone()));
        }
    }
    managed
}

/// Every limit into one table; each route gets `defaults.limits` and its
/// own. Returns the table and the fallback's limits.
fn compile_all_limits(
    doc: &PolicyDoc,
    routes: &mut [Route],
    tenants: &HashMap<String, Tenant>,
    config: &crate::ratelimit::RatelimitConfig,
    managed: &[(String, String)],
    errors: &mut PolicyErrors,
) -> (Vec<crate::ratelimit::Limit>, Vec<usize>) {
    let known = ratelimit::Known {
        tenants,
        service: config.service.is_some(),
        managed,
    };
    let mut table = Vec::new();
    let mut names = HashSet::new();
    let defaults = ratelimit::compile_limits(
        &doc.defaults.limits,
        "defaults.limits",
        &known,
        &mut table,
        &mut names,
        errors,
    );
    for (i, (route, route_doc)) in routes.iter_mut().zip(&doc.routes).enumerate() {
        let at = join(&index("routes", i), "limits");
        let own = ratelimit::compile_limits(&route_doc.limits, &at, &known, &mut table, &mut names, errors);
        route.ratelimit.limits = defaults.iter().copied().chain(own).collect();
    }
    ratelimit::check_total_slots(&table, config.slots_per_limit, errors);
    (table, defaults)
}

fn compile_paths(doc: &PathsDoc, at: &str, errors: &mut PolicyErrors) -> PathSettings {
    let defaults = PathSettings::default();
    let max_bytes = doc.max_bytes.unwrap_or(defaults.max_bytes);
    if !(1..=path::MAX_MAX_BYTES).contains(&max_bytes) {
        errors.push(
            join(at, "max_bytes"),
            format!("{max_bytes} is not in 1..={}", path::MAX_MAX_BYTES),
        );
    }
    PathSettings {
        max_bytes,
        normalization: doc.normalization.unwrap_or(defaults.normalization),
        parameters: doc.parameters.unwrap_or(defaults.parameters),
        escaped_slashes: doc.escaped_slashes.unwrap_or(defaults.escaped_slashes),
        case: doc.case.unwrap_or(defaults.case),
    }
}

/// A route's path pattern: which field gives it, and the pattern.
fn pattern(doc: &MatchDoc) -> Option<(&'static str, &str)> {
    [
        ("exact", &doc.exact),
        ("prefix", &doc.prefix),
        ("template", &doc.template),
    ]
    .into_iter()
    .find_map(|(kind, p)| p.as_deref().map(|p| (kind, p)))
}

/// Two patterns an application reads as one (differing only by a trailing
/// `/`, by case when `paths.case` reads it, or by kind for one path) would
/// get every request to one of them refused as ambiguous; refuse the policy.
fn check_ambiguous_patterns(docs: &[RouteDoc], case: path::CaseReading, errors: &mut PolicyErrors) {
    let fold = |p: &str| {
        let bare = p.strip_suffix('/').filter(|b| !b.is_empty()).unwrap_or(p);
        match case {
            path::CaseReading::RejectRerouting => bare.to_ascii_lowercase(),
            path::CaseReading::Sensitive => bare.to_string(),
        }
    };
    let mut seen: HashMap<String, (usize, &str, &str)> = HashMap::with_capacity(docs.len());
    for (i, doc) in docs.iter().enumerate() {
        let Some((kind, p)) = pattern(&doc.matcher).filter(|(_, p)| *p != "/") else {
            continue;
        };
        match seen.get(&fold(p)) {
            Some(&(j, other_kind, other)) if (other_kind, other) != (kind, p) => errors.push(
                join(&join(&index("routes", i), "match"), kind),
                format!(
                    "'{p}' and routes[{j}].match.{other_kind} '{other}' are one path to an application that \
                     ignores case or a trailing '/': requests to them would be refused as ambiguous; merge them"
                ),
            ),
            Some(_) => {}
            None => {
                seen.insert(fold(p), (i, kind, p));
            }
        }
    }
}

/// A case-insensitive application reads `/T/acme` as `/t/acme`: with an
/// upper-case path prefix every path-tenant request would be refused.
fn check_path_prefix_case(prefix: Option<&str>, case: path::CaseReading, errors: &mut PolicyErrors) {
    let upper = prefix.is_some_and(|p| p.bytes().any(|b| b.is_ascii_uppercase()));
    if upper && case == path::CaseReading::RejectRerouting {
        errors.push(
            "tenant.path_prefix",
            "must be lower-case while paths.case is reject_rerouting (or set paths.case: sensitive)",
        );
    }
}

fn compile_routes(
    docs: &[RouteDoc],
    defaults: RouteTenant,
    jwt: &JwtConfig,
    jwt_defaults: &RouteJwt,
    errors: &mut PolicyErrors,
) -> Vec<Route> {
    let mut routes: Vec<Route> = Vec::with_capacity(docs.len());
    let mut names = HashSet::with_capacity(docs.len());
    for (i, doc) in docs.iter().enumerate() {
        let path = index("routes", i);
        let name_path = join(&path, "name");
        if let Err(why) = check_name(&doc.name) {
            errors.push(&name_path, why);
        } else if doc.name == DEFAULT_ROUTE {
            errors.push(&name_path, "'default' is reserved for requests no route matches");
        } else if !names.insert(doc.name.as_str()) {
            errors.push(&name_path, format!("duplicate route name '{}'", doc.name));
        }
        let matcher = compile_match(&doc.matcher, &join(&path, "match"), errors);
        let tenant = compile_route_tenant(&doc.tenant, Some(defaults), &join(&path, "tenant"), errors);
        let route_jwt = jwt.compile_route(&doc.jwt, Some(jwt_defaults), &join(&path, "jwt"), errors);
        routes.push(Route {
            name: doc.name.clone(),
            matcher,
            tenant,
            jwt: route_jwt,
            ratelimit: RouteLimits::default(),
            audit: crate::audit::RouteAudit::default(),
        });
    }
    routes
}

pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!("'{name}' may hold only letters, digits, '-', '_' and '.'"));
    }
    Ok(())
}

fn compile_match(doc: &MatchDoc, path: &str, errors: &mut PolicyErrors) -> RouteMatch {
    let given = [&doc.exact, &doc.prefix, &doc.template]
        .iter()
        .filter(|p| p.is_some())
        .count();
    if given > 1 {
        errors.push(path, "give at most one of exact, prefix and template");
    }
    let path_match = if let Some(p) = &doc.exact {
        check_normalized(p, &join(path, "exact"), errors);
        PathMatch::Exact(p.clone())
    } else if let Some(p) = &doc.prefix {
        check_normalized(p, &join(path, "prefix"), errors);
        PathMatch::Prefix(p.clone())
    } else if let Some(t) = &doc.template {
        match route::parse_template(t) {
            Ok(segments) => {
                check_normalized(&t.replace('*', "x"), &join(path, "template"), errors);
                PathMatch::Template(segments)
            }
            Err(why) => {
                errors.push(join(path, "template"), why);
                PathMatch::Any
            }
        }
    } else {
        PathMatch::Any
    };
    let methods = compile_methods(&doc.methods, &join(path, "methods"), errors);
    let mut hosts = Vec::with_capacity(doc.hosts.len());
    for (i, h) in doc.hosts.iter().enumerate() {
        match compile_host(h) {
            Ok(host) => hosts.push(host),
            Err(why) => errors.push(index(&join(path, "hosts"), i), why),
        }
    }
    RouteMatch {
        path: path_match,
        methods,
        hosts,
    }
}

/// A rule written in a form requests never take after normalization would
/// silently never match; refuse it instead. (`;` is refused by either
/// `paths.parameters` mode: rejected, or stripped before matching.)
fn check_normalized(p: &str, path: &str, errors: &mut PolicyErrors) {
    if !p.starts_with('/') {
        errors.push(path, format!("'{p}' must start with '/'"));
        return;
    }
    match path::normalize(p.as_bytes()) {
        Ok(normalized) if normalized == p => {}
        Ok(normalized) => errors.push(
            path,
            format!("'{p}' is not normalized (requests are matched as '{normalized}')"),
        ),
        Err(e) => errors.push(
            path,
            format!("'{p}' can never match: a request path that {} is refused", e.0),
        ),
    }
}

fn compile_host(h: &str) -> Result<HostMatch, String> {
    let lower = h.to_ascii_lowercase();
    let valid = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
    if let Some(suffix) = lower.strip_prefix("*.") {
        if valid(suffix) {
            return Ok(HostMatch::Suffix(format!(".{suffix}")));
        }
    } else if valid(&lower) {
        return Ok(HostMatch::Exact(lower));
    }
    Err(format!("'{h}' is not a host name or '*.domain' pattern"))
}

fn compile_route_tenant(
    doc: &RouteTenantDoc,
    defaults: Option<RouteTenant>,
    path: &str,
    errors: &mut PolicyErrors,
) -> RouteTenant {
    let base = defaults.unwrap_or(RouteTenant {
        required: false,
        missing_status: 400,
        mode: Mode::Enforce,
    });
    let missing_status = doc.missing_status.unwrap_or(base.missing_status);
    if missing_status != 400 && missing_status != 401 {
        errors.push(
            join(path, "missing_status"),
            format!("{missing_status} is not 400 or 401"),
        );
    }
    RouteTenant {
        required: doc.required.unwrap_or(base.required),
        missing_status,
        mode: doc.mode.unwrap_or(base.mode),
    }
}

fn compile_tenants(
    docs: &[TenantDoc],
    config: &TenantConfig,
    routes: &HashSet<&str>,
    errors: &mut PolicyErrors,
) -> HashMap<String, Tenant> {
    let mut tenants = HashMap::with_capacity(docs.len());
    for (i, doc) in docs.iter().enumerate() {
        let path = index("tenants", i);
        if let Err(why) = config.check_id(doc.id.as_bytes()) {
            errors.push(join(&path, "id"), why);
        }
        let tier = doc.tier.clone().unwrap_or_else(|| "standard".to_string());
        if let Err(why) = check_name(&tier) {
            errors.push(join(&path, "tier"), why);
        }
        if let Some(allowed) = &doc.routes {
            for (j, name) in allowed.iter().enumerate() {
                if name != DEFAULT_ROUTE && !routes.contains(name.as_str()) {
                    errors.push(index(&join(&path, "routes"), j), format!("no route is named '{name}'"));
                }
            }
        }
        let tenant = Tenant {
            id: doc.id.clone(),
            status: doc.status,
            tier,
            routes: doc.routes.clone(),
            index: i,
        };
        if tenants.insert(doc.id.to_ascii_lowercase(), tenant).is_some() {
            errors.push(
                join(&path, "id"),
                format!("duplicate tenant id '{}' (ids ignore case)", doc.id),
            );
        }
    }
    tenants
}

#[cfg(test)]
mod tests;
