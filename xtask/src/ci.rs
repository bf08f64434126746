//! `cargo xtask ci`: everything `.ci/run` runs, in order, stopping at the
//! first failure.

use crate::util::{cargo, run, run_counting, step};
use crate::{bench, capacity, demo, render, setup};
use std::cell::RefCell;
use std::process::Command;
use std::time::Instant;
use tollgate_integration::{docker, paths};

/// Set (by `.ci/run`) to make a missing Docker engine an error, not a skip.
pub const REQUIRE_DOCKER: &str = "TOLLGATE_REQUIRE_DOCKER";

/// Pass counts and times of the integration runs, printed at the end.
#[derive(Default)]
pub struct Modes {
    lines: RefCell<Vec<String>>,
}

impl Modes {
    /// Runs `cargo test` as `command`, echoing it, and records its pass count.
    fn count(&self, mode: &str, command: &mut Command) -> Result<(), String> {
        let start = Instant::now();
        let passed = run_counting(command)?;
        self.lines.borrow_mut().push(format!(
            "{mode}: {passed} passed in {:.0}s",
            start.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    fn note(&self, line: String) {
        self.lines.borrow_mut().push(line);
    }

    fn print(&self) {
        println!("\nintegration modes:");
        for line in self.lines.borrow().iter() {
            println!("  {line}");
        }
    }
}

pub fn run_all(modes: &Modes) -> Result<(), String> {
    // Fail at once, not after the native steps, where container mode is required.
    if required_engine_missing() {
        return Err(format!("{REQUIRE_DOCKER} is set and no Docker engine answers"));
    }
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
    step("proxy-wasm only at the edge (cargo tree)", crate_boundaries)?;
    step("rendered files up to date", || {
        render::run(true, render::DEFAULT_IMAGE, false)
    })?;
    // Declared requests with the answers they must get, the demo's among them.
    step("policy cases (tollgate test)", || {
        let root = crate::util::root();
        let cases = root.join(render::PLUGINS).join("policy.tests.yaml");
        match tollgate_cli::cases::run(&root.join(render::POLICY), &cases, false)? {
            true => Ok(()),
            false => Err(format!("{}: cases failed (above)", cases.display())),
        }
    })?;
    // The page's figures come from the bench's JSON, never by hand.
    step("docs/capacity.md generated from docs/capacity.json", || {
        capacity::run(capacity::BENCH, capacity::OUT, None, true)
    })?;
    step("alert rules (promtool check rules, test rules)", promtool)?;
    step("rendered manifests fit Istio's CRD (schema and CEL rules)", || {
        tollgate_cli::manifests::run(&[crate::util::root().join(render::PLUGINS)])
    })?;
    step("unit tests (native)", || {
        run(cargo().args(["test", "--workspace", "--exclude", "tollgate-integration"]))
    })?;
    step("core tests in wasm32 (wasm-bindgen-test, Node)", || {
        run(cargo().args(["test", "-p", "tollgate-core", "--target", "wasm32-unknown-unknown"]))
    })?;
    // Each fuzz target once over its committed seeds: a change that makes
    // one of them crash fails here, not only in a long `cargo xtask fuzz`.
    step("fuzz corpus replays", || crate::fuzz::all(0, &[], true))?;
    step("build tollgate.wasm", setup::build_wasm)?;
    step("envoy --mode validate", validate_bootstraps)?;
    step("integration tests (real Envoy, separate filters)", || {
        modes.count(
            "native, split",
            cargo()
                .args(["test", "-p", "tollgate-integration"])
                .env("TOLLGATE_DELIVERY", "split"),
        )
    })?;
    step("integration tests (real Envoy, fused tollgate filter)", || {
        modes.count(
            "native, fused",
            cargo()
                .args(["test", "-p", "tollgate-integration"])
                .env("TOLLGATE_DELIVERY", "fused"),
        )
    })?;
    // `#[ignore]`d in the suite, so they run once, here: they build their
    // own chains whatever the delivery, and Envoy reads files only on the host.
    step(
        "policy updates under load, VM failure, the Envoy host (real Envoy)",
        || {
            modes.count(
                "native, reload, vm_failure and host",
                cargo()
                    .args(["test", "-p", "tollgate-integration"])
                    .args([
                        "--test",
                        "reload",
                        "--test",
                        "vm_failure",
                        "--test",
                        "host",
                        "--",
                        "--ignored",
                    ])
                    .env_remove("TOLLGATE_ENVOY_IMAGE"),
            )
        },
    )?;
    step("demo answers as printed", || demo::run(true, false))?;
    container_mode(modes)?;
    // A smoke run, so the bench cannot rot: every configuration starts,
    // refuses its bad request and serves its load with no error. Its
    // figures are not judged here (a shared machine is too noisy).
    step("bench --quick (smoke)", || bench::run(true))?;
    // The capacity page reads what the bench writes today: every row, every
    // field (into target/, the checked-in page is the full run's).
    step("capacity from the smoke run's JSON", || {
        capacity::run(capacity::BENCH, "target/bench/capacity.md", None, false)
    })
}

/// The tool and the host layer build without proxy-wasm, and the tool
/// without the integration harness: proxy-wasm lives in tollgate-envoy and
/// the module only. tonic and the rate limit party are the integration
/// tests' alone (dev-dependencies), never built for the tool or xtask; the
/// Kafka party is the tests', the demo's and the bench's, never the tool's.
fn crate_boundaries() -> Result<(), String> {
    for (krate, forbidden) in [
        (
            "tollgate-cli",
            &[
                "proxy-wasm",
                "tollgate-integration",
                "tollgate-ratelimit-party",
                "tollgate-kafka-party",
                "tonic",
            ][..],
        ),
        ("tollgate-host", &["proxy-wasm"][..]),
        ("tollgate-stages", &["proxy-wasm"][..]),
        // The rate limit party (tonic, redis) is for the integration tests
        // only: a dev-dependency, never built for xtask or the harness.
        // The Kafka party is the demo's and the bench's too (the tool
        // already builds rskafka for `tollgate audit tail`).
        ("xtask", &["tollgate-ratelimit-party", "tonic"][..]),
        (
            "tollgate-integration",
            &["tollgate-ratelimit-party", "tonic", "tollgate-kafka-party", "rskafka"][..],
        ),
    ] {
        let out = cargo()
            .args(["tree", "-p", krate, "-e", "normal,build", "--prefix", "none"])
            .output()
            .map_err(|e| format!("cargo tree -p {krate}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cargo tree -p {krate}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let tree = String::from_utf8_lossy(&out.stdout);
        for name in forbidden {
            if tree.lines().any(|l| l.split_whitespace().next() == Some(name)) {
                return Err(format!("{krate} depends on {name}: it belongs at the edge only"));
            }
        }
        println!("{krate}: none of {forbidden:?}");
    }
    Ok(())
}

/// Envoy in containers: the whole suite once (fused delivery; the native
/// steps run both), the outage tests, the demo and the compose file.
/// Skipped with one line where no engine answers, unless `REQUIRE_DOCKER`.
fn required_engine_missing() -> bool {
    std::env::var_os(REQUIRE_DOCKER).is_some_and(|v| !v.is_empty()) && docker::engine().is_err()
}

fn container_mode(modes: &Modes) -> Result<(), String> {
    if let Err(why) = docker::engine() {
        if std::env::var_os(REQUIRE_DOCKER).is_some_and(|v| !v.is_empty()) {
            return Err(format!(
                "container mode: no Docker engine answers ({why}) and {REQUIRE_DOCKER} is set"
            ));
        }
        let line = format!("container mode skipped: no Docker engine answers ({why})");
        println!("\n{line}");
        modes.note(line);
        return Ok(());
    }
    step("containers: leftovers of earlier runs (by label)", || {
        docker::remove_leftovers().map(|n| println!("removed {n}"))
    })?;
    step(
        "integration tests (Envoy in a container, fused tollgate filter)",
        || {
            modes.count(
                "container, fused",
                cargo()
                    .args(["test", "-p", "tollgate-integration"])
                    .env("TOLLGATE_DELIVERY", "fused")
                    .env("TOLLGATE_ENVOY_IMAGE", docker::envoy_image()),
            )
        },
    )?;
    // The JWKS server's outages, and the audit sink's (audit_faults' fault
    // tests on the host run in every mode above; only the container ones
    // are `#[ignore]`d).
    step("outage tests (Envoy and parties in containers)", || {
        modes.count(
            "container, outage",
            cargo()
                .args(["test", "-p", "tollgate-integration"])
                .args(["--test", "outage", "--test", "audit_faults"])
                .args(["--", "--ignored", "--nocapture"])
                .env("TOLLGATE_DELIVERY", "fused"),
        )
    })?;
    // The Kafka broker and REST front as images on a test's network (their
    // native tests run with the unit tests; this one is `#[ignore]`d).
    step("Kafka broker and REST front in containers", || {
        modes.count(
            "container, kafka",
            cargo()
                .args(["test", "-p", "tollgate-kafka-party", "--test", "containers"])
                .args(["--", "--ignored"]),
        )
    })?;
    step("demo in containers answers as printed", || demo::run(true, true))?;
    step("docker-compose config", || {
        run(Command::new("docker-compose").args(["-f", "envoy-config/docker-compose.yaml", "config", "-q"]))
    })
}

pub fn main() -> Result<(), String> {
    let start = Instant::now();
    let modes = Modes::default();
    let result = run_all(&modes);
    modes.print();
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

/// The alert rules parse, and fire and stay quiet on their synthetic
/// series (`prometheus/alerts_test.yaml`).
fn promtool() -> Result<(), String> {
    // `run` works from the repository root; the test file names its rule
    // file relative to itself.
    run(Command::new(setup::PROMTOOL).args(["check", "rules", "prometheus/alerts.yaml"]))?;
    run(Command::new(setup::PROMTOOL).args(["test", "rules", "prometheus/alerts_test.yaml"]))
}
