//! Renders the Istio WasmPlugins and the demo Envoy bootstrap from the one
//! policy file, after checking it with the same code the filters run.

use crate::crd;
use crate::util::root;
use serde_json::{json, Value};
use std::path::Path;
use tollgate_core::policy::{strict, Policy, MAX_POLICY_BYTES};
use tollgate_integration::{Bootstrap, Filter};

pub const POLICY: &str = "wasmplugins/policy.yaml";
pub const PLUGINS: &str = "wasmplugins/tollgate.yaml";
pub const DEMO_BOOTSTRAP: &str = "envoy-config/envoy-demo.yaml";
/// The demo's fixed local ports.
pub const DEMO_PORT: u16 = 10000;
pub const DEMO_ADMIN_PORT: u16 = 9901;
pub const DEMO_UPSTREAM_PORT: u16 = 18080;
const DEFAULT_IMAGE: &str = "oci://ghcr.io/tollgate/tollgate:0.1.0";

/// Filters in chain order with their Istio phase, priority and fail strategy.
/// FAIL_RELOAD (Istio 1.27+): a crashed VM is replaced and the failing
/// request is refused, never let through.
const FILTERS: &[(&str, &str, i64, &str)] = &[
    ("tollgate.jwt", "AUTHN", 100, "FAIL_RELOAD"),
    ("tollgate.tenant", "AUTHZ", 1000, "FAIL_RELOAD"),
];

/// Reads a YAML or JSON policy and checks it; the error lists every problem.
pub fn load_policy(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    check_policy(&text).map_err(|e| format!("{} {e}", path.display()))
}

/// Checks a YAML (or JSON, which is YAML) policy as the filters would:
/// duplicate keys and nulls are read strictly, then `Policy` checks the rest.
pub fn check_policy(text: &str) -> Result<Value, String> {
    let read = strict::read(serde_yaml_ng::Deserializer::from_str(text)).map_err(|e| format!("is not YAML: {e}"))?;
    let value = read.value.clone();
    let size = value.to_string().len();
    let errors = match Policy::from_read(read) {
        Ok(_) if size <= MAX_POLICY_BYTES => return Ok(value),
        Ok(_) => vec![format!(
            "  policy is {size} bytes as JSON; the limit is {MAX_POLICY_BYTES}"
        )],
        Err(errors) => errors.iter().map(|e| format!("  {e}")).collect(),
    };
    Err(format!("has {} error(s):\n{}", errors.len(), errors.join("\n")))
}

pub fn validate(path: &str) -> Result<(), String> {
    let policy = load_policy(Path::new(path))?;
    let count = |k: &str| policy[k].as_array().map_or(0, Vec::len);
    println!("{path}: ok ({} routes, {} tenants)", count("routes"), count("tenants"));
    Ok(())
}

pub fn run(args: &[&str]) -> Result<(), String> {
    let check = args.contains(&"--check");
    let option = |name: &str| {
        args.iter()
            .position(|a| *a == name)
            .and_then(|i| args.get(i + 1))
            .copied()
    };
    let namespace = option("--namespace").unwrap_or("istio-system");
    let image = option("--image").unwrap_or(DEFAULT_IMAGE);
    let policy = load_policy(&root().join(POLICY))?;
    let outputs = [
        (PLUGINS, wasm_plugins(&policy, namespace, image)?),
        (DEMO_BOOTSTRAP, demo_bootstrap(&policy)?),
    ];
    for (file, text) in outputs {
        let path = root().join(file);
        if check {
            let current = std::fs::read_to_string(&path).unwrap_or_default();
            if current != text {
                return Err(format!("{file} is out of date with {POLICY}; run `cargo xtask render`"));
            }
            println!("{file}: up to date");
        } else {
            std::fs::write(&path, text).map_err(|e| format!("{file}: {e}"))?;
            println!("wrote {file}");
        }
    }
    Ok(())
}

fn header(what: &str) -> String {
    format!("# {what}\n# Rendered by `cargo xtask render` from {POLICY}; edit that file, not this one.\n")
}

fn to_yaml(value: &Value) -> Result<String, String> {
    serde_yaml_ng::to_string(value).map_err(|e| e.to_string())
}

/// One WasmPlugin per filter, all pointing at the one image: Istio then runs
/// them in one VM per worker. In the root namespace (`istio-system`) they
/// apply mesh-wide; in another namespace, to its workloads.
fn wasm_plugins(policy: &Value, namespace: &str, image: &str) -> Result<String, String> {
    let schema = crd::load(&root().join(crd::CRD))?;
    let mut out = header("Istio WasmPlugins for Tollgate (extensions.istio.io/v1alpha1).");
    for (root_id, phase, priority, fail) in FILTERS {
        let name = root_id.replace('.', "-");
        let plugin = json!({
            "apiVersion": "extensions.istio.io/v1alpha1",
            "kind": "WasmPlugin",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "url": image,
                "imagePullPolicy": "IfNotPresent",
                "pluginName": root_id,
                "phase": phase,
                "priority": priority,
                "failStrategy": fail,
                "type": "HTTP",
                "pluginConfig": policy,
            },
        });
        let problems = crd::check(&schema, &plugin);
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

/// The demo bootstrap: fixed local ports, the wasm path relative to the repo
/// root (where `cargo xtask demo` starts Envoy), and Envoy's own path
/// normalization on, as it should be in production.
fn demo_bootstrap(policy: &Value) -> Result<String, String> {
    let wasm = Path::new("target/wasm32-wasip1/release/tollgate.wasm");
    let mut bootstrap = Bootstrap::new(DEMO_UPSTREAM_PORT);
    bootstrap.listen_port = DEMO_PORT;
    bootstrap.admin_port = DEMO_ADMIN_PORT;
    bootstrap.envoy_normalizes = true;
    for (root_id, ..) in FILTERS {
        bootstrap = bootstrap.filter(Filter::tollgate(root_id, wasm, policy));
    }
    let mut out = header("Envoy bootstrap for `cargo xtask demo` (run from the repo root).");
    out.push_str(&to_yaml(&bootstrap.to_json())?);
    Ok(out)
}
