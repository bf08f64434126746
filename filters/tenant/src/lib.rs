//! The tenant filter: reads the request, asks `tollgate_core::tenant`, applies
//! the answer.

use log::{debug, error, info};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::rc::Rc;
use tollgate_core::decision::Action as Verdict;
use tollgate_core::policy::wire::TenantSource;
use tollgate_core::policy::Policy;
use tollgate_core::request::RequestDenial;
use tollgate_core::tenant::{self, TenantRequest};
use tollgate_host as host;

pub const ROOT_ID: &str = "tollgate.tenant";

#[derive(Default)]
pub struct TenantRoot {
    policy: Option<Rc<Policy>>,
    counters: Rc<host::Counters>,
}

impl Context for TenantRoot {}

impl RootContext for TenantRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        match Policy::from_json(&host::plugin_config(size)) {
            Ok(policy) => {
                info!(
                    "{ROOT_ID} configured: {} routes, {} tenants",
                    policy.routes.len(),
                    policy.tenants.len()
                );
                self.policy = Some(Rc::new(policy));
                if self.counters.is_empty() {
                    self.counters = Rc::new(host::Counters::define(&tenant::metric_names()));
                }
                true
            }
            Err(errors) => {
                // Refuse to start rather than run on part of a policy; a
                // previous good policy, if any, stays in force.
                error!("{ROOT_ID} rejected its configuration: {errors}");
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(TenantHttp {
            context_id,
            policy: self.policy.clone(),
            counters: self.counters.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct TenantHttp {
    context_id: u32,
    policy: Option<Rc<Policy>>,
    counters: Rc<host::Counters>,
}

impl Context for TenantHttp {}

impl HttpContext for TenantHttp {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let Some(policy) = self.policy.as_deref() else {
            return host::reply_unconfigured(self.context_id);
        };
        let (headers, view) = match host::read_request(self.context_id, "tenant", policy, &self.counters) {
            Ok(read) => read,
            Err(action) => return action,
        };
        let request_id = host::first(&headers, "x-request-id");
        // A host call: only when the verified claim is a source.
        let claim_is_source = policy.tenant.sources.contains(&TenantSource::Claim);
        let read = |key: &str| {
            host::property(key).map_err(|e| {
                let denial = RequestDenial::Unreadable;
                host::refuse(
                    self.context_id,
                    "tenant",
                    policy,
                    &self.counters,
                    &headers,
                    denial,
                    &e.0,
                )
            })
        };
        let claim = if claim_is_source {
            match read("tollgate.tenant") {
                Ok(claim) => claim,
                Err(action) => return action,
            }
        } else {
            None
        };
        // Only when a verified claim was expected and is absent: did the jwt
        // filter let the request through in shadow mode?
        let jwt_shadow_denied = if claim_is_source && claim.is_none() {
            match read(tenant::JWT_SHADOW_DENIED) {
                Ok(marker) => marker.is_some(),
                Err(action) => return action,
            }
        } else {
            false
        };
        let header_values = tenant::header_values(&policy.tenant, &headers);
        let request = TenantRequest {
            head: view.head(),
            claim: claim.as_deref(),
            header_values: &header_values,
            jwt_shadow_denied,
        };
        let decision = tenant::decide(policy, &request);
        self.counters.increment(&decision.metric());
        for (key, value) in decision.properties() {
            host::set_property(self.context_id, key, &value);
        }
        host::edit_request_headers(self.context_id, &decision.header_edits(&policy.tenant, &headers));
        if !matches!(decision.action(), Verdict::Deny(_)) {
            let strip = tollgate_core::headers::strip_removals(&policy.strip_headers, &headers);
            host::edit_request_headers(self.context_id, &strip);
        }
        match decision.action() {
            Verdict::Allow => Action::Continue,
            Verdict::ShadowDeny(denial) => {
                info!(
                    "#{} shadow: would deny {} on route {}",
                    self.context_id, denial.reason, decision.route.name
                );
                Action::Continue
            }
            Verdict::Deny(denial) => {
                debug!(
                    "#{} deny {} on route {}",
                    self.context_id, denial.reason, decision.route.name
                );
                host::send_reply(self.context_id, &denial.reply(request_id, &policy.realm))
            }
        }
    }
}
