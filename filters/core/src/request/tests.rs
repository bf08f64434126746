use super::*;
use crate::path::{Normalization, Parameters, PathSettings};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const HOST: Option<&[u8]> = Some(b"API.example.com:8080");

fn view(path: &str, settings: &PathSettings) -> Result<RequestView, RequestDenial> {
    RequestView::new(b"GET", Some(path.as_bytes()), HOST, settings)
}

fn served(path: &str, settings: &PathSettings) -> Result<(String, Option<String>), RequestDenial> {
    view(path, settings).map(|v| {
        let served = v.served_path.map(|s| String::from_utf8_lossy(&s).into_owned());
        (v.path, served)
    })
}

#[test]
fn rewrite_serves_the_decided_path_with_the_query_as_sent() {
    let s = PathSettings::default();
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("/api/datahub", "/api/datahub", None),
        ("/api/datahub?x=/../y&a=%2e", "/api/datahub", None),
        ("/api/trino/../datahub", "/api/datahub", Some("/api/datahub")),
        (
            "/api/trino/../datahub?x=/../y",
            "/api/datahub",
            Some("/api/datahub?x=/../y"),
        ),
        ("/a//../b?", "/a/b", Some("/a/b?")),
        ("/api\\datahub", "/api/datahub", Some("/api/datahub")),
        ("/api/%64atahub?q=%64", "/api/datahub", Some("/api/datahub?q=%64")),
        ("/a%2fb", "/a%2Fb", Some("/a%2Fb")),
        ("/a%2Fb", "/a%2Fb", None),
    ];
    for (raw, path, want) in cases {
        assert_eq!(
            served(raw, &s),
            Ok((path.to_string(), want.map(String::from))),
            "input {raw:?}"
        );
    }
}

#[test]
fn reject_mode_refuses_paths_not_in_normal_form() {
    let s = PathSettings {
        normalization: Normalization::Reject,
        ..PathSettings::default()
    };
    assert_eq!(served("/api/datahub?x=/../y", &s), Ok(("/api/datahub".into(), None)));
    for raw in [
        "/api/trino/../datahub",
        "/a//b",
        "/api/%64atahub",
        "/a\\b",
        "/a%2fb",
        "/a/",
    ] {
        let want = if raw == "/a/" {
            Ok(("/a/".to_string(), None))
        } else {
            Err(RequestDenial::PathInvalid("is not in normal form"))
        };
        assert_eq!(served(raw, &s), want, "input {raw:?}");
    }
}

#[test]
fn strip_mode_rewrites_parameters_away() {
    let s = PathSettings {
        parameters: Parameters::Strip,
        ..PathSettings::default()
    };
    assert_eq!(
        served("/api/datahub/..;x/trino?a=;b", &s),
        Ok(("/api/trino".into(), Some("/api/trino?a=;b".into())))
    );
    assert_eq!(
        served("/api/datahub/..;x/trino", &PathSettings::default()),
        Err(RequestDenial::PathInvalid("has a ';' path parameter"))
    );
}

#[test]
fn over_long_paths_are_refused_not_cut() {
    let s = PathSettings {
        max_bytes: 32,
        ..PathSettings::default()
    };
    let at_limit = format!("/{}", "a".repeat(31));
    assert!(view(&at_limit, &s).is_ok());
    let over = format!("/{}", "a".repeat(32));
    assert_eq!(view(&over, &s), Err(RequestDenial::PathTooLong));
    // The query counts: the whole `:path` is what Envoy forwards.
    assert_eq!(
        view("/a?bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", &s),
        Err(RequestDenial::PathTooLong)
    );
    let long_then_dots = format!("/open/{}/../../api/datahub", "a".repeat(9000));
    assert_eq!(
        view(&long_then_dots, &PathSettings::default()),
        Err(RequestDenial::PathTooLong)
    );
    let roomy = PathSettings {
        max_bytes: 16384,
        ..PathSettings::default()
    };
    assert_eq!(view(&long_then_dots, &roomy).map(|v| v.path), Ok("/api/datahub".into()));
}

#[test]
fn authority_and_method() {
    let s = PathSettings::default();
    let ok = RequestView::new(b"POST", Some(b"/x"), Some(b"Api.Example.com."), &s);
    assert_eq!(
        ok,
        Ok(RequestView {
            method: "POST".into(),
            host: "api.example.com".into(),
            path: "/x".into(),
            served_path: None,
            method_overrides: Vec::new(),
            route: None,
        })
    );
    let overridden = RequestView::new(b"POST", Some(b"/x?a=1;%5Fmethod=put&_METHOD=delete"), Some(b"h"), &s);
    assert_eq!(
        overridden.map(|v| v.method_overrides),
        Ok(vec!["PUT".to_string(), "DELETE".to_string()])
    );
    let lower = RequestView::new(b"delete", Some(b"/x"), Some(b"h"), &s);
    assert_eq!(lower.map(|v| v.method), Ok("DELETE".to_string()));
    for (authority, why) in [
        (None, "has an empty or over-long host"),
        (Some(&b""[..]), "has an empty or over-long host"),
        (Some(&b"user@api.example.com"[..]), "is not a host name"),
        (Some(&b"api.example.com:x"[..]), "has a bad port"),
    ] {
        assert_eq!(
            RequestView::new(b"GET", Some(b"/x"), authority, &s),
            Err(RequestDenial::AuthorityInvalid(why))
        );
    }
    assert_eq!(
        RequestView::new(b"GET", None, HOST, &s),
        Err(RequestDenial::PathInvalid("has no :path"))
    );
}

#[test]
fn options_star_is_the_default_route_served_as_is() {
    let s = PathSettings::default();
    let v = RequestView::new(b"OPTIONS", Some(b"*"), HOST, &s);
    assert_eq!(v.map(|v| (v.path, v.served_path)), Ok(("*".into(), None)));
    assert_eq!(
        RequestView::new(b"GET", Some(b"*"), HOST, &s),
        Err(RequestDenial::PathInvalid("does not start with '/'"))
    );
}

#[test]
fn denials_have_status_reason_and_counter() {
    let cases = [
        (RequestDenial::PathTooLong, 414, "path_too_long"),
        (RequestDenial::PathInvalid("x"), 400, "path_invalid"),
        (RequestDenial::AuthorityInvalid("x"), 400, "authority_invalid"),
        (RequestDenial::Unreadable, 500, "request_unreadable"),
    ];
    for (d, status, reason) in cases {
        assert_eq!((d.denial().status, d.denial().reason), (status, reason));
        assert_eq!(d.metric("tenant"), format!("tollgate.tenant.denied.{reason}"));
        assert!(crate::tenant::metric_names().contains(&d.metric("tenant")));
        assert!(crate::jwt::metric_names().contains(&d.metric("jwt")));
        assert_eq!(metric_names("jwt")[d.metric_index()], d.metric("jwt"));
        assert_eq!(
            crate::tenant::metric_names()[crate::tenant::request_metric_index(d)],
            d.metric("tenant")
        );
        assert_eq!(
            crate::jwt::metric_names()[crate::jwt::request_metric_index(d)],
            d.metric("jwt")
        );
    }
    let indices: Vec<usize> = cases.iter().map(|(d, _, _)| d.metric_index()).collect();
    assert_eq!(indices, [0, 1, 2, 3]);
    let body = RequestDenial::PathTooLong.denial().reply(Some(b"r-1"), "realm").body;
    assert_eq!(
        String::from_utf8_lossy(&body),
        r#"{"error":"request path is too long","reason":"path_too_long","request_id":"r-1"}"#
    );
}

#[test]
fn escaped_slashes_are_refused_where_decoding_them_reroutes() {
    let policy = |extra: &str| {
        let text = format!(
            r#"{{"version": 1, "routes": [
                {{"name": "datahub", "match": {{"prefix": "/api/datahub"}}}},
                {{"name": "entity", "match": {{"template": "/api/entities/*"}}}}
            ], "tenant": {{"sources": ["path"], "path_prefix": "/t/{{tenant}}"}}{extra}}}"#
        );
        Policy::from_json(text.as_bytes()).unwrap()
    };
    let read = |p: &Policy, path: &str| RequestView::read(b"GET", Some(path.as_bytes()), HOST, p).map(|v| v.path);
    let rerouting: Result<String, _> = Err(RequestDenial::PathInvalid(path::REROUTING_SLASH.0));
    let default = policy("");
    let cases: &[(&str, Result<String, RequestDenial>)] = &[
        // Data inside one route's segment: kept.
        ("/api/datahub/urn%2Fx", Ok("/api/datahub/urn%2Fx".into())),
        ("/api/datahub/a%5Cb", Ok("/api/datahub/a%5Cb".into())),
        ("/api/datahub/a%252Fb", Ok("/api/datahub/a%252Fb".into())),
        // Another route, or the default route, once decoded: refused.
        ("/api%2Fdatahub", rerouting.clone()),
        ("/api%5Cdatahub/x", rerouting.clone()),
        ("/api%252Fdatahub", rerouting.clone()),
        ("/api/entities/a%2Fb", rerouting.clone()),
        // Another path tenant once decoded.
        ("/t/acme%2Fx/api", rerouting.clone()),
        ("/t%2Facme/api", rerouting.clone()),
        // A `%` left over after decoding is data.
        ("/api%2Fdatahub%25", Ok("/api%2Fdatahub%25".into())),
        ("/api%2Fdatahub%2F%25", rerouting.clone()),
        ("/api/datahub/a%2F%25", Ok("/api/datahub/a%2F%25".into())),
        ("/files/100%25", Ok("/files/100%25".into())),
    ];
    for (path, want) in cases {
        assert_eq!(&read(&default, path), want, "{path}");
    }
    let strict = policy(r#", "paths": {"escaped_slashes": "reject"}"#);
    let escaped = Err(RequestDenial::PathInvalid(path::ESCAPED_SLASH.0));
    assert_eq!(read(&strict, "/api/datahub/urn%2Fx"), escaped);
    assert_eq!(read(&strict, "/api/datahub/a%5cb"), escaped);
    assert_eq!(read(&strict, "/api/datahub/a%252Fb"), Ok("/api/datahub/a%252Fb".into()));
    assert_eq!(read(&strict, "/api/datahub/x"), Ok("/api/datahub/x".into()));
}

#[test]
fn case_readings_are_refused_where_they_reroute() {
    let policy = |extra: &str| {
        let text = format!(
            r#"{{"version": 1, "routes": [
                {{"name": "datahub", "match": {{"prefix": "/api/datahub"}}}},
                {{"name": "admin", "match": {{"exact": "/api/admin"}}}},
                {{"name": "entity", "match": {{"template": "/api/entities/*"}}}},
                {{"name": "camel", "match": {{"exact": "/api/getUser"}}}}
            ], "tenant": {{"sources": ["path"], "path_prefix": "/t/{{tenant}}"}}{extra}}}"#
        );
        Policy::from_json(text.as_bytes()).unwrap()
    };
    let read = |p: &Policy, path: &str| RequestView::read(b"GET", Some(path.as_bytes()), HOST, p).map(|v| v.path);
    let case: Result<String, _> = Err(RequestDenial::PathInvalid(path::REROUTING_CASE.0));
    let ok = |p: &str| Ok(p.to_string());
    let default = policy("");
    let cases: &[(&str, Result<String, RequestDenial>)] = &[
        // Readings that route the same: kept.
        ("/api/datahub/Urn-X", ok("/api/datahub/Urn-X")),
        ("/api/datahub/", ok("/api/datahub/")),
        ("/api/entities/Ab", ok("/api/entities/Ab")),
        ("/api/entities/Ab/", ok("/api/entities/Ab/")),
        ("/api/admin/", ok("/api/admin/")),
        ("/t/ACME/api/datahub", ok("/t/ACME/api/datahub")),
        ("/api/getUser", ok("/api/getUser")),
        ("/Other/Path/", ok("/Other/Path/")),
        ("/api/datahub/a%2Fb", ok("/api/datahub/a%2Fb")),
        // Another route without regard to case: refused.
        ("/API/datahub/x", case.clone()),
        ("/Api/Admin", case.clone()),
        ("/api/Entities/x", case.clone()),
        ("/T/acme/api/datahub", case.clone()),
        ("/api/getuser", case.clone()),
        // Combined with a decoded escaped slash, then case.
        ("/API%2Fdatahub", case.clone()),
    ];
    for (path, want) in cases {
        assert_eq!(&read(&default, path), want, "{path}");
    }
    let sensitive = policy(r#", "paths": {"case": "sensitive"}"#);
    assert_eq!(read(&sensitive, "/API/datahub/x"), ok("/API/datahub/x"));
    assert_eq!(read(&sensitive, "/api/getuser"), ok("/api/getuser"));
    assert_eq!(read(&sensitive, "/T/acme/api/datahub"), ok("/T/acme/api/datahub"));
}

#[test]
fn the_view_keeps_the_route_it_decided_on() {
    let policy = Policy::from_json(
        br#"{"version": 1, "routes": [
            {"name": "a", "match": {"prefix": "/a"}},
            {"name": "b", "match": {"prefix": "/b"}}
        ]}"#,
    )
    .unwrap();
    for (path, route) in [("/b/x", "b"), ("/a", "a"), ("/c", "default")] {
        let view = RequestView::read(b"GET", Some(path.as_bytes()), Some(b"h"), &policy).unwrap();
        assert!(view.route.is_some());
        assert_eq!(view.route(&policy).name, route);
        assert_eq!(policy.route(&view.head()).name, route);
    }
}

fn headers(pairs: &[(&str, &str)]) -> crate::header_map::HeaderMap {
    pairs.iter().map(|(k, v)| (*k, v.as_bytes())).collect()
}

#[test]
fn acted_methods_are_the_method_the_query_overrides_and_the_headers_left_in() {
    let none: Vec<String> = Vec::new();
    let h = headers(&[
        ("x-http-method-override", "put"),
        ("X_Forwarded_Method", " patch , delete,"),
        ("x-original-method", "POST"),
        ("x-http-method-overrides", "TRACE"),
        ("x-method", "TRACE"),
    ]);
    assert_eq!(
        acted_methods("get", b"/x?_method=post&_method=GET", &h, &none),
        ["GET", "POST", "PUT", "PATCH", "DELETE"]
    );
    let strip = vec!["x-http-method-override".to_string(), "x-forwarded-method".to_string()];
    assert_eq!(acted_methods("GET", b"/x", &h, &strip), ["GET", "POST"]);
    assert_eq!(acted_methods("HEAD", b"/x?", &headers(&[]), &none), ["HEAD"]);
    // The query starts at the first `?`; `_method` in the path is not one.
    assert_eq!(acted_methods("GET", b"/_method=POST/x", &headers(&[]), &none), ["GET"]);
    assert_eq!(header_method_overrides(&h, &strip), ["POST"]);
}

#[test]
fn a_method_override_from_a_body_or_header_must_keep_the_route() {
    let doc = serde_json::json!({
        "version": 1,
        "routes": [
            {"name": "purge", "match": {"prefix": "/api/purge", "methods": ["DELETE"]}},
            {"name": "reports", "match": {"prefix": "/api/reports", "methods": ["GET", "POST"]}},
        ],
    });
    let policy = Policy::from_json(doc.to_string().as_bytes()).unwrap();
    let view = RequestView::read(b"POST", Some(b"/api/purge/all"), Some(b"h"), &policy).unwrap();
    assert_eq!(
        view.check_method_overrides(&policy, &["DELETE".to_string()]),
        Err(RequestDenial::PathInvalid(path::REROUTING_METHOD.0))
    );
    assert_eq!(view.check_method_overrides(&policy, &["PUT".to_string()]), Ok(()));
    let view = RequestView::read(b"POST", Some(b"/api/reports/q"), Some(b"h"), &policy).unwrap();
    assert_eq!(view.check_method_overrides(&policy, &["head".to_string()]), Ok(()));
    assert_eq!(view.check_method_overrides(&policy, &[]), Ok(()));
}
