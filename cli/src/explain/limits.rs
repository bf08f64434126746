//! The rate limits a request counts against, for `tollgate explain`: each
//! limit's rate as it applies to this request and the key values it would
//! count under, read with core's `key::values` and `key::client_ip` as the
//! ratelimit stage reads them. Offline nothing is counted: the counts (and
//! so whether a limit is exhausted) are not known.

use serde_json::{json, Value};
use tollgate_core::header_map::HeaderMap;
use tollgate_core::policy::{Policy, Route};
use tollgate_core::ratelimit::key::{self, KeyInputs};
use tollgate_core::ratelimit::{Limit, Scope};
use tollgate_core::Mode;

/// What the stages before the ratelimit stage decided, as their records say.
#[derive(Debug, Default)]
struct Facts {
    tenant: Option<String>,
    tier: Option<String>,
    subject: Option<String>,
}

pub const COUNTS_UNKNOWN: &str = "offline, the counts are not known: no limit is shown as exhausted";

/// The `limits` part of the explanation.
pub fn limits_json(
    policy: &Policy,
    route: Option<&Route>,
    stages: &[Value],
    sent: &[(String, String)],
    source: Option<&str>,
) -> Value {
    let Some(route) = route else {
        return json!({"limits": [], "none_because": "refused before routing: no limit counts it"});
    };
    if route.ratelimit.limits.is_empty() {
        return json!({"limits": [], "none_because": "neither the defaults nor the route define limits"});
    }
    let facts = facts(policy, stages);
    let headers: HeaderMap = sent.iter().map(|(k, v)| (k.as_str(), v.as_bytes())).collect();
    let client_ip = client_ip_json(policy, &headers, source);
    let inputs = KeyInputs {
        tenant: facts.tenant.as_deref(),
        tier: facts.tier.as_deref(),
        subject: facts.subject.as_deref(),
        client_ip: client_ip["value"].as_str(),
        route: &route.name,
        headers: &headers,
    };
    let limits: Vec<Value> = route
        .ratelimit
        .limits
        .iter()
        .filter_map(|&i| Some((i, policy.limits.get(i)?)))
        .map(|(i, limit)| limit_json(policy, route, i, limit, &inputs))
        .collect();
    json!({"limits": limits, "client_ip": client_ip, "counts": COUNTS_UNKNOWN})
}

/// Tenant and tier from the tenant stage's record (only a resolved tenant
/// is named there), the subject from a jwt stage that let the token in.
fn facts(policy: &Policy, stages: &[Value]) -> Facts {
    let record = |name: &str| stages.iter().find(|s| s["stage"] == name);
    let tenant = record("tenant").and_then(|r| r["tenant"].as_str());
    let known = tenant.and_then(|t| policy.tenants.get(&t.to_ascii_lowercase()));
    let subject = record("jwt")
        .filter(|r| r["outcome"] == "allow")
        .and_then(|r| r["sub"].as_str());
    Facts {
        tenant: known.map(|t| t.id.clone()),
        tier: known.map(|t| t.tier.clone()),
        subject: subject.map(str::to_string),
    }
}

/// The client address as the stage reads it: the peer's (`--source-address`;
/// offline there is none unless given), or an X-Forwarded-For entry.
fn client_ip_json(policy: &Policy, headers: &HeaderMap, source: Option<&str>) -> Value {
    let hops = policy.ratelimit.xff_trusted_hops;
    let value = key::client_ip(source.map(str::as_bytes), headers, hops);
    let from = match (hops, source) {
        (0, Some(_)) => "the peer address (--source-address)".to_string(),
        (0, None) => "the peer address, which explain does not have offline: give --source-address".to_string(),
        (n, _) => format!(
            "address {n} from the right of X-Forwarded-For (xff_trusted_hops {n}), \
             else the peer address{}",
            if source.is_some() {
                " (--source-address)"
            } else {
                ", which explain does not have offline: give --source-address"
            }
        ),
    };
    json!({"value": value, "from": from})
}

fn limit_json(policy: &Policy, route: &Route, position: usize, limit: &Limit, inputs: &KeyInputs<'_>) -> Value {
    let defaults = policy.fallback.ratelimit.limits.contains(&position);
    let mode = if route.ratelimit.mode == Mode::Shadow {
        Mode::Shadow
    } else {
        limit.mode
    };
    let requests = limit.requests_for(inputs.tenant, inputs.tier);
    let values = key::values(limit, inputs);
    let key: Vec<Value> = limit
        .key
        .iter()
        .zip(&values)
        .map(|(part, value)| json!({"part": part.label(), "value": value}))
        .collect();
    json!({
        "name": limit.name,
        "from": if defaults { "defaults".to_string() } else { format!("route {}", route.name) },
        "scope": match limit.scope { Scope::Local => "local", Scope::Global => "global" },
        "mode": mode.as_str(),
        "requests": requests,
        "period": limit.period.as_str(),
        "rate_from": rate_from(limit, inputs),
        "burst": limit.burst,
        "key": key,
    })
}

/// Which number applies: the tenant's own, its tier's, or `requests`.
fn rate_from(limit: &Limit, inputs: &KeyInputs<'_>) -> String {
    if let Some(tenant) = inputs.tenant {
        if limit.tenants.iter().any(|(id, _)| id.eq_ignore_ascii_case(tenant)) {
            return format!("tenant {tenant}'s override");
        }
    }
    if let Some(tier) = inputs.tier {
        if limit.tiers.iter().any(|(name, _)| name == tier) {
            return format!("tier {tier}'s override");
        }
    }
    "the limit's requests".to_string()
}

/// The limits as text lines.
pub fn text(limits: &Value) -> Vec<String> {
    let all = limits["limits"].as_array().cloned().unwrap_or_default();
    if all.is_empty() {
        let why = limits["none_because"].as_str().unwrap_or_default();
        return vec![format!("rate limits: none ({why})")];
    }
    let mut out = vec![format!(
        "rate limits ({}):",
        limits["counts"].as_str().unwrap_or_default()
    )];
    for limit in &all {
        out.push(limit_text(limit));
        let key: Vec<String> = limit["key"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| format!("{}={}", k["part"].as_str().unwrap_or_default(), quoted(&k["value"])))
            .collect();
        out.push(format!("    key: {}", key.join(" ")));
    }
    let ip = &limits["client_ip"];
    out.push(format!(
        "  client_ip: {} ({})",
        ip["value"].as_str().unwrap_or("none"),
        ip["from"].as_str().unwrap_or_default()
    ));
    out
}

fn limit_text(limit: &Value) -> String {
    let s = |k: &str| limit[k].as_str().unwrap_or_default().to_string();
    format!(
        "  {} ({}): {}/{} ({}), burst {}, {}, {}",
        s("name"),
        s("from"),
        limit["requests"],
        s("period"),
        s("rate_from"),
        limit["burst"],
        s("scope"),
        s("mode")
    )
}

/// A key value, with the empty one (no value: one shared bucket) said so.
fn quoted(value: &Value) -> String {
    match value.as_str() {
        Some("") | None => "\"\" (none: such requests share one count)".to_string(),
        Some(v) => format!("\"{v}\""),
    }
}
