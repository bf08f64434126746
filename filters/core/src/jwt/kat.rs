//! Known-answer vectors (test fixture keys, public data) used at configure
//! time to find out whether the host's `verify_signature` works: it must
//! accept each token and refuse it with one signature bit flipped.

pub const RSA_JWK: &str = r#"{"kty": "RSA", "kid": "rsa-1", "use": "sig", "n": "wSjBy8QMcO8a_cdjBh2xy0HPwCcqynIoYW4D0auwqzyIHBZQ8KBIWqdf20rrHY9e8Dgi4YvJVeeeh3GL6zbJdvRSfDQ8TCIJu-XYk4sCJ_EbeMVdXYH9s-ZwZyHhcWjjS7xRLpr0YACN6yQzCodREqzma2pdRO793vV_TbKljBqSUah7mTM1ynPpBeTqMCf7UhlDw9I_aiNoPWpMSyeySDXaUbb3fp-WjZau0Bt5IURcL7yINt4wu3Am69H1MlAvfuZBgJqxb_YwwMt2SYcoxuYFIgWdj13Swtv3BK_hHvzcDWY1n8pMV0zl4fCBC4ZdS7QNhisMB9km4fVT3vyy2w", "e": "AQAB"}"#;
pub const RS256_TOKEN: &str = "eyJhbGciOiAiUlMyNTYiLCAia2lkIjogInJzYS0xIiwgInR5cCI6ICJKV1QifQ.eyJpc3MiOiAiaHR0cHM6Ly9pZHAudGVzdCIsICJzdWIiOiAiZml4dHVyZSJ9.I6RWgPZFKN8x4YuiRQPJqvwWxKKeuR6Aawte0jJQioVEohqWt8rrzOvY3ofBb49tDOEWpdkvYELoQCXUHLvlTaP5PCcZllJ_LRe9I9fseX9qasnHUKQxJ-tJ0PzLOFuKve-t8rNgQQEmfbHJSx-jhs_XqTlLdxX89gQH2V4YKXowOmD3ZoZwVwrCljMFdf-gpOW0pvl5TqHOTtAeRMM9ZJ3JDV7MSGpD-wtNr3oZ8j7dKNKX6SdfUCR6OMUa7lelae6whOjt1hd3YfnzbkH6r1pYJYRhwQ7Hu0pTjcQQNJfh-kmmO6pbx22HY3Ip8yzr08DcS8R1CUoi9wh3sg-O7A";
pub const EC_JWK: &str = r#"{"kty": "EC", "kid": "ec-256", "crv": "P-256", "x": "JAAqOThqvgXJExZyq1d_qCtsWaAyM6O-HjVu4dYxano", "y": "UDCNzvEWPN6LZAw_euJYqhXI50NnwHErtPndAwn0bzQ"}"#;
pub const ES256_TOKEN: &str = "eyJhbGciOiAiRVMyNTYiLCAia2lkIjogImVjLTI1NiIsICJ0eXAiOiAiSldUIn0.eyJpc3MiOiAiaHR0cHM6Ly9pZHAudGVzdCIsICJzdWIiOiAiZml4dHVyZSJ9.T6ZbRVWbdEbCajVuGHLLevS8N2J8CvCDqgTBwFQQZdTv-UbB4bGI14ZHOx-svwg_rqIaUDoUu_1kbZwwlfvuIA";

use super::jwk::{Alg, KeySet};
use super::token;
use super::verify::{host_hash, HostVerifier};

/// `true` when the host verifies RS256 and ES256 right, both ways.
pub fn host_passes(host: &dyn HostVerifier) -> bool {
    [(RSA_JWK, RS256_TOKEN), (EC_JWK, ES256_TOKEN)]
        .iter()
        .all(|(jwk, jwt)| check(host, jwk, jwt))
}

fn check(host: &dyn HostVerifier, jwk: &str, jwt: &str) -> bool {
    let Ok((set, _)) = KeySet::parse(format!(r#"{{"keys":[{jwk}]}}"#).as_bytes()) else {
        return false;
    };
    let Ok(parsed) = token::parse(jwt) else {
        return false;
    };
    let (Some(key), Some(hash)) = (set.keys.first(), host_hash(parsed.alg)) else {
        return false;
    };
    let Some(spki) = key.spki.as_deref() else {
        return false;
    };
    let signature = match parsed.alg {
        Alg::Es256 => super::der::ecdsa_der(&parsed.signature),
        _ => Some(parsed.signature.clone()),
    };
    let Some(good) = signature else { return false };
    let mut bad = good.clone();
    if let Some(byte) = bad.last_mut() {
        *byte ^= 0x01;
    }
    host.verify(hash, spki, &good, parsed.signing_input) == Some(true)
        && host.verify(hash, spki, &bad, parsed.signing_input) == Some(false)
}
