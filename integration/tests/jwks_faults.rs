//! The JWKS server misbehaving in every way the jwt filter must survive, in
//! a real Envoy 1.40 (two workers): down, slower than the timeout, garbage,
//! a body over `max_body_bytes`, an error status. Each time a token
//! request gets 503 `jwks_unavailable` at once (never a 5xx of Envoy's own,
//! never a hang, never a 200), the fetches stay within the backoff, Envoy's
//! memory does not grow with the failures, and keys come back when the
//! server does.

#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::require_artefacts;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tollgate_integration::{paths, Bootstrap, Echo, Envoy, Filter, JwksServer, Request, Response};

const ISSUER: &str = "https://idp.test";
const TIMEOUT_MS: u64 = 500;
const MAX_BODY: usize = 65_536;
/// Requests sent while the server misbehaves, one every `PACE`.
const FAULTY_REQUESTS: usize = 30;
const PACE: Duration = Duration::from_millis(100);

fn fixture(name: &str) -> String {
    let path = paths::repo_root().join("tests/fixtures/keys").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn good_jwks() -> String {
    let all: Value = serde_json::from_str(&fixture("jwks.json")).unwrap();
    let keys: Vec<&Value> = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kid"] == "rsa-1")
        .collect();
    json!({ "keys": keys }).to_string()
}

/// A new token each call (distinct `sub`): no cache hit hides the keys' state.
fn bearer(n: usize) -> String {
    let key = EncodingKey::from_rsa_pem(fixture("rsa-1.pem").as_bytes()).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let claims = json!({"iss": ISSUER, "sub": format!("user-{n}"), "exp": now() + 600});
    format!("Bearer {}", encode(&header, &claims, &key).unwrap())
}

fn policy() -> Value {
    json!({
        "version": 1,
        "routes": [{"name": "datahub", "match": {"prefix": "/api/datahub"}, "jwt": {"requirement": "required"}}],
        "jwt": {"providers": [{
            "name": "platform", "issuer": ISSUER,
            "remote_jwks": {
                "uri": "http://idp.test/.well-known/jwks.json", "cluster": "idp",
                "timeout_ms": TIMEOUT_MS, "cache_duration_seconds": 300,
                "min_refetch_interval_seconds": 1, "max_body_bytes": MAX_BODY,
            },
        }]},
    })
}

struct Chain {
    envoy: Envoy,
    _echo: Echo,
}

fn start(idp_port: u16) -> Chain {
    require_artefacts();
    let echo = Echo::start();
    let bootstrap = Bootstrap::new(echo.port())
        .filter(Filter::tollgate("tollgate.jwt", &paths::module_wasm(), &policy()))
        .cluster("idp", idp_port);
    Chain {
        envoy: Envoy::start(&bootstrap.to_json()),
        _echo: echo,
    }
}

impl Chain {
    fn get(&self, n: usize) -> (Response, Duration) {
        let started = Instant::now();
        let response = self
            .envoy
            .send(&Request::get("/api/datahub").header("authorization", &bearer(n)));
        (response, started.elapsed())
    }

    fn counter(&self, name: &str) -> u64 {
        self.envoy.stat(&format!("wasmcustom.tollgate.jwt.{name}")).unwrap_or(0)
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.envoy.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

/// What a fault run saw.
struct Seen {
    slowest: Duration,
    rss_growth_kib: i64,
}

/// `FAULTY_REQUESTS` token requests while the server misbehaves: each a
/// prompt 503 `jwks_unavailable`; then the server heals and keys come back.
fn survives(idp: &JwksServer, chain: &Chain, heal: impl Fn(&JwksServer)) -> Seen {
    let mut slowest = Duration::ZERO;
    let mut rss = Vec::new();
    for n in 0..FAULTY_REQUESTS {
        let (response, took) = chain.get(n);
        assert_eq!(response.status, 503, "request {n}: {}", response.text());
        assert_eq!(response.json()["reason"], "jwks_unavailable", "{}", response.text());
        slowest = slowest.max(took);
        rss.push(chain.rss_kib());
        std::thread::sleep(PACE);
    }
    assert!(chain.counter("jwks_fetch_failed") >= 1, "no failed fetch counted");
    // Two workers, each retrying after 0.5-1 s, 1-2 s, 2-4 s ...: over about
    // 4 s of failures a handful of fetches each, not one per request.
    let hits = idp.hits();
    assert!(
        hits <= 12,
        "{hits} fetches in {FAULTY_REQUESTS} requests: the backoff does not hold"
    );
    heal(idp);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = FAULTY_REQUESTS;
    loop {
        n += 1;
        let (response, _) = chain.get(n);
        if response.status == 200 {
            break;
        }
        assert_eq!(response.status, 503, "{}", response.text());
        assert!(
            Instant::now() < deadline,
            "keys never came back after the server healed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(chain.counter("jwks_fetch_ok") >= 1);
    let first = rss.get(5).copied().unwrap_or_default();
    let last = rss.last().copied().unwrap_or_default();
    Seen {
        slowest,
        rss_growth_kib: i64::try_from(last).unwrap_or(0) - i64::try_from(first).unwrap_or(0),
    }
}

fn assert_prompt_and_flat(what: &str, seen: &Seen, longest: Duration) {
    println!(
        "{what}: slowest answer {:?}, Envoy RSS growth {} KiB",
        seen.slowest, seen.rss_growth_kib
    );
    assert!(seen.slowest <= longest, "{what}: an answer took {:?}", seen.slowest);
    assert!(
        seen.rss_growth_kib < 8 * 1024,
        "{what}: Envoy grew by {} KiB while failing",
        seen.rss_growth_kib
    );
}

fn heal_to_good(idp: &JwksServer) {
    idp.set(&good_jwks());
    idp.status(200);
    idp.delay(Duration::ZERO);
}

#[test]
fn a_jwks_server_answering_garbage_is_survived() {
    let idp = JwksServer::start("<html>502 Bad Gateway</html>");
    let chain = start(idp.port());
    let seen = survives(&idp, &chain, heal_to_good);
    assert_prompt_and_flat("garbage", &seen, Duration::from_secs(2));
    assert!(chain.envoy.log().contains("JWKS fetch for provider 'platform' failed"));
}

#[test]
fn a_jwks_body_over_max_body_bytes_is_refused_not_parsed() {
    // 4 MiB of well-formed JSON: only its size makes it wrong.
    let huge = format!("{{\"keys\": [], \"padding\": \"{}\"}}", "x".repeat(4 << 20));
    let idp = JwksServer::start(&huge);
    let chain = start(idp.port());
    let seen = survives(&idp, &chain, heal_to_good);
    assert_prompt_and_flat("huge body", &seen, Duration::from_secs(2));
    assert!(
        chain.envoy.log().contains(&format!("is over {MAX_BODY}")),
        "{}",
        chain.envoy.log()
    );
}

#[test]
fn a_jwks_server_slower_than_the_timeout_is_given_up_on() {
    let idp = JwksServer::start(&good_jwks());
    idp.delay(Duration::from_millis(3 * TIMEOUT_MS));
    let chain = start(idp.port());
    let seen = survives(&idp, &chain, heal_to_good);
    // A request waits for an under-way fetch at most its timeout (and a margin).
    assert_prompt_and_flat("slow", &seen, Duration::from_millis(TIMEOUT_MS + 1500));
}

#[test]
fn a_jwks_server_answering_an_error_status_is_survived() {
    let idp = JwksServer::start(&good_jwks());
    idp.status(500);
    let chain = start(idp.port());
    let seen = survives(&idp, &chain, heal_to_good);
    assert_prompt_and_flat("status 500", &seen, Duration::from_secs(2));
}

#[test]
fn a_jwks_server_that_is_down_is_survived() {
    // Bind a port, close it: nothing listens until the server comes up there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let chain = start(port);
    let mut slowest = Duration::ZERO;
    for n in 0..FAULTY_REQUESTS {
        let (response, took) = chain.get(n);
        assert_eq!(response.status, 503, "{}", response.text());
        assert_eq!(response.json()["reason"], "jwks_unavailable");
        slowest = slowest.max(took);
        std::thread::sleep(PACE);
    }
    let failed = chain.counter("jwks_fetch_failed");
    // One first fetch per worker, then backoff: not one per request.
    assert!((1..=12).contains(&failed), "{failed} failed fetches");
    assert!(slowest <= Duration::from_secs(2), "an answer took {slowest:?}");
    println!("down: {failed} failed fetches for {FAULTY_REQUESTS} requests, slowest answer {slowest:?}");
}
