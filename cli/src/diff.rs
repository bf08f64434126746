//! `tollgate diff OLD NEW`: what a policy change does, per namespace and
//! per filter, in the words a reviewer reads in a pull request.

use crate::mesh::{self, Placement};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::path::Path;
use tollgate_core::policy::rollout::StageModes;
use tollgate_core::stage::STAGES;

mod audit;
mod limits;

/// Longest value quoted in full; longer ones are cut.
const QUOTE_MAX: usize = 60;

pub fn run(old: &Path, new: &Path) -> Result<(), String> {
    let before = crate::policy_file::load_policy(old)?;
    let after = crate::policy_file::load_policy(new)?;
    let lines = diff(&before, &after)?;
    if lines.is_empty() {
        println!("no changes");
    }
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

/// Every change, rollout first (what is enforced where), then content.
pub fn diff(old: &Value, new: &Value) -> Result<Vec<String>, String> {
    let mut out = rollout(&mesh::placements(old)?, &mesh::placements(new)?);
    out.extend(content(old, new));
    Ok(out)
}

fn rollout(old: &[Placement], new: &[Placement]) -> Vec<String> {
    let mut out = Vec::new();
    let (old_root, new_root) = (root(old), root(new));
    if old_root.map(|p| &p.namespace) != new_root.map(|p| &p.namespace) {
        let name = |p: Option<&Placement>| p.map_or("none".to_string(), |p| p.namespace.clone());
        out.push(format!(
            "mesh-wide plugin: moves from namespace {} to {}",
            name(old_root),
            name(new_root)
        ));
    }
    let modes = |p: Option<&Placement>| p.map(|p| p.modes).unwrap_or_default();
    for change in mode_changes(modes(old_root), modes(new_root)) {
        out.push(format!("mesh-wide (every namespace without its own plugin): {change}"));
    }
    out.extend(attach_change("mesh-wide plugin", old_root, new_root));
    let names: BTreeSet<&str> = old
        .iter()
        .chain(new)
        .filter(|p| !p.mesh_wide)
        .map(|p| p.namespace.as_str())
        .collect();
    for name in names {
        let (before, after) = (own(old, name), own(new, name));
        let prefix = format!("namespace {name}");
        match (before, after) {
            (None, Some(p)) => out.push(format!(
                "{prefix}: gets its own plugin ({})",
                mesh::describe_modes(p.modes)
            )),
            (Some(_), None) => out.push(format!(
                "{prefix}: loses its own plugin and falls back to the mesh-wide one ({})",
                mesh::describe_modes(modes(new_root))
            )),
            _ => {}
        }
        let effective = |own: Option<&Placement>, root: Option<&Placement>| modes(own.or(root));
        for change in mode_changes(effective(before, old_root), effective(after, new_root)) {
            out.push(format!("{prefix}: {change}"));
        }
        if before.is_some() && after.is_some() {
            out.extend(attach_change(&prefix, before, after));
        }
    }
    out
}

/// A plugin that now attaches to other proxies.
fn attach_change(who: &str, old: Option<&Placement>, new: Option<&Placement>) -> Option<String> {
    let (old, new) = (&old?.attach, &new?.attach);
    (old != new).then(|| {
        format!(
            "{who}: attaches to {} (was {})",
            mesh::attach_words(new),
            mesh::attach_words(old)
        )
    })
}

fn root(all: &[Placement]) -> Option<&Placement> {
    all.iter().find(|p| p.mesh_wide)
}

fn own<'a>(all: &'a [Placement], name: &str) -> Option<&'a Placement> {
    all.iter().find(|p| !p.mesh_wide && p.namespace == name)
}

fn mode_changes(old: StageModes, new: StageModes) -> Vec<String> {
    mesh::moded_stages()
        .map(|s| (s.key, old.get(s.name), new.get(s.name)))
        .filter(|(_, a, b)| mesh::mode_word(*a) != mesh::mode_word(*b))
        .map(|(stage, a, b)| format!("{stage} filter {} -> {}", mesh::mode_word(a), mesh::mode_word(b)))
        .collect()
}

/// Lists keyed by their items' names: (section, key, what an item is).
const KEYED: &[(&str, &str, &str)] = &[("routes", "name", "route"), ("tenants", "id", "tenant")];

/// What the filters run, outside the rollout fields.
fn content(old: &Value, new: &Value) -> Vec<String> {
    let strip = |v: &Value| {
        let mut v = mesh::filter_config(v);
        if let Some(map) = v.as_object_mut() {
            map.remove("modes");
            map.remove("skip_namespaces");
        }
        without_worded(&mut v);
        v
    };
    let (written_old, written_new) = (old, new);
    let (old, new) = (strip(old), strip(new));
    let mut out = Vec::new();
    for (list, key, what) in KEYED {
        out.extend(keyed(&old[*list], &new[*list], key, what, &filters_of(list)));
    }
    let providers = |v: &Value| v["jwt"]["providers"].clone();
    out.extend(keyed(&providers(&old), &providers(&new), "name", "jwt provider", "jwt"));
    out.extend(limits::limit_changes(written_old, written_new));
    out.extend(limits::section_changes(written_old, written_new));
    out.extend(audit::section_changes(written_old, written_new));
    out.extend(audit::route_changes(written_old, written_new));
    let keys: BTreeSet<&String> = old
        .as_object()
        .into_iter()
        .chain(new.as_object())
        .flat_map(|m| m.keys())
        .collect();
    for key in keys
        .into_iter()
        .filter(|k| !["routes", "tenants"].contains(&k.as_str()))
    {
        let (mut a, mut b) = (old[key.as_str()].clone(), new[key.as_str()].clone());
        if key == "jwt" {
            a["providers"] = Value::Null;
            b["providers"] = Value::Null;
        }
        let mut changes = Vec::new();
        leaves(&a, &b, "", &mut changes);
        let filters = filters_of(key);
        out.extend(changes.into_iter().map(|c| format!("{key}{c} ({filters})")));
    }
    out
}

/// The policy without what `limits` and `audit` describe in words: the
/// `ratelimit` and `audit` sections and the routes' (and defaults')
/// `limits` and `audit`.
fn without_worded(policy: &mut Value) {
    let Some(map) = policy.as_object_mut() else { return };
    map.remove("ratelimit");
    map.remove("audit");
    let strip = |route: &mut Map<String, Value>| {
        route.remove("limits");
        route.remove("audit");
    };
    if let Some(defaults) = map.get_mut("defaults").and_then(Value::as_object_mut) {
        strip(defaults);
    }
    let routes = map.get_mut("routes").and_then(Value::as_array_mut);
    routes
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
        .for_each(strip);
}

/// The filters a top-level section drives (the registry's `sections`;
/// `defaults` and `routes` hold every stage's route settings).
fn filters_of(key: &str) -> String {
    let all = || STAGES.iter().map(|s| s.key).collect::<Vec<_>>().join(", ");
    if key == "defaults" || key == "routes" {
        return all();
    }
    let driven: Vec<&str> = STAGES
        .iter()
        .filter(|s| s.sections.contains(&key))
        .map(|s| s.key)
        .collect();
    if driven.is_empty() {
        "every filter".to_string()
    } else {
        driven.join(", ")
    }
}

/// Items matched by `key`: added, removed, or each changed field.
fn keyed(old: &Value, new: &Value, key: &str, what: &str, filters: &str) -> Vec<String> {
    let items = |v: &Value| -> Vec<(String, Value)> {
        let list = v.as_array().cloned().unwrap_or_default();
        list.into_iter()
            .map(|item| (item[key].as_str().unwrap_or("?").to_string(), item))
            .collect()
    };
    let (old, new) = (items(old), items(new));
    let find = |all: &[(String, Value)], name: &str| all.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let mut out = Vec::new();
    for (name, _) in old.iter().filter(|(n, _)| find(&new, n).is_none()) {
        out.push(format!("{what} {name}: removed ({filters})"));
    }
    for (name, item) in &new {
        match find(&old, name) {
            None => out.push(format!("{what} {name}: added ({filters})")),
            Some(before) => {
                let mut changes = Vec::new();
                leaves(&before, item, "", &mut changes);
                out.extend(
                    changes
                        .into_iter()
                        .map(|c| format!("{what} {name}: {}", c.trim_start_matches('.'))),
                );
            }
        }
    }
    out
}

/// Each changed leaf as `.path: old -> new`; lists of one length compare
/// item by item, others whole.
fn leaves(old: &Value, new: &Value, path: &str, out: &mut Vec<String>) {
    if old == new {
        return;
    }
    if let (Some(a), Some(b)) = (old.as_array(), new.as_array()) {
        if a.len() == b.len() {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                leaves(x, y, &format!("{path}[{i}]"), out);
            }
            return;
        }
    }
    if let (Some(a), Some(b)) = (old.as_object(), new.as_object()) {
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for key in keys {
            let missing = Value::Null;
            let (x, y) = (a.get(key).unwrap_or(&missing), b.get(key).unwrap_or(&missing));
            leaves(x, y, &format!("{path}.{key}"), out);
        }
        return;
    }
    out.push(format!("{path}: {} -> {}", quote(old), quote(new)));
}

fn quote(value: &Value) -> String {
    if value.is_null() {
        return "(unset)".to_string();
    }
    let text = value.to_string();
    match text.char_indices().nth(QUOTE_MAX) {
        Some((cut, _)) => format!("{}...", text.get(..cut).unwrap_or_default()),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn policy(path: &str) -> Value {
        crate::policy_file::load_policy(&Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
    }

    #[test]
    fn two_example_policies_give_the_expected_change_list() {
        let lines = diff(&policy("tests/diff/before.yaml"), &policy("tests/diff/after.yaml")).unwrap();
        let expected = include_str!("../tests/diff/expected.txt");
        assert_eq!(lines.join("\n") + "\n", expected);
    }

    #[test]
    fn a_policy_against_itself_has_no_changes() {
        let same = policy("tests/diff/before.yaml");
        assert_eq!(diff(&same, &same).unwrap(), Vec::<String>::new());
    }

    /// Defaults written out are no change; scope, slots and the service are.
    #[test]
    fn limit_scopes_slots_and_the_service_in_words() {
        let limit = |scope: &str| serde_json::json!({"name": "l", "key": ["tenant"], "requests": 5, "period": "second", "scope": scope});
        let old = serde_json::json!({"version": 1, "defaults": {"limits": [limit("local")]},
            "ratelimit": {"slots_per_limit": 10000}});
        let new = serde_json::json!({"version": 1, "defaults": {"limits": [limit("global")]},
            "ratelimit": {"slots_per_limit": 500, "service": {"cluster": "rls"}}});
        assert_eq!(
            content(&old, &new),
            [
                "limit l (defaults): scope local -> global",
                "ratelimit: slots per limit 10000 -> 500 (ratelimit)",
                "ratelimit: service added, cluster rls, domain tollgate, timeout (ms) 20, failure mode allow (ratelimit)",
            ]
        );
    }

    #[test]
    fn long_values_are_cut() {
        let long = Value::String("x".repeat(200));
        assert_eq!(quote(&long).chars().count(), QUOTE_MAX + 3);
    }
}
