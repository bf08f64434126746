//! Rate limits: which limits a request counts against, the keys it counts
//! under, the local buckets (`bucket`), the rate limit service's protocol
//! (`rls`) and the answer's headers (`answer`). The policy's side is in
//! `policy::ratelimit`.

pub mod answer;
pub mod bucket;
pub mod key;
pub mod rls;

use crate::reply::Denial;
use crate::Mode;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A limit's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    #[default]
    Second,
    Minute,
    Hour,
    Day,
}

impl Period {
    pub fn seconds(self) -> u64 {
        match self {
            Period::Second => 1,
            Period::Minute => 60,
            Period::Hour => 3600,
            Period::Day => 86_400,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Second => "second",
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
        }
    }
}

/// Where a limit is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// In this Envoy's shared data: one count for all its workers.
    #[default]
    Local,
    /// By the rate limit service: one count for every Envoy that calls it.
    Global,
}

/// Which rate limit headers answers carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeaderStyle {
    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
    #[default]
    Ietf,
    /// `X-RateLimit-Limit`, `-Remaining`, `-Reset`.
    XRatelimit,
    None,
}

/// What a global limit does when the service does not answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    #[default]
    Allow,
    Deny,
}

/// One part of a limit's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    Tenant,
    Tier,
    Subject,
    ClientIp,
    Route,
    /// A request header's first value (name lower-case).
    Header(String),
}

impl KeyPart {
    /// `tenant`, ..., `header:<name>`; `None` for anything else.
    pub fn parse(text: &str) -> Option<KeyPart> {
        Some(match text {
            "tenant" => KeyPart::Tenant,
            "tier" => KeyPart::Tier,
            "subject" => KeyPart::Subject,
            "client_ip" => KeyPart::ClientIp,
            "route" => KeyPart::Route,
            _ => {
                let name = text.strip_prefix("header:")?;
                let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
                if name.is_empty() || name.len() > 128 || !name.bytes().all(token) || name.starts_with(':') {
                    return None;
                }
                KeyPart::Header(name.to_ascii_lowercase())
            }
        })
    }

    /// The descriptor entry's key (`header.x-api-key` for a header).
    pub fn label(&self) -> String {
        match self {
            KeyPart::Tenant => "tenant".into(),
            KeyPart::Tier => "tier".into(),
            KeyPart::Subject => "subject".into(),
            KeyPart::ClientIp => "client_ip".into(),
            KeyPart::Route => "route".into(),
            KeyPart::Header(name) => format!("header.{name}"),
        }
    }
}

/// A limit, as the policy defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub name: String,
    pub key: Vec<KeyPart>,
    pub requests: u64,
    pub period: Period,
    /// Unused requests carried into the next windows, at most this many.
    pub burst: u64,
    /// Requests per period by tier.
    pub tiers: Vec<(String, u64)>,
    /// Requests per period by tenant id (lower-case: ids ignore case).
    pub tenants: Vec<(String, u64)>,
    pub scope: Scope,
    pub mode: Mode,
}

impl Limit {
    /// Requests per period for a request of this tenant and tier: the
    /// tenant's own number, else its tier's, else `requests`.
    pub fn requests_for(&self, tenant: Option<&str>, tier: Option<&str>) -> u64 {
        let by_tenant = tenant.and_then(|t| {
            self.tenants
                .iter()
                .find(|(id, _)| id.eq_ignore_ascii_case(t))
                .map(|(_, n)| *n)
        });
        let by_tier = || tier.and_then(|t| self.tiers.iter().find(|(name, _)| name == t).map(|(_, n)| *n));
        by_tenant.or_else(by_tier).unwrap_or(self.requests)
    }
}

/// The `ratelimit` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatelimitConfig {
    pub headers: HeaderStyle,
    /// 0: the downstream address; n: the n-th address from the right of
    /// `X-Forwarded-For`.
    pub xff_trusted_hops: u32,
    pub slots_per_limit: u32,
    pub service: Option<ServiceConfig>,
}

impl Default for RatelimitConfig {
    fn default() -> RatelimitConfig {
        RatelimitConfig {
            headers: HeaderStyle::Ietf,
            xff_trusted_hops: 0,
            slots_per_limit: DEFAULT_SLOTS,
            service: None,
        }
    }
}

pub const DEFAULT_SLOTS: u32 = 10_000;

/// The rate limit service global limits are counted by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    pub cluster: String,
    pub domain: String,
    pub timeout: Duration,
    pub failure_mode: FailureMode,
}

/// A request over one of its limits.
pub const RATE_LIMITED: Denial = Denial {
    status: 429,
    reason: "rate_limited",
    message: "rate limit exceeded",
    bearer_error: None,
};

/// The rate limit service failed and `failure_mode` is `deny` (Envoy's
/// `ratelimit` filter answers 500 then too).
pub const SERVICE_FAILED: Denial = Denial {
    status: 500,
    reason: "rate_limit_service_failed",
    message: "rate limit service unavailable",
    bearer_error: None,
};

pub const DENIALS: [Denial; 2] = [RATE_LIMITED, SERVICE_FAILED];

/// The stage's own counters (`tollgate.ratelimit.<name>`), in index order.
pub const OWN_METRICS: [&str; 8] = [
    "allowed",
    "cas_retries_exhausted",
    "slots_full",
    "shared_data_failed",
    "service_error",
    "service_timeout",
    "failure_mode_allowed",
    "failure_mode_denied",
];

/// Index of an own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Allowed = 0,
    CasRetriesExhausted = 1,
    SlotsFull = 2,
    SharedDataFailed = 3,
    ServiceError = 4,
    ServiceTimeout = 5,
    FailureModeAllowed = 6,
    FailureModeDenied = 7,
}

const TABLE: crate::metrics::MetricTable = crate::metrics::MetricTable::new(OWN_METRICS.len(), DENIALS.len());

pub fn metric_names() -> Vec<String> {
    TABLE.names("ratelimit", &OWN_METRICS, &DENIALS)
}

pub fn counter_index(counter: Counter) -> usize {
    TABLE.own(counter as usize)
}

/// Index of a denial's counter in `mode`.
pub fn denied_index(denial: Denial, mode: Mode) -> usize {
    let i = DENIALS.iter().position(|d| *d == denial).unwrap_or(0);
    TABLE.denied(i, mode)
}

pub fn request_metric_index(denial: crate::request::RequestDenial) -> usize {
    TABLE.request(denial)
}

/// Per-limit counters, in the order `limit_metric_index` uses:
/// `tollgate.ratelimit.limit.<name>.{allowed,limited,shadow_limited}`.
/// Envoy's tag extraction turns the name into a `limit` tag
/// (`LIMIT_TAG_REGEX`).
pub const LIMIT_OUTCOMES: [&str; 3] = ["allowed", "limited", "shadow_limited"];

/// Envoy `stats_tags` regex that makes a limit's name the `limit` tag
/// (Envoy names a wasm counter `wasmcustom.<name>`).
pub const LIMIT_TAG_REGEX: &str =
    r"^wasmcustom\.tollgate\.ratelimit\.limit\.((.+?)\.)(?:allowed|limited|shadow_limited)$";

pub fn limit_metric_names(limits: &[Limit]) -> Vec<String> {
    limits
        .iter()
        .flat_map(|l| {
            LIMIT_OUTCOMES
                .iter()
                .map(move |o| format!("tollgate.ratelimit.limit.{}.{o}", l.name))
        })
        .collect()
}

/// Envoy `stats_tags` regex that makes a tenant id (letters, digits, `-`,
/// `_`: `policy::tenant`) the `tenant` tag of the per-tenant counters.
pub const TENANT_TAG_REGEX: &str =
    r"^wasmcustom\.tollgate\.ratelimit\.tenant\.(([A-Za-z0-9_-]+)\.)(?:allowed|limited|shadow_limited)$";

/// Per-tenant counters for the policy's tenants, in their order
/// (`Tenant::index`), `tollgate.ratelimit.tenant.<id>.<outcome>` in
/// `limit_metric_index` order: a label whose values the policy lists, never
/// one a client chose. Only requests a limit applies to count.
pub fn tenant_metric_names(ids: &[&str]) -> Vec<String> {
    ids.iter()
        .flat_map(|id| {
            LIMIT_OUTCOMES
                .iter()
                .map(move |o| format!("tollgate.ratelimit.tenant.{id}.{o}"))
        })
        .collect()
}

/// What a limit said about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Limited,
    ShadowLimited,
}

pub fn limit_metric_index(limit: usize, outcome: Outcome) -> usize {
    limit * LIMIT_OUTCOMES.len() + outcome as usize
}

/// A request's outcome over all its limits, for its tenant's counters:
/// limited by any enforced limit, else shadow-limited by any, else allowed.
pub fn request_outcome(counts: &[LimitCount]) -> Option<Outcome> {
    let outcome = |c: &LimitCount| match c.outcome() {
        Outcome::Allowed => 0,
        Outcome::ShadowLimited => 1,
        Outcome::Limited => 2,
    };
    let worst = counts.iter().max_by_key(|c| outcome(c))?;
    Some(worst.outcome())
}

#[cfg(test)]
mod tests;

/// One limit's count for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitCount {
    /// Position in `Policy::limits`.
    pub limit: usize,
    pub mode: Mode,
    /// Over the limit (a token could not be taken, or the service said so).
    pub over: bool,
    /// For the answer's headers; `None` when the count is unknown (not
    /// counted, or the service failed and `failure_mode` let it through).
    pub state: Option<answer::LimitState>,
}

impl LimitCount {
    pub fn outcome(&self) -> Outcome {
        match (self.over, self.mode) {
            (false, _) => Outcome::Allowed,
            (true, Mode::Enforce) => Outcome::Limited,
            (true, Mode::Shadow) => Outcome::ShadowLimited,
        }
    }
}

/// A request's verdict from its limits' counts: refused by the first
/// enforced limit that is over, else shadow-refused by the first shadow
/// limit that is over, else allowed. The count that decided, if any.
pub fn verdict(counts: &[LimitCount]) -> (crate::decision::Action, Option<&LimitCount>) {
    use crate::decision::Action;
    let over = |mode: Mode| counts.iter().find(|c| c.over && c.mode == mode);
    if let Some(c) = over(Mode::Enforce) {
        return (Action::Deny(RATE_LIMITED), Some(c));
    }
    if let Some(c) = over(Mode::Shadow) {
        return (Action::ShadowDeny(RATE_LIMITED), Some(c));
    }
    (Action::Allow, None)
}

/// The rate limit headers of an answer: the enforced limits' states.
pub fn answer_headers(style: HeaderStyle, counts: &[LimitCount]) -> Vec<(String, String)> {
    if style == HeaderStyle::None {
        return Vec::new();
    }
    let states: Vec<answer::LimitState> = counts
        .iter()
        .filter(|c| c.mode == Mode::Enforce)
        .filter_map(|c| c.state.clone())
        .collect();
    answer::headers(style, &states)
}

/// `Retry-After` for a refusal by `deciding`: when its window resets.
pub fn retry_after(deciding: &LimitCount, period: Period) -> String {
    let seconds = deciding.state.as_ref().map_or(period.seconds(), |s| s.reset_seconds);
    seconds.max(1).to_string()
}

/// `tollgate.decision.ratelimit`: the decision record, with the deciding
/// limit's name.
pub fn record(route: &str, mode: Mode, action: crate::decision::Action, limit: Option<&str>) -> Vec<u8> {
    #[derive(Serialize)]
    struct Extra<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        limit: Option<&'a str>,
    }
    crate::decision::record("ratelimit", route, mode, action, Extra { limit })
}
