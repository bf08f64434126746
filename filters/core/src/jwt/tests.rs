use super::jwk::{Alg, KeySet};
use super::verify::{verify, verify_in_rust, NoHost};
use super::{der, token};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

pub const JWKS: &str = include_str!("../../../../tests/fixtures/keys/jwks.json");
const SIGNED: &str = include_str!("../../../../tests/fixtures/keys/signed.json");

fn fixtures() -> Vec<(String, String, String)> {
    let all: serde_json::Value = serde_json::from_str(SIGNED).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["alg"].as_str().unwrap().to_string(),
                t["kid"].as_str().unwrap().to_string(),
                t["token"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn keys() -> KeySet {
    KeySet::parse(JWKS.as_bytes()).unwrap().0
}

#[test]
fn every_algorithm_verifies_in_rust() {
    let keys = keys();
    let fixtures = fixtures();
    assert_eq!(fixtures.len(), 9);
    for (alg, kid, jwt) in fixtures {
        let parsed = token::parse(&jwt).unwrap();
        assert_eq!(parsed.alg.name(), alg);
        let key = keys.select(Some(&kid), parsed.alg).unwrap();
        assert!(
            verify(parsed.alg, key, parsed.signing_input, &parsed.signature, &NoHost),
            "{alg}"
        );
        // One flipped bit in the signature, or in the signed text, fails.
        let mut bad = parsed.signature.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x01;
        assert!(
            !verify_in_rust(parsed.alg, &key.kind, parsed.signing_input, &bad),
            "{alg} bad signature"
        );
        let mut text = parsed.signing_input.to_vec();
        let last = text.len() - 1;
        text[last] ^= 0x01;
        assert!(
            !verify_in_rust(parsed.alg, &key.kind, &text, &parsed.signature),
            "{alg} bad text"
        );
        assert!(
            !verify_in_rust(parsed.alg, &key.kind, parsed.signing_input, &parsed.signature[1..]),
            "{alg} short"
        );
    }
}

#[test]
fn keys_only_verify_the_algorithms_they_fit() {
    let keys = keys();
    let rsa = keys.select(Some("rsa-1"), Alg::Rs256).unwrap();
    for alg in [Alg::Es256, Alg::EdDsa, Alg::Hs256] {
        assert!(!rsa.accepts(alg), "{}", alg.name());
        assert!(keys.select(Some("rsa-1"), alg).is_none());
    }
    // A PS256 signature does not pass as RS256 with the same key.
    let (_, _, ps256) = fixtures().into_iter().find(|(a, ..)| a == "PS256").unwrap();
    let parsed = token::parse(&ps256).unwrap();
    assert!(!verify_in_rust(
        Alg::Rs256,
        &rsa.kind,
        parsed.signing_input,
        &parsed.signature
    ));
    // Without a kid, a key is chosen only when exactly one fits.
    assert!(keys.select(None, Alg::Rs256).is_none(), "three RSA keys: ambiguous");
    assert_eq!(keys.select(None, Alg::Es256).unwrap().kid.as_deref(), Some("ec-256"));
}

#[test]
fn jwks_parsing_skips_what_it_cannot_use() {
    let jwks = serde_json::json!({"keys": [
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
        {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
        {"kty": "EC", "kid": "k1", "crv": "secp256k1", "x": "AA", "y": "AA"},
        {"kty": "RSA", "kid": "small", "n": "AQAB", "e": "AQAB"},
    ]});
    let err = KeySet::parse(jwks.to_string().as_bytes()).unwrap_err();
    assert!(err.contains("no usable signing key"), "{err}");
    assert!(err.contains("keys[2]: unsupported key type EC secp256k1"), "{err}");
    assert!(err.contains("keys[3]: RSA modulus of 17 bits"), "{err}");
    assert!(KeySet::parse(b"{}").unwrap_err().contains("not a JWKS"));
    assert!(KeySet::parse(b"not json").is_err());
    let mut mixed: serde_json::Value = serde_json::from_str(JWKS).unwrap();
    mixed["keys"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"kty": "XYZ"}));
    let (set, skipped) = KeySet::parse(mixed.to_string().as_bytes()).unwrap();
    assert_eq!(set.keys.len(), 6);
    assert_eq!(skipped.len(), 1);
}

#[test]
fn tokens_are_checked_before_any_signature_work() {
    use token::TokenError::*;
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let head = |h: &str| format!("{}.{}.c2ln", b64(h), b64(r#"{"sub":"a"}"#));
    let cases = [
        (head(r#"{"alg":"none"}"#), Err(AlgNotAllowed)),
        (head(r#"{"alg":"None"}"#), Err(AlgNotAllowed)),
        (head(r#"{"alg":"RS1"}"#), Err(AlgNotAllowed)),
        (head(r#"{"alg":"RS256","crit":["b64"]}"#), Err(Malformed)),
        (head(r#"{"kid":"x"}"#), Err(Malformed)),
        (head("not json"), Err(Malformed)),
        ("a.b".to_string(), Err(Malformed)),
        ("a.b.c.d".to_string(), Err(Malformed)),
        (format!("{}.{}.", b64(r#"{"alg":"RS256"}"#), b64("{}")), Err(Malformed)),
        (
            format!("{}.{}.c2ln", b64(r#"{"alg":"RS256"}"#), b64("[1]")),
            Err(Malformed),
        ),
        (head(r#"{"alg":"RS256"}"#), Ok(())),
    ];
    for (jwt, want) in cases {
        assert_eq!(token::parse(&jwt).map(|_| ()), want, "{jwt}");
    }
}

#[test]
fn der_and_protobuf_encodings() {
    // r with its high bit set gets a leading zero; s is stripped of zeros.
    let mut raw = vec![0x80u8; 32];
    raw.extend(std::iter::repeat_n(0u8, 31));
    raw.push(0x05);
    let der = der::ecdsa_der(&raw).unwrap();
    assert_eq!(&der[..4], &[0x30, 0x26, 0x02, 0x21]);
    assert_eq!(&der[der.len() - 3..], &[0x02, 0x01, 0x05]);
    assert!(der::ecdsa_der(&[1, 2, 3]).is_none());
    let args = der::verify_arguments("sha256", &[1, 2], &[3], b"hi");
    assert_eq!(
        args,
        vec![0x0a, 6, b's', b'h', b'a', b'2', b'5', b'6', 0x12, 2, 1, 2, 0x1a, 1, 3, 0x22, 2, b'h', b'i']
    );
    assert!(der::verify_result(&[0x08, 0x01, 0x12, 0x00]));
    assert!(der::verify_result(&[0x08, 0x01]));
    assert!(!der::verify_result(&[0x08, 0x00, 0x12, 0x03, b'b', b'a', b'd']));
    assert!(!der::verify_result(&[]));
    assert!(!der::verify_result(&[0x12, 0x03, b'b', b'a', b'd']));
    // A DER RSA key holds the modulus with a zero byte before its high bit.
    let spki = der::rsa_spki(&[0xc0; 256], 65537);
    assert_eq!(&spki[..4], &[0x30, 0x82, 0x01, 0x22]);
}

#[cfg(not(target_arch = "wasm32"))]
mod minted {
    use super::*;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

    fn pem(kid: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../../tests/fixtures/keys/{kid}.pem",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    /// A token minted by jsonwebtoken, an independent implementation.
    pub fn mint(alg: Algorithm, kid: &str, claims: &serde_json::Value) -> String {
        let key = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => EncodingKey::from_rsa_pem(&pem(kid)).unwrap(),
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem(kid)).unwrap(),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem(kid)).unwrap(),
            _ => EncodingKey::from_secret(kid.as_bytes()),
        };
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_string());
        encode(&header, claims, &key).unwrap()
    }

    #[test]
    fn tokens_minted_elsewhere_verify() {
        let keys = keys();
        let claims = serde_json::json!({"sub": "user@254carbon.com", "roles": ["analyst"]});
        for (alg, kid) in [
            (Algorithm::RS256, "rsa-1"),
            (Algorithm::RS384, "rsa-2"),
            (Algorithm::RS512, "rsa-3072"),
            (Algorithm::PS256, "rsa-1"),
            (Algorithm::PS384, "rsa-2"),
            (Algorithm::PS512, "rsa-3072"),
            (Algorithm::ES256, "ec-256"),
            (Algorithm::ES384, "ec-384"),
            (Algorithm::EdDSA, "ed-1"),
        ] {
            let jwt = mint(alg, kid, &claims);
            let parsed = token::parse(&jwt).unwrap();
            let key = keys.select(Some(kid), parsed.alg).unwrap();
            assert!(
                verify(parsed.alg, key, parsed.signing_input, &parsed.signature, &NoHost),
                "{alg:?}"
            );
            assert_eq!(parsed.claims["sub"], "user@254carbon.com");
        }
    }
}

/// A Rust stand-in for the host, to prove the known-answer check can fail.
struct RustHost {
    broken: bool,
}

impl super::verify::HostVerifier for RustHost {
    fn verify(&self, hash: &str, spki: &[u8], signature: &[u8], text: &[u8]) -> Option<bool> {
        let _ = (hash, spki);
        if self.broken {
            return Some(true);
        }
        // Re-verify with the fixture keys in Rust (DER ECDSA back to raw).
        let keys = KeySet::parse(JWKS.as_bytes()).unwrap().0;
        let ok = keys.keys.iter().any(|k| {
            let raw = if signature.first() == Some(&0x30) && signature.len() < 80 {
                der_to_raw(signature)
            } else {
                signature.to_vec()
            };
            [Alg::Rs256, Alg::Es256]
                .iter()
                .any(|a| k.accepts(*a) && verify_in_rust(*a, &k.kind, text, &raw))
        });
        Some(ok)
    }
}

fn der_to_raw(der: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 2;
    for _ in 0..2 {
        let len = der[i + 1] as usize;
        let int = &der[i + 2..i + 2 + len];
        let int = if int.len() > 32 { &int[int.len() - 32..] } else { int };
        out.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        out.extend_from_slice(int);
        i += 2 + len;
    }
    out
}

#[test]
fn known_answers_tell_a_working_host_from_a_broken_one() {
    assert!(super::kat::host_passes(&RustHost { broken: false }));
    assert!(!super::kat::host_passes(&RustHost { broken: true }));
    assert!(!super::kat::host_passes(&NoHost));
}

#[test]
fn rsa_keys_are_bounded() {
    use super::rsa::RsaKey;
    let big = {
        let mut n = vec![0xffu8; 8192 / 8];
        n[0] = 0xc1;
        n
    };
    assert!(RsaKey::new(&big, &[1, 0, 1]).unwrap_err().contains("8192 bits"));
    assert!(RsaKey::new(&[0xc1; 128], &[1, 0, 1]).unwrap_err().contains("1024 bits"));
    assert!(RsaKey::new(&[0xc1; 256], &[0]).is_err(), "exponent 0");
    assert!(RsaKey::new(&[0xc1; 256], &[2]).is_err(), "even exponent");
    assert!(RsaKey::new(&[0xc2; 256], &[1, 0, 1]).is_err(), "even modulus");
    assert!(RsaKey::new(&[0xc1; 256], &[1, 0, 1]).is_ok());
}

/// A host that accepts every signature: what matters is what reaches it.
struct AcceptingHost;

impl super::verify::HostVerifier for AcceptingHost {
    fn verify(&self, _: &str, _: &[u8], _: &[u8], _: &[u8]) -> Option<bool> {
        Some(true)
    }
}

#[test]
fn ecdsa_signatures_have_one_length_only() {
    let keys = keys();
    for (alg, kid, jwt) in fixtures().into_iter().filter(|(a, _, _)| a.starts_with("ES")) {
        let parsed = token::parse(&jwt).unwrap();
        let key = keys.select(Some(&kid), parsed.alg).unwrap();
        let sig = &parsed.signature;
        let half = sig.len() / 2;
        // `0 || r || 0 || s`: the same DER for BoringSSL, another token.
        let padded: Vec<u8> = [&[0][..], &sig[..half], &[0], &sig[half..]].concat();
        let cases: [(&str, Vec<u8>, bool); 4] = [
            ("exact", sig.clone(), true),
            ("padded", padded, false),
            ("short", sig[1..sig.len() - 1].to_vec(), false),
            ("empty", Vec::new(), false),
        ];
        let hosts: [(&str, &dyn super::verify::HostVerifier); 3] = [
            ("accepting host", &AcceptingHost),
            ("host", &RustHost { broken: false }),
            ("rust", &NoHost),
        ];
        for (name, signature, want) in cases {
            for (host_name, host) in hosts {
                // The stand-in host re-checks P-256 only.
                if alg == "ES384" && host_name == "host" {
                    continue;
                }
                let valid = verify(parsed.alg, key, parsed.signing_input, &signature, host);
                assert_eq!(valid, want, "{alg} {name} {host_name}");
            }
        }
    }
}

#[test]
fn a_modulus_of_no_bytes_or_zeros_is_an_error_not_a_panic() {
    // `n.len() * 8 - 8` underflowed for an empty modulus (a debug panic).
    for n in [&[][..], &[0], &[0, 0, 0]] {
        let err = super::rsa::RsaKey::new(n, &[1, 0, 1]).unwrap_err();
        assert_eq!(err, "RSA modulus of 0 bits; 2048 to 4096 accepted");
    }
    for jwk in [
        serde_json::json!({"kty": "RSA", "n": "", "e": "AQAB"}),
        serde_json::json!({"kty": "RSA", "n": "AA", "e": ""}),
        serde_json::json!({"kty": "EC", "crv": "P-256", "x": "", "y": ""}),
        serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": ""}),
    ] {
        let jwks = serde_json::json!({ "keys": [jwk] });
        assert!(KeySet::parse(jwks.to_string().as_bytes()).is_err(), "{jwks}");
    }
}
