//! Audit into Kafka: a real Envoy 1.40 (two workers) with the audit
//! stage's `kafka-rest` sink → the Kafka REST v2 front → a real broker
//! (Tansu), read back from the broker with a Kafka client.
//!
//! - The round trip runs in the native fused run and in containers (the
//!   broker and the front in images built here): N requests give N records,
//!   each in its event type's topic, keyed by tenant, every tenant on one
//!   partition, no `event_id` twice, every value valid against the JSON
//!   Schema, no secret in any byte.
//! - The broker stopped (killed) mid-traffic and started again, and paused
//!   (SIGSTOP) mid-traffic, and records the front refuses: natively, fused,
//!   once (they test the sink, not the delivery).

#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::audit::assert_schema_valid;
use common::load::{drive, drive_paths, ms, p99_bound, repeated, serial, wait_counts, Run};
use common::tokens;
use common::{once_per_suite, require_artefacts};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tollgate_integration::docker::{self, Network, KAFKA_REST_PORT};
use tollgate_integration::{paths, Bootstrap, Echo, Envoy, Filter, Request};
use tollgate_kafka_party::murmur2::partition_for_key;
use tollgate_kafka_party::{Broker, Front, Record, Refusal, PARTITIONS};

const SINK_CLUSTER: &str = "audit-sink";
const TIMEOUT_MS: u64 = 1000;
const TENANTS: [&str; 5] = ["ACME", "GLOBEX", "INITECH", "UMBRELLA", "HOOLI"];
/// Until the records expected are in the broker.
const ARRIVE_WITHIN: Duration = Duration::from_secs(20);
/// After they are: long enough for any extra one to come.
const SETTLE: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(200);

/// The paced load of the outage tests (as in `audit_faults.rs`).
const THREADS: usize = 4;
const RATE: u64 = 1000;
const PHASE: usize = 3000;
const WARM_UP: usize = 200;
/// The broker's outage, started this far into the phase.
const OUTAGE_AT: Duration = Duration::from_millis(800);
const OUTAGE: Duration = Duration::from_millis(1500);
/// Until everything buffered is sent once the broker is back: the backoff
/// (doubling from 250 ms, at most the outage so far plus 250 ms after the
/// last failure), a call's timeout, flushes, on a loaded machine.
const RECOVER_WITHIN: Duration = Duration::from_secs(45);
const SETTLE_WITHIN: Duration = Duration::from_secs(15);

/// Routes of each event type (the fourth, `api_call`, is the default);
/// tenants from the verified claim or the `x-tenant-id` header.
fn policy(batch_size: u64, flush_ms: u64) -> Value {
    let tenants: Vec<Value> = TENANTS.iter().map(|t| json!({"id": t})).collect();
    json!({
        "version": 1,
        "realm": "tollgate-test",
        "jwt": {"providers": [tokens::local_provider()]},
        "tenants": tenants,
        "tenant": {"sources": ["claim", "header"]},
        "routes": [
            {"name": "datahub", "match": {"prefix": "/api/datahub"},
             "jwt": {"requirement": "required"}, "tenant": {"required": true},
             "audit": {"event_type": "data_access"}},
            {"name": "admin", "match": {"prefix": "/admin"},
             "jwt": {"requirement": "required"}, "audit": {"event_type": "admin_operation"}},
            {"name": "ui", "match": {"prefix": "/ui"}, "audit": {"event_type": "user_action"}},
            {"name": "api", "match": {"prefix": "/"}},
        ],
        "audit": {
            "sink": {"format": "kafka-rest", "cluster": SINK_CLUSTER, "timeout_ms": TIMEOUT_MS},
            "batch_size": batch_size,
            "flush_interval_ms": flush_ms,
            "buffer_events": 10_000,
        },
    })
}

/// Envoy (the audit stage with the others; fused or split per
/// `TOLLGATE_DELIVERY`), the broker and its front, and the echo upstream;
/// in container mode the broker and the front in containers on the test's
/// network. Fields drop in order: Envoy first, the network last.
struct Rig {
    envoy: Envoy,
    front: Front,
    broker: Broker,
    _echo: Echo,
    _network: Option<Network>,
}

impl Rig {
    fn start(policy: &Value) -> Rig {
        require_artefacts();
        let network = docker::container_mode().map(|_| Network::create().unwrap());
        let broker = match &network {
            Some(network) => Broker::start_in(&network.name),
            None => Broker::start(),
        };
        let front = Front::start(&broker);
        let echo = Echo::start_on(&format!("{}:0", docker::party_host())).unwrap();
        let mut bootstrap = Bootstrap::new(echo.port()).cluster(SINK_CLUSTER, front.addr().port());
        for root_id in ["tollgate.jwt", "tollgate.tenant", "tollgate.audit"] {
            bootstrap = bootstrap.filter(Filter::tollgate(root_id, &paths::module_wasm(), policy));
        }
        let mut json = bootstrap.to_json();
        let envoy = match &network {
            None => Envoy::start(&json),
            Some(network) => {
                docker::bridged(&mut json, &docker::party_host()).unwrap();
                let (host, port) = front.cluster_address();
                assert_eq!(port, KAFKA_REST_PORT);
                docker::on_network(&mut json, &[(SINK_CLUSTER, host.as_str(), port)]).unwrap();
                Envoy::start_on(&json, network)
            }
        };
        Rig {
            envoy,
            front,
            broker,
            _echo: echo,
            _network: network,
        }
    }

    /// Every record of the audit topics, as (topic, record, value).
    fn records(&self) -> Vec<(String, Record, Value)> {
        let records = self
            .broker
            .audit_records()
            .unwrap_or_else(|e| panic!("reading the broker: {e}"));
        records
            .into_iter()
            .map(|(topic, record)| {
                let value = record.value_json();
                assert!(value.is_object(), "{topic}: a record that is not an event: {record:?}");
                (topic, record, value)
            })
            .collect()
    }

    /// The records once at least `count` are there and no more came for
    /// [`SETTLE`].
    fn settled(&self, count: usize, within: Duration) -> Vec<(String, Record, Value)> {
        let deadline = Instant::now() + within;
        loop {
            let records = self.records();
            if records.len() >= count {
                std::thread::sleep(SETTLE);
                return self.records();
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} records in the broker after {within:?}; front: {:?}\n{}",
                records.len(),
                self.front.counters(),
                self.envoy.log()
            );
            std::thread::sleep(POLL);
        }
    }
}

fn run_id(what: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{what}-{nanos}")
}

/// One request of the round trip and what it must give.
struct Case {
    request_id: String,
    request: Request,
    status: u16,
    topic: &'static str,
}

/// `count` requests over the four routes and five tenants, with some
/// refusals (no token, an unknown tenant); each with a token of its own
/// where the route takes one.
fn cases(run: &str, count: usize) -> (Vec<Case>, Vec<String>) {
    let mut tokens_sent = Vec::new();
    let cases = (0..count)
        .map(|i| {
            let tenant = TENANTS[i % TENANTS.len()];
            let request_id = format!("{run}-{i}");
            let token = tokens::token(&tokens::claims_with(&json!({"tenant": tenant, "jti": request_id})));
            let (target, topic) = match i % 4 {
                0 => (format!("/api/datahub/{i}"), "audit-data-access"),
                1 => (format!("/admin/{i}"), "audit-admin-operations"),
                2 => (format!("/ui/{i}"), "audit-user-actions"),
                _ => (format!("/api/other/{i}"), "audit-api-calls"),
            };
            let mut request = Request::get(&target).header("x-request-id", &request_id);
            let mut status = 200;
            match i % 4 {
                0 | 1 if i % 20 == 0 || i % 20 == 1 => status = 401,
                0 | 1 => {
                    request = request.header("authorization", &format!("Bearer {token}"));
                    tokens_sent.push(token);
                }
                _ if i % 13 == 2 => {
                    request = request.header("x-tenant-id", "NOT-A-TENANT");
                    status = 403;
                }
                _ => request = request.header("x-tenant-id", tenant),
            }
            Case {
                request_id,
                request,
                status,
                topic,
            }
        })
        .collect();
    (cases, tokens_sent)
}

#[test]
fn each_request_gives_one_record_in_its_topic_keyed_by_tenant_one_partition_per_tenant() {
    const COUNT: usize = 200;
    let rig = Rig::start(&policy(50, 50));
    let run = run_id("kafka");
    let (cases, tokens_sent) = cases(&run, COUNT);
    for case in &cases {
        let response = rig.envoy.send(&case.request);
        assert_eq!(response.status, case.status, "{}: {}", case.request_id, response.text());
    }
    let records = rig.settled(COUNT, ARRIVE_WITHIN);
    assert_eq!(records.len(), COUNT, "one record per request");

    let ids: Vec<&str> = records
        .iter()
        .map(|(_, _, v)| v["event_id"].as_str().unwrap())
        .collect();
    let twice = repeated(ids.iter().copied());
    assert!(twice.is_empty(), "event ids twice: {twice:?}");
    let values: Vec<Value> = records.iter().map(|(_, _, v)| v.clone()).collect();
    assert_schema_valid(&values);

    let by_request: HashMap<&str, &(String, Record, Value)> = records
        .iter()
        .map(|r| (r.2["request_id"].as_str().unwrap_or_default(), r))
        .collect();
    let mut partitions: BTreeMap<Vec<u8>, BTreeSet<i32>> = BTreeMap::new();
    for case in &cases {
        let (topic, record, value) = by_request
            .get(case.request_id.as_str())
            .unwrap_or_else(|| panic!("no record for {}", case.request_id));
        assert_eq!(topic, case.topic, "{}: {value}", case.request_id);
        assert_eq!(value["status"], case.status, "{}: {value}", case.request_id);
        // The key is the tenant as the proxy's JSON serializer writes it.
        let want_key = value["tenant"]
            .as_str()
            .map(|t| Value::from(t).to_string().into_bytes());
        assert_eq!(record.key, want_key, "{}: key of {value}", case.request_id);
        if let Some(key) = &record.key {
            assert_eq!(record.partition, partition_for_key(key, PARTITIONS), "{value}");
            partitions.entry(key.clone()).or_default().insert(record.partition);
        }
    }
    for tenant in TENANTS {
        let key = Value::from(tenant).to_string().into_bytes();
        let on = partitions
            .get(&key)
            .unwrap_or_else(|| panic!("no record keyed {tenant}"));
        assert_eq!(on.len(), 1, "{tenant}'s records on partitions {on:?}");
    }
    let spread: BTreeSet<i32> = partitions.values().flatten().copied().collect();
    assert!(spread.len() > 1, "every tenant on one partition: {spread:?}");

    // No token, nor any part of one, in any byte the broker holds.
    let mut raw = Vec::new();
    for (_, record, _) in &records {
        raw.extend(record.key.iter().flatten());
        raw.extend(record.value.iter().flatten());
    }
    let raw = String::from_utf8_lossy(&raw);
    assert!(!raw.contains("Bearer"), "an authorization value reached Kafka");
    for token in &tokens_sent {
        for part in token.split('.').skip(1) {
            assert!(!raw.contains(part), "a token's part reached Kafka: {part}");
        }
    }
    let counters = rig.front.counters().unwrap();
    println!(
        "{COUNT} requests, {} records in {} produce requests, on {} partitions",
        records.len(),
        counters.requests,
        spread.len()
    );
}

/// The records' event ids, with how many times each is there.
fn id_counts(records: &[(String, Record, Value)]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for (_, _, value) in records {
        *counts
            .entry(value["event_id"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    counts
}

/// The paths of the records' events, with how many times each is there.
fn path_counts(records: &[(String, Record, Value)]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for (_, _, value) in records {
        *counts.entry(value["path"].as_str().unwrap().to_string()).or_insert(0) += 1;
    }
    counts
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Outage {
    /// Killed, and started again on its port (memory storage: empty, the
    /// topics created again).
    Stopped,
    /// SIGSTOP, then SIGCONT: the broker keeps what it held.
    Paused,
}

/// The paced phase with the broker's outage in its middle: requests go to
/// `/{epoch}/{n}`, `epoch` being `before`, `during` (sent after the outage
/// began) or `after` (sent after it ended).
fn phase_with_outage(rig: &mut Rig, outage: Outage) -> (Run, Duration, Vec<String>) {
    let epoch = AtomicUsize::new(0);
    let names = ["before", "during", "after"];
    let late = Mutex::new(Vec::new());
    let path = |n: usize| {
        let at = epoch.load(Ordering::SeqCst);
        let path = format!("/{}/{n}", names[at]);
        if at > 0 {
            late.lock().unwrap().push(path.clone());
        }
        path
    };
    let envoy = &rig.envoy;
    let front = &rig.front;
    let broker = &mut rig.broker;
    let (run, lasted) = std::thread::scope(|scope| {
        let load = scope.spawn(|| drive_paths(envoy, PHASE, THREADS, Some(RATE), &path));
        std::thread::sleep(OUTAGE_AT);
        let began = Instant::now();
        match outage {
            Outage::Stopped => broker.stop(),
            Outage::Paused => broker.pause(),
        }
        .unwrap();
        epoch.store(1, Ordering::SeqCst);
        std::thread::sleep(OUTAGE);
        match outage {
            Outage::Stopped => restart(front, broker),
            Outage::Paused => broker.resume(),
        }
        .unwrap();
        let lasted = began.elapsed();
        epoch.store(2, Ordering::SeqCst);
        (load.join().unwrap(), lasted)
    });
    (run, lasted, late.into_inner().unwrap())
}

/// Starts the stopped broker again. Memory storage comes back empty, and
/// until its topics are created again the front would answer 404 40401,
/// which the sink rightly drops; a real Kafka keeps its topics across a
/// restart, so the front answers 503 (as the proxy does while it cannot
/// reach the cluster) until they are there, and so does every produce
/// request that was in flight meanwhile and found no topic.
fn restart(front: &Front, broker: &mut Broker) -> Result<(), String> {
    front.answer(Some(503))?;
    let started = broker.start_again();
    front.answer(None)?;
    started
}

fn broker_outage(outage: Outage) {
    if !once_per_suite() {
        return;
    }
    let _serial = serial();
    let mut rig = Rig::start(&policy(50, 100));
    drive(&rig.envoy, "warm", WARM_UP, THREADS, None).assert_all_answered("warm-up");
    let ok = drive(&rig.envoy, "ok", PHASE, THREADS, Some(RATE));
    ok.assert_all_answered("without the outage");
    let before_outage = (WARM_UP + PHASE) as u64;
    let (before, _) = wait_counts(&rig.envoy, SETTLE_WITHIN, "events before the outage sent", |c| {
        c.emitted == before_outage && c.sent == c.emitted
    });
    assert_eq!(before.dropped(), 0, "{before:?}");

    let (faulty, lasted, late) = phase_with_outage(&mut rig, outage);
    let back = Instant::now();
    let total = before_outage + PHASE as u64;
    let (after, _) = wait_counts(
        &rig.envoy,
        RECOVER_WITHIN,
        "buffered events sent after the outage",
        |c| c.emitted == total && c.outstanding() == 0,
    );
    let recovered = back.elapsed();
    let records = rig.settled(0, SETTLE_WITHIN);
    let ids = id_counts(&records);
    let paths = path_counts(&records);
    let duplicated: usize = ids.values().map(|n| n - 1).sum();
    let bound = p99_bound(ok.p99());
    println!(
        "\naudit to Kafka, the broker {outage:?} for {:.1} s mid-traffic: p99 {:.2} ms without, {:.2} ms with \
         (bound {:.2} ms)\n  without: {}\n  with:    {}\n  emitted {}, sent {}, dropped {}, batches failed {}; \
         delivered: {} events in {} records ({} duplicates); all sent {:.1} s after it was back",
        lasted.as_secs_f64(),
        ms(ok.p99()),
        ms(faulty.p99()),
        ms(bound),
        ok.describe(),
        faulty.describe(),
        after.emitted,
        after.sent,
        after.dropped(),
        after.batches_failed - before.batches_failed,
        ids.len(),
        records.len(),
        duplicated,
        recovered.as_secs_f64(),
    );
    faulty.assert_all_answered(&format!("broker {outage:?}"));
    assert!(
        faulty.p99() <= bound,
        "p99 {:.2} ms with the broker {outage:?}, over {:.2} ms",
        ms(faulty.p99()),
        ms(bound)
    );
    assert!(
        after.batches_failed > before.batches_failed,
        "no batch failed: {after:?}"
    );
    assert_eq!(
        (after.emitted, after.sent, after.dropped()),
        (total, total, 0),
        "{after:?}"
    );
    assert_eq!(records.len(), ids.len() + duplicated);
    // Sent during and after the outage: in the broker, each request once
    // (a retried batch may bring an event twice: counted above).
    let missing: Vec<&String> = late.iter().filter(|p| !paths.contains_key(*p)).collect();
    assert!(
        missing.is_empty(),
        "{} events sent after the outage began are missing: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    match outage {
        Outage::Paused => {
            // Nothing was lost: every event is there.
            assert_eq!(ids.len() as u64, total, "every event in the broker");
        }
        Outage::Stopped => {
            // The broker restarted empty (memory storage): what it held
            // before went with it; everything sent since is there.
            let lost = total - ids.len() as u64;
            println!("  {lost} events the stopped broker had stored were lost with its memory storage");
        }
    }
}

#[test]
fn a_broker_stopped_mid_traffic_and_started_again_fails_no_request_and_gets_what_was_buffered() {
    broker_outage(Outage::Stopped);
}

#[test]
fn a_broker_paused_mid_traffic_fails_no_request_and_gets_every_event() {
    broker_outage(Outage::Paused);
}

/// Requests whose events the front refuses (by a marker in their path)
/// among others, in batches of 10.
fn refused_batch(code: u8) -> (Rig, String, Vec<String>, Vec<String>) {
    let rig = Rig::start(&policy(10, 50));
    let run = run_id(&format!("refuse{code}"));
    let marker = format!("{run}-refused");
    rig.front
        .refuse_records(&Refusal {
            marker: marker.clone(),
            error_code: code,
            times: 1,
        })
        .unwrap();
    let (mut refused, mut kept) = (Vec::new(), Vec::new());
    for i in 0..40 {
        let path = if i % 5 == 2 {
            format!("/{marker}/{i}")
        } else {
            format!("/{run}/{i}")
        };
        let response = rig
            .envoy
            .send(&Request::get(&path).header("x-tenant-id", TENANTS[i % TENANTS.len()]));
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        if i % 5 == 2 { &mut refused } else { &mut kept }.push(path);
    }
    (rig, marker, refused, kept)
}

#[test]
fn records_refused_as_retriable_are_retried_and_only_those() {
    if !once_per_suite() {
        return;
    }
    let (rig, _, refused, kept) = refused_batch(2);
    let records = rig.settled(refused.len() + kept.len(), ARRIVE_WITHIN);
    let (counts, _) = wait_counts(&rig.envoy, SETTLE_WITHIN, "every event sent", |c| {
        c.emitted == 40 && c.outstanding() == 0
    });
    let paths = path_counts(&records);
    let front = rig.front.counters().unwrap();
    println!(
        "40 events: the front refused {} records (error_code 2) in {} produce requests; the broker holds {} \
         records, {} events; Envoy counts {} sent, {} dropped",
        front.refused,
        front.requests,
        records.len(),
        id_counts(&records).len(),
        counts.sent,
        counts.dropped()
    );
    assert_eq!(front.refused, refused.len() as u64, "{front:?}");
    // Had the accepted records been sent again, they would be here twice.
    for path in refused.iter().chain(&kept) {
        assert_eq!(paths.get(path), Some(&1), "{path}: {paths:?}");
    }
    assert_eq!(records.len(), 40);
    assert_eq!((counts.sent, counts.dropped()), (40, 0), "{counts:?}");
}

#[test]
fn records_refused_as_non_retriable_are_counted_dropped_and_not_sent_again() {
    if !once_per_suite() {
        return;
    }
    let (rig, marker, refused, kept) = refused_batch(1);
    let records = rig.settled(kept.len(), ARRIVE_WITHIN);
    let (counts, _) = wait_counts(&rig.envoy, SETTLE_WITHIN, "every event sent or dropped", |c| {
        c.emitted == 40 && c.outstanding() == 0
    });
    let paths = path_counts(&records);
    for path in &kept {
        assert_eq!(paths.get(path), Some(&1), "{path}: {paths:?}");
    }
    assert!(
        paths.keys().all(|p| !p.contains(&marker)),
        "a refused record came again: {paths:?}"
    );
    assert_eq!(
        (counts.sent, counts.rejected),
        (kept.len() as u64, refused.len() as u64),
        "{counts:?}"
    );
    let front = rig.front.counters().unwrap();
    assert_eq!(
        front.refused,
        refused.len() as u64,
        "refused once each, never sent again: {front:?}"
    );
}
