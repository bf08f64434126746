//! The core cases over h2c (HTTP/2 with prior knowledge, as sidecars speak
//! to each other): allowed requests with the headers the application gets,
//! each denial, and paths. Envoy's listener takes HTTP/1.1 and h2c alike
//! (`codec_type` AUTO); the echo upstream stays HTTP/1.1.

#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::tokens::{bearer, claims, claims_with, local_provider, now, remote_provider, token};
use common::{require_artefacts, tenant_denials, tenant_policy, upstream_values};
use serde_json::{json, Value};
use tollgate_h2_party::h2c;
use tollgate_integration::{paths, Bootstrap, Echo, Envoy, Filter, Request, Response};

struct Chain {
    envoy: Envoy,
    _echo: Echo,
}

/// jwt (if `with_jwt`) then tenant, in front of the echo upstream.
fn start(policy: &Value, with_jwt: bool, clusters: &[(&str, u16)]) -> Chain {
    require_artefacts();
    let echo = Echo::start();
    let mut bootstrap = Bootstrap::new(echo.port());
    if with_jwt {
        bootstrap = bootstrap.filter(Filter::tollgate("tollgate.jwt", &paths::module_wasm(), policy));
    }
    bootstrap = bootstrap.filter(Filter::tollgate("tollgate.tenant", &paths::module_wasm(), policy));
    for (name, port) in clusters {
        bootstrap = bootstrap.cluster(name, *port);
    }
    Chain {
        envoy: Envoy::start(&bootstrap.to_json()),
        _echo: echo,
    }
}

impl Chain {
    /// Sends over h2c, on a new connection.
    fn h2(&self, request: &Request) -> Response {
        let sent = h2c::send(
            self.envoy.addr(),
            &request.method,
            &request.target,
            &request.headers,
            &request.body,
        );
        match sent {
            Ok(answer) => Response {
                status: answer.status,
                headers: answer.headers,
                body: answer.body,
            },
            Err(e) => panic!(
                "h2c {} {} failed: {e}\n--- envoy log ---\n{}",
                request.method,
                request.target,
                self.envoy.log()
            ),
        }
    }

    /// Every request so far came in as HTTP/2, none as HTTP/1.1.
    fn assert_all_h2(&self, at_least: u64) {
        let stat = |name: &str| self.envoy.stat(&format!("http.ingress.{name}")).unwrap_or(0);
        let (h2, h1) = (stat("downstream_rq_http2_total"), stat("downstream_rq_http1_total"));
        assert!(h2 >= at_least, "HTTP/2 requests: {h2}, wanted {at_least}");
        assert_eq!(h1, 0, "HTTP/1.1 requests on the listener");
    }
}

/// datahub: a token and a tenant; trino: the `trino:query` scope;
/// open: neither. ACME may use every route, GLOBEX only open.
fn policy(provider: Value) -> Value {
    json!({
        "version": 1,
        "realm": "data-platform",
        "routes": [
            {"name": "datahub", "match": {"prefix": "/api/datahub"},
             "jwt": {"requirement": "required"}, "tenant": {"required": true}},
            {"name": "trino", "match": {"prefix": "/api/trino"}, "jwt": {"requirement": "required", "rules": [
                {"claim": "scope", "contains": "trino:query"},
            ]}},
            {"name": "open", "match": {"prefix": "/open"}},
        ],
        "tenants": [{"id": "ACME", "tier": "premium"}, {"id": "GLOBEX", "routes": ["open"]}],
        "tenant": {"sources": ["claim", "header"]},
        "jwt": {"providers": [provider]},
    })
}

fn assert_denied(response: &Response, status: u16, reason: &str, what: &str) {
    assert_eq!(response.status, status, "{what}: {}", response.text());
    assert_eq!(response.json()["reason"], reason, "{what}: {}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"), "{what}");
}

#[test]
fn allowed_requests_reach_the_app_with_the_verified_identity_and_tenant() {
    let chain = start(&policy(local_provider()), true, &[]);
    let auth = bearer(&claims());
    let response = chain.h2(&Request::get("/api/datahub/entities?a=1")
        .header("authorization", &auth)
        .header("x-user-id", "admin")
        .header("x-tenant-id", "acme")
        .header("x-tenant-tier", "gold"));
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["path"], "/api/datahub/entities?a=1");
    assert_eq!(upstream_values(&response, "x-user-id"), ["user@254carbon.com"]);
    assert_eq!(upstream_values(&response, "x-tenant-id"), ["ACME"]);
    assert_eq!(upstream_values(&response, "x-tenant-tier"), ["premium"]);
    assert!(
        upstream_values(&response, "authorization").is_empty(),
        "token forwarded"
    );
    // A token in the query: verified, then taken out of the path.
    let by_param = chain.h2(&Request::get(&format!(
        "/api/trino/v1?a=1&access_token={}&b=2",
        token(&claims())
    )));
    assert_eq!(by_param.status, 200, "{}", by_param.text());
    assert_eq!(by_param.json()["path"], "/api/trino/v1?a=1&b=2");
    // No token on an open route: the spoofed headers still go.
    let open = chain.h2(&Request::get("/open")
        .header("x-user-id", "admin")
        .header("x-tenant-tier", "gold"));
    assert_eq!(open.status, 200, "{}", open.text());
    assert!(upstream_values(&open, "x-user-id").is_empty());
    assert!(upstream_values(&open, "x-tenant-tier").is_empty());
    chain.assert_all_h2(3);
}

#[test]
fn every_jwt_denial_has_its_status_reason_and_challenge() {
    let chain = start(&policy(local_provider()), true, &[]);
    let valid = token(&claims());
    let (input, _) = valid.rsplit_once('.').unwrap();
    let cases: Vec<(Option<String>, &str, u16, &str)> = vec![
        (None, "/api/datahub", 401, "token_missing"),
        (
            Some("Bearer not.a.token".into()),
            "/api/datahub",
            401,
            "token_malformed",
        ),
        (
            Some(format!("Bearer {input}.c2ln")),
            "/api/datahub",
            401,
            "token_signature_invalid",
        ),
        (
            Some(bearer(&claims_with(&json!({"exp": now() - 120})))),
            "/api/datahub",
            401,
            "token_expired",
        ),
        (
            Some(bearer(&claims_with(&json!({"aud": "other-api"})))),
            "/api/datahub",
            401,
            "token_audience_invalid",
        ),
        (
            Some(bearer(&claims_with(&json!({"scope": "datahub:read"})))),
            "/api/trino",
            403,
            "insufficient_scope",
        ),
    ];
    for (auth, path, status, reason) in &cases {
        let mut request = Request::get(path);
        if let Some(a) = auth {
            request = request.header("authorization", a);
        }
        let response = chain.h2(&request);
        assert_denied(&response, *status, reason, reason);
        let challenge = response.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer realm=\"data-platform\""),
            "{reason}: {challenge}"
        );
    }
    // The token's tenant against the client's header and the tenant's routes.
    let mismatch = chain.h2(&Request::get("/api/datahub")
        .header("authorization", &format!("Bearer {valid}"))
        .header("x-tenant-id", "GLOBEX"));
    assert_denied(&mismatch, 403, "tenant_mismatch", "tenant_mismatch");
    let globex = bearer(&claims_with(&json!({"tenant": "GLOBEX"})));
    let forbidden = chain.h2(&Request::get("/api/datahub").header("authorization", &globex));
    assert_denied(&forbidden, 403, "tenant_route_forbidden", "tenant_route_forbidden");
    chain.assert_all_h2(cases.len() as u64 + 2);
}

#[test]
fn no_keys_is_503_over_h2c() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let chain = start(&policy(remote_provider("idp")), true, &[("idp", closed)]);
    let response = chain.h2(&Request::get("/api/datahub").header("authorization", &bearer(&claims())));
    assert_denied(&response, 503, "jwks_unavailable", "jwks_unavailable");
    assert!(response.header("www-authenticate").is_none());
}

/// tenant.rs's denial table, over h2c.
#[test]
fn every_tenant_denial_has_its_status_reason_and_body() {
    let chain = start(&tenant_policy(), false, &[]);
    let cases = tenant_denials();
    for (i, (path, headers, status, reason)) in cases.iter().enumerate() {
        let request_id = format!("req-{i}");
        let request = headers
            .iter()
            .fold(Request::get(path).header("x-request-id", &request_id), |r, (k, v)| {
                r.header(k, v)
            });
        let response = chain.h2(&request);
        let what = format!("case {i} {path} {headers:?}");
        assert_denied(&response, *status, reason, &what);
        assert_eq!(response.json()["request_id"], request_id.as_str(), "{what}");
        let challenge = response.header("www-authenticate");
        if *status == 401 {
            assert_eq!(challenge, Some("Bearer realm=\"tollgate-test\""), "{what}");
        } else {
            assert_eq!(challenge, None, "{what}");
        }
    }
    // Allowed: by header, by host (`:authority`), by path; the tier is the tenant's.
    for (path, headers, tenant) in [
        (
            "/api/datahub/x",
            &[("x-tenant-id", "std-001"), ("x-tenant-tier", "gold")][..],
            "STD-001",
        ),
        (
            "/api/datahub",
            &[("host", "Ned-001.tenants.example.com:8080")][..],
            "NED-001",
        ),
        ("/t/NED-001/api/datahub/entities", &[][..], "NED-001"),
    ] {
        let request = headers.iter().fold(Request::get(path), |r, (k, v)| r.header(k, v));
        let response = chain.h2(&request);
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        assert_eq!(upstream_values(&response, "x-tenant-id"), [tenant], "{path}");
        let tier = if tenant == "STD-001" { "premium" } else { "standard" };
        assert_eq!(upstream_values(&response, "x-tenant-tier"), [tier], "{path}");
        assert_eq!(response.json()["path"], path);
    }
    chain.assert_all_h2(cases.len() as u64 + 3);
}

/// A sample of paths.rs over h2c: what is decided is what is served.
#[test]
fn paths_are_decided_as_served() {
    let chain = start(&tenant_policy(), true, &[]);
    let long = format!("/open/{}", "a".repeat(8200));
    // (target, tenant, status, reason or the path the app gets)
    let cases: &[(&str, Option<&str>, u16, &str)] = &[
        (
            "/api/trino/../datahub/x?q=/../a",
            Some("STD-001"),
            200,
            "/api/datahub/x?q=/../a",
        ),
        ("/api/%64atahub", Some("STD-001"), 200, "/api/datahub"),
        ("/../../api/datahub", Some("STD-001"), 200, "/api/datahub"),
        ("/open//../api/datahub", None, 200, "/open/api/datahub"),
        (
            "/api/datahub/%2e%2e/trino",
            Some("NED-001"),
            403,
            "tenant_route_forbidden",
        ),
        ("/api//trino/query", Some("NED-001"), 403, "tenant_route_forbidden"),
        ("/open/../api/datahub", None, 400, "tenant_required"),
        ("//api/datahub", None, 400, "tenant_required"),
        ("/open/..%2fapi/datahub", None, 400, "path_invalid"),
        ("/api/datahub;x/entities", None, 400, "path_invalid"),
        (&long, None, 414, "path_too_long"),
    ];
    for (target, tenant, status, want) in cases {
        let mut request = Request::get(target);
        if let Some(t) = tenant {
            request = request.header("x-tenant-id", t);
        }
        let response = chain.h2(&request);
        let what = format!("{:.80} {tenant:?}", target);
        if *status == 200 {
            assert_eq!(response.status, 200, "{what}: {}", response.text());
            assert_eq!(response.json()["path"], *want, "{what}");
            let sent: Vec<String> = tenant.iter().map(|t| t.to_string()).collect();
            assert_eq!(upstream_values(&response, "x-tenant-id"), sent, "{what}");
        } else {
            assert_denied(&response, *status, want, &what);
        }
    }
    chain.assert_all_h2(cases.len() as u64);
}

/// jwt.rs's form-body case over h2c, where the body comes in DATA frames
/// (a large one in several): a token in it is refused, a form without one
/// reaches the app whole, an over-large one is 413.
#[test]
fn a_token_in_a_form_body_is_refused_over_h2c() {
    form_bodies_are_judged(&[]);
}

/// The same, the body followed by a trailers frame: over HTTP/2 the stream
/// then ends on the trailers, and Envoy never calls the body callback with
/// `end_of_stream` (STYLE.md's pitfall): the pipeline judges the held body
/// on the request trailers.
#[test]
fn a_token_in_a_form_body_ending_in_trailers_is_refused_over_h2c() {
    form_bodies_are_judged(&[("x-checksum".into(), b"1".to_vec())]);
}

fn form_bodies_are_judged(trailers: &[(String, Vec<u8>)]) {
    let chain = start(&policy(local_provider()), true, &[]);
    let jwt = token(&claims());
    let headers: Vec<(String, Vec<u8>)> = vec![
        ("content-type".into(), b"application/x-www-form-urlencoded".to_vec()),
        ("authorization".into(), format!("Bearer {jwt}").into_bytes()),
    ];
    let send = |body: &str| {
        let sent = h2c::send_with_trailers(
            chain.envoy.addr(),
            "POST",
            "/api/datahub/x",
            &headers,
            body.as_bytes(),
            trailers,
        );
        let answer = sent.unwrap_or_else(|e| panic!("{e}\n--- envoy log ---\n{}", chain.envoy.log()));
        Response {
            status: answer.status,
            headers: answer.headers,
            body: answer.body,
        }
    };
    let with_token = format!("a=1&access_token={jwt}&b=2");
    assert_denied(&send(&with_token), 400, "token_in_form_body", "token in the body");
    let plain = format!("a=1&b={}", "x".repeat(40 * 1024));
    let through = send(&plain);
    assert_eq!(through.status, 200, "{}", through.text());
    assert_eq!(through.json()["body"], plain.as_str());
    let over = format!("a={}", "x".repeat(70 * 1024));
    assert_eq!(send(&over).status, 413);
    chain.assert_all_h2(3);
}
