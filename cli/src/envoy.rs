//! `tollgate envoy`: an Envoy bootstrap with the filters, their
//! configuration and the clusters they call, for local testing.

use crate::render::{header, root_ids, to_yaml};
use serde_json::Value;
use std::path::PathBuf;
use tollgate_bootstrap::{Bootstrap, Delivery, Filter};

pub struct Options {
    /// tollgate.wasm as Envoy will find it (relative to Envoy's directory).
    pub wasm: PathBuf,
    pub listen_port: u16,
    pub admin_port: u16,
    pub upstream_port: u16,
    /// One filter per stage instead of the fused `tollgate` one.
    pub split: bool,
    /// Clusters the filters call (JWKS, ...): name and loopback port.
    pub clusters: Vec<(String, u16)>,
}

/// Envoy's own path normalization is on, as it should be in production.
/// Escaped slashes are refused (no component can then read `%2F` as a
/// separator, and no redirect a non-GET client would not follow), and so
/// are header names with `_`, which some servers read as `-`
/// (`x_tenant_id`).
pub fn bootstrap(policy: &Value, options: &Options, source: &str) -> Result<String, String> {
    // One Envoy is one workload: the policy as written, without the mesh layout.
    let config = crate::mesh::filter_config(policy);
    let mut bootstrap = Bootstrap::new(options.upstream_port);
    bootstrap.listen_port = options.listen_port;
    bootstrap.admin_port = options.admin_port;
    bootstrap.envoy_normalizes = true;
    bootstrap.escaped_slashes_action = Some("REJECT_REQUEST".into());
    bootstrap.underscores_action = Some("REJECT_REQUEST".into());
    bootstrap.delivery = Delivery::Split;
    for root_id in root_ids(options.split) {
        bootstrap = bootstrap.filter(Filter::tollgate(root_id, &options.wasm, &config));
    }
    for (name, port) in &options.clusters {
        bootstrap = bootstrap.cluster(name, *port);
    }
    let mut out = header("Envoy bootstrap for local testing.", source);
    out.push_str(&to_yaml(&bootstrap.to_json())?);
    Ok(out)
}

/// Writes the bootstrap to standard output.
pub fn run(policy: &std::path::Path, options: &Options) -> Result<(), String> {
    let value = crate::policy_file::load_policy(policy)?;
    print!("{}", bootstrap(&value, options, &policy.display().to_string())?);
    Ok(())
}
