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
