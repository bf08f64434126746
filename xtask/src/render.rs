//! `cargo xtask render`: the checked-in manifests and the demo bootstrap,
//! rendered by the `tollgate` tool's own code from the example policy.

use crate::util::root;
use std::path::Path;
use tollgate_cli::{envoy, policy_file, render};

pub const POLICY: &str = "wasmplugins/policy.yaml";
/// Rendered manifests: `wasmplugins/NAMESPACE/tollgate.yaml`.
pub const PLUGINS: &str = "wasmplugins";
pub const DEMO_BOOTSTRAP: &str = "envoy-config/envoy-demo.yaml";
/// The demo's fixed local ports.
pub const DEMO_PORT: u16 = 10000;
pub const DEMO_ADMIN_PORT: u16 = 9901;
pub const DEMO_UPSTREAM_PORT: u16 = 18080;
/// Where the demo's audit sink (the Kafka REST front) listens: the
/// bootstrap gives the policy's sink cluster this port (`cargo xtask demo`
/// starts the front there).
pub const DEMO_SINK_PORT: u16 = 18082;
pub use render::DEFAULT_IMAGE;

pub fn validate(path: &str) -> Result<(), String> {
    policy_file::validate(Path::new(path), false)
}

/// The policy's audit sink cluster (none for `format: log`).
pub fn sink_cluster(policy: &serde_json::Value) -> Option<String> {
    policy["audit"]["sink"]["cluster"].as_str().map(str::to_string)
}

/// `split`: the separate filters; `check` compares with what is checked
/// in, which is the default (fused) rendering with no pinned digest (a
/// digest changes with every build; `tollgate render --oci-layout` pins it).
pub fn run(check: bool, image: &str, split: bool) -> Result<(), String> {
    let policy = policy_file::load_policy(&root().join(POLICY))?;
    let plugins = render::Options {
        url: image.to_string(),
        split,
        ..render::Options::default()
    };
    let demo = envoy::Options {
        wasm: "target/wasm32-wasip1/release/tollgate.wasm".into(),
        listen_port: DEMO_PORT,
        admin_port: DEMO_ADMIN_PORT,
        upstream_port: DEMO_UPSTREAM_PORT,
        split,
        clusters: sink_cluster(&policy).map(|c| (c, DEMO_SINK_PORT)).into_iter().collect(),
    };
    let mut outputs: Vec<(String, String)> = render::render(&policy, &plugins, POLICY)?
        .into_iter()
        .map(|r| (format!("{PLUGINS}/{}", r.file()), r.text))
        .collect();
    for (name, text) in render::stats::render(&policy, POLICY)? {
        outputs.push((format!("{PLUGINS}/{name}"), text));
    }
    outputs.push((DEMO_BOOTSTRAP.to_string(), envoy::bootstrap(&policy, &demo, POLICY)?));
    for (file, text) in outputs {
        let path = root().join(&file);
        if check {
            let current = std::fs::read_to_string(&path).unwrap_or_default();
            if current != text {
                return Err(format!("{file} is out of date with {POLICY}; run `cargo xtask render`"));
            }
            println!("{file}: up to date");
        } else {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            std::fs::write(&path, text).map_err(|e| format!("{file}: {e}"))?;
            println!("wrote {file}");
        }
    }
    Ok(())
}
