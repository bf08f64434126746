//! Staged rollout: `modes` puts a whole stage in shadow, `skip_namespaces`
//! makes a plugin stand aside where a namespace has its own, and `mesh`
//! says how `tollgate render` lays plugins over an Istio mesh. The filters
//! act on the first two; `mesh` is checked here so the tool and the filters
//! read one policy the same way, and is otherwise the tool's.

use super::errors::{index, join, PolicyErrors};
use super::Route;
use crate::Mode;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// A mode per stage. `shadow` turns every route of the stage to shadow;
/// `enforce` (or leaving it out) keeps each route's own mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StageModes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<Mode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Mode>,
}

impl StageModes {
    /// `self` where set, else `base`.
    pub fn over(self, base: StageModes) -> StageModes {
        StageModes {
            jwt: self.jwt.or(base.jwt),
            tenant: self.tenant.or(base.tenant),
        }
    }

    pub fn apply(self, routes: &mut [Route], fallback_jwt: &mut Mode, fallback_tenant: &mut Mode) {
        if self.jwt == Some(Mode::Shadow) {
            *fallback_jwt = Mode::Shadow;
            routes.iter_mut().for_each(|r| r.jwt.mode = Mode::Shadow);
        }
        if self.tenant == Some(Mode::Shadow) {
            *fallback_tenant = Mode::Shadow;
            routes.iter_mut().for_each(|r| r.tenant.mode = Mode::Shadow);
        }
    }
}

/// How the policy is laid over an Istio mesh (`tollgate render`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MeshDoc {
    /// Istio's root namespace: a plugin there applies to every sidecar
    /// (default `istio-system`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_namespace: Option<String>,
    /// Modes of the mesh-wide plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modes: Option<StageModes>,
    /// Workload labels every plugin selects (`selector.matchLabels`);
    /// default every workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<BTreeMap<String, String>>,
    /// Namespaces with a plugin of their own, replacing the mesh-wide one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<NamespaceDoc>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceDoc {
    pub name: String,
    /// Over the mesh-wide modes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modes: Option<StageModes>,
}

pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

impl MeshDoc {
    pub fn root_namespace(&self) -> &str {
        self.root_namespace.as_deref().unwrap_or(DEFAULT_ROOT_NAMESPACE)
    }

    pub fn check(&self, errors: &mut PolicyErrors) {
        let root = self.root_namespace();
        if let Err(why) = check_namespace(root) {
            errors.push("mesh.root_namespace", why);
        }
        let mut seen = HashSet::new();
        for (i, ns) in self.namespaces.iter().enumerate() {
            let path = join(&index("mesh.namespaces", i), "name");
            if let Err(why) = check_namespace(&ns.name) {
                errors.push(path, why);
            } else if ns.name == root {
                errors.push(path, "is the root namespace: set the mesh-wide `mesh.modes` instead");
            } else if !seen.insert(ns.name.as_str()) {
                errors.push(path, format!("'{}' is listed twice", ns.name));
            }
        }
        for (key, value) in self.selector.iter().flatten() {
            let path = format!("mesh.selector.{key}");
            if !is_label_key(key) {
                errors.push(path, "is not a Kubernetes label key");
            } else if !is_label_value(value) {
                errors.push(path, "is not a Kubernetes label value");
            }
        }
    }
}

/// A namespace name: a DNS-1123 label.
pub fn check_namespace(name: &str) -> Result<(), String> {
    if is_dns_label(name) {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a namespace name (a DNS-1123 label: 1 to 63 of a-z, 0-9 and '-', starting and ending alphanumeric)"
        ))
    }
}

pub fn check_skip_namespaces(names: &[String], errors: &mut PolicyErrors) {
    for (i, name) in names.iter().enumerate() {
        if let Err(why) = check_namespace(name) {
            errors.push(index("skip_namespaces", i), why);
        }
    }
}

fn is_dns_label(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| alnum(b) || b == b'-')
        && s.bytes().next().is_some_and(alnum)
        && s.bytes().last().is_some_and(alnum)
}

/// `[prefix/]name`: prefix a DNS subdomain, name up to 63 of
/// alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
fn is_label_key(key: &str) -> bool {
    let (prefix, name) = key.rsplit_once('/').map_or((None, key), |(p, n)| (Some(p), n));
    let prefix_ok = prefix.is_none_or(|p| p.len() <= 253 && p.split('.').all(is_dns_label));
    prefix_ok && !name.is_empty() && is_label_value(name)
}

fn is_label_value(value: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_alphanumeric();
    value.is_empty()
        || value.len() <= 63
            && value.bytes().all(|b| alnum(b) || b == b'-' || b == b'_' || b == b'.')
            && value.bytes().next().is_some_and(alnum)
            && value.bytes().last().is_some_and(alnum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels() {
        assert!(is_dns_label("data-hub1") && !is_dns_label("-a") && !is_dns_label("A") && !is_dns_label(""));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_label_key("app") && is_label_key("app.kubernetes.io/part-of"));
        assert!(!is_label_key("/app") && !is_label_key("a b") && !is_label_key("Bad_/x"));
        assert!(is_label_value("") && is_label_value("v1.2_x") && !is_label_value("-v"));
    }

    #[test]
    fn modes_layer_over_the_mesh_wide_ones() {
        let mesh = StageModes {
            jwt: Some(Mode::Shadow),
            tenant: Some(Mode::Shadow),
        };
        let ns = StageModes {
            jwt: Some(Mode::Enforce),
            tenant: None,
        };
        let both = ns.over(mesh);
        assert_eq!((both.jwt, both.tenant), (Some(Mode::Enforce), Some(Mode::Shadow)));
    }
}
