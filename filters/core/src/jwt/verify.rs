//! Signature checks. The host's native verifier is tried first where it can
//! do the algorithm; this pure-Rust one is the fallback.

use super::der;
use super::jwk::{Alg, Key, KeyKind};
use super::rsa;
use hmac::{KeyInit, Mac};
use sha2::{Sha256, Sha384, Sha512};

/// A verifier the host offers (Envoy's `verify_signature`: BoringSSL).
pub trait HostVerifier {
    /// `Some(valid)` when the host checked it, `None` when it cannot.
    fn verify(&self, hash: &str, spki: &[u8], signature: &[u8], text: &[u8]) -> Option<bool>;

    /// Trust a token's claims without choosing a key or checking its
    /// signature (times, issuer and audience are still checked). Only
    /// `tollgate explain --no-verify` answers yes, for what-if questions;
    /// the filters' verifier never does.
    fn skips_signatures(&self) -> bool {
        false
    }
}

/// No host verifier: everything runs in Rust.
pub struct NoHost;

impl HostVerifier for NoHost {
    fn verify(&self, _: &str, _: &[u8], _: &[u8], _: &[u8]) -> Option<bool> {
        None
    }
}

/// What the host's BoringSSL can check through `EVP_DigestVerify` with
/// default padding: RSA PKCS#1 v1.5 and ECDSA. Not PSS (no padding
/// parameter), not Ed25519 (no digest), not HMAC.
pub fn host_hash(alg: Alg) -> Option<&'static str> {
    match alg {
        Alg::Rs256 | Alg::Es256 => Some("sha256"),
        Alg::Rs384 | Alg::Es384 => Some("sha384"),
        Alg::Rs512 => Some("sha512"),
        _ => None,
    }
}

/// Checks a signature: on the host when it can, else in Rust.
pub fn verify(alg: Alg, key: &Key, input: &[u8], signature: &[u8], host: &dyn HostVerifier) -> bool {
    // JWS ECDSA is fixed-size `r || s` (RFC 7518 section 3.4): BoringSSL
    // would take other lengths, making the same token valid in several forms.
    if !key.accepts(alg) || !ecdsa_length_ok(alg, signature) {
        return false;
    }
    if let (Some(hash), Some(spki)) = (host_hash(alg), key.spki.as_deref()) {
        let host_signature = match alg {
            Alg::Es256 | Alg::Es384 => der::ecdsa_der(signature),
            _ => Some(signature.to_vec()),
        };
        if let Some(sig) = host_signature {
            if let Some(valid) = host.verify(hash, spki, &sig, input) {
                return valid;
            }
        }
    }
    verify_in_rust(alg, &key.kind, input, signature)
}

fn ecdsa_length_ok(alg: Alg, signature: &[u8]) -> bool {
    match alg {
        Alg::Es256 => signature.len() == 64,
        Alg::Es384 => signature.len() == 96,
        _ => true,
    }
}

pub fn verify_in_rust(alg: Alg, key: &KeyKind, input: &[u8], signature: &[u8]) -> bool {
    match (alg, key) {
        (Alg::Rs256, KeyKind::Rsa(k)) => rsa::verify_pkcs1v15::<Sha256>(k, rsa::SHA256_PREFIX, input, signature),
        (Alg::Rs384, KeyKind::Rsa(k)) => rsa::verify_pkcs1v15::<Sha384>(k, rsa::SHA384_PREFIX, input, signature),
        (Alg::Rs512, KeyKind::Rsa(k)) => rsa::verify_pkcs1v15::<Sha512>(k, rsa::SHA512_PREFIX, input, signature),
        (Alg::Ps256, KeyKind::Rsa(k)) => rsa::verify_pss::<Sha256>(k, input, signature),
        (Alg::Ps384, KeyKind::Rsa(k)) => rsa::verify_pss::<Sha384>(k, input, signature),
        (Alg::Ps512, KeyKind::Rsa(k)) => rsa::verify_pss::<Sha512>(k, input, signature),
        (Alg::Es256, KeyKind::P256(k)) => {
            use p256::ecdsa::signature::Verifier;
            p256::ecdsa::Signature::from_slice(signature).is_ok_and(|s| k.verify(input, &s).is_ok())
        }
        (Alg::Es384, KeyKind::P384(k)) => {
            use p384::ecdsa::signature::Verifier;
            p384::ecdsa::Signature::from_slice(signature).is_ok_and(|s| k.verify(input, &s).is_ok())
        }
        (Alg::EdDsa, KeyKind::Ed25519(k)) => {
            ed25519_dalek::Signature::from_slice(signature).is_ok_and(|s| k.verify_strict(input, &s).is_ok())
        }
        (Alg::Hs256, KeyKind::Hmac(secret)) => hmac_ok::<hmac::Hmac<Sha256>>(secret, input, signature),
        (Alg::Hs384, KeyKind::Hmac(secret)) => hmac_ok::<hmac::Hmac<Sha384>>(secret, input, signature),
        (Alg::Hs512, KeyKind::Hmac(secret)) => hmac_ok::<hmac::Hmac<Sha512>>(secret, input, signature),
        _ => false,
    }
}

fn hmac_ok<M: Mac + KeyInit>(secret: &[u8], input: &[u8], signature: &[u8]) -> bool {
    match <M as KeyInit>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(input);
            // Constant-time comparison.
            mac.verify_slice(signature).is_ok()
        }
        Err(_) => false,
    }
}
