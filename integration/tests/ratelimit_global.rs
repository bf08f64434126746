//! Global limits: Envoys sharing one limit through a real rate limit
//! service counting in Redis (`tollgate_ratelimit_party`), and
//! `failure_mode` when the service is slow or gone, with timings. In
//! container mode the Envoys, Redis and the service are containers on the
//! test's network.

#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::ratelimit::RateLimitRig;
use common::require_artefacts;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tollgate_integration::docker::{self, Network};
use tollgate_integration::http::KeepAlive;
use tollgate_integration::{paths, Bootstrap, Echo, Envoy, Filter, Request};

const TIMEOUT_MS: u64 = 100;
/// What a request may take beyond the service's timeout on this machine.
const MARGIN: Duration = Duration::from_millis(400);

fn policy(requests: u64, failure_mode: &str) -> Value {
    json!({
        "version": 1,
        "tenants": [{"id": "ACME"}, {"id": "GLOBEX"}],
        "tenant": {"sources": ["header"]},
        "routes": [{"name": "trino", "match": {"prefix": "/api/trino"}, "limits": [
            {"name": "mesh-per-tenant", "key": ["tenant"], "requests": requests, "period": "hour", "scope": "global"}]}],
        "ratelimit": {"service": {"cluster": "ratelimit", "domain": "tollgate-test", "timeout_ms": TIMEOUT_MS,
                                  "failure_mode": failure_mode}},
    })
}

/// The test's network (container mode) and rig: declared in this order,
/// dropped rig first.
struct Setup {
    network: Option<Network>,
    rig: RateLimitRig,
    echo: Echo,
}

impl Setup {
    fn new() -> Setup {
        require_artefacts();
        let network = docker::container_mode().map(|_| Network::create().unwrap());
        let rig = RateLimitRig::start(network.as_ref());
        let echo = Echo::start_on(&format!("{}:0", docker::party_host())).unwrap();
        Setup { network, rig, echo }
    }

    /// An Envoy with the tenant and rate limit filters, its `ratelimit`
    /// cluster at the service.
    fn envoy(&self, policy: &Value) -> Envoy {
        let mut bootstrap = Bootstrap::new(self.echo.port())
            .filter(Filter::tollgate("tollgate.tenant", &paths::module_wasm(), policy))
            .filter(Filter::tollgate("tollgate.ratelimit", &paths::module_wasm(), policy))
            .cluster("ratelimit", self.rig.envoy_port());
        bootstrap.http2_clusters = vec!["ratelimit".into()];
        bootstrap.limit_tag = true;
        let mut json = bootstrap.to_json();
        match &self.network {
            None => Envoy::start(&json),
            Some(network) => {
                docker::bridged(&mut json, &docker::party_host()).unwrap();
                let party = (
                    "ratelimit",
                    self.rig.envoy_host(),
                    tollgate_integration::docker::RATELIMIT_PORT,
                );
                docker::on_network(&mut json, &[party]).unwrap();
                Envoy::start_on(&json, network)
            }
        }
    }
}

fn tenant(id: &str) -> Request {
    Request::get("/api/trino/q").header("x-tenant-id", id)
}

fn burst(envoys: &[&Envoy], threads: usize, per_thread: usize, request: &Request) -> Vec<u16> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let addr = envoys[t % envoys.len()].addr();
                scope.spawn(move || {
                    let mut conn = KeepAlive::new(addr);
                    (0..per_thread)
                        .map(|_| conn.send(request).map_or(0, |r| r.status))
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn two_envoys_sharing_a_global_limit_admit_exactly_the_limit() {
    let setup = Setup::new();
    let policy = policy(30, "deny");
    let (a, b) = (setup.envoy(&policy), setup.envoy(&policy));
    let started = Instant::now();
    let statuses = burst(&[&a, &b], 8, 12, &tenant("ACME"));
    println!("96 requests through two Envoys in {:?}", started.elapsed());
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(admitted, 30, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 66, "{statuses:?}");
    for (name, envoy) in [("a", &a), ("b", &b)] {
        let stat = |s: &str| envoy.stat(&format!("wasmcustom.tollgate.ratelimit.{s}")).unwrap_or(0);
        assert_eq!(stat("service_error") + stat("service_timeout"), 0, "envoy {name}");
        assert!(
            stat("limit.mesh-per-tenant.allowed") > 0,
            "both Envoys admitted some: {name}"
        );
    }
    // Another tenant has its own count; a refusal names the limit.
    assert_eq!(a.send(&tenant("GLOBEX")).status, 200);
    let refused = b.send(&tenant("ACME"));
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json()["limit"], "mesh-per-tenant");
    assert!(refused.header("retry-after").is_some());
    assert!(
        refused.header("ratelimit").is_some_and(|v| v.contains(";r=0;")),
        "{:?}",
        refused.headers
    );
}

/// The slowest of a few requests, and their statuses.
fn timed(envoy: &Envoy, n: usize) -> (Duration, Vec<u16>) {
    let mut slowest = Duration::ZERO;
    let statuses = (0..n)
        .map(|_| {
            let started = Instant::now();
            let status = envoy.send(&tenant("ACME")).status;
            slowest = slowest.max(started.elapsed());
            status
        })
        .collect();
    (slowest, statuses)
}

#[test]
fn a_slow_or_stopped_service_is_decided_by_failure_mode_within_the_timeout() {
    let mut setup = Setup::new();
    let allow = setup.envoy(&policy(1000, "allow"));
    let deny = setup.envoy(&policy(1000, "deny"));
    let (fast, statuses) = timed(&allow, 3);
    assert_eq!(statuses, [200, 200, 200]);
    println!("service answering: slowest of 3 requests {fast:?}");

    // Slower than the timeout (in container mode: paused).
    setup.rig.slow_service(Duration::from_millis(TIMEOUT_MS * 5));
    let bound = Duration::from_millis(TIMEOUT_MS) + MARGIN;
    for (name, envoy, want) in [("allow", &allow, 200), ("deny", &deny, 500)] {
        let (slowest, statuses) = timed(envoy, 3);
        println!("service slow, failure_mode {name}: {statuses:?}, slowest {slowest:?} (timeout {TIMEOUT_MS} ms)");
        assert_eq!(statuses, [want; 3], "{name}");
        assert!(slowest < bound, "{name}: {slowest:?} is over {bound:?}");
    }
    let stat = |envoy: &Envoy, s: &str| envoy.stat(&format!("wasmcustom.tollgate.ratelimit.{s}")).unwrap_or(0);
    assert_eq!(stat(&allow, "service_timeout"), 3);
    assert_eq!(stat(&allow, "failure_mode_allowed"), 3);
    assert_eq!(stat(&deny, "failure_mode_denied"), 3);
    let body = deny.send(&tenant("ACME")).json();
    assert_eq!(body["reason"], "rate_limit_service_failed");
    setup.rig.slow_service(Duration::ZERO);

    // Gone.
    setup.rig.kill_service();
    for (name, envoy, want) in [("allow", &allow, 200), ("deny", &deny, 500)] {
        let (slowest, statuses) = timed(envoy, 3);
        println!("service stopped, failure_mode {name}: {statuses:?}, slowest {slowest:?}");
        assert_eq!(statuses, [want; 3], "{name}");
        assert!(slowest < bound, "{name}: {slowest:?}");
    }
    // Refused connections natively; in containers the removed service's
    // name stops resolving, which may take the timeout.
    let failed = stat(&allow, "service_error") + stat(&allow, "service_timeout");
    assert_eq!(failed, 6, "3 slow, then 3 stopped");
    assert_eq!(stat(&allow, "failure_mode_allowed"), 6);
}
