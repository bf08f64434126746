//! The stage registry: every stage declared once. The module's root ids,
//! `tollgate render` (phases and priorities), `diff`, `explain`, the
//! rollout modes, the bench and the test harness read it here.

use crate::policy::Route;
use crate::reply::Denial;
use crate::Mode;
use serde::{Deserialize, Serialize};

/// A stage of the fused filter, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageName {
    Jwt,
    Tenant,
    Ratelimit,
    Audit,
}

/// What a stage is, for everything outside its own code.
pub struct StageSpec {
    pub name: StageName,
    /// Its key in the policy's `stages` and `modes`, and in metric names.
    pub key: &'static str,
    /// The root id that runs it alone (Istio's `pluginName`).
    pub root_id: &'static str,
    /// Istio phase and priority when delivered alone (higher runs first
    /// within a phase); the split chain runs in `STAGES` order.
    pub phase: &'static str,
    pub priority: i64,
    /// The policy's top-level sections it reads (`tollgate diff` names the
    /// stage a change there drives).
    pub sections: &'static [&'static str],
    /// The filter-state keys it writes (`crate::state`).
    pub state_keys: &'static [&'static str],
    /// Every counter it keeps, in the order its indices use.
    pub metric_names: fn() -> Vec<String>,
    /// Every denial it can answer with.
    pub denials: fn() -> Vec<Denial>,
    /// A route's mode for this stage (`modes: {<key>: shadow}` sets it);
    /// `None` for a stage that decides nothing (audit), which has no mode.
    pub route_mode: Option<fn(&mut Route) -> &mut Mode>,
}

/// Every stage's key, in `STAGES` order (for serde's messages; a test
/// checks it against `STAGES`).
pub const KEYS: &[&str] = &["jwt", "tenant", "ratelimit", "audit"];

/// The fused filter: the policy's stages in one plugin, in the phase of
/// the first (authentication).
pub const FUSED_ROOT_ID: &str = "tollgate";
pub const FUSED_PHASE: &str = "AUTHN";
pub const FUSED_PRIORITY: i64 = 100;

/// Every stage, in run order.
pub const STAGES: &[StageSpec] = &[
    StageSpec {
        name: StageName::Jwt,
        key: "jwt",
        root_id: "tollgate.jwt",
        phase: "AUTHN",
        priority: 100,
        sections: &["jwt"],
        state_keys: &[
            crate::state::SUB,
            crate::state::TENANT,
            crate::state::ROLES,
            crate::state::CLAIMS,
            crate::state::JWT_SHADOW_DENIED,
            crate::state::DECISION_JWT,
        ],
        metric_names: crate::jwt::metric_names,
        denials: || crate::jwt::JwtDenial::ALL.iter().map(|d| d.denial()).collect(),
        route_mode: Some(|route| &mut route.jwt.mode),
    },
    StageSpec {
        name: StageName::Tenant,
        key: "tenant",
        root_id: "tollgate.tenant",
        phase: "AUTHZ",
        priority: 1000,
        sections: &["tenant", "tenants"],
        state_keys: &[
            crate::state::TENANT,
            crate::state::TENANT_TIER,
            crate::state::DECISION_TENANT,
            crate::state::TENANT_SOURCES,
        ],
        metric_names: crate::tenant::metric_names,
        denials: || crate::tenant::TenantDenial::ALL.iter().map(|d| d.denial()).collect(),
        route_mode: Some(|route| &mut route.tenant.mode),
    },
    StageSpec {
        name: StageName::Ratelimit,
        key: "ratelimit",
        root_id: "tollgate.ratelimit",
        phase: "AUTHZ",
        priority: 500,
        sections: &["ratelimit"],
        state_keys: &[crate::state::DECISION_RATELIMIT],
        metric_names: crate::ratelimit::metric_names,
        denials: || crate::ratelimit::DENIALS.to_vec(),
        route_mode: Some(|route| &mut route.ratelimit.mode),
    },
    StageSpec {
        name: StageName::Audit,
        key: "audit",
        root_id: "tollgate.audit",
        // Alone, it runs after the deciding filters (STATS follows AUTHZ)
        // and reads their decisions from filter state in the log phase,
        // which every filter of the chain gets, refused requests included.
        phase: "STATS",
        priority: 100,
        sections: &["audit"],
        state_keys: &[],
        metric_names: crate::audit::metric_names,
        denials: Vec::new,
        route_mode: None,
    },
];

impl StageName {
    pub fn spec(self) -> &'static StageSpec {
        // `STAGES` lists every name, in declaration order (a test checks).
        STAGES.iter().find(|s| s.name == self).unwrap_or(&STAGE_NONE)
    }

    pub fn as_str(self) -> &'static str {
        self.spec().key
    }
}

/// Never returned while `STAGES` lists every name.
const STAGE_NONE: StageSpec = StageSpec {
    name: StageName::Jwt,
    key: "",
    root_id: "",
    phase: "",
    priority: 0,
    sections: &[],
    state_keys: &[],
    metric_names: Vec::new,
    denials: Vec::new,
    route_mode: None,
};

/// The stage a root id runs alone.
pub fn by_root_id(root_id: &str) -> Option<&'static StageSpec> {
    STAGES.iter().find(|s| s.root_id == root_id)
}

pub fn by_key(key: &str) -> Option<&'static StageSpec> {
    STAGES.iter().find(|s| s.key == key)
}

/// A stage's denial by its reason, from its own table.
pub fn denial(key: &str, reason: &str) -> Option<Denial> {
    (by_key(key)?.denials)().into_iter().find(|d| d.reason == reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn every_stage_is_listed_once_in_run_order_with_names_of_its_own() {
        let keys: Vec<&str> = STAGES.iter().map(|s| s.key).collect();
        assert_eq!(keys, KEYS);
        let names: Vec<StageName> = STAGES.iter().map(|s| s.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted);
        for spec in STAGES {
            assert_eq!(spec.name.spec().key, spec.key);
            assert_eq!(spec.root_id, format!("tollgate.{}", spec.key));
            let json = serde_json::to_string(&spec.name).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", spec.key));
            let metrics = (spec.metric_names)();
            assert!(metrics
                .iter()
                .all(|m| m.starts_with(&format!("tollgate.{}.", spec.key))));
            for key in spec.state_keys {
                assert!(crate::state::KEYS.iter().any(|(k, _, _)| k == key), "{key}");
            }
        }
    }
}
