//! The demo's example requests and tokens, with the answers expected of
//! them: `cargo xtask demo --check` sends each to a real Envoy, and
//! explain's tests run each through `tollgate explain`, from this one list.

use serde_json::{json, Value};

pub struct Example {
    pub what: &'static str,
    pub method: &'static str,
    pub path: &'static str,
    /// Shell variable holding the bearer token (see `TOKENS`).
    pub token: Option<&'static str>,
    pub headers: &'static [(&'static str, &'static str)],
    pub status: u16,
    /// `reason` of the JSON error body, for denials.
    pub reason: Option<&'static str>,
    /// Headers the application must see, for requests let through.
    pub upstream: &'static [(&'static str, &'static str)],
}

/// The demo's tokens: (variable, tenant, roles, scope, expired).
pub const TOKENS: &[(&str, &str, &[&str], &str, bool)] = &[
    ("STD", "STD-001", &["data-engineer", "analyst"], "trino:query", false),
    ("NED", "NED-001", &["analyst"], "trino:query", false),
    ("OLD", "OLD-001", &["analyst"], "", false),
    ("EXPIRED", "STD-001", &["analyst"], "", true),
];

const fn example(what: &'static str, path: &'static str, token: Option<&'static str>) -> Example {
    Example {
        what,
        method: "GET",
        path,
        token,
        headers: &[],
        status: 200,
        reason: None,
        upstream: &[],
    }
}

pub const EXAMPLES: &[Example] = &[
    Example {
        upstream: &[
            ("x-user-id", "user-123"),
            ("x-user-roles", "data-engineer,analyst"),
            ("x-tenant-id", "STD-001"),
            ("x-tenant-tier", "premium"),
        ],
        ..example(
            "verified token: identity and tenant headers for the app",
            "/api/datahub/entities",
            Some("STD"),
        )
    },
    Example {
        headers: &[("x-tenant-tier", "gold"), ("x-user-id", "admin")],
        upstream: &[("x-tenant-tier", "standard"), ("x-user-id", "user-123")],
        ..example(
            "client-sent tier and user headers never reach the app",
            "/api/superset/charts",
            Some("NED"),
        )
    },
    Example {
        status: 401,
        reason: Some("token_missing"),
        ..example("no token", "/api/datahub/entities", None)
    },
    Example {
        status: 401,
        reason: Some("token_expired"),
        ..example("expired token", "/api/datahub/entities", Some("EXPIRED"))
    },
    Example {
        ..example("analyst may query trino", "/api/trino/v1/statement", Some("NED"))
    },
    Example {
        method: "POST",
        status: 403,
        reason: Some("insufficient_scope"),
        ..example(
            "but POST needs the data-engineer role",
            "/api/datahub/../trino/v1/statement",
            Some("NED"),
        )
    },
    Example {
        headers: &[("x-tenant-id", "NED-001")],
        status: 403,
        reason: Some("tenant_mismatch"),
        ..example(
            "token says STD-001, header says NED-001",
            "/api/datahub/entities",
            Some("STD"),
        )
    },
    Example {
        status: 403,
        reason: Some("tenant_suspended"),
        ..example("suspended tenant", "/api/datahub/entities", Some("OLD"))
    },
    Example {
        status: 403,
        reason: Some("tenant_route_forbidden"),
        ..example("route the tenant may not use", "/api/mlflow/runs", Some("NED"))
    },
    Example {
        status: 403,
        reason: Some("tenant_route_forbidden"),
        ..example(
            "dot segments cannot dodge it",
            "/api/superset/../mlflow/runs",
            Some("NED"),
        )
    },
    Example {
        status: 400,
        reason: Some("path_invalid"),
        ..example(
            "';' path parameters, which servlet containers strip, are refused",
            "/api/superset;v=2/charts",
            Some("NED"),
        )
    },
    Example {
        headers: &[("host", "std-001.tenants.example.com")],
        upstream: &[("x-tenant-id", "STD-001")],
        ..example("tenant from the host name (open route)", "/api/services", None)
    },
    Example {
        headers: &[("x-tenant-id", "../admin")],
        status: 400,
        reason: Some("tenant_invalid"),
        ..example("malformed tenant id", "/api/services", None)
    },
    Example {
        status: 403,
        reason: Some("insufficient_scope"),
        ..example(
            "admin routes need the admin role (and are audited as admin operations)",
            "/api/admin/tenants",
            Some("NED"),
        )
    },
    Example {
        ..example(
            "shadow mode: would be refused, goes through and is counted",
            "/api/iceberg/tables",
            None,
        )
    },
];

/// The claims of a demo token (a row of `TOKENS`), shaped like the
/// platform's (seeds: iss, sub, aud, user_id, roles); `now` in Unix seconds.
pub fn token_claims(tenant: &str, roles: &[&str], scope: &str, expired: bool, now: u64) -> Value {
    let exp = if expired {
        now.saturating_sub(3600)
    } else {
        now.saturating_add(3600)
    };
    json!({
        "iss": "portal-service-issuer", "sub": "user@254carbon.com", "aud": "254carbon-api",
        "exp": exp, "iat": now, "user_id": "user-123", "roles": roles, "scope": scope, "tenant": tenant,
    })
}

/// The fixture key that signs the demo tokens (its public half is in the
/// example policy's JWKS), relative to the repository root.
pub const SIGNING_KEY: &str = "tests/fixtures/keys/rsa-1.pem";
/// Its `kid`.
pub const SIGNING_KID: &str = "rsa-1";
