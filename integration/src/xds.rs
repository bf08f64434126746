//! File-based dynamic configuration: a file Envoy reads by xDS
//! (`path_config_source`) in a directory it watches. Envoy picks a new
//! version up when a file is moved into that directory, so `replace` writes
//! a staging file and renames it over the watched one: Envoy never reads a
//! half-written file.

use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A watched directory of its own holding one file; removed when dropped.
pub struct WatchedFile {
    dir: PathBuf,
    staging: PathBuf,
    path: PathBuf,
}

impl WatchedFile {
    /// `name` (e.g. `lds.json`) in a new temp directory, written with `first`.
    pub fn create(name: &str, first: &Value) -> Result<WatchedFile, String> {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let root = std::env::temp_dir().join(format!("tollgate-xds-{}-{n}", std::process::id()));
        let dir = root.join("watched");
        let staging = root.join("staging");
        for d in [&dir, &staging] {
            fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let file = WatchedFile {
            path: dir.join(name),
            dir,
            staging,
        };
        file.replace(first)?;
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `value` to a staging file beside the watched directory, then
    /// renames it into place (atomic on one filesystem).
    pub fn replace(&self, value: &Value) -> Result<(), String> {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let staged = self
            .staging
            .join(format!("{name}.{}", NEXT.fetch_add(1, Ordering::SeqCst)));
        fs::write(&staged, value.to_string()).map_err(|e| format!("{}: {e}", staged.display()))?;
        fs::rename(&staged, &self.path).map_err(|e| format!("rename to {}: {e}", self.path.display()))
    }
}

impl Drop for WatchedFile {
    fn drop(&mut self) {
        if let Some(root) = self.dir.parent() {
            let _ = fs::remove_dir_all(root);
        }
    }
}

/// An ECDS file's content: one filter configuration named `name`.
pub fn ecds_resources(version: &str, name: &str, typed_config: Value) -> Value {
    serde_json::json!({
        "version_info": version,
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": name,
            "typed_config": typed_config,
        }],
    })
}

/// The HTTP filter `name` of a bootstrap's first listener.
pub fn http_filter<'a>(bootstrap: &'a mut Value, name: &str) -> Option<&'a mut Value> {
    bootstrap
        .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters")
        .and_then(Value::as_array_mut)?
        .iter_mut()
        .find(|f| f["name"] == name)
}

/// Makes the wasm filter `name` of `bootstrap` come by ECDS from `file`
/// (which must name the resource `name`); returns the `typed_config` it had.
pub fn deliver_by_ecds(bootstrap: &mut Value, name: &str, file: &WatchedFile) -> Option<Value> {
    let slot = http_filter(bootstrap, name)?;
    let typed = slot["typed_config"].take();
    *slot = serde_json::json!({
        "name": name,
        "config_discovery": {
            "config_source": {
                "path_config_source": {
                    "path": file.path().display().to_string(),
                    "watched_directory": {"path": file.dir().display().to_string()},
                },
                "resource_api_version": "V3",
            },
            "type_urls": ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"],
        },
    });
    bootstrap["node"] = serde_json::json!({"id": "tollgate-test", "cluster": "tollgate-test"});
    Some(typed)
}
