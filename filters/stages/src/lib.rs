//! Tollgate's stages and the one place that builds them. Each stage reads
//! what it needs from the request context, asks `tollgate_core`, and
//! applies the answer through the `Host` trait. No proxy-wasm here: the
//! module (`tollgate-module`) puts these behind Envoy, `tollgate explain`
//! runs them on the in-memory host.

pub mod audit;
pub mod jwt;
pub mod ratelimit;
pub mod tenant;

use std::rc::Rc;
use tollgate_core::policy::Policy;
use tollgate_core::stage::{self, StageName};
use tollgate_host::{Host, PipelineRoot, Stage};

/// The fused filter: every stage the policy configures, in one context.
pub use tollgate_core::stage::FUSED_ROOT_ID;

/// A stage, built for a policy.
pub fn build(name: StageName, policy: &Rc<Policy>, host: &dyn Host) -> Box<dyn Stage> {
    match name {
        StageName::Jwt => Box::new(jwt::JwtStage::new(policy, host)),
        StageName::Tenant => Box::new(tenant::TenantStage::new(policy, host)),
        StageName::Ratelimit => Box::new(ratelimit::RatelimitStage::new(policy, host)),
        StageName::Audit => Box::new(audit::AuditStage::new(policy, host)),
    }
}

/// The policy's stages, in their fixed order (`Policy::stages`).
pub fn stages(policy: &Rc<Policy>, host: &dyn Host) -> Vec<Box<dyn Stage>> {
    if !policy.stages.contains(&StageName::Audit) {
        audit::retire(host);
    }
    policy.stages.iter().map(|name| build(*name, policy, host)).collect()
}

pub fn fused() -> PipelineRoot {
    PipelineRoot::new(FUSED_ROOT_ID, stages, true)
}

/// The pipeline for a root id: the fused filter, or one stage alone;
/// `None` for an id this module does not hold.
pub fn root_for(root_id: &str) -> Option<PipelineRoot> {
    if root_id == FUSED_ROOT_ID {
        return Some(fused());
    }
    let spec = stage::by_root_id(root_id)?;
    let name = spec.name;
    let alone = move |policy: &Rc<Policy>, host: &dyn Host| vec![build(name, policy, host)];
    Some(PipelineRoot::new(spec.root_id, alone, false))
}

/// Every root id this module holds.
pub fn root_ids() -> Vec<&'static str> {
    let mut ids = vec![FUSED_ROOT_ID];
    ids.extend(stage::STAGES.iter().map(|s| s.root_id));
    ids
}

#[cfg(test)]
mod audit_tests;
#[cfg(test)]
mod ratelimit_tests;
#[cfg(test)]
mod tests;
