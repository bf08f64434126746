//! The audit event a request gives, for `tollgate explain`: the route's
//! event type and sample (core's compiled `Route::audit`, as the audit
//! stage reads it; the defaults' for a request refused before routing),
//! whether the event is kept, and where it is sent. Keeping follows
//! core's `audit::keep`: denials, shadow denials and admin operations
//! always; other requests by the sample, a draw explain does not make.

use serde_json::{json, Value};
use tollgate_core::audit::{EventType, Format, RouteAudit};
use tollgate_core::policy::{Policy, Route};
use tollgate_core::stage::StageName;

/// The `audit` part of the explanation. `refused`: a stage denied or
/// shadow-denied the request, or it was refused before any stage.
pub fn audit_json(policy: &Policy, route: Option<&Route>, refused: bool) -> Value {
    let Some(config) = &policy.audit else {
        return json!({"audited": false, "why": "the policy has no audit section"});
    };
    if !policy.stages.contains(&StageName::Audit) {
        return json!({"audited": false, "why": "the policy's stages leave audit out"});
    }
    let audit = route.map_or(policy.fallback.audit, |r| r.audit);
    let (kept, why) = kept(audit, refused);
    json!({
        "audited": true,
        "route": route.map(|r| r.name.clone()),
        "event_type": audit.event_type.as_str(),
        "sample": audit.sample,
        "kept": kept,
        "kept_because": why,
        "sink": {
            "format": format_name(config.sink.format),
            "cluster": (config.sink.format != Format::Log).then(|| config.sink.cluster.clone()),
            "sends": sends(config.sink.format, &config.sink.path, audit.event_type),
        },
    })
}

/// `always` or `sampled`, and why.
fn kept(audit: RouteAudit, refused: bool) -> (&'static str, String) {
    if audit.event_type == EventType::AdminOperation {
        return ("always", "admin operations are always kept".into());
    }
    if refused {
        return (
            "always",
            "refused: denials and shadow denials are always kept, whatever the sample".into(),
        );
    }
    if audit.sample >= 1.0 {
        return ("always", "every request of the route is kept: its sample is 1.0".into());
    }
    let why = format!(
        "allowed requests are kept with probability {:?}, the route's sample; \
         denials, shadow denials and admin operations always are",
        audit.sample
    );
    ("sampled", why)
}

fn format_name(format: Format) -> String {
    serde_json::to_value(format)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// What the stage does with a kept event.
fn sends(format: Format, path: &str, event_type: EventType) -> String {
    match format {
        Format::KafkaRest => format!(
            "POST {path}/topics/{} (Kafka REST), keyed by tenant",
            event_type.topic()
        ),
        Format::Jsonl => format!("POST {path} (JSON lines)"),
        Format::Otlp => format!("POST {path} (OTLP/HTTP JSON logs)"),
        Format::Log => "one line in Envoy's log".into(),
    }
}

/// Whether a stage record, or the route part, says the request was refused.
pub fn refused(route: &Value, stages: &[Value]) -> bool {
    route.get("refused_before_routing").is_some()
        || stages
            .iter()
            .any(|s| matches!(s["outcome"].as_str(), Some("deny" | "shadow_deny")))
}

/// The audit part as text lines.
pub fn text(audit: &Value) -> Vec<String> {
    if audit["audited"] != true {
        return vec![format!("audit: none ({})", audit["why"].as_str().unwrap_or_default())];
    }
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let kept = if audit["kept"] == "always" { "kept" } else { "sampled" };
    let route = match audit["route"].as_str() {
        Some(route) => format!("route {route}"),
        None => "the defaults: refused before routing".to_string(),
    };
    let sink = &audit["sink"];
    let cluster = sink["cluster"]
        .as_str()
        .map(|c| format!(", cluster '{c}'"))
        .unwrap_or_default();
    vec![
        format!(
            "audit: event type {} ({route}), sample {}: {kept} ({})",
            s(&audit["event_type"]),
            audit["sample"],
            s(&audit["kept_because"])
        ),
        format!("  sent: {}{cluster}, {}", s(&sink["format"]), s(&sink["sends"])),
    ]
}
