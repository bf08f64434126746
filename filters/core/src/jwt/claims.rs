//! Claim checks (RFC 7519 section 4.1) and per-route claim rules.

use super::config::{ClaimRule, ClaimTest, Provider};
use super::JwtDenial;
use serde_json::{Map, Value};

/// A claim by name: the whole name first (`https://example.com/tenant`),
/// else dotted steps into objects (`realm_access.roles`).
pub fn lookup<'c>(claims: &'c Map<String, Value>, name: &str) -> Option<&'c Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    name.match_indices('.').find_map(|(dot, _)| {
        let head = name.get(..dot)?;
        let rest = name.get(dot + 1..)?;
        lookup(claims.get(head)?.as_object()?, rest)
    })
}

/// NumericDate: seconds, possibly fractional; `Err` when not a number.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, JwtDenial> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| Some(f as u64))
            .ok_or(JwtDenial::Malformed),
    }
}

/// `exp`, `nbf`, lifetime; `Ok(exp)`.
pub fn check_times(provider: &Provider, claims: &Map<String, Value>, now: u64) -> Result<Option<u64>, JwtDenial> {
    Times::read(claims)?.check(provider, now)
}

/// A token's `exp`, `nbf` and `iat`, read once when it is verified: a
/// cached token's times are checked without its claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    pub exp: Option<u64>,
    pub nbf: Option<u64>,
    pub iat: Option<u64>,
}

impl Times {
    /// `Err` when one is there but not a NumericDate.
    pub fn read(claims: &Map<String, Value>) -> Result<Times, JwtDenial> {
        Ok(Times {
            exp: numeric_date(claims, "exp")?,
            nbf: numeric_date(claims, "nbf")?,
            iat: numeric_date(claims, "iat")?,
        })
    }

    /// `exp`, `nbf`, lifetime; `Ok(exp)`.
    pub fn check(self, provider: &Provider, now: u64) -> Result<Option<u64>, JwtDenial> {
        let Times { exp, nbf, iat } = self;
        match exp {
            Some(exp) if now > exp.saturating_add(provider.clock_skew) => return Err(JwtDenial::Expired),
            None if provider.require_expiration => return Err(JwtDenial::ExpirationRequired),
            _ => {}
        }
        if nbf.is_some_and(|nbf| now.saturating_add(provider.clock_skew) < nbf) {
            return Err(JwtDenial::NotYetValid);
        }
        if let (Some(max), Some(exp)) = (provider.max_lifetime, exp) {
            if exp.saturating_sub(iat.unwrap_or(now)) > max {
                return Err(JwtDenial::LifetimeTooLong);
            }
        }
        Ok(exp)
    }
}

pub fn check_audience(provider: &Provider, claims: &Map<String, Value>) -> Result<(), JwtDenial> {
    if provider.audiences.is_empty() {
        return Ok(());
    }
    let ok = match claims.get("aud") {
        Some(Value::String(aud)) => provider.audiences.contains(aud),
        Some(Value::Array(auds)) => auds
            .iter()
            .any(|a| a.as_str().is_some_and(|a| provider.audiences.iter().any(|p| p == a))),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(JwtDenial::AudienceInvalid)
    }
}

/// Every rule that applies to the method must hold (`check_rules_any`).
pub fn check_rules(rules: &[ClaimRule], method: &str, claims: &Map<String, Value>) -> Result<(), JwtDenial> {
    check_rules_any(rules, &[method], claims)
}

/// Every rule that applies to any of the methods the application may act
/// on (`request::acted_methods`) must hold: a `GET ?_method=POST` is bound
/// by the POST rules too.
pub fn check_rules_any<M: AsRef<str>>(
    rules: &[ClaimRule],
    methods: &[M],
    claims: &Map<String, Value>,
) -> Result<(), JwtDenial> {
    for rule in rules.iter().filter(|r| applies_any(r, methods)) {
        let value = lookup(claims, &rule.claim);
        let holds = match &rule.test {
            ClaimTest::Equals(want) => value == Some(want),
            ClaimTest::Contains(want) => value.is_some_and(|v| holds_item(v, want)),
            ClaimTest::AnyOf(wants) => value.is_some_and(|v| wants.iter().any(|w| holds_item(v, w))),
        };
        if !holds {
            return Err(JwtDenial::InsufficientScope);
        }
    }
    Ok(())
}

/// Whether a rule binds requests of this method (`route::method_covers`:
/// case ignored, `GET` binds `HEAD`).
pub fn applies(rule: &ClaimRule, method: &str) -> bool {
    applies_any(rule, &[method])
}

/// Whether a rule binds a request the application may act on as any of
/// `methods`.
pub fn applies_any<M: AsRef<str>>(rule: &ClaimRule, methods: &[M]) -> bool {
    let covers = |listed: &String| methods.iter().any(|m| crate::route::method_covers(listed, m.as_ref()));
    rule.methods.is_empty() || rule.methods.iter().any(covers)
}

/// An array holding `item`, or a space-delimited string with it as a word.
fn holds_item(value: &Value, item: &str) -> bool {
    match value {
        Value::Array(items) => items.iter().any(|v| v.as_str() == Some(item)),
        Value::String(s) => s.split(' ').any(|w| w == item),
        _ => false,
    }
}

/// A list claim as strings: arrays, or space-delimited strings.
pub fn string_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// A claim as one header value: arrays joined with commas. `None` for
/// objects, for values a header cannot carry (control characters), and for
/// an array with an item holding a comma, which would read as two items
/// (`["analyst,admin"]` is not `["analyst", "admin"]`): the header is then
/// not set, rather than the token refused, since the claim is still valid.
pub fn header_value(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => {
            let parts: Option<Vec<String>> = items
                .iter()
                .map(|v| match v {
                    Value::String(s) if !s.contains(',') => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                })
                .collect();
            parts?.join(",")
        }
        _ => return None,
    };
    let safe = text.len() <= 4096 && text.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
    safe.then_some(text)
}
