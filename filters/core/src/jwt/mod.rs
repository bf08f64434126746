//! JWT verification: tokens, keys, signatures, claims and per-route rules.
//! `decide` is the whole request-time path; the glue supplies the key sets
//! (fetched JWKS), the host verifier and the per-worker caches.

pub mod cache;
pub mod claims;
pub mod config;
pub mod der;
pub mod identity;
pub mod jwk;
pub mod jwks;
pub mod kat;
pub mod rsa;
pub mod token;
pub mod verify;

use crate::decision::{self, Action};
use crate::headers;
use crate::params::{decoded_name, query_params, same_param, unnamed_pieces};
use crate::policy::wire::{HeaderSourceDoc, Requirement, RulesWithoutToken};
use crate::policy::{Policy, Route, RouteIndex};
use crate::reply::Denial;
use crate::request::RequestDenial;
use crate::route::RequestHead;
use crate::Mode;
use cache::Cache;
use config::{ClaimRule, Provider, TokenSource};
use identity::TenantClaim;
use jwk::{Alg, KeySet};
use serde_json::Value;
use std::borrow::Cow;
use std::rc::Rc;
use verify::HostVerifier;

pub use identity::Identity;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtDenial {
    Missing,
    TooLarge,
    Malformed,
    AlgNotAllowed,
    Expired,
    NotYetValid,
    ExpirationRequired,
    LifetimeTooLong,
    IssuerInvalid,
    AudienceInvalid,
    KeyUnknown,
    SignatureInvalid,
    InsufficientScope,
    JwksUnavailable,
    /// The tenant claim is there but not a string.
    TenantInvalid,
    /// No tenant claim, on a route that requires a tenant.
    TenantMissing,
}

impl JwtDenial {
    pub const ALL: [JwtDenial; 16] = [
        JwtDenial::Missing,
        JwtDenial::TooLarge,
        JwtDenial::Malformed,
        JwtDenial::AlgNotAllowed,
        JwtDenial::Expired,
        JwtDenial::NotYetValid,
        JwtDenial::ExpirationRequired,
        JwtDenial::LifetimeTooLong,
        JwtDenial::IssuerInvalid,
        JwtDenial::AudienceInvalid,
        JwtDenial::KeyUnknown,
        JwtDenial::SignatureInvalid,
        JwtDenial::InsufficientScope,
        JwtDenial::JwksUnavailable,
        JwtDenial::TenantInvalid,
        JwtDenial::TenantMissing,
    ];

    pub fn denial(self) -> Denial {
        let invalid = Some("invalid_token");
        let (status, reason, message, bearer_error) = match self {
            // RFC 6750 section 3.1: no error code when no credentials came.
            JwtDenial::Missing => (401, "token_missing", "a bearer token is required", None),
            JwtDenial::TooLarge => (401, "token_too_large", "the token is too large", invalid),
            JwtDenial::Malformed => (401, "token_malformed", "the token is malformed", invalid),
            JwtDenial::AlgNotAllowed => (
                401,
                "token_alg_not_allowed",
                "the token algorithm is not allowed",
                invalid,
            ),
            JwtDenial::Expired => (401, "token_expired", "the token has expired", invalid),
            JwtDenial::NotYetValid => (401, "token_not_yet_valid", "the token is not valid yet", invalid),
            JwtDenial::ExpirationRequired => (401, "token_exp_required", "the token has no expiration", invalid),
            JwtDenial::LifetimeTooLong => (401, "token_lifetime_too_long", "the token lives too long", invalid),
            JwtDenial::IssuerInvalid => (401, "token_issuer_invalid", "the token issuer is not accepted", invalid),
            JwtDenial::AudienceInvalid => (
                401,
                "token_audience_invalid",
                "the token audience is not accepted",
                invalid,
            ),
            JwtDenial::KeyUnknown => (401, "token_key_unknown", "no key fits the token", invalid),
            JwtDenial::SignatureInvalid => (
                401,
                "token_signature_invalid",
                "the token signature is invalid",
                invalid,
            ),
            JwtDenial::InsufficientScope => (
                403,
                "insufficient_scope",
                "the token lacks a required claim",
                Some("insufficient_scope"),
            ),
            JwtDenial::JwksUnavailable => (503, "jwks_unavailable", "signing keys are not available", None),
            // The issuer minted an unusable token: a new one is needed.
            JwtDenial::TenantInvalid => (
                401,
                "token_tenant_invalid",
                "the token tenant claim is not a string",
                invalid,
            ),
            // A valid token that does not grant this route, like a scope.
            JwtDenial::TenantMissing => (
                403,
                "token_tenant_missing",
                "the token has no tenant claim",
                Some("insufficient_scope"),
            ),
        };
        Denial {
            status,
            reason,
            message,
            bearer_error,
        }
    }
}

/// The keys a provider has right now.
#[derive(Debug, Clone)]
pub enum Keys {
    Ready {
        set: Rc<KeySet>,
        stale: bool,
    },
    /// A remote JWKS never fetched (or dropped after its stale TTL).
    Unavailable,
}

/// Where the glue keeps fetched key sets.
pub trait KeyStore {
    fn keys(&self, provider: usize) -> Keys;
}

#[derive(Debug)]
pub struct Caches {
    pub verified: Cache<Rc<Identity>>,
    pub refused: Cache<JwtDenial>,
}

/// How long a refused token is remembered, in seconds.
const REFUSED_TTL: u64 = 300;

/// Gauges of the token caches, in `Caches::sizes` order.
pub const CACHE_GAUGES: [&str; 3] = [
    "tollgate.jwt.cache_entries",
    "tollgate.jwt.cache_bytes",
    "tollgate.jwt.refused_cache_entries",
];

impl Caches {
    /// Verified entries, their bytes, refused entries (`CACHE_GAUGES`).
    pub fn sizes(&self) -> [u64; 3] {
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        [n(self.verified.len()), n(self.verified.bytes()), n(self.refused.len())]
    }

    pub fn new(policy: &Policy) -> Caches {
        let [entries, bytes, refused] = Caches::bounds(policy);
        Caches {
            verified: Cache::new(entries, bytes),
            refused: Cache::new(refused, policy.jwt.cache_bytes / 4),
        }
    }

    /// The most each of `sizes` may reach, per worker.
    pub fn bounds(policy: &Policy) -> [usize; 3] {
        let jwt = &policy.jwt;
        [jwt.cache_entries, jwt.cache_bytes, jwt.cache_entries.min(256)]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    None,
    Hit,
    Miss,
}

pub struct JwtRequest<'a> {
    pub head: RequestHead<'a>,
    /// The route already decided on (`RequestView::route`); `None`: match `head`.
    pub route: Option<RouteIndex>,
    /// The raw `:path`, for query-parameter tokens.
    pub raw_path: &'a [u8],
    pub headers: &'a crate::header_map::HeaderMap,
    /// Unix seconds.
    pub now: u64,
}

#[derive(Debug, Clone)]
pub struct JwtDecision<'p> {
    pub route: &'p Route,
    pub verdict: Result<Option<Rc<Identity>>, JwtDenial>,
    /// The token's key was not in this provider's JWKS: a refetch may help.
    pub refetch: Option<usize>,
    pub stale_keys: bool,
    pub cache: CacheUse,
    /// Where the token was found: (provider, source) indices.
    pub token_source: Option<(usize, usize)>,
    /// The provider the token's issuer picked.
    pub provider: Option<usize>,
}

pub fn decide<'p>(
    policy: &'p Policy,
    req: &JwtRequest<'_>,
    keys: &dyn KeyStore,
    host: &dyn HostVerifier,
    caches: &mut Caches,
) -> JwtDecision<'p> {
    let route = req
        .route
        .map_or_else(|| policy.route(&req.head), |i| policy.route_at(i));
    let mut decision = JwtDecision {
        route,
        verdict: Ok(None),
        refetch: None,
        stale_keys: false,
        cache: CacheUse::None,
        token_source: None,
        provider: None,
    };
    let rj = &route.jwt;
    if rj.requirement == Requirement::None {
        return decision;
    }
    let found = match find_token(policy, &rj.providers, req) {
        Ok(found) => found,
        Err(denial) => {
            decision.verdict = Err(denial);
            return decision;
        }
    };
    let methods = acted_methods(policy, &rj.rules, req);
    let Some((token, provider, source)) = found else {
        let rule_applies = rj.rules.iter().any(|r| claims::applies_any(r, &methods));
        let deny_rules = rule_applies && rj.rules_without_token == RulesWithoutToken::Deny;
        if rj.requirement == Requirement::Required || deny_rules {
            decision.verdict = Err(JwtDenial::Missing);
        }
        return decision;
    };
    decision.token_source = Some((provider, source));
    decision.verdict = verify_token(
        policy,
        rj.providers.as_slice(),
        &token,
        req.now,
        keys,
        host,
        caches,
        &mut decision,
    )
    .and_then(|identity| {
        check_tenant(policy, route, &identity)?;
        claims::check_rules_any(&rj.rules, &methods, &identity.claims)?;
        Ok(Some(identity))
    });
    decision
}

/// The methods the application may act on (`request::acted_methods`);
/// only read by method-scoped rules, so not gathered without one. (A form
/// body's `_method` values are judged in the body phase: `form::judge_body`.)
fn acted_methods(policy: &Policy, rules: &[ClaimRule], req: &JwtRequest<'_>) -> Vec<String> {
    if rules.iter().all(|r| r.methods.is_empty()) {
        return Vec::new();
    }
    crate::request::acted_methods(req.head.method, req.raw_path, req.headers, &policy.strip_headers)
}

/// The tenant claim must be a string when present (else the tenant filter
/// would fall back to a client-chosen source), and present on routes that
/// enforce a required tenant unless the provider sets `require_tenant_claim:
/// false`: also for a provider without `tenant_claim`, whose tokens would
/// otherwise let the client's `x-tenant-id` pick the tenant.
fn check_tenant(policy: &Policy, route: &Route, identity: &Identity) -> Result<(), JwtDenial> {
    let Some(provider) = policy.jwt.providers.get(identity.provider) else {
        return Ok(());
    };
    match identity.tenant() {
        TenantClaim::Text => Ok(()),
        TenantClaim::NotText => Err(JwtDenial::TenantInvalid),
        // Not while the route's tenant rule is only observed (shadow).
        TenantClaim::Absent
            if provider.require_tenant_claim && route.tenant.required && route.tenant.mode == Mode::Enforce =>
        {
            Err(JwtDenial::TenantMissing)
        }
        TenantClaim::Absent => Ok(()),
    }
}

#[allow(clippy::too_many_arguments)]
fn verify_token(
    policy: &Policy,
    allowed: &[usize],
    token: &str,
    now: u64,
    keys: &dyn KeyStore,
    host: &dyn HostVerifier,
    caches: &mut Caches,
    decision: &mut JwtDecision<'_>,
) -> Result<Rc<Identity>, JwtDenial> {
    if token.len() > policy.jwt.max_token_bytes {
        return Err(JwtDenial::TooLarge);
    }
    // Verified first: the one lookup of a hit. A token is never in both
    // (each is inserted only after a miss in both).
    if let Some(identity) = caches.verified.get(token, now) {
        decision.cache = CacheUse::Hit;
        if !allowed.contains(&identity.provider) {
            return Err(JwtDenial::IssuerInvalid);
        }
        let provider = policy
            .jwt
            .providers
            .get(identity.provider)
            .ok_or(JwtDenial::IssuerInvalid)?;
        identity.times.check(provider, now)?;
        return Ok(identity);
    }
    if let Some(denial) = caches.refused.get(token, now) {
        return Err(denial);
    }
    decision.cache = CacheUse::Miss;
    let parsed = token::parse(token).map_err(|e| match e {
        token::TokenError::Malformed => JwtDenial::Malformed,
        token::TokenError::AlgNotAllowed => JwtDenial::AlgNotAllowed,
    })?;
    let iss = parsed.claims.get("iss").and_then(Value::as_str).unwrap_or_default();
    let (index, provider) = allowed
        .iter()
        .filter_map(|i| policy.jwt.providers.get(*i).map(|p| (*i, p)))
        .find(|(_, p)| p.issuer == iss)
        .ok_or(JwtDenial::IssuerInvalid)?;
    decision.provider = Some(index);
    let times = claims::Times::read(&parsed.claims)?;
    let exp = times.check(provider, now)?;
    claims::check_audience(provider, &parsed.claims)?;
    if host.skips_signatures() {
        // Not cached: a later request must not meet it as verified.
        return Ok(Rc::new(Identity::new(index, provider, parsed.claims, times)));
    }
    let valid = match select_key(provider, index, parsed.alg, parsed.kid.as_deref(), keys, decision)? {
        SelectedKey::Hmac(key) => verify::verify(parsed.alg, key, parsed.signing_input, &parsed.signature, host),
        SelectedKey::FromSet(set, i) => set
            .keys
            .get(i)
            .is_some_and(|k| verify::verify(parsed.alg, k, parsed.signing_input, &parsed.signature, host)),
    };
    if !valid {
        caches
            .refused
            .insert(token, JwtDenial::SignatureInvalid, now + REFUSED_TTL, 0);
        return Err(JwtDenial::SignatureInvalid);
    }
    let identity = Rc::new(Identity::new(index, provider, parsed.claims, times));
    // Kept until `exp` (tokens without one: the refused TTL, to stay bounded).
    let expires_at = exp.map_or(now + REFUSED_TTL, |e| e.saturating_add(provider.clock_skew));
    // The claims count as the token's size again (their JSON is in it).
    let size = token.len() + identity.prepared_bytes();
    caches.verified.insert(token, identity.clone(), expires_at, size);
    Ok(identity)
}

enum SelectedKey<'k> {
    Hmac(&'k jwk::Key),
    FromSet(Rc<KeySet>, usize),
}

fn select_key<'k>(
    provider: &'k Provider,
    index: usize,
    alg: Alg,
    kid: Option<&str>,
    keys: &dyn KeyStore,
    decision: &mut JwtDecision<'_>,
) -> Result<SelectedKey<'k>, JwtDenial> {
    if matches!(alg, Alg::Hs256 | Alg::Hs384 | Alg::Hs512) {
        return provider
            .hmac
            .as_ref()
            .map(SelectedKey::Hmac)
            .ok_or(JwtDenial::KeyUnknown);
    }
    let set = match (&provider.local, keys.keys(index)) {
        (Some(local), _) => local.clone(),
        (None, Keys::Ready { set, stale }) => {
            decision.stale_keys = stale;
            set
        }
        (None, Keys::Unavailable) => return Err(JwtDenial::JwksUnavailable),
    };
    let position = set.keys.iter().position(|k| match kid {
        Some(kid) => k.kid.as_deref() == Some(kid) && k.accepts(alg),
        None => false,
    });
    match (position, kid) {
        (Some(i), _) => Ok(SelectedKey::FromSet(set, i)),
        (None, Some(kid)) => {
            if provider.remote.is_some() && !set.has_kid(kid) {
                decision.refetch = Some(index);
            }
            Err(JwtDenial::KeyUnknown)
        }
        (None, None) => {
            let only = set
                .select(None, alg)
                .and_then(|k| set.keys.iter().position(|x| std::ptr::eq(x, k)));
            only.map(|i| SelectedKey::FromSet(set.clone(), i))
                .ok_or(JwtDenial::KeyUnknown)
        }
    }
}

/// The first token in the route's providers' sources: (token, provider, source).
fn find_token<'r>(
    policy: &Policy,
    providers: &[usize],
    req: &JwtRequest<'r>,
) -> Result<Option<(Cow<'r, str>, usize, usize)>, JwtDenial> {
    for &p in providers {
        let Some(provider) = policy.jwt.providers.get(p) else {
            continue;
        };
        for (s, source) in provider.sources.iter().enumerate() {
            if let Some(token) = extract(source, req)? {
                return Ok(Some((token, p, s)));
            }
        }
    }
    Ok(None)
}

/// The token in one source. Two tokens in one header name, parameter or
/// cookie name are refused (`token_malformed`): which one an application
/// reads (first, last, joined) is its own choice, so checking one would not
/// bind it. A parameter or cookie is any whose decoded name reads as the
/// source's name to some stack (`same_param`), parameters split on `;` too
/// (`query_params`).
fn extract<'r>(source: &TokenSource, req: &JwtRequest<'r>) -> Result<Option<Cow<'r, str>>, JwtDenial> {
    let found = match source {
        TokenSource::Header { name, prefix } => at_most_one(
            req.headers
                .iter()
                .filter(|(k, _)| k == name)
                .filter_map(|(_, v)| header_token(v, prefix)),
        ),
        TokenSource::Param(name) => match query(req.raw_path) {
            Some(q) => at_most_one(
                query_params(q)
                    .filter_map(|piece| form_urlencoded::parse(piece).next())
                    .filter(|(k, _)| same_param(k, name))
                    .map(|(_, v)| v),
            ),
            None => Ok(None),
        },
        TokenSource::Cookie(name) => at_most_one(
            cookies(req.headers)
                .filter(|(k, _)| same_param(&decoded_name(k.as_bytes()), name))
                .map(|(_, v)| Cow::Borrowed(v)),
        ),
    };
    Ok(found?.filter(|v| !v.is_empty()))
}

/// The one item, if any; two are `token_malformed`.
fn at_most_one<T>(mut items: impl Iterator<Item = T>) -> Result<Option<T>, JwtDenial> {
    let first = items.next();
    if items.next().is_some() {
        return Err(JwtDenial::Malformed);
    }
    Ok(first)
}

/// The token in a header value that starts with `prefix`. The scheme is
/// case-insensitive (RFC 7235 section 2.1) and may be followed by any
/// whitespace; bytes that are not UTF-8 still make a (malformed) token.
fn header_token<'v>(raw: &'v [u8], prefix: &str) -> Option<Cow<'v, str>> {
    let token = header_token_bytes(raw, prefix)?;
    // `from_utf8` first: much faster than the lossy scan on valid text.
    Some(match std::str::from_utf8(token) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(token),
    })
}

/// `header_token` as raw bytes.
fn header_token_bytes<'v>(raw: &'v [u8], prefix: &str) -> Option<&'v [u8]> {
    let text = raw.trim_ascii();
    let scheme = prefix.trim_end().as_bytes();
    let (head, tail) = (text.get(..scheme.len())?, text.get(scheme.len()..)?);
    if !head.eq_ignore_ascii_case(scheme) {
        return None;
    }
    let separated = tail.first().is_some_and(u8::is_ascii_whitespace);
    if scheme.len() < prefix.len() && !separated {
        return None;
    }
    Some(tail.trim_ascii())
}

/// The query of a raw path, without its fragment.
fn query(raw_path: &[u8]) -> Option<&[u8]> {
    let query = raw_path.splitn(2, |b| *b == b'?').nth(1)?;
    query.split(|b| *b == b'#').next()
}

/// Every cookie as (name, value), names raw.
fn cookies(headers: &crate::header_map::HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .iter()
        .filter(|(k, _)| *k == "cookie")
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.split_once('=').map(|(k, v)| (k.trim(), v.trim())))
}

/// The raw path without the query parameters whose decoded name reads as
/// one of `names` (`access%5Ftoken`, `ACCESS.TOKEN`, `access_token%00x`:
/// `same_param`), pieces split on `&` and `;` (`query_params`); every other
/// parameter is kept byte for byte, with the separator sent before it.
/// `None` when nothing is removed.
fn strip_params(raw_path: &[u8], names: &[&str]) -> Option<String> {
    if names.is_empty() {
        return None;
    }
    let q = raw_path.iter().position(|b| *b == b'?')?;
    let (path, query) = (raw_path.get(..q)?, raw_path.get(q + 1..)?);
    let kept = unnamed_pieces(query, names)?;
    let mut out = path.to_vec();
    for (i, (sep, piece)) in kept.into_iter().enumerate() {
        out.push(if i == 0 { b'?' } else { sep.unwrap_or(b'&') });
        out.extend_from_slice(piece);
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Every cookie but those whose decoded name reads as one of `names`
/// (`same_param`), as one `cookie` header ("" when none is left). `None`
/// when nothing is removed.
fn strip_cookies(headers: &crate::header_map::HeaderMap, names: &[&str]) -> Option<String> {
    let all: Vec<&str> = headers
        .iter()
        .filter(|(k, _)| *k == "cookie")
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    let named = |c: &&str| {
        c.split_once('=')
            .is_some_and(|(k, _)| names.iter().any(|n| same_param(&decoded_name(k.trim().as_bytes()), n)))
    };
    if !all.iter().any(named) {
        return None;
    }
    let kept: Vec<&str> = all.into_iter().filter(|c| !named(c)).collect();
    Some(kept.join("; "))
}

/// Same kind and name: the prefix does not matter for removal.
fn same_place(a: &TokenSource, b: &TokenSource) -> bool {
    match (a, b) {
        (TokenSource::Header { name: x, .. }, TokenSource::Header { name: y, .. }) => x == y,
        (TokenSource::Param(x), TokenSource::Param(y)) | (TokenSource::Cookie(x), TokenSource::Cookie(y)) => x == y,
        _ => false,
    }
}

/// The default token source: `Authorization: Bearer <token>`.
pub fn bearer_source() -> HeaderSourceDoc {
    HeaderSourceDoc {
        name: "authorization".into(),
        value_prefix: Some("Bearer ".into()),
    }
}

/// A request-header edit: `Some` sets the header, `None` removes it. Names
/// and claim values are borrowed (from the policy, the request, the cached
/// identity); only a rewritten `:path` or `cookie` is made per request.
pub type HeaderEdit<'a> = (&'a str, Option<Cow<'a, str>>);

impl<'p> JwtDecision<'p> {
    pub fn mode(&self) -> Mode {
        self.route.jwt.mode
    }

    pub fn action(&self) -> Action {
        Action::new(self.verdict.as_ref().err().map(|d| d.denial()), self.mode())
    }

    /// The verified token, if any.
    pub fn identity(&self) -> Option<&Identity> {
        self.verdict.as_ref().ok()?.as_deref()
    }

    /// Counter to bump, one of `metric_names()`; `metric_index` gives its
    /// index without making the name.
    pub fn metric(&self) -> String {
        let allowed = match self.verdict {
            Ok(Some(_)) => "allowed",
            _ => "allowed_without_token",
        };
        self.action().metric("jwt", allowed)
    }

    /// Index of `metric()` in `metric_names()`.
    pub fn metric_index(&self) -> usize {
        match (&self.verdict, self.mode()) {
            (Ok(Some(_)), _) => Counter::Allowed.index(),
            (Ok(None), _) => Counter::AllowedWithoutToken.index(),
            (Err(d), mode) => METRICS.denied(d.index(), mode),
        }
    }

    /// Request-header edits: every claim header any provider sets is removed,
    /// in every spelling (`x_user_id`), from what the client sent, then set
    /// from a verified token. Every token source of every provider is
    /// emptied on every request, so no unverified token reaches the
    /// application; only the verified token of a provider that forwards
    /// stays where it came. Computed for denials too (the glue does not
    /// apply them: the request ends).
    pub fn header_edits<'a>(&'a self, policy: &'a Policy, req: &JwtRequest<'a>) -> Vec<HeaderEdit<'a>> {
        // Room for the usual edits: one growth, not several.
        let mut edits: Vec<HeaderEdit<'a>> = Vec::with_capacity(8);
        let identity = self.identity();
        // Each edit is a hostcall: a claim header the client did not send
        // needs no removal, nor one the identity sets (a set replaces every
        // copy).
        let set_later = |h: &str| identity.is_some_and(|i| i.headers().any(|(n, _)| n == h));
        for provider in &policy.jwt.providers {
            for (_, header) in &provider.claim_to_headers {
                let sent = req.headers.iter().any(|(k, _)| k == header);
                if sent && !set_later(header) && !edits.iter().any(|(h, _)| *h == header) {
                    edits.push((header, None));
                }
                remove_other_spellings(&mut edits, req.headers, header);
            }
        }
        self.strip_tokens(policy, req, &mut edits);
        if let Some(identity) = identity {
            edits.extend(identity.headers().map(|(h, v)| (h, Some(Cow::Borrowed(v)))));
        }
        edits
    }

    /// The source the verified token of a forwarding provider came in: the
    /// one place a token may stay.
    fn kept_source<'a>(&self, policy: &'a Policy) -> Option<&'a TokenSource> {
        let identity = self.identity()?;
        let forwards = policy.jwt.providers.get(identity.provider).is_some_and(|p| p.forward);
        let (p, s) = self.token_source.filter(|_| forwards)?;
        policy.jwt.providers.get(p)?.sources.get(s)
    }

    fn strip_tokens<'a>(&self, policy: &'a Policy, req: &JwtRequest<'a>, edits: &mut Vec<HeaderEdit<'a>>) {
        let keep = self.kept_source(policy);
        let (mut params, mut cookie_names) = (Vec::new(), Vec::new());
        let sources = policy.jwt.providers.iter().flat_map(|p| &p.sources);
        for source in sources {
            let kept = keep.is_some_and(|k| same_place(k, source));
            match source {
                // Every spelling (the kept one excepted); only values that
                // carry a token of this source, so `Authorization: Basic`
                // is left alone.
                TokenSource::Header { name, prefix } => {
                    for (k, v) in req.headers {
                        // The length first, inline: most names differ in it.
                        let strip = k.len() == name.len()
                            && headers::same_variable(k, name)
                            && !(kept && k == name)
                            && header_token_bytes(v, prefix).is_some();
                        if strip && !edits.iter().any(|(h, _)| *h == k) {
                            edits.push((k, None));
                        }
                    }
                }
                TokenSource::Param(name) if !kept => params.push(name.as_str()),
                TokenSource::Cookie(name) if !kept => cookie_names.push(name.as_str()),
                TokenSource::Param(_) | TokenSource::Cookie(_) => {}
            }
        }
        if let Some(path) = strip_params(req.raw_path, &params) {
            edits.push((":path", Some(Cow::Owned(path))));
        }
        if let Some(cookie) = strip_cookies(req.headers, &cookie_names) {
            edits.push(("cookie", (!cookie.is_empty()).then_some(Cow::Owned(cookie))));
        }
    }

    /// Filter-state writes: the decision always; the identity when verified.
    /// Only the decision record is made here: the rest is borrowed from the
    /// identity, prepared when the token was verified.
    pub fn properties(&self) -> Vec<(&'static str, Cow<'_, [u8]>)> {
        let identity = self.identity();
        let mut out = Vec::with_capacity(2 + identity.map_or(0, |i| i.state().len()));
        out.push((crate::state::DECISION_JWT, Cow::Owned(self.record())));
        if let Action::ShadowDeny(denial) = self.action() {
            out.push((
                crate::tenant::JWT_SHADOW_DENIED,
                Cow::Borrowed(denial.reason.as_bytes()),
            ));
        }
        if let Some(identity) = identity {
            out.extend(identity.state().map(|(k, v)| (k, Cow::Borrowed(v))));
        }
        out
    }

    /// JSON for `tollgate.decision.jwt`; `provider` and `sub` when verified.
    /// The decision for `tollgate.decision.jwt` (and the fused record).
    pub fn record(&self) -> Vec<u8> {
        let fields = self.identity().map_or(&[][..], Identity::record_fields);
        decision::write_record("jwt", &self.route.name, self.mode(), self.action(), fields)
    }
}

/// Removals for every spelling of `managed` the client sent other than
/// `managed` itself, added to `edits` unless already there
/// (`headers::remove_other_spellings`, borrowing the names).
fn remove_other_spellings<'a>(
    edits: &mut Vec<HeaderEdit<'a>>,
    headers: &'a crate::header_map::HeaderMap,
    managed: &str,
) {
    for (name, _) in headers {
        // The length first, inline: most names differ in it.
        let other = name.len() == managed.len() && name != managed && headers::same_variable(name, managed);
        if other && !edits.iter().any(|(h, v)| *h == name && v.is_none()) {
            edits.push((name, None));
        }
    }
}

/// The jwt filter's counters that no decision verdict names, first in
/// `metric_names()`: `index()` is the position there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Allowed,
    AllowedWithoutToken,
    CacheHit,
    CacheMiss,
    JwksFetchOk,
    JwksFetchFailed,
    JwksStaleInUse,
    JwksRefetchUnknownKid,
    SignatureHost,
}

impl Counter {
    pub const ALL: [Counter; 9] = [
        Counter::Allowed,
        Counter::AllowedWithoutToken,
        Counter::CacheHit,
        Counter::CacheMiss,
        Counter::JwksFetchOk,
        Counter::JwksFetchFailed,
        Counter::JwksStaleInUse,
        Counter::JwksRefetchUnknownKid,
        Counter::SignatureHost,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Counter::Allowed => "tollgate.jwt.allowed",
            Counter::AllowedWithoutToken => "tollgate.jwt.allowed_without_token",
            Counter::CacheHit => "tollgate.jwt.cache_hit",
            Counter::CacheMiss => "tollgate.jwt.cache_miss",
            Counter::JwksFetchOk => "tollgate.jwt.jwks_fetch_ok",
            Counter::JwksFetchFailed => "tollgate.jwt.jwks_fetch_failed",
            Counter::JwksStaleInUse => "tollgate.jwt.jwks_stale_in_use",
            Counter::JwksRefetchUnknownKid => "tollgate.jwt.jwks_refetch_unknown_kid",
            Counter::SignatureHost => "tollgate.jwt.signature_host",
        }
    }

    /// Index in `metric_names()`.
    pub fn index(self) -> usize {
        METRICS.own(self as usize)
    }
}

impl JwtDenial {
    /// Position in `ALL` (declaration order).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The jwt stage's counters: `Counter`s, then per denial (`JwtDenial::ALL`).
const METRICS: crate::metrics::MetricTable = crate::metrics::MetricTable::new(Counter::ALL.len(), JwtDenial::ALL.len());

/// Index of `denial.metric("jwt")` in `metric_names()`.
pub fn request_metric_index(denial: RequestDenial) -> usize {
    METRICS.request(denial)
}

/// Every counter the jwt filter keeps, defined once at configure time.
/// Indices: `Counter::index`, `JwtDecision::metric_index`,
/// `request_metric_index`.
pub fn metric_names() -> Vec<String> {
    let own: Vec<&str> = Counter::ALL
        .iter()
        .map(|c| c.name().strip_prefix("tollgate.jwt.").unwrap_or_default())
        .collect();
    let denials: Vec<crate::reply::Denial> = JwtDenial::ALL.iter().map(|d| d.denial()).collect();
    METRICS.names("jwt", &own, &denials)
}

#[cfg(test)]
mod decide_tests;
#[cfg(test)]
mod differential_tests;
#[cfg(test)]
mod tests;
