//! The tenant stage: reads what it needs from the request and the jwt
//! stage's facts, asks `tollgate_core::tenant`, applies the answer.

use std::borrow::Cow;
use std::rc::Rc;
use tollgate_core::audit;
use tollgate_core::policy::wire::TenantSource;
use tollgate_core::policy::Policy;
use tollgate_core::request::RequestDenial;
use tollgate_core::stage::StageName;
use tollgate_core::state;
use tollgate_core::tenant::{self, TenantRequest};
use tollgate_host::{reply, Counters, Host, Publish, RequestContext, Stage, Step, TenantFacts, Verdict};

const STAGE: &str = "tenant";

/// A decision's verdict, the tenant for later stages, the fused record.
type Decided<'p> = (Verdict<'p>, Option<TenantFacts>, Option<Vec<u8>>);

/// The verified tenant claim, and whether the jwt stage shadow-denied.
type Verified<'e> = (Option<Cow<'e, [u8]>>, bool);

pub struct TenantStage {
    policy: Rc<Policy>,
    counters: Counters,
    claim_is_source: bool,
    /// The policy audits: behind separate filters the sources seen are
    /// published for the audit filter.
    audited: bool,
}

impl TenantStage {
    pub fn new(policy: &Rc<Policy>, host: &dyn Host) -> TenantStage {
        TenantStage {
            policy: policy.clone(),
            counters: Counters::define(host, &tenant::metric_names()),
            claim_is_source: policy.tenant.sources.contains(&TenantSource::Claim),
            audited: policy.stages.contains(&StageName::Audit),
        }
    }

    /// The verified claim and whether the jwt stage let the request through
    /// in shadow: from the jwt stage in memory when it ran in this
    /// pipeline, else from filter state (a separate jwt filter). Host calls
    /// only when the claim is a source, and for the marker only when the
    /// claim is absent. `Err` when the host failed a read.
    fn jwt_facts<'e>(&self, cx: &'e RequestContext, host: &dyn Host) -> Result<Verified<'e>, String> {
        if !self.claim_is_source {
            return Ok((None, false));
        }
        if let Some(facts) = &cx.facts.jwt {
            let claim = facts.tenant();
            return Ok((claim.map(Cow::Borrowed), claim.is_none() && facts.shadow_denied));
        }
        let claim = host.property(state::TENANT).map_err(|e| e.0)?;
        let shadow = match claim {
            Some(_) => false,
            None => host.property(tenant::JWT_SHADOW_DENIED).map_err(|e| e.0)?.is_some(),
        };
        Ok((claim.map(Cow::Owned), shadow))
    }
}

impl Stage for TenantStage {
    fn name(&self) -> &'static str {
        STAGE
    }

    fn on_request(&self, cx: &mut RequestContext, host: &dyn Host) -> Step {
        match self.decide(cx, host) {
            Ok((verdict, facts, record)) => {
                cx.facts.tenant = facts;
                cx.records.extend(record.map(|r| (STAGE, r)));
                reply::conclude(host, cx, verdict, &self.policy.realm)
            }
            Err(why) => {
                let counter = (&self.counters, tenant::request_metric_index(RequestDenial::Unreadable));
                reply::refuse_unreadable(host, cx, counter, &self.policy, STAGE, &why)
            }
        }
    }
}

impl TenantStage {
    /// Decides on the request and applies what goes to the host (counter,
    /// filter state, header edits). `Err` when the host failed a read.
    fn decide(&self, cx: &RequestContext, host: &dyn Host) -> Result<Decided<'_>, String> {
        let policy = &*self.policy;
        let context_id = cx.context_id;
        let (claim, jwt_shadow_denied) = self.jwt_facts(cx, host)?;
        let header_values = tenant::header_values(&policy.tenant, &cx.headers);
        let request = TenantRequest {
            head: cx.view.head(),
            claim: claim.as_deref(),
            header_values: &header_values,
            jwt_shadow_denied,
        };
        let decision = tenant::decide_on(policy, cx.view.route(policy), &request);
        self.counters.add(host, decision.metric_index());
        if cx.publish == Publish::Keys {
            for (key, value) in decision.properties() {
                reply::set_property(host, context_id, key, &value);
            }
            if self.audited {
                let seen = audit::tenant_sources_json(&tenant::sources_seen(&policy.tenant, &request));
                reply::set_property(host, context_id, state::TENANT_SOURCES, &seen);
            }
        }
        let record = (cx.publish == Publish::Record).then(|| decision.record());
        let edits = decision.header_edits(&policy.tenant, &cx.headers);
        reply::edit_request_headers(host, context_id, &edits);
        let facts = match &decision.verdict {
            Ok(Some(resolved)) => Some(TenantFacts {
                id: resolved.tenant.id.clone(),
                tier: Some(resolved.tenant.tier.clone()),
            }),
            _ => None,
        };
        let verdict = Verdict {
            stage: STAGE,
            route: &decision.route.name,
            mode: decision.mode(),
            action: decision.action(),
            detail: None,
        };
        Ok((verdict, facts, record))
    }
}
