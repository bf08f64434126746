//! Renders the Istio WasmPlugins and the demo Envoy bootstrap from the one
//! policy file, after checking it with the same code the filters run.

use crate::crd;
use crate::util::root;
use serde_json::{json, Value};
use std::path::Path;
use tollgate_core::policy::{strict, Policy, MAX_POLICY_BYTES};
use tollgate_integration::{Bootstrap, Delivery, Filter};

pub const POLICY: &str = "wasmplugins/policy.yaml";
pub const PLUGINS: &str = "wasmplugins/tollgate.yaml";
pub const DEMO_BOOTSTRAP: &str = "envoy-config/envoy-demo.yaml";
/// The demo's fixed local ports.
pub const DEMO_PORT: u16 = 10000;
pub const DEMO_ADMIN_PORT: u16 = 9901;
pub const DEMO_UPSTREAM_PORT: u16 = 18080;
/// Where the rendered WasmPlugins are applied: the mesh-wide root namespace.
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

fn filters(split: bool) -> &'static [(&'static str, &'static str, i64, &'static str)] {
    if split {
        FILTERS
    } else {
        FUSED
    }
}

/// Reads a YAML or JSON policy and checks it; the error lists every problem.
pub fn load_policy(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    check_policy(&text).map_err(|e| format!("{} {e}", path.display()))
}

/// Checks a YAML (or JSON, which is YAML) policy as the filters would:
/// duplicate keys and nulls are read strictly, then `Policy` checks the rest.
pub fn check_policy(text: &str) -> Result<Value, String> {
    check_depth(text)?;
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

/// Deepest nesting read, as serde_json's and serde_yaml_ng's recursion limit.
const MAX_DEPTH: usize = 128;

/// serde_yaml_ng reads every event of a document before deserializing it,
/// in time quadratic in the depth of flow collections (`[[[[...`: 19 s for
/// 60 KB; yaml/yaml-serde#1). saphyr-parser yields events one at a time, so
/// too deep a document is refused after reading no more than its first
/// MAX_DEPTH levels; under that bound serde_yaml_ng's work is linear.
fn check_depth(text: &str) -> Result<(), String> {
    let mut depth = 0usize;
    for next in saphyr_parser::Parser::new_from_str(text) {
        let (event, span) = next.map_err(|e| format!("is not YAML: {e}"))?;
        match event {
            saphyr_parser::Event::SequenceStart(..) | saphyr_parser::Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    let line = span.start.line();
                    return Err(format!("is nested deeper than {MAX_DEPTH} levels (line {line})"));
                }
            }
            saphyr_parser::Event::SequenceEnd | saphyr_parser::Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

pub fn validate(path: &str) -> Result<(), String> {
    let policy = load_policy(Path::new(path))?;
    let count = |k: &str| policy[k].as_array().map_or(0, Vec::len);
    println!("{path}: ok ({} routes, {} tenants)", count("routes"), count("tenants"));
    Ok(())
}

/// `split`: the separate filters; `check` compares with what is checked
/// in, which is the default (fused) rendering.
pub fn run(check: bool, namespace: &str, image: &str, split: bool) -> Result<(), String> {
    let policy = load_policy(&root().join(POLICY))?;
    let outputs = [
        (PLUGINS, wasm_plugins(&policy, namespace, image, split)?),
        (DEMO_BOOTSTRAP, demo_bootstrap(&policy, split)?),
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

/// The fused `tollgate` WasmPlugin, or one per filter (`split`), all
/// pointing at the one image: Istio then runs them in one VM per worker. In
/// the root namespace (`istio-system`) they apply mesh-wide; in another
/// namespace, to its workloads.
fn wasm_plugins(policy: &Value, namespace: &str, image: &str, split: bool) -> Result<String, String> {
    let schema = crd::load(&root().join(crd::CRD))?;
    let mut out = header("Istio WasmPlugins for Tollgate (extensions.istio.io/v1alpha1).");
    for (root_id, phase, priority, fail) in filters(split) {
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
/// normalization on, as it should be in production. Escaped slashes are
/// refused (no component can then read `%2F` as a separator, and no
/// redirect a non-GET client would not follow), and so are header names
/// with `_`, which some servers read as `-` (`x_tenant_id`).
fn demo_bootstrap(policy: &Value, split: bool) -> Result<String, String> {
    let wasm = Path::new("target/wasm32-wasip1/release/tollgate.wasm");
    let mut bootstrap = Bootstrap::new(DEMO_UPSTREAM_PORT);
    bootstrap.listen_port = DEMO_PORT;
    bootstrap.admin_port = DEMO_ADMIN_PORT;
    bootstrap.envoy_normalizes = true;
    bootstrap.escaped_slashes_action = Some("REJECT_REQUEST".into());
    bootstrap.underscores_action = Some("REJECT_REQUEST".into());
    bootstrap.delivery = Delivery::Split;
    for (root_id, ..) in filters(split) {
        bootstrap = bootstrap.filter(Filter::tollgate(root_id, wasm, policy));
    }
    let mut out = header("Envoy bootstrap for `cargo xtask demo` (run from the repo root).");
    out.push_str(&to_yaml(&bootstrap.to_json())?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::check_policy;

    fn refused(yaml: &str) -> String {
        check_policy(yaml).unwrap_err()
    }

    #[test]
    fn yaml_duplicates_and_nulls_are_refused_with_their_path() {
        let null = "null is not allowed: leave the field out or give a value";
        let rows: &[(&str, &[&str])] = &[
            ("version: 1\nversion: 1\n", &["version: duplicate key"]),
            (
                "version: 1\ntenants:\n  - {id: a}\n  - {id: b}\n  - id: c\n    status: active\n    status: suspended\n",
                &["tenants[2].status: duplicate key"],
            ),
            ("version: 1\nroutes:\n", &[&format!("routes: {null}")]),
            // A tenant whose `routes:` is left empty may not use every route.
            (
                "version: 1\ntenants:\n  - id: a\n    routes:\n",
                &[&format!("tenants[0].routes: {null}")],
            ),
            ("version: 1\nrealm: ~\n", &[&format!("realm: {null}")]),
        ];
        for (yaml, want) in rows {
            let lines: Vec<String> = want.iter().map(|w| format!("  {w}")).collect();
            let expected = format!("has {} error(s):\n{}", want.len(), lines.join("\n"));
            assert_eq!(refused(yaml), expected, "for {yaml}");
        }
    }

    #[test]
    fn odd_yaml_is_refused_not_guessed() {
        assert!(refused("version: 1\nrealm: .nan\n").contains("NaN is not a finite number"));
        assert!(refused("version: 1\nrealm: !tag x\n").contains("tagged values are not allowed"));
        assert!(refused("version: 1\n---\nversion: 1\n").contains("is not YAML"));
    }

    #[test]
    fn deep_or_wide_yaml_is_checked_quickly() {
        let started = std::time::Instant::now();
        let deep = format!("version: 1\nrealm: {}1{}\n", "[".repeat(30_000), "]".repeat(30_000));
        assert!(
            refused(&deep).starts_with("is not YAML: recursion limit exceeded"),
            "{}",
            refused(&deep)
        );
        let deep_map = format!("version: 1\nrealm: {}1{}\n", "{a: ".repeat(20_000), "}".repeat(20_000));
        assert_eq!(refused(&deep_map), "is nested deeper than 128 levels (line 2)");
        let deeper_than_policies = format!("version: 1\nrealm: {}1{}\n", "[".repeat(129), "]".repeat(129));
        assert_eq!(
            refused(&deeper_than_policies),
            "is nested deeper than 128 levels (line 2)"
        );
        let tenants: String = (0..4000).map(|i| format!("  - {{id: t{i}}}\n")).collect();
        let wide = format!("version: 1\ntenants:\n{tenants}");
        assert!(wide.len() > 60_000);
        assert!(check_policy(&wide).is_ok());
        let flow: Vec<String> = (0..5000).map(|i| format!("{{id: tenant-{i}}}")).collect();
        let one_line = format!("version: 1\ntenants: [{}]\n", flow.join(", "));
        assert!(one_line.len() > 60_000);
        assert!(check_policy(&one_line).is_ok());
        assert!(started.elapsed().as_secs_f64() < 2.0, "{:?}", started.elapsed());
    }
}
