//! The key a request counts under: one value per key part of a limit.
//! A request without a value for a part (no tenant, no header) counts
//! under the empty value: all such requests share one bucket.

use super::{KeyPart, Limit};
use crate::header_map::HeaderMap;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

/// Longest value used as is; a longer one (a header) is replaced by its
/// digest, so descriptors and logs stay small.
pub const MAX_VALUE_BYTES: usize = 256;

/// What the key parts are read from.
#[derive(Debug, Clone, Copy)]
pub struct KeyInputs<'a> {
    pub tenant: Option<&'a str>,
    pub tier: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub client_ip: Option<&'a str>,
    pub route: &'a str,
    pub headers: &'a HeaderMap,
}

/// The request's value for each part of `limit.key`, in order.
pub fn values<'a>(limit: &Limit, inputs: &KeyInputs<'a>) -> Vec<Cow<'a, str>> {
    limit.key.iter().map(|part| value(part, inputs)).collect()
}

fn value<'a>(part: &KeyPart, inputs: &KeyInputs<'a>) -> Cow<'a, str> {
    let text = match part {
        KeyPart::Tenant => inputs.tenant,
        KeyPart::Tier => inputs.tier,
        KeyPart::Subject => inputs.subject,
        KeyPart::ClientIp => inputs.client_ip,
        KeyPart::Route => Some(inputs.route),
        KeyPart::Header(name) => {
            let Some(bytes) = inputs.headers.first(name) else {
                return Cow::Borrowed("");
            };
            return bounded(String::from_utf8_lossy(bytes));
        }
    };
    bounded(Cow::Borrowed(text.unwrap_or("")))
}

fn bounded(text: Cow<'_, str>) -> Cow<'_, str> {
    if text.len() <= MAX_VALUE_BYTES {
        return text;
    }
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    Cow::Owned(format!("sha256:{hex}"))
}

/// A key's fingerprint: what a slot records. SHA-256, so that no client
/// can make its key collide with another's bucket.
pub fn fingerprint(limit: &str, values: &[Cow<'_, str>]) -> [u8; 16] {
    let mut hash = Sha256::new();
    for part in std::iter::once(limit).chain(values.iter().map(|v| v.as_ref())) {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    // Zero marks a slot never used.
    if out == [0; 16] {
        out[0] = 1;
    }
    out
}

/// The client's address: with `hops` 0 the downstream peer's
/// (`source.address`, `ip:port`); else the `hops`-th address from the
/// right of `X-Forwarded-For` (all its headers, in order), or the peer's
/// when the header holds fewer. `None` when neither is an address.
pub fn client_ip(source_address: Option<&[u8]>, headers: &HeaderMap, hops: u32) -> Option<String> {
    let peer = || {
        source_address
            .and_then(|a| std::str::from_utf8(a).ok())
            .and_then(parse_address)
    };
    if hops == 0 {
        return peer();
    }
    let forwarded: Vec<&[u8]> = headers
        .iter()
        .filter(|(name, _)| *name == "x-forwarded-for")
        .flat_map(|(_, value)| value.split(|b| *b == b','))
        .collect();
    let hops = usize::try_from(hops).unwrap_or(usize::MAX);
    match forwarded.len().checked_sub(hops).and_then(|i| forwarded.get(i)) {
        Some(entry) => std::str::from_utf8(entry).ok().and_then(|e| parse_address(e.trim())),
        None => peer(),
    }
}

/// An address as `ip`, `ip:port` or `[ip]:port`, in its canonical text.
fn parse_address(text: &str) -> Option<String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    text.parse::<SocketAddr>().ok().map(|a| a.ip().to_string())
}
