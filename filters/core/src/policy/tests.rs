use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn errors_of(doc: serde_json::Value) -> PolicyErrors {
    Policy::from_json_checked(doc.to_string().as_bytes()).unwrap_err()
}

#[test]
fn a_minimal_policy_compiles() {
    let p = Policy::from_json(br#"{"version": 1}"#).unwrap();
    assert!(p.routes.is_empty());
    assert_eq!(p.fallback.name, "default");
    assert_eq!(p.realm, "tollgate");
    assert_eq!(p.tenant.header, "x-tenant-id");
    assert_eq!(p.tenant.tier_header, "x-tenant-tier");
    assert_eq!(p.strip_headers, headers::DEFAULT_STRIP);
}

/// The URL and method families of override headers are stripped by
/// default; none of them is a name a policy could not list, or one Envoy
/// sets before the filters run.
#[test]
fn the_default_strip_list_covers_the_override_families() {
    for name in [
        "x-original-url",
        "x-original-uri",
        "x-forwarded-uri",
        "x-forwarded-path",
        "x-forwarded-prefix",
        "x-original-method",
        "x-forwarded-method",
    ] {
        assert!(headers::DEFAULT_STRIP.contains(&name), "{name}");
    }
    for name in crate::request::METHOD_HEADERS {
        assert!(headers::DEFAULT_STRIP.contains(name), "{name}");
    }
    for name in headers::DEFAULT_STRIP {
        assert_eq!(headers::check_managed(name), Ok(()), "{name}");
        assert!(!["x-forwarded-for", "x-forwarded-proto", "x-request-id"].contains(name));
    }
    let strip: Vec<String> = headers::DEFAULT_STRIP.iter().map(|n| n.to_string()).collect();
    let sent: crate::header_map::HeaderMap = [
        "X_Forwarded_Uri",
        "x-original-uri",
        "x-forwarded-method",
        "x-forwarded-proto",
    ]
    .iter()
    .map(|n| (n.to_string(), b"v".to_vec()))
    .collect();
    let removed: Vec<&str> = crate::headers::strip_removals(&strip, &sent)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(removed, ["X_Forwarded_Uri", "x-original-uri", "x-forwarded-method"]);
    // Stripped, they never reach the application: no rule reads them.
    assert!(crate::request::header_method_overrides(&sent, &strip).is_empty());
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
fn the_route_is_explained_by_the_step_that_chose_it() {
    let p = Policy::from_json(
        serde_json::json!({
            "version": 1,
            "routes": [
                {"name": "api", "match": {"prefix": "/api"}},
                {"name": "trino", "match": {"prefix": "/api/trino"}},
                {"name": "trino-write", "match": {"prefix": "/api/trino", "methods": ["POST"]}},
                {"name": "status", "match": {"exact": "/api/trino/status"}},
                {"name": "api-again", "match": {"prefix": "/api"}},
            ],
            "tenant": {"path_prefix": "/t/{tenant}"},
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let explain = |method, path| {
        let head = RequestHead {
            method,
            host: "h",
            path,
        };
        let choice = p.route_explained(&head);
        assert!(std::ptr::eq(choice.route, p.route(&head)), "{method} {path}");
        (choice.route.name.clone(), choice.matched_path, choice.why)
    };
    let beat = |runner_up: &str, step| RouteWhy::Beat {
        runner_up: runner_up.into(),
        step,
    };
    use crate::route::Precedence;
    assert_eq!(
        explain("GET", "/api/trino/status"),
        (
            "status".into(),
            "/api/trino/status".into(),
            beat("trino", Precedence::ExactPath)
        )
    );
    assert_eq!(
        explain("GET", "/api/trino/q"),
        (
            "trino".into(),
            "/api/trino/q".into(),
            beat("api", Precedence::LongerPath)
        )
    );
    assert_eq!(
        explain("POST", "/t/acme/api/trino/q"),
        (
            "trino-write".into(),
            "/api/trino/q".into(),
            beat("trino", Precedence::Method)
        )
    );
    assert_eq!(
        explain("GET", "/api/datahub"),
        (
            "api".into(),
            "/api/datahub".into(),
            beat("api-again", Precedence::FirstInFile)
        )
    );
    assert_eq!(
        explain("GET", "/health"),
        ("default".into(), "/health".into(), RouteWhy::NoMatch)
    );
    let single =
        Policy::from_json(br#"{"version": 1, "routes": [{"name": "only", "match": {"prefix": "/a"}}]}"#).unwrap();
    let head = RequestHead {
        method: "GET",
        host: "h",
        path: "/a/b",
    };
    assert_eq!(single.route_explained(&head).why, RouteWhy::OnlyMatch);
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
        "jwt": {"providers": [provider.clone(), {"name": "q", "issuer": "i", "require_tenant_claim": true, "hmac_secret_base64": "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="}]},
    }));
    let want = [
        ("routes[1].jwt.rules", "need requirement required or optional"),
        ("routes[2].jwt.rules", "need requirement required or optional"),
        ("routes[4].jwt.rules_without_token", "unknown variant `maybe`"),
        // require_tenant_claim without tenant_claim is fine (its tokens
        // are refused where a tenant is required); a shared issuer is not.
        ("jwt.providers[1].issuer", "'i' is also the issuer of jwt.providers[0]"),
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
        br#"{"version": 1, "paths": {"max_bytes": 65536, "normalization": "reject", "parameters": "strip", "escaped_slashes": "reject", "case": "sensitive"}}"#,
    )
    .unwrap();
    assert_eq!(
        p.paths,
        crate::path::PathSettings {
            max_bytes: 65536,
            normalization: crate::path::Normalization::Reject,
            parameters: crate::path::Parameters::Strip,
            escaped_slashes: crate::path::EscapedSlashes::Reject,
            case: crate::path::CaseReading::Sensitive,
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

#[test]
fn patterns_one_path_to_an_application_are_refused() {
    let routes = serde_json::json!([
        {"name": "a", "match": {"exact": "/api/admin"}},
        {"name": "b", "match": {"exact": "/api/admin/"}},
        {"name": "c", "match": {"prefix": "/api/Admin"}},
        {"name": "d", "match": {"prefix": "/api/datahub"}},
        {"name": "e", "match": {"prefix": "/api/datahub/"}},
        {"name": "f", "match": {"template": "/api/*/x"}},
        {"name": "g", "match": {"template": "/API/*/x"}},
        {"name": "h", "match": {"prefix": "/"}},
        {"name": "i", "match": {"exact": "/"}},
        {"name": "j", "match": {"prefix": "/api/trino", "methods": ["GET"]}},
        {"name": "k", "match": {"prefix": "/api/trino", "methods": ["POST"]}},
    ]);
    let errors = errors_of(serde_json::json!({"version": 1, "routes": routes}));
    let at: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        at,
        [
            "routes[1].match.exact",
            "routes[2].match.prefix",
            "routes[4].match.prefix",
            "routes[6].match.template"
        ],
        "{errors}"
    );
    let first = errors.iter().next().unwrap();
    assert_eq!(
        first.message,
        "'/api/admin/' and routes[0].match.exact '/api/admin' are one path to an application that ignores \
         case or a trailing '/': requests to them would be refused as ambiguous; merge them"
    );
    // With `paths.case: sensitive`, case is not read away.
    let errors = errors_of(serde_json::json!({"version": 1, "routes": routes, "paths": {"case": "sensitive"}}));
    let at: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(at, ["routes[1].match.exact", "routes[4].match.prefix"], "{errors}");
}

#[test]
fn an_upper_case_tenant_path_prefix_needs_case_sensitive_paths() {
    let tenant = serde_json::json!({"sources": ["path"], "path_prefix": "/T/{tenant}"});
    let errors = errors_of(serde_json::json!({"version": 1, "tenant": tenant}));
    let at: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(at, ["tenant.path_prefix"], "{errors}");
    let doc = serde_json::json!({"version": 1, "tenant": tenant, "paths": {"case": "sensitive"}});
    assert!(Policy::from_json(doc.to_string().as_bytes()).is_ok());
}

/// A provider that needs no key server: `{P}` in a row's policy.
const PROVIDER: &str =
    r#""name": "p", "issuer": "i", "hmac_secret_base64": "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=""#;
const REMOTE: &str =
    r#""name": "p", "issuer": "i", "remote_jwks": {"uri": "https://idp.example.com/jwks", "cluster": "idp""#;

/// Every error of a policy written as text (so that keys can repeat), with
/// `{P}` standing for a provider's fields, `{R}` for a remote provider's
/// fields up to inside `remote_jwks`, and `{KEY}` for a valid JWK.
fn errors_in(text: &str) -> Vec<String> {
    let jwks: Value = serde_json::from_str(include_str!("../../../../tests/fixtures/keys/jwks.json")).unwrap();
    let text = text
        .replace("{P}", PROVIDER)
        .replace("{R}", REMOTE)
        .replace("{KEY}", &jwks["keys"][0].to_string());
    match Policy::from_json(text.as_bytes()) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn check_rows(rows: &[(&str, &[&str])]) {
    for (text, want) in rows {
        assert_eq!(errors_in(text), *want, "for {text}");
    }
}

#[test]
fn duplicate_keys_are_refused_at_any_depth() {
    check_rows(&[
        (r#"{"version": 1, "version": 1}"#, &["version: duplicate key"]),
        (
            r#"{"version": 1, "tenants": [{"id": "a"}, {"id": "b"}, {"id": "c", "status": "active", "status": "suspended"}]}"#,
            &["tenants[2].status: duplicate key"],
        ),
        (
            r#"{"version": 1, "routes": [{"name": "a", "match": {"prefix": "/a", "prefix": "/b"}}]}"#,
            &["routes[0].match.prefix: duplicate key"],
        ),
        (
            r#"{"version": 1, "jwt": {"providers": [{{P}, "claim_to_headers": [{"claim_name": "a", "header_name": "x-a", "claim_name": "b"}]}]}}"#,
            &["jwt.providers[0].claim_to_headers[0].claim_name: duplicate key"],
        ),
        // A null first and a value second is still a duplicate.
        (
            r#"{"version": 1, "realm": null, "realm": "r"}"#,
            &[
                "realm: null is not allowed: leave the field out or give a value",
                "realm: duplicate key",
            ],
        ),
    ]);
}

#[test]
fn null_is_refused_where_a_value_is_expected() {
    let null = "null is not allowed: leave the field out or give a value";
    check_rows(&[
        (r#"{"version": 1, "routes": null}"#, &[&format!("routes: {null}")]),
        (
            r#"{"version": 1, "tenants": [{"id": "a", "routes": null}]}"#,
            &[&format!("tenants[0].routes: {null}")],
        ),
        (
            r#"{"version": 1, "tenant": {"sources": null}}"#,
            &[&format!("tenant.sources: {null}")],
        ),
        (r#"{"version": 1, "defaults": null}"#, &[&format!("defaults: {null}")]),
        (r#"{"version": 1, "realm": null}"#, &[&format!("realm: {null}")]),
        (
            r#"{"version": 1, "routes": [{"name": "a", "jwt": {"providers": null}}]}"#,
            &[&format!("routes[0].jwt.providers: {null}")],
        ),
        (
            r#"{"version": 1, "jwt": {"providers": [{{P}, "local_jwks": null}]}}"#,
            &[&format!("jwt.providers[0].local_jwks: {null}")],
        ),
        // A required field that is null is reported once, as null.
        (
            r#"{"version": 1, "routes": [{"name": null}]}"#,
            &[&format!("routes[0].name: {null}")],
        ),
        (
            r#"{"version": 1, "routes": [null]}"#,
            &["routes[0]: invalid type: null, expected struct RouteDoc"],
        ),
    ]);
}

#[test]
fn every_local_jwks_key_must_be_usable() {
    let at = "jwt.providers[0].local_jwks";
    check_rows(&[
        (
            r#"{"version": 1, "jwt": {"providers": [{"name": "p", "issuer": "i", "local_jwks": {"keys": [{KEY}, {"kty": "RSA", "n": "", "e": "AQAB"}]}}]}}"#,
            &[&format!("{at}.keys[1]: RSA modulus of 0 bits; 2048 to 4096 accepted")],
        ),
        (
            r#"{"version": 1, "jwt": {"providers": [{"name": "p", "issuer": "i", "local_jwks": {"keys": [{KEY}, {"kty": "RSA", "n": "AAAA", "e": "AQAB"}]}}]}}"#,
            &[&format!("{at}.keys[1]: RSA modulus of 0 bits; 2048 to 4096 accepted")],
        ),
        (
            r#"{"version": 1, "jwt": {"providers": [{"name": "p", "issuer": "i", "local_jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}, {KEY}, {"kty": "EC", "crv": "P-256", "use": "enc"}]}}]}}"#,
            &[
                &format!("{at}.keys[0]: oct keys are not read from a JWKS; use hmac_secret_base64"),
                &format!("{at}.keys[2]: use 'enc' is not for signatures"),
            ],
        ),
        (
            r#"{"version": 1, "jwt": {"providers": [{"name": "p", "issuer": "i", "local_jwks": {"keys": []}}]}}"#,
            &[&format!("{at}.keys: must hold at least one key")],
        ),
    ]);
}

#[test]
fn numbers_out_of_range_are_errors() {
    let p = "jwt.providers[0]";
    let r = "jwt.providers[0].remote_jwks";
    check_rows(&[
        (
            r#"{"version": 1, "jwt": {"providers": [{{P}, "clock_skew_seconds": 18446744073709551615}]}}"#,
            &[&format!(
                "{p}.clock_skew_seconds: must be 0 to 300, not 18446744073709551615"
            )],
        ),
        (
            r#"{"version": 1, "jwt": {"providers": [{{P}, "clock_skew_seconds": -1}]}}"#,
            &[&format!(
                "{p}.clock_skew_seconds: invalid value: integer `-1`, expected u64"
            )],
        ),
        (
            r#"{"version": 1, "jwt": {"providers": [{{P}, "max_lifetime_seconds": 0}]}}"#,
            &[&format!("{p}.max_lifetime_seconds: must be 1 to 31536000, not 0")],
        ),
        (
            r#"{"version": 1, "jwt": {"providers": [{{R}, "min_refetch_interval_seconds": 0}}]}}"#,
            &[&format!("{r}.min_refetch_interval_seconds: must be 1 to 3600, not 0")],
        ),
        (
            r#"{"version": 1, "jwt": {"providers": [{{R}, "timeout_ms": 0}}]}}"#,
            &[&format!("{r}.timeout_ms: must be 100 to 60000, not 0")],
        ),
        (
            r#"{"version": 1, "jwt": {"providers": [{{R}, "timeout_ms": 18446744073709551615}}]}}"#,
            &[&format!(
                "{r}.timeout_ms: must be 100 to 60000, not 18446744073709551615"
            )],
        ),
        (
            r#"{"version": 1, "jwt": {"providers": [{{R}, "cache_duration_seconds": 0}}]}}"#,
            &[&format!("{r}.cache_duration_seconds: must be 1 to 86400, not 0")],
        ),
        (
            r#"{"version": 1, "jwt": {"providers": [{{R}, "stale_ttl_seconds": 604801}}]}}"#,
            &[&format!("{r}.stale_ttl_seconds: must be 0 to 604800, not 604801")],
        ),
        (
            r#"{"version": 1, "jwt": {"providers": [{{R}, "max_body_bytes": 4294967296}}]}}"#,
            &[&format!("{r}.max_body_bytes: must be 1024 to 1048576, not 4294967296")],
        ),
        (
            r#"{"version": 1, "jwt": {"max_token_bytes": 100}}"#,
            &["jwt.max_token_bytes: must be 256 to 65536, not 100"],
        ),
        (
            r#"{"version": 1, "jwt": {"cache_entries": 100001}}"#,
            &["jwt.cache_entries: must be 0 to 100000, not 100001"],
        ),
        (
            r#"{"version": 1, "jwt": {"cache_bytes": 67108865}}"#,
            &["jwt.cache_bytes: must be 0 to 67108864, not 67108865"],
        ),
        (
            r#"{"version": 1, "tenant": {"max_id_length": 0}}"#,
            &["tenant.max_id_length: must be 1 to 256, not 0"],
        ),
        (
            r#"{"version": 1, "defaults": {"tenant": {"missing_status": 65535}}}"#,
            &["defaults.tenant.missing_status: 65535 is not 400 or 401"],
        ),
    ]);
}

#[test]
fn header_names_are_checked_once_for_every_use() {
    let t = "jwt.providers[0].claim_to_headers";
    let f = "jwt.providers[0].from_headers";
    check_rows(&[
        (
            r#"{"version": 1, "tenant": {"header": "host"}}"#,
            &["tenant.header: 'host' is reserved"],
        ),
        (
            r#"{"version": 1, "tenant": {"tier_header": "proxy-authorization"}}"#,
            &["tenant.tier_header: 'proxy-authorization' is reserved"],
        ),
        (
            r#"{"version": 1, "tenant": {"header": "x-envoy-original-path"}}"#,
            &["tenant.header: 'x-envoy-original-path' is reserved"],
        ),
        (
            r#"{"version": 1, "tenant": {"header": ":path"}}"#,
            &["tenant.header: ':path' is a pseudo-header"],
        ),
        (
            r#"{"version": 1, "tenant": {"header": "X-Tenant"}}"#,
            &["tenant.header: 'X-Tenant' must be a lower-case header name"],
        ),
        (
            r#"{"version": 1, "tenant": {"tier_header": "x-tenant-id"}}"#,
            &["tenant.tier_header: 'x-tenant-id' is also tenant.header"],
        ),
        (
            r#"{"version": 1, "jwt": {"providers": [{{P}, "claim_to_headers": [{"claim_name": "a", "header_name": "transfer_encoding"}]}]}}"#,
            &[&format!("{t}[0].header_name: 'transfer_encoding' is reserved")],
        ),
        (
            r#"{"version": 1, "jwt": {"providers": [{{P}, "claim_to_headers": [{"claim_name": "a", "header_name": "x_tenant_id"}]}]}}"#,
            &[&format!("{t}[0].header_name: 'x_tenant_id' is also tenant.header")],
        ),
        (
            r#"{"version": 1, "jwt": {"providers": [{{P}, "claim_to_headers": [{"claim_name": "a", "header_name": "x-user-id"}, {"claim_name": "b", "header_name": "x_user_id"}]}]}}"#,
            &[&format!("{t}[1].header_name: 'x_user_id' is also {t}[0].header_name")],
        ),
        (
            r#"{"version": 1, "jwt": {"providers": [{{P}, "from_headers": [{"name": "x-user-id"}], "claim_to_headers": [{"claim_name": "a", "header_name": "x-user-id"}]}]}}"#,
            &[&format!(
                "{f}[0].name: 'x-user-id' is also {t}[0].header_name, a header the filters set"
            )],
        ),
        (
            r#"{"version": 1, "jwt": {"providers": [{{P}, "from_headers": [{"name": "X-Tenant-Id"}]}]}}"#,
            &[&format!(
                "{f}[0].name: 'X-Tenant-Id' is also tenant.header, a header the filters set"
            )],
        ),
        (
            r#"{"version": 1, "jwt": {"providers": [{{P}, "from_headers": [{"name": ":authority"}, {"name": "bad header"}]}]}}"#,
            &[
                &format!("{f}[0].name: ':authority' is a pseudo-header"),
                &format!("{f}[1].name: 'bad header' is not a header name"),
            ],
        ),
        // Only one provider verifies a request: they may set the same header.
        (
            r#"{"version": 1, "jwt": {"providers": [
                {{P}, "claim_to_headers": [{"claim_name": "sub", "header_name": "x-user-id"}]},
                {"name": "q", "issuer": "j", "hmac_secret_base64": "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
                 "claim_to_headers": [{"claim_name": "uid", "header_name": "x-user-id"}]}]}}"#,
            &[],
        ),
        // strip_headers: removable, each once, none the filters read or set.
        (
            r#"{"version": 1, "strip_headers": ["host", "X-Original-Url", "x-original-url", "x_original_url", "x_tenant_id", ":path"],
                "jwt": {"providers": [{{P}, "from_headers": [{"name": "x-jwt"}], "claim_to_headers": [{"claim_name": "a", "header_name": "x-user"}]}]}}"#,
            &[
                "strip_headers[0]: 'host' is reserved",
                "strip_headers[1]: 'X-Original-Url' must be a lower-case header name",
                "strip_headers[3]: 'x_original_url' is listed twice (counting '_' as '-')",
                "strip_headers[4]: 'x_tenant_id' is a header the filters read or set",
                "strip_headers[5]: ':path' is a pseudo-header",
            ],
        ),
        (
            r#"{"version": 1, "strip_headers": ["x_jwt", "x-user"],
                "jwt": {"providers": [{{P}, "from_headers": [{"name": "X-JWT"}], "claim_to_headers": [{"claim_name": "a", "header_name": "x-user"}]}]}}"#,
            &[
                "strip_headers[0]: 'x_jwt' is a header the filters read or set",
                "strip_headers[1]: 'x-user' is a header the filters read or set",
            ],
        ),
        (r#"{"version": 1, "strip_headers": []}"#, &[]),
    ]);
}

#[test]
fn claim_rule_methods_are_checked_like_route_methods() {
    check_rows(&[
        (
            r#"{"version": 1, "routes": [{"name": "a", "match": {"methods": ["GET", "get", "GE T", ""]}}]}"#,
            &[
                "routes[0].match.methods[1]: 'get' is listed twice",
                "routes[0].match.methods[2]: 'GE T' is not an HTTP method",
                "routes[0].match.methods[3]: '' is not an HTTP method",
            ],
        ),
        (
            r#"{"version": 1, "jwt": {"providers": [{{P}}]}, "routes": [{"name": "a", "jwt": {"requirement": "required", "rules": [{"claim": "c", "contains": "x", "methods": ["POST", "post", "P0ST"]}]}}]}"#,
            &[
                "routes[0].jwt.rules[0].methods[1]: 'post' is listed twice",
                "routes[0].jwt.rules[0].methods[2]: 'P0ST' is not an HTTP method",
            ],
        ),
    ]);
}

#[test]
fn a_jwks_uri_must_be_fetchable_as_written() {
    let bad = [
        ("idp.example.com/jwks", "must start with https:// or http://"),
        ("ftp://idp.example.com/jwks", "must start with https:// or http://"),
        ("HTTPS://idp.example.com/jwks", "must start with https:// or http://"),
        ("https://idp.example.com?x=1", "needs a path before its query"),
        ("https://user:pw@idp.example.com/jwks", "must not hold user information"),
        ("https:///jwks", "has no host"),
        ("https://:443/jwks", "has no host"),
        ("https://idp.example.com/jwks#keys", "must not have a fragment"),
        (
            "https://idp.example.com:https/jwks",
            "has a port that is not a number from 1 to 65535",
        ),
        (
            "https://idp.example.com:/jwks",
            "has a port that is not a number from 1 to 65535",
        ),
        (
            "https://idp.example.com:0/jwks",
            "has a port that is not a number from 1 to 65535",
        ),
        (
            "https://idp.example.com:65536/jwks",
            "has a port that is not a number from 1 to 65535",
        ),
        (
            "https://idp.exa mple.com/jwks",
            "must be printable ASCII without spaces",
        ),
        ("https://idp_example.com/jwks", "has an invalid host"),
        ("https://[::1/jwks", "has an unclosed '['"),
        ("https://[::1]x/jwks", "has an invalid host"),
    ];
    for (uri, why) in bad {
        let text = format!(
            r#"{{"version": 1, "jwt": {{"providers": [{{"name": "p", "issuer": "i", "remote_jwks": {{"uri": "{uri}", "cluster": "c"}}}}]}}}}"#
        );
        assert_eq!(
            errors_in(&text),
            [format!("jwt.providers[0].remote_jwks.uri: '{uri}' {why}")],
            "for {uri}"
        );
    }
    let good = [
        ("https://idp.example.com", "idp.example.com", "/"),
        (
            "https://idp.example.com:8443/a/jwks?v=2",
            "idp.example.com:8443",
            "/a/jwks?v=2",
        ),
        ("http://[::1]:8080/jwks", "[::1]:8080", "/jwks"),
    ];
    for (uri, authority, path) in good {
        assert_eq!(crate::jwt::config::split_uri(uri), Ok((authority, path)), "for {uri}");
    }
}

/// Runs `from_json` and returns its errors and the decode passes it made;
/// natively, also checks that it took well under a second (wasm32 in Node
/// has no clock).
fn measured(text: &str) -> (Vec<String>, usize) {
    decode::PASSES.with(|p| p.set(0));
    #[cfg(not(target_arch = "wasm32"))]
    let started = std::time::Instant::now();
    let errors = errors_in(text);
    #[cfg(not(target_arch = "wasm32"))]
    assert!(started.elapsed().as_secs_f64() < 1.0, "{:?}", started.elapsed());
    (errors, decode::PASSES.with(std::cell::Cell::get))
}

#[test]
fn a_wide_policy_is_checked_in_linear_work() {
    // 60 KB: routes that fail to decode between routes with later errors
    // (each mapped back to its original index), and tenants with one
    // removable error each.
    let n = 650;
    let mut routes = Vec::new();
    for i in 0..n {
        routes.push(format!(r#"{{"name": "r{i}", "match": {{"prefix": "r{i}"}}}}"#));
        routes.push(format!(r#"{{"match": {{"prefix": "p{i}"}}}}"#));
    }
    let tenants: Vec<String> = (0..n).map(|i| format!(r#"{{"id": "t{i}", "x": 1}}"#)).collect();
    let text = format!(
        r#"{{"version": 1, "routes": [{}], "tenants": [{}]}}"#,
        routes.join(","),
        tenants.join(",")
    );
    assert!(text.len() > 60_000, "{}", text.len());
    let (errors, passes) = measured(&text);
    // One pass for the document, one per route, two per tenant (the
    // unknown field is removed and the tenant decoded again).
    assert_eq!(passes, 1 + 2 * n + 2 * n);
    assert_eq!(errors.len(), 3 * n);
    assert_eq!(errors[0], "routes[1].name: missing required field");
    assert_eq!(errors[2 * n - 1], format!("tenants[{}].x: unknown field", n - 1));
    // Found after decoding, at the route's index among those kept (n - 1),
    // reported at its index in the file.
    let last = n - 1;
    assert_eq!(
        errors[3 * n - 1],
        format!("routes[{}].match.prefix: 'r{last}' must start with '/'", 2 * last)
    );
}

#[test]
fn an_item_is_decoded_a_bounded_number_of_times() {
    // 2000 bad methods in one route: at most 32 passes over it, not 2000.
    let methods: Vec<String> = (0..2000).map(|i| i.to_string()).collect();
    let text = format!(
        r#"{{"version": 1, "routes": [{{"name": "a", "match": {{"methods": [{}]}}}}]}}"#,
        methods.join(",")
    );
    let (errors, passes) = measured(&text);
    assert_eq!(passes, 1 + 32);
    assert_eq!(errors.len(), 32);
}

#[test]
fn a_deep_policy_is_refused_quickly() {
    let depth = 30_000;
    for (open, close) in [("[", "]"), (r#"{"a":"#, "}")] {
        let text = format!(
            r#"{{"version": 1, "realm": {}1{}}}"#,
            open.repeat(depth),
            close.repeat(depth)
        );
        let (errors, _) = measured(&text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("not valid JSON: recursion limit exceeded"),
            "{errors:?}"
        );
    }
    // Within the limit, long keys make long paths: errors are capped rather
    // than each rendering a path as long as the document.
    let key = "k".repeat(400);
    let dups = format!(r#""{key}": 1, "#).repeat(200);
    let text = format!(
        r#"{{"version": 1, "jwt": {{"providers": [{{{PROVIDER}, "local_jwks": {}{{{dups}"x": 1}}{}}}]}}}}"#,
        format!(r#"{{"{key}": "#).repeat(100),
        "}".repeat(100)
    );
    let (errors, _) = measured(&text);
    assert_eq!(errors.len(), 64 + 1, "{}", errors.len());
    assert!(
        errors[64].starts_with("jwt.providers[0].local_jwks: not a JWKS"),
        "{}",
        errors[64]
    );
    assert!(errors[0].ends_with(": duplicate key"));
}

/// No input panics the validator: random documents built from the policy's
/// own field names, random JWKs, random bytes.
#[cfg(not(target_arch = "wasm32"))]
mod random {
    use super::*;
    use crate::jwt::jwk::KeySet;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use proptest::prelude::*;

    const KEYS: &[&str] = &[
        "version",
        "realm",
        "defaults",
        "routes",
        "tenants",
        "tenant",
        "jwt",
        "name",
        "match",
        "exact",
        "prefix",
        "template",
        "methods",
        "hosts",
        "required",
        "missing_status",
        "mode",
        "id",
        "status",
        "tier",
        "sources",
        "header",
        "tier_header",
        "host",
        "path_prefix",
        "max_id_length",
        "providers",
        "issuer",
        "audiences",
        "local_jwks",
        "keys",
        "kty",
        "n",
        "e",
        "crv",
        "x",
        "y",
        "use",
        "alg",
        "remote_jwks",
        "uri",
        "cluster",
        "timeout_ms",
        "from_headers",
        "value_prefix",
        "claim_to_headers",
        "claim_name",
        "header_name",
        "rules",
        "claim",
        "equals",
        "contains",
        "any_of",
        "requirement",
        "clock_skew_seconds",
        "max_lifetime_seconds",
    ];
    const STRINGS: &[&str] = &[
        "",
        "/",
        "/a",
        "a",
        "RSA",
        "EC",
        "OKP",
        "oct",
        "P-256",
        "P-384",
        "Ed25519",
        "AQAB",
        "AA",
        "sig",
        "RS256",
        "https://a/b",
        "http://[::1]:1/",
        "x-a",
        ":path",
        "GET",
        "header",
        "claim",
        "host",
        "path",
        "required",
        "{tenant}.a.b",
        "/t/{tenant}",
        "shadow",
        "suspended",
        "default",
        "**",
        "/*/**",
    ];

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            prop_oneof![Just(0u64), Just(1), Just(400), Just(u64::MAX), any::<u64>()].prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            prop::sample::select(STRINGS).prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(KEYS), inner), 0..8)
                    .prop_map(|fields| Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
            ]
        })
    }

    fn jwk() -> impl Strategy<Value = Value> {
        // Short (empty, zero) and RSA-sized values.
        let b64 = prop_oneof![0..4usize, 250..520usize]
            .prop_flat_map(|len| prop::collection::vec(any::<u8>(), len))
            .prop_map(|b| Value::from(URL_SAFE_NO_PAD.encode(b)));
        (
            prop::sample::select(&["RSA", "EC", "OKP", "oct", "x"][..]),
            prop::sample::select(&["P-256", "P-384", "Ed25519", "x"][..]),
            b64.clone(),
            b64.clone(),
            b64,
        )
            .prop_map(|(kty, crv, a, b, c)| serde_json::json!({"kty": kty, "crv": crv, "n": a, "x": a, "e": b, "y": c}))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn random_documents_never_panic(doc in value(), version in any::<bool>()) {
            let mut doc = doc;
            if let (Value::Object(map), true) = (&mut doc, version) {
                map.insert("version".into(), Value::from(1));
            }
            let _ = Policy::from_json(doc.to_string().as_bytes());
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = Policy::from_json(&bytes);
        }

        #[test]
        fn random_keys_never_panic(keys in prop::collection::vec(jwk(), 0..4)) {
            let jwks = serde_json::json!({ "keys": keys });
            let _ = KeySet::parse_each(jwks.to_string().as_bytes());
        }
    }
}

#[test]
fn rollout_fields_are_checked_with_their_paths() {
    let errors = errors_of(serde_json::json!({
        "version": 1,
        "modes": {"jwt": "shadow", "tenant": "loud"},
        "skip_namespaces": ["ok", "Bad_NS"],
        "mesh": {
            "root_namespace": "istio-system",
            "selector": {"app": "-x"},
            "namespaces": [
                {"name": "datahub", "modes": {"jwt": "enforce"}},
                {"name": "datahub"},
                {"name": "istio-system"},
                {"name": "trino", "modes": {"audit": "shadow"}},
            ],
        },
    }))
    .to_string();
    for want in [
        "modes.tenant: unknown variant `loud`",
        "skip_namespaces[1]: 'Bad_NS' is not a namespace name",
        "mesh.selector.app: is not a Kubernetes label value",
        "mesh.namespaces[1].name: 'datahub' is listed twice",
        "mesh.namespaces[2].name: is the root namespace",
        "mesh.namespaces[3].modes.audit: unknown field",
    ] {
        assert!(errors.contains(want), "missing {want} in\n{errors}");
    }
}

#[test]
fn target_refs_are_checked_with_their_paths() {
    let gateway = |name: &str| serde_json::json!({"kind": "Gateway", "name": name});
    let errors = errors_of(serde_json::json!({
        "version": 1,
        "mesh": {
            "selector": {"app": "x"},
            "target_refs": [
                {"kind": "GatewayClass", "name": "istio-waypoint"},
                {"kind": "Deployment", "name": "web"},
                {"kind": "Gateway", "name": "other", "group": "networking.istio.io"},
                {"kind": "Service", "name": "Not_A_Name"},
                gateway("edge"),
                gateway("edge"),
            ],
            "namespaces": [
                {"name": "datahub", "target_refs": [{"kind": "GatewayClass", "name": "istio"}]},
                {"name": "trino"},
                {"name": "superset", "selector": {"app": "superset"}},
                {"name": "kafka", "target_refs": [{"kind": "Service", "name": "rest", "group": "core"}]},
                {"name": "many", "target_refs": (0..17).map(|i| gateway(&format!("g{i}"))).collect::<Vec<_>>()},
            ],
        },
    }))
    .to_string();
    for want in [
        "mesh.target_refs: set selector or target_refs, not both",
        "mesh.target_refs[1]: kind 'Deployment' cannot be targeted",
        "mesh.target_refs[2]: group 'networking.istio.io' is not Gateway's",
        "mesh.target_refs[3]: name 'Not_A_Name' is not a Kubernetes object name",
        "mesh.target_refs[5]: Gateway 'edge' is listed twice",
        "mesh.namespaces[0].target_refs[0]: a GatewayClass is targeted from the root namespace only",
        "mesh.namespaces[1]: has no selector or target_refs of its own",
        "mesh.namespaces[4].target_refs: has 17 entries, Istio takes 16 at most",
    ] {
        assert!(errors.contains(want), "missing {want} in\n{errors}");
    }
    for fine in [
        "mesh.target_refs[0]",
        "mesh.target_refs[4]",
        "mesh.namespaces[2]",
        "mesh.namespaces[3]",
    ] {
        assert!(!errors.contains(&format!("{fine}:")), "{fine} is valid, yet\n{errors}");
    }
}

#[test]
fn a_namespace_attaches_by_its_own_choice_else_the_mesh_selector() {
    use crate::policy::rollout::{Attach, MeshDoc};
    let mesh: MeshDoc = serde_json::from_value(serde_json::json!({
        "selector": {"tollgate": "on"},
        "namespaces": [
            {"name": "a"},
            {"name": "b", "target_refs": [{"kind": "Gateway", "name": "waypoint"}]},
        ],
    }))
    .unwrap();
    let on = std::collections::BTreeMap::from([("tollgate".to_string(), "on".to_string())]);
    assert_eq!(mesh.attach(), Attach::Selector(on.clone()));
    assert_eq!(mesh.attach_of(&mesh.namespaces[0]), Attach::Selector(on));
    let Attach::Targets(refs) = mesh.attach_of(&mesh.namespaces[1]) else {
        panic!("b names its waypoint");
    };
    assert_eq!(refs[0].group(), "gateway.networking.k8s.io");
    assert_eq!(MeshDoc::default().attach(), Attach::Everything);
}

#[test]
fn modes_shadow_every_route_of_a_stage_and_keep_the_rest() {
    let p = Policy::from_json(
        serde_json::json!({
            "version": 1,
            "modes": {"tenant": "shadow", "jwt": "enforce"},
            "routes": [
                {"name": "a", "match": {"prefix": "/a"}, "tenant": {"required": true}},
                {"name": "b", "match": {"prefix": "/b"}, "jwt": {"mode": "shadow"}},
            ],
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert!(p.routes.iter().all(|r| r.tenant.mode == Mode::Shadow));
    assert_eq!(p.fallback.tenant.mode, Mode::Shadow);
    // `enforce` keeps each route's own mode.
    assert_eq!(p.routes[0].jwt.mode, Mode::Enforce);
    assert_eq!(p.routes[1].jwt.mode, Mode::Shadow);
}

#[test]
fn jwks_cluster_names_are_checked() {
    let provider = |cluster: &str| {
        format!(
            r#"{{"version": 1, "jwt": {{"providers": [{{"name": "p", "issuer": "i", "remote_jwks": {{"uri": "https://idp.example.com/jwks", "cluster": "{cluster}"}}}}]}}}}"#
        )
    };
    let at = "jwt.providers[0].remote_jwks.cluster";
    for good in [
        "idp",
        "outbound|443||idp.example.com",
        "outbound|8443|v1|idp.example.com",
        "outbound|443||*.example.com",
        "inbound|80||",
    ] {
        assert_eq!(errors_in(&provider(good)), Vec::<String>::new(), "{good}");
    }
    let istio = "is not an Istio cluster name: expected outbound|PORT|SUBSET|HOST";
    let rows: &[(&str, &str)] = &[
        ("", "must name an Envoy cluster"),
        ("my idp", "'my idp' must not hold spaces or control characters"),
        ("idp\\t", "'idp\\t' must not hold spaces or control characters"),
        ("outbound|443|idp.example.com", istio),
        ("outbound|0||idp.example.com", istio),
        ("outbound|65536||idp.example.com", istio),
        ("outbound|+443||idp.example.com", istio),
        ("outbound|443||", istio),
        ("outbound|443||idp/x", istio),
        ("outbound|443||a|b", istio),
    ];
    for (cluster, want) in rows {
        let got = errors_in(&provider(cluster));
        assert_eq!(got.len(), 1, "{cluster}: {got:?}");
        assert!(
            got[0].starts_with(&format!("{at}: ")) && got[0].contains(want),
            "{cluster}: {got:?}"
        );
    }
}

#[test]
fn a_cluster_name_with_spaces_is_shown_as_escape_debug_displays_it() {
    for name in [
        "my idp",
        "idp\t",
        "\u{301}a b",
        "a\u{301} b",
        "it's \"x\"\n",
        "a\u{7f}\u{200b} \\",
    ] {
        let want = format!("'{}' must not hold spaces or control characters", name.escape_debug());
        assert_eq!(crate::jwt::config::check_cluster(name), Err(want), "{name:?}");
    }
}

#[test]
fn the_mesh_section_is_the_tools_to_check_and_the_filters_to_ignore() {
    let doc = serde_json::json!({"version": 1, "mesh": {"namespaces": [{"name": "Bad_NS"}], "colour": 1}});
    let errors = errors_of(doc.clone()).to_string();
    assert!(errors.contains("mesh.colour: unknown field"), "{errors}");
    assert!(errors.contains("mesh.namespaces[0].name"), "{errors}");
    // Render never sends `mesh` to a filter; one that has it runs on the rest.
    assert!(Policy::from_json(doc.to_string().as_bytes()).is_ok());
}

#[test]
fn limits_compile_with_defaults_first_and_bad_ones_are_refused_with_their_paths() {
    let doc = serde_json::json!({
        "version": 1,
        "tenants": [{"id": "STD-001"}, {"id": "acme", "tier": "premium"}],
        "defaults": {"limits": [{"name": "per-ip", "key": ["client_ip"], "requests": 20, "period": "second"}]},
        "routes": [{"name": "trino", "match": {"prefix": "/api/trino"}, "limits": [{
            "name": "trino-per-tenant", "key": ["tenant"], "requests": 50, "period": "minute", "burst": 10,
            "tiers": {"premium": 500}, "tenants": {"STD-001": 1000}, "mode": "shadow"}]}],
    });
    let p = Policy::from_json_checked(doc.to_string().as_bytes()).unwrap();
    assert_eq!(p.stages, [StageName::Tenant, StageName::Ratelimit]);
    assert_eq!(p.fallback.ratelimit.limits, [0]);
    assert_eq!(p.routes[0].ratelimit.limits, [0, 1]);
    let trino = &p.limits[1];
    assert_eq!((trino.requests, trino.burst, trino.mode), (50, 10, Mode::Shadow));
    assert_eq!(trino.requests_for(Some("std-001"), None), 1000);
    assert_eq!(p.ratelimit, crate::ratelimit::RatelimitConfig::default());

    let bad = serde_json::json!({
        "version": 1,
        "tenants": [{"id": "acme"}],
        "defaults": {"limits": [{"name": "a", "key": ["ip", "header:"], "requests": 1, "period": "second"}]},
        "routes": [{"name": "r", "limits": [
            {"name": "a", "key": ["tenant"], "requests": 1, "period": "minute"},
            {"name": "b", "key": [], "requests": 1, "period": "second"},
            {"name": "c", "key": ["tenant", "tenant"], "requests": 1, "period": "hour",
             "tiers": {"gold": 5}, "tenants": {"nobody": 5}, "scope": "global", "burst": 3},
            {"name": "d e", "key": ["route"], "requests": 5000000000u64, "period": "day"}]},
            {"name": "s", "limits": [{"name": "w", "key": ["route"], "requests": 1, "period": "week"}]}],
        "ratelimit": {"slots_per_limit": 0, "client_ip": {"xff_trusted_hops": 17}, "headers": "draft"},
    });
    let errors = errors_of(bad);
    for (path, needle) in [
        ("defaults.limits[0].key[0]", "unknown key kind 'ip'"),
        ("defaults.limits[0].key[1]", "unknown key kind 'header:'"),
        ("routes[0].limits[0].name", "duplicate limit name 'a'"),
        ("routes[0].limits[1].key", "at least one key part"),
        ("routes[1].limits[0].period", "unknown variant"),
        ("routes[0].limits[2].key[1]", "listed twice"),
        ("routes[0].limits[2].tiers.gold", "no tenant has tier 'gold'"),
        ("routes[0].limits[2].tenants.nobody", "no tenant 'nobody'"),
        ("routes[0].limits[2].scope", "needs ratelimit.service"),
        ("routes[0].limits[2].burst", "local limits only"),
        ("routes[0].limits[3].name", "may hold only"),
        ("routes[0].limits[3].requests", "at most 4294967295"),
        ("ratelimit.headers", "unknown variant"),
    ] {
        assert!(errors.has(path, needle), "{path}: {needle} in {errors}");
    }
    let many = (0..3)
        .map(|i| serde_json::json!({"name": format!("l{i}"), "key": ["route"], "requests": 1, "period": "second"}))
        .collect::<Vec<_>>();
    let too_many = errors_of(serde_json::json!({"version": 1, "defaults": {"limits": many},
        "ratelimit": {"slots_per_limit": 1_000_000}}));
    assert!(
        too_many.has("ratelimit.slots_per_limit", "3 local limits x 1000000 slots"),
        "{too_many}"
    );
    let config_errors = errors_of(serde_json::json!({"version": 1,
        "ratelimit": {"slots_per_limit": 0, "client_ip": {"xff_trusted_hops": 17},
                      "service": {"cluster": "", "timeout_ms": 0}}}));
    for path in [
        "ratelimit.slots_per_limit",
        "ratelimit.client_ip.xff_trusted_hops",
        "ratelimit.service.cluster",
        "ratelimit.service.timeout_ms",
    ] {
        assert!(
            config_errors.iter().any(|e| e.path == path),
            "{path} in {config_errors}"
        );
    }
}

/// The rate limit stage reads the headers as the client sent them: a
/// header the filters set (the tenant's, the tier's, a claim's) would be
/// keyed on the client's spelling of it, or on nothing when it sent none.
#[test]
fn limits_keyed_on_a_header_the_filters_set_are_refused() {
    let jwks: Value = serde_json::from_str(include_str!("../../../../tests/fixtures/keys/jwks.json")).unwrap();
    let doc = serde_json::json!({
        "version": 1,
        "tenants": [{"id": "acme"}],
        "tenant": {"sources": ["header"]},
        "jwt": {"providers": [{"name": "p", "issuer": "https://idp.test", "local_jwks": jwks,
                               "claim_to_headers": [{"claim_name": "org", "header_name": "x-org"}]}]},
        "routes": [{"name": "r", "limits": [
            {"name": "a", "key": ["header:X-Tenant-Id"], "requests": 1, "period": "second"},
            {"name": "b", "key": ["tenant", "header:x_tenant_tier"], "requests": 1, "period": "second"},
            {"name": "c", "key": ["header:x-org"], "requests": 1, "period": "second"},
            {"name": "d", "key": ["header:x-api-key"], "requests": 1, "period": "second"}]}],
    });
    let errors = errors_of(doc);
    for path in [
        "routes[0].limits[0].key[0]",
        "routes[0].limits[1].key[1]",
        "routes[0].limits[2].key[0]",
    ] {
        assert!(errors.has(path, "the filters set"), "{path} in {errors}");
    }
    assert!(
        !errors.iter().any(|e| e.path.starts_with("routes[0].limits[3]")),
        "{errors}"
    );
}

/// Behind a separate jwt filter, the audit filter reads an event's claims
/// from `tollgate.claims`: with an audit section the claims the rules read
/// are written there too, beside `claims_to_state`.
#[test]
fn with_audit_the_claims_rules_read_are_written_to_filter_state() {
    use crate::jwt::claims::Times;
    use crate::jwt::identity::Identity;
    let doc = |audit: bool| {
        let mut doc = serde_json::json!({
            "version": 1,
            "routes": [{"name": "a", "match": {"prefix": "/a"}, "jwt": {"requirement": "required", "rules": [
                {"claim": "scope", "contains": "read"}, {"claim": "email", "contains": "@"}]}}],
            "jwt": {"providers": [{"name": "p", "issuer": "i", "claims_to_state": ["email"],
                "hmac_secret_base64": "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="}]},
        });
        if audit {
            doc["audit"] = serde_json::json!({"sink": {"format": "log"}});
        }
        Policy::from_json(doc.to_string().as_bytes()).unwrap()
    };
    let claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_value(serde_json::json!({"sub": "u", "scope": "read", "email": "u@x", "exp": 1})).unwrap();
    let state_claims = |policy: &Policy| {
        let provider = &policy.jwt.providers[0];
        let identity = Identity::new(0, provider, claims.clone(), Times::read(&claims).unwrap());
        let state: Vec<(&str, Vec<u8>)> = identity.state().map(|(k, v)| (k, v.to_vec())).collect();
        let (_, json) = state.into_iter().find(|(k, _)| *k == crate::state::CLAIMS).unwrap();
        serde_json::from_slice::<serde_json::Value>(&json).unwrap()
    };
    let without = doc(false);
    assert_eq!(without.jwt.providers[0].claims_to_state, ["email"]);
    assert_eq!(state_claims(&without), serde_json::json!({"email": "u@x"}));
    let with = doc(true);
    assert_eq!(with.jwt.providers[0].claims_to_state, ["email", "scope"]);
    assert_eq!(
        state_claims(&with),
        serde_json::json!({"email": "u@x", "scope": "read"})
    );
}
