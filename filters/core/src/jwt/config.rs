//! The jwt section of the policy, compiled: providers with their keys and
//! token sources, and per-route requirements and claim rules.

use super::jwk::{Key, KeyKind, KeySet};
use crate::policy::errors::{bounded, bounded_size, compile_methods, index, join, PolicyErrors};
use crate::policy::headers;
use crate::policy::wire::{
    ClaimRuleDoc, JwtFilterDoc, ProviderDoc, RemoteJwksDoc, Requirement, RouteJwtDoc, RulesWithoutToken,
};
use crate::Mode;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use std::collections::HashMap;
use std::rc::Rc;

pub const DEFAULT_MAX_TOKEN_BYTES: u64 = 8192;
/// Longest `max_lifetime_seconds`: a year.
pub const MAX_LIFETIME_LIMIT: u64 = 365 * 86_400;

#[derive(Debug, Clone, Default)]
pub struct JwtConfig {
    pub providers: Vec<Provider>,
    /// Provider index by name (the first, if a name is repeated).
    by_name: HashMap<String, usize>,
    pub max_token_bytes: usize,
    pub cache_entries: usize,
    pub cache_bytes: usize,
    pub use_host_verifier: bool,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub local: Option<Rc<KeySet>>,
    pub remote: Option<RemoteJwks>,
    pub hmac: Option<Key>,
    pub sources: Vec<TokenSource>,
    pub clock_skew: u64,
    pub require_expiration: bool,
    pub max_lifetime: Option<u64>,
    pub forward: bool,
    pub tenant_claim: Option<String>,
    pub require_tenant_claim: bool,
    pub roles_claim: String,
    pub claims_to_state: Vec<String>,
    /// (claim, header)
    pub claim_to_headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
    pub cache_duration: u64,
    pub min_refetch_interval: u64,
    pub stale_ttl: u64,
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Header { name: String, prefix: String },
    Param(String),
    Cookie(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteJwt {
    pub requirement: Requirement,
    /// Indices into `JwtConfig::providers`.
    pub providers: Vec<usize>,
    pub rules: Vec<ClaimRule>,
    pub rules_without_token: RulesWithoutToken,
    pub mode: Mode,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRule {
    pub claim: String,
    pub test: ClaimTest,
    /// Upper-case; empty is every method.
    pub methods: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClaimTest {
    Equals(Value),
    Contains(String),
    AnyOf(Vec<String>),
}

impl JwtConfig {
    pub fn compile(doc: &JwtFilterDoc, path: &str, errors: &mut PolicyErrors) -> JwtConfig {
        let mut providers: Vec<Provider> = Vec::with_capacity(doc.providers.len());
        let mut by_name = HashMap::with_capacity(doc.providers.len());
        let mut issuers: HashMap<&str, usize> = HashMap::with_capacity(doc.providers.len());
        for (i, p) in doc.providers.iter().enumerate() {
            let at = index(&join(path, "providers"), i);
            if by_name.contains_key(&p.name) {
                errors.push(join(&at, "name"), format!("duplicate provider name '{}'", p.name));
            } else {
                by_name.insert(p.name.clone(), i);
            }
            // A token is judged by the provider its issuer names: two would
            // make every later one's settings silently unused.
            if let Some(first) = issuers.get(p.issuer.as_str()) {
                errors.push(
                    join(&at, "issuer"),
                    format!("'{}' is also the issuer of jwt.providers[{first}]", p.issuer),
                );
            } else {
                issuers.insert(p.issuer.as_str(), i);
            }
            providers.push(compile_provider(p, &at, errors));
        }
        JwtConfig {
            providers,
            by_name,
            max_token_bytes: bounded_size(
                doc.max_token_bytes,
                DEFAULT_MAX_TOKEN_BYTES,
                256..=65536,
                &join(path, "max_token_bytes"),
                errors,
            ),
            cache_entries: bounded_size(
                doc.cache_entries,
                1024,
                0..=100_000,
                &join(path, "cache_entries"),
                errors,
            ),
            cache_bytes: bounded_size(
                doc.cache_bytes,
                1 << 20,
                0..=64 << 20,
                &join(path, "cache_bytes"),
                errors,
            ),
            use_host_verifier: doc.use_host_verifier.unwrap_or(true),
        }
    }

    /// The route settings, with `defaults` for what the route leaves out.
    pub fn compile_route(
        &self,
        doc: &RouteJwtDoc,
        defaults: Option<&RouteJwt>,
        path: &str,
        errors: &mut PolicyErrors,
    ) -> RouteJwt {
        let providers = match &doc.providers {
            Some(names) => names
                .iter()
                .enumerate()
                .filter_map(|(i, name)| {
                    let found = self.by_name.get(name).copied();
                    if found.is_none() {
                        errors.push(
                            index(&join(path, "providers"), i),
                            format!("no provider is named '{name}'"),
                        );
                    }
                    found
                })
                .collect(),
            None => defaults.map_or_else(|| (0..self.providers.len()).collect(), |d| d.providers.clone()),
        };
        let rules = match &doc.rules {
            Some(rules) => rules
                .iter()
                .enumerate()
                .filter_map(|(i, r)| compile_rule(r, &index(&join(path, "rules"), i), errors))
                .collect(),
            None => defaults.map(|d| d.rules.clone()).unwrap_or_default(),
        };
        let requirement = doc.requirement.or(defaults.map(|d| d.requirement)).unwrap_or_default();
        if requirement != Requirement::None && self.providers.is_empty() {
            errors.push(
                join(path, "requirement"),
                "needs at least one provider in jwt.providers",
            );
        }
        if requirement == Requirement::None && !rules.is_empty() {
            errors.push(
                join(path, "rules"),
                "claim rules need requirement required or optional (tokens are not looked at)",
            );
        }
        RouteJwt {
            requirement,
            providers,
            rules,
            rules_without_token: doc
                .rules_without_token
                .or(defaults.map(|d| d.rules_without_token))
                .unwrap_or_default(),
            mode: doc.mode.or(defaults.map(|d| d.mode)).unwrap_or_default(),
        }
    }
}

fn compile_provider(doc: &ProviderDoc, path: &str, errors: &mut PolicyErrors) -> Provider {
    if doc.issuer.is_empty() {
        errors.push(join(path, "issuer"), "must not be empty");
    }
    let local = doc
        .local_jwks
        .as_ref()
        .and_then(|jwks| compile_local(jwks, &join(path, "local_jwks"), errors));
    let remote = doc
        .remote_jwks
        .as_ref()
        .and_then(|r| compile_remote(r, &join(path, "remote_jwks"), errors));
    let hmac = doc
        .hmac_secret_base64
        .as_ref()
        .and_then(|secret| match STANDARD.decode(secret) {
            Ok(bytes) if bytes.len() >= 32 => Some(Key {
                kid: None,
                alg: None,
                kind: KeyKind::Hmac(bytes),
                spki: None,
            }),
            Ok(_) => {
                errors.push(
                    join(path, "hmac_secret_base64"),
                    "must be at least 32 bytes (RFC 7518 section 3.2)",
                );
                None
            }
            Err(_) => {
                errors.push(join(path, "hmac_secret_base64"), "is not base64");
                None
            }
        });
    let key_sources = [doc.local_jwks.is_some(), doc.remote_jwks.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if key_sources > 1 {
        errors.push(path, "give local_jwks or remote_jwks, not both");
    }
    if key_sources == 0 && doc.hmac_secret_base64.is_none() {
        errors.push(path, "needs keys: local_jwks, remote_jwks or hmac_secret_base64");
    }
    Provider {
        name: doc.name.clone(),
        issuer: doc.issuer.clone(),
        audiences: doc.audiences.clone(),
        local,
        remote,
        hmac,
        sources: compile_sources(doc, path, errors),
        clock_skew: bounded(
            doc.clock_skew_seconds,
            60,
            0..=300,
            &join(path, "clock_skew_seconds"),
            errors,
        ),
        require_expiration: doc.require_expiration.unwrap_or(true),
        max_lifetime: doc.max_lifetime_seconds.map(|max| {
            bounded(
                Some(max),
                max,
                1..=MAX_LIFETIME_LIMIT,
                &join(path, "max_lifetime_seconds"),
                errors,
            )
        }),
        forward: doc.forward.unwrap_or(false),
        tenant_claim: doc.tenant_claim.clone(),
        // Without tenant_claim too: its tokens are refused where a tenant is required.
        require_tenant_claim: doc.require_tenant_claim.unwrap_or(true),
        roles_claim: doc.roles_claim.clone().unwrap_or_else(|| "roles".to_string()),
        claims_to_state: doc.claims_to_state.clone(),
        claim_to_headers: doc
            .claim_to_headers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if let Err(why) = headers::check_managed(&c.header_name) {
                    errors.push(join(&index(&join(path, "claim_to_headers"), i), "header_name"), why);
                }
                (c.claim_name.clone(), c.header_name.clone())
            })
            .collect(),
    }
}

/// A key set written in the policy: every key must be usable, since a key
/// silently left out would make a reviewer believe it verifies tokens.
fn compile_local(jwks: &Value, path: &str, errors: &mut PolicyErrors) -> Option<Rc<KeySet>> {
    match KeySet::parse_each(jwks.to_string().as_bytes()) {
        Ok((keys, skipped)) if skipped.is_empty() && !keys.is_empty() => Some(Rc::new(KeySet { keys })),
        Ok((_, skipped)) if skipped.is_empty() => {
            errors.push(join(path, "keys"), "must hold at least one key");
            None
        }
        Ok((_, skipped)) => {
            for s in skipped {
                errors.push(index(&join(path, "keys"), s.index), s.why);
            }
            None
        }
        Err(why) => {
            errors.push(path, why);
            None
        }
    }
}

fn compile_sources(doc: &ProviderDoc, path: &str, errors: &mut PolicyErrors) -> Vec<TokenSource> {
    let headers = doc.from_headers.clone().unwrap_or_else(|| vec![super::bearer_source()]);
    let mut sources: Vec<TokenSource> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            if let Err(why) = headers::check_name(&h.name) {
                errors.push(join(&index(&join(path, "from_headers"), i), "name"), why);
            }
            let name = h.name.to_ascii_lowercase();
            TokenSource::Header {
                name,
                prefix: h.value_prefix.clone().unwrap_or_default(),
            }
        })
        .collect();
    sources.extend(doc.from_params.iter().cloned().map(TokenSource::Param));
    sources.extend(doc.from_cookies.iter().cloned().map(TokenSource::Cookie));
    if sources.is_empty() {
        errors.push(path, "needs at least one token source");
    }
    sources
}

fn compile_remote(doc: &RemoteJwksDoc, path: &str, errors: &mut PolicyErrors) -> Option<RemoteJwks> {
    let (authority, uri_path) = match split_uri(&doc.uri) {
        Ok(parts) => parts,
        Err(why) => {
            errors.push(join(path, "uri"), format!("'{}' {why}", doc.uri));
            return None;
        }
    };
    if let Err(why) = check_cluster(&doc.cluster) {
        errors.push(join(path, "cluster"), why);
    }
    let field = |name: &str| join(path, name);
    let timeout_ms = bounded(doc.timeout_ms, 5000, 100..=60_000, &field("timeout_ms"), errors);
    let cache_duration = bounded(
        doc.cache_duration_seconds,
        300,
        1..=86_400,
        &field("cache_duration_seconds"),
        errors,
    );
    let min_refetch_interval = bounded(
        doc.min_refetch_interval_seconds,
        30,
        1..=3600,
        &field("min_refetch_interval_seconds"),
        errors,
    );
    let stale_ttl = bounded(
        doc.stale_ttl_seconds,
        86_400,
        0..=604_800,
        &field("stale_ttl_seconds"),
        errors,
    );
    let max_body_bytes = bounded_size(
        doc.max_body_bytes,
        65_536,
        1024..=1 << 20,
        &field("max_body_bytes"),
        errors,
    );
    Some(RemoteJwks {
        cluster: doc.cluster.clone(),
        authority: authority.to_string(),
        path: uri_path.to_string(),
        timeout_ms,
        cache_duration,
        min_refetch_interval,
        stale_ttl,
        max_body_bytes,
    })
}

/// A cluster name `dispatch_http_call` can find: Envoy takes any string,
/// but one with spaces or control characters is a slip in the YAML, and a
/// name in Istio's outbound form that is not well formed names no cluster
/// Istio makes, so the fetch would fail on every try.
pub fn check_cluster(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must name an Envoy cluster".into());
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        // Collected rather than formatted: `EscapeDebug`'s `Display` costs
        // 2.4 KB of tollgate.wasm.
        let shown: String = name.escape_debug().collect();
        return Err(format!("'{shown}' must not hold spaces or control characters"));
    }
    if name.starts_with(ISTIO_OUTBOUND) && istio_cluster(name).is_none() {
        return Err(format!(
            "'{name}' is not an Istio cluster name: expected outbound|PORT|SUBSET|HOST \
             (PORT 1 to 65535, SUBSET often empty, HOST a host name)"
        ));
    }
    Ok(())
}

const ISTIO_OUTBOUND: &str = "outbound|";

/// `(port, host)` of a well-formed Istio outbound cluster name
/// (`outbound|443||idp.example.com`); `None` for any other name.
pub fn istio_cluster(name: &str) -> Option<(u16, &str)> {
    let mut parts = name.strip_prefix(ISTIO_OUTBOUND)?.split('|');
    let (port, _subset, host) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port = port.parse::<u16>().ok().filter(|p| *p > 0)?;
    // `*.example.com` is a ServiceEntry wildcard host.
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*'));
    host_ok.then_some((port, host))
}

/// The `:authority` and `:path` of a JWKS fetch, refusing what an HTTP
/// request could not carry as written.
pub fn split_uri(uri: &str) -> Result<(&str, &str), &'static str> {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or("must start with https:// or http://")?;
    if !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces");
    }
    if uri.contains('#') {
        return Err("must not have a fragment");
    }
    let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    if path.starts_with('?') {
        return Err("needs a path before its query");
    }
    if authority.contains('@') {
        return Err("must not hold user information");
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (addr, after) = v6.split_once(']').ok_or("has an unclosed '['")?;
            if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
                return Err("has an invalid IPv6 address");
            }
            if !after.is_empty() && !after.starts_with(':') {
                return Err("has an invalid host");
            }
            (authority, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err("has no host");
    }
    if !host.starts_with('[')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err("has an invalid host");
    }
    if port
        .is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || !matches!(p.parse::<u16>(), Ok(1..)))
    {
        return Err("has a port that is not a number from 1 to 65535");
    }
    Ok((authority, if path.is_empty() { "/" } else { path }))
}

fn compile_rule(doc: &ClaimRuleDoc, path: &str, errors: &mut PolicyErrors) -> Option<ClaimRule> {
    if doc.claim.is_empty() {
        errors.push(join(path, "claim"), "must not be empty");
    }
    let methods = compile_methods(&doc.methods, &join(path, "methods"), errors);
    let test = match (&doc.equals, &doc.contains, &doc.any_of) {
        (Some(v), None, None) => ClaimTest::Equals(v.clone()),
        (None, Some(v), None) => ClaimTest::Contains(v.clone()),
        (None, None, Some(v)) if !v.is_empty() => ClaimTest::AnyOf(v.clone()),
        _ => {
            errors.push(path, "give exactly one of equals, contains, any_of (non-empty)");
            return None;
        }
    };
    Some(ClaimRule {
        claim: doc.claim.clone(),
        test,
        methods,
    })
}
