//! `cargo xtask <command>`: the project's own build, setup and test steps.

// serde_json's `Index` yields `Null` for a missing key; it does not panic.
#![allow(clippy::indexing_slicing)]

mod bench;
mod ci;
mod crd;
mod demo;
mod render;
mod setup;
mod util;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  setup          install what is missing: wasm targets, wasm-bindgen test runner, Envoy 1.40
  build          build tollgate.wasm (and the test-only filter) for wasm32-wasip1, release
  ci             everything CI runs: fmt, clippy, unit tests (native and wasm), wasm build,
                 rendered files up to date, envoy --mode validate, integration tests, demo check
  demo [--check] start Envoy with the example policy on 127.0.0.1:10000 and print example
                 requests; --check runs them, compares the answers and stops
  render [--check] [--namespace NS] [--image URL]
                 render wasmplugins/tollgate.yaml and envoy-config/envoy-demo.yaml from
                 wasmplugins/policy.yaml; --check fails if the checked-in files differ
  validate FILE  check a policy file (YAML or JSON) and print every error with its path
  bench [--quick] Tollgate against Envoy's native filters on loopback (wrk, pinned CPUs,
                 interleaved rounds): Markdown table, target/bench/bench.json and bench.png;
                 under 10 minutes, --quick under 2. Not part of ci
  package        (not done yet: OCI image of tollgate.wasm)";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup::all(),
        Some("build") => setup::build_wasm(),
        Some("ci") => ci::main(),
        Some("demo") => demo::run(rest.contains(&"--check")),
        Some("render") => render::run(&rest),
        Some("validate") => render::validate(rest.first().copied().unwrap_or("wasmplugins/policy.yaml")),
        Some("bench") => bench::run(&rest),
        Some("package") => Err("not done yet: this command lands with its own issue".to_string()),
        _ => {
            println!("{USAGE}");
            return;
        }
    };
    if let Err(e) = result {
        eprintln!("xtask: {e}");
        std::process::exit(1);
    }
}
