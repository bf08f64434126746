//! `cargo xtask ci`: everything `.ci/run` runs, in order, stopping at the
//! first failure.

use crate::util::{cargo, run, step};
use crate::{bench, demo, render, setup};
use std::process::Command;
use std::time::Instant;
use tollgate_integration::paths;

pub fn run_all() -> Result<(), String> {
    step("setup", setup::all)?;
    step("fmt", || run(cargo().args(["fmt", "--all", "--", "--check"])))?;
    step("clippy", || {
        run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))
    })?;
    step("clippy (wasm32-wasip1)", || {
        run(cargo()
            .args(["clippy", "--target", "wasm32-wasip1"])
            .args(setup::WASM_CRATES)
            .args(["--", "-D", "warnings"]))
    })?;
    step("unit tests (native)", || {
        run(cargo().args(["test", "--workspace", "--exclude", "tollgate-integration"]))
    })?;
    step("core tests in wasm32 (wasm-bindgen-test, Node)", || {
        run(cargo().args(["test", "-p", "tollgate-core", "--target", "wasm32-unknown-unknown"]))
    })?;
    step("build tollgate.wasm", setup::build_wasm)?;
    step("rendered files up to date", || {
        render::run(true, render::DEFAULT_NAMESPACE, render::DEFAULT_IMAGE, false)
    })?;
    step("envoy --mode validate", validate_bootstraps)?;
    step("integration tests (real Envoy, separate filters)", || {
        run(cargo()
            .args(["test", "-p", "tollgate-integration"])
            .env("TOLLGATE_DELIVERY", "split"))
    })?;
    step("integration tests (real Envoy, fused tollgate filter)", || {
        run(cargo()
            .args(["test", "-p", "tollgate-integration"])
            .env("TOLLGATE_DELIVERY", "fused"))
    })?;
    step("demo answers as printed", || demo::run(true))?;
    // A smoke run, so the bench cannot rot: every configuration starts,
    // refuses its bad request and serves its load with no error. Its
    // figures are not judged here (a shared machine is too noisy).
    step("bench --quick (smoke)", || bench::run(true))
}

pub fn main() -> Result<(), String> {
    let start = Instant::now();
    let result = run_all();
    println!(
        "\ncargo xtask ci: {} in {:.0}s",
        if result.is_ok() { "passed" } else { "FAILED" },
        start.elapsed().as_secs_f64()
    );
    result
}

/// Every bootstrap checked into envoy-config/ must pass Envoy's own check.
fn validate_bootstraps() -> Result<(), String> {
    let dir = crate::util::root().join("envoy-config");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("envoy-") && n.ends_with(".yaml"))
        })
        .collect();
    entries.sort();
    if entries.is_empty() {
        return Err("no envoy-*.yaml bootstrap in envoy-config/".into());
    }
    for file in entries {
        run(Command::new(paths::envoy_binary())
            .args(["--mode", "validate", "-c"])
            .arg(&file))?;
    }
    Ok(())
}
