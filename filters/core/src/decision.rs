//! What every filter does with its verdict, and the decision record it
//! leaves in filter state (`tollgate.decision.<filter>`) for audit.

use crate::reply::Denial;
use crate::Mode;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny(Denial),
    /// Shadow mode: the request goes on, but would have been denied.
    ShadowDeny(Denial),
}

impl Action {
    pub fn new(denial: Option<Denial>, mode: Mode) -> Action {
        match (denial, mode) {
            (None, _) => Action::Allow,
            (Some(d), Mode::Enforce) => Action::Deny(d),
            (Some(d), Mode::Shadow) => Action::ShadowDeny(d),
        }
    }

    fn outcome(self) -> (&'static str, Option<&'static str>) {
        match self {
            Action::Allow => ("allow", None),
            Action::Deny(d) => ("deny", Some(d.reason)),
            Action::ShadowDeny(d) => ("shadow_deny", Some(d.reason)),
        }
    }

    /// The counter for this action: `tollgate.<filter>.denied.<reason>`,
    /// `...shadow_denied.<reason>`, or `allowed` when let through.
    pub fn metric(self, filter: &str, allowed: &str) -> String {
        match self {
            Action::Allow => format!("tollgate.{filter}.{allowed}"),
            Action::Deny(d) => format!("tollgate.{filter}.denied.{}", d.reason),
            Action::ShadowDeny(d) => format!("tollgate.{filter}.shadow_denied.{}", d.reason),
        }
    }
}

/// JSON for `tollgate.decision.<filter>`: filter, route, mode, outcome and
/// reason, plus the filter's own fields in `extra`.
pub fn record<E: Serialize>(filter: &'static str, route: &str, mode: Mode, action: Action, extra: E) -> Vec<u8> {
    write_record(filter, route, mode, action, &fields(&extra))
}

/// A struct's JSON fields as they go after others in an object:
/// `,"a":1,"b":"x"` (empty when it has none). Made once, they make
/// `write_record` a few copies.
pub fn fields<E: Serialize + ?Sized>(extra: &E) -> Vec<u8> {
    let mut json = serde_json::to_vec(extra).unwrap_or_default();
    let object = json.len() > 2 && json.first() == Some(&b'{') && json.last() == Some(&b'}');
    if !object {
        return Vec::new();
    }
    json.pop();
    if let Some(open) = json.first_mut() {
        *open = b',';
    }
    json
}

/// The bytes `record` writes, with the filter's fields already as JSON
/// (`fields`): the same bytes serde writes, without serde per request.
pub fn write_record(filter: &str, route: &str, mode: Mode, action: Action, fields: &[u8]) -> Vec<u8> {
    let (outcome, reason) = action.outcome();
    let mut out = Vec::with_capacity(80 + route.len() + fields.len());
    out.extend_from_slice(b"{\"filter\":");
    json_string(&mut out, filter);
    out.extend_from_slice(b",\"route\":");
    json_string(&mut out, route);
    out.extend_from_slice(b",\"mode\":");
    json_string(&mut out, mode.as_str());
    out.extend_from_slice(b",\"outcome\":");
    json_string(&mut out, outcome);
    if let Some(reason) = reason {
        out.extend_from_slice(b",\"reason\":");
        json_string(&mut out, reason);
    }
    out.extend_from_slice(fields);
    out.push(b'}');
    out
}

/// A JSON string as serde_json writes it: copied when nothing needs an
/// escape (serde_json escapes only `"`, `\\` and controls below 0x20).
/// A JSON string, as serde writes it.
pub(crate) fn json_string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::Denial;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// What `record` wrote before `write_record`: serde, flattened.
    #[derive(Serialize)]
    struct Record<'a, E: Serialize> {
        filter: &'static str,
        route: &'a str,
        mode: &'static str,
        outcome: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'static str>,
        #[serde(flatten)]
        extra: E,
    }

    #[derive(Serialize)]
    struct Extra<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        provider: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sub: Option<&'a str>,
    }

    #[test]
    fn records_are_the_bytes_serde_writes() {
        let denial = Denial {
            status: 401,
            reason: "token_missing",
            message: "m",
            bearer_error: None,
        };
        let routes = [
            "trino",
            "",
            "a\"b",
            "back\\slash",
            "tab\there",
            "ctl\u{1}\u{1f}",
            "del\u{7f}",
            "é/ü✓",
            "</script>",
        ];
        let subs = [None, Some("user@254carbon.com"), Some("q\"\n\u{0}"), Some("ünï")];
        let actions = [Action::Allow, Action::Deny(denial), Action::ShadowDeny(denial)];
        for route in routes {
            for sub in subs {
                for provider in [None, Some("platform"), Some("p\"x")] {
                    for (action, mode) in actions.iter().zip([Mode::Enforce, Mode::Enforce, Mode::Shadow]) {
                        let (outcome, reason) = action.outcome();
                        let want = serde_json::to_vec(&Record {
                            filter: "jwt",
                            route,
                            mode: mode.as_str(),
                            outcome,
                            reason,
                            extra: Extra { provider, sub },
                        })
                        .unwrap();
                        let got = record("jwt", route, mode, *action, Extra { provider, sub });
                        assert_eq!(String::from_utf8(got).unwrap(), String::from_utf8(want).unwrap());
                    }
                }
            }
        }
    }

    #[test]
    fn fields_are_an_objects_inside_after_a_comma() {
        let none = Extra {
            provider: None,
            sub: None,
        };
        assert_eq!(fields(&none), b"");
        let both = Extra {
            provider: Some("p"),
            sub: Some("s"),
        };
        assert_eq!(fields(&both), br#","provider":"p","sub":"s""#);
        assert_eq!(fields(&[1, 2]), b"");
    }
}
