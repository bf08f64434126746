//! Audit changes in words: the `audit` section (sink, batching, what
//! events carry) and each route's event type and sample, each compared
//! with the default core applies, so that writing a default out is no
//! change. A route's audit is its own `audit`, else `defaults.audit`, whole.

use serde_json::Value;
use tollgate_core::audit::{EventType, Format};

/// What the audit stage is called in change lines.
const FILTER: &str = "audit";

/// The section's settings outside the sink: (words, key, default).
const SETTINGS: &[(&str, &str, &str)] = &[
    ("batch size", "batch_size", "100"),
    ("flush interval (ms)", "flush_interval_ms", "1000"),
    ("buffer (events per worker)", "buffer_events", "10000"),
    ("capture headers", "capture_headers", "[]"),
    ("query", "query", "drop"),
    ("redact params", "redact_params", "[]"),
];

/// The sink's settings but `path`, whose default follows the format.
const SINK: &[(&str, &str, &str)] = &[
    ("format", "format", "jsonl"),
    ("cluster", "cluster", "(none)"),
    ("timeout (ms)", "timeout_ms", "1000"),
];

/// Changes to the `audit` section.
pub fn section_changes(old: &Value, new: &Value) -> Vec<String> {
    let (old, new) = (&old["audit"], &new["audit"]);
    match (old.is_object(), new.is_object()) {
        (false, true) => vec![format!("audit: added, {} ({FILTER})", summary(new))],
        (true, false) => vec![format!(
            "audit: removed, was {}; no event is recorded ({FILTER})",
            summary(old)
        )],
        (true, true) => settings(old, new),
        (false, false) => Vec::new(),
    }
}

/// Each setting as `(words, value)`, defaults applied, sink first.
fn values(audit: &Value) -> Vec<(String, String)> {
    let sink = &audit["sink"];
    let mut out: Vec<(String, String)> = SINK
        .iter()
        .map(|(what, k, default)| (format!("sink {what}"), setting(&sink[*k], default)))
        .collect();
    out.insert(2, ("sink path".to_string(), sink_path(sink)));
    out.extend(
        SETTINGS
            .iter()
            .map(|(what, k, default)| (what.to_string(), setting(&audit[*k], default))),
    );
    out
}

fn settings(old: &Value, new: &Value) -> Vec<String> {
    values(old)
        .into_iter()
        .zip(values(new))
        .filter(|((_, a), (_, b))| a != b)
        .map(|((what, a), (_, b))| format!("audit: {what} {a} -> {b} ({FILTER})"))
        .collect()
}

fn summary(audit: &Value) -> String {
    let words: Vec<String> = values(audit)
        .into_iter()
        .map(|(what, v)| format!("{what} {v}"))
        .collect();
    words.join(", ")
}

/// The POST path, or the format's default (`(none)` for Kafka REST's
/// empty base and for `log`, which posts nothing).
fn sink_path(sink: &Value) -> String {
    let format: Format = serde_json::from_value(sink["format"].clone()).unwrap_or_default();
    let path = sink["path"].as_str().unwrap_or(format.default_path());
    if path.is_empty() {
        "(none)".to_string()
    } else {
        path.to_string()
    }
}

/// A list as `[a, b]`, a string as is, anything else as JSON; `default`
/// when unset.
fn setting(value: &Value, default: &str) -> String {
    match value {
        Value::Null => default.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|i| setting(i, "")).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// A route's event type and sample, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RouteAudit {
    event_type: EventType,
    sample: f64,
}

impl RouteAudit {
    fn of(doc: &Value) -> RouteAudit {
        RouteAudit {
            event_type: serde_json::from_value(doc["event_type"].clone()).unwrap_or_default(),
            sample: doc["sample"].as_f64().unwrap_or(1.0),
        }
    }

    fn words(self) -> String {
        format!("{}, sample {:?}", self.event_type.as_str(), self.sample)
    }
}

/// Each route's audit (and the defaults', for requests no route matches)
/// by name: `("defaults", ...)` first, then the routes in file order.
fn route_audits(policy: &Value) -> Vec<(String, RouteAudit)> {
    let defaults = &policy["defaults"]["audit"];
    let mut out = vec![("defaults".to_string(), RouteAudit::of(defaults))];
    for route in policy["routes"].as_array().into_iter().flatten() {
        let own = &route["audit"];
        let audit = RouteAudit::of(if own.is_object() { own } else { defaults });
        let name = format!("route {}", route["name"].as_str().unwrap_or("?"));
        out.push((name, audit));
    }
    out
}

/// Event type and sample changes per route, while the policy audits. A
/// route newly audited (or new) is named when it is not an `api_call`
/// kept whole; the routes' own added or removed lines say the rest.
pub fn route_changes(old: &Value, new: &Value) -> Vec<String> {
    if !new["audit"].is_object() {
        return Vec::new();
    }
    let before = if old["audit"].is_object() {
        route_audits(old)
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    for (name, now) in route_audits(new) {
        match before.iter().find(|(n, _)| *n == name).map(|(_, a)| *a) {
            None if now != RouteAudit::of(&Value::Null) => {
                out.push(format!("{name}: audited as {} ({FILTER})", now.words()));
            }
            None => {}
            Some(was) => out.extend(route_change(&name, was, now)),
        }
    }
    out
}

fn route_change(name: &str, was: RouteAudit, now: RouteAudit) -> Vec<String> {
    let mut out = Vec::new();
    if was.event_type != now.event_type {
        out.push(format!(
            "{name}: audit event type {} -> {} ({FILTER})",
            was.event_type.as_str(),
            now.event_type.as_str()
        ));
    }
    if was.sample != now.sample {
        out.push(format!(
            "{name}: audit sample {:?} -> {:?} of allowed requests; denials are always kept ({FILTER})",
            was.sample, now.sample
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn policy(audit: Value, routes: Value) -> Value {
        json!({"version": 1, "audit": audit, "routes": routes})
    }

    #[test]
    fn defaults_written_out_are_no_change_and_each_setting_is_named() {
        let old = json!({"sink": {"cluster": "sink"}});
        let written = json!({"sink": {"format": "jsonl", "cluster": "sink", "path": "/events", "timeout_ms": 1000},
            "batch_size": 100, "flush_interval_ms": 1000, "buffer_events": 10000,
            "capture_headers": [], "query": "drop", "redact_params": []});
        assert_eq!(
            section_changes(&json!({"audit": old}), &json!({"audit": written})),
            Vec::<String>::new()
        );
        let new = json!({"sink": {"format": "kafka-rest", "cluster": "kafka", "timeout_ms": 500},
            "batch_size": 50, "capture_headers": ["user-agent"], "query": "keep", "redact_params": ["password"]});
        assert_eq!(
            section_changes(&json!({"audit": old}), &json!({"audit": new})),
            [
                "audit: sink format jsonl -> kafka-rest (audit)",
                "audit: sink cluster sink -> kafka (audit)",
                "audit: sink path /events -> (none) (audit)",
                "audit: sink timeout (ms) 1000 -> 500 (audit)",
                "audit: batch size 100 -> 50 (audit)",
                "audit: capture headers [] -> [user-agent] (audit)",
                "audit: query drop -> keep (audit)",
                "audit: redact params [] -> [password] (audit)",
            ]
        );
    }

    #[test]
    fn a_section_added_or_removed_is_summed_up() {
        let none = json!({"version": 1});
        let logged = json!({"version": 1, "audit": {"sink": {"format": "log"}}});
        let summary = "sink format log, sink cluster (none), sink path (none), sink timeout (ms) 1000, \
                       batch size 100, flush interval (ms) 1000, buffer (events per worker) 10000, \
                       capture headers [], query drop, redact params []";
        assert_eq!(
            section_changes(&none, &logged),
            [format!("audit: added, {summary} (audit)")]
        );
        assert_eq!(
            section_changes(&logged, &none),
            [format!("audit: removed, was {summary}; no event is recorded (audit)")]
        );
    }

    #[test]
    fn routes_compare_their_own_audit_or_the_defaults() {
        let audit = json!({"sink": {"format": "log"}});
        let routes = json!([
            {"name": "datahub", "audit": {"event_type": "data_access"}},
            {"name": "superset"},
        ]);
        let mut old = policy(audit.clone(), routes.clone());
        old["defaults"] = json!({"audit": {"event_type": "api_call"}});
        let mut new = policy(audit, routes);
        new["defaults"] = json!({"audit": {"sample": 0.5}});
        new["routes"][0]["audit"] = json!({"event_type": "admin_operation", "sample": 1.0});
        assert_eq!(
            route_changes(&old, &new),
            [
                "defaults: audit sample 1.0 -> 0.5 of allowed requests; denials are always kept (audit)",
                "route datahub: audit event type data_access -> admin_operation (audit)",
                "route superset: audit sample 1.0 -> 0.5 of allowed requests; denials are always kept (audit)",
            ]
        );
    }

    #[test]
    fn routes_newly_audited_are_named_unless_plain_api_calls() {
        let routes = json!([
            {"name": "datahub", "audit": {"event_type": "data_access"}},
            {"name": "services"},
        ]);
        let old = json!({"version": 1, "routes": [{"name": "datahub"}, {"name": "services"}]});
        let new = policy(json!({"sink": {"format": "log"}}), routes);
        assert_eq!(
            route_changes(&old, &new),
            ["route datahub: audited as data_access, sample 1.0 (audit)"]
        );
        assert_eq!(
            route_changes(&new, &old),
            Vec::<String>::new(),
            "the section's removal says it"
        );
    }
}
