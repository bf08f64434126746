//! Header names a policy configures, checked in one place: the headers the
//! filters set for the application (`tenant.header`, `tenant.tier_header`,
//! `claim_to_headers[].header_name`) and the token source headers.

use super::errors::{index, join, PolicyErrors};
use super::wire::PolicyDoc;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Headers that make frameworks, or auth middlewares behind the sidecar,
/// use another path or URL (Symfony, IIS URL Rewrite: `x-original-url`,
/// `x-rewrite-url`; nginx `auth_request` set-ups: `x-original-uri`; Traefik
/// ForwardAuth, read by Authelia: `x-forwarded-uri`; Kong: `x-forwarded-path`),
/// method (`request::METHOD_HEADERS`) or host and prefix (Django, Express
/// `trust proxy`, Spring: `x-forwarded-host`, `x-forwarded-prefix`,
/// `forwarded`) than the ones the filters decided on. The sidecar is the
/// application's last hop, so no one it trusts sent them. None is one Envoy
/// sets before the filters run (`x-forwarded-for`, `x-forwarded-proto`), and
/// `x-envoy-original-path` is Envoy's (reserved).
pub const DEFAULT_STRIP: &[&str] = &[
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
    "x-forwarded-method",
    "x-forwarded-host",
    "x-forwarded-prefix",
    "forwarded",
];

/// Headers a filter must never set: hop-by-hop, framing, credentials and
/// routing, which the proxy or the client owns.
const RESERVED: &[&str] = &[
    "host",
    "authorization",
    "cookie",
    "content-length",
    "te",
    "transfer-encoding",
    "connection",
    "upgrade",
    "keep-alive",
];
/// Prefixes of reserved names: proxy credentials and Envoy's own controls.
const RESERVED_PREFIXES: &[&str] = &["proxy-", "x-envoy-"];

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A header name as written in a request (any case); pseudo-headers refused.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.starts_with(':') {
        return Err(format!("'{name}' is a pseudo-header"));
    }
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(format!("'{name}' is not a header name"));
    }
    Ok(())
}

/// A header a filter sets: a lower-case name that is not reserved.
pub fn check_managed(name: &str) -> Result<(), String> {
    check_name(name)?;
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("'{name}' must be a lower-case header name"));
    }
    let canonical = canonical(name);
    if RESERVED.contains(&canonical.as_str()) || RESERVED_PREFIXES.iter().any(|p| canonical.starts_with(p)) {
        return Err(format!("'{name}' is reserved"));
    }
    Ok(())
}

/// Many servers (CGI, WSGI, nginx) read `x_user_id` as `x-user-id`.
pub(crate) fn canonical(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// No two managed headers share a name (in any spelling), and no managed
/// header is a token source. Claim headers of different providers may share
/// one: only one provider verifies a request.
/// `tenant`: the tenant and tier header names (`TenantConfig`).
pub fn check_collisions(doc: &PolicyDoc, tenant: [&str; 2], errors: &mut PolicyErrors) {
    // canonical name (and provider, for claim headers) -> path of its first use
    let mut tenant_headers: HashMap<String, String> = HashMap::new();
    let mut claim_headers: BTreeMap<(String, usize), String> = BTreeMap::new();
    for (name, path) in [(tenant[0], "tenant.header"), (tenant[1], "tenant.tier_header")] {
        if let Some(first) = tenant_headers.get(&canonical(name)) {
            errors.push(path, format!("'{name}' is also {first}"));
        }
        tenant_headers
            .entry(canonical(name))
            .or_insert_with(|| path.to_string());
    }
    for (i, p) in doc.jwt.providers.iter().enumerate() {
        let at = join(&index("jwt.providers", i), "claim_to_headers");
        for (j, c) in p.claim_to_headers.iter().enumerate() {
            let path = join(&index(&at, j), "header_name");
            let name = canonical(&c.header_name);
            let first = tenant_headers
                .get(&name)
                .or_else(|| claim_headers.get(&(name.clone(), i)));
            if let Some(first) = first {
                errors.push(path, format!("'{}' is also {first}", c.header_name));
            } else {
                claim_headers.insert((name, i), path);
            }
        }
    }
    let mut managed: HashMap<&str, &str> = HashMap::new();
    for (name, path) in tenant_headers
        .iter()
        .chain(claim_headers.iter().map(|((name, _), path)| (name, path)))
    {
        managed.entry(name.as_str()).or_insert(path.as_str());
    }
    for (i, p) in doc.jwt.providers.iter().enumerate() {
        let at = join(&index("jwt.providers", i), "from_headers");
        for (j, h) in p.from_headers.iter().flatten().enumerate() {
            if let Some(first) = managed.get(canonical(&h.name).as_str()) {
                errors.push(
                    join(&index(&at, j), "name"),
                    format!("'{}' is also {first}, a header the filters set", h.name),
                );
            }
        }
    }
}

/// `strip_headers`: names a filter may touch, each once, and none the
/// filters read or set (removing `x-tenant-id` before the tenant filter
/// reads it would silently change where the tenant comes from).
pub fn compile_strip(doc: &PolicyDoc, tenant: [&str; 2], errors: &mut PolicyErrors) -> Vec<String> {
    let Some(names) = &doc.strip_headers else {
        return DEFAULT_STRIP.iter().map(|n| n.to_string()).collect();
    };
    // The default token source, `authorization`, is reserved anyway.
    let mut used: HashSet<String> = HashSet::from(tenant.map(canonical));
    for p in &doc.jwt.providers {
        used.extend(p.claim_to_headers.iter().map(|c| canonical(&c.header_name)));
        used.extend(p.from_headers.iter().flatten().map(|h| canonical(&h.name)));
    }
    let mut seen: HashSet<String> = HashSet::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let at = index("strip_headers", i);
        if let Err(why) = check_managed(name) {
            errors.push(at, why);
        } else if used.contains(&canonical(name)) {
            errors.push(at, format!("'{name}' is a header the filters read or set"));
        } else if !seen.insert(canonical(name)) {
            errors.push(at, format!("'{name}' is listed twice (counting '_' as '-')"));
        }
    }
    names.clone()
}
