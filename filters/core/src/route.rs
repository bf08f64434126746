//! Route matching over normalized requests. The best match is a `max()` over
//! `Rank`, which encodes precedence in the spirit of Gateway API HTTPRoute:
//! "the most specific hostname", then "exact path match", then "the longest
//! path match", then "method match", then the earliest declared route.

use std::cmp::Reverse;

/// The parts of a request routes match on, already normalized.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    pub method: &'a str,
    /// Lower-case host, port removed (`host::normalize`).
    pub host: &'a str,
    /// Normalized path (`path::normalize`).
    pub path: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Any,
    Exact(String),
    Prefix(String),
    Template(Vec<TemplateSegment>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSegment {
    Literal(String),
    /// `*`: exactly one non-empty segment.
    One,
    /// `**` (last only): zero or more segments.
    Rest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Exact(String),
    /// `*.example.com`, stored as `.example.com`: one or more labels before it.
    Suffix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    pub path: PathMatch,
    /// Upper-case; empty means any method.
    pub methods: Vec<String>,
    /// Empty means any host.
    pub hosts: Vec<HostMatch>,
}

/// How specific a match is; greater wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    host: (u8, usize),
    path_kind: u8,
    literal_len: usize,
    method: bool,
    order: Reverse<usize>,
}

impl RouteMatch {
    /// `Some(rank)` when the request matches; `order` is the route's position.
    pub fn rank(&self, req: &RequestHead<'_>, order: usize) -> Option<Rank> {
        let host = self.host_rank(req.host)?;
        let (path_kind, literal_len) = self.path.rank(req.path)?;
        let method = if self.methods.is_empty() {
            false
        } else if self.methods.iter().any(|m| m == req.method) {
            true
        } else {
            return None;
        };
        Some(Rank {
            host,
            path_kind,
            literal_len,
            method,
            order: Reverse(order),
        })
    }

    fn host_rank(&self, host: &str) -> Option<(u8, usize)> {
        if self.hosts.is_empty() {
            return Some((0, 0));
        }
        self.hosts
            .iter()
            .filter_map(|h| match h {
                HostMatch::Exact(name) => (name == host).then_some((2, name.len())),
                HostMatch::Suffix(suffix) => {
                    (host.len() > suffix.len() && host.ends_with(suffix.as_str())).then_some((1, suffix.len()))
                }
            })
            .max()
    }
}

impl PathMatch {
    /// `(kind, literal length)` when `path` matches.
    fn rank(&self, path: &str) -> Option<(u8, usize)> {
        match self {
            PathMatch::Any => Some((0, 0)),
            PathMatch::Exact(p) => (p == path).then_some((3, p.len())),
            PathMatch::Prefix(p) => prefix_matches(p, path).then_some((1, p.len())),
            PathMatch::Template(segments) => template_matches(segments, path).then(|| (2, literal_len(segments))),
        }
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

fn literal_len(segments: &[TemplateSegment]) -> usize {
    segments
        .iter()
        .map(|s| match s {
            TemplateSegment::Literal(l) => l.len() + 1,
            _ => 0,
        })
        .sum()
}

fn template_matches(segments: &[TemplateSegment], path: &str) -> bool {
    let mut parts = path.strip_prefix('/').unwrap_or(path).split('/');
    for segment in segments {
        match segment {
            TemplateSegment::Rest => return true,
            TemplateSegment::One => match parts.next() {
                Some(p) if !p.is_empty() => {}
                _ => return false,
            },
            TemplateSegment::Literal(l) => {
                if parts.next() != Some(l.as_str()) {
                    return false;
                }
            }
        }
    }
    parts.next().is_none()
}

/// Parses `/api/*/entities/**`; `Err` says what is wrong.
pub fn parse_template(template: &str) -> Result<Vec<TemplateSegment>, String> {
    let body = template
        .strip_prefix('/')
        .ok_or_else(|| "must start with '/'".to_string())?;
    let parts: Vec<&str> = body.split('/').collect();
    let last = parts.len().saturating_sub(1);
    let mut out = Vec::with_capacity(parts.len());
    for (i, part) in parts.into_iter().enumerate() {
        out.push(match part {
            "**" if i == last => TemplateSegment::Rest,
            "**" => return Err("'**' may only be the last segment".into()),
            "*" => TemplateSegment::One,
            p if p.contains('*') => return Err(format!("segment '{p}' mixes '*' with text; use a whole '*' segment")),
            "" => return Err("empty segment".into()),
            p => TemplateSegment::Literal(p.to_string()),
        });
    }
    Ok(out)
}

/// Longest host name (RFC 1035: 253 characters, labels of 63).
const MAX_HOST: usize = 253;
const MAX_LABEL: usize = 63;

/// Lower-case host of `:authority`, without the port and a trailing dot;
/// `Err` for anything that is not `host[:port]` (userinfo, extra colons,
/// a bad port or brackets, bytes that are not host characters, empty), so a
/// malformed authority is refused instead of falling to the default route.
pub fn normalize_host(raw: &[u8]) -> Result<String, &'static str> {
    let text = std::str::from_utf8(raw).map_err(|_| "is not ASCII")?;
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or("has no closing ']'")?;
        if inside.is_empty() || !inside.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return Err("is not an IPv6 address in brackets");
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("has text after ']'")?),
        };
        (text.get(..inside.len() + 2).unwrap_or(text), port)
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if let Some(port) = port {
        let digits = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
        if !digits || port.parse::<u32>().map_or(true, |p| p > 65535) {
            return Err("has a bad port");
        }
    }
    if host.starts_with('[') {
        return Ok(host.to_ascii_lowercase());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > MAX_HOST {
        return Err("has an empty or over-long host");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= MAX_LABEL
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    };
    if !name.split('.').all(label_ok) {
        return Err("is not a host name");
    }
    Ok(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests;
