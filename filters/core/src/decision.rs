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

/// JSON for `tollgate.decision.<filter>`: filter, route, mode, outcome and
/// reason, plus the filter's own fields in `extra`.
pub fn record<E: Serialize>(filter: &'static str, route: &str, mode: Mode, action: Action, extra: E) -> Vec<u8> {
    let (outcome, reason) = action.outcome();
    let record = Record {
        filter,
        route,
        mode: mode.as_str(),
        outcome,
        reason,
        extra,
    };
    serde_json::to_vec(&record).unwrap_or_default()
}
