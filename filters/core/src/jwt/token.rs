//! Compact JWS parsing (RFC 7515 section 7.1), checked before any signature
//! work: size, structure, base64url, JSON, `alg`, `crit`.

use super::jwk::Alg;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone)]
pub struct Token<'t> {
    pub alg: Alg,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
    /// `header.payload`, what the signature covers.
    pub signing_input: &'t [u8],
    pub signature: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    /// `none`, or an algorithm we do not verify.
    AlgNotAllowed,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

pub fn parse(token: &str) -> Result<Token<'_>, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header: Header = decode_json(header)?;
    // We understand no header extensions, so any `crit` must be refused.
    if header.crit.is_some() {
        return Err(TokenError::Malformed);
    }
    let alg = Alg::parse(&header.alg).ok_or(TokenError::AlgNotAllowed)?;
    let claims: Map<String, Value> = decode_json(payload)?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::Malformed)?;
    if signature.is_empty() {
        return Err(TokenError::Malformed);
    }
    let signing_len = token.len() - signature_len(token);
    let signing_input = token.as_bytes().get(..signing_len).ok_or(TokenError::Malformed)?;
    Ok(Token {
        alg,
        kid: header.kid,
        claims,
        signing_input,
        signature,
    })
}

/// Length of `.signature` at the end of the token.
fn signature_len(token: &str) -> usize {
    token.rfind('.').map_or(0, |dot| token.len() - dot)
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}
