//! Our RSA verification (tollgate_core::jwt::rsa, reached through
//! `verify::verify_in_rust` as tokens reach it) against RustCrypto's `rsa`
//! crate: the same key, message and signature must get the same answer.
//!
//! Keys are a fixed pool of committed test keys (making RSA keys takes
//! seconds): tests/fixtures/keys and fuzz/keys (`make_keys.py`). Their
//! sizes reach the edges of our code: 2048 bits (our minimum), 2049 (the
//! modulus has a byte more than the PSS encoded message), 2055, 3072, and
//! an exponent of 3.
//!
//! An input is `key, alg, mode, message length, message, rest`; `mode % 5`
//! says what the signature is (and `mode / 5` seeds the PSS salt):
//! - 0: a valid signature from the `rsa` crate, then bytes of `rest`
//!   XORed into it at positions `rest` picks;
//! - 1: `rest` itself, cut or zero-padded to the modulus length;
//! - 2: a valid signature whose *encoded message* (s^e mod n) is changed
//!   at positions `rest` picks and signed again with the private key, so
//!   the signature passes the RSA operation and only the padding checks
//!   (both sides') decide;
//! - 3: a valid signature plus n (the same value mod n, not below n);
//! - 4: a valid signature with a byte more or less.
//!
//! The reference is `rsa::pkcs1v15::VerifyingKey` and
//! `rsa::pss::VerifyingKey`. (Not `RsaPublicKey::verify` with `Pss`: that
//! path of rsa 0.9.10 skips RSAVP1's `s < n` check, RFC 8017 section 5.2.2,
//! and accepts s + n where it fits in the modulus length.)

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer, Verifier};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use std::rc::Rc;
use tollgate_core::jwt::jwk::{Alg, KeyKind};
use tollgate_core::jwt::rsa::RsaKey;
use tollgate_core::jwt::verify::verify_in_rust;

/// The pool's private keys (PKCS#8 PEM) and their sizes in bits.
pub const POOL: [(&str, usize); 6] = [
    (include_str!("../../tests/fixtures/keys/rsa-1.pem"), 2048),
    (include_str!("../../tests/fixtures/keys/rsa-2.pem"), 2048),
    (include_str!("../keys/rsa-2049-e65537.pem"), 2049),
    (include_str!("../keys/rsa-2055-e65537.pem"), 2055),
    (include_str!("../../tests/fixtures/keys/rsa-3072.pem"), 3072),
    (include_str!("../keys/rsa-2048-e3.pem"), 2048),
];

pub struct PoolKey {
    pub private: RsaPrivateKey,
    pub public: RsaPublicKey,
    pub ours: KeyKind,
}

fn make_pool() -> Vec<PoolKey> {
    POOL.iter()
        .map(|&(pem, bits)| {
            let private = RsaPrivateKey::from_pkcs8_pem(pem).unwrap_or_else(|err| panic!("pool key: {err}"));
            let public = private.to_public_key();
            assert_eq!(public.n().bits(), bits);
            let ours = RsaKey::new(&public.n().to_bytes_be(), &public.e().to_bytes_be())
                .unwrap_or_else(|err| panic!("our RsaKey refuses the {bits}-bit pool key: {err}"));
            PoolKey {
                private,
                public,
                ours: KeyKind::Rsa(Rc::new(ours)),
            }
        })
        .collect()
}

thread_local! {
    static KEYS: &'static [PoolKey] = Box::leak(make_pool().into_boxed_slice());
}

pub fn pool() -> &'static [PoolKey] {
    KEYS.with(|k| *k)
}

pub const ALGS: [Alg; 6] = [Alg::Rs256, Alg::Rs384, Alg::Rs512, Alg::Ps256, Alg::Ps384, Alg::Ps512];

/// Most signatures kept (a private-key operation costs milliseconds, and
/// libFuzzer often changes only the mutation bytes of an input).
const SIGNED_CACHE: usize = 4096;

thread_local! {
    static SIGNED: std::cell::RefCell<std::collections::HashMap<(usize, Alg, Vec<u8>, u64), Vec<u8>>> =
        Default::default();
}

/// `sign`, remembered.
fn signed(k: usize, key: &PoolKey, alg: Alg, message: &[u8], seed: u64) -> Vec<u8> {
    let id = (k, alg, message.to_vec(), seed);
    if let Some(sig) = SIGNED.with(|c| c.borrow().get(&id).cloned()) {
        return sig;
    }
    let sig = sign(key, alg, message, seed);
    SIGNED.with(|c| {
        let mut cache = c.borrow_mut();
        if cache.len() >= SIGNED_CACHE {
            cache.clear();
        }
        cache.insert(id, sig.clone());
    });
    sig
}

/// A valid signature by the `rsa` crate (PSS salt from `seed`).
pub fn sign(key: &PoolKey, alg: Alg, message: &[u8], seed: u64) -> Vec<u8> {
    use rsa::{pkcs1v15, pss};
    use sha2::{Sha256, Sha384, Sha512};
    let private = key.private.clone();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    match alg {
        Alg::Rs256 => pkcs1v15::SigningKey::<Sha256>::new(private).sign(message).to_vec(),
        Alg::Rs384 => pkcs1v15::SigningKey::<Sha384>::new(private).sign(message).to_vec(),
        Alg::Rs512 => pkcs1v15::SigningKey::<Sha512>::new(private).sign(message).to_vec(),
        Alg::Ps256 => pss::SigningKey::<Sha256>::new(private)
            .sign_with_rng(&mut rng, message)
            .to_vec(),
        Alg::Ps384 => pss::SigningKey::<Sha384>::new(private)
            .sign_with_rng(&mut rng, message)
            .to_vec(),
        Alg::Ps512 => pss::SigningKey::<Sha512>::new(private)
            .sign_with_rng(&mut rng, message)
            .to_vec(),
        other => panic!("{other:?} is not RSA"),
    }
}

/// The reference answer: the `rsa` crate's, and for PSS also RFC 8017
/// section 8.1.2 step 2c, which rsa 0.9.10 skips: `s^e mod n` must fit in
/// emLen = ceil((modBits - 1) / 8) bytes. With modBits = 8k + 1 that is one
/// byte less than the modulus, and the crate accepts a non-zero byte there
/// (found by this target; OpenSSL refuses such a signature too).
pub fn reference(key: &PoolKey, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
    let pss = matches!(alg, Alg::Ps256 | Alg::Ps384 | Alg::Ps512);
    rsa_crate(key, alg, message, signature) && (!pss || fits_em_len(key, signature))
}

fn fits_em_len(key: &PoolKey, signature: &[u8]) -> bool {
    let em_bits = key.public.n().bits() - 1;
    let em_len = em_bits.div_ceil(8);
    let s = BigUint::from_bytes_be(signature);
    rsa::hazmat::rsa_encrypt(&key.public, &s).is_ok_and(|m| m.bits() <= 8 * em_len)
}

/// The `rsa` crate's own answer.
fn rsa_crate(key: &PoolKey, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
    use rsa::{pkcs1v15, pss};
    use sha2::{Sha256, Sha384, Sha512};
    let public = key.public.clone();
    let pkcs1 = pkcs1v15::Signature::try_from(signature);
    let pss = pss::Signature::try_from(signature);
    match alg {
        Alg::Rs256 => pkcs1.is_ok_and(|s| {
            pkcs1v15::VerifyingKey::<Sha256>::new(public)
                .verify(message, &s)
                .is_ok()
        }),
        Alg::Rs384 => pkcs1.is_ok_and(|s| {
            pkcs1v15::VerifyingKey::<Sha384>::new(public)
                .verify(message, &s)
                .is_ok()
        }),
        Alg::Rs512 => pkcs1.is_ok_and(|s| {
            pkcs1v15::VerifyingKey::<Sha512>::new(public)
                .verify(message, &s)
                .is_ok()
        }),
        Alg::Ps256 => pss.is_ok_and(|s| pss::VerifyingKey::<Sha256>::new(public).verify(message, &s).is_ok()),
        Alg::Ps384 => pss.is_ok_and(|s| pss::VerifyingKey::<Sha384>::new(public).verify(message, &s).is_ok()),
        Alg::Ps512 => pss.is_ok_and(|s| pss::VerifyingKey::<Sha512>::new(public).verify(message, &s).is_ok()),
        other => panic!("{other:?} is not RSA"),
    }
}

/// Our answer, as a token's signature is checked.
pub fn ours(key: &PoolKey, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
    verify_in_rust(alg, &key.ours, message, signature)
}

/// Positions and XOR masks from `rest`: pairs of (2-byte position, mask).
fn xor_at(target: &mut [u8], rest: &[u8]) {
    if target.is_empty() {
        return;
    }
    for chunk in rest.chunks_exact(3).take(16) {
        let at = usize::from(u16::from_be_bytes([chunk[0], chunk[1]])) % target.len();
        target[at] ^= chunk[2].max(1);
    }
}

fn be_padded(value: &BigUint, len: usize) -> Option<Vec<u8>> {
    let bytes = value.to_bytes_be();
    let pad = len.checked_sub(bytes.len())?;
    let mut out = vec![0u8; pad];
    out.extend_from_slice(&bytes);
    Some(out)
}

/// The signature an input describes (`None`: the input cannot make one).
pub fn signature_for(k: usize, alg: Alg, mode: u8, message: &[u8], rest: &[u8]) -> Option<Vec<u8>> {
    let key = pool().get(k)?;
    let len = key.public.size();
    // The PSS salt: from the mode byte's high bits, so changing `rest` reuses the signature.
    let seed = u64::from(mode / 5);
    match mode % 5 {
        0 => {
            let mut sig = signed(k, key, alg, message, seed);
            xor_at(&mut sig, rest);
            Some(sig)
        }
        1 => {
            let mut sig = rest.get(..rest.len().min(len))?.to_vec();
            if rest.first().is_some_and(|b| b & 1 == 1) {
                sig.resize(len, 0);
            }
            Some(sig)
        }
        2 => {
            let sig = signed(k, key, alg, message, seed);
            let s = BigUint::from_bytes_be(&sig);
            let em = rsa::hazmat::rsa_encrypt(&key.public, &s).ok()?;
            let mut em = be_padded(&em, len)?;
            xor_at(&mut em, rest);
            let em = BigUint::from_bytes_be(&em);
            if &em >= key.public.n() {
                return None;
            }
            // No blinding (no RNG): test keys, and half the cost.
            let s = rsa::hazmat::rsa_decrypt_and_check(&key.private, None::<&mut ChaCha20Rng>, &em).ok()?;
            be_padded(&s, len)
        }
        3 => {
            let sig = signed(k, key, alg, message, seed);
            let s = BigUint::from_bytes_be(&sig) + key.public.n();
            be_padded(&s, len)
        }
        _ => {
            let mut sig = signed(k, key, alg, message, seed);
            if rest.first().is_some_and(|b| b & 1 == 1) {
                sig.insert(0, 0);
            } else {
                sig.pop();
            }
            Some(sig)
        }
    }
}

/// One differential check; panics (a libFuzzer crash) on disagreement.
/// Returns whether the signature was valid, for counting.
pub fn check(data: &[u8]) -> Option<bool> {
    let (&[k, a, mode, message_len], rest) = data.split_first_chunk::<4>()?;
    let k = usize::from(k) % POOL.len();
    let key = pool().get(k)?;
    let alg = ALGS[usize::from(a) % ALGS.len()];
    let (message, rest) = rest.split_at(usize::from(message_len).min(rest.len()));
    let signature = signature_for(k, alg, mode, message, rest)?;
    let want = reference(key, alg, message, &signature);
    let got = ours(key, alg, message, &signature);
    assert_eq!(
        got,
        want,
        "{alg:?} with the {}-bit key (e = {}), mode {}: ours {got}, rsa crate {want}\nmessage {message:02x?}\nsignature {signature:02x?}",
        key.public.n().bits(),
        key.public.e(),
        mode % 5,
    );
    Some(want)
}
