//! One view of a request for every filter: what Tollgate decides on is what
//! the application receives. From the raw `:method`, `:path` and
//! `:authority` it gives the normalized method, host and path, and the new
//! `:path` when the served one must change; or the refusal.

use crate::headers::same_variable;
use crate::path::{self, CaseReading, EscapedSlashes, Normalization, PathError, PathSettings};
use crate::policy::{Policy, Route, RouteIndex};
use crate::reply::Denial;
use crate::route::{self, Case, RequestHead};

/// The request as routes and rules see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestView {
    pub method: String,
    /// Lower-case, no port (`route::normalize_host`).
    pub host: String,
    /// Normalized, without the query (`path::normalize_path`).
    pub path: String,
    /// The new `:path` (normalized path, then the query as sent) when the
    /// raw one differs; `None` when it is served as is.
    pub served_path: Option<Vec<u8>>,
    /// Upper-cased values of `_method` query parameters (any spelling a
    /// framework reads as that name): Laravel, Symfony and Express's
    /// method-override act on them instead of the method.
    pub method_overrides: Vec<String>,
    /// The route decided on (`Policy::route`), once `read` has run.
    pub route: Option<RouteIndex>,
}

/// Why a request is refused before any route is known; always enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestDenial {
    PathTooLong,
    PathInvalid(&'static str),
    AuthorityInvalid(&'static str),
    /// The host would not give the request headers.
    Unreadable,
}

const PATH_TOO_LONG: Denial = Denial {
    status: 414,
    reason: "path_too_long",
    message: "request path is too long",
    bearer_error: None,
};
const PATH_INVALID: Denial = Denial {
    status: 400,
    reason: "path_invalid",
    message: "request path is not accepted",
    bearer_error: None,
};
const AUTHORITY_INVALID: Denial = Denial {
    status: 400,
    reason: "authority_invalid",
    message: "request authority is not a valid host",
    bearer_error: None,
};
const UNREADABLE: Denial = Denial {
    status: 500,
    reason: "request_unreadable",
    message: "request could not be read",
    bearer_error: None,
};

impl RequestDenial {
    pub const ALL: [Denial; 4] = [PATH_TOO_LONG, PATH_INVALID, AUTHORITY_INVALID, UNREADABLE];

    pub fn denial(self) -> Denial {
        match self {
            RequestDenial::PathTooLong => PATH_TOO_LONG,
            RequestDenial::PathInvalid(_) => PATH_INVALID,
            RequestDenial::AuthorityInvalid(_) => AUTHORITY_INVALID,
            RequestDenial::Unreadable => UNREADABLE,
        }
    }

    /// For the log line: what was wrong, never the request's own bytes.
    pub fn detail(self) -> &'static str {
        match self {
            RequestDenial::PathTooLong => "path over paths.max_bytes",
            RequestDenial::PathInvalid(why) => why,
            RequestDenial::AuthorityInvalid(why) => why,
            RequestDenial::Unreadable => "request headers could not be read",
        }
    }

    /// `tollgate.<filter>.denied.<reason>`.
    pub fn metric(self, filter: &str) -> String {
        format!("tollgate.{filter}.denied.{}", self.denial().reason)
    }

    /// Index of `metric(filter)` in `metric_names(filter)` (position in `ALL`).
    pub fn metric_index(self) -> usize {
        match self {
            RequestDenial::PathTooLong => 0,
            RequestDenial::PathInvalid(_) => 1,
            RequestDenial::AuthorityInvalid(_) => 2,
            RequestDenial::Unreadable => 3,
        }
    }
}

/// Counters for the refusals above, for each filter's `metric_names()`.
pub fn metric_names(filter: &str) -> Vec<String> {
    RequestDenial::ALL
        .iter()
        .map(|d| format!("tollgate.{filter}.denied.{}", d.reason))
        .collect()
}

impl RequestView {
    /// Builds the view from the raw pseudo-headers (`None`: absent).
    pub fn new(
        method: &[u8],
        raw_path: Option<&[u8]>,
        authority: Option<&[u8]>,
        settings: &PathSettings,
    ) -> Result<RequestView, RequestDenial> {
        let raw_path = raw_path.ok_or(RequestDenial::PathInvalid("has no :path"))?;
        if raw_path.len() > settings.max_bytes {
            return Err(RequestDenial::PathTooLong);
        }
        let host = route::normalize_host(authority.unwrap_or_default()).map_err(RequestDenial::AuthorityInvalid)?;
        let split = raw_path.iter().position(|b| *b == b'?').unwrap_or(raw_path.len());
        let (path_part, query) = raw_path.split_at(split);
        let path = match (method, path_part) {
            // `OPTIONS *` asks about the server: no path, the default route.
            (b"OPTIONS", b"*") if query.is_empty() => "*".to_string(),
            _ => path::normalize_path(path_part, settings.parameters).map_err(from_path)?,
        };
        let served_path = if path.as_bytes() == path_part {
            None
        } else if settings.normalization == Normalization::Reject {
            return Err(from_path(path::NOT_NORMALIZED));
        } else {
            let mut served = path.clone().into_bytes();
            served.extend_from_slice(query);
            Some(served)
        };
        Ok(RequestView {
            // Matched upper-cased, as Django and Werkzeug act on it.
            method: String::from_utf8_lossy(method).to_ascii_uppercase(),
            host,
            path,
            served_path,
            method_overrides: method_overrides(query),
            route: None,
        })
    }

    /// `new` with the policy's path settings, then the check of other
    /// readings of the path, which needs the policy's routes.
    pub fn read(
        method: &[u8],
        raw_path: Option<&[u8]>,
        authority: Option<&[u8]>,
        policy: &Policy,
    ) -> Result<RequestView, RequestDenial> {
        let mut view = RequestView::new(method, raw_path, authority, &policy.paths)?;
        let decided = view.check_readings(policy)?;
        view.route = Some(policy.index_of(decided));
        Ok(view)
    }

    /// Applications read a path in ways Tollgate does not: decoding `%2F`
    /// (Go's ServeMux, WSGI) or ignoring case (Express, ASP.NET, IIS). Each
    /// reading, and both together, must pick the route and path tenant
    /// decided on; where one would not, refuse. Readings that cannot differ
    /// are skipped. (A trailing `/` needs no reading: routes match with or
    /// without it, `route::trim`.)
    fn check_readings<'p>(&self, policy: &'p Policy) -> Result<&'p Route, RequestDenial> {
        let decided = self.decision(policy, &self.path, Case::Sensitive);
        let check = |path: &str, case: Case, error: PathError| {
            let (route, tenant) = self.decision(policy, path, case);
            if std::ptr::eq(route, decided.0) && tenant == decided.1 {
                Ok(())
            } else {
                Err(from_path(error))
            }
        };
        self.check_methods(policy, decided.0, &self.method_overrides)?;
        let decoded = self.slashes_decoded(policy)?;
        if let Some(decoded) = &decoded {
            check(decoded, Case::Sensitive, path::REROUTING_SLASH)?;
        }
        if policy.paths.case == CaseReading::Sensitive {
            return Ok(decided.0);
        }
        for p in std::iter::once(self.path.as_str()).chain(decoded.as_deref()) {
            let lowered = path::lower_cased(p);
            if lowered.is_some() || policy.upper_case_patterns {
                check(lowered.as_deref().unwrap_or(p), Case::Insensitive, path::REROUTING_CASE)?;
            }
        }
        Ok(decided.0)
    }

    /// Each method the application may act on instead of `:method` (a
    /// `_method` in a form body, a method header the policy does not strip:
    /// `header_method_overrides`) must pick the decided route, as the query's
    /// `_method` values must in `read`.
    pub fn check_method_overrides(&self, policy: &Policy, methods: &[String]) -> Result<(), RequestDenial> {
        self.check_methods(policy, self.route(policy), methods)
    }

    fn check_methods(&self, policy: &Policy, decided: &Route, methods: &[String]) -> Result<(), RequestDenial> {
        for method in methods {
            let head = RequestHead { method, ..self.head() };
            if !std::ptr::eq(policy.route_as(&head, Case::Sensitive), decided) {
                return Err(from_path(path::REROUTING_METHOD));
            }
        }
        Ok(())
    }

    /// The path as an application that decodes escaped separators reads
    /// it, when that can differ; `Err` when escaped separators are refused
    /// or that reading is not a valid path.
    fn slashes_decoded(&self, policy: &Policy) -> Result<Option<String>, RequestDenial> {
        if !path::may_hide_slash(&self.path) {
            return Ok(None);
        }
        if policy.paths.escaped_slashes == EscapedSlashes::Reject && path::has_escaped_slash(&self.path) {
            return Err(from_path(path::ESCAPED_SLASH));
        }
        path::with_slashes_decoded(&self.path, policy.paths.parameters)
            .map(Some)
            .ok_or(from_path(path::REROUTING_SLASH))
    }

    /// The route and (lower-cased) path tenant for `path` read as `case`.
    fn decision<'p>(&self, policy: &'p Policy, path: &str, case: Case) -> (&'p Route, Option<String>) {
        let head = RequestHead { path, ..self.head() };
        let tenant = policy.tenant.split_path(path).map(|(id, _)| id.to_ascii_lowercase());
        (policy.route_as(&head, case), tenant)
    }

    /// The decided route: the one `read` found, else matched now.
    pub fn route<'p>(&self, policy: &'p Policy) -> &'p Route {
        match self.route {
            Some(index) => policy.route_at(index),
            None => policy.route(&self.head()),
        }
    }

    pub fn head(&self) -> RequestHead<'_> {
        RequestHead {
            method: &self.method,
            host: &self.host,
            path: &self.path,
        }
    }

    /// The `:path` the application receives: `served_path`, or the raw one.
    pub fn target<'a>(&'a self, raw_path: &'a [u8]) -> &'a [u8] {
        self.served_path.as_deref().unwrap_or(raw_path)
    }
}

/// Headers read as the method instead of `:method`: by the application
/// (Express method-override, ASP.NET, Laravel) or by an auth server behind
/// the sidecar (`x-original-method` from nginx `auth_request` set-ups,
/// `x-forwarded-method` from Traefik ForwardAuth: Authelia authorizes on them).
pub const METHOD_HEADERS: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
    "x-forwarded-method",
];

/// Every method the application may act on, upper-cased, each once: the
/// request's own, the `_method` values of `target`'s query, and those of
/// the method headers the policy leaves in (`header_method_overrides`). A
/// method-scoped decision binds the request when it binds any of them.
pub fn acted_methods(
    method: &str,
    target: &[u8],
    headers: &crate::header_map::HeaderMap,
    strip: &[String],
) -> Vec<String> {
    let at = target.iter().position(|b| *b == b'?').unwrap_or(target.len());
    let (_, query) = target.split_at(at);
    let mut out = vec![method.to_ascii_uppercase()];
    for m in method_overrides(query)
        .into_iter()
        .chain(header_method_overrides(headers, strip))
    {
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

/// The methods in `METHOD_HEADERS` headers (any `_`/`-` spelling) that
/// `strip` does not remove, upper-cased: each comma-separated item, since
/// Express's method-override reads the last and others the first.
pub fn header_method_overrides(headers: &crate::header_map::HeaderMap, strip: &[String]) -> Vec<String> {
    let left_in = |name: &str| {
        METHOD_HEADERS.iter().any(|h| same_variable(name, h)) && !strip.iter().any(|s| same_variable(name, s))
    };
    headers
        .iter()
        .filter(|(name, _)| left_in(name))
        .flat_map(|(_, value)| {
            let items: Vec<String> = String::from_utf8_lossy(value)
                .split(',')
                .map(|m| m.trim().to_ascii_uppercase())
                .filter(|m| !m.is_empty())
                .collect();
            items
        })
        .collect()
}

/// The `_method` values of a query (`?` and all), parameters split as
/// `params::query_params` does.
fn method_overrides(query: &[u8]) -> Vec<String> {
    let Some(query) = query.strip_prefix(b"?") else {
        return Vec::new();
    };
    crate::params::query_params(query)
        .filter_map(|piece| form_urlencoded::parse(piece).next())
        .filter(|(name, _)| crate::params::same_param(name, "_method"))
        .map(|(_, value)| value.to_ascii_uppercase())
        .collect()
}

fn from_path(e: PathError) -> RequestDenial {
    RequestDenial::PathInvalid(e.0)
}

#[cfg(test)]
mod tests;
