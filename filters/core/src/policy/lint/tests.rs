use super::*;
use crate::route::RequestHead;
use serde_json::{json, Value};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn warnings_of(doc: Value) -> Vec<String> {
    let policy = Policy::from_json(doc.to_string().as_bytes()).unwrap();
    let doc: PolicyDoc = serde_json::from_value(doc).unwrap();
    warnings(&doc, &policy).iter().map(ToString::to_string).collect()
}

fn routes(routes: Value) -> Value {
    json!({"version": 1, "paths": {"case": "sensitive"}, "routes": routes})
}

/// The paths of the warnings, for rows of route lists.
fn warned(list: Value) -> Vec<String> {
    warnings_of(routes(list))
        .iter()
        .map(|w| w.split(':').next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_route_listed_again_is_never_chosen() {
    let list = json!([
        {"name": "a", "match": {"prefix": "/api", "methods": ["GET", "POST"]}},
        {"name": "b", "match": {"prefix": "/api", "methods": ["post"]}},
        {"name": "c", "match": {"prefix": "/api"}},
    ]);
    let got = warnings_of(routes(list.clone()));
    assert_eq!(
        got,
        [
            "routes[1].match: route 'b' can never be chosen: routes[0] ('a') matches every request it matches and \
          takes precedence (the same path match, listed earlier)"
        ]
    );
    // `c` (any method) still gets PUT: the method-less route is not shadowed.
    let policy = Policy::from_json(routes(list).to_string().as_bytes()).unwrap();
    let head = RequestHead {
        method: "PUT",
        host: "x",
        path: "/api/x",
    };
    assert_eq!(policy.route(&head).name, "c");
}

#[test]
fn what_precedence_still_reaches_is_not_warned() {
    let rows = [
        // A later, longer prefix wins for its paths: precedence is not first-match.
        json!([{"name": "a", "match": {"prefix": "/api"}}, {"name": "b", "match": {"prefix": "/api/x"}}]),
        // A route with methods outranks one without on the same path.
        json!([{"name": "a", "match": {"prefix": "/api"}}, {"name": "b", "match": {"prefix": "/api", "methods": ["GET"]}}]),
        // HEAD is covered by GET, but GET is not covered by HEAD.
        json!([{"name": "a", "match": {"exact": "/x", "methods": ["HEAD"]}}, {"name": "b", "match": {"exact": "/x", "methods": ["GET"]}}]),
        // A host-scoped route outranks a route for any host.
        json!([{"name": "a", "match": {"prefix": "/api"}}, {"name": "b", "match": {"prefix": "/api", "hosts": ["a.example.com"]}}]),
        // Hosts the earlier route does not list.
        json!([{"name": "a", "match": {"prefix": "/api", "hosts": ["a.example.com"]}}, {"name": "b", "match": {"prefix": "/api", "hosts": ["a.example.com", "b.example.com"]}}]),
        // `prefix: /` does not match `OPTIONS *`; a route without a path does.
        json!([{"name": "a", "match": {"prefix": "/"}}, {"name": "b", "match": {"methods": ["OPTIONS"]}}]),
        // `/api/*/**` needs a segment after /api; `prefix: /api` matches /api itself.
        json!([{"name": "a", "match": {"template": "/api/*/**"}}, {"name": "b", "match": {"prefix": "/api"}}]),
        // The template does not cover every method the prefix route takes.
        json!([{"name": "a", "match": {"template": "/api/**", "methods": ["GET"]}}, {"name": "b", "match": {"prefix": "/api"}}]),
    ];
    for list in rows {
        assert_eq!(warned(list.clone()), Vec::<String>::new(), "{list}");
    }
}

#[test]
fn a_path_match_outranked_everywhere_is_warned_whatever_the_order() {
    let rows = [
        (
            json!([{"name": "b", "match": {"prefix": "/api/v1", "methods": ["GET"]}}, {"name": "a", "match": {"template": "/api/v1/**"}}]),
            "routes[0].match",
        ),
        (
            json!([{"name": "a", "match": {"template": "/**", "hosts": ["*.example.com"]}}, {"name": "b", "match": {"hosts": ["*.example.com"]}}]),
            "routes[1].match",
        ),
        (
            json!([{"name": "x", "match": {"exact": "/x"}}, {"name": "a", "match": {"exact": "/x", "methods": ["GET", "PUT"]}}, {"name": "b", "match": {"exact": "/x", "methods": ["PUT", "GET"]}}]),
            "routes[2].match",
        ),
    ];
    for (list, want) in rows {
        assert_eq!(warned(list.clone()), [want], "{list}");
    }
}

#[test]
fn the_warned_route_really_is_never_chosen() {
    // Each shadowed route above, checked against the real router on paths,
    // methods and hosts around it.
    let list = json!([
        {"name": "b", "match": {"prefix": "/api/v1", "methods": ["GET"]}},
        {"name": "a", "match": {"template": "/api/v1/**"}},
        {"name": "c", "match": {"hosts": ["*.example.com"]}},
        {"name": "d", "match": {"template": "/**", "hosts": ["*.example.com"]}},
    ]);
    assert_eq!(warned(list.clone()), ["routes[0].match", "routes[2].match"]);
    let policy = Policy::from_json(routes(list).to_string().as_bytes()).unwrap();
    for path in ["/api/v1", "/api/v1/", "/api/v1/x", "/api/v1//x", "/api/v2", "/", "*"] {
        for method in ["GET", "HEAD", "PUT"] {
            for host in ["a.example.com", "example.com", "other"] {
                let name = &policy.route(&RequestHead { method, host, path }).name;
                assert!(name != "b" && name != "c", "{method} {host} {path} went to {name}");
            }
        }
    }
}

fn remote(cluster: &str, uri: &str) -> Value {
    json!({"name": cluster, "issuer": format!("{cluster}|{uri}"), "remote_jwks": {"uri": uri, "cluster": cluster}})
}

fn jwt(providers: Vec<Value>) -> Value {
    let providers: Vec<Value> = providers
        .into_iter()
        .enumerate()
        .map(|(i, mut p)| {
            p["name"] = json!(format!("p{i}"));
            p
        })
        .collect();
    json!({"version": 1, "jwt": {"providers": providers}})
}

#[test]
fn jwks_clusters_agree_with_their_uris_and_each_other() {
    let ok = jwt(vec![
        remote("outbound|443||idp.example.com", "https://IDP.example.com/jwks"),
        remote("outbound|8080||keys.example.com", "http://keys.example.com:8080/jwks"),
        remote("outbound|443||idp.example.com", "https://idp.example.com/other"),
    ]);
    assert_eq!(warnings_of(ok), Vec::<String>::new());
    let plain = jwt(vec![
        remote("idp", "https://idp.example.com/jwks"),
        remote("keys", "http://[::1]/jwks"),
    ]);
    assert_eq!(warnings_of(plain), Vec::<String>::new());

    let got = warnings_of(jwt(vec![
        remote("outbound|443||idp.example.com", "https://idp.example.com/jwks"),
        remote("outbound|80||idp.example.com", "http://other.example.com/jwks"),
        remote("idp", "https://idp.example.com/keys"),
    ]));
    let at: Vec<&str> = got.iter().map(|w| w.split(": ").next().unwrap_or_default()).collect();
    assert_eq!(
        at,
        [
            "jwt.providers[1].remote_jwks.cluster",
            "jwt.providers[2].remote_jwks.cluster",
            "jwt.providers[2].remote_jwks.cluster",
        ],
        "{got:#?}"
    );
    assert!(got[0].contains("sends the fetch to idp.example.com:80, but the uri names other.example.com:80"));
    assert!(got[0].contains("'outbound|80||other.example.com'"));
    assert!(got[1].contains("'idp' is a plain cluster name while others are Istio's"));
    assert!(got[2].contains("idp.example.com:443 is fetched through 'idp' here and through 'outbound|443||idp.example.com' at jwt.providers[0].remote_jwks.cluster"));
}

#[test]
fn a_port_mismatch_is_warned() {
    let got = warnings_of(jwt(vec![remote(
        "outbound|443||idp.example.com",
        "https://idp.example.com:8443/jwks",
    )]));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("names idp.example.com:8443"), "{got:?}");
}

/// A policy with a remote JWKS fetch through `jwks`, the rate limit
/// service at `rls` and the audit sink at `sink`.
fn called(jwks: &str, rls: &str, sink: &str) -> Value {
    let mut doc = jwt(vec![remote(jwks, "https://idp.example.com/jwks")]);
    doc["defaults"] = json!({"limits": [
        {"name": "g", "key": ["route"], "requests": 5, "period": "second", "scope": "global"}
    ]});
    doc["ratelimit"] = json!({"service": {"cluster": rls}});
    doc["audit"] = json!({"sink": {"format": "kafka-rest", "cluster": sink}});
    doc
}

#[test]
fn the_rate_limit_and_audit_clusters_are_not_plain_among_istio_names() {
    let mesh = called(
        "outbound|443||idp.example.com",
        "outbound|8081||ratelimit.infra.svc.cluster.local",
        "outbound|8082||kafka-rest.kafka.svc.cluster.local",
    );
    assert_eq!(warnings_of(mesh), Vec::<String>::new());
    assert_eq!(
        warnings_of(called("idp", "ratelimit", "audit-sink")),
        Vec::<String>::new()
    );

    let got = warnings_of(called("outbound|443||idp.example.com", "ratelimit", "audit-sink"));
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[0].starts_with("ratelimit.service.cluster: 'ratelimit' is a plain cluster name"),
        "{got:#?}"
    );
    assert!(
        got[1].starts_with("audit.sink.cluster: 'audit-sink' is a plain cluster name"),
        "{got:#?}"
    );
    // The sink's Istio name alone makes the plain JWKS cluster stand out.
    let got = warnings_of(called(
        "idp",
        "ratelimit",
        "outbound|8082||kafka-rest.kafka.svc.cluster.local",
    ));
    let at: Vec<&str> = got.iter().map(|w| w.split(": ").next().unwrap_or_default()).collect();
    assert_eq!(
        at,
        ["jwt.providers[0].remote_jwks.cluster", "ratelimit.service.cluster"]
    );
}

#[test]
fn the_audit_sink_has_a_cluster_of_its_own() {
    let got = warnings_of(called("idp", "shared", "shared"));
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with(
            "audit.sink.cluster: 'shared' is also the rate limit service's, which answers gRPC (ratelimit.service.cluster)"
        ),
        "{got:#?}"
    );
    let got = warnings_of(called("idp", "ratelimit", "idp"));
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].contains("'idp' is also a JWKS host's, which serves keys (jwt.providers[0].remote_jwks.cluster)"),
        "{got:#?}"
    );
}
