//! Policy updates under load in a real Envoy 1.40 with two workers, as a
//! control plane pushes a changed plugin configuration: the listener comes
//! by LDS from a watched file (`path_config_source` + `watched_directory`),
//! and the test renames a new version into place while client threads send
//! requests. LDS replaces the listener's filter chain as one unit (an
//! in-place filter chain update: new connections get the new chain, old
//! ones drain), so the two filters of the chain can never run different
//! versions. The last test delivers the fused filter's configuration by
//! ECDS, as Istio delivers a WasmPlugin.
//!
//! The chain is two tenant filters with one tenant whose tier differs per
//! version; each filter writes the tier to its own header, so an answer
//! shows which version each filter ran: `old/old`, `new/new`, or a mix.
//!
//! `#[ignore]`: run once, by the step of `cargo xtask ci` that runs these
//! (`--ignored`), not again in each delivery mode of the suite.

#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::require_artefacts;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tollgate_integration::{paths, xds, Bootstrap, Delivery, Echo, Envoy, Filter, Request, WatchedFile};

/// Client threads sending at once (each one request per connection).
const CLIENTS: usize = 4;
/// Bound on each client's requests, whatever the timings.
const MAX_PER_CLIENT: usize = 10_000;
/// Traffic before the swap, and after it has been applied.
const BEFORE: Duration = Duration::from_millis(1500);
const AFTER: Duration = Duration::from_millis(2000);
/// How long Envoy may take to take up (or refuse) a new file.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(20);

/// The headers the two filters of the LDS chain write.
const LDS_HEADERS: &[&str] = &["x-tier-a", "x-tier-b"];

const OLD: &str = "old";
const NEW: &str = "new";

fn policy(tier: &str, tier_header: &str) -> Value {
    json!({
        "version": 1,
        "realm": "tollgate-test",
        "routes": [{"name": "api", "match": {"prefix": "/api"}, "tenant": {"required": true}}],
        "tenants": [{"id": "STD-001", "tier": tier}],
        "tenant": {"sources": ["header"], "tier_header": tier_header},
    })
}

/// The listener for one policy version: two tenant filters, each writing
/// the tier to its own header.
fn version(echo: &Echo, lds: &WatchedFile, tier_a: Value, tier_b: Value) -> Bootstrap {
    let mut bootstrap = Bootstrap::new(echo.port());
    bootstrap.delivery = Delivery::Split;
    bootstrap.lds_path = Some(lds.path().display().to_string());
    for (name, policy) in [("tenant-a", tier_a), ("tenant-b", tier_b)] {
        let mut filter = Filter::tollgate("tollgate.tenant", &paths::module_wasm(), &policy);
        filter.name = name.into();
        bootstrap = bootstrap.filter(filter);
    }
    bootstrap
}

fn good(echo: &Echo, lds: &WatchedFile, tier: &str) -> Bootstrap {
    version(echo, lds, policy(tier, "x-tier-a"), policy(tier, "x-tier-b"))
}

/// Envoy on the `old` version, its listener from the watched file.
fn start() -> (Echo, WatchedFile, Envoy) {
    require_artefacts();
    let echo = Echo::start();
    let lds = WatchedFile::create("lds.json", &json!({})).unwrap();
    let first = good(&echo, &lds, OLD);
    lds.replace(&first.lds_resources("1")).unwrap();
    let envoy = Envoy::start(&first.to_json());
    (echo, lds, envoy)
}

/// What one request got.
#[derive(Debug, Clone)]
struct Answer {
    /// Since the load started: when the request was sent and answered.
    sent: Duration,
    done: Duration,
    /// `Ok((status, the tier each filter set))`.
    outcome: Result<(u16, Vec<String>), String>,
}

impl Answer {
    /// A 200 on which every filter set `tier`.
    fn is(&self, tier: &str) -> bool {
        matches!(&self.outcome, Ok((200, tiers)) if tiers.iter().all(|t| t == tier))
    }
}

fn upstream_header(response: &tollgate_integration::Response, name: &str) -> String {
    common::upstream_values(response, name).join(",")
}

struct Load {
    start: Instant,
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<Vec<Answer>>>,
}

impl Load {
    /// Clients reading the tier each filter wrote to its header in `headers`.
    fn start(addr: SocketAddr, headers: &'static [&'static str]) -> Load {
        let start = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..CLIENTS)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut answers = Vec::new();
                    let request = Request::get("/api/items").header("x-tenant-id", "std-001");
                    while !stop.load(Ordering::SeqCst) && answers.len() < MAX_PER_CLIENT {
                        let sent = start.elapsed();
                        let outcome = request
                            .send(addr)
                            .map(|r| (r.status, headers.iter().map(|h| upstream_header(&r, h)).collect()));
                        answers.push(Answer {
                            sent,
                            done: start.elapsed(),
                            outcome,
                        });
                    }
                    answers
                })
            })
            .collect();
        Load { start, stop, clients }
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn finish(self) -> Vec<Answer> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all: Vec<Answer> = self.clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
        all.sort_by_key(|a| a.sent);
        all
    }
}

/// Polls a stat until it reaches `at_least`; panics with the log if not.
fn wait_stat(envoy: &Envoy, name: &str, at_least: u64) -> Instant {
    let deadline = Instant::now() + UPDATE_TIMEOUT;
    while Instant::now() < deadline {
        if envoy.stat(name).is_some_and(|v| v >= at_least) {
            return Instant::now();
        }
        std::thread::sleep(POLL);
    }
    panic!(
        "{name} did not reach {at_least} in {UPDATE_TIMEOUT:?} (now {:?})\n{}",
        envoy.stat(name),
        envoy.log()
    );
}

/// Every answer not a 200 decided by both filters on one known version.
fn failures(answers: &[Answer]) -> Vec<&Answer> {
    answers.iter().filter(|a| !(a.is(OLD) || a.is(NEW))).collect()
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[test]
#[ignore = "run once by cargo xtask ci (--ignored), not in every delivery mode"]
fn a_good_policy_takes_effect_under_load_with_no_failure_and_no_mix() {
    let (echo, lds, envoy) = start();
    let load = Load::start(envoy.addr(), LDS_HEADERS);
    std::thread::sleep(BEFORE);
    let successes = envoy.stat("listener_manager.lds.update_success").unwrap();
    let swapped = load.now();
    lds.replace(&good(&echo, &lds, NEW).lds_resources("2")).unwrap();
    let applied_at = wait_stat(&envoy, "listener_manager.lds.update_success", successes + 1);
    let applied = applied_at.duration_since(load.start);
    std::thread::sleep(AFTER);
    let answers = load.finish();

    let failed = failures(&answers);
    let old = answers.iter().filter(|a| a.is(OLD)).count();
    let new = answers.iter().filter(|a| a.is(NEW)).count();
    let first_new = answers.iter().filter(|a| a.is(NEW)).map(|a| a.done).min();
    let last_old = answers.iter().filter(|a| a.is(OLD)).map(|a| a.sent).max();
    println!(
        "{} requests by {CLIENTS} clients: {old} old, {new} new, {} failed or mixed; \
         swap written at {} ms, applied (lds.update_success) at {} ms, first new answer at {:?} ms, \
         last old request sent at {:?} ms",
        answers.len(),
        failed.len(),
        ms(swapped),
        ms(applied),
        first_new.map(ms),
        last_old.map(ms),
    );
    assert!(
        failed.is_empty(),
        "{} failed or mixed: {:?}",
        failed.len(),
        &failed[..failed.len().min(10)]
    );
    assert!(old > 0 && new > 0, "old {old}, new {new}");
    // No connection failed: the listener kept its port across the update.
    // After the first new answer, every later request got the new version.
    let first_new = first_new.unwrap();
    let late_old: Vec<&Answer> = answers.iter().filter(|a| a.sent > first_new && a.is(OLD)).collect();
    assert!(late_old.is_empty(), "old answers after the first new one: {late_old:?}");
    // The tail is all new: the last AFTER of traffic saw no old answer.
    assert!(answers.iter().rev().take(20).all(|a| a.is(NEW)));
    assert_eq!(envoy.stat("listener_manager.lds.update_rejected"), Some(0));
    assert_eq!(envoy.stat("listener_manager.listener_in_place_updated"), Some(1));
    assert_both_workers_served(&envoy);
}

/// Both workers took connections (so both switched versions).
fn assert_both_workers_served(envoy: &Envoy) {
    for worker in 0..2 {
        let suffix = format!(".worker_{worker}.downstream_cx_total");
        let served = envoy.stat_where(|name| {
            name.starts_with("listener.") && !name.starts_with("listener.admin.") && name.ends_with(&suffix)
        });
        assert!(served > 0, "worker {worker} took no connection");
    }
}

#[test]
#[ignore = "run once by cargo xtask ci (--ignored), not in every delivery mode"]
fn a_bad_policy_is_refused_under_load_the_old_one_stays_and_a_fixed_one_then_takes_effect() {
    let (echo, lds, envoy) = start();
    let load = Load::start(envoy.addr(), LDS_HEADERS);
    std::thread::sleep(BEFORE);
    let successes = envoy.stat("listener_manager.lds.update_success").unwrap();
    // The second filter's policy is refused by its on_configure; the first
    // filter's is good: the whole listener update must be refused.
    let mut bad = policy(NEW, "x-tier-b");
    bad["routes"][0]["match"]["prefix"] = json!("api");
    let bad_written = load.now();
    lds.replace(&version(&echo, &lds, policy(NEW, "x-tier-a"), bad).lds_resources("2"))
        .unwrap();
    let refused = wait_stat(&envoy, "listener_manager.lds.update_rejected", 1).duration_since(load.start);
    std::thread::sleep(AFTER);
    // A fixed version after the refused one is taken up as usual.
    let fixed_written = load.now();
    lds.replace(&good(&echo, &lds, NEW).lds_resources("3")).unwrap();
    let applied = wait_stat(&envoy, "listener_manager.lds.update_success", successes + 1).duration_since(load.start);
    std::thread::sleep(AFTER);
    let answers = load.finish();

    let failed = failures(&answers);
    let during = |from: Duration, to: Duration| answers.iter().filter(move |a| a.sent >= from && a.done <= to);
    let refused_phase = during(refused, fixed_written).count();
    let new_too_early: Vec<&Answer> = during(Duration::ZERO, fixed_written).filter(|a| a.is(NEW)).collect();
    let first_new = answers.iter().filter(|a| a.is(NEW)).map(|a| a.done).min();
    let late_old = first_new.map_or(0, |first| {
        answers.iter().filter(|a| a.sent > first && a.is(OLD)).count()
    });
    println!(
        "{} requests by {CLIENTS} clients: {} old, {} new, {} failed or mixed; bad file written at {} ms, \
         refused (lds.update_rejected) at {} ms, {refused_phase} answered while the refused version was the file; \
         fixed file written at {} ms, applied at {} ms, first new answer at {:?} ms",
        answers.len(),
        answers.iter().filter(|a| a.is(OLD)).count(),
        answers.iter().filter(|a| a.is(NEW)).count(),
        failed.len(),
        ms(bad_written),
        ms(refused),
        ms(fixed_written),
        ms(applied),
        first_new.map(ms),
    );
    assert!(
        failed.is_empty(),
        "{} failed or mixed: {:?}",
        failed.len(),
        &failed[..failed.len().min(10)]
    );
    assert!(
        new_too_early.is_empty(),
        "the refused version answered: {new_too_early:?}"
    );
    assert!(refused_phase > 0, "no traffic while the refused version was the file");
    assert!(first_new.is_some(), "the fixed version never answered");
    assert_eq!(late_old, 0, "old answers after the first new one");
    // Counted by Envoy: one rejected update, then one in-place update.
    assert_eq!(envoy.stat("listener_manager.lds.update_rejected"), Some(1));
    assert_eq!(envoy.stat("listener_manager.lds.update_success"), Some(successes + 1));
    assert_eq!(envoy.stat("listener_manager.listener_in_place_updated"), Some(1));
    assert_both_workers_served(&envoy);
    // Logged by the filter (why) and by Envoy (what it refused).
    let log = envoy.log();
    assert!(
        log.contains("tollgate.tenant rejected its configuration: 1 error(s) in policy: routes[0].match.prefix"),
        "{log}"
    );
    assert!(
        log.contains("lds: listener 'ingress' config rejected: Unable to create Wasm plugin tenant-b"),
        "{log}"
    );
    assert!(
        log.contains("Filesystem config update rejected: Error adding/updating listener(s) ingress"),
        "{log}"
    );
}

/// ECDS, as Istio delivers a WasmPlugin: the listener is static and the
/// fused `tollgate` filter's configuration (module, root id, policy) comes
/// by extension config discovery from a watched file.
struct Ecds {
    echo: Echo,
    file: WatchedFile,
    envoy: Envoy,
}

const ECDS_HEADERS: &[&str] = &["x-tier-a"];
const ECDS_RELOADS: &str = "extension_config_discovery.http_filter.tollgate.config_reload";
const ECDS_FAILS: &str = "extension_config_discovery.http_filter.tollgate.config_fail";

/// The bootstrap of the fused filter running `policy`, and the filter's
/// wasm `typed_config` taken out of it.
fn fused(echo: &Echo, policy: &Value) -> (Value, Value) {
    let mut bootstrap = Bootstrap::new(echo.port());
    bootstrap.delivery = Delivery::Fused;
    let bootstrap = bootstrap.filter(Filter::tollgate("tollgate.tenant", &paths::module_wasm(), policy));
    let mut json = bootstrap.to_json();
    let typed = xds::http_filter(&mut json, "tollgate").unwrap()["typed_config"].take();
    (json, typed)
}

impl Ecds {
    fn start() -> Ecds {
        require_artefacts();
        let echo = Echo::start();
        let (mut bootstrap, typed) = fused(&echo, &policy(OLD, "x-tier-a"));
        let file = WatchedFile::create("ecds.json", &xds::ecds_resources("1", "tollgate", typed)).unwrap();
        xds::deliver_by_ecds(&mut bootstrap, "tollgate", &file).unwrap();
        let envoy = Envoy::start(&bootstrap);
        wait_stat(&envoy, ECDS_RELOADS, 1);
        Ecds { echo, file, envoy }
    }

    fn push(&self, version: &str, policy: &Value) {
        let (_, typed) = fused(&self.echo, policy);
        self.file
            .replace(&xds::ecds_resources(version, "tollgate", typed))
            .unwrap();
    }
}

/// Answers of one run, counted and checked as the LDS tests do.
fn assert_clean_switch(answers: &[Answer], since: Duration) -> (usize, usize) {
    let failed = failures(answers);
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(10)]
    );
    let old = answers.iter().filter(|a| a.is(OLD)).count();
    let new = answers.iter().filter(|a| a.is(NEW)).count();
    assert!(old > 0 && new > 0, "old {old}, new {new}");
    let early_new: Vec<&Answer> = answers.iter().filter(|a| a.done < since && a.is(NEW)).collect();
    assert!(
        early_new.is_empty(),
        "new answers before the new version was written: {early_new:?}"
    );
    let first_new = answers.iter().filter(|a| a.is(NEW)).map(|a| a.done).min().unwrap();
    let late_old = answers.iter().filter(|a| a.sent > first_new && a.is(OLD)).count();
    assert_eq!(late_old, 0, "old answers after the first new one");
    (old, new)
}

#[test]
#[ignore = "run once by cargo xtask ci (--ignored), not in every delivery mode"]
fn ecds_a_good_policy_takes_effect_under_load_and_a_bad_one_is_refused() {
    let ecds = Ecds::start();
    let load = Load::start(ecds.envoy.addr(), ECDS_HEADERS);
    std::thread::sleep(BEFORE);
    // A policy the filter refuses: Envoy keeps the one in force.
    let mut bad = policy(NEW, "x-tier-a");
    bad["routes"][0]["match"]["prefix"] = json!("api");
    let bad_written = load.now();
    ecds.push("2", &bad);
    let refused = wait_stat(&ecds.envoy, ECDS_FAILS, 1).duration_since(load.start);
    std::thread::sleep(AFTER);
    // Envoy 1.40 counts the refused version in config_reload too (and in
    // config_fail): only a later reload shows the good one taken up.
    let reloads = ecds.envoy.stat(ECDS_RELOADS).unwrap_or(0);
    let good_written = load.now();
    ecds.push("3", &policy(NEW, "x-tier-a"));
    let applied = wait_stat(&ecds.envoy, ECDS_RELOADS, reloads + 1).duration_since(load.start);
    std::thread::sleep(AFTER);
    let answers = load.finish();
    let refused_phase = answers
        .iter()
        .filter(|a| a.sent >= refused && a.done <= good_written)
        .count();
    let (old, new) = assert_clean_switch(&answers, good_written);
    println!(
        "ECDS: {} requests by {CLIENTS} clients: {old} old, {new} new, 0 failed; bad policy written at {} ms, \
         refused (config_fail) at {} ms, {refused_phase} answered by the old policy meanwhile; good one written at \
         {} ms, applied (config_reload) at {} ms",
        answers.len(),
        ms(bad_written),
        ms(refused),
        ms(good_written),
        ms(applied),
    );
    assert!(refused_phase > 0, "no traffic while the refused version was the file");
    assert_eq!(ecds.envoy.stat(ECDS_FAILS), Some(1));
    assert_both_workers_served(&ecds.envoy);
    // Logged by the filter (why) and by Envoy (what it refused).
    let log = ecds.envoy.log();
    assert!(
        log.contains("tollgate rejected its configuration: 1 error(s) in policy: routes[0].match.prefix"),
        "{log}"
    );
    assert!(
        log.contains("Filesystem config update rejected: Unable to create Wasm plugin tollgate"),
        "{log}"
    );
}
