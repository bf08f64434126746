//! A case's expectations against explain's answer: one difference per
//! field that disagrees, in the words `tollgate test` prints.

use super::file::Expect;
use serde_json::{json, Value};

/// `field: want W, got G`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub field: String,
    pub want: String,
    pub got: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: want {}, got {}", self.field, self.want, self.got)
    }
}

/// Every listed expectation the explanation `e` does not meet.
pub fn compare(expect: &Expect, e: &Value) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut differs = |field: String, want: String, got: String| {
        if want != got {
            out.push(Difference { field, want, got });
        }
    };
    if let Some(want) = expect.status {
        differs("status".into(), want.to_string(), status(e));
    }
    if let Some(want) = &expect.reason {
        differs("reason".into(), want.clone(), reason(e));
    }
    if let Some(want) = &expect.route {
        differs("route".into(), want.clone(), route(e));
    }
    for (name, want) in &expect.stages {
        let got = stage(e, name);
        // A want without a reason accepts any reason of its outcome.
        let got = match (&want.reason, got.split_once(' ')) {
            (None, Some((outcome, _))) if outcome == want.outcome => want.to_string(),
            _ => got,
        };
        differs(format!("stages.{name}"), want.to_string(), got);
    }
    for (name, want) in &expect.upstream_headers {
        let want = want.as_deref().map_or("absent".to_string(), quoted);
        differs(format!("upstream_headers.{name}"), want, upstream(e, name));
    }
    out
}

/// A local reply's status; 200 for a request let through, which is what
/// the application answers offline (the demo's echo does).
fn status(e: &Value) -> String {
    let answer = &e["answer"];
    match answer["kind"].as_str() {
        Some("local_reply") => answer["status"].to_string(),
        Some("forwarded") => "200".to_string(),
        _ => format!(
            "no answer ({})",
            answer["detail"].as_str().unwrap_or("the request still waits")
        ),
    }
}

fn reason(e: &Value) -> String {
    e["answer"]["reason"].as_str().unwrap_or("none").to_string()
}

fn route(e: &Value) -> String {
    let route = &e["route"];
    match (route["name"].as_str(), route["refused_before_routing"].as_str()) {
        (Some(name), _) => name.to_string(),
        (None, Some(reason)) => format!("none (refused before routing: {reason})"),
        (None, None) => "none".to_string(),
    }
}

/// `OUTCOME [REASON]` as explain's stage record has it.
fn stage(e: &Value, name: &str) -> String {
    let stages = e["stages"].as_array().cloned().unwrap_or_default();
    let Some(record) = stages.iter().find(|s| s["stage"] == name) else {
        return "not in the pipeline".to_string();
    };
    if record["ran"] != true {
        return "not_run".to_string();
    }
    let outcome = record["outcome"].as_str().unwrap_or("unknown");
    match record["reason"].as_str() {
        Some(reason) => format!("{outcome} {reason}"),
        None => outcome.to_string(),
    }
}

/// The header's values the application receives (joined as a proxy
/// joins them), or `absent`, also when nothing reaches the application.
fn upstream(e: &Value, name: &str) -> String {
    let values: Vec<&str> = e["upstream"]["receives"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h[0] == name)
        .filter_map(|h| h[1].as_str())
        .collect();
    if values.is_empty() {
        "absent".to_string()
    } else {
        quoted(&values.join(", "))
    }
}

fn quoted(value: &str) -> String {
    json!(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::compare;
    use crate::cases::file::{Expect, StageWant};
    use serde_json::json;

    fn expect_stage(name: &str, want: &str) -> Expect {
        Expect {
            status: None,
            reason: None,
            route: None,
            stages: [(name.to_string(), StageWant::try_from(want.to_string()).unwrap())].into(),
            upstream_headers: Default::default(),
        }
    }

    #[test]
    fn an_outcome_without_a_reason_accepts_any_reason_of_it() {
        let e = json!({"stages": [
            {"stage": "jwt", "ran": true, "outcome": "allow"},
            {"stage": "tenant", "ran": true, "outcome": "deny", "reason": "tenant_unknown"},
            {"stage": "ratelimit", "ran": false},
        ]});
        let fields = |name: &str, want: &str| -> Vec<String> {
            compare(&expect_stage(name, want), &e)
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert!(fields("tenant", "deny").is_empty());
        assert!(fields("tenant", "deny tenant_unknown").is_empty());
        assert_eq!(
            fields("tenant", "shadow_deny"),
            ["stages.tenant: want shadow_deny, got deny tenant_unknown"]
        );
        assert_eq!(
            fields("tenant", "deny tenant_suspended"),
            ["stages.tenant: want deny tenant_suspended, got deny tenant_unknown"]
        );
        assert!(fields("ratelimit", "not_run").is_empty());
        assert_eq!(fields("jwt", "deny"), ["stages.jwt: want deny, got allow"]);
    }

    #[test]
    fn stage_wants_are_outcome_and_one_reason() {
        for bad in ["", "maybe", "allow token_missing", "deny a b", "not_run x"] {
            assert!(StageWant::try_from(bad.to_string()).is_err(), "{bad}");
        }
        let want = StageWant::try_from("shadow_deny  tenant_required".to_string()).unwrap();
        assert_eq!(want.to_string(), "shadow_deny tenant_required");
    }
}
