//! Attack review (branch `attack`) against a real Envoy 1.40. Each
//! `#[ignore]`d test asserts the SAFE behaviour and fails today: it proves
//! its finding. The others record attacks that held.

#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{require_artefacts, tenant_policy, upstream_values};
use serde_json::{json, Value};
use tollgate_integration::{paths, Bootstrap, Echo, Envoy, Filter, Request, Response};

struct Chain {
    envoy: Envoy,
    _echo: Echo,
}

/// The tenant filter (Istio's defaults: Envoy normalizes, `%2F` kept).
fn start(policy: &Value, envoy_normalizes: bool) -> Chain {
    require_artefacts();
    let echo = Echo::start();
    let mut bootstrap = Bootstrap::new(echo.port());
    bootstrap.envoy_normalizes = envoy_normalizes;
    bootstrap = bootstrap.filter(Filter::tollgate("tollgate.tenant", &paths::module_wasm(), policy));
    Chain {
        envoy: Envoy::start(&bootstrap.to_json()),
        _echo: echo,
    }
}

fn policy() -> Value {
    let mut p = tenant_policy();
    p["routes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "purge", "match": {"prefix": "/api/purge", "methods": ["DELETE"]}, "tenant": {"required": true}}));
    p
}

fn what(r: &Response) -> String {
    format!("{} {}", r.status, r.text().chars().take(300).collect::<String>())
}

/// Served by the application without any tenant stamped: the route's
/// `tenant.required` was dodged.
fn served_without_tenant(r: &Response) -> bool {
    r.status == 200 && upstream_values(r, "x-tenant-id").is_empty()
}

/// Finding 1: `GET /api%2Fdatahub/x` (no tenant) is decided as the default
/// route and served as sent; gunicorn/WSGI (PATH_INFO decoded), Go's
/// pre-1.22 mux and Tomcat with ALLOW_ENCODED_SLASH serve `/api/datahub/x`.
/// Istio's default (`pathNormalization: BASE`) keeps `%2F` unchanged.
#[test]
fn attack_encoded_slash_reaches_a_tenant_route_without_a_tenant() {
    for normalizes in [false, true] {
        let chain = start(&policy(), normalizes);
        for target in ["/api%2Fdatahub/x", "/api%2fdatahub", "/t%2FNED-001/api/trino"] {
            let r = chain.envoy.send(&Request::get(target));
            assert!(
                !served_without_tenant(&r),
                "normalizes={normalizes} {target}: {}",
                what(&r)
            );
        }
    }
}

/// Finding 2: `GET /API/DataHub/x` is the default route to Tollgate, and
/// the `/api/datahub` handler to Express (case-insensitive by default) or
/// ASP.NET.
#[test]
fn attack_case_variant_reaches_a_tenant_route_without_a_tenant() {
    let chain = start(&policy(), true);
    for target in ["/API/DataHub/x", "/Api/datahub"] {
        let r = chain.envoy.send(&Request::get(target));
        assert!(!served_without_tenant(&r), "{target}: {}", what(&r));
    }
}

/// Finding 5: over HTTP/2 (h2c prior knowledge), Envoy 1.40 passes a
/// lower-case `:method: delete` through (HTTP/1.1 `delete` is refused by
/// Envoy's codec: held); Tollgate compares it as sent, so a
/// `methods: [DELETE]` route (and a `methods: [DELETE]` claim rule) is
/// dodged, and Django/Flask (`REQUEST_METHOD.upper()`) act on it as DELETE.
#[test]
fn attack_lower_case_method_dodges_a_method_route() {
    let chain = start(&policy(), true);
    let r = chain.envoy.send(&Request::get("/api/purge/all").method("delete"));
    assert!(!served_without_tenant(&r), "h1: {}", what(&r));
    let got = h2_run(&chain, h2("delete", "api.example.com", "/api/purge/all", &[]));
    assert!(
        !(got.starts_with("200 ") && got.contains(r#""method":"delete""#)),
        "h2 lower-case method served without a tenant: {got}"
    );
}

/// Finding 9: with `host` a tenant source, `Host: std-001...` decides the
/// tenant, and `X-Forwarded-Host: ned-001...` (or `Forwarded: host=`) goes
/// through untouched to an application that trusts its proxy (Django
/// USE_X_FORWARDED_HOST, Express `trust proxy`, Spring ForwardedHeaderFilter)
/// and derives the tenant from the host it sees. Same for the path
/// (`X-Forwarded-Prefix`, `X-Original-URL`) and method
/// (`X-HTTP-Method-Override`) overrides, which bypass method-limited rules.
#[test]
fn attack_override_headers_reach_the_application() {
    let chain = start(&policy(), true);
    let r = chain.envoy.send(
        &Request::get("/api/datahub/x")
            .header("host", "std-001.tenants.example.com")
            .header("x-forwarded-host", "ned-001.tenants.example.com")
            .header("forwarded", "host=ned-001.tenants.example.com")
            .header("x-original-url", "/api/trino/admin")
            .header("x-original-uri", "/api/trino/admin")
            .header("x_forwarded_uri", "/api/trino/admin")
            .header("x-forwarded-path", "/api/trino/admin")
            .header("x-http-method-override", "DELETE")
            .header("x-original-method", "DELETE")
            .header("x-forwarded-method", "DELETE"),
    );
    assert_eq!(r.status, 200, "{}", what(&r));
    assert_eq!(upstream_values(&r, "x-tenant-id"), vec!["STD-001".to_string()]);
    for h in [
        "x-forwarded-host",
        "forwarded",
        "x-original-url",
        "x-original-uri",
        "x_forwarded_uri",
        "x-forwarded-path",
        "x-http-method-override",
        "x-original-method",
        "x-forwarded-method",
    ] {
        assert!(upstream_values(&r, h).is_empty(), "{h} reached the app: {}", what(&r));
    }
}

/// Held: absolute-form targets, two Host headers, `OPTIONS *`, CONNECT and
/// a tenant id hidden in percent-encoding or Unicode are refused or decided
/// as served.
#[test]
fn held_request_target_and_authority_variants() {
    let chain = start(&policy(), false);
    // Absolute form: Envoy takes the authority from the URL; the tenant
    // the app gets matches the Host it gets.
    let r = chain.envoy.send(
        &Request::get("http://std-001.tenants.example.com/api/datahub/x").header("host", "ned-001.tenants.example.com"),
    );
    eprintln!("absolute-form: {}", what(&r));
    if r.status == 200 {
        let host = upstream_values(&r, "host");
        let tenant = upstream_values(&r, "x-tenant-id");
        assert_eq!(tenant.len(), 1, "{}", what(&r));
        assert!(
            host.iter().all(|h| h.to_ascii_uppercase().starts_with(&tenant[0])),
            "{}",
            what(&r)
        );
    }
    // Two Host headers.
    let r = chain.envoy.send(
        &Request::get("/api/datahub/x")
            .header("host", "std-001.tenants.example.com")
            .header("host", "ned-001.tenants.example.com"),
    );
    eprintln!("two hosts: {}", what(&r));
    assert_ne!(r.status, 200, "{}", what(&r));
    // A percent-encoded tenant in the path prefix: decoded and checked.
    let r = chain.envoy.send(&Request::get("/t/%4EED-001/api/trino"));
    assert_eq!(r.status, 403, "{}", what(&r));
    // Unicode lookalike tenant: malformed.
    let r = chain.envoy.send(&Request::get("/t/N%C3%89D-001/api/datahub"));
    assert_eq!(r.status, 400, "{}", what(&r));
    // Comma-joined tenant header: malformed, not the first value.
    let r = chain
        .envoy
        .send(&Request::get("/api/datahub/x").header("x-tenant-id", "NED-001,STD-001"));
    assert_eq!(r.status, 400, "{}", what(&r));
    // OPTIONS * and CONNECT.
    let r = chain.envoy.send(&Request::get("*").method("OPTIONS"));
    eprintln!("OPTIONS *: {}", what(&r));
    let r = chain
        .envoy
        .send(&Request::get("std-001.tenants.example.com:443").method("CONNECT"));
    eprintln!("CONNECT: {}", what(&r));
    assert!(
        !served_without_tenant(&r) || r.json()["path"] == Value::Null,
        "{}",
        what(&r)
    );
}

/// A minimal HTTP/2 prior-knowledge (h2c) client: HPACK literals without
/// indexing or Huffman, so pseudo-headers and `host` go out exactly as
/// given. Returns the response body, or what ended the stream.
fn h2_send(addr: std::net::SocketAddr, headers: &[(&str, &str)]) -> String {
    use std::io::{Read, Write};
    fn int(out: &mut Vec<u8>, prefix_bits: u8, first: u8, mut n: usize) {
        let max = (1usize << prefix_bits) - 1;
        if n < max {
            out.push(first | n as u8);
            return;
        }
        out.push(first | max as u8);
        n -= max;
        while n >= 128 {
            out.push((n % 128) as u8 | 0x80);
            n /= 128;
        }
        out.push(n as u8);
    }
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }
    let mut block = Vec::new();
    for (name, value) in headers {
        block.push(0x00);
        int(&mut block, 7, 0, name.len());
        block.extend_from_slice(name.as_bytes());
        int(&mut block, 7, 0, value.len());
        block.extend_from_slice(value.as_bytes());
    }
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[]));
    out.extend(frame(1, 0x5, 1, &block));
    s.write_all(&out).unwrap();
    let mut body = Vec::new();
    let mut first_header_byte = None;
    loop {
        let mut head = [0u8; 9];
        if s.read_exact(&mut head).is_err() {
            return format!("closed; body so far {}", String::from_utf8_lossy(&body));
        }
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).unwrap();
        let (kind, flags) = (head[3], head[4]);
        match kind {
            0 => body.extend_from_slice(&payload),
            1 => first_header_byte = first_header_byte.or(payload.first().copied()),
            3 => return format!("RST_STREAM {:?}", payload),
            7 => return format!("GOAWAY {:?}", payload),
            4 if flags & 1 == 0 => s.write_all(&frame(4, 1, 0, &[])).unwrap(),
            _ => {}
        }
        if (kind == 0 || kind == 1) && flags & 1 == 1 {
            let status = if first_header_byte == Some(0x88) {
                "200"
            } else {
                "not-200"
            };
            return format!("{status} {}", String::from_utf8_lossy(&body));
        }
    }
}

fn h2(method: &str, authority: &str, path: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = vec![
        (":method".into(), method.into()),
        (":scheme".into(), "http".into()),
        (":authority".into(), authority.into()),
        (":path".into(), path.into()),
    ];
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    h
}

fn h2_run(chain: &Chain, headers: Vec<(String, String)>) -> String {
    let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let got = h2_send(chain.envoy.addr(), &refs);
    eprintln!("h2 {refs:?} -> {}", got.chars().take(400).collect::<String>());
    got
}

/// Held over h2c: a `host` header that disagrees with `:authority` is
/// dropped by Envoy (the application gets the authority Tollgate decided
/// on); two tenant headers or spellings are a mismatch; absolute-form,
/// `*`, spaces, DEL and NUL in `:path` or values are refused by Envoy.
#[test]
fn held_h2_authority_duplicates_and_bad_targets() {
    let chain = start(&policy(), true);
    let got = h2_run(
        &chain,
        h2(
            "GET",
            "std-001.tenants.example.com",
            "/api/datahub/x",
            &[("host", "ned-001.tenants.example.com")],
        ),
    );
    assert!(
        got.starts_with("200 ") && !got.contains("ned-001") && got.contains(r#"["x-tenant-id","STD-001"]"#),
        "{got}"
    );
    let got = h2_run(
        &chain,
        h2(
            "GET",
            "api.example.com",
            "/api/datahub/x",
            &[("host", "ned-001.tenants.example.com")],
        ),
    );
    assert!(got.contains("tenant_required"), "{got}");
    for dup in ["x-tenant-id", "x_tenant_id"] {
        let got = h2_run(
            &chain,
            h2(
                "GET",
                "api.example.com",
                "/api/datahub/x",
                &[("x-tenant-id", "STD-001"), (dup, "NED-001")],
            ),
        );
        assert!(got.contains("tenant_mismatch"), "{got}");
    }
    for path in [
        "http://api.example.com/api/datahub/x",
        "*",
        "/api/datahub x",
        "/api/datahub/\u{7f}",
    ] {
        let got = h2_run(&chain, h2("GET", "api.example.com", path, &[]));
        assert!(!got.starts_with("200 "), "{path}: {got}");
    }
    let got = h2_run(
        &chain,
        h2(
            "GET",
            "api.example.com",
            "/api/datahub/x",
            &[("x-tenant-id", "STD-001\u{0}")],
        ),
    );
    assert!(!got.starts_with("200 "), "{got}");
}

/// Finding 14: a route scoped to `www.example.com` (any path) outranks the
/// tenant-required `/api/datahub` prefix; the client picks the Host, and
/// the application behind the sidecar serves `/api/datahub/x` regardless.
#[test]
fn attack_host_scoped_route_overrides_a_path_rule() {
    let mut p = policy();
    p["routes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "www", "match": {"hosts": ["www.example.com"]}}));
    let chain = start(&p, true);
    let r = chain
        .envoy
        .send(&Request::get("/api/datahub/x").header("host", "www.example.com"));
    assert!(!served_without_tenant(&r), "{}", what(&r));
}

// ---- Second attack review (branch `attack2`) ----

/// Finding 2.1: `POST /api/purge/all?_method=DELETE` (no tenant) is decided
/// as POST: the DELETE-only `purge` route is not chosen, the default route
/// serves it as sent, and Laravel (`httpMethodParameterOverride` on by
/// default), Symfony with the override on, or Express `methodOverride('_method')`
/// run the DELETE handler. The header spellings are stripped; the query one
/// reaches the app.
#[test]
fn attack2_query_method_override_dodges_a_method_route() {
    let chain = start(&policy(), true);
    let r = chain
        .envoy
        .send(&Request::get("/api/purge/all?_method=DELETE").method("POST"));
    assert!(!served_without_tenant(&r), "{}", what(&r));
}

/// Finding 2.3: letters that Java folds to ASCII (`ı` U+0131 and `İ`
/// U+0130 to `i`: `equalsIgnoreCase`, `regionMatches(true, ..)`, as in
/// Spring case-insensitive path matching, after percent-decoding) pass
/// Envoy's normalization and Tollgate's ASCII-only case reading unchanged:
/// `GET /api/tr%C4%B1no/q` (no tenant) is decided as the default route and
/// served as sent; such an application runs its `/api/trino` handler.
#[test]
fn attack2_unicode_case_variant_reaches_a_tenant_route_without_a_tenant() {
    let chain = start(&policy(), true);
    for target in ["/api/tr%C4%B1no/q", "/api/tr%C4%B0no/q"] {
        let r = chain.envoy.send(&Request::get(target));
        assert!(!served_without_tenant(&r), "{target}: {}", what(&r));
    }
}
