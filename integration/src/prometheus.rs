//! Debian's Prometheus (`cargo xtask setup` installs it) as a party: it
//! scrapes Envoys' admin `/stats/prometheus`, each with the `namespace`
//! label Istio's scrape configuration sets, evaluates rule files, and
//! answers PromQL over its HTTP API. Stopped by PID when dropped.

use crate::http::Request;
use serde_json::Value;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub const PROMETHEUS: &str = "/usr/bin/prometheus";

/// How long a query's data or readiness is waited for (bounded polls).
pub const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(250);

/// A rule as Prometheus loaded it.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub query: String,
    /// `recording` or `alerting`.
    pub kind: String,
    pub health: String,
    pub last_error: String,
}

pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Prometheus {
    /// Scrapes each `(admin address, namespace)` every `interval`, and
    /// evaluates `rules` as often, listening on `listen` (`None`: a free
    /// port).
    pub fn start(
        targets: &[(SocketAddr, &str)],
        rules: &[&Path],
        interval: &str,
        listen: Option<SocketAddr>,
    ) -> Result<Prometheus, String> {
        let dir = std::env::temp_dir().join(format!(
            "tollgate-prometheus-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let scrapes: String = targets
            .iter()
            .map(|(target, namespace)| {
                format!("    - targets: ['{target}']\n      labels: {{namespace: {namespace}}}\n")
            })
            .collect();
        let rule_files: Vec<String> = rules.iter().map(|r| format!("'{}'", r.display())).collect();
        let config = format!(
            "global: {{scrape_interval: {interval}, scrape_timeout: {interval}, evaluation_interval: {interval}}}\n\
             rule_files: [{}]\n\
             scrape_configs:\n\
             - job_name: envoy\n  metrics_path: /stats/prometheus\n  static_configs:\n{scrapes}",
            rule_files.join(", ")
        );
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config).map_err(|e| format!("{}: {e}", file.display()))?;
        let addr = match listen {
            Some(addr) => addr,
            None => TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("a free port: {e}"))?,
        };
        let log_path = dir.join("prometheus.log");
        let log = std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{PROMETHEUS}: {e} (cargo xtask setup installs it)"))?;
        let prometheus = Prometheus { child, addr, dir };
        let ready = poll(|| Request::get("/-/ready").send(addr).ok().filter(|r| r.status == 200));
        match ready {
            Some(_) => Ok(prometheus),
            None => Err(format!("Prometheus not ready on {addr}: {}", prometheus.log())),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// The instant vector a PromQL query answers (empty when Prometheus
    /// does not answer; a query it refuses fails the caller).
    pub fn query(&self, promql: &str) -> Vec<Value> {
        let target = format!("/api/v1/query?query={}", encode(promql));
        let Ok(response) = Request::get(&target).send(self.addr) else {
            return Vec::new();
        };
        let json = response.json();
        assert_eq!(json["status"], "success", "{promql}: {json}");
        json["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Whether Prometheus evaluates `promql` (whatever it answers).
    pub fn query_ok(&self, promql: &str) -> bool {
        let target = format!("/api/v1/query?query={}", encode(promql));
        Request::get(&target)
            .send(self.addr)
            .is_ok_and(|r| r.json()["status"] == "success")
    }

    /// The series `promql` answers, once there is at least one (bounded).
    pub fn wait_for_data(&self, promql: &str) -> Result<Vec<Value>, String> {
        poll(|| Some(self.query(promql)).filter(|r| !r.is_empty())).ok_or_else(|| format!("no data for {promql}"))
    }

    /// The rules Prometheus loaded, every group's.
    pub fn rules(&self) -> Result<Vec<Rule>, String> {
        let json = Request::get("/api/v1/rules").send(self.addr)?.json();
        let groups = json["data"]["groups"].as_array().cloned().unwrap_or_default();
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        Ok(groups
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .map(|r| Rule {
                name: text(&r["name"]),
                query: text(&r["query"]),
                kind: text(&r["type"]),
                health: text(&r["health"]),
                last_error: text(&r["lastError"]),
            })
            .collect())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Calls `f` until it answers, for at most `WAIT`.
fn poll<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if let Some(value) = f() {
            return Some(value);
        }
        std::thread::sleep(POLL);
    }
    None
}

/// Percent-encodes a query parameter's value.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
