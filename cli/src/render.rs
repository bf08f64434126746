//! `tollgate render`: Istio WasmPlugins, and the ServiceEntries the
//! filters' calls need, from the one policy file, after checking it with
//! the code the filters run.

use crate::manifests;
use crate::mesh::{self, Placement};
use serde_json::{json, Map, Value};
use sha2::Digest;
use tollgate_core::policy::rollout::Attach;
use tollgate_core::stage;

/// Where mesh-wide plugins are applied unless the policy's `mesh` says.
pub const DEFAULT_NAMESPACE: &str = tollgate_core::policy::rollout::DEFAULT_ROOT_NAMESPACE;
pub const DEFAULT_IMAGE: &str = "oci://ghcr.io/tollgate/tollgate:0.1.0";
/// The Istio release the rendered fields are checked for (the vendored CRD's).
pub const DEFAULT_ISTIO: &str = "1.27";
/// The oldest Istio rendered for: `type`, `match` and `selector` all exist.
const OLDEST_ISTIO: (u32, u32) = (1, 22);
/// FAIL_RELOAD is in the WasmPlugin CRD from Istio 1.27 (not in 1.23's).
const FAIL_RELOAD_SINCE: (u32, u32) = (1, 27);

/// A filter's plugin: root id, Istio phase and priority (higher runs first
/// within a phase). Chain order is the order of `filters`.
struct Filter {
    root_id: &'static str,
    phase: &'static str,
    priority: i64,
}

/// The plugins' root ids in chain order.
pub fn root_ids(split: bool) -> impl Iterator<Item = &'static str> {
    filters(split).into_iter().map(|f| f.root_id)
}

/// The separate filters in the registry's order (authentication first,
/// then tenancy), or the one fused plugin, in the phase of its first stage.
fn filters(split: bool) -> Vec<Filter> {
    if !split {
        return vec![Filter {
            root_id: stage::FUSED_ROOT_ID,
            phase: stage::FUSED_PHASE,
            priority: stage::FUSED_PRIORITY,
        }];
    }
    stage::STAGES
        .iter()
        .map(|s| Filter {
            root_id: s.root_id,
            phase: s.phase,
            priority: s.priority,
        })
        .collect()
}

pub struct Options {
    /// Where Istio fetches tollgate.wasm: oci://, https:// or file://.
    pub url: String,
    /// The pinned digest (hex): the image manifest's for oci://, the
    /// module's otherwise. None renders no pin.
    pub sha256: Option<String>,
    pub split: bool,
    pub istio: (u32, u32),
    pub pull_policy: String,
    pub pull_secret: Option<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            url: DEFAULT_IMAGE.to_string(),
            sha256: None,
            split: false,
            istio: FAIL_RELOAD_SINCE,
            pull_policy: "IfNotPresent".to_string(),
            pull_secret: None,
        }
    }
}

/// `1.27` or `1.27.3`.
pub fn parse_istio_version(text: &str) -> Result<(u32, u32), String> {
    let mut parts = text.trim_start_matches('v').split('.');
    let mut number = || parts.next().and_then(|p| p.parse::<u32>().ok());
    let version = match (number(), number()) {
        (Some(major), Some(minor)) => (major, minor),
        _ => return Err(format!("'{text}' is not an Istio version like 1.27")),
    };
    if version < OLDEST_ISTIO {
        return Err(format!(
            "Istio {text} is older than {}.{}, the oldest rendered for",
            OLDEST_ISTIO.0, OLDEST_ISTIO.1
        ));
    }
    Ok(version)
}

/// A crashed VM must never let requests through unchecked: FAIL_RELOAD
/// refuses the failing request and replaces the VM; before it exists,
/// FAIL_CLOSE refuses every request until the sidecar restarts.
fn fail_strategy(istio: (u32, u32)) -> &'static str {
    if istio >= FAIL_RELOAD_SINCE {
        "FAIL_RELOAD"
    } else {
        "FAIL_CLOSE"
    }
}

pub fn header(what: &str, source: &str) -> String {
    format!("# {what}\n# Rendered by `tollgate render` from {source}; edit that file, not this one.\n")
}

pub fn to_yaml(value: &Value) -> Result<String, String> {
    serde_yaml_ng::to_string(value).map_err(|e| e.to_string())
}

/// One rendered file: `NAMESPACE/tollgate.yaml` under the output folder.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub namespace: String,
    pub text: String,
}

impl Rendered {
    pub fn file(&self) -> String {
        format!("{}/tollgate.yaml", self.namespace)
    }
}

/// Every file: the mesh-wide plugin (with the ServiceEntries) in the
/// root namespace, then each namespace's own.
pub fn render(policy: &Value, options: &Options, source: &str) -> Result<Vec<Rendered>, String> {
    let mut out = Vec::new();
    for place in mesh::placements(policy)? {
        let mut docs = plugins(&place, options)?;
        if place.mesh_wide {
            docs.extend(service_entries(policy, &place.namespace)?);
        }
        out.push(Rendered {
            text: file_text(&place, &docs, source)?,
            namespace: place.namespace,
        });
    }
    Ok(out)
}

fn file_text(place: &Placement, docs: &[Value], source: &str) -> Result<String, String> {
    let scope = if place.mesh_wide {
        format!("every sidecar of the mesh (root namespace {})", place.namespace)
    } else {
        format!("namespace {}, instead of the mesh-wide plugin", place.namespace)
    };
    let modes = mesh::describe_modes(place.modes);
    let mut text = header(&format!("Tollgate for {scope}: {modes}."), source);
    for doc in docs {
        text.push_str("---\n");
        text.push_str(&to_yaml(doc)?);
    }
    Ok(text)
}

/// The fused `tollgate` WasmPlugin, or one per filter, all pointing at the
/// one image: Istio then runs them in one VM per worker.
fn plugins(place: &Placement, options: &Options) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for filter in filters(options.split) {
        let name = filter.root_id.replace('.', "-");
        let mut spec = Map::new();
        attach(&mut spec, &place.attach);
        spec.insert("url".into(), options.url.clone().into());
        if let Some(sha) = &options.sha256 {
            spec.insert("sha256".into(), sha.clone().into());
        }
        spec.insert("imagePullPolicy".into(), options.pull_policy.clone().into());
        if let Some(secret) = &options.pull_secret {
            spec.insert("imagePullSecret".into(), secret.clone().into());
        }
        spec.insert("pluginName".into(), filter.root_id.into());
        spec.insert("phase".into(), filter.phase.into());
        spec.insert("priority".into(), filter.priority.into());
        spec.insert("failStrategy".into(), fail_strategy(options.istio).into());
        spec.insert("type".into(), "HTTP".into());
        if !matches!(place.attach, Attach::Targets(_)) {
            // Inbound only: each service enforces at its own edge; a plugin
            // on outbound traffic would check the caller's requests again.
            // Not on targets: Istio counts gateway and waypoint listeners as
            // CLIENT, so SERVER would attach to nothing there.
            spec.insert("match".into(), json!([{ "mode": "SERVER" }]));
        }
        spec.insert("pluginConfig".into(), place.config.clone());
        let plugin = json!({
            "apiVersion": "extensions.istio.io/v1alpha1",
            "kind": "WasmPlugin",
            "metadata": {"name": name, "namespace": place.namespace},
            "spec": spec,
        });
        let problems = manifests::check_plugin(&plugin)?;
        if !problems.is_empty() {
            return Err(format!(
                "{name} does not fit Istio's WasmPlugin CRD:\n  {}",
                problems.join("\n  ")
            ));
        }
        out.push(plugin);
    }
    Ok(out)
}

fn attach(spec: &mut Map<String, Value>, how: &Attach) {
    match how {
        Attach::Everything => {}
        Attach::Selector(labels) => {
            spec.insert("selector".into(), json!({ "matchLabels": labels }));
        }
        Attach::Targets(refs) => {
            let refs: Vec<Value> = refs
                .iter()
                .map(|r| json!({"group": r.group(), "kind": r.kind, "name": r.name}))
                .collect();
            spec.insert("targetRefs".into(), refs.into());
        }
    }
}

/// A sidecar has only the clusters Istio gives it: a JWKS host, a rate
/// limit service or an audit sink outside the mesh needs a ServiceEntry,
/// and TLS to a JWKS host a DestinationRule (the filter speaks HTTP to the
/// cluster; the sidecar originates TLS).
fn service_entries(policy: &Value, namespace: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    let mut seen = Vec::new();
    let providers = policy["jwt"]["providers"].as_array().cloned().unwrap_or_default();
    for (i, provider) in providers.iter().enumerate() {
        let remote = &provider["remote_jwks"];
        let (Some(uri), Some(cluster)) = (remote["uri"].as_str(), remote["cluster"].as_str()) else {
            continue;
        };
        let path = format!("jwt.providers[{i}].remote_jwks.cluster");
        let Some((port, host)) = external(cluster, &path, &mut seen)? else {
            continue;
        };
        let name = format!("tollgate-jwks-{}-{port}", host.replace('.', "-"));
        out.push(service_entry(&name, namespace, host, port, "HTTP"));
        if uri.starts_with("https://") {
            out.push(json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "host": host,
                    "trafficPolicy": {"portLevelSettings": [{
                        "port": {"number": port},
                        "tls": {"mode": "SIMPLE", "sni": host},
                    }]},
                },
            }));
        }
    }
    out.extend(ratelimit_entry(policy, namespace, &mut seen)?);
    out.extend(audit_entry(policy, namespace, &mut seen)?);
    Ok(out)
}

/// The audit sink's entry: the stage POSTs batches, so the port is HTTP.
/// `format: log` calls no cluster.
fn audit_entry(policy: &Value, namespace: &str, seen: &mut Vec<(u16, String)>) -> Result<Option<Value>, String> {
    let Some(cluster) = policy["audit"]["sink"]["cluster"].as_str() else {
        return Ok(None);
    };
    let Some((port, host)) = external(cluster, "audit.sink.cluster", seen)? else {
        return Ok(None);
    };
    let name = format!("tollgate-audit-{}-{port}", host.replace('.', "-"));
    Ok(Some(service_entry(&name, namespace, host, port, "HTTP")))
}

/// The rate limit service's entry: gRPC, so the port's protocol is GRPC
/// (the sidecar then speaks HTTP/2 to it).
fn ratelimit_entry(policy: &Value, namespace: &str, seen: &mut Vec<(u16, String)>) -> Result<Option<Value>, String> {
    let Some(cluster) = policy["ratelimit"]["service"]["cluster"].as_str() else {
        return Ok(None);
    };
    let Some((port, host)) = external(cluster, "ratelimit.service.cluster", seen)? else {
        return Ok(None);
    };
    let name = format!("tollgate-ratelimit-{}-{port}", host.replace('.', "-"));
    Ok(Some(service_entry(&name, namespace, host, port, "GRPC")))
}

/// The port and host of an Istio cluster outside the mesh not seen yet;
/// `None` for a mesh host (`*.cluster.local`) or one already entered.
fn external<'c>(cluster: &'c str, path: &str, seen: &mut Vec<(u16, String)>) -> Result<Option<(u16, &'c str)>, String> {
    let (port, host) = istio_cluster(cluster).map_err(|why| format!("{path}: '{cluster}' {why}"))?;
    if host.ends_with(".cluster.local") || seen.contains(&(port, host.to_string())) {
        return Ok(None);
    }
    seen.push((port, host.to_string()));
    Ok(Some((port, host)))
}

fn service_entry(name: &str, namespace: &str, host: &str, port: u16, protocol: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "hosts": [host],
            "location": "MESH_EXTERNAL",
            "resolution": "DNS",
            "ports": [{"number": port, "name": format!("{}-{port}", protocol.to_ascii_lowercase()), "protocol": protocol}],
        },
    })
}

/// `outbound|PORT|SUBSET|HOST`, Istio's name for a service's cluster.
fn istio_cluster(cluster: &str) -> Result<(u16, &str), String> {
    let why = "is not an Istio cluster name (outbound|PORT||HOST): a sidecar has only Istio's clusters";
    let mut parts = cluster.split('|');
    match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("outbound"), Some(port), Some(_subset), Some(host), None) if !host.is_empty() => {
            let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or(why)?;
            Ok((port, host))
        }
        _ => Err(why.to_string()),
    }
}

/// The digest to pin: given (`sha256:` prefix allowed), or the module's.
pub fn pin(sha256: Option<String>, wasm: Option<&std::path::Path>) -> Result<Option<String>, String> {
    if let Some(path) = wasm {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(Some(hex(&sha2::Sha256::digest(&bytes))));
    }
    let Some(given) = sha256 else { return Ok(None) };
    let hex = given.strip_prefix("sha256:").unwrap_or(&given);
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(Some(hex.to_string()))
    } else {
        Err(format!("--sha256 '{given}' is not 64 lowercase hex digits"))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `NAMESPACE/tollgate.yaml` files into `out`.
pub fn run(policy: &std::path::Path, out: &std::path::Path, options: &Options) -> Result<(), String> {
    let value = crate::policy_file::load_policy(policy)?;
    if options.sha256.is_none() {
        eprintln!("tollgate: warning: no sha256 pinned (give --sha256, --oci-layout or --wasm)");
    }
    for rendered in render(&value, options, &policy.display().to_string())? {
        let file = out.join(rendered.file());
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(&file, rendered.text).map_err(|e| format!("{}: {e}", file.display()))?;
        println!("wrote {}", file.display());
    }
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    for (name, text) in stats::render(&value, &policy.display().to_string())? {
        let file = out.join(name);
        std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
        println!("wrote {}", file.display());
    }
    Ok(())
}

pub mod stats;

#[cfg(test)]
mod tests;
