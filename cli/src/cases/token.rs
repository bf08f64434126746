//! A token made from a case's `claims`. It carries no valid signature: the
//! case runs with signatures skipped, as `tollgate explain --no-verify`
//! does, so times, issuer and audience are still the jwt stage's to check.

use serde_json::{Map, Value};

/// The header names RS256 only because the filter's token parser refuses
/// algorithms it does not know; no key is looked up for a trusted token.
const HEADER: &[u8] = br#"{"alg":"RS256","typ":"JWT","kid":"tollgate-test-unsigned"}"#;
const SIGNATURE: &[u8] = b"not signed";

/// `header.claims.signature`, each part base64url without padding.
pub fn unsigned(claims: &Map<String, Value>) -> String {
    let payload = Value::Object(claims.clone()).to_string();
    format!(
        "{}.{}.{}",
        base64url(HEADER),
        base64url(payload.as_bytes()),
        base64url(SIGNATURE)
    )
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// RFC 4648 section 5, without padding (as JWS writes it).
fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let group = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        // n input bytes give n + 1 characters.
        for i in 0..=chunk.len() {
            let index = (group >> (18 - 6 * i)) & 63;
            let c = ALPHABET.get(index as usize).copied().unwrap_or(b'A');
            out.push(char::from(c));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{base64url, unsigned};
    use serde_json::json;

    #[test]
    fn base64url_matches_rfc_4648_vectors() {
        let rows = [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in rows {
            assert_eq!(base64url(plain.as_bytes()), encoded);
        }
        // The URL-safe alphabet's last two characters.
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn the_filter_reads_the_claims_back() {
        let claims = json!({"iss": "i", "tenant": "ACME", "roles": ["a", "b"], "n": "é"});
        let claims = claims.as_object().unwrap().clone();
        let token = unsigned(&claims);
        let parsed = tollgate_core::jwt::token::parse(&token).unwrap();
        assert_eq!(parsed.claims, claims);
        assert_eq!(parsed.kid.as_deref(), Some("tollgate-test-unsigned"));
    }
}
