//! `tollgate`: check, render, package and explain a Tollgate policy.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use tollgate_cli::{diff, envoy, explain, package, policy_file, render};

/// Check, render, package and explain a Tollgate policy.
#[derive(Parser)]
#[command(name = "tollgate", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a policy (YAML or JSON): every error with its path, line and column
    Validate { policy: PathBuf },
    /// Render Istio WasmPlugins (and the ServiceEntries they need) from a policy
    Render {
        policy: PathBuf,
        /// Directory the manifests are written to
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = render::DEFAULT_NAMESPACE)]
        namespace: String,
        /// Where Istio fetches tollgate.wasm: oci://, file:// or https://
        #[arg(long, default_value = render::DEFAULT_IMAGE)]
        url: String,
        /// One WasmPlugin per filter instead of the fused `tollgate` one
        #[arg(long)]
        split: bool,
    },
    /// What changes between two policies, per namespace and per filter
    Diff { old: PathBuf, new: PathBuf },
    /// Check WasmPlugin manifests against Istio's CRD (schema and CEL rules)
    CheckManifests { dir: PathBuf },
    /// Build the OCI image of tollgate.wasm (an OCI image layout) and push it; prints the
    /// manifest digest, which a WasmPlugin's `sha256` pins (hex part)
    Package {
        /// The module to package
        #[arg(long, default_value = "target/wasm32-wasip1/release/tollgate.wasm")]
        wasm: PathBuf,
        /// Directory the OCI image layout is written to (empty, missing, or an earlier layout)
        #[arg(long)]
        out: PathBuf,
        /// Push to this reference (REGISTRY/REPOSITORY:TAG); credentials from
        /// TOLLGATE_REGISTRY_USERNAME and TOLLGATE_REGISTRY_PASSWORD, else anonymous
        #[arg(long)]
        push: Option<String>,
        /// Plain HTTP to the --push registry (a registry on loopback)
        #[arg(long, requires = "push")]
        insecure: bool,
    },
    /// An Envoy bootstrap with the filters and the clusters they call, for local testing
    Envoy {
        policy: PathBuf,
        /// tollgate.wasm, as Envoy will find it
        #[arg(long, default_value = "target/wasm32-wasip1/release/tollgate.wasm")]
        wasm: PathBuf,
        #[arg(long, default_value_t = 10000)]
        port: u16,
        #[arg(long, default_value_t = 9901)]
        admin_port: u16,
        #[arg(long, default_value_t = 18080)]
        upstream_port: u16,
        /// A cluster a filter calls, on loopback: NAME=PORT (repeatable)
        #[arg(long, value_parser = parse_cluster)]
        cluster: Vec<(String, u16)>,
        #[arg(long)]
        split: bool,
    },
    /// What would happen to a request, offline, with the filters' own code
    Explain,
}

fn parse_cluster(text: &str) -> Result<(String, u16), String> {
    let (name, port) = text.split_once('=').ok_or("expected NAME=PORT")?;
    let port = port.parse().map_err(|_| format!("'{port}' is not a port"))?;
    Ok((name.to_string(), port))
}

fn main() {
    let result = match Cli::parse().command {
        Command::Validate { policy } => policy_file::validate(&policy),
        Command::Render {
            policy,
            out,
            namespace,
            url,
            split,
        } => {
            let options = render::Options { namespace, url, split };
            render::run(&policy, &out, &options)
        }
        Command::Diff { .. } => diff::run(),
        Command::CheckManifests { .. } => Err("not done yet".to_string()),
        Command::Package {
            wasm,
            out,
            push,
            insecure,
        } => package::run(&wasm, &out, push.as_deref(), insecure),
        Command::Envoy {
            policy,
            wasm,
            port,
            admin_port,
            upstream_port,
            cluster,
            split,
        } => {
            let options = envoy::Options {
                wasm,
                listen_port: port,
                admin_port,
                upstream_port,
                split,
                clusters: cluster,
            };
            envoy::run(&policy, &options)
        }
        Command::Explain => explain::run(),
    };
    if let Err(e) = result {
        eprintln!("tollgate: {e}");
        std::process::exit(1);
    }
}
