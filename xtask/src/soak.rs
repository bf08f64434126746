//! `cargo xtask soak`: a million requests through the demo policy in a real
//! Envoy with two workers, on keep-alive connections from several client
//! threads: good tokens, bad tokens, thousands of distinct tokens (more
//! than the token cache holds, so it churns), tenants and routes. Every
//! answer's status must be the one `tollgate explain` gives for that
//! request; Envoy's RSS is sampled along the way and must stay flat once
//! warmed up. Bounded by `--requests` and `--max-seconds`.

use crate::demo::{mint_tokens, point_sink, use_free_ports};
use crate::render::{DEMO_BOOTSTRAP, POLICY};
use crate::setup;
use crate::util::{root, step};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tollgate_cli::demo::{self, EXAMPLES};
use tollgate_cli::explain::{explain, Request as Explained};
use tollgate_integration::http::KeepAlive;
use tollgate_integration::server::{Received, Server};
use tollgate_integration::{Echo, Envoy, Request};

/// Distinct valid tokens: more than the default cache (1024 per worker).
const DISTINCT_TOKENS: usize = 3000;
/// Each demo example and bad token appears this often in the mix.
const REPEATS: usize = 100;
/// RSS may grow this much from the end of warm-up to the end.
const MAX_GROWTH_MIB: f64 = 16.0;
/// The first part of the run is warm-up (caches filling, pools growing).
const WARM_UP_FRACTION: u64 = 10;

pub struct Options {
    pub requests: u64,
    pub max_seconds: u64,
    pub clients: usize,
}

/// One kind of request and the status `tollgate explain` gives it.
#[derive(Clone)]
struct Template {
    request: Request,
    expected: u16,
}

#[derive(Default)]
struct Tally {
    statuses: BTreeMap<u16, u64>,
    unexpected: u64,
    errors: u64,
    samples: Vec<String>,
}

pub fn run(options: &Options) -> Result<(), String> {
    setup::all()?;
    step("build tollgate.wasm", setup::build_wasm)?;
    let echo = Echo::start_on("127.0.0.1:0").map_err(|e| format!("echo upstream: {e}"))?;
    let text = std::fs::read_to_string(root().join(DEMO_BOOTSTRAP)).map_err(|e| e.to_string())?;
    let mut bootstrap: Value = serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())?;
    use_free_ports(&mut bootstrap, echo.port())?;
    let policy = tollgate_cli::policy_file::load_policy(&root().join(POLICY))?;
    // A million events would fill the demo sink's file: this one takes
    // each batch and keeps nothing, so the audit stage's cost is in the run.
    let sink =
        Server::start("127.0.0.1:0", |_: &Received| (200, "{}".to_string())).map_err(|e| format!("audit sink: {e}"))?;
    point_sink(&mut bootstrap, &policy, sink.addr())?;
    let envoy = Envoy::try_start(&bootstrap).map_err(|f| format!("Envoy did not start: {}\n{}", f.reason, f.log))?;
    let started = Instant::now();
    let templates = templates(&policy, envoy.addr())?;
    println!(
        "soak: {} request kinds ({} distinct tokens), expected statuses from tollgate explain in {:.1} s",
        templates.len(),
        DISTINCT_TOKENS,
        started.elapsed().as_secs_f64()
    );
    let outcome = load(&envoy, &templates, options);
    let parsed = tollgate_core::policy::Policy::from_json(policy.to_string().as_bytes()).map_err(|e| e.to_string())?;
    let bounds = tollgate_core::jwt::Caches::bounds(&parsed);
    let report = report(&envoy, &outcome, bounds);
    drop(envoy);
    drop(echo);
    drop(sink);
    report
}

/// The demo's examples with their tokens, bad tokens, and distinct good
/// tokens for two tenants on two routes; each request's status from explain.
fn templates(policy: &Value, addr: SocketAddr) -> Result<Vec<Template>, String> {
    let tokens = mint_tokens()?;
    let token = |var: &str| tokens.iter().find(|(v, _)| v == var).map(|(_, t)| t.clone());
    let mut kinds: Vec<(Explained, usize)> = Vec::new();
    for example in EXAMPLES {
        let mut request = explained(example.method, example.path, example.headers, addr);
        request.token = example.token.and_then(token);
        kinds.push((request, REPEATS));
    }
    let std_token = token("STD").ok_or("no STD demo token")?;
    for bad in bad_tokens(&std_token)? {
        let mut request = explained("GET", "/api/datahub/entities", &[], addr);
        request.token = Some(bad);
        kinds.push((request, REPEATS));
    }
    for (i, token) in distinct_tokens()?.into_iter().enumerate() {
        let path = if i % 2 == 0 {
            "/api/datahub/entities"
        } else {
            "/api/superset/charts"
        };
        let mut request = explained("GET", path, &[], addr);
        request.token = Some(token);
        kinds.push((request, 1));
    }
    let mut templates = Vec::new();
    for (request, repeats) in kinds {
        let expected = expected_status(policy, &request)?;
        let template = Template {
            request: wire(&request),
            expected,
        };
        templates.extend(std::iter::repeat_with(|| template.clone()).take(repeats));
    }
    shuffle(&mut templates);
    Ok(templates)
}

fn explained(method: &str, path: &str, headers: &[(&str, &str)], addr: SocketAddr) -> Explained {
    Explained {
        method: method.to_string(),
        url: format!("http://{addr}{path}"),
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Explained::default()
    }
}

/// Not a JWT; a good token with a changed signature; one signed by the
/// demo key under an unknown `kid`; an unsigned (`alg: none`) copy.
fn bad_tokens(good: &str) -> Result<Vec<String>, String> {
    let parts: Vec<&str> = good.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err(format!("not a JWT: {good}"));
    };
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{header}.{claims}.{flipped}{}", signature.get(1..).unwrap_or_default());
    // {"alg":"none","typ":"JWT"}, base64url.
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{claims}.");
    let unknown_kid = sign(
        &demo::token_claims("STD-001", &["analyst"], "", false, unix_now()),
        "no-such-key",
    )?;
    Ok(vec!["not-a-token".to_string(), tampered, unknown_kid, unsigned])
}

fn sign(claims: &Value, kid: &str) -> Result<String, String> {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let pem = std::fs::read(root().join(demo::SIGNING_KEY)).map_err(|e| format!("demo key: {e}"))?;
    let key = EncodingKey::from_rsa_pem(&pem).map_err(|e| format!("demo key: {e}"))?;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    encode(&header, claims, &key).map_err(|e| e.to_string())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// STD-001 tokens with distinct subjects, signed like the demo's.
fn distinct_tokens() -> Result<Vec<String>, String> {
    let now = unix_now();
    (0..DISTINCT_TOKENS)
        .map(|i| {
            let mut claims = demo::token_claims("STD-001", &["analyst"], "", false, now);
            claims["sub"] = Value::from(format!("soak-{i}"));
            claims["user_id"] = Value::from(format!("soak-{i}"));
            sign(&claims, demo::SIGNING_KID)
        })
        .collect()
}

fn expected_status(policy: &Value, request: &Explained) -> Result<u16, String> {
    let e = explain(policy, request)?;
    let answer = &e["answer"];
    match answer["kind"].as_str() {
        Some("forwarded") => Ok(200),
        Some("local_reply") => answer["status"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .ok_or_else(|| format!("explain gave no status: {answer}")),
        other => Err(format!("explain gave no answer ({other:?}) for {}", request.url)),
    }
}

/// The request as sent on the wire: `host` as curl sends it, the token in
/// `authorization` (where the demo policy's provider reads it).
fn wire(e: &Explained) -> Request {
    let target = e.url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap_or_default();
    let authority = e.url.split('/').nth(2).unwrap_or_default().to_string();
    let mut request = Request::get(&target).method(&e.method);
    if !e.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        request = request.header("host", &authority);
    }
    for (name, value) in &e.headers {
        request = request.header(name, value);
    }
    if let Some(token) = &e.token {
        request = request.header("authorization", &format!("Bearer {token}"));
    }
    request
}

/// A fixed shuffle (xorshift, Fisher-Yates): the same mix every run.
fn shuffle<T>(items: &mut [T]) {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = usize::try_from(state % (i as u64 + 1)).unwrap_or(0);
        items.swap(i, j);
    }
}

struct Outcome {
    tally: Tally,
    sent: u64,
    connects: u64,
    elapsed: Duration,
    /// (requests done, RSS MiB), sampled every second.
    rss: Vec<(u64, f64)>,
    timed_out: bool,
}

fn load(envoy: &Envoy, templates: &[Template], options: &Options) -> Outcome {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let connects = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.max_seconds);
    let mut rss = vec![(0, rss_mib(envoy.pid()))];
    let timed_out = std::thread::scope(|scope| {
        for client in 0..options.clients {
            let (done, stop, tally, connects) = (done.clone(), stop.clone(), tally.clone(), connects.clone());
            let addr = envoy.addr();
            scope.spawn(move || {
                let mut conn = KeepAlive::new(addr);
                let mut mine = Tally::default();
                let mut k = client as u64;
                while k < options.requests && !stop.load(Ordering::Relaxed) {
                    let index = usize::try_from(k % templates.len() as u64).unwrap_or(0);
                    if let Some(template) = templates.get(index) {
                        record(&mut mine, template, conn.send(&template.request));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    k += options.clients as u64;
                }
                connects.fetch_add(conn.connects, Ordering::Relaxed);
                if let Ok(mut all) = tally.lock() {
                    merge(&mut all, mine);
                }
            });
        }
        let mut last_print = Instant::now();
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let n = done.load(Ordering::Relaxed);
            rss.push((n, rss_mib(envoy.pid())));
            if last_print.elapsed() >= Duration::from_secs(30) {
                println!("soak: {n} requests, Envoy RSS {:.1} MiB", rss_mib(envoy.pid()));
                last_print = Instant::now();
            }
            if n >= options.requests {
                return false;
            }
            if Instant::now() > deadline {
                stop.store(true, Ordering::Relaxed);
                return true;
            }
        }
    });
    rss.push((done.load(Ordering::Relaxed), rss_mib(envoy.pid())));
    let tally = Arc::try_unwrap(tally)
        .ok()
        .and_then(|m| m.into_inner().ok())
        .unwrap_or_default();
    Outcome {
        tally,
        sent: done.load(Ordering::Relaxed),
        connects: connects.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        rss,
        timed_out,
    }
}

fn record(tally: &mut Tally, template: &Template, answer: Result<tollgate_integration::Response, String>) {
    match answer {
        Ok(response) => {
            *tally.statuses.entry(response.status).or_default() += 1;
            if response.status != template.expected {
                tally.unexpected += 1;
                if tally.samples.len() < 5 {
                    tally.samples.push(format!(
                        "{} {}: {} (want {}): {}",
                        template.request.method,
                        template.request.target,
                        response.status,
                        template.expected,
                        response.text().chars().take(200).collect::<String>()
                    ));
                }
            }
        }
        Err(e) => {
            tally.errors += 1;
            if tally.samples.len() < 5 {
                tally.samples.push(format!("{}: {e}", template.request.target));
            }
        }
    }
}

fn merge(all: &mut Tally, mine: Tally) {
    for (status, n) in mine.statuses {
        *all.statuses.entry(status).or_default() += n;
    }
    all.unexpected += mine.unexpected;
    all.errors += mine.errors;
    all.samples.extend(mine.samples);
}

fn rss_mib(pid: u32) -> f64 {
    crate::bench::load::rss_mib(pid).unwrap_or(0.0)
}

fn report(envoy: &Envoy, o: &Outcome, cache_bounds: [usize; 3]) -> Result<(), String> {
    let secs = o.elapsed.as_secs_f64();
    println!(
        "soak: {} requests in {secs:.0} s ({:.0}/s) on {} connection(s); statuses {:?}",
        o.sent,
        o.sent as f64 / secs.max(0.001),
        o.connects,
        o.tally.statuses
    );
    let warm = o.sent / WARM_UP_FRACTION;
    let start = o.rss.first().map_or(0.0, |r| r.1);
    let after_warm_up = o.rss.iter().find(|r| r.0 >= warm).map_or(start, |r| r.1);
    let end = o.rss.last().map_or(0.0, |r| r.1);
    let max = o.rss.iter().map(|r| r.1).fold(0.0, f64::max);
    println!(
        "soak: Envoy RSS MiB: start {start:.1}, after warm-up ({warm} requests) {after_warm_up:.1}, end {end:.1}, max {max:.1}"
    );
    let curve: Vec<String> = o
        .rss
        .iter()
        .step_by((o.rss.len() / 10).max(1))
        .map(|(n, mib)| format!("{n}:{mib:.1}"))
        .collect();
    println!("soak: RSS curve (requests:MiB) {}", curve.join(" "));
    for name in ["cache_hit", "cache_miss", "allowed"] {
        let value = envoy.stat(&format!("wasmcustom.tollgate.jwt.{name}")).unwrap_or(0);
        println!("soak: tollgate.jwt.{name} = {value}");
    }
    let mut failures = Vec::new();
    // Each worker sets the gauges after its own cache changed: the value is
    // one worker's cache, within that worker's bound.
    for (name, bound) in tollgate_core::jwt::CACHE_GAUGES.iter().zip(cache_bounds) {
        let value = envoy.stat(&format!("wasmcustom.{name}"));
        println!("soak: {name} = {value:?} (bound {bound} per worker)");
        match value {
            Some(v) if v <= u64::try_from(bound).unwrap_or(u64::MAX) => {}
            Some(v) => failures.push(format!("{name} is {v}, over its bound {bound}")),
            None => failures.push(format!("{name} is not in Envoy's stats")),
        }
    }
    println!(
        "soak: {} unexpected statuses, {} transport errors",
        o.tally.unexpected, o.tally.errors
    );
    for sample in &o.tally.samples {
        println!("  {sample}");
    }
    if o.timed_out {
        failures.push(format!("stopped at the time limit after {} requests", o.sent));
    }
    if o.tally.unexpected > 0 || o.tally.errors > 0 {
        failures.push(format!(
            "{} unexpected statuses, {} errors",
            o.tally.unexpected, o.tally.errors
        ));
    }
    if end - after_warm_up > MAX_GROWTH_MIB {
        failures.push(format!(
            "Envoy grew {:.1} MiB after warm-up (at most {MAX_GROWTH_MIB})",
            end - after_warm_up
        ));
    }
    let ok = o.sent.saturating_sub(o.tally.unexpected + o.tally.errors);
    println!("soak: {ok} passed, {} failed", o.tally.unexpected + o.tally.errors);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}
