//! `cargo xtask <command>`: the project's own build, setup and test steps.

// serde_json's `Index` yields `Null` for a missing key; it does not panic.
#![allow(clippy::indexing_slicing)]

mod bench;
mod capacity;
mod ci;
mod claims;
mod demo;
mod fuzz;
mod images;
mod package;
mod render;
mod setup;
mod soak;
mod util;

use clap::{Parser, Subcommand};

/// The project's own build, setup and test steps.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing: wasm targets, wasm-bindgen test runner, Envoy 1.40, bench tools,
    /// docker-registry
    Setup,
    /// Build tollgate.wasm (and the test-only filter) for wasm32-wasip1, release
    Build,
    /// Everything CI runs: fmt, clippy, unit tests (native and wasm), wasm build, rendered files
    /// up to date, envoy --mode validate, integration tests, demo check
    Ci,
    /// Start Envoy with the example policy on 127.0.0.1:10000 and print example requests
    Demo {
        /// Run the printed requests with curl, compare the answers and stop
        #[arg(long)]
        check: bool,
        /// Envoy and the echo upstream in containers (images built by setup, never pulled)
        #[arg(long)]
        docker: bool,
    },
    /// Render wasmplugins/NAMESPACE/tollgate.yaml and envoy-config/envoy-demo.yaml from wasmplugins/policy.yaml
    Render {
        /// Fail if the checked-in files differ instead of writing them
        #[arg(long)]
        check: bool,
        #[arg(long, default_value = render::DEFAULT_IMAGE)]
        image: String,
        /// One WasmPlugin (and bootstrap filter) per filter instead of the fused `tollgate` one
        #[arg(long)]
        split: bool,
    },
    /// Check a policy file (YAML or JSON) and print every error with its path
    Validate {
        #[arg(default_value = render::POLICY)]
        file: String,
    },
    /// Tollgate against Envoy's native filters on loopback (not part of ci)
    Bench {
        /// One short round: under 2 minutes
        #[arg(long)]
        quick: bool,
        /// Only these configurations (comma-separated; baseline and native_chain always run)
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// More rounds than the default (5; 1 with --quick)
        #[arg(long)]
        rounds: Option<usize>,
    },
    /// Regenerate docs/capacity.md (and the docs/capacity.json it reads) from a bench run's JSON:
    /// what a sidecar costs per setup, and a mesh of 100 to 10,000 pods, Tollgate vs native_chain
    Capacity {
        /// The bench run's JSON (a full run's; a partial run's says so on the page)
        #[arg(long, default_value = capacity::BENCH)]
        bench: String,
        #[arg(long, default_value = capacity::OUT)]
        out: String,
        /// Requests a second per pod for the mesh table [default: 50, or the rate of the
        /// docs/capacity.json given as --bench]
        #[arg(long)]
        rps_per_pod: Option<f64>,
        /// Regenerate the page from the JSON kept beside it and fail if it differs (CI)
        #[arg(long, conflicts_with_all = ["bench", "rps_per_pod"])]
        check: bool,
    },
    /// A million requests (good, bad and distinct tokens, tenants, routes) through the demo
    /// policy in Envoy with two workers: every status as `tollgate explain` gives it, Envoy's
    /// RSS flat after warm-up (not part of ci)
    Soak {
        #[arg(long, default_value_t = 1_000_000)]
        requests: u64,
        /// Stop (and fail) after this long
        #[arg(long, default_value_t = 1800)]
        max_seconds: u64,
        /// Client threads, each on its own keep-alive connection
        #[arg(long, default_value_t = 4)]
        clients: usize,
    },
    /// Run every libFuzzer target of fuzz/ (cargo-fuzz, stable toolchain, no sanitizer) for
    /// --time seconds each, one after the other; --replay: each once over its committed corpus
    Fuzz {
        /// Seconds per target
        #[arg(long, default_value_t = 60)]
        time: u64,
        /// Only these targets (repeat or comma-separate; default: all)
        #[arg(long, value_delimiter = ',')]
        target: Vec<String>,
        /// Run each target over fuzz/corpus/TARGET once and stop (what CI runs)
        #[arg(long, conflicts_with = "time")]
        replay: bool,
    },
    /// The OCI image of the built tollgate.wasm as an OCI image layout in target/oci/tollgate;
    /// prints its manifest digest (builds nothing: run `cargo xtask build` first)
    Package {
        /// Also push it to this reference (REGISTRY/REPOSITORY:TAG)
        #[arg(long)]
        push: Option<String>,
        /// Plain HTTP to the --push registry
        #[arg(long, requires = "push")]
        insecure: bool,
    },
}

fn main() {
    let result = match Cli::parse().command {
        Task::Setup => setup::all(),
        Task::Build => setup::build_wasm(),
        Task::Ci => ci::main(),
        Task::Demo { check, docker } => demo::run(check, docker),
        Task::Render { check, image, split } => render::run(check, &image, split),
        Task::Validate { file } => render::validate(&file),
        Task::Bench { quick, only, rounds } => bench::run_some(quick, &only, rounds),
        Task::Capacity {
            bench,
            out,
            rps_per_pod,
            check,
        } => capacity::run(&bench, &out, rps_per_pod, check),
        Task::Soak {
            requests,
            max_seconds,
            clients,
        } => soak::run(&soak::Options {
            requests,
            max_seconds,
            clients: clients.max(1),
        }),
        Task::Fuzz { time, target, replay } => fuzz::all(time, &target, replay),
        Task::Package { push, insecure } => package::run(push.as_deref(), insecure),
    };
    if let Err(e) = result {
        eprintln!("xtask: {e}");
        std::process::exit(1);
    }
}
