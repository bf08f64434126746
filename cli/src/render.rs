//! `tollgate render`: Istio WasmPlugins from the one policy file, after
//! checking it with the same code the filters run.

use crate::manifests;
use serde_json::{json, Value};

/// Where mesh-wide plugins are applied: Istio's root namespace.
pub const DEFAULT_NAMESPACE: &str = "istio-system";
pub const DEFAULT_IMAGE: &str = "oci://ghcr.io/tollgate/tollgate:0.1.0";

/// Filters in chain order with their Istio phase, priority and fail strategy.
/// FAIL_RELOAD (Istio 1.27+): a crashed VM is replaced and the failing
/// request is refused, never let through.
const FILTERS: &[(&str, &str, i64, &str)] = &[
    ("tollgate.jwt", "AUTHN", 100, "FAIL_RELOAD"),
    ("tollgate.tenant", "AUTHZ", 1000, "FAIL_RELOAD"),
];
/// The default delivery: one plugin running the policy's stages, in the
/// phase of its first (authentication).
const FUSED: &[(&str, &str, i64, &str)] = &[("tollgate", "AUTHN", 100, "FAIL_RELOAD")];

/// The plugins' root ids in chain order.
pub fn root_ids(split: bool) -> impl Iterator<Item = &'static str> {
    filters(split).iter().map(|f| f.0)
}

fn filters(split: bool) -> &'static [(&'static str, &'static str, i64, &'static str)] {
    if split {
        FILTERS
    } else {
        FUSED
    }
}

pub struct Options {
    pub namespace: String,
    pub url: String,
    pub split: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            namespace: DEFAULT_NAMESPACE.to_string(),
            url: DEFAULT_IMAGE.to_string(),
            split: false,
        }
    }
}

pub fn header(what: &str, source: &str) -> String {
    format!("# {what}\n# Rendered by `tollgate render` from {source}; edit that file, not this one.\n")
}

pub fn to_yaml(value: &Value) -> Result<String, String> {
    serde_yaml_ng::to_string(value).map_err(|e| e.to_string())
}

/// The fused `tollgate` WasmPlugin, or one per filter (`split`), all
/// pointing at the one image: Istio then runs them in one VM per worker. In
/// the root namespace (`istio-system`) they apply mesh-wide; in another
/// namespace, to its workloads.
pub fn wasm_plugins(policy: &Value, options: &Options, source: &str) -> Result<String, String> {
    let mut out = header("Istio WasmPlugins for Tollgate (extensions.istio.io/v1alpha1).", source);
    for (root_id, phase, priority, fail) in filters(options.split) {
        let name = root_id.replace('.', "-");
        let plugin = json!({
            "apiVersion": "extensions.istio.io/v1alpha1",
            "kind": "WasmPlugin",
            "metadata": {"name": name, "namespace": options.namespace},
            "spec": {
                "url": options.url,
                "imagePullPolicy": "IfNotPresent",
                "pluginName": root_id,
                "phase": phase,
                "priority": priority,
                "failStrategy": fail,
                "type": "HTTP",
                "pluginConfig": policy,
            },
        });
        let problems = manifests::check_plugin(&plugin)?;
        if !problems.is_empty() {
            return Err(format!(
                "{name} does not fit Istio's WasmPlugin CRD:\n  {}",
                problems.join("\n  ")
            ));
        }
        out.push_str("---\n");
        out.push_str(&to_yaml(&plugin)?);
    }
    Ok(out)
}

/// Writes the manifests into `out`.
pub fn run(policy: &std::path::Path, out: &std::path::Path, options: &Options) -> Result<(), String> {
    let value = crate::policy_file::load_policy(policy)?;
    let text = wasm_plugins(&value, options, &policy.display().to_string())?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let file = out.join("tollgate.yaml");
    std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
    println!("wrote {}", file.display());
    Ok(())
}
