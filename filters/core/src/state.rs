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
pub const DECISION_RATELIMIT: &str = "tollgate.decision.ratelimit";
/// A form body's refusal, by the separate filter that held the body: the
/// others' records, written in the headers phase, say allow.
pub const DECISION_FORM: &str = "tollgate.decision.form";
/// The tenant values the tenant filter read, by source, as the request
/// carried them (when the policy audits): the audit filter behind it sees
/// the tenant header it set and `tollgate.tenant` overwritten.
pub const TENANT_SOURCES: &str = "tollgate.tenant_sources";

/// The fused filter's one record: every stage's decision, the roles,
/// claims and tier (`combined_record`).
pub const DECISION: &str = "tollgate.decision";

/// Every key, with who writes it and what it holds (the README's table).
pub const KEYS: [(&str, &str, &str); 12] = [
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
    (
        DECISION_RATELIMIT,
        "ratelimit",
        "the rate limit decision record (JSON, with the deciding limit's name)",
    ),
    (
        DECISION,
        "the fused filter",
        "every stage's record, `roles`, `claims` and `tier` in one JSON object, instead of the seven keys above it",
    ),
    (
        DECISION_FORM,
        "a separate filter",
        "the refusal record of a form body that filter held (JSON)",
    ),
    (
        TENANT_SOURCES,
        "tenant",
        "every tenant value the request carried, by source, as audit events write them (JSON array; only when the policy audits)",
    ),
];

/// The fused filter's `tollgate.decision`: `{"<stage>": <its record>, ...,
/// "roles": [...], "claims": {...}, "tier": "..."}`, from the records the
/// stages made and the identity's prepared JSON (`Identity::state`).
/// Written in one host call instead of one per key.
pub fn combined_record<'k, 'v>(
    records: &[(&str, Vec<u8>)],
    identity: impl Iterator<Item = (&'k str, &'v [u8])>,
    tier: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + records.iter().map(|(_, r)| r.len() + 12).sum::<usize>());
    out.push(b'{');
    let field = |out: &mut Vec<u8>, name: &str, json: &[u8]| {
        if out.len() > 1 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        out.extend_from_slice(json);
    };
    for (stage, record) in records {
        field(&mut out, stage, record);
    }
    for (key, json) in identity {
        match key {
            ROLES => field(&mut out, "roles", json),
            CLAIMS => field(&mut out, "claims", json),
            _ => {}
        }
    }
    if let Some(tier) = tier {
        let quoted = serde_json::to_vec(tier).unwrap_or_default();
        field(&mut out, "tier", &quoted);
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn the_combined_record_is_one_json_object_of_every_part() {
        let records = vec![
            ("jwt", br#"{"filter":"jwt","outcome":"allow"}"#.to_vec()),
            ("tenant", br#"{"filter":"tenant","outcome":"deny"}"#.to_vec()),
        ];
        let identity = [
            (SUB, &b"ann"[..]),
            (ROLES, &br#"["analyst"]"#[..]),
            (CLAIMS, &br#"{"scope":"read"}"#[..]),
        ];
        let record = combined_record(&records, identity.into_iter(), Some("pre\"mium"));
        let json: serde_json::Value = serde_json::from_slice(&record).unwrap_or_default();
        assert_eq!(json["jwt"]["outcome"], "allow");
        assert_eq!(json["tenant"]["outcome"], "deny");
        assert_eq!(json["roles"][0], "analyst");
        assert_eq!(json["claims"]["scope"], "read");
        assert_eq!(json["tier"], "pre\"mium");
        assert!(json.get("sub").is_none(), "sub has a key of its own");
        assert_eq!(combined_record(&[], std::iter::empty(), None), b"{}");
    }
}
