//! A form-encoded body (`application/x-www-form-urlencoded`) as the
//! application reads it: an access token in it (RFC 6750 section 2.2) and
//! `_method` overrides (Laravel, Symfony, Rails and Express's
//! method-override read them there). Decisions only: the glue buffers the
//! body and acts on the answer.

use crate::jwt::config::TokenSource;
use crate::jwt::JwtDenial;
use crate::params::{query_params, same_param, unnamed_pieces};
use crate::policy::wire::Requirement;
use crate::policy::{Policy, Route};
use crate::reply::Denial;

/// The most of a form body that is read. A longer one is refused
/// (`TOO_LARGE`): a token or `_method` could sit past any cut.
pub const MAX_FORM_BODY_BYTES: usize = 64 * 1024;

/// A form body over `MAX_FORM_BODY_BYTES` where one had to be read.
pub const TOO_LARGE: Denial = Denial {
    status: 413,
    reason: "form_body_too_large",
    message: "form body is too large to check",
    bearer_error: None,
};

/// A token in a form body. Envoy forwards the request headers before a
/// filter can see the body (Istio's WasmPlugin cannot set Envoy's
/// `allow_on_headers_stop_iteration`), so the token could be neither
/// verified before the application's identity headers were set nor
/// removed from what the application reads: it is refused, and the body
/// never reaches the application.
pub const TOKEN_IN_BODY: Denial = Denial {
    status: 400,
    reason: "token_in_form_body",
    message: "an access token in a form body is not accepted: send it in the Authorization header",
    bearer_error: Some("invalid_request"),
};

/// Whether a `content-type` value is a form: the media type
/// `application/x-www-form-urlencoded` in any case, parameters ignored.
pub fn is_form(content_type: &[u8]) -> bool {
    let media = content_type.split(|b| *b == b';').next().unwrap_or_default();
    media
        .trim_ascii()
        .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
}

/// The token parameter names (`from_params`) of the providers the route
/// accepts, in order; none where the route looks at no token.
pub fn token_params<'p>(policy: &'p Policy, route: &Route) -> Vec<&'p str> {
    if route.jwt.requirement == Requirement::None {
        return Vec::new();
    }
    let providers = route.jwt.providers.iter().filter_map(|i| policy.jwt.providers.get(*i));
    let mut names: Vec<&str> = Vec::new();
    for source in providers.flat_map(|p| &p.sources) {
        if let TokenSource::Param(name) = source {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
    }
    names
}

/// Whether a `_method` could change a decision: some route lists methods
/// (an override could pick another route), or the route has a
/// method-scoped claim rule.
pub fn method_overrides_matter(policy: &Policy, route: &Route) -> bool {
    let routes_by_method = policy.routes.iter().any(|r| !r.matcher.methods.is_empty());
    let rules_by_method =
        route.jwt.requirement != Requirement::None && route.jwt.rules.iter().any(|r| !r.methods.is_empty());
    routes_by_method || rules_by_method
}

/// Whether the glue must read the body before deciding: a form on a route
/// whose providers read token parameters, or where `_method` overrides
/// matter. Any method: Express's body-parser reads a form body whatever the
/// method, Spring Security takes a body token on every method but GET, and
/// Symfony parses PUT, PATCH and DELETE forms. (A request that ends with
/// its headers has no body to read.)
pub fn needs_body(policy: &Policy, route: &Route, content_type: Option<&[u8]>) -> bool {
    content_type.is_some_and(is_form)
        && (!token_params(policy, route).is_empty() || method_overrides_matter(policy, route))
}

/// The token a form body carries, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormToken {
    Absent,
    Found(String),
    /// Two token parameters, under one name or two: which one the
    /// application reads is its own choice, so checking one would not bind
    /// it (as for the query).
    Malformed,
}

impl FormToken {
    /// As the other token sources answer: `Err(token_malformed)` for two.
    pub fn into_result(self) -> Result<Option<String>, JwtDenial> {
        match self {
            FormToken::Absent => Ok(None),
            FormToken::Found(token) => Ok(Some(token)),
            FormToken::Malformed => Err(JwtDenial::Malformed),
        }
    }
}

/// What a form body holds for the filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormFindings {
    pub token: FormToken,
    /// Upper-cased `_method` values: each must keep the route
    /// (`RequestView::check_method_overrides`) and meet its claim rules.
    pub method_overrides: Vec<String>,
}

/// Reads a body as the application would: parameters found by
/// `same_param` under every name some stack reads as a token source
/// (`token_names`) or `_method`, split on `&` and `;` (`query_params`). Not
/// a form: nothing found. `body` is what the glue buffered; over
/// `MAX_FORM_BODY_BYTES` it is refused.
pub fn read_form(token_names: &[&str], content_type: Option<&[u8]>, body: &[u8]) -> Result<FormFindings, Denial> {
    let mut found = FormFindings {
        token: FormToken::Absent,
        method_overrides: Vec::new(),
    };
    if !content_type.is_some_and(is_form) {
        return Ok(found);
    }
    if body.len() > MAX_FORM_BODY_BYTES {
        return Err(TOO_LARGE);
    }
    for (name, value) in query_params(body).filter_map(|piece| form_urlencoded::parse(piece).next()) {
        if same_param(&name, "_method") {
            found.method_overrides.push(value.to_ascii_uppercase());
        } else if token_names.iter().any(|n| same_param(&name, n)) {
            found.token = match found.token {
                FormToken::Absent => FormToken::Found(value.into_owned()),
                FormToken::Found(_) | FormToken::Malformed => FormToken::Malformed,
            };
        }
    }
    Ok(found)
}

/// What a form body means once the headers were decided and sent on: a
/// token in it is refused (`TOKEN_IN_BODY`); its `_method` values must meet
/// the route's method-scoped claim rules as the request's own method did
/// (`claims`: the verified token's, `None` without one). The route staying
/// the same is `RequestView::check_method_overrides`'s.
pub fn judge_body(
    route: &Route,
    claims: Option<&serde_json::Map<String, serde_json::Value>>,
    findings: &FormFindings,
) -> Result<(), Denial> {
    if findings.token != FormToken::Absent {
        return Err(TOKEN_IN_BODY);
    }
    let rj = &route.jwt;
    let methods = &findings.method_overrides;
    if methods.is_empty() || rj.requirement == Requirement::None {
        return Ok(());
    }
    match claims {
        Some(claims) => crate::jwt::claims::check_rules_any(&rj.rules, methods, claims).map_err(|d| d.denial()),
        None => {
            let applies = rj.rules.iter().any(|r| crate::jwt::claims::applies_any(r, methods));
            let deny = applies && rj.rules_without_token == crate::policy::wire::RulesWithoutToken::Deny;
            if deny {
                Err(JwtDenial::Missing.denial())
            } else {
                Ok(())
            }
        }
    }
}

/// The body without the parameters whose name reads as one of `names`
/// (`same_param`), every other byte and separator kept: a token source is
/// emptied there as in the query (`forward: false`). `None` when nothing
/// is removed.
pub fn without_params(body: &[u8], names: &[&str]) -> Option<Vec<u8>> {
    let kept = unnamed_pieces(body, names)?;
    let mut out = Vec::with_capacity(body.len());
    for (i, (sep, piece)) in kept.into_iter().enumerate() {
        if i > 0 {
            out.push(sep.unwrap_or(b'&'));
        }
        out.extend_from_slice(piece);
    }
    Some(out)
}

#[cfg(test)]
mod tests;
