//! The tenant stage: reads what it needs from the request and the jwt
//! stage's facts, asks `tollgate_core::tenant`, applies the answer.

use std::borrow::Cow;
use std::rc::Rc;
use tollgate_core::policy::wire::TenantSource;
use tollgate_core::policy::Policy;
use tollgate_core::request::RequestDenial;
use tollgate_core::tenant::{self, TenantRequest};
use tollgate_host::{reply, Counters, Exchange, Host, PipelineRoot, Stage, Step};

pub const ROOT_ID: &str = "tollgate.tenant";

/// The separate tenant filter: a pipeline of this one stage.
pub fn root() -> PipelineRoot {
    PipelineRoot::new(
        ROOT_ID,
        |policy, host| vec![Box::new(TenantStage::new(policy, host))],
        false,
    )
}

/// The verified tenant claim, and whether the jwt stage shadow-denied.
type Verified<'e> = (Option<Cow<'e, [u8]>>, bool);

pub struct TenantStage {
    policy: Rc<Policy>,
    counters: Counters,
    claim_is_source: bool,
}

impl TenantStage {
    pub fn new(policy: &Rc<Policy>, host: &dyn Host) -> TenantStage {
        TenantStage {
            policy: policy.clone(),
            counters: Counters::define(host, &tenant::metric_names()),
            claim_is_source: policy.tenant.sources.contains(&TenantSource::Claim),
        }
    }

    /// The verified claim and whether the jwt stage let the request through
    /// in shadow: from the jwt stage in memory when it ran in this
    /// pipeline, else from filter state (a separate jwt filter). Host calls
    /// only when the claim is a source, and for the marker only when the
    /// claim is absent. `Err` when the host failed a read.
    fn jwt_facts<'e>(&self, ex: &'e Exchange<'_>, host: &dyn Host) -> Result<Verified<'e>, String> {
        if !self.claim_is_source {
            return Ok((None, false));
        }
        if let Some(facts) = &ex.facts.jwt {
            let claim = facts.tenant();
            return Ok((claim.map(Cow::Borrowed), claim.is_none() && facts.shadow_denied));
        }
        let claim = host.property("tollgate.tenant").map_err(|e| e.0)?;
        let shadow = match claim {
            Some(_) => false,
            None => host.property(tenant::JWT_SHADOW_DENIED).map_err(|e| e.0)?.is_some(),
        };
        Ok((claim.map(Cow::Owned), shadow))
    }
}

impl Stage for TenantStage {
    fn name(&self) -> &'static str {
        "tenant"
    }

    fn on_request(&self, ex: &mut Exchange<'_>, host: &dyn Host) -> Step {
        let policy = &*self.policy;
        let context_id = ex.context_id;
        let (claim, jwt_shadow_denied) = match self.jwt_facts(ex, host) {
            Ok(facts) => facts,
            Err(why) => {
                let counter = (&self.counters, tenant::request_metric_index(RequestDenial::Unreadable));
                return reply::refuse_unreadable(host, ex, counter, policy, "tenant", &why);
            }
        };
        let header_values = tenant::header_values(&policy.tenant, ex.headers);
        let request = TenantRequest {
            head: ex.view.head(),
            claim: claim.as_deref(),
            header_values: &header_values,
            jwt_shadow_denied,
        };
        let decision = tenant::decide_on(policy, ex.view.route(policy), &request);
        self.counters.add(host, decision.metric_index());
        if ex.publish {
            for (key, value) in decision.properties() {
                reply::set_property(host, context_id, key, &value);
            }
        }
        let edits = decision.header_edits(&policy.tenant, ex.headers);
        reply::edit_request_headers(host, context_id, &edits);
        reply::conclude(host, ex, decision.action(), &decision.route.name, &policy.realm)
    }
}
