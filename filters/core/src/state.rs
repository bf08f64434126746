//! The filter-state contract: every key Tollgate writes, defined once.
//! Access logs read them as `%FILTER_STATE(<key>:PLAIN)%`, later filters
//! (and a separate tenant filter) as properties. The README's table is
//! checked against `KEYS` by a test.

/// The verified token's `sub`.
pub const SUB: &str = "tollgate.sub";
/// The tenant: the verified claim (jwt), then the decided tenant (tenant).
pub const TENANT: &str = "tollgate.tenant";
/// The decided tenant's tier.
pub const TENANT_TIER: &str = "tollgate.tenant_tier";
/// The verified token's roles, as a JSON array.
pub const ROLES: &str = "tollgate.roles";
/// The claims the policy's rules and headers read, as a JSON object.
pub const CLAIMS: &str = "tollgate.claims";
/// Set by the jwt filter when it let a request through in shadow mode.
pub const JWT_SHADOW_DENIED: &str = "tollgate.jwt_shadow_denied";
/// Each stage's decision record (`tollgate.decision.<stage>`).
pub const DECISION_JWT: &str = "tollgate.decision.jwt";
pub const DECISION_TENANT: &str = "tollgate.decision.tenant";

/// Every key, with who writes it and what it holds (the README's table).
pub const KEYS: [(&str, &str, &str); 8] = [
    (SUB, "jwt", "the verified token's `sub`"),
    (
        TENANT,
        "jwt, tenant",
        "the verified tenant claim, then the decided tenant",
    ),
    (TENANT_TIER, "tenant", "the decided tenant's tier"),
    (ROLES, "jwt", "the verified token's roles (JSON array)"),
    (CLAIMS, "jwt", "the claims the policy reads (JSON object)"),
    (
        JWT_SHADOW_DENIED,
        "jwt",
        "present when shadow mode let a refused request through",
    ),
    (DECISION_JWT, "jwt", "the jwt decision record (JSON)"),
    (DECISION_TENANT, "tenant", "the tenant decision record (JSON)"),
];
