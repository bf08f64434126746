//! Which bench rows are sidecar setups, and how the page groups them. A
//! unit test checks this list against `bench::configs::all()`: a new bench
//! row is added here or to `SCAFFOLDING`.

pub const BASELINE: &str = "baseline";
pub const NATIVE_CHAIN: &str = "native_chain";

pub struct Setup {
    pub name: &'static str,
    pub group: &'static str,
}

const ENVOY: &str = "Envoy, native filters";
const SPLIT: &str = "Tollgate, split filters";
const FUSED: &str = "Tollgate, fused filter";
const STAGES: &str = "fused, stage subsets";
const LIMITS: &str = "fused, rate limit";
const AUDIT: &str = "fused, audit";

const fn setup(group: &'static str, name: &'static str) -> Setup {
    Setup { name, group }
}

/// Every row of the per-sidecar table, in its order.
pub const ALL: [Setup; 23] = [
    setup(ENVOY, BASELINE),
    setup(ENVOY, NATIVE_CHAIN),
    setup(ENVOY, "native_jwt"),
    setup(ENVOY, "native_jwt_cache"),
    setup(ENVOY, "native_local_ratelimit"),
    setup(ENVOY, "native_ratelimit"),
    setup(SPLIT, "tollgate_jwt"),
    setup(SPLIT, "tollgate_tenant"),
    setup(SPLIT, "tollgate_jwt_tenant"),
    setup(SPLIT, "tollgate_jwt_uncached_host"),
    setup(SPLIT, "tollgate_jwt_uncached_rust"),
    setup(FUSED, "tollgate_fused"),
    setup(FUSED, "tollgate_fused_no_state"),
    setup(FUSED, "tollgate_fused_uncached_host"),
    setup(STAGES, "tollgate_fused_floor"),
    setup(STAGES, "tollgate_fused_jwt_stage"),
    setup(STAGES, "tollgate_fused_tenant_stage"),
    setup(LIMITS, "tollgate_fused_ratelimit_local"),
    setup(LIMITS, "tollgate_fused_ratelimit_global"),
    setup(AUDIT, "tollgate_fused_access_log"),
    setup(AUDIT, "tollgate_fused_audit"),
    setup(AUDIT, "tollgate_fused_audit_sampled"),
    setup(AUDIT, "tollgate_fused_audit_kafka"),
];

/// Bench rows that are no sidecar anyone runs: the test-only wasm filter,
/// and the native global limit's scaffold (a fault filter answering 200).
pub const SCAFFOLDING: [&str; 2] = ["trivial_wasm", "native_ratelimit_floor"];

/// The mesh table's single rows: Envoy alone, the native chain, Tollgate's
/// default delivery and its audit into a sink and into Kafka.
pub const MESH: [&str; 5] = [
    BASELINE,
    NATIVE_CHAIN,
    "tollgate_fused",
    "tollgate_fused_audit",
    "tollgate_fused_audit_kafka",
];

/// Tollgate doing `native_chain`'s job (token, tenant, a local limit, a
/// record of each request), composed from rows measured in the same
/// rounds: the audit row (jwt, tenant and audit stages) plus what the
/// local limit adds over the tenant stage alone.
pub const COMPOSED_BASE: &str = "tollgate_fused_audit";
pub const COMPOSED_ADDED: &str = "tollgate_fused_ratelimit_local";
pub const COMPOSED_PAIR: &str = "tollgate_fused_tenant_stage";
