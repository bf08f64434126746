//! An audit event back into the request `explain` runs: the method, host
//! and normalized path; the captured headers; the tenant sources seen as
//! the header (or token claim) they came from; the verified claims as an
//! unsigned token explain trusts (`no_verify`, as `explain --no-verify`).
//! Where the candidate policy reads something the event does not hold, the
//! answer is `Undecidable` with why: replay never guesses.

use super::Recording;
use crate::explain::Request;
use serde_json::{json, Map, Value};
use tollgate_core::jwt::claims;
use tollgate_core::jwt::config::Provider;
use tollgate_core::policy::wire::{Requirement, TenantSource};
use tollgate_core::policy::Policy;
use tollgate_core::request::RequestView;
use tollgate_core::stage::StageName;

/// Why an event cannot be re-decided under the candidate policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecidable(pub String);

/// jwt denials whose token replay can stand in for: none was sent, or it
/// verified and a claim rule failed.
const TOKEN_MISSING: &str = "token_missing";
const RULE_FAILED: &str = "insufficient_scope";
/// Seconds the stand-in token lives (within any `max_lifetime`).
const TOKEN_LIFETIME: u64 = 60;

/// The request the event describes, under `policy` (the candidate).
pub fn rebuild(
    policy: &Policy,
    recording: Option<&Recording>,
    event: &Value,
    namespace: Option<&str>,
) -> Result<Request, Undecidable> {
    let text = |key: &str| event.get(key).and_then(Value::as_str);
    let method = text("method")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| why("the event has no method"))?;
    let host = text("host").unwrap_or_default();
    // The query (kept with `audit.query: keep`, its secrets redacted) is
    // dropped: no decision reads it but for `_method`, which the event
    // records apart, and tokens, which replay places itself.
    let path = text("path").unwrap_or_default().split('?').next().unwrap_or_default();
    if host.is_empty() || !path.starts_with('/') {
        return Err(why(
            "the request was refused before routing: the event holds no normalized host and path",
        ));
    }
    let now = text("time")
        .and_then(unix_seconds)
        .ok_or_else(|| why("the event's time is not RFC 3339"))?;
    let overrides = strings(event.get("method_overrides"));
    let mut request = Request {
        method: method.to_string(),
        url: format!("http://{host}{}", with_overrides(path, &overrides)),
        no_verify: true,
        now: Some(now),
        namespace: namespace.map(str::to_string),
        source_address: text("source_ip").map(str::to_string),
        ..Request::default()
    };
    let seen = tenant_sources(event);
    request.headers = headers(policy, recording, event, &seen)?;
    let mut acted = vec![method.to_ascii_uppercase()];
    acted.extend(overrides);
    request.token = token(policy, recording, event, &seen, &request, &acted, now)?;
    Ok(request)
}

fn why(text: &str) -> Undecidable {
    Undecidable(text.to_string())
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// The method overrides the event recorded, as `_method` in the query: the
/// filters read every method the application may act on from there too.
fn with_overrides(path: &str, overrides: &[String]) -> String {
    let mut out = path.to_string();
    for method in overrides {
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str("_method=");
        out.push_str(method);
    }
    out
}

/// (source, value) of each tenant source the recorded tenant stage saw.
fn tenant_sources(event: &Value) -> Vec<(String, String)> {
    event
        .get("tenant_sources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| {
            Some((
                s.get("source")?.as_str()?.to_string(),
                s.get("value")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

/// Whether the recording read a tenant source of this kind: what
/// `--recorded-policy` says, else the candidate's own list stands in.
fn recording_reads(policy: &Policy, recording: Option<&Recording>, source: TenantSource) -> bool {
    match recording {
        Some(r) => r.tenant_sources.contains(&source),
        None => policy.tenant.sources.contains(&source),
    }
}

/// The captured headers, and the tenant header values the tenant stage saw
/// under the candidate's tenant header name.
fn headers(
    policy: &Policy,
    recording: Option<&Recording>,
    event: &Value,
    seen: &[(String, String)],
) -> Result<Vec<(String, String)>, Undecidable> {
    let tenant_header = policy.tenant.header.as_str();
    let mut out: Vec<(String, String)> = Vec::new();
    let from_sources: Vec<&String> = seen.iter().filter(|(s, _)| s == "header").map(|(_, v)| v).collect();
    let captured = event.get("headers").and_then(Value::as_object);
    for (name, value) in captured.into_iter().flatten() {
        let name = name.to_ascii_lowercase();
        let skip = name == "host" || name == ":authority" || (name == tenant_header && !from_sources.is_empty());
        if let (false, Some(value)) = (skip, value.as_str()) {
            out.push((name, value.to_string()));
        }
    }
    let captured_tenant = captured.is_some_and(|c| c.keys().any(|k| k.eq_ignore_ascii_case(tenant_header)));
    if policy.tenant.sources.contains(&TenantSource::Header)
        && from_sources.is_empty()
        && !captured_tenant
        && !recording_reads(policy, recording, TenantSource::Header)
    {
        return Err(Undecidable(format!(
            "the candidate reads the tenant header '{tenant_header}', which the recording policy did not read \
             (nor capture_headers keep)"
        )));
    }
    out.extend(from_sources.into_iter().map(|v| (tenant_header.to_string(), v.clone())));
    Ok(out)
}

/// The token the request carried, rebuilt from the verified claims; `None`
/// when it carried none.
fn token(
    policy: &Policy,
    recording: Option<&Recording>,
    event: &Value,
    seen: &[(String, String)],
    request: &Request,
    acted: &[String],
    now: u64,
) -> Result<Option<String>, Undecidable> {
    let jwt = event
        .get("decisions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|d| d.get("stage").and_then(Value::as_str) == Some("jwt"));
    let Some(jwt) = jwt else {
        return no_token_recorded(policy, request);
    };
    let outcome = jwt.get("outcome").and_then(Value::as_str).unwrap_or_default();
    let reason = jwt.get("reason").and_then(Value::as_str);
    let subject = event.get("subject").and_then(Value::as_str);
    let recorded_claims = event
        .get("claims")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let claim_tenant = seen.iter().find(|(s, _)| s == "claim").map(|(_, v)| v.as_str());
    let verified = match (outcome, reason) {
        (_, Some(TOKEN_MISSING)) => false,
        // Shadow: the token's identity went on, and the event holds it.
        (_, Some(RULE_FAILED)) if subject.is_some() || !recorded_claims.is_empty() => true,
        (_, Some(RULE_FAILED)) => {
            return Err(why(
                "the token failed a claim rule in enforce mode: the event holds none of its claims",
            ))
        }
        ("allow", _) if subject.is_some() || !recorded_claims.is_empty() || claim_tenant.is_some() => true,
        ("allow", _) => return tokenless(policy, recording, request),
        (_, Some(other)) => {
            return Err(Undecidable(format!(
                "the recorded token failed verification ({other}): the event does not hold it"
            )))
        }
        _ => return Err(why("the recorded jwt decision is not one replay reads")),
    };
    if !verified {
        return Ok(None);
    }
    check_rule_claims(policy, recording, request, acted, &recorded_claims)?;
    let provider = provider_for(policy, request, &recorded_claims)?;
    let identity = Identity {
        subject,
        claim_tenant,
        decided_tenant: event.get("tenant").and_then(Value::as_str),
        roles: event.get("roles").cloned().unwrap_or_else(|| json!([])),
        claims: recorded_claims,
    };
    let claims = stand_in_claims(policy, recording, provider, identity, now)?;
    Ok(Some(unsigned_token(&Value::Object(claims))))
}

/// What the event says of the verified token.
struct Identity<'e> {
    subject: Option<&'e str>,
    /// The tenant claim's value, as the tenant stage saw it.
    claim_tenant: Option<&'e str>,
    decided_tenant: Option<&'e str>,
    roles: Value,
    /// The claims the recording's rules read.
    claims: Map<String, Value>,
}

/// The claims of the stand-in token: the provider's issuer and audience, a
/// short life around `now`, and what the event says of the token.
fn stand_in_claims(
    policy: &Policy,
    recording: Option<&Recording>,
    provider: &Provider,
    identity: Identity<'_>,
    now: u64,
) -> Result<Map<String, Value>, Undecidable> {
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(provider.issuer));
    if let Some(aud) = provider.audiences.first() {
        claims.insert("aud".into(), json!(aud));
    }
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now.saturating_add(TOKEN_LIFETIME)));
    if let Some(sub) = identity.subject {
        claims.insert("sub".into(), json!(sub));
    }
    if let Some(name) = &provider.tenant_claim {
        // Only a token that had the claim gets past a provider requiring it.
        let required = provider
            .require_tenant_claim
            .then_some(identity.decided_tenant)
            .flatten();
        if let Some(tenant) = identity.claim_tenant.or(required) {
            claims.insert(name.clone(), json!(tenant));
        } else if policy.tenant.sources.contains(&TenantSource::Claim)
            && !recording_reads(policy, recording, TenantSource::Claim)
        {
            return Err(Undecidable(format!(
                "the candidate reads the tenant claim '{name}', which the recording policy did not read"
            )));
        }
    }
    claims.insert(provider.roles_claim.clone(), identity.roles);
    // The claims the rules read, as verified, last: they are the token's own values.
    claims.extend(identity.claims);
    Ok(claims)
}

/// The recorded jwt stage let the request in without an identity: no
/// token was sent if the recording's route verified tokens (required or
/// optional); on a route that does not read tokens one may have been sent
/// unseen, which matters only where the candidate's route needs one.
fn tokenless(policy: &Policy, recording: Option<&Recording>, request: &Request) -> Result<Option<String>, Undecidable> {
    let candidate_reads = route_of(policy, request).is_some_and(|r| r.jwt.requirement != Requirement::None);
    if !candidate_reads {
        return Ok(None);
    }
    let recorded_read = recording
        .and_then(|r| r.policy.as_deref())
        .and_then(|p| route_of(p, request))
        .map(|r| r.jwt.requirement != Requirement::None);
    match recorded_read {
        Some(true) => Ok(None),
        Some(false) => Err(why(
            "the recording's route did not read tokens: whether the request carried one is unknown",
        )),
        // Without the recording policy the candidate's route stands in for it.
        None => Ok(None),
    }
}

/// The recording has no jwt decision (no jwt stage, or it did not run):
/// whether a token was sent is unknown, which matters only where the
/// candidate's route reads one.
fn no_token_recorded(policy: &Policy, request: &Request) -> Result<Option<String>, Undecidable> {
    let reads_token = route_of(policy, request)
        .is_some_and(|r| r.jwt.requirement != Requirement::None && policy.stages.contains(&StageName::Jwt));
    if reads_token {
        return Err(why(
            "the recorded jwt stage did not run: whether the request carried a token is unknown",
        ));
    }
    Ok(None)
}

/// The candidate's route for the rebuilt request, as the filters choose it.
fn route_of<'p>(policy: &'p Policy, request: &Request) -> Option<&'p tollgate_core::policy::Route> {
    let (authority, path) = request.url.strip_prefix("http://")?.split_once('/')?;
    let path = format!("/{path}");
    let view = RequestView::read(
        request.method.as_bytes(),
        Some(path.as_bytes()),
        Some(authority.as_bytes()),
        policy,
    )
    .ok()?;
    Some(policy.route(&view.head()))
}

/// Every claim a rule of the candidate's route tests for this request's
/// methods must be in the event, unless the recording policy read it (then
/// the token did not have it).
fn check_rule_claims(
    policy: &Policy,
    recording: Option<&Recording>,
    request: &Request,
    acted: &[String],
    recorded: &Map<String, Value>,
) -> Result<(), Undecidable> {
    let Some(route) = route_of(policy, request) else {
        return Ok(());
    };
    for rule in route.jwt.rules.iter().filter(|r| claims::applies_any(r, acted)) {
        let known = claims::lookup(recorded, &rule.claim).is_some()
            || recording.is_some_and(|r| r.claims.contains(&rule.claim));
        if !known {
            return Err(Undecidable(format!(
                "a rule reads claim '{}', which the event does not hold (the recording policy's rules did not \
                 read it, or the token lacked it)",
                rule.claim
            )));
        }
    }
    Ok(())
}

/// The provider that verified the token: the recorded `iss` names it, else
/// it is the only one the candidate's route accepts.
fn provider_for<'p>(
    policy: &'p Policy,
    request: &Request,
    recorded: &Map<String, Value>,
) -> Result<&'p Provider, Undecidable> {
    let providers = &policy.jwt.providers;
    if let Some(iss) = recorded.get("iss").and_then(Value::as_str) {
        return providers.iter().find(|p| p.issuer == iss).ok_or_else(|| {
            Undecidable(format!(
                "no provider of the candidate accepts the recorded issuer '{iss}'"
            ))
        });
    }
    let allowed: Vec<&Provider> = match route_of(policy, request) {
        Some(route) if !route.jwt.providers.is_empty() => {
            route.jwt.providers.iter().filter_map(|&i| providers.get(i)).collect()
        }
        _ => providers.iter().collect(),
    };
    match allowed.as_slice() {
        [only] => Ok(only),
        [] => Err(why("the candidate has no jwt provider for the recorded token")),
        _ => Err(why(
            "several providers could have issued the token and the event does not say which \
             (put 'iss' in a provider's claims_to_state to record it)",
        )),
    }
}

/// `header.claims.signature` with a signature no key checks: explain runs
/// it with `no_verify`, as `explain --no-verify` does.
fn unsigned_token(claims: &Value) -> String {
    let header = base64url(br#"{"alg":"RS256","typ":"JWT"}"#);
    let body = base64url(claims.to_string().as_bytes());
    format!("{header}.{body}.{}", base64url(b"replay: not signed"))
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            let index = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(ALPHABET.get(index as usize).copied().unwrap_or(b'A')));
        }
    }
    out
}

/// Unix seconds of `YYYY-MM-DDTHH:MM:SS[.fraction]Z`.
pub fn unix_seconds(time: &str) -> Option<u64> {
    let bytes = time.as_bytes();
    let num = |from: usize, len: usize| -> Option<u64> {
        let digits = bytes.get(from..from + len)?;
        digits.iter().try_fold(0u64, |acc, d| {
            d.is_ascii_digit().then(|| acc * 10 + u64::from(d - b'0'))
        })
    };
    let seps = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if seps.iter().any(|&(i, c)| bytes.get(i) != Some(&c)) || !time.ends_with('Z') {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm), for years from 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let y = if month <= 2 { year.checked_sub(1)? } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn policy() -> Policy {
        let doc = json!({"version": 1, "tenants": [{"id": "ACME"}], "tenant": {"sources": ["header"]},
                         "routes": [{"name": "x", "match": {"prefix": "/api/x"}, "tenant": {"required": true}}]});
        Policy::from_json(doc.to_string().as_bytes()).unwrap()
    }

    fn event() -> Value {
        json!({"schema_version": 1, "time": "2027-01-15T08:00:00.5Z", "method": "POST",
               "method_overrides": ["DELETE"], "host": "api.example.com",
               "path": "/api/x/1?_method=DELETE&access_token=[REDACTED]", "source_ip": "10.0.0.1",
               "decisions": [{"stage": "tenant", "mode": "enforce", "outcome": "allow"}],
               "tenant_sources": [{"source": "header", "value": "ACME"}],
               "headers": {"user-agent": "curl/8", "x-tenant-id": "ACME"}})
    }

    #[test]
    fn the_request_comes_back_from_the_event() {
        let request = rebuild(&policy(), None, &event(), None).unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.url, "http://api.example.com/api/x/1?_method=DELETE",
            "the query dropped"
        );
        assert_eq!(request.now, Some(1_800_000_000));
        assert_eq!(request.source_address.as_deref(), Some("10.0.0.1"));
        let headers: Vec<(&str, &str)> = request.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            headers,
            [("user-agent", "curl/8"), ("x-tenant-id", "ACME")],
            "the tenant header once"
        );
        assert!(request.token.is_none() && request.no_verify);
    }

    #[test]
    fn an_event_refused_before_routing_or_without_a_time_is_undecidable() {
        let mut early = event();
        early["host"] = json!("");
        assert!(rebuild(&policy(), None, &early, None)
            .unwrap_err()
            .0
            .contains("before routing"));
        let mut timeless = event();
        timeless["time"] = json!("yesterday");
        assert!(rebuild(&policy(), None, &timeless, None)
            .unwrap_err()
            .0
            .contains("RFC 3339"));
    }

    #[test]
    fn base64url_is_the_jwt_alphabet_without_padding() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }
}
