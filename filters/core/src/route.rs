//! Route matching over normalized requests. The best match is a `max()` over
//! `Rank`. Gateway API HTTPRoute ranks "the most specific hostname" first,
//! then "exact path match", then "the longest path match", then "method
//! match", then the earliest route. We keep its path and method order but
//! rank the path before the host, and the literal length before the kind:
//! - on a sidecar the client picks the Host and the application answers
//!   every Host, so a host-scoped route must not take over a path rule;
//! - a catch-all template (`/**`, `/*/*/static/**`) must not take over a
//!   longer `prefix: /api/admin` written to protect it.
//!
//! So: an exact path, then the longest literal path, then template over
//! prefix (equal length), then host specificity, then a method match, then
//! the earliest route.

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

/// How specific a match is; greater wins. Field order is precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    exact: bool,
    literal_len: usize,
    path_kind: u8,
    host: (u8, usize),
    method: bool,
    order: Reverse<usize>,
}

const EXACT_KIND: u8 = 3;

/// The step of the precedence that decided between the best match and the
/// next best: the first field of `Rank` (in its `Ord` order) where they
/// differ. For `tollgate explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precedence {
    /// An exact path beats every other kind of path match.
    ExactPath,
    /// The longer literal path wins.
    LongerPath,
    /// At equal literal length, a template beats a prefix, a prefix beats
    /// a route with no path match.
    PathKind,
    /// An exact host beats a wildcard host, a longer wildcard a shorter
    /// one, any host match a route with no host.
    Host,
    /// A route listing the method beats one for every method.
    Method,
    /// Everything else equal: the earlier route in the file.
    FirstInFile,
}

impl Precedence {
    pub fn as_str(self) -> &'static str {
        match self {
            Precedence::ExactPath => "exact path beats a prefix or template",
            Precedence::LongerPath => "longest path wins",
            Precedence::PathKind => "template beats prefix at equal length",
            Precedence::Host => "more specific host wins",
            Precedence::Method => "a route listing the method beats one for any method",
            Precedence::FirstInFile => "first in file wins (all else equal)",
        }
    }

    /// Short, stable name for machine output.
    pub fn code(self) -> &'static str {
        match self {
            Precedence::ExactPath => "exact_path",
            Precedence::LongerPath => "longest_path",
            Precedence::PathKind => "path_kind",
            Precedence::Host => "host",
            Precedence::Method => "method",
            Precedence::FirstInFile => "first_in_file",
        }
    }
}

impl Rank {
    /// Which step of the precedence puts `self` above `other`; `None` when
    /// it is not above it. The fields are compared in declaration order,
    /// the order of the derived `Ord` that `max()` uses.
    pub fn decided_by(&self, other: &Rank) -> Option<Precedence> {
        if self <= other {
            return None;
        }
        let steps = [
            (self.exact != other.exact, Precedence::ExactPath),
            (self.literal_len != other.literal_len, Precedence::LongerPath),
            (self.path_kind != other.path_kind, Precedence::PathKind),
            (self.host != other.host, Precedence::Host),
            (self.method != other.method, Precedence::Method),
        ];
        let step = steps.iter().find(|(differs, _)| *differs).map(|(_, step)| *step);
        Some(step.unwrap_or(Precedence::FirstInFile))
    }
}

/// How path literals compare: as written, or as a case-insensitive
/// framework (Express, ASP.NET, IIS) compares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    Sensitive,
    Insensitive,
}

impl Case {
    fn eq(self, a: &str, b: &str) -> bool {
        match self {
            Case::Sensitive => a == b,
            Case::Insensitive => a.eq_ignore_ascii_case(b),
        }
    }

    /// `path` without `prefix` at its start, compared this way.
    fn strip_prefix<'p>(self, path: &'p str, prefix: &str) -> Option<&'p str> {
        let head = path.get(..prefix.len())?;
        self.eq(head, prefix).then(|| path.get(prefix.len()..)).flatten()
    }
}

/// Whether a listed (upper-case) method covers the request's method: case
/// is ignored (Django and Werkzeug upper-case it), and `GET` covers `HEAD`
/// (every framework answers HEAD with the GET handler).
pub fn method_covers(listed: &str, method: &str) -> bool {
    listed.eq_ignore_ascii_case(method) || (listed == "GET" && method.eq_ignore_ascii_case("HEAD"))
}

impl RouteMatch {
    /// `Some(rank)` when the request matches; `order` is the route's position.
    pub fn rank(&self, req: &RequestHead<'_>, order: usize) -> Option<Rank> {
        self.rank_as(req, order, Case::Sensitive)
    }

    /// `rank`, with path literals compared as `case` says.
    pub fn rank_as(&self, req: &RequestHead<'_>, order: usize, case: Case) -> Option<Rank> {
        let host = self.host_rank(req.host)?;
        let (path_kind, literal_len) = self.path.rank(req.path, case)?;
        let method = if self.methods.is_empty() {
            false
        } else if self.methods.iter().any(|m| method_covers(m, req.method)) {
            true
        } else {
            return None;
        };
        Some(Rank {
            exact: path_kind == EXACT_KIND,
            literal_len,
            path_kind,
            host,
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
    fn rank(&self, path: &str, case: Case) -> Option<(u8, usize)> {
        match self {
            PathMatch::Any => Some((0, 0)),
            PathMatch::Exact(p) => case.eq(trim(p), trim(path)).then_some((EXACT_KIND, p.len())),
            PathMatch::Prefix(p) => prefix_matches(p, path, case).then_some((1, p.len())),
            PathMatch::Template(segments) => template_matches(segments, path, case).then(|| (2, literal_len(segments))),
        }
    }
}

/// `path` without one trailing `/` (`/` itself kept): exact paths and
/// templates match with or without it, as Spring 5 and Express (non-strict)
/// serve `/api/x/` with the `/api/x` handler.
fn trim(path: &str) -> &str {
    match path.strip_suffix('/') {
        Some(bare) if !bare.is_empty() => bare,
        _ => path,
    }
}

/// Segment-aware: `/api/x` matches `/api/x` and `/api/x/...`. A prefix
/// ending in `/` is a plain prefix that also matches the path without that
/// `/` (`/api/x/` matches `/api/x`), as Spring and Express route it.
fn prefix_matches(prefix: &str, path: &str, case: Case) -> bool {
    if let Some(bare) = prefix.strip_suffix('/').filter(|b| !b.is_empty()) {
        return case.strip_prefix(path, prefix).is_some() || case.eq(path, bare);
    }
    if prefix == "/" {
        return path.starts_with('/');
    }
    match case.strip_prefix(path, prefix) {
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

fn template_matches(segments: &[TemplateSegment], path: &str, case: Case) -> bool {
    let path = trim(path);
    let mut parts = path.strip_prefix('/').unwrap_or(path).split('/');
    for segment in segments {
        match segment {
            TemplateSegment::Rest => return true,
            TemplateSegment::One => match parts.next() {
                Some(p) if !p.is_empty() => {}
                _ => return false,
            },
            TemplateSegment::Literal(l) => {
                if !parts.next().is_some_and(|p| case.eq(p, l)) {
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
