use super::*;
use crate::policy::Policy;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn policy() -> Policy {
    let doc = serde_json::json!({
        "version": 1,
        "defaults": {"tenant": {"required": false}},
        "routes": [
            {"name": "datahub", "match": {"prefix": "/api/datahub"}, "tenant": {"required": true}},
            {"name": "trino", "match": {"prefix": "/api/trino"}, "tenant": {"required": true, "missing_status": 401}},
            {"name": "superset", "match": {"prefix": "/api/superset"}, "tenant": {"required": true, "mode": "shadow"}},
        ],
        "tenants": [
            {"id": "STD-001", "tier": "premium"},
            {"id": "NED-001", "tier": "standard", "routes": ["datahub"]},
            {"id": "OLD-001", "status": "suspended"},
        ],
        "tenant": {
            "sources": ["claim", "header", "host", "path"],
            "host": "{tenant}.tenants.example.com",
            "path_prefix": "/t/{tenant}",
        },
    });
    Policy::from_json(doc.to_string().as_bytes()).unwrap()
}

struct Req<'a> {
    path: &'a str,
    host: &'a str,
    claim: Option<&'a str>,
    headers: Vec<&'a str>,
}

fn req(path: &str) -> Req<'_> {
    Req {
        path,
        host: "api.example.com",
        claim: None,
        headers: vec![],
    }
}

impl Req<'_> {
    fn decide(&self, policy: &Policy) -> Result<Option<String>, &'static str> {
        let values: Vec<&[u8]> = self.headers.iter().map(|h| h.as_bytes()).collect();
        let request = TenantRequest {
            head: RequestHead {
                method: "GET",
                host: self.host,
                path: self.path,
            },
            claim: self.claim.map(str::as_bytes),
            header_values: &values,
            jwt_shadow_denied: false,
        };
        match decide(policy, &request).verdict {
            Ok(found) => Ok(found.map(|r| r.tenant.id.clone())),
            Err(denial) => Err(denial.denial().reason),
        }
    }
}

#[test]
fn every_outcome() {
    let p = policy();
    let long = "A".repeat(65);
    let with = |path, header| Req {
        headers: vec![header],
        ..req(path)
    };
    let cases: Vec<(Req, Result<Option<String>, &str>)> = vec![
        (with("/api/datahub", "STD-001"), Ok(Some("STD-001".into()))),
        (with("/api/datahub", "std-001"), Ok(Some("STD-001".into()))),
        (with("/api/datahub", " STD-001 "), Ok(Some("STD-001".into()))),
        (req("/api/datahub"), Err("tenant_required")),
        (req("/other"), Ok(None)),
        (with("/api/datahub", "NOPE-9"), Err("tenant_unknown")),
        (with("/api/datahub", "OLD-001"), Err("tenant_suspended")),
        (with("/api/trino", "NED-001"), Err("tenant_route_forbidden")),
        (with("/api/datahub", "NED-001"), Ok(Some("NED-001".into()))),
        (with("/api/datahub", "bad id!"), Err("tenant_invalid")),
        (with("/api/datahub", &long), Err("tenant_invalid")),
        (with("/api/datahub", ""), Err("tenant_invalid")),
    ];
    for (i, (r, want)) in cases.into_iter().enumerate() {
        assert_eq!(r.decide(&p), want, "case {i}: {:?} {:?}", r.path, r.headers);
    }
}

#[test]
fn sources_that_disagree_are_a_mismatch() {
    let p = policy();
    let claim_vs_header = Req {
        claim: Some("STD-001"),
        headers: vec!["NED-001"],
        ..req("/api/datahub")
    };
    assert_eq!(claim_vs_header.decide(&p), Err("tenant_mismatch"));
    let two_headers = Req {
        headers: vec!["STD-001", "NED-001"],
        ..req("/api/datahub")
    };
    assert_eq!(two_headers.decide(&p), Err("tenant_mismatch"));
    let host_vs_header = Req {
        host: "ned-001.tenants.example.com",
        headers: vec!["STD-001"],
        ..req("/api/datahub")
    };
    assert_eq!(host_vs_header.decide(&p), Err("tenant_mismatch"));
    let agreeing = Req {
        claim: Some("STD-001"),
        host: "std-001.tenants.example.com",
        headers: vec!["std-001"],
        ..req("/t/STD-001/api/datahub")
    };
    assert_eq!(agreeing.decide(&p), Ok(Some("STD-001".into())));
}

#[test]
fn each_source_alone_works() {
    let p = policy();
    let claim = Req {
        claim: Some("STD-001"),
        ..req("/api/datahub")
    };
    let host = Req {
        host: "std-001.tenants.example.com",
        ..req("/api/datahub")
    };
    let path = req("/t/STD-001/api/datahub");
    for r in [claim, host, path] {
        assert_eq!(r.decide(&p), Ok(Some("STD-001".into())), "{} {}", r.host, r.path);
    }
    // The host must be exactly one label before the pattern's domain.
    let deeper = Req {
        host: "x.std-001.tenants.example.com",
        ..req("/api/datahub")
    };
    assert_eq!(deeper.decide(&p), Err("tenant_required"));
}

#[test]
fn the_path_prefix_is_routed_on_what_follows() {
    let p = policy();
    // Routed as /api/trino, which NED-001 may not use.
    assert_eq!(req("/t/NED-001/api/trino").decide(&p), Err("tenant_route_forbidden"));
    assert_eq!(p.route_path("/t/NED-001"), "/");
    assert_eq!(p.route_path("/t/"), "/t/");
}

#[test]
fn missing_status_and_shadow_follow_the_route() {
    let p = policy();
    let head = |path| RequestHead {
        method: "GET",
        host: "h",
        path,
    };
    let trino = decide(
        &p,
        &TenantRequest {
            head: head("/api/trino"),
            claim: None,
            header_values: &[],
            jwt_shadow_denied: false,
        },
    );
    assert_eq!(
        trino.action(),
        Action::Deny(TenantDenial::Required { status: 401 }.denial())
    );
    assert_eq!(trino.metric(), "tollgate.tenant.denied.tenant_required");
    let superset = decide(
        &p,
        &TenantRequest {
            head: head("/api/superset"),
            claim: None,
            header_values: &[b"OLD-001"],
            jwt_shadow_denied: false,
        },
    );
    assert_eq!(superset.action(), Action::ShadowDeny(TenantDenial::Suspended.denial()));
    assert_eq!(superset.metric(), "tollgate.tenant.shadow_denied.tenant_suspended");
    let record: serde_json::Value = serde_json::from_slice(&superset.record()).unwrap();
    assert_eq!(
        record,
        serde_json::json!({"filter": "tenant", "route": "superset", "mode": "shadow", "outcome": "shadow_deny", "reason": "tenant_suspended"})
    );
}

#[test]
fn every_decision_counts_by_index_into_its_name() {
    let p = policy();
    let names = metric_names();
    let route = |path| {
        p.route(&RequestHead {
            method: "GET",
            host: "h",
            path,
        })
    };
    let (enforce, shadow) = (route("/api/datahub"), route("/api/superset"));
    assert_eq!((enforce.tenant.mode, shadow.tenant.mode), (Mode::Enforce, Mode::Shadow));
    let resolved = Resolved {
        tenant: p.tenants.get("std-001").unwrap(),
        source: TenantSource::Header,
    };
    let mut verdicts = vec![Ok(None), Ok(Some(resolved))];
    verdicts.extend(TenantDenial::ALL.map(Err));
    verdicts.push(Err(TenantDenial::Required { status: 401 }));
    let mut seen = std::collections::HashSet::new();
    for (route, forced_shadow) in [(enforce, false), (enforce, true), (shadow, false)] {
        for verdict in &verdicts {
            let d = TenantDecision {
                route,
                verdict: *verdict,
                forced_shadow,
                shadow_header: ShadowHeader::AsSent,
            };
            assert_eq!(names[d.metric_index()], d.metric(), "{verdict:?} {forced_shadow}");
            seen.insert(d.metric_index());
        }
    }
    assert_eq!(seen.len(), 2 + 2 * TenantDenial::ALL.len());
    for (i, d) in TenantDenial::ALL.iter().enumerate() {
        assert_eq!(d.index(), i);
    }
}

#[test]
fn every_denial_has_its_own_metric_and_status() {
    let names = metric_names();
    let unique: std::collections::HashSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len());
    assert_eq!(
        names.len(),
        2 + 2 * TenantDenial::ALL.len() + crate::request::RequestDenial::ALL.len()
    );
    for d in TenantDenial::ALL {
        assert!(names.contains(&format!("tollgate.tenant.denied.{}", d.denial().reason)));
        assert!(names.contains(&format!("tollgate.tenant.shadow_denied.{}", d.denial().reason)));
    }
    let statuses: Vec<u16> = TenantDenial::ALL.iter().map(|d| d.denial().status).collect();
    assert_eq!(statuses, vec![400, 403, 400, 403, 403, 403, 401]);
}

#[test]
fn client_routing_headers_never_pass_through() {
    let p = policy();
    let decision_for = |path, values: &'static [&'static [u8]]| {
        decide(
            &p,
            &TenantRequest {
                head: RequestHead {
                    method: "GET",
                    host: "h",
                    path,
                },
                claim: None,
                header_values: values,
                jwt_shadow_denied: false,
            },
        )
    };
    let allowed = decision_for("/api/datahub", &[b"std-001"]);
    assert_eq!(
        allowed.header_edits(&p.tenant, &crate::header_map::HeaderMap::default()),
        vec![("x-tenant-id", Some("STD-001")), ("x-tenant-tier", Some("premium"))]
    );
    let props = allowed.properties();
    assert_eq!(props[1], ("tollgate.tenant", b"STD-001".to_vec()));
    assert_eq!(props[2], ("tollgate.tenant_tier", b"premium".to_vec()));
    // A header already holding exactly the value, once, is left as it is;
    // two copies are replaced.
    let sent = headers(&[("x-tenant-id", "STD-001")]);
    assert_eq!(
        allowed.header_edits(&p.tenant, &sent),
        vec![("x-tenant-tier", Some("premium"))]
    );
    let twice = headers(&[("x-tenant-id", "STD-001"), ("x-tenant-id", "STD-001")]);
    assert_eq!(
        allowed.header_edits(&p.tenant, &twice)[0],
        ("x-tenant-id", Some("STD-001"))
    );
    let other = headers(&[("x-tenant-id", "std-001")]);
    assert_eq!(
        allowed.header_edits(&p.tenant, &other)[0],
        ("x-tenant-id", Some("STD-001"))
    );
    let no_tenant = decision_for("/other", &[]);
    // Nothing sent, nothing to remove.
    assert!(no_tenant
        .header_edits(&p.tenant, &crate::header_map::HeaderMap::default())
        .is_empty());
    let sent = headers(&[("x-tenant-tier", "gold"), ("x-tenant-id", "x")]);
    assert_eq!(
        no_tenant.header_edits(&p.tenant, &sent),
        vec![("x-tenant-id", None), ("x-tenant-tier", None)]
    );
    assert_eq!(no_tenant.properties().len(), 1);
    let shadow = decision_for("/api/superset", &[b"OLD-001"]);
    assert_eq!(
        shadow.header_edits(&p.tenant, &crate::header_map::HeaderMap::default()),
        vec![("x-tenant-tier", None)]
    );
    let denied = decision_for("/api/datahub", &[b"OLD-001"]);
    assert!(denied
        .header_edits(&p.tenant, &crate::header_map::HeaderMap::default())
        .is_empty());
}

fn headers(pairs: &[(&str, &str)]) -> crate::header_map::HeaderMap {
    pairs.iter().map(|(k, v)| (*k, v.as_bytes())).collect()
}

#[test]
fn every_spelling_of_the_tenant_header_is_a_source_and_is_removed() {
    let p = policy();
    let run = |path, sent: &[(&str, &str)]| {
        let sent = headers(sent);
        let values = header_values(&p.tenant, &sent);
        let request = TenantRequest {
            head: RequestHead {
                method: "GET",
                host: "h",
                path,
            },
            claim: None,
            header_values: &values,
            jwt_shadow_denied: false,
        };
        let d = decide(&p, &request);
        let edits: Vec<(String, Option<String>)> = d
            .header_edits(&p.tenant, &sent)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect();
        (
            d.verdict
                .map(|r| r.map(|r| r.tenant.id.clone()))
                .map_err(|e| e.denial().reason),
            edits,
        )
    };
    let s = |k: &str, v: Option<&str>| (k.to_string(), v.map(str::to_string));
    let (verdict, _) = run(
        "/api/datahub",
        &[("x-tenant-id", "STD-001"), ("x_tenant_id", "NED-001")],
    );
    assert_eq!(verdict, Err("tenant_mismatch"));
    let (verdict, edits) = run(
        "/api/datahub",
        &[
            ("x_tenant_id", "std-001"),
            ("x_tenant_tier", "gold"),
            ("X-Tenant_Tier", "gold"),
        ],
    );
    assert_eq!(verdict, Ok(Some("STD-001".to_string())));
    assert_eq!(
        edits,
        vec![
            s("x_tenant_id", None),
            s("x_tenant_tier", None),
            s("X-Tenant_Tier", None),
            s("x-tenant-id", Some("STD-001")),
            s("x-tenant-tier", Some("premium")),
        ]
    );
    let (_, edits) = run("/other", &[("x-tenant_tier", "gold")]);
    assert_eq!(edits, vec![s("x-tenant_tier", None)]);
    // Shadow keeps the canonical header as sent, never another spelling or a tier.
    let (_, edits) = run(
        "/api/superset",
        &[("x-tenant-id", "OLD-001"), ("x_tenant_id", "OLD-001")],
    );
    assert_eq!(edits, vec![s("x_tenant_id", None), s("x-tenant-tier", None)]);
    let (_, edits) = run("/api/datahub", &[("x_tenant_id", "OLD-001")]);
    assert!(edits.is_empty());
}

#[test]
fn a_jwt_shadow_denial_never_gets_a_client_chosen_tenant_stamped() {
    let p = policy();
    let run = |path, host, value: Option<&'static [u8]>, jwt_shadow_denied| {
        let values: Vec<&[u8]> = value.into_iter().collect();
        let request = TenantRequest {
            head: RequestHead {
                method: "GET",
                host,
                path,
            },
            claim: None,
            header_values: &values,
            jwt_shadow_denied,
        };
        let d = decide(&p, &request);
        let edits: Vec<(String, Option<String>)> = d
            .header_edits(&p.tenant, &crate::header_map::HeaderMap::default())
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect();
        let keys: Vec<&str> = d.properties().into_iter().map(|(k, _)| k).collect();
        (d.action(), d.metric(), edits, keys)
    };
    let unverified = Action::ShadowDeny(TenantDenial::Unverified.denial());
    // From the header, the host or the path: all chosen by the client.
    for (path, host, value) in [
        ("/api/datahub", "h", Some(&b"STD-001"[..])),
        ("/api/datahub", "std-001.tenants.example.com", None),
        ("/t/STD-001/api/datahub", "h", None),
        ("/other", "h", Some(&b"STD-001"[..])),
    ] {
        let (action, metric, edits, keys) = run(path, host, value, true);
        assert_eq!(action, unverified, "{path} {host}");
        assert_eq!(metric, "tollgate.tenant.shadow_denied.tenant_unverified");
        // The client's tenant header does not reach the app either.
        let removed = vec![("x-tenant-id".to_string(), None), ("x-tenant-tier".to_string(), None)];
        assert_eq!(edits, removed);
        assert_eq!(keys, vec!["tollgate.decision.tenant"]);
        // Without the jwt shadow denial, the same request gets its tenant.
        assert_eq!(run(path, host, value, false).0, Action::Allow, "{path} {host}");
    }
    // Refusals stay refusals; no tenant at all stays allowed.
    let (action, ..) = run("/api/datahub", "h", Some(&b"OLD-001"[..]), true);
    assert_eq!(action, Action::Deny(TenantDenial::Suspended.denial()));
    let (action, ..) = run("/api/datahub", "h", None, true);
    assert_eq!(action, Action::Deny(TenantDenial::Required { status: 400 }.denial()));
    let (action, ..) = run("/other", "h", None, true);
    assert_eq!(action, Action::Allow);
}

#[test]
fn a_shadow_denial_gets_the_verified_tenant_header_or_none() {
    let p = policy();
    let run = |claim: Option<&'static str>, sent: &'static str, jwt_shadow_denied| {
        let values: Vec<&[u8]> = vec![sent.as_bytes()];
        let request = TenantRequest {
            head: RequestHead {
                method: "GET",
                host: "h",
                path: "/api/superset/x",
            },
            claim: claim.map(str::as_bytes),
            header_values: &values,
            jwt_shadow_denied,
        };
        let d = decide(&p, &request);
        assert!(matches!(d.action(), Action::ShadowDeny(_)), "{claim:?} {sent}");
        static NONE: crate::header_map::HeaderMap = crate::header_map::HeaderMap::new();
        d.header_edits(&p.tenant, &NONE)
    };
    // The token proves STD-001 (written std-001): the app gets STD-001.
    assert_eq!(
        run(Some("std-001"), "NED-001", false),
        vec![("x-tenant-id", Some("STD-001")), ("x-tenant-tier", None)]
    );
    // A verified tenant the policy does not know: no tenant header at all.
    assert_eq!(
        run(Some("NEW-001"), "NED-001", false),
        vec![("x-tenant-id", None), ("x-tenant-tier", None)]
    );
    // Nothing verified contradicts the client: its header stays (rollout).
    assert_eq!(run(None, "OLD-001", false), vec![("x-tenant-tier", None)]);
}
