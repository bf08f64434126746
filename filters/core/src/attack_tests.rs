//! Attack review (branch `attack`): each test asserts the SAFE behaviour and
//! is ignored while the finding it proves is open.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::path::PathSettings;
use crate::policy::Policy;
use crate::request::RequestView;

fn policy() -> Policy {
    let doc = serde_json::json!({
        "version": 1,
        "defaults": {"tenant": {"required": false}},
        "routes": [
            {"name": "datahub", "match": {"prefix": "/api/datahub"}, "tenant": {"required": true}},
            {"name": "admin", "match": {"exact": "/api/admin"}, "tenant": {"required": true}},
            {"name": "reports", "match": {"prefix": "/api/reports", "methods": ["GET"]}, "tenant": {"required": true}},
            {"name": "purge", "match": {"prefix": "/api/purge", "methods": ["DELETE"]}, "tenant": {"required": true}},
        ],
        "tenants": [{"id": "STD-001"}],
    });
    Policy::from_json(doc.to_string().as_bytes()).unwrap()
}

/// The route Tollgate decides for a raw request, or `Err` when it refuses it.
fn decided(policy: &Policy, method: &str, raw_path: &str) -> Result<String, &'static str> {
    let view = RequestView::read(
        method.as_bytes(),
        Some(raw_path.as_bytes()),
        Some(b"api.example.com"),
        policy,
    )
    .map_err(|d| d.denial().reason)?;
    Ok(policy.route(&view.head()).name.clone())
}

/// Finding 1: `%2F` is kept encoded, so `/api%2Fdatahub/x` falls to the
/// default route (no tenant needed); a WSGI server (gunicorn: PATH_INFO is
/// percent-decoded), Go's pre-1.22 ServeMux (r.URL.Path) and Tomcat with
/// ALLOW_ENCODED_SLASH serve it as `/api/datahub/x`.
#[test]
fn attack_encoded_slash_is_refused_or_decided_as_decoded() {
    let p = policy();
    for raw in [
        "/api%2Fdatahub/x",
        "/api%2fdatahub",
        "/api%5Cdatahub/x",
        "/%2Fapi/datahub",
    ] {
        let got = decided(&p, "GET", raw);
        assert!(
            matches!(got.as_ref().map(String::as_str), Err(&"path_invalid") | Ok("datahub")),
            "{raw}: {got:?}"
        );
    }
}

/// Finding 2: routes match case-sensitively; Express (default
/// `caseSensitive: false`), ASP.NET and IIS route `/API/DataHub` to the
/// `/api/datahub` handler.
#[test]
fn attack_case_variant_is_decided_as_the_route() {
    let p = policy();
    for raw in ["/API/datahub/x", "/api/DataHub", "/Api/Admin"] {
        let got = decided(&p, "GET", raw);
        assert!(
            matches!(got.as_deref(), Err(_) | Ok("datahub" | "admin")),
            "{raw}: {got:?}"
        );
    }
}

/// Finding 3: `exact: /api/admin` does not match `/api/admin/`, which
/// Spring MVC 5 (trailing-slash match on by default) and Express (non-strict
/// routing by default) serve with the `/api/admin` handler.
#[test]
fn attack_trailing_slash_is_decided_as_the_exact_route() {
    let p = policy();
    let got = decided(&p, "GET", "/api/admin/");
    assert!(matches!(got.as_deref(), Err(_) | Ok("admin")), "{got:?}");
}

/// Finding 4: a route limited to `GET` is not chosen for `HEAD`, which every
/// framework serves with the GET handler (Spring, Express, Django, Go 1.22
/// `GET /x` patterns, Tomcat's HttpServlet.doHead).
#[test]
fn attack_head_is_decided_as_get() {
    let p = policy();
    let got = decided(&p, "HEAD", "/api/reports/q1");
    assert_eq!(got.as_deref(), Ok("reports"));
}

/// Finding 5: the method is compared as sent; Envoy 1.40 passes a lower-case
/// `delete` through, and Django/Flask (`REQUEST_METHOD.upper()`) act on it
/// as DELETE.
#[test]
fn attack_lower_case_method_is_refused_or_upper_cased() {
    let p = policy();
    let got = decided(&p, "delete", "/api/purge/all");
    assert!(matches!(got.as_deref(), Err(_) | Ok("purge")), "{got:?}");
}

/// Finding 6 (policy meaning): any template beats any prefix, whatever its
/// length, so a catch-all `/**` (or `/*/public/**`) left for "everything
/// else" silently takes over `/api/admin/**` from the protecting prefix.
#[test]
fn attack_catch_all_template_does_not_override_a_longer_prefix() {
    let doc = serde_json::json!({
        "version": 1,
        "routes": [
            {"name": "admin", "match": {"prefix": "/api/admin"}, "tenant": {"required": true}},
            {"name": "public", "match": {"template": "/**"}},
            {"name": "assets", "match": {"template": "/*/*/static/**"}},
        ],
        "tenants": [{"id": "STD-001"}],
    });
    let p = Policy::from_json(doc.to_string().as_bytes()).unwrap();
    for raw in ["/api/admin/users", "/api/admin/static/../users/1"] {
        assert_eq!(decided(&p, "GET", raw).as_deref(), Ok("admin"), "{raw}");
    }
    assert_eq!(decided(&p, "GET", "/api/admin/static/x").as_deref(), Ok("admin"));
}

/// Finding 13: on a `shadow` tenant route, a request whose client-sent
/// `x-tenant-id` disagrees with the VERIFIED tenant claim (would be 403
/// tenant_mismatch) goes on with the client's `x-tenant-id` left in place:
/// the application acts on NED-001 while the token proves STD-001. The same
/// holds for a jwt-shadow-denied request (no token at all): the client's
/// `x-tenant-id: STD-001` reaches the application, though no tenant was
/// "stamped".
#[test]
fn attack_shadow_mismatch_does_not_forward_the_client_tenant() {
    use crate::route::RequestHead;
    use crate::tenant::{decide, TenantRequest};
    let doc = serde_json::json!({
        "version": 1,
        "routes": [{"name": "superset", "match": {"prefix": "/api/superset"}, "tenant": {"required": true, "mode": "shadow"}}],
        "tenants": [{"id": "STD-001", "tier": "premium"}, {"id": "NED-001"}],
    });
    let p = Policy::from_json(doc.to_string().as_bytes()).unwrap();
    let headers = crate::header_map::HeaderMap::from_pairs([("x-tenant-id", b"NED-001")]);
    let values: Vec<&[u8]> = vec![b"NED-001"];
    let head = RequestHead {
        method: "GET",
        host: "api.example.com",
        path: "/api/superset/x",
    };
    let request = TenantRequest {
        head,
        claim: Some(b"STD-001"),
        header_values: &values,
        jwt_shadow_denied: false,
    };
    let d = decide(&p, &request);
    let edits = d.header_edits(&p.tenant, &headers);
    let client_tenant_kept = !edits.iter().any(|(h, _)| *h == "x-tenant-id");
    assert!(!client_tenant_kept, "x-tenant-id: NED-001 reaches the app: {edits:?}");
}

/// Finding 14 (policy meaning, client-chosen): host specificity ranks
/// before the path, so any route with `match.hosts` outranks every route
/// without, whatever their paths. On a sidecar the application answers
/// every Host, and the client picks it: `GET /api/datahub/x` with
/// `Host: www.example.com` is decided as `www` (no tenant), not `datahub`.
#[test]
fn attack_host_scoped_route_does_not_override_a_path_rule() {
    let doc = serde_json::json!({
        "version": 1,
        "routes": [
            {"name": "datahub", "match": {"prefix": "/api/datahub"}, "tenant": {"required": true}},
            {"name": "www", "match": {"hosts": ["www.example.com"]}},
        ],
        "tenants": [{"id": "STD-001"}],
    });
    let p = Policy::from_json(doc.to_string().as_bytes()).unwrap();
    let view = RequestView::new(
        b"GET",
        Some(b"/api/datahub/x"),
        Some(b"www.example.com"),
        &PathSettings::default(),
    )
    .unwrap();
    assert_eq!(p.route(&view.head()).name, "datahub");
}

/// Finding 3 (other side): `prefix: /api/datahub/` (a plain prefix) does
/// not cover `/api/datahub` itself, which Spring (`/api/datahub/**`) and
/// Express (`app.use('/api/datahub/', r)`) route to the same handlers.
#[test]
fn attack_slash_ended_prefix_covers_the_bare_path() {
    let doc = serde_json::json!({
        "version": 1,
        "routes": [{"name": "datahub", "match": {"prefix": "/api/datahub/"}, "tenant": {"required": true}}],
        "tenants": [{"id": "STD-001"}],
    });
    let p = Policy::from_json(doc.to_string().as_bytes()).unwrap();
    assert_eq!(decided(&p, "GET", "/api/datahub").as_deref(), Ok("datahub"));
}

// ---- Second attack review (branch `attack2`) ----

/// Finding 2.3: the case reading folds ASCII only. Java's
/// `equalsIgnoreCase`/`regionMatches(true, ..)` (Spring `PathPattern` with
/// `caseSensitive=false`, `AntPathMatcher` subclasses) and `toLowerCase`
/// fold `İ` (U+0130) and `ı` (U+0131) to `i`, `ſ` (U+017F) to `s`, `K`
/// (U+212A) to `k`, after percent-decoding the path. Tollgate keeps
/// `%C4%B0` as data: `/api/adm%C4%B0n` is decided `default` (no tenant)
/// while such an application serves it with the `/api/admin` handler.
#[test]
fn attack2_unicode_case_variant_is_refused() {
    let p = policy();
    for raw in [
        "/api/adm%C4%B0n",      // İ: Java folds to `admin`
        "/api/adm%C4%B1n",      // ı: Java folds to `admin`
        "/api/report%C5%BF/q1", // ſ: Java folds to `reports`
    ] {
        let got = decided(&p, "GET", raw);
        assert!(
            matches!(got.as_deref(), Err(_) | Ok("admin" | "reports")),
            "{raw}: {got:?}"
        );
    }
}

/// Finding 2.1: the method override in the query is not seen. Laravel
/// (`Request::capture` enables `httpMethodParameterOverride`), Symfony with
/// it enabled, and Express `methodOverride('_method')` act on `POST
/// /api/purge/all?_method=DELETE` as DELETE; Tollgate decides it as POST:
/// the DELETE-only `purge` route (tenant required) is not chosen, the
/// default route (no tenant) is. `strip_headers` covers only the header
/// spellings of the same override.
#[test]
fn attack2_query_method_override_is_refused_or_decided_as_overridden() {
    let p = policy();
    for raw in ["/api/purge/all?_method=DELETE", "/api/purge/all?_method=delete"] {
        let got = decided(&p, "POST", raw);
        assert!(matches!(got.as_deref(), Err(_) | Ok("purge")), "{raw}: {got:?}");
    }
}
