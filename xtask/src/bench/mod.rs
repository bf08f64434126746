//! `cargo xtask bench [--quick]`: Tollgate against Envoy's native filters on
//! loopback. One Envoy per configuration (one worker, pinned to CPU 0), wrk
//! pinned to CPU 1, the same load against each, interleaved over rounds
//! because the machine is shared: ratios are taken within a round, then the
//! median over rounds. Memory is measured afterwards with two workers.

mod chart;
mod configs;
mod kafka;
pub(crate) mod load;
pub(crate) mod report;
mod service;
mod sink;
mod tokens;

#[cfg(test)]
mod tests;

use crate::setup;
use crate::util::{ask, root, step};
use configs::{Config, Load, Ports};
use load::{Sample, Spec};
use report::{Delivered, Measured};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tollgate_integration::{paths, Envoy, Launch, Request};

const ENVOY_CPU: &str = "0";
const WRK_CPU: &str = "1";

#[derive(Debug, Clone)]
struct Options {
    quick: bool,
    rounds: usize,
    seconds: u64,
    warmup_seconds: u64,
    rss_seconds: u64,
    /// Distinct tokens cycled by the uncached loads.
    tokens: usize,
    connections: [u32; 2],
    /// `--only`: the configurations asked for (empty: all).
    only: Vec<String>,
}

impl Options {
    fn new(quick: bool) -> Options {
        Options {
            quick,
            rounds: if quick { 1 } else { 5 },
            seconds: if quick { 2 } else { 3 },
            warmup_seconds: 1,
            rss_seconds: if quick { 1 } else { 3 },
            tokens: if quick { 500 } else { 2000 },
            connections: [4, 32],
            only: Vec::new(),
        }
    }
}

/// A configuration and the file of requests its load cycles through.
struct Target<'a> {
    config: &'a Config,
    requests: PathBuf,
    /// The first request's headers, for the smoke test.
    first: Vec<(String, String)>,
}

/// Every configuration's name, in order: capacity's list of rows is
/// checked against it.
#[cfg(test)]
pub(crate) fn names() -> Result<Vec<&'static str>, String> {
    Ok(configs::all(&tokens::mint_all(1)?).iter().map(|c| c.name).collect())
}

pub fn run(quick: bool) -> Result<(), String> {
    run_some(quick, &[], None)
}

/// `run` over the named configurations only (with `baseline` and
/// `native_chain`, which the ratios need); all when `only` is empty.
pub fn run_some(quick: bool, only: &[String], rounds: Option<usize>) -> Result<(), String> {
    let mut options = Options::new(quick);
    if let Some(rounds) = rounds {
        options.rounds = rounds.clamp(1, 50);
    }
    options.only = only.to_vec();
    let started = Instant::now();
    step("setup", setup::all)?;
    step("build tollgate.wasm", setup::build_wasm)?;
    // A partial run must not overwrite the full run's table and chart.
    let out = root().join(if only.is_empty() {
        "target/bench"
    } else {
        "target/bench/partial"
    });
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut minted = None;
    step("bench: mint tokens", || {
        minted = Some(tokens::mint_all(options.tokens)?);
        Ok(())
    })?;
    let tokens = minted.ok_or("no tokens")?;
    let mut configs = configs::all(&tokens);
    let known: Vec<&str> = configs.iter().map(|c| c.name).collect();
    if let Some(unknown) = only.iter().find(|n| !known.contains(&n.as_str())) {
        return Err(format!("no configuration '{unknown}'; there are {}", known.join(", ")));
    }
    if !only.is_empty() {
        // With the rows the named ones are compared with.
        let over: Vec<&str> = configs
            .iter()
            .filter(|c| only.iter().any(|n| n == c.name))
            .filter_map(|c| c.over)
            .collect();
        configs.retain(|c| {
            matches!(c.name, "baseline" | "native_chain") || over.contains(&c.name) || only.iter().any(|n| n == c.name)
        });
    }
    let script = load::write_script(&out)?;
    let targets = configs
        .iter()
        .map(|config| write_target(&out, config, &tokens))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rig = start_service(&configs)?;
    let sink = start_sink(&configs)?;
    let kafka = start_kafka(&configs)?;
    let parties = Parties {
        ports: Ports {
            ratelimit: rig.as_ref().map(service::Rig::port),
            sink: sink.as_ref().map(sink::Sink::port),
            kafka: kafka.as_ref().map(kafka::Kafka::port),
        },
        sink: sink.as_ref(),
        kafka: kafka.as_ref(),
    };
    let mut measured = Vec::new();
    step("bench: one pinned worker per configuration, interleaved rounds", || {
        measured = pinned_rounds(&targets, &options, &script, &out, &parties)?;
        Ok(())
    })?;
    step("bench: memory with two workers", || {
        for (m, target) in measured.iter_mut().zip(&targets) {
            m.rss_mib = rss_after_load(target, &options, &script, &out, parties.ports)?;
        }
        Ok(())
    })?;
    // A service that died mid-run turned its rows into failure-mode rows.
    rig.as_mut().map_or(Ok(()), service::Rig::check)?;
    drop(rig);
    drop(sink);
    drop(kafka);
    let seconds = started.elapsed().as_secs_f64();
    finish(&out, &options, &measured, seconds)
}

/// Redis and the rate limit service, if a configuration calls it. The
/// service is built by cargo as a command: xtask never compiles tonic.
fn start_service(configs: &[Config]) -> Result<Option<service::Rig>, String> {
    if !configs.iter().any(|c| c.global) {
        return Ok(None);
    }
    step("bench: build tollgate-ratelimit", crate::images::build_ratelimit)?;
    let mut rig = None;
    step("bench: Redis and the rate limit service, pinned to wrk's CPU", || {
        rig = Some(service::Rig::start(&crate::images::ratelimit_binary(), WRK_CPU)?);
        Ok(())
    })?;
    Ok(rig)
}

/// The audit sink, if a configuration posts events to it.
fn start_sink(configs: &[Config]) -> Result<Option<sink::Sink>, String> {
    if !configs.iter().any(|c| c.sink) {
        return Ok(None);
    }
    let mut sink = None;
    step("bench: the audit sink, pinned to wrk's CPU", || {
        sink = Some(sink::Sink::start(WRK_CPU)?);
        Ok(())
    })?;
    Ok(sink)
}

/// Tansu and the Kafka REST front, if a configuration posts events to it.
fn start_kafka(configs: &[Config]) -> Result<Option<kafka::Kafka>, String> {
    if !configs.iter().any(|c| c.sink && c.kafka) {
        return Ok(None);
    }
    let mut kafka = None;
    step("bench: Tansu and the Kafka REST front, pinned to wrk's CPU", || {
        kafka = Some(kafka::Kafka::start(WRK_CPU)?);
        Ok(())
    })?;
    Ok(kafka)
}

/// The parties the Envoys call, started by the bench.
struct Parties<'a> {
    ports: Ports,
    sink: Option<&'a sink::Sink>,
    kafka: Option<&'a kafka::Kafka>,
}

/// The request file of a configuration: one line per distinct request.
fn write_target<'a>(out: &Path, config: &'a Config, tokens: &tokens::Tokens) -> Result<Target<'a>, String> {
    let with_token = |token: &String| {
        let mut headers = config.headers.clone();
        headers.push(("Authorization".into(), format!("Bearer {token}")));
        headers
    };
    let requests: Vec<Vec<(String, String)>> = match config.load {
        Load::Plain => vec![config.headers.clone()],
        Load::Cached => tokens.valid.iter().take(1).map(with_token).collect(),
        Load::Uncached => tokens.valid.iter().map(with_token).collect(),
    };
    let path = out.join(format!("requests-{}.txt", config.name));
    load::write_requests(&path, &requests)?;
    Ok(Target {
        config,
        requests: path,
        first: requests.into_iter().next().unwrap_or_default(),
    })
}

fn launch(concurrency: &str, cpus: Option<&str>) -> Launch {
    Launch {
        concurrency: concurrency.into(),
        log_level: "warn".into(),
        wasm_debug: false,
        cpus: cpus.map(String::from),
    }
}

fn start(target: &Target, launch: &Launch, out: &Path, ports: Ports) -> Result<Envoy, String> {
    let log = out.join(format!("access-{}.log", target.config.name));
    let bootstrap = target.config.bootstrap(&log.display().to_string(), ports);
    let envoy = Envoy::try_start_with(&bootstrap, launch)
        .map_err(|f| format!("{}: Envoy did not start: {}\n{}", target.config.name, f.reason, f.log))?;
    smoke(target, &envoy)?;
    Ok(envoy)
}

/// The load's first request must be allowed and the config's bad request
/// refused, so a misconfigured run cannot pass as fast.
fn smoke(target: &Target, envoy: &Envoy) -> Result<(), String> {
    let config = target.config;
    expect(config.name, envoy, &target.first, 200, 1)?;
    match &config.refused {
        Some((headers, status)) => expect(config.name, envoy, headers, *status, configs::REFUSED_WITHIN),
        None => Ok(()),
    }
}

/// The request must be answered `status` within `tries` sends.
fn expect(name: &str, envoy: &Envoy, headers: &[(String, String)], status: u16, tries: usize) -> Result<(), String> {
    let request = headers
        .iter()
        .fold(Request::get(configs::PATH), |r, (n, v)| r.header(n, v));
    let mut last = String::new();
    for _ in 0..tries {
        let response = request.send(envoy.addr())?;
        if response.status == status {
            return Ok(());
        }
        last = format!("{} {}", response.status, response.text());
    }
    Err(format!(
        "{name}: smoke request {:?} answered {last}, not {status} (tries: {tries})",
        headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
    ))
}

fn spec<'a>(target: &'a Target, script: &'a Path, connections: u32, seconds: u64) -> Spec<'a> {
    Spec {
        script,
        requests: &target.requests,
        path: configs::PATH,
        connections,
        threads: 1,
        seconds,
        cpus: WRK_CPU,
    }
}

fn pinned_rounds(
    targets: &[Target],
    options: &Options,
    script: &Path,
    out: &Path,
    parties: &Parties,
) -> Result<Vec<Measured>, String> {
    let pinned = launch("1", Some(ENVOY_CPU));
    let envoys = targets
        .iter()
        .map(|t| start(t, &pinned, out, parties.ports))
        .collect::<Result<Vec<_>, _>>()?;
    let tick_us = load::tick_us();
    let before = envoys.iter().map(stats).collect::<Result<Vec<_>, _>>()?;
    for (target, envoy) in targets.iter().zip(&envoys) {
        let warm = spec(target, script, options.connections[0], options.warmup_seconds);
        load::measure(envoy, &warm, tick_us)?;
    }
    let mut samples: Vec<Vec<[Sample; 2]>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..options.rounds {
        println!("round {} of {}", round + 1, options.rounds);
        let mut this: Vec<[Sample; 2]> = targets.iter().map(|_| Default::default()).collect();
        for (slot, connections) in options.connections.iter().enumerate() {
            for ((target, envoy), pair) in targets.iter().zip(&envoys).zip(this.iter_mut()) {
                let sample = load::measure(envoy, &spec(target, script, *connections, options.seconds), tick_us)?;
                println!(
                    "  {:<28} c{connections:<3} {:>8.0} req/s {:>7.1} µs CPU/req p99 {:>6.0} µs",
                    target.config.name,
                    sample.rps,
                    sample.cpu_us / sample.requests.max(1) as f64,
                    sample.p99_us
                );
                if let Some(s) = pair.get_mut(slot) {
                    *s = sample;
                }
            }
        }
        for (all, [low, high]) in samples.iter_mut().zip(this) {
            all.push([low, high]);
        }
    }
    // The audit stage reports its counters on its tick: one more tick
    // after the last load, and they count every event.
    if parties.sink.is_some() || parties.kafka.is_some() {
        std::thread::sleep(AUDIT_TICK + Duration::from_millis(500));
    }
    let mut delivered = Vec::new();
    for (target, envoy) in targets.iter().zip(&envoys) {
        let name = target.config.name;
        let received = || -> Result<(u64, u64), String> {
            match (target.config.kafka, parties.sink, parties.kafka) {
                (false, Some(sink), _) => {
                    let count = sink.received(&configs::sink_path(name));
                    Ok((count.events, count.batches))
                }
                (true, _, Some(kafka)) => kafka.received(),
                _ => Err(format!("{name}: its sink is not running")),
            }
        };
        delivered.push(match target.config.sink {
            true => Some(check_delivery(name, envoy, target.config.kafka, &received)?),
            false => None,
        });
    }
    for ((target, envoy), before) in targets.iter().zip(&envoys).zip(&before) {
        check_shares(target.config.name, &target.config.shares, before, &stats(envoy)?)?;
    }
    Ok(targets
        .iter()
        .zip(samples)
        .zip(delivered)
        .map(|((t, rounds), audit)| Measured {
            name: t.config.name,
            what: t.config.what,
            over: t.config.over,
            rounds: rounds.into_iter().map(|[l, h]| (l, h)).collect(),
            rss_mib: f64::NAN,
            audit,
        })
        .collect())
}

/// The audit rows' tick and flush interval (`flush_interval_ms`).
const AUDIT_TICK: Duration = Duration::from_secs(1);
/// Within this long every buffered event has been sent: a flush interval
/// and a call, with room for a loaded machine.
const DELIVERED_WITHIN: Duration = Duration::from_secs(10);

/// Every event the Envoy emitted reached the sink: once nothing is left in
/// its buffer or in calls, the sink counted on the row's path (the Kafka
/// front: the broker took) what Envoy counted sent, and nothing was dropped.
/// `received`: (events, batches) the sink got.
fn check_delivery(
    name: &str,
    envoy: &Envoy,
    kafka: bool,
    received: &dyn Fn() -> Result<(u64, u64), String>,
) -> Result<Delivered, String> {
    let deadline = Instant::now() + DELIVERED_WITHIN;
    loop {
        let all = stats(envoy)?;
        let count = |counter: &str| value(&all, &format!("wasmcustom.tollgate.audit.{counter}"));
        let (events, batches) = received()?;
        let delivered = Delivered {
            emitted: count("events_emitted"),
            sent: count("events_sent"),
            dropped: ["buffer_full", "retry_overflow", "resized", "rejected"]
                .iter()
                .map(|cause| count(&format!("events_dropped.{cause}")))
                .sum(),
            received: events,
            batches,
            kafka,
        };
        let settled = delivered.emitted == delivered.sent + delivered.dropped;
        if settled && delivered.dropped == 0 && delivered.received == delivered.sent {
            return Ok(delivered);
        }
        if Instant::now() > deadline {
            return Err(format!("{name}: audit events not all delivered: {delivered:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// All counters of an Envoy, by name.
fn stats(envoy: &Envoy) -> Result<Vec<(String, u64)>, String> {
    let text = envoy.admin_get("/stats?usedonly")?.text();
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
        .collect())
}

fn value(all: &[(String, u64)], name: &str) -> u64 {
    all.iter().find(|(k, _)| k == name).map_or(0, |(_, v)| *v)
}

fn delta(before: &[(String, u64)], after: &[(String, u64)], name: &str) -> u64 {
    value(after, name).saturating_sub(value(before, name))
}

/// Proves the intended path ran: e.g. every uncached request verified a
/// signature (a cache hit would make the config measure the wrong thing).
fn check_shares(
    name: &str,
    shares: &[configs::StatShare],
    before: &[(String, u64)],
    after: &[(String, u64)],
) -> Result<(), String> {
    let requests = delta(before, after, "http.ingress.downstream_rq_completed").max(1) as f64;
    for share in shares {
        let got = delta(before, after, share.stat) as f64 / requests;
        if got < share.min - 1e-9 || got > share.max + 1e-9 {
            return Err(format!(
                "{name}: {} grew by {got:.3} per request, expected {} to {}",
                share.stat, share.min, share.max
            ));
        }
    }
    Ok(())
}

fn rss_after_load(target: &Target, options: &Options, script: &Path, out: &Path, ports: Ports) -> Result<f64, String> {
    let envoy = start(target, &launch("2", None), out, ports)?;
    let mut load = spec(target, script, options.connections[1], options.rss_seconds);
    load.threads = 2;
    load::measure(&envoy, &load, load::tick_us())?;
    let rss = load::rss_mib(envoy.pid())?;
    println!("  {:<28} {rss:.1} MiB", target.config.name);
    Ok(rss)
}

fn meta(options: &Options, seconds: f64) -> Value {
    let text = |program: &str, args: &[&str]| ask(program, args).map(|s| s.trim().to_string());
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
        c.lines()
            .find_map(|l| Some(l.strip_prefix("model name")?.split_once(':')?.1.trim().to_string()))
    });
    json!({
        "command": if options.quick { "cargo xtask bench --quick" } else { "cargo xtask bench" },
        "date": text("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        "commit": text("git", &["rev-parse", "--short", "HEAD"]),
        // What the commit does not say: the run measured uncommitted changes.
        "dirty": text("git", &["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty()),
        "cpu": cpu,
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "kernel": text("uname", &["-r"]),
        "envoy": ask(&paths::envoy_binary().display().to_string(), &["--version"]).map(|v| v.trim().to_string()),
        "wasm_bytes": std::fs::metadata(paths::module_wasm()).map_or(0, |m| m.len()),
        "rounds": options.rounds,
        "only": options.only,
        "seconds_per_load": options.seconds,
        "connections": options.connections,
        "uncached_tokens": options.tokens,
        "envoy_cpu": ENVOY_CPU,
        "wrk_cpu": WRK_CPU,
        "run_seconds": seconds,
    })
}

fn finish(out: &Path, options: &Options, measured: &[Measured], seconds: f64) -> Result<(), String> {
    let rows = report::rows(measured);
    let meta = meta(options, seconds);
    let table = report::markdown(&rows, options.connections);
    let write = |name: &str, text: String| {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    let goals = report::goals(measured);
    let mut json = report::to_json(meta.clone(), measured, &rows);
    json["goals"] = goals
        .iter()
        .map(|(what, us)| json!({"what": what, "cpu_us_per_request": us}))
        .collect();
    write(
        "bench.json",
        serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?,
    )?;
    write("bench.md", table.clone())?;
    let title = format!(
        "Tollgate vs Envoy native filters: {}, {}",
        meta["command"].as_str().unwrap_or_default(),
        meta["date"].as_str().unwrap_or_default()
    );
    chart::draw(&out.join("bench.png"), &rows, &title, options.connections[0])?;
    for m in measured {
        let _ = std::fs::remove_file(out.join(format!("access-{}.log", m.name)));
    }
    println!(
        "\n{table}\ntollgate.wasm: {} bytes; {} round(s) of {} s per load; run took {seconds:.0} s",
        meta["wasm_bytes"], options.rounds, options.seconds,
    );
    for (what, us) in &goals {
        println!("{what}: {us:+.1} µs/request (median of rounds; goal: at most 0)");
    }
    for m in measured {
        if let Some(delivered) = m.audit {
            println!("{}", delivered.line(m.name));
        }
    }
    println!("wrote {}/bench.json, bench.md, bench.png", out.display());
    let failures: u64 = measured.iter().map(Measured::failures).sum();
    if failures > 0 {
        return Err(format!("{failures} answers were not 2xx: the run is invalid"));
    }
    Ok(())
}
