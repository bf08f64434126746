//! The few DER and protobuf encodings Envoy's `verify_signature` foreign
//! function needs: SubjectPublicKeyInfo keys, DER ECDSA signatures, and its
//! `VerifySignatureArguments` / `VerifySignatureResult` messages.

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = body.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(body);
    out
}

/// A DER INTEGER from unsigned big-endian bytes.
fn integer(be: &[u8]) -> Vec<u8> {
    let start = be.iter().position(|b| *b != 0).unwrap_or(be.len().saturating_sub(1));
    let digits = be.get(start..).unwrap_or_default();
    let mut body = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_none_or(|b| b & 0x80 != 0) {
        body.push(0);
    }
    body.extend_from_slice(digits);
    tlv(0x02, &body)
}

fn spki(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    let mut bits = vec![0u8];
    bits.extend_from_slice(key);
    let mut body = tlv(0x30, algorithm);
    body.extend(tlv(0x03, &bits));
    tlv(0x30, &body)
}

pub fn rsa_spki(n: &[u8], e: u32) -> Vec<u8> {
    let mut algorithm = tlv(0x06, OID_RSA);
    algorithm.extend_from_slice(&[0x05, 0x00]);
    let mut key = integer(n);
    key.extend(integer(&e.to_be_bytes()));
    spki(&algorithm, &tlv(0x30, &key))
}

/// `sec1` is the uncompressed point `04 || x || y`.
pub fn ec_spki(p384: bool, sec1: &[u8]) -> Vec<u8> {
    let mut algorithm = tlv(0x06, OID_EC);
    algorithm.extend(tlv(0x06, if p384 { OID_P384 } else { OID_P256 }));
    spki(&algorithm, sec1)
}

/// JWS ECDSA signatures are `r || s`; BoringSSL wants DER.
pub fn ecdsa_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut body = integer(r);
    body.extend(integer(s));
    Some(tlv(0x30, &body))
}

fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
    out.push(number << 3 | 2);
    let mut len = bytes.len();
    while len >= 0x80 {
        out.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(bytes);
}

/// `VerifySignatureArguments { hash_function = 1; public_key = 2 (DER);
/// signature = 3; text = 4 }`.
pub fn verify_arguments(hash: &str, spki: &[u8], signature: &[u8], text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(spki.len() + signature.len() + text.len() + 24);
    field(&mut out, 1, hash.as_bytes());
    field(&mut out, 2, spki);
    field(&mut out, 3, signature);
    field(&mut out, 4, text);
    out
}

/// `VerifySignatureResult { bool result = 1; string error = 2; }`: only
/// `result` matters; anything unreadable counts as a refusal.
pub fn verify_result(bytes: &[u8]) -> bool {
    let mut i = 0;
    let mut result = false;
    while let Some(&key) = bytes.get(i) {
        i += 1;
        match key {
            0x08 => {
                result = bytes.get(i) == Some(&1);
                i += 1;
            }
            0x12 => {
                let Some(&len) = bytes.get(i) else {
                    return false;
                };
                if len >= 0x80 {
                    // Long error texts only come with result = false.
                    return result;
                }
                i += 1 + usize::from(len);
            }
            _ => return false,
        }
    }
    result
}
