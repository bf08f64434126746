//! The request-time path, with tokens minted by jsonwebtoken (native only:
//! the crypto itself is also tested in wasm32 by `tests.rs`).
#![cfg(not(target_arch = "wasm32"))]

use super::tests::JWKS;
use super::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Map};
use std::cell::Cell;

const NOW: u64 = 1_800_000_000;

fn pem(kid: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../tests/fixtures/keys/{kid}.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn mint_with(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(String::from);
    encode(&header, claims, key).unwrap()
}

fn mint(claims: &Value) -> String {
    mint_with(
        Algorithm::RS256,
        Some("rsa-1"),
        &EncodingKey::from_rsa_pem(&pem("rsa-1")).unwrap(),
        claims,
    )
}

fn claims() -> Value {
    json!({
        "iss": "https://idp.test", "sub": "user@254carbon.com", "aud": "254carbon-api",
        "exp": NOW + 600, "iat": NOW - 10,
        "roles": ["data-engineer", "analyst"], "scope": "trino:query datahub:read",
        "https://example.com/tenant": "STD-001",
        "realm_access": {"roles": ["admin"]},
    })
}

fn policy() -> Policy {
    let jwks: Value = serde_json::from_str(JWKS).unwrap();
    let doc = json!({
        "version": 1,
        "defaults": {"jwt": {"requirement": "none"}},
        "routes": [
            {"name": "trino", "match": {"prefix": "/api/trino"}, "jwt": {"requirement": "required", "rules": [
                {"claim": "scope", "contains": "trino:query"},
                {"claim": "roles", "contains": "data-engineer", "methods": ["POST"]},
            ]}},
            {"name": "admin", "match": {"prefix": "/admin"}, "jwt": {"requirement": "required", "rules": [
                {"claim": "realm_access.roles", "any_of": ["admin", "root"]},
                {"claim": "https://example.com/tenant", "equals": "STD-001"},
            ]}},
            {"name": "remote", "match": {"prefix": "/remote"}, "jwt": {"requirement": "required", "providers": ["remote"]}},
            {"name": "optional", "match": {"prefix": "/optional"}, "jwt": {"requirement": "optional"}},
            {"name": "shadow", "match": {"prefix": "/shadow"}, "jwt": {"requirement": "required", "mode": "shadow"}},
            {"name": "tenanted", "match": {"prefix": "/tenanted"}, "tenant": {"required": true}, "jwt": {"requirement": "required"}},
            {"name": "tenant-shadow", "match": {"prefix": "/tenant-shadow"}, "tenant": {"required": true, "mode": "shadow"}, "jwt": {"requirement": "required"}},
            {"name": "optional-rules", "match": {"prefix": "/optional-rules"}, "jwt": {"requirement": "optional", "rules": [
                {"claim": "roles", "contains": "data-engineer", "methods": ["POST"]},
            ]}},
            {"name": "optional-skip", "match": {"prefix": "/optional-skip"}, "jwt": {"requirement": "optional", "rules_without_token": "skip", "rules": [
                {"claim": "roles", "contains": "data-engineer", "methods": ["POST"]},
            ]}},
        ],
        "jwt": {"providers": [
            {"name": "platform", "issuer": "https://idp.test", "audiences": ["254carbon-api"], "local_jwks": jwks,
             "from_params": ["access_token"], "from_cookies": ["session"],
             "tenant_claim": "https://example.com/tenant", "claims_to_state": ["sub", "scope"],
             "max_lifetime_seconds": 86400,
             "claim_to_headers": [{"claim_name": "sub", "header_name": "x-user-id"}, {"claim_name": "roles", "header_name": "x-user-roles"}]},
            {"name": "remote", "issuer": "https://remote.test",
             "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}, {"name": "x-jwt-assertion"}],
             "remote_jwks": {"uri": "https://remote.test/jwks.json", "cluster": "idp"}},
            {"name": "hmac", "issuer": "https://hmac.test", "hmac_secret_base64": "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
             "forward": true},
        ]},
    });
    Policy::from_json(doc.to_string().as_bytes()).unwrap()
}

/// Remote keys as the glue would hold them.
struct Store(Keys);

impl KeyStore for Store {
    fn keys(&self, _: usize) -> Keys {
        self.0.clone()
    }
}

/// Counts host calls and answers like a host that can, or cannot, verify.
struct CountingHost(Cell<u32>);

impl HostVerifier for CountingHost {
    fn verify(&self, _: &str, _: &[u8], _: &[u8], _: &[u8]) -> Option<bool> {
        self.0.set(self.0.get() + 1);
        None
    }
}

struct Fixture {
    policy: Policy,
    caches: Caches,
    host: CountingHost,
    store: Store,
}

impl Fixture {
    fn new() -> Fixture {
        let policy = policy();
        let caches = Caches::new(&policy);
        Fixture {
            policy,
            caches,
            host: CountingHost(Cell::new(0)),
            store: Store(Keys::Unavailable),
        }
    }

    fn run(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) -> JwtDecision<'_> {
        self.run_with_edits(method, path, headers).0
    }

    /// The decision and the header edits it makes.
    fn run_with_edits(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (JwtDecision<'_>, Vec<(String, Option<String>)>) {
        let headers: crate::header_map::HeaderMap = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        let norm = crate::path::normalize(path.as_bytes()).unwrap_or_default();
        let req = JwtRequest {
            route: None,
            head: RequestHead {
                method,
                host: "api.example.com",
                path: &norm,
            },
            raw_path: path.as_bytes(),
            headers: &headers,
            now: NOW,
        };
        let d = decide(&self.policy, &req, &self.store, &self.host, &mut self.caches);
        let edits = d
            .header_edits(&self.policy, &req)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.map(Cow::into_owned)))
            .collect();
        (d, edits)
    }

    fn edits(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
        self.run_with_edits(method, path, headers).1
    }

    fn reason(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) -> Result<bool, &'static str> {
        match self.run(method, path, headers).verdict {
            Ok(identity) => Ok(identity.is_some()),
            Err(d) => Err(d.denial().reason),
        }
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn a_valid_token_publishes_the_identity() {
    let mut f = Fixture::new();
    let auth = bearer(&mint(&claims()));
    let (d, edits) = f.run_with_edits(
        "GET",
        "/api/trino/v1",
        &[
            ("authorization", &auth),
            ("x-user-id", "spoofed"),
            ("x_user_id", "spoofed"),
        ],
    );
    assert!(matches!(d.verdict, Ok(Some(_))), "{:?}", d.verdict);
    assert_eq!(d.metric(), "tollgate.jwt.allowed");
    let props: HashMap<&str, String> = d
        .properties()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.into_owned()).unwrap()))
        .collect();
    assert_eq!(props["tollgate.sub"], "user@254carbon.com");
    assert_eq!(props["tollgate.tenant"], "STD-001");
    assert_eq!(props["tollgate.roles"], r#"["data-engineer","analyst"]"#);
    assert_eq!(
        props["tollgate.claims"],
        r#"{"scope":"trino:query datahub:read","sub":"user@254carbon.com"}"#
    );
    assert_eq!(
        props["tollgate.decision.jwt"],
        r#"{"filter":"jwt","route":"trino","mode":"enforce","outcome":"allow","provider":"platform","sub":"user@254carbon.com"}"#
    );
    assert_eq!(
        edits,
        // x-user-id is set (which replaces the client's copy); x-user-roles
        // was not sent: neither needs a removal of its own.
        vec![
            ("x_user_id".to_string(), None),
            ("authorization".to_string(), None),
            ("x-user-id".to_string(), Some("user@254carbon.com".to_string())),
            ("x-user-roles".to_string(), Some("data-engineer,analyst".to_string())),
        ]
    );
}

use std::collections::HashMap;

#[test]
fn claim_headers_the_client_sent_are_removed_unless_set() {
    let mut f = Fixture::new();
    let mut without_roles = claims();
    without_roles.as_object_mut().unwrap().remove("roles");
    let auth = bearer(&mint(&without_roles));
    let sent = [
        ("authorization", auth.as_str()),
        ("x-user-roles", "admin"),
        ("x-user-id", "x"),
    ];
    let edits = f.edits("GET", "/api/trino/v1", &sent);
    // No roles claim: the client's copy goes; x-user-id is replaced by a set.
    assert!(edits.contains(&("x-user-roles".to_string(), None)), "{edits:?}");
    assert!(!edits.contains(&("x-user-id".to_string(), None)), "{edits:?}");
    assert!(edits.contains(&("x-user-id".to_string(), Some("user@254carbon.com".to_string()))));
    // No token at all (an open route): every claim header sent is removed.
    let edits = f.edits("GET", "/open", &[("x-user-roles", "admin"), ("x-user-id", "x")]);
    assert!(edits.contains(&("x-user-roles".to_string(), None)), "{edits:?}");
    assert!(edits.contains(&("x-user-id".to_string(), None)), "{edits:?}");
}

#[test]
fn every_token_refusal_has_its_reason() {
    let mut f = Fixture::new();
    let with = |patch: Value| {
        let mut c = claims();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        bearer(&mint(&c))
    };
    let valid = mint(&claims());
    let parts: Vec<&str> = valid.split('.').collect();
    let mut other = claims();
    other["sub"] = json!("admin@254carbon.com");
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    // Another payload under the original signature.
    let tampered = format!("{}.{}.{}", parts[0], b64(&other), parts[2]);
    let none = format!("{}.{}.", b64(&json!({"alg": "none"})), parts[1]);
    let hs_confusion = mint_with(
        Algorithm::HS256,
        Some("rsa-1"),
        &EncodingKey::from_secret(JWKS.as_bytes()),
        &claims(),
    );
    let cases: Vec<(String, &str)> = vec![
        ("Bearer ".to_string() + &"a".repeat(9000), "token_too_large"),
        (bearer("abc.def"), "token_malformed"),
        (bearer(&format!("{none}sig")), "token_alg_not_allowed"),
        (with(json!({"exp": NOW - 61})), "token_expired"),
        (with(json!({"nbf": NOW + 61})), "token_not_yet_valid"),
        (with(json!({"exp": null})), "token_exp_required"),
        (with(json!({"exp": "soon"})), "token_malformed"),
        (
            with(json!({"iat": NOW - 10, "exp": NOW + 90000})),
            "token_lifetime_too_long",
        ),
        (with(json!({"iss": "https://evil.test"})), "token_issuer_invalid"),
        (with(json!({"aud": ["other"]})), "token_audience_invalid"),
        (with(json!({"aud": null})), "token_audience_invalid"),
        (bearer(&tampered), "token_signature_invalid"),
        (bearer(&hs_confusion), "token_key_unknown"),
    ];
    for (auth, want) in cases {
        assert_eq!(
            f.reason("GET", "/api/trino", &[("authorization", &auth)]),
            Err(want),
            "{want}"
        );
    }
    assert_eq!(f.reason("GET", "/api/trino", &[]), Err("token_missing"));
    // A skew of up to 60 s is tolerated.
    assert_eq!(
        f.reason(
            "GET",
            "/api/trino",
            &[("authorization", &with(json!({"exp": NOW - 59})))]
        ),
        Ok(true)
    );
    let missing = f.run("GET", "/api/trino", &[]);
    let reply = missing.action();
    assert_eq!(reply, Action::Deny(JwtDenial::Missing.denial()));
}

#[test]
fn claim_rules_per_route_and_method() {
    let mut f = Fixture::new();
    let analyst = bearer(&mint(
        &json!({"iss": "https://idp.test", "aud": "254carbon-api", "exp": NOW + 60, "roles": "analyst", "scope": "trino:query"}),
    ));
    assert_eq!(f.reason("GET", "/api/trino", &[("authorization", &analyst)]), Ok(true));
    assert_eq!(
        f.reason("POST", "/api/trino", &[("authorization", &analyst)]),
        Err("insufficient_scope")
    );
    let engineer = bearer(&mint(&claims()));
    assert_eq!(
        f.reason("POST", "/api/trino", &[("authorization", &engineer)]),
        Ok(true)
    );
    assert_eq!(f.reason("GET", "/admin", &[("authorization", &engineer)]), Ok(true));
    assert_eq!(
        f.reason("GET", "/admin", &[("authorization", &analyst)]),
        Err("insufficient_scope")
    );
    let denial = JwtDenial::InsufficientScope.denial();
    assert_eq!((denial.status, denial.bearer_error), (403, Some("insufficient_scope")));
}

#[test]
fn the_cache_skips_repeated_signature_checks() {
    let mut f = Fixture::new();
    let auth = bearer(&mint(&claims()));
    let first = f.run("GET", "/api/trino", &[("authorization", &auth)]).cache;
    let second = f.run("GET", "/api/trino", &[("authorization", &auth)]).cache;
    assert_eq!((first, second), (CacheUse::Miss, CacheUse::Hit));
    assert_eq!(f.host.0.get(), 1, "one signature check for two requests");
    let mut bad = mint(&claims());
    bad.pop();
    bad.push('A');
    let bad = bearer(&bad);
    assert_eq!(
        f.reason("GET", "/api/trino", &[("authorization", &bad)]),
        Err("token_signature_invalid")
    );
    assert_eq!(
        f.reason("GET", "/api/trino", &[("authorization", &bad)]),
        Err("token_signature_invalid")
    );
    assert_eq!(f.host.0.get(), 2, "a refused token is not checked twice");
    assert_eq!(f.caches.verified.len(), 1);
    assert_eq!(f.caches.refused.len(), 1);
}

#[test]
fn remote_keys_unavailable_stale_and_unknown() {
    let mut f = Fixture::new();
    let remote = |kid: &str| {
        let c = json!({"iss": "https://remote.test", "exp": NOW + 60});
        bearer(&mint_with(
            Algorithm::RS256,
            Some(kid),
            &EncodingKey::from_rsa_pem(&pem("rsa-1")).unwrap(),
            &c,
        ))
    };
    let auth = remote("rsa-1");
    assert_eq!(
        f.reason("GET", "/remote", &[("authorization", &auth)]),
        Err("jwks_unavailable")
    );
    assert_eq!(JwtDenial::JwksUnavailable.denial().status, 503);
    let set = Rc::new(KeySet::parse(JWKS.as_bytes()).unwrap().0);
    f.store = Store(Keys::Ready { set, stale: true });
    let d = f.run("GET", "/remote", &[("authorization", &auth)]);
    assert!(matches!(d.verdict, Ok(Some(_))));
    assert!(d.stale_keys);
    let unknown = remote("rsa-9");
    let d = f.run("GET", "/remote", &[("authorization", &unknown)]);
    assert_eq!(d.verdict.as_ref().err(), Some(&JwtDenial::KeyUnknown));
    assert_eq!(d.refetch, Some(1));
    // A token for another provider's route is not accepted here.
    let platform = bearer(&mint(&claims()));
    assert_eq!(
        f.reason("GET", "/remote", &[("authorization", &platform)]),
        Err("token_issuer_invalid")
    );
}

#[test]
fn sources_requirements_and_modes() {
    let mut f = Fixture::new();
    let token = mint(&claims());
    assert_eq!(
        f.reason("GET", &format!("/api/trino?a=1&access_token={token}"), &[]),
        Ok(true)
    );
    let cookie = format!("theme=dark; session={token}");
    assert_eq!(f.reason("GET", "/api/trino", &[("cookie", &cookie)]), Ok(true));
    assert_eq!(
        f.reason("GET", "/api/trino", &[("authorization", &format!("bearer {token}"))]),
        Ok(true)
    );
    assert_eq!(
        f.reason("GET", "/api/trino", &[("authorization", &format!("Basic {token}"))]),
        Err("token_missing")
    );
    assert_eq!(f.reason("GET", "/optional", &[]), Ok(false));
    assert_eq!(
        f.reason("GET", "/optional", &[("authorization", "Bearer x.y.z")]),
        Err("token_malformed")
    );
    assert_eq!(
        f.reason("GET", "/elsewhere", &[("authorization", "Bearer x.y.z")]),
        Ok(false)
    );
    let shadow = f.run("GET", "/shadow", &[]);
    assert_eq!(shadow.action(), Action::ShadowDeny(JwtDenial::Missing.denial()));
    assert_eq!(shadow.metric(), "tollgate.jwt.shadow_denied.token_missing");
    let hs = mint_with(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(b"01234567890123456789012345678901"),
        &json!({"iss": "https://hmac.test", "exp": NOW + 60}),
    );
    assert_eq!(
        f.reason("GET", "/optional", &[("authorization", &bearer(&hs))]),
        Ok(true)
    );
}

#[test]
fn metric_names_cover_every_reason() {
    let names = metric_names();
    for d in JwtDenial::ALL {
        assert!(names.contains(&format!("tollgate.jwt.denied.{}", d.denial().reason)));
    }
    assert_eq!(
        names.len(),
        9 + 2 * JwtDenial::ALL.len() + crate::request::RequestDenial::ALL.len()
    );
}

#[test]
fn tokens_in_params_and_cookies_are_removed_too() {
    let mut f = Fixture::new();
    let token = mint(&claims());
    let mut edits = |path: &str, headers: &[(&str, &str)]| {
        let (d, e) = f.run_with_edits("GET", path, headers);
        assert!(matches!(d.verdict, Ok(Some(_))), "{:?}", d.verdict);
        e
    };
    let e = edits(&format!("/api/trino?a=1&access_token={token}&b=2"), &[]);
    assert!(
        e.contains(&(":path".to_string(), Some("/api/trino?a=1&b=2".to_string()))),
        "{e:?}"
    );
    let e = edits(&format!("/api/trino?access_token={token}"), &[]);
    assert!(
        e.contains(&(":path".to_string(), Some("/api/trino".to_string()))),
        "{e:?}"
    );
    let cookie = format!("theme=dark; session={token}; lang=en");
    let e = edits("/api/trino", &[("cookie", &cookie)]);
    assert!(
        e.contains(&("cookie".to_string(), Some("theme=dark; lang=en".to_string()))),
        "{e:?}"
    );
    let only = format!("session={token}");
    let e = edits("/api/trino", &[("cookie", &only)]);
    assert!(e.contains(&("cookie".to_string(), None)), "{e:?}");
}

fn with_claims(patch: Value) -> String {
    let mut c = claims();
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    bearer(&mint(&c))
}

#[test]
fn the_tenant_claim_must_be_a_string_and_present_where_required() {
    let mut f = Fixture::new();
    let claim = "https://example.com/tenant";
    let cases: Vec<(&str, Value, Result<bool, &str>)> = vec![
        ("/tenanted", json!({claim: "STD-001"}), Ok(true)),
        (
            "/tenanted",
            json!({claim: ["STD-001", "NED-001"]}),
            Err("token_tenant_invalid"),
        ),
        ("/tenanted", json!({claim: 7}), Err("token_tenant_invalid")),
        (
            "/tenanted",
            json!({claim: {"id": "STD-001"}}),
            Err("token_tenant_invalid"),
        ),
        ("/tenanted", json!({claim: null}), Err("token_tenant_missing")),
        // A wrong type is refused wherever the token is checked; a missing
        // claim only where the route requires a tenant.
        ("/api/trino", json!({claim: ["STD-001"]}), Err("token_tenant_invalid")),
        ("/api/trino", json!({claim: null}), Ok(true)),
        ("/tenant-shadow", json!({claim: null}), Ok(true)),
        ("/tenant-shadow", json!({claim: 7}), Err("token_tenant_invalid")),
        ("/optional", json!({claim: true}), Err("token_tenant_invalid")),
    ];
    for (path, patch, want) in cases {
        let auth = with_claims(patch.clone());
        assert_eq!(
            f.reason("GET", path, &[("authorization", &auth)]),
            want,
            "{path} {patch}"
        );
    }
    let invalid = JwtDenial::TenantInvalid.denial();
    assert_eq!((invalid.status, invalid.bearer_error), (401, Some("invalid_token")));
    let missing = JwtDenial::TenantMissing.denial();
    assert_eq!(
        (missing.status, missing.bearer_error),
        (403, Some("insufficient_scope"))
    );
    // In shadow mode only counted, and no tenant is published.
    let auth = with_claims(json!({claim: [1]}));
    let d = f.run("GET", "/shadow", &[("authorization", &auth)]);
    assert_eq!(d.metric(), "tollgate.jwt.shadow_denied.token_tenant_invalid");
    let keys: Vec<&str> = d.properties().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec!["tollgate.decision.jwt", "tollgate.jwt_shadow_denied"]);
}

#[test]
fn require_tenant_claim_defaults_to_true_with_or_without_a_tenant_claim() {
    let p = policy();
    let required: Vec<bool> = p.jwt.providers.iter().map(|p| p.require_tenant_claim).collect();
    assert_eq!(required, vec![true, true, true]);
}

#[test]
fn rules_on_optional_routes_bind_requests_without_a_token() {
    let mut f = Fixture::new();
    let analyst = with_claims(json!({"roles": ["analyst"]}));
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Result<bool, &'a str>);
    let cases: Vec<Case> = vec![
        ("GET", "/optional-rules", None, Ok(false)),
        ("POST", "/optional-rules", None, Err("token_missing")),
        ("POST", "/optional-rules", Some(&analyst), Err("insufficient_scope")),
        ("GET", "/optional-skip", None, Ok(false)),
        ("POST", "/optional-skip", None, Ok(false)),
        ("POST", "/optional-skip", Some(&analyst), Err("insufficient_scope")),
    ];
    for (method, path, auth, want) in cases {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        assert_eq!(f.reason(method, path, &headers), want, "{method} {path} {auth:?}");
    }
}

#[test]
fn every_token_source_of_a_provider_that_does_not_forward_is_emptied() {
    let mut f = Fixture::new();
    let token = mint(&claims());
    let auth = bearer(&token);
    let cookie = "session=junk; theme=dark";
    let path = "/api/trino?a=%41&access%5Ftoken=junk&b=c+d";
    // Header token verified; the unused param and cookie still go.
    let e = f.edits("GET", path, &[("authorization", &auth), ("cookie", cookie)]);
    for want in [
        ("authorization".to_string(), None),
        (":path".to_string(), Some("/api/trino?a=%41&b=c+d".to_string())),
        ("cookie".to_string(), Some("theme=dark".to_string())),
    ] {
        assert!(e.contains(&want), "{want:?} in {e:?}");
    }
    // On a route that looks at no token, and whatever the header spelling.
    let e = f.edits(
        "GET",
        "/elsewhere?access_token=x",
        &[("authorization", "Bearer x"), ("x_jwt-assertion", "x")],
    );
    assert!(e.contains(&("authorization".to_string(), None)), "{e:?}");
    assert!(e.contains(&("x_jwt-assertion".to_string(), None)), "{e:?}");
    assert!(
        e.contains(&(":path".to_string(), Some("/elsewhere".to_string()))),
        "{e:?}"
    );
    // Not another scheme, not a longer cookie name, nothing when nothing is there.
    let e = f.edits(
        "GET",
        "/elsewhere?x=1",
        &[
            ("authorization", "Basic dXNlcjpwYXNz"),
            ("cookie", "session2=a; xsession=b"),
        ],
    );
    assert!(e.iter().all(|(h, _)| h.starts_with("x-user")), "{e:?}");
    // Any spacing after the scheme is a token to remove.
    let e = f.edits("GET", "/elsewhere", &[("authorization", "bearer\tx")]);
    assert!(e.contains(&("authorization".to_string(), None)), "{e:?}");
    // A forwarding issuer's verified token stays; the other sources still go.
    let hs = mint_with(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(b"01234567890123456789012345678901"),
        &json!({"iss": "https://hmac.test", "exp": NOW + 60}),
    );
    let (d, e) = f.run_with_edits("GET", "/optional?access_token=x", &[("authorization", &bearer(&hs))]);
    assert!(matches!(d.verdict, Ok(Some(_))), "{:?}", d.verdict);
    assert!(!e.iter().any(|(h, _)| h == "authorization"), "{e:?}");
    assert!(
        e.contains(&(":path".to_string(), Some("/optional".to_string()))),
        "{e:?}"
    );
}

#[test]
fn query_tokens_are_found_by_decoded_name_and_cookies_by_exact_name() {
    let mut f = Fixture::new();
    let token = mint(&claims());
    type Case<'a> = (String, Vec<(&'a str, String)>, Result<bool, &'a str>);
    let cases: Vec<Case> = vec![
        (format!("/api/trino?access%5Ftoken={token}"), vec![], Ok(true)),
        (format!("/api/trino?%61ccess_token={token}"), vec![], Ok(true)),
        (format!("/api/trino?access_token={token}#frag"), vec![], Ok(true)),
        (
            format!("/api/trino?access_tokenx={token}"),
            vec![],
            Err("token_missing"),
        ),
        (
            format!("/api/trino?xaccess_token={token}"),
            vec![],
            Err("token_missing"),
        ),
        (
            "/api/trino".into(),
            vec![("cookie", format!("session2={token}"))],
            Err("token_missing"),
        ),
        (
            "/api/trino".into(),
            vec![("cookie", format!("xsession={token}"))],
            Err("token_missing"),
        ),
        (
            "/api/trino".into(),
            vec![("cookie", format!("a=1;session={token}"))],
            Ok(true),
        ),
        (
            "/api/trino".into(),
            vec![("authorization", format!("Bearer{token}"))],
            Err("token_missing"),
        ),
        (
            "/api/trino".into(),
            vec![("authorization", format!("  BEARER   {token} "))],
            Ok(true),
        ),
    ];
    for (path, headers, want) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(f.reason("GET", &path, &headers), want, "{path} {headers:?}");
    }
    let e = f.edits("GET", &format!("/api/trino?access%5Ftoken={token}&keep=%2F"), &[]);
    assert!(
        e.contains(&(":path".to_string(), Some("/api/trino?keep=%2F".to_string()))),
        "{e:?}"
    );
}

#[test]
fn a_shadow_denial_is_published_for_the_tenant_filter() {
    let mut f = Fixture::new();
    let d = f.run("GET", "/shadow", &[]);
    let props = d.properties();
    assert!(
        props.contains(&("tollgate.jwt_shadow_denied", Cow::Borrowed(&b"token_missing"[..]))),
        "{props:?}"
    );
    let auth = bearer(&mint(&claims()));
    let d = f.run("GET", "/shadow", &[("authorization", &auth)]);
    assert!(d.properties().iter().all(|(k, _)| *k != "tollgate.jwt_shadow_denied"));
}

// ---- attack review (branch `attack`): safe behaviour, ignored while open ----

fn attack_fixture() -> Fixture {
    let jwks: Value = serde_json::from_str(JWKS).unwrap();
    let doc = json!({
        "version": 1,
        "defaults": {"jwt": {"requirement": "none"}},
        "routes": [
            {"name": "reports", "match": {"prefix": "/api/reports"}, "jwt": {"requirement": "required", "rules": [
                {"claim": "scope", "contains": "reports:read", "methods": ["GET"]},
            ]}},
            {"name": "fwd", "match": {"prefix": "/fwd"}, "jwt": {"requirement": "required"}},
        ],
        "jwt": {"providers": [
            {"name": "platform", "issuer": "https://idp.test", "audiences": ["254carbon-api"], "local_jwks": jwks,
             "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
             "from_params": ["access_token"], "from_cookies": ["session"], "forward": true},
        ]},
    });
    let policy = Policy::from_json(doc.to_string().as_bytes()).unwrap();
    let caches = Caches::new(&policy);
    Fixture {
        policy,
        caches,
        host: CountingHost(Cell::new(0)),
        store: Store(Keys::Unavailable),
    }
}

/// Finding 4 (rules): a claim rule limited to GET is skipped for HEAD, which
/// every framework serves with the GET handler (headers, length, ETag, and
/// any side effect of the GET handler).
#[test]
fn attack_head_is_bound_by_get_rules() {
    let mut f = attack_fixture();
    let token = mint(&claims()); // scope: "trino:query datahub:read", no reports:read
    let auth = bearer(&token);
    assert_eq!(
        f.reason("GET", "/api/reports/q1", &[("authorization", &auth)]),
        Err("insufficient_scope")
    );
    assert_eq!(
        f.reason("HEAD", "/api/reports/q1", &[("authorization", &auth)]),
        Err("insufficient_scope")
    );
}

/// Finding 7: with `forward: true`, only the source the verified token came
/// in is checked; the provider's other sources are neither checked nor
/// emptied, so `Authorization: Bearer <valid A>` plus `?access_token=<forged
/// B>` (or `Cookie: session=<forged B>`) reaches the application, which
/// reads B (it reads its token from the query or cookie).
#[test]
fn attack_forwarding_provider_sends_only_the_verified_token() {
    let mut f = attack_fixture();
    let token = mint(&claims());
    let auth = bearer(&token);
    let (d, e) = f.run_with_edits(
        "GET",
        "/fwd?access_token=forged.forged.forged",
        &[
            ("authorization", &auth),
            ("cookie", "session=forged.forged.forged; theme=dark"),
        ],
    );
    let verified = matches!(d.verdict, Ok(Some(_)));
    let refused = d.verdict.is_err();
    assert!(verified || refused, "{:?}", d.verdict);
    if verified {
        assert!(
            e.contains(&(":path".to_string(), Some("/fwd".to_string()))),
            "forged query token forwarded: {e:?}"
        );
        assert!(
            e.contains(&("cookie".to_string(), Some("theme=dark".to_string()))),
            "forged cookie token forwarded: {e:?}"
        );
    }
}

/// Finding 8: two cookies of one name: Tollgate verifies the first, and with
/// `forward: true` both reach the application; Django (`parse_cookie`: last
/// wins) and Rack read the second, unverified one.
#[test]
fn attack_duplicate_token_cookie_is_refused() {
    let mut f = attack_fixture();
    let token = mint(&claims());
    let cookie = format!("session={token}; session=forged.forged.forged");
    let (d, e) = f.run_with_edits("GET", "/fwd", &[("cookie", &cookie)]);
    let forwarded_both = matches!(d.verdict, Ok(Some(_))) && !e.iter().any(|(h, _)| h == "cookie");
    assert!(!forwarded_both, "{:?} {e:?}", d.verdict);
}

/// Finding 10: a tenant-required (enforce) route takes every provider by
/// default; a token from a provider without `tenant_claim` (here `hmac`; in
/// real life a second IdP or a machine-token issuer) is verified, publishes
/// no `tollgate.tenant`, and the tenant filter then takes the client's
/// `x-tenant-id` (any tenant) and stamps it with its tier.
#[test]
fn attack_tenant_route_needs_a_tenant_claim_from_every_provider() {
    let mut f = Fixture::new();
    let hs = mint_with(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(b"01234567890123456789012345678901"),
        &json!({"iss": "https://hmac.test", "exp": NOW + 60}),
    );
    let got = f.reason(
        "GET",
        "/tenanted",
        &[("authorization", &bearer(&hs)), ("x-tenant-id", "NED-001")],
    );
    assert_eq!(got, Err("token_tenant_missing"));
}

/// Finding 11: `claim_to_headers` joins arrays with commas, so
/// `roles: ["analyst,admin"]` and `roles: ["analyst", "admin"]` give the
/// application the same `x-user-roles: analyst,admin`; where users can name
/// a claim item (group names, custom attributes) they get a role.
#[test]
fn attack_claim_header_items_cannot_forge_other_items() {
    let one = claims::header_value(&json!(["analyst,admin"]));
    let two = claims::header_value(&json!(["analyst", "admin"]));
    assert_ne!(one, two, "both give {one:?}");
}

/// Finding 12: with `forward: false`, query tokens are removed by exact
/// decoded name only; PHP reads `access.token`, `access token` and
/// `access[token` as `access_token`, and ASP.NET reads query names without
/// regard to case (`ACCESS_TOKEN`), so an unchecked token still reaches the
/// application (and on an optional route Tollgate saw no token at all).
#[test]
fn attack_query_token_spellings_are_removed() {
    let mut f = Fixture::new();
    for path in [
        "/optional?access.token=forged",
        "/optional?access+token=forged",
        "/optional?access%5Btoken=forged",
        "/optional?ACCESS_TOKEN=forged",
    ] {
        let e = f.edits("GET", path, &[]);
        assert!(
            e.contains(&(":path".to_string(), Some("/optional".to_string()))),
            "{path}: {e:?}"
        );
    }
}

/// Finding 15 (policy meaning): two providers may share an issuer; a token
/// is then always judged by whichever the route lists first, so the second
/// provider's `audiences`, `tenant_claim`, `claim_to_headers` and `forward`
/// never apply where the first is also listed (here the tenant claim of
/// `tenanted` is ignored, and the client's x-tenant-id is used instead).
#[test]
fn attack_providers_sharing_an_issuer_are_refused() {
    let jwks: Value = serde_json::from_str(JWKS).unwrap();
    let doc = json!({
        "version": 1,
        "routes": [{"name": "a", "match": {"prefix": "/a"}, "tenant": {"required": true}, "jwt": {"requirement": "required"}}],
        "jwt": {"providers": [
            {"name": "plain", "issuer": "https://idp.test", "local_jwks": jwks.clone()},
            {"name": "tenanted", "issuer": "https://idp.test", "local_jwks": jwks, "tenant_claim": "https://example.com/tenant"},
        ]},
    });
    assert!(Policy::from_json(doc.to_string().as_bytes()).is_err());
}

/// Finding 7 (other side): on a route that checks no token (`requirement:
/// none`, the default here), a `forward: true` provider's sources are never
/// emptied, so `Authorization: Bearer <forged>` reaches the application
/// unverified (README: "only the token a forward: true provider verified
/// stays").
#[test]
fn attack_forwarding_provider_unverified_token_is_removed_where_unchecked() {
    let mut f = attack_fixture();
    let e = f.edits(
        "GET",
        "/elsewhere?access_token=forged",
        &[("authorization", "Bearer forged")],
    );
    assert!(e.contains(&("authorization".to_string(), None)), "{e:?}");
    assert!(
        e.contains(&(":path".to_string(), Some("/elsewhere".to_string()))),
        "{e:?}"
    );
}

/// Finding 5 (rules): a lower-case `:method` (h2c: Envoy passes it) skips a
/// method-limited claim rule.
#[test]
fn attack_lower_case_method_is_bound_by_rules() {
    let mut f = attack_fixture();
    let auth = bearer(&mint(&claims()));
    let got = f.reason("get", "/api/reports/q1", &[("authorization", &auth)]);
    assert_eq!(got, Err("insufficient_scope"));
}

#[test]
fn query_names_other_stacks_read_as_a_token_source_are_that_source() {
    let cases = [
        ("access_token", true),
        ("ACCESS_TOKEN", true),
        ("access.token", true),
        ("access token", true),
        ("  access token", true),
        ("access[token", true),
        ("Access.Token", true),
        ("access_token\0", true),
        ("access_token\0x", true),
        ("access-token", false),
        ("access_tok\0en", false),
        ("access_tokens", false),
        ("access_token ", false),
        ("xaccess_token", false),
    ];
    for (sent, want) in cases {
        assert_eq!(same_param(sent, "access_token"), want, "{sent:?}");
    }
    let mut f = Fixture::new();
    let token = mint(&claims());
    // Found under any spelling; two spellings are two tokens.
    let path = format!("/api/trino?Access.Token={token}");
    assert_eq!(f.reason("GET", &path, &[]), Ok(true));
    let path = format!("/api/trino?access_token={token}&ACCESS_TOKEN=x");
    assert_eq!(f.reason("GET", &path, &[]), Err("token_malformed"));
    let cookie = format!("session={token}; session={token}");
    assert_eq!(
        f.reason("GET", "/api/trino", &[("cookie", &cookie)]),
        Err("token_malformed")
    );
}

#[test]
fn a_forwarded_token_stays_where_it_came_and_nothing_else_does() {
    let mut f = attack_fixture();
    let auth = bearer(&mint(&claims()));
    let (d, e) = f.run_with_edits("GET", "/fwd?keep=1&ACCESS.TOKEN=x", &[("authorization", &auth)]);
    assert!(matches!(d.verdict, Ok(Some(_))), "{:?}", d.verdict);
    assert!(!e.iter().any(|(h, _)| h == "authorization"), "{e:?}");
    assert!(
        e.contains(&(":path".to_string(), Some("/fwd?keep=1".to_string()))),
        "{e:?}"
    );
    // A refused token is not kept either (edits are for a request that
    // goes on only in shadow mode, but are computed all the same).
    let (d, e) = f.run_with_edits("GET", "/fwd", &[("authorization", "Bearer forged")]);
    assert!(d.verdict.is_err());
    assert!(e.contains(&("authorization".to_string(), None)), "{e:?}");
}

#[test]
fn a_forwarded_header_token_loses_its_other_spellings() {
    let doc = json!({
        "version": 1,
        "routes": [{"name": "fwd", "match": {"prefix": "/fwd"}, "jwt": {"requirement": "required"}}],
        "jwt": {"providers": [
            {"name": "hmac", "issuer": "https://hmac.test", "hmac_secret_base64": "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
             "from_headers": [{"name": "x-jwt-assertion"}], "forward": true},
        ]},
    });
    let policy = Policy::from_json(doc.to_string().as_bytes()).unwrap();
    let mut f = Fixture {
        caches: Caches::new(&policy),
        policy,
        host: CountingHost(Cell::new(0)),
        store: Store(Keys::Unavailable),
    };
    let hs = mint_with(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(b"01234567890123456789012345678901"),
        &json!({"iss": "https://hmac.test", "exp": NOW + 60}),
    );
    let (d, e) = f.run_with_edits(
        "GET",
        "/fwd",
        &[("x-jwt-assertion", &hs), ("x_jwt_assertion", "forged")],
    );
    assert!(matches!(d.verdict, Ok(Some(_))), "{:?}", d.verdict);
    assert_eq!(e, vec![("x_jwt_assertion".to_string(), None)]);
}

// ---- Second attack review (branch `attack2`) ----

fn attack2_fixture(forward: bool) -> Fixture {
    let jwks: Value = serde_json::from_str(JWKS).unwrap();
    let doc = json!({
        "version": 1,
        "defaults": {"jwt": {"requirement": "none"}},
        "routes": [
            {"name": "optional", "match": {"prefix": "/optional"}, "jwt": {"requirement": "optional"}},
            {"name": "fwd", "match": {"prefix": "/fwd"}, "jwt": {"requirement": "required"}},
        ],
        "jwt": {"providers": [
            {"name": "platform", "issuer": "https://idp.test", "audiences": ["254carbon-api"], "local_jwks": jwks,
             "from_params": ["access_token"], "from_cookies": ["auth_token"], "forward": forward},
        ]},
    });
    let policy = Policy::from_json(doc.to_string().as_bytes()).unwrap();
    let caches = Caches::new(&policy);
    Fixture {
        policy,
        caches,
        host: CountingHost(Cell::new(0)),
        store: Store(Keys::Unavailable),
    }
}

/// Finding 2.2: cookies are matched by exact name, but PHP registers
/// `$_COOKIE` through the same `php_register_variable_ex` as `$_GET`: the
/// name is url-decoded and `.`/` `/`[` become `_`. `Cookie:
/// auth.token=<forged>` (or `auth%5Ftoken`, `auth+token`) is neither found
/// nor removed, and PHP reads it as `$_COOKIE['auth_token']`: an unchecked
/// token reaches the application (README: "no token, checked or not,
/// reaches the application").
#[test]
fn attack2_php_cookie_name_spellings_are_removed() {
    let mut f = attack2_fixture(false);
    for cookie in [
        "auth.token=forged.forged.forged; theme=dark",
        "auth%5Ftoken=forged.forged.forged; theme=dark",
        "auth+token=forged.forged.forged; theme=dark",
    ] {
        let e = f.edits("GET", "/optional", &[("cookie", cookie)]);
        assert!(
            e.contains(&("cookie".to_string(), Some("theme=dark".to_string()))),
            "{cookie}: {e:?}"
        );
    }
}

/// Finding 2.2 (with `forward: true`): `Cookie: auth.token=<forged>;
/// auth_token=<valid A>` is verified as A and sent on whole; PHP keeps the
/// FIRST cookie of a name, so `$_COOKIE['auth_token']` is the forged one.
#[test]
fn attack2_php_cookie_spelling_beside_a_forwarded_token_is_refused_or_removed() {
    let mut f = attack2_fixture(true);
    let token = mint(&claims());
    let cookie = format!("auth.token=forged.forged.forged; auth_token={token}");
    let (d, e) = f.run_with_edits("GET", "/fwd", &[("cookie", &cookie)]);
    let verified = matches!(d.verdict, Ok(Some(_)));
    let forged_kept = !e
        .iter()
        .any(|(h, v)| h == "cookie" && !v.as_deref().unwrap_or("").contains("forged"));
    assert!(!(verified && forged_kept), "{:?} {e:?}", d.verdict);
}

/// Finding 2.4: PHP registers a query variable by `strlen` of its decoded
/// name, so `access_token%00x=<forged>` is `$_GET['access_token']`;
/// `same_param` compares whole names, so it is neither found nor removed.
/// Rack 2 (`DEFAULT_SEP = /[&;] */`) and Python < 3.9.2 `parse_qsl` also
/// split on `;`: `x=1;access_token=<forged>` is one parameter `x` to
/// Tollgate and `access_token` to them.
#[test]
fn attack2_query_token_behind_nul_or_semicolon_is_removed() {
    let mut f = attack2_fixture(false);
    for path in [
        "/optional?access_token%00x=forged.forged.forged",
        "/optional?x=1;access_token=forged.forged.forged",
    ] {
        let (d, e) = f.run_with_edits("GET", path, &[]);
        let refused = d.verdict.is_err();
        let removed = e
            .iter()
            .any(|(h, v)| h == ":path" && !v.as_deref().unwrap_or("").contains("forged"));
        assert!(refused || removed, "{path}: {:?} {e:?}", d.verdict);
    }
}

#[test]
fn stripping_a_query_token_keeps_every_other_byte_and_separator() {
    let cases: [(&[u8], Option<&str>); 7] = [
        (b"/p?a=1;access_token=x&b=2", Some("/p?a=1&b=2")),
        (b"/p?a=1;b=2&access_token=x", Some("/p?a=1;b=2")),
        (b"/p?access_token=x;a=%3B&&b", Some("/p?a=%3B&&b")),
        (b"/p?access_token%00x=1", Some("/p")),
        (b"/p?Access.Token=1;access+token=2", Some("/p")),
        (b"/p?a=access_token;b", None),
        (b"/p", None),
    ];
    for (path, want) in cases {
        let got = strip_params(path, &["access_token"]);
        assert_eq!(got.as_deref(), want, "{:?}", String::from_utf8_lossy(path));
    }
}

#[test]
fn cookie_names_are_decoded_and_folded_like_query_names() {
    let mut f = attack2_fixture(false);
    let token = mint(&claims());
    let cookie = format!("auth%5Ftoken={token}");
    assert_eq!(f.reason("GET", "/optional", &[("cookie", &cookie)]), Ok(true));
    let cookie = format!("auth.token=forged; AUTH_TOKEN={token}");
    assert_eq!(
        f.reason("GET", "/optional", &[("cookie", &cookie)]),
        Err("token_malformed")
    );
    let e = f.edits("GET", "/optional", &[("cookie", "a=1; auth_token%00=x; b=2")]);
    assert!(
        e.contains(&("cookie".to_string(), Some("a=1; b=2".to_string()))),
        "{e:?}"
    );
}

// ---- cost of a cached token (issue 7) ----

/// One request with an already verified token: decide, filter state, header
/// edits, counter index. Not inlined, so callgrind can count it alone:
/// `valgrind --tool=callgrind --toggle-collect='*cached_round*' <test binary>
/// --ignored --exact jwt::decide_tests::cached_token_rounds`.
#[inline(never)]
fn cached_round(f: &Fixture, caches: &mut Caches, req: &JwtRequest<'_>) -> usize {
    let d = decide(&f.policy, req, &f.store, &f.host, caches);
    let props = d.properties();
    let edits = d.header_edits(&f.policy, req);
    std::hint::black_box((&props, &edits, d.metric_index()));
    props.len() + edits.len()
}

#[test]
#[ignore = "a measurement: cargo test --release -- --ignored cached_token_rounds"]
fn cached_token_rounds() {
    let mut f = Fixture::new();
    let token = mint(&claims());
    let headers: crate::header_map::HeaderMap = [
        (":authority", "api.example.com"),
        (":method", "GET"),
        (":path", "/api/trino/v1/statement?catalog=hive"),
        (":scheme", "https"),
        ("user-agent", "trino-cli/435"),
        ("accept", "application/json"),
        ("x-request-id", "6f1c1a52-8c2e-4b8a-9f0e-2b1d3c4e5f60"),
        ("x-forwarded-for", "10.1.2.3"),
        ("authorization", &bearer(&token)),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
    .collect();
    let req = JwtRequest {
        route: None,
        head: RequestHead {
            method: "GET",
            host: "api.example.com",
            path: "/api/trino/v1/statement",
        },
        raw_path: b"/api/trino/v1/statement?catalog=hive",
        headers: &headers,
        now: NOW,
    };
    let mut caches = std::mem::replace(&mut f.caches, Caches::new(&f.policy));
    let first = decide(&f.policy, &req, &f.store, &f.host, &mut caches);
    assert_eq!(first.cache, CacheUse::Miss);
    let rounds: u32 = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10_000);
    let start = std::time::Instant::now();
    let mut n = 0;
    for _ in 0..rounds {
        n += cached_round(&f, &mut caches, &req);
    }
    let per = start.elapsed() / rounds;
    let d = decide(&f.policy, &req, &f.store, &f.host, &mut caches);
    assert_eq!(d.cache, CacheUse::Hit);
    assert!(matches!(d.verdict, Ok(Some(_))), "{:?}", d.verdict);
    println!("cached round: {per:?} ({n} outputs)");
}

/// Everything a decision hands the glue, owned, for comparing.
type Outputs = (
    Result<bool, JwtDenial>,
    String,
    usize,
    Vec<(&'static str, Vec<u8>)>,
    Vec<(String, Option<String>)>,
);

fn outputs(f: &mut Fixture, method: &str, path: &str, headers: &[(&str, &str)]) -> (CacheUse, Outputs) {
    let (d, edits) = f.run_with_edits(method, path, headers);
    let props = d.properties().into_iter().map(|(k, v)| (k, v.into_owned())).collect();
    let verdict = d.verdict.as_ref().map(Option::is_some).map_err(|e| *e);
    (d.cache, (verdict, d.metric(), d.metric_index(), props, edits))
}

#[test]
fn a_cache_hit_gives_what_the_first_verification_gave() {
    let analyst = with_claims(json!({"roles": ["analyst"], "realm_access": {"roles": ["user"]}}));
    let no_tenant = with_claims(json!({"https://example.com/tenant": null}));
    let bad_tenant = with_claims(json!({"https://example.com/tenant": 7}));
    let engineer = bearer(&mint(&claims()));
    let cases: [(&str, &str, &str); 8] = [
        ("GET", "/api/trino/v1?x=1", &engineer),
        ("POST", "/api/trino", &analyst),
        ("GET", "/admin", &analyst),
        ("GET", "/admin", &engineer),
        ("GET", "/tenanted", &no_tenant),
        ("GET", "/tenant-shadow", &no_tenant),
        ("GET", "/optional", &bad_tenant),
        ("GET", "/shadow", &bad_tenant),
    ];
    for (method, path, auth) in cases {
        let mut f = Fixture::new();
        let headers = [
            ("authorization", auth),
            ("x_user_id", "spoofed"),
            ("cookie", "a=1; session=x"),
        ];
        let (first_use, first) = outputs(&mut f, method, path, &headers);
        let (second_use, second) = outputs(&mut f, method, path, &headers);
        assert_eq!(
            (first_use, second_use),
            (CacheUse::Miss, CacheUse::Hit),
            "{method} {path}"
        );
        assert_eq!(first, second, "{method} {path}");
    }
}

#[test]
fn every_decision_counts_by_index_into_its_name() {
    let names = metric_names();
    for c in Counter::ALL {
        assert_eq!(names[c.index()], c.name());
    }
    assert_eq!(names[Counter::CacheHit.index()], "tollgate.jwt.cache_hit");
    assert_eq!(names[Counter::SignatureHost.index()], "tollgate.jwt.signature_host");
    for (i, d) in JwtDenial::ALL.iter().enumerate() {
        assert_eq!(d.index(), i);
    }
    let policy = policy();
    let route = |path: &str| {
        policy.route(&RequestHead {
            method: "GET",
            host: "h",
            path,
        })
    };
    let (enforce, shadow) = (route("/api/trino"), route("/shadow"));
    assert_eq!((enforce.jwt.mode, shadow.jwt.mode), (Mode::Enforce, Mode::Shadow));
    let f = Fixture::new();
    let claims: Map<String, Value> = serde_json::from_value(claims()).unwrap();
    let provider = &f.policy.jwt.providers[0];
    let identity = Rc::new(Identity::new(
        0,
        provider,
        claims,
        claims::Times::read(&Map::new()).unwrap(),
    ));
    let mut verdicts: Vec<Result<Option<Rc<Identity>>, JwtDenial>> = vec![Ok(None), Ok(Some(identity))];
    verdicts.extend(JwtDenial::ALL.map(Err));
    let mut seen = std::collections::HashSet::new();
    for route in [enforce, shadow] {
        for verdict in &verdicts {
            let d = JwtDecision {
                route,
                verdict: verdict.clone(),
                refetch: None,
                stale_keys: false,
                cache: CacheUse::None,
                token_source: None,
                provider: None,
            };
            assert_eq!(names[d.metric_index()], d.metric(), "{verdict:?}");
            seen.insert(d.metric_index());
        }
    }
    // Both allowed counters and every denied and shadow-denied one.
    assert_eq!(seen.len(), 2 + 2 * JwtDenial::ALL.len());
    let refusals = [
        RequestDenial::PathTooLong,
        RequestDenial::PathInvalid("x"),
        RequestDenial::AuthorityInvalid("y"),
        RequestDenial::Unreadable,
    ];
    for d in refusals {
        assert_eq!(names[request_metric_index(d)], d.metric("jwt"));
    }
    assert_eq!(request_metric_index(RequestDenial::Unreadable), names.len() - 1);
}

/// `tollgate explain --no-verify`'s verifier: claims trusted as sent.
struct Trusting;

impl HostVerifier for Trusting {
    fn verify(&self, _: &str, _: &[u8], _: &[u8], _: &[u8]) -> Option<bool> {
        None
    }

    fn skips_signatures(&self) -> bool {
        true
    }
}

#[test]
fn a_verifier_that_skips_signatures_still_checks_times_issuer_and_audience() {
    let policy = policy();
    let mut caches = Caches::new(&policy);
    let store = Store(Keys::Unavailable);
    let decide_with = |token: &str, verifier: &dyn HostVerifier, caches: &mut Caches| {
        let headers = crate::header_map::HeaderMap::from_pairs([("authorization", bearer(token).into_bytes())]);
        let req = JwtRequest {
            route: None,
            head: RequestHead {
                method: "GET",
                host: "api.example.com",
                path: "/api/trino/v1",
            },
            raw_path: b"/api/trino/v1",
            headers: &headers,
            now: NOW,
        };
        match decide(&policy, &req, &store, verifier, caches).verdict {
            Ok(identity) => Ok(identity.map(|i| i.claims.get("sub").cloned())),
            Err(d) => Err(d.denial().reason),
        }
    };
    // A key no JWKS holds, and a signature that is not one.
    let unknown_key = mint_with(
        Algorithm::RS256,
        Some("not-in-jwks"),
        &EncodingKey::from_rsa_pem(&pem("rsa-1")).unwrap(),
        &claims(),
    );
    let valid = mint(&claims());
    let (head, _) = valid.rsplit_once('.').unwrap();
    let forged = format!("{head}.AAAA");
    for token in [&unknown_key, &forged] {
        let sub = Some(json!("user@254carbon.com"));
        assert_eq!(decide_with(token, &Trusting, &mut caches), Ok(Some(sub)));
        // Not cached as verified: the filters' verifier still refuses it.
        let refused = decide_with(token, &verify::NoHost, &mut caches);
        assert!(
            matches!(refused, Err("token_key_unknown" | "token_signature_invalid")),
            "{refused:?}"
        );
    }
    let with = |key: &str, value: Value| {
        let mut c = claims();
        c[key] = value;
        mint(&c)
    };
    for (token, reason) in [
        (with("exp", json!(NOW - 600)), "token_expired"),
        (with("nbf", json!(NOW + 600)), "token_not_yet_valid"),
        (with("iss", json!("https://other.test")), "token_issuer_invalid"),
        (with("aud", json!("other-api")), "token_audience_invalid"),
    ] {
        assert_eq!(decide_with(&token, &Trusting, &mut caches), Err(reason));
    }
}

// ---- attack review 3: every method the application may act on ----

/// A `_method` in the query makes Laravel, Symfony and Express's
/// method-override act on a GET as that method: the method's rules bind it.
/// Before, only the request's own method chose the rules, so an analyst's
/// `GET /api/trino?_method=POST` skipped the POST-only rule.
#[test]
fn attack3_query_method_override_is_bound_by_its_rules() {
    let mut f = Fixture::new();
    let analyst = with_claims(json!({"roles": ["analyst"]}));
    let auth = [("authorization", analyst.as_str())];
    assert_eq!(f.reason("GET", "/api/trino", &auth), Ok(true));
    for path in [
        "/api/trino?_method=POST",
        "/api/trino?_method=post",
        "/api/trino?a=1&%5FMETHOD=Post",
        "/api/trino?a=1;_method=POST",
        "/api/trino?_method=PUT&_method=POST",
    ] {
        assert_eq!(f.reason("GET", path, &auth), Err("insufficient_scope"), "{path}");
    }
    // Not a method any POST rule covers.
    assert_eq!(f.reason("GET", "/api/trino?_method=PATCH", &auth), Ok(true));
    let engineer = bearer(&mint(&claims()));
    let auth = [("authorization", engineer.as_str())];
    assert_eq!(f.reason("GET", "/api/trino?_method=POST", &auth), Ok(true));
}

/// On an optional route, a POST rule asks for a token: also when the POST
/// comes as a `_method` override.
#[test]
fn attack3_query_method_override_needs_the_token_its_rules_need() {
    let mut f = Fixture::new();
    assert_eq!(f.reason("GET", "/optional-rules", &[]), Ok(false));
    assert_eq!(
        f.reason("GET", "/optional-rules?_method=POST", &[]),
        Err("token_missing")
    );
    assert_eq!(f.reason("GET", "/optional-skip?_method=POST", &[]), Ok(false));
}

/// A GET-only rule binds a POST the application acts on as GET (`HEAD`
/// too: `GET` covers it).
#[test]
fn attack3_a_rule_binds_when_any_acted_method_matches() {
    let mut f = attack_fixture();
    let auth = bearer(&mint(&claims())); // no reports:read
    let auth = [("authorization", auth.as_str())];
    for path in ["/api/reports/q1?_method=GET", "/api/reports/q1?_method=head"] {
        assert_eq!(f.reason("POST", path, &auth), Err("insufficient_scope"), "{path}");
    }
    assert_eq!(f.reason("POST", "/api/reports/q1", &auth), Ok(true));
}

fn unstripped_fixture(strip: Value) -> Fixture {
    let jwks: Value = serde_json::from_str(JWKS).unwrap();
    let doc = json!({
        "version": 1,
        "strip_headers": strip,
        "routes": [
            {"name": "trino", "match": {"prefix": "/api/trino"}, "jwt": {"requirement": "required", "rules": [
                {"claim": "roles", "contains": "data-engineer", "methods": ["POST"]},
            ]}},
        ],
        "jwt": {"providers": [
            {"name": "platform", "issuer": "https://idp.test", "audiences": ["254carbon-api"], "local_jwks": jwks},
        ]},
    });
    let policy = Policy::from_json(doc.to_string().as_bytes()).unwrap();
    let caches = Caches::new(&policy);
    Fixture {
        policy,
        caches,
        host: CountingHost(Cell::new(0)),
        store: Store(Keys::Unavailable),
    }
}

/// A method header the policy leaves in reaches the application, which (or
/// whose auth middleware) acts on it: its method's rules bind. One the
/// policy strips never reaches it, and binds nothing.
#[test]
fn attack3_method_headers_left_in_are_bound_by_their_rules() {
    let analyst = with_claims(json!({"roles": ["analyst"]}));
    let mut kept = unstripped_fixture(json!([]));
    for (name, value) in [
        ("x-http-method-override", "POST"),
        ("X_HTTP_Method_Override", "post"),
        ("x-http-method", "POST"),
        ("x-method-override", "DELETE, POST"),
        ("x-original-method", "POST"),
        ("x-forwarded-method", "POST"),
    ] {
        let headers = [("authorization", analyst.as_str()), (name, value)];
        assert_eq!(
            kept.reason("GET", "/api/trino", &headers),
            Err("insufficient_scope"),
            "{name}"
        );
    }
    let mut stripped = unstripped_fixture(json!(["x-http-method-override"]));
    let headers = [("authorization", analyst.as_str()), ("x_http_method_override", "POST")];
    assert_eq!(stripped.reason("GET", "/api/trino", &headers), Ok(true));
    let headers = [("authorization", analyst.as_str()), ("x-forwarded-method", "POST")];
    assert_eq!(
        stripped.reason("GET", "/api/trino", &headers),
        Err("insufficient_scope")
    );
}
