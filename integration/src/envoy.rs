//! Starts a real Envoy on a bootstrap, waits until it is ready, and stops it
//! by PID when dropped. `TOLLGATE_ENVOY_IMAGE` (e.g. `tollgate/envoy:1.40.0`,
//! built by `cargo xtask setup`) runs the same bootstrap in a container
//! instead, on a network of its own (labelled, removed by id with it), its
//! ports published on 127.0.0.1, the in-process parties reached at
//! `docker::party_host()`; `Envoy::try_start_on` runs it on a test's own
//! network, reached the same way.

use crate::docker::{self, Network, ENVOY_ADMIN_PORT, ENVOY_PORT};
use crate::http::{Request, Response};
use crate::paths;
use serde_json::Value;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long Envoy may take to become ready (V8 compiles each module per worker).
const START_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);
/// Workers: at least two, so per-worker (per-VM) bugs show.
pub const CONCURRENCY: &str = "2";

/// How Envoy is run: workers, log level, and the CPUs it may use.
#[derive(Debug, Clone)]
pub struct Launch {
    pub concurrency: String,
    /// `-l` level; the tests add `wasm:debug`.
    pub log_level: String,
    pub wasm_debug: bool,
    /// `taskset -c` CPU list (the bench pins Envoy); `None` runs anywhere.
    pub cpus: Option<String>,
}

impl Default for Launch {
    fn default() -> Launch {
        Launch {
            concurrency: CONCURRENCY.to_string(),
            log_level: "info".to_string(),
            wasm_debug: true,
            cpus: None,
        }
    }
}

impl Launch {
    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--concurrency".into(),
            self.concurrency.clone(),
            "--disable-hot-restart".into(),
        ];
        args.extend(["-l".into(), self.log_level.clone()]);
        if self.wasm_debug {
            args.extend(["--component-log-level".into(), "wasm:debug".into()]);
        }
        args
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub struct Envoy {
    child: Child,
    /// Where `docker run --cidfile` wrote the container's id (container modes).
    cidfile: Option<PathBuf>,
    /// Ports published on 127.0.0.1 (Envoy on a test's network).
    published: bool,
    /// The network made for this Envoy (container mode); a field declared
    /// after `cidfile`, dropped after Drop has removed the container.
    #[allow(dead_code)]
    network: Option<Network>,
    dir: PathBuf,
    admin: SocketAddr,
    listener: SocketAddr,
}

/// Envoy did not come up: why, with its log.
#[derive(Debug)]
pub struct StartFailure {
    pub reason: String,
    pub log: String,
}

impl Envoy {
    /// Starts Envoy or panics with its log.
    pub fn start(bootstrap: &Value) -> Envoy {
        match Envoy::try_start(bootstrap) {
            Ok(envoy) => envoy,
            Err(f) => panic!("Envoy did not start: {}\n--- envoy log ---\n{}", f.reason, f.log),
        }
    }

    pub fn try_start(bootstrap: &Value) -> Result<Envoy, StartFailure> {
        Envoy::try_start_with(bootstrap, &Launch::default())
    }

    pub fn try_start_with(bootstrap: &Value, launch: &Launch) -> Result<Envoy, StartFailure> {
        let Some(image) = docker::container_mode() else {
            return Envoy::start_placed(bootstrap, launch, &Placement::Host, None);
        };
        let fail = |reason: String| StartFailure {
            reason,
            log: String::new(),
        };
        let mut bridged = bootstrap.clone();
        docker::bridged(&mut bridged, &docker::party_host()).map_err(fail)?;
        let network = Network::create().map_err(fail)?;
        let placement = Placement::Network {
            image,
            network: network.name.clone(),
            ports: None,
        };
        Envoy::start_placed(&bridged, launch, &placement, Some(network))
    }

    /// Envoy in a container on `network` (alias `envoy`), its listener and
    /// admin published on 127.0.0.1; the bootstrap must listen on
    /// `0.0.0.0:{ENVOY_PORT}` and `{ENVOY_ADMIN_PORT}` (see `docker::on_network`).
    pub fn try_start_on(bootstrap: &Value, network: &Network) -> Result<Envoy, StartFailure> {
        Envoy::try_start_on_ports(bootstrap, network, None)
    }

    /// As `try_start_on`, published on the given 127.0.0.1 ports (listener,
    /// admin) instead of free ones (the interactive demo's fixed ports).
    pub fn try_start_on_ports(
        bootstrap: &Value,
        network: &Network,
        ports: Option<(u16, u16)>,
    ) -> Result<Envoy, StartFailure> {
        let placement = Placement::Network {
            image: docker::envoy_image(),
            network: network.name.clone(),
            ports,
        };
        Envoy::start_placed(bootstrap, &Launch::default(), &placement, None)
    }

    pub fn start_on(bootstrap: &Value, network: &Network) -> Envoy {
        match Envoy::try_start_on(bootstrap, network) {
            Ok(envoy) => envoy,
            Err(f) => panic!("Envoy did not start: {}\n--- envoy log ---\n{}", f.reason, f.log),
        }
    }

    /// `network`: one made for this Envoy alone, removed after its container.
    fn start_placed(
        bootstrap: &Value,
        launch: &Launch,
        placement: &Placement,
        network: Option<Network>,
    ) -> Result<Envoy, StartFailure> {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("tollgate-envoy-{}-{n}", std::process::id()));
        let fail = |reason: String| StartFailure {
            reason,
            log: String::new(),
        };
        fs::create_dir_all(&dir).map_err(|e| fail(format!("temp dir: {e}")))?;
        let config = dir.join("bootstrap.json");
        fs::write(&config, bootstrap.to_string()).map_err(|e| fail(format!("write bootstrap: {e}")))?;
        let log = File::create(dir.join("envoy.log")).map_err(|e| fail(format!("log file: {e}")))?;
        let log_err = log.try_clone().map_err(|e| fail(e.to_string()))?;
        let (mut command, cidfile) = launcher(&dir, placement, launch.cpus.as_deref());
        // Relative paths in a bootstrap (the demo's wasm) are from the repo root.
        command
            .current_dir(paths::repo_root())
            .arg("-c")
            .arg(&config)
            .args(launch.args())
            .arg("--admin-address-path")
            .arg(dir.join("admin.txt"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let child = command.spawn().map_err(|e| fail(format!("spawn envoy: {e}")))?;
        let mut envoy = Envoy {
            child,
            published: cidfile.is_some() && matches!(placement, Placement::Network { .. }),
            cidfile,
            network,
            dir,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            listener: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        match envoy.wait_ready() {
            Ok(()) => Ok(envoy),
            Err(reason) => Err(StartFailure {
                reason,
                log: envoy.log(),
            }),
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("envoy exited with {status}"));
            }
            if self.published {
                if let Some(ready) = self.published_ready() {
                    return ready;
                }
            } else if let Some(admin) = read_addr(&self.dir.join("admin.txt")) {
                self.admin = admin;
                if self.admin_get("/ready").is_ok_and(|r| r.status == 200) {
                    self.listener = self.find_listener()?;
                    return Ok(());
                }
            }
            std::thread::sleep(POLL);
        }
        Err(format!("not ready after {START_TIMEOUT:?}"))
    }

    /// `None` until the container exists and its admin answers /ready.
    fn published_ready(&mut self) -> Option<Result<(), String>> {
        let id = self.container_id()?;
        let admin = docker::published(&id, ENVOY_ADMIN_PORT).ok()?;
        self.admin = admin;
        if !self.admin_get("/ready").is_ok_and(|r| r.status == 200) {
            return None;
        }
        Some(docker::published(&id, ENVOY_PORT).map(|listener| self.listener = listener))
    }

    /// The container's id, once `docker run` has written it.
    pub fn container_id(&self) -> Option<String> {
        let text = fs::read_to_string(self.cidfile.as_ref()?).ok()?;
        let id = text.trim();
        (!id.is_empty()).then(|| id.to_string())
    }

    fn find_listener(&self) -> Result<SocketAddr, String> {
        let listeners = self.admin_get("/listeners?format=json")?.json();
        let address = listeners["listener_statuses"]
            .as_array()
            .and_then(|all| all.iter().find(|l| l["name"] == "ingress"))
            .map(|l| &l["local_address"]["socket_address"])
            .ok_or_else(|| format!("no ingress listener in {listeners}"))?;
        let port = address["port_value"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(0);
        Ok(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The ingress listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.listener
    }

    pub fn send(&self, request: &Request) -> Response {
        match request.send(self.listener) {
            Ok(response) => response,
            Err(e) => panic!(
                "request {} {} failed: {e}\n--- envoy log ---\n{}",
                request.method,
                request.target,
                self.log()
            ),
        }
    }

    pub fn admin_get(&self, path: &str) -> Result<Response, String> {
        Request::get(path).send(self.admin)
    }

    /// A counter or gauge from `/stats`, `None` when Envoy has no such stat.
    pub fn stat(&self, name: &str) -> Option<u64> {
        let stats = self.admin_get("/stats").ok()?.text();
        stats.lines().find_map(|line| {
            let (key, value) = line.split_once(": ")?;
            (key == name).then(|| value.trim().parse().ok()).flatten()
        })
    }

    /// Sum of the stats whose names pass `wanted`.
    pub fn stat_where(&self, wanted: impl Fn(&str) -> bool) -> u64 {
        let stats = self.admin_get("/stats").map(|r| r.text()).unwrap_or_default();
        stats
            .lines()
            .filter_map(|line| line.split_once(": "))
            .filter(|(key, _)| wanted(key))
            .filter_map(|(_, value)| value.trim().parse::<u64>().ok())
            .sum()
    }

    /// Envoy's output (in container modes, what `docker run` relayed).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("envoy.log")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- envoy log ({}) ---\n{}", self.dir.display(), self.log());
        }
        if let Some(id) = self.container_id() {
            let _ = Command::new("docker").args(["rm", "-f", &id]).output();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Where Envoy runs.
enum Placement {
    Host,
    /// A container on a test's network, ports published on 127.0.0.1.
    Network {
        image: String,
        network: String,
        /// Host ports (listener, admin); `None`: free ones.
        ports: Option<(u16, u16)>,
    },
}

/// The command that runs Envoy: the pinned binary, or `docker run` with
/// Envoy as the entrypoint, the temp dir mounted and the wasm folder mounted
/// read-only at the same paths (so the bootstrap's paths hold), labelled with
/// the run id; the id `docker run` writes is what Drop removes.
fn launcher(dir: &Path, placement: &Placement, cpus: Option<&str>) -> (Command, Option<PathBuf>) {
    let (image, network, ports) = match placement {
        Placement::Host => {
            // taskset execs Envoy, so the child's PID is Envoy's.
            return match cpus {
                Some(cpus) => {
                    let mut command = Command::new("taskset");
                    command.args(["-c", cpus]).arg(paths::envoy_binary());
                    (command, None)
                }
                None => (Command::new(paths::envoy_binary()), None),
            };
        }
        Placement::Network { image, network, ports } => (image, network, *ports),
    };
    let cidfile = dir.join("container.id");
    let wasm = paths::wasm_dir();
    let root = paths::repo_root();
    let mut command = Command::new("docker");
    command
        .args(["run", "--pull", "never", "--name", &docker::unique_name("envoy")])
        .args(docker::label_args())
        .arg("--cidfile")
        .arg(&cidfile);
    command.args(["--network", network, "--network-alias", "envoy"]);
    let (listener, admin) = ports.map_or((String::new(), String::new()), |(l, a)| (l.to_string(), a.to_string()));
    command.args(["-p", &format!("127.0.0.1:{listener}:{ENVOY_PORT}")]);
    command.args(["-p", &format!("127.0.0.1:{admin}:{ENVOY_ADMIN_PORT}")]);
    if let Some(cpus) = cpus {
        command.args(["--cpuset-cpus", cpus]);
    }
    command
        .arg("-v")
        .arg(format!("{0}:{0}", dir.display()))
        .arg("-v")
        .arg(format!("{0}:{0}:ro", wasm.display()))
        // Relative wasm paths (the demo's bootstrap) resolve from the repo root.
        .arg("-w")
        .arg(&root)
        .args(["--entrypoint", "/usr/local/bin/envoy"])
        .arg(image);
    (command, Some(cidfile))
}

fn read_addr(path: &Path) -> Option<SocketAddr> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}
