//! `cargo xtask render`: the checked-in manifests and the demo bootstrap,
//! rendered by the `tollgate` tool's own code from the example policy.

use crate::util::root;
use std::path::Path;
use tollgate_cli::{envoy, policy_file, render};

pub const POLICY: &str = "wasmplugins/policy.yaml";
pub const PLUGINS: &str = "wasmplugins/tollgate.yaml";
pub const DEMO_BOOTSTRAP: &str = "envoy-config/envoy-demo.yaml";
/// The demo's fixed local ports.
pub const DEMO_PORT: u16 = 10000;
pub const DEMO_ADMIN_PORT: u16 = 9901;
pub const DEMO_UPSTREAM_PORT: u16 = 18080;
pub use render::{DEFAULT_IMAGE, DEFAULT_NAMESPACE};

pub fn validate(path: &str) -> Result<(), String> {
    policy_file::validate(Path::new(path), false)
}

/// `split`: the separate filters; `check` compares with what is checked
/// in, which is the default (fused) rendering.
pub fn run(check: bool, namespace: &str, image: &str, split: bool) -> Result<(), String> {
    let policy = policy_file::load_policy(&root().join(POLICY))?;
    let plugins = render::Options {
        namespace: namespace.to_string(),
        url: image.to_string(),
        split,
    };
    let demo = envoy::Options {
        wasm: "target/wasm32-wasip1/release/tollgate.wasm".into(),
        listen_port: DEMO_PORT,
        admin_port: DEMO_ADMIN_PORT,
        upstream_port: DEMO_UPSTREAM_PORT,
        split,
        clusters: Vec::new(),
    };
    let outputs = [
        (PLUGINS, render::wasm_plugins(&policy, &plugins, POLICY)?),
        (DEMO_BOOTSTRAP, envoy::bootstrap(&policy, &demo, POLICY)?),
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
