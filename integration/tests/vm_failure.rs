//! What Envoy 1.40 does when a filter's VM traps, under each
//! `envoy.extensions.wasm.v3.PluginConfig.failure_policy`. The filter is
//! the test-only `trap_on_marker.wasm` (never `tollgate.wasm`): a request
//! with `x-test-trap` makes its VM execute `unreachable`; every other
//! request passes with `x-test-vm-requests: <n>`, the count of requests
//! that VM passed, so a fresh VM shows as 1.
//!
//! One worker (`--concurrency 1`): "the next request" then reaches the VM
//! that trapped, not the other worker's.
//!
//! `#[ignore]`: run once, by the step of `cargo xtask ci` that runs these
//! (`--ignored`), not again in each delivery mode of the suite.

#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{require_artefacts, upstream_values};
use serde_json::json;
use std::time::{Duration, Instant};
use tollgate_integration::{paths, Bootstrap, Delivery, Echo, Envoy, Filter, Launch, Request, Response};

/// Unmarked requests sent right after the trap.
const AFTER: usize = 5;
/// How long a reload may take to bring a VM back.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);
const PACE: Duration = Duration::from_millis(50);

fn start(failure_policy: Option<&str>, fail_open: Option<bool>) -> (Echo, Envoy) {
    require_artefacts();
    let trap = paths::trap_wasm();
    paths::require(&trap, "cargo xtask build").unwrap();
    let echo = Echo::start();
    let mut bootstrap = Bootstrap::new(echo.port());
    bootstrap.delivery = Delivery::Split;
    bootstrap = bootstrap.filter(Filter::test_only("trap", &trap));
    let mut config = bootstrap.to_json();
    let plugin = &mut config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["http_filters"][0]["typed_config"]["config"];
    assert_eq!(plugin["name"], "trap");
    if let Some(policy) = failure_policy {
        plugin["failure_policy"] = json!(policy);
    }
    if let Some(open) = fail_open {
        plugin["fail_open"] = json!(open);
    }
    let launch = Launch {
        concurrency: "1".into(),
        ..Launch::default()
    };
    let envoy = match Envoy::try_start_with(&config, &launch) {
        Ok(envoy) => envoy,
        Err(f) => panic!("Envoy did not start: {}\n{}", f.reason, f.log),
    };
    (echo, envoy)
}

fn plain() -> Request {
    Request::get("/x")
}

fn marked() -> Request {
    Request::get("/x").header("x-test-trap", "1")
}

/// `Some(n)`: the filter passed the request, its VM's n-th; `None`: the
/// request reached the app without the filter running.
fn vm_count(response: &Response) -> Option<u32> {
    upstream_values(response, "x-test-vm-requests")
        .first()
        .and_then(|v| v.parse().ok())
}

/// Envoy's wasm stats, non-zero ones, by name.
fn wasm_stats(envoy: &Envoy) -> Vec<(String, u64)> {
    let text = envoy.admin_get("/stats").map(|r| r.text()).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| k.starts_with("wasm."))
        .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse::<u64>().ok()?)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// A wasm stat, 0 when Envoy has not made it.
fn stat(envoy: &Envoy, name: &str) -> u64 {
    envoy.stat(name).unwrap_or(0)
}

const CREATED: &str = "wasm.envoy.wasm.runtime.v8.created";
const RELOAD_SUCCESS: &str = "wasm.trap.vm_reload_success";
const RELOAD_BACKOFF: &str = "wasm.trap.vm_reload_backoff";
const RELOAD_FAILURE: &str = "wasm.trap.vm_reload_failure";
const TRAP_LOG: &str = "Function: proxy_on_request_headers failed: Uncaught RuntimeError: unreachable";

/// What one policy did: the trapping request, the ones right after, and
/// the VMs Envoy had created before the trap.
struct Seen {
    created: u64,
    trapped: Response,
    after: Vec<Response>,
}

fn trap_once(envoy: &Envoy) -> Seen {
    let first = envoy.send(&plain());
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(vm_count(&first), Some(1), "{}", first.text());
    let created = stat(envoy, CREATED);
    let trapped = envoy.send(&marked());
    let after = (0..AFTER).map(|_| envoy.send(&plain())).collect();
    assert!(envoy.log().contains(TRAP_LOG), "{}", envoy.log());
    Seen {
        created,
        trapped,
        after,
    }
}

fn statuses(responses: &[Response]) -> Vec<u16> {
    responses.iter().map(|r| r.status).collect()
}

fn report(name: &str, envoy: &Envoy, seen: &Seen) {
    println!(
        "{name}: trapping request {} {:?}, next {AFTER}: {:?} (filter ran: {:?}); stats {:?}",
        seen.trapped.status,
        seen.trapped.text(),
        statuses(&seen.after),
        seen.after.iter().map(|r| vm_count(r).is_some()).collect::<Vec<_>>(),
        wasm_stats(envoy),
    );
}

/// A later request, past the default reload backoff (1 s): no VM came back.
fn later(envoy: &Envoy) -> Response {
    std::thread::sleep(Duration::from_millis(1500));
    envoy.send(&plain())
}

/// No reload was tried and no VM was created after the trap.
fn assert_no_reload(envoy: &Envoy, seen: &Seen) {
    for name in [RELOAD_SUCCESS, RELOAD_BACKOFF, RELOAD_FAILURE] {
        assert_eq!(stat(envoy, name), 0, "{name}");
    }
    assert_eq!(stat(envoy, CREATED), seen.created);
}

#[test]
#[ignore = "run once by cargo xtask ci (--ignored), not in every delivery mode"]
fn fail_closed_refuses_the_trapping_request_and_every_later_one() {
    let (_echo, envoy) = start(Some("FAIL_CLOSED"), None);
    let seen = trap_once(&envoy);
    report("FAIL_CLOSED", &envoy, &seen);
    assert_eq!(seen.trapped.status, 503, "{}", seen.trapped.text());
    assert_eq!(statuses(&seen.after), [503; AFTER]);
    let later = later(&envoy);
    assert_eq!(later.status, 503, "{}", later.text());
    assert_no_reload(&envoy, &seen);
}

#[test]
#[ignore = "run once by cargo xtask ci (--ignored), not in every delivery mode"]
fn fail_reload_refuses_the_trapping_request_and_a_new_vm_serves_after_the_backoff() {
    let (_echo, envoy) = start(Some("FAIL_RELOAD"), None);
    let seen = trap_once(&envoy);
    report("FAIL_RELOAD", &envoy, &seen);
    assert_eq!(seen.trapped.status, 503, "{}", seen.trapped.text());
    // Refused while the reload backs off, then a fresh VM: bounded polling.
    let start = Instant::now();
    let mut refused = seen.after.iter().filter(|r| r.status == 503).count();
    let mut served = seen.after.iter().find(|r| r.status == 200).cloned();
    while served.is_none() {
        assert!(
            start.elapsed() < RELOAD_TIMEOUT,
            "no VM came back in {RELOAD_TIMEOUT:?}"
        );
        std::thread::sleep(PACE);
        let response = envoy.send(&plain());
        match response.status {
            200 => served = Some(response),
            503 => refused += 1,
            other => panic!("status {other}: {}", response.text()),
        }
    }
    let served = served.unwrap();
    println!(
        "FAIL_RELOAD: served again {} ms after the last of the {AFTER}, {refused} refused after the trap; stats {:?}",
        start.elapsed().as_millis(),
        wasm_stats(&envoy)
    );
    // The request that came through ran the filter, on a fresh VM.
    assert_eq!(vm_count(&served), Some(1), "{}", served.text());
    assert_eq!(stat(&envoy, RELOAD_SUCCESS), 1);
    assert_eq!(stat(&envoy, RELOAD_FAILURE), 0);
    // Every refusal after the trap was a request during the backoff.
    assert_eq!(stat(&envoy, RELOAD_BACKOFF), refused as u64);
    assert_eq!(stat(&envoy, CREATED), seen.created + 1);
    let next = envoy.send(&plain());
    assert_eq!((next.status, vm_count(&next)), (200, Some(2)), "{}", next.text());
}

#[test]
#[ignore = "run once by cargo xtask ci (--ignored), not in every delivery mode"]
fn fail_open_refuses_the_trapping_request_and_passes_later_ones_without_the_filter() {
    let (_echo, envoy) = start(Some("FAIL_OPEN"), None);
    let seen = trap_once(&envoy);
    report("FAIL_OPEN", &envoy, &seen);
    assert_eq!(seen.trapped.status, 503, "{}", seen.trapped.text());
    assert_eq!(statuses(&seen.after), [200; AFTER]);
    assert!(seen.after.iter().all(|r| vm_count(r).is_none()), "the filter ran");
    let later = later(&envoy);
    assert_eq!((later.status, vm_count(&later)), (200, None), "{}", later.text());
    assert_no_reload(&envoy, &seen);
}

#[test]
#[ignore = "run once by cargo xtask ci (--ignored), not in every delivery mode"]
fn unset_failure_policy_fails_closed_and_the_old_fail_open_flag_passes_even_the_trapping_request() {
    let (_echo, envoy) = start(None, None);
    let seen = trap_once(&envoy);
    report("unset", &envoy, &seen);
    assert_eq!(seen.trapped.status, 503, "{}", seen.trapped.text());
    assert_eq!(statuses(&seen.after), [503; AFTER]);
    assert_eq!(later(&envoy).status, 503);
    assert_no_reload(&envoy, &seen);

    let (_echo, envoy) = start(None, Some(true));
    let seen = trap_once(&envoy);
    report("fail_open: true", &envoy, &seen);
    assert_eq!(
        (seen.trapped.status, vm_count(&seen.trapped)),
        (200, None),
        "{}",
        seen.trapped.text()
    );
    assert_eq!(statuses(&seen.after), [200; AFTER]);
    assert!(seen.after.iter().all(|r| vm_count(r).is_none()), "the filter ran");
    assert_no_reload(&envoy, &seen);
}
