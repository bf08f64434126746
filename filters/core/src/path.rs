//! Request-path normalization, so that `/api/trino/../datahub`,
//! `/api//datahub`, `/api/%64atahub` or `/api\datahub` cannot dodge a rule
//! written for `/api/datahub`. It follows what Envoy's `normalize_path` and
//! `merge_slashes` do (RFC 3986 section 5.2.4, then merging slashes), and
//! refuses what some framework behind us could read as another path.
//! Linear in the length of the path.

use serde::{Deserialize, Serialize};

/// Longest `:path` accepted by default; longer ones are refused, never cut.
pub const DEFAULT_MAX_BYTES: usize = 8192;
/// Highest `paths.max_bytes` a policy may set.
pub const MAX_MAX_BYTES: usize = 65536;
/// Rounds of percent-decoding a framework could apply after us (`%252e` is
/// `.` after two); more rounds than this are not looked for.
const DECODE_ROUNDS: usize = 3;

/// What to do with a path that is not in normal form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// Serve the normalized path (the query as sent).
    #[default]
    Rewrite,
    /// Refuse it: 400 `path_invalid`.
    Reject,
}

/// What to do with `;` path parameters (`/a;p/b`, `..;x`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Parameters {
    /// Any `;` in the path is refused: 400 `path_invalid`.
    #[default]
    Reject,
    /// Each segment loses its parameters, in the decided and the served path.
    Strip,
}

/// What to do with escaped separators (`%2F`, `%5C`) in a path. Tollgate
/// keeps them as data, but an application that decodes them reads a `/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EscapedSlashes {
    /// Refused (400 `path_invalid`) only when reading them as `/` would pick
    /// another route or path tenant: `/api%2Fdatahub` is, a `%2F` inside an
    /// id under `/api/datahub/` is not.
    #[default]
    RejectRerouting,
    /// Any `%2F` or `%5C` is refused, as Envoy's `REJECT_REQUEST` does.
    Reject,
}

/// Whether to check the path as a case-insensitive application reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseReading {
    /// Refused (400 `path_invalid`) when routing it without regard to case
    /// (Express, ASP.NET, IIS) would pick another route or path tenant.
    #[default]
    RejectRerouting,
    /// Routes are case-sensitive and so is the application behind them.
    Sensitive,
}

/// The compiled `paths` section of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathSettings {
    pub max_bytes: usize,
    pub normalization: Normalization,
    pub parameters: Parameters,
    pub escaped_slashes: EscapedSlashes,
    pub case: CaseReading,
}

impl Default for PathSettings {
    fn default() -> PathSettings {
        PathSettings {
            max_bytes: DEFAULT_MAX_BYTES,
            normalization: Normalization::default(),
            parameters: Parameters::default(),
            escaped_slashes: EscapedSlashes::default(),
            case: CaseReading::default(),
        }
    }
}

/// Why a path is refused; the text is for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathError(pub &'static str);

pub const NOT_ORIGIN_FORM: PathError = PathError("does not start with '/'");
pub const FRAGMENT: PathError = PathError("has a fragment");
pub const BAD_ESCAPE: PathError = PathError("has a '%' not followed by two hex digits");
pub const CONTROL: PathError = PathError("has a control character");
pub const PARAMETER: PathError = PathError("has a ';' path parameter");
pub const HIDDEN_DOT: PathError = PathError("has a dot segment hidden by escapes");
pub const NOT_NORMALIZED: PathError = PathError("is not in normal form");
pub const ESCAPED_SLASH: PathError = PathError("has an escaped '/' or '\\'");
pub const REROUTING_SLASH: PathError = PathError("has an escaped '/' or '\\' that would change its route");
pub const REROUTING_METHOD: PathError = PathError("has a method override parameter that would change its route");
pub const REROUTING_CASE: PathError = PathError("would route differently when read without regard to case");
pub const REROUTING_TRAILING_SLASH: PathError =
    PathError("would route differently with a trailing '/' added or removed");

/// The normalized form of the path part of `:path` (no query):
/// - `\` is `/`; percent-encoded unreserved characters are decoded, other
///   escapes upper-cased and kept (`%2F` is not a separator);
/// - bytes outside visible ASCII are escaped, control characters refused;
/// - `.` and `..` removed as RFC 3986 section 5.2.4 says, where empty
///   segments are segments (`/a//../b` is `/a/b`), then runs of `/` merged;
/// - a segment that decodes (again) to something holding a dot segment
///   (`..%2F`, `%2e%2e%5C`, `%252e%252e`, `..%3B`) is refused.
pub fn normalize_path(path: &[u8], parameters: Parameters) -> Result<String, PathError> {
    if !matches!(path.first(), Some(b'/' | b'\\')) {
        return Err(NOT_ORIGIN_FORM);
    }
    if is_plainly_normal(path) {
        return Ok(String::from_utf8_lossy(path).into_owned());
    }
    normalize_steps(path, parameters)
}

/// RFC 3986 5.2.4 and the rest, step by step, for any origin-form path.
fn normalize_steps(path: &[u8], parameters: Parameters) -> Result<String, PathError> {
    let decoded = decode(path, parameters)?;
    let mut segments: Vec<&str> = Vec::new();
    let mut ends_with_dot = false;
    for segment in decoded.get(1..).unwrap_or_default().split('/') {
        let segment = match parameters {
            Parameters::Strip => segment.split(';').next().unwrap_or_default(),
            Parameters::Reject => segment,
        };
        ends_with_dot = matches!(segment, "." | "..");
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for segment in &segments {
        // Merging slashes: an empty segment adds nothing but its place.
        if !out.ends_with('/') {
            out.push('/');
        }
        out.push_str(segment);
    }
    if out.is_empty() || (ends_with_dot && !out.ends_with('/')) {
        out.push('/');
    }
    if out.split('/').any(hides_dot_segment) {
        return Err(HIDDEN_DOT);
    }
    Ok(out)
}

/// The common case, which the steps below would give back unchanged: `/`
/// then letters, digits, `-`, `_`, `~` and single slashes only (no dot,
/// escape, `;`, `\\` or control: nothing to decode, remove or merge).
fn is_plainly_normal(path: &[u8]) -> bool {
    path.first() == Some(&b'/')
        && path
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'~'))
        && !path.windows(2).any(|w| w == b"//")
}

/// The normalized path of a whole `:path` with default settings, or the
/// error: for tests and for checking route patterns.
pub fn normalize(raw: &[u8]) -> Result<String, PathError> {
    let end = raw.iter().position(|b| *b == b'?').unwrap_or(raw.len());
    normalize_path(raw.get(..end).unwrap_or_default(), Parameters::Reject)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// The byte of the escape at `raw[i..]` (`%2e`), if it is one.
fn escape_at(raw: &[u8], i: usize) -> Option<u8> {
    let hi = raw.get(i + 1).copied().and_then(hex_value)?;
    let lo = raw.get(i + 2).copied().and_then(hex_value)?;
    Some(hi << 4 | lo)
}

fn push_escaped(out: &mut String, b: u8) {
    let hex = |n: u8| char::from_digit(u32::from(n), 16).map_or('0', |c| c.to_ascii_uppercase());
    out.push('%');
    out.push(hex(b >> 4));
    out.push(hex(b & 0x0f));
}

/// First pass: escapes canonical, `\` as `/`, `;` refused or kept for
/// `normalize_path` to strip per segment.
fn decode(raw: &[u8], parameters: Parameters) -> Result<String, PathError> {
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'%' => {
                let byte = escape_at(raw, i).ok_or(BAD_ESCAPE)?;
                if is_unreserved(byte) {
                    out.push(char::from(byte));
                } else if is_control(byte) {
                    return Err(CONTROL);
                } else {
                    push_escaped(&mut out, byte);
                }
                i += 3;
                continue;
            }
            b'\\' => out.push('/'),
            b'#' => return Err(FRAGMENT),
            b';' if parameters == Parameters::Reject => return Err(PARAMETER),
            b if is_control(b) => return Err(CONTROL),
            b if b.is_ascii_graphic() => out.push(char::from(b)),
            b => push_escaped(&mut out, b),
        }
        i += 1;
    }
    Ok(out)
}

/// Whether a normalized segment could become a dot segment, a control
/// character or an overlong UTF-8 `.`, `/` or `\` for a framework that
/// decodes it again (`..%2F`, `%2F..`, `.%5C`, `%252e%252e`, `..%3Bx`,
/// `%C0%AE`).
fn hides_dot_segment(segment: &str) -> bool {
    if !segment.contains('%') {
        return false;
    }
    let mut bytes = segment.as_bytes().to_vec();
    for _ in 0..DECODE_ROUNDS {
        let next = decode_all(&bytes);
        if next == bytes {
            break;
        }
        bytes = next;
    }
    bytes.iter().any(|b| is_control(*b))
        || has_overlong(&bytes)
        || bytes
            .split(|b| matches!(b, b'/' | b'\\' | b';'))
            .any(|piece| piece == b"." || piece == b"..")
}

/// Whether a normalized path holds an escaped `/` or `\` (escapes are
/// upper-case after normalization).
pub fn has_escaped_slash(path: &str) -> bool {
    path.contains("%2F") || path.contains("%5C")
}

/// Whether an application that decodes escapes could find a separator in
/// the path: `%2F`, `%5C`, or an escaped `%` (`%252F`).
pub fn may_hide_slash(path: &str) -> bool {
    has_escaped_slash(path) || path.contains("%25")
}

/// Non-ASCII letters that Java's case-insensitive comparisons (Spring's
/// `caseSensitive=false` matchers) and `toLowerCase` fold to ASCII: `İ`, `ı`,
/// `ſ` and the Kelvin sign, as escaped in normal form.
const FOLDS_TO_ASCII: [(&str, u8); 4] = [
    ("%C4%B0", b'i'),
    ("%C4%B1", b'i'),
    ("%C5%BF", b's'),
    ("%E2%84%AA", b'k'),
];

/// The path lower-cased as a case-insensitive application reads it
/// (ASCII letters, and the letters above that fold to ASCII), other escapes
/// kept (`%2F` stays upper-case hex, as normal form has it); `None` when
/// nothing changes.
pub fn lower_cased(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut changed = false;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let rest = bytes.get(i..).unwrap_or_default();
            if let Some((escaped, letter)) = FOLDS_TO_ASCII.iter().find(|(e, _)| rest.starts_with(e.as_bytes())) {
                out.push(*letter);
                changed = true;
                i += escaped.len();
            } else {
                out.extend_from_slice(bytes.get(i..i + 3).unwrap_or(rest));
                i += 3;
            }
            continue;
        }
        changed |= b.is_ascii_uppercase();
        out.push(b.to_ascii_lowercase());
        i += 1;
    }
    changed.then(|| String::from_utf8(out).ok()).flatten()
}

/// The normalized path an application that decodes escaped separators (up
/// to `DECODE_ROUNDS` times, so `%252F` too) would act on; `None` when that
/// reading is not a valid path.
pub fn with_slashes_decoded(path: &str, parameters: Parameters) -> Option<String> {
    let mut bytes = path.as_bytes().to_vec();
    for _ in 0..DECODE_ROUNDS {
        let next = decode_separators(&bytes);
        if next == bytes {
            break;
        }
        bytes = next;
    }
    normalize_path(&escape_lone_percents(&bytes), parameters).ok()
}

/// One round of decoding `%2F`, `%5C` and `%25` only.
fn decode_separators(raw: &[u8]) -> Vec<u8> {
    decode_where(raw, |b| matches!(b, b'/' | b'\\' | b'%'))
}

/// Escapes every `%` that does not start an escape: it was data.
fn escape_lone_percents(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, &b) in raw.iter().enumerate() {
        if b == b'%' && escape_at(raw, i).is_none() {
            out.extend_from_slice(b"%25");
        } else {
            out.push(b);
        }
    }
    out
}

/// One round of percent-decoding; a `%` that starts no escape stays.
fn decode_all(raw: &[u8]) -> Vec<u8> {
    decode_where(raw, |_| true)
}

/// One round of decoding the escapes of the bytes `wanted` picks.
fn decode_where(raw: &[u8], wanted: impl Fn(u8) -> bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match (b, escape_at(raw, i)) {
            (b'%', Some(byte)) if wanted(byte) => {
                out.push(byte);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Overlong UTF-8 (never valid, but some decoders accept it): `C0`/`C1`
/// leads, `E0 80..9F`, `F0 80..8F`.
fn has_overlong(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| match w {
        [0xc0 | 0xc1, _] => true,
        [0xe0, second] => (0x80..0xa0).contains(second),
        [0xf0, second] => (0x80..0x90).contains(second),
        _ => false,
    }) || bytes.last().is_some_and(|b| matches!(b, 0xc0 | 0xc1))
}

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod props;
#[cfg(test)]
mod tests;
