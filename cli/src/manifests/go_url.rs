//! Go's `net/url.ParseRequestURI`, which Kubernetes' CEL URL library calls
//! for `isURL(s)` and `url(s)`: only what decides whether a string parses and
//! what its scheme is. A port, so the tool accepts and rejects the URLs the
//! API server does.

/// The lowercased scheme ("" for an absolute path), or why the string is not
/// a request URI (an absolute URI or an absolute path).
pub fn parse_request_uri(s: &str) -> Result<String, String> {
    if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("invalid control character in URL".to_string());
    }
    if s.is_empty() {
        return Err("empty url".to_string());
    }
    if s == "*" {
        return Ok(String::new());
    }
    let (scheme, rest) = split_scheme(s)?;
    let scheme = scheme.to_ascii_lowercase();
    let rest = without_query(rest);
    if !rest.starts_with('/') {
        // A rootless path after a scheme is opaque ("mailto:x"); without a
        // scheme it is a relative reference, which a request URI cannot be.
        return match scheme.is_empty() {
            false => Ok(scheme),
            true => Err("invalid URI for request".to_string()),
        };
    }
    let path = match rest.strip_prefix("//") {
        Some(after) if !scheme.is_empty() => {
            let (authority, path) = after.split_at(after.find('/').unwrap_or(after.len()));
            check_authority(authority)?;
            path
        }
        _ => rest,
    };
    check_escapes(path, Mode::Path)?;
    Ok(scheme)
}

/// Go's `getScheme`: letters, then letters, digits, `+`, `-`, `.` up to a `:`.
fn split_scheme(s: &str) -> Result<(&str, &str), String> {
    for (i, c) in s.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i == 0 => return Ok(("", s)),
            b'0'..=b'9' | b'+' | b'-' | b'.' => {}
            b':' if i == 0 => return Err("missing protocol scheme".to_string()),
            b':' => {
                let (scheme, rest) = s.split_at(i);
                return Ok((scheme, rest.get(1..).unwrap_or_default()));
            }
            _ => return Ok(("", s)),
        }
    }
    Ok(("", s))
}

/// Go keeps a lone trailing `?` as ForceQuery, else cuts at the first `?`.
fn without_query(rest: &str) -> &str {
    match rest.strip_suffix('?') {
        Some(stripped) if !stripped.contains('?') => stripped,
        _ => rest.split_once('?').map_or(rest, |(before, _)| before),
    }
}

fn check_authority(authority: &str) -> Result<(), String> {
    let (userinfo, host) = match authority.rfind('@') {
        Some(i) => {
            let (user, host) = authority.split_at(i);
            (Some(user), host.get(1..).unwrap_or_default())
        }
        None => (None, authority),
    };
    check_host(host)?;
    if let Some(userinfo) = userinfo {
        if !userinfo.chars().all(valid_userinfo_char) {
            return Err("net/url: invalid userinfo".to_string());
        }
        check_escapes(userinfo, Mode::UserInfo)?;
    }
    Ok(())
}

fn valid_userinfo_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._:~!$&'()*+,;=%@".contains(c)
}

fn check_host(host: &str) -> Result<(), String> {
    if host.starts_with('[') {
        let close = host.rfind(']').ok_or("missing ']' in host")?;
        let (literal, port) = host.split_at(close + 1);
        if !valid_optional_port(port) {
            return Err(format!("invalid port {port:?} after host"));
        }
        // RFC 6874: an IPv6 zone follows "%25" and has escapes of its own.
        return match literal.find("%25") {
            Some(zone) => {
                let (address, zone) = literal.split_at(zone);
                check_escapes(address, Mode::Host)?;
                check_escapes(zone, Mode::Zone)
            }
            None => check_escapes(literal, Mode::Host),
        };
    }
    if let Some(colon) = host.rfind(':') {
        let port = host.get(colon..).unwrap_or_default();
        if !valid_optional_port(port) {
            return Err(format!("invalid port {port:?} after host"));
        }
    }
    check_escapes(host, Mode::Host)
}

fn valid_optional_port(port: &str) -> bool {
    match port.strip_prefix(':') {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_digit()),
        None => port.is_empty(),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Path,
    UserInfo,
    Host,
    Zone,
}

/// Go's `unescape`, as a check: every `%` starts two hex digits, and a host
/// has only the characters RFC 3986 allows it.
fn check_escapes(s: &str, mode: Mode) -> Result<(), String> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        if c != b'%' {
            if matches!(mode, Mode::Host | Mode::Zone) && c < 0x80 && host_must_escape(c) {
                return Err(format!("invalid character {:?} in host name", char::from(c)));
            }
            i += 1;
            continue;
        }
        let escape = s.get(i..i + 3).unwrap_or_else(|| s.get(i..).unwrap_or_default());
        let (Some(high), Some(low)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) else {
            return Err(format!("invalid URL escape {escape:?}"));
        };
        // RFC 3986: escapes in a host only for non-ASCII bytes, but "%25" (RFC 6874).
        if mode == Mode::Host && high < 8 && escape != "%25" {
            return Err(format!("invalid URL escape {escape:?}"));
        }
        let byte = high << 4 | low;
        if mode == Mode::Zone && escape != "%25" && byte != b' ' && host_must_escape(byte) {
            return Err(format!("invalid URL escape {escape:?}"));
        }
        i += 3;
    }
    Ok(())
}

fn hex(b: Option<&u8>) -> Option<u8> {
    b.and_then(|b| char::from(*b).to_digit(16))
        .and_then(|d| u8::try_from(d).ok())
}

/// Go's `shouldEscape(c, encodeHost)`.
fn host_must_escape(c: u8) -> bool {
    !(c.is_ascii_alphanumeric() || b"!$&'()*+,;=:[]<>\"-_.~".contains(&c))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::parse_request_uri as parse;

    #[test]
    fn schemes_and_paths() {
        assert_eq!(parse("oci://ghcr.io/tollgate/tollgate:0.1.0").unwrap(), "oci");
        assert_eq!(parse("HTTPS://example.com:8443/x.wasm?a=b").unwrap(), "https");
        assert_eq!(parse("file:///opt/filters/tollgate.wasm").unwrap(), "file");
        assert_eq!(parse("/opt/x.wasm").unwrap(), "");
        assert_eq!(parse("mailto:someone").unwrap(), "mailto");
        assert_eq!(parse("http://[::1%25eth0]:80/").unwrap(), "http");
        assert_eq!(parse("http://user:p%40ss@host/").unwrap(), "http");
    }

    #[test]
    fn what_go_rejects() {
        for bad in [
            "",
            "ghcr.io/tollgate/tollgate:1",
            "://x",
            "http://exa mple.com/",
            "http://host:port/",
            "http://[::1/",
            "http://host/%zz",
            "http://ho%41st/",
            "http://us{er@host/",
            "http://host/\u{7f}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
