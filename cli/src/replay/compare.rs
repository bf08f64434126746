//! Each stage's recorded decision against the candidate's, per stage.
//! Rate limits depend on the counts at the time: they are not compared
//! (`limits` estimates them instead); audit decides nothing.

use serde_json::Value;

/// Stages never compared.
const NOT_COMPARED: [&str; 2] = ["ratelimit", "audit"];
/// A stage that did not decide the request (an earlier one answered it).
pub const NOT_RUN: &str = "not run";

/// One stage whose decision differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageChange {
    pub stage: String,
    pub old: String,
    pub new: String,
}

impl StageChange {
    /// Denied now (enforced), and was not before.
    pub fn newly_denied(&self) -> bool {
        is_deny(&self.new) && !is_deny(&self.old)
    }
}

fn is_deny(label: &str) -> bool {
    label == "deny" || label.starts_with("deny ")
}

/// `allow`, `deny (reason)`, `shadow_deny (reason)`.
fn label(outcome: &str, reason: Option<&str>) -> String {
    match reason {
        Some(reason) if outcome != "allow" => format!("{outcome} ({reason})"),
        _ => outcome.to_string(),
    }
}

/// The recorded decisions, (stage, label), in the event's order.
pub fn recorded(event: &Value) -> Vec<(String, String)> {
    event
        .get("decisions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| {
            let stage = d.get("stage")?.as_str()?;
            let outcome = d.get("outcome")?.as_str()?;
            Some((
                stage.to_string(),
                label(outcome, d.get("reason").and_then(Value::as_str)),
            ))
        })
        .filter(|(stage, _)| !NOT_COMPARED.contains(&stage.as_str()))
        .collect()
}

/// The candidate's decisions from `explain`'s answer, (stage, label): a
/// refusal before routing as stage `request`, as events write it.
pub fn redecided(explained: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(reason) = explained["route"]["refused_before_routing"].as_str() {
        out.push(("request".to_string(), label("deny", Some(reason))));
    }
    for stage in explained["stages"].as_array().into_iter().flatten() {
        let Some(name) = stage["stage"].as_str() else {
            continue;
        };
        if NOT_COMPARED.contains(&name) || stage["ran"] != true {
            continue;
        }
        let outcome = stage["outcome"].as_str().unwrap_or_default();
        out.push((name.to_string(), label(outcome, stage["reason"].as_str())));
    }
    out
}

/// The stages whose decision differs; a stage on one side only was "not
/// run" on the other.
pub fn changes(old: &[(String, String)], new: &[(String, String)]) -> Vec<StageChange> {
    let mut stages: Vec<&str> = Vec::new();
    for (stage, _) in old.iter().chain(new) {
        if !stages.contains(&stage.as_str()) {
            stages.push(stage);
        }
    }
    let find = |list: &[(String, String)], stage: &str| {
        list.iter()
            .find(|(s, _)| s == stage)
            .map_or(NOT_RUN.to_string(), |(_, l)| l.clone())
    };
    stages
        .into_iter()
        .map(|stage| StageChange {
            stage: stage.to_string(),
            old: find(old, stage),
            new: find(new, stage),
        })
        .filter(|c| c.old != c.new)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn stages_are_compared_by_outcome_and_reason_and_rate_limits_are_not() {
        let event = json!({"decisions": [
            {"stage": "jwt", "mode": "enforce", "outcome": "allow"},
            {"stage": "tenant", "mode": "shadow", "outcome": "shadow_deny", "reason": "tenant_unknown"},
            {"stage": "ratelimit", "mode": "enforce", "outcome": "deny", "reason": "rate_limited"},
        ]});
        let explained = json!({"route": {"name": "r"}, "stages": [
            {"stage": "jwt", "ran": true, "outcome": "allow", "mode": "enforce"},
            {"stage": "tenant", "ran": true, "outcome": "deny", "mode": "enforce", "reason": "tenant_unknown"},
            {"stage": "ratelimit", "ran": true, "outcome": "allow", "mode": "enforce"},
        ]});
        let got = changes(&recorded(&event), &redecided(&explained));
        assert_eq!(
            got,
            [StageChange {
                stage: "tenant".into(),
                old: "shadow_deny (tenant_unknown)".into(),
                new: "deny (tenant_unknown)".into()
            }]
        );
        assert!(got[0].newly_denied(), "shadow to enforce denies now");
    }

    #[test]
    fn a_stage_that_runs_on_one_side_only_was_not_run_on_the_other() {
        let event =
            json!({"decisions": [{"stage": "jwt", "mode": "enforce", "outcome": "deny", "reason": "token_missing"}]});
        let explained = json!({"stages": [
            {"stage": "jwt", "ran": true, "outcome": "allow"},
            {"stage": "tenant", "ran": true, "outcome": "deny", "reason": "tenant_required"},
        ]});
        let got = changes(&recorded(&event), &redecided(&explained));
        assert_eq!(got.len(), 2);
        assert!(!got[0].newly_denied(), "jwt: denied before, allowed now");
        assert_eq!((got[1].old.as_str(), got[1].newly_denied()), (NOT_RUN, true));
    }

    #[test]
    fn a_refusal_before_routing_is_stage_request() {
        let explained =
            json!({"route": {"refused_before_routing": "path_invalid"}, "stages": [{"stage": "jwt", "ran": false}]});
        assert_eq!(
            redecided(&explained),
            [("request".to_string(), "deny (path_invalid)".to_string())]
        );
    }
}
