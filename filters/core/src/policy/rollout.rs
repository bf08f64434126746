//! Staged rollout: `modes` puts a whole stage in shadow, `skip_namespaces`
//! makes a plugin stand aside where a namespace has its own, and `mesh`
//! says how `tollgate render` lays plugins over an Istio mesh. The filters
//! act on the first two; `mesh` is checked here so the tool and the filters
//! read one policy the same way, and is otherwise the tool's.

use super::errors::{index, join, PolicyErrors};
use super::Route;
use crate::stage::{StageName, STAGES};
use crate::Mode;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// A mode per stage (`{jwt: shadow}`). `shadow` turns every route of the
/// stage to shadow; `enforce` (or leaving it out) keeps each route's own
/// mode. Keys are the registry's stage names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageModes([Option<Mode>; STAGES.len()]);

impl StageModes {
    /// The mode set for a stage, if any.
    pub fn get(self, stage: StageName) -> Option<Mode> {
        self.0.get(position(stage)).copied().flatten()
    }

    pub fn set(&mut self, stage: StageName, mode: Option<Mode>) {
        if let Some(slot) = self.0.get_mut(position(stage)) {
            *slot = mode;
        }
    }

    /// `self` where set, else `base`.
    pub fn over(self, base: StageModes) -> StageModes {
        let mut out = base;
        for spec in STAGES {
            if let Some(mode) = self.get(spec.name) {
                out.set(spec.name, Some(mode));
            }
        }
        out
    }

    /// Puts every route (and the fallback) of a shadowed stage in shadow.
    pub fn apply(self, routes: &mut [Route], fallback: &mut Route) {
        for spec in STAGES.iter().filter(|s| self.get(s.name) == Some(Mode::Shadow)) {
            let Some(route_mode) = spec.route_mode else { continue };
            *route_mode(fallback) = Mode::Shadow;
            routes.iter_mut().for_each(|r| *route_mode(r) = Mode::Shadow);
        }
    }
}

fn position(stage: StageName) -> usize {
    STAGES.iter().position(|s| s.name == stage).unwrap_or(usize::MAX)
}

impl Serialize for StageModes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let set: BTreeMap<StageName, Mode> = STAGES
            .iter()
            .filter_map(|s| Some((s.name, self.get(s.name)?)))
            .collect();
        set.serialize(serializer)
    }
}

/// A map of stage keys to modes; an unknown key is an `unknown field`
/// error raised inside its value, so its path ends at the key (the policy
/// decoder then removes it and goes on).
impl<'de> Deserialize<'de> for StageModes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ModesVisitor)
    }
}

struct ModesVisitor;

impl<'de> serde::de::Visitor<'de> for ModesVisitor {
    type Value = StageModes;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a map of stage names to modes")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<StageModes, A::Error> {
        let mut modes = StageModes::default();
        while let Some(key) = map.next_key::<String>()? {
            let mode = map.next_value_seed(ModeOf(&key))?;
            if let Some(spec) = crate::stage::by_key(&key) {
                modes.set(spec.name, Some(mode));
            }
        }
        Ok(modes)
    }
}

/// The stages that have a mode (audit decides nothing).
const MODE_KEYS: &[&str] = &["jwt", "tenant", "ratelimit"];

/// A stage's mode, or `unknown field` when no stage with a mode has that key.
struct ModeOf<'k>(&'k str);

impl<'de> serde::de::DeserializeSeed<'de> for ModeOf<'_> {
    type Value = Mode;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Mode, D::Error> {
        if crate::stage::by_key(self.0).is_none_or(|s| s.route_mode.is_none()) {
            return Err(serde::de::Error::unknown_field(self.0, MODE_KEYS));
        }
        Mode::deserialize(deserializer)
    }
}

/// Decodes and checks the `mesh` section (the tool's; see `PolicyDoc::mesh`).
pub fn check_mesh(value: &serde_json::Value, errors: &mut PolicyErrors) {
    if let Some(mesh) = super::decode::decode::<MeshDoc>(value.clone(), "mesh", errors) {
        mesh.check(errors);
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
    /// Gateways or waypoints the mesh-wide plugin attaches to
    /// (`targetRefs`), instead of a selector.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<TargetRef>,
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
    /// Instead of the mesh-wide selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<BTreeMap<String, String>>,
    /// This namespace's gateways, waypoints or services.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<TargetRef>,
}

/// A resource a plugin attaches to, in the plugin's own namespace (Istio
/// refuses cross-namespace references).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetRef {
    pub kind: String,
    pub name: String,
    /// Implied by the kind when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// The kinds Istio's WasmPlugin reference lists for `targetRefs`, with
/// their API group. GatewayClass only from the root namespace.
const TARGET_KINDS: &[(&str, &str)] = &[
    ("Gateway", "gateway.networking.k8s.io"),
    ("GatewayClass", "gateway.networking.k8s.io"),
    ("Service", ""),
    ("ServiceEntry", "networking.istio.io"),
];
/// `targetRefs` holds at most this many (the CRD's maxItems).
pub const MAX_TARGET_REFS: usize = 16;

impl TargetRef {
    /// The group as rendered: the given one, or the kind's.
    pub fn group(&self) -> &str {
        match &self.group {
            Some(group) => group,
            None => kind_group(&self.kind).unwrap_or(""),
        }
    }

    fn check(&self, root: bool) -> Result<(), String> {
        let Some(group) = kind_group(&self.kind) else {
            let kinds: Vec<&str> = TARGET_KINDS.iter().map(|(k, _)| *k).collect();
            return Err(format!(
                "kind '{}' cannot be targeted: one of {}",
                self.kind,
                kinds.join(", ")
            ));
        };
        if self.kind == "GatewayClass" && !root {
            return Err("a GatewayClass is targeted from the root namespace only (`mesh.target_refs`)".into());
        }
        let given = self.group.as_deref().unwrap_or(group);
        if given != group && !(group.is_empty() && given == "core") {
            return Err(format!("group '{given}' is not {}'s ('{group}')", self.kind));
        }
        if !is_dns_subdomain(&self.name) {
            return Err(format!("name '{}' is not a Kubernetes object name", self.name));
        }
        Ok(())
    }
}

fn kind_group(kind: &str) -> Option<&'static str> {
    TARGET_KINDS.iter().find(|(k, _)| *k == kind).map(|(_, g)| *g)
}

/// How a plugin picks its proxies: every sidecar in its namespace, those
/// with labels, or named gateways and waypoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attach {
    Everything,
    Selector(BTreeMap<String, String>),
    Targets(Vec<TargetRef>),
}

impl Attach {
    fn of(selector: &Option<BTreeMap<String, String>>, target_refs: &[TargetRef]) -> Option<Attach> {
        match (selector, target_refs.is_empty()) {
            (Some(labels), true) => Some(Attach::Selector(labels.clone())),
            (None, false) => Some(Attach::Targets(target_refs.to_vec())),
            (None, true) => None,
            (Some(_), false) => None,
        }
    }
}

pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

impl MeshDoc {
    pub fn root_namespace(&self) -> &str {
        self.root_namespace.as_deref().unwrap_or(DEFAULT_ROOT_NAMESPACE)
    }

    /// What the mesh-wide plugin attaches to.
    pub fn attach(&self) -> Attach {
        Attach::of(&self.selector, &self.target_refs).unwrap_or(Attach::Everything)
    }

    /// What a namespace's own plugin attaches to: its own choice, else the
    /// mesh-wide selector (targets name root-namespace objects, so they
    /// never carry over).
    pub fn attach_of(&self, ns: &NamespaceDoc) -> Attach {
        Attach::of(&ns.selector, &ns.target_refs)
            .or_else(|| self.selector.clone().map(Attach::Selector))
            .unwrap_or(Attach::Everything)
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
            let at = index("mesh.namespaces", i);
            check_attach(&at, &ns.selector, &ns.target_refs, false, errors);
            if ns.selector.is_none() && ns.target_refs.is_empty() && !self.target_refs.is_empty() {
                errors.push(
                    at,
                    "has no selector or target_refs of its own, and mesh.target_refs cannot carry over \
                     (a target is named in its own namespace): name this namespace's gateway or waypoint",
                );
            }
        }
        check_attach("mesh", &self.selector, &self.target_refs, true, errors);
    }
}

fn check_attach(
    at: &str,
    selector: &Option<BTreeMap<String, String>>,
    target_refs: &[TargetRef],
    root: bool,
    errors: &mut PolicyErrors,
) {
    if selector.is_some() && !target_refs.is_empty() {
        errors.push(
            join(at, "target_refs"),
            "set selector or target_refs, not both (Istio refuses a WasmPlugin with both)",
        );
    }
    for (key, value) in selector.iter().flatten() {
        let path = format!("{}.{key}", join(at, "selector"));
        if !is_label_key(key) {
            errors.push(path, "is not a Kubernetes label key");
        } else if !is_label_value(value) {
            errors.push(path, "is not a Kubernetes label value");
        }
    }
    let refs = join(at, "target_refs");
    if target_refs.len() > MAX_TARGET_REFS {
        errors.push(
            refs.clone(),
            format!(
                "has {} entries, Istio takes {MAX_TARGET_REFS} at most",
                target_refs.len()
            ),
        );
    }
    for (i, target) in target_refs.iter().enumerate() {
        if let Err(why) = target.check(root) {
            errors.push(index(&refs, i), why);
        } else if target_refs
            .iter()
            .take(i)
            .any(|t| t.kind == target.kind && t.name == target.name)
        {
            errors.push(
                index(&refs, i),
                format!("{} '{}' is listed twice", target.kind, target.name),
            );
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

/// A DNS-1123 subdomain: the name most Kubernetes objects take.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// `[prefix/]name`: prefix a DNS subdomain, name up to 63 of
/// alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
fn is_label_key(key: &str) -> bool {
    let (prefix, name) = key.rsplit_once('/').map_or((None, key), |(p, n)| (Some(p), n));
    let prefix_ok = prefix.is_none_or(is_dns_subdomain);
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
        let mesh: StageModes = serde_json::from_str(r#"{"jwt": "shadow", "tenant": "shadow"}"#).unwrap();
        let ns: StageModes = serde_json::from_str(r#"{"jwt": "enforce"}"#).unwrap();
        let both = ns.over(mesh);
        let (jwt, tenant) = (both.get(StageName::Jwt), both.get(StageName::Tenant));
        assert_eq!((jwt, tenant), (Some(Mode::Enforce), Some(Mode::Shadow)));
        assert_eq!(serde_json::to_string(&ns).unwrap(), r#"{"jwt":"enforce"}"#);
        let unknown = serde_json::from_str::<StageModes>(r#"{"audit": "shadow"}"#);
        assert!(unknown.is_err());
    }
}
