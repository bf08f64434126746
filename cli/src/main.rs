//! `tollgate`: check, render, package and explain a Tollgate policy.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use tollgate_cli::{cases, diff, envoy, explain, manifests, package, policy_file, render, replay, tail};
use tollgate_core::audit::{EventType, Outcome};

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
    Validate {
        policy: PathBuf,
        /// Exit 1 on warnings too (routes that can never be chosen, cluster names that disagree)
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Render Istio WasmPlugins (and the ServiceEntries they need) from a policy
    Render {
        policy: PathBuf,
        /// Directory the manifests are written to, one folder per namespace
        #[arg(long)]
        out: PathBuf,
        /// Where Istio fetches tollgate.wasm: oci://, https:// or file://
        #[arg(long, default_value = render::DEFAULT_IMAGE)]
        url: String,
        /// The digest to pin (hex): the image manifest's for oci://, the module's otherwise
        #[arg(long, conflicts_with = "wasm")]
        sha256: Option<String>,
        /// Pin the sha256 of this module (for https:// and file:// URLs)
        #[arg(long, conflicts_with = "oci_layout")]
        wasm: Option<PathBuf>,
        /// Pin the manifest digest of the image `tollgate package --out DIR` wrote (for oci:// URLs)
        #[arg(long, conflicts_with = "sha256")]
        oci_layout: Option<PathBuf>,
        /// The Istio release the plugins are for (FAIL_RELOAD from 1.27, FAIL_CLOSE before)
        #[arg(long, default_value = render::DEFAULT_ISTIO, value_parser = render::parse_istio_version)]
        istio_version: (u32, u32),
        #[arg(long, default_value = "IfNotPresent", value_parser = ["IfNotPresent", "Always"])]
        image_pull_policy: String,
        /// A Secret in each plugin's namespace with the registry's credentials
        #[arg(long)]
        image_pull_secret: Option<String>,
        /// One WasmPlugin per filter instead of the fused `tollgate` one
        #[arg(long)]
        split: bool,
    },
    /// What changes between two policies, per namespace and per filter
    Diff { old: PathBuf, new: PathBuf },
    /// Check WasmPlugin manifests against Istio's CRD (schema and CEL rules)
    CheckManifests {
        /// Files, folders (their .yaml/.yml files, recursively) or - for standard input
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
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
    Explain {
        policy: PathBuf,
        #[arg(long, default_value = "GET")]
        method: String,
        /// http://HOST/PATH?QUERY as the client sends it (the path is not normalized here)
        #[arg(long)]
        url: String,
        /// A request header, 'name: value' (repeatable; 'host' sets :authority)
        #[arg(short = 'H', long = "header", value_parser = parse_header)]
        headers: Vec<(String, String)>,
        /// Bearer token, placed where the policy's first provider reads tokens
        #[arg(long, conflicts_with = "token_file")]
        token: Option<String>,
        /// File holding the token
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Trust the token's claims: decode them, skip the signature (exp, nbf, iss, aud still checked)
        #[arg(long)]
        no_verify: bool,
        /// The clock, in Unix seconds (default: now)
        #[arg(long)]
        now: Option<u64>,
        /// JWKS for providers that fetch theirs (remote_jwks)
        #[arg(long)]
        jwks: Option<PathBuf>,
        /// Answer as the rendered plugin runs in this namespace (its modes, or standing aside);
        /// default: the policy as written, as a local Envoy runs it
        #[arg(long)]
        namespace: Option<String>,
        /// The client's address as Envoy sees the peer (IP or IP:PORT), for client_ip limit keys
        #[arg(long)]
        source_address: Option<String>,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Run declared requests (a cases file, YAML or JSON) through the filters and compare
    /// each answer with the one it must get; exit 1 when any differs, 2 for a file that cannot be run
    Test {
        policy: PathBuf,
        cases: PathBuf,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Impact analysis: re-decide recorded audit events with a candidate policy and report
    /// what would change, per route, stage, tenant and outcome
    Replay {
        /// The candidate policy
        policy: PathBuf,
        /// Audit events, one JSON object a line (a jsonl sink's file, `tollgate audit tail --json`), or - for standard input
        #[arg(long)]
        events: PathBuf,
        /// Which changes make replay exit 3: new-denials (requests denied that are not today),
        /// any-change, or none
        #[arg(long, default_value = "new-denials", value_parser = parse_fail_on)]
        fail_on: replay::report::FailOn,
        /// Re-decide as the plugin rendered for this namespace runs (its modes, or standing aside)
        #[arg(long)]
        namespace: Option<String>,
        /// The policy the events were recorded under: a claim or tenant source it read and the
        /// event lacks was absent, not unrecorded (more events are decidable)
        #[arg(long)]
        recorded_policy: Option<PathBuf>,
        /// The report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Read the audit trail the audit stage sends to Kafka
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Print the audit topics' events as they arrive: time, tenant, subject, method, path,
    /// status and each stage's decision, one line each
    Tail {
        /// Kafka brokers, HOST:PORT[,HOST:PORT..]
        #[arg(long, env = "KAFKA_BROKERS", default_value = tail::DEFAULT_BROKERS)]
        brokers: String,
        /// A topic to read (repeatable); default: the --event-type's, else the four audit topics
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// Only this tenant's events (repeatable)
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// Only requests with this outcome: deny (a stage denied), shadow_deny (one would have,
        /// in shadow mode, and none denied) or allow
        #[arg(long, value_parser = tail::parse_outcome)]
        decision: Option<Outcome>,
        /// Only events of this type: api_call, data_access, admin_operation, user_action
        #[arg(long, value_parser = tail::parse_event_type)]
        event_type: Option<EventType>,
        /// The event JSON values, one a line, as the broker holds them
        #[arg(long)]
        json: bool,
        /// Start at each partition's first record; default: only events that arrive from now on
        #[arg(long)]
        from_beginning: bool,
        /// Exit after printing this many events
        #[arg(long)]
        max_events: Option<u64>,
        /// Exit after this long (exit 1 if --max-events was not reached by then)
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Exit once every partition has been read to its end
        #[arg(long)]
        idle_exit: bool,
    },
}

fn parse_cluster(text: &str) -> Result<(String, u16), String> {
    let (name, port) = text.split_once('=').ok_or("expected NAME=PORT")?;
    let port = port.parse().map_err(|_| format!("'{port}' is not a port"))?;
    Ok((name.to_string(), port))
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once(':').ok_or("expected 'name: value'")?;
    Ok((name.trim().to_string(), value.trim().to_string()))
}

fn parse_fail_on(text: &str) -> Result<replay::report::FailOn, String> {
    text.parse()
}

fn main() {
    let result = match Cli::parse().command {
        Command::Validate { policy, deny_warnings } => policy_file::validate(&policy, deny_warnings),
        Command::Render {
            policy,
            out,
            url,
            sha256,
            wasm,
            oci_layout,
            istio_version,
            image_pull_policy,
            image_pull_secret,
            split,
        } => oci_layout
            .map(|dir| package::manifest_digest_of_layout(&dir))
            .transpose()
            .and_then(|layout| render::pin(layout.or(sha256), wasm.as_deref()))
            .and_then(|sha256| {
                let options = render::Options {
                    url,
                    sha256,
                    split,
                    istio: istio_version,
                    pull_policy: image_pull_policy,
                    pull_secret: image_pull_secret,
                };
                render::run(&policy, &out, &options)
            }),
        Command::Diff { old, new } => diff::run(&old, &new),
        Command::CheckManifests { paths } => manifests::run(&paths),
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
        Command::Explain {
            policy,
            method,
            url,
            headers,
            token,
            token_file,
            no_verify,
            now,
            jwks,
            namespace,
            source_address,
            json,
        } => (|| {
            let token = match token_file {
                Some(file) => Some(explain::read_token(&file)?),
                None => token,
            };
            let jwks = match jwks {
                Some(file) => Some(std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?),
                None => None,
            };
            let request = explain::Request {
                method,
                url,
                headers,
                token,
                no_verify,
                now,
                jwks,
                namespace,
                source_address,
            };
            explain::run(&policy, &request, json)
        })(),
        Command::Test { policy, cases, json } => match cases::run(&policy, &cases, json) {
            Ok(true) => Ok(()),
            // The failures are printed; the summary line says how many.
            Ok(false) => std::process::exit(1),
            Err(e) => {
                eprintln!("tollgate: {e}");
                std::process::exit(2);
            }
        },
        Command::Replay {
            policy,
            events,
            fail_on,
            namespace,
            recorded_policy,
            json,
        } => (|| {
            let recorded = match recorded_policy {
                Some(path) => Some(replay::Recording::of(&policy_file::load_policy(&path)?)?),
                None => None,
            };
            let options = replay::Options {
                fail_on,
                namespace,
                recorded,
            };
            if !replay::run(&policy, &events, &options, json)? {
                std::process::exit(replay::GATE_EXIT);
            }
            Ok(())
        })(),
        Command::Audit {
            command:
                AuditCommand::Tail {
                    brokers,
                    topics,
                    tenants,
                    decision,
                    event_type,
                    json,
                    from_beginning,
                    max_events,
                    timeout_ms,
                    idle_exit,
                },
        } => tail::parse_brokers(&brokers).and_then(|brokers| {
            tail::run(&tail::Options {
                topics: tail::topics(&topics, event_type),
                brokers,
                filter: tail::Filter {
                    tenants,
                    decision,
                    event_type,
                },
                json,
                from_beginning,
                max_events,
                timeout_ms,
                idle_exit,
            })
        }),
    };
    if let Err(e) = result {
        eprintln!("tollgate: {e}");
        std::process::exit(1);
    }
}
