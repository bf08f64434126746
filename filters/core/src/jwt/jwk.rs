//! Keys: JWK sets (RFC 7517) and the algorithms (RFC 7518) each key fits.

use super::der;
use super::rsa::RsaKey;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use std::rc::Rc;

/// Most keys read from one JWKS; providers publish a handful.
pub const MAX_KEYS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
    Hs256,
    Hs384,
    Hs512,
}

impl Alg {
    pub const ALL: [Alg; 12] = [
        Alg::Rs256,
        Alg::Rs384,
        Alg::Rs512,
        Alg::Ps256,
        Alg::Ps384,
        Alg::Ps512,
        Alg::Es256,
        Alg::Es384,
        Alg::EdDsa,
        Alg::Hs256,
        Alg::Hs384,
        Alg::Hs512,
    ];

    /// `none` and everything unknown give `None`.
    pub fn parse(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::EdDsa => "EdDSA",
            Alg::Hs256 => "HS256",
            Alg::Hs384 => "HS384",
            Alg::Hs512 => "HS512",
        }
    }

    /// Whether a key of this kind may verify this algorithm (no HS256 with an
    /// RSA public key, no RS256 with an EC key, ...).
    pub fn fits(self, key: &KeyKind) -> bool {
        matches!(
            (self, key),
            (
                Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256 | Alg::Ps384 | Alg::Ps512,
                KeyKind::Rsa(_)
            ) | (Alg::Es256, KeyKind::P256(_))
                | (Alg::Es384, KeyKind::P384(_))
                | (Alg::EdDsa, KeyKind::Ed25519(_))
                | (Alg::Hs256 | Alg::Hs384 | Alg::Hs512, KeyKind::Hmac(_))
        )
    }
}

#[derive(Debug, Clone)]
pub enum KeyKind {
    Rsa(Rc<RsaKey>),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    Hmac(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct Key {
    pub kid: Option<String>,
    /// The JWK's own `alg`, which then is the only one it may verify.
    pub alg: Option<Alg>,
    pub kind: KeyKind,
    /// SubjectPublicKeyInfo DER, for the host's verifier (RSA and EC only).
    pub spki: Option<Vec<u8>>,
}

impl Key {
    pub fn accepts(&self, alg: Alg) -> bool {
        alg.fits(&self.kind) && self.alg.is_none_or(|a| a == alg)
    }
}

#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub keys: Vec<Key>,
}

/// A key of a JWKS that is not used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub index: usize,
    pub why: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "keys[{}]: {}", self.index, self.why)
    }
}

#[derive(Deserialize)]
struct JwksDoc {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct JwkDoc {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

impl KeySet {
    /// Parses a JWKS. Keys that are not for signatures, or of a type or curve
    /// we do not verify, or invalid, are skipped and named in the second
    /// value; a set with no usable key is an error.
    pub fn parse(json: &[u8]) -> Result<(KeySet, Vec<Skipped>), String> {
        let (keys, skipped) = KeySet::parse_each(json)?;
        if keys.is_empty() {
            let why: Vec<String> = skipped.iter().map(ToString::to_string).collect();
            return Err(format!("no usable signing key ({})", why.join("; ")));
        }
        Ok((KeySet { keys }, skipped))
    }

    /// Every key of a JWKS, parsed or skipped; an error only for a document
    /// that is not a JWKS.
    pub fn parse_each(json: &[u8]) -> Result<(Vec<Key>, Vec<Skipped>), String> {
        let doc: JwksDoc = serde_json::from_slice(json).map_err(|e| format!("not a JWKS: {e}"))?;
        if doc.keys.len() > MAX_KEYS {
            return Err(format!("{} keys; at most {MAX_KEYS} are read", doc.keys.len()));
        }
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for (i, value) in doc.keys.into_iter().enumerate() {
            match serde_json::from_value::<JwkDoc>(value)
                .map_err(|e| e.to_string())
                .and_then(parse_key)
            {
                Ok(key) => keys.push(key),
                Err(why) => skipped.push(Skipped { index: i, why }),
            }
        }
        Ok((keys, skipped))
    }

    /// The key for a token: by `kid` when it has one; otherwise the only key
    /// that accepts `alg`. `None` when no key, or more than one, fits.
    pub fn select(&self, kid: Option<&str>, alg: Alg) -> Option<&Key> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid) && k.accepts(alg)),
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.accepts(alg));
                let first = fitting.next();
                if fitting.next().is_some() {
                    return None;
                }
                first
            }
        }
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

pub fn b64(field: &str, value: Option<&String>) -> Result<Vec<u8>, String> {
    let value = value.ok_or_else(|| format!("missing '{field}'"))?;
    URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .map_err(|_| format!("'{field}' is not base64url"))
}

fn parse_key(doc: JwkDoc) -> Result<Key, String> {
    if let Some(usage) = doc.usage.as_deref().filter(|u| *u != "sig") {
        return Err(format!("use '{usage}' is not for signatures"));
    }
    let alg = match doc.alg.as_deref() {
        None => None,
        Some(name) => Some(Alg::parse(name).ok_or_else(|| format!("unsupported alg '{name}'"))?),
    };
    let (kind, spki) = match (doc.kty.as_str(), doc.crv.as_deref()) {
        ("RSA", _) => {
            let key = RsaKey::new(&b64("n", doc.n.as_ref())?, &b64("e", doc.e.as_ref())?)?;
            let spki = der::rsa_spki(&key.modulus_be(), key.exponent());
            (KeyKind::Rsa(Rc::new(key)), Some(spki))
        }
        ("EC", Some(curve @ ("P-256" | "P-384"))) => {
            let p384 = curve == "P-384";
            let size = if p384 { 48 } else { 32 };
            let (x, y) = (b64("x", doc.x.as_ref())?, b64("y", doc.y.as_ref())?);
            if x.len() != size || y.len() != size {
                return Err(format!("{curve} coordinates must be {size} bytes"));
            }
            let mut sec1 = vec![0x04];
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            let kind = if p384 {
                KeyKind::P384(p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| "point not on P-384")?)
            } else {
                KeyKind::P256(p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| "point not on P-256")?)
            };
            (kind, Some(der::ec_spki(p384, &sec1)))
        }
        ("OKP", Some("Ed25519")) => {
            let x: [u8; 32] = b64("x", doc.x.as_ref())?
                .try_into()
                .map_err(|_| "Ed25519 key must be 32 bytes")?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|_| "not an Ed25519 point")?;
            (KeyKind::Ed25519(key), None)
        }
        // Shared secrets come only from the policy, never from a JWKS.
        ("oct", _) => return Err("oct keys are not read from a JWKS; use hmac_secret_base64".into()),
        (kty, crv) => return Err(format!("unsupported key type {kty} {}", crv.unwrap_or(""))),
    };
    if let Some(a) = alg {
        if !a.fits(&kind) {
            return Err(format!("alg {} does not fit a {} key", a.name(), doc.kty));
        }
    }
    Ok(Key {
        kid: doc.kid,
        alg,
        kind,
        spki,
    })
}
