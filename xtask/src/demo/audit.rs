//! The demo's audit trail in Kafka: Tansu with the audit topics and the
//! Kafka REST v2 front the policy's `kafka-rest` sink posts to (the
//! integration tests' own fixtures), natively or, with `--docker`, in
//! containers. `--check` reads the topics back with a Kafka client and runs
//! the printed `tollgate audit tail` line.

use crate::render::{self, DEMO_SINK_PORT};
use crate::util::root;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};
use tollgate_cli::demo::Example;
use tollgate_kafka_party::{Broker, Front, Record};

/// How long `--check` waits for the events (the policy flushes every second).
const EVENTS_WAIT: Duration = Duration::from_secs(15);
/// How long the printed tail may take in `--check` (it may compile first).
const TAIL_WAIT_MS: u64 = 120_000;

/// The broker and its front; the front stops first.
pub struct Kafka {
    front: Front,
    broker: Broker,
}

impl Kafka {
    /// For the policy's sink; `None` when it calls none. `network`: the
    /// containers' Docker network. The interactive native demo's front
    /// listens where the rendered bootstrap's sink cluster points.
    pub fn start(policy: &Value, check: bool, network: Option<&str>) -> Result<Option<Kafka>, String> {
        if render::sink_cluster(policy).is_none() {
            return Ok(None);
        }
        let broker = match network {
            Some(name) => Broker::try_start_in(name)?,
            None => Broker::try_start()?,
        };
        let front = if network.is_none() && !check {
            let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, DEMO_SINK_PORT));
            Front::start_on(listen, &broker.bootstrap()).map_err(|e| format!("{e} (is a demo already running?)"))?
        } else {
            Front::try_start(&broker)?
        };
        Ok(Some(Kafka { front, broker }))
    }

    /// Envoy's sink cluster sent to the front.
    pub fn point_sink(&self, bootstrap: &mut Value, policy: &Value) -> Result<(), String> {
        let (host, port) = self.front.cluster_address();
        super::point_sink_to(bootstrap, policy, &host, port)
    }

    /// Where the events go, as the demo prints it.
    pub fn describe(&self) -> String {
        let broker = match self.broker.pid() {
            Some(pid) => format!("Tansu (pid {pid})"),
            None => "Tansu (container)".to_string(),
        };
        format!(
            "audit events: Kafka, {broker} on {} (topics audit-api-calls, audit-data-access, \
             audit-admin-operations, audit-user-actions), through the Kafka REST front on {}; \
             the filter sends them every second",
            self.broker.bootstrap(),
            self.front.addr()
        )
    }

    /// The line that prints the trail, runnable from the clone.
    pub fn tail_command(&self) -> String {
        format!(
            "cargo run -q -p tollgate-cli -- audit tail --brokers {} --from-beginning",
            self.broker.bootstrap()
        )
    }

    pub fn logs(&self) -> String {
        self.broker.logs()
    }
}

/// A record as `{topic, key, value}`: the key as the JSON the REST front
/// stores (the tenant, quoted), the value parsed.
fn line_of(topic: &str, record: &Record) -> Value {
    let key = record
        .key
        .as_deref()
        .map(|k| serde_json::from_slice(k).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(k).into_owned())));
    json!({"topic": topic, "key": key, "value": record.value_json(), "partition": record.partition})
}

/// Kafka got one event per request the examples sent, as explain describes
/// it (topic, event type, route, key), with the example's method, status
/// and denial: every event explain says is always kept within
/// `EVENTS_WAIT`, and no other but a sampled route's. Distinct event ids,
/// each tenant's records of a topic on one partition, no token in any
/// record, and the printed `audit tail` shows them all. Says what arrived.
pub fn check_events(
    kafka: &Kafka,
    explained: &[(&Example, Value)],
    tokens: &[(String, String)],
) -> Result<String, String> {
    let always = explained.iter().filter(|(_, e)| e["audit"]["kept"] == "always").count();
    let deadline = Instant::now() + EVENTS_WAIT;
    let (records, lines, matched) = loop {
        let records = kafka.broker.audit_records()?;
        let lines: Vec<Value> = records.iter().map(|(t, r)| line_of(t, r)).collect();
        let (matched, unmatched) = match_events(&lines, explained);
        if let Some(event) = unmatched.first() {
            return Err(format!("an event no example explains: {event}"));
        }
        let missing: Vec<&str> = explained
            .iter()
            .zip(&matched)
            .filter(|((_, e), seen)| e["audit"]["kept"] == "always" && !**seen)
            .map(|((x, _), _)| x.what)
            .collect();
        if missing.is_empty() {
            break (records, lines, matched);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "after {}s, no event for {} example(s) always kept: {}",
                EVENTS_WAIT.as_secs(),
                missing.len(),
                missing.join("; ")
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    distinct_ids(&lines)?;
    one_partition_per_tenant(&lines)?;
    no_token(&records, tokens)?;
    check_tail(kafka, &records)?;
    let sampled = matched.iter().filter(|m| **m).count() - always;
    Ok(format!(
        "{} in Kafka ({always} always kept, {sampled} of {} sampled in), distinct event ids, \
         each tenant on one partition, no token in any; the printed audit tail shows each",
        lines.len(),
        explained.len() - always
    ))
}

fn distinct_ids(lines: &[Value]) -> Result<(), String> {
    let ids: BTreeSet<&str> = lines.iter().filter_map(|l| l["value"]["event_id"].as_str()).collect();
    match ids.len() == lines.len() {
        true => Ok(()),
        false => Err(format!("{} events but {} distinct event_id", lines.len(), ids.len())),
    }
}

fn one_partition_per_tenant(lines: &[Value]) -> Result<(), String> {
    let mut seen: BTreeMap<(String, String), BTreeSet<i64>> = BTreeMap::new();
    // Records without a tenant have a null key, which the front spreads.
    for l in lines.iter().filter(|l| !l["key"].is_null()) {
        let at = (l["topic"].to_string(), l["key"].to_string());
        seen.entry(at).or_default().extend(l["partition"].as_i64());
    }
    match seen.iter().find(|(_, partitions)| partitions.len() > 1) {
        Some(((topic, key), partitions)) => Err(format!("key {key} of {topic} on partitions {partitions:?}")),
        None => Ok(()),
    }
}

fn no_token(records: &[(String, Record)], tokens: &[(String, String)]) -> Result<(), String> {
    let holds = |bytes: &Option<Vec<u8>>, token: &str| {
        bytes
            .as_deref()
            .is_some_and(|b| b.windows(token.len()).any(|w| w == token.as_bytes()))
    };
    for (var, token) in tokens {
        if let Some((topic, r)) = records
            .iter()
            .find(|(_, r)| holds(&r.key, token) || holds(&r.value, token))
        {
            return Err(format!(
                "the ${var} token is in {topic} partition {} offset {}",
                r.partition, r.offset
            ));
        }
    }
    Ok(())
}

/// The printed tail line, run as printed (with `--json --idle-exit` and
/// a bound), prints each record's value once, as the broker holds it.
fn check_tail(kafka: &Kafka, records: &[(String, Record)]) -> Result<(), String> {
    let line = format!(
        "{} --json --idle-exit --timeout-ms {TAIL_WAIT_MS}",
        kafka.tail_command()
    );
    let output = Command::new("bash")
        .arg("-c")
        .arg(&line)
        .current_dir(root())
        .output()
        .map_err(|e| format!("could not run bash: {e}"))?;
    if !output.status.success() {
        return Err(format!("{line}: {}", String::from_utf8_lossy(&output.stderr)));
    }
    let mut printed: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let mut held: Vec<String> = records
        .iter()
        .map(|(_, r)| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    printed.sort_unstable();
    held.sort_unstable();
    match printed == held {
        true => Ok(()),
        false => Err(format!(
            "audit tail printed {} events, Kafka holds {}: {printed:?}",
            printed.len(),
            held.len()
        )),
    }
}

/// Which examples have an event (each event taken once), and the events
/// no example explains.
fn match_events<'l>(lines: &'l [Value], explained: &[(&Example, Value)]) -> (Vec<bool>, Vec<&'l Value>) {
    let mut matched = vec![false; explained.len()];
    let mut unmatched = Vec::new();
    for line in lines {
        let found = explained
            .iter()
            .zip(matched.iter_mut())
            .find(|((example, e), seen)| !**seen && event_of(line, example, e));
        match found {
            Some((_, seen)) => *seen = true,
            None => unmatched.push(line),
        }
    }
    (matched, unmatched)
}

/// A record (`{topic, key, value}`) is the event of this example.
fn event_of(line: &Value, example: &Example, explained: &Value) -> bool {
    let (event, audit) = (&line["value"], &explained["audit"]);
    let topic =
        serde_json::from_value::<tollgate_core::audit::EventType>(audit["event_type"].clone()).map(|t| t.topic());
    let denied = example.reason.is_none_or(|reason| {
        event["decisions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["reason"] == reason)
    });
    line["topic"].as_str() == topic.ok()
        && line["key"] == event["tenant"]
        && event["event_type"] == audit["event_type"]
        && event["route"] == audit["route"]
        && event["method"] == example.method
        && event["status"] == example.status
        && denied
}
