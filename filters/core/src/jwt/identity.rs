//! A verified token as the cache keeps it: what every request that brings
//! it again needs is prepared once, when it is verified, so a cache hit
//! clones an `Rc` and re-reads, re-serializes and re-copies nothing.

use super::claims::{self, Times};
use super::config::Provider;
use crate::decision;
use serde::Serialize;
use serde_json::{Map, Value};

/// A verified token with its prepared outputs.
#[derive(Debug)]
pub struct Identity {
    /// Index into `JwtConfig::providers`.
    pub provider: usize,
    /// For per-route claim rules (`claims::check_rules`).
    pub claims: Map<String, Value>,
    pub times: Times,
    tenant: TenantClaim,
    /// Filter-state writes, in order: `tollgate.sub`, `tollgate.tenant`,
    /// `tollgate.roles`, `tollgate.claims`; each only when there is a value.
    state: Vec<(&'static str, Box<[u8]>)>,
    /// (header, value) from the provider's `claim_to_headers`, in order;
    /// claims without a header value (`claims::header_value`) left out.
    headers: Vec<(Box<str>, Box<str>)>,
    /// `,"provider":...,"sub":...` for the decision record.
    record_fields: Box<[u8]>,
}

/// The provider's tenant claim in the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantClaim {
    Absent,
    Text,
    /// There, but not a string.
    NotText,
}

#[derive(Serialize)]
struct RecordFields<'a> {
    provider: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
}

impl Identity {
    pub fn new(provider: usize, config: &Provider, claims: Map<String, Value>, times: Times) -> Identity {
        let sub = claims.get("sub").and_then(Value::as_str);
        let tenant_value = config.tenant_claim.as_deref().and_then(|c| claims::lookup(&claims, c));
        let tenant = match tenant_value {
            None => TenantClaim::Absent,
            Some(Value::String(_)) => TenantClaim::Text,
            Some(_) => TenantClaim::NotText,
        };
        let mut state: Vec<(&'static str, Box<[u8]>)> = Vec::new();
        if let Some(sub) = sub {
            state.push((crate::state::SUB, sub.as_bytes().into()));
        }
        if let Some(tenant) = tenant_value.and_then(Value::as_str) {
            state.push((crate::state::TENANT, tenant.as_bytes().into()));
        }
        // Each write is a hostcall: nothing is written for what is absent.
        let roles = claims::string_list(claims::lookup(&claims, &config.roles_claim));
        if !roles.is_empty() {
            state.push((crate::state::ROLES, json(&roles)));
        }
        if !config.claims_to_state.is_empty() {
            let selected: Map<String, Value> = config
                .claims_to_state
                .iter()
                .filter_map(|c| claims::lookup(&claims, c).map(|v| (c.clone(), v.clone())))
                .collect();
            state.push((crate::state::CLAIMS, json(&selected)));
        }
        let headers = config
            .claim_to_headers
            .iter()
            .filter_map(|(claim, header)| {
                let value = claims::lookup(&claims, claim).and_then(claims::header_value)?;
                Some((header.as_str().into(), value.into_boxed_str()))
            })
            .collect();
        let record_fields = decision::fields(&RecordFields {
            provider: &config.name,
            sub,
        })
        .into_boxed_slice();
        Identity {
            provider,
            tenant,
            state,
            headers,
            record_fields,
            times,
            claims,
        }
    }

    pub fn tenant(&self) -> TenantClaim {
        self.tenant
    }

    /// Filter-state writes (key, value), ready to write.
    pub fn state(&self) -> impl ExactSizeIterator<Item = (&'static str, &[u8])> {
        self.state.iter().map(|(k, v)| (*k, &**v))
    }

    /// Request headers to set (name, value), ready to set.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.headers.iter().map(|(k, v)| (&**k, &**v))
    }

    /// The identity's own fields of the decision record (`decision::fields`).
    pub fn record_fields(&self) -> &[u8] {
        &self.record_fields
    }

    /// Roughly what it holds beyond the claims, for the cache's byte bound.
    pub fn prepared_bytes(&self) -> usize {
        let state: usize = self.state.iter().map(|(k, v)| k.len() + v.len()).sum();
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        state + headers + self.record_fields.len()
    }
}

fn json<T: Serialize + ?Sized>(value: &T) -> Box<[u8]> {
    serde_json::to_vec(value).unwrap_or_default().into_boxed_slice()
}
