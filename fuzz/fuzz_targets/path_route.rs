//! `:path` normalization and route matching (`RequestView::read`: method,
//! path, authority, the other readings of the path) under the example
//! policy and its variants with other path settings.
//!
//! Beyond "no panic": what is served decides the same route when read
//! again, and normalizing is idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_core::path::normalize_path;
use tollgate_core::request::RequestView;

fuzz_target!(|data: &[u8]| {
    let req = tollgate_fuzz::request(data);
    for policy in tollgate_fuzz::policies() {
        let Ok(view) = RequestView::read(req.method, req.path, req.authority, policy) else {
            continue;
        };
        let route = view.route(policy);
        assert!(std::ptr::eq(route, policy.route(&view.head())));
        // `OPTIONS *` has no path to normalize.
        assert!(
            view.path == "*"
                || normalize_path(view.path.as_bytes(), policy.paths.parameters).as_deref() == Ok(view.path.as_str()),
            "normalizing {:?} again changes it",
            view.path
        );
        let raw = req.path.unwrap_or_default();
        let served = view.target(raw);
        let again = RequestView::read(req.method, Some(served), req.authority, policy);
        let again = again.unwrap_or_else(|e| {
            panic!(
                "{:?} is served as {:?}, which is refused: {e:?}",
                String::from_utf8_lossy(raw),
                String::from_utf8_lossy(served)
            )
        });
        assert_eq!(again.path, view.path);
        assert_eq!(again.served_path, None);
        assert_eq!(again.route(policy).name, route.name);
    }
});
