//! Request-path normalization for matching (RFC 3986 section 6.2.2), so that
//! `/api/trino/../datahub`, `/api//datahub` or `/api/%64atahub` cannot dodge a
//! rule written for `/api/datahub`.

/// Longest `:path` we normalize; longer paths are cut, which can only make a
/// match less likely, never dodge a deny (routes deny by tenant, not by miss).
pub const MAX_PATH_LEN: usize = 8192;

/// The path part of `:path` (query and fragment dropped), normalized:
/// - percent-encoded unreserved characters decoded, other escapes upper-cased
///   (`%2f` stays encoded as `%2F`: an encoded slash is not a separator);
/// - bytes outside visible ASCII percent-encoded;
/// - runs of `/` merged into one;
/// - `.` and `..` segments removed (RFC 3986 section 5.2.4), never above `/`.
pub fn normalize(raw: &[u8]) -> String {
    let raw = raw.get(..raw.len().min(MAX_PATH_LEN)).unwrap_or(raw);
    let end = raw.iter().position(|b| *b == b'?' || *b == b'#').unwrap_or(raw.len());
    let decoded = decode_unreserved(raw.get(..end).unwrap_or_default());
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let trailing = decoded.ends_with('/')
        || decoded.ends_with("/.")
        || decoded.ends_with("/..")
        || decoded == "."
        || decoded == "..";
    let mut out = String::with_capacity(decoded.len() + 1);
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || (trailing && !segments.is_empty()) {
        out.push('/');
    }
    out
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn push_escaped(out: &mut String, b: u8) {
    let hex = |n: u8| char::from_digit(u32::from(n), 16).map_or('0', |c| c.to_ascii_uppercase());
    out.push('%');
    out.push(hex(b >> 4));
    out.push(hex(b & 0x0f));
}

fn decode_unreserved(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b == b'%' {
            let hi = raw.get(i + 1).copied().and_then(hex_value);
            let lo = raw.get(i + 2).copied().and_then(hex_value);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                let byte = hi << 4 | lo;
                if is_unreserved(byte) {
                    out.push(char::from(byte));
                } else {
                    push_escaped(&mut out, byte);
                }
                i += 3;
                continue;
            }
            // A lone `%` is kept escaped so it can never start a new escape.
            push_escaped(&mut out, b);
        } else if b.is_ascii_graphic() {
            out.push(char::from(b));
        } else {
            push_escaped(&mut out, b);
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests;
