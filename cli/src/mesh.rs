//! How one policy is laid over an Istio mesh: a mesh-wide plugin in the
//! root namespace and, for each namespace the policy's `mesh` section
//! lists, a plugin of its own. Istio runs root and local plugins both, so
//! the mesh-wide one carries `skip_namespaces` and stands aside there: one
//! Tollgate per workload, never two.

use serde_json::Value;
use tollgate_core::policy::rollout::{Attach, MeshDoc, StageModes};
use tollgate_core::Mode;

/// One plugin's place: its namespace and the configuration it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub namespace: String,
    pub mesh_wide: bool,
    pub attach: Attach,
    pub modes: StageModes,
    pub config: Value,
}

/// The mesh section, or the default layout (one mesh-wide plugin).
pub fn mesh_of(policy: &Value) -> Result<MeshDoc, String> {
    match policy.get("mesh") {
        None => Ok(MeshDoc::default()),
        Some(mesh) => serde_json::from_value(mesh.clone()).map_err(|e| format!("mesh: {e}")),
    }
}

fn modes_of(policy: &Value) -> Result<StageModes, String> {
    match policy.get("modes") {
        None => Ok(StageModes::default()),
        Some(modes) => serde_json::from_value(modes.clone()).map_err(|e| format!("modes: {e}")),
    }
}

/// The policy as a filter runs it: without the tool's `mesh` section.
pub fn filter_config(policy: &Value) -> Value {
    let mut config = policy.clone();
    if let Some(map) = config.as_object_mut() {
        map.remove("mesh");
    }
    config
}

/// The mesh-wide plugin first, then one per listed namespace.
pub fn placements(policy: &Value) -> Result<Vec<Placement>, String> {
    let mesh = mesh_of(policy)?;
    let root_modes = mesh.modes.unwrap_or_default().over(modes_of(policy)?);
    let own: Vec<String> = mesh.namespaces.iter().map(|ns| ns.name.clone()).collect();
    let mut skip: Vec<String> = match policy.get("skip_namespaces") {
        Some(names) => serde_json::from_value(names.clone()).map_err(|e| format!("skip_namespaces: {e}"))?,
        None => Vec::new(),
    };
    skip.extend(own.iter().filter(|n| !skip.contains(n)).cloned().collect::<Vec<_>>());
    let mut out = vec![Placement {
        namespace: mesh.root_namespace().to_string(),
        mesh_wide: true,
        attach: mesh.attach(),
        modes: root_modes,
        config: configured(policy, root_modes, &skip)?,
    }];
    for ns in &mesh.namespaces {
        let modes = ns.modes.unwrap_or_default().over(root_modes);
        out.push(Placement {
            namespace: ns.name.clone(),
            mesh_wide: false,
            attach: mesh.attach_of(ns),
            modes,
            config: configured(policy, modes, &[])?,
        });
    }
    Ok(out)
}

fn configured(policy: &Value, modes: StageModes, skip: &[String]) -> Result<Value, String> {
    let mut config = filter_config(policy);
    let map = config.as_object_mut().ok_or("the policy is not a mapping")?;
    map.remove("modes");
    map.remove("skip_namespaces");
    if modes != StageModes::default() {
        map.insert("modes".into(), serde_json::to_value(modes).map_err(|e| e.to_string())?);
    }
    if !skip.is_empty() {
        map.insert("skip_namespaces".into(), skip.into());
    }
    Ok(config)
}

/// What a plugin attaches to, as a reviewer reads it.
pub fn attach_words(attach: &Attach) -> String {
    match attach {
        Attach::Everything => "every sidecar".into(),
        Attach::Selector(labels) => {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("sidecars labelled {}", labels.join(","))
        }
        Attach::Targets(refs) => {
            let refs: Vec<String> = refs.iter().map(|r| format!("{} {}", r.kind, r.name)).collect();
            refs.join(", ")
        }
    }
}

/// "jwt shadow, tenant enforce": the stages that have a mode (audit,
/// which decides nothing, has none).
pub fn describe_modes(modes: StageModes) -> String {
    let words: Vec<String> = moded_stages()
        .map(|s| format!("{} {}", s.key, mode_word(modes.get(s.name))))
        .collect();
    words.join(", ")
}

/// The registry's stages that have a mode, in run order.
pub fn moded_stages() -> impl Iterator<Item = &'static tollgate_core::stage::StageSpec> {
    tollgate_core::stage::STAGES.iter().filter(|s| s.route_mode.is_some())
}

/// `shadow` or `enforce`, as a reviewer reads a stage's mode.
pub fn mode_word(mode: Option<Mode>) -> &'static str {
    match mode {
        Some(Mode::Shadow) => "shadow",
        _ => "enforce",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn policy() -> Value {
        json!({
            "version": 1,
            "modes": {"tenant": "shadow"},
            "mesh": {
                "modes": {"jwt": "shadow"},
                "namespaces": [
                    {"name": "datahub", "modes": {"jwt": "enforce", "tenant": "enforce"}},
                    {"name": "trino"}
                ]
            }
        })
    }

    #[test]
    fn the_mesh_wide_plugin_stands_aside_where_a_namespace_has_its_own() {
        let all = placements(&policy()).unwrap();
        let names: Vec<_> = all.iter().map(|p| p.namespace.as_str()).collect();
        assert_eq!(names, ["istio-system", "datahub", "trino"]);
        assert_eq!(all[0].config["skip_namespaces"], json!(["datahub", "trino"]));
        assert!(all[1].config.get("skip_namespaces").is_none());
        assert!(all.iter().all(|p| p.config.get("mesh").is_none()));
    }

    #[test]
    fn namespace_modes_override_the_mesh_which_overrides_the_policy() {
        let all = placements(&policy()).unwrap();
        assert_eq!(all[0].config["modes"], json!({"jwt": "shadow", "tenant": "shadow"}));
        assert_eq!(all[1].config["modes"], json!({"jwt": "enforce", "tenant": "enforce"}));
        assert_eq!(all[2].config["modes"], json!({"jwt": "shadow", "tenant": "shadow"}));
    }

    #[test]
    fn modes_are_described_for_the_stages_that_have_one() {
        let all = placements(&policy()).unwrap();
        assert_eq!(
            describe_modes(all[0].modes),
            "jwt shadow, tenant shadow, ratelimit enforce"
        );
    }

    #[test]
    fn no_mesh_section_is_one_mesh_wide_plugin_running_the_policy_as_written() {
        let policy = json!({"version": 1, "routes": []});
        let all = placements(&policy).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].namespace, "istio-system");
        assert_eq!(all[0].config, policy);
    }
}
