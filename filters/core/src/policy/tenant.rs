//! The tenant part of the policy: the known tenants and where a tenant id
//! comes from. Decisions on requests are in `crate::tenant`.

use super::errors::{bounded_size, index, join, PolicyErrors};
use super::headers;
use super::wire::{TenantFilterDoc, TenantSource, TenantStatus};

pub const DEFAULT_MAX_ID_LENGTH: u64 = 64;
const MAX_ID_LENGTH_LIMIT: u64 = 256;

/// Whether some policy could take `id` (trimmed) as a tenant id: `check_id`
/// with the largest `max_id_length` a policy may set.
pub fn could_be_id(id: &[u8]) -> bool {
    let id = id.trim_ascii();
    let most = usize::try_from(MAX_ID_LENGTH_LIMIT).unwrap_or(usize::MAX);
    !id.is_empty() && id.len() <= most && id.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// As written in the policy: the form set in `x-tenant-id`.
    pub id: String,
    pub status: TenantStatus,
    pub tier: String,
    /// Route names the tenant may use; `None` is every route.
    pub routes: Option<Vec<String>>,
    /// Its place in the policy's list: its per-tenant counters' index.
    pub index: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantConfig {
    pub sources: Vec<TenantSource>,
    pub header: String,
    pub tier_header: String,
    /// `{tenant}.example.com` as (`""`, `".example.com"`).
    host: Option<(String, String)>,
    /// `/t/{tenant}` as `/t/`: the tenant is the segment after it.
    path_prefix: Option<String>,
    pub max_id_length: usize,
}

impl TenantConfig {
    pub fn compile(doc: &TenantFilterDoc, path: &str, errors: &mut PolicyErrors) -> TenantConfig {
        let sources = doc
            .sources
            .clone()
            .unwrap_or_else(|| vec![TenantSource::Claim, TenantSource::Header]);
        let sources_path = join(path, "sources");
        // At most one of each of the four sources: linear however long the list.
        let mut seen: Vec<TenantSource> = Vec::with_capacity(4);
        for (i, s) in sources.iter().enumerate() {
            if seen.contains(s) {
                errors.push(index(&sources_path, i), "listed twice");
            } else {
                seen.push(*s);
            }
        }
        let header = header_name(&doc.header, "x-tenant-id", &join(path, "header"), errors);
        let tier_header = header_name(&doc.tier_header, "x-tenant-tier", &join(path, "tier_header"), errors);
        let host = doc.host.as_deref().and_then(|h| match split_pattern(h) {
            Some((before, after)) if !after.is_empty() && !after.contains('{') && !before.contains('{') => {
                Some((before.to_ascii_lowercase(), after.to_ascii_lowercase()))
            }
            _ => {
                errors.push(
                    join(path, "host"),
                    format!("'{h}' must hold one '{{tenant}}' with a domain after it"),
                );
                None
            }
        });
        let path_prefix = doc.path_prefix.as_deref().and_then(|p| match split_pattern(p) {
            Some((before, "")) if before.starts_with('/') && before.ends_with('/') && !before.contains('{') => {
                Some(before.to_string())
            }
            _ => {
                errors.push(
                    join(path, "path_prefix"),
                    format!("'{p}' must look like '/t/{{tenant}}'"),
                );
                None
            }
        });
        if sources.contains(&TenantSource::Host) && doc.host.is_none() {
            errors.push(join(path, "host"), "required when sources lists host");
        }
        if sources.contains(&TenantSource::Path) && doc.path_prefix.is_none() {
            errors.push(join(path, "path_prefix"), "required when sources lists path");
        }
        let max_id_length = bounded_size(
            doc.max_id_length,
            DEFAULT_MAX_ID_LENGTH,
            1..=MAX_ID_LENGTH_LIMIT,
            &join(path, "max_id_length"),
            errors,
        );
        TenantConfig {
            sources,
            header,
            tier_header,
            host,
            path_prefix,
            max_id_length,
        }
    }

    /// A tenant id is 1 to `max_id_length` letters, digits, `-` or `_`.
    pub fn check_id(&self, id: &[u8]) -> Result<(), String> {
        if id.is_empty() || id.len() > self.max_id_length {
            return Err(format!("must be 1 to {} characters", self.max_id_length));
        }
        if !id.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')) {
            return Err("may hold only letters, digits, '-' and '_'".into());
        }
        Ok(())
    }

    /// `/t/acme/api/x` -> (`acme`, `/api/x`) when the path prefix is `/t/{tenant}`.
    pub fn split_path<'p>(&self, path: &'p str) -> Option<(&'p str, &'p str)> {
        let after = path.strip_prefix(self.path_prefix.as_deref()?)?;
        match after.find('/') {
            Some(0) => None,
            Some(i) => Some((after.get(..i)?, after.get(i..)?)),
            None if after.is_empty() => None,
            None => Some((after, "/")),
        }
    }

    /// `acme.example.com` -> `acme` when the host pattern is `{tenant}.example.com`.
    pub fn from_host<'h>(&self, host: &'h str) -> Option<&'h str> {
        let (before, after) = self.host.as_ref()?;
        let id = host.strip_prefix(before.as_str())?.strip_suffix(after.as_str())?;
        (!id.is_empty() && !id.contains('.')).then_some(id)
    }
}

fn split_pattern(p: &str) -> Option<(&str, &str)> {
    let (before, after) = p.split_once("{tenant}")?;
    (!after.contains("{tenant}")).then_some((before, after))
}

fn header_name(given: &Option<String>, default: &str, path: &str, errors: &mut PolicyErrors) -> String {
    let name = given.clone().unwrap_or_else(|| default.to_string());
    if let Err(why) = headers::check_managed(&name) {
        errors.push(path, why);
    }
    name
}
