//! RSA signature verification (RFC 8017: RSASSA-PKCS1-v1_5 and RSASSA-PSS)
//! for public keys only. The modular exponentiation is a Montgomery ladder on
//! 32-bit limbs, because wasm32 multiplies 32x32->64 natively while the 64-bit
//! limbs of the `rsa` crate's bignums need an emulated 128-bit product
//! (RustCrypto/RSA#252). Verification handles only public data, so it need
//! not be constant-time.

use sha2::digest::Digest;

/// Smallest and largest modulus accepted, in bits. Key set-up costs grow
/// with the square of the size, so a JWKS cannot hand us arbitrarily big keys.
pub const MIN_BITS: usize = 2048;
pub const MAX_BITS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaKey {
    /// Little-endian 32-bit limbs of the modulus.
    n: Vec<u32>,
    /// -n^-1 mod 2^32.
    n0inv: u32,
    /// R^2 mod n, R = 2^(32 * limbs).
    r2: Vec<u32>,
    e: u32,
    /// Modulus length in bytes (signature length).
    len: usize,
}

impl RsaKey {
    /// From big-endian modulus and exponent bytes (JWK `n`, `e`).
    pub fn new(n: &[u8], e: &[u8]) -> Result<RsaKey, String> {
        let n = strip_zeros(n);
        // An empty or all-zero modulus has 0 bits (and no first byte to look at).
        let bits = n.first().map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize);
        if !(MIN_BITS..=MAX_BITS).contains(&bits) {
            return Err(format!("RSA modulus of {bits} bits; {MIN_BITS} to {MAX_BITS} accepted"));
        }
        let e = strip_zeros(e);
        let e = match e.len() {
            1..=4 => e.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b)),
            _ => return Err("RSA exponent must be 3 to 2^32-1".into()),
        };
        let limbs = to_limbs(n, n.len().div_ceil(4));
        let low = limbs.first().copied().unwrap_or(0);
        if e < 3 || e.is_multiple_of(2) || low.is_multiple_of(2) {
            return Err("RSA exponent and modulus must be odd, exponent at least 3".into());
        }
        let mut key = RsaKey {
            n0inv: neg_inverse(low),
            r2: Vec::new(),
            e,
            len: n.len(),
            n: limbs,
        };
        key.r2 = key.r_squared(bits);
        Ok(key)
    }

    /// R^2 mod n. Doubling from 1 costs 64 * limbs steps of `limbs` words
    /// (most of the time a policy with many keys takes to check); instead
    /// double from 2^(bits-1) < n only up to 2^(32k + k), then each
    /// Montgomery squaring takes 2^(32k + s) to 2^(32k + 2s): five reach
    /// 2^(64k) = R^2.
    fn r_squared(&self, bits: usize) -> Vec<u32> {
        let k = self.n.len();
        let top = bits.saturating_sub(1);
        let mut x = vec![0u32; k];
        if let Some(limb) = x.get_mut(top / 32) {
            *limb = 1 << (top % 32);
        }
        for _ in top..33 * k {
            double_mod(&mut x, &self.n);
        }
        let mut scratch = Vec::with_capacity(2 * k + 2);
        for _ in 0..5 {
            x = self.mont_mul(&x, &x, &mut scratch);
        }
        x
    }

    /// The modulus length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Big-endian modulus and exponent, e.g. for a DER public key.
    pub fn modulus_be(&self) -> Vec<u8> {
        from_limbs(&self.n, self.len)
    }

    pub fn exponent(&self) -> u32 {
        self.e
    }

    /// s^e mod n as `len` big-endian bytes; `None` if s is not below n.
    fn public_op(&self, signature: &[u8]) -> Option<Vec<u8>> {
        if signature.len() != self.len {
            return None;
        }
        let k = self.n.len();
        let s = to_limbs(signature, k);
        if !less(&s, &self.n) {
            return None;
        }
        let mut scratch = Vec::with_capacity(2 * k + 2);
        let base = self.mont_mul(&s, &self.r2, &mut scratch);
        let mut acc = base.clone();
        let top = 31 - self.e.leading_zeros();
        for bit in (0..top).rev() {
            acc = self.mont_mul(&acc, &acc, &mut scratch);
            if self.e >> bit & 1 == 1 {
                acc = self.mont_mul(&acc, &base, &mut scratch);
            }
        }
        let mut one = vec![0u32; k];
        if let Some(first) = one.first_mut() {
            *first = 1;
        }
        let out = self.mont_mul(&acc, &one, &mut scratch);
        Some(from_limbs(&out, self.len))
    }

    /// a * b * R^-1 mod n (word-level Montgomery, multiply and reduce in one
    /// pass with two carry chains).
    fn mont_mul(&self, a: &[u32], b: &[u32], t: &mut Vec<u32>) -> Vec<u32> {
        let k = self.n.len();
        t.clear();
        t.resize(2 * k + 2, 0);
        let a0 = u64::from(a.first().copied().unwrap_or(0));
        for (i, &bi) in b.iter().enumerate() {
            let Some(w) = t.get_mut(i..) else { break };
            let bi = u64::from(bi);
            let w0 = u64::from(w.first().copied().unwrap_or(0));
            let m = u64::from(((w0 + a0 * bi) as u32).wrapping_mul(self.n0inv));
            let (mut c1, mut c2) = (0u64, 0u64);
            for ((tj, &aj), &nj) in w.iter_mut().zip(a).zip(&self.n) {
                let x = u64::from(*tj) + u64::from(aj) * bi + c1;
                c1 = x >> 32;
                let y = (x & 0xffff_ffff) + u64::from(nj) * m + c2;
                *tj = y as u32;
                c2 = y >> 32;
            }
            add_carry(w.get_mut(k..).unwrap_or_default(), c1 + c2);
        }
        let mut r: Vec<u32> = t.get(k..2 * k).unwrap_or_default().to_vec();
        let overflow = t.get(2 * k).is_some_and(|top| *top != 0);
        if overflow || !less(&r, &self.n) {
            sub_in_place(&mut r, &self.n);
        }
        r
    }
}

/// RSASSA-PKCS1-v1_5 (RFC 8017 section 8.2.2), by encoding the expected
/// message and comparing, as the RFC recommends.
pub fn verify_pkcs1v15<D: Digest>(key: &RsaKey, prefix: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Some(em) = key.public_op(signature) else {
        return false;
    };
    let hash = D::digest(message);
    let t_len = prefix.len() + hash.len();
    let Some(pad) = key.len.checked_sub(t_len + 3) else {
        return false;
    };
    if pad < 8 {
        return false;
    }
    let mut expected = Vec::with_capacity(key.len);
    expected.extend_from_slice(&[0x00, 0x01]);
    expected.resize(2 + pad, 0xff);
    expected.push(0x00);
    expected.extend_from_slice(prefix);
    expected.extend_from_slice(&hash);
    expected == em
}

/// DER DigestInfo prefixes for PKCS#1 v1.5 (RFC 8017 section 9.2, note 1).
pub const SHA256_PREFIX: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
];
pub const SHA384_PREFIX: &[u8] = &[
    0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30,
];
pub const SHA512_PREFIX: &[u8] = &[
    0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40,
];

/// RSASSA-PSS with MGF1 on the same hash and a salt as long as the hash, as
/// JWA (RFC 7518 section 3.5) requires (RFC 8017 section 9.1.2).
pub fn verify_pss<D: Digest>(key: &RsaKey, message: &[u8], signature: &[u8]) -> bool {
    let Some(em_full) = key.public_op(signature) else {
        return false;
    };
    let h_len = <D as Digest>::output_size();
    let mod_bits = key.len * 8 - key.modulus_be().first().map_or(8, |b| b.leading_zeros() as usize);
    let em_bits = mod_bits - 1;
    let em_len = em_bits.div_ceil(8);
    // When emBits is a multiple of 8 the encoded message is one byte shorter.
    let skip = key.len - em_len;
    if em_full.get(..skip).is_some_and(|lead| lead.iter().any(|b| *b != 0)) {
        return false;
    }
    let Some(em) = em_full.get(skip..) else {
        return false;
    };
    let s_len = h_len;
    if em_len < h_len + s_len + 2 || em.last() != Some(&0xbc) {
        return false;
    }
    let db_len = em_len - h_len - 1;
    let (Some(masked_db), Some(h)) = (em.get(..db_len), em.get(db_len..db_len + h_len)) else {
        return false;
    };
    let top_bits = 8 * em_len - em_bits;
    let top_mask = 0xffu8.checked_shr(top_bits as u32).unwrap_or(0);
    if masked_db.first().is_some_and(|b| b & !top_mask != 0) {
        return false;
    }
    let mask = mgf1::<D>(h, db_len);
    let mut db: Vec<u8> = masked_db.iter().zip(&mask).map(|(a, b)| a ^ b).collect();
    if let Some(first) = db.first_mut() {
        *first &= top_mask;
    }
    let ps_len = em_len - h_len - s_len - 2;
    let (Some(ps), Some(one), Some(salt)) = (db.get(..ps_len), db.get(ps_len), db.get(ps_len + 1..)) else {
        return false;
    };
    if ps.iter().any(|b| *b != 0) || *one != 0x01 {
        return false;
    }
    let m_hash = D::digest(message);
    let mut m_prime = D::new();
    m_prime.update([0u8; 8]);
    m_prime.update(&m_hash);
    m_prime.update(salt);
    m_prime.finalize().as_slice() == h
}

fn mgf1<D: Digest>(seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + <D as Digest>::output_size());
    let mut counter: u32 = 0;
    while out.len() < len {
        let mut d = D::new();
        d.update(seed);
        d.update(counter.to_be_bytes());
        out.extend_from_slice(&d.finalize());
        counter += 1;
    }
    out.truncate(len);
    out
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

/// Big-endian bytes to `limbs` little-endian u32 limbs (extra bytes ignored).
fn to_limbs(be: &[u8], limbs: usize) -> Vec<u32> {
    let mut out = vec![0u32; limbs];
    for (i, b) in be.iter().rev().enumerate() {
        if let Some(limb) = out.get_mut(i / 4) {
            *limb |= u32::from(*b) << (8 * (i % 4));
        }
    }
    out
}

fn from_limbs(limbs: &[u32], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    for (i, byte) in out.iter_mut().rev().enumerate() {
        *byte = limbs.get(i / 4).map_or(0, |l| (l >> (8 * (i % 4))) as u8);
    }
    out
}

/// -x^-1 mod 2^32 for odd x, by Newton's iteration.
fn neg_inverse(x: u32) -> u32 {
    let mut inv: u32 = 1;
    for _ in 0..5 {
        inv = inv.wrapping_mul(2u32.wrapping_sub(x.wrapping_mul(inv)));
    }
    inv.wrapping_neg()
}

/// x = 2x mod n, for x < n.
fn double_mod(x: &mut [u32], n: &[u32]) {
    let mut carry = 0u32;
    for limb in x.iter_mut() {
        let next = *limb >> 31;
        *limb = *limb << 1 | carry;
        carry = next;
    }
    if carry == 1 || !less(x, n) {
        sub_in_place(x, n);
    }
}

/// a < b for equal-length little-endian limbs.
fn less(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

fn sub_in_place(a: &mut [u32], b: &[u32]) {
    let mut borrow = 0i64;
    for (x, y) in a.iter_mut().zip(b) {
        let d = i64::from(*x) - i64::from(*y) + borrow;
        *x = d as u32;
        borrow = d >> 32;
    }
}

fn add_carry(w: &mut [u32], mut c: u64) {
    for limb in w.iter_mut() {
        if c == 0 {
            return;
        }
        let x = u64::from(*limb) + c;
        *limb = x as u32;
        c = x >> 32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn r_squared_matches_doubling_from_one() {
        // Moduli of several sizes, with and without a full top limb.
        for bytes in [256usize, 257, 300, 383, 384, 511, 512] {
            let mut n: Vec<u8> = (0..bytes).map(|i| (i * 151 + 7) as u8 | 0x11).collect();
            n[0] = if bytes == 256 { 0xc3 } else { 0xc3 >> (bytes % 3) };
            let key = RsaKey::new(&n, &[1, 0, 1]).unwrap();
            let mut slow = vec![0u32; key.n.len()];
            slow[0] = 1;
            for _ in 0..64 * key.n.len() {
                double_mod(&mut slow, &key.n);
            }
            assert_eq!(key.r2, slow, "{bytes} bytes");
        }
    }
}
