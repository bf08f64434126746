//! The rate limit part of the policy: `defaults.limits`, each route's
//! `limits` and the `ratelimit` section. Decisions on requests are in
//! `crate::ratelimit`.

use super::errors::{index, join, PolicyErrors};
use super::tenant::Tenant;
use crate::ratelimit::{FailureMode, HeaderStyle, KeyPart, Limit, Period, RatelimitConfig, Scope, ServiceConfig};
use crate::Mode;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitDoc {
    pub name: String,
    /// Any of `tenant`, `tier`, `subject`, `client_ip`, `route`, `header:<name>`.
    pub key: Vec<String>,
    pub requests: u64,
    pub period: Period,
    #[serde(default)]
    pub burst: Option<u64>,
    /// Requests per period for tenants of a tier.
    #[serde(default)]
    pub tiers: Option<BTreeMap<String, u64>>,
    /// Requests per period for one tenant.
    #[serde(default)]
    pub tenants: Option<BTreeMap<String, u64>>,
    #[serde(default)]
    pub scope: Option<Scope>,
    #[serde(default)]
    pub mode: Option<Mode>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RatelimitDoc {
    #[serde(default)]
    pub headers: Option<HeaderStyle>,
    #[serde(default)]
    pub client_ip: Option<ClientIpDoc>,
    #[serde(default)]
    pub slots_per_limit: Option<u64>,
    #[serde(default)]
    pub service: Option<ServiceDoc>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientIpDoc {
    #[serde(default)]
    pub xff_trusted_hops: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDoc {
    /// The cluster of the rate limit service (HTTP/2): a plain name
    /// locally, `outbound|8081||ratelimit.example.com` in Istio.
    pub cluster: String,
    /// The RLS domain (default `tollgate`).
    #[serde(default)]
    pub domain: Option<String>,
    /// Default 20.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// `allow` (default) or `deny` when the service fails or is late.
    #[serde(default)]
    pub failure_mode: Option<FailureMode>,
}

/// Most slots of all local limits together: every one is written when the
/// policy first loads and stays in Envoy's memory (about 100 bytes each).
pub const MAX_TOTAL_SLOTS: u64 = 2_000_000;

/// The local limits' slot tables must fit `MAX_TOTAL_SLOTS`.
pub fn check_total_slots(limits: &[Limit], slots_per_limit: u32, errors: &mut PolicyErrors) {
    let local = limits.iter().filter(|l| l.scope == Scope::Local).count() as u64;
    let total = local.saturating_mul(u64::from(slots_per_limit));
    if total > MAX_TOTAL_SLOTS {
        errors.push(
            "ratelimit.slots_per_limit",
            format!(
                "{local} local limits x {slots_per_limit} slots = {total} slots (about {} MB of Envoy memory); \
                 at most {MAX_TOTAL_SLOTS}",
                total / 10_000
            ),
        );
    }
}

/// Most slots per limit: each is about 100 bytes of Envoy's memory.
pub const MAX_SLOTS: u64 = 1_000_000;
/// Most limits a policy defines (counters and slot tables are per limit).
pub const MAX_LIMITS: usize = 256;
const MAX_KEY_PARTS: usize = 8;

pub fn compile_config(doc: &RatelimitDoc, errors: &mut PolicyErrors) -> RatelimitConfig {
    let at = "ratelimit";
    let hops = doc.client_ip.as_ref().and_then(|c| c.xff_trusted_hops).unwrap_or(0);
    if hops > 16 {
        errors.push(
            join(&join(at, "client_ip"), "xff_trusted_hops"),
            format!("must be 0 to 16, not {hops}"),
        );
    }
    let slots = super::errors::bounded(
        doc.slots_per_limit,
        u64::from(crate::ratelimit::DEFAULT_SLOTS),
        1..=MAX_SLOTS,
        &join(at, "slots_per_limit"),
        errors,
    );
    let service = doc
        .service
        .as_ref()
        .map(|s| compile_service(s, &join(at, "service"), errors));
    RatelimitConfig {
        headers: doc.headers.unwrap_or_default(),
        xff_trusted_hops: u32::try_from(hops.min(16)).unwrap_or(0),
        slots_per_limit: u32::try_from(slots).unwrap_or(crate::ratelimit::DEFAULT_SLOTS),
        service,
    }
}

fn compile_service(doc: &ServiceDoc, at: &str, errors: &mut PolicyErrors) -> ServiceConfig {
    if doc.cluster.is_empty() || doc.cluster.len() > 255 || doc.cluster.bytes().any(|b| !b.is_ascii_graphic()) {
        errors.push(
            join(at, "cluster"),
            "must be a cluster name (1 to 255 printable characters)",
        );
    }
    let domain = doc.domain.clone().unwrap_or_else(|| "tollgate".to_string());
    if domain.is_empty() || domain.len() > 255 || domain.bytes().any(|b| !b.is_ascii_graphic()) {
        errors.push(join(at, "domain"), "must be 1 to 255 printable characters");
    }
    let timeout_ms = super::errors::bounded(doc.timeout_ms, 20, 1..=60_000, &join(at, "timeout_ms"), errors);
    ServiceConfig {
        cluster: doc.cluster.clone(),
        domain,
        timeout: Duration::from_millis(timeout_ms),
        failure_mode: doc.failure_mode.unwrap_or_default(),
    }
}

/// What the policy knows that limits refer to.
pub struct Known<'a> {
    pub tenants: &'a HashMap<String, Tenant>,
    pub service: bool,
    /// Headers the stages before set (canonical name, what sets it): the
    /// fused filter's rate limit stage sees them as the client sent them.
    pub managed: &'a [(String, String)],
}

/// Compiles a list of limits (`defaults.limits`, `routes[i].limits`) into
/// `table`, returning their positions there. Names are unique across the
/// policy: a name is a bucket and a metric tag.
pub fn compile_limits(
    docs: &[LimitDoc],
    at: &str,
    known: &Known<'_>,
    table: &mut Vec<Limit>,
    names: &mut HashSet<String>,
    errors: &mut PolicyErrors,
) -> Vec<usize> {
    let mut positions = Vec::with_capacity(docs.len());
    for (i, doc) in docs.iter().enumerate() {
        let path = index(at, i);
        if !names.insert(doc.name.clone()) {
            errors.push(join(&path, "name"), format!("duplicate limit name '{}'", doc.name));
            continue;
        }
        if table.len() >= MAX_LIMITS {
            errors.push(&path, format!("a policy may define at most {MAX_LIMITS} limits"));
            continue;
        }
        positions.push(table.len());
        table.push(compile_limit(doc, &path, known, errors));
    }
    positions
}

fn compile_limit(doc: &LimitDoc, at: &str, known: &Known<'_>, errors: &mut PolicyErrors) -> Limit {
    if let Err(why) = super::check_name(&doc.name) {
        errors.push(join(at, "name"), why);
    }
    let key = compile_key(&doc.key, &join(at, "key"), known.managed, errors);
    let period = doc.period;
    let scope = doc.scope.unwrap_or_default();
    let burst = doc.burst.unwrap_or(0);
    let max = u64::from(u32::MAX);
    check_count(doc.requests, max, &join(at, "requests"), errors);
    check_count(burst, max, &join(at, "burst"), errors);
    if scope == Scope::Global {
        if burst > 0 {
            errors.push(
                join(at, "burst"),
                "applies to local limits only: the rate limit service counts fixed windows",
            );
        }
        if !known.service {
            errors.push(join(at, "scope"), "a global limit needs ratelimit.service");
        }
    }
    let tier_names: HashSet<&str> = known.tenants.values().map(|t| t.tier.as_str()).collect();
    let mut tiers = Vec::new();
    for (tier, n) in doc.tiers.iter().flatten() {
        let path = join(&join(at, "tiers"), tier);
        if !tier_names.contains(tier.as_str()) {
            errors.push(&path, format!("no tenant has tier '{tier}'"));
        }
        check_count(*n, max, &path, errors);
        tiers.push((tier.clone(), *n));
    }
    let mut tenants = Vec::new();
    for (id, n) in doc.tenants.iter().flatten() {
        let path = join(&join(at, "tenants"), id);
        if !known.tenants.contains_key(&id.to_ascii_lowercase()) {
            errors.push(&path, format!("no tenant '{id}' in tenants"));
        }
        check_count(*n, max, &path, errors);
        tenants.push((id.to_ascii_lowercase(), *n));
    }
    Limit {
        name: doc.name.clone(),
        key,
        requests: doc.requests,
        period,
        burst,
        tiers,
        tenants,
        scope,
        mode: doc.mode.unwrap_or_default(),
    }
}

/// Counts go into descriptors as 32-bit numbers.
fn check_count(n: u64, max: u64, path: &str, errors: &mut PolicyErrors) {
    if n > max {
        errors.push(path, format!("must be at most {max}, not {n}"));
    }
}

fn compile_key(parts: &[String], at: &str, managed: &[(String, String)], errors: &mut PolicyErrors) -> Vec<KeyPart> {
    if parts.is_empty() {
        errors.push(
            at,
            "give at least one key part (tenant, tier, subject, client_ip, route or header:<name>)",
        );
    }
    if parts.len() > MAX_KEY_PARTS {
        errors.push(at, format!("at most {MAX_KEY_PARTS} key parts"));
    }
    let set_by = |name: &str| {
        let name = super::headers::canonical(name);
        managed.iter().find(|(m, _)| *m == name).map(|(_, by)| by.as_str())
    };
    let mut key: Vec<KeyPart> = Vec::with_capacity(parts.len());
    for (i, text) in parts.iter().enumerate() {
        match KeyPart::parse(text) {
            Some(part) if key.contains(&part) => errors.push(index(at, i), format!("'{text}' is listed twice")),
            Some(KeyPart::Header(name)) if set_by(&name).is_some() => errors.push(
                index(at, i),
                format!(
                    "'{text}' is a header the filters set ({}): a limit would count the client's copy; key on tenant, tier or subject",
                    set_by(&name).unwrap_or_default()
                ),
            ),
            Some(part) => key.push(part),
            None => errors.push(
                index(at, i),
                format!("unknown key kind '{text}': use tenant, tier, subject, client_ip, route or header:<name>"),
            ),
        }
    }
    key
}
