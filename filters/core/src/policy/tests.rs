use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn errors_of(doc: serde_json::Value) -> PolicyErrors {
    Policy::from_json(doc.to_string().as_bytes()).unwrap_err()
}

#[test]
fn a_minimal_policy_compiles() {
    let p = Policy::from_json(br#"{"version": 1}"#).unwrap();
    assert!(p.routes.is_empty());
    assert_eq!(p.fallback.name, "default");
    assert_eq!(p.realm, "tollgate");
    assert_eq!(p.tenant.header, "x-tenant-id");
    assert_eq!(p.tenant.tier_header, "x-tenant-tier");
}

#[test]
fn reports_every_error_with_its_path() {
    let errors = errors_of(serde_json::json!({
        "version": 2,
        "routes": [
            {"name": "a", "match": {"prefx": "/x", "exact": "x", "methods": ["GET", 7]}, "tenant": {"missing_status": 403, "mode": "loud"}},
            {"name": "a", "match": {"prefix": "/api/../x"}},
            {"match": {"prefix": "/y"}},
            {"name": "t", "match": {"template": "/a/**/b"}},
        ],
        "tenants": [
            {"id": "bad id", "routes": ["nope"]},
            {"id": "ACME", "colour": "red"},
            {"id": "acme"},
        ],
        "tenant": {"sources": ["header", "host", "header"], "header": "X-Tenant"},
        "extra": true,
    }));
    let want = [
        ("extra", "unknown field"),
        ("version", "unsupported version 2"),
        ("routes[0].match.prefx", "unknown field"),
        ("routes[0].match.methods[1]", "invalid type"),
        ("routes[0].tenant.mode", "unknown variant `loud`"),
        ("routes[0].match.exact", "must start with '/'"),
        ("routes[0].tenant.missing_status", "403 is not 400 or 401"),
        ("routes[1].name", "duplicate route name 'a'"),
        (
            "routes[1].match.prefix",
            "is not normalized (requests are matched as '/x')",
        ),
        ("routes[2].name", "missing required field"),
        ("routes[3].match.template", "'**' may only be the last segment"),
        ("tenants[0].id", "may hold only letters"),
        ("tenants[0].routes[0]", "no route is named 'nope'"),
        ("tenants[1].colour", "unknown field"),
        ("tenants[2].id", "duplicate tenant id 'acme'"),
        ("tenant.sources[2]", "listed twice"),
        ("tenant.header", "must be a lower-case header name"),
        ("tenant.host", "required when sources lists host"),
    ];
    for (path, needle) in want {
        assert!(errors.has(path, needle), "missing {path}: {needle} in\n{errors}");
    }
    assert_eq!(errors.len(), want.len(), "unexpected extra errors:\n{errors}");
}

#[test]
fn syntax_and_shape_errors_are_clear() {
    let bad_json = Policy::from_json(b"{not json").unwrap_err();
    assert!(bad_json.to_string().contains("not valid JSON"), "{bad_json}");
    let not_object = Policy::from_json(b"[]").unwrap_err();
    assert!(not_object.to_string().contains("must be a JSON object"), "{not_object}");
    let routes_not_list = errors_of(serde_json::json!({"version": 1, "routes": {}}));
    assert!(routes_not_list.has("routes", "must be a list"));
    let huge = vec![b' '; MAX_POLICY_BYTES + 1];
    assert!(Policy::from_json(&huge).unwrap_err().to_string().contains("limit"));
}

#[test]
fn routes_inherit_defaults() {
    let p = Policy::from_json(
        serde_json::json!({
            "version": 1,
            "defaults": {"tenant": {"required": true, "missing_status": 401, "mode": "shadow"}},
            "routes": [
                {"name": "a", "match": {"prefix": "/a"}},
                {"name": "b", "match": {"prefix": "/b"}, "tenant": {"mode": "enforce"}},
            ],
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let a = &p.routes[0].tenant;
    assert!(a.required && a.missing_status == 401 && a.mode == Mode::Shadow);
    let b = &p.routes[1].tenant;
    assert!(b.required && b.missing_status == 401 && b.mode == Mode::Enforce);
    assert_eq!(p.fallback.tenant, *a);
}

#[test]
fn picks_the_best_route() {
    let p = Policy::from_json(
        serde_json::json!({
            "version": 1,
            "routes": [
                {"name": "api", "match": {"prefix": "/api"}},
                {"name": "trino", "match": {"prefix": "/api/trino"}},
                {"name": "trino-write", "match": {"prefix": "/api/trino", "methods": ["post"]}},
                {"name": "status", "match": {"exact": "/api/trino/status"}},
            ],
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let route = |method, path| {
        p.route(&RequestHead {
            method,
            host: "h",
            path,
        })
        .name
        .clone()
    };
    assert_eq!(route("GET", "/api/datahub"), "api");
    assert_eq!(route("GET", "/api/trino/q"), "trino");
    assert_eq!(route("POST", "/api/trino/q"), "trino-write");
    assert_eq!(route("POST", "/api/trino/status"), "status");
    assert_eq!(route("GET", "/health"), "default");
}

#[test]
fn claim_rules_need_a_route_that_looks_at_tokens() {
    let rule = serde_json::json!([{"claim": "roles", "contains": "admin"}]);
    let provider = serde_json::json!({"name": "p", "issuer": "i", "hmac_secret_base64": "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="});
    let errors = errors_of(serde_json::json!({
        "version": 1,
        "routes": [
            {"name": "a", "match": {"prefix": "/a"}, "jwt": {"requirement": "required", "rules": rule}},
            {"name": "b", "match": {"prefix": "/b"}, "jwt": {"requirement": "none", "rules": rule}},
            {"name": "c", "match": {"prefix": "/c"}, "jwt": {"rules": rule}},
            {"name": "d", "match": {"prefix": "/d"}, "jwt": {"requirement": "optional", "rules": rule, "rules_without_token": "skip"}},
            {"name": "e", "match": {"prefix": "/e"}, "jwt": {"rules_without_token": "maybe"}},
        ],
        "jwt": {"providers": [provider.clone(), {"name": "q", "issuer": "j", "require_tenant_claim": true, "hmac_secret_base64": "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="}]},
    }));
    let want = [
        ("routes[1].jwt.rules", "need requirement required or optional"),
        ("routes[2].jwt.rules", "need requirement required or optional"),
        ("routes[4].jwt.rules_without_token", "unknown variant `maybe`"),
        ("jwt.providers[1].require_tenant_claim", "needs tenant_claim"),
    ];
    for (path, needle) in want {
        assert!(errors.has(path, needle), "missing {path}: {needle} in\n{errors}");
    }
    assert_eq!(errors.len(), want.len(), "unexpected extra errors:\n{errors}");
    // Rules in `defaults` with no requirement there are refused where written.
    let errors = errors_of(serde_json::json!({
        "version": 1,
        "defaults": {"jwt": {"rules": rule}},
        "jwt": {"providers": [provider]},
    }));
    assert!(errors.has("defaults.jwt.rules", "need requirement"), "{errors}");
}

#[test]
fn paths_section_has_safe_defaults_and_checked_values() {
    let p = Policy::from_json(br#"{"version": 1}"#).unwrap();
    assert_eq!(p.paths, crate::path::PathSettings::default());
    assert_eq!(p.paths.max_bytes, 8192);
    assert_eq!(p.paths.normalization, crate::path::Normalization::Rewrite);
    assert_eq!(p.paths.parameters, crate::path::Parameters::Reject);
    let p = Policy::from_json(
        br#"{"version": 1, "paths": {"max_bytes": 65536, "normalization": "reject", "parameters": "strip"}}"#,
    )
    .unwrap();
    assert_eq!(
        p.paths,
        crate::path::PathSettings {
            max_bytes: 65536,
            normalization: crate::path::Normalization::Reject,
            parameters: crate::path::Parameters::Strip,
        }
    );
    for (paths, at, needle) in [
        (
            serde_json::json!({"max_bytes": 0}),
            "paths.max_bytes",
            "0 is not in 1..=65536",
        ),
        (
            serde_json::json!({"max_bytes": 65537}),
            "paths.max_bytes",
            "65537 is not in 1..=65536",
        ),
        (
            serde_json::json!({"normalization": "keep"}),
            "paths.normalization",
            "unknown variant `keep`",
        ),
        (
            serde_json::json!({"parameters": "allow"}),
            "paths.parameters",
            "unknown variant `allow`",
        ),
        (serde_json::json!({"max_byte": 1}), "paths.max_byte", "unknown field"),
    ] {
        let errors = errors_of(serde_json::json!({"version": 1, "paths": paths}));
        assert!(
            errors.iter().any(|e| e.path == at && e.message.contains(needle)),
            "{at}: {errors}"
        );
    }
}

#[test]
fn route_patterns_requests_can_never_take_are_refused() {
    let errors = errors_of(serde_json::json!({"version": 1, "routes": [
        {"name": "a", "match": {"prefix": "/api;v=1"}},
        {"name": "b", "match": {"exact": "/api/..%2fx"}},
        {"name": "c", "match": {"prefix": "/a//b"}},
        {"name": "d", "match": {"exact": "/a?x=1"}},
        {"name": "e", "match": {"prefix": "/a\\b"}},
    ]}));
    let want = [
        (
            "routes[0].match.prefix",
            "can never match: a request path that has a ';' path parameter is refused",
        ),
        (
            "routes[1].match.exact",
            "can never match: a request path that has a dot segment hidden by escapes",
        ),
        (
            "routes[2].match.prefix",
            "is not normalized (requests are matched as '/a/b')",
        ),
        (
            "routes[3].match.exact",
            "is not normalized (requests are matched as '/a')",
        ),
        (
            "routes[4].match.prefix",
            "is not normalized (requests are matched as '/a/b')",
        ),
    ];
    for (at, needle) in want {
        assert!(
            errors.iter().any(|e| e.path == at && e.message.contains(needle)),
            "{at}: {errors}"
        );
    }
}
