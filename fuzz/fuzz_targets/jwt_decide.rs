//! The whole jwt decision on a request (`tollgate_fuzz::request` lines)
//! under the example policy, whose provider holds the fixture keys
//! (tests/fixtures/keys): the seeds carry validly signed tokens, so the
//! fuzzer starts past the signature check. Then the header edits and
//! filter-state writes the glue would apply.
//!
//! The same request decided again (now from the cache) gets the same verdict.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_core::jwt::verify::NoHost;
use tollgate_core::jwt::{self, Caches, JwtRequest, KeyStore, Keys};
use tollgate_core::request::RequestView;

/// The example provider's keys are local; remote ones are never fetched.
struct NoRemote;

impl KeyStore for NoRemote {
    fn keys(&self, _: usize) -> Keys {
        Keys::Unavailable
    }
}

fuzz_target!(|data: &[u8]| {
    let req = tollgate_fuzz::request(data);
    let policy = tollgate_fuzz::example();
    let Ok(view) = RequestView::read(req.method, req.path, req.authority, policy) else {
        return;
    };
    let raw_path = req.path.unwrap_or_default();
    let jwt_req = JwtRequest {
        head: view.head(),
        route: view.route,
        raw_path,
        headers: &req.headers,
        now: tollgate_fuzz::NOW,
    };
    let mut caches = Caches::new(policy);
    let first = jwt::decide(policy, &jwt_req, &NoRemote, &NoHost, &mut caches);
    let _ = first.header_edits(policy, &jwt_req);
    let _ = first.properties();
    let _ = first.metric();
    let _ = first.metric_index();
    let second = jwt::decide(policy, &jwt_req, &NoRemote, &NoHost, &mut caches);
    let claims = |d: &jwt::JwtDecision<'_>| d.verdict.clone().map(|i| i.map(|i| (i.provider, i.claims.clone())));
    assert_eq!(claims(&first), claims(&second), "the cached verdict differs");
});
