//! `cargo xtask package`: the OCI image of the tollgate.wasm that
//! `cargo xtask build` made, through the same code as `tollgate package`.

use crate::util::root;
use tollgate_integration::paths;

/// Where the OCI image layout goes, beside the module it packages.
pub fn layout_dir() -> std::path::PathBuf {
    root().join("target/oci/tollgate")
}

pub fn run(push: Option<&str>, insecure: bool) -> Result<(), String> {
    let module = paths::module_wasm();
    paths::require(&module, "cargo xtask build")?;
    tollgate_cli::package::run(&module, &layout_dir(), push, insecure)
}
