//! `cargo xtask capacity`: docs/capacity.md from a bench run's JSON, so that
//! its figures follow each run and none is typed by hand. What it read is
//! kept beside the page (docs/capacity.json), from which `--check`
//! regenerates the page and fails if it differs.

mod input;
mod markdown;
mod model;
mod rows;

#[cfg(test)]
mod tests;

use crate::util::root;
use serde_json::Value;
use std::path::{Path, PathBuf};

pub const BENCH: &str = "target/bench/bench.json";
pub const OUT: &str = "docs/capacity.md";
/// The request rate per pod the page states unless told otherwise.
pub const RPS_PER_POD: f64 = 50.0;

/// The extract kept beside a page: `docs/capacity.md` → `docs/capacity.json`.
fn extract_path(out: &Path) -> PathBuf {
    out.with_extension("json")
}

fn resolve(path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        root().join(path)
    }
}

fn read_json(path: &Path, hint: &str) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}; {hint}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A path as the page shows it: relative to the repository when inside it.
fn shown(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).display().to_string()
}

/// The page and the extract, from a bench JSON (or an earlier extract).
pub fn generate(json: &Value, rps_per_pod: f64, source: &str, extract_name: &str) -> Result<(String, Value), String> {
    if !(rps_per_pod.is_finite() && rps_per_pod > 0.0) {
        return Err(format!("--rps-per-pod {rps_per_pod}: must be a positive number"));
    }
    let bench = input::parse(json)?;
    let page = markdown::page(&bench, rps_per_pod, source, extract_name)?;
    Ok((page, input::extract(json, rps_per_pod, source)))
}

pub fn run(bench: &str, out: &str, rps_per_pod: Option<f64>, check: bool) -> Result<(), String> {
    let out = resolve(out);
    let extract = extract_path(&out);
    if check {
        return check_page(&out, &extract);
    }
    let path = resolve(bench);
    let json = read_json(&path, "run `cargo xtask bench` first, or pass --bench PATH")?;
    // Regenerating from an extract keeps its rate and source unless told.
    let (rate, source) = input::generated_with(&json).unwrap_or((RPS_PER_POD, shown(&path)));
    let (page, kept) = generate(&json, rps_per_pod.unwrap_or(rate), &source, &shown(&extract))?;
    write(&out, &page)?;
    let kept = serde_json::to_string_pretty(&kept).map_err(|e| e.to_string())? + "\n";
    write(&extract, &kept)?;
    println!("wrote {} and {} from {source}", shown(&out), shown(&extract));
    Ok(())
}

/// The page is what the code makes of the extract beside it.
fn check_page(out: &Path, extract: &Path) -> Result<(), String> {
    let json = read_json(extract, "generate it with `cargo xtask capacity`")?;
    let (rate, source) = input::generated_with(&json).ok_or_else(|| {
        format!(
            "{}: no `capacity` section: not written by `cargo xtask capacity`",
            shown(extract)
        )
    })?;
    let (page, _) = generate(&json, rate, &source, &shown(extract))?;
    let current = std::fs::read_to_string(out).map_err(|e| format!("{}: {e}", out.display()))?;
    if current != page {
        return Err(format!(
            "{} is not what `cargo xtask capacity` makes of {}: regenerate it (`cargo xtask capacity --bench {}`)",
            shown(out),
            shown(extract),
            shown(extract),
        ));
    }
    println!("{}: generated from {}", shown(out), shown(extract));
    Ok(())
}
