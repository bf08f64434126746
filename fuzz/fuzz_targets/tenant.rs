//! Tenant resolution under the example policy: the request lines of
//! `tollgate_fuzz::request`, where a `tollgate.tenant` header line stands
//! for the jwt filter's verified claim and `tollgate.shadow` for its
//! shadow denial.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_core::request::RequestView;
use tollgate_core::tenant::{self, TenantRequest};

fuzz_target!(|data: &[u8]| {
    let req = tollgate_fuzz::request(data);
    let policy = tollgate_fuzz::example();
    let Ok(view) = RequestView::read(req.method, req.path, req.authority, policy) else {
        return;
    };
    let claim = req
        .headers
        .iter()
        .find(|(name, _)| *name == "tollgate.tenant")
        .map(|(_, value)| value);
    let jwt_shadow_denied = req.headers.iter().any(|(name, _)| name == "tollgate.shadow");
    let header_values = tenant::header_values(&policy.tenant, &req.headers);
    let tenant_req = TenantRequest {
        head: view.head(),
        claim,
        header_values: &header_values,
        jwt_shadow_denied,
    };
    let decision = tenant::decide_on(policy, view.route(policy), &tenant_req);
    let _ = decision.metric();
    let _ = decision.metric_index();
    let _ = decision.properties();
    let _ = decision.record();
    let _ = decision.header_edits(&policy.tenant, &req.headers);
    // The same request decides the same way.
    let again = tenant::decide_on(policy, view.route(policy), &tenant_req);
    assert_eq!(again.record(), decision.record());
});
