//! Tokens for the load, minted once per run with the fixture keys by
//! jsonwebtoken (an implementation independent of ours).

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

pub const ISSUER: &str = "https://idp.bench";
/// The tenant every bench token names and every tenant policy knows.
pub const TENANT: &str = "ACME";

pub struct Tokens {
    /// The JWKS every configuration trusts: the fixture key `rsa-1`.
    pub jwks: Value,
    /// Distinct valid tokens; the first is the cached configurations' one.
    pub valid: Vec<String>,
    /// Signed by `rsa-2` under `rsa-1`'s kid: well formed, refused.
    pub forged: String,
}

fn fixture(name: &str) -> Result<String, String> {
    let path = crate::util::root().join("tests/fixtures/keys").join(name);
    std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
}

fn rsa_key(name: &str) -> Result<EncodingKey, String> {
    EncodingKey::from_rsa_pem(fixture(name)?.as_bytes()).map_err(|e| format!("{name}: {e}"))
}

fn mint(key: &EncodingKey, n: usize, now: u64) -> Result<String, String> {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let claims = json!({
        "iss": ISSUER, "sub": format!("user-{n}"), "aud": "bench-api",
        "iat": now, "exp": now + 3600, "jti": n.to_string(), "tenant": TENANT,
    });
    encode(&header, &claims, key).map_err(|e| format!("mint: {e}"))
}

fn rsa_1_jwks() -> Result<Value, String> {
    let all: Value = serde_json::from_str(&fixture("jwks.json")?).map_err(|e| format!("jwks.json: {e}"))?;
    let keys: Vec<Value> = all["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|k| k["kid"] == "rsa-1")
        .cloned()
        .collect();
    Ok(json!({ "keys": keys }))
}

pub fn mint_all(count: usize) -> Result<Tokens, String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let key = rsa_key("rsa-1.pem")?;
    let valid = (0..count.max(1))
        .map(|n| mint(&key, n, now))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Tokens {
        jwks: rsa_1_jwks()?,
        valid,
        forged: mint(&rsa_key("rsa-2.pem")?, 0, now)?,
    })
}
