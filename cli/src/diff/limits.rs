//! Rate limit changes in words: limits by name (names are unique across
//! the policy), wherever they are defined, and the `ratelimit` section,
//! each compared with the defaults core applies, so that writing a
//! default out is no change.

use serde_json::Value;

/// What the ratelimit stage is called in change lines.
const FILTER: &str = "ratelimit";

/// Every limit of a policy: (name, where, definition), in file order.
fn all_limits(policy: &Value) -> Vec<(String, String, Value)> {
    let listed = |list: &Value, at: &str| -> Vec<(String, String, Value)> {
        list.as_array()
            .into_iter()
            .flatten()
            .map(|l| (l["name"].as_str().unwrap_or("?").to_string(), at.to_string(), l.clone()))
            .collect()
    };
    let mut out = listed(&policy["defaults"]["limits"], "defaults");
    for route in policy["routes"].as_array().into_iter().flatten() {
        let at = format!("route {}", route["name"].as_str().unwrap_or("?"));
        out.extend(listed(&route["limits"], &at));
    }
    out
}

/// Added, removed, moved and changed limits.
pub fn limit_changes(old: &Value, new: &Value) -> Vec<String> {
    let (old, new) = (all_limits(old), all_limits(new));
    let find = |all: &[(String, String, Value)], name: &str| all.iter().find(|(n, _, _)| n == name).cloned();
    let mut out = Vec::new();
    for (name, at, _) in old.iter().filter(|(n, _, _)| find(&new, n).is_none()) {
        out.push(format!("limit {name} ({at}): removed ({FILTER})"));
    }
    for (name, at, limit) in &new {
        let Some((_, was_at, before)) = find(&old, name) else {
            out.push(format!("limit {name} ({at}): added, {} ({FILTER})", summary(limit)));
            continue;
        };
        if was_at != *at {
            out.push(format!("limit {name}: moves from {was_at} to {at}"));
        }
        out.extend(
            changes(&before, limit)
                .into_iter()
                .map(|c| format!("limit {name} ({at}): {c}")),
        );
    }
    out
}

fn rate(limit: &Value) -> String {
    format!("{}/{}", limit["requests"], text(&limit["period"], "second"))
}

fn key(limit: &Value) -> String {
    let parts: Vec<&str> = limit["key"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    format!("[{}]", parts.join(", "))
}

fn summary(limit: &Value) -> String {
    format!(
        "{} per key {}, burst {}, {}, {}",
        rate(limit),
        key(limit),
        number(&limit["burst"], 0),
        text(&limit["scope"], "local"),
        text(&limit["mode"], "enforce")
    )
}

/// A string field, or its default when unset.
fn text(value: &Value, default: &str) -> String {
    value.as_str().unwrap_or(default).to_string()
}

fn number(value: &Value, default: u64) -> u64 {
    value.as_u64().unwrap_or(default)
}

/// Each changed field of one limit, in words.
fn changes(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = |what: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{what}{a} -> {b}"));
        }
    };
    field("", rate(old), rate(new));
    field(
        "burst ",
        number(&old["burst"], 0).to_string(),
        number(&new["burst"], 0).to_string(),
    );
    field("key ", key(old), key(new));
    field("scope ", text(&old["scope"], "local"), text(&new["scope"], "local"));
    field("mode ", text(&old["mode"], "enforce"), text(&new["mode"], "enforce"));
    out.extend(overrides("tier", &old["tiers"], &new["tiers"]));
    out.extend(overrides("tenant", &old["tenants"], &new["tenants"]));
    out
}

/// `tiers` or `tenants` entries added, removed or changed.
fn overrides(what: &str, old: &Value, new: &Value) -> Vec<String> {
    let entries = |v: &Value| -> Vec<(String, Value)> {
        v.as_object()
            .into_iter()
            .flatten()
            .map(|(k, n)| (k.clone(), n.clone()))
            .collect()
    };
    let (old, new) = (entries(old), entries(new));
    let find = |all: &[(String, Value)], k: &str| all.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut out = Vec::new();
    for (k, n) in &old {
        match find(&new, k) {
            None => out.push(format!("{what} {k}'s override removed (was {n})")),
            Some(m) if m != *n => out.push(format!("{what} {k}'s override {n} -> {m}")),
            _ => {}
        }
    }
    for (k, n) in new.iter().filter(|(k, _)| find(&old, k).is_none()) {
        out.push(format!("{what} {k}'s override added ({n})"));
    }
    out
}

/// The `ratelimit` section's settings, each with the default core applies.
const SETTINGS: &[(&str, &[&str], &str)] = &[
    ("answer headers", &["headers"], "ietf"),
    ("X-Forwarded-For trusted hops", &["client_ip", "xff_trusted_hops"], "0"),
    ("slots per limit", &["slots_per_limit"], "10000"),
];

const SERVICE: &[(&str, &str, &str)] = &[
    ("cluster", "cluster", ""),
    ("domain", "domain", "tollgate"),
    ("timeout (ms)", "timeout_ms", "20"),
    ("failure mode", "failure_mode", "allow"),
];

/// Changes to the `ratelimit` section.
pub fn section_changes(old: &Value, new: &Value) -> Vec<String> {
    let (old, new) = (&old["ratelimit"], &new["ratelimit"]);
    let mut out = Vec::new();
    for (what, path, default) in SETTINGS {
        let get = |v: &Value| path.iter().fold(v, |v, k| &v[*k]).clone();
        let (a, b) = (setting(&get(old), default), setting(&get(new), default));
        if a != b {
            out.push(format!("ratelimit: {what} {a} -> {b} ({FILTER})"));
        }
    }
    let (a, b) = (&old["service"], &new["service"]);
    match (a.is_object(), b.is_object()) {
        (false, true) => out.push(format!("ratelimit: service added, {} ({FILTER})", service(b))),
        (true, false) => out.push(format!("ratelimit: service removed, was {} ({FILTER})", service(a))),
        (true, true) => {
            for (what, k, default) in SERVICE {
                let (x, y) = (setting(&a[*k], default), setting(&b[*k], default));
                if x != y {
                    out.push(format!("ratelimit: service {what} {x} -> {y} ({FILTER})"));
                }
            }
        }
        (false, false) => {}
    }
    out
}

fn setting(value: &Value, default: &str) -> String {
    match value {
        Value::Null => default.to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn service(s: &Value) -> String {
    let words: Vec<String> = SERVICE
        .iter()
        .map(|(what, k, default)| format!("{what} {}", setting(&s[*k], default)))
        .collect();
    words.join(", ")
}
