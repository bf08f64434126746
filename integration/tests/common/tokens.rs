//! Tokens minted by jsonwebtoken with the fixture keys, and a provider that
//! trusts them: for tests that need a valid token without the jwt tests'
//! own helpers.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};
use tollgate_integration::paths;

pub const ISSUER: &str = "https://idp.test";
pub const AUDIENCE: &str = "254carbon-api";

fn fixture(name: &str) -> String {
    let path = paths::repo_root().join("tests/fixtures/keys").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Valid for ten minutes, tenant ACME, the `trino:query` and `echo:call` scopes.
pub fn claims() -> Value {
    json!({
        "iss": ISSUER, "sub": "user@254carbon.com", "aud": AUDIENCE,
        "exp": now() + 600, "iat": now(),
        "roles": ["data-engineer"], "scope": "trino:query echo:call",
        "tenant": "ACME",
    })
}

/// `claims()` with `patch` applied: a `null` removes the claim.
pub fn claims_with(patch: &Value) -> Value {
    let mut claims = claims();
    if let (Some(all), Some(patch)) = (claims.as_object_mut(), patch.as_object()) {
        for (k, v) in patch {
            if v.is_null() {
                all.remove(k);
            } else {
                all.insert(k.clone(), v.clone());
            }
        }
    }
    claims
}

/// An RS256 token signed with `rsa-1`.
pub fn token(claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(fixture("rsa-1.pem").as_bytes()).unwrap_or_else(|e| panic!("rsa-1.pem: {e}"));
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    encode(&header, claims, &key).unwrap_or_else(|e| panic!("mint: {e}"))
}

pub fn bearer(claims: &Value) -> String {
    format!("Bearer {}", token(claims))
}

/// A provider with the fixture's `rsa-1` key in `local_jwks`, the tenant
/// claim `tenant`, `sub` as `x-user-id`, and tokens in `access_token`.
pub fn local_provider() -> Value {
    let all: Value = serde_json::from_str(&fixture("jwks.json")).unwrap_or_default();
    let keys: Vec<Value> = all["keys"]
        .as_array()
        .map(|keys| keys.iter().filter(|k| k["kid"] == "rsa-1").cloned().collect())
        .unwrap_or_default();
    json!({
        "name": "platform", "issuer": ISSUER, "audiences": [AUDIENCE],
        "local_jwks": {"keys": keys},
        "tenant_claim": "tenant",
        "from_params": ["access_token"],
        "claim_to_headers": [{"claim_name": "sub", "header_name": "x-user-id"}],
    })
}

/// The same provider with keys from `cluster` (a port nothing answers on
/// gives 503 `jwks_unavailable`).
pub fn remote_provider(cluster: &str) -> Value {
    json!({
        "name": "platform", "issuer": ISSUER, "tenant_claim": "tenant",
        "remote_jwks": {
            "uri": "http://idp.test/.well-known/jwks.json", "cluster": cluster,
            "timeout_ms": 1000, "cache_duration_seconds": 300, "min_refetch_interval_seconds": 1,
        },
    })
}
