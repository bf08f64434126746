#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use super::*;
use std::collections::BTreeMap;
use tollgate_core::audit::{Decision, Event};
use tollgate_core::Mode;

fn event(tenant: Option<&str>, decisions: Vec<Decision>) -> Event {
    Event {
        schema_version: SCHEMA_VERSION,
        event_id: "0b6f3c3e-2f43-4a57-9a4c-1f0e6f5b8d21".into(),
        time: "2026-12-07T22:56:50.123456789Z".into(),
        event_type: EventType::ApiCall,
        service: Some("datahub".into()),
        namespace: Some("acme".into()),
        source_principal: None,
        source_ip: Some("10.0.0.7".into()),
        subject: Some("alice".into()),
        tenant: tenant.map(str::to_string),
        tier: None,
        roles: vec!["reader".into()],
        claims: serde_json::Map::new(),
        method: "GET".into(),
        method_overrides: Vec::new(),
        host: "api.example.com".into(),
        path: "/datahub/items?page=2".into(),
        route: Some("datahub".into()),
        status: 200,
        duration_ms: 1.25,
        request_bytes: 0,
        response_bytes: 512,
        request_id: None,
        trace_id: None,
        decisions,
        tenant_sources: Vec::new(),
        headers: BTreeMap::new(),
    }
}

fn allow(stage: &str) -> Decision {
    Decision::new(stage, Mode::Enforce, Outcome::Allow, None, None)
}

fn deny(stage: &str, reason: &str, detail: Option<&str>) -> Decision {
    Decision::new(stage, Mode::Enforce, Outcome::Deny, Some(reason), detail)
}

fn shadow(stage: &str, reason: &str) -> Decision {
    Decision::new(stage, Mode::Shadow, Outcome::ShadowDeny, Some(reason), None)
}

fn json(e: &Event) -> Vec<u8> {
    serde_json::to_vec(e).unwrap()
}

fn view(e: &Event) -> View {
    decode(&json(e)).unwrap()
}

fn record(value: Option<Vec<u8>>) -> Fetched {
    Fetched {
        topic: "audit-api-calls".into(),
        partition: 2,
        offset: 7,
        value,
    }
}

#[test]
fn decodes_the_events_the_stage_writes() {
    let e = event(Some("acme"), vec![allow("jwt"), deny("tenant", "tenant_unknown", None)]);
    let v = view(&e);
    assert_eq!(v.tenant.as_deref(), Some("acme"));
    assert_eq!(v.subject.as_deref(), Some("alice"));
    assert_eq!(
        (v.method.as_str(), v.path.as_str(), v.status),
        ("GET", "/datahub/items?page=2", 200)
    );
    assert_eq!(v.event_type, EventType::ApiCall);
    assert_eq!(v.decisions.len(), 2);
    assert_eq!(v.decisions[1].outcome, Outcome::Deny);
    assert_eq!(v.decisions[1].reason.as_deref(), Some("tenant_unknown"));
}

#[test]
fn unknown_schema_versions_and_other_values_are_errors() {
    let mut value: serde_json::Value = serde_json::to_value(event(None, vec![])).unwrap();
    value["schema_version"] = (SCHEMA_VERSION + 1).into();
    let e = decode(&serde_json::to_vec(&value).unwrap()).unwrap_err();
    assert!(e.contains(&format!("schema_version {}", SCHEMA_VERSION + 1)), "{e}");
    value["schema_version"] = "1".into();
    assert!(decode(&serde_json::to_vec(&value).unwrap())
        .unwrap_err()
        .contains("schema_version \"1\""));
    value["schema_version"] = SCHEMA_VERSION.into();
    value.as_object_mut().unwrap().remove("decisions");
    assert!(decode(&serde_json::to_vec(&value).unwrap())
        .unwrap_err()
        .contains("decisions"));
    assert!(decode(b"{\"a\":1}").unwrap_err().contains("no schema_version"));
    assert!(decode(b"not json").unwrap_err().starts_with("not an event"));
    assert!(decode(b"[1]").is_err());
}

#[test]
fn the_verdict_is_deny_over_shadow_deny_over_allow() {
    let both = event(
        None,
        vec![shadow("jwt", "token_missing"), deny("ratelimit", "rate_limited", None)],
    );
    assert_eq!(verdict(&view(&both)), Outcome::Deny);
    let shadowed = event(None, vec![allow("jwt"), shadow("tenant", "tenant_required")]);
    assert_eq!(verdict(&view(&shadowed)), Outcome::ShadowDeny);
    assert_eq!(verdict(&view(&event(None, vec![allow("jwt")]))), Outcome::Allow);
    assert_eq!(verdict(&view(&event(None, vec![]))), Outcome::Allow);
}

#[test]
fn filters_by_tenant_decision_and_event_type() {
    let acme_denied = view(&event(
        Some("acme"),
        vec![allow("jwt"), deny("tenant", "tenant_unknown", None)],
    ));
    let globex_allowed = view(&event(Some("globex"), vec![allow("jwt")]));
    let anonymous = view(&event(None, vec![deny("jwt", "token_missing", None)]));
    let all = Filter::default();
    assert!(all.keeps(&acme_denied) && all.keeps(&globex_allowed) && all.keeps(&anonymous));
    let acme = Filter {
        tenants: vec!["acme".into()],
        ..Filter::default()
    };
    assert!(acme.keeps(&acme_denied) && !acme.keeps(&globex_allowed) && !acme.keeps(&anonymous));
    let denied = Filter {
        decision: Some(Outcome::Deny),
        ..Filter::default()
    };
    assert!(denied.keeps(&acme_denied) && !denied.keeps(&globex_allowed) && denied.keeps(&anonymous));
    let acme_allowed = Filter {
        decision: Some(Outcome::Allow),
        ..acme
    };
    assert!(!acme_allowed.keeps(&acme_denied) && !acme_allowed.keeps(&globex_allowed));
    let mut admin = event(Some("acme"), vec![]);
    admin.event_type = EventType::AdminOperation;
    let by_type = Filter {
        event_type: Some(EventType::AdminOperation),
        ..Filter::default()
    };
    assert!(by_type.keeps(&view(&admin)) && !by_type.keeps(&globex_allowed));
}

#[test]
fn decisions_name_every_stage_and_dash_the_silent_ones() {
    let list = view(&event(None, vec![allow("jwt"), deny("tenant", "tenant_unknown", None)])).decisions;
    assert_eq!(decisions(&list), "jwt=allow tenant=deny(tenant_unknown) ratelimit=-");
    let limited = view(&event(
        None,
        vec![
            allow("jwt"),
            shadow("tenant", "tenant_required"),
            deny("ratelimit", "rate_limited", Some("per-tenant")),
        ],
    ))
    .decisions;
    assert_eq!(
        decisions(&limited),
        "jwt=allow tenant=shadow_deny(tenant_required) ratelimit=deny(rate_limited:per-tenant)"
    );
    let early = view(&event(None, vec![deny("request", "path_invalid", None)])).decisions;
    assert_eq!(
        decisions(&early),
        "jwt=- tenant=- ratelimit=- request=deny(path_invalid)"
    );
}

#[test]
fn lines_are_aligned_and_carry_every_field() {
    let mut widths = Widths::default();
    let mut short = event(Some("acme"), vec![allow("jwt")]);
    short.subject = Some("al".into());
    let mut long = event(Some("initech"), vec![deny("jwt", "token_missing", None)]);
    long.method = "DELETE".into();
    long.status = 401;
    let a = line(&view(&short), &mut widths);
    let b = line(&view(&long), &mut widths);
    assert_eq!(
        a,
        "2026-12-07 22:56:50.123  acme      al            GET     /datahub/items?page=2     200  jwt=allow tenant=- ratelimit=-"
    );
    assert_eq!(a.find("/datahub"), b.find("/datahub"), "{a}\n{b}");
    assert_eq!(a.find("200"), b.find("401"), "{a}\n{b}");
    assert!(
        b.contains("initech") && b.contains("DELETE") && b.ends_with("jwt=deny(token_missing) tenant=- ratelimit=-")
    );
}

#[test]
fn columns_grow_to_the_longest_value_up_to_a_cap() {
    let mut widths = Widths::default();
    let mut wide = event(Some("a-tenant-with-a-long-id"), vec![]);
    wide.path = format!("/{}", "p".repeat(100));
    let first = line(&view(&wide), &mut widths);
    let next = line(&view(&event(Some("acme"), vec![])), &mut widths);
    // The tenant (within its cap) widens its column; the path (past its) does not.
    assert_eq!(first.find("alice"), next.find("alice"), "{first}\n{next}");
    assert_eq!(next.find(" 200 ").unwrap() - next.find("/datahub").unwrap(), 24 + 1);
}

#[test]
fn control_characters_are_escaped_in_lines() {
    let mut e = event(Some("acme"), vec![]);
    e.subject = Some("eve\u{1b}[2J".into());
    e.path = "/a\u{9b}b".into();
    let l = line(&view(&e), &mut Widths::default());
    assert!(!l.chars().any(char::is_control), "{l:?}");
    assert!(l.contains("eve\\u{1b}[2J") && l.contains("/a\\u{9b}b"), "{l}");
}

#[test]
fn short_time_keeps_milliseconds() {
    assert_eq!(short_time("2026-12-07T22:56:50.123456789Z"), "2026-12-07 22:56:50.123");
    assert_eq!(short_time("2026-12-07T22:56:50.1Z"), "2026-12-07 22:56:50.1");
    assert_eq!(short_time("2026-12-07T22:56:50Z"), "2026-12-07 22:56:50");
    assert_eq!(short_time("yesterday"), "yesterday");
}

#[test]
fn json_output_is_the_value_unchanged_one_a_line() {
    let e = event(Some("acme"), vec![allow("jwt")]);
    let value = json(&e);
    let out = output(
        &record(Some(value.clone())),
        &Filter::default(),
        true,
        &mut Widths::default(),
    );
    assert_eq!(out, Output::Print(String::from_utf8(value).unwrap()));
    let pretty = serde_json::to_vec_pretty(&e).unwrap();
    let Output::Print(l) = output(
        &record(Some(pretty.clone())),
        &Filter::default(),
        true,
        &mut Widths::default(),
    ) else {
        panic!("not printed");
    };
    assert!(!l.contains('\n'));
    let back: serde_json::Value = serde_json::from_str(&l).unwrap();
    assert_eq!(back, serde_json::from_slice::<serde_json::Value>(&pretty).unwrap());
}

#[test]
fn records_give_lines_skips_or_warnings() {
    let value = json(&event(Some("acme"), vec![allow("jwt")]));
    let mut widths = Widths::default();
    let Output::Print(l) = output(&record(Some(value.clone())), &Filter::default(), false, &mut widths) else {
        panic!("not printed");
    };
    assert!(l.contains("acme") && l.contains("jwt=allow"));
    let globex = Filter {
        tenants: vec!["globex".into()],
        ..Filter::default()
    };
    assert_eq!(output(&record(Some(value)), &globex, false, &mut widths), Output::Skip);
    let warn = |r: Fetched| match output(&r, &Filter::default(), false, &mut Widths::default()) {
        Output::Warn(w) => w,
        other => panic!("{other:?}"),
    };
    assert!(warn(record(None)).starts_with("audit-api-calls/2@7: "));
    assert!(warn(record(Some(b"{\"schema_version\":9}".to_vec()))).contains("schema_version 9"));
    assert!(warn(record(Some(vec![0xff, 0xfe]))).contains("not an event"));
}

#[test]
fn topics_default_to_the_event_types_topics() {
    let all: Vec<String> = EventType::ALL.iter().map(|t| t.topic().to_string()).collect();
    assert_eq!(topics(&[], None), all);
    assert_eq!(all.len(), 4);
    assert_eq!(
        topics(&[], Some(EventType::DataAccess)),
        vec![EventType::DataAccess.topic().to_string()]
    );
    assert_eq!(
        topics(&["mine".into()], Some(EventType::DataAccess)),
        vec!["mine".to_string()]
    );
}

#[test]
fn parses_brokers_outcomes_and_event_types() {
    assert_eq!(parse_brokers("a:1, b:2,").unwrap(), vec!["a:1", "b:2"]);
    assert!(parse_brokers(" , ").unwrap_err().contains("no broker"));
    assert!(parse_brokers("a:1,b").unwrap_err().contains("'b'"));
    assert_eq!(parse_outcome("shadow_deny").unwrap(), Outcome::ShadowDeny);
    assert!(parse_outcome("denied").is_err());
    for t in EventType::ALL {
        assert_eq!(parse_event_type(t.as_str()).unwrap(), t);
    }
    assert!(parse_event_type("api").unwrap_err().contains("api_call"));
}

#[test]
fn a_polls_records_go_in_event_time_order_and_align() {
    let mut late = event(Some("acme"), vec![allow("jwt")]);
    late.time = "2026-12-07T22:56:51.000000000Z".into();
    let mut early = event(Some("acme"), vec![allow("jwt")]);
    early.time = "2026-12-07T22:56:50.000000000Z".into();
    early.subject = None;
    late.subject = Some("someone@example.com".into());
    let records = [
        record(Some(json(&late))),
        record(Some(json(&early))),
        record(Some(b"junk".to_vec())),
    ];
    let mut widths = Widths::default();
    let order = arrange(&records, &Filter::default(), &mut widths);
    let values: Vec<&[u8]> = order.iter().map(|r| r.value.as_deref().unwrap()).collect();
    assert_eq!(values, [b"junk".as_slice(), &json(&early), &json(&late)]);
    // The first line printed already leaves room for the later, wider subject.
    let first = line(&view(&early), &mut widths);
    let second = line(&view(&late), &mut widths);
    assert_eq!(first.find("GET"), second.find("GET"), "{first}\n{second}");
}

#[test]
fn an_empty_path_shows_as_a_dash() {
    let mut e = event(None, vec![deny("request", "path_invalid", None)]);
    e.path = String::new();
    let l = line(&view(&e), &mut Widths::default());
    assert!(l.contains("  GET     -  "), "{l}");
}
