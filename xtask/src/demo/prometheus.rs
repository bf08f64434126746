//! The demo's Prometheus, when Debian's is installed (`cargo xtask setup`
//! installs it): it scrapes the demo Envoy's admin every second with the
//! alert rules loaded, and the demo prints its URL and three queries to
//! try; `--check` asks them once the examples ran.

use std::net::SocketAddr;
use std::path::Path;
use tollgate_integration::prometheus::{Prometheus, PROMETHEUS};

pub const DEMO_PROMETHEUS_PORT: u16 = 9090;

/// (question, PromQL): what the examples just did, as Prometheus saw it.
pub const QUERIES: [(&str, &str); 3] = [
    (
        "requests refused, per stage and reason",
        "sum by (stage, reason) (tollgate:denied:rate5m) > 0",
    ),
    (
        "tokens refused, per reason",
        "sum by (reason) (tollgate_jwt_denied) > 0",
    ),
    (
        "requests counted by each limit",
        "sum by (limit) (tollgate_ratelimit_limit_allowed + tollgate_ratelimit_limit_limited) > 0",
    ),
];

/// Prometheus on the demo's port (a free one for `--check`), or `None`
/// when it is not installed.
pub fn start(admin: SocketAddr, check: bool) -> Result<Option<Prometheus>, String> {
    if !Path::new(PROMETHEUS).exists() {
        println!("Prometheus: not installed ({PROMETHEUS}; cargo xtask setup installs it)");
        return Ok(None);
    }
    let listen: Option<SocketAddr> = if check {
        None
    } else {
        Some(SocketAddr::from(([127, 0, 0, 1], DEMO_PROMETHEUS_PORT)))
    };
    let rules = crate::util::root().join("prometheus/alerts.yaml");
    let prometheus = Prometheus::start(&[(admin, "demo")], &[rules.as_path()], "1s", listen)
        .map_err(|e| format!("{e} (is a demo already running?)"))?;
    // Scraped once before the examples, so that rates see them.
    prometheus
        .wait_for_data("up == 1")
        .map_err(|e| format!("Prometheus never scraped Envoy: {e}"))?;
    Ok(Some(prometheus))
}

/// The URL, the queries to try and the dashboard to import.
pub fn print(prometheus: &Prometheus) {
    println!(
        "# Prometheus scrapes Envoy every second, alert rules loaded: http://{}",
        prometheus.addr
    );
    for (question, promql) in QUERIES {
        println!("#   {question}:\n#     {promql}");
    }
    println!(
        "#   alerts: http://{}/alerts; dashboard to import into Grafana: grafana/tollgate.json",
        prometheus.addr
    );
}

/// Every query answers data for the examples' traffic.
pub fn check(prometheus: &Prometheus) -> Result<String, String> {
    for (question, promql) in QUERIES {
        prometheus
            .wait_for_data(promql)
            .map_err(|e| format!("{question}: {e}"))?;
    }
    Ok(format!("{} queries answered", QUERIES.len()))
}
