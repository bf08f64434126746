//! The jwt filter in a real Envoy 1.40 (two workers), with tokens minted by
//! jsonwebtoken and keys from tests/fixtures/keys.

#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{require_artefacts, upstream_values};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tollgate_integration::{paths, Bootstrap, Echo, Envoy, Filter, JwksServer, Request, Response};

const ISSUER: &str = "https://idp.test";
const HMAC_SECRET: &[u8] = b"01234567890123456789012345678901";

fn fixture(name: &str) -> String {
    let path = paths::repo_root().join("tests/fixtures/keys").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The fixture JWKS with only the given kids.
fn jwks_with(kids: &[&str]) -> Value {
    let all: Value = serde_json::from_str(&fixture("jwks.json")).unwrap();
    let keys: Vec<Value> = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| kids.contains(&k["kid"].as_str().unwrap_or("")))
        .cloned()
        .collect();
    json!({ "keys": keys })
}

fn mint(alg: Algorithm, kid: &str, claims: &Value) -> String {
    let pem = || fixture(&format!("{kid}.pem")).into_bytes();
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem()).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem()).unwrap(),
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => EncodingKey::from_secret(HMAC_SECRET),
        _ => EncodingKey::from_rsa_pem(&pem()).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_string());
    encode(&header, claims, &key).unwrap()
}

fn claims() -> Value {
    json!({
        "iss": ISSUER, "sub": "user@254carbon.com", "aud": "254carbon-api",
        "exp": now() + 600, "iat": now(),
        "roles": ["data-engineer", "analyst"], "scope": "trino:query",
        "tenant": "ACME",
    })
}

fn token(claims: &Value) -> String {
    mint(Algorithm::RS256, "rsa-1", claims)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Routes: datahub needs a token; trino needs trino:query, POST also
/// data-engineer; open needs none.
fn policy(provider: Value) -> Value {
    json!({
        "version": 1,
        "realm": "data-platform",
        "routes": [
            {"name": "datahub", "match": {"prefix": "/api/datahub"}, "jwt": {"requirement": "required"}},
            {"name": "trino", "match": {"prefix": "/api/trino"}, "jwt": {"requirement": "required", "rules": [
                {"claim": "scope", "contains": "trino:query"},
                {"claim": "roles", "contains": "data-engineer", "methods": ["POST"]},
            ]}},
            {"name": "open", "match": {"prefix": "/open"}},
        ],
        "tenants": [{"id": "ACME"}, {"id": "GLOBEX"}],
        "jwt": {"providers": [provider]},
    })
}

fn local_provider() -> Value {
    json!({
        "name": "platform", "issuer": ISSUER, "audiences": ["254carbon-api"],
        "local_jwks": jwks_with(&["rsa-1", "rsa-2", "rsa-3072", "ec-256", "ec-384", "ed-1"]),
        "hmac_secret_base64": "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
        "tenant_claim": "tenant",
        "from_params": ["access_token"],
        "from_cookies": ["session"],
        "claim_to_headers": [
            {"claim_name": "sub", "header_name": "x-user-id"},
            {"claim_name": "roles", "header_name": "x-user-roles"},
        ],
    })
}

fn remote_provider(cache_duration: u64) -> Value {
    json!({
        "name": "platform", "issuer": ISSUER, "tenant_claim": "tenant",
        "remote_jwks": {
            "uri": "http://idp.test/.well-known/jwks.json", "cluster": "idp",
            "timeout_ms": 1000, "cache_duration_seconds": cache_duration, "min_refetch_interval_seconds": 1,
        },
    })
}

struct Chain {
    envoy: Envoy,
    _echo: Echo,
}

fn start(policy: &Value, idp_port: Option<u16>, with_tenant: bool) -> Chain {
    require_artefacts();
    let echo = Echo::start();
    let mut bootstrap =
        Bootstrap::new(echo.port()).filter(Filter::tollgate("tollgate.jwt", &paths::module_wasm(), policy));
    if with_tenant {
        bootstrap = bootstrap.filter(Filter::tollgate("tollgate.tenant", &paths::module_wasm(), policy));
    }
    if let Some(port) = idp_port {
        bootstrap = bootstrap.cluster("idp", port);
    }
    Chain {
        envoy: Envoy::start(&bootstrap.to_json()),
        _echo: echo,
    }
}

impl Chain {
    fn get(&self, path: &str, auth: Option<&str>) -> Response {
        let request = Request::get(path);
        let request = match auth {
            Some(a) => request.header("authorization", a),
            None => request,
        };
        self.envoy.send(&request)
    }

    fn counter(&self, name: &str) -> u64 {
        self.envoy.stat(&format!("wasmcustom.tollgate.jwt.{name}")).unwrap_or(0)
    }

    /// Polls (bounded) until a counter reaches `at_least`.
    fn wait_counter(&self, name: &str, at_least: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let value = self.counter(name);
            if value >= at_least || Instant::now() > deadline {
                return value;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn assert_denied(response: &Response, status: u16, reason: &str) {
    assert_eq!(response.status, status, "{reason}: {}", response.text());
    assert_eq!(response.json()["reason"], reason, "{}", response.text());
}

#[test]
fn every_algorithm_is_verified() {
    let chain = start(&policy(local_provider()), None, false);
    for (alg, kid) in [
        (Algorithm::RS256, "rsa-1"),
        (Algorithm::RS384, "rsa-2"),
        (Algorithm::RS512, "rsa-3072"),
        (Algorithm::PS256, "rsa-1"),
        (Algorithm::PS384, "rsa-2"),
        (Algorithm::PS512, "rsa-3072"),
        (Algorithm::ES256, "ec-256"),
        (Algorithm::ES384, "ec-384"),
        (Algorithm::EdDSA, "ed-1"),
        (Algorithm::HS256, "hs"),
        (Algorithm::HS512, "hs"),
    ] {
        let good = mint(alg, kid, &claims());
        let response = chain.get("/api/datahub", Some(&bearer(&good)));
        assert_eq!(response.status, 200, "{alg:?}: {}", response.text());
        // The same token with its signature's last character changed.
        let mut bad = good.clone();
        let last = bad.pop().unwrap();
        bad.push(if last == 'A' { 'Q' } else { 'A' });
        let refused = chain.get("/api/datahub", Some(&bearer(&bad)));
        assert_denied(&refused, 401, "token_signature_invalid");
    }
    let log = chain.envoy.log();
    assert!(
        log.contains("host verify_signature in use"),
        "host verifier not detected:\n{log}"
    );
    // RS256/384/512 and ES256/384 (good and bad): checked by Envoy, not Rust.
    let host_checks = chain.counter("signature_host");
    assert!(host_checks >= 10, "host checks: {host_checks}");
}

#[test]
fn every_refusal_has_its_status_reason_and_challenge() {
    let chain = start(&policy(local_provider()), None, false);
    let with = |patch: Value| {
        let mut c = claims();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        bearer(&token(&c))
    };
    let valid = token(&claims());
    let parts: Vec<&str> = valid.split('.').collect();
    let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
    // HS256 signed with the RSA key's public JWKS text as the secret.
    let confused = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa-1".into());
        encode(
            &header,
            &claims(),
            &EncodingKey::from_secret(fixture("jwks.json").as_bytes()),
        )
        .unwrap()
    };
    let cases: Vec<(Option<String>, &str, u16, &str)> = vec![
        (None, "/api/datahub", 401, "token_missing"),
        (
            Some(format!("Bearer {}", "a".repeat(9000))),
            "/api/datahub",
            401,
            "token_too_large",
        ),
        (Some(bearer("not.a.token")), "/api/datahub", 401, "token_malformed"),
        (
            Some(bearer(&format!("{none_header}.{}.", parts[1]))),
            "/api/datahub",
            401,
            "token_alg_not_allowed",
        ),
        (
            Some(bearer(&format!("{none_header}.{}.x", parts[1]))),
            "/api/datahub",
            401,
            "token_alg_not_allowed",
        ),
        (Some(bearer(&confused)), "/api/datahub", 401, "token_signature_invalid"),
        (
            Some(with(json!({"exp": now() - 120}))),
            "/api/datahub",
            401,
            "token_expired",
        ),
        (
            Some(with(json!({"nbf": now() + 120}))),
            "/api/datahub",
            401,
            "token_not_yet_valid",
        ),
        (
            Some(with(json!({"exp": null}))),
            "/api/datahub",
            401,
            "token_exp_required",
        ),
        (
            Some(with(json!({"iss": "https://evil.test"}))),
            "/api/datahub",
            401,
            "token_issuer_invalid",
        ),
        (
            Some(with(json!({"aud": "other-api"}))),
            "/api/datahub",
            401,
            "token_audience_invalid",
        ),
        (
            Some(with(json!({"scope": "datahub:read"}))),
            "/api/trino",
            403,
            "insufficient_scope",
        ),
    ];
    for (auth, path, status, reason) in &cases {
        let response = chain.get(path, auth.as_deref());
        assert_denied(&response, *status, reason);
        let challenge = response.header("www-authenticate").unwrap_or_default().to_string();
        assert!(
            challenge.starts_with("Bearer realm=\"data-platform\""),
            "{reason}: {challenge}"
        );
        let error = match *reason {
            "token_missing" => None,
            "insufficient_scope" => Some("insufficient_scope"),
            _ => Some("invalid_token"),
        };
        match error {
            Some(e) => assert!(challenge.contains(&format!("error=\"{e}\"")), "{reason}: {challenge}"),
            None => assert!(!challenge.contains("error="), "{reason}: {challenge}"),
        }
    }
    // HS256 "signed" with the RSA public key: checked against the configured
    // HMAC secret only, never against the RSA key.
    assert_eq!(chain.counter("denied.token_signature_invalid"), 1);
}

#[test]
fn method_rules_and_identity_headers() {
    let chain = start(&policy(local_provider()), None, false);
    let analyst = bearer(&token(
        &json!({"iss": ISSUER, "aud": "254carbon-api", "exp": now() + 60, "sub": "ann", "roles": ["analyst"], "scope": "trino:query"}),
    ));
    assert_eq!(chain.get("/api/trino/v1/statement", Some(&analyst)).status, 200);
    let post = Request::get("/api/trino/v1/statement")
        .method("POST")
        .header("authorization", &analyst);
    assert_denied(&chain.envoy.send(&post), 403, "insufficient_scope");
    let engineer = bearer(&token(&claims()));
    let response = chain.envoy.send(
        &Request::get("/api/trino/v1/statement")
            .method("POST")
            .header("authorization", &engineer)
            .header("x-user-id", "admin")
            .header("x-user-roles", "root"),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(upstream_values(&response, "x-user-id"), ["user@254carbon.com"]);
    assert_eq!(upstream_values(&response, "x-user-roles"), ["data-engineer,analyst"]);
    assert!(
        upstream_values(&response, "authorization").is_empty(),
        "token forwarded"
    );
    // No token on an open route: spoofed identity headers are still removed.
    let open = chain.envoy.send(&Request::get("/open").header("x-user-id", "admin"));
    assert_eq!(open.status, 200);
    assert!(upstream_values(&open, "x-user-id").is_empty());
}

#[test]
fn repeated_tokens_hit_the_cache() {
    let chain = start(&policy(local_provider()), None, false);
    let auth = bearer(&token(&claims()));
    for _ in 0..20 {
        assert_eq!(chain.get("/api/datahub", Some(&auth)).status, 200);
    }
    // At most one signature check per worker VM.
    assert!(
        chain.counter("cache_miss") <= 2,
        "misses: {}",
        chain.counter("cache_miss")
    );
    assert_eq!(chain.counter("cache_hit") + chain.counter("cache_miss"), 20);
}

/// The cache gauges exist in Envoy's stats and stay within the bound:
/// six distinct tokens through a cache of four entries per worker.
#[test]
fn cache_gauges_stay_within_the_bound() {
    let mut policy = policy(local_provider());
    policy["jwt"]["cache_entries"] = json!(4);
    let chain = start(&policy, None, false);
    for i in 0..6 {
        let mut claims = claims();
        claims["sub"] = json!(format!("user-{i}@254carbon.com"));
        assert_eq!(chain.get("/api/datahub", Some(&bearer(&token(&claims)))).status, 200);
    }
    let gauge = |name: &str| chain.envoy.stat(&format!("wasmcustom.tollgate.jwt.{name}"));
    let entries = gauge("cache_entries").expect("cache_entries in Envoy's stats");
    assert!((1..=4).contains(&entries), "cache_entries {entries}");
    assert!(gauge("cache_bytes").is_some_and(|b| b > 0));
    assert_eq!(gauge("refused_cache_entries"), Some(0));
}

#[test]
fn token_tenant_is_bound_to_the_tenant_header() {
    let chain = start(&policy(local_provider()), None, true);
    let globex = bearer(&token(
        &json!({"iss": ISSUER, "aud": "254carbon-api", "exp": now() + 60, "tenant": "GLOBEX"}),
    ));
    let spoofed = chain.envoy.send(
        &Request::get("/api/datahub")
            .header("authorization", &globex)
            .header("x-tenant-id", "ACME"),
    );
    assert_denied(&spoofed, 403, "tenant_mismatch");
    let agreeing = chain.envoy.send(
        &Request::get("/api/datahub")
            .header("authorization", &globex)
            .header("x-tenant-id", "globex"),
    );
    assert_eq!(agreeing.status, 200, "{}", agreeing.text());
    assert_eq!(upstream_values(&agreeing, "x-tenant-id"), ["GLOBEX"]);
    // The verified tenant alone is enough.
    let alone = chain.get("/api/datahub", Some(&globex));
    assert_eq!(upstream_values(&alone, "x-tenant-id"), ["GLOBEX"]);
}

/// A `shadow` tenant route lets a mismatch through, with the tenant the
/// token proves, never the client's; the jwt filter alone removes the
/// override headers frameworks act on (`strip_headers`).
#[test]
fn a_shadow_tenant_mismatch_gives_the_app_the_verified_tenant() {
    let mut p = tenant_bound_policy();
    p["routes"][0]["tenant"]["mode"] = json!("shadow");
    let chain = start(&p, None, true);
    let globex = bearer(&token(
        &json!({"iss": ISSUER, "aud": "254carbon-api", "exp": now() + 60, "tenant": "globex"}),
    ));
    let response = chain.envoy.send(
        &Request::get("/api/datahub")
            .header("authorization", &globex)
            .header("x-tenant-id", "ACME"),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(upstream_values(&response, "x-tenant-id"), ["GLOBEX"]);
    assert!(upstream_values(&response, "x-tenant-tier").is_empty());
    let alone = start(&policy(local_provider()), None, false);
    let response = alone.envoy.send(
        &Request::get("/open")
            .header("x-original-url", "/api/datahub")
            .header("x_http_method_override", "DELETE")
            .header("forwarded", "host=evil.example.com"),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    for name in ["x-original-url", "x_http_method_override", "forwarded"] {
        assert!(
            upstream_values(&response, name).is_empty(),
            "{name}: {}",
            response.text()
        );
    }
}

#[test]
fn remote_keys_rotate_with_one_refetch() {
    let idp = JwksServer::start(&jwks_with(&["rsa-1"]).to_string());
    // With the tenant filter after jwt: a request resumed by the root goes on
    // into the next filter of the same VM.
    let chain = start(&policy(remote_provider(300)), Some(idp.port()), true);
    let first = chain.get("/api/datahub", Some(&bearer(&token(&claims()))));
    assert_eq!(first.status, 200, "{}", first.text());
    // Every worker VM fetches at start; let those first fetches settle.
    let mut hits = idp.hits();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(300));
        if idp.hits() == hits {
            break;
        }
        hits = idp.hits();
    }
    // The IdP rotates in rsa-2; a token signed with it passes at once.
    idp.set(&jwks_with(&["rsa-1", "rsa-2"]).to_string());
    let rotated = bearer(&mint(Algorithm::RS256, "rsa-2", &claims()));
    let response = chain.get("/api/datahub", Some(&rotated));
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        upstream_values(&response, "x-tenant-id"),
        ["ACME"],
        "tenant filter ran after the resume"
    );
    assert_eq!(idp.hits(), hits + 1, "one refetch");
    assert_eq!(chain.counter("jwks_refetch_unknown_kid"), 1);
    // A kid the IdP does not have: refused, and no refetch within the interval.
    let unknown = bearer(&mint(Algorithm::RS256, "rsa-3072", &claims()));
    let response = chain.get("/api/datahub", Some(&unknown));
    assert_denied(&response, 401, "token_key_unknown");
}

#[test]
fn stale_keys_keep_working_when_the_idp_goes_away() {
    let idp = JwksServer::start(&jwks_with(&["rsa-1"]).to_string());
    let chain = start(&policy(remote_provider(1)), Some(idp.port()), false);
    let auth = bearer(&token(&claims()));
    // Every worker fetches its keys while the IdP is up: requests on fresh
    // connections reach both workers, and a worker without keys waits for them.
    for _ in 0..20 {
        assert_eq!(chain.get("/api/datahub", Some(&auth)).status, 200);
    }
    chain.wait_counter("jwks_fetch_ok", 3);
    drop(idp);
    assert!(
        chain.wait_counter("jwks_fetch_failed", 1) >= 1,
        "no failed refresh seen"
    );
    // Past cache_duration + timeout the keys are stale, and still used: new
    // tokens (no cache hit) keep passing until the stale counter shows it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    while chain.counter("jwks_stale_in_use") == 0 && Instant::now() < deadline {
        n += 1;
        let fresh = bearer(&token(
            &json!({"iss": ISSUER, "exp": now() + 60, "sub": format!("user-{n}")}),
        ));
        let response = chain.get("/api/datahub", Some(&fresh));
        assert_eq!(response.status, 200, "{}", response.text());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(chain.counter("jwks_stale_in_use") >= 1, "stale keys never reported");
    assert_eq!(chain.get("/api/datahub", Some(&auth)).status, 200);
}

#[test]
fn no_keys_ever_is_503_not_401() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let chain = start(&policy(remote_provider(300)), Some(closed), false);
    let response = chain.get("/api/datahub", Some(&bearer(&token(&claims()))));
    assert_denied(&response, 503, "jwks_unavailable");
    assert!(response.header("www-authenticate").is_none());
    assert!(chain.counter("jwks_fetch_failed") >= 1);
}

#[test]
fn keys_past_their_stale_ttl_are_dropped() {
    let idp = JwksServer::start(&jwks_with(&["rsa-1"]).to_string());
    let mut provider = remote_provider(1);
    provider["remote_jwks"]["stale_ttl_seconds"] = json!(2);
    let chain = start(&policy(provider), Some(idp.port()), false);
    for _ in 0..20 {
        assert_eq!(chain.get("/api/datahub", Some(&bearer(&token(&claims())))).status, 200);
    }
    drop(idp);
    // Within a few seconds every worker's keys pass their stale TTL: fresh
    // tokens (no cache hit) then get 503, not 401.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut n = 0;
    let last = loop {
        n += 1;
        let fresh = bearer(&token(
            &json!({"iss": ISSUER, "exp": now() + 60, "sub": format!("late-{n}")}),
        ));
        let response = chain.get("/api/datahub", Some(&fresh));
        if response.status != 200 || Instant::now() > deadline {
            break response;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_denied(&last, 503, "jwks_unavailable");
}

#[test]
fn shadow_routes_count_but_let_through() {
    let mut p = policy(local_provider());
    p["routes"][0]["jwt"]["mode"] = json!("shadow");
    let chain = start(&p, None, false);
    let response = chain
        .envoy
        .send(&Request::get("/api/datahub").header("x-user-id", "admin"));
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        upstream_values(&response, "x-user-id").is_empty(),
        "spoofed identity header passed"
    );
    let bad = chain.get("/api/datahub", Some("Bearer not.a.token"));
    assert_eq!(bad.status, 200);
    assert_eq!(chain.counter("shadow_denied.token_missing"), 1);
    assert_eq!(chain.counter("shadow_denied.token_malformed"), 1);
    assert_eq!(chain.counter("denied.token_missing"), 0);
}

#[test]
fn tokens_in_query_or_cookie_do_not_reach_the_app() {
    let chain = start(&policy(local_provider()), None, false);
    let jwt = token(&claims());
    let by_param = chain
        .envoy
        .send(&Request::get(&format!("/api/datahub/x?a=1&access_token={jwt}&b=2")));
    assert_eq!(by_param.status, 200, "{}", by_param.text());
    assert_eq!(by_param.json()["path"], "/api/datahub/x?a=1&b=2");
    // The path rewrite and the token strip compose: both edits reach the app.
    let both = chain.envoy.send(&Request::get(&format!(
        "/api/trino/..//datahub/%78?a=1&access_token={jwt}&b=/../c"
    )));
    assert_eq!(both.status, 200, "{}", both.text());
    assert_eq!(both.json()["path"], "/api/datahub/x?a=1&b=/../c");
    let cookie = format!("theme=dark; session={jwt}");
    let by_cookie = chain
        .envoy
        .send(&Request::get("/api/datahub").header("cookie", &cookie));
    assert_eq!(by_cookie.status, 200, "{}", by_cookie.text());
    assert_eq!(upstream_values(&by_cookie, "cookie"), ["theme=dark"]);
}

/// RFC 6750 2.2 (a token in a form-encoded body): Envoy sends the headers
/// on before a filter sees the body, so such a token could neither be
/// verified before the identity headers were set nor removed; the body is
/// held whole and the request refused (400 `token_in_form_body`, even an
/// unsigned token beside a good header token) before any of it reaches the
/// application. A form `_method=POST` must meet the POST rule. A form with
/// neither passes whole.
#[test]
fn a_token_in_a_form_body_is_refused_before_the_body_reaches_the_app() {
    let chain = start(&policy(local_provider()), None, false);
    let jwt = token(&claims());
    let form = |path: &str, body: &str, auth: &str| {
        let mut request = Request::get(path)
            .method("POST")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", auth);
        request.body = body.as_bytes().to_vec();
        request
    };
    let good = bearer(&jwt);
    let with_token = chain
        .envoy
        .send(&form("/api/datahub/x", &format!("a=1&access_token={jwt}&b=2"), &good));
    assert_eq!(with_token.status, 400, "{}", with_token.text());
    assert_eq!(with_token.json()["reason"], "token_in_form_body");
    let unsigned = "a=1&access_token=eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.";
    let forged = chain.envoy.send(&form("/api/datahub/x", unsigned, &good));
    assert_eq!(forged.status, 400, "{}", forged.text());
    let analyst = bearer(&token(&json!({
        "iss": ISSUER, "aud": "254carbon-api", "exp": now() + 600, "roles": ["analyst"], "scope": "trino:query",
    })));
    let mut get_as_post = form("/api/trino/v1", "_method=POST", &analyst);
    get_as_post.method = "GET".into();
    let response = chain.envoy.send(&get_as_post);
    assert_eq!(response.status, 403, "{}", response.text());
    assert_eq!(response.json()["reason"], "insufficient_scope");
    let plain = chain.envoy.send(&form("/api/datahub/x", "a=1&b=2", &good));
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert_eq!(plain.json()["body"], "a=1&b=2");
    let big = "a=".to_string() + &"x".repeat(70 * 1024);
    let over = chain.envoy.send(&form("/api/datahub/x", &big, &good));
    assert_eq!(over.status, 413, "{}", over.text());
}

/// `forward: true`: the verified token stays where it came; every other
/// token (another source, a PHP/ASP.NET spelling of a parameter, a route
/// that checks none) never reaches the app.
#[test]
fn a_forwarding_provider_forwards_only_its_verified_token() {
    let mut provider = local_provider();
    provider["forward"] = json!(true);
    let chain = start(&policy(provider), None, false);
    let auth = bearer(&token(&claims()));
    let response = chain.envoy.send(
        &Request::get("/api/datahub/x?a=1&access_token=forged&b=2")
            .header("authorization", &auth)
            .header("cookie", "session=forged; theme=dark"),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(upstream_values(&response, "authorization"), [auth.as_str()]);
    assert_eq!(response.json()["path"], "/api/datahub/x?a=1&b=2");
    assert_eq!(upstream_values(&response, "cookie"), ["theme=dark"]);
    let open = chain.envoy.send(
        &Request::get("/open?ACCESS.TOKEN=forged")
            .header("authorization", "Bearer forged")
            .header("cookie", "session=forged"),
    );
    assert_eq!(open.status, 200, "{}", open.text());
    assert!(upstream_values(&open, "authorization").is_empty(), "{}", open.text());
    assert!(upstream_values(&open, "cookie").is_empty(), "{}", open.text());
    assert_eq!(open.json()["path"], "/open");
    // Two session cookies: which one the app reads is its choice; refused.
    let two = chain
        .envoy
        .send(&Request::get("/api/datahub").header("cookie", &format!("session={}; session=forged", token(&claims()))));
    assert_denied(&two, 401, "token_malformed");
}

#[test]
fn a_missing_jwks_cluster_answers_503_at_once() {
    let mut provider = remote_provider(300);
    provider["remote_jwks"]["cluster"] = json!("no-such-cluster");
    let chain = start(&policy(provider), None, false);
    let auth = bearer(&token(&claims()));
    // Requests across two retry cycles: some arrive when a retry is due, wait
    // for it, and that retry fails at dispatch. Each must be answered at once.
    let deadline = Instant::now() + Duration::from_millis(3500);
    while Instant::now() < deadline {
        let started = Instant::now();
        let response = chain.get("/api/datahub", Some(&auth));
        assert_denied(&response, 503, "jwks_unavailable");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "answered after {:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(chain.counter("jwks_fetch_failed") >= 2);
    assert!(chain.envoy.log().contains("could not call cluster 'no-such-cluster'"));
}

#[test]
fn hostile_tokens_do_not_trap_the_vm() {
    let chain = start(&policy(local_provider()), None, false);
    let b64 = |v: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    };
    let head = b64(r#"{"alg":"RS256","kid":"rsa-1"}"#);
    let with_payload = |payload: &str| bearer(&format!("{head}.{}.c2ln", b64(payload)));
    let deep = format!("{}{}", "[".repeat(3000), "]".repeat(3000));
    let hostile: Vec<Vec<u8>> = vec![
        b"Bearer".to_vec(),
        b"Bearer    ".to_vec(),
        format!("Bearer {}", ".".repeat(5000)).into_bytes(),
        b"Bearer \xff\xfe.\xc3.x".to_vec(),
        with_payload(&deep).into_bytes(),
        bearer(&format!("{}.{}.c2ln", b64(&deep), b64("{}"))).into_bytes(),
        bearer(&format!("{}.e30.c2ln", b64(r#"{"alg":5}"#))).into_bytes(),
        bearer(&format!("{}.e30.c2ln", b64(r#"{"alg":"RS256","kid":{"a":1}}"#))).into_bytes(),
        with_payload(&format!(r#"{{"iss":"{ISSUER}","exp":1e308,"nbf":-5,"aud":{{"x":1}}}}"#)).into_bytes(),
        with_payload(&format!(r#"{{"iss":"{ISSUER}","exp":"NaN"}}"#)).into_bytes(),
        with_payload(&format!(
            r#"{{"iss":"{ISSUER}","exp":{},"roles":{{"deep":[1,[2]]}}}}"#,
            now() + 60
        ))
        .into_bytes(),
    ];
    for value in &hostile {
        let response = chain
            .envoy
            .send(&Request::get("/api/datahub").header_bytes("authorization", value));
        assert_eq!(
            response.status,
            401,
            "{:?}: {}",
            String::from_utf8_lossy(value),
            response.text()
        );
    }
    for _ in 0..10 {
        assert_eq!(chain.get("/api/datahub", Some(&bearer(&token(&claims())))).status, 200);
    }
    let log = chain.envoy.log();
    assert!(
        !log.contains("panicked") && !log.contains("Function: proxy_on"),
        "{log}"
    );
}

#[test]
fn requests_during_the_first_fetch_wait_for_it() {
    let idp = JwksServer::start(&jwks_with(&["rsa-1"]).to_string());
    // The IdP answers slowly: Envoy is ready long before the first key set.
    idp.delay(Duration::from_millis(1500));
    let mut provider = remote_provider(300);
    provider["remote_jwks"]["timeout_ms"] = json!(5000);
    let chain = start(&policy(provider), Some(idp.port()), false);
    assert_eq!(chain.counter("jwks_fetch_ok"), 0, "the first fetch is still under way");
    let response = chain.get("/api/datahub", Some(&bearer(&token(&claims()))));
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(chain.counter("jwks_fetch_ok") >= 1);
    assert_eq!(chain.counter("denied.jwks_unavailable"), 0);
}

/// `policy` with datahub needing a tenant, ACME premium, and the tenant
/// filter reading the claim then the header.
fn tenant_bound_policy() -> Value {
    let mut p = policy(local_provider());
    p["routes"][0]["tenant"] = json!({"required": true});
    p["tenants"] = json!([{"id": "ACME", "tier": "premium"}, {"id": "GLOBEX"}]);
    p
}

#[test]
fn underscore_spellings_of_managed_headers_never_reach_the_app() {
    let chain = start(&tenant_bound_policy(), None, true);
    let auth = bearer(&token(&claims()));
    let sent = Request::get("/api/datahub")
        .header("authorization", &auth)
        .header("x_user_id", "admin")
        .header("x-user_id", "admin")
        .header("x_user_roles", "root")
        .header("x_tenant_id", "acme")
        .header("x_tenant_tier", "platinum")
        .header("x-tenant_tier", "platinum");
    let response = chain.envoy.send(&sent);
    assert_eq!(response.status, 200, "{}", response.text());
    for name in [
        "x_user_id",
        "x-user_id",
        "x_user_roles",
        "x_tenant_id",
        "x_tenant_tier",
        "x-tenant_tier",
    ] {
        assert!(upstream_values(&response, name).is_empty(), "{name} reached the app");
    }
    assert_eq!(upstream_values(&response, "x-user-id"), ["user@254carbon.com"]);
    assert_eq!(upstream_values(&response, "x-tenant-id"), ["ACME"]);
    assert_eq!(upstream_values(&response, "x-tenant-tier"), ["premium"]);
    // An underscore spelling is a value of the tenant header: a different
    // tenant in it is refused, not dropped.
    let other = chain.envoy.send(
        &Request::get("/api/datahub")
            .header("authorization", &auth)
            .header("x_tenant_id", "GLOBEX"),
    );
    assert_denied(&other, 403, "tenant_mismatch");
}

#[test]
fn every_token_source_is_emptied_when_not_forwarded() {
    let chain = start(&policy(local_provider()), None, false);
    let jwt = token(&claims());
    // Verified from the header; a token in the parameter and cookie too.
    let response = chain.envoy.send(
        &Request::get("/api/datahub?a=%41&access_token=other&b=c+d")
            .header("authorization", &bearer(&jwt))
            .header("cookie", "session=other; theme=dark"),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["path"], "/api/datahub?a=%41&b=c+d");
    assert_eq!(upstream_values(&response, "cookie"), ["theme=dark"]);
    assert!(upstream_values(&response, "authorization").is_empty());
    // On a route that looks at no token as well; other schemes stay.
    let open = chain
        .envoy
        .send(&Request::get("/open?access%5Ftoken=x&keep=%2F").header("cookie", &format!("session={jwt}")));
    assert_eq!(open.status, 200, "{}", open.text());
    assert_eq!(open.json()["path"], "/open?keep=%2F");
    assert!(upstream_values(&open, "cookie").is_empty());
    let basic = chain.get("/open", Some("Basic dXNlcjpwYXNz"));
    assert_eq!(upstream_values(&basic, "authorization"), ["Basic dXNlcjpwYXNz"]);
}

#[test]
fn a_query_token_is_found_by_its_decoded_name() {
    let chain = start(&policy(local_provider()), None, false);
    let jwt = token(&claims());
    let response = chain
        .envoy
        .send(&Request::get(&format!("/api/datahub?access%5Ftoken={jwt}&b=%41")));
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["path"], "/api/datahub?b=%41");
    let bad = chain
        .envoy
        .send(&Request::get("/api/datahub?access%5Ftoken=not.a.token"));
    assert_denied(&bad, 401, "token_malformed");
    // A second token under another spelling of the name: the application
    // might read that one, so neither is taken.
    let two = chain.envoy.send(&Request::get(&format!(
        "/api/datahub?access_token={jwt}&access%5Ftoken=x"
    )));
    assert_denied(&two, 401, "token_malformed");
}

#[test]
fn the_token_tenant_claim_must_be_a_string_and_present_where_required() {
    let chain = start(&tenant_bound_policy(), None, true);
    let with_tenant = |tenant: Value| {
        let mut c = claims();
        match tenant {
            Value::Null => c.as_object_mut().unwrap().remove("tenant"),
            v => c.as_object_mut().unwrap().insert("tenant".into(), v),
        };
        bearer(&token(&c))
    };
    for tenant in [json!(["ACME", "GLOBEX"]), json!(7), json!({"id": "ACME"})] {
        let response = chain.envoy.send(
            &Request::get("/api/datahub")
                .header("authorization", &with_tenant(tenant.clone()))
                .header("x-tenant-id", "GLOBEX"),
        );
        assert_denied(&response, 401, "token_tenant_invalid");
        let challenge = response.header("www-authenticate").unwrap_or_default();
        assert!(challenge.contains("invalid_token"), "{tenant}: {challenge}");
    }
    let without = with_tenant(Value::Null);
    let response = chain.envoy.send(
        &Request::get("/api/datahub")
            .header("authorization", &without)
            .header("x-tenant-id", "ACME"),
    );
    assert_denied(&response, 403, "token_tenant_missing");
    // Where no tenant is required, a token without one passes.
    let trino = chain.get("/api/trino", Some(&without));
    assert_eq!(trino.status, 200, "{}", trino.text());
    assert_eq!(chain.counter("denied.token_tenant_invalid"), 3);
    assert_eq!(chain.counter("denied.token_tenant_missing"), 1);
}

#[test]
fn padded_ecdsa_signatures_are_refused_by_the_host_verifier_path() {
    let chain = start(&policy(local_provider()), None, false);
    for (alg, kid) in [(Algorithm::ES256, "ec-256"), (Algorithm::ES384, "ec-384")] {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let good = mint(alg, kid, &claims());
        let (input, sig) = good.rsplit_once('.').unwrap();
        let sig = b64.decode(sig).unwrap();
        let half = sig.len() / 2;
        // `0 || r || 0 || s`: the same DER signature for BoringSSL.
        let padded = [&[0][..], &sig[..half], &[0], &sig[half..]].concat();
        let variant = format!("{input}.{}", b64.encode(padded));
        assert_eq!(chain.get("/api/datahub", Some(&bearer(&good))).status, 200, "{alg:?}");
        let refused = chain.get("/api/datahub", Some(&bearer(&variant)));
        assert_denied(&refused, 401, "token_signature_invalid");
    }
    assert!(chain.counter("signature_host") >= 2, "the host verifier was not used");
}

#[test]
fn a_shadow_jwt_route_never_stamps_a_client_chosen_tenant() {
    let mut p = tenant_bound_policy();
    p["routes"][0]["jwt"]["mode"] = json!("shadow");
    let chain = start(&p, None, true);
    let tenant_counter = |name: &str| {
        chain
            .envoy
            .stat(&format!("wasmcustom.tollgate.tenant.{name}"))
            .unwrap_or(0)
    };
    let spoof = |request: Request| request.header("x-tenant-id", "ACME").header("x-tenant-tier", "gold");
    for auth in [None, Some("Bearer not.a.token")] {
        let mut request = spoof(Request::get("/api/datahub"));
        if let Some(a) = auth {
            request = request.header("authorization", a);
        }
        let response = chain.envoy.send(&request);
        assert_eq!(response.status, 200, "{}", response.text());
        // Nothing verified it: neither the client's tenant nor a tier.
        assert!(upstream_values(&response, "x-tenant-id").is_empty(), "{auth:?}");
        assert!(upstream_values(&response, "x-tenant-tier").is_empty(), "{auth:?}");
    }
    assert_eq!(tenant_counter("shadow_denied.tenant_unverified"), 2);
    assert_eq!(tenant_counter("allowed"), 0);
    // A verified token still gets its tenant and tier.
    let verified = chain
        .envoy
        .send(&spoof(Request::get("/api/datahub")).header("authorization", &bearer(&token(&claims()))));
    assert_eq!(upstream_values(&verified, "x-tenant-id"), ["ACME"]);
    assert_eq!(upstream_values(&verified, "x-tenant-tier"), ["premium"]);
}

#[test]
fn optional_routes_apply_their_rules_to_requests_without_a_token() {
    let mut p = policy(local_provider());
    p["routes"][1]["jwt"]["requirement"] = json!("optional");
    let chain = start(&p, None, false);
    let get = chain.get("/api/trino", None);
    assert_denied(&get, 401, "token_missing");
    p["routes"][1]["jwt"]["rules"] = json!([{"claim": "roles", "contains": "data-engineer", "methods": ["POST"]}]);
    let chain = start(&p, None, false);
    assert_eq!(chain.get("/api/trino", None).status, 200);
    let post = chain.envoy.send(&Request::get("/api/trino").method("POST"));
    assert_denied(&post, 401, "token_missing");
}
