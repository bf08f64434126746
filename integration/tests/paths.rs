//! Paths and authorities in a real Envoy 1.40, with and without Envoy's own
//! normalization: every attack is refused, or decided as the route the
//! application (the echo upstream) actually receives.

#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{require_artefacts, tenant_policy, upstream_values};
use serde_json::{json, Value};
use tollgate_integration::{paths, Bootstrap, Echo, Envoy, Filter, Request, Response};

/// What a request must come to.
#[derive(Debug, Clone, Copy)]
enum Want<'a> {
    /// Refused by Tollgate with this status and reason.
    Refused(u16, &'a str),
    /// Reaches the application with this `:path`.
    Served(&'a str),
    /// Refused by Envoy itself (its normalization) before any filter.
    EnvoyRefused(u16),
}

struct Chain {
    envoy: Envoy,
    _echo: Echo,
}

/// jwt then tenant (the jwt filter rewrites first), or the tenant filter alone.
fn start(policy: &Value, envoy_normalizes: bool, with_jwt: bool) -> Chain {
    require_artefacts();
    let echo = Echo::start();
    let mut bootstrap = Bootstrap::new(echo.port());
    bootstrap.envoy_normalizes = envoy_normalizes;
    if with_jwt {
        bootstrap = bootstrap.filter(Filter::tollgate("tollgate.jwt", &paths::module_wasm(), policy));
    }
    bootstrap = bootstrap.filter(Filter::tollgate("tollgate.tenant", &paths::module_wasm(), policy));
    Chain {
        envoy: Envoy::start(&bootstrap.to_json()),
        _echo: echo,
    }
}

fn with_paths(paths: Value) -> Value {
    let mut policy = tenant_policy();
    policy["paths"] = paths;
    policy
}

fn check(response: &Response, target: &str, tenant: Option<&str>, want: Want<'_>, mode: &str) {
    let short = |s: &str| s.chars().take(120).collect::<String>();
    let what = format!(
        "{mode} {:?} tenant {tenant:?}: {} {}",
        short(target),
        response.status,
        short(&response.text())
    );
    match want {
        Want::Refused(status, reason) => {
            assert_eq!(response.status, status, "{what}");
            assert_eq!(response.json()["reason"], reason, "{what}");
            assert_eq!(response.header("content-type"), Some("application/json"), "{what}");
        }
        Want::Served(path) => {
            assert_eq!(response.status, 200, "{what}");
            assert_eq!(response.json()["path"], path, "{what}");
            let sent = tenant.map(|t| t.to_ascii_uppercase());
            assert_eq!(
                upstream_values(response, "x-tenant-id"),
                sent.into_iter().collect::<Vec<_>>(),
                "{what}"
            );
        }
        Want::EnvoyRefused(status) => {
            assert_eq!(response.status, status, "{what}");
            assert_eq!(response.json()["reason"], Value::Null, "{what}");
        }
    }
}

fn run(chain: &Chain, mode: &str, cases: &[(&str, Option<&str>, Want<'_>)]) {
    run_modes(
        chain,
        mode,
        &cases.iter().map(|(t, n, w)| (*t, *n, *w, *w)).collect::<Vec<_>>(),
    );
}

/// Cases with what each mode must come to: Tollgate alone, and after
/// Envoy's normalization (which turns `..;` into `..`, decodes `%41`, and
/// refuses `%00` itself).
fn run_modes(chain: &Chain, mode: &str, cases: &[(&str, Option<&str>, Want<'_>, Want<'_>)]) {
    for (target, tenant, alone, normalized) in cases {
        let want = if mode == ENVOY_NORMALIZES { normalized } else { alone };
        let mut request = Request::get(target);
        if let Some(t) = tenant {
            request = request.header("x-tenant-id", t);
        }
        check(&chain.envoy.send(&request), target, *tenant, *want, mode);
    }
}

const ENVOY_NORMALIZES: &str = "envoy normalizes";

fn modes() -> [(bool, &'static str); 2] {
    [(false, "tollgate only"), (true, ENVOY_NORMALIZES)]
}

/// NED-001 may use datahub and open, not trino; datahub needs a tenant, the
/// default route is open: a dodge shows up as a 200 from the echo upstream.
#[test]
fn dot_segments_and_slashes_are_decided_as_served() {
    use Want::*;
    let cases: &[(&str, Option<&str>, Want)] = &[
        (
            "/api/trino/../datahub/x?q=/../a",
            Some("STD-001"),
            Served("/api/datahub/x?q=/../a"),
        ),
        ("/api/%64atahub", Some("STD-001"), Served("/api/datahub")),
        (
            "/api/datahub/%2e%2e/trino",
            Some("NED-001"),
            Refused(403, "tenant_route_forbidden"),
        ),
        ("/open/../api/datahub", None, Refused(400, "tenant_required")),
        ("/open/%2e%2e/api/datahub", None, Refused(400, "tenant_required")),
        ("/open/.%2E/api/datahub", None, Refused(400, "tenant_required")),
        // RFC 3986: the empty segment is a segment; `..` removes it.
        ("/a//../b", None, Served("/a/b")),
        ("/open//../api/datahub", None, Served("/open/api/datahub")),
        ("/api//datahub", None, Refused(400, "tenant_required")),
        ("//api/datahub", None, Refused(400, "tenant_required")),
        ("/api/./datahub/", Some("STD-001"), Served("/api/datahub/")),
        ("/../../api/datahub", Some("STD-001"), Served("/api/datahub")),
        ("/open/a?b=1", None, Served("/open/a?b=1")),
    ];
    for (envoy_normalizes, mode) in modes() {
        let chain = start(&tenant_policy(), envoy_normalizes, true);
        run(&chain, mode, cases);
    }
}

#[test]
fn backslashes_are_slashes() {
    use Want::*;
    let cases: &[(&str, Option<&str>, Want)] = &[
        ("/api\\datahub", Some("STD-001"), Served("/api/datahub")),
        ("/open\\..\\api\\datahub", None, Refused(400, "tenant_required")),
        ("/api/trino\\..\\datahub", Some("NED-001"), Served("/api/datahub")),
    ];
    for (envoy_normalizes, mode) in modes() {
        let chain = start(&tenant_policy(), envoy_normalizes, false);
        run(&chain, mode, cases);
    }
}

#[test]
fn escaped_separators_next_to_dots_are_refused() {
    let cases: Vec<(&str, Option<&str>, Want)> = [
        "/open/..%2fapi/datahub",
        "/open/..%2Fapi/datahub",
        "/open/%2e%2e%2fapi/datahub",
        "/open/%2e%2e%5capi/datahub",
        "/open/..%5Capi/datahub",
        "/api/datahub%2f..%2f..%2fopen",
        "/open/.%5c..%5capi/datahub",
        "/open/%252e%252e/api/datahub",
        "/open/%c0%ae%c0%ae/api/datahub",
        "/open/%2e%2e;/api/datahub",
    ]
    .into_iter()
    .map(|p| (p, None, Want::Refused(400, "path_invalid")))
    .collect();
    let nul = [(
        "/open%00/../api",
        None,
        Want::Refused(400, "path_invalid"),
        Want::EnvoyRefused(400),
    )];
    for (envoy_normalizes, mode) in modes() {
        let chain = start(&tenant_policy(), envoy_normalizes, true);
        run(&chain, mode, &cases);
        assert_eq!(
            chain.envoy.stat("wasmcustom.tollgate.jwt.denied.path_invalid"),
            Some(cases.len() as u64),
            "{mode}"
        );
        run_modes(&chain, mode, &nul);
    }
}

#[test]
fn path_parameters_are_refused_or_stripped() {
    use Want::*;
    // Envoy's normalization itself reads `..;` as `..`.
    let dots = Refused(400, "tenant_required");
    let refuse: &[(&str, Option<&str>, Want, Want)] = &[
        ("/open/..;/api/datahub", None, Refused(400, "path_invalid"), dots),
        ("/open/..;x/api/datahub", None, Refused(400, "path_invalid"), dots),
    ];
    let refuse_both: &[(&str, Option<&str>, Want)] = &[
        ("/open/%2e%2e;/api/datahub", None, Refused(400, "path_invalid")),
        ("/api/datahub;x/entities", None, Refused(400, "path_invalid")),
        ("/api/trino;v=1", Some("NED-001"), Refused(400, "path_invalid")),
        ("/api/datahub?a=;b", Some("STD-001"), Served("/api/datahub?a=;b")),
    ];
    let strip: &[(&str, Option<&str>, Want)] = &[
        ("/open/..;/api/datahub", None, Refused(400, "tenant_required")),
        ("/open/%2e%2e;x/api/datahub", None, Refused(400, "tenant_required")),
        (
            "/api/trino;v=1",
            Some("NED-001"),
            Refused(403, "tenant_route_forbidden"),
        ),
        (
            "/api/datahub;jsessionid=1/x?a=;b",
            Some("STD-001"),
            Served("/api/datahub/x?a=;b"),
        ),
        ("/api/datahub/..;x/trino", Some("STD-001"), Served("/api/trino")),
    ];
    for (envoy_normalizes, mode) in modes() {
        let chain = start(&tenant_policy(), envoy_normalizes, true);
        run_modes(&chain, mode, refuse);
        run(&chain, mode, refuse_both);
        let chain = start(&with_paths(json!({"parameters": "strip"})), envoy_normalizes, false);
        run(&chain, mode, strip);
    }
}

#[test]
fn reject_mode_refuses_paths_not_in_normal_form() {
    use Want::*;
    // With Envoy's normalization Tollgate sees normal forms only.
    let cases: &[(&str, Option<&str>, Want, Want)] = &[
        (
            "/api/datahub/x?q=/../a",
            Some("STD-001"),
            Served("/api/datahub/x?q=/../a"),
            Served("/api/datahub/x?q=/../a"),
        ),
        ("/open/%41", None, Refused(400, "path_invalid"), Served("/open/A")),
        (
            "/open/../api/datahub",
            None,
            Refused(400, "path_invalid"),
            Refused(400, "tenant_required"),
        ),
        (
            "/open/x%2fy",
            None,
            Refused(400, "path_invalid"),
            Refused(400, "path_invalid"),
        ),
    ];
    for (envoy_normalizes, mode) in modes() {
        let chain = start(&with_paths(json!({"normalization": "reject"})), envoy_normalizes, true);
        run_modes(&chain, mode, cases);
    }
}

#[test]
fn over_long_paths_are_refused_never_cut() {
    use Want::*;
    let long = format!("/open/{}/../../api/datahub", "a".repeat(9000));
    let over = format!("/open/{}", "a".repeat(8200));
    // Envoy's normalization shortens `long` before Tollgate sees it.
    let cases: Vec<(&str, Option<&str>, Want, Want)> = vec![
        (
            &over,
            None,
            Refused(414, "path_too_long"),
            Refused(414, "path_too_long"),
        ),
        (
            &long,
            None,
            Refused(414, "path_too_long"),
            Refused(400, "tenant_required"),
        ),
    ];
    // With room for it, the `..` after 9000 bytes is not lost.
    let roomy: Vec<(&str, Option<&str>, Want)> = vec![
        (&long, None, Refused(400, "tenant_required")),
        (&long, Some("STD-001"), Served("/api/datahub")),
    ];
    for (envoy_normalizes, mode) in modes() {
        let chain = start(&tenant_policy(), envoy_normalizes, true);
        run_modes(&chain, mode, &cases);
        let response = chain.envoy.send(&Request::get(&over).header("x-request-id", "long-1"));
        assert_eq!(
            response.json(),
            json!({"error": "request path is too long", "reason": "path_too_long", "request_id": "long-1"})
        );
        let chain = start(&with_paths(json!({"max_bytes": 16384})), envoy_normalizes, true);
        run(&chain, mode, &roomy);
    }
}

#[test]
fn malformed_authorities_are_refused() {
    for (envoy_normalizes, mode) in modes() {
        let chain = start(&tenant_policy(), envoy_normalizes, false);
        for host in [
            "api.example.com:abc",
            "api.example.com:99999",
            "user@api.example.com",
            "api.example.com:80:80",
            "[::1",
            "api..example.com",
            "api.example.com:",
        ] {
            let response = chain.envoy.send(&Request::get("/open/x").header("host", host));
            check(&response, host, None, Want::Refused(400, "authority_invalid"), mode);
        }
        let fine = chain.envoy.send(&Request::get("/open/x").header("host", "[::1]:8080"));
        check(&fine, "[::1]:8080", None, Want::Served("/open/x"), mode);
        assert_eq!(
            chain.envoy.stat("wasmcustom.tollgate.tenant.denied.authority_invalid"),
            Some(7),
            "{mode}"
        );
    }
}

/// `%2F` is data to Tollgate, a `/` to an application that decodes it
/// (Go's ServeMux, many routers): refused where that reading picks another
/// route or path tenant, served where it does not.
#[test]
fn escaped_slashes_that_would_reroute_are_refused() {
    use Want::*;
    let cases: &[(&str, Option<&str>, Want)] = &[
        ("/api%2Fdatahub/x", None, Refused(400, "path_invalid")),
        ("/api%5Cdatahub/x", None, Refused(400, "path_invalid")),
        ("/api%252Fdatahub/x", None, Refused(400, "path_invalid")),
        ("/t%2FSTD-001/api/datahub", None, Refused(400, "path_invalid")),
        ("/api/datahub/urn%2Fx", Some("STD-001"), Served("/api/datahub/urn%2Fx")),
        ("/open/a%2Fb", None, Served("/open/a%2Fb")),
    ];
    let strict = with_paths(json!({"escaped_slashes": "reject"}));
    let strict_cases: &[(&str, Option<&str>, Want)] = &[
        ("/api/datahub/urn%2Fx", Some("STD-001"), Refused(400, "path_invalid")),
        ("/open/a%5cb", None, Refused(400, "path_invalid")),
        ("/open/a", None, Served("/open/a")),
    ];
    for (envoy_normalizes, mode) in modes() {
        let chain = start(&tenant_policy(), envoy_normalizes, true);
        run(&chain, mode, cases);
        let chain = start(&strict, envoy_normalizes, false);
        run(&chain, mode, strict_cases);
    }
}

/// Express, ASP.NET and IIS route without regard to case: a path that would
/// route elsewhere read that way is refused; one that routes the same is
/// served as sent. `paths.case: sensitive` turns the reading off.
#[test]
fn case_variants_that_would_reroute_are_refused() {
    use Want::*;
    let cases: &[(&str, Option<&str>, Want)] = &[
        ("/API/DataHub/x", None, Refused(400, "path_invalid")),
        ("/Api/datahub", Some("STD-001"), Refused(400, "path_invalid")),
        ("/T/STD-001/api/datahub", None, Refused(400, "path_invalid")),
        ("/Open/x", None, Refused(400, "path_invalid")),
        ("/api/datahub/Urn-X", Some("STD-001"), Served("/api/datahub/Urn-X")),
        ("/Other/Page", None, Served("/Other/Page")),
    ];
    let sensitive = with_paths(json!({"case": "sensitive"}));
    let sensitive_cases: &[(&str, Option<&str>, Want)] = &[
        ("/API/DataHub/x", None, Served("/API/DataHub/x")),
        ("/api/datahub/x", None, Refused(400, "tenant_required")),
    ];
    for (envoy_normalizes, mode) in modes() {
        let chain = start(&tenant_policy(), envoy_normalizes, true);
        run(&chain, mode, cases);
    }
    let chain = start(&sensitive, false, false);
    run(&chain, "case sensitive", sensitive_cases);
}

/// Spring 5 and Express serve `/api/admin/` with the `/api/admin` handler,
/// and `/api/reports` under `app.use('/api/reports/')`: an exact path and
/// a slash-ended prefix are decided with or without the trailing `/`.
#[test]
fn trailing_slash_variants_are_decided_as_the_route() {
    use Want::*;
    let mut policy = tenant_policy();
    let routes = policy["routes"].as_array_mut().unwrap();
    routes.push(json!({"name": "admin", "match": {"exact": "/api/admin"}, "tenant": {"required": true}}));
    routes.push(json!({"name": "reports", "match": {"prefix": "/api/reports/"}, "tenant": {"required": true}}));
    let cases: &[(&str, Option<&str>, Want)] = &[
        ("/api/admin/", None, Refused(400, "tenant_required")),
        ("/api/admin/", Some("STD-001"), Served("/api/admin/")),
        ("/api/reports", None, Refused(400, "tenant_required")),
        ("/api/reports", Some("STD-001"), Served("/api/reports")),
        ("/api/adminx", None, Served("/api/adminx")),
    ];
    for (envoy_normalizes, mode) in modes() {
        let chain = start(&policy, envoy_normalizes, false);
        run(&chain, mode, cases);
    }
}
