//! A real gRPC client (tonic) through Tollgate to a gRPC upstream, over
//! h2c. Denials are Tollgate's local replies, which Envoy turns into
//! trailers-only gRPC answers for a gRPC request (`content-type:
//! application/grpc`): HTTP status 200, `grpc-status` from the reply's HTTP
//! status, `grpc-message` the reply's body (percent-encoded). The filters do
//! nothing for gRPC; these tests pin what Envoy makes of their replies.

#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::require_artefacts;
use common::tokens::{bearer, claims, claims_with, local_provider, now, remote_provider};
use serde_json::{json, Value};
use tollgate_h2_party::grpc::{self, CallRequest, Code, Status, CALL};
use tollgate_h2_party::h2c;
use tollgate_integration::{docker, paths, Bootstrap, Envoy, Filter};

struct Chain {
    envoy: Envoy,
    _upstream: grpc::Upstream,
}

/// Envoy's own filters (`native`), then jwt and tenant, in front of the gRPC upstream.
fn start(policy: &Value, clusters: &[(&str, u16)], native: Vec<Value>) -> Chain {
    require_artefacts();
    let upstream = grpc::Upstream::start_on(&format!("{}:0", docker::party_host()))
        .unwrap_or_else(|e| panic!("gRPC upstream could not bind: {e}"));
    let mut bootstrap = Bootstrap::new(upstream.port())
        .filter(Filter::tollgate("tollgate.jwt", &paths::module_wasm(), policy))
        .filter(Filter::tollgate("tollgate.tenant", &paths::module_wasm(), policy));
    bootstrap.upstream_http2 = true;
    bootstrap.native_filters = native;
    for (name, port) in clusters {
        bootstrap = bootstrap.cluster(name, *port);
    }
    Chain {
        envoy: Envoy::start(&bootstrap.to_json()),
        _upstream: upstream,
    }
}

impl Chain {
    /// The call with tonic: the reply, or the gRPC status it ended with.
    fn call(&self, path: &str, metadata: &[(&str, &str)]) -> Result<grpc::CallReply, Status> {
        grpc::call(self.envoy.addr(), path, metadata, "hello").unwrap_or_else(|e| {
            panic!(
                "gRPC call {path:.60} failed: {e}\n--- envoy log ---\n{}",
                self.envoy.log()
            )
        })
    }

    /// The same call framed by hand on the h2c client, to see the frames:
    /// which headers, whether a body and trailers came.
    fn raw(&self, path: &str, metadata: &[(&str, &str)]) -> h2c::Answer {
        let body = grpc::framed(&CallRequest {
            message: "hello".into(),
        });
        let mut headers: Vec<(String, Vec<u8>)> = vec![
            ("host".into(), self.envoy.addr().to_string().into_bytes()),
            ("content-type".into(), b"application/grpc".to_vec()),
            ("te".into(), b"trailers".to_vec()),
        ];
        headers.extend(metadata.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())));
        h2c::send(self.envoy.addr(), "POST", path, &headers, &body)
            .unwrap_or_else(|e| panic!("h2c {path:.60} failed: {e}\n--- envoy log ---\n{}", self.envoy.log()))
    }
}

/// The gRPC method needs a token with `echo:call` and a tenant; ACME may
/// call it, GLOBEX only the open route, OLD is suspended.
fn policy(provider: Value) -> Value {
    json!({
        "version": 1,
        "realm": "data-platform",
        "routes": [
            {"name": "echo", "match": {"prefix": "/tollgate.test.Echo/"},
             "jwt": {"requirement": "required", "rules": [{"claim": "scope", "contains": "echo:call"}]},
             "tenant": {"required": true}},
            {"name": "open", "match": {"prefix": "/open"}},
        ],
        "tenants": [
            {"id": "ACME", "tier": "premium"},
            {"id": "GLOBEX", "routes": ["open"]},
            {"id": "OLD", "status": "suspended"},
        ],
        "tenant": {"sources": ["claim", "header"]},
        "jwt": {"providers": [provider]},
    })
}

/// What a refusal must come to: Tollgate's HTTP status and reason, and the
/// gRPC status Envoy makes of it.
struct Want<'a> {
    what: &'a str,
    http: u16,
    reason: &'a str,
    code: Code,
}

/// A refusal arrives as a trailers-only gRPC answer: tonic reads the code
/// and the reason (the JSON body, in `grpc-message`); on the wire it is one
/// HEADERS frame with `:status` 200, `grpc-status` and `grpc-message`, no
/// body and no trailers.
fn assert_refused(chain: &Chain, path: &str, metadata: &[(&str, &str)], want: &Want<'_>) {
    let what = want.what;
    let status = match chain.call(path, metadata) {
        Ok(reply) => panic!("{what}: allowed, upstream saw {reply:?}"),
        Err(status) => status,
    };
    assert_eq!(status.code(), want.code, "{what}: {status:?}");
    if want.http == 429 {
        // Envoy's own local rate limit: its body is text, not Tollgate's JSON.
        assert_eq!(status.message(), want.reason, "{what}");
    } else {
        let body: Value = serde_json::from_str(status.message())
            .unwrap_or_else(|e| panic!("{what}: grpc-message is not the JSON body ({e}): {status:?}"));
        assert_eq!(body["reason"], want.reason, "{what}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: {body}");
    }
    let challenge = status.metadata().get("www-authenticate").and_then(|v| v.to_str().ok());
    if want.http == 401 {
        assert!(
            challenge.is_some_and(|c| c.starts_with("Bearer realm=\"data-platform\"")),
            "{what}: {challenge:?}"
        );
    }
    let raw = chain.raw(path, metadata);
    let header = |name: &str| tollgate_integration::http::header(&raw.headers, name).map(str::to_string);
    assert_eq!(raw.status, 200, "{what}: {raw:?}");
    assert_eq!(header("content-type").as_deref(), Some("application/grpc"), "{what}");
    assert_eq!(
        header("grpc-status"),
        Some((want.code as i32).to_string()),
        "{what}: {raw:?}"
    );
    assert!(
        header("grpc-message").is_some_and(|m| m.contains(want.reason)),
        "{what}: {raw:?}"
    );
    assert!(raw.body.is_empty(), "{what}: a body after the headers: {raw:?}");
    assert_eq!(raw.trailers, None, "{what}: not trailers-only");
    eprintln!(
        "measured: {:<24} HTTP {} -> grpc-status {} {:?}; grpc-message {}",
        want.reason,
        want.http,
        want.code as i32,
        want.code,
        header("grpc-message").unwrap_or_default()
    );
}

#[test]
fn an_allowed_call_reaches_the_grpc_upstream_with_the_verified_identity() {
    let chain = start(&policy(local_provider()), &[], Vec::new());
    let auth = bearer(&claims());
    let reply = chain
        .call(
            CALL,
            &[
                ("authorization", &auth),
                ("x-user-id", "admin"),
                ("x-tenant-tier", "gold"),
            ],
        )
        .unwrap_or_else(|status| panic!("refused: {status:?}"));
    assert_eq!(reply.message, "hello");
    assert_eq!(reply.path, CALL);
    assert_eq!(reply.values("content-type"), ["application/grpc"]);
    assert_eq!(reply.values("x-user-id"), ["user@254carbon.com"]);
    assert_eq!(reply.values("x-tenant-id"), ["ACME"]);
    assert_eq!(reply.values("x-tenant-tier"), ["premium"]);
    assert!(reply.values("authorization").is_empty(), "token forwarded: {reply:?}");
    // On the wire: headers, one message, then trailers with grpc-status 0.
    let raw = chain.raw(CALL, &[("authorization", &auth)]);
    assert_eq!(raw.status, 200);
    assert!(raw.body.len() > 5, "{raw:?}");
    let trailers = raw.trailers.unwrap_or_default();
    assert_eq!(tollgate_integration::http::header(&trailers, "grpc-status"), Some("0"));
}

#[test]
fn each_refusal_is_a_trailers_only_answer_with_a_fitting_grpc_status() {
    let chain = start(&policy(local_provider()), &[], Vec::new());
    let with = |patch: Value| bearer(&claims_with(&patch));
    let valid = bearer(&claims());
    let long = format!("/tollgate.test.Echo/{}", "a".repeat(8200));
    let auth = |token: &str| vec![("authorization", token.to_string())];
    let valid_and = |name, value: &str| vec![("authorization", valid.clone()), (name, value.to_string())];
    let unauthenticated = Code::Unauthenticated;
    let denied = Code::PermissionDenied;
    // (what, path, metadata, Tollgate's HTTP status and reason, the gRPC status)
    type Case<'a> = (&'a str, String, Vec<(&'a str, String)>, u16, &'a str, Code);
    let cases: Vec<Case> = vec![
        ("no token", CALL.into(), vec![], 401, "token_missing", unauthenticated),
        (
            "malformed token",
            CALL.into(),
            auth("Bearer not.a.token"),
            401,
            "token_malformed",
            unauthenticated,
        ),
        (
            "expired token",
            CALL.into(),
            auth(&with(json!({"exp": now() - 120}))),
            401,
            "token_expired",
            unauthenticated,
        ),
        (
            "scope missing",
            CALL.into(),
            auth(&with(json!({"scope": "trino:query"}))),
            403,
            "insufficient_scope",
            denied,
        ),
        (
            "spoofed tenant",
            CALL.into(),
            valid_and("x-tenant-id", "GLOBEX"),
            403,
            "tenant_mismatch",
            denied,
        ),
        (
            "unknown tenant",
            CALL.into(),
            auth(&with(json!({"tenant": "NOPE"}))),
            403,
            "tenant_unknown",
            denied,
        ),
        (
            "suspended tenant",
            CALL.into(),
            auth(&with(json!({"tenant": "OLD"}))),
            403,
            "tenant_suspended",
            denied,
        ),
        (
            "tenant not on route",
            CALL.into(),
            auth(&with(json!({"tenant": "GLOBEX"}))),
            403,
            "tenant_route_forbidden",
            denied,
        ),
        (
            "malformed tenant",
            CALL.into(),
            valid_and("x-tenant-id", "no spaces"),
            400,
            "tenant_invalid",
            Code::Internal,
        ),
        (
            "path parameter",
            format!("{CALL};v=1"),
            auth(&valid),
            400,
            "path_invalid",
            Code::Internal,
        ),
        ("path too long", long, auth(&valid), 414, "path_too_long", Code::Unknown),
    ];
    for (what, path, metadata, http, reason, code) in &cases {
        let metadata: Vec<(&str, &str)> = metadata.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let want = Want {
            what,
            http: *http,
            reason,
            code: *code,
        };
        assert_refused(&chain, path, &metadata, &want);
    }
    // Still answering after every refusal.
    assert!(chain.call(CALL, &[("authorization", &valid)]).is_ok());
}

#[test]
fn no_keys_is_unavailable() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let chain = start(&policy(remote_provider("idp")), &[("idp", closed)], Vec::new());
    let want = Want {
        what: "no keys",
        http: 503,
        reason: "jwks_unavailable",
        code: Code::Unavailable,
    };
    assert_refused(&chain, CALL, &[("authorization", &bearer(&claims()))], &want);
}

/// Envoy's own 429 (its local rate limit, in front of Tollgate): what a
/// rate-limit stage's 429 will come to.
#[test]
fn a_429_is_unavailable() {
    let limit = json!({
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "limit",
            "token_bucket": {"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "3600s"},
            "filter_enabled": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}, "runtime_key": "limit_enabled"},
            "filter_enforced": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}, "runtime_key": "limit_enforced"},
        },
    });
    let chain = start(&policy(local_provider()), &[], vec![limit]);
    let auth = bearer(&claims());
    // One token in the bucket, shared by the workers: the first call takes it.
    assert!(chain.call(CALL, &[("authorization", &auth)]).is_ok());
    let want = Want {
        what: "Envoy's local rate limit",
        http: 429,
        reason: "local_rate_limited",
        code: Code::Unavailable,
    };
    assert_refused(&chain, CALL, &[("authorization", &auth)], &want);
}
