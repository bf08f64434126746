//! Header names a policy configures, checked in one place: the headers the
//! filters set for the application (`tenant.header`, `tenant.tier_header`,
//! `claim_to_headers[].header_name`) and the token source headers.

use super::errors::{index, join, PolicyErrors};
use super::wire::PolicyDoc;
use crate::tenant::TenantConfig;
use std::collections::{BTreeMap, HashMap};

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
fn canonical(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// No two managed headers share a name (in any spelling), and no managed
/// header is a token source. Claim headers of different providers may share
/// one: only one provider verifies a request.
pub fn check_collisions(doc: &PolicyDoc, tenant: &TenantConfig, errors: &mut PolicyErrors) {
    // canonical name (and provider, for claim headers) -> path of its first use
    let mut tenant_headers: HashMap<String, String> = HashMap::new();
    let mut claim_headers: BTreeMap<(String, usize), String> = BTreeMap::new();
    for (name, path) in [
        (&tenant.header, "tenant.header"),
        (&tenant.tier_header, "tenant.tier_header"),
    ] {
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
