//! Which tenant a request belongs to, and whether it may pass.

use crate::decision::{self, Action};
pub use crate::policy::tenant::{Tenant, TenantConfig, DEFAULT_MAX_ID_LENGTH};
use crate::policy::wire::{TenantSource, TenantStatus};
use crate::policy::{Policy, Route};
use crate::reply::Denial;
use crate::route::RequestHead;
use crate::Mode;
use serde::Serialize;

/// Filter-state key the jwt filter writes (the reason) when it lets a
/// request through that enforce mode would refuse.
pub use crate::state::JWT_SHADOW_DENIED;
/// What the glue read from the request.
#[derive(Debug, Clone, Copy)]
pub struct TenantRequest<'a> {
    pub head: RequestHead<'a>,
    /// `tollgate.tenant` from filter state, set by the jwt filter.
    pub claim: Option<&'a [u8]>,
    /// Every value of the tenant header the client sent, in any spelling
    /// (`header_values`).
    pub header_values: &'a [&'a [u8]],
    /// The jwt filter shadow-denied the request (`tollgate.jwt_shadow_denied`):
    /// a tenant from a client-chosen source must not be stamped as verified.
    pub jwt_shadow_denied: bool,
}

/// Every value of the tenant header, in each spelling a CGI-style server
/// reads as the same variable (`x_tenant_id`): all are sources, so a
/// disagreeing one is refused rather than silently dropped.
pub fn header_values<'h>(config: &TenantConfig, headers: &'h crate::header_map::HeaderMap) -> Vec<&'h [u8]> {
    headers
        .iter()
        .filter(|(name, _)| crate::headers::same_variable(name, &config.header))
        .map(|(_, value)| value)
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantDenial {
    Invalid,
    Mismatch,
    Required {
        status: u16,
    },
    Unknown,
    Suspended,
    RouteForbidden,
    /// A tenant from a client-chosen source on a request the jwt filter
    /// shadow-denied: only ever a shadow denial.
    Unverified,
}

impl TenantDenial {
    pub const ALL: [TenantDenial; 7] = [
        TenantDenial::Invalid,
        TenantDenial::Mismatch,
        TenantDenial::Required { status: 400 },
        TenantDenial::Unknown,
        TenantDenial::Suspended,
        TenantDenial::RouteForbidden,
        TenantDenial::Unverified,
    ];

    pub fn denial(self) -> Denial {
        let (status, reason, message) = match self {
            TenantDenial::Invalid => (400, "tenant_invalid", "tenant id is malformed"),
            TenantDenial::Mismatch => (403, "tenant_mismatch", "tenant sources disagree"),
            TenantDenial::Required { status } => (status, "tenant_required", "this route requires a tenant"),
            TenantDenial::Unknown => (403, "tenant_unknown", "tenant is not known"),
            TenantDenial::Suspended => (403, "tenant_suspended", "tenant is suspended"),
            TenantDenial::RouteForbidden => (403, "tenant_route_forbidden", "tenant may not use this route"),
            TenantDenial::Unverified => (401, "tenant_unverified", "tenant is not verified by a token"),
        };
        Denial {
            status,
            reason,
            message,
            bearer_error: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved<'p> {
    pub tenant: &'p Tenant,
    pub source: TenantSource,
}

#[derive(Debug, Clone, Copy)]
pub struct TenantDecision<'p> {
    pub route: &'p Route,
    /// `Ok(None)`: no tenant, and the route does not need one.
    pub verdict: Result<Option<Resolved<'p>>, TenantDenial>,
    /// Shadow whatever the route's mode: the jwt stage let it through in shadow.
    pub forced_shadow: bool,
    /// The tenant header a shadow-denied request goes on with.
    pub shadow_header: ShadowHeader<'p>,
}

/// The tenant header of a request that goes on though denied (shadow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowHeader<'p> {
    /// As the client sent it (no verified tenant to contradict it): the
    /// application relies on it during rollout.
    AsSent,
    /// The verified claim's tenant, in its policy form: a client-sent one
    /// may contradict what the token proves.
    Claim(&'p Tenant),
    /// Removed: the claim names no known tenant, or the jwt filter
    /// shadow-denied the request (nothing verified it).
    Removed,
}

/// Decides the request's tenant. Order of checks: malformed ids (400), sources
/// that disagree (403), none where one is required, then unknown, suspended
/// and route not allowed.
pub fn decide<'p>(policy: &'p Policy, req: &TenantRequest<'_>) -> TenantDecision<'p> {
    decide_on(policy, policy.route(&req.head), req)
}

/// `decide` on a route already matched (`RequestView::route`).
pub fn decide_on<'p>(policy: &'p Policy, route: &'p Route, req: &TenantRequest<'_>) -> TenantDecision<'p> {
    let mut verdict = resolve(policy, route, req);
    // Claim is absent here (the jwt filter published none), so the tenant
    // came from the client: enforce mode would have refused the request.
    let forced_shadow = req.jwt_shadow_denied && matches!(verdict, Ok(Some(_)));
    if forced_shadow {
        verdict = Err(TenantDenial::Unverified);
    }
    TenantDecision {
        route,
        verdict,
        forced_shadow,
        shadow_header: shadow_header(policy, req),
    }
}

fn shadow_header<'p>(policy: &'p Policy, req: &TenantRequest<'_>) -> ShadowHeader<'p> {
    let claim = req
        .claim
        .filter(|_| policy.tenant.sources.contains(&TenantSource::Claim));
    match claim {
        Some(id) => {
            let key = String::from_utf8_lossy(id.trim_ascii()).to_ascii_lowercase();
            policy
                .tenants
                .get(&key)
                .map_or(ShadowHeader::Removed, ShadowHeader::Claim)
        }
        None if req.jwt_shadow_denied => ShadowHeader::Removed,
        None => ShadowHeader::AsSent,
    }
}

fn resolve<'p>(
    policy: &'p Policy,
    route: &Route,
    req: &TenantRequest<'_>,
) -> Result<Option<Resolved<'p>>, TenantDenial> {
    let config = &policy.tenant;
    let mut first: Option<(TenantSource, &[u8])> = None;
    for &source in &config.sources {
        for value in candidates(config, source, req) {
            let value = value.trim_ascii();
            config.check_id(value).map_err(|_| TenantDenial::Invalid)?;
            match first {
                None => first = Some((source, value)),
                Some((_, seen)) if !seen.eq_ignore_ascii_case(value) => return Err(TenantDenial::Mismatch),
                Some(_) => {}
            }
        }
    }
    let Some((source, id)) = first else {
        return if route.tenant.required {
            Err(TenantDenial::Required {
                status: route.tenant.missing_status,
            })
        } else {
            Ok(None)
        };
    };
    let key = String::from_utf8_lossy(id).to_ascii_lowercase();
    let tenant = policy.tenants.get(&key).ok_or(TenantDenial::Unknown)?;
    if tenant.status == TenantStatus::Suspended {
        return Err(TenantDenial::Suspended);
    }
    if let Some(allowed) = &tenant.routes {
        if !allowed.contains(&route.name) {
            return Err(TenantDenial::RouteForbidden);
        }
    }
    Ok(Some(Resolved { tenant, source }))
}

/// Every tenant value the request carries, by source, in the configured
/// order (for the audit event: a candidate policy re-decides on them).
pub fn sources_seen<'a>(config: &TenantConfig, req: &TenantRequest<'a>) -> Vec<(TenantSource, &'a [u8])> {
    config
        .sources
        .iter()
        .flat_map(|&source| candidates(config, source, req).into_iter().map(move |v| (source, v)))
        .collect()
}

fn candidates<'a>(config: &TenantConfig, source: TenantSource, req: &TenantRequest<'a>) -> Vec<&'a [u8]> {
    match source {
        TenantSource::Claim => req.claim.into_iter().collect(),
        TenantSource::Header => req.header_values.to_vec(),
        TenantSource::Host => config.from_host(req.head.host).map(str::as_bytes).into_iter().collect(),
        TenantSource::Path => config
            .split_path(req.head.path)
            .map(|(id, _)| id.as_bytes())
            .into_iter()
            .collect(),
    }
}

impl<'p> TenantDecision<'p> {
    pub fn mode(&self) -> Mode {
        if self.forced_shadow {
            Mode::Shadow
        } else {
            self.route.tenant.mode
        }
    }

    pub fn action(&self) -> Action {
        Action::new(self.verdict.err().map(TenantDenial::denial), self.mode())
    }

    /// Counter to bump, one of `metric_names()`.
    pub fn metric(&self) -> String {
        let allowed = match self.verdict {
            Ok(Some(_)) => "allowed",
            _ => "allowed_without_tenant",
        };
        self.action().metric("tenant", allowed)
    }

    /// Index of `metric()` in `metric_names()`.
    pub fn metric_index(&self) -> usize {
        match (self.verdict, self.mode()) {
            (Ok(Some(_)), _) => METRICS.own(0),
            (Ok(None), _) => METRICS.own(1),
            (Err(d), mode) => METRICS.denied(d.index(), mode),
        }
    }

    /// Request-header edits, applied in order: `Some` replaces every copy
    /// (Envoy's replace drops all client-sent values), `None` removes them.
    /// Client-sent routing headers never reach the application, in any
    /// spelling (`x_tenant_id`). In shadow mode a denied request never gets
    /// a client-sent tier, and its tenant header is `shadow_header`: the
    /// verified claim's tenant, else removed when the jwt filter
    /// shadow-denied it, else as sent (the application still relies on it
    /// during rollout).
    pub fn header_edits<'a>(
        &self,
        config: &'a TenantConfig,
        headers: &'a crate::header_map::HeaderMap,
    ) -> Vec<(&'a str, Option<&'a str>)>
    where
        'p: 'a,
    {
        let (header, tier) = (config.header.as_str(), config.tier_header.as_str());
        let mut edits: Vec<(&'a str, Option<&'a str>)> = Vec::new();
        if matches!(self.action(), Action::Deny(_)) {
            return edits;
        }
        for managed in [header, tier] {
            for name in crate::headers::spellings(headers, managed) {
                if name != managed {
                    edits.push((name, None));
                }
            }
        }
        match (self.action(), self.verdict) {
            (Action::Allow, Ok(Some(r))) => {
                for (name, value) in [(header, r.tenant.id.as_str()), (tier, r.tenant.tier.as_str())] {
                    if !holds_only(headers, name, value) {
                        edits.push((name, Some(value)));
                    }
                }
            }
            (Action::Allow, _) => {
                let sent = |name: &str| headers.iter().any(|(k, _)| k == name);
                edits.extend([header, tier].into_iter().filter(|n| sent(n)).map(|n| (n, None)));
            }
            _ => {
                match self.shadow_header {
                    ShadowHeader::AsSent => {}
                    ShadowHeader::Claim(t) => edits.push((header, Some(t.id.as_str()))),
                    ShadowHeader::Removed => edits.push((header, None)),
                }
                edits.push((tier, None));
            }
        }
        edits
    }

    /// Filter-state writes: the decision always, the tenant when resolved.
    pub fn properties(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut out = vec![(crate::state::DECISION_TENANT, self.record())];
        if let Ok(Some(r)) = self.verdict {
            out.push((crate::state::TENANT, r.tenant.id.clone().into_bytes()));
            out.push((crate::state::TENANT_TIER, r.tenant.tier.clone().into_bytes()));
        }
        out
    }

    /// The decision for `tollgate.decision.tenant` in filter state (audit reads it).
    pub fn record(&self) -> Vec<u8> {
        let resolved = self.verdict.ok().flatten();
        let extra = Extra {
            tenant: resolved.map(|r| r.tenant.id.as_str()),
            source: resolved.map(|r| r.source),
        };
        decision::record("tenant", &self.route.name, self.mode(), self.action(), extra)
    }
}

/// The request already has exactly this header once, with this value:
/// setting it would be a hostcall for nothing.
fn holds_only(headers: &crate::header_map::HeaderMap, name: &str, value: &str) -> bool {
    let mut copies = headers.iter().filter(|(k, _)| *k == name);
    matches!((copies.next(), copies.next()), (Some((_, v)), None) if v == value.as_bytes())
}

#[derive(Serialize)]
struct Extra<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<TenantSource>,
}

impl TenantDenial {
    /// Position in `ALL`.
    fn index(self) -> usize {
        match self {
            TenantDenial::Invalid => 0,
            TenantDenial::Mismatch => 1,
            TenantDenial::Required { .. } => 2,
            TenantDenial::Unknown => 3,
            TenantDenial::Suspended => 4,
            TenantDenial::RouteForbidden => 5,
            TenantDenial::Unverified => 6,
        }
    }
}

/// The tenant stage's own counters, then per denial (`TenantDenial::ALL`).
const OWN_METRICS: [&str; 2] = ["allowed", "allowed_without_tenant"];
const METRICS: crate::metrics::MetricTable =
    crate::metrics::MetricTable::new(OWN_METRICS.len(), TenantDenial::ALL.len());

/// Index of `denial.metric("tenant")` in `metric_names()`.
pub fn request_metric_index(denial: crate::request::RequestDenial) -> usize {
    METRICS.request(denial)
}

/// Every counter the tenant filter keeps, defined once at configure time.
/// Indices: `TenantDecision::metric_index`, `request_metric_index`.
pub fn metric_names() -> Vec<String> {
    let denials: Vec<crate::reply::Denial> = TenantDenial::ALL.iter().map(|d| d.denial()).collect();
    METRICS.names("tenant", &OWN_METRICS, &denials)
}

#[cfg(test)]
mod tests;
