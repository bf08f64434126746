//! Containers and networks for tests that need them. Everything a run
//! creates carries the labels `tollgate.repo` (this checkout) and
//! `tollgate.run` (this process), is removed by id when dropped, and
//! `remove_leftovers` removes what earlier runs of this checkout left, by
//! label only. The host reaches containers only through ports published on
//! 127.0.0.1, picked by Docker at run time.

use crate::http::{Request, Response};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The image `cargo xtask setup` builds from the cached Envoy binary.
pub fn envoy_image() -> String {
    format!("tollgate/envoy:{}", crate::paths::ENVOY_VERSION)
}

/// The image of `tollgate-party` (echo upstream, JWKS server).
pub const PARTY_IMAGE: &str = "tollgate/party:dev";
/// The port every party listens on inside its container.
pub const PARTY_PORT: u16 = 8080;
/// The rate limit service (`tollgate-ratelimit`) and the port it listens
/// on inside its container.
pub const RATELIMIT_IMAGE: &str = "tollgate/ratelimit:dev";
pub const RATELIMIT_PORT: u16 = 8081;
/// Debian's `redis-server`, listening on all the container's addresses.
pub const REDIS_IMAGE: &str = "tollgate/redis:dev";
pub const REDIS_PORT: u16 = 6379;
/// Tansu, the Kafka-compatible broker (its static binary alone), and the
/// Kafka REST Proxy v2 front of the audit tests (`tollgate-kafka-rest`),
/// with the port the front listens on inside its container.
pub const TANSU_IMAGE: &str = "tollgate/tansu:dev";
pub const KAFKA_REST_IMAGE: &str = "tollgate/kafka-rest:dev";
pub const KAFKA_REST_PORT: u16 = 8082;
/// Envoy's listener and admin ports inside its container.
pub const ENVOY_PORT: u16 = 10000;
pub const ENVOY_ADMIN_PORT: u16 = 9901;

/// `docker info` answers: `Err` says why not.
pub fn engine() -> Result<(), String> {
    let out = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map_err(|e| format!("no docker client: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let why = String::from_utf8_lossy(&out.stderr);
        Err(why.lines().last().unwrap_or("docker info failed").trim().to_string())
    }
}

/// This checkout, as a label value: a run in another checkout is left alone.
pub fn repo_label() -> String {
    let root = crate::paths::repo_root().display().to_string();
    // FNV-1a: stable across runs and Rust versions.
    let hash = root.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{hash:016x}")
}

pub fn run_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("{}-{nanos:09}", std::process::id())
    })
}

/// `--label` arguments for everything this run creates.
pub fn label_args() -> Vec<String> {
    vec![
        "--label".into(),
        format!("tollgate.repo={}", repo_label()),
        "--label".into(),
        format!("tollgate.run={}", run_id()),
    ]
}

/// A name unique to this run, for containers and networks (readable in `docker ps`).
pub fn unique_name(what: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("tollgate-{what}-{}-{}", run_id(), NEXT.fetch_add(1, Ordering::SeqCst))
}

fn docker(args: &[&str]) -> Result<String, String> {
    let out: Output = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("docker {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Removes the containers, then the networks, that earlier runs of this
/// checkout left behind (selected by label, removed by id); returns how many.
pub fn remove_leftovers() -> Result<usize, String> {
    let filter = format!("label=tollgate.repo={}", repo_label());
    let ids = docker(&["ps", "-aq", "--filter", &filter])?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if !ids.is_empty() {
        docker(&[&["rm", "-f"], ids.as_slice()].concat())?;
    }
    let nets = docker(&["network", "ls", "-q", "--filter", &filter])?;
    let nets: Vec<&str> = nets.split_whitespace().collect();
    if !nets.is_empty() {
        docker(&[&["network", "rm"], nets.as_slice()].concat())?;
    }
    Ok(ids.len() + nets.len())
}

/// Where the host reaches `port` of container `id` (127.0.0.1 only).
pub fn published(id: &str, port: u16) -> Result<SocketAddr, String> {
    let text = docker(&["port", id, &format!("{port}/tcp")])?;
    text.lines()
        .filter_map(|l| l.trim().parse::<SocketAddr>().ok())
        .find(|a| a.ip().is_loopback())
        .ok_or_else(|| format!("{port}/tcp of {id} not published on 127.0.0.1: {text:?}"))
}

/// A bootstrap made for a test's network: listener and admin on all of the
/// container's addresses at the fixed container ports, and each named
/// cluster sent to a party by its name (`STRICT_DNS`, re-resolved every
/// second so a party that comes back with another address is found).
pub fn on_network(bootstrap: &mut Value, parties: &[(&str, &str, u16)]) -> Result<(), String> {
    let any = |port: u16| json!({"socket_address": {"address": "0.0.0.0", "port_value": port}});
    *bootstrap
        .pointer_mut("/admin/address")
        .ok_or("bootstrap has no admin address")? = any(ENVOY_ADMIN_PORT);
    *bootstrap
        .pointer_mut("/static_resources/listeners/0/address")
        .ok_or("bootstrap has no listener")? = any(ENVOY_PORT);
    let clusters = bootstrap
        .pointer_mut("/static_resources/clusters")
        .and_then(Value::as_array_mut)
        .ok_or("bootstrap has no clusters")?;
    for (cluster, host, port) in parties {
        let slot = clusters
            .iter_mut()
            .find(|c| c["name"] == *cluster)
            .ok_or_else(|| format!("bootstrap has no cluster {cluster}"))?;
        slot["type"] = json!("STRICT_DNS");
        slot["dns_lookup_family"] = json!("V4_ONLY");
        slot["dns_refresh_rate"] = json!("1s");
        slot["load_assignment"]["endpoints"] = json!([{"lb_endpoints": [{"endpoint": {"address":
            {"socket_address": {"address": host, "port_value": port}}}}]}]);
    }
    Ok(())
}

/// The Envoy image of suite-wide container mode (`TOLLGATE_ENVOY_IMAGE`), if on.
pub fn container_mode() -> Option<String> {
    std::env::var("TOLLGATE_ENVOY_IMAGE")
        .ok()
        .filter(|image| !image.is_empty())
}

/// Where the in-process parties (echo, JWKS server) listen: 127.0.0.1
/// natively; in container mode the host's address on Docker's default bridge
/// (docker0), which a container on any of the run's networks reaches through
/// its gateway, and which exists before and after the run, so nothing the
/// run creates outlives it. Nothing listens on the host's outward addresses.
pub fn party_host() -> String {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        if container_mode().is_none() {
            return "127.0.0.1".to_string();
        }
        match bridge_gateway() {
            Ok(host) => host,
            Err(e) => panic!("container mode: no address on Docker's default bridge: {e}"),
        }
    })
    .clone()
}

/// The gateway of Docker's default `bridge` network: its IPAM gateway, or
/// (when the engine leaves it out) the subnet's first address, which is
/// where Docker puts it. A party in this process listens there for Envoy
/// in a container (`party_host`, the demo's audit sink).
pub fn bridge_gateway() -> Result<String, String> {
    let text = docker(&["network", "inspect", "bridge", "--format", "{{json .IPAM.Config}}"])?;
    let configs: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    let v4 = configs
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|c| {
            let subnet = c["Subnet"].as_str()?;
            let net: std::net::Ipv4Addr = subnet.split('/').next()?.parse().ok()?;
            Some((c["Gateway"].as_str().unwrap_or_default().to_string(), net))
        })
        .ok_or_else(|| format!("no IPv4 subnet on the default bridge: {text}"))?;
    match v4 {
        (gateway, _) if !gateway.is_empty() => Ok(gateway),
        (_, net) => Ok(std::net::Ipv4Addr::from(u32::from(net) + 1).to_string()),
    }
}

/// A native-mode bootstrap made for Envoy in a container: listener and admin
/// on the container's fixed ports on all its addresses, and every endpoint
/// at 127.0.0.1 (an in-process party) moved to `host`, where it listens.
pub fn bridged(bootstrap: &mut Value, host: &str) -> Result<(), String> {
    on_network(bootstrap, &[])?;
    let clusters = bootstrap
        .pointer_mut("/static_resources/clusters")
        .ok_or("bootstrap has no clusters")?;
    move_loopback(clusters, host);
    Ok(())
}

fn move_loopback(value: &mut Value, host: &str) {
    match value {
        Value::Object(map) => {
            if let Some(address) = map.get_mut("socket_address").and_then(|s| s.get_mut("address")) {
                if address == "127.0.0.1" {
                    *address = json!(host);
                }
            }
            map.values_mut().for_each(|v| move_loopback(v, host));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| move_loopback(v, host)),
        _ => {}
    }
}

/// A user-defined bridge network, removed by id when dropped (drop it after
/// its containers: declare it first).
pub struct Network {
    pub id: String,
    pub name: String,
}

impl Network {
    pub fn create() -> Result<Network, String> {
        let name = unique_name("net");
        let mut args = vec!["network".to_string(), "create".into()];
        args.extend(label_args());
        args.push(name.clone());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let id = docker(&refs)?;
        Ok(Network { id, name })
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = docker(&["network", "rm", &self.id]);
    }
}

/// A detached container, removed by id when dropped; its logs are printed
/// when it is dropped during a panic (a failing test).
pub struct Container {
    pub id: String,
    /// Its name on the network (`--network-alias`), e.g. `jwks`.
    pub alias: String,
    pub network: Option<String>,
}

/// What to run: image, alias on a network, ports to publish, mounts, args.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub image: String,
    pub alias: String,
    pub network: Option<String>,
    /// Container ports published on 127.0.0.1, host port picked by Docker.
    pub publish: Vec<u16>,
    /// Container ports published on 127.0.0.1 at the same port number
    /// (for a server that advertises its own address, as Kafka does).
    pub publish_same: Vec<u16>,
    /// Joins the network namespace of this container (`--network
    /// container:ID`) instead of `network`: the two share 127.0.0.1.
    pub network_of: Option<String>,
    /// (host path, container path), mounted read-only.
    pub mounts_ro: Vec<(String, String)>,
    pub entrypoint: Option<String>,
    pub workdir: Option<String>,
    pub args: Vec<String>,
}

impl Container {
    pub fn run(spec: &Spec) -> Result<Container, String> {
        let mut args: Vec<String> = vec![
            "run".into(),
            "-d".into(),
            "--pull".into(),
            "never".into(),
            "--name".into(),
            unique_name(&spec.alias),
        ];
        args.extend(label_args());
        if let Some(owner) = &spec.network_of {
            args.extend(["--network".into(), format!("container:{owner}")]);
        } else if let Some(net) = &spec.network {
            args.extend([
                "--network".into(),
                net.clone(),
                "--network-alias".into(),
                spec.alias.clone(),
            ]);
        }
        for port in &spec.publish {
            args.extend(["-p".into(), format!("127.0.0.1::{port}")]);
        }
        for port in &spec.publish_same {
            args.extend(["-p".into(), format!("127.0.0.1:{port}:{port}")]);
        }
        for (host, inside) in &spec.mounts_ro {
            args.extend(["-v".into(), format!("{host}:{inside}:ro")]);
        }
        if let Some(entrypoint) = &spec.entrypoint {
            args.extend(["--entrypoint".into(), entrypoint.clone()]);
        }
        if let Some(dir) = &spec.workdir {
            args.extend(["-w".into(), dir.clone()]);
        }
        args.push(spec.image.clone());
        args.extend(spec.args.iter().cloned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let id = docker(&refs)?;
        Ok(Container {
            id,
            alias: spec.alias.clone(),
            network: spec.network.clone().filter(|_| spec.network_of.is_none()),
        })
    }

    /// A party (`echo` or `jwks`) on `network`, its port published.
    pub fn party(role: &str, network: &Network) -> Result<Container, String> {
        let party = Container::run(&Spec {
            image: PARTY_IMAGE.into(),
            alias: role.into(),
            network: Some(network.name.clone()),
            publish: vec![PARTY_PORT],
            args: vec![role.into(), PARTY_PORT.to_string()],
            ..Spec::default()
        })?;
        party.wait_http(PARTY_PORT, "/_party/ready")?;
        Ok(party)
    }

    /// Where the host reaches `port` of the container (127.0.0.1 only).
    pub fn published(&self, port: u16) -> Result<SocketAddr, String> {
        published(&self.id, port)
    }

    /// Polls until `path` answers on the published `port` (any status).
    pub fn wait_http(&self, port: u16, path: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.published(port).and_then(|addr| Request::get(path).send(addr)) {
                Ok(_) => return Ok(()),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "{} did not answer on {port}: {last}\n{}",
            self.alias,
            self.logs()
        ))
    }

    pub fn send(&self, port: u16, request: &Request) -> Result<Response, String> {
        request.send(self.published(port)?)
    }

    pub fn logs(&self) -> String {
        match Command::new("docker")
            .args(["logs", "--tail", "400", &self.id])
            .output()
        {
            Ok(out) => format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => format!("docker logs: {e}"),
        }
    }

    /// A JWKS party serves `jwks` from now on.
    pub fn set_keys(&self, jwks: &str) -> Result<(), String> {
        let mut request = Request::get("/_party/keys").method("PUT");
        request.body = jwks.as_bytes().to_vec();
        let response = self.send(PARTY_PORT, &request)?;
        if response.status == 200 {
            Ok(())
        } else {
            Err(format!("set keys: {}", response.status))
        }
    }

    /// Key-set requests a JWKS party has answered.
    pub fn hits(&self) -> Result<u64, String> {
        let response = self.send(PARTY_PORT, &Request::get("/_party/hits"))?;
        response.text().trim().parse().map_err(|e| format!("hits: {e}"))
    }

    pub fn pause(&self) -> Result<(), String> {
        docker(&["pause", &self.id]).map(drop)
    }

    pub fn unpause(&self) -> Result<(), String> {
        docker(&["unpause", &self.id]).map(drop)
    }

    /// SIGKILL to its process: the container stops, and stays until dropped.
    pub fn kill(&self) -> Result<(), String> {
        docker(&["kill", &self.id]).map(drop)
    }

    /// Starts a stopped (killed) container again, with the same arguments.
    pub fn start(&self) -> Result<(), String> {
        docker(&["start", &self.id]).map(drop)
    }

    pub fn disconnect(&self) -> Result<(), String> {
        let net = self.network.as_deref().ok_or("not on a network")?;
        docker(&["network", "disconnect", net, &self.id]).map(drop)
    }

    /// Back on its network under its alias.
    pub fn connect(&self) -> Result<(), String> {
        let net = self.network.as_deref().ok_or("not on a network")?;
        docker(&["network", "connect", "--alias", &self.alias, net, &self.id]).map(drop)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- logs of container {} ({}) ---\n{}",
                self.alias,
                self.id,
                self.logs()
            );
        }
        let _ = docker(&["rm", "-f", "-v", &self.id]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Bootstrap;

    #[test]
    fn a_bootstrap_on_a_network_listens_on_the_container_ports_and_names_its_parties() {
        let mut bootstrap = Bootstrap::new(1234).cluster("idp", 5678).to_json();
        on_network(&mut bootstrap, &[("upstream", "echo", PARTY_PORT)]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            bootstrap["admin"]["address"]["socket_address"]["port_value"],
            ENVOY_ADMIN_PORT
        );
        let listener = &bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"];
        assert_eq!(
            (listener["address"].as_str(), listener["port_value"].as_u64()),
            (Some("0.0.0.0"), Some(10000))
        );
        let clusters = &bootstrap["static_resources"]["clusters"];
        let echo = &clusters[0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"];
        assert_eq!(clusters[0]["type"], "STRICT_DNS");
        assert_eq!(echo["socket_address"]["address"], "echo");
        // Clusters not named stay as they were.
        assert_eq!(clusters[1]["type"], "STATIC");
        assert!(on_network(&mut bootstrap, &[("nope", "x", 1)]).is_err());
    }

    #[test]
    fn a_bridged_bootstrap_sends_every_loopback_endpoint_to_the_party_host() {
        let mut bootstrap = Bootstrap::new(1234).cluster("idp", 5678).to_json();
        bridged(&mut bootstrap, "172.17.0.1").unwrap_or_else(|e| panic!("{e}"));
        let listener = &bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"];
        assert_eq!(listener["address"], "0.0.0.0");
        assert_eq!(bootstrap["admin"]["address"]["socket_address"]["address"], "0.0.0.0");
        let clusters = bootstrap["static_resources"]["clusters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let endpoints: Vec<(String, u64)> = clusters
            .iter()
            .map(|c| {
                let a =
                    &c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"];
                (
                    a["address"].as_str().unwrap_or_default().to_string(),
                    a["port_value"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(
            endpoints,
            [("172.17.0.1".to_string(), 1234), ("172.17.0.1".to_string(), 5678)]
        );
        assert!(!bootstrap.to_string().contains("127.0.0.1"));
    }
}
