//! A real Prometheus (Debian's, installed by `cargo xtask setup`) scrapes a
//! real Envoy running the fused filter: the counters reach it with the names
//! and labels the README lists, and the values the traffic made. Native
//! fused run only: names and labels do not depend on the delivery.

#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::require_artefacts;
use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tollgate_integration::{docker, paths, Bootstrap, Delivery, Echo, Envoy, Filter, Request};

const PROMETHEUS: &str = "/usr/bin/prometheus";
/// Scrapes every second; a value shows within a few scrapes.
const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(250);

/// Limit and tenant names with the '-' and '.' the policy allows.
const LIMIT: &str = "api.v2-per-ip";
const SHADOW_LIMIT: &str = "shadow.lim";

fn policy() -> Value {
    json!({
        "version": 1,
        "defaults": {"jwt": {"requirement": "none"}, "tenant": {"required": false}},
        "routes": [
            {"name": "jwt-route.v1", "match": {"prefix": "/jwt"}, "jwt": {"requirement": "required"}},
            {"name": "tenant-route", "match": {"prefix": "/tenant"}, "tenant": {"required": true}},
            {"name": "shadow.route", "match": {"prefix": "/shadow"}, "tenant": {"required": true, "mode": "shadow"}},
            {"name": "limited", "match": {"prefix": "/limited"}, "limits": [
                {"name": LIMIT, "key": ["client_ip"], "requests": 1, "period": "minute"}
            ]},
            {"name": "shadow-limited", "match": {"prefix": "/slimit"}, "limits": [
                {"name": SHADOW_LIMIT, "key": ["client_ip"], "requests": 1, "period": "minute", "mode": "shadow"}
            ]},
        ],
        "tenants": [{"id": "ACME-1", "tier": "standard"}],
        "tenant": {"sources": ["header"], "header": "x-tenant-id"},
        "jwt": {"providers": [{
            "name": "p", "issuer": "iss",
            "hmac_secret_base64": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0",
        }]},
        "audit": {"sink": {"format": "log"}},
    })
}

/// Prometheus on a free port, scraping Envoy's admin; stopped by PID.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("tollgate-prometheus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\n\
             scrape_configs:\n\
             - job_name: envoy\n  metrics_path: /stats/prometheus\n  static_configs: [{{targets: ['{target}']}}]\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let prometheus = Prometheus { child, addr, dir };
        let ready = poll(|| Request::get("/-/ready").send(addr).ok().filter(|r| r.status == 200));
        assert!(ready.is_some(), "Prometheus not ready: {}", prometheus.log());
        prometheus
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// The instant vector a PromQL query answers.
    fn query(&self, promql: &str) -> Vec<Value> {
        let target = format!("/api/v1/query?query={}", encode(promql));
        let Ok(response) = Request::get(&target).send(self.addr) else {
            return Vec::new();
        };
        let json = response.json();
        assert_eq!(json["status"], "success", "{promql}: {json}");
        json["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The one series `promql` selects, once it reads `want`.
    fn wait_for(&self, promql: &str, want: u64) {
        let mut last = Vec::new();
        let seen = poll(|| {
            last = self.query(promql);
            match last.as_slice() {
                [one] if one["value"][1].as_str() == Some(want.to_string().as_str()) => Some(()),
                _ => None,
            }
        });
        assert!(
            seen.is_some(),
            "{promql}: want one series at {want}, Prometheus has {last:?}"
        );
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

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn start() -> (Echo, Envoy) {
    require_artefacts();
    let echo = Echo::start();
    let mut bootstrap = Bootstrap::new(echo.port());
    for root_id in [
        "tollgate.jwt",
        "tollgate.tenant",
        "tollgate.ratelimit",
        "tollgate.audit",
    ] {
        bootstrap = bootstrap.filter(Filter::tollgate(root_id, &paths::module_wasm(), &policy()));
    }
    // As `tollgate envoy` renders them for a policy with limits and audit.
    bootstrap.limit_tag = true;
    bootstrap.cause_tag = true;
    let envoy = Envoy::start(&bootstrap.to_json());
    (echo, envoy)
}

#[test]
fn prometheus_reads_every_stage_with_its_labels_and_values() {
    if Delivery::from_env() != Delivery::Fused || docker::container_mode().is_some() {
        println!("runs in the native fused run only");
        return;
    }
    if let Err(e) = paths::require(std::path::Path::new(PROMETHEUS), "cargo xtask setup") {
        panic!("{e}");
    }
    let (_echo, envoy) = start();
    let send = |path: &str, headers: &[(&str, &str)]| {
        let request = headers.iter().fold(Request::get(path), |r, (n, v)| r.header(n, v));
        envoy.send(&request).status
    };
    assert_eq!(send("/jwt", &[]), 401);
    assert_eq!(send("/jwt", &[("authorization", "Bearer x.y.z")]), 401);
    assert_eq!(send("/tenant", &[]), 400);
    assert_eq!(send("/tenant", &[("x-tenant-id", "NOPE")]), 403);
    assert_eq!(send("/tenant", &[("x-tenant-id", "ACME-1")]), 200);
    assert_eq!(send("/shadow", &[]), 200);
    assert_eq!(send("/limited", &[]), 200);
    assert_eq!(send("/limited", &[]), 429);
    assert_eq!(send("/slimit", &[]), 200);
    assert_eq!(send("/slimit", &[]), 200);
    let prometheus = Prometheus::start(envoy.admin_addr());
    let expected: [(&str, u64); 16] = [
        (r#"tollgate_jwt_denied{reason="token_missing"}"#, 1),
        (r#"tollgate_jwt_denied{reason="token_malformed"}"#, 1),
        ("tollgate_jwt_allowed_without_token", 8),
        (r#"tollgate_tenant_denied{reason="tenant_required"}"#, 1),
        (r#"tollgate_tenant_denied{reason="tenant_unknown"}"#, 1),
        (r#"tollgate_tenant_shadow_denied{reason="tenant_required"}"#, 1),
        ("tollgate_tenant_allowed", 1),
        (r#"tollgate_ratelimit_denied{reason="rate_limited"}"#, 1),
        (r#"tollgate_ratelimit_shadow_denied{reason="rate_limited"}"#, 1),
        (r#"tollgate_ratelimit_limit_limited{limit="api.v2-per-ip"}"#, 1),
        (r#"tollgate_ratelimit_limit_allowed{limit="api.v2-per-ip"}"#, 1),
        (r#"tollgate_ratelimit_limit_shadow_limited{limit="shadow.lim"}"#, 1),
        (r#"tollgate_ratelimit_limit_allowed{limit="shadow.lim"}"#, 1),
        ("tollgate_audit_events_emitted", 10),
        ("tollgate_audit_events_sent", 10),
        (r#"tollgate_audit_events_dropped{cause="buffer_full"}"#, 0),
    ];
    for (promql, want) in expected {
        prometheus.wait_for(promql, want);
    }
    // Prometheus knows them as counters (Envoy writes `# TYPE ... counter`),
    // without a `_total` suffix, and no label leaks a name's variable part.
    let metadata = Request::get("/api/v1/metadata?metric=tollgate_jwt_denied")
        .send(prometheus.addr)
        .unwrap();
    assert_eq!(
        metadata.json()["data"]["tollgate_jwt_denied"][0]["type"],
        "counter",
        "{}",
        metadata.text()
    );
    assert!(prometheus.query(r#"{__name__=~"tollgate_.*_total"}"#).is_empty());
    assert!(prometheus
        .query(r#"{__name__=~"tollgate_.*(rate_limited|token_missing|api_v2).*"}"#)
        .is_empty());
}
