//! Differential tests against independent implementations (native only):
//! our DER encodings read back by RustCrypto's decoders, and our signature
//! checks against jsonwebtoken's on generated tokens and their mutations.
//! Inputs come from a seeded generator, so a failure reproduces.
#![cfg(not(target_arch = "wasm32"))]

use super::der::{ec_spki, ecdsa_der, rsa_spki};
use super::jwk::{Alg, KeyKind, KeySet};
use super::rsa::RsaKey;
use super::tests::JWKS;
use super::verify::verify_in_rust;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use p256_13::elliptic_curve::sec1::ToEncodedPoint;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;

/// SplitMix64: a fixed, dependency-free sequence of test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn rsa_keys_we_encode_are_the_keys_rustcrypto_reads() {
    let mut rng = Rng(1);
    let mut checked = 0;
    for i in 0..300 {
        // 2048 to 4096 bits, odd, top bit anywhere in the first byte.
        let len = 256 + rng.below(257);
        let mut n = rng.bytes(len);
        n[0] = (n[0] | 1).max(1) >> rng.below(8);
        n[0] = n[0].max(1);
        n[len - 1] |= 1;
        let e: u32 = match i % 4 {
            0 => 65537,
            1 => 3,
            2 => u32::MAX,
            _ => (rng.next() as u32 | 1).max(3),
        };
        // Leading zeros (as some JWKS `n` values have) are not part of the key.
        let mut given = vec![0u8; rng.below(3)];
        given.extend_from_slice(&n);
        let Ok(key) = RsaKey::new(&given, &e.to_be_bytes()) else {
            continue;
        };
        let der = rsa_spki(&key.modulus_be(), key.exponent());
        let theirs = rsa::RsaPublicKey::from_public_key_der(&der)
            .unwrap_or_else(|err| panic!("rsa crate refuses our SPKI of a {len}-byte modulus, e = {e}: {err}"));
        let stripped: Vec<u8> = n.iter().copied().skip_while(|b| *b == 0).collect();
        assert_eq!(theirs.n().to_bytes_be(), stripped, "modulus of case {i}");
        assert_eq!(
            theirs.e().to_bytes_be(),
            e.to_be_bytes()
                .iter()
                .copied()
                .skip_while(|b| *b == 0)
                .collect::<Vec<_>>()
        );
        // The PKCS#1 RSAPublicKey inside reads the same on its own.
        let inner = rsa::pkcs8::SubjectPublicKeyInfoRef::try_from(der.as_slice()).unwrap();
        let pkcs1 = rsa::pkcs1::RsaPublicKey::try_from(inner.subject_public_key.raw_bytes()).unwrap();
        assert_eq!(pkcs1.modulus.as_bytes(), stripped.as_slice());
        checked += 1;
    }
    assert!(checked >= 290, "only {checked} keys checked");
}

#[test]
fn ec_keys_we_encode_are_the_keys_rustcrypto_reads() {
    let mut rng = Rng(2);
    for _ in 0..40 {
        let Ok(secret) = p256_13::SecretKey::from_slice(&rng.bytes(32)) else {
            continue;
        };
        let sec1 = secret.public_key().to_encoded_point(false);
        let theirs = p256_13::PublicKey::from_public_key_der(&ec_spki(false, sec1.as_bytes())).unwrap();
        assert_eq!(theirs, secret.public_key());
        // Not P-384's: the curve is in the encoding.
        assert!(p384_13::PublicKey::from_public_key_der(&ec_spki(false, sec1.as_bytes())).is_err());
    }
    for _ in 0..40 {
        let Ok(secret) = p384_13::SecretKey::from_slice(&rng.bytes(48)) else {
            continue;
        };
        let sec1 = secret.public_key().to_encoded_point(false);
        let theirs = p384_13::PublicKey::from_public_key_der(&ec_spki(true, sec1.as_bytes())).unwrap();
        assert_eq!(theirs, secret.public_key());
    }
}

#[test]
fn ecdsa_signatures_we_encode_read_back_as_the_same_r_and_s() {
    let mut rng = Rng(3);
    for i in 0..500 {
        let mut raw = rng.bytes(64);
        // Leading zeros and high bits in r and s, where DER INTEGERs differ most.
        for half in [0, 32] {
            match (i + half) % 5 {
                0 => raw[half] = 0,
                1 => raw[half..half + 3].fill(0),
                2 => raw[half] |= 0x80,
                _ => {}
            }
        }
        let der = ecdsa_der(&raw).unwrap();
        let from_der = p256_13::ecdsa::Signature::from_der(&der);
        let from_raw = p256_13::ecdsa::Signature::from_slice(&raw);
        assert_eq!(from_der.as_ref().ok(), from_raw.as_ref().ok(), "case {i}: {raw:02x?}");
    }
}

/// An algorithm, the key names it is minted and checked with.
struct Case {
    alg: Alg,
    theirs: Algorithm,
    kid: &'static str,
}

const HMAC_SECRET: &[u8] = b"a shared secret of thirty-two by";

fn cases() -> Vec<Case> {
    let case = |alg, theirs, kid| Case { alg, theirs, kid };
    vec![
        case(Alg::Rs256, Algorithm::RS256, "rsa-1"),
        case(Alg::Rs384, Algorithm::RS384, "rsa-2"),
        case(Alg::Rs512, Algorithm::RS512, "rsa-3072"),
        case(Alg::Ps256, Algorithm::PS256, "rsa-1"),
        case(Alg::Ps384, Algorithm::PS384, "rsa-3072"),
        case(Alg::Ps512, Algorithm::PS512, "rsa-2"),
        case(Alg::Es256, Algorithm::ES256, "ec-256"),
        case(Alg::Es384, Algorithm::ES384, "ec-384"),
        case(Alg::EdDsa, Algorithm::EdDSA, "ed-1"),
        case(Alg::Hs256, Algorithm::HS256, "hmac"),
        case(Alg::Hs384, Algorithm::HS384, "hmac"),
        case(Alg::Hs512, Algorithm::HS512, "hmac"),
    ]
}

fn pem(kid: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../tests/fixtures/keys/{kid}.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn encoding_key(case: &Case) -> EncodingKey {
    match case.alg {
        Alg::Hs256 | Alg::Hs384 | Alg::Hs512 => EncodingKey::from_secret(HMAC_SECRET),
        Alg::Es256 | Alg::Es384 => EncodingKey::from_ec_pem(&pem(case.kid)).unwrap(),
        Alg::EdDsa => EncodingKey::from_ed_pem(&pem(case.kid)).unwrap(),
        _ => EncodingKey::from_rsa_pem(&pem(case.kid)).unwrap(),
    }
}

/// Both sides' keys: ours read by our JWKS parser, theirs by jsonwebtoken's.
fn keys(case: &Case, ours: &KeySet, theirs: &JwkSet) -> (KeyKind, DecodingKey) {
    if case.kid == "hmac" {
        return (
            KeyKind::Hmac(HMAC_SECRET.to_vec()),
            DecodingKey::from_secret(HMAC_SECRET),
        );
    }
    let key = ours.keys.iter().find(|k| k.kid.as_deref() == Some(case.kid)).unwrap();
    let jwk = theirs.find(case.kid).unwrap();
    (key.kind.clone(), DecodingKey::from_jwk(jwk).unwrap())
}

/// The token changed as mutation `m` says, the others' parts used by some.
fn mutate(token: &str, m: usize, other: &str, alg: Alg, rng: &mut Rng) -> String {
    let (signing, signature) = token.rsplit_once('.').unwrap();
    let (header, payload) = signing.split_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let flip_char = |part: &str, rng: &mut Rng| {
        let mut bytes = part.as_bytes().to_vec();
        let at = rng.below(bytes.len());
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    };
    let with_sig = |sig: &[u8]| format!("{signing}.{}", URL_SAFE_NO_PAD.encode(sig));
    match m {
        0 => token.to_string(),
        1 => {
            let at = rng.below(sig.len());
            sig[at] ^= 1 << rng.below(8);
            with_sig(&sig)
        }
        2 => with_sig(&sig[..sig.len() - 1]),
        3 => {
            sig.insert(0, 0);
            with_sig(&sig)
        }
        4 => format!("{}.{payload}.{signature}", flip_char(header, rng)),
        5 => format!("{header}.{}.{signature}", flip_char(payload, rng)),
        6 => {
            let other_payload = other.split('.').nth(1).unwrap();
            format!("{header}.{other_payload}.{signature}")
        }
        7 => with_sig(&vec![0; sig.len()]),
        8 => match alg {
            // The same ECDSA signature with s negated (n - s): both
            // verify it or both refuse it.
            Alg::Es256 => {
                let s = p256_13::ecdsa::Signature::from_slice(&sig).unwrap();
                let (r, s) = s.split_scalars();
                let high = p256_13::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
                with_sig(&high.to_bytes())
            }
            Alg::Es384 => {
                let s = p384_13::ecdsa::Signature::from_slice(&sig).unwrap();
                let (r, s) = s.split_scalars();
                let high = p384_13::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
                with_sig(&high.to_bytes())
            }
            // A base64url signature with its last character's unused bits
            // set: not canonical base64.
            _ => {
                let mut text = signature.to_string();
                let last = text.pop().unwrap();
                let next = URL_SAFE_NO_PAD
                    .decode(format!("{text}{}", (last as u8 + 1) as char))
                    .map(|_| (last as u8 + 1) as char)
                    .unwrap_or(last);
                format!("{signing}.{text}{next}")
            }
        },
        _ => other.rsplit_once('.').map(|(_, s)| format!("{signing}.{s}")).unwrap(),
    }
}

const MUTATIONS: usize = 10;

#[test]
fn our_rsa_checks_agree_with_jsonwebtoken() {
    agree_with_jsonwebtoken(
        &[Alg::Rs256, Alg::Rs384, Alg::Rs512, Alg::Ps256, Alg::Ps384, Alg::Ps512],
        3,
        4,
    );
}

#[test]
fn our_ecdsa_checks_agree_with_jsonwebtoken() {
    agree_with_jsonwebtoken(&[Alg::Es256, Alg::Es384], 6, 5);
}

#[test]
fn our_eddsa_and_hmac_checks_agree_with_jsonwebtoken() {
    agree_with_jsonwebtoken(&[Alg::EdDsa, Alg::Hs256, Alg::Hs384, Alg::Hs512], 6, 6);
}

/// `tokens_per_alg` tokens of each of `algs` and their mutations: ours and jsonwebtoken's
/// signature check give the same answer.
fn agree_with_jsonwebtoken(algs: &[Alg], tokens_per_alg: usize, seed: u64) {
    let (ours, _) = KeySet::parse(JWKS.as_bytes()).unwrap();
    let theirs: JwkSet = serde_json::from_str(JWKS).unwrap();
    let mut rng = Rng(seed);
    let (mut compared, mut valid) = (0, 0);
    let cases: Vec<Case> = cases().into_iter().filter(|c| algs.contains(&c.alg)).collect();
    for case in &cases {
        let (our_key, their_key) = keys(case, &ours, &theirs);
        let encoding = encoding_key(case);
        let tokens: Vec<String> = (0..tokens_per_alg)
            .map(|i| {
                let mut header = Header::new(case.theirs);
                header.kid = Some(case.kid.to_string());
                let claims =
                    serde_json::json!({"iss": "https://idp.test", "sub": format!("user-{i}"), "n": rng.next()});
                jsonwebtoken::encode(&header, &claims, &encoding).unwrap()
            })
            .collect();
        for (i, token) in tokens.iter().enumerate() {
            let other = &tokens[(i + 1) % tokens.len()];
            for m in 0..MUTATIONS {
                let mutated = mutate(token, m, other, case.alg, &mut rng);
                let (message, signature) = mutated.rsplit_once('.').unwrap();
                let their_answer = jsonwebtoken::crypto::verify(signature, message.as_bytes(), &their_key, case.theirs)
                    .unwrap_or(false);
                let our_answer = URL_SAFE_NO_PAD
                    .decode(signature)
                    .is_ok_and(|sig| verify_in_rust(case.alg, &our_key, message.as_bytes(), &sig));
                assert_eq!(
                    our_answer, their_answer,
                    "{:?} token {i} mutation {m}: ours {our_answer}, jsonwebtoken {their_answer}\n{mutated}",
                    case.alg
                );
                // The whole token as the filter reads it, where it parses.
                if let Ok(parsed) = super::token::parse(&mutated) {
                    if parsed.alg == case.alg {
                        assert_eq!(
                            verify_in_rust(parsed.alg, &our_key, parsed.signing_input, &parsed.signature),
                            their_answer
                        );
                    }
                }
                if m == 0 {
                    assert!(our_answer, "{:?}: the unchanged token must verify", case.alg);
                }
                compared += 1;
                valid += usize::from(their_answer);
            }
        }
    }
    assert_eq!(compared, algs.len() * tokens_per_alg * MUTATIONS);
    // The unchanged tokens verify, and the mutations that keep a valid
    // signature (s negated, where accepted); not the others.
    assert!(valid >= algs.len() * tokens_per_alg);
    assert!(
        valid <= algs.len() * tokens_per_alg * 2,
        "{valid} of {compared} mutated tokens verify"
    );
}

/// Found by the `rsa_differential` fuzz target (2026-12-02): a PS512
/// signature for a 2049-bit key whose `s^e mod n` has a non-zero byte above
/// the 256-byte encoded message. RFC 8017 section 8.1.2 step 2c makes it
/// invalid (I2OSP to emLen fails); OpenSSL refuses it too. rsa 0.9.10's
/// `pss::VerifyingKey` skips that byte and accepts it, so the fuzz target's
/// reference now applies the step itself.
#[test]
fn a_pss_encoded_message_wider_than_em_len_is_refused() {
    use rsa::pkcs8::DecodePrivateKey;
    let pem = include_str!("../../../../fuzz/keys/rsa-2049-e65537.pem");
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(pem).unwrap();
    let public = private.to_public_key();
    assert_eq!(public.n().bits(), 2049);
    let ours = RsaKey::new(&public.n().to_bytes_be(), &public.e().to_bytes_be()).unwrap();
    let s = rsa::BigUint::from_bytes_be(FOUND_SIGNATURE);
    let em = s.modpow(public.e(), public.n()).to_bytes_be();
    // 257 bytes: one more than emLen = ceil((2049 - 1) / 8) = 256.
    assert_eq!((em.len(), em[0]), (257, 0x01));
    let key = KeyKind::Rsa(std::rc::Rc::new(ours));
    assert!(!verify_in_rust(Alg::Ps512, &key, FOUND_MESSAGE, FOUND_SIGNATURE));
}

const FOUND_MESSAGE: &[u8] = &[
    0x65, 0x00, 0x00, 0x09, 0x00, 0x47, 0x63, 0xe9, 0x4f, 0x69, 0x41, 0x53, 0x55, 0x7a, 0x49, 0x31, 0x4e, 0x69, 0x4a,
    0x39, 0x2e, 0x65, 0x4a, 0x7a, 0x61, 0x7b, 0xf1, 0xe6, 0x4f, 0x69, 0x4a, 0x34, 0x49, 0xee, 0x30, 0x01,
];

const FOUND_SIGNATURE: &[u8] = &[
    0x00, 0x7e, 0xe0, 0x43, 0x85, 0xa9, 0x84, 0x9c, 0x85, 0xdd, 0xe5, 0x86, 0x70, 0xb7, 0x36, 0x2f, 0x99, 0x34, 0xa7,
    0xe3, 0x5f, 0xd7, 0x74, 0xc4, 0xbb, 0x0f, 0xa5, 0xf3, 0x4a, 0x55, 0xc9, 0x2b, 0x27, 0x36, 0x64, 0x26, 0xc0, 0xb1,
    0xb6, 0xd8, 0xae, 0x93, 0xdf, 0xf8, 0x40, 0xde, 0x9f, 0x55, 0xfc, 0x31, 0x37, 0xc6, 0x82, 0xc9, 0xa4, 0x62, 0xc5,
    0xf9, 0x59, 0x2a, 0x0a, 0xb0, 0x1c, 0x69, 0x12, 0x0d, 0x04, 0x02, 0x91, 0xb7, 0x60, 0x2e, 0x43, 0x59, 0xb2, 0x00,
    0xf2, 0x2f, 0x7c, 0xe9, 0xc4, 0xab, 0x84, 0x72, 0x1e, 0xa3, 0x17, 0xf8, 0x89, 0x11, 0xfa, 0x45, 0x85, 0x21, 0xe3,
    0x60, 0x29, 0x54, 0x26, 0xdf, 0x0a, 0x25, 0x4e, 0x19, 0x7e, 0x7c, 0x47, 0x16, 0x35, 0xd5, 0x5e, 0xef, 0x61, 0x51,
    0xf9, 0xae, 0x6b, 0xd7, 0x08, 0x07, 0x37, 0x03, 0x31, 0xd9, 0x8c, 0x99, 0x45, 0xd4, 0x19, 0xc4, 0x1f, 0x50, 0x75,
    0x3e, 0x9c, 0x32, 0xdf, 0x04, 0x84, 0xce, 0xa9, 0x04, 0x8b, 0x88, 0x2d, 0x82, 0x95, 0x67, 0x34, 0xdb, 0x10, 0xce,
    0x2a, 0x8a, 0xf5, 0xf5, 0x4e, 0x58, 0x51, 0xc6, 0x68, 0xef, 0xca, 0x28, 0x13, 0xb8, 0x07, 0x49, 0xb2, 0xea, 0xb4,
    0x08, 0xff, 0xdb, 0x81, 0xc7, 0xc8, 0xe3, 0x1f, 0xc3, 0xf9, 0x23, 0x33, 0x0f, 0x45, 0x2d, 0x0b, 0xdd, 0xef, 0x70,
    0x99, 0x24, 0x6d, 0x56, 0x7b, 0x0b, 0x79, 0xf5, 0x27, 0xc0, 0x8b, 0x70, 0x32, 0x44, 0x2f, 0xa1, 0xde, 0x98, 0x7f,
    0x76, 0x4d, 0x84, 0x5f, 0xac, 0x13, 0xc2, 0x3d, 0x04, 0x41, 0x0f, 0x80, 0x2a, 0x84, 0xba, 0x00, 0xad, 0xda, 0x26,
    0x7f, 0x2f, 0xa4, 0x1a, 0x8c, 0x64, 0xbc, 0xef, 0xea, 0x7e, 0x7f, 0xbc, 0x52, 0xa3, 0xd3, 0x54, 0xa6, 0xb4, 0x08,
    0x3b, 0xab, 0x0e, 0xa4, 0x34, 0x9e, 0x56, 0x5c, 0xe6, 0xb3,
];
